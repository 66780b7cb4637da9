/*
 * process_config.h: the process driver's two schemas, decoded strictly.
 *
 * The operator's settings (the driver's object in the gateway
 * configuration) and the caller's per-sandbox block
 * (spec.driver_config.process) are JSON objects. Unknown keys are refused
 * with the key named; every value is type- and range-checked. Integers may
 * arrive as JSON reals with an integral value (a google.protobuf.Struct
 * carries every number as a double).
 *
 * Settings:
 *   bwrap            string, absolute path   default "/usr/bin/bwrap"
 *   rootfs           string, absolute path   default "/" (bound read-only)
 *   images           object name -> absolute rootfs path
 *   log_max_bytes    integer >= 1            default 8 MiB (per stream)
 *   grace_period_ms  integer                 default 10000
 *   limits           object, as in the block: the default of every limit,
 *                    and the ceiling a sandbox may ask for
 *   allow_network    boolean                 default true
 *   cgroup           "auto" (default), "off" or an absolute path of a
 *                    cgroup v2 directory under which per-sandbox cgroups
 *                    are made
 *   user             "auto" (default) or "UID:GID" (decimal): who the
 *                    sandboxes run as on the host. "auto" is 65534:65534
 *                    (nobody/nogroup) when the gateway runs as root, else
 *                    the gateway's own uid/gid. 0 is refused unless the
 *                    value is exactly "0:0"
 *
 * Block:
 *   network          boolean, default false (own network namespace)
 *   limits           {memory_bytes, pids, cpu_seconds, open_files,
 *                     file_size_bytes}
 *   readiness        {command: [argv], period_ms, timeout_ms,
 *                     failure_threshold}
 *   grace_period_ms  integer
 *
 * Credential bindings (struct sg_driver_credential) are checked with the
 * sandbox: see process_sandbox_check.
 *
 * Messages name the path: "process.limits.pids: expected an integer",
 * "process.foo: unknown key"; settings messages start with
 * "process settings: ".
 *
 * THREAD SAFETY: pure functions of their arguments; any thread.
 */
#ifndef SG_PROCESS_CONFIG_H
#define SG_PROCESS_CONFIG_H

#include "internal.h"
#include "error.h"

#include <sandgate/driver.h>

#define PROCESS_DEFAULT_BWRAP "/usr/bin/bwrap"
#define PROCESS_DEFAULT_ROOTFS "/"
#define PROCESS_DEFAULT_LOG_MAX_BYTES (UINT64_C(8) << 20)
#define PROCESS_DEFAULT_GRACE_MS 10000
#define PROCESS_MAX_GRACE_MS 3600000
#define PROCESS_DEFAULT_PERIOD_MS 1000
#define PROCESS_DEFAULT_TIMEOUT_MS 1000
/* The fewest descriptors bwrap starts with (the open_files minimum). */
#define PROCESS_MIN_OPEN_FILES 16
/* Credential bindings per sandbox (the gateway's limit too), and the
   longest target. */
#define PROCESS_MAX_CREDENTIALS 32
#define PROCESS_MAX_CRED_TARGET 1024
/* Who sandboxes run as under "user": "auto" when the gateway is root. */
#define PROCESS_NOBODY_UID 65534
#define PROCESS_NOBODY_GID 65534

/* Resource limits; 0 means not set (every limit is at least 1). */
struct process_limits {
    uint64_t memory_bytes;
    uint64_t pids;
    uint64_t cpu_seconds;
    uint64_t open_files;
    uint64_t file_size_bytes;
};

struct process_image {
    char *name;
    char *path;
};

struct process_settings {
    char *bwrap;
    char *rootfs;
    struct process_image *images; /* sorted by name */
    size_t n_images;
    uint64_t log_max_bytes;
    uint32_t grace_period_ms;
    struct process_limits limits; /* defaults and ceilings */
    bool allow_network;
    char *cgroup; /* "auto", "off" or an absolute path */
    bool user_auto; /* "user": "auto"; else user_uid/user_gid */
    uint32_t user_uid;
    uint32_t user_gid;
};

struct process_readiness {
    char **argv; /* NULL-terminated; NULL when no readiness command */
    size_t argc;
    uint32_t period_ms;
    uint32_t timeout_ms;
    uint32_t failure_threshold; /* 0: probe until ready */
};

struct process_block {
    bool network;
    bool has_grace;
    uint32_t grace_period_ms;
    struct process_limits limits; /* as the caller set them */
    struct process_readiness readiness;
    char **fields; /* sorted dotted paths of the keys set */
    size_t n_fields;
};

/*
 * Decode settings_json into *out (which the caller zero-fills first and
 * releases with process_settings_clear, also on error). Decoding only: no
 * file is looked at. Returns 0, or -1 with err set (SG_ERR_CONFIG).
 */
int process_settings_load(const char *settings_json,
                          struct process_settings *out,
                          struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Check the files settings name: bwrap is executable, rootfs and every
 * image are directories. Returns 0, or -1 with err set (SG_ERR_CONFIG).
 */
int process_settings_check(const struct process_settings *s,
                           struct sg_error *err) SG_WARN_UNUSED_RESULT;

void process_settings_clear(struct process_settings *s);

/* The rootfs of image ("" is the default rootfs); NULL when unknown.
   Borrowed from s. */
const char *process_settings_rootfs(const struct process_settings *s,
                                    const char *image);

/*
 * Decode a per-sandbox block against the settings s into *out (zero-filled
 * by the caller, released with process_block_clear, also on error).
 * Returns 0, or -1 with err set (SG_ERR_INVALID_ARGUMENT).
 */
int process_block_load(const struct process_settings *s, const char *json,
                       struct process_block *out,
                       struct sg_error *err) SG_WARN_UNUSED_RESULT;

void process_block_clear(struct process_block *b);

/*
 * Validate a whole sandbox for this driver: the block (decoded into *out
 * when out is not NULL), a non-empty command, working_dir, the image name,
 * the env names and the credential bindings (ABI 1.3; the caller passes
 * none to a host that predates them): at most PROCESS_MAX_CREDENTIALS, an
 * env target not set twice, a file target strictly under /run/ or /tmp/
 * (the sandbox's own tmpfs) that no other file target is at or below, and
 * limits.open_files leaving bwrap room for one descriptor per file. When
 * the material is there (create), an env binding's must hold no NUL
 * byte. Messages name the binding and its target, never the material.
 * Returns 0, or -1 with err set.
 */
int process_sandbox_check(const struct process_settings *s,
                          const struct sg_driver_sandbox *sb,
                          struct process_block *out,
                          struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* The limits that apply: the block's value, else the settings default. */
void process_limits_effective(const struct process_settings *s,
                              const struct process_block *b,
                              struct process_limits *out);

#endif /* SG_PROCESS_CONFIG_H */
