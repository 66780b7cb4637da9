/*
 * driver.c: the built-in driver table, the plugin loader, the host API and
 * the wrappers that turn driver results into struct sg_error reports.
 *
 * Loading follows SQLite's loadable extensions and nginx's module
 * signature: one well-known entry symbol, a table whose first fields are
 * the ABI version and its own size, and a host that reads only the slots
 * that size covers (the copy in struct sg_driver has every later slot
 * NULL).
 */
#include "internal.h"

#include "driver.h"

#include "error.h"
#include "kubernetes/k8s_driver.h"
#include "log.h"
#include "noop/noop_driver.h"
#include "process/process_driver.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

SG_LOG_INIT("driver");

/* Every built-in driver, in the order the "unknown driver" message lists
   them. */
static const struct sg_driver_ops *const builtin_drivers[] = {
    &sg_noop_driver,
    &sg_process_driver,
    &sg_kubernetes_driver,
};

/* The smallest ops table the gateway accepts: ABI 1.0, through watch. */
#define OPS_SIZE_1_0                                                           \
    (offsetof(struct sg_driver_ops, watch) +                                   \
     sizeof(((struct sg_driver_ops *)NULL)->watch))

#define DRIVER_NAME_MAX 63
#define DRIVER_LOG_CATEGORY_MAX (sizeof("driver.") + DRIVER_NAME_MAX)

struct sg_driver {
    /* A copy of the driver's table, struct_size bytes of it; later slots
       are NULL. */
    struct sg_driver_ops ops;
    void *priv;                 /* ops.priv_size bytes, zero-filled */
    struct sg_driver_host host; /* handed to the entry point and open */
    void *dl;                   /* dlopen handle, NULL for built-ins */
    char *name;                 /* copy of ops.name */
    bool opened;                /* ops.open succeeded */
    bool closed;                /* sg_driver_close ran */
};

/* ------------------------------------------------------------------ */
/* Host API                                                            */
/* ------------------------------------------------------------------ */

static void *host_alloc(size_t size)
{
    return malloc(size);
}

static void host_free(void *ptr)
{
    free(ptr);
}

static char *host_strdup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static enum sg_log_level host_level(enum sg_driver_log_level level)
{
    switch (level) {
    case SG_DRIVER_LOG_DEBUG:
        return SG_LOG_DEBUG;
    case SG_DRIVER_LOG_INFO:
        return SG_LOG_INFO;
    case SG_DRIVER_LOG_WARN:
        return SG_LOG_WARN;
    case SG_DRIVER_LOG_ERROR:
        return SG_LOG_ERROR;
    }
    return SG_LOG_ERROR; /* a level from a newer ABI: do not lose it */
}

/*
 * host->log: a record under category "driver.<name>". The callback carries
 * no driver handle, so the category is built per call; its level is
 * resolved under the log lock each time, which is cheap next to a driver's
 * log rate. Any thread.
 */
static void host_log(enum sg_driver_log_level level, const char *driver,
                     const char *fmt, ...) SG_PRINTF(3, 4);
static void host_log(enum sg_driver_log_level level, const char *driver,
                     const char *fmt, ...)
{
    char catname[DRIVER_LOG_CATEGORY_MAX];
    struct sg_log_category cat = {.name = catname};
    enum sg_log_level lvl = host_level(level);
    char small[512];
    char *big = NULL;
    const char *msg = small;
    va_list ap;
    int n;

    if (driver == NULL || driver[0] == '\0')
        driver = "unnamed";
    snprintf(catname, sizeof(catname), "driver.%.*s", DRIVER_NAME_MAX, driver);
    if (fmt == NULL || !sg_log_enabled(&cat, lvl))
        return;
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(small)) {
        big = malloc((size_t)n + 1);
        if (big != NULL) {
            va_start(ap, fmt);
            n = vsnprintf(big, (size_t)n + 1, fmt, ap);
            va_end(ap);
            msg = n >= 0 ? big : small;
        }
    }
    sg_log_kv(&cat, lvl, msg, NULL, 0);
    free(big);
}

/* Where report_health goes: the ABI's function has no context pointer,
   and a gateway opens one driver. Loop thread only, like the reports. */
static void (*health_sink)(const char *service, bool serving);

static void host_report_health(const char *driver, const char *name,
                               bool serving)
{
    char service[DRIVER_NAME_MAX + 256];

    if (health_sink == NULL || name == NULL || name[0] == '\0')
        return;
    if (driver == NULL || driver[0] == '\0')
        driver = "unnamed";
    snprintf(service, sizeof(service), "%.*s/%.250s", DRIVER_NAME_MAX, driver,
             name);
    health_sink(service, serving);
}

static int (*credsrc_sink)(const struct sg_credsrc_ops *ops, char *err,
                           size_t errsize);

static int host_register_credential_source(const char *driver,
                                           const struct sg_credsrc_ops *ops,
                                           char **errmsg)
{
    char err[256] = "credential sources from drivers are not accepted here";

    if (credsrc_sink != NULL && ops != NULL &&
        credsrc_sink(ops, err, sizeof(err)) == 0)
        return 0;
    (void)driver;
    *errmsg = host_strdup(err);
    return -1;
}

static void host_init(struct sg_driver_host *host, uv_loop_t *loop)
{
    host->abi_major = SG_DRIVER_ABI_MAJOR;
    host->abi_minor = SG_DRIVER_ABI_MINOR;
    host->struct_size = sizeof(*host);
    host->loop = loop;
    host->alloc = host_alloc;
    host->free = host_free;
    host->strdup = host_strdup;
    host->log = host_log;
    host->report_health = host_report_health;
    host->register_credential_source = host_register_credential_source;
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */
/* ------------------------------------------------------------------ */

static bool name_is_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > DRIVER_NAME_MAX ||
        !(name[0] >= 'a' && name[0] <= 'z'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

/*
 * Check a driver's table and copy the part of it this gateway knows into
 * drv->ops. what names the driver in messages ("driver plugin '/x.so'").
 */
static int ops_accept(struct sg_driver *drv, const struct sg_driver_ops *ops,
                      const char *what, struct sg_error *err)
{
    static const struct {
        size_t offset;
        const char *slot;
    } required[] = {
        {offsetof(struct sg_driver_ops, open), "open"},
        {offsetof(struct sg_driver_ops, config_validate), "config_validate"},
        {offsetof(struct sg_driver_ops, create), "create"},
        {offsetof(struct sg_driver_ops, remove), "remove"},
        {offsetof(struct sg_driver_ops, get), "get"},
    };
    struct sg_driver_ops copy;

    if (ops->abi_major != SG_DRIVER_ABI_MAJOR) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: ABI major version %" PRIu32
                        " is not supported (this gateway speaks %d)",
                        what, ops->abi_major, SG_DRIVER_ABI_MAJOR);
        return -1;
    }
    if (ops->struct_size < OPS_SIZE_1_0) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: ops table is %zu bytes, ABI 1.0 needs at least "
                        "%zu",
                        what, ops->struct_size, (size_t)OPS_SIZE_1_0);
        return -1;
    }
    /* Read only what the driver's table covers; later slots stay NULL. */
    memset(&copy, 0, sizeof(copy));
    memcpy(&copy, ops,
           ops->struct_size < sizeof(copy) ? ops->struct_size : sizeof(copy));

    if (copy.name == NULL || copy.name[0] == '\0') {
        sg_error_report(err, SG_ERR_CONFIG, "%s: ops table has no name", what);
        return -1;
    }
    if (!name_is_valid(copy.name)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: driver name '%.*s' is not valid (1 to %d of "
                        "[a-z0-9_-], starting with a letter)",
                        what, DRIVER_NAME_MAX + 1, copy.name, DRIVER_NAME_MAX);
        return -1;
    }
    for (size_t i = 0; i < SG_N_ELEMENTS(required); i++) {
        void (*slot)(void);

        memcpy(&slot, (const char *)&copy + required[i].offset, sizeof(slot));
        if (slot == NULL) {
            sg_error_report(err, SG_ERR_CONFIG,
                            "%s: required slot '%s' is NULL", what,
                            required[i].slot);
            return -1;
        }
    }
    drv->ops = copy;
    return 0;
}

static int builtin_load(struct sg_driver *drv, const char *name,
                        struct sg_error *err)
{
    char what[128];
    char known[256];
    size_t used = 0;

    for (size_t i = 0; i < SG_N_ELEMENTS(builtin_drivers); i++) {
        if (STREQ(builtin_drivers[i]->name, name)) {
            snprintf(what, sizeof(what), "built-in driver '%s'", name);
            return ops_accept(drv, builtin_drivers[i], what, err);
        }
    }
    known[0] = '\0';
    for (size_t i = 0; i < SG_N_ELEMENTS(builtin_drivers); i++) {
        int n = snprintf(known + used, sizeof(known) - used, "%s%s",
                         i > 0 ? ", " : "", builtin_drivers[i]->name);

        if (n < 0 || (size_t)n >= sizeof(known) - used)
            break;
        used += (size_t)n;
    }
    sg_error_report(err, SG_ERR_CONFIG, "unknown driver '%s' (built in: %s)",
                    name, known);
    return -1;
}

static int plugin_load(struct sg_driver *drv, const char *path,
                       struct sg_error *err)
{
    char what[PATH_MAX + 32];
    sg_driver_entry_fn entry;
    const struct sg_driver_ops *ops;
    void *sym;

    if (path[0] == '\0') {
        sg_error_report(err, SG_ERR_CONFIG, "driver plugin path is empty");
        return -1;
    }
    if (strlen(path) >= PATH_MAX) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "driver plugin path is %zu bytes, the limit is %d",
                        strlen(path), PATH_MAX - 1);
        return -1;
    }
    if (path[0] != '/') {
        sg_error_report(err, SG_ERR_CONFIG,
                        "driver plugin '%s': path must be absolute", path);
        return -1;
    }
    snprintf(what, sizeof(what), "driver plugin '%s'", path);

    drv->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (drv->dl == NULL) {
        const char *why = dlerror();

        sg_error_report(err, SG_ERR_CONFIG, "%s: cannot load: %s", what,
                        why != NULL ? why : "unknown dlopen error");
        return -1;
    }
    dlerror(); /* clear, so that a NULL from dlsym is told apart */
    sym = dlsym(drv->dl, SG_DRIVER_ENTRY_SYMBOL);
    if (sym == NULL) {
        sg_error_report(err, SG_ERR_CONFIG, "%s: no symbol '%s'", what,
                        SG_DRIVER_ENTRY_SYMBOL);
        return -1;
    }
    /* POSIX guarantees that a data pointer from dlsym converts to a
       function pointer; memcpy keeps -Wpedantic quiet about it. */
    memcpy(&entry, &sym, sizeof(entry));
    ops = entry(&drv->host);
    if (ops == NULL) {
        sg_error_report(err, SG_ERR_CONFIG, "%s: entry point refused to load",
                        what);
        return -1;
    }
    return ops_accept(drv, ops, what, err);
}

/*
 * mkdir -p with mode 0700 for every directory made. An existing directory
 * is kept as it is (the operator may have made it), with a warning when
 * group or others can reach into it.
 */
static int state_dir_make(const char *path, struct sg_error *err)
{
    char buf[PATH_MAX];
    char ebuf[128];
    struct stat st;
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "driver state directory must be 1 to %zu bytes",
                        sizeof(buf) - 1);
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (buf[i - 1] == '/')
            continue; /* "a//b" or a trailing slash */
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            sg_error_report(err, SG_ERR_IO,
                            "cannot create driver state directory '%s': %s",
                            buf, sg_strerror(errno, ebuf, sizeof(ebuf)));
            return -1;
        }
        if (i < len)
            buf[i] = '/';
    }
    if (stat(path, &st) != 0) {
        sg_error_report(err, SG_ERR_IO,
                        "cannot stat driver state directory '%s': %s", path,
                        sg_strerror(errno, ebuf, sizeof(ebuf)));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        sg_error_report(err, SG_ERR_IO,
                        "driver state directory '%s' is not a directory", path);
        return -1;
    }
    if ((st.st_mode & 077) != 0)
        SG_WARN("driver state directory '%s' is accessible to group or "
                "others (mode %04o)",
                path, (unsigned)(st.st_mode & 07777));
    return 0;
}

struct sg_driver *sg_driver_open(const struct sg_driver_open_args *args,
                                 struct sg_error *err)
{
    struct sg_driver *drv = NULL;
    char *errmsg = NULL;

    if (args->loop == NULL) {
        sg_error_report(err, SG_ERR_INTERNAL, "driver opened without a loop");
        return NULL;
    }
    drv = calloc(1, sizeof(*drv));
    if (drv == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory opening driver");
        return NULL;
    }
    health_sink = args->report_health;
    credsrc_sink = args->register_credential_source;
    host_init(&drv->host, args->loop);

    if (args->plugin_path != NULL) {
        if (plugin_load(drv, args->plugin_path, err) < 0)
            goto error;
        if (args->name != NULL && STRNEQ(args->name, drv->ops.name)) {
            sg_error_report(err, SG_ERR_CONFIG,
                            "driver plugin '%s': driver is named '%s', not "
                            "'%s'",
                            args->plugin_path, drv->ops.name, args->name);
            goto error;
        }
    } else if (args->name != NULL) {
        if (builtin_load(drv, args->name, err) < 0)
            goto error;
    } else {
        sg_error_report(err, SG_ERR_CONFIG,
                        "driver has neither a name nor a plugin path");
        goto error;
    }

    if (args->state_dir == NULL || args->state_dir[0] == '\0') {
        sg_error_report(err, SG_ERR_CONFIG,
                        "driver '%s' has no state directory", drv->ops.name);
        goto error;
    }
    drv->name = strdup(drv->ops.name);
    drv->priv = calloc(1, drv->ops.priv_size > 0 ? drv->ops.priv_size : 1);
    if (drv->name == NULL || drv->priv == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "out of memory opening driver '%s'", drv->ops.name);
        goto error;
    }
    if (state_dir_make(args->state_dir, err) < 0)
        goto error;

    if (drv->ops.open(drv->priv, &drv->host,
                      args->settings_json != NULL ? args->settings_json : "{}",
                      args->state_dir, &errmsg) != 0) {
        sg_error_report(err, SG_ERR_CONFIG, "driver '%s': %s", drv->name,
                        errmsg != NULL ? errmsg : "open failed");
        free(errmsg);
        goto error;
    }
    drv->opened = true;
    SG_DEBUG("driver '%s' open (%s, ABI %" PRIu32 ".%" PRIu32 ")", drv->name,
             drv->dl != NULL ? args->plugin_path : "built in",
             drv->ops.abi_major, drv->ops.abi_minor);
    return drv;

 error:
    sg_driver_free(drv);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Wrappers                                                            */
/* ------------------------------------------------------------------ */

const char *sg_driver_name(const struct sg_driver *drv)
{
    return drv->name;
}

uint64_t sg_driver_caps(const struct sg_driver *drv)
{
    /* Credentials travel in struct sg_driver_sandbox fields a driver
       built before ABI 1.3 would not read: it cannot deliver them,
       whatever bits it sets. */
    if (drv->ops.abi_minor < 3)
        return drv->ops.caps & ~SG_DRIVER_CAP_CREDENTIALS;
    return drv->ops.caps;
}

/* Common checks: not closed, slot present. */
static int usable(const struct sg_driver *drv, bool has_slot, const char *op,
                  struct sg_error *err)
{
    if (drv->closed) {
        sg_error_report(err, SG_ERR_UNAVAILABLE, "driver '%s' is closed",
                        drv->name);
        return -1;
    }
    if (!has_slot) {
        sg_error_report(err, SG_ERR_UNIMPLEMENTED,
                        "driver '%s' does not support %s", drv->name, op);
        return -1;
    }
    return 0;
}

static void report_config_error(const struct sg_driver *drv, char *errmsg,
                                struct sg_error *err)
{
    char field[sizeof("sandbox.spec.driver_config.") + DRIVER_NAME_MAX];

    snprintf(field, sizeof(field), "sandbox.spec.driver_config.%s", drv->name);
    sg_error_add_violation(err, field, "%s",
                           errmsg != NULL ? errmsg : "rejected by the driver");
    free(errmsg);
}

int sg_driver_validate(struct sg_driver *drv,
                       const struct sg_driver_sandbox *sb, struct sg_error *err)
{
    char *errmsg = NULL;
    int rc;

    /* Any thread: drv->closed is the loop thread's and is not read here.
       The driver keeps what validation reads until sg_driver_free(). */
    rc = drv->ops.config_validate(drv->priv, sb, &errmsg);
    if (rc == SG_DRIVER_VALIDATE_UNSUPPORTED) {
        sg_error_report(err, SG_ERR_UNIMPLEMENTED, "%s",
                        errmsg ? errmsg : "not supported by the driver");
        free(errmsg);
        return -1;
    }
    if (rc != 0) {
        report_config_error(drv, errmsg, err);
        return -1;
    }
    free(errmsg); /* a driver that set it anyway */
    return 0;
}

void sg_driver_placement_clear(struct sg_driver_placement *p)
{
    if (p == NULL)
        return;
    free(p->namespace_name);
    free(p->service_account);
    free(p->runtime_class);
    free(p->allocation_mode);
    free(p->template_name);
    free(p->warm_pool);
    if (p->fields != NULL) {
        for (size_t i = 0; i < p->n_fields; i++)
            free(p->fields[i]);
    }
    free(p->fields);
    for (size_t i = 0; i < p->n_node_selector; i++) {
        free(p->node_selector_keys ? p->node_selector_keys[i] : NULL);
        free(p->node_selector_values ? p->node_selector_values[i] : NULL);
    }
    free(p->node_selector_keys);
    free(p->node_selector_values);
    for (size_t i = 0; i < p->n_toleration_keys; i++)
        free(p->toleration_keys ? p->toleration_keys[i] : NULL);
    free(p->toleration_keys);
    memset(p, 0, sizeof(*p));
}

int sg_driver_describe(struct sg_driver *drv,
                       const struct sg_driver_sandbox *sb,
                       struct sg_driver_placement *out, struct sg_error *err)
{
    char *errmsg = NULL;

    memset(out, 0, sizeof(*out));
    if (drv->ops.describe == NULL)
        return 0; /* a driver without placement facts */
    if (drv->ops.describe(drv->priv, sb, out, &errmsg) != 0) {
        sg_driver_placement_clear(out);
        report_config_error(drv, errmsg, err);
        return -1;
    }
    free(errmsg);
    return 0;
}

static int started(const struct sg_driver *drv, int rc, const char *op,
                   struct sg_error *err)
{
    if (rc == 0)
        return 0;
    sg_error_report(err, SG_ERR_UNAVAILABLE, "driver '%s' could not start %s",
                    drv->name, op);
    return -1;
}

int sg_driver_create(struct sg_driver *drv, const struct sg_driver_sandbox *sb,
                     sg_driver_done_cb done, void *opaque, struct sg_error *err)
{
    if (usable(drv, drv->ops.create != NULL, "create", err) < 0)
        return -1;
    return started(drv, drv->ops.create(drv->priv, sb, done, opaque), "create",
                   err);
}

int sg_driver_remove(struct sg_driver *drv, const char *id,
                     const char *backend_object, uint32_t grace_ms,
                     sg_driver_done_cb done, void *opaque, struct sg_error *err)
{
    if (usable(drv, drv->ops.remove != NULL, "remove", err) < 0)
        return -1;
    return started(
        drv,
        drv->ops.remove(drv->priv, id, backend_object, grace_ms, done, opaque),
        "remove", err);
}

int sg_driver_get(struct sg_driver *drv, const char *id,
                  const char *backend_object, sg_driver_done_cb done,
                  void *opaque, struct sg_error *err)
{
    if (usable(drv, drv->ops.get != NULL, "get", err) < 0)
        return -1;
    return started(drv,
                   drv->ops.get(drv->priv, id, backend_object, done, opaque),
                   "get", err);
}

int sg_driver_list(struct sg_driver *drv, sg_driver_list_cb done, void *opaque,
                   struct sg_error *err)
{
    if (usable(drv, drv->ops.list != NULL, "list", err) < 0)
        return -1;
    return started(drv, drv->ops.list(drv->priv, done, opaque), "list", err);
}

int sg_driver_watch(struct sg_driver *drv, sg_driver_watch_cb cb, void *opaque,
                    struct sg_error *err)
{
    char *errmsg = NULL;

    if (usable(drv, drv->ops.watch != NULL, "watch", err) < 0)
        return -1;
    if (drv->ops.watch(drv->priv, cb, opaque, &errmsg) != 0) {
        sg_error_report(err, SG_ERR_FAILED_PRECONDITION,
                        "driver '%s' refused watch: %s", drv->name,
                        errmsg != NULL ? errmsg : "no reason given");
        free(errmsg);
        return -1;
    }
    free(errmsg);
    return 0;
}

void sg_driver_close(struct sg_driver *drv)
{
    if (drv == NULL || drv->closed)
        return;
    drv->closed = true;
    if (drv->opened && drv->ops.close != NULL)
        drv->ops.close(drv->priv);
}

void sg_driver_free(struct sg_driver *drv)
{
    if (drv == NULL)
        return;
    if (drv->opened && !drv->closed) {
        /* Its handles may still point into priv and its code: leaking is
           the only safe choice left. */
        SG_ERROR("driver '%s' freed without sg_driver_close(); leaking it",
                 drv->name);
        return;
    }
    free(drv->priv);
    if (drv->dl != NULL)
        dlclose(drv->dl);
    free(drv->name);
    free(drv);
}
