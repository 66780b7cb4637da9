/*
 * echo_server.c: the minimal gRPC C-core unary server used as the benchmark
 * baseline for the gateway.
 *
 * It serves only /grpc.health.v1.Health/Check (the path sgbench drives on
 * the gateway too), as a registered method whose request payload arrives with
 * the call (GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER), and answers every
 * call with one batch: initial metadata, HealthCheckResponse{SERVING} (or
 * NOT_FOUND for a named service), status and RECV_CLOSE_ON_SERVER. Generic
 * requests stay posted as well, so that any other method gets UNIMPLEMENTED
 * at once instead of waiting for its deadline.
 *
 * Threads: -t N completion queues, one thread each. A call context is only
 * touched by the thread of its CQ and has one tag in flight at a time, so it
 * needs no lock and no refcount.
 *
 * Shutdown (SIGINT/SIGTERM): grpc_server_shutdown_and_notify, 2 s grace,
 * then grpc_server_cancel_all_calls; once the notification arrives the
 * server is destroyed, the CQs are shut down and drained, threads joined.
 */
#include "internal.h"

#include "tool.h"

#include "grpc_health_v1_health.pb-c.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define HEALTH_CHECK_METHOD "/grpc.health.v1.Health/Check"
#define MAX_LISTENERS 16
#define MAX_THREADS 64
/* Requests kept posted per CQ for the registered method and generic calls. */
#define POSTED_HEALTH 32
#define POSTED_GENERIC 4
#define SHUTDOWN_GRACE_S 2
#define PEM_MAX (1024 * 1024)

enum call_kind { CALL_HEALTH, CALL_GENERIC };
enum call_phase { PHASE_REQUESTED, PHASE_REPLYING };

/* One call, from the posted request to the completion of its reply. */
struct call {
    enum call_kind kind;
    enum call_phase phase;
    size_t cq_index;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array request_md;
    grpc_call_details details;  /* generic calls only */
    grpc_byte_buffer *payload;  /* registered calls: the request */
    grpc_byte_buffer *reply;    /* kept until the reply batch completes */
    grpc_slice status_details;
    int cancelled;
    grpc_op ops[4];
};

struct echo_server {
    grpc_server *server;
    void *health_method; /* registered method handle */
    grpc_completion_queue *cqs[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    size_t n_cqs;
    atomic_bool shutting_down;
    atomic_long live_calls; /* contexts allocated and not yet freed */
    atomic_long served_ok;
    atomic_long served_error;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool shutdown_done; /* under lock */
};

/* The shutdown notification tag: its address only. */
static char shutdown_tag;

/* Serialized HealthCheckResponse{status: SERVING}, built at start-up. */
static uint8_t serving_reply[8];
static size_t serving_reply_len;

static struct echo_server srv_state;

static void call_free(struct call *c)
{
    if (c == NULL)
        return;
    if (c->call != NULL)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->request_md);
    grpc_call_details_destroy(&c->details);
    if (c->payload != NULL)
        grpc_byte_buffer_destroy(c->payload);
    if (c->reply != NULL)
        grpc_byte_buffer_destroy(c->reply);
    grpc_slice_unref(c->status_details);
    free(c);
    atomic_fetch_sub(&srv_state.live_calls, 1);
}

/*
 * Post one request of the given kind on CQ i. On failure nothing stays
 * posted and the context is freed.
 */
static void post_request(enum call_kind kind, size_t i)
{
    struct echo_server *s = &srv_state;
    struct call *c = NULL;
    grpc_call_error err;

    if (atomic_load(&s->shutting_down))
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        fprintf(stderr, "echo_server: out of memory posting a request\n");
        return;
    }
    atomic_fetch_add(&s->live_calls, 1);
    c->kind = kind;
    c->phase = PHASE_REQUESTED;
    c->cq_index = i;
    c->status_details = grpc_empty_slice();
    grpc_metadata_array_init(&c->request_md);
    grpc_call_details_init(&c->details);
    if (kind == CALL_HEALTH)
        err = grpc_server_request_registered_call(
            s->server, s->health_method, &c->call, &c->deadline,
            &c->request_md, &c->payload, s->cqs[i], s->cqs[i], c);
    else
        err = grpc_server_request_call(s->server, &c->call, &c->details,
                                       &c->request_md, s->cqs[i], s->cqs[i],
                                       c);
    if (err != GRPC_CALL_OK) {
        fprintf(stderr, "echo_server: request_call failed (%d)\n", (int)err);
        call_free(c);
    }
}

/*
 * Decide the reply of a Health/Check call: SERVING for the whole server
 * (empty service name), NOT_FOUND for any named service, INVALID_ARGUMENT
 * for a missing or malformed request.
 */
static grpc_status_code health_answer(struct call *c, const char **msg)
{
    Grpc__Health__V1__HealthCheckRequest *req = NULL;
    grpc_byte_buffer_reader rd;
    grpc_slice s;
    grpc_status_code code = GRPC_STATUS_OK;

    *msg = NULL;
    if (c->payload == NULL ||
        !grpc_byte_buffer_reader_init(&rd, c->payload)) {
        *msg = "missing request message";
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    /* Buffers may be multi-slice or compressed: always read via a reader. */
    s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    req = grpc__health__v1__health_check_request__unpack(
        NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    if (req == NULL) {
        *msg = "cannot parse HealthCheckRequest";
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (req->service != NULL && req->service[0] != '\0') {
        *msg = "unknown service";
        code = GRPC_STATUS_NOT_FOUND;
    }
    grpc__health__v1__health_check_request__free_unpacked(req, NULL);
    return code;
}

/* Start the single reply batch of a new call. */
static void reply(struct call *c)
{
    grpc_status_code code;
    const char *msg = NULL;
    size_t n = 0;

    if (c->kind == CALL_HEALTH) {
        code = health_answer(c, &msg);
    } else {
        code = GRPC_STATUS_UNIMPLEMENTED;
        msg = "unknown method";
    }
    if (code == GRPC_STATUS_OK)
        atomic_fetch_add_explicit(&srv_state.served_ok, 1,
                                  memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&srv_state.served_error, 1,
                                  memory_order_relaxed);

    memset(c->ops, 0, sizeof(c->ops));
    c->ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (code == GRPC_STATUS_OK) {
        /* A fresh byte buffer per send: SEND_MESSAGE empties it. */
        grpc_slice body = grpc_slice_from_static_buffer(serving_reply,
                                                        serving_reply_len);

        c->reply = grpc_raw_byte_buffer_create(&body, 1);
        c->ops[n].op = GRPC_OP_SEND_MESSAGE;
        c->ops[n++].data.send_message.send_message = c->reply;
    }
    if (msg != NULL)
        c->status_details = grpc_slice_from_static_string(msg);
    c->ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    c->ops[n].data.send_status_from_server.status = code;
    c->ops[n++].data.send_status_from_server.status_details =
        msg != NULL ? &c->status_details : NULL;
    c->ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    c->ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;

    c->phase = PHASE_REPLYING;
    if (grpc_call_start_batch(c->call, c->ops, n, c, NULL) != GRPC_CALL_OK) {
        fprintf(stderr, "echo_server: start_batch failed\n");
        call_free(c);
    }
}

static void *worker_main(void *arg)
{
    struct echo_server *s = &srv_state;
    size_t i = (size_t)(uintptr_t)arg;

    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            s->cqs[i], gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        struct call *c;

        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (ev.tag == &shutdown_tag) {
            pthread_mutex_lock(&s->lock);
            s->shutdown_done = true;
            pthread_cond_signal(&s->cond);
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        c = ev.tag;
        if (c->phase == PHASE_REPLYING || !ev.success) {
            /* Reply done, or a posted request cancelled by shutdown. */
            call_free(c);
            continue;
        }
        /* Keep the number of posted requests constant. */
        post_request(c->kind, c->cq_index);
        reply(c);
    }
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: echo_server [OPTIONS]\n"
            "\n"
            "Minimal gRPC C-core server answering " HEALTH_CHECK_METHOD "\n"
            "with SERVING (the benchmark baseline for the gateway).\n"
            "\n"
            "  --listen ADDR         plaintext listener (repeatable), e.g.\n"
            "                        127.0.0.1:50061 or unix:/path\n"
            "  --mtls-listen ADDR    mTLS listener (repeatable); needs:\n"
            "  --cert FILE           server certificate (PEM)\n"
            "  --key FILE            server private key (PEM)\n"
            "  --cacert FILE         CA that client certificates must chain to\n"
            "  -t, --threads N       completion queues, one thread each "
            "(default 1)\n"
            "  -h, --help            this help\n"
            "\n"
            "Stops cleanly on SIGINT or SIGTERM.\n");
}

/* Wait up to seconds (or forever if < 0) for the shutdown notification. */
static bool wait_shutdown(struct echo_server *s, int seconds)
{
    struct timespec until;
    bool done;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&s->lock);
    while (!s->shutdown_done) {
        if (seconds < 0) {
            pthread_cond_wait(&s->cond, &s->lock);
        } else if (pthread_cond_timedwait(&s->cond, &s->lock, &until) ==
                   ETIMEDOUT) {
            break;
        }
    }
    done = s->shutdown_done;
    pthread_mutex_unlock(&s->lock);
    return done;
}

static int add_listeners(struct echo_server *s, const char **plain,
                         size_t n_plain, const char **mtls, size_t n_mtls,
                         const char *cert_file, const char *key_file,
                         const char *ca_file)
{
    char *cert = NULL;
    char *key = NULL;
    char *ca = NULL;
    size_t len = 0;
    int ret = -1;

    for (size_t i = 0; i < n_plain; i++) {
        grpc_server_credentials *cr = grpc_insecure_server_credentials_create();
        int port = grpc_server_add_http2_port(s->server, plain[i], cr);

        grpc_server_credentials_release(cr);
        if (port == 0) {
            tool_err("cannot listen on '%s'", plain[i]);
            goto cleanup;
        }
        printf("listening on %s (plaintext, port %d)\n", plain[i], port);
    }
    if (n_mtls > 0) {
        if (tool_read_file(cert_file, PEM_MAX, &cert, &len) < 0 ||
            tool_read_file(key_file, PEM_MAX, &key, &len) < 0 ||
            tool_read_file(ca_file, PEM_MAX, &ca, &len) < 0)
            goto cleanup;
    }
    for (size_t i = 0; i < n_mtls; i++) {
        grpc_ssl_pem_key_cert_pair kp = {key, cert};
        grpc_server_credentials *cr = grpc_ssl_server_credentials_create_ex(
            ca, &kp, 1,
            GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
        int port;

        if (cr == NULL) {
            tool_err("cannot create TLS credentials (bad PEM?)");
            goto cleanup;
        }
        port = grpc_server_add_http2_port(s->server, mtls[i], cr);
        grpc_server_credentials_release(cr);
        if (port == 0) {
            tool_err("cannot listen on '%s'", mtls[i]);
            goto cleanup;
        }
        printf("listening on %s (mTLS, port %d)\n", mtls[i], port);
    }
    ret = 0;

 cleanup:
    if (key != NULL) {
        memset(key, 0, strlen(key));
        free(key);
    }
    free(cert);
    free(ca);
    return ret;
}

struct options {
    const char *plain[MAX_LISTENERS];
    const char *mtls[MAX_LISTENERS];
    size_t n_plain;
    size_t n_mtls;
    const char *cert_file;
    const char *key_file;
    const char *ca_file;
    long n_threads;
};

/* Match "--name VALUE" / "--name=VALUE"; *bad is set on a missing value. */
static bool opt(int argc, char **argv, int *i, const char *name,
                const char **v, bool *bad)
{
    int r = tool_opt_value(argc, argv, i, name, v);

    if (r < 0)
        *bad = true;
    return r > 0;
}

static int add_listen(const char **list, size_t *n, const char *addr)
{
    if (*n == MAX_LISTENERS) {
        tool_err("too many listeners (at most %d)", MAX_LISTENERS);
        return -1;
    }
    list[(*n)++] = addr;
    return 0;
}

/* Returns 0, 1 for --help, or -1 (printed). */
static int parse_args(int argc, char **argv, struct options *o)
{
    bool bad = false;

    o->n_threads = 1;
    for (int i = 1; i < argc && !bad; i++) {
        const char *v = NULL;

        if (STREQ(argv[i], "-h") || STREQ(argv[i], "--help"))
            return 1;
        if (opt(argc, argv, &i, "--listen", &v, &bad)) {
            if (add_listen(o->plain, &o->n_plain, v) < 0)
                return -1;
        } else if (opt(argc, argv, &i, "--mtls-listen", &v, &bad)) {
            if (add_listen(o->mtls, &o->n_mtls, v) < 0)
                return -1;
        } else if (opt(argc, argv, &i, "--cert", &v, &bad)) {
            o->cert_file = v;
        } else if (opt(argc, argv, &i, "--key", &v, &bad)) {
            o->key_file = v;
        } else if (opt(argc, argv, &i, "--cacert", &v, &bad)) {
            o->ca_file = v;
        } else if (opt(argc, argv, &i, "-t", &v, &bad) ||
                   opt(argc, argv, &i, "--threads", &v, &bad)) {
            if (tool_parse_long("--threads", v, 1, MAX_THREADS,
                                &o->n_threads) < 0)
                return -1;
        } else if (!bad) {
            tool_err("unknown argument '%s' (see --help)", argv[i]);
            return -1;
        }
    }
    if (bad)
        return -1;
    if (o->n_plain + o->n_mtls == 0) {
        tool_err("no listener: give --listen and/or --mtls-listen");
        return -1;
    }
    if (o->n_mtls > 0 &&
        (o->cert_file == NULL || o->key_file == NULL || o->ca_file == NULL)) {
        tool_err("--mtls-listen needs --cert, --key and --cacert");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct echo_server *s = &srv_state;
    struct options o;
    size_t n_started = 0;
    bool grpc_up = false;
    sigset_t sigs;
    int sig = 0;
    int ret = 2;
    int r;

    tool_progname = "echo_server";
    memset(&o, 0, sizeof(o));
    r = parse_args(argc, argv, &o);
    if (r != 0) {
        if (r > 0)
            usage(stdout);
        return r > 0 ? 0 : 2;
    }

    /* Block the stop signals in every thread (gRPC's included); main
     * collects them with sigwait(). */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    {
        Grpc__Health__V1__HealthCheckResponse resp =
            GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

        resp.status =
            GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        serving_reply_len = grpc__health__v1__health_check_response__pack(
            &resp, serving_reply);
    }
    pthread_mutex_init(&s->lock, NULL);
    {
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->cond, &ca);
        pthread_condattr_destroy(&ca);
    }

    grpc_init();
    grpc_up = true;
    s->server = grpc_server_create(NULL, NULL);
    s->health_method = grpc_server_register_method(
        s->server, HEALTH_CHECK_METHOD, NULL,
        GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    s->n_cqs = (size_t)o.n_threads;
    for (size_t i = 0; i < s->n_cqs; i++) {
        s->cqs[i] = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, s->cqs[i], NULL);
    }
    if (add_listeners(s, o.plain, o.n_plain, o.mtls, o.n_mtls, o.cert_file,
                      o.key_file, o.ca_file) < 0) {
        ret = 1;
        grpc_server_start(s->server); /* destroy wants a started server */
        atomic_store(&s->shutting_down, true);
        grpc_server_shutdown_and_notify(s->server, s->cqs[0], &shutdown_tag);
        goto cleanup;
    }
    grpc_server_start(s->server);

    for (size_t i = 0; i < s->n_cqs; i++) {
        for (int k = 0; k < POSTED_HEALTH; k++)
            post_request(CALL_HEALTH, i);
        for (int k = 0; k < POSTED_GENERIC; k++)
            post_request(CALL_GENERIC, i);
    }
    for (size_t i = 0; i < s->n_cqs; i++) {
        if (pthread_create(&s->threads[i], NULL, worker_main,
                           (void *)(uintptr_t)i) != 0) {
            tool_err("cannot start a worker thread");
            ret = 1;
            break;
        }
        n_started++;
    }
    printf("echo_server: %zu thread(s), pid %ld\n", s->n_cqs, (long)getpid());
    fflush(stdout);

    if (n_started == s->n_cqs) {
        sigwait(&sigs, &sig);
        ret = 0;
    }

    atomic_store(&s->shutting_down, true);
    grpc_server_shutdown_and_notify(s->server, s->cqs[0], &shutdown_tag);

 cleanup:
    /* Every CQ must be drained by someone: start any missing threads. */
    for (size_t i = n_started; i < s->n_cqs; i++) {
        if (pthread_create(&s->threads[i], NULL, worker_main,
                           (void *)(uintptr_t)i) == 0)
            n_started++;
    }
    if (s->server != NULL) {
        if (!wait_shutdown(s, SHUTDOWN_GRACE_S)) {
            grpc_server_cancel_all_calls(s->server);
            wait_shutdown(s, -1);
        }
        grpc_server_destroy(s->server);
    }
    for (size_t i = 0; i < s->n_cqs; i++)
        grpc_completion_queue_shutdown(s->cqs[i]);
    for (size_t i = 0; i < n_started; i++)
        pthread_join(s->threads[i], NULL);
    for (size_t i = 0; i < s->n_cqs; i++)
        grpc_completion_queue_destroy(s->cqs[i]);
    if (grpc_up)
        grpc_shutdown();
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    fprintf(stderr,
            "echo_server: stopped (signal %d): ok=%ld errors=%ld "
            "live_calls=%ld\n",
            sig, atomic_load(&s->served_ok), atomic_load(&s->served_error),
            atomic_load(&s->live_calls));
    return ret;
}
