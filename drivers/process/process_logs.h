/*
 * process_logs.h: capture of a sandbox's stdout and stderr.
 *
 * Each stream is a FIFO in the sandbox directory. The sandbox gets the
 * FIFO opened O_RDWR as its fd 1 or 2, so the pipe always has a reader
 * (the sandbox itself): while the gateway is down, writes fill the pipe
 * buffer (64 KiB) and then block; they never fail with EPIPE or raise
 * SIGPIPE. The driver opens the FIFO O_RDONLY|O_NONBLOCK at create and
 * again after a restart, reads it on the loop with uv_poll, and appends to
 * <stream>.log up to log_max_bytes; past the cap the data is read and
 * dropped, and one line "[sandgate: log truncated at N bytes]" is appended
 * once. The file size tells whether the marker was written, so the cap
 * holds across restarts. If the sandbox ends while the gateway is down,
 * what was still in the pipe buffer is lost with the pipe.
 *
 * THREAD SAFETY: loop thread only (one owner per struct).
 */
#ifndef SG_PROCESS_LOGS_H
#define SG_PROCESS_LOGS_H

#include "internal.h"
#include "error.h"

#include <uv.h>

struct process_log {
    int fifo_fd;   /* read end, -1 when closed */
    int file_fd;   /* <stream>.log, O_APPEND; -1 when closed */
    uint64_t size; /* bytes in the file */
    uint64_t cap;  /* log_max_bytes */
    bool marked;   /* the truncation marker is in the file */
    char last;     /* last byte written ('\n' when empty) */
    uv_poll_t poll;
    bool poll_init; /* poll handle initialized (needs uv_close) */
    void *data;     /* owner's */
};

/*
 * Create dir/<stream>.fifo (mode 0600; an existing one is kept) and return
 * a descriptor for the sandbox side, opened O_RDWR|O_CLOEXEC. Returns the
 * fd, or -1 with err set.
 */
int process_log_fifo_make(const char *dir, const char *stream,
                          struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Open the reader side: the FIFO (non-blocking) and the log file, whose
 * size and last byte are read back. The poll handle is not started yet.
 * Returns 0, or -1 with err set (l is then left closed).
 */
int process_log_open(struct process_log *l, const char *dir, const char *stream,
                     uint64_t cap, struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Read what the FIFO holds and append it, at most max_reads reads of 64
 * KiB (0: no bound), so a chatty sandbox cannot hold the loop. Returns 1
 * at end of file (every writer is gone), 0 when it would block or the
 * bound was reached, -1 on a read error.
 */
int process_log_drain(struct process_log *l, unsigned max_reads);

/* Append data, applying the cap. */
void process_log_append(struct process_log *l, const char *data, size_t len);

/* Close both descriptors (the poll handle must be closed first). */
void process_log_close_fds(struct process_log *l);

#endif /* SG_PROCESS_LOGS_H */
