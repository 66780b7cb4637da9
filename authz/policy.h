/*
 * policy.h: the security policy file (docs/AUTHORIZATION.md): how callers
 * authenticate (JWT issuers, static tokens) and what they may do (roles
 * bound to subjects).
 *
 * A policy is loaded whole and is immutable afterwards; the gateway swaps
 * the current one atomically on SIGHUP (authz.h). A file that fails to
 * load leaves the old policy in force.
 *
 * Evaluation: a role applies to an identity when any subject matcher of a
 * binding that names the role matches it. A request is allowed when ONE
 * applicable role grants the permission and every scope the request needs
 * (scopes are never combined across roles, so a role that may use
 * namespace A for tenant A and another that may use B for tenant B do not
 * add up to tenant A in namespace B). Globs: '*' matches any run of
 * characters (including '/' and none), '?' one character, everything else
 * itself; "\*" is a literal '*' ("\?" and "\\" likewise). A list that the
 * policy leaves out allows only the empty value (the request does not set
 * it); "*" allows any value, the empty one too; any other list matches the
 * empty value against its globs like any value (an entry "" allows it).
 *
 * OWNERSHIP: sg_policy_load_* return one reference; sg_policy_ref/unref.
 * Everything returned by accessors is borrowed from the policy.
 * THREAD SAFETY: a loaded policy is read-only; every function may be
 * called from any thread concurrently.
 */
#ifndef SG_AUTHZ_POLICY_H
#define SG_AUTHZ_POLICY_H

#include "internal.h"

#include "error.h"
#include "identity.h"
#include "jwt.h"

#include <sandgate/driver.h>

struct sg_policy;

/* How far a permission reaches over existing objects. */
enum sg_reach {
    SG_REACH_NONE = 0,   /* not granted */
    SG_REACH_OWN = 1,    /* objects whose owner is the caller's subject */
    SG_REACH_TENANT = 2, /* objects in the role's tenants and projects */
    SG_REACH_ANY = 3,    /* every object */
};

/* A static bearer token: its name and the SHA-256 of the token text. */
struct sg_policy_token {
    char *name;
    uint8_t sha256[32];
};

/* Load and check a policy. Returns NULL with err set (SG_ERR_CONFIG,
   "FILE:LINE: KEY: what is wrong") on any error: unknown keys, wrong
   types, unknown role names in bindings, bad globs, bad quantities. */
struct sg_policy *sg_policy_load_file(const char *path,
                                      struct sg_error *err);
struct sg_policy *sg_policy_load_data(const char *name, const char *text,
                                      size_t len, struct sg_error *err);
struct sg_policy *sg_policy_ref(struct sg_policy *p);
void sg_policy_unref(struct sg_policy *p); /* NULL-safe */

/* SHA-256 of the file's bytes as "sha256:<hex>", for logs ("policy
   sha256:... loaded"). */
const char *sg_policy_digest(const struct sg_policy *p);

/* authentication.jwt_issuers and authentication.static_tokens. */
size_t sg_policy_n_issuers(const struct sg_policy *p);
const struct sg_jwt_issuer_config *sg_policy_issuer(const struct sg_policy *p,
                                                    size_t i);
size_t sg_policy_n_tokens(const struct sg_policy *p);
const struct sg_policy_token *sg_policy_token(const struct sg_policy *p,
                                              size_t i);

/*
 * authentication.token_review: Kubernetes TokenReview for the tokens of
 * issuers marked token_review: true (docs/AUTHORIZATION.md). Exactly one
 * of in_cluster and kubeconfig (context only with kubeconfig).
 */
struct sg_policy_token_review {
    bool in_cluster;
    char *kubeconfig;
    char *context;                 /* NULL: the current context */
    char **audiences;              /* sent as spec.audiences; may be none */
    size_t n_audiences;
    unsigned cache_ttl_s;          /* default 10 */
    unsigned negative_cache_ttl_s; /* default 5 */
    unsigned timeout_ms;           /* a whole review; default 2000 */
};

/* The section, or NULL when the policy has none. */
const struct sg_policy_token_review *sg_policy_token_review(
    const struct sg_policy *p);

/* Are the tokens of this issuer (its exact "iss") reviewed? */
bool sg_policy_issuer_reviewed(const struct sg_policy *p, const char *issuer);

/* The facts of one existing object (NULL fields are treated as ""). */
struct sg_authz_object {
    const char *tenant;
    const char *project;
    const char *namespace_name;
    const char *owner;
};

/*
 * May id use permission on obj? True when an applicable role grants the
 * permission with reach ANY; or TENANT and obj's tenant and project match
 * the role's tenants and projects; or OWN and obj->owner equals
 * id->subject. id NULL: false.
 */
bool sg_policy_allows_object(const struct sg_policy *p,
                             const struct sg_identity *id,
                             const char *permission,
                             const struct sg_authz_object *obj);

/* The widest reach any applicable role grants for permission. Callers use
   it to deny a call early (NONE) and to skip per-item checks (ANY). */
enum sg_reach sg_policy_reach(const struct sg_policy *p,
                              const struct sg_identity *id,
                              const char *permission);

/*
 * A credential binding of a create: the record's name and, once the
 * gateway has read the record, its source. kind NULL: there is no such
 * record, and only the name is checked (the caller reports it missing
 * after the check, so that existence is told only to a caller the name
 * scope allows). The Secret fields are set for kind "kubernetes-secret"
 * only (NULL otherwise, matched as "").
 */
struct sg_authz_credential {
    const char *name;
    const char *kind;
    const char *secret_namespace;
    const char *secret_name;
    const char *secret_key;
};

/* What a create asks for, taken from the request and from the driver's
   placement facts (never from the driver_config JSON itself). */
struct sg_authz_create {
    const char *tenant;
    const char *project;
    const char *access_profile;
    const char *runtime_profile;
    /* The spec's credential bindings, in order. */
    const struct sg_authz_credential *credentials;
    size_t n_credentials;
    bool has_policy;     /* spec.policy is set (inline or ref) */
    /* From the driver (may be NULL: a driver without placement facts). */
    const struct sg_driver_placement *placement;
};

/* Which scope a denial is about, for the audit log and the message. */
enum sg_policy_denial {
    SG_DENY_NONE = 0,
    SG_DENY_PERMISSION,      /* no applicable role grants the permission */
    SG_DENY_TENANT,
    SG_DENY_PROJECT,
    SG_DENY_PROFILE,
    SG_DENY_NAMESPACE,
    SG_DENY_SERVICE_ACCOUNT,
    SG_DENY_CREDENTIAL,
    SG_DENY_DRIVER_FIELD,    /* a driver_config field that may not be set */
    SG_DENY_DRIVER_VALUE,    /* a sensitive value outside the allowed ones */
    SG_DENY_POLICY,          /* attaching a final policy is not allowed */
};

/*
 * Check a create against every scope: tenant, project, access and runtime
 * profiles, namespace (placement->namespace_name), service account,
 * credential names and the sources of the records they name (the role's
 * credentials.sources, as for CreateCredential), driver_config fields (placement->fields matched by the
 * role's driver_config.fields globs) and values (runtime class, node
 * selector keys and values, toleration keys, CPU and memory ceilings,
 * allocation mode, template, warm pool), and policy attachment.
 *
 * Returns 0 when one applicable role allows all of it. Otherwise -1 with
 * err set to SG_ERR_PERMISSION_DENIED and a message naming the request
 * field and value at fault, taken from the applicable role that passed the
 * most checks (the first such role in file order), e.g.
 *   "sandbox.tenant: tenant 'team-b' is not allowed"
 *   "driver_config: runtime class 'runc' is not allowed"
 *   "driver_config.hostNetwork: setting this field is not allowed"
 *   "spec.credentials: credential 'git' (kubernetes-secret team-b/git key
 *    token): its source is not allowed"
 * and *denial (when not NULL) says which scope failed. Checks run in the
 * order of enum sg_policy_denial; when no applicable role grants the
 * permission at all: "permission 'sandboxes.create' is not granted"
 * (SG_DENY_PERMISSION). Quoted values are cut to 128 bytes and control
 * characters in them replaced. Never quotes env values or credential
 * material (there is none here). The gateway's own namespace is refused
 * by the caller (authz.c) before this is called.
 */
int sg_policy_check_create(const struct sg_policy *p,
                           const struct sg_identity *id,
                           const char *permission,
                           const struct sg_authz_create *req,
                           enum sg_policy_denial *denial,
                           struct sg_error *err);

/*
 * May a credential record of tenant that id manages under permission
 * (e.g. "credentials.create") hold a reference to this source? True when
 * one applicable role grants permission, allows tenant (NULL: any) and has
 * a credentials.sources entry whose kind, namespace, name and key globs
 * all match (NULL is ""; a glob the entry leaves out matches only ""): one
 * role for all of it, as everywhere else. id NULL: false.
 */
bool sg_policy_allows_credential_source(const struct sg_policy *p,
                                        const struct sg_identity *id,
                                        const char *permission,
                                        const char *tenant,
                                        const char *kind, const char *ns,
                                        const char *name, const char *key);

/* Names of the roles that apply to id, for debug logs: at most max
   written to out (borrowed). Returns how many apply. */
size_t sg_policy_roles_of(const struct sg_policy *p,
                          const struct sg_identity *id,
                          const char **out, size_t max);

/* The glob matcher the policy uses (exposed for tests). */
bool sg_glob_match(const char *pattern, const char *s);

#endif /* SG_AUTHZ_POLICY_H */
