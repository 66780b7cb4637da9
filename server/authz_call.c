/*
 * authz_call.c: the authentication hook and the per-request checks of
 * the handlers (see authz_call.h).
 */
#include "internal.h"

#include "authz_call.h"

#include "gateway.h"
#include "log.h"
#include "status.h"
#include "validate.h"

#include <strings.h>

SG_LOG_INIT("authz.call");

#define MAX_BEARER 16384

static const char *const not_found_msgs[] = {
    [1] = "sandbox not found",
    [2] = "credential not found",
    [3] = "event not found",
};

static struct sg_authz *call_authz(const struct sg_call *call)
{
    const struct sg_gateway *gw = sg_call_app_data(call);

    return gw ? gw->authz : NULL;
}

/* One audit line. Everything but the call itself may be NULL. */
static void audit(struct sg_call *call, const struct sg_authz_rule *rule,
                  const struct sg_authz_audit_facts *facts,
                  grpc_status_code code, const char *reason)
{
    struct sg_authz *a = call_authz(call);
    const struct sg_identity *id = sg_call_identity(call);
    struct sg_audit_record r = {
        .subject = id ? id->subject : "",
        .rpc = rule->path,
        .allowed = code == GRPC_STATUS_OK,
        .code = sg_status_name(code),
        .reason = reason,
        .peer = sg_call_peer(call),
    };

    if (!a)
        return;
    if (facts) {
        r.target = facts->target;
        r.tenant = facts->tenant;
        r.namespace_name = facts->namespace_name;
        r.request_id = facts->request_id;
    }
    sg_audit_write(sg_authz_audit(a), &r);
}

/* Audit a denial and answer it. */
static void deny(struct sg_call *call, const struct sg_authz_rule *rule,
                 const struct sg_error *err)
{
    audit(call, rule, NULL, sg_status_code(err->code), err->message);
    sg_call_fail(call, err);
}

/* The token of "authorization: Bearer <token>", or NULL with err set
   when the header is there but unusable. *len is its length. */
static const char *bearer_of(const struct sg_call *call, size_t *len,
                             struct sg_error *err)
{
    size_t n = 0;
    const char *v = sg_call_metadata(call, "authorization", &n);

    *len = 0;
    if (!v)
        return NULL;
    if (n < 7 || strncasecmp(v, "Bearer ", 7) != 0) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "authorization: only the Bearer scheme is accepted");
        return NULL;
    }
    v += 7;
    n -= 7;
    while (n > 0 && *v == ' ') {
        v++;
        n--;
    }
    if (n == 0 || n > MAX_BEARER) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "authorization: the bearer token is empty or too "
                        "long");
        return NULL;
    }
    *len = n;
    return v;
}

/* Attach the caller and check the method's permission (when the method
   has a handler). Takes over id and policy. */
static int admit(struct sg_call *call, const struct sg_authz_rule *rule,
                 bool handled, struct sg_identity *id,
                 struct sg_policy *policy, struct sg_error *err)
{
    sg_call_set_auth(call, id, policy);
    if (handled &&
        sg_policy_reach(policy, id, rule->permission) == SG_REACH_NONE) {
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "permission '%s' is not granted", rule->permission);
        return -1;
    }
    return 0;
}

/* The method's rule: NULL for methods that need no credential. */
static const struct sg_authz_rule *rule_of(const struct sg_call *call)
{
    return sg_authz_rule_for_path(sg_call_method(call)->path);
}

/* A TokenReview's answer (loop thread) for a call whose authentication
   waited (it holds a reference): go on with the call, or refuse it. */
static void on_authenticated(void *opaque, struct sg_identity *id,
                             struct sg_policy *policy,
                             const struct sg_error *err)
{
    struct sg_call *call = opaque;
    const struct sg_authz_rule *rule = rule_of(call);
    struct sg_error e = SG_ERROR_INIT;

    if (err) {
        SG_DEBUG("%s: %s", rule->path, err->message);
        deny(call, rule, err);
    } else if (admit(call, rule, sg_call_method(call)->on_start != NULL, id,
                     policy, &e) < 0) {
        deny(call, rule, &e);
    } else {
        sg_call_auth_resume(call);
    }
    sg_error_reset(&e);
    sg_call_unref(call);
}

/* Authenticate; 1 when on_authenticated will answer for the call. */
static int authenticate(struct sg_authz *a, struct sg_call *call,
                        struct sg_identity **id, struct sg_policy **policy,
                        struct sg_error *err)
{
    size_t len;
    const char *bearer = bearer_of(call, &len, err);
    int rc;

    if (sg_error_is_set(err))
        return -1;
    sg_call_ref(call); /* for on_authenticated, which may run at once */
    rc = sg_authz_authenticate_async(a, bearer, len,
                                     sg_call_auth_context(call), id, policy,
                                     on_authenticated, call, err);
    if (rc <= 0)
        sg_call_unref(call);
    return rc;
}

int sg_authz_call_hook(void *opaque, struct sg_call *call, bool handled)
{
    struct sg_authz *a = opaque;
    const struct sg_authz_rule *rule = rule_of(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_identity *id = NULL;
    struct sg_policy *policy = NULL;
    int rc;

    if (!rule || rule->allow_unauthenticated)
        return 0;
    rc = authenticate(a, call, &id, &policy, &err);
    if (rc > 0)
        return 1; /* on_authenticated answers */
    if (rc < 0)
        SG_DEBUG("%s: %s", rule->path, err.message);
    else
        rc = admit(call, rule, handled, id, policy, &err);
    if (rc < 0)
        deny(call, rule, &err);
    sg_error_reset(&err);
    return rc;
}

/*
 * A call nobody authenticated (a server without the hook, as in tests)
 * has no policy: every check below then denies, so a missing hook can
 * never mean "allowed".
 */
int sg_authz_check_object(struct sg_call *call,
                          const struct sg_authz_rule *rule,
                          const struct sg_authz_object *obj,
                          const char *target, struct sg_error *err)
{
    const struct sg_policy *p = sg_call_policy(call);
    const struct sg_identity *id = sg_call_identity(call);
    struct sg_authz_audit_facts facts = {
        .target = target, .tenant = obj->tenant,
        .namespace_name = obj->namespace_name};

    if (!p || (rule->visibility_permission &&
               !sg_policy_allows_object(p, id, rule->visibility_permission,
                                        obj))) {
        /* Exactly what a missing object answers. */
        sg_error_report(err, SG_ERR_NOT_FOUND, "%s",
                        not_found_msgs[rule->resource]);
        audit(call, rule, &facts, GRPC_STATUS_NOT_FOUND, "not visible");
        return -1;
    }
    /* Get's permission is its visibility: decided above already. */
    if ((!rule->visibility_permission ||
         STRNEQ(rule->visibility_permission, rule->permission)) &&
        !sg_policy_allows_object(p, id, rule->permission, obj)) {
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "permission '%s' is not granted on this object",
                        rule->permission);
        audit(call, rule, &facts, GRPC_STATUS_PERMISSION_DENIED,
              err->message);
        return -1;
    }
    return 0;
}

int sg_authz_check_create(struct sg_call *call,
                          const struct sg_authz_rule *rule,
                          const struct sg_authz_create *req,
                          struct sg_error *err)
{
    const char *own = call_authz(call)
                          ? sg_authz_gateway_namespace(call_authz(call))
                          : NULL;
    const char *ns = req->placement ? req->placement->namespace_name : NULL;

    if (!sg_call_policy(call)) {
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "the caller is not authenticated");
    } else if (own && ns && STREQ(own, ns)) {
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "driver_config: namespace '%s' is the gateway's own "
                        "and never a sandbox target", ns);
    } else {
        return sg_policy_check_create(sg_call_policy(call),
                                      sg_call_identity(call),
                                      rule->permission, req, NULL, err);
    }
    return -1;
}

enum sg_reach sg_authz_reach(struct sg_call *call,
                             const struct sg_authz_rule *rule)
{
    if (!sg_call_policy(call))
        return SG_REACH_NONE;
    return sg_policy_reach(sg_call_policy(call), sg_call_identity(call),
                           rule->permission);
}

bool sg_authz_may_see(struct sg_call *call, const struct sg_authz_rule *rule,
                      const struct sg_authz_object *obj)
{
    return sg_call_policy(call) &&
           sg_policy_allows_object(sg_call_policy(call),
                                   sg_call_identity(call), rule->permission,
                                   obj);
}

enum sg_reach sg_authz_reach_under(const struct sg_policy *p,
                                   const struct sg_identity *id,
                                   const struct sg_authz_rule *rule)
{
    if (!p || !id)
        return SG_REACH_NONE;
    return sg_policy_reach(p, id, rule->permission);
}

bool sg_authz_may_see_under(const struct sg_policy *p,
                            const struct sg_identity *id,
                            const struct sg_authz_rule *rule,
                            const struct sg_authz_object *obj)
{
    return p && id && sg_policy_allows_object(p, id, rule->permission, obj);
}

struct sg_policy *sg_authz_policy_now(struct sg_call *call)
{
    struct sg_authz *a = call_authz(call);

    if (a)
        return sg_authz_current_policy(a);
    return sg_call_policy(call)
               ? sg_policy_ref((struct sg_policy *)sg_call_policy(call))
               : NULL;
}

const char *sg_authz_subject(const struct sg_call *call)
{
    const struct sg_identity *id = sg_call_identity(call);

    return id ? id->subject : "";
}

void sg_authz_audit_outcome(struct sg_call *call,
                            const struct sg_authz_rule *rule,
                            const struct sg_authz_audit_facts *facts,
                            const struct sg_error *err)
{
    bool failed = err && sg_error_is_set(err);

    if (!rule->audit)
        return;
    audit(call, rule, facts,
          failed ? sg_status_code(err->code) : GRPC_STATUS_OK,
          failed ? sg_status_message(err) : NULL);
}

int sg_authz_check_tenant(struct sg_call *call,
                          const struct sg_authz_rule *rule, const char *field,
                          const char *tenant, struct sg_error *err)
{
    /* Only the tenant is asked for: every other scope of a create is
       empty, which a role that leaves those lists out allows. */
    struct sg_authz_create ac = {.tenant = tenant};
    struct sg_error e = SG_ERROR_INIT;
    enum sg_policy_denial denial = SG_DENY_NONE;

    if (!sg_call_policy(call)) {
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "the caller is not authenticated");
        return -1;
    }
    if (sg_policy_check_create(sg_call_policy(call), sg_call_identity(call),
                               rule->permission, &ac, &denial, &e) == 0)
        return 0;
    if (denial == SG_DENY_TENANT)
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "%s: tenant '%.63s' is not allowed", field, tenant);
    else
        sg_error_move(err, &e);
    sg_error_reset(&e);
    return -1;
}

int sg_authz_check_credential_source(struct sg_call *call,
                                     const struct sg_authz_rule *rule,
                                     const char *tenant, const char *kind,
                                     const char *ns,
                                     const char *name, const char *key,
                                     struct sg_error *err)
{
    char q[3][132];

    if (sg_policy_allows_credential_source(sg_call_policy(call),
                                           sg_call_identity(call),
                                           rule->permission, tenant, kind, ns,
                                           name, key))
        return 0;
    if (!ns && !name && !key) {
        sg_validate_quote(kind, q[0], sizeof(q[0]));
        sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                        "credential.source.kind: source '%s' is not allowed",
                        q[0]);
        return -1;
    }
    /* Coordinates of a Secret, not material. */
    sg_validate_quote(ns ? ns : "", q[0], sizeof(q[0]));
    sg_validate_quote(name ? name : "", q[1], sizeof(q[1]));
    sg_validate_quote(key ? key : "", q[2], sizeof(q[2]));
    sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                    "credential.source.ref: Secret '%s/%s' key '%s' is not "
                    "allowed",
                    q[0], q[1], q[2]);
    return -1;
}

void sg_authz_audit_resolution(struct sg_call *call,
                               const struct sg_authz_rule *rule,
                               const struct sg_authz_audit_facts *facts,
                               const char *description,
                               const struct sg_error *err)
{
    struct sg_authz *a = call_authz(call);
    const struct sg_identity *id = sg_call_identity(call);
    bool failed = err && sg_error_is_set(err);
    char reason[SG_ERROR_MESSAGE_MAX + 600];
    struct sg_audit_record r = {
        .subject = id ? id->subject : "",
        .rpc = rule->path,
        .allowed = true, /* authorized; the outcome is in code */
        .code = failed ? sg_status_name(sg_status_code(err->code)) : "OK",
        .reason = reason,
        .peer = sg_call_peer(call),
    };

    if (!a)
        return;
    if (failed)
        snprintf(reason, sizeof(reason), "resolving %s failed: %s",
                 description, err->message);
    else
        snprintf(reason, sizeof(reason), "resolved %s", description);
    if (facts) {
        r.target = facts->target;
        r.tenant = facts->tenant;
        r.namespace_name = facts->namespace_name;
        r.request_id = facts->request_id;
    }
    sg_audit_write(sg_authz_audit(a), &r);
}
