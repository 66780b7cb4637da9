/*
 * test_server.c: the gRPC transport (server/server.c, server/call.c) serving
 * a service of the test's own, test.v1.Test, in-process: deadlines, drain
 * and shutdown, UNIMPLEMENTED, bad requests, error details and stream order.
 *
 * Each test starts a server on 127.0.0.1:0 whose libuv loop runs in a thread
 * of its own (that thread starts and shuts the server down), talks to it with
 * a C-core client, shuts it down, frees it and calls grpc_shutdown, all in
 * the forked child: the core does not survive fork.
 *
 * Timings are generous (shared, noisy machines): a lower bound is 0.8 times
 * the expected delay, an upper bound the delay plus a few seconds.
 *
 * Test cases: "deadlines", "shutdown", "requests", and "race" (many rounds
 * of shutdown while streams end; run it alone with CK_RUN_CASE=race).
 */
#include "internal.h"

#include "testutils.h"

#include "server.h"
#include "server_config.h"
#include "call.h"
#include "error.h"
#include "log.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "grpc_health_v1_health.pb-c.h"
#include "google_protobuf_duration.pb-c.h"
#include "google_rpc_status.pb-c.h"
#include "google_rpc_error_details.pb-c.h"

#define MAX_KEPT 1024
#define MAX_HELPERS 16
#define MAX_MSGS 128
#define STREAM_COUNT 100
/* How long a test waits for something that should happen "at once". */
#define PROMPT_MS 5000

static double now_ms(void)
{
    gpr_timespec t = gpr_now(GPR_CLOCK_MONOTONIC);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- the test service ---------------------------------------------------- */

/*
 * Handler state. Each test runs in a child process of its own, so these
 * start at zero in every test.
 */
static pthread_mutex_t st_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t st_cv = PTHREAD_COND_INITIALIZER;
static struct sg_call *kept[MAX_KEPT]; /* Hang and Watch, a ref each */
static int n_hang_started;
static int n_watch_started;
static int n_once_started;
static int n_cancelled; /* on_cancel of Hang and Watch */
static int n_slow_started;
static int n_slow_replied; /* Slow replied (or gave up): about to unref */
static int n_slow_unrefd;  /* Slow's sg_call_unref returned */
static int n_stream_ended;
static int n_stream_sent;
static pthread_t helpers[MAX_HELPERS];
static size_t n_helpers;

static void bump(int *counter)
{
    pthread_mutex_lock(&st_mu);
    (*counter)++;
    pthread_cond_broadcast(&st_cv);
    pthread_mutex_unlock(&st_mu);
}

static int count_of(const int *counter)
{
    int n;

    pthread_mutex_lock(&st_mu);
    n = *counter;
    pthread_mutex_unlock(&st_mu);
    return n;
}

/* Wait until *counter >= want; false after timeout_ms. */
static bool wait_count(const int *counter, int want, int timeout_ms)
{
    struct timespec until;
    bool ok;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&st_mu);
    while (*counter < want)
        if (pthread_cond_timedwait(&st_cv, &st_mu, &until) == ETIMEDOUT)
            break;
    ok = *counter >= want;
    pthread_mutex_unlock(&st_mu);
    return ok;
}

/* Run fn(call) on a helper thread; the fixture joins it at the end. */
static int spawn(void *(*fn)(void *), struct sg_call *call)
{
    int rc = -1;

    pthread_mutex_lock(&st_mu);
    if (n_helpers < MAX_HELPERS &&
        pthread_create(&helpers[n_helpers], NULL, fn, call) == 0) {
        n_helpers++;
        rc = 0;
    }
    pthread_mutex_unlock(&st_mu);
    return rc;
}

/* Join every helper; called once the server is gone (none can start). */
static void join_helpers(void)
{
    size_t n;

    pthread_mutex_lock(&st_mu);
    n = n_helpers;
    n_helpers = 0;
    pthread_mutex_unlock(&st_mu);
    for (size_t i = 0; i < n; i++)
        pthread_join(helpers[i], NULL);
}

static const Grpc__Health__V1__HealthCheckRequest *
as_request(const ProtobufCMessage *msg)
{
    return (const Grpc__Health__V1__HealthCheckRequest *)msg;
}

/* Keep the call (with a reference) in the list; false if it is full. */
static bool keep_call(struct sg_call *call)
{
    bool done = false;

    sg_call_ref(call);
    pthread_mutex_lock(&st_mu);
    for (size_t i = 0; i < MAX_KEPT && !done; i++) {
        if (!kept[i]) {
            kept[i] = call;
            done = true;
        }
    }
    pthread_mutex_unlock(&st_mu);
    if (!done) {
        sg_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many");
        sg_call_unref(call);
    }
    return done;
}

/* on_cancel of Hang and Watch: let the call go. */
static void kept_cancel(struct sg_call *call)
{
    bool found = false;

    pthread_mutex_lock(&st_mu);
    for (size_t i = 0; i < MAX_KEPT; i++) {
        if (kept[i] == call) {
            kept[i] = NULL;
            found = true;
        }
    }
    n_cancelled++;
    pthread_cond_broadcast(&st_cv);
    pthread_mutex_unlock(&st_mu);
    if (found)
        sg_call_unref(call);
}

static size_t kept_left(void)
{
    size_t n = 0;

    pthread_mutex_lock(&st_mu);
    for (size_t i = 0; i < MAX_KEPT; i++)
        n += kept[i] != NULL;
    pthread_mutex_unlock(&st_mu);
    return n;
}

/* Hang: keep the call and never answer; on_cancel lets it go. */
static void hang_start(struct sg_call *call, const ProtobufCMessage *req)
{
    (void)req;
    keep_call(call);
    bump(&n_hang_started);
}

/* Watch: three messages echoing request.service, then keep the stream. */
static void watch_start(struct sg_call *call, const ProtobufCMessage *req)
{
    if (!keep_call(call))
        return;
    for (int i = 0; i < 3; i++)
        sg_call_send(call, req);
    bump(&n_watch_started);
}

/* Slow: sleep the number of ms in request.service on a helper, then reply. */
static void *slow_thread(void *arg)
{
    struct sg_call *call = arg;
    long ms = (long)(intptr_t)sg_call_get_data(call);
    Grpc__Health__V1__HealthCheckRequest resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    char text[64];

    sleep_ms(ms);
    snprintf(text, sizeof(text), "slept %ld", ms);
    resp.service = text;
    sg_call_reply(call, &resp.base);
    bump(&n_slow_replied);
    sg_call_unref(call);
    bump(&n_slow_unrefd);
    return NULL;
}

static void slow_start(struct sg_call *call, const ProtobufCMessage *req)
{
    const char *text = as_request(req)->service;
    char *end = NULL;
    long ms;

    errno = 0;
    ms = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || ms < 0 || ms > 60000) {
        sg_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "bad delay");
        return;
    }
    sg_call_set_data(call, (void *)(intptr_t)ms);
    sg_call_ref(call);
    if (spawn(slow_thread, call) < 0) {
        sg_call_finish(call, GRPC_STATUS_INTERNAL, "no helper thread");
        sg_call_unref(call);
        return;
    }
    bump(&n_slow_started);
}

/* Echo: the request back, at once. */
static void echo_start(struct sg_call *call, const ProtobufCMessage *req)
{
    sg_call_reply(call, req);
}

/* Invalid: a field violation on "service", through sg_call_fail. */
static void invalid_start(struct sg_call *call, const ProtobufCMessage *req)
{
    struct sg_error err = SG_ERROR_INIT;

    sg_error_add_violation(&err, "service", "must not be '%s'",
                           as_request(req)->service);
    sg_call_fail(call, &err);
    sg_error_reset(&err);
}

/* Stream: STREAM_COUNT messages (Duration.seconds = 0, 1, ...), then OK. */
static void *stream_thread(void *arg)
{
    struct sg_call *call = arg;

    for (int i = 0; i < STREAM_COUNT; i++) {
        Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
        d.seconds = i;
        if (sg_call_send(call, &d.base) != 0)
            break;
        bump(&n_stream_sent);
    }
    sg_call_finish(call, GRPC_STATUS_OK, NULL);
    bump(&n_stream_ended);
    sg_call_unref(call);
    return NULL;
}

static void stream_start(struct sg_call *call, const ProtobufCMessage *req)
{
    (void)req;
    sg_call_ref(call);
    if (spawn(stream_thread, call) < 0) {
        sg_call_finish(call, GRPC_STATUS_INTERNAL, "no helper thread");
        sg_call_unref(call);
    }
}

/* Once: a server stream of one message, finished from on_start. */
static void once_start(struct sg_call *call, const ProtobufCMessage *req)
{
    sg_call_send(call, req);
    sg_call_finish(call, GRPC_STATUS_OK, NULL);
    bump(&n_once_started);
}

#define REQ_DESC (&grpc__health__v1__health_check_request__descriptor)

static const struct sg_method test_methods[] = {
    {.path = "/test.v1.Test/Hang",
     .kind = SG_METHOD_UNARY,
     .request = REQ_DESC,
     .on_start = hang_start,
     .on_cancel = kept_cancel},
    {.path = "/test.v1.Test/Slow",
     .kind = SG_METHOD_UNARY,
     .request = REQ_DESC,
     .on_start = slow_start},
    {.path = "/test.v1.Test/Echo",
     .kind = SG_METHOD_UNARY,
     .request = REQ_DESC,
     .on_start = echo_start},
    {.path = "/test.v1.Test/Invalid",
     .kind = SG_METHOD_UNARY,
     .request = REQ_DESC,
     .on_start = invalid_start},
    {.path = "/test.v1.Test/Stream",
     .kind = SG_METHOD_SERVER_STREAM,
     .request = REQ_DESC,
     .on_start = stream_start},
    {.path = "/test.v1.Test/Once",
     .kind = SG_METHOD_SERVER_STREAM,
     .request = REQ_DESC,
     .on_start = once_start},
    {.path = "/test.v1.Test/Watch",
     .kind = SG_METHOD_SERVER_STREAM,
     .request = REQ_DESC,
     .on_start = watch_start,
     .on_cancel = kept_cancel},
    /* Listed but not built: must answer UNIMPLEMENTED. */
    {.path = "/test.v1.Test/Unbuilt",
     .kind = SG_METHOD_UNARY,
     .request = REQ_DESC,
     .on_start = NULL},
};

static const struct sg_service test_service = {
    .name = "test.v1.Test",
    .methods = test_methods,
    .n_methods = SG_N_ELEMENTS(test_methods),
};

static const struct sg_service *const test_services[] = {&test_service, NULL};

/* ---- the server fixture -------------------------------------------------- */

#define MAX_CHANNELS 4

struct fixture {
    struct sg_config *cfg;
    uv_loop_t loop;
    uv_async_t stop_async; /* asks the loop to begin shutdown */
    uv_thread_t thread;
    struct sg_server *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;
    bool start_failed;
    bool shutdown_begun;
    bool done;
    double shutdown_ms;      /* when sg_server_shutdown returned */
    double done_ms;          /* when done_cb ran */
    int slow_unrefd_at_done; /* n_slow_unrefd when done_cb ran */
    int port;
    char target[64];
    grpc_channel *channels[MAX_CHANNELS];
    size_t n_channels;
};

static void done_cb(void *opaque)
{
    struct fixture *fx = opaque;

    /* The last handle of the loop: uv_run returns. */
    uv_close((uv_handle_t *)&fx->stop_async, NULL);
    pthread_mutex_lock(&fx->mu);
    fx->done = true;
    fx->done_ms = now_ms();
    fx->slow_unrefd_at_done = count_of(&n_slow_unrefd);
    pthread_cond_broadcast(&fx->cv);
    pthread_mutex_unlock(&fx->mu);
}

static void stop_cb(uv_async_t *handle)
{
    struct fixture *fx = handle->data;

    sg_server_shutdown(fx->srv, done_cb, fx);
    pthread_mutex_lock(&fx->mu);
    fx->shutdown_begun = true;
    fx->shutdown_ms = now_ms();
    pthread_cond_broadcast(&fx->cv);
    pthread_mutex_unlock(&fx->mu);
}

/* ---- a deferring authentication hook ------------------------------------ */

/* The hook the fixture installs, if any (set before fixture_start). */
static sg_server_auth_fn fixture_auth;
static int n_auth_deferred;
static int n_auth_resumed;
static long auth_delay_ms;

static void *resume_thread(void *arg)
{
    struct sg_call *call = arg;

    sleep_ms(auth_delay_ms);
    sg_call_auth_resume(call); /* a cancelled call is dropped here */
    bump(&n_auth_resumed);
    sg_call_unref(call);
    return NULL;
}

/* Defers every call and resumes it from another thread, as a hook that
   waits for a remote check does. */
static int deferring_auth(void *opaque, struct sg_call *call, bool handled)
{
    (void)opaque;
    (void)handled;
    sg_call_ref(call);
    if (spawn(resume_thread, call) < 0) {
        sg_call_unref(call);
        sg_call_finish(call, GRPC_STATUS_INTERNAL, "no helper thread");
        return -1;
    }
    bump(&n_auth_deferred);
    return 1;
}

/* The loop thread: it creates, starts and (through stop_cb) shuts down. */
static void loop_thread(void *arg)
{
    struct fixture *fx = arg;
    struct sg_error err = SG_ERROR_INIT;
    bool ok = false;

    fx->srv = sg_server_new(fx->cfg, test_services, &fx->loop, &err);
    if (fx->srv && fixture_auth)
        sg_server_set_auth(fx->srv, fixture_auth, NULL);
    if (fx->srv && sg_server_start(fx->srv, &err) == 0)
        ok = true;
    else
        fprintf(stderr, "test server: %s\n", err.message);
    sg_error_reset(&err);
    pthread_mutex_lock(&fx->mu);
    fx->ready = true;
    fx->start_failed = !ok;
    fx->port = ok ? sg_server_bound_port(fx->srv, 0) : 0;
    pthread_cond_broadcast(&fx->cv);
    pthread_mutex_unlock(&fx->mu);
    if (ok)
        uv_run(&fx->loop, UV_RUN_DEFAULT);
}

/* Wait on fx->cv until *flag; false after timeout_ms. */
static bool fixture_wait(struct fixture *fx, const bool *flag, int timeout_ms)
{
    gpr_timespec until =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                     gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    struct timespec ts = {.tv_sec = (time_t)until.tv_sec,
                          .tv_nsec = until.tv_nsec};
    bool ok;

    pthread_mutex_lock(&fx->mu);
    while (!*flag)
        if (pthread_cond_timedwait(&fx->cv, &fx->mu, &ts) == ETIMEDOUT)
            break;
    ok = *flag;
    pthread_mutex_unlock(&fx->mu);
    return ok;
}

static grpc_channel *fixture_channel(struct fixture *fx)
{
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_arg arg;
    grpc_channel_args args = {.num_args = 1, .args = &arg};
    grpc_channel *ch;

    /* A connection of its own, not one shared with the other channels. */
    arg.type = GRPC_ARG_INTEGER;
    arg.key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    arg.value.integer = 1;
    ck_assert_uint_lt(fx->n_channels, MAX_CHANNELS);
    ch = grpc_channel_create(fx->target, creds, &args);
    grpc_channel_credentials_release(creds);
    ck_assert_ptr_nonnull(ch);
    fx->channels[fx->n_channels++] = ch;
    return ch;
}

/*
 * grpc_init, then a server on 127.0.0.1:0 with the given number of
 * completion-queue threads, and a channel to it.
 */
static grpc_channel *fixture_start_workers(struct fixture *fx,
                                           unsigned default_deadline_ms,
                                           unsigned drain_timeout_ms,
                                           unsigned workers)
{
    struct sg_error err = SG_ERROR_INIT;
    const char *addr = "127.0.0.1:0";

    memset(fx, 0, sizeof(*fx));
    grpc_init();
    fx->cfg = sg_config_new();
    ck_assert_ptr_nonnull(fx->cfg);
    ck_assert_int_eq(sg_config_set_listen(fx->cfg, &addr, 1, &err), 0);
    fx->cfg->workers = workers;
    fx->cfg->default_deadline_ms = default_deadline_ms;
    fx->cfg->drain_timeout_ms = drain_timeout_ms;

    pthread_mutex_init(&fx->mu, NULL);
    pthread_cond_init(&fx->cv, NULL);
    ck_assert_int_eq(uv_loop_init(&fx->loop), 0);
    ck_assert_int_eq(uv_async_init(&fx->loop, &fx->stop_async, stop_cb), 0);
    fx->stop_async.data = fx;
    ck_assert_int_eq(uv_thread_create(&fx->thread, loop_thread, fx), 0);
    ck_assert_msg(fixture_wait(fx, &fx->ready, PROMPT_MS),
                  "server did not start");
    ck_assert_msg(!fx->start_failed, "server did not start");
    ck_assert_int_gt(fx->port, 0);
    /* Read during sg_server_new only. */
    sg_config_free(fx->cfg);
    fx->cfg = NULL;
    snprintf(fx->target, sizeof(fx->target), "127.0.0.1:%d", fx->port);
    return fixture_channel(fx);
}

static grpc_channel *fixture_start(struct fixture *fx,
                                   unsigned default_deadline_ms,
                                   unsigned drain_timeout_ms)
{
    return fixture_start_workers(fx, default_deadline_ms, drain_timeout_ms, 1);
}

/* Ask the loop to call sg_server_shutdown, and wait until it has. */
static void fixture_begin_shutdown(struct fixture *fx)
{
    uv_async_send(&fx->stop_async);
    ck_assert_msg(fixture_wait(fx, &fx->shutdown_begun, PROMPT_MS),
                  "the loop did not begin shutdown");
}

static bool fixture_wait_done(struct fixture *fx, int timeout_ms)
{
    return fixture_wait(fx, &fx->done, timeout_ms);
}

/*
 * Shut down (unless begun), wait for done_cb, free everything and call
 * grpc_shutdown. Client channels stay connected until the server is gone,
 * as real clients would.
 */
static void fixture_stop(struct fixture *fx, int done_timeout_ms)
{
    if (!fx->shutdown_begun)
        fixture_begin_shutdown(fx);
    ck_assert_msg(fixture_wait_done(fx, done_timeout_ms),
                  "server shutdown did not complete within %d ms",
                  done_timeout_ms);
    uv_thread_join(&fx->thread);
    sg_server_free(fx->srv);
    fx->srv = NULL;
    ck_assert_int_eq(uv_loop_close(&fx->loop), 0);
    for (size_t i = 0; i < fx->n_channels; i++)
        grpc_channel_destroy(fx->channels[i]);
    fx->n_channels = 0;
    join_helpers();
    ck_assert_uint_eq(kept_left(), 0);
    grpc_shutdown();
    pthread_cond_destroy(&fx->cv);
    pthread_mutex_destroy(&fx->mu);
}

/* ---- the client ---------------------------------------------------------- */

/* One client call: a unary or server-streaming request, run to its status. */
struct rpc {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_byte_buffer *send_bb;
    grpc_byte_buffer *recv_bb;
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_status_code code;
    grpc_slice details;
    char *details_str; /* gpr_malloc'd, set when the status arrived */
    grpc_slice msgs[MAX_MSGS];
    size_t n_msgs;
    bool too_many_msgs;
    bool status_done; /* also the tag of the status batch */
    bool recv_done;   /* also the tag of each RECV_MESSAGE */
    int outstanding;
    double started_ms;
    double ended_ms;
};

static void rpc_recv_next(struct rpc *r)
{
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &r->recv_bb;
    ck_assert_int_eq(
        grpc_call_start_batch(r->call, &op, 1, &r->recv_done, NULL),
        GRPC_CALL_OK);
    r->outstanding++;
}

/*
 * Start a call of method with the raw request bytes (req NULL: send no
 * message at all). deadline_ms < 0: no deadline.
 */
static void rpc_start(struct rpc *r, grpc_channel *ch, const char *method,
                      const void *req, size_t len, int deadline_ms)
{
    grpc_op ops[5];
    size_t n = 0;
    grpc_slice s;
    gpr_timespec deadline =
        deadline_ms < 0
            ? gpr_inf_future(GPR_CLOCK_REALTIME)
            : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                           gpr_time_from_millis(deadline_ms, GPR_TIMESPAN));

    memset(r, 0, sizeof(*r));
    grpc_metadata_array_init(&r->initial_md);
    grpc_metadata_array_init(&r->trailing_md);
    r->details = grpc_empty_slice();
    r->cq = grpc_completion_queue_create_for_next(NULL);
    s = grpc_slice_from_copied_string(method);
    r->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, r->cq,
                                       s, NULL, deadline, NULL);
    grpc_slice_unref(s);
    ck_assert_ptr_nonnull(r->call);
    r->started_ms = now_ms();

    memset(ops, 0, sizeof(ops));
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (req) {
        /* A fresh buffer: SEND_MESSAGE empties it. */
        s = grpc_slice_from_copied_buffer(req, len);
        r->send_bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = r->send_bb;
    }
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &r->initial_md;
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &r->trailing_md;
    ops[n].data.recv_status_on_client.status = &r->code;
    ops[n++].data.recv_status_on_client.status_details = &r->details;
    ck_assert_int_eq(
        grpc_call_start_batch(r->call, ops, n, &r->status_done, NULL),
        GRPC_CALL_OK);
    r->outstanding++;
    rpc_recv_next(r);
}

/* Collect messages until the stream and the status are in; false on timeout. */
static bool rpc_wait(struct rpc *r, int timeout_ms)
{
    gpr_timespec until =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));

    while (!r->status_done || !r->recv_done) {
        grpc_event ev = grpc_completion_queue_next(r->cq, until, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT)
            return false;
        ck_assert_int_eq(ev.type, GRPC_OP_COMPLETE);
        r->outstanding--;
        if (ev.tag == &r->status_done) {
            r->status_done = true;
            r->ended_ms = now_ms();
            r->details_str = grpc_slice_to_c_string(r->details);
            continue;
        }
        if (!r->recv_bb) {
            r->recv_done = true;
            continue;
        }
        if (r->n_msgs < MAX_MSGS) {
            grpc_byte_buffer_reader rd;
            ck_assert(grpc_byte_buffer_reader_init(&rd, r->recv_bb));
            r->msgs[r->n_msgs++] = grpc_byte_buffer_reader_readall(&rd);
            grpc_byte_buffer_reader_destroy(&rd);
        } else {
            r->too_many_msgs = true;
        }
        grpc_byte_buffer_destroy(r->recv_bb);
        r->recv_bb = NULL;
        rpc_recv_next(r);
    }
    return true;
}

static void rpc_free(struct rpc *r)
{
    if (r->outstanding > 0) {
        grpc_call_cancel(r->call, NULL);
        while (r->outstanding > 0) {
            grpc_event ev = grpc_completion_queue_next(
                r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            if (ev.type == GRPC_OP_COMPLETE)
                r->outstanding--;
        }
    }
    if (r->recv_bb)
        grpc_byte_buffer_destroy(r->recv_bb);
    if (r->send_bb)
        grpc_byte_buffer_destroy(r->send_bb);
    grpc_call_unref(r->call);
    grpc_completion_queue_shutdown(r->cq);
    while (grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                      NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(r->cq);
    for (size_t i = 0; i < r->n_msgs; i++)
        grpc_slice_unref(r->msgs[i]);
    grpc_slice_unref(r->details);
    gpr_free(r->details_str);
    grpc_metadata_array_destroy(&r->initial_md);
    grpc_metadata_array_destroy(&r->trailing_md);
}

static double rpc_elapsed_ms(const struct rpc *r)
{
    return r->ended_ms - r->started_ms;
}

/* Start a call whose request is HealthCheckRequest{service}. */
static void rpc_start_text(struct rpc *r, grpc_channel *ch, const char *method,
                           const char *service, int deadline_ms)
{
    Grpc__Health__V1__HealthCheckRequest req =
        GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    uint8_t buf[256];
    size_t len;

    req.service = (char *)service;
    len = grpc__health__v1__health_check_request__get_packed_size(&req);
    ck_assert_uint_le(len, sizeof(buf));
    grpc__health__v1__health_check_request__pack(&req, buf);
    rpc_start(r, ch, method, buf, len, deadline_ms);
}

/* The same, run to completion; the call must end within wait_ms. */
static void rpc_run_text(struct rpc *r, grpc_channel *ch, const char *method,
                         const char *service, int deadline_ms, int wait_ms)
{
    rpc_start_text(r, ch, method, service, deadline_ms);
    ck_assert_msg(rpc_wait(r, wait_ms), "%s did not end within %d ms", method,
                  wait_ms);
}

/* Message i decoded as HealthCheckRequest; its service, or NULL. */
static char *rpc_msg_text(const struct rpc *r, size_t i)
{
    Grpc__Health__V1__HealthCheckRequest *m;
    char *text;

    if (i >= r->n_msgs)
        return NULL;
    m = grpc__health__v1__health_check_request__unpack(
        NULL, GRPC_SLICE_LENGTH(r->msgs[i]), GRPC_SLICE_START_PTR(r->msgs[i]));
    if (!m)
        return NULL;
    text = strdup(m->service);
    grpc__health__v1__health_check_request__free_unpacked(m, NULL);
    return text;
}

static void assert_msg_text(const struct rpc *r, size_t i, const char *want)
{
    char *got = rpc_msg_text(r, i);

    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, want);
    free(got);
}

/* The value of trailing metadata key (binary-safe), or NULL. */
static const grpc_slice *rpc_trailer(const struct rpc *r, const char *key)
{
    size_t klen = strlen(key);

    for (size_t i = 0; i < r->trailing_md.count; i++) {
        const grpc_metadata *m = &r->trailing_md.metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) == klen &&
            memcmp(GRPC_SLICE_START_PTR(m->key), key, klen) == 0)
            return &m->value;
    }
    return NULL;
}

#define ASSERT_CODE(r, want)                                                   \
    ck_assert_msg((r)->code == (want), "status %d '%s', expected %d",          \
                  (int)(r)->code, (r)->details_str ? (r)->details_str : "",    \
                  (int)(want))

/* ---- deadlines ----------------------------------------------------------- */

/* A unary call without a client deadline gets the server default one. */
START_TEST(test_default_deadline)
{
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 300, 5000);
    struct rpc r;

    rpc_run_text(&r, ch, "/test.v1.Test/Hang", "", -1, 300 + PROMPT_MS);
    ASSERT_CODE(&r, GRPC_STATUS_DEADLINE_EXCEEDED);
    ck_assert_msg(rpc_elapsed_ms(&r) >= 0.8 * 300,
                  "ended after %.0f ms, before the 300 ms default deadline",
                  rpc_elapsed_ms(&r));
    fprintf(stderr, "default deadline: DEADLINE_EXCEEDED after %.0f ms\n",
            rpc_elapsed_ms(&r));
    ck_assert_int_eq(count_of(&n_hang_started), 1);
    ck_assert_msg(wait_count(&n_cancelled, 1, PROMPT_MS),
                  "Hang's on_cancel did not run");
    rpc_free(&r);
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

/* A client deadline shorter than the server default ends the call. */
START_TEST(test_client_deadline_wins)
{
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 60000, 5000);
    struct rpc r;

    rpc_run_text(&r, ch, "/test.v1.Test/Hang", "", 200, 200 + PROMPT_MS);
    ASSERT_CODE(&r, GRPC_STATUS_DEADLINE_EXCEEDED);
    ck_assert_double_ge(rpc_elapsed_ms(&r), 0.8 * 200);
    ck_assert_msg(wait_count(&n_cancelled, 1, PROMPT_MS),
                  "Hang's on_cancel did not run");
    rpc_free(&r);
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

/*
 * A client deadline longer than the server default is not cut short: the
 * default applies to calls without a deadline only.
 */
START_TEST(test_client_deadline_longer_than_default)
{
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 300, 5000);
    struct rpc r;

    rpc_run_text(&r, ch, "/test.v1.Test/Hang", "", 1500, 1500 + PROMPT_MS);
    ASSERT_CODE(&r, GRPC_STATUS_DEADLINE_EXCEEDED);
    ck_assert_msg(rpc_elapsed_ms(&r) >= 0.8 * 1500,
                  "ended after %.0f ms: the server default (300 ms) cut a "
                  "call with a 1500 ms client deadline",
                  rpc_elapsed_ms(&r));
    ck_assert_msg(wait_count(&n_cancelled, 1, PROMPT_MS),
                  "Hang's on_cancel did not run");
    rpc_free(&r);
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

/* A client cancel reaches the handler. */
START_TEST(test_client_cancel)
{
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 60000, 5000);
    struct rpc r;

    rpc_start_text(&r, ch, "/test.v1.Test/Hang", "", -1);
    ck_assert_msg(wait_count(&n_hang_started, 1, PROMPT_MS),
                  "Hang did not start");
    grpc_call_cancel(r.call, NULL);
    ck_assert(rpc_wait(&r, PROMPT_MS));
    ASSERT_CODE(&r, GRPC_STATUS_CANCELLED);
    ck_assert_msg(wait_count(&n_cancelled, 1, PROMPT_MS),
                  "Hang's on_cancel did not run");
    rpc_free(&r);
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

/* A deferred call goes on from the resuming thread: the handler runs and
   answers, unary and streaming alike. */
START_TEST(test_auth_deferred_resumes)
{
    struct fixture fx;
    grpc_channel *ch;
    struct rpc r;

    fixture_auth = deferring_auth;
    auth_delay_ms = 100;
    ch = fixture_start(&fx, 60000, 5000);
    rpc_run_text(&r, ch, "/test.v1.Test/Echo", "hello", -1, PROMPT_MS);
    ASSERT_CODE(&r, GRPC_STATUS_OK);
    assert_msg_text(&r, 0, "hello");
    ck_assert_double_ge(rpc_elapsed_ms(&r), 90);
    rpc_free(&r);
    rpc_run_text(&r, ch, "/test.v1.Test/Stream", "", -1, PROMPT_MS);
    ASSERT_CODE(&r, GRPC_STATUS_OK);
    ck_assert_uint_eq(r.n_msgs, STREAM_COUNT);
    rpc_free(&r);
    rpc_run_text(&r, ch, "/test.v1.Test/Unbuilt", "", -1, PROMPT_MS);
    ASSERT_CODE(&r, GRPC_STATUS_UNIMPLEMENTED);
    rpc_free(&r);
    ck_assert_int_eq(count_of(&n_auth_deferred), 3);
    ck_assert(wait_count(&n_auth_resumed, 3, PROMPT_MS));
    join_helpers();
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

/* A call cancelled while its authentication waits never reaches its
   handler, not even its on_cancel. */
START_TEST(test_auth_deferred_cancelled)
{
    struct fixture fx;
    grpc_channel *ch;
    struct rpc r;

    fixture_auth = deferring_auth;
    auth_delay_ms = 300;
    ch = fixture_start(&fx, 60000, 5000);
    rpc_start_text(&r, ch, "/test.v1.Test/Hang", "", -1);
    ck_assert(wait_count(&n_auth_deferred, 1, PROMPT_MS));
    grpc_call_cancel(r.call, NULL);
    ck_assert(rpc_wait(&r, PROMPT_MS));
    ASSERT_CODE(&r, GRPC_STATUS_CANCELLED);
    ck_assert(wait_count(&n_auth_resumed, 1, PROMPT_MS));
    ck_assert_int_eq(count_of(&n_hang_started), 0);
    ck_assert_int_eq(count_of(&n_cancelled), 0);
    rpc_free(&r);
    join_helpers();
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

/* ---- drain and shutdown -------------------------------------------------- */

/*
 * Shutdown lets an in-flight unary call finish, answers new calls
 * UNAVAILABLE, and completes once the call is done (before the drain
 * deadline).
 */
START_TEST(test_drain_lets_unary_finish)
{
    const unsigned drain_ms = 5000;
    const long slow_ms = 800;
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 60000, drain_ms);
    grpc_channel *ch2 = fixture_channel(&fx);
    struct rpc slow;
    struct rpc late;
    char text[32];

    /* Connect the second channel first, with a call that works. */
    rpc_run_text(&late, ch2, "/test.v1.Test/Echo", "hello", 30000, PROMPT_MS);
    ASSERT_CODE(&late, GRPC_STATUS_OK);
    assert_msg_text(&late, 0, "hello");
    rpc_free(&late);

    snprintf(text, sizeof(text), "%ld", slow_ms);
    rpc_start_text(&slow, ch, "/test.v1.Test/Slow", text, 30000);
    ck_assert_msg(wait_count(&n_slow_started, 1, PROMPT_MS),
                  "Slow did not start");
    fixture_begin_shutdown(&fx);

    /* A new call while draining: UNAVAILABLE (retryable elsewhere). */
    rpc_run_text(&late, ch2, "/test.v1.Test/Echo", "late", 30000, PROMPT_MS);
    fprintf(stderr, "drain: new call got %d '%s' after %.0f ms\n",
            (int)late.code, late.details_str, rpc_elapsed_ms(&late));
    ASSERT_CODE(&late, GRPC_STATUS_UNAVAILABLE);
    ck_assert_msg(count_of(&n_slow_replied) == 0,
                  "the late call was only answered after Slow finished");
    rpc_free(&late);

    /* The call in flight completes normally. */
    ck_assert_msg(rpc_wait(&slow, (int)slow_ms + PROMPT_MS),
                  "Slow did not end");
    ASSERT_CODE(&slow, GRPC_STATUS_OK);
    ck_assert_uint_eq(slow.n_msgs, 1);
    assert_msg_text(&slow, 0, "slept 800");
    ck_assert_double_ge(rpc_elapsed_ms(&slow), 0.8 * (double)slow_ms);

    /* Shutdown completes after the call, well before the drain deadline. */
    ck_assert_msg(fixture_wait_done(&fx, (int)drain_ms + PROMPT_MS),
                  "shutdown did not complete");
    fprintf(stderr,
            "drain: Slow ended %.0f ms after shutdown began, done after "
            "%.0f ms\n",
            slow.ended_ms - fx.shutdown_ms, fx.done_ms - fx.shutdown_ms);
    ck_assert_double_ge(fx.done_ms, slow.ended_ms - 50);
    ck_assert_msg(fx.done_ms - fx.shutdown_ms < drain_ms,
                  "shutdown took %.0f ms: it waited for the drain deadline",
                  fx.done_ms - fx.shutdown_ms);
    rpc_free(&slow);
    fixture_stop(&fx, PROMPT_MS);
}
END_TEST

/* At the drain deadline, calls still running are cancelled. */
START_TEST(test_drain_deadline_cancels_stuck_calls)
{
    const unsigned drain_ms = 300;
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 60000, drain_ms);
    struct rpc r;

    rpc_start_text(&r, ch, "/test.v1.Test/Hang", "", -1);
    ck_assert_msg(wait_count(&n_hang_started, 1, PROMPT_MS),
                  "Hang did not start");
    fixture_begin_shutdown(&fx);

    ck_assert_msg(rpc_wait(&r, (int)drain_ms + 3000),
                  "the stuck call did not end within drain + 3 s");
    fprintf(stderr,
            "drain deadline: stuck call ended with %d '%s' %.0f ms after "
            "shutdown began\n",
            (int)r.code, r.details_str, r.ended_ms - fx.shutdown_ms);
    ck_assert_msg(r.code == GRPC_STATUS_CANCELLED ||
                      r.code == GRPC_STATUS_UNAVAILABLE,
                  "status %d '%s'", (int)r.code, r.details_str);
    ck_assert_double_ge(r.ended_ms - fx.shutdown_ms, 0.8 * drain_ms);
    ck_assert_msg(wait_count(&n_cancelled, 1, PROMPT_MS),
                  "Hang's on_cancel did not run");
    ck_assert_msg(fixture_wait_done(&fx, (int)drain_ms + PROMPT_MS),
                  "shutdown did not complete");
    fprintf(stderr, "drain deadline: done %.0f ms after shutdown began\n",
            fx.done_ms - fx.shutdown_ms);
    rpc_free(&r);
    fixture_stop(&fx, PROMPT_MS);
}
END_TEST

/*
 * The server default deadline still holds while the server drains: a call
 * without a client deadline ends with DEADLINE_EXCEEDED at its deadline,
 * not at the (much later) drain deadline.
 */
START_TEST(test_default_deadline_during_drain)
{
    const unsigned drain_ms = 6000;
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 500, drain_ms);
    struct rpc r;

    rpc_start_text(&r, ch, "/test.v1.Test/Hang", "", -1);
    ck_assert_msg(wait_count(&n_hang_started, 1, PROMPT_MS),
                  "Hang did not start");
    fixture_begin_shutdown(&fx);
    ck_assert_msg(rpc_wait(&r, (int)drain_ms + PROMPT_MS),
                  "the call did not end");
    fprintf(stderr,
            "default deadline while draining: %d '%s' after %.0f ms "
            "(drain deadline %u ms)\n",
            (int)r.code, r.details_str, rpc_elapsed_ms(&r), drain_ms);
    ck_assert_msg(r.code == GRPC_STATUS_DEADLINE_EXCEEDED &&
                      rpc_elapsed_ms(&r) < 500 + 3000,
                  "a call with a 500 ms server default deadline ended "
                  "with %d '%s' after %.0f ms while the server drained",
                  (int)r.code, r.details_str, rpc_elapsed_ms(&r));
    ck_assert_msg(wait_count(&n_cancelled, 1, PROMPT_MS),
                  "Hang's on_cancel did not run");
    rpc_free(&r);
    fixture_stop(&fx, (int)drain_ms + PROMPT_MS);
}
END_TEST

/* With no call at all, shutdown is quick. */
START_TEST(test_idle_shutdown_is_quick)
{
    const unsigned drain_ms = 10000;
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 60000, drain_ms);
    struct rpc r;

    /* A connected, idle client. */
    rpc_run_text(&r, ch, "/test.v1.Test/Echo", "x", 30000, PROMPT_MS);
    ASSERT_CODE(&r, GRPC_STATUS_OK);
    rpc_free(&r);
    fixture_begin_shutdown(&fx);
    ck_assert_msg(fixture_wait_done(&fx, (int)drain_ms + PROMPT_MS),
                  "shutdown did not complete");
    fprintf(stderr, "idle shutdown: done after %.0f ms\n",
            fx.done_ms - fx.shutdown_ms);
    ck_assert_msg(fx.done_ms - fx.shutdown_ms < 0.5 * drain_ms,
                  "idle shutdown took %.0f ms", fx.done_ms - fx.shutdown_ms);
    fixture_stop(&fx, PROMPT_MS);
}
END_TEST

/*
 * Shutdown ends an open server stream with UNAVAILABLE after the messages
 * it already queued, and tells the handler (on_cancel). The server default
 * deadline does not apply to streams.
 */
START_TEST(test_shutdown_ends_streams)
{
    const unsigned drain_ms = 10000;
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 300, drain_ms);
    struct rpc r;

    rpc_start_text(&r, ch, "/test.v1.Test/Watch", "w", -1);
    ck_assert_msg(wait_count(&n_watch_started, 1, PROMPT_MS),
                  "Watch did not start");
    ck_assert_msg(!rpc_wait(&r, 1000),
                  "the stream ended with %d '%s' before shutdown", (int)r.code,
                  r.details_str);
    ck_assert_int_eq(count_of(&n_cancelled), 0);
    fixture_begin_shutdown(&fx);
    ck_assert_msg(rpc_wait(&r, PROMPT_MS), "the stream did not end");
    ASSERT_CODE(&r, GRPC_STATUS_UNAVAILABLE);
    ck_assert_uint_eq(r.n_msgs, 3);
    for (size_t i = 0; i < r.n_msgs; i++)
        assert_msg_text(&r, i, "w");
    ck_assert_msg(wait_count(&n_cancelled, 1, PROMPT_MS),
                  "Watch's on_cancel did not run");
    ck_assert_msg(fixture_wait_done(&fx, (int)drain_ms + PROMPT_MS),
                  "shutdown did not complete");
    fprintf(stderr,
            "stream shutdown: ended after %.0f ms, done after "
            "%.0f ms\n",
            r.ended_ms - fx.shutdown_ms, fx.done_ms - fx.shutdown_ms);
    ck_assert_msg(fx.done_ms - fx.shutdown_ms < 0.5 * drain_ms,
                  "shutdown took %.0f ms", fx.done_ms - fx.shutdown_ms);
    rpc_free(&r);
    fixture_stop(&fx, PROMPT_MS);
}
END_TEST

/*
 * Shutdown while many short streams are ending, round after round: the
 * server's walk over its live streams (to end them with UNAVAILABLE) meets
 * calls whose last reference is being dropped at that very moment. A call
 * context must not be revived once its count reached zero. Every call must
 * end (OK, or UNAVAILABLE/CANCELLED once the server goes away) and shutdown
 * must complete. The overlap is a matter of timing: each round has a small
 * chance of hitting it, hence many rounds; a context revived after its
 * count reached zero shows as a use-after-free under ASan, or as a gRPC
 * "prior > 0" abort or a crash without it.
 */
START_TEST(test_shutdown_while_streams_end)
{
    enum { ROUNDS = 40, CALLS = 300, WATCHES = 900 };
    struct rpc *r = calloc(CALLS, sizeof(*r));
    struct rpc *w = calloc(WATCHES, sizeof(*w));
    int ok = 0;

    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_nonnull(w);
    for (int round = 0; round < ROUNDS; round++) {
        struct fixture fx;
        grpc_channel *ch = fixture_start_workers(&fx, 60000, 5000, 2);
        grpc_channel *ch2 = fixture_channel(&fx);

        /* Open streams make the walk over the live calls longer. */
        for (int i = 0; i < WATCHES; i++)
            rpc_start_text(&w[i], ch, "/test.v1.Test/Watch", "w", 30000);
        ck_assert(
            wait_count(&n_watch_started, (round + 1) * WATCHES, PROMPT_MS));
        for (int i = 0; i < CALLS; i++)
            rpc_start_text(&r[i], ch2, "/test.v1.Test/Once", "x", 30000);
        /* Shut down while the streams end. */
        ck_assert(
            wait_count(&n_once_started, round * CALLS + CALLS / 10, PROMPT_MS));
        fixture_begin_shutdown(&fx);
        for (int i = 0; i < CALLS; i++) {
            ck_assert_msg(rpc_wait(&r[i], PROMPT_MS),
                          "round %d: call %d did not end", round, i);
            ck_assert_msg(r[i].code == GRPC_STATUS_OK ||
                              r[i].code == GRPC_STATUS_UNAVAILABLE ||
                              r[i].code == GRPC_STATUS_CANCELLED,
                          "round %d: call %d: %d '%s'", round, i,
                          (int)r[i].code, r[i].details_str);
            ok += r[i].code == GRPC_STATUS_OK;
            rpc_free(&r[i]);
        }
        for (int i = 0; i < WATCHES; i++) {
            ck_assert_msg(rpc_wait(&w[i], PROMPT_MS),
                          "round %d: stream %d did not end", round, i);
            rpc_free(&w[i]);
        }
        ck_assert_msg(fixture_wait_done(&fx, 5000 + PROMPT_MS),
                      "round %d: shutdown did not complete", round);
        fixture_stop(&fx, PROMPT_MS);
    }
    fprintf(stderr, "streams ending at shutdown: %d of %d calls OK\n", ok,
            ROUNDS * CALLS);
    ck_assert_int_ge(ok, ROUNDS);
    free(r);
    free(w);
}
END_TEST

/* Fill the pipe behind fd (opened non-blocking) until nothing more fits. */
static void fill_pipe(int fd)
{
    static const char block[4096] = {0};

    while (write(fd, block, sizeof(block)) > 0)
        ;
    while (write(fd, block, 1) > 0)
        ;
}

/* Read what is in the pipe (non-blocking read end); true if anything. */
static bool drain_pipe(int fd)
{
    char buf[4096];
    bool any = false;

    while (read(fd, buf, sizeof(buf)) > 0)
        any = true;
    return any;
}

/*
 * done_cb means every call is gone (server.h), so the owner may free the
 * server and call grpc_shutdown. That must hold when a handler thread drops
 * the last reference while the server drains: done_cb may only run after
 * that sg_call_unref has finished with the call (its grpc_call included)
 * and with the server.
 *
 * Here the drain deadline cancels a Slow call whose helper still holds it;
 * the helper's unref, later, is the last one. The time that unref spends
 * freeing the call is stretched by making the access-log line it writes
 * block: the log goes to a pipe the test has filled, and drains later.
 */
START_TEST(test_done_waits_for_last_unref)
{
    const unsigned drain_ms = 300;
    const long slow_ms = 1500;
    struct fixture fx;
    grpc_channel *ch;
    struct rpc r;
    int fds[2];
    int fill_fd;
    char path[64];
    char text[32];
    bool early;

    ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[1]);
    /* The same pipe, but a non-blocking description of its own. */
    fill_fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    ck_assert_int_ge(fill_fd, 0);
    ck_assert_int_eq(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    sg_log_set_fd(fds[1]);

    ch = fixture_start(&fx, 60000, drain_ms);
    sg_server_set_access_log(fx.srv, true);
    snprintf(text, sizeof(text), "%ld", slow_ms);
    rpc_start_text(&r, ch, "/test.v1.Test/Slow", text, 30000);
    ck_assert_msg(wait_count(&n_slow_started, 1, PROMPT_MS),
                  "Slow did not start");
    fixture_begin_shutdown(&fx);
    /* The drain deadline cancels the call; the helper still holds it. */
    ck_assert_msg(rpc_wait(&r, (int)drain_ms + 3000), "Slow did not end");
    ck_assert_msg(r.code == GRPC_STATUS_CANCELLED ||
                      r.code == GRPC_STATUS_UNAVAILABLE,
                  "status %d '%s'", (int)r.code, r.details_str);
    ck_assert_int_eq(count_of(&n_slow_replied), 0);
    drain_pipe(fds[0]);
    fill_pipe(fill_fd);

    /* The helper wakes, gives up on the cancelled call and unrefs it. */
    ck_assert_msg(wait_count(&n_slow_replied, 1, (int)slow_ms + PROMPT_MS),
                  "Slow's helper did not finish");
    early = fixture_wait_done(&fx, 1000);
    fprintf(stderr,
            "last unref: done_cb %s while the last unref was blocked "
            "(unrefs returned at done: %d)\n",
            early ? "ran" : "did not run", fx.slow_unrefd_at_done);
    /* Let the access-log line through. */
    while (!wait_count(&n_slow_unrefd, 1, 10))
        drain_pipe(fds[0]);
    ck_assert_msg(fixture_wait_done(&fx, PROMPT_MS),
                  "shutdown did not complete");
    drain_pipe(fds[0]);
    sg_log_set_fd(-1);
    rpc_free(&r);
    fixture_stop(&fx, PROMPT_MS);
    close(fill_fd);
    close(fds[0]);
    close(fds[1]);
    ck_assert_msg(fx.slow_unrefd_at_done == 1,
                  "done_cb ran while a handler thread was still inside "
                  "the last sg_call_unref of a call");
}
END_TEST

/* ---- unimplemented and bad requests -------------------------------------- */

START_TEST(test_unknown_method)
{
    static const char *const paths[] = {
        "/test.v1.Test/Nope", "/no.such.Service/Method",
        "/test.v1.Test/Unbuilt", /* listed, NULL on_start */
    };
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 60000, 5000);

    for (size_t i = 0; i < SG_N_ELEMENTS(paths); i++) {
        struct rpc r;
        rpc_run_text(&r, ch, paths[i], "", 30000, PROMPT_MS);
        ck_assert_msg(r.code == GRPC_STATUS_UNIMPLEMENTED, "%s: status %d '%s'",
                      paths[i], (int)r.code, r.details_str);
        ck_assert_uint_eq(r.n_msgs, 0);
        ck_assert_msg(rpc_elapsed_ms(&r) < PROMPT_MS, "%s took %.0f ms",
                      paths[i], rpc_elapsed_ms(&r));
        rpc_free(&r);
    }
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

START_TEST(test_malformed_request)
{
    /* Field 1, length-delimited, with a truncated length varint. */
    static const uint8_t bad[] = {0x0a, 0xff};
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 60000, 5000);
    struct rpc r;

    rpc_start(&r, ch, "/test.v1.Test/Echo", bad, sizeof(bad), 30000);
    ck_assert(rpc_wait(&r, PROMPT_MS));
    ASSERT_CODE(&r, GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(r.details_str, "cannot parse"));
    ck_assert_uint_eq(r.n_msgs, 0);
    rpc_free(&r);

    /* The server is unharmed. */
    rpc_run_text(&r, ch, "/test.v1.Test/Echo", "after", 30000, PROMPT_MS);
    ASSERT_CODE(&r, GRPC_STATUS_OK);
    assert_msg_text(&r, 0, "after");
    rpc_free(&r);
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

/* A unary request that sends no message at all is INVALID_ARGUMENT. */
START_TEST(test_missing_request)
{
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 60000, 5000);
    struct rpc r;

    rpc_start(&r, ch, "/test.v1.Test/Echo", NULL, 0, 30000);
    ck_assert(rpc_wait(&r, PROMPT_MS));
    ASSERT_CODE(&r, GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert_uint_eq(r.n_msgs, 0);
    rpc_free(&r);
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

/* A zero-length message is a valid request (every field at its default). */
START_TEST(test_empty_request_is_valid)
{
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 60000, 5000);
    struct rpc r;

    rpc_start(&r, ch, "/test.v1.Test/Echo", "", 0, 30000);
    ck_assert(rpc_wait(&r, PROMPT_MS));
    ASSERT_CODE(&r, GRPC_STATUS_OK);
    ck_assert_uint_eq(r.n_msgs, 1);
    ck_assert_uint_eq(GRPC_SLICE_LENGTH(r.msgs[0]), 0);
    rpc_free(&r);
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

/* ---- error details ------------------------------------------------------- */

START_TEST(test_fail_carries_violations)
{
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 60000, 5000);
    struct rpc r;
    const grpc_slice *bin;
    Google__Rpc__Status *st;
    Google__Rpc__BadRequest *br;

    rpc_run_text(&r, ch, "/test.v1.Test/Invalid", "bad name", 30000, PROMPT_MS);
    ASSERT_CODE(&r, GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert_str_eq(r.details_str, "service: must not be 'bad name'");
    ck_assert_uint_eq(r.n_msgs, 0);

    bin = rpc_trailer(&r, "grpc-status-details-bin");
    ck_assert_msg(bin != NULL, "no grpc-status-details-bin trailer");
    st = google__rpc__status__unpack(NULL, GRPC_SLICE_LENGTH(*bin),
                                     GRPC_SLICE_START_PTR(*bin));
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(st->code, GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert_str_eq(st->message, "service: must not be 'bad name'");
    ck_assert_uint_eq(st->n_details, 1);
    ck_assert_str_eq(st->details[0]->type_url,
                     "type.googleapis.com/google.rpc.BadRequest");
    br = google__rpc__bad_request__unpack(NULL, st->details[0]->value.len,
                                          st->details[0]->value.data);
    ck_assert_ptr_nonnull(br);
    ck_assert_uint_eq(br->n_field_violations, 1);
    ck_assert_str_eq(br->field_violations[0]->field, "service");
    ck_assert_str_eq(br->field_violations[0]->description,
                     "must not be 'bad name'");
    google__rpc__bad_request__free_unpacked(br, NULL);
    google__rpc__status__free_unpacked(st, NULL);
    rpc_free(&r);

    /* A plain failure carries no details. */
    rpc_run_text(&r, ch, "/test.v1.Test/Slow", "not a number", 30000,
                 PROMPT_MS);
    ASSERT_CODE(&r, GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(rpc_trailer(&r, "grpc-status-details-bin"));
    rpc_free(&r);
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

/* ---- streaming ----------------------------------------------------------- */

START_TEST(test_stream_order)
{
    struct fixture fx;
    grpc_channel *ch = fixture_start(&fx, 60000, 5000);
    struct rpc r;

    rpc_run_text(&r, ch, "/test.v1.Test/Stream", "", 30000, 3 * PROMPT_MS);
    ASSERT_CODE(&r, GRPC_STATUS_OK);
    ck_assert(!r.too_many_msgs);
    ck_assert_uint_eq(r.n_msgs, STREAM_COUNT);
    for (size_t i = 0; i < r.n_msgs; i++) {
        Google__Protobuf__Duration *d = google__protobuf__duration__unpack(
            NULL, GRPC_SLICE_LENGTH(r.msgs[i]),
            GRPC_SLICE_START_PTR(r.msgs[i]));
        ck_assert_ptr_nonnull(d);
        ck_assert_msg(d->seconds == (int64_t)i, "message %zu holds %lld", i,
                      (long long)d->seconds);
        google__protobuf__duration__free_unpacked(d, NULL);
    }
    ck_assert_int_eq(count_of(&n_stream_sent), STREAM_COUNT);
    ck_assert(wait_count(&n_stream_ended, 1, PROMPT_MS));
    rpc_free(&r);
    fixture_stop(&fx, 5000 + PROMPT_MS);
}
END_TEST

static Suite *server_suite(void)
{
    Suite *s = suite_create("server");
    TCase *deadlines = tcase_create("deadlines");
    TCase *shutdown = tcase_create("shutdown");
    TCase *requests = tcase_create("requests");
    TCase *race = tcase_create("race");

    tcase_set_timeout(deadlines, 60);
    tcase_add_test(deadlines, test_default_deadline);
    tcase_add_test(deadlines, test_client_deadline_wins);
    tcase_add_test(deadlines, test_client_deadline_longer_than_default);
    tcase_add_test(deadlines, test_client_cancel);
    tcase_add_test(deadlines, test_auth_deferred_resumes);
    tcase_add_test(deadlines, test_auth_deferred_cancelled);
    suite_add_tcase(s, deadlines);

    tcase_set_timeout(shutdown, 60);
    tcase_add_test(shutdown, test_drain_lets_unary_finish);
    tcase_add_test(shutdown, test_drain_deadline_cancels_stuck_calls);
    tcase_add_test(shutdown, test_default_deadline_during_drain);
    tcase_add_test(shutdown, test_idle_shutdown_is_quick);
    tcase_add_test(shutdown, test_shutdown_ends_streams);
    tcase_add_test(shutdown, test_done_waits_for_last_unref);
    suite_add_tcase(s, shutdown);

    tcase_set_timeout(race, 90);
    tcase_add_test(race, test_shutdown_while_streams_end);
    suite_add_tcase(s, race);

    tcase_set_timeout(requests, 60);
    tcase_add_test(requests, test_unknown_method);
    tcase_add_test(requests, test_malformed_request);
    tcase_add_test(requests, test_missing_request);
    tcase_add_test(requests, test_empty_request_is_valid);
    tcase_add_test(requests, test_fail_carries_violations);
    tcase_add_test(requests, test_stream_order);
    suite_add_tcase(s, requests);
    return s;
}

SG_TEST_MAIN(server_suite)
