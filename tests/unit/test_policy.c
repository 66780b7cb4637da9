/*
 * test_policy.c: the policy file (authz/policy.c) and its evaluation
 * (authz/policy_eval.c, authz/glob.c): load errors over
 * tests/data/policy/bad/, the documented example, every subject matcher,
 * reach, scopes that never combine across roles, every denial with its
 * message, missing lists, quantities, globs and the accessors.
 */
#include "internal.h"

#include "policy.h"
#include "policy_priv.h"
#include "testutils.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

#define POLICY_DATA SG_TEST_DATA_DIR "/policy"

static const char *const perm_create = "sandboxes.create";

/* ---- helpers --------------------------------------------------------- */

static struct sg_policy *load_text(const char *text)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_policy *p = sg_policy_load_data("t.yaml", text, strlen(text),
                                              &err);

    ck_assert_msg(p != NULL, "load failed: %s", err.message);
    ck_assert(!sg_error_is_set(&err));
    return p;
}

static void expect_load_error(const char *text, const char *expected)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_policy *p = sg_policy_load_data("t.yaml", text, strlen(text),
                                              &err);

    ck_assert_ptr_null(p);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_msg(strstr(err.message, expected) != NULL,
                  "expected '%s' in '%s'", expected, err.message);
}

static struct sg_identity *make_cert(enum sg_cert_name which,
                                     const char *name)
{
    char subject[512];
    struct sg_identity *id;

    snprintf(subject, sizeof(subject), "%s%s",
             which == SG_CERT_NAME_URI   ? ""
             : which == SG_CERT_NAME_DNS ? "dns:"
                                         : "cn:",
             name);
    id = sg_identity_new(SG_IDENTITY_CERT, subject, name);
    ck_assert_ptr_nonnull(id);
    id->cert_name = which;
    return id;
}

static struct sg_identity *make_jwt(const char *iss, const char *name,
                                    const char *group1, const char *group2)
{
    char subject[512];
    struct sg_identity *id;

    snprintf(subject, sizeof(subject), "%s#%s", iss, name);
    id = sg_identity_new(SG_IDENTITY_JWT, subject, name);
    ck_assert_ptr_nonnull(id);
    ck_assert_int_eq(sg_identity_set_issuer(id, iss), 0);
    if (group1 != NULL)
        ck_assert_int_eq(sg_identity_add_group(id, group1), 0);
    if (group2 != NULL)
        ck_assert_int_eq(sg_identity_add_group(id, group2), 0);
    return id;
}

static struct sg_identity *make_token(const char *name)
{
    char subject[512];
    struct sg_identity *id;

    snprintf(subject, sizeof(subject), "token:%s", name);
    id = sg_identity_new(SG_IDENTITY_TOKEN, subject, name);
    ck_assert_ptr_nonnull(id);
    return id;
}

static struct sg_identity *make_local(void)
{
    struct sg_identity *id = sg_identity_new(SG_IDENTITY_LOCAL,
                                             "local:unauthenticated",
                                             "unauthenticated");

    ck_assert_ptr_nonnull(id);
    return id;
}

/* The applicable roles' names, comma-separated, in file order. */
static void roles_text(const struct sg_policy *p, const struct sg_identity *id,
                       char *out, size_t len)
{
    const char *names[16];
    size_t n = sg_policy_roles_of(p, id, names, SG_N_ELEMENTS(names));
    size_t used = 0;

    out[0] = '\0';
    ck_assert_uint_le(n, SG_N_ELEMENTS(names));
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + used, len - used, "%s%s", i > 0 ? "," : "",
                         names[i]);

        ck_assert(w > 0 && (size_t)w < len - used);
        used += (size_t)w;
    }
}

/* ---- globs ----------------------------------------------------------- */

static const struct {
    const char *pattern;
    const char *s;
    bool match;
} glob_cases[] = {
    {"", "", true},
    {"", "a", false},
    {"*", "", true},
    {"*", "anything/at/all", true},
    {"**", "", true},
    {"?", "", false},
    {"?", "a", true},
    {"?", "ab", false},
    {"a*", "a", true},
    {"a*", "ba", false},
    {"*a", "ba", true},
    {"*a", "ab", false},
    {"a?c", "abc", true},
    {"a?c", "ac", false},
    {"team-*", "team-a", true},
    {"team-*", "team-", true},
    {"team-*", "team", false},
    {"team-*", "TEAM-a", false},
    {"*-git", "team-a-git", true},
    {"team-*-git", "team-a-git", true},
    {"team-*-git", "team-git", false},
    {"*/*", "a/b/c", true},
    {"spiffe://cluster.local/ns/*/sa/controller",
     "spiffe://cluster.local/ns/platform/sa/controller", true},
    {"spiffe://cluster.local/ns/*/sa/controller",
     "spiffe://cluster.local/ns/platform/sa/other", false},
    {"a*b*c", "aXbYc", true},
    {"a*b*c", "aXbYd", false},
    {"a*b*c", "abcbc", true},
    {"*x", "xxxxy", false},
    {"*ss*ss*", "mississippi", true},
    {"m*iss*ppi", "mississippi", true},
    {"m*iss*ppix", "mississippi", false},
    {"\\*", "*", true},
    {"\\*", "a", false},
    {"a\\*", "ab", false},
    {"a\\?", "a?", true},
    {"a\\?", "ab", false},
    {"\\\\", "\\", true},
    {"*\\*", "abc*", true},
    {"*\\*", "abc", false},
    {"?", "\xc3\xa9", true},          /* one character, two bytes */
    {"??", "\xc3\xa9", false},
    {"caf?", "caf\xc3\xa9", true},
    {"*\xc3\xa9", "caf\xc3\xa9", true},
    {"*?", "", false},
    {"*?", "x", true},
    {"?*?", "x", false},
    {"?*?", "xy", true},
};

START_TEST(test_glob)
{
    ck_assert_msg(sg_glob_match(glob_cases[_i].pattern, glob_cases[_i].s) ==
                      glob_cases[_i].match,
                  "'%s' against '%s'", glob_cases[_i].pattern,
                  glob_cases[_i].s);
}
END_TEST

START_TEST(test_glob_compiled)
{
    struct sg_glob g = {0};
    bool want = glob_cases[_i].match;

    /* Compiled globs (literal fast path, '*' fast path) agree with the
       matcher on every case. */
    if (sg_glob_problem(glob_cases[_i].pattern) != NULL)
        return;
    ck_assert_int_eq(sg_glob_compile(&g, glob_cases[_i].pattern), 0);
    ck_assert_msg(sg_glob_matches(&g, glob_cases[_i].s) == want,
                  "compiled '%s' against '%s'", glob_cases[_i].pattern,
                  glob_cases[_i].s);
    sg_glob_clear(&g);
}
END_TEST

START_TEST(test_glob_kinds)
{
    struct sg_glob g = {0};

    ck_assert_int_eq(sg_glob_compile(&g, "**"), 0);
    ck_assert_int_eq(g.kind, SG_GLOB_ANY);
    sg_glob_clear(&g);
    ck_assert_int_eq(sg_glob_compile(&g, "a\\*b"), 0);
    ck_assert_int_eq(g.kind, SG_GLOB_EXACT);
    ck_assert_str_eq(g.text, "a*b");
    ck_assert(sg_glob_matches(&g, "a*b"));
    ck_assert(!sg_glob_matches(&g, "axb"));
    sg_glob_clear(&g);
    ck_assert_int_eq(sg_glob_compile(&g, "a?"), 0);
    ck_assert_int_eq(g.kind, SG_GLOB_PATTERN);
    sg_glob_clear(&g);

    ck_assert_ptr_null(sg_glob_problem("a\\*\\?\\\\b*"));
    ck_assert_ptr_nonnull(sg_glob_problem("a\\b"));
    ck_assert_ptr_nonnull(sg_glob_problem("trailing\\"));
    ck_assert_ptr_nonnull(sg_glob_problem("tab\there"));
    ck_assert(!sg_glob_match(NULL, "a"));
    ck_assert(!sg_glob_match("a", NULL));
}
END_TEST

/* Patterns that take exponential time in a recursive matcher. The test
   finishing at all (under the suite's timeout) is the assertion on cost;
   the results are asserted too. */
START_TEST(test_glob_pathological)
{
    size_t n = 200000;
    char *s = malloc(n + 2);
    char pattern[256];

    ck_assert_ptr_nonnull(s);
    memset(s, 'a', n);
    s[n] = '\0';
    ck_assert(!sg_glob_match("*a*a*a*a*b", s));
    ck_assert(sg_glob_match("*a*a*a*a*a", s));
    ck_assert(!sg_glob_match("*?*?*?*?*?*?*?*?b", s));
    ck_assert(sg_glob_match("a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a", s));
    memset(pattern, 0, sizeof(pattern));
    for (size_t i = 0; i < 60; i++)
        memcpy(pattern + 2 * i, "*a", 2);
    memcpy(pattern + 120, "*b", 2);
    ck_assert(!sg_glob_match(pattern, s));
    s[n] = 'b';
    s[n + 1] = '\0';
    ck_assert(sg_glob_match(pattern, s));
    ck_assert(sg_glob_match("*a*a*a*a*b", s));
    free(s);
}
END_TEST

/* ---- quantities ------------------------------------------------------ */

static const struct {
    const char *text;
    bool millis;
    int rc;
    uint64_t value;
    const char *why;
} quantity_cases[] = {
    {"500m", true, 0, 500, NULL},
    {"2", true, 0, 2000, NULL},
    {"1.5", true, 0, 1500, NULL},
    {"0.1", true, 0, 100, NULL},
    {".5", true, 0, 500, NULL},
    {"+1", true, 0, 1000, NULL},
    {"00004", true, 0, 4000, NULL},
    {"1e3", true, 0, 1000000, NULL},
    {"1e-3", true, 0, 1, NULL},
    {"2.000000000000000000000000000000", true, 0, 2000, NULL},
    {"1000000u", true, 0, 1000, NULL},
    {"0", true, 0, 0, NULL},
    {"0.0001", true, -1, 0, "is not a whole number of millicores"},
    {"0.5m", true, -1, 0, "is not a whole number of millicores"},
    {"-1", true, -1, 0, "must not be negative"},
    {"-500m", true, -1, 0, "must not be negative"},
    {"512Mi", false, 0, 536870912ull, NULL},
    {"2Gi", false, 0, 2147483648ull, NULL},
    {"8Gi", false, 0, 8589934592ull, NULL},
    {"1.5Ki", false, 0, 1536, NULL},
    {"1G", false, 0, 1000000000ull, NULL},
    {"1k", false, 0, 1000, NULL},
    {"1000", false, 0, 1000, NULL},
    {"1e9", false, 0, 1000000000ull, NULL},
    {"1E9", false, 0, 1000000000ull, NULL},
    {"1E", false, 0, 1000000000000000000ull, NULL},
    {"15Ei", false, 0, 15ull << 60, NULL},
    {"16Ei", false, -1, 0, "is too large"},
    {"18446744073709551615", false, 0, UINT64_MAX, NULL},
    {"18446744073709551616", false, -1, 0, "is too large or too precise"},
    {"1e20", false, -1, 0, "is too large"},
    {"1e999999999999", false, -1, 0, "is too large"},
    {"0e999999999999", false, 0, 0, NULL},
    {"1m", false, -1, 0, "is not a whole number of bytes"},
    {"0.5", false, -1, 0, "is not a whole number of bytes"},
    {"", false, -1, 0, "is not a number"},
    {".", false, -1, 0, "is not a number"},
    {"Gi", false, -1, 0, "is not a number"},
    {"1.2.3", false, -1, 0, "is not a number"},
    {"abc", false, -1, 0, "is not a number"},
    {"12Kb", false, -1, 0, "has an unknown suffix"},
    {"1K", false, -1, 0, "has an unknown suffix"},
    {"1 Gi", false, -1, 0, "has an unknown suffix"},
    {"1e", false, -1, 0, "has an unknown suffix"},
    {"1e3x", false, -1, 0, "has an unknown suffix"},
    {"1Gi ", false, -1, 0, "has an unknown suffix"},
};

START_TEST(test_quantity)
{
    uint64_t v = 12345;
    const char *why = NULL;
    int rc = sg_policy_parse_quantity(quantity_cases[_i].text,
                                      quantity_cases[_i].millis, &v, &why);

    ck_assert_msg(rc == quantity_cases[_i].rc, "'%s': rc %d",
                  quantity_cases[_i].text, rc);
    if (rc == 0) {
        ck_assert_msg(v == quantity_cases[_i].value, "'%s': %llu",
                      quantity_cases[_i].text, (unsigned long long)v);
    } else {
        ck_assert_ptr_nonnull(why);
        ck_assert_str_eq(why, quantity_cases[_i].why);
    }
}
END_TEST

/* ---- load errors ----------------------------------------------------- */

static const struct {
    const char *file;
    const char *expected; /* after the file name */
} bad_files[] = {
    {"unknown-top.yaml", ":5: rolez: unknown key"},
    {"unknown-role-key.yaml", ":3: roles.r.tenats: unknown key"},
    {"wrong-type-list.yaml",
     ":3: roles.r.tenants: expected a sequence, got a scalar"},
    {"unknown-role-in-binding.yaml",
     ":6: bindings[0].roles[1]: unknown role 'nope'"},
    {"duplicate-role.yaml", ":4: roles.r: duplicate role (first on line 2)"},
    {"empty-matcher.yaml", ":7: bindings[0].subjects[1]: empty subject "
                           "matcher"},
    {"bad-on.yaml", ":5: roles.r.operations[0].on: expected own, tenant or "
                    "any, got 'everything'"},
    {"bad-algorithm.yaml", ":5: authentication.jwt_issuers[0].algorithms[1]: "
                           "unsupported algorithm 'HS256' (RS256, ES256, "
                           "EdDSA)"},
    {"token-hash-short.yaml", ":4: authentication.static_tokens[0].sha256: "
                              "expected 64 hexadecimal characters"},
    {"token-hash-not-hex.yaml", ":4: authentication.static_tokens[0].sha256: "
                                "expected 64 hexadecimal characters"},
    {"duplicate-token.yaml", ":5: authentication.static_tokens[1].name: "
                             "duplicate static token name 'dev'"},
    {"duplicate-token-hash.yaml", ":5: authentication.static_tokens[1]."
                                  "sha256: the same token as 'dev'"},
    {"negative-cpu.yaml", ":4: roles.r.driver_config.max_cpu: invalid "
                          "quantity '-1': must not be negative"},
    {"bad-memory-suffix.yaml", ":5: roles.r.driver_config.max_memory: "
                               "invalid quantity '12Kb': has an unknown "
                               "suffix"},
    {"cpu-too-fine.yaml", ":4: roles.r.driver_config.max_cpu: invalid "
                          "quantity '0.0001': is not a whole number of "
                          "millicores"},
    {"binding-no-roles.yaml", ":4: bindings[0].roles: must name at least "
                              "one role"},
    {"binding-no-subjects.yaml", ":4: bindings[0].subjects: required"},
    {"issuer-no-key-source.yaml", ":3: authentication.jwt_issuers[0]: needs "
                                  "one of jwks_file, jwks_uri or discovery: "
                                  "true"},
    {"issuer-two-key-sources.yaml", ":7: authentication.jwt_issuers[0]."
                                    "jwks_uri: cannot be combined with "
                                    "jwks_file"},
    {"issuer-no-audiences.yaml", ":3: authentication.jwt_issuers[0]."
                                 "audiences: required"},
    {"bad-glob.yaml", ":3: roles.r.tenants[1]: bad glob 'team-\\a': a "
                      "backslash must be followed by '*', '?' or '\\'"},
    {"unknown-permission.yaml", ":4: roles.r.operations[0].permissions[1]: "
                                "'sandbox.create' matches no permission of "
                                "the API"},
    {"subject-without-issuer.yaml", ":6: bindings[0].subjects[0].subject: "
                                    "needs issuer in the same subject"},
    {"mixed-matcher.yaml", ":7: bindings[0].subjects[0].token: cannot be "
                           "combined with 'spiffe' in one subject"},
    {"bad-bool.yaml", ":3: roles.r.attach_policy: expected true or false, "
                      "got 'yes'"},
    {"duplicate-key.yaml", ":5: roles.r.tenants: duplicate key (first on "
                           "line 3)"},
    {"bad-clock-skew.yaml", ":7: authentication.jwt_issuers[0].clock_skew_s: "
                            "expected a number, got 'soon'"},
    {"clock-skew-range.yaml", ":7: authentication.jwt_issuers[0]."
                              "clock_skew_s: must be between 0 and 3600"},
    {"empty.yaml", ":1: the policy is empty"},
    {"syntax.yaml", ":4: YAML syntax error"},
    {"top-sequence.yaml", ":1: expected a mapping, got a sequence"},
    {"two-documents.yaml", ":2: expected a single YAML document"},
    {"bad-role-name.yaml", ":2: roles.bad name: invalid name 'bad name'"},
    {"reserved-prefix.yaml", ":7: authentication.jwt_issuers[0]."
                             "subject_prefix: 'token:' is reserved"},
    {"duplicate-issuer.yaml", ":7: authentication.jwt_issuers[1].issuer: "
                              "issuer 'https://issuer.example' is configured "
                              "twice"},
    {"shared-prefix.yaml", ":8: authentication.jwt_issuers[1]."
                           "subject_prefix: the subject prefix of issuer "
                           "'https://a.example' too"},
    {"node-selector-scalar.yaml", ":5: roles.r.driver_config.node_selector."
                                  "pool: expected a sequence, got a scalar"},
    {"source-no-kind.yaml", ":6: roles.r.credentials.sources[0].kind: "
                            "required"},
    {"bad-token-name.yaml", ":3: authentication.static_tokens[0].name: "
                            "invalid name 'dev token'"},
    {"empty-permissions.yaml", ":4: roles.r.operations[0].permissions: must "
                               "not be empty"},
    {"operations-mapping.yaml", ":4: roles.r.operations: expected a "
                                "sequence, got a mapping"},
    {"jwks-uri-scheme.yaml", ":6: authentication.jwt_issuers[0].jwks_uri: "
                             "expected an https:// URL"},
    {"empty-subject-glob.yaml", ":6: bindings[0].subjects[0].spiffe: must "
                                "not be empty"},
    {"token-no-hash.yaml", ":3: authentication.static_tokens[0].sha256: "
                           "required"},
    {"unknown-driver-key.yaml", ":5: roles.r.driver_config.host_network: "
                                "unknown key"},
    {"unknown-source-key.yaml", ":5: roles.r.credentials.sources[0].secret: "
                                "unknown key"},
};

START_TEST(test_bad_file)
{
    char path[512];
    char expected[640];
    struct sg_error err = SG_ERROR_INIT;
    struct sg_policy *p;

    snprintf(path, sizeof(path), "%s/bad/%s", POLICY_DATA,
             bad_files[_i].file);
    snprintf(expected, sizeof(expected), "%s%s", path,
             bad_files[_i].expected);
    p = sg_policy_load_file(path, &err);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_msg(STRPREFIX(err.message, expected), "%s: got '%s'",
                  bad_files[_i].file, err.message);
    /* A token's hash is never quoted back. */
    ck_assert_ptr_null(strstr(err.message, "5e884898"));
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_missing_file)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_ptr_null(sg_policy_load_file(POLICY_DATA "/nope.yaml", &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.message, "cannot open '"));
    ck_assert_ptr_nonnull(strstr(err.message, "nope.yaml"));
}
END_TEST

START_TEST(test_load_errors_inline)
{
    /* Wrong types where mappings and scalars are expected. */
    expect_load_error("roles: [a]\n",
                      "t.yaml:1: roles: expected a mapping, got a sequence");
    expect_load_error("roles:\n  r:\n    operations:\n      - permissions: "
                      "[sandboxes.get]\n        on: [any]\n",
                      "t.yaml:5: roles.r.operations[0].on: expected a "
                      "string, got a sequence");
    expect_load_error("roles:\n  r:\n    driver_config: [fields]\n",
                      "t.yaml:3: roles.r.driver_config: expected a mapping");
    expect_load_error("bindings:\n  - roles: [r]\n    subjects: [{token: "
                      "x}]\n",
                      "t.yaml:2: bindings[0].roles[0]: unknown role 'r'");
    expect_load_error("bindings:\n  - {subjects: [{token: x}], roles: x}\n",
                      "t.yaml:2: bindings[0].roles: expected a sequence");
    expect_load_error("roles:\n  r:\n    operations:\n      - on: any\n",
                      "t.yaml:4: roles.r.operations[0].permissions: "
                      "required");
    expect_load_error("roles:\n  r:\n    namespaces: [\"ns-\\x01\"]\n",
                      "roles.r.namespaces[0]: bad glob");
    expect_load_error("roles:\n  r: {}\nbindings:\n  - roles: [r]\n    "
                      "subjects:\n      - {spiffe: a, dns: b}\n",
                      "t.yaml:6: bindings[0].subjects[0].dns: cannot be "
                      "combined with 'spiffe'");
    expect_load_error("roles:\n  r: {}\nbindings:\n  - roles: [r]\n    "
                      "subjects:\n      - {group: a, token: b}\n",
                      "t.yaml:6: bindings[0].subjects[0].token: cannot be "
                      "combined with 'group'");
    expect_load_error("roles:\n  r: {}\nbindings:\n  - roles: [r]\n    "
                      "subjects:\n      - {who: a}\n",
                      "t.yaml:6: bindings[0].subjects[0].who: unknown key");
    expect_load_error("roles:\n  r:\n    credentials: {names: [a], names: "
                      "[b]}\n",
                      "t.yaml:3: roles.r.credentials.names: duplicate key");
    expect_load_error("authentication:\n  jwt_issuers:\n    - issuer: i\n"
                      "      audiences: []\n      algorithms: [RS256]\n"
                      "      discovery: true\n",
                      "t.yaml:4: authentication.jwt_issuers[0].audiences: "
                      "must not be empty");
    expect_load_error("authentication:\n  jwt_issuers:\n    - issuer: i\n"
                      "      audiences: [a]\n      algorithms: [none]\n"
                      "      discovery: true\n",
                      "unsupported algorithm 'none'");
    expect_load_error("authentication:\n  oidc: {}\n",
                      "t.yaml:2: authentication.oidc: unknown key");
}
END_TEST

/* ---- the documented example ------------------------------------------ */

static void check_example(const struct sg_policy *p)
{
    const struct sg_jwt_issuer_config *iss;
    const struct sg_policy_token *tok;
    struct sg_identity *ctl = make_cert(
        SG_CERT_NAME_URI, "spiffe://cluster.local/ns/platform/sa/controller");
    struct sg_identity *sa = make_jwt(
        "https://kubernetes.default.svc.cluster.local",
        "system:serviceaccount:platform:controller", NULL, NULL);
    struct sg_identity *viewer = make_jwt("https://other.example", "alice",
                                          "team-a-viewers", NULL);
    struct sg_identity *dev = make_token("dev");
    char roles[256];

    ck_assert_uint_eq(sg_policy_n_issuers(p), 1);
    iss = sg_policy_issuer(p, 0);
    ck_assert_str_eq(iss->issuer,
                     "https://kubernetes.default.svc.cluster.local");
    ck_assert_uint_eq(iss->n_audiences, 1);
    ck_assert_str_eq(iss->audiences[0], "sandgate");
    ck_assert_uint_eq(iss->algorithms, SG_JWT_ALG_RS256);
    ck_assert_str_eq(iss->jwks_file, "/etc/sandgate/sa-jwks.json");
    ck_assert_str_eq(iss->subject_prefix, "k8s:");
    ck_assert_str_eq(iss->groups_claim, "groups");
    ck_assert_uint_eq(sg_policy_n_tokens(p), 1);
    tok = sg_policy_token(p, 0);
    ck_assert_str_eq(tok->name, "dev");
    ck_assert_uint_eq(tok->sha256[0], 0x5e);
    ck_assert_uint_eq(tok->sha256[31], 0xd8);

    roles_text(p, ctl, roles, sizeof(roles));
    ck_assert_str_eq(roles, "platform-controller");
    roles_text(p, sa, roles, sizeof(roles));
    ck_assert_str_eq(roles, "platform-controller");
    roles_text(p, viewer, roles, sizeof(roles));
    ck_assert_str_eq(roles, "tenant-reader");
    roles_text(p, dev, roles, sizeof(roles));
    ck_assert_str_eq(roles, "tenant-reader");

    ck_assert_int_eq(sg_policy_reach(p, ctl, "sandboxes.delete"),
                     SG_REACH_ANY);
    ck_assert_int_eq(sg_policy_reach(p, ctl, "credentials.get"),
                     SG_REACH_NONE);
    ck_assert_int_eq(sg_policy_reach(p, dev, "sandboxes.get"),
                     SG_REACH_TENANT);
    ck_assert_int_eq(sg_policy_reach(p, dev, "sandboxes.create"),
                     SG_REACH_NONE);
    ck_assert(sg_policy_allows_credential_source(
        p, ctl, "sandboxes.create", NULL, "kubernetes-secret", "sbx-team-a",
        "git", "token"));
    ck_assert(!sg_policy_allows_credential_source(
        p, ctl, "sandboxes.create", NULL, "kubernetes-secret", "kube-system",
        "git", "token"));
    sg_identity_unref(ctl);
    sg_identity_unref(sa);
    sg_identity_unref(viewer);
    sg_identity_unref(dev);
}

START_TEST(test_example_file)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_policy *p = sg_policy_load_file(POLICY_DATA "/example.yaml",
                                              &err);

    ck_assert_msg(p != NULL, "%s", err.message);
    check_example(p);
    sg_policy_unref(p);
}
END_TEST

/* The example in docs/AUTHORIZATION.md itself, so the doc cannot drift. */
START_TEST(test_doc_example)
{
    FILE *f = fopen(SG_SOURCE_ROOT "/docs/AUTHORIZATION.md", "r");
    char *doc = calloc(1, 1 << 20);
    size_t len;
    const char *start;
    const char *end;
    struct sg_error err = SG_ERROR_INIT;
    struct sg_policy *p;

    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(doc);
    len = fread(doc, 1, (1 << 20) - 1, f);
    fclose(f);
    ck_assert_uint_gt(len, 0);
    start = strstr(doc, "```yaml\nauthentication:");
    ck_assert_ptr_nonnull(start);
    start += strlen("```yaml\n");
    end = strstr(start, "```");
    ck_assert_ptr_nonnull(end);
    p = sg_policy_load_data("AUTHORIZATION.md", start, (size_t)(end - start),
                            &err);
    ck_assert_msg(p != NULL, "%s", err.message);
    check_example(p);
    sg_policy_unref(p);
    free(doc);
}
END_TEST

/* ---- subject matchers ------------------------------------------------ */

static const char matcher_policy[] =
    "roles:\n"
    "  spiffe-role: {}\n"
    "  dns-role: {}\n"
    "  cn-role: {}\n"
    "  issuer-role: {}\n"
    "  issuer-any-role: {}\n"
    "  group-role: {}\n"
    "  issuer-group-role: {}\n"
    "  token-role: {}\n"
    "  any-role: {}\n"
    "  combo-role: {}\n"
    "bindings:\n"
    "  - roles: [spiffe-role]\n"
    "    subjects: [{spiffe: \"spiffe://cluster.local/ns/*/sa/controller\"}]\n"
    "  - roles: [dns-role]\n"
    "    subjects: [{dns: \"*.ctl.example.com\"}]\n"
    "  - roles: [cn-role]\n"
    "    subjects: [{cn: \"controller\"}]\n"
    "  - roles: [issuer-role]\n"
    "    subjects:\n"
    "      - issuer: https://k8s.example\n"
    "        subject: \"system:serviceaccount:platform:*\"\n"
    "  - roles: [issuer-any-role]\n"
    "    subjects: [{issuer: https://idp.example}]\n"
    "  - roles: [group-role]\n"
    "    subjects: [{group: \"team-?-viewers\"}]\n"
    "  - roles: [issuer-group-role]\n"
    "    subjects: [{issuer: https://idp.example, group: admins}]\n"
    "  - roles: [token-role]\n"
    "    subjects: [{token: \"ci-*\"}, {token: dev}]\n"
    "  - roles: [any-role]\n"
    "    subjects: [{any_subject: \"local:*\"}]\n"
    "  - roles: [combo-role]\n"
    "    subjects:\n"
    "      - {spiffe: \"spiffe://*\", any_subject: \"*/sa/special\"}\n";

enum id_kind { ID_CERT_URI, ID_CERT_DNS, ID_CERT_CN, ID_JWT, ID_TOKEN,
               ID_LOCAL };

static const struct {
    enum id_kind kind;
    const char *name;
    const char *issuer;
    const char *group1;
    const char *group2;
    const char *roles;
} matcher_cases[] = {
    {ID_CERT_URI, "spiffe://cluster.local/ns/platform/sa/controller", NULL,
     NULL, NULL, "spiffe-role"},
    {ID_CERT_URI, "spiffe://cluster.local/ns/platform/sa/special", NULL, NULL,
     NULL, "combo-role"},
    {ID_CERT_URI, "spiffe://other.local/ns/platform/sa/controller", NULL,
     NULL, NULL, ""},
    /* The same text as a DNS name is not a URI SAN. */
    {ID_CERT_DNS, "spiffe://cluster.local/ns/platform/sa/controller", NULL,
     NULL, NULL, ""},
    {ID_CERT_DNS, "a.ctl.example.com", NULL, NULL, NULL, "dns-role"},
    {ID_CERT_DNS, "ctl.example.com", NULL, NULL, NULL, ""},
    {ID_CERT_URI, "x.ctl.example.com", NULL, NULL, NULL, ""},
    {ID_CERT_CN, "controller", NULL, NULL, NULL, "cn-role"},
    {ID_CERT_DNS, "controller", NULL, NULL, NULL, ""},
    {ID_CERT_CN, "controller2", NULL, NULL, NULL, ""},
    {ID_JWT, "system:serviceaccount:platform:controller",
     "https://k8s.example", NULL, NULL, "issuer-role"},
    {ID_JWT, "system:serviceaccount:tenant:controller", "https://k8s.example",
     NULL, NULL, ""},
    /* The issuer is exact, not a glob or a prefix. */
    {ID_JWT, "system:serviceaccount:platform:controller",
     "https://k8s.example/", NULL, NULL, ""},
    {ID_JWT, "anyone", "https://idp.example", NULL, NULL, "issuer-any-role"},
    {ID_JWT, "bob", "https://other.example", "team-a-viewers", NULL,
     "group-role"},
    {ID_JWT, "bob", "https://other.example", "x", "team-b-viewers",
     "group-role"},
    {ID_JWT, "bob", "https://other.example", "team-ab-viewers", NULL, ""},
    {ID_JWT, "bob", "https://other.example", "admins", NULL, ""},
    {ID_JWT, "bob", "https://idp.example", "admins", "team-c-viewers",
     "issuer-any-role,group-role,issuer-group-role"},
    {ID_TOKEN, "ci-1", NULL, NULL, NULL, "token-role"},
    {ID_TOKEN, "dev", NULL, NULL, NULL, "token-role"},
    {ID_TOKEN, "developer", NULL, NULL, NULL, ""},
    /* A JWT whose subject claim is "dev" is not the static token. */
    {ID_JWT, "dev", "https://other.example", NULL, NULL, ""},
    {ID_CERT_CN, "dev", NULL, NULL, NULL, ""},
    {ID_LOCAL, NULL, NULL, NULL, NULL, "any-role"},
};

START_TEST(test_matchers)
{
    struct sg_policy *p = load_text(matcher_policy);
    struct sg_identity *id = NULL;
    char roles[256];

    switch (matcher_cases[_i].kind) {
    case ID_CERT_URI:
        id = make_cert(SG_CERT_NAME_URI, matcher_cases[_i].name);
        break;
    case ID_CERT_DNS:
        id = make_cert(SG_CERT_NAME_DNS, matcher_cases[_i].name);
        break;
    case ID_CERT_CN:
        id = make_cert(SG_CERT_NAME_CN, matcher_cases[_i].name);
        break;
    case ID_JWT:
        id = make_jwt(matcher_cases[_i].issuer, matcher_cases[_i].name,
                      matcher_cases[_i].group1, matcher_cases[_i].group2);
        break;
    case ID_TOKEN:
        id = make_token(matcher_cases[_i].name);
        break;
    case ID_LOCAL:
        id = make_local();
        break;
    }
    roles_text(p, id, roles, sizeof(roles));
    ck_assert_msg(STREQ(roles, matcher_cases[_i].roles),
                  "case %d: got '%s', want '%s'", _i, roles,
                  matcher_cases[_i].roles);
    sg_identity_unref(id);
    sg_policy_unref(p);
}
END_TEST

START_TEST(test_roles_of_limits)
{
    struct sg_policy *p = load_text(matcher_policy);
    struct sg_identity *id = make_jwt("https://idp.example", "bob", "admins",
                                      "team-c-viewers");
    const char *one[1] = {NULL};

    ck_assert_uint_eq(sg_policy_roles_of(p, id, one, 1), 3);
    ck_assert_str_eq(one[0], "issuer-any-role");
    ck_assert_uint_eq(sg_policy_roles_of(p, id, NULL, 0), 3);
    ck_assert_uint_eq(sg_policy_roles_of(p, NULL, one, 1), 0);
    ck_assert_uint_eq(sg_policy_roles_of(NULL, id, one, 1), 0);
    sg_identity_unref(id);
    sg_policy_unref(p);
}
END_TEST

/* ---- reach ----------------------------------------------------------- */

static const char reach_policy[] =
    "roles:\n"
    "  owner:\n"
    "    operations:\n"
    "      - permissions: [sandboxes.get, sandboxes.delete]\n"
    "  reader:\n"
    "    operations:\n"
    "      - permissions: [\"sandboxes.*\"]\n"
    "        on: tenant\n"
    "      - permissions: [sandboxes.create]\n"
    "        on: own\n"
    "    tenants: [\"team-a\", \"team-b\"]\n"
    "    projects: [\"p-*\"]\n"
    "  admin:\n"
    "    operations:\n"
    "      - permissions: [\"*\"]\n"
    "        on: any\n"
    "bindings:\n"
    "  - roles: [owner]\n"
    "    subjects: [{token: alice}, {token: carol}]\n"
    "  - roles: [reader]\n"
    "    subjects: [{token: bob}, {token: carol}]\n"
    "  - roles: [admin]\n"
    "    subjects: [{token: root}]\n";

START_TEST(test_reach)
{
    struct sg_policy *p = load_text(reach_policy);
    struct sg_identity *alice = make_token("alice");
    struct sg_identity *bob = make_token("bob");
    struct sg_identity *carol = make_token("carol");
    struct sg_identity *root = make_token("root");
    struct sg_identity *eve = make_token("eve");
    struct sg_authz_object mine = {.tenant = "team-z", .project = "q",
                                   .owner = "token:alice"};
    struct sg_authz_object in_tenant = {.tenant = "team-b",
                                        .project = "p-1",
                                        .owner = "token:someone"};
    struct sg_authz_object bad_project = {.tenant = "team-b",
                                          .project = "q-1",
                                          .owner = "token:someone"};
    struct sg_authz_object no_project = {.tenant = "team-a",
                                         .owner = "token:someone"};

    /* own is the default */
    ck_assert_int_eq(sg_policy_reach(p, alice, "sandboxes.get"),
                     SG_REACH_OWN);
    ck_assert_int_eq(sg_policy_reach(p, alice, "sandboxes.list"),
                     SG_REACH_NONE);
    ck_assert(sg_policy_allows_object(p, alice, "sandboxes.get", &mine));
    ck_assert(sg_policy_allows_object(p, alice, "sandboxes.delete", &mine));
    ck_assert(!sg_policy_allows_object(p, alice, "sandboxes.logs", &mine));
    ck_assert(!sg_policy_allows_object(p, alice, "sandboxes.get",
                                       &in_tenant));

    /* tenant: the role's tenants and projects */
    ck_assert_int_eq(sg_policy_reach(p, bob, "sandboxes.logs"),
                     SG_REACH_TENANT);
    ck_assert_int_eq(sg_policy_reach(p, bob, "sandboxes.create"),
                     SG_REACH_TENANT);
    ck_assert_int_eq(sg_policy_reach(p, bob, "events.watch"), SG_REACH_NONE);
    ck_assert(sg_policy_allows_object(p, bob, "sandboxes.get", &in_tenant));
    ck_assert(!sg_policy_allows_object(p, bob, "sandboxes.get",
                                       &bad_project));
    ck_assert(!sg_policy_allows_object(p, bob, "sandboxes.get", &mine));
    /* An object without a project is outside projects ["p-*"]. */
    ck_assert(!sg_policy_allows_object(p, bob, "sandboxes.get",
                                       &no_project));

    /* carol has both roles: the widest reach, and either role's objects */
    ck_assert_int_eq(sg_policy_reach(p, carol, "sandboxes.get"),
                     SG_REACH_TENANT);
    ck_assert(sg_policy_allows_object(p, carol, "sandboxes.get", &in_tenant));
    ck_assert(!sg_policy_allows_object(p, carol, "sandboxes.get", &mine));
    mine.owner = "token:carol";
    ck_assert(sg_policy_allows_object(p, carol, "sandboxes.get", &mine));
    ck_assert(!sg_policy_allows_object(p, carol, "sandboxes.list", &mine));

    /* any */
    ck_assert_int_eq(sg_policy_reach(p, root, "credentials.delete"),
                     SG_REACH_ANY);
    ck_assert(sg_policy_allows_object(p, root, "events.list", &bad_project));
    ck_assert(sg_policy_allows_object(p, root, "sandboxes.get", NULL));
    /* A permission the API does not have still goes through the globs. */
    ck_assert_int_eq(sg_policy_reach(p, root, "future.thing"),
                     SG_REACH_ANY);
    ck_assert_int_eq(sg_policy_reach(p, bob, "future.thing"),
                     SG_REACH_NONE);
    ck_assert_int_eq(sg_policy_reach(p, bob, "sandboxes.future"),
                     SG_REACH_TENANT);

    /* nobody, NULLs */
    ck_assert_int_eq(sg_policy_reach(p, eve, "sandboxes.get"),
                     SG_REACH_NONE);
    ck_assert(!sg_policy_allows_object(p, eve, "sandboxes.get", &in_tenant));
    ck_assert(!sg_policy_allows_object(p, NULL, "sandboxes.get", &mine));
    ck_assert(!sg_policy_allows_object(NULL, root, "sandboxes.get", &mine));
    ck_assert_int_eq(sg_policy_reach(p, NULL, "sandboxes.get"),
                     SG_REACH_NONE);
    /* An object without an owner is nobody's. */
    mine.owner = NULL;
    ck_assert(!sg_policy_allows_object(p, carol, "sandboxes.delete", &mine));

    sg_identity_unref(alice);
    sg_identity_unref(bob);
    sg_identity_unref(carol);
    sg_identity_unref(root);
    sg_identity_unref(eve);
    sg_policy_unref(p);
}
END_TEST

/* ---- create ---------------------------------------------------------- */

static int check(const struct sg_policy *p, const struct sg_identity *id,
                 const struct sg_authz_create *req,
                 enum sg_policy_denial *denial, char *msg, size_t len)
{
    struct sg_error err = SG_ERROR_INIT;
    int rc;

    *denial = (enum sg_policy_denial)-1;
    rc = sg_policy_check_create(p, id, perm_create, req, denial, &err);
    if (rc == 0) {
        ck_assert(!sg_error_is_set(&err));
        msg[0] = '\0';
    } else {
        ck_assert_int_eq(err.code, SG_ERR_PERMISSION_DENIED);
        snprintf(msg, len, "%s", err.message);
    }
    sg_error_reset(&err);
    return rc;
}

/* Roles A and B together do not make tenant A in namespace B. */
START_TEST(test_scopes_do_not_combine)
{
    struct sg_policy *p = load_text(
        "roles:\n"
        "  a:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: [team-a]\n"
        "    namespaces: [ns-a]\n"
        "  b:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: [team-b]\n"
        "    namespaces: [ns-b]\n"
        "bindings:\n"
        "  - roles: [a, b]\n"
        "    subjects: [{token: ctl}]\n");
    struct sg_identity *id = make_token("ctl");
    struct sg_driver_placement pl = {0};
    struct sg_authz_create req = {.tenant = "team-a", .placement = &pl};
    enum sg_policy_denial d;
    char msg[SG_ERROR_MESSAGE_MAX];

    pl.namespace_name = "ns-a";
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), 0);
    ck_assert_int_eq(d, SG_DENY_NONE);
    req.tenant = "team-b";
    pl.namespace_name = "ns-b";
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), 0);

    req.tenant = "team-a";
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), -1);
    /* Role a got further (past the tenant) than b, so a speaks. */
    ck_assert_int_eq(d, SG_DENY_NAMESPACE);
    ck_assert_str_eq(msg, "driver_config: namespace 'ns-b' is not allowed");

    req.tenant = "team-b";
    pl.namespace_name = "ns-a";
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_NAMESPACE);
    ck_assert_str_eq(msg, "driver_config: namespace 'ns-a' is not allowed");

    req.tenant = "team-c";
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_TENANT);
    ck_assert_str_eq(msg, "sandbox.tenant: tenant 'team-c' is not allowed");
    sg_identity_unref(id);
    sg_policy_unref(p);
}
END_TEST

static const char full_policy[] =
    "roles:\n"
    "  full:\n"
    "    operations: [{permissions: [sandboxes.create]}]\n"
    "    tenants: [\"team-*\"]\n"
    "    projects: [\"\", \"proj-*\"]\n"
    "    access_profiles: [web]\n"
    "    runtime_profiles: [standard, gvisor]\n"
    "    namespaces: [\"sbx-*\"]\n"
    "    service_accounts: [sandbox-runner]\n"
    "    credentials:\n"
    "      names: [\"team-*-git\"]\n"
    "    driver_config:\n"
    "      fields: [namespace, runtimeClassName, \"resources.*\","
    " \"nodeSelector.*\"]\n"
    "      runtime_classes: [gvisor]\n"
    "      node_selector:\n"
    "        \"platform.example.com/node-pool\": [\"secure-*\"]\n"
    "        \"zone\": [a, b]\n"
    "      toleration_keys: [\"platform.example.com/*\"]\n"
    "      max_cpu: \"2\"\n"
    "      max_memory: 1Gi\n"
    "      allocation_modes: [Sandbox, SandboxClaim]\n"
    "      templates: [\"\", \"tpl-*\"]\n"
    "      warm_pools: [\"\", \"rce-*\"]\n"
    "    attach_policy: false\n"
    "bindings:\n"
    "  - roles: [full]\n"
    "    subjects: [{token: ctl}]\n";

/* One field of a create changed from a request the role allows; NULL (or
   0) keeps the allowed value. */
static const struct {
    const char *tenant;
    const char *project;
    const char *access_profile;
    const char *runtime_profile;
    const char *ns;
    const char *sa;
    const char *credential;
    const char *field;
    const char *runtime_class;
    const char *ns_key;
    const char *ns_value;
    const char *toleration;
    uint64_t cpu;
    uint64_t memory;
    const char *mode;
    const char *template_name;
    const char *pool;
    bool has_policy;
    enum sg_policy_denial denial;
    const char *message;
} create_cases[] = {
    {.denial = SG_DENY_NONE, .message = ""},
    {.project = "", .template_name = "", .pool = "", .cpu = 2000,
     .memory = 1073741824, .denial = SG_DENY_NONE, .message = ""},
    {.tenant = "ops", .denial = SG_DENY_TENANT,
     .message = "sandbox.tenant: tenant 'ops' is not allowed"},
    {.tenant = "", .denial = SG_DENY_TENANT,
     .message = "sandbox.tenant: tenant '' is not allowed"},
    {.project = "other", .denial = SG_DENY_PROJECT,
     .message = "sandbox.project: project 'other' is not allowed"},
    {.access_profile = "open", .denial = SG_DENY_PROFILE,
     .message = "sandbox.access_profile: access profile 'open' is not "
                "allowed"},
    {.runtime_profile = "privileged", .denial = SG_DENY_PROFILE,
     .message = "sandbox.runtime_profile: runtime profile 'privileged' is "
                "not allowed"},
    {.ns = "kube-system", .denial = SG_DENY_NAMESPACE,
     .message = "driver_config: namespace 'kube-system' is not allowed"},
    {.ns = "", .denial = SG_DENY_NAMESPACE,
     .message = "driver_config: namespace '' is not allowed"},
    {.sa = "default", .denial = SG_DENY_SERVICE_ACCOUNT,
     .message = "driver_config: service account 'default' is not allowed"},
    {.credential = "prod-db", .denial = SG_DENY_CREDENTIAL,
     .message = "spec.credentials: credential 'prod-db' is not allowed"},
    {.field = "hostNetwork", .denial = SG_DENY_DRIVER_FIELD,
     .message = "driver_config.hostNetwork: setting this field is not "
                "allowed"},
    {.field = "resources", .denial = SG_DENY_DRIVER_FIELD,
     .message = "driver_config.resources: setting this field is not "
                "allowed"},
    {.runtime_class = "runc", .denial = SG_DENY_DRIVER_VALUE,
     .message = "driver_config: runtime class 'runc' is not allowed"},
    {.runtime_class = "", .denial = SG_DENY_DRIVER_VALUE,
     .message = "driver_config: runtime class '' is not allowed"},
    {.ns_key = "platform.example.com/node-pool", .ns_value = "general",
     .denial = SG_DENY_DRIVER_VALUE,
     .message = "driver_config: node selector "
                "'platform.example.com/node-pool=general' is not allowed"},
    {.ns_key = "kubernetes.io/hostname", .ns_value = "node-1",
     .denial = SG_DENY_DRIVER_VALUE,
     .message = "driver_config: node selector "
                "'kubernetes.io/hostname=node-1' is not allowed"},
    {.ns_key = "zone", .ns_value = "b", .denial = SG_DENY_NONE,
     .message = ""},
    {.toleration = "node.kubernetes.io/not-ready",
     .denial = SG_DENY_DRIVER_VALUE,
     .message = "driver_config: toleration key "
                "'node.kubernetes.io/not-ready' is not allowed"},
    {.toleration = "", .denial = SG_DENY_DRIVER_VALUE,
     .message = "driver_config: toleration key '' is not allowed"},
    {.cpu = 2001, .denial = SG_DENY_DRIVER_VALUE,
     .message = "driver_config: CPU 2001m exceeds the ceiling 2000m"},
    {.memory = 1073741825, .denial = SG_DENY_DRIVER_VALUE,
     .message = "driver_config: memory 1073741825 bytes exceeds the ceiling "
                "1073741824"},
    {.mode = "Deployment", .denial = SG_DENY_DRIVER_VALUE,
     .message = "driver_config: allocation mode 'Deployment' is not "
                "allowed"},
    {.template_name = "other", .denial = SG_DENY_DRIVER_VALUE,
     .message = "driver_config: template 'other' is not allowed"},
    {.pool = "gpu-pool", .denial = SG_DENY_DRIVER_VALUE,
     .message = "driver_config: warm pool 'gpu-pool' is not allowed"},
    {.has_policy = true, .denial = SG_DENY_POLICY,
     .message = "spec.policy: attaching a policy is not allowed"},
    /* Several faults: the first check in order names it. */
    {.ns = "kube-system", .cpu = 9000, .has_policy = true,
     .denial = SG_DENY_NAMESPACE,
     .message = "driver_config: namespace 'kube-system' is not allowed"},
    {.field = "hostPID", .runtime_class = "runc",
     .denial = SG_DENY_DRIVER_FIELD,
     .message = "driver_config.hostPID: setting this field is not allowed"},
};

#define OR(a, b) ((a) != NULL ? (a) : (b))

START_TEST(test_create_denials)
{
    struct sg_policy *p = load_text(full_policy);
    struct sg_identity *id = make_token("ctl");
    const struct sg_authz_credential creds[] = {
        {.name = "team-a-git"},
        {.name = OR(create_cases[_i].credential, "team-b-git")}};
    char *fields[] = {"namespace", (char *)OR(create_cases[_i].field,
                                              "runtimeClassName")};
    char *sel_keys[] = {"platform.example.com/node-pool",
                        (char *)OR(create_cases[_i].ns_key, "zone")};
    char *sel_values[] = {"secure-rce", (char *)OR(create_cases[_i].ns_value,
                                                   "a")};
    char *tols[] = {"platform.example.com/dedicated",
                    (char *)OR(create_cases[_i].toleration,
                               "platform.example.com/x")};
    struct sg_driver_placement pl = {
        .namespace_name = (char *)OR(create_cases[_i].ns, "sbx-team-a"),
        .service_account = (char *)OR(create_cases[_i].sa, "sandbox-runner"),
        .runtime_class = (char *)OR(create_cases[_i].runtime_class, "gvisor"),
        .allocation_mode = (char *)OR(create_cases[_i].mode, "SandboxClaim"),
        .template_name = (char *)OR(create_cases[_i].template_name,
                                    "tpl-python"),
        .warm_pool = (char *)OR(create_cases[_i].pool, "rce-small"),
        .fields = fields,
        .n_fields = 2,
        .node_selector_keys = sel_keys,
        .node_selector_values = sel_values,
        .n_node_selector = 2,
        .toleration_keys = tols,
        .n_toleration_keys = 2,
        .cpu_millis = create_cases[_i].cpu != 0 ? create_cases[_i].cpu : 500,
        .memory_bytes = create_cases[_i].memory != 0
                            ? create_cases[_i].memory
                            : 268435456,
    };
    struct sg_authz_create req = {
        .tenant = OR(create_cases[_i].tenant, "team-a"),
        .project = OR(create_cases[_i].project, "proj-x"),
        .access_profile = OR(create_cases[_i].access_profile, "web"),
        .runtime_profile = OR(create_cases[_i].runtime_profile, "gvisor"),
        .credentials = creds,
        .n_credentials = 2,
        .has_policy = create_cases[_i].has_policy,
        .placement = &pl,
    };
    enum sg_policy_denial d;
    char msg[SG_ERROR_MESSAGE_MAX];
    int rc = check(p, id, &req, &d, msg, sizeof(msg));

    ck_assert_msg(d == create_cases[_i].denial, "case %d: denial %d (%s)",
                  _i, d, msg);
    ck_assert_int_eq(rc, create_cases[_i].denial == SG_DENY_NONE ? 0 : -1);
    ck_assert_str_eq(msg, create_cases[_i].message);
    sg_identity_unref(id);
    sg_policy_unref(p);
}
END_TEST

/* A binding's source is checked in the same role as everything else. */
START_TEST(test_create_credential_sources)
{
    struct sg_policy *p = load_text(
        "roles:\n"
        "  secrets:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: [team-a]\n"
        "    projects: [\"\"]\n"
        "    access_profiles: [\"\"]\n"
        "    runtime_profiles: [\"\"]\n"
        "    credentials:\n"
        "      names: [\"*\"]\n"
        "      sources:\n"
        "        - {kind: kubernetes-secret, namespace: \"sbx-a\","
        " name: \"git-*\", key: token}\n"
        "  envs:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: [team-a]\n"
        "    projects: [\"\"]\n"
        "    access_profiles: [\"\"]\n"
        "    runtime_profiles: [\"\"]\n"
        "    credentials:\n"
        "      names: [\"*\"]\n"
        "      sources: [{kind: env}]\n"
        "bindings:\n"
        "  - {roles: [secrets, envs], subjects: [{token: ctl}]}\n");
    struct sg_identity *id = make_token("ctl");
    struct sg_authz_credential secret = {
        .name = "git", .kind = "kubernetes-secret",
        .secret_namespace = "sbx-a", .secret_name = "git-main",
        .secret_key = "token"};
    struct sg_authz_credential env = {.name = "npm", .kind = "env"};
    struct sg_authz_credential missing = {.name = "gone"};
    struct sg_authz_credential both[2];
    struct sg_authz_create req = {.tenant = "team-a", .project = "",
                                  .access_profile = "",
                                  .runtime_profile = "", .n_credentials = 1};
    enum sg_policy_denial d;
    char msg[SG_ERROR_MESSAGE_MAX];

    req.credentials = &secret;
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), 0);
    req.credentials = &env;
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), 0);
    /* A missing record is the caller's to report; its name passes. */
    req.credentials = &missing;
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), 0);

    /* Each source is allowed by a role, but no role allows both. */
    both[0] = secret;
    both[1] = env;
    req.credentials = both;
    req.n_credentials = 2;
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_CREDENTIAL);
    ck_assert_str_eq(msg, "spec.credentials: credential 'npm' (env): its "
                          "source is not allowed");

    secret.secret_namespace = "sbx-b";
    req.credentials = &secret;
    req.n_credentials = 1;
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_CREDENTIAL);
    ck_assert_str_eq(msg, "spec.credentials: credential 'git' "
                          "(kubernetes-secret sbx-b/git-main key token): "
                          "its source is not allowed");
    secret.secret_namespace = "sbx-a";
    secret.secret_key = "password";
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_CREDENTIAL);
    sg_identity_unref(id);
    sg_policy_unref(p);
}
END_TEST

START_TEST(test_create_permission)
{
    struct sg_policy *p = load_text(
        "roles:\n"
        "  reader:\n"
        "    operations: [{permissions: [sandboxes.get], on: any}]\n"
        "    tenants: [\"*\"]\n"
        "bindings:\n"
        "  - roles: [reader]\n"
        "    subjects: [{token: r}]\n");
    struct sg_identity *reader = make_token("r");
    struct sg_identity *nobody = make_token("nobody");
    struct sg_authz_create req = {.tenant = "team-a"};
    struct sg_error err = SG_ERROR_INIT;
    enum sg_policy_denial d;
    char msg[SG_ERROR_MESSAGE_MAX];

    ck_assert_int_eq(check(p, reader, &req, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_PERMISSION);
    ck_assert_str_eq(msg, "permission 'sandboxes.create' is not granted");
    ck_assert_int_eq(check(p, nobody, &req, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_PERMISSION);
    ck_assert_int_eq(check(p, NULL, &req, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_PERMISSION);
    ck_assert_int_eq(check(NULL, reader, &req, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_PERMISSION);

    /* The permission checked is the one passed, and denial may be NULL. */
    ck_assert_int_eq(sg_policy_check_create(p, reader, "sandboxes.get", &req,
                                            NULL, &err), 0);
    ck_assert_int_eq(sg_policy_check_create(p, reader, "sandboxes.exec",
                                            &req, NULL, &err), -1);
    ck_assert_str_eq(err.message,
                     "permission 'sandboxes.exec' is not granted");
    sg_error_reset(&err);
    sg_identity_unref(reader);
    sg_identity_unref(nobody);
    sg_policy_unref(p);
}
END_TEST

/* The role that passed most checks speaks; on a tie, the first in file
   order (visible through the ceilings, which differ per role). */
START_TEST(test_create_best_role)
{
    static const char *const texts[] = {
        "roles:\n"
        "  one:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: [\"*\"]\n"
        "    driver_config: {max_cpu: \"1\"}\n"
        "  two:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: [\"*\"]\n"
        "    driver_config: {max_cpu: 1500m}\n"
        "  other:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: [nope]\n"
        "bindings:\n"
        "  - roles: [other, two, one]\n"
        "    subjects: [{token: ctl}]\n",
        "roles:\n"
        "  two:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: [\"*\"]\n"
        "    driver_config: {max_cpu: 1500m}\n"
        "  one:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: [\"*\"]\n"
        "    driver_config: {max_cpu: \"1\"}\n"
        "bindings:\n"
        "  - roles: [one]\n"
        "    subjects: [{token: ctl}]\n"
        "  - roles: [two]\n"
        "    subjects: [{token: ctl}]\n",
    };
    static const char *const expected[] = {
        "driver_config: CPU 3000m exceeds the ceiling 1000m",
        "driver_config: CPU 3000m exceeds the ceiling 1500m",
    };
    struct sg_identity *id = make_token("ctl");
    struct sg_driver_placement pl = {.cpu_millis = 3000};
    struct sg_authz_create req = {.tenant = "t", .placement = &pl};
    enum sg_policy_denial d;
    char msg[SG_ERROR_MESSAGE_MAX];

    for (size_t i = 0; i < SG_N_ELEMENTS(texts); i++) {
        struct sg_policy *p = load_text(texts[i]);

        ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), -1);
        ck_assert_int_eq(d, SG_DENY_DRIVER_VALUE);
        ck_assert_str_eq(msg, expected[i]);
        /* Within a ceiling of one role, that role allows it. */
        pl.cpu_millis = 1200;
        ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), 0);
        pl.cpu_millis = 3000;
        sg_policy_unref(p);
    }
    sg_identity_unref(id);
}
END_TEST

/* A list left out allows only the empty value; "*" everything. */
START_TEST(test_missing_lists)
{
    struct sg_policy *p = load_text(
        "roles:\n"
        "  bare:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "  open:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: [\"*\"]\n"
        "    projects: [\"*\"]\n"
        "    access_profiles: [\"*\"]\n"
        "    runtime_profiles: [\"*\"]\n"
        "    namespaces: [\"*\"]\n"
        "    service_accounts: [\"*\"]\n"
        "    credentials: {names: [\"*\"]}\n"
        "    driver_config:\n"
        "      fields: [\"*\"]\n"
        "      runtime_classes: [\"*\"]\n"
        "      node_selector: {\"*\": [\"*\"]}\n"
        "      toleration_keys: [\"*\"]\n"
        "      allocation_modes: [\"*\"]\n"
        "      templates: [\"*\"]\n"
        "      warm_pools: [\"*\"]\n"
        "    attach_policy: true\n"
        "  empty-lists:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: []\n"
        "bindings:\n"
        "  - roles: [bare]\n"
        "    subjects: [{token: bare}]\n"
        "  - roles: [open]\n"
        "    subjects: [{token: open}]\n"
        "  - roles: [empty-lists]\n"
        "    subjects: [{token: empty}]\n");
    struct sg_identity *bare = make_token("bare");
    struct sg_identity *open = make_token("open");
    struct sg_identity *empty = make_token("empty");
    char *fields[] = {"limits.memory"};
    char *keys[] = {"k"};
    char *values[] = {"v"};
    char *tols[] = {""};
    struct sg_driver_placement none = {0};
    struct sg_driver_placement pl = {
        .namespace_name = "ns", .service_account = "sa",
        .runtime_class = "rc", .allocation_mode = "process",
        .template_name = "t", .warm_pool = "w", .fields = fields,
        .n_fields = 1, .node_selector_keys = keys,
        .node_selector_values = values, .n_node_selector = 1,
        .toleration_keys = tols, .n_toleration_keys = 1,
        .cpu_millis = UINT64_MAX, .memory_bytes = UINT64_MAX,
    };
    const struct sg_authz_credential creds[] = {{.name = "c"}};
    struct sg_authz_create unset = {0};
    struct sg_authz_create all = {
        .tenant = "t", .project = "p", .access_profile = "a",
        .runtime_profile = "r", .credentials = creds, .n_credentials = 1,
        .has_policy = true, .placement = &pl,
    };
    enum sg_policy_denial d;
    char msg[SG_ERROR_MESSAGE_MAX];

    /* Nothing set: the bare role allows it, with or without placement. */
    ck_assert_int_eq(check(p, bare, &unset, &d, msg, sizeof(msg)), 0);
    unset.placement = &none;
    ck_assert_int_eq(check(p, bare, &unset, &d, msg, sizeof(msg)), 0);
    ck_assert_int_eq(sg_policy_check_create(p, bare, perm_create, NULL, &d,
                                            NULL), 0);
    /* ... and nothing more, one scope at a time. */
    ck_assert_int_eq(check(p, bare, &all, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_TENANT);
    unset.project = "p";
    ck_assert_int_eq(check(p, bare, &unset, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_PROJECT);
    unset.project = NULL;
    none.fields = fields;
    none.n_fields = 1;
    ck_assert_int_eq(check(p, bare, &unset, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_DRIVER_FIELD);
    ck_assert_str_eq(msg, "driver_config.limits.memory: setting this field "
                          "is not allowed");
    none.n_fields = 0;
    none.allocation_mode = "process";
    ck_assert_int_eq(check(p, bare, &unset, &d, msg, sizeof(msg)), -1);
    ck_assert_str_eq(msg, "driver_config: allocation mode 'process' is not "
                          "allowed");
    none.allocation_mode = NULL;
    none.n_node_selector = 1;
    none.node_selector_keys = keys;
    none.node_selector_values = values;
    ck_assert_int_eq(check(p, bare, &unset, &d, msg, sizeof(msg)), -1);
    ck_assert_str_eq(msg, "driver_config: node selector 'k=v' is not "
                          "allowed");
    none.n_node_selector = 0;
    /* No ceiling set: any amount. */
    none.cpu_millis = UINT64_MAX;
    none.memory_bytes = UINT64_MAX;
    ck_assert_int_eq(check(p, bare, &unset, &d, msg, sizeof(msg)), 0);
    unset.has_policy = true;
    ck_assert_int_eq(check(p, bare, &unset, &d, msg, sizeof(msg)), -1);
    ck_assert_int_eq(d, SG_DENY_POLICY);
    unset.has_policy = false;

    /* "*" allows everything, and the empty value too. */
    ck_assert_int_eq(check(p, open, &all, &d, msg, sizeof(msg)), 0);
    ck_assert_int_eq(check(p, open, &unset, &d, msg, sizeof(msg)), 0);

    /* An empty list allows nothing at all, not even the empty value. */
    ck_assert_int_eq(check(p, empty, &unset, &d, msg, sizeof(msg)), -1);
    ck_assert_str_eq(msg, "sandbox.tenant: tenant '' is not allowed");

    sg_identity_unref(bare);
    sg_identity_unref(open);
    sg_identity_unref(empty);
    sg_policy_unref(p);
}
END_TEST

START_TEST(test_message_quoting)
{
    struct sg_policy *p = load_text(
        "roles:\n"
        "  r:\n"
        "    operations: [{permissions: [sandboxes.create]}]\n"
        "    tenants: [ok]\n"
        "bindings:\n"
        "  - roles: [r]\n"
        "    subjects: [{token: ctl}]\n");
    struct sg_identity *id = make_token("ctl");
    char tenant[300];
    char expected[SG_ERROR_MESSAGE_MAX];
    struct sg_authz_create req = {.tenant = "a\nb\tc\x7f" "d"};
    enum sg_policy_denial d;
    char msg[SG_ERROR_MESSAGE_MAX];

    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), -1);
    ck_assert_str_eq(msg, "sandbox.tenant: tenant 'a?b?c?d' is not allowed");

    memset(tenant, 'x', sizeof(tenant) - 1);
    tenant[sizeof(tenant) - 1] = '\0';
    req.tenant = tenant;
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), -1);
    snprintf(expected, sizeof(expected),
             "sandbox.tenant: tenant '%.128s...' is not allowed", tenant);
    ck_assert_str_eq(msg, expected);

    /* A cut never splits a UTF-8 character: 127 ASCII bytes, then 'é'. */
    memset(tenant, 'y', 127);
    memcpy(tenant + 127, "\xc3\xa9zzz", 6);
    req.tenant = tenant;
    ck_assert_int_eq(check(p, id, &req, &d, msg, sizeof(msg)), -1);
    snprintf(expected, sizeof(expected),
             "sandbox.tenant: tenant '%.127s...' is not allowed", tenant);
    ck_assert_str_eq(msg, expected);
    sg_identity_unref(id);
    sg_policy_unref(p);
}
END_TEST

START_TEST(test_permission_globs)
{
    struct sg_policy *p = load_text(
        "roles:\n"
        "  s:\n"
        "    operations: [{permissions: [\"sandboxes.*\"], on: any}]\n"
        "  e:\n"
        "    operations:\n"
        "      - {permissions: [events.watch], on: tenant}\n"
        "      - {permissions: [\"events.*\", \"credentials.?et\"]}\n"
        "bindings:\n"
        "  - roles: [s]\n"
        "    subjects: [{token: s}]\n"
        "  - roles: [e]\n"
        "    subjects: [{token: e}]\n");
    struct sg_identity *s = make_token("s");
    struct sg_identity *e = make_token("e");

    ck_assert_int_eq(sg_policy_reach(p, s, "sandboxes.exec"), SG_REACH_ANY);
    ck_assert_int_eq(sg_policy_reach(p, s, "events.watch"), SG_REACH_NONE);
    /* Of two operations, the widest reach. */
    ck_assert_int_eq(sg_policy_reach(p, e, "events.watch"), SG_REACH_TENANT);
    ck_assert_int_eq(sg_policy_reach(p, e, "events.list"), SG_REACH_OWN);
    ck_assert_int_eq(sg_policy_reach(p, e, "credentials.get"), SG_REACH_OWN);
    ck_assert_int_eq(sg_policy_reach(p, e, "credentials.list"),
                     SG_REACH_NONE);
    ck_assert_int_eq(sg_policy_reach(p, e, "sandboxes.get"), SG_REACH_NONE);
    sg_identity_unref(s);
    sg_identity_unref(e);
    sg_policy_unref(p);
}
END_TEST

START_TEST(test_credential_sources)
{
    struct sg_policy *p = load_text(
        "roles:\n"
        "  c:\n"
        "    operations: [{permissions: [\"credentials.*\"]}]\n"
        "    credentials:\n"
        "      sources:\n"
        "        - {kind: kubernetes-secret, namespace: \"sbx-*\", name: "
        "\"git-*\", key: token}\n"
        "        - {kind: env}\n"
        "  nosources:\n"
        "    operations: [{permissions: [\"credentials.*\"]}]\n"
        "  noperm:\n"
        "    operations: [{permissions: [sandboxes.get]}]\n"
        "    credentials:\n"
        "      sources: [{kind: \"*\", namespace: \"*\", name: \"*\", key: "
        "\"*\"}]\n"
        "bindings:\n"
        "  - roles: [c]\n"
        "    subjects: [{token: c}]\n"
        "  - roles: [nosources, noperm]\n"
        "    subjects: [{token: n}]\n");
    struct sg_identity *c = make_token("c");
    struct sg_identity *n = make_token("n");
    const char *perm = "credentials.create";

    ck_assert(sg_policy_allows_credential_source(
        p, c, perm, NULL, "kubernetes-secret", "sbx-a", "git-1", "token"));
    ck_assert(!sg_policy_allows_credential_source(
        p, c, perm, NULL, "kubernetes-secret", "sbx-a", "git-1", "password"));
    ck_assert(!sg_policy_allows_credential_source(
        p, c, perm, NULL, "kubernetes-secret", "default", "git-1", "token"));
    ck_assert(!sg_policy_allows_credential_source(
        p, c, perm, NULL, "vault", "sbx-a", "git-1", "token"));
    /* Fields the entry leaves out match only the empty value. */
    ck_assert(sg_policy_allows_credential_source(p, c, perm, NULL, "env",
                                                 NULL, "", NULL));
    ck_assert(!sg_policy_allows_credential_source(p, c, perm, NULL, "env",
                                                  NULL, "HOME", NULL));
    /* The permission must be granted by the role holding the entry. */
    ck_assert(!sg_policy_allows_credential_source(
        p, c, "sandboxes.get", NULL, "kubernetes-secret", "sbx-a", "git-1",
        "token"));
    ck_assert(!sg_policy_allows_credential_source(p, n, perm, NULL, "env",
                                                  NULL, NULL, NULL));
    ck_assert(!sg_policy_allows_credential_source(p, NULL, perm, NULL, "env",
                                                  NULL, NULL, NULL));
    sg_identity_unref(c);
    sg_identity_unref(n);
    sg_policy_unref(p);
}
END_TEST

/* The tenant of one role and the source of another do not add up. */
START_TEST(test_credential_source_and_tenant_in_one_role)
{
    struct sg_policy *p = load_text(
        "roles:\n"
        "  team-a:\n"
        "    operations: [{permissions: [\"credentials.*\"]}]\n"
        "    tenants: [team-a]\n"
        "  secrets-of-b:\n"
        "    operations: [{permissions: [\"credentials.*\"]}]\n"
        "    tenants: [team-b]\n"
        "    credentials:\n"
        "      sources: [{kind: kubernetes-secret, namespace: \"*\", name: "
        "\"*\", key: \"*\"}]\n"
        "bindings:\n"
        "  - roles: [team-a, secrets-of-b]\n"
        "    subjects: [{token: u}]\n");
    struct sg_identity *u = make_token("u");
    const char *perm = "credentials.create";

    ck_assert(!sg_policy_allows_credential_source(
        p, u, perm, "team-a", "kubernetes-secret", "ns", "s", "k"));
    ck_assert(sg_policy_allows_credential_source(
        p, u, perm, "team-b", "kubernetes-secret", "ns", "s", "k"));
    ck_assert(sg_policy_allows_credential_source(
        p, u, perm, NULL, "kubernetes-secret", "ns", "s", "k"));
    sg_identity_unref(u);
    sg_policy_unref(p);
}
END_TEST

/* ---- accessors ------------------------------------------------------- */

START_TEST(test_issuer_fields)
{
    struct sg_policy *p = load_text(
        "authentication:\n"
        "  jwt_issuers:\n"
        "    - issuer: https://a.example\n"
        "      audiences: [sandgate, other]\n"
        "      algorithms: [ES256, EdDSA]\n"
        "      discovery: true\n"
        "    - issuer: https://b.example\n"
        "      audiences: [x]\n"
        "      algorithms: [RS256]\n"
        "      jwks_uri: https://b.example/keys\n"
        "      discovery: false\n"
        "      ca_file: /etc/ca.pem\n"
        "      clock_skew_s: 5\n"
        "      subject_claim: email\n"
        "      groups_claim: roles\n"
        "      subject_prefix: \"b:\"\n"
        "      refresh_interval_s: 600\n"
        "      min_refresh_interval_s: 10\n"
        "      max_token_bytes: 4096\n"
        "  static_tokens:\n"
        "    - name: dev\n"
        "      sha256: 5E884898DA28047151D0E56F8DC6292773603D0D6AABBDD62A11EF"
        "721D1542D8\n"
        "    - {name: ci.bot, sha256: "
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f}\n");
    const struct sg_jwt_issuer_config *a = sg_policy_issuer(p, 0);
    const struct sg_jwt_issuer_config *b = sg_policy_issuer(p, 1);
    const struct sg_policy_token *t;

    ck_assert_uint_eq(sg_policy_n_issuers(p), 2);
    ck_assert_ptr_null(sg_policy_issuer(p, 2));
    ck_assert_str_eq(a->issuer, "https://a.example");
    ck_assert_uint_eq(a->n_audiences, 2);
    ck_assert_str_eq(a->audiences[1], "other");
    ck_assert_uint_eq(a->algorithms, SG_JWT_ALG_ES256 | SG_JWT_ALG_EDDSA);
    ck_assert(a->discovery);
    ck_assert_ptr_null(a->jwks_file);
    ck_assert_ptr_null(a->jwks_uri);
    ck_assert_ptr_null(a->ca_file);
    /* Defaults */
    ck_assert_uint_eq(a->clock_skew_s, 60);
    ck_assert_str_eq(a->subject_claim, "sub");
    ck_assert_ptr_null(a->groups_claim);
    ck_assert_ptr_null(a->subject_prefix);
    ck_assert_uint_eq(a->refresh_interval_s, 3600);
    ck_assert_uint_eq(a->min_refresh_interval_s, 60);
    ck_assert_uint_eq(a->max_token_bytes, 16384);

    ck_assert_str_eq(b->jwks_uri, "https://b.example/keys");
    ck_assert(!b->discovery);
    ck_assert_uint_eq(b->algorithms, SG_JWT_ALG_RS256);
    ck_assert_str_eq(b->ca_file, "/etc/ca.pem");
    ck_assert_uint_eq(b->clock_skew_s, 5);
    ck_assert_str_eq(b->subject_claim, "email");
    ck_assert_str_eq(b->groups_claim, "roles");
    ck_assert_str_eq(b->subject_prefix, "b:");
    ck_assert_uint_eq(b->refresh_interval_s, 600);
    ck_assert_uint_eq(b->min_refresh_interval_s, 10);
    ck_assert_uint_eq(b->max_token_bytes, 4096);

    ck_assert_uint_eq(sg_policy_n_tokens(p), 2);
    ck_assert_ptr_null(sg_policy_token(p, 2));
    t = sg_policy_token(p, 0);
    ck_assert_str_eq(t->name, "dev");
    ck_assert_uint_eq(t->sha256[0], 0x5e);
    ck_assert_uint_eq(t->sha256[1], 0x88);
    ck_assert_uint_eq(t->sha256[31], 0xd8);
    t = sg_policy_token(p, 1);
    ck_assert_str_eq(t->name, "ci.bot");
    for (unsigned i = 0; i < 32; i++)
        ck_assert_uint_eq(t->sha256[i], i);

    ck_assert_uint_eq(sg_policy_n_issuers(NULL), 0);
    ck_assert_uint_eq(sg_policy_n_tokens(NULL), 0);
    ck_assert_ptr_null(sg_policy_issuer(NULL, 0));
    ck_assert_ptr_null(sg_policy_token(NULL, 0));
    sg_policy_unref(p);
}
END_TEST

/* authentication.token_review and the per-issuer flag. */
#define TR_ISSUER(extra)                                                      \
    "authentication:\n"                                                       \
    "  jwt_issuers:\n"                                                        \
    "    - issuer: https://sa.example\n"                                      \
    "      audiences: [sandgate]\n"                                           \
    "      algorithms: [RS256]\n"                                             \
    "      discovery: true\n" extra

START_TEST(test_token_review_fields)
{
    struct sg_policy *p = load_text(
        TR_ISSUER("      token_review: true\n"
                  "    - issuer: https://other.example\n"
                  "      audiences: [sandgate]\n"
                  "      algorithms: [RS256]\n"
                  "      discovery: true\n"
                  "  token_review:\n"
                  "    kubeconfig: /etc/kube/config\n"
                  "    context: prod\n"
                  "    audiences: [sandgate, api]\n"
                  "    cache_ttl_s: 30\n"
                  "    negative_cache_ttl_s: 0\n"
                  "    timeout_ms: 500\n"));
    const struct sg_policy_token_review *t = sg_policy_token_review(p);
    struct sg_policy *d;

    ck_assert_ptr_nonnull(t);
    ck_assert(!t->in_cluster);
    ck_assert_str_eq(t->kubeconfig, "/etc/kube/config");
    ck_assert_str_eq(t->context, "prod");
    ck_assert_uint_eq(t->n_audiences, 2);
    ck_assert_str_eq(t->audiences[1], "api");
    ck_assert_uint_eq(t->cache_ttl_s, 30);
    ck_assert_uint_eq(t->negative_cache_ttl_s, 0);
    ck_assert_uint_eq(t->timeout_ms, 500);
    ck_assert(sg_policy_issuer_reviewed(p, "https://sa.example"));
    ck_assert(!sg_policy_issuer_reviewed(p, "https://other.example"));
    ck_assert(!sg_policy_issuer_reviewed(p, "https://unknown.example"));
    ck_assert(!sg_policy_issuer_reviewed(p, NULL));
    sg_policy_unref(p);

    /* Defaults; a section without reviewed issuers is allowed. */
    d = load_text(TR_ISSUER("      token_review: false\n"
                            "  token_review: {in_cluster: true}\n"));
    t = sg_policy_token_review(d);
    ck_assert_ptr_nonnull(t);
    ck_assert(t->in_cluster);
    ck_assert_ptr_null(t->kubeconfig);
    ck_assert_ptr_null(t->context);
    ck_assert_uint_eq(t->n_audiences, 0);
    ck_assert_uint_eq(t->cache_ttl_s, 10);
    ck_assert_uint_eq(t->negative_cache_ttl_s, 5);
    ck_assert_uint_eq(t->timeout_ms, 2000);
    ck_assert(!sg_policy_issuer_reviewed(d, "https://sa.example"));
    sg_policy_unref(d);

    d = load_text("roles:\n  r: {}\n");
    ck_assert_ptr_null(sg_policy_token_review(d));
    ck_assert_ptr_null(sg_policy_token_review(NULL));
    sg_policy_unref(d);
}
END_TEST

/* The TokenReview example of docs/AUTHORIZATION.md loads as described. */
START_TEST(test_token_review_doc)
{
    FILE *f = fopen(SG_SOURCE_ROOT "/docs/AUTHORIZATION.md", "r");
    char *doc = calloc(1, 1 << 20);
    const char *start;
    const char *end;
    struct sg_error err = SG_ERROR_INIT;
    struct sg_policy *p;

    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(doc);
    ck_assert_uint_gt(fread(doc, 1, (1 << 20) - 1, f), 0);
    fclose(f);
    start = strstr(doc, "```yaml\n# TokenReview\n");
    ck_assert_ptr_nonnull(start);
    start += strlen("```yaml\n");
    end = strstr(start, "```");
    ck_assert_ptr_nonnull(end);
    p = sg_policy_load_data("AUTHORIZATION.md", start, (size_t)(end - start),
                            &err);
    ck_assert_msg(p != NULL, "%s", err.message);
    ck_assert(sg_policy_issuer_reviewed(
        p, "https://kubernetes.default.svc.cluster.local"));
    ck_assert(sg_policy_token_review(p)->in_cluster);
    ck_assert_uint_eq(sg_policy_token_review(p)->cache_ttl_s, 10);
    sg_policy_unref(p);
    free(doc);
}
END_TEST

START_TEST(test_token_review_errors)
{
    expect_load_error(TR_ISSUER("      token_review: true\n"),
                      "t.yaml:7: authentication.jwt_issuers[0].token_review: "
                      "needs an authentication.token_review section");
    expect_load_error(TR_ISSUER("      token_review: yes\n"
                                "  token_review: {in_cluster: true}\n"),
                      "t.yaml:7: authentication.jwt_issuers[0].token_review: "
                      "expected true or false, got 'yes'");
    expect_load_error("authentication:\n  token_review: {}\n",
                      "t.yaml:2: authentication.token_review: needs "
                      "in_cluster: true or kubeconfig");
    expect_load_error("authentication:\n  token_review:\n    in_cluster: "
                      "true\n    kubeconfig: /k\n",
                      "t.yaml:4: authentication.token_review.kubeconfig: "
                      "cannot be combined with in_cluster: true");
    expect_load_error("authentication:\n  token_review:\n    in_cluster: "
                      "true\n    context: c\n",
                      "t.yaml:3: authentication.token_review.context: needs "
                      "kubeconfig");
    expect_load_error("authentication:\n  token_review:\n    in_cluster: "
                      "true\n    cache_ttls: 3\n",
                      "t.yaml:4: authentication.token_review.cache_ttls: "
                      "unknown key");
    expect_load_error("authentication:\n  token_review:\n    in_cluster: "
                      "true\n    timeout_ms: 5\n",
                      "t.yaml:4: authentication.token_review.timeout_ms: "
                      "must be between 100 and 60000");
    expect_load_error("authentication:\n  token_review:\n    in_cluster: "
                      "true\n    cache_ttl_s: 3601\n",
                      "t.yaml:4: authentication.token_review.cache_ttl_s: "
                      "must be between 0 and 3600");
    expect_load_error("authentication:\n  token_review:\n    kubeconfig: "
                      "/k\n    audiences: []\n",
                      "t.yaml:4: authentication.token_review.audiences: "
                      "must not be empty");
    expect_load_error("authentication:\n  token_review: [in_cluster]\n",
                      "t.yaml:2: authentication.token_review: expected a "
                      "mapping, got a sequence");
    expect_load_error("authentication:\n  token_review: {in_cluster: true}\n"
                      "  token_review: {in_cluster: true}\n",
                      "t.yaml:3: authentication.token_review: duplicate key");
}
END_TEST

START_TEST(test_digest_and_refs)
{
    static const char text[] = "roles:\n  r: {}\n";
    unsigned char md[32];
    unsigned md_len = 0;
    char expected[80];
    struct sg_policy *p = load_text(text);
    struct sg_policy *q;
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(EVP_Digest(text, strlen(text), md, &md_len,
                                EVP_sha256(), NULL), 1);
    memcpy(expected, "sha256:", 8);
    for (unsigned i = 0; i < md_len; i++)
        snprintf(expected + 7 + 2 * i, 3, "%02x", md[i]);
    ck_assert_str_eq(sg_policy_digest(p), expected);

    /* One byte more (a comment) is another file. */
    q = load_text("roles:\n  r: {}\n#\n");
    ck_assert_str_ne(sg_policy_digest(q), expected);
    sg_policy_unref(q);

    /* The file's bytes, as load_data sees them. */
    q = sg_policy_load_file(POLICY_DATA "/example.yaml", &err);
    ck_assert_ptr_nonnull(q);
    ck_assert(STRPREFIX(sg_policy_digest(q), "sha256:"));
    ck_assert_uint_eq(strlen(sg_policy_digest(q)), 7 + 64);
    sg_policy_unref(q);

    ck_assert_ptr_eq(sg_policy_ref(p), p);
    sg_policy_unref(p);
    ck_assert_str_eq(sg_policy_digest(p), expected); /* still alive */
    sg_policy_unref(p);
    sg_policy_unref(NULL);
    ck_assert_ptr_null(sg_policy_ref(NULL));
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *glob = tcase_create("glob");
    TCase *load = tcase_create("load");
    TCase *eval = tcase_create("eval");

    tcase_add_loop_test(glob, test_glob, 0, (int)SG_N_ELEMENTS(glob_cases));
    tcase_add_loop_test(glob, test_glob_compiled, 0,
                        (int)SG_N_ELEMENTS(glob_cases));
    tcase_add_test(glob, test_glob_kinds);
    tcase_add_test(glob, test_glob_pathological);
    tcase_add_loop_test(glob, test_quantity, 0,
                        (int)SG_N_ELEMENTS(quantity_cases));
    suite_add_tcase(s, glob);

    tcase_add_loop_test(load, test_bad_file, 0,
                        (int)SG_N_ELEMENTS(bad_files));
    tcase_add_test(load, test_missing_file);
    tcase_add_test(load, test_load_errors_inline);
    tcase_add_test(load, test_example_file);
    tcase_add_test(load, test_doc_example);
    tcase_add_test(load, test_issuer_fields);
    tcase_add_test(load, test_digest_and_refs);
    tcase_add_test(load, test_token_review_fields);
    tcase_add_test(load, test_token_review_errors);
    tcase_add_test(load, test_token_review_doc);
    suite_add_tcase(s, load);

    tcase_add_loop_test(eval, test_matchers, 0,
                        (int)SG_N_ELEMENTS(matcher_cases));
    tcase_add_test(eval, test_roles_of_limits);
    tcase_add_test(eval, test_reach);
    tcase_add_test(eval, test_scopes_do_not_combine);
    tcase_add_loop_test(eval, test_create_denials, 0,
                        (int)SG_N_ELEMENTS(create_cases));
    tcase_add_test(eval, test_create_permission);
    tcase_add_test(eval, test_create_credential_sources);
    tcase_add_test(eval, test_create_best_role);
    tcase_add_test(eval, test_missing_lists);
    tcase_add_test(eval, test_message_quoting);
    tcase_add_test(eval, test_permission_globs);
    tcase_add_test(eval, test_credential_sources);
    tcase_add_test(eval, test_credential_source_and_tenant_in_one_role);
    suite_add_tcase(s, eval);
    return s;
}

SG_TEST_MAIN(make_suite)
