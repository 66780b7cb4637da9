/*
 * error.h: the per-call error record.
 *
 * An error is reported once, where it happens, into a struct sg_error that
 * the caller owns (one per call or per operation, never a thread-local,
 * because gRPC completions hop threads). The function then returns -1 or
 * NULL; callers propagate without reporting again. At the API edge,
 * server/status.c turns the record into a gRPC status exactly once.
 *
 * The first report wins: a later sg_error_report() on an already-set record
 * is ignored, so the deepest cause is the one the caller sees.
 *
 * Messages are single greppable format strings and must never contain
 * secret material (tokens, keys, credential values).
 *
 * THREAD SAFETY: a struct sg_error is used by one thread at a time.
 */
#ifndef SG_ERROR_H
#define SG_ERROR_H

#include "internal.h"

#include <stdarg.h>

enum sg_err_code {
    SG_ERR_OK = 0,
    SG_ERR_INVALID_ARGUMENT,  /* a request or configuration value is bad */
    SG_ERR_NOT_FOUND,         /* absent, or present but not visible */
    SG_ERR_ALREADY_EXISTS,
    SG_ERR_ABORTED,           /* optimistic concurrency conflict */
    SG_ERR_PERMISSION_DENIED,
    SG_ERR_UNAUTHENTICATED,
    SG_ERR_RESOURCE_EXHAUSTED,
    SG_ERR_OUT_OF_RANGE,
    SG_ERR_FAILED_PRECONDITION,
    SG_ERR_UNAVAILABLE,       /* shutting down, backend down */
    SG_ERR_DEADLINE_EXCEEDED,
    SG_ERR_UNIMPLEMENTED,
    SG_ERR_CONFIG,            /* configuration file or flag is invalid */
    SG_ERR_IO,                /* a file or system call failed */
    SG_ERR_NO_MEMORY,
    SG_ERR_INTERNAL,
};

#define SG_ERROR_MESSAGE_MAX 512

/* One request field at fault; becomes a google.rpc.BadRequest violation. */
struct sg_field_violation {
    char *field;       /* path, e.g. "sandbox.name" */
    char *description; /* what is wrong with it */
};

struct sg_error {
    enum sg_err_code code;
    char message[SG_ERROR_MESSAGE_MAX];
    struct sg_field_violation *violations; /* owned; freed by reset */
    size_t n_violations;
};

/* A zero-initialized struct sg_error is a valid, empty record. */
#define SG_ERROR_INIT {.code = SG_ERR_OK}

/*
 * Record an error unless one is already recorded. The message is formatted
 * with vsnprintf and truncated to SG_ERROR_MESSAGE_MAX - 1 bytes. err may be
 * NULL, in which case nothing is recorded.
 */
void sg_error_report(struct sg_error *err, enum sg_err_code code,
                     const char *fmt, ...) SG_PRINTF(3, 4);
void sg_error_vreport(struct sg_error *err, enum sg_err_code code,
                      const char *fmt, va_list ap) SG_PRINTF(3, 0);

/*
 * Append a field violation (and, if the record is still empty, set it to
 * SG_ERR_INVALID_ARGUMENT with the violation as its message). Copies both
 * strings. Returns 0, or -1 when memory runs out (the record then holds
 * SG_ERR_NO_MEMORY if it was empty).
 */
int sg_error_add_violation(struct sg_error *err, const char *field,
                           const char *fmt, ...) SG_PRINTF(3, 4);

/* True if an error is recorded. err may be NULL (then false). */
bool sg_error_is_set(const struct sg_error *err);

/* Free the violations and return the record to empty. NULL-safe. */
void sg_error_reset(struct sg_error *err);

/* Move src into dst (dst is reset first); src is left empty. */
void sg_error_move(struct sg_error *dst, struct sg_error *src);

/*
 * Thread-safe text for an errno value, written into buf (len bytes) or a
 * static string; returns the text. Use instead of strerror().
 */
const char *sg_strerror(int errnum, char *buf, size_t len);

/* Stable lower-case name of a code, e.g. "invalid_argument". */
const char *sg_err_code_name(enum sg_err_code code);

#endif /* SG_ERROR_H */
