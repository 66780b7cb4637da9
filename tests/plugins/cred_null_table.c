/*
 * cred_null_table.c: a credential plugin whose entry point returns no
 * table (as one that refuses to load in this process would).
 */
#include "internal.h"

#include <sandgate/credential_source.h>

SG_EXPORT const struct sg_credsrc_ops *
sg_credential_source_entry(const struct sg_credsrc_host *host);

SG_EXPORT const struct sg_credsrc_ops *
sg_credential_source_entry(const struct sg_credsrc_host *host)
{
    return NULL;
}
