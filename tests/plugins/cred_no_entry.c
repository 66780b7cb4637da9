/*
 * cred_no_entry.c: a credential plugin that exports no entry symbol. It
 * defines sg_credential_source_entry without SG_EXPORT, so
 * -fvisibility=hidden keeps it out of the dynamic symbol table: the
 * mistake this case stands for.
 */
#include "internal.h"

#include <sandgate/credential_source.h>

const struct sg_credsrc_ops *
sg_credential_source_entry(const struct sg_credsrc_host *host);

const struct sg_credsrc_ops *
sg_credential_source_entry(const struct sg_credsrc_host *host)
{
    return NULL;
}

/* Something exported, so that the object is not empty. */
SG_EXPORT int cred_no_entry_marker(void);

SG_EXPORT int cred_no_entry_marker(void)
{
    return 42;
}
