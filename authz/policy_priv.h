/*
 * policy_priv.h: the compiled form of a policy, shared by the loader
 * (policy.c), the evaluator (policy_eval.c) and the glob matcher (glob.c),
 * and exposed to tests/unit/test_policy.c. Nothing else includes it.
 *
 * OWNERSHIP: every pointer in these structs is owned by the struct
 * sg_policy that holds it; policy_free() releases all of it.
 * THREAD SAFETY: built by one thread in sg_policy_load_*, read-only after.
 */
#ifndef SG_AUTHZ_POLICY_PRIV_H
#define SG_AUTHZ_POLICY_PRIV_H

#include "internal.h"

#include "policy.h"

#include <stdatomic.h>

/* Upper bound on roles, so evaluation keeps the set of applicable roles
   in a fixed bitmap on the stack. */
#define SG_POLICY_MAX_ROLES 1024

enum sg_glob_kind {
    SG_GLOB_EXACT = 0, /* no wildcard: text is the unescaped literal */
    SG_GLOB_ANY,       /* only '*': matches everything, "" too */
    SG_GLOB_PATTERN,   /* text is the pattern for sg_glob_match */
};

struct sg_glob {
    char *text;
    enum sg_glob_kind kind;
};

/* A list of globs. set false: the policy left it out, so only the empty
   value is allowed. any: one entry is SG_GLOB_ANY. */
struct sg_glob_list {
    struct sg_glob *items;
    size_t n;
    bool set;
    bool any;
};

struct sg_policy_op {
    struct sg_glob_list permissions;
    enum sg_reach reach;
};

struct sg_policy_node_selector {
    struct sg_glob key;
    struct sg_glob_list values;
};

struct sg_policy_source {
    struct sg_glob kind;
    struct sg_glob namespace_name;
    struct sg_glob name;
    struct sg_glob key;
};

struct sg_policy_role {
    char *name;
    struct sg_policy_op *ops;
    size_t n_ops;
    /* Widest reach of ops for every permission of the API, indexed like
       sg_policy.perms (computed at load). */
    uint8_t *reach_by_perm;

    struct sg_glob_list tenants;
    struct sg_glob_list projects;
    struct sg_glob_list access_profiles;
    struct sg_glob_list runtime_profiles;
    struct sg_glob_list namespaces;
    struct sg_glob_list service_accounts;
    struct sg_glob_list credential_names;
    struct sg_policy_source *sources;
    size_t n_sources;

    /* driver_config */
    struct sg_glob_list fields;
    struct sg_glob_list runtime_classes;
    struct sg_policy_node_selector *node_selector;
    size_t n_node_selector;
    bool node_selector_set;
    struct sg_glob_list toleration_keys;
    bool has_max_cpu;
    uint64_t max_cpu_millis;
    bool has_max_memory;
    uint64_t max_memory_bytes;
    struct sg_glob_list allocation_modes;
    struct sg_glob_list templates;
    struct sg_glob_list warm_pools;

    bool attach_policy;
};

/* Bits of sg_policy_matcher.keys. */
#define SG_MATCH_SPIFFE (1u << 0)
#define SG_MATCH_DNS (1u << 1)
#define SG_MATCH_CN (1u << 2)
#define SG_MATCH_ISSUER (1u << 3)
#define SG_MATCH_SUBJECT (1u << 4)
#define SG_MATCH_GROUP (1u << 5)
#define SG_MATCH_TOKEN (1u << 6)
#define SG_MATCH_ANY_SUBJECT (1u << 7)

/* One entry of a binding's subjects: every key it sets must match. */
struct sg_policy_matcher {
    unsigned keys;
    struct sg_glob cert;        /* spiffe, dns or cn (one of them) */
    char *issuer;               /* exact */
    struct sg_glob subject;     /* with issuer; "*" when left out */
    struct sg_glob group;
    struct sg_glob token;
    struct sg_glob any_subject;
};

struct sg_policy_binding {
    size_t *roles;              /* indexes into sg_policy.roles */
    size_t n_roles;
    struct sg_policy_matcher *subjects;
    size_t n_subjects;
};

struct sg_policy {
    atomic_int refs;
    char digest[sizeof("sha256:") + 64];

    struct sg_jwt_issuer_config *issuers;
    size_t n_issuers;
    bool *issuer_reviewed;    /* n_issuers flags, or NULL: none */
    struct sg_policy_token_review *token_review; /* NULL: no section */
    struct sg_policy_token *tokens;
    size_t n_tokens;
    struct sg_policy_role *roles;
    size_t n_roles;
    struct sg_policy_binding *bindings;
    size_t n_bindings;

    /* The permissions of the API (the rule table's, borrowed static
       strings), so that a role's reach is one array lookup. */
    const char **perms;
    size_t n_perms;
};

/* Match g against s (NULL is ""). */
bool sg_glob_matches(const struct sg_glob *g, const char *s);

/* Does list allow value (NULL is "")? See struct sg_glob_list. */
bool sg_glob_list_allows(const struct sg_glob_list *list, const char *value);

/*
 * Check a policy glob's syntax: a backslash must escape '*', '?' or '\',
 * and control characters are refused. NULL when valid, else a static
 * description of what is wrong.
 */
const char *sg_glob_problem(const char *pattern);

/* Compile text into g (copied). Returns 0, or -1 when out of memory. The
   text must have passed sg_glob_problem. */
int sg_glob_compile(struct sg_glob *g, const char *text)
    SG_WARN_UNUSED_RESULT;
void sg_glob_clear(struct sg_glob *g);

/*
 * Parse a Kubernetes quantity ("500m", "1.5", "2Gi", "1e9") into a whole
 * number of millicores (millis true) or of bytes. Returns 0, or -1 with
 * *why set to a static description (negative, malformed, too large, or
 * finer than the unit).
 */
int sg_policy_parse_quantity(const char *text, bool millis, uint64_t *out,
                             const char **why) SG_WARN_UNUSED_RESULT;

/* The index of permission in p->perms, or -1 when the API has no such
   permission. */
ssize_t sg_policy_perm_index(const struct sg_policy *p,
                             const char *permission);

#endif /* SG_AUTHZ_POLICY_PRIV_H */
