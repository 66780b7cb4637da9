/*
 * policy_eval.c: evaluating a loaded policy (policy.h) on every call.
 *
 * The roles that apply to an identity are gathered into a bitmap on the
 * stack (one pass over the bindings), then visited in file order; a role's
 * reach for a permission of the API is one array lookup. Nothing here
 * allocates, so every function may run on any thread at once.
 */
#include "internal.h"

#include "policy.h"
#include "policy_priv.h"

#include <stdio.h>

#define ROLE_WORDS (SG_POLICY_MAX_ROLES / 64)
/* Longest value quoted in a denial message, in bytes. */
#define QUOTE_MAX 128

struct role_set {
    uint64_t bits[ROLE_WORDS];
    size_t words;
};

ssize_t sg_policy_perm_index(const struct sg_policy *p,
                             const char *permission)
{
    /* Callers pass the rule table's own strings: compare pointers first. */
    for (size_t i = 0; i < p->n_perms; i++) {
        if (p->perms[i] == permission)
            return (ssize_t)i;
    }
    for (size_t i = 0; i < p->n_perms; i++) {
        if (STREQ(p->perms[i], permission))
            return (ssize_t)i;
    }
    return -1;
}

static bool matcher_matches(const struct sg_policy_matcher *m,
                            const struct sg_identity *id)
{
    unsigned k = m->keys;

    if (k & (SG_MATCH_SPIFFE | SG_MATCH_DNS | SG_MATCH_CN)) {
        enum sg_cert_name want = (k & SG_MATCH_SPIFFE) ? SG_CERT_NAME_URI
                                 : (k & SG_MATCH_DNS) ? SG_CERT_NAME_DNS
                                                      : SG_CERT_NAME_CN;

        if (id->kind != SG_IDENTITY_CERT || id->cert_name != want ||
            !sg_glob_matches(&m->cert, id->name))
            return false;
    }
    if (k & SG_MATCH_ISSUER) {
        if (id->kind != SG_IDENTITY_JWT || id->issuer == NULL ||
            STRNEQ(m->issuer, id->issuer) ||
            !sg_glob_matches(&m->subject, id->name))
            return false;
    }
    if (k & SG_MATCH_GROUP) {
        bool any = false;

        if (id->kind != SG_IDENTITY_JWT)
            return false;
        for (size_t i = 0; i < id->n_groups && !any; i++)
            any = sg_glob_matches(&m->group, id->groups[i]);
        if (!any)
            return false;
    }
    if (k & SG_MATCH_TOKEN) {
        if (id->kind != SG_IDENTITY_TOKEN ||
            !sg_glob_matches(&m->token, id->name))
            return false;
    }
    if (k & SG_MATCH_ANY_SUBJECT) {
        if (!sg_glob_matches(&m->any_subject, id->subject))
            return false;
    }
    return true;
}

/* Fill set with the roles that apply to id; false when none does. */
static bool applicable_roles(const struct sg_policy *p,
                             const struct sg_identity *id,
                             struct role_set *set)
{
    bool any = false;

    set->words = (p->n_roles + 63) / 64;
    memset(set->bits, 0, set->words * sizeof(set->bits[0]));
    if (id == NULL)
        return false;
    for (size_t i = 0; i < p->n_bindings; i++) {
        const struct sg_policy_binding *b = &p->bindings[i];
        bool match = false;

        for (size_t j = 0; j < b->n_subjects && !match; j++)
            match = matcher_matches(&b->subjects[j], id);
        if (!match)
            continue;
        for (size_t j = 0; j < b->n_roles; j++)
            set->bits[b->roles[j] / 64] |= UINT64_C(1) << (b->roles[j] % 64);
        any = true;
    }
    return any;
}

/* The next applicable role at or after *pos (file order), or NULL. */
static const struct sg_policy_role *next_role(const struct sg_policy *p,
                                              const struct role_set *set,
                                              size_t *pos)
{
    while (*pos < p->n_roles) {
        size_t w = *pos / 64;
        uint64_t bits = set->bits[w] >> (*pos % 64);

        if (bits == 0) {
            *pos = (w + 1) * 64;
            continue;
        }
        *pos += (size_t)__builtin_ctzll(bits);
        return &p->roles[(*pos)++];
    }
    return NULL;
}

static enum sg_reach role_reach(const struct sg_policy_role *r,
                                ssize_t perm_idx, const char *permission)
{
    enum sg_reach best = SG_REACH_NONE;

    if (perm_idx >= 0)
        return (enum sg_reach)r->reach_by_perm[perm_idx];
    /* Not a permission of the API (the loader refuses globs that match
       none, so this grants nothing unless a glob is wide). */
    for (size_t i = 0; i < r->n_ops; i++) {
        if (r->ops[i].reach > best &&
            sg_glob_list_allows(&r->ops[i].permissions, permission))
            best = r->ops[i].reach;
    }
    return best;
}

enum sg_reach sg_policy_reach(const struct sg_policy *p,
                              const struct sg_identity *id,
                              const char *permission)
{
    struct role_set set;
    const struct sg_policy_role *r;
    enum sg_reach best = SG_REACH_NONE;
    ssize_t idx;
    size_t pos = 0;

    if (p == NULL || permission == NULL || !applicable_roles(p, id, &set))
        return SG_REACH_NONE;
    idx = sg_policy_perm_index(p, permission);
    for (r = next_role(p, &set, &pos); r != NULL;
         r = next_role(p, &set, &pos)) {
        enum sg_reach reach = role_reach(r, idx, permission);

        if (reach > best)
            best = reach;
        if (best == SG_REACH_ANY)
            break;
    }
    return best;
}

bool sg_policy_allows_object(const struct sg_policy *p,
                             const struct sg_identity *id,
                             const char *permission,
                             const struct sg_authz_object *obj)
{
    static const struct sg_authz_object empty = {0};
    struct role_set set;
    const struct sg_policy_role *r;
    ssize_t idx;
    size_t pos = 0;

    if (p == NULL || permission == NULL || !applicable_roles(p, id, &set))
        return false;
    if (obj == NULL)
        obj = &empty;
    idx = sg_policy_perm_index(p, permission);
    for (r = next_role(p, &set, &pos); r != NULL;
         r = next_role(p, &set, &pos)) {
        switch (role_reach(r, idx, permission)) {
        case SG_REACH_ANY:
            return true;
        case SG_REACH_TENANT:
            if (sg_glob_list_allows(&r->tenants, obj->tenant) &&
                sg_glob_list_allows(&r->projects, obj->project))
                return true;
            break;
        case SG_REACH_OWN:
            if (obj->owner != NULL && STREQ(obj->owner, id->subject))
                return true;
            break;
        default:
            break;
        }
    }
    return false;
}

/* Whether one of r's credentials.sources entries matches the source. */
static bool role_allows_source(const struct sg_policy_role *r,
                               const char *kind, const char *ns,
                               const char *name, const char *key)
{
    for (size_t i = 0; i < r->n_sources; i++) {
        const struct sg_policy_source *s = &r->sources[i];

        if (sg_glob_matches(&s->kind, kind) &&
            sg_glob_matches(&s->namespace_name, ns) &&
            sg_glob_matches(&s->name, name) && sg_glob_matches(&s->key, key))
            return true;
    }
    return false;
}

bool sg_policy_allows_credential_source(const struct sg_policy *p,
                                        const struct sg_identity *id,
                                        const char *permission,
                                        const char *tenant,
                                        const char *kind, const char *ns,
                                        const char *name, const char *key)
{
    struct role_set set;
    const struct sg_policy_role *r;
    ssize_t idx;
    size_t pos = 0;

    if (p == NULL || permission == NULL || !applicable_roles(p, id, &set))
        return false;
    idx = sg_policy_perm_index(p, permission);
    for (r = next_role(p, &set, &pos); r != NULL;
         r = next_role(p, &set, &pos)) {
        if (role_reach(r, idx, permission) == SG_REACH_NONE ||
            (tenant != NULL && !sg_glob_list_allows(&r->tenants, tenant)))
            continue;
        if (role_allows_source(r, kind, ns, name, key))
            return true;
    }
    return false;
}

size_t sg_policy_roles_of(const struct sg_policy *p,
                          const struct sg_identity *id,
                          const char **out, size_t max)
{
    struct role_set set;
    const struct sg_policy_role *r;
    size_t pos = 0;
    size_t n = 0;

    if (p == NULL || !applicable_roles(p, id, &set))
        return 0;
    for (r = next_role(p, &set, &pos); r != NULL;
         r = next_role(p, &set, &pos)) {
        if (n < max && out != NULL)
            out[n] = r->name;
        n++;
    }
    return n;
}

/* ---- create ---------------------------------------------------------- */

/* The checks of a create, in order; a role that fails at a later check
   has passed more of them. */
enum create_check {
    CK_TENANT = 0,
    CK_PROJECT,
    CK_ACCESS_PROFILE,
    CK_RUNTIME_PROFILE,
    CK_NAMESPACE,
    CK_SERVICE_ACCOUNT,
    CK_CREDENTIAL,
    CK_CREDENTIAL_SOURCE,
    CK_FIELD,
    CK_RUNTIME_CLASS,
    CK_NODE_SELECTOR,
    CK_TOLERATION,
    CK_CPU,
    CK_MEMORY,
    CK_ALLOCATION_MODE,
    CK_TEMPLATE,
    CK_WARM_POOL,
    CK_POLICY,
    CK_PASSED,
};

static const enum sg_policy_denial check_denial[] = {
    [CK_TENANT] = SG_DENY_TENANT,
    [CK_PROJECT] = SG_DENY_PROJECT,
    [CK_ACCESS_PROFILE] = SG_DENY_PROFILE,
    [CK_RUNTIME_PROFILE] = SG_DENY_PROFILE,
    [CK_NAMESPACE] = SG_DENY_NAMESPACE,
    [CK_SERVICE_ACCOUNT] = SG_DENY_SERVICE_ACCOUNT,
    [CK_CREDENTIAL] = SG_DENY_CREDENTIAL,
    [CK_CREDENTIAL_SOURCE] = SG_DENY_CREDENTIAL,
    [CK_FIELD] = SG_DENY_DRIVER_FIELD,
    [CK_RUNTIME_CLASS] = SG_DENY_DRIVER_VALUE,
    [CK_NODE_SELECTOR] = SG_DENY_DRIVER_VALUE,
    [CK_TOLERATION] = SG_DENY_DRIVER_VALUE,
    [CK_CPU] = SG_DENY_DRIVER_VALUE,
    [CK_MEMORY] = SG_DENY_DRIVER_VALUE,
    [CK_ALLOCATION_MODE] = SG_DENY_DRIVER_VALUE,
    [CK_TEMPLATE] = SG_DENY_DRIVER_VALUE,
    [CK_WARM_POOL] = SG_DENY_DRIVER_VALUE,
    [CK_POLICY] = SG_DENY_POLICY,
};

/* Where a role failed, kept as references so that only the chosen
   role's message is ever formatted. */
struct create_fail {
    enum create_check check;
    const char *value;
    const char *value2;
    uint64_t amount;
    uint64_t ceiling;
    const struct sg_authz_credential *cred; /* CK_CREDENTIAL_SOURCE */
};

static const char *str_or_empty(const char *s)
{
    return s != NULL ? s : "";
}

static bool node_selector_allows(const struct sg_policy_role *r,
                                 const char *key, const char *value)
{
    if (!r->node_selector_set)
        return false;
    for (size_t i = 0; i < r->n_node_selector; i++) {
        if (sg_glob_matches(&r->node_selector[i].key, key) &&
            sg_glob_list_allows(&r->node_selector[i].values, value))
            return true;
    }
    return false;
}

static bool fail_at(struct create_fail *f, enum create_check check,
                    const char *value)
{
    f->check = check;
    f->value = str_or_empty(value);
    return false;
}

/* Check every scope of req against r; false with *f at the first miss. */
static bool role_allows_create(const struct sg_policy_role *r,
                               const struct sg_authz_create *req,
                               struct create_fail *f)
{
    static const struct sg_driver_placement none = {0};
    const struct sg_driver_placement *pl =
        req->placement != NULL ? req->placement : &none;
    const struct {
        enum create_check check;
        const struct sg_glob_list *list;
        const char *value;
    } scalars[] = {
        {CK_TENANT, &r->tenants, req->tenant},
        {CK_PROJECT, &r->projects, req->project},
        {CK_ACCESS_PROFILE, &r->access_profiles, req->access_profile},
        {CK_RUNTIME_PROFILE, &r->runtime_profiles, req->runtime_profile},
        {CK_NAMESPACE, &r->namespaces, pl->namespace_name},
        {CK_SERVICE_ACCOUNT, &r->service_accounts, pl->service_account},
    };
    const struct {
        enum create_check check;
        const struct sg_glob_list *list;
        const char *value;
    } modes[] = {
        {CK_ALLOCATION_MODE, &r->allocation_modes, pl->allocation_mode},
        {CK_TEMPLATE, &r->templates, pl->template_name},
        {CK_WARM_POOL, &r->warm_pools, pl->warm_pool},
    };

    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < SG_N_ELEMENTS(scalars); i++) {
        if (!sg_glob_list_allows(scalars[i].list, scalars[i].value))
            return fail_at(f, scalars[i].check, scalars[i].value);
    }
    for (size_t i = 0; i < req->n_credentials; i++) {
        const struct sg_authz_credential *c = &req->credentials[i];

        if (!sg_glob_list_allows(&r->credential_names, c->name))
            return fail_at(f, CK_CREDENTIAL, c->name);
    }
    /* After every name: the names say what may be bound at all. */
    for (size_t i = 0; i < req->n_credentials; i++) {
        const struct sg_authz_credential *c = &req->credentials[i];

        if (c->kind != NULL &&
            !role_allows_source(r, c->kind, str_or_empty(c->secret_namespace),
                                str_or_empty(c->secret_name),
                                str_or_empty(c->secret_key))) {
            f->cred = c;
            return fail_at(f, CK_CREDENTIAL_SOURCE, c->name);
        }
    }
    for (size_t i = 0; i < pl->n_fields; i++) {
        if (!sg_glob_list_allows(&r->fields, pl->fields[i]))
            return fail_at(f, CK_FIELD, pl->fields[i]);
    }
    if (!sg_glob_list_allows(&r->runtime_classes, pl->runtime_class))
        return fail_at(f, CK_RUNTIME_CLASS, pl->runtime_class);
    for (size_t i = 0; i < pl->n_node_selector; i++) {
        const char *k = str_or_empty(pl->node_selector_keys[i]);
        const char *v = str_or_empty(pl->node_selector_values[i]);

        if (!node_selector_allows(r, k, v)) {
            fail_at(f, CK_NODE_SELECTOR, k);
            f->value2 = v;
            return false;
        }
    }
    for (size_t i = 0; i < pl->n_toleration_keys; i++) {
        if (!sg_glob_list_allows(&r->toleration_keys,
                                 pl->toleration_keys[i]))
            return fail_at(f, CK_TOLERATION, pl->toleration_keys[i]);
    }
    if (r->has_max_cpu && pl->cpu_millis > r->max_cpu_millis) {
        fail_at(f, CK_CPU, NULL);
        f->amount = pl->cpu_millis;
        f->ceiling = r->max_cpu_millis;
        return false;
    }
    if (r->has_max_memory && pl->memory_bytes > r->max_memory_bytes) {
        fail_at(f, CK_MEMORY, NULL);
        f->amount = pl->memory_bytes;
        f->ceiling = r->max_memory_bytes;
        return false;
    }
    for (size_t i = 0; i < SG_N_ELEMENTS(modes); i++) {
        if (!sg_glob_list_allows(modes[i].list, modes[i].value))
            return fail_at(f, modes[i].check, modes[i].value);
    }
    if (req->has_policy && !r->attach_policy)
        return fail_at(f, CK_POLICY, NULL);
    f->check = CK_PASSED;
    return true;
}

/*
 * Copy s into buf for quoting in a message: at most QUOTE_MAX bytes (cut
 * at a character boundary, "..." appended), control characters as '?'.
 */
static const char *quote(char *buf, size_t len, const char *s)
{
    size_t n = 0;
    size_t in = strlen(s);
    size_t take = in;

    if (take > QUOTE_MAX) {
        take = QUOTE_MAX;
        while (take > 0 && ((unsigned char)s[take] & 0xC0) == 0x80)
            take--;
    }
    for (size_t i = 0; i < take && n + 4 < len; i++) {
        unsigned char c = (unsigned char)s[i];

        buf[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (take < in && n + 4 <= len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

static void report_source_denial(const struct sg_authz_credential *c,
                                 struct sg_error *err)
{
    char q[5][QUOTE_MAX + 8];

    if (c->secret_name == NULL) {
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "spec.credentials: credential '%s' (%s): its source "
                        "is not allowed", quote(q[0], sizeof(q[0]), c->name),
                        quote(q[1], sizeof(q[1]), c->kind));
        return;
    }
    sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                    "spec.credentials: credential '%s' (%s %s/%s key %s): "
                    "its source is not allowed",
                    quote(q[0], sizeof(q[0]), c->name),
                    quote(q[1], sizeof(q[1]), c->kind),
                    quote(q[2], sizeof(q[2]), str_or_empty(c->secret_namespace)),
                    quote(q[3], sizeof(q[3]), c->secret_name),
                    quote(q[4], sizeof(q[4]), str_or_empty(c->secret_key)));
}

static void report_denial(const struct create_fail *f, struct sg_error *err)
{
    static const char *const what[] = {
        [CK_TENANT] = "sandbox.tenant: tenant",
        [CK_PROJECT] = "sandbox.project: project",
        [CK_ACCESS_PROFILE] = "sandbox.access_profile: access profile",
        [CK_RUNTIME_PROFILE] = "sandbox.runtime_profile: runtime profile",
        [CK_NAMESPACE] = "driver_config: namespace",
        [CK_SERVICE_ACCOUNT] = "driver_config: service account",
        [CK_CREDENTIAL] = "spec.credentials: credential",
        [CK_RUNTIME_CLASS] = "driver_config: runtime class",
        [CK_TOLERATION] = "driver_config: toleration key",
        [CK_ALLOCATION_MODE] = "driver_config: allocation mode",
        [CK_TEMPLATE] = "driver_config: template",
        [CK_WARM_POOL] = "driver_config: warm pool",
    };
    char q[QUOTE_MAX + 8];
    char q2[QUOTE_MAX + 8];

    switch (f->check) {
    case CK_FIELD:
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "driver_config.%s: setting this field is not allowed",
                        quote(q, sizeof(q), f->value));
        break;
    case CK_NODE_SELECTOR:
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "driver_config: node selector '%s=%s' is not allowed",
                        quote(q, sizeof(q), f->value),
                        quote(q2, sizeof(q2), f->value2));
        break;
    case CK_CPU:
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "driver_config: CPU %llum exceeds the ceiling %llum",
                        (unsigned long long)f->amount,
                        (unsigned long long)f->ceiling);
        break;
    case CK_MEMORY:
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "driver_config: memory %llu bytes exceeds the "
                        "ceiling %llu", (unsigned long long)f->amount,
                        (unsigned long long)f->ceiling);
        break;
    case CK_POLICY:
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "spec.policy: attaching a policy is not allowed");
        break;
    case CK_CREDENTIAL_SOURCE:
        report_source_denial(f->cred, err);
        break;
    default:
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "%s '%s' is not allowed", what[f->check],
                        quote(q, sizeof(q), f->value));
        break;
    }
}

int sg_policy_check_create(const struct sg_policy *p,
                           const struct sg_identity *id,
                           const char *permission,
                           const struct sg_authz_create *req,
                           enum sg_policy_denial *denial,
                           struct sg_error *err)
{
    static const struct sg_authz_create empty = {0};
    struct role_set set;
    const struct sg_policy_role *r;
    struct create_fail best = {.check = CK_TENANT};
    bool granted = false;
    ssize_t idx = -1;
    size_t pos = 0;
    char q[QUOTE_MAX + 8];

    if (req == NULL)
        req = &empty;
    if (p != NULL && permission != NULL && applicable_roles(p, id, &set)) {
        idx = sg_policy_perm_index(p, permission);
        for (r = next_role(p, &set, &pos); r != NULL;
             r = next_role(p, &set, &pos)) {
            struct create_fail f;

            if (role_reach(r, idx, permission) == SG_REACH_NONE)
                continue;
            if (role_allows_create(r, req, &f)) {
                if (denial != NULL)
                    *denial = SG_DENY_NONE;
                return 0;
            }
            /* Strictly further only: ties keep the first in file order. */
            if (!granted || f.check > best.check)
                best = f;
            granted = true;
        }
    }
    if (!granted) {
        if (denial != NULL)
            *denial = SG_DENY_PERMISSION;
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "permission '%s' is not granted",
                        quote(q, sizeof(q), str_or_empty(permission)));
        return -1;
    }
    if (denial != NULL)
        *denial = check_denial[best.check];
    report_denial(&best, err);
    return -1;
}
