/*
 * k8s_secrets.c: the "kubernetes-secret" credential source over the
 * driver's client (k8s_secrets.h).
 */
#include "internal.h"

#include "k8s_secrets.h"

#include "loop.h"
#include "sources.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SOURCE "kubernetes-secret"
#define KEY_MAX 253 /* a Secret data key's longest */

/* One resolve: the waiting worker and the loop each hold a reference. */
struct sreq {
    char ns[64];
    char name[254];
    char key[KEY_MAX + 1];
    pthread_cond_t cv;
    bool done;
    int refs;
    int rc;            /* 0, or -1 with err */
    uint8_t *data;     /* malloc'd material, wiped on free */
    size_t len;
    char err[1024];
    struct k8s_call *call;
    struct sreq *next; /* in flight on the loop */
};

/* The driver the source resolves through; guarded by mu. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct k8s_client *bound_client;
static struct sg_loop_queue *bound_queue;
static uint32_t bound_timeout_ms;
static struct sreq *inflight;
static const struct sg_credsrc_host *src_host;

static void sreq_unref_locked(struct sreq *r)
{
    if (--r->refs > 0)
        return;
    if (r->data != NULL)
        explicit_bzero(r->data, r->len);
    free(r->data);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static void finish_locked(struct sreq *r, int rc, const char *err)
{
    if (r->done)
        return;
    r->done = true;
    r->rc = rc;
    if (err != NULL)
        snprintf(r->err, sizeof(r->err), "%s", err);
    pthread_cond_signal(&r->cv);
}

static void inflight_remove_locked(struct sreq *r)
{
    for (struct sreq **pp = &inflight; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
}

/* ---- the reference ---- */

/* The slots' private state: the host first, so that the built-in
   table's validate and describe (credentials/sources.h) can be reused:
   one set of reference rules and messages, with or without this driver. */
struct src_priv {
    const struct sg_credsrc_host *host;
};

static char *host_msg(const char *text)
{
    size_t n = strlen(text) + 1;
    char *m = src_host != NULL ? src_host->alloc(n) : malloc(n);

    if (m != NULL)
        memcpy(m, text, n);
    return m;
}

/* A validated reference's fields into r. */
static void take_ref(const char *ref_json, struct sreq *r)
{
    json_t *ref = json_loads(ref_json, 0, NULL);

    snprintf(r->ns, sizeof(r->ns), "%s",
             json_string_value(json_object_get(ref, "namespace")));
    snprintf(r->name, sizeof(r->name), "%s",
             json_string_value(json_object_get(ref, "name")));
    snprintf(r->key, sizeof(r->key), "%s",
             json_string_value(json_object_get(ref, "key")));
    json_decref(ref);
}

/* ---- on the loop ---- */

/* Wipe every value of a Secret's data in place: the tree is ours. */
static void wipe_data(json_t *data)
{
    const char *k;
    json_t *v;

    json_object_foreach(data, k, v)
    {
        if (json_is_string(v))
            explicit_bzero((char *)json_string_value(v),
                           json_string_length(v));
    }
}

static void on_secret(void *opaque, const struct k8s_response *resp)
{
    struct sreq *r = opaque;
    json_t *j = NULL;
    json_t *data;
    json_t *v;
    char *plain = NULL;
    size_t len = 0;
    char err[1024];
    int rc = -1;

    err[0] = '\0';
    if (resp->status == 200)
        j = json_loads(resp->body, 0, NULL);
    data = json_object_get(j, "data");
    v = json_object_get(data, r->key);
    if (resp->status == 404)
        snprintf(err, sizeof(err), "Secret %s/%s not found", r->ns, r->name);
    else if (resp->status == 401 || resp->status == 403)
        snprintf(err, sizeof(err),
                 "the gateway may not read Secret %s/%s (HTTP %ld)", r->ns,
                 r->name, resp->status);
    else if (resp->status != 200)
        snprintf(err, sizeof(err), "reading Secret %s/%s: HTTP %ld%s%s",
                 r->ns, r->name, resp->status, resp->error != NULL ? ": " : "",
                 resp->error != NULL ? resp->error : "");
    else if (!json_is_string(v))
        snprintf(err, sizeof(err), "Secret %s/%s has no key '%s'", r->ns,
                 r->name, r->key);
    else if (k8s_base64_decode(json_string_value(v), &plain, &len) < 0)
        snprintf(err, sizeof(err), "Secret %s/%s: key '%s' is not base64",
                 r->ns, r->name, r->key);
    else
        rc = 0;
    wipe_data(data);
    json_decref(j);
    pthread_mutex_lock(&mu);
    r->call = NULL;
    inflight_remove_locked(r);
    r->data = (uint8_t *)plain;
    r->len = len;
    finish_locked(r, rc, err);
    sreq_unref_locked(r);
    pthread_mutex_unlock(&mu);
}

static void start_req(void *arg)
{
    struct sreq *r = arg;
    char path[512];
    char what[360];
    struct k8s_request req = {.method = "GET", .path = path, .what = what};

    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets/%s", r->ns,
             r->name);
    snprintf(what, sizeof(what), "Secret %s/%s", r->ns, r->name);
    pthread_mutex_lock(&mu);
    if (bound_client == NULL || r->done) {
        finish_locked(r, -1, "the kubernetes driver is not running");
        sreq_unref_locked(r);
        pthread_mutex_unlock(&mu);
        return;
    }
    r->call = k8s_client_start(bound_client, &req, on_secret, r);
    if (r->call == NULL) {
        finish_locked(r, -1, "cannot start a request to the API server");
        sreq_unref_locked(r);
    } else {
        r->next = inflight;
        inflight = r;
    }
    pthread_mutex_unlock(&mu);
}

/* ---- the source's slots ---- */

static int src_open(void *priv, const struct sg_credsrc_host *host,
                    const char *settings_json, char **errmsg)
{
    struct src_priv *p = priv;

    p->host = host;
    src_host = host;
    return sg_credsrc_k8s_secret_ops()->open(priv, host, settings_json,
                                             errmsg);
}

static int src_validate(void *priv, const char *ref_json, char **errmsg)
{
    return sg_credsrc_k8s_secret_ops()->validate(priv, ref_json, errmsg);
}

static int src_describe(void *priv, const char *ref_json, char **out,
                        char **errmsg)
{
    return sg_credsrc_k8s_secret_ops()->describe(priv, ref_json, out, errmsg);
}

static int src_resolve(void *priv, const char *ref_json,
                       struct sg_credsrc_material *out, char **errmsg)
{
    struct sreq *r = calloc(1, sizeof(*r));
    struct timespec until;
    int rc = -1;

    if (r == NULL) {
        *errmsg = host_msg("out of memory");
        return -1;
    }
    if (src_validate(priv, ref_json, errmsg) < 0) {
        free(r);
        return -1;
    }
    take_ref(ref_json, r);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 2;
    pthread_mutex_lock(&mu);
    if (bound_queue == NULL || sg_loop_post(bound_queue, start_req, r) < 0) {
        finish_locked(r, -1, "the kubernetes driver is not running");
        r->refs = 1;
    }
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(2 * (bound_timeout_ms != 0 ? bound_timeout_ms
                                                        : 30000) /
                             1000) +
                    1;
    while (!r->done) {
        if (pthread_cond_timedwait(&r->cv, &mu, &until) == ETIMEDOUT) {
            finish_locked(r, -1, "the API server did not answer in time");
            break;
        }
    }
    if (r->rc == 0) {
        out->data = src_host->alloc(r->len > 0 ? r->len : 1);
        if (out->data != NULL) {
            memcpy(out->data, r->data, r->len);
            out->len = r->len;
            out->expire_time_ms = 0;
            rc = 0;
        } else {
            *errmsg = host_msg("out of memory");
        }
    } else {
        *errmsg = host_msg(r->err);
    }
    sreq_unref_locked(r);
    pthread_mutex_unlock(&mu);
    return rc;
}

static const struct sg_credsrc_ops secret_ops = {
    .abi_major = SG_CREDSRC_ABI_MAJOR,
    .abi_minor = SG_CREDSRC_ABI_MINOR,
    .struct_size = sizeof(struct sg_credsrc_ops),
    .name = SOURCE,
    .signature = SG_CREDSRC_SIGNATURE,
    .priv_size = sizeof(struct src_priv),
    .open = src_open,
    .validate = src_validate,
    .describe = src_describe,
    .resolve = src_resolve,
};

const struct sg_credsrc_ops *k8s_secrets_ops(void)
{
    return &secret_ops;
}

int k8s_secrets_start(uv_loop_t *loop, struct k8s_client *client,
                      uint32_t request_timeout_ms)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_loop_queue *q = sg_loop_queue_new(loop, &err);

    if (q == NULL) {
        sg_error_reset(&err);
        return -1;
    }
    pthread_mutex_lock(&mu);
    bound_client = client;
    bound_queue = q;
    bound_timeout_ms = request_timeout_ms;
    pthread_mutex_unlock(&mu);
    return 0;
}

void k8s_secrets_stop(void)
{
    struct sg_loop_queue *q;

    pthread_mutex_lock(&mu);
    q = bound_queue;
    bound_queue = NULL;
    bound_client = NULL;
    while (inflight != NULL) {
        struct sreq *r = inflight;

        inflight = r->next;
        k8s_call_cancel(r->call); /* its done never runs */
        r->call = NULL;
        finish_locked(r, -1, "the kubernetes driver is not running");
        sreq_unref_locked(r);
    }
    pthread_mutex_unlock(&mu);
    /* Queued starts run now and find no client (outside mu: they take
       it). */
    sg_loop_queue_close(q);
}
