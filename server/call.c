/*
 * call.c: per-call context, send queue and completion of calls.
 *
 * Reference counting: one reference per outstanding completion-queue tag,
 * one for the dispatch of on_start, and one per handler that keeps the call.
 * The context (and the grpc_call) is freed when the count drops to zero,
 * which is also when the access-log line is written.
 *
 * Batches: RECV_CLOSE_ON_SERVER is the cancellation signal. A call that
 * on_start completes at once (a synchronous reply, any error) carries it in
 * its status batch, so such a call costs one batch; a call that outlives
 * on_start gets it in a batch of its own as soon as on_start returns.
 * Messages are sent one at a time from a queue (the core allows one
 * SEND_MESSAGE in flight); the status follows the last queued message.
 */
#include "internal.h"

#include "transport.h"
#include "server.h"
#include "log.h"
#include "status.h"
#include "descriptors.h"

#include <stdlib.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>

SG_LOG_INIT("server.call");

static struct sg_log_category access_log_cat = {.name = "server.access"};

/* See write_access_log. */
#define DEADLINE_MARGIN_MS 50

struct sg_pending_send {
    grpc_byte_buffer *bb;
    struct sg_pending_send *next;
};

static void on_new(struct sg_tag *tag, bool ok);
static void on_close(struct sg_tag *tag, bool ok);
static void on_recv(struct sg_tag *tag, bool ok);
static void on_send(struct sg_tag *tag, bool ok);
static void on_status(struct sg_tag *tag, bool ok);
static void on_md(struct sg_tag *tag, bool ok);

struct sg_call *sg_call_new(struct sg_server *srv, grpc_completion_queue *cq,
                            const struct sg_registered_method *rm)
{
    struct sg_call *call = calloc(1, sizeof(*call));

    if (!call)
        return NULL;
    atomic_init(&call->refs, 1);
    call->server = srv;
    call->cq = cq;
    call->rm = rm;
    grpc_metadata_array_init(&call->md);
    if (!rm)
        grpc_call_details_init(&call->details);
    call->tag_new.fn = on_new;
    call->tag_close.fn = on_close;
    call->tag_recv.fn = on_recv;
    call->tag_send.fn = on_send;
    call->tag_status.fn = on_status;
    call->tag_md.fn = on_md;
    call->status_slice = grpc_empty_slice();
    pthread_mutex_init(&call->mu, NULL);
    return call;
}

static void drop_queue_locked(struct sg_call *call)
{
    struct sg_pending_send *p = call->q_head;

    while (p) {
        struct sg_pending_send *next = p->next;
        grpc_byte_buffer_destroy(p->bb);
        free(p);
        p = next;
    }
    call->q_head = call->q_tail = NULL;
}

static void write_access_log(struct sg_call *call)
{
    const char *method = call->rm ? call->rm->method->path : NULL;
    char unknown[256];
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    double ms = gpr_timespec_to_micros(gpr_time_sub(now, call->start)) / 1e3;
    /* A cancelled call never delivered its status, whatever it was. */
    grpc_status_code code = call->cancelled || !call->status_started
                                ? GRPC_STATUS_CANCELLED
                                : call->status_code;

    if (!method) {
        size_t n = GRPC_SLICE_LENGTH(call->details.method);
        if (n >= sizeof(unknown))
            n = sizeof(unknown) - 1;
        memcpy(unknown, GRPC_SLICE_START_PTR(call->details.method), n);
        unknown[n] = '\0';
        method = unknown;
    }
    /*
     * A client whose deadline passes cancels the stream, and its cancel
     * usually arrives just before the server's copy of the deadline (which
     * starts when the call arrives). A cancel within DEADLINE_MARGIN_MS of
     * the deadline is taken to be the deadline.
     */
    if (code == GRPC_STATUS_CANCELLED &&
        gpr_time_cmp(gpr_time_add(gpr_now(call->deadline.clock_type),
                                  gpr_time_from_millis(DEADLINE_MARGIN_MS,
                                                       GPR_TIMESPAN)),
                     call->deadline) >= 0)
        code = GRPC_STATUS_DEADLINE_EXCEEDED;

    struct sg_log_kv kv[] = {
        SG_KV_STR("method", method),
        SG_KV_STR("peer", sg_call_peer(call)),
        SG_KV_STR("status", sg_status_name(code)),
        SG_KV_DBL("duration_ms", ms),
        /* Who, once authenticated; never the credential itself. */
        SG_KV_STR("subject", call->identity ? call->identity->subject : ""),
    };
    sg_log_kv(&access_log_cat, SG_LOG_INFO, "call", kv, SG_N_ELEMENTS(kv));
}

static void call_free(struct sg_call *call)
{
    struct sg_server *srv = call->server;
    bool started = call->call != NULL;

    if (started) {
        sg_server_call_unlink(srv, call);
        if (sg_server_access_log(srv) &&
            sg_log_enabled(&access_log_cat, SG_LOG_INFO))
            write_access_log(call);
        grpc_call_unref(call->call);
    }
    drop_queue_locked(call);
    if (call->data_free)
        call->data_free(call->data);
    if (call->send_bb)
        grpc_byte_buffer_destroy(call->send_bb);
    if (call->payload)
        grpc_byte_buffer_destroy(call->payload);
    if (call->recv_buf)
        grpc_byte_buffer_destroy(call->recv_buf);
    grpc_slice_unref(call->status_slice);
    if (call->n_trailing)
        grpc_slice_unref(call->trailing[0].value);
    if (call->auth)
        grpc_auth_context_release(call->auth);
    sg_identity_unref(call->identity);
    sg_policy_unref(call->policy);
    grpc_metadata_array_destroy(&call->md);
    if (!call->rm)
        grpc_call_details_destroy(&call->details);
    gpr_free(call->peer);
    pthread_mutex_destroy(&call->mu);
    free(call);
    /* Last: once uncounted, the server may finish shutting down. */
    if (started)
        sg_server_call_done(srv);
}

void sg_call_ref(struct sg_call *call)
{
    atomic_fetch_add_explicit(&call->refs, 1, memory_order_relaxed);
}

bool sg_call_try_ref(struct sg_call *call)
{
    int n = atomic_load_explicit(&call->refs, memory_order_relaxed);

    while (n > 0) {
        if (atomic_compare_exchange_weak_explicit(&call->refs, &n, n + 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    }
    return false;
}

void sg_call_unref(struct sg_call *call)
{
    if (atomic_fetch_sub_explicit(&call->refs, 1, memory_order_acq_rel) == 1)
        call_free(call);
}

/* Start a batch holding a reference for its tag. Called with mu held. */
static bool start_batch_locked(struct sg_call *call, const grpc_op *ops,
                               size_t n, struct sg_tag *tag)
{
    grpc_call_error rc;

    sg_call_ref(call);
    rc = grpc_call_start_batch(call->call, ops, n, tag, NULL);
    if (rc != GRPC_CALL_OK) {
        SG_ERROR("grpc_call_start_batch failed: %d", (int)rc);
        /* Not the last reference: the caller holds one. */
        atomic_fetch_sub_explicit(&call->refs, 1, memory_order_acq_rel);
        return false;
    }
    return true;
}

static size_t add_initial_md_op_locked(struct sg_call *call, grpc_op *op)
{
    if (call->initial_md_sent)
        return 0;
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->data.send_initial_metadata.count = call->n_initial_md;
    op->data.send_initial_metadata.metadata =
        (grpc_metadata *)call->initial_md;
    call->initial_md_sent = true;
    return 1;
}

static size_t add_message_op(grpc_op *op, grpc_byte_buffer *bb)
{
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_MESSAGE;
    op->data.send_message.send_message = bb;
    return 1;
}

/* Add RECV_CLOSE_ON_SERVER to a batch unless it is under way. */
static size_t add_close_op_locked(struct sg_call *call, grpc_op *op)
{
    if (call->close_started)
        return 0;
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op->data.recv_close_on_server.cancelled = &call->client_cancelled;
    call->close_started = true;
    return 1;
}

static void fill_status_op_locked(struct sg_call *call, grpc_op *op)
{
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op->data.send_status_from_server.status = call->status_code;
    op->data.send_status_from_server.status_details = &call->status_slice;
    op->data.send_status_from_server.trailing_metadata_count =
        call->n_trailing;
    op->data.send_status_from_server.trailing_metadata = call->trailing;
}

static void start_status_locked(struct sg_call *call)
{
    grpc_op ops[3];
    size_t n = add_initial_md_op_locked(call, &ops[0]);

    fill_status_op_locked(call, &ops[n++]);
    n += add_close_op_locked(call, &ops[n]);
    call->status_started = true;
    start_batch_locked(call, ops, n, &call->tag_status);
}

/* Send the next queued message, or the status if one is waiting. */
static void pump_locked(struct sg_call *call)
{
    struct sg_pending_send *p;
    grpc_op ops[2];
    size_t n;

    if (call->send_busy || call->status_started)
        return;
    p = call->q_head;
    if (!p) {
        if (call->finish_requested)
            start_status_locked(call);
        return;
    }
    call->q_head = p->next;
    if (!call->q_head)
        call->q_tail = NULL;
    call->send_bb = p->bb;
    free(p);

    n = add_initial_md_op_locked(call, &ops[0]);
    n += add_message_op(&ops[n], call->send_bb);
    call->send_busy = true;
    if (!start_batch_locked(call, ops, n, &call->tag_send)) {
        call->send_busy = false;
        grpc_byte_buffer_destroy(call->send_bb);
        call->send_bb = NULL;
    }
}

static grpc_byte_buffer *pack(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(len);
    grpc_byte_buffer *bb;

    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static grpc_byte_buffer *copy_bytes(const void *data, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer(data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);

    grpc_slice_unref(s);
    return bb;
}

/* Queue bb (owned) for sending. */
static int send_bb(struct sg_call *call, grpc_byte_buffer *bb)
{
    struct sg_pending_send *p = malloc(sizeof(*p));
    int ret = -1;

    if (!p) {
        grpc_byte_buffer_destroy(bb);
        return -1;
    }
    p->bb = bb;
    p->next = NULL;

    pthread_mutex_lock(&call->mu);
    if (call->finish_requested || call->cancelled)
        goto cleanup;
    if (call->q_tail)
        call->q_tail->next = p;
    else
        call->q_head = p;
    call->q_tail = p;
    p = NULL;
    pump_locked(call);
    ret = 0;

 cleanup:
    pthread_mutex_unlock(&call->mu);
    if (p) {
        grpc_byte_buffer_destroy(p->bb);
        free(p);
    }
    return ret;
}

int sg_call_send(struct sg_call *call, const ProtobufCMessage *msg)
{
    return send_bb(call, pack(msg));
}

int sg_call_send_shared(struct sg_call *call, const void *data, size_t len,
                        void (*release)(void *arg), void *arg)
{
    /* The slice borrows data; the core calls release when its last
       reference (ours, the byte buffer's, the transport's) goes. */
    grpc_slice s = grpc_slice_new_with_user_data((void *)data, len, release,
                                                 arg);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);

    grpc_slice_unref(s);
    return send_bb(call, bb);
}

void sg_call_set_on_cancel(struct sg_call *call,
                           void (*cancelled)(struct sg_call *call))
{
    call->on_cancel = cancelled;
}

void sg_call_set_on_sent(struct sg_call *call,
                         void (*sent)(struct sg_call *call, bool ok))
{
    call->on_sent = sent;
}

void sg_call_send_initial_metadata(struct sg_call *call)
{
    grpc_op op;

    pthread_mutex_lock(&call->mu);
    if (!call->finish_requested && !call->cancelled &&
        add_initial_md_op_locked(call, &op))
        start_batch_locked(call, &op, 1, &call->tag_md);
    pthread_mutex_unlock(&call->mu);
}

void sg_call_abort(struct sg_call *call, grpc_status_code code,
                   const char *message)
{
    bool go;

    pthread_mutex_lock(&call->mu);
    go = !call->finish_requested && !call->cancelled;
    if (go) {
        /* Nothing else may be sent, and the close that follows is our
           doing, not the client's: the access log shows code. */
        call->finish_requested = true;
        call->status_started = true;
        call->status_code = code;
        drop_queue_locked(call);
    }
    pthread_mutex_unlock(&call->mu);
    /* The core sends the status in trailers at once, ahead of any message
       still waiting for flow control, and resets the stream. */
    if (go)
        grpc_call_cancel_with_status(call->call, code, message, NULL);
}

/* Record the status to send. Returns false if the call already finished. */
static bool set_status_locked(struct sg_call *call, grpc_status_code code,
                              const char *message, grpc_slice *details)
{
    if (call->finish_requested)
        return false;
    call->finish_requested = true;
    call->status_code = code;
    if (message && *message)
        call->status_slice = grpc_slice_from_copied_string(message);
    if (details) {
        call->trailing[0].key =
            grpc_slice_from_static_string("grpc-status-details-bin");
        call->trailing[0].value = *details;
        call->n_trailing = 1;
    }
    return true;
}

/* Send bb (owned) and status OK. */
static void reply_bb(struct sg_call *call, grpc_byte_buffer *bb)
{
    grpc_op ops[4];
    size_t n;

    pthread_mutex_lock(&call->mu);
    if (call->q_head || call->send_busy) {
        /* A stream with messages still queued: keep the order. */
        pthread_mutex_unlock(&call->mu);
        if (send_bb(call, bb) == 0)
            sg_call_finish(call, GRPC_STATUS_OK, NULL);
        return;
    }
    if (call->cancelled || !set_status_locked(call, GRPC_STATUS_OK, NULL,
                                              NULL)) {
        pthread_mutex_unlock(&call->mu);
        grpc_byte_buffer_destroy(bb);
        return;
    }
    /* The common unary case: metadata, message and status in one batch. */
    call->send_bb = bb;
    n = add_initial_md_op_locked(call, &ops[0]);
    n += add_message_op(&ops[n], call->send_bb);
    fill_status_op_locked(call, &ops[n++]);
    n += add_close_op_locked(call, &ops[n]);
    call->status_started = true;
    start_batch_locked(call, ops, n, &call->tag_status);
    pthread_mutex_unlock(&call->mu);
}

void sg_call_reply(struct sg_call *call, const ProtobufCMessage *msg)
{
    reply_bb(call, pack(msg));
}

void sg_call_reply_bytes(struct sg_call *call, const void *data, size_t len)
{
    reply_bb(call, copy_bytes(data, len));
}

static void finish_with(struct sg_call *call, grpc_status_code code,
                        const char *message, grpc_slice *details)
{
    pthread_mutex_lock(&call->mu);
    if (!set_status_locked(call, code, message, details)) {
        pthread_mutex_unlock(&call->mu);
        if (details)
            grpc_slice_unref(*details);
        return;
    }
    if (call->cancelled)
        drop_queue_locked(call);
    pump_locked(call);
    pthread_mutex_unlock(&call->mu);
}

void sg_call_finish(struct sg_call *call, grpc_status_code code,
                    const char *message)
{
    finish_with(call, code, message, NULL);
}

void sg_call_fail(struct sg_call *call, const struct sg_error *err)
{
    grpc_slice details;
    int has_details = sg_status_details(err, &details);

    /* The client sees a fixed text; the detail goes to the log. */
    if (sg_status_is_internal(err->code))
        SG_ERROR("%s: %s", sg_call_method(call) ? sg_call_method(call)->path
                                                : "unknown method",
                 err->message);
    finish_with(call, sg_status_code(err->code), sg_status_message(err),
                has_details == 1 ? &details : NULL);
}

bool sg_call_is_cancelled(const struct sg_call *call)
{
    struct sg_call *c = (struct sg_call *)call;
    bool ret;

    pthread_mutex_lock(&c->mu);
    ret = c->cancelled;
    pthread_mutex_unlock(&c->mu);
    return ret;
}

void sg_call_set_data(struct sg_call *call, void *data)
{
    call->data = data;
}

void sg_call_set_data_owned(struct sg_call *call, void *data,
                            void (*free_fn)(void *data))
{
    call->data = data;
    call->data_free = free_fn;
}

void *sg_call_get_data(const struct sg_call *call)
{
    return call->data;
}

void *sg_call_app_data(const struct sg_call *call)
{
    return sg_server_app_data(call->server);
}

const struct sg_method *sg_call_method(const struct sg_call *call)
{
    return call->rm ? call->rm->method : NULL;
}

const char *sg_call_peer(const struct sg_call *call)
{
    struct sg_call *c = (struct sg_call *)call;
    const char *peer;

    /* Allocated on first use: most calls never need it. */
    pthread_mutex_lock(&c->mu);
    if (!c->peer)
        c->peer = grpc_call_get_peer(c->call);
    peer = c->peer ? c->peer : "";
    pthread_mutex_unlock(&c->mu);
    return peer;
}

const char *sg_call_metadata(const struct sg_call *call, const char *key,
                             size_t *len)
{
    size_t klen = strlen(key);

    for (size_t i = 0; i < call->md.count; i++) {
        const grpc_metadata *m = &call->md.metadata[i];
        if (GRPC_SLICE_LENGTH(m->key) == klen &&
            memcmp(GRPC_SLICE_START_PTR(m->key), key, klen) == 0) {
            *len = GRPC_SLICE_LENGTH(m->value);
            return (const char *)GRPC_SLICE_START_PTR(m->value);
        }
    }
    return NULL;
}

const grpc_auth_context *sg_call_auth_context(const struct sg_call *call)
{
    struct sg_call *c = (struct sg_call *)call;
    grpc_auth_context *ac;

    pthread_mutex_lock(&c->mu);
    if (!c->auth)
        c->auth = grpc_call_auth_context(c->call);
    ac = c->auth;
    pthread_mutex_unlock(&c->mu);
    return ac;
}

const struct sg_identity *sg_call_identity(const struct sg_call *call)
{
    return call->identity;
}

const struct sg_policy *sg_call_policy(const struct sg_call *call)
{
    return call->policy;
}

void sg_call_set_auth(struct sg_call *call, struct sg_identity *id,
                      struct sg_policy *policy)
{
    sg_identity_unref(call->identity);
    sg_policy_unref(call->policy);
    call->identity = id;
    call->policy = policy;
}

gpr_timespec sg_call_deadline(const struct sg_call *call)
{
    return gpr_convert_clock_type(call->deadline, GPR_CLOCK_MONOTONIC);
}

void sg_call_set_initial_metadata(struct sg_call *call,
                                  const grpc_metadata *md, size_t n)
{
    pthread_mutex_lock(&call->mu);
    if (!call->initial_md_sent) {
        call->initial_md = md;
        call->n_initial_md = n;
    }
    pthread_mutex_unlock(&call->mu);
}

/*
 * Run on_cancel once, outside the lock, and never while on_start runs: a
 * handler that registers the call in on_start must see on_cancel after it.
 */
static void notify_cancel(struct sg_call *call)
{
    bool notify = false;

    pthread_mutex_lock(&call->mu);
    if (call->in_start) {
        call->cancel_pending = true;
    } else if (!call->cancel_notified) {
        call->cancel_notified = true;
        /* No handler ran yet, so there is none to tell; resume sees
           the cancellation and never starts one. */
        notify = call->rm && !call->auth_pending &&
                 (call->rm->method->on_cancel || call->on_cancel);
    }
    pthread_mutex_unlock(&call->mu);
    if (notify && call->rm->method->on_cancel)
        call->rm->method->on_cancel(call);
    if (notify && call->on_cancel)
        call->on_cancel(call);
}

void sg_call_end_for_shutdown(struct sg_call *call)
{
    notify_cancel(call);
    sg_call_finish(call, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
}

void sg_call_expire(struct sg_call *call)
{
    grpc_call_cancel_with_status(call->call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                 "server default deadline exceeded", NULL);
}

static ProtobufCMessage *decode(const ProtobufCMessageDescriptor *desc,
                                grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader rd;
    grpc_slice s;
    ProtobufCMessage *msg;

    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return NULL;
    s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s),
                                    GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return msg;
}

static void start_recv(struct sg_call *call)
{
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &call->recv_buf;
    pthread_mutex_lock(&call->mu);
    if (!call->finish_requested && !call->cancelled)
        start_batch_locked(call, &op, 1, &call->tag_recv);
    pthread_mutex_unlock(&call->mu);
}

static void fail_decode(struct sg_call *call)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "cannot parse request as %s",
             call->rm->method->request->name);
    sg_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, msg);
}

static void run_on_start(struct sg_call *call, const ProtobufCMessage *req)
{
    bool pending;

    pthread_mutex_lock(&call->mu);
    call->in_start = true;
    pthread_mutex_unlock(&call->mu);
    call->rm->method->on_start(call, req);
    pthread_mutex_lock(&call->mu);
    call->in_start = false;
    pending = call->cancel_pending;
    pthread_mutex_unlock(&call->mu);
    if (pending)
        notify_cancel(call);
}

/* The part of dispatch after authentication. */
static void dispatch_authenticated(struct sg_call *call)
{
    const struct sg_method *m = call->rm->method;
    ProtobufCMessage *req;

    if (!m->on_start) {
        sg_call_finish(call, GRPC_STATUS_UNIMPLEMENTED,
                       "method not implemented yet");
        return;
    }
    if (m->kind == SG_METHOD_BIDI_STREAM) {
        run_on_start(call, NULL);
        start_recv(call);
        return;
    }
    if (!call->payload) {
        sg_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "request message missing");
        return;
    }
    req = decode(m->request, call->payload);
    grpc_byte_buffer_destroy(call->payload);
    call->payload = NULL;
    if (!req) {
        fail_decode(call);
        return;
    }
    if (sg_log_enabled(&sg_log_self, SG_LOG_DEBUG)) {
        struct sg_buf b = SG_BUF_INIT;
        sg_descriptors_format_redacted(&b, req);
        SG_DEBUG("%s %s", m->path, sg_buf_str(&b));
        sg_buf_free(&b);
    }
    run_on_start(call, req);
    protobuf_c_message_free_unpacked(req, NULL);
}

static void dispatch(struct sg_call *call)
{
    int rc;

    if (sg_server_draining(call->server)) {
        /* Retryable elsewhere, unlike the core's CANCELLED after GOAWAY. */
        sg_call_finish(call, GRPC_STATUS_UNAVAILABLE,
                       "server is shutting down");
        return;
    }
    if (!call->rm) {
        sg_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
        return;
    }
    /* Authenticate before anything else, unbuilt methods included. */
    pthread_mutex_lock(&call->mu);
    call->auth_pending = true;
    pthread_mutex_unlock(&call->mu);
    rc = sg_server_run_auth(call->server, call,
                            call->rm->method->on_start != NULL);
    if (rc > 0)
        return; /* the hook resumes it (sg_call_auth_resume) */
    pthread_mutex_lock(&call->mu);
    call->auth_pending = false;
    pthread_mutex_unlock(&call->mu);
    if (rc == 0)
        dispatch_authenticated(call);
}

void sg_call_auth_resume(struct sg_call *call)
{
    bool go;

    pthread_mutex_lock(&call->mu);
    call->auth_pending = false;
    go = !call->cancelled && !call->finish_requested;
    pthread_mutex_unlock(&call->mu);
    if (go)
        dispatch_authenticated(call);
}

static void on_new(struct sg_tag *tag, bool ok)
{
    struct sg_call *call = SG_CONTAINER_OF(tag, struct sg_call, tag_new);
    grpc_op op;

    if (!ok) {
        /* Server shutting down: the pre-posted request never got a call. */
        sg_call_unref(call);
        return;
    }
    sg_server_rearm(call->server, call->cq, call->rm);

    call->start = gpr_now(GPR_CLOCK_MONOTONIC);
    if (call->rm && call->rm->method->kind == SG_METHOD_UNARY &&
        gpr_time_cmp(call->deadline, gpr_inf_future(call->deadline.clock_type))
            == 0) {
        unsigned ms = sg_server_default_deadline_ms(call->server);
        call->deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                      gpr_time_from_millis(ms, GPR_TIMESPAN));
        call->default_deadline = true;
    }
    sg_server_call_started(call->server, call);

    dispatch(call);

    /* Still open after on_start: watch for cancellation from now on. */
    pthread_mutex_lock(&call->mu);
    if (add_close_op_locked(call, &op))
        start_batch_locked(call, &op, 1, &call->tag_close);
    pthread_mutex_unlock(&call->mu);
    sg_call_unref(call); /* the reference tag_new held */
}

static void on_close(struct sg_tag *tag, bool ok)
{
    struct sg_call *call = SG_CONTAINER_OF(tag, struct sg_call, tag_close);
    bool cancelled;

    pthread_mutex_lock(&call->mu);
    cancelled = call->client_cancelled || !ok;
    /* A call we completed ourselves is not cancelled. */
    if (cancelled && !call->status_started) {
        call->cancelled = true;
        drop_queue_locked(call);
    } else {
        cancelled = false;
    }
    pthread_mutex_unlock(&call->mu);
    if (cancelled)
        notify_cancel(call);
    sg_call_unref(call);
}

static void on_recv(struct sg_tag *tag, bool ok)
{
    struct sg_call *call = SG_CONTAINER_OF(tag, struct sg_call, tag_recv);
    const struct sg_method *m = call->rm->method;
    grpc_byte_buffer *bb = call->recv_buf;
    ProtobufCMessage *msg;

    call->recv_buf = NULL;
    if (!ok || !bb) {
        /* Half-close, or the stream broke (on_close tells which). */
        if (ok)
            m->on_message(call, NULL);
        goto cleanup;
    }
    msg = decode(m->request, bb);
    if (!msg) {
        fail_decode(call);
        goto cleanup;
    }
    m->on_message(call, msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    start_recv(call);

 cleanup:
    if (bb)
        grpc_byte_buffer_destroy(bb);
    sg_call_unref(call);
}

static void on_send(struct sg_tag *tag, bool ok)
{
    struct sg_call *call = SG_CONTAINER_OF(tag, struct sg_call, tag_send);

    pthread_mutex_lock(&call->mu);
    grpc_byte_buffer_destroy(call->send_bb);
    call->send_bb = NULL;
    call->send_busy = false;
    if (!ok) {
        /* The stream is gone; the status send below is harmless. */
        drop_queue_locked(call);
    }
    pump_locked(call);
    pthread_mutex_unlock(&call->mu);
    /* Unlocked, so that the handler may send its next message. */
    if (call->on_sent)
        call->on_sent(call, ok);
    sg_call_unref(call);
}

static void on_status(struct sg_tag *tag, bool ok)
{
    struct sg_call *call = SG_CONTAINER_OF(tag, struct sg_call, tag_status);

    sg_call_unref(call);
}

static void on_md(struct sg_tag *tag, bool ok)
{
    struct sg_call *call = SG_CONTAINER_OF(tag, struct sg_call, tag_md);

    sg_call_unref(call);
}
