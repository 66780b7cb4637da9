/*
 * svc_sandbox.c: sandgate.v1.SandboxService Create, Get, List and Delete.
 *
 * Every handler: validate the request, authorize it (the transport has
 * authenticated the caller and checked the permission; authz_call.h),
 * read or write the store, reply.
 * Writes are group-committed by the store and answered from its callback
 * (on the store's writer thread); the reconciler is kicked once a write
 * that needs driver work is durable. Nothing here talks to the driver
 * except config validation, which drivers allow from any thread.
 */
#include "internal.h"

#include "svc_sandbox.h"

#include "authz_call.h"
#include "canon.h"
#include "cred_bind.h"
#include "gateway.h"
#include "log.h"
#include "page_token.h"
#include "sandbox_id.h"
#include "sandbox_record.h"
#include "selector.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

SG_LOG_INIT("server.sandbox");

#define LIST_DEFAULT_PAGE 50
#define LIST_MAX_PAGE 1000
/* Rows a selector query may skip per page before it returns what it has. */
#define LIST_SCAN_BUDGET 10000
/* Tries of an unconditional delete that loses a race with the reconciler. */
#define DELETE_TRIES 5

/* Answer with a stored row, straight from its bytes: no decode, no
   re-encode (sg_record_wire). */
static void reply_row(struct sg_call *call, const struct sg_sandbox_row *row)
{
    struct sg_buf wire = SG_BUF_INIT;

    if (sg_record_wire(row, &wire) == 0) {
        sg_call_reply_bytes(call, wire.data, wire.len);
    } else {
        struct sg_error err = SG_ERROR_INIT;
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        sg_call_fail(call, &err);
        sg_error_reset(&err);
    }
    sg_buf_free(&wire);
}

/* The gateway, or NULL after failing the call (a server built without
   one, as some tests do, serves no sandboxes). */
static struct sg_gateway *gateway(struct sg_call *call)
{
    struct sg_gateway *gw = sg_call_app_data(call);

    if (!gw)
        sg_call_finish(call, GRPC_STATUS_UNIMPLEMENTED,
                       "this server has no sandbox service");
    return gw;
}

/* The facts of a stored row that authorization reads: never request
   fields. */
static struct sg_authz_object row_object(const struct sg_sandbox_row *row)
{
    struct sg_authz_object obj = {
        .tenant = row->tenant, .project = row->project,
        .namespace_name = row->namespace_name, .owner = row->owner};

    return obj;
}

/* An id from a request: NOT_FOUND for ids that cannot exist. */
static int check_id(const char *id, struct sg_error *err)
{
    if (!id || !*id) {
        sg_error_add_violation(err, "id", "id is required");
        return -1;
    }
    if (!sg_sandbox_id_valid(id)) {
        sg_error_report(err, SG_ERR_NOT_FOUND, "sandbox not found");
        return -1;
    }
    return 0;
}

/* ---- CreateSandbox --------------------------------------------------- */

struct create_ctx {
    struct sg_call *call;
    struct sg_gateway *gw;
    char request_hash[SG_HASH_SIZE];
};

/* Store thread: the create is durable (or was already there). The audit
   line is written before the answer goes out. */
static void on_created(void *opaque, const struct sg_store_result *res)
{
    struct create_ctx *cc = opaque;
    struct sg_authz_audit_facts facts = {0};

    if (res->row) {
        facts.target = res->row->id;
        facts.tenant = res->row->tenant;
        facts.namespace_name = res->row->namespace_name;
        facts.request_id = res->row->request_id;
    }
    if (res->err) {
        SG_ERROR("create failed: %s", res->err->message);
        sg_authz_audit_outcome(cc->call, &sg_authz_rule_create_sandbox,
                               &facts, res->err);
        sg_call_fail(cc->call, res->err);
    } else if (!res->created && STRNEQ(res->row->request_hash,
                                       cc->request_hash)) {
        struct sg_error err = SG_ERROR_INIT;
        sg_error_report(&err, SG_ERR_ALREADY_EXISTS,
                        "request_id '%s' was already used for sandbox '%s' "
                        "with different content",
                        res->row->request_id, res->row->id);
        sg_authz_audit_outcome(cc->call, &sg_authz_rule_create_sandbox,
                               &facts, &err);
        sg_call_fail(cc->call, &err);
        sg_error_reset(&err);
    } else {
        sg_authz_audit_outcome(cc->call, &sg_authz_rule_create_sandbox,
                               &facts, NULL);
        reply_row(cc->call, res->row);
        if (res->created)
            sg_reconciler_kick_row(cc->gw->reconciler, res->row);
    }
    sg_call_unref(cc->call);
    free(cc);
}

/* Let the driver check its block and report placement facts (which the
   caller clears). */
static int driver_admit(struct sg_gateway *gw, const Sandgate__V1__Sandbox *sb,
                        struct sg_driver_placement *placement,
                        struct sg_error *err)
{
    struct sg_driver_view view;
    int ret = -1;

    memset(placement, 0, sizeof(*placement));
    if (sg_driver_view_init(&view, sb, sg_driver_name(gw->driver), err) == 0 &&
        sg_driver_validate(gw->driver, &view.sb, err) == 0 &&
        sg_driver_describe(gw->driver, &view.sb, placement, err) == 0)
        ret = 0;
    sg_driver_view_clear(&view);
    return ret;
}

/*
 * What the create asks for, from the request, the driver's facts (not
 * from the driver_config JSON) and the bound records' sources. ac
 * borrows from req, placement and bound.
 */
static void create_facts(const Sandgate__V1__CreateSandboxRequest *req,
                         const struct sg_driver_placement *placement,
                         const struct sg_cred_bindings *bound,
                         struct sg_authz_create *ac)
{
    const Sandgate__V1__Sandbox *sb = req->sandbox;
    const Sandgate__V1__SandboxSpec *spec = sb->spec;

    memset(ac, 0, sizeof(*ac));
    ac->tenant = sb->tenant;
    ac->project = sb->project;
    ac->access_profile = sb->access_profile;
    ac->runtime_profile = sb->runtime_profile;
    ac->credentials = bound->authz;
    ac->n_credentials = bound->n;
    ac->has_policy = spec && spec->policy &&
                     spec->policy->source_case !=
                         SANDGATE__V1__SANDBOX_POLICY__SOURCE__NOT_SET;
    ac->placement = placement;
}

/* Bindings need a driver that delivers and a gateway that resolves. */
static int bindings_servable(struct sg_gateway *gw,
                             const Sandgate__V1__Sandbox *sb,
                             struct sg_error *err)
{
    if (!sb->spec || sb->spec->n_credentials == 0)
        return 0;
    if (!(sg_driver_caps(gw->driver) & SG_DRIVER_CAP_CREDENTIALS)) {
        sg_error_report(err, SG_ERR_UNIMPLEMENTED,
                        "sandbox.spec.credentials: the '%s' driver does not "
                        "deliver credentials", sg_driver_name(gw->driver));
        return -1;
    }
    if (!gw->credentials || !gw->cred_workers) {
        sg_error_report(err, SG_ERR_UNIMPLEMENTED,
                        "sandbox.spec.credentials: this server does not "
                        "resolve credentials");
        return -1;
    }
    return 0;
}

/*
 * The record as first stored: the caller's fields, plus everything the
 * server assigns. Output-only fields were refused by validation.
 */
static int build_record(struct sg_call *call, struct sg_gateway *gw,
                        const Sandgate__V1__CreateSandboxRequest *req,
                        const char *namespace_name, const char *request_hash,
                        const struct sg_cred_bindings *bound,
                        struct sg_sandbox_row *row, struct sg_error *err)
{
    Sandgate__V1__Sandbox sb = *req->sandbox; /* shallow: borrows fields */
    Sandgate__V1__SandboxStatus st = SANDGATE__V1__SANDBOX_STATUS__INIT;
    Sandgate__V1__Condition cond = SANDGATE__V1__CONDITION__INIT;
    Sandgate__V1__Condition *conds[1] = {&cond};
    Google__Protobuf__Timestamp now_ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Google__Protobuf__Timestamp expire_ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    size_t n_cs = bound->n;
    Sandgate__V1__CredentialBindingStatus *cs = calloc(n_cs + 1, sizeof(*cs));
    Sandgate__V1__CredentialBindingStatus **cs_p =
        calloc(n_cs + 1, sizeof(*cs_p));
    Google__Protobuf__Timestamp *cs_ts = calloc(n_cs + 1, sizeof(*cs_ts));
    int rc = -1;
    char id[SG_SANDBOX_ID_SIZE];
    char policy_hash[SG_HASH_SIZE];
    int64_t now = sg_now_ms();

    if (!cs || !cs_p || !cs_ts) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    if (sg_sandbox_id_new(id) < 0) {
        sg_error_report(err, SG_ERR_INTERNAL, "cannot generate a sandbox id");
        goto cleanup;
    }
    sg_policy_hash(sb.spec ? sb.spec->policy : NULL, policy_hash);
    sg_ms_to_timestamp(now, &now_ts);

    cond.type = "Ready";
    cond.status = SANDGATE__V1__CONDITION_STATUS__CONDITION_STATUS_UNKNOWN;
    cond.reason = "Accepted";
    cond.message = "sandbox accepted";
    cond.last_transition_time = &now_ts;
    st.phase = SANDGATE__V1__SANDBOX_PHASE__SANDBOX_PHASE_ACCEPTED;
    st.driver = (char *)sg_driver_name(gw->driver);
    st.namespace_ = (char *)namespace_name;
    st.policy_hash = policy_hash;
    st.message = "sandbox accepted";
    st.conditions = conds;
    st.n_conditions = 1;
    if (sb.spec && sb.spec->ttl_seconds) {
        int64_t exp = now + (int64_t)sb.spec->ttl_seconds * 1000;
        sg_ms_to_timestamp(exp, &expire_ts);
        st.expire_time = &expire_ts;
    }
    /* The records the create was authorized against. */
    for (size_t i = 0; i < n_cs; i++) {
        sandgate__v1__credential_binding_status__init(&cs[i]);
        sg_ms_to_timestamp(bound->create_times[i], &cs_ts[i]);
        cs[i].credential = (char *)bound->authz[i].name;
        cs[i].record_create_time = &cs_ts[i];
        cs_p[i] = &cs[i];
    }
    st.credentials = cs_p;
    st.n_credentials = n_cs;

    sb.id = id;
    /* Always the authenticated subject: owner is output-only. */
    sb.owner = (char *)sg_authz_subject(call);
    sb.request_id = (char *)sg_create_request_id(req);
    sb.status = &st;
    sb.resource_version = 0;
    sb.create_time = &now_ts;
    sb.update_time = &now_ts;
    sb.delete_time = NULL;
    rc = sg_record_to_row(&sb, request_hash, row, err);
 cleanup:
    free(cs);
    free(cs_p);
    free(cs_ts);
    return rc;
}

void sg_svc_create_sandbox(struct sg_call *call, const ProtobufCMessage *msg)
{
    const Sandgate__V1__CreateSandboxRequest *req = (const void *)msg;
    struct sg_gateway *gw = gateway(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_sandbox_row row;
    struct sg_event_row ev;
    struct create_ctx *cc = NULL;
    struct sg_driver_placement placement;
    struct sg_authz_create ac = {0};
    struct sg_cred_bindings bound = {0};

    memset(&placement, 0, sizeof(placement));
    if (!gw)
        return;
    memset(&row, 0, sizeof(row));
    memset(&ev, 0, sizeof(ev));
    /* Validate, let the driver name the placement, then authorize every
       scope: nothing is written or called for a denied request. */
    if (sg_validate_create_sandbox(req, &gw->limits, &err) < 0 ||
        driver_admit(gw, req->sandbox, &placement, &err) < 0 ||
        sg_cred_bindings_read(gw->store, req->sandbox->tenant,
                              req->sandbox->spec, &bound, &err) < 0)
        goto cleanup;
    create_facts(req, &placement, &bound, &ac);
    /* Denied first, then what this server cannot do for an allowed
       create, then a bound record that is missing. */
    if (sg_authz_check_create(call, &sg_authz_rule_create_sandbox, &ac,
                              &err) < 0 ||
        bindings_servable(gw, req->sandbox, &err) < 0 ||
        sg_cred_bindings_require(&bound, req->sandbox->tenant, &err) < 0)
        goto cleanup;
    cc = calloc(1, sizeof(*cc));
    if (!cc) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    if (sg_create_request_hash(req, cc->request_hash, &err) < 0 ||
        build_record(call, gw, req,
                     placement.namespace_name ? placement.namespace_name : "",
                     cc->request_hash, &bound, &row, &err) < 0)
        goto cleanup;
    if (sg_event_for_row(&row, SG_EVENT_ACCEPTED, "Accepted",
                         "sandbox accepted", &ev) < 0) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    cc->call = call;
    cc->gw = gw;
    sg_call_ref(call);
    if (sg_store_create_sandbox(gw->store, &row, &ev, on_created, cc,
                                &err) < 0) {
        sg_call_unref(call);
        goto cleanup;
    }
    cc = NULL; /* on_created owns it */

 cleanup:
    if (sg_error_is_set(&err)) {
        /* A refused create is audited too, denied or invalid. */
        struct sg_authz_audit_facts facts = {
            .tenant = req->sandbox ? req->sandbox->tenant : NULL,
            .namespace_name = placement.namespace_name,
            .request_id = sg_create_request_id(req)};

        sg_authz_audit_outcome(call, &sg_authz_rule_create_sandbox, &facts,
                               &err);
        sg_call_fail(call, &err);
    }
    free(cc);
    sg_cred_bindings_clear(&bound);
    sg_driver_placement_clear(&placement);
    sg_event_row_clear(&ev);
    sg_sandbox_row_clear(&row);
    sg_error_reset(&err);
}

/* ---- GetSandbox ------------------------------------------------------ */

void sg_svc_get_sandbox(struct sg_call *call, const ProtobufCMessage *msg)
{
    const Sandgate__V1__GetSandboxRequest *req = (const void *)msg;
    struct sg_gateway *gw = gateway(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_sandbox_row *row = NULL;
    struct sg_authz_object obj;
    int found = -1;

    if (!gw)
        return;
    if (check_id(req->id, &err) == 0)
        found = sg_store_get_sandbox_copy(gw->store, req->id, &row, &err);
    if (found == 0)
        sg_error_report(&err, SG_ERR_NOT_FOUND, "sandbox not found");
    if (found == 1) {
        /* One the caller may not see answers as if it did not exist. */
        obj = row_object(row);
        if (sg_authz_check_object(call, &sg_authz_rule_get_sandbox, &obj,
                                  row->id, &err) == 0)
            reply_row(call, row);
    }
    if (sg_error_is_set(&err))
        sg_call_fail(call, &err);
    sg_sandbox_row_free(row);
    sg_error_reset(&err);
}

/* ---- ListSandboxes --------------------------------------------------- */

struct list_ctx {
    struct sg_call *call;
    bool filter;               /* check each row against the caller */
    const struct sg_selector *sel;
    size_t want;               /* page size */
    Sandgate__V1__Sandbox **items; /* want + 1 slots */
    size_t n_items;
    char *last_scanned;
    size_t scanned;
    struct sg_error *err;
};

static int visit_list(void *opaque, const struct sg_sandbox_row *row)
{
    struct list_ctx *lc = opaque;
    Sandgate__V1__Sandbox *sb;
    char *last = strdup(row->id);

    if (!last) {
        sg_error_report(lc->err, SG_ERR_NO_MEMORY, "out of memory");
        return 1;
    }
    free(lc->last_scanned);
    lc->last_scanned = last;
    lc->scanned++;
    if (lc->filter) {
        struct sg_authz_object obj = row_object(row);

        if (!sg_authz_may_see(lc->call, &sg_authz_rule_list_sandboxes, &obj))
            return 0;
    }
    sb = sg_record_unpack(row, lc->err);
    if (!sb)
        return 1;
    if (!sg_selector_matches_labels(lc->sel, sb->labels, sb->n_labels)) {
        sandgate__v1__sandbox__free_unpacked(sb, NULL);
        return 0;
    }
    lc->items[lc->n_items++] = sb;
    /* One more than a page tells us whether another page exists. */
    return lc->n_items > lc->want;
}

static int list_page_size(int32_t page_size, struct sg_error *err)
{
    if (page_size < 0) {
        sg_error_add_violation(err, "page_size", "must not be negative");
        return -1;
    }
    if (page_size == 0)
        return LIST_DEFAULT_PAGE;
    return page_size > LIST_MAX_PAGE ? LIST_MAX_PAGE : page_size;
}

/* The request's filters, digested so a token cannot change them. */
static void list_digest(const Sandgate__V1__ListSandboxesRequest *req,
                        uint8_t out[SG_PAGE_DIGEST_SIZE])
{
    char phase[16];
    const char *parts[5];

    snprintf(phase, sizeof(phase), "%d", (int)req->phase);
    parts[0] = req->tenant;
    parts[1] = req->project;
    parts[2] = req->namespace_;
    parts[3] = req->label_selector;
    parts[4] = phase;
    sg_page_filter_digest(parts, SG_N_ELEMENTS(parts), out);
}

static int list_filter(const Sandgate__V1__ListSandboxesRequest *req,
                       struct sg_sandbox_filter *f, struct sg_error *err)
{
    memset(f, 0, sizeof(*f));
    f->tenant = *req->tenant ? req->tenant : NULL;
    f->project = *req->project ? req->project : NULL;
    f->namespace_name = *req->namespace_ ? req->namespace_ : NULL;
    if (req->phase == SANDGATE__V1__SANDBOX_PHASE__SANDBOX_PHASE_UNSPECIFIED) {
        /* Deleted sandboxes are kept as tombstones; list them on request. */
        f->phases = SG_PHASES_ACTIVE;
    } else if ((int)req->phase >= (int)SG_PHASE_ACCEPTED &&
               (int)req->phase <= (int)SG_PHASE_DELETED) {
        f->phases = SG_PHASE_BIT(req->phase);
    } else {
        sg_error_add_violation(err, "phase", "unknown phase %d",
                               (int)req->phase);
        return -1;
    }
    return 0;
}

static void list_reply(struct sg_call *call, struct list_ctx *lc,
                       bool more, const uint8_t *digest,
                       struct sg_error *err)
{
    Sandgate__V1__ListSandboxesResponse resp =
        SANDGATE__V1__LIST_SANDBOXES_RESPONSE__INIT;
    char *token = NULL;
    size_t n = lc->n_items > lc->want ? lc->want : lc->n_items;

    if (lc->n_items > lc->want)
        token = sg_page_token_encode(lc->items[n - 1]->id, digest);
    else if (more && lc->last_scanned)
        token = sg_page_token_encode(lc->last_scanned, digest);
    if ((lc->n_items > lc->want || more) && !token) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return;
    }
    resp.sandboxes = lc->items;
    resp.n_sandboxes = n;
    resp.next_page_token = token ? token : "";
    sg_call_reply(call, &resp.base);
    free(token);
}

void sg_svc_list_sandboxes(struct sg_call *call, const ProtobufCMessage *msg)
{
    const Sandgate__V1__ListSandboxesRequest *req = (const void *)msg;
    struct sg_gateway *gw = gateway(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_selector *sel = NULL;
    struct sg_sandbox_filter f;
    uint8_t digest[SG_PAGE_DIGEST_SIZE];
    struct list_ctx lc = {.call = call, .err = &err};
    enum sg_reach reach = sg_authz_reach(call, &sg_authz_rule_list_sandboxes);
    char *after = NULL;
    int page = list_page_size(req->page_size, &err);
    size_t budget;
    ssize_t n;

    if (!gw)
        return;
    if (reach == SG_REACH_NONE) {
        /* The transport's check already answers this; without it, deny. */
        sg_error_report(&err, SG_ERR_PERMISSION_DENIED,
                        "permission 'sandboxes.list' is not granted");
        goto cleanup;
    }
    if (list_filter(req, &f, &err) < 0 || page < 0)
        goto cleanup;
    /* A caller that sees only its own sandboxes gets them from the owner
       index; wider but partial reach is checked row by row. */
    if (reach == SG_REACH_OWN)
        f.owner = sg_authz_subject(call);
    lc.filter = reach == SG_REACH_TENANT;
    sel = sg_selector_parse(req->label_selector, &err);
    if (!sel)
        goto cleanup;
    list_digest(req, digest);
    if (*req->page_token &&
        sg_page_token_decode(req->page_token, digest, &after, &err) < 0)
        goto cleanup;
    lc.sel = sel;
    lc.want = (size_t)page;
    lc.items = calloc(lc.want + 1, sizeof(*lc.items));
    if (!lc.items) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    /* Without a selector or a per-row check every row matches: read one
       more than a page. */
    budget = sg_selector_is_empty(sel) && !lc.filter ? lc.want + 1
                                                      : LIST_SCAN_BUDGET;
    n = sg_store_list_sandboxes(gw->store, &f, after, budget,
                                visit_list, &lc, &err);
    if (n < 0 || sg_error_is_set(&err))
        goto cleanup;
    /* The budget ran out before the page filled: more rows may match. */
    list_reply(call, &lc, (size_t)n == budget && lc.n_items <= lc.want,
               digest, &err);

 cleanup:
    if (sg_error_is_set(&err))
        sg_call_fail(call, &err);
    for (size_t i = 0; i < lc.n_items; i++)
        sandgate__v1__sandbox__free_unpacked(lc.items[i], NULL);
    free(lc.items);
    free(lc.last_scanned);
    free(after);
    sg_selector_free(sel);
    sg_error_reset(&err);
}

/* ---- DeleteSandbox --------------------------------------------------- */

struct delete_ctx {
    struct sg_call *call;
    struct sg_gateway *gw;
    char *id;
    uint64_t expected_rv; /* from the request; 0 = unconditional */
    unsigned tries;
};

static void delete_try(struct delete_ctx *dc);

static void delete_ctx_free(struct delete_ctx *dc)
{
    sg_call_unref(dc->call);
    free(dc->id);
    free(dc);
}

/* Audit the delete's outcome, then answer with row or err. */
static void delete_answer(struct delete_ctx *dc,
                          const struct sg_sandbox_row *row,
                          const struct sg_error *err)
{
    struct sg_authz_audit_facts facts = {.target = dc->id};

    if (row) {
        facts.tenant = row->tenant;
        facts.namespace_name = row->namespace_name;
    }
    sg_authz_audit_outcome(dc->call, &sg_authz_rule_delete_sandbox, &facts,
                           err);
    if (err && sg_error_is_set(err))
        sg_call_fail(dc->call, err);
    else
        reply_row(dc->call, row);
}

/* Store thread: the DELETING state is durable, or the write lost. */
static void on_deleting(void *opaque, const struct sg_store_result *res)
{
    struct delete_ctx *dc = opaque;

    if (!res->err) {
        delete_answer(dc, res->row, NULL);
        sg_reconciler_kick_row(dc->gw->reconciler, res->row);
    } else if (res->err->code == SG_ERR_ABORTED && !dc->expected_rv &&
               dc->tries < DELETE_TRIES) {
        /* The reconciler moved it meanwhile; the caller did not ask for
           a particular version, so read again and retry. */
        delete_try(dc);
        return;
    } else if (res->err->code == SG_ERR_ABORTED) {
        struct sg_error err = SG_ERROR_INIT;
        sg_error_report(&err, SG_ERR_ABORTED,
                        "sandbox was modified concurrently; read it again");
        delete_answer(dc, NULL, &err);
        sg_error_reset(&err);
    } else {
        delete_answer(dc, NULL, res->err);
    }
    delete_ctx_free(dc);
}

/* Read, check, write DELETING. Ends the call and frees dc unless the
   write is queued (then on_deleting does). */
static void delete_try(struct delete_ctx *dc)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_sandbox_row *row = NULL;
    struct sg_sandbox_row next;
    struct sg_event_row evs[SG_RECORD_MAX_EVENTS];
    size_t n_evs = 0;
    struct sg_record_change chg = {
        .phase = SG_PHASE_DELETING, .events = {SG_EVENT_DELETE_REQUESTED},
        .reason = "DeleteRequested", .message = "delete requested",
        .set_delete_time = true};
    int found;

    memset(&next, 0, sizeof(next));
    dc->tries++;
    found = sg_store_get_sandbox_copy(dc->gw->store, dc->id, &row, &err);
    if (found == 0)
        sg_error_report(&err, SG_ERR_NOT_FOUND, "sandbox not found");
    if (found != 1)
        goto cleanup;
    if (row->phase == SG_PHASE_DELETING || row->phase == SG_PHASE_DELETED) {
        delete_answer(dc, row, NULL); /* already on its way: not an error */
        goto cleanup;
    }
    if (dc->expected_rv && dc->expected_rv != row->resource_version) {
        sg_error_report(&err, SG_ERR_ABORTED,
                        "resource_version mismatch: expected %" PRIu64
                        ", current %" PRIu64,
                        dc->expected_rv, row->resource_version);
        goto cleanup;
    }
    if (sg_record_apply(row, &chg, &next, evs, &n_evs, &err) < 0 ||
        sg_store_update_sandbox(dc->gw->store, &next, row->resource_version,
                                evs, n_evs, on_deleting, dc, &err) < 0)
        goto cleanup;
    dc = NULL; /* on_deleting owns it */

 cleanup:
    if (dc) {
        if (sg_error_is_set(&err))
            delete_answer(dc, row, &err);
        delete_ctx_free(dc);
    }
    for (size_t i = 0; i < n_evs; i++)
        sg_event_row_clear(&evs[i]);
    sg_sandbox_row_clear(&next);
    sg_sandbox_row_free(row);
    sg_error_reset(&err);
}

void sg_svc_delete_sandbox(struct sg_call *call, const ProtobufCMessage *msg)
{
    const Sandgate__V1__DeleteSandboxRequest *req = (const void *)msg;
    struct sg_gateway *gw = gateway(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_sandbox_row *row = NULL;
    struct sg_authz_object obj;
    struct delete_ctx *dc;
    int found = -1;

    if (!gw)
        return;
    if (check_id(req->id, &err) == 0)
        found = sg_store_get_sandbox_copy(gw->store, req->id, &row, &err);
    /* Owner and tenant never change, so one check covers delete_try's
       retries; a missing row goes on, and delete_try answers (and
       audits) NOT_FOUND. Denials are audited by the check itself. */
    if (found == 1) {
        obj = row_object(row);
        sg_authz_check_object(call, &sg_authz_rule_delete_sandbox, &obj,
                              row->id, &err);
    }
    sg_sandbox_row_free(row);
    if (sg_error_is_set(&err)) {
        sg_call_fail(call, &err);
        sg_error_reset(&err);
        return;
    }
    dc = calloc(1, sizeof(*dc));
    if (dc)
        dc->id = strdup(req->id);
    if (!dc || !dc->id) {
        free(dc);
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        sg_call_fail(call, &err);
        sg_error_reset(&err);
        return;
    }
    dc->call = call;
    dc->gw = gw;
    dc->expected_rv = req->expected_resource_version;
    sg_call_ref(call);
    delete_try(dc);
}
