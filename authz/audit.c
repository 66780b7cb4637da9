/*
 * audit.c: the audit log (see audit.h).
 *
 * A record is formatted into one buffer without the lock; the lock covers
 * only the size check, the rotation and the write(2), so records of
 * concurrent calls never interleave and a rotation never splits one.
 */
#include "internal.h"

#include "audit.h"

#include "buf.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

SG_LOG_INIT("authz.audit");

#define AUDIT_FIELD_MAX 1024
#define AUDIT_ELLIPSIS "..."
/* I/O errors are logged at most this often; so are rotations retried. */
#define AUDIT_RETRY_SECONDS 60
/* Room for ".4294967295" after the path. */
#define AUDIT_SUFFIX_MAX 12

enum audit_kind {
    AUDIT_OFF,
    AUDIT_STDOUT,
    AUDIT_FILE,
};

struct sg_audit {
    enum audit_kind kind;
    char *path;                 /* AUDIT_FILE only */
    uint64_t max_bytes;
    unsigned max_files;

    pthread_mutex_t lock;       /* guards everything below */
    int fd;                     /* owned for AUDIT_FILE */
    bool regular;               /* a regular file: the only kind rotated */
    uint64_t size;              /* bytes in the current file */
    bool torn;                  /* the last write stopped inside a line */
    struct timespec rotate_after;  /* CLOCK_MONOTONIC; after a failure */
    bool error_logged;
    struct timespec error_at;   /* CLOCK_MONOTONIC of the last logged error */
    unsigned long suppressed;   /* errors not logged since error_at */
};

/* ---- formatting ---- */

/*
 * How much of a value of len bytes to keep: all of it up to
 * AUDIT_FIELD_MAX, else the longest prefix that leaves room for the
 * ellipsis and ends between two characters (an invalid byte counts as one
 * character: the escaper replaces it on its own).
 */
static size_t kept_length(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t limit = AUDIT_FIELD_MAX - strlen(AUDIT_ELLIPSIS);
    size_t i = 0;

    if (len <= AUDIT_FIELD_MAX)
        return len;
    while (i < limit) {
        size_t n = sg_utf8_sequence_len(p + i, len - i);

        if (n == 0)
            n = 1;
        if (i + n > limit)
            break;
        i += n;
    }
    return i;
}

static void add_field(struct sg_buf *b, const char *key, const char *value)
{
    size_t len;
    size_t kept;

    if (value == NULL)
        return;
    len = strlen(value);
    kept = kept_length(value, len);
    sg_buf_printf(b, ",\"%s\":\"", key);
    sg_buf_add_json_escaped(b, value, kept);
    if (kept < len)
        sg_buf_adds(b, AUDIT_ELLIPSIS);
    sg_buf_addc(b, '"');
}

/*
 * The line, preceded by one '\n' that is written only after a torn write,
 * so that the fragment ends its own line and this record stays whole.
 */
static void format_record(struct sg_buf *b, const struct sg_audit_record *r)
{
    sg_buf_adds(b, "\n{\"time\":\"");
    sg_buf_add_timestamp(b);
    sg_buf_addc(b, '"');
    add_field(b, "subject", r->subject);
    add_field(b, "rpc", r->rpc);
    add_field(b, "target", r->target);
    add_field(b, "tenant", r->tenant);
    add_field(b, "namespace", r->namespace_name);
    add_field(b, "decision", r->allowed ? "allow" : "deny");
    add_field(b, "code", r->code);
    add_field(b, "reason", r->reason);
    add_field(b, "request_id", r->request_id);
    add_field(b, "peer", r->peer);
    sg_buf_adds(b, "}\n");
}

/* ---- files ---- */

static bool time_reached(const struct timespec *now, const struct timespec *t)
{
    return now->tv_sec > t->tv_sec ||
           (now->tv_sec == t->tv_sec && now->tv_nsec >= t->tv_nsec);
}

/* Log an I/O failure unless one was logged in the last minute. Locked. */
static void report_failure(struct sg_audit *a, const char *what, int errnum)
{
    struct timespec now;
    struct timespec next;
    char ebuf[128];
    const char *path = a->kind == AUDIT_FILE ? a->path : "-";

    clock_gettime(CLOCK_MONOTONIC, &now);
    next = a->error_at;
    next.tv_sec += AUDIT_RETRY_SECONDS;
    if (a->error_logged && !time_reached(&now, &next)) {
        a->suppressed++;
        return;
    }
    if (a->suppressed > 0)
        SG_ERROR("audit log '%s': %s failed: %s (and %lu failures not "
                 "logged in the last minute)", path, what,
                 sg_strerror(errnum, ebuf, sizeof(ebuf)), a->suppressed);
    else
        SG_ERROR("audit log '%s': %s failed: %s", path, what,
                 sg_strerror(errnum, ebuf, sizeof(ebuf)));
    a->error_logged = true;
    a->error_at = now;
    a->suppressed = 0;
}

static int open_file(const char *path, int *fd_out, uint64_t *size_out,
                     bool *regular_out, struct sg_error *err)
{
    struct stat st;
    char ebuf[128];
    int fd;

    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        sg_error_report(err, SG_ERR_IO, "cannot open audit log '%s': %s",
                        path, sg_strerror(errno, ebuf, sizeof(ebuf)));
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        sg_error_report(err, SG_ERR_IO, "cannot stat audit log '%s': %s",
                        path, sg_strerror(errno, ebuf, sizeof(ebuf)));
        close(fd);
        return -1;
    }
    *fd_out = fd;
    *regular_out = S_ISREG(st.st_mode);
    *size_out = *regular_out ? (uint64_t)st.st_size : 0;
    return 0;
}

static void rotated_name(const struct sg_audit *a, unsigned i, char *buf,
                         size_t size)
{
    /* Cannot truncate: sg_audit_open bounded the path. */
    snprintf(buf, size, "%s.%u", a->path, i);
}

/*
 * FILE.(N-1) -> FILE.N, ..., FILE -> FILE.1 (rename replaces the oldest),
 * then a new FILE. Only the files that exist are shifted, so a large
 * max_files costs nothing until the files are there. With max_files 0 the
 * full file is dropped. Locked. Returns 0, or -1 with errno set; the
 * current file is kept on failure.
 */
static int rotate(struct sg_audit *a)
{
    char from[PATH_MAX];
    char to[PATH_MAX];
    struct sg_error err = SG_ERROR_INIT;
    struct stat st;
    unsigned top = 0;
    uint64_t size;
    bool regular;
    int fd;

    if (a->max_files == 0) {
        if (unlink(a->path) < 0 && errno != ENOENT)
            return -1;
    } else {
        while (top + 1 < a->max_files) {
            rotated_name(a, top + 1, from, sizeof(from));
            if (lstat(from, &st) < 0)
                break;
            top++;
        }
        for (unsigned i = top; i >= 1; i--) {
            rotated_name(a, i, from, sizeof(from));
            rotated_name(a, i + 1, to, sizeof(to));
            if (rename(from, to) < 0 && errno != ENOENT)
                return -1;
        }
        rotated_name(a, 1, to, sizeof(to));
        if (rename(a->path, to) < 0 && errno != ENOENT)
            return -1;
    }
    if (open_file(a->path, &fd, &size, &regular, &err) < 0) {
        int saved = errno;

        sg_error_reset(&err);
        errno = saved;
        return -1;
    }
    close(a->fd);
    a->fd = fd;
    a->size = size;
    a->regular = regular;
    a->torn = false;
    return 0;
}

/* Bytes written before an error (errno set) or all of len. */
static size_t write_all(int fd, const char *p, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (n == 0) {
            errno = EIO;
            break;
        }
        done += (size_t)n;
    }
    return done;
}

/* ---- the API ---- */

struct sg_audit *sg_audit_open(const struct sg_audit_config *cfg,
                               struct sg_error *err)
{
    struct sg_audit *a = NULL;
    const char *path = cfg != NULL ? cfg->path : NULL;

    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    a->fd = -1;
    pthread_mutex_init(&a->lock, NULL);
    if (path == NULL) {
        a->kind = AUDIT_OFF;
        return a;
    }
    if (STREQ(path, "-")) {
        a->kind = AUDIT_STDOUT;
        a->fd = STDOUT_FILENO;
        return a;
    }

    a->kind = AUDIT_FILE;
    a->max_bytes = cfg->max_bytes;
    a->max_files = cfg->max_files;
    if (strlen(path) >= PATH_MAX - AUDIT_SUFFIX_MAX) {
        sg_error_report(err, SG_ERR_IO, "audit log path '%.64s...' is too "
                        "long", path);
        goto error;
    }
    a->path = strdup(path);
    if (a->path == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto error;
    }
    if (open_file(a->path, &a->fd, &a->size, &a->regular, err) < 0)
        goto error;
    return a;

 error:
    sg_audit_close(a);
    return NULL;
}

void sg_audit_close(struct sg_audit *a)
{
    if (a == NULL)
        return;
    if (a->kind == AUDIT_FILE && a->fd >= 0)
        close(a->fd);
    pthread_mutex_destroy(&a->lock);
    free(a->path);
    free(a);
}

int sg_audit_write(struct sg_audit *a, const struct sg_audit_record *r)
{
    struct sg_buf line = SG_BUF_INIT;
    const char *p;
    size_t len;
    size_t done;
    int rc = -1;

    if (a == NULL || a->kind == AUDIT_OFF)
        return 0;
    if (r == NULL)
        return -1;

    format_record(&line, r);
    pthread_mutex_lock(&a->lock);
    if (sg_buf_error(&line) < 0) {
        report_failure(a, "formatting a record", ENOMEM);
        goto cleanup;
    }
    p = sg_buf_str(&line);
    len = line.len;
    if (a->kind == AUDIT_FILE && a->regular && a->max_bytes > 0 &&
        a->size > 0 && a->size + len - (a->torn ? 0 : 1) > a->max_bytes) {
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        if (time_reached(&now, &a->rotate_after) && rotate(a) < 0) {
            /* Keep writing to the full file rather than lose records;
               renaming again on every write would shuffle the files. */
            report_failure(a, "rotation", errno);
            a->rotate_after = now;
            a->rotate_after.tv_sec += AUDIT_RETRY_SECONDS;
        }
    }
    if (!a->torn) {
        p++;
        len--;
    }
    done = write_all(a->fd, p, len);
    a->size += done;
    if (done < len) {
        a->torn = done > 0 || a->torn;
        report_failure(a, "write", errno);
        goto cleanup;
    }
    a->torn = false;
    rc = 0;

 cleanup:
    pthread_mutex_unlock(&a->lock);
    sg_buf_free(&line);
    return rc;
}

int sg_audit_reopen(struct sg_audit *a, struct sg_error *err)
{
    uint64_t size;
    bool regular;
    int fd;
    int old;

    if (a == NULL || a->kind != AUDIT_FILE)
        return 0;
    if (open_file(a->path, &fd, &size, &regular, err) < 0)
        return -1;
    pthread_mutex_lock(&a->lock);
    old = a->fd;
    a->fd = fd;
    a->size = size;
    a->regular = regular;
    a->torn = false;
    a->rotate_after.tv_sec = 0;
    a->rotate_after.tv_nsec = 0;
    pthread_mutex_unlock(&a->lock);
    close(old);
    return 0;
}
