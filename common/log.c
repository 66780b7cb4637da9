/*
 * log.c: structured logging with levels and per-category filters.
 *
 * The configuration (global level, filters, format) lives behind one mutex
 * and a generation counter. A category caches its effective level together
 * with the generation it was computed for, so the common path of
 * sg_log_enabled() is two atomic loads; only the first record after a
 * reconfiguration takes the mutex.
 *
 * Each record is formatted into one buffer and written whole, so concurrent
 * records never interleave. By default every record is one write(2). The
 * daemon turns on the asynchronous writer (sg_log_async_start): records are
 * appended to a shared buffer that a flusher thread writes every
 * LOG_FLUSH_MS or once LOG_FLUSH_BYTES are waiting, so a busy access log
 * costs a memcpy per call rather than a system call. WARN and ERROR records
 * flush at once, order is kept, and a full buffer is written by the logging
 * thread itself (backpressure, never loss).
 */
#include "internal.h"

#include "log.h"
#include "buf.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct log_filter {
    char *category;
    size_t len;
    enum sg_log_level level;
};

static const char *const level_names[] = {
    [SG_LOG_TRACE] = "trace",
    [SG_LOG_DEBUG] = "debug",
    [SG_LOG_INFO] = "info",
    [SG_LOG_WARN] = "warn",
    [SG_LOG_ERROR] = "error",
    [SG_LOG_OFF] = "off",
};

/* Text format: upper case, padded so that categories line up. */
static const char *const level_labels[] = {
    [SG_LOG_TRACE] = "TRACE",
    [SG_LOG_DEBUG] = "DEBUG",
    [SG_LOG_INFO] = "INFO ",
    [SG_LOG_WARN] = "WARN ",
    [SG_LOG_ERROR] = "ERROR",
};

static const char *const format_names[] = {
    [SG_LOG_FORMAT_AUTO] = "auto",
    [SG_LOG_FORMAT_JSON] = "json",
    [SG_LOG_FORMAT_TEXT] = "text",
};

/* Guarded by log_lock. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum sg_log_level log_level = SG_LOG_INFO;
static struct log_filter *log_filters;
static size_t log_n_filters;
static enum sg_log_format log_format = SG_LOG_FORMAT_AUTO;

/* Starts at 1: a category's zero generation means "never computed". */
static atomic_uint log_generation = 1;
/* -1 means stderr. */
static atomic_int log_fd = -1;
/* JSON or TEXT once resolved; -1 until AUTO has been resolved for log_fd. */
static atomic_int log_resolved_format = -1;

/* The asynchronous writer. out_mu guards the pending buffer; write_mu
 * serializes writers so that buffers reach the fd in the order they
 * were filled. Lock order: write_mu, then out_mu. */
#define LOG_FLUSH_MS 100
#define LOG_FLUSH_BYTES (32 * 1024)
#define LOG_MAX_PENDING (1024 * 1024)
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t write_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t out_cond = PTHREAD_COND_INITIALIZER;
static struct sg_buf out_pending = SG_BUF_INIT;
static bool out_async;
static bool out_stop;
static pthread_t out_thread;

int sg_log_level_parse(const char *name, enum sg_log_level *out)
{
    for (size_t i = 0; name != NULL && i < SG_N_ELEMENTS(level_names); i++) {
        if (STREQ(name, level_names[i])) {
            *out = (enum sg_log_level)i;
            return 0;
        }
    }
    return -1;
}

int sg_log_format_parse(const char *name, enum sg_log_format *out)
{
    for (size_t i = 0; name != NULL && i < SG_N_ELEMENTS(format_names); i++) {
        if (STREQ(name, format_names[i])) {
            *out = (enum sg_log_format)i;
            return 0;
        }
    }
    return -1;
}

const char *sg_log_level_name(enum sg_log_level lvl)
{
    if ((size_t)lvl >= SG_N_ELEMENTS(level_names))
        return "unknown";
    return level_names[lvl];
}

const char *sg_log_format_name(enum sg_log_format format)
{
    if ((size_t)format >= SG_N_ELEMENTS(format_names))
        return "unknown";
    return format_names[format];
}

static void filters_free(struct log_filter *filters, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(filters[i].category);
    free(filters);
}

/* Dot-separated, non-empty segments of [A-Za-z0-9_-]. */
static bool category_is_valid(const char *s, size_t len)
{
    bool segment_empty = true;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (c == '.') {
            if (segment_empty)
                return false;
            segment_empty = true;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '_' || c == '-') {
            segment_empty = false;
        } else {
            return false;
        }
    }
    return !segment_empty;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Append one filter; the category is copied. Returns 0 or -1 (no memory). */
static int filters_append(struct log_filter **filters, size_t *n,
                          const char *category, size_t len,
                          enum sg_log_level level)
{
    struct log_filter *grown;
    char *copy;

    copy = strndup(category, len);
    if (copy == NULL)
        return -1;
    grown = realloc(*filters, (*n + 1) * sizeof(**filters));
    if (grown == NULL) {
        free(copy);
        return -1;
    }
    grown[*n].category = copy;
    grown[*n].len = len;
    grown[*n].level = level;
    *filters = grown;
    (*n)++;
    return 0;
}

/*
 * Parse one "category:level" item (already trimmed) and append it.
 * Returns 0 or -1 with err set.
 */
static int filter_parse_item(const char *item, size_t len,
                             struct log_filter **filters, size_t *n,
                             struct sg_error *err)
{
    const char *colon = memchr(item, ':', len);
    const char *lvl_text;
    size_t cat_len;
    size_t lvl_len;
    char lvl_name[8]; /* longer than every level name */
    enum sg_log_level level;

    if (colon == NULL) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "log filter '%.*s': expected CATEGORY:LEVEL",
                        (int)len, item);
        return -1;
    }
    cat_len = (size_t)(colon - item);
    lvl_text = colon + 1;
    lvl_len = len - cat_len - 1;
    if (!category_is_valid(item, cat_len)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "log filter '%.*s': invalid category '%.*s'",
                        (int)len, item, (int)cat_len, item);
        return -1;
    }
    if (lvl_len >= sizeof(lvl_name)) {
        lvl_name[0] = '\0';
    } else {
        memcpy(lvl_name, lvl_text, lvl_len);
        lvl_name[lvl_len] = '\0';
    }
    if (sg_log_level_parse(lvl_name, &level) < 0) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "log filter '%.*s': unknown level '%.*s'",
                        (int)len, item, (int)lvl_len, lvl_text);
        return -1;
    }
    for (size_t i = 0; i < *n; i++) {
        if ((*filters)[i].len == cat_len &&
            memcmp((*filters)[i].category, item, cat_len) == 0) {
            sg_error_report(err, SG_ERR_CONFIG,
                            "log filter '%.*s': category '%.*s' is given "
                            "twice", (int)len, item, (int)cat_len, item);
            return -1;
        }
    }
    if (filters_append(filters, n, item, cat_len, level) < 0) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    return 0;
}

/*
 * Parse "cat:level,cat:level" (blanks around items are ignored; a blank
 * string means no filters). On success *out owns the filters, NULL when
 * there are none. On error nothing is returned and err is set.
 */
static int filters_parse(const char *spec, struct log_filter **out,
                         size_t *n_out, struct sg_error *err)
{
    struct log_filter *filters = NULL;
    size_t n = 0;
    const char *p = spec;
    int ret = -1;

    while (is_blank(*p))
        p++;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len;

        if (end == NULL)
            end = p + strlen(p);
        while (p < end && is_blank(*p))
            p++;
        len = (size_t)(end - p);
        while (len > 0 && is_blank(p[len - 1]))
            len--;
        if (len == 0) {
            sg_error_report(err, SG_ERR_CONFIG,
                            "empty log filter in '%s'", spec);
            goto cleanup;
        }
        if (filter_parse_item(p, len, &filters, &n, err) < 0)
            goto cleanup;
        if (*end == '\0')
            break;
        p = end + 1;
        if (*p == '\0') {
            sg_error_report(err, SG_ERR_CONFIG,
                            "empty log filter in '%s'", spec);
            goto cleanup;
        }
    }

    *out = filters;
    *n_out = n;
    filters = NULL;
    n = 0;
    ret = 0;

 cleanup:
    filters_free(filters, n);
    return ret;
}

int sg_log_filters_check(const char *filters, struct sg_error *err)
{
    struct log_filter *parsed = NULL;
    size_t n = 0;

    if (filters == NULL)
        return 0;
    if (filters_parse(filters, &parsed, &n, err) < 0)
        return -1;
    filters_free(parsed, n);
    return 0;
}

/* Resolve AUTO for the current output. Called with log_lock held. */
static void resolve_format_locked(void)
{
    enum sg_log_format format = log_format;

    if (format == SG_LOG_FORMAT_AUTO) {
        int fd = atomic_load(&log_fd);

        format = isatty(fd < 0 ? STDERR_FILENO : fd) ? SG_LOG_FORMAT_TEXT
                                                    : SG_LOG_FORMAT_JSON;
    }
    atomic_store(&log_resolved_format, (int)format);
}

int sg_log_configure(const char *level, const char *filters,
                     enum sg_log_format format, struct sg_error *err)
{
    enum sg_log_level new_level = SG_LOG_INFO;
    struct log_filter *new_filters = NULL;
    size_t new_n = 0;

    if (level != NULL && sg_log_level_parse(level, &new_level) < 0) {
        sg_error_report(err, SG_ERR_CONFIG, "unknown log level '%s'", level);
        return -1;
    }
    if ((size_t)format >= SG_N_ELEMENTS(format_names)) {
        sg_error_report(err, SG_ERR_CONFIG, "unknown log format %d",
                        (int)format);
        return -1;
    }
    if (filters != NULL && filters_parse(filters, &new_filters, &new_n,
                                         err) < 0)
        return -1;

    pthread_mutex_lock(&log_lock);
    if (level != NULL)
        log_level = new_level;
    if (filters != NULL) {
        struct log_filter *old = log_filters;
        size_t old_n = log_n_filters;

        log_filters = new_filters;
        log_n_filters = new_n;
        new_filters = old;
        new_n = old_n;
    }
    log_format = format;
    resolve_format_locked();
    atomic_fetch_add_explicit(&log_generation, 1, memory_order_release);
    pthread_mutex_unlock(&log_lock);

    /* The replaced filters, freed outside the lock. */
    filters_free(new_filters, new_n);
    return 0;
}

void sg_log_set_fd(int fd)
{
    pthread_mutex_lock(&log_lock);
    atomic_store(&log_fd, fd < 0 ? -1 : fd);
    resolve_format_locked();
    pthread_mutex_unlock(&log_lock);
}

/* Longest filter matching name on a '.' boundary, else the global level. */
static enum sg_log_level effective_level_locked(const char *name)
{
    enum sg_log_level level = log_level;
    size_t best = 0;
    size_t name_len = strlen(name);

    for (size_t i = 0; i < log_n_filters; i++) {
        const struct log_filter *f = &log_filters[i];

        if (f->len <= best || f->len > name_len ||
            memcmp(f->category, name, f->len) != 0)
            continue;
        if (name[f->len] != '\0' && name[f->len] != '.')
            continue;
        best = f->len;
        level = f->level;
    }
    return level;
}

static void category_refresh(struct sg_log_category *cat)
{
    unsigned generation;

    pthread_mutex_lock(&log_lock);
    /* Read under the lock so that the level and the generation stored
     * below belong together. */
    generation = atomic_load_explicit(&log_generation, memory_order_relaxed);
    atomic_store_explicit(&cat->level, (int)effective_level_locked(cat->name),
                          memory_order_relaxed);
    atomic_store_explicit(&cat->generation, generation, memory_order_release);
    pthread_mutex_unlock(&log_lock);
}

bool sg_log_enabled(struct sg_log_category *cat, enum sg_log_level lvl)
{
    unsigned generation;

    if (lvl >= SG_LOG_OFF)
        return false;
    generation = atomic_load_explicit(&log_generation, memory_order_acquire);
    if (atomic_load_explicit(&cat->generation, memory_order_acquire) !=
        generation)
        category_refresh(cat);
    return (int)lvl >= atomic_load_explicit(&cat->level, memory_order_relaxed);
}

static enum sg_log_format current_format(void)
{
    int format = atomic_load(&log_resolved_format);

    if (format < 0) {
        pthread_mutex_lock(&log_lock);
        resolve_format_locked();
        format = atomic_load(&log_resolved_format);
        pthread_mutex_unlock(&log_lock);
    }
    return (enum sg_log_format)format;
}

/*
 * Text format: escape what would break the line (control characters,
 * invalid UTF-8) as in JSON, but leave quotes and backslashes alone so that
 * messages read naturally. Both are ASCII, so splitting there never cuts a
 * UTF-8 sequence.
 */
static void add_text_escaped(struct sg_buf *b, const char *s, size_t len)
{
    size_t start = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] != '"' && s[i] != '\\')
            continue;
        sg_buf_add_json_escaped(b, s + start, i - start);
        sg_buf_addc(b, s[i]);
        start = i + 1;
    }
    sg_buf_add_json_escaped(b, s + start, len - start);
}

/* A text value is quoted when it is empty or holds anything but plain
 * printable ASCII without '=', so that "key=value" pairs stay parseable. */
static bool text_needs_quotes(const char *s)
{
    if (*s == '\0')
        return true;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c <= ' ' || c >= 0x7F || c == '"' || c == '=' || c == '\\')
            return true;
    }
    return false;
}

static void add_json_string(struct sg_buf *b, const char *s, size_t len)
{
    sg_buf_addc(b, '"');
    sg_buf_add_json_escaped(b, s, len);
    sg_buf_addc(b, '"');
}

static void add_field(struct sg_buf *b, enum sg_log_format format,
                      const struct sg_log_kv *kv)
{
    const char *key = kv->key != NULL ? kv->key : "";

    if (format == SG_LOG_FORMAT_JSON) {
        sg_buf_addc(b, ',');
        add_json_string(b, key, strlen(key));
        sg_buf_addc(b, ':');
    } else {
        sg_buf_addc(b, ' ');
        add_text_escaped(b, key, strlen(key));
        sg_buf_addc(b, '=');
    }

    switch (kv->kind) {
    case SG_LOG_KV_INT:
        sg_buf_printf(b, "%lld", kv->num);
        break;
    case SG_LOG_KV_DOUBLE:
        /* JSON has no NaN or infinity. */
        if (!isfinite(kv->dbl) && format == SG_LOG_FORMAT_JSON)
            sg_buf_adds(b, "null");
        else
            sg_buf_printf(b, "%.15g", kv->dbl);
        break;
    case SG_LOG_KV_STR:
    default:
        if (kv->str == NULL)
            sg_buf_adds(b, "null");
        else if (format == SG_LOG_FORMAT_JSON || text_needs_quotes(kv->str))
            add_json_string(b, kv->str, strlen(kv->str));
        else
            sg_buf_adds(b, kv->str);
        break;
    }
}

/* "../server/call.c" (relative to the build directory) -> "server/call.c" */
static const char *source_path(const char *file)
{
    while (STRPREFIX(file, "../") || STRPREFIX(file, "./"))
        file += file[1] == '.' ? 3 : 2;
    return file;
}

static void write_all(const char *data, size_t len)
{
    int fd = atomic_load(&log_fd);

    if (fd < 0)
        fd = STDERR_FILENO;
    while (len > 0) {
        ssize_t n = write(fd, data, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        data += n;
        len -= (size_t)n;
    }
}

/* Write out whatever is pending. Never called with out_mu held. */
static void flush_pending(void)
{
    struct sg_buf mine = SG_BUF_INIT;

    pthread_mutex_lock(&write_mu);
    pthread_mutex_lock(&out_mu);
    mine = out_pending;
    out_pending = (struct sg_buf)SG_BUF_INIT;
    pthread_mutex_unlock(&out_mu);
    if (mine.len > 0)
        write_all(mine.data, mine.len);
    pthread_mutex_unlock(&write_mu);
    sg_buf_free(&mine);
}

static void *flusher(void *arg)
{
    bool stop;

    (void)arg;
    do {
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += LOG_FLUSH_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&out_mu);
        if (!out_stop && out_pending.len < LOG_FLUSH_BYTES)
            pthread_cond_timedwait(&out_cond, &out_mu, &until);
        stop = out_stop;
        pthread_mutex_unlock(&out_mu);
        flush_pending();
    } while (!stop);
    return NULL;
}

int sg_log_async_start(void)
{
    int rc;

    pthread_mutex_lock(&out_mu);
    if (out_async) {
        pthread_mutex_unlock(&out_mu);
        return 0;
    }
    out_stop = false;
    rc = pthread_create(&out_thread, NULL, flusher, NULL);
    out_async = rc == 0;
    pthread_mutex_unlock(&out_mu);
    return rc == 0 ? 0 : -1;
}

void sg_log_async_stop(void)
{
    bool running;

    pthread_mutex_lock(&out_mu);
    running = out_async;
    out_stop = true;
    pthread_cond_signal(&out_cond);
    pthread_mutex_unlock(&out_mu);
    if (running)
        pthread_join(out_thread, NULL);
    pthread_mutex_lock(&out_mu);
    out_async = false;
    pthread_mutex_unlock(&out_mu);
    flush_pending();
}

/* Hand a formatted record to the writer, or write it now. */
static void output(const struct sg_buf *rec, enum sg_log_level lvl)
{
    bool now;

    pthread_mutex_lock(&out_mu);
    if (!out_async) {
        pthread_mutex_unlock(&out_mu);
        pthread_mutex_lock(&write_mu);
        write_all(rec->data, rec->len);
        pthread_mutex_unlock(&write_mu);
        return;
    }
    sg_buf_add(&out_pending, rec->data, rec->len);
    if (sg_buf_error(&out_pending) < 0) {
        /* Out of memory: drop what is pending rather than tear a line. */
        sg_buf_free(&out_pending);
        out_pending = (struct sg_buf)SG_BUF_INIT;
    }
    now = lvl >= SG_LOG_WARN || out_pending.len >= LOG_MAX_PENDING;
    if (!now && out_pending.len >= LOG_FLUSH_BYTES)
        pthread_cond_signal(&out_cond);
    pthread_mutex_unlock(&out_mu);
    if (now)
        flush_pending();
}

/*
 * Format one record and write it. The source location is added at debug
 * and trace only: it helps developers and is noise in operators' logs.
 */
static void log_emit(const struct sg_log_category *cat,
                     enum sg_log_level lvl, const char *file, int line,
                     const char *msg, size_t msg_len,
                     const struct sg_log_kv *kv, size_t n_kv)
{
    enum sg_log_format format = current_format();
    struct sg_buf b = SG_BUF_INIT;
    struct sg_log_kv src = SG_KV_STR("src", NULL);
    char src_text[256];
    bool with_src = file != NULL && lvl <= SG_LOG_DEBUG;
    int saved_errno = errno;

    if (with_src) {
        snprintf(src_text, sizeof(src_text), "%s:%d", source_path(file),
                 line);
        src.str = src_text;
    }

    if (format == SG_LOG_FORMAT_JSON) {
        sg_buf_adds(&b, "{\"ts\":\"");
        sg_buf_add_timestamp(&b);
        sg_buf_adds(&b, "\",\"level\":\"");
        sg_buf_adds(&b, level_names[lvl]);
        sg_buf_adds(&b, "\",\"cat\":");
        add_json_string(&b, cat->name, strlen(cat->name));
        sg_buf_adds(&b, ",\"msg\":");
        add_json_string(&b, msg, msg_len);
    } else {
        sg_buf_add_timestamp(&b);
        sg_buf_addc(&b, ' ');
        sg_buf_adds(&b, level_labels[lvl]);
        sg_buf_addc(&b, ' ');
        add_text_escaped(&b, cat->name, strlen(cat->name));
        sg_buf_adds(&b, ": ");
        add_text_escaped(&b, msg, msg_len);
    }
    for (size_t i = 0; i < n_kv; i++)
        add_field(&b, format, &kv[i]);
    if (with_src)
        add_field(&b, format, &src);
    if (format == SG_LOG_FORMAT_JSON)
        sg_buf_addc(&b, '}');
    sg_buf_addc(&b, '\n');

    if (sg_buf_error(&b) == 0)
        output(&b, lvl);
    sg_buf_free(&b);
    /* Logging must not disturb the caller's errno. */
    errno = saved_errno;
}

void sg_log_printf(struct sg_log_category *cat, enum sg_log_level lvl,
                   const char *file, int line, const char *fmt, ...)
{
    int saved_errno = errno; /* for %m, and restored for the caller */
    char small[512];         /* one pass covers nearly every message */
    char *big = NULL;
    const char *msg = small;
    va_list ap;
    int n;

    if (!sg_log_enabled(cat, lvl))
        goto cleanup;
    errno = saved_errno;
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        goto cleanup;
    if ((size_t)n >= sizeof(small)) {
        big = malloc((size_t)n + 1);
        if (big != NULL) {
            errno = saved_errno;
            va_start(ap, fmt);
            n = vsnprintf(big, (size_t)n + 1, fmt, ap);
            va_end(ap);
            if (n < 0)
                goto cleanup;
            msg = big;
        } else {
            n = (int)sizeof(small) - 1; /* the truncated message, then */
        }
    }
    log_emit(cat, lvl, file, line, msg, (size_t)n, NULL, 0);

 cleanup:
    free(big);
    errno = saved_errno;
}

void sg_log_kv(struct sg_log_category *cat, enum sg_log_level lvl,
               const char *msg, const struct sg_log_kv *kv, size_t n_kv)
{
    if (!sg_log_enabled(cat, lvl))
        return;
    if (msg == NULL)
        msg = "";
    log_emit(cat, lvl, NULL, 0, msg, strlen(msg), kv, n_kv);
}
