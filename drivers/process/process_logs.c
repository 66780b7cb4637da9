/*
 * process_logs.c: FIFO capture of stdout/stderr with a size cap.
 */
#include "internal.h"

#include "process_logs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int process_log_fifo_make(const char *dir, const char *stream,
                          struct sg_error *err)
{
    char path[4200];
    char buf[128];
    int fd;

    snprintf(path, sizeof(path), "%s/%s.fifo", dir, stream);
    if (mkfifo(path, 0600) < 0 && errno != EEXIST) {
        sg_error_report(err, SG_ERR_IO, "process: cannot make '%s': %s", path,
                        sg_strerror(errno, buf, sizeof(buf)));
        return -1;
    }
    /* O_RDWR on a FIFO never blocks and keeps a reader alive. */
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        sg_error_report(err, SG_ERR_IO, "process: cannot open '%s': %s", path,
                        sg_strerror(errno, buf, sizeof(buf)));
        return -1;
    }
    return fd;
}

int process_log_open(struct process_log *l, const char *dir, const char *stream,
                     uint64_t cap, struct sg_error *err)
{
    char path[4200];
    char buf[128];
    struct stat st;

    l->fifo_fd = -1;
    l->file_fd = -1;
    l->cap = cap;
    l->last = '\n';
    snprintf(path, sizeof(path), "%s/%s.log", dir, stream);
    l->file_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (l->file_fd < 0 || fstat(l->file_fd, &st) < 0) {
        sg_error_report(err, SG_ERR_IO, "process: cannot open '%s': %s", path,
                        sg_strerror(errno, buf, sizeof(buf)));
        goto error;
    }
    l->size = (uint64_t)st.st_size;
    /* Data is cut exactly at the cap, so a longer file holds the marker. */
    l->marked = l->size > cap;
    if (l->size > 0) {
        int rfd = open(path, O_RDONLY | O_CLOEXEC);

        if (rfd >= 0) {
            if (pread(rfd, &l->last, 1, st.st_size - 1) != 1)
                l->last = '\n';
            close(rfd);
        }
    }
    snprintf(path, sizeof(path), "%s/%s.fifo", dir, stream);
    l->fifo_fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (l->fifo_fd < 0) {
        sg_error_report(err, SG_ERR_IO, "process: cannot open '%s': %s", path,
                        sg_strerror(errno, buf, sizeof(buf)));
        goto error;
    }
    return 0;
 error:
    process_log_close_fds(l);
    return -1;
}

static void write_all(struct process_log *l, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(l->file_fd, data, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* disk full or similar: the data is lost */
        data += n;
        len -= (size_t)n;
        l->size += (uint64_t)n;
        l->last = data[-1];
    }
}

void process_log_append(struct process_log *l, const char *data, size_t len)
{
    uint64_t room;

    if (l->file_fd < 0 || len == 0)
        return;
    room = l->size < l->cap ? l->cap - l->size : 0;
    if (room > 0) {
        size_t n = len < room ? len : (size_t)room;

        write_all(l, data, n);
        data += n;
        len -= n;
    }
    if (len > 0 && !l->marked) {
        char marker[96];
        int m;

        m = snprintf(marker, sizeof(marker),
                     "%s[sandgate: log truncated at %llu bytes]\n",
                     l->last == '\n' ? "" : "\n", (unsigned long long)l->cap);
        l->marked = true;
        write_all(l, marker, (size_t)m);
    }
}

int process_log_drain(struct process_log *l, unsigned max_reads)
{
    char buf[65536];
    unsigned reads = 0;

    if (l->fifo_fd < 0)
        return 1;
    for (;;) {
        ssize_t n;

        if (max_reads != 0 && reads++ >= max_reads)
            return 0;
        n = read(l->fifo_fd, buf, sizeof(buf));
        if (n > 0) {
            process_log_append(l, buf, (size_t)n);
            continue;
        }
        if (n == 0)
            return 1;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return 0;
        return -1;
    }
}

void process_log_close_fds(struct process_log *l)
{
    if (l->fifo_fd >= 0)
        close(l->fifo_fd);
    if (l->file_fd >= 0)
        close(l->file_fd);
    l->fifo_fd = -1;
    l->file_fd = -1;
}
