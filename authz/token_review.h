/*
 * token_review.h: Kubernetes TokenReview for bearer JWTs that already
 * verified locally (docs/AUTHORIZATION.md, "TokenReview").
 *
 * A token is POSTed to /apis/authentication.k8s.io/v1/tokenreviews with the
 * kubernetes driver's HTTPS client (drivers/kubernetes/k8s_client.h) on the
 * gateway's libuv loop. Answers are cached by the token's SHA-256: a
 * positive one for cache_ttl_s (never past the token's exp), a negative one
 * for negative_cache_ttl_s. An API that cannot be reached is never cached
 * and never an allow. Concurrent misses for one token share one request.
 *
 * SECRETS: the token is never logged, never put in a message; the request
 * body that carries it is wiped before it is freed.
 *
 * OWNERSHIP: sg_token_review_new returns an object closed with
 * sg_token_review_close. The cache is owned by whoever made it.
 * THREAD SAFETY: new and close on the loop thread only; check from any
 * thread; done callbacks run on the loop thread. The cache functions are
 * not locked (the reviewer locks around them).
 */
#ifndef SG_AUTHZ_TOKEN_REVIEW_H
#define SG_AUTHZ_TOKEN_REVIEW_H

#include "internal.h"

#include "error.h"
#include "policy.h"

#include <uv.h>

#define SG_TOKEN_REVIEW_MSG_MAX 200

/* ---- the cache ------------------------------------------------------ */

struct sg_token_review_cache;

/* About entries answers (rounded up to whole sets); NULL without memory. */
struct sg_token_review_cache *sg_token_review_cache_new(size_t entries);
void sg_token_review_cache_free(struct sg_token_review_cache *c);

/* 1: a positive answer valid at now_ms; -1: a negative one (its message
   into msg); 0: none. */
int sg_token_review_cache_get(struct sg_token_review_cache *c,
                              const uint8_t key[32], int64_t now_ms,
                              char *msg, size_t msg_len);

/* Remember an answer until until_ms (wall clock). Replaces the entry of
   the same key, else an expired one, else the one that expires first. */
void sg_token_review_cache_put(struct sg_token_review_cache *c,
                               const uint8_t key[32], bool ok,
                               int64_t until_ms, const char *msg);

/* ---- the wire format ------------------------------------------------ */

/* The TokenReview to POST (malloc'd, NUL-terminated; the caller wipes it
   with explicit_bzero before freeing). NULL without memory or when the
   token holds a byte that is not printable ASCII or needs escaping. */
char *sg_token_review_body(const char *token, size_t len,
                           char *const *audiences, size_t n_audiences);

/*
 * Judge the API's answer: HTTP status (0: none came), body. 0 when
 * status.authenticated is true (and, when audiences were sent, one of
 * status.audiences is among them). -1 with err: SG_ERR_UNAUTHENTICATED
 * ("token was revoked or is not valid: <status.error>") when the API
 * said no; SG_ERR_UNAVAILABLE ("token review unavailable") when it could
 * not be asked or its answer makes no sense. token is only used to keep
 * it out of messages.
 */
int sg_token_review_parse(long status, const char *body, size_t body_len,
                          char *const *audiences, size_t n_audiences,
                          const char *token, size_t token_len,
                          struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* ---- the reviewer --------------------------------------------------- */

struct sg_token_review;

/* Runs once on the loop thread: err NULL when the token is authenticated,
   else why not (UNAUTHENTICATED or UNAVAILABLE). */
typedef void (*sg_token_review_done_fn)(void *opaque,
                                        const struct sg_error *err);

/* A reviewer with the API client of cfg (credentials are read now).
   NULL with err set (SG_ERR_CONFIG) on bad credentials. */
struct sg_token_review *sg_token_review_new(
    uv_loop_t *loop, const struct sg_policy_token_review *cfg,
    struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Is token (len bytes; expires at exp, unix seconds, 0: never) still
 * valid? 0: yes (cached); -1 with err: no (cached, or the review could not
 * start); 1: a review is under way and done(opaque, ...) will run. With
 * done NULL a miss is -1 (UNAVAILABLE).
 */
int sg_token_review_check(struct sg_token_review *r, const char *token,
                          size_t len, int64_t exp,
                          sg_token_review_done_fn done, void *opaque,
                          struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Fail what is pending with UNAVAILABLE (their done runs now), stop the
   client and free. NULL-safe. */
void sg_token_review_close(struct sg_token_review *r);

#endif /* SG_AUTHZ_TOKEN_REVIEW_H */
