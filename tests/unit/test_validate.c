/*
 * test_validate.c: validation of CreateSandboxRequest and the name rules.
 *
 * Each case of the request table starts from one valid request (setup()),
 * changes one thing, and expects either no violation or exactly one, on the
 * given field.
 */
#include "internal.h"

#include "testutils.h"

#include "validate.h"

#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define MAXN 320

/* ---- a bump allocator, so that the forked tests free nothing ------- */

static char pool[8u << 20];
static size_t pool_used;

static char *pool_alloc(size_t n)
{
    char *p;

    ck_assert_uint_le(pool_used + n, sizeof(pool));
    p = pool + pool_used;
    pool_used += n;
    return p;
}

/* n copies of c. */
static char *rep(char c, size_t n)
{
    char *p = pool_alloc(n + 1);

    memset(p, c, n);
    p[n] = '\0';
    return p;
}

static char *fmt(const char *f, ...) SG_PRINTF(1, 2);

static char *fmt(const char *f, ...)
{
    char *p = pool_alloc(512);
    va_list ap;

    va_start(ap, f);
    vsnprintf(p, 512, f, ap);
    va_end(ap);
    return p;
}

/* A DNS-1123 subdomain of exactly len characters (parts of 63). */
static char *subdomain(size_t len)
{
    char *p = rep('a', len);

    for (size_t i = 63; i + 1 < len; i += 64)
        p[i] = '.';
    return p;
}

/* ---- the valid request every case starts from ---------------------- */

static struct {
    Sandgate__V1__CreateSandboxRequest req;
    Sandgate__V1__Sandbox sb;
    Sandgate__V1__SandboxSpec spec;
    Sandgate__V1__SandboxPolicy policy;
    Sandgate__V1__SandboxStatus status;
    Google__Protobuf__Timestamp ts;
    Sandgate__V1__Sandbox__LabelsEntry label[MAXN];
    Sandgate__V1__Sandbox__LabelsEntry *label_p[MAXN];
    Sandgate__V1__Sandbox__AnnotationsEntry ann[MAXN];
    Sandgate__V1__Sandbox__AnnotationsEntry *ann_p[MAXN];
    Sandgate__V1__SandboxSpec__EnvEntry env[MAXN];
    Sandgate__V1__SandboxSpec__EnvEntry *env_p[MAXN];
    char *cmd[MAXN];
    Sandgate__V1__CredentialBinding cred[MAXN];
    Sandgate__V1__CredentialBinding *cred_p[MAXN];
    Google__Protobuf__Struct dc;
    Google__Protobuf__Struct__FieldsEntry dc_f[4];
    Google__Protobuf__Struct__FieldsEntry *dc_fp[4];
    Google__Protobuf__Value dc_v[4];
    Google__Protobuf__Struct blk[4];
    Google__Protobuf__Struct__FieldsEntry blk_f[4];
    Google__Protobuf__Struct__FieldsEntry *blk_fp[4];
    Google__Protobuf__Value blk_v[4];
    Google__Protobuf__Struct nest[40];
    Google__Protobuf__Struct__FieldsEntry nest_f[40];
    Google__Protobuf__Struct__FieldsEntry *nest_fp[40];
    Google__Protobuf__Value nest_v[40];
} F;

static void set_label(size_t i, const char *k, const char *v)
{
    sandgate__v1__sandbox__labels_entry__init(&F.label[i]);
    F.label[i].key = (char *)k;
    F.label[i].value = (char *)v;
    F.label_p[i] = &F.label[i];
    F.sb.labels = F.label_p;
    if (F.sb.n_labels <= i)
        F.sb.n_labels = i + 1;
}

static void set_ann(size_t i, const char *k, const char *v)
{
    sandgate__v1__sandbox__annotations_entry__init(&F.ann[i]);
    F.ann[i].key = (char *)k;
    F.ann[i].value = (char *)v;
    F.ann_p[i] = &F.ann[i];
    F.sb.annotations = F.ann_p;
    if (F.sb.n_annotations <= i)
        F.sb.n_annotations = i + 1;
}

static void set_env(size_t i, const char *k, const char *v)
{
    sandgate__v1__sandbox_spec__env_entry__init(&F.env[i]);
    F.env[i].key = (char *)k;
    F.env[i].value = (char *)v;
    F.env_p[i] = &F.env[i];
    F.spec.env = F.env_p;
    if (F.spec.n_env <= i)
        F.spec.n_env = i + 1;
}

static void set_cmd(size_t i, const char *arg)
{
    F.cmd[i] = (char *)arg;
    F.spec.command = F.cmd;
    if (F.spec.n_command <= i)
        F.spec.n_command = i + 1;
}

static void set_cred(size_t i, const char *name, bool env, const char *target)
{
    sandgate__v1__credential_binding__init(&F.cred[i]);
    F.cred[i].credential = (char *)name;
    if (env) {
        F.cred[i].delivery_case =
            SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_ENV;
        F.cred[i].env = (char *)target;
    } else {
        F.cred[i].delivery_case =
            SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_FILE;
        F.cred[i].file = (char *)target;
    }
    F.cred_p[i] = &F.cred[i];
    F.spec.credentials = F.cred_p;
    if (F.spec.n_credentials <= i)
        F.spec.n_credentials = i + 1;
}

/* driver_config[i] = key: {setting: value} */
static void set_driver(size_t i, const char *key, const char *setting,
                       Google__Protobuf__Value value)
{
    google__protobuf__struct__fields_entry__init(&F.blk_f[i]);
    F.blk_v[i] = value;
    F.blk_f[i].key = (char *)setting;
    F.blk_f[i].value = &F.blk_v[i];
    F.blk_fp[i] = &F.blk_f[i];
    google__protobuf__struct__init(&F.blk[i]);
    F.blk[i].n_fields = 1;
    F.blk[i].fields = &F.blk_fp[i];

    google__protobuf__value__init(&F.dc_v[i]);
    F.dc_v[i].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
    F.dc_v[i].struct_value = &F.blk[i];
    google__protobuf__struct__fields_entry__init(&F.dc_f[i]);
    F.dc_f[i].key = (char *)key;
    F.dc_f[i].value = &F.dc_v[i];
    F.dc_fp[i] = &F.dc_f[i];
    F.dc.fields = F.dc_fp;
    if (F.dc.n_fields <= i)
        F.dc.n_fields = i + 1;
}

static Google__Protobuf__Value number(double x)
{
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;

    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    v.number_value = x;
    return v;
}

static Google__Protobuf__Value string(const char *s)
{
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;

    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    v.string_value = (char *)s;
    return v;
}

static void setup(void)
{
    memset(&F, 0, sizeof(F));
    pool_used = 0;
    sandgate__v1__create_sandbox_request__init(&F.req);
    sandgate__v1__sandbox__init(&F.sb);
    sandgate__v1__sandbox_spec__init(&F.spec);
    sandgate__v1__sandbox_policy__init(&F.policy);
    sandgate__v1__sandbox_status__init(&F.status);
    google__protobuf__timestamp__init(&F.ts);
    google__protobuf__struct__init(&F.dc);

    F.req.sandbox = &F.sb;
    F.req.request_id = "req-1";
    F.sb.name = "web-1";
    F.sb.tenant = "team-a";
    F.sb.project = "proj";
    F.sb.access_profile = "no-egress";
    F.sb.runtime_profile = "gvisor";
    set_label(0, "app", "web");
    set_label(1, "example.com/tier", "front");
    set_ann(0, "note", "hello, world");
    F.sb.spec = &F.spec;
    F.spec.image = "docker.io/library/alpine:3";
    set_cmd(0, "sh");
    set_cmd(1, "-c");
    set_cmd(2, "echo hi");
    set_env(0, "PATH", "/bin");
    set_env(1, "HOME", "/root");
    F.spec.working_dir = "/work";
    F.policy.source_case = SANDGATE__V1__SANDBOX_POLICY__SOURCE_REF;
    F.policy.ref = "policies/default";
    F.spec.policy = &F.policy;
    set_cred(0, "db-pass", true, "DB_PASSWORD");
    set_cred(1, "tls", false, "/run/secrets/tls.pem");
    F.spec.ttl_seconds = 3600;
    set_driver(0, "process", "cpus", number(1));
    F.spec.driver_config = &F.dc;
}

/* ---- the cases ----------------------------------------------------- */

#define MUT(fn, body)                                                          \
    static void fn(void)                                                       \
    {                                                                          \
        body;                                                                  \
    }

MUT(m_none, (void)0)
/* name */
MUT(m_name_empty, F.sb.name = "")
MUT(m_name_1, F.sb.name = "a")
MUT(m_name_digit, F.sb.name = "1abc")
MUT(m_name_63, F.sb.name = rep('a', 63))
MUT(m_name_64, F.sb.name = rep('a', 64))
MUT(m_name_upper, F.sb.name = "Web")
MUT(m_name_dash_start, F.sb.name = "-web")
MUT(m_name_dash_end, F.sb.name = "web-")
MUT(m_name_dot, F.sb.name = "a.b")
MUT(m_name_underscore, F.sb.name = "a_b")
/* output only */
MUT(m_id, F.sb.id = "sb-01")
MUT(m_owner, F.sb.owner = "spiffe://x/y")
MUT(m_status, F.sb.status = &F.status)
MUT(m_version, F.sb.resource_version = 3)
MUT(m_create_time, F.sb.create_time = &F.ts)
MUT(m_update_time, F.sb.update_time = &F.ts)
MUT(m_delete_time, F.sb.delete_time = &F.ts)
/* request_id */
MUT(m_rid_none, F.req.request_id = "")
MUT(m_rid_both_equal, F.sb.request_id = "req-1")
MUT(m_rid_both_differ, F.sb.request_id = "req-2")
MUT(m_rid_inner_only, F.req.request_id = ""; F.sb.request_id = "r.1:x_y-z")
MUT(m_rid_128, F.req.request_id = rep('r', 128))
MUT(m_rid_129, F.req.request_id = rep('r', 129))
MUT(m_rid_space, F.req.request_id = "a b")
MUT(m_rid_inner_bad, F.req.request_id = ""; F.sb.request_id = "a/b")
/* tenant, project, profiles */
MUT(m_tenant_empty, F.sb.tenant = "")
MUT(m_tenant_bad, F.sb.tenant = "Team")
MUT(m_project_bad, F.sb.project = "p_1")
MUT(m_access_bad, F.sb.access_profile = rep('a', 64))
MUT(m_runtime_bad, F.sb.runtime_profile = "gVisor")
/* labels */
MUT(m_label_bad_key, set_label(0, "Bad Key", "x"))
MUT(m_label_bad_value, set_label(0, "app", "a b"))
MUT(m_label_empty_value, set_label(0, "app", ""))
MUT(m_label_dup, set_label(2, "app", "other"))
MUT(m_labels_64,
    for (size_t i = 0; i < 64; i++) set_label(i, fmt("k%zu", i), "v"))
MUT(m_labels_65,
    for (size_t i = 0; i < 65; i++) set_label(i, fmt("k%zu", i), "v"))
/* annotations */
MUT(m_ann_bad_key, set_ann(0, "a/b/c", "x"))
MUT(m_ann_free_value, set_ann(0, "note", "Any text: \"quoted\", / ~ {}"))
MUT(m_ann_dup, set_ann(1, "note", "again"))
MUT(m_ann_total, set_ann(0, "note", rep('x', 256 * 1024 - 4)))
MUT(m_ann_total_over, set_ann(0, "note", rep('x', 256 * 1024 - 3)))
MUT(m_ann_bad_utf8, set_ann(0, "note", "\xc3\x28"))
/* image */
MUT(m_image_empty, F.spec.image = "")
MUT(m_image_1024, F.spec.image = rep('i', 1024))
MUT(m_image_1025, F.spec.image = rep('i', 1025))
MUT(m_image_control, F.spec.image = "alpine\n")
/* command */
MUT(m_cmd_256, for (size_t i = 0; i < 256; i++) set_cmd(i, "x"))
MUT(m_cmd_257, for (size_t i = 0; i < 257; i++) set_cmd(i, "x"))
MUT(m_arg_4096, set_cmd(2, rep('a', 4096)))
MUT(m_arg_4097, set_cmd(2, rep('a', 4097)))
MUT(m_cmd_total, for (size_t i = 0; i < 16; i++) set_cmd(i, rep('a', 4096)))
MUT(m_cmd_total_over,
    for (size_t i = 0; i < 16; i++) set_cmd(i, rep('a', 4096));
    set_cmd(16, "b"))
/* env */
MUT(m_env_256, for (size_t i = 0; i < 256; i++) set_env(i, fmt("V%zu", i), ""))
MUT(m_env_257, for (size_t i = 0; i < 257; i++) set_env(i, fmt("V%zu", i), ""))
MUT(m_env_digit, set_env(0, "1A", "x"))
MUT(m_env_dash, set_env(0, "A-B", "x"))
MUT(m_env_empty_name, set_env(0, "", "x"))
MUT(m_env_underscore, set_env(0, "_a_1", "x"))
MUT(m_env_name_256, set_env(0, rep('A', 256), "x"))
MUT(m_env_name_257, set_env(0, rep('A', 257), "x"))
MUT(m_env_dup, set_env(2, "PATH", "/usr/bin"))
MUT(m_env_total, F.spec.n_env = 0; set_env(0, "A", rep('x', 65535)))
MUT(m_env_total_over, F.spec.n_env = 0; set_env(0, "A", rep('x', 65536)))
/* working_dir */
MUT(m_wd_empty, F.spec.working_dir = "")
MUT(m_wd_relative, F.spec.working_dir = "work")
MUT(m_wd_4096, F.spec.working_dir = rep('w', 4096); F.spec.working_dir[0] = '/')
MUT(m_wd_4097, F.spec.working_dir = rep('w', 4097); F.spec.working_dir[0] = '/')
/* policy */
MUT(m_policy_none, F.spec.policy = NULL)
MUT(m_policy_unset,
    F.policy.source_case = SANDGATE__V1__SANDBOX_POLICY__SOURCE__NOT_SET)
MUT(m_ref_empty, F.policy.ref = "")
MUT(m_ref_253, F.policy.ref = rep('p', 253))
MUT(m_ref_254, F.policy.ref = rep('p', 254))
MUT(m_ref_upper, F.policy.ref = "ns/Policy")
MUT(m_ref_uri, F.policy.ref = "https://x/y")
MUT(m_inline_1m,
    F.policy.source_case = SANDGATE__V1__SANDBOX_POLICY__SOURCE_INLINE;
    F.policy.inline_.data = (uint8_t *)rep('p', 1 << 20);
    F.policy.inline_.len = 1 << 20)
MUT(m_inline_over,
    F.policy.source_case = SANDGATE__V1__SANDBOX_POLICY__SOURCE_INLINE;
    F.policy.inline_.data = (uint8_t *)rep('p', (1 << 20) + 1);
    F.policy.inline_.len = (1 << 20) + 1)
MUT(m_inline_empty,
    F.policy.source_case = SANDGATE__V1__SANDBOX_POLICY__SOURCE_INLINE;
    F.policy.inline_.data = NULL; F.policy.inline_.len = 0)
/* credentials */
MUT(m_creds_32,
    for (size_t i = 0; i < 32; i++) set_cred(i, "c", true, fmt("C%zu", i)))
MUT(m_creds_33,
    for (size_t i = 0; i < 33; i++) set_cred(i, "c", true, fmt("C%zu", i)))
MUT(m_cred_name_bad, F.cred[0].credential = "DB")
MUT(m_cred_name_empty, F.cred[0].credential = "")
MUT(m_cred_no_delivery, F.cred[0].delivery_case =
                            SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY__NOT_SET)
MUT(m_cred_env_bad, F.cred[0].env = "1X")
MUT(m_cred_file_rel, F.cred[1].file = "run/x")
MUT(m_cred_file_dotdot, F.cred[1].file = "/run/../etc/shadow")
MUT(m_cred_file_dotdot_end, F.cred[1].file = "/run/..")
MUT(m_cred_file_dotdot_name, F.cred[1].file = "/run/..x/y")
MUT(m_cred_file_dir, F.cred[1].file = "/run/")
MUT(m_cred_env_conflict, F.cred[0].env = "PATH")
MUT(m_cred_same_file, set_cred(2, "other", false, "/run/secrets/tls.pem"))
/* ttl */
MUT(m_ttl_max, F.spec.ttl_seconds = 604800)
MUT(m_ttl_over, F.spec.ttl_seconds = 604801)
/* driver_config */
MUT(m_dc_none, F.spec.driver_config = NULL)
MUT(m_dc_string, F.dc_v[0] = string("fast"))
MUT(m_dc_bad_key, F.dc_f[0].key = "Process")
MUT(m_dc_nan, F.blk_v[0] = number(NAN))
MUT(m_dc_inf, F.blk_v[0] = number(-INFINITY))
MUT(m_dc_unset, google__protobuf__value__init(&F.blk_v[0]))
MUT(m_dc_dup, set_driver(1, "process", "x", number(2)))
MUT(m_dc_two, set_driver(1, "kubernetes", "x", string("y")))
MUT(m_dc_big, F.blk_v[0] = string(rep('x', 70000)))
/* sandbox */
MUT(m_no_sandbox, F.req.sandbox = NULL)
MUT(m_no_spec, F.sb.spec = NULL)

static const struct vcase {
    const char *name;
    void (*mutate)(void);
    const char *field;       /* NULL: valid */
    const char *description; /* a substring of it */
} cases[] = {
    {"valid", m_none, NULL, NULL},
    {"name empty", m_name_empty, "sandbox.name", "required"},
    {"name 1", m_name_1, NULL, NULL},
    {"name digit", m_name_digit, NULL, NULL},
    {"name 63", m_name_63, NULL, NULL},
    {"name 64", m_name_64, "sandbox.name", "at most 63"},
    {"name upper", m_name_upper, "sandbox.name", "lower-case"},
    {"name -x", m_name_dash_start, "sandbox.name", "start and end"},
    {"name x-", m_name_dash_end, "sandbox.name", "start and end"},
    {"name a.b", m_name_dot, "sandbox.name", "lower-case"},
    {"name a_b", m_name_underscore, "sandbox.name", "lower-case"},
    {"id", m_id, "sandbox.id", "output only: assigned by the server"},
    {"owner", m_owner, "sandbox.owner",
     "output only: the owner is the authenticated caller"},
    {"status", m_status, "sandbox.status", "output only"},
    {"resource_version", m_version, "sandbox.resource_version", "output only"},
    {"create_time", m_create_time, "sandbox.create_time", "output only"},
    {"update_time", m_update_time, "sandbox.update_time", "output only"},
    {"delete_time", m_delete_time, "sandbox.delete_time", "output only"},
    {"rid none", m_rid_none, NULL, NULL},
    {"rid equal", m_rid_both_equal, NULL, NULL},
    {"rid differ", m_rid_both_differ, "sandbox.request_id", "must equal"},
    {"rid inner", m_rid_inner_only, NULL, NULL},
    {"rid 128", m_rid_128, NULL, NULL},
    {"rid 129", m_rid_129, "request_id", "at most 128"},
    {"rid space", m_rid_space, "request_id", "letters, digits"},
    {"rid inner bad", m_rid_inner_bad, "sandbox.request_id", "letters, digits"},
    {"tenant empty", m_tenant_empty, NULL, NULL},
    {"tenant", m_tenant_bad, "sandbox.tenant", "lower-case"},
    {"project", m_project_bad, "sandbox.project", "lower-case"},
    {"access_profile", m_access_bad, "sandbox.access_profile", "at most 63"},
    {"runtime_profile", m_runtime_bad, "sandbox.runtime_profile", "lower-case"},
    {"label key", m_label_bad_key, "sandbox.labels[\"Bad Key\"]",
     "invalid key"},
    {"label value", m_label_bad_value, "sandbox.labels[\"app\"]",
     "invalid value"},
    {"label empty value", m_label_empty_value, NULL, NULL},
    {"label dup", m_label_dup, "sandbox.labels[\"app\"]", "duplicate key"},
    {"labels 64", m_labels_64, NULL, NULL},
    {"labels 65", m_labels_65, "sandbox.labels", "at most 64"},
    {"annotation key", m_ann_bad_key, "sandbox.annotations[\"a/b/c\"]",
     "at most one '/'"},
    {"annotation value", m_ann_free_value, NULL, NULL},
    {"annotation dup", m_ann_dup, "sandbox.annotations[\"note\"]",
     "duplicate key"},
    {"annotations 256K", m_ann_total, NULL, NULL},
    {"annotations over", m_ann_total_over, "sandbox.annotations",
     "at most 262144"},
    {"annotation utf8", m_ann_bad_utf8, "sandbox.annotations[\"note\"]",
     "UTF-8"},
    {"image empty", m_image_empty, NULL, NULL},
    {"image 1024", m_image_1024, NULL, NULL},
    {"image 1025", m_image_1025, "sandbox.spec.image", "at most 1024"},
    {"image control", m_image_control, "sandbox.spec.image", "control"},
    {"command 256", m_cmd_256, NULL, NULL},
    {"command 257", m_cmd_257, "sandbox.spec.command", "at most 256"},
    {"arg 4096", m_arg_4096, NULL, NULL},
    {"arg 4097", m_arg_4097, "sandbox.spec.command[2]", "at most 4096"},
    {"command 64K", m_cmd_total, NULL, NULL},
    {"command over", m_cmd_total_over, "sandbox.spec.command",
     "total at most 65536"},
    {"env 256", m_env_256, NULL, NULL},
    {"env 257", m_env_257, "sandbox.spec.env", "at most 256 entries"},
    {"env 1A", m_env_digit, "sandbox.spec.env[\"1A\"]", "invalid name"},
    {"env A-B", m_env_dash, "sandbox.spec.env[\"A-B\"]", "invalid name"},
    {"env empty", m_env_empty_name, "sandbox.spec.env[\"\"]", "empty"},
    {"env _a_1", m_env_underscore, NULL, NULL},
    {"env name 256", m_env_name_256, NULL, NULL},
    {"env name 257", m_env_name_257, NULL /* set below */, "at most 256"},
    {"env dup", m_env_dup, "sandbox.spec.env[\"PATH\"]", "duplicate key"},
    {"env 64K", m_env_total, NULL, NULL},
    {"env over", m_env_total_over, "sandbox.spec.env", "at most 65536"},
    {"working_dir empty", m_wd_empty, NULL, NULL},
    {"working_dir relative", m_wd_relative, "sandbox.spec.working_dir",
     "absolute"},
    {"working_dir 4096", m_wd_4096, NULL, NULL},
    {"working_dir 4097", m_wd_4097, "sandbox.spec.working_dir", "at most 4096"},
    {"no policy", m_policy_none, NULL, NULL},
    {"policy unset", m_policy_unset, "sandbox.spec.policy",
     "one of ref or inline"},
    {"ref empty", m_ref_empty, "sandbox.spec.policy.ref", "empty"},
    {"ref 253", m_ref_253, NULL, NULL},
    {"ref 254", m_ref_254, "sandbox.spec.policy.ref", "at most 253"},
    {"ref upper", m_ref_upper, "sandbox.spec.policy.ref", "lower-case"},
    {"ref uri", m_ref_uri, "sandbox.spec.policy.ref", "lower-case"},
    {"inline 1M", m_inline_1m, NULL, NULL},
    {"inline over", m_inline_over, "sandbox.spec.policy.inline",
     "at most 1048576"},
    {"inline empty", m_inline_empty, "sandbox.spec.policy.inline", "empty"},
    {"credentials 32", m_creds_32, NULL, NULL},
    {"credentials 33", m_creds_33, "sandbox.spec.credentials", "at most 32"},
    {"credential name", m_cred_name_bad,
     "sandbox.spec.credentials[0].credential", "lower-case"},
    {"credential empty", m_cred_name_empty,
     "sandbox.spec.credentials[0].credential", "required"},
    {"no delivery", m_cred_no_delivery, "sandbox.spec.credentials[0]",
     "delivery"},
    {"delivery env", m_cred_env_bad, "sandbox.spec.credentials[0].env",
     "environment variable"},
    {"delivery relative", m_cred_file_rel, "sandbox.spec.credentials[1].file",
     "absolute"},
    {"delivery ..", m_cred_file_dotdot, "sandbox.spec.credentials[1].file",
     "'..'"},
    {"delivery /..", m_cred_file_dotdot_end, "sandbox.spec.credentials[1].file",
     "'..'"},
    {"delivery ..x", m_cred_file_dotdot_name, NULL, NULL},
    {"delivery dir", m_cred_file_dir, "sandbox.spec.credentials[1].file",
     "end with '/'"},
    {"delivery over env", m_cred_env_conflict,
     "sandbox.spec.credentials[0].env", "sandbox.spec.env"},
    {"delivery twice", m_cred_same_file, "sandbox.spec.credentials[2].file",
     "credentials[1]"},
    {"ttl max", m_ttl_max, NULL, NULL},
    {"ttl over", m_ttl_over, "sandbox.spec.ttl_seconds", "at most 604800"},
    {"driver_config none", m_dc_none, NULL, NULL},
    {"driver_config string", m_dc_string, "sandbox.spec.driver_config.process",
     "must be an object (the settings for driver 'process')"},
    {"driver_config key", m_dc_bad_key,
     "sandbox.spec.driver_config[\"Process\"]", "invalid driver name"},
    {"driver_config NaN", m_dc_nan, "sandbox.spec.driver_config.process",
     "finite"},
    {"driver_config inf", m_dc_inf, "sandbox.spec.driver_config.process",
     "finite"},
    {"driver_config unset", m_dc_unset, "sandbox.spec.driver_config.process",
     "no kind"},
    {"driver_config dup", m_dc_dup, "sandbox.spec.driver_config[\"process\"]",
     "duplicate key"},
    {"driver_config two", m_dc_two, NULL, NULL},
    {"driver_config big", m_dc_big, "sandbox.spec.driver_config",
     "at most 65536 bytes packed"},
    {"no sandbox", m_no_sandbox, "sandbox", "required"},
    {"no spec", m_no_spec, NULL, NULL},
};

static void dump_violations(const struct sg_error *err)
{
    for (size_t i = 0; i < err->n_violations; i++)
        fprintf(stderr, "  %s: %s\n", err->violations[i].field,
                err->violations[i].description);
}

START_TEST(test_request_table)
{
    const struct vcase *c = &cases[_i];
    struct sg_error err = SG_ERROR_INIT;
    const char *field = c->field;
    int ret;

    /* The 257-byte name is too long for a readable table entry. */
    if (c->mutate == m_env_name_257)
        field = fmt("sandbox.spec.env[\"%s...\"]", rep('A', 100));
    c->mutate();
    ret = sg_validate_create_sandbox(&F.req, NULL, &err);
    if (field == NULL) {
        if (ret != 0)
            dump_violations(&err);
        ck_assert_msg(ret == 0, "case '%s': %s", c->name, err.message);
        ck_assert(!sg_error_is_set(&err));
    } else {
        if (err.n_violations != 1)
            dump_violations(&err);
        ck_assert_msg(ret == -1, "case '%s' passed", c->name);
        ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
        ck_assert_uint_eq(err.n_violations, 1);
        ck_assert_str_eq(err.violations[0].field, field);
        ck_assert_msg(strstr(err.violations[0].description, c->description) !=
                          NULL,
                      "case '%s': description '%s' lacks '%s'", c->name,
                      err.violations[0].description, c->description);
    }
    sg_error_reset(&err);
}
END_TEST

/* driver_config exactly at the packed-size limit, then one byte over. */
START_TEST(test_driver_config_size_limit)
{
    struct sg_error err = SG_ERROR_INIT;
    size_t len = 65000;
    size_t size;

    for (int i = 0; i < 3; i++) {
        F.blk_v[0] = string(rep('x', len));
        size = google__protobuf__struct__get_packed_size(&F.dc);
        len += 65536 - size;
    }
    F.blk_v[0] = string(rep('x', len));
    ck_assert_uint_eq(google__protobuf__struct__get_packed_size(&F.dc), 65536);
    ck_assert_int_eq(sg_validate_create_sandbox(&F.req, NULL, &err), 0);
    F.blk_v[0] = string(rep('x', len + 1));
    ck_assert_int_eq(sg_validate_create_sandbox(&F.req, NULL, &err), -1);
    ck_assert_str_eq(err.violations[0].field, "sandbox.spec.driver_config");
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_driver_config_depth)
{
    struct sg_error err = SG_ERROR_INIT;
    size_t levels = 40;

    /* process: {n: {n: ... {n: 1}}}, 40 objects deep */
    for (size_t i = 0; i < levels; i++) {
        google__protobuf__struct__init(&F.nest[i]);
        google__protobuf__struct__fields_entry__init(&F.nest_f[i]);
        google__protobuf__value__init(&F.nest_v[i]);
        F.nest_f[i].key = "n";
        F.nest_f[i].value = &F.nest_v[i];
        F.nest_fp[i] = &F.nest_f[i];
        F.nest[i].n_fields = 1;
        F.nest[i].fields = &F.nest_fp[i];
        if (i + 1 < levels) {
            F.nest_v[i].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
            F.nest_v[i].struct_value = &F.nest[i + 1];
        } else {
            F.nest_v[i] = number(1);
        }
    }
    F.dc_v[0].struct_value = &F.nest[0];
    ck_assert_int_eq(sg_validate_create_sandbox(&F.req, NULL, &err), -1);
    ck_assert_uint_eq(err.n_violations, 1);
    ck_assert_str_eq(err.violations[0].field,
                     "sandbox.spec.driver_config.process");
    ck_assert(strstr(err.violations[0].description, "nested") != NULL);
    sg_error_reset(&err);

    /* 32 levels are fine. */
    F.nest_v[31] = number(1);
    ck_assert_int_eq(sg_validate_create_sandbox(&F.req, NULL, &err), 0);
}
END_TEST

/* Every problem of one request is reported, in one call. */
START_TEST(test_all_violations_collected)
{
    static const char *const fields[] = {
        "sandbox.request_id",
        "sandbox.name",
        "sandbox.tenant",
        "sandbox.id",
        "sandbox.owner",
        "sandbox.create_time",
        "sandbox.labels[\"Bad Key\"]",
        "sandbox.labels[\"Bad Key\"]",
        "sandbox.spec.command[1]",
        "sandbox.spec.ttl_seconds",
        "sandbox.spec.driver_config.process",
    };
    struct sg_error err = SG_ERROR_INIT;

    F.sb.request_id = "other";
    F.sb.name = "Bad_Name";
    F.sb.tenant = "-t";
    F.sb.id = "sb-1";
    F.sb.owner = "me";
    F.sb.create_time = &F.ts;
    set_label(0, "Bad Key", "bad value");
    set_cmd(1, rep('a', 5000));
    F.spec.ttl_seconds = 700000;
    F.dc_v[0] = number(1);
    ck_assert_int_eq(sg_validate_create_sandbox(&F.req, NULL, &err), -1);
    if (err.n_violations != SG_N_ELEMENTS(fields))
        dump_violations(&err);
    ck_assert_uint_eq(err.n_violations, SG_N_ELEMENTS(fields));
    for (size_t i = 0; i < SG_N_ELEMENTS(fields); i++)
        ck_assert_str_eq(err.violations[i].field, fields[i]);
    ck_assert_str_eq(
        err.message,
        "sandbox.request_id: must equal request_id when both are set");
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_violations_capped)
{
    struct sg_error err = SG_ERROR_INIT;

    for (size_t i = 0; i < 300; i++)
        set_label(i, fmt("Bad Key %zu", i), "v");
    ck_assert_int_eq(sg_validate_create_sandbox(&F.req, NULL, &err), -1);
    ck_assert_uint_eq(err.n_violations, SG_VALIDATE_MAX_VIOLATIONS + 1);
    ck_assert_str_eq(err.violations[SG_VALIDATE_MAX_VIOLATIONS].field,
                     "sandbox");
    ck_assert(strstr(err.violations[SG_VALIDATE_MAX_VIOLATIONS].description,
                     "only the first 100") != NULL);
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_custom_limits_and_null_err)
{
    struct sg_validate_limits lim = sg_validate_limits_default();

    ck_assert_int_eq(sg_validate_create_sandbox(&F.req, &lim, NULL), 0);
    lim.labels_max = 1;
    ck_assert_int_eq(sg_validate_create_sandbox(&F.req, &lim, NULL), -1);
    ck_assert_int_eq(sg_validate_create_sandbox(NULL, NULL, NULL), -1);
}
END_TEST

START_TEST(test_keys_are_quoted)
{
    struct sg_error err = SG_ERROR_INIT;

    set_label(0, "a\"b\\c\x01\xff", "v");
    ck_assert_int_eq(sg_validate_create_sandbox(&F.req, NULL, &err), -1);
    ck_assert_str_eq(err.violations[0].field,
                     "sandbox.labels[\"a\\\"b\\\\c\\x01\\xff\"]");
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_create_request_id)
{
    ck_assert_str_eq(sg_create_request_id(&F.req), "req-1");
    F.sb.request_id = "inner";
    ck_assert_str_eq(sg_create_request_id(&F.req), "req-1");
    F.req.request_id = "";
    ck_assert_str_eq(sg_create_request_id(&F.req), "inner");
    F.sb.request_id = "";
    ck_assert_str_eq(sg_create_request_id(&F.req), "");
    F.req.sandbox = NULL;
    ck_assert_str_eq(sg_create_request_id(&F.req), "");
    ck_assert_str_eq(sg_create_request_id(NULL), "");
}
END_TEST

/* ---- the name predicates ------------------------------------------- */

static const struct {
    const char *s;
    bool label;     /* DNS-1123 label */
    bool subdomain; /* DNS-1123 subdomain */
} dns_names[] = {
    {"a", true, true},     {"abc-123", true, true},  {"0", true, true},
    {"a--b", true, true},  {"", false, false},       {"-a", false, false},
    {"a-", false, false},  {"A", false, false},      {"a_b", false, false},
    {"a.b", false, true},  {"a.b-c.d", false, true}, {"a..b", false, false},
    {".a", false, false},  {"a.", false, false},     {"a.-b", false, false},
    {"a b", false, false},
};

START_TEST(test_dns_names)
{
    ck_assert_msg(sg_is_dns1123_label(dns_names[_i].s) == dns_names[_i].label,
                  "label '%s'", dns_names[_i].s);
    ck_assert_msg(sg_is_dns1123_subdomain(dns_names[_i].s) ==
                      dns_names[_i].subdomain,
                  "subdomain '%s'", dns_names[_i].s);
}
END_TEST

START_TEST(test_dns_lengths)
{
    ck_assert(sg_is_dns1123_label(rep('a', 63)));
    ck_assert(!sg_is_dns1123_label(rep('a', 64)));
    ck_assert_str_eq(sg_dns1123_label_check(rep('a', 64)),
                     "must be at most 63 characters");
    ck_assert(sg_is_dns1123_subdomain(subdomain(253)));
    ck_assert(!sg_is_dns1123_subdomain(subdomain(254)));
}
END_TEST

static const struct {
    const char *s;
    bool key;
    bool value;
} label_names[] = {
    {"app", true, true},
    {"A", true, true},
    {"a_b.c-D", true, true},
    {"a..b", true, true},
    {"example.com/app", true, false},
    {"k8s.io/x_y", true, false},
    {"", false, true},
    {"_a", false, false},
    {"a_", false, false},
    {".a", false, false},
    {"a b", false, false},
    {"a=b", false, false},
    {"/app", false, false},
    {"app/", false, false},
    {"a/b/c", false, false},
    {"Example.com/app", false, false},
    {"exa_mple.com/app", false, false},
    {"example..com/app", false, false},
    {"é", false, false},
};

START_TEST(test_label_names)
{
    ck_assert_msg(sg_is_label_key(label_names[_i].s) == label_names[_i].key,
                  "key '%s'", label_names[_i].s);
    ck_assert_msg(sg_is_label_value(label_names[_i].s) == label_names[_i].value,
                  "value '%s'", label_names[_i].s);
}
END_TEST

START_TEST(test_label_lengths)
{
    char *name63 = rep('n', 63);
    char *name64 = rep('n', 64);

    ck_assert(sg_is_label_key(name63));
    ck_assert(!sg_is_label_key(name64));
    ck_assert(sg_is_label_value(name63));
    ck_assert(!sg_is_label_value(name64));
    ck_assert(sg_is_label_key(fmt("%s/%s", subdomain(253), name63)));
    ck_assert(!sg_is_label_key(fmt("%s/%s", subdomain(253), name64)));
    ck_assert(!sg_is_label_key(fmt("%s/x", subdomain(254))));
    ck_assert_str_eq(sg_label_key_check(fmt("%s/x", subdomain(254))),
                     "prefix must be at most 253 characters");
}
END_TEST

START_TEST(test_env_and_request_id)
{
    ck_assert(sg_is_env_name("PATH"));
    ck_assert(sg_is_env_name("_"));
    ck_assert(sg_is_env_name("a1_B"));
    ck_assert(!sg_is_env_name(""));
    ck_assert(!sg_is_env_name("1A"));
    ck_assert(!sg_is_env_name("A=B"));
    ck_assert(!sg_is_env_name("A.B"));
    ck_assert(sg_is_request_id("a.b_c:d-E9", 128));
    ck_assert(!sg_is_request_id("", 128));
    ck_assert(!sg_is_request_id("abc", 2));
    ck_assert(!sg_is_request_id("a/b", 128));
}
END_TEST

static const struct {
    const char *s;
    size_t len;
    bool ok;
} utf8[] = {
    {"plain", 5, true},
    {"\xc3\xa9", 2, true},
    {"\xe2\x82\xac", 3, true},
    {"\xf0\x9f\x98\x80", 4, true},
    {"\xc3", 1, false},
    {"\xc0\xaf", 2, false},         /* overlong */
    {"\xe0\x80\xaf", 3, false},     /* overlong */
    {"\xed\xa0\x80", 3, false},     /* surrogate */
    {"\xf4\x90\x80\x80", 4, false}, /* beyond U+10FFFF */
    {"\xff", 1, false},
    {"\x80", 1, false},
};

START_TEST(test_utf8)
{
    ck_assert_msg(sg_is_utf8(utf8[_i].s, utf8[_i].len) == utf8[_i].ok,
                  "case %d", _i);
}
END_TEST

START_TEST(test_quote)
{
    char out[512];
    char small[8];

    sg_validate_quote("plain/key", out, sizeof(out));
    ck_assert_str_eq(out, "plain/key");
    sg_validate_quote("a\"\\\n\x80", out, sizeof(out));
    ck_assert_str_eq(out, "a\\\"\\\\\\x0a\\x80");
    sg_validate_quote(rep('k', 150), out, sizeof(out));
    ck_assert_str_eq(out, fmt("%s...", rep('k', 100)));
    sg_validate_quote("abcdefghij", small, sizeof(small));
    ck_assert_uint_lt(strlen(small), sizeof(small));
}
END_TEST

static Suite *validate_suite(void)
{
    Suite *s = suite_create("validate");
    TCase *tc = tcase_create("create");
    TCase *names = tcase_create("names");

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_loop_test(tc, test_request_table, 0, (int)SG_N_ELEMENTS(cases));
    tcase_add_test(tc, test_driver_config_size_limit);
    tcase_add_test(tc, test_driver_config_depth);
    tcase_add_test(tc, test_all_violations_collected);
    tcase_add_test(tc, test_violations_capped);
    tcase_add_test(tc, test_custom_limits_and_null_err);
    tcase_add_test(tc, test_keys_are_quoted);
    tcase_add_test(tc, test_create_request_id);
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(names, setup, NULL);
    tcase_add_loop_test(names, test_dns_names, 0,
                        (int)SG_N_ELEMENTS(dns_names));
    tcase_add_test(names, test_dns_lengths);
    tcase_add_loop_test(names, test_label_names, 0,
                        (int)SG_N_ELEMENTS(label_names));
    tcase_add_test(names, test_label_lengths);
    tcase_add_test(names, test_env_and_request_id);
    tcase_add_loop_test(names, test_utf8, 0, (int)SG_N_ELEMENTS(utf8));
    tcase_add_test(names, test_quote);
    suite_add_tcase(s, names);
    return s;
}

SG_TEST_MAIN(validate_suite)
