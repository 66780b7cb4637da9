/*
 * error.c: the per-call error record (see error.h).
 */
#include "internal.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>

void sg_error_vreport(struct sg_error *err, enum sg_err_code code,
                      const char *fmt, va_list ap)
{
    if (err == NULL || err->code != SG_ERR_OK)
        return;
    /* A report of SG_ERR_OK would leave the record looking empty. */
    err->code = code == SG_ERR_OK ? SG_ERR_INTERNAL : code;
    if (vsnprintf(err->message, sizeof(err->message), fmt, ap) < 0)
        err->message[0] = '\0';
}

void sg_error_report(struct sg_error *err, enum sg_err_code code,
                     const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sg_error_vreport(err, code, fmt, ap);
    va_end(ap);
}

int sg_error_add_violation(struct sg_error *err, const char *field,
                           const char *fmt, ...)
{
    struct sg_field_violation *grown = NULL;
    char description[SG_ERROR_MESSAGE_MAX];
    char *field_copy = NULL;
    char *description_copy = NULL;
    va_list ap;
    int ret = -1;

    if (err == NULL)
        return 0;

    va_start(ap, fmt);
    if (vsnprintf(description, sizeof(description), fmt, ap) < 0)
        description[0] = '\0';
    va_end(ap);

    field_copy = strdup(field != NULL ? field : "");
    description_copy = strdup(description);
    if (field_copy == NULL || description_copy == NULL)
        goto cleanup;
    grown = realloc(err->violations,
                    (err->n_violations + 1) * sizeof(*err->violations));
    if (grown == NULL)
        goto cleanup;
    err->violations = grown;
    err->violations[err->n_violations].field = field_copy;
    err->violations[err->n_violations].description = description_copy;
    err->n_violations++;
    field_copy = NULL;
    description_copy = NULL;

    sg_error_report(err, SG_ERR_INVALID_ARGUMENT, "%s: %s",
                    err->violations[err->n_violations - 1].field, description);
    ret = 0;

 cleanup:
    if (ret < 0)
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
    free(field_copy);
    free(description_copy);
    return ret;
}

bool sg_error_is_set(const struct sg_error *err)
{
    return err != NULL && err->code != SG_ERR_OK;
}

void sg_error_reset(struct sg_error *err)
{
    if (err == NULL)
        return;
    for (size_t i = 0; i < err->n_violations; i++) {
        free(err->violations[i].field);
        free(err->violations[i].description);
    }
    free(err->violations);
    err->violations = NULL;
    err->n_violations = 0;
    err->code = SG_ERR_OK;
    err->message[0] = '\0';
}

void sg_error_move(struct sg_error *dst, struct sg_error *src)
{
    if (dst == src)
        return;
    sg_error_reset(dst);
    if (src == NULL)
        return;
    if (dst == NULL) {
        sg_error_reset(src);
        return;
    }
    *dst = *src;
    src->violations = NULL;
    src->n_violations = 0;
    src->code = SG_ERR_OK;
    src->message[0] = '\0';
}

const char *sg_err_code_name(enum sg_err_code code)
{
    static const char *const names[] = {
        [SG_ERR_OK] = "ok",
        [SG_ERR_INVALID_ARGUMENT] = "invalid_argument",
        [SG_ERR_NOT_FOUND] = "not_found",
        [SG_ERR_ALREADY_EXISTS] = "already_exists",
        [SG_ERR_ABORTED] = "aborted",
        [SG_ERR_PERMISSION_DENIED] = "permission_denied",
        [SG_ERR_UNAUTHENTICATED] = "unauthenticated",
        [SG_ERR_RESOURCE_EXHAUSTED] = "resource_exhausted",
        [SG_ERR_OUT_OF_RANGE] = "out_of_range",
        [SG_ERR_FAILED_PRECONDITION] = "failed_precondition",
        [SG_ERR_UNAVAILABLE] = "unavailable",
        [SG_ERR_DEADLINE_EXCEEDED] = "deadline_exceeded",
        [SG_ERR_UNIMPLEMENTED] = "unimplemented",
        [SG_ERR_CONFIG] = "config",
        [SG_ERR_IO] = "io",
        [SG_ERR_NO_MEMORY] = "no_memory",
        [SG_ERR_INTERNAL] = "internal",
    };

    if ((size_t)code >= SG_N_ELEMENTS(names) || names[code] == NULL)
        return "unknown";
    return names[code];
}

const char *sg_strerror(int errnum, char *buf, size_t len)
{
    /* _GNU_SOURCE gives the GNU strerror_r, which may return a static
     * string rather than fill buf. */
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(errnum, buf, len);
#else
    if (strerror_r(errnum, buf, len) != 0)
        snprintf(buf, len, "error %d", errnum);
    return buf;
#endif
}
