/*
 * noop_driver.c: the "noop" driver (see noop_driver.h).
 *
 * Every answer is deferred: an op appends a completion (with a snapshot of
 * the state it reports) to a FIFO queue and starts one uv_idle handle,
 * whose callback delivers the queue in order. A create's ready timer starts
 * only when its PENDING answer is delivered, so RUNNING (through watch)
 * always follows PENDING (through done).
 *
 * Memory goes through the host API, as an out-of-tree driver's would,
 * except the id map (common/strmap).
 */
#include "internal.h"

#include "noop_driver.h"

#include "noop_placement.h"
#include "strmap.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>

#define NOOP_NAME "noop"

struct noop;

/* One sandbox. Freed in the close callback of its timer. */
struct noop_entry {
    uv_timer_t timer; /* PENDING -> RUNNING; data = this entry */
    struct noop *noop;
    char *id;
    char *backend_object; /* "noop/<id>" */
    char *message;        /* FAILED or PENDING: the injected message */
    enum sg_driver_state state;
    const char *reason; /* static */
    bool timer_started;
    bool stuck;         /* "pending": never becomes ready */
};

/* A reported state, owning its strings. */
struct noop_snap {
    char *id;
    enum sg_driver_state state;
    const char *reason; /* static */
    char *message;      /* NULL means "" */
    char *backend_object;
    int exit_code;
};

struct noop_completion {
    struct noop_completion *next;
    sg_driver_done_cb done;      /* create, remove, get */
    sg_driver_list_cb list_done; /* list */
    void *opaque;
    enum sg_driver_result result;
    char *errmsg;            /* result != SG_DRIVER_OK */
    struct noop_snap *snaps; /* done: one; list: n_snaps */
    size_t n_snaps;
    bool start_ready; /* a create: start the ready timer */
};

struct noop {
    const struct sg_driver_host *host;
    uint64_t ready_delay_ms;
    uv_idle_t idle; /* delivers the completion queue */
    struct noop_completion *head;
    struct noop_completion *tail;
    struct sg_strmap *entries; /* id -> struct noop_entry */
    sg_driver_watch_cb watch_cb;
    void *watch_opaque;
    bool closed;
};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static void *zalloc(const struct sg_driver_host *host, size_t size)
{
    void *p = host->alloc(size);

    if (p != NULL)
        memset(p, 0, size);
    return p;
}

/*
 * Parse text as one JSON object. Returns it, or NULL with *errmsg set
 * (what names the document in the message).
 */
static json_t *object_parse(const struct sg_driver_host *host, const char *text,
                            const char *what, char **errmsg)
{
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL) {
        *errmsg = noop_msg(host, "%s: invalid JSON at line %d: %s", what,
                          jerr.line, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        *errmsg = noop_msg(host, "%s: expected a JSON object", what);
        json_decref(root);
        return NULL;
    }
    return root;
}

/*
 * Check a per-sandbox block. On success *fail is the injected message
 * (host-allocated) or NULL, and *pending says whether it is a "pending"
 * message rather than a "fail" one. Returns 0, or -1 with *errmsg set.
 */
static int config_parse(const struct sg_driver_host *host,
                        const char *config_json, char **fail, bool *pending,
                        char **errmsg)
{
    json_t *root;
    const char *key;
    json_t *value;
    int rc = -1;

    *fail = NULL;
    *pending = false;
    root = object_parse(host, config_json != NULL ? config_json : "{}",
                        NOOP_NAME, errmsg);
    if (root == NULL)
        return -1;
    json_object_foreach(root, key, value) {
        if (STREQ(key, "placement")) {
            if (noop_placement_load(host, value, NULL, NULL, NULL,
                                    errmsg) < 0)
                goto cleanup;
            continue;
        }
        if (!STREQ(key, "fail") && !STREQ(key, "pending")) {
            *errmsg = noop_msg(host, NOOP_NAME ".%s: unknown key", key);
            goto cleanup;
        }
        if (!json_is_string(value) || json_string_length(value) == 0) {
            *errmsg = noop_msg(host,
                              NOOP_NAME ".%s: expected a non-empty string",
                              key);
            goto cleanup;
        }
    }
    if (json_object_get(root, "fail") && json_object_get(root, "pending")) {
        *errmsg = noop_msg(host, NOOP_NAME ".pending: not with fail");
        goto cleanup;
    }
    value = json_object_get(root, "fail");
    if (value == NULL) {
        value = json_object_get(root, "pending");
        *pending = value != NULL;
    }
    if (value != NULL) {
        *fail = host->strdup(json_string_value(value));
        if (*fail == NULL) {
            *errmsg = noop_msg(host, NOOP_NAME ": out of memory");
            goto cleanup;
        }
    }
    rc = 0;

 cleanup:
    json_decref(root);
    return rc;
}

static int settings_parse(struct noop *p, const char *settings_json,
                          char **errmsg)
{
    json_t *root;
    const char *key;
    json_t *value;
    int rc = -1;

    root = object_parse(p->host, settings_json, NOOP_NAME " settings", errmsg);
    if (root == NULL)
        return -1;
    json_object_foreach(root, key, value) {
        if (!STREQ(key, "ready_delay_ms")) {
            *errmsg =
                noop_msg(p->host, NOOP_NAME " settings: unknown key '%s'", key);
            goto cleanup;
        }
        if (!json_is_integer(value) || json_integer_value(value) < 0 ||
            json_integer_value(value) > (json_int_t)UINT32_MAX) {
            *errmsg = noop_msg(p->host,
                              NOOP_NAME " settings: ready_delay_ms: expected "
                                        "an integer from 0 to %" PRIu32,
                              UINT32_MAX);
            goto cleanup;
        }
        p->ready_delay_ms = (uint64_t)json_integer_value(value);
    }
    rc = 0;

 cleanup:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The map                                                             */
/* ------------------------------------------------------------------ */

static void entry_free(struct noop_entry *e)
{
    const struct sg_driver_host *host = e->noop->host;

    host->free(e->id);
    host->free(e->backend_object);
    host->free(e->message);
    host->free(e);
}

static void entry_closed(uv_handle_t *h)
{
    entry_free(h->data);
}

/* Close e's timer; e is freed in the callback. */
static void entry_close(struct noop_entry *e)
{
    uv_close((uv_handle_t *)&e->timer, entry_closed);
}

/* ------------------------------------------------------------------ */
/* Completions                                                         */
/* ------------------------------------------------------------------ */

static void snap_clear(const struct sg_driver_host *host, struct noop_snap *s)
{
    host->free(s->id);
    host->free(s->message);
    host->free(s->backend_object);
}

static int snap_of_entry(const struct sg_driver_host *host, struct noop_snap *s,
                         const struct noop_entry *e)
{
    s->id = host->strdup(e->id);
    s->backend_object = host->strdup(e->backend_object);
    s->message = e->message != NULL ? host->strdup(e->message) : NULL;
    s->state = e->state;
    s->reason = e->reason;
    s->exit_code = e->state == SG_DRIVER_STATE_FAILED ? -1 : 0;
    if (s->id == NULL || s->backend_object == NULL ||
        (e->message != NULL && s->message == NULL)) {
        snap_clear(host, s);
        return -1;
    }
    return 0;
}

static int snap_of_gone(const struct sg_driver_host *host, struct noop_snap *s,
                        const char *id, const char *reason)
{
    memset(s, 0, sizeof(*s));
    s->id = host->strdup(id);
    s->state = SG_DRIVER_STATE_GONE;
    s->reason = reason;
    return s->id != NULL ? 0 : -1;
}

static void status_of_snap(struct sg_driver_status *st,
                           const struct noop_snap *s)
{
    st->id = s->id;
    st->state = s->state;
    st->reason = s->reason;
    st->message = s->message != NULL ? s->message : "";
    st->backend_object = s->backend_object != NULL ? s->backend_object : "";
    st->exit_code = s->exit_code;
}

static void completion_free(const struct sg_driver_host *host,
                            struct noop_completion *c)
{
    for (size_t i = 0; i < c->n_snaps; i++)
        snap_clear(host, &c->snaps[i]);
    host->free(c->snaps);
    host->free(c->errmsg);
    host->free(c);
}

/* A completion with room for n snapshots (zero-filled). */
static struct noop_completion *completion_new(struct noop *p, size_t n)
{
    struct noop_completion *c = zalloc(p->host, sizeof(*c));

    if (c == NULL)
        return NULL;
    if (n > 0) {
        c->snaps = zalloc(p->host, n * sizeof(*c->snaps));
        if (c->snaps == NULL) {
            p->host->free(c);
            return NULL;
        }
    }
    return c;
}

static void on_ready(uv_timer_t *t);

static void deliver(struct noop *p, struct noop_completion *c)
{
    struct sg_driver_status one;
    struct sg_driver_status *items = NULL;

    if (c->list_done != NULL) {
        if (c->n_snaps > 0) {
            items = zalloc(p->host, c->n_snaps * sizeof(*items));
            if (items == NULL) {
                c->list_done(c->opaque, SG_DRIVER_ERR_RETRY, NULL, 0,
                             NOOP_NAME ": out of memory");
                return;
            }
        }
        for (size_t i = 0; i < c->n_snaps; i++)
            status_of_snap(&items[i], &c->snaps[i]);
        c->list_done(c->opaque, SG_DRIVER_OK, items, c->n_snaps, "");
        p->host->free(items);
        return;
    }
    if (c->result != SG_DRIVER_OK) {
        c->done(c->opaque, c->result, NULL, c->errmsg);
        return;
    }
    if (c->start_ready) {
        struct noop_entry *e = sg_strmap_get(p->entries, c->snaps[0].id);

        if (e != NULL && e->state == SG_DRIVER_STATE_PENDING &&
            !e->stuck && !e->timer_started) {
            e->timer_started = true;
            uv_timer_start(&e->timer, on_ready, p->ready_delay_ms, 0);
        }
    }
    status_of_snap(&one, &c->snaps[0]);
    c->done(c->opaque, SG_DRIVER_OK, &one, "");
}

static void on_idle(uv_idle_t *h)
{
    struct noop *p = h->data;
    /* Only what is queued now: answers queued by these callbacks wait for
       the next turn, so a callback that always asks again cannot starve
       the loop. */
    struct noop_completion *c = p->head;

    p->head = p->tail = NULL;
    while (c != NULL) {
        struct noop_completion *next = c->next;

        if (!p->closed)
            deliver(p, c); /* a callback may close the driver */
        completion_free(p->host, c);
        c = next;
    }
    if (p->head == NULL && !p->closed)
        uv_idle_stop(&p->idle);
}

static void enqueue(struct noop *p, struct noop_completion *c)
{
    c->next = NULL;
    if (p->tail != NULL)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    uv_idle_start(&p->idle, on_idle);
}

/* Queue a done(result, NULL, msg); msg is host-allocated and taken. */
static int enqueue_error(struct noop *p, enum sg_driver_result result,
                         char *msg, sg_driver_done_cb done, void *opaque)
{
    struct noop_completion *c;

    if (msg == NULL)
        return -1;
    c = completion_new(p, 0);
    if (c == NULL) {
        p->host->free(msg);
        return -1;
    }
    c->done = done;
    c->opaque = opaque;
    c->result = result;
    c->errmsg = msg;
    enqueue(p, c);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Ops                                                                 */
/* ------------------------------------------------------------------ */

static void on_ready(uv_timer_t *t)
{
    struct noop_entry *e = t->data;
    struct noop *p = e->noop;
    struct sg_driver_status st;

    e->state = SG_DRIVER_STATE_RUNNING;
    e->reason = "Started";
    if (p->watch_cb == NULL)
        return;
    st.id = e->id;
    st.state = e->state;
    st.reason = e->reason;
    st.message = "";
    st.backend_object = e->backend_object;
    st.exit_code = 0;
    p->watch_cb(p->watch_opaque, &st); /* may remove e: do not touch it */
}

static int noop_open(void *priv, const struct sg_driver_host *host,
                     const char *settings_json, const char *state_dir,
                     char **errmsg)
{
    struct noop *p = priv;

    p->host = host;
    if (settings_parse(p, settings_json, errmsg) < 0)
        return -1;
    p->entries = sg_strmap_new();
    if (p->entries == NULL) {
        *errmsg = noop_msg(host, NOOP_NAME ": out of memory");
        return -1;
    }
    uv_idle_init(host->loop, &p->idle); /* cannot fail for idle handles */
    p->idle.data = p;
    return 0;
}

static int entry_close_each(void *opaque, const char *id, void *value)
{
    entry_close(value);
    return 0;
}

static void noop_close(void *priv)
{
    struct noop *p = priv;
    struct noop_completion *c = p->head;

    p->closed = true;
    p->watch_cb = NULL;
    while (c != NULL) { /* dropped: they never run */
        struct noop_completion *next = c->next;

        completion_free(p->host, c);
        c = next;
    }
    p->head = p->tail = NULL;
    uv_close((uv_handle_t *)&p->idle, NULL);
    sg_strmap_foreach(p->entries, entry_close_each, NULL);
    sg_strmap_free(p->entries);
    p->entries = NULL;
}

static int noop_config_validate(void *priv, const struct sg_driver_sandbox *sb,
                                char **errmsg)
{
    struct noop *p = priv;
    char *fail = NULL;
    bool pending;

    if (config_parse(p->host, sb->config_json, &fail, &pending, errmsg) < 0)
        return -1;
    p->host->free(fail);
    return 0;
}

/* The placement the caller wrote (noop_placement.h), and the fields. */
static int noop_describe(void *priv, const struct sg_driver_sandbox *sb,
                         struct sg_driver_placement *out, char **errmsg)
{
    struct noop *p = priv;
    const char *names[NOOP_PLACEMENT_KEYS + 2];
    size_t n = 0;
    size_t first_sub = SIZE_MAX; /* names[first_sub..] are in placement */
    json_t *root;
    json_t *placement;
    int rc = -1;

    root = object_parse(p->host, sb->config_json ? sb->config_json : "{}",
                        NOOP_NAME, errmsg);
    if (root == NULL)
        return -1;
    /* One of them at most (config_validate refuses both). */
    if (json_object_get(root, "fail") != NULL)
        names[n++] = "fail";
    else if (json_object_get(root, "pending") != NULL)
        names[n++] = "pending";
    placement = json_object_get(root, "placement");
    if (placement != NULL) {
        names[n++] = "placement";
        first_sub = n;
        if (noop_placement_load(p->host, placement, out, names, &n,
                                errmsg) < 0)
            goto cleanup;
    }
    out->fields = zalloc(p->host, (n ? n : 1) * sizeof(char *));
    if (out->fields == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        char path[64];

        /* Sorted: "fail" or "pending" < "placement" < "placement.<key>". */
        snprintf(path, sizeof(path), "%s%s",
                 i >= first_sub ? "placement." : "", names[i]);
        out->fields[i] = p->host->strdup(path);
        if (out->fields[i] == NULL)
            goto nomem;
        out->n_fields = i + 1;
    }
    rc = 0;
    goto cleanup;

 nomem:
    *errmsg = noop_msg(p->host, NOOP_NAME ": out of memory");
 cleanup:
    json_decref(root);
    return rc;
}

static int noop_create(void *priv, const struct sg_driver_sandbox *sb,
                       sg_driver_done_cb done, void *opaque)
{
    struct noop *p = priv;
    struct noop_completion *c = NULL;
    struct noop_entry *old;
    struct noop_entry *e = NULL;
    char *fail = NULL;
    char *errmsg = NULL;
    bool pending = false;
    char backend[sizeof(NOOP_NAME "/") + 64];

    if (p->closed)
        return -1;
    if (sb->id == NULL || sb->id[0] == '\0')
        return enqueue_error(p, SG_DRIVER_ERR_INVALID,
                             noop_msg(p->host, NOOP_NAME ": sandbox has no id"),
                             done, opaque);
    c = completion_new(p, 1);
    if (c == NULL)
        return -1;
    c->done = done;
    c->opaque = opaque;
    c->start_ready = true;

    old = sg_strmap_get(p->entries, sb->id);
    if (old != NULL) { /* idempotent: the current state */
        if (snap_of_entry(p->host, &c->snaps[0], old) < 0)
            goto error;
        c->n_snaps = 1;
        enqueue(p, c);
        return 0;
    }
    if (config_parse(p->host, sb->config_json, &fail, &pending, &errmsg) <
        0) {
        completion_free(p->host, c);
        return enqueue_error(p, SG_DRIVER_ERR_INVALID, errmsg, done, opaque);
    }

    e = zalloc(p->host, sizeof(*e));
    if (e == NULL)
        goto error;
    e->noop = p;
    e->message = fail;
    fail = NULL;
    e->id = p->host->strdup(sb->id);
    snprintf(backend, sizeof(backend), NOOP_NAME "/%.63s", sb->id);
    e->backend_object = p->host->strdup(backend);
    if (e->id == NULL || e->backend_object == NULL)
        goto error;
    if (e->message != NULL && pending) {
        /* Provisioning that never ends, and says why. */
        e->state = SG_DRIVER_STATE_PENDING;
        e->reason = "InjectedPending";
        e->stuck = true;
    } else if (e->message != NULL) {
        e->state = SG_DRIVER_STATE_FAILED;
        e->reason = "InjectedFailure";
    } else if (p->ready_delay_ms == 0) {
        /* Nothing to wait for: running as soon as it exists. */
        e->state = SG_DRIVER_STATE_RUNNING;
        e->reason = "Started";
    } else {
        e->state = SG_DRIVER_STATE_PENDING;
        e->reason = "Created";
    }
    if (snap_of_entry(p->host, &c->snaps[0], e) < 0)
        goto error;
    c->n_snaps = 1;
    if (sg_strmap_put(p->entries, e->id, e) < 0)
        goto error;

    uv_timer_init(p->host->loop, &e->timer); /* cannot fail for timers */
    e->timer.data = e;
    enqueue(p, c);
    return 0;

 error:
    if (e != NULL)
        entry_free(e);
    p->host->free(fail);
    completion_free(p->host, c);
    return -1;
}

/* A done(GONE) or done(current state) answer for id. */
static int answer_one(struct noop *p, const char *id, bool drop,
                      sg_driver_done_cb done, void *opaque)
{
    struct noop_completion *c;
    struct noop_entry *e;
    int rc;

    if (p->closed)
        return -1;
    if (id == NULL || id[0] == '\0')
        return enqueue_error(p, SG_DRIVER_ERR_INVALID,
                             noop_msg(p->host, NOOP_NAME ": no sandbox id"),
                             done, opaque);
    c = completion_new(p, 1);
    if (c == NULL)
        return -1;
    c->done = done;
    c->opaque = opaque;
    e = sg_strmap_get(p->entries, id);
    if (e == NULL)
        rc = snap_of_gone(p->host, &c->snaps[0], id, "NotFound");
    else if (drop)
        rc = snap_of_gone(p->host, &c->snaps[0], id, "Deleted");
    else
        rc = snap_of_entry(p->host, &c->snaps[0], e);
    if (rc < 0) {
        completion_free(p->host, c);
        return -1;
    }
    c->n_snaps = 1;
    if (drop && e != NULL) {
        sg_strmap_remove(p->entries, id);
        entry_close(e);
    }
    enqueue(p, c);
    return 0;
}

static int noop_remove(void *priv, const char *id, const char *backend_object,
                       uint32_t grace_ms, sg_driver_done_cb done, void *opaque)
{
    return answer_one(priv, id, true, done, opaque);
}

static int noop_get(void *priv, const char *id, const char *backend_object,
                    sg_driver_done_cb done, void *opaque)
{
    return answer_one(priv, id, false, done, opaque);
}

/* sg_strmap_foreach: snapshot one entry into the list completion. */
static int snap_each(void *opaque, const char *id, void *value)
{
    struct noop_completion *c = opaque;
    struct noop_entry *e = value;

    if (snap_of_entry(e->noop->host, &c->snaps[c->n_snaps], e) < 0)
        return -1;
    c->n_snaps++;
    return 0;
}

static int noop_list(void *priv, sg_driver_list_cb done, void *opaque)
{
    struct noop *p = priv;
    struct noop_completion *c;
    size_t n;

    if (p->closed)
        return -1;
    n = sg_strmap_size(p->entries);
    c = completion_new(p, n);
    if (c == NULL)
        return -1;
    c->list_done = done;
    c->opaque = opaque;
    sg_strmap_foreach(p->entries, snap_each, c);
    if (c->n_snaps != n) { /* out of memory half way */
        completion_free(p->host, c);
        return -1;
    }
    enqueue(p, c);
    return 0;
}

static int noop_watch(void *priv, sg_driver_watch_cb cb, void *opaque,
                      char **errmsg)
{
    struct noop *p = priv;

    if (p->closed) {
        *errmsg = noop_msg(p->host, NOOP_NAME ": closed");
        return -1;
    }
    if (p->watch_cb != NULL) {
        *errmsg = noop_msg(p->host, NOOP_NAME ": a watcher is already "
                                             "registered");
        return -1;
    }
    p->watch_cb = cb;
    p->watch_opaque = opaque;
    return 0;
}

const struct sg_driver_ops sg_noop_driver = {
    .abi_major = SG_DRIVER_ABI_MAJOR,
    .abi_minor = SG_DRIVER_ABI_MINOR,
    .struct_size = sizeof(struct sg_driver_ops),
    .name = NOOP_NAME,
    .caps = SG_DRIVER_CAP_WATCH,
    .priv_size = sizeof(struct noop),
    .open = noop_open,
    .close = noop_close,
    .config_validate = noop_config_validate,
    .describe = noop_describe,
    .create = noop_create,
    .remove = noop_remove,
    .get = noop_get,
    .list = noop_list,
    .watch = noop_watch,
};
