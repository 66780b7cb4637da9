/*
 * process_state.c: the sandbox record, bwrap's status file, /proc reads,
 * and removal of a sandbox directory.
 */
#include "internal.h"

#include "process_state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *key;
    size_t offset;
} record_limits[] = {
    {"memory_bytes", offsetof(struct process_limits, memory_bytes)},
    {"pids", offsetof(struct process_limits, pids)},
    {"cpu_seconds", offsetof(struct process_limits, cpu_seconds)},
    {"open_files", offsetof(struct process_limits, open_files)},
    {"file_size_bytes", offsetof(struct process_limits, file_size_bytes)},
};

static int set_new(json_t *obj, const char *key, json_t *v)
{
    if (v == NULL)
        return -1;
    return json_object_set_new(obj, key, v);
}

static json_t *record_to_json(const struct process_record *r)
{
    json_t *o = json_object();
    json_t *limits = json_object();
    int bad = 0;

    if (o == NULL || limits == NULL) {
        json_decref(o);
        json_decref(limits);
        return NULL;
    }
    bad |= set_new(o, "id", json_string(r->id));
    bad |= set_new(o, "bwrap_pid", json_integer(r->bwrap_pid));
    bad |= set_new(o, "bwrap_start_time",
                   json_integer((json_int_t)r->bwrap_start_time));
    bad |= set_new(o, "pid", json_integer(r->pid));
    bad |= set_new(o, "start_time", json_integer((json_int_t)r->start_time));
    bad |= set_new(o, "cgroup",
                   r->cgroup != NULL ? json_string(r->cgroup) : json_null());
    bad |= set_new(o, "rootfs", json_string(r->rootfs));
    bad |= set_new(o, "chdir", json_string(r->chdir));
    bad |= set_new(o, "network", json_boolean(r->network));
    bad |= set_new(o, "grace_period_ms", json_integer(r->grace_period_ms));
    for (size_t i = 0; i < SG_N_ELEMENTS(record_limits); i++) {
        uint64_t v = *(const uint64_t *)((const char *)&r->limits +
                                         record_limits[i].offset);

        if (v != 0)
            bad |= set_new(limits, record_limits[i].key,
                           json_integer((json_int_t)v));
    }
    bad |= json_object_set_new(o, "limits", limits);
    if (r->readiness.argc > 0) {
        json_t *rd = json_object();
        json_t *argv = json_array();

        if (rd == NULL || argv == NULL) {
            json_decref(rd);
            json_decref(argv);
            bad = 1;
        } else {
            for (size_t i = 0; i < r->readiness.argc; i++)
                bad |= json_array_append_new(argv,
                                             json_string(r->readiness.argv[i]));
            bad |= json_object_set_new(rd, "command", argv);
            bad |=
                set_new(rd, "period_ms", json_integer(r->readiness.period_ms));
            bad |= set_new(rd, "timeout_ms",
                           json_integer(r->readiness.timeout_ms));
            bad |= set_new(rd, "failure_threshold",
                           json_integer(r->readiness.failure_threshold));
            bad |= json_object_set_new(o, "readiness", rd);
        }
    }
    bad |= set_new(o, "ready", json_boolean(r->ready));
    if (r->has_final) {
        json_t *f =
            json_pack("{s:s, s:s, s:i}", "reason",
                      r->final_reason != NULL ? r->final_reason : "", "message",
                      r->final_message != NULL ? r->final_message : "",
                      "exit_code", r->final_exit_code);

        bad |= set_new(o, "final", f);
    }
    bad |= set_new(o, "created_at", json_integer(r->created_at));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int process_record_save(const struct process_record *r, const char *dir,
                        struct sg_error *err)
{
    char tmp[4200];
    char final[4200];
    char buf[128];
    json_t *o = record_to_json(r);
    int ret = -1;

    if (o == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "%s/sandbox.json.tmp", dir);
    snprintf(final, sizeof(final), "%s/sandbox.json", dir);
    if (json_dump_file(o, tmp, JSON_COMPACT | JSON_SORT_KEYS) < 0) {
        sg_error_report(err, SG_ERR_IO, "process: cannot write '%s'", tmp);
        goto cleanup;
    }
    if (rename(tmp, final) < 0) {
        sg_error_report(err, SG_ERR_IO, "process: cannot rename '%s': %s", tmp,
                        sg_strerror(errno, buf, sizeof(buf)));
        unlink(tmp);
        goto cleanup;
    }
    ret = 0;
 cleanup:
    json_decref(o);
    return ret;
}

static int dup_str(json_t *o, const char *key, bool nullable, char **out)
{
    json_t *v = json_object_get(o, key);

    if (nullable && (v == NULL || json_is_null(v)))
        return 0;
    if (!json_is_string(v))
        return -1;
    *out = strdup(json_string_value(v));
    return *out != NULL ? 0 : -1;
}

static int get_int(json_t *o, const char *key, json_int_t min, json_int_t max,
                   json_int_t *out)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

static int load_readiness(json_t *rd, struct process_readiness *r)
{
    json_t *argv = json_object_get(rd, "command");
    json_int_t n;
    size_t i;
    json_t *item;

    if (!json_is_array(argv) || json_array_size(argv) == 0)
        return -1;
    r->argv = calloc(json_array_size(argv) + 1, sizeof(char *));
    if (r->argv == NULL)
        return -1;
    json_array_foreach(argv, i, item)
    {
        if (!json_is_string(item))
            return -1;
        r->argv[i] = strdup(json_string_value(item));
        if (r->argv[i] == NULL)
            return -1;
        r->argc = i + 1;
    }
    if (get_int(rd, "period_ms", 1, UINT32_MAX, &n) < 0)
        return -1;
    r->period_ms = (uint32_t)n;
    if (get_int(rd, "timeout_ms", 1, UINT32_MAX, &n) < 0)
        return -1;
    r->timeout_ms = (uint32_t)n;
    if (get_int(rd, "failure_threshold", 0, UINT32_MAX, &n) < 0)
        return -1;
    r->failure_threshold = (uint32_t)n;
    return 0;
}

static int record_from_json(json_t *o, struct process_record *r)
{
    json_int_t n;
    json_t *v;

    if (dup_str(o, "id", false, &r->id) < 0 ||
        dup_str(o, "cgroup", true, &r->cgroup) < 0 ||
        dup_str(o, "rootfs", false, &r->rootfs) < 0 ||
        dup_str(o, "chdir", false, &r->chdir) < 0)
        return -1;
    if (get_int(o, "bwrap_pid", 0, INT32_MAX, &n) < 0)
        return -1;
    r->bwrap_pid = (pid_t)n;
    if (get_int(o, "bwrap_start_time", 0, INT64_MAX, &n) < 0)
        return -1;
    r->bwrap_start_time = (uint64_t)n;
    if (get_int(o, "pid", 0, INT32_MAX, &n) < 0)
        return -1;
    r->pid = (pid_t)n;
    if (get_int(o, "start_time", 0, INT64_MAX, &n) < 0)
        return -1;
    r->start_time = (uint64_t)n;
    if (get_int(o, "grace_period_ms", 0, UINT32_MAX, &n) < 0)
        return -1;
    r->grace_period_ms = (uint32_t)n;
    if (get_int(o, "created_at", 0, INT64_MAX, &n) < 0)
        return -1;
    r->created_at = n;
    v = json_object_get(o, "network");
    if (!json_is_boolean(v))
        return -1;
    r->network = json_is_true(v);
    v = json_object_get(o, "ready");
    if (!json_is_boolean(v))
        return -1;
    r->ready = json_is_true(v);
    v = json_object_get(o, "limits");
    if (!json_is_object(v))
        return -1;
    for (size_t i = 0; i < SG_N_ELEMENTS(record_limits); i++) {
        json_t *l = json_object_get(v, record_limits[i].key);

        if (l == NULL)
            continue;
        if (!json_is_integer(l) || json_integer_value(l) < 0)
            return -1;
        *(uint64_t *)((char *)&r->limits + record_limits[i].offset) =
            (uint64_t)json_integer_value(l);
    }
    v = json_object_get(o, "readiness");
    if (v != NULL && load_readiness(v, &r->readiness) < 0)
        return -1;
    v = json_object_get(o, "final");
    if (v != NULL) {
        if (dup_str(v, "reason", false, &r->final_reason) < 0 ||
            dup_str(v, "message", false, &r->final_message) < 0 ||
            get_int(v, "exit_code", INT32_MIN, INT32_MAX, &n) < 0)
            return -1;
        r->final_exit_code = (int)n;
        r->has_final = true;
    }
    return 0;
}

int process_record_load(const char *dir, struct process_record *r,
                        struct sg_error *err)
{
    char path[4200];
    json_error_t jerr;
    json_t *o;
    int ret;

    snprintf(path, sizeof(path), "%s/sandbox.json", dir);
    o = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL) {
        sg_error_report(err, SG_ERR_IO, "process: cannot read '%s': %s", path,
                        jerr.text);
        return -1;
    }
    ret = json_is_object(o) ? record_from_json(o, r) : -1;
    json_decref(o);
    if (ret < 0)
        sg_error_report(err, SG_ERR_IO, "process: '%s' is not a valid record",
                        path);
    return ret;
}

void process_readiness_clear(struct process_readiness *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->argc; i++)
        free(r->argv[i]);
    free(r->argv);
    memset(r, 0, sizeof(*r));
}

int process_readiness_copy(struct process_readiness *dst,
                           const struct process_readiness *src)
{
    *dst = *src;
    dst->argv = NULL;
    dst->argc = 0;
    if (src->argc == 0)
        return 0;
    dst->argv = calloc(src->argc + 1, sizeof(char *));
    if (dst->argv == NULL)
        return -1;
    for (size_t i = 0; i < src->argc; i++) {
        dst->argv[i] = strdup(src->argv[i]);
        if (dst->argv[i] == NULL) {
            process_readiness_clear(dst);
            return -1;
        }
        dst->argc = i + 1;
    }
    return 0;
}

void process_record_clear(struct process_record *r)
{
    if (r == NULL)
        return;
    free(r->id);
    free(r->cgroup);
    free(r->rootfs);
    free(r->chdir);
    free(r->final_reason);
    free(r->final_message);
    process_readiness_clear(&r->readiness);
    memset(r, 0, sizeof(*r));
}

/* Read a small file whole (NUL-terminated); NULL if absent. */
static char *read_small_file(const char *path, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf;
    size_t len = 0;

    if (fd < 0)
        return NULL;
    buf = malloc(max + 1);
    if (buf == NULL) {
        close(fd);
        return NULL;
    }
    while (len < max) {
        ssize_t n = read(fd, buf + len, max - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

void process_status_read(const char *dir, struct process_bwrap_status *out)
{
    char path[4200];
    char *text;
    char *line;

    memset(out, 0, sizeof(*out));
    snprintf(path, sizeof(path), "%s/status.json", dir);
    text = read_small_file(path, 64 * 1024);
    if (text == NULL)
        return;
    line = text;
    while (*line != '\0') {
        char *nl = strchr(line, '\n');
        json_t *doc;
        json_t *v;

        if (nl == NULL)
            break; /* bwrap is still writing this one */
        doc = json_loadb(line, (size_t)(nl - line), 0, NULL);
        if (doc != NULL) {
            v = json_object_get(doc, "child-pid");
            if (json_is_integer(v) && json_integer_value(v) > 0 &&
                json_integer_value(v) <= INT32_MAX)
                out->child_pid = (pid_t)json_integer_value(v);
            v = json_object_get(doc, "pid-namespace");
            if (json_is_integer(v) && json_integer_value(v) > 0)
                out->pid_ns = (uint64_t)json_integer_value(v);
            v = json_object_get(doc, "exit-code");
            if (json_is_integer(v)) {
                out->has_exit_code = true;
                out->exit_code = (int)json_integer_value(v);
            }
            json_decref(doc);
        }
        line = nl + 1;
    }
    free(text);
}

int process_proc_stat(pid_t pid, uint64_t *start_time, char *state)
{
    char path[64];
    char *text;
    char *p;
    char *end;
    int field;
    int ret = -1;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    text = read_small_file(path, 4096);
    if (text == NULL)
        return -1;
    /* comm (field 2) may hold spaces and parentheses: skip to the last ')'. */
    p = strrchr(text, ')');
    if (p == NULL || p[1] != ' ')
        goto cleanup;
    p += 2;
    if (state != NULL)
        *state = *p;
    /* p is at field 3; walk to field 22. */
    for (field = 3; field < 22 && *p != '\0'; field++) {
        p = strchr(p, ' ');
        if (p == NULL)
            goto cleanup;
        p++;
    }
    errno = 0;
    *start_time = strtoull(p, &end, 10);
    if (errno != 0 || end == p)
        goto cleanup;
    ret = 0;
 cleanup:
    free(text);
    return ret;
}

bool process_proc_matches(pid_t pid, uint64_t start_time)
{
    uint64_t st;
    char state = '?';

    if (process_proc_stat(pid, &st, &state) < 0)
        return false;
    return st == start_time && state != 'Z' && state != 'X';
}

bool process_pid_in_ns(pid_t pid, uint64_t ns)
{
    char path[64];
    struct stat st;
    uint64_t start;
    char state = '?';

    if (pid <= 0 || ns == 0)
        return false;
    snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
    if (stat(path, &st) < 0 || (uint64_t)st.st_ino != ns)
        return false;
    return process_proc_stat(pid, &start, &state) == 0 && state != 'Z' &&
           state != 'X';
}

bool process_id_valid(const char *id)
{
    size_t n = id != NULL ? strlen(id) : 0;

    if (n == 0 || n > 63 || id[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

/* Directories deeper than this are moved up to the top and removed
   from there, so that a tree of any depth needs few descriptors. */
#define RM_MAX_DEPTH 64

struct rm_ctx {
    int topfd;
    unsigned long moved;
    bool more; /* something was moved to the top: walk it again */
};

/* Empty the directory dirfd (which this call closes). */
static int rm_contents(struct rm_ctx *ctx, int dirfd, int depth)
{
    DIR *d = fdopendir(dirfd);
    struct dirent *e;
    int ret = 0;

    if (d == NULL) {
        int saved = errno;

        close(dirfd);
        errno = saved;
        return -1;
    }
    for (;;) {
        int sub;

        errno = 0;
        e = readdir(d);
        if (e == NULL)
            break;
        if (STREQ(e->d_name, ".") || STREQ(e->d_name, ".."))
            continue;
        if (unlinkat(dirfd, e->d_name, 0) == 0 || errno == ENOENT)
            continue;
        if (errno != EISDIR && errno != EPERM) {
            ret = -1;
            continue;
        }
        if (depth >= RM_MAX_DEPTH) {
            char name[64];

            snprintf(name, sizeof(name), ".sandgate-rm-%lu", ctx->moved++);
            if (renameat(dirfd, e->d_name, ctx->topfd, name) == 0)
                ctx->more = true;
            else
                ret = -1;
            continue;
        }
        sub = openat(dirfd, e->d_name,
                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            ret = -1;
            continue;
        }
        /* The sandbox may have left directories without w or x. */
        (void)fchmod(sub, 0700);
        if (rm_contents(ctx, sub, depth + 1) < 0 ||
            (unlinkat(dirfd, e->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT))
            ret = -1;
    }
    if (errno != 0)
        ret = -1;
    closedir(d);
    return ret;
}

int process_rm_rf(const char *path)
{
    struct rm_ctx ctx = {.topfd = -1};
    int ret = -1;

    ctx.topfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (ctx.topfd < 0) {
        if (errno == ENOENT)
            return 0;
        if (errno == ENOTDIR || errno == ELOOP)
            return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
        return -1;
    }
    do {
        int fd = openat(ctx.topfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        ctx.more = false;
        if (fd < 0 || rm_contents(&ctx, fd, 0) < 0) {
            if (!ctx.more)
                goto cleanup;
        }
        /* Entries moved to the top are read in a new pass. */
    } while (ctx.more);
    if (rmdir(path) < 0 && errno != ENOENT)
        goto cleanup;
    ret = 0;
 cleanup:
    close(ctx.topfd);
    return ret;
}
