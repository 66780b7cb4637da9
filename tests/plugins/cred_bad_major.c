/*
 * cred_bad_major.c: a credential plugin built for ABI major 2.
 */
#include "internal.h"

#include <sandgate/credential_source.h>

static int any_open(void *priv, const struct sg_credsrc_host *host,
                    const char *settings_json, char **errmsg)
{
    return 0;
}

static int any_validate(void *priv, const char *ref_json, char **errmsg)
{
    return 0;
}

static int any_describe(void *priv, const char *ref_json, char **out,
                        char **errmsg)
{
    return -1;
}

static int any_resolve(void *priv, const char *ref_json,
                       struct sg_credsrc_material *out, char **errmsg)
{
    return -1;
}

static const struct sg_credsrc_ops ops = {
    .abi_major = 2,
    .abi_minor = 0,
    .struct_size = sizeof(struct sg_credsrc_ops),
    .signature = SG_CREDSRC_SIGNATURE,
    .name = "bad-major",
    .open = any_open,
    .validate = any_validate,
    .describe = any_describe,
    .resolve = any_resolve,
};

SG_EXPORT const struct sg_credsrc_ops *
sg_credential_source_entry(const struct sg_credsrc_host *host);

SG_EXPORT const struct sg_credsrc_ops *
sg_credential_source_entry(const struct sg_credsrc_host *host)
{
    return &ops;
}
