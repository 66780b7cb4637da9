/*
 * k8s_driver.c: the kubernetes driver.
 *
 * A sandbox is backed by one Sandbox, or (allocation SandboxClaim) by one
 * SandboxClaim against a warm pool, whose controller binds a pool member
 * or creates a cold Sandbox; the claim's status mirrors the bound
 * Sandbox's Ready condition and pod IPs, so the claim is all we follow.
 *
 * One informer per namespace in use and kind (or one cluster-wide): a
 * paged LIST of the objects carrying our gateway id, then a WATCH from the
 * list's resourceVersion with bookmarks, resumed from the last
 * resourceVersion when it ends and re-listed on 410 Expired. Claims are
 * watched only in namespaces where one was created. The informers feed a
 * cache keyed by sandbox id; get and list answer from it, and every state
 * change it sees goes to the gateway's watcher. create POSTs one object
 * (an AlreadyExists reads the object and adopts it when it carries our
 * id); remove sends one DELETE and answers GONE when the watch reports the
 * object gone.
 *
 * A Sandbox with credential bindings gets a Secret first, and then owns it
 * (k8s_credsecret.h); remove deletes the Secret too, and the first list of
 * a namespace sweeps ownerless leftovers.
 *
 * The namespaces in use (and whether claims are in use there) are kept in
 * state_dir/namespaces, so that a restarted gateway watches them again
 * before it lists.
 */
#include "internal.h"

#include "k8s_driver.h"

#include "buf.h"
#include "error.h"
#include "k8s_client.h"
#include "k8s_config.h"
#include "k8s_credsecret.h"
#include "k8s_events.h"
#include "k8s_informer.h"
#include "k8s_objects.h"
#include "k8s_pools.h"
#include "k8s_secrets.h"
#include "strmap.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define DRIVER_NAME "kubernetes"
#define LOG(drv, lvl, ...) (drv)->host->log((lvl), DRIVER_NAME, __VA_ARGS__)
#define PATH_BUF 4096

struct kd_driver;

/* One cached Sandbox, keyed by sandbox id. */
struct kd_obj {
    struct k8s_observed o;
    uint64_t touched; /* drv->seq at its last update */
};

/* The informer of one kind in one namespace. */
struct kd_watch {
    struct kd_ns *ns;
    enum k8s_kind kind;
    struct k8s_informer *inf; /* NULL: this kind is not watched here */
    bool synced;              /* one full list done */
    struct sg_strmap *seen;   /* ids of the list in progress */
    uint64_t list_seq;        /* drv->seq when that list began */
};

/* A namespace in use ("" = every namespace), with a watch per kind. */
struct kd_ns {
    struct kd_driver *drv;
    struct kd_ns *next;
    char name[64];
    struct kd_watch w[2]; /* by enum k8s_kind */
};

enum kd_op_kind { OP_CREATE, OP_REMOVE, OP_GET, OP_LIST, OP_ANSWER };

/* A request of the gateway in progress. */
struct kd_op {
    struct kd_driver *drv;
    struct kd_op *next, *prev;
    enum kd_op_kind kind;
    char id[64];
    char ns[64];
    char name[K8S_NAME_MAX + 1];
    sg_driver_done_cb done;
    sg_driver_list_cb list;
    void *opaque;
    enum k8s_kind obj_kind; /* create, remove: the object's kind */
    char *body;             /* create: the object, when a read comes first */
    char *pool;             /* create of a claim naming a template: its */
    char *template_name;    /* warm pool, and the template it must run */
    /* create and remove of a Sandbox with credential bindings: the
       Secret (k8s_credsecret.h), its body (material: wiped on free), and
       the Sandbox's uid once known. */
    bool creds;
    char secret[K8S_CRED_NAME_MAX + 1];
    char *secret_body;
    size_t secret_len;
    char uid[64];
    struct k8s_call *call;
    bool waiting_sync;  /* get/list/remove: until the informer is synced */
    bool waiting_gone;  /* remove: until the watch says the object is gone */
    bool deleted;       /* remove: the DELETE was accepted */
    /* OP_ANSWER: a result to deliver on the next loop turn. */
    enum sg_driver_result result;
    bool have_status;
    struct k8s_observed status;
    char *message;
    uv_timer_t timer;
};

struct kd_driver {
    const struct sg_driver_host *host;
    uv_loop_t *loop;
    struct k8s_settings settings;
    char *default_ns;
    char *state_dir;
    struct k8s_client *client;
    struct k8s_events *events; /* pod Events (k8s_events.h) */
    struct k8s_pools *pools;   /* warm pools we keep (k8s_pools.h) */
    struct sg_strmap *objs;
    struct sg_strmap *unknown_deleted; /* names deleted by delete_unknown */
    struct kd_ns *nss;
    struct kd_op *ops;
    sg_driver_watch_cb watch_cb;
    void *watch_opaque;
    uint64_t seq; /* counts cache updates */
    bool closing;
};

static struct k8s_informer *ns_informer(struct kd_watch *w);
static void ops_sync_check(struct kd_driver *drv);
static int remove_send(struct kd_op *op);
static void creds_own(struct kd_op *op, const struct k8s_observed *o);
static void creds_drop(struct kd_op *op);
static int secret_delete(struct kd_op *op);
static struct kd_obj *obj_find(struct kd_driver *drv, const char *id);
static void secret_path(const char *ns, const char *name, char *out,
                        size_t size);
static int post_object(struct kd_op *op, const char *body);

static char *host_strdup_msg(struct kd_driver *drv, const char *msg)
{
    return drv->host->strdup(msg != NULL ? msg : "");
}

/* ---- status ---- */

static void fill_status(const struct k8s_observed *o, const char *id,
                        char *backend, size_t size, struct sg_driver_status *st)
{
    snprintf(backend, size, "kubernetes/%s/%s", o->namespace_name, o->name);
    st->id = id;
    st->state = o->state;
    st->reason = o->reason;
    st->message = o->message;
    st->backend_object = backend;
    st->exit_code = o->state == SG_DRIVER_STATE_FAILED ? -1 : 0;
}

static void notify(struct kd_driver *drv, const struct k8s_observed *o,
                   const char *id)
{
    char backend[192];
    struct sg_driver_status st;

    if (drv->watch_cb == NULL || drv->closing)
        return;
    fill_status(o, id, backend, sizeof(backend), &st);
    k8s_events_overlay(drv->events, &st);
    drv->watch_cb(drv->watch_opaque, &st);
}

static void notify_gone(struct kd_driver *drv, const char *id,
                        const struct k8s_observed *last)
{
    char backend[192];
    struct sg_driver_status st;

    if (drv->watch_cb == NULL || drv->closing)
        return;
    fill_status(last, id, backend, sizeof(backend), &st);
    st.state = SG_DRIVER_STATE_GONE;
    st.reason = "Deleted";
    st.message = "the Sandbox was deleted";
    st.exit_code = 0;
    drv->watch_cb(drv->watch_opaque, &st);
}

/* ---- ops bookkeeping ---- */

static void op_closed(uv_handle_t *h)
{
    struct kd_op *op = h->data;

    free(op->message);
    free(op->body);
    k8s_creds_body_free(op->secret_body, op->secret_len);
    free(op->pool);
    free(op->template_name);
    free(op);
}

static void op_free(struct kd_op *op)
{
    struct kd_driver *drv = op->drv;

    if (op->prev != NULL)
        op->prev->next = op->next;
    else
        drv->ops = op->next;
    if (op->next != NULL)
        op->next->prev = op->prev;
    k8s_call_cancel(op->call);
    op->call = NULL;
    uv_timer_stop(&op->timer);
    uv_close((uv_handle_t *)&op->timer, op_closed);
}

static struct kd_op *op_new(struct kd_driver *drv, enum kd_op_kind kind,
                            const char *id, sg_driver_done_cb done,
                            sg_driver_list_cb list, void *opaque)
{
    struct kd_op *op = calloc(1, sizeof(*op));

    if (op == NULL)
        return NULL;
    if (uv_timer_init(drv->loop, &op->timer) < 0) {
        free(op);
        return NULL;
    }
    op->timer.data = op;
    op->drv = drv;
    op->kind = kind;
    op->done = done;
    op->list = list;
    op->opaque = opaque;
    if (id != NULL)
        snprintf(op->id, sizeof(op->id), "%s", id);
    op->next = drv->ops;
    if (drv->ops != NULL)
        drv->ops->prev = op;
    drv->ops = op;
    return op;
}

/* Deliver op's result now (loop thread, never inside the op call). */
static void op_finish(struct kd_op *op, enum sg_driver_result result,
                      const struct k8s_observed *o, const char *message)
{
    struct kd_driver *drv = op->drv;
    sg_driver_done_cb done = op->done;
    void *opaque = op->opaque;
    char backend[192];
    char id[64];
    struct sg_driver_status st;
    struct k8s_observed gone;

    snprintf(id, sizeof(id), "%s", op->id);
    op_free(op);
    if (drv->closing || done == NULL)
        return;
    if (result != SG_DRIVER_OK) {
        done(opaque, result, NULL, message != NULL ? message : "");
        return;
    }
    if (o == NULL) {
        memset(&gone, 0, sizeof(gone));
        gone.state = SG_DRIVER_STATE_GONE;
        snprintf(gone.reason, sizeof(gone.reason), "NotFound");
        fill_status(&gone, id, backend, sizeof(backend), &st);
        st.backend_object = "";
    } else {
        fill_status(o, id, backend, sizeof(backend), &st);
        k8s_events_overlay(drv->events, &st);
    }
    done(opaque, SG_DRIVER_OK, &st, "");
}

static void on_answer(uv_timer_t *t)
{
    struct kd_op *op = t->data;

    op_finish(op, op->result, op->have_status ? &op->status : NULL,
              op->message);
}

/* Answer on the next loop turn: the ABI forbids answering inside the op. */
static int defer_answer(struct kd_driver *drv, const char *id,
                        enum sg_driver_result result,
                        const struct k8s_observed *o, const char *message,
                        sg_driver_done_cb done, void *opaque)
{
    struct kd_op *op = op_new(drv, OP_ANSWER, id, done, NULL, opaque);

    if (op == NULL)
        return -1;
    op->result = result;
    if (o != NULL) {
        op->status = *o;
        op->have_status = true;
    }
    op->message = strdup(message != NULL ? message : "");
    if (op->message == NULL) {
        op->done = NULL;
        op_free(op);
        return -1;
    }
    uv_timer_start(&op->timer, on_answer, 0, 0);
    return 0;
}

/* ---- namespaces in use ---- */

static struct kd_ns *ns_find(struct kd_driver *drv, const char *name)
{
    for (struct kd_ns *ns = drv->nss; ns != NULL; ns = ns->next) {
        if (STREQ(ns->name, name))
            return ns;
    }
    return NULL;
}

/* The informer that covers namespace name. */
static struct kd_ns *ns_covering(struct kd_driver *drv, const char *name)
{
    if (drv->settings.cluster_wide_watch)
        return drv->nss;
    return ns_find(drv, name);
}

static bool ns_synced(const struct kd_ns *ns)
{
    return ns->w[K8S_KIND_SANDBOX].synced &&
           (ns->w[K8S_KIND_CLAIM].inf == NULL || ns->w[K8S_KIND_CLAIM].synced);
}

static void ns_save(struct kd_driver *drv)
{
    char path[PATH_BUF];
    char tmp[PATH_BUF + 8];
    FILE *f;

    snprintf(path, sizeof(path), "%s/namespaces", drv->state_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL) {
        LOG(drv, SG_DRIVER_LOG_WARN, "cannot write '%s'", tmp);
        return;
    }
    for (struct kd_ns *ns = drv->nss; ns != NULL; ns = ns->next)
        fprintf(f, "%s%s\n", ns->name,
                ns->w[K8S_KIND_CLAIM].inf != NULL ? " claims" : "");
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        LOG(drv, SG_DRIVER_LOG_WARN, "cannot write '%s'", tmp);
        return;
    }
    fclose(f);
    if (rename(tmp, path) != 0)
        LOG(drv, SG_DRIVER_LOG_WARN, "cannot rename '%s'", tmp);
}

/* Start watching kind in ns. Returns 0, or -1 when out of memory. */
static int ns_watch(struct kd_ns *ns, enum k8s_kind kind)
{
    struct kd_watch *w = &ns->w[kind];

    if (w->inf != NULL)
        return 0;
    w->ns = ns;
    w->kind = kind;
    w->inf = ns_informer(w);
    if (w->inf == NULL)
        return -1;
    k8s_informer_start(w->inf);
    return 0;
}

static struct kd_ns *ns_add(struct kd_driver *drv, const char *name, bool save)
{
    struct kd_ns *ns = ns_find(drv, name);

    if (ns != NULL)
        return ns;
    ns = calloc(1, sizeof(*ns));
    if (ns == NULL)
        return NULL;
    ns->drv = drv;
    snprintf(ns->name, sizeof(ns->name), "%s", name);
    if (ns_watch(ns, K8S_KIND_SANDBOX) < 0) {
        free(ns);
        return NULL;
    }
    ns->next = drv->nss;
    drv->nss = ns;
    if (save)
        ns_save(drv);
    return ns;
}

/* The informers for namespace name and kind, started if needed. */
static struct kd_ns *ns_ensure(struct kd_driver *drv, const char *name,
                               enum k8s_kind kind)
{
    struct kd_ns *ns = drv->settings.cluster_wide_watch
                           ? drv->nss
                           : ns_add(drv, name, true);

    if (ns == NULL || ns->w[kind].inf != NULL)
        return ns;
    if (ns_watch(ns, kind) < 0)
        return NULL;
    ns_save(drv);
    return ns;
}

static void ns_load(struct kd_driver *drv)
{
    char path[PATH_BUF];
    char line[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/namespaces", drv->state_dir);
    f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t n = strlen(line);
        char *sp;
        struct kd_ns *ns;

        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        sp = strchr(line, ' ');
        if (sp != NULL)
            *sp++ = '\0';
        if (!k8s_is_dns_label(line))
            continue;
        ns = ns_add(drv, line, false);
        if (ns != NULL && sp != NULL && STREQ(sp, "claims") &&
            ns_watch(ns, K8S_KIND_CLAIM) < 0)
            LOG(drv, SG_DRIVER_LOG_WARN, "cannot watch the claims of '%s'",
                line);
    }
    fclose(f);
}

static bool all_synced(struct kd_driver *drv)
{
    for (struct kd_ns *ns = drv->nss; ns != NULL; ns = ns->next) {
        if (!ns_synced(ns))
            return false;
    }
    return true;
}

/* ---- the collection paths ---- */

static void collection_path(enum k8s_kind kind, const char *ns, char *out,
                            size_t size)
{
    if (ns[0] == '\0')
        snprintf(out, size, "%s/%s", k8s_kind_api(kind),
                 k8s_kind_plural(kind));
    else
        snprintf(out, size, "%s/namespaces/%s/%s", k8s_kind_api(kind), ns,
                 k8s_kind_plural(kind));
}

/* The path of one object, with an optional query. */
static void object_path(enum k8s_kind kind, const char *ns, const char *name,
                        const char *query, char *out, size_t size)
{
    snprintf(out, size, "%s/namespaces/%s/%s/%s%s%s", k8s_kind_api(kind), ns,
             k8s_kind_plural(kind), name, query[0] != '\0' ? "?" : "", query);
}

static void selector_query(struct kd_driver *drv, char *out, size_t size)
{
    static const char pfx[] = "labelSelector=";
    char sel[256];

    snprintf(sel, sizeof(sel), K8S_LABEL_GATEWAY_ID "=%s",
             drv->settings.gateway_id);
    memcpy(out, pfx, sizeof(pfx));
    k8s_query_escape(sel, out + sizeof(pfx) - 1, size - (sizeof(pfx) - 1));
}

/* A Status body's reason and message, for errors. */
static void status_text(const struct k8s_response *r, char *reason,
                        size_t rsize, char *msg, size_t msize, long *code)
{
    json_t *j = r->body != NULL ? json_loads(r->body, 0, NULL) : NULL;
    json_t *v;

    reason[0] = '\0';
    msg[0] = '\0';
    if (code != NULL)
        *code = 0;
    if (j == NULL) {
        if (r->status == 0)
            snprintf(msg, msize, "%s", r->error != NULL ? r->error : "");
        return;
    }
    v = json_object_get(j, "reason");
    snprintf(reason, rsize, "%s", json_is_string(v) ? json_string_value(v) : "");
    v = json_object_get(j, "message");
    snprintf(msg, msize, "%s", json_is_string(v) ? json_string_value(v) : "");
    v = json_object_get(j, "code");
    if (code != NULL && json_is_integer(v))
        *code = (long)json_integer_value(v);
    json_decref(j);
}

/* ---- the cache ---- */

static void delete_unknown(struct kd_driver *drv, const struct k8s_observed *o)
{
    char key[192];
    char q[64];
    char path[PATH_BUF];
    struct k8s_request req = {.method = "DELETE", .path = path};
    struct k8s_call *call;

    snprintf(key, sizeof(key), "%s/%s/%s", k8s_kind_plural(o->kind),
             o->namespace_name, o->name);
    if (sg_strmap_get(drv->unknown_deleted, key) != NULL)
        return;
    LOG(drv, SG_DRIVER_LOG_WARN,
        "%s %s carries our gateway id but no sandbox id%s",
        k8s_kind_name(o->kind), key,
        drv->settings.delete_unknown ? "; deleting it" : "");
    if (sg_strmap_put(drv->unknown_deleted, key, drv) < 0 ||
        !drv->settings.delete_unknown)
        return;
    snprintf(q, sizeof(q), "propagationPolicy=%s",
             drv->settings.propagation_policy);
    object_path(o->kind, o->namespace_name, o->name, q, path, sizeof(path));
    call = k8s_client_start(drv->client, &req, NULL, NULL);
    (void)call; /* fire and forget: the watch reports the outcome */
}

/* Waiting removes of id: answer GONE. */
static void removers_gone(struct kd_driver *drv, const char *id)
{
    struct kd_op *op = drv->ops;

    while (op != NULL) {
        struct kd_op *next = op->next;

        if (op->kind == OP_REMOVE && op->waiting_gone && STREQ(op->id, id))
            op_finish(op, SG_DRIVER_OK, NULL, NULL);
        op = next;
    }
}

/* An object seen by a list or a watch ADDED/MODIFIED. */
static void cache_upsert(struct kd_driver *drv, const struct k8s_observed *o)
{
    struct kd_obj *obj;
    bool changed;

    if (o->id[0] == '\0' || STRNEQ(o->gateway, drv->settings.gateway_id)) {
        if (STREQ(o->gateway, drv->settings.gateway_id))
            delete_unknown(drv, o);
        return;
    }
    obj = sg_strmap_get(drv->objs, o->id);
    if (obj == NULL) {
        obj = calloc(1, sizeof(*obj));
        if (obj == NULL || sg_strmap_put(drv->objs, o->id, obj) < 0) {
            free(obj);
            return;
        }
        changed = true;
    } else {
        changed = obj->o.state != o->state || STRNEQ(obj->o.reason, o->reason);
    }
    obj->o = *o;
    obj->touched = ++drv->seq;
    if (changed)
        notify(drv, o, o->id);
}

static void cache_delete(struct kd_driver *drv, const char *id)
{
    struct kd_obj *obj = sg_strmap_remove(drv->objs, id);
    char idc[64];

    snprintf(idc, sizeof(idc), "%s", id);
    if (obj != NULL) {
        notify_gone(drv, idc, &obj->o);
        free(obj);
    }
    k8s_events_forget(drv->events, idc);
    removers_gone(drv, idc);
}

struct sweep {
    struct kd_watch *w;
    char (*ids)[64];
    size_t n;
    size_t cap;
};

static int sweep_collect(void *opaque, const char *key, void *value)
{
    struct sweep *s = opaque;
    struct kd_obj *obj = value;
    const char *ns = s->w->ns->name;

    if (obj->o.kind != s->w->kind ||
        (ns[0] != '\0' && STRNEQ(obj->o.namespace_name, ns)))
        return 0;
    /* Seen by the list, or written after it began (a create's answer):
       not gone. */
    if (sg_strmap_get(s->w->seen, key) != NULL ||
        obj->touched > s->w->list_seq)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap != 0 ? s->cap * 2 : 16;
        char(*ids)[64] = realloc(s->ids, cap * sizeof(*ids));

        if (ids == NULL)
            return 1;
        s->ids = ids;
        s->cap = cap;
    }
    snprintf(s->ids[s->n++], 64, "%s", key);
    return 0;
}

/* After a full list: objects of the namespace and kind the list did not
   show are gone. */
static void watch_sweep(struct kd_watch *w)
{
    struct kd_driver *drv = w->ns->drv;
    struct sweep s = {.w = w};

    sg_strmap_foreach(drv->objs, sweep_collect, &s);
    for (size_t i = 0; i < s.n; i++)
        cache_delete(drv, s.ids[i]);
    free(s.ids);
}

/* ---- informers (k8s_informer.h) ---- */

static int observe(enum k8s_kind kind, json_t *obj, struct k8s_observed *o)
{
    return kind == K8S_KIND_CLAIM ? k8s_claim_observe(obj, o)
                                  : k8s_sandbox_observe(obj, o);
}

static void on_list_began(void *opaque)
{
    struct kd_watch *w = opaque;

    sg_strmap_free(w->seen);
    w->seen = sg_strmap_new();
    w->list_seq = w->ns->drv->seq;
}

static void on_list_object(void *opaque, json_t *item)
{
    struct kd_watch *w = opaque;
    struct k8s_observed o;

    if (w->seen == NULL)
        w->seen = sg_strmap_new();
    if (observe(w->kind, item, &o) < 0)
        return;
    if (o.id[0] != '\0' && w->seen != NULL &&
        sg_strmap_put(w->seen, o.id, w) < 0)
        return;
    cache_upsert(w->ns->drv, &o);
}

/* ---- leftover credentials Secrets ---- */

static bool create_in_flight(struct kd_driver *drv, const char *id)
{
    for (struct kd_op *op = drv->ops; op != NULL; op = op->next) {
        if (op->kind == OP_CREATE && STREQ(op->id, id))
            return true;
    }
    return false;
}

/* Whether a listed Secret of ours is a leftover: a credentials Secret
   with no owner (never owned: the garbage collector will not take it)
   whose Sandbox the synced cache does not know and no create is making. */
static bool secret_left_over(struct kd_driver *drv, json_t *md,
                             const char **ns, const char **name)
{
    const char *id = json_string_value(json_object_get(
        json_object_get(md, "labels"), K8S_LABEL_SANDBOX_ID));
    size_t len;

    *ns = json_string_value(json_object_get(md, "namespace"));
    *name = json_string_value(json_object_get(md, "name"));
    if (id == NULL || *ns == NULL || *name == NULL)
        return false;
    len = strlen(*name);
    if (len <= strlen(K8S_CRED_SUFFIX) ||
        STRNEQ(*name + len - strlen(K8S_CRED_SUFFIX), K8S_CRED_SUFFIX))
        return false;
    if (json_array_size(json_object_get(md, "ownerReferences")) > 0 ||
        json_object_get(md, "deletionTimestamp") != NULL)
        return false;
    return obj_find(drv, id) == NULL && !create_in_flight(drv, id);
}

static void on_secrets_listed(void *opaque, const struct k8s_response *r)
{
    struct kd_driver *drv = opaque;
    char path[PATH_BUF];
    struct k8s_request req = {.method = "DELETE", .path = path};
    json_t *j;
    json_t *item;
    size_t i;

    if (r->status != 200) {
        /* No right to list Secrets: the deployment delivers none. */
        LOG(drv, SG_DRIVER_LOG_DEBUG,
            "listing credentials Secrets: HTTP %ld; not swept", r->status);
        return;
    }
    j = json_loads(r->body, 0, NULL);
    json_array_foreach(json_object_get(j, "items"), i, item)
    {
        json_t *md = json_object_get(item, "metadata");
        const char *ns;
        const char *name;

        k8s_creds_secret_wipe(item);
        if (!secret_left_over(drv, md, &ns, &name))
            continue;
        LOG(drv, SG_DRIVER_LOG_INFO,
            "deleting the credentials Secret %s/%s: its Sandbox does not "
            "exist",
            ns, name);
        secret_path(ns, name, path, sizeof(path));
        (void)k8s_client_start(drv->client, &req, NULL, NULL);
    }
    json_decref(j);
}

/* Once per namespace, when its Sandboxes are listed: the Secrets of
   creates that never got as far as their Sandbox. */
static void sweep_secrets(struct kd_driver *drv, const char *ns)
{
    char q[320];
    char path[PATH_BUF];
    struct k8s_request req = {.method = "GET", .path = path};

    selector_query(drv, q, sizeof(q));
    if (ns[0] == '\0')
        snprintf(path, sizeof(path), "/api/v1/secrets?%s", q);
    else
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets?%s", ns,
                 q);
    (void)k8s_client_start(drv->client, &req, on_secrets_listed, drv);
}

static void on_list_done(void *opaque)
{
    struct kd_watch *w = opaque;
    struct kd_driver *drv = w->ns->drv;

    if (w->seen != NULL)
        watch_sweep(w);
    sg_strmap_free(w->seen);
    w->seen = NULL;
    if (w->kind == K8S_KIND_SANDBOX && !w->synced)
        sweep_secrets(drv, w->ns->name);
    w->synced = true;
    /* Pod events name pods: resolvable once the Sandboxes are known. */
    if (w->kind == K8S_KIND_SANDBOX &&
        k8s_events_watch_namespace(drv->events, w->ns->name) < 0)
        LOG(drv, SG_DRIVER_LOG_WARN, "cannot watch the events of '%s'",
            w->ns->name);
    ops_sync_check(drv);
}

static void on_watch_event(void *opaque, const char *type, json_t *obj)
{
    struct kd_watch *w = opaque;
    struct k8s_observed o;

    if (observe(w->kind, obj, &o) != 0)
        return;
    if (STREQ(type, "DELETED")) {
        if (o.id[0] != '\0')
            cache_delete(w->ns->drv, o.id);
    } else if (STREQ(type, "ADDED") || STREQ(type, "MODIFIED")) {
        cache_upsert(w->ns->drv, &o);
    }
}

/* A failure's Status reason and message (or transport error), for the
   log. */
static void failure_detail(void *opaque, bool watch,
                           const struct k8s_response *r, char *out,
                           size_t size)
{
    char reason[64], msg[256];

    (void)opaque;
    status_text(r, reason, sizeof(reason), msg, sizeof(msg), NULL);
    snprintf(out, size, "%s %s", reason,
             watch && r->error != NULL ? r->error : msg);
}

static struct k8s_informer *ns_informer(struct kd_watch *w)
{
    struct kd_driver *drv = w->ns->drv;
    bool claims = w->kind == K8S_KIND_CLAIM;
    char coll[256], sel[800];
    struct k8s_informer_config cfg = {
        .collection = coll,
        .query = sel,
        .name = w->ns->name,
        .log_what = claims ? "claims of namespace" : "namespace",
        .log_watch = claims ? "claim watch" : "watch",
        .list_kind = claims ? "a SandboxClaimList" : "a SandboxList",
        .list_began = on_list_began,
        .list_object = on_list_object,
        .list_done = on_list_done,
        .watch_event = on_watch_event,
        .detail = failure_detail,
        .opaque = w,
    };

    collection_path(w->kind, w->ns->name, coll, sizeof(coll));
    selector_query(drv, sel, sizeof(sel));
    return k8s_informer_new(drv->loop, drv->host, drv->client, &drv->settings,
                            &cfg);
}

/* ---- waiting ops ---- */

static struct kd_obj *obj_find(struct kd_driver *drv, const char *id)
{
    return k8s_id_valid(id) ? sg_strmap_get(drv->objs, id) : NULL;
}

struct pod_search {
    const char *ns;
    const char *pod;
    struct kd_obj *found;
};

static int pod_search_one(void *opaque, const char *key, void *value)
{
    struct pod_search *q = opaque;
    struct kd_obj *obj = value;

    (void)key;
    if (STREQ(obj->o.name, q->pod) && STREQ(obj->o.namespace_name, q->ns)) {
        q->found = obj;
        return 1;
    }
    return 0;
}

struct collect {
    struct sg_driver_status *items;
    char (*backends)[192];
    size_t n;
};

static int collect_obj(void *opaque, const char *key, void *value)
{
    struct collect *c = opaque;
    struct kd_obj *obj = value;

    fill_status(&obj->o, obj->o.id, c->backends[c->n], 192, &c->items[c->n]);
    c->n++;
    (void)key;
    return 0;
}

static void answer_list(struct kd_op *op)
{
    struct kd_driver *drv = op->drv;
    size_t n = sg_strmap_size(drv->objs);
    struct collect c = {0};
    sg_driver_list_cb cb = op->list;
    void *opaque = op->opaque;

    op_free(op);
    if (drv->closing)
        return;
    c.items = calloc(n + 1, sizeof(*c.items));
    c.backends = calloc(n + 1, sizeof(*c.backends));
    if (c.items == NULL || c.backends == NULL) {
        free(c.items);
        free(c.backends);
        cb(opaque, SG_DRIVER_ERR_RETRY, NULL, 0, "kubernetes: out of memory");
        return;
    }
    sg_strmap_foreach(drv->objs, collect_obj, &c);
    for (size_t i = 0; i < c.n; i++)
        k8s_events_overlay(drv->events, &c.items[i]);
    cb(opaque, SG_DRIVER_OK, c.items, c.n, "");
    free(c.items);
    free(c.backends);
}

/* An op that waited for its informer: answer it from the cache now. */
static void op_resume(struct kd_op *op)
{
    struct kd_driver *drv = op->drv;
    struct kd_obj *obj;

    op->waiting_sync = false;
    uv_timer_stop(&op->timer);
    switch (op->kind) {
    case OP_LIST:
        answer_list(op);
        break;
    case OP_GET:
        obj = obj_find(drv, op->id);
        op_finish(op, SG_DRIVER_OK, obj != NULL ? &obj->o : NULL, NULL);
        break;
    case OP_REMOVE:
        obj = obj_find(drv, op->id);
        if (obj == NULL) {
            /* No Sandbox, but maybe the Secret of a create that never
               got as far (ownerless: no garbage collection takes it). */
            if (secret_delete(op) < 0)
                op_finish(op, SG_DRIVER_OK, NULL, NULL);
            break;
        }
        snprintf(op->ns, sizeof(op->ns), "%s", obj->o.namespace_name);
        snprintf(op->name, sizeof(op->name), "%s", obj->o.name);
        op->obj_kind = obj->o.kind;
        op->creds = obj->o.creds;
        if (remove_send(op) < 0)
            op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                      "kubernetes: cannot start a request");
        break;
    default:
        break;
    }
}

/* Whether op's informers are synced. */
static bool op_synced(struct kd_op *op)
{
    struct kd_driver *drv = op->drv;
    struct kd_ns *ns;

    if (op->kind == OP_LIST || op->ns[0] == '\0')
        return all_synced(drv);
    ns = ns_covering(drv, op->ns);
    return ns != NULL && ns_synced(ns);
}

static void ops_sync_check(struct kd_driver *drv)
{
    struct kd_op *op = drv->ops;

    while (op != NULL) {
        struct kd_op *next = op->next;

        if (op->waiting_sync && op_synced(op))
            op_resume(op);
        op = next;
    }
}

static void on_wait_timeout(uv_timer_t *t)
{
    struct kd_op *op = t->data;

    op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
              "kubernetes: the API has not been listed yet");
}

static void on_sync_now(uv_timer_t *t)
{
    op_resume(t->data);
}

/* Park op until its informers are synced (bounded by the request
   timeout, then a retryable error). */
static void op_wait_sync(struct kd_op *op)
{
    struct kd_driver *drv = op->drv;

    op->waiting_sync = true;
    uv_timer_start(&op->timer, on_wait_timeout,
                   (uint64_t)drv->settings.request_timeout_ms * 2, 0);
    /* Already synced: answer on the next turn, not inside the op call. */
    if (op_synced(op))
        uv_timer_start(&op->timer, on_sync_now, 0, 0);
}

/* ---- create ---- */

static void describe_http(const char *what, const struct k8s_response *r,
                          char *out, size_t size)
{
    char reason[64], msg[256];

    status_text(r, reason, sizeof(reason), msg, sizeof(msg), NULL);
    if (r->status == 0)
        snprintf(out, size, "kubernetes: %s: %s", what, msg);
    else
        snprintf(out, size, "kubernetes: %s: HTTP %ld %s: %s", what, r->status,
                 reason[0] != '\0' ? reason : "error", msg);
}

/* Whether a status is worth retrying later (not a final answer). */
static bool transient(long status)
{
    return status == 0 || status == 401 || status == 408 || status == 429 ||
           status >= 500;
}

/* End op with what an unexpected answer says: retry later when it is
   transient, else final (and logged: the sandbox fails on it). */
static void finish_http_error(struct kd_op *op, const char *what,
                              const struct k8s_response *r)
{
    struct kd_driver *drv = op->drv;
    bool retry = transient(r->status);
    char msg[768];

    describe_http(what, r, msg, sizeof(msg));
    LOG(drv, retry ? SG_DRIVER_LOG_DEBUG : SG_DRIVER_LOG_WARN, "%s: %s", op->id,
        msg);
    op_finish(op, retry ? SG_DRIVER_ERR_RETRY : SG_DRIVER_ERR_INVALID, NULL,
              msg);
}

static void on_existing(void *opaque, const struct k8s_response *r)
{
    struct kd_op *op = opaque;
    struct kd_driver *drv = op->drv;
    char msg[512];
    char what[160];
    struct k8s_observed o;
    json_t *j;

    op->call = NULL;
    snprintf(what, sizeof(what), "read %s %s/%s", k8s_kind_name(op->obj_kind),
             op->ns, op->name);
    if (r->status == 404) {
        /* Deleted between the POST and the GET: create again later. */
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  "kubernetes: the existing object went away; retrying");
        return;
    }
    if (r->status != 200) {
        finish_http_error(op, what, r);
        return;
    }
    j = json_loads(r->body, 0, NULL);
    if (j == NULL || observe(op->obj_kind, j, &o) < 0) {
        json_decref(j);
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  "kubernetes: the existing object is not readable");
        return;
    }
    json_decref(j);
    if (STRNEQ(o.id, op->id) || STRNEQ(o.gateway, drv->settings.gateway_id)) {
        snprintf(msg, sizeof(msg),
                 "kubernetes: %s %s/%s already exists and does not "
                 "belong to this sandbox (labels %s=%s, %s=%s)",
                 k8s_kind_name(op->obj_kind), op->ns, op->name,
                 K8S_LABEL_SANDBOX_ID, o.id, K8S_LABEL_GATEWAY_ID, o.gateway);
        creds_drop(op);
        op_finish(op, SG_DRIVER_ERR_INVALID, NULL, msg);
        return;
    }
    if (o.deleting) {
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  "kubernetes: the object is being deleted; retrying");
        return;
    }
    LOG(drv, SG_DRIVER_LOG_INFO, "%s: adopting the existing %s %s/%s",
        op->id, k8s_kind_name(op->obj_kind), op->ns, op->name);
    if (obj_find(drv, op->id) == NULL)
        cache_upsert(drv, &o);
    if (op->creds) {
        creds_own(op, &o);
        return;
    }
    op_finish(op, SG_DRIVER_OK,
              obj_find(drv, op->id) != NULL ? &obj_find(drv, op->id)->o : &o,
              NULL);
}

static void on_post(void *opaque, const struct k8s_response *r)
{
    struct kd_op *op = opaque;
    struct kd_driver *drv = op->drv;
    char path[PATH_BUF];
    char what[160];
    char reason[64], smsg[256];
    struct k8s_request req = {.method = "GET", .path = path};
    struct k8s_observed o;
    struct kd_obj *obj;
    json_t *j;

    op->call = NULL;
    snprintf(what, sizeof(what), "create %s %s/%s",
             k8s_kind_name(op->obj_kind), op->ns, op->name);
    if (r->status == 201 || r->status == 200) {
        j = json_loads(r->body, 0, NULL);
        if (j == NULL || observe(op->obj_kind, j, &o) < 0) {
            json_decref(j);
            op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                      "kubernetes: the created object is not readable");
            return;
        }
        json_decref(j);
        /* The watch may already know a newer state: it wins. */
        if (obj_find(drv, op->id) == NULL)
            cache_upsert(drv, &o);
        if (op->creds) {
            creds_own(op, &o); /* the POST's answer has the uid */
            return;
        }
        obj = obj_find(drv, op->id);
        op_finish(op, SG_DRIVER_OK, obj != NULL ? &obj->o : &o, NULL);
        return;
    }
    status_text(r, reason, sizeof(reason), smsg, sizeof(smsg), NULL);
    if (r->status == 409 && STREQ(reason, "AlreadyExists")) {
        /* A retried create (or a lost response): read before acting. */
        object_path(op->obj_kind, op->ns, op->name, "", path, sizeof(path));
        op->call = k8s_client_start(drv->client, &req, on_existing, op);
        if (op->call == NULL)
            op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                      "kubernetes: cannot start a request");
        return;
    }
    if (!transient(r->status))
        creds_drop(op); /* the sandbox fails: no Secret left behind */
    finish_http_error(op, what, r);
}

/* ---- the credentials Secret (k8s_credsecret.h) ---- */

static void secret_path(const char *ns, const char *name, char *out,
                        size_t size)
{
    snprintf(out, size, "/api/v1/namespaces/%s/secrets/%s", ns, name);
}

/* Fire and forget: delete the Secret of a create that failed for good
   (its Sandbox does not exist, so no garbage collection takes it). */
static void creds_drop(struct kd_op *op)
{
    char path[PATH_BUF];
    struct k8s_request req = {.method = "DELETE", .path = path};

    if (!op->creds)
        return;
    secret_path(op->ns, op->secret, path, sizeof(path));
    (void)k8s_client_start(op->drv->client, &req, NULL, NULL);
}

static void on_owned(void *opaque, const struct k8s_response *r)
{
    struct kd_op *op = opaque;
    struct kd_obj *obj;
    char what[160];

    op->call = NULL;
    if (r->status == 200) {
        obj = obj_find(op->drv, op->id);
        op_finish(op, SG_DRIVER_OK, obj != NULL ? &obj->o : &op->status, NULL);
        return;
    }
    if (r->status == 404) {
        /* Collected with an earlier owner: the next create makes it. */
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  "kubernetes: the credentials Secret went away; retrying");
        return;
    }
    snprintf(what, sizeof(what), "own Secret %s/%s", op->ns, op->secret);
    finish_http_error(op, what, r);
}

/*
 * The Sandbox o exists: make it the Secret's owner, so that the garbage
 * collector deletes the Secret with it, then answer. Not a controller
 * reference (the Sandbox controller does not manage Secrets) and not
 * blocking (that would need update rights on sandboxes/finalizers, and
 * the Secret has no reason to hold up the Sandbox's deletion).
 */
static void creds_own(struct kd_op *op, const struct k8s_observed *o)
{
    char path[PATH_BUF];
    char what[160];
    char *patch = NULL;
    struct k8s_request req = {.method = "PATCH",
                              .path = path,
                              .what = what,
                              .content_type = "application/merge-patch+json"};

    op->status = *o;
    op->have_status = true;
    snprintf(op->uid, sizeof(op->uid), "%s", o->uid);
    if (o->uid[0] != '\0')
        patch = k8s_creds_owner_patch(o->name, o->uid);
    if (patch == NULL) {
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  o->uid[0] == '\0' ? "kubernetes: the Sandbox has no uid"
                                    : "kubernetes: out of memory");
        return;
    }
    secret_path(op->ns, op->secret, path, sizeof(path));
    snprintf(what, sizeof(what), "Secret %s/%s", op->ns, op->secret);
    req.body = patch;
    op->call = k8s_client_start(op->drv->client, &req, on_owned, op);
    free(patch);
    if (op->call == NULL)
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  "kubernetes: cannot start a request");
}

/* The Secret holds the material: drop our copy (the client wipes its
   own), then make or adopt the Sandbox. */
static void creds_delivered(struct kd_op *op)
{
    k8s_creds_body_free(op->secret_body, op->secret_len);
    op->secret_body = NULL;
    op->secret_len = 0;
    if (op->body == NULL) {
        /* create of a Sandbox the cache knows: only the owner is due. */
        creds_own(op, &op->status);
        return;
    }
    if (post_object(op, op->body) < 0)
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  "kubernetes: cannot start a request");
}

static void on_secret_patched(void *opaque, const struct k8s_response *r)
{
    struct kd_op *op = opaque;
    char what[160];

    op->call = NULL;
    if (r->status == 200) {
        creds_delivered(op);
        return;
    }
    if (r->status == 404) {
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  "kubernetes: the credentials Secret went away; retrying");
        return;
    }
    snprintf(what, sizeof(what), "update Secret %s/%s", op->ns, op->secret);
    finish_http_error(op, what, r);
}

/* A Secret under our name: ours (same labels) is brought to the current
   material, anything else fails the create and is left untouched. */
static void on_secret_existing(void *opaque, const struct k8s_response *r)
{
    struct kd_op *op = opaque;
    struct kd_driver *drv = op->drv;
    char path[PATH_BUF];
    char what[160];
    char msg[512];
    struct k8s_request req = {.method = "PATCH",
                              .path = path,
                              .what = what,
                              .content_type = "application/merge-patch+json"};
    json_t *j;
    json_t *md;
    json_t *labels;
    const char *id;
    const char *gw;
    bool deleting;

    op->call = NULL;
    snprintf(what, sizeof(what), "Secret %s/%s", op->ns, op->secret);
    if (r->status == 404) {
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  "kubernetes: the existing Secret went away; retrying");
        return;
    }
    if (r->status != 200) {
        finish_http_error(op, "read credentials Secret", r);
        return;
    }
    j = json_loads(r->body, 0, NULL);
    md = json_object_get(j, "metadata");
    labels = json_object_get(md, "labels");
    id = json_string_value(json_object_get(labels, K8S_LABEL_SANDBOX_ID));
    gw = json_string_value(json_object_get(labels, K8S_LABEL_GATEWAY_ID));
    snprintf(msg, sizeof(msg),
             "kubernetes: Secret %s/%s already exists and does not belong "
             "to this sandbox (labels %s=%s, %s=%s)",
             op->ns, op->secret, K8S_LABEL_SANDBOX_ID, id != NULL ? id : "",
             K8S_LABEL_GATEWAY_ID, gw != NULL ? gw : "");
    deleting = json_object_get(md, "deletionTimestamp") != NULL;
    if (id == NULL || gw == NULL || STRNEQ(id, op->id) ||
        STRNEQ(gw, drv->settings.gateway_id)) {
        k8s_creds_secret_wipe(j);
        json_decref(j);
        op_finish(op, SG_DRIVER_ERR_INVALID, NULL, msg);
        return;
    }
    k8s_creds_secret_wipe(j);
    json_decref(j);
    if (deleting) {
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  "kubernetes: the credentials Secret is being deleted; "
                  "retrying");
        return;
    }
    secret_path(op->ns, op->secret, path, sizeof(path));
    req.body = op->secret_body;
    op->call = k8s_client_start(drv->client, &req, on_secret_patched, op);
    if (op->call == NULL)
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  "kubernetes: cannot start a request");
}

static void on_secret_post(void *opaque, const struct k8s_response *r)
{
    struct kd_op *op = opaque;
    char path[PATH_BUF];
    char what[160];
    char reason[64], smsg[256];
    struct k8s_request req = {.method = "GET", .path = path, .what = what};

    op->call = NULL;
    snprintf(what, sizeof(what), "Secret %s/%s", op->ns, op->secret);
    if (r->status == 201 || r->status == 200) {
        creds_delivered(op);
        return;
    }
    status_text(r, reason, sizeof(reason), smsg, sizeof(smsg), NULL);
    if (r->status == 409 && STREQ(reason, "AlreadyExists")) {
        secret_path(op->ns, op->secret, path, sizeof(path));
        op->call = k8s_client_start(op->drv->client, &req, on_secret_existing,
                                    op);
        if (op->call == NULL)
            op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                      "kubernetes: cannot start a request");
        return;
    }
    finish_http_error(op, "create credentials Secret", r);
}

/* First step of a create with bindings: the Secret, so that the pod
   never starts without it. 0, or -1 when the request could not start. */
static int creds_post(struct kd_op *op)
{
    char path[PATH_BUF];
    char what[160];
    struct k8s_request req = {
        .method = "POST", .path = path, .what = what, .body = op->secret_body};

    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets", op->ns);
    snprintf(what, sizeof(what), "Secret %s/%s", op->ns, op->secret);
    op->call = k8s_client_start(op->drv->client, &req, on_secret_post, op);
    return op->call != NULL ? 0 : -1;
}

/* ---- remove ---- */

/* The object's DELETE was accepted (and its Secret's, if any): answer
   when it is gone. */
static void delete_settle(struct kd_op *op)
{
    struct kd_driver *drv = op->drv;
    struct kd_ns *ns = ns_covering(drv, op->ns);

    /* Gone already and the cache agrees: done. Otherwise the watch tells
       (DELETED, or the object missing from a re-list). */
    if (obj_find(drv, op->id) == NULL && ns != NULL && ns_synced(ns)) {
        op_finish(op, SG_DRIVER_OK, NULL, NULL);
        return;
    }
    op->waiting_gone = true;
}

static void on_secret_delete(void *opaque, const struct k8s_response *r)
{
    struct kd_op *op = opaque;
    struct kd_driver *drv = op->drv;
    char msg[512];

    op->call = NULL;
    if (r->status != 200 && r->status != 202 && r->status != 404) {
        describe_http("delete credentials Secret", r, msg, sizeof(msg));
        if (transient(r->status)) {
            op_finish(op, SG_DRIVER_ERR_RETRY, NULL, msg);
            return;
        }
        /* Not ours to delete (RBAC): the garbage collector takes it with
           its Sandbox. Only a Sandbox that said it has one warns. */
        LOG(drv, op->creds ? SG_DRIVER_LOG_WARN : SG_DRIVER_LOG_DEBUG,
            "%s: %s", op->id, msg);
    }
    if (!op->deleted) {
        op_finish(op, SG_DRIVER_OK, NULL, NULL); /* no object was there */
        return;
    }
    delete_settle(op);
}

/* DELETE the credentials Secret of op's Sandbox (op->name). 0, or -1 when
   the request could not start. */
static int secret_delete(struct kd_op *op)
{
    struct kd_driver *drv = op->drv;
    char path[PATH_BUF];
    struct k8s_request req = {.method = "DELETE", .path = path};
    const char *ns =
        op->ns[0] != '\0' ? op->ns : drv->settings.default_namespace;

    k8s_creds_secret_name(op->name, op->secret);
    secret_path(ns, op->secret, path, sizeof(path));
    op->call = k8s_client_start(drv->client, &req, on_secret_delete, op);
    return op->call != NULL ? 0 : -1;
}

static void on_delete(void *opaque, const struct k8s_response *r)
{
    struct kd_op *op = opaque;
    struct kd_driver *drv = op->drv;
    char msg[512];
    char what[160];

    op->call = NULL;
    snprintf(what, sizeof(what), "delete %s %s/%s",
             k8s_kind_name(op->obj_kind), op->ns, op->name);
    if (r->status == 200 || r->status == 202 || r->status == 404) {
        op->deleted = true;
        /* The Secret too, not only through the garbage collector: it
           may run late, or not at all for a Secret never owned. */
        if (op->creds) {
            if (secret_delete(op) < 0)
                op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                          "kubernetes: cannot start a request");
            return;
        }
        delete_settle(op);
        return;
    }
    describe_http(what, r, msg, sizeof(msg));
    LOG(drv, SG_DRIVER_LOG_WARN, "%s: %s", op->id, msg);
    op_finish(op, SG_DRIVER_ERR_RETRY, NULL, msg);
}

/* Send the DELETE of op's object. Returns 0, or -1 when it could not
   start (op untouched). */
static int remove_send(struct kd_op *op)
{
    struct kd_driver *drv = op->drv;
    char path[PATH_BUF];
    char q[64];
    struct k8s_request req = {.method = "DELETE", .path = path};

    /* A remove already waiting for the same object: wait with it. */
    for (struct kd_op *o = drv->ops; o != NULL; o = o->next) {
        if (o != op && o->kind == OP_REMOVE && o->waiting_gone &&
            STREQ(o->id, op->id)) {
            op->deleted = true;
            op->waiting_gone = true;
            return 0;
        }
    }
    /* A claim goes at once (no finalizer); the garbage collector takes
       its Sandbox and pod after it. */
    snprintf(q, sizeof(q), "propagationPolicy=%s",
             drv->settings.propagation_policy);
    object_path(op->obj_kind, op->ns, op->name, q, path, sizeof(path));
    op->call = k8s_client_start(drv->client, &req, on_delete, op);
    return op->call != NULL ? 0 : -1;
}

/* "kubernetes/<ns>/<name>" -> ns, name. */
static bool parse_backend(const char *b, char *ns, size_t nsz, char *name,
                          size_t namesz)
{
    const char *p;
    const char *slash;

    if (b == NULL || !STRPREFIX(b, "kubernetes/"))
        return false;
    p = b + strlen("kubernetes/");
    slash = strchr(p, '/');
    if (slash == NULL || (size_t)(slash - p) >= nsz ||
        strlen(slash + 1) >= namesz)
        return false;
    snprintf(ns, nsz, "%.*s", (int)(slash - p), p);
    snprintf(name, namesz, "%s", slash + 1);
    return k8s_is_dns_label(ns) && k8s_is_dns_label(name);
}

/* ---- pod events (k8s_events.h) ---- */

/* The sandbox whose Sandbox ns/pod is (the controller names the pod
   after it): "sg-<id>" directly, else a search for the 62-byte hashed
   names of long ids (k8s_object_name). */
static bool pod_sandbox_id(void *opaque, const char *ns, const char *pod,
                           char *id)
{
    struct kd_driver *drv = opaque;
    struct kd_obj *obj = STRPREFIX(pod, "sg-") ? obj_find(drv, pod + 3) : NULL;
    struct pod_search q = {.ns = ns, .pod = pod};

    if (obj != NULL && (STRNEQ(obj->o.name, pod) ||
                        STRNEQ(obj->o.namespace_name, ns)))
        obj = NULL;
    if (obj == NULL && STRPREFIX(pod, "sg-") && strlen(pod) == 62) {
        sg_strmap_foreach(drv->objs, pod_search_one, &q);
        obj = q.found;
    }
    if (obj == NULL)
        return false;
    snprintf(id, 64, "%s", obj->o.id);
    return true;
}

/* What is known of a pending sandbox's pod changed: report it again. */
static void pod_events_changed(void *opaque, const char *id)
{
    struct kd_driver *drv = opaque;
    struct kd_obj *obj = obj_find(drv, id);

    if (obj != NULL && obj->o.state == SG_DRIVER_STATE_PENDING)
        notify(drv, &obj->o, id);
}

/* A warm pool we keep: serving while it has a ready member. */
static void pool_ready(void *opaque, const char *ns, const char *name,
                       uint32_t ready, uint32_t replicas)
{
    struct kd_driver *drv = opaque;
    char what[320];

    (void)replicas;
    if (drv->host->abi_minor < 2 || drv->host->report_health == NULL)
        return;
    snprintf(what, sizeof(what), "warm-pool/%s/%s", ns, name);
    drv->host->report_health(DRIVER_NAME, what, ready > 0);
}

/*
 * Offer "kubernetes-secret" to the gateway, resolved through our client.
 * A gateway that refuses it keeps its own placeholder (references
 * validate; resolving them fails): logged, not fatal. -1 when out of
 * memory.
 */
static int offer_secrets(struct kd_driver *drv)
{
    const struct sg_driver_host *host = drv->host;
    char *msg = NULL;

    if (host->abi_minor < 2 || host->register_credential_source == NULL)
        return 0;
    if (k8s_secrets_start(drv->loop, drv->client,
                          drv->settings.request_timeout_ms) < 0)
        return -1;
    if (host->register_credential_source(DRIVER_NAME, k8s_secrets_ops(),
                                         &msg) < 0) {
        LOG(drv, SG_DRIVER_LOG_WARN,
            "kubernetes-secret credentials are not resolved through this "
            "driver: %s",
            msg != NULL ? msg : "refused");
        host->free(msg);
        k8s_secrets_stop();
    }
    return 0;
}

/* ---- ops ---- */

static int kd_open(void *priv, const struct sg_driver_host *host,
                   const char *settings_json, const char *state_dir,
                   char **errmsg)
{
    struct kd_driver *drv = priv;
    struct sg_error err = SG_ERROR_INIT;
    char *ns = NULL;

    drv->host = host;
    drv->loop = host->loop;
    if (k8s_settings_load(settings_json, &drv->settings, &err) < 0)
        goto error;
    drv->state_dir = strdup(state_dir);
    drv->objs = sg_strmap_new();
    drv->unknown_deleted = sg_strmap_new();
    if (drv->state_dir == NULL || drv->objs == NULL ||
        drv->unknown_deleted == NULL) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto error;
    }
    drv->client = k8s_client_new(drv->loop, host, &drv->settings, &ns, &err);
    if (drv->client == NULL)
        goto error;
    drv->events = k8s_events_new(drv->loop, host, drv->client, &drv->settings,
                                 pod_sandbox_id, pod_events_changed, drv);
    if (drv->events == NULL) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto error;
    }
    if (drv->settings.default_namespace != NULL) {
        free(ns);
        ns = strdup(drv->settings.default_namespace);
    } else if (ns == NULL || !k8s_is_dns_label(ns)) {
        free(ns);
        ns = strdup("default");
    }
    if (ns == NULL) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto error;
    }
    /* describe() resolves the default from the settings: set it there. */
    free(drv->settings.default_namespace);
    drv->settings.default_namespace = ns;
    ns = NULL;
    if (drv->settings.cluster_wide_watch) {
        ns_add(drv, "", false);
    } else {
        ns_load(drv);
        ns_add(drv, drv->settings.default_namespace, true);
    }
    if (offer_secrets(drv) < 0) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto error;
    }
    drv->pools = k8s_pools_new(drv->loop, host, drv->client, &drv->settings,
                               drv->settings.default_namespace, pool_ready,
                               drv);
    if (drv->pools == NULL) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto error;
    }
    LOG(drv, SG_DRIVER_LOG_INFO,
        "gateway id '%s', default namespace '%s', %s watch",
        drv->settings.gateway_id, drv->settings.default_namespace,
        drv->settings.cluster_wide_watch ? "one cluster-wide"
                                         : "a per-namespace");
    return 0;
 error:
    *errmsg = host->strdup(err.message);
    sg_error_reset(&err);
    free(ns);
    k8s_secrets_stop();
    k8s_pools_close(drv->pools);
    drv->pools = NULL;
    k8s_events_close(drv->events);
    drv->events = NULL;
    k8s_client_close(drv->client);
    drv->client = NULL;
    sg_strmap_free(drv->objs);
    sg_strmap_free(drv->unknown_deleted);
    free(drv->state_dir);
    k8s_settings_clear(&drv->settings);
    memset(drv, 0, sizeof(*drv));
    return -1;
}

static int free_obj(void *opaque, const char *key, void *value)
{
    (void)opaque;
    (void)key;
    free(value);
    return 0;
}

static void kd_close(void *priv)
{
    struct kd_driver *drv = priv;

    drv->closing = true;
    while (drv->ops != NULL) {
        drv->ops->done = NULL;
        op_free(drv->ops);
    }
    while (drv->nss != NULL) {
        struct kd_ns *ns = drv->nss;

        drv->nss = ns->next;
        /* Nothing of ns is called after this. */
        for (size_t i = 0; i < SG_N_ELEMENTS(ns->w); i++) {
            k8s_informer_close(ns->w[i].inf);
            sg_strmap_free(ns->w[i].seen);
        }
        free(ns);
    }
    k8s_secrets_stop();
    k8s_pools_close(drv->pools);
    drv->pools = NULL;
    k8s_events_close(drv->events);
    drv->events = NULL;
    k8s_client_close(drv->client);
    drv->client = NULL;
    sg_strmap_foreach(drv->objs, free_obj, NULL);
    sg_strmap_free(drv->objs);
    sg_strmap_free(drv->unknown_deleted);
    drv->objs = NULL;
    drv->unknown_deleted = NULL;
    free(drv->state_dir);
    drv->state_dir = NULL;
    k8s_settings_clear(&drv->settings);
    drv->watch_cb = NULL;
}

/*
 * sb as this driver may read it: a host older than ABI 1.3 passes a
 * shorter struct without the credential fields, which then read as none.
 */
static const struct sg_driver_sandbox *
sandbox_view(const struct kd_driver *drv, const struct sg_driver_sandbox *sb,
             struct sg_driver_sandbox *tmp)
{
    if (drv->host->abi_minor >= 3)
        return sb;
    memset(tmp, 0, sizeof(*tmp));
    memcpy(tmp, sb, offsetof(struct sg_driver_sandbox, credentials));
    return tmp;
}

/* The whole check of a sandbox: block, allocation, image, bindings. */
static int check_sandbox(struct kd_driver *drv,
                         const struct sg_driver_sandbox *sb,
                         struct k8s_block *b, struct sg_error *err)
{
    if (k8s_block_load(sb->config_json, b, err) < 0)
        return -1;
    if (k8s_creds_check(&drv->settings, sb,
                        STREQ(b->allocation, "SandboxClaim"), err) < 0) {
        k8s_block_clear(b);
        return -1;
    }
    if (STREQ(b->allocation, "SandboxClaim")) {
        /* The pool's template runs; a request for another image or
           command would be silently ignored. */
        if ((sb->image != NULL && sb->image[0] != '\0') || sb->n_command > 0 ||
            (sb->working_dir != NULL && sb->working_dir[0] != '\0')) {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            "kubernetes.agentSandbox.allocation: a "
                            "SandboxClaim runs its warm pool's template: "
                            "leave the image, command and working "
                            "directory unset");
            k8s_block_clear(b);
            return -1;
        }
        return 0;
    }
    if ((sb->image == NULL || sb->image[0] == '\0') &&
        (drv->settings.default_image == NULL ||
         drv->settings.default_image[0] == '\0')) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "kubernetes: the sandbox needs an image (the driver "
                        "has no default_image)");
        k8s_block_clear(b);
        return -1;
    }
    return 0;
}

static int kd_validate(void *priv, const struct sg_driver_sandbox *sb,
                       char **errmsg)
{
    struct kd_driver *drv = priv;
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver_sandbox tmp;
    struct k8s_block b;
    int rc;

    sb = sandbox_view(drv, sb, &tmp);
    if (check_sandbox(drv, sb, &b, &err) < 0) {
        rc = err.code == SG_ERR_UNIMPLEMENTED ? SG_DRIVER_VALIDATE_UNSUPPORTED
                                              : -1;
        *errmsg = host_strdup_msg(drv, err.message);
        sg_error_reset(&err);
        return rc;
    }
    k8s_block_clear(&b);
    return 0;
}

static int kd_describe(void *priv, const struct sg_driver_sandbox *sb,
                       struct sg_driver_placement *out, char **errmsg)
{
    struct kd_driver *drv = priv;
    struct sg_error err = SG_ERROR_INIT;
    struct k8s_block b;
    int ret = 0;

    if (k8s_block_load(sb->config_json, &b, &err) < 0) {
        *errmsg = host_strdup_msg(drv, err.message);
        sg_error_reset(&err);
        return -1;
    }
    if (k8s_block_describe(&b, &drv->settings, drv->host->alloc,
                           drv->host->strdup, out) < 0) {
        *errmsg = host_strdup_msg(drv, "kubernetes: out of memory");
        ret = -1;
    }
    k8s_block_clear(&b);
    return ret;
}

/* POST op's object (body). Returns 0, or -1 when it could not start. */
static int post_object(struct kd_op *op, const char *body)
{
    struct kd_driver *drv = op->drv;
    char path[PATH_BUF];
    char what[PATH_BUF];
    struct k8s_request req = {.method = "POST", .path = path, .body = body};

    collection_path(op->obj_kind, op->ns, path, sizeof(path));
    snprintf(what, sizeof(what), "%s %s/%s", k8s_kind_name(op->obj_kind),
             op->ns, op->name);
    req.what = what;
    op->call = k8s_client_start(drv->client, &req, on_post, op);
    return op->call != NULL ? 0 : -1;
}

/*
 * The warm pool of a claim that names a template, read before the claim
 * is created: the authorizer decided on the template the request named,
 * so it must be the one the pool runs.
 */
static void on_pool(void *opaque, const struct k8s_response *r)
{
    struct kd_op *op = opaque;
    char msg[768];
    char what[320];
    json_t *j;
    json_t *t;

    op->call = NULL;
    snprintf(what, sizeof(what), "read SandboxWarmPool %s/%s", op->ns,
             op->pool);
    if (r->status == 404) {
        snprintf(msg, sizeof(msg),
                 "kubernetes.agentSandbox.warmPool: SandboxWarmPool %s/%s "
                 "not found",
                 op->ns, op->pool);
        op_finish(op, SG_DRIVER_ERR_INVALID, NULL, msg);
        return;
    }
    if (r->status != 200) {
        finish_http_error(op, what, r);
        return;
    }
    j = json_loads(r->body, 0, NULL);
    t = json_object_get(
        json_object_get(json_object_get(j, "spec"), "sandboxTemplateRef"),
        "name");
    if (!json_is_string(t) || STRNEQ(json_string_value(t), op->template_name)) {
        snprintf(msg, sizeof(msg),
                 "kubernetes.agentSandbox.template: SandboxWarmPool %s/%s "
                 "runs SandboxTemplate '%s', not '%s'",
                 op->ns, op->pool, json_is_string(t) ? json_string_value(t) : "",
                 op->template_name);
        json_decref(j);
        op_finish(op, SG_DRIVER_ERR_INVALID, NULL, msg);
        return;
    }
    json_decref(j);
    if (post_object(op, op->body) < 0)
        op_finish(op, SG_DRIVER_ERR_RETRY, NULL,
                  "kubernetes: cannot start a request");
}

/* Read the pool first (on_pool), then post. */
static int read_pool_then_post(struct kd_op *op, const struct k8s_block *b,
                               char *body)
{
    struct kd_driver *drv = op->drv;
    char path[PATH_BUF];
    struct k8s_request req = {.method = "GET", .path = path};

    op->body = body;
    op->pool = strdup(b->warm_pool);
    op->template_name = strdup(b->template_name);
    if (op->pool == NULL || op->template_name == NULL)
        return -1;
    snprintf(path, sizeof(path), K8S_EXT_API "/namespaces/%s/sandboxwarmpools/%s",
             op->ns, op->pool);
    op->call = k8s_client_start(drv->client, &req, on_pool, op);
    return op->call != NULL ? 0 : -1;
}

/*
 * A create with credential bindings: the Secret (made, or ours brought to
 * the current material), then the Sandbox (made, adopted, or known to the
 * cache: obj), then the Sandbox as the Secret's owner. Every step is
 * idempotent, so a create repeated after a restart at any point ends in
 * one Secret owned by the one Sandbox.
 */
static int create_with_creds(struct kd_driver *drv,
                             const struct sg_driver_sandbox *sb,
                             const struct k8s_block *b, const char *ns,
                             const struct kd_obj *obj, sg_driver_done_cb done,
                             void *opaque)
{
    struct sg_error err = SG_ERROR_INIT;
    struct kd_op *op = NULL;
    json_t *j = NULL;
    json_t *labels = NULL;
    char *body = NULL;
    char *secret = NULL;
    size_t secret_len = 0;
    char name[K8S_NAME_MAX + 1];
    char sname[K8S_CRED_NAME_MAX + 1];
    int ret = -1;

    k8s_object_name(sb->id, name);
    k8s_creds_secret_name(name, sname);
    if (obj == NULL) {
        j = k8s_sandbox_build(&drv->settings, b, sb, time(NULL), &err);
        body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    }
    labels = k8s_labels_build(&drv->settings, sb);
    if ((obj == NULL && body == NULL) || labels == NULL) {
        ret = defer_answer(drv, sb->id,
                           err.code == SG_ERR_INVALID_ARGUMENT
                               ? SG_DRIVER_ERR_INVALID
                               : SG_DRIVER_ERR_RETRY,
                           NULL,
                           err.message[0] != '\0' ? err.message
                                                  : "kubernetes: out of memory",
                           done, opaque);
        goto cleanup;
    }
    secret = k8s_creds_secret_body(sb, ns, sname, labels, &secret_len, &err);
    if (secret == NULL) {
        ret = defer_answer(drv, sb->id,
                           err.code == SG_ERR_INVALID_ARGUMENT
                               ? SG_DRIVER_ERR_INVALID
                               : SG_DRIVER_ERR_RETRY,
                           NULL, err.message, done, opaque);
        goto cleanup;
    }
    op = op_new(drv, OP_CREATE, sb->id, done, NULL, opaque);
    if (op == NULL)
        goto cleanup;
    op->obj_kind = K8S_KIND_SANDBOX;
    op->creds = true;
    snprintf(op->ns, sizeof(op->ns), "%s", ns);
    snprintf(op->name, sizeof(op->name), "%s", name);
    snprintf(op->secret, sizeof(op->secret), "%s", sname);
    op->secret_body = secret;
    op->secret_len = secret_len;
    secret = NULL;
    op->body = body; /* NULL: the Sandbox exists (obj) */
    body = NULL;
    if (obj != NULL) {
        op->status = obj->o;
        op->have_status = true;
    }
    ret = creds_post(op);
    if (ret < 0) {
        op->done = NULL;
        op_free(op);
    }
 cleanup:
    k8s_creds_body_free(secret, secret_len);
    free(body);
    json_decref(j);
    json_decref(labels);
    sg_error_reset(&err);
    return ret;
}

static int kd_create(void *priv, const struct sg_driver_sandbox *sb,
                     sg_driver_done_cb done, void *opaque)
{
    struct kd_driver *drv = priv;
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver_sandbox tmp;
    struct k8s_block b;
    struct kd_obj *obj;
    struct kd_op *op;
    json_t *j = NULL;
    char *body = NULL;
    enum k8s_kind kind;
    const char *ns;
    int ret;

    if (drv->closing)
        return -1;
    sb = sandbox_view(drv, sb, &tmp);
    if (!k8s_id_valid(sb->id))
        return defer_answer(drv, sb->id, SG_DRIVER_ERR_INVALID, NULL,
                            "kubernetes: invalid sandbox id", done, opaque);
    if (check_sandbox(drv, sb, &b, &err) < 0) {
        ret = defer_answer(drv, sb->id, SG_DRIVER_ERR_INVALID, NULL,
                           err.message, done, opaque);
        sg_error_reset(&err);
        return ret;
    }
    kind = STREQ(b.allocation, "SandboxClaim") ? K8S_KIND_CLAIM
                                                : K8S_KIND_SANDBOX;
    ns = k8s_block_namespace(&b, &drv->settings);
    if (ns_ensure(drv, ns, kind) == NULL) {
        ret = defer_answer(drv, sb->id, SG_DRIVER_ERR_RETRY, NULL,
                           "kubernetes: out of memory", done, opaque);
        goto cleanup;
    }
    obj = obj_find(drv, sb->id);
    if (sb->n_credentials > 0 && kind == K8S_KIND_SANDBOX &&
        (obj == NULL || !obj->o.deleting)) {
        ret = create_with_creds(drv, sb, &b, ns, obj, done, opaque);
        goto cleanup;
    }
    if (obj != NULL) {
        /* Idempotent: the cache knows it, no write. */
        ret = obj->o.deleting
                  ? defer_answer(drv, sb->id, SG_DRIVER_ERR_RETRY, NULL,
                                 "kubernetes: the object is being deleted",
                                 done, opaque)
                  : defer_answer(drv, sb->id, SG_DRIVER_OK, &obj->o, NULL,
                                 done, opaque);
        goto cleanup;
    }
    j = kind == K8S_KIND_CLAIM
            ? k8s_claim_build(&drv->settings, &b, sb, time(NULL), &err)
            : k8s_sandbox_build(&drv->settings, &b, sb, time(NULL), &err);
    body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    if (body == NULL) {
        ret = defer_answer(drv, sb->id,
                           err.code == SG_ERR_INVALID_ARGUMENT
                               ? SG_DRIVER_ERR_INVALID
                               : SG_DRIVER_ERR_RETRY,
                           NULL,
                           err.message[0] != '\0' ? err.message
                                                  : "kubernetes: out of memory",
                           done, opaque);
        goto cleanup;
    }
    op = op_new(drv, OP_CREATE, sb->id, done, NULL, opaque);
    if (op == NULL) {
        ret = -1;
        goto cleanup;
    }
    op->obj_kind = kind;
    snprintf(op->ns, sizeof(op->ns), "%s", ns);
    k8s_object_name(sb->id, op->name);
    if (kind == K8S_KIND_CLAIM && b.template_name != NULL) {
        ret = read_pool_then_post(op, &b, body);
        body = NULL; /* the op's now */
    } else {
        ret = post_object(op, body);
    }
    if (ret < 0) {
        op->done = NULL;
        op_free(op);
    }
 cleanup:
    free(body);
    json_decref(j);
    k8s_block_clear(&b);
    sg_error_reset(&err);
    return ret;
}

static int kd_remove(void *priv, const char *id, const char *backend_object,
                     uint32_t grace_ms, sg_driver_done_cb done, void *opaque)
{
    struct kd_driver *drv = priv;
    struct kd_obj *obj;
    struct kd_op *op;

    (void)grace_ms; /* the pod's own terminationGracePeriodSeconds rules */
    if (drv->closing)
        return -1;
    if (!k8s_id_valid(id))
        return defer_answer(drv, id, SG_DRIVER_OK, NULL, NULL, done, opaque);
    op = op_new(drv, OP_REMOVE, id, done, NULL, opaque);
    if (op == NULL)
        return -1;
    obj = obj_find(drv, id);
    if (obj != NULL) {
        snprintf(op->ns, sizeof(op->ns), "%s", obj->o.namespace_name);
        snprintf(op->name, sizeof(op->name), "%s", obj->o.name);
        op->obj_kind = obj->o.kind;
        op->creds = obj->o.kind == K8S_KIND_SANDBOX && obj->o.creds;
    } else if (parse_backend(backend_object, op->ns, sizeof(op->ns), op->name,
                             sizeof(op->name))) {
        if (ns_ensure(drv, op->ns, K8S_KIND_SANDBOX) == NULL) {
            op->done = NULL;
            op_free(op);
            return -1;
        }
    } else {
        k8s_object_name(id, op->name);
    }
    if (obj == NULL) {
        /* Not in the cache: wait until the informers have listed, then
           answer from the cache (DELETE only what exists). */
        op_wait_sync(op);
        return 0;
    }
    /* The DELETE starts now; its answer comes later. */
    if (remove_send(op) < 0) {
        op->done = NULL;
        op_free(op);
        return -1;
    }
    return 0;
}

static int kd_get(void *priv, const char *id, const char *backend_object,
                  sg_driver_done_cb done, void *opaque)
{
    struct kd_driver *drv = priv;
    struct kd_obj *obj;
    struct kd_op *op;

    if (drv->closing)
        return -1;
    obj = obj_find(drv, id);
    if (obj != NULL)
        return defer_answer(drv, id, SG_DRIVER_OK, &obj->o, NULL, done,
                            opaque);
    op = op_new(drv, OP_GET, id, done, NULL, opaque);
    if (op == NULL)
        return -1;
    {
        char name[K8S_NAME_MAX + 1];

        if (parse_backend(backend_object, op->ns, sizeof(op->ns), name,
                          sizeof(name)) &&
            ns_ensure(drv, op->ns, K8S_KIND_SANDBOX) == NULL) {
            op->done = NULL;
            op_free(op);
            return -1;
        }
    }
    op_wait_sync(op);
    return 0;
}

static int kd_list(void *priv, sg_driver_list_cb done, void *opaque)
{
    struct kd_driver *drv = priv;
    struct kd_op *op;

    if (drv->closing)
        return -1;
    op = op_new(drv, OP_LIST, NULL, NULL, done, opaque);
    if (op == NULL)
        return -1;
    op_wait_sync(op);
    return 0;
}

static int kd_watch(void *priv, sg_driver_watch_cb cb, void *opaque,
                    char **errmsg)
{
    struct kd_driver *drv = priv;

    if (drv->watch_cb != NULL) {
        *errmsg = host_strdup_msg(drv, "kubernetes: a watcher is registered");
        return -1;
    }
    drv->watch_cb = cb;
    drv->watch_opaque = opaque;
    return 0;
}

const struct sg_driver_ops sg_kubernetes_driver = {
    .abi_major = SG_DRIVER_ABI_MAJOR,
    .abi_minor = SG_DRIVER_ABI_MINOR,
    .struct_size = sizeof(struct sg_driver_ops),
    .name = DRIVER_NAME,
    .caps = SG_DRIVER_CAP_WATCH | SG_DRIVER_CAP_NETWORK |
            SG_DRIVER_CAP_SURVIVES_RESTART | SG_DRIVER_CAP_CREDENTIALS,
    .priv_size = sizeof(struct kd_driver),
    .open = kd_open,
    .close = kd_close,
    .config_validate = kd_validate,
    .describe = kd_describe,
    .create = kd_create,
    .remove = kd_remove,
    .get = kd_get,
    .list = kd_list,
    .watch = kd_watch,
};
