/*
 * reconciler.c: the level-triggered loop between the store and the driver.
 *
 * Per sandbox there is at most one step in flight (item->busy); a kick
 * that arrives meanwhile sets item->dirty and the sandbox is looked at
 * again when the step completes. Items exist only while there is work or
 * a driver observation to remember; an idle sandbox has none.
 */
#include "internal.h"

#include "reconciler.h"

#include "log.h"
#include "loop.h"
#include "sandbox_record.h"
#include "strmap.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

SG_LOG_INIT("reconciler");

#define TICK_MS 100
#define TTL_SCAN_MAX 1000

/* What the driver last said about an object. */
struct obs {
    bool have;
    enum sg_driver_state state;
    int exit_code;
    char reason[64];
    char message[256];
    char backend[256];
};

struct item {
    struct sg_reconciler *rec;
    char *id;
    bool busy;       /* a driver call or store write is in flight */
    bool dirty;      /* kicked while busy: look again afterwards */
    bool created;    /* driver create succeeded since we started */
    bool delivered;  /* that create was given resolved credentials */
    /* Resolved bindings waiting for the create (or why they failed);
       freed, and so wiped, as soon as the create has been called. */
    struct sg_cred_resolved *creds;
    struct obs obs;
    /* The row as last written or read: the next step starts from it
       instead of reading the store. A conflict drops it (read again). */
    struct sg_sandbox_row *row;
    unsigned attempts;
    int64_t retry_at; /* uv_now() ms of the next try; 0 = none */
};

struct sg_reconciler {
    uv_loop_t *loop;
    struct sg_store *store;
    struct sg_driver *driver;
    struct sg_reconciler_config cfg;
    struct sg_loop_queue *queue;
    struct sg_strmap *items;
    uv_timer_t tick;
    uv_timer_t resume_timer;
    uint64_t next_ttl_scan;
    uint64_t next_resync;
    char *resync_after;      /* cursor of the resync pass in progress */
    bool resyncing;
    char *resume_after;      /* last id of the previous resume page */
    bool stopping;

    atomic_uint_fast64_t steps, writes, driver_calls, retries, orphans,
        resyncs;
    atomic_size_t active;
    atomic_bool resumed;
};

static void step(struct item *it);

/* ---- items ----------------------------------------------------------- */

static struct item *item_get(struct sg_reconciler *rec, const char *id)
{
    struct item *it = sg_strmap_get(rec->items, id);

    if (it)
        return it;
    it = calloc(1, sizeof(*it));
    if (!it)
        return NULL;
    it->rec = rec;
    it->id = strdup(id);
    if (!it->id || sg_strmap_put(rec->items, id, it) < 0) {
        free(it->id);
        free(it);
        return NULL;
    }
    atomic_store(&rec->active, sg_strmap_size(rec->items));
    return it;
}

static void item_free(struct item *it)
{
    sg_cred_resolved_free(it->creds);
    sg_sandbox_row_free(it->row);
    free(it->id);
    free(it);
}

/* Cache row (owned) unless the item already has a newer one. */
static void item_take_row(struct item *it, struct sg_sandbox_row *row)
{
    if (!row)
        return;
    if (it->row && it->row->resource_version >= row->resource_version) {
        sg_sandbox_row_free(row);
        return;
    }
    sg_sandbox_row_free(it->row);
    it->row = row;
}

static void item_forget_row(struct item *it)
{
    sg_sandbox_row_free(it->row);
    it->row = NULL;
}

/* Forget an idle item (its next kick starts afresh). */
static void item_drop(struct item *it)
{
    struct sg_reconciler *rec = it->rec;

    if (it->busy || it->retry_at)
        return;
    sg_strmap_remove(rec->items, it->id);
    atomic_store(&rec->active, sg_strmap_size(rec->items));
    item_free(it);
}

static void obs_set(struct obs *o, const struct sg_driver_status *st)
{
    o->have = true;
    o->state = st->state;
    o->exit_code = st->exit_code;
    snprintf(o->reason, sizeof(o->reason), "%s", st->reason ? st->reason : "");
    snprintf(o->message, sizeof(o->message), "%s",
             st->message ? st->message : "");
    if (st->backend_object && *st->backend_object)
        snprintf(o->backend, sizeof(o->backend), "%s", st->backend_object);
}

/* Try again later: exponential backoff with jitter, capped. */
static void backoff(struct item *it, const char *why)
{
    struct sg_reconciler *rec = it->rec;
    uint64_t delay = rec->cfg.retry_base_ms;

    for (unsigned i = 0; i < it->attempts && delay < rec->cfg.retry_max_ms;
         i++)
        delay *= 2;
    if (delay > rec->cfg.retry_max_ms)
        delay = rec->cfg.retry_max_ms;
    /* Up to a quarter more, so that many failures do not retry in step. */
    delay += (uint64_t)rand() % (delay / 4 + 1);
    it->attempts++;
    it->retry_at = (int64_t)(uv_now(rec->loop) + delay);
    atomic_fetch_add(&rec->retries, 1);
    SG_WARN("sandbox %s: %s; retrying in %llu ms (attempt %u)", it->id, why,
            (unsigned long long)delay, it->attempts);
}

/* ---- store writes ---------------------------------------------------- */

struct write_done {
    struct sg_reconciler *rec;
    char *id;
    struct sg_sandbox_row *row; /* as written, or NULL */
    enum sg_err_code code;
    char message[SG_ERROR_MESSAGE_MAX + 32];
};

static void write_done_free(struct write_done *wd)
{
    sg_sandbox_row_free(wd->row);
    free(wd->id);
    free(wd);
}

static void write_done_on_loop(void *arg)
{
    struct write_done *wd = arg;
    struct sg_reconciler *rec = wd->rec;
    struct item *it = rec->stopping ? NULL : sg_strmap_get(rec->items, wd->id);

    if (it) {
        it->busy = false;
        if (wd->code == SG_ERR_OK) {
            it->attempts = 0;
            item_take_row(it, wd->row);
            wd->row = NULL;
            step(it);
        } else if (wd->code == SG_ERR_ABORTED ||
                   wd->code == SG_ERR_NOT_FOUND) {
            /* Someone else changed it first: read it again. */
            item_forget_row(it);
            step(it);
        } else {
            item_forget_row(it);
            backoff(it, wd->message);
        }
    }
    write_done_free(wd);
}

/* Store thread: hand the result to the loop. */
static void on_write(void *opaque, const struct sg_store_result *res)
{
    struct write_done *wd = opaque;

    wd->code = res->err ? res->err->code : SG_ERR_OK;
    if (res->err)
        snprintf(wd->message, sizeof(wd->message), "store write failed: %s",
                 res->err->message);
    else
        wd->row = sg_sandbox_row_copy(res->row); /* NULL: read it again */
    if (sg_loop_post(wd->rec->queue, write_done_on_loop, wd) < 0)
        write_done_free(wd);
}

/* Apply chg to row with a conditional write; the item is busy until done. */
static void write_change(struct item *it, const struct sg_sandbox_row *row,
                         const struct sg_record_change *chg)
{
    struct sg_reconciler *rec = it->rec;
    struct sg_sandbox_row next;
    struct sg_event_row evs[SG_RECORD_MAX_EVENTS];
    size_t n_evs = 0;
    struct sg_error err = SG_ERROR_INIT;
    struct write_done *wd = calloc(1, sizeof(*wd));

    if (!wd || sg_record_apply(row, chg, &next, evs, &n_evs, &err) < 0) {
        free(wd);
        backoff(it, err.message[0] ? err.message : "out of memory");
        sg_error_reset(&err);
        return;
    }
    wd->rec = rec;
    wd->id = strdup(it->id);
    if (wd->id &&
        sg_store_update_sandbox(rec->store, &next, row->resource_version,
                                evs, n_evs, on_write, wd, &err) == 0) {
        it->busy = true;
        atomic_fetch_add(&rec->writes, 1);
        SG_DEBUG("sandbox %s: %s -> %s (%s)", it->id,
                 sg_phase_name(row->phase), sg_phase_name(chg->phase),
                 chg->pending_reason ? chg->pending_reason
                 : chg->reason       ? chg->reason
                                     : "");
    } else {
        if (wd->id)
            backoff(it, err.message);
        free(wd->id);
        free(wd);
    }
    sg_error_reset(&err);
    for (size_t i = 0; i < n_evs; i++)
        sg_event_row_clear(&evs[i]);
    sg_sandbox_row_clear(&next);
}

/* ---- driver calls ---------------------------------------------------- */

/* Common end of create, get and remove. */
static void driver_done(struct item *it, enum sg_driver_result result,
                        const struct sg_driver_status *st, const char *message,
                        bool from_create)
{
    it->busy = false;
    if (result == SG_DRIVER_OK) {
        /* A watch report may already be newer than create's answer. */
        if (!from_create || !it->obs.have ||
            it->obs.state == SG_DRIVER_STATE_PENDING)
            obs_set(&it->obs, st);
        if (from_create)
            it->created = true;
        it->attempts = 0;
        step(it);
    } else if (result == SG_DRIVER_ERR_INVALID && from_create) {
        struct sg_driver_status failed = {
            .id = it->id, .state = SG_DRIVER_STATE_FAILED,
            .reason = "DriverRejected", .message = message, .exit_code = -1};
        obs_set(&it->obs, &failed);
        it->created = true;
        step(it);
    } else {
        char why[320];
        snprintf(why, sizeof(why), "driver: %s", message ? message : "");
        backoff(it, why);
    }
}

static void on_create(void *opaque, enum sg_driver_result result,
                      const struct sg_driver_status *st, const char *message)
{
    struct item *it = opaque;

    if (!it->rec->stopping)
        driver_done(it, result, st, message, true);
}

static void on_get_or_remove(void *opaque, enum sg_driver_result result,
                             const struct sg_driver_status *st,
                             const char *message)
{
    struct item *it = opaque;

    if (!it->rec->stopping)
        driver_done(it, result, st, message, false);
}

/* Loop thread: the bindings of it resolved (or not). */
static void on_resolved(void *opaque, struct sg_cred_resolved *r)
{
    struct item *it = opaque;

    if (it->rec->stopping) {
        sg_cred_resolved_free(r);
        return;
    }
    it->busy = false;
    if (!r->ok && r->retry) {
        char why[SG_ERROR_MESSAGE_MAX + 32];

        snprintf(why, sizeof(why), "credentials: %s", r->message);
        sg_cred_resolved_free(r);
        backoff(it, why);
        return;
    }
    sg_cred_resolved_free(it->creds);
    it->creds = r;
    step(it);
}

/* Have a worker resolve sb's bindings; the item is busy until then. */
static void resolve_credentials(struct item *it,
                                const Sandgate__V1__Sandbox *sb)
{
    struct sg_reconciler *rec = it->rec;
    struct sg_error err = SG_ERROR_INIT;

    if (!rec->cfg.credentials) {
        it->creds = calloc(1, sizeof(*it->creds));
        if (!it->creds) {
            backoff(it, "out of memory");
            return;
        }
        snprintf(it->creds->reason, sizeof(it->creds->reason),
                 "CredentialsUnavailable");
        snprintf(it->creds->message, sizeof(it->creds->message),
                 "this gateway does not resolve credentials");
        step(it);
        return;
    }
    if (sg_cred_resolve(rec->cfg.credentials, sb, on_resolved, it, &err) ==
        0)
        it->busy = true;
    else
        backoff(it, err.message);
    sg_error_reset(&err);
}

/* Point the view's bindings at the resolved material. */
static void view_material(struct sg_driver_view *view,
                          const struct sg_cred_resolved *r)
{
    for (size_t i = 0; i < view->sb.n_credentials && i < r->n; i++) {
        view->credentials[i].material = r->secrets[i]->data;
        view->credentials[i].material_len = r->secrets[i]->len;
    }
}

/*
 * Ask the driver to create the object of row; a sandbox with bindings
 * has them resolved first. The material is the driver's to copy during
 * the call only: it is wiped right after.
 */
static void driver_create(struct item *it, const struct sg_sandbox_row *row)
{
    struct sg_reconciler *rec = it->rec;
    struct sg_error err = SG_ERROR_INIT;
    Sandgate__V1__Sandbox *sb = sg_record_unpack(row, &err);
    struct sg_driver_view view;
    int rc = -1;

    memset(&view, 0, sizeof(view));
    if (sb && sb->spec && sb->spec->n_credentials > 0 && !it->creds) {
        resolve_credentials(it, sb);
        sandgate__v1__sandbox__free_unpacked(sb, NULL);
        return;
    }
    if (sb && sg_driver_view_init(&view, sb, sg_driver_name(rec->driver),
                                  &err) == 0) {
        if (it->creds)
            view_material(&view, it->creds);
        rc = sg_driver_create(rec->driver, &view.sb, on_create, it, &err);
    }
    it->delivered = it->creds != NULL;
    sg_cred_resolved_free(it->creds);
    it->creds = NULL;
    if (rc == 0) {
        it->busy = true;
        atomic_fetch_add(&rec->driver_calls, 1);
    } else {
        backoff(it, err.message);
    }
    sg_driver_view_clear(&view);
    if (sb)
        sandgate__v1__sandbox__free_unpacked(sb, NULL);
    sg_error_reset(&err);
}

static void driver_remove(struct item *it, const char *backend)
{
    struct sg_reconciler *rec = it->rec;
    struct sg_error err = SG_ERROR_INIT;

    if (sg_driver_remove(rec->driver, it->id, backend, rec->cfg.grace_ms,
                         on_get_or_remove, it, &err) == 0) {
        it->busy = true;
        atomic_fetch_add(&rec->driver_calls, 1);
    } else {
        backoff(it, err.message);
    }
    sg_error_reset(&err);
}

static void driver_get(struct item *it, const char *backend)
{
    struct sg_reconciler *rec = it->rec;
    struct sg_error err = SG_ERROR_INIT;

    if (sg_driver_get(rec->driver, it->id, backend, on_get_or_remove, it,
                      &err) == 0) {
        it->busy = true;
        atomic_fetch_add(&rec->driver_calls, 1);
    } else {
        backoff(it, err.message);
    }
    sg_error_reset(&err);
}

/* ---- the decision ---------------------------------------------------- */

/* The backend object recorded in a row's status ("" when none yet). */
static void row_backend(const struct sg_sandbox_row *row, char *out,
                        size_t size)
{
    Sandgate__V1__Sandbox *sb = sg_record_unpack(row, NULL);

    snprintf(out, size, "%s",
             sb && sb->status->backend_object ? sb->status->backend_object
                                              : "");
    if (sb)
        sandgate__v1__sandbox__free_unpacked(sb, NULL);
}

/* What a row shows about the sandbox's progress: the Ready condition's
   reason and status.message. */
struct shown {
    char reason[128];
    char message[1024];
};

static void row_shows(const struct sg_sandbox_row *row, char *backend,
                      size_t size, struct shown *out)
{
    Sandgate__V1__Sandbox *sb = sg_record_unpack(row, NULL);
    const Sandgate__V1__SandboxStatus *st = sb ? sb->status : NULL;
    const char *reason = "";

    for (size_t i = 0; st && i < st->n_conditions; i++) {
        const Sandgate__V1__Condition *c = st->conditions[i];

        if (c->type && STREQ(c->type, "Ready") && c->reason)
            reason = c->reason;
    }
    snprintf(backend, size, "%s",
             st && st->backend_object ? st->backend_object : "");
    snprintf(out->reason, sizeof(out->reason), "%s", reason);
    snprintf(out->message, sizeof(out->message), "%s",
             st && st->message ? st->message : "");
    if (sb)
        sandgate__v1__sandbox__free_unpacked(sb, NULL);
}

/*
 * Whether the driver's last report is a PENDING one with news for a row
 * that shows reason and message: another reason, or a message (when it
 * has one) that differs. An identical report writes nothing, so the
 * steady state of a sandbox stuck in provisioning costs no writes.
 */
static bool pending_news(const struct obs *o, const char *reason,
                         const char *message)
{
    if (!o->have || o->state != SG_DRIVER_STATE_PENDING || !o->reason[0])
        return false;
    return STRNEQ(o->reason, reason) ||
           (o->message[0] && STRNEQ(o->message, message));
}

/*
 * What the driver's last report means for the row: the phase it leads to
 * and the final event, reason and message. Returns false while the object
 * is still PENDING (or nothing was reported).
 */
static bool observed_change(const struct item *it,
                            struct sg_record_change *chg)
{
    if (!it->obs.have)
        return false;
    switch (it->obs.state) {
    case SG_DRIVER_STATE_RUNNING:
        /* The driver's reason says how it got there (Started, WarmStart,
           DependenciesReady); "Ready" only when it says nothing. */
        *chg = (struct sg_record_change){
            .phase = SG_PHASE_READY, .events = {SG_EVENT_READY},
            .reason = it->obs.reason[0] ? it->obs.reason : "Ready",
            .message = it->obs.message[0] ? it->obs.message
                                          : "sandbox is ready",
            .set_ready_time = true};
        return true;
    case SG_DRIVER_STATE_FAILED:
        *chg = (struct sg_record_change){
            .phase = SG_PHASE_FAILED, .events = {SG_EVENT_FAILED},
            .reason = it->obs.reason[0] ? it->obs.reason : "Failed",
            .message = it->obs.message};
        return true;
    case SG_DRIVER_STATE_GONE:
        *chg = (struct sg_record_change){
            .phase = SG_PHASE_FAILED, .events = {SG_EVENT_FAILED},
            .reason = "Lost",
            .message = "the backend object no longer exists"};
        return true;
    case SG_DRIVER_STATE_PENDING:
    default:
        return false;
    }
}

/* The bindings did not resolve: fail the sandbox; the driver was never
   called, so nothing is left behind. */
static void credentials_failed(struct item *it,
                               const struct sg_sandbox_row *row)
{
    struct sg_record_change chg = {
        .phase = SG_PHASE_FAILED,
        .reason = it->creds->reason,
        .message = it->creds->message};
    size_t n = 0;

    if (row->phase == SG_PHASE_ACCEPTED)
        chg.events[n++] = SG_EVENT_ALLOCATION_STARTED;
    chg.events[n] = SG_EVENT_FAILED;
    write_change(it, row, &chg);
    sg_cred_resolved_free(it->creds);
    it->creds = NULL;
}

/*
 * ACCEPTED or PROVISIONING: have the driver create the object (again,
 * after a restart: create is idempotent), then record in one write
 * everything that happened since the last write: allocation started, the
 * object created, and ready or failed if the driver already says so.
 */
static void step_create(struct item *it, const struct sg_sandbox_row *row)
{
    struct sg_record_change chg = {.phase = SG_PHASE_PROVISIONING};
    struct sg_record_change seen;
    struct shown shown;
    char backend[256], fallback[320];
    size_t n = 0;

    if (it->creds && !it->creds->ok) {
        credentials_failed(it, row);
        return;
    }
    if (!it->created) {
        driver_create(it, row);
        return;
    }
    row_shows(row, backend, sizeof(backend), &shown);
    if (row->phase == SG_PHASE_ACCEPTED)
        chg.events[n++] = SG_EVENT_ALLOCATION_STARTED;
    if (it->delivered && !*backend)
        chg.events[n++] = SG_EVENT_CREDENTIALS_RESOLVED;
    if (!*backend) {
        snprintf(fallback, sizeof(fallback), "%s/%s",
                 sg_driver_name(it->rec->driver), it->id);
        chg.events[n++] = SG_EVENT_RESOURCE_CREATED;
        chg.backend_object = it->obs.backend[0] ? it->obs.backend : fallback;
        chg.reason = "Created";
        chg.message = "backend object created";
    }
    if (observed_change(it, &seen)) {
        chg.phase = seen.phase;
        chg.events[n++] = seen.events[0];
        chg.reason = seen.reason;
        chg.message = seen.message;
        chg.set_ready_time = seen.set_ready_time;
    } else if (pending_news(&it->obs,
                            row->phase != chg.phase
                                ? (chg.reason ? chg.reason : "")
                                : shown.reason,
                            chg.message ? chg.message : shown.message)) {
        /* Why it is not ready yet (e.g. Unschedulable), in the same write
           as the events when there are any, else alone and without one. */
        chg.pending_reason = it->obs.reason;
        chg.pending_message = it->obs.message;
    }
    if (n > 0 || chg.pending_reason)
        write_change(it, row, &chg);
    /* else still PENDING with nothing new: the watch will report */
}

static void step_row(struct item *it, const struct sg_sandbox_row *row)
{
    struct sg_record_change chg;
    char backend[256];
    bool expired = row->expire_time > 0 && row->expire_time <= sg_now_ms();

    if (expired && row->phase != SG_PHASE_DELETING &&
        row->phase != SG_PHASE_DELETED) {
        chg = (struct sg_record_change){
            .phase = SG_PHASE_DELETING, .events = {SG_EVENT_EXPIRED},
            .reason = "TTLExpired", .message = "the sandbox's TTL passed",
            .set_delete_time = true};
        write_change(it, row, &chg);
        return;
    }
    switch (row->phase) {
    case SG_PHASE_ACCEPTED:
    case SG_PHASE_PROVISIONING:
        step_create(it, row);
        break;
    case SG_PHASE_READY:
        row_backend(row, backend, sizeof(backend));
        if (!it->obs.have)
            driver_get(it, backend);
        else if (it->obs.state != SG_DRIVER_STATE_RUNNING &&
                 observed_change(it, &chg))
            write_change(it, row, &chg);
        else
            item_drop(it);
        break;
    case SG_PHASE_DELETING:
        if (it->obs.have && it->obs.state == SG_DRIVER_STATE_GONE) {
            chg = (struct sg_record_change){
                .phase = SG_PHASE_DELETED, .events = {SG_EVENT_DELETED},
                .reason = "Deleted", .message = "sandbox deleted"};
            write_change(it, row, &chg);
        } else {
            row_backend(row, backend, sizeof(backend));
            driver_remove(it, backend);
        }
        break;
    case SG_PHASE_DELETED:
        /* A leftover object of a deleted sandbox (seen at resume). */
        if (it->obs.have && it->obs.state != SG_DRIVER_STATE_GONE)
            driver_remove(it, it->obs.backend);
        else
            item_drop(it);
        break;
    case SG_PHASE_FAILED:
    default:
        item_drop(it);
        break;
    }
}

static void step(struct item *it)
{
    struct sg_reconciler *rec = it->rec;
    struct sg_sandbox_row *row = NULL;
    struct sg_error err = SG_ERROR_INIT;
    int found;

    if (rec->stopping || it->retry_at)
        return;
    if (it->busy) {
        it->dirty = true;
        return;
    }
    it->dirty = false;
    atomic_fetch_add(&rec->steps, 1);
    if (it->row) {
        step_row(it, it->row);
        return;
    }
    found = sg_store_get_sandbox_copy(rec->store, it->id, &row, &err);
    if (found == 1) {
        /* Cache it: step_row may drop the item, which frees the row. */
        it->row = row;
        step_row(it, row);
        sg_error_reset(&err);
        return;
    }
    if (found < 0) {
        backoff(it, err.message);
    } else if (it->obs.have && it->obs.state != SG_DRIVER_STATE_GONE) {
        /* No record: a driver object with no sandbox is an orphan. */
        SG_WARN("sandbox %s: driver object without a record; removing",
                it->id);
        atomic_fetch_add(&rec->orphans, 1);
        driver_remove(it, it->obs.backend);
    } else {
        item_drop(it);
    }
    sg_error_reset(&err);
}

static void step_id(struct sg_reconciler *rec, const char *id)
{
    struct item *it = item_get(rec, id);

    if (it)
        step(it);
    else
        SG_ERROR("sandbox %s: out of memory; it waits for the next resume",
                 id);
}

/* ---- kicks, watch, timers -------------------------------------------- */

struct kick_msg {
    struct sg_reconciler *rec;
    struct sg_sandbox_row *row; /* the row as just written, or NULL */
    char id[];
};

static void kick_on_loop(void *arg)
{
    struct kick_msg *m = arg;
    struct item *it = m->rec->stopping ? NULL : item_get(m->rec, m->id);

    if (it) {
        /* A kick says the row changed: use the row it carries, or read
           the store again. */
        if (m->row)
            item_take_row(it, m->row);
        else
            item_forget_row(it);
        m->row = NULL;
        step(it);
    }
    sg_sandbox_row_free(m->row);
    free(m);
}

static void kick(struct sg_reconciler *rec, const char *id,
                 const struct sg_sandbox_row *row)
{
    size_t len = strlen(id);
    struct kick_msg *m = malloc(sizeof(*m) + len + 1);

    if (!m)
        return; /* the next resume or TTL scan finds it */
    m->rec = rec;
    /* Without a copy the loop reads the store: correct, only slower. */
    m->row = row ? sg_sandbox_row_copy(row) : NULL;
    memcpy(m->id, id, len + 1);
    if (sg_loop_post(rec->queue, kick_on_loop, m) < 0) {
        sg_sandbox_row_free(m->row);
        free(m);
    }
}

void sg_reconciler_kick(struct sg_reconciler *rec, const char *id)
{
    kick(rec, id, NULL);
}

void sg_reconciler_kick_row(struct sg_reconciler *rec,
                            const struct sg_sandbox_row *row)
{
    kick(rec, row->id, row);
}

static void on_watch(void *opaque, const struct sg_driver_status *st)
{
    struct sg_reconciler *rec = opaque;
    struct item *it;

    if (rec->stopping || !st->id)
        return;
    it = item_get(rec, st->id);
    if (!it)
        return;
    obs_set(&it->obs, st);
    step(it);
}

/* Ids collected by a listing; stepped after the listing returns, because
   a store visitor must not read the store itself. */
struct id_list {
    char **ids;
    size_t n;
    size_t cap;
};

static int collect_id(void *opaque, const struct sg_sandbox_row *row)
{
    struct id_list *l = opaque;
    char *id;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **ids = realloc(l->ids, cap * sizeof(*ids));
        if (!ids)
            return 1;
        l->ids = ids;
        l->cap = cap;
    }
    id = strdup(row->id);
    if (!id)
        return 1;
    l->ids[l->n++] = id;
    return 0;
}

/* Step every collected id (unless step is false), then free the list. */
static void step_ids(struct sg_reconciler *rec, struct id_list *l, bool step)
{
    for (size_t i = 0; i < l->n; i++) {
        if (step && !rec->stopping)
            step_id(rec, l->ids[i]);
        free(l->ids[i]);
    }
    free(l->ids);
    memset(l, 0, sizeof(*l));
}

static void ttl_scan(struct sg_reconciler *rec)
{
    struct sg_sandbox_filter f = {
        .phases = SG_PHASES_ACTIVE & ~SG_PHASE_BIT(SG_PHASE_DELETING),
        .expire_before = sg_now_ms()};
    struct sg_error err = SG_ERROR_INIT;
    struct id_list l = {0};

    if (sg_store_list_sandboxes(rec->store, &f, NULL, TTL_SCAN_MAX,
                                collect_id, &l, &err) < 0)
        SG_WARN("TTL scan failed: %s", err.message);
    step_ids(rec, &l, true);
    sg_error_reset(&err);
}

static int retry_due(void *opaque, const char *key, void *value)
{
    struct item *it = value;
    uint64_t now = *(uint64_t *)opaque;

    (void)key;
    if (it->retry_at && (uint64_t)it->retry_at <= now) {
        it->retry_at = 0;
        it->dirty = true; /* picked up below, outside the iteration */
    }
    return 0;
}

static int collect_dirty(void *opaque, const char *key, void *value)
{
    struct item *it = value;
    struct item ***cursor = opaque;

    (void)key;
    if (it->dirty && !it->busy)
        *(*cursor)++ = it;
    return 0;
}

/*
 * One page of a resync pass: forget what the driver last said about each
 * provisioning or ready sandbox, so that its next step asks again (get, or
 * an idempotent create for one still provisioning). Busy ones are skipped:
 * their step in flight brings fresh news.
 */
static void resync_page(struct sg_reconciler *rec, uint64_t now)
{
    struct sg_sandbox_filter f = {
        .phases = SG_PHASE_BIT(SG_PHASE_PROVISIONING) |
                  SG_PHASE_BIT(SG_PHASE_READY)};
    struct sg_error err = SG_ERROR_INIT;
    struct id_list l = {0};
    ssize_t n;

    rec->resyncing = true;
    n = sg_store_list_sandboxes(rec->store, &f, rec->resync_after,
                                rec->cfg.resume_page, collect_id, &l, &err);
    for (size_t i = 0; n >= 0 && i < l.n; i++) {
        struct item *it = item_get(rec, l.ids[i]);

        if (it && !it->busy && !it->retry_at) {
            it->obs.have = false;
            it->created = false;
            item_forget_row(it);
        }
    }
    if (n > 0 && l.n > 0) {
        free(rec->resync_after);
        rec->resync_after = strdup(l.ids[l.n - 1]);
    }
    if (n < 0 || (size_t)n < rec->cfg.resume_page || !rec->resync_after) {
        if (n < 0)
            SG_WARN("resync: listing sandboxes failed: %s", err.message);
        else
            atomic_fetch_add(&rec->resyncs, 1);
        free(rec->resync_after);
        rec->resync_after = NULL;
        rec->resyncing = false;
        rec->next_resync = now + rec->cfg.resync_interval_ms;
    }
    step_ids(rec, &l, n >= 0);
    sg_error_reset(&err);
}

static void tick_cb(uv_timer_t *t)
{
    struct sg_reconciler *rec = t->data;
    uint64_t now = uv_now(rec->loop);
    size_t n = sg_strmap_size(rec->items);
    struct item **due, **cursor;

    sg_strmap_foreach(rec->items, retry_due, &now);
    /* step() may add or drop items: collect first, then step. */
    due = calloc(n + 1, sizeof(*due));
    if (due) {
        cursor = due;
        sg_strmap_foreach(rec->items, collect_dirty, &cursor);
        for (struct item **p = due; p < cursor; p++)
            step(*p);
        free(due);
    }
    if (now >= rec->next_ttl_scan) {
        rec->next_ttl_scan = now + rec->cfg.expiry_interval_ms;
        ttl_scan(rec);
    }
    if (rec->resyncing || now >= rec->next_resync)
        resync_page(rec, now);
}

/* ---- resume ---------------------------------------------------------- */

/* One page of active rows per loop turn, so requests keep flowing. */
static void resume_page_cb(uv_timer_t *t)
{
    struct sg_reconciler *rec = t->data;
    struct sg_sandbox_filter f = {.phases = SG_PHASES_ACTIVE};
    struct sg_error err = SG_ERROR_INIT;
    struct id_list l = {0};
    ssize_t n;

    n = sg_store_list_sandboxes(rec->store, &f, rec->resume_after,
                                rec->cfg.resume_page, collect_id, &l, &err);
    if (n >= 0 && l.n < (size_t)n) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        n = -1;
    }
    if (n > 0) {
        char *last = strdup(l.ids[l.n - 1]);
        if (last) {
            free(rec->resume_after);
            rec->resume_after = last;
        } else {
            n = -1;
        }
    }
    step_ids(rec, &l, n >= 0);
    if (n < 0) {
        SG_WARN("resume: listing sandboxes failed: %s; retrying",
                err.message);
        uv_timer_start(&rec->resume_timer, resume_page_cb,
                       rec->cfg.retry_max_ms, 0);
    } else if ((size_t)n == rec->cfg.resume_page) {
        uv_timer_start(&rec->resume_timer, resume_page_cb, 0, 0);
    } else {
        atomic_store(&rec->resumed, true);
        SG_INFO("resume: every active sandbox has been looked at");
    }
    sg_error_reset(&err);
}

static void on_list(void *opaque, enum sg_driver_result result,
                    const struct sg_driver_status *items, size_t n_items,
                    const char *message)
{
    struct sg_reconciler *rec = opaque;

    if (rec->stopping)
        return;
    if (result != SG_DRIVER_OK) {
        /* Resume anyway; orphans are found at the next start. */
        SG_WARN("resume: the driver could not list its objects: %s",
                message ? message : "");
    } else {
        SG_INFO("resume: the driver manages %zu objects", n_items);
        for (size_t i = 0; i < n_items; i++) {
            struct item *it = item_get(rec, items[i].id);
            if (it)
                obs_set(&it->obs, &items[i]);
        }
        /* Objects listed but not active in the store are stepped too. */
        for (size_t i = 0; i < n_items; i++) {
            struct item *it = sg_strmap_get(rec->items, items[i].id);
            if (it)
                step(it);
        }
    }
    uv_timer_start(&rec->resume_timer, resume_page_cb, 0, 0);
}

/* ---- lifecycle ------------------------------------------------------- */

static void apply_defaults(struct sg_reconciler_config *c)
{
    if (!c->expiry_interval_ms)
        c->expiry_interval_ms = 1000;
    if (!c->retry_base_ms)
        c->retry_base_ms = 200;
    if (!c->retry_max_ms)
        c->retry_max_ms = 30000;
    if (!c->resume_page)
        c->resume_page = 500;
}

static void apply_resync_default(struct sg_reconciler_config *c,
                                 struct sg_driver *driver)
{
    if (!c->resync_interval_ms)
        c->resync_interval_ms =
            (sg_driver_caps(driver) & SG_DRIVER_CAP_WATCH) ? 60000 : 2000;
}

struct sg_reconciler *sg_reconciler_start(uv_loop_t *loop,
                                          struct sg_store *store,
                                          struct sg_driver *driver,
                                          const struct sg_reconciler_config *cfg,
                                          struct sg_error *err)
{
    struct sg_reconciler *rec = calloc(1, sizeof(*rec));

    if (!rec) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    rec->loop = loop;
    rec->store = store;
    rec->driver = driver;
    rec->cfg = *cfg;
    apply_defaults(&rec->cfg);
    apply_resync_default(&rec->cfg, driver);
    rec->items = sg_strmap_new();
    if (!rec->items) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        free(rec);
        return NULL;
    }
    rec->queue = sg_loop_queue_new(loop, err);
    if (!rec->queue) {
        sg_strmap_free(rec->items);
        free(rec);
        return NULL;
    }
    uv_timer_init(loop, &rec->tick);
    uv_timer_init(loop, &rec->resume_timer);
    rec->tick.data = rec;
    rec->resume_timer.data = rec;

    if ((sg_driver_caps(driver) & SG_DRIVER_CAP_WATCH) &&
        sg_driver_watch(driver, on_watch, rec, err) < 0)
        goto fail;
    if (sg_driver_list(driver, on_list, rec, NULL) < 0)
        uv_timer_start(&rec->resume_timer, resume_page_cb, 0, 0);
    rec->next_resync = uv_now(loop) + rec->cfg.resync_interval_ms;
    uv_timer_start(&rec->tick, tick_cb, TICK_MS, TICK_MS);
    return rec;

 fail:
    sg_reconciler_stop(rec);
    /* The handles close on the next loop turn; free after that. */
    uv_run(loop, UV_RUN_NOWAIT);
    sg_reconciler_free(rec);
    return NULL;
}

void sg_reconciler_stop(struct sg_reconciler *rec)
{
    if (!rec || rec->stopping)
        return;
    rec->stopping = true;
    uv_timer_stop(&rec->tick);
    uv_timer_stop(&rec->resume_timer);
    uv_close((uv_handle_t *)&rec->tick, NULL);
    uv_close((uv_handle_t *)&rec->resume_timer, NULL);
    /* Results already posted run now and see stopping; later posts fail
       and their senders free what they carry. */
    sg_loop_queue_close(rec->queue);
}

static int free_item(void *opaque, const char *key, void *value)
{
    (void)opaque;
    (void)key;
    item_free(value);
    return 0;
}

void sg_reconciler_free(struct sg_reconciler *rec)
{
    if (!rec)
        return;
    sg_strmap_foreach(rec->items, free_item, NULL);
    sg_strmap_free(rec->items);
    free(rec->resume_after);
    free(rec->resync_after);
    free(rec);
}

void sg_reconciler_get_stats(struct sg_reconciler *rec,
                             struct sg_reconciler_stats *out)
{
    out->steps = atomic_load(&rec->steps);
    out->writes = atomic_load(&rec->writes);
    out->driver_calls = atomic_load(&rec->driver_calls);
    out->retries = atomic_load(&rec->retries);
    out->orphans = atomic_load(&rec->orphans);
    out->resyncs = atomic_load(&rec->resyncs);
    out->active = atomic_load(&rec->active);
    out->resumed = atomic_load(&rec->resumed);
}
