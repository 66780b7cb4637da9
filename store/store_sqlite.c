/*
 * store_sqlite.c: the SQLite backend of store.h.
 *
 * One database file in WAL mode: readers never block the writer or each
 * other, and every read sees the last committed snapshot.
 *
 * WRITES. One writer thread owns the only write connection. A caller queues
 * a packed copy of its request (one allocation) and returns. The writer
 * takes everything queued, up to max_batch, and runs it as one transaction,
 * each request inside its own savepoint so that a failing request rolls
 * back alone. One COMMIT, hence one fsync with synchronous=FULL, covers the
 * whole batch: that is the group commit. Callbacks run after the COMMIT, so
 * none reports a write that is not durable. A batch that fails as a whole
 * (BEGIN, COMMIT, or SQLite abandoning the transaction) fails every request
 * in it; SQLITE_BUSY (another process held the write lock beyond
 * busy_timeout) first retries the batch a few times.
 *
 * READS. A fixed pool of connections; a read checks one out, runs one
 * statement and gives it back. Statements are prepared once per connection
 * and kept (SQLITE_PREPARE_PERSISTENT); list and count statements are
 * cached per filter shape (which fields are set), so a paging client or
 * the reconciler reuses its plan. Visitors get pointers straight into
 * SQLite's column buffers: no allocation per row.
 *
 * EVENTS. After each commit the writer hands the commit's events to the
 * commit observer, then the callbacks to the completion thread. Listing
 * walks the primary key from the cursor and tests the filter on each row;
 * the walk covers at most max_scan consecutive seqs (committed seqs have
 * no gaps, so that bounds the rows examined). A sandbox filter walks the
 * events_sandbox index instead, which holds only that sandbox's rows.
 * No index per tenant, namespace or type: every event insert and every
 * purged row would pay for it (see migration 0002).
 *
 * RETENTION. After a commit, at most once a second or every
 * PURGE_EVERY_COMMITS commits, the writer deletes the oldest events beyond
 * the count limit and, from the oldest on, those older than the age limit,
 * in a transaction of its own that also records the new horizon in meta
 * ('events_purged_through'). One purge deletes at most a chunk that grows
 * with the events written since the previous one (so it keeps up with any
 * write rate) and is capped (so it never holds the next batch up long); a
 * purge that hit the cap runs again after the next commit. It commits
 * without its own fsync: the next batch's fsync covers its WAL frames,
 * and a lost purge only brings back events, consistently with the
 * horizon.
 *
 * MIGRATIONS (migrations/sqlite/NNNN_name.sql, embedded at build time) run
 * at open, in order, each in its own transaction, recorded in
 * schema_migrations.
 */
#include "internal.h"

#include "store.h"
#include "buf.h"
#include "log.h"
#include "sqlite_migrations.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

SG_LOG_INIT("store.sqlite");

#define DEFAULT_BUSY_TIMEOUT_MS 5000
#define MAX_BUSY_TIMEOUT_MS 3600000
#define DEFAULT_MAX_BATCH 256
#define MAX_MAX_BATCH 100000
#define DEFAULT_READ_CONNECTIONS 4
#define MAX_READ_CONNECTIONS 64
/* Attempts after the first one of a batch that hit SQLITE_BUSY. Each
   attempt already waited busy_timeout inside SQLite; the backoff only
   spaces them out. */
#define BUSY_RETRIES 3
#define BUSY_BACKOFF_MS 10
/* Retention: when a purge runs after a commit, and how much it may do. */
#define PURGE_INTERVAL_MS 1000
#define PURGE_EVERY_COMMITS 32
#define PURGE_CHUNK 1000
#define PURGE_CHUNK_MAX 8192

#define SANDBOX_COLUMNS                                                        \
    "id, name, tenant, project, owner, request_id, request_hash, namespace, "  \
    "phase, create_time, update_time, expire_time, resource_version, record"
#define EVENT_COLUMNS                                                          \
    "seq, time, type, sandbox_id, sandbox_name, namespace, tenant, project, "  \
    "owner, request_id, phase, reason, message, resource_version"
#define CREDENTIAL_COLUMNS                                                     \
    "tenant, name, kind, owner, create_time, update_time, record"

/* The writer's statements, prepared once at open. */
enum wstmt {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_SAVEPOINT,
    W_RELEASE,
    W_ROLLBACK_TO,
    W_FIND_REQUEST,
    W_GET_RV,
    W_GET_COUNTER,
    W_SET_COUNTER,
    W_INSERT,
    W_UPDATE,
    W_INSERT_EVENT,
    W_GET_PURGED,
    W_FIRST_YOUNG,
    W_PURGE,
    W_SET_PURGED,
    W_SYNC_NORMAL,
    W_SYNC_FULL,
    W_CRED_INSERT,
    W_CRED_GET,
    W_CRED_DELETE,
    W_COUNT
};

static const char *const wstmt_sql[W_COUNT] = {
    /* IMMEDIATE: take the write lock now, so a busy database shows up
       here, before any request ran, and the batch can simply be retried. */
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_SAVEPOINT] = "SAVEPOINT req",
    [W_RELEASE] = "RELEASE req",
    [W_ROLLBACK_TO] = "ROLLBACK TO req",
    /* request_id <> '' lets SQLite use the partial unique index. */
    [W_FIND_REQUEST] = "SELECT " SANDBOX_COLUMNS " FROM sandboxes "
                       "WHERE owner = ?1 AND request_id = ?2 "
                       "AND request_id <> ''",
    [W_GET_RV] = "SELECT resource_version FROM sandboxes WHERE id = ?1",
    [W_GET_COUNTER] = "SELECT (SELECT value FROM meta "
                      "WHERE key = 'resource_version'), "
                      "(SELECT value FROM meta WHERE key = 'event_seq')",
    [W_SET_COUNTER] = "UPDATE meta SET value = CASE key "
                      "WHEN 'resource_version' THEN ?1 ELSE ?2 END "
                      "WHERE key IN ('resource_version', 'event_seq')",
    [W_INSERT] = "INSERT INTO sandboxes (" SANDBOX_COLUMNS ") VALUES "
                 "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                 "?14)",
    /* Only the columns a sandbox's life changes: SQLite maintains every
       index on a column named in SET, changed or not. The parameter
       numbers are bind_row's; the others are bound and unused. */
    [W_UPDATE] = "UPDATE sandboxes SET phase = ?9, update_time = ?11, "
                 "resource_version = ?13, record = ?14 WHERE id = ?1",
    [W_INSERT_EVENT] = "INSERT INTO events (time, type, sandbox_id, "
                       "sandbox_name, namespace, tenant, project, owner, "
                       "request_id, phase, reason, message, "
                       "resource_version, seq) VALUES (?1, ?2, ?3, ?4, ?5, "
                       "?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    [W_GET_PURGED] = "SELECT value FROM meta "
                     "WHERE key = 'events_purged_through'",
    /* The first event in (?1, ?2] young enough to keep: the age purge
       stops before it. A walk of the primary key, at most a chunk. */
    [W_FIRST_YOUNG] = "SELECT seq FROM events WHERE seq > ?1 AND seq <= ?2 "
                      "AND time >= ?3 ORDER BY seq LIMIT 1",
    [W_PURGE] = "DELETE FROM events WHERE seq > ?1 AND seq <= ?2",
    [W_SET_PURGED] = "UPDATE meta SET value = ?1 "
                     "WHERE key = 'events_purged_through'",
    /* A purge commits without an fsync of its own (see the top). */
    [W_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
    [W_SYNC_FULL] = "PRAGMA synchronous = FULL",
    [W_CRED_INSERT] = "INSERT INTO credentials (" CREDENTIAL_COLUMNS ") "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [W_CRED_GET] = "SELECT " CREDENTIAL_COLUMNS " FROM credentials "
                   "WHERE tenant = ?1 AND name = ?2",
    [W_CRED_DELETE] = "DELETE FROM credentials "
                      "WHERE tenant = ?1 AND name = ?2",
};

/* Fixed read statements; list/count ones are per filter shape. */
enum rstmt {
    R_GET,
    R_BOUNDS,
    R_BEGIN,
    R_END,
    R_CRED_GET,
    R_CRED_LIST,
    R_COUNT
};

static const char *const rstmt_sql[R_COUNT] = {
    [R_BEGIN] = "BEGIN",
    [R_END] = "COMMIT",
    [R_GET] = "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE id = ?1",
    [R_BOUNDS] = "SELECT (SELECT value FROM meta "
                 "WHERE key = 'events_purged_through'), "
                 "(SELECT value FROM meta WHERE key = 'event_seq')",
    [R_CRED_GET] = "SELECT " CREDENTIAL_COLUMNS " FROM credentials "
                   "WHERE tenant = ?1 AND name = ?2",
    /* Few records per gateway: one statement for every filter shape,
       walking the primary key in page order. */
    [R_CRED_LIST] = "SELECT " CREDENTIAL_COLUMNS " FROM credentials "
                    "WHERE (tenant, name) > (?3, ?4) "
                    "AND (?1 = '' OR tenant = ?1) "
                    "AND (?2 = '' OR kind = ?2) "
                    "ORDER BY tenant, name LIMIT ?5",
};

/* Filter shape: which terms a list/count statement has. */
enum {
    SHAPE_TENANT = 1u << 0,
    SHAPE_PROJECT = 1u << 1,
    SHAPE_OWNER = 1u << 2,
    SHAPE_NAMESPACE = 1u << 3,
    SHAPE_EXPIRE = 1u << 4,
    SHAPE_AFTER = 1u << 5,
    SHAPE_COUNT = 1u << 6,
    SHAPE_EVENTS = 1u << 7, /* an event listing; then only the EV_ bits */
    SHAPE_PHASES_SHIFT = 8, /* above: how many phases the IN list has */
};

/* Event filter shape (with SHAPE_EVENTS). */
enum {
    EV_SHAPE_TENANT = 1u << 0,
    EV_SHAPE_NAMESPACE = 1u << 1,
    EV_SHAPE_SANDBOX = 1u << 2,
    EV_SHAPE_TYPES = 1u << 3,
};

struct shape_stmt {
    unsigned key;
    sqlite3_stmt *st;
};

struct read_conn {
    sqlite3 *db;
    /* A read transaction left open between reads, while no commit has
       happened since it began (epoch): starting and ending one costs two
       fcntl() calls on the WAL index, as much as the read itself. */
    bool in_txn;
    uint64_t epoch;
    sqlite3_stmt *st[R_COUNT];
    struct shape_stmt *shapes;
    size_t n_shapes;
    size_t cap_shapes;
};

/*
 * A queued write: the caller's row and event, copied with their strings
 * and record into data[], and the outcome the writer fills in.
 */
/* What a queued write does. */
enum req_op {
    OP_SANDBOX = 0, /* create or update (is_update) of row */
    OP_CRED_CREATE, /* insert cred */
    OP_CRED_DELETE, /* delete (cred.tenant, cred.name) */
};

struct write_req {
    struct write_req *next;
    enum req_op op;
    bool is_update;
    uint64_t expected_rv;
    sg_store_write_cb cb;
    void *opaque;
    struct sg_sandbox_row row; /* strings point into data[] */
    struct sg_event_row evs[SG_STORE_MAX_EVENTS]; /* likewise */
    size_t n_evs;

    bool created;
    bool modified; /* changed the database before failing */
    size_t wrote_events;
    struct sg_sandbox_row *existing; /* owned: create found this row */
    struct sg_error err;

    /* Credential writes (op != OP_SANDBOX); strings point into data[]. */
    struct sg_credential_row cred;
    sg_store_credential_cb ccb;
    struct sg_credential_row *cred_before; /* owned: delete removed it */

    char data[];
};

struct sqlite_store {
    /* Settings, fixed at open. */
    char *path;
    bool full_sync;
    unsigned busy_timeout_ms;
    unsigned max_batch;
    unsigned n_readers;
    unsigned schema_version;

    /* The writer thread's own (open and close use them only while it does
       not run). */
    sqlite3 *wdb;
    sqlite3_stmt *wst[W_COUNT];
    struct write_req **batch; /* max_batch slots */

    bool locks_ready;
    pthread_mutex_t lock; /* the queue, closing and stats */
    pthread_cond_t wake;  /* writer: queue non-empty or closing */
    struct write_req *head;
    struct write_req *tail;
    bool closing;
    bool writer_started;
    pthread_t writer;
    struct sg_store_stats stats; /* but read_waits */
    uint64_t commit_epoch; /* commits so far (atomic): readers' freshness */
    uint64_t rv;          /* writer: last resource_version of the batch */
    uint64_t seq;         /* writer: last event seq of the batch */

    /* Retention (settings fixed at open; the rest the writer's own). */
    uint64_t retain_count;
    int64_t retain_age_ms;
    int64_t next_purge_ms;
    unsigned commits_since_purge;
    uint64_t events_since_purge;
    bool purge_backlog; /* the last purge stopped at its chunk */

    /* The commit observer; the writer holds obs_lock while calling it. */
    pthread_mutex_t obs_lock;
    sg_store_commit_fn obs_fn;
    void *obs_opaque;
    struct sg_event_row *obs_evs; /* writer: one commit's events */
    size_t obs_cap;

    /* Committed requests wait here for their callbacks, which run on the
       completion thread so that the writer can start the next batch. */
    pthread_cond_t done_wake;
    struct write_req *done_head;
    struct write_req *done_tail;
    bool writer_done;
    bool completer_started;
    pthread_t completer;

    pthread_mutex_t pool_lock; /* free_readers, read_waits */
    pthread_cond_t pool_cond;  /* a connection came back */
    struct read_conn *readers; /* n_readers */
    struct read_conn **free_readers;
    size_t n_free;
    uint64_t read_waits;
};

/* --- small helpers ----------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static bool is_set(const char *s)
{
    return s && s[0];
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out,
                   struct sg_error *err)
{
    int rc =
        sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);

    if (rc != SQLITE_OK) {
        sg_error_report(err, SG_ERR_INTERNAL,
                        "sqlite: cannot prepare \"%s\": %s", sql,
                        sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

/* Run one or more statements that return nothing we need. */
static int exec_sql(sqlite3 *db, const char *sql, const char *what,
                    struct sg_error *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        sg_error_report(err, SG_ERR_INTERNAL, "sqlite: %s: %s", what,
                        msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/*
 * First column of the first row of sql, as text (into buf) and/or integer.
 * On failure reports code with "<what>: <sqlite message>".
 */
static int query_one(sqlite3 *db, const char *sql, const char *what,
                     enum sg_err_code code, char *buf, size_t len, int64_t *num,
                     struct sg_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sg_error_report(err, code, "%s: %s", what,
                        rc == SQLITE_DONE ? "no result" : sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    if (buf) {
        const unsigned char *t = sqlite3_column_text(st, 0);

        snprintf(buf, len, "%s", t ? (const char *)t : "");
    }
    if (num)
        *num = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);

    return t ? (const char *)t : "";
}

/* Borrowed view of the current row of a SANDBOX_COLUMNS statement, valid
   until the statement steps or resets. */
static void row_from_stmt(sqlite3_stmt *st, struct sg_sandbox_row *row)
{
    row->id = (char *)col_text(st, 0);
    row->name = (char *)col_text(st, 1);
    row->tenant = (char *)col_text(st, 2);
    row->project = (char *)col_text(st, 3);
    row->owner = (char *)col_text(st, 4);
    row->request_id = (char *)col_text(st, 5);
    row->request_hash = (char *)col_text(st, 6);
    row->namespace_name = (char *)col_text(st, 7);
    row->phase = (enum sg_phase)sqlite3_column_int(st, 8);
    row->create_time = sqlite3_column_int64(st, 9);
    row->update_time = sqlite3_column_int64(st, 10);
    row->expire_time = sqlite3_column_int64(st, 11);
    row->resource_version = (uint64_t)sqlite3_column_int64(st, 12);
    /* blob before bytes: the documented order that avoids a conversion. */
    row->record = (uint8_t *)sqlite3_column_blob(st, 13);
    row->record_len = (size_t)sqlite3_column_bytes(st, 13);
}

static void event_from_stmt(sqlite3_stmt *st, struct sg_event_row *ev)
{
    ev->seq = (uint64_t)sqlite3_column_int64(st, 0);
    ev->time = sqlite3_column_int64(st, 1);
    ev->type = (enum sg_event_type)sqlite3_column_int(st, 2);
    ev->sandbox_id = (char *)col_text(st, 3);
    ev->sandbox_name = (char *)col_text(st, 4);
    ev->namespace_name = (char *)col_text(st, 5);
    ev->tenant = (char *)col_text(st, 6);
    ev->project = (char *)col_text(st, 7);
    ev->owner = (char *)col_text(st, 8);
    ev->request_id = (char *)col_text(st, 9);
    ev->phase = (enum sg_phase)sqlite3_column_int(st, 10);
    ev->reason = (char *)col_text(st, 11);
    ev->message = (char *)col_text(st, 12);
    ev->resource_version = (uint64_t)sqlite3_column_int64(st, 13);
}

/* SQLITE_STATIC: every value outlives the statement's next reset. */
static bool bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC) == SQLITE_OK;
}

static bool bind_int(sqlite3_stmt *st, int i, int64_t v)
{
    return sqlite3_bind_int64(st, i, v) == SQLITE_OK;
}

/* ?1..?14 in SANDBOX_COLUMNS order (W_INSERT and W_UPDATE). */
static bool bind_row(sqlite3_stmt *st, const struct sg_sandbox_row *row)
{
    bool ok = true;

    ok &= bind_text(st, 1, row->id);
    ok &= bind_text(st, 2, row->name);
    ok &= bind_text(st, 3, row->tenant);
    ok &= bind_text(st, 4, row->project);
    ok &= bind_text(st, 5, row->owner);
    ok &= bind_text(st, 6, row->request_id);
    ok &= bind_text(st, 7, row->request_hash);
    ok &= bind_text(st, 8, row->namespace_name);
    ok &= bind_int(st, 9, row->phase);
    ok &= bind_int(st, 10, row->create_time);
    ok &= bind_int(st, 11, row->update_time);
    ok &= bind_int(st, 12, row->expire_time);
    ok &= bind_int(st, 13, (int64_t)row->resource_version);
    /* A NULL pointer would bind SQL NULL; the column wants an empty blob. */
    ok &= sqlite3_bind_blob64(st, 14,
                              row->record ? (const void *)row->record
                                          : (const void *)"",
                              row->record_len, SQLITE_STATIC) == SQLITE_OK;
    return ok;
}

static bool bind_event(sqlite3_stmt *st, const struct sg_event_row *ev)
{
    bool ok = true;

    ok &= bind_int(st, 1, ev->time);
    ok &= bind_int(st, 2, ev->type);
    ok &= bind_text(st, 3, ev->sandbox_id);
    ok &= bind_text(st, 4, ev->sandbox_name);
    ok &= bind_text(st, 5, ev->namespace_name);
    ok &= bind_text(st, 6, ev->tenant);
    ok &= bind_text(st, 7, ev->project);
    ok &= bind_text(st, 8, ev->owner);
    ok &= bind_text(st, 9, ev->request_id);
    ok &= bind_int(st, 10, ev->phase);
    ok &= bind_text(st, 11, ev->reason);
    ok &= bind_text(st, 12, ev->message);
    ok &= bind_int(st, 13, (int64_t)ev->resource_version);
    return ok;
}

/* --- queued requests --------------------------------------------------- */

static size_t str_size(const char *s)
{
    return (s ? strlen(s) : 0) + 1;
}

static char *pack_str(char **cur, const char *s)
{
    size_t n = str_size(s);
    char *out = *cur;

    memcpy(out, s ? s : "", n);
    *cur += n;
    return out;
}

/* One allocation holding the request and copies of everything it points
   to: the caller may free its row as soon as the call returns. */
/* The strings of an event, in a fixed order. */
#define EVENT_STRINGS(ev)                                                      \
    {(ev)->sandbox_id, (ev)->sandbox_name, (ev)->namespace_name,               \
     (ev)->tenant,     (ev)->project,      (ev)->owner,                        \
     (ev)->request_id, (ev)->reason,       (ev)->message}

static size_t event_size(const struct sg_event_row *ev)
{
    const char *const esrc[] = EVENT_STRINGS(ev);
    size_t size = 0;

    for (size_t i = 0; i < SG_N_ELEMENTS(esrc); i++)
        size += str_size(esrc[i]);
    return size;
}

/* Copy ev into dst, its strings packed at *cur. */
static void event_pack(struct sg_event_row *dst, const struct sg_event_row *ev,
                       char **cur)
{
    const char *const esrc[] = EVENT_STRINGS(ev);
    char **const edst[] = {
        &dst->sandbox_id, &dst->sandbox_name, &dst->namespace_name,
        &dst->tenant,     &dst->project,      &dst->owner,
        &dst->request_id, &dst->reason,       &dst->message};

    *dst = *ev;
    for (size_t i = 0; i < SG_N_ELEMENTS(esrc); i++)
        *edst[i] = pack_str(cur, esrc[i]);
}

static struct write_req *req_new(const struct sg_sandbox_row *row,
                                 const struct sg_event_row *evs, size_t n_evs)
{
    const char *const rsrc[] = {
        row->id,    row->name,       row->tenant,       row->project,
        row->owner, row->request_id, row->request_hash, row->namespace_name};
    struct write_req *req;
    size_t size = sizeof(*req) + row->record_len;
    char *cur;
    size_t i;

    for (i = 0; i < SG_N_ELEMENTS(rsrc); i++)
        size += str_size(rsrc[i]);
    for (i = 0; i < n_evs; i++)
        size += event_size(&evs[i]);

    req = calloc(1, size);
    if (!req)
        return NULL;
    cur = req->data;
    req->row = *row;
    {
        char **const rdst[] = {
            &req->row.id,           &req->row.name,
            &req->row.tenant,       &req->row.project,
            &req->row.owner,        &req->row.request_id,
            &req->row.request_hash, &req->row.namespace_name};

        for (i = 0; i < SG_N_ELEMENTS(rsrc); i++)
            *rdst[i] = pack_str(&cur, rsrc[i]);
    }
    req->row.record = NULL;
    if (row->record_len > 0) {
        memcpy(cur, row->record, row->record_len);
        req->row.record = (uint8_t *)cur;
        cur += row->record_len;
    }
    for (i = 0; i < n_evs; i++)
        event_pack(&req->evs[i], &evs[i], &cur);
    req->n_evs = n_evs;
    return req;
}

static void req_reset_outcome(struct write_req *req)
{
    req->created = false;
    req->modified = false;
    req->wrote_events = 0;
    sg_sandbox_row_free(req->existing);
    req->existing = NULL;
    sg_credential_row_free(req->cred_before);
    req->cred_before = NULL;
    sg_error_reset(&req->err);
}

static void req_free(struct write_req *req)
{
    if (!req)
        return;
    req_reset_outcome(req);
    free(req);
}

static int push(struct sqlite_store *s, struct write_req *req,
                const char *what, const char *name, struct sg_error *err);

static int enqueue(struct sqlite_store *s, bool is_update,
                   const struct sg_sandbox_row *row, uint64_t expected_rv,
                   const struct sg_event_row *evs, size_t n_evs,
                   sg_store_write_cb cb, void *opaque, struct sg_error *err)
{
    struct write_req *req = req_new(row, evs, n_evs);

    if (!req) {
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "out of memory queueing a write of sandbox '%s'",
                        row->id);
        return -1;
    }
    req->is_update = is_update;
    req->expected_rv = expected_rv;
    req->cb = cb;
    req->opaque = opaque;
    return push(s, req, "sandbox", row->id, err);
}

/* Queue req for the writer (it takes req over, also on failure). */
static int push(struct sqlite_store *s, struct write_req *req,
                const char *what, const char *name, struct sg_error *err)
{
    pthread_mutex_lock(&s->lock);
    if (s->closing) {
        pthread_mutex_unlock(&s->lock);
        req_free(req);
        sg_error_report(err, SG_ERR_UNAVAILABLE,
                        "the store is closing: write of %s '%s' refused",
                        what, name);
        return -1;
    }
    if (s->tail)
        s->tail->next = req;
    else
        s->head = req;
    s->tail = req;
    s->stats.queued++;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* --- the writer -------------------------------------------------------- */

/* Step a statement that returns no rows; SQLITE_OK or the error. */
static int step_done(struct sqlite_store *s, enum wstmt w)
{
    sqlite3_stmt *st = s->wst[w];
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int req_fail_sqlite(struct sqlite_store *s, struct write_req *req,
                           sqlite3_stmt *st, const char *what)
{
    sg_error_report(&req->err, SG_ERR_INTERNAL,
                    "sqlite: %s of sandbox '%s': %s", what, req->row.id,
                    sqlite3_errmsg(s->wdb));
    sqlite3_reset(st);
    return -1;
}

static int read_counter(struct sqlite_store *s)
{
    sqlite3_stmt *st = s->wst[W_GET_COUNTER];
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        s->rv = (uint64_t)sqlite3_column_int64(st, 0);
        s->seq = (uint64_t)sqlite3_column_int64(st, 1);
        rc = SQLITE_OK;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_CORRUPT : rc;
}

static int write_counter(struct sqlite_store *s)
{
    sqlite3_stmt *st = s->wst[W_SET_COUNTER];
    int rc;

    sqlite3_bind_int64(st, 1, (sqlite3_int64)s->rv);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)s->seq);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Append the request's events, all with resource_version rv. */
static int insert_events(struct sqlite_store *s, struct write_req *req,
                         uint64_t rv)
{
    sqlite3_stmt *st = s->wst[W_INSERT_EVENT];

    for (size_t i = 0; i < req->n_evs; i++) {
        struct sg_event_row *ev = &req->evs[i];

        if (ev->time == 0)
            ev->time = now_ms();
        ev->resource_version = rv;
        ev->seq = s->seq + 1;
        if (!bind_event(st, ev) || !bind_int(st, 14, (int64_t)ev->seq))
            return req_fail_sqlite(s, req, st, "event bind");
        if (sqlite3_step(st) != SQLITE_DONE)
            return req_fail_sqlite(s, req, st, "event insert");
        sqlite3_reset(st);
        s->seq = ev->seq;
    }
    req->wrote_events = req->n_evs;
    return 0;
}

static bool is_unique_violation(sqlite3 *db)
{
    int ext = sqlite3_extended_errcode(db);

    return ext == SQLITE_CONSTRAINT_PRIMARYKEY ||
           ext == SQLITE_CONSTRAINT_UNIQUE;
}

/* Write the row (insert or update) with resource_version rv. */
static int write_row(struct sqlite_store *s, struct write_req *req, uint64_t rv)
{
    sqlite3_stmt *st = s->wst[req->is_update ? W_UPDATE : W_INSERT];

    req->row.resource_version = rv;
    if (!bind_row(st, &req->row))
        return req_fail_sqlite(s, req, st, "bind");
    if (sqlite3_step(st) != SQLITE_DONE) {
        if (!is_unique_violation(s->wdb))
            return req_fail_sqlite(s, req, st, "write");
        if (req->is_update)
            sg_error_report(&req->err, SG_ERR_ALREADY_EXISTS,
                            "sandbox '%s': owner '%s' already has "
                            "request_id '%s'",
                            req->row.id, req->row.owner, req->row.request_id);
        else
            sg_error_report(&req->err, SG_ERR_ALREADY_EXISTS,
                            "sandbox '%s' already exists", req->row.id);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    s->rv = rv;
    return 0;
}

static int apply_create(struct sqlite_store *s, struct write_req *req)
{
    uint64_t rv;

    if (req->row.request_id[0]) {
        sqlite3_stmt *st = s->wst[W_FIND_REQUEST];
        struct sg_sandbox_row found;
        int rc;

        if (!bind_text(st, 1, req->row.owner) ||
            !bind_text(st, 2, req->row.request_id))
            return req_fail_sqlite(s, req, st, "bind");
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            row_from_stmt(st, &found);
            req->existing = sg_sandbox_row_copy(&found);
            sqlite3_reset(st);
            if (!req->existing) {
                sg_error_report(&req->err, SG_ERR_NO_MEMORY,
                                "out of memory reading sandbox '%s'", found.id);
                return -1;
            }
            return 0;
        }
        if (rc != SQLITE_DONE)
            return req_fail_sqlite(s, req, st, "request lookup");
        sqlite3_reset(st);
    }
    /* write_row takes the version once the row is written; the counter
       row is read and written once per batch (read/write_counter). */
    rv = s->rv + 1;
    if (write_row(s, req, rv) < 0)
        return -1;
    req->modified = true;
    if (insert_events(s, req, rv) < 0)
        return -1;
    req->created = true;
    return 0;
}

static int apply_update(struct sqlite_store *s, struct write_req *req)
{
    sqlite3_stmt *st = s->wst[W_GET_RV];
    uint64_t current, rv;
    int rc;

    if (!bind_text(st, 1, req->row.id))
        return req_fail_sqlite(s, req, st, "bind");
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        sg_error_report(&req->err, SG_ERR_NOT_FOUND, "sandbox '%s' not found",
                        req->row.id);
        return -1;
    }
    if (rc != SQLITE_ROW)
        return req_fail_sqlite(s, req, st, "lookup");
    current = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (req->expected_rv && current != req->expected_rv) {
        sg_error_report(&req->err, SG_ERR_ABORTED,
                        "sandbox '%s' is at resource_version %llu, "
                        "not %llu",
                        req->row.id, (unsigned long long)current,
                        (unsigned long long)req->expected_rv);
        return -1;
    }
    /* write_row takes the version once the row is written; the counter
       row is read and written once per batch (read/write_counter). */
    rv = s->rv + 1;
    if (write_row(s, req, rv) < 0)
        return -1;
    req->modified = true;
    if (insert_events(s, req, rv) < 0)
        return -1;
    return 0;
}

static void cred_from_stmt(sqlite3_stmt *st, struct sg_credential_row *row)
{
    row->tenant = (char *)col_text(st, 0);
    row->name = (char *)col_text(st, 1);
    row->kind = (char *)col_text(st, 2);
    row->owner = (char *)col_text(st, 3);
    row->create_time = sqlite3_column_int64(st, 4);
    row->update_time = sqlite3_column_int64(st, 5);
    row->record = (uint8_t *)sqlite3_column_blob(st, 6);
    row->record_len = (size_t)sqlite3_column_bytes(st, 6);
}

static int cred_fail_sqlite(struct sqlite_store *s, struct write_req *req,
                            sqlite3_stmt *st, const char *what)
{
    sg_error_report(&req->err, SG_ERR_INTERNAL,
                    "sqlite: %s of credential '%s/%s': %s", what,
                    req->cred.tenant, req->cred.name, sqlite3_errmsg(s->wdb));
    sqlite3_reset(st);
    return -1;
}

static int apply_cred_create(struct sqlite_store *s, struct write_req *req)
{
    sqlite3_stmt *st = s->wst[W_CRED_INSERT];
    const struct sg_credential_row *c = &req->cred;

    if (!bind_text(st, 1, c->tenant) || !bind_text(st, 2, c->name) ||
        !bind_text(st, 3, c->kind) || !bind_text(st, 4, c->owner) ||
        !bind_int(st, 5, c->create_time) || !bind_int(st, 6, c->update_time) ||
        sqlite3_bind_blob(st, 7, c->record ? (const void *)c->record : "",
                          (int)c->record_len, SQLITE_STATIC) != SQLITE_OK)
        return cred_fail_sqlite(s, req, st, "bind");
    if (sqlite3_step(st) != SQLITE_DONE) {
        if (!is_unique_violation(s->wdb))
            return cred_fail_sqlite(s, req, st, "insert");
        sg_error_report(&req->err, SG_ERR_ALREADY_EXISTS,
                        "credential '%s' already exists in tenant '%s'",
                        c->name, c->tenant);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return 0;
}

static int apply_cred_delete(struct sqlite_store *s, struct write_req *req)
{
    sqlite3_stmt *st = s->wst[W_CRED_GET];
    struct sg_credential_row found;
    int rc;

    if (!bind_text(st, 1, req->cred.tenant) ||
        !bind_text(st, 2, req->cred.name))
        return cred_fail_sqlite(s, req, st, "bind");
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        sg_error_report(&req->err, SG_ERR_NOT_FOUND,
                        "credential '%s' not found in tenant '%s'",
                        req->cred.name, req->cred.tenant);
        return -1;
    }
    if (rc != SQLITE_ROW)
        return cred_fail_sqlite(s, req, st, "lookup");
    cred_from_stmt(st, &found);
    req->cred_before = sg_credential_row_copy(&found);
    sqlite3_reset(st);
    if (!req->cred_before) {
        sg_error_report(&req->err, SG_ERR_NO_MEMORY,
                        "out of memory deleting credential '%s'",
                        req->cred.name);
        return -1;
    }
    st = s->wst[W_CRED_DELETE];
    if (!bind_text(st, 1, req->cred.tenant) ||
        !bind_text(st, 2, req->cred.name))
        return cred_fail_sqlite(s, req, st, "bind");
    if (sqlite3_step(st) != SQLITE_DONE)
        return cred_fail_sqlite(s, req, st, "delete");
    sqlite3_reset(st);
    return 0;
}

static int apply_request(struct sqlite_store *s, struct write_req *req)
{
    switch (req->op) {
    case OP_CRED_CREATE:
        return apply_cred_create(s, req);
    case OP_CRED_DELETE:
        return apply_cred_delete(s, req);
    case OP_SANDBOX:
    default:
        return req->is_update ? apply_update(s, req) : apply_create(s, req);
    }
}

static void readers_committed(struct sqlite_store *s);
static void readers_release(struct sqlite_store *s);

/* A request failed after changing the database: rerun with savepoints. */
#define NEEDS_ISOLATION (-2)

/*
 * Run every request of the batch in the open transaction. A request that
 * is refused (version mismatch, unknown id, existing request id) is refused
 * before it changes anything, and a failed statement undoes only itself,
 * so the fast path needs no savepoints. Only a request that fails after it
 * wrote something (isolate false) makes the batch run again with each
 * request in its own savepoint (isolate true).
 *
 * Returns SQLITE_OK, NEEDS_ISOLATION, or the code of a failure that broke
 * the transaction itself (then *stage says where).
 */
static int run_requests(struct sqlite_store *s, struct write_req **batch,
                        size_t n, bool isolate, const char **stage)
{
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        struct write_req *req = batch[i];
        uint64_t rv_before = s->rv, seq_before = s->seq;
        int applied;

        if (isolate) {
            *stage = "savepoint";
            rc = step_done(s, W_SAVEPOINT);
            if (rc != SQLITE_OK)
                return rc;
        }
        applied = apply_request(s, req);
        /* Some errors (I/O, disk full, out of memory) make SQLite roll
           back the whole transaction: the requests before this one are
           gone too. */
        if (applied != 0 && sqlite3_get_autocommit(s->wdb)) {
            *stage = "request";
            rc = sqlite3_errcode(s->wdb);
            return rc != SQLITE_OK ? rc : SQLITE_ABORT;
        }
        if (!isolate) {
            if (applied != 0 && req->modified)
                return NEEDS_ISOLATION;
            continue;
        }
        if (applied != 0) {
            *stage = "rollback to savepoint";
            rc = step_done(s, W_ROLLBACK_TO);
            if (rc != SQLITE_OK)
                return rc;
            /* Its version and events were never committed. */
            s->rv = rv_before;
            s->seq = seq_before;
        }
        *stage = "release";
        rc = step_done(s, W_RELEASE);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

static void rollback(struct sqlite_store *s)
{
    int rc;

    if (sqlite3_get_autocommit(s->wdb))
        return;
    rc = step_done(s, W_ROLLBACK);
    if (rc != SQLITE_OK)
        SG_ERROR("sqlite: rollback failed: %s", sqlite3_errmsg(s->wdb));
}

/* Returns true when the batch committed (whatever its requests did). */
static bool run_batch(struct sqlite_store *s, struct write_req **batch,
                      size_t n)
{
    char msg[SG_ERROR_MESSAGE_MAX / 2];
    const char *stage = "begin";
    int attempt;
    size_t i;
    int rc;
    bool isolate = false;

    for (attempt = 0;; attempt++) {
        for (i = 0; i < n; i++)
            req_reset_outcome(batch[i]);
        stage = "begin";
        /* Idle readers' snapshots would keep the WAL from restarting. */
        readers_release(s);
        rc = step_done(s, W_BEGIN);
        if (rc == SQLITE_OK) {
            stage = "read counter";
            rc = read_counter(s);
        }
        if (rc == SQLITE_OK)
            rc = run_requests(s, batch, n, isolate, &stage);
        if (rc == NEEDS_ISOLATION) {
            rollback(s);
            isolate = true;
            attempt--; /* not a busy retry */
            continue;
        }
        if (rc == SQLITE_OK) {
            stage = "write counter";
            rc = write_counter(s);
        }
        if (rc == SQLITE_OK) {
            stage = "commit";
            rc = step_done(s, W_COMMIT);
        }
        if (rc == SQLITE_OK) {
            readers_committed(s);
            pthread_mutex_lock(&s->lock);
            s->stats.commits++;
            pthread_mutex_unlock(&s->lock);
            return true;
        }
        snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(s->wdb));
        rollback(s);
        if ((rc & 0xff) != SQLITE_BUSY || attempt >= BUSY_RETRIES)
            break;
        SG_WARN("sqlite: %s: %s; retrying a batch of %zu writes", stage, msg,
                n);
        pthread_mutex_lock(&s->lock);
        s->stats.busy_retries++;
        pthread_mutex_unlock(&s->lock);
        sleep_ms(BUSY_BACKOFF_MS << attempt);
    }

    SG_ERROR("sqlite: %s failed: %s; %zu writes of the batch failed", stage,
             msg, n);
    pthread_mutex_lock(&s->lock);
    s->stats.failed_batches++;
    pthread_mutex_unlock(&s->lock);
    for (i = 0; i < n; i++) {
        req_reset_outcome(batch[i]);
        if ((rc & 0xff) == SQLITE_BUSY)
            sg_error_report(&batch[i]->err, SG_ERR_UNAVAILABLE,
                            "sqlite: database stayed locked through %d "
                            "attempts: %s",
                            BUSY_RETRIES + 1, msg);
        else
            sg_error_report(&batch[i]->err, SG_ERR_INTERNAL,
                            "sqlite: %s failed, nothing of the batch was "
                            "written: %s",
                            stage, msg);
    }
    return false;
}

/* Events the committed batch wrote. */
static size_t batch_events(struct write_req **batch, size_t n)
{
    size_t total = 0;

    for (size_t i = 0; i < n; i++) {
        if (!sg_error_is_set(&batch[i]->err))
            total += batch[i]->wrote_events;
    }
    return total;
}

/*
 * Hand the committed batch's total events to the observer, in seq order
 * (the order the requests ran). One call with a contiguous array; should
 * growing the array fail, one call per request, still in order.
 */
static void notify_observer(struct sqlite_store *s, struct write_req **batch,
                            size_t n, size_t total)
{
    size_t i, k = 0;

    pthread_mutex_lock(&s->obs_lock);
    if (!s->obs_fn || total == 0)
        goto cleanup;
    if (total > s->obs_cap) {
        size_t cap = total > 2 * s->obs_cap ? total : 2 * s->obs_cap;
        struct sg_event_row *grown = realloc(s->obs_evs, cap * sizeof(*grown));

        if (grown) {
            s->obs_evs = grown;
            s->obs_cap = cap;
        }
    }
    for (i = 0; i < n; i++) {
        const struct write_req *req = batch[i];

        if (sg_error_is_set(&req->err) || req->wrote_events == 0)
            continue;
        if (total > s->obs_cap) {
            s->obs_fn(s->obs_opaque, req->evs, req->wrote_events);
            continue;
        }
        memcpy(&s->obs_evs[k], req->evs, req->wrote_events * sizeof(*req->evs));
        k += req->wrote_events;
    }
    if (k > 0)
        s->obs_fn(s->obs_opaque, s->obs_evs, k);

 cleanup:
    pthread_mutex_unlock(&s->obs_lock);
}

/* The horizon stored in meta, in the writer's open transaction. */
static int read_purged(struct sqlite_store *s, uint64_t *purged)
{
    sqlite3_stmt *st = s->wst[W_GET_PURGED];
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        *purged = (uint64_t)sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_CORRUPT : rc;
}

/*
 * The highest seq the age limit lets go, looking no further than limit:
 * the one before the first event of (purged, limit] stamped at or after
 * cutoff, or limit when there is none. Sets *rc.
 */
static uint64_t age_horizon(struct sqlite_store *s, uint64_t purged,
                            uint64_t limit, int64_t cutoff, int *rc)
{
    sqlite3_stmt *st = s->wst[W_FIRST_YOUNG];
    uint64_t horizon = limit;

    if (!bind_int(st, 1, (int64_t)purged) || !bind_int(st, 2, (int64_t)limit) ||
        !bind_int(st, 3, cutoff)) {
        *rc = SQLITE_ERROR;
        sqlite3_reset(st);
        return purged;
    }
    *rc = sqlite3_step(st);
    if (*rc == SQLITE_ROW)
        horizon = (uint64_t)sqlite3_column_int64(st, 0) - 1;
    *rc = *rc == SQLITE_ROW || *rc == SQLITE_DONE ? SQLITE_OK : *rc;
    sqlite3_reset(st);
    return horizon;
}

/*
 * One purge transaction: delete (purged, horizon] and record horizon,
 * deleting at most chunk events. *more is set when the chunk was the
 * limit (there may be more to delete). Returns SQLITE_OK or the failure
 * (*stage says where); nothing is left open.
 */
static int purge_events(struct sqlite_store *s, int64_t now, uint64_t chunk,
                        bool *more, const char **stage)
{
    uint64_t purged = 0, limit, target = 0;
    int64_t deleted = 0;
    int rc;

    *more = false;
    *stage = "begin";
    readers_release(s);
    rc = step_done(s, W_BEGIN);
    if (rc == SQLITE_OK) {
        *stage = "read counters";
        rc = read_counter(s);
    }
    if (rc == SQLITE_OK)
        rc = read_purged(s, &purged);
    if (rc != SQLITE_OK || purged >= s->seq)
        goto cleanup;

    limit = s->seq - purged > chunk ? purged + chunk : s->seq;
    if (s->retain_count && s->seq > s->retain_count)
        target = s->seq - s->retain_count;
    if (s->retain_age_ms) {
        uint64_t by_age;

        *stage = "find the age horizon";
        by_age = age_horizon(s, purged, limit, now - s->retain_age_ms, &rc);
        if (rc != SQLITE_OK)
            goto cleanup;
        if (by_age > target)
            target = by_age;
    }
    if (target >= limit) {
        *more = limit < s->seq;
        target = limit;
    }
    if (target <= purged)
        goto cleanup; /* nothing to do: the rollback ends the transaction */

    *stage = "delete";
    if (!bind_int(s->wst[W_PURGE], 1, (int64_t)purged) ||
        !bind_int(s->wst[W_PURGE], 2, (int64_t)target)) {
        rc = SQLITE_ERROR;
        goto cleanup;
    }
    rc = step_done(s, W_PURGE);
    if (rc != SQLITE_OK)
        goto cleanup;
    deleted = sqlite3_changes64(s->wdb);
    *stage = "record the horizon";
    if (!bind_int(s->wst[W_SET_PURGED], 1, (int64_t)target)) {
        rc = SQLITE_ERROR;
        goto cleanup;
    }
    rc = step_done(s, W_SET_PURGED);
    if (rc == SQLITE_OK) {
        *stage = "commit";
        rc = step_done(s, W_COMMIT);
    }
    if (rc == SQLITE_OK) {
        readers_committed(s);
        pthread_mutex_lock(&s->lock);
        s->stats.purges++;
        s->stats.events_purged += (uint64_t)deleted;
        pthread_mutex_unlock(&s->lock);
        SG_DEBUG("sqlite: purged %lld events through seq %llu",
                 (long long)deleted, (unsigned long long)target);
    }

 cleanup:
    rollback(s);
    return rc;
}

/*
 * After a batch: purge if retention is set, the batch committed, and a
 * second or PURGE_EVERY_COMMITS commits passed since the last purge (or
 * the last one stopped at its chunk). The first commit after open always
 * purges, catching up with a lowered limit.
 */
static void maybe_purge(struct sqlite_store *s, bool committed, size_t n_events)
{
    const char *stage = "begin";
    uint64_t chunk;
    int64_t now;
    bool more = false;
    int rc;

    if (!committed || (!s->retain_count && !s->retain_age_ms))
        return;
    s->commits_since_purge++;
    s->events_since_purge += n_events;
    now = now_ms();
    if (!s->purge_backlog && s->commits_since_purge < PURGE_EVERY_COMMITS &&
        now < s->next_purge_ms)
        return;
    chunk = PURGE_CHUNK + 2 * s->events_since_purge;
    if (chunk > PURGE_CHUNK_MAX)
        chunk = PURGE_CHUNK_MAX;
    s->commits_since_purge = 0;
    s->events_since_purge = 0;
    s->next_purge_ms = now + PURGE_INTERVAL_MS;

    if (s->full_sync && step_done(s, W_SYNC_NORMAL) != SQLITE_OK)
        SG_WARN("sqlite: cannot relax synchronous for a purge: %s",
                sqlite3_errmsg(s->wdb));
    rc = purge_events(s, now, chunk, &more, &stage);
    if (rc != SQLITE_OK)
        SG_WARN("sqlite: event retention: %s failed: %s; retrying later", stage,
                sqlite3_errstr(rc));
    /* Never leave a write batch without its fsync. */
    if (s->full_sync && step_done(s, W_SYNC_FULL) != SQLITE_OK)
        SG_ERROR("sqlite: cannot restore synchronous = FULL: %s",
                 sqlite3_errmsg(s->wdb));
    s->purge_backlog = rc == SQLITE_OK && more;
}

static void req_finish(struct write_req *req)
{
    struct sg_store_result res = {.created = false};

    if (req->op != OP_SANDBOX) {
        struct sg_store_credential_result cres = {0};

        if (sg_error_is_set(&req->err))
            cres.err = &req->err;
        else
            cres.row = req->cred_before ? req->cred_before : &req->cred;
        if (req->ccb)
            req->ccb(req->opaque, &cres);
        req_free(req);
        return;
    }
    if (sg_error_is_set(&req->err)) {
        res.err = &req->err;
    } else {
        res.created = req->created;
        res.row = req->existing ? req->existing : &req->row;
        res.events = req->wrote_events ? req->evs : NULL;
        res.n_events = req->wrote_events;
    }
    if (req->cb)
        req->cb(req->opaque, &res);
    req_free(req);
}

static void *writer_main(void *arg)
{
    struct sqlite_store *s = arg;

    pthread_setname_np(pthread_self(), "sg-store-write");
    for (;;) {
        size_t n = 0, n_events, i;
        bool committed;

        pthread_mutex_lock(&s->lock);
        while (!s->head && !s->closing)
            pthread_cond_wait(&s->wake, &s->lock);
        /* Closing: run what is queued first, so every callback runs. */
        if (!s->head) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        while (s->head && n < s->max_batch) {
            s->batch[n++] = s->head;
            s->head = s->head->next;
        }
        if (!s->head)
            s->tail = NULL;
        s->stats.queued -= n;
        s->stats.batches++;
        pthread_mutex_unlock(&s->lock);

        for (i = 0; i < n; i++)
            s->batch[i]->next = NULL;
        committed = run_batch(s, s->batch, n);
        n_events = committed ? batch_events(s->batch, n) : 0;
        notify_observer(s, s->batch, n, n_events);

        /* Stats before callbacks: a caller woken by its callback sees
           counters that include its write. */
        pthread_mutex_lock(&s->lock);
        s->stats.writes += n;
        if (n > s->stats.max_batch)
            s->stats.max_batch = n;
        pthread_mutex_unlock(&s->lock);

        /* Hand the batch, in commit order, to the completion thread. */
        pthread_mutex_lock(&s->lock);
        for (i = 0; i < n; i++) {
            if (s->done_tail)
                s->done_tail->next = s->batch[i];
            else
                s->done_head = s->batch[i];
            s->done_tail = s->batch[i];
        }
        pthread_cond_signal(&s->done_wake);
        pthread_mutex_unlock(&s->lock);

        /* After the hand-off: the callbacks need not wait for it. */
        maybe_purge(s, committed, n_events);
    }
    pthread_mutex_lock(&s->lock);
    s->writer_done = true;
    pthread_cond_signal(&s->done_wake);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Runs the callbacks of committed requests, in commit order. */
static void *completer_main(void *arg)
{
    struct sqlite_store *s = arg;

    pthread_setname_np(pthread_self(), "sg-store-done");
    for (;;) {
        struct write_req *list;

        pthread_mutex_lock(&s->lock);
        while (!s->done_head && !s->writer_done)
            pthread_cond_wait(&s->done_wake, &s->lock);
        list = s->done_head;
        s->done_head = s->done_tail = NULL;
        pthread_mutex_unlock(&s->lock);
        if (!list)
            break; /* the writer has finished and nothing is left */
        while (list) {
            struct write_req *next = list->next;
            req_finish(list);
            list = next;
        }
    }
    return NULL;
}

/* --- reads ------------------------------------------------------------- */

static void run_simple(sqlite3_stmt *st)
{
    (void)sqlite3_step(st);
    sqlite3_reset(st);
}

/* End c's open read transaction, if any. */
static void reader_end(struct read_conn *c)
{
    if (!c->in_txn)
        return;
    run_simple(c->st[R_END]);
    if (!sqlite3_get_autocommit(c->db))
        (void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    c->in_txn = false;
}

/*
 * A connection whose snapshot includes every commit acknowledged so far:
 * its open read transaction if nothing was committed since it began, else
 * a new one. The epoch is read before the transaction's first read takes
 * its snapshot, so a commit in between only causes a needless refresh.
 */
static struct read_conn *checkout(struct sqlite_store *s)
{
    struct read_conn *c;
    uint64_t now;

    pthread_mutex_lock(&s->pool_lock);
    if (s->n_free == 0)
        s->read_waits++;
    while (s->n_free == 0)
        pthread_cond_wait(&s->pool_cond, &s->pool_lock);
    c = s->free_readers[--s->n_free];
    pthread_mutex_unlock(&s->pool_lock);

    now = __atomic_load_n(&s->commit_epoch, __ATOMIC_ACQUIRE);
    if (c->in_txn && c->epoch != now)
        reader_end(c);
    if (!c->in_txn && sqlite3_step(c->st[R_BEGIN]) == SQLITE_DONE) {
        c->in_txn = true;
        c->epoch = now;
    }
    sqlite3_reset(c->st[R_BEGIN]);
    return c;
}

/*
 * Writer, after a commit: readers must see it, and idle read transactions
 * would keep the WAL from being checkpointed past their snapshots. End
 * those of idle connections now; busy ones refresh at their next checkout.
 */
/* Writer: end the read transactions of idle readers. */
static void readers_release(struct sqlite_store *s)
{
    pthread_mutex_lock(&s->pool_lock);
    for (size_t i = 0; i < s->n_free; i++)
        reader_end(s->free_readers[i]);
    pthread_mutex_unlock(&s->pool_lock);
}

static void readers_committed(struct sqlite_store *s)
{
    __atomic_add_fetch(&s->commit_epoch, 1, __ATOMIC_RELEASE);
    readers_release(s);
}

static void checkin(struct sqlite_store *s, struct read_conn *c)
{
    pthread_mutex_lock(&s->pool_lock);
    s->free_readers[s->n_free++] = c;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_lock);
}

static void add_text_term(struct sg_buf *sql, sqlite3_stmt *st, int *n,
                          bool *ok, const char *column, const char *value)
{
    if (!is_set(value))
        return;
    (*n)++;
    if (sql)
        sg_buf_printf(sql, " AND %s = ?%d", column, *n);
    if (st)
        *ok &= bind_text(st, *n, value);
}

/*
 * The WHERE terms of a filter: appended to sql when it is non-NULL, bound
 * into st when it is non-NULL. One function for both so the text and the
 * bindings cannot disagree. Returns the number of parameters, or -1 when a
 * bind failed.
 */
static int filter_terms(const struct sg_sandbox_filter *f, const char *after,
                        struct sg_buf *sql, sqlite3_stmt *st)
{
    bool ok = true;
    int n = 0;

    add_text_term(sql, st, &n, &ok, "tenant", f->tenant);
    add_text_term(sql, st, &n, &ok, "project", f->project);
    add_text_term(sql, st, &n, &ok, "owner", f->owner);
    add_text_term(sql, st, &n, &ok, "namespace", f->namespace_name);
    if (f->phases) {
        const char *sep = "";
        unsigned bit;

        if (sql)
            sg_buf_adds(sql, " AND phase IN (");
        for (bit = 0; bit < 32; bit++) {
            if (!(f->phases & (1u << bit)))
                continue;
            n++;
            if (sql)
                sg_buf_printf(sql, "%s?%d", sep, n);
            if (st)
                ok &= bind_int(st, n, bit);
            sep = ", ";
        }
        if (sql)
            sg_buf_adds(sql, ")");
    }
    if (f->expire_before) {
        n++;
        /* "expire_time > 0" spelled out so the partial index applies. */
        if (sql)
            sg_buf_printf(sql, " AND expire_time > 0 AND expire_time <= ?%d",
                          n);
        if (st)
            ok &= bind_int(st, n, f->expire_before);
    }
    if (is_set(after)) {
        n++;
        if (sql)
            sg_buf_printf(sql, " AND id > ?%d", n);
        if (st)
            ok &= bind_text(st, n, after);
    }
    return ok ? n : -1;
}

static unsigned filter_shape(const struct sg_sandbox_filter *f,
                             const char *after, bool count)
{
    unsigned key = 0;

    key |= is_set(f->tenant) ? SHAPE_TENANT : 0;
    key |= is_set(f->project) ? SHAPE_PROJECT : 0;
    key |= is_set(f->owner) ? SHAPE_OWNER : 0;
    key |= is_set(f->namespace_name) ? SHAPE_NAMESPACE : 0;
    key |= f->expire_before ? SHAPE_EXPIRE : 0;
    key |= is_set(after) ? SHAPE_AFTER : 0;
    key |= count ? SHAPE_COUNT : 0;
    key |= (unsigned)__builtin_popcount(f->phases) << SHAPE_PHASES_SHIFT;
    return key;
}

/* The connection's statement for shape key, if it was prepared. */
static sqlite3_stmt *cached_stmt(const struct read_conn *c, unsigned key)
{
    for (size_t i = 0; i < c->n_shapes; i++) {
        if (c->shapes[i].key == key)
            return c->shapes[i].st;
    }
    return NULL;
}

/* Prepare sql (built in *sql) and keep it with the connection under key;
   frees *sql. */
static sqlite3_stmt *cache_stmt(struct read_conn *c, unsigned key,
                                struct sg_buf *sql, struct sg_error *err)
{
    sqlite3_stmt *st = NULL;

    if (c->n_shapes == c->cap_shapes) {
        size_t cap = c->cap_shapes ? 2 * c->cap_shapes : 8;
        struct shape_stmt *grown = realloc(c->shapes, cap * sizeof(*grown));

        if (!grown) {
            sg_error_report(err, SG_ERR_NO_MEMORY,
                            "out of memory preparing a store query");
            goto cleanup;
        }
        c->shapes = grown;
        c->cap_shapes = cap;
    }
    if (sg_buf_error(sql) < 0) {
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "out of memory preparing a store query");
    } else if (prepare(c->db, sg_buf_str(sql), &st, err) == 0) {
        c->shapes[c->n_shapes].key = key;
        c->shapes[c->n_shapes].st = st;
        c->n_shapes++;
    }

 cleanup:
    sg_buf_free(sql);
    return st;
}

/* The connection's statement for this filter shape, prepared on first use
   and kept with the connection. */
static sqlite3_stmt *shape_stmt(struct read_conn *c,
                                const struct sg_sandbox_filter *f,
                                const char *after, bool count,
                                struct sg_error *err)
{
    unsigned key = filter_shape(f, after, count);
    struct sg_buf sql = SG_BUF_INIT;
    sqlite3_stmt *st = cached_stmt(c, key);
    int n;

    if (st)
        return st;
    sg_buf_adds(&sql, count ? "SELECT count(*) FROM sandboxes WHERE 1"
                            : "SELECT " SANDBOX_COLUMNS
                              " FROM sandboxes WHERE 1");
    n = filter_terms(f, after, &sql, NULL);
    if (!count)
        sg_buf_printf(&sql, " ORDER BY id LIMIT ?%d", n + 1);
    return cache_stmt(c, key, &sql, err);
}

/*
 * The WHERE terms of an event filter after "seq > ?1 AND seq <= ?2", in
 * the way of filter_terms. Returns the number of parameters, or -1.
 */
static int event_terms(const struct sg_event_filter *f, struct sg_buf *sql,
                       sqlite3_stmt *st)
{
    bool ok = true;
    int n = 2;

    add_text_term(sql, st, &n, &ok, "sandbox_id", f->sandbox_id);
    add_text_term(sql, st, &n, &ok, "tenant", f->tenant);
    add_text_term(sql, st, &n, &ok, "namespace", f->namespace_name);
    if (f->types) {
        n++;
        /* One parameter for any set of types: one statement per shape. */
        if (sql)
            sg_buf_printf(sql, " AND (?%d >> type) & 1", n);
        if (st)
            ok &= bind_int(st, n, f->types);
    }
    return ok ? n : -1;
}

static sqlite3_stmt *event_stmt(struct read_conn *c,
                                const struct sg_event_filter *f,
                                struct sg_error *err)
{
    unsigned key = SHAPE_EVENTS;
    struct sg_buf sql = SG_BUF_INIT;
    sqlite3_stmt *st;
    int n;

    key |= is_set(f->tenant) ? EV_SHAPE_TENANT : 0;
    key |= is_set(f->namespace_name) ? EV_SHAPE_NAMESPACE : 0;
    key |= is_set(f->sandbox_id) ? EV_SHAPE_SANDBOX : 0;
    key |= f->types ? EV_SHAPE_TYPES : 0;
    st = cached_stmt(c, key);
    if (st)
        return st;
    /* A sandbox's events through its index (ordered by seq there too);
       everything else walks the seq range of the table itself. */
    sg_buf_adds(&sql, "SELECT " EVENT_COLUMNS " FROM events");
    if (key & EV_SHAPE_SANDBOX)
        sg_buf_adds(&sql, " INDEXED BY events_sandbox");
    sg_buf_adds(&sql, " WHERE seq > ?1 AND seq <= ?2");
    n = event_terms(f, &sql, NULL);
    sg_buf_printf(&sql, " ORDER BY seq LIMIT ?%d", n + 1);
    return cache_stmt(c, key, &sql, err);
}

/* A query's visitor: the kind of row and where it goes. */
struct row_visit {
    /* Decode the row st is on and hand it over; non-zero: stop. */
    int (*emit)(sqlite3_stmt *st, const struct row_visit *rv);
    sg_sandbox_visit_fn sandbox;
    sg_credential_visit_fn credential;
    void *opaque;
};

static int emit_sandbox(sqlite3_stmt *st, const struct row_visit *rv)
{
    struct sg_sandbox_row row;

    row_from_stmt(st, &row);
    return rv->sandbox ? rv->sandbox(rv->opaque, &row) : 0;
}

static int emit_credential(sqlite3_stmt *st, const struct row_visit *rv)
{
    struct sg_credential_row row;

    cred_from_stmt(st, &row);
    return rv->credential ? rv->credential(rv->opaque, &row) : 0;
}

/* Step a bound st through its rows until rv says stop: the rows visited,
   or -1 with err set ("sqlite: <what>: ...", or "sqlite: <what> '<key>':
   ..." with a key). */
static ssize_t visit_rows(sqlite3 *db, sqlite3_stmt *st,
                          const struct row_visit *rv, const char *what,
                          const char *key, struct sg_error *err)
{
    ssize_t visited = 0;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        visited++;
        if (rv->emit(st, rv) != 0)
            return visited;
    }
    if (rc != SQLITE_DONE) {
        if (key)
            sg_error_report(err, SG_ERR_INTERNAL, "sqlite: %s '%s': %s", what,
                            key, sqlite3_errmsg(db));
        else
            sg_error_report(err, SG_ERR_INTERNAL, "sqlite: %s: %s", what,
                            sqlite3_errmsg(db));
        return -1;
    }
    return visited;
}

static int sqlite_get_sandbox(void *priv, const char *id,
                              sg_sandbox_visit_fn visit, void *opaque,
                              struct sg_error *err)
{
    struct sqlite_store *s = priv;
    struct read_conn *c = checkout(s);
    sqlite3_stmt *st = c->st[R_GET];
    const struct row_visit rv = {.emit = emit_sandbox, .sandbox = visit,
                                 .opaque = opaque};
    int ret = -1;

    if (!bind_text(st, 1, id)) {
        sg_error_report(err, SG_ERR_INTERNAL, "sqlite: get sandbox: %s",
                        sqlite3_errmsg(c->db));
        goto cleanup;
    }
    ret = (int)visit_rows(c->db, st, &rv, "get sandbox", id, err);

 cleanup:
    /* Always reset: a statement left mid-result pins its WAL snapshot. */
    sqlite3_reset(st);
    checkin(s, c);
    return ret;
}

static int64_t sql_limit(size_t max_rows)
{
    return max_rows == 0 || max_rows > INT64_MAX ? -1 : (int64_t)max_rows;
}

static int sqlite_list_sandboxes(void *priv, const struct sg_sandbox_filter *f,
                                 const char *after_id, size_t max_rows,
                                 sg_sandbox_visit_fn visit, void *opaque,
                                 struct sg_error *err)
{
    struct sqlite_store *s = priv;
    struct read_conn *c = checkout(s);
    sqlite3_stmt *st = shape_stmt(c, f, after_id, false, err);
    const struct row_visit rv = {.emit = emit_sandbox, .sandbox = visit,
                                 .opaque = opaque};
    ssize_t visited = -1;
    int n;

    if (!st)
        goto cleanup;
    n = filter_terms(f, after_id, NULL, st);
    if (n < 0 || !bind_int(st, n + 1, sql_limit(max_rows))) {
        sg_error_report(err, SG_ERR_INTERNAL, "sqlite: list sandboxes: %s",
                        sqlite3_errmsg(c->db));
        goto cleanup;
    }
    visited = visit_rows(c->db, st, &rv, "list sandboxes", NULL, err);

 cleanup:
    if (st)
        sqlite3_reset(st);
    checkin(s, c);
    return (int)visited;
}

static int sqlite_count_sandboxes(void *priv, const struct sg_sandbox_filter *f,
                                  uint64_t *count, struct sg_error *err)
{
    struct sqlite_store *s = priv;
    struct read_conn *c = checkout(s);
    sqlite3_stmt *st = shape_stmt(c, f, NULL, true, err);
    int ret = -1;

    if (!st)
        goto cleanup;
    if (filter_terms(f, NULL, NULL, st) < 0 || sqlite3_step(st) != SQLITE_ROW) {
        sg_error_report(err, SG_ERR_INTERNAL, "sqlite: count sandboxes: %s",
                        sqlite3_errmsg(c->db));
        goto cleanup;
    }
    *count = (uint64_t)sqlite3_column_int64(st, 0);
    ret = 0;

 cleanup:
    if (st)
        sqlite3_reset(st);
    checkin(s, c);
    return ret;
}

/* The purge horizon and the newest seq, on c (within its snapshot). */
static int read_bounds(struct read_conn *c, uint64_t *purged, uint64_t *newest,
                       struct sg_error *err)
{
    sqlite3_stmt *st = c->st[R_BOUNDS];
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        *purged = (uint64_t)sqlite3_column_int64(st, 0);
        *newest = (uint64_t)sqlite3_column_int64(st, 1);
    } else {
        sg_error_report(err, SG_ERR_INTERNAL, "sqlite: event bounds: %s",
                        rc == SQLITE_DONE ? "no counters"
                                          : sqlite3_errmsg(c->db));
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int sqlite_event_bounds(void *priv, uint64_t *oldest, uint64_t *newest,
                               struct sg_error *err)
{
    struct sqlite_store *s = priv;
    struct read_conn *c = checkout(s);
    uint64_t purged = 0;
    int ret = read_bounds(c, &purged, newest, err);

    *oldest = purged + 1;
    checkin(s, c);
    return ret;
}

/*
 * The newest seq is read first, on the same connection: within one read
 * transaction both statements share the snapshot, and should BEGIN have
 * failed, every event up to it is still visible to the later listing, so
 * a scan that reached the end of the range covered it either way.
 */
static ssize_t sqlite_list_events(void *priv, const struct sg_event_filter *f,
                                  uint64_t after_seq, size_t max_rows,
                                  size_t max_scan, uint64_t *scanned_to,
                                  sg_event_visit_fn visit, void *opaque,
                                  struct sg_error *err)
{
    struct sqlite_store *s = priv;
    struct read_conn *c = checkout(s);
    sqlite3_stmt *st = NULL;
    uint64_t purged, newest = 0, hi, last = 0;
    ssize_t visited = 0;
    bool ended = false; /* max_rows or the visitor ended the walk */
    int n, rc = SQLITE_ERROR;

    if (after_seq > INT64_MAX)
        after_seq = INT64_MAX;
    *scanned_to = after_seq;
    if (read_bounds(c, &purged, &newest, err) < 0) {
        visited = -1;
        goto cleanup;
    }
    hi = max_scan == 0 || max_scan > INT64_MAX - after_seq
             ? INT64_MAX
             : after_seq + max_scan;
    st = event_stmt(c, f, err);
    if (!st) {
        visited = -1;
        goto cleanup;
    }
    n = event_terms(f, NULL, st);
    if (n < 0 || !bind_int(st, 1, (int64_t)after_seq) ||
        !bind_int(st, 2, (int64_t)hi) ||
        !bind_int(st, n + 1, sql_limit(max_rows)))
        goto cleanup;
    for (;;) {
        struct sg_event_row ev;

        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        event_from_stmt(st, &ev);
        visited++;
        last = ev.seq;
        if (visit && visit(opaque, &ev) != 0) {
            ended = true;
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc == SQLITE_DONE && max_rows && (size_t)visited == max_rows)
        ended = true;

 cleanup:
    if (visited >= 0 && rc != SQLITE_DONE) {
        sg_error_report(err, SG_ERR_INTERNAL, "sqlite: list events: %s",
                        sqlite3_errmsg(c->db));
        visited = -1;
    }
    if (visited >= 0 && ended) {
        *scanned_to = last;
    } else if (visited >= 0) {
        uint64_t end = hi < newest ? hi : newest;

        *scanned_to = end > after_seq ? end : after_seq;
        if (last > *scanned_to)
            *scanned_to = last;
    }
    if (st)
        sqlite3_reset(st);
    checkin(s, c);
    return visited;
}

static void sqlite_set_commit_observer(void *priv, sg_store_commit_fn fn,
                                       void *opaque)
{
    struct sqlite_store *s = priv;

    pthread_mutex_lock(&s->obs_lock);
    s->obs_fn = fn;
    s->obs_opaque = opaque;
    pthread_mutex_unlock(&s->obs_lock);
}

/* --- writes (the callers' side) ---------------------------------------- */

static int sqlite_create_sandbox(void *priv, const struct sg_sandbox_row *row,
                                 const struct sg_event_row *ev,
                                 sg_store_write_cb cb, void *opaque,
                                 struct sg_error *err)
{
    return enqueue(priv, false, row, 0, ev, ev ? 1 : 0, cb, opaque, err);
}

static int sqlite_update_sandbox(void *priv, const struct sg_sandbox_row *row,
                                 uint64_t expected_rv,
                                 const struct sg_event_row *evs, size_t n_evs,
                                 sg_store_write_cb cb, void *opaque,
                                 struct sg_error *err)
{
    return enqueue(priv, true, row, expected_rv, evs, n_evs, cb, opaque, err);
}

static void sqlite_get_stats(void *priv, struct sg_store_stats *out)
{
    struct sqlite_store *s = priv;

    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_lock(&s->pool_lock);
    out->read_waits = s->read_waits;
    pthread_mutex_unlock(&s->pool_lock);
}

static unsigned sqlite_schema_version(void *priv)
{
    struct sqlite_store *s = priv;

    return s->schema_version;
}

/* --- open and close ---------------------------------------------------- */

/*
 * SQLite creates files with 0644 (less the umask); the database holds
 * every tenant's sandboxes, so create it 0600 first. SQLite gives the -wal
 * and -shm files the database file's mode.
 */
static int create_file(const char *path, struct sg_error *err)
{
    char buf[128];
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

    if (fd < 0) {
        sg_error_report(err, SG_ERR_IO, "cannot create database file '%s': %s",
                        path, sg_strerror(errno, buf, sizeof(buf)));
        return -1;
    }
    close(fd);
    return 0;
}

static int open_conn(struct sqlite_store *s, sqlite3 **out,
                     struct sg_error *err)
{
    /* NOMUTEX: each connection is used by one thread at a time (the writer,
       or the reader that checked it out), so SQLite's own locking is
       wasted. No SQLITE_OPEN_CREATE: create_file made it, with our mode. */
    int rc = sqlite3_open_v2(s->path, out,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);

    if (rc != SQLITE_OK) {
        sg_error_report(err, SG_ERR_IO, "cannot open database '%s': %s",
                        s->path,
                        *out ? sqlite3_errmsg(*out) : sqlite3_errstr(rc));
        return -1;
    }
    sqlite3_busy_timeout(*out, (int)s->busy_timeout_ms);
    /* Refuse schema-corrupting tricks (writable_schema and the like). */
    sqlite3_db_config(*out, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    return 0;
}

static int setup_writer(struct sqlite_store *s, struct sg_error *err)
{
    char mode[32], what[64 + PATH_MAX];

    /* The first statement reads the file: a file that is not a database
       fails here, as an I/O error on that path. */
    snprintf(what, sizeof(what), "cannot use database '%s'", s->path);
    if (query_one(s->wdb, "PRAGMA journal_mode = WAL", what, SG_ERR_IO, mode,
                  sizeof(mode), NULL, err) < 0)
        return -1;
    if (strcasecmp(mode, "wal") != 0) {
        sg_error_report(err, SG_ERR_IO,
                        "database '%s' stayed in journal mode '%s', not "
                        "'wal' (a file system without shared memory?)",
                        s->path, mode);
        return -1;
    }
    if (exec_sql(s->wdb,
                 s->full_sync ? "PRAGMA synchronous = FULL"
                              : "PRAGMA synchronous = NORMAL",
                 "set synchronous", err) < 0 ||
        exec_sql(s->wdb, "PRAGMA foreign_keys = ON", "set foreign_keys", err) <
            0 ||
        /* Each write of a batch runs in its own savepoint, which journals
           every page it touches first: in a temporary file by default,
           one pwrite per page. In memory it is a copy. */
        exec_sql(s->wdb, "PRAGMA temp_store = MEMORY", "set temp_store",
                 err) < 0 ||
        /* A batch of hundreds of writes dirties more than the default
           2 MiB of cache; spilling it mid-transaction writes pages twice. */
        exec_sql(s->wdb, "PRAGMA cache_size = -32768", "set cache_size",
                 err) < 0)
        return -1;
    return 0;
}

/* A credential write: the row copied with its strings into data[]. */
static struct write_req *cred_req_new(const struct sg_credential_row *row)
{
    const char *const src[] = {row->tenant, row->name, row->kind,
                               row->owner};
    struct write_req *req;
    size_t size = sizeof(*req) + row->record_len;
    char *cur;
    size_t i;

    for (i = 0; i < SG_N_ELEMENTS(src); i++)
        size += str_size(src[i]);
    req = calloc(1, size);
    if (!req)
        return NULL;
    cur = req->data;
    req->cred = *row;
    {
        char **const dst[] = {&req->cred.tenant, &req->cred.name,
                              &req->cred.kind, &req->cred.owner};

        for (i = 0; i < SG_N_ELEMENTS(src); i++)
            *dst[i] = pack_str(&cur, src[i]);
    }
    req->cred.record = NULL;
    if (row->record_len > 0) {
        memcpy(cur, row->record, row->record_len);
        req->cred.record = (uint8_t *)cur;
    }
    return req;
}

static int cred_enqueue(struct sqlite_store *s, enum req_op op,
                        const struct sg_credential_row *row,
                        sg_store_credential_cb cb, void *opaque,
                        struct sg_error *err)
{
    struct write_req *req = cred_req_new(row);

    if (!req) {
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "out of memory queueing a write of credential '%s'",
                        row->name);
        return -1;
    }
    req->op = op;
    req->ccb = cb;
    req->opaque = opaque;
    return push(s, req, "credential", row->name, err);
}

static int sqlite_create_credential(void *priv,
                                    const struct sg_credential_row *row,
                                    sg_store_credential_cb cb, void *opaque,
                                    struct sg_error *err)
{
    return cred_enqueue(priv, OP_CRED_CREATE, row, cb, opaque, err);
}

static int sqlite_delete_credential(void *priv, const char *tenant,
                                    const char *name,
                                    sg_store_credential_cb cb, void *opaque,
                                    struct sg_error *err)
{
    struct sg_credential_row key = {.tenant = (char *)tenant,
                                    .name = (char *)name};

    return cred_enqueue(priv, OP_CRED_DELETE, &key, cb, opaque, err);
}

static int sqlite_get_credential(void *priv, const char *tenant,
                                 const char *name,
                                 sg_credential_visit_fn visit, void *opaque,
                                 struct sg_error *err)
{
    struct sqlite_store *s = priv;
    struct read_conn *c = checkout(s);
    sqlite3_stmt *st = c->st[R_CRED_GET];
    const struct row_visit rv = {.emit = emit_credential, .credential = visit,
                                 .opaque = opaque};
    int ret = -1;

    if (!bind_text(st, 1, tenant) || !bind_text(st, 2, name)) {
        sg_error_report(err, SG_ERR_INTERNAL, "sqlite: get credential: %s",
                        sqlite3_errmsg(c->db));
        goto cleanup;
    }
    ret = (int)visit_rows(c->db, st, &rv, "get credential", name, err);

 cleanup:
    sqlite3_reset(st);
    checkin(s, c);
    return ret;
}

static ssize_t sqlite_list_credentials(void *priv,
                                       const struct sg_credential_filter *f,
                                       const char *after_tenant,
                                       const char *after_name,
                                       size_t max_rows,
                                       sg_credential_visit_fn visit,
                                       void *opaque, struct sg_error *err)
{
    struct sqlite_store *s = priv;
    struct read_conn *c = checkout(s);
    sqlite3_stmt *st = c->st[R_CRED_LIST];
    const struct row_visit rv = {.emit = emit_credential, .credential = visit,
                                 .opaque = opaque};
    ssize_t visited = -1;

    if (!bind_text(st, 1, f->tenant ? f->tenant : "") ||
        !bind_text(st, 2, f->kind ? f->kind : "") ||
        !bind_text(st, 3, after_tenant) || !bind_text(st, 4, after_name) ||
        !bind_int(st, 5, sql_limit(max_rows))) {
        sg_error_report(err, SG_ERR_INTERNAL, "sqlite: list credentials: %s",
                        sqlite3_errmsg(c->db));
        goto cleanup;
    }
    visited = visit_rows(c->db, st, &rv, "list credentials", NULL, err);

 cleanup:
    sqlite3_reset(st);
    checkin(s, c);
    return visited;
}

static int apply_migration(struct sqlite_store *s,
                           const struct sg_sql_migration *m,
                           struct sg_error *err)
{
    char what[128], sql[256];
    int64_t done = 0;
    sqlite3_stmt *st = NULL;
    int ret = -1;

    snprintf(what, sizeof(what), "schema migration %04u_%s", m->version,
             m->name);
    if (exec_sql(s->wdb, "BEGIN IMMEDIATE", what, err) < 0)
        return -1;
    /* Another gateway on the same file may have applied it meanwhile. */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM schema_migrations WHERE version = %u",
             m->version);
    if (query_one(s->wdb, sql, what, SG_ERR_INTERNAL, NULL, 0, &done, err) < 0)
        goto cleanup;
    if (!done) {
        if (exec_sql(s->wdb, m->sql, what, err) < 0)
            goto cleanup;
        if (prepare(s->wdb,
                    "INSERT INTO schema_migrations (version, name, "
                    "applied_at) VALUES (?1, ?2, ?3)",
                    &st, err) < 0)
            goto cleanup;
        if (!bind_int(st, 1, m->version) || !bind_text(st, 2, m->name) ||
            !bind_int(st, 3, now_ms()) || sqlite3_step(st) != SQLITE_DONE) {
            sg_error_report(err, SG_ERR_INTERNAL, "sqlite: %s: %s", what,
                            sqlite3_errmsg(s->wdb));
            goto cleanup;
        }
    }
    if (exec_sql(s->wdb, "COMMIT", what, err) < 0)
        goto cleanup;
    if (!done)
        SG_INFO("applied schema migration %04u_%s to '%s'", m->version, m->name,
                s->path);
    ret = 0;

 cleanup:
    sqlite3_finalize(st);
    if (ret < 0 && !sqlite3_get_autocommit(s->wdb))
        sqlite3_exec(s->wdb, "ROLLBACK", NULL, NULL, NULL);
    return ret;
}

static int migrate(struct sqlite_store *s, struct sg_error *err)
{
    unsigned latest =
        sg_sqlite_migrations[sg_sqlite_migrations_len - 1].version;
    int64_t current = 0;
    size_t i;

    if (exec_sql(s->wdb,
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "applied_at INTEGER NOT NULL)",
                 "create schema_migrations", err) < 0 ||
        query_one(s->wdb,
                  "SELECT coalesce(max(version), 0) FROM schema_migrations",
                  "sqlite: read schema_migrations", SG_ERR_INTERNAL, NULL, 0,
                  &current, err) < 0)
        return -1;
    /* An older gateway must not write a schema it does not know. */
    if (current > (int64_t)latest) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "database schema version %lld is newer than this "
                        "gateway supports (%u)",
                        (long long)current, latest);
        return -1;
    }
    for (i = 0; i < sg_sqlite_migrations_len; i++) {
        if ((int64_t)sg_sqlite_migrations[i].version <= current)
            continue;
        if (apply_migration(s, &sg_sqlite_migrations[i], err) < 0)
            return -1;
    }
    s->schema_version = latest;
    return 0;
}

static void finalize_all(sqlite3_stmt **st, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        sqlite3_finalize(st[i]);
        st[i] = NULL;
    }
}

static void close_db(struct sqlite_store *s, sqlite3 **db)
{
    int rc;

    if (!*db)
        return;
    /* sqlite3_close (not _v2): a statement we forgot shows up here. */
    rc = sqlite3_close(*db);
    if (rc != SQLITE_OK)
        SG_ERROR("sqlite: closing '%s' failed: %s", s->path,
                 sqlite3_errmsg(*db));
    *db = NULL;
}

static void close_reader(struct sqlite_store *s, struct read_conn *c)
{
    size_t i;

    if (c->db && c->st[R_END])
        reader_end(c);
    finalize_all(c->st, R_COUNT);
    for (i = 0; i < c->n_shapes; i++)
        sqlite3_finalize(c->shapes[i].st);
    free(c->shapes);
    c->shapes = NULL;
    c->n_shapes = c->cap_shapes = 0;
    close_db(s, &c->db);
}

/* Undo open, whatever it reached. */
static void release(struct sqlite_store *s)
{
    unsigned i;

    if (s->writer_started) {
        pthread_mutex_lock(&s->lock);
        s->closing = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->writer, NULL);
        s->writer_started = false;
    }
    if (s->completer_started) {
        pthread_join(s->completer, NULL);
        s->completer_started = false;
    }
    for (i = 0; s->readers && i < s->n_readers; i++)
        close_reader(s, &s->readers[i]);
    finalize_all(s->wst, W_COUNT);
    close_db(s, &s->wdb);
    free(s->readers);
    free(s->free_readers);
    free(s->batch);
    free(s->obs_evs);
    free(s->path);
    if (s->locks_ready) {
        pthread_mutex_destroy(&s->obs_lock);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        pthread_cond_destroy(&s->done_wake);
        pthread_mutex_destroy(&s->pool_lock);
        pthread_cond_destroy(&s->pool_cond);
    }
    memset(s, 0, sizeof(*s));
}

static int check_config(struct sqlite_store *s,
                        const struct sg_store_config *cfg, struct sg_error *err)
{
    const char *durability = is_set(cfg->durability) ? cfg->durability : "full";

    if (!is_set(cfg->path)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "store path is empty (the sqlite backend needs a "
                        "database file)");
        return -1;
    }
    if (STREQ(durability, "full")) {
        s->full_sync = true;
    } else if (STREQ(durability, "normal")) {
        s->full_sync = false;
    } else {
        sg_error_report(err, SG_ERR_CONFIG,
                        "unknown store durability '%s' (known: full, "
                        "normal)",
                        durability);
        return -1;
    }
    s->busy_timeout_ms =
        cfg->busy_timeout_ms ? cfg->busy_timeout_ms : DEFAULT_BUSY_TIMEOUT_MS;
    s->max_batch = cfg->max_batch ? cfg->max_batch : DEFAULT_MAX_BATCH;
    s->n_readers = cfg->read_connections ? cfg->read_connections
                                         : DEFAULT_READ_CONNECTIONS;
    if (s->busy_timeout_ms > MAX_BUSY_TIMEOUT_MS) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "store busy_timeout_ms %u is out of range (1..%u)",
                        s->busy_timeout_ms, MAX_BUSY_TIMEOUT_MS);
        return -1;
    }
    if (s->max_batch > MAX_MAX_BATCH) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "store max_batch %u is out of range (1..%u)",
                        s->max_batch, MAX_MAX_BATCH);
        return -1;
    }
    if (cfg->event_retention_count > INT64_MAX) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "store event retention count %llu is out of range "
                        "(0..%lld)",
                        (unsigned long long)cfg->event_retention_count,
                        (long long)INT64_MAX);
        return -1;
    }
    if (cfg->event_retention_age_ms < 0) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "store event retention age %lld ms is negative",
                        (long long)cfg->event_retention_age_ms);
        return -1;
    }
    s->retain_count = cfg->event_retention_count;
    s->retain_age_ms = cfg->event_retention_age_ms;
    if (s->n_readers > MAX_READ_CONNECTIONS) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "store read_connections %u is out of range (1..%u)",
                        s->n_readers, MAX_READ_CONNECTIONS);
        return -1;
    }
    /* NOMUTEX connections on many threads need a thread-safe library. */
    if (!sqlite3_threadsafe()) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "libsqlite3 %s was built without thread support",
                        sqlite3_libversion());
        return -1;
    }
    return 0;
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

/*
 * Process-wide settings, before SQLite initializes itself. Memory
 * statistics take a global mutex on every allocation, which the writer
 * and every reader would contend for; nothing here reads them.
 */
static void global_setup(void)
{
    if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) != SQLITE_OK)
        SG_DEBUG("sqlite: already initialized; memory statistics stay on");
}

static int sqlite_open(void *priv, const struct sg_store_config *cfg,
                       struct sg_error *err)
{
    struct sqlite_store *s = priv;
    unsigned i;
    int rc;

    pthread_once(&global_once, global_setup);
    if (check_config(s, cfg, err) < 0)
        return -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->done_wake, NULL);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    pthread_mutex_init(&s->obs_lock, NULL);
    s->locks_ready = true;

    s->path = strdup(cfg->path);
    s->batch = calloc(s->max_batch, sizeof(*s->batch));
    s->readers = calloc(s->n_readers, sizeof(*s->readers));
    s->free_readers = calloc(s->n_readers, sizeof(*s->free_readers));
    if (!s->path || !s->batch || !s->readers || !s->free_readers) {
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "out of memory opening database '%s'", cfg->path);
        goto error;
    }

    if (create_file(s->path, err) < 0 || open_conn(s, &s->wdb, err) < 0 ||
        setup_writer(s, err) < 0 || migrate(s, err) < 0)
        goto error;
    for (i = 0; i < W_COUNT; i++) {
        if (prepare(s->wdb, wstmt_sql[i], &s->wst[i], err) < 0)
            goto error;
    }
    for (i = 0; i < s->n_readers; i++) {
        struct read_conn *c = &s->readers[i];
        unsigned j;

        if (open_conn(s, &c->db, err) < 0 ||
            exec_sql(c->db, "PRAGMA query_only = ON", "set query_only", err) <
                0)
            goto error;
        for (j = 0; j < R_COUNT; j++) {
            if (prepare(c->db, rstmt_sql[j], &c->st[j], err) < 0)
                goto error;
        }
        s->free_readers[s->n_free++] = c;
    }

    rc = pthread_create(&s->completer, NULL, completer_main, s);
    if (rc == 0) {
        s->completer_started = true;
        rc = pthread_create(&s->writer, NULL, writer_main, s);
    }
    if (rc != 0) {
        char buf[128];

        sg_error_report(err, SG_ERR_INTERNAL,
                        "cannot start the store threads: %s",
                        sg_strerror(rc, buf, sizeof(buf)));
        /* release() joins a started completer: tell it no writer comes. */
        pthread_mutex_lock(&s->lock);
        s->writer_done = true;
        pthread_cond_signal(&s->done_wake);
        pthread_mutex_unlock(&s->lock);
        goto error;
    }
    s->writer_started = true;
    SG_INFO("opened '%s' (schema version %u, durability %s, %u read "
            "connections, max batch %u, event retention: count %llu, age "
            "%lld ms, 0 = none)",
            s->path, s->schema_version, s->full_sync ? "full" : "normal",
            s->n_readers, s->max_batch, (unsigned long long)s->retain_count,
            (long long)s->retain_age_ms);
    return 0;

 error:
    release(s);
    return -1;
}

/* Refuse new writes, let the writer drain the queue, release. */
static void sqlite_close(void *priv)
{
    struct sqlite_store *s = priv;

    if (s->stats.commits)
        SG_INFO("sqlite: %llu writes in %llu commits (at most %llu in one)",
                (unsigned long long)s->stats.writes,
                (unsigned long long)s->stats.commits,
                (unsigned long long)s->stats.max_batch);
    release(priv);
}

const struct sg_store_ops sg_store_sqlite_ops = {
    .name = "sqlite",
    .priv_size = sizeof(struct sqlite_store),
    .open = sqlite_open,
    .close = sqlite_close,
    .create_sandbox = sqlite_create_sandbox,
    .update_sandbox = sqlite_update_sandbox,
    .get_sandbox = sqlite_get_sandbox,
    .list_sandboxes = sqlite_list_sandboxes,
    .list_events = sqlite_list_events,
    .event_bounds = sqlite_event_bounds,
    .count_sandboxes = sqlite_count_sandboxes,
    .create_credential = sqlite_create_credential,
    .delete_credential = sqlite_delete_credential,
    .get_credential = sqlite_get_credential,
    .list_credentials = sqlite_list_credentials,
    .set_commit_observer = sqlite_set_commit_observer,
    .get_stats = sqlite_get_stats,
    .schema_version = sqlite_schema_version,
};
