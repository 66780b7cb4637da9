/*
 * peer.h: the identity of an mTLS client from its verified certificate.
 *
 * The TLS handshake (the gRPC core, with client certificates required and
 * verified against server.listeners[].tls.client_ca_file) has already
 * refused certificates that do not chain to the CA, are expired or not yet
 * valid. This adds the checks the handshake does not make, and refuses:
 *   - more than one URI SAN;
 *   - an extended key usage extension without clientAuth;
 *   - a key usage extension without digitalSignature;
 *   - a certificate with no usable name (no URI SAN, no DNS SAN, no CN),
 *     or a name with control characters or over 1024 bytes.
 * The subject is the single URI SAN, else "dns:" + the first DNS SAN,
 * else "cn:" + the subject CN (see identity.h).
 *
 * Results are cached by the SHA-256 of the peer's PEM certificate
 * (bounded), so each call costs one hash, not a certificate parse.
 *
 * OWNERSHIP: *out is a new reference owned by the caller.
 * THREAD SAFETY: any thread; the cache is locked internally.
 */
#ifndef SG_AUTHZ_PEER_H
#define SG_AUTHZ_PEER_H

#include "internal.h"

#include "error.h"
#include "identity.h"

#include <grpc/grpc_security.h>

struct sg_peer_cache;

struct sg_peer_cache *sg_peer_cache_new(size_t max_entries);
void sg_peer_cache_free(struct sg_peer_cache *c); /* NULL-safe */

/*
 * The identity of the connection behind ac (may be NULL). Returns 1 with
 * *out set; 0 when the peer presented no certificate (plaintext, or TLS
 * without client certificates); -1 with err set (SG_ERR_UNAUTHENTICATED,
 * saying which rule the certificate breaks) when it is refused.
 */
int sg_peer_identity(struct sg_peer_cache *c, const grpc_auth_context *ac,
                     struct sg_identity **out, struct sg_error *err);

/* The same from a PEM certificate (exposed for unit tests). */
int sg_peer_identity_from_pem(const char *pem, size_t len,
                              struct sg_identity **out,
                              struct sg_error *err);

#endif /* SG_AUTHZ_PEER_H */
