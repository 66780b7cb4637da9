/*
 * bad_major.c: a plugin built for a future ABI major version (2). The
 * gateway must refuse it before reading anything past abi_major.
 */
#include "internal.h"

static int bad_open(void *priv, const struct sg_driver_host *host,
                    const char *settings_json, const char *state_dir,
                    char **errmsg)
{
    return 0;
}

static const struct sg_driver_ops bad_ops = {
    .abi_major = 2,
    .abi_minor = 0,
    .struct_size = sizeof(struct sg_driver_ops),
    .name = "bad_major",
    .open = bad_open,
};

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host);

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host)
{
    return &bad_ops;
}
