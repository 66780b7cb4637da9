/*
 * reconciler.h: drives every sandbox from its recorded state to the driver
 * and back.
 *
 * Level-triggered: whenever something may have changed for a sandbox (a
 * create or delete was committed, the driver reported a state, a retry is
 * due, the TTL passed), the reconciler reads the sandbox's row, compares it
 * with what the driver last reported, and takes the one next step:
 *
 *   ACCEPTED      -> PROVISIONING   (event ALLOCATION_STARTED)
 *   PROVISIONING  credential bindings resolved on a worker, when there
 *                 are any (event CREDENTIALS_RESOLVED; a failure fails
 *                 the sandbox before the driver is called)
 *                 driver create     (event RESOURCE_CREATED)
 *                 -> READY / FAILED as the driver reports; a PENDING
 *                 report with a new reason or message (Unschedulable,
 *                 an image pull error) goes into the Ready condition
 *                 and status.message, without an event
 *   READY         -> FAILED when the backend stops or is lost
 *   any, TTL past -> DELETING       (event EXPIRED)
 *   DELETING      driver remove -> DELETED (event DELETED)
 *
 * Each step is one driver call or one conditional store write (on the
 * resource_version it read); after it completes the sandbox is looked at
 * again. A conflict just means "look again". Driver errors marked
 * transient, and store failures, are retried with exponential backoff;
 * permanent driver errors fail the sandbox.
 *
 * Every resync interval it also asks the driver about every provisioning
 * and ready sandbox (level-triggered: a missed or absent watch event is
 * found there); for a driver without watch this is how changes arrive.
 *
 * At start the reconciler asks the driver for every object it manages and
 * pages through every active row: objects without a live record are
 * removed, rows whose object is gone are failed with reason "Lost".
 *
 * All of it runs on the libuv loop thread; request threads only call
 * sg_reconciler_kick, which posts to the loop.
 *
 * OWNERSHIP: the caller owns the reconciler; store and driver are borrowed
 * and must outlive it.
 * THREAD SAFETY: sg_reconciler_kick from any thread; everything else on
 * the loop thread.
 */
#ifndef SG_RECONCILER_H
#define SG_RECONCILER_H

#include "internal.h"
#include "error.h"
#include "store.h"
#include "cred_bind.h"
#include "driver.h"

#include <uv.h>

struct sg_reconciler;

struct sg_reconciler_config {
    uint32_t grace_ms;          /* passed to driver remove; 0 = driver's */
    unsigned expiry_interval_ms; /* how often TTLs are checked */
    unsigned retry_base_ms;     /* first backoff */
    unsigned retry_max_ms;      /* backoff ceiling */
    unsigned resume_page;       /* rows per page when resuming */
    /* How often every provisioning and ready sandbox is checked with the
       driver, whatever its watch said: 0 = 2 s for a driver without
       SG_DRIVER_CAP_WATCH, 60 s for one with it (a safety net). */
    unsigned resync_interval_ms;
    /* Resolves credential bindings for delivery (borrowed). Its results
       may still arrive after sg_reconciler_stop (they are dropped and
       wiped): stop its workers and close its queue before
       sg_reconciler_free. NULL: a sandbox with bindings fails with
       CredentialsUnavailable. */
    const struct sg_cred_delivery *credentials;
};

/*
 * Create and start: registers the driver watch, lists the driver's
 * objects, resumes every active row, starts the TTL timer. Returns NULL
 * with err set if the driver refuses the watch or memory is out.
 */
struct sg_reconciler *sg_reconciler_start(uv_loop_t *loop,
                                          struct sg_store *store,
                                          struct sg_driver *driver,
                                          const struct sg_reconciler_config *cfg,
                                          struct sg_error *err)
    SG_WARN_UNUSED_RESULT;

/* Look at sandbox id soon, reading it from the store. Any thread;
   ignored once stopping. */
void sg_reconciler_kick(struct sg_reconciler *rec, const char *id);

/* The same for a row just written (copied; the loop starts from it
   instead of reading the store). Any thread. */
void sg_reconciler_kick_row(struct sg_reconciler *rec,
                            const struct sg_sandbox_row *row);

/*
 * Stop taking steps: timers and the work queue close; results still in
 * flight are dropped when they arrive. The driver is not closed here.
 * Loop thread. Then close the driver and the store (their callbacks may
 * still arrive until they are closed), run the loop until the handles are
 * closed, and call sg_reconciler_free.
 */
void sg_reconciler_stop(struct sg_reconciler *rec);

/*
 * Free after sg_reconciler_stop, once the store is closed (so no store
 * callback can arrive) and the loop has run the close callbacks. NULL-safe.
 */
void sg_reconciler_free(struct sg_reconciler *rec);

/* Counters for tests and logs. Any thread (values may be a moment old). */
struct sg_reconciler_stats {
    uint64_t steps;        /* reconcile passes */
    uint64_t writes;       /* store writes issued */
    uint64_t driver_calls; /* driver ops issued */
    uint64_t retries;      /* backoffs scheduled */
    uint64_t orphans;      /* driver objects removed for lack of a record */
    uint64_t resyncs;      /* completed resync passes */
    size_t active;         /* sandboxes being worked on now */
    bool resumed;          /* the start-up pass has finished */
};
void sg_reconciler_get_stats(struct sg_reconciler *rec,
                             struct sg_reconciler_stats *out);

#endif /* SG_RECONCILER_H */
