/*
 * jwt.h: bearer JWT verification against configured issuers.
 *
 * RFC 7515/7519 compact JWS only (three base64url segments, no JWE). For
 * each configured issuer: the "iss" claim must equal `issuer` exactly, the
 * "alg" header must be one of the issuer's configured algorithms (RS256,
 * ES256, EdDSA; "none" and every HMAC algorithm are never accepted), the
 * key is chosen by "kid" (or the issuer's only key of the algorithm's type
 * when the token has no kid), "aud" (string or array) must contain one of
 * the configured audiences, "exp" is required, and exp/nbf/iat are checked
 * with the issuer's clock skew. Duplicate keys in the header or the claims
 * are refused. The subject is the configured subject claim (a string,
 * default "sub") with the issuer's subject_prefix in front; groups come
 * from the configured groups claim (an array of strings) when set.
 *
 * Keys: a JWKS file (read when the verifier is built), or an HTTPS
 * jwks_uri, or the issuer's OIDC discovery document
 * (<issuer>/.well-known/openid-configuration -> jwks_uri). Fetched keys are
 * loaded by a background thread: at start, every refresh_interval_s, and
 * when a token names an unknown kid (at most once per
 * min_refresh_interval_s). Verification never blocks on the network: a
 * token whose kid is not (yet) known fails UNAUTHENTICATED and a refresh is
 * queued. http:// URIs are refused except on loopback hosts (tests).
 *
 * Verified tokens are cached (key: SHA-256 of the token text; bounded;
 * entries live until the token's exp or cache_ttl_s, whichever is first;
 * the cache is dropped when an issuer's key set changes), so a client that
 * sends the same token on every call pays for one signature check.
 *
 * Error messages say what is wrong ("token expired", "signature does not
 * verify", "audience not accepted", "unknown key id") and never quote the
 * token or any part of it.
 *
 * OWNERSHIP: the verifier owns copies of its configuration. Identities
 * returned are new references owned by the caller.
 * THREAD SAFETY: sg_jwt_verify may be called from any number of threads
 * at once. sg_jwt_verifier_new/free from one thread (main/loop).
 */
#ifndef SG_AUTHZ_JWT_H
#define SG_AUTHZ_JWT_H

#include "internal.h"

#include "error.h"
#include "identity.h"

/* Algorithm bits of sg_jwt_issuer_config.algorithms. */
#define SG_JWT_ALG_RS256 (1u << 0)
#define SG_JWT_ALG_ES256 (1u << 1)
#define SG_JWT_ALG_EDDSA (1u << 2) /* Ed25519 */

/* One issuer, as the policy file configures it (policy.c fills it). */
struct sg_jwt_issuer_config {
    char *issuer;            /* required: the exact "iss" value */
    char **audiences;        /* required: at least one */
    size_t n_audiences;
    unsigned algorithms;     /* required: SG_JWT_ALG_* bits */
    /* Exactly one key source: */
    char *jwks_file;         /* a JWKS document on disk */
    char *jwks_uri;          /* an HTTPS URL serving a JWKS */
    bool discovery;          /* <issuer>/.well-known/openid-configuration */
    char *ca_file;           /* CA bundle for HTTPS fetches; NULL: system */
    unsigned clock_skew_s;   /* default 60 */
    char *subject_claim;     /* default "sub" */
    char *groups_claim;      /* NULL: no groups */
    char *subject_prefix;    /* NULL: "<issuer>#" */
    unsigned refresh_interval_s;     /* periodic key refresh; default 3600 */
    unsigned min_refresh_interval_s; /* unknown-kid refresh; default 60 */
    unsigned max_token_bytes;        /* default 16384 */
    /* The verifier reads 0 in the last three fields as their default;
       clock_skew_s 0 means no skew. */
};

struct sg_jwt_verifier;

/*
 * Build a verifier for n issuers (n may be 0: every token is refused).
 * Copies cfgs. Loads JWKS files now (an unreadable or invalid file is an
 * error); starts the fetch thread when any issuer uses jwks_uri or
 * discovery. Returns NULL with err set (SG_ERR_CONFIG) on a bad config.
 */
struct sg_jwt_verifier *sg_jwt_verifier_new(
    const struct sg_jwt_issuer_config *cfgs, size_t n, struct sg_error *err);

/* Stop the fetch thread and free. NULL-safe. */
void sg_jwt_verifier_free(struct sg_jwt_verifier *v);

/*
 * Wait until every fetched issuer has had its first fetch attempt, or
 * timeout_ms passed. Returns true when all issuers have keys. For start-up
 * only (blocks).
 */
bool sg_jwt_verifier_wait_ready(struct sg_jwt_verifier *v,
                                unsigned timeout_ms);

/*
 * Verify token (len bytes, no "Bearer " prefix) at time now (unix
 * seconds). Returns 0 and *out (a new SG_IDENTITY_JWT identity, with
 * issuer, groups and expires_at = exp), or -1 with err set to
 * SG_ERR_UNAUTHENTICATED.
 */
int sg_jwt_verify(struct sg_jwt_verifier *v, const char *token, size_t len,
                  int64_t now, struct sg_identity **out,
                  struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Copy / free one config (policy.c and the verifier use them). */
int sg_jwt_issuer_config_copy(struct sg_jwt_issuer_config *dst,
                              const struct sg_jwt_issuer_config *src);
void sg_jwt_issuer_config_clear(struct sg_jwt_issuer_config *c);

#endif /* SG_AUTHZ_JWT_H */
