/*
 * test_reconciler.c: the reconciler against the real SQLite store and the
 * built-in noop driver, on a real libuv loop.
 *
 * Rows are written the way CreateSandbox writes them (sg_record_to_row), the
 * reconciler is kicked, and the loop runs until the row reaches the phase
 * the case expects. The event rows then must hold exactly the transitions.
 */
#include "internal.h"

#include "testutils.h"

#include "cred_bind.h"
#include "driver.h"
#include "reconciler.h"
#include "sandbox_id.h"
#include "sandbox_record.h"
#include "store.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CRED_PREFIX "SGTREC_"

struct fixture {
    char dir[64];
    char db[128];
    char state[128];
    uv_loop_t loop;
    struct sg_store *store;
    struct sg_driver *driver;
    struct sg_reconciler *rec;
    unsigned resync_ms; /* 0: the reconciler's default */
    /* With creds: the delivery the reconciler resolves bindings with. */
    bool creds;
    struct sg_credsrc_registry *reg;
    struct sg_cred_workers *workers;
    struct sg_cred_delivery delivery;
};

static void rm_rf(const char *path)
{
    char cmd[256];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    ck_assert_int_eq(system(cmd), 0);
}

static void open_all(struct fixture *f, const char *settings)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_store_config sc = {.backend = "sqlite", .path = f->db,
                                 .durability = "normal"};
    struct sg_driver_open_args da = {.name = "noop",
                                     .settings_json = settings,
                                     .state_dir = f->state, .loop = &f->loop};
    struct sg_reconciler_config rc = {.expiry_interval_ms = 100,
                                      .retry_base_ms = 10,
                                      .retry_max_ms = 100,
                                      .resume_page = 3,
                                      .resync_interval_ms = f->resync_ms};

    uv_loop_init(&f->loop);
    f->store = sg_store_open(&sc, &err);
    ck_assert_msg(f->store != NULL, "%s", err.message);
    f->driver = sg_driver_open(&da, &err);
    ck_assert_msg(f->driver != NULL, "%s", err.message);
    if (f->creds) {
        struct sg_credsrc_config cc = {.env_prefix = CRED_PREFIX};

        f->reg = sg_credsrc_registry_new(&cc, &err);
        ck_assert_msg(f->reg != NULL, "%s", err.message);
        f->workers = sg_cred_workers_start(1, &err);
        ck_assert_msg(f->workers != NULL, "%s", err.message);
        f->delivery = (struct sg_cred_delivery){
            .store = f->store, .registry = f->reg, .workers = f->workers,
            .queue = sg_loop_queue_new(&f->loop, &err)};
        ck_assert_ptr_nonnull(f->delivery.queue);
        rc.credentials = &f->delivery;
    }
    f->rec = sg_reconciler_start(&f->loop, f->store, f->driver, &rc, &err);
    ck_assert_msg(f->rec != NULL, "%s", err.message);
}

static void close_all(struct fixture *f)
{
    /* As the daemon does: the workers after the driver, their queue
       after them. */
    sg_reconciler_stop(f->rec);
    sg_driver_close(f->driver);
    sg_cred_workers_stop(f->workers);
    sg_loop_queue_close(f->delivery.queue);
    sg_store_close(f->store);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    sg_reconciler_free(f->rec);
    sg_driver_free(f->driver);
    sg_credsrc_registry_free(f->reg);
    ck_assert_int_eq(uv_loop_close(&f->loop), 0);
}

static void setup(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sg-rec-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/db", f->dir);
    snprintf(f->state, sizeof(f->state), "%s/noop", f->dir);
}

/* ---- helpers ---------------------------------------------------------- */

struct written {
    bool done;
    bool ok;
};

static void on_written(void *opaque, const struct sg_store_result *res)
{
    struct written *w = opaque;

    w->ok = res->err == NULL;
    __atomic_store_n(&w->done, true, __ATOMIC_SEQ_CST);
}

static void wait_written(struct written *w)
{
    for (int i = 0; i < 5000 && !__atomic_load_n(&w->done, __ATOMIC_SEQ_CST);
         i++)
        usleep(1000);
    ck_assert(w->done);
    ck_assert(w->ok);
}

/* Store sb as CreateSandbox does (the row and its ACCEPTED event);
   returns a copy of its id. */
static char *store_accepted(struct fixture *f, const Sandgate__V1__Sandbox *sb)
{
    struct sg_sandbox_row row;
    struct sg_event_row ev;
    struct sg_error err = SG_ERROR_INIT;
    struct written w = {0};

    ck_assert_int_eq(sg_record_to_row(sb, "h", &row, &err), 0);
    ck_assert_int_eq(sg_event_for_row(&row, SG_EVENT_ACCEPTED, "Accepted", "",
                                      &ev), 0);
    ck_assert_int_eq(sg_store_create_sandbox(f->store, &row, &ev, on_written,
                                             &w, &err), 0);
    wait_written(&w);
    sg_event_row_clear(&ev);
    sg_sandbox_row_clear(&row);
    return strdup(sb->id);
}

/*
 * Store a fresh ACCEPTED sandbox as CreateSandbox would; returns its id.
 * With key, its noop block is {key: value}.
 */
static char *add_sandbox_block(struct fixture *f, const char *key,
                               const char *block, uint32_t ttl,
                               int64_t expire_time)
{
    Sandgate__V1__Sandbox sb = SANDGATE__V1__SANDBOX__INIT;
    Sandgate__V1__SandboxSpec spec = SANDGATE__V1__SANDBOX_SPEC__INIT;
    Sandgate__V1__SandboxStatus st = SANDGATE__V1__SANDBOX_STATUS__INIT;
    Google__Protobuf__Timestamp exp = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Google__Protobuf__Struct dc = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Struct inner = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    Google__Protobuf__Value msg = GOOGLE__PROTOBUF__VALUE__INIT;
    Google__Protobuf__Struct__FieldsEntry e =
        GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    Google__Protobuf__Struct__FieldsEntry ie =
        GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    Google__Protobuf__Struct__FieldsEntry *ep[1] = {&e}, *iep[1] = {&ie};
    char id[SG_SANDBOX_ID_SIZE];

    ck_assert_int_eq(sg_sandbox_id_new(id), 0);
    sb.id = id;
    sb.name = "n";
    sb.tenant = "t";
    sb.owner = "o";
    sb.spec = &spec;
    sb.status = &st;
    st.phase = SANDGATE__V1__SANDBOX_PHASE__SANDBOX_PHASE_ACCEPTED;
    spec.ttl_seconds = ttl;
    if (expire_time) {
        exp.seconds = expire_time / 1000;
        exp.nanos = (int32_t)(expire_time % 1000) * 1000000;
        st.expire_time = &exp;
    }
    if (block) {
        /* {"noop": {key: block}} */
        msg.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        msg.string_value = (char *)block;
        ie.key = (char *)key;
        ie.value = &msg;
        inner.fields = iep;
        inner.n_fields = 1;
        v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        v.struct_value = &inner;
        e.key = "noop";
        e.value = &v;
        dc.fields = ep;
        dc.n_fields = 1;
        spec.driver_config = &dc;
    }
    return store_accepted(f, &sb);
}

/* A sandbox whose noop block is {"fail": block} (none when NULL). */
static char *add_sandbox(struct fixture *f, const char *block, uint32_t ttl,
                         int64_t expire_time)
{
    return add_sandbox_block(f, "fail", block, ttl, expire_time);
}

static int copy_phase(void *opaque, const struct sg_sandbox_row *row)
{
    *(enum sg_phase *)opaque = row->phase;
    return 1;
}

static enum sg_phase phase_of(struct fixture *f, const char *id)
{
    enum sg_phase p = 0;

    ck_assert_int_ge(sg_store_get_sandbox(f->store, id, copy_phase, &p, NULL),
                     0);
    return p;
}

/* Run the loop until id is in phase want (or fail after ~10 s). */
static void run_until(struct fixture *f, const char *id, enum sg_phase want)
{
    for (int i = 0; i < 10000; i++) {
        if (phase_of(f, id) == want)
            return;
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    ck_abort_msg("sandbox %s is %s, want %s", id,
                 sg_phase_name(phase_of(f, id)), sg_phase_name(want));
}

struct types {
    const char *id;
    int list[32];
    size_t n;
};

static int collect_type(void *opaque, const struct sg_event_row *ev)
{
    struct types *t = opaque;

    if (STREQ(ev->sandbox_id, t->id) && t->n < SG_N_ELEMENTS(t->list))
        t->list[t->n++] = (int)ev->type;
    return 0;
}

static void assert_events(struct fixture *f, const char *id,
                          const int *want, size_t n)
{
    struct sg_event_filter filter = {.sandbox_id = id};
    struct types t = {.id = id};

    ck_assert_int_ge(sg_store_list_events(f->store, &filter, 0, 100000, 0,
                                          NULL, collect_type, &t, NULL),
                     0);
    ck_assert_uint_eq(t.n, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(t.list[i] == want[i], "event %zu of %s: %d, want %d", i,
                      id, t.list[i], want[i]);
}

/* Record a delete request, as DeleteSandbox does. */
static void request_delete(struct fixture *f, const char *id)
{
    struct sg_sandbox_row *row = NULL, next;
    struct sg_event_row ev[SG_RECORD_MAX_EVENTS];
    size_t n_ev = 0;
    struct sg_record_change chg = {.phase = SG_PHASE_DELETING,
                                   .events = {SG_EVENT_DELETE_REQUESTED},
                                   .reason = "DeleteRequested",
                                   .set_delete_time = true};
    struct written w = {0};

    ck_assert_int_eq(sg_store_get_sandbox_copy(f->store, id, &row, NULL), 1);
    ck_assert_int_eq(sg_record_apply(row, &chg, &next, ev, &n_ev, NULL), 0);
    ck_assert_uint_eq(n_ev, 1);
    ck_assert_int_eq(sg_store_update_sandbox(f->store, &next,
                                             row->resource_version, ev, n_ev,
                                             on_written, &w, NULL), 0);
    wait_written(&w);
    sg_event_row_clear(&ev[0]);
    sg_sandbox_row_clear(&next);
    sg_sandbox_row_free(row);
    sg_reconciler_kick(f->rec, id);
}

/* ---- cases ------------------------------------------------------------ */

/* ---- credential bindings ---------------------------------------------- */

static void on_cred_written(void *opaque,
                            const struct sg_store_credential_result *res)
{
    struct written *w = opaque;

    w->ok = res->err == NULL;
    __atomic_store_n(&w->done, true, __ATOMIC_SEQ_CST);
}

/* Store an env credential record "name" of tenant t for variable var;
   returns its create_time. */
static int64_t add_env_credential(struct fixture *f, const char *name,
                                  const char *var)
{
    Sandgate__V1__Credential c = SANDGATE__V1__CREDENTIAL__INIT;
    Sandgate__V1__CredentialSource src = SANDGATE__V1__CREDENTIAL_SOURCE__INIT;
    Google__Protobuf__Struct ref = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    Google__Protobuf__Struct__FieldsEntry e =
        GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    Google__Protobuf__Struct__FieldsEntry *ep[1] = {&e};
    struct sg_credential_row row = {.tenant = "t", .name = (char *)name,
                                    .kind = "env", .owner = "o",
                                    .create_time = sg_now_ms()};
    struct sg_credential_row *stored = NULL;
    struct written w = {0};
    uint8_t buf[512];
    int64_t created;

    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    v.string_value = (char *)var;
    e.key = "name";
    e.value = &v;
    ref.fields = ep;
    ref.n_fields = 1;
    src.kind = "env";
    src.ref = &ref;
    c.name = (char *)name;
    c.tenant = "t";
    c.source = &src;
    ck_assert_uint_lt(sandgate__v1__credential__get_packed_size(&c),
                      sizeof(buf));
    row.record_len = sandgate__v1__credential__pack(&c, buf);
    row.record = buf;
    row.update_time = row.create_time;
    ck_assert_int_eq(sg_store_create_credential(f->store, &row,
                                                on_cred_written, &w, NULL),
                     0);
    wait_written(&w);
    ck_assert_int_eq(sg_store_get_credential_copy(f->store, "t", name,
                                                  &stored, NULL),
                     1);
    created = stored->create_time;
    sg_credential_row_free(stored);
    return created;
}

static void delete_credential(struct fixture *f, const char *name)
{
    struct written w = {0};

    ck_assert_int_eq(sg_store_delete_credential(f->store, "t", name,
                                                on_cred_written, &w, NULL),
                     0);
    wait_written(&w);
}

/* An ACCEPTED sandbox binding credential name (as env TOKEN), authorized
   against the record made at bound_ms. */
static char *add_bound_sandbox(struct fixture *f, const char *name,
                               int64_t bound_ms)
{
    Sandgate__V1__Sandbox sb = SANDGATE__V1__SANDBOX__INIT;
    Sandgate__V1__SandboxSpec spec = SANDGATE__V1__SANDBOX_SPEC__INIT;
    Sandgate__V1__SandboxStatus st = SANDGATE__V1__SANDBOX_STATUS__INIT;
    Sandgate__V1__CredentialBinding b = SANDGATE__V1__CREDENTIAL_BINDING__INIT;
    Sandgate__V1__CredentialBinding *bp[1] = {&b};
    Sandgate__V1__CredentialBindingStatus bs =
        SANDGATE__V1__CREDENTIAL_BINDING_STATUS__INIT;
    Sandgate__V1__CredentialBindingStatus *bsp[1] = {&bs};
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    char id[SG_SANDBOX_ID_SIZE];

    ck_assert_int_eq(sg_sandbox_id_new(id), 0);
    b.credential = (char *)name;
    b.delivery_case = SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_ENV;
    b.env = "TOKEN";
    spec.credentials = bp;
    spec.n_credentials = 1;
    sg_ms_to_timestamp(bound_ms, &ts);
    bs.credential = (char *)name;
    bs.record_create_time = &ts;
    st.credentials = bsp;
    st.n_credentials = 1;
    st.phase = SANDGATE__V1__SANDBOX_PHASE__SANDBOX_PHASE_ACCEPTED;
    sb.id = id;
    sb.name = "n";
    sb.tenant = "t";
    sb.owner = "o";
    sb.spec = &spec;
    sb.status = &st;
    return store_accepted(f, &sb);
}

/* The Ready condition's reason and status.message of id. */
static void failure_of(struct fixture *f, const char *id, char *reason,
                       size_t rlen, char *message, size_t mlen)
{
    struct sg_sandbox_row *row = NULL;
    Sandgate__V1__Sandbox *sb;

    ck_assert_int_eq(sg_store_get_sandbox_copy(f->store, id, &row, NULL), 1);
    sb = sg_record_unpack(row, NULL);
    ck_assert_ptr_nonnull(sb);
    snprintf(reason, rlen, "%s", "");
    for (size_t i = 0; i < sb->status->n_conditions; i++) {
        if (STREQ(sb->status->conditions[i]->type, "Ready"))
            snprintf(reason, rlen, "%s", sb->status->conditions[i]->reason);
    }
    snprintf(message, mlen, "%s", sb->status->message);
    /* The driver was never asked: no backend object. */
    ck_assert_str_eq(sb->status->backend_object, "");
    sandgate__v1__sandbox__free_unpacked(sb, NULL);
    sg_sandbox_row_free(row);
}

START_TEST(test_bindings_resolve_before_create)
{
    struct fixture f;
    static const int want[] = {
        SG_EVENT_ACCEPTED, SG_EVENT_ALLOCATION_STARTED,
        SG_EVENT_CREDENTIALS_RESOLVED, SG_EVENT_RESOURCE_CREATED,
        SG_EVENT_READY};
    char *id;

    setup(&f);
    f.creds = true;
    setenv(CRED_PREFIX "OK", "material", 1);
    open_all(&f, NULL);
    id = add_bound_sandbox(&f, "ok", add_env_credential(&f, "ok",
                                                        CRED_PREFIX "OK"));
    sg_reconciler_kick(f.rec, id);
    run_until(&f, id, SG_PHASE_READY);
    assert_events(&f, id, want, SG_N_ELEMENTS(want));
    close_all(&f);
    free(id);
    rm_rf(f.dir);
}
END_TEST

/* Each way a binding can fail at provisioning fails the sandbox before
   the driver is called, with its reason. */
static const struct {
    const char *case_name;
    const char *reason;
    const char *message; /* a part of it */
} bind_failures[] = {
    {"missing", "CredentialNotFound",
     "credential 'c' no longer exists in tenant 't'"},
    {"changed", "CredentialChanged",
     "credential 'c' was deleted and made again since the sandbox was "
     "created"},
    {"unset", "CredentialUnresolvable",
     "credential 'c' (env " CRED_PREFIX "UNSET): env: environment variable '"
     CRED_PREFIX "UNSET' is not set"},
    {"no-delivery", "CredentialsUnavailable",
     "this gateway does not resolve credentials"},
};

START_TEST(test_binding_failures_fail_before_create)
{
    struct fixture f;
    static const int want[] = {SG_EVENT_ACCEPTED, SG_EVENT_ALLOCATION_STARTED,
                               SG_EVENT_FAILED};
    const char *c = bind_failures[_i].case_name;
    char reason[64], message[1024];
    int64_t created = 0;
    char *id;

    setup(&f);
    f.creds = !STREQ(c, "no-delivery");
    unsetenv(CRED_PREFIX "UNSET");
    open_all(&f, NULL);
    if (!STREQ(c, "missing"))
        created = add_env_credential(&f, "c", CRED_PREFIX "UNSET");
    if (STREQ(c, "changed"))
        created--; /* authorized against an older record of that name */
    id = add_bound_sandbox(&f, "c", created);
    sg_reconciler_kick(f.rec, id);
    run_until(&f, id, SG_PHASE_FAILED);
    assert_events(&f, id, want, SG_N_ELEMENTS(want));
    failure_of(&f, id, reason, sizeof(reason), message, sizeof(message));
    ck_assert_str_eq(reason, bind_failures[_i].reason);
    ck_assert_msg(strstr(message, bind_failures[_i].message) != NULL,
                  "%s: %s", c, message);
    close_all(&f);
    free(id);
    rm_rf(f.dir);
}
END_TEST

/* A record deleted after the create was accepted is not resolved. */
START_TEST(test_binding_deleted_after_create)
{
    struct fixture f;
    char reason[64], message[1024];
    char *id;

    setup(&f);
    f.creds = true;
    setenv(CRED_PREFIX "GONE", "material", 1);
    open_all(&f, NULL);
    id = add_bound_sandbox(&f, "gone", add_env_credential(&f, "gone",
                                                          CRED_PREFIX "GONE"));
    delete_credential(&f, "gone");
    sg_reconciler_kick(f.rec, id);
    run_until(&f, id, SG_PHASE_FAILED);
    failure_of(&f, id, reason, sizeof(reason), message, sizeof(message));
    ck_assert_str_eq(reason, "CredentialNotFound");
    close_all(&f);
    free(id);
    rm_rf(f.dir);
}
END_TEST

START_TEST(test_create_to_ready_to_deleted)
{
    struct fixture f;
    static const int want[] = {
        SG_EVENT_ACCEPTED, SG_EVENT_ALLOCATION_STARTED,
        SG_EVENT_RESOURCE_CREATED, SG_EVENT_READY,
        SG_EVENT_DELETE_REQUESTED, SG_EVENT_DELETED};
    char *id;

    setup(&f);
    open_all(&f, NULL);
    id = add_sandbox(&f, NULL, 0, 0);
    sg_reconciler_kick(f.rec, id);
    run_until(&f, id, SG_PHASE_READY);
    request_delete(&f, id);
    run_until(&f, id, SG_PHASE_DELETED);
    assert_events(&f, id, want, SG_N_ELEMENTS(want));
    close_all(&f);
    free(id);
    rm_rf(f.dir);
}
END_TEST

START_TEST(test_driver_failure_fails_the_sandbox)
{
    struct fixture f;
    static const int want[] = {SG_EVENT_ACCEPTED, SG_EVENT_ALLOCATION_STARTED,
                               SG_EVENT_RESOURCE_CREATED, SG_EVENT_FAILED};
    char *id;

    setup(&f);
    open_all(&f, NULL);
    id = add_sandbox(&f, "boom", 0, 0);
    sg_reconciler_kick(f.rec, id);
    run_until(&f, id, SG_PHASE_FAILED);
    /* Nothing more happens to a failed sandbox by itself. */
    for (int i = 0; i < 200; i++) {
        uv_run(&f.loop, UV_RUN_NOWAIT);
        usleep(500);
    }
    assert_events(&f, id, want, SG_N_ELEMENTS(want));
    close_all(&f);
    free(id);
    rm_rf(f.dir);
}
END_TEST

START_TEST(test_ttl_expiry)
{
    struct fixture f;
    static const int want[] = {
        SG_EVENT_ACCEPTED, SG_EVENT_ALLOCATION_STARTED,
        SG_EVENT_RESOURCE_CREATED, SG_EVENT_READY, SG_EVENT_EXPIRED,
        SG_EVENT_DELETED};
    char *id;

    setup(&f);
    open_all(&f, NULL);
    /* Expires 500 ms from now; nothing kicks it but the TTL scan. */
    id = add_sandbox(&f, NULL, 1, sg_now_ms() + 500);
    sg_reconciler_kick(f.rec, id);
    run_until(&f, id, SG_PHASE_READY);
    run_until(&f, id, SG_PHASE_DELETED);
    assert_events(&f, id, want, SG_N_ELEMENTS(want));
    close_all(&f);
    free(id);
    rm_rf(f.dir);
}
END_TEST

START_TEST(test_resume_pages_through_every_row)
{
    struct fixture f;
    char *ids[10];
    struct sg_reconciler_stats st;

    setup(&f);
    /* A store with ACCEPTED rows and no reconciler running. */
    {
        struct sg_error err = SG_ERROR_INIT;
        struct sg_store_config sc = {.backend = "sqlite", .path = f.db,
                                     .durability = "normal"};
        f.store = sg_store_open(&sc, &err);
        ck_assert_msg(f.store != NULL, "%s", err.message);
        for (size_t i = 0; i < SG_N_ELEMENTS(ids); i++)
            ids[i] = add_sandbox(&f, NULL, 0, 0);
        sg_store_close(f.store);
    }
    /* resume_page is 3: ten rows take four pages. */
    open_all(&f, NULL);
    for (size_t i = 0; i < SG_N_ELEMENTS(ids); i++)
        run_until(&f, ids[i], SG_PHASE_READY);
    sg_reconciler_get_stats(f.rec, &st);
    ck_assert(st.resumed);
    close_all(&f);
    for (size_t i = 0; i < SG_N_ELEMENTS(ids); i++)
        free(ids[i]);
    rm_rf(f.dir);
}
END_TEST

START_TEST(test_ready_sandbox_lost_across_restart)
{
    struct fixture f;
    char *id;

    setup(&f);
    open_all(&f, NULL);
    id = add_sandbox(&f, NULL, 0, 0);
    sg_reconciler_kick(f.rec, id);
    run_until(&f, id, SG_PHASE_READY);
    close_all(&f);
    /* The noop driver forgets everything when closed, as a backend that
       lost its objects would: the restarted reconciler must notice. */
    open_all(&f, NULL);
    run_until(&f, id, SG_PHASE_FAILED);
    close_all(&f);
    free(id);
    rm_rf(f.dir);
}
END_TEST

static void on_removed(void *opaque, enum sg_driver_result result,
                       const struct sg_driver_status *st, const char *message)
{
    (void)message;
    *(bool *)opaque = result == SG_DRIVER_OK &&
                      st->state == SG_DRIVER_STATE_GONE;
}

START_TEST(test_resync_finds_what_no_watch_reported)
{
    struct fixture f;
    struct sg_reconciler_stats st;
    static const int want[] = {SG_EVENT_ACCEPTED, SG_EVENT_ALLOCATION_STARTED,
                               SG_EVENT_RESOURCE_CREATED, SG_EVENT_READY,
                               SG_EVENT_FAILED};
    bool removed = false;
    char *id;

    setup(&f);
    f.resync_ms = 200;
    open_all(&f, NULL);
    id = add_sandbox(&f, NULL, 0, 0);
    sg_reconciler_kick(f.rec, id);
    run_until(&f, id, SG_PHASE_READY);
    /* The object goes away behind the reconciler's back; the noop driver
       reports a removal only to the remover, never through watch. */
    ck_assert_int_eq(sg_driver_remove(f.driver, id, "", 0, on_removed,
                                      &removed, NULL), 0);
    for (int i = 0; i < 100 && !removed; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    ck_assert(removed);
    run_until(&f, id, SG_PHASE_FAILED);
    assert_events(&f, id, want, SG_N_ELEMENTS(want));
    sg_reconciler_get_stats(f.rec, &st);
    ck_assert_uint_ge(st.resyncs, 1);
    close_all(&f);
    free(id);
    rm_rf(f.dir);
}
END_TEST

/* ---- pending reasons -------------------------------------------------- */

/* What the record of id shows: resource version, Ready condition, message. */
struct shown {
    uint64_t rv;
    enum sg_phase phase;
    int ready_status;
    char reason[64];
    char cond_message[256];
    char message[256];
    int64_t transition_ms;
};

static void shown_of(struct fixture *f, const char *id, struct shown *out)
{
    struct sg_sandbox_row *row = NULL;
    Sandgate__V1__Sandbox *sb;

    memset(out, 0, sizeof(*out));
    ck_assert_int_eq(sg_store_get_sandbox_copy(f->store, id, &row, NULL), 1);
    sb = sg_record_unpack(row, NULL);
    ck_assert_ptr_nonnull(sb);
    out->rv = row->resource_version;
    out->phase = row->phase;
    snprintf(out->message, sizeof(out->message), "%s",
             sb->status->message ? sb->status->message : "");
    for (size_t i = 0; i < sb->status->n_conditions; i++) {
        Sandgate__V1__Condition *c = sb->status->conditions[i];

        if (!STREQ(c->type, "Ready"))
            continue;
        out->ready_status = (int)c->status;
        snprintf(out->reason, sizeof(out->reason), "%s", c->reason);
        snprintf(out->cond_message, sizeof(out->cond_message), "%s",
                 c->message);
        if (c->last_transition_time)
            out->transition_ms = c->last_transition_time->seconds * 1000 +
                                 c->last_transition_time->nanos / 1000000;
    }
    sandgate__v1__sandbox__free_unpacked(sb, NULL);
    sg_sandbox_row_free(row);
}

/* Run the loop until the Ready condition of id has reason (~10 s). */
static void run_until_reason(struct fixture *f, const char *id,
                             const char *reason)
{
    struct shown sh;

    for (int i = 0; i < 10000; i++) {
        shown_of(f, id, &sh);
        if (STREQ(sh.reason, reason))
            return;
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    ck_abort_msg("sandbox %s shows reason '%s', want '%s'", id, sh.reason,
                 reason);
}

/* Run the loop until n more resync passes have completed. */
static void run_resyncs(struct fixture *f, uint64_t n)
{
    struct sg_reconciler_stats st;
    uint64_t want;

    sg_reconciler_get_stats(f->rec, &st);
    want = st.resyncs + n;
    for (int i = 0; i < 20000 && st.resyncs < want; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(500);
        sg_reconciler_get_stats(f->rec, &st);
    }
    ck_assert_uint_ge(st.resyncs, want);
}

#define STUCK_MESSAGE "0/3 nodes are available: 3 Insufficient cpu."

START_TEST(test_pending_reason_reaches_the_record_once)
{
    struct fixture f;
    static const int want[] = {SG_EVENT_ACCEPTED, SG_EVENT_ALLOCATION_STARTED,
                               SG_EVENT_RESOURCE_CREATED};
    struct sg_reconciler_stats st;
    struct shown first, later;
    uint64_t writes;
    char *id;

    setup(&f);
    f.resync_ms = 50;
    open_all(&f, NULL);
    id = add_sandbox_block(&f, "pending", STUCK_MESSAGE, 0, 0);
    sg_reconciler_kick(f.rec, id);
    run_until_reason(&f, id, "InjectedPending");
    shown_of(&f, id, &first);
    ck_assert_int_eq(first.phase, SG_PHASE_PROVISIONING);
    ck_assert_int_eq(first.ready_status,
                     SANDGATE__V1__CONDITION_STATUS__CONDITION_STATUS_UNKNOWN);
    ck_assert_str_eq(first.message, STUCK_MESSAGE);
    ck_assert_str_eq(first.cond_message, STUCK_MESSAGE);
    /* Folded into the write that records the creation: no extra event. */
    assert_events(&f, id, want, SG_N_ELEMENTS(want));
    sg_reconciler_get_stats(f.rec, &st);
    writes = st.writes;
    /* Each resync asks the driver again and hears the same: no write. */
    run_resyncs(&f, 3);
    shown_of(&f, id, &later);
    ck_assert_uint_eq(later.rv, first.rv);
    ck_assert_int_eq(later.phase, SG_PHASE_PROVISIONING);
    sg_reconciler_get_stats(f.rec, &st);
    ck_assert_uint_eq(st.writes, writes);
    assert_events(&f, id, want, SG_N_ELEMENTS(want));
    close_all(&f);
    free(id);
    rm_rf(f.dir);
}
END_TEST

/* Rewrite id's Ready reason and message as an older report would have. */
static void record_pending(struct fixture *f, const char *id,
                           const char *reason, const char *message)
{
    struct sg_sandbox_row *row = NULL, next;
    struct sg_event_row ev[SG_RECORD_MAX_EVENTS];
    size_t n_ev = 99;
    struct sg_record_change chg = {.phase = SG_PHASE_PROVISIONING,
                                   .pending_reason = reason,
                                   .pending_message = message};
    struct written w = {0};

    ck_assert_int_eq(sg_store_get_sandbox_copy(f->store, id, &row, NULL), 1);
    ck_assert_int_eq(sg_record_apply(row, &chg, &next, ev, &n_ev, NULL), 0);
    ck_assert_uint_eq(n_ev, 0);
    ck_assert_int_eq(sg_store_update_sandbox(f->store, &next,
                                             row->resource_version, ev, n_ev,
                                             on_written, &w, NULL), 0);
    wait_written(&w);
    sg_sandbox_row_clear(&next);
    sg_sandbox_row_free(row);
}

START_TEST(test_pending_change_is_written_without_an_event)
{
    struct fixture f;
    static const int want[] = {SG_EVENT_ACCEPTED, SG_EVENT_ALLOCATION_STARTED,
                               SG_EVENT_RESOURCE_CREATED};
    struct sg_reconciler_stats st;
    struct shown before, older, after;
    uint64_t writes;
    char *id;

    setup(&f);
    f.resync_ms = 50;
    open_all(&f, NULL);
    id = add_sandbox_block(&f, "pending", STUCK_MESSAGE, 0, 0);
    sg_reconciler_kick(f.rec, id);
    run_until_reason(&f, id, "InjectedPending");
    shown_of(&f, id, &before);
    run_resyncs(&f, 1);

    /* The record shows something else than the driver says: the next
       look writes the driver's reason and message, once, keeping the
       condition's transition time (its status did not change). */
    record_pending(&f, id, "Unschedulable", "old news");
    shown_of(&f, id, &older);
    ck_assert_str_eq(older.reason, "Unschedulable");
    ck_assert_str_eq(older.message, "old news");
    ck_assert_int_eq(older.transition_ms, before.transition_ms);
    sg_reconciler_get_stats(f.rec, &st);
    writes = st.writes;
    sg_reconciler_kick(f.rec, id);
    run_until_reason(&f, id, "InjectedPending");
    run_resyncs(&f, 2);
    shown_of(&f, id, &after);
    ck_assert_str_eq(after.message, STUCK_MESSAGE);
    ck_assert_int_eq(after.phase, SG_PHASE_PROVISIONING);
    ck_assert_int_eq(after.ready_status,
                     SANDGATE__V1__CONDITION_STATUS__CONDITION_STATUS_UNKNOWN);
    ck_assert_int_eq(after.transition_ms, before.transition_ms);
    ck_assert_uint_eq(after.rv, older.rv + 1);
    sg_reconciler_get_stats(f.rec, &st);
    ck_assert_uint_eq(st.writes, writes + 1);
    assert_events(&f, id, want, SG_N_ELEMENTS(want));

    /* Deleting a stuck sandbox still works. */
    request_delete(&f, id);
    run_until(&f, id, SG_PHASE_DELETED);
    close_all(&f);
    free(id);
    rm_rf(f.dir);
}
END_TEST

START_TEST(test_pending_with_an_empty_message_keeps_the_message)
{
    struct sg_sandbox_row *row = NULL, next;
    struct sg_event_row ev[SG_RECORD_MAX_EVENTS];
    size_t n_ev = 99;
    struct sg_record_change chg = {.phase = SG_PHASE_PROVISIONING,
                                   .pending_reason = "Pulling",
                                   .pending_message = ""};
    struct fixture f;
    struct written w = {0};
    struct shown sh;
    char *id;

    setup(&f);
    open_all(&f, "{\"ready_delay_ms\": 3600000}");
    id = add_sandbox(&f, NULL, 0, 0);
    sg_reconciler_kick(f.rec, id);
    run_until(&f, id, SG_PHASE_PROVISIONING);
    /* noop's PENDING "Created" with no message is what the record shows
       already: nothing was written for it. */
    shown_of(&f, id, &sh);
    ck_assert_str_eq(sh.reason, "Created");
    ck_assert_str_eq(sh.message, "backend object created");

    ck_assert_int_eq(sg_store_get_sandbox_copy(f.store, id, &row, NULL), 1);
    ck_assert_int_eq(sg_record_apply(row, &chg, &next, ev, &n_ev, NULL), 0);
    ck_assert_uint_eq(n_ev, 0);
    ck_assert_int_eq(sg_store_update_sandbox(f.store, &next,
                                             row->resource_version, ev, n_ev,
                                             on_written, &w, NULL), 0);
    wait_written(&w);
    sg_sandbox_row_clear(&next);
    sg_sandbox_row_free(row);
    shown_of(&f, id, &sh);
    ck_assert_str_eq(sh.reason, "Pulling");
    ck_assert_str_eq(sh.message, "backend object created");
    ck_assert_int_eq(sh.phase, SG_PHASE_PROVISIONING);
    close_all(&f);
    free(id);
    rm_rf(f.dir);
}
END_TEST

static Suite *reconciler_suite(void)
{
    Suite *s = suite_create("reconciler");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_create_to_ready_to_deleted);
    tcase_add_test(tc, test_driver_failure_fails_the_sandbox);
    tcase_add_test(tc, test_ttl_expiry);
    tcase_add_test(tc, test_resume_pages_through_every_row);
    tcase_add_test(tc, test_ready_sandbox_lost_across_restart);
    tcase_add_test(tc, test_resync_finds_what_no_watch_reported);
    tcase_add_test(tc, test_pending_reason_reaches_the_record_once);
    tcase_add_test(tc, test_pending_change_is_written_without_an_event);
    tcase_add_test(tc, test_pending_with_an_empty_message_keeps_the_message);
    tcase_add_test(tc, test_bindings_resolve_before_create);
    tcase_add_loop_test(tc, test_binding_failures_fail_before_create, 0,
                        (int)SG_N_ELEMENTS(bind_failures));
    tcase_add_test(tc, test_binding_deleted_after_create);
    suite_add_tcase(s, tc);
    return s;
}

SG_TEST_MAIN(reconciler_suite)
