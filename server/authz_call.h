/*
 * authz_call.h: authentication and authorization of calls, between the
 * transport (call.h) and the guard (authz/authz.h).
 *
 * sg_authz_call_hook is the server's authentication hook: for a method
 * with a rule (every sandgate.v1 RPC) it authenticates the caller, attaches
 * identity and policy to the call, and checks that some role grants the
 * rule's permission at all; methods without a rule (health, reflection)
 * pass untouched. Denials are answered and audited there.
 *
 * Handlers then make the checks that need request content or the stored
 * object, each with their own method's generated rule (authz_rules.h;
 * tools/check-authz-coverage.py fails the build when a handler does not):
 *   object targets   sg_authz_check_object once the row is read
 *   creates          sg_authz_check_create after the driver's placement
 *   lists            sg_authz_reach once, sg_authz_may_see per item
 *   streams          sg_authz_reach once, then sg_authz_may_see_under per
 *                    item with the policy in force at that moment
 * Denials by the hook and by sg_authz_check_object are audited there;
 * mutations audit their outcome (creates: every outcome) with
 * sg_authz_audit_outcome before they answer.
 *
 * OWNERSHIP: nothing is kept; arguments are borrowed.
 * THREAD SAFETY: any thread (as the call's handler runs).
 */
#ifndef SG_SERVER_AUTHZ_CALL_H
#define SG_SERVER_AUTHZ_CALL_H

#include "internal.h"

#include "authz.h"
#include "authz_rules.h"
#include "call.h"

/* opaque: the struct sg_authz. See sg_server_set_auth. */
int sg_authz_call_hook(void *opaque, struct sg_call *call, bool handled);

/*
 * May the caller act on obj with rule? Returns 0; or -1 with err set to
 * NOT_FOUND ("<kind> not found", exactly what a missing object answers)
 * when the caller may not see it (rule->visibility_permission), or
 * PERMISSION_DENIED when it may see it but not do this. target (an id)
 * goes to the audit line.
 */
int sg_authz_check_object(struct sg_call *call,
                          const struct sg_authz_rule *rule,
                          const struct sg_authz_object *obj,
                          const char *target, struct sg_error *err);

/*
 * Every scope of a create: the gateway's own namespace first (always
 * refused), then the policy (sg_policy_check_create). 0, or -1 with err
 * set to PERMISSION_DENIED naming the field at fault. Not audited here:
 * the handler audits every outcome of a create, denials included, with
 * sg_authz_audit_outcome.
 */
int sg_authz_check_create(struct sg_call *call,
                          const struct sg_authz_rule *rule,
                          const struct sg_authz_create *req,
                          struct sg_error *err);

/*
 * The tenant scope of a create that has no placement (a credential
 * record): one applicable role granting rule->permission must allow
 * tenant. 0, or -1 with err set to PERMISSION_DENIED naming field
 * ("credential.tenant: tenant 'x' is not allowed"). Not audited here.
 */
int sg_authz_check_tenant(struct sg_call *call,
                          const struct sg_authz_rule *rule, const char *field,
                          const char *tenant, struct sg_error *err);

/*
 * The credential scope: may a record of tenant managed under
 * rule->permission hold a reference of kind (for kubernetes-secret:
 * Secret ns/name, key; NULL otherwise)? The role that allows the source
 * must allow the tenant too. 0, or -1 with err set to PERMISSION_DENIED
 * naming the field ("credential.source.kind: ..." or, for a Secret,
 * "credential.source.ref: ..."). Not audited here.
 */
int sg_authz_check_credential_source(struct sg_call *call,
                                     const struct sg_authz_rule *rule,
                                     const char *tenant, const char *kind,
                                     const char *ns, const char *name,
                                     const char *key, struct sg_error *err);

/* The widest reach of rule's permission for the caller. */
enum sg_reach sg_authz_reach(struct sg_call *call,
                             const struct sg_authz_rule *rule);

/* Whether a listed item may be returned (rule->filter_results). */
bool sg_authz_may_see(struct sg_call *call, const struct sg_authz_rule *rule,
                      const struct sg_authz_object *obj);

/*
 * The same two checks against a given policy and identity instead of the
 * call's, for a stream that re-checks each item under the policy in force
 * when the item is sent (WatchEvents: a reload applies to open streams).
 * p or id NULL: NONE / false.
 */
enum sg_reach sg_authz_reach_under(const struct sg_policy *p,
                                   const struct sg_identity *id,
                                   const struct sg_authz_rule *rule);
bool sg_authz_may_see_under(const struct sg_policy *p,
                            const struct sg_identity *id,
                            const struct sg_authz_rule *rule,
                            const struct sg_authz_object *obj);

/*
 * The policy in force now for the call's server (a new reference), or,
 * on a server without the guard (tests), the call's own; NULL when
 * neither exists.
 */
struct sg_policy *sg_authz_policy_now(struct sg_call *call);

/* The subject to stamp as owner. Never NULL for a rule's method. */
const char *sg_authz_subject(const struct sg_call *call);

/* What an audit line says about the object of a mutation. */
struct sg_authz_audit_facts {
    const char *target;         /* id */
    const char *tenant;
    const char *namespace_name;
    const char *request_id;
};

/* Audit the outcome of an authorized mutation (err NULL or unset: OK)
   before it answers. Does nothing unless rule->audit. */
void sg_authz_audit_outcome(struct sg_call *call,
                            const struct sg_authz_rule *rule,
                            const struct sg_authz_audit_facts *facts,
                            const struct sg_error *err);

/*
 * Audit a resolution of a credential reference (whatever rule->audit
 * says: every resolution is audited): who, which record (facts), which
 * reference (description, never material) and the outcome (err NULL or
 * unset: resolved).
 */
void sg_authz_audit_resolution(struct sg_call *call,
                               const struct sg_authz_rule *rule,
                               const struct sg_authz_audit_facts *facts,
                               const char *description,
                               const struct sg_error *err);

#endif /* SG_SERVER_AUTHZ_CALL_H */
