/*
 * test_canon.c: canonical JSON of Struct/Value, the policy hash and the
 * create-request hash.
 */
#include "internal.h"

#include "testutils.h"

#include "canon.h"

#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- Struct/Value builders over static pools (nothing to free) ----- */

static Google__Protobuf__Value values[512];
static Google__Protobuf__Struct structs[128];
static Google__Protobuf__ListValue lists[128];
static Google__Protobuf__Struct__FieldsEntry entries[512];
static Google__Protobuf__Struct__FieldsEntry *entry_ptrs[1024];
static Google__Protobuf__Value *value_ptrs[1024];
static size_t n_values, n_structs, n_lists, n_entries, n_entry_ptrs,
    n_value_ptrs;

static void reset_pools(void)
{
    n_values = n_structs = n_lists = n_entries = n_entry_ptrs = n_value_ptrs =
        0;
}

static Google__Protobuf__Value *val(Google__Protobuf__Value__KindCase kind)
{
    Google__Protobuf__Value *v;

    ck_assert_uint_lt(n_values, SG_N_ELEMENTS(values));
    v = &values[n_values++];
    google__protobuf__value__init(v);
    v->kind_case = kind;
    return v;
}

static Google__Protobuf__Value *num(double x)
{
    Google__Protobuf__Value *v =
        val(GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE);

    v->number_value = x;
    return v;
}

static Google__Protobuf__Value *str(const char *s)
{
    Google__Protobuf__Value *v =
        val(GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE);

    v->string_value = (char *)s;
    return v;
}

static Google__Protobuf__Value *boolean(bool b)
{
    Google__Protobuf__Value *v = val(GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE);

    v->bool_value = b;
    return v;
}

static Google__Protobuf__Value *null(void)
{
    return val(GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE);
}

/* st(n, key1, value1, ..., keyn, valuen) */
static Google__Protobuf__Struct *st(size_t n, ...)
{
    Google__Protobuf__Struct *s;
    va_list ap;

    ck_assert_uint_lt(n_structs, SG_N_ELEMENTS(structs));
    ck_assert_uint_le(n_entry_ptrs + n, SG_N_ELEMENTS(entry_ptrs));
    s = &structs[n_structs++];
    google__protobuf__struct__init(s);
    s->n_fields = n;
    s->fields = &entry_ptrs[n_entry_ptrs];
    n_entry_ptrs += n;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        Google__Protobuf__Struct__FieldsEntry *e;

        ck_assert_uint_lt(n_entries, SG_N_ELEMENTS(entries));
        e = &entries[n_entries++];
        google__protobuf__struct__fields_entry__init(e);
        e->key = va_arg(ap, char *);
        e->value = va_arg(ap, Google__Protobuf__Value *);
        s->fields[i] = e;
    }
    va_end(ap);
    return s;
}

static Google__Protobuf__Value *obj(Google__Protobuf__Struct *s)
{
    Google__Protobuf__Value *v =
        val(GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE);

    v->struct_value = s;
    return v;
}

/* list(n, value1, ..., valuen) */
static Google__Protobuf__Value *list(size_t n, ...)
{
    Google__Protobuf__Value *v = val(GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE);
    Google__Protobuf__ListValue *l;
    va_list ap;

    ck_assert_uint_lt(n_lists, SG_N_ELEMENTS(lists));
    ck_assert_uint_le(n_value_ptrs + n, SG_N_ELEMENTS(value_ptrs));
    l = &lists[n_lists++];
    google__protobuf__list_value__init(l);
    l->n_values = n;
    l->values = &value_ptrs[n_value_ptrs];
    n_value_ptrs += n;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        l->values[i] = va_arg(ap, Google__Protobuf__Value *);
    va_end(ap);
    v->list_value = l;
    return v;
}

static void assert_struct_json(const Google__Protobuf__Struct *s,
                               const char *expected)
{
    struct sg_error err = SG_ERROR_INIT;
    char *json = sg_struct_to_json(s, &err);

    ck_assert_msg(json != NULL, "%s", err.message);
    ck_assert_str_eq(json, expected);
    free(json);
}

static void assert_value_json(const Google__Protobuf__Value *v,
                              const char *expected)
{
    struct sg_error err = SG_ERROR_INIT;
    char *json = sg_value_to_json(v, &err);

    ck_assert_msg(json != NULL, "%s", err.message);
    ck_assert_str_eq(json, expected);
    free(json);
}

static void assert_value_refused(const Google__Protobuf__Value *v,
                                 const char *what)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_ptr_null(sg_value_to_json(v, &err));
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(err.message, what) != NULL, "%s", err.message);
    sg_error_reset(&err);
}

/* ---- JSON ---------------------------------------------------------- */

START_TEST(test_json_sorted_compact)
{
    reset_pools();
    assert_struct_json(
        st(3, "b", num(1), "a", list(3, boolean(true), null(), str("x")), "c",
           obj(st(2, "z", num(1.5), "y", num(-2)))),
        "{\"a\":[true,null,\"x\"],\"b\":1,\"c\":{\"y\":-2,\"z\":1.5}}");
    assert_struct_json(
        st(3, "c", obj(st(2, "y", num(-2), "z", num(1.5))), "a",
           list(3, boolean(true), null(), str("x")), "b", num(1)),
        "{\"a\":[true,null,\"x\"],\"b\":1,\"c\":{\"y\":-2,\"z\":1.5}}");
    assert_struct_json(NULL, "{}");
    assert_struct_json(st(0), "{}");
    assert_value_json(list(0), "[]");
}
END_TEST

START_TEST(test_json_scalars)
{
    reset_pools();
    assert_value_json(null(), "null");
    assert_value_json(boolean(false), "false");
    assert_value_json(str(""), "\"\"");
    assert_value_json(str("a\"b\\c\n\x01 é"), "\"a\\\"b\\\\c\\n\\u0001 é\"");
}
END_TEST

static const struct {
    double x;
    const char *json;
} numbers[] = {
    {0, "0"},
    {-0.0, "0"},
    {1, "1"},
    {-1, "-1"},
    {3.0, "3"},
    {1.5, "1.5"},
    {0.1, "0.1"},
    {-2.25, "-2.25"},
    {1e15, "1000000000000000"},
    {9007199254740992.0, "9007199254740992"},   /* 2^53 */
    {-9007199254740992.0, "-9007199254740992"}, /* -2^53 */
    {9007199254740994.0, "9007199254740994.0"}, /* 2^53 + 2: a real */
    {1e300, "1e300"},
    {1e-7, "1e-7"},
    {123456.789, "123456.789"},
    {0.30000000000000004, "0.30000000000000004"},
};

START_TEST(test_json_numbers)
{
    reset_pools();
    assert_value_json(num(numbers[_i].x), numbers[_i].json);
}
END_TEST

/* Reals of one document share a precision; each still reads back exact. */
START_TEST(test_json_reals_round_trip)
{
    struct sg_error err = SG_ERROR_INIT;
    char *json;
    char *end;
    double a, b;

    reset_pools();
    json = sg_value_to_json(list(2, num(0.1), num(1.0 / 3.0)), &err);
    ck_assert_ptr_nonnull(json);
    ck_assert_int_eq(json[0], '[');
    a = strtod(json + 1, &end);
    ck_assert_int_eq(*end, ',');
    b = strtod(end + 1, &end);
    ck_assert_str_eq(end, "]");
    ck_assert(a == 0.1);
    ck_assert(b == 1.0 / 3.0);
    free(json);
}
END_TEST

START_TEST(test_json_refused)
{
    Google__Protobuf__Value *deep;

    reset_pools();
    assert_value_refused(num(NAN), "finite");
    assert_value_refused(num(INFINITY), "finite");
    assert_value_refused(num(-INFINITY), "finite");
    assert_value_refused(list(2, num(1), num(NAN)), "finite");
    assert_value_refused(obj(st(1, "a", obj(st(1, "b", num(NAN))))), "finite");
    assert_value_refused(val(GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET),
                         "no kind");
    assert_value_refused(NULL, "no kind");
    assert_value_refused(obj(st(1, "a", NULL)), "no kind");
    assert_value_refused(str("\xc3\x28"), "UTF-8");
    assert_value_refused(obj(st(1, "\xff", num(1))), "UTF-8");

    /* 65 nested lists are too deep, 64 are fine. */
    deep = num(1);
    for (int i = 0; i < 64; i++)
        deep = list(1, deep);
    assert_value_json(
        deep,
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]"
        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    assert_value_refused(list(1, deep), "nested");
}
END_TEST

START_TEST(test_json_last_key_wins)
{
    reset_pools();
    assert_struct_json(st(3, "a", num(1), "b", num(2), "a", num(3)),
                       "{\"a\":3,\"b\":2}");
}
END_TEST

START_TEST(test_driver_block)
{
    struct sg_error err = SG_ERROR_INIT;
    Google__Protobuf__Struct *dc;
    char *json;

    reset_pools();
    dc = st(2, "process", obj(st(2, "z", num(1), "a", str("x"))), "kubernetes",
            str("not an object"));
    json = sg_driver_block_json(dc, "process", &err);
    ck_assert_str_eq(json, "{\"a\":\"x\",\"z\":1}");
    free(json);
    json = sg_driver_block_json(dc, "noop", &err);
    ck_assert_str_eq(json, "{}");
    free(json);
    json = sg_driver_block_json(NULL, "process", &err);
    ck_assert_str_eq(json, "{}");
    free(json);
    ck_assert(!sg_error_is_set(&err));
    ck_assert_ptr_null(sg_driver_block_json(dc, "kubernetes", &err));
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message, "driver_config.kubernetes must be an object");
    sg_error_reset(&err);
    dc = st(1, "process", obj(st(1, "n", num(NAN))));
    ck_assert_ptr_null(sg_driver_block_json(dc, "process", &err));
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    sg_error_reset(&err);
}
END_TEST

/* ---- policy hash --------------------------------------------------- */

START_TEST(test_policy_hash)
{
    Sandgate__V1__SandboxPolicy p = SANDGATE__V1__SANDBOX_POLICY__INIT;
    char h[SG_HASH_SIZE];
    char h2[SG_HASH_SIZE];

    sg_policy_hash(NULL, h);
    ck_assert_str_eq(h, "");
    sg_policy_hash(&p, h);
    ck_assert_str_eq(h, "");

    /* printf 'ref\0ns/p' | sha256sum */
    p.source_case = SANDGATE__V1__SANDBOX_POLICY__SOURCE_REF;
    p.ref = "ns/p";
    sg_policy_hash(&p, h);
    ck_assert_str_eq(
        h, "sha256:"
           "7cfd5432b37b2220dd20d08f559c253310494759fa63d425f92585a0d3b9c33f");
    /* printf 'inline\0ns/p' | sha256sum */
    p.source_case = SANDGATE__V1__SANDBOX_POLICY__SOURCE_INLINE;
    p.inline_.data = (uint8_t *)"ns/p";
    p.inline_.len = 4;
    sg_policy_hash(&p, h2);
    ck_assert_str_eq(
        h2, "sha256:"
            "4b8c91cad028d56255bd9167c35c5bba58078f9d2f0958a78f022513e9c82721");
    ck_assert_str_ne(h, h2);
}
END_TEST

/* ---- request hash -------------------------------------------------- */

static struct {
    Sandgate__V1__CreateSandboxRequest req;
    Sandgate__V1__Sandbox sb;
    Sandgate__V1__SandboxSpec spec;
    Sandgate__V1__SandboxPolicy policy;
    Sandgate__V1__SandboxStatus status;
    Google__Protobuf__Timestamp ts;
    Sandgate__V1__Sandbox__LabelsEntry label[3];
    Sandgate__V1__Sandbox__LabelsEntry *label_p[3];
    Sandgate__V1__Sandbox__AnnotationsEntry ann[3];
    Sandgate__V1__Sandbox__AnnotationsEntry *ann_p[3];
    Sandgate__V1__SandboxSpec__EnvEntry env[3];
    Sandgate__V1__SandboxSpec__EnvEntry *env_p[3];
    char *cmd[4];
    Sandgate__V1__CredentialBinding cred[2];
    Sandgate__V1__CredentialBinding *cred_p[2];
} F;

static void setup(void)
{
    memset(&F, 0, sizeof(F));
    reset_pools();
    sandgate__v1__create_sandbox_request__init(&F.req);
    sandgate__v1__sandbox__init(&F.sb);
    sandgate__v1__sandbox_spec__init(&F.spec);
    sandgate__v1__sandbox_policy__init(&F.policy);
    sandgate__v1__sandbox_status__init(&F.status);
    google__protobuf__timestamp__init(&F.ts);
    for (int i = 0; i < 3; i++) {
        sandgate__v1__sandbox__labels_entry__init(&F.label[i]);
        sandgate__v1__sandbox__annotations_entry__init(&F.ann[i]);
        sandgate__v1__sandbox_spec__env_entry__init(&F.env[i]);
        F.label_p[i] = &F.label[i];
        F.ann_p[i] = &F.ann[i];
        F.env_p[i] = &F.env[i];
    }
    F.req.sandbox = &F.sb;
    F.sb.name = "web";
    F.sb.tenant = "team-a";
    F.sb.project = "proj";
    F.sb.request_id = "req-1";
    F.sb.access_profile = "no-egress";
    F.sb.runtime_profile = "gvisor";
    F.label[0].key = "app";
    F.label[0].value = "web";
    F.label[1].key = "tier";
    F.label[1].value = "front";
    F.sb.n_labels = 2;
    F.sb.labels = F.label_p;
    F.ann[0].key = "a";
    F.ann[0].value = "1";
    F.ann[1].key = "b";
    F.ann[1].value = "2";
    F.sb.n_annotations = 2;
    F.sb.annotations = F.ann_p;
    F.sb.spec = &F.spec;
    F.spec.image = "alpine";
    F.cmd[0] = "sh";
    F.cmd[1] = "-c";
    F.cmd[2] = "true";
    F.spec.n_command = 3;
    F.spec.command = F.cmd;
    F.env[0].key = "A";
    F.env[0].value = "1";
    F.env[1].key = "B";
    F.env[1].value = "2";
    F.spec.n_env = 2;
    F.spec.env = F.env_p;
    F.policy.source_case = SANDGATE__V1__SANDBOX_POLICY__SOURCE_REF;
    F.policy.ref = "ns/p";
    F.spec.policy = &F.policy;
    for (int i = 0; i < 2; i++) {
        sandgate__v1__credential_binding__init(&F.cred[i]);
        F.cred_p[i] = &F.cred[i];
    }
    F.cred[0].credential = "db";
    F.cred[0].delivery_case = SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_ENV;
    F.cred[0].env = "DB";
    F.cred[1].credential = "tls";
    F.cred[1].delivery_case = SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_FILE;
    F.cred[1].file = "/run/tls";
    F.spec.n_credentials = 2;
    F.spec.credentials = F.cred_p;
    F.spec.ttl_seconds = 60;
    F.spec.driver_config =
        st(2, "process", obj(st(2, "cpus", num(1), "mem", str("1G"))),
           "kubernetes", obj(st(1, "ns", str("x"))));
    F.spec.working_dir = "/w";
}

static void hash_of(char out[SG_HASH_SIZE])
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_msg(sg_sandbox_request_hash(&F.sb, out, &err) == 0, "%s",
                  err.message);
    ck_assert_uint_eq(strlen(out), 71);
    ck_assert(STRPREFIX(out, "sha256:"));
}

#define MUT(fn, body)                                                          \
    static void fn(void)                                                       \
    {                                                                          \
        body;                                                                  \
    }

MUT(c_name, F.sb.name = "web2")
MUT(c_tenant, F.sb.tenant = "team-b")
MUT(c_project, F.sb.project = "proj2")
MUT(c_request_id, F.sb.request_id = "req-2")
MUT(c_access, F.sb.access_profile = "egress")
MUT(c_runtime, F.sb.runtime_profile = "runc")
MUT(c_label_key, F.label[0].key = "app2")
MUT(c_label_value, F.label[0].value = "web2")
MUT(c_label_added, F.label[2].key = "x"; F.sb.n_labels = 3)
MUT(c_label_removed, F.sb.n_labels = 1)
MUT(c_label_shift, F.label[0].key = "ap"; F.label[0].value = "pweb")
MUT(c_label_to_ann, F.sb.n_labels = 1; F.ann[2].key = "tier";
    F.ann[2].value = "front"; F.sb.n_annotations = 3)
MUT(c_ann_value, F.ann[1].value = "3")
MUT(c_ann_removed, F.sb.n_annotations = 0)
MUT(c_image, F.spec.image = "alpine:3")
MUT(c_cmd_arg, F.cmd[2] = "false")
MUT(c_cmd_order, F.cmd[0] = "-c"; F.cmd[1] = "sh")
MUT(c_cmd_empty_arg, F.cmd[3] = ""; F.spec.n_command = 4)
MUT(c_cmd_split, F.cmd[1] = "-ct"; F.cmd[2] = "rue")
MUT(c_env_value, F.env[0].value = "x")
MUT(c_env_removed, F.spec.n_env = 1)
MUT(c_policy_none, F.spec.policy = NULL)
MUT(c_policy_inline,
    F.policy.source_case = SANDGATE__V1__SANDBOX_POLICY__SOURCE_INLINE;
    F.policy.inline_.data = (uint8_t *)"ns/p"; F.policy.inline_.len = 4)
MUT(c_policy_ref, F.policy.ref = "ns/q")
MUT(c_cred_name, F.cred[0].credential = "db2")
MUT(c_cred_kind,
    F.cred[0].delivery_case = SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_FILE;
    F.cred[0].file = "DB")
MUT(c_cred_target, F.cred[1].file = "/run/tls2")
MUT(c_cred_order, F.cred_p[0] = &F.cred[1]; F.cred_p[1] = &F.cred[0])
MUT(c_cred_removed, F.spec.n_credentials = 1)
MUT(c_ttl, F.spec.ttl_seconds = 61)
MUT(c_dc_value, F.spec.driver_config->fields[0]
                    ->value->struct_value->fields[0]
                    ->value->number_value = 2)
MUT(c_dc_type,
    F.spec.driver_config->fields[0]->value->struct_value->fields[1]->value =
        num(1))
MUT(c_dc_none, F.spec.driver_config = NULL)
MUT(c_working_dir, F.spec.working_dir = "/x")
MUT(c_no_spec, F.sb.spec = NULL)

static void (*const changes[])(void) = {
    c_name,         c_tenant,        c_project,       c_request_id,
    c_access,       c_runtime,       c_label_key,     c_label_value,
    c_label_added,  c_label_removed, c_label_shift,   c_label_to_ann,
    c_ann_value,    c_ann_removed,   c_image,         c_cmd_arg,
    c_cmd_order,    c_cmd_empty_arg, c_cmd_split,     c_env_value,
    c_env_removed,  c_policy_none,   c_policy_inline, c_policy_ref,
    c_cred_name,    c_cred_kind,     c_cred_target,   c_cred_order,
    c_cred_removed, c_ttl,           c_dc_value,      c_dc_type,
    c_dc_none,      c_working_dir,   c_no_spec,
};

/* Each change gives a hash different from the base and from every other. */
START_TEST(test_hash_changes)
{
    static char hashes[SG_N_ELEMENTS(changes) + 1][SG_HASH_SIZE];

    for (size_t i = 0; i <= SG_N_ELEMENTS(changes); i++) {
        setup();
        if (i > 0)
            changes[i - 1]();
        hash_of(hashes[i]);
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(STRNEQ(hashes[i], hashes[j]),
                          "change %zu hashes like change %zu", i, j);
    }
}
END_TEST

MUT(s_labels_reordered, F.label_p[0] = &F.label[1]; F.label_p[1] = &F.label[0])
MUT(s_ann_reordered, F.ann_p[0] = &F.ann[1]; F.ann_p[1] = &F.ann[0])
MUT(s_env_reordered, F.env_p[0] = &F.env[1]; F.env_p[1] = &F.env[0])
MUT(s_dc_reordered,
    F.spec.driver_config = st(2, "kubernetes", obj(st(1, "ns", str("x"))),
                              "process",
                              obj(st(2, "mem", str("1G"), "cpus", num(1)))))
MUT(s_label_dup_last_wins, F.label[2].key = "app"; F.label[2].value = "web";
    F.label[0].value = "overridden"; F.sb.n_labels = 3)
MUT(s_id, F.sb.id = "sb-1")
MUT(s_owner, F.sb.owner = "someone")
MUT(s_status, F.sb.status = &F.status)
MUT(s_version, F.sb.resource_version = 9)
MUT(s_times, F.sb.create_time = &F.ts; F.sb.update_time = &F.ts;
    F.sb.delete_time = &F.ts)

static void (*const same[])(void) = {
    s_labels_reordered,
    s_ann_reordered,
    s_env_reordered,
    s_dc_reordered,
    s_label_dup_last_wins,
    s_id,
    s_owner,
    s_status,
    s_version,
    s_times,
};

START_TEST(test_hash_same)
{
    char base[SG_HASH_SIZE];
    char h[SG_HASH_SIZE];

    hash_of(base);
    same[_i]();
    hash_of(h);
    ck_assert_str_eq(h, base);
}
END_TEST

/* A missing spec or driver_config is the same as an empty one. */
START_TEST(test_hash_defaults)
{
    Sandgate__V1__SandboxSpec empty = SANDGATE__V1__SANDBOX_SPEC__INIT;
    Google__Protobuf__Struct *no_fields;
    char h1[SG_HASH_SIZE];
    char h2[SG_HASH_SIZE];

    F.sb.spec = NULL;
    hash_of(h1);
    F.sb.spec = &empty;
    hash_of(h2);
    ck_assert_str_eq(h1, h2);

    F.sb.spec = &F.spec;
    F.spec.driver_config = NULL;
    hash_of(h1);
    no_fields = st(0);
    F.spec.driver_config = no_fields;
    hash_of(h2);
    ck_assert_str_eq(h1, h2);
}
END_TEST

START_TEST(test_hash_refuses_nan)
{
    struct sg_error err = SG_ERROR_INIT;
    char h[SG_HASH_SIZE];

    F.spec.driver_config->fields[0]
        ->value->struct_value->fields[0]
        ->value->number_value = NAN;
    ck_assert_int_eq(sg_sandbox_request_hash(&F.sb, h, &err), -1);
    ck_assert_str_eq(h, "");
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    sg_error_reset(&err);
    ck_assert_int_eq(sg_sandbox_request_hash(NULL, h, &err), -1);
    sg_error_reset(&err);
}
END_TEST

/* The create hash uses the effective request_id, wherever it was given. */
START_TEST(test_create_request_hash)
{
    struct sg_error err = SG_ERROR_INIT;
    char inner[SG_HASH_SIZE];
    char outer[SG_HASH_SIZE];
    char direct[SG_HASH_SIZE];
    char other[SG_HASH_SIZE];

    ck_assert_int_eq(sg_create_request_hash(&F.req, inner, &err), 0);
    hash_of(direct);
    ck_assert_str_eq(inner, direct);
    F.req.request_id = "req-1";
    F.sb.request_id = "";
    ck_assert_int_eq(sg_create_request_hash(&F.req, outer, &err), 0);
    ck_assert_str_eq(inner, outer);
    F.req.request_id = "req-2";
    ck_assert_int_eq(sg_create_request_hash(&F.req, other, &err), 0);
    ck_assert_str_ne(inner, other);
    F.req.sandbox = NULL;
    ck_assert_int_eq(sg_create_request_hash(&F.req, other, &err), -1);
    sg_error_reset(&err);
}
END_TEST

static Suite *canon_suite(void)
{
    Suite *s = suite_create("canon");
    TCase *json = tcase_create("json");
    TCase *hash = tcase_create("hash");

    tcase_add_test(json, test_json_sorted_compact);
    tcase_add_test(json, test_json_scalars);
    tcase_add_loop_test(json, test_json_numbers, 0,
                        (int)SG_N_ELEMENTS(numbers));
    tcase_add_test(json, test_json_reals_round_trip);
    tcase_add_test(json, test_json_refused);
    tcase_add_test(json, test_json_last_key_wins);
    tcase_add_test(json, test_driver_block);
    suite_add_tcase(s, json);

    tcase_add_checked_fixture(hash, setup, NULL);
    tcase_add_test(hash, test_policy_hash);
    tcase_add_test(hash, test_hash_changes);
    tcase_add_loop_test(hash, test_hash_same, 0, (int)SG_N_ELEMENTS(same));
    tcase_add_test(hash, test_hash_defaults);
    tcase_add_test(hash, test_hash_refuses_nan);
    tcase_add_test(hash, test_create_request_hash);
    suite_add_tcase(s, hash);
    return s;
}

SG_TEST_MAIN(canon_suite)
