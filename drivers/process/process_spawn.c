/*
 * process_spawn.c: bwrap invocation, the child side of fork, cgroup v2 and
 * signalling helpers.
 */
#include "internal.h"

#include "process_spawn.h"
#include "buf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "process_state.h"

/* The descriptors bwrap starts with: 0..2, the args memfd (3), the
   status file (4), then one memfd per credential file. */
#define CHILD_FD_ARGS 3
#define CHILD_FD_STATUS 4
#define CHILD_FD_CREDS 5
#define CHILD_N_FDS (CHILD_FD_CREDS + PROCESS_MAX_CREDENTIALS)
/* Where the child parks descriptors before moving them to 0..n-1. */
#define CHILD_FD_PARK 64

_Static_assert(CHILD_FD_PARK >= CHILD_N_FDS,
               "parked descriptors must not land on their targets");

/* ---- arguments ---- */

static void add_arg(struct sg_buf *b, const char *s)
{
    sg_buf_add(b, s, strlen(s) + 1);
}

static bool skipped_top_entry(const char *name)
{
    static const char *const skip[] = {"dev", "proc", "tmp", "run", "work"};

    if (STREQ(name, ".") || STREQ(name, ".."))
        return true;
    for (size_t i = 0; i < SG_N_ELEMENTS(skip); i++) {
        if (STREQ(name, skip[i]))
            return true;
    }
    return false;
}

/* One bind (or symlink) per top-level entry of rootfs. */
static int add_rootfs(struct sg_buf *b, const char *rootfs,
                      struct sg_error *err)
{
    DIR *d = opendir(rootfs);
    struct dirent *e;
    char buf[128];

    if (d == NULL) {
        sg_error_report(err, SG_ERR_IO, "process: cannot read rootfs '%s': %s",
                        rootfs, sg_strerror(errno, buf, sizeof(buf)));
        return -1;
    }
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        struct stat st;
        char src[4200];
        char dst[300];

        if (skipped_top_entry(e->d_name))
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        snprintf(dst, sizeof(dst), "/%s", e->d_name);
        if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t n =
                readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);

            if (n <= 0)
                continue;
            target[n] = '\0';
            add_arg(b, "--symlink");
            add_arg(b, target);
            add_arg(b, dst);
            continue;
        }
        snprintf(src, sizeof(src), "%s%s%s", rootfs,
                 rootfs[strlen(rootfs) - 1] == '/' ? "" : "/", e->d_name);
        add_arg(b, "--ro-bind");
        add_arg(b, src);
        add_arg(b, dst);
    }
    closedir(d);
    return 0;
}

/*
 * One read-only file per FILE binding, from the memfd the child puts at
 * CHILD_FD_CREDS + j (bwrap copies it into its own tmpfs and binds the
 * copy). On the command line, not in the args memfd: bwrap runs its
 * options in order and "--args 3" comes first, while these must follow
 * the tmpfs they land in; the paths and descriptor numbers are not
 * secret.
 */
static void add_cred_files(const struct process_launch *l, struct sg_buf *b)
{
    int fd = CHILD_FD_CREDS;

    for (size_t i = 0; i < l->n_credentials; i++) {
        char num[16];

        if (l->credentials[i].delivery != SG_DRIVER_DELIVER_FILE)
            continue;
        snprintf(num, sizeof(num), "%d", fd++);
        add_arg(b, "--perms");
        add_arg(b, "0400");
        add_arg(b, "--ro-bind-data");
        add_arg(b, num);
        add_arg(b, l->credentials[i].target);
    }
}

/*
 * The options for bwrap: the environment goes to env (read by bwrap from
 * the memfd; write_args_memfd adds the ENV bindings), everything else to
 * b (bwrap's command line, where an operator's ps shows the mounts).
 */
static int build_args(const struct process_launch *l, struct sg_buf *b,
                      struct sg_buf *env, struct sg_error *err)
{
    add_arg(b, "--unshare-user");
    add_arg(b, "--disable-userns");
    add_arg(b, "--unshare-pid");
    add_arg(b, "--unshare-ipc");
    add_arg(b, "--unshare-uts");
    add_arg(b, "--unshare-cgroup-try");
    if (!l->network && l->netns_fd < 0)
        add_arg(b, "--unshare-net");
    if (add_rootfs(b, l->rootfs, err) < 0)
        return -1;
    add_arg(b, "--dev");
    add_arg(b, "/dev");
    add_arg(b, "--proc");
    add_arg(b, "/proc");
    add_arg(b, "--tmpfs");
    add_arg(b, "/tmp");
    add_arg(b, "--tmpfs");
    add_arg(b, "/run");
    if (l->hide_dir != NULL) {
        add_arg(b, "--tmpfs");
        add_arg(b, l->hide_dir);
    }
    add_cred_files(l, b);
    add_arg(b, "--dir");
    add_arg(b, "/work");
    add_arg(b, "--bind");
    add_arg(b, l->work_dir);
    add_arg(b, "/work");
    add_arg(b, "--remount-ro");
    add_arg(b, "/");
    add_arg(b, "--chdir");
    add_arg(b, l->chdir);
    add_arg(b, "--new-session");
    if (l->probe)
        add_arg(b, "--die-with-parent");
    add_arg(env, "--clearenv");
    for (size_t i = 0; i < l->n_env; i++) {
        add_arg(env, "--setenv");
        add_arg(env, l->env_names[i]);
        add_arg(env, l->env_values[i]);
    }
    if (l->hostname != NULL) {
        add_arg(b, "--hostname");
        add_arg(b, l->hostname);
    }
    if (l->status_fd >= 0) {
        add_arg(b, "--json-status-fd");
        add_arg(b, "4");
    }
    add_arg(b, "--cap-drop");
    add_arg(b, "ALL");
    if (sg_buf_error(b) < 0 || sg_buf_error(env) < 0) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    return 0;
}

static bool write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static int memfd_new(const char *name, struct sg_error *err)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    char buf[128];

    if (fd < 0)
        sg_error_report(err, SG_ERR_IO, "process: memfd_create: %s",
                        sg_strerror(errno, buf, sizeof(buf)));
    return fd;
}

/*
 * The args memfd: env, then "--setenv NAME VALUE" for each ENV binding,
 * written straight from the borrowed material, so that the driver's
 * memory never holds a copy of it.
 */
static int write_args_memfd(const struct process_launch *l,
                            const struct sg_buf *env, struct sg_error *err)
{
    int fd = memfd_new("sandgate-bwrap-args", err);
    bool ok;

    if (fd < 0)
        return -1;
    ok = write_all(fd, env->data, env->len);
    for (size_t i = 0; ok && i < l->n_credentials; i++) {
        const struct sg_driver_credential *c = &l->credentials[i];

        if (c->delivery != SG_DRIVER_DELIVER_ENV)
            continue;
        ok = write_all(fd, "--setenv", sizeof("--setenv")) &&
             write_all(fd, c->target, strlen(c->target) + 1) &&
             write_all(fd, c->material, c->material_len) &&
             write_all(fd, "", 1);
    }
    if (!ok || lseek(fd, 0, SEEK_SET) < 0) {
        sg_error_report(err, SG_ERR_IO,
                        "process: cannot write bwrap arguments");
        close(fd);
        return -1;
    }
    return fd;
}

/* A memfd holding the material of FILE binding c, rewound. */
static int write_cred_memfd(const struct sg_driver_credential *c,
                            struct sg_error *err)
{
    int fd = memfd_new("sandgate-credential", err);

    if (fd < 0)
        return -1;
    if (!write_all(fd, c->material, c->material_len) ||
        lseek(fd, 0, SEEK_SET) < 0) {
        sg_error_report(err, SG_ERR_IO,
                        "process: cannot write a credential file");
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the child, between fork and exec: async-signal-safe calls only ---- */

struct child_plan {
    const char *bwrap;
    char *const *argv;
    const struct process_limits *limits;
    int fds[CHILD_N_FDS]; /* fds[i] becomes i; -1 for none */
    int n_fds;
    int cgroup_procs_fd;
    int netns_fd;
    int sync_fd;
    int sync_wfd;
    bool probe;
    pid_t parent;
    uid_t uid;
    gid_t gid;
    const char *work_dir;
    const char *reach_dir; /* see child_reach; NULL: nothing to do */
};

static void child_say(int fd, const char *msg)
{
    if (fd >= 0 && write(fd, msg, strlen(msg)) < 0)
        return;
}

static void child_limit(int resource, uint64_t value)
{
    struct rlimit rl;

    if (value == 0)
        return;
    rl.rlim_cur = (rlim_t)value;
    rl.rlim_max = (rlim_t)value;
    (void)setrlimit(resource, &rl);
}

/*
 * Make p->work_dir reachable by path for the sandbox user, in a mount
 * namespace of the child's own: a tmpfs over reach_dir (the first
 * ancestor it cannot search), the path down to the work dir recreated in
 * it, and the work dir bound there, through a descriptor taken before
 * the tmpfs covered it. Returns false on failure.
 */
static bool child_reach(const struct child_plan *p)
{
    char path[PATH_MAX];
    char src[32] = "/proc/self/fd/";
    size_t len = strlen(p->work_dir);
    size_t start = strlen(p->reach_dir);
    char digits[12];
    int nd = 0;
    int fd;

    if (len >= sizeof(path) || start >= len)
        return false;
    if (unshare(CLONE_NEWNS) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        return false;
    fd = open(p->work_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    if (mount("sandgate", p->reach_dir, "tmpfs", MS_NOSUID | MS_NODEV,
              "mode=0755") < 0)
        return false;
    memcpy(path, p->work_dir, len + 1);
    for (size_t i = start + 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        path[i] = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return false;
        path[i] = i == len ? '\0' : '/';
    }
    for (int v = fd; nd == 0 || v > 0; v /= 10)
        digits[nd++] = (char)('0' + v % 10);
    for (size_t k = strlen(src); nd > 0; k++)
        src[k] = digits[--nd];
    if (mount(src, p->work_dir, NULL, MS_BIND, NULL) < 0)
        return false;
    (void)close(fd);
    return true;
}

SG_NORETURN static void child_exec(const struct child_plan *p)
{
    static char *const empty_env[] = {NULL};
    struct sigaction sa;
    sigset_t none;
    int parked[CHILD_N_FDS];
    int errfd = p->fds[2];

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &sa, NULL);
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    (void)setsid();
    if (p->probe) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != p->parent)
            _exit(127);
    }
    if (p->sync_fd >= 0) {
        char c;
        ssize_t n;

        /* Else this copy of the write end would keep the pipe open
           forever if the gateway died before writing. */
        if (p->sync_wfd >= 0)
            (void)close(p->sync_wfd);
        do {
            n = read(p->sync_fd, &c, 1);
        } while (n < 0 && errno == EINTR);
        if (n != 1)
            _exit(127); /* the gateway went away before recording us */
    }
    if (p->cgroup_procs_fd >= 0 && write(p->cgroup_procs_fd, "0", 1) != 1) {
        child_say(errfd, "sandgate: cannot join the sandbox cgroup\n");
        _exit(126);
    }
    if (p->netns_fd >= 0 && setns(p->netns_fd, CLONE_NEWNET) < 0) {
        child_say(errfd, "sandgate: cannot join the sandbox network\n");
        _exit(126);
    }
    if (p->reach_dir != NULL && !child_reach(p)) {
        child_say(errfd, "sandgate: cannot bind the work directory\n");
        _exit(126);
    }
    for (int i = 0; i < p->n_fds; i++) {
        parked[i] = -1;
        if (p->fds[i] >= 0) {
            parked[i] = fcntl(p->fds[i], F_DUPFD, CHILD_FD_PARK);
            if (parked[i] < 0)
                _exit(126);
        }
    }
    for (int i = 0; i < p->n_fds; i++) {
        if (parked[i] >= 0 && dup2(parked[i], i) < 0)
            _exit(126);
    }
    if (syscall(SYS_close_range, (unsigned)p->n_fds, ~0U, 0U) < 0) {
        struct rlimit rl;
        int max = 65536;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536)
            max = (int)rl.rlim_cur;
        for (int fd = p->n_fds; fd < max; fd++)
            (void)close(fd);
    }
    /* No RLIMIT_NPROC for pids: it counts every process of the uid on the
       host, and sandboxes share theirs, so it would cap all sandboxes
       together (and fail a sandbox's start while others run). The pids
       limit is the cgroup's pids.max. */
    child_limit(RLIMIT_AS, p->limits->memory_bytes);
    child_limit(RLIMIT_CPU, p->limits->cpu_seconds);
    child_limit(RLIMIT_NOFILE, p->limits->open_files);
    child_limit(RLIMIT_FSIZE, p->limits->file_size_bytes);
    if (p->uid != getuid() || p->uid != geteuid() || p->gid != getgid() ||
        p->gid != getegid()) {
        if (setgroups(0, NULL) < 0) {
            child_say(2, "sandgate: cannot drop supplementary groups\n");
            _exit(126);
        }
        if (setgid(p->gid) < 0) {
            child_say(2, "sandgate: cannot change to the sandbox gid\n");
            _exit(126);
        }
        if (setuid(p->uid) < 0) {
            child_say(2, "sandgate: cannot change to the sandbox uid\n");
            _exit(126);
        }
        /* A change of credentials clears the parent-death signal. */
        if (p->probe) {
            (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != p->parent)
                _exit(127);
        }
    }
    execve(p->bwrap, p->argv, empty_env);
    child_say(2, "sandgate: cannot execute bwrap\n");
    _exit(127);
}

int process_launch_start(const struct process_launch *l, pid_t *pid,
                         struct sg_error *err)
{
    struct sg_buf args = SG_BUF_INIT;
    struct sg_buf env = SG_BUF_INIT;
    struct child_plan plan;
    char **argv = NULL;
    size_t n_opts = 0;
    size_t k;
    int argsfd = -1;
    int nullfd = -1;
    int credfds[PROCESS_MAX_CREDENTIALS];
    int n_credfds = 0;
    char buf[128];
    pid_t child;
    int ret = -1;

    if (l->n_credentials > PROCESS_MAX_CREDENTIALS) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "process: at most %d credentials per sandbox",
                        PROCESS_MAX_CREDENTIALS);
        return -1;
    }
    if (build_args(l, &args, &env, err) < 0)
        goto cleanup;
    argsfd = write_args_memfd(l, &env, err);
    if (argsfd < 0)
        goto cleanup;
    for (size_t i = 0; i < l->n_credentials; i++) {
        if (l->credentials[i].delivery != SG_DRIVER_DELIVER_FILE)
            continue;
        credfds[n_credfds] = write_cred_memfd(&l->credentials[i], err);
        if (credfds[n_credfds] < 0)
            goto cleanup;
        n_credfds++;
    }
    for (size_t i = 0; i < args.len; i++)
        n_opts += args.data[i] == '\0';
    nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nullfd < 0) {
        sg_error_report(err, SG_ERR_IO, "process: cannot open /dev/null: %s",
                        sg_strerror(errno, buf, sizeof(buf)));
        goto cleanup;
    }
    argv = calloc(n_opts + l->argc + 5, sizeof(char *));
    if (argv == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    /* bwrap --args 3 (the environment) <options> -- <command> */
    argv[0] = (char *)l->bwrap;
    argv[1] = (char *)"--args";
    argv[2] = (char *)"3";
    k = 3;
    for (size_t off = 0; off < args.len; off += strlen(args.data + off) + 1)
        argv[k++] = args.data + off;
    argv[k++] = (char *)"--";
    for (size_t i = 0; i < l->argc; i++)
        argv[k++] = (char *)l->argv[i];

    memset(&plan, 0, sizeof(plan));
    plan.bwrap = l->bwrap;
    plan.argv = argv;
    plan.limits = l->limits;
    plan.fds[0] = nullfd;
    plan.fds[1] = l->stdout_fd >= 0 ? l->stdout_fd : nullfd;
    plan.fds[2] = l->stderr_fd >= 0 ? l->stderr_fd : nullfd;
    plan.fds[CHILD_FD_ARGS] = argsfd;
    plan.fds[CHILD_FD_STATUS] = l->status_fd;
    for (int i = 0; i < n_credfds; i++)
        plan.fds[CHILD_FD_CREDS + i] = credfds[i];
    plan.n_fds = CHILD_FD_CREDS + n_credfds;
    plan.cgroup_procs_fd = l->cgroup_procs_fd;
    plan.netns_fd = l->netns_fd;
    plan.sync_fd = l->sync_fd;
    plan.sync_wfd = l->sync_wfd;
    plan.probe = l->probe;
    plan.parent = getpid();
    plan.uid = l->uid;
    plan.gid = l->gid;
    plan.work_dir = l->work_dir;
    plan.reach_dir = l->reach_dir;

    child = fork();
    if (child < 0) {
        sg_error_report(err, errno == EAGAIN ? SG_ERR_UNAVAILABLE : SG_ERR_IO,
                        "process: fork: %s",
                        sg_strerror(errno, buf, sizeof(buf)));
        goto cleanup;
    }
    if (child == 0)
        child_exec(&plan);
    *pid = child;
    ret = 0;
 cleanup:
    /* The child has its copies; the material lives on only there. */
    free(argv);
    if (argsfd >= 0)
        close(argsfd);
    for (int i = 0; i < n_credfds; i++)
        close(credfds[i]);
    if (nullfd >= 0)
        close(nullfd);
    sg_buf_free(&args);
    /* spec.env values may be the tenant's secrets too. */
    if (env.data != NULL)
        explicit_bzero(env.data, env.cap);
    sg_buf_free(&env);
    return ret;
}

int process_blocking_dir(const char *path, uid_t uid, gid_t gid, char **out,
                         struct sg_error *err)
{
    size_t len = strlen(path);
    char *prefix = NULL;
    char buf[128];

    *out = NULL;
    if (uid == 0 || path[0] != '/')
        return 0;
    prefix = strdup(path);
    if (prefix == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    /* Each ancestor below "/", shallowest first. */
    for (size_t i = 1; i < len; i++) {
        struct stat st;
        mode_t bit;

        if (path[i] != '/')
            continue;
        prefix[i] = '\0';
        if (stat(prefix, &st) < 0) {
            sg_error_report(err, SG_ERR_IO, "process: cannot examine '%s': %s",
                            prefix, sg_strerror(errno, buf, sizeof(buf)));
            free(prefix);
            return -1;
        }
        if (st.st_uid == uid)
            bit = S_IXUSR;
        else if (st.st_gid == gid)
            bit = S_IXGRP;
        else
            bit = S_IXOTH;
        if ((st.st_mode & bit) == 0) {
            *out = prefix;
            return 0;
        }
        prefix[i] = '/';
    }
    free(prefix);
    return 0;
}

/* ---- pidfd and signals ---- */

int process_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int process_pidfd_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

bool process_pidfd_exited(int pidfd)
{
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};

    return poll(&pfd, 1, 0) > 0;
}

static bool parse_pid(const char *s, pid_t *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v <= 0 || v > INT32_MAX)
        return false;
    *out = (pid_t)v;
    return true;
}

int process_signal_pidns(pid_t init_pid, uint64_t init_start, int sig)
{
    char path[64];
    struct stat ns;
    DIR *d;
    struct dirent *e;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)init_pid);
    if (stat(path, &ns) < 0)
        return 0;
    /* The namespace we looked at must still be the sandbox's. */
    if (!process_proc_matches(init_pid, init_start))
        return 0;
    d = opendir("/proc");
    if (d == NULL)
        return 0;
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        struct stat st;
        pid_t p;

        if (!parse_pid(e->d_name, &p) || p == init_pid)
            continue;
        snprintf(path, sizeof(path), "%d/ns/pid", (int)p);
        if (fstatat(dirfd(d), path, &st, 0) < 0)
            continue;
        if (st.st_ino == ns.st_ino && st.st_dev == ns.st_dev &&
            kill(p, sig) == 0)
            n++;
    }
    closedir(d);
    return n;
}

int process_signal_children(pid_t pid, int sig)
{
    char path[96];
    char text[4096];
    char *p;
    int fd;
    ssize_t len;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid,
             (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    len = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (len <= 0)
        return 0;
    text[len] = '\0';
    p = text;
    while (*p != '\0') {
        char *end;
        long v;

        errno = 0;
        v = strtol(p, &end, 10);
        if (end == p || errno != 0)
            break;
        if (v > 0 && v <= INT32_MAX && kill((pid_t)v, sig) == 0)
            n++;
        p = end;
        while (*p == ' ' || *p == '\n')
            p++;
    }
    return n;
}

/* ---- cgroup v2 ---- */

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;
    int saved;

    if (fd < 0)
        return -1;
    n = write(fd, text, strlen(text));
    saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int read_text(const char *path, char *out, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = read(fd, out, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    out[n] = '\0';
    return 0;
}

static bool has_word(const char *text, const char *word)
{
    size_t wl = strlen(word);
    const char *p = text;

    while ((p = strstr(p, word)) != NULL) {
        bool start = p == text || p[-1] == ' ' || p[-1] == '\n';
        bool end = p[wl] == '\0' || p[wl] == ' ' || p[wl] == '\n';

        if (start && end)
            return true;
        p += wl;
    }
    return false;
}

static bool is_cgroup2(const char *path)
{
    struct statfs sf;

    return statfs(path, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
}

/* The cgroup2 mount point (from mountinfo) and our cgroup in it. */
static char *derive_cgroup_dir(void)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096];
    char mnt[4096] = "";
    char own[4096] = "";
    char *out = NULL;

    if (f == NULL)
        return NULL;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *sep = strstr(line, " - cgroup2 ");
        char *p = line;

        if (sep == NULL)
            continue;
        /* Field 5 is the mount point. */
        for (int i = 0; i < 4 && p != NULL; i++) {
            p = strchr(p, ' ');
            if (p != NULL)
                p++;
        }
        if (p != NULL) {
            char *end = strchr(p, ' ');

            if (end != NULL && end - p < (long)sizeof(mnt) &&
                memchr(p, '\\', (size_t)(end - p)) == NULL) {
                memcpy(mnt, p, (size_t)(end - p));
                mnt[end - p] = '\0';
                break;
            }
        }
    }
    fclose(f);
    if (mnt[0] == '\0')
        return NULL;
    f = fopen("/proc/self/cgroup", "re");
    if (f == NULL)
        return NULL;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (STRPREFIX(line, "0::")) {
            size_t n = strcspn(line + 3, "\n");

            if (n < sizeof(own)) {
                memcpy(own, line + 3, n);
                own[n] = '\0';
            }
            break;
        }
    }
    fclose(f);
    if (own[0] != '/')
        return NULL;
    if (STREQ(own, "/"))
        own[0] = '\0';
    out = malloc(strlen(mnt) + strlen(own) + 1);
    if (out != NULL) {
        memcpy(out, mnt, strlen(mnt) + 1);
        memcpy(out + strlen(mnt), own, strlen(own) + 1);
    }
    return out;
}

static void enable_controllers(struct process_cgroup *cg)
{
    char path[4200];
    char avail[1024];
    char enabled[1024];

    snprintf(path, sizeof(path), "%s/cgroup.controllers", cg->parent);
    if (read_text(path, avail, sizeof(avail)) < 0)
        return;
    snprintf(path, sizeof(path), "%s/cgroup.subtree_control", cg->parent);
    /* Refused (EBUSY) when the parent itself holds processes. */
    if (has_word(avail, "memory"))
        (void)write_text(path, "+memory");
    if (has_word(avail, "pids"))
        (void)write_text(path, "+pids");
    if (read_text(path, enabled, sizeof(enabled)) < 0)
        return;
    cg->memory = has_word(enabled, "memory");
    cg->pids = has_word(enabled, "pids");
}

int process_cgroup_resolve(const char *setting, struct process_cgroup *cg,
                           const char **why, struct sg_error *err)
{
    char *dir = NULL;

    memset(cg, 0, sizeof(*cg));
    *why = NULL;
    if (STREQ(setting, "off")) {
        *why = "disabled by the settings";
        return 0;
    }
    if (STREQ(setting, "auto")) {
        dir = derive_cgroup_dir();
        if (dir == NULL) {
            *why = "no cgroup v2 hierarchy holds the gateway";
            return 0;
        }
        if (!is_cgroup2(dir) || access(dir, W_OK) < 0) {
            *why = "the gateway's cgroup v2 directory is not writable";
            free(dir);
            return 0;
        }
    } else {
        if (!is_cgroup2(setting) || access(setting, W_OK) < 0) {
            sg_error_report(err, SG_ERR_CONFIG,
                            "process settings: cgroup: '%s' is not a writable "
                            "cgroup v2 directory",
                            setting);
            return -1;
        }
        dir = strdup(setting);
        if (dir == NULL) {
            sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
            return -1;
        }
        cg->explicit_dir = true;
    }
    cg->parent = dir;
    enable_controllers(cg);
    return 0;
}

void process_cgroup_clear(struct process_cgroup *cg)
{
    if (cg == NULL)
        return;
    free(cg->parent);
    memset(cg, 0, sizeof(*cg));
}

int process_cgroup_create(const struct process_cgroup *cg, const char *id,
                          const struct process_limits *limits, char **path,
                          int *procs_fd, struct sg_error *err)
{
    char dir[4200];
    char file[4300];
    char num[32];
    char buf[128];
    int fd;

    snprintf(dir, sizeof(dir), "%s/sandgate-%s", cg->parent, id);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        sg_error_report(err, SG_ERR_IO, "process: cannot make cgroup '%s': %s",
                        dir, sg_strerror(errno, buf, sizeof(buf)));
        return -1;
    }
    if (cg->memory && limits->memory_bytes != 0) {
        snprintf(file, sizeof(file), "%s/memory.max", dir);
        snprintf(num, sizeof(num), "%llu",
                 (unsigned long long)limits->memory_bytes);
        if (write_text(file, num) < 0)
            goto error;
        snprintf(file, sizeof(file), "%s/memory.swap.max", dir);
        (void)write_text(file, "0");
    }
    if (cg->pids && limits->pids != 0) {
        snprintf(file, sizeof(file), "%s/pids.max", dir);
        snprintf(num, sizeof(num), "%llu", (unsigned long long)limits->pids);
        if (write_text(file, num) < 0)
            goto error;
    }
    snprintf(file, sizeof(file), "%s/cgroup.procs", dir);
    fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        goto error;
    *path = strdup(dir);
    if (*path == NULL) {
        close(fd);
        rmdir(dir);
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    *procs_fd = fd;
    return 0;
 error:
    sg_error_report(err, SG_ERR_IO, "process: cannot set up cgroup '%s': %s",
                    dir, sg_strerror(errno, buf, sizeof(buf)));
    rmdir(dir);
    return -1;
}

void process_cgroup_kill(const char *path)
{
    char file[4200];
    char procs[8192];

    snprintf(file, sizeof(file), "%s/cgroup.kill", path);
    if (write_text(file, "1") == 0)
        return;
    snprintf(file, sizeof(file), "%s/cgroup.procs", path);
    if (read_text(file, procs, sizeof(procs)) == 0) {
        char *p = procs;

        while (*p != '\0') {
            char *end;
            long v = strtol(p, &end, 10);

            if (end == p)
                break;
            if (v > 0 && v <= INT32_MAX)
                kill((pid_t)v, SIGKILL);
            p = end;
            while (*p == '\n')
                p++;
        }
    }
}

int process_cgroup_remove(const char *path, unsigned timeout_ms)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
    unsigned waited = 0;

    for (;;) {
        if (rmdir(path) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY || waited >= timeout_ms)
            return -1;
        process_cgroup_kill(path);
        nanosleep(&pause, NULL);
        waited += 10;
    }
}
