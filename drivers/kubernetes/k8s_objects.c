/*
 * k8s_objects.c: building the Sandbox or SandboxClaim a sandbox becomes,
 * and reading the state of one back.
 */
#include "internal.h"

#include "k8s_objects.h"

#include "buf.h"
#include "k8s_credsecret.h"

#include <stdio.h>
#include <stdlib.h>

uint32_t k8s_fnv1a(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++) {
        h ^= (uint8_t)*s;
        h *= 16777619u;
    }
    return h;
}

bool k8s_id_valid(const char *id)
{
    size_t len = id != NULL ? strlen(id) : 0;

    if (len == 0 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

void k8s_object_name(const char *id, char out[K8S_NAME_MAX + 1])
{
    size_t len = strlen(id);

    if (len + 3 <= K8S_NAME_MAX && (len == 0 || id[len - 1] != '-')) {
        snprintf(out, K8S_NAME_MAX + 1, "sg-%s", id);
        return;
    }
    /* "sg-" + 50 + "-" + 8 hex = 62 bytes. */
    snprintf(out, K8S_NAME_MAX + 1, "sg-%.50s-%08x", id, k8s_fnv1a(id));
}

const char *k8s_kind_plural(enum k8s_kind kind)
{
    return kind == K8S_KIND_CLAIM ? "sandboxclaims" : "sandboxes";
}

const char *k8s_kind_api(enum k8s_kind kind)
{
    return kind == K8S_KIND_CLAIM ? K8S_EXT_API : K8S_SANDBOX_API;
}

const char *k8s_kind_name(enum k8s_kind kind)
{
    return kind == K8S_KIND_CLAIM ? "SandboxClaim" : "Sandbox";
}

/* ---- building ---- */

/* json_object_set_new that remembers a failure in *ok. */
static void put(json_t *obj, const char *key, json_t *v, bool *ok)
{
    if (v == NULL || json_object_set_new(obj, key, v) < 0)
        *ok = false;
}

static void append(json_t *arr, json_t *v, bool *ok)
{
    if (v == NULL || json_array_append_new(arr, v) < 0)
        *ok = false;
}

static json_t *kv_object(const struct k8s_kv *kv, size_t n, bool *ok)
{
    json_t *o = json_object();

    if (o == NULL) {
        *ok = false;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        put(o, kv[i].key, json_string(kv[i].value), ok);
    return o;
}

/* Our labels: on the Sandbox and on its pod template. */
static json_t *our_labels(const struct k8s_settings *s,
                          const struct sg_driver_sandbox *sb, bool *ok)
{
    json_t *l = json_object();
    char v[64];

    if (l == NULL) {
        *ok = false;
        return NULL;
    }
    put(l, K8S_LABEL_SANDBOX_ID, json_string(sb->id), ok);
    put(l, K8S_LABEL_GATEWAY_ID, json_string(s->gateway_id), ok);
    put(l, K8S_LABEL_MANAGED_BY, json_string(K8S_MANAGED_BY), ok);
    k8s_label_sanitize(sb->tenant, v);
    if (v[0] != '\0')
        put(l, K8S_LABEL_TENANT, json_string(v), ok);
    k8s_label_sanitize(sb->project, v);
    if (v[0] != '\0')
        put(l, K8S_LABEL_PROJECT, json_string(v), ok);
    return l;
}

json_t *k8s_labels_build(const struct k8s_settings *s,
                         const struct sg_driver_sandbox *sb)
{
    bool ok = true;
    json_t *l = our_labels(s, sb, &ok);

    if (!ok) {
        json_decref(l);
        return NULL;
    }
    return l;
}

static void put_set(json_t *a, const char *key, const char *value, bool *ok)
{
    if (value != NULL && value[0] != '\0')
        put(a, key, json_string(value), ok);
}

static json_t *our_annotations(const struct sg_driver_sandbox *sb, bool *ok)
{
    json_t *a = json_object();

    if (a == NULL) {
        *ok = false;
        return NULL;
    }
    /* The exact values; labels carry them only sanitised. */
    put_set(a, K8S_ANN_OWNER, sb->owner, ok);
    put_set(a, K8S_ANN_TENANT, sb->tenant, ok);
    put_set(a, K8S_ANN_PROJECT, sb->project, ok);
    put_set(a, K8S_ANN_NAME, sb->name, ok);
    put_set(a, K8S_ANN_REQUEST_ID, sb->request_id, ok);
    put_set(a, K8S_ANN_POLICY_HASH, sb->policy_hash, ok);
    put_set(a, K8S_ANN_ACCESS_PROFILE, sb->access_profile, ok);
    put_set(a, K8S_ANN_RUNTIME_PROFILE, sb->runtime_profile, ok);
    if (sb->n_credentials > 0 && k8s_id_valid(sb->id)) {
        char obj_name[K8S_NAME_MAX + 1];
        char secret[K8S_CRED_NAME_MAX + 1];

        /* How a remove knows there is a Secret to delete too. */
        k8s_object_name(sb->id, obj_name);
        k8s_creds_secret_name(obj_name, secret);
        put(a, K8S_ANN_CREDENTIALS, json_string(secret), ok);
    }
    return a;
}

static json_t *seccomp_runtime_default(void)
{
    return json_pack("{s:s}", "type", "RuntimeDefault");
}

/* sb's environment as a container's (or a claim's) env list. */
static json_t *env_array(const struct sg_driver_sandbox *sb, bool *ok)
{
    json_t *env = json_array();

    for (size_t i = 0; env != NULL && i < sb->n_env; i++)
        append(env,
               json_pack("{s:s,s:s}", "name", sb->env_names[i], "value",
                         sb->env_values[i]),
               ok);
    return env;
}

static json_t *container(const struct k8s_settings *s,
                         const struct k8s_block *b,
                         const struct sg_driver_sandbox *sb, const char *image,
                         bool *ok)
{
    json_t *c = json_object();
    json_t *sc;

    if (c == NULL) {
        *ok = false;
        return NULL;
    }
    put(c, "name", json_string(s->container_name), ok);
    put(c, "image", json_string(image), ok);
    if (sb->n_command > 0) {
        json_t *cmd = json_array();

        for (size_t i = 0; cmd != NULL && i < sb->n_command; i++)
            append(cmd, json_string(sb->command[i]), ok);
        put(c, "command", cmd, ok);
    }
    if (sb->n_env > 0)
        put(c, "env", env_array(sb, ok), ok);
    if (sb->working_dir != NULL && sb->working_dir[0] != '\0')
        put(c, "workingDir", json_string(sb->working_dir), ok);
    if (b->n_requests > 0 || b->n_limits > 0) {
        json_t *r = json_object();
        json_t *q;

        if (r != NULL && b->n_requests > 0) {
            q = json_object();
            for (size_t i = 0; q != NULL && i < b->n_requests; i++)
                put(q, b->requests[i].name, json_string(b->requests[i].text),
                    ok);
            put(r, "requests", q, ok);
        }
        if (r != NULL && b->n_limits > 0) {
            q = json_object();
            for (size_t i = 0; q != NULL && i < b->n_limits; i++)
                put(q, b->limits[i].name, json_string(b->limits[i].text), ok);
            put(r, "limits", q, ok);
        }
        put(c, "resources", r, ok);
    }
    sc = json_pack("{s:b,s:{s:[s]},s:b,s:o}", "allowPrivilegeEscalation", 0,
                   "capabilities", "drop", "ALL", "readOnlyRootFilesystem",
                   s->pod.read_only_root_filesystem, "seccompProfile",
                   seccomp_runtime_default());
    if (sc != NULL && s->pod.run_as_non_root)
        put(sc, "runAsNonRoot", json_true(), ok);
    put(c, "securityContext", sc, ok);
    return c;
}

static json_t *pod_spec(const struct k8s_settings *s, const struct k8s_block *b,
                        const struct sg_driver_sandbox *sb, const char *image,
                        bool *ok)
{
    json_t *p = json_object();
    json_t *containers = json_array();
    json_t *psc = json_object();
    json_t *c;

    if (p == NULL || containers == NULL || psc == NULL) {
        json_decref(p);
        json_decref(containers);
        json_decref(psc);
        *ok = false;
        return NULL;
    }
    c = container(s, b, sb, image, ok);
    if (sb->n_credentials > 0) {
        char obj_name[K8S_NAME_MAX + 1];
        char secret[K8S_CRED_NAME_MAX + 1];

        k8s_object_name(sb->id, obj_name);
        k8s_creds_secret_name(obj_name, secret);
        if (!k8s_creds_pod_apply(s, sb, secret, p, c, psc))
            *ok = false;
    }
    append(containers, c, ok);
    put(p, "containers", containers, ok);
    put(p, "restartPolicy", json_string("Never"), ok);
    put(p, "automountServiceAccountToken",
        json_boolean(s->pod.automount_service_account_token), ok);
    if (s->pod.run_as_non_root)
        put(psc, "runAsNonRoot", json_true(), ok);
    if (s->pod.has_run_as_user)
        put(psc, "runAsUser", json_integer(s->pod.run_as_user), ok);
    if (s->pod.has_run_as_group)
        put(psc, "runAsGroup", json_integer(s->pod.run_as_group), ok);
    put(psc, "seccompProfile", seccomp_runtime_default(), ok);
    put(p, "securityContext", psc, ok);
    if (b->service_account != NULL)
        put(p, "serviceAccountName", json_string(b->service_account), ok);
    if (b->runtime_class != NULL)
        put(p, "runtimeClassName", json_string(b->runtime_class), ok);
    if (b->priority_class != NULL)
        put(p, "priorityClassName", json_string(b->priority_class), ok);
    if (b->n_node_selector > 0)
        put(p, "nodeSelector",
            kv_object(b->node_selector, b->n_node_selector, ok), ok);
    if (b->n_tolerations > 0) {
        json_t *ts = json_array();

        for (size_t i = 0; ts != NULL && i < b->n_tolerations; i++) {
            const struct k8s_toleration *t = &b->tolerations[i];
            json_t *o = json_object();

            if (o != NULL && t->key[0] != '\0')
                put(o, "key", json_string(t->key), ok);
            if (o != NULL && t->op != NULL)
                put(o, "operator", json_string(t->op), ok);
            if (o != NULL && t->value != NULL)
                put(o, "value", json_string(t->value), ok);
            if (o != NULL && t->effect != NULL)
                put(o, "effect", json_string(t->effect), ok);
            if (o != NULL && t->has_seconds)
                put(o, "tolerationSeconds", json_integer(t->seconds), ok);
            append(ts, o, ok);
        }
        put(p, "tolerations", ts, ok);
    }
    if (b->n_image_pull_secrets > 0) {
        json_t *ps = json_array();

        for (size_t i = 0; ps != NULL && i < b->n_image_pull_secrets; i++)
            append(ps, json_pack("{s:s}", "name", b->image_pull_secrets[i]),
                   ok);
        put(p, "imagePullSecrets", ps, ok);
    }
    return p;
}

/* A label or annotation map: ours win over the caller's (the block
   already refuses our keys; this keeps the rule in one place too). */
static json_t *merged(json_t *ours, const struct k8s_kv *theirs, size_t n,
                      bool *ok)
{
    json_t *m = json_object();

    if (m == NULL || ours == NULL) {
        json_decref(m);
        *ok = false;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        put(m, theirs[i].key, json_string(theirs[i].value), ok);
    if (json_object_update(m, ours) < 0)
        *ok = false;
    return m;
}

/* The TTL as the gateway's deadline for the object: shutdownTime, then
   delete (a Sandbox's spec, a claim's lifecycle). */
static void put_shutdown(json_t *o, time_t now, uint32_t ttl, bool *ok)
{
    time_t at = now + (time_t)ttl;
    struct tm tm;
    char ts[32];

    gmtime_r(&at, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    put(o, "shutdownTime", json_string(ts), ok);
    put(o, "shutdownPolicy", json_string("Delete"), ok);
}

/*
 * What a Sandbox and a SandboxClaim share: our labels and annotations
 * (kept for the pod), and the object with apiVersion, kind and metadata.
 */
struct frame {
    json_t *obj;
    json_t *labels;
    json_t *anns;
    bool ok;
};

/* 0, or -1 with err set for an id that cannot name an object. */
static int frame_begin(struct frame *f, const char *api_version,
                       const char *kind, const struct k8s_settings *s,
                       const struct k8s_block *b,
                       const struct sg_driver_sandbox *sb, struct sg_error *err)
{
    char name[K8S_NAME_MAX + 1];

    memset(f, 0, sizeof(*f));
    if (!k8s_id_valid(sb->id)) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "kubernetes: invalid sandbox id");
        return -1;
    }
    f->ok = true;
    k8s_object_name(sb->id, name);
    f->labels = our_labels(s, sb, &f->ok);
    f->anns = our_annotations(sb, &f->ok);
    f->obj = json_object();
    if (f->obj == NULL) {
        f->ok = false;
        return 0;
    }
    put(f->obj, "apiVersion", json_string(api_version), &f->ok);
    put(f->obj, "kind", json_string(kind), &f->ok);
    if (f->labels != NULL && f->anns != NULL)
        put(f->obj, "metadata",
            json_pack("{s:s,s:s,s:O,s:O}", "name", name, "namespace",
                      k8s_block_namespace(b, s), "labels", f->labels,
                      "annotations", f->anns),
            &f->ok);
    return 0;
}

/* The object with spec (stolen), or NULL with err set when memory ran
   out anywhere on the way. */
static json_t *frame_end(struct frame *f, json_t *spec, struct sg_error *err)
{
    json_t *obj = f->obj;

    if (obj != NULL)
        put(obj, "spec", spec, &f->ok);
    else
        json_decref(spec);
    json_decref(f->labels);
    json_decref(f->anns);
    if (!f->ok || obj == NULL) {
        json_decref(obj);
        sg_error_report(err, SG_ERR_NO_MEMORY, "kubernetes: out of memory");
        return NULL;
    }
    return obj;
}

json_t *k8s_sandbox_build(const struct k8s_settings *s,
                          const struct k8s_block *b,
                          const struct sg_driver_sandbox *sb, time_t now,
                          struct sg_error *err)
{
    const char *image = sb->image;
    struct frame f;
    json_t *spec;
    json_t *tmpl;

    if (image == NULL || image[0] == '\0')
        image = s->default_image;
    if (image == NULL || image[0] == '\0') {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "kubernetes: the sandbox has no image and the driver "
                        "has no default_image");
        return NULL;
    }
    if (frame_begin(&f, "agents.x-k8s.io/v1beta1", "Sandbox", s, b, sb, err) <
        0)
        return NULL;
    spec = json_object();
    tmpl = json_object();
    if (spec == NULL || tmpl == NULL || !f.ok) {
        json_decref(tmpl);
        f.ok = false;
        return frame_end(&f, spec, err);
    }
    put(tmpl, "metadata",
        json_pack("{s:o,s:o}", "labels",
                  merged(f.labels, b->pod_labels, b->n_pod_labels, &f.ok),
                  "annotations",
                  merged(f.anns, b->pod_annotations, b->n_pod_annotations,
                         &f.ok)),
        &f.ok);
    put(tmpl, "spec", pod_spec(s, b, sb, image, &f.ok), &f.ok);
    put(spec, "podTemplate", tmpl, &f.ok);
    if (sb->ttl_seconds > 0)
        put_shutdown(spec, now, sb->ttl_seconds, &f.ok);
    return frame_end(&f, spec, err);
}

/* A claim's additionalPodMetadata: the claim controller accepts pod label
   keys only of the domains it is configured to allow (by default
   sandbox.users.io), so ours go on the pod only where the operator has
   allowed sandgate.io, and app.kubernetes.io (another domain) never. */
static json_t *claim_pod_metadata(const struct k8s_settings *s,
                                  const struct k8s_block *b,
                                  const struct frame *f, bool *ok)
{
    json_t *apm = json_object();

    if (apm == NULL) {
        *ok = false;
        return NULL;
    }
    if (s->claim_pod_labels) {
        json_t *ours = json_deep_copy(f->labels);

        if (ours == NULL || json_object_del(ours, K8S_LABEL_MANAGED_BY) < 0)
            *ok = false;
        put(apm, "labels", merged(ours, b->pod_labels, b->n_pod_labels, ok),
            ok);
        json_decref(ours);
    } else if (b->n_pod_labels > 0) {
        put(apm, "labels", kv_object(b->pod_labels, b->n_pod_labels, ok), ok);
    }
    put(apm, "annotations",
        merged(f->anns, b->pod_annotations, b->n_pod_annotations, ok), ok);
    return apm;
}

json_t *k8s_claim_build(const struct k8s_settings *s,
                        const struct k8s_block *b,
                        const struct sg_driver_sandbox *sb, time_t now,
                        struct sg_error *err)
{
    struct frame f;
    json_t *spec;

    if (frame_begin(&f, "extensions.agents.x-k8s.io/v1beta1", "SandboxClaim",
                    s, b, sb, err) < 0)
        return NULL;
    spec = json_object();
    if (spec == NULL || !f.ok) {
        f.ok = false;
        return frame_end(&f, spec, err);
    }
    put(spec, "warmPoolRef", json_pack("{s:s}", "name", b->warm_pool), &f.ok);
    put(spec, "additionalPodMetadata", claim_pod_metadata(s, b, &f, &f.ok),
        &f.ok);
    if (sb->n_env > 0)
        put(spec, "env", env_array(sb, &f.ok), &f.ok);
    if (sb->ttl_seconds > 0) {
        json_t *lc = json_object();

        if (lc != NULL)
            put_shutdown(lc, now, sb->ttl_seconds, &f.ok);
        put(spec, "lifecycle", lc, &f.ok);
    }
    return frame_end(&f, spec, err);
}

/* ---- warm pools the gateway keeps ---- */

/* metadata of a kept object, with the hash of spec. */
static json_t *kept_metadata(const struct k8s_settings *s, const char *name,
                             const char *ns, json_t *spec, bool *ok)
{
    char *text = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    char hash[16];
    json_t *md;

    if (text == NULL) {
        *ok = false;
        return NULL;
    }
    snprintf(hash, sizeof(hash), "%08x", k8s_fnv1a(text));
    free(text);
    md = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s}}", "name", name, "namespace",
                   ns, "labels", K8S_LABEL_GATEWAY_ID, s->gateway_id,
                   K8S_LABEL_MANAGED_BY, K8S_MANAGED_BY, "annotations",
                   K8S_ANN_SPEC_HASH, hash);
    if (md == NULL)
        *ok = false;
    return md;
}

json_t *k8s_template_build(const struct k8s_settings *s,
                           const struct k8s_managed_pool *p, const char *ns)
{
    struct sg_driver_sandbox sb = {
        .image = p->image,
        .command = (const char *const *)p->command,
        .n_command = p->n_command,
    };
    bool ok = true;
    json_t *obj = json_object();
    json_t *spec = json_object();
    json_t *tmpl = json_object();
    json_t *none = json_object();

    if (obj == NULL || spec == NULL || tmpl == NULL || none == NULL) {
        json_decref(obj);
        json_decref(spec);
        json_decref(tmpl);
        json_decref(none);
        return NULL;
    }
    put(tmpl, "metadata",
        json_pack("{s:o,s:o}", "labels",
                  merged(none, p->pod.pod_labels, p->pod.n_pod_labels, &ok),
                  "annotations",
                  merged(none, p->pod.pod_annotations,
                         p->pod.n_pod_annotations, &ok)),
        &ok);
    json_decref(none);
    put(tmpl, "spec", pod_spec(s, &p->pod, &sb, p->image, &ok), &ok);
    put(spec, "podTemplate", tmpl, &ok);
    put(obj, "apiVersion", json_string("extensions.agents.x-k8s.io/v1beta1"),
        &ok);
    put(obj, "kind", json_string("SandboxTemplate"), &ok);
    put(obj, "metadata", kept_metadata(s, p->name, ns, spec, &ok), &ok);
    put(obj, "spec", spec, &ok);
    if (!ok) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

json_t *k8s_pool_build(const struct k8s_settings *s,
                       const struct k8s_managed_pool *p, const char *ns)
{
    bool ok = true;
    json_t *obj = json_object();
    json_t *spec = json_pack("{s:I,s:{s:s}}", "replicas",
                             (json_int_t)p->replicas, "sandboxTemplateRef",
                             "name", p->name);

    if (obj == NULL || spec == NULL) {
        json_decref(obj);
        json_decref(spec);
        return NULL;
    }
    put(obj, "apiVersion", json_string("extensions.agents.x-k8s.io/v1beta1"),
        &ok);
    put(obj, "kind", json_string("SandboxWarmPool"), &ok);
    put(obj, "metadata", kept_metadata(s, p->name, ns, spec, &ok), &ok);
    put(obj, "spec", spec, &ok);
    if (!ok) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* ---- observing ---- */

static void copy_str(json_t *v, char *out, size_t size)
{
    snprintf(out, size, "%s", json_is_string(v) ? json_string_value(v) : "");
}

static json_t *condition(json_t *conds, const char *type)
{
    size_t i;
    json_t *c;

    json_array_foreach(conds, i, c)
    {
        json_t *t = json_object_get(c, "type");

        if (json_is_string(t) && STREQ(json_string_value(t), type))
            return c;
    }
    return NULL;
}

static bool cond_is(json_t *c, const char *status)
{
    json_t *s = json_object_get(c, "status");

    return json_is_string(s) && STREQ(json_string_value(s), status);
}

static const char *cond_reason(json_t *c)
{
    json_t *r = json_object_get(c, "reason");

    return json_is_string(r) ? json_string_value(r) : "";
}

static void take_condition(struct k8s_observed *o, json_t *c)
{
    copy_str(json_object_get(c, "reason"), o->reason, sizeof(o->reason));
    copy_str(json_object_get(c, "message"), o->message, sizeof(o->message));
}

/* The metadata both kinds share. Returns 0, or -1 without a name or a
   namespace. */
static int observe_meta(json_t *obj, enum k8s_kind kind,
                        struct k8s_observed *o)
{
    json_t *meta = json_object_get(obj, "metadata");
    json_t *labels = json_object_get(meta, "labels");

    memset(o, 0, sizeof(*o));
    o->kind = kind;
    copy_str(json_object_get(meta, "name"), o->name, sizeof(o->name));
    copy_str(json_object_get(meta, "namespace"), o->namespace_name,
             sizeof(o->namespace_name));
    if (o->name[0] == '\0' || o->namespace_name[0] == '\0')
        return -1;
    copy_str(json_object_get(meta, "uid"), o->uid, sizeof(o->uid));
    copy_str(json_object_get(meta, "resourceVersion"), o->rv, sizeof(o->rv));
    copy_str(json_object_get(labels, K8S_LABEL_SANDBOX_ID), o->id,
             sizeof(o->id));
    if (!k8s_id_valid(o->id))
        o->id[0] = '\0';
    copy_str(json_object_get(labels, K8S_LABEL_GATEWAY_ID), o->gateway,
             sizeof(o->gateway));
    o->deleting = json_object_get(meta, "deletionTimestamp") != NULL &&
                  !json_is_null(json_object_get(meta, "deletionTimestamp"));
    o->state = SG_DRIVER_STATE_PENDING;
    snprintf(o->reason, sizeof(o->reason), "Provisioning");
    return 0;
}

/* The Ready reasons after which a Sandbox is never Ready. */
static const char *const sandbox_terminal[] = {"PodFailed", "PodSucceeded",
                                               "SandboxExpired"};
/* The claim controller's own (its Python SDK's TERMINAL_CLAIM_READY_REASONS
   plus the not-found ones, which only a platform change cures). */
static const char *const claim_terminal[] = {
    "WarmPoolNotFound",          "TemplateNotFound",
    "InvalidMetadata",           "EnvVarsInjectionRejected",
    "VolumeClaimTemplatesError", "ClaimExpired"};

static bool reason_in(json_t *c, const char *const *set, size_t n)
{
    for (size_t i = 0; c != NULL && i < n; i++) {
        if (cond_is(c, "False") && STREQ(cond_reason(c), set[i]))
            return true;
    }
    return false;
}

int k8s_sandbox_observe(json_t *obj, struct k8s_observed *o)
{
    json_t *conds = json_object_get(json_object_get(obj, "status"),
                                    "conditions");
    json_t *ready = condition(conds, "Ready");
    json_t *finished = condition(conds, "Finished");
    json_t *sched = condition(conds, "PodScheduled");

    if (observe_meta(obj, K8S_KIND_SANDBOX, o) < 0)
        return -1;
    o->creds = json_is_string(json_object_get(
        json_object_get(json_object_get(obj, "metadata"), "annotations"),
        K8S_ANN_CREDENTIALS));
    if (ready != NULL && cond_is(ready, "True")) {
        o->state = SG_DRIVER_STATE_RUNNING;
        take_condition(o, ready);
        return 0;
    }
    if (finished != NULL && cond_is(finished, "True")) {
        o->state = SG_DRIVER_STATE_FAILED;
        take_condition(o, finished);
        return 0;
    }
    if (reason_in(ready, sandbox_terminal, SG_N_ELEMENTS(sandbox_terminal))) {
        o->state = SG_DRIVER_STATE_FAILED;
        take_condition(o, ready);
        return 0;
    }
    if (sched != NULL && cond_is(sched, "False"))
        take_condition(o, sched);
    else if (ready != NULL)
        take_condition(o, ready);
    if (o->reason[0] == '\0')
        snprintf(o->reason, sizeof(o->reason), "Provisioning");
    return 0;
}

int k8s_claim_observe(json_t *obj, struct k8s_observed *o)
{
    json_t *status = json_object_get(obj, "status");
    json_t *conds = json_object_get(status, "conditions");
    json_t *ready = condition(conds, "Ready");
    json_t *finished = condition(conds, "Finished");
    json_t *box = json_object_get(status, "sandbox");
    json_t *ips = json_object_get(box, "podIPs");
    struct sg_buf m = SG_BUF_INIT;
    size_t i;
    json_t *ip;

    if (observe_meta(obj, K8S_KIND_CLAIM, o) < 0)
        return -1;
    copy_str(json_object_get(box, "name"), o->bound, sizeof(o->bound));
    /* A warm member keeps its pool's generated name; a cold Sandbox is
       named after the claim. */
    o->warm = o->bound[0] != '\0' && STRNEQ(o->bound, o->name);
    if (ready != NULL && cond_is(ready, "True")) {
        o->state = SG_DRIVER_STATE_RUNNING;
        snprintf(o->reason, sizeof(o->reason), "%s",
                 o->warm ? "WarmStart" : "ColdStart");
        sg_buf_printf(&m, "bound to Sandbox %s (%s start)", o->bound,
                      o->warm ? "warm" : "cold");
        json_array_foreach(ips, i, ip)
        {
            if (json_is_string(ip))
                sg_buf_printf(&m, "%s%s", i == 0 ? "; pod IPs " : ", ",
                              json_string_value(ip));
        }
        snprintf(o->message, sizeof(o->message), "%s",
                 sg_buf_error(&m) == 0 ? sg_buf_str(&m) : "");
        sg_buf_free(&m);
        return 0;
    }
    if (finished != NULL && cond_is(finished, "True")) {
        o->state = SG_DRIVER_STATE_FAILED;
        take_condition(o, finished);
        return 0;
    }
    if (reason_in(ready, sandbox_terminal, SG_N_ELEMENTS(sandbox_terminal)) ||
        reason_in(ready, claim_terminal, SG_N_ELEMENTS(claim_terminal))) {
        o->state = SG_DRIVER_STATE_FAILED;
        take_condition(o, ready);
        return 0;
    }
    if (ready != NULL)
        take_condition(o, ready);
    if (o->reason[0] == '\0')
        snprintf(o->reason, sizeof(o->reason), "Provisioning");
    return 0;
}
