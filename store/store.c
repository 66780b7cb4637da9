/*
 * store.c: backend selection, argument checks and dispatch, row helpers.
 *
 * Everything backend-independent lives here so that each backend
 * implements only its struct sg_store_ops.
 */
#include "internal.h"

#include "store.h"
#include "buf.h"

#include <stdlib.h>

struct sg_store {
    const struct sg_store_ops *ops;
    void *priv;
};

static const struct sg_store_ops *const backends[] = {
    &sg_store_sqlite_ops,
};

static const char *const phase_names[] = {
    [SG_PHASE_ACCEPTED] = "accepted", [SG_PHASE_PROVISIONING] = "provisioning",
    [SG_PHASE_READY] = "ready",       [SG_PHASE_FAILED] = "failed",
    [SG_PHASE_DELETING] = "deleting", [SG_PHASE_DELETED] = "deleted",
};

struct sg_store *sg_store_open(const struct sg_store_config *cfg,
                               struct sg_error *err)
{
    const struct sg_store_ops *ops = NULL;
    struct sg_store *store = NULL;
    const char *name;
    size_t i;

    if (!cfg) {
        sg_error_report(err, SG_ERR_CONFIG, "no store configuration");
        return NULL;
    }
    name = cfg->backend && cfg->backend[0] ? cfg->backend : "sqlite";
    for (i = 0; i < SG_N_ELEMENTS(backends); i++) {
        if (STREQ(backends[i]->name, name))
            ops = backends[i];
    }
    if (!ops) {
        struct sg_buf known = SG_BUF_INIT;

        for (i = 0; i < SG_N_ELEMENTS(backends); i++)
            sg_buf_printf(&known, "%s%s", i ? ", " : "", backends[i]->name);
        sg_error_report(err, SG_ERR_CONFIG,
                        "unknown store backend '%s' (known: %s)", name,
                        sg_buf_str(&known));
        sg_buf_free(&known);
        return NULL;
    }

    store = calloc(1, sizeof(*store));
    if (store) {
        store->ops = ops;
        store->priv = calloc(1, ops->priv_size);
    }
    if (!store || !store->priv) {
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "out of memory opening the store");
        goto error;
    }
    if (ops->open(store->priv, cfg, err) < 0)
        goto error;
    return store;

 error:
    if (store)
        free(store->priv);
    free(store);
    return NULL;
}

void sg_store_close(struct sg_store *store)
{
    if (!store)
        return;
    store->ops->close(store->priv);
    free(store->priv);
    free(store);
}

const char *sg_store_backend(const struct sg_store *store)
{
    return store->ops->name;
}

void sg_store_get_stats(struct sg_store *store, struct sg_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    store->ops->get_stats(store->priv, out);
}

unsigned sg_store_schema_version(struct sg_store *store)
{
    return store->ops->schema_version(store->priv);
}

static int check_row(const struct sg_sandbox_row *row, struct sg_error *err)
{
    if (!row || !row->id || !row->id[0]) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "store write without a sandbox id");
        return -1;
    }
    return 0;
}

int sg_store_create_sandbox(struct sg_store *store,
                            const struct sg_sandbox_row *row,
                            const struct sg_event_row *ev, sg_store_write_cb cb,
                            void *opaque, struct sg_error *err)
{
    if (check_row(row, err) < 0)
        return -1;
    return store->ops->create_sandbox(store->priv, row, ev, cb, opaque, err);
}

int sg_store_update_sandbox(struct sg_store *store,
                            const struct sg_sandbox_row *row,
                            uint64_t expected_rv,
                            const struct sg_event_row *evs, size_t n_evs,
                            sg_store_write_cb cb, void *opaque,
                            struct sg_error *err)
{
    if (check_row(row, err) < 0)
        return -1;
    if (n_evs > SG_STORE_MAX_EVENTS || (n_evs && !evs)) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "update of sandbox '%s': %zu events (at most %d)",
                        row->id, n_evs, SG_STORE_MAX_EVENTS);
        return -1;
    }
    return store->ops->update_sandbox(store->priv, row, expected_rv, evs,
                                      n_evs, cb, opaque, err);
}

int sg_store_get_sandbox(struct sg_store *store, const char *id,
                         sg_sandbox_visit_fn visit, void *opaque,
                         struct sg_error *err)
{
    if (!id)
        return 0;
    return store->ops->get_sandbox(store->priv, id, visit, opaque, err);
}

static int visit_copy(void *opaque, const struct sg_sandbox_row *row)
{
    *(struct sg_sandbox_row **)opaque = sg_sandbox_row_copy(row);
    return 1;
}

int sg_store_get_sandbox_copy(struct sg_store *store, const char *id,
                              struct sg_sandbox_row **out,
                              struct sg_error *err)
{
    int found;

    *out = NULL;
    found = sg_store_get_sandbox(store, id, visit_copy, out, err);
    if (found == 1 && !*out) {
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "out of memory reading sandbox '%s'", id);
        return -1;
    }
    return found;
}

ssize_t sg_store_list_sandboxes(struct sg_store *store,
                                const struct sg_sandbox_filter *f,
                                const char *after_id, size_t max_rows,
                                sg_sandbox_visit_fn visit, void *opaque,
                                struct sg_error *err)
{
    static const struct sg_sandbox_filter none;

    return store->ops->list_sandboxes(store->priv, f ? f : &none, after_id,
                                      max_rows, visit, opaque, err);
}

int sg_store_count_sandboxes(struct sg_store *store,
                             const struct sg_sandbox_filter *f, uint64_t *count,
                             struct sg_error *err)
{
    static const struct sg_sandbox_filter none;

    return store->ops->count_sandboxes(store->priv, f ? f : &none, count, err);
}

ssize_t sg_store_list_events(struct sg_store *store,
                             const struct sg_event_filter *f,
                             uint64_t after_seq, size_t max_rows,
                             size_t max_scan, uint64_t *scanned_to,
                             sg_event_visit_fn visit, void *opaque,
                             struct sg_error *err)
{
    static const struct sg_event_filter none;
    uint64_t ignored;

    return store->ops->list_events(store->priv, f ? f : &none, after_seq,
                                   max_rows, max_scan,
                                   scanned_to ? scanned_to : &ignored, visit,
                                   opaque, err);
}

int sg_store_event_bounds(struct sg_store *store, uint64_t *oldest,
                          uint64_t *newest, struct sg_error *err)
{
    return store->ops->event_bounds(store->priv, oldest, newest, err);
}

void sg_store_set_commit_observer(struct sg_store *store,
                                  sg_store_commit_fn fn, void *opaque)
{
    store->ops->set_commit_observer(store->priv, fn, fn ? opaque : NULL);
}

/* strdup that maps NULL to "" (rows and events never hold NULL strings). */
/* --- credential records ------------------------------------------------ */

static int check_credential_key(const char *tenant, const char *name,
                                struct sg_error *err)
{
    if (!tenant || !tenant[0] || !name || !name[0]) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "credential write without a tenant and a name");
        return -1;
    }
    return 0;
}

int sg_store_create_credential(struct sg_store *store,
                               const struct sg_credential_row *row,
                               sg_store_credential_cb cb, void *opaque,
                               struct sg_error *err)
{
    if (check_credential_key(row ? row->tenant : NULL,
                             row ? row->name : NULL, err) < 0)
        return -1;
    if (!row->kind || !row->kind[0]) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "credential '%s' without a kind", row->name);
        return -1;
    }
    return store->ops->create_credential(store->priv, row, cb, opaque, err);
}

int sg_store_delete_credential(struct sg_store *store, const char *tenant,
                               const char *name, sg_store_credential_cb cb,
                               void *opaque, struct sg_error *err)
{
    if (check_credential_key(tenant, name, err) < 0)
        return -1;
    return store->ops->delete_credential(store->priv, tenant, name, cb,
                                         opaque, err);
}

static int visit_credential_copy(void *opaque,
                                 const struct sg_credential_row *row)
{
    *(struct sg_credential_row **)opaque = sg_credential_row_copy(row);
    return 1;
}

int sg_store_get_credential_copy(struct sg_store *store, const char *tenant,
                                 const char *name,
                                 struct sg_credential_row **out,
                                 struct sg_error *err)
{
    int found;

    *out = NULL;
    if (!tenant || !name)
        return 0;
    found = store->ops->get_credential(store->priv, tenant, name,
                                       visit_credential_copy, out, err);
    if (found == 1 && !*out) {
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "out of memory reading credential '%s'", name);
        return -1;
    }
    return found;
}

ssize_t sg_store_list_credentials(struct sg_store *store,
                                  const struct sg_credential_filter *f,
                                  const char *after_tenant,
                                  const char *after_name, size_t max_rows,
                                  sg_credential_visit_fn visit, void *opaque,
                                  struct sg_error *err)
{
    static const struct sg_credential_filter all = {0};

    return store->ops->list_credentials(
        store->priv, f ? f : &all, after_tenant ? after_tenant : "",
        after_name ? after_name : "", max_rows, visit, opaque, err);
}

static char *dup_str(const char *s, bool *failed)
{
    char *out = strdup(s ? s : "");

    if (!out)
        *failed = true;
    return out;
}

/* A copy of a packed record (NULL for none), its length in *out_len. */
static uint8_t *dup_record(const uint8_t *rec, size_t len, size_t *out_len,
                           bool *failed)
{
    uint8_t *out;

    *out_len = 0;
    if (len == 0)
        return NULL;
    out = malloc(len);
    if (out == NULL) {
        *failed = true;
        return NULL;
    }
    memcpy(out, rec, len);
    *out_len = len;
    return out;
}

struct sg_sandbox_row *sg_sandbox_row_copy(const struct sg_sandbox_row *row)
{
    struct sg_sandbox_row *out = calloc(1, sizeof(*out));
    bool failed = false;

    if (!out)
        return NULL;
    out->id = dup_str(row->id, &failed);
    out->name = dup_str(row->name, &failed);
    out->tenant = dup_str(row->tenant, &failed);
    out->project = dup_str(row->project, &failed);
    out->owner = dup_str(row->owner, &failed);
    out->request_id = dup_str(row->request_id, &failed);
    out->request_hash = dup_str(row->request_hash, &failed);
    out->namespace_name = dup_str(row->namespace_name, &failed);
    out->phase = row->phase;
    out->create_time = row->create_time;
    out->update_time = row->update_time;
    out->expire_time = row->expire_time;
    out->resource_version = row->resource_version;
    out->record = dup_record(row->record, row->record_len, &out->record_len,
                             &failed);
    if (failed) {
        sg_sandbox_row_free(out);
        return NULL;
    }
    return out;
}

void sg_sandbox_row_clear(struct sg_sandbox_row *row)
{
    if (!row)
        return;
    free(row->id);
    free(row->name);
    free(row->tenant);
    free(row->project);
    free(row->owner);
    free(row->request_id);
    free(row->request_hash);
    free(row->namespace_name);
    free(row->record);
    memset(row, 0, sizeof(*row));
}

void sg_sandbox_row_free(struct sg_sandbox_row *row)
{
    sg_sandbox_row_clear(row);
    free(row);
}

struct sg_event_row *sg_event_row_copy(const struct sg_event_row *ev)
{
    struct sg_event_row *out = calloc(1, sizeof(*out));
    bool failed = false;

    if (!out)
        return NULL;
    *out = *ev;
    out->sandbox_id = dup_str(ev->sandbox_id, &failed);
    out->sandbox_name = dup_str(ev->sandbox_name, &failed);
    out->namespace_name = dup_str(ev->namespace_name, &failed);
    out->tenant = dup_str(ev->tenant, &failed);
    out->project = dup_str(ev->project, &failed);
    out->owner = dup_str(ev->owner, &failed);
    out->request_id = dup_str(ev->request_id, &failed);
    out->reason = dup_str(ev->reason, &failed);
    out->message = dup_str(ev->message, &failed);
    if (failed) {
        sg_event_row_free(out);
        return NULL;
    }
    return out;
}

void sg_event_row_clear(struct sg_event_row *ev)
{
    if (!ev)
        return;
    free(ev->sandbox_id);
    free(ev->sandbox_name);
    free(ev->namespace_name);
    free(ev->tenant);
    free(ev->project);
    free(ev->owner);
    free(ev->request_id);
    free(ev->reason);
    free(ev->message);
    memset(ev, 0, sizeof(*ev));
}

void sg_event_row_free(struct sg_event_row *ev)
{
    sg_event_row_clear(ev);
    free(ev);
}

const char *sg_phase_name(enum sg_phase phase)
{
    if ((unsigned)phase < SG_N_ELEMENTS(phase_names) && phase_names[phase])
        return phase_names[phase];
    return "unknown";
}

struct sg_credential_row *sg_credential_row_copy(
    const struct sg_credential_row *row)
{
    struct sg_credential_row *out = calloc(1, sizeof(*out));
    bool failed = false;

    if (!out)
        return NULL;
    out->tenant = dup_str(row->tenant, &failed);
    out->name = dup_str(row->name, &failed);
    out->kind = dup_str(row->kind, &failed);
    out->owner = dup_str(row->owner, &failed);
    out->create_time = row->create_time;
    out->update_time = row->update_time;
    out->record = dup_record(row->record, row->record_len, &out->record_len,
                             &failed);
    if (failed) {
        sg_credential_row_free(out);
        return NULL;
    }
    return out;
}

void sg_credential_row_free(struct sg_credential_row *row)
{
    if (!row)
        return;
    free(row->tenant);
    free(row->name);
    free(row->kind);
    free(row->owner);
    free(row->record);
    free(row);
}
