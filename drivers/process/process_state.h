/*
 * process_state.h: what the process driver keeps on disk for a sandbox,
 * and what it reads from /proc.
 *
 * <state_dir>/<id>/
 *   sandbox.json   the record (struct process_record), replaced atomically
 *   status.json    bwrap's --json-status-fd output: {"child-pid": N, ...}
 *                  once the sandbox runs, {"exit-code": N} when it ends;
 *                  bwrap writes it itself, so it is right even when the
 *                  gateway was down
 *   stdout.fifo, stderr.fifo   the sandbox's stdout/stderr (see
 *                  process_logs.h)
 *   stdout.log, stderr.log     what the driver captured from them
 *   work/          the sandbox's private writable directory (/work inside)
 *
 * The record holds no env values: the readiness command runs with a clean
 * environment, so nothing the caller marked secret reaches the disk here.
 *
 * THREAD SAFETY: functions of their arguments; any thread.
 */
#ifndef SG_PROCESS_STATE_H
#define SG_PROCESS_STATE_H

#include "internal.h"
#include "error.h"

#include "process_config.h"

#include <sys/types.h>

struct process_record {
    char *id;
    pid_t bwrap_pid;           /* the outer bwrap (our child); 0 unknown */
    uint64_t bwrap_start_time; /* /proc/<pid>/stat field 22 */
    pid_t pid;                 /* the sandbox's PID 1 (host pid); 0 unknown */
    uint64_t start_time;
    char *cgroup; /* per-sandbox cgroup dir, or NULL */
    char *rootfs;
    char *chdir;
    bool network;
    uint32_t grace_period_ms;
    struct process_limits limits;
    struct process_readiness readiness;
    bool ready;     /* readiness passed (or there is none) */
    bool has_final; /* the driver already reported it stopped */
    char *final_reason;
    char *final_message;
    int final_exit_code;
    int64_t created_at; /* unix seconds */
};

/* Write dir/sandbox.json atomically (temporary file and rename). */
int process_record_save(const struct process_record *r, const char *dir,
                        struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Read dir/sandbox.json into *r (zero-filled by the caller; release with
 * process_record_clear, also on error). Returns 0, or -1 with err set.
 */
int process_record_load(const char *dir, struct process_record *r,
                        struct sg_error *err) SG_WARN_UNUSED_RESULT;

void process_record_clear(struct process_record *r);

/* Copy a readiness block (deep). Returns 0 or -1 (out of memory). */
int process_readiness_copy(struct process_readiness *dst,
                           const struct process_readiness *src)
    SG_WARN_UNUSED_RESULT;
void process_readiness_clear(struct process_readiness *r);

/* What bwrap wrote into status.json so far. */
struct process_bwrap_status {
    pid_t child_pid; /* 0 until written */
    uint64_t pid_ns; /* inode of the sandbox's PID namespace, 0 unknown */
    bool has_exit_code;
    int exit_code;
};

/* Parse dir/status.json; a missing file or a partial line is not an error. */
void process_status_read(const char *dir, struct process_bwrap_status *out);

/*
 * Start time (field 22 of /proc/<pid>/stat) and state letter of pid.
 * Returns 0, or -1 when there is no such process.
 */
int process_proc_stat(pid_t pid, uint64_t *start_time, char *state);

/*
 * True when pid exists, is not a zombie, and started at start_time: the
 * defence against PID reuse.
 */
bool process_proc_matches(pid_t pid, uint64_t start_time);

/*
 * True when pid is alive (not a zombie) and a member of the PID namespace
 * with inode ns: how a PID bwrap reported is told from a reused one.
 */
bool process_pid_in_ns(pid_t pid, uint64_t ns);

/* Whether a path is a valid sandbox id (also a safe file name). */
bool process_id_valid(const char *id);

/*
 * Remove path and everything below it without following symbolic links
 * (the work directory's contents are the sandbox's). Missing is success.
 * Returns 0, or -1 with errno set. May take long: not on the loop thread.
 */
int process_rm_rf(const char *path);

#endif /* SG_PROCESS_STATE_H */
