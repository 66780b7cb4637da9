/*
 * good_driver.c: a minimal valid driver plugin, "good".
 *
 * Knows nothing of the tree but include/sandgate/driver.h. get answers
 * GONE through a uv_idle handle (deferred, as the ABI demands); create and
 * remove refuse (return -1); list and watch are absent. Settings
 * containing "refuse" make open fail; a config block containing "bad"
 * fails validation and describe.
 */
#include "internal.h"

struct good {
    const struct sg_driver_host *host;
    uv_idle_t idle;
    sg_driver_done_cb done;
    void *opaque;
    char id[64];
    int pending;
};

static int good_open(void *priv, const struct sg_driver_host *host,
                     const char *settings_json, const char *state_dir,
                     char **errmsg)
{
    struct good *g = priv;

    if (strstr(settings_json, "refuse") != NULL) {
        *errmsg = host->strdup("good: refused settings");
        return -1;
    }
    g->host = host;
    uv_idle_init(host->loop, &g->idle);
    g->idle.data = g;
    host->log(SG_DRIVER_LOG_INFO, "good", "open, state in %s", state_dir);
    return 0;
}

static void good_close(void *priv)
{
    struct good *g = priv;

    uv_close((uv_handle_t *)&g->idle, NULL);
}

static int good_validate(void *priv, const struct sg_driver_sandbox *sb,
                         char **errmsg)
{
    struct good *g = priv;

    if (strstr(sb->config_json, "bad") != NULL) {
        *errmsg = g->host->strdup("good.bad: not allowed");
        return -1;
    }
    if (strstr(sb->config_json, "later") != NULL) {
        *errmsg = g->host->strdup("good.later: not built yet");
        return SG_DRIVER_VALIDATE_UNSUPPORTED;
    }
    return 0;
}

static int good_describe(void *priv, const struct sg_driver_sandbox *sb,
                         struct sg_driver_placement *out, char **errmsg)
{
    struct good *g = priv;

    out->namespace_name = g->host->strdup("ns-good");
    if (strstr(sb->config_json, "bad") != NULL) {
        /* Partly filled on error: the host must free it. */
        *errmsg = g->host->strdup("good.bad: not allowed");
        return -1;
    }
    out->fields = g->host->alloc(2 * sizeof(char *));
    if (out->fields == NULL)
        return -1;
    out->fields[0] = g->host->strdup("alpha");
    out->fields[1] = g->host->strdup("beta");
    out->n_fields = 2;
    return 0;
}

static int good_create(void *priv, const struct sg_driver_sandbox *sb,
                       sg_driver_done_cb done, void *opaque)
{
    return -1;
}

static int good_remove(void *priv, const char *id, const char *backend_object,
                       uint32_t grace_ms, sg_driver_done_cb done, void *opaque)
{
    return -1;
}

static void good_on_idle(uv_idle_t *h)
{
    struct good *g = h->data;
    struct sg_driver_status st = {
        .id = g->id,
        .state = SG_DRIVER_STATE_GONE,
        .reason = "NotFound",
        .message = "",
        .backend_object = "",
        .exit_code = 0,
    };

    uv_idle_stop(&g->idle);
    g->pending = 0;
    g->done(g->opaque, SG_DRIVER_OK, &st, "");
}

static int good_get(void *priv, const char *id, const char *backend_object,
                    sg_driver_done_cb done, void *opaque)
{
    struct good *g = priv;
    size_t len = strlen(id);

    if (g->pending || len >= sizeof(g->id))
        return -1;
    memcpy(g->id, id, len + 1);
    g->done = done;
    g->opaque = opaque;
    g->pending = 1;
    uv_idle_start(&g->idle, good_on_idle);
    return 0;
}

static const struct sg_driver_ops good_ops = {
    .abi_major = SG_DRIVER_ABI_MAJOR,
    .abi_minor = SG_DRIVER_ABI_MINOR,
    .struct_size = sizeof(struct sg_driver_ops),
    .name = "good",
    .caps = 0,
    .priv_size = sizeof(struct good),
    .open = good_open,
    .close = good_close,
    .config_validate = good_validate,
    .describe = good_describe,
    .create = good_create,
    .remove = good_remove,
    .get = good_get,
};

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host);

SG_EXPORT const struct sg_driver_ops *
sandgate_driver_entry(const struct sg_driver_host *host)
{
    if (host->abi_major != SG_DRIVER_ABI_MAJOR ||
        host->struct_size < sizeof(struct sg_driver_host))
        return NULL;
    return &good_ops;
}
