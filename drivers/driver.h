/*
 * driver.h: the in-tree side of the driver ABI (include/sandgate/driver.h).
 *
 * A struct sg_driver is one opened driver: a built-in one from the static
 * table in driver.c (noop, process) or an out-of-tree shared object loaded
 * from an absolute path. It owns the driver's private state, the host API
 * handed to the driver, and the dlopen handle.
 *
 * The wrappers below turn the ABI's int/errmsg conventions into struct
 * sg_error reports: each reports once and returns -1 (or NULL); on 0 the
 * asynchronous callback runs exactly once, later, on the loop thread; on -1
 * it never runs.
 *
 * LIFETIME (two-phase close, like uv_close):
 *
 *     drv = sg_driver_open(&args, &err);
 *     ...
 *     sg_driver_close(drv);          // the driver uv_closes its handles
 *     uv_run(loop, UV_RUN_DEFAULT);  // their close callbacks run
 *     sg_driver_free(drv);           // priv freed, shared object unloaded
 *
 * The driver's code and priv stay valid until sg_driver_free(), so close
 * callbacks that run between the two calls are safe. Calling
 * sg_driver_free() on a driver that was opened but never closed would free
 * state its handles still use: it logs an error and leaks the driver
 * instead.
 *
 * THREADING: every function here is called on the loop thread (args->loop)
 * unless its comment says otherwise (sg_driver_name, sg_driver_caps,
 * sg_driver_validate and sg_driver_describe may run on any thread). A
 * struct sg_driver is not locked.
 */
#ifndef SG_DRIVER_INTERNAL_H
#define SG_DRIVER_INTERNAL_H

#include "internal.h"

#include "error.h"

#include <sandgate/driver.h>
#include <uv.h>

struct sg_driver;

struct sg_driver_open_args {
    /* Built-in driver name ("noop", "process"). May be NULL when
       plugin_path is set; if both are set, the plugin's ops->name must
       equal it. */
    const char *name;
    /* Absolute path of an out-of-tree driver shared object, or NULL. */
    const char *plugin_path;
    /* The operator's settings object for the driver; NULL means "{}". */
    const char *settings_json;
    /* The driver's own directory. Required. Created like mkdir -p (missing
       parents mode 0700); the directory itself is made mode 0700. */
    const char *state_dir;
    /* The loop every op and callback runs on. Required. */
    uv_loop_t *loop;
    /* Where the driver's health reports go ("<driver>/<name>", serving);
       NULL: nowhere. */
    void (*report_health)(const char *service, bool serving);
    /* Where a driver's credential source goes (0, or -1 with a message
       into err of errsize bytes); NULL: refused. */
    int (*register_credential_source)(const struct sg_credsrc_ops *ops,
                                      char *err, size_t errsize);
};

/*
 * Load (built-in lookup or dlopen), check the ops table, create state_dir,
 * allocate priv and call ops->open. Every argument is copied or borrowed
 * for the call only.
 *
 * Returns a driver the caller owns (release with sg_driver_close() then,
 * after running the loop, sg_driver_free()), or NULL with err set:
 * SG_ERR_CONFIG for an unknown name, a bad plugin (path, dlopen, entry
 * symbol, ABI version, ops table) or a driver that refused its settings;
 * SG_ERR_IO when state_dir cannot be created; SG_ERR_NO_MEMORY.
 */
struct sg_driver *sg_driver_open(const struct sg_driver_open_args *args,
                                 struct sg_error *err) SG_NONNULL(1)
    SG_WARN_UNUSED_RESULT;

/* The driver's name (ops->name), borrowed for the driver's life. Any
   thread. */
const char *sg_driver_name(const struct sg_driver *drv);

/* The driver's SG_DRIVER_CAP_* bits. Any thread. */
uint64_t sg_driver_caps(const struct sg_driver *drv);

/*
 * Check a sandbox's driver_config block (ops->config_validate). Returns 0,
 * or -1 with err set: SG_ERR_INVALID_ARGUMENT with one field violation on
 * "sandbox.spec.driver_config.<name>" whose description is the driver's
 * message.
 *
 * Any thread, concurrently (the ABI makes config_validate and describe
 * thread-safe); also between sg_driver_close() and sg_driver_free(), but
 * never concurrently with sg_driver_free().
 */
int sg_driver_validate(struct sg_driver *drv,
                       const struct sg_driver_sandbox *sb,
                       struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Read the placement facts of a valid config block (ops->describe) into
 * *out, which the caller owns afterwards and releases with
 * sg_driver_placement_clear() (on error *out is left empty). A driver
 * without describe gives an empty placement and 0. Errors and threading as
 * sg_driver_validate().
 */
int sg_driver_describe(struct sg_driver *drv,
                       const struct sg_driver_sandbox *sb,
                       struct sg_driver_placement *out,
                       struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Free every string of *p and zero it. NULL-safe. Any thread. */
void sg_driver_placement_clear(struct sg_driver_placement *p);

/*
 * The asynchronous ops. Each returns 0 (done runs exactly once, later, on
 * the loop thread) or -1 with err set (done never runs):
 * SG_ERR_UNIMPLEMENTED "driver 'x' does not support <op>" when the slot is
 * NULL; SG_ERR_UNAVAILABLE when the driver is closed or could not start
 * the op. Arguments are borrowed for the call only.
 */
int sg_driver_create(struct sg_driver *drv, const struct sg_driver_sandbox *sb,
                     sg_driver_done_cb done, void *opaque,
                     struct sg_error *err) SG_WARN_UNUSED_RESULT;
int sg_driver_remove(struct sg_driver *drv, const char *id,
                     const char *backend_object, uint32_t grace_ms,
                     sg_driver_done_cb done, void *opaque,
                     struct sg_error *err) SG_WARN_UNUSED_RESULT;
int sg_driver_get(struct sg_driver *drv, const char *id,
                  const char *backend_object, sg_driver_done_cb done,
                  void *opaque, struct sg_error *err) SG_WARN_UNUSED_RESULT;
int sg_driver_list(struct sg_driver *drv, sg_driver_list_cb done, void *opaque,
                   struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Register the single watcher (ops->watch): cb runs on the loop thread for
 * each state change the driver pushes, until sg_driver_close(). Returns 0,
 * or -1 with err set: SG_ERR_UNIMPLEMENTED when the driver cannot watch
 * (poll with sg_driver_get() instead), SG_ERR_FAILED_PRECONDITION with the
 * driver's message when it refuses (e.g. a watcher is already registered),
 * SG_ERR_UNAVAILABLE when closed.
 */
int sg_driver_watch(struct sg_driver *drv, sg_driver_watch_cb cb, void *opaque,
                    struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * Phase one of shutdown: ops->close (timers and watches cancelled, handles
 * uv_closed, pending callbacks dropped). create, remove, get, list and
 * watch fail with SG_ERR_UNAVAILABLE afterwards. The caller then runs the loop
 * until the driver's close callbacks have run, and calls sg_driver_free().
 * Idempotent. NULL-safe.
 */
void sg_driver_close(struct sg_driver *drv);

/*
 * Phase two: free priv and the driver, and dlclose a plugin. Only after
 * sg_driver_close() and a loop run (see the top of this file). NULL-safe.
 */
void sg_driver_free(struct sg_driver *drv);

#endif /* SG_DRIVER_INTERNAL_H */
