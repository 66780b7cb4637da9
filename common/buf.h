/*
 * buf.h: a growable byte/string buffer.
 *
 * Appends never fail visibly at the call site: on allocation failure the
 * buffer enters an error state, further appends are ignored, and
 * sg_buf_error() reports it once at the end (the libvirt virBuffer model).
 * The content is always NUL-terminated when non-empty.
 *
 * OWNERSHIP: the caller owns the struct (usually on the stack, initialized
 * with SG_BUF_INIT) and must call sg_buf_free() or take the content with
 * sg_buf_steal().
 * THREAD SAFETY: none; one thread at a time.
 */
#ifndef SG_BUF_H
#define SG_BUF_H

#include "internal.h"

struct sg_buf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
};

#define SG_BUF_INIT {.data = NULL, .len = 0, .cap = 0, .failed = false}

void sg_buf_add(struct sg_buf *b, const void *data, size_t len);
void sg_buf_adds(struct sg_buf *b, const char *s);
void sg_buf_addc(struct sg_buf *b, char c);
void sg_buf_printf(struct sg_buf *b, const char *fmt, ...) SG_PRINTF(2, 3);
/* Append s as the body of a JSON string (escaped, no surrounding quotes). */
void sg_buf_add_json_escaped(struct sg_buf *b, const char *s, size_t len);

/*
 * Length of the valid UTF-8 sequence at s (at most n bytes, n >= 1), or 0
 * when the bytes there are not one: overlong forms, surrogates and code
 * points above U+10FFFF are rejected (RFC 3629).
 */
size_t sg_utf8_sequence_len(const unsigned char *s, size_t n);

/* The current time as RFC 3339 UTC with milliseconds,
   "2026-12-02T12:00:00.123Z". */
void sg_buf_add_timestamp(struct sg_buf *b);

/* -1 if an allocation failed since init, else 0. */
int sg_buf_error(const struct sg_buf *b);
/* Content (never NULL: "" when empty). Borrowed; valid until next change. */
const char *sg_buf_str(const struct sg_buf *b);
/*
 * Take ownership of the content (caller frees with free()); b is reset.
 * Returns a newly allocated "" for an empty buffer, and NULL if an
 * allocation had failed (the partial content is freed).
 */
char *sg_buf_steal(struct sg_buf *b);
/* Drop the content, keep the capacity, and clear the failure flag. */
void sg_buf_reset(struct sg_buf *b);
void sg_buf_free(struct sg_buf *b);  /* NULL-safe */

#endif /* SG_BUF_H */
