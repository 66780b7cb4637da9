/*
 * cred_bind.c: credential bindings at create and their resolution for
 * delivery (cred_bind.h).
 */
#include "internal.h"

#include "cred_bind.h"

#include "canon.h"
#include "log.h"
#include "sandbox_record.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

SG_LOG_INIT("server.delivery");

#define DESCRIBE_MAX 512

/* ---- at create ------------------------------------------------------- */

/* The string field key of a Struct, or NULL. */
static const char *struct_string(const Google__Protobuf__Struct *s,
                                 const char *key)
{
    for (size_t i = 0; s && i < s->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *f = s->fields[i];

        if (f->key && STREQ(f->key, key) && f->value &&
            f->value->kind_case ==
                GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
            return f->value->string_value;
    }
    return NULL;
}

void sg_cred_source_facts(const Sandgate__V1__Credential *c,
                          struct sg_authz_credential *out)
{
    const Sandgate__V1__CredentialSource *src = c->source;

    memset(out, 0, sizeof(*out));
    out->name = c->name;
    out->kind = src && src->kind ? src->kind : "";
    /* Only a Secret's coordinates are scoped beyond the kind. */
    if (src && STREQ(out->kind, "kubernetes-secret")) {
        out->secret_namespace = struct_string(src->ref, "namespace");
        out->secret_name = struct_string(src->ref, "name");
        out->secret_key = struct_string(src->ref, "key");
    }
}

/* Read one record: 1 with *out unpacked, 0 when there is none, -1 with
   err set. */
static int read_record(struct sg_store *store, const char *tenant,
                       const char *name, Sandgate__V1__Credential **out,
                       int64_t *create_time, struct sg_error *err)
{
    struct sg_credential_row *row = NULL;
    int found = sg_store_get_credential_copy(store, tenant, name, &row, err);

    *out = NULL;
    if (found != 1)
        return found;
    *out = sandgate__v1__credential__unpack(NULL, row->record_len,
                                            row->record);
    *create_time = row->create_time;
    sg_credential_row_free(row);
    if (!*out) {
        sg_error_report(err, SG_ERR_INTERNAL,
                        "credential '%s': the stored record does not decode",
                        name);
        return -1;
    }
    return 1;
}

int sg_cred_bindings_read(struct sg_store *store, const char *tenant,
                          const Sandgate__V1__SandboxSpec *spec,
                          struct sg_cred_bindings *out, struct sg_error *err)
{
    size_t n = spec ? spec->n_credentials : 0;

    memset(out, 0, sizeof(*out));
    if (n == 0)
        return 0;
    out->authz = calloc(n, sizeof(*out->authz));
    out->records = calloc(n, sizeof(*out->records));
    out->create_times = calloc(n, sizeof(*out->create_times));
    if (!out->authz || !out->records || !out->create_times) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        const char *name = spec->credentials[i]->credential;
        int found = read_record(store, tenant, name, &out->records[i],
                                &out->create_times[i], err);

        if (found < 0)
            return -1;
        if (found == 1)
            sg_cred_source_facts(out->records[i], &out->authz[i]);
        else
            out->authz[i].name = name; /* kind NULL: missing */
    }
    return 0;
}

int sg_cred_bindings_require(const struct sg_cred_bindings *b,
                             const char *tenant, struct sg_error *err)
{
    for (size_t i = 0; i < b->n; i++) {
        if (!b->records[i]) {
            sg_error_report(err, SG_ERR_FAILED_PRECONDITION,
                            "sandbox.spec.credentials[%zu].credential: "
                            "credential '%s' does not exist in tenant '%s'",
                            i, b->authz[i].name, tenant);
            return -1;
        }
    }
    return 0;
}

void sg_cred_bindings_clear(struct sg_cred_bindings *b)
{
    for (size_t i = 0; b->records && i < b->n; i++) {
        if (b->records[i])
            sandgate__v1__credential__free_unpacked(b->records[i], NULL);
    }
    free(b->records);
    free(b->authz);
    free(b->create_times);
    memset(b, 0, sizeof(*b));
}

/* ---- delivery -------------------------------------------------------- */

/* One sandbox's resolution: copies of what the worker needs. */
struct resolve_job {
    const struct sg_cred_delivery *d;
    sg_cred_resolved_fn fn;
    void *opaque;
    char *id, *tenant, *owner, *namespace_name, *request_id;
    size_t n;
    char **names;
    int64_t *bound_times; /* status.credentials[i].record_create_time */
    struct sg_cred_resolved *result;
};

static void job_free(struct resolve_job *job)
{
    if (!job)
        return;
    for (size_t i = 0; job->names && i < job->n; i++)
        free(job->names[i]);
    free(job->names);
    free(job->bound_times);
    free(job->id);
    free(job->tenant);
    free(job->owner);
    free(job->namespace_name);
    free(job->request_id);
    sg_cred_resolved_free(job->result);
    free(job);
}

void sg_cred_resolved_free(struct sg_cred_resolved *r)
{
    if (!r)
        return;
    for (size_t i = 0; r->secrets && i < r->n; i++)
        sg_secret_free(r->secrets[i]);
    free(r->secrets);
    free(r);
}

static void fail(struct sg_cred_resolved *r, const char *reason,
                 const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(struct sg_cred_resolved *r, const char *reason,
                 const char *fmt, ...)
{
    va_list ap;

    r->ok = false;
    snprintf(r->reason, sizeof(r->reason), "%s", reason);
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
}

/* One audit line per resolution: who the sandbox is for, which record,
   the reference described, the outcome; never material. */
static void audit(const struct resolve_job *job, const char *name,
                  const char *desc, const struct sg_error *err)
{
    char reason[SG_ERROR_MESSAGE_MAX + DESCRIBE_MAX + 64];
    bool failed = err && sg_error_is_set(err);
    struct sg_audit_record r = {
        .subject = job->owner,
        .rpc = SG_CRED_DELIVERY_AUDIT_RPC,
        .target = job->id,
        .tenant = job->tenant,
        .namespace_name = job->namespace_name,
        .allowed = true, /* authorized at create; the outcome is code */
        .code = failed ? "FAILED_PRECONDITION" : "OK",
        .reason = reason,
        .request_id = job->request_id,
    };

    if (!job->d->audit)
        return;
    if (failed)
        snprintf(reason, sizeof(reason),
                 "credential '%s': resolving %s failed: %s", name, desc,
                 err->message);
    else
        snprintf(reason, sizeof(reason), "credential '%s': resolved %s",
                 name, desc);
    sg_audit_write(job->d->audit, &r);
}

/* Resolve binding i into r->secrets[i]; false with r failed. */
static bool resolve_one(struct resolve_job *job, size_t i,
                        struct sg_cred_resolved *r)
{
    const char *name = job->names[i];
    struct sg_error err = SG_ERROR_INIT;
    Sandgate__V1__Credential *c = NULL;
    char desc[DESCRIBE_MAX];
    char *ref_json = NULL;
    int64_t created = 0;
    int found;
    bool ok = false;

    found = read_record(job->d->store, job->tenant, name, &c, &created, &err);
    if (found < 0) {
        fail(r, "CredentialUnresolvable", "credential '%s': %s", name,
             err.message);
        r->retry = err.code != SG_ERR_INTERNAL;
        goto done;
    }
    if (found == 0) {
        fail(r, "CredentialNotFound",
             "credential '%s' no longer exists in tenant '%s'", name,
             job->tenant);
        goto done;
    }
    if (created != job->bound_times[i]) {
        fail(r, "CredentialChanged",
             "credential '%s' was deleted and made again since the sandbox "
             "was created; it is not the record the create was authorized "
             "for", name);
        goto done;
    }
    ref_json = sg_struct_to_json(c->source ? c->source->ref : NULL, &err);
    if (!ref_json) {
        fail(r, "CredentialUnresolvable", "credential '%s': %s", name,
             err.message);
        goto done;
    }
    sg_credsrc_describe(job->d->registry, c->source->kind, ref_json, desc,
                        sizeof(desc));
    if (sg_credsrc_resolve(job->d->registry, c->source->kind, ref_json,
                           &r->secrets[i], &err) == 0 &&
        r->secrets[i]->len == 0)
        sg_error_report(&err, SG_ERR_FAILED_PRECONDITION,
                        "%s resolved to empty material", desc);
    audit(job, name, desc, &err);
    if (sg_error_is_set(&err)) {
        fail(r, "CredentialUnresolvable", "credential '%s' (%s): %s", name,
             desc, err.message);
        goto done;
    }
    ok = true;
 done:
    free(ref_json);
    if (c)
        sandgate__v1__credential__free_unpacked(c, NULL);
    sg_error_reset(&err);
    return ok;
}

static void deliver_on_loop(void *arg)
{
    struct resolve_job *job = arg;
    struct sg_cred_resolved *r = job->result;

    job->result = NULL;
    job->fn(job->opaque, r);
    job_free(job);
}

/* Worker thread. */
static void run_resolve(void *arg)
{
    struct resolve_job *job = arg;
    struct sg_cred_resolved *r = job->result;

    r->ok = true;
    for (size_t i = 0; i < job->n && r->ok; i++) {
        if (!resolve_one(job, i, r))
            break;
    }
    if (!r->ok) {
        /* Nothing is delivered: wipe what did resolve. */
        for (size_t i = 0; i < r->n; i++) {
            sg_secret_free(r->secrets[i]);
            r->secrets[i] = NULL;
        }
        SG_WARN("sandbox %s: credentials: %s", job->id, r->message);
    }
    if (sg_loop_post(job->d->queue, deliver_on_loop, job) < 0)
        job_free(job); /* no memory for the hand-over: wiped here */
}

/* status.credentials[i].record_create_time in ms; -1 when unset. */
static int64_t bound_time(const Sandgate__V1__SandboxStatus *st, size_t i)
{
    const Sandgate__V1__CredentialBindingStatus *b;

    if (!st || i >= st->n_credentials)
        return -1; /* matches no record: a row from before binding */
    b = st->credentials[i];
    if (!b->record_create_time)
        return -1;
    return b->record_create_time->seconds * 1000 +
           b->record_create_time->nanos / 1000000;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

int sg_cred_resolve(const struct sg_cred_delivery *d,
                    const Sandgate__V1__Sandbox *sb, sg_cred_resolved_fn fn,
                    void *opaque, struct sg_error *err)
{
    const Sandgate__V1__SandboxSpec *spec = sb->spec;
    size_t n = spec ? spec->n_credentials : 0;
    struct resolve_job *job = calloc(1, sizeof(*job));
    bool nomem;

    if (!job)
        goto nomem;
    *job = (struct resolve_job){.d = d, .fn = fn, .opaque = opaque, .n = n};
    job->id = dup_or_empty(sb->id);
    job->tenant = dup_or_empty(sb->tenant);
    job->owner = dup_or_empty(sb->owner);
    job->namespace_name = dup_or_empty(sb->status ? sb->status->namespace_
                                                  : NULL);
    job->request_id = dup_or_empty(sb->request_id);
    job->names = calloc(n + 1, sizeof(*job->names));
    job->bound_times = calloc(n + 1, sizeof(*job->bound_times));
    job->result = calloc(1, sizeof(*job->result));
    nomem = !job->id || !job->tenant || !job->owner ||
            !job->namespace_name || !job->request_id || !job->names ||
            !job->bound_times || !job->result;
    if (!nomem) {
        job->result->secrets = calloc(n + 1, sizeof(*job->result->secrets));
        job->result->n = n;
        nomem = !job->result->secrets;
    }
    for (size_t i = 0; !nomem && i < n; i++) {
        job->names[i] = strdup(spec->credentials[i]->credential);
        job->bound_times[i] = bound_time(sb->status, i);
        nomem = !job->names[i];
    }
    if (nomem)
        goto nomem;
    if (sg_cred_workers_run(d->workers, run_resolve, job, err) < 0) {
        job_free(job);
        return -1;
    }
    return 0;
 nomem:
    job_free(job);
    sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
    return -1;
}
