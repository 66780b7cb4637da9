/*
 * jwt_cache.h: the verifier's cache of verified tokens (authz-internal).
 *
 * Keyed by the SHA-256 of the token text; each entry holds the identity
 * the token verified to and the window [not_before, not_after) of `now`
 * values at which it is still valid. A fixed number of entries; when full,
 * the least recently used one goes. A generation counter lets a verifier
 * that checked a token against an old key set skip inserting it once
 * the cache has been cleared for a new set.
 *
 * OWNERSHIP: the cache holds one identity reference per entry; lookups
 * return a new reference owned by the caller.
 * THREAD SAFETY: every function may be called from any thread (one mutex),
 * except _new/_free.
 */
#ifndef SG_AUTHZ_JWT_CACHE_H
#define SG_AUTHZ_JWT_CACHE_H

#include "internal.h"

#include "identity.h"

#define SG_JWT_CACHE_DIGEST_SIZE 32

struct sg_jwt_cache;

/* capacity entries (at least 1). NULL when out of memory. */
struct sg_jwt_cache *sg_jwt_cache_new(size_t capacity);
void sg_jwt_cache_free(struct sg_jwt_cache *c); /* NULL-safe */

/*
 * The identity cached under digest when not_before <= now < not_after,
 * as a new reference; else NULL. An entry past its not_after is dropped.
 * A hit makes the entry the most recently used.
 */
struct sg_identity *sg_jwt_cache_get(struct sg_jwt_cache *c,
                                     const uint8_t *digest, int64_t now);

/* The current generation; read it before choosing the key to verify with. */
uint64_t sg_jwt_cache_generation(struct sg_jwt_cache *c);

/*
 * Cache id (a reference is taken) under digest for
 * not_before <= now < not_after, unless the cache was cleared since
 * generation was read, or the digest is cached already.
 */
void sg_jwt_cache_put(struct sg_jwt_cache *c, const uint8_t *digest,
                      int64_t not_before, int64_t not_after,
                      struct sg_identity *id, uint64_t generation);

/* Drop every entry and start a new generation. */
void sg_jwt_cache_clear(struct sg_jwt_cache *c);

/* Number of entries (tests). */
size_t sg_jwt_cache_size(struct sg_jwt_cache *c);

#endif /* SG_AUTHZ_JWT_CACHE_H */
