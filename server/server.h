/*
 * server.h: the gRPC transport of the gateway.
 *
 * One grpc_server with every configured listener, N completion queues each
 * drained by its own thread, every method of every service in services.h
 * registered (so the first request payload arrives with the call), and a
 * generic request kept posted so unknown methods answer UNIMPLEMENTED at once.
 *
 * Lifecycle, all on the thread that runs `loop`:
 *   sg_server_new -> sg_server_start -> ... -> sg_server_shutdown(done_cb)
 *   -> done_cb runs on the loop once every call, thread and queue is gone
 *   -> sg_server_free.
 *
 * Shutdown: stop accepting; end every open stream with UNAVAILABLE; let unary
 * calls finish until drain_timeout_ms, then cancel what is left.
 *
 * OWNERSHIP: the caller owns the server and the loop; the loop must outlive
 * the server. cfg is read during sg_server_new only.
 * THREAD SAFETY: the functions here run on the loop thread only, except
 * sg_server_set_access_log (any thread).
 */
#ifndef SG_SERVER_SERVER_H
#define SG_SERVER_SERVER_H

#include "internal.h"
#include "error.h"
#include "server_config.h"
#include "call.h"

#include <uv.h>

struct sg_server;

/*
 * services: NULL-terminated table to serve (the daemon passes sg_services
 * from services.h; tests pass their own). Borrowed; must outlive the server.
 */
struct sg_server *sg_server_new(const struct sg_config *cfg,
                                const struct sg_service *const *services,
                                uv_loop_t *loop, struct sg_error *err);

/* Bind every listener and start serving. Returns 0 or -1 with err set. */
int sg_server_start(struct sg_server *srv, struct sg_error *err)
    SG_WARN_UNUSED_RESULT;

/* Begin graceful shutdown; done_cb(opaque) runs on the loop when finished. */
void sg_server_shutdown(struct sg_server *srv, void (*done_cb)(void *opaque),
                        void *opaque);

/*
 * Re-read the TLS certificate and key files of every TLS listener (the
 * paths it started with); new handshakes use them, established connections
 * keep theirs. Returns 0, or -1 with err set (the old certificates stay in
 * use).
 */
int sg_server_reload_tls(struct sg_server *srv, struct sg_error *err);

void sg_server_set_access_log(struct sg_server *srv, bool on);

/*
 * The application's context for handlers (the sandbox service, its store
 * and driver), reached from a call with sg_call_app_data(). Set it before
 * sg_server_start; borrowed, it must outlive the server.
 */
void sg_server_set_app_data(struct sg_server *srv, void *data);

/*
 * The authentication hook, run on the CQ thread for every call of a
 * registered method before its handler (and before an unbuilt method's
 * UNIMPLEMENTED). It attaches the caller with sg_call_set_auth and returns
 * 0, or finishes the call itself and returns -1, or returns 1 when it
 * must wait (a remote check): it then holds a call reference and later,
 * from any thread, either finishes the call or attaches the caller and
 * calls sg_call_auth_resume. handled says whether the method has a
 * handler. Set it before sg_server_start.
 */
typedef int (*sg_server_auth_fn)(void *opaque, struct sg_call *call,
                                 bool handled);
void sg_server_set_auth(struct sg_server *srv, sg_server_auth_fn fn,
                        void *opaque);
void *sg_server_app_data(const struct sg_server *srv);

/* The port bound for listener i (useful with port 0), or 0 for unix. */
int sg_server_bound_port(const struct sg_server *srv, size_t i);

void sg_server_free(struct sg_server *srv); /* NULL-safe; after done_cb */

#endif /* SG_SERVER_SERVER_H */
