/*
 * transport.h: what call.c and server.c share. Not for handlers (they use
 * call.h) and not installed.
 *
 * A completion-queue tag is a struct sg_tag embedded in the object it
 * concerns; the CQ thread calls tag->fn(tag, ok).
 */
#ifndef SG_SERVER_TRANSPORT_H
#define SG_SERVER_TRANSPORT_H

#include "call.h"
#include "server.h"

#include <pthread.h>
#include <stdatomic.h>

struct sg_tag {
    void (*fn)(struct sg_tag *tag, bool ok);
};

#define SG_CONTAINER_OF(ptr, type, member)                                     \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* One method registered on the grpc_server, on one completion queue. */
struct sg_registered_method {
    const struct sg_method *method;
    void *handle; /* from grpc_server_register_method */
};

struct sg_pending_send;

struct sg_call {
    atomic_int refs;
    struct sg_server *server;
    grpc_completion_queue *cq;
    const struct sg_registered_method *rm; /* NULL: generic (unknown) */

    /* Filled by request_call / request_registered_call. */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details; /* generic only */
    grpc_byte_buffer *payload; /* registered unary/server stream */

    int client_cancelled; /* out parameter of RECV_CLOSE_ON_SERVER */
    grpc_byte_buffer *recv_buf;

    struct sg_tag tag_new;
    struct sg_tag tag_close;
    struct sg_tag tag_recv;
    struct sg_tag tag_send;
    struct sg_tag tag_status;
    struct sg_tag tag_md; /* initial metadata sent on its own */

    void *data;
    void (*data_free)(void *data);  /* runs when the context is freed */
    void (*on_sent)(struct sg_call *call, bool ok);
    void (*on_cancel)(struct sg_call *call); /* per call, beside the method's */
    struct sg_identity *identity; /* set before on_start, then read-only */
    struct sg_policy *policy;
    gpr_timespec start;
    bool default_deadline; /* deadline was set by the server, not the client */

    /* Live-call list of the server, guarded by the server's list lock. */
    struct sg_call *prev;
    struct sg_call *next;

    pthread_mutex_t mu; /* guards everything below */
    char *peer;         /* allocated on first use */
    grpc_auth_context *auth;
    const grpc_metadata *initial_md;
    size_t n_initial_md;
    struct sg_pending_send *q_head;
    struct sg_pending_send *q_tail;
    grpc_byte_buffer *send_bb; /* in flight */
    bool send_busy;
    bool initial_md_sent;
    bool close_started; /* RECV_CLOSE_ON_SERVER is under way */
    bool finish_requested; /* the status is queued or sent */
    bool status_started;
    bool cancelled;
    bool cancel_notified;
    bool in_start;       /* on_start is running */
    bool auth_pending;   /* the auth hook deferred; no handler has run */
    bool cancel_pending; /* on_cancel deferred until on_start returns */
    grpc_status_code status_code;
    grpc_slice status_slice;
    grpc_metadata trailing[1];
    size_t n_trailing;
};

/*
 * Allocate a context to pre-post on cq for rm (NULL: generic). The context
 * starts with one reference, owned by its tag_new until it fires.
 */
struct sg_call *sg_call_new(struct sg_server *srv, grpc_completion_queue *cq,
                            const struct sg_registered_method *rm);

/*
 * Server-initiated end of a stream (shutdown): notify the handler as if
 * cancelled, then finish with UNAVAILABLE after the queued messages.
 */
void sg_call_end_for_shutdown(struct sg_call *call);

/* Cancel a call whose server default deadline passed. */
void sg_call_expire(struct sg_call *call);

/*
 * Take a reference unless the count already reached zero (the context is
 * being freed and only waits to leave the live list). For code that finds
 * calls through the live list.
 */
bool sg_call_try_ref(struct sg_call *call);

/*
 * server.c hooks for call.c. A started call is linked into the live list
 * and counted; when it is freed it is first unlinked (nothing can find it
 * any more), then its grpc_call is released, and only then is it uncounted,
 * which is what the shutdown sequence waits for.
 */
void sg_server_rearm(struct sg_server *srv, grpc_completion_queue *cq,
                     const struct sg_registered_method *rm);
void sg_server_call_started(struct sg_server *srv, struct sg_call *call);
void sg_server_call_unlink(struct sg_server *srv, struct sg_call *call);
void sg_server_call_done(struct sg_server *srv);
unsigned sg_server_default_deadline_ms(const struct sg_server *srv);
/* The access log is on (log.access_log; a filter can still silence it). */
bool sg_server_access_log(const struct sg_server *srv);
/* Run the authentication hook (0 when none is set). On -1 the hook has
   finished the call; on 1 it resumes it later (sg_call_auth_resume).
   handled: the method has a handler. */
int sg_server_run_auth(struct sg_server *srv, struct sg_call *call,
                       bool handled);
/* True once shutdown began: new calls are answered UNAVAILABLE. */
bool sg_server_draining(const struct sg_server *srv);

#endif /* SG_SERVER_TRANSPORT_H */
