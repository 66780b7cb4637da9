/*
 * null_entry.c: a plugin whose entry point declines to load (returns
 * NULL), saying why through host->log.
 */
#include "internal.h"

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host);

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host)
{
    host->log(SG_DRIVER_LOG_ERROR, "null_entry",
              "this host is not supported (ABI %u.%u)",
              (unsigned)host->abi_major, (unsigned)host->abi_minor);
    return NULL;
}
