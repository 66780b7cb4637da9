/*
 * server_config.h: the daemon's configuration.
 *
 * Precedence, lowest first: built-in defaults (sg_config_new), the YAML file
 * (sg_config_load_file), SANDGATE_* environment variables
 * (sg_config_apply_env), then command-line flags (applied by server/main.c
 * directly to the struct). sg_config_validate() runs last.
 *
 * Errors name the file, line and key: "sandgate.yaml:12: server.workers:
 * expected an unsigned integer, got 'many'". Unknown keys are errors.
 *
 * The sample configuration docs/sandgate.yaml documents every key; a unit
 * test loads it.
 *
 * OWNERSHIP: sg_config_new() returns a config the caller frees with
 * sg_config_free(); every string and array inside it is owned by it.
 * THREAD SAFETY: none; a config is built on one thread, then only read.
 * A SIGHUP reload builds a new config and swaps the reloadable parts.
 */
#ifndef SG_SERVER_CONFIG_H
#define SG_SERVER_CONFIG_H

#include "internal.h"
#include "error.h"
#include "log.h"

/* One listening address. */
struct sg_listener_config {
    char *address;          /* "HOST:PORT" or "unix:PATH" */
    /* TLS: set when cert_file and key_file are set. */
    char *cert_file;        /* PEM server certificate chain */
    char *key_file;         /* PEM private key */
    char *client_ca_file;   /* PEM CA bundle; set => clients must present a
                               certificate signed by it (mTLS) */
    bool allow_insecure;    /* permit plaintext on a non-loopback address */
};

struct sg_config {
    char *source;           /* file it was loaded from, or NULL */

    struct sg_listener_config *listeners;
    size_t n_listeners;

    char *data_dir;

    /* server: */
    unsigned workers;                  /* completion-queue threads; 0 = one per core */
    size_t max_receive_message_bytes;  /* default 4 MiB */
    unsigned max_concurrent_streams;   /* per connection; default 1000 */
    size_t max_metadata_bytes;         /* default 16 KiB (JWTs can be large) */
    unsigned default_deadline_ms;      /* unary calls without a deadline; default 30000 */
    unsigned drain_timeout_ms;         /* graceful shutdown; default 10000 */
    /* server.keepalive: */
    unsigned keepalive_time_ms;               /* server pings idle clients; default 7200000 */
    unsigned keepalive_timeout_ms;            /* ping ack timeout; default 20000 */
    unsigned keepalive_min_ping_interval_ms;  /* minimum client ping interval; default 10000 */
    unsigned keepalive_max_ping_strikes;      /* bad pings before GOAWAY; default 2 */
    bool keepalive_permit_without_calls;      /* allow client pings with no calls; default false */

    /* log: */
    enum sg_log_level log_level;       /* default info */
    char *log_filters;                 /* "cat:level,..." or NULL */
    enum sg_log_format log_format;     /* default auto */
    bool access_log;                   /* one line per call; default true */

    /* store: */
    char *store_backend;               /* "sqlite" */
    char *store_path;                  /* NULL: <data_dir>/sandgate.db */
    char *store_durability;            /* "full" (default) or "normal" */
    unsigned store_busy_timeout_ms;    /* default 5000 */
    unsigned store_max_batch;          /* writes per group commit; 256 */

    /* events: (docs/EVENTS.md) */
    size_t events_retention_max_count;   /* events kept; 0 = no limit; 1000000 */
    unsigned events_retention_max_age_s; /* 0 = no limit; 604800 (7 days) */
    size_t events_watch_queue_limit;     /* per WatchEvents stream; 4096 */
    size_t events_watch_max_streams;     /* open at once; 0 = no limit */

    /* driver: */
    char *driver_name;                 /* built-in driver; default "process" */
    char *driver_plugin;               /* absolute path of a driver .so */
    char *driver_settings;             /* JSON object text, or NULL */

    /* auth: (docs/AUTHORIZATION.md) */
    char *auth_policy_file;            /* NULL: the embedded default */
    char *auth_admin_token_file;       /* NULL: <data_dir>/admin.token */
    char *auth_gateway_namespace;      /* NULL: detected, if in a pod */
    bool auth_reflection;              /* serve reflection; default true */
    bool auth_disabled;                /* loopback-only; default false */
    char *audit_file;                  /* NULL: off; "-": stdout */
    size_t audit_max_bytes;            /* rotate past this; 100 MiB */
    unsigned audit_max_files;          /* rotated files kept; 5 */

    /* credentials: (docs/CREDENTIALS.md) */
    /* JSON array text of absolute directories the file source may read
       under, or NULL (none: it refuses every reference). */
    char *credentials_file_directories;
    char *credentials_env_prefix;      /* NULL: the env source refuses all */
    /* JSON array text of {"path": absolute .so, "settings": {...}}, or
       NULL (no plugins: the loader stays off). */
    char *credentials_plugins;
};

/* A config holding every default. NULL only when out of memory. */
struct sg_config *sg_config_new(void);
void sg_config_free(struct sg_config *cfg); /* NULL-safe */

/*
 * Merge a YAML file into cfg. Keys present in the file replace the current
 * values; a "listeners" list replaces the whole list. Returns 0, or -1 with
 * err set (SG_ERR_CONFIG, message naming file:line: key). On error cfg may
 * hold part of the file; callers discard it.
 */
int sg_config_load_file(struct sg_config *cfg, const char *path,
                        struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* The same from memory; name is used in messages in place of a file name. */
int sg_config_load_data(struct sg_config *cfg, const char *name,
                        const char *text, size_t len,
                        struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Apply SANDGATE_* variables from envp (NULL-terminated, as environ).
 * Names are the key path upper-cased with '.' as '_': SANDGATE_DATA_DIR,
 * SANDGATE_SERVER_WORKERS, SANDGATE_LOG_LEVEL, SANDGATE_SERVER_KEEPALIVE_TIME_MS,
 * ... SANDGATE_LISTEN takes a comma-separated list of plaintext addresses
 * and replaces the listeners. An unknown SANDGATE_ variable is an error.
 */
int sg_config_apply_env(struct sg_config *cfg, char *const *envp,
                        struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Replace all listeners by plaintext listeners on the given addresses
 * (used for --listen and SANDGATE_LISTEN). Returns 0 or -1 (no memory).
 */
int sg_config_set_listen(struct sg_config *cfg, const char *const *addrs,
                         size_t n, struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Check cross-field rules: at least one listener, each address well formed,
 * TLS files readable, key without cert (or the reverse) rejected, plaintext
 * on a non-loopback address only with allow_insecure, limits in range.
 * Returns 0 or -1 with err set.
 */
int sg_config_validate(const struct sg_config *cfg,
                       struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* True if address is loopback ("127.x.x.x", "[::1]", "localhost") or unix:. */
bool sg_config_address_is_local(const char *address);

#endif /* SG_SERVER_CONFIG_H */
