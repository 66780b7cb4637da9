/*
 * newer_minor.c: a plugin built against a newer minor version of ABI 1
 * (1.5): its ops table is longer than this gateway's and ends with slots
 * the gateway does not know. It must load; the gateway reads only the
 * slots it knows.
 */
#include "internal.h"

struct newer_ops {
    struct sg_driver_ops base; /* ABI 1.0, unchanged */
    /* Slots appended by ABI 1.1 .. 1.5 (never read by a 1.0 gateway). */
    int (*future_a)(void *priv);
    int (*future_b)(void *priv);
    void *future_c;
};

static int newer_open(void *priv, const struct sg_driver_host *host,
                      const char *settings_json, const char *state_dir,
                      char **errmsg)
{
    return 0;
}

static int newer_validate(void *priv, const struct sg_driver_sandbox *sb,
                          char **errmsg)
{
    return 0;
}

static int newer_create(void *priv, const struct sg_driver_sandbox *sb,
                        sg_driver_done_cb done, void *opaque)
{
    return -1;
}

static int newer_remove(void *priv, const char *id,
                        const char *backend_object, uint32_t grace_ms,
                        sg_driver_done_cb done, void *opaque)
{
    return -1;
}

static int newer_get(void *priv, const char *id, const char *backend_object,
                     sg_driver_done_cb done, void *opaque)
{
    return -1;
}

static int newer_future(void *priv)
{
    return 0;
}

static const struct newer_ops newer = {
    .base = {
        .abi_major = SG_DRIVER_ABI_MAJOR,
        .abi_minor = 5,
        .struct_size = sizeof(struct newer_ops),
        .name = "newer",
        .caps = SG_DRIVER_CAP_LOGS,
        .priv_size = 0,
        .open = newer_open,
        .config_validate = newer_validate,
        .create = newer_create,
        .remove = newer_remove,
        .get = newer_get,
    },
    .future_a = newer_future,
    .future_b = newer_future,
    .future_c = (void *)&newer,
};

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host);

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host)
{
    return &newer.base;
}
