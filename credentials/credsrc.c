/*
 * credsrc.c: the registry of credential sources, the plugin loader and
 * the host table (credsrc.h, include/sandgate/credential_source.h).
 *
 * The loader has the shape of the driver plugin loader (drivers/driver.c):
 * one well-known entry symbol, a table that starts with its ABI version
 * and size, and a host that copies only the part of the table that size
 * covers. The two are kept apart because their tables, checks and
 * messages differ; what they share is a dozen lines of dlopen/dlsym.
 */
#include "internal.h"

#include "credsrc.h"

#include "error.h"
#include "log.h"
#include "sources.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

SG_LOG_INIT("credentials");

/* The smallest ops table this gateway accepts: ABI 1.0, through resolve. */
#define OPS_SIZE_1_0                                                           \
    (offsetof(struct sg_credsrc_ops, resolve) +                                \
     sizeof(((struct sg_credsrc_ops *)NULL)->resolve))

#define SOURCE_NAME_MAX 63
#define SOURCE_LOG_CATEGORY_MAX (sizeof("credentials.") + SOURCE_NAME_MAX)

struct credsrc {
    /* A copy of the source's table, struct_size bytes of it; later slots
       are NULL. */
    struct sg_credsrc_ops ops;
    void *priv; /* ops.priv_size bytes, zero-filled */
    void *dl;   /* dlopen handle, NULL for built-ins */
    bool opened;
    /* A built-in stand-in that sg_credsrc_register may replace. */
    bool replaceable;
};

struct sg_credsrc_registry {
    struct credsrc *sources;
    size_t n_sources;
    size_t cap;
};

/* ------------------------------------------------------------------ */
/* Host table                                                          */
/* ------------------------------------------------------------------ */

static void *host_alloc(size_t size)
{
    return malloc(size > 0 ? size : 1);
}

static void host_free(void *ptr)
{
    free(ptr);
}

static void host_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        explicit_bzero(p, n);
}

static enum sg_log_level host_level(enum sg_credsrc_log_level level)
{
    switch (level) {
    case SG_CREDSRC_LOG_DEBUG:
        return SG_LOG_DEBUG;
    case SG_CREDSRC_LOG_INFO:
        return SG_LOG_INFO;
    case SG_CREDSRC_LOG_WARN:
        return SG_LOG_WARN;
    case SG_CREDSRC_LOG_ERROR:
        return SG_LOG_ERROR;
    }
    return SG_LOG_ERROR; /* a level from a newer ABI: do not lose it */
}

/* host->log: a record under "credentials.<source>". Any thread. */
static void host_log(enum sg_credsrc_log_level level, const char *source,
                     const char *fmt, ...) SG_PRINTF(3, 4);
static void host_log(enum sg_credsrc_log_level level, const char *source,
                     const char *fmt, ...)
{
    char catname[SOURCE_LOG_CATEGORY_MAX];
    struct sg_log_category cat = {.name = catname};
    enum sg_log_level lvl = host_level(level);
    char msg[1024];
    va_list ap;

    if (source == NULL || source[0] == '\0')
        source = "unnamed";
    snprintf(catname, sizeof(catname), "credentials.%.*s", SOURCE_NAME_MAX,
             source);
    if (fmt == NULL || !sg_log_enabled(&cat, lvl))
        return;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    sg_log_kv(&cat, lvl, msg, NULL, 0);
}

static const struct sg_credsrc_host host_table = {
    .abi_major = SG_CREDSRC_ABI_MAJOR,
    .abi_minor = SG_CREDSRC_ABI_MINOR,
    .struct_size = sizeof(struct sg_credsrc_host),
    .alloc = host_alloc,
    .free = host_free,
    .wipe = host_wipe,
    .log = host_log,
};

/* ------------------------------------------------------------------ */
/* Checking and adding a source                                        */
/* ------------------------------------------------------------------ */

static bool name_is_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > SOURCE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

static struct credsrc *find(const struct sg_credsrc_registry *reg,
                            const char *kind)
{
    if (kind == NULL)
        return NULL;
    for (size_t i = 0; i < reg->n_sources; i++) {
        if (STREQ(reg->sources[i].ops.name, kind))
            return &reg->sources[i];
    }
    return NULL;
}

static void source_release(struct credsrc *src)
{
    if (src->opened && src->ops.close != NULL)
        src->ops.close(src->priv);
    free(src->priv);
    if (src->dl != NULL)
        dlclose(src->dl);
    memset(src, 0, sizeof(*src));
}

/*
 * Check ops (what names it in messages: "credential plugin '/x.so'"), open
 * it with settings_json and add it to reg. Takes dl (closed on failure).
 * replace: whether a replaceable built-in of the same kind gives way.
 */
static int source_add(struct sg_credsrc_registry *reg,
                      const struct sg_credsrc_ops *ops, const char *settings,
                      const char *what, void *dl, bool replace,
                      bool replaceable, struct sg_error *err)
{
    static const struct {
        size_t offset;
        const char *slot;
    } required[] = {
        {offsetof(struct sg_credsrc_ops, open), "open"},
        {offsetof(struct sg_credsrc_ops, validate), "validate"},
        {offsetof(struct sg_credsrc_ops, describe), "describe"},
        {offsetof(struct sg_credsrc_ops, resolve), "resolve"},
    };
    struct credsrc src;
    struct credsrc *old;
    char *errmsg = NULL;

    memset(&src, 0, sizeof(src));
    src.dl = dl;
    src.replaceable = replaceable;
    if (ops == NULL) {
        sg_error_report(err, SG_ERR_CONFIG, "%s: entry point returned no table",
                        what);
        goto error;
    }
    if (ops->abi_major != SG_CREDSRC_ABI_MAJOR) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: ABI major %" PRIu32 ", this gateway speaks %d",
                        what, ops->abi_major, SG_CREDSRC_ABI_MAJOR);
        goto error;
    }
    if (ops->abi_minor > SG_CREDSRC_ABI_MINOR) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: ABI %" PRIu32 ".%" PRIu32
                        " is newer than this gateway's %d.%d",
                        what, ops->abi_major, ops->abi_minor,
                        SG_CREDSRC_ABI_MAJOR, SG_CREDSRC_ABI_MINOR);
        goto error;
    }
    if (ops->struct_size < OPS_SIZE_1_0) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: struct_size %zu is smaller than ABI 1.0's %zu",
                        what, ops->struct_size, (size_t)OPS_SIZE_1_0);
        goto error;
    }
    /* Read only what the table covers; later slots stay NULL. */
    memcpy(&src.ops, ops,
           ops->struct_size < sizeof(src.ops) ? ops->struct_size
                                              : sizeof(src.ops));

    if (src.ops.signature == NULL) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: no signature, want '%s' (built against another "
                        "header or compiler ABI)",
                        what, SG_CREDSRC_SIGNATURE);
        goto error;
    }
    if (STRNEQ(src.ops.signature, SG_CREDSRC_SIGNATURE)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: signature '%.64s' is not '%s' (built against "
                        "another header or compiler ABI)",
                        what, src.ops.signature, SG_CREDSRC_SIGNATURE);
        goto error;
    }
    if (src.ops.name == NULL) {
        sg_error_report(err, SG_ERR_CONFIG, "%s: no source name", what);
        goto error;
    }
    if (!name_is_valid(src.ops.name)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: source name '%.*s' is not valid (1 to %d of "
                        "[a-z0-9-])",
                        what, SOURCE_NAME_MAX + 1, src.ops.name,
                        SOURCE_NAME_MAX);
        goto error;
    }
    for (size_t i = 0; i < SG_N_ELEMENTS(required); i++) {
        void (*slot)(void);

        memcpy(&slot, (const char *)&src.ops + required[i].offset,
               sizeof(slot));
        if (slot == NULL) {
            sg_error_report(err, SG_ERR_CONFIG,
                            "%s: required slot '%s' is NULL", what,
                            required[i].slot);
            goto error;
        }
    }
    old = find(reg, src.ops.name);
    if (old != NULL && !(replace && old->replaceable)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: kind '%s' is already registered", what,
                        src.ops.name);
        goto error;
    }
    if (old == NULL && reg->n_sources == reg->cap) {
        size_t cap = reg->cap > 0 ? reg->cap * 2 : 8;
        struct credsrc *grown =
            realloc(reg->sources, cap * sizeof(*reg->sources));

        if (grown == NULL) {
            sg_error_report(err, SG_ERR_NO_MEMORY, "%s: out of memory", what);
            goto error;
        }
        reg->sources = grown;
        reg->cap = cap;
    }
    src.priv = calloc(1, src.ops.priv_size > 0 ? src.ops.priv_size : 1);
    if (src.priv == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "%s: out of memory", what);
        goto error;
    }
    if (src.ops.open(src.priv, &host_table, settings != NULL ? settings : "{}",
                     &errmsg) != 0) {
        sg_error_report(err, SG_ERR_CONFIG, "%s: open failed: %s", what,
                        errmsg != NULL ? errmsg : "no reason given");
        free(errmsg);
        goto error;
    }
    free(errmsg); /* a source that set it anyway */
    src.opened = true;
    SG_DEBUG("credential source '%s' open (%s, ABI %" PRIu32 ".%" PRIu32 ")",
             src.ops.name, what, src.ops.abi_major, src.ops.abi_minor);
    if (old != NULL) {
        source_release(old);
        *old = src;
    } else {
        reg->sources[reg->n_sources++] = src;
    }
    return 0;

 error:
    source_release(&src);
    return -1;
}

static int plugin_load(struct sg_credsrc_registry *reg,
                       const struct sg_credsrc_plugin_config *pc,
                       struct sg_error *err)
{
    char what[PATH_MAX + 32];
    const char *path = pc->path != NULL ? pc->path : "";
    sg_credsrc_entry_fn entry;
    void *dl;
    void *sym;

    snprintf(what, sizeof(what), "credential plugin '%s'", path);
    if (path[0] == '\0') {
        sg_error_report(err, SG_ERR_CONFIG, "%s: path is empty", what);
        return -1;
    }
    if (strlen(path) >= PATH_MAX) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "credential plugin '%.64s...': path is %zu bytes, "
                        "the limit is %d",
                        path, strlen(path), PATH_MAX - 1);
        return -1;
    }
    if (path[0] != '/') {
        sg_error_report(err, SG_ERR_CONFIG, "%s: path must be absolute", what);
        return -1;
    }
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        const char *why = dlerror();

        sg_error_report(err, SG_ERR_CONFIG, "%s: cannot load: %s", what,
                        why != NULL ? why : "unknown dlopen error");
        return -1;
    }
    dlerror(); /* clear, so that a NULL from dlsym is told apart */
    sym = dlsym(dl, SG_CREDSRC_ENTRY);
    if (sym == NULL) {
        sg_error_report(err, SG_ERR_CONFIG, "%s: no symbol %s", what,
                        SG_CREDSRC_ENTRY);
        dlclose(dl);
        return -1;
    }
    /* POSIX guarantees that a data pointer from dlsym converts to a
       function pointer; memcpy keeps -Wpedantic quiet about it. */
    memcpy(&entry, &sym, sizeof(entry));
    return source_add(reg, entry(&host_table), pc->settings_json, what, dl,
                      false, false, err);
}

/* The built-ins' settings, from cfg: {"directories": [...]} and
   {"prefix": "..."}. A json_dumps string, or NULL when out of memory. */
static char *file_settings(const struct sg_credsrc_config *cfg)
{
    json_t *dirs = json_array();
    json_t *obj = json_object();
    char *out = NULL;

    if (dirs == NULL || obj == NULL)
        goto cleanup;
    for (size_t i = 0; i < cfg->n_file_directories; i++) {
        const char *d = cfg->file_directories[i];

        if (json_array_append_new(dirs, json_string(d != NULL ? d : "")) < 0)
            goto cleanup;
    }
    if (json_object_set(obj, "directories", dirs) < 0)
        goto cleanup;
    out = json_dumps(obj, JSON_COMPACT);

 cleanup:
    json_decref(dirs);
    json_decref(obj);
    return out;
}

static char *env_settings(const struct sg_credsrc_config *cfg)
{
    json_t *obj = json_object();
    char *out = NULL;

    if (obj == NULL)
        return NULL;
    if (cfg->env_prefix == NULL ||
        json_object_set_new(obj, "prefix", json_string(cfg->env_prefix)) == 0)
        out = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return out;
}

/* ------------------------------------------------------------------ */
/* Registry                                                            */
/* ------------------------------------------------------------------ */

struct sg_credsrc_registry *
sg_credsrc_registry_new(const struct sg_credsrc_config *cfg,
                        struct sg_error *err)
{
    static const struct sg_credsrc_config empty;
    struct sg_credsrc_registry *reg = NULL;
    char *settings = NULL;

    if (cfg == NULL)
        cfg = &empty;
    reg = calloc(1, sizeof(*reg));
    if (reg == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "out of memory creating the credential sources");
        return NULL;
    }
    /* Also seeds jansson's hash function (json_object_seed) on this
       thread, before validate and resolve parse references on others. */
    settings = file_settings(cfg);
    if (settings == NULL || source_add(reg, sg_credsrc_file_ops(), settings,
                                       "built-in credential source 'file'",
                                       NULL, false, false, err) < 0)
        goto error;
    free(settings);
    settings = env_settings(cfg);
    if (settings == NULL || source_add(reg, sg_credsrc_env_ops(), settings,
                                       "built-in credential source 'env'", NULL,
                                       false, false, err) < 0)
        goto error;
    free(settings);
    settings = NULL;
    if (source_add(reg, sg_credsrc_k8s_secret_ops(), "{}",
                   "built-in credential source 'kubernetes-secret'", NULL,
                   false, true, err) < 0)
        goto error;
    /* The loader is off unless plugins are configured: nothing is opened
       when n_plugins is 0. */
    for (size_t i = 0; i < cfg->n_plugins; i++) {
        if (plugin_load(reg, &cfg->plugins[i], err) < 0)
            goto error;
    }
    return reg;

 error:
    if (!sg_error_is_set(err))
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "out of memory creating the credential sources");
    free(settings);
    sg_credsrc_registry_free(reg);
    return NULL;
}

void sg_credsrc_registry_free(struct sg_credsrc_registry *reg)
{
    if (reg == NULL)
        return;
    for (size_t i = reg->n_sources; i > 0; i--)
        source_release(&reg->sources[i - 1]);
    free(reg->sources);
    free(reg);
}

int sg_credsrc_register(struct sg_credsrc_registry *reg,
                        const struct sg_credsrc_ops *ops,
                        const char *settings_json, struct sg_error *err)
{
    char what[SOURCE_NAME_MAX + 64];

    snprintf(what, sizeof(what), "built-in credential source '%.*s'",
             SOURCE_NAME_MAX,
             ops != NULL && ops->struct_size >= OPS_SIZE_1_0 &&
                     ops->name != NULL
                 ? ops->name
                 : "?");
    return source_add(reg, ops, settings_json, what, NULL, true, false, err);
}

bool sg_credsrc_known(const struct sg_credsrc_registry *reg, const char *kind)
{
    return find(reg, kind) != NULL;
}

/* The source for kind, or NULL with err set (INVALID_ARGUMENT). */
static const struct credsrc *lookup(const struct sg_credsrc_registry *reg,
                                    const char *kind, struct sg_error *err)
{
    const struct credsrc *src = find(reg, kind);

    if (src == NULL)
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "source.kind: unknown credential source '%.64s'",
                        kind != NULL ? kind : "");
    return src;
}

static int validate(const struct credsrc *src, const char *ref_json,
                    struct sg_error *err)
{
    char *errmsg = NULL;

    if (src->ops.validate(src->priv, ref_json != NULL ? ref_json : "",
                          &errmsg) != 0) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT, "%s",
                        errmsg != NULL ? errmsg : "ref: refused by the source");
        free(errmsg);
        return -1;
    }
    free(errmsg);
    return 0;
}

int sg_credsrc_validate(const struct sg_credsrc_registry *reg, const char *kind,
                        const char *ref_json, struct sg_error *err)
{
    const struct credsrc *src = lookup(reg, kind, err);

    if (src == NULL)
        return -1;
    return validate(src, ref_json, err);
}

void sg_credsrc_describe(const struct sg_credsrc_registry *reg,
                         const char *kind, const char *ref_json, char *out,
                         size_t size)
{
    const struct credsrc *src = find(reg, kind);
    char *desc = NULL;
    char *errmsg = NULL;

    if (size == 0)
        return;
    if (src == NULL) {
        snprintf(out, size, "unknown source '%.64s'", kind != NULL ? kind : "");
        return;
    }
    if (ref_json != NULL &&
        src->ops.describe(src->priv, ref_json, &desc, &errmsg) == 0 &&
        desc != NULL)
        snprintf(out, size, "%s", desc);
    else
        snprintf(out, size, "%s (a reference it cannot describe)",
                 src->ops.name);
    free(desc);
    free(errmsg);
}

int sg_credsrc_resolve(const struct sg_credsrc_registry *reg, const char *kind,
                       const char *ref_json, struct sg_secret **out,
                       struct sg_error *err)
{
    const struct credsrc *src = lookup(reg, kind, err);
    struct sg_credsrc_material m = {0};
    struct sg_secret *secret = NULL;
    char *errmsg = NULL;

    *out = NULL;
    if (src == NULL || validate(src, ref_json, err) < 0)
        return -1;
    if (src->ops.resolve(src->priv, ref_json, &m, &errmsg) != 0) {
        sg_error_report(err, SG_ERR_FAILED_PRECONDITION, "%s: %s",
                        src->ops.name,
                        errmsg != NULL ? errmsg
                                       : "the reference did not "
                                         "resolve");
        goto error;
    }
    if (m.data == NULL && m.len > 0) {
        sg_error_report(err, SG_ERR_INTERNAL,
                        "%s: resolve returned %zu bytes without data",
                        src->ops.name, m.len);
        goto error;
    }
    secret = calloc(1, sizeof(*secret));
    if (secret == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "%s: out of memory resolving a reference",
                        src->ops.name);
        goto error;
    }
    secret->data = m.data;
    secret->len = m.len;
    secret->expire_time_ms = m.expire_time_ms;
    free(errmsg);
    *out = secret;
    return 0;

 error:
    /* Material a failing source left behind. */
    if (m.data != NULL) {
        host_wipe(m.data, m.len);
        free(m.data);
    }
    free(errmsg);
    return -1;
}

void sg_secret_free(struct sg_secret *s)
{
    if (s == NULL)
        return;
    if (s->data != NULL) {
        explicit_bzero(s->data, s->len);
        free(s->data);
    }
    explicit_bzero(s, sizeof(*s));
    free(s);
}
