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
    ssize_t n = sg_store_list_events(store, 0, 0, collect_event, c, &err);

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
    ck_assert_int_eq(
        sg_store_list_events(store, 1, 1, collect_event, &events, &err), 1);
    ck_assert_uint_eq(events.evs[0]->seq, 2);
    ecollect_free(&events);
    ck_assert_int_eq(
        sg_store_list_events(store, 3, 0, collect_event, &events, &err), 0);

    waiter_clear(&w);
    sg_store_close(store);
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
    raw_close(raw);
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
    for (i = 0; i < 4; i++)
        waiter_clear(&w[i]);
    sg_store_close(store);
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
    for (i = 0; i < 4; i++)
        waiter_clear(&w[i]);
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
    suite_add_tcase(s, ops);

    tcase_add_unchecked_fixture(schema, base_setup, base_teardown);
    tcase_set_timeout(schema, 60);
    tcase_add_test(schema, test_migrations_fresh);
    tcase_add_test(schema, test_migrations_reopen);
    tcase_add_test(schema, test_migrations_future_refused);
    tcase_add_test(schema, test_data_survives_reopen);
    tcase_add_loop_test(schema, test_config, 0,
                        (int)SG_N_ELEMENTS(config_cases));
    suite_add_tcase(s, schema);

    tcase_add_unchecked_fixture(conc, base_setup, base_teardown);
    tcase_set_timeout(conc, 240);
    tcase_add_test(conc, test_concurrent_writers);
    tcase_add_test(conc, test_group_commit_while_locked);
    tcase_add_test(conc, test_busy_exhausted);
    tcase_add_test(conc, test_request_fails_alone);
    tcase_add_test(conc, test_commit_failure_fails_batch);
    tcase_add_test(conc, test_close_drains_and_refuses);
    suite_add_tcase(s, conc);

    tcase_add_test(misc, test_row_copy);
    tcase_add_loop_test(misc, test_phase_name, 0,
                        (int)SG_N_ELEMENTS(phase_names));
    suite_add_tcase(s, misc);
    return s;
}

SG_TEST_MAIN(store_suite)
