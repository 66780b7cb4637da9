/*
 * test_store.c: the store API on the SQLite backend.
 *
 * Every test gets its own database under one temporary directory that the
 * parent process creates and removes (an unchecked fixture, so it is
 * cleaned up even when a forked test fails). Some tests open the database
 * file with a second, raw SQLite connection: to hold the write lock (so
 * that writes queue up and must share a transaction), to plant triggers
 * that make one request or one COMMIT fail, or to stamp a future schema.
 */
#include "internal.h"

#include "testutils.h"

#include "store.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char base_dir[64];

static void base_setup(void)
{
    snprintf(base_dir, sizeof(base_dir), "/tmp/sg-test-store-XXXXXX");
    if (!mkdtemp(base_dir))
        abort();
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static void base_teardown(void)
{
    nftw(base_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory for this test; out receives <dir>/store.db. */
static void new_db_path(char *out, size_t len)
{
    char dir[128];

    snprintf(dir, sizeof(dir), "%s/XXXXXX", base_dir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(out, len, "%s/store.db", dir);
}

static struct sg_store *open_cfg(const struct sg_store_config *cfg)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_store *store = sg_store_open(cfg, &err);

    ck_assert_msg(store != NULL, "open failed: %s", err.message);
    return store;
}

static struct sg_store *open_path(const char *path)
{
    struct sg_store_config cfg = {.backend = "sqlite", .path = path};

    return open_cfg(&cfg);
}

/* --- raw SQLite access to the same file ------------------------------- */

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;

    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v;

    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void raw_close(sqlite3 *db)
{
    ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}

/* --- rows and events --------------------------------------------------- */

static uint8_t record_bytes[] = {0x0a, 0x03, 0x00, 0xff, 0x10, 0x00};

/* A row with every field set; strings are borrowed from the arguments. */
static struct sg_sandbox_row mkrow(const char *id, const char *owner,
                                   const char *request_id)
{
    struct sg_sandbox_row r = {
        .id = (char *)id,
        .name = (char *)"name",
        .tenant = (char *)"tenant",
        .project = (char *)"project",
        .owner = (char *)owner,
        .request_id = (char *)request_id,
        .request_hash = (char *)"hash",
        .namespace_name = (char *)"ns",
        .phase = SG_PHASE_ACCEPTED,
        .create_time = 1000,
        .update_time = 1000,
        .expire_time = 0,
        .resource_version = 999, /* ignored: the store assigns it */
        .record = record_bytes,
        .record_len = sizeof(record_bytes),
    };

    return r;
}

static struct sg_event_row mkevent(const struct sg_sandbox_row *r,
                                   enum sg_event_type type, const char *reason)
{
    struct sg_event_row ev = {
        .seq = 777, /* ignored */
        .time = 0,
        .type = type,
        .sandbox_id = r->id,
        .sandbox_name = r->name,
        .namespace_name = r->namespace_name,
        .tenant = r->tenant,
        .project = r->project,
        .owner = r->owner,
        .request_id = r->request_id,
        .phase = r->phase,
        .reason = (char *)reason,
        .message = (char *)"message",
        .resource_version = 555, /* ignored */
    };

    return ev;
}

/* --- waiting for write callbacks --------------------------------------- */

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    enum sg_err_code code;
    char message[SG_ERROR_MESSAGE_MAX];
    bool created;
    struct sg_sandbox_row *row;
    struct sg_event_row *event;
};

#define WAITER_INIT                                                            \
    {                                                                          \
        .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER        \
    }

static void on_write(void *opaque, const struct sg_store_result *res)
{
    struct waiter *w = opaque;

    pthread_mutex_lock(&w->mu);
    w->calls++;
    w->code = res->err ? res->err->code : SG_ERR_OK;
    snprintf(w->message, sizeof(w->message), "%s",
             res->err ? res->err->message : "");
    w->created = res->created;
    sg_sandbox_row_free(w->row);
    sg_event_row_free(w->event);
    w->row = res->row ? sg_sandbox_row_copy(res->row) : NULL;
    w->event = res->n_events ? sg_event_row_copy(&res->events[0]) : NULL;
    /* The contract: row is NULL exactly when err is set. */
    if ((res->err != NULL) == (res->row != NULL))
        w->code = (enum sg_err_code) - 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void wait_calls(struct waiter *w, int calls)
{
    pthread_mutex_lock(&w->mu);
    while (w->calls < calls)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void waiter_clear(struct waiter *w)
{
    sg_sandbox_row_free(w->row);
    sg_event_row_free(w->event);
    w->row = NULL;
    w->event = NULL;
    w->calls = 0;
    w->code = SG_ERR_OK;
    w->message[0] = '\0';
    w->created = false;
}

/* Write and wait for the callback; returns its error code. */
static enum sg_err_code create_wait(struct sg_store *store,
                                    const struct sg_sandbox_row *row,
                                    const struct sg_event_row *ev,
                                    struct waiter *w)
{
    struct sg_error err = SG_ERROR_INIT;

    waiter_clear(w);
    ck_assert_int_eq(sg_store_create_sandbox(store, row, ev, on_write, w, &err),
                     0);
    wait_calls(w, 1);
    ck_assert_int_eq(w->calls, 1);
    return w->code;
}

static enum sg_err_code update_wait(struct sg_store *store,
                                    const struct sg_sandbox_row *row,
                                    uint64_t expected_rv,
                                    const struct sg_event_row *ev,
                                    struct waiter *w)
{
    struct sg_error err = SG_ERROR_INIT;

    waiter_clear(w);
    ck_assert_int_eq(
        sg_store_update_sandbox(store, row, expected_rv, ev, ev ? 1 : 0,
                                on_write, w, &err),
        0);
    wait_calls(w, 1);
    ck_assert_int_eq(w->calls, 1);
    return w->code;
}

/* Create a simple row with an ACCEPTED event; asserts success. */
static uint64_t create_ok(struct sg_store *store,
                          const struct sg_sandbox_row *row)
{
    struct sg_event_row ev = mkevent(row, SG_EVENT_ACCEPTED, "Accepted");
    struct waiter w = WAITER_INIT;
    uint64_t rv;

    ck_assert_int_eq(create_wait(store, row, &ev, &w), SG_ERR_OK);
    ck_assert(w.created);
    rv = w.row->resource_version;
    waiter_clear(&w);
    return rv;
}

/* --- collecting reads -------------------------------------------------- */

struct collect {
    size_t n;
    size_t cap;
    struct sg_sandbox_row **rows;
    size_t stop_after; /* 0: never stop */
};

static int collect_row(void *opaque, const struct sg_sandbox_row *row)
{
    struct collect *c = opaque;

    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->rows = realloc(c->rows, c->cap * sizeof(*c->rows));
        ck_assert_ptr_nonnull(c->rows);
    }
    c->rows[c->n] = sg_sandbox_row_copy(row);
    ck_assert_ptr_nonnull(c->rows[c->n]);
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static void collect_free(struct collect *c)
{
    size_t i;

    for (i = 0; i < c->n; i++)
        sg_sandbox_row_free(c->rows[i]);
    free(c->rows);
    memset(c, 0, sizeof(*c));
}

/* "id1,id2,..." of the collected rows. */
static void collect_ids(const struct collect *c, char *out, size_t len)
{
    size_t i, used = 0;

    out[0] = '\0';
    for (i = 0; i < c->n && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s", i ? "," : "",
                                 c->rows[i]->id);
}

struct ecollect {
    size_t n;
    size_t cap;
    struct sg_event_row **evs;
};

static int collect_event(void *opaque, const struct sg_event_row *ev)
{
    struct ecollect *c = opaque;

    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->evs = realloc(c->evs, c->cap * sizeof(*c->evs));
        ck_assert_ptr_nonnull(c->evs);
    }
    c->evs[c->n] = sg_event_row_copy(ev);
    ck_assert_ptr_nonnull(c->evs[c->n]);
    c->n++;
    return 0;
}

static void ecollect_free(struct ecollect *c)
{
    size_t i;

    for (i = 0; i < c->n; i++)
        sg_event_row_free(c->evs[i]);
    free(c->evs);
    memset(c, 0, sizeof(*c));
}

static void list_all_events(struct sg_store *store, struct ecollect *c)
{
    struct sg_error err = SG_ERROR_INIT;
    ssize_t n = sg_store_list_events(store, NULL, 0, 0, 0, NULL, collect_event,
                                     c, &err);

    ck_assert_msg(n >= 0, "%s", err.message);
    ck_assert_int_eq((size_t)n, c->n);
}

static struct sg_sandbox_row *get_row(struct sg_store *store, const char *id)
{
    struct sg_error err = SG_ERROR_INIT;
    struct collect c = {0};
    struct sg_sandbox_row *row = NULL;
    int found = sg_store_get_sandbox(store, id, collect_row, &c, &err);

    ck_assert_msg(found >= 0, "%s", err.message);
    ck_assert_int_eq((size_t)found, c.n);
    if (found) {
        row = c.rows[0];
        c.n = 0;
    }
    collect_free(&c);
    return row;
}

static uint64_t count_rows(struct sg_store *store,
                           const struct sg_sandbox_filter *f)
{
    struct sg_error err = SG_ERROR_INIT;
    uint64_t count = 0;

    ck_assert_msg(sg_store_count_sandboxes(store, f, &count, &err) == 0, "%s",
                  err.message);
    return count;
}

static void assert_row_eq(const struct sg_sandbox_row *a,
                          const struct sg_sandbox_row *b)
{
    ck_assert_str_eq(a->id, b->id);
    ck_assert_str_eq(a->name, b->name);
    ck_assert_str_eq(a->tenant, b->tenant);
    ck_assert_str_eq(a->project, b->project);
    ck_assert_str_eq(a->owner, b->owner);
    ck_assert_str_eq(a->request_id, b->request_id);
    ck_assert_str_eq(a->request_hash, b->request_hash);
    ck_assert_str_eq(a->namespace_name, b->namespace_name);
    ck_assert_int_eq(a->phase, b->phase);
    ck_assert_int_eq(a->create_time, b->create_time);
    ck_assert_int_eq(a->update_time, b->update_time);
    ck_assert_int_eq(a->expire_time, b->expire_time);
    ck_assert_uint_eq(a->record_len, b->record_len);
    ck_assert(a->record_len == 0 ||
              memcmp(a->record, b->record, a->record_len) == 0);
}

/* --- create, get ------------------------------------------------------- */

START_TEST(test_create_get)
{
    char path[256];
    struct sg_store *store;
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "req-1");
    struct sg_event_row ev = mkevent(&row, SG_EVENT_ACCEPTED, "Accepted");
    struct sg_sandbox_row *got;
    struct waiter w = WAITER_INIT;
    int64_t before = (int64_t)time(NULL) * 1000;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    ck_assert_str_eq(sg_store_backend(store), "sqlite");

    ck_assert_int_eq(create_wait(store, &row, &ev, &w), SG_ERR_OK);
    ck_assert(w.created);
    assert_row_eq(w.row, &row);
    ck_assert_uint_eq(w.row->resource_version, 1);
    ck_assert_ptr_nonnull(w.event);
    ck_assert_uint_eq(w.event->seq, 1);
    ck_assert_uint_eq(w.event->resource_version, 1);
    /* time 0 was given: the store stamps it. */
    ck_assert_int_ge(w.event->time, before);
    ck_assert_str_eq(w.event->reason, "Accepted");

    got = get_row(store, "sb-1");
    ck_assert_ptr_nonnull(got);
    assert_row_eq(got, &row);
    ck_assert_uint_eq(got->resource_version, 1);
    sg_sandbox_row_free(got);

    ck_assert_ptr_null(get_row(store, "sb-2"));
    ck_assert_ptr_null(get_row(store, "sb"));

    /* An empty record reads back as empty, not as a failure. */
    row = mkrow("sb-empty", "alice", "");
    row.record = NULL;
    row.record_len = 0;
    ck_assert_int_eq(create_wait(store, &row, NULL, &w), SG_ERR_OK);
    ck_assert_ptr_null(w.event);
    got = get_row(store, "sb-empty");
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(got->record_len, 0);
    ck_assert_uint_eq(got->resource_version, 2);
    sg_sandbox_row_free(got);

    waiter_clear(&w);
    sg_store_close(store);
}
END_TEST

START_TEST(test_create_idempotent)
{
    char path[256];
    struct sg_store *store;
    struct sg_sandbox_row a = mkrow("sb-a", "alice", "req-1");
    struct sg_sandbox_row b = mkrow("sb-b", "alice", "req-1");
    struct sg_sandbox_row c = mkrow("sb-c", "bob", "req-1");
    struct sg_event_row ev = mkevent(&b, SG_EVENT_ACCEPTED, "Accepted");
    struct waiter w = WAITER_INIT;
    struct ecollect events = {0};

    new_db_path(path, sizeof(path));
    store = open_path(path);
    ck_assert_uint_eq(create_ok(store, &a), 1);

    /* Same owner and request id: the existing row, nothing written. */
    b.name = (char *)"other-name";
    ck_assert_int_eq(create_wait(store, &b, &ev, &w), SG_ERR_OK);
    ck_assert(!w.created);
    ck_assert_ptr_null(w.event);
    ck_assert_str_eq(w.row->id, "sb-a");
    ck_assert_str_eq(w.row->name, "name");
    ck_assert_uint_eq(w.row->resource_version, 1);
    ck_assert_ptr_null(get_row(store, "sb-b"));
    list_all_events(store, &events);
    ck_assert_uint_eq(events.n, 1);
    ecollect_free(&events);

    /* Same request id, another owner: a separate row; the counter did not
       move for the duplicate. */
    ck_assert_uint_eq(create_ok(store, &c), 2);

    /* No request id: never deduplicated. */
    a = mkrow("sb-d", "alice", "");
    b = mkrow("sb-e", "alice", "");
    ck_assert_uint_eq(create_ok(store, &a), 3);
    ck_assert_uint_eq(create_ok(store, &b), 4);
    ck_assert_uint_eq(count_rows(store, NULL), 4);

    waiter_clear(&w);
    sg_store_close(store);
}
END_TEST

/*
 * Readers keep a read transaction open between reads while nothing was
 * committed: every read that follows an acknowledged write must still see
 * it, and idle readers must not keep the WAL from being checkpointed.
 */
START_TEST(test_reads_see_every_acknowledged_write)
{
    char path[256];
    struct sg_store *store;
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "");
    struct waiter w = WAITER_INIT;
    sqlite3 *raw;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    ck_assert_uint_eq(create_ok(store, &row), 1);
    for (int i = 0; i < 200; i++) {
        struct sg_sandbox_row *got;

        /* Reads first, so the pool's connections hold snapshots. */
        for (int j = 0; j < 3; j++)
            sg_sandbox_row_free(get_row(store, "sb-1"));
        row.phase = (enum sg_phase)(1 + i % 6);
        ck_assert_int_eq(update_wait(store, &row, 0, NULL, &w), SG_ERR_OK);
        waiter_clear(&w);
        got = get_row(store, "sb-1");
        ck_assert_ptr_nonnull(got);
        ck_assert_uint_eq(got->resource_version, (uint64_t)i + 2);
        ck_assert_int_eq(got->phase, row.phase);
        sg_sandbox_row_free(got);
    }
    /* A commit ends the read transactions of idle readers: after one, a
       full checkpoint that resets the WAL is not blocked (its first
       column, "busy", is 0). */
    ck_assert_int_eq(update_wait(store, &row, 0, NULL, &w), SG_ERR_OK);
    waiter_clear(&w);
    raw = raw_open(path);
    ck_assert_int_eq(raw_int(raw, "PRAGMA wal_checkpoint(TRUNCATE)"), 0);
    raw_close(raw);
    sg_store_close(store);
}
END_TEST

START_TEST(test_create_duplicate_id)
{
    char path[256];
    struct sg_store *store;
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "");
    struct sg_event_row ev = mkevent(&row, SG_EVENT_ACCEPTED, "Accepted");
    struct waiter w = WAITER_INIT;
    struct ecollect events = {0};
    struct sg_error err = SG_ERROR_INIT;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    ck_assert_uint_eq(create_ok(store, &row), 1);
    ck_assert_int_eq(create_wait(store, &row, &ev, &w), SG_ERR_ALREADY_EXISTS);
    ck_assert_ptr_null(w.row);
    ck_assert_str_eq(w.message, "sandbox 'sb-1' already exists");
    list_all_events(store, &events);
    ck_assert_uint_eq(events.n, 1);
    ecollect_free(&events);
    /* The failed write's counter bump was rolled back with it. */
    row.id = (char *)"sb-2";
    ck_assert_uint_eq(create_ok(store, &row), 2);

    /* No id: refused at once, no callback. */
    row.id = (char *)"";
    ck_assert_int_eq(
        sg_store_create_sandbox(store, &row, NULL, on_write, &w, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);

    waiter_clear(&w);
    sg_store_close(store);
}
END_TEST

/* --- update ------------------------------------------------------------ */

START_TEST(test_update)
{
    char path[256];
    struct sg_store *store;
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "req-1");
    struct sg_event_row ev;
    struct sg_sandbox_row *got;
    struct waiter w = WAITER_INIT;
    struct ecollect events = {0};
    uint8_t rec2[] = {1, 2, 3};

    new_db_path(path, sizeof(path));
    store = open_path(path);
    ck_assert_uint_eq(create_ok(store, &row), 1);

    /* Conditional on the current version: phase, update_time and the
       record change; the columns fixed at create are not rewritten. */
    row.phase = SG_PHASE_READY;
    row.update_time = 2000;
    row.record = rec2;
    row.record_len = sizeof(rec2);
    row.name = (char *)"renamed";
    row.namespace_name = (char *)"ns-2";
    row.expire_time = 9000;
    ev = mkevent(&row, SG_EVENT_READY, "Ready");
    ck_assert_int_eq(update_wait(store, &row, 1, &ev, &w), SG_ERR_OK);
    ck_assert(!w.created);
    ck_assert_uint_eq(w.row->resource_version, 2);
    ck_assert_uint_eq(w.event->resource_version, 2);
    ck_assert_uint_eq(w.event->seq, 2);
    got = get_row(store, "sb-1");
    ck_assert_int_eq(got->phase, SG_PHASE_READY);
    ck_assert_int_eq(got->update_time, 2000);
    ck_assert_uint_eq(got->record_len, sizeof(rec2));
    ck_assert_int_eq(memcmp(got->record, rec2, sizeof(rec2)), 0);
    ck_assert_str_eq(got->name, "name");
    ck_assert_str_ne(got->namespace_name, "ns-2");
    ck_assert_int_ne(got->expire_time, 9000);
    ck_assert_uint_eq(got->resource_version, 2);
    sg_sandbox_row_free(got);
    row = mkrow("sb-1", "alice", "req-1");
    row.phase = SG_PHASE_READY;

    /* Stale version. */
    row.phase = SG_PHASE_FAILED;
    ck_assert_int_eq(update_wait(store, &row, 1, &ev, &w), SG_ERR_ABORTED);
    ck_assert_ptr_null(w.row);
    ck_assert_ptr_null(w.event);
    got = get_row(store, "sb-1");
    ck_assert_int_eq(got->phase, SG_PHASE_READY);
    sg_sandbox_row_free(got);

    /* No such sandbox. */
    row.id = (char *)"sb-missing";
    ck_assert_int_eq(update_wait(store, &row, 0, &ev, &w), SG_ERR_NOT_FOUND);
    ck_assert_str_eq(w.message, "sandbox 'sb-missing' not found");
    row.id = (char *)"sb-1";

    /* expected_rv 0: unconditional. */
    ck_assert_int_eq(update_wait(store, &row, 0, &ev, &w), SG_ERR_OK);
    ck_assert_uint_eq(w.row->resource_version, 3);

    /* No event: the version still advances, no event row. */
    row.update_time = 3000;
    ck_assert_int_eq(update_wait(store, &row, 3, NULL, &w), SG_ERR_OK);
    ck_assert_ptr_null(w.event);
    ck_assert_uint_eq(w.row->resource_version, 4);
    got = get_row(store, "sb-1");
    ck_assert_uint_eq(got->resource_version, 4);
    ck_assert_int_eq(got->update_time, 3000);
    sg_sandbox_row_free(got);
    list_all_events(store, &events);
    ck_assert_uint_eq(events.n, 3);
    ck_assert_uint_eq(events.evs[2]->resource_version, 3);
    ecollect_free(&events);

    waiter_clear(&w);
    sg_store_close(store);
}
END_TEST

/* --- list and count with filters -------------------------------------- */

static const struct seed {
    const char *id, *tenant, *project, *owner, *ns;
    enum sg_phase phase;
    int64_t expire;
} seeds[] = {
    {"s01", "t1", "p1", "alice", "ns1", SG_PHASE_ACCEPTED, 0},
    {"s02", "t1", "p1", "bob", "ns1", SG_PHASE_READY, 1000},
    {"s03", "t1", "p2", "alice", "ns2", SG_PHASE_READY, 2000},
    {"s04", "t2", "p3", "carol", "ns2", SG_PHASE_FAILED, 0},
    {"s05", "t2", "p3", "alice", "", SG_PHASE_DELETED, 500},
    {"s06", "t1", "p2", "bob", "ns1", SG_PHASE_DELETING, 3000},
    {"s07", "t3", "p4", "dave", "ns3", SG_PHASE_PROVISIONING, 0},
    {"s08", "t2", "p3", "carol", "ns2", SG_PHASE_READY, 1500},
};

#define P(x) SG_PHASE_BIT(SG_PHASE_##x)

static const struct filter_case {
    struct sg_sandbox_filter f;
    const char *after;
    const char *want;
} filter_cases[] = {
    {{0}, NULL, "s01,s02,s03,s04,s05,s06,s07,s08"},
    {{.tenant = "t1"}, NULL, "s01,s02,s03,s06"},
    {{.tenant = ""}, NULL, "s01,s02,s03,s04,s05,s06,s07,s08"},
    {{.tenant = "t9"}, NULL, ""},
    {{.project = "p3"}, NULL, "s04,s05,s08"},
    {{.owner = "alice"}, NULL, "s01,s03,s05"},
    {{.namespace_name = "ns2"}, NULL, "s03,s04,s08"},
    {{.phases = P(READY)}, NULL, "s02,s03,s08"},
    {{.phases = P(READY) | P(FAILED)}, NULL, "s02,s03,s04,s08"},
    {{.phases = SG_PHASES_ACTIVE}, NULL, "s01,s02,s03,s04,s06,s07,s08"},
    {{.phases = P(DELETED)}, NULL, "s05"},
    {{.phases = SG_PHASE_BIT(0)}, NULL, ""},
    {{.expire_before = 1500}, NULL, "s02,s05,s08"},
    {{.expire_before = 1}, NULL, ""},
    {{.expire_before = 3000}, NULL, "s02,s03,s05,s06,s08"},
    {{.tenant = "t1", .owner = "bob"}, NULL, "s02,s06"},
    {{.tenant = "t2", .phases = P(READY)}, NULL, "s08"},
    {{.project = "p3", .owner = "carol", .namespace_name = "ns2"},
     NULL,
     "s04,s08"},
    {{.phases = SG_PHASES_ACTIVE, .expire_before = 2000}, NULL, "s02,s03,s08"},
    {{.tenant = "t1",
      .project = "p2",
      .owner = "alice",
      .namespace_name = "ns2",
      .phases = P(READY),
      .expire_before = 2000},
     NULL,
     "s03"},
    {{0}, "s03", "s04,s05,s06,s07,s08"},
    {{0}, "", "s01,s02,s03,s04,s05,s06,s07,s08"},
    {{.tenant = "t1"}, "s03", "s06"},
    {{.owner = "alice", .phases = P(READY)}, "s01", "s03"},
    {{0}, "s08", ""},
};

static void seed_store(struct sg_store *store)
{
    size_t i;

    for (i = 0; i < SG_N_ELEMENTS(seeds); i++) {
        struct sg_sandbox_row row = mkrow(seeds[i].id, seeds[i].owner, "");

        row.tenant = (char *)seeds[i].tenant;
        row.project = (char *)seeds[i].project;
        row.namespace_name = (char *)seeds[i].ns;
        row.phase = seeds[i].phase;
        row.expire_time = seeds[i].expire;
        create_ok(store, &row);
    }
}

START_TEST(test_list_filters)
{
    const struct filter_case *fc = &filter_cases[_i];
    struct sg_error err = SG_ERROR_INIT;
    struct collect c = {0};
    char path[256], ids[512];
    struct sg_store *store;
    size_t want_n = fc->want[0] ? 1 : 0;
    ssize_t n;
    const char *p;

    for (p = fc->want; *p; p++)
        want_n += *p == ',';
    new_db_path(path, sizeof(path));
    store = open_path(path);
    seed_store(store);

    /* Twice: the second run reuses the cached statement of this shape. */
    for (int round = 0; round < 2; round++) {
        n = sg_store_list_sandboxes(store, &fc->f, fc->after, 0, collect_row,
                                    &c, &err);
        ck_assert_msg(n >= 0, "%s", err.message);
        collect_ids(&c, ids, sizeof(ids));
        ck_assert_str_eq(ids, fc->want);
        ck_assert_int_eq((size_t)n, want_n);
        collect_free(&c);
    }
    if (!fc->after)
        ck_assert_uint_eq(count_rows(store, &fc->f), want_n);
    sg_store_close(store);
}
END_TEST

START_TEST(test_list_limit_and_stop)
{
    struct sg_sandbox_filter active = {.phases = SG_PHASES_ACTIVE};
    struct sg_error err = SG_ERROR_INIT;
    struct collect c = {0};
    char path[256], ids[512];
    struct sg_store *store;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    seed_store(store);

    ck_assert_int_eq(
        sg_store_list_sandboxes(store, NULL, NULL, 3, collect_row, &c, &err),
        3);
    collect_ids(&c, ids, sizeof(ids));
    ck_assert_str_eq(ids, "s01,s02,s03");
    collect_free(&c);

    ck_assert_int_eq(sg_store_list_sandboxes(store, &active, "s03", 2,
                                             collect_row, &c, &err),
                     2);
    collect_ids(&c, ids, sizeof(ids));
    ck_assert_str_eq(ids, "s04,s06");
    collect_free(&c);

    /* The visitor stops the walk; the row it stopped on counts. */
    c.stop_after = 2;
    ck_assert_int_eq(
        sg_store_list_sandboxes(store, NULL, NULL, 0, collect_row, &c, &err),
        2);
    collect_free(&c);

    /* A stopped walk must not leave the connection mid-statement. */
    ck_assert_uint_eq(count_rows(store, NULL), 8);
    ck_assert_uint_eq(count_rows(store, &active), 7);
    sg_store_close(store);
}
END_TEST

/*
 * Keyset paging while rows are inserted, soft-deleted (phase DELETED, out
 * of the ACTIVE filter) and hard-deleted (raw DELETE) between pages: every
 * row that exists throughout comes back exactly once, in id order.
 */
START_TEST(test_pagination_concurrent_changes)
{
    struct sg_sandbox_filter active = {.phases = SG_PHASES_ACTIVE};
    struct sg_error err = SG_ERROR_INIT;
    enum { N = 60, PAGE = 7 };
    char path[256], id[32];
    int seen[2 * N + 2] = {0};
    bool removed[2 * N + 2] = {false};
    bool inserted_ahead[2 * N + 2] = {false};
    struct sg_store *store;
    struct waiter w = WAITER_INIT;
    char after[32] = "";
    int last = -1, page = 0, i;
    sqlite3 *raw;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    /* Even numbers now; odd ones are inserted while paging. */
    for (i = 0; i < 2 * N; i += 2) {
        struct sg_sandbox_row row;

        snprintf(id, sizeof(id), "r%03d", i);
        row = mkrow(id, "alice", "");
        create_ok(store, &row);
    }
    raw = raw_open(path);

    for (;;) {
        struct collect c = {0};
        ssize_t n = sg_store_list_sandboxes(store, &active, after, PAGE,
                                            collect_row, &c, &err);
        int cursor;

        ck_assert_msg(n >= 0, "%s", err.message);
        for (i = 0; i < (int)c.n; i++) {
            int num = (int)strtol(c.rows[i]->id + 1, NULL, 10);

            ck_assert_int_gt(num, last);
            last = num;
            seen[num]++;
        }
        if (c.n == 0) {
            collect_free(&c);
            break;
        }
        snprintf(after, sizeof(after), "%s", c.rows[c.n - 1]->id);
        cursor = last;
        collect_free(&c);
        page++;

        /* Behind the cursor (must not show up) and ahead of it (must). */
        for (i = cursor - 5; i <= cursor + 9; i += 14) {
            struct sg_sandbox_row row;

            if (i < 0 || i >= 2 * N || i % 2 == 0)
                continue;
            snprintf(id, sizeof(id), "r%03d", i);
            row = mkrow(id, "bob", "");
            create_ok(store, &row);
            if (i > cursor)
                inserted_ahead[i] = true;
        }
        /* Soft-delete the second row ahead, hard-delete the fourth. */
        i = cursor + (cursor % 2 ? 1 : 2) + 2;
        if (i < 2 * N && !removed[i]) {
            struct sg_sandbox_row row;
            struct sg_event_row ev;

            snprintf(id, sizeof(id), "r%03d", i);
            row = mkrow(id, "alice", "");
            row.phase = SG_PHASE_DELETED;
            ev = mkevent(&row, SG_EVENT_DELETED, "Deleted");
            ck_assert_int_eq(update_wait(store, &row, 0, &ev, &w), SG_ERR_OK);
            removed[i] = true;
        }
        i += 4;
        if (i < 2 * N && !removed[i]) {
            char sql[128];

            snprintf(sql, sizeof(sql),
                     "DELETE FROM sandboxes WHERE id = 'r%03d'", i);
            raw_exec(raw, sql);
            ck_assert_int_eq(sqlite3_changes(raw), 1);
            removed[i] = true;
        }
        ck_assert_int_lt(page, 4 * N);
    }
    ck_assert_int_gt(page, 5);

    for (i = 0; i < 2 * N; i++) {
        if (i % 2 == 0 && !removed[i])
            ck_assert_msg(seen[i] == 1, "r%03d seen %d times", i, seen[i]);
        if (removed[i])
            ck_assert_msg(seen[i] == 0, "removed r%03d was listed", i);
        if (inserted_ahead[i])
            ck_assert_msg(seen[i] == 1, "r%03d inserted ahead seen %d", i,
                          seen[i]);
        if (i % 2 == 1 && !inserted_ahead[i])
            ck_assert_msg(seen[i] == 0, "r%03d inserted behind was listed", i);
    }
    raw_close(raw);
    waiter_clear(&w);
    sg_store_close(store);
}
END_TEST

/* --- events ------------------------------------------------------------ */

START_TEST(test_list_events)
{
    struct sg_error err = SG_ERROR_INIT;
    struct ecollect events = {0};
    char path[256];
    struct sg_store *store;
    struct sg_sandbox_row a = mkrow("sb-a", "alice", "req-a");
    struct sg_sandbox_row b = mkrow("sb-b", "bob", "");
    struct sg_event_row ev;
    struct waiter w = WAITER_INIT;
    struct sg_sandbox_row *got;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    a.tenant = (char *)"tenant-a";
    a.project = (char *)"project-a";
    b.tenant = (char *)"tenant-b";
    b.namespace_name = (char *)"ns-b";
    create_ok(store, &a);
    create_ok(store, &b);
    a.phase = SG_PHASE_FAILED;
    ev = mkevent(&a, SG_EVENT_FAILED, "DriverError");
    ev.time = 424242;
    ev.message = (char *)"the driver said no";
    ck_assert_int_eq(update_wait(store, &a, 0, &ev, &w), SG_ERR_OK);

    list_all_events(store, &events);
    ck_assert_uint_eq(events.n, 3);
    for (size_t i = 0; i < events.n; i++) {
        ck_assert_uint_eq(events.evs[i]->seq, i + 1);
        ck_assert_uint_eq(events.evs[i]->resource_version, i + 1);
    }
    ck_assert_str_eq(events.evs[0]->sandbox_id, "sb-a");
    ck_assert_int_eq(events.evs[0]->type, SG_EVENT_ACCEPTED);
    ck_assert_str_eq(events.evs[0]->tenant, "tenant-a");
    ck_assert_str_eq(events.evs[0]->project, "project-a");
    ck_assert_str_eq(events.evs[0]->owner, "alice");
    ck_assert_str_eq(events.evs[0]->request_id, "req-a");
    ck_assert_str_eq(events.evs[1]->sandbox_id, "sb-b");
    ck_assert_str_eq(events.evs[1]->tenant, "tenant-b");
    ck_assert_str_eq(events.evs[1]->owner, "bob");
    ck_assert_str_eq(events.evs[1]->namespace_name, "ns-b");
    ck_assert_str_eq(events.evs[1]->request_id, "");
    ck_assert_str_eq(events.evs[2]->sandbox_id, "sb-a");
    ck_assert_str_eq(events.evs[2]->sandbox_name, "name");
    ck_assert_int_eq(events.evs[2]->type, SG_EVENT_FAILED);
    ck_assert_int_eq(events.evs[2]->phase, SG_PHASE_FAILED);
    ck_assert_str_eq(events.evs[2]->reason, "DriverError");
    ck_assert_str_eq(events.evs[2]->message, "the driver said no");
    ck_assert_int_eq(events.evs[2]->time, 424242); /* kept when given */
    /* The event carries the version the row was written with. */
    got = get_row(store, "sb-a");
    ck_assert_uint_eq(got->resource_version, events.evs[2]->resource_version);
    sg_sandbox_row_free(got);
    got = get_row(store, "sb-b");
    ck_assert_uint_eq(got->resource_version, events.evs[1]->resource_version);
    sg_sandbox_row_free(got);
    ecollect_free(&events);

    /* A cursor and a limit. */
    ck_assert_int_eq(sg_store_list_events(store, NULL, 1, 1, 0, NULL,
                                          collect_event, &events, &err),
                     1);
    ck_assert_uint_eq(events.evs[0]->seq, 2);
    ecollect_free(&events);
    ck_assert_int_eq(sg_store_list_events(store, NULL, 3, 0, 0, NULL,
                                          collect_event, &events, &err),
                     0);

    waiter_clear(&w);
    sg_store_close(store);
}
END_TEST

/* --- event filters and scanning --------------------------------------- */

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Append n events to row (an update, any version); returns the first
   event's seq (0 when n is 0). */
static uint64_t append_events(struct sg_store *store,
                              const struct sg_sandbox_row *row,
                              const struct sg_event_row *evs, size_t n)
{
    struct sg_error err = SG_ERROR_INIT;
    struct waiter w = WAITER_INIT;
    uint64_t first;

    ck_assert_msg(
        sg_store_update_sandbox(store, row, 0, evs, n, on_write, &w, &err) == 0,
        "%s", err.message);
    wait_calls(&w, 1);
    ck_assert_msg(w.code == SG_ERR_OK, "%s", w.message);
    first = w.event ? w.event->seq : 0;
    ck_assert_uint_eq(first != 0, n != 0);
    waiter_clear(&w);
    return first;
}

/* n events of row, all of type and time. */
static uint64_t append_n(struct sg_store *store,
                         const struct sg_sandbox_row *row,
                         enum sg_event_type type, int64_t time, size_t n)
{
    struct sg_event_row evs[SG_STORE_MAX_EVENTS];

    ck_assert_uint_le(n, SG_STORE_MAX_EVENTS);
    for (size_t i = 0; i < n; i++) {
        evs[i] = mkevent(row, type, "Test");
        evs[i].time = time;
    }
    return append_events(store, row, evs, n);
}

static void get_bounds(struct sg_store *store, uint64_t *oldest,
                       uint64_t *newest)
{
    struct sg_error err = SG_ERROR_INIT;

    *oldest = *newest = 12345;
    ck_assert_msg(sg_store_event_bounds(store, oldest, newest, &err) == 0, "%s",
                  err.message);
}

#define ASSERT_BOUNDS(store, want_oldest, want_newest)                         \
    do {                                                                       \
        uint64_t o_, n_;                                                       \
        get_bounds((store), &o_, &n_);                                         \
        ck_assert_uint_eq(o_, (want_oldest));                                  \
        ck_assert_uint_eq(n_, (want_newest));                                  \
    } while (0)

/* One listing call; asserts success and that the count matches. */
static size_t list_ev(struct sg_store *store, const struct sg_event_filter *f,
                      uint64_t after, size_t max_rows, size_t max_scan,
                      uint64_t *scanned_to, struct ecollect *c)
{
    struct sg_error err = SG_ERROR_INIT;
    size_t before = c->n;
    ssize_t n = sg_store_list_events(store, f, after, max_rows, max_scan,
                                     scanned_to, collect_event, c, &err);

    ck_assert_msg(n >= 0, "%s", err.message);
    ck_assert_uint_eq((size_t)n, c->n - before);
    return (size_t)n;
}

/* "1,4,8" of the collected events' seqs. */
static void collect_seqs(const struct ecollect *c, char *out, size_t len)
{
    size_t i, used = 0;

    out[0] = '\0';
    for (i = 0; i < c->n && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%llu", i ? "," : "",
                                 (unsigned long long)c->evs[i]->seq);
}

static const struct ev_sandbox {
    const char *id, *tenant, *ns;
} ev_sandboxes[] = {
    {"sb-1", "t1", "ns1"},
    {"sb-2", "t1", "ns2"},
    {"sb-3", "t2", "ns1"},
    {"sb-4", "t2", ""},
};

/* Seq i + 1 is ev_seeds[i]. */
static const struct ev_seed {
    int sandbox;
    enum sg_event_type type;
} ev_seeds[] = {
    {0, SG_EVENT_ACCEPTED}, {1, SG_EVENT_ACCEPTED},
    {2, SG_EVENT_ACCEPTED}, {0, SG_EVENT_READY},
    {3, SG_EVENT_ACCEPTED}, {2, SG_EVENT_FAILED},
    {1, SG_EVENT_READY},    {0, SG_EVENT_DELETE_REQUESTED},
    {0, SG_EVENT_DELETED},  {3, SG_EVENT_EXPIRED},
};

#define T(x) (1u << SG_EVENT_##x)

static const struct ev_filter_case {
    struct sg_event_filter f;
    uint64_t after;
    const char *want;
} ev_filter_cases[] = {
    {{0}, 0, "1,2,3,4,5,6,7,8,9,10"},
    {{.tenant = "t1"}, 0, "1,2,4,7,8,9"},
    {{.tenant = "t2"}, 0, "3,5,6,10"},
    {{.tenant = ""}, 0, "1,2,3,4,5,6,7,8,9,10"},
    {{.tenant = "t9"}, 0, ""},
    {{.namespace_name = "ns1"}, 0, "1,3,4,6,8,9"},
    {{.namespace_name = "ns2"}, 0, "2,7"},
    {{.sandbox_id = "sb-1"}, 0, "1,4,8,9"},
    {{.sandbox_id = "sb-4"}, 0, "5,10"},
    {{.sandbox_id = "sb-9"}, 0, ""},
    {{.sandbox_id = ""}, 0, "1,2,3,4,5,6,7,8,9,10"},
    {{.types = T(READY)}, 0, "4,7"},
    {{.types = T(READY) | T(FAILED)}, 0, "4,6,7"},
    {{.types = T(ACCEPTED)}, 0, "1,2,3,5"},
    {{.types = 1u << 0}, 0, ""},
    {{.types = 1u << 11}, 0, ""},
    {{.tenant = "t1", .types = T(READY)}, 0, "4,7"},
    {{.tenant = "t2", .namespace_name = "ns1"}, 0, "3,6"},
    {{.sandbox_id = "sb-1", .tenant = "t2"}, 0, ""},
    {{.sandbox_id = "sb-3",
      .tenant = "t2",
      .namespace_name = "ns1",
      .types = T(FAILED)},
     0,
     "6"},
    {{.namespace_name = "ns1",
      .types = T(DELETE_REQUESTED) | T(DELETED) | T(EXPIRED)},
     0,
     "8,9"},
    {{.tenant = "t1"}, 4, "7,8,9"},
    {{.sandbox_id = "sb-1"}, 4, "8,9"},
    {{.types = T(EXPIRED)}, 9, "10"},
    {{0}, 10, ""},
    {{0}, 99, ""},
};

static void seed_events(struct sg_store *store)
{
    bool created[SG_N_ELEMENTS(ev_sandboxes)] = {false};
    struct waiter w = WAITER_INIT;

    for (size_t i = 0; i < SG_N_ELEMENTS(ev_seeds); i++) {
        const struct ev_sandbox *sb = &ev_sandboxes[ev_seeds[i].sandbox];
        struct sg_sandbox_row row = mkrow(sb->id, "alice", "");
        struct sg_event_row ev;

        row.tenant = (char *)sb->tenant;
        row.namespace_name = (char *)sb->ns;
        ev = mkevent(&row, ev_seeds[i].type, "Seed");
        if (!created[ev_seeds[i].sandbox]) {
            ck_assert_int_eq(create_wait(store, &row, &ev, &w), SG_ERR_OK);
            created[ev_seeds[i].sandbox] = true;
        } else {
            ck_assert_int_eq(update_wait(store, &row, 0, &ev, &w), SG_ERR_OK);
        }
        ck_assert_uint_eq(w.event->seq, i + 1);
    }
    waiter_clear(&w);
}

START_TEST(test_list_events_filters)
{
    const struct ev_filter_case *fc = &ev_filter_cases[_i];
    struct ecollect c = {0};
    char path[256], seqs[256];
    struct sg_store *store;
    uint64_t scanned = 0, cursor;
    int calls = 0;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    seed_events(store);

    /* One call, unbounded: every match, and the cursor moves to the end
       of history even when nothing matched. */
    list_ev(store, &fc->f, fc->after, 0, 0, &scanned, &c);
    collect_seqs(&c, seqs, sizeof(seqs));
    ck_assert_str_eq(seqs, fc->want);
    ck_assert_uint_eq(scanned, fc->after > 10 ? fc->after : 10);
    for (size_t i = 0; i < c.n; i++) {
        const struct ev_seed *seed = &ev_seeds[c.evs[i]->seq - 1];

        ck_assert_str_eq(c.evs[i]->sandbox_id, ev_sandboxes[seed->sandbox].id);
        ck_assert_int_eq(c.evs[i]->type, seed->type);
    }
    ecollect_free(&c);

    /* Paged: at most 2 matches and 3 seqs per call; the cursor always
       advances, never past what the call covered, and the pages add up
       to the same list. */
    for (cursor = fc->after; cursor < 10; cursor = scanned) {
        size_t before = c.n, got;

        got = list_ev(store, &fc->f, cursor, 2, 3, &scanned, &c);
        ck_assert_uint_le(got, 2);
        ck_assert_uint_gt(scanned, cursor);
        ck_assert_uint_le(scanned, cursor + 3);
        for (size_t i = before; i < c.n; i++) {
            ck_assert_uint_gt(c.evs[i]->seq, cursor);
            ck_assert_uint_le(c.evs[i]->seq, scanned);
        }
        /* A full page stops at its last match. */
        if (got == 2)
            ck_assert_uint_eq(scanned, c.evs[c.n - 1]->seq);
        ck_assert_int_lt(++calls, 20);
    }
    collect_seqs(&c, seqs, sizeof(seqs));
    ck_assert_str_eq(seqs, fc->want);
    ecollect_free(&c);
    sg_store_close(store);
}
END_TEST

static int stop_at_first(void *opaque, const struct sg_event_row *ev)
{
    collect_event(opaque, ev);
    return 1;
}

START_TEST(test_list_events_scan_limits)
{
    struct sg_event_filter none_match = {.tenant = "t9"};
    struct sg_event_filter ready = {.types = T(READY)};
    struct sg_error err = SG_ERROR_INIT;
    struct ecollect c = {0};
    char path[256];
    struct sg_store *store;
    uint64_t scanned = 0;

    new_db_path(path, sizeof(path));
    store = open_path(path);

    /* Empty history: nothing, the cursor stays. */
    ck_assert_uint_eq(list_ev(store, NULL, 0, 0, 5, &scanned, &c), 0);
    ck_assert_uint_eq(scanned, 0);
    ck_assert_uint_eq(list_ev(store, NULL, 7, 0, 0, &scanned, &c), 0);
    ck_assert_uint_eq(scanned, 7);

    seed_events(store);
    /* A filter that matches nothing walks max_scan seqs per call. */
    ck_assert_uint_eq(list_ev(store, &none_match, 0, 0, 4, &scanned, &c), 0);
    ck_assert_uint_eq(scanned, 4);
    ck_assert_uint_eq(list_ev(store, &none_match, 4, 0, 4, &scanned, &c), 0);
    ck_assert_uint_eq(scanned, 8);
    ck_assert_uint_eq(list_ev(store, &none_match, 8, 0, 4, &scanned, &c), 0);
    ck_assert_uint_eq(scanned, 10);
    ck_assert_uint_eq(list_ev(store, &none_match, 10, 0, 4, &scanned, &c), 0);
    ck_assert_uint_eq(scanned, 10);
    /* A huge max_scan does not overflow. */
    ck_assert_uint_eq(list_ev(store, &ready, 5, 0, SIZE_MAX, &scanned, &c), 1);
    ck_assert_uint_eq(scanned, 10);
    ecollect_free(&c);

    /* max_rows: the cursor is the last match. */
    ck_assert_uint_eq(list_ev(store, &ready, 0, 1, 0, &scanned, &c), 1);
    ck_assert_uint_eq(scanned, 4);
    ck_assert_uint_eq(c.evs[0]->seq, 4);
    ecollect_free(&c);

    /* The visitor stops: that event counts and is the cursor. */
    ck_assert_int_eq(sg_store_list_events(store, NULL, 2, 0, 0, &scanned,
                                          stop_at_first, &c, &err),
                     1);
    ck_assert_uint_eq(c.evs[0]->seq, 3);
    ck_assert_uint_eq(scanned, 3);
    ecollect_free(&c);

    /* scanned_to may be NULL; the connection is reusable after a stop. */
    ck_assert_int_eq(sg_store_list_events(store, &ready, 0, 0, 0, NULL,
                                          collect_event, &c, &err),
                     2);
    ecollect_free(&c);
    sg_store_close(store);
}
END_TEST

/*
 * A rare type among many events, read one match and a few seqs at a time
 * while more events (some of them rare) are appended between calls: every
 * rare event comes back exactly once, in order.
 */
START_TEST(test_list_events_rare_filter_resumes)
{
    struct sg_event_filter rare = {.types = T(EXPIRED)};
    enum { MAX_RARE = 64 };
    uint64_t want[MAX_RARE], cursor = 0, scanned = 0, oldest, newest;
    size_t n_want = 0, seen = 0;
    struct sg_sandbox_row row = mkrow("sb-bulk", "alice", "");
    struct sg_event_row evs[SG_STORE_MAX_EVENTS];
    struct ecollect c = {0};
    char path[256];
    struct sg_store *store;
    uint64_t seq = 1;
    int calls = 0, appends = 0;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    create_ok(store, &row);
    /* 240 more events; every 37th seq is rare. */
    for (int u = 0; u < 30; u++) {
        uint64_t first;

        for (int i = 0; i < SG_STORE_MAX_EVENTS; i++) {
            bool is_rare = (seq + 1 + (uint64_t)i) % 37 == 0;

            evs[i] = mkevent(
                &row, is_rare ? SG_EVENT_EXPIRED : SG_EVENT_ALLOCATION_STARTED,
                "Bulk");
            if (is_rare)
                want[n_want++] = seq + 1 + (uint64_t)i;
        }
        first = append_events(store, &row, evs, SG_STORE_MAX_EVENTS);
        ck_assert_uint_eq(first, seq + 1);
        seq += SG_STORE_MAX_EVENTS;
    }
    ck_assert_uint_eq(n_want, 6);

    for (;;) {
        size_t before = c.n;

        get_bounds(store, &oldest, &newest);
        if (cursor >= newest && appends >= 40)
            break;
        list_ev(store, &rare, cursor, 1, 5, &scanned, &c);
        ck_assert_uint_le(scanned, cursor + 5);
        for (size_t i = before; i < c.n; i++)
            ck_assert_int_eq(c.evs[i]->type, SG_EVENT_EXPIRED);
        cursor = scanned;
        /* Between calls: three events, the middle one rare every other
           time. */
        if (appends < 40) {
            uint64_t first;

            evs[0] = mkevent(&row, SG_EVENT_READY, "More");
            evs[1] = mkevent(
                &row, appends % 2 ? SG_EVENT_EXPIRED : SG_EVENT_READY, "More");
            evs[2] = mkevent(&row, SG_EVENT_FAILED, "More");
            first = append_events(store, &row, evs, 3);
            if (appends % 2) {
                ck_assert_uint_lt(n_want, MAX_RARE);
                want[n_want++] = first + 1;
            }
            appends++;
        }
        ck_assert_int_lt(++calls, 1000);
    }
    ck_assert_uint_eq(c.n, n_want);
    for (seen = 0; seen < c.n; seen++)
        ck_assert_uint_eq(c.evs[seen]->seq, want[seen]);
    ecollect_free(&c);
    sg_store_close(store);
}
END_TEST

/* --- event bounds and retention ---------------------------------------- */

START_TEST(test_event_bounds)
{
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "");
    struct waiter w = WAITER_INIT;
    char path[256];
    struct sg_store *store;
    sqlite3 *raw;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    ASSERT_BOUNDS(store, 1, 0);
    /* A write without an event moves nothing. */
    ck_assert_int_eq(create_wait(store, &row, NULL, &w), SG_ERR_OK);
    ASSERT_BOUNDS(store, 1, 0);
    append_n(store, &row, SG_EVENT_READY, 0, 3);
    ASSERT_BOUNDS(store, 1, 3);
    append_n(store, &row, SG_EVENT_READY, 0, 0);
    ASSERT_BOUNDS(store, 1, 3);
    sg_store_close(store);

    store = open_path(path);
    ASSERT_BOUNDS(store, 1, 3);
    append_n(store, &row, SG_EVENT_FAILED, 0, 1);
    ASSERT_BOUNDS(store, 1, 4);
    sg_store_close(store);

    /* Both come from meta, not from the rows: deleting the newest rows
       behind the store's back does not make their seqs come again. */
    raw = raw_open(path);
    raw_exec(raw, "DELETE FROM events WHERE seq > 2");
    raw_close(raw);
    store = open_path(path);
    ASSERT_BOUNDS(store, 1, 4);
    ck_assert_uint_eq(append_n(store, &row, SG_EVENT_READY, 0, 1), 5);
    waiter_clear(&w);
    sg_store_close(store);
}
END_TEST

/* Wait (bounded) until the writer has run n purges that deleted events:
   purges run on the writer after a commit, not before its callback. */
static void wait_purges(struct sg_store *store, uint64_t n)
{
    struct sg_store_stats stats;

    for (int i = 0; i < 30000; i++) {
        sg_store_get_stats(store, &stats);
        if (stats.purges >= n)
            return;
        usleep(1000);
    }
    ck_abort_msg("%llu purges, want %llu", (unsigned long long)stats.purges,
                 (unsigned long long)n);
}

/* Events from one snapshot: consecutive seqs, the first and last. */
static size_t check_window(struct sg_store *store, uint64_t *first,
                           uint64_t *last)
{
    struct ecollect c = {0};
    size_t n;

    list_all_events(store, &c);
    n = c.n;
    *first = n ? c.evs[0]->seq : 0;
    *last = n ? c.evs[n - 1]->seq : 0;
    for (size_t i = 1; i < n; i++)
        ck_assert_uint_eq(c.evs[i]->seq, c.evs[i - 1]->seq + 1);
    ecollect_free(&c);
    return n;
}

START_TEST(test_retention_count)
{
    struct sg_store_config cfg = {.event_retention_count = 5};
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "");
    struct sg_store_stats stats;
    uint64_t first, last, oldest, newest;
    char path[256];
    struct sg_store *store;

    new_db_path(path, sizeof(path));
    cfg.path = path;
    store = open_path(path);
    create_ok(store, &row);
    append_n(store, &row, SG_EVENT_READY, 0, 8);
    append_n(store, &row, SG_EVENT_READY, 0, 8);
    append_n(store, &row, SG_EVENT_READY, 0, 3);
    sg_store_close(store);

    /* Nothing is purged before a commit; the first one after open purges
       down to the limit. */
    store = open_cfg(&cfg);
    ASSERT_BOUNDS(store, 1, 20);
    ck_assert_uint_eq(append_n(store, &row, SG_EVENT_FAILED, 0, 1), 21);
    wait_purges(store, 1);
    ASSERT_BOUNDS(store, 17, 21);
    ck_assert_uint_eq(check_window(store, &first, &last), 5);
    ck_assert_uint_eq(first, 17);
    ck_assert_uint_eq(last, 21);
    sg_store_get_stats(store, &stats);
    ck_assert_uint_eq(stats.events_purged, 16);

    /* Whenever a purge runs, the newest 5 stay readable, and purges keep
       up (at least every few dozen commits). */
    for (int i = 0; i < 40; i++) {
        size_t n;

        append_n(store, &row, SG_EVENT_READY, 0, 1);
        n = check_window(store, &first, &last);
        ck_assert_uint_eq(last, 22 + (uint64_t)i);
        ck_assert_uint_ge(n, 5);
        ck_assert_uint_le(n, 5 + 2 * 32);
        get_bounds(store, &oldest, &newest);
        ck_assert_uint_eq(newest, last);
        ck_assert_uint_ge(oldest, 17);
        ck_assert_uint_le(oldest, newest - 4);
    }
    sg_store_get_stats(store, &stats);
    ck_assert_uint_ge(stats.purges, 2);
    get_bounds(store, &oldest, &newest);
    sg_store_close(store);

    /* The horizon survives a restart, without retention too. */
    store = open_path(path);
    ASSERT_BOUNDS(store, oldest, newest);
    sg_store_close(store);
}
END_TEST

START_TEST(test_retention_age)
{
    struct sg_store_config cfg = {.event_retention_age_ms = 3600 * 1000};
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "");
    struct sg_event_row ev = mkevent(&row, SG_EVENT_ACCEPTED, "Accepted");
    int64_t old = wall_ms() - 10 * 3600 * 1000;
    struct waiter w = WAITER_INIT;
    struct sg_store_stats stats;
    struct ecollect c = {0};
    uint64_t scanned = 0;
    char path[256];
    struct sg_store *store;

    new_db_path(path, sizeof(path));
    cfg.path = path;
    store = open_path(path);
    ev.time = old;
    ck_assert_int_eq(create_wait(store, &row, &ev, &w), SG_ERR_OK);
    append_n(store, &row, SG_EVENT_READY, old, 5);  /* 2..6 */
    append_n(store, &row, SG_EVENT_READY, 0, 3);    /* 7..9, now */
    append_n(store, &row, SG_EVENT_FAILED, old, 1); /* 10 */
    append_n(store, &row, SG_EVENT_DELETED, 0, 1);  /* 11 */
    sg_store_close(store);

    /* Old events go from the oldest on, up to the first young one; the
       old one behind it stays. */
    store = open_cfg(&cfg);
    ck_assert_uint_eq(append_n(store, &row, SG_EVENT_READY, 0, 1), 12);
    wait_purges(store, 1);
    ASSERT_BOUNDS(store, 7, 12);
    list_all_events(store, &c);
    ck_assert_uint_eq(c.n, 6);
    ck_assert_uint_eq(c.evs[0]->seq, 7);
    ck_assert_uint_eq(c.evs[3]->seq, 10);
    ck_assert_int_eq(c.evs[3]->time, old);
    ecollect_free(&c);
    sg_store_get_stats(store, &stats);
    ck_assert_uint_eq(stats.events_purged, 6);
    sg_store_close(store);

    /* Every event old: all of them go, the window is empty, and that
       survives a restart. */
    new_db_path(path, sizeof(path));
    cfg.path = path;
    store = open_path(path);
    ck_assert_int_eq(create_wait(store, &row, &ev, &w), SG_ERR_OK);
    append_n(store, &row, SG_EVENT_READY, old, 3);
    sg_store_close(store);
    store = open_cfg(&cfg);
    ck_assert_uint_eq(append_n(store, &row, SG_EVENT_FAILED, old, 1), 5);
    wait_purges(store, 1);
    ASSERT_BOUNDS(store, 6, 5);
    ck_assert_uint_eq(list_ev(store, NULL, 0, 0, 0, &scanned, &c), 0);
    ck_assert_uint_eq(scanned, 5);
    sg_store_close(store);

    store = open_path(path);
    ASSERT_BOUNDS(store, 6, 5);
    ck_assert_uint_eq(append_n(store, &row, SG_EVENT_READY, 0, 1), 6);
    ASSERT_BOUNDS(store, 6, 6);
    list_all_events(store, &c);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_uint_eq(c.evs[0]->seq, 6);
    ecollect_free(&c);
    waiter_clear(&w);
    sg_store_close(store);
}
END_TEST

/*
 * A backlog far beyond the limit is purged a bounded chunk per commit,
 * and caught up over the next commits without waiting for the interval.
 */
START_TEST(test_retention_chunks)
{
    struct sg_store_config cfg = {.durability = "normal"};
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "");
    struct sg_store_stats stats;
    uint64_t oldest, newest, first, last;
    char path[256];
    struct sg_store *store;

    new_db_path(path, sizeof(path));
    cfg.path = path;
    store = open_cfg(&cfg);
    create_ok(store, &row);
    for (int i = 0; i < 150; i++)
        append_n(store, &row, SG_EVENT_READY, 0, SG_STORE_MAX_EVENTS);
    sg_store_close(store);

    cfg.event_retention_count = 10;
    store = open_cfg(&cfg);
    ck_assert_uint_eq(append_n(store, &row, SG_EVENT_FAILED, 0, 1), 1202);
    wait_purges(store, 1);
    get_bounds(store, &oldest, &newest);
    ck_assert_uint_eq(newest, 1202);
    ck_assert_uint_gt(oldest, 1);
    ck_assert_uint_lt(oldest, 1193); /* not all in one go */
    sg_store_get_stats(store, &stats);
    ck_assert_uint_eq(stats.events_purged, oldest - 1);

    ck_assert_uint_eq(append_n(store, &row, SG_EVENT_FAILED, 0, 1), 1203);
    wait_purges(store, 2);
    ASSERT_BOUNDS(store, 1194, 1203);
    ck_assert_uint_eq(check_window(store, &first, &last), 10);
    ck_assert_uint_eq(first, 1194);
    sg_store_close(store);
}
END_TEST

START_TEST(test_retention_config)
{
    struct sg_store_config cfg = {.event_retention_count = UINT64_MAX};
    struct sg_error err = SG_ERROR_INIT;
    char path[256];

    new_db_path(path, sizeof(path));
    cfg.path = path;
    ck_assert_ptr_null(sg_store_open(&cfg, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_msg(strstr(err.message, "retention count") != NULL, "%s",
                  err.message);
    sg_error_reset(&err);
    cfg.event_retention_count = 0;
    cfg.event_retention_age_ms = -1;
    ck_assert_ptr_null(sg_store_open(&cfg, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message,
                     "store event retention age -1 ms is negative");
}
END_TEST

/* --- the commit observer ----------------------------------------------- */

struct observed {
    pthread_mutex_t mu;
    struct ecollect evs;
    int calls;
    size_t max_call; /* most events in one call */
    int empty_calls; /* n_evs == 0 */
    int breaks;      /* a call not consecutive with the one before */
    int late;        /* a write callback ran before its events were seen */
};

#define OBSERVED_INIT                                                          \
    {                                                                          \
        .mu = PTHREAD_MUTEX_INITIALIZER                                        \
    }

static void on_commit(void *opaque, const struct sg_event_row *evs,
                      size_t n_evs)
{
    struct observed *o = opaque;

    pthread_mutex_lock(&o->mu);
    o->calls++;
    if (n_evs == 0)
        o->empty_calls++;
    if (n_evs > o->max_call)
        o->max_call = n_evs;
    for (size_t i = 0; i < n_evs; i++) {
        uint64_t prev = o->evs.n ? o->evs.evs[o->evs.n - 1]->seq : 0;

        if (o->evs.n && evs[i].seq != prev + 1)
            o->breaks++;
        collect_event(&o->evs, &evs[i]);
    }
    pthread_mutex_unlock(&o->mu);
}

static uint64_t observed_last(struct observed *o)
{
    uint64_t last;

    pthread_mutex_lock(&o->mu);
    last = o->evs.n ? o->evs.evs[o->evs.n - 1]->seq : 0;
    pthread_mutex_unlock(&o->mu);
    return last;
}

static void observed_free(struct observed *o)
{
    ecollect_free(&o->evs);
}

/* "1,2,3" of what the observer saw. */
static void observed_seqs(struct observed *o, char *out, size_t len)
{
    pthread_mutex_lock(&o->mu);
    collect_seqs(&o->evs, out, len);
    pthread_mutex_unlock(&o->mu);
}

enum { OBS_THREADS = 4, OBS_WRITES = 60 };

struct obs_writer {
    struct sg_store *store;
    struct observed *o;
    int thread;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *done;
    int failures;
};

static void on_obs_write(void *opaque, const struct sg_store_result *res)
{
    struct obs_writer *a = opaque;

    /* The observer ran for this commit before this callback. */
    for (size_t i = 0; i < res->n_events; i++) {
        if (observed_last(a->o) < res->events[i].seq) {
            pthread_mutex_lock(&a->o->mu);
            a->o->late++;
            pthread_mutex_unlock(&a->o->mu);
        }
    }
    pthread_mutex_lock(a->mu);
    if (res->err)
        a->failures++;
    (*a->done)++;
    pthread_cond_broadcast(a->cv);
    pthread_mutex_unlock(a->mu);
}

/* Write i of a thread: a create, then updates with i % 4 events, and
   every tenth a repeated create (idempotent: no event). */
static size_t obs_events_of(int i)
{
    return i == 0 ? 1 : i % 10 == 0 ? 0 : (size_t)(i % 4);
}

static void *obs_writer_main(void *opaque)
{
    struct obs_writer *a = opaque;
    char id[32];
    struct sg_sandbox_row row;

    snprintf(id, sizeof(id), "obs-%d", a->thread);
    row = mkrow(id, "alice", id);
    for (int i = 0; i < OBS_WRITES; i++) {
        struct sg_event_row evs[SG_STORE_MAX_EVENTS];
        struct sg_error err = SG_ERROR_INIT;
        size_t n = obs_events_of(i);
        int rc;

        for (size_t j = 0; j < SG_STORE_MAX_EVENTS; j++)
            evs[j] = mkevent(&row, (enum sg_event_type)(1 + (i + (int)j) % 10),
                             "Observed");
        if (i == 0 || i % 10 == 0)
            rc = sg_store_create_sandbox(a->store, &row, &evs[0], on_obs_write,
                                         a, &err);
        else
            rc = sg_store_update_sandbox(a->store, &row, 0, evs, n,
                                         on_obs_write, a, &err);
        if (rc < 0)
            a->failures++;
    }
    return NULL;
}

/*
 * Concurrent writers, so that commits hold many writes: the observer sees
 * every committed event exactly once, in seq order from 1 with no gap,
 * never an empty call, each before the callback of its write; and what it
 * saw is what the store holds.
 */
START_TEST(test_commit_observer)
{
    struct observed o = OBSERVED_INIT;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    struct obs_writer wa[OBS_THREADS];
    pthread_t wt[OBS_THREADS];
    struct sg_store_stats stats;
    struct ecollect stored = {0};
    size_t want = 0;
    char path[256];
    struct sg_store *store;
    int done = 0, i;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    sg_store_set_commit_observer(store, on_commit, &o);
    for (i = 0; i < OBS_WRITES; i++)
        want += obs_events_of(i);
    want *= OBS_THREADS;

    for (i = 0; i < OBS_THREADS; i++) {
        wa[i] = (struct obs_writer){.store = store,
                                    .o = &o,
                                    .thread = i,
                                    .mu = &mu,
                                    .cv = &cv,
                                    .done = &done};
        ck_assert_int_eq(pthread_create(&wt[i], NULL, obs_writer_main, &wa[i]),
                         0);
    }
    for (i = 0; i < OBS_THREADS; i++)
        pthread_join(wt[i], NULL);
    pthread_mutex_lock(&mu);
    while (done < OBS_THREADS * OBS_WRITES)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    for (i = 0; i < OBS_THREADS; i++)
        ck_assert_int_eq(wa[i].failures, 0);

    ck_assert_int_eq(o.late, 0);
    ck_assert_int_eq(o.breaks, 0);
    ck_assert_int_eq(o.empty_calls, 0);
    ck_assert_uint_eq(o.evs.n, want);
    ck_assert_uint_eq(o.evs.evs[0]->seq, 1);
    sg_store_get_stats(store, &stats);
    /* At most one call per commit. */
    ck_assert_uint_le((uint64_t)o.calls, stats.commits);

    list_all_events(store, &stored);
    ck_assert_uint_eq(stored.n, want);
    for (size_t k = 0; k < want; k++) {
        const struct sg_event_row *a = o.evs.evs[k], *b = stored.evs[k];

        ck_assert_uint_eq(a->seq, b->seq);
        ck_assert_uint_eq(a->resource_version, b->resource_version);
        ck_assert_int_eq(a->time, b->time);
        ck_assert_int_eq(a->type, b->type);
        ck_assert_str_eq(a->sandbox_id, b->sandbox_id);
        ck_assert_str_eq(a->reason, b->reason);
        ck_assert_str_eq(a->tenant, b->tenant);
    }
    ecollect_free(&stored);
    sg_store_close(store);
    observed_free(&o);
}
END_TEST

/* Replacing and removing the observer. */
START_TEST(test_commit_observer_replace)
{
    struct observed a = OBSERVED_INIT, b = OBSERVED_INIT;
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "");
    char path[256], seqs[128];
    struct sg_store *store;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    create_ok(store, &row); /* 1, unobserved */
    sg_store_set_commit_observer(store, on_commit, &a);
    append_n(store, &row, SG_EVENT_READY, 0, 2); /* 2, 3 */
    append_n(store, &row, SG_EVENT_READY, 0, 0); /* no event: no call */
    sg_store_set_commit_observer(store, on_commit, &b);
    append_n(store, &row, SG_EVENT_FAILED, 0, 1); /* 4 */
    sg_store_set_commit_observer(store, NULL, &b);
    append_n(store, &row, SG_EVENT_DELETED, 0, 1); /* 5, unobserved */

    observed_seqs(&a, seqs, sizeof(seqs));
    ck_assert_str_eq(seqs, "2,3");
    ck_assert_int_eq(a.calls, 1);
    observed_seqs(&b, seqs, sizeof(seqs));
    ck_assert_str_eq(seqs, "4");
    ck_assert_int_eq(b.calls, 1);
    sg_store_close(store);
    observed_free(&a);
    observed_free(&b);
}
END_TEST

/* --- migrations and reopening ----------------------------------------- */

START_TEST(test_migrations_fresh)
{
    char path[256], wal[300];
    struct sg_store *store;
    struct sg_sandbox_row row;
    struct stat st;
    unsigned version;
    sqlite3 *raw;
    sqlite3_stmt *q = NULL;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    version = sg_store_schema_version(store);
    ck_assert_uint_ge(version, 1);
    row = mkrow("sb-1", "alice", "");
    ck_assert_uint_eq(create_ok(store, &row), 1);

    /* Private: the file holds every tenant's sandboxes. */
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    ck_assert_int_eq(stat(wal, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);

    raw = raw_open(path);
    ck_assert_int_eq(raw_int(raw, "SELECT count(*) FROM schema_migrations"),
                     version);
    ck_assert_int_eq(raw_int(raw, "SELECT max(version) FROM schema_migrations"),
                     version);
    ck_assert_int_eq(raw_int(raw, "SELECT count(*) FROM schema_migrations "
                                  "WHERE version = 1 AND name = 'initial' "
                                  "AND applied_at > 0"),
                     1);
    ck_assert_int_eq(
        sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &q, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    /* The indexes the list filters rely on. */
    ck_assert_int_eq(raw_int(raw,
                             "SELECT count(*) FROM sqlite_master WHERE type = "
                             "'index' AND name IN ('sandboxes_owner_request', "
                             "'sandboxes_tenant', 'sandboxes_project', "
                             "'sandboxes_namespace', 'sandboxes_owner', "
                             "'sandboxes_phase', 'sandboxes_expire', "
                             "'events_sandbox')"),
                     8);
    ck_assert_int_eq(raw_int(raw, "SELECT value FROM meta WHERE key = "
                                  "'resource_version'"),
                     1);
    ck_assert_int_eq(raw_int(raw, "SELECT value FROM meta WHERE key = "
                                  "'events_purged_through'"),
                     0);
    ck_assert_int_eq(raw_int(raw, "SELECT count(*) FROM schema_migrations "
                                  "WHERE version = 2 AND "
                                  "name = 'event_retention'"),
                     1);
    raw_close(raw);
    sg_store_close(store);
}
END_TEST

/* A database at version 1 (with events) gets 0002 at open: its window
   starts at 1, and retention works on it. */
START_TEST(test_migration_0002_upgrade)
{
    struct sg_store_config cfg = {.event_retention_count = 2};
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "");
    char path[256];
    struct sg_store *store;
    sqlite3 *raw;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    create_ok(store, &row);
    append_n(store, &row, SG_EVENT_READY, 0, 3);
    sg_store_close(store);
    raw = raw_open(path);
    /* Back to version 1: what came later is gone too. */
    raw_exec(raw, "DELETE FROM schema_migrations WHERE version >= 2;"
                  "DELETE FROM meta WHERE key = 'events_purged_through';"
                  "DROP TABLE credentials");
    raw_close(raw);

    cfg.path = path;
    store = open_cfg(&cfg);
    ck_assert_uint_eq(sg_store_schema_version(store), 3);
    ASSERT_BOUNDS(store, 1, 4);
    append_n(store, &row, SG_EVENT_FAILED, 0, 1);
    wait_purges(store, 1);
    ASSERT_BOUNDS(store, 4, 5);
    sg_store_close(store);
}
END_TEST

START_TEST(test_migrations_reopen)
{
    char path[256];
    struct sg_store *store;
    int64_t applied, rows;
    sqlite3 *raw;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    sg_store_close(store);
    raw = raw_open(path);
    applied = raw_int(raw, "SELECT sum(applied_at) FROM schema_migrations");
    rows = raw_int(raw, "SELECT count(*) FROM schema_migrations");
    raw_close(raw);

    usleep(5000);
    store = open_path(path);
    ck_assert_uint_eq(sg_store_schema_version(store), (uint64_t)rows);
    sg_store_close(store);
    raw = raw_open(path);
    ck_assert_int_eq(raw_int(raw, "SELECT count(*) FROM schema_migrations"),
                     rows);
    ck_assert_int_eq(
        raw_int(raw, "SELECT sum(applied_at) FROM schema_migrations"), applied);
    raw_close(raw);
}
END_TEST

START_TEST(test_migrations_future_refused)
{
    struct sg_store_config cfg = {.path = NULL};
    struct sg_error err = SG_ERROR_INIT;
    char path[256], sql[256], want[256];
    struct sg_store *store;
    unsigned version;
    sqlite3 *raw;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    version = sg_store_schema_version(store);
    sg_store_close(store);

    raw = raw_open(path);
    snprintf(sql, sizeof(sql),
             "INSERT INTO schema_migrations VALUES (%u, 'future', 1)",
             version + 6);
    raw_exec(raw, sql);
    raw_close(raw);

    cfg.path = path;
    ck_assert_ptr_null(sg_store_open(&cfg, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    snprintf(want, sizeof(want),
             "database schema version %u is newer than this gateway "
             "supports (%u)",
             version + 6, version);
    ck_assert_str_eq(err.message, want);
}
END_TEST

START_TEST(test_data_survives_reopen)
{
    char path[256];
    struct sg_store *store;
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "req-1");
    struct sg_sandbox_row *got;
    struct ecollect events = {0};
    struct waiter w = WAITER_INIT;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    create_ok(store, &row);
    row.phase = SG_PHASE_READY;
    ck_assert_int_eq(update_wait(store, &row, 1, NULL, &w), SG_ERR_OK);
    sg_store_close(store);

    store = open_path(path);
    got = get_row(store, "sb-1");
    ck_assert_ptr_nonnull(got);
    assert_row_eq(got, &row);
    ck_assert_uint_eq(got->resource_version, 2);
    sg_sandbox_row_free(got);
    /* Idempotency survives too. */
    row.id = (char *)"sb-other";
    ck_assert_int_eq(create_wait(store, &row, NULL, &w), SG_ERR_OK);
    ck_assert(!w.created);
    ck_assert_str_eq(w.row->id, "sb-1");
    /* Counters continue where they were. */
    row = mkrow("sb-2", "alice", "");
    ck_assert_uint_eq(create_ok(store, &row), 3);
    list_all_events(store, &events);
    ck_assert_uint_eq(events.n, 2);
    ck_assert_uint_eq(events.evs[1]->seq, 2);
    ck_assert_uint_eq(events.evs[1]->resource_version, 3);
    ecollect_free(&events);
    waiter_clear(&w);
    sg_store_close(store);
}
END_TEST

/* --- configuration ----------------------------------------------------- */

enum path_kind { PATH_DB, PATH_NONE, PATH_EMPTY, PATH_NO_DIR, PATH_GARBAGE };

static const struct config_case {
    const char *backend;
    enum path_kind path;
    const char *durability;
    unsigned max_batch;
    unsigned read_connections;
    enum sg_err_code code;
    const char *message; /* exact, or NULL */
} config_cases[] = {
    {"sqlite", PATH_DB, NULL, 0, 0, SG_ERR_OK, NULL},
    {NULL, PATH_DB, NULL, 0, 0, SG_ERR_OK, NULL},
    {"sqlite", PATH_DB, "full", 1, 1, SG_ERR_OK, NULL},
    {"sqlite", PATH_DB, "normal", 0, 64, SG_ERR_OK, NULL},
    {"postgres", PATH_DB, NULL, 0, 0, SG_ERR_CONFIG,
     "unknown store backend 'postgres' (known: sqlite)"},
    {"sqlite", PATH_DB, "bogus", 0, 0, SG_ERR_CONFIG,
     "unknown store durability 'bogus' (known: full, normal)"},
    {"sqlite", PATH_DB, "FULL", 0, 0, SG_ERR_CONFIG,
     "unknown store durability 'FULL' (known: full, normal)"},
    {"sqlite", PATH_EMPTY, NULL, 0, 0, SG_ERR_CONFIG,
     "store path is empty (the sqlite backend needs a database file)"},
    {"sqlite", PATH_NONE, NULL, 0, 0, SG_ERR_CONFIG,
     "store path is empty (the sqlite backend needs a database file)"},
    {"sqlite", PATH_DB, NULL, 0, 65, SG_ERR_CONFIG,
     "store read_connections 65 is out of range (1..64)"},
    {"sqlite", PATH_NO_DIR, NULL, 0, 0, SG_ERR_IO, NULL},
    {"sqlite", PATH_GARBAGE, NULL, 0, 0, SG_ERR_IO, NULL},
};

START_TEST(test_config)
{
    const struct config_case *cc = &config_cases[_i];
    struct sg_store_config cfg = {
        .backend = cc->backend,
        .durability = cc->durability,
        .max_batch = cc->max_batch,
        .read_connections = cc->read_connections,
    };
    struct sg_error err = SG_ERROR_INIT;
    char path[256], other[300];
    struct sg_store *store;

    new_db_path(path, sizeof(path));
    switch (cc->path) {
    case PATH_DB:
        cfg.path = path;
        break;
    case PATH_NONE:
        break;
    case PATH_EMPTY:
        cfg.path = "";
        break;
    case PATH_NO_DIR:
        snprintf(other, sizeof(other), "%s.d/none/store.db", path);
        cfg.path = other;
        break;
    case PATH_GARBAGE: {
        FILE *f = fopen(path, "w");

        ck_assert_ptr_nonnull(f);
        for (int i = 0; i < 512; i++)
            fputs("this is not a database ", f);
        fclose(f);
        cfg.path = path;
        break;
    }
    }
    store = sg_store_open(&cfg, &err);
    if (cc->code == SG_ERR_OK) {
        struct sg_sandbox_row row = mkrow("sb-1", "alice", "");

        ck_assert_msg(store != NULL, "%s", err.message);
        ck_assert_str_eq(sg_store_backend(store), "sqlite");
        ck_assert_uint_eq(create_ok(store, &row), 1);
        sg_store_close(store);
        return;
    }
    ck_assert_ptr_null(store);
    ck_assert_int_eq(err.code, cc->code);
    if (cc->message)
        ck_assert_str_eq(err.message, cc->message);
    else
        ck_assert_msg(strstr(err.message, cfg.path) != NULL,
                      "'%s' does not name the path", err.message);
}
END_TEST

/* --- concurrency and group commit ------------------------------------- */

enum { WRITERS = 8, PER_WRITER = 200, TOTAL = WRITERS * PER_WRITER };

struct tally {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int calls[TOTAL];
    uint64_t rv[TOTAL];
    uint64_t seq[TOTAL];
    int failures;
};

struct write_ctx {
    struct tally *tally;
    int index;
};

static void on_tally(void *opaque, const struct sg_store_result *res)
{
    struct write_ctx *ctx = opaque;
    struct tally *t = ctx->tally;

    pthread_mutex_lock(&t->mu);
    t->calls[ctx->index]++;
    if (res->err || !res->created || res->n_events != 1) {
        t->failures++;
    } else {
        t->rv[ctx->index] = res->row->resource_version;
        t->seq[ctx->index] = res->events[0].seq;
        if (res->events[0].resource_version != res->row->resource_version)
            t->failures++;
    }
    t->done++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

struct writer_arg {
    struct sg_store *store;
    struct tally *tally;
    struct write_ctx *ctx; /* TOTAL of them */
    int thread;
    int enqueue_failures;
};

static void *writer_thread(void *opaque)
{
    struct writer_arg *a = opaque;

    for (int i = 0; i < PER_WRITER; i++) {
        int index = a->thread * PER_WRITER + i;
        struct sg_error err = SG_ERROR_INIT;
        struct sg_sandbox_row row;
        struct sg_event_row ev;
        char id[32], req[32];

        snprintf(id, sizeof(id), "w%d-%03d", a->thread, i);
        snprintf(req, sizeof(req), "req-%d", index);
        row = mkrow(id, "alice", req);
        ev = mkevent(&row, SG_EVENT_ACCEPTED, "Accepted");
        a->ctx[index].tally = a->tally;
        a->ctx[index].index = index;
        if (sg_store_create_sandbox(a->store, &row, &ev, on_tally,
                                    &a->ctx[index], &err) < 0)
            a->enqueue_failures++;
    }
    return NULL;
}

struct reader_arg {
    struct sg_store *store;
    struct tally *tally;
    int errors;
    int went_back;
    int reads;
};

static void *reader_thread(void *opaque)
{
    struct reader_arg *a = opaque;
    uint64_t last = 0;

    for (;;) {
        struct sg_error err = SG_ERROR_INIT;
        uint64_t count = 0;
        int done;

        pthread_mutex_lock(&a->tally->mu);
        done = a->tally->done;
        pthread_mutex_unlock(&a->tally->mu);
        if (done == TOTAL)
            break;
        if (sg_store_count_sandboxes(a->store, NULL, &count, &err) < 0)
            a->errors++;
        /* Committed data only, and never less of it later. */
        if (count < last)
            a->went_back++;
        last = count;
        a->reads++;
    }
    return NULL;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

    return a < b ? -1 : a > b;
}

START_TEST(test_concurrent_writers)
{
    struct sg_store_config cfg = {.read_connections = 2};
    struct tally *t = calloc(1, sizeof(*t));
    struct write_ctx *ctx = calloc(TOTAL, sizeof(*ctx));
    struct writer_arg wa[WRITERS];
    struct reader_arg ra[4];
    pthread_t wt[WRITERS], rt[4];
    struct sg_store_stats stats;
    struct ecollect events = {0};
    struct collect rows = {0};
    struct sg_error err = SG_ERROR_INIT;
    uint64_t *sorted = calloc(TOTAL, sizeof(*sorted));
    struct sg_store *store;
    char path[256];
    int i;

    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(ctx);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    new_db_path(path, sizeof(path));
    cfg.path = path;
    store = open_cfg(&cfg);

    for (i = 0; i < 4; i++) {
        ra[i] = (struct reader_arg){.store = store, .tally = t};
        ck_assert_int_eq(pthread_create(&rt[i], NULL, reader_thread, &ra[i]),
                         0);
    }
    for (i = 0; i < WRITERS; i++) {
        wa[i] = (struct writer_arg){
            .store = store, .tally = t, .ctx = ctx, .thread = i};
        ck_assert_int_eq(pthread_create(&wt[i], NULL, writer_thread, &wa[i]),
                         0);
    }
    for (i = 0; i < WRITERS; i++) {
        pthread_join(wt[i], NULL);
        ck_assert_int_eq(wa[i].enqueue_failures, 0);
    }
    pthread_mutex_lock(&t->mu);
    while (t->done < TOTAL)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    for (i = 0; i < 4; i++) {
        pthread_join(rt[i], NULL);
        ck_assert_int_eq(ra[i].errors, 0);
        ck_assert_int_eq(ra[i].went_back, 0);
    }

    /* Every callback exactly once, every write a success. */
    ck_assert_int_eq(t->failures, 0);
    for (i = 0; i < TOTAL; i++)
        ck_assert_int_eq(t->calls[i], 1);

    /* Versions: unique, exactly 1..TOTAL. */
    memcpy(sorted, t->rv, TOTAL * sizeof(*sorted));
    qsort(sorted, TOTAL, sizeof(*sorted), cmp_u64);
    for (i = 0; i < TOTAL; i++)
        ck_assert_uint_eq(sorted[i], (uint64_t)i + 1);

    /* Every row once, in id order. */
    ck_assert_uint_eq(count_rows(store, NULL), TOTAL);
    ck_assert_int_eq(
        sg_store_list_sandboxes(store, NULL, NULL, 0, collect_row, &rows, &err),
        TOTAL);
    for (i = 1; i < TOTAL; i++)
        ck_assert_int_lt(strcmp(rows.rows[i - 1]->id, rows.rows[i]->id), 0);
    for (i = 0; i < TOTAL; i++) {
        char id[32];
        int th = i / PER_WRITER, k = i % PER_WRITER;

        snprintf(id, sizeof(id), "w%d-%03d", th, k);
        ck_assert_str_eq(rows.rows[i]->id, id);
        ck_assert_uint_eq(rows.rows[i]->resource_version, t->rv[i]);
    }
    collect_free(&rows);

    /* Events: seq exactly 1..TOTAL, versions strictly increasing with it,
       and each matches its write's callback. */
    list_all_events(store, &events);
    ck_assert_uint_eq(events.n, TOTAL);
    for (i = 0; i < TOTAL; i++) {
        ck_assert_uint_eq(events.evs[i]->seq, (uint64_t)i + 1);
        if (i > 0)
            ck_assert_uint_gt(events.evs[i]->resource_version,
                              events.evs[i - 1]->resource_version);
    }
    for (i = 0; i < TOTAL; i++)
        ck_assert_uint_eq(events.evs[t->seq[i] - 1]->resource_version,
                          t->rv[i]);
    ecollect_free(&events);

    /* Group commit happened. */
    sg_store_get_stats(store, &stats);
    ck_assert_uint_eq(stats.writes, TOTAL);
    ck_assert_uint_ge(stats.commits, 1);
    ck_assert_uint_lt(stats.commits, stats.writes);
    ck_assert_uint_gt(stats.max_batch, 1);
    ck_assert_uint_eq(stats.failed_batches, 0);
    ck_assert_uint_eq(stats.queued, 0);

    sg_store_close(store);
    free(sorted);
    free(ctx);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}
END_TEST

/* Enqueue id (no request id, an event) with w as callback. */
static void enqueue_create(struct sg_store *store, const char *id,
                           const char *name, struct waiter *w)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_sandbox_row row = mkrow(id, "alice", "");
    struct sg_event_row ev;

    row.name = (char *)name;
    ev = mkevent(&row, SG_EVENT_ACCEPTED, "Accepted");
    ck_assert_msg(
        sg_store_create_sandbox(store, &row, &ev, on_write, w, &err) == 0, "%s",
        err.message);
}

/*
 * While another connection holds the write lock, the writer waits in
 * BEGIN with its first batch; everything queued meanwhile must go into the
 * next one transaction.
 */
START_TEST(test_group_commit_while_locked)
{
    struct sg_store_config cfg = {.busy_timeout_ms = 20000};
    struct waiter w[11];
    struct sg_store_stats stats;
    struct sg_store *store;
    char path[256], id[32];
    sqlite3 *raw;
    int i;

    for (i = 0; i < 11; i++)
        w[i] = (struct waiter)WAITER_INIT;
    new_db_path(path, sizeof(path));
    cfg.path = path;
    store = open_cfg(&cfg);
    raw = raw_open(path);
    raw_exec(raw, "BEGIN IMMEDIATE");
    for (i = 0; i < 11; i++) {
        snprintf(id, sizeof(id), "sb-%02d", i);
        enqueue_create(store, id, "name", &w[i]);
    }
    usleep(100000);
    for (i = 0; i < 11; i++)
        ck_assert_int_eq(w[i].calls, 0); /* nothing durable yet */
    raw_exec(raw, "COMMIT");
    for (i = 0; i < 11; i++) {
        wait_calls(&w[i], 1);
        ck_assert_int_eq(w[i].code, SG_ERR_OK);
        ck_assert(w[i].created);
        waiter_clear(&w[i]);
    }
    sg_store_get_stats(store, &stats);
    ck_assert_uint_eq(stats.writes, 11);
    /* The first batch is whatever was queued when the writer woke; the
       rest waited for the lock together. */
    ck_assert_uint_le(stats.commits, 2);
    ck_assert_uint_ge(stats.max_batch, 6);
    raw_close(raw);
    sg_store_close(store);
}
END_TEST

/* Locked beyond busy_timeout and every retry: UNAVAILABLE, nothing kept. */
START_TEST(test_busy_exhausted)
{
    struct sg_store_config cfg = {.busy_timeout_ms = 20};
    struct waiter w = WAITER_INIT;
    struct sg_store_stats stats;
    struct sg_store *store;
    char path[256];
    sqlite3 *raw;

    new_db_path(path, sizeof(path));
    cfg.path = path;
    store = open_cfg(&cfg);
    raw = raw_open(path);
    raw_exec(raw, "BEGIN IMMEDIATE");
    enqueue_create(store, "sb-1", "name", &w);
    wait_calls(&w, 1);
    ck_assert_int_eq(w.code, SG_ERR_UNAVAILABLE);
    ck_assert_ptr_null(w.row);
    sg_store_get_stats(store, &stats);
    ck_assert_uint_eq(stats.busy_retries, 3);
    ck_assert_uint_eq(stats.failed_batches, 1);
    ck_assert_uint_eq(stats.commits, 0);
    raw_exec(raw, "COMMIT");
    raw_close(raw);

    /* The store recovers; the failed write left nothing behind. */
    ck_assert_ptr_null(get_row(store, "sb-1"));
    waiter_clear(&w);
    enqueue_create(store, "sb-1", "name", &w);
    wait_calls(&w, 1);
    ck_assert_int_eq(w.code, SG_ERR_OK);
    ck_assert_uint_eq(w.row->resource_version, 1);
    ck_assert_uint_eq(w.event->seq, 1);
    waiter_clear(&w);
    sg_store_close(store);
}
END_TEST

/*
 * Queue [first] alone (the writer takes it and blocks on the lock), then
 * the three of names[] that must share the next transaction; release the
 * lock and wait for all four.
 */
static void run_locked_batch(struct sg_store *store, const char *path,
                             const char *const names[3], struct waiter w[4])
{
    char id[32];
    sqlite3 *raw = raw_open(path);
    int i;

    raw_exec(raw, "BEGIN IMMEDIATE");
    enqueue_create(store, "sb-0", "name", &w[0]);
    usleep(50000);
    for (i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "sb-%d", i + 1);
        enqueue_create(store, id, names[i], &w[i + 1]);
    }
    raw_exec(raw, "COMMIT");
    raw_close(raw);
    for (i = 0; i < 4; i++)
        wait_calls(&w[i], 1);
}

/* A failing request rolls back alone; its batch-mates commit. */
START_TEST(test_request_fails_alone)
{
    static const char *const names[3] = {"good", "bad", "good"};
    struct sg_store_config cfg = {.busy_timeout_ms = 20000};
    struct observed o = OBSERVED_INIT;
    char seqs[64];
    struct waiter w[4];
    struct sg_store_stats stats;
    struct ecollect events = {0};
    struct sg_store *store;
    char path[256];
    sqlite3 *raw;
    int i;

    for (i = 0; i < 4; i++)
        w[i] = (struct waiter)WAITER_INIT;
    new_db_path(path, sizeof(path));
    cfg.path = path;
    store = open_cfg(&cfg);
    raw = raw_open(path);
    raw_exec(raw, "CREATE TRIGGER poison BEFORE INSERT ON sandboxes "
                  "WHEN NEW.name = 'bad' "
                  "BEGIN SELECT RAISE(ABORT, 'bad sandbox'); END");
    raw_close(raw);
    sg_store_set_commit_observer(store, on_commit, &o);

    run_locked_batch(store, path, names, w);
    sg_store_get_stats(store, &stats);
    ck_assert_uint_eq(stats.commits, 2); /* the three shared one */
    ck_assert_int_eq(w[0].code, SG_ERR_OK);
    ck_assert_int_eq(w[1].code, SG_ERR_OK);
    ck_assert_int_eq(w[2].code, SG_ERR_INTERNAL);
    ck_assert_msg(strstr(w[2].message, "bad sandbox") != NULL, "%s",
                  w[2].message);
    ck_assert_int_eq(w[3].code, SG_ERR_OK);
    /* No gap left by the rolled-back one. */
    ck_assert_uint_eq(w[1].row->resource_version, 2);
    ck_assert_uint_eq(w[3].row->resource_version, 3);
    ck_assert_uint_eq(w[3].event->seq, 3);
    ck_assert_ptr_null(get_row(store, "sb-2"));
    ck_assert_uint_eq(count_rows(store, NULL), 3);
    list_all_events(store, &events);
    ck_assert_uint_eq(events.n, 3);
    ecollect_free(&events);
    /* The observer saw the committed events only, the shared commit's in
       one call. */
    observed_seqs(&o, seqs, sizeof(seqs));
    ck_assert_str_eq(seqs, "1,2,3");
    ck_assert_int_eq(o.calls, 2);
    ck_assert_uint_eq(o.max_call, 2);
    for (i = 0; i < 4; i++)
        waiter_clear(&w[i]);
    sg_store_close(store);
    observed_free(&o);
}
END_TEST

/*
 * A COMMIT that fails (here: a deferred foreign key violated by a trigger)
 * fails every request of its batch, and none of them is visible.
 */
START_TEST(test_commit_failure_fails_batch)
{
    static const char *const names[3] = {"good", "poison", "good"};
    struct sg_store_config cfg = {.busy_timeout_ms = 20000};
    struct observed o = OBSERVED_INIT;
    char seqs[64];
    struct waiter w[4];
    struct sg_store_stats stats;
    struct ecollect events = {0};
    struct sg_store *store;
    char path[256];
    sqlite3 *raw;
    int i;

    for (i = 0; i < 4; i++)
        w[i] = (struct waiter)WAITER_INIT;
    new_db_path(path, sizeof(path));
    cfg.path = path;
    store = open_cfg(&cfg);
    raw = raw_open(path);
    raw_exec(raw, "CREATE TABLE poison_ref (id INTEGER PRIMARY KEY);"
                  "CREATE TABLE poison (x INTEGER REFERENCES poison_ref(id) "
                  "DEFERRABLE INITIALLY DEFERRED);"
                  "CREATE TRIGGER poison_commit AFTER INSERT ON sandboxes "
                  "WHEN NEW.name = 'poison' "
                  "BEGIN INSERT INTO poison (x) VALUES (42); END");
    raw_close(raw);
    sg_store_set_commit_observer(store, on_commit, &o);

    run_locked_batch(store, path, names, w);
    ck_assert_int_eq(w[0].code, SG_ERR_OK);
    for (i = 1; i < 4; i++) {
        ck_assert_int_eq(w[i].code, SG_ERR_INTERNAL);
        ck_assert_ptr_null(w[i].row);
    }
    ck_assert_msg(strstr(w[1].message, "commit") != NULL, "%s", w[1].message);
    sg_store_get_stats(store, &stats);
    ck_assert_uint_eq(stats.commits, 1);
    ck_assert_uint_eq(stats.failed_batches, 1);
    ck_assert_uint_eq(stats.writes, 4);
    ck_assert_uint_eq(count_rows(store, NULL), 1);
    ck_assert_ptr_null(get_row(store, "sb-1"));
    ck_assert_ptr_null(get_row(store, "sb-3"));

    /* The writer goes on, without gaps. */
    waiter_clear(&w[1]);
    enqueue_create(store, "sb-9", "good", &w[1]);
    wait_calls(&w[1], 1);
    ck_assert_int_eq(w[1].code, SG_ERR_OK);
    ck_assert_uint_eq(w[1].row->resource_version, 2);
    ck_assert_uint_eq(w[1].event->seq, 2);
    list_all_events(store, &events);
    ck_assert_uint_eq(events.n, 2);
    ecollect_free(&events);
    /* The failed batch was never observed; seqs stay consecutive. */
    observed_seqs(&o, seqs, sizeof(seqs));
    ck_assert_str_eq(seqs, "1,2");
    ck_assert_int_eq(o.calls, 2);
    ck_assert_int_eq(o.breaks, 0);
    for (i = 0; i < 4; i++)
        waiter_clear(&w[i]);
    sg_store_close(store);
    observed_free(&o);
}
END_TEST

/* --- credential records ------------------------------------------------ */

struct cwaiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    enum sg_err_code code;
    char message[SG_ERROR_MESSAGE_MAX];
    struct sg_credential_row *row;
};

#define CWAITER_INIT                                                           \
    {                                                                          \
        .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER        \
    }

static void on_cred_write(void *opaque,
                          const struct sg_store_credential_result *res)
{
    struct cwaiter *w = opaque;

    pthread_mutex_lock(&w->mu);
    w->calls++;
    w->code = res->err ? res->err->code : SG_ERR_OK;
    snprintf(w->message, sizeof(w->message), "%s",
             res->err ? res->err->message : "");
    sg_credential_row_free(w->row);
    w->row = res->row ? sg_credential_row_copy(res->row) : NULL;
    if ((res->err != NULL) == (res->row != NULL))
        w->code = (enum sg_err_code) - 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void cwait(struct cwaiter *w, int calls)
{
    pthread_mutex_lock(&w->mu);
    while (w->calls < calls)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void cwaiter_clear(struct cwaiter *w)
{
    sg_credential_row_free(w->row);
    w->row = NULL;
    w->calls = 0;
    w->code = SG_ERR_OK;
    w->message[0] = '\0';
}

static struct sg_credential_row mkcred(const char *tenant, const char *name,
                                       const char *kind)
{
    static uint8_t rec[] = {0x0a, 0x03, 'r', 'e', 'c'};
    struct sg_credential_row r = {
        .tenant = (char *)tenant, .name = (char *)name, .kind = (char *)kind,
        .owner = "alice", .create_time = 1000, .update_time = 2000,
        .record = rec, .record_len = sizeof(rec)};

    return r;
}

static enum sg_err_code cred_create_wait(struct sg_store *store,
                                         const char *tenant, const char *name,
                                         const char *kind, struct cwaiter *w)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_credential_row r = mkcred(tenant, name, kind);

    cwaiter_clear(w);
    ck_assert_msg(sg_store_create_credential(store, &r, on_cred_write, w,
                                             &err) == 0,
                  "%s", err.message);
    cwait(w, 1);
    return w->code;
}

static enum sg_err_code cred_delete_wait(struct sg_store *store,
                                         const char *tenant, const char *name,
                                         struct cwaiter *w)
{
    struct sg_error err = SG_ERROR_INIT;

    cwaiter_clear(w);
    ck_assert_msg(sg_store_delete_credential(store, tenant, name,
                                             on_cred_write, w, &err) == 0,
                  "%s", err.message);
    cwait(w, 1);
    return w->code;
}

struct ccollect {
    char keys[512];
    size_t n;
};

static int collect_cred(void *opaque, const struct sg_credential_row *row)
{
    struct ccollect *c = opaque;
    size_t len = strlen(c->keys);

    snprintf(c->keys + len, sizeof(c->keys) - len, "%s%s/%s",
             c->n ? "," : "", row->tenant, row->name);
    c->n++;
    return 0;
}

/* Page through f two rows at a time, by the last key seen. */
static void list_creds_paged(struct sg_store *store,
                             const struct sg_credential_filter *f,
                             struct ccollect *all)
{
    char after_t[64] = "", after_n[64] = "";
    struct sg_error err = SG_ERROR_INIT;
    ssize_t n;

    memset(all, 0, sizeof(*all));
    do {
        struct ccollect page = {{0}, 0};
        const char *last;
        char *slash;

        n = sg_store_list_credentials(store, f, after_t, after_n, 2,
                                      collect_cred, &page, &err);
        ck_assert_msg(n >= 0, "%s", err.message);
        ck_assert_uint_eq((size_t)n, page.n);
        if (n == 0)
            break;
        last = strrchr(page.keys, ',');
        last = last ? last + 1 : page.keys;
        slash = strchr(last, '/');
        ck_assert_ptr_nonnull(slash);
        snprintf(after_t, sizeof(after_t), "%.*s", (int)(slash - last), last);
        snprintf(after_n, sizeof(after_n), "%s", slash + 1);
        snprintf(all->keys + strlen(all->keys),
                 sizeof(all->keys) - strlen(all->keys), "%s%s",
                 all->n ? "," : "", page.keys);
        all->n += page.n;
    } while (n == 2);
}

START_TEST(test_credential_create_get_delete)
{
    char path[256];
    struct sg_store *store;
    struct cwaiter w = CWAITER_INIT;
    struct sg_credential_row *got = NULL;
    struct sg_credential_row bad = mkcred("", "x", "file");
    struct sg_error err = SG_ERROR_INIT;
    sqlite3 *raw;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    ck_assert_int_eq(cred_create_wait(store, "team-a", "git", "file", &w),
                     SG_ERR_OK);
    ck_assert_str_eq(w.row->name, "git");
    ck_assert_str_eq(w.row->kind, "file");

    ck_assert_int_eq(
        sg_store_get_credential_copy(store, "team-a", "git", &got, &err), 1);
    ck_assert_str_eq(got->tenant, "team-a");
    ck_assert_str_eq(got->owner, "alice");
    ck_assert_int_eq(got->create_time, 1000);
    ck_assert_int_eq(got->update_time, 2000);
    ck_assert_uint_eq(got->record_len, 5);
    ck_assert_int_eq(memcmp(got->record, "\x0a\x03rec", 5), 0);
    sg_credential_row_free(got);
    got = NULL;
    /* The key is (tenant, name): another tenant's name is another row. */
    ck_assert_int_eq(
        sg_store_get_credential_copy(store, "team-b", "git", &got, &err), 0);
    ck_assert_ptr_null(got);
    ck_assert_int_eq(cred_create_wait(store, "team-b", "git", "env", &w),
                     SG_ERR_OK);

    ck_assert_int_eq(cred_create_wait(store, "team-a", "git", "env", &w),
                     SG_ERR_ALREADY_EXISTS);
    ck_assert_ptr_null(w.row);
    ck_assert_msg(strstr(w.message, "already exists") != NULL, "%s",
                  w.message);
    /* The duplicate did not overwrite the first. */
    ck_assert_int_eq(
        sg_store_get_credential_copy(store, "team-a", "git", &got, &err), 1);
    ck_assert_str_eq(got->kind, "file");
    sg_credential_row_free(got);
    got = NULL;

    /* Refused before queueing: no callback. */
    ck_assert_int_eq(sg_store_create_credential(store, &bad, on_cred_write,
                                                &w, &err),
                     -1);
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    sg_error_reset(&err);

    ck_assert_int_eq(cred_delete_wait(store, "team-a", "git", &w), SG_ERR_OK);
    ck_assert_str_eq(w.row->kind, "file"); /* the row as it was */
    ck_assert_uint_eq(w.row->record_len, 5);
    ck_assert_int_eq(
        sg_store_get_credential_copy(store, "team-a", "git", &got, &err), 0);
    ck_assert_int_eq(cred_delete_wait(store, "team-a", "git", &w),
                     SG_ERR_NOT_FOUND);
    ck_assert_ptr_null(w.row);
    ck_assert_int_eq(
        sg_store_get_credential_copy(store, "team-b", "git", &got, &err), 1);
    sg_credential_row_free(got);

    /* Credential writes advance neither counter. */
    raw = raw_open(path);
    ck_assert_int_eq(raw_int(raw, "SELECT value FROM meta WHERE key = "
                                  "'resource_version'"),
                     0);
    ck_assert_int_eq(raw_int(raw, "SELECT count(*) FROM events"), 0);
    ck_assert_int_eq(raw_int(raw, "SELECT count(*) FROM schema_migrations "
                                  "WHERE version = 3 AND "
                                  "name = 'credentials'"),
                     1);
    raw_close(raw);
    cwaiter_clear(&w);
    sg_store_close(store);
}
END_TEST

START_TEST(test_credential_list_paging)
{
    static const char *const keys[][3] = {
        {"team-b", "zeta", "env"},  {"team-a", "gamma", "file"},
        {"team-a", "alpha", "env"}, {"team-c", "beta", "file"},
        {"team-a", "beta", "file"}, {"team-b", "alpha", "file"},
    };
    struct sg_credential_filter by_tenant = {.tenant = "team-a"};
    struct sg_credential_filter by_kind = {.kind = "file"};
    struct sg_credential_filter both = {.tenant = "team-b", .kind = "file"};
    struct sg_error err = SG_ERROR_INIT;
    struct ccollect c;
    struct cwaiter w = CWAITER_INIT;
    struct sg_store *store;
    char path[256];
    ssize_t n;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    for (size_t i = 0; i < SG_N_ELEMENTS(keys); i++)
        ck_assert_int_eq(
            cred_create_wait(store, keys[i][0], keys[i][1], keys[i][2], &w),
            SG_ERR_OK);

    list_creds_paged(store, NULL, &c);
    ck_assert_str_eq(c.keys, "team-a/alpha,team-a/beta,team-a/gamma,"
                             "team-b/alpha,team-b/zeta,team-c/beta");
    list_creds_paged(store, &by_tenant, &c);
    ck_assert_str_eq(c.keys, "team-a/alpha,team-a/beta,team-a/gamma");
    list_creds_paged(store, &by_kind, &c);
    ck_assert_str_eq(c.keys,
                     "team-a/beta,team-a/gamma,team-b/alpha,team-c/beta");
    list_creds_paged(store, &both, &c);
    ck_assert_str_eq(c.keys, "team-b/alpha");

    /* A visitor that stops ends the call at that row. */
    memset(&c, 0, sizeof(c));
    n = sg_store_list_credentials(store, NULL, "team-a", "gamma", 0,
                                  collect_cred, &c, &err);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(c.keys, "team-b/alpha,team-b/zeta,team-c/beta");
    cwaiter_clear(&w);
    sg_store_close(store);
}
END_TEST

/* A batch whose commit fails writes none of its credentials. */
START_TEST(test_credential_failed_batch)
{
    static const char *const names[] = {"good-1", "poison", "good-2"};
    struct sg_store_config cfg = {.busy_timeout_ms = 20000};
    struct sg_error err = SG_ERROR_INIT;
    struct cwaiter w[4];
    struct ccollect c;
    struct sg_credential_row r;
    struct sg_store *store;
    char path[256];
    sqlite3 *raw;
    int i;

    for (i = 0; i < 4; i++)
        w[i] = (struct cwaiter)CWAITER_INIT;
    new_db_path(path, sizeof(path));
    cfg.path = path;
    store = open_cfg(&cfg);
    raw = raw_open(path);
    raw_exec(raw, "CREATE TABLE poison_ref (id INTEGER PRIMARY KEY);"
                  "CREATE TABLE poison (x INTEGER REFERENCES poison_ref(id) "
                  "DEFERRABLE INITIALLY DEFERRED);"
                  "CREATE TRIGGER poison_commit AFTER INSERT ON credentials "
                  "WHEN NEW.name = 'poison' "
                  "BEGIN INSERT INTO poison (x) VALUES (42); END");
    /* Hold the lock so the first write waits alone and the three queued
       meanwhile share the next transaction. */
    raw_exec(raw, "BEGIN IMMEDIATE");
    r = mkcred("team-a", "first", "file");
    ck_assert(sg_store_create_credential(store, &r, on_cred_write, &w[0],
                                         &err) == 0);
    usleep(50000);
    for (i = 0; i < 3; i++) {
        r = mkcred("team-a", names[i], "file");
        ck_assert(sg_store_create_credential(store, &r, on_cred_write,
                                             &w[i + 1], &err) == 0);
    }
    raw_exec(raw, "COMMIT");
    raw_close(raw);
    for (i = 0; i < 4; i++)
        cwait(&w[i], 1);
    ck_assert_int_eq(w[0].code, SG_ERR_OK);
    for (i = 1; i < 4; i++) {
        ck_assert_int_eq(w[i].code, SG_ERR_INTERNAL);
        ck_assert_ptr_null(w[i].row);
    }
    list_creds_paged(store, NULL, &c);
    ck_assert_str_eq(c.keys, "team-a/first");
    /* The writer goes on. */
    ck_assert_int_eq(cred_create_wait(store, "team-a", "good-1", "file",
                                      &w[1]),
                     SG_ERR_OK);
    list_creds_paged(store, NULL, &c);
    ck_assert_str_eq(c.keys, "team-a/first,team-a/good-1");
    for (i = 0; i < 4; i++)
        cwaiter_clear(&w[i]);
    sg_store_close(store);
}
END_TEST

/* A database at version 2 gets the credentials table at open, and its
   sandboxes stay. */
START_TEST(test_migration_0003_upgrade)
{
    struct sg_sandbox_row row = mkrow("sb-1", "alice", "");
    struct sg_sandbox_row *got;
    struct cwaiter w = CWAITER_INIT;
    struct sg_store *store;
    char path[256];
    sqlite3 *raw;

    new_db_path(path, sizeof(path));
    store = open_path(path);
    create_ok(store, &row);
    sg_store_close(store);
    raw = raw_open(path);
    raw_exec(raw, "DELETE FROM schema_migrations WHERE version = 3;"
                  "DROP TABLE credentials");
    raw_close(raw);

    store = open_path(path);
    ck_assert_uint_eq(sg_store_schema_version(store), 3);
    got = get_row(store, "sb-1");
    ck_assert_ptr_nonnull(got);
    sg_sandbox_row_free(got);
    ck_assert_int_eq(cred_create_wait(store, "team-a", "git", "env", &w),
                     SG_ERR_OK);
    cwaiter_clear(&w);
    sg_store_close(store);
}
END_TEST

/* --- closing ----------------------------------------------------------- */

struct nested {
    struct sg_store *store;
    struct waiter *first;
    int rc;
    enum sg_err_code code;
    int calls;
};

/* A callback that runs while close drains the queue and tries to write. */
static void on_write_then_write(void *opaque, const struct sg_store_result *res)
{
    struct nested *n = opaque;
    struct sg_error err = SG_ERROR_INIT;
    struct sg_sandbox_row row = mkrow("sb-late", "alice", "");

    n->calls++;
    n->rc =
        sg_store_create_sandbox(n->store, &row, NULL, on_write, n->first, &err);
    n->code = err.code;
    on_write(n->first, res);
}

static void *close_thread(void *opaque)
{
    sg_store_close(opaque);
    return NULL;
}

START_TEST(test_close_drains_and_refuses)
{
    struct sg_store_config cfg = {.busy_timeout_ms = 20000};
    struct waiter first = WAITER_INIT, w[3];
    struct nested nested = {.rc = 0};
    struct sg_error err = SG_ERROR_INIT;
    struct sg_sandbox_row row = mkrow("sb-a", "alice", "");
    struct sg_store *store;
    char path[256], id[32];
    pthread_t closer;
    sqlite3 *raw;
    int i;

    for (i = 0; i < 3; i++)
        w[i] = (struct waiter)WAITER_INIT;
    new_db_path(path, sizeof(path));
    cfg.path = path;
    store = open_cfg(&cfg);
    nested.store = store;
    nested.first = &first;
    raw = raw_open(path);
    raw_exec(raw, "BEGIN IMMEDIATE");
    ck_assert_int_eq(sg_store_create_sandbox(
                         store, &row, NULL, on_write_then_write, &nested, &err),
                     0);
    for (i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "sb-%d", i);
        enqueue_create(store, id, "name", &w[i]);
    }
    /* Close starts while every write is still queued or blocked. */
    ck_assert_int_eq(pthread_create(&closer, NULL, close_thread, store), 0);
    usleep(200000);
    raw_exec(raw, "COMMIT");
    pthread_join(closer, NULL);
    raw_close(raw);

    /* Drained: every queued write ran, its callback exactly once. */
    ck_assert_int_eq(nested.calls, 1);
    ck_assert_int_eq(first.calls, 1);
    ck_assert_int_eq(first.code, SG_ERR_OK);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(w[i].calls, 1);
        ck_assert_int_eq(w[i].code, SG_ERR_OK);
        waiter_clear(&w[i]);
    }
    /* The write attempted during close was refused, and never called
       back. */
    ck_assert_int_eq(nested.rc, -1);
    ck_assert_int_eq(nested.code, SG_ERR_UNAVAILABLE);
    waiter_clear(&first);

    store = open_path(path);
    ck_assert_uint_eq(count_rows(store, NULL), 4);
    ck_assert_ptr_null(get_row(store, "sb-late"));
    sg_store_close(store);
    sg_store_close(NULL);
}
END_TEST

/* --- helpers ----------------------------------------------------------- */

START_TEST(test_row_copy)
{
    struct sg_sandbox_row row = {.id = (char *)"x",
                                 .phase = SG_PHASE_READY,
                                 .record = record_bytes,
                                 .record_len = sizeof(record_bytes),
                                 .resource_version = 7};
    struct sg_event_row ev = {.seq = 3, .reason = (char *)"Ready"};
    struct sg_sandbox_row *copy = sg_sandbox_row_copy(&row);
    struct sg_event_row *ecopy = sg_event_row_copy(&ev);

    ck_assert_ptr_nonnull(copy);
    ck_assert_str_eq(copy->id, "x");
    ck_assert_str_eq(copy->name, "");
    ck_assert_str_eq(copy->namespace_name, "");
    ck_assert_ptr_ne(copy->record, row.record);
    ck_assert_mem_eq(copy->record, record_bytes, sizeof(record_bytes));
    ck_assert_uint_eq(copy->resource_version, 7);
    sg_sandbox_row_clear(copy);
    ck_assert_ptr_null(copy->id);
    sg_sandbox_row_free(copy);
    sg_sandbox_row_free(NULL);
    sg_sandbox_row_clear(NULL);

    ck_assert_ptr_nonnull(ecopy);
    ck_assert_uint_eq(ecopy->seq, 3);
    ck_assert_str_eq(ecopy->reason, "Ready");
    ck_assert_str_eq(ecopy->message, "");
    ck_assert_ptr_ne(ecopy->reason, ev.reason);
    sg_event_row_free(ecopy);
    sg_event_row_free(NULL);
}
END_TEST

static const struct {
    enum sg_phase phase;
    const char *name;
} phase_names[] = {
    {SG_PHASE_ACCEPTED, "accepted"},  {SG_PHASE_PROVISIONING, "provisioning"},
    {SG_PHASE_READY, "ready"},        {SG_PHASE_FAILED, "failed"},
    {SG_PHASE_DELETING, "deleting"},  {SG_PHASE_DELETED, "deleted"},
    {(enum sg_phase)0, "unknown"},    {(enum sg_phase)7, "unknown"},
    {(enum sg_phase)99, "unknown"},
};

START_TEST(test_phase_name)
{
    ck_assert_str_eq(sg_phase_name(phase_names[_i].phase),
                     phase_names[_i].name);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *ops = tcase_create("ops");
    TCase *schema = tcase_create("schema");
    TCase *conc = tcase_create("concurrency");
    TCase *misc = tcase_create("helpers");

    tcase_add_unchecked_fixture(ops, base_setup, base_teardown);
    tcase_set_timeout(ops, 60);
    tcase_add_test(ops, test_create_get);
    tcase_add_test(ops, test_create_idempotent);
    tcase_add_test(ops, test_create_duplicate_id);
    tcase_add_test(ops, test_reads_see_every_acknowledged_write);
    tcase_add_test(ops, test_update);
    tcase_add_loop_test(ops, test_list_filters, 0,
                        (int)SG_N_ELEMENTS(filter_cases));
    tcase_add_test(ops, test_list_limit_and_stop);
    tcase_add_test(ops, test_pagination_concurrent_changes);
    tcase_add_test(ops, test_list_events);
    tcase_add_loop_test(ops, test_list_events_filters, 0,
                        (int)SG_N_ELEMENTS(ev_filter_cases));
    tcase_add_test(ops, test_list_events_scan_limits);
    tcase_add_test(ops, test_list_events_rare_filter_resumes);
    tcase_add_test(ops, test_event_bounds);
    tcase_add_test(ops, test_retention_count);
    tcase_add_test(ops, test_retention_age);
    tcase_add_test(ops, test_retention_chunks);
    tcase_add_test(ops, test_retention_config);
    tcase_add_test(ops, test_commit_observer_replace);
    tcase_add_test(ops, test_credential_create_get_delete);
    tcase_add_test(ops, test_credential_list_paging);
    suite_add_tcase(s, ops);

    tcase_add_unchecked_fixture(schema, base_setup, base_teardown);
    tcase_set_timeout(schema, 60);
    tcase_add_test(schema, test_migrations_fresh);
    tcase_add_test(schema, test_migrations_reopen);
    tcase_add_test(schema, test_migration_0002_upgrade);
    tcase_add_test(schema, test_migration_0003_upgrade);
    tcase_add_test(schema, test_migrations_future_refused);
    tcase_add_test(schema, test_data_survives_reopen);
    tcase_add_loop_test(schema, test_config, 0,
                        (int)SG_N_ELEMENTS(config_cases));
    suite_add_tcase(s, schema);

    tcase_add_unchecked_fixture(conc, base_setup, base_teardown);
    tcase_set_timeout(conc, 240);
    tcase_add_test(conc, test_concurrent_writers);
    tcase_add_test(conc, test_commit_observer);
    tcase_add_test(conc, test_group_commit_while_locked);
    tcase_add_test(conc, test_busy_exhausted);
    tcase_add_test(conc, test_request_fails_alone);
    tcase_add_test(conc, test_commit_failure_fails_batch);
    tcase_add_test(conc, test_credential_failed_batch);
    tcase_add_test(conc, test_close_drains_and_refuses);
    suite_add_tcase(s, conc);

    tcase_add_test(misc, test_row_copy);
    tcase_add_loop_test(misc, test_phase_name, 0,
                        (int)SG_N_ELEMENTS(phase_names));
    suite_add_tcase(s, misc);
    return s;
}

SG_TEST_MAIN(store_suite)
