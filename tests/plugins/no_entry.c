/*
 * no_entry.c: a plugin that exports no entry symbol. It defines
 * sandgate_driver_entry without SG_EXPORT, so -fvisibility=hidden keeps
 * it out of the dynamic symbol table: the mistake this case stands for.
 */
#include "internal.h"

const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host);

const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host)
{
    return NULL;
}

/* Something exported, so that the object is not empty. */
SG_EXPORT int no_entry_marker(void);

SG_EXPORT int no_entry_marker(void)
{
    return 42;
}
