/*
 * hold_server.c: the memory baseline for idle WatchEvents streams: a
 * minimal gRPC C-core server that accepts /sandgate.v1.EventService/
 * WatchEvents, sends the response headers and holds the stream open,
 * doing nothing else, until the client goes. What a stream costs here is
 * what the C core itself costs per open stream; bench/run-events.py
 * compares the gateway with it.
 *
 *   hold_server --listen ADDR [-t THREADS]
 *
 * Same channel arguments as the gateway's defaults where they bear on a
 * stream (concurrent streams, metadata size). A registered method (the
 * request arrives with the call) on each CQ, generic requests posted too;
 * a call context is touched only by its CQ's thread. SIGINT/SIGTERM:
 * shutdown, cancel what is open, drain, exit 0.
 */
#include "internal.h"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define WATCH_METHOD "/sandgate.v1.EventService/WatchEvents"
#define MAX_THREADS 16
#define POSTED 64

enum phase { PHASE_REQUESTED, PHASE_HOLDING };

struct call {
    enum phase phase;
    bool generic;
    size_t cq;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details;
    grpc_byte_buffer *payload;
    int cancelled;
    grpc_slice status_details;
    grpc_op ops[3];
};

static struct {
    grpc_server *server;
    void *method;
    grpc_completion_queue *cqs[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    size_t n;
    atomic_bool stopping;
    atomic_bool shut_down; /* the shutdown notification arrived */
    atomic_long open;
} S;

static char shutdown_tag;

static void call_free(struct call *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    grpc_slice_unref(c->status_details);
    free(c);
}

static void post(size_t cq, bool generic)
{
    struct call *c;
    grpc_call_error rc;

    if (atomic_load(&S.stopping))
        return;
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->cq = cq;
    c->generic = generic;
    c->status_details = grpc_empty_slice();
    grpc_metadata_array_init(&c->md);
    grpc_call_details_init(&c->details);
    if (generic)
        rc = grpc_server_request_call(S.server, &c->call, &c->details, &c->md,
                                      S.cqs[cq], S.cqs[cq], c);
    else
        rc = grpc_server_request_registered_call(
            S.server, S.method, &c->call, &c->deadline, &c->md, &c->payload,
            S.cqs[cq], S.cqs[cq], c);
    if (rc != GRPC_CALL_OK)
        call_free(c);
}

/* A new call: headers and the wait for its end (or, for any other method,
   UNIMPLEMENTED). */
static void start(struct call *c)
{
    size_t n = 0;

    memset(c->ops, 0, sizeof(c->ops));
    c->ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (c->generic) {
        c->status_details = grpc_slice_from_static_string("unknown method");
        c->ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        c->ops[n].data.send_status_from_server.status =
            GRPC_STATUS_UNIMPLEMENTED;
        c->ops[n++].data.send_status_from_server.status_details =
            &c->status_details;
    }
    c->ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    c->ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    c->phase = PHASE_HOLDING;
    atomic_fetch_add(&S.open, 1);
    if (grpc_call_start_batch(c->call, c->ops, n, c, NULL) != GRPC_CALL_OK) {
        atomic_fetch_sub(&S.open, 1);
        call_free(c);
    }
}

static void *worker(void *arg)
{
    size_t i = (size_t)(uintptr_t)arg;

    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            S.cqs[i], gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        struct call *c;

        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (ev.tag == &shutdown_tag) {
            atomic_store(&S.shut_down, true);
            continue;
        }
        c = ev.tag;
        if (c->phase == PHASE_HOLDING) {
            atomic_fetch_sub(&S.open, 1);
            call_free(c);
        } else if (!ev.success) {
            call_free(c); /* a posted request, at shutdown */
        } else {
            post(c->cq, c->generic);
            start(c);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *listen = NULL;
    long threads = 1;
    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS,
         .value.integer = 1000},
        {.type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_METADATA_SIZE,
         .value.integer = 16384},
    };
    grpc_channel_args ca = {.num_args = 2, .args = args};
    grpc_server_credentials *creds;
    sigset_t set;
    int sig;

    for (int i = 1; i < argc; i++) {
        if (STREQ(argv[i], "--listen") && i + 1 < argc) {
            listen = argv[++i];
        } else if (STREQ(argv[i], "-t") && i + 1 < argc) {
            char *end = NULL;

            threads = strtol(argv[++i], &end, 10);
            if (!end || *end || threads < 1 || threads > MAX_THREADS) {
                fprintf(stderr, "hold_server: -t: 1 to %d\n", MAX_THREADS);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: hold_server --listen ADDR [-t N]\n");
            return 2;
        }
    }
    if (!listen) {
        fprintf(stderr, "usage: hold_server --listen ADDR [-t N]\n");
        return 2;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    grpc_init();
    S.n = (size_t)threads;
    S.server = grpc_server_create(&ca, NULL);
    S.method = grpc_server_register_method(
        S.server, WATCH_METHOD, NULL,
        GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    for (size_t i = 0; i < S.n; i++) {
        S.cqs[i] = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(S.server, S.cqs[i], NULL);
    }
    creds = grpc_insecure_server_credentials_create();
    if (!grpc_server_add_http2_port(S.server, listen, creds)) {
        fprintf(stderr, "hold_server: cannot listen on %s\n", listen);
        return 1;
    }
    grpc_server_credentials_release(creds);
    grpc_server_start(S.server);
    for (size_t i = 0; i < S.n; i++) {
        for (int k = 0; k < POSTED; k++)
            post(i, false);
        post(i, true);
        pthread_create(&S.threads[i], NULL, worker, (void *)(uintptr_t)i);
    }
    printf("hold_server: listening on %s\n", listen);
    fflush(stdout);
    sigwait(&set, &sig);
    atomic_store(&S.stopping, true);
    grpc_server_shutdown_and_notify(S.server, S.cqs[0], &shutdown_tag);
    grpc_server_cancel_all_calls(S.server);
    while (atomic_load(&S.open) > 0 || !atomic_load(&S.shut_down)) {
        struct timespec ts = {0, 10 * 1000 * 1000};

        nanosleep(&ts, NULL);
    }
    grpc_server_destroy(S.server);
    for (size_t i = 0; i < S.n; i++) {
        grpc_completion_queue_shutdown(S.cqs[i]);
        pthread_join(S.threads[i], NULL);
        grpc_completion_queue_destroy(S.cqs[i]);
    }
    grpc_shutdown();
    return 0;
}
