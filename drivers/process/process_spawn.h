/*
 * process_spawn.h: starting bwrap, limits, cgroups, signals.
 *
 * A sandbox is one bwrap invocation, started with fork + execve from the
 * loop thread. Between fork and exec the child only makes async-signal-safe
 * calls (the gateway is multi-threaded): it resets signal dispositions and
 * the mask, calls setsid, optionally waits for the parent's go-ahead on a
 * pipe, joins its cgroup, moves its descriptors into place, closes every
 * other descriptor, sets its rlimits and executes bwrap with an empty
 * environment. The sandbox's environment (--clearenv, --setenv) travels in
 * a memfd that bwrap reads with "--args 3", so no env value shows in
 * /proc/<pid>/cmdline; the other options (mounts, namespaces) and the
 * command are on the command line, where ps shows them.
 *
 * Credential bindings: an ENV one is one more --setenv in that memfd; a
 * FILE one is a memfd of its own holding the material, which the child
 * puts at descriptor 5, 6, ... and which bwrap copies into a 0400 file
 * bound read-only at the target ("--perms 0400 --ro-bind-data FD DEST",
 * after the tmpfs of /run and /tmp). The material is written from the
 * caller's buffer straight into the memfds: no copy of it stays in the
 * gateway's memory or reaches a host file, and the parent closes the
 * memfds once the child has its own.
 *
 * The sandbox's filesystem is bwrap's own tmpfs root with each top-level
 * entry of the rootfs bound read-only (symbolic links recreated), except
 * /dev, /proc and /tmp (fresh), /run (an empty tmpfs: host sockets stay
 * out of reach) and /work (the sandbox's work dir, bound read-write); the
 * driver's own state directory is covered with a tmpfs, and the root is
 * remounted read-only at the end. bwrap sets no_new_privs itself; all
 * capabilities are dropped and new user namespaces are disabled inside.
 *
 * Host identity: when uid/gid differ from the gateway's, the child drops
 * to them (setgroups(0), setgid, setuid) last before exec, after
 * everything that needs root (cgroup, setns, mounts); bwrap then runs
 * unprivileged in its user namespace, so the sandbox gets only what that
 * uid may read. Every descriptor the sandbox side uses (FIFOs, status
 * file, the args memfd) is opened before and inherited. bwrap resolves
 * bind sources by path as that uid (even --bind-fd goes through
 * realpath), and the work dir sits under directories it cannot search:
 * when reach_dir is set, the child, still root, enters a private mount
 * namespace (a slave of the gateway's: nothing propagates back), covers
 * reach_dir (the first ancestor the uid cannot search) with a tmpfs,
 * recreates the path down to the work dir in it and binds the work dir
 * there, through a descriptor opened before the tmpfs hid it. bwrap then
 * finds every path where it was (the state directory is still covered);
 * what reach_dir held stays out of its reach, as it was for the uid.
 *
 * THREAD SAFETY: process_launch_start on the loop thread (fork); the rest
 * on any thread.
 */
#ifndef SG_PROCESS_SPAWN_H
#define SG_PROCESS_SPAWN_H

#include "internal.h"
#include "error.h"

#include "process_config.h"

#include <sys/types.h>

struct process_launch {
    const char *bwrap;
    const char *rootfs;
    const char *hide_dir; /* a path to cover with a tmpfs, or NULL */
    const char *work_dir; /* host path bound at /work */
    const char *reach_dir; /* see above; NULL: bind work_dir directly */
    uid_t uid;             /* host identity of bwrap and the sandbox */
    gid_t gid;
    const char *chdir;    /* inside the sandbox */
    const char *hostname; /* NULL: bwrap's default */
    bool network;         /* share the network namespace we are in */
    bool probe;           /* a readiness probe: dies with the gateway */
    const char *const *argv;
    size_t argc;
    const char *const *env_names;
    const char *const *env_values;
    size_t n_env;
    /* Checked bindings, material set; at most PROCESS_MAX_CREDENTIALS.
       Borrowed for the call. */
    const struct sg_driver_credential *credentials;
    size_t n_credentials;
    const struct process_limits *limits;
    int stdout_fd;       /* -1: /dev/null */
    int stderr_fd;       /* -1: /dev/null */
    int status_fd;       /* bwrap's --json-status-fd, -1: none */
    int cgroup_procs_fd; /* the child writes itself there; -1: none */
    int netns_fd;        /* setns(CLONE_NEWNET) before exec; -1: none */
    int sync_fd;         /* read end: exec only after one byte; -1: none */
    int sync_wfd;        /* its write end, closed first in the child so that
                            the gateway's death reads as EOF; -1: none */
};

/*
 * Fork and exec bwrap as l describes. The descriptors in l stay the
 * caller's. Returns 0 with *pid set, or -1 with err set.
 */
int process_launch_start(const struct process_launch *l, pid_t *pid,
                         struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * The first ancestor of path (an absolute path without symbolic links,
 * "/" excluded) whose mode bits deny search to uid/gid without
 * supplementary groups: where path must be made reachable for them.
 * Returns 0 with *out a malloc'd copy, or with *out NULL when every
 * ancestor is searchable (always for uid 0); -1 with err set when out of
 * memory or an ancestor cannot be examined.
 */
int process_blocking_dir(const char *path, uid_t uid, gid_t gid, char **out,
                         struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* pidfd_open(2); -1 with errno on failure. */
int process_pidfd_open(pid_t pid);
/* pidfd_send_signal(2); 0 or -1 with errno. */
int process_pidfd_signal(int pidfd, int sig);
/* True when the process behind pidfd has exited (poll, no wait). */
bool process_pidfd_exited(int pidfd);

/*
 * Send sig to every process in the PID namespace whose init is init_pid
 * (started at init_start), except init itself. Returns how many were
 * signalled.
 */
int process_signal_pidns(pid_t init_pid, uint64_t init_start, int sig);

/* Send sig to every child of pid (/proc/<pid>/task/<pid>/children). */
int process_signal_children(pid_t pid, int sig);

/* ---- cgroup v2 ---- */

struct process_cgroup {
    char *parent;      /* where per-sandbox cgroups go; NULL: no cgroups */
    bool explicit_dir; /* configured (failures are errors) or derived */
    bool memory;       /* memory.max is available in children */
    bool pids;         /* pids.max is available in children */
};

/*
 * Resolve the "cgroup" setting. "off" and an unusable derived directory
 * leave cg->parent NULL, with *why saying why (static text). A configured
 * directory that is not a writable cgroup v2 directory is an error.
 * Enables the memory and pids controllers for children when it can.
 * Returns 0, or -1 with err set.
 */
int process_cgroup_resolve(const char *setting, struct process_cgroup *cg,
                           const char **why,
                           struct sg_error *err) SG_WARN_UNUSED_RESULT;
void process_cgroup_clear(struct process_cgroup *cg);

/*
 * Make <parent>/sandgate-<id>, write memory.max / pids.max where set and
 * available, and open its cgroup.procs for the child. Returns 0 with
 * *path (malloc'd) and *procs_fd set, or -1 with err set.
 */
int process_cgroup_create(const struct process_cgroup *cg, const char *id,
                          const struct process_limits *limits, char **path,
                          int *procs_fd,
                          struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* SIGKILL everything in the cgroup (cgroup.kill, else one by one). */
void process_cgroup_kill(const char *path);

/*
 * Kill what is left and remove the cgroup, retrying for up to timeout_ms
 * while it drains. Blocks: not on the loop thread. Returns 0 or -1.
 */
int process_cgroup_remove(const char *path, unsigned timeout_ms);

#endif /* SG_PROCESS_SPAWN_H */
