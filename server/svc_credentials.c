/*
 * svc_credentials.c: sandgate.v1.CredentialService.
 *
 * Every handler: validate the request, authorize it (authz_call.h), then
 * read or write the store. A record is a reference to material, never
 * material; only CheckCredential resolves one, on the credential workers
 * (resolving may block), and the material is wiped as soon as its length
 * is known. Nothing here logs, audits or answers material: messages come
 * from the sources, which promise the same.
 */
#include "internal.h"

#include "svc_credentials.h"

#include "authz_call.h"
#include "canon.h"
#include "cred_bind.h"
#include "gateway.h"
#include "log.h"
#include "page_token.h"
#include "sandbox_record.h"
#include "selector.h"
#include "validate.h"

#include "sandgate_v1_credential.pb-c.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

SG_LOG_INIT("server.credentials");

#define LIST_DEFAULT_PAGE 50
#define LIST_MAX_PAGE 1000
/* Rows a filtered listing may skip per page before it returns what it
   has. */
#define LIST_SCAN_BUDGET 10000
#define DESCRIPTION_MAX 1024
#define LABELS_MAX 64
#define KIND_MAX 63
/* The reference as JSON: small by nature (paths, names). */
#define REF_JSON_MAX 4096
#define DESCRIBE_MAX 512
/* Two digits of tenant length, the tenant, the name: both are DNS-1123
   labels (at most 63), so a key fits a page token's 128 characters. */
#define KEY_TOKEN_MAX (2 + 63 + 63)

static const char not_found[] = "credential not found";

/* ---- shared ---------------------------------------------------------- */

/* The gateway, or NULL after failing the call. */
static struct sg_gateway *gateway(struct sg_call *call)
{
    struct sg_gateway *gw = sg_call_app_data(call);

    if (!gw || !gw->credentials) {
        sg_call_finish(call, GRPC_STATUS_UNIMPLEMENTED,
                       "this server has no credential service");
        return NULL;
    }
    return gw;
}

/* The facts authorization reads from a stored row (credentials have no
   project or namespace). */
static struct sg_authz_object row_object(const struct sg_credential_row *row)
{
    struct sg_authz_object obj = {
        .tenant = row->tenant, .project = "", .namespace_name = "",
        .owner = row->owner};

    return obj;
}

static Sandgate__V1__Credential *
unpack_row(const struct sg_credential_row *row, struct sg_error *err)
{
    Sandgate__V1__Credential *c = sandgate__v1__credential__unpack(
        NULL, row->record_len, row->record);

    if (!c)
        sg_error_report(err, SG_ERR_INTERNAL,
                        "credential '%s': the stored record does not decode",
                        row->name);
    return c;
}

/* Authorize a source for rule: the kubernetes-secret coordinates come
   from the reference itself. */
static int check_source(struct sg_call *call, const struct sg_authz_rule *rule,
                        const char *tenant,
                        const Sandgate__V1__CredentialSource *src,
                        struct sg_error *err)
{
    Sandgate__V1__Credential c = SANDGATE__V1__CREDENTIAL__INIT;
    struct sg_authz_credential f;

    c.source = (Sandgate__V1__CredentialSource *)src;
    sg_cred_source_facts(&c, &f);
    return sg_authz_check_credential_source(call, rule, tenant, f.kind,
                                            f.secret_namespace,
                                            f.secret_name, f.secret_key, err);
}

/* Identity fields of Get, Delete and Check: required; a value that
   cannot name a record is simply not found. */
static int check_key(const char *name, const char *tenant,
                     struct sg_error *err)
{
    if (!*name)
        sg_error_add_violation(err, "name", "required");
    if (!*tenant)
        sg_error_add_violation(err, "tenant", "required");
    if (sg_error_is_set(err))
        return -1;
    if (!sg_is_dns1123_label(name) || !sg_is_dns1123_label(tenant)) {
        sg_error_report(err, SG_ERR_NOT_FOUND, "%s", not_found);
        return -1;
    }
    return 0;
}

/* Read (tenant, name) and check the caller may act on it with rule:
   1 with *out set; 0 with err set for a bad key or a missing record; -1
   with err set when the check refused (and audited) it, NOT_FOUND for
   one the caller may not see, exactly as for a missing one, or when the
   store failed. */
static int read_checked(struct sg_call *call, struct sg_gateway *gw,
                        const struct sg_authz_rule *rule, const char *name,
                        const char *tenant, struct sg_credential_row **out,
                        struct sg_error *err)
{
    struct sg_authz_object obj;
    int found;

    *out = NULL;
    if (check_key(name, tenant, err) < 0)
        return 0;
    found = sg_store_get_credential_copy(gw->store, tenant, name, out, err);
    if (found == 0)
        sg_error_report(err, SG_ERR_NOT_FOUND, "%s", not_found);
    if (found != 1)
        return found;
    obj = row_object(*out);
    if (sg_authz_check_object(call, rule, &obj, name, err) < 0) {
        sg_credential_row_free(*out);
        *out = NULL;
        return -1;
    }
    return 1;
}

/* ---- CreateCredential ------------------------------------------------ */

static void check_text(const char *field, const char *s, size_t max,
                       struct sg_error *err)
{
    size_t len = strlen(s);

    if (len > max) {
        sg_error_add_violation(err, field, "must be at most %zu bytes",
                               max);
        return;
    }
    if (!sg_is_utf8(s, len)) {
        sg_error_add_violation(err, field, "must be valid UTF-8");
        return;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            sg_error_add_violation(err, field,
                                   "must not contain control characters");
            return;
        }
    }
}

/* A required DNS-1123 label. */
static void check_label(const char *field, const char *value,
                        struct sg_error *err)
{
    const char *why = *value ? sg_dns1123_label_check(value) : NULL;

    if (!*value)
        sg_error_add_violation(err, field, "required");
    else if (why)
        sg_error_add_violation(err, field, "%s", why);
}

/*
 * The request's shape, with one violation per field at fault. *ref_json
 * (the caller's to free) is the reference as JSON once it converts.
 */
static int validate_create(const Sandgate__V1__CreateCredentialRequest *req,
                           char **ref_json, struct sg_error *err)
{
    const Sandgate__V1__Credential *c = req->credential;
    const Sandgate__V1__CredentialSource *src;
    struct sg_error conv = SG_ERROR_INIT;

    *ref_json = NULL;
    if (!c) {
        sg_error_add_violation(err, "credential", "required");
        return -1;
    }
    check_label("credential.name", c->name, err);
    check_label("credential.tenant", c->tenant, err);
    check_text("credential.description", c->description, DESCRIPTION_MAX,
               err);
    if (c->n_labels > LABELS_MAX)
        sg_error_add_violation(err, "credential.labels",
                               "at most %d labels", LABELS_MAX);
    for (size_t i = 0; i < c->n_labels && i < LABELS_MAX; i++) {
        const char *k = c->labels[i]->key, *v = c->labels[i]->value;
        const char *why = sg_label_key_check(k);
        char field[160], quoted[128];

        sg_validate_quote(k, quoted, sizeof(quoted));
        snprintf(field, sizeof(field), "credential.labels[\"%s\"]", quoted);
        if (why)
            sg_error_add_violation(err, field, "invalid key: %s", why);
        why = sg_label_value_check(v);
        if (why)
            sg_error_add_violation(err, field, "invalid value: %s", why);
    }
    src = c->source;
    if (!src) {
        sg_error_add_violation(err, "credential.source", "required");
        return -1;
    }
    if (!*src->kind)
        sg_error_add_violation(err, "credential.source.kind", "required");
    else
        check_text("credential.source.kind", src->kind, KIND_MAX, err);
    if (!src->ref) {
        sg_error_add_violation(err, "credential.source.ref",
                               "required (an object)");
    } else {
        *ref_json = sg_struct_to_json(src->ref, &conv);
        if (!*ref_json)
            sg_error_add_violation(err, "credential.source.ref", "%s",
                                   conv.message);
        else if (strlen(*ref_json) > REF_JSON_MAX)
            sg_error_add_violation(err, "credential.source.ref",
                                   "must be at most %d bytes as JSON",
                                   REF_JSON_MAX);
    }
    sg_error_reset(&conv);
    return sg_error_is_set(err) ? -1 : 0;
}

/* The registry's "field: why" (field "source.kind" or "ref.x") as a
   violation on the request's field. */
static void source_violation(const struct sg_error *verr,
                             struct sg_error *err)
{
    const char *msg = verr->message;
    const char *sep = strstr(msg, ": ");
    char field[160];

    if (!sep || sep - msg > 100) {
        sg_error_add_violation(err, "credential.source.ref", "%s", msg);
        return;
    }
    snprintf(field, sizeof(field), "credential.%s%.*s",
             strncmp(msg, "source.", 7) == 0 ? "" : "source.",
             (int)(sep - msg), msg);
    sg_error_add_violation(err, field, "%s", sep + 2);
}

/* The record as stored: the caller's fields, the owner and times. */
static int build_record(struct sg_call *call,
                        const Sandgate__V1__Credential *in,
                        struct sg_credential_row *row, struct sg_error *err)
{
    Sandgate__V1__Credential c = *in; /* shallow: borrows fields */
    Google__Protobuf__Timestamp now_ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    int64_t now = sg_now_ms();
    size_t len;

    sg_ms_to_timestamp(now, &now_ts);
    c.owner = (char *)sg_authz_subject(call);
    c.create_time = &now_ts;
    c.update_time = &now_ts;
    len = sandgate__v1__credential__get_packed_size(&c);
    memset(row, 0, sizeof(*row));
    row->record = malloc(len ? len : 1);
    if (!row->record) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    row->record_len = sandgate__v1__credential__pack(&c, row->record);
    row->tenant = c.tenant;
    row->name = c.name;
    row->kind = c.source->kind;
    row->owner = c.owner;
    row->create_time = now;
    row->update_time = now;
    return 0;
}

/* The write's call and key (for the audit line of a failed write). */
struct create_ctx {
    struct sg_call *call;
    char *name;
    char *tenant;
};

static void create_ctx_free(struct create_ctx *cc)
{
    if (!cc)
        return;
    free(cc->name);
    free(cc->tenant);
    free(cc);
}

static void on_created(void *opaque,
                       const struct sg_store_credential_result *res)
{
    struct create_ctx *cc = opaque;
    struct sg_call *call = cc->call;
    struct sg_authz_audit_facts facts = {.target = cc->name,
                                         .tenant = cc->tenant};

    sg_authz_audit_outcome(call, &sg_authz_rule_create_credential, &facts,
                           res->err);
    if (res->err) {
        if (res->err->code != SG_ERR_ALREADY_EXISTS)
            SG_ERROR("create credential failed: %s", res->err->message);
        sg_call_fail(call, res->err);
    } else {
        sg_call_reply_bytes(call, res->row->record, res->row->record_len);
    }
    sg_call_unref(call);
    create_ctx_free(cc);
}

void sg_svc_create_credential(struct sg_call *call,
                              const ProtobufCMessage *msg)
{
    const Sandgate__V1__CreateCredentialRequest *req = (const void *)msg;
    struct sg_gateway *gw = gateway(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_error verr = SG_ERROR_INIT;
    const Sandgate__V1__Credential *c = req->credential;
    struct sg_credential_row row;
    struct create_ctx *cc = NULL;
    char *ref_json = NULL;

    memset(&row, 0, sizeof(row));
    if (!gw)
        return;
    /* Shape first, then every scope; only an authorized reference is
       shown to its source, and nothing is written for a denied one. */
    if (validate_create(req, &ref_json, &err) < 0 ||
        sg_authz_check_tenant(call, &sg_authz_rule_create_credential,
                              "credential.tenant", c->tenant, &err) < 0 ||
        check_source(call, &sg_authz_rule_create_credential, c->tenant,
                     c->source, &err) < 0)
        goto cleanup;
    if (sg_credsrc_validate(gw->credentials, c->source->kind, ref_json,
                            &verr) < 0) {
        if (verr.code == SG_ERR_INVALID_ARGUMENT)
            source_violation(&verr, &err);
        else
            sg_error_move(&err, &verr);
        goto cleanup;
    }
    if (build_record(call, c, &row, &err) < 0)
        goto cleanup;
    cc = calloc(1, sizeof(*cc));
    if (cc) {
        cc->name = strdup(c->name);
        cc->tenant = strdup(c->tenant);
    }
    if (!cc || !cc->name || !cc->tenant) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    cc->call = call;
    sg_call_ref(call);
    if (sg_store_create_credential(gw->store, &row, on_created, cc,
                                   &err) < 0) {
        sg_call_unref(call);
        goto cleanup;
    }
    cc = NULL; /* on_created owns it */

 cleanup:
    if (sg_error_is_set(&err)) {
        /* Every refused create is audited, denied or invalid. */
        struct sg_authz_audit_facts facts = {
            .target = c ? c->name : NULL, .tenant = c ? c->tenant : NULL};

        sg_authz_audit_outcome(call, &sg_authz_rule_create_credential,
                               &facts, &err);
        sg_call_fail(call, &err);
    }
    create_ctx_free(cc);
    free(row.record);
    free(ref_json);
    sg_error_reset(&verr);
    sg_error_reset(&err);
}

/* ---- GetCredential --------------------------------------------------- */

void sg_svc_get_credential(struct sg_call *call, const ProtobufCMessage *msg)
{
    const Sandgate__V1__GetCredentialRequest *req = (const void *)msg;
    struct sg_gateway *gw = gateway(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_credential_row *row = NULL;
    struct sg_authz_object obj;
    int found = -1;

    if (!gw)
        return;
    if (check_key(req->name, req->tenant, &err) == 0)
        found = sg_store_get_credential_copy(gw->store, req->tenant,
                                             req->name, &row, &err);
    if (found == 0)
        sg_error_report(&err, SG_ERR_NOT_FOUND, "%s", not_found);
    if (found == 1) {
        /* One the caller may not see answers as if it did not exist. */
        obj = row_object(row);
        if (sg_authz_check_object(call, &sg_authz_rule_get_credential, &obj,
                                  row->name, &err) == 0)
            sg_call_reply_bytes(call, row->record, row->record_len);
    }
    if (sg_error_is_set(&err))
        sg_call_fail(call, &err);
    sg_credential_row_free(row);
    sg_error_reset(&err);
}

/* ---- ListCredentials ------------------------------------------------- */

struct list_ctx {
    struct sg_call *call;
    bool filter; /* check each row against the caller */
    const struct sg_selector *sel;
    size_t want;
    Sandgate__V1__Credential **items; /* want + 1 slots */
    size_t n_items;
    char last_tenant[64];
    char last_name[64];
    bool scanned_any;
    struct sg_error *err;
};

static bool labels_match(const struct sg_selector *sel,
                         const Sandgate__V1__Credential *c)
{
    const char *keys[LABELS_MAX], *values[LABELS_MAX];
    size_t n = c->n_labels < LABELS_MAX ? c->n_labels : LABELS_MAX;

    for (size_t i = 0; i < n; i++) {
        keys[i] = c->labels[i]->key;
        values[i] = c->labels[i]->value;
    }
    return sg_selector_matches(sel, keys, values, n);
}

static int visit_list(void *opaque, const struct sg_credential_row *row)
{
    struct list_ctx *lc = opaque;
    Sandgate__V1__Credential *c;

    snprintf(lc->last_tenant, sizeof(lc->last_tenant), "%s", row->tenant);
    snprintf(lc->last_name, sizeof(lc->last_name), "%s", row->name);
    lc->scanned_any = true;
    if (lc->filter) {
        struct sg_authz_object obj = row_object(row);

        if (!sg_authz_may_see(lc->call, &sg_authz_rule_list_credentials,
                              &obj))
            return 0;
    }
    c = unpack_row(row, lc->err);
    if (!c)
        return 1;
    if (!labels_match(lc->sel, c)) {
        sandgate__v1__credential__free_unpacked(c, NULL);
        return 0;
    }
    lc->items[lc->n_items++] = c;
    return lc->n_items > lc->want;
}

static void list_digest(const Sandgate__V1__ListCredentialsRequest *req,
                        uint8_t out[SG_PAGE_DIGEST_SIZE])
{
    const char *parts[4] = {"credentials", req->tenant, req->kind,
                            req->label_selector};

    sg_page_filter_digest(parts, SG_N_ELEMENTS(parts), out);
}

/* A (tenant, name) key as a page token id: "NN" + tenant + name. */
static char *key_token(const char *tenant, const char *name,
                       const uint8_t *digest)
{
    char key[KEY_TOKEN_MAX + 1];
    size_t tl = strlen(tenant);

    if (tl > 63 || strlen(name) > 63)
        return NULL;
    snprintf(key, sizeof(key), "%02zu%s%s", tl, tenant, name);
    return sg_page_token_encode(key, digest);
}

static int key_untoken(const char *key, char *tenant, char *name,
                       size_t size, struct sg_error *err)
{
    size_t len = strlen(key);
    size_t tl;

    if (len < 3 || key[0] < '0' || key[0] > '9' || key[1] < '0' ||
        key[1] > '9')
        goto bad;
    tl = (size_t)(key[0] - '0') * 10 + (size_t)(key[1] - '0');
    if (tl == 0 || tl >= size || 2 + tl >= len || len - 2 - tl >= size)
        goto bad;
    snprintf(tenant, size, "%.*s", (int)tl, key + 2);
    snprintf(name, size, "%s", key + 2 + tl);
    return 0;

 bad:
    sg_error_add_violation(err, "page_token", "malformed page token");
    return -1;
}

static void list_reply(struct sg_call *call, struct list_ctx *lc, bool more,
                       const uint8_t *digest, struct sg_error *err)
{
    Sandgate__V1__ListCredentialsResponse resp =
        SANDGATE__V1__LIST_CREDENTIALS_RESPONSE__INIT;
    size_t n = lc->n_items > lc->want ? lc->want : lc->n_items;
    char *token = NULL;

    if (lc->n_items > lc->want)
        token = key_token(lc->items[n - 1]->tenant, lc->items[n - 1]->name,
                          digest);
    else if (more && lc->scanned_any)
        token = key_token(lc->last_tenant, lc->last_name, digest);
    if ((lc->n_items > lc->want || (more && lc->scanned_any)) && !token) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return;
    }
    resp.credentials = lc->items;
    resp.n_credentials = n;
    resp.next_page_token = token ? token : "";
    sg_call_reply(call, &resp.base);
    free(token);
}

void sg_svc_list_credentials(struct sg_call *call, const ProtobufCMessage *msg)
{
    const Sandgate__V1__ListCredentialsRequest *req = (const void *)msg;
    struct sg_gateway *gw = gateway(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_selector *sel = NULL;
    struct sg_credential_filter f = {0};
    uint8_t digest[SG_PAGE_DIGEST_SIZE];
    struct list_ctx lc = {.call = call, .err = &err};
    enum sg_reach reach;
    char after_tenant[64] = "", after_name[64] = "";
    char *after = NULL;
    size_t budget;
    ssize_t n;

    if (!gw)
        return;
    reach = sg_authz_reach(call, &sg_authz_rule_list_credentials);
    if (reach == SG_REACH_NONE) {
        sg_error_report(&err, SG_ERR_PERMISSION_DENIED,
                        "permission 'credentials.list' is not granted");
        goto cleanup;
    }
    if (req->page_size < 0) {
        sg_error_add_violation(&err, "page_size", "must not be negative");
        goto cleanup;
    }
    lc.want = req->page_size == 0 ? LIST_DEFAULT_PAGE
              : req->page_size > LIST_MAX_PAGE ? LIST_MAX_PAGE
                                               : (size_t)req->page_size;
    f.tenant = req->tenant;
    f.kind = req->kind;
    lc.filter = reach != SG_REACH_ANY;
    sel = sg_selector_parse(req->label_selector, &err);
    if (!sel)
        goto cleanup;
    list_digest(req, digest);
    if (*req->page_token &&
        (sg_page_token_decode(req->page_token, digest, &after, &err) < 0 ||
         key_untoken(after, after_tenant, after_name, sizeof(after_tenant),
                     &err) < 0))
        goto cleanup;
    lc.sel = sel;
    lc.items = calloc(lc.want + 1, sizeof(*lc.items));
    if (!lc.items) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    budget = sg_selector_is_empty(sel) && !lc.filter ? lc.want + 1
                                                      : LIST_SCAN_BUDGET;
    n = sg_store_list_credentials(gw->store, &f, after_tenant, after_name,
                                  budget, visit_list, &lc, &err);
    if (n < 0 || sg_error_is_set(&err))
        goto cleanup;
    list_reply(call, &lc, (size_t)n == budget && lc.n_items <= lc.want,
               digest, &err);

 cleanup:
    if (sg_error_is_set(&err))
        sg_call_fail(call, &err);
    for (size_t i = 0; i < lc.n_items; i++)
        sandgate__v1__credential__free_unpacked(lc.items[i], NULL);
    free(lc.items);
    free(after);
    sg_selector_free(sel);
    sg_error_reset(&err);
}

/* ---- DeleteCredential ------------------------------------------------ */

struct delete_ctx {
    struct sg_call *call;
    char *name;
    char *tenant;
};

static void on_deleted(void *opaque,
                       const struct sg_store_credential_result *res)
{
    struct delete_ctx *dc = opaque;
    struct sg_authz_audit_facts facts = {.target = dc->name,
                                         .tenant = dc->tenant};
    struct sg_error err = SG_ERROR_INIT;
    Sandgate__V1__DeleteCredentialResponse resp =
        SANDGATE__V1__DELETE_CREDENTIAL_RESPONSE__INIT;
    Sandgate__V1__Credential *c = NULL;

    if (res->err && res->err->code == SG_ERR_NOT_FOUND)
        sg_error_report(&err, SG_ERR_NOT_FOUND, "%s", not_found);
    else if (res->err)
        sg_error_report(&err, res->err->code, "%s", res->err->message);
    else
        c = unpack_row(res->row, &err);
    sg_authz_audit_outcome(dc->call, &sg_authz_rule_delete_credential, &facts,
                           &err);
    if (sg_error_is_set(&err)) {
        sg_call_fail(dc->call, &err);
    } else {
        resp.credential = c;
        sg_call_reply(dc->call, &resp.base);
    }
    if (c)
        sandgate__v1__credential__free_unpacked(c, NULL);
    sg_error_reset(&err);
    sg_call_unref(dc->call);
    free(dc->name);
    free(dc->tenant);
    free(dc);
}

void sg_svc_delete_credential(struct sg_call *call,
                              const ProtobufCMessage *msg)
{
    const Sandgate__V1__DeleteCredentialRequest *req = (const void *)msg;
    struct sg_gateway *gw = gateway(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_credential_row *row = NULL;
    struct delete_ctx *dc = NULL;
    struct sg_authz_audit_facts facts = {.target = req->name,
                                         .tenant = req->tenant};
    int rc;

    if (!gw)
        return;
    /* Denials are audited by the check itself. */
    rc = read_checked(call, gw, &sg_authz_rule_delete_credential, req->name,
                      req->tenant, &row, &err);
    if (rc == 0)
        sg_authz_audit_outcome(call, &sg_authz_rule_delete_credential, &facts,
                               &err);
    if (rc != 1)
        goto cleanup;
    dc = calloc(1, sizeof(*dc));
    if (dc) {
        dc->name = strdup(req->name);
        dc->tenant = strdup(req->tenant);
    }
    if (!dc || !dc->name || !dc->tenant) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    dc->call = call;
    sg_call_ref(call);
    if (sg_store_delete_credential(gw->store, req->tenant, req->name,
                                   on_deleted, dc, &err) < 0) {
        sg_call_unref(call);
        goto cleanup;
    }
    dc = NULL; /* on_deleted owns it */

 cleanup:
    if (sg_error_is_set(&err))
        sg_call_fail(call, &err);
    if (dc) {
        free(dc->name);
        free(dc->tenant);
        free(dc);
    }
    sg_credential_row_free(row);
    sg_error_reset(&err);
}

/* ---- CheckCredential ------------------------------------------------- */

struct check_job {
    struct sg_call *call;
    const struct sg_credsrc_registry *reg;
    char *name;
    char *tenant;
    char *kind;
    char *ref_json;
};

static void job_free(struct check_job *job)
{
    if (!job)
        return;
    free(job->name);
    free(job->tenant);
    free(job->kind);
    free(job->ref_json);
    free(job);
}

/* Worker thread: resolve, wipe, audit, answer. */
static void run_check(void *arg)
{
    struct check_job *job = arg;
    Sandgate__V1__CheckCredentialResponse resp =
        SANDGATE__V1__CHECK_CREDENTIAL_RESPONSE__INIT;
    Google__Protobuf__Timestamp now_ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    struct sg_authz_audit_facts facts = {.target = job->name,
                                         .tenant = job->tenant};
    struct sg_error err = SG_ERROR_INIT;
    struct sg_secret *secret = NULL;
    char desc[DESCRIBE_MAX];
    size_t len = 0;

    sg_credsrc_describe(job->reg, job->kind, job->ref_json, desc,
                        sizeof(desc));
    sg_ms_to_timestamp(sg_now_ms(), &now_ts);
    if (sg_credsrc_resolve(job->reg, job->kind, job->ref_json, &secret,
                           &err) == 0) {
        len = secret->len;
        /* Only the length was needed. */
        sg_secret_free(secret);
        secret = NULL;
        if (len == 0)
            sg_error_report(&err, SG_ERR_FAILED_PRECONDITION,
                            "%s resolved to empty material", desc);
    }
    resp.ok = !sg_error_is_set(&err);
    resp.message = resp.ok ? "resolves" : err.message;
    resp.check_time = &now_ts;
    sg_authz_audit_resolution(job->call, &sg_authz_rule_check_credential,
                              &facts, desc, &err);
    SG_INFO("credential %s/%s (%s) checked for '%s': %s", job->tenant,
            job->name, desc, sg_authz_subject(job->call),
            resp.ok ? "resolves" : err.message);
    sg_call_reply(job->call, &resp.base);
    sg_error_reset(&err);
    sg_call_unref(job->call);
    job_free(job);
}

/* The job for a stored record: its kind and reference. */
static struct check_job *make_job(struct sg_call *call,
                                  const struct sg_credsrc_registry *reg,
                                  const Sandgate__V1__Credential *c,
                                  struct sg_error *err)
{
    struct check_job *job = calloc(1, sizeof(*job));

    if (!job) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    job->call = call;
    job->reg = reg;
    job->name = strdup(c->name);
    job->tenant = strdup(c->tenant);
    job->kind = strdup(c->source ? c->source->kind : "");
    job->ref_json = sg_struct_to_json(c->source ? c->source->ref : NULL, err);
    if (!job->name || !job->tenant || !job->kind || !job->ref_json) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        job_free(job);
        return NULL;
    }
    return job;
}

void sg_svc_check_credential(struct sg_call *call, const ProtobufCMessage *msg)
{
    const Sandgate__V1__CheckCredentialRequest *req = (const void *)msg;
    struct sg_gateway *gw = gateway(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_credential_row *row = NULL;
    Sandgate__V1__Credential *c = NULL;
    struct check_job *job = NULL;
    static const Sandgate__V1__CredentialSource none =
        SANDGATE__V1__CREDENTIAL_SOURCE__INIT;
    struct sg_authz_audit_facts facts = {.target = req->name,
                                         .tenant = req->tenant};
    int rc;

    if (!gw)
        return;
    if (!gw->cred_workers) {
        sg_call_finish(call, GRPC_STATUS_UNIMPLEMENTED,
                       "this server does not check credentials");
        return;
    }
    /* Visibility and permission (audited by the check), then the scope
       of the stored reference: a policy narrowed since the create
       applies. */
    rc = read_checked(call, gw, &sg_authz_rule_check_credential, req->name,
                      req->tenant, &row, &err);
    if (rc == 0)
        sg_authz_audit_outcome(call, &sg_authz_rule_check_credential, &facts,
                               &err);
    if (rc != 1)
        goto cleanup;
    c = unpack_row(row, &err);
    if (!c)
        goto cleanup;
    if (check_source(call, &sg_authz_rule_check_credential, c->tenant,
                     c->source ? c->source : &none, &err) < 0) {
        sg_authz_audit_outcome(call, &sg_authz_rule_check_credential, &facts,
                               &err);
        goto cleanup;
    }
    job = make_job(call, gw->credentials, c, &err);
    if (!job)
        goto cleanup;
    sg_call_ref(call);
    if (sg_cred_workers_run(gw->cred_workers, run_check, job, &err) < 0) {
        sg_call_unref(call);
        goto cleanup;
    }
    job = NULL; /* the worker owns it */

 cleanup:
    if (sg_error_is_set(&err))
        sg_call_fail(call, &err);
    job_free(job);
    if (c)
        sandgate__v1__credential__free_unpacked(c, NULL);
    sg_credential_row_free(row);
    sg_error_reset(&err);
}
