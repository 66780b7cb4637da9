/*
 * k8s_credsecret.c: the per-sandbox credentials Secret and the pod
 * template's references to it (k8s_credsecret.h).
 */
#include "internal.h"

#include "k8s_credsecret.h"

#include "cred_targets.h"

#include <stdio.h>
#include <stdlib.h>

/* Where the kubelet mounts the service account token. */
#define SA_TOKEN_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/* Standard base64 of in (n bytes) into out (b64_len(n) bytes, no NUL). */
static void b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;

        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
}

static void cred_key(size_t i, char out[24])
{
    snprintf(out, 24, "c%zu", i);
}

/* ---- checks ---- */

static bool env_name_ok(const char *t)
{
    if (t[0] == '\0')
        return false;
    for (const char *p = t; *p != '\0'; p++) {
        if (*p < 0x20 || *p > 0x7e || *p == '=')
            return false;
    }
    return true;
}

/* An absolute, normalised path a container can mount a file at. */
static bool mount_path_ok(const char *t)
{
    const char *p = t;

    if (t[0] != '/' || t[1] == '\0' || strlen(t) > K8S_CRED_PATH_MAX)
        return false;
    for (const char *c = t; *c != '\0'; c++) {
        /* ':' separates a bind's source and target in the runtimes. */
        if (*c < 0x20 || *c > 0x7e || *c == ':' || *c == '\\')
            return false;
    }
    while (*p == '/') {
        size_t n = strcspn(p + 1, "/");

        if (n == 0 || (n == 1 && p[1] == '.') ||
            (n == 2 && p[1] == '.' && p[2] == '.'))
            return false;
        p += 1 + n;
    }
    return *p == '\0';
}

static int check_file(const struct k8s_settings *s,
                      const struct sg_driver_sandbox *sb, size_t i,
                      struct sg_error *err)
{
    const char *t = sb->credentials[i].target;

    if (!mount_path_ok(t)) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "kubernetes: credentials[%zu]: file '%.200s' is not "
                        "a usable mountPath (absolute, normalised, no ':', "
                        "at most %d bytes)",
                        i, t, K8S_CRED_PATH_MAX);
        return -1;
    }
    if (s->pod.automount_service_account_token && sg_paths_nest(t, SA_TOKEN_DIR)) {
        sg_error_report(
            err, SG_ERR_INVALID_ARGUMENT,
            "kubernetes: credentials[%zu]: file '%.200s' clashes "
            "with the service account token mounted at " SA_TOKEN_DIR,
            i, t);
        return -1;
    }
    for (size_t k = 0; k < i; k++) {
        if (sb->credentials[k].delivery == SG_DRIVER_DELIVER_FILE &&
            sg_paths_nest(sb->credentials[k].target, t)) {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            "kubernetes: credentials[%zu]: file '%.200s' "
                            "clashes with credentials[%zu]",
                            i, t, k);
            return -1;
        }
    }
    return 0;
}

int k8s_creds_check(const struct k8s_settings *s,
                    const struct sg_driver_sandbox *sb, bool claim,
                    struct sg_error *err)
{
    if (sb->n_credentials == 0)
        return 0;
    if (claim) {
        sg_error_report(err, SG_ERR_UNIMPLEMENTED,
                        "kubernetes: credential bindings are not supported "
                        "with SandboxClaim allocation: a claim's env takes "
                        "only literal values, and material must stay in a "
                        "Secret");
        return -1;
    }
    if (sb->credentials == NULL || sb->n_credentials > K8S_CRED_MAX) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "kubernetes: at most %d credentials per sandbox",
                        K8S_CRED_MAX);
        return -1;
    }
    for (size_t i = 0; i < sb->n_credentials; i++) {
        const struct sg_driver_credential *c = &sb->credentials[i];

        if (c->target == NULL) {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            "kubernetes: credentials[%zu]: no target", i);
            return -1;
        }
        if (c->delivery == SG_DRIVER_DELIVER_ENV) {
            if (!env_name_ok(c->target) || sg_cred_env_taken(sb, i)) {
                sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                                "kubernetes: credentials[%zu]: env name "
                                "'%.100s' is invalid or already set",
                                i, c->target);
                return -1;
            }
        } else if (c->delivery == SG_DRIVER_DELIVER_FILE) {
            if (check_file(s, sb, i, err) < 0)
                return -1;
        } else {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            "kubernetes: credentials[%zu]: unknown delivery "
                            "%d",
                            i, (int)c->delivery);
            return -1;
        }
    }
    return 0;
}

void k8s_creds_secret_name(const char *object_name,
                           char out[K8S_CRED_NAME_MAX + 1])
{
    snprintf(out, K8S_CRED_NAME_MAX + 1, "%s" K8S_CRED_SUFFIX, object_name);
}

/* ---- the pod template ---- */

static void add(json_t *arr, json_t *v, bool *ok)
{
    if (v == NULL || json_array_append_new(arr, v) < 0)
        *ok = false;
}

/* obj[key] as an array, made when absent. */
static json_t *array_at(json_t *obj, const char *key, bool *ok)
{
    json_t *a = json_object_get(obj, key);

    if (json_is_array(a))
        return a;
    a = json_array();
    if (a == NULL || json_object_set_new(obj, key, a) < 0) {
        *ok = false;
        return NULL;
    }
    return a;
}

/* Whether the pod may run as root: then a 0400 root-owned file is its. */
static bool pod_may_be_root(const struct k8s_settings *s)
{
    if (s->pod.run_as_non_root)
        return false;
    return !s->pod.has_run_as_user || s->pod.run_as_user == 0;
}

static int64_t file_group(const struct k8s_settings *s)
{
    if (s->pod.has_run_as_group)
        return s->pod.run_as_group;
    if (s->pod.has_run_as_user)
        return s->pod.run_as_user;
    return K8S_CRED_FS_GROUP;
}

bool k8s_creds_pod_apply(const struct k8s_settings *s,
                         const struct sg_driver_sandbox *sb, const char *secret,
                         json_t *pod_spec, json_t *container, json_t *psc)
{
    json_t *items = NULL;
    json_t *mounts = NULL;
    json_t *env = NULL;
    bool ok = true;
    char key[24];

    if (sb->n_credentials == 0)
        return true;
    if (pod_spec == NULL || container == NULL || psc == NULL)
        return false;
    for (size_t i = 0; ok && i < sb->n_credentials; i++) {
        const struct sg_driver_credential *c = &sb->credentials[i];

        cred_key(i, key);
        if (c->delivery == SG_DRIVER_DELIVER_ENV) {
            if (env == NULL)
                env = array_at(container, "env", &ok);
            if (env != NULL)
                add(env,
                    json_pack("{s:s,s:{s:{s:s,s:s}}}", "name", c->target,
                              "valueFrom", "secretKeyRef", "name", secret,
                              "key", key),
                    &ok);
            continue;
        }
        if (items == NULL) {
            items = json_array();
            mounts = array_at(container, "volumeMounts", &ok);
            if (items == NULL)
                ok = false;
        }
        if (items != NULL)
            add(items, json_pack("{s:s,s:s}", "key", key, "path", key), &ok);
        if (mounts != NULL)
            add(mounts,
                json_pack("{s:s,s:s,s:s,s:b}", "name", K8S_CRED_VOLUME,
                          "mountPath", c->target, "subPath", key, "readOnly",
                          1),
                &ok);
    }
    if (items != NULL) {
        bool root = pod_may_be_root(s);
        json_t *vols = array_at(pod_spec, "volumes", &ok);

        if (vols != NULL)
            add(vols,
                json_pack("{s:s,s:{s:s,s:i,s:O}}", "name", K8S_CRED_VOLUME,
                          "secret", "secretName", secret, "defaultMode",
                          root ? 0400 : 0440, "items", items),
                &ok);
        if (!root && json_object_set_new(psc, "fsGroup",
                                         json_integer(file_group(s))) < 0)
            ok = false;
        json_decref(items);
    }
    return ok;
}

/* ---- the Secret ---- */

void k8s_creds_body_free(char *body, size_t len)
{
    if (body == NULL)
        return;
    explicit_bzero(body, len);
    free(body);
}

char *k8s_creds_secret_body(const struct sg_driver_sandbox *sb, const char *ns,
                            const char *name, json_t *labels, size_t *len_out,
                            struct sg_error *err)
{
    static const char data_open[] = ",\"data\":{";
    json_t *head =
        json_pack("{s:s,s:s,s:{s:s,s:s,s:O},s:s}", "apiVersion", "v1", "kind",
                  "Secret", "metadata", "name", name, "namespace", ns, "labels",
                  labels, "type", "Opaque");
    char *text = head != NULL ? json_dumps(head, JSON_COMPACT) : NULL;
    size_t head_len = text != NULL ? strlen(text) : 0;
    size_t data_len = 0;
    size_t total;
    size_t o;
    char *out = NULL;
    char key[24];

    json_decref(head);
    if (text == NULL || head_len < 2 || text[head_len - 1] != '}') {
        free(text);
        sg_error_report(err, SG_ERR_NO_MEMORY, "kubernetes: out of memory");
        return NULL;
    }
    /* The size first, so that the body is allocated once. */
    total = head_len - 1 + strlen(data_open) + 2;
    for (size_t i = 0; i < sb->n_credentials; i++) {
        const struct sg_driver_credential *c = &sb->credentials[i];

        if (c->material == NULL && c->material_len > 0) {
            free(text);
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            "kubernetes: credentials[%zu]: no material", i);
            return NULL;
        }
        cred_key(i, key);
        data_len += c->material_len;
        total += (i > 0) + strlen(key) + 5 + b64_len(c->material_len);
    }
    if (data_len > K8S_SECRET_DATA_MAX) {
        free(text);
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "kubernetes: the credentials take %zu bytes; a "
                        "Secret holds at most %d",
                        data_len, K8S_SECRET_DATA_MAX);
        return NULL;
    }
    out = malloc(total + 1);
    if (out == NULL) {
        free(text);
        sg_error_report(err, SG_ERR_NO_MEMORY, "kubernetes: out of memory");
        return NULL;
    }
    memcpy(out, text, head_len - 1);
    o = head_len - 1;
    free(text);
    memcpy(out + o, data_open, strlen(data_open));
    o += strlen(data_open);
    for (size_t i = 0; i < sb->n_credentials; i++) {
        const struct sg_driver_credential *c = &sb->credentials[i];

        cred_key(i, key);
        o += (size_t)snprintf(out + o, total + 1 - o, "%s\"%s\":\"",
                              i > 0 ? "," : "", key);
        b64_encode(c->material, c->material_len, out + o);
        o += b64_len(c->material_len);
        out[o++] = '"';
    }
    out[o++] = '}';
    out[o++] = '}';
    out[o] = '\0';
    *len_out = o;
    return out;
}

char *k8s_creds_owner_patch(const char *sandbox_name, const char *uid)
{
    json_t *p = json_pack(
        "{s:{s:[{s:s,s:s,s:s,s:s,s:b,s:b}]}}", "metadata", "ownerReferences",
        "apiVersion", "agents.x-k8s.io/v1beta1", "kind", "Sandbox", "name",
        sandbox_name, "uid", uid, "controller", 0, "blockOwnerDeletion", 0);
    char *text = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;

    json_decref(p);
    return text;
}

void k8s_creds_secret_wipe(json_t *secret)
{
    json_t *data = json_object_get(secret, "data");
    const char *k;
    json_t *v;

    json_object_foreach(data, k, v)
    {
        if (json_is_string(v))
            explicit_bzero((char *)json_string_value(v), json_string_length(v));
    }
}
