/*
 * test_process_config.c: the process driver's settings and per-sandbox
 * block, decoded strictly (drivers/process/process_config.c), and the
 * validate/describe ops built on them.
 */
#include "internal.h"

#include "testutils.h"

#include "error.h"
#include "process_config.h"
#include "process_driver.h"

#include <check.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- settings ---- */

START_TEST(test_settings_defaults)
{
    struct process_settings s = {0};
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(process_settings_load("{}", &s, &err), 0);
    ck_assert_str_eq(s.bwrap, "/usr/bin/bwrap");
    ck_assert_str_eq(s.rootfs, "/");
    ck_assert_str_eq(s.cgroup, "auto");
    ck_assert_uint_eq(s.log_max_bytes, 8u << 20);
    ck_assert_uint_eq(s.grace_period_ms, 10000);
    ck_assert(s.allow_network);
    ck_assert(s.user_auto);
    ck_assert_uint_eq(s.n_images, 0);
    ck_assert_uint_eq(s.limits.memory_bytes, 0);
    ck_assert_uint_eq(s.limits.pids, 0);
    ck_assert_str_eq(process_settings_rootfs(&s, ""), "/");
    ck_assert_str_eq(process_settings_rootfs(&s, NULL), "/");
    ck_assert_ptr_null(process_settings_rootfs(&s, "alpine"));
    process_settings_clear(&s);
    /* NULL is "{}". */
    ck_assert_int_eq(process_settings_load(NULL, &s, &err), 0);
    process_settings_clear(&s);
}
END_TEST

START_TEST(test_settings_every_key)
{
    struct process_settings s = {0};
    struct sg_error err = SG_ERROR_INIT;
    const char *json =
        "{\"bwrap\": \"/opt/bwrap\", \"rootfs\": \"/srv/root\","
        " \"images\": {\"zeta\": \"/srv/z\", \"alpine\": \"/srv/a\"},"
        " \"log_max_bytes\": 1024.0, \"grace_period_ms\": 0,"
        " \"limits\": {\"memory_bytes\": 1073741824, \"pids\": 64,"
        "   \"cpu_seconds\": 60, \"open_files\": 256,"
        "   \"file_size_bytes\": 1048576},"
        " \"allow_network\": false, \"cgroup\": \"/sys/fs/cgroup/x\","
        " \"user\": \"1000:100\"}";

    ck_assert_msg(process_settings_load(json, &s, &err) == 0, "%s",
                  err.message);
    ck_assert_str_eq(s.bwrap, "/opt/bwrap");
    ck_assert_str_eq(s.rootfs, "/srv/root");
    ck_assert_uint_eq(s.n_images, 2);
    /* Sorted, and found by name. */
    ck_assert_str_eq(s.images[0].name, "alpine");
    ck_assert_str_eq(process_settings_rootfs(&s, "zeta"), "/srv/z");
    ck_assert_str_eq(process_settings_rootfs(&s, "alpine"), "/srv/a");
    ck_assert_str_eq(process_settings_rootfs(&s, ""), "/srv/root");
    ck_assert_ptr_null(process_settings_rootfs(&s, "ubuntu"));
    /* A Struct carries numbers as doubles: 1024.0 is an integer. */
    ck_assert_uint_eq(s.log_max_bytes, 1024);
    ck_assert_uint_eq(s.grace_period_ms, 0);
    ck_assert_uint_eq(s.limits.memory_bytes, 1073741824u);
    ck_assert_uint_eq(s.limits.pids, 64);
    ck_assert_uint_eq(s.limits.cpu_seconds, 60);
    ck_assert_uint_eq(s.limits.open_files, 256);
    ck_assert_uint_eq(s.limits.file_size_bytes, 1048576);
    ck_assert(!s.allow_network);
    ck_assert_str_eq(s.cgroup, "/sys/fs/cgroup/x");
    ck_assert(!s.user_auto);
    ck_assert_uint_eq(s.user_uid, 1000);
    ck_assert_uint_eq(s.user_gid, 100);
    process_settings_clear(&s);
}
END_TEST

static const struct {
    const char *json;
    bool user_auto;
    uint32_t uid;
    uint32_t gid;
} good_users[] = {
    {"{\"user\": \"auto\"}", true, 0, 0},
    {"{\"user\": \"65534:65534\"}", false, 65534, 65534},
    {"{\"user\": \"1:2\"}", false, 1, 2},
    {"{\"user\": \"0:0\"}", false, 0, 0},
    {"{\"user\": \"4294967294:4294967294\"}", false, 4294967294u, 4294967294u},
};

START_TEST(test_settings_user)
{
    struct process_settings s = {0};
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_msg(process_settings_load(good_users[_i].json, &s, &err) == 0,
                  "%s", err.message);
    ck_assert(s.user_auto == good_users[_i].user_auto);
    ck_assert_uint_eq(s.user_uid, good_users[_i].uid);
    ck_assert_uint_eq(s.user_gid, good_users[_i].gid);
    process_settings_clear(&s);
}
END_TEST

static const struct {
    const char *json;
    const char *message;
} bad_settings[] = {
    {"{\"nope\": 1}", "process settings: nope: unknown key"},
    {"{\"bwrap\": 1}", "process settings: bwrap: expected a string"},
    {"{\"bwrap\": \"bwrap\"}",
     "process settings: bwrap: expected an absolute path"},
    {"{\"rootfs\": true}", "process settings: rootfs: expected a string"},
    {"{\"rootfs\": \"\"}",
     "process settings: rootfs: expected an absolute path"},
    {"{\"images\": []}", "process settings: images: expected an object"},
    {"{\"images\": {\"a\": 1}}",
     "process settings: images.a: expected a string"},
    {"{\"images\": {\"a\": \"rel/dir\"}}",
     "process settings: images.a: expected an absolute path"},
    {"{\"images\": {\"\": \"/x\"}}",
     "process settings: images: an image name is empty"},
    {"{\"log_max_bytes\": \"8M\"}",
     "process settings: log_max_bytes: expected an integer"},
    {"{\"log_max_bytes\": 1.5}",
     "process settings: log_max_bytes: expected an integer"},
    {"{\"log_max_bytes\": 0}",
     "process settings: log_max_bytes: must be between 1 and "
     "9007199254740992"},
    {"{\"grace_period_ms\": -1}",
     "process settings: grace_period_ms: must be between 0 and 3600000"},
    {"{\"grace_period_ms\": 3600001}",
     "process settings: grace_period_ms: must be between 0 and 3600000"},
    {"{\"grace_period_ms\": null}",
     "process settings: grace_period_ms: expected an integer"},
    {"{\"limits\": []}", "process settings: limits: expected an object"},
    {"{\"limits\": {\"memory\": 1}}",
     "process settings: limits.memory: unknown key"},
    {"{\"limits\": {\"pids\": 0}}",
     "process settings: limits.pids: must be between 1 and 4194304"},
    {"{\"limits\": {\"open_files\": 4}}",
     "process settings: limits.open_files: must be between 16 and 1048576"},
    {"{\"limits\": {\"memory_bytes\": 1000}}",
     "process settings: limits.memory_bytes: must be between 1048576 and "
     "9007199254740992"},
    {"{\"limits\": {\"file_size_bytes\": 100}}",
     "process settings: limits.file_size_bytes: must be between 4096 and "
     "9007199254740992"},
    {"{\"limits\": {\"cpu_seconds\": true}}",
     "process settings: limits.cpu_seconds: expected an integer"},
    {"{\"allow_network\": \"yes\"}",
     "process settings: allow_network: expected a boolean"},
    {"{\"cgroup\": \"sometimes\"}",
     "process settings: cgroup: expected \"auto\", \"off\" or an absolute "
     "path"},
    {"{\"cgroup\": false}", "process settings: cgroup: expected a string"},
    {"{\"user\": 65534}", "process settings: user: expected a string"},
    {"{\"user\": null}", "process settings: user: expected a string"},
    {"{\"user\": \"nobody\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \"65534\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \"65534:\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \":65534\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \"-1:-1\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \"+5:5\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \" 5:5\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \"5:5:5\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \"0x10:5\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \"4294967295:5\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \"5:99999999999\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \"AUTO\"}",
     "process settings: user: expected \"auto\" or \"UID:GID\" (decimal)"},
    {"{\"user\": \"0:65534\"}",
     "process settings: user: uid and gid must not be 0 (\"0:0\" runs "
     "sandboxes as root)"},
    {"{\"user\": \"65534:0\"}",
     "process settings: user: uid and gid must not be 0 (\"0:0\" runs "
     "sandboxes as root)"},
    {"{\"user\": \"00:0\"}",
     "process settings: user: uid and gid must not be 0 (\"0:0\" runs "
     "sandboxes as root)"},
    {"[1]", "process settings: expected a JSON object"},
    {"{\"bwrap\": \"/a\", \"bwrap\": \"/b\"}",
     "process settings: invalid JSON at line 1 column 23"},
    {"{", "process settings: invalid JSON at line 1 column 1"},
};

START_TEST(test_settings_errors)
{
    struct process_settings s = {0};
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(process_settings_load(bad_settings[_i].json, &s, &err),
                     -1);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message, bad_settings[_i].message);
    process_settings_clear(&s);
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_settings_check)
{
    struct process_settings s = {0};
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(
        process_settings_load("{\"bwrap\": \"/bin/sh\", \"rootfs\": \"/\","
                              " \"images\": {\"etc\": \"/etc\"}}",
                              &s, &err),
        0);
    ck_assert_msg(process_settings_check(&s, &err) == 0, "%s", err.message);
    process_settings_clear(&s);

    ck_assert_int_eq(
        process_settings_load("{\"bwrap\": \"/etc/passwd\"}", &s, &err), 0);
    ck_assert_int_eq(process_settings_check(&s, &err), -1);
    ck_assert_str_eq(err.message, "process settings: bwrap: '/etc/passwd' is "
                                  "not an executable file");
    process_settings_clear(&s);
    sg_error_reset(&err);

    ck_assert_int_eq(process_settings_load("{\"bwrap\": \"/bin/sh\", "
                                           "\"rootfs\": \"/etc/passwd\"}",
                                           &s, &err),
                     0);
    ck_assert_int_eq(process_settings_check(&s, &err), -1);
    ck_assert_str_eq(err.message,
                     "process settings: rootfs: '/etc/passwd' is not a "
                     "directory");
    process_settings_clear(&s);
    sg_error_reset(&err);

    ck_assert_int_eq(process_settings_load("{\"bwrap\": \"/bin/sh\", "
                                           "\"images\": {\"x\": "
                                           "\"/nonexistent-sg\"}}",
                                           &s, &err),
                     0);
    ck_assert_int_eq(process_settings_check(&s, &err), -1);
    ck_assert_str_eq(err.message, "process settings: images.x: "
                                  "'/nonexistent-sg': No such file or "
                                  "directory");
    process_settings_clear(&s);
    sg_error_reset(&err);
}
END_TEST

/* ---- the per-sandbox block ---- */

static const char *const ceilings_settings =
    "{\"limits\": {\"memory_bytes\": 67108864, \"pids\": 100},"
    " \"images\": {\"alpine\": \"/srv/alpine\"}}";

START_TEST(test_block_defaults)
{
    struct process_settings s = {0};
    struct process_block b = {0};
    struct process_limits eff;
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(process_settings_load(ceilings_settings, &s, &err), 0);
    ck_assert_int_eq(process_block_load(&s, "{}", &b, &err), 0);
    ck_assert(!b.network);
    ck_assert(!b.has_grace);
    ck_assert_uint_eq(b.readiness.argc, 0);
    ck_assert_ptr_null(b.readiness.argv);
    ck_assert_uint_eq(b.n_fields, 0);
    /* The settings' limits are the defaults. */
    process_limits_effective(&s, &b, &eff);
    ck_assert_uint_eq(eff.memory_bytes, 67108864);
    ck_assert_uint_eq(eff.pids, 100);
    ck_assert_uint_eq(eff.open_files, 0);
    process_block_clear(&b);
    process_settings_clear(&s);
}
END_TEST

START_TEST(test_block_every_key)
{
    struct process_settings s = {0};
    struct process_block b = {0};
    struct process_limits eff;
    struct sg_error err = SG_ERROR_INIT;
    const char *json =
        "{\"readiness\": {\"command\": [\"test\", \"-f\", \"/work/ready\"],"
        "   \"period_ms\": 50, \"timeout_ms\": 2000.0,"
        "   \"failure_threshold\": 3},"
        " \"network\": true, \"grace_period_ms\": 250,"
        " \"limits\": {\"memory_bytes\": 33554432, \"pids\": 10,"
        "   \"cpu_seconds\": 5, \"open_files\": 64,"
        "   \"file_size_bytes\": 4096}}";
    static const char *const fields[] = {
        "grace_period_ms",
        "limits.cpu_seconds",
        "limits.file_size_bytes",
        "limits.memory_bytes",
        "limits.open_files",
        "limits.pids",
        "network",
        "readiness.command",
        "readiness.failure_threshold",
        "readiness.period_ms",
        "readiness.timeout_ms",
    };

    ck_assert_int_eq(process_settings_load(ceilings_settings, &s, &err), 0);
    ck_assert_msg(process_block_load(&s, json, &b, &err) == 0, "%s",
                  err.message);
    ck_assert(b.network);
    ck_assert(b.has_grace);
    ck_assert_uint_eq(b.grace_period_ms, 250);
    ck_assert_uint_eq(b.readiness.argc, 3);
    ck_assert_str_eq(b.readiness.argv[0], "test");
    ck_assert_str_eq(b.readiness.argv[2], "/work/ready");
    ck_assert_ptr_null(b.readiness.argv[3]);
    ck_assert_uint_eq(b.readiness.period_ms, 50);
    ck_assert_uint_eq(b.readiness.timeout_ms, 2000);
    ck_assert_uint_eq(b.readiness.failure_threshold, 3);
    ck_assert_uint_eq(b.limits.memory_bytes, 33554432);
    ck_assert_uint_eq(b.limits.pids, 10);
    ck_assert_uint_eq(b.limits.cpu_seconds, 5);
    ck_assert_uint_eq(b.limits.open_files, 64);
    ck_assert_uint_eq(b.limits.file_size_bytes, 4096);
    process_limits_effective(&s, &b, &eff);
    ck_assert_uint_eq(eff.memory_bytes, 33554432);
    ck_assert_uint_eq(eff.pids, 10);
    ck_assert_uint_eq(b.n_fields, SG_N_ELEMENTS(fields));
    for (size_t i = 0; i < SG_N_ELEMENTS(fields); i++)
        ck_assert_str_eq(b.fields[i], fields[i]);
    process_block_clear(&b);

    /* Readiness defaults; an empty object is a field of its own. */
    ck_assert_int_eq(
        process_block_load(&s,
                           "{\"readiness\": {\"command\": [\"true\"]},"
                           " \"limits\": {}}",
                           &b, &err),
        0);
    ck_assert_uint_eq(b.readiness.period_ms, 1000);
    ck_assert_uint_eq(b.readiness.timeout_ms, 1000);
    ck_assert_uint_eq(b.readiness.failure_threshold, 0);
    ck_assert_uint_eq(b.n_fields, 2);
    ck_assert_str_eq(b.fields[0], "limits");
    ck_assert_str_eq(b.fields[1], "readiness.command");
    process_block_clear(&b);
    process_settings_clear(&s);
}
END_TEST

static const struct {
    const char *settings;
    const char *json;
    const char *message;
} bad_blocks[] = {
    {"{}", "{\"nosuchkey\": 1}", "process.nosuchkey: unknown key"},
    {"{}", "{\"env_passthrough\": [\"HOME\"]}",
     "process.env_passthrough: unknown key"},
    {"{}", "{\"network\": 1}", "process.network: expected a boolean"},
    {"{}", "{\"network\": \"true\"}", "process.network: expected a boolean"},
    {"{\"allow_network\": false}", "{\"network\": true}",
     "process.network: network access is not allowed by the operator"},
    {"{}", "{\"limits\": 5}", "process.limits: expected an object"},
    {"{}", "{\"limits\": {\"memory\": 1}}",
     "process.limits.memory: unknown key"},
    {"{}", "{\"limits\": {\"memory_bytes\": \"1G\"}}",
     "process.limits.memory_bytes: expected an integer"},
    {"{}", "{\"limits\": {\"pids\": -3}}",
     "process.limits.pids: must be between 1 and 4194304"},
    {"{}", "{\"limits\": {\"open_files\": 8}}",
     "process.limits.open_files: must be between 16 and 1048576"},
    {"{}", "{\"limits\": {\"cpu_seconds\": 0.5}}",
     "process.limits.cpu_seconds: expected an integer"},
    {"{\"limits\": {\"memory_bytes\": 67108864}}",
     "{\"limits\": {\"memory_bytes\": 134217728}}",
     "process.limits.memory_bytes: 134217728 exceeds the operator's limit of "
     "67108864"},
    {"{\"limits\": {\"pids\": 10}}", "{\"limits\": {\"pids\": 11}}",
     "process.limits.pids: 11 exceeds the operator's limit of 10"},
    {"{}", "{\"readiness\": \"true\"}",
     "process.readiness: expected an object"},
    {"{}", "{\"readiness\": {}}", "process.readiness.command: required"},
    {"{}", "{\"readiness\": {\"period_ms\": 100}}",
     "process.readiness.command: required"},
    {"{}", "{\"readiness\": {\"command\": []}}",
     "process.readiness.command: expected a non-empty array of strings"},
    {"{}", "{\"readiness\": {\"command\": \"true\"}}",
     "process.readiness.command: expected a non-empty array of strings"},
    {"{}", "{\"readiness\": {\"command\": [\"test\", 1]}}",
     "process.readiness.command: expected a non-empty array of strings"},
    {"{}", "{\"readiness\": {\"command\": [\"\"]}}",
     "process.readiness.command: the program is empty"},
    {"{}", "{\"readiness\": {\"command\": [\"true\"], \"initial\": 1}}",
     "process.readiness.initial: unknown key"},
    {"{}", "{\"readiness\": {\"command\": [\"true\"], \"period_ms\": 5}}",
     "process.readiness.period_ms: must be between 10 and 3600000"},
    {"{}", "{\"readiness\": {\"command\": [\"true\"], \"timeout_ms\": \"1s\"}}",
     "process.readiness.timeout_ms: expected an integer"},
    {"{}",
     "{\"readiness\": {\"command\": [\"true\"], \"failure_threshold\": -1}}",
     "process.readiness.failure_threshold: must be between 0 and 1000000"},
    {"{}", "{\"grace_period_ms\": 3600001}",
     "process.grace_period_ms: must be between 0 and 3600000"},
    {"{}", "{\"grace_period_ms\": false}",
     "process.grace_period_ms: expected an integer"},
    {"{}", "[]", "process: expected a JSON object"},
    {"{}", "\"fast\"", "process: invalid JSON at line 1 column 6"},
};

START_TEST(test_block_errors)
{
    struct process_settings s = {0};
    struct process_block b = {0};
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(process_settings_load(bad_blocks[_i].settings, &s, &err),
                     0);
    ck_assert_int_eq(process_block_load(&s, bad_blocks[_i].json, &b, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message, bad_blocks[_i].message);
    process_block_clear(&b);
    process_settings_clear(&s);
    sg_error_reset(&err);
}
END_TEST

/* ---- the whole sandbox ---- */

static const char *const cmd_sleep[] = {"sleep", "1000"};
static const char *const env_names[] = {"A", "B=C"};
static const char *const env_values[] = {"1", "2"};

static struct sg_driver_sandbox base_sandbox(void)
{
    struct sg_driver_sandbox sb = {
        .id = "sb-1",
        .name = "one",
        .tenant = "t",
        .project = "p",
        .owner = "o",
        .image = "",
        .command = cmd_sleep,
        .n_command = 2,
        .working_dir = "",
        .config_json = "{}",
    };

    return sb;
}

START_TEST(test_sandbox_check)
{
    struct process_settings s = {0};
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver_sandbox sb;

    ck_assert_int_eq(process_settings_load(ceilings_settings, &s, &err), 0);

    sb = base_sandbox();
    ck_assert_int_eq(process_sandbox_check(&s, &sb, NULL, &err), 0);
    sb.image = "alpine";
    sb.working_dir = "/srv/app";
    ck_assert_int_eq(process_sandbox_check(&s, &sb, NULL, &err), 0);

    sb = base_sandbox();
    sb.n_command = 0;
    ck_assert_int_eq(process_sandbox_check(&s, &sb, NULL, &err), -1);
    ck_assert_str_eq(err.message, "process: spec.command is required");
    sg_error_reset(&err);

    sb = base_sandbox();
    sb.image = "ubuntu";
    ck_assert_int_eq(process_sandbox_check(&s, &sb, NULL, &err), -1);
    ck_assert_str_eq(err.message,
                     "process: spec.image 'ubuntu' is not an image of this "
                     "gateway");
    sg_error_reset(&err);

    sb = base_sandbox();
    sb.working_dir = "relative/dir";
    ck_assert_int_eq(process_sandbox_check(&s, &sb, NULL, &err), -1);
    ck_assert_str_eq(err.message,
                     "process: spec.working_dir must be an absolute path");
    sg_error_reset(&err);

    sb = base_sandbox();
    sb.env_names = env_names;
    sb.env_values = env_values;
    sb.n_env = 2;
    ck_assert_int_eq(process_sandbox_check(&s, &sb, NULL, &err), -1);
    ck_assert_str_eq(err.message, "process: spec.env name 'B=C' is invalid");
    sg_error_reset(&err);

    /* The block is checked too, before anything else. */
    sb = base_sandbox();
    sb.n_command = 0;
    sb.config_json = "{\"network\": 0}";
    ck_assert_int_eq(process_sandbox_check(&s, &sb, NULL, &err), -1);
    ck_assert_str_eq(err.message, "process.network: expected a boolean");
    sg_error_reset(&err);
    process_settings_clear(&s);
}
END_TEST

/* ---- validate and describe through the ops table ---- */

static uv_loop_t loop;
static char tmp_dir[64];
static void *priv;

static void *host_alloc(size_t n)
{
    return calloc(1, n);
}

static void host_log(enum sg_driver_log_level level, const char *driver,
                     const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "[%s] ", driver);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static struct sg_driver_host host = {
    .abi_major = SG_DRIVER_ABI_MAJOR,
    .abi_minor = SG_DRIVER_ABI_MINOR,
    .struct_size = sizeof(struct sg_driver_host),
    .alloc = host_alloc,
    .free = free,
    .strdup = strdup,
    .log = host_log,
};

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static void ops_setup(void)
{
    char *errmsg = NULL;

    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/sg-test-pconf-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    host.loop = &loop;
    priv = calloc(1, sg_process_driver.priv_size);
    ck_assert_ptr_nonnull(priv);
    /* Any executable will do: nothing is started here. */
    ck_assert_msg(sg_process_driver.open(priv, &host,
                                         "{\"bwrap\": \"/bin/sh\", "
                                         "\"cgroup\": \"off\", "
                                         "\"images\": {\"etc\": \"/etc\"}}",
                                         tmp_dir, &errmsg) == 0,
                  "%s", errmsg);
}

static void ops_teardown(void)
{
    sg_process_driver.close(priv);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    free(priv);
    nftw(tmp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

START_TEST(test_ops_validate)
{
    struct sg_driver_sandbox sb = base_sandbox();
    char *errmsg = NULL;

    sb.id = NULL; /* validation may come before an id exists */
    ck_assert_int_eq(sg_process_driver.config_validate(priv, &sb, &errmsg), 0);
    sb.image = "etc";
    ck_assert_int_eq(sg_process_driver.config_validate(priv, &sb, &errmsg), 0);
    sb.config_json = "{\"nosuchkey\": 1}";
    ck_assert_int_eq(sg_process_driver.config_validate(priv, &sb, &errmsg), -1);
    ck_assert_str_eq(errmsg, "process.nosuchkey: unknown key");
    free(errmsg);
}
END_TEST

START_TEST(test_ops_describe)
{
    struct sg_driver_sandbox sb = base_sandbox();
    struct sg_driver_placement pl = {0};
    char *errmsg = NULL;

    sb.config_json = "{\"network\": true, \"limits\": {\"pids\": 5, "
                     "\"memory_bytes\": 268435456}}";
    ck_assert_int_eq(sg_process_driver.describe(priv, &sb, &pl, &errmsg), 0);
    ck_assert_ptr_null(pl.namespace_name);
    ck_assert_ptr_null(pl.service_account);
    ck_assert_ptr_null(pl.runtime_class);
    ck_assert_ptr_null(pl.template_name);
    ck_assert_ptr_null(pl.warm_pool);
    ck_assert_ptr_null(pl.allocation_mode);
    ck_assert_uint_eq(pl.memory_bytes, 268435456);
    ck_assert_uint_eq(pl.cpu_millis, 0);
    ck_assert_uint_eq(pl.n_fields, 3);
    ck_assert_str_eq(pl.fields[0], "limits.memory_bytes");
    ck_assert_str_eq(pl.fields[1], "limits.pids");
    ck_assert_str_eq(pl.fields[2], "network");
    for (size_t i = 0; i < pl.n_fields; i++)
        free(pl.fields[i]);
    free(pl.fields);

    memset(&pl, 0, sizeof(pl));
    sb.config_json = "{}";
    ck_assert_int_eq(sg_process_driver.describe(priv, &sb, &pl, &errmsg), 0);
    ck_assert_uint_eq(pl.n_fields, 0);
    ck_assert_ptr_null(pl.fields);
    ck_assert_uint_eq(pl.memory_bytes, 0);

    memset(&pl, 0, sizeof(pl));
    sb.config_json = "{\"limits\": {\"pids\": \"5\"}}";
    ck_assert_int_eq(sg_process_driver.describe(priv, &sb, &pl, &errmsg), -1);
    ck_assert_str_eq(errmsg, "process.limits.pids: expected an integer");
    free(errmsg);
}
END_TEST

START_TEST(test_ops_table)
{
    ck_assert_str_eq(sg_process_driver.name, "process");
    ck_assert_uint_eq(sg_process_driver.abi_major, SG_DRIVER_ABI_MAJOR);
    ck_assert_uint_eq(sg_process_driver.struct_size,
                      sizeof(struct sg_driver_ops));
    ck_assert_uint_eq(sg_process_driver.caps,
                      SG_DRIVER_CAP_WATCH | SG_DRIVER_CAP_LOGS |
                          SG_DRIVER_CAP_NETWORK |
                          SG_DRIVER_CAP_SURVIVES_RESTART |
                          SG_DRIVER_CAP_CREDENTIALS);
    ck_assert(sg_process_driver.watch != NULL);
    ck_assert(sg_process_driver.list != NULL);
}
END_TEST

START_TEST(test_open_refuses_bad_settings)
{
    uv_loop_t l;
    void *p = calloc(1, sg_process_driver.priv_size);
    char *errmsg = NULL;
    struct sg_driver_host h = host;

    ck_assert_int_eq(uv_loop_init(&l), 0);
    h.loop = &l;
    ck_assert_int_eq(
        sg_process_driver.open(p, &h, "{\"bogus\": true}", "/tmp", &errmsg),
        -1);
    ck_assert_str_eq(errmsg, "process settings: bogus: unknown key");
    free(errmsg);
    errmsg = NULL;
    ck_assert_int_eq(
        sg_process_driver.open(p, &h, "{\"bwrap\": \"/nonexistent/bwrap\"}",
                               "/tmp", &errmsg),
        -1);
    ck_assert_str_eq(errmsg, "process settings: bwrap: '/nonexistent/bwrap' "
                             "is not an executable file");
    free(errmsg);
    errmsg = NULL;
    ck_assert_int_eq(sg_process_driver.open(p, &h,
                                            "{\"bwrap\": \"/bin/sh\", "
                                            "\"cgroup\": \"/etc\"}",
                                            "/tmp", &errmsg),
                     -1);
    ck_assert_str_eq(errmsg, "process settings: cgroup: '/etc' is not a "
                             "writable cgroup v2 directory");
    free(errmsg);
    /* A failed open leaves no handle behind. */
    ck_assert_int_eq(uv_loop_close(&l), 0);
    free(p);
}
END_TEST

static Suite *process_config_suite(void)
{
    Suite *s = suite_create("process_config");
    TCase *tc = tcase_create("decode");
    TCase *ops = tcase_create("ops");

    tcase_add_test(tc, test_settings_defaults);
    tcase_add_test(tc, test_settings_every_key);
    tcase_add_loop_test(tc, test_settings_user, 0,
                        (int)SG_N_ELEMENTS(good_users));
    tcase_add_loop_test(tc, test_settings_errors, 0,
                        (int)SG_N_ELEMENTS(bad_settings));
    tcase_add_test(tc, test_settings_check);
    tcase_add_test(tc, test_block_defaults);
    tcase_add_test(tc, test_block_every_key);
    tcase_add_loop_test(tc, test_block_errors, 0,
                        (int)SG_N_ELEMENTS(bad_blocks));
    tcase_add_test(tc, test_sandbox_check);
    tcase_add_test(tc, test_ops_table);
    tcase_add_test(tc, test_open_refuses_bad_settings);
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(ops, ops_setup, ops_teardown);
    tcase_add_test(ops, test_ops_validate);
    tcase_add_test(ops, test_ops_describe);
    suite_add_tcase(s, ops);
    return s;
}

SG_TEST_MAIN(process_config_suite)
