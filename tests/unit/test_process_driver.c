/*
 * test_process_driver.c: the process driver on a real libuv loop with real
 * bubblewrap sandboxes.
 *
 * Each test has its own loop and state directory (under /var/tmp, so that
 * the driver has to hide it from the sandbox: /tmp is a fresh tmpfs inside
 * anyway). Teardown asserts uv_loop_close() succeeds, i.e. the driver
 * closed every handle. Callbacks are checked never to run inside the op
 * that was given them. The unchecked fixture (in the runner process) kills
 * whatever a failed test left running and removes the directories.
 *
 * The program exits 77 (skip) when bwrap cannot create namespaces here.
 */
#include "internal.h"

#include "testutils.h"

#include "buf.h"
#include "process_config.h"
#include "process_driver.h"
#include "process_spawn.h"
#include "process_state.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <grp.h>
#include <unistd.h>
#include <uv.h>

#define BWRAP "/usr/bin/bwrap"
#define WAIT_MS 20000
#define DEFAULT_SETTINGS "{\"cgroup\": \"off\", \"grace_period_ms\": 5000}"

static const struct sg_driver_ops *ops = &sg_process_driver;
static char base_dir[64];   /* per tcase, made by the unchecked fixture */
static char state_dir[128]; /* per test */
static uv_loop_t loop;
static uv_timer_t tick;
static void *priv;
static bool in_op;
static struct sg_buf log_text = SG_BUF_INIT;

/* ---- fixtures ---- */

static void kill_recorded(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d == NULL)
        return;
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        char path[512];
        json_t *rec;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/sandbox.json", dir, e->d_name);
        rec = json_load_file(path, 0, NULL);
        if (rec == NULL) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            kill_recorded(path); /* a state dir of one test */
            continue;
        }
        if (process_proc_matches(
                (pid_t)json_integer_value(json_object_get(rec, "pid")),
                (uint64_t)json_integer_value(
                    json_object_get(rec, "start_time"))))
            kill((pid_t)json_integer_value(json_object_get(rec, "pid")),
                 SIGKILL);
        if (process_proc_matches(
                (pid_t)json_integer_value(json_object_get(rec, "bwrap_pid")),
                (uint64_t)json_integer_value(
                    json_object_get(rec, "bwrap_start_time"))))
            kill((pid_t)json_integer_value(json_object_get(rec, "bwrap_pid")),
                 SIGKILL);
        json_decref(rec);
    }
    closedir(d);
}

static void base_setup(void)
{
    snprintf(base_dir, sizeof(base_dir), "/var/tmp/sg-test-process-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(base_dir));
}

static void base_teardown(void)
{
    kill_recorded(base_dir);
    usleep(100 * 1000);
    (void)process_rm_rf(base_dir);
}

static void host_log(enum sg_driver_log_level level, const char *driver,
                     const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    sg_buf_printf(&log_text, "[%s] %s\n", driver, line);
    if (getenv("SG_TEST_VERBOSE") != NULL)
        fprintf(stderr, "[%s] %s\n", driver, line);
}

static void *host_alloc(size_t n)
{
    return calloc(1, n);
}

static struct sg_driver_host host = {
    .abi_major = SG_DRIVER_ABI_MAJOR,
    .abi_minor = SG_DRIVER_ABI_MINOR,
    .struct_size = sizeof(struct sg_driver_host),
    .loop = &loop,
    .alloc = host_alloc,
    .free = free,
    .strdup = strdup,
    .log = host_log,
};

/* ---- watch events ---- */

struct status_copy {
    char id[64];
    enum sg_driver_state state;
    char reason[32];
    char message[256];
    char backend[64];
    int exit_code;
};

static struct status_copy events[512];
static size_t n_events;

static void copy_status(struct status_copy *c,
                        const struct sg_driver_status *st)
{
    snprintf(c->id, sizeof(c->id), "%s", st->id);
    c->state = st->state;
    snprintf(c->reason, sizeof(c->reason), "%s", st->reason);
    snprintf(c->message, sizeof(c->message), "%s", st->message);
    snprintf(c->backend, sizeof(c->backend), "%s", st->backend_object);
    c->exit_code = st->exit_code;
}

static void on_watch(void *opaque, const struct sg_driver_status *st)
{
    ck_assert_msg(!in_op, "watch callback inside an op");
    ck_assert_uint_lt(n_events, SG_N_ELEMENTS(events));
    copy_status(&events[n_events++], st);
}

/* The latest watch event for id, or NULL. */
static const struct status_copy *last_event(const char *id)
{
    for (size_t i = n_events; i > 0; i--) {
        if (STREQ(events[i - 1].id, id))
            return &events[i - 1];
    }
    return NULL;
}

/* ---- the loop ---- */

static void on_tick(uv_timer_t *t)
{
}

static void setup(void)
{
    char name[32];
    static unsigned n;

    snprintf(name, sizeof(name), "t%u-%d", n++, (int)getpid());
    snprintf(state_dir, sizeof(state_dir), "%s/%s", base_dir, name);
    ck_assert_int_eq(mkdir(state_dir, 0700), 0);
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(uv_timer_init(&loop, &tick), 0);
    n_events = 0;
    priv = NULL;
    sg_buf_reset(&log_text);
}

static void close_driver(void)
{
    if (priv == NULL)
        return;
    in_op = true;
    ops->close(priv);
    in_op = false;
    uv_run(&loop, UV_RUN_DEFAULT);
    free(priv);
    priv = NULL;
}

static void teardown(void)
{
    close_driver();
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    sg_buf_free(&log_text);
}

static void open_driver(const char *settings)
{
    char *errmsg = NULL;
    int rc;

    priv = calloc(1, ops->priv_size);
    ck_assert_ptr_nonnull(priv);
    in_op = true;
    rc = ops->open(priv, &host, settings, state_dir, &errmsg);
    in_op = false;
    ck_assert_msg(rc == 0, "open: %s", errmsg != NULL ? errmsg : "?");
    in_op = true;
    rc = ops->watch(priv, on_watch, NULL, &errmsg);
    in_op = false;
    ck_assert_int_eq(rc, 0);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run the loop until pred(arg) holds; false on timeout. */
static bool run_until(bool (*pred)(const void *), const void *arg,
                      unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    bool ok;

    uv_timer_start(&tick, on_tick, 5, 5);
    for (;;) {
        ok = pred(arg);
        if (ok || now_ms() > deadline)
            break;
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&tick);
    return ok;
}

static void run_for(unsigned ms)
{
    uint64_t end = now_ms() + ms;

    uv_timer_start(&tick, on_tick, 5, 5);
    while (now_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
}

/* ---- op wrappers ---- */

struct result {
    bool called;
    enum sg_driver_result result;
    bool has_status;
    struct status_copy st;
    char message[256];
};

static void on_done(void *opaque, enum sg_driver_result result,
                    const struct sg_driver_status *st, const char *message)
{
    struct result *r = opaque;

    ck_assert_msg(!in_op, "done callback inside an op");
    ck_assert_msg(!r->called, "done callback ran twice");
    r->called = true;
    r->result = result;
    r->has_status = st != NULL;
    if (st != NULL)
        copy_status(&r->st, st);
    snprintf(r->message, sizeof(r->message), "%s", message ? message : "");
}

static bool result_called(const void *arg)
{
    return ((const struct result *)arg)->called;
}

static void wait_result(struct result *r)
{
    ck_assert_msg(run_until(result_called, r, WAIT_MS), "no answer");
}

static struct sg_driver_sandbox make_sb(const char *id, const char *const *argv,
                                        size_t argc, const char *config)
{
    struct sg_driver_sandbox sb = {
        .id = id,
        .name = id,
        .tenant = "t",
        .project = "p",
        .owner = "o",
        .image = "",
        .command = argv,
        .n_command = argc,
        .working_dir = "",
        .config_json = config != NULL ? config : "{}",
    };

    return sb;
}

static struct result create_sb(const struct sg_driver_sandbox *sb)
{
    struct result r = {0};
    int rc;

    in_op = true;
    rc = ops->create(priv, sb, on_done, &r);
    in_op = false;
    ck_assert_int_eq(rc, 0);
    wait_result(&r);
    return r;
}

/* Create and insist it is accepted. */
static void create_ok(const char *id, const char *const *argv, size_t argc,
                      const char *config)
{
    struct sg_driver_sandbox sb = make_sb(id, argv, argc, config);
    struct result r = create_sb(&sb);

    ck_assert_msg(r.result == SG_DRIVER_OK, "create %s: %s", id, r.message);
    ck_assert(r.has_status);
    ck_assert_str_eq(r.st.id, id);
    ck_assert_msg(r.st.state == SG_DRIVER_STATE_PENDING ||
                      r.st.state == SG_DRIVER_STATE_RUNNING ||
                      r.st.state == SG_DRIVER_STATE_FAILED,
                  "state %d", r.st.state);
}

static struct result get_sb(const char *id)
{
    struct result r = {0};
    int rc;

    in_op = true;
    rc = ops->get(priv, id, "", on_done, &r);
    in_op = false;
    ck_assert_int_eq(rc, 0);
    wait_result(&r);
    ck_assert_int_eq(r.result, SG_DRIVER_OK);
    return r;
}

static struct result remove_sb(const char *id, uint32_t grace_ms)
{
    struct result r = {0};
    int rc;

    in_op = true;
    rc = ops->remove(priv, id, "", grace_ms, on_done, &r);
    in_op = false;
    ck_assert_int_eq(rc, 0);
    wait_result(&r);
    ck_assert_msg(r.result == SG_DRIVER_OK, "remove %s: %s", id, r.message);
    ck_assert_int_eq(r.st.state, SG_DRIVER_STATE_GONE);
    return r;
}

struct list_result {
    bool called;
    size_t n;
    struct status_copy items[16];
};

static void on_list(void *opaque, enum sg_driver_result result,
                    const struct sg_driver_status *items, size_t n,
                    const char *message)
{
    struct list_result *l = opaque;

    ck_assert_msg(!in_op, "list callback inside an op");
    ck_assert_int_eq(result, SG_DRIVER_OK);
    ck_assert_uint_le(n, SG_N_ELEMENTS(l->items));
    l->called = true;
    l->n = n;
    for (size_t i = 0; i < n; i++)
        copy_status(&l->items[i], &items[i]);
}

static bool list_called(const void *arg)
{
    return ((const struct list_result *)arg)->called;
}

static void list_all(struct list_result *l)
{
    int rc;

    memset(l, 0, sizeof(*l));
    in_op = true;
    rc = ops->list(priv, on_list, l);
    in_op = false;
    ck_assert_int_eq(rc, 0);
    ck_assert(run_until(list_called, l, WAIT_MS));
}

static const struct status_copy *list_find(const struct list_result *l,
                                           const char *id)
{
    for (size_t i = 0; i < l->n; i++) {
        if (STREQ(l->items[i].id, id))
            return &l->items[i];
    }
    return NULL;
}

/* ---- waiting for states ---- */

struct want {
    const char *id;
    enum sg_driver_state state;
};

static bool reached(const void *arg)
{
    const struct want *w = arg;
    const struct status_copy *e = last_event(w->id);

    return e != NULL && e->state == w->state;
}

static const struct status_copy *wait_state(const char *id,
                                            enum sg_driver_state state)
{
    struct want w = {id, state};
    const struct status_copy *e;

    if (!run_until(reached, &w, WAIT_MS)) {
        e = last_event(id);
        ck_abort_msg("%s: want state %d, last %d %s %s", id, state,
                     e != NULL ? (int)e->state : -1,
                     e != NULL ? e->reason : "-", e != NULL ? e->message : "-");
    }
    return last_event(id);
}

/* ---- files ---- */

static char *sb_path(const char *id, const char *rel)
{
    static char path[512];

    snprintf(path, sizeof(path), "%s/%s/%s", state_dir, id, rel);
    return path;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "re");
    char *buf;
    size_t n;

    if (f == NULL)
        return NULL;
    buf = calloc(1, 4 << 20);
    ck_assert_ptr_nonnull(buf);
    n = fread(buf, 1, (4 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static bool file_has(const void *arg)
{
    const char *const *pair = arg;
    char *text = read_text(pair[0]);
    bool ok = text != NULL && strstr(text, pair[1]) != NULL;

    free(text);
    return ok;
}

static void wait_file_has(const char *path, const char *needle)
{
    const char *pair[2] = {path, needle};
    char *text;

    if (run_until(file_has, pair, WAIT_MS))
        return;
    text = read_text(path);
    ck_abort_msg("%s never held '%s' (it has '%s')", path, needle,
                 text != NULL ? text : "(missing)");
}

static bool exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

    ck_assert_int_ge(fd, 0);
    close(fd);
}

struct pids {
    pid_t pid;
    uint64_t start;
    pid_t bwrap;
    uint64_t bwrap_start;
};

static struct pids record_pids(const char *id)
{
    json_t *rec = json_load_file(sb_path(id, "sandbox.json"), 0, NULL);
    struct pids p;

    ck_assert_ptr_nonnull(rec);
    p.pid = (pid_t)json_integer_value(json_object_get(rec, "pid"));
    p.start = (uint64_t)json_integer_value(json_object_get(rec, "start_time"));
    p.bwrap = (pid_t)json_integer_value(json_object_get(rec, "bwrap_pid"));
    p.bwrap_start =
        (uint64_t)json_integer_value(json_object_get(rec, "bwrap_start_time"));
    json_decref(rec);
    return p;
}

/* How many processes live in the PID namespace with inode ino. */
static int count_in_ns(ino_t ino)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        char path[300];
        struct stat st;

        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/ns/pid", e->d_name);
        if (stat(path, &st) == 0 && st.st_ino == ino) {
            uint64_t start;
            char state = '?';

            /* A zombie is dead; the container's init may never reap
               one reparented to it. */
            if (process_proc_stat((pid_t)strtol(e->d_name, NULL, 10), &start,
                                  &state) == 0 &&
                state != 'Z')
                n++;
        }
    }
    closedir(d);
    return n;
}

static ino_t ns_of(pid_t pid)
{
    char path[64];
    struct stat st;

    snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_ino;
}

/* The sandbox's PID namespace, as bwrap recorded it. */
static ino_t status_pid_ns(const char *id)
{
    char *text = read_text(sb_path(id, "status.json"));
    char *p;
    ino_t ino;

    ck_assert_ptr_nonnull(text);
    p = strstr(text, "\"pid-namespace\": ");
    ck_assert_ptr_nonnull(p);
    ino = (ino_t)strtoull(p + strlen("\"pid-namespace\": "), NULL, 10);
    free(text);
    return ino;
}

/* After a remove: nothing of the sandbox is left. */
static void assert_all_gone(const char *id, struct pids p, ino_t ns)
{
    ck_assert_msg(!process_proc_matches(p.pid, p.start),
                  "%s: PID 1 %d survived", id, (int)p.pid);
    ck_assert_msg(!process_proc_matches(p.bwrap, p.bwrap_start),
                  "%s: bwrap %d survived", id, (int)p.bwrap);
    if (ns != 0)
        ck_assert_int_eq(count_in_ns(ns), 0);
    ck_assert_msg(!exists(sb_path(id, "")), "%s: directory left", id);
}

static const char *const cmd_sleep[] = {"sleep", "1000"};

/* ---- tests ---- */

START_TEST(test_lifecycle)
{
    static const char *const cmd[] = {
        "sh", "-c", "echo out; echo err >&2; exec sleep 1000"};
    const struct status_copy *e;
    struct list_result l;
    struct result r;
    struct pids p;
    ino_t ns;
    uint64_t t0;
    char backend[64];
    struct sg_driver_sandbox sb;

    open_driver(DEFAULT_SETTINGS);
    create_ok("sb-life", cmd, 3, NULL);
    e = wait_state("sb-life", SG_DRIVER_STATE_RUNNING);
    ck_assert_str_eq(e->reason, "Started");
    p = record_pids("sb-life");
    ck_assert_int_gt(p.pid, 0);
    ck_assert_int_gt(p.bwrap, 0);
    ck_assert(process_proc_matches(p.pid, p.start));
    ck_assert(process_proc_matches(p.bwrap, p.bwrap_start));
    snprintf(backend, sizeof(backend), "process/%d", (int)p.bwrap);
    ck_assert_str_eq(e->backend, backend);
    ns = ns_of(p.pid);
    wait_file_has(sb_path("sb-life", "stdout.log"), "out\n");
    ck_assert_int_ge(count_in_ns(ns), 2); /* PID 1 and sleep */

    r = get_sb("sb-life");
    ck_assert_int_eq(r.st.state, SG_DRIVER_STATE_RUNNING);
    ck_assert_str_eq(r.st.backend, backend);
    list_all(&l);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_int_eq(l.items[0].state, SG_DRIVER_STATE_RUNNING);

    wait_file_has(sb_path("sb-life", "stdout.log"), "out\n");
    wait_file_has(sb_path("sb-life", "stderr.log"), "err\n");

    /* Idempotent: the same sandbox, not a second one. */
    sb = make_sb("sb-life", cmd, 3, NULL);
    r = create_sb(&sb);
    ck_assert_int_eq(r.result, SG_DRIVER_OK);
    ck_assert_int_eq(r.st.state, SG_DRIVER_STATE_RUNNING);
    ck_assert_str_eq(r.st.backend, backend);
    ck_assert_int_eq(record_pids("sb-life").bwrap, p.bwrap);

    /* sleep dies of SIGTERM at once: no need for the 5 s grace. */
    t0 = now_ms();
    remove_sb("sb-life", 0);
    ck_assert_uint_lt(now_ms() - t0, 4000);
    assert_all_gone("sb-life", p, ns);
    e = last_event("sb-life");
    ck_assert_int_eq(e->state, SG_DRIVER_STATE_GONE);
    /* No FAILED report for a stop that was asked for. */
    for (size_t i = 0; i < n_events; i++)
        ck_assert_int_ne(events[i].state, SG_DRIVER_STATE_FAILED);

    /* Removing again, or something unknown, is GONE. */
    r = remove_sb("sb-life", 0);
    ck_assert_str_eq(r.st.id, "sb-life");
    remove_sb("sb-never", 0);
    r = get_sb("sb-never");
    ck_assert_int_eq(r.st.state, SG_DRIVER_STATE_GONE);
    list_all(&l);
    ck_assert_uint_eq(l.n, 0);
}
END_TEST

START_TEST(test_bad_requests)
{
    static const char *const empty[] = {NULL};
    struct sg_driver_sandbox sb;
    struct result r;

    open_driver(DEFAULT_SETTINGS);
    sb = make_sb("sb-bad", cmd_sleep, 2, "{\"nosuchkey\": 1}");
    r = create_sb(&sb);
    ck_assert_int_eq(r.result, SG_DRIVER_ERR_INVALID);
    ck_assert(!r.has_status);
    ck_assert_str_eq(r.message, "process.nosuchkey: unknown key");

    sb = make_sb("sb-bad", empty, 0, NULL);
    r = create_sb(&sb);
    ck_assert_int_eq(r.result, SG_DRIVER_ERR_INVALID);
    ck_assert_str_eq(r.message, "process: spec.command is required");

    sb = make_sb("../escape", cmd_sleep, 2, NULL);
    r = create_sb(&sb);
    ck_assert_int_eq(r.result, SG_DRIVER_ERR_INVALID);
    ck_assert(!exists(sb_path("sb-bad", "")));
    remove_sb("../escape", 0);

    /* Only one watcher. */
    {
        char *errmsg = NULL;

        ck_assert_int_eq(ops->watch(priv, on_watch, NULL, &errmsg), -1);
        ck_assert_ptr_nonnull(errmsg);
        free(errmsg);
    }
}
END_TEST

START_TEST(test_isolation)
{
    char script[2048];
    const char *cmd[] = {"sh", "-c", script};
    static const char *const env_names[] = {"GREETING", "SG_SECRET"};
    static const char *const env_values[] = {"hello",
                                             "s3cr3t-value-do-not-log"};
    struct sg_driver_sandbox sb;
    struct result r;
    struct pids p;
    char *text;
    char path[256];
    int fd;
    ssize_t n;
    char cmdline[4096];

    snprintf(script, sizeof(script),
             "ls /proc | grep -c '^[0-9]' > /work/pids; "
             "test -e /proc/%d && echo yes > /work/host-pid-visible; "
             "touch /etc/sg-escape 2>/dev/null && echo yes > /work/etc; "
             "touch /sg-escape 2>/dev/null && echo yes > /work/root; "
             "touch /usr/sg-escape 2>/dev/null && echo yes > /work/usr; "
             "test -e %s/sb-iso/sandbox.json && echo yes > /work/state; "
             "ls /run | wc -l > /work/run; "
             "grep -c : /proc/net/dev > /work/ifaces; "
             "hostname > /work/hostname; pwd > /work/pwd; "
             "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status > /work/caps; "
             "echo \"$GREETING\" > /work/env; "
             "echo done > /work/done; exec sleep 1000",
             (int)getpid(), state_dir);
    open_driver(DEFAULT_SETTINGS);
    sb = make_sb("sb-iso", cmd, 3, NULL);
    sb.env_names = env_names;
    sb.env_values = env_values;
    sb.n_env = 2;
    r = create_sb(&sb);
    ck_assert_int_eq(r.result, SG_DRIVER_OK);
    wait_state("sb-iso", SG_DRIVER_STATE_RUNNING);
    wait_file_has(sb_path("sb-iso", "work/done"), "done");

    text = read_text(sb_path("sb-iso", "work/pids"));
    ck_assert_int_le(strtol(text, NULL, 10), 6);
    ck_assert_int_ge(strtol(text, NULL, 10), 2);
    free(text);
    ck_assert(!exists(sb_path("sb-iso", "work/host-pid-visible")));
    ck_assert(!exists("/etc/sg-escape"));
    ck_assert(!exists("/sg-escape"));
    ck_assert(!exists(sb_path("sb-iso", "work/etc")));
    ck_assert(!exists(sb_path("sb-iso", "work/root")));
    ck_assert(!exists(sb_path("sb-iso", "work/usr")));
    /* The driver's state is not visible inside. */
    ck_assert(!exists(sb_path("sb-iso", "work/state")));
    text = read_text(sb_path("sb-iso", "work/run"));
    ck_assert_str_eq(text, "0\n");
    free(text);
    text = read_text(sb_path("sb-iso", "work/ifaces"));
    ck_assert_str_eq(text, "1\n"); /* lo only */
    free(text);
    text = read_text(sb_path("sb-iso", "work/hostname"));
    ck_assert_str_eq(text, "sb-iso\n");
    free(text);
    text = read_text(sb_path("sb-iso", "work/pwd"));
    ck_assert_str_eq(text, "/work\n");
    free(text);
    text = read_text(sb_path("sb-iso", "work/caps"));
    ck_assert_ptr_nonnull(strstr(text, "CapEff:\t0000000000000000"));
    ck_assert_ptr_nonnull(strstr(text, "NoNewPrivs:\t1"));
    free(text);
    text = read_text(sb_path("sb-iso", "work/env"));
    ck_assert_str_eq(text, "hello\n");
    free(text);

    /* Env values are in neither bwrap's command line nor the log. */
    p = record_pids("sb-iso");
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)p.bwrap);
    fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    n = read(fd, cmdline, sizeof(cmdline) - 1);
    close(fd);
    ck_assert_int_gt(n, 0);
    for (ssize_t i = 0; i < n; i++)
        cmdline[i] = cmdline[i] == '\0' ? ' ' : cmdline[i];
    cmdline[n] = '\0';
    ck_assert_ptr_null(strstr(cmdline, "s3cr3t"));
    ck_assert_ptr_nonnull(strstr(cmdline, "--args"));
    /* The mounts are on it: ps tells which sandbox a process is. */
    ck_assert_ptr_nonnull(strstr(cmdline, sb_path("sb-iso", "work")));
    ck_assert_ptr_null(strstr(sg_buf_str(&log_text), "s3cr3t"));
    text = read_text(sb_path("sb-iso", "sandbox.json"));
    ck_assert_ptr_null(strstr(text, "s3cr3t"));
    free(text);

    remove_sb("sb-iso", 0);
    ck_assert_ptr_null(strstr(sg_buf_str(&log_text), "s3cr3t"));
}
END_TEST

static int host_interfaces(void)
{
    char *text = read_text("/proc/net/dev");
    int n = 0;

    for (char *p = text; p != NULL && *p != '\0'; p++)
        n += *p == ':';
    free(text);
    return n;
}

START_TEST(test_network_opt_in)
{
    static const char *const cmd[] = {
        "sh", "-c", "grep -c : /proc/net/dev > /work/ifaces; exec sleep 1000"};
    char want[16];
    struct sg_driver_sandbox sb;
    struct result r;

    open_driver(DEFAULT_SETTINGS);
    create_ok("sb-net", cmd, 3, "{\"network\": true}");
    wait_state("sb-net", SG_DRIVER_STATE_RUNNING);
    snprintf(want, sizeof(want), "%d\n", host_interfaces());
    wait_file_has(sb_path("sb-net", "work/ifaces"), want);
    remove_sb("sb-net", 0);
    close_driver();

    /* Refused when the operator forbids it. */
    open_driver("{\"cgroup\": \"off\", \"allow_network\": false}");
    sb = make_sb("sb-net2", cmd, 3, "{\"network\": true}");
    r = create_sb(&sb);
    ck_assert_int_eq(r.result, SG_DRIVER_ERR_INVALID);
    ck_assert_str_eq(r.message, "process.network: network access is not "
                                "allowed by the operator");
}
END_TEST

START_TEST(test_exit_reported)
{
    static const char *const bye[] = {"sh", "-c", "echo bye; exit 3"};
    static const char *const sig[] = {"sh", "-c", "kill -9 $$"};
    static const char *const missing[] = {"/nonexistent/program"};
    static const char *const bg[] = {"sh", "-c",
                                     "sleep 1000 & echo started; exit 2"};
    const struct status_copy *e;
    char *text;
    ino_t ns;

    open_driver(DEFAULT_SETTINGS);
    create_ok("sb-exit", bye, 3, NULL);
    e = wait_state("sb-exit", SG_DRIVER_STATE_FAILED);
    ck_assert_str_eq(e->reason, "Exited");
    ck_assert_str_eq(e->message, "exited with status 3");
    ck_assert_int_eq(e->exit_code, 3);
    text = read_text(sb_path("sb-exit", "stdout.log"));
    ck_assert_str_eq(text, "bye\n");
    free(text);
    /* get and list agree; the record keeps it. */
    ck_assert_int_eq(get_sb("sb-exit").st.exit_code, 3);
    text = read_text(sb_path("sb-exit", "sandbox.json"));
    ck_assert_ptr_nonnull(strstr(text, "\"reason\":\"Exited\""));
    free(text);

    create_ok("sb-sig", sig, 3, NULL);
    e = wait_state("sb-sig", SG_DRIVER_STATE_FAILED);
    ck_assert_str_eq(e->reason, "Exited");
    ck_assert_str_eq(e->message, "killed by signal 9");
    ck_assert_int_eq(e->exit_code, 137);

    create_ok("sb-missing", missing, 1, NULL);
    e = wait_state("sb-missing", SG_DRIVER_STATE_FAILED);
    ck_assert_int_eq(e->exit_code, 1);
    wait_file_has(sb_path("sb-missing", "stderr.log"), "/nonexistent/program");

    /* What the command left running in the background dies with it. */
    create_ok("sb-bg", bg, 3, NULL);
    e = wait_state("sb-bg", SG_DRIVER_STATE_FAILED);
    ck_assert_int_eq(e->exit_code, 2);
    ns = status_pid_ns("sb-bg");
    ck_assert_int_eq(count_in_ns(ns), 0);

    remove_sb("sb-exit", 0);
    remove_sb("sb-sig", 0);
    remove_sb("sb-missing", 0);
    remove_sb("sb-bg", 0);
    ck_assert(!exists(sb_path("sb-exit", "")));
}
END_TEST

START_TEST(test_log_cap)
{
    static const char *const cmd[] = {
        "sh", "-c",
        "head -c 5000 /dev/zero | tr '\\000' a; echo; echo more; "
        "echo small >&2"};
    static const char *const big[] = {"head", "-c", "3000000", "/dev/urandom"};
    const char *marker = "\n[sandgate: log truncated at 1000 bytes]\n";
    struct stat st;
    char *text;

    open_driver("{\"cgroup\": \"off\", \"log_max_bytes\": 1000}");
    create_ok("sb-cap", cmd, 3, NULL);
    wait_state("sb-cap", SG_DRIVER_STATE_FAILED);
    text = read_text(sb_path("sb-cap", "stdout.log"));
    ck_assert_uint_eq(strlen(text), 1000 + strlen(marker));
    for (size_t i = 0; i < 1000; i++)
        ck_assert_int_eq(text[i], 'a');
    ck_assert_str_eq(text + 1000, marker);
    free(text);
    text = read_text(sb_path("sb-cap", "stderr.log"));
    ck_assert_str_eq(text, "small\n");
    free(text);
    remove_sb("sb-cap", 0);
    close_driver();

    /* Far more than a pipe holds flows through, byte for byte. */
    open_driver(DEFAULT_SETTINGS);
    create_ok("sb-big", big, 4, NULL);
    wait_state("sb-big", SG_DRIVER_STATE_FAILED);
    ck_assert_int_eq(stat(sb_path("sb-big", "stdout.log"), &st), 0);
    ck_assert_int_eq(st.st_size, 3000000);
    remove_sb("sb-big", 0);
}
END_TEST

START_TEST(test_remove_forces_after_grace)
{
    static const char *const cmd[] = {
        "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"};
    static const char *const bgcmd[] = {
        "sh", "-c",
        /* "ready" only once the trap is set: before it, SIGTERM would
           kill the stubborn process at once and the grace go unused. */
        "(trap '' TERM; echo ready; while :; do sleep 0.05; done) & "
        "exec sleep 1000"};
    struct pids p;
    ino_t ns;
    uint64_t t0;
    uint64_t took;

    open_driver(DEFAULT_SETTINGS);
    create_ok("sb-stubborn", cmd, 3, "{\"grace_period_ms\": 400}");
    wait_state("sb-stubborn", SG_DRIVER_STATE_RUNNING);
    wait_file_has(sb_path("sb-stubborn", "stdout.log"), "ready");
    p = record_pids("sb-stubborn");
    ns = ns_of(p.pid);
    t0 = now_ms();
    remove_sb("sb-stubborn", 0); /* 0: the sandbox's own grace */
    took = now_ms() - t0;
    /* The loop's clock may lag a little behind ours. */
    ck_assert_msg(took >= 350 && took < 4000, "took %llu ms",
                  (unsigned long long)took);
    assert_all_gone("sb-stubborn", p, ns);

    /* The caller's grace wins over the sandbox's. */
    create_ok("sb-stubborn2", cmd, 3, "{\"grace_period_ms\": 60000}");
    wait_state("sb-stubborn2", SG_DRIVER_STATE_RUNNING);
    wait_file_has(sb_path("sb-stubborn2", "stdout.log"), "ready");
    p = record_pids("sb-stubborn2");
    ns = ns_of(p.pid);
    t0 = now_ms();
    remove_sb("sb-stubborn2", 300);
    took = now_ms() - t0;
    ck_assert_msg(took >= 250 && took < 4000, "took %llu ms",
                  (unsigned long long)took);
    assert_all_gone("sb-stubborn2", p, ns);

    /* The command obeys SIGTERM at once but leaves a stubborn process:
       that one still gets the grace, then SIGKILL. */
    create_ok("sb-stubborn3", bgcmd, 3, "{\"grace_period_ms\": 400}");
    wait_state("sb-stubborn3", SG_DRIVER_STATE_RUNNING);
    wait_file_has(sb_path("sb-stubborn3", "stdout.log"), "ready");
    p = record_pids("sb-stubborn3");
    ns = ns_of(p.pid);
    t0 = now_ms();
    remove_sb("sb-stubborn3", 0);
    took = now_ms() - t0;
    ck_assert_msg(took >= 350 && took < 4000, "took %llu ms",
                  (unsigned long long)took);
    assert_all_gone("sb-stubborn3", p, ns);
}
END_TEST

/* Processes whose command line holds arg (as one argument). */
static int count_with_arg(const char *arg)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        char path[300];
        char buf[512];
        ssize_t len;
        int fd;

        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        for (ssize_t i = 0; i < len; i += (ssize_t)strlen(buf + i) + 1) {
            if (STREQ(buf + i, arg)) {
                n++;
                break;
            }
        }
    }
    closedir(d);
    return n;
}

START_TEST(test_remove_while_starting)
{
    static const char *const cmd[] = {"sleep", "987.654"};
    struct sg_driver_sandbox sb = make_sb("sb-quick", cmd, 2, NULL);
    struct result c = {0};
    struct result r = {0};
    struct result r2 = {0};
    int rc;

    open_driver(DEFAULT_SETTINGS);
    /* Remove before create's answer and before bwrap reported the
       sandbox's PID 1; a second remove joins the first. */
    in_op = true;
    rc = ops->create(priv, &sb, on_done, &c);
    ck_assert_int_eq(rc, 0);
    rc = ops->remove(priv, "sb-quick", "", 0, on_done, &r);
    ck_assert_int_eq(rc, 0);
    rc = ops->remove(priv, "sb-quick", "", 0, on_done, &r2);
    ck_assert_int_eq(rc, 0);
    in_op = false;
    wait_result(&c);
    wait_result(&r);
    wait_result(&r2);
    ck_assert_int_eq(c.result, SG_DRIVER_OK);
    ck_assert_int_eq(r.st.state, SG_DRIVER_STATE_GONE);
    ck_assert_int_eq(r2.st.state, SG_DRIVER_STATE_GONE);
    ck_assert(!exists(sb_path("sb-quick", "")));
    /* Nothing of it is left behind. */
    ck_assert_int_eq(count_with_arg("987.654"), 0);
}
END_TEST

START_TEST(test_readiness_gates_running)
{
    static const char *const cmd[] = {
        "sh", "-c", "sleep 0.7; touch /work/ready; exec sleep 1000"};
    char config[512];
    const struct status_copy *e;
    struct result r;
    uint64_t t0 = now_ms();

    /* The readiness command sees the sandbox's /work, and not the
       driver's state either. */
    snprintf(config, sizeof(config),
             "{\"readiness\": {\"command\": [\"sh\", \"-c\", \"test -f "
             "/work/ready && test ! -e %s/sb-ready\"],"
             " \"period_ms\": 50, \"timeout_ms\": 2000}}",
             state_dir);
    open_driver(DEFAULT_SETTINGS);
    create_ok("sb-ready", cmd, 3, config);
    e = wait_state("sb-ready", SG_DRIVER_STATE_PENDING);
    run_for(300);
    r = get_sb("sb-ready");
    ck_assert_int_eq(r.st.state, SG_DRIVER_STATE_PENDING);
    ck_assert_str_eq(r.st.reason, "WaitingForReadiness");
    e = wait_state("sb-ready", SG_DRIVER_STATE_RUNNING);
    ck_assert_str_eq(e->reason, "Started");
    ck_assert_uint_ge(now_ms() - t0, 700);
    remove_sb("sb-ready", 0);
}
END_TEST

START_TEST(test_readiness_shares_network)
{
    /* The server listens on the sandbox's own loopback: only a probe in
       the sandbox's network namespace can reach it. */
    static const char *const cmd[] = {"/usr/bin/python3", "-m",
                                      "http.server",      "--bind",
                                      "127.0.0.1",        "18631"};
    const char *config =
        "{\"readiness\": {\"command\": [\"/usr/bin/python3\", \"-c\","
        " \"import socket; socket.create_connection(('127.0.0.1', 18631), "
        "1)\"],"
        " \"period_ms\": 100, \"timeout_ms\": 3000}}";

    if (access("/usr/bin/python3", X_OK) < 0)
        return; /* nothing to serve with */
    open_driver(DEFAULT_SETTINGS);
    create_ok("sb-http", cmd, 6, config);
    wait_state("sb-http", SG_DRIVER_STATE_RUNNING);
    remove_sb("sb-http", 0);
}
END_TEST

START_TEST(test_readiness_failure)
{
    const char *config = "{\"readiness\": {\"command\": [\"false\"],"
                         " \"period_ms\": 20, \"failure_threshold\": 3}}";
    const struct status_copy *e;
    struct pids p;

    open_driver(DEFAULT_SETTINGS);
    create_ok("sb-never", cmd_sleep, 2, config);
    e = wait_state("sb-never", SG_DRIVER_STATE_FAILED);
    ck_assert_str_eq(e->reason, "ReadinessFailed");
    ck_assert_str_eq(e->message, "the readiness command failed 3 times in a "
                                 "row (last: exited with status 1)");
    p = record_pids("sb-never");
    /* Stopped, and still FAILED with that reason afterwards. */
    run_for(300);
    ck_assert(!process_proc_matches(p.pid, p.start));
    e = last_event("sb-never");
    ck_assert_str_eq(e->reason, "ReadinessFailed");
    ck_assert_str_eq(get_sb("sb-never").st.reason, "ReadinessFailed");
    remove_sb("sb-never", 0);
}
END_TEST

START_TEST(test_limits)
{
    static const char *const cmd[] = {
        "sh", "-c", "ulimit -n; ulimit -v; ulimit -t; ulimit -f"};
    const char *config =
        "{\"limits\": {\"open_files\": 64,"
        " \"memory_bytes\": 268435456,"
        " \"cpu_seconds\": 100, \"file_size_bytes\": 1048576}}";
    char *text;

    open_driver("{\"cgroup\": \"off\", \"limits\": {\"open_files\": 128}}");
    create_ok("sb-lim", cmd, 3, config);
    wait_state("sb-lim", SG_DRIVER_STATE_FAILED);
    text = read_text(sb_path("sb-lim", "stdout.log"));
    /* ulimit -v is in KiB, -f in 512-byte blocks (dash). */
    ck_assert_str_eq(text, "64\n262144\n100\n2048\n");
    free(text);
    remove_sb("sb-lim", 0);

    /* Without a block the operator's defaults apply. */
    create_ok("sb-lim2", cmd, 3, NULL);
    wait_state("sb-lim2", SG_DRIVER_STATE_FAILED);
    text = read_text(sb_path("sb-lim2", "stdout.log"));
    ck_assert_ptr_nonnull(strstr(text, "128\n"));
    free(text);
    remove_sb("sb-lim2", 0);
}
END_TEST

START_TEST(test_restart_same_process)
{
    static const char *const quick[] = {"sh", "-c", "sleep 0.3; exit 4"};
    struct list_result l;
    const struct status_copy *it;
    struct pids p;
    struct pids q;
    ino_t ns;

    open_driver(DEFAULT_SETTINGS);
    create_ok("sb-keep", cmd_sleep, 2, NULL);
    create_ok("sb-zombie", quick, 3, NULL);
    wait_state("sb-keep", SG_DRIVER_STATE_RUNNING);
    wait_state("sb-zombie", SG_DRIVER_STATE_RUNNING);
    p = record_pids("sb-keep");
    q = record_pids("sb-zombie");
    close_driver();
    /* Down: sb-zombie ends, and stays a zombie of this process. */
    usleep(800 * 1000);
    ck_assert(process_proc_matches(p.pid, p.start));

    n_events = 0;
    open_driver(DEFAULT_SETTINGS);
    list_all(&l);
    ck_assert_uint_eq(l.n, 2);
    it = list_find(&l, "sb-keep");
    ck_assert_ptr_nonnull(it);
    ck_assert_int_eq(it->state, SG_DRIVER_STATE_RUNNING);
    it = list_find(&l, "sb-zombie");
    ck_assert_ptr_nonnull(it);
    ck_assert_int_eq(it->state, SG_DRIVER_STATE_FAILED);
    ck_assert_str_eq(it->reason, "Lost");
    ck_assert_str_eq(it->message, "process exited while the gateway was down");
    ck_assert_int_eq(it->exit_code, 4);
    /* The zombie was reaped. */
    ck_assert_int_eq(waitpid(q.bwrap, NULL, WNOHANG), -1);

    ns = ns_of(p.pid);
    remove_sb("sb-keep", 0);
    assert_all_gone("sb-keep", p, ns);
    remove_sb("sb-zombie", 0);
}
END_TEST

/* The first gateway, in a child process that then exits. */
static int first_gateway(void)
{
    static const char *const keep[] = {
        "sh", "-c",
        "echo before; while [ ! -e /work/say ]; do sleep 0.05; done; "
        "echo during; exec sleep 1000"};
    static const char *const later[] = {
        "sh", "-c", "while [ ! -e /work/go ]; do sleep 0.05; done; exit 5"};
    const char *slow = "{\"readiness\": {\"command\": [\"test\", \"-f\","
                       " \"/work/ready\"], \"period_ms\": 50}}";
    static const char *const lost[] = {"sh", "-c", "echo up; exec sleep 1000"};
    const char *ids[] = {"sb-keep", "sb-lost", "sb-later"};

    open_driver(DEFAULT_SETTINGS);
    create_ok("sb-keep", keep, 3, NULL);
    create_ok("sb-lost", lost, 3, NULL);
    create_ok("sb-later", later, 3, NULL);
    create_ok("sb-slow", cmd_sleep, 2, slow);
    for (size_t i = 0; i < SG_N_ELEMENTS(ids); i++)
        wait_state(ids[i], SG_DRIVER_STATE_RUNNING);
    wait_state("sb-slow", SG_DRIVER_STATE_PENDING);
    wait_file_has(sb_path("sb-keep", "stdout.log"), "before\n");
    /* bwrap records an exit code only for a command it got to exec. */
    wait_file_has(sb_path("sb-lost", "stdout.log"), "up\n");
    close_driver();
    return 0;
}

START_TEST(test_restart_new_gateway)
{
    struct list_result l;
    const struct status_copy *it;
    const struct status_copy *e;
    struct pids lost;
    struct pids keep;
    pid_t child;
    int status;
    const char *ids[] = {"sb-keep", "sb-lost", "sb-later", "sb-slow"};

    /* The sandboxes' bwrap processes must not be our children: they are
       made by a child that exits, as after a real gateway restart. */
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        ck_assert_int_eq(uv_loop_fork(&loop), 0);
        ck_assert_int_eq(uv_timer_init(&loop, &tick), 0);
        _exit(first_gateway());
    }
    ck_assert_int_eq(uv_timer_init(&loop, &tick), 0);
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "first gateway failed (status %d)", status);

    /* While no gateway runs: one sandbox dies, one writes output. */
    lost = record_pids("sb-lost");
    keep = record_pids("sb-keep");
    ck_assert(process_proc_matches(lost.pid, lost.start));
    ck_assert_int_eq(kill(lost.pid, SIGKILL), 0);
    touch(sb_path("sb-keep", "work/say"));
    for (int i = 0;
         i < 200 && process_proc_matches(lost.bwrap, lost.bwrap_start); i++)
        usleep(10 * 1000);
    usleep(200 * 1000);
    open_driver(DEFAULT_SETTINGS);
    list_all(&l);
    ck_assert_uint_eq(l.n, 4);
    it = list_find(&l, "sb-keep");
    ck_assert_int_eq(it->state, SG_DRIVER_STATE_RUNNING);
    it = list_find(&l, "sb-later");
    ck_assert_int_eq(it->state, SG_DRIVER_STATE_RUNNING);
    it = list_find(&l, "sb-slow");
    ck_assert_int_eq(it->state, SG_DRIVER_STATE_PENDING);
    it = list_find(&l, "sb-lost");
    ck_assert_int_eq(it->state, SG_DRIVER_STATE_FAILED);
    ck_assert_str_eq(it->reason, "Lost");
    ck_assert_str_eq(it->message, "process exited while the gateway was down");
    ck_assert_int_eq(it->exit_code, 137);

    /* Output written while the gateway was down is captured now. */
    wait_file_has(sb_path("sb-keep", "stdout.log"), "before\nduring\n");

    /* An adopted sandbox's exit is reported, status from bwrap's file. */
    touch(sb_path("sb-later", "work/go"));
    e = wait_state("sb-later", SG_DRIVER_STATE_FAILED);
    ck_assert_str_eq(e->reason, "Exited");
    ck_assert_int_eq(e->exit_code, 5);
    ck_assert_str_eq(e->message, "exited with status 5");

    /* Readiness goes on after adoption. */
    touch(sb_path("sb-slow", "work/ready"));
    wait_state("sb-slow", SG_DRIVER_STATE_RUNNING);

    {
        ino_t ns = ns_of(keep.pid);

        remove_sb("sb-keep", 0);
        assert_all_gone("sb-keep", keep, ns);
    }
    for (size_t i = 1; i < SG_N_ELEMENTS(ids); i++)
        remove_sb(ids[i], 0);
    list_all(&l);
    ck_assert_uint_eq(l.n, 0);
}
END_TEST

START_TEST(test_broken_record)
{
    struct list_result l;
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/sb-broken", state_dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/sb-broken/sandbox.json", state_dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"id\": 1", f);
    fclose(f);
    /* Not a sandbox: ignored. */
    snprintf(path, sizeof(path), "%s/.hidden", state_dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);

    open_driver(DEFAULT_SETTINGS);
    list_all(&l);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_str_eq(l.items[0].id, "sb-broken");
    ck_assert_int_eq(l.items[0].state, SG_DRIVER_STATE_FAILED);
    ck_assert_str_eq(l.items[0].reason, "Lost");
    remove_sb("sb-broken", 0);
    ck_assert(!exists(sb_path("sb-broken", "")));
}
END_TEST

static bool cgroup2_writable(const char *dir)
{
    struct statfs sf;

    return statfs(dir, &sf) == 0 && sf.f_type == 0x63677270 &&
           access(dir, W_OK) == 0;
}

START_TEST(test_cgroup)
{
    static const char *const cmd[] = {
        "sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"};
    char parent[128];
    char settings[256];
    char want[200];
    char path[300];
    char *text;
    struct pids p;
    ino_t ns;

    if (!cgroup2_writable("/sys/fs/cgroup/unified") &&
        !cgroup2_writable("/sys/fs/cgroup")) {
        fprintf(stderr, "test_cgroup: no writable cgroup v2; skipped\n");
        return;
    }
    snprintf(parent, sizeof(parent), "%s/sgtest-%d",
             cgroup2_writable("/sys/fs/cgroup/unified")
                 ? "/sys/fs/cgroup/unified"
                 : "/sys/fs/cgroup",
             (int)getpid());
    ck_assert_int_eq(mkdir(parent, 0755), 0);
    snprintf(settings, sizeof(settings),
             "{\"cgroup\": \"%s\", \"limits\": {\"pids\": 50}}", parent);
    open_driver(settings);
    create_ok("sb-cg", cmd, 3, "{\"grace_period_ms\": 200}");
    wait_state("sb-cg", SG_DRIVER_STATE_RUNNING);
    p = record_pids("sb-cg");
    ns = ns_of(p.pid);
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)p.pid);
    text = read_text(path);
    snprintf(want, sizeof(want), "0::%s/sandgate-sb-cg\n",
             parent + strlen(STRPREFIX(parent, "/sys/fs/cgroup/unified")
                                 ? "/sys/fs/cgroup/unified"
                                 : "/sys/fs/cgroup"));
    ck_assert_msg(strstr(text, want) != NULL, "%s lacks %s", text, want);
    free(text);
    snprintf(path, sizeof(path), "%s/sandgate-sb-cg/pids.max", parent);
    if (exists(path)) {
        text = read_text(path);
        ck_assert_str_eq(text, "50\n");
        free(text);
    }
    remove_sb("sb-cg", 0);
    assert_all_gone("sb-cg", p, ns);
    snprintf(path, sizeof(path), "%s/sandgate-sb-cg", parent);
    ck_assert(!exists(path));
    close_driver();
    ck_assert_int_eq(rmdir(parent), 0);
}
END_TEST

START_TEST(test_launch_waits_for_go)
{
    static const char *const cmd[] = {"true"};
    struct process_limits limits = {0};
    struct process_launch l = {0};
    struct sg_error err = SG_ERROR_INIT;
    char work[256];
    int sync[2];
    int status;
    pid_t pid;

    snprintf(work, sizeof(work), "%s/work", state_dir);
    ck_assert_int_eq(mkdir(work, 0700), 0);
    ck_assert_int_eq(pipe2(sync, O_CLOEXEC), 0);
    l.bwrap = BWRAP;
    l.rootfs = "/";
    l.work_dir = work;
    l.chdir = "/work";
    l.argv = cmd;
    l.argc = 1;
    l.limits = &limits;
    l.stdout_fd = -1;
    l.stderr_fd = -1;
    l.status_fd = -1;
    l.cgroup_procs_fd = -1;
    l.netns_fd = -1;
    l.sync_fd = sync[0];
    l.sync_wfd = sync[1];
    ck_assert_msg(process_launch_start(&l, &pid, &err) == 0, "%s", err.message);
    close(sync[0]);
    /* The gateway "dies" before giving the go: the child must not wait
       for ever (holding the gateway's descriptors), nor run bwrap. */
    close(sync[1]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 127);

    /* With the go it runs. */
    ck_assert_int_eq(pipe2(sync, O_CLOEXEC), 0);
    l.sync_fd = sync[0];
    l.sync_wfd = sync[1];
    ck_assert_int_eq(process_launch_start(&l, &pid, &err), 0);
    close(sync[0]);
    ck_assert_int_eq(write(sync[1], "x", 1), 1);
    close(sync[1]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* Root-only files outside the sandbox, for the host identity test. */
static char secret_dir[64];

static void write_file(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "topsecret\n", 10), 10);
    close(fd);
}

/* secret_dir (0755) holds key (0600) and private/ (0700) holds key
   (0644): one protected by its own mode, one by its directory's. */
static void make_secrets(void)
{
    char path[128];

    snprintf(secret_dir, sizeof(secret_dir), "/var/tmp/sg-test-secret-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(secret_dir));
    ck_assert_int_eq(chmod(secret_dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/key", secret_dir);
    write_file(path, 0600);
    snprintf(path, sizeof(path), "%s/private", secret_dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/private/key", secret_dir);
    write_file(path, 0644);
}

static void remove_secrets(void)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/private/key", secret_dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/private", secret_dir);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/key", secret_dir);
    unlink(path);
    rmdir(secret_dir);
}

START_TEST(test_host_user)
{
    char script[1024];
    char config[256];
    const char *cmd[] = {"sh", "-c", script};
    struct stat st;
    char *text;

    if (geteuid() != 0) {
        fprintf(stderr, "test_host_user: not root; skipped\n");
        return;
    }
    make_secrets();
    /* Root-only files are unreadable; the directories above the state
       directory show nothing (0700 on the host: base_dir); /work is the
       sandbox's to write. */
    snprintf(script, sizeof(script),
             "id -u; id -g; id -G; "
             "if cat %s/key; then echo LEAK; else echo denied; fi; "
             "if cat %s/private/key; then echo LEAK; else echo denied; fi; "
             "ls -A %s | wc -l; "
             "echo written > /work/file && cat /work/file; "
             "mkdir /work/sub && echo made; exec sleep 1000",
             secret_dir, secret_dir, base_dir);
    /* The readiness command runs as the same user. */
    snprintf(config, sizeof(config),
             "{\"readiness\": {\"command\": [\"sh\", \"-c\", "
             "\"test $(id -u) = 65534 && test -f /work/file\"],"
             " \"period_ms\": 50, \"timeout_ms\": 2000}}");
    open_driver(DEFAULT_SETTINGS);
    create_ok("sb-user", cmd, 3, config);
    wait_state("sb-user", SG_DRIVER_STATE_RUNNING);
    wait_file_has(sb_path("sb-user", "stdout.log"), "made\n");
    text = read_text(sb_path("sb-user", "stdout.log"));
    ck_assert_str_eq(text, "65534\n65534\n65534\ndenied\ndenied\n0\n"
                           "written\nmade\n");
    free(text);
    text = read_text(sb_path("sb-user", "stderr.log"));
    ck_assert_ptr_nonnull(strstr(text, "Permission denied"));
    ck_assert_ptr_null(strstr(text, "topsecret"));
    free(text);
    /* On the host, /work and what the sandbox made are its uid's. */
    ck_assert_int_eq(stat(sb_path("sb-user", "work"), &st), 0);
    ck_assert_uint_eq(st.st_uid, 65534);
    ck_assert_uint_eq(st.st_gid, 65534);
    ck_assert_int_eq(stat(sb_path("sb-user", "work/file"), &st), 0);
    ck_assert_uint_eq(st.st_uid, 65534);
    /* The mount namespace trick left nothing behind on the host. */
    ck_assert_int_eq(stat(base_dir, &st), 0);
    ck_assert_uint_eq(st.st_uid, 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0700);
    ck_assert_int_eq(access(sb_path("sb-user", "sandbox.json"), F_OK), 0);
    /* The gateway still removes it (root signals uid 65534). */
    remove_sb("sb-user", 0);
    ck_assert(!exists(sb_path("sb-user", "")));
    remove_secrets();
}
END_TEST

START_TEST(test_host_user_explicit)
{
    static const char *const cmd[] = {"sh", "-c", "id -u; id -g; id -G"};
    char *text;

    if (geteuid() != 0) {
        fprintf(stderr, "test_host_user_explicit: not root; skipped\n");
        return;
    }
    open_driver("{\"cgroup\": \"off\", \"user\": \"4242:4343\"}");
    create_ok("sb-uid", cmd, 3, NULL);
    wait_state("sb-uid", SG_DRIVER_STATE_FAILED);
    text = read_text(sb_path("sb-uid", "stdout.log"));
    ck_assert_str_eq(text, "4242\n4343\n4343\n");
    free(text);
    remove_sb("sb-uid", 0);
    ck_assert_ptr_null(strstr(sg_buf_str(&log_text), "host root"));

    /* "0:0" keeps the old behaviour, with a warning at open. */
    close_driver();
    open_driver("{\"cgroup\": \"off\", \"user\": \"0:0\"}");
    ck_assert_ptr_nonnull(strstr(sg_buf_str(&log_text), "host root"));
    create_ok("sb-root", cmd, 3, NULL);
    wait_state("sb-root", SG_DRIVER_STATE_FAILED);
    text = read_text(sb_path("sb-root", "stdout.log"));
    ck_assert_str_eq(text, "0\n0\n0\n");
    free(text);
    remove_sb("sb-root", 0);
}
END_TEST

/* ---- credential bindings ---- */

/* Markers that must show nowhere but in the sandbox. */
#define ENV_SECRET "envS3cret-Zq81"
#define GIT_SECRET "gitS3cret-Wp47"
#define SSH_SECRET "sshS3cret-Kd05"

static const uint8_t env_material[] = ENV_SECRET "\x01 with\nnewline";
/* Bytes that are not text, a NUL among them, around the marker. */
static const uint8_t git_material[] = "\x00\xff\x01" GIT_SECRET "\n\x7f";
static const uint8_t ssh_material[] = SSH_SECRET "\x00tail\x80";

/* The lowercase hex of n bytes, as od -tx1 shows them (without spaces). */
static void to_hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* The hex digits of an od -An -tx1 dump, whitespace dropped. */
static char *read_hex(const char *path)
{
    char *text = read_text(path);
    size_t k = 0;

    ck_assert_msg(text != NULL, "%s missing", path);
    for (size_t i = 0; text[i] != '\0'; i++) {
        if (text[i] != ' ' && text[i] != '\n')
            text[k++] = text[i];
    }
    text[k] = '\0';
    return text;
}

static void assert_hex(const char *path, const uint8_t *p, size_t n)
{
    char want[256];
    char *got = read_hex(path);

    ck_assert_uint_lt(2 * n, sizeof(want));
    to_hex(p, n, want);
    ck_assert_str_eq(got, want);
    free(got);
}

/* Whether needle occurs in the first MiB of path (FIFOs read as empty). */
static bool raw_file_holds(const char *path, const char *needle)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    static char data[1 << 20];
    ssize_t len;

    if (fd < 0)
        return false;
    len = read(fd, data, sizeof(data));
    close(fd);
    return len > 0 && memmem(data, (size_t)len, needle, strlen(needle)) != NULL;
}

/* No regular file under dir (but skip) holds needle. */
static void assert_tree_clean(const char *dir, const char *skip,
                              const char *needle)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    ck_assert_ptr_nonnull(d);
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        char path[600];
        struct stat st;

        if (STREQ(e->d_name, ".") || STREQ(e->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (STREQ(path, skip) || lstat(path, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode))
            assert_tree_clean(path, skip, needle);
        else if (S_ISREG(st.st_mode))
            ck_assert_msg(!raw_file_holds(path, needle), "%s holds %s", path,
                          needle);
    }
    closedir(d);
}

static bool proc_holds(pid_t pid, const char *file, const char *needle)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    ck_assert_msg(access(path, R_OK) == 0, "%s unreadable", path);
    return raw_file_holds(path, needle);
}

/* How many of our descriptors are memfds whose name starts with name. */
static int count_memfds(const char *name)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    char want[64];
    int n = 0;

    ck_assert_ptr_nonnull(d);
    snprintf(want, sizeof(want), "/memfd:%s", name);
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        char link[256];
        ssize_t len;

        len = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
        if (len <= 0)
            continue;
        link[len] = '\0';
        n += STRPREFIX(link, want);
    }
    closedir(d);
    return n;
}

/* The oldest child of pid. */
static pid_t first_child(pid_t pid)
{
    char path[64];
    char *text;
    pid_t child;

    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid,
             (int)pid);
    text = read_text(path);
    ck_assert_ptr_nonnull(text);
    child = (pid_t)strtol(text, NULL, 10);
    free(text);
    ck_assert_int_gt(child, 0);
    return child;
}

START_TEST(test_credentials_delivered)
{
    static const char *const cmd[] = {
        "sh", "-c",
        "printf %s \"$SG_API_TOKEN\" | od -An -tx1 -v > /work/env.hex; "
        "od -An -tx1 -v /run/secrets/git > /work/git.hex; "
        "od -An -tx1 -v /tmp/keys/id > /work/ssh.hex; "
        "stat -c '%a %u %g' /run/secrets/git /tmp/keys/id > /work/stat; "
        "id -u > /work/uid; "
        "if echo x >> /run/secrets/git; then echo writable; fi > /work/ro; "
        "ls /proc/$$/fd > /work/fds; "
        "echo done > /work/done; exec sleep 1000"};
    const struct sg_driver_credential creds[] = {
        {.name = "api",
         .delivery = SG_DRIVER_DELIVER_ENV,
         .target = "SG_API_TOKEN",
         .material = env_material,
         .material_len = sizeof(env_material) - 1},
        {.name = "git",
         .delivery = SG_DRIVER_DELIVER_FILE,
         .target = "/run/secrets/git",
         .material = git_material,
         .material_len = sizeof(git_material) - 1},
        {.name = "ssh",
         .delivery = SG_DRIVER_DELIVER_FILE,
         .target = "/tmp/keys/id",
         .material = ssh_material,
         .material_len = sizeof(ssh_material) - 1},
    };
    static const char *const secrets[] = {ENV_SECRET, GIT_SECRET, SSH_SECRET};
    static const uint8_t other[] = "otherS3cret-Jx22";
    const struct sg_driver_credential again[] = {
        {.name = "git",
         .delivery = SG_DRIVER_DELIVER_FILE,
         .target = "/run/secrets/git",
         .material = other,
         .material_len = sizeof(other) - 1},
    };
    unsigned uid = geteuid() == 0 ? 65534 : (unsigned)geteuid();
    struct sg_driver_sandbox sb;
    char want[128];
    char work[512];
    struct result r;
    struct pids p;
    char *text;

    ck_assert(ops->caps & SG_DRIVER_CAP_CREDENTIALS);
    open_driver(DEFAULT_SETTINGS);
    sb = make_sb("sb-cred", cmd, 3, NULL);
    sb.credentials = creds;
    sb.n_credentials = SG_N_ELEMENTS(creds);
    r = create_sb(&sb);
    ck_assert_msg(r.result == SG_DRIVER_OK, "create: %s", r.message);
    /* The gateway keeps no memfd open (the sandbox has its copies). */
    ck_assert_int_eq(count_memfds("sandgate-"), 0);
    wait_state("sb-cred", SG_DRIVER_STATE_RUNNING);
    wait_file_has(sb_path("sb-cred", "work/done"), "done");

    /* Inside: the exact bytes, 0400 and the sandbox user's. */
    assert_hex(sb_path("sb-cred", "work/env.hex"), env_material,
               sizeof(env_material) - 1);
    assert_hex(sb_path("sb-cred", "work/git.hex"), git_material,
               sizeof(git_material) - 1);
    assert_hex(sb_path("sb-cred", "work/ssh.hex"), ssh_material,
               sizeof(ssh_material) - 1);
    text = read_text(sb_path("sb-cred", "work/uid"));
    snprintf(want, sizeof(want), "%u\n", uid);
    ck_assert_str_eq(text, want);
    free(text);
    text = read_text(sb_path("sb-cred", "work/stat"));
    snprintf(want, sizeof(want), "400 %u %u\n400 %u %u\n", uid, uid, uid, uid);
    ck_assert_str_eq(text, want);
    free(text);
    text = read_text(sb_path("sb-cred", "work/ro"));
    ck_assert_str_eq(text, "");
    free(text);
    /* bwrap closed the memfds it copied: the sandbox inherits none. */
    text = read_text(sb_path("sb-cred", "work/fds"));
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, "\n5\n") == NULL &&
                      strstr(text, "\n6\n") == NULL,
                  "descriptors: %s", text);
    free(text);

    /* Outside: not on bwrap's command line (the paths are), not in its
       environment, not in the driver's files, not in the log. */
    p = record_pids("sb-cred");
    ck_assert(proc_holds(p.bwrap, "cmdline", "--ro-bind-data"));
    ck_assert(proc_holds(p.bwrap, "cmdline", "/run/secrets/git"));
    snprintf(work, sizeof(work), "%s/sb-cred/work", state_dir);
    for (size_t i = 0; i < SG_N_ELEMENTS(secrets); i++) {
        ck_assert_msg(!proc_holds(p.bwrap, "cmdline", secrets[i]),
                      "bwrap's command line holds %s", secrets[i]);
        ck_assert_msg(!proc_holds(p.bwrap, "environ", secrets[i]),
                      "bwrap's environment holds %s", secrets[i]);
        assert_tree_clean(state_dir, work, secrets[i]);
        ck_assert_ptr_null(strstr(sg_buf_str(&log_text), secrets[i]));
    }
    /* The command (bwrap's init's child) has it: the scan above could
       find it. */
    ck_assert(proc_holds(first_child(p.pid), "environ", ENV_SECRET));

    /* Created again: the same sandbox, the new material ignored. */
    sb.credentials = again;
    sb.n_credentials = SG_N_ELEMENTS(again);
    r = create_sb(&sb);
    ck_assert_int_eq(r.result, SG_DRIVER_OK);
    ck_assert_int_eq(r.st.state, SG_DRIVER_STATE_RUNNING);
    ck_assert_int_eq(record_pids("sb-cred").bwrap, p.bwrap);
    assert_tree_clean(state_dir, work, "otherS3cret");

    remove_sb("sb-cred", 0);
    for (size_t i = 0; i < SG_N_ELEMENTS(secrets); i++)
        ck_assert_ptr_null(strstr(sg_buf_str(&log_text), secrets[i]));
}
END_TEST

struct cred_case {
    const char *target;
    enum sg_driver_delivery delivery;
    bool outside;        /* refused as not in the sandbox's tmpfs */
    const char *message; /* else: NULL when accepted, or the refusal */
};

static const struct cred_case cred_cases[] = {
    {"/etc/x", SG_DRIVER_DELIVER_FILE, true, NULL},
    {"/work/token", SG_DRIVER_DELIVER_FILE, true, NULL},
    {"/run", SG_DRIVER_DELIVER_FILE, true, NULL},
    {"/run/", SG_DRIVER_DELIVER_FILE, true, NULL},
    {"/tmp/", SG_DRIVER_DELIVER_FILE, true, NULL},
    {"/runner/x", SG_DRIVER_DELIVER_FILE, true, NULL},
    {"/tmp/../etc/x", SG_DRIVER_DELIVER_FILE, true, NULL},
    {"/run/a/./b", SG_DRIVER_DELIVER_FILE, true, NULL},
    {"/run//a", SG_DRIVER_DELIVER_FILE, true, NULL},
    {"/run/a/", SG_DRIVER_DELIVER_FILE, true, NULL},
    {"run/a", SG_DRIVER_DELIVER_FILE, true, NULL},
    {"/run/secrets/git", SG_DRIVER_DELIVER_FILE, false, NULL},
    {"/tmp/a/b/c", SG_DRIVER_DELIVER_FILE, false, NULL},
    {"/run/.git-credentials", SG_DRIVER_DELIVER_FILE, false, NULL},
    {"GIT_TOKEN", SG_DRIVER_DELIVER_ENV, false, NULL},
    {"A=B", SG_DRIVER_DELIVER_ENV, false,
     "process: credentials[0] (git): env name 'A=B' is invalid or already "
     "set"},
    {"", SG_DRIVER_DELIVER_FILE, false,
     "process: credentials[0] (git): target is missing or too long"},
    {"/run/x", (enum sg_driver_delivery)7, false,
     "process: credentials[0] (git): unknown delivery 7"},
};

/* config_validate of one binding; NULL when accepted, else the message. */
static char *validate_creds(const struct sg_driver_credential *c, size_t n,
                            const char *config)
{
    struct sg_driver_sandbox sb = make_sb(NULL, cmd_sleep, 2, config);
    char *errmsg = NULL;
    int rc;

    sb.credentials = c;
    sb.n_credentials = n;
    rc = ops->config_validate(priv, &sb, &errmsg);
    ck_assert_int_eq(rc == 0, errmsg == NULL);
    return errmsg;
}

START_TEST(test_credentials_targets)
{
    const struct cred_case *tc = &cred_cases[_i];
    struct sg_driver_credential c = {
        .name = "git", .delivery = tc->delivery, .target = tc->target};
    char want[256];
    char *msg;

    open_driver(DEFAULT_SETTINGS);
    msg = validate_creds(&c, 1, NULL);
    if (tc->outside) {
        snprintf(want, sizeof(want),
                 "process: credentials[0] (git): file '%s' must be under "
                 "/run or /tmp, the sandbox's own tmpfs",
                 tc->target);
        ck_assert_str_eq(msg != NULL ? msg : "(accepted)", want);
    } else if (tc->message != NULL) {
        ck_assert_str_eq(msg != NULL ? msg : "(accepted)", tc->message);
    } else {
        ck_assert_msg(msg == NULL, "%s refused: %s", tc->target, msg);
    }
    free(msg);
}
END_TEST

START_TEST(test_credentials_refused)
{
    static const uint8_t nul_material[] = "nulS3cret\0after";
    static const char *const env_names[] = {"TAKEN"};
    static const char *const env_values[] = {"v"};
    struct sg_driver_credential many[PROCESS_MAX_CREDENTIALS + 1];
    struct sg_driver_credential two[2] = {
        {.name = "a", .delivery = SG_DRIVER_DELIVER_FILE, .target = "/run/a"},
        {.name = "b", .delivery = SG_DRIVER_DELIVER_FILE, .target = "/run/a/b"},
    };
    struct sg_driver_credential c = {
        .name = "git", .delivery = SG_DRIVER_DELIVER_FILE, .target = "/etc/x"};
    char names[PROCESS_MAX_CREDENTIALS + 1][16];
    struct sg_driver_sandbox sb;
    struct result r;
    char *msg = NULL;

    open_driver(DEFAULT_SETTINGS);
    /* create checks the same, and makes nothing. */
    sb = make_sb("sb-credbad", cmd_sleep, 2, NULL);
    sb.credentials = &c;
    sb.n_credentials = 1;
    r = create_sb(&sb);
    ck_assert_int_eq(r.result, SG_DRIVER_ERR_INVALID);
    ck_assert_str_eq(r.message,
                     "process: credentials[0] (git): file '/etc/x' must be "
                     "under /run or /tmp, the sandbox's own tmpfs");
    ck_assert(!exists(sb_path("sb-credbad", "")));

    /* An env value cannot hold a NUL; the message does not show it. */
    c.delivery = SG_DRIVER_DELIVER_ENV;
    c.target = "GIT_TOKEN";
    c.material = nul_material;
    c.material_len = sizeof(nul_material) - 1;
    r = create_sb(&sb);
    ck_assert_int_eq(r.result, SG_DRIVER_ERR_INVALID);
    ck_assert_str_eq(r.message, "process: credentials[0] (git): an "
                                "environment variable cannot hold a NUL "
                                "byte");
    ck_assert(!exists(sb_path("sb-credbad", "")));
    ck_assert_ptr_null(strstr(sg_buf_str(&log_text), "nulS3cret"));

    /* Taken env names, clashing files, too many. */
    c.material = NULL;
    c.material_len = 0;
    c.target = "TAKEN";
    sb = make_sb(NULL, cmd_sleep, 2, NULL);
    sb.env_names = env_names;
    sb.env_values = env_values;
    sb.n_env = 1;
    sb.credentials = &c;
    sb.n_credentials = 1;
    ck_assert_int_eq(ops->config_validate(priv, &sb, &msg), -1);
    ck_assert_str_eq(msg, "process: credentials[0] (git): env name 'TAKEN' "
                          "is invalid or already set");
    free(msg);
    msg = validate_creds(two, 2, NULL);
    ck_assert_str_eq(msg != NULL ? msg : "(accepted)",
                     "process: credentials[1] (b): file '/run/a/b' clashes "
                     "with credentials[0]");
    free(msg);
    for (size_t i = 0; i < SG_N_ELEMENTS(many); i++) {
        snprintf(names[i], sizeof(names[i]), "/run/c%zu", i);
        many[i] =
            (struct sg_driver_credential){.name = "c",
                                          .delivery = SG_DRIVER_DELIVER_FILE,
                                          .target = names[i]};
    }
    msg = validate_creds(many, PROCESS_MAX_CREDENTIALS, NULL);
    ck_assert_msg(msg == NULL, "32 refused: %s", msg);
    msg = validate_creds(many, PROCESS_MAX_CREDENTIALS + 1, NULL);
    ck_assert_str_eq(msg != NULL ? msg : "(accepted)",
                     "process: at most 32 credentials per sandbox");
    free(msg);
    /* bwrap holds a descriptor per file above its own. */
    msg = validate_creds(many, 2, "{\"limits\": {\"open_files\": 17}}");
    ck_assert_str_eq(msg != NULL ? msg : "(accepted)",
                     "process: 2 credential files need limits.open_files "
                     "of at least 18");
    free(msg);
    msg = validate_creds(many, 2, "{\"limits\": {\"open_files\": 18}}");
    ck_assert_msg(msg == NULL, "refused: %s", msg);

    /* A host older than ABI 1.3 has no such fields: they are not read. */
    host.abi_minor = 2;
    c.delivery = SG_DRIVER_DELIVER_FILE;
    c.target = "/etc/x";
    msg = validate_creds(&c, 1, NULL);
    ck_assert_msg(msg == NULL, "read on a 1.2 host: %s", msg);
    host.abi_minor = SG_DRIVER_ABI_MINOR;
}
END_TEST

/* Many files, the largest number a sandbox may have, with open_files at
   the least that allows them: bwrap still starts. */
START_TEST(test_credentials_max_files)
{
    static const char *const cmd[] = {
        "sh", "-c",
        "cat /run/c/0 /tmp/c/31 > /work/out; echo done > /work/done"};
    struct sg_driver_credential creds[PROCESS_MAX_CREDENTIALS];
    char targets[PROCESS_MAX_CREDENTIALS][16];
    char material[PROCESS_MAX_CREDENTIALS][8];
    char config[96];
    struct sg_driver_sandbox sb;
    struct result r;
    char *text;

    for (size_t i = 0; i < PROCESS_MAX_CREDENTIALS; i++) {
        snprintf(targets[i], sizeof(targets[i]), "/%s/c/%zu",
                 i % 2 == 0 ? "run" : "tmp", i);
        snprintf(material[i], sizeof(material[i]), "m%zu.", i);
        creds[i] = (struct sg_driver_credential){
            .name = "c",
            .delivery = SG_DRIVER_DELIVER_FILE,
            .target = targets[i],
            .material = (const uint8_t *)material[i],
            .material_len = strlen(material[i])};
    }
    snprintf(config, sizeof(config), "{\"limits\": {\"open_files\": %d}}",
             PROCESS_MIN_OPEN_FILES + PROCESS_MAX_CREDENTIALS);
    open_driver(DEFAULT_SETTINGS);
    sb = make_sb("sb-credmax", cmd, 3, config);
    sb.credentials = creds;
    sb.n_credentials = PROCESS_MAX_CREDENTIALS;
    r = create_sb(&sb);
    ck_assert_msg(r.result == SG_DRIVER_OK, "create: %s", r.message);
    wait_file_has(sb_path("sb-credmax", "work/done"), "done");
    text = read_text(sb_path("sb-credmax", "work/out"));
    ck_assert_str_eq(text, "m0.m31.");
    free(text);
    remove_sb("sb-credmax", 0);
}
END_TEST

static Suite *process_driver_suite(void)
{
    Suite *s = suite_create("process_driver");
    TCase *tc = tcase_create("sandboxes");

    tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_lifecycle);
    tcase_add_test(tc, test_bad_requests);
    tcase_add_test(tc, test_isolation);
    tcase_add_test(tc, test_network_opt_in);
    tcase_add_test(tc, test_exit_reported);
    tcase_add_test(tc, test_log_cap);
    tcase_add_test(tc, test_remove_forces_after_grace);
    tcase_add_test(tc, test_remove_while_starting);
    tcase_add_test(tc, test_readiness_gates_running);
    tcase_add_test(tc, test_readiness_shares_network);
    tcase_add_test(tc, test_readiness_failure);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_restart_same_process);
    tcase_add_test(tc, test_restart_new_gateway);
    tcase_add_test(tc, test_broken_record);
    tcase_add_test(tc, test_cgroup);
    tcase_add_test(tc, test_launch_waits_for_go);
    tcase_add_test(tc, test_host_user);
    tcase_add_test(tc, test_host_user_explicit);
    tcase_add_test(tc, test_credentials_delivered);
    tcase_add_loop_test(tc, test_credentials_targets, 0,
                        SG_N_ELEMENTS(cred_cases));
    tcase_add_test(tc, test_credentials_refused);
    tcase_add_test(tc, test_credentials_max_files);
    suite_add_tcase(s, tc);
    return s;
}

/* Can bwrap make the namespaces the driver uses? */
static bool bwrap_works(void)
{
    pid_t pid;
    int status;

    if (access(BWRAP, X_OK) < 0)
        return false;
    pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);

        dup2(null, 1);
        dup2(null, 2);
        /* As the user sandboxes run as: nobody, when the test is root. */
        if (geteuid() == 0 &&
            (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0))
            _exit(127);
        execl(BWRAP, BWRAP, "--unshare-user", "--unshare-pid", "--unshare-net",
              "--unshare-ipc", "--unshare-uts", "--ro-bind", "/", "/", "--proc",
              "/proc", "--dev", "/dev", "--", "true", (char *)NULL);
        _exit(127);
    }
    return waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (!bwrap_works()) {
        fprintf(stderr, "bwrap cannot create namespaces here: skipped\n");
        return 77;
    }
    sr = srunner_create(process_driver_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
