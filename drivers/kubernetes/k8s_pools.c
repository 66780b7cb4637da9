/*
 * k8s_pools.c: keeping the warm pools the settings declare (k8s_pools.h).
 */
#include "internal.h"

#include "k8s_pools.h"

#include "k8s_informer.h"
#include "k8s_objects.h"
#include "strmap.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#define DRIVER "kubernetes"
#define LOG(p, lvl, ...) (p)->host->log((lvl), DRIVER, __VA_ARGS__)
#define PATH_BUF 1024

enum kp_kind { KP_TEMPLATE = 0, KP_POOL, KP_KINDS };

static const char *const kind_plural[KP_KINDS] = {"sandboxtemplates",
                                                  "sandboxwarmpools"};
static const char *const kind_name[KP_KINDS] = {"SandboxTemplate",
                                                "SandboxWarmPool"};

/* What a watch saw of one object of ours. */
struct kp_seen {
    char rv[32];
    char hash[16];
    /* A pool's spec as seen: a scale (HPA, kubectl) changes it without
       touching our annotation. */
    int64_t spec_replicas;
    char template_ref[254];
    bool has_status;
    uint32_t ready;
    uint32_t replicas;
};

struct kp_ns;

/* The informer of one kind in one namespace. */
struct kp_watch {
    struct kp_ns *ns;
    enum kp_kind kind;
    struct k8s_informer *inf;
    bool synced;
    struct sg_strmap *objs;  /* name -> struct kp_seen */
    struct sg_strmap *seen;  /* names of the list in progress */
    struct sg_strmap *busy;  /* names with a write in flight */
};

struct kp_ns {
    struct k8s_pools *p;
    struct kp_ns *next;
    char name[64];
    struct kp_watch w[KP_KINDS];
};

/* One declared pool. */
struct kp_want {
    const struct k8s_managed_pool *decl;
    struct kp_ns *ns;
    json_t *obj[KP_KINDS];
    char hash[KP_KINDS][16];
    bool reported;
    uint32_t last_ready, last_replicas;
};

/* A write in flight. */
struct kp_write {
    struct kp_watch *w;
    char name[256];
    struct k8s_call *call;
    struct kp_write *next;
};

struct k8s_pools {
    uv_loop_t *loop;
    const struct sg_driver_host *host;
    struct k8s_client *client;
    const struct k8s_settings *settings;
    struct kp_want *wants;
    size_t n_wants;
    struct kp_ns *nss;
    struct kp_write *writes;
    uv_timer_t retry;
    k8s_pools_ready_fn ready_fn;
    void *opaque;
    bool closing;
};

static void reconcile(struct kp_ns *ns);
static void on_retry(uv_timer_t *t);

/* ---- what the watches see ---- */

static void seen_from(json_t *obj, struct kp_seen *out)
{
    json_t *md = json_object_get(obj, "metadata");
    json_t *st = json_object_get(obj, "status");
    json_t *v;

    memset(out, 0, sizeof(*out));
    v = json_object_get(md, "resourceVersion");
    snprintf(out->rv, sizeof(out->rv), "%s",
             json_is_string(v) ? json_string_value(v) : "");
    v = json_object_get(json_object_get(md, "annotations"), K8S_ANN_SPEC_HASH);
    snprintf(out->hash, sizeof(out->hash), "%s",
             json_is_string(v) ? json_string_value(v) : "");
    v = json_object_get(json_object_get(obj, "spec"), "replicas");
    out->spec_replicas = json_is_integer(v) ? json_integer_value(v) : -1;
    v = json_object_get(
        json_object_get(json_object_get(obj, "spec"), "sandboxTemplateRef"),
        "name");
    snprintf(out->template_ref, sizeof(out->template_ref), "%s",
             json_is_string(v) ? json_string_value(v) : "");
    if (json_is_object(st)) {
        out->has_status = true;
        v = json_object_get(st, "readyReplicas");
        out->ready = json_is_integer(v) ? (uint32_t)json_integer_value(v) : 0;
        v = json_object_get(st, "replicas");
        out->replicas = json_is_integer(v) ? (uint32_t)json_integer_value(v)
                                           : 0;
    }
}

static const char *obj_name(json_t *obj)
{
    json_t *v = json_object_get(json_object_get(obj, "metadata"), "name");

    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void upsert(struct kp_watch *w, json_t *obj)
{
    const char *name = obj_name(obj);
    struct kp_seen *s;

    if (name == NULL)
        return;
    s = sg_strmap_get(w->objs, name);
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL || sg_strmap_put(w->objs, name, s) < 0) {
            free(s);
            return;
        }
    }
    seen_from(obj, s);
}

static void on_list_began(void *opaque)
{
    struct kp_watch *w = opaque;

    sg_strmap_free(w->seen);
    w->seen = sg_strmap_new();
}

static void on_list_object(void *opaque, json_t *obj)
{
    struct kp_watch *w = opaque;
    const char *name = obj_name(obj);

    /* Out of memory: the sweep keeps what it cannot tell was seen. */
    if (name != NULL && w->seen != NULL && sg_strmap_put(w->seen, name, w) < 0) {
        sg_strmap_free(w->seen);
        w->seen = NULL;
    }
    upsert(w, obj);
}

struct sweep {
    struct kp_watch *w;
    char (*gone)[256];
    size_t n, cap;
};

static int sweep_one(void *opaque, const char *key, void *value)
{
    struct sweep *s = opaque;

    (void)value;
    if (sg_strmap_get(s->w->seen, key) != NULL)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap != 0 ? s->cap * 2 : 8;
        char(*g)[256] = realloc(s->gone, cap * sizeof(*g));

        if (g == NULL)
            return 1;
        s->gone = g;
        s->cap = cap;
    }
    snprintf(s->gone[s->n++], 256, "%s", key);
    return 0;
}

static void on_list_done(void *opaque)
{
    struct kp_watch *w = opaque;
    struct sweep s = {.w = w};

    if (w->seen != NULL) {
        sg_strmap_foreach(w->objs, sweep_one, &s);
        for (size_t i = 0; i < s.n; i++)
            free(sg_strmap_remove(w->objs, s.gone[i]));
        free(s.gone);
    }
    sg_strmap_free(w->seen);
    w->seen = NULL;
    w->synced = true;
    reconcile(w->ns);
}

static void on_watch_event(void *opaque, const char *type, json_t *obj)
{
    struct kp_watch *w = opaque;
    const char *name = obj_name(obj);

    if (name == NULL)
        return;
    if (STREQ(type, "DELETED"))
        free(sg_strmap_remove(w->objs, name));
    else if (STREQ(type, "ADDED") || STREQ(type, "MODIFIED"))
        upsert(w, obj);
    else
        return;
    reconcile(w->ns);
}

static struct k8s_informer *watch_informer(struct kp_watch *w)
{
    struct k8s_pools *p = w->ns->p;
    char coll[256], sel[300], q[256];
    struct k8s_informer_config cfg = {
        .collection = coll,
        .query = q,
        .name = w->ns->name,
        .log_what = w->kind == KP_POOL ? "warm pools of namespace"
                                       : "templates of namespace",
        .log_watch = w->kind == KP_POOL ? "warm pool watch" : "template watch",
        .list_kind = w->kind == KP_POOL ? "a SandboxWarmPoolList"
                                        : "a SandboxTemplateList",
        .list_began = on_list_began,
        .list_object = on_list_object,
        .list_done = on_list_done,
        .watch_event = on_watch_event,
        .opaque = w,
    };

    snprintf(coll, sizeof(coll), K8S_EXT_API "/namespaces/%s/%s", w->ns->name,
             kind_plural[w->kind]);
    snprintf(sel, sizeof(sel), K8S_LABEL_GATEWAY_ID "=%s",
             p->settings->gateway_id);
    memcpy(q, "labelSelector=", sizeof("labelSelector="));
    k8s_query_escape(sel, q + strlen(q), sizeof(q) - strlen(q));
    return k8s_informer_new(p->loop, p->host, p->client, p->settings, &cfg);
}

/* ---- writes ---- */

static void write_free(struct kp_write *wr)
{
    struct k8s_pools *p = wr->w->ns->p;

    for (struct kp_write **pp = &p->writes; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == wr) {
            *pp = wr->next;
            break;
        }
    }
    sg_strmap_remove(wr->w->busy, wr->name);
    free(wr);
}

static void on_written(void *opaque, const struct k8s_response *r)
{
    struct kp_write *wr = opaque;
    struct kp_watch *w = wr->w;
    struct k8s_pools *p = w->ns->p;

    wr->call = NULL;
    /* Success (and 404 for a DELETE): the watch reports the result.
       Anything else looks again after a pause: an error, and a 409 too,
       since a watch event that came while this write was in flight found
       the name busy and did nothing (by then the watch has the newer
       object, or brings it before the pause ends). */
    if ((r->status < 200 || r->status > 299) && r->status != 404) {
        if (r->status != 409)
            LOG(p, SG_DRIVER_LOG_WARN, "warm pool: %s %s/%s: HTTP %ld%s%s",
                kind_name[w->kind], w->ns->name, wr->name, r->status,
                r->error != NULL ? ": " : "",
                r->error != NULL ? r->error : "");
        if (!uv_is_active((uv_handle_t *)&p->retry))
            uv_timer_start(&p->retry, on_retry,
                           r->status == 409 ? p->settings->retry_base_ms
                                            : p->settings->retry_max_ms,
                           0);
    }
    write_free(wr);
}

/* Send one write of w's kind for name (NULL body: DELETE). */
static void send_write(struct kp_watch *w, const char *method,
                       const char *name, const char *body)
{
    struct k8s_pools *p = w->ns->p;
    struct kp_write *wr;
    char path[PATH_BUF];
    char what[PATH_BUF];
    struct k8s_request req = {.method = method, .path = path, .body = body};

    if (sg_strmap_get(w->busy, name) != NULL)
        return;
    wr = calloc(1, sizeof(*wr));
    if (wr == NULL || sg_strmap_put(w->busy, name, wr) < 0) {
        free(wr);
        return;
    }
    wr->w = w;
    snprintf(wr->name, sizeof(wr->name), "%s", name);
    if (STREQ(method, "POST"))
        snprintf(path, sizeof(path), K8S_EXT_API "/namespaces/%s/%s",
                 w->ns->name, kind_plural[w->kind]);
    else
        snprintf(path, sizeof(path), K8S_EXT_API "/namespaces/%s/%s/%s",
                 w->ns->name, kind_plural[w->kind], name);
    snprintf(what, sizeof(what), "%s %s/%s", kind_name[w->kind], w->ns->name,
             name);
    req.what = what;
    wr->next = p->writes;
    p->writes = wr;
    LOG(p, SG_DRIVER_LOG_INFO, "warm pool: %s %s", method, what);
    wr->call = k8s_client_start(p->client, &req, on_written, wr);
    if (wr->call == NULL)
        write_free(wr);
}

/* The declared object as it must be written: with the observed
   resourceVersion for a PUT. */
static void put_want(struct kp_watch *w, struct kp_want *want,
                     const struct kp_seen *seen)
{
    json_t *o = json_deep_copy(want->obj[w->kind]);
    char *body;

    if (o == NULL)
        return;
    if (seen != NULL)
        json_object_set_new(json_object_get(o, "metadata"), "resourceVersion",
                            json_string(seen->rv));
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (body == NULL)
        return;
    send_write(w, seen != NULL ? "PUT" : "POST", want->decl->name, body);
    free(body);
}

/* ---- keeping them ---- */

static bool declared(struct kp_ns *ns, const char *name)
{
    struct k8s_pools *p = ns->p;

    for (size_t i = 0; i < p->n_wants; i++) {
        if (p->wants[i].ns == ns && STREQ(p->wants[i].decl->name, name))
            return true;
    }
    return false;
}

struct undeclared {
    struct kp_ns *ns;
    char (*names)[256];
    size_t n, cap;
};

static int collect_undeclared(void *opaque, const char *key, void *value)
{
    struct undeclared *u = opaque;

    (void)value;
    if (declared(u->ns, key))
        return 0;
    if (u->n == u->cap) {
        size_t cap = u->cap != 0 ? u->cap * 2 : 8;
        char(*n)[256] = realloc(u->names, cap * sizeof(*n));

        if (n == NULL)
            return 1;
        u->names = n;
        u->cap = cap;
    }
    snprintf(u->names[u->n++], 256, "%s", key);
    return 0;
}

static void report(struct kp_want *want, const struct kp_seen *seen)
{
    struct k8s_pools *p = want->ns->p;
    uint32_t ready = seen != NULL ? seen->ready : 0;
    uint32_t replicas = seen != NULL ? seen->replicas : 0;

    if (want->reported && want->last_ready == ready &&
        want->last_replicas == replicas)
        return;
    want->reported = true;
    want->last_ready = ready;
    want->last_replicas = replicas;
    LOG(p, SG_DRIVER_LOG_INFO, "warm pool %s/%s: %u of %u ready (%u wanted)",
        want->ns->name, want->decl->name, ready, replicas,
        want->decl->replicas);
    if (p->ready_fn != NULL)
        p->ready_fn(p->opaque, want->ns->name, want->decl->name, ready,
                    want->decl->replicas);
}

static void reconcile(struct kp_ns *ns)
{
    struct k8s_pools *p = ns->p;

    if (p->closing || !ns->w[KP_TEMPLATE].synced || !ns->w[KP_POOL].synced)
        return;
    for (size_t i = 0; i < p->n_wants; i++) {
        struct kp_want *want = &p->wants[i];

        if (want->ns != ns)
            continue;
        for (int k = 0; k < KP_KINDS; k++) {
            struct kp_seen *seen = sg_strmap_get(ns->w[k].objs,
                                                 want->decl->name);

            if (seen == NULL || STRNEQ(seen->hash, want->hash[k]) ||
                (k == KP_POOL &&
                 (seen->spec_replicas != (int64_t)want->decl->replicas ||
                  STRNEQ(seen->template_ref, want->decl->name))))
                put_want(&ns->w[k], want, seen);
        }
        report(want, sg_strmap_get(ns->w[KP_POOL].objs, want->decl->name));
    }
    for (int k = 0; k < KP_KINDS; k++) {
        struct undeclared u = {.ns = ns};

        sg_strmap_foreach(ns->w[k].objs, collect_undeclared, &u);
        for (size_t i = 0; i < u.n; i++)
            send_write(&ns->w[k], "DELETE", u.names[i], NULL);
        free(u.names);
    }
}

static void on_retry(uv_timer_t *t)
{
    struct k8s_pools *p = t->data;

    for (struct kp_ns *ns = p->nss; ns != NULL; ns = ns->next)
        reconcile(ns);
}

/* ---- lifetime ---- */

static struct kp_ns *ns_get(struct k8s_pools *p, const char *name)
{
    struct kp_ns *ns;

    for (ns = p->nss; ns != NULL; ns = ns->next) {
        if (STREQ(ns->name, name))
            return ns;
    }
    ns = calloc(1, sizeof(*ns));
    if (ns == NULL)
        return NULL;
    ns->p = p;
    snprintf(ns->name, sizeof(ns->name), "%s", name);
    for (int k = 0; k < KP_KINDS; k++) {
        ns->w[k].ns = ns;
        ns->w[k].kind = k;
        ns->w[k].objs = sg_strmap_new();
        ns->w[k].busy = sg_strmap_new();
    }
    ns->next = p->nss;
    p->nss = ns;
    return ns;
}

static bool want_init(struct k8s_pools *p, struct kp_want *want,
                      const struct k8s_managed_pool *decl, const char *ns_name)
{
    want->decl = decl;
    want->ns = ns_get(p, ns_name);
    want->obj[KP_TEMPLATE] = k8s_template_build(p->settings, decl, ns_name);
    want->obj[KP_POOL] = k8s_pool_build(p->settings, decl, ns_name);
    if (want->ns == NULL || want->obj[KP_TEMPLATE] == NULL ||
        want->obj[KP_POOL] == NULL)
        return false;
    for (int k = 0; k < KP_KINDS; k++) {
        json_t *h = json_object_get(
            json_object_get(json_object_get(want->obj[k], "metadata"),
                            "annotations"),
            K8S_ANN_SPEC_HASH);

        snprintf(want->hash[k], sizeof(want->hash[k]), "%s",
                 json_string_value(h));
    }
    return true;
}

static int free_value(void *opaque, const char *key, void *value)
{
    (void)opaque;
    (void)key;
    free(value);
    return 0;
}

static void pools_free(struct k8s_pools *p)
{
    while (p->nss != NULL) {
        struct kp_ns *ns = p->nss;

        p->nss = ns->next;
        for (int k = 0; k < KP_KINDS; k++) {
            sg_strmap_foreach(ns->w[k].objs, free_value, NULL);
            sg_strmap_free(ns->w[k].objs);
            sg_strmap_free(ns->w[k].seen);
            sg_strmap_free(ns->w[k].busy);
        }
        free(ns);
    }
    for (size_t i = 0; i < p->n_wants; i++) {
        json_decref(p->wants[i].obj[KP_TEMPLATE]);
        json_decref(p->wants[i].obj[KP_POOL]);
    }
    free(p->wants);
    free(p);
}

static void on_retry_closed(uv_handle_t *h)
{
    pools_free(h->data);
}

struct k8s_pools *k8s_pools_new(uv_loop_t *loop,
                                const struct sg_driver_host *host,
                                struct k8s_client *client,
                                const struct k8s_settings *s,
                                const char *default_ns,
                                k8s_pools_ready_fn ready_fn, void *opaque)
{
    struct k8s_pools *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->loop = loop;
    p->host = host;
    p->client = client;
    p->settings = s;
    p->ready_fn = ready_fn;
    p->opaque = opaque;
    p->wants = calloc(s->n_pools + 1, sizeof(*p->wants));
    if (p->wants == NULL || uv_timer_init(loop, &p->retry) < 0) {
        free(p->wants);
        free(p);
        return NULL;
    }
    p->retry.data = p;
    for (size_t i = 0; i < s->n_pools; i++) {
        const struct k8s_managed_pool *d = &s->pools[i];

        p->n_wants++;
        if (!want_init(p, &p->wants[i], d,
                       d->namespace_name != NULL ? d->namespace_name
                                                 : default_ns)) {
            k8s_pools_close(p);
            return NULL;
        }
    }
    for (struct kp_ns *ns = p->nss; ns != NULL; ns = ns->next) {
        for (int k = 0; k < KP_KINDS; k++) {
            ns->w[k].inf = watch_informer(&ns->w[k]);
            if (ns->w[k].inf == NULL) {
                k8s_pools_close(p);
                return NULL;
            }
            k8s_informer_start(ns->w[k].inf);
        }
    }
    return p;
}

void k8s_pools_close(struct k8s_pools *p)
{
    if (p == NULL)
        return;
    p->closing = true;
    for (struct kp_ns *ns = p->nss; ns != NULL; ns = ns->next) {
        for (int k = 0; k < KP_KINDS; k++) {
            k8s_informer_close(ns->w[k].inf);
            ns->w[k].inf = NULL;
        }
    }
    while (p->writes != NULL) {
        struct kp_write *wr = p->writes;

        k8s_call_cancel(wr->call);
        wr->call = NULL;
        write_free(wr);
    }
    uv_timer_stop(&p->retry);
    uv_close((uv_handle_t *)&p->retry, on_retry_closed);
}
