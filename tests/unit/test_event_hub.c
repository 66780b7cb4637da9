/*
 * test_event_hub.c: the event hub with fake sinks (no gRPC): filters,
 * per-event authorization under a swapped policy, the bounded queue of a
 * stalled subscriber next to a healthy one, bookmarks, a lost event never
 * skipped, and replay from a real SQLite store joined to the live tail.
 *
 * A fake sink records what the hub sends (decoded) and, in auto mode, a
 * thread of its own completes each write as a transport would; otherwise
 * writes stay in flight, as for a consumer that stopped reading. Waits are
 * bounded (10 s) and assert outcomes, never durations.
 */
#include "internal.h"

#include "testutils.h"

#include "authz_rules.h"
#include "event_hub.h"
#include "store.h"

#include "sandgate_v1_event.pb-c.h"

#include <check.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_GOT 4096
#define WAIT_MS 10000

/* ---- a fake sink ---------------------------------------------------------- */

struct fake_sink {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sg_event_sub *sub;
    bool auto_complete;
    bool stop;
    pthread_t thread;
    bool busy;
    void (*rel)(void *arg);
    void *arg;
    uint64_t seqs[MAX_GOT];
    int types[MAX_GOT];
    char tenants[MAX_GOT][16];
    size_t n;
    bool ended;
    grpc_status_code code;
    char message[512];
    bool released;
};

static int fake_send(void *sink, const void *data, size_t len,
                     void (*release)(void *arg), void *arg)
{
    struct fake_sink *s = sink;
    Sandgate__V1__Event *ev = sandgate__v1__event__unpack(NULL, len, data);

    ck_assert_ptr_nonnull(ev);
    pthread_mutex_lock(&s->mu);
    ck_assert(!s->busy); /* one write at a time */
    ck_assert_uint_lt(s->n, MAX_GOT);
    s->seqs[s->n] = ev->seq;
    s->types[s->n] = (int)ev->type;
    snprintf(s->tenants[s->n], sizeof(s->tenants[0]), "%s", ev->tenant);
    s->n++;
    s->busy = true;
    s->rel = release;
    s->arg = arg;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    sandgate__v1__event__free_unpacked(ev, NULL);
    return 0;
}

static void fake_end(void *sink, grpc_status_code code, const char *message)
{
    struct fake_sink *s = sink;

    pthread_mutex_lock(&s->mu);
    ck_assert(!s->ended);
    s->ended = true;
    s->code = code;
    snprintf(s->message, sizeof(s->message), "%s", message);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void fake_release(void *sink)
{
    struct fake_sink *s = sink;

    pthread_mutex_lock(&s->mu);
    ck_assert(!s->released);
    s->released = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static const struct sg_event_sink_ops fake_ops = {
    .send = fake_send, .end = fake_end, .release = fake_release};

/* Complete the write in flight, if any (as the transport's completion). */
static bool complete_one(struct fake_sink *s)
{
    void (*rel)(void *) = NULL;
    void *arg = NULL;

    pthread_mutex_lock(&s->mu);
    if (s->busy) {
        rel = s->rel;
        arg = s->arg;
        s->busy = false;
    }
    pthread_mutex_unlock(&s->mu);
    if (!rel)
        return false;
    rel(arg);
    sg_event_sub_sent(s->sub, true);
    return true;
}

static void *completer(void *opaque)
{
    struct fake_sink *s = opaque;

    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        if (!s->busy) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        complete_one(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static struct timespec deadline_in(int ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

/* Wait (bounded) until the sink received n messages. */
static void wait_n(struct fake_sink *s, size_t n)
{
    struct timespec dl = deadline_in(WAIT_MS);

    pthread_mutex_lock(&s->mu);
    while (s->n < n && !s->ended)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) != 0)
            break;
    ck_assert_msg(s->n >= n, "got %zu messages, want %zu (ended %d: %s)",
                  s->n, n, s->ended, s->message);
    pthread_mutex_unlock(&s->mu);
}

static void wait_released(struct fake_sink *s)
{
    struct timespec dl = deadline_in(WAIT_MS);

    pthread_mutex_lock(&s->mu);
    while (!s->released)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) != 0)
            break;
    ck_assert_msg(s->released, "the hub never released the sink");
    pthread_mutex_unlock(&s->mu);
}

/* ---- fixtures ------------------------------------------------------------- */

static struct sg_policy *test_policy; /* what current_policy hands out */
static pthread_mutex_t policy_mu = PTHREAD_MUTEX_INITIALIZER;

static struct sg_policy *current_policy(void *opaque)
{
    struct sg_policy *p;

    (void)opaque;
    pthread_mutex_lock(&policy_mu);
    p = test_policy ? sg_policy_ref(test_policy) : NULL;
    pthread_mutex_unlock(&policy_mu);
    return p;
}

static struct sg_policy *load_policy(const char *alice_tenant,
                                     const char *alice_perm)
{
    char text[2048];
    struct sg_error err = SG_ERROR_INIT;
    struct sg_policy *p;

    snprintf(text, sizeof(text),
             "authentication:\n"
             "  static_tokens:\n"
             "    - {name: admin, sha256: %064d}\n"
             "    - {name: alice, sha256: %063d1}\n"
             "    - {name: bob, sha256: %063d2}\n"
             "roles:\n"
             "  all:\n"
             "    operations: [{permissions: [\"events.*\"], on: any}]\n"
             "  reader:\n"
             "    operations: [{permissions: [\"%s\"], on: tenant}]\n"
             "    tenants: [\"%s\"]\n"
             "    projects: [\"*\"]\n"
             "  own:\n"
             "    operations: [{permissions: [\"events.*\"], on: own}]\n"
             "bindings:\n"
             "  - {roles: [all], subjects: [{token: admin}]}\n"
             "  - {roles: [reader], subjects: [{token: alice}]}\n"
             "  - {roles: [own], subjects: [{token: bob}]}\n",
             0, 0, 0, alice_perm, alice_tenant);
    p = sg_policy_load_data("test policy", text, strlen(text), &err);
    ck_assert_msg(p != NULL, "%s", err.message);
    return p;
}

static void set_policy(struct sg_policy *p)
{
    pthread_mutex_lock(&policy_mu);
    sg_policy_unref(test_policy);
    test_policy = p;
    pthread_mutex_unlock(&policy_mu);
}

static struct sg_identity *admin_id;
static struct sg_identity *alice_id;
static struct sg_identity *bob_id;

static void setup(void)
{
    set_policy(load_policy("team-a", "events.*"));
    admin_id = sg_identity_new(SG_IDENTITY_TOKEN, "token:admin", "admin");
    alice_id = sg_identity_new(SG_IDENTITY_TOKEN, "token:alice", "alice");
    bob_id = sg_identity_new(SG_IDENTITY_TOKEN, "token:bob", "bob");
}

static void teardown(void)
{
    set_policy(NULL);
    sg_identity_unref(admin_id);
    sg_identity_unref(alice_id);
    sg_identity_unref(bob_id);
}

static struct sg_event_hub *hub_new(struct sg_store *store, size_t limit)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_event_hub_config cfg = {
        .store = store, .queue_limit = limit, .replay_page = 8,
        .current_policy = current_policy};
    struct sg_event_hub *hub = sg_event_hub_new(&cfg, &err);

    ck_assert_msg(hub != NULL, "%s", err.message);
    return hub;
}

static struct fake_sink *sink_new(bool auto_complete)
{
    struct fake_sink *s = calloc(1, sizeof(*s));

    ck_assert_ptr_nonnull(s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->auto_complete = auto_complete;
    return s;
}

/* Subscribe sink with cfg (identity default: admin). */
static void subscribe(struct sg_event_hub *hub, struct fake_sink *s,
                      struct sg_event_sub_config cfg)
{
    struct sg_error err = SG_ERROR_INIT;

    if (!cfg.identity)
        cfg.identity = admin_id;
    cfg.policy = test_policy;
    cfg.rule = &sg_authz_rule_watch_events;
    cfg.ops = &fake_ops;
    cfg.sink = s;
    s->sub = sg_event_sub_new(hub, &cfg);
    ck_assert_ptr_nonnull(s->sub);
    if (s->auto_complete)
        ck_assert_int_eq(pthread_create(&s->thread, NULL, completer, s), 0);
    ck_assert_msg(sg_event_hub_add(hub, s->sub, &err) == 0, "%s",
                  err.message);
}

/* After the hub stopped: stop the completer, drop what is in flight. */
static void sink_free(struct fake_sink *s)
{
    if (s->auto_complete) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    complete_one(s);
    sg_event_sub_free(s->sub);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* One event as the store would hand it over. */
static struct sg_event_row ev_row(uint64_t seq, const char *tenant,
                                  const char *ns, const char *id,
                                  enum sg_event_type type, const char *owner)
{
    struct sg_event_row ev = {
        .seq = seq, .time = 1700000000000, .type = type,
        .sandbox_id = (char *)id, .sandbox_name = (char *)"n",
        .namespace_name = (char *)ns, .tenant = (char *)tenant,
        .project = (char *)"p", .owner = (char *)owner,
        .request_id = (char *)"", .phase = SG_PHASE_READY,
        .reason = (char *)"R", .message = (char *)"m",
        .resource_version = seq};

    return ev;
}

static void feed(struct sg_event_hub *hub, const struct sg_event_row *evs,
                 size_t n)
{
    sg_event_hub_observe(hub, evs, n);
}

/* ---- live fan-out and filters --------------------------------------------- */

struct filter_case {
    const char *name;
    struct sg_event_filter f;
    bool match_none;
};

static const char *const tenants[] = {"team-a", "team-b", "team-c"};
static const char *const namespaces[] = {"ns-x", "ns-y"};
static const char *const ids[] = {"sb-1", "sb-2", "sb-3", "sb-4", "sb-5"};
static const enum sg_event_type kinds[] = {SG_EVENT_ACCEPTED, SG_EVENT_READY,
                                           SG_EVENT_DELETED};

static struct sg_event_row nth_event(uint64_t seq)
{
    return ev_row(seq, tenants[seq % 3], namespaces[seq % 2], ids[seq % 5],
                  kinds[seq % 3 == 0 ? 0 : (seq % 7) % 3], "token:bob");
}

static bool row_matches(const struct sg_event_row *ev,
                        const struct filter_case *c)
{
    if (c->match_none)
        return false;
    if (c->f.types && !(c->f.types & (1u << ev->type)))
        return false;
    if (c->f.tenant && STRNEQ(c->f.tenant, ev->tenant))
        return false;
    if (c->f.namespace_name && STRNEQ(c->f.namespace_name, ev->namespace_name))
        return false;
    if (c->f.sandbox_id && STRNEQ(c->f.sandbox_id, ev->sandbox_id))
        return false;
    return true;
}

START_TEST(test_live_filters)
{
    static const struct filter_case cases[] = {
        {"all", {0}, false},
        {"tenant", {.tenant = "team-b"}, false},
        {"namespace", {.namespace_name = "ns-y"}, false},
        {"sandbox", {.sandbox_id = "sb-3"}, false},
        {"types", {.types = 1u << SG_EVENT_READY | 1u << SG_EVENT_DELETED},
         false},
        {"combined", {.tenant = "team-a", .namespace_name = "ns-x",
                      .types = 1u << SG_EVENT_ACCEPTED}, false},
        {"none", {0}, true},
    };
    struct sg_event_hub *hub = hub_new(NULL, 64);
    struct fake_sink *sinks[SG_N_ELEMENTS(cases)];
    struct sg_event_row evs[60];

    for (size_t i = 0; i < SG_N_ELEMENTS(cases); i++) {
        struct sg_event_sub_config cfg = {.filter = cases[i].f,
                                          .match_none = cases[i].match_none};
        sinks[i] = sink_new(true);
        subscribe(hub, sinks[i], cfg);
    }
    for (uint64_t s = 1; s <= 60; s++)
        evs[s - 1] = nth_event(s);
    /* In batches of various sizes, as commits hand them over. */
    feed(hub, evs, 1);
    feed(hub, evs + 1, 9);
    feed(hub, evs + 10, 25);
    feed(hub, evs + 35, 25);
    wait_n(sinks[0], 60);
    for (size_t i = 0; i < SG_N_ELEMENTS(cases); i++) {
        uint64_t want[60];
        size_t n = 0;

        for (size_t k = 0; k < 60; k++)
            if (row_matches(&evs[k], &cases[i]))
                want[n++] = evs[k].seq;
        wait_n(sinks[i], n);
        /* Every sub saw the same batches: nothing more is on its way. */
        ck_assert_msg(sinks[i]->n == n, "%s: %zu, want %zu", cases[i].name,
                      sinks[i]->n, n);
        for (size_t k = 0; k < n; k++)
            ck_assert_msg(sinks[i]->seqs[k] == want[k], "%s: [%zu] %llu != "
                          "%llu", cases[i].name, k,
                          (unsigned long long)sinks[i]->seqs[k],
                          (unsigned long long)want[k]);
        if (!cases[i].match_none && !cases[i].f.tenant &&
            !cases[i].f.namespace_name && !cases[i].f.sandbox_id &&
            !cases[i].f.types)
            ck_assert_uint_eq(n, 60);
    }
    ck_assert_uint_gt(sinks[5]->n, 0);
    sg_event_hub_stop(hub);
    for (size_t i = 0; i < SG_N_ELEMENTS(cases); i++) {
        ck_assert(sinks[i]->ended && sinks[i]->released);
        ck_assert_int_eq(sinks[i]->code, GRPC_STATUS_UNAVAILABLE);
        sink_free(sinks[i]);
    }
    sg_event_hub_free(hub);
}
END_TEST

/* ---- a stalled subscriber ------------------------------------------------- */

START_TEST(test_stalled_subscriber_ends_alone)
{
    struct sg_event_hub *hub = hub_new(NULL, 16);
    struct fake_sink *stalled = sink_new(false);
    struct fake_sink *healthy = sink_new(true);
    struct sg_event_sub_config cfg = {0};
    struct sg_event_row evs[200];
    struct sg_event_hub_stats st;
    unsigned long long resume = 0;
    const char *p;

    for (uint64_t s = 1; s <= 200; s++)
        evs[s - 1] = ev_row(s, "t", "n", "sb-1", SG_EVENT_READY, "o");
    /* History starts at 1; both join after it. */
    feed(hub, evs, 1);
    subscribe(hub, stalled, cfg);
    subscribe(hub, healthy, cfg);
    /* Let the stalled one have its first two messages written. */
    feed(hub, evs + 1, 2);
    wait_n(stalled, 1);
    ck_assert(complete_one(stalled));
    wait_n(stalled, 2);
    wait_n(healthy, 2);
    /* Batches within the queue, each drained by the healthy one before the
       next: only the stalled one falls behind. */
    for (size_t i = 3; i < 200; i += 8) {
        size_t n = i + 8 <= 200 ? 8 : 200 - i;

        feed(hub, evs + i, n);
        wait_n(healthy, i + n - 1);
    }
    wait_released(stalled);
    ck_assert(stalled->ended);
    ck_assert_int_eq(stalled->code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    p = strstr(stalled->message, "resume with since_seq ");
    ck_assert_msg(p != NULL, "%s", stalled->message);
    resume = strtoull(p + strlen("resume with since_seq "), NULL, 10);
    /* 2 was written, 3 is the one in flight: resuming after 2 is exact. */
    ck_assert_uint_eq(resume, 2);
    ck_assert_uint_eq(stalled->n, 2);
    for (size_t k = 0; k < 199; k++)
        ck_assert_uint_eq(healthy->seqs[k], k + 2);
    ck_assert(!healthy->ended);
    sg_event_hub_get_stats(hub, &st);
    ck_assert_uint_eq(st.overflows, 1);
    ck_assert_uint_eq(st.subscribers, 1);
    ck_assert_uint_eq(st.published, 200);
    sg_event_hub_stop(hub);
    sink_free(stalled);
    sink_free(healthy);
    sg_event_hub_free(hub);
}
END_TEST

/* ---- authorization under the policy in force ------------------------------ */

static size_t count_tenant(const struct fake_sink *s, size_t from,
                           const char *tenant)
{
    size_t n = 0;

    for (size_t i = from; i < s->n; i++)
        n += STREQ(s->tenants[i], tenant);
    return n;
}

START_TEST(test_authorization_follows_policy)
{
    struct sg_event_hub *hub = hub_new(NULL, 64);
    struct fake_sink *alice = sink_new(true);
    struct fake_sink *bob = sink_new(true);
    struct fake_sink *admin = sink_new(true);
    struct sg_event_sub_config a = {.identity = alice_id};
    struct sg_event_sub_config b = {.identity = bob_id};
    struct sg_event_sub_config all = {0};
    struct sg_event_row evs[12];
    size_t mark;

    subscribe(hub, alice, a);
    subscribe(hub, bob, b);
    subscribe(hub, admin, all);
    for (uint64_t s = 1; s <= 12; s++)
        evs[s - 1] = ev_row(s, s % 2 ? "team-a" : "team-b", "n", "sb",
                            SG_EVENT_READY, s % 3 ? "token:carol"
                                                  : "token:bob");
    feed(hub, evs, 6);
    wait_n(admin, 6);
    wait_n(alice, 3);
    wait_n(bob, 2);
    ck_assert_uint_eq(count_tenant(alice, 0, "team-a"), alice->n);
    ck_assert_uint_eq(bob->seqs[0], 3);
    ck_assert_uint_eq(bob->seqs[1], 6);

    /* A reload: alice now reads team-b, on the stream she has open. */
    set_policy(load_policy("team-b", "events.*"));
    mark = alice->n;
    feed(hub, evs + 6, 4);
    wait_n(admin, 10);
    wait_n(alice, mark + 2);
    ck_assert_uint_eq(alice->n, mark + 2);
    ck_assert_uint_eq(count_tenant(alice, mark, "team-b"), 2);

    /* Her permission goes: the stream ends at the next event. */
    set_policy(load_policy("team-b", "sandboxes.get"));
    feed(hub, evs + 10, 2);
    wait_n(admin, 12);
    wait_released(alice);
    ck_assert_int_eq(alice->code, GRPC_STATUS_PERMISSION_DENIED);
    ck_assert_ptr_nonnull(strstr(alice->message, "events.watch"));
    ck_assert_uint_eq(alice->n, mark + 2);
    wait_n(bob, 4);
    ck_assert_uint_eq(bob->seqs[3], 12);
    sg_event_hub_stop(hub);
    sink_free(alice);
    sink_free(bob);
    sink_free(admin);
    sg_event_hub_free(hub);
}
END_TEST

/* ---- bookmarks -------------------------------------------------------------- */

START_TEST(test_bookmark_carries_the_position)
{
    struct sg_event_hub *hub = hub_new(NULL, 64);
    struct fake_sink *s = sink_new(true);
    struct sg_event_sub_config cfg = {.filter = {.sandbox_id = "sb-none"},
                                      .bookmark_interval_s = 1};
    struct sg_event_row evs[5];

    subscribe(hub, s, cfg);
    for (uint64_t k = 1; k <= 5; k++)
        evs[k - 1] = ev_row(k, "t", "n", "sb-1", SG_EVENT_READY, "o");
    feed(hub, evs, 5);
    wait_n(s, 1);
    ck_assert_int_eq(s->types[0], SG_EVENT_BOOKMARK);
    /* Nothing matched, yet the position moved: the bookmark says so. */
    ck_assert_uint_eq(s->seqs[0], 5);
    sg_event_hub_stop(hub);
    for (size_t i = 0; i < s->n; i++)
        ck_assert_int_eq(s->types[i], SG_EVENT_BOOKMARK);
    sink_free(s);
    sg_event_hub_free(hub);
}
END_TEST

/* ---- a lost event is never skipped ---------------------------------------- */

START_TEST(test_gap_sends_back_to_history)
{
    struct sg_event_hub *hub = hub_new(NULL, 64);
    struct fake_sink *s = sink_new(true);
    struct sg_event_sub_config cfg = {0};
    struct sg_event_row evs[5];

    subscribe(hub, s, cfg);
    for (uint64_t k = 1; k <= 5; k++)
        evs[k - 1] = ev_row(k, "t", "n", "sb-1", SG_EVENT_READY, "o");
    feed(hub, evs, 2);
    wait_n(s, 2);
    /* 3 and 4 never reach the hub (as when they could not be allocated):
       live streams go back to the store, which this hub has not. */
    feed(hub, evs + 4, 1);
    wait_released(s);
    ck_assert_int_eq(s->code, GRPC_STATUS_UNAVAILABLE);
    ck_assert_uint_eq(s->n, 2);
    sg_event_hub_stop(hub);
    sink_free(s);
    sg_event_hub_free(hub);
}
END_TEST

/* ---- adds, cancels, limits ------------------------------------------------ */

START_TEST(test_cancel_and_limit)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_event_hub_config hc = {.max_streams = 1,
                                     .current_policy = current_policy};
    struct sg_event_hub *hub = sg_event_hub_new(&hc, &err);
    struct fake_sink *s1 = sink_new(true);
    struct fake_sink *s2 = sink_new(false);
    struct sg_event_sub_config cfg = {.identity = admin_id,
                                      .policy = test_policy,
                                      .rule = &sg_authz_rule_watch_events,
                                      .ops = &fake_ops};
    struct sg_event_hub_stats st;

    ck_assert_ptr_nonnull(hub);
    subscribe(hub, s1, (struct sg_event_sub_config){0});
    cfg.sink = s2;
    s2->sub = sg_event_sub_new(hub, &cfg);
    ck_assert_int_eq(sg_event_hub_add(hub, s2->sub, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_RESOURCE_EXHAUSTED);
    sg_error_reset(&err);
    /* A cancel of a sub never added does nothing. */
    sg_event_sub_cancel(s2->sub);
    sg_event_sub_cancel(s1->sub);
    sg_event_sub_cancel(s1->sub);
    wait_released(s1);
    ck_assert(!s1->ended); /* the client went: no status to send */
    sg_event_hub_get_stats(hub, &st);
    ck_assert_uint_eq(st.subscribers, 0);
    ck_assert_int_eq(sg_event_hub_add(hub, s2->sub, &err), 0);
    sg_event_hub_stop(hub);
    wait_released(s2);
    /* Stopped: nothing more is accepted. */
    ck_assert_int_eq(sg_event_hub_add(hub, s1->sub, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_UNAVAILABLE);
    sg_error_reset(&err);
    sink_free(s1);
    sink_free(s2);
    sg_event_hub_free(hub);
}
END_TEST

/* ---- replay from the store ------------------------------------------------ */

static char base_dir[64];

static void base_setup(void)
{
    snprintf(base_dir, sizeof(base_dir), "/tmp/sg-test-hub-XXXXXX");
    if (!mkdtemp(base_dir))
        abort();
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void base_teardown(void)
{
    nftw(base_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct sg_store *store_new(uint64_t retain)
{
    char dir[128];
    char path[160];
    struct sg_error err = SG_ERROR_INIT;
    struct sg_store_config cfg = {.durability = "normal",
                                  .event_retention_count = retain};
    struct sg_store *store;

    snprintf(dir, sizeof(dir), "%s/XXXXXX", base_dir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/store.db", dir);
    cfg.path = path;
    store = sg_store_open(&cfg, &err);
    ck_assert_msg(store != NULL, "%s", err.message);
    return store;
}

static uint8_t record[] = {0x0a, 0x01, 0x78};

/* Create n sandboxes (one event each) and wait until all committed. */
static void write_events(struct sg_store *store, size_t n, const char *tenant)
{
    static unsigned next_id;
    struct sg_error err = SG_ERROR_INIT;
    uint64_t oldest, newest, want;

    ck_assert_int_eq(sg_store_event_bounds(store, &oldest, &newest, &err), 0);
    want = newest + n;
    for (size_t i = 0; i < n; i++) {
        char id[32];
        struct sg_sandbox_row row = {
            .id = id, .name = (char *)"n", .tenant = (char *)tenant,
            .project = (char *)"p", .owner = (char *)"o",
            .request_id = (char *)"", .request_hash = (char *)"h",
            .namespace_name = (char *)"ns", .phase = SG_PHASE_ACCEPTED,
            .record = record, .record_len = sizeof(record)};
        struct sg_event_row ev = {
            .type = SG_EVENT_ACCEPTED, .sandbox_id = id,
            .sandbox_name = (char *)"n", .namespace_name = (char *)"ns",
            .tenant = (char *)tenant, .project = (char *)"p",
            .owner = (char *)"o", .request_id = (char *)"",
            .phase = SG_PHASE_ACCEPTED, .reason = (char *)"Accepted",
            .message = (char *)"m"};

        snprintf(id, sizeof(id), "sb-%u-%u", (unsigned)getpid(), next_id++);
        ck_assert_msg(sg_store_create_sandbox(store, &row, &ev, NULL, NULL,
                                              &err) == 0, "%s", err.message);
    }
    for (int tries = 0; tries < WAIT_MS / 10; tries++) {
        ck_assert_int_eq(sg_store_event_bounds(store, &oldest, &newest, &err),
                         0);
        if (newest >= want)
            return;
        usleep(10000);
    }
    ck_abort_msg("events not committed");
}

struct writer_arg {
    struct sg_store *store;
    size_t n;
};

static void *writer(void *opaque)
{
    struct writer_arg *w = opaque;

    for (size_t i = 0; i < w->n; i += 5)
        write_events(w->store, 5, "t");
    return NULL;
}

START_TEST(test_replay_joins_live)
{
    struct sg_store *store = store_new(0);
    struct sg_event_hub *hub = NULL;
    struct fake_sink *a = sink_new(true);
    struct fake_sink *b = sink_new(true);
    struct fake_sink *c = sink_new(true);
    struct sg_event_sub_config from10 = {.since_seq = 10};
    struct sg_event_sub_config from25 = {.since_seq = 25};
    struct sg_event_sub_config other = {.since_seq = 5,
                                        .filter = {.tenant = "other"}};
    struct writer_arg wa;
    pthread_t th;

    write_events(store, 40, "t");
    /* A queue smaller than the history: replay is paced by it. */
    hub = hub_new(store, 32);
    subscribe(hub, a, from10);
    wait_n(a, 30);
    /* Subscribing while writes go on: history then live, exactly once. */
    wa.store = store;
    wa.n = 300;
    ck_assert_int_eq(pthread_create(&th, NULL, writer, &wa), 0);
    subscribe(hub, b, from25);
    subscribe(hub, c, other);
    pthread_join(th, NULL);
    write_events(store, 5, "other");
    wait_n(a, 335);
    wait_n(b, 320);
    wait_n(c, 5);
    for (size_t k = 0; k < a->n; k++)
        ck_assert_uint_eq(a->seqs[k], k + 11);
    ck_assert_uint_eq(a->n, 335);
    for (size_t k = 0; k < b->n; k++)
        ck_assert_uint_eq(b->seqs[k], k + 26);
    ck_assert_uint_eq(b->n, 320);
    for (size_t k = 0; k < c->n; k++)
        ck_assert_uint_eq(c->seqs[k], 341 + k);
    sg_event_hub_stop(hub);
    sg_store_close(store);
    sink_free(a);
    sink_free(b);
    sink_free(c);
    sg_event_hub_free(hub);
}
END_TEST

START_TEST(test_check_position)
{
    struct sg_store *store = store_new(10);
    struct sg_error err = SG_ERROR_INIT;
    uint64_t oldest = 0, newest = 0;
    char want[256];

    /* Separate commits, so that retention runs (every 32 commits). */
    for (int i = 0; i < 40; i++)
        write_events(store, 1, "t");
    ck_assert_int_eq(sg_event_check_position(store, "since_seq", 0, &oldest,
                                             &newest, &err), 0);
    ck_assert_uint_eq(newest, 40);
    ck_assert_uint_gt(oldest, 2);
    ck_assert_int_eq(sg_event_check_position(store, "since_seq", oldest - 1,
                                             NULL, NULL, &err), 0);
    ck_assert_int_eq(sg_event_check_position(store, "since_seq", newest, NULL,
                                             NULL, &err), 0);
    ck_assert_int_eq(sg_event_check_position(store, "since_seq", 1, NULL,
                                             NULL, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_OUT_OF_RANGE);
    snprintf(want, sizeof(want),
             "since_seq 1 is older than the retained events; the oldest "
             "available is %llu (resume with since_seq %llu)",
             (unsigned long long)oldest, (unsigned long long)oldest - 1);
    ck_assert_str_eq(err.message, want);
    sg_error_reset(&err);
    ck_assert_int_eq(sg_event_check_position(store, "since_seq", newest + 1,
                                             NULL, NULL, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(err.message, "ahead of the newest event"));
    sg_error_reset(&err);
    sg_store_close(store);
}
END_TEST

static Suite *hub_suite(void)
{
    Suite *s = suite_create("event_hub");
    TCase *live = tcase_create("live");
    TCase *store = tcase_create("store");

    tcase_add_checked_fixture(live, setup, teardown);
    tcase_set_timeout(live, 60);
    tcase_add_test(live, test_live_filters);
    tcase_add_test(live, test_stalled_subscriber_ends_alone);
    tcase_add_test(live, test_authorization_follows_policy);
    tcase_add_test(live, test_bookmark_carries_the_position);
    tcase_add_test(live, test_gap_sends_back_to_history);
    tcase_add_test(live, test_cancel_and_limit);
    suite_add_tcase(s, live);

    tcase_add_unchecked_fixture(store, base_setup, base_teardown);
    tcase_add_checked_fixture(store, setup, teardown);
    tcase_set_timeout(store, 120);
    tcase_add_test(store, test_replay_joins_live);
    tcase_add_test(store, test_check_position);
    suite_add_tcase(s, store);
    return s;
}

SG_TEST_MAIN(hub_suite)
