/*
 * short_struct.c: a plugin whose ops table claims to be 16 bytes, too
 * short for even the ABI 1.0 slots.
 */
#include "internal.h"

static const struct sg_driver_ops short_ops = {
    .abi_major = SG_DRIVER_ABI_MAJOR,
    .abi_minor = 0,
    .struct_size = 16,
    .name = "short_struct",
};

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host);

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host)
{
    return &short_ops;
}
