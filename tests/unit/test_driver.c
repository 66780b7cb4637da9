/*
 * test_driver.c: the driver layer: plugin loader, built-in registry, host
 * API, wrappers and the noop driver on a real libuv loop.
 *
 * Every test runs in a checked fixture with its own loop and temporary
 * directory; teardown asserts that uv_loop_close() succeeds, i.e. that the
 * driver closed every handle it opened. In the sanitize build, a leak in a
 * test's forked child fails that test.
 */
#include "internal.h"

#include "testutils.h"

#include "driver.h"
#include "error.h"
#include "log.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define OPS_SIZE_1_0                                                           \
    (offsetof(struct sg_driver_ops, watch) +                                   \
     sizeof(((struct sg_driver_ops *)NULL)->watch))

static uv_loop_t loop;
static char tmp_dir[64];
static char state_dir[128];

static void setup(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/sg-test-driver-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    snprintf(state_dir, sizeof(state_dir), "%s/state", tmp_dir);
    ck_assert_int_eq(uv_loop_init(&loop), 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    /* Fails (UV_EBUSY) if a driver left a handle open. */
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    nftw(tmp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct sg_driver *open_driver(const char *name, const char *path,
                                     const char *settings, struct sg_error *err)
{
    struct sg_driver_open_args args = {
        .name = name,
        .plugin_path = path,
        .settings_json = settings,
        .state_dir = state_dir,
        .loop = &loop,
    };

    return sg_driver_open(&args, err);
}

/* Close, let the close callbacks run, free. */
static void shut(struct sg_driver *drv)
{
    sg_driver_close(drv);
    uv_run(&loop, UV_RUN_DEFAULT);
    sg_driver_free(drv);
}

static void assert_open_fails(const char *name, const char *path,
                              const char *settings, enum sg_err_code code,
                              const char *message)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_ptr_null(open_driver(name, path, settings, &err));
    ck_assert_msg(err.code == code, "code %s, want %s (%s)",
                  sg_err_code_name(err.code), sg_err_code_name(code),
                  err.message);
    ck_assert_str_eq(err.message, message);
    sg_error_reset(&err);
}

/* ------------------------------------------------------------------ */
/* Loader                                                              */
/* ------------------------------------------------------------------ */

static const struct {
    const char *path;
    const char *why; /* after "driver plugin '<path>': " */
    bool with_size;  /* why ends with the ABI 1.0 table size */
} bad_plugins[] = {
    {SG_PLUGIN_BAD_MAJOR,
     "ABI major version 2 is not supported (this gateway speaks 1)", false},
    {SG_PLUGIN_SHORT_STRUCT, "ops table is 16 bytes, ABI 1.0 needs at least ",
     true},
    {SG_PLUGIN_NULL_ENTRY, "entry point refused to load", false},
    {SG_PLUGIN_NO_ENTRY, "no symbol 'sandgate_driver_entry'", false},
};

START_TEST(test_bad_plugin)
{
    char want[PATH_MAX + 256];
    size_t len;

    len = (size_t)snprintf(want, sizeof(want), "driver plugin '%s': %s",
                           bad_plugins[_i].path, bad_plugins[_i].why);
    if (bad_plugins[_i].with_size)
        snprintf(want + len, sizeof(want) - len, "%zu", (size_t)OPS_SIZE_1_0);
    assert_open_fails(NULL, bad_plugins[_i].path, NULL, SG_ERR_CONFIG, want);
    /* Nothing was created for a driver that did not load. */
    ck_assert_int_ne(access(state_dir, F_OK), 0);
}
END_TEST

static const struct {
    const char *defect;
    const char *why; /* after "driver plugin '<path>': " */
} bad_tables[] = {
    {"no-name", "ops table has no name"},
    {"empty-name", "ops table has no name"},
    {"bad-name", "driver name 'Bad Name' is not valid (1 to 63 of "
                 "[a-z0-9_-], starting with a letter)"},
    {"no-open", "required slot 'open' is NULL"},
    {"no-config_validate", "required slot 'config_validate' is NULL"},
    {"no-create", "required slot 'create' is NULL"},
    {"no-remove", "required slot 'remove' is NULL"},
    {"no-get", "required slot 'get' is NULL"},
};

START_TEST(test_bad_table)
{
    char want[PATH_MAX + 256];

    ck_assert_int_eq(setenv("SG_TEST_BAD_TABLE", bad_tables[_i].defect, 1), 0);
    snprintf(want, sizeof(want), "driver plugin '%s': %s", SG_PLUGIN_BAD_TABLE,
             bad_tables[_i].why);
    assert_open_fails(NULL, SG_PLUGIN_BAD_TABLE, NULL, SG_ERR_CONFIG, want);
}
END_TEST

START_TEST(test_bad_table_control)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv;

    /* Without a defect the same plugin loads: the defect is what fails. */
    unsetenv("SG_TEST_BAD_TABLE");
    drv = open_driver(NULL, SG_PLUGIN_BAD_TABLE, NULL, &err);
    ck_assert_msg(drv != NULL, "%s", err.message);
    ck_assert_str_eq(sg_driver_name(drv), "bad_table");
    shut(drv);
}
END_TEST

START_TEST(test_plugin_paths)
{
    char want[PATH_MAX + 256];
    char *long_path = malloc(PATH_MAX + 1);
    struct sg_error err = SG_ERROR_INIT;
    int fd;

    assert_open_fails(NULL, "", NULL, SG_ERR_CONFIG,
                      "driver plugin path is empty");
    assert_open_fails(NULL, "plugins/good_driver.so", NULL, SG_ERR_CONFIG,
                      "driver plugin 'plugins/good_driver.so': path must be "
                      "absolute");
    assert_open_fails("good", "good_driver.so", NULL, SG_ERR_CONFIG,
                      "driver plugin 'good_driver.so': path must be "
                      "absolute");

    ck_assert_ptr_nonnull(long_path);
    memset(long_path, 'a', PATH_MAX);
    long_path[0] = '/';
    long_path[PATH_MAX] = '\0';
    snprintf(want, sizeof(want),
             "driver plugin path is %d bytes, the limit is %d", PATH_MAX,
             PATH_MAX - 1);
    assert_open_fails(NULL, long_path, NULL, SG_ERR_CONFIG, want);
    free(long_path);

    /* dlopen failures carry dlerror()'s text. */
    ck_assert_ptr_null(open_driver(NULL, "/nonexistent/sg/x.so", NULL, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_msg(STRPREFIX(err.message, "driver plugin '/nonexistent/sg/"
                                         "x.so': cannot load: "),
                  "%s", err.message);
    ck_assert_msg(strstr(err.message, "No such file") != NULL, "%s",
                  err.message);
    sg_error_reset(&err);

    snprintf(want, sizeof(want), "%s/not-elf.so", tmp_dir);
    fd = open(want, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "hello\n", 6), 6);
    close(fd);
    ck_assert_ptr_null(open_driver(NULL, want, NULL, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_msg(strstr(err.message, "': cannot load: ") != NULL, "%s",
                  err.message);
    sg_error_reset(&err);

    assert_open_fails(NULL, NULL, NULL, SG_ERR_CONFIG,
                      "driver has neither a name nor a plugin path");
}
END_TEST

START_TEST(test_plugin_name_mismatch)
{
    char want[PATH_MAX + 256];
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv;

    snprintf(want, sizeof(want),
             "driver plugin '%s': driver is named 'good', not 'noop'",
             SG_PLUGIN_GOOD_DRIVER);
    assert_open_fails("noop", SG_PLUGIN_GOOD_DRIVER, NULL, SG_ERR_CONFIG, want);

    drv = open_driver("good", SG_PLUGIN_GOOD_DRIVER, NULL, &err);
    ck_assert_msg(drv != NULL, "%s", err.message);
    ck_assert_str_eq(sg_driver_name(drv), "good");
    shut(drv);
}
END_TEST

static int gone_calls;

static void on_gone(void *opaque, enum sg_driver_result result,
                    const struct sg_driver_status *st, const char *message)
{
    ck_assert_int_eq(result, SG_DRIVER_OK);
    ck_assert_str_eq(st->id, "sb-1");
    ck_assert_int_eq(st->state, SG_DRIVER_STATE_GONE);
    gone_calls++;
}

START_TEST(test_plugin_good)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv;
    struct stat st;

    drv = open_driver(NULL, SG_PLUGIN_GOOD_DRIVER, NULL, &err);
    ck_assert_msg(drv != NULL, "%s", err.message);
    ck_assert_str_eq(sg_driver_name(drv), "good");
    ck_assert_uint_eq(sg_driver_caps(drv), 0);
    ck_assert_int_eq(stat(state_dir, &st), 0);

    ck_assert_int_eq(sg_driver_get(drv, "sb-1", "", on_gone, NULL, &err), 0);
    ck_assert_int_eq(gone_calls, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(gone_calls, 1);

    /* A driver that returns -1 without starting the op. */
    ck_assert_int_eq(sg_driver_remove(drv, "sb-1", "", 0, on_gone, NULL, &err),
                     -1);
    ck_assert_int_eq(err.code, SG_ERR_UNAVAILABLE);
    ck_assert_str_eq(err.message, "driver 'good' could not start remove");
    sg_error_reset(&err);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(gone_calls, 1);

    /* The plugin's idle handle lives in priv and its code in the shared
       object: both must outlive the loop run after close. */
    shut(drv);
}
END_TEST

START_TEST(test_plugin_open_refused)
{
    assert_open_fails(NULL, SG_PLUGIN_GOOD_DRIVER, "{\"refuse\": true}",
                      SG_ERR_CONFIG, "driver 'good': good: refused settings");
}
END_TEST

START_TEST(test_plugin_newer_minor)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv;

    drv = open_driver(NULL, SG_PLUGIN_NEWER_MINOR, NULL, &err);
    ck_assert_msg(drv != NULL, "%s", err.message);
    ck_assert_str_eq(sg_driver_name(drv), "newer");
    ck_assert_uint_eq(sg_driver_caps(drv), SG_DRIVER_CAP_LOGS);
    ck_assert_int_eq(sg_driver_list(drv, NULL, NULL, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_UNIMPLEMENTED);
    ck_assert_str_eq(err.message, "driver 'newer' does not support list");
    sg_error_reset(&err);
    shut(drv);
}
END_TEST

/* host->log is sg_log under "driver.<name>". */
START_TEST(test_host_log)
{
    struct sg_error err = SG_ERROR_INIT;
    FILE *f = tmpfile();
    char buf[4096];
    size_t n;

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(sg_log_configure("info", "", SG_LOG_FORMAT_JSON, &err), 0);
    sg_log_set_fd(fileno(f));
    ck_assert_ptr_null(open_driver(NULL, SG_PLUGIN_NULL_ENTRY, NULL, &err));
    sg_error_reset(&err);

    /* A filter on the driver's category silences it. */
    ck_assert_int_eq(sg_log_configure(NULL, "driver.null_entry:off",
                                      SG_LOG_FORMAT_JSON, &err),
                     0);
    ck_assert_ptr_null(open_driver(NULL, SG_PLUGIN_NULL_ENTRY, NULL, &err));
    sg_error_reset(&err);
    sg_log_set_fd(-1);

    rewind(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    ck_assert_msg(strstr(buf, "\"level\":\"error\",\"cat\":"
                              "\"driver.null_entry\",\"msg\":\"this host is "
                              "not supported (ABI 1.3)\"") != NULL,
                  "%s", buf);
    /* Exactly one record: the second load was filtered. */
    ck_assert_ptr_eq(strchr(buf, '\n'), strrchr(buf, '\n'));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Registry                                                            */
/* ------------------------------------------------------------------ */

START_TEST(test_builtin_lookup)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv;

    drv = open_driver("noop", NULL, NULL, &err);
    ck_assert_msg(drv != NULL, "%s", err.message);
    ck_assert_str_eq(sg_driver_name(drv), "noop");
    ck_assert_uint_eq(sg_driver_caps(drv), SG_DRIVER_CAP_WATCH);
    shut(drv);

    /* "process" is found, and its open gets the settings (and rejects
       these: the process driver's own schema is its tests' business). */
    ck_assert_ptr_null(
        open_driver("process", NULL, "{\"sg_test_no_such_key\": 1}", &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_msg(STRPREFIX(err.message, "driver 'process': "), "%s",
                  err.message);
    ck_assert_msg(strstr(err.message, "sg_test_no_such_key") != NULL, "%s",
                  err.message);
    sg_error_reset(&err);

    assert_open_fails("nope", NULL, NULL, SG_ERR_CONFIG,
                      "unknown driver 'nope' (built in: noop, process, kubernetes)");
    assert_open_fails("", NULL, NULL, SG_ERR_CONFIG,
                      "unknown driver '' (built in: noop, process, kubernetes)");
}
END_TEST

START_TEST(test_state_dir)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver_open_args args = {.name = "noop", .loop = &loop};
    struct sg_driver *drv;
    char deep[512];
    char file[256];
    struct stat st;

    umask(022);
    snprintf(deep, sizeof(deep), "%s/a/b//c/", tmp_dir);
    args.state_dir = deep;
    drv = sg_driver_open(&args, &err);
    ck_assert_msg(drv != NULL, "%s", err.message);
    shut(drv);
    ck_assert_int_eq(stat(deep, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 07777, 0700);
    snprintf(deep, sizeof(deep), "%s/a", tmp_dir);
    ck_assert_int_eq(stat(deep, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0700);

    /* Existing: kept as it is. */
    drv = sg_driver_open(&args, &err);
    ck_assert_msg(drv != NULL, "%s", err.message);
    shut(drv);

    /* A file where the directory should be. */
    snprintf(file, sizeof(file), "%s/file", tmp_dir);
    ck_assert_int_ge(creat(file, 0600), 0);
    args.state_dir = file;
    ck_assert_ptr_null(sg_driver_open(&args, &err));
    ck_assert_int_eq(err.code, SG_ERR_IO);
    snprintf(deep, sizeof(deep),
             "driver state directory '%s' is not a directory", file);
    ck_assert_str_eq(err.message, deep);
    sg_error_reset(&err);

    snprintf(deep, sizeof(deep), "%s/file/sub", tmp_dir);
    args.state_dir = deep;
    ck_assert_ptr_null(sg_driver_open(&args, &err));
    ck_assert_int_eq(err.code, SG_ERR_IO);
    ck_assert_msg(
        STRPREFIX(err.message, "cannot create driver state directory"), "%s",
        err.message);
    sg_error_reset(&err);

    args.state_dir = NULL;
    ck_assert_ptr_null(sg_driver_open(&args, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message, "driver 'noop' has no state directory");
    sg_error_reset(&err);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Wrappers                                                            */
/* ------------------------------------------------------------------ */

static struct sg_driver_sandbox sandbox(const char *id, const char *config)
{
    struct sg_driver_sandbox sb = {
        .id = id,
        .name = "box",
        .tenant = "t",
        .project = "p",
        .owner = "o",
        .image = "",
        .working_dir = "",
        .config_json = config,
    };

    return sb;
}

START_TEST(test_validate_violation)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv;
    struct sg_driver_sandbox sb = sandbox(NULL, "{\"bad\": 1}");

    drv = open_driver(NULL, SG_PLUGIN_GOOD_DRIVER, NULL, &err);
    ck_assert_msg(drv != NULL, "%s", err.message);

    ck_assert_int_eq(sg_driver_validate(drv, &sb, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    ck_assert_uint_eq(err.n_violations, 1);
    ck_assert_str_eq(err.violations[0].field,
                     "sandbox.spec.driver_config.good");
    ck_assert_str_eq(err.violations[0].description, "good.bad: not allowed");
    ck_assert_str_eq(err.message,
                     "sandbox.spec.driver_config.good: good.bad: not allowed");
    sg_error_reset(&err);

    sb.config_json = "{}";
    ck_assert_int_eq(sg_driver_validate(drv, &sb, &err), 0);
    ck_assert(!sg_error_is_set(&err));
    shut(drv);
}
END_TEST

/* A valid request the driver does not build yet is UNIMPLEMENTED, with
   the driver's words and no field violation. */
START_TEST(test_validate_unsupported)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv = open_driver(NULL, SG_PLUGIN_GOOD_DRIVER, NULL,
                                        &err);
    struct sg_driver_sandbox sb = sandbox(NULL, "{\"later\": 1}");

    ck_assert_msg(drv != NULL, "%s", err.message);
    ck_assert_int_eq(sg_driver_validate(drv, &sb, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_UNIMPLEMENTED);
    ck_assert_str_eq(err.message, "good.later: not built yet");
    ck_assert_uint_eq(err.n_violations, 0);
    sg_error_reset(&err);
    shut(drv);
}
END_TEST

START_TEST(test_describe)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv;
    struct sg_driver_sandbox sb = sandbox(NULL, "{}");
    struct sg_driver_placement pl;

    drv = open_driver(NULL, SG_PLUGIN_GOOD_DRIVER, NULL, &err);
    ck_assert_msg(drv != NULL, "%s", err.message);
    ck_assert_int_eq(sg_driver_describe(drv, &sb, &pl, &err), 0);
    ck_assert_str_eq(pl.namespace_name, "ns-good");
    ck_assert_ptr_null(pl.service_account);
    ck_assert_uint_eq(pl.n_fields, 2);
    ck_assert_str_eq(pl.fields[0], "alpha");
    ck_assert_str_eq(pl.fields[1], "beta");
    sg_driver_placement_clear(&pl);
    ck_assert_ptr_null(pl.namespace_name);
    ck_assert_ptr_null(pl.fields);
    ck_assert_uint_eq(pl.n_fields, 0);
    sg_driver_placement_clear(NULL);

    /* Error: the partly filled placement is freed and emptied. */
    sb.config_json = "{\"bad\": 2}";
    ck_assert_int_eq(sg_driver_describe(drv, &sb, &pl, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(err.violations[0].field,
                     "sandbox.spec.driver_config.good");
    ck_assert_ptr_null(pl.namespace_name);
    sg_error_reset(&err);
    shut(drv);

    /* noop without "placement": no facts, no error. */
    drv = open_driver("noop", NULL, NULL, &err);
    ck_assert_ptr_nonnull(drv);
    sb.config_json = "{}";
    memset(&pl, 0xff, sizeof(pl));
    ck_assert_int_eq(sg_driver_describe(drv, &sb, &pl, &err), 0);
    ck_assert_ptr_null(pl.namespace_name);
    ck_assert_uint_eq(pl.n_fields, 0);
    sg_driver_placement_clear(&pl);
    shut(drv);
}
END_TEST


START_TEST(test_unimplemented)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv;

    drv = open_driver(NULL, SG_PLUGIN_GOOD_DRIVER, NULL, &err);
    ck_assert_msg(drv != NULL, "%s", err.message);
    ck_assert_int_eq(sg_driver_list(drv, NULL, NULL, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_UNIMPLEMENTED);
    ck_assert_str_eq(err.message, "driver 'good' does not support list");
    sg_error_reset(&err);
    ck_assert_int_eq(sg_driver_watch(drv, NULL, NULL, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_UNIMPLEMENTED);
    ck_assert_str_eq(err.message, "driver 'good' does not support watch");
    sg_error_reset(&err);
    shut(drv);
}
END_TEST

START_TEST(test_closed)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv;
    struct sg_driver_sandbox sb = sandbox("sb-1", "{}");

    drv = open_driver("noop", NULL, NULL, &err);
    ck_assert_ptr_nonnull(drv);
    sg_driver_close(drv);
    sg_driver_close(drv); /* idempotent */
    ck_assert_int_eq(sg_driver_create(drv, &sb, NULL, NULL, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_UNAVAILABLE);
    ck_assert_str_eq(err.message, "driver 'noop' is closed");
    sg_error_reset(&err);
    ck_assert_int_eq(sg_driver_get(drv, "sb-1", "", NULL, NULL, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_UNAVAILABLE);
    sg_error_reset(&err);
    ck_assert_int_eq(sg_driver_watch(drv, NULL, NULL, &err), -1);
    ck_assert_str_eq(err.message, "driver 'noop' is closed");
    sg_error_reset(&err);
    /* Validation keeps working until free (request threads may still
       be checking requests during shutdown). */
    ck_assert_int_eq(sg_driver_validate(drv, &sb, &err), 0);
    sb.config_json = "{\"x\": 1}";
    ck_assert_int_eq(sg_driver_validate(drv, &sb, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    sg_error_reset(&err);
    uv_run(&loop, UV_RUN_DEFAULT);
    sg_driver_free(drv);
    sg_driver_free(NULL);
    sg_driver_close(NULL);
}
END_TEST

/* ------------------------------------------------------------------ */
/* noop driver                                                         */
/* ------------------------------------------------------------------ */

#define MAX_EVENTS 1024

/* One callback, recorded with its own copies of the strings. */
struct event {
    char kind; /* 'd' done, 'w' watch, 'l' list */
    enum sg_driver_result result;
    char id[64];
    enum sg_driver_state state;
    char reason[32];
    char message[64];
    char backend[80];
    int exit_code;
    size_t n_items;
};

static struct event events[MAX_EVENTS];
static size_t n_events;
static struct sg_driver *close_in_done; /* close the driver on a done */

static struct event *event_add(char kind)
{
    ck_assert_uint_lt(n_events, MAX_EVENTS);
    memset(&events[n_events], 0, sizeof(events[0]));
    events[n_events].kind = kind;
    return &events[n_events++];
}

static void event_status(struct event *ev, const struct sg_driver_status *st)
{
    snprintf(ev->id, sizeof(ev->id), "%s", st->id);
    ev->state = st->state;
    snprintf(ev->reason, sizeof(ev->reason), "%s", st->reason);
    snprintf(ev->message, sizeof(ev->message), "%s", st->message);
    snprintf(ev->backend, sizeof(ev->backend), "%s", st->backend_object);
    ev->exit_code = st->exit_code;
}

static void on_done(void *opaque, enum sg_driver_result result,
                    const struct sg_driver_status *st, const char *message)
{
    struct event *ev = event_add('d');

    ck_assert_ptr_eq(opaque, &loop);
    ev->result = result;
    if (result == SG_DRIVER_OK) {
        ck_assert_ptr_nonnull(st);
        event_status(ev, st);
    } else {
        ck_assert_ptr_null(st);
        snprintf(ev->message, sizeof(ev->message), "%s", message);
    }
    if (close_in_done != NULL) {
        sg_driver_close(close_in_done);
        close_in_done = NULL;
    }
}

static void on_watch(void *opaque, const struct sg_driver_status *st)
{
    ck_assert_ptr_eq(opaque, &loop);
    event_status(event_add('w'), st);
}

static struct sg_driver_status list_items[MAX_EVENTS];
static char list_ids[MAX_EVENTS][64];

static void on_list(void *opaque, enum sg_driver_result result,
                    const struct sg_driver_status *items, size_t n_items,
                    const char *message)
{
    struct event *ev = event_add('l');

    ck_assert_int_eq(result, SG_DRIVER_OK);
    ck_assert_uint_le(n_items, MAX_EVENTS);
    ev->n_items = n_items;
    for (size_t i = 0; i < n_items; i++) {
        list_items[i] = items[i];
        snprintf(list_ids[i], sizeof(list_ids[i]), "%s", items[i].id);
        list_items[i].id = list_ids[i];
        list_items[i].reason = NULL; /* borrowed: not kept */
        list_items[i].message = NULL;
        list_items[i].backend_object = NULL;
    }
}

static struct sg_driver *noop_open(const char *settings)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv = open_driver("noop", NULL, settings, &err);

    ck_assert_msg(drv != NULL, "%s", err.message);
    ck_assert_int_eq(sg_driver_watch(drv, on_watch, &loop, &err), 0);
    return drv;
}

static void create(struct sg_driver *drv, const char *id, const char *config)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver_sandbox sb = sandbox(id, config);

    ck_assert_msg(sg_driver_create(drv, &sb, on_done, &loop, &err) == 0, "%s",
                  err.message);
}

static void get(struct sg_driver *drv, const char *id)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_driver_get(drv, id, "", on_done, &loop, &err), 0);
}

static void remove_id(struct sg_driver *drv, const char *id)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_driver_remove(drv, id, "", 1000, on_done, &loop, &err),
                     0);
}

static void list(struct sg_driver *drv)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_driver_list(drv, on_list, &loop, &err), 0);
}

static void assert_event(size_t i, char kind, const char *id,
                         enum sg_driver_state state, const char *reason)
{
    ck_assert_uint_lt(i, n_events);
    ck_assert_int_eq(events[i].kind, kind);
    ck_assert_int_eq(events[i].result, SG_DRIVER_OK);
    ck_assert_str_eq(events[i].id, id);
    ck_assert_int_eq(events[i].state, state);
    ck_assert_str_eq(events[i].reason, reason);
}

START_TEST(test_noop_create_deferred)
{
    struct sg_driver *drv = noop_open(NULL);

    create(drv, "sb-1", "{}");
    /* The answer is deferred: nothing yet, the loop has not run. */
    ck_assert_uint_eq(n_events, 0);
    uv_run(&loop, UV_RUN_DEFAULT);

    /* Without a ready delay it runs at once: no PENDING, no watch event. */
    ck_assert_uint_eq(n_events, 1);
    assert_event(0, 'd', "sb-1", SG_DRIVER_STATE_RUNNING, "Started");
    ck_assert_str_eq(events[0].backend, "noop/sb-1");
    ck_assert_str_eq(events[0].message, "");

    get(drv, "sb-1");
    ck_assert_uint_eq(n_events, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_event(1, 'd', "sb-1", SG_DRIVER_STATE_RUNNING, "Started");
    shut(drv);
}
END_TEST

START_TEST(test_noop_ready_delay)
{
    struct sg_driver *drv = noop_open("{\"ready_delay_ms\": 80}");
    uint64_t start;

    uv_update_time(&loop);
    start = uv_now(&loop);
    create(drv, "sb-1", NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_uint_eq(n_events, 1);
    assert_event(0, 'd', "sb-1", SG_DRIVER_STATE_PENDING, "Created");

    get(drv, "sb-1"); /* still pending */
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_event(1, 'd', "sb-1", SG_DRIVER_STATE_PENDING, "Created");

    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(n_events, 3);
    assert_event(2, 'w', "sb-1", SG_DRIVER_STATE_RUNNING, "Started");
    ck_assert_uint_ge(uv_now(&loop) - start, 80);
    shut(drv);
}
END_TEST

START_TEST(test_noop_fail_injection)
{
    struct sg_driver *drv = noop_open(NULL);

    create(drv, "sb-f", "{\"fail\": \"disk on fire\"}");
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(n_events, 1); /* FAILED, and no watch event */
    assert_event(0, 'd', "sb-f", SG_DRIVER_STATE_FAILED, "InjectedFailure");
    ck_assert_str_eq(events[0].message, "disk on fire");
    ck_assert_int_eq(events[0].exit_code, -1);

    get(drv, "sb-f");
    create(drv, "sb-f", "{}"); /* idempotent: the recorded state */
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(n_events, 3);
    assert_event(1, 'd', "sb-f", SG_DRIVER_STATE_FAILED, "InjectedFailure");
    assert_event(2, 'd', "sb-f", SG_DRIVER_STATE_FAILED, "InjectedFailure");
    ck_assert_str_eq(events[2].message, "disk on fire");
    shut(drv);
}
END_TEST

START_TEST(test_noop_create_invalid)
{
    struct sg_driver *drv = noop_open(NULL);

    create(drv, "sb-1", "{\"color\": \"red\"}");
    ck_assert_uint_eq(n_events, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(n_events, 1);
    ck_assert_int_eq(events[0].result, SG_DRIVER_ERR_INVALID);
    ck_assert_str_eq(events[0].message, "noop.color: unknown key");

    create(drv, NULL, "{}");
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(events[1].result, SG_DRIVER_ERR_INVALID);
    ck_assert_str_eq(events[1].message, "noop: sandbox has no id");

    /* Nothing was recorded. */
    get(drv, "sb-1");
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_event(2, 'd', "sb-1", SG_DRIVER_STATE_GONE, "NotFound");
    shut(drv);
}
END_TEST

START_TEST(test_noop_remove)
{
    struct sg_driver *drv = noop_open("{\"ready_delay_ms\": 1}");

    create(drv, "sb-1", "{}");
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(n_events, 2);

    remove_id(drv, "sb-1");
    ck_assert_uint_eq(n_events, 2);
    get(drv, "sb-1");
    remove_id(drv, "sb-1"); /* again: idempotent */
    remove_id(drv, "never");
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(n_events, 6);
    assert_event(2, 'd', "sb-1", SG_DRIVER_STATE_GONE, "Deleted");
    assert_event(3, 'd', "sb-1", SG_DRIVER_STATE_GONE, "NotFound");
    assert_event(4, 'd', "sb-1", SG_DRIVER_STATE_GONE, "NotFound");
    assert_event(5, 'd', "never", SG_DRIVER_STATE_GONE, "NotFound");
    shut(drv);
}
END_TEST

START_TEST(test_noop_remove_while_pending)
{
    struct sg_driver *drv = noop_open("{\"ready_delay_ms\": 60000}");
    uint64_t start;

    create(drv, "sb-1", "{}");
    remove_id(drv, "sb-1"); /* before the PENDING answer went out */
    create(drv, "sb-2", "{}");
    uv_run(&loop, UV_RUN_NOWAIT);
    remove_id(drv, "sb-2"); /* after it: its ready timer is running */
    uv_update_time(&loop);
    start = uv_now(&loop);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns at once: no timer left */
    ck_assert_uint_lt(uv_now(&loop) - start, 5000);

    ck_assert_uint_eq(n_events, 4); /* and no RUNNING */
    assert_event(0, 'd', "sb-1", SG_DRIVER_STATE_PENDING, "Created");
    assert_event(1, 'd', "sb-1", SG_DRIVER_STATE_GONE, "Deleted");
    assert_event(2, 'd', "sb-2", SG_DRIVER_STATE_PENDING, "Created");
    assert_event(3, 'd', "sb-2", SG_DRIVER_STATE_GONE, "Deleted");
    shut(drv);
}
END_TEST

START_TEST(test_noop_idempotent_create)
{
    struct sg_driver *drv = noop_open("{\"ready_delay_ms\": 1}");

    create(drv, "sb-1", "{}");
    create(drv, "sb-1", "{\"fail\": \"ignored: it exists\"}");
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(n_events, 3); /* one RUNNING, not two */
    assert_event(0, 'd', "sb-1", SG_DRIVER_STATE_PENDING, "Created");
    assert_event(1, 'd', "sb-1", SG_DRIVER_STATE_PENDING, "Created");
    assert_event(2, 'w', "sb-1", SG_DRIVER_STATE_RUNNING, "Started");

    create(drv, "sb-1", "{}");
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(n_events, 4);
    assert_event(3, 'd', "sb-1", SG_DRIVER_STATE_RUNNING, "Started");

    list(drv);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(events[4].n_items, 1);
    shut(drv);
}
END_TEST

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const struct sg_driver_status *)a)->id,
                  ((const struct sg_driver_status *)b)->id);
}

START_TEST(test_noop_list)
{
    struct sg_driver *drv = noop_open("{\"ready_delay_ms\": 0}");
    char id[32];

    list(drv);
    ck_assert_uint_eq(n_events, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(events[0].kind, 'l');
    ck_assert_uint_eq(events[0].n_items, 0);

    create(drv, "a", "{}");
    create(drv, "b", "{\"fail\": \"x\"}");
    create(drv, "c", "{}");
    uv_run(&loop, UV_RUN_DEFAULT);
    remove_id(drv, "c");
    list(drv);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(events[n_events - 1].kind, 'l');
    ck_assert_uint_eq(events[n_events - 1].n_items, 2);
    qsort(list_items, 2, sizeof(list_items[0]), cmp_item);
    ck_assert_str_eq(list_items[0].id, "a");
    ck_assert_int_eq(list_items[0].state, SG_DRIVER_STATE_RUNNING);
    ck_assert_str_eq(list_items[1].id, "b");
    ck_assert_int_eq(list_items[1].state, SG_DRIVER_STATE_FAILED);

    /* Many: the map grows and keeps every id once. */
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "many-%03d", i);
        create(drv, id, "{}");
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    list(drv);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(events[n_events - 1].n_items, 202);
    qsort(list_items, 202, sizeof(list_items[0]), cmp_item);
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "many-%03d", i);
        ck_assert_str_eq(list_items[2 + i].id, id);
        ck_assert_int_eq(list_items[2 + i].state, SG_DRIVER_STATE_RUNNING);
    }
    shut(drv);
}
END_TEST

static const struct {
    const char *settings;
    const char *message;
} bad_settings[] = {
    {"{\"ready_delay\": 5}",
     "driver 'noop': noop settings: unknown key 'ready_delay'"},
    {"{\"ready_delay_ms\": -1}",
     "driver 'noop': noop settings: ready_delay_ms: expected an integer "
     "from 0 to 4294967295"},
    {"{\"ready_delay_ms\": 4294967296}",
     "driver 'noop': noop settings: ready_delay_ms: expected an integer "
     "from 0 to 4294967295"},
    {"{\"ready_delay_ms\": 1.5}",
     "driver 'noop': noop settings: ready_delay_ms: expected an integer "
     "from 0 to 4294967295"},
    {"{\"ready_delay_ms\": \"5\"}",
     "driver 'noop': noop settings: ready_delay_ms: expected an integer "
     "from 0 to 4294967295"},
    {"[]", "driver 'noop': noop settings: expected a JSON object"},
    {"{\"ready_delay_ms\": 1, \"ready_delay_ms\": 2}", NULL},
    {"{", NULL},
};

START_TEST(test_noop_bad_settings)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_ptr_null(
        open_driver("noop", NULL, bad_settings[_i].settings, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    if (bad_settings[_i].message != NULL)
        ck_assert_str_eq(err.message, bad_settings[_i].message);
    else
        ck_assert_msg(STRPREFIX(err.message, "driver 'noop': noop settings: "
                                             "invalid JSON at line 1: "),
                      "%s", err.message);
    sg_error_reset(&err);
}
END_TEST

static const struct {
    const char *config;
    const char *description; /* NULL: valid */
} configs[] = {
    {"{}", NULL},
    {NULL, NULL},
    {"{\"fail\": \"boom\"}", NULL},
    {"{\"fail\": \"\"}", "noop.fail: expected a non-empty string"},
    {"{\"fail\": 1}", "noop.fail: expected a non-empty string"},
    {"{\"fail\": null}", "noop.fail: expected a non-empty string"},
    {"{\"fail\": \"a\", \"image\": \"x\"}", "noop.image: unknown key"},
    {"{\"placement\": {\"namespace\": \"a\", \"cpuMillis\": 2}}", NULL},
    {"{\"placement\": []}", "noop.placement: expected an object"},
    {"{\"placement\": {\"zone\": \"a\"}}", "noop.placement.zone: unknown key"},
    {"{\"placement\": {\"cpuMillis\": -1}}",
     "noop.placement.cpuMillis: expected an integer >= 0"},
    {"{\"placement\": {\"namespace\": 1}}",
     "noop.placement.namespace: expected a string"},
    {"{\"placement\": {\"nodeSelector\": {\"a\": 1}}}",
     "noop.placement.nodeSelector: expected an object of strings"},
    {"{\"placement\": {\"tolerationKeys\": [1]}}",
     "noop.placement.tolerationKeys: expected an array of strings"},
    {"[\"fail\"]", "noop: expected a JSON object"},
    {"\"fail\"", "noop: invalid JSON at line 1: '[' or '{' expected near "
                 "'\"fail\"'"},
};

/* noop reports the placement the caller wrote, sorted, every field. */
START_TEST(test_noop_describe_placement)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv = noop_open(NULL);
    struct sg_driver_sandbox sb = sandbox(
        NULL, "{\"fail\": \"x\", \"placement\": {\"namespace\": \"sbx-a\", "
              "\"serviceAccountName\": \"runner\", \"cpuMillis\": 1500, "
              "\"nodeSelector\": {\"zone\": \"b\", \"pool\": \"rce\"}, "
              "\"tolerationKeys\": [\"t2\", \"t1\"], \"warmPool\": \"wp\"}}");
    struct sg_driver_placement pl;
    static const char *const want[] = {
        "fail", "placement", "placement.cpuMillis", "placement.namespace",
        "placement.nodeSelector", "placement.serviceAccountName",
        "placement.tolerationKeys", "placement.warmPool"};

    ck_assert_int_eq(sg_driver_describe(drv, &sb, &pl, &err), 0);
    ck_assert_str_eq(pl.namespace_name, "sbx-a");
    ck_assert_str_eq(pl.service_account, "runner");
    ck_assert_str_eq(pl.warm_pool, "wp");
    ck_assert_ptr_null(pl.runtime_class);
    ck_assert_uint_eq(pl.cpu_millis, 1500);
    ck_assert_uint_eq(pl.memory_bytes, 0);
    ck_assert_uint_eq(pl.n_node_selector, 2);
    ck_assert_str_eq(pl.node_selector_keys[0], "pool");
    ck_assert_str_eq(pl.node_selector_values[0], "rce");
    ck_assert_str_eq(pl.node_selector_keys[1], "zone");
    ck_assert_uint_eq(pl.n_toleration_keys, 2);
    ck_assert_str_eq(pl.toleration_keys[0], "t1");
    ck_assert_uint_eq(pl.n_fields, SG_N_ELEMENTS(want));
    for (size_t i = 0; i < SG_N_ELEMENTS(want); i++)
        ck_assert_str_eq(pl.fields[i], want[i]);
    sg_driver_placement_clear(&pl);
    shut(drv);
}
END_TEST

START_TEST(test_noop_config)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv = noop_open(NULL);
    struct sg_driver_sandbox sb = sandbox(NULL, configs[_i].config);
    int rc = sg_driver_validate(drv, &sb, &err);

    if (configs[_i].description == NULL) {
        ck_assert_msg(rc == 0, "%s", err.message);
    } else {
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
        ck_assert_uint_eq(err.n_violations, 1);
        ck_assert_str_eq(err.violations[0].field,
                         "sandbox.spec.driver_config.noop");
        ck_assert_str_eq(err.violations[0].description,
                         configs[_i].description);
    }
    sg_error_reset(&err);
    shut(drv);
}
END_TEST

/* config_validate runs on request threads, concurrently (the ABI). */
static void *validate_many(void *arg)
{
    struct sg_driver *drv = arg;
    intptr_t bad = 0;

    for (int i = 0; i < 500; i++) {
        struct sg_error err = SG_ERROR_INIT;
        struct sg_driver_sandbox sb =
            sandbox(NULL, i % 2 ? "{\"fail\": \"x\"}" : "{\"y\": 1}");
        int rc = sg_driver_validate(drv, &sb, &err);

        if (rc != (i % 2 ? 0 : -1) ||
            (rc < 0 &&
             STRNEQ(err.violations[0].description, "noop.y: unknown key")))
            bad++;
        sg_error_reset(&err);
    }
    return (void *)bad;
}

START_TEST(test_noop_validate_threads)
{
    struct sg_driver *drv = noop_open(NULL);
    pthread_t th[4];
    void *bad;

    for (size_t i = 0; i < SG_N_ELEMENTS(th); i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, validate_many, drv), 0);
    for (size_t i = 0; i < SG_N_ELEMENTS(th); i++) {
        ck_assert_int_eq(pthread_join(th[i], &bad), 0);
        ck_assert_ptr_null(bad);
    }
    shut(drv);
}
END_TEST

START_TEST(test_noop_watch_once)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv = noop_open(NULL);

    ck_assert_int_eq(sg_driver_watch(drv, on_watch, &loop, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_FAILED_PRECONDITION);
    ck_assert_str_eq(err.message, "driver 'noop' refused watch: noop: a "
                                  "watcher is already registered");
    sg_error_reset(&err);
    shut(drv);
}
END_TEST

START_TEST(test_noop_no_watcher)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver *drv = open_driver("noop", NULL, NULL, &err);

    /* Without a watcher the state still moves on; get sees it. */
    ck_assert_ptr_nonnull(drv);
    create(drv, "sb-1", "{}");
    uv_run(&loop, UV_RUN_DEFAULT);
    get(drv, "sb-1");
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(n_events, 2);
    assert_event(1, 'd', "sb-1", SG_DRIVER_STATE_RUNNING, "Started");
    shut(drv);
}
END_TEST

START_TEST(test_noop_close_pending_timer)
{
    struct sg_driver *drv = noop_open("{\"ready_delay_ms\": 60000}");
    uint64_t start;

    for (int i = 0; i < 20; i++) {
        char id[16];

        snprintf(id, sizeof(id), "sb-%d", i);
        create(drv, id, "{}");
    }
    uv_run(&loop, UV_RUN_NOWAIT); /* PENDING out, timers running */
    ck_assert_uint_eq(n_events, 20);
    get(drv, "sb-1"); /* queued, dropped by close */
    list(drv);

    uv_update_time(&loop);
    start = uv_now(&loop);
    sg_driver_close(drv);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_uint_lt(uv_now(&loop) - start, 5000);
    ck_assert_uint_eq(n_events, 20); /* neither dropped answer ran */
    sg_driver_free(drv);
    /* teardown: uv_loop_close() == 0, so every handle was closed. */
}
END_TEST

START_TEST(test_noop_close_before_run)
{
    struct sg_driver *drv = noop_open(NULL);

    create(drv, "sb-1", "{}");
    remove_id(drv, "sb-2");
    shut(drv);
    ck_assert_uint_eq(n_events, 0);
}
END_TEST

START_TEST(test_noop_close_in_callback)
{
    struct sg_driver *drv = noop_open("{\"ready_delay_ms\": 1}");

    create(drv, "a", "{}");
    create(drv, "b", "{}");
    get(drv, "a");
    close_in_done = drv;
    uv_run(&loop, UV_RUN_DEFAULT);
    /* The first answer closed the driver; the rest were dropped. */
    ck_assert_uint_eq(n_events, 1);
    assert_event(0, 'd', "a", SG_DRIVER_STATE_PENDING, "Created");
    sg_driver_free(drv);
}
END_TEST

static Suite *driver_suite(void)
{
    Suite *s = suite_create("driver");
    TCase *tc;

    tc = tcase_create("loader");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_bad_plugin, 0, SG_N_ELEMENTS(bad_plugins));
    tcase_add_loop_test(tc, test_bad_table, 0, SG_N_ELEMENTS(bad_tables));
    tcase_add_test(tc, test_bad_table_control);
    tcase_add_test(tc, test_plugin_paths);
    tcase_add_test(tc, test_plugin_name_mismatch);
    tcase_add_test(tc, test_plugin_good);
    tcase_add_test(tc, test_plugin_open_refused);
    tcase_add_test(tc, test_plugin_newer_minor);
    tcase_add_test(tc, test_host_log);
    suite_add_tcase(s, tc);

    tc = tcase_create("registry");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_builtin_lookup);
    tcase_add_test(tc, test_state_dir);
    suite_add_tcase(s, tc);

    tc = tcase_create("wrappers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_validate_violation);
    tcase_add_test(tc, test_validate_unsupported);
    tcase_add_test(tc, test_describe);
    tcase_add_test(tc, test_unimplemented);
    tcase_add_test(tc, test_closed);
    suite_add_tcase(s, tc);

    tc = tcase_create("noop");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_noop_create_deferred);
    tcase_add_test(tc, test_noop_ready_delay);
    tcase_add_test(tc, test_noop_fail_injection);
    tcase_add_test(tc, test_noop_create_invalid);
    tcase_add_test(tc, test_noop_remove);
    tcase_add_test(tc, test_noop_remove_while_pending);
    tcase_add_test(tc, test_noop_idempotent_create);
    tcase_add_test(tc, test_noop_list);
    tcase_add_loop_test(tc, test_noop_bad_settings, 0,
                        SG_N_ELEMENTS(bad_settings));
    tcase_add_loop_test(tc, test_noop_config, 0, SG_N_ELEMENTS(configs));
    tcase_add_test(tc, test_noop_validate_threads);
    tcase_add_test(tc, test_noop_describe_placement);
    tcase_add_test(tc, test_noop_watch_once);
    tcase_add_test(tc, test_noop_no_watcher);
    tcase_add_test(tc, test_noop_close_pending_timer);
    tcase_add_test(tc, test_noop_close_before_run);
    tcase_add_test(tc, test_noop_close_in_callback);
    suite_add_tcase(s, tc);

    return s;
}

SG_TEST_MAIN(driver_suite)
