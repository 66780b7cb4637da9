/*
 * authz.h: the gateway's guard: the policy in force, the authenticators
 * built from it, and the audit log.
 *
 * Built once at start from the daemon configuration (auth.*). With a
 * policy file, that file decides everything; without one, the embedded
 * default accepts only the admin token (written to admin_token_file on
 * first start) as "token:admin" with every permission. With `disabled`
 * every call is "local:unauthenticated" with every permission.
 *
 * sg_authz_reload() re-reads the policy file and swaps it in whole, with
 * the JWT verifier built from it; a file that fails to load leaves the
 * old policy and verifier in force. Calls keep the policy they started
 * with (they hold a reference).
 *
 * OWNERSHIP: sg_authz_new returns an object the caller frees with
 * sg_authz_free after the server has stopped. Identities and policies
 * handed out are new references.
 * With authentication.token_review, the tokens of reviewed issuers are
 * also checked with a Kubernetes TokenReview (token_review.h) on the loop:
 * sg_authz_authenticate_async then may answer later. The reviewer starts
 * with the first policy that has the section; later changes to the
 * section take effect at restart.
 *
 * THREAD SAFETY: sg_authz_authenticate(_async) and
 * sg_authz_current_policy from any thread; new,
 * reload, stop and free from the loop thread only (new and reload wait up
 * to 5 s for the first fetch of remote JWKS, only when the policy has such
 * issuers).
 */
#include <uv.h>

#ifndef SG_AUTHZ_AUTHZ_H
#define SG_AUTHZ_AUTHZ_H

#include "internal.h"

#include "audit.h"
#include "error.h"
#include "identity.h"
#include "policy.h"

#include <grpc/grpc_security.h>

struct sg_authz_config {
    const char *policy_file;       /* NULL: the embedded default */
    const char *admin_token_file;  /* required without policy_file */
    const char *gateway_namespace; /* NULL or "": none */
    bool disabled;
    struct sg_audit_config audit;
    uv_loop_t *loop; /* for TokenReview; NULL: a policy with it is refused */
};

struct sg_authz;

/*
 * Load the policy (or create/read the admin token), build the
 * authenticators and open the audit log. Returns NULL with err set
 * (SG_ERR_CONFIG or SG_ERR_IO, naming the file) on failure. An existing
 * admin token file readable by group or others is refused.
 */
struct sg_authz *sg_authz_new(const struct sg_authz_config *cfg,
                              struct sg_error *err);
void sg_authz_free(struct sg_authz *a); /* NULL-safe */

/* Re-read the policy file (no-op without one). 0, or -1 with err set and
   the old policy still in force. Also reopens the audit file. */
int sg_authz_reload(struct sg_authz *a, struct sg_error *err);

/*
 * Authenticate a call: bearer (the token after "Bearer ", len bytes) when
 * the call sent one, else the TLS peer behind ac. On success returns 0
 * with *id and *policy (new references: the caller's identity and the
 * policy to judge it by). Returns -1 with err set to
 * SG_ERR_UNAUTHENTICATED when there is no credential or it is refused;
 * the message never quotes the token.
 */
int sg_authz_authenticate(struct sg_authz *a, const char *bearer,
                          size_t len, const grpc_auth_context *ac,
                          struct sg_identity **id, struct sg_policy **policy,
                          struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Runs once, on the loop thread, for a call sg_authz_authenticate_async
 * answered 1: id and policy (new references, the callee's) on success,
 * else NULL and err (UNAUTHENTICATED or UNAVAILABLE).
 */
typedef void (*sg_authz_done_fn)(void *opaque, struct sg_identity *id,
                                 struct sg_policy *policy,
                                 const struct sg_error *err);

/*
 * sg_authz_authenticate that may wait for a TokenReview: 0 and -1 as
 * there; 1 when done(opaque, ...) will give the answer (then *id and
 * *policy stay NULL). Without done, a review that is not cached is -1
 * (SG_ERR_UNAVAILABLE).
 */
int sg_authz_authenticate_async(struct sg_authz *a, const char *bearer,
                                size_t len, const grpc_auth_context *ac,
                                struct sg_identity **id,
                                struct sg_policy **policy,
                                sg_authz_done_fn done, void *opaque,
                                struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Fail pending TokenReviews (their done runs now) and stop the API
   client, on the loop thread after the server stopped. NULL-safe. */
void sg_authz_stop(struct sg_authz *a);

/* The gateway's own namespace, or NULL. Borrowed; lives with a. */
const char *sg_authz_gateway_namespace(const struct sg_authz *a);

/* The audit log (never NULL; it may write nothing). Borrowed. */
struct sg_audit *sg_authz_audit(struct sg_authz *a);

/*
 * The policy in force now (a new reference; sg_policy_unref it). For what
 * outlives one call's judgement, such as an event stream, which must
 * follow a reload rather than keep the policy it started with.
 */
struct sg_policy *sg_authz_current_policy(struct sg_authz *a);

/* The digest of the policy in force, for logs. Written to out. */
void sg_authz_policy_digest(struct sg_authz *a, char *out, size_t len);

#endif /* SG_AUTHZ_AUTHZ_H */
