/*
 * page_token.h: opaque page tokens for ListSandboxes.
 *
 * Listing is keyset pagination by sandbox id (ids sort in creation order,
 * see sandbox_id.h): the token of the next page carries the last id
 * returned, and the next query resumes strictly after it. The token also
 * carries a digest of the request's filters so that a token cannot be used
 * with different filters (the API requires the other fields to stay the
 * same between pages).
 *
 * Wire form: unpadded base64url of
 *   version (1 byte, 1) | filter digest (16 bytes) | id length (1 byte) | id
 * The token is opaque but not secret nor authenticated: a client that forges
 * one can only choose where its own (filtered, authorized) listing resumes.
 *
 * OWNERSHIP: strings returned are malloc'd; the caller frees them.
 * THREAD SAFETY: all functions are pure and may be called from any thread.
 */
#ifndef SG_SANDBOX_PAGE_TOKEN_H
#define SG_SANDBOX_PAGE_TOKEN_H

#include "internal.h"
#include "error.h"

#define SG_PAGE_DIGEST_SIZE 16
/* Longest id a token can carry. */
#define SG_PAGE_TOKEN_ID_MAX 128

/*
 * Digest of the filters of a list request: the first 16 bytes of SHA-256
 * over a domain tag and the n parts, each prefixed with its length, so
 * that ("ab", "c") and ("a", "bc") differ. A NULL part is the same as "".
 * Callers pass the filters in a fixed order (e.g. tenant, project,
 * namespace, label_selector, phase, caller).
 */
void sg_page_filter_digest(const char *const *parts, size_t n,
                           uint8_t out[SG_PAGE_DIGEST_SIZE]);

/*
 * The token for resuming after last_id under the filters with digest.
 * Returns a malloc'd string, or NULL if last_id is not 1 to
 * SG_PAGE_TOKEN_ID_MAX characters of [a-z0-9-] or memory ran out.
 */
char *sg_page_token_encode(const char *last_id,
                           const uint8_t digest[SG_PAGE_DIGEST_SIZE])
    SG_WARN_UNUSED_RESULT;

/*
 * Decode token (which must not be empty: an empty page_token means the
 * first page, callers check that first) and check it was made for the
 * filters with digest. On success returns 0 and sets *last_id to a
 * malloc'd copy of the id. Otherwise returns -1, sets *last_id to NULL and
 * reports an INVALID_ARGUMENT violation on "page_token": "malformed page
 * token" (bad encoding, version, length or id) or "page token does not
 * match this request's filters"; SG_ERR_NO_MEMORY if memory runs out.
 */
int sg_page_token_decode(const char *token,
                         const uint8_t digest[SG_PAGE_DIGEST_SIZE],
                         char **last_id,
                         struct sg_error *err) SG_WARN_UNUSED_RESULT;

#endif /* SG_SANDBOX_PAGE_TOKEN_H */
