/*
 * sandbox_record.c: conversions between the Sandbox message, store rows,
 * event rows and the driver's view.
 */
#include "internal.h"

#include "sandbox_record.h"

#include "canon.h"

#include <stdlib.h>
#include <time.h>

int64_t sg_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sg_ms_to_timestamp(int64_t ms, Google__Protobuf__Timestamp *ts)
{
    google__protobuf__timestamp__init(ts);
    ts->seconds = ms / 1000;
    ts->nanos = (int32_t)(ms % 1000) * 1000000;
}

static int64_t ts_to_ms(const Google__Protobuf__Timestamp *ts)
{
    if (!ts)
        return 0;
    return ts->seconds * 1000 + ts->nanos / 1000000;
}

Sandgate__V1__Sandbox *sg_record_unpack(const struct sg_sandbox_row *row,
                                        struct sg_error *err)
{
    Sandgate__V1__Sandbox *sb =
        sandgate__v1__sandbox__unpack(NULL, row->record_len, row->record);

    if (!sb || !sb->status) {
        sg_error_report(err, SG_ERR_INTERNAL,
                        "stored record of sandbox '%s' cannot be decoded",
                        row->id);
        if (sb)
            sandgate__v1__sandbox__free_unpacked(sb, NULL);
        return NULL;
    }
    /* The columns are authoritative; the record was packed before the
       store assigned the resource version. */
    sb->resource_version = row->resource_version;
    sb->status->phase = (Sandgate__V1__SandboxPhase)row->phase;
    if (sb->update_time)
        sg_ms_to_timestamp(row->update_time, sb->update_time);
    return sb;
}

static void add_varint(struct sg_buf *out, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;

    do {
        b[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            b[n] |= 0x80;
        n++;
    } while (v);
    sg_buf_add(out, b, n);
}

int sg_record_wire(const struct sg_sandbox_row *row, struct sg_buf *out)
{
    /* Sandbox.resource_version is field 11, wire type 0 (varint). */
    const uint64_t rv_key = 11 << 3 | 0;

    sg_buf_add(out, row->record, row->record_len);
    add_varint(out, rv_key);
    add_varint(out, row->resource_version);
    return sg_buf_error(out) ? -1 : 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

int sg_record_to_row(const Sandgate__V1__Sandbox *sb, const char *request_hash,
                     struct sg_sandbox_row *row, struct sg_error *err)
{
    size_t len = sandgate__v1__sandbox__get_packed_size(sb);
    const Sandgate__V1__SandboxStatus *st = sb->status;

    memset(row, 0, sizeof(*row));
    row->record = malloc(len ? len : 1);
    row->id = dup_or_empty(sb->id);
    row->name = dup_or_empty(sb->name);
    row->tenant = dup_or_empty(sb->tenant);
    row->project = dup_or_empty(sb->project);
    row->owner = dup_or_empty(sb->owner);
    row->request_id = dup_or_empty(sb->request_id);
    row->request_hash = dup_or_empty(request_hash);
    row->namespace_name = dup_or_empty(st ? st->namespace_ : "");
    if (!row->record || !row->id || !row->name || !row->tenant ||
        !row->project || !row->owner || !row->request_id ||
        !row->request_hash || !row->namespace_name) {
        sg_sandbox_row_clear(row);
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    row->record_len = sandgate__v1__sandbox__pack(sb, row->record);
    row->phase = st ? (enum sg_phase)st->phase : SG_PHASE_ACCEPTED;
    row->create_time = ts_to_ms(sb->create_time);
    row->update_time = ts_to_ms(sb->update_time);
    row->expire_time = st ? ts_to_ms(st->expire_time) : 0;
    row->resource_version = sb->resource_version;
    return 0;
}

/* The Ready condition that mirrors the phase. */
static void ready_condition(enum sg_phase phase, const char *reason,
                            const char *message,
                            Google__Protobuf__Timestamp *when,
                            Sandgate__V1__Condition *c)
{
    sandgate__v1__condition__init(c);
    c->type = "Ready";
    c->status = phase == SG_PHASE_READY ? SANDGATE__V1__CONDITION_STATUS__CONDITION_STATUS_TRUE
                : phase == SG_PHASE_ACCEPTED ||
                        phase == SG_PHASE_PROVISIONING
                    ? SANDGATE__V1__CONDITION_STATUS__CONDITION_STATUS_UNKNOWN
                    : SANDGATE__V1__CONDITION_STATUS__CONDITION_STATUS_FALSE;
    c->reason = (char *)reason;
    c->message = (char *)message;
    c->last_transition_time = when;
}

static const Sandgate__V1__Condition *
find_condition(const Sandgate__V1__SandboxStatus *st, const char *type)
{
    for (size_t i = 0; i < st->n_conditions; i++) {
        if (st->conditions[i]->type && STREQ(st->conditions[i]->type, type))
            return st->conditions[i];
    }
    return NULL;
}

/*
 * Stack storage for the parts of a Sandbox that a change replaces. The
 * unpacked message borrows them while it is packed, then gets its own
 * pointers back (swap_in / swap_out), so free_unpacked frees only what
 * protobuf-c allocated.
 */
struct replaced {
    Sandgate__V1__SandboxStatus status;
    Sandgate__V1__Condition cond;
    Sandgate__V1__Condition *conds[1];
    Google__Protobuf__Timestamp now, ready_time, delete_time;
    /* the message's own pointers while ours are in */
    Sandgate__V1__SandboxStatus *old_status;
    Google__Protobuf__Timestamp *old_update, *old_delete;
};

static void swap_in(Sandgate__V1__Sandbox *sb, struct replaced *r,
                    const struct sg_record_change *chg, int64_t now)
{
    const Sandgate__V1__SandboxStatus *old = sb->status;

    r->status = *old;
    r->status.phase = (Sandgate__V1__SandboxPhase)chg->phase;
    if (chg->message)
        r->status.message = (char *)chg->message;
    if (chg->backend_object)
        r->status.backend_object = (char *)chg->backend_object;
    sg_ms_to_timestamp(now, &r->now);
    if (chg->set_ready_time) {
        r->ready_time = r->now;
        r->status.ready_time = &r->ready_time;
    }
    if (chg->pending_reason && chg->pending_message && *chg->pending_message)
        r->status.message = (char *)chg->pending_message;
    if (chg->phase != (enum sg_phase)old->phase || chg->pending_reason) {
        const Sandgate__V1__Condition *prev = find_condition(old, "Ready");

        ready_condition(chg->phase,
                        chg->pending_reason ? chg->pending_reason
                        : chg->reason       ? chg->reason
                                            : "",
                        r->status.message, &r->now, &r->cond);
        /* Only the reason changed: the status did not transition. */
        if (chg->phase == (enum sg_phase)old->phase && prev &&
            prev->status == r->cond.status && prev->last_transition_time)
            r->cond.last_transition_time = prev->last_transition_time;
        r->conds[0] = &r->cond;
        r->status.conditions = r->conds;
        r->status.n_conditions = 1;
    }
    r->old_status = sb->status;
    r->old_update = sb->update_time;
    r->old_delete = sb->delete_time;
    sb->status = &r->status;
    sb->update_time = &r->now;
    if (chg->set_delete_time) {
        r->delete_time = r->now;
        sb->delete_time = &r->delete_time;
    }
}

static void swap_out(Sandgate__V1__Sandbox *sb, struct replaced *r)
{
    sb->status = r->old_status;
    sb->update_time = r->old_update;
    sb->delete_time = r->old_delete;
}

/* The standard text of an event that is not the last of its change. */
static void event_text(enum sg_event_type type, const char **reason,
                       const char **message)
{
    switch (type) {
    case SG_EVENT_ALLOCATION_STARTED:
        *reason = "AllocationStarted";
        *message = "creating the backend object";
        break;
    case SG_EVENT_CREDENTIALS_RESOLVED:
        *reason = "CredentialsResolved";
        *message = "credentials resolved and handed to the driver";
        break;
    case SG_EVENT_RESOURCE_CREATED:
        *reason = "Created";
        *message = "backend object created";
        break;
    default:
        *reason = "";
        *message = "";
        break;
    }
}

/* The events of chg for the new row out. Returns 0 or -1 (no memory). */
static int change_events(const struct sg_sandbox_row *out,
                         const struct sg_record_change *chg,
                         struct sg_event_row *evs, size_t *n_evs)
{
    size_t n = 0;

    while (n < SG_RECORD_MAX_EVENTS && chg->events[n])
        n++;
    for (size_t i = 0; i < n; i++) {
        const char *reason = chg->reason ? chg->reason : "";
        const char *message = chg->message ? chg->message : "";

        if (i + 1 < n)
            event_text(chg->events[i], &reason, &message);
        if (sg_event_for_row(out, chg->events[i], reason, message,
                             &evs[i]) < 0) {
            while (i-- > 0)
                sg_event_row_clear(&evs[i]);
            return -1;
        }
    }
    *n_evs = n;
    return 0;
}

int sg_record_apply(const struct sg_sandbox_row *old,
                    const struct sg_record_change *chg,
                    struct sg_sandbox_row *out, struct sg_event_row *evs,
                    size_t *n_evs, struct sg_error *err)
{
    Sandgate__V1__Sandbox *sb = sg_record_unpack(old, err);
    struct replaced r;
    int ret;

    if (!sb)
        return -1;
    swap_in(sb, &r, chg, sg_now_ms());
    ret = sg_record_to_row(sb, old->request_hash, out, err);
    swap_out(sb, &r);
    sandgate__v1__sandbox__free_unpacked(sb, NULL);
    if (ret < 0)
        return -1;
    out->resource_version = old->resource_version;
    if (change_events(out, chg, evs, n_evs) < 0) {
        sg_sandbox_row_clear(out);
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    return 0;
}

int sg_event_for_row(const struct sg_sandbox_row *row,
                     enum sg_event_type type, const char *reason,
                     const char *message, struct sg_event_row *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    ev->phase = row->phase;
    ev->time = row->update_time;
    ev->sandbox_id = strdup(row->id);
    ev->sandbox_name = strdup(row->name);
    ev->namespace_name = strdup(row->namespace_name);
    ev->tenant = strdup(row->tenant);
    ev->project = strdup(row->project);
    ev->owner = strdup(row->owner);
    ev->request_id = strdup(row->request_id);
    ev->reason = dup_or_empty(reason);
    ev->message = dup_or_empty(message);
    if (!ev->sandbox_id || !ev->sandbox_name || !ev->namespace_name ||
        !ev->tenant || !ev->project || !ev->owner || !ev->request_id ||
        !ev->reason || !ev->message) {
        sg_event_row_clear(ev);
        return -1;
    }
    return 0;
}

static int cmp_env(const void *a, const void *b)
{
    const Sandgate__V1__SandboxSpec__EnvEntry *const *x = a;
    const Sandgate__V1__SandboxSpec__EnvEntry *const *y = b;

    return strcmp((*x)->key, (*y)->key);
}

int sg_driver_view_init(struct sg_driver_view *v,
                        const Sandgate__V1__Sandbox *sb, const char *driver,
                        struct sg_error *err)
{
    const Sandgate__V1__SandboxSpec *spec = sb->spec;
    size_t n_cmd = spec ? spec->n_command : 0;
    size_t n_env = spec ? spec->n_env : 0;
    size_t n_creds = spec ? spec->n_credentials : 0;
    Sandgate__V1__SandboxSpec__EnvEntry **env = NULL;

    memset(v, 0, sizeof(*v));
    v->config_json = sg_driver_block_json(spec ? spec->driver_config : NULL,
                                          driver, err);
    if (!v->config_json)
        return -1;
    v->command = calloc(n_cmd + 1, sizeof(*v->command));
    v->env_names = calloc(n_env + 1, sizeof(*v->env_names));
    v->env_values = calloc(n_env + 1, sizeof(*v->env_values));
    env = calloc(n_env + 1, sizeof(*env));
    v->credentials = calloc(n_creds + 1, sizeof(*v->credentials));
    if (!v->command || !v->env_names || !v->env_values || !env ||
        !v->credentials) {
        free(env);
        sg_driver_view_clear(v);
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n_cmd; i++)
        v->command[i] = spec->command[i];
    if (n_env)
        memcpy(env, spec->env, n_env * sizeof(*env));
    qsort(env, n_env, sizeof(*env), cmp_env);
    for (size_t i = 0; i < n_env; i++) {
        v->env_names[i] = env[i]->key;
        v->env_values[i] = env[i]->value;
    }
    free(env);
    for (size_t i = 0; i < n_creds; i++) {
        const Sandgate__V1__CredentialBinding *c = spec->credentials[i];
        bool is_env =
            c->delivery_case == SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_ENV;

        v->credentials[i].name = c->credential;
        v->credentials[i].delivery =
            is_env ? SG_DRIVER_DELIVER_ENV : SG_DRIVER_DELIVER_FILE;
        v->credentials[i].target = is_env ? c->env : c->file;
    }

    v->sb.id = sb->id && *sb->id ? sb->id : NULL;
    v->sb.name = sb->name;
    v->sb.tenant = sb->tenant;
    v->sb.project = sb->project;
    v->sb.owner = sb->owner;
    v->sb.image = spec ? spec->image : "";
    v->sb.command = v->command;
    v->sb.n_command = n_cmd;
    v->sb.env_names = v->env_names;
    v->sb.env_values = v->env_values;
    v->sb.n_env = n_env;
    v->sb.working_dir = spec ? spec->working_dir : "";
    v->sb.config_json = v->config_json;
    v->sb.ttl_seconds = spec ? spec->ttl_seconds : 0;
    v->sb.request_id = sb->request_id;
    v->sb.policy_hash = sb->status ? sb->status->policy_hash : "";
    v->sb.access_profile = sb->access_profile;
    v->sb.runtime_profile = sb->runtime_profile;
    v->sb.credentials = v->credentials;
    v->sb.n_credentials = n_creds;
    return 0;
}

void sg_driver_view_clear(struct sg_driver_view *v)
{
    if (!v)
        return;
    free(v->config_json);
    free(v->command);
    free(v->env_names);
    free(v->env_values);
    free(v->credentials);
    memset(v, 0, sizeof(*v));
}
