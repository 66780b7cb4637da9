/*
 * store.h: durable state of the gateway (sandboxes and their events,
 * credential records).
 *
 * A store is a backend ops table (struct sg_store_ops, below) plus its
 * private state. Callers use only the sg_store_* functions; backends
 * (store_sqlite.c today, PostgreSQL later) implement the table. The store
 * knows nothing of protobuf: a sandbox is a set of typed columns the store
 * filters and indexes on, plus the full record as opaque bytes (a packed
 * sandgate.v1.Sandbox, written and read by the service layer).
 *
 * WRITES are asynchronous: sg_store_create_sandbox and
 * sg_store_update_sandbox queue the write and return at once; the backend
 * commits queued writes of many callers together (group commit) and then
 * runs each callback, on a store thread. A callback runs only after its write
 * is durable at the configured level, exactly once, including at shutdown
 * (with SG_ERR_UNAVAILABLE for writes that never ran).
 *
 * Every write of a sandbox also appends one event row in the same
 * transaction. The store assigns its sequence number (strictly increasing,
 * no gaps among committed events) and the sandbox's new resource_version
 * (strictly increasing across the whole store; the event records it too).
 *
 * READS are synchronous and may run on any thread concurrently with writes;
 * they see only committed data. A read blocks its thread for one query (for
 * a network backend, one round trip).
 *
 * OWNERSHIP: rows handed to callbacks and visitors are borrowed for the
 * duration of the call; sg_sandbox_row_copy makes an owned copy.
 * THREAD SAFETY: every sg_store_* function may be called from any thread,
 * except sg_store_open and sg_store_close (one thread, no call in flight).
 * A write callback may call any sg_store_* function but sg_store_close. A
 * visitor runs while its read holds a pooled connection: it may queue
 * writes but must not read from the store (it could wait forever for a
 * connection it holds itself).
 */
#ifndef SG_STORE_H
#define SG_STORE_H

#include "internal.h"
#include "error.h"

struct sg_store;

/* Phase numbers are those of sandgate.v1.SandboxPhase. */
enum sg_phase {
    SG_PHASE_ACCEPTED = 1,
    SG_PHASE_PROVISIONING = 2,
    SG_PHASE_READY = 3,
    SG_PHASE_FAILED = 4,
    SG_PHASE_DELETING = 5,
    SG_PHASE_DELETED = 6,
};

/* A set of phases for filters: SG_PHASE_BIT(SG_PHASE_READY) | ... */
#define SG_PHASE_BIT(p) (1u << (p))
/* Phases the reconciler still has work for. FAILED is included: a failed
   sandbox keeps its backend object until it is deleted or expires. */
#define SG_PHASES_ACTIVE                                                       \
    (SG_PHASE_BIT(SG_PHASE_ACCEPTED) | SG_PHASE_BIT(SG_PHASE_PROVISIONING) |   \
     SG_PHASE_BIT(SG_PHASE_READY) | SG_PHASE_BIT(SG_PHASE_FAILED) |            \
     SG_PHASE_BIT(SG_PHASE_DELETING))

/* Event type numbers are those of sandgate.v1.EventType. */
enum sg_event_type {
    SG_EVENT_ACCEPTED = 1,
    SG_EVENT_ALLOCATION_STARTED = 2,
    SG_EVENT_RESOURCE_CREATED = 3,
    SG_EVENT_CREDENTIALS_RESOLVED = 4,
    SG_EVENT_POLICY_ATTACHED = 5,
    SG_EVENT_READY = 6,
    SG_EVENT_FAILED = 7,
    SG_EVENT_DELETE_REQUESTED = 8,
    SG_EVENT_DELETED = 9,
    SG_EVENT_EXPIRED = 10,
};

/* Times are milliseconds since the Unix epoch; 0 means unset. */
struct sg_sandbox_row {
    char *id;
    char *name;
    char *tenant;
    char *project;
    char *owner;
    char *request_id;     /* "" when the caller gave none */
    char *request_hash;   /* digest of the create request (idempotency) */
    char *namespace_name; /* resolved placement namespace, may be "" */
    enum sg_phase phase;
    int64_t create_time;
    int64_t update_time;
    int64_t expire_time;  /* TTL deadline, 0 = none */
    uint64_t resource_version;  /* assigned by the store on every write */
    uint8_t *record;      /* packed sandgate.v1.Sandbox */
    size_t record_len;
};

/* One event row. Strings may be "" but not NULL. */
struct sg_event_row {
    uint64_t seq;              /* assigned by the store */
    int64_t time;              /* ms; the store sets it if 0 */
    enum sg_event_type type;
    char *sandbox_id;
    char *sandbox_name;
    char *namespace_name;
    char *tenant;
    char *project;
    char *owner;
    char *request_id;
    enum sg_phase phase;
    char *reason;              /* CamelCase */
    char *message;
    uint64_t resource_version; /* assigned by the store */
};

/*
 * Filters for listing sandboxes; NULL, "" and 0 fields do not filter ("" so
 * that an unset protobuf string, which is "", means "any").
 */
struct sg_sandbox_filter {
    const char *tenant;
    const char *project;
    const char *owner;
    const char *namespace_name;
    unsigned phases;           /* SG_PHASE_BIT set; 0 = any */
    int64_t expire_before;     /* only rows with 0 < expire_time <= this */
};

/* Filters for listing events; NULL, "" and 0 fields do not filter. */
struct sg_event_filter {
    const char *tenant;
    const char *namespace_name;
    const char *sandbox_id;
    uint32_t types;            /* bit (1u << sg_event_type) set; 0 = any */
};

/* Backend selection and settings. NULL / "" / 0 select the default. */
struct sg_store_config {
    const char *backend;       /* "sqlite" (default) */
    const char *path;          /* sqlite: database file, required; created
                                  with mode 0600 */
    /* "full" (default): a write is acknowledged after it reached stable
       storage (survives power loss); "normal": after it reached the OS
       (survives a crash of the gateway, not of the machine). */
    const char *durability;
    unsigned busy_timeout_ms;  /* wait on a locked database this long
                                  (default 5000) */
    unsigned max_batch;        /* writes per group commit (default 256) */
    unsigned read_connections; /* size of the read pool, 1..64 (default 4) */
    /* Event retention: the writer deletes the oldest events beyond the
       newest event_retention_count, and the oldest ones whose time is more
       than event_retention_age_ms in the past (0: no such limit; both 0,
       the default, keep every event). Deletion always takes a prefix in
       seq order: an old event behind a newer-stamped one waits for it.
       It runs after commits (none while nothing is written), at most
       about once a second or every few dozen commits, a bounded chunk at
       a time, so a retention below the backlog catches up over the
       following commits instead of stalling one. */
    uint64_t event_retention_count;   /* at most INT64_MAX */
    int64_t event_retention_age_ms;   /* >= 0 */
};

/*
 * Counters since open, for tests, benchmarks and metrics. Group commit is
 * working when commits < writes under concurrent load.
 */
struct sg_store_stats {
    uint64_t writes;         /* write requests the writer finished (any
                                outcome, including errors) */
    uint64_t commits;        /* write transactions committed */
    uint64_t batches;        /* write transactions attempted (a batch
                                retried after SQLITE_BUSY counts once) */
    uint64_t failed_batches; /* batches that failed as a whole */
    uint64_t busy_retries;   /* batch attempts repeated after SQLITE_BUSY */
    uint64_t max_batch;      /* most writes in one batch so far */
    uint64_t queued;         /* writes waiting for the writer now */
    uint64_t read_waits;     /* reads that waited for a pooled connection */
    uint64_t purges;         /* retention transactions that deleted events */
    uint64_t events_purged;  /* events they deleted */
};

/*
 * Result of a sandbox write, for its callback.
 *   created  create: true if the row was inserted, false if a row with
 *            the same (owner, request_id) already existed (then row is
 *            that existing row and no event was written).
 *   row      the row as stored after the write (or the existing row);
 *            NULL when err is set.
 *   event    the event written, or NULL.
 *   err      NULL on success. Codes: SG_ERR_ABORTED (update: the
 *            resource_version did not match; row is NULL), SG_ERR_NOT_FOUND
 *            (update: no such id), SG_ERR_ALREADY_EXISTS (create: the
 *            id is taken; update: the new (owner, request_id) is taken),
 *            SG_ERR_UNAVAILABLE (the database stayed locked by another
 *            process through every retry), SG_ERR_INTERNAL (backend
 *            failure, or the batch's commit failed: nothing of the batch
 *            was written; message for logs only).
 */
struct sg_store_result {
    bool created;
    const struct sg_sandbox_row *row;
    const struct sg_event_row *events; /* written, in seq order */
    size_t n_events;
    const struct sg_error *err;
};

typedef void (*sg_store_write_cb)(void *opaque,
                                  const struct sg_store_result *res);

/*
 * Called after every commit with every event the commit wrote (n_evs > 0;
 * one call per commit, one per write of it should memory run out), in seq
 * order and consecutive across calls, before the writes' own callbacks
 * run, on the writer thread: it must not block or read from the store,
 * and must not call sg_store_set_commit_observer. A batch that fails is
 * never observed. Events have their seq, time and resource_version set
 * and are borrowed for the call. (Consecutive assumes this store is the
 * only writer of its database.)
 */
typedef void (*sg_store_commit_fn)(void *opaque,
                                   const struct sg_event_row *evs,
                                   size_t n_evs);

/* A visitor returns 0 to go on, anything else to stop (not an error). */
typedef int (*sg_sandbox_visit_fn)(void *opaque,
                                   const struct sg_sandbox_row *row);
typedef int (*sg_event_visit_fn)(void *opaque, const struct sg_event_row *ev);

/*
 * A credential record: a reference to secret material, never the
 * material. Keyed by (tenant, name); record is a packed
 * sandgate.v1.Credential. Credential writes append no events and do not
 * advance resource_version.
 */
struct sg_credential_row {
    char *tenant;
    char *name;
    char *kind;           /* source kind */
    char *owner;
    int64_t create_time;  /* ms */
    int64_t update_time;  /* ms */
    uint8_t *record;
    size_t record_len;
};

/* Filters for listing credentials; NULL and "" do not filter. */
struct sg_credential_filter {
    const char *tenant;
    const char *kind;
};

/*
 * Result of a credential write, for its callback.
 *   row  create: the row as stored; delete: the row as it was before.
 *        NULL when err is set.
 *   err  NULL on success. Codes: SG_ERR_ALREADY_EXISTS (create: the
 *        tenant has a record of that name), SG_ERR_NOT_FOUND (delete: no
 *        such record), SG_ERR_UNAVAILABLE, SG_ERR_INTERNAL (as for
 *        sandbox writes: a failed batch wrote nothing).
 */
struct sg_store_credential_result {
    const struct sg_credential_row *row;
    const struct sg_error *err;
};

typedef void (*sg_store_credential_cb)(
    void *opaque, const struct sg_store_credential_result *res);

typedef int (*sg_credential_visit_fn)(void *opaque,
                                      const struct sg_credential_row *row);

/* --- the backend table ------------------------------------------------ */

struct sg_store_ops {
    const char *name;   /* config value selecting it, e.g. "sqlite" */
    size_t priv_size;   /* zero-filled private state, allocated by store.c */

    /* Open or create the database and run pending migrations. */
    int (*open)(void *priv, const struct sg_store_config *cfg,
                struct sg_error *err);
    /* Finish queued writes (their callbacks run), then release everything. */
    void (*close)(void *priv);

    /* Async writes; see sg_store_create_sandbox / sg_store_update_sandbox. */
    int (*create_sandbox)(void *priv, const struct sg_sandbox_row *row,
                          const struct sg_event_row *ev, sg_store_write_cb cb,
                          void *opaque, struct sg_error *err);
    int (*update_sandbox)(void *priv, const struct sg_sandbox_row *row,
                          uint64_t expected_rv, const struct sg_event_row *evs,
                          size_t n_evs,
                          sg_store_write_cb cb, void *opaque,
                          struct sg_error *err);

    /* Sync reads; see the sg_store_* functions below. */
    int (*get_sandbox)(void *priv, const char *id,
                       sg_sandbox_visit_fn visit, void *opaque,
                       struct sg_error *err);
    int (*list_sandboxes)(void *priv, const struct sg_sandbox_filter *f,
                          const char *after_id, size_t max_rows,
                          sg_sandbox_visit_fn visit, void *opaque,
                          struct sg_error *err);
    /* f and scanned_to are never NULL (store.c passes an empty filter
       and a scratch cursor). */
    ssize_t (*list_events)(void *priv, const struct sg_event_filter *f,
                           uint64_t after_seq, size_t max_rows,
                           size_t max_scan, uint64_t *scanned_to,
                           sg_event_visit_fn visit, void *opaque,
                           struct sg_error *err);
    int (*event_bounds)(void *priv, uint64_t *oldest, uint64_t *newest,
                        struct sg_error *err);
    int (*count_sandboxes)(void *priv, const struct sg_sandbox_filter *f,
                           uint64_t *count, struct sg_error *err);

    /* Credential records; see the sg_store_*_credential functions. */
    int (*create_credential)(void *priv, const struct sg_credential_row *row,
                             sg_store_credential_cb cb, void *opaque,
                             struct sg_error *err);
    int (*delete_credential)(void *priv, const char *tenant,
                             const char *name, sg_store_credential_cb cb,
                             void *opaque, struct sg_error *err);
    int (*get_credential)(void *priv, const char *tenant, const char *name,
                          sg_credential_visit_fn visit, void *opaque,
                          struct sg_error *err);
    /* f is never NULL; after_tenant and after_name never NULL. */
    ssize_t (*list_credentials)(void *priv,
                                const struct sg_credential_filter *f,
                                const char *after_tenant,
                                const char *after_name, size_t max_rows,
                                sg_credential_visit_fn visit, void *opaque,
                                struct sg_error *err);

    /* See sg_store_set_commit_observer: the backend calls the observer
       from its writer. */
    void (*set_commit_observer)(void *priv, sg_store_commit_fn fn,
                                void *opaque);

    /* See sg_store_get_stats and sg_store_schema_version. */
    void (*get_stats)(void *priv, struct sg_store_stats *out);
    unsigned (*schema_version)(void *priv);
};

/* The backends store.c selects from (by name). */
extern const struct sg_store_ops sg_store_sqlite_ops;

/* --- the API callers use ---------------------------------------------- */

/*
 * Open the backend cfg->backend names and apply pending schema
 * migrations. cfg is read during the call only. Returns a store the caller
 * owns and closes with sg_store_close, or NULL with err set (SG_ERR_CONFIG
 * for an unknown backend, a bad setting, or a database whose schema is
 * newer than this build; SG_ERR_IO when the database cannot be opened;
 * SG_ERR_INTERNAL when a migration fails).
 */
struct sg_store *sg_store_open(const struct sg_store_config *cfg,
                               struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Refuse new writes (SG_ERR_UNAVAILABLE), run the queued ones (their
 * callbacks run), then free. NULL-safe. Not from a write callback.
 */
void sg_store_close(struct sg_store *store);

/* The backend's name ("sqlite"); static string. */
const char *sg_store_backend(const struct sg_store *store);

/* Copy the counters into *out (a consistent snapshot). Any thread. */
void sg_store_get_stats(struct sg_store *store, struct sg_store_stats *out);

/*
 * Schema version of the open database (the newest migration this build
 * has; open applied any that were missing). Any thread.
 */
unsigned sg_store_schema_version(struct sg_store *store);

/*
 * Insert row with event ev, unless row->request_id is non-empty and a row
 * with the same owner and request_id exists. row->resource_version and
 * ev->seq / ev->resource_version are ignored (the store assigns them).
 * row and ev are copied: the caller keeps ownership and may free them on
 * return. cb may be NULL (nothing to tell). Returns 0 and later runs cb
 * once, on the store's writer thread; or -1 with err set and cb never runs
 * (SG_ERR_INVALID_ARGUMENT when row or row->id is NULL or "",
 * SG_ERR_UNAVAILABLE when closing, SG_ERR_NO_MEMORY).
 */
int sg_store_create_sandbox(struct sg_store *store,
                            const struct sg_sandbox_row *row,
                            const struct sg_event_row *ev,
                            sg_store_write_cb cb, void *opaque,
                            struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Most events one update may append. */
#define SG_STORE_MAX_EVENTS 8

/*
 * Update the row with row->id from row: its phase, update_time and record
 * (the identity and ownership columns, namespace and expire_time are fixed
 * when the sandbox is created and are not rewritten; callers pass them as
 * stored, and the result echoes row), and
 * append the n_evs events evs (at most SG_STORE_MAX_EVENTS; they get
 * consecutive sequence numbers and share the new resource_version), if the
 * stored resource_version equals expected_rv (0: any). n_evs may be 0 for
 * a change that is not a state change; the resource_version still
 * advances. Same return and callback contract as sg_store_create_sandbox.
 */
int sg_store_update_sandbox(struct sg_store *store,
                            const struct sg_sandbox_row *row,
                            uint64_t expected_rv,
                            const struct sg_event_row *evs, size_t n_evs,
                            sg_store_write_cb cb, void *opaque,
                            struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Read one sandbox: visit runs once if it exists. Returns 1 if found, 0 if
 * not, -1 with err set on failure.
 */
int sg_store_get_sandbox(struct sg_store *store, const char *id,
                         sg_sandbox_visit_fn visit, void *opaque,
                         struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * The same, into an owned copy (*out, freed with sg_sandbox_row_free; NULL
 * unless 1 is returned). Out of memory is -1 with SG_ERR_NO_MEMORY.
 */
int sg_store_get_sandbox_copy(struct sg_store *store, const char *id,
                              struct sg_sandbox_row **out,
                              struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Visit rows matching f with id > after_id ("" or NULL: from the start), in
 * ascending id order, at most max_rows of them, until visit returns
 * non-zero (that row counts as visited). max_rows 0: no limit. Returns the
 * number of rows visited, or -1 with err set. One snapshot per call:
 * paging by the last id seen returns every row that exists throughout
 * exactly once, whatever is written between pages.
 */
ssize_t sg_store_list_sandboxes(struct sg_store *store,
                                const struct sg_sandbox_filter *f,
                                const char *after_id, size_t max_rows,
                                sg_sandbox_visit_fn visit, void *opaque,
                                struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Count rows matching f. Returns 0 or -1 with err set. */
int sg_store_count_sandboxes(struct sg_store *store,
                             const struct sg_sandbox_filter *f,
                             uint64_t *count,
                             struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Visit events matching f (NULL: all) with seq > after_seq in ascending
 * seq order, at most max_rows matches (0: no limit), until visit returns
 * non-zero (that event counts as visited). At most max_scan events are
 * examined (0: no limit), so that a rare filter cannot make one call read
 * all of history: the call covers at most the seqs after_seq + 1 ..
 * after_seq + max_scan. *scanned_to (may be NULL) is set to the highest
 * seq covered, at least after_seq: the last event visited when max_rows
 * or the visitor ended the call, else the end of the covered range, which
 * is the newest committed seq when the call read to the end of history
 * (so a filter that matched nothing still moves the cursor). Calling
 * again with after_seq = *scanned_to misses nothing and repeats nothing.
 * One snapshot per call. Returns the number visited, or -1 with err set.
 *
 * Retention may purge events between calls: a caller that needs to know
 * it missed none checks sg_store_event_bounds after the read (oldest - 1
 * <= its cursor then means the read was complete: purges only move
 * oldest up).
 */
ssize_t sg_store_list_events(struct sg_store *store,
                             const struct sg_event_filter *f,
                             uint64_t after_seq, size_t max_rows,
                             size_t max_scan, uint64_t *scanned_to,
                             sg_event_visit_fn visit, void *opaque,
                             struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * The retained window of events: *oldest is the smallest seq still
 * retained (the seq after the purge horizon, also when nothing is
 * retained: 1 before any purge), *newest the highest seq committed (0
 * before any event; seqs are never reused). Every event with oldest <= seq
 * <= newest is readable; a reader whose cursor is below oldest - 1 has
 * lost events. Both come from one snapshot and survive restarts. Returns
 * 0, or -1 with err set.
 */
int sg_store_event_bounds(struct sg_store *store, uint64_t *oldest,
                          uint64_t *newest,
                          struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Install (fn non-NULL) or remove (fn NULL) the commit observer; one per
 * store, the last one set wins. Any thread but the observer's own. Waits
 * for a call of the previous observer in progress: once it returns, the
 * previous observer is not called again (its opaque may be freed). Set it
 * before the first write to see every event from the start.
 */
void sg_store_set_commit_observer(struct sg_store *store,
                                  sg_store_commit_fn fn, void *opaque);

/* Owned deep copy of a row (NULL strings become ""); NULL when out of
   memory. Any thread. */
struct sg_sandbox_row *sg_sandbox_row_copy(const struct sg_sandbox_row *row);
/* Free an owned row (and its strings). NULL-safe. */
void sg_sandbox_row_free(struct sg_sandbox_row *row);
/* Free only the strings and record inside a row. NULL-safe. */
void sg_sandbox_row_clear(struct sg_sandbox_row *row);

/* Owned deep copy of an event (NULL strings become ""); NULL when out of
   memory. */
struct sg_event_row *sg_event_row_copy(const struct sg_event_row *ev);
/* Free an owned event (and its strings). NULL-safe. */
void sg_event_row_free(struct sg_event_row *ev);
/* Free only the strings inside an event row. NULL-safe. */
void sg_event_row_clear(struct sg_event_row *ev);

/* --- credential records ------------------------------------------------ */

/*
 * Insert a credential record, through the writer like every write (same
 * contract as sg_store_create_sandbox: row is copied, cb runs once on a
 * store thread after the write is durable). The callback's err is
 * SG_ERR_ALREADY_EXISTS when (tenant, name) is taken. Returns 0, or -1
 * with err set and cb never runs (SG_ERR_INVALID_ARGUMENT when tenant,
 * name or kind is NULL or "", SG_ERR_UNAVAILABLE when closing,
 * SG_ERR_NO_MEMORY).
 */
int sg_store_create_credential(struct sg_store *store,
                               const struct sg_credential_row *row,
                               sg_store_credential_cb cb, void *opaque,
                               struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Delete the record (tenant, name); the callback gets the row as it was,
 * or SG_ERR_NOT_FOUND. Same return contract as the create.
 */
int sg_store_delete_credential(struct sg_store *store, const char *tenant,
                               const char *name, sg_store_credential_cb cb,
                               void *opaque,
                               struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Read one record into an owned copy (*out: sg_credential_row_free; NULL
   unless 1 is returned). 1 found, 0 not, -1 with err set. */
int sg_store_get_credential_copy(struct sg_store *store, const char *tenant,
                                 const char *name,
                                 struct sg_credential_row **out,
                                 struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Visit records matching f (NULL: all) after the key (after_tenant,
 * after_name) (NULL or "" for both: from the start) in ascending (tenant,
 * name) order, at most max_rows (0: no limit), until visit returns
 * non-zero (that row counts as visited). One snapshot per call. Returns
 * the number visited, or -1 with err set.
 */
ssize_t sg_store_list_credentials(struct sg_store *store,
                                  const struct sg_credential_filter *f,
                                  const char *after_tenant,
                                  const char *after_name, size_t max_rows,
                                  sg_credential_visit_fn visit, void *opaque,
                                  struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Owned deep copy (NULL strings become ""); NULL when out of memory. */
struct sg_credential_row *sg_credential_row_copy(
    const struct sg_credential_row *row);
/* Free an owned row. NULL-safe. */
void sg_credential_row_free(struct sg_credential_row *row);

/* Stable lower-case name of a phase ("ready"), or "unknown". */
const char *sg_phase_name(enum sg_phase phase);

#endif /* SG_STORE_H */
