/*
 * process_driver.h: the embedded default driver, "process".
 *
 * Each sandbox is a local process tree isolated with bubblewrap: its own
 * user namespace (no capabilities, no new user namespaces), PID, IPC, UTS, cgroup and
 * (unless the block asks for "network": true) network namespaces, the
 * rootfs read-only, a private writable /work, fresh /tmp, /dev and /proc.
 * Sandboxes outlive the gateway and are adopted again by open().
 *
 * Files and logs: see process_state.h and process_logs.h; the bwrap
 * invocation: process_spawn.h; the schemas: process_config.h.
 *
 * Restart: bwrap runs in a session of its own without --die-with-parent,
 * so closing the driver (or the gateway dying) leaves sandboxes running.
 * open() scans state_dir: a sandbox whose recorded bwrap PID is alive with
 * the recorded start time (field 22 of /proc/<pid>/stat, against PID
 * reuse) is adopted: pidfd, log FIFOs reopened, readiness resumed. Any
 * other is FAILED "Lost" ("process exited while the gateway was down",
 * with the exit code bwrap wrote to status.json if it did); a directory
 * without a usable record is FAILED "Lost" too. list() reports them all,
 * so the reconciler can remove what it has no record of. An adopted bwrap
 * is not our child: its exit status comes from status.json.
 *
 * Readiness: the sandbox is RUNNING once bwrap has recorded its PID 1 in
 * status.json and, if the block has a readiness command, once that
 * command exited 0. The command runs every period_ms (killed after
 * timeout_ms) in a fresh bwrap with the same rootfs, the same /work and
 * working directory, the same limits and cgroup, and the sandbox's own
 * network namespace (the child joins it with setns before exec), so
 * "connect to 127.0.0.1:8080" and "test -f /work/ready" both work; it has
 * its own PID namespace and /tmp, and a clean environment (PATH only), so
 * no env value is kept on disk for it. It dies with the gateway. Probing
 * stops at the first success; failure_threshold consecutive failures
 * before that (0: never give up) make the sandbox FAILED
 * "ReadinessFailed" and stop it. It resumes after a restart.
 *
 * Limits: rlimits on bwrap and everything under it (RLIMIT_AS for
 * memory_bytes, NPROC for pids, CPU, NOFILE, FSIZE), plus memory.max and
 * pids.max in a per-sandbox cgroup v2 directory when one is usable (see
 * process_spawn.h). RLIMIT_NPROC counts every process of the host uid, so
 * with all sandboxes sharing one uid (settings "user"), pids bounds their
 * sum as well as each; pids.max is per sandbox. It is not enforced at all
 * for host root ("user": "0:0").
 *
 * Host identity: bwrap and the sandbox run as the settings' "user" (by
 * default 65534:65534 when the gateway is root), never as host root unless
 * configured, so a root-only file stays unreadable inside. /work is owned
 * by that uid/gid. The gateway, as root, still signals, kills and adopts
 * them.
 *
 * Ops notes:
 *   - config_validate and describe read only the settings decoded by open,
 *     which never change afterwards: they may run on any thread, and
 *     concurrently, once open has returned.
 *   - remove waits grace_ms when the caller gives one, else the sandbox's
 *     grace_period_ms (block, else settings). It sends SIGTERM to every
 *     process of the sandbox's PID namespace, SIGKILL to its PID 1 when the
 *     grace runs out (the kernel then kills the whole namespace), and
 *     reports GONE once bwrap and the namespace are gone and the directory
 *     and cgroup are removed.
 *   - A sandbox whose command ends is FAILED, reason "Exited" (or
 *     "StartFailed" when bwrap never started it, "ReadinessFailed" when the
 *     readiness command failed failure_threshold times, "Lost" when it
 *     ended while the gateway was down). bwrap reports a command killed by
 *     signal S as status 128+S; the message says "killed by signal S".
 */
#ifndef SG_PROCESS_DRIVER_H
#define SG_PROCESS_DRIVER_H

#include <sandgate/driver.h>

/* The ops table (static storage). */
extern const struct sg_driver_ops sg_process_driver;

#endif /* SG_PROCESS_DRIVER_H */
