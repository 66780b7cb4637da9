/*
 * bad_table.c: a plugin with a defective ops table, the defect chosen by
 * the environment variable SG_TEST_BAD_TABLE (read in the entry point):
 * "no-name", "bad-name", or "no-<slot>" for a required slot left NULL.
 * The test program sets it in its forked child before loading.
 */
#include "internal.h"

#include <stdlib.h>

static int bt_open(void *priv, const struct sg_driver_host *host,
                   const char *settings_json, const char *state_dir,
                   char **errmsg)
{
    return 0;
}

static int bt_validate(void *priv, const struct sg_driver_sandbox *sb,
                       char **errmsg)
{
    return 0;
}

static int bt_create(void *priv, const struct sg_driver_sandbox *sb,
                     sg_driver_done_cb done, void *opaque)
{
    return -1;
}

static int bt_remove(void *priv, const char *id, const char *backend_object,
                     uint32_t grace_ms, sg_driver_done_cb done, void *opaque)
{
    return -1;
}

static int bt_get(void *priv, const char *id, const char *backend_object,
                  sg_driver_done_cb done, void *opaque)
{
    return -1;
}

static struct sg_driver_ops bt_ops;

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host);

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host)
{
    const char *defect = getenv("SG_TEST_BAD_TABLE");

    bt_ops = (struct sg_driver_ops){
        .abi_major = SG_DRIVER_ABI_MAJOR,
        .abi_minor = SG_DRIVER_ABI_MINOR,
        .struct_size = sizeof(struct sg_driver_ops),
        .name = "bad_table",
        .open = bt_open,
        .config_validate = bt_validate,
        .create = bt_create,
        .remove = bt_remove,
        .get = bt_get,
    };
    if (defect == NULL)
        return &bt_ops;
    if (strcmp(defect, "no-name") == 0)
        bt_ops.name = NULL;
    else if (strcmp(defect, "empty-name") == 0)
        bt_ops.name = "";
    else if (strcmp(defect, "bad-name") == 0)
        bt_ops.name = "Bad Name";
    else if (strcmp(defect, "no-open") == 0)
        bt_ops.open = NULL;
    else if (strcmp(defect, "no-config_validate") == 0)
        bt_ops.config_validate = NULL;
    else if (strcmp(defect, "no-create") == 0)
        bt_ops.create = NULL;
    else if (strcmp(defect, "no-remove") == 0)
        bt_ops.remove = NULL;
    else if (strcmp(defect, "no-get") == 0)
        bt_ops.get = NULL;
    return &bt_ops;
}
