/*
 * rule.h: the authorization rule of one RPC, as declared by the
 * (sandgate.v1.authorization) method option in proto/sandgate/v1/.
 *
 * tools/gen-authz-table.py turns those options into authz_rules.c at build
 * time: one `const struct sg_authz_rule sg_authz_rule_<method>` per RPC
 * (the method name in lower snake case, e.g. sg_authz_rule_create_sandbox)
 * and a table of all of them (sg_authz_rule_at). A handler passes its
 * method's rule to the check functions of authz.h;
 * tools/check-authz-coverage.py fails the build when a served handler does
 * not.
 *
 * OWNERSHIP: static, read-only data. THREAD SAFETY: any thread.
 */
#ifndef SG_AUTHZ_RULE_H
#define SG_AUTHZ_RULE_H

#include "internal.h"

/* The values of sandgate.v1.AuthorizationTarget. */
enum sg_authz_target {
    SG_AUTHZ_TARGET_COLLECTION = 1,
    SG_AUTHZ_TARGET_OBJECT = 2,
};

/* Bits of sandgate.v1.AuthorizationScope (1u << value). */
#define SG_AUTHZ_SCOPE_BIT(v) (1u << (v))
enum sg_authz_scope {
    SG_AUTHZ_SCOPE_TENANT = 1,
    SG_AUTHZ_SCOPE_PROFILE = 2,
    SG_AUTHZ_SCOPE_NAMESPACE = 3,
    SG_AUTHZ_SCOPE_CREDENTIAL = 4,
    SG_AUTHZ_SCOPE_SERVICE_ACCOUNT = 5,
    SG_AUTHZ_SCOPE_DRIVER_CONFIG = 6,
    SG_AUTHZ_SCOPE_POLICY = 7,
};

struct sg_authz_rule {
    const char *path;        /* "/sandgate.v1.SandboxService/CreateSandbox" */
    const char *permission;  /* "sandboxes.create" */
    int resource;            /* sandgate.v1.ResourceKind value */
    bool allow_unauthenticated;
    enum sg_authz_target target;
    const char *id_field;        /* "" when not set */
    const char *tenant_field;
    const char *project_field;
    const char *namespace_field;
    unsigned scopes;             /* SG_AUTHZ_SCOPE_BIT() set */
    const char *visibility_permission; /* NULL when not set */
    bool filter_results;
    bool audit;
};

/* Every rule, in proto declaration order: sg_authz_rule_at(0 ..
   sg_authz_n_rules - 1). NULL past the end. */
extern const size_t sg_authz_n_rules;
const struct sg_authz_rule *sg_authz_rule_at(size_t i);

/* The rule of a full method path, or NULL. */
const struct sg_authz_rule *sg_authz_rule_for_path(const char *path);

#endif /* SG_AUTHZ_RULE_H */
