/*
 * sandgate/driver.h: the sandbox driver ABI.
 *
 * A driver turns a recorded sandbox into a running backend object (a local
 * process tree, a Kubernetes Sandbox, ...) and reports that object's state
 * back. Built-in drivers are listed in one table in drivers/driver.c;
 * out-of-tree drivers are shared objects that export one symbol,
 * SG_DRIVER_ENTRY_SYMBOL, of type sg_driver_entry_fn.
 *
 * VERSIONING (the sqlite3_vfs / sqlite3ext.h model):
 *   - abi_major changes when an existing slot changes meaning; the gateway
 *     refuses a driver whose abi_major differs from SG_DRIVER_ABI_MAJOR.
 *   - abi_minor grows when slots are appended at the END of a struct; the
 *     gateway reads a slot only if struct_size covers it. Never reorder,
 *     never remove, never insert in the middle.
 *   - struct_size is sizeof(struct sg_driver_ops) as the driver compiled it.
 *
 * THREADING: every op except config_validate and describe is called on the
 * gateway's libuv loop thread (the loop is host->loop). Every callback a
 * driver invokes (done, list, watch) must be invoked on that same thread,
 * and never from inside the op call
 * that was given it: an op that can answer at once defers the answer (for
 * example with a uv_idle or uv_timer handle). A driver that uses threads of
 * its own wakes the loop with uv_async_t.
 *
 * ASYNC CONTRACT (libuv's): if an op returns -1, its callback never runs.
 * If it returns 0, the callback runs exactly once, later.
 *
 * MEMORY: the gateway allocates the driver's private state (priv_size bytes,
 * zero-filled, suitably aligned for any type) before open and frees it after
 * close. Strings a driver returns to the gateway in *errmsg or in a
 * struct sg_driver_placement are allocated with host->alloc / host->strdup;
 * the gateway frees them. Everything the gateway passes in is borrowed for
 * the duration of the call only, unless stated otherwise.
 *
 * SECRETS: env values and config blocks may be sensitive to the tenant;
 * drivers must not log them. Credential material (ABI 1.3) reaches only a
 * driver that declares SG_DRIVER_CAP_CREDENTIALS, only in create, and is
 * borrowed for that call: the driver copies what it delivers into memory
 * it wipes (explicit_bzero) as soon as it has delivered it, and never
 * logs it, puts it in an error message or status, or writes it anywhere
 * but its delivery target.
 */
#ifndef SANDGATE_DRIVER_H
#define SANDGATE_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SG_EXPORT __attribute__((visibility("default")))
#else
#define SG_EXPORT
#endif

#define SG_DRIVER_ABI_MAJOR 1
#define SG_DRIVER_ABI_MINOR 3

/* config_validate: valid, but not supported by this driver (ABI 1.1). */
#define SG_DRIVER_VALIDATE_UNSUPPORTED (-2)

/* The symbol a driver shared object exports. */
#define SG_DRIVER_ENTRY_SYMBOL "sandgate_driver_entry"

/* Capability bits (struct sg_driver_ops.caps). */
#define SG_DRIVER_CAP_WATCH (UINT64_C(1) << 0)    /* pushes status changes */
#define SG_DRIVER_CAP_LOGS (UINT64_C(1) << 1)     /* captures stdout/stderr */
#define SG_DRIVER_CAP_EXEC (UINT64_C(1) << 2)     /* can run commands inside */
#define SG_DRIVER_CAP_NETWORK (UINT64_C(1) << 3)  /* network isolation */
#define SG_DRIVER_CAP_WARM_POOL (UINT64_C(1) << 4) /* warm-pool allocation */
#define SG_DRIVER_CAP_SURVIVES_RESTART (UINT64_C(1) << 5) /* backend objects
                                   outlive a gateway restart and are found
                                   again by list */
#define SG_DRIVER_CAP_CREDENTIALS (UINT64_C(1) << 6) /* delivers credential
                                   bindings (ABI 1.3): without it the
                                   gateway refuses a create that has any */

/* Log levels for host->log (the gateway's own levels). */
enum sg_driver_log_level {
    SG_DRIVER_LOG_DEBUG = 0,
    SG_DRIVER_LOG_INFO = 1,
    SG_DRIVER_LOG_WARN = 2,
    SG_DRIVER_LOG_ERROR = 3,
};

/*
 * What the gateway gives a driver. Lives from before open until after
 * close. Appended to at the end only, like the ops table.
 */
struct sg_credsrc_ops;

struct sg_driver_host {
    uint32_t abi_major;
    uint32_t abi_minor;
    size_t struct_size;

    uv_loop_t *loop;        /* the loop every op and callback runs on */

    void *(*alloc)(size_t size);           /* NULL when out of memory */
    void (*free)(void *ptr);               /* NULL-safe */
    char *(*strdup)(const char *s);        /* NULL when out of memory */
    /* Log a line under category "driver.<name>". Never pass secrets. */
    void (*log)(enum sg_driver_log_level level, const char *driver,
                const char *fmt, ...) __attribute__((format(printf, 3, 4)));

    /* --- ABI 1.2; call only when abi_minor >= 2 --- */
    /*
     * Whether a part of the driver (name, e.g. "warm-pool/ns/pool") is
     * serving, for the gateway's health service, which answers it as the
     * service "<driver>/<name>" (grpc.health.v1 Check and Watch). The
     * first report of a name creates it. Loop thread.
     */
    void (*report_health)(const char *driver, const char *name, bool serving);
    /*
     * Offer a credential source the driver implements on the credential
     * source ABI (include/sandgate/credential_source.h), e.g.
     * "kubernetes-secret" read through the driver's own API client; it
     * takes the place of the gateway's placeholder of that kind. 0, or -1
     * with *errmsg (host-allocated) when the gateway refuses it. From
     * open only; ops must stay valid until close.
     */
    int (*register_credential_source)(const char *driver,
                                      const struct sg_credsrc_ops *ops,
                                      char **errmsg);
};

/* How a credential binding reaches the sandbox (ABI 1.3). */
enum sg_driver_delivery {
    SG_DRIVER_DELIVER_ENV = 1,   /* an environment variable of the main
                                    process */
    SG_DRIVER_DELIVER_FILE = 2,  /* a file readable only by the sandbox's
                                    user */
};

/*
 * One credential binding (ABI 1.3), in the order of spec.credentials. The
 * gateway has checked the binding's scope and resolved the record before
 * create; the driver only delivers.
 */
struct sg_driver_credential {
    const char *name;        /* the credential record, DNS-1123 label */
    enum sg_driver_delivery delivery;
    /* ENV: a variable name that is not also in env_names. FILE: an
       absolute, normalised path inside the sandbox. */
    const char *target;
    /* create only: the material, material_len bytes (any bytes, not
       NUL-terminated). NULL in config_validate and describe, which see
       the bindings so that a driver can refuse a target it cannot
       deliver to. Borrowed for the call; see SECRETS above. */
    const uint8_t *material;
    size_t material_len;
};

/*
 * A sandbox as the driver sees it. id is NULL when the gateway only
 * validates or describes a request that has no id yet.
 */
struct sg_driver_sandbox {
    const char *id;          /* server-assigned, [a-z0-9-], <= 63 bytes */
    const char *name;        /* DNS-1123 label */
    const char *tenant;
    const char *project;
    const char *owner;
    const char *image;       /* may be "" */
    const char *const *command;  /* argv; n_command may be 0 */
    size_t n_command;
    const char *const *env_names;  /* n_env pairs, names sorted */
    const char *const *env_values;
    size_t n_env;
    const char *working_dir; /* may be "" */
    /*
     * The caller's driver_config block for this driver, as compact JSON
     * text of an object ("{}" when the caller gave none). The driver owns
     * its schema and rejects unknown keys.
     */
    const char *config_json;
    uint32_t ttl_seconds;    /* 0 = none; the gateway enforces it */

    /* --- ABI 1.1, for labels and annotations; "" when not set. Read them
       only when host->abi_minor >= 1. --- */
    const char *request_id;      /* the caller's idempotency key */
    const char *policy_hash;     /* "sha256:<hex>" of the final policy */
    const char *access_profile;
    const char *runtime_profile;

    /* --- ABI 1.3: credential bindings (n_credentials 0: none). Only a
       driver with SG_DRIVER_CAP_CREDENTIALS is ever given any; read them
       only when host->abi_minor >= 3. --- */
    const struct sg_driver_credential *credentials;
    size_t n_credentials;
};

/*
 * The placement facts an authorizer needs, read by the driver from a
 * validated config block, so that the authorizer decides without knowing
 * the driver's schema. Every string is NULL when not applicable or not set.
 * All strings and the fields array (and its strings) are host-allocated;
 * the gateway frees them.
 */
struct sg_driver_placement {
    char *namespace_name;   /* resolved namespace, default applied */
    char *service_account;
    char *runtime_class;
    char *allocation_mode;  /* e.g. "Sandbox", "SandboxClaim" */
    char *template_name;
    char *warm_pool;
    /* Dotted paths of every key the caller set in the block, sorted,
       e.g. "network", "limits.memory". */
    char **fields;
    size_t n_fields;

    /* --- ABI 1.1: the values of sensitive settings. The host zeroes the
       struct, so a 1.0 driver leaves them unset. --- */
    /* Node selector the pod gets, n_node_selector key/value pairs sorted
       by key (host-allocated arrays and strings). */
    char **node_selector_keys;
    char **node_selector_values;
    size_t n_node_selector;
    /* Keys of the tolerations requested, sorted; "" for a toleration
       without a key (it tolerates every taint). */
    char **toleration_keys;
    size_t n_toleration_keys;
    /* Largest CPU request or limit in millicores, and largest memory
       request or limit in bytes; 0 when not set. */
    uint64_t cpu_millis;
    uint64_t memory_bytes;
};

/* The state of one backend object. */
enum sg_driver_state {
    SG_DRIVER_STATE_PENDING = 1,  /* created, not running yet */
    SG_DRIVER_STATE_RUNNING = 2,  /* running and ready */
    SG_DRIVER_STATE_FAILED = 3,   /* stopped on its own or cannot start */
    SG_DRIVER_STATE_GONE = 4,     /* does not exist (deleted or never made) */
};

/* A status report. All strings borrowed for the callback only. */
struct sg_driver_status {
    const char *id;
    enum sg_driver_state state;
    const char *reason;          /* CamelCase, e.g. "Started", "Exited" */
    const char *message;         /* human text, may be "" */
    const char *backend_object;  /* e.g. "process/4242"; may be "" */
    int exit_code;               /* FAILED: exit status, or -1 */
};

/* How an asynchronous op ended. */
enum sg_driver_result {
    SG_DRIVER_OK = 0,
    SG_DRIVER_ERR_INVALID = 1,   /* permanent: the request cannot work */
    SG_DRIVER_ERR_RETRY = 2,     /* transient: try again later */
};

/*
 * Completion of create, remove and get. On SG_DRIVER_OK st is the object's
 * state; otherwise st is NULL and message says why.
 */
typedef void (*sg_driver_done_cb)(void *opaque, enum sg_driver_result result,
                                  const struct sg_driver_status *st,
                                  const char *message);

/* Completion of list: every object the driver manages, then done. */
typedef void (*sg_driver_list_cb)(void *opaque, enum sg_driver_result result,
                                  const struct sg_driver_status *items,
                                  size_t n_items, const char *message);

/* A state change pushed by the driver (watch). */
typedef void (*sg_driver_watch_cb)(void *opaque,
                                   const struct sg_driver_status *st);

struct sg_driver_ops {
    /* --- ABI 1.0 --- */
    uint32_t abi_major;     /* SG_DRIVER_ABI_MAJOR the driver was built with */
    uint32_t abi_minor;
    size_t struct_size;     /* sizeof(struct sg_driver_ops) */
    const char *name;       /* the driver_config key, e.g. "process" */
    uint64_t caps;          /* SG_DRIVER_CAP_* */
    size_t priv_size;       /* bytes of private state the host allocates */

    /*
     * Start the driver. settings_json is the operator's settings object
     * for this driver from the gateway configuration ("{}" if none);
     * state_dir is a directory the driver owns (created by the host, mode
     * 0700), kept across restarts. Returns 0, or -1 with *errmsg set; on
     * -1 the driver leaves no handle open, close is not called, and the
     * host frees priv at once.
     */
    int (*open)(void *priv, const struct sg_driver_host *host,
                const char *settings_json, const char *state_dir,
                char **errmsg);

    /*
     * Stop: cancel timers and watches and uv_close every handle. Backend
     * objects are left as they are. Pending callbacks are dropped (they do
     * not run). The host frees priv only after the loop has run every close
     * callback. May be NULL.
     */
    void (*close)(void *priv);

    /*
     * Check sb->config_json (and any other field the driver cares about)
     * synchronously, without side effects. Returns 0, or -1 with *errmsg
     * naming the offending key ("process.network: expected a boolean"),
     * or (ABI 1.1) SG_DRIVER_VALIDATE_UNSUPPORTED with *errmsg when the
     * request is valid but asks for something this driver does not build
     * yet (the gateway answers UNIMPLEMENTED instead of INVALID_ARGUMENT).
     * Unlike the other ops, config_validate and describe are called from
     * any thread (the gateway's request threads), concurrently: they may
     * read only what open set up and never change state.
     */
    int (*config_validate)(void *priv, const struct sg_driver_sandbox *sb,
                           char **errmsg);

    /*
     * Fill *out with the placement facts of a valid config. Same threading
     * and return convention as config_validate. May be NULL (no facts).
     */
    int (*describe)(void *priv, const struct sg_driver_sandbox *sb,
                    struct sg_driver_placement *out, char **errmsg);

    /*
     * Create the backend object for sb (sb->id is set). Idempotent: if it
     * exists, report its current state. done reports PENDING, RUNNING or
     * FAILED; later changes come through watch.
     */
    int (*create)(void *priv, const struct sg_driver_sandbox *sb,
                  sg_driver_done_cb done, void *opaque);

    /*
     * Delete the backend object of id (and everything the driver made for
     * it), waiting up to grace_ms for it to stop before forcing it. done
     * reports GONE when nothing is left. Idempotent: removing an unknown id
     * reports GONE.
     */
    int (*remove)(void *priv, const char *id, const char *backend_object,
                  uint32_t grace_ms, sg_driver_done_cb done, void *opaque);

    /* Report the current state of id (GONE if unknown). */
    int (*get)(void *priv, const char *id, const char *backend_object,
               sg_driver_done_cb done, void *opaque);

    /* Report every backend object the driver manages. */
    int (*list)(void *priv, sg_driver_list_cb done, void *opaque);

    /*
     * Register the single watcher: cb runs for every state change of any
     * object until close. Returns 0, or -1 with *errmsg. May be NULL when
     * caps lacks SG_DRIVER_CAP_WATCH (the host then polls with get).
     */
    int (*watch)(void *priv, sg_driver_watch_cb cb, void *opaque,
                 char **errmsg);

    /* --- append new slots here, and bump SG_DRIVER_ABI_MINOR --- */
};

/*
 * The entry point of a driver shared object. Called once, on the loop
 * thread, right after dlopen. Returns the driver's ops table (static
 * storage, lives until dlclose), or NULL if the driver cannot run with
 * this host (it may log why through host->log).
 */
typedef const struct sg_driver_ops *(*sg_driver_entry_fn)(
    const struct sg_driver_host *host);

#ifdef __cplusplus
}
#endif

#endif /* SANDGATE_DRIVER_H */
