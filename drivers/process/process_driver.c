/*
 * process_driver.c: the "process" driver's ops and per-sandbox lifecycle.
 *
 * One struct pd_sandbox per directory under state_dir. Its life:
 *
 *   STARTING  bwrap runs; status.json has no child-pid yet (PENDING)
 *   PROBING   the sandbox runs; its readiness command has not passed yet
 *             (PENDING)
 *   RUNNING   (RUNNING)
 *   STOPPED   bwrap is gone (FAILED, with the reason kept in the record)
 *
 * bwrap is watched through a pidfd polled on the loop; status.json is
 * polled with a timer until bwrap records the sandbox's PID 1. Every
 * answer to an op goes through a zero timer (struct pd_deferred), so no
 * callback runs inside the op that was given it; close() drops them.
 */
#include "internal.h"

#include "process_driver.h"
#include "process_config.h"
#include "process_logs.h"
#include "process_spawn.h"
#include "process_state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define DRIVER_NAME "process"
/* status.json is polled this often until the sandbox's PID 1 is known. */
#define STATUS_POLL_MS 10
#define STATUS_POLL_SLOW_MS 100
/* After SIGKILL to the sandbox's PID 1, bwrap gets this long to exit. */
#define FORCE_BACKSTOP_MS 2000
/* How often a forced stop re-checks the namespace is gone. */
#define RECHECK_MS 20
/* The cgroup of a removed sandbox gets this long to drain. */
#define CGROUP_DRAIN_MS 5000
/* Log reads per poll wake-up (64 KiB each). */
#define LOG_READS_PER_WAKEUP 16
#define PROBE_PATH                                                             \
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum pd_phase {
    PD_STARTING = 0,
    PD_PROBING,
    PD_RUNNING,
    PD_STOPPED,
};

struct pd_driver;
struct pd_sandbox;

struct pd_waiter {
    struct pd_waiter *next;
    sg_driver_done_cb done;
    void *opaque;
};

struct pd_probe {
    struct pd_sandbox *sbx; /* NULL once detached */
    pid_t pid;
    int pidfd;
    uv_poll_t poll;
    uv_timer_t timer;
    int open_handles;
    bool timed_out;
};

/* Directory (and cgroup) removal in the threadpool. */
struct pd_rm {
    uv_work_t req;
    struct pd_sandbox *sbx; /* NULL once the driver closed */
    char *dir;
    char *cgroup;
    int result;
    int err;
};

struct pd_sandbox {
    struct pd_sandbox *next;
    struct pd_sandbox *prev;
    struct pd_driver *drv;
    char *id;
    char *dir;
    struct process_record rec;
    enum pd_phase phase;
    bool broken; /* no usable record: FAILED Lost until removed */
    bool removing;
    bool forced;
    bool destroyed; /* handles closing; freed when the last one closed */
    int pidfd;      /* the outer bwrap; -1 once it exited */
    int init_pidfd; /* the sandbox's PID 1; -1 when unknown */
    uv_poll_t exit_poll;
    bool exit_poll_on;
    uv_timer_t start_timer; /* status.json polling, then the probe period */
    uv_timer_t kill_timer;  /* grace, force backstop, re-checks */
    unsigned status_polls;
    struct process_log logs[2];
    bool log_on[2];
    struct pd_probe *probe;
    uint32_t probe_failures;
    uint32_t grace_ms;  /* of the remove in progress */
    char exit_msg[128]; /* how bwrap ended, once it did */
    int exit_status;
    struct pd_waiter *waiters;
    struct pd_rm *rm;
    int open_handles;
    /* The status last reported. */
    enum sg_driver_state state;
    char reason[32];
    char message[256];
    int exit_code;
    char backend[48];
};

enum pd_deferred_kind {
    PD_DEFER_REPORT, /* the current state of id */
    PD_DEFER_RESULT, /* an error result */
    PD_DEFER_LIST,
};

struct pd_deferred {
    struct pd_deferred *next;
    struct pd_deferred *prev;
    struct pd_driver *drv;
    uv_timer_t timer;
    enum pd_deferred_kind kind;
    char *id;
    char *message;
    enum sg_driver_result result;
    sg_driver_done_cb done;
    sg_driver_list_cb list;
    void *opaque;
};

struct pd_driver {
    const struct sg_driver_host *host;
    uv_loop_t *loop;
    struct process_settings settings;
    struct process_cgroup cg;
    char *state_dir;
    char *state_dir_real;
    uid_t run_uid; /* host identity of the sandboxes (settings "user") */
    gid_t run_gid;
    struct pd_sandbox *sandboxes;
    struct pd_deferred *deferred;
    sg_driver_watch_cb watch_cb;
    void *watch_opaque;
    bool closing;
};

static const char *const stream_names[2] = {"stdout", "stderr"};

#define LOG(drv, lvl, ...) (drv)->host->log((lvl), DRIVER_NAME, __VA_ARGS__)

static void start_probe(struct pd_sandbox *s);
static int launch_paths(struct pd_driver *drv, const char *rootfs,
                        const char *work, char **hide, char **reach,
                        struct sg_error *err);
static int open_init_pidfd(pid_t pid, uint64_t pid_ns, uint64_t *start);
static void stop_probe(struct pd_sandbox *s);
static void finish_exit(struct pd_sandbox *s);
static void start_cleanup(struct pd_sandbox *s);
static void sandbox_destroy(struct pd_sandbox *s);

static char *host_strdup_msg(struct pd_driver *drv, const char *msg)
{
    return drv->host->strdup(msg);
}

static char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    char *p = malloc(la + lb + 2);

    if (p == NULL)
        return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

/* ---- status and watch ---- */

static void fill_status(const struct pd_sandbox *s, struct sg_driver_status *st)
{
    st->id = s->id;
    st->state = s->state;
    st->reason = s->reason;
    st->message = s->message;
    st->backend_object = s->backend;
    st->exit_code = s->exit_code;
}

static void set_state(struct pd_sandbox *s, enum sg_driver_state state,
                      const char *reason, const char *message, int exit_code)
{
    struct pd_driver *drv = s->drv;
    bool changed = state != s->state || STRNEQ(reason, s->reason);
    struct sg_driver_status st;

    s->state = state;
    snprintf(s->reason, sizeof(s->reason), "%s", reason);
    snprintf(s->message, sizeof(s->message), "%s", message);
    s->exit_code = exit_code;
    if (!changed || drv->closing || drv->watch_cb == NULL)
        return;
    fill_status(s, &st);
    drv->watch_cb(drv->watch_opaque, &st);
}

static void set_backend(struct pd_sandbox *s)
{
    if (s->rec.bwrap_pid > 0)
        snprintf(s->backend, sizeof(s->backend), "process/%d",
                 (int)s->rec.bwrap_pid);
    else
        s->backend[0] = '\0';
}

static void save_record(struct pd_sandbox *s)
{
    struct sg_error err = SG_ERROR_INIT;

    if (process_record_save(&s->rec, s->dir, &err) < 0)
        LOG(s->drv, SG_DRIVER_LOG_WARN, "%s: %s", s->id, err.message);
    sg_error_reset(&err);
}

/* Record why the sandbox stopped (once) and report FAILED. */
static void set_final(struct pd_sandbox *s, const char *reason,
                      const char *message, int exit_code)
{
    if (!s->rec.has_final) {
        char *r = strdup(reason);
        char *m = strdup(message);

        if (r != NULL && m != NULL) {
            free(s->rec.final_reason);
            free(s->rec.final_message);
            s->rec.final_reason = r;
            s->rec.final_message = m;
            s->rec.final_exit_code = exit_code;
            s->rec.has_final = true;
            save_record(s);
        } else {
            free(r);
            free(m);
        }
    }
    set_state(s, SG_DRIVER_STATE_FAILED, reason, message, exit_code);
}

static void describe_exit(int code, bool by_signal, char *msg, size_t len)
{
    if (by_signal)
        snprintf(msg, len, "killed by signal %d", code);
    else if (code > 128 && code < 128 + 65)
        /* bwrap's PID 1 passes on a signal death as 128 + signal. */
        snprintf(msg, len, "killed by signal %d", code - 128);
    else
        snprintf(msg, len, "exited with status %d", code);
}

/* ---- deferred answers ---- */

static void deferred_unlink(struct pd_deferred *d)
{
    struct pd_driver *drv = d->drv;

    if (d->prev != NULL)
        d->prev->next = d->next;
    else
        drv->deferred = d->next;
    if (d->next != NULL)
        d->next->prev = d->prev;
    d->next = d->prev = NULL;
}

static void deferred_free(uv_handle_t *h)
{
    struct pd_deferred *d = h->data;

    free(d->id);
    free(d->message);
    free(d);
}

static struct pd_sandbox *find_sandbox(struct pd_driver *drv, const char *id)
{
    for (struct pd_sandbox *s = drv->sandboxes; s != NULL; s = s->next) {
        if (!s->destroyed && STREQ(s->id, id))
            return s;
    }
    return NULL;
}

static void report_now(struct pd_driver *drv, const char *id,
                       sg_driver_done_cb done, void *opaque)
{
    struct pd_sandbox *s = find_sandbox(drv, id);
    struct sg_driver_status st = {
        .id = id,
        .state = SG_DRIVER_STATE_GONE,
        .reason = "NotFound",
        .message = "",
        .backend_object = "",
        .exit_code = 0,
    };

    if (s != NULL)
        fill_status(s, &st);
    done(opaque, SG_DRIVER_OK, &st, "");
}

static void list_now(struct pd_driver *drv, sg_driver_list_cb cb, void *opaque)
{
    size_t n = 0;
    size_t i = 0;
    struct sg_driver_status *items;

    for (struct pd_sandbox *s = drv->sandboxes; s != NULL; s = s->next)
        n += !s->destroyed;
    items = calloc(n > 0 ? n : 1, sizeof(*items));
    if (items == NULL) {
        cb(opaque, SG_DRIVER_ERR_RETRY, NULL, 0, "process: out of memory");
        return;
    }
    for (struct pd_sandbox *s = drv->sandboxes; s != NULL; s = s->next) {
        if (!s->destroyed)
            fill_status(s, &items[i++]);
    }
    cb(opaque, SG_DRIVER_OK, items, n, "");
    free(items);
}

static void deferred_fire(uv_timer_t *t)
{
    struct pd_deferred *d = t->data;
    struct pd_driver *drv = d->drv;

    deferred_unlink(d);
    uv_close((uv_handle_t *)&d->timer, deferred_free);
    switch (d->kind) {
    case PD_DEFER_REPORT:
        report_now(drv, d->id, d->done, d->opaque);
        break;
    case PD_DEFER_RESULT:
        d->done(d->opaque, d->result, NULL, d->message);
        break;
    case PD_DEFER_LIST:
        list_now(drv, d->list, d->opaque);
        break;
    }
}

/* Queue an answer for the next loop iteration. Returns 0 or -1. */
static int defer(struct pd_driver *drv, enum pd_deferred_kind kind,
                 const char *id, enum sg_driver_result result,
                 const char *message, sg_driver_done_cb done,
                 sg_driver_list_cb list, void *opaque)
{
    struct pd_deferred *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return -1;
    d->drv = drv;
    d->kind = kind;
    d->result = result;
    d->done = done;
    d->list = list;
    d->opaque = opaque;
    d->id = id != NULL ? strdup(id) : NULL;
    d->message = strdup(message != NULL ? message : "");
    if ((id != NULL && d->id == NULL) || d->message == NULL ||
        uv_timer_init(drv->loop, &d->timer) < 0) {
        free(d->id);
        free(d->message);
        free(d);
        return -1;
    }
    d->timer.data = d;
    d->next = drv->deferred;
    if (drv->deferred != NULL)
        drv->deferred->prev = d;
    drv->deferred = d;
    uv_timer_start(&d->timer, deferred_fire, 0, 0);
    return 0;
}

static int defer_report(struct pd_driver *drv, const char *id,
                        sg_driver_done_cb done, void *opaque)
{
    return defer(drv, PD_DEFER_REPORT, id, SG_DRIVER_OK, "", done, NULL,
                 opaque);
}

static int defer_error(struct pd_driver *drv, enum sg_driver_result result,
                       const char *message, sg_driver_done_cb done,
                       void *opaque)
{
    return defer(drv, PD_DEFER_RESULT, NULL, result, message, done, NULL,
                 opaque);
}

/* ---- sandbox handles ---- */

static void sandbox_free(struct pd_sandbox *s)
{
    if (s->pidfd >= 0)
        close(s->pidfd);
    if (s->init_pidfd >= 0)
        close(s->init_pidfd);
    for (int i = 0; i < 2; i++)
        process_log_close_fds(&s->logs[i]);
    while (s->waiters != NULL) {
        struct pd_waiter *w = s->waiters;

        s->waiters = w->next;
        free(w);
    }
    process_record_clear(&s->rec);
    free(s->id);
    free(s->dir);
    free(s);
}

static void handle_closed(uv_handle_t *h)
{
    struct pd_sandbox *s = h->data;

    if (--s->open_handles == 0 && s->destroyed)
        sandbox_free(s);
}

static void log_closed(uv_handle_t *h)
{
    struct process_log *l =
        (struct process_log *)((char *)h - offsetof(struct process_log, poll));

    process_log_close_fds(l);
    handle_closed(h);
}

static struct pd_sandbox *sandbox_new(struct pd_driver *drv, const char *id)
{
    struct pd_sandbox *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->drv = drv;
    s->pidfd = -1;
    s->init_pidfd = -1;
    for (int i = 0; i < 2; i++) {
        s->logs[i].fifo_fd = -1;
        s->logs[i].file_fd = -1;
    }
    s->id = strdup(id);
    s->dir = path_join(drv->state_dir, id);
    if (s->id == NULL || s->dir == NULL) {
        free(s->id);
        free(s->dir);
        free(s);
        return NULL;
    }
    s->state = SG_DRIVER_STATE_PENDING;
    snprintf(s->reason, sizeof(s->reason), "Starting");
    uv_timer_init(drv->loop, &s->start_timer);
    uv_timer_init(drv->loop, &s->kill_timer);
    s->start_timer.data = s;
    s->kill_timer.data = s;
    s->open_handles = 2;
    s->next = drv->sandboxes;
    if (drv->sandboxes != NULL)
        drv->sandboxes->prev = s;
    drv->sandboxes = s;
    return s;
}

static void sandbox_unlink(struct pd_sandbox *s)
{
    struct pd_driver *drv = s->drv;

    if (s->prev != NULL)
        s->prev->next = s->next;
    else if (drv->sandboxes == s)
        drv->sandboxes = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

static void close_log(struct pd_sandbox *s, int i)
{
    if (!s->log_on[i])
        return;
    s->log_on[i] = false;
    uv_close((uv_handle_t *)&s->logs[i].poll, log_closed);
}

static void close_exit_poll(struct pd_sandbox *s)
{
    if (!s->exit_poll_on)
        return;
    s->exit_poll_on = false;
    uv_close((uv_handle_t *)&s->exit_poll, handle_closed);
}

/* Close every handle; the struct is freed after the last close callback. */
static void sandbox_destroy(struct pd_sandbox *s)
{
    if (s->destroyed)
        return;
    s->destroyed = true;
    sandbox_unlink(s);
    stop_probe(s);
    if (s->rm != NULL) {
        s->rm->sbx = NULL;
        s->rm = NULL;
    }
    close_exit_poll(s);
    for (int i = 0; i < 2; i++)
        close_log(s, i);
    uv_close((uv_handle_t *)&s->start_timer, handle_closed);
    uv_close((uv_handle_t *)&s->kill_timer, handle_closed);
}

/* ---- logs ---- */

static void on_log(uv_poll_t *h, int status, int events)
{
    struct process_log *l =
        (struct process_log *)((char *)h - offsetof(struct process_log, poll));
    struct pd_sandbox *s = l->data;
    int i = l == &s->logs[0] ? 0 : 1;
    int r = process_log_drain(l, LOG_READS_PER_WAKEUP);

    if (r != 0 || status < 0)
        close_log(s, i); /* end of file: every writer is gone */
}

static void start_logs(struct pd_sandbox *s)
{
    for (int i = 0; i < 2; i++) {
        struct process_log *l = &s->logs[i];

        if (l->fifo_fd < 0 || s->log_on[i])
            continue;
        if (uv_poll_init(s->drv->loop, &l->poll, l->fifo_fd) < 0)
            continue;
        l->poll.data = s;
        l->data = s;
        s->open_handles++;
        s->log_on[i] = true;
        uv_poll_start(&l->poll, UV_READABLE | UV_DISCONNECT, on_log);
    }
}

static int open_logs(struct pd_sandbox *s, struct sg_error *err)
{
    for (int i = 0; i < 2; i++) {
        if (process_log_open(&s->logs[i], s->dir, stream_names[i],
                             s->drv->settings.log_max_bytes, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- exit of bwrap ---- */

static void on_exit_readable(uv_poll_t *h, int status, int events)
{
    struct pd_sandbox *s = h->data;
    struct process_bwrap_status bs;
    siginfo_t si;
    int code = -1;
    bool known = false;
    bool by_signal = false;
    char msg[128];

    memset(&si, 0, sizeof(si));
    if (waitid((idtype_t)P_PIDFD, (id_t)s->pidfd, &si, WEXITED | WNOHANG) ==
        0) {
        if (si.si_pid == 0)
            return; /* not yet */
        known = true;
        code = si.si_status;
        by_signal = si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED;
    } else if (!process_pidfd_exited(s->pidfd)) {
        return;
    }
    process_status_read(s->dir, &bs);
    /* A quick command may end before the status poll saw it start; its
       PID 1 may outlive bwrap (bwrap leaves when the command ends, PID 1
       when every process in the namespace has), so it is watched too. */
    if (s->rec.pid == 0 && bs.child_pid > 0) {
        uint64_t start = 0;

        s->rec.pid = bs.child_pid;
        if (s->init_pidfd < 0 && bs.pid_ns != 0)
            s->init_pidfd = open_init_pidfd(bs.child_pid, bs.pid_ns, &start);
        s->rec.start_time = start;
    }
    if ((!known || by_signal) && bs.has_exit_code) {
        /* Not our child (adopted), or bwrap itself was killed: bwrap's own
           record says how the sandbox ended, if it got to write it. */
        known = true;
        by_signal = false;
        code = bs.exit_code;
    }
    close_exit_poll(s);
    close(s->pidfd);
    s->pidfd = -1;
    if (!known)
        snprintf(msg, sizeof(msg), "exited with an unknown status");
    else
        describe_exit(code, by_signal, msg, sizeof(msg));
    snprintf(s->exit_msg, sizeof(s->exit_msg), "%s", msg);
    s->exit_status = known ? (by_signal ? 128 + code : code) : -1;
    LOG(s->drv, SG_DRIVER_LOG_INFO, "%s: bwrap %d ended (%s)", s->id,
        (int)s->rec.bwrap_pid, s->rec.has_final ? "stop requested" : msg);
    finish_exit(s);
}

/* The namespace must be gone before the sandbox counts as stopped. */
static bool tree_alive(struct pd_sandbox *s)
{
    if (s->init_pidfd >= 0 && !process_pidfd_exited(s->init_pidfd))
        return true;
    return false;
}

static void on_recheck(uv_timer_t *t)
{
    finish_exit(t->data);
}

/*
 * bwrap is gone. bwrap leaves as soon as the command ends, its PID 1 only
 * once the namespace is empty: processes the command left behind are
 * killed (by SIGKILL to PID 1, which takes the namespace with it), unless
 * a remove is giving them their grace, which then ends with the same.
 * Called again every RECHECK_MS until the namespace is gone.
 */
static void finish_exit(struct pd_sandbox *s)
{
    stop_probe(s);
    uv_timer_stop(&s->start_timer);
    if (tree_alive(s)) {
        if (!s->removing || s->forced) {
            process_pidfd_signal(s->init_pidfd, SIGKILL);
            if (s->rec.cgroup != NULL)
                process_cgroup_kill(s->rec.cgroup);
        }
        uv_timer_start(&s->start_timer, on_recheck, RECHECK_MS, 0);
        return;
    }
    if (s->init_pidfd >= 0) {
        siginfo_t si;

        /* Ours only when the gateway is a subreaper; ECHILD otherwise. */
        (void)waitid((idtype_t)P_PIDFD, (id_t)s->init_pidfd, &si,
                     WEXITED | WNOHANG);
    }
    uv_timer_stop(&s->kill_timer);
    for (int i = 0; i < 2; i++) {
        process_log_drain(&s->logs[i], 0);
        close_log(s, i);
    }
    s->phase = PD_STOPPED;
    if (s->removing) {
        /* Asked for: no FAILED report, GONE follows. */
        start_cleanup(s);
        return;
    }
    if (!s->rec.has_final) {
        if (s->rec.pid == 0) {
            char text[256];

            snprintf(text, sizeof(text),
                     "bwrap could not start the sandbox (%s); see stderr.log",
                     s->exit_msg);
            set_final(s, "StartFailed", text, s->exit_status);
        } else {
            set_final(s, "Exited", s->exit_msg, s->exit_status);
        }
    }
}

static int watch_exit(struct pd_sandbox *s)
{
    if (uv_poll_init(s->drv->loop, &s->exit_poll, s->pidfd) < 0)
        return -1;
    s->exit_poll.data = s;
    s->open_handles++;
    s->exit_poll_on = true;
    uv_poll_start(&s->exit_poll, UV_READABLE, on_exit_readable);
    return 0;
}

/* ---- readiness ---- */

static void become_ready(struct pd_sandbox *s)
{
    s->phase = PD_RUNNING;
    if (!s->rec.ready) {
        s->rec.ready = true;
        save_record(s);
    }
    set_state(s, SG_DRIVER_STATE_RUNNING, "Started", "", 0);
}

static void probe_closed(uv_handle_t *h)
{
    struct pd_probe *p = h->data;

    if (--p->open_handles == 0)
        free(p);
}

static void probe_release(struct pd_probe *p)
{
    if (p->pidfd >= 0)
        close(p->pidfd);
    p->pidfd = -1;
    uv_close((uv_handle_t *)&p->poll, probe_closed);
    uv_close((uv_handle_t *)&p->timer, probe_closed);
}

/* Kill and reap a running probe (close, remove, exit). */
static void stop_probe(struct pd_sandbox *s)
{
    struct pd_probe *p = s->probe;
    siginfo_t si;

    if (s->phase == PD_PROBING)
        uv_timer_stop(&s->start_timer); /* the next probe */
    if (p == NULL)
        return;
    s->probe = NULL;
    p->sbx = NULL;
    process_pidfd_signal(p->pidfd, SIGKILL);
    /* SIGKILL is prompt; its namespace dies with it (--die-with-parent). */
    while (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED) < 0 &&
           errno == EINTR)
        ;
    probe_release(p);
}

static void on_probe_period(uv_timer_t *t)
{
    start_probe(t->data);
}

static void probe_finished(struct pd_sandbox *s, bool ok, const char *why)
{
    const struct process_readiness *r = &s->rec.readiness;

    if (s->phase != PD_PROBING || s->removing)
        return;
    if (ok) {
        s->probe_failures = 0;
        become_ready(s);
        return;
    }
    s->probe_failures++;
    LOG(s->drv, SG_DRIVER_LOG_DEBUG, "%s: readiness command %s (%u)", s->id,
        why, s->probe_failures);
    if (r->failure_threshold != 0 &&
        s->probe_failures >= r->failure_threshold) {
        char msg[128];

        snprintf(msg, sizeof(msg),
                 "the readiness command failed %u times in a row (last: %s)",
                 s->probe_failures, why);
        /* Stopped: kill it; the record keeps this reason. */
        set_final(s, "ReadinessFailed", msg, -1);
        if (s->init_pidfd >= 0)
            process_pidfd_signal(s->init_pidfd, SIGKILL);
        else if (s->pidfd >= 0)
            process_pidfd_signal(s->pidfd, SIGKILL);
        if (s->rec.cgroup != NULL)
            process_cgroup_kill(s->rec.cgroup);
        return;
    }
    uv_timer_start(&s->start_timer, on_probe_period, r->period_ms, 0);
}

static void on_probe_exit(uv_poll_t *h, int status, int events)
{
    struct pd_probe *p = h->data;
    struct pd_sandbox *s = p->sbx;
    siginfo_t si;
    char why[64];
    bool ok;

    memset(&si, 0, sizeof(si));
    if (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) < 0) {
        snprintf(why, sizeof(why), "could not be waited for");
        ok = false;
    } else if (si.si_pid == 0) {
        return;
    } else {
        ok = si.si_code == CLD_EXITED && si.si_status == 0;
        if (p->timed_out)
            snprintf(why, sizeof(why), "timed out");
        else if (si.si_code == CLD_EXITED)
            snprintf(why, sizeof(why), "exited with status %d", si.si_status);
        else
            snprintf(why, sizeof(why), "killed by signal %d", si.si_status);
    }
    if (s != NULL)
        s->probe = NULL;
    p->sbx = NULL;
    probe_release(p);
    if (s != NULL)
        probe_finished(s, ok, why);
}

static void on_probe_timeout(uv_timer_t *t)
{
    struct pd_probe *p = t->data;

    p->timed_out = true;
    process_pidfd_signal(p->pidfd, SIGKILL);
}

/* What the sandbox and its readiness probes are launched with alike. */
static void launch_base(struct process_launch *l, const struct pd_sandbox *s,
                        const char *hide, const char *work, const char *reach)
{
    const struct pd_driver *drv = s->drv;

    l->bwrap = drv->settings.bwrap;
    l->rootfs = s->rec.rootfs;
    l->hide_dir = hide;
    l->work_dir = work;
    l->reach_dir = reach;
    l->uid = drv->run_uid;
    l->gid = drv->run_gid;
    l->chdir = s->rec.chdir;
    l->network = s->rec.network;
}

static void start_probe(struct pd_sandbox *s)
{
    struct pd_driver *drv = s->drv;
    static const char *const env_names[] = {"PATH"};
    const char *env_values[] = {PROBE_PATH + 5};
    struct sg_error err = SG_ERROR_INIT;
    struct process_launch l = {0};
    struct pd_probe *p = NULL;
    char *work = NULL;
    char *hide = NULL;
    char *reach = NULL;
    int netns = -1;
    int procs = -1;
    pid_t pid;

    if (s->probe != NULL || s->phase != PD_PROBING || s->removing)
        return;
    work = path_join(s->dir, "work");
    if (work == NULL)
        goto retry;
    if (!s->rec.network) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)s->rec.pid);
        netns = open(path, O_RDONLY | O_CLOEXEC);
        /* The namespace opened must be the sandbox's, not a new tenant's
           of a reused PID. */
        if (netns < 0 || !process_proc_matches(s->rec.pid, s->rec.start_time))
            goto retry;
    }
    if (s->rec.cgroup != NULL) {
        char *file = path_join(s->rec.cgroup, "cgroup.procs");

        if (file != NULL)
            procs = open(file, O_WRONLY | O_CLOEXEC);
        free(file);
    }
    if (launch_paths(drv, s->rec.rootfs, work, &hide, &reach, &err) < 0) {
        LOG(drv, SG_DRIVER_LOG_WARN, "%s: readiness command: %s", s->id,
            err.message);
        goto retry;
    }
    launch_base(&l, s, hide, work, reach);
    l.probe = true;
    l.argv = (const char *const *)s->rec.readiness.argv;
    l.argc = s->rec.readiness.argc;
    l.env_names = env_names;
    l.env_values = env_values;
    l.n_env = 1;
    l.limits = &s->rec.limits;
    l.stdout_fd = -1;
    l.stderr_fd = -1;
    l.status_fd = -1;
    l.cgroup_procs_fd = procs;
    l.netns_fd = netns;
    l.sync_fd = -1;
    l.sync_wfd = -1;
    if (process_launch_start(&l, &pid, &err) < 0) {
        LOG(drv, SG_DRIVER_LOG_WARN, "%s: readiness command: %s", s->id,
            err.message);
        goto retry;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        goto retry;
    }
    p->sbx = s;
    p->pid = pid;
    p->pidfd = process_pidfd_open(pid);
    if (p->pidfd < 0 || uv_poll_init(drv->loop, &p->poll, p->pidfd) < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (p->pidfd >= 0)
            close(p->pidfd);
        free(p);
        goto retry;
    }
    uv_timer_init(drv->loop, &p->timer);
    p->poll.data = p;
    p->timer.data = p;
    p->open_handles = 2;
    s->probe = p;
    uv_poll_start(&p->poll, UV_READABLE, on_probe_exit);
    uv_timer_start(&p->timer, on_probe_timeout, s->rec.readiness.timeout_ms, 0);
    goto cleanup;
 retry:
    uv_timer_start(&s->start_timer, on_probe_period, s->rec.readiness.period_ms,
                   0);
 cleanup:
    if (netns >= 0)
        close(netns);
    if (procs >= 0)
        close(procs);
    free(work);
    free(hide);
    free(reach);
    sg_error_reset(&err);
}

/* ---- start-up: learning the sandbox's PID 1 ---- */

static void terminate(struct pd_sandbox *s);

/*
 * A pidfd for the sandbox's PID 1 as bwrap reported it, checked to be a
 * member of the namespace bwrap reported (when it did). -1 if it is gone.
 */
static int open_init_pidfd(pid_t pid, uint64_t pid_ns, uint64_t *start)
{
    char state = '?';
    int fd;

    if (process_proc_stat(pid, start, &state) < 0 || state == 'Z')
        return -1;
    fd = process_pidfd_open(pid);
    if (fd < 0)
        return -1;
    /* Checked after the pidfd exists: it names this very process. */
    if (!process_proc_matches(pid, *start) ||
        (pid_ns != 0 && !process_pid_in_ns(pid, pid_ns))) {
        close(fd);
        return -1;
    }
    return fd;
}

/* bwrap recorded the sandbox's PID 1. */
static void learn_child(struct pd_sandbox *s, pid_t pid, uint64_t pid_ns)
{
    uint64_t start;

    if (s->init_pidfd < 0)
        s->init_pidfd = open_init_pidfd(pid, pid_ns, &start);
    if (s->init_pidfd < 0)
        return; /* it is already gone; bwrap's exit follows */
    s->rec.pid = pid;
    s->rec.start_time = start;
    save_record(s);
    if (s->removing) {
        terminate(s);
        return;
    }
    if (s->rec.has_final)
        return;
    if (s->rec.readiness.argc > 0 && !s->rec.ready) {
        s->phase = PD_PROBING;
        set_state(s, SG_DRIVER_STATE_PENDING, "WaitingForReadiness",
                  "waiting for the readiness command to succeed", 0);
        start_probe(s);
    } else {
        become_ready(s);
    }
}

static void on_status_poll(uv_timer_t *t)
{
    struct pd_sandbox *s = t->data;
    struct process_bwrap_status bs;

    if (s->phase != PD_STARTING || s->pidfd < 0) {
        uv_timer_stop(t);
        return;
    }
    process_status_read(s->dir, &bs);
    if (bs.child_pid > 0) {
        uv_timer_stop(t);
        learn_child(s, bs.child_pid, bs.pid_ns);
        return;
    }
    if (++s->status_polls == 100)
        uv_timer_start(t, on_status_poll, STATUS_POLL_SLOW_MS,
                       STATUS_POLL_SLOW_MS);
}

static void watch_start(struct pd_sandbox *s)
{
    s->status_polls = 0;
    uv_timer_start(&s->start_timer, on_status_poll, STATUS_POLL_MS,
                   STATUS_POLL_MS);
}

/* ---- removal ---- */

static void on_backstop(uv_timer_t *t)
{
    struct pd_sandbox *s = t->data;

    /* The namespace had FORCE_BACKSTOP_MS to die; bwrap goes too now. */
    if (s->pidfd >= 0)
        process_pidfd_signal(s->pidfd, SIGKILL);
    if (s->init_pidfd >= 0)
        process_pidfd_signal(s->init_pidfd, SIGKILL);
}

static void force_stop(struct pd_sandbox *s)
{
    s->forced = true;
    if (s->init_pidfd >= 0) {
        process_pidfd_signal(s->init_pidfd, SIGKILL);
    } else if (s->pidfd >= 0) {
        /* PID 1 not recorded yet: bwrap's children are the namespace
           inits; kill them before bwrap so none is left behind. */
        process_signal_children(s->rec.bwrap_pid, SIGKILL);
        process_pidfd_signal(s->pidfd, SIGKILL);
    }
    if (s->rec.cgroup != NULL)
        process_cgroup_kill(s->rec.cgroup);
    uv_timer_start(&s->kill_timer, on_backstop, FORCE_BACKSTOP_MS, 0);
}

static void on_grace(uv_timer_t *t)
{
    struct pd_sandbox *s = t->data;

    LOG(s->drv, SG_DRIVER_LOG_INFO, "%s: still running after %u ms; killing it",
        s->id, s->grace_ms);
    force_stop(s);
}

/* Ask the sandbox to stop (SIGTERM), then force it after the grace. */
static void terminate(struct pd_sandbox *s)
{
    if (s->forced || s->pidfd < 0)
        return;
    if (s->rec.pid > 0) {
        int n = process_signal_pidns(s->rec.pid, s->rec.start_time, SIGTERM);

        if (n == 0 || s->grace_ms == 0) {
            force_stop(s);
            return;
        }
    } else if (s->grace_ms == 0) {
        force_stop(s);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&s->kill_timer))
        uv_timer_start(&s->kill_timer, on_grace, s->grace_ms, 0);
}

static void rm_work(uv_work_t *req)
{
    struct pd_rm *rm = req->data;

    rm->result = 0;
    if (rm->cgroup != NULL &&
        process_cgroup_remove(rm->cgroup, CGROUP_DRAIN_MS) < 0) {
        rm->result = -1;
        rm->err = errno;
    }
    if (process_rm_rf(rm->dir) < 0) {
        rm->result = -1;
        rm->err = errno;
    }
}

static void rm_done(uv_work_t *req, int status)
{
    struct pd_rm *rm = req->data;
    struct pd_sandbox *s = rm->sbx;

    if (s != NULL) {
        struct pd_waiter *w = s->waiters;
        struct pd_driver *drv = s->drv;

        s->rm = NULL;
        s->waiters = NULL;
        if (rm->result == 0 && status == 0) {
            struct sg_driver_status st;

            LOG(drv, SG_DRIVER_LOG_INFO, "%s: removed", s->id);
            set_state(s, SG_DRIVER_STATE_GONE, "Deleted", "", s->exit_code);
            fill_status(s, &st);
            /* The answers may re-enter the driver: unlink first. */
            sandbox_destroy(s);
            while (w != NULL) {
                struct pd_waiter *next = w->next;

                if (!drv->closing)
                    w->done(w->opaque, SG_DRIVER_OK, &st, "");
                free(w);
                w = next;
            }
        } else {
            char msg[256];
            char buf[128];

            snprintf(msg, sizeof(msg), "process: cannot remove '%s': %s",
                     s->dir, sg_strerror(rm->err, buf, sizeof(buf)));
            LOG(drv, SG_DRIVER_LOG_WARN, "%s: %s", s->id, msg);
            s->removing = false;
            while (w != NULL) {
                struct pd_waiter *next = w->next;

                if (!drv->closing)
                    w->done(w->opaque, SG_DRIVER_ERR_RETRY, NULL, msg);
                free(w);
                w = next;
            }
        }
    }
    free(rm->dir);
    free(rm->cgroup);
    free(rm);
}

static void on_cleanup_retry(uv_timer_t *t)
{
    start_cleanup(t->data);
}

/* Remove the directory and cgroup in the threadpool; then GONE. Runs in
   loop callbacks only (it may answer the removers). */
static void start_cleanup(struct pd_sandbox *s)
{
    struct pd_driver *drv = s->drv;
    struct pd_rm *rm;
    char *cg = NULL;

    if (s->rm != NULL)
        return;
    rm = calloc(1, sizeof(*rm));
    if (rm == NULL)
        goto error;
    if (s->rec.cgroup != NULL) {
        cg = strdup(s->rec.cgroup);
    } else if (s->broken && drv->cg.parent != NULL) {
        char name[96];

        snprintf(name, sizeof(name), "sandgate-%s", s->id);
        cg = path_join(drv->cg.parent, name);
    }
    rm->cgroup = cg;
    rm->dir = strdup(s->dir);
    rm->sbx = s;
    rm->req.data = rm;
    if (rm->dir == NULL ||
        uv_queue_work(drv->loop, &rm->req, rm_work, rm_done) < 0) {
        free(rm->dir);
        free(rm->cgroup);
        free(rm);
        goto error;
    }
    s->rm = rm;
    return;
 error:
    /* Out of memory: try again shortly; the removers keep waiting. */
    uv_timer_start(&s->kill_timer, on_cleanup_retry, 100, 0);
}

/* ---- creation ---- */

/* The path inside the sandbox where host path shows, if any. */
static char *hidden_path(const char *path, const char *rootfs)
{
    char rf[PATH_MAX];
    const char *inside;
    size_t n;
    static const char *const covered[] = {"/tmp", "/run", "/dev", "/proc",
                                          "/work"};

    if (path == NULL || realpath(rootfs, rf) == NULL)
        return NULL;
    n = strlen(rf);
    if (STREQ(rf, "/"))
        inside = path;
    else if (strncmp(path, rf, n) == 0 && path[n] == '/')
        inside = path + n;
    else
        return NULL;
    for (size_t i = 0; i < SG_N_ELEMENTS(covered); i++) {
        size_t m = strlen(covered[i]);

        if (strncmp(inside, covered[i], m) == 0 &&
            (inside[m] == '/' || inside[m] == '\0'))
            return NULL; /* not visible anyway */
    }
    return strdup(inside);
}

static bool path_within(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/*
 * What bwrap needs for the work dir work: *reach, the first ancestor the
 * sandbox user cannot search (see process_spawn.h), or NULL; *hide, the
 * path inside the sandbox to cover with a tmpfs: the state directory, or
 * *reach when that is at or above it (the tmpfs the child put there, and
 * the path it recreated in it, are then out of sight too). Returns 0, or
 * -1 with err set.
 */
static int launch_paths(struct pd_driver *drv, const char *rootfs,
                        const char *work, char **hide, char **reach,
                        struct sg_error *err)
{
    *hide = NULL;
    if (process_blocking_dir(work, drv->run_uid, drv->run_gid, reach, err) < 0)
        return -1;
    if (*reach != NULL && drv->state_dir_real != NULL &&
        path_within(drv->state_dir_real, *reach))
        *hide = hidden_path(*reach, rootfs);
    else
        *hide = hidden_path(drv->state_dir_real, rootfs);
    return 0;
}

static int make_dirs(struct pd_sandbox *s, struct sg_error *err)
{
    char buf[128];
    char *work;

    if (mkdir(s->dir, 0700) < 0) {
        if (errno != EEXIST || process_rm_rf(s->dir) < 0 ||
            mkdir(s->dir, 0700) < 0) {
            sg_error_report(err, SG_ERR_IO, "process: cannot make '%s': %s",
                            s->dir, sg_strerror(errno, buf, sizeof(buf)));
            return -1;
        }
    }
    work = path_join(s->dir, "work");
    if (work == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    if (mkdir(work, 0755) < 0) {
        sg_error_report(err, SG_ERR_IO, "process: cannot make '%s': %s", work,
                        sg_strerror(errno, buf, sizeof(buf)));
        free(work);
        return -1;
    }
    /* The sandbox's own: it runs as run_uid. */
    if (s->drv->run_uid != geteuid() || s->drv->run_gid != getegid()) {
        int fd = open(work, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0 || fchown(fd, s->drv->run_uid, s->drv->run_gid) < 0) {
            sg_error_report(err, SG_ERR_IO, "process: cannot chown '%s': %s",
                            work, sg_strerror(errno, buf, sizeof(buf)));
            if (fd >= 0)
                close(fd);
            free(work);
            return -1;
        }
        close(fd);
    }
    free(work);
    return 0;
}

static int fill_record(struct pd_sandbox *s, const struct sg_driver_sandbox *sb,
                       const struct process_block *b, struct sg_error *err)
{
    struct pd_driver *drv = s->drv;
    struct process_record *r = &s->rec;

    r->id = strdup(s->id);
    r->rootfs = strdup(process_settings_rootfs(&drv->settings, sb->image));
    r->chdir = strdup(sb->working_dir != NULL && sb->working_dir[0] != '\0'
                          ? sb->working_dir
                          : "/work");
    r->network = b->network;
    r->grace_period_ms =
        b->has_grace ? b->grace_period_ms : drv->settings.grace_period_ms;
    process_limits_effective(&drv->settings, b, &r->limits);
    r->created_at = (int64_t)time(NULL);
    if (r->id == NULL || r->rootfs == NULL || r->chdir == NULL ||
        process_readiness_copy(&r->readiness, &b->readiness) < 0) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    return 0;
}

/*
 * Everything create does before its answer: directories, FIFOs, cgroup,
 * the record, and bwrap. On failure the directory and cgroup are removed
 * and s is destroyed.
 */
static int sandbox_start(struct pd_sandbox *s,
                         const struct sg_driver_sandbox *sb,
                         const struct process_block *b, struct sg_error *err)
{
    struct pd_driver *drv = s->drv;
    struct process_launch l = {0};
    int out_w = -1;
    int err_w = -1;
    int status_fd = -1;
    int procs_fd = -1;
    int sync[2] = {-1, -1};
    char *work = NULL;
    char *status_path = NULL;
    char *hide = NULL;
    char *reach = NULL;
    const char *hostname;
    pid_t pid = -1;
    char buf[128];
    int ret = -1;

    if (make_dirs(s, err) < 0 || fill_record(s, sb, b, err) < 0)
        goto cleanup;
    out_w = process_log_fifo_make(s->dir, "stdout", err);
    if (out_w < 0)
        goto cleanup;
    err_w = process_log_fifo_make(s->dir, "stderr", err);
    if (err_w < 0 || open_logs(s, err) < 0)
        goto cleanup;
    status_path = path_join(s->dir, "status.json");
    work = path_join(s->dir, "work");
    if (status_path == NULL || work == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    status_fd = open(status_path,
                     O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (status_fd < 0) {
        sg_error_report(err, SG_ERR_IO, "process: cannot open '%s': %s",
                        status_path, sg_strerror(errno, buf, sizeof(buf)));
        goto cleanup;
    }
    if (drv->cg.parent != NULL) {
        struct sg_error cgerr = SG_ERROR_INIT;

        if (process_cgroup_create(&drv->cg, s->id, &s->rec.limits,
                                  &s->rec.cgroup, &procs_fd, &cgerr) < 0) {
            if (drv->cg.explicit_dir) {
                sg_error_move(err, &cgerr);
                goto cleanup;
            }
            LOG(drv, SG_DRIVER_LOG_WARN, "%s: %s; rlimits only", s->id,
                cgerr.message);
            sg_error_reset(&cgerr);
        }
    }
    /* On disk before bwrap exists: a crash now leaves a record. */
    if (process_record_save(&s->rec, s->dir, err) < 0)
        goto cleanup;
    if (pipe2(sync, O_CLOEXEC) < 0) {
        sg_error_report(err, SG_ERR_IO, "process: pipe: %s",
                        sg_strerror(errno, buf, sizeof(buf)));
        goto cleanup;
    }
    if (launch_paths(drv, s->rec.rootfs, work, &hide, &reach, err) < 0)
        goto cleanup;
    hostname = sb->name != NULL && sb->name[0] != '\0' && strlen(sb->name) <= 63
                   ? sb->name
                   : s->id;
    launch_base(&l, s, hide, work, reach);
    l.hostname = hostname;
    l.argv = sb->command;
    l.argc = sb->n_command;
    l.env_names = sb->env_names;
    l.env_values = sb->env_values;
    l.n_env = sb->n_env;
    l.credentials = sb->credentials;
    l.n_credentials = sb->n_credentials;
    l.limits = &s->rec.limits;
    l.stdout_fd = out_w;
    l.stderr_fd = err_w;
    l.status_fd = status_fd;
    l.cgroup_procs_fd = procs_fd;
    l.netns_fd = -1;
    l.sync_fd = sync[0];
    l.sync_wfd = sync[1];
    if (process_launch_start(&l, &pid, err) < 0)
        goto cleanup;
    close(sync[0]);
    sync[0] = -1;
    s->rec.bwrap_pid = pid;
    if (process_proc_stat(pid, &s->rec.bwrap_start_time, NULL) < 0) {
        sg_error_report(err, SG_ERR_INTERNAL,
                        "process: bwrap %d vanished at start", (int)pid);
        goto cleanup;
    }
    s->pidfd = process_pidfd_open(pid);
    if (s->pidfd < 0) {
        sg_error_report(err, SG_ERR_IO, "process: pidfd_open: %s",
                        sg_strerror(errno, buf, sizeof(buf)));
        goto cleanup;
    }
    if (process_record_save(&s->rec, s->dir, err) < 0)
        goto cleanup;
    if (watch_exit(s) < 0) {
        sg_error_report(err, SG_ERR_INTERNAL, "process: cannot poll a pidfd");
        goto cleanup;
    }
    /* Recorded: let the child exec bwrap. */
    if (write(sync[1], "x", 1) != 1) {
        sg_error_report(err, SG_ERR_IO, "process: cannot start bwrap");
        goto cleanup;
    }
    set_backend(s);
    start_logs(s);
    watch_start(s);
    LOG(drv, SG_DRIVER_LOG_INFO, "%s: started bwrap %d%s", s->id, (int)pid,
        s->rec.cgroup != NULL ? " in its cgroup" : "");
    ret = 0;
 cleanup:
    if (ret < 0 && pid > 0) {
        /* Blocked before exec, or just past it: gone at once. */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (ret < 0) {
        close_exit_poll(s);
        for (int i = 0; i < 2; i++)
            process_log_close_fds(&s->logs[i]);
        if (s->rec.cgroup != NULL)
            (void)process_cgroup_remove(s->rec.cgroup, 0);
        (void)process_rm_rf(s->dir);
    }
    for (int i = 0; i < 2; i++) {
        if (sync[i] >= 0)
            close(sync[i]);
    }
    if (out_w >= 0)
        close(out_w);
    if (err_w >= 0)
        close(err_w);
    if (status_fd >= 0)
        close(status_fd);
    if (procs_fd >= 0)
        close(procs_fd);
    free(work);
    free(status_path);
    free(hide);
    free(reach);
    return ret;
}

/* ---- adoption at open ---- */

static void adopt_lost(struct pd_sandbox *s)
{
    struct process_bwrap_status bs;
    uint64_t start;
    char state;

    /* A zombie of ours (the driver reopened in the same process): reap. */
    if (s->rec.bwrap_pid > 0 &&
        process_proc_stat(s->rec.bwrap_pid, &start, &state) == 0 &&
        start == s->rec.bwrap_start_time && state == 'Z')
        waitpid(s->rec.bwrap_pid, NULL, WNOHANG);
    /* bwrap gone but its namespace not (bwrap leaves when the command
       ends, PID 1 when the namespace is empty): leave nothing behind. */
    process_status_read(s->dir, &bs);
    if (s->rec.pid > 0 && process_proc_matches(s->rec.pid, s->rec.start_time))
        kill(s->rec.pid, SIGKILL);
    else if (bs.child_pid > 0 && process_pid_in_ns(bs.child_pid, bs.pid_ns))
        kill(bs.child_pid, SIGKILL);
    if (s->rec.cgroup != NULL)
        process_cgroup_kill(s->rec.cgroup);
    s->phase = PD_STOPPED;
    if (s->rec.has_final) {
        set_state(s, SG_DRIVER_STATE_FAILED, s->rec.final_reason,
                  s->rec.final_message, s->rec.final_exit_code);
        return;
    }
    set_final(s, "Lost", "process exited while the gateway was down",
              bs.has_exit_code ? bs.exit_code : -1);
}

static void adopt(struct pd_sandbox *s)
{
    struct pd_driver *drv = s->drv;
    struct sg_error err = SG_ERROR_INIT;

    if (process_record_load(s->dir, &s->rec, &err) < 0 ||
        STRNEQ(s->rec.id, s->id)) {
        LOG(drv, SG_DRIVER_LOG_WARN, "%s: %s", s->id,
            sg_error_is_set(&err) ? err.message : "record of another id");
        s->broken = true;
        s->phase = PD_STOPPED;
        set_state(s, SG_DRIVER_STATE_FAILED, "Lost",
                  "no usable record of this sandbox", -1);
        sg_error_reset(&err);
        return;
    }
    set_backend(s);
    if (s->rec.bwrap_pid > 0 &&
        process_proc_matches(s->rec.bwrap_pid, s->rec.bwrap_start_time)) {
        s->pidfd = process_pidfd_open(s->rec.bwrap_pid);
        /* The pidfd must name the process the record names. */
        if (s->pidfd >= 0 &&
            !process_proc_matches(s->rec.bwrap_pid, s->rec.bwrap_start_time)) {
            close(s->pidfd);
            s->pidfd = -1;
        }
    }
    if (s->pidfd < 0) {
        adopt_lost(s);
        return;
    }
    if (watch_exit(s) < 0) {
        close(s->pidfd);
        s->pidfd = -1;
        adopt_lost(s);
        return;
    }
    if (open_logs(s, &err) < 0) {
        LOG(drv, SG_DRIVER_LOG_WARN, "%s: %s", s->id, err.message);
        sg_error_reset(&err);
    } else {
        start_logs(s);
    }
    if (s->rec.has_final) {
        /* It was being stopped (readiness failed): finish the job. The
           phase stays a live one until bwrap's exit is seen. */
        s->phase = PD_RUNNING;
        set_state(s, SG_DRIVER_STATE_FAILED, s->rec.final_reason,
                  s->rec.final_message, s->rec.final_exit_code);
        force_stop(s);
        return;
    }
    if (s->rec.pid > 0 && process_proc_matches(s->rec.pid, s->rec.start_time)) {
        pid_t pid = s->rec.pid;

        s->init_pidfd = process_pidfd_open(pid);
        if (s->init_pidfd >= 0 &&
            !process_proc_matches(pid, s->rec.start_time)) {
            close(s->init_pidfd);
            s->init_pidfd = -1;
        }
        if (s->rec.ready || s->rec.readiness.argc == 0) {
            become_ready(s);
        } else {
            s->phase = PD_PROBING;
            set_state(s, SG_DRIVER_STATE_PENDING, "WaitingForReadiness",
                      "waiting for the readiness command to succeed", 0);
            start_probe(s);
        }
        return;
    }
    /* PID 1 not recorded yet (or it just ended): watch status.json. */
    s->rec.pid = 0;
    s->phase = PD_STARTING;
    watch_start(s);
}

static int scan_state_dir(struct pd_driver *drv, struct sg_error *err)
{
    DIR *d = opendir(drv->state_dir);
    struct dirent *e;
    char buf[128];
    int adopted = 0;
    int lost = 0;

    if (d == NULL) {
        sg_error_report(err, SG_ERR_IO, "process: cannot read '%s': %s",
                        drv->state_dir, sg_strerror(errno, buf, sizeof(buf)));
        return -1;
    }
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        struct pd_sandbox *s;
        struct stat st;

        if (!process_id_valid(e->d_name))
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISDIR(st.st_mode))
            continue;
        s = sandbox_new(drv, e->d_name);
        if (s == NULL) {
            LOG(drv, SG_DRIVER_LOG_ERROR, "%s: out of memory", e->d_name);
            continue;
        }
        adopt(s);
        if (s->state == SG_DRIVER_STATE_FAILED)
            lost++;
        else
            adopted++;
    }
    closedir(d);
    if (adopted + lost > 0)
        LOG(drv, SG_DRIVER_LOG_INFO,
            "found %d running sandbox(es) and %d stopped one(s) in %s", adopted,
            lost, drv->state_dir);
    return 0;
}

/* ---- ops ---- */

static int pd_open(void *priv, const struct sg_driver_host *host,
                   const char *settings_json, const char *state_dir,
                   char **errmsg)
{
    struct pd_driver *drv = priv;
    struct sg_error err = SG_ERROR_INIT;
    const char *why = NULL;
    char real[PATH_MAX];
    bool resolved;

    drv->host = host;
    drv->loop = host->loop;
    if (process_settings_load(settings_json, &drv->settings, &err) < 0 ||
        process_settings_check(&drv->settings, &err) < 0 ||
        process_cgroup_resolve(drv->settings.cgroup, &drv->cg, &why, &err) < 0)
        goto error;
    /* Absolute: bwrap gets these paths, and the gateway may chdir. */
    resolved = realpath(state_dir, real) != NULL;
    drv->state_dir = strdup(resolved ? real : state_dir);
    if (resolved)
        drv->state_dir_real = strdup(real);
    if (drv->state_dir == NULL) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto error;
    }
    if (!drv->settings.user_auto) {
        drv->run_uid = (uid_t)drv->settings.user_uid;
        drv->run_gid = (gid_t)drv->settings.user_gid;
    } else if (geteuid() == 0) {
        drv->run_uid = PROCESS_NOBODY_UID;
        drv->run_gid = PROCESS_NOBODY_GID;
    } else {
        drv->run_uid = geteuid();
        drv->run_gid = getegid();
    }
    if (drv->run_uid == 0)
        LOG(drv, SG_DRIVER_LOG_WARN,
            "sandboxes run as host root (user \"0:0\"): they can read "
            "every root-only file their rootfs shows");
    else
        LOG(drv, SG_DRIVER_LOG_INFO, "sandboxes run as uid %u gid %u",
            (unsigned)drv->run_uid, (unsigned)drv->run_gid);
    if (drv->cg.parent != NULL)
        LOG(drv, SG_DRIVER_LOG_INFO,
            "per-sandbox cgroups under %s (memory.max: %s, pids.max: %s); "
            "rlimits as well",
            drv->cg.parent, drv->cg.memory ? "yes" : "no",
            drv->cg.pids ? "yes" : "no");
    else
        LOG(drv, SG_DRIVER_LOG_INFO, "no cgroups (%s); limits are rlimits only",
            why != NULL ? why : "unavailable");
    if (drv->cg.parent == NULL || !drv->cg.pids)
        LOG(drv, SG_DRIVER_LOG_WARN,
            "no cgroup pids controller: the pids limit is not enforced");
    /* Last: the scan makes handles, and cannot fail after opendir. */
    if (scan_state_dir(drv, &err) < 0)
        goto error;
    return 0;
 error:
    *errmsg = host->strdup(err.message);
    sg_error_reset(&err);
    process_settings_clear(&drv->settings);
    process_cgroup_clear(&drv->cg);
    free(drv->state_dir);
    free(drv->state_dir_real);
    drv->state_dir = NULL;
    drv->state_dir_real = NULL;
    return -1;
}

static void pd_close(void *priv)
{
    struct pd_driver *drv = priv;

    drv->closing = true;
    while (drv->deferred != NULL) {
        struct pd_deferred *d = drv->deferred;

        deferred_unlink(d);
        uv_close((uv_handle_t *)&d->timer, deferred_free);
    }
    while (drv->sandboxes != NULL)
        sandbox_destroy(drv->sandboxes);
    process_settings_clear(&drv->settings);
    process_cgroup_clear(&drv->cg);
    free(drv->state_dir);
    free(drv->state_dir_real);
    drv->state_dir = NULL;
    drv->state_dir_real = NULL;
    drv->watch_cb = NULL;
}

/*
 * sb as this host filled it: a host older than ABI 1.3 has no credential
 * fields, so they are read (and passed on) only from a newer one; *copy
 * holds the older fields otherwise.
 */
static const struct sg_driver_sandbox *
sandbox_view(const struct pd_driver *drv, const struct sg_driver_sandbox *sb,
             struct sg_driver_sandbox *copy)
{
    if (drv->host->abi_minor >= 3)
        return sb;
    memset(copy, 0, sizeof(*copy));
    memcpy(copy, sb, offsetof(struct sg_driver_sandbox, credentials));
    return copy;
}

static int pd_validate(void *priv, const struct sg_driver_sandbox *sb,
                       char **errmsg)
{
    struct pd_driver *drv = priv;
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver_sandbox copy;

    sb = sandbox_view(drv, sb, &copy);
    if (process_sandbox_check(&drv->settings, sb, NULL, &err) < 0) {
        *errmsg = host_strdup_msg(drv, err.message);
        sg_error_reset(&err);
        return -1;
    }
    return 0;
}

static int pd_describe(void *priv, const struct sg_driver_sandbox *sb,
                       struct sg_driver_placement *out, char **errmsg)
{
    struct pd_driver *drv = priv;
    struct sg_error err = SG_ERROR_INIT;
    struct process_block b = {0};
    int ret = -1;

    if (process_block_load(&drv->settings, sb->config_json, &b, &err) < 0) {
        *errmsg = host_strdup_msg(drv, err.message);
        goto cleanup;
    }
    /* No namespace, service account or allocation mode: one way to run.
       The memory limit the caller asks for is a resource ceiling's
       concern (CPU here is seconds of time, not a share of cores). */
    out->memory_bytes = b.limits.memory_bytes;
    if (b.n_fields > 0) {
        out->fields = drv->host->alloc(b.n_fields * sizeof(char *));
        if (out->fields == NULL)
            goto nomem;
        for (size_t i = 0; i < b.n_fields; i++) {
            out->fields[i] = drv->host->strdup(b.fields[i]);
            if (out->fields[i] == NULL)
                goto nomem;
            out->n_fields = i + 1;
        }
    }
    ret = 0;
    goto cleanup;
 nomem:
    *errmsg = host_strdup_msg(drv, "process: out of memory");
 cleanup:
    process_block_clear(&b);
    sg_error_reset(&err);
    return ret;
}

static int pd_create(void *priv, const struct sg_driver_sandbox *sb,
                     sg_driver_done_cb done, void *opaque)
{
    struct pd_driver *drv = priv;
    struct sg_error err = SG_ERROR_INIT;
    struct process_block b = {0};
    struct sg_driver_sandbox copy;
    struct pd_sandbox *s;
    int ret;

    if (drv->closing)
        return -1;
    sb = sandbox_view(drv, sb, &copy);
    if (!process_id_valid(sb->id))
        return defer_error(drv, SG_DRIVER_ERR_INVALID,
                           "process: invalid sandbox id", done, opaque);
    /* An existing sandbox keeps what it was given: material is ignored. */
    s = find_sandbox(drv, sb->id);
    if (s != NULL) {
        if (s->removing)
            return defer_error(drv, SG_DRIVER_ERR_RETRY,
                               "process: the sandbox is being removed", done,
                               opaque);
        return defer_report(drv, sb->id, done, opaque);
    }
    if (process_sandbox_check(&drv->settings, sb, &b, &err) < 0) {
        ret =
            defer_error(drv, SG_DRIVER_ERR_INVALID, err.message, done, opaque);
        goto cleanup;
    }
    s = sandbox_new(drv, sb->id);
    if (s == NULL) {
        ret = defer_error(drv, SG_DRIVER_ERR_RETRY, "process: out of memory",
                          done, opaque);
        goto cleanup;
    }
    if (sandbox_start(s, sb, &b, &err) < 0) {
        LOG(drv, SG_DRIVER_LOG_WARN, "%s: %s", sb->id, err.message);
        sandbox_destroy(s);
        ret = defer_error(drv,
                          err.code == SG_ERR_INVALID_ARGUMENT
                              ? SG_DRIVER_ERR_INVALID
                              : SG_DRIVER_ERR_RETRY,
                          err.message, done, opaque);
        goto cleanup;
    }
    ret = defer_report(drv, sb->id, done, opaque);
    if (ret < 0) {
        /* No answer can come: do not leave a sandbox the caller does not
           know about running. */
        force_stop(s);
    }
 cleanup:
    process_block_clear(&b);
    sg_error_reset(&err);
    return ret;
}

static int pd_remove(void *priv, const char *id, const char *backend_object,
                     uint32_t grace_ms, sg_driver_done_cb done, void *opaque)
{
    struct pd_driver *drv = priv;
    struct pd_sandbox *s;
    struct pd_waiter *w;

    if (drv->closing)
        return -1;
    s = process_id_valid(id) ? find_sandbox(drv, id) : NULL;
    if (s == NULL)
        return defer_report(drv, id, done, opaque);
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -1;
    w->done = done;
    w->opaque = opaque;
    w->next = s->waiters;
    s->waiters = w;
    if (s->removing)
        return 0;
    s->removing = true;
    s->grace_ms = grace_ms != 0 ? grace_ms : s->rec.grace_period_ms;
    stop_probe(s);
    LOG(drv, SG_DRIVER_LOG_INFO, "%s: removing (grace %u ms)", s->id,
        s->grace_ms);
    if (s->phase == PD_STOPPED || s->pidfd < 0)
        uv_timer_start(&s->kill_timer, on_cleanup_retry, 0, 0); /* not here */
    else
        terminate(s);
    return 0;
}

static int pd_get(void *priv, const char *id, const char *backend_object,
                  sg_driver_done_cb done, void *opaque)
{
    struct pd_driver *drv = priv;

    if (drv->closing)
        return -1;
    return defer_report(drv, id, done, opaque);
}

static int pd_list(void *priv, sg_driver_list_cb done, void *opaque)
{
    struct pd_driver *drv = priv;

    if (drv->closing)
        return -1;
    return defer(drv, PD_DEFER_LIST, NULL, SG_DRIVER_OK, "", NULL, done,
                 opaque);
}

static int pd_watch(void *priv, sg_driver_watch_cb cb, void *opaque,
                    char **errmsg)
{
    struct pd_driver *drv = priv;

    if (drv->watch_cb != NULL) {
        *errmsg = host_strdup_msg(drv, "process: a watcher is registered");
        return -1;
    }
    drv->watch_cb = cb;
    drv->watch_opaque = opaque;
    return 0;
}

const struct sg_driver_ops sg_process_driver = {
    .abi_major = SG_DRIVER_ABI_MAJOR,
    .abi_minor = SG_DRIVER_ABI_MINOR,
    .struct_size = sizeof(struct sg_driver_ops),
    .name = DRIVER_NAME,
    .caps = SG_DRIVER_CAP_WATCH | SG_DRIVER_CAP_LOGS | SG_DRIVER_CAP_NETWORK |
            SG_DRIVER_CAP_SURVIVES_RESTART | SG_DRIVER_CAP_CREDENTIALS,
    .priv_size = sizeof(struct pd_driver),
    .open = pd_open,
    .close = pd_close,
    .config_validate = pd_validate,
    .describe = pd_describe,
    .create = pd_create,
    .remove = pd_remove,
    .get = pd_get,
    .list = pd_list,
    .watch = pd_watch,
};
