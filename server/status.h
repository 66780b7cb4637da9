/*
 * status.h: the one mapping from sandgate errors to gRPC statuses.
 *
 * Every handler failure goes through here (via sg_call_fail), so the code
 * chosen for each kind of error, and what the client may learn from its
 * message, is decided in one table.
 *
 * THREAD SAFETY: all functions are pure or thread-safe.
 */
#ifndef SG_SERVER_STATUS_H
#define SG_SERVER_STATUS_H

#include "internal.h"
#include "error.h"

#include <grpc/grpc.h>

/* The gRPC code for an error code. */
grpc_status_code sg_status_code(enum sg_err_code code);

/*
 * True for errors the client must not learn the detail of (I/O,
 * configuration, memory, bugs): sg_status_message hides their message.
 */
bool sg_status_is_internal(enum sg_err_code code);

/* "OK", "INVALID_ARGUMENT", ... as in the gRPC specification. */
const char *sg_status_name(grpc_status_code code);

/*
 * The message the client sees for err: err->message for errors about the
 * request, a fixed text for internal ones (whose detail only goes to the
 * server log). Borrowed from err or static.
 */
const char *sg_status_message(const struct sg_error *err);

/*
 * The serialized google.rpc.Status for err, with a google.rpc.BadRequest
 * detail when err has field violations; for the grpc-status-details-bin
 * trailer. Returns 1 and sets *out (caller unrefs), 0 when there is nothing
 * to add, -1 when out of memory.
 */
int sg_status_details(const struct sg_error *err, grpc_slice *out);

#endif /* SG_SERVER_STATUS_H */
