/*
 * cred_stub.h: what the credential plugins that the loader must refuse
 * share: slots that do nothing and the entry point. Each such plugin is
 * one ops table, wrong in one way, then CRED_STUB_ENTRY(table).
 *
 * Static functions in a header on purpose: every plugin is its own
 * shared object, built against the public ABI header alone.
 */
#ifndef SG_TEST_CRED_STUB_H
#define SG_TEST_CRED_STUB_H

#include <sandgate/credential_source.h>

static int stub_open(void *priv, const struct sg_credsrc_host *host,
                     const char *settings_json, char **errmsg)
{
    return 0;
}

static int stub_validate(void *priv, const char *ref_json, char **errmsg)
{
    return 0;
}

static int stub_describe(void *priv, const char *ref_json, char **out,
                         char **errmsg)
{
    return -1;
}

static int stub_resolve(void *priv, const char *ref_json,
                        struct sg_credsrc_material *out, char **errmsg)
{
    return -1;
}

#define CRED_STUB_SLOTS                                                     \
    .open = stub_open, .validate = stub_validate,                           \
    .describe = stub_describe, .resolve = stub_resolve

#define CRED_STUB_ENTRY(table)                                              \
    SG_EXPORT const struct sg_credsrc_ops *sg_credential_source_entry(      \
        const struct sg_credsrc_host *host);                                \
    SG_EXPORT const struct sg_credsrc_ops *sg_credential_source_entry(      \
        const struct sg_credsrc_host *host)                                 \
    {                                                                       \
        return &(table);                                                    \
    }

#endif /* SG_TEST_CRED_STUB_H */
