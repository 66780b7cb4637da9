/*
 * server_config.c: defaults, YAML loading, SANDGATE_* environment overrides
 * and validation of the daemon configuration (see server_config.h).
 *
 * One schema table, config_keys[], describes every setting: key path, type,
 * field offset, default and range. sg_config_new(), the YAML walker, the
 * environment overrides, sg_config_validate() and sg_config_free() are all
 * driven by it, so a new setting (or a new section: sections are implied by
 * dotted paths) is one table entry. listener_keys[] does the same for the
 * items of the "listeners" sequence.
 *
 * Scalars: integers are plain decimal digits (no sign, no suffix); booleans
 * are YAML 1.2 core spellings only (true/True/TRUE, false/False/FALSE), so
 * YAML 1.1's yes/no/on/off are rejected rather than silently meaning
 * something; a string that is empty or null (~, null, or nothing) is unset.
 */
#include "internal.h"

#include "server_config.h"
#include "yaml_node.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <jansson.h>
#include <math.h>

enum cfg_kind {
    CFG_UINT,        /* unsigned */
    CFG_SIZE,        /* size_t */
    CFG_BOOL,        /* bool */
    CFG_STRING,      /* char *, owned */
    CFG_ADDRESS,     /* char *, a listener address */
    CFG_LOG_LEVEL,   /* enum sg_log_level */
    CFG_LOG_FORMAT,  /* enum sg_log_format */
    CFG_LOG_FILTERS, /* char *, checked by sg_log_filters_check() */
    CFG_LISTENERS,   /* the listeners array of struct sg_config */
    CFG_CHOICE,      /* char *, one of cfg_key.choices */
    CFG_JSON,        /* char *, compact JSON text of a mapping */
    CFG_JSON_LIST,   /* char *, compact JSON text of a sequence, each item
                        checked by cfg_key.check_item */
};

/* What a value of each kind must look like, for "expected X, got Y". */
static const char *const kind_expected[] = {
    [CFG_UINT] = "an unsigned integer",
    [CFG_SIZE] = "an unsigned integer",
    [CFG_BOOL] = "true or false",
    [CFG_STRING] = "a string",
    [CFG_ADDRESS] = "an address",
    [CFG_LOG_LEVEL] = "one of trace, debug, info, warn, error, off",
    [CFG_LOG_FORMAT] = "one of auto, json, text",
    [CFG_LOG_FILTERS] = "a string",
    [CFG_LISTENERS] = "a sequence",
    [CFG_CHOICE] = "a string",
    [CFG_JSON] = "a mapping",
    [CFG_JSON_LIST] = "a sequence",
};

struct cfg_key {
    const char *path;          /* key path below the table's root */
    enum cfg_kind kind;
    size_t offset;             /* of the field in its struct */
    unsigned long long def;    /* default of numbers, booleans and enums */
    const char *def_str;       /* default of strings (NULL: unset) */
    unsigned long long min;    /* range of CFG_UINT and CFG_SIZE */
    unsigned long long max;
    bool required;             /* strings: must be set */
    const char *env;           /* variable suffix if not derived from path */
    const char *const *choices; /* CFG_CHOICE: NULL-terminated values */
    /* CFG_JSON_LIST: NULL, or a description of what is wrong with item */
    const char *(*check_item)(const json_t *item);
};

/* offsetof, refusing to compile when the field's type does not match. */
#define CFG_OFFSET(st, field, type)                                            \
    _Generic(((st *)0)->field, type: offsetof(st, field))

#define CFG_UINT_KEY(p, f, d, lo, hi)                                          \
    {.path = (p), .kind = CFG_UINT,                                            \
     .offset = CFG_OFFSET(struct sg_config, f, unsigned),                      \
     .def = (d), .min = (lo), .max = (hi)}
#define CFG_SIZE_KEY(p, f, d, lo, hi)                                          \
    {.path = (p), .kind = CFG_SIZE,                                            \
     .offset = CFG_OFFSET(struct sg_config, f, size_t),                        \
     .def = (d), .min = (lo), .max = (hi)}
#define CFG_BOOL_KEY(st, p, f, d)                                              \
    {.path = (p), .kind = CFG_BOOL, .offset = CFG_OFFSET(st, f, bool),         \
     .def = (d)}
#define CFG_STRING_KEY(st, p, k, f, d, req)                                    \
    {.path = (p), .kind = (k), .offset = CFG_OFFSET(st, f, char *),            \
     .def_str = (d), .required = (req)}

#define CFG_CHOICE_KEY(p, f, d, ch)                                            \
    {.path = (p), .kind = CFG_CHOICE,                                          \
     .offset = CFG_OFFSET(struct sg_config, f, char *), .def_str = (d),        \
     .choices = (ch)}

static const char *const store_backends[] = {"sqlite", NULL};
static const char *const durabilities[] = {"full", "normal", NULL};

#define MS_PER_HOUR 3600000ULL
#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)

/* credentials.file_directories: absolute paths. */
static const char *check_directory_item(const json_t *item)
{
    const char *s = json_string_value(item);

    if (s == NULL)
        return "expected a string";
    if (s[0] != '/')
        return "must be an absolute path";
    return NULL;
}

/* credentials.plugins: {path: absolute, settings: mapping} only. */
static const char *check_plugin_item(const json_t *item)
{
    const char *key;
    json_t *v;
    const char *path = json_string_value(json_object_get(item, "path"));

    if (!json_is_object(item))
        return "expected a mapping with path and settings";
    json_object_foreach((json_t *)item, key, v) {
        if (STRNEQ(key, "path") && STRNEQ(key, "settings"))
            return "unknown key (path and settings are)";
    }
    if (path == NULL || path[0] != '/')
        return "path: must be an absolute path";
    v = json_object_get(item, "settings");
    if (v != NULL && !json_is_object(v) && !json_is_null(v))
        return "settings: expected a mapping";
    return NULL;
}

/*
 * Every setting. Integer limits stay within INT_MAX because gRPC channel
 * arguments are ints.
 */
static const struct cfg_key config_keys[] = {
    {.path = "listeners", .kind = CFG_LISTENERS, .env = "LISTEN",
     .offset = CFG_OFFSET(struct sg_config, listeners,
                          struct sg_listener_config *),
     .def_str = SG_DEFAULT_LISTEN},
    CFG_STRING_KEY(struct sg_config, "data_dir", CFG_STRING, data_dir,
                   SG_DEFAULT_DATA_DIR, true),

    CFG_UINT_KEY("server.workers", workers, 0, 0, 256),
    CFG_SIZE_KEY("server.max_receive_message_bytes",
                 max_receive_message_bytes, 4 * MIB, 1 * KIB, 1 * GIB),
    CFG_UINT_KEY("server.max_concurrent_streams", max_concurrent_streams,
                 1000, 1, 1000000),
    CFG_SIZE_KEY("server.max_metadata_bytes", max_metadata_bytes, 16 * KIB,
                 1 * KIB, 1 * MIB),
    CFG_UINT_KEY("server.default_deadline_ms", default_deadline_ms, 30000, 1,
                 24 * MS_PER_HOUR),
    CFG_UINT_KEY("server.drain_timeout_ms", drain_timeout_ms, 10000, 0,
                 MS_PER_HOUR),
    CFG_UINT_KEY("server.keepalive.time_ms", keepalive_time_ms, 7200000, 1000,
                 INT_MAX),
    CFG_UINT_KEY("server.keepalive.timeout_ms", keepalive_timeout_ms, 20000,
                 1000, MS_PER_HOUR),
    CFG_UINT_KEY("server.keepalive.min_ping_interval_ms",
                 keepalive_min_ping_interval_ms, 10000, 0, INT_MAX),
    CFG_UINT_KEY("server.keepalive.max_ping_strikes",
                 keepalive_max_ping_strikes, 2, 0, 1000),
    CFG_BOOL_KEY(struct sg_config, "server.keepalive.permit_without_calls",
                 keepalive_permit_without_calls, false),

    {.path = "log.level", .kind = CFG_LOG_LEVEL, .def = SG_LOG_INFO,
     .offset = CFG_OFFSET(struct sg_config, log_level, enum sg_log_level)},
    CFG_STRING_KEY(struct sg_config, "log.filters", CFG_LOG_FILTERS,
                   log_filters, NULL, false),
    {.path = "log.format", .kind = CFG_LOG_FORMAT, .def = SG_LOG_FORMAT_AUTO,
     .offset = CFG_OFFSET(struct sg_config, log_format, enum sg_log_format)},
    CFG_BOOL_KEY(struct sg_config, "log.access_log", access_log, true),

    CFG_CHOICE_KEY("store.backend", store_backend, "sqlite", store_backends),
    CFG_STRING_KEY(struct sg_config, "store.sqlite.path", CFG_STRING,
                   store_path, NULL, false),
    CFG_CHOICE_KEY("store.sqlite.durability", store_durability, "full",
                   durabilities),
    CFG_UINT_KEY("store.sqlite.busy_timeout_ms", store_busy_timeout_ms, 5000,
                 0, MS_PER_HOUR),
    CFG_UINT_KEY("store.sqlite.max_batch", store_max_batch, 256, 1, 65536),

    CFG_SIZE_KEY("events.retention.max_count", events_retention_max_count,
                 1000000, 0, 1000000000000ULL),
    CFG_UINT_KEY("events.retention.max_age_seconds",
                 events_retention_max_age_s, 604800, 0, 315360000),
    CFG_SIZE_KEY("events.watch.queue_limit", events_watch_queue_limit, 4096,
                 16, 1048576),
    CFG_SIZE_KEY("events.watch.max_streams", events_watch_max_streams, 0, 0,
                 10000000),

    CFG_STRING_KEY(struct sg_config, "driver.name", CFG_STRING, driver_name,
                   "process", false),
    CFG_STRING_KEY(struct sg_config, "driver.plugin", CFG_STRING,
                   driver_plugin, NULL, false),
    CFG_STRING_KEY(struct sg_config, "driver.settings", CFG_JSON,
                   driver_settings, NULL, false),

    CFG_STRING_KEY(struct sg_config, "auth.policy_file", CFG_STRING,
                   auth_policy_file, NULL, false),
    CFG_STRING_KEY(struct sg_config, "auth.admin_token_file", CFG_STRING,
                   auth_admin_token_file, NULL, false),
    CFG_STRING_KEY(struct sg_config, "auth.gateway_namespace", CFG_STRING,
                   auth_gateway_namespace, NULL, false),
    CFG_BOOL_KEY(struct sg_config, "auth.reflection", auth_reflection, true),
    CFG_BOOL_KEY(struct sg_config, "auth.disabled", auth_disabled, false),
    CFG_STRING_KEY(struct sg_config, "auth.audit.file", CFG_STRING,
                   audit_file, NULL, false),
    CFG_SIZE_KEY("auth.audit.max_bytes", audit_max_bytes, 100 * MIB, 0,
                 1024 * GIB),
    CFG_UINT_KEY("auth.audit.max_files", audit_max_files, 5, 1, 1000),

    {.path = "credentials.file_directories", .kind = CFG_JSON_LIST,
     .offset = CFG_OFFSET(struct sg_config, credentials_file_directories,
                          char *),
     .check_item = check_directory_item},
    CFG_STRING_KEY(struct sg_config, "credentials.env_prefix", CFG_STRING,
                   credentials_env_prefix, NULL, false),
    {.path = "credentials.plugins", .kind = CFG_JSON_LIST,
     .offset = CFG_OFFSET(struct sg_config, credentials_plugins, char *),
     .check_item = check_plugin_item},
};

/* The keys of one item of "listeners". */
static const struct cfg_key listener_keys[] = {
    CFG_STRING_KEY(struct sg_listener_config, "address", CFG_ADDRESS, address,
                   NULL, true),
    CFG_STRING_KEY(struct sg_listener_config, "tls.cert_file", CFG_STRING,
                   cert_file, NULL, false),
    CFG_STRING_KEY(struct sg_listener_config, "tls.key_file", CFG_STRING,
                   key_file, NULL, false),
    CFG_STRING_KEY(struct sg_listener_config, "tls.client_ca_file",
                   CFG_STRING, client_ca_file, NULL, false),
    CFG_BOOL_KEY(struct sg_listener_config, "allow_insecure", allow_insecure,
                 false),
};

#define ENV_PREFIX "SANDGATE_"
/* Longest key path or variable name quoted in a message. */
#define CFG_PATH_MAX 128
/* Longest "listeners[N]". */
#define CFG_ROOT_MAX 32
/* Longest value quoted back in a message. */
#define CFG_QUOTE_MAX 64

/* Where a value comes from, for messages. */
struct cfg_loc {
    const char *file; /* file name, or NULL */
    size_t line;      /* 1-based, with file */
    const char *env;  /* environment variable, or NULL */
    const char *key;  /* key path, or NULL */
};

/* State of one YAML load. */
struct cfg_loader {
    struct sg_config *cfg;
    yaml_document_t *doc;
    const char *name;
    struct sg_error *err;
};

#define FIELD(base, k, type) ((type *)(void *)((char *)(base) + (k)->offset))

/*
 * Report a configuration error prefixed with its origin:
 *   file:line: key: message      (YAML)
 *   file:line: message           (YAML, document level)
 *   environment: NAME: message   (environment)
 *   key: message                 (validation)
 */
static void cfg_error(const struct cfg_loc *loc, struct sg_error *err,
                      const char *fmt, ...) SG_PRINTF(3, 4);
static void cfg_error(const struct cfg_loc *loc, struct sg_error *err,
                      const char *fmt, ...)
{
    char msg[SG_ERROR_MESSAGE_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (loc->env != NULL)
        sg_error_report(err, SG_ERR_CONFIG, "environment: %s: %s", loc->env,
                        msg);
    else if (loc->file != NULL && loc->key != NULL)
        sg_error_report(err, SG_ERR_CONFIG, "%s:%zu: %s: %s", loc->file,
                        loc->line, loc->key, msg);
    else if (loc->file != NULL)
        sg_error_report(err, SG_ERR_CONFIG, "%s:%zu: %s", loc->file,
                        loc->line, msg);
    else
        sg_error_report(err, SG_ERR_CONFIG, "%s: %s",
                        loc->key != NULL ? loc->key : "configuration", msg);
}

static void report_no_memory(struct sg_error *err)
{
    sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
}

/* ---- values ---------------------------------------------------------- */

/* Decimal digits only. Returns 0, -1 (not a number) or -2 (too large). */
static int parse_unsigned(const char *text, unsigned long long *out)
{
    unsigned long long v = 0;

    if (*text == '\0')
        return -1;
    for (const char *p = text; *p != '\0'; p++) {
        unsigned digit;

        if (*p < '0' || *p > '9')
            return -1;
        digit = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - digit) / 10)
            return -2;
        v = v * 10 + digit;
    }
    *out = v;
    return 0;
}

/* YAML 1.2 core schema booleans. */
static int parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};

    for (size_t i = 0; i < SG_N_ELEMENTS(yes); i++) {
        if (STREQ(text, yes[i])) {
            *out = true;
            return 0;
        }
        if (STREQ(text, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static bool host_is_valid(const char *host, size_t len)
{
    size_t label = 0;
    bool numeric = true;
    char v4[INET_ADDRSTRLEN];
    struct in_addr addr;

    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = host[i];

        if (c == '.') {
            if (label == 0 || host[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-'))
            return false;
        if ((c == '-' && label == 0) || ++label > 63)
            return false;
        if (c < '0' || c > '9')
            numeric = false;
    }
    if (label == 0 || host[len - 1] == '-')
        return false;
    if (!numeric)
        return true;
    /* All digits and dots: it must be a dotted-quad IPv4 address. */
    if (len >= sizeof(v4))
        return false;
    memcpy(v4, host, len);
    v4[len] = '\0';
    return inet_pton(AF_INET, v4, &addr) == 1;
}

/*
 * Check a listener address. Returns NULL when it is well formed, else why
 * not (a static string).
 */
static const char *address_problem(const char *addr)
{
    const char *host = addr;
    size_t host_len;
    const char *port;
    unsigned long long port_num;

    if (STRPREFIX(addr, "unix:")) {
        size_t len = strlen(addr + 5);

        if (len == 0)
            return "empty unix socket path";
        if (len >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return "unix socket path is too long";
        return NULL;
    }

    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        char v6[INET6_ADDRSTRLEN];
        struct in6_addr in6;

        if (close == NULL)
            return "missing ']' after the IPv6 address";
        host = addr + 1;
        host_len = (size_t)(close - host);
        if (host_len == 0 || host_len >= sizeof(v6))
            return "invalid IPv6 address";
        memcpy(v6, host, host_len);
        v6[host_len] = '\0';
        if (inet_pton(AF_INET6, v6, &in6) != 1)
            return "invalid IPv6 address";
        if (close[1] != ':')
            return "missing ':PORT'";
        port = close + 2;
    } else {
        const char *colon = strrchr(addr, ':');

        if (colon == NULL)
            return "missing ':PORT'";
        host_len = (size_t)(colon - addr);
        if (memchr(addr, ':', host_len) != NULL)
            return "an IPv6 address must be in brackets, as in [::1]:PORT";
        if (host_len == 0)
            return "missing host";
        if (!host_is_valid(host, host_len))
            return "invalid host name";
        port = colon + 1;
    }

    if (parse_unsigned(port, &port_num) != 0 || port_num < 1 ||
        port_num > 65535)
        return "the port must be a number from 1 to 65535";
    return NULL;
}

bool sg_config_address_is_local(const char *address)
{
    char host[INET6_ADDRSTRLEN];
    const char *start = address;
    size_t len;
    struct in_addr in4;
    struct in6_addr in6;

    if (address == NULL)
        return false;
    if (STRPREFIX(address, "unix:"))
        return true;

    if (address[0] == '[') {
        const char *close = strchr(address, ']');

        if (close == NULL)
            return false;
        start = address + 1;
        len = (size_t)(close - start);
    } else {
        const char *colon = strchr(address, ':');

        /* One colon separates the port; more is a bare IPv6 address. */
        if (colon != NULL && strchr(colon + 1, ':') == NULL)
            len = (size_t)(colon - address);
        else
            len = strlen(address);
    }
    if (len >= sizeof(host))
        return false;
    memcpy(host, start, len);
    host[len] = '\0';

    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &in4) == 1)
        return (ntohl(in4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &in6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&in6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&in6) && in6.s6_addr[12] == 127;
    }
    return false;
}

static void set_number(void *base, const struct cfg_key *k,
                       unsigned long long v)
{
    switch (k->kind) {
    case CFG_UINT:
        *FIELD(base, k, unsigned) = (unsigned)v;
        break;
    case CFG_SIZE:
        *FIELD(base, k, size_t) = (size_t)v;
        break;
    case CFG_BOOL:
        *FIELD(base, k, bool) = v != 0;
        break;
    case CFG_LOG_LEVEL:
        *FIELD(base, k, enum sg_log_level) = (enum sg_log_level)v;
        break;
    case CFG_LOG_FORMAT:
        *FIELD(base, k, enum sg_log_format) = (enum sg_log_format)v;
        break;
    default:
        break;
    }
}

static unsigned long long get_number(const void *base, const struct cfg_key *k)
{
    switch (k->kind) {
    case CFG_UINT:
        return *FIELD(base, k, const unsigned);
    case CFG_SIZE:
        return *FIELD(base, k, const size_t);
    default:
        return 0;
    }
}

static bool kind_is_string(enum cfg_kind kind)
{
    return kind == CFG_STRING || kind == CFG_ADDRESS ||
           kind == CFG_LOG_FILTERS || kind == CFG_CHOICE || kind == CFG_JSON ||
           kind == CFG_JSON_LIST;
}

/* Range of an integer. Returns 0 or -1 with err set. */
static int check_number(const struct cfg_key *k, unsigned long long v,
                        const struct cfg_loc *loc, struct sg_error *err)
{
    if ((k->kind == CFG_UINT || k->kind == CFG_SIZE) &&
        (v < k->min || v > k->max)) {
        cfg_error(loc, err, "%llu is out of range (%llu..%llu)", v, k->min,
                  k->max);
        return -1;
    }
    return 0;
}

static bool is_choice(const struct cfg_key *k, const char *s)
{
    for (const char *const *c = k->choices; *c != NULL; c++) {
        if (STREQ(*c, s))
            return true;
    }
    return false;
}

/* "expected one of a, b, got 'x'" */
static void report_bad_choice(const struct cfg_key *k, const char *s,
                              const struct cfg_loc *loc, struct sg_error *err)
{
    char list[CFG_PATH_MAX] = "";
    size_t used = 0;

    for (const char *const *c = k->choices; *c != NULL; c++) {
        int n = snprintf(list + used, sizeof(list) - used, "%s%s",
                         c == k->choices ? "" : ", ", *c);
        if (n < 0 || (size_t)n >= sizeof(list) - used)
            break;
        used += (size_t)n;
    }
    cfg_error(loc, err, "expected one of %s, got '%.*s'", list,
              CFG_QUOTE_MAX, s);
}

/* Syntax of a set string (NULL is unset and fine). Returns 0 or -1. */
static int check_string(const struct cfg_key *k, const char *s,
                        const struct cfg_loc *loc, struct sg_error *err)
{
    struct sg_error sub = SG_ERROR_INIT;
    const char *problem;
    int ret = 0;

    if (s == NULL)
        return 0;
    if (k->kind == CFG_ADDRESS) {
        problem = address_problem(s);
        if (problem != NULL) {
            cfg_error(loc, err, "'%.*s' is not a valid address: %s",
                      CFG_QUOTE_MAX, s, problem);
            ret = -1;
        }
    } else if (k->kind == CFG_LOG_FILTERS) {
        if (sg_log_filters_check(s, &sub) < 0) {
            cfg_error(loc, err, "%s", sub.message);
            ret = -1;
        }
        sg_error_reset(&sub);
    } else if (k->kind == CFG_CHOICE && !is_choice(k, s)) {
        report_bad_choice(k, s, loc, err);
        ret = -1;
    }
    return ret;
}

/* Replace a string field; "" means unset. Returns 0 or -1 (no memory). */
static int set_string(void *base, const struct cfg_key *k, const char *s,
                      struct sg_error *err)
{
    char **field = FIELD(base, k, char *);
    char *copy = NULL;

    if (s != NULL && *s != '\0') {
        copy = strdup(s);
        if (copy == NULL) {
            report_no_memory(err);
            return -1;
        }
    }
    free(*field);
    *field = copy;
    return 0;
}

/* Store obj as compact JSON text with sorted keys. */
static int set_json(void *base, const struct cfg_key *k, const json_t *obj,
                    struct sg_error *err)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    int ret;

    if (text == NULL) {
        report_no_memory(err);
        return -1;
    }
    ret = set_string(base, k, text, err);
    free(text);
    return ret;
}

/* Store a JSON object given as text (an environment variable). */
/* A sequence for k: every item passes k->check_item; stored as JSON. */
static int set_json_list(void *base, const struct cfg_key *k,
                         const json_t *arr, const struct cfg_loc *loc,
                         struct sg_error *err)
{
    size_t i;
    json_t *item;

    if (!json_is_array(arr)) {
        cfg_error(loc, err, "expected a sequence");
        return -1;
    }
    json_array_foreach(arr, i, item) {
        const char *why = k->check_item ? k->check_item(item) : NULL;

        if (why != NULL) {
            cfg_error(loc, err, "item %zu: %s", i, why);
            return -1;
        }
    }
    if (json_array_size(arr) == 0)
        return set_string(base, k, NULL, err);
    return set_json(base, k, arr, err);
}

static int set_json_text(void *base, const struct cfg_key *k,
                         const char *text, const struct cfg_loc *loc,
                         struct sg_error *err)
{
    json_error_t jerr;
    json_t *obj = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    int ret;

    if (obj == NULL || !json_is_object(obj)) {
        cfg_error(loc, err, "expected a JSON object: %s",
                  obj == NULL ? jerr.text : "not an object");
        json_decref(obj);
        return -1;
    }
    ret = set_json(base, k, obj, err);
    json_decref(obj);
    return ret;
}

/*
 * Parse text as the value of k and store it. is_null: YAML null, which
 * unsets a string. Returns 0 or -1 with err set.
 */
static int set_scalar(void *base, const struct cfg_key *k, const char *text,
                      bool is_null, const struct cfg_loc *loc,
                      struct sg_error *err)
{
    unsigned long long v = 0;
    bool b;
    enum sg_log_level level;
    enum sg_log_format format;
    int rc;

    switch (k->kind) {
    case CFG_UINT:
    case CFG_SIZE:
        rc = parse_unsigned(text, &v);
        if (rc == -2) {
            cfg_error(loc, err, "%.*s is out of range (%llu..%llu)",
                      CFG_QUOTE_MAX, text, k->min, k->max);
            return -1;
        }
        if (rc < 0)
            goto bad_value;
        if (check_number(k, v, loc, err) < 0)
            return -1;
        break;
    case CFG_BOOL:
        if (parse_bool(text, &b) < 0)
            goto bad_value;
        v = b;
        break;
    case CFG_LOG_LEVEL:
        if (sg_log_level_parse(text, &level) < 0)
            goto bad_value;
        v = level;
        break;
    case CFG_LOG_FORMAT:
        if (sg_log_format_parse(text, &format) < 0)
            goto bad_value;
        v = format;
        break;
    case CFG_JSON:
        if (is_null)
            return set_string(base, k, NULL, err);
        return set_json_text(base, k, text, loc, err);
    case CFG_JSON_LIST: {
        /* From the environment: the sequence as JSON text. */
        json_error_t jerr;
        json_t *arr;
        int ret;

        if (is_null)
            return set_string(base, k, NULL, err);
        arr = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
        if (arr == NULL) {
            cfg_error(loc, err, "expected a JSON array: %s", jerr.text);
            return -1;
        }
        ret = set_json_list(base, k, arr, loc, err);
        json_decref(arr);
        return ret;
    }
    case CFG_STRING:
    case CFG_ADDRESS:
    case CFG_LOG_FILTERS:
    case CFG_CHOICE:
        if (is_null)
            text = NULL;
        if (check_string(k, text, loc, err) < 0)
            return -1;
        return set_string(base, k, text, err);
    case CFG_LISTENERS:
    default:
        goto bad_value;
    }
    set_number(base, k, v);
    return 0;

 bad_value:
    cfg_error(loc, err, "expected %s, got '%.*s'", kind_expected[k->kind],
              CFG_QUOTE_MAX, text);
    return -1;
}

/* ---- defaults and freeing -------------------------------------------- */

static void free_strings(const struct cfg_key *keys, size_t n_keys,
                         void *base)
{
    for (size_t i = 0; i < n_keys; i++) {
        if (kind_is_string(keys[i].kind)) {
            free(*FIELD(base, &keys[i], char *));
            *FIELD(base, &keys[i], char *) = NULL;
        }
    }
}

static void listeners_free(struct sg_listener_config *listeners, size_t n)
{
    for (size_t i = 0; listeners != NULL && i < n; i++)
        free_strings(listener_keys, SG_N_ELEMENTS(listener_keys),
                     &listeners[i]);
    free(listeners);
}

/* Returns 0 or -1 (no memory). */
static int apply_defaults(const struct cfg_key *keys, size_t n_keys,
                          void *base, struct sg_error *err)
{
    for (size_t i = 0; i < n_keys; i++) {
        const struct cfg_key *k = &keys[i];

        if (k->kind == CFG_LISTENERS) {
            const char *addr = k->def_str;

            if (sg_config_set_listen(base, &addr, 1, err) < 0)
                return -1;
        } else if (kind_is_string(k->kind)) {
            if (set_string(base, k, k->def_str, err) < 0)
                return -1;
        } else {
            set_number(base, k, k->def);
        }
    }
    return 0;
}

struct sg_config *sg_config_new(void)
{
    struct sg_config *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL)
        return NULL;
    if (apply_defaults(config_keys, SG_N_ELEMENTS(config_keys), cfg,
                       NULL) < 0) {
        sg_config_free(cfg);
        return NULL;
    }
    return cfg;
}

void sg_config_free(struct sg_config *cfg)
{
    if (cfg == NULL)
        return;
    listeners_free(cfg->listeners, cfg->n_listeners);
    free_strings(config_keys, SG_N_ELEMENTS(config_keys), cfg);
    free(cfg->source);
    free(cfg);
}

int sg_config_set_listen(struct sg_config *cfg, const char *const *addrs,
                         size_t n, struct sg_error *err)
{
    struct sg_listener_config *listeners = NULL;
    int ret = -1;

    if (n > 0) {
        listeners = calloc(n, sizeof(*listeners));
        if (listeners == NULL) {
            report_no_memory(err);
            goto cleanup;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (apply_defaults(listener_keys, SG_N_ELEMENTS(listener_keys),
                           &listeners[i], err) < 0)
            goto cleanup;
        listeners[i].address = strdup(addrs[i]);
        if (listeners[i].address == NULL) {
            report_no_memory(err);
            goto cleanup;
        }
    }

    listeners_free(cfg->listeners, cfg->n_listeners);
    cfg->listeners = listeners;
    cfg->n_listeners = n;
    listeners = NULL;
    ret = 0;

 cleanup:
    listeners_free(listeners, n);
    return ret;
}

/* ---- YAML ------------------------------------------------------------ */

static const struct cfg_key *find_key(const struct cfg_key *keys,
                                      size_t n_keys, const char *path)
{
    for (size_t i = 0; i < n_keys; i++) {
        if (STREQ(keys[i].path, path))
            return &keys[i];
    }
    return NULL;
}

/* True if some key lies below path ("server" for "server.workers"). */
static bool is_section(const struct cfg_key *keys, size_t n_keys,
                       const char *path)
{
    size_t len = strlen(path);

    for (size_t i = 0; i < n_keys; i++) {
        if (strncmp(keys[i].path, path, len) == 0 && keys[i].path[len] == '.')
            return true;
    }
    return false;
}

static int load_mapping(struct cfg_loader *ld, const struct cfg_key *keys,
                        size_t n_keys, void *base, yaml_node_t *map,
                        const char *root, const char *section);

/* One item of "listeners" into l (zeroed). Returns 0 or -1. */
static int load_listener(struct cfg_loader *ld, yaml_node_t *item,
                         size_t idx, struct sg_listener_config *l)
{
    char root[CFG_ROOT_MAX];
    struct cfg_loc loc = {.file = ld->name, .line = sg_yaml_line(item),
                          .key = root};

    snprintf(root, sizeof(root), "listeners[%zu]", idx);
    if (apply_defaults(listener_keys, SG_N_ELEMENTS(listener_keys), l,
                       ld->err) < 0)
        return -1;
    if (item->type != YAML_MAPPING_NODE) {
        cfg_error(&loc, ld->err, "expected a mapping, got a %s",
                  sg_yaml_kind_name(item));
        return -1;
    }
    if (load_mapping(ld, listener_keys, SG_N_ELEMENTS(listener_keys), l, item,
                     root, "") < 0)
        return -1;
    for (size_t i = 0; i < SG_N_ELEMENTS(listener_keys); i++) {
        const struct cfg_key *k = &listener_keys[i];

        if (k->required && *FIELD(l, k, char *) == NULL) {
            cfg_error(&loc, ld->err, "missing required key '%s'", k->path);
            return -1;
        }
    }
    return 0;
}

/* "listeners": a sequence that replaces the whole list (null: empty). */
static int load_listeners(struct cfg_loader *ld, yaml_node_t *node,
                          const struct cfg_loc *loc)
{
    struct sg_listener_config *listeners = NULL;
    size_t n = 0;
    int ret = -1;

    if (node->type == YAML_SEQUENCE_NODE) {
        n = (size_t)(node->data.sequence.items.top -
                     node->data.sequence.items.start);
    } else if (!sg_yaml_is_null(node)) {
        cfg_error(loc, ld->err, "expected a sequence, got a %s",
                  sg_yaml_kind_name(node));
        goto cleanup;
    }
    if (n > 0) {
        listeners = calloc(n, sizeof(*listeners));
        if (listeners == NULL) {
            report_no_memory(ld->err);
            goto cleanup;
        }
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(
            ld->doc, node->data.sequence.items.start[i]);

        if (load_listener(ld, item, i, &listeners[i]) < 0)
            goto cleanup;
    }

    listeners_free(ld->cfg->listeners, ld->cfg->n_listeners);
    ld->cfg->listeners = listeners;
    ld->cfg->n_listeners = n;
    listeners = NULL;
    ret = 0;

 cleanup:
    listeners_free(listeners, n);
    return ret;
}

/*
 * A YAML node as JSON. Plain scalars follow the YAML 1.2 core schema (null,
 * booleans, integers, floats, else strings); quoted scalars are strings.
 * Returns a new reference, or NULL with err set.
 */
static json_t *yaml_to_json(struct cfg_loader *ld, yaml_node_t *node,
                            const struct cfg_loc *loc)
{
    json_t *out = NULL;

    if (node->type == YAML_SCALAR_NODE) {
        const char *text = sg_yaml_text(node);
        unsigned long long u;
        bool b;
        char *end;
        double d;

        if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
            return json_string(text);
        if (sg_yaml_is_null(node))
            return json_null();
        if (parse_bool(text, &b) == 0)
            return json_boolean(b);
        if (parse_unsigned(text, &u) == 0 && u <= INT64_MAX)
            return json_integer((json_int_t)u);
        if (text[0] == '-' && parse_unsigned(text + 1, &u) == 0 &&
            u <= INT64_MAX)
            return json_integer(-(json_int_t)u);
        errno = 0;
        d = strtod(text, &end);
        if (*text != '\0' && *end == '\0' && errno == 0 && isfinite(d))
            return json_real(d);
        return json_string(text);
    }
    if (node->type == YAML_SEQUENCE_NODE) {
        out = json_array();
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             out != NULL && it < node->data.sequence.items.top; it++) {
            json_t *v = yaml_to_json(ld, yaml_document_get_node(ld->doc, *it),
                                     loc);
            if (v == NULL || json_array_append_new(out, v) < 0)
                goto fail;
        }
        return out;
    }
    out = json_object();
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start;
         out != NULL && p < node->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_document_get_node(ld->doc, p->key);
        json_t *v;

        if (key->type != YAML_SCALAR_NODE) {
            cfg_error(loc, ld->err, "expected a scalar key, got a %s",
                      sg_yaml_kind_name(key));
            goto fail;
        }
        if (json_object_get(out, sg_yaml_text(key)) != NULL) {
            cfg_error(loc, ld->err, "duplicate key '%.*s' on line %zu",
                      CFG_QUOTE_MAX, sg_yaml_text(key), sg_yaml_line(key));
            goto fail;
        }
        v = yaml_to_json(ld, yaml_document_get_node(ld->doc, p->value), loc);
        if (v == NULL || json_object_set_new(out, sg_yaml_text(key), v) < 0)
            goto fail;
    }
    if (out != NULL)
        return out;
    report_no_memory(ld->err);
    return NULL;

 fail:
    if (!sg_error_is_set(ld->err))
        report_no_memory(ld->err);
    json_decref(out);
    return NULL;
}

static int load_json(struct cfg_loader *ld, const struct cfg_key *k,
                     void *base, yaml_node_t *node, const struct cfg_loc *loc)
{
    json_t *obj;
    int ret;

    /* An empty mapping is the same as none: the driver gets "{}". */
    if (sg_yaml_is_null(node) ||
        (node->type == YAML_MAPPING_NODE &&
         node->data.mapping.pairs.top == node->data.mapping.pairs.start))
        return set_string(base, k, NULL, ld->err);
    if (node->type != YAML_MAPPING_NODE) {
        cfg_error(loc, ld->err, "expected a mapping, got a %s",
                  sg_yaml_kind_name(node));
        return -1;
    }
    obj = yaml_to_json(ld, node, loc);
    if (obj == NULL)
        return -1;
    ret = set_json(base, k, obj, ld->err);
    json_decref(obj);
    return ret;
}

static int load_json_list(struct cfg_loader *ld, const struct cfg_key *k,
                          void *base, yaml_node_t *node,
                          const struct cfg_loc *loc)
{
    json_t *arr;
    int ret;

    if (sg_yaml_is_null(node))
        return set_string(base, k, NULL, ld->err);
    if (node->type != YAML_SEQUENCE_NODE) {
        cfg_error(loc, ld->err, "expected a sequence, got a %s",
                  sg_yaml_kind_name(node));
        return -1;
    }
    arr = yaml_to_json(ld, node, loc);
    if (arr == NULL)
        return -1;
    ret = set_json_list(base, k, arr, loc, ld->err);
    json_decref(arr);
    return ret;
}

static int load_value(struct cfg_loader *ld, const struct cfg_key *k,
                      void *base, yaml_node_t *node,
                      const struct cfg_loc *loc)
{
    if (k->kind == CFG_LISTENERS)
        return load_listeners(ld, node, loc);
    if (k->kind == CFG_JSON_LIST)
        return load_json_list(ld, k, base, node, loc);
    if (k->kind == CFG_JSON)
        return load_json(ld, k, base, node, loc);
    if (node->type != YAML_SCALAR_NODE) {
        cfg_error(loc, ld->err, "expected %s, got a %s",
                  kind_expected[k->kind], sg_yaml_kind_name(node));
        return -1;
    }
    return set_scalar(base, k, sg_yaml_text(node), sg_yaml_is_null(node), loc,
                      ld->err);
}

/*
 * Apply a mapping of keys[] to base. root prefixes key paths in messages
 * ("listeners[0]"); section is the path of this mapping below the table's
 * root ("" at the top, "server.keepalive" further down).
 */
static int load_mapping(struct cfg_loader *ld, const struct cfg_key *keys,
                        size_t n_keys, void *base, yaml_node_t *map,
                        const char *root, const char *section)
{
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    yaml_node_pair_t *top = map->data.mapping.pairs.top;

    for (yaml_node_pair_t *pair = start; pair < top; pair++) {
        yaml_node_t *key = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *value = yaml_document_get_node(ld->doc, pair->value);
        char path[CFG_PATH_MAX];                 /* below the table's root */
        char shown[CFG_ROOT_MAX + CFG_PATH_MAX]; /* in messages */
        struct cfg_loc loc = {.file = ld->name, .line = sg_yaml_line(key),
                              .key = shown};
        const struct cfg_key *k;
        const char *name;
        int len;

        if (key->type != YAML_SCALAR_NODE) {
            snprintf(shown, sizeof(shown), "%s%s%s", root,
                     *root != '\0' && *section != '\0' ? "." : "", section);
            if (*shown == '\0')
                loc.key = NULL;
            cfg_error(&loc, ld->err, "expected a scalar key, got a %s",
                      sg_yaml_kind_name(key));
            return -1;
        }
        name = sg_yaml_text(key);
        len = snprintf(path, sizeof(path), "%s%s%s", section,
                       *section != '\0' ? "." : "", name);
        snprintf(shown, sizeof(shown), "%s%s%s", root,
                 *root != '\0' ? "." : "", path);

        /* A dotted key would bypass the section it names. */
        if (len < 0 || (size_t)len >= sizeof(path) ||
            strchr(name, '.') != NULL) {
            cfg_error(&loc, ld->err, "unknown key");
            return -1;
        }
        for (yaml_node_pair_t *prev = start; prev < pair; prev++) {
            yaml_node_t *prev_key = yaml_document_get_node(ld->doc,
                                                           prev->key);

            if (prev_key->type == YAML_SCALAR_NODE &&
                STREQ(sg_yaml_text(prev_key), name)) {
                cfg_error(&loc, ld->err, "duplicate key (first on line %zu)",
                          sg_yaml_line(prev_key));
                return -1;
            }
        }

        k = find_key(keys, n_keys, path);
        if (k != NULL) {
            loc.line = sg_yaml_line(value);
            if (load_value(ld, k, base, value, &loc) < 0)
                return -1;
        } else if (is_section(keys, n_keys, path)) {
            if (sg_yaml_is_null(value))
                continue; /* "server:" with nothing below it */
            if (value->type != YAML_MAPPING_NODE) {
                loc.line = sg_yaml_line(value);
                cfg_error(&loc, ld->err, "expected a mapping, got a %s",
                          sg_yaml_kind_name(value));
                return -1;
            }
            if (load_mapping(ld, keys, n_keys, base, value, root, path) < 0)
                return -1;
        } else {
            cfg_error(&loc, ld->err, "unknown key");
            return -1;
        }
    }
    return 0;
}

/* Load the one document the parser holds into cfg. */
static int load_parser(struct sg_config *cfg, const char *name,
                       yaml_parser_t *parser, struct sg_error *err)
{
    yaml_document_t doc;
    struct cfg_loader ld = {.cfg = cfg, .doc = &doc, .name = name,
                            .err = err};
    yaml_node_t *root;
    int ret = -1;

    if (sg_yaml_load(parser, name, &doc, err) < 0)
        return -1;

    /* No root (empty file, comments only) or a null one: all defaults. */
    root = yaml_document_get_root_node(&doc);
    if (root != NULL && !sg_yaml_is_null(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            struct cfg_loc loc = {.file = name, .line = sg_yaml_line(root)};

            cfg_error(&loc, err, "expected a mapping at the top level, got "
                      "a %s", sg_yaml_kind_name(root));
            goto cleanup;
        }
        if (load_mapping(&ld, config_keys, SG_N_ELEMENTS(config_keys), cfg,
                         root, "", "") < 0)
            goto cleanup;
    }

    if (sg_yaml_expect_end(parser, name, err) < 0)
        goto cleanup;
    ret = 0;

 cleanup:
    yaml_document_delete(&doc);
    return ret;
}

int sg_config_load_data(struct sg_config *cfg, const char *name,
                        const char *text, size_t len, struct sg_error *err)
{
    yaml_parser_t parser;
    int ret;

    if (!yaml_parser_initialize(&parser)) {
        report_no_memory(err);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    ret = load_parser(cfg, name, &parser, err);
    yaml_parser_delete(&parser);
    return ret;
}

int sg_config_load_file(struct sg_config *cfg, const char *path,
                        struct sg_error *err)
{
    yaml_parser_t parser;
    bool have_parser = false;
    FILE *file = NULL;
    char *source = NULL;
    char reason[128];
    int ret = -1;

    file = fopen(path, "re");
    if (file == NULL) {
        sg_error_report(err, SG_ERR_CONFIG, "cannot open '%s': %s", path,
                        sg_strerror(errno, reason, sizeof(reason)));
        goto cleanup;
    }
    source = strdup(path);
    if (source == NULL || !yaml_parser_initialize(&parser)) {
        report_no_memory(err);
        goto cleanup;
    }
    have_parser = true;
    yaml_parser_set_input_file(&parser, file);
    if (load_parser(cfg, path, &parser, err) < 0)
        goto cleanup;

    free(cfg->source);
    cfg->source = source;
    source = NULL;
    ret = 0;

 cleanup:
    if (have_parser)
        yaml_parser_delete(&parser);
    if (file != NULL)
        fclose(file);
    free(source);
    return ret;
}

/* ---- environment ----------------------------------------------------- */

/* True if name (without the prefix) is the variable of k. */
static bool env_name_is(const struct cfg_key *k, const char *name,
                        size_t len)
{
    const char *s = k->env != NULL ? k->env : k->path;
    size_t i;

    for (i = 0; i < len && s[i] != '\0'; i++) {
        char c = s[i];

        if (c == '.')
            c = '_';
        else if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (name[i] != c)
            return false;
    }
    return i == len && s[i] == '\0';
}

/* SANDGATE_LISTEN: comma-separated plaintext addresses. */
static int apply_env_listen(struct sg_config *cfg, const char *value,
                            const struct cfg_loc *loc, struct sg_error *err)
{
    const struct cfg_key *addr_key = &listener_keys[0];
    char *copy = strdup(value);
    const char **addrs = NULL;
    size_t n = 0;
    char *p = copy;
    int ret = -1;

    if (copy == NULL) {
        report_no_memory(err);
        goto cleanup;
    }
    /* At most one address per comma, plus one. */
    addrs = calloc(strlen(copy) / 2 + 2, sizeof(*addrs));
    if (addrs == NULL) {
        report_no_memory(err);
        goto cleanup;
    }
    for (;;) {
        char *end = strchr(p, ',');
        char *last;

        if (end != NULL)
            *end = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        last = p + strlen(p);
        while (last > p && (last[-1] == ' ' || last[-1] == '\t'))
            *--last = '\0';
        if (*p == '\0') {
            cfg_error(loc, err, "empty address in '%.*s'", CFG_QUOTE_MAX,
                      value);
            goto cleanup;
        }
        if (check_string(addr_key, p, loc, err) < 0)
            goto cleanup;
        addrs[n++] = p;
        if (end == NULL)
            break;
        p = end + 1;
    }
    ret = sg_config_set_listen(cfg, addrs, n, err);

 cleanup:
    free(addrs);
    free(copy);
    return ret;
}

int sg_config_apply_env(struct sg_config *cfg, char *const *envp,
                        struct sg_error *err)
{
    const size_t prefix_len = strlen(ENV_PREFIX);

    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
        const char *entry = envp[i];
        const char *eq = strchr(entry, '=');
        const struct cfg_key *k = NULL;
        char var[CFG_PATH_MAX];
        struct cfg_loc loc = {.env = var};
        size_t len;

        if (!STRPREFIX(entry, ENV_PREFIX) || eq == NULL)
            continue;
        len = (size_t)(eq - entry);
        snprintf(var, sizeof(var), "%.*s", (int)len, entry);
        for (size_t j = 0; j < SG_N_ELEMENTS(config_keys); j++) {
            if (env_name_is(&config_keys[j], entry + prefix_len,
                            len - prefix_len)) {
                k = &config_keys[j];
                break;
            }
        }
        if (k == NULL) {
            cfg_error(&loc, err, "unknown variable");
            return -1;
        }
        if (k->kind == CFG_LISTENERS) {
            if (apply_env_listen(cfg, eq + 1, &loc, err) < 0)
                return -1;
        } else if (set_scalar(cfg, k, eq + 1, false, &loc, err) < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- validation ------------------------------------------------------ */

/* Ranges, required strings and string syntax of one struct. */
static int validate_keys(const struct cfg_key *keys, size_t n_keys,
                         const void *base, const char *root,
                         struct sg_error *err)
{
    for (size_t i = 0; i < n_keys; i++) {
        const struct cfg_key *k = &keys[i];
        char shown[CFG_ROOT_MAX + CFG_PATH_MAX];
        struct cfg_loc loc = {.key = shown};

        snprintf(shown, sizeof(shown), "%s%s%s", root,
                 *root != '\0' ? "." : "", k->path);
        if (kind_is_string(k->kind)) {
            const char *s = *FIELD(base, k, char *const);

            if (k->required && s == NULL) {
                cfg_error(&loc, err, "must be set");
                return -1;
            }
            if (check_string(k, s, &loc, err) < 0)
                return -1;
        } else if (check_number(k, get_number(base, k), &loc, err) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The file must open for reading and be a regular file. */
static int check_readable(const char *path, const struct cfg_loc *loc,
                          struct sg_error *err)
{
    char reason[128];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    int ret = -1;

    if (fd < 0) {
        cfg_error(loc, err, "cannot open '%s': %s", path,
                  sg_strerror(errno, reason, sizeof(reason)));
        goto cleanup;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        cfg_error(loc, err, "'%s' is not a regular file", path);
        goto cleanup;
    }
    ret = 0;

 cleanup:
    if (fd >= 0)
        close(fd);
    return ret;
}

static int validate_listener(const struct sg_config *cfg, size_t idx,
                             struct sg_error *err)
{
    const struct sg_listener_config *l = &cfg->listeners[idx];
    char root[CFG_ROOT_MAX];
    char shown[CFG_PATH_MAX];
    struct cfg_loc loc = {.key = shown};
    const struct {
        const char *key;
        const char *path;
    } files[] = {
        {"tls.cert_file", l->cert_file},
        {"tls.key_file", l->key_file},
        {"tls.client_ca_file", l->client_ca_file},
    };

    snprintf(root, sizeof(root), "listeners[%zu]", idx);
    if (validate_keys(listener_keys, SG_N_ELEMENTS(listener_keys), l, root,
                      err) < 0)
        return -1;

    snprintf(shown, sizeof(shown), "%s.tls", root);
    if ((l->cert_file == NULL) != (l->key_file == NULL)) {
        cfg_error(&loc, err, "cert_file and key_file must be set together");
        return -1;
    }
    snprintf(shown, sizeof(shown), "%s.tls.client_ca_file", root);
    if (l->client_ca_file != NULL && l->cert_file == NULL) {
        cfg_error(&loc, err, "requires cert_file and key_file");
        return -1;
    }
    for (size_t i = 0; i < SG_N_ELEMENTS(files); i++) {
        snprintf(shown, sizeof(shown), "%s.%s", root, files[i].key);
        if (files[i].path != NULL &&
            check_readable(files[i].path, &loc, err) < 0)
            return -1;
    }

    snprintf(shown, sizeof(shown), "%s.address", root);
    if (l->cert_file == NULL && !l->allow_insecure &&
        !sg_config_address_is_local(l->address)) {
        cfg_error(&loc, err, "plaintext on non-loopback address '%s'; "
                  "configure tls, or set allow_insecure: true to accept "
                  "unencrypted connections", l->address);
        return -1;
    }
    for (size_t j = 0; j < idx; j++) {
        if (STREQ(cfg->listeners[j].address, l->address)) {
            cfg_error(&loc, err, "'%s' is already used by listeners[%zu]",
                      l->address, j);
            return -1;
        }
    }
    return 0;
}

int sg_config_validate(const struct sg_config *cfg, struct sg_error *err)
{
    if (cfg->n_listeners == 0) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "listeners: at least one listener is required");
        return -1;
    }
    if (validate_keys(config_keys, SG_N_ELEMENTS(config_keys), cfg, "",
                      err) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (validate_listener(cfg, i, err) < 0)
            return -1;
        /* Without authentication anyone who can connect is admin. */
        if (cfg->auth_disabled &&
            !sg_config_address_is_local(cfg->listeners[i].address)) {
            sg_error_report(err, SG_ERR_CONFIG,
                            "auth.disabled: refused because listener '%s' "
                            "is not loopback or a unix socket",
                            cfg->listeners[i].address);
            return -1;
        }
    }
    if (cfg->auth_disabled && cfg->auth_policy_file) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "auth.disabled: cannot be combined with "
                        "auth.policy_file");
        return -1;
    }
    return 0;
}
