/*
 * sandbox_record.h: one sandbox as the service, the reconciler, the store
 * and the driver each see it.
 *
 * The store keeps a packed sandgate.v1.Sandbox (the "record") plus typed
 * columns. The columns the store assigns (resource_version) and the phase
 * are authoritative: sg_record_unpack overlays them on the record, so the
 * record's own copies never leak stale values to a client.
 *
 * A state change is a struct sg_record_change applied to a stored row:
 * sg_record_apply produces the new row (record repacked, columns updated)
 * and the event row that records the transition.
 *
 * OWNERSHIP: functions returning rows or messages transfer ownership (free
 * with sg_sandbox_row_clear / sandgate__v1__sandbox__free_unpacked /
 * sg_event_row_clear / sg_driver_view_clear).
 * THREAD SAFETY: pure functions; any thread.
 */
#ifndef SG_SANDBOX_RECORD_H
#define SG_SANDBOX_RECORD_H

#include "internal.h"
#include "error.h"
#include "buf.h"
#include "store.h"

#include "sandgate_v1_sandbox.pb-c.h"

#include <sandgate/driver.h>

/* Milliseconds since the Unix epoch, from CLOCK_REALTIME. */
int64_t sg_now_ms(void);

/* Fill ts (initialized here) with the time ms milliseconds after the epoch. */
void sg_ms_to_timestamp(int64_t ms, Google__Protobuf__Timestamp *ts);

/*
 * Unpack row->record and overlay the store's columns (phase,
 * resource_version, update_time). NULL with err set (SG_ERR_INTERNAL) if
 * the record is corrupt or memory is out.
 */
Sandgate__V1__Sandbox *sg_record_unpack(const struct sg_sandbox_row *row,
                                        struct sg_error *err);

/*
 * Append to out the wire form of the Sandbox in row, as sg_record_unpack
 * and a re-pack would give it, without decoding: the record followed by
 * the resource_version field, which protobuf parsers merge over the stale
 * copy inside (the last value of a scalar field wins). The record's phase
 * and update_time always equal the columns (they are written together),
 * so only the version needs this. Returns 0 or -1 (no memory).
 */
int sg_record_wire(const struct sg_sandbox_row *row, struct sg_buf *out);

/*
 * Pack sb into row->record and set every typed column from sb.
 * request_hash is copied from the argument. Returns 0 or -1 (no memory);
 * on failure row holds nothing.
 */
int sg_record_to_row(const Sandgate__V1__Sandbox *sb, const char *request_hash,
                     struct sg_sandbox_row *row, struct sg_error *err);

/* Most events one change appends. */
#define SG_RECORD_MAX_EVENTS 4

/*
 * A transition of one sandbox. NULL strings leave the field as it was.
 * Several events may record one transition (the driver created the object
 * and it is already running): they are appended in order, in the same
 * write; reason and message belong to the last one, the others get the
 * standard text of their type.
 */
struct sg_record_change {
    enum sg_phase phase;          /* new phase */
    enum sg_event_type events[SG_RECORD_MAX_EVENTS]; /* 0-terminated */
    const char *reason;           /* CamelCase, for the event and condition */
    const char *message;          /* human text (status.message) */
    const char *backend_object;
    bool set_ready_time;
    bool set_delete_time;
    /*
     * Not ready yet, and the driver says why (a PENDING report's reason
     * and message, e.g. "Unschedulable"): the Ready condition (status
     * Unknown) takes them even if the phase does not change, and
     * status.message takes a non-empty pending_message. The events keep
     * reason and message. NULL: nothing pending to record.
     */
    const char *pending_reason;
    const char *pending_message;
};

/*
 * Apply chg to the stored row old: out receives the new row, evs its
 * events (*n_evs of them, up to SG_RECORD_MAX_EVENTS; clear each with
 * sg_event_row_clear). Returns 0 or -1 with err set (then nothing needs
 * clearing).
 */
int sg_record_apply(const struct sg_sandbox_row *old,
                    const struct sg_record_change *chg,
                    struct sg_sandbox_row *out, struct sg_event_row *evs,
                    size_t *n_evs, struct sg_error *err);

/* An event row for row (ownership columns copied). Returns 0 or -1. */
int sg_event_for_row(const struct sg_sandbox_row *row,
                     enum sg_event_type type, const char *reason,
                     const char *message, struct sg_event_row *ev);

/*
 * The driver's view of a sandbox (struct sg_driver_sandbox) built from a
 * message: config_json is the JSON of driver_config[driver] ("{}" when
 * absent), owned by the view; strings are borrowed from sb. Env names
 * sorted. The credential bindings are in spec order, without material
 * (the reconciler points material at resolved buffers for create only). Returns 0, or -1 with err set (a driver_config that cannot be
 * written as JSON, or no memory); clear the view either way.
 */
struct sg_driver_view {
    struct sg_driver_sandbox sb;
    char *config_json;
    const char **command;
    const char **env_names;
    const char **env_values;
    struct sg_driver_credential *credentials;
};
int sg_driver_view_init(struct sg_driver_view *v,
                        const Sandgate__V1__Sandbox *sb, const char *driver,
                        struct sg_error *err);
void sg_driver_view_clear(struct sg_driver_view *v);

#endif /* SG_SANDBOX_RECORD_H */
