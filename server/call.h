/*
 * call.h: the per-call context and the contract between the gRPC transport
 * (server/server.c) and method handlers (server/svc_*.c).
 *
 * A handler module exports a table of struct sg_method. The transport
 * decodes the request with protobuf-c, then calls on_start on a
 * completion-queue thread. Handlers must not block on I/O: a handler that
 * needs slow work takes a reference (sg_call_ref), hands the call to the
 * libuv loop or another owner, and completes it later from any thread.
 *
 * Completing a call:
 *   unary          sg_call_reply(call, msg) or sg_call_fail(call, err)
 *   server stream  sg_call_send(call, msg)* then sg_call_finish(...)
 *   bidi stream    on_message for each message (NULL at half-close);
 *                  sg_call_send()* and one sg_call_finish(...)
 * Sends are queued and written in order, one at a time; sg_call_finish
 * sends the status after every queued message has been written. Exactly
 * one finish per call; later sends and finishes are ignored (return -1).
 * A stream that must bound what it buffers (a slow consumer) keeps its own
 * queue instead: it feeds the call one message at a time, each written
 * message reported to its sg_call_set_on_sent callback, and ends with
 * sg_call_abort when it gives up, which does not wait for messages the
 * consumer never read.
 *
 * Cancellation: when the client cancels, the deadline passes, the connection
 * drops or the server shuts down, on_cancel runs once (on any thread).
 * The handler must then stop producing and drop its references; finishing a
 * cancelled call is allowed and does nothing.
 *
 * OWNERSHIP: the transport owns the call. on_start's request message is
 * borrowed for the duration of on_start only. Messages given to
 * sg_call_send/sg_call_reply are borrowed (packed before return).
 * A handler that keeps the call past on_start holds a reference
 * (sg_call_ref) and drops it with sg_call_unref.
 *
 * THREAD SAFETY: every sg_call_* function may be called from any thread.
 * on_start, on_message and on_cancel are never run concurrently with each
 * other for the same call, except that on_cancel may run while the handler
 * is working on the call from its own thread.
 */
#ifndef SG_SERVER_CALL_H
#define SG_SERVER_CALL_H

#include "internal.h"
#include "error.h"
#include "identity.h"
#include "policy.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <protobuf-c/protobuf-c.h>

struct sg_call;

enum sg_method_kind {
    SG_METHOD_UNARY = 0,
    SG_METHOD_SERVER_STREAM,
    SG_METHOD_BIDI_STREAM,
};

struct sg_method {
    /* Full path, "/package.Service/Method". */
    const char *path;
    enum sg_method_kind kind;
    /* Descriptor of the request message type. */
    const ProtobufCMessageDescriptor *request;
    /*
     * Unary and server stream: called with the decoded request.
     * Bidi: called with req == NULL when the call starts.
     * NULL handler: the method answers UNIMPLEMENTED.
     */
    void (*on_start)(struct sg_call *call, const ProtobufCMessage *req);
    /* Bidi only: each received message, then NULL once at half-close. */
    void (*on_message)(struct sg_call *call, const ProtobufCMessage *msg);
    /* Optional: the call was cancelled (see above). */
    void (*on_cancel)(struct sg_call *call);
};

/* A group of methods served together (one proto service). */
struct sg_service {
    const char *name; /* "grpc.health.v1.Health" */
    const struct sg_method *methods;
    size_t n_methods;
};

void sg_call_ref(struct sg_call *call);
void sg_call_unref(struct sg_call *call);

/* Queue one message. Returns 0, or -1 if the call is finished/cancelled. */
int sg_call_send(struct sg_call *call, const ProtobufCMessage *msg);

/*
 * Queue len bytes at data, an already serialized message, without copying
 * them (one packed message shared by many streams). The transport keeps
 * data until the message has been written and then calls release(arg)
 * once, on any thread; also when the call is already finished (then -1
 * is returned and release may run before return).
 */
int sg_call_send_shared(struct sg_call *call, const void *data, size_t len,
                        void (*release)(void *arg), void *arg);

/*
 * sent(call, ok) runs once for every message whose write completed (ok
 * false: the stream broke first), on a completion-queue thread, with no
 * lock of the call held, so it may send the next message. Set it in
 * on_start, before the first send.
 */
void sg_call_set_on_sent(struct sg_call *call,
                         void (*sent)(struct sg_call *call, bool ok));

/*
 * A cancellation callback of this call, beside the method's on_cancel and
 * with the same guarantees (once, never while on_start runs). Set it in
 * on_start, for handlers whose need for it depends on the request.
 */
void sg_call_set_on_cancel(struct sg_call *call,
                           void (*cancelled)(struct sg_call *call));

/*
 * Send the initial metadata now rather than with the first message: a
 * stream that may stay silent for long tells its client it is set up.
 * Does nothing once it went out or the call is finished.
 */
void sg_call_send_initial_metadata(struct sg_call *call);

/*
 * End the call now with code and message (not NULL): messages still queued
 * or being written are dropped, and the status reaches the client in the
 * trailers ahead of them, even when flow control holds them back (a
 * consumer that stopped reading). What the client had already received
 * stays delivered. Like a finish: later sends and finishes are ignored,
 * and on_cancel does not run because of it.
 */
void sg_call_abort(struct sg_call *call, grpc_status_code code,
                   const char *message);

/* Send msg and status OK (unary). */
void sg_call_reply(struct sg_call *call, const ProtobufCMessage *msg);
/*
 * The same with the response already serialized (len bytes at data,
 * copied before return): for records stored packed, which need no decode
 * and re-encode to be answered.
 */
void sg_call_reply_bytes(struct sg_call *call, const void *data, size_t len);

/* End the call with a status; message may be NULL. */
void sg_call_finish(struct sg_call *call, grpc_status_code code,
                    const char *message);

/*
 * End the call with the status that server/status.c maps err to, including
 * google.rpc.Status details for field violations. err is left untouched.
 */
void sg_call_fail(struct sg_call *call, const struct sg_error *err);

/* True once the call was cancelled (client, deadline, connection, shutdown). */
bool sg_call_is_cancelled(const struct sg_call *call);

/* Handler-private pointer (not freed by the transport). */
void sg_call_set_data(struct sg_call *call, void *data);
/*
 * The same, freed with free_fn(data) when the call context is freed (after
 * every callback of the call has returned and the last reference is gone):
 * state that callbacks on other threads may still reach while the call
 * lives.
 */
void sg_call_set_data_owned(struct sg_call *call, void *data,
                            void (*free_fn)(void *data));
void *sg_call_get_data(const struct sg_call *call);

/* The server's application context (sg_server_set_app_data). */
void *sg_call_app_data(const struct sg_call *call);

/* The method being served. Borrowed; lives as long as the server. */
const struct sg_method *sg_call_method(const struct sg_call *call);

/*
 * Initial metadata to send with the first response (e.g. a version header).
 * md is borrowed and must outlive the call (use static arrays). Ignored once
 * the initial metadata has gone out.
 */
void sg_call_set_initial_metadata(struct sg_call *call,
                                  const grpc_metadata *md, size_t n);

/* Peer address, e.g. "ipv4:127.0.0.1:5000". Borrowed; lives with the call. */
const char *sg_call_peer(const struct sg_call *call);

/*
 * First value of request metadata key (lower-case). Returns a pointer into
 * the call's metadata (NOT NUL-terminated) and its length, or NULL.
 */
const char *sg_call_metadata(const struct sg_call *call, const char *key,
                             size_t *len);

/* Auth context of the connection (TLS peer). Borrowed; may be NULL. */
const grpc_auth_context *sg_call_auth_context(const struct sg_call *call);

/*
 * The authenticated caller and the policy it is judged by, set by the
 * server's authentication hook before on_start (sg_server_set_auth).
 * NULL for methods that need no credential (health, reflection) and on
 * servers without a hook. Borrowed; they live as long as the call.
 */
const struct sg_identity *sg_call_identity(const struct sg_call *call);
const struct sg_policy *sg_call_policy(const struct sg_call *call);
/* For the hook: attach both (the call takes over the references). */
void sg_call_set_auth(struct sg_call *call, struct sg_identity *id,
                      struct sg_policy *policy);
/*
 * For a hook that returned 1: go on with the call (decode, handler) on
 * this thread. Does nothing when the call was cancelled or finished
 * meanwhile; its handler then never runs (nor its on_cancel).
 */
void sg_call_auth_resume(struct sg_call *call);

/* Call deadline as a gpr_timespec in GPR_CLOCK_MONOTONIC. */
gpr_timespec sg_call_deadline(const struct sg_call *call);

#endif /* SG_SERVER_CALL_H */
