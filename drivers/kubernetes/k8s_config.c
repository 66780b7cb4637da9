/*
 * k8s_config.c: strict decoding of the kubernetes driver's settings and
 * per-sandbox block (see k8s_config.h for both schemas).
 */
#include "internal.h"

#include "k8s_config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define SETTINGS_PFX "kubernetes settings: "
#define BLOCK_PFX "kubernetes."
#define PATH_MAX_LEN 192
/* Kubernetes' limit on the total size of a pod's annotations. */
#define ANNOTATIONS_MAX (256 * 1024)
#define JSON_INT_MAX (INT64_C(1) << 53)

/* ---- label values (the naming rules are in common/k8s_names.h) ---- */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
}

void k8s_label_sanitize(const char *s, char out[64])
{
    size_t n = 0;
    size_t start = 0;

    for (size_t i = 0; s != NULL && s[i] != '\0' && n < 63; i++) {
        char c = s[i];

        out[n++] =
            is_alnum(c) || c == '-' || c == '_' || c == '.' ? c : '-';
    }
    out[n] = '\0';
    while (n > 0 && !is_alnum(out[n - 1]))
        out[--n] = '\0';
    while (start < n && !is_alnum(out[start]))
        start++;
    memmove(out, out + start, n - start + 1);
}

/* ---- quantities ---- */

int k8s_quantity_parse(const char *text, uint64_t *millis)
{
    static const struct {
        const char *suffix;
        long double factor;
    } suffixes[] = {
        {"Ki", 1024.0L},
        {"Mi", 1048576.0L},
        {"Gi", 1073741824.0L},
        {"Ti", 1099511627776.0L},
        {"Pi", 1125899906842624.0L},
        {"Ei", 1152921504606846976.0L},
        {"n", 1e-9L},
        {"u", 1e-6L},
        {"m", 1e-3L},
        {"k", 1e3L},
        {"M", 1e6L},
        {"G", 1e9L},
        {"T", 1e12L},
        {"P", 1e15L},
        {"E", 1e18L},
        {"", 1.0L},
    };
    const char *p = text;
    long double v = 0.0L;
    long double scale = 1.0L;
    bool digits = false;
    bool dot = false;
    long double factor = -1.0L;

    if (*p == '+')
        p++;
    for (; *p != '\0'; p++) {
        if (*p >= '0' && *p <= '9') {
            digits = true;
            if (dot) {
                scale /= 10.0L;
                v += (long double)(*p - '0') * scale;
            } else {
                v = v * 10.0L + (long double)(*p - '0');
            }
        } else if (*p == '.' && !dot) {
            dot = true;
        } else {
            break;
        }
    }
    if (!digits)
        return -1;
    if (*p == 'e' || *p == 'E') {
        const char *q = p + 1;
        int sign = 1;
        int exp = 0;
        bool edigits = false;

        if (*q == '+' || *q == '-')
            sign = *q++ == '-' ? -1 : 1;
        for (; *q >= '0' && *q <= '9'; q++) {
            edigits = true;
            if (exp < 100)
                exp = exp * 10 + (*q - '0');
        }
        if (edigits && *q == '\0') {
            factor = powl(10.0L, (long double)(sign * exp));
            p = q;
        }
    }
    if (factor < 0) {
        for (size_t i = 0; i < SG_N_ELEMENTS(suffixes); i++) {
            if (STREQ(p, suffixes[i].suffix)) {
                factor = suffixes[i].factor;
                break;
            }
        }
    }
    if (factor < 0)
        return -1;
    v = v * factor * 1000.0L;
    if (!isfinite(v) || v > 9.2e18L)
        return -1;
    *millis = (uint64_t)ceill(v - 1e-9L);
    return 0;
}

/* ---- JSON helpers ---- */

struct ctx {
    enum sg_err_code code;
    const char *pfx;
    struct sg_error *err;
    /* Block only: the dotted paths set. */
    char **fields;
    size_t n_fields;
    size_t cap_fields;
};

static int fail(struct ctx *c, const char *path, const char *what)
{
    sg_error_report(c->err, c->code, "%s%.*s: %s", c->pfx, PATH_MAX_LEN, path,
                    what);
    return -1;
}

static int nomem(struct ctx *c)
{
    sg_error_report(c->err, SG_ERR_NO_MEMORY, "out of memory");
    return -1;
}

static int add_field(struct ctx *c, const char *path)
{
    char *copy;

    if (c->n_fields == c->cap_fields) {
        size_t cap = c->cap_fields != 0 ? c->cap_fields * 2 : 16;
        char **f = realloc(c->fields, cap * sizeof(*f));

        if (f == NULL)
            return nomem(c);
        c->fields = f;
        c->cap_fields = cap;
    }
    copy = strdup(path);
    if (copy == NULL)
        return nomem(c);
    c->fields[c->n_fields++] = copy;
    return 0;
}

static int get_string(struct ctx *c, json_t *v, const char *path, char **out)
{
    char *copy;

    if (!json_is_string(v))
        return fail(c, path, "expected a string");
    if (strlen(json_string_value(v)) != json_string_length(v))
        return fail(c, path, "contains a NUL byte");
    copy = strdup(json_string_value(v));
    if (copy == NULL)
        return nomem(c);
    free(*out);
    *out = copy;
    return 0;
}

/* A string a checker accepts; what names the expected form. */
static int get_checked(struct ctx *c, json_t *v, const char *path,
                       bool (*check)(const char *), const char *what,
                       char **out)
{
    char msg[160];

    if (get_string(c, v, path, out) < 0)
        return -1;
    if (!check(*out)) {
        snprintf(msg, sizeof(msg), "'%.64s' is not %s", *out, what);
        free(*out);
        *out = NULL;
        return fail(c, path, msg);
    }
    return 0;
}

static int get_bool(struct ctx *c, json_t *v, const char *path, bool *out)
{
    if (!json_is_boolean(v))
        return fail(c, path, "expected a boolean");
    *out = json_is_true(v);
    return 0;
}

static int get_int(struct ctx *c, json_t *v, const char *path, int64_t min,
                   int64_t max, int64_t *out)
{
    char msg[96];
    int64_t n;

    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);

        if (!isfinite(d) || d != floor(d) || fabs(d) > (double)JSON_INT_MAX)
            return fail(c, path, "expected an integer");
        n = (int64_t)d;
    } else {
        return fail(c, path, "expected an integer");
    }
    if (n < min || n > max) {
        snprintf(msg, sizeof(msg), "must be between %lld and %lld",
                 (long long)min, (long long)max);
        return fail(c, path, msg);
    }
    *out = n;
    return 0;
}

static int get_u32(struct ctx *c, json_t *v, const char *path, uint32_t min,
                   uint32_t max, uint32_t *out)
{
    int64_t n;

    if (get_int(c, v, path, min, max, &n) < 0)
        return -1;
    *out = (uint32_t)n;
    return 0;
}

static json_t *parse_object(struct ctx *c, const char *text, const char *what)
{
    json_error_t jerr;
    json_t *root;

    root =
        json_loads(text != NULL ? text : "{}", JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        /* jerr.text may quote the input; say only where it broke. */
        sg_error_report(c->err, c->code,
                        "%s: invalid JSON at line %d column %d", what,
                        jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        sg_error_report(c->err, c->code, "%s: expected an object", what);
        return NULL;
    }
    return root;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const struct k8s_kv *)a)->key,
                  ((const struct k8s_kv *)b)->key);
}

static void kv_free(struct k8s_kv *kv, size_t n)
{
    for (size_t i = 0; kv != NULL && i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

/*
 * A string map (nodeSelector, podLabels, podAnnotations): keys are
 * qualified names, values pass value_ok (NULL: any string). Keys under
 * sandgate's own prefix are refused when reserved is true.
 */
static int get_map(struct ctx *c, json_t *v, const char *path,
                   bool (*value_ok)(const char *), bool reserved,
                   size_t max_total, struct k8s_kv **out, size_t *n_out)
{
    struct k8s_kv *kv = NULL;
    size_t n = 0;
    size_t total = 0;
    const char *key;
    json_t *val;
    char sub[PATH_MAX_LEN];

    if (!json_is_object(v))
        return fail(c, path, "expected an object");
    kv = calloc(json_object_size(v) + 1, sizeof(*kv));
    if (kv == NULL)
        return nomem(c);
    json_object_foreach(v, key, val)
    {
        snprintf(sub, sizeof(sub), "%.80s.%.100s", path, key);
        if (!k8s_is_qualified_name(key)) {
            fail(c, sub, "not a valid key (a qualified name)");
            goto error;
        }
        if (reserved && (STRPREFIX(key, K8S_KEY_PREFIX) ||
                         STREQ(key, K8S_LABEL_MANAGED_BY))) {
            fail(c, sub, "is reserved by sandgate");
            goto error;
        }
        if (get_string(c, val, sub, &kv[n].value) < 0)
            goto error;
        kv[n].key = strdup(key);
        n++;
        if (kv[n - 1].key == NULL) {
            nomem(c);
            goto error;
        }
        if (value_ok != NULL && !value_ok(kv[n - 1].value)) {
            fail(c, sub, "not a valid label value");
            goto error;
        }
        total += strlen(key) + strlen(kv[n - 1].value);
    }
    if (max_total != 0 && total > max_total) {
        fail(c, path, "too large (256 KiB at most)");
        goto error;
    }
    qsort(kv, n, sizeof(*kv), kv_cmp);
    *out = kv;
    *n_out = n;
    return 0;
 error:
    kv_free(kv, n + 1);
    return -1;
}

/* ---- settings ---- */

static int load_pod_security(struct ctx *c, json_t *obj,
                             struct k8s_pod_security *p)
{
    const char *key;
    json_t *v;
    char path[PATH_MAX_LEN];

    if (!json_is_object(obj))
        return fail(c, "pod_security", "expected an object");
    json_object_foreach(obj, key, v)
    {
        int rc;

        snprintf(path, sizeof(path), "pod_security.%.100s", key);
        if (STREQ(key, "run_as_non_root")) {
            rc = get_bool(c, v, path, &p->run_as_non_root);
        } else if (STREQ(key, "read_only_root_filesystem")) {
            rc = get_bool(c, v, path, &p->read_only_root_filesystem);
        } else if (STREQ(key, "automount_service_account_token")) {
            rc = get_bool(c, v, path, &p->automount_service_account_token);
        } else if (STREQ(key, "run_as_user")) {
            rc = get_int(c, v, path, 0, INT32_MAX, &p->run_as_user);
            p->has_run_as_user = rc == 0;
        } else if (STREQ(key, "run_as_group")) {
            rc = get_int(c, v, path, 0, INT32_MAX, &p->run_as_group);
            p->has_run_as_group = rc == 0;
        } else {
            rc = fail(c, path, "unknown key");
        }
        if (rc < 0)
            return -1;
    }
    if (p->run_as_non_root && p->has_run_as_user && p->run_as_user == 0)
        return fail(c, "pod_security.run_as_user",
                    "0 contradicts run_as_non_root");
    return 0;
}

static bool is_propagation(const char *s)
{
    return STREQ(s, "Background") || STREQ(s, "Foreground");
}

static bool is_any(const char *s)
{
    (void)s;
    return true;
}

/* One warm_pools[i].pod: the block schema, minus what a pool cannot
   have. Its messages say where they come from. */
static int load_pool_pod(struct ctx *c, json_t *v, const char *path,
                         struct k8s_block *out)
{
    struct sg_error berr = SG_ERROR_INIT;
    char *text;
    int rc;

    if (!json_is_object(v))
        return fail(c, path, "expected an object");
    text = json_dumps(v, JSON_COMPACT);
    if (text == NULL)
        return nomem(c);
    rc = k8s_block_load(text, out, &berr);
    free(text);
    if (rc < 0) {
        fail(c, path, berr.message);
        sg_error_reset(&berr);
        return -1;
    }
    if (out->namespace_name != NULL || out->warm_pool != NULL ||
        out->template_name != NULL || STRNEQ(out->allocation, "Sandbox"))
        return fail(c, path,
                    "namespace and agentSandbox are the pool's, not its pod's");
    return 0;
}

static int load_pool(struct ctx *c, json_t *item, size_t i,
                     struct k8s_managed_pool *p)
{
    char path[96], sub[160];
    const char *key;
    json_t *v;

    snprintf(path, sizeof(path), "warm_pools[%zu]", i);
    if (!json_is_object(item))
        return fail(c, path, "expected an object");
    p->replicas = 1;
    json_object_foreach(item, key, v)
    {
        int rc;

        snprintf(sub, sizeof(sub), "%s.%s", path, key);
        if (STREQ(key, "name")) {
            rc = get_checked(c, v, sub, k8s_is_dns_label, "a DNS-1123 label",
                             &p->name);
        } else if (STREQ(key, "namespace")) {
            rc = get_checked(c, v, sub, k8s_is_dns_label,
                             "a namespace name (DNS-1123 label)",
                             &p->namespace_name);
        } else if (STREQ(key, "replicas")) {
            rc = get_u32(c, v, sub, 0, 1000, &p->replicas);
        } else if (STREQ(key, "image")) {
            rc = get_string(c, v, sub, &p->image);
            if (rc == 0 && p->image[0] == '\0')
                rc = fail(c, sub, "must not be empty");
        } else if (STREQ(key, "command")) {
            rc = 0;
            if (!json_is_array(v) || json_array_size(v) == 0 ||
                json_array_size(v) > 256)
                rc = fail(c, sub, "expected an array of 1 to 256 strings");
            p->command = rc == 0 ? calloc(json_array_size(v), sizeof(char *))
                                 : NULL;
            if (rc == 0 && p->command == NULL)
                rc = nomem(c);
            for (size_t k = 0; rc == 0 && k < json_array_size(v); k++) {
                rc = get_string(c, json_array_get(v, k), sub,
                                &p->command[k]);
                if (rc == 0)
                    p->n_command++;
            }
        } else if (STREQ(key, "pod")) {
            rc = load_pool_pod(c, v, sub, &p->pod);
        } else {
            rc = fail(c, sub, "unknown key");
        }
        if (rc < 0)
            return -1;
    }
    if (p->name == NULL)
        return fail(c, path, "needs a name");
    if (p->image == NULL)
        return fail(c, path, "needs an image");
    if (p->pod.allocation == NULL) {
        struct sg_error berr = SG_ERROR_INIT;

        /* No pod key: the empty block's defaults. */
        if (k8s_block_load(NULL, &p->pod, &berr) < 0) {
            sg_error_reset(&berr);
            return nomem(c);
        }
    }
    return 0;
}

static int load_pools(struct ctx *c, json_t *v, struct k8s_settings *s)
{
    size_t n;

    if (!json_is_array(v) || json_array_size(v) > 64)
        return fail(c, "warm_pools", "expected an array of at most 64 pools");
    n = json_array_size(v);
    s->pools = calloc(n + 1, sizeof(*s->pools));
    if (s->pools == NULL)
        return nomem(c);
    for (size_t i = 0; i < n; i++) {
        s->n_pools++;
        if (load_pool(c, json_array_get(v, i), i, &s->pools[i]) < 0)
            return -1;
        for (size_t k = 0; k < i; k++) {
            const struct k8s_managed_pool *a = &s->pools[k], *b = &s->pools[i];

            if (STREQ(a->name, b->name) &&
                STREQ(a->namespace_name ? a->namespace_name : "",
                      b->namespace_name ? b->namespace_name : "")) {
                char path[64];

                snprintf(path, sizeof(path), "warm_pools[%zu].name", i);
                return fail(c, path, "declared twice");
            }
        }
    }
    return 0;
}

int k8s_settings_load(const char *json, struct k8s_settings *s,
                      struct sg_error *err)
{
    struct ctx c = {.code = SG_ERR_CONFIG, .pfx = SETTINGS_PFX, .err = err};
    json_t *root;
    const char *key;
    json_t *v;
    bool allow_insecure = false;

    memset(s, 0, sizeof(*s));
    s->pod.run_as_non_root = true;
    s->pod.read_only_root_filesystem = true;
    s->request_timeout_ms = 30000;
    s->connect_timeout_ms = 10000;
    s->watch_timeout_seconds = 300;
    s->max_retries = 6;
    s->retry_base_ms = 200;
    s->retry_max_ms = 10000;
    s->list_page_size = 500;
    root = parse_object(&c, json, "kubernetes settings");
    if (root == NULL)
        return -1;
    json_object_foreach(root, key, v)
    {
        int rc;

        if (STREQ(key, "in_cluster")) {
            rc = get_bool(&c, v, key, &s->in_cluster);
        } else if (STREQ(key, "kubeconfig")) {
            rc = get_checked(&c, v, key, is_any, "a path", &s->kubeconfig);
            if (rc == 0 && s->kubeconfig[0] == '\0')
                rc = fail(&c, key, "expected a path");
        } else if (STREQ(key, "context")) {
            rc = get_string(&c, v, key, &s->context);
        } else if (STREQ(key, "default_namespace")) {
            rc = get_checked(&c, v, key, k8s_is_dns_label,
                             "a namespace name (DNS-1123 label)",
                             &s->default_namespace);
        } else if (STREQ(key, "gateway_id")) {
            rc = get_checked(&c, v, key, k8s_is_label_value,
                             "a valid label value", &s->gateway_id);
            if (rc == 0 && s->gateway_id[0] == '\0')
                rc = fail(&c, key, "must not be empty");
        } else if (STREQ(key, "cluster_wide_watch")) {
            rc = get_bool(&c, v, key, &s->cluster_wide_watch);
        } else if (STREQ(key, "delete_unknown")) {
            rc = get_bool(&c, v, key, &s->delete_unknown);
        } else if (STREQ(key, "claim_pod_labels")) {
            rc = get_bool(&c, v, key, &s->claim_pod_labels);
        } else if (STREQ(key, "warm_pools")) {
            rc = load_pools(&c, v, s);
        } else if (STREQ(key, "insecure_skip_tls_verify")) {
            rc = get_bool(&c, v, key, &s->insecure_skip_tls_verify);
        } else if (STREQ(key, "allow_insecure")) {
            rc = get_bool(&c, v, key, &allow_insecure);
        } else if (STREQ(key, "default_image")) {
            rc = get_string(&c, v, key, &s->default_image);
        } else if (STREQ(key, "container_name")) {
            rc = get_checked(&c, v, key, k8s_is_dns_label,
                             "a DNS-1123 label", &s->container_name);
        } else if (STREQ(key, "propagation_policy")) {
            rc = get_checked(&c, v, key, is_propagation,
                             "Background or Foreground",
                             &s->propagation_policy);
        } else if (STREQ(key, "pod_security")) {
            rc = load_pod_security(&c, v, &s->pod);
        } else if (STREQ(key, "request_timeout_ms")) {
            rc = get_u32(&c, v, key, 100, 600000, &s->request_timeout_ms);
        } else if (STREQ(key, "connect_timeout_ms")) {
            rc = get_u32(&c, v, key, 100, 600000, &s->connect_timeout_ms);
        } else if (STREQ(key, "watch_timeout_seconds")) {
            rc = get_u32(&c, v, key, 1, 3600, &s->watch_timeout_seconds);
        } else if (STREQ(key, "max_retries")) {
            rc = get_u32(&c, v, key, 0, 100, &s->max_retries);
        } else if (STREQ(key, "retry_base_ms")) {
            rc = get_u32(&c, v, key, 1, 600000, &s->retry_base_ms);
        } else if (STREQ(key, "retry_max_ms")) {
            rc = get_u32(&c, v, key, 1, 3600000, &s->retry_max_ms);
        } else if (STREQ(key, "list_page_size")) {
            rc = get_u32(&c, v, key, 1, 10000, &s->list_page_size);
        } else {
            rc = fail(&c, key, "unknown key");
        }
        if (rc < 0)
            goto error;
    }
    if (s->in_cluster == (s->kubeconfig != NULL)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        SETTINGS_PFX "exactly one of in_cluster: true and "
                                     "kubeconfig is required");
        goto error;
    }
    if (s->context != NULL && s->kubeconfig == NULL) {
        fail(&c, "context", "needs kubeconfig");
        goto error;
    }
    if (s->insecure_skip_tls_verify && !allow_insecure) {
        fail(&c, "insecure_skip_tls_verify",
             "refused unless allow_insecure is true");
        goto error;
    }
    if (s->retry_base_ms > s->retry_max_ms) {
        fail(&c, "retry_base_ms", "must not exceed retry_max_ms");
        goto error;
    }
    if (s->gateway_id == NULL)
        s->gateway_id = strdup("sandgate");
    if (s->container_name == NULL)
        s->container_name = strdup("sandbox");
    if (s->propagation_policy == NULL)
        s->propagation_policy = strdup("Background");
    if (s->gateway_id == NULL || s->container_name == NULL ||
        s->propagation_policy == NULL) {
        nomem(&c);
        goto error;
    }
    json_decref(root);
    return 0;
 error:
    json_decref(root);
    k8s_settings_clear(s);
    return -1;
}

static void pool_clear(struct k8s_managed_pool *p)
{
    free(p->name);
    free(p->namespace_name);
    free(p->image);
    for (size_t i = 0; i < p->n_command; i++)
        free(p->command[i]);
    free(p->command);
    k8s_block_clear(&p->pod);
}

void k8s_settings_clear(struct k8s_settings *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_pools; i++)
        pool_clear(&s->pools[i]);
    free(s->pools);
    free(s->kubeconfig);
    free(s->context);
    free(s->default_namespace);
    free(s->gateway_id);
    free(s->default_image);
    free(s->container_name);
    free(s->propagation_policy);
    memset(s, 0, sizeof(*s));
}

/* ---- block ---- */

static bool is_effect(const char *s)
{
    return STREQ(s, "NoSchedule") || STREQ(s, "PreferNoSchedule") ||
           STREQ(s, "NoExecute");
}

static bool is_operator(const char *s)
{
    return STREQ(s, "Exists") || STREQ(s, "Equal");
}

static int load_toleration(struct ctx *c, json_t *obj, const char *path,
                           struct k8s_toleration *t)
{
    const char *key;
    json_t *v;
    char sub[PATH_MAX_LEN];

    if (!json_is_object(obj))
        return fail(c, path, "expected an object");
    json_object_foreach(obj, key, v)
    {
        int rc;

        snprintf(sub, sizeof(sub), "%.100s.%.64s", path, key);
        if (STREQ(key, "key")) {
            rc = get_string(c, v, sub, &t->key);
            if (rc == 0 && t->key[0] != '\0' && !k8s_is_qualified_name(t->key))
                rc = fail(c, sub, "not a qualified name");
        } else if (STREQ(key, "operator")) {
            rc = get_checked(c, v, sub, is_operator, "Exists or Equal",
                             &t->op);
        } else if (STREQ(key, "value")) {
            rc = get_checked(c, v, sub, k8s_is_label_value,
                             "a valid label value", &t->value);
        } else if (STREQ(key, "effect")) {
            rc = get_checked(c, v, sub, is_effect,
                             "NoSchedule, PreferNoSchedule or NoExecute",
                             &t->effect);
        } else if (STREQ(key, "tolerationSeconds")) {
            rc = get_int(c, v, sub, INT32_MIN, INT32_MAX, &t->seconds);
            t->has_seconds = rc == 0;
        } else {
            rc = fail(c, sub, "unknown key");
        }
        if (rc < 0)
            return -1;
    }
    if (t->key == NULL) {
        t->key = strdup("");
        if (t->key == NULL)
            return nomem(c);
    }
    /* Kubernetes' own rules (core/v1 validation of tolerations). */
    if (t->key[0] == '\0' && (t->op == NULL || STRNEQ(t->op, "Exists")))
        return fail(c, path, "a toleration without a key needs operator "
                             "Exists");
    if (t->op != NULL && STREQ(t->op, "Exists") && t->value != NULL &&
        t->value[0] != '\0')
        return fail(c, path, "operator Exists takes no value");
    if (t->has_seconds && (t->effect == NULL || STRNEQ(t->effect, "NoExecute")))
        return fail(c, path, "tolerationSeconds needs effect NoExecute");
    return 0;
}

static int load_tolerations(struct ctx *c, json_t *v, struct k8s_block *b)
{
    size_t i;
    json_t *item;
    char path[PATH_MAX_LEN];

    if (!json_is_array(v))
        return fail(c, "tolerations", "expected an array");
    b->tolerations = calloc(json_array_size(v) + 1, sizeof(*b->tolerations));
    if (b->tolerations == NULL)
        return nomem(c);
    json_array_foreach(v, i, item)
    {
        snprintf(path, sizeof(path), "tolerations[%zu]", i);
        b->n_tolerations = i + 1;
        if (load_toleration(c, item, path, &b->tolerations[i]) < 0)
            return -1;
    }
    return 0;
}

static bool is_resource_name(const char *s)
{
    /* Unprefixed names are Kubernetes' own; extended resources carry a
       domain ("nvidia.com/gpu"). */
    if (strchr(s, '/') == NULL)
        return STREQ(s, "cpu") || STREQ(s, "memory") ||
               STREQ(s, "ephemeral-storage");
    return k8s_is_qualified_name(s) && !STRPREFIX(s, "kubernetes.io/");
}

static int load_quantities(struct ctx *c, json_t *obj, const char *path,
                           struct k8s_quantity **out, size_t *n_out)
{
    const char *key;
    json_t *v;
    char sub[PATH_MAX_LEN];
    /* The field path whole, never cut like a message's: an authorizer
       matches it (a qualified name is at most 317 bytes). */
    char field[sizeof("resources.requests.") + 320];
    char msg[128];
    struct k8s_quantity *q;
    size_t n = 0;
    int len;

    if (!json_is_object(obj))
        return fail(c, path, "expected an object");
    q = calloc(json_object_size(obj) + 1, sizeof(*q));
    if (q == NULL)
        return nomem(c);
    *out = q;
    json_object_foreach(obj, key, v)
    {
        char text[64];
        uint64_t millis;

        snprintf(sub, sizeof(sub), "%.100s.%.64s", path, key);
        if (!is_resource_name(key))
            return fail(c, sub, "unknown resource name");
        if (json_is_string(v)) {
            snprintf(text, sizeof(text), "%s", json_string_value(v));
            if (strlen(json_string_value(v)) >= sizeof(text)) {
                return fail(c, sub, "invalid quantity (too long)");
            }
        } else if (json_is_integer(v)) {
            snprintf(text, sizeof(text), "%lld",
                     (long long)json_integer_value(v));
        } else if (json_is_real(v)) {
            /* A google.protobuf.Struct carries every number as a double. */
            snprintf(text, sizeof(text), "%.15g", json_real_value(v));
        } else {
            return fail(c, sub, "expected a quantity (string or number)");
        }
        if (k8s_quantity_parse(text, &millis) < 0) {
            snprintf(msg, sizeof(msg), "invalid quantity '%.40s'", text);
            return fail(c, sub, msg);
        }
        q[n].name = strdup(key);
        q[n].text = strdup(text);
        n++;
        *n_out = n;
        if (q[n - 1].name == NULL || q[n - 1].text == NULL)
            return nomem(c);
        q[n - 1].value = STREQ(key, "cpu") ? millis : (millis + 999) / 1000;
        len = snprintf(field, sizeof(field), "%s.%s", path, key);
        if (len < 0 || (size_t)len >= sizeof(field))
            return fail(c, sub, "resource name too long");
        if (add_field(c, field) < 0)
            return -1;
    }
    return 0;
}

static const struct k8s_quantity *find_q(const struct k8s_quantity *q,
                                         size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (STREQ(q[i].name, name))
            return &q[i];
    }
    return NULL;
}

static int load_resources(struct ctx *c, json_t *obj, struct k8s_block *b)
{
    const char *key;
    json_t *v;
    char sub[PATH_MAX_LEN];

    if (!json_is_object(obj))
        return fail(c, "resources", "expected an object");
    json_object_foreach(obj, key, v)
    {
        int rc;

        snprintf(sub, sizeof(sub), "resources.%.64s", key);
        if (STREQ(key, "requests"))
            rc = load_quantities(c, v, sub, &b->requests, &b->n_requests);
        else if (STREQ(key, "limits"))
            rc = load_quantities(c, v, sub, &b->limits, &b->n_limits);
        else
            rc = fail(c, sub, "unknown key");
        if (rc < 0)
            return -1;
    }
    for (size_t i = 0; i < b->n_requests; i++) {
        const struct k8s_quantity *l =
            find_q(b->limits, b->n_limits, b->requests[i].name);

        if (l != NULL && b->requests[i].value > l->value) {
            snprintf(sub, sizeof(sub), "resources.requests.%.64s",
                     b->requests[i].name);
            return fail(c, sub, "must be less than or equal to the limit");
        }
    }
    return 0;
}

static int load_pull_secrets(struct ctx *c, json_t *v, struct k8s_block *b)
{
    size_t i;
    json_t *item;
    char path[PATH_MAX_LEN];

    if (!json_is_array(v))
        return fail(c, "imagePullSecrets", "expected an array");
    b->image_pull_secrets =
        calloc(json_array_size(v) + 1, sizeof(*b->image_pull_secrets));
    if (b->image_pull_secrets == NULL)
        return nomem(c);
    json_array_foreach(v, i, item)
    {
        json_t *name = item;

        snprintf(path, sizeof(path), "imagePullSecrets[%zu]", i);
        /* The pod's own shape ({"name": x}) or just the name. */
        if (json_is_object(item)) {
            const char *k;
            json_t *kv;

            name = NULL;
            json_object_foreach(item, k, kv)
            {
                if (STRNEQ(k, "name")) {
                    char sub[PATH_MAX_LEN];

                    snprintf(sub, sizeof(sub), "%.100s.%.64s", path, k);
                    return fail(c, sub, "unknown key");
                }
                name = kv;
            }
            if (name == NULL)
                return fail(c, path, "needs a name");
            snprintf(path, sizeof(path), "imagePullSecrets[%zu].name", i);
        }
        b->n_image_pull_secrets = i + 1;
        if (get_checked(c, name, path, k8s_is_dns_subdomain,
                        "a secret name (DNS-1123 subdomain)",
                        &b->image_pull_secrets[i]) < 0)
            return -1;
    }
    return 0;
}

static bool is_allocation(const char *s)
{
    return STREQ(s, "Sandbox") || STREQ(s, "SandboxClaim");
}

static int load_agent_sandbox(struct ctx *c, json_t *obj, struct k8s_block *b)
{
    const char *key;
    json_t *v;
    char sub[PATH_MAX_LEN];

    if (!json_is_object(obj))
        return fail(c, "agentSandbox", "expected an object");
    json_object_foreach(obj, key, v)
    {
        int rc;

        snprintf(sub, sizeof(sub), "agentSandbox.%.64s", key);
        if (STREQ(key, "allocation"))
            rc = get_checked(c, v, sub, is_allocation,
                             "Sandbox or SandboxClaim", &b->allocation);
        else if (STREQ(key, "template"))
            rc = get_checked(c, v, sub, k8s_is_dns_subdomain,
                             "a SandboxTemplate name", &b->template_name);
        else if (STREQ(key, "warmPool"))
            rc = get_checked(c, v, sub, k8s_is_dns_subdomain,
                             "a SandboxWarmPool name", &b->warm_pool);
        else
            rc = fail(c, sub, "unknown key");
        if (rc < 0 || add_field(c, sub) < 0)
            return -1;
    }
    return 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A claim's pod is its warm pool's template's: the keys that shape a pod
   cannot apply to it. */
static int claim_refuses(struct ctx *c, const struct k8s_block *b)
{
    static const char why[] = "not with allocation SandboxClaim (the warm "
                              "pool's SandboxTemplate defines the pod)";
    const char *key = NULL;

    if (b->service_account != NULL)
        key = "serviceAccountName";
    else if (b->runtime_class != NULL)
        key = "runtimeClassName";
    else if (b->priority_class != NULL)
        key = "priorityClassName";
    else if (b->n_node_selector > 0)
        key = "nodeSelector";
    else if (b->n_tolerations > 0)
        key = "tolerations";
    else if (b->n_requests > 0 || b->n_limits > 0)
        key = "resources";
    else if (b->n_image_pull_secrets > 0)
        key = "imagePullSecrets";
    if (key == NULL)
        return 0;
    fail(c, key, why);
    return -1;
}

int k8s_block_load(const char *json, struct k8s_block *b, struct sg_error *err)
{
    struct ctx c = {
        .code = SG_ERR_INVALID_ARGUMENT, .pfx = BLOCK_PFX, .err = err};
    json_t *root;
    const char *key;
    json_t *v;

    memset(b, 0, sizeof(*b));
    root = parse_object(&c, json, "kubernetes");
    if (root == NULL)
        return -1;
    json_object_foreach(root, key, v)
    {
        int rc;
        bool leaf = true; /* the key itself is the field path */

        if (STREQ(key, "namespace")) {
            rc = get_checked(&c, v, key, k8s_is_dns_label,
                             "a namespace name (DNS-1123 label)",
                             &b->namespace_name);
        } else if (STREQ(key, "serviceAccountName")) {
            rc = get_checked(&c, v, key, k8s_is_dns_subdomain,
                             "a service account name (DNS-1123 subdomain)",
                             &b->service_account);
        } else if (STREQ(key, "runtimeClassName")) {
            rc = get_checked(&c, v, key, k8s_is_dns_subdomain,
                             "a runtime class name (DNS-1123 subdomain)",
                             &b->runtime_class);
        } else if (STREQ(key, "priorityClassName")) {
            rc = get_checked(&c, v, key, k8s_is_dns_subdomain,
                             "a priority class name (DNS-1123 subdomain)",
                             &b->priority_class);
        } else if (STREQ(key, "nodeSelector")) {
            rc = get_map(&c, v, key, k8s_is_label_value, false, 0,
                         &b->node_selector, &b->n_node_selector);
        } else if (STREQ(key, "tolerations")) {
            rc = load_tolerations(&c, v, b);
        } else if (STREQ(key, "resources")) {
            rc = load_resources(&c, v, b);
            leaf = false;
        } else if (STREQ(key, "podLabels")) {
            rc = get_map(&c, v, key, k8s_is_label_value, true, 0,
                         &b->pod_labels, &b->n_pod_labels);
        } else if (STREQ(key, "podAnnotations")) {
            rc = get_map(&c, v, key, NULL, true, ANNOTATIONS_MAX,
                         &b->pod_annotations, &b->n_pod_annotations);
        } else if (STREQ(key, "imagePullSecrets")) {
            rc = load_pull_secrets(&c, v, b);
        } else if (STREQ(key, "agentSandbox")) {
            rc = load_agent_sandbox(&c, v, b);
            leaf = false;
        } else {
            rc = fail(&c, key, "unknown key");
        }
        if (rc < 0 || (leaf && add_field(&c, key) < 0))
            goto error;
    }
    if (b->allocation == NULL) {
        b->allocation = strdup("Sandbox");
        if (b->allocation == NULL) {
            nomem(&c);
            goto error;
        }
    }
    if (STREQ(b->allocation, "Sandbox") && b->warm_pool != NULL) {
        fail(&c, "agentSandbox.warmPool", "needs allocation SandboxClaim");
        goto error;
    }
    if (STREQ(b->allocation, "Sandbox") && b->template_name != NULL) {
        fail(&c, "agentSandbox.template", "needs allocation SandboxClaim");
        goto error;
    }
    if (STREQ(b->allocation, "SandboxClaim") && b->warm_pool == NULL) {
        fail(&c, "agentSandbox.warmPool",
             "required with allocation SandboxClaim (a claim names its "
             "pool)");
        goto error;
    }
    if (STREQ(b->allocation, "SandboxClaim") && claim_refuses(&c, b) < 0)
        goto error;
    if (c.n_fields > 0)
        qsort(c.fields, c.n_fields, sizeof(*c.fields), str_cmp);
    b->fields = c.fields;
    b->n_fields = c.n_fields;
    c.fields = NULL;
    json_decref(root);
    return 0;
 error:
    for (size_t i = 0; i < c.n_fields; i++)
        free(c.fields[i]);
    free(c.fields);
    json_decref(root);
    k8s_block_clear(b);
    return -1;
}

static void q_free(struct k8s_quantity *q, size_t n)
{
    for (size_t i = 0; q != NULL && i < n; i++) {
        free(q[i].name);
        free(q[i].text);
    }
    free(q);
}

void k8s_block_clear(struct k8s_block *b)
{
    if (b == NULL)
        return;
    free(b->namespace_name);
    free(b->service_account);
    free(b->runtime_class);
    free(b->priority_class);
    kv_free(b->node_selector, b->n_node_selector);
    for (size_t i = 0; b->tolerations != NULL && i < b->n_tolerations; i++) {
        free(b->tolerations[i].key);
        free(b->tolerations[i].op);
        free(b->tolerations[i].value);
        free(b->tolerations[i].effect);
    }
    free(b->tolerations);
    q_free(b->requests, b->n_requests);
    q_free(b->limits, b->n_limits);
    kv_free(b->pod_labels, b->n_pod_labels);
    kv_free(b->pod_annotations, b->n_pod_annotations);
    for (size_t i = 0; b->image_pull_secrets != NULL &&
                       i < b->n_image_pull_secrets;
         i++)
        free(b->image_pull_secrets[i]);
    free(b->image_pull_secrets);
    free(b->allocation);
    free(b->template_name);
    free(b->warm_pool);
    for (size_t i = 0; i < b->n_fields; i++)
        free(b->fields[i]);
    free(b->fields);
    memset(b, 0, sizeof(*b));
}

const char *k8s_block_namespace(const struct k8s_block *b,
                                const struct k8s_settings *s)
{
    if (b->namespace_name != NULL)
        return b->namespace_name;
    return s->default_namespace != NULL ? s->default_namespace : "default";
}

/* ---- describe ---- */

static int dup_opt(char *(*host_strdup)(const char *), const char *s,
                   char **out)
{
    if (s == NULL)
        return 0;
    *out = host_strdup(s);
    return *out != NULL ? 0 : -1;
}

static uint64_t largest(const struct k8s_block *b, const char *name)
{
    const struct k8s_quantity *r = find_q(b->requests, b->n_requests, name);
    const struct k8s_quantity *l = find_q(b->limits, b->n_limits, name);
    uint64_t v = r != NULL ? r->value : 0;

    if (l != NULL && l->value > v)
        v = l->value;
    return v;
}

int k8s_block_describe(const struct k8s_block *b, const struct k8s_settings *s,
                       void *(*host_alloc)(size_t),
                       char *(*host_strdup)(const char *),
                       struct sg_driver_placement *out)
{
    if (dup_opt(host_strdup, k8s_block_namespace(b, s), &out->namespace_name) <
            0 ||
        dup_opt(host_strdup, b->service_account, &out->service_account) < 0 ||
        dup_opt(host_strdup, b->runtime_class, &out->runtime_class) < 0 ||
        dup_opt(host_strdup, b->allocation, &out->allocation_mode) < 0 ||
        dup_opt(host_strdup, b->template_name, &out->template_name) < 0 ||
        dup_opt(host_strdup, b->warm_pool, &out->warm_pool) < 0)
        return -1;
    if (b->n_fields > 0) {
        out->fields = host_alloc(b->n_fields * sizeof(char *));
        if (out->fields == NULL)
            return -1;
        for (size_t i = 0; i < b->n_fields; i++) {
            out->fields[i] = host_strdup(b->fields[i]);
            if (out->fields[i] == NULL)
                return -1;
            out->n_fields = i + 1;
        }
    }
    if (b->n_node_selector > 0) {
        out->node_selector_keys =
            host_alloc(b->n_node_selector * sizeof(char *));
        out->node_selector_values =
            host_alloc(b->n_node_selector * sizeof(char *));
        if (out->node_selector_keys == NULL ||
            out->node_selector_values == NULL)
            return -1;
        memset(out->node_selector_keys, 0, b->n_node_selector * sizeof(char *));
        memset(out->node_selector_values, 0,
               b->n_node_selector * sizeof(char *));
        out->n_node_selector = b->n_node_selector;
        for (size_t i = 0; i < b->n_node_selector; i++) {
            out->node_selector_keys[i] = host_strdup(b->node_selector[i].key);
            out->node_selector_values[i] =
                host_strdup(b->node_selector[i].value);
            if (out->node_selector_keys[i] == NULL ||
                out->node_selector_values[i] == NULL)
                return -1;
        }
    }
    if (b->n_tolerations > 0) {
        out->toleration_keys = host_alloc(b->n_tolerations * sizeof(char *));
        if (out->toleration_keys == NULL)
            return -1;
        memset(out->toleration_keys, 0, b->n_tolerations * sizeof(char *));
        out->n_toleration_keys = b->n_tolerations;
        for (size_t i = 0; i < b->n_tolerations; i++) {
            out->toleration_keys[i] = host_strdup(b->tolerations[i].key);
            if (out->toleration_keys[i] == NULL)
                return -1;
        }
        qsort(out->toleration_keys, out->n_toleration_keys, sizeof(char *),
              str_cmp);
    }
    out->cpu_millis = largest(b, "cpu");
    out->memory_bytes = largest(b, "memory");
    return 0;
}
