/*
 * policy.c: loading the policy file (policy.h, docs/AUTHORIZATION.md) into
 * its compiled form (policy_priv.h). Evaluation is in policy_eval.c.
 *
 * Every error names the file, the line and the key path, e.g.
 * "policy.yaml:12: roles.ci.driver_config.max_cpu: invalid quantity '-1':
 * must not be negative". Role names in bindings are resolved to indexes and
 * each role's reach is tabulated for every permission of the API, so that
 * evaluation does no lookups by name and no permission globbing.
 */
#include "internal.h"

#include "policy.h"

#include "policy_priv.h"
#include "rule.h"
#include "yaml_node.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>

/* Larger files are refused: a policy is a page or two of YAML. */
#define POLICY_MAX_BYTES (16u * 1024 * 1024)
/* Nodes visited; bounds what aliases can multiply. */
#define POLICY_MAX_NODES 1000000u
#define PATH_LEN 320
#define NAME_MAX_LEN 128

struct loader {
    yaml_document_t *doc;
    const char *name;
    struct sg_error *err;
    struct sg_policy *p;
    size_t visits;
    /* The first issuer with token_review: true, checked against the
       authentication.token_review section once both are read. */
    size_t review_line;
    size_t review_issuer;
};

static void lerr(struct loader *ld, size_t line, const char *key,
                 const char *fmt, ...) SG_PRINTF(4, 5);
static void lerr(struct loader *ld, size_t line, const char *key,
                 const char *fmt, ...)
{
    char msg[SG_ERROR_MESSAGE_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (key != NULL && *key != '\0')
        sg_error_report(ld->err, SG_ERR_CONFIG, "%s:%zu: %s: %s", ld->name,
                        line, key, msg);
    else
        sg_error_report(ld->err, SG_ERR_CONFIG, "%s:%zu: %s", ld->name, line,
                        msg);
}

static void report_no_memory(struct sg_error *err)
{
    sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
}

/* ---- freeing --------------------------------------------------------- */

static void glob_list_clear(struct sg_glob_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        sg_glob_clear(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void role_clear(struct sg_policy_role *r)
{
    struct sg_glob_list *lists[] = {
        &r->tenants, &r->projects, &r->access_profiles, &r->runtime_profiles,
        &r->namespaces, &r->service_accounts, &r->credential_names,
        &r->fields, &r->runtime_classes, &r->toleration_keys,
        &r->allocation_modes, &r->templates, &r->warm_pools,
    };

    free(r->name);
    for (size_t i = 0; i < r->n_ops; i++)
        glob_list_clear(&r->ops[i].permissions);
    free(r->ops);
    free(r->reach_by_perm);
    for (size_t i = 0; i < SG_N_ELEMENTS(lists); i++)
        glob_list_clear(lists[i]);
    for (size_t i = 0; i < r->n_sources; i++) {
        sg_glob_clear(&r->sources[i].kind);
        sg_glob_clear(&r->sources[i].namespace_name);
        sg_glob_clear(&r->sources[i].name);
        sg_glob_clear(&r->sources[i].key);
    }
    free(r->sources);
    for (size_t i = 0; i < r->n_node_selector; i++) {
        sg_glob_clear(&r->node_selector[i].key);
        glob_list_clear(&r->node_selector[i].values);
    }
    free(r->node_selector);
}

static void matcher_clear(struct sg_policy_matcher *m)
{
    sg_glob_clear(&m->cert);
    free(m->issuer);
    sg_glob_clear(&m->subject);
    sg_glob_clear(&m->group);
    sg_glob_clear(&m->token);
    sg_glob_clear(&m->any_subject);
}

static void token_review_free(struct sg_policy_token_review *t)
{
    if (t == NULL)
        return;
    free(t->kubeconfig);
    free(t->context);
    strv_free(t->audiences, t->n_audiences);
    free(t);
}

static void policy_free(struct sg_policy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_issuers; i++)
        sg_jwt_issuer_config_clear(&p->issuers[i]);
    free(p->issuers);
    free(p->issuer_reviewed);
    token_review_free(p->token_review);
    for (size_t i = 0; i < p->n_tokens; i++) {
        free(p->tokens[i].name);
        explicit_bzero(p->tokens[i].sha256, sizeof(p->tokens[i].sha256));
    }
    free(p->tokens);
    for (size_t i = 0; i < p->n_roles; i++)
        role_clear(&p->roles[i]);
    free(p->roles);
    for (size_t i = 0; i < p->n_bindings; i++) {
        struct sg_policy_binding *b = &p->bindings[i];

        free(b->roles);
        for (size_t j = 0; j < b->n_subjects; j++)
            matcher_clear(&b->subjects[j]);
        free(b->subjects);
    }
    free(p->bindings);
    free(p->perms);
    free(p);
}

/* ---- YAML nodes ------------------------------------------------------ */

static yaml_node_t *get_node(struct loader *ld, int id)
{
    return yaml_document_get_node(ld->doc, id);
}

static int visit(struct loader *ld, const yaml_node_t *node, const char *key)
{
    if (++ld->visits > POLICY_MAX_NODES) {
        lerr(ld, sg_yaml_line(node), key,
             "the policy is too large (more than %u YAML nodes)",
             POLICY_MAX_NODES);
        return -1;
    }
    return 0;
}

static int expect_type(struct loader *ld, const yaml_node_t *node,
                       const char *key, yaml_node_type_t type,
                       const char *what)
{
    if (visit(ld, node, key) < 0)
        return -1;
    if (node->type != type) {
        lerr(ld, sg_yaml_line(node), key, "expected a %s, got a %s", what,
             sg_yaml_kind_name(node));
        return -1;
    }
    return 0;
}

/* A key path for messages; an over-long one ends in "...". */
static void path_done(char *out, int n)
{
    if (n < 0 || n >= PATH_LEN)
        memcpy(out + PATH_LEN - 4, "...", 4);
}

static void join(char *out, const char *base, const char *key)
{
    path_done(out, snprintf(out, PATH_LEN, "%s%s%s", base,
                            *base != '\0' ? "." : "", key));
}

static void join_index(char *out, const char *base, size_t i)
{
    path_done(out, snprintf(out, PATH_LEN, "%s[%zu]", base, i));
}

/*
 * Check that every key of the mapping node is a scalar and that none
 * repeats (libyaml keeps duplicates). dup_what names what a repeat is.
 */
static int check_mapping(struct loader *ld, yaml_node_t *map,
                         const char *path, const char *dup_what)
{
    yaml_node_pair_t *start;
    yaml_node_pair_t *top;

    if (expect_type(ld, map, path, YAML_MAPPING_NODE, "mapping") < 0)
        return -1;
    start = map->data.mapping.pairs.start;
    top = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *pair = start; pair < top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);

        if (key->type != YAML_SCALAR_NODE) {
            lerr(ld, sg_yaml_line(key), path, "expected a scalar key, got a %s",
                 sg_yaml_kind_name(key));
            return -1;
        }
        for (yaml_node_pair_t *prev = start; prev < pair; prev++) {
            yaml_node_t *pk = get_node(ld, prev->key);

            if (STREQ(sg_yaml_text(pk), sg_yaml_text(key))) {
                char full[PATH_LEN];

                join(full, path, sg_yaml_text(key));
                lerr(ld, sg_yaml_line(key), full, "duplicate %s (first on "
                     "line %zu)", dup_what, sg_yaml_line(pk));
                return -1;
            }
        }
    }
    return 0;
}

static int unknown_key(struct loader *ld, const yaml_node_t *key,
                       const char *path)
{
    lerr(ld, sg_yaml_line(key), path, "unknown key");
    return -1;
}

/* ---- scalars --------------------------------------------------------- */

/* A scalar's text; a null node is "". */
static const char *get_text(struct loader *ld, yaml_node_t *node,
                            const char *path)
{
    if (expect_type(ld, node, path, YAML_SCALAR_NODE, "string") < 0)
        return NULL;
    return sg_yaml_is_null(node) ? "" : sg_yaml_text(node);
}

static int get_string(struct loader *ld, yaml_node_t *node, const char *path,
                      char **out)
{
    const char *text = get_text(ld, node, path);

    if (text == NULL)
        return -1;
    if (*text == '\0') {
        lerr(ld, sg_yaml_line(node), path, "must not be empty");
        return -1;
    }
    for (const char *c = text; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            lerr(ld, sg_yaml_line(node), path, "contains a control character");
            return -1;
        }
    }
    free(*out);
    *out = strdup(text);
    if (*out == NULL) {
        report_no_memory(ld->err);
        return -1;
    }
    return 0;
}

static int get_bool(struct loader *ld, yaml_node_t *node, const char *path,
                    bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    const char *text = get_text(ld, node, path);

    if (text == NULL)
        return -1;
    for (size_t i = 0; i < SG_N_ELEMENTS(yes); i++) {
        if (STREQ(text, yes[i])) {
            *out = true;
            return 0;
        }
        if (STREQ(text, no[i])) {
            *out = false;
            return 0;
        }
    }
    lerr(ld, sg_yaml_line(node), path, "expected true or false, got '%s'",
         text);
    return -1;
}

static int get_unsigned(struct loader *ld, yaml_node_t *node,
                        const char *path, unsigned min, unsigned max,
                        unsigned *out)
{
    const char *text = get_text(ld, node, path);
    unsigned long long v = 0;

    if (text == NULL)
        return -1;
    if (*text == '\0') {
        lerr(ld, sg_yaml_line(node), path, "expected a number");
        return -1;
    }
    for (const char *c = text; *c != '\0'; c++) {
        if (*c < '0' || *c > '9') {
            lerr(ld, sg_yaml_line(node), path, "expected a number, got '%s'",
                 text);
            return -1;
        }
        v = v * 10 + (unsigned)(*c - '0');
        if (v > max)
            break;
    }
    if (v < min || v > max) {
        lerr(ld, sg_yaml_line(node), path, "must be between %u and %u", min,
             max);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* Names of roles and static tokens appear in subjects and logs. */
static int get_name(struct loader *ld, const yaml_node_t *node,
                    const char *path, const char *text)
{
    size_t len = strlen(text);

    if (len == 0 || len > NAME_MAX_LEN) {
        lerr(ld, sg_yaml_line(node), path, "a name must have 1 to %d characters",
             NAME_MAX_LEN);
        return -1;
    }
    for (const char *c = text; *c != '\0'; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' ||
                  *c == '.' || *c == ':';

        if (!ok) {
            lerr(ld, sg_yaml_line(node), path, "invalid name '%s' (letters, "
                 "digits, '-', '_', '.', ':')", text);
            return -1;
        }
    }
    return 0;
}

/* ---- globs ----------------------------------------------------------- */

static int get_glob(struct loader *ld, yaml_node_t *node, const char *path,
                    bool allow_empty, struct sg_glob *out)
{
    const char *text = get_text(ld, node, path);
    const char *why;

    if (text == NULL)
        return -1;
    if (!allow_empty && *text == '\0') {
        lerr(ld, sg_yaml_line(node), path, "must not be empty");
        return -1;
    }
    why = sg_glob_problem(text);
    if (why != NULL) {
        lerr(ld, sg_yaml_line(node), path, "bad glob '%s': %s", text, why);
        return -1;
    }
    sg_glob_clear(out);
    if (sg_glob_compile(out, text) < 0) {
        report_no_memory(ld->err);
        return -1;
    }
    return 0;
}

/*
 * The sequence at node, with a zeroed array of as many elements of size
 * elem in *arr (NULL for none) and its items in *items. if_empty: the
 * message an empty sequence gets, or NULL when one is allowed. Returns
 * the count, or -1 (reported).
 */
static long sequence_array(struct loader *ld, yaml_node_t *node,
                           const char *path, size_t elem,
                           const char *if_empty, void **arr,
                           yaml_node_item_t **items)
{
    size_t n;

    *arr = NULL;
    if (expect_type(ld, node, path, YAML_SEQUENCE_NODE, "sequence") < 0)
        return -1;
    *items = node->data.sequence.items.start;
    n = (size_t)(node->data.sequence.items.top - *items);
    if (n == 0 && if_empty) {
        lerr(ld, sg_yaml_line(node), path, "%s", if_empty);
        return -1;
    }
    if (n == 0)
        return 0;
    *arr = calloc(n, elem);
    if (*arr == NULL) {
        report_no_memory(ld->err);
        return -1;
    }
    return (long)n;
}

static int get_glob_list(struct loader *ld, yaml_node_t *node,
                         const char *path, struct sg_glob_list *out)
{
    yaml_node_item_t *start;
    void *arr;
    long n = sequence_array(ld, node, path, sizeof(*out->items), NULL, &arr,
                            &start);

    if (n < 0)
        return -1;
    glob_list_clear(out);
    out->set = true;
    out->items = arr;
    out->n = (size_t)n;
    for (size_t i = 0; i < out->n; i++) {
        char ipath[PATH_LEN];

        join_index(ipath, path, i);
        if (get_glob(ld, get_node(ld, start[i]), ipath, true,
                     &out->items[i]) < 0)
            return -1;
        if (out->items[i].kind == SG_GLOB_ANY)
            out->any = true;
    }
    return 0;
}

/* ---- quantities ------------------------------------------------------ */

static bool mul10(uint64_t *v)
{
    if (*v > UINT64_MAX / 10)
        return false;
    *v *= 10;
    return true;
}

int sg_policy_parse_quantity(const char *text, bool millis, uint64_t *out,
                             const char **why)
{
    static const struct {
        const char *suffix;
        int exp10;
        unsigned exp2;
    } suffixes[] = {
        {"Ki", 0, 10}, {"Mi", 0, 20}, {"Gi", 0, 30}, {"Ti", 0, 40},
        {"Pi", 0, 50}, {"Ei", 0, 60}, {"n", -9, 0}, {"u", -6, 0},
        {"m", -3, 0}, {"k", 3, 0}, {"M", 6, 0}, {"G", 9, 0},
        {"T", 12, 0}, {"P", 15, 0}, {"E", 18, 0}, {"", 0, 0},
    };
    const char *s = text;
    uint64_t mant = 0;
    uint64_t v;
    long exp10 = 0;
    unsigned exp2 = 0;
    size_t pending_zeros = 0; /* zeros not yet multiplied into mant */
    long frac_digits = 0;
    bool digits = false;
    bool point = false;
    bool known = false;

    if (*s == '-') {
        *why = "must not be negative";
        return -1;
    }
    if (*s == '+')
        s++;
    for (; (*s >= '0' && *s <= '9') || *s == '.'; s++) {
        if (*s == '.') {
            if (point) {
                *why = "is not a number";
                return -1;
            }
            point = true;
            continue;
        }
        digits = true;
        if (point)
            frac_digits++;
        if (*s == '0') {
            pending_zeros++;
            continue;
        }
        /* Trailing zeros are never multiplied in, so "1.000...0" and
           "100...0" with long runs of zeros do not overflow early. */
        if (mant != 0) {
            for (size_t i = 0; i <= pending_zeros; i++) {
                if (!mul10(&mant)) {
                    *why = "is too large or too precise";
                    return -1;
                }
            }
        }
        if (mant > UINT64_MAX - (uint64_t)(*s - '0')) {
            *why = "is too large or too precise";
            return -1;
        }
        mant += (uint64_t)(*s - '0');
        pending_zeros = 0;
    }
    if (!digits) {
        *why = "is not a number";
        return -1;
    }
    exp10 = (long)pending_zeros - frac_digits;

    if ((*s == 'e' || *s == 'E') &&
        ((s[1] >= '0' && s[1] <= '9') ||
         ((s[1] == '+' || s[1] == '-') && s[2] >= '0' && s[2] <= '9'))) {
        bool neg = false;
        long e = 0;

        s++;
        if (*s == '+' || *s == '-')
            neg = *s++ == '-';
        for (; *s >= '0' && *s <= '9'; s++) {
            if (e < 100000)
                e = e * 10 + (*s - '0');
        }
        if (*s != '\0') {
            *why = "has an unknown suffix";
            return -1;
        }
        exp10 += neg ? -e : e;
        known = true;
    } else {
        for (size_t i = 0; i < SG_N_ELEMENTS(suffixes); i++) {
            if (STREQ(s, suffixes[i].suffix)) {
                exp10 += suffixes[i].exp10;
                exp2 = suffixes[i].exp2;
                known = true;
                break;
            }
        }
    }
    if (!known) {
        *why = "has an unknown suffix";
        return -1;
    }
    if (millis)
        exp10 += 3;

    v = mant;
    if (v != 0) {
        if (exp2 > 0 && v > (UINT64_MAX >> exp2)) {
            *why = "is too large";
            return -1;
        }
        v <<= exp2;
        for (; exp10 > 0; exp10--) {
            if (!mul10(&v)) {
                *why = "is too large";
                return -1;
            }
        }
        for (; exp10 < 0; exp10++) {
            if (v % 10 != 0) {
                *why = millis ? "is not a whole number of millicores"
                              : "is not a whole number of bytes";
                return -1;
            }
            v /= 10;
        }
    }
    *out = v;
    return 0;
}

static int get_quantity(struct loader *ld, yaml_node_t *node,
                        const char *path, bool millis, uint64_t *out)
{
    const char *text = get_text(ld, node, path);
    const char *why = NULL;

    if (text == NULL)
        return -1;
    if (sg_policy_parse_quantity(text, millis, out, &why) < 0) {
        lerr(ld, sg_yaml_line(node), path, "invalid quantity '%s': %s", text,
             why);
        return -1;
    }
    return 0;
}

/* ---- authentication -------------------------------------------------- */

static const char *const reserved_prefixes[] = {
    "token:", "dns:", "cn:", "local:",
};

static int load_algorithms(struct loader *ld, yaml_node_t *node,
                           const char *path, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bit;
    } algs[] = {
        {"RS256", SG_JWT_ALG_RS256},
        {"ES256", SG_JWT_ALG_ES256},
        {"EdDSA", SG_JWT_ALG_EDDSA},
    };
    yaml_node_item_t *start;
    yaml_node_item_t *top;

    if (expect_type(ld, node, path, YAML_SEQUENCE_NODE, "sequence") < 0)
        return -1;
    start = node->data.sequence.items.start;
    top = node->data.sequence.items.top;
    if (start == top) {
        lerr(ld, sg_yaml_line(node), path, "must not be empty");
        return -1;
    }
    for (yaml_node_item_t *it = start; it < top; it++) {
        yaml_node_t *item = get_node(ld, *it);
        char ipath[PATH_LEN];
        const char *text;
        bool found = false;

        join_index(ipath, path, (size_t)(it - start));
        text = get_text(ld, item, ipath);
        if (text == NULL)
            return -1;
        for (size_t i = 0; i < SG_N_ELEMENTS(algs); i++) {
            if (STREQ(text, algs[i].name)) {
                *out |= algs[i].bit;
                found = true;
            }
        }
        if (!found) {
            lerr(ld, sg_yaml_line(item), ipath, "unsupported algorithm '%s' "
                 "(RS256, ES256, EdDSA)", text);
            return -1;
        }
    }
    return 0;
}

static int load_strings(struct loader *ld, yaml_node_t *node,
                        const char *path, char ***out, size_t *n_out)
{
    yaml_node_item_t *start;
    void *arr;
    long n = sequence_array(ld, node, path, sizeof(**out),
                            "must not be empty", &arr, &start);

    if (n < 0)
        return -1;
    strv_free(*out, *n_out);
    *out = arr;
    *n_out = (size_t)n;
    for (size_t i = 0; i < *n_out; i++) {
        char ipath[PATH_LEN];

        join_index(ipath, path, i);
        if (get_string(ld, get_node(ld, start[i]), ipath, &(*out)[i]) < 0)
            return -1;
    }
    return 0;
}

/* Do two issuers stamp the same subject prefix ("<iss>#" by default)? */
static bool same_prefix(const struct sg_jwt_issuer_config *a,
                        const struct sg_jwt_issuer_config *b)
{
    const char *pa = a->subject_prefix != NULL ? a->subject_prefix
                                               : a->issuer;
    const char *pb = b->subject_prefix != NULL ? b->subject_prefix
                                               : b->issuer;
    size_t la = strlen(pa) + (a->subject_prefix == NULL);
    size_t lb = strlen(pb) + (b->subject_prefix == NULL);

    if (la != lb)
        return false;
    for (size_t i = 0; i < la; i++) {
        char ca = pa[i] != '\0' ? pa[i] : '#';
        char cb = pb[i] != '\0' ? pb[i] : '#';

        if (ca != cb)
            return false;
    }
    return true;
}

/* jwt_issuers[idx].token_review: a flag per issuer, allocated for all. */
static int load_issuer_review(struct loader *ld, const yaml_node_t *key,
                              yaml_node_t *v, const char *kp, size_t idx)
{
    struct sg_policy *p = ld->p;

    if (p->issuer_reviewed == NULL) {
        p->issuer_reviewed = calloc(p->n_issuers, sizeof(bool));
        if (p->issuer_reviewed == NULL) {
            report_no_memory(ld->err);
            return -1;
        }
    }
    if (get_bool(ld, v, kp, &p->issuer_reviewed[idx]) < 0)
        return -1;
    if (p->issuer_reviewed[idx] && ld->review_line == 0) {
        ld->review_line = sg_yaml_line(key);
        ld->review_issuer = idx;
    }
    return 0;
}

static int load_issuer(struct loader *ld, yaml_node_t *map, const char *path,
                       size_t idx)
{
    struct sg_jwt_issuer_config *c = &ld->p->issuers[idx];
    size_t source_line[3] = {0, 0, 0};
    static const char *const source_keys[] = {"jwks_file", "jwks_uri",
                                              "discovery"};
    size_t first_source = SIZE_MAX;

    if (check_mapping(ld, map, path, "key") < 0)
        return -1;
    c->clock_skew_s = 60;
    c->refresh_interval_s = 3600;
    c->min_refresh_interval_s = 60;
    c->max_token_bytes = 16384;

    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);
        yaml_node_t *v = get_node(ld, pair->value);
        const char *k = sg_yaml_text(key);
        char kp[PATH_LEN];
        int rc;

        join(kp, path, k);
        if (STREQ(k, "issuer")) {
            rc = get_string(ld, v, kp, &c->issuer);
        } else if (STREQ(k, "audiences")) {
            rc = load_strings(ld, v, kp, &c->audiences, &c->n_audiences);
        } else if (STREQ(k, "algorithms")) {
            rc = load_algorithms(ld, v, kp, &c->algorithms);
        } else if (STREQ(k, "jwks_file")) {
            rc = get_string(ld, v, kp, &c->jwks_file);
            source_line[0] = sg_yaml_line(key);
        } else if (STREQ(k, "jwks_uri")) {
            rc = get_string(ld, v, kp, &c->jwks_uri);
            if (rc == 0 && !STRPREFIX(c->jwks_uri, "https://") &&
                !STRPREFIX(c->jwks_uri, "http://")) {
                lerr(ld, sg_yaml_line(v), kp, "expected an https:// URL");
                rc = -1;
            }
            source_line[1] = sg_yaml_line(key);
        } else if (STREQ(k, "discovery")) {
            rc = get_bool(ld, v, kp, &c->discovery);
            if (c->discovery)
                source_line[2] = sg_yaml_line(key);
        } else if (STREQ(k, "ca_file")) {
            rc = get_string(ld, v, kp, &c->ca_file);
        } else if (STREQ(k, "clock_skew_s")) {
            rc = get_unsigned(ld, v, kp, 0, 3600, &c->clock_skew_s);
        } else if (STREQ(k, "subject_claim")) {
            rc = get_string(ld, v, kp, &c->subject_claim);
        } else if (STREQ(k, "groups_claim")) {
            rc = get_string(ld, v, kp, &c->groups_claim);
        } else if (STREQ(k, "subject_prefix")) {
            rc = get_string(ld, v, kp, &c->subject_prefix);
            for (size_t i = 0; rc == 0 && i < SG_N_ELEMENTS(reserved_prefixes);
                 i++) {
                if (STRPREFIX(c->subject_prefix, reserved_prefixes[i])) {
                    lerr(ld, sg_yaml_line(v), kp, "'%s' is reserved for other "
                         "kinds of subject", reserved_prefixes[i]);
                    rc = -1;
                }
            }
        } else if (STREQ(k, "refresh_interval_s")) {
            rc = get_unsigned(ld, v, kp, 1, 604800, &c->refresh_interval_s);
        } else if (STREQ(k, "min_refresh_interval_s")) {
            rc = get_unsigned(ld, v, kp, 1, 86400,
                              &c->min_refresh_interval_s);
        } else if (STREQ(k, "max_token_bytes")) {
            rc = get_unsigned(ld, v, kp, 512, 1048576, &c->max_token_bytes);
        } else if (STREQ(k, "token_review")) {
            rc = load_issuer_review(ld, key, v, kp, idx);
        } else {
            rc = unknown_key(ld, key, kp);
        }
        if (rc < 0)
            return -1;
    }

    {
        static const char *const required[] = {"issuer", "audiences",
                                               "algorithms"};
        bool have[] = {c->issuer != NULL, c->audiences != NULL,
                       c->algorithms != 0};

        for (size_t i = 0; i < SG_N_ELEMENTS(required); i++) {
            char kp[PATH_LEN];

            if (have[i])
                continue;
            join(kp, path, required[i]);
            lerr(ld, sg_yaml_line(map), kp, "required");
            return -1;
        }
    }
    for (size_t i = 0; i < SG_N_ELEMENTS(source_keys); i++) {
        char kp[PATH_LEN];

        if (source_line[i] == 0)
            continue;
        if (first_source == SIZE_MAX) {
            first_source = i;
            continue;
        }
        join(kp, path, source_keys[i]);
        lerr(ld, source_line[i], kp, "cannot be combined with %s",
             source_keys[first_source]);
        return -1;
    }
    if (first_source == SIZE_MAX) {
        lerr(ld, sg_yaml_line(map), path, "needs one of jwks_file, jwks_uri "
             "or discovery: true");
        return -1;
    }
    if (c->subject_claim == NULL) {
        c->subject_claim = strdup("sub");
        if (c->subject_claim == NULL) {
            report_no_memory(ld->err);
            return -1;
        }
    }

    /* Identities of two issuers must never share a subject. */
    for (size_t i = 0; i < idx; i++) {
        const struct sg_jwt_issuer_config *o = &ld->p->issuers[i];
        char kp[PATH_LEN];

        if (STREQ(o->issuer, c->issuer)) {
            join(kp, path, "issuer");
            lerr(ld, sg_yaml_line(map), kp, "issuer '%s' is configured twice",
                 c->issuer);
            return -1;
        }
        if (same_prefix(o, c)) {
            join(kp, path, "subject_prefix");
            lerr(ld, sg_yaml_line(map), kp, "the subject prefix of issuer '%s' "
                 "too", o->issuer);
            return -1;
        }
    }
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int load_token(struct loader *ld, yaml_node_t *map, const char *path,
                      size_t idx)
{
    struct sg_policy_token *t = &ld->p->tokens[idx];
    bool have_hash = false;

    if (check_mapping(ld, map, path, "key") < 0)
        return -1;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);
        yaml_node_t *v = get_node(ld, pair->value);
        const char *k = sg_yaml_text(key);
        char kp[PATH_LEN];

        join(kp, path, k);
        if (STREQ(k, "name")) {
            if (get_string(ld, v, kp, &t->name) < 0 ||
                get_name(ld, v, kp, t->name) < 0)
                return -1;
        } else if (STREQ(k, "sha256")) {
            const char *text = get_text(ld, v, kp);
            size_t len;

            if (text == NULL)
                return -1;
            len = strlen(text);
            for (size_t i = 0; i < len && len == 64; i++) {
                if (hex_value(text[i]) < 0)
                    len = 0;
            }
            /* Never quote it: it is as good as the token to a guesser of
               weak tokens. */
            if (len != 64) {
                lerr(ld, sg_yaml_line(v), kp, "expected 64 hexadecimal "
                     "characters (the SHA-256 of the token)");
                return -1;
            }
            for (size_t i = 0; i < 32; i++)
                t->sha256[i] = (uint8_t)(hex_value(text[2 * i]) * 16 +
                                         hex_value(text[2 * i + 1]));
            have_hash = true;
        } else {
            return unknown_key(ld, key, kp);
        }
    }
    if (t->name == NULL || !have_hash) {
        char kp[PATH_LEN];

        join(kp, path, t->name == NULL ? "name" : "sha256");
        lerr(ld, sg_yaml_line(map), kp, "required");
        return -1;
    }
    for (size_t i = 0; i < idx; i++) {
        char kp[PATH_LEN];

        if (STREQ(ld->p->tokens[i].name, t->name)) {
            join(kp, path, "name");
            lerr(ld, sg_yaml_line(map), kp, "duplicate static token name '%s'",
                 t->name);
            return -1;
        }
        if (memcmp(ld->p->tokens[i].sha256, t->sha256, 32) == 0) {
            join(kp, path, "sha256");
            lerr(ld, sg_yaml_line(map), kp, "the same token as '%s'",
                 ld->p->tokens[i].name);
            return -1;
        }
    }
    return 0;
}

/* A sequence of mappings, each loaded by fn into slot i of an array of
   n_out elements of size elem (allocated here). */
static int load_items(struct loader *ld, yaml_node_t *node, const char *path,
                      void **arr, size_t *n_out, size_t elem,
                      int (*fn)(struct loader *, yaml_node_t *, const char *,
                                size_t))
{
    yaml_node_item_t *start;
    long n;

    if (sg_yaml_is_null(node))
        return 0;
    n = sequence_array(ld, node, path, elem, NULL, arr, &start);
    if (n < 0)
        return -1;
    *n_out = (size_t)n;
    for (size_t i = 0; i < (size_t)n; i++) {
        char ipath[PATH_LEN];

        join_index(ipath, path, i);
        if (fn(ld, get_node(ld, start[i]), ipath, i) < 0)
            return -1;
    }
    return 0;
}

/* Exactly one of in_cluster: true and kubeconfig; context needs the
   kubeconfig. */
static int check_token_review(struct loader *ld, const yaml_node_t *map,
                              const char *path, size_t kubeconfig_line)
{
    const struct sg_policy_token_review *t = ld->p->token_review;
    char kp[PATH_LEN];

    if (t->in_cluster && t->kubeconfig != NULL) {
        join(kp, path, "kubeconfig");
        lerr(ld, kubeconfig_line, kp, "cannot be combined with in_cluster: "
             "true");
        return -1;
    }
    if (!t->in_cluster && t->kubeconfig == NULL) {
        lerr(ld, sg_yaml_line(map), path, "needs in_cluster: true or "
             "kubeconfig");
        return -1;
    }
    if (t->context != NULL && t->kubeconfig == NULL) {
        join(kp, path, "context");
        lerr(ld, sg_yaml_line(map), kp, "needs kubeconfig");
        return -1;
    }
    return 0;
}

/* authentication.token_review: how to reach the Kubernetes API. */
static int load_token_review(struct loader *ld, yaml_node_t *map,
                             const char *path)
{
    struct sg_policy_token_review *t;
    size_t kubeconfig_line = 0;

    if (check_mapping(ld, map, path, "key") < 0)
        return -1;
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        report_no_memory(ld->err);
        return -1;
    }
    ld->p->token_review = t;
    t->cache_ttl_s = 10;
    t->negative_cache_ttl_s = 5;
    t->timeout_ms = 2000;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);
        yaml_node_t *v = get_node(ld, pair->value);
        const char *k = sg_yaml_text(key);
        char kp[PATH_LEN];
        int rc;

        join(kp, path, k);
        if (STREQ(k, "in_cluster")) {
            rc = get_bool(ld, v, kp, &t->in_cluster);
        } else if (STREQ(k, "kubeconfig")) {
            rc = get_string(ld, v, kp, &t->kubeconfig);
            kubeconfig_line = sg_yaml_line(key);
        } else if (STREQ(k, "context")) {
            rc = get_string(ld, v, kp, &t->context);
        } else if (STREQ(k, "audiences")) {
            rc = load_strings(ld, v, kp, &t->audiences, &t->n_audiences);
        } else if (STREQ(k, "cache_ttl_s")) {
            rc = get_unsigned(ld, v, kp, 0, 3600, &t->cache_ttl_s);
        } else if (STREQ(k, "negative_cache_ttl_s")) {
            rc = get_unsigned(ld, v, kp, 0, 3600, &t->negative_cache_ttl_s);
        } else if (STREQ(k, "timeout_ms")) {
            rc = get_unsigned(ld, v, kp, 100, 60000, &t->timeout_ms);
        } else {
            rc = unknown_key(ld, key, kp);
        }
        if (rc < 0)
            return -1;
    }
    return check_token_review(ld, map, path, kubeconfig_line);
}

static int load_authentication(struct loader *ld, yaml_node_t *map)
{
    if (sg_yaml_is_null(map))
        return 0;
    if (check_mapping(ld, map, "authentication", "key") < 0)
        return -1;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);
        yaml_node_t *v = get_node(ld, pair->value);
        const char *k = sg_yaml_text(key);
        char kp[PATH_LEN];
        int rc;

        join(kp, "authentication", k);
        if (STREQ(k, "jwt_issuers"))
            rc = load_items(ld, v, kp, (void **)&ld->p->issuers,
                            &ld->p->n_issuers, sizeof(*ld->p->issuers),
                            load_issuer);
        else if (STREQ(k, "static_tokens"))
            rc = load_items(ld, v, kp, (void **)&ld->p->tokens,
                            &ld->p->n_tokens, sizeof(*ld->p->tokens),
                            load_token);
        else if (STREQ(k, "token_review"))
            rc = load_token_review(ld, v, kp);
        else
            rc = unknown_key(ld, key, kp);
        if (rc < 0)
            return -1;
    }
    if (ld->review_line != 0 && ld->p->token_review == NULL) {
        char kp[PATH_LEN];

        path_done(kp, snprintf(kp, PATH_LEN,
                               "authentication.jwt_issuers[%zu].token_review",
                               ld->review_issuer));
        lerr(ld, ld->review_line, kp, "needs an authentication.token_review "
             "section");
        return -1;
    }
    return 0;
}

/* ---- roles ----------------------------------------------------------- */

static struct sg_policy_role *cur_role(struct loader *ld, size_t idx)
{
    return &ld->p->roles[idx];
}

static int load_op(struct loader *ld, yaml_node_t *map, const char *path,
                   struct sg_policy_op *op)
{
    bool have_perms = false;

    if (check_mapping(ld, map, path, "key") < 0)
        return -1;
    op->reach = SG_REACH_OWN;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);
        yaml_node_t *v = get_node(ld, pair->value);
        const char *k = sg_yaml_text(key);
        char kp[PATH_LEN];

        join(kp, path, k);
        if (STREQ(k, "permissions")) {
            if (get_glob_list(ld, v, kp, &op->permissions) < 0)
                return -1;
            if (op->permissions.n == 0) {
                lerr(ld, sg_yaml_line(v), kp, "must not be empty");
                return -1;
            }
            /* A permission no RPC checks is a typo that grants nothing. */
            for (size_t i = 0; i < op->permissions.n; i++) {
                bool used = false;
                char ip[PATH_LEN];

                for (size_t j = 0; j < ld->p->n_perms && !used; j++)
                    used = sg_glob_matches(&op->permissions.items[i],
                                           ld->p->perms[j]);
                if (!used) {
                    join_index(ip, kp, i);
                    lerr(ld, sg_yaml_line(v), ip, "'%s' matches no permission "
                         "of the API", op->permissions.items[i].text);
                    return -1;
                }
            }
            have_perms = true;
        } else if (STREQ(k, "on")) {
            const char *text = get_text(ld, v, kp);

            if (text == NULL)
                return -1;
            if (STREQ(text, "own")) {
                op->reach = SG_REACH_OWN;
            } else if (STREQ(text, "tenant")) {
                op->reach = SG_REACH_TENANT;
            } else if (STREQ(text, "any")) {
                op->reach = SG_REACH_ANY;
            } else {
                lerr(ld, sg_yaml_line(v), kp, "expected own, tenant or any, "
                     "got '%s'", text);
                return -1;
            }
        } else {
            return unknown_key(ld, key, kp);
        }
    }
    if (!have_perms) {
        char kp[PATH_LEN];

        join(kp, path, "permissions");
        lerr(ld, sg_yaml_line(map), kp, "required");
        return -1;
    }
    return 0;
}

static int load_ops(struct loader *ld, yaml_node_t *node, const char *path,
                    struct sg_policy_role *r)
{
    yaml_node_item_t *start;
    void *arr;
    long n = sequence_array(ld, node, path, sizeof(*r->ops), NULL, &arr,
                            &start);

    if (n < 0)
        return -1;
    r->ops = arr;
    r->n_ops = (size_t)n;
    for (size_t i = 0; i < r->n_ops; i++) {
        char ipath[PATH_LEN];

        join_index(ipath, path, i);
        if (load_op(ld, get_node(ld, start[i]), ipath, &r->ops[i]) < 0)
            return -1;
    }
    return 0;
}

static int load_source(struct loader *ld, yaml_node_t *map, const char *path,
                       struct sg_policy_source *s)
{
    struct {
        const char *key;
        struct sg_glob *g;
    } keys[] = {
        {"kind", &s->kind},
        {"namespace", &s->namespace_name},
        {"name", &s->name},
        {"key", &s->key},
    };

    if (check_mapping(ld, map, path, "key") < 0)
        return -1;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);
        const char *k = sg_yaml_text(key);
        char kp[PATH_LEN];
        bool found = false;

        join(kp, path, k);
        for (size_t i = 0; i < SG_N_ELEMENTS(keys) && !found; i++) {
            if (!STREQ(k, keys[i].key))
                continue;
            found = true;
            if (get_glob(ld, get_node(ld, pair->value), kp, i != 0,
                         keys[i].g) < 0)
                return -1;
        }
        if (!found)
            return unknown_key(ld, key, kp);
    }
    if (s->kind.text == NULL) {
        char kp[PATH_LEN];

        join(kp, path, "kind");
        lerr(ld, sg_yaml_line(map), kp, "required");
        return -1;
    }
    /* A field left out allows only the empty value, as lists do. */
    for (size_t i = 1; i < SG_N_ELEMENTS(keys); i++) {
        if (keys[i].g->text == NULL && sg_glob_compile(keys[i].g, "") < 0) {
            report_no_memory(ld->err);
            return -1;
        }
    }
    return 0;
}

static int load_credentials(struct loader *ld, yaml_node_t *map,
                            const char *path, struct sg_policy_role *r)
{
    if (check_mapping(ld, map, path, "key") < 0)
        return -1;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);
        yaml_node_t *v = get_node(ld, pair->value);
        const char *k = sg_yaml_text(key);
        char kp[PATH_LEN];

        join(kp, path, k);
        if (STREQ(k, "names")) {
            if (get_glob_list(ld, v, kp, &r->credential_names) < 0)
                return -1;
        } else if (STREQ(k, "sources")) {
            yaml_node_item_t *start;
            void *arr;
            long n = sequence_array(ld, v, kp, sizeof(*r->sources), NULL,
                                    &arr, &start);

            if (n < 0)
                return -1;
            r->sources = arr;
            r->n_sources = (size_t)n;
            for (size_t i = 0; i < r->n_sources; i++) {
                char ip[PATH_LEN];

                join_index(ip, kp, i);
                if (load_source(ld, get_node(ld, start[i]), ip,
                                &r->sources[i]) < 0)
                    return -1;
            }
        } else {
            return unknown_key(ld, key, kp);
        }
    }
    return 0;
}

static int load_node_selector(struct loader *ld, yaml_node_t *map,
                              const char *path, struct sg_policy_role *r)
{
    yaml_node_pair_t *start;
    size_t n;

    if (check_mapping(ld, map, path, "key") < 0)
        return -1;
    r->node_selector_set = true;
    start = map->data.mapping.pairs.start;
    n = (size_t)(map->data.mapping.pairs.top - start);
    if (n == 0)
        return 0;
    r->node_selector = calloc(n, sizeof(*r->node_selector));
    if (r->node_selector == NULL) {
        report_no_memory(ld->err);
        return -1;
    }
    r->n_node_selector = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *key = get_node(ld, start[i].key);
        char kp[PATH_LEN];

        join(kp, path, sg_yaml_text(key));
        if (get_glob(ld, key, kp, false, &r->node_selector[i].key) < 0 ||
            get_glob_list(ld, get_node(ld, start[i].value), kp,
                          &r->node_selector[i].values) < 0)
            return -1;
    }
    return 0;
}

#define ROLE_LIST(name) {#name, offsetof(struct sg_policy_role, name)}

/* A role key that holds a glob list, and where the list lives. */
struct list_key {
    const char *key;
    size_t offset; /* of the struct sg_glob_list in the role */
};

/* If k is one of lists, load v into that list of r (*rc: its result)
   and return true. */
static bool load_listed(struct loader *ld, const struct list_key *lists,
                        size_t n, const char *k, yaml_node_t *v,
                        const char *kp, struct sg_policy_role *r, int *rc)
{
    for (size_t i = 0; i < n; i++) {
        if (STREQ(k, lists[i].key)) {
            *rc = get_glob_list(ld, v, kp,
                                (struct sg_glob_list *)(void *)(
                                    (char *)r + lists[i].offset));
            return true;
        }
    }
    return false;
}

static int load_driver_config(struct loader *ld, yaml_node_t *map,
                              const char *path, struct sg_policy_role *r)
{
    static const struct list_key lists[] = {
        ROLE_LIST(fields), ROLE_LIST(runtime_classes),
        ROLE_LIST(toleration_keys), ROLE_LIST(allocation_modes),
        ROLE_LIST(templates), ROLE_LIST(warm_pools),
    };

    if (check_mapping(ld, map, path, "key") < 0)
        return -1;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);
        yaml_node_t *v = get_node(ld, pair->value);
        const char *k = sg_yaml_text(key);
        char kp[PATH_LEN];
        int rc = 0;

        join(kp, path, k);
        if (load_listed(ld, lists, SG_N_ELEMENTS(lists), k, v, kp, r, &rc)) {
            /* a glob list of the role */
        } else if (STREQ(k, "node_selector")) {
            rc = load_node_selector(ld, v, kp, r);
        } else if (STREQ(k, "max_cpu")) {
            rc = get_quantity(ld, v, kp, true, &r->max_cpu_millis);
            r->has_max_cpu = true;
        } else if (STREQ(k, "max_memory")) {
            rc = get_quantity(ld, v, kp, false, &r->max_memory_bytes);
            r->has_max_memory = true;
        } else {
            rc = unknown_key(ld, key, kp);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int load_role(struct loader *ld, yaml_node_t *key, yaml_node_t *map,
                     size_t idx)
{
    static const struct list_key lists[] = {
        ROLE_LIST(tenants), ROLE_LIST(projects), ROLE_LIST(access_profiles),
        ROLE_LIST(runtime_profiles), ROLE_LIST(namespaces),
        ROLE_LIST(service_accounts),
    };
    struct sg_policy_role *r = cur_role(ld, idx);
    char path[PATH_LEN];

    join(path, "roles", sg_yaml_text(key));
    if (get_name(ld, key, path, sg_yaml_text(key)) < 0)
        return -1;
    r->name = strdup(sg_yaml_text(key));
    if (r->name == NULL) {
        report_no_memory(ld->err);
        return -1;
    }
    if (check_mapping(ld, map, path, "key") < 0)
        return -1;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *k_node = get_node(ld, pair->key);
        yaml_node_t *v = get_node(ld, pair->value);
        const char *k = sg_yaml_text(k_node);
        char kp[PATH_LEN];
        int rc = 0;

        join(kp, path, k);
        if (load_listed(ld, lists, SG_N_ELEMENTS(lists), k, v, kp, r, &rc)) {
            /* a glob list of the role */
        } else if (STREQ(k, "operations")) {
            rc = load_ops(ld, v, kp, r);
        } else if (STREQ(k, "credentials")) {
            rc = load_credentials(ld, v, kp, r);
        } else if (STREQ(k, "driver_config")) {
            rc = load_driver_config(ld, v, kp, r);
        } else if (STREQ(k, "attach_policy")) {
            rc = get_bool(ld, v, kp, &r->attach_policy);
        } else {
            rc = unknown_key(ld, k_node, kp);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int load_roles(struct loader *ld, yaml_node_t *map)
{
    yaml_node_pair_t *start;
    size_t n;

    if (sg_yaml_is_null(map))
        return 0;
    if (check_mapping(ld, map, "roles", "role") < 0)
        return -1;
    start = map->data.mapping.pairs.start;
    n = (size_t)(map->data.mapping.pairs.top - start);
    if (n == 0)
        return 0;
    if (n > SG_POLICY_MAX_ROLES) {
        lerr(ld, sg_yaml_line(map), "roles", "too many roles (at most %d)",
             SG_POLICY_MAX_ROLES);
        return -1;
    }
    ld->p->roles = calloc(n, sizeof(*ld->p->roles));
    if (ld->p->roles == NULL) {
        report_no_memory(ld->err);
        return -1;
    }
    ld->p->n_roles = n;
    for (size_t i = 0; i < n; i++) {
        if (load_role(ld, get_node(ld, start[i].key),
                      get_node(ld, start[i].value), i) < 0)
            return -1;
    }
    return 0;
}

/* ---- bindings -------------------------------------------------------- */

static int load_matcher(struct loader *ld, yaml_node_t *map, const char *path,
                        struct sg_policy_matcher *m)
{
    static const struct {
        const char *key;
        unsigned bit;
    } keys[] = {
        {"spiffe", SG_MATCH_SPIFFE},   {"dns", SG_MATCH_DNS},
        {"cn", SG_MATCH_CN},           {"issuer", SG_MATCH_ISSUER},
        {"subject", SG_MATCH_SUBJECT}, {"group", SG_MATCH_GROUP},
        {"token", SG_MATCH_TOKEN},     {"any_subject", SG_MATCH_ANY_SUBJECT},
    };
    /* Keys that describe one kind of identity; an entry may mix keys of
       one class (plus any_subject), never two. */
    const unsigned cert = SG_MATCH_SPIFFE | SG_MATCH_DNS | SG_MATCH_CN;
    const unsigned jwt = SG_MATCH_ISSUER | SG_MATCH_SUBJECT | SG_MATCH_GROUP;
    size_t subject_line = 0;

    if (check_mapping(ld, map, path, "key") < 0)
        return -1;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);
        yaml_node_t *v = get_node(ld, pair->value);
        const char *k = sg_yaml_text(key);
        char kp[PATH_LEN];
        unsigned bit = 0;
        unsigned others;
        int rc;

        join(kp, path, k);
        for (size_t i = 0; i < SG_N_ELEMENTS(keys); i++) {
            if (STREQ(k, keys[i].key))
                bit = keys[i].bit;
        }
        if (bit == 0)
            return unknown_key(ld, key, kp);
        others = m->keys & ~SG_MATCH_ANY_SUBJECT;
        if (bit != SG_MATCH_ANY_SUBJECT && others != 0 &&
            !((bit & jwt) && (others & ~jwt) == 0)) {
            const char *first = "?";

            for (size_t i = 0; i < SG_N_ELEMENTS(keys); i++) {
                if (others & keys[i].bit) {
                    first = keys[i].key;
                    break;
                }
            }
            lerr(ld, sg_yaml_line(key), kp, "cannot be combined with '%s' in "
                 "one subject", first);
            return -1;
        }
        m->keys |= bit;
        if (bit & cert)
            rc = get_glob(ld, v, kp, false, &m->cert);
        else if (bit == SG_MATCH_ISSUER)
            rc = get_string(ld, v, kp, &m->issuer);
        else if (bit == SG_MATCH_SUBJECT)
            rc = get_glob(ld, v, kp, false, &m->subject);
        else if (bit == SG_MATCH_GROUP)
            rc = get_glob(ld, v, kp, false, &m->group);
        else if (bit == SG_MATCH_TOKEN)
            rc = get_glob(ld, v, kp, false, &m->token);
        else
            rc = get_glob(ld, v, kp, false, &m->any_subject);
        if (rc < 0)
            return -1;
        if (bit == SG_MATCH_SUBJECT)
            subject_line = sg_yaml_line(key);
    }
    if (m->keys == 0) {
        lerr(ld, sg_yaml_line(map), path, "empty subject matcher");
        return -1;
    }
    /* Without an issuer, "subject" would match any issuer's subjects. */
    if ((m->keys & SG_MATCH_SUBJECT) && !(m->keys & SG_MATCH_ISSUER)) {
        char kp[PATH_LEN];

        join(kp, path, "subject");
        lerr(ld, subject_line, kp, "needs issuer in the same subject");
        return -1;
    }
    if ((m->keys & SG_MATCH_ISSUER) && m->subject.text == NULL &&
        sg_glob_compile(&m->subject, "*") < 0) {
        report_no_memory(ld->err);
        return -1;
    }
    return 0;
}

static int load_binding_roles(struct loader *ld, yaml_node_t *node,
                              const char *path, struct sg_policy_binding *b)
{
    yaml_node_item_t *start;
    void *arr;
    long n = sequence_array(ld, node, path, sizeof(*b->roles),
                            "must name at least one role", &arr, &start);

    if (n < 0)
        return -1;
    b->roles = arr;
    b->n_roles = (size_t)n;
    for (size_t i = 0; i < b->n_roles; i++) {
        yaml_node_t *item = get_node(ld, start[i]);
        char ip[PATH_LEN];
        const char *name;
        bool found = false;

        join_index(ip, path, i);
        name = get_text(ld, item, ip);
        if (name == NULL)
            return -1;
        for (size_t j = 0; j < ld->p->n_roles && !found; j++) {
            if (STREQ(ld->p->roles[j].name, name)) {
                b->roles[i] = j;
                found = true;
            }
        }
        if (!found) {
            lerr(ld, sg_yaml_line(item), ip, "unknown role '%s'", name);
            return -1;
        }
    }
    return 0;
}

static int load_binding(struct loader *ld, yaml_node_t *map, const char *path,
                        size_t idx)
{
    struct sg_policy_binding *b = &ld->p->bindings[idx];

    if (check_mapping(ld, map, path, "key") < 0)
        return -1;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);
        yaml_node_t *v = get_node(ld, pair->value);
        const char *k = sg_yaml_text(key);
        char kp[PATH_LEN];

        join(kp, path, k);
        if (STREQ(k, "roles")) {
            if (load_binding_roles(ld, v, kp, b) < 0)
                return -1;
        } else if (STREQ(k, "subjects")) {
            yaml_node_item_t *start;
            void *arr;
            long n = sequence_array(ld, v, kp, sizeof(*b->subjects),
                                    "must name at least one subject", &arr,
                                    &start);

            if (n < 0)
                return -1;
            b->subjects = arr;
            b->n_subjects = (size_t)n;
            for (size_t i = 0; i < b->n_subjects; i++) {
                char ip[PATH_LEN];

                join_index(ip, kp, i);
                if (load_matcher(ld, get_node(ld, start[i]), ip,
                                 &b->subjects[i]) < 0)
                    return -1;
            }
        } else {
            return unknown_key(ld, key, kp);
        }
    }
    if (b->roles == NULL || b->subjects == NULL) {
        char kp[PATH_LEN];

        join(kp, path, b->roles == NULL ? "roles" : "subjects");
        lerr(ld, sg_yaml_line(map), kp, "required");
        return -1;
    }
    return 0;
}

/* ---- the document ---------------------------------------------------- */

/* The permissions of the API, from the generated rule table. */
static int collect_perms(struct sg_policy *p)
{
    p->perms = calloc(2 * sg_authz_n_rules + 1, sizeof(*p->perms));
    if (p->perms == NULL)
        return -1;
    for (size_t i = 0; i < sg_authz_n_rules; i++) {
        const struct sg_authz_rule *r = sg_authz_rule_at(i);
        const char *names[] = {r->permission, r->visibility_permission};

        for (size_t k = 0; k < SG_N_ELEMENTS(names); k++) {
            bool seen = names[k] == NULL || *names[k] == '\0';

            for (size_t j = 0; j < p->n_perms && !seen; j++)
                seen = STREQ(p->perms[j], names[k]);
            if (!seen)
                p->perms[p->n_perms++] = names[k];
        }
    }
    return 0;
}

static int tabulate_reach(struct sg_policy *p)
{
    for (size_t i = 0; i < p->n_roles; i++) {
        struct sg_policy_role *r = &p->roles[i];

        r->reach_by_perm = calloc(p->n_perms + 1, 1);
        if (r->reach_by_perm == NULL)
            return -1;
        for (size_t j = 0; j < p->n_perms; j++) {
            for (size_t k = 0; k < r->n_ops; k++) {
                if (r->ops[k].reach > r->reach_by_perm[j] &&
                    sg_glob_list_allows(&r->ops[k].permissions, p->perms[j]))
                    r->reach_by_perm[j] = (uint8_t)r->ops[k].reach;
            }
        }
    }
    return 0;
}

static int load_root(struct loader *ld, yaml_node_t *root)
{
    yaml_node_t *sections[3] = {NULL, NULL, NULL};
    static const char *const names[] = {"authentication", "roles",
                                        "bindings"};

    if (check_mapping(ld, root, "", "key") < 0)
        return -1;
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = get_node(ld, pair->key);
        bool found = false;

        for (size_t i = 0; i < SG_N_ELEMENTS(names) && !found; i++) {
            if (STREQ(sg_yaml_text(key), names[i])) {
                sections[i] = get_node(ld, pair->value);
                found = true;
            }
        }
        if (!found)
            return unknown_key(ld, key, sg_yaml_text(key));
    }
    /* Roles before bindings, whatever the order in the file. */
    if (sections[0] != NULL && load_authentication(ld, sections[0]) < 0)
        return -1;
    if (sections[1] != NULL && load_roles(ld, sections[1]) < 0)
        return -1;
    if (sections[2] != NULL &&
        load_items(ld, sections[2], "bindings", (void **)&ld->p->bindings,
                   &ld->p->n_bindings, sizeof(*ld->p->bindings),
                   load_binding) < 0)
        return -1;
    if (tabulate_reach(ld->p) < 0) {
        report_no_memory(ld->err);
        return -1;
    }
    return 0;
}

static int load_document(struct loader *ld, yaml_parser_t *parser)
{
    yaml_document_t doc;
    yaml_node_t *root;
    int ret = -1;

    if (sg_yaml_load(parser, ld->name, &doc, ld->err) < 0)
        return -1;
    ld->doc = &doc;
    root = yaml_document_get_root_node(&doc);
    /* An empty file is a truncated write far more often than a wish to
       deny everything, so it does not replace the policy in force. */
    if (root == NULL || sg_yaml_is_null(root)) {
        lerr(ld, 1, NULL, "the policy is empty");
        goto cleanup;
    }
    if (load_root(ld, root) < 0 ||
        sg_yaml_expect_end(parser, ld->name, ld->err) < 0)
        goto cleanup;
    ret = 0;

 cleanup:
    yaml_document_delete(&doc);
    ld->doc = NULL;
    return ret;
}

struct sg_policy *sg_policy_load_data(const char *name, const char *text,
                                      size_t len, struct sg_error *err)
{
    struct sg_policy *p = NULL;
    struct loader ld = {.name = name, .err = err};
    yaml_parser_t parser;
    bool have_parser = false;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    static const char hex[] = "0123456789abcdef";
    char *d;

    if (len > POLICY_MAX_BYTES) {
        sg_error_report(err, SG_ERR_CONFIG, "%s: the policy is larger than "
                        "%u bytes", name, POLICY_MAX_BYTES);
        goto cleanup;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL || collect_perms(p) < 0)
        goto nomem;
    atomic_init(&p->refs, 1);
    if (EVP_Digest(text, len, md, &md_len, EVP_sha256(), NULL) != 1 ||
        md_len != 32) {
        sg_error_report(err, SG_ERR_INTERNAL, "%s: SHA-256 failed", name);
        goto cleanup;
    }
    d = p->digest;
    memcpy(d, "sha256:", 7);
    d += 7;
    for (unsigned i = 0; i < md_len; i++) {
        *d++ = hex[md[i] >> 4];
        *d++ = hex[md[i] & 15];
    }
    *d = '\0';

    if (!yaml_parser_initialize(&parser))
        goto nomem;
    have_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    ld.p = p;
    if (load_document(&ld, &parser) < 0)
        goto cleanup;
    yaml_parser_delete(&parser);
    return p;

 nomem:
    report_no_memory(err);
 cleanup:
    if (have_parser)
        yaml_parser_delete(&parser);
    policy_free(p);
    return NULL;
}

struct sg_policy *sg_policy_load_file(const char *path, struct sg_error *err)
{
    struct sg_policy *p = NULL;
    FILE *f = NULL;
    char *data = NULL;
    size_t len = 0;
    size_t cap = 0;
    char reason[128];

    f = fopen(path, "re");
    if (f == NULL) {
        sg_error_report(err, SG_ERR_CONFIG, "cannot open '%s': %s", path,
                        sg_strerror(errno, reason, sizeof(reason)));
        goto cleanup;
    }
    for (;;) {
        size_t got;

        if (len == cap) {
            char *bigger;

            if (cap > POLICY_MAX_BYTES) {
                sg_error_report(err, SG_ERR_CONFIG, "%s: the policy is "
                                "larger than %u bytes", path,
                                POLICY_MAX_BYTES);
                goto cleanup;
            }
            cap = cap == 0 ? 16384 : cap * 2;
            bigger = realloc(data, cap);
            if (bigger == NULL) {
                report_no_memory(err);
                goto cleanup;
            }
            data = bigger;
        }
        got = fread(data + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        sg_error_report(err, SG_ERR_CONFIG, "cannot read '%s'", path);
        goto cleanup;
    }
    p = sg_policy_load_data(path, data != NULL ? data : "", len, err);

 cleanup:
    if (f != NULL)
        fclose(f);
    free(data);
    return p;
}

struct sg_policy *sg_policy_ref(struct sg_policy *p)
{
    if (p != NULL)
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void sg_policy_unref(struct sg_policy *p)
{
    if (p == NULL)
        return;
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        policy_free(p);
}

const char *sg_policy_digest(const struct sg_policy *p)
{
    return p != NULL ? p->digest : "";
}

size_t sg_policy_n_issuers(const struct sg_policy *p)
{
    return p != NULL ? p->n_issuers : 0;
}

const struct sg_jwt_issuer_config *sg_policy_issuer(const struct sg_policy *p,
                                                    size_t i)
{
    return p != NULL && i < p->n_issuers ? &p->issuers[i] : NULL;
}

size_t sg_policy_n_tokens(const struct sg_policy *p)
{
    return p != NULL ? p->n_tokens : 0;
}

const struct sg_policy_token *sg_policy_token(const struct sg_policy *p,
                                              size_t i)
{
    return p != NULL && i < p->n_tokens ? &p->tokens[i] : NULL;
}

const struct sg_policy_token_review *sg_policy_token_review(
    const struct sg_policy *p)
{
    return p != NULL ? p->token_review : NULL;
}

bool sg_policy_issuer_reviewed(const struct sg_policy *p, const char *issuer)
{
    if (p == NULL || p->issuer_reviewed == NULL || issuer == NULL)
        return false;
    for (size_t i = 0; i < p->n_issuers; i++) {
        if (STREQ(p->issuers[i].issuer, issuer))
            return p->issuer_reviewed[i];
    }
    return false;
}
