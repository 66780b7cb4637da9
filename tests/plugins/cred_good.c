/*
 * cred_good.c: a minimal valid credential source plugin, "test-good".
 *
 * Knows nothing of the tree but include/sandgate/credential_source.h.
 * ref {"id": "..."}; resolve answers "value-of-<id>", or fails for id
 * "missing". Settings containing "refuse" make open fail.
 */
#include "internal.h"

#include <sandgate/credential_source.h>

#include <stdio.h>

struct good {
    const struct sg_credsrc_host *host;
};

static char *dup_msg(const struct sg_credsrc_host *host, const char *s)
{
    size_t len = strlen(s);
    char *out = host->alloc(len + 1);

    if (out != NULL)
        memcpy(out, s, len + 1);
    return out;
}

static int good_open(void *priv, const struct sg_credsrc_host *host,
                     const char *settings_json, char **errmsg)
{
    struct good *g = priv;

    if (strstr(settings_json, "refuse") != NULL) {
        *errmsg = dup_msg(host, "refused settings");
        return -1;
    }
    g->host = host;
    host->log(SG_CREDSRC_LOG_INFO, "test-good", "open");
    return 0;
}

/* The id of {"id": "<id>"} into id (size bytes), without a JSON parser:
   the test references are written by the test. */
static int ref_id(const char *ref_json, char *id, size_t size)
{
    const char *p = strstr(ref_json, "\"id\"");
    const char *end;

    if (p == NULL)
        return -1;
    p = strchr(p + 4, '"');
    if (p == NULL)
        return -1;
    end = strchr(p + 1, '"');
    if (end == NULL || end == p + 1 || (size_t)(end - p - 1) >= size)
        return -1;
    memcpy(id, p + 1, (size_t)(end - p - 1));
    id[end - p - 1] = '\0';
    return 0;
}

static int good_validate(void *priv, const char *ref_json, char **errmsg)
{
    struct good *g = priv;
    char id[64];

    if (ref_id(ref_json, id, sizeof(id)) < 0) {
        *errmsg = dup_msg(g->host, "ref.id: required");
        return -1;
    }
    return 0;
}

static int good_describe(void *priv, const char *ref_json, char **out,
                         char **errmsg)
{
    struct good *g = priv;
    char id[64];
    char buf[128];

    if (ref_id(ref_json, id, sizeof(id)) < 0) {
        *errmsg = dup_msg(g->host, "ref.id: required");
        return -1;
    }
    snprintf(buf, sizeof(buf), "test-good id %s", id);
    *out = dup_msg(g->host, buf);
    return *out != NULL ? 0 : -1;
}

static int good_resolve(void *priv, const char *ref_json,
                        struct sg_credsrc_material *out, char **errmsg)
{
    struct good *g = priv;
    char id[64];
    char value[96];
    int n;

    if (ref_id(ref_json, id, sizeof(id)) < 0 || strcmp(id, "missing") == 0) {
        *errmsg = dup_msg(g->host, "no material for this id");
        return -1;
    }
    n = snprintf(value, sizeof(value), "value-of-%s", id);
    out->data = g->host->alloc((size_t)n);
    if (out->data == NULL)
        return -1;
    memcpy(out->data, value, (size_t)n);
    g->host->wipe(value, sizeof(value));
    out->len = (size_t)n;
    out->expire_time_ms = 4102444800000; /* 2100-01-01 */
    return 0;
}

static const struct sg_credsrc_ops good_ops = {
    .abi_major = SG_CREDSRC_ABI_MAJOR,
    .abi_minor = SG_CREDSRC_ABI_MINOR,
    .struct_size = sizeof(struct sg_credsrc_ops),
    .name = "test-good",
    .signature = SG_CREDSRC_SIGNATURE,
    .priv_size = sizeof(struct good),
    .open = good_open,
    .validate = good_validate,
    .describe = good_describe,
    .resolve = good_resolve,
};

SG_EXPORT const struct sg_credsrc_ops *
sg_credential_source_entry(const struct sg_credsrc_host *host);

SG_EXPORT const struct sg_credsrc_ops *
sg_credential_source_entry(const struct sg_credsrc_host *host)
{
    return &good_ops;
}
