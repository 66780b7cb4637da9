/*
 * source_util.c: reference parsing and message helpers shared by the
 * built-in credential sources.
 */
#include "internal.h"

#include "sources.h"

#include <stdarg.h>
#include <stdio.h>

char *sg_credsrc_msg(const struct sg_credsrc_host *host, const char *fmt, ...)
{
    va_list ap;
    char *out;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    out = host->alloc((size_t)n + 1);
    if (out == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

json_t *sg_credsrc_ref_parse(const struct sg_credsrc_host *host,
                             const char *ref_json, const char *const *keys,
                             size_t n_keys, char **errmsg)
{
    json_t *ref = NULL;
    const char *key;
    json_t *value;

    if (ref_json != NULL)
        ref = json_loads(ref_json, JSON_REJECT_DUPLICATES, NULL);
    if (ref == NULL || !json_is_object(ref)) {
        json_decref(ref);
        *errmsg = sg_credsrc_msg(host, "ref: not a JSON object");
        return NULL;
    }
    json_object_foreach(ref, key, value)
    {
        bool known = false;

        for (size_t i = 0; i < n_keys && !known; i++)
            known = STREQ(key, keys[i]);
        if (!known) {
            *errmsg = sg_credsrc_msg(host, "ref.%.64s: unknown key", key);
            json_decref(ref);
            return NULL;
        }
    }
    return ref;
}

int sg_credsrc_ref_string(const struct sg_credsrc_host *host, json_t *ref,
                          const char *key, const char **out, char **errmsg)
{
    json_t *value = json_object_get(ref, key);

    if (value == NULL || json_is_null(value)) {
        *errmsg = sg_credsrc_msg(host, "ref.%s: required", key);
        return -1;
    }
    if (!json_is_string(value)) {
        *errmsg = sg_credsrc_msg(host, "ref.%s: must be a string", key);
        return -1;
    }
    if (json_string_length(value) == 0) {
        *errmsg = sg_credsrc_msg(host, "ref.%s: required", key);
        return -1;
    }
    if (strlen(json_string_value(value)) != json_string_length(value)) {
        *errmsg = sg_credsrc_msg(host, "ref.%s: contains a NUL byte", key);
        return -1;
    }
    *out = json_string_value(value);
    return 0;
}
