/*
 * rpc.c: blocking call helpers for sgctl (see sgctl.h).
 *
 * Each helper runs one call on the context's completion queue and waits in
 * short slices so that Ctrl-C can cancel the call; the call is never
 * abandoned: every started batch is waited for before the call is unref'd.
 */
#include "internal.h"

#include "sgctl.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

/* How often a waiting loop looks at the interrupt flag. */
#define POLL_SLICE_MS 200

static volatile sig_atomic_t interrupt_flag;

static void on_signal(int sig)
{
    (void)sig;
    interrupt_flag = 1;
}

void sgctl_signals_init(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool sgctl_interrupted(void)
{
    return interrupt_flag != 0;
}

void sgctl_result_init(struct sgctl_result *res)
{
    memset(res, 0, sizeof(*res));
    res->status = GRPC_STATUS_UNKNOWN;
    grpc_metadata_array_init(&res->initial_md);
    grpc_metadata_array_init(&res->trailing_md);
}

void sgctl_result_free(struct sgctl_result *res)
{
    if (res == NULL)
        return;
    grpc_metadata_array_destroy(&res->initial_md);
    grpc_metadata_array_destroy(&res->trailing_md);
    free(res->details);
    free(res->msg);
    memset(res, 0, sizeof(*res));
}

char *sgctl_result_md_get(const struct sgctl_result *res, const char *key)
{
    size_t klen = strlen(key);

    for (size_t i = 0; i < res->initial_md.count; i++) {
        grpc_slice k = res->initial_md.metadata[i].key;

        if (GRPC_SLICE_LENGTH(k) == klen &&
            memcmp(GRPC_SLICE_START_PTR(k), key, klen) == 0)
            return tool_slice_dup(res->initial_md.metadata[i].value);
    }
    return NULL;
}

int sgctl_report_status(const struct sgctl_result *res, const char *what)
{
    if (res->interrupted) {
        tool_err("%s: interrupted", what);
        return TOOL_EXIT_INTERRUPTED;
    }
    tool_err("%s: %s (%d): %s", what, tool_status_name(res->status),
             (int)res->status, res->details != NULL ? res->details : "");
    return TOOL_EXIT_RPC_BASE + (int)res->status;
}

void sgctl_ctx_clear(struct sgctl_ctx *ctx)
{
    if (ctx == NULL)
        return;
    if (ctx->channel != NULL)
        grpc_channel_destroy(ctx->channel);
    ctx->channel = NULL;
    if (ctx->cq != NULL) {
        grpc_event ev;

        grpc_completion_queue_shutdown(ctx->cq);
        do {
            ev = grpc_completion_queue_next(
                ctx->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        } while (ev.type != GRPC_QUEUE_SHUTDOWN);
        grpc_completion_queue_destroy(ctx->cq);
    }
    ctx->cq = NULL;
}

static int ensure_channel(struct sgctl_ctx *ctx)
{
    if (ctx->channel != NULL)
        return 0;
    ctx->channel = tool_channel_new(&ctx->conn, NULL, 0);
    if (ctx->channel == NULL)
        return -1;
    ctx->cq = grpc_completion_queue_create_for_next(NULL);
    return 0;
}

static gpr_timespec deadline_after(double seconds)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis((int64_t)(seconds * 1000.0),
                                             GPR_TIMESPAN));
}

/*
 * Wait for the next completion, waking every POLL_SLICE_MS to cancel the
 * call once if a signal arrived. Returns the tag and sets *ok.
 */
static void *wait_tag(struct sgctl_ctx *ctx, grpc_call *call,
                      struct sgctl_result *res, bool *ok)
{
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            ctx->cq, deadline_after(POLL_SLICE_MS / 1000.0), NULL);

        if (ev.type == GRPC_OP_COMPLETE) {
            *ok = ev.success != 0;
            return ev.tag;
        }
        if (sgctl_interrupted() && !res->interrupted) {
            res->interrupted = true;
            grpc_call_cancel(call, NULL);
        }
    }
}

/* Copy a received byte buffer (which may have several slices). */
static int take_message(grpc_byte_buffer *bb, unsigned char **out,
                        size_t *len)
{
    grpc_byte_buffer_reader rd;
    grpc_slice s;
    unsigned char *p;

    if (!grpc_byte_buffer_reader_init(&rd, bb)) {
        tool_err("cannot read the response message");
        return -1;
    }
    s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    /* +1: never malloc(0), so an empty message is still non-NULL. */
    p = malloc(GRPC_SLICE_LENGTH(s) + 1);
    if (p == NULL) {
        grpc_slice_unref(s);
        tool_err("out of memory");
        return -1;
    }
    memcpy(p, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
    *len = GRPC_SLICE_LENGTH(s);
    *out = p;
    grpc_slice_unref(s);
    return 0;
}

static int set_details(struct sgctl_result *res, grpc_slice details)
{
    free(res->details);
    res->details = tool_slice_dup(details);
    if (res->details == NULL) {
        tool_err("out of memory");
        return -1;
    }
    tool_sanitize(res->details);
    return 0;
}

/*
 * Create a call of method with its request buffer, and fill ops[0..3]
 * with the opening batch: metadata (the bearer token, if any), the
 * message, half-close and the server's initial metadata. The caller owns
 * *call and *send_bb.
 */
static void open_call(struct sgctl_ctx *ctx, const char *method,
                      gpr_timespec deadline, const void *req, size_t req_len,
                      grpc_metadata *auth, size_t n_md,
                      struct sgctl_result *res, grpc_call **call,
                      grpc_byte_buffer **send_bb, grpc_op ops[4])
{
    grpc_slice m = grpc_slice_from_static_string(method);
    grpc_slice s = grpc_slice_from_copied_buffer(req, req_len);

    *call = grpc_channel_create_call(ctx->channel, NULL,
                                     GRPC_PROPAGATE_DEFAULTS, ctx->cq, m,
                                     NULL, deadline, NULL);
    *send_bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);

    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = n_md;
    ops[0].data.send_initial_metadata.metadata = n_md > 0 ? auth : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = *send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata =
        &res->initial_md;
}

/* Release what open_call and the batches left; every argument may be
 * NULL or empty. */
static void close_call(grpc_call *call, grpc_byte_buffer *send_bb,
                       grpc_byte_buffer *recv_bb, grpc_slice details,
                       grpc_metadata *auth, size_t n_md)
{
    if (recv_bb != NULL)
        grpc_byte_buffer_destroy(recv_bb);
    if (send_bb != NULL)
        grpc_byte_buffer_destroy(send_bb);
    grpc_slice_unref(details);
    if (n_md > 0)
        tool_metadata_clear(auth);
    if (call != NULL)
        grpc_call_unref(call);
}

int sgctl_unary(struct sgctl_ctx *ctx, const char *method,
                const void *req, size_t req_len, struct sgctl_result *res)
{
    grpc_call *call = NULL;
    grpc_byte_buffer *send_bb = NULL;
    grpc_byte_buffer *recv_bb = NULL;
    grpc_slice details = grpc_empty_slice();
    grpc_metadata auth;
    size_t n_md = 0;
    grpc_op ops[6];
    grpc_call_error cerr;
    bool ok = false;
    int ret = -1;

    memset(&auth, 0, sizeof(auth));
    memset(ops, 0, sizeof(ops));
    if (ensure_channel(ctx) < 0)
        goto cleanup;
    n_md = (size_t)tool_auth_metadata(&ctx->conn, &auth);

    open_call(ctx, method, deadline_after(ctx->conn.timeout_s), req, req_len,
              &auth, n_md, res, &call, &send_bb, ops);
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &res->trailing_md;
    ops[5].data.recv_status_on_client.status = &res->status;
    ops[5].data.recv_status_on_client.status_details = &details;

    cerr = grpc_call_start_batch(call, ops, SG_N_ELEMENTS(ops), ops, NULL);
    if (cerr != GRPC_CALL_OK) {
        tool_err("cannot start the call (grpc_call_error %d)", (int)cerr);
        goto cleanup;
    }
    /* The batch holds RECV_STATUS, so it always completes successfully. */
    wait_tag(ctx, call, res, &ok);

    if (set_details(res, details) < 0)
        goto cleanup;
    if (recv_bb != NULL) {
        if (take_message(recv_bb, &res->msg, &res->msg_len) < 0)
            goto cleanup;
        res->have_msg = true;
    }
    ret = 0;

 cleanup:
    close_call(call, send_bb, recv_bb, details, &auth, n_md);
    return ret;
}

/* Tags of the stream's batches; their addresses are the tags. */
enum stream_tag { TAG_START, TAG_MESSAGE, TAG_STATUS, TAG_COUNT };

int sgctl_server_stream(struct sgctl_ctx *ctx, const char *method,
                        const void *req, size_t req_len,
                        sgctl_msg_fn on_msg, void *user,
                        struct sgctl_result *res)
{
    static const char tags[TAG_COUNT] = {0};
    grpc_call *call = NULL;
    grpc_byte_buffer *send_bb = NULL;
    grpc_byte_buffer *recv_bb = NULL;
    grpc_slice details = grpc_empty_slice();
    grpc_metadata auth;
    size_t n_md = 0;
    grpc_op start_ops[4];
    grpc_op msg_op;
    grpc_op status_op;
    bool pending[TAG_COUNT] = {false};
    bool cancelled = false;
    bool start_failed = false;
    gpr_timespec deadline;
    int ret = -1;

    memset(&auth, 0, sizeof(auth));
    memset(start_ops, 0, sizeof(start_ops));
    memset(&msg_op, 0, sizeof(msg_op));
    memset(&status_op, 0, sizeof(status_op));
    if (ensure_channel(ctx) < 0)
        goto cleanup;
    n_md = (size_t)tool_auth_metadata(&ctx->conn, &auth);

    deadline = ctx->conn.timeout_set ? deadline_after(ctx->conn.timeout_s)
                                     : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    open_call(ctx, method, deadline, req, req_len, &auth, n_md, res, &call,
              &send_bb, start_ops);
    status_op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    status_op.data.recv_status_on_client.trailing_metadata = &res->trailing_md;
    status_op.data.recv_status_on_client.status = &res->status;
    status_op.data.recv_status_on_client.status_details = &details;
    msg_op.op = GRPC_OP_RECV_MESSAGE;
    msg_op.data.recv_message.recv_message = &recv_bb;

    /*
     * Three batches (one op of each kind in flight): the start, the status
     * and one message receive, re-armed after each message.
     */
    if (grpc_call_start_batch(call, &status_op, 1,
                              (void *)&tags[TAG_STATUS], NULL) == GRPC_CALL_OK)
        pending[TAG_STATUS] = true;
    if (pending[TAG_STATUS] &&
        grpc_call_start_batch(call, start_ops, SG_N_ELEMENTS(start_ops),
                              (void *)&tags[TAG_START], NULL) == GRPC_CALL_OK)
        pending[TAG_START] = true;
    if (pending[TAG_START] &&
        grpc_call_start_batch(call, &msg_op, 1, (void *)&tags[TAG_MESSAGE],
                              NULL) == GRPC_CALL_OK)
        pending[TAG_MESSAGE] = true;
    if (!pending[TAG_MESSAGE]) {
        tool_err("cannot start the call");
        /* Cancel so that the batches already started complete. */
        grpc_call_cancel(call, NULL);
        cancelled = true;
        start_failed = true;
    }

    while (pending[TAG_START] || pending[TAG_MESSAGE] || pending[TAG_STATUS]) {
        bool ok = false;
        const char *tag = wait_tag(ctx, call, res, &ok);
        size_t which = (size_t)(tag - tags);

        pending[which] = false;
        if (which != TAG_MESSAGE)
            continue;
        if (!ok || recv_bb == NULL)
            continue; /* end of stream; the status tells why */
        {
            unsigned char *data = NULL;
            size_t len = 0;
            int r = take_message(recv_bb, &data, &len);

            grpc_byte_buffer_destroy(recv_bb);
            recv_bb = NULL;
            if (r == 0)
                r = on_msg(user, data, len);
            free(data);
            if (r < 0 && !cancelled) {
                cancelled = true;
                grpc_call_cancel(call, NULL);
            }
        }
        if (!cancelled &&
            grpc_call_start_batch(call, &msg_op, 1, (void *)&tags[TAG_MESSAGE],
                                  NULL) == GRPC_CALL_OK)
            pending[TAG_MESSAGE] = true;
    }

    if (start_failed)
        goto cleanup;
    if (set_details(res, details) < 0)
        goto cleanup;
    ret = 0;

 cleanup:
    close_call(call, send_bb, recv_bb, details, &auth, n_md);
    return ret;
}
