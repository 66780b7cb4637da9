/*
 * k8s_config.h: the kubernetes driver's two schemas, decoded strictly.
 *
 * Settings (the operator's driver.settings object):
 *   in_cluster                bool    use the pod's service account
 *   kubeconfig                string  path of a kubeconfig file
 *   context                   string  kubeconfig context (default: its
 *                                     current-context)
 *     exactly one of in_cluster: true and kubeconfig is required
 *   default_namespace         label   default: the context's namespace,
 *                                     else "default"
 *   gateway_id                label value, default "sandgate": every
 *                                     object carries it and every list and
 *                                     watch is filtered by it
 *   cluster_wide_watch        bool    one watch over all namespaces instead
 *                                     of one per namespace in use
 *   delete_unknown            bool    delete objects with our gateway id
 *                                     but no valid sandbox id label
 *   claim_pod_labels          bool    put our labels on a claim's pod too
 *                                     (additionalPodMetadata.labels); only
 *                                     where the claim controller allows
 *                                     the sandgate.io label domain
 *   warm_pools                array of {name, namespace, replicas,
 *                                     image, command, pod}: warm pools the
 *                                     gateway creates and keeps (a
 *                                     SandboxTemplate and a SandboxWarmPool
 *                                     of that name); pod is the block
 *                                     schema without namespace and
 *                                     agentSandbox
 *   insecure_skip_tls_verify  bool    refused unless allow_insecure: true
 *   allow_insecure            bool
 *   default_image             string  used when a sandbox has no image
 *   container_name            label   default "sandbox"
 *   propagation_policy        "Background" (default) | "Foreground"
 *   pod_security              {run_as_non_root (true), run_as_user,
 *                              run_as_group, read_only_root_filesystem
 *                              (true), automount_service_account_token
 *                              (false)}
 *   request_timeout_ms        integer, default 30000
 *   connect_timeout_ms        integer, default 10000
 *   watch_timeout_seconds     integer, default 300 (server-side)
 *   max_retries               integer, default 6 (429, 5xx, transport)
 *   retry_base_ms             integer, default 200
 *   retry_max_ms              integer, default 10000
 *   list_page_size            integer, default 500
 *
 * Block (driver_config.kubernetes): namespace, serviceAccountName,
 * runtimeClassName, nodeSelector, tolerations, resources {requests,
 * limits}, priorityClassName, podLabels, podAnnotations, imagePullSecrets,
 * agentSandbox {allocation: Sandbox | SandboxClaim, template, warmPool}.
 * With SandboxClaim, warmPool is required and the keys that shape the pod
 * (serviceAccountName, runtimeClassName, priorityClassName, nodeSelector,
 * tolerations, resources, imagePullSecrets) are refused: the pool's
 * SandboxTemplate defines the pod.
 *
 * Messages name the path: "kubernetes.resources.limits.cpu: invalid
 * quantity '2x'", "kubernetes.foo: unknown key"; settings messages start
 * with "kubernetes settings: ".
 *
 * THREAD SAFETY: pure functions of their arguments; any thread.
 */
#ifndef SG_K8S_CONFIG_H
#define SG_K8S_CONFIG_H

#include "internal.h"
#include "error.h"
#include "k8s_names.h"

#include <sandgate/driver.h>

/* Label and annotation keys sandgate owns on every object it makes. */
#define K8S_KEY_PREFIX "sandgate.io/"
#define K8S_LABEL_SANDBOX_ID "sandgate.io/sandbox-id"
#define K8S_LABEL_GATEWAY_ID "sandgate.io/gateway-id"
#define K8S_LABEL_TENANT "sandgate.io/tenant"
#define K8S_LABEL_PROJECT "sandgate.io/project"
#define K8S_LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define K8S_MANAGED_BY "sandgate"
#define K8S_ANN_OWNER "sandgate.io/owner"
#define K8S_ANN_TENANT "sandgate.io/tenant"
#define K8S_ANN_PROJECT "sandgate.io/project"
#define K8S_ANN_NAME "sandgate.io/sandbox-name"
#define K8S_ANN_REQUEST_ID "sandgate.io/request-id"
#define K8S_ANN_POLICY_HASH "sandgate.io/policy-hash"
#define K8S_ANN_ACCESS_PROFILE "sandgate.io/access-profile"
#define K8S_ANN_RUNTIME_PROFILE "sandgate.io/runtime-profile"

struct k8s_pod_security {
    bool run_as_non_root;
    bool read_only_root_filesystem;
    bool automount_service_account_token;
    bool has_run_as_user;
    bool has_run_as_group;
    int64_t run_as_user;
    int64_t run_as_group;
};

struct k8s_block;
struct k8s_managed_pool;

struct k8s_settings {
    bool in_cluster;
    char *kubeconfig;
    char *context;
    char *default_namespace; /* NULL: from the credentials, else "default" */
    char *gateway_id;
    bool cluster_wide_watch;
    bool delete_unknown;
    bool claim_pod_labels;
    bool insecure_skip_tls_verify;
    char *default_image;
    char *container_name;
    char *propagation_policy;
    struct k8s_pod_security pod;
    uint32_t request_timeout_ms;
    uint32_t connect_timeout_ms;
    uint32_t watch_timeout_seconds;
    uint32_t max_retries;
    uint32_t retry_base_ms;
    uint32_t retry_max_ms;
    uint32_t list_page_size;
    struct k8s_managed_pool *pools;
    size_t n_pools;
};

struct k8s_kv {
    char *key;
    char *value;
};

struct k8s_toleration {
    char *key;      /* "" when absent */
    char *op;       /* "Equal" or "Exists"; NULL when absent */
    char *value;    /* NULL when absent */
    char *effect;   /* NULL when absent */
    bool has_seconds;
    int64_t seconds;
};

/* A resource quantity: the canonical text sent to the API and its value
   in the unit authorizers compare (millicores for cpu, else units). */
struct k8s_quantity {
    char *name;  /* "cpu", "memory", ... */
    char *text;
    uint64_t value; /* cpu: millicores, rounded up; others: rounded up */
};

struct k8s_block {
    char *namespace_name; /* NULL: not given */
    char *service_account;
    char *runtime_class;
    char *priority_class;
    struct k8s_kv *node_selector; /* sorted by key */
    size_t n_node_selector;
    struct k8s_toleration *tolerations;
    size_t n_tolerations;
    struct k8s_quantity *requests;
    size_t n_requests;
    struct k8s_quantity *limits;
    size_t n_limits;
    struct k8s_kv *pod_labels; /* sorted */
    size_t n_pod_labels;
    struct k8s_kv *pod_annotations; /* sorted */
    size_t n_pod_annotations;
    char **image_pull_secrets;
    size_t n_image_pull_secrets;
    char *allocation; /* "Sandbox" (default) or "SandboxClaim" */
    char *template_name;
    char *warm_pool;
    char **fields; /* dotted paths set, sorted */
    size_t n_fields;
};

/* A warm pool declared in the settings. */
struct k8s_managed_pool {
    char *name;           /* of the SandboxTemplate and the SandboxWarmPool */
    char *namespace_name; /* NULL: the default namespace */
    uint32_t replicas;
    char *image;
    char **command;
    size_t n_command;
    struct k8s_block pod; /* the pod's keys; no namespace, no agentSandbox */
};

/* Decode settings JSON (NULL = "{}") into *out (zeroed first). Returns 0
   or -1 with err (SG_ERR_CONFIG). */
int k8s_settings_load(const char *json, struct k8s_settings *out,
                      struct sg_error *err) SG_WARN_UNUSED_RESULT;
void k8s_settings_clear(struct k8s_settings *s);

/* Decode a per-sandbox block (NULL = "{}") into *out (zeroed first).
   Returns 0 or -1 with err (SG_ERR_INVALID_ARGUMENT). */
int k8s_block_load(const char *json, struct k8s_block *out,
                   struct sg_error *err) SG_WARN_UNUSED_RESULT;
void k8s_block_clear(struct k8s_block *b);

/* The namespace a block places its sandbox in (borrowed). */
const char *k8s_block_namespace(const struct k8s_block *b,
                                const struct k8s_settings *s);

/*
 * Fill *out from a decoded block, every string allocated with host_strdup
 * and arrays with host_alloc (the ABI's allocator). Returns 0 or -1 when
 * memory runs out (the caller clears *out).
 */
int k8s_block_describe(const struct k8s_block *b, const struct k8s_settings *s,
                       void *(*host_alloc)(size_t),
                       char *(*host_strdup)(const char *),
                       struct sg_driver_placement *out) SG_WARN_UNUSED_RESULT;

/*
 * Parse a Kubernetes quantity ("500m", "2Gi", "1e3", "0.5"). On success
 * *millis is the value times 1000, rounded up. Returns 0, or -1 when the
 * text is not a quantity, is negative or is too large.
 */
int k8s_quantity_parse(const char *text, uint64_t *millis);


/* s made a valid label value (invalid bytes -> '-', trimmed, <= 63) into
   out (64 bytes). */
void k8s_label_sanitize(const char *s, char out[64]);

#endif /* SG_K8S_CONFIG_H */
