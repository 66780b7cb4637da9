/*
 * svc_health.c: grpc.health.v1.Health, Check and Watch.
 *
 * Check answers the current status, NOT_FOUND for an unknown service.
 * Besides the fixed names below, the driver reports parts of itself
 * ("kubernetes/warm-pool/ns/pool", sg_health_report), which exist from
 * their first report on.
 * Watch sends the current status at once (SERVICE_UNKNOWN for an unknown
 * name, and the stream stays open, as the health protocol says), then every
 * change. Each response carries the gateway version in the initial metadata
 * key "sandgate-version", which sgctl version reads.
 */
#include "internal.h"

#include "health.h"
#include "services.h"
#include "log.h"

#include <pthread.h>
#include <stdlib.h>

#include "grpc_health_v1_health.pb-c.h"

SG_LOG_INIT("server.health");

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;

/* The names health knows: the gateway and our API services. */
static const char *const known[] = {
    "",
    "sandgate.v1.SandboxService",
    "sandgate.v1.CredentialService",
    "sandgate.v1.EventService",
    "grpc.health.v1.Health",
};

/* Names reported at run time, after the known ones. */
#define REPORTED_MAX 256

struct watcher {
    struct sg_call *call;
    int service;             /* index (see find_locked), or -1 */
    char *name;              /* the name asked for, while unknown */
    serving_status last;     /* last status sent */
    struct watcher *next;
};

static pthread_mutex_t health_mu = PTHREAD_MUTEX_INITIALIZER;
static bool serving[SG_N_ELEMENTS(known) + REPORTED_MAX];
static char *reported[REPORTED_MAX];
static size_t n_reported;
static struct watcher *watchers;

static grpc_metadata version_md[1];
static pthread_once_t version_once = PTHREAD_ONCE_INIT;

static void init_version_md(void)
{
    version_md[0].key = grpc_slice_from_static_string("sandgate-version");
    version_md[0].value = grpc_slice_from_static_string(SG_VERSION);
}

/* The index of name: a known one, or SG_N_ELEMENTS(known) + its place
   among the reported ones; -1 when it is neither. */
static int find_locked(const char *name)
{
    for (size_t i = 0; i < SG_N_ELEMENTS(known); i++)
        if (STREQ(known[i], name))
            return (int)i;
    for (size_t i = 0; i < n_reported; i++)
        if (STREQ(reported[i], name))
            return (int)(SG_N_ELEMENTS(known) + i);
    return -1;
}

static int find(const char *name)
{
    int idx;

    pthread_mutex_lock(&health_mu);
    idx = find_locked(name);
    pthread_mutex_unlock(&health_mu);
    return idx;
}

static serving_status status_of_locked(int idx)
{
    if (idx < 0)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    return serving[idx]
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void send_status(struct sg_call *call, serving_status st)
{
    Grpc__Health__V1__HealthCheckResponse resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

    resp.status = st;
    sg_call_send(call, &resp.base);
}

/* Tell every watcher whose status changed. Called with health_mu held. */
static void notify_locked(void)
{
    for (struct watcher *w = watchers; w; w = w->next) {
        serving_status st;

        if (w->service < 0 && w->name != NULL)
            w->service = find_locked(w->name);
        st = status_of_locked(w->service);
        if (st != w->last) {
            w->last = st;
            send_status(w->call, st);
        }
    }
}

void sg_health_set_all(bool on)
{
    pthread_mutex_lock(&health_mu);
    for (size_t i = 0; i < SG_N_ELEMENTS(known); i++)
        serving[i] = on;
    notify_locked();
    pthread_mutex_unlock(&health_mu);
    SG_INFO("health: %s", on ? "SERVING" : "NOT_SERVING");
}

void sg_health_report(const char *service, bool on)
{
    int idx;
    char *copy = NULL;

    pthread_mutex_lock(&health_mu);
    idx = find_locked(service);
    if (idx < 0 && n_reported < REPORTED_MAX) {
        copy = strdup(service);
        if (copy != NULL) {
            reported[n_reported] = copy;
            idx = (int)(SG_N_ELEMENTS(known) + n_reported++);
        }
    }
    if (idx >= (int)SG_N_ELEMENTS(known) && serving[idx] != on) {
        serving[idx] = on;
        notify_locked();
    } else if (copy != NULL) {
        notify_locked(); /* watchers of a name that did not exist */
    }
    pthread_mutex_unlock(&health_mu);
    if (idx < 0)
        SG_WARN("health: more than %d reported services; '%s' is dropped",
                REPORTED_MAX, service);
}

int sg_health_set(const char *service, bool on)
{
    int idx = find(service);

    if (idx < 0)
        return -1;
    pthread_mutex_lock(&health_mu);
    serving[idx] = on;
    notify_locked();
    pthread_mutex_unlock(&health_mu);
    return 0;
}

static void health_check(struct sg_call *call, const ProtobufCMessage *msg)
{
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)msg;
    Grpc__Health__V1__HealthCheckResponse resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    int idx = find(req->service);

    if (idx < 0) {
        sg_call_finish(call, GRPC_STATUS_NOT_FOUND, "unknown service");
        return;
    }
    pthread_once(&version_once, init_version_md);
    sg_call_set_initial_metadata(call, version_md, 1);
    pthread_mutex_lock(&health_mu);
    resp.status = status_of_locked(idx);
    pthread_mutex_unlock(&health_mu);
    sg_call_reply(call, &resp.base);
}

static void health_watch(struct sg_call *call, const ProtobufCMessage *msg)
{
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)msg;
    struct watcher *w = calloc(1, sizeof(*w));

    if (!w) {
        sg_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    pthread_once(&version_once, init_version_md);
    sg_call_set_initial_metadata(call, version_md, 1);
    sg_call_ref(call);
    w->call = call;
    w->service = find(req->service);
    if (w->service < 0)
        w->name = strdup(req->service); /* may be reported later */
    sg_call_set_data(call, w);

    pthread_mutex_lock(&health_mu);
    w->last = status_of_locked(w->service);
    send_status(call, w->last);
    w->next = watchers;
    watchers = w;
    pthread_mutex_unlock(&health_mu);
}

/* The stream ended (client, deadline or shutdown): forget the watcher. */
static void health_watch_cancel(struct sg_call *call)
{
    struct watcher *w = sg_call_get_data(call);
    struct watcher **pp;

    if (!w)
        return;
    pthread_mutex_lock(&health_mu);
    for (pp = &watchers; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    pthread_mutex_unlock(&health_mu);
    sg_call_set_data(call, NULL);
    free(w->name);
    free(w);
    sg_call_unref(call);
}

static const struct sg_method health_methods[] = {
    {
        .path = "/grpc.health.v1.Health/Check",
        .kind = SG_METHOD_UNARY,
        .request = &grpc__health__v1__health_check_request__descriptor,
        .on_start = health_check,
    },
    {
        .path = "/grpc.health.v1.Health/Watch",
        .kind = SG_METHOD_SERVER_STREAM,
        .request = &grpc__health__v1__health_check_request__descriptor,
        .on_start = health_watch,
        .on_cancel = health_watch_cancel,
    },
};

const struct sg_service sg_health_service = {
    .name = "grpc.health.v1.Health",
    .methods = health_methods,
    .n_methods = SG_N_ELEMENTS(health_methods),
};
