/*
 * source_env.c: the built-in "env" credential source.
 *
 * ref {"name": "VAR"}: a variable of the gateway's own environment whose
 * name starts with the configured prefix (settings {"prefix": "..."});
 * without a prefix every reference is refused, so that a reference cannot
 * name an arbitrary variable of the gateway (PATH, a token it uses
 * itself).
 *
 * resolve reads getenv(); the gateway does not change its environment
 * after start, so that is safe from any thread.
 */
#include "internal.h"

#include "sources.h"

#include <stdio.h>
#include <stdlib.h>

#define ENV_NAME_MAX 255

struct env_src {
    const struct sg_credsrc_host *host;
    char prefix[ENV_NAME_MAX + 1]; /* "" when none is configured */
};

static const char *const ref_keys[] = {"name"};

static bool is_name_char(char c, bool first)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

/* Also for the prefix: a name starts with it, so it starts as one. */
static bool is_var_name(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > ENV_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char(s[i], i == 0))
            return false;
    }
    return true;
}

static int env_open(void *priv, const struct sg_credsrc_host *host,
                    const char *settings_json, char **errmsg)
{
    static const char *const keys[] = {"prefix"};
    struct env_src *e = priv;
    json_t *settings;
    json_t *prefix;
    int rc = -1;

    e->host = host;
    settings = sg_credsrc_ref_parse(host, settings_json, keys,
                                    SG_N_ELEMENTS(keys), errmsg);
    if (settings == NULL)
        return -1;
    prefix = json_object_get(settings, "prefix");
    if (prefix != NULL && !json_is_null(prefix)) {
        const char *p = json_string_value(prefix);

        if (p == NULL || (p[0] != '\0' && !is_var_name(p))) {
            *errmsg = sg_credsrc_msg(host,
                                     "prefix must be a variable name prefix "
                                     "(1 to %d of [A-Za-z0-9_], not starting "
                                     "with a digit)",
                                     ENV_NAME_MAX);
            goto cleanup;
        }
        snprintf(e->prefix, sizeof(e->prefix), "%s", p);
    }
    rc = 0;

 cleanup:
    json_decref(settings);
    return rc;
}

/* The variable name of a valid reference (borrowed from *ref). */
static int env_parse(struct env_src *e, const char *ref_json, json_t **ref,
                     const char **name, char **errmsg)
{
    *ref = sg_credsrc_ref_parse(e->host, ref_json, ref_keys,
                                SG_N_ELEMENTS(ref_keys), errmsg);
    if (*ref == NULL)
        return -1;
    if (sg_credsrc_ref_string(e->host, *ref, "name", name, errmsg) < 0)
        return -1;
    if (e->prefix[0] == '\0') {
        *errmsg =
            sg_credsrc_msg(e->host, "env: no variable prefix is configured");
        return -1;
    }
    if (!is_var_name(*name)) {
        *errmsg = sg_credsrc_msg(e->host,
                                 "ref.name: '%.*s' is not a variable name "
                                 "(1 to %d of [A-Za-z0-9_], not starting "
                                 "with a digit)",
                                 ENV_NAME_MAX, *name, ENV_NAME_MAX);
        return -1;
    }
    if (!STRPREFIX(*name, e->prefix)) {
        *errmsg = sg_credsrc_msg(e->host,
                                 "ref.name: '%s' does not start with the "
                                 "configured prefix '%s'",
                                 *name, e->prefix);
        return -1;
    }
    return 0;
}

static int env_validate(void *priv, const char *ref_json, char **errmsg)
{
    json_t *ref = NULL;
    const char *name;
    int rc = env_parse(priv, ref_json, &ref, &name, errmsg);

    json_decref(ref);
    return rc;
}

static int env_describe(void *priv, const char *ref_json, char **out,
                        char **errmsg)
{
    struct env_src *e = priv;
    json_t *ref = NULL;
    const char *name;
    int rc = -1;

    if (env_parse(e, ref_json, &ref, &name, errmsg) < 0)
        goto cleanup;
    *out = sg_credsrc_msg(e->host, "env %s", name);
    rc = *out != NULL ? 0 : -1;

 cleanup:
    json_decref(ref);
    return rc;
}

static int env_resolve(void *priv, const char *ref_json,
                       struct sg_credsrc_material *out, char **errmsg)
{
    struct env_src *e = priv;
    json_t *ref = NULL;
    const char *name;
    const char *value;
    size_t len;
    int rc = -1;

    if (env_parse(e, ref_json, &ref, &name, errmsg) < 0)
        goto cleanup;
    value = getenv(name);
    if (value == NULL) {
        *errmsg = sg_credsrc_msg(e->host,
                                 "environment variable '%s' is not set", name);
        goto cleanup;
    }
    len = strlen(value);
    out->data = e->host->alloc(len);
    if (out->data == NULL) {
        *errmsg = sg_credsrc_msg(e->host, "out of memory");
        goto cleanup;
    }
    memcpy(out->data, value, len);
    out->len = len;
    out->expire_time_ms = 0;
    rc = 0;

 cleanup:
    json_decref(ref);
    return rc;
}

static const struct sg_credsrc_ops env_ops = {
    .abi_major = SG_CREDSRC_ABI_MAJOR,
    .abi_minor = SG_CREDSRC_ABI_MINOR,
    .struct_size = sizeof(struct sg_credsrc_ops),
    .name = "env",
    .signature = SG_CREDSRC_SIGNATURE,
    .priv_size = sizeof(struct env_src),
    .open = env_open,
    .validate = env_validate,
    .describe = env_describe,
    .resolve = env_resolve,
};

const struct sg_credsrc_ops *sg_credsrc_env_ops(void)
{
    return &env_ops;
}
