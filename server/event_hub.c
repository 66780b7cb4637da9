/*
 * event_hub.c: fan-out of committed events to WatchEvents streams (see
 * event_hub.h for the model).
 *
 * Locks: hub->mu guards what other threads hand the hub thread (committed
 * events, adds and cancels, replay wake-ups) and the released flag of each
 * subscriber; sub->mu guards a subscriber's queue and its send state,
 * which the hub thread fills and completion-queue threads drain. The
 * order is sub->mu before the sink's own lock; hub->mu is never held with
 * sub->mu. Everything else about a subscriber (state, cursor, policy) is
 * the hub thread's alone.
 */
#include "internal.h"

#include "event_hub.h"

#include "authz_call.h"
#include "log.h"
#include "sandbox_record.h"

#include "sandgate_v1_event.pb-c.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

SG_LOG_INIT("server.events");

#define DEFAULT_QUEUE_LIMIT 4096
#define DEFAULT_REPLAY_PAGE 256
#define DEFAULT_REPLAY_SCAN 4096
/* Bookmarks are due at most this late. */
#define BOOKMARK_TICK_MS 250
/* Replay reads in one turn before live events get the thread back. */
#define REPLAY_BUDGET_MS 5
/* First queue allocation; queues grow by doubling up to the limit and are
   freed when they empty, so an idle stream holds none. */
#define RING_MIN 16
/* Reads in a row that find nothing below the fan-out position before a
   replay gives up (a snapshot that does not show a commit yet). */
#define NO_PROGRESS_MAX 1000

/* One event as streams send it: packed once, shared by reference. */
struct hub_event {
    atomic_uint refs;
    struct hub_event *next; /* incoming list, before fan-out */
    uint64_t seq;
    int type;
    /* What filters and authorization read; point into mem. */
    const char *sandbox_id;
    const char *tenant;
    const char *namespace_name;
    const char *project;
    const char *owner;
    size_t len;
    uint8_t *wire;
    char mem[];
};

enum sub_state {
    SUB_NEW = 0,
    SUB_REPLAY,
    SUB_LIVE,
};

struct sg_event_sub {
    struct sg_event_hub *hub;
    /* Set by sg_event_sub_new, then read-only. */
    uint64_t since;
    const char *tenant; /* NULL: any; point into strs */
    const char *namespace_name;
    const char *sandbox_id;
    uint32_t types;
    bool match_none;
    int64_t bookmark_ms;
    struct sg_identity *identity;
    const struct sg_authz_rule *rule;
    const struct sg_event_sink_ops *ops;
    void *sink;

    /* hub->mu */
    struct sg_event_sub *pend_next;
    struct sg_event_sub *run_next;
    bool pend_queued;
    bool run_queued;
    bool added;
    bool want_cancel;
    bool released;

    /* The hub thread's (and sub_new's before the add). */
    struct sg_event_sub *prev;
    struct sg_event_sub *next;
    enum sub_state state;
    uint64_t cursor; /* every event up to here was queued or skipped */
    struct sg_policy *policy;
    enum sg_reach reach;
    int64_t last_send_ms;
    unsigned no_progress;

    /* mu */
    pthread_mutex_t mu;
    struct hub_event **ring;
    uint32_t cap;
    uint32_t head;
    uint32_t count;
    bool in_flight;
    bool inflight_bookmark;
    bool broken; /* the stream is gone or was ended: send nothing more */
    bool replay_waiting; /* replay paused until the queue drains */
    uint64_t inflight_seq;

    char strs[];
};

struct sg_event_hub {
    /* Read-only after new. */
    struct sg_store *store;
    size_t queue_limit;
    size_t max_streams;
    size_t replay_page;
    size_t replay_scan;
    struct sg_policy *(*current_policy)(void *opaque);
    void *policy_opaque;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* mu */
    struct hub_event *in_head;
    struct hub_event *in_tail;
    uint64_t committed; /* last seq handed over by the observer */
    struct sg_event_sub *pend_head;
    struct sg_event_sub *pend_tail;
    struct sg_event_sub *run_head;
    struct sg_event_sub *run_tail;
    size_t n_subs;
    bool stopping;

    /* The hub thread's. */
    struct sg_event_sub *subs;
    uint64_t published; /* last seq fanned out */
    struct sg_policy *round_policy;
    size_t n_bookmark_subs;
    int64_t next_tick_ms;
    struct hub_event *bookmark; /* the last one made, shared */

    atomic_uint_least64_t published_stat;
    atomic_size_t replaying_stat;
    atomic_uint_least64_t overflows_stat;
};

/* ---- time --------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- events ------------------------------------------------------------- */

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* The message for row; strings are borrowed from it. */
static void event_message(const struct sg_event_row *row,
                          Sandgate__V1__Event *m,
                          Google__Protobuf__Timestamp *ts)
{
    sandgate__v1__event__init(m);
    sg_ms_to_timestamp(row->time, ts);
    m->seq = row->seq;
    m->time = ts;
    m->type = (Sandgate__V1__EventType)row->type;
    m->sandbox_id = (char *)nz(row->sandbox_id);
    m->sandbox_name = (char *)nz(row->sandbox_name);
    m->namespace_ = (char *)nz(row->namespace_name);
    m->tenant = (char *)nz(row->tenant);
    m->project = (char *)nz(row->project);
    m->owner = (char *)nz(row->owner);
    m->request_id = (char *)nz(row->request_id);
    m->phase = (Sandgate__V1__SandboxPhase)row->phase;
    m->reason = (char *)nz(row->reason);
    m->message = (char *)nz(row->message);
    m->resource_version = row->resource_version;
}

int sg_event_pack(const struct sg_event_row *ev, struct sg_buf *out)
{
    Sandgate__V1__Event m;
    Google__Protobuf__Timestamp ts;
    size_t len;
    uint8_t *tmp;

    event_message(ev, &m, &ts);
    len = protobuf_c_message_get_packed_size(&m.base);
    tmp = malloc(len ? len : 1);
    if (!tmp)
        return -1;
    protobuf_c_message_pack(&m.base, tmp);
    sg_buf_add(out, tmp, len);
    free(tmp);
    return sg_buf_error(out);
}

/* One allocation: the struct, the five strings, the packed message. */
static struct hub_event *event_new(const struct sg_event_row *row)
{
    Sandgate__V1__Event m;
    Google__Protobuf__Timestamp ts;
    const char *src[5] = {nz(row->sandbox_id), nz(row->tenant),
                          nz(row->namespace_name), nz(row->project),
                          nz(row->owner)};
    size_t lens[5];
    size_t total = 0;
    size_t wire_len;
    struct hub_event *ev;
    char *p;

    event_message(row, &m, &ts);
    wire_len = protobuf_c_message_get_packed_size(&m.base);
    for (size_t i = 0; i < 5; i++) {
        lens[i] = strlen(src[i]) + 1;
        total += lens[i];
    }
    ev = malloc(sizeof(*ev) + total + wire_len);
    if (!ev)
        return NULL;
    atomic_init(&ev->refs, 1);
    ev->next = NULL;
    ev->seq = row->seq;
    ev->type = (int)row->type;
    p = ev->mem;
    for (size_t i = 0; i < 5; i++) {
        memcpy(p, src[i], lens[i]);
        src[i] = p;
        p += lens[i];
    }
    ev->sandbox_id = src[0];
    ev->tenant = src[1];
    ev->namespace_name = src[2];
    ev->project = src[3];
    ev->owner = src[4];
    ev->wire = (uint8_t *)p;
    ev->len = protobuf_c_message_pack(&m.base, ev->wire);
    return ev;
}

/* A BOOKMARK: only seq and time. */
static struct hub_event *bookmark_new(uint64_t seq)
{
    struct sg_event_row row;

    memset(&row, 0, sizeof(row));
    row.seq = seq;
    row.time = sg_now_ms();
    row.type = (enum sg_event_type)SG_EVENT_BOOKMARK;
    return event_new(&row);
}

static void event_ref(struct hub_event *ev)
{
    atomic_fetch_add_explicit(&ev->refs, 1, memory_order_relaxed);
}

static void event_unref(struct hub_event *ev)
{
    if (ev &&
        atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel) == 1)
        free(ev);
}

/* The sink's release of a sent message (any thread). */
static void event_release(void *arg)
{
    event_unref(arg);
}

static void event_list_free(struct hub_event *ev)
{
    while (ev) {
        struct hub_event *next = ev->next;
        event_unref(ev);
        ev = next;
    }
}

/* ---- a subscriber's queue (sub->mu) -------------------------------------- */

static void ring_clear_locked(struct sg_event_sub *sub)
{
    for (uint32_t i = 0; i < sub->count; i++)
        event_unref(sub->ring[(sub->head + i) % sub->cap]);
    free(sub->ring);
    sub->ring = NULL;
    sub->cap = sub->head = sub->count = 0;
}

/* Append ev (the caller's reference moves in). False when the queue is at
   its limit or cannot grow. */
static bool ring_push_locked(struct sg_event_sub *sub, size_t limit,
                             struct hub_event *ev)
{
    if (sub->count >= limit)
        return false;
    if (sub->count == sub->cap) {
        size_t cap = sub->cap ? (size_t)sub->cap * 2 : RING_MIN;
        struct hub_event **ring;

        if (cap > limit)
            cap = limit;
        ring = malloc(cap * sizeof(*ring));
        if (!ring)
            return false;
        for (uint32_t i = 0; i < sub->count; i++)
            ring[i] = sub->ring[(sub->head + i) % sub->cap];
        free(sub->ring);
        sub->ring = ring;
        sub->cap = (uint32_t)cap;
        sub->head = 0;
    }
    sub->ring[(sub->head + sub->count) % sub->cap] = ev;
    sub->count++;
    return true;
}

static struct hub_event *ring_pop_locked(struct sg_event_sub *sub)
{
    struct hub_event *ev = sub->ring[sub->head];

    sub->head = (sub->head + 1) % sub->cap;
    sub->count--;
    if (sub->count == 0) {
        /* An idle stream keeps no queue. */
        free(sub->ring);
        sub->ring = NULL;
        sub->cap = sub->head = 0;
    }
    return ev;
}

/* Start writing ev (the caller's reference moves to the sink, which
   releases it). */
static void send_locked(struct sg_event_sub *sub, struct hub_event *ev)
{
    sub->in_flight = true;
    sub->inflight_seq = ev->seq;
    sub->inflight_bookmark = ev->type == SG_EVENT_BOOKMARK;
    if (sub->ops->send(sub->sink, ev->wire, ev->len, event_release, ev) < 0) {
        sub->in_flight = false;
        sub->broken = true;
        ring_clear_locked(sub);
    }
}

/* Hand the next queued message to the sink unless one is being written. */
static void pump_locked(struct sg_event_sub *sub)
{
    while (!sub->in_flight && !sub->broken && sub->count)
        send_locked(sub, ring_pop_locked(sub));
}

/* Send ev at once when nothing is being written (the common case of a
   stream that keeps up: no queue is allocated), else queue it. False when
   the queue is full. Takes over the caller's reference either way. */
static bool enqueue_locked(struct sg_event_sub *sub, size_t limit,
                           struct hub_event *ev)
{
    if (sub->broken) {
        event_unref(ev);
        return true;
    }
    if (!sub->in_flight && !sub->count) {
        send_locked(sub, ev);
        return true;
    }
    if (ring_push_locked(sub, limit, ev))
        return true;
    event_unref(ev);
    return false;
}

/*
 * Where a subscriber ended now could resume without a gap: before the
 * first message not yet written (everything before it was). A bookmark
 * there says all up to its seq was queued before it, so that much is
 * written.
 */
static uint64_t resume_position_locked(const struct sg_event_sub *sub)
{
    const struct hub_event *ev;

    if (sub->in_flight)
        return sub->inflight_bookmark ? sub->inflight_seq
                                      : sub->inflight_seq - 1;
    if (sub->count) {
        ev = sub->ring[sub->head];
        return ev->type == SG_EVENT_BOOKMARK ? ev->seq : ev->seq - 1;
    }
    return sub->cursor;
}

/* ---- lists under hub->mu ------------------------------------------------- */

static void pend_push_locked(struct sg_event_hub *hub,
                             struct sg_event_sub *sub)
{
    if (sub->pend_queued)
        return;
    sub->pend_queued = true;
    sub->pend_next = NULL;
    if (hub->pend_tail)
        hub->pend_tail->pend_next = sub;
    else
        hub->pend_head = sub;
    hub->pend_tail = sub;
}

static void run_push_locked(struct sg_event_hub *hub, struct sg_event_sub *sub)
{
    if (sub->run_queued || sub->released)
        return;
    sub->run_queued = true;
    sub->run_next = NULL;
    if (hub->run_tail)
        hub->run_tail->run_next = sub;
    else
        hub->run_head = sub;
    hub->run_tail = sub;
}

/* Unlink sub from a singly linked list (rare: a release while queued). */
static void unlink_locked(struct sg_event_sub **head, struct sg_event_sub **tail,
                          struct sg_event_sub *sub, bool run)
{
    struct sg_event_sub *prev = NULL;

    for (struct sg_event_sub *s = *head; s;
         prev = s, s = run ? s->run_next : s->pend_next) {
        if (s != sub)
            continue;
        struct sg_event_sub *next = run ? s->run_next : s->pend_next;
        if (prev) {
            if (run)
                prev->run_next = next;
            else
                prev->pend_next = next;
        } else {
            *head = next;
        }
        if (*tail == sub)
            *tail = prev;
        return;
    }
}

/* ---- subscribers --------------------------------------------------------- */

static char *copy_opt(char **p, const char *s)
{
    char *out;
    size_t n;

    if (!s || !*s)
        return NULL;
    n = strlen(s) + 1;
    out = *p;
    memcpy(out, s, n);
    *p += n;
    return out;
}

struct sg_event_sub *sg_event_sub_new(struct sg_event_hub *hub,
                                      const struct sg_event_sub_config *cfg)
{
    const struct sg_event_filter *f = &cfg->filter;
    size_t extra = 0;
    struct sg_event_sub *sub;
    char *p;
    unsigned bm = cfg->bookmark_interval_s;

    extra += f->tenant ? strlen(f->tenant) + 1 : 0;
    extra += f->namespace_name ? strlen(f->namespace_name) + 1 : 0;
    extra += f->sandbox_id ? strlen(f->sandbox_id) + 1 : 0;
    sub = calloc(1, sizeof(*sub) + extra);
    if (!sub)
        return NULL;
    sub->hub = hub;
    sub->since = cfg->since_seq;
    p = sub->strs;
    sub->tenant = copy_opt(&p, f->tenant);
    sub->namespace_name = copy_opt(&p, f->namespace_name);
    sub->sandbox_id = copy_opt(&p, f->sandbox_id);
    sub->types = f->types;
    sub->match_none = cfg->match_none;
    if (bm) {
        if (bm < SG_EVENT_BOOKMARK_MIN_S)
            bm = SG_EVENT_BOOKMARK_MIN_S;
        if (bm > SG_EVENT_BOOKMARK_MAX_S)
            bm = SG_EVENT_BOOKMARK_MAX_S;
        sub->bookmark_ms = (int64_t)bm * 1000;
    }
    sub->identity = cfg->identity
                        ? sg_identity_ref((struct sg_identity *)cfg->identity)
                        : NULL;
    sub->rule = cfg->rule;
    sub->ops = cfg->ops;
    sub->sink = cfg->sink;
    sub->cursor = cfg->since_seq;
    sub->policy = cfg->policy ? sg_policy_ref(cfg->policy) : NULL;
    sub->reach = sg_authz_reach_under(sub->policy, sub->identity, sub->rule);
    pthread_mutex_init(&sub->mu, NULL);
    return sub;
}

void sg_event_sub_free(struct sg_event_sub *sub)
{
    if (!sub)
        return;
    ring_clear_locked(sub);
    sg_identity_unref(sub->identity);
    sg_policy_unref(sub->policy);
    pthread_mutex_destroy(&sub->mu);
    free(sub);
}

static bool sub_matches(const struct sg_event_sub *sub,
                        const struct hub_event *ev)
{
    if (sub->match_none)
        return false;
    if (sub->types && !(sub->types & (1u << ev->type)))
        return false;
    if (sub->sandbox_id && STRNEQ(sub->sandbox_id, ev->sandbox_id))
        return false;
    if (sub->tenant && STRNEQ(sub->tenant, ev->tenant))
        return false;
    if (sub->namespace_name && STRNEQ(sub->namespace_name, ev->namespace_name))
        return false;
    return true;
}

static bool sub_may_see(const struct sg_event_sub *sub, const char *tenant,
                        const char *project, const char *namespace_name,
                        const char *owner)
{
    struct sg_authz_object obj = {.tenant = tenant, .project = project,
                                  .namespace_name = namespace_name,
                                  .owner = owner};

    if (sub->reach == SG_REACH_ANY)
        return true;
    return sg_authz_may_see_under(sub->policy, sub->identity, sub->rule,
                                  &obj);
}

/* Judge sub by the round's policy from now on. False: its permission is
   gone. Hub thread. */
static bool refresh_policy(struct sg_event_hub *hub, struct sg_event_sub *sub)
{
    struct sg_policy *p = hub->round_policy;

    if (p && p != sub->policy) {
        sg_policy_unref(sub->policy);
        sub->policy = sg_policy_ref(p);
        sub->reach = sg_authz_reach_under(p, sub->identity, sub->rule);
    }
    return sub->reach != SG_REACH_NONE;
}

/* The hub is done with sub: nothing more is sent, the sink reference goes
   back. sub may be freed by the release, so it is not touched after. */
static void release_sub(struct sg_event_hub *hub, struct sg_event_sub *sub)
{
    if (sub->state != SUB_NEW) {
        if (sub->prev)
            sub->prev->next = sub->next;
        else
            hub->subs = sub->next;
        if (sub->next)
            sub->next->prev = sub->prev;
        if (sub->bookmark_ms)
            hub->n_bookmark_subs--;
        if (sub->state == SUB_REPLAY)
            atomic_fetch_sub(&hub->replaying_stat, 1);
    }
    pthread_mutex_lock(&sub->mu);
    sub->broken = true;
    ring_clear_locked(sub);
    pthread_mutex_unlock(&sub->mu);
    pthread_mutex_lock(&hub->mu);
    sub->released = true;
    if (sub->run_queued)
        unlink_locked(&hub->run_head, &hub->run_tail, sub, true);
    if (sub->pend_queued)
        unlink_locked(&hub->pend_head, &hub->pend_tail, sub, false);
    sub->run_queued = sub->pend_queued = false;
    hub->n_subs--;
    pthread_mutex_unlock(&hub->mu);
    sub->ops->release(sub->sink);
}

static void end_sub(struct sg_event_hub *hub, struct sg_event_sub *sub,
                    grpc_status_code code, const char *message)
{
    sub->ops->end(sub->sink, code, message);
    release_sub(hub, sub);
}

static void end_revoked(struct sg_event_hub *hub, struct sg_event_sub *sub)
{
    char msg[256];

    snprintf(msg, sizeof(msg),
             "permission '%s' is no longer granted",
             sub->rule ? sub->rule->permission : "");
    end_sub(hub, sub, GRPC_STATUS_PERMISSION_DENIED, msg);
}

static void to_replay(struct sg_event_hub *hub, struct sg_event_sub *sub)
{
    sub->state = SUB_REPLAY;
    sub->no_progress = 0;
    atomic_fetch_add(&hub->replaying_stat, 1);
    pthread_mutex_lock(&hub->mu);
    run_push_locked(hub, sub);
    pthread_mutex_unlock(&hub->mu);
}

static void to_live(struct sg_event_hub *hub, struct sg_event_sub *sub)
{
    sub->state = SUB_LIVE;
    atomic_fetch_sub(&hub->replaying_stat, 1);
}

/* ---- adds and cancels ---------------------------------------------------- */

int sg_event_hub_add(struct sg_event_hub *hub, struct sg_event_sub *sub,
                     struct sg_error *err)
{
    int ret = -1;

    pthread_mutex_lock(&hub->mu);
    if (hub->stopping) {
        sg_error_report(err, SG_ERR_UNAVAILABLE, "server is shutting down");
    } else if (hub->max_streams && hub->n_subs >= hub->max_streams) {
        sg_error_report(err, SG_ERR_RESOURCE_EXHAUSTED,
                        "too many event streams are open (limit %zu)",
                        hub->max_streams);
    } else {
        hub->n_subs++;
        sub->added = true;
        /* From now: every event the observer hands over after this one. */
        if (sub->since == 0)
            sub->cursor = hub->committed;
        pend_push_locked(hub, sub);
        pthread_cond_signal(&hub->cond);
        ret = 0;
    }
    pthread_mutex_unlock(&hub->mu);
    return ret;
}

void sg_event_sub_cancel(struct sg_event_sub *sub)
{
    struct sg_event_hub *hub;

    if (!sub)
        return;
    hub = sub->hub;
    pthread_mutex_lock(&hub->mu);
    if (sub->added && !sub->released && !sub->want_cancel) {
        sub->want_cancel = true;
        pend_push_locked(hub, sub);
        pthread_cond_signal(&hub->cond);
    }
    pthread_mutex_unlock(&hub->mu);
}

void sg_event_sub_sent(struct sg_event_sub *sub, bool ok)
{
    struct sg_event_hub *hub = sub->hub;
    bool wake = false;

    pthread_mutex_lock(&sub->mu);
    sub->in_flight = false;
    if (!ok) {
        sub->broken = true;
        ring_clear_locked(sub);
    } else {
        pump_locked(sub);
    }
    if (sub->replay_waiting && !sub->broken &&
        sub->count <= hub->queue_limit / 2) {
        sub->replay_waiting = false;
        wake = true;
    }
    pthread_mutex_unlock(&sub->mu);
    if (wake) {
        pthread_mutex_lock(&hub->mu);
        run_push_locked(hub, sub);
        pthread_cond_signal(&hub->cond);
        pthread_mutex_unlock(&hub->mu);
    }
}

/* Hub thread: act on what sg_event_hub_add and sg_event_sub_cancel
   queued. */
static void process_pending(struct sg_event_hub *hub,
                            struct sg_event_sub *list)
{
    while (list) {
        struct sg_event_sub *sub = list;
        bool cancel;

        /* Taken off only now: a cancel meanwhile finds it still queued
           and only sets want_cancel, leaving the links alone. */
        pthread_mutex_lock(&hub->mu);
        list = sub->pend_next;
        sub->pend_queued = false;
        cancel = sub->want_cancel;
        pthread_mutex_unlock(&hub->mu);
        if (cancel) {
            release_sub(hub, sub);
            continue;
        }
        if (sub->state != SUB_NEW)
            continue;
        sub->prev = NULL;
        sub->next = hub->subs;
        if (hub->subs)
            hub->subs->prev = sub;
        hub->subs = sub;
        sub->last_send_ms = mono_ms();
        if (sub->bookmark_ms)
            hub->n_bookmark_subs++;
        if (!refresh_policy(hub, sub)) {
            sub->state = SUB_LIVE;
            end_revoked(hub, sub);
        } else if (sub->since == 0) {
            sub->state = SUB_LIVE;
        } else {
            to_replay(hub, sub);
        }
    }
}

/* ---- fan-out ------------------------------------------------------------- */

/* Queue every event of list that sub wants and may see. */
static void deliver(struct sg_event_hub *hub, struct sg_event_sub *sub,
                    struct hub_event *list, int64_t now)
{
    bool pushed = false;
    bool overflow = false;
    uint64_t resume = 0;
    char msg[256];

    if (!refresh_policy(hub, sub)) {
        end_revoked(hub, sub);
        return;
    }
    pthread_mutex_lock(&sub->mu);
    for (struct hub_event *ev = list; ev && !sub->broken; ev = ev->next) {
        if (ev->seq <= sub->cursor)
            continue;
        if (!sub_matches(sub, ev) ||
            !sub_may_see(sub, ev->tenant, ev->project, ev->namespace_name,
                         ev->owner)) {
            sub->cursor = ev->seq;
            continue;
        }
        event_ref(ev);
        if (!enqueue_locked(sub, hub->queue_limit, ev)) {
            resume = resume_position_locked(sub);
            overflow = true;
            break;
        }
        sub->cursor = ev->seq;
        pushed = true;
    }
    pthread_mutex_unlock(&sub->mu);
    if (pushed)
        sub->last_send_ms = now;
    if (overflow) {
        atomic_fetch_add(&hub->overflows_stat, 1);
        snprintf(msg, sizeof(msg),
                 "the stream fell more than %zu events behind; resume with "
                 "since_seq %" PRIu64, hub->queue_limit, resume);
        SG_DEBUG("event stream ended: %s", msg);
        end_sub(hub, sub, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
    }
}

/* Every live subscriber back to replay: the fan-out lost events. */
static void demote_all(struct sg_event_hub *hub)
{
    for (struct sg_event_sub *sub = hub->subs; sub; sub = sub->next)
        if (sub->state == SUB_LIVE)
            to_replay(hub, sub);
}

static void fan_out(struct sg_event_hub *hub, struct hub_event *list,
                    uint64_t committed)
{
    uint64_t expect = hub->published + 1;
    bool gap = false;
    int64_t now = mono_ms();
    struct hub_event *last = NULL;

    for (struct hub_event *ev = list; ev; ev = ev->next) {
        if (ev->seq > expect)
            gap = true; /* the observer could not keep one */
        if (ev->seq >= expect)
            expect = ev->seq + 1;
        last = ev;
    }
    if (committed >= expect)
        gap = true; /* nor the last ones */
    if (gap) {
        SG_WARN("event fan-out lost events (out of memory); live streams "
                "replay them from the store");
        demote_all(hub);
    }
    if (last) {
        for (struct sg_event_sub *sub = hub->subs, *next; sub; sub = next) {
            next = sub->next;
            if (sub->state == SUB_LIVE)
                deliver(hub, sub, list, now);
        }
    }
    if (expect - 1 > hub->published)
        hub->published = expect - 1;
    if (committed > hub->published)
        hub->published = committed;
    atomic_store(&hub->published_stat, hub->published);
}

/* ---- replay -------------------------------------------------------------- */

struct replay_ctx {
    struct sg_event_sub *sub;
    struct hub_event **evs;
    size_t n;
    size_t max;
    uint64_t failed_at; /* seq that could not be allocated, or 0 */
};

static int visit_replay(void *opaque, const struct sg_event_row *row)
{
    struct replay_ctx *rc = opaque;
    struct hub_event *ev;

    if (!sub_may_see(rc->sub, row->tenant, row->project, row->namespace_name,
                     row->owner))
        return 0;
    if (rc->n >= rc->max) {
        rc->failed_at = row->seq; /* cannot happen: max_rows is max */
        return 1;
    }
    ev = event_new(row);
    if (!ev) {
        rc->failed_at = row->seq;
        return 1;
    }
    rc->evs[rc->n++] = ev;
    return 0;
}

/* Make sub wait for room in its queue; false if there is room after all. */
static bool wait_for_room(struct sg_event_hub *hub, struct sg_event_sub *sub,
                          size_t *room)
{
    bool wait;

    pthread_mutex_lock(&sub->mu);
    *room = sub->count < hub->queue_limit ? hub->queue_limit - sub->count : 0;
    /* Read pages of a useful size: wait for half the queue to drain. */
    wait = !sub->broken && *room < hub->replay_page &&
           *room < (hub->queue_limit + 1) / 2;
    if (wait)
        sub->replay_waiting = true;
    if (sub->broken)
        *room = 0;
    pthread_mutex_unlock(&sub->mu);
    return wait;
}

/*
 * One page of history for sub. Returns true when sub is still replaying
 * and may read again at once; false when it went live, waits for room,
 * broke or was ended (then it may be gone).
 */
static bool replay_page(struct sg_event_hub *hub, struct sg_event_sub *sub)
{
    struct sg_event_filter f = {.tenant = sub->tenant,
                                .namespace_name = sub->namespace_name,
                                .sandbox_id = sub->sandbox_id,
                                .types = sub->types};
    struct sg_error err = SG_ERROR_INIT;
    struct replay_ctx rc = {.sub = sub};
    uint64_t scanned = sub->cursor;
    size_t room;
    ssize_t n;
    bool more = false;
    char msg[SG_ERROR_MESSAGE_MAX + 64];

    if (!refresh_policy(hub, sub)) {
        end_revoked(hub, sub);
        return false;
    }
    if (sub->cursor >= hub->published || sub->match_none) {
        /* Nothing to read below the fan-out (or nothing could match). */
        if (sub->cursor < hub->published)
            sub->cursor = hub->published;
        to_live(hub, sub);
        return false;
    }
    if (!hub->store) {
        end_sub(hub, sub, GRPC_STATUS_UNAVAILABLE, "no event history");
        return false;
    }
    if (wait_for_room(hub, sub, &room) || room == 0)
        return false;
    rc.max = room < hub->replay_page ? room : hub->replay_page;
    rc.evs = calloc(rc.max, sizeof(*rc.evs));
    if (!rc.evs) {
        /* Try again at the next turn. */
        return true;
    }
    n = sg_store_list_events(hub->store, &f, sub->cursor, rc.max,
                             hub->replay_scan, &scanned, visit_replay, &rc,
                             &err);
    if (n < 0) {
        SG_ERROR("event replay: %s", err.message);
        snprintf(msg, sizeof(msg),
                 "cannot read the event history; resume with since_seq "
                 "%" PRIu64, sub->cursor);
        end_sub(hub, sub, GRPC_STATUS_UNAVAILABLE, msg);
        goto cleanup;
    }
    /* Retention may have removed events after the cursor while they were
       read: the window must still start at most right after it. */
    if (sg_event_check_position(hub->store, "the stream's position",
                                sub->cursor, NULL, NULL, &err) < 0) {
        if (err.code != SG_ERR_OUT_OF_RANGE)
            SG_ERROR("event replay: %s", err.message);
        end_sub(hub, sub,
                err.code == SG_ERR_OUT_OF_RANGE ? GRPC_STATUS_OUT_OF_RANGE
                                                : GRPC_STATUS_UNAVAILABLE,
                err.code == SG_ERR_OUT_OF_RANGE ? err.message
                                                : "cannot read the event "
                                                  "history");
        goto cleanup;
    }
    if (rc.failed_at)
        scanned = rc.failed_at - 1;
    pthread_mutex_lock(&sub->mu);
    /* They fit (only this thread adds, and room was measured above)
       unless the queue cannot grow: then read again from the one that
       did not go in. */
    for (size_t i = 0; i < rc.n; i++) {
        uint64_t seq = rc.evs[i]->seq;

        if (!enqueue_locked(sub, hub->queue_limit, rc.evs[i])) {
            scanned = seq - 1;
            while (++i < rc.n)
                event_unref(rc.evs[i]);
        }
    }
    rc.n = 0;
    pthread_mutex_unlock(&sub->mu);
    if (n > 0)
        sub->last_send_ms = mono_ms();
    if (scanned > sub->cursor) {
        sub->cursor = scanned;
        sub->no_progress = 0;
    } else if (++sub->no_progress > NO_PROGRESS_MAX) {
        SG_ERROR("event replay found nothing after %" PRIu64
                 " though events up to %" PRIu64 " were committed",
                 sub->cursor, hub->published);
        snprintf(msg, sizeof(msg),
                 "cannot read the event history; resume with since_seq "
                 "%" PRIu64, sub->cursor);
        end_sub(hub, sub, GRPC_STATUS_UNAVAILABLE, msg);
        goto cleanup;
    }
    if (sub->cursor >= hub->published)
        to_live(hub, sub);
    else
        more = true;

 cleanup:
    for (size_t i = 0; i < rc.n; i++)
        event_unref(rc.evs[i]);
    free(rc.evs);
    sg_error_reset(&err);
    return more;
}

/* Replay pages, round robin, for at most REPLAY_BUDGET_MS. */
static void run_replays(struct sg_event_hub *hub)
{
    struct sg_event_sub *list;
    int64_t deadline = mono_ms() + REPLAY_BUDGET_MS;

    pthread_mutex_lock(&hub->mu);
    list = hub->run_head;
    hub->run_head = hub->run_tail = NULL;
    pthread_mutex_unlock(&hub->mu);
    while (list) {
        struct sg_event_sub *sub = list;
        bool again;

        /* As in process_pending: off the list only when its turn comes. */
        pthread_mutex_lock(&hub->mu);
        list = sub->run_next;
        sub->run_queued = false;
        pthread_mutex_unlock(&hub->mu);
        if (sub->state != SUB_REPLAY)
            continue;
        if (mono_ms() >= deadline) {
            again = true;
        } else {
            again = replay_page(hub, sub);
        }
        if (again) {
            pthread_mutex_lock(&hub->mu);
            run_push_locked(hub, sub);
            pthread_mutex_unlock(&hub->mu);
        }
    }
}

/* ---- bookmarks ----------------------------------------------------------- */

static void send_bookmarks(struct sg_event_hub *hub, int64_t now)
{
    for (struct sg_event_sub *sub = hub->subs, *next; sub; sub = next) {
        bool sent = false;

        next = sub->next;
        if (!sub->bookmark_ms || sub->state != SUB_LIVE ||
            now - sub->last_send_ms < sub->bookmark_ms)
            continue;
        if (!refresh_policy(hub, sub)) {
            end_revoked(hub, sub);
            continue;
        }
        if (!hub->bookmark || hub->bookmark->seq != sub->cursor) {
            struct hub_event *bm = bookmark_new(sub->cursor);

            if (!bm)
                continue;
            event_unref(hub->bookmark);
            hub->bookmark = bm;
        }
        pthread_mutex_lock(&sub->mu);
        /* Only a stream with nothing on its way needs one. */
        if (!sub->count && !sub->in_flight && !sub->broken) {
            event_ref(hub->bookmark);
            sent = enqueue_locked(sub, hub->queue_limit, hub->bookmark);
        }
        pthread_mutex_unlock(&sub->mu);
        if (sent)
            sub->last_send_ms = now;
    }
}

/* ---- the thread ---------------------------------------------------------- */

static void wait_work_locked(struct sg_event_hub *hub)
{
    while (!hub->stopping && !hub->in_head && !hub->pend_head &&
           !hub->run_head) {
        struct timespec ts;
        int64_t now;

        if (!hub->n_bookmark_subs) {
            pthread_cond_wait(&hub->cond, &hub->mu);
            continue;
        }
        now = mono_ms();
        if (now >= hub->next_tick_ms)
            return;
        ts.tv_sec = hub->next_tick_ms / 1000;
        ts.tv_nsec = (long)(hub->next_tick_ms % 1000) * 1000000;
        pthread_cond_timedwait(&hub->cond, &hub->mu, &ts);
    }
}

static void *hub_thread(void *opaque)
{
    struct sg_event_hub *hub = opaque;
    bool stop = false;

    pthread_setname_np(pthread_self(), "sg-event-hub");
    while (!stop) {
        struct hub_event *events;
        struct sg_event_sub *pend;
        uint64_t committed;
        int64_t now;

        pthread_mutex_lock(&hub->mu);
        wait_work_locked(hub);
        stop = hub->stopping;
        events = hub->in_head;
        hub->in_head = hub->in_tail = NULL;
        committed = hub->committed;
        pend = hub->pend_head;
        hub->pend_head = hub->pend_tail = NULL;
        pthread_mutex_unlock(&hub->mu);

        hub->round_policy =
            hub->current_policy ? hub->current_policy(hub->policy_opaque)
                                : NULL;
        process_pending(hub, pend);
        if (!stop) {
            fan_out(hub, events, committed);
            run_replays(hub);
            now = mono_ms();
            if (hub->n_bookmark_subs && now >= hub->next_tick_ms) {
                hub->next_tick_ms = now + BOOKMARK_TICK_MS;
                send_bookmarks(hub, now);
            }
        }
        event_list_free(events);
        sg_policy_unref(hub->round_policy);
        hub->round_policy = NULL;
    }
    /* Stopping: end whatever is left. */
    while (hub->subs)
        end_sub(hub, hub->subs, GRPC_STATUS_UNAVAILABLE,
                "server is shutting down");
    return NULL;
}

/* ---- life ---------------------------------------------------------------- */

void sg_event_hub_observe(void *opaque, const struct sg_event_row *evs,
                          size_t n_evs)
{
    struct sg_event_hub *hub = opaque;
    struct hub_event *head = NULL;
    struct hub_event **tail = &head;
    struct hub_event *last = NULL;

    /* Packed outside the lock; a failure leaves a gap fan_out sees. */
    for (size_t i = 0; i < n_evs; i++) {
        struct hub_event *ev = event_new(&evs[i]);

        if (!ev)
            continue;
        *tail = ev;
        tail = &ev->next;
        last = ev;
    }
    pthread_mutex_lock(&hub->mu);
    if (hub->stopping) {
        pthread_mutex_unlock(&hub->mu);
        event_list_free(head);
        return;
    }
    if (head) {
        if (hub->in_tail)
            hub->in_tail->next = head;
        else
            hub->in_head = head;
        hub->in_tail = last;
    }
    if (n_evs && evs[n_evs - 1].seq > hub->committed)
        hub->committed = evs[n_evs - 1].seq;
    pthread_cond_signal(&hub->cond);
    pthread_mutex_unlock(&hub->mu);
}

static void store_observer(void *opaque, const struct sg_event_row *evs,
                           size_t n_evs)
{
    sg_event_hub_observe(opaque, evs, n_evs);
}

struct sg_event_hub *sg_event_hub_new(const struct sg_event_hub_config *cfg,
                                      struct sg_error *err)
{
    struct sg_event_hub *hub = calloc(1, sizeof(*hub));
    pthread_condattr_t ca;
    uint64_t oldest = 0;
    uint64_t newest = 0;

    if (!hub) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    hub->store = cfg->store;
    hub->queue_limit = cfg->queue_limit ? cfg->queue_limit
                                        : DEFAULT_QUEUE_LIMIT;
    hub->max_streams = cfg->max_streams;
    hub->replay_page = cfg->replay_page ? cfg->replay_page
                                        : DEFAULT_REPLAY_PAGE;
    hub->replay_scan = cfg->replay_scan ? cfg->replay_scan
                                        : DEFAULT_REPLAY_SCAN;
    hub->current_policy = cfg->current_policy;
    hub->policy_opaque = cfg->policy_opaque;
    pthread_mutex_init(&hub->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&hub->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (hub->store) {
        sg_store_set_commit_observer(hub->store, store_observer, hub);
        /* After the observer is in: whatever commits from now on is
           either observed or already counted here. */
        if (sg_store_event_bounds(hub->store, &oldest, &newest, err) < 0) {
            sg_store_set_commit_observer(hub->store, NULL, NULL);
            goto error;
        }
    }
    pthread_mutex_lock(&hub->mu);
    if (newest > hub->committed)
        hub->committed = newest;
    hub->published = hub->committed;
    pthread_mutex_unlock(&hub->mu);
    atomic_store(&hub->published_stat, hub->published);
    if (pthread_create(&hub->thread, NULL, hub_thread, hub) != 0) {
        sg_error_report(err, SG_ERR_INTERNAL, "cannot start the event hub");
        if (hub->store)
            sg_store_set_commit_observer(hub->store, NULL, NULL);
        goto error;
    }
    hub->thread_started = true;
    return hub;

 error:
    sg_event_hub_free(hub);
    return NULL;
}

void sg_event_hub_stop(struct sg_event_hub *hub)
{
    if (!hub || !hub->thread_started)
        return;
    pthread_mutex_lock(&hub->mu);
    hub->stopping = true;
    pthread_cond_signal(&hub->cond);
    pthread_mutex_unlock(&hub->mu);
    pthread_join(hub->thread, NULL);
    hub->thread_started = false;
    /* Adds that raced the stop: answered UNAVAILABLE by their caller. */
    pthread_mutex_lock(&hub->mu);
    event_list_free(hub->in_head);
    hub->in_head = hub->in_tail = NULL;
    pthread_mutex_unlock(&hub->mu);
}

void sg_event_hub_free(struct sg_event_hub *hub)
{
    if (!hub)
        return;
    sg_event_hub_stop(hub);
    event_list_free(hub->in_head);
    event_unref(hub->bookmark);
    pthread_cond_destroy(&hub->cond);
    pthread_mutex_destroy(&hub->mu);
    free(hub);
}

void sg_event_hub_get_stats(struct sg_event_hub *hub,
                            struct sg_event_hub_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&hub->mu);
    out->subscribers = hub->n_subs;
    pthread_mutex_unlock(&hub->mu);
    out->replaying = atomic_load(&hub->replaying_stat);
    out->published = atomic_load(&hub->published_stat);
    out->overflows = atomic_load(&hub->overflows_stat);
}

/* ---- positions ----------------------------------------------------------- */

int sg_event_check_position(struct sg_store *store, const char *what,
                            uint64_t after, uint64_t *oldest,
                            uint64_t *newest, struct sg_error *err)
{
    uint64_t o = 0;
    uint64_t n = 0;

    if (sg_store_event_bounds(store, &o, &n, err) < 0)
        return -1;
    if (oldest)
        *oldest = o;
    if (newest)
        *newest = n;
    if (after == 0)
        return 0;
    if (after + 1 < o) {
        sg_error_report(err, SG_ERR_OUT_OF_RANGE,
                        "%s %" PRIu64 " is older than the retained events; "
                        "the oldest available is %" PRIu64
                        " (resume with since_seq %" PRIu64 ")",
                        what, after, o, o - 1);
        return -1;
    }
    if (after > n) {
        sg_error_report(err, SG_ERR_OUT_OF_RANGE,
                        "%s %" PRIu64 " is ahead of the newest event (%" PRIu64
                        "): it is not a position of this gateway's event "
                        "history; list the events again from since_seq 0",
                        what, after, n);
        return -1;
    }
    return 0;
}
