/*
 * log.h: structured logging with levels and per-category filters.
 *
 * Each .c file that logs declares its category once, at the top:
 *
 *     SG_LOG_INIT("server.call");
 *
 * and then logs with SG_DEBUG/SG_INFO/SG_WARN/SG_ERROR (printf-style) or
 * sg_log_kv() (structured key/value fields). Output goes to stderr, one line
 * per record, as JSON lines or as human-readable text.
 *
 * Filters are "category:level" pairs separated by commas, e.g.
 * "server:debug,server.access:off". A filter matches its category and every
 * category below it ("server" matches "server.call"); the longest match wins;
 * categories with no match use the global level.
 *
 * Nothing that is secret may be passed to these functions: callers format
 * request messages only through the redacting formatter
 * (server/descriptors.h), which drops fields marked secret in the proto.
 *
 * THREAD SAFETY: every function here may be called from any thread.
 * sg_log_configure() may run concurrently with logging (SIGHUP reload);
 * records are written whole, never interleaved.
 */
#ifndef SG_LOG_H
#define SG_LOG_H

#include "internal.h"
#include "error.h"

#include <stdatomic.h>

enum sg_log_level {
    SG_LOG_TRACE = 0,
    SG_LOG_DEBUG,
    SG_LOG_INFO,
    SG_LOG_WARN,
    SG_LOG_ERROR,
    SG_LOG_OFF,
};

enum sg_log_format {
    SG_LOG_FORMAT_AUTO = 0, /* text on a terminal, JSON otherwise */
    SG_LOG_FORMAT_JSON,
    SG_LOG_FORMAT_TEXT,
};

/*
 * A category. Statically allocated by SG_LOG_INIT; the cached level is
 * recomputed lazily when the filter generation changes.
 */
struct sg_log_category {
    const char *name;
    atomic_uint generation; /* filter generation the cache belongs to */
    atomic_int level;       /* cached effective level */
};

#define SG_LOG_INIT(catname)                                                   \
    static struct sg_log_category sg_log_self SG_UNUSED = {.name = (catname)}

enum sg_log_kv_kind { SG_LOG_KV_STR, SG_LOG_KV_INT, SG_LOG_KV_DOUBLE };

/* One structured field. The strings are borrowed for the call only. */
struct sg_log_kv {
    const char *key;
    enum sg_log_kv_kind kind;
    const char *str;
    long long num;
    double dbl;
};

#define SG_KV_STR(k, v) {.key = (k), .kind = SG_LOG_KV_STR, .str = (v)}
#define SG_KV_INT(k, v) {.key = (k), .kind = SG_LOG_KV_INT, .num = (v)}
#define SG_KV_DBL(k, v) {.key = (k), .kind = SG_LOG_KV_DOUBLE, .dbl = (v)}

/*
 * Set the global level, filters and format. Any of level/filters may be NULL
 * to leave it unchanged. Returns 0, or -1 with err set (SG_ERR_CONFIG) for an
 * unknown level name or a malformed filter; on error nothing changes.
 */
int sg_log_configure(const char *level, const char *filters,
                     enum sg_log_format format, struct sg_error *err);

/* Parse "trace|debug|info|warn|error|off". Returns 0 or -1. */
int sg_log_level_parse(const char *name, enum sg_log_level *out);
int sg_log_format_parse(const char *name, enum sg_log_format *out);

/*
 * Names for a level ("info") and a format ("auto"), as the parsers accept
 * them; "unknown" for a value out of range. Static strings.
 */
const char *sg_log_level_name(enum sg_log_level lvl);
const char *sg_log_format_name(enum sg_log_format format);

/*
 * Check a filter string as sg_log_configure() would, without applying it
 * (configuration loading reports bad filters with their file and line).
 * NULL and "" are valid (no filters). Returns 0, or -1 with err set
 * (SG_ERR_CONFIG).
 */
int sg_log_filters_check(const char *filters, struct sg_error *err);

/* True if a record at lvl in cat would be written. Cheap (an atomic load). */
bool sg_log_enabled(struct sg_log_category *cat, enum sg_log_level lvl);

void sg_log_printf(struct sg_log_category *cat, enum sg_log_level lvl,
                   const char *file, int line, const char *fmt, ...)
    SG_PRINTF(5, 6);

/* A record with a message and structured fields. */
void sg_log_kv(struct sg_log_category *cat, enum sg_log_level lvl,
               const char *msg, const struct sg_log_kv *kv, size_t n_kv);

/*
 * Start the asynchronous writer: records are buffered and written by a
 * flusher thread every 100 ms or every 32 KiB; WARN and ERROR records are
 * written at once, and order is always kept. Returns 0 or -1 (no thread).
 * sg_log_async_stop() writes what is pending and joins the thread; call it
 * before exit. Without sg_log_async_start every record is written at once.
 */
int sg_log_async_start(void);
void sg_log_async_stop(void);

/*
 * Send output to fd instead of stderr (tests). The fd is borrowed. Pass -1
 * to go back to stderr.
 */
void sg_log_set_fd(int fd);

#define SG_LOG_AT(lvl, ...)                                                    \
    do {                                                                       \
        if (sg_log_enabled(&sg_log_self, (lvl)))                               \
            sg_log_printf(&sg_log_self, (lvl), __FILE__, __LINE__,             \
                          __VA_ARGS__);                                        \
    } while (0)

#define SG_TRACE(...) SG_LOG_AT(SG_LOG_TRACE, __VA_ARGS__)
#define SG_DEBUG(...) SG_LOG_AT(SG_LOG_DEBUG, __VA_ARGS__)
#define SG_INFO(...) SG_LOG_AT(SG_LOG_INFO, __VA_ARGS__)
#define SG_WARN(...) SG_LOG_AT(SG_LOG_WARN, __VA_ARGS__)
#define SG_ERROR(...) SG_LOG_AT(SG_LOG_ERROR, __VA_ARGS__)

#endif /* SG_LOG_H */
