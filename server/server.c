/*
 * server.c: the grpc_server, its completion-queue threads, listeners and
 * the shutdown sequence.
 *
 * Threads: one per completion queue, each looping on
 * grpc_completion_queue_next and running tag callbacks (call.c). The loop
 * thread (libuv) owns start, shutdown and timers; CQ threads reach it only
 * through uv_async_send with a set of pending event bits.
 *
 * Shutdown order (each step on the loop unless noted):
 *   1. Drain: every open stream ends with UNAVAILABLE; calls already
 *      accepted go on; new calls are answered UNAVAILABLE by dispatch.
 *   2. Once no call is alive and none has arrived for DRAIN_QUIET_MS (or
 *      at drain_timeout_ms), grpc_server_shutdown_and_notify: the core
 *      sends GOAWAY and pre-posted requests complete with ok == false.
 *      The core cancels (CANCELLED, not retryable) any call that races its
 *      GOAWAY; draining first keeps clients from meeting that.
 *   3. At drain_timeout_ms, grpc_server_cancel_all_calls.
 *   4. Once the shutdown tag arrived and no call context is alive:
 *      grpc_server_destroy, then shut every CQ down.
 *   5. Each CQ thread returns at GRPC_QUEUE_SHUTDOWN and says so; when all
 *      have, the loop closes its handles (the async one last) and calls
 *      done_cb.
 */
#include "internal.h"

#include "transport.h"
#include "log.h"

#include <stdlib.h>
#include <unistd.h>

#include <grpc/support/alloc.h>

SG_LOG_INIT("server");

/* Requests kept posted per method and queue, so bursts find one waiting. */
#define POSTED_PER_METHOD 4
#define POSTED_GENERIC 4
/* How often server default deadlines are checked. */
#define SWEEP_INTERVAL_MS 100
/* While draining: how often, and how long no new call must arrive. */
#define DRAIN_CHECK_MS 20
#define DRAIN_QUIET_MS 100
/* After the drain deadline and cancel-all, how long calls may linger. */
#define FORCED_EXIT_MS 5000

struct sg_tls_listener {
    char *cert_file;
    char *key_file;
    char *client_ca_file;
    pthread_mutex_t mu;
    grpc_ssl_server_certificate_config *pending; /* reload, not yet taken */
    bool initial_taken;
};

struct sg_server {
    uv_loop_t *loop;
    grpc_server *server;
    grpc_completion_queue **cqs;
    size_t n_cqs;
    uv_thread_t *threads;
    size_t n_threads;

    struct sg_registered_method *methods;
    size_t n_methods;

    struct sg_tls_listener *tls; /* per listener; cert_file NULL = plaintext */
    size_t n_listeners;
    char **addresses;
    int *ports;

    unsigned default_deadline_ms;
    unsigned drain_timeout_ms;

    pthread_mutex_t list_mu;
    struct sg_call *live;
    size_t n_live;

    atomic_bool draining;      /* step 1: new calls get UNAVAILABLE */
    atomic_bool shutting_down; /* step 2: the core is shutting down */
    atomic_llong last_call_ms; /* monotonic ms of the newest call */
    atomic_bool access_log;
    atomic_bool shutdown_tag_seen;
    atomic_size_t cqs_drained;
    struct sg_tag shutdown_tag;
    bool destroyed;

    uv_async_t async;
    uv_timer_t sweep_timer;
    uv_timer_t drain_timer;
    int open_handles;
    void (*done_cb)(void *opaque);
    void *done_opaque;

    void *app_data; /* set before start, then only read */
    sg_server_auth_fn auth_fn; /* the same */
    void *auth_opaque;
};

/* Ask the loop to look at the shutdown state again (any thread). */
static void wake_loop(struct sg_server *srv)
{
    uv_async_send(&srv->async);
}

/* ---- CQ threads --------------------------------------------------------- */

struct cq_thread_arg {
    struct sg_server *srv;
    grpc_completion_queue *cq;
};

static void cq_thread(void *opaque)
{
    struct cq_thread_arg *arg = opaque;
    struct sg_server *srv = arg->srv;
    grpc_completion_queue *cq = arg->cq;

    free(arg);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            struct sg_tag *tag = ev.tag;
            tag->fn(tag, ev.success != 0);
        }
    }
    atomic_fetch_add(&srv->cqs_drained, 1);
    wake_loop(srv);
}

/* ---- requests ----------------------------------------------------------- */

void sg_server_rearm(struct sg_server *srv, grpc_completion_queue *cq,
                     const struct sg_registered_method *rm)
{
    struct sg_call *call;
    grpc_call_error rc;

    if (atomic_load(&srv->shutting_down))
        return;
    call = sg_call_new(srv, cq, rm);
    if (!call) {
        SG_ERROR("out of memory posting a request");
        return;
    }
    if (!rm) {
        rc = grpc_server_request_call(srv->server, &call->call,
                                      &call->details, &call->md, cq, cq,
                                      &call->tag_new);
    } else {
        bool with_payload = rm->method->kind != SG_METHOD_BIDI_STREAM;
        rc = grpc_server_request_registered_call(
            srv->server, rm->handle, &call->call, &call->deadline, &call->md,
            with_payload ? &call->payload : NULL, cq, cq, &call->tag_new);
    }
    if (rc != GRPC_CALL_OK) {
        /* The server is shutting down; nothing will complete this tag. */
        sg_call_unref(call);
    }
}

static long long now_ms(void)
{
    gpr_timespec t = gpr_now(GPR_CLOCK_MONOTONIC);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void sg_server_call_started(struct sg_server *srv, struct sg_call *call)
{
    if (atomic_load(&srv->draining))
        atomic_store(&srv->last_call_ms, now_ms());
    pthread_mutex_lock(&srv->list_mu);
    call->prev = NULL;
    call->next = srv->live;
    if (srv->live)
        srv->live->prev = call;
    srv->live = call;
    srv->n_live++;
    pthread_mutex_unlock(&srv->list_mu);
}

void sg_server_call_unlink(struct sg_server *srv, struct sg_call *call)
{
    pthread_mutex_lock(&srv->list_mu);
    if (call->prev)
        call->prev->next = call->next;
    else
        srv->live = call->next;
    if (call->next)
        call->next->prev = call->prev;
    pthread_mutex_unlock(&srv->list_mu);
}

void sg_server_call_done(struct sg_server *srv)
{
    pthread_mutex_lock(&srv->list_mu);
    /* Post under the lock: the loop closes the async handle only after it
     * has seen n_live == 0 under this lock, so the post cannot come late. */
    if (--srv->n_live == 0 && atomic_load(&srv->shutting_down))
        wake_loop(srv);
    pthread_mutex_unlock(&srv->list_mu);
}

unsigned sg_server_default_deadline_ms(const struct sg_server *srv)
{
    return srv->default_deadline_ms;
}

bool sg_server_draining(const struct sg_server *srv)
{
    return atomic_load(&((struct sg_server *)srv)->draining);
}

/* ---- construction ------------------------------------------------------- */

static grpc_channel_args *make_channel_args(const struct sg_config *cfg)
{
    grpc_arg *a = calloc(10, sizeof(*a));
    grpc_channel_args *args = calloc(1, sizeof(*args));
    size_t n = 0;

    if (!a || !args) {
        free(a);
        free(args);
        return NULL;
    }
#define INT_ARG(k, v)                                                          \
    do {                                                                       \
        a[n].type = GRPC_ARG_INTEGER;                                          \
        a[n].key = (char *)(k);                                                \
        a[n].value.integer = (int)(v);                                         \
        n++;                                                                   \
    } while (0)
    INT_ARG(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
            cfg->max_receive_message_bytes);
    INT_ARG(GRPC_ARG_MAX_CONCURRENT_STREAMS, cfg->max_concurrent_streams);
    INT_ARG(GRPC_ARG_MAX_METADATA_SIZE, cfg->max_metadata_bytes);
    INT_ARG(GRPC_ARG_KEEPALIVE_TIME_MS, cfg->keepalive_time_ms);
    INT_ARG(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, cfg->keepalive_timeout_ms);
    INT_ARG(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
            cfg->keepalive_min_ping_interval_ms);
    INT_ARG(GRPC_ARG_HTTP2_MAX_PING_STRIKES, cfg->keepalive_max_ping_strikes);
    INT_ARG(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
            cfg->keepalive_permit_without_calls ? 1 : 0);
#undef INT_ARG
    args->num_args = n;
    args->args = a;
    return args;
}

static void free_channel_args(grpc_channel_args *args)
{
    if (!args)
        return;
    free(args->args);
    free(args);
}

static int register_methods(struct sg_server *srv,
                            const struct sg_service *const *services,
                            struct sg_error *err)
{
    size_t n = 0;

    for (size_t s = 0; services[s]; s++)
        n += services[s]->n_methods;
    srv->methods = calloc(n, sizeof(*srv->methods));
    if (!srv->methods) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    for (size_t s = 0; services[s]; s++) {
        const struct sg_service *svc = services[s];
        for (size_t i = 0; i < svc->n_methods; i++) {
            const struct sg_method *m = &svc->methods[i];
            struct sg_registered_method *rm = &srv->methods[srv->n_methods];
            grpc_server_register_method_payload_handling ph =
                m->kind == SG_METHOD_BIDI_STREAM
                    ? GRPC_SRM_PAYLOAD_NONE
                    : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER;
            rm->method = m;
            rm->handle = grpc_server_register_method(srv->server, m->path,
                                                     NULL, ph, 0);
            if (!rm->handle) {
                sg_error_report(err, SG_ERR_INTERNAL,
                                "cannot register method %s", m->path);
                return -1;
            }
            srv->n_methods++;
        }
    }
    return 0;
}

static void async_cb(uv_async_t *handle);
static void on_shutdown_tag(struct sg_tag *tag, bool ok);
static void sweep_cb(uv_timer_t *handle);

struct sg_server *sg_server_new(const struct sg_config *cfg,
                                const struct sg_service *const *services,
                                uv_loop_t *loop, struct sg_error *err)
{
    struct sg_server *srv = calloc(1, sizeof(*srv));
    grpc_channel_args *args = NULL;
    long ncpu;

    if (!srv)
        goto nomem;
    srv->loop = loop;
    srv->default_deadline_ms = cfg->default_deadline_ms;
    srv->drain_timeout_ms = cfg->drain_timeout_ms;
    pthread_mutex_init(&srv->list_mu, NULL);
    srv->shutdown_tag.fn = on_shutdown_tag;

    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    srv->n_cqs = cfg->workers ? cfg->workers : (ncpu > 0 ? (size_t)ncpu : 1);

    args = make_channel_args(cfg);
    if (!args)
        goto nomem;
    srv->server = grpc_server_create(args, NULL);
    free_channel_args(args);

    srv->cqs = calloc(srv->n_cqs, sizeof(*srv->cqs));
    srv->threads = calloc(srv->n_cqs, sizeof(*srv->threads));
    if (!srv->cqs || !srv->threads)
        goto nomem;
    for (size_t i = 0; i < srv->n_cqs; i++) {
        srv->cqs[i] = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(srv->server, srv->cqs[i], NULL);
    }
    if (register_methods(srv, services, err) < 0)
        goto error;

    srv->n_listeners = cfg->n_listeners;
    srv->tls = calloc(cfg->n_listeners, sizeof(*srv->tls));
    srv->addresses = calloc(cfg->n_listeners, sizeof(*srv->addresses));
    srv->ports = calloc(cfg->n_listeners, sizeof(*srv->ports));
    if (!srv->tls || !srv->addresses || !srv->ports)
        goto nomem;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct sg_listener_config *l = &cfg->listeners[i];
        pthread_mutex_init(&srv->tls[i].mu, NULL);
        srv->addresses[i] = strdup(l->address);
        if (!srv->addresses[i])
            goto nomem;
        if (l->cert_file) {
            srv->tls[i].cert_file = strdup(l->cert_file);
            srv->tls[i].key_file = strdup(l->key_file);
            srv->tls[i].client_ca_file =
                l->client_ca_file ? strdup(l->client_ca_file) : NULL;
            if (!srv->tls[i].cert_file || !srv->tls[i].key_file ||
                (l->client_ca_file && !srv->tls[i].client_ca_file))
                goto nomem;
        }
    }

    uv_async_init(loop, &srv->async, async_cb);
    srv->async.data = srv;
    uv_timer_init(loop, &srv->sweep_timer);
    srv->sweep_timer.data = srv;
    uv_timer_init(loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    srv->open_handles = 3;
    return srv;

 nomem:
    sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
 error:
    if (srv && srv->server) {
        grpc_server_destroy(srv->server);
        srv->server = NULL;
    }
    if (srv && srv->cqs) {
        for (size_t i = 0; i < srv->n_cqs; i++) {
            if (!srv->cqs[i])
                continue;
            grpc_completion_queue_shutdown(srv->cqs[i]);
            while (grpc_completion_queue_next(
                       srv->cqs[i], gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN)
                ;
            grpc_completion_queue_destroy(srv->cqs[i]);
            srv->cqs[i] = NULL;
        }
    }
    sg_server_free(srv);
    return NULL;
}

/* ---- TLS ---------------------------------------------------------------- */

static char *read_file(const char *path, struct sg_error *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long len;

    if (!f) {
        sg_error_report(err, SG_ERR_IO, "cannot open '%s'", path);
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0 || len > 16 * 1024 * 1024) {
        sg_error_report(err, SG_ERR_IO, "cannot read '%s'", path);
        goto cleanup;
    }
    buf = malloc((size_t)len + 1);
    if (!buf) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
        sg_error_report(err, SG_ERR_IO, "cannot read '%s'", path);
        free(buf);
        buf = NULL;
        goto cleanup;
    }
    buf[len] = '\0';

 cleanup:
    fclose(f);
    return buf;
}

/* The key is wiped before it is freed: it must not linger on the heap. */
static void free_secret(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

static grpc_ssl_server_certificate_config *
load_cert_config(const struct sg_tls_listener *t, struct sg_error *err)
{
    grpc_ssl_pem_key_cert_pair pair = {NULL, NULL};
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;
    grpc_ssl_server_certificate_config *cfg = NULL;

    if (!(cert = read_file(t->cert_file, err)) ||
        !(key = read_file(t->key_file, err)))
        goto cleanup;
    if (t->client_ca_file && !(ca = read_file(t->client_ca_file, err)))
        goto cleanup;
    /*
     * With a config fetcher the core insists on root certificates even when
     * it never asks clients for one. Without mTLS they are never used to
     * verify anything, so the server's own chain stands in.
     */
    if (!ca && !(ca = strdup(cert))) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    pair.private_key = key;
    pair.cert_chain = cert;
    /* Copies the PEM strings. */
    cfg = grpc_ssl_server_certificate_config_create(ca, &pair, 1);

 cleanup:
    free(ca);
    free(cert);
    free_secret(key);
    return cfg;
}

/*
 * Called by the core at handshakes. Hands over the first configuration once,
 * then a reloaded one whenever SIGHUP stored it.
 */
static grpc_ssl_certificate_config_reload_status
fetch_cert_config(void *user_data, grpc_ssl_server_certificate_config **out)
{
    struct sg_tls_listener *t = user_data;
    grpc_ssl_certificate_config_reload_status st =
        GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;

    pthread_mutex_lock(&t->mu);
    if (t->pending) {
        *out = t->pending;
        t->pending = NULL;
        st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
    }
    pthread_mutex_unlock(&t->mu);
    return st;
}

static grpc_server_credentials *make_credentials(struct sg_tls_listener *t,
                                                 struct sg_error *err)
{
    grpc_ssl_server_credentials_options *opts;
    grpc_ssl_client_certificate_request_type req =
        t->client_ca_file
            ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;

    if (!t->cert_file)
        return grpc_insecure_server_credentials_create();
    t->pending = load_cert_config(t, err);
    if (!t->pending)
        return NULL;
    opts = grpc_ssl_server_credentials_create_options_using_config_fetcher(
        req, fetch_cert_config, t);
    return grpc_ssl_server_credentials_create_with_options(opts);
}

int sg_server_reload_tls(struct sg_server *srv, struct sg_error *err)
{
    for (size_t i = 0; i < srv->n_listeners; i++) {
        struct sg_tls_listener *t = &srv->tls[i];
        grpc_ssl_server_certificate_config *c;
        if (!t->cert_file)
            continue;
        c = load_cert_config(t, err);
        if (!c)
            return -1;
        pthread_mutex_lock(&t->mu);
        if (t->pending)
            grpc_ssl_server_certificate_config_destroy(t->pending);
        t->pending = c;
        pthread_mutex_unlock(&t->mu);
        SG_INFO("TLS certificates of %s reloaded", srv->addresses[i]);
    }
    return 0;
}

/* ---- start -------------------------------------------------------------- */

int sg_server_start(struct sg_server *srv, struct sg_error *err)
{
    for (size_t i = 0; i < srv->n_listeners; i++) {
        grpc_server_credentials *creds = make_credentials(&srv->tls[i], err);
        if (!creds)
            return -1;
        srv->ports[i] = grpc_server_add_http2_port(srv->server,
                                                   srv->addresses[i], creds);
        grpc_server_credentials_release(creds);
        if (srv->ports[i] == 0) {
            sg_error_report(err, SG_ERR_IO, "cannot listen on '%s'",
                            srv->addresses[i]);
            return -1;
        }
        SG_INFO("listening on %s, port %d (%s)", srv->addresses[i],
                srv->ports[i],
                !srv->tls[i].cert_file    ? "plaintext"
                : srv->tls[i].client_ca_file ? "mTLS"
                                             : "TLS");
    }
    grpc_server_start(srv->server);

    for (size_t q = 0; q < srv->n_cqs; q++) {
        for (size_t m = 0; m < srv->n_methods; m++)
            for (int k = 0; k < POSTED_PER_METHOD; k++)
                sg_server_rearm(srv, srv->cqs[q], &srv->methods[m]);
        for (int k = 0; k < POSTED_GENERIC; k++)
            sg_server_rearm(srv, srv->cqs[q], NULL);
    }
    for (size_t q = 0; q < srv->n_cqs; q++) {
        struct cq_thread_arg *arg = malloc(sizeof(*arg));
        if (!arg) {
            sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
            return -1;
        }
        arg->srv = srv;
        arg->cq = srv->cqs[q];
        if (uv_thread_create(&srv->threads[q], cq_thread, arg) != 0) {
            free(arg);
            sg_error_report(err, SG_ERR_INTERNAL, "cannot start thread");
            return -1;
        }
        srv->n_threads++;
    }
    uv_timer_start(&srv->sweep_timer, sweep_cb, SWEEP_INTERVAL_MS,
                   SWEEP_INTERVAL_MS);
    return 0;
}

int sg_server_bound_port(const struct sg_server *srv, size_t i)
{
    return i < srv->n_listeners ? srv->ports[i] : 0;
}

void sg_server_set_app_data(struct sg_server *srv, void *data)
{
    srv->app_data = data;
}

void sg_server_set_auth(struct sg_server *srv, sg_server_auth_fn fn,
                        void *opaque)
{
    srv->auth_fn = fn;
    srv->auth_opaque = opaque;
}

int sg_server_run_auth(struct sg_server *srv, struct sg_call *call,
                       bool handled)
{
    return srv->auth_fn ? srv->auth_fn(srv->auth_opaque, call, handled) : 0;
}

void *sg_server_app_data(const struct sg_server *srv)
{
    return srv->app_data;
}

void sg_server_set_access_log(struct sg_server *srv, bool on)
{
    atomic_store(&srv->access_log, on);
}

bool sg_server_access_log(const struct sg_server *srv)
{
    return atomic_load(&((struct sg_server *)srv)->access_log);
}

/* ---- timers ------------------------------------------------------------- */

/* Cancel unary calls whose server default deadline passed. */
static void expire_default_deadlines(struct sg_server *srv)
{
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);

    pthread_mutex_lock(&srv->list_mu);
    for (struct sg_call *c = srv->live; c; c = c->next) {
        if (c->default_deadline && gpr_time_cmp(c->deadline, now) < 0) {
            c->default_deadline = false; /* once */
            sg_call_expire(c);
        }
    }
    pthread_mutex_unlock(&srv->list_mu);
}

static void sweep_cb(uv_timer_t *handle)
{
    expire_default_deadlines(handle->data);
}

static void forced_exit_cb(uv_timer_t *handle)
{
    struct sg_server *srv = handle->data;
    size_t live;

    pthread_mutex_lock(&srv->list_mu);
    live = srv->n_live;
    pthread_mutex_unlock(&srv->list_mu);
    SG_ERROR("%zu calls still alive %u ms after cancelling them; exiting",
             live, FORCED_EXIT_MS);
    _exit(1);
}

static void on_shutdown_tag(struct sg_tag *tag, bool ok)
{
    struct sg_server *srv = SG_CONTAINER_OF(tag, struct sg_server,
                                            shutdown_tag);
    (void)ok;
    atomic_store(&srv->shutdown_tag_seen, true);
    wake_loop(srv);
}

/* Step 2: hand over to the core. */
static void begin_core_shutdown(struct sg_server *srv)
{
    if (atomic_exchange(&srv->shutting_down, true))
        return;
    uv_timer_stop(&srv->sweep_timer);
    grpc_server_shutdown_and_notify(srv->server, srv->cqs[0],
                                    &srv->shutdown_tag);
    /* A call may have ended before shutting_down was visible to it. */
    wake_loop(srv);
}

static void drain_check_cb(uv_timer_t *handle)
{
    struct sg_server *srv = handle->data;
    size_t live;

    /* Draining calls still have their default deadlines. */
    expire_default_deadlines(srv);
    pthread_mutex_lock(&srv->list_mu);
    live = srv->n_live;
    pthread_mutex_unlock(&srv->list_mu);
    if (live == 0 &&
        now_ms() - atomic_load(&srv->last_call_ms) >= DRAIN_QUIET_MS)
        begin_core_shutdown(srv);
}

static void drain_cb(uv_timer_t *handle)
{
    struct sg_server *srv = handle->data;

    SG_WARN("drain deadline of %u ms passed; cancelling remaining calls",
            srv->drain_timeout_ms);
    begin_core_shutdown(srv);
    grpc_server_cancel_all_calls(srv->server);
    uv_timer_start(&srv->drain_timer, forced_exit_cb, FORCED_EXIT_MS, 0);
}

/* ---- shutdown ----------------------------------------------------------- */

/* End every open stream; unary calls are left to finish. */
static void end_streams(struct sg_server *srv)
{
    struct sg_call **streams = NULL;
    size_t n = 0;

    pthread_mutex_lock(&srv->list_mu);
    streams = calloc(srv->n_live ? srv->n_live : 1, sizeof(*streams));
    for (struct sg_call *c = srv->live; c && streams; c = c->next) {
        /* A call whose count reached zero is being freed: skip it. */
        if (c->rm && c->rm->method->kind != SG_METHOD_UNARY &&
            sg_call_try_ref(c))
            streams[n++] = c;
    }
    pthread_mutex_unlock(&srv->list_mu);
    if (!streams) {
        grpc_server_cancel_all_calls(srv->server);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        sg_call_end_for_shutdown(streams[i]);
        sg_call_unref(streams[i]);
    }
    free(streams);
}

void sg_server_shutdown(struct sg_server *srv, void (*done_cb)(void *opaque),
                        void *opaque)
{
    if (atomic_exchange(&srv->draining, true))
        return;
    srv->done_cb = done_cb;
    srv->done_opaque = opaque;
    SG_INFO("shutting down: draining calls for up to %u ms",
            srv->drain_timeout_ms);
    atomic_store(&srv->last_call_ms, now_ms());
    end_streams(srv);
    /* The sweep timer now also watches for the end of the drain. */
    uv_timer_start(&srv->sweep_timer, drain_check_cb, DRAIN_CHECK_MS,
                   DRAIN_CHECK_MS);
    uv_timer_start(&srv->drain_timer, drain_cb, srv->drain_timeout_ms, 0);
}

static void handle_closed(uv_handle_t *handle)
{
    struct sg_server *srv = handle->data;

    if (--srv->open_handles == 0 && srv->done_cb)
        srv->done_cb(srv->done_opaque);
}

static void maybe_finish_shutdown(struct sg_server *srv)
{
    size_t live;

    if (!srv->destroyed && atomic_load(&srv->shutdown_tag_seen)) {
        pthread_mutex_lock(&srv->list_mu);
        live = srv->n_live;
        pthread_mutex_unlock(&srv->list_mu);
        if (live > 0)
            return;
        grpc_server_destroy(srv->server);
        srv->server = NULL;
        srv->destroyed = true;
        for (size_t i = 0; i < srv->n_cqs; i++)
            grpc_completion_queue_shutdown(srv->cqs[i]);
    }
    if (srv->destroyed && atomic_load(&srv->cqs_drained) == srv->n_threads) {
        for (size_t i = 0; i < srv->n_threads; i++)
            uv_thread_join(&srv->threads[i]);
        srv->n_threads = 0;
        atomic_store(&srv->cqs_drained, 0);
        uv_close((uv_handle_t *)&srv->sweep_timer, handle_closed);
        uv_close((uv_handle_t *)&srv->drain_timer, handle_closed);
        /* Last: no thread can post any more. */
        uv_close((uv_handle_t *)&srv->async, handle_closed);
    }
}

static void async_cb(uv_async_t *handle)
{
    struct sg_server *srv = handle->data;

    if (atomic_load(&srv->shutting_down) && !uv_is_closing(
                                                (uv_handle_t *)&srv->async))
        maybe_finish_shutdown(srv);
}

void sg_server_free(struct sg_server *srv)
{
    if (!srv)
        return;
    for (size_t i = 0; i < srv->n_cqs && srv->cqs; i++)
        if (srv->cqs[i])
            grpc_completion_queue_destroy(srv->cqs[i]);
    for (size_t i = 0; i < srv->n_listeners; i++) {
        if (srv->tls) {
            free(srv->tls[i].cert_file);
            free(srv->tls[i].key_file);
            free(srv->tls[i].client_ca_file);
            if (srv->tls[i].pending)
                grpc_ssl_server_certificate_config_destroy(
                    srv->tls[i].pending);
            pthread_mutex_destroy(&srv->tls[i].mu);
        }
        if (srv->addresses)
            free(srv->addresses[i]);
    }
    free(srv->tls);
    free(srv->addresses);
    free(srv->ports);
    free(srv->cqs);
    free(srv->threads);
    free(srv->methods);
    pthread_mutex_destroy(&srv->list_mu);
    free(srv);
}
