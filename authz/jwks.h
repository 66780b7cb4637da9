/*
 * jwks.h: JSON Web Key Sets for the JWT verifier (authz-internal).
 *
 * A key set is parsed once from a JWKS document (RFC 7517) into OpenSSL
 * public keys and never changes after; the verifier swaps whole sets when
 * a fetch brings a different document. Only signature keys of the three
 * supported kinds are kept: RSA of 2048 to 8192 bits (RS256), EC P-256
 * (ES256) and OKP Ed25519 (EdDSA). A key whose "use", "key_ops" or "alg"
 * rules it out, or which does not parse, is skipped with a warning naming
 * its kid.
 *
 * Also here: strict base64url decoding, the signature check of one JWS
 * signing input, and the HTTP fetcher the verifier's thread uses.
 *
 * OWNERSHIP: key sets are reference counted (sg_jwks_ref/unref); keys and
 * their kids belong to the set. A fetcher is owned by its creator.
 * THREAD SAFETY: a key set is immutable once parsed and may be shared by
 * any number of threads; ref/unref are atomic. A fetcher is used by one
 * thread at a time, except sg_jwks_fetcher_cancel (any thread).
 */
#ifndef SG_AUTHZ_JWKS_H
#define SG_AUTHZ_JWKS_H

#include "internal.h"

#include "buf.h"
#include "error.h"

#include <openssl/evp.h>
#include <stdatomic.h>

/* Hard limits on documents and keys. */
#define SG_JWKS_MAX_BYTES (1024 * 1024) /* JWKS or discovery document */
#define SG_JWKS_RSA_MIN_BITS 2048
#define SG_JWKS_RSA_MAX_BITS 8192 /* bounds the cost of one verify */

struct sg_jwk {
    char *kid;     /* NULL when the JWK has none */
    unsigned algs; /* SG_JWT_ALG_* bits this key may verify (non-zero) */
    EVP_PKEY *pkey;
};

struct sg_jwks {
    atomic_int refs;
    struct sg_jwk *keys;
    size_t n_keys;
    uint8_t digest[32]; /* SHA-256 of the document it was parsed from */
};


/*
 * Parse a JWKS document (len bytes, need not be NUL-terminated). source
 * names it in warnings (a path or URL; never secret). Returns a new set
 * with one reference, or NULL with err set (SG_ERR_CONFIG) when the
 * document is not a JWKS or no key in it is usable.
 */
struct sg_jwks *sg_jwks_parse(const char *doc, size_t len, const char *source,
                              struct sg_error *err);

struct sg_jwks *sg_jwks_ref(struct sg_jwks *ks);
void sg_jwks_unref(struct sg_jwks *ks); /* NULL-safe */

/* SHA-256 of doc, the identity of a document for change detection. */
void sg_jwks_digest(const char *doc, size_t len, uint8_t out[32]);

/*
 * Check the JWS signature sig (siglen bytes, already base64url-decoded)
 * over input (the ASCII "header.payload" text) with key under alg (one
 * SG_JWT_ALG_* bit the key allows). ES256 signatures are the 64-byte
 * r||s form of RFC 7518 section 3.4; r or s of zero or not below the
 * group order is refused. Returns true only for a valid signature.
 */
bool sg_jwk_verify(const struct sg_jwk *key, unsigned alg, const char *input,
                   size_t input_len, const uint8_t *sig, size_t siglen);

/*
 * Is url acceptable as a key source: https://, or http:// to a loopback
 * host (localhost, 127.0.0.0/8, ::1)? Returns 0, or -1 with err set
 * (SG_ERR_CONFIG).
 */
int sg_jwks_url_check(const char *url, struct sg_error *err);

/*
 * The HTTP client of the verifier's fetch thread (libcurl). Each GET has
 * a 10 s total timeout, no redirects, a SG_JWKS_MAX_BYTES body cap, and
 * needs status 200.
 */
struct sg_jwks_fetcher;

/* NULL when out of memory or libcurl cannot start. */
struct sg_jwks_fetcher *sg_jwks_fetcher_new(void);
void sg_jwks_fetcher_free(struct sg_jwks_fetcher *f); /* NULL-safe */

/*
 * GET url (checked with sg_jwks_url_check) into body (appended). ca_file
 * (may be NULL: the system store) verifies HTTPS servers. Returns 0, or -1
 * with err set (SG_ERR_UNAVAILABLE, or SG_ERR_CONFIG for a refused URL).
 * Blocks for at most the timeout; returns early once cancelled.
 */
int sg_jwks_fetcher_get(struct sg_jwks_fetcher *f, const char *url,
                        const char *ca_file, struct sg_buf *body,
                        struct sg_error *err);

/*
 * Abort the transfer in progress, if any, and make every later get fail at
 * once. Any thread; for shutdown.
 */
void sg_jwks_fetcher_cancel(struct sg_jwks_fetcher *f);

#endif /* SG_AUTHZ_JWKS_H */
