/*
 * test_k8s_config.c: the kubernetes driver's settings and per-sandbox
 * block (drivers/kubernetes/k8s_config.c), the placement facts describe
 * reports, the Sandbox object it builds and the state it reads back
 * (k8s_objects.c), and the client's backoff and escaping.
 */
#include "internal.h"

#include "testutils.h"

#include "error.h"
#include "k8s_client.h"
#include "k8s_config.h"
#include "k8s_objects.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static void *t_alloc(size_t n)
{
    return malloc(n);
}

static char *t_strdup(const char *s)
{
    return strdup(s);
}

static void placement_clear(struct sg_driver_placement *p)
{
    free(p->namespace_name);
    free(p->service_account);
    free(p->runtime_class);
    free(p->allocation_mode);
    free(p->template_name);
    free(p->warm_pool);
    for (size_t i = 0; i < p->n_fields; i++)
        free(p->fields[i]);
    free(p->fields);
    for (size_t i = 0; i < p->n_node_selector; i++) {
        free(p->node_selector_keys[i]);
        free(p->node_selector_values[i]);
    }
    free(p->node_selector_keys);
    free(p->node_selector_values);
    for (size_t i = 0; i < p->n_toleration_keys; i++)
        free(p->toleration_keys[i]);
    free(p->toleration_keys);
    memset(p, 0, sizeof(*p));
}

/* ---- settings ---- */

START_TEST(test_settings_defaults)
{
    struct k8s_settings s;
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(k8s_settings_load("{\"in_cluster\": true}", &s, &err), 0);
    ck_assert(s.in_cluster);
    ck_assert_ptr_null(s.kubeconfig);
    ck_assert_str_eq(s.gateway_id, "sandgate");
    ck_assert_str_eq(s.container_name, "sandbox");
    ck_assert_str_eq(s.propagation_policy, "Background");
    ck_assert(s.pod.run_as_non_root);
    ck_assert(s.pod.read_only_root_filesystem);
    ck_assert(!s.pod.automount_service_account_token);
    ck_assert(!s.cluster_wide_watch);
    ck_assert(!s.delete_unknown);
    ck_assert(!s.insecure_skip_tls_verify);
    ck_assert_uint_eq(s.request_timeout_ms, 30000);
    ck_assert_uint_eq(s.watch_timeout_seconds, 300);
    ck_assert_uint_eq(s.max_retries, 6);
    ck_assert_uint_eq(s.list_page_size, 500);
    k8s_settings_clear(&s);
}
END_TEST

START_TEST(test_settings_every_key)
{
    struct k8s_settings s;
    struct sg_error err = SG_ERROR_INIT;
    const char *json =
        "{\"kubeconfig\": \"/etc/kube/config\", \"context\": \"prod\","
        " \"default_namespace\": \"sbx\", \"gateway_id\": \"gw-1\","
        " \"cluster_wide_watch\": true, \"delete_unknown\": true,"
        " \"insecure_skip_tls_verify\": true, \"allow_insecure\": true,"
        " \"default_image\": \"busybox:1.37\", \"container_name\": \"main\","
        " \"propagation_policy\": \"Foreground\","
        " \"pod_security\": {\"run_as_non_root\": true, \"run_as_user\": 1000,"
        "   \"run_as_group\": 2000.0, \"read_only_root_filesystem\": false,"
        "   \"automount_service_account_token\": true},"
        " \"request_timeout_ms\": 5000, \"connect_timeout_ms\": 1000,"
        " \"watch_timeout_seconds\": 60, \"max_retries\": 3,"
        " \"retry_base_ms\": 50, \"retry_max_ms\": 2000,"
        " \"list_page_size\": 10}";

    ck_assert_int_eq(k8s_settings_load(json, &s, &err), 0);
    ck_assert_str_eq(s.kubeconfig, "/etc/kube/config");
    ck_assert_str_eq(s.context, "prod");
    ck_assert_str_eq(s.default_namespace, "sbx");
    ck_assert_str_eq(s.gateway_id, "gw-1");
    ck_assert(s.cluster_wide_watch && s.delete_unknown);
    ck_assert(s.insecure_skip_tls_verify);
    ck_assert_str_eq(s.default_image, "busybox:1.37");
    ck_assert_str_eq(s.container_name, "main");
    ck_assert_str_eq(s.propagation_policy, "Foreground");
    ck_assert(s.pod.has_run_as_user && s.pod.run_as_user == 1000);
    ck_assert(s.pod.has_run_as_group && s.pod.run_as_group == 2000);
    ck_assert(!s.pod.read_only_root_filesystem);
    ck_assert(s.pod.automount_service_account_token);
    ck_assert_uint_eq(s.request_timeout_ms, 5000);
    ck_assert_uint_eq(s.connect_timeout_ms, 1000);
    ck_assert_uint_eq(s.watch_timeout_seconds, 60);
    ck_assert_uint_eq(s.max_retries, 3);
    ck_assert_uint_eq(s.retry_base_ms, 50);
    ck_assert_uint_eq(s.retry_max_ms, 2000);
    ck_assert_uint_eq(s.list_page_size, 10);
    k8s_settings_clear(&s);
}
END_TEST

static const struct {
    const char *json;
    const char *message;
} settings_errors[] = {
    {"{}", "kubernetes settings: exactly one of in_cluster: true and "
           "kubeconfig is required"},
    {"{\"in_cluster\": true, \"kubeconfig\": \"/k\"}",
     "kubernetes settings: exactly one of in_cluster: true and kubeconfig "
     "is required"},
    {"{\"in_cluster\": \"yes\"}",
     "kubernetes settings: in_cluster: expected a boolean"},
    {"{\"in_cluster\": true, \"bogus\": 1}",
     "kubernetes settings: bogus: unknown key"},
    {"{\"in_cluster\": true, \"insecure_skip_tls_verify\": true}",
     "kubernetes settings: insecure_skip_tls_verify: refused unless "
     "allow_insecure is true"},
    {"{\"in_cluster\": true, \"context\": \"x\"}",
     "kubernetes settings: context: needs kubeconfig"},
    {"{\"in_cluster\": true, \"default_namespace\": \"Bad_NS\"}",
     "kubernetes settings: default_namespace: 'Bad_NS' is not a namespace "
     "name (DNS-1123 label)"},
    {"{\"in_cluster\": true, \"gateway_id\": \"\"}",
     "kubernetes settings: gateway_id: must not be empty"},
    {"{\"in_cluster\": true, \"gateway_id\": \"a b\"}",
     "kubernetes settings: gateway_id: 'a b' is not a valid label value"},
    {"{\"in_cluster\": true, \"request_timeout_ms\": 1.5}",
     "kubernetes settings: request_timeout_ms: expected an integer"},
    {"{\"in_cluster\": true, \"request_timeout_ms\": 10}",
     "kubernetes settings: request_timeout_ms: must be between 100 and "
     "600000"},
    {"{\"in_cluster\": true, \"pod_security\": {\"run_as_user\": 0}}",
     "kubernetes settings: pod_security.run_as_user: 0 contradicts "
     "run_as_non_root"},
    {"{\"in_cluster\": true, \"pod_security\": {\"privileged\": true}}",
     "kubernetes settings: pod_security.privileged: unknown key"},
    {"{\"in_cluster\": true, \"propagation_policy\": \"Orphan\"}",
     "kubernetes settings: propagation_policy: 'Orphan' is not Background "
     "or Foreground"},
    {"{\"in_cluster\": true, \"retry_base_ms\": 5000, \"retry_max_ms\": 10}",
     "kubernetes settings: retry_base_ms: must not exceed retry_max_ms"},
    {"{\"in_cluster\": true, \"warm_pools\": {}}",
     "kubernetes settings: warm_pools: expected an array of at most 64 pools"},
    {"{\"in_cluster\": true, \"warm_pools\": [{\"image\": \"i\"}]}",
     "kubernetes settings: warm_pools[0]: needs a name"},
    {"{\"in_cluster\": true, \"warm_pools\": [{\"name\": \"p\"}]}",
     "kubernetes settings: warm_pools[0]: needs an image"},
    {"{\"in_cluster\": true, \"warm_pools\": [{\"name\": \"p\", "
     "\"image\": \"i\", \"replicas\": 5000}]}",
     "kubernetes settings: warm_pools[0].replicas: must be between 0 and "
     "1000"},
    {"{\"in_cluster\": true, \"warm_pools\": [{\"name\": \"p\", "
     "\"image\": \"i\", \"size\": 1}]}",
     "kubernetes settings: warm_pools[0].size: unknown key"},
    {"{\"in_cluster\": true, \"warm_pools\": [{\"name\": \"p\", "
     "\"image\": \"i\", \"pod\": {\"namespace\": \"x\"}}]}",
     "kubernetes settings: warm_pools[0].pod: namespace and agentSandbox "
     "are the pool's, not its pod's"},
    {"{\"in_cluster\": true, \"warm_pools\": [{\"name\": \"p\", "
     "\"image\": \"i\", \"pod\": {\"resources\": {\"limits\": "
     "{\"cpu\": \"2x\"}}}}]}",
     "kubernetes settings: warm_pools[0].pod: kubernetes.resources.limits."
     "cpu: invalid quantity '2x'"},
    {"{\"in_cluster\": true, \"warm_pools\": [{\"name\": \"p\", "
     "\"image\": \"i\"}, {\"name\": \"p\", \"image\": \"j\"}]}",
     "kubernetes settings: warm_pools[1].name: declared twice"},
    {"[1]", "kubernetes settings: expected an object"},
    {"{\"in_cluster\": tru}", "kubernetes settings: invalid JSON at line 1 "
                              "column 18"},
};

START_TEST(test_settings_errors)
{
    struct k8s_settings s;
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(k8s_settings_load(settings_errors[_i].json, &s, &err),
                     -1);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message, settings_errors[_i].message);
    sg_error_reset(&err);
}
END_TEST

/* ---- block ---- */

static const char *full_block =
    "{\"namespace\": \"sbx-team-a\", \"serviceAccountName\": \"runner\","
    " \"runtimeClassName\": \"gvisor\", \"priorityClassName\": \"low\","
    " \"nodeSelector\": {\"zone\": \"b\", \"platform.example.com/pool\": "
    "\"secure-rce\"},"
    " \"tolerations\": [{\"key\": \"platform.example.com/secure-rce\","
    "   \"operator\": \"Exists\"}, {\"operator\": \"Exists\"},"
    "   {\"key\": \"a\", \"operator\": \"Equal\", \"value\": \"v\","
    "    \"effect\": \"NoExecute\", \"tolerationSeconds\": 30}],"
    " \"resources\": {\"requests\": {\"cpu\": \"500m\", \"memory\": \"2Gi\"},"
    "   \"limits\": {\"cpu\": 2, \"memory\": \"4Gi\"}},"
    " \"podLabels\": {\"team\": \"a\"},"
    " \"podAnnotations\": {\"example.com/note\": \"any text\"},"
    " \"imagePullSecrets\": [\"regcred\", {\"name\": \"other\"}],"
    " \"agentSandbox\": {\"allocation\": \"Sandbox\"}}";

START_TEST(test_block_every_key)
{
    struct k8s_block b;
    struct sg_error err = SG_ERROR_INIT;
    static const char *const fields[] = {
        "agentSandbox.allocation", "imagePullSecrets", "namespace",
        "nodeSelector", "podAnnotations", "podLabels", "priorityClassName",
        "resources.limits.cpu", "resources.limits.memory",
        "resources.requests.cpu", "resources.requests.memory",
        "runtimeClassName", "serviceAccountName", "tolerations",
    };

    ck_assert_int_eq(k8s_block_load(full_block, &b, &err), 0);
    ck_assert_str_eq(b.namespace_name, "sbx-team-a");
    ck_assert_str_eq(b.service_account, "runner");
    ck_assert_str_eq(b.runtime_class, "gvisor");
    ck_assert_str_eq(b.priority_class, "low");
    ck_assert_uint_eq(b.n_node_selector, 2);
    ck_assert_str_eq(b.node_selector[0].key, "platform.example.com/pool");
    ck_assert_str_eq(b.node_selector[1].key, "zone");
    ck_assert_uint_eq(b.n_tolerations, 3);
    ck_assert_str_eq(b.tolerations[1].key, "");
    ck_assert(b.tolerations[2].has_seconds && b.tolerations[2].seconds == 30);
    ck_assert_uint_eq(b.n_requests, 2);
    ck_assert_uint_eq(b.n_limits, 2);
    ck_assert_uint_eq(b.n_image_pull_secrets, 2);
    ck_assert_str_eq(b.image_pull_secrets[1], "other");
    ck_assert_str_eq(b.allocation, "Sandbox");
    ck_assert_uint_eq(b.n_fields, SG_N_ELEMENTS(fields));
    for (size_t i = 0; i < b.n_fields; i++)
        ck_assert_str_eq(b.fields[i], fields[i]);
    k8s_block_clear(&b);
}
END_TEST

START_TEST(test_block_empty)
{
    struct k8s_block b;
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(k8s_block_load("{}", &b, &err), 0);
    ck_assert_ptr_null(b.namespace_name);
    ck_assert_str_eq(b.allocation, "Sandbox");
    ck_assert_uint_eq(b.n_fields, 0);
    k8s_block_clear(&b);
    ck_assert_int_eq(k8s_block_load(NULL, &b, &err), 0);
    k8s_block_clear(&b);
}
END_TEST

static const struct {
    const char *json;
    const char *message;
} block_errors[] = {
    {"{\"nmespace\": \"x\"}", "kubernetes.nmespace: unknown key"},
    {"{\"namespace\": 3}", "kubernetes.namespace: expected a string"},
    {"{\"namespace\": \"Team_A\"}",
     "kubernetes.namespace: 'Team_A' is not a namespace name (DNS-1123 "
     "label)"},
    {"{\"serviceAccountName\": \"-x\"}",
     "kubernetes.serviceAccountName: '-x' is not a service account name "
     "(DNS-1123 subdomain)"},
    {"{\"runtimeClassName\": true}",
     "kubernetes.runtimeClassName: expected a string"},
    {"{\"nodeSelector\": []}", "kubernetes.nodeSelector: expected an object"},
    {"{\"nodeSelector\": {\"a\": 1}}",
     "kubernetes.nodeSelector.a: expected a string"},
    {"{\"nodeSelector\": {\"bad key!\": \"v\"}}",
     "kubernetes.nodeSelector.bad key!: not a valid key (a qualified name)"},
    {"{\"nodeSelector\": {\"a\": \"bad value!\"}}",
     "kubernetes.nodeSelector.a: not a valid label value"},
    {"{\"tolerations\": {}}", "kubernetes.tolerations: expected an array"},
    {"{\"tolerations\": [{\"key\": \"a\", \"operator\": \"Maybe\"}]}",
     "kubernetes.tolerations[0].operator: 'Maybe' is not Exists or Equal"},
    {"{\"tolerations\": [{\"key\": \"a\", \"colour\": \"red\"}]}",
     "kubernetes.tolerations[0].colour: unknown key"},
    {"{\"tolerations\": [{\"value\": \"v\"}]}",
     "kubernetes.tolerations[0]: a toleration without a key needs operator "
     "Exists"},
    {"{\"tolerations\": [{\"key\": \"a\", \"operator\": \"Exists\", "
     "\"value\": \"v\"}]}",
     "kubernetes.tolerations[0]: operator Exists takes no value"},
    {"{\"tolerations\": [{\"key\": \"a\", \"effect\": \"NoSchedule\", "
     "\"tolerationSeconds\": 5}]}",
     "kubernetes.tolerations[0]: tolerationSeconds needs effect NoExecute"},
    {"{\"tolerations\": [{\"key\": \"a\", \"effect\": \"Sometimes\"}]}",
     "kubernetes.tolerations[0].effect: 'Sometimes' is not NoSchedule, "
     "PreferNoSchedule or NoExecute"},
    {"{\"resources\": {\"limits\": {\"cpu\": \"2x\"}}}",
     "kubernetes.resources.limits.cpu: invalid quantity '2x'"},
    {"{\"resources\": {\"requests\": {\"memory\": \"-1Gi\"}}}",
     "kubernetes.resources.requests.memory: invalid quantity '-1Gi'"},
    {"{\"resources\": {\"requests\": {\"memory\": \"1.5.3\"}}}",
     "kubernetes.resources.requests.memory: invalid quantity '1.5.3'"},
    {"{\"resources\": {\"requests\": {\"cpu\": true}}}",
     "kubernetes.resources.requests.cpu: expected a quantity (string or "
     "number)"},
    {"{\"resources\": {\"requests\": {\"gpu\": \"1\"}}}",
     "kubernetes.resources.requests.gpu: unknown resource name"},
    {"{\"resources\": {\"claims\": []}}",
     "kubernetes.resources.claims: unknown key"},
    {"{\"resources\": {\"requests\": {\"cpu\": \"2\"}, \"limits\": "
     "{\"cpu\": \"1\"}}}",
     "kubernetes.resources.requests.cpu: must be less than or equal to the "
     "limit"},
    {"{\"podLabels\": {\"sandgate.io/sandbox-id\": \"x\"}}",
     "kubernetes.podLabels.sandgate.io/sandbox-id: is reserved by sandgate"},
    {"{\"podAnnotations\": {\"sandgate.io/owner\": \"x\"}}",
     "kubernetes.podAnnotations.sandgate.io/owner: is reserved by sandgate"},
    {"{\"podLabels\": {\"app.kubernetes.io/managed-by\": \"me\"}}",
     "kubernetes.podLabels.app.kubernetes.io/managed-by: is reserved by "
     "sandgate"},
    {"{\"podLabels\": {\"a\": \"x y\"}}",
     "kubernetes.podLabels.a: not a valid label value"},
    {"{\"imagePullSecrets\": \"regcred\"}",
     "kubernetes.imagePullSecrets: expected an array"},
    {"{\"imagePullSecrets\": [{\"nam\": \"x\"}]}",
     "kubernetes.imagePullSecrets[0].nam: unknown key"},
    {"{\"imagePullSecrets\": [\"Bad\"]}",
     "kubernetes.imagePullSecrets[0]: 'Bad' is not a secret name (DNS-1123 "
     "subdomain)"},
    {"{\"agentSandbox\": {\"allocation\": \"Pod\"}}",
     "kubernetes.agentSandbox.allocation: 'Pod' is not Sandbox or "
     "SandboxClaim"},
    {"{\"agentSandbox\": {\"pool\": \"x\"}}",
     "kubernetes.agentSandbox.pool: unknown key"},
    {"{\"agentSandbox\": {\"warmPool\": \"p\"}}",
     "kubernetes.agentSandbox.warmPool: needs allocation SandboxClaim"},
    {"{\"agentSandbox\": {\"allocation\": \"SandboxClaim\"}}",
     "kubernetes.agentSandbox.warmPool: required with allocation "
     "SandboxClaim (a claim names its pool)"},
    {"[]", "kubernetes: expected an object"},
};

START_TEST(test_block_errors)
{
    struct k8s_block b;
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(k8s_block_load(block_errors[_i].json, &b, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message, block_errors[_i].message);
    sg_error_reset(&err);
}
END_TEST

/* ---- quantities ---- */

static const struct {
    const char *text;
    int ok;
    uint64_t millis;
} quantities[] = {
    {"1", 0, 1000},
    {"500m", 0, 500},
    {"0.5", 0, 500},
    {"2Gi", 0, UINT64_C(2147483648000)},
    {"1Ki", 0, 1024000},
    {"1k", 0, 1000000},
    {"1e3", 0, 1000000},
    {"1E-3", 0, 1},
    {"100u", 0, 1},
    {"+3", 0, 3000},
    {".5", 0, 500},
    {"1.5Mi", 0, UINT64_C(1572864000)},
    {"", -1, 0},
    {"2x", -1, 0},
    {"-1", -1, 0},
    {"1.2.3", -1, 0},
    {"Gi", -1, 0},
    {"1 Gi", -1, 0},
    {"1GiB", -1, 0},
    {"1e", -1, 0},
    {"100Ei", -1, 0},
};

START_TEST(test_quantity)
{
    uint64_t m = 0;
    int rc = k8s_quantity_parse(quantities[_i].text, &m);

    ck_assert_msg(rc == quantities[_i].ok, "'%s'", quantities[_i].text);
    if (rc == 0)
        ck_assert_msg(m == quantities[_i].millis, "'%s': %llu",
                      quantities[_i].text, (unsigned long long)m);
}
END_TEST

/* ---- validators ---- */

START_TEST(test_validators)
{
    char out[64];

    ck_assert(k8s_is_dns_label("a-b1"));
    ck_assert(!k8s_is_dns_label("a."));
    ck_assert(!k8s_is_dns_label("-a"));
    ck_assert(!k8s_is_dns_label(""));
    ck_assert(k8s_is_dns_subdomain("a.b-c.d"));
    ck_assert(!k8s_is_dns_subdomain("a..b"));
    ck_assert(k8s_is_label_value(""));
    ck_assert(k8s_is_label_value("A_b.c-9"));
    ck_assert(!k8s_is_label_value("_a"));
    ck_assert(k8s_is_qualified_name("example.com/x_y"));
    ck_assert(!k8s_is_qualified_name("/x"));
    ck_assert(!k8s_is_qualified_name("Example.com/x"));
    k8s_label_sanitize("Team A/Prod!", out);
    ck_assert_str_eq(out, "Team-A-Prod");
    k8s_label_sanitize("--x--", out);
    ck_assert_str_eq(out, "x");
    k8s_label_sanitize("@@@", out);
    ck_assert_str_eq(out, "");
    k8s_label_sanitize(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbb",
        out);
    ck_assert_uint_le(strlen(out), 63);
    ck_assert(k8s_is_label_value(out));
}
END_TEST

/* ---- describe ---- */

START_TEST(test_describe)
{
    struct k8s_settings s;
    struct k8s_block b;
    struct sg_driver_placement p = {0};
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(k8s_settings_load("{\"in_cluster\": true,"
                                       " \"default_namespace\": \"dflt\"}",
                                       &s, &err),
                     0);
    ck_assert_int_eq(k8s_block_load(full_block, &b, &err), 0);
    ck_assert_int_eq(k8s_block_describe(&b, &s, t_alloc, t_strdup, &p), 0);
    ck_assert_str_eq(p.namespace_name, "sbx-team-a");
    ck_assert_str_eq(p.service_account, "runner");
    ck_assert_str_eq(p.runtime_class, "gvisor");
    ck_assert_str_eq(p.allocation_mode, "Sandbox");
    ck_assert_ptr_null(p.template_name);
    ck_assert_ptr_null(p.warm_pool);
    ck_assert_uint_eq(p.n_fields, 14);
    ck_assert_str_eq(p.fields[0], "agentSandbox.allocation");
    ck_assert_uint_eq(p.n_node_selector, 2);
    ck_assert_str_eq(p.node_selector_keys[0], "platform.example.com/pool");
    ck_assert_str_eq(p.node_selector_values[0], "secure-rce");
    ck_assert_str_eq(p.node_selector_keys[1], "zone");
    ck_assert_uint_eq(p.n_toleration_keys, 3);
    ck_assert_str_eq(p.toleration_keys[0], "");
    ck_assert_str_eq(p.toleration_keys[1], "a");
    ck_assert_str_eq(p.toleration_keys[2], "platform.example.com/secure-rce");
    ck_assert_uint_eq(p.cpu_millis, 2000);
    ck_assert_uint_eq(p.memory_bytes, UINT64_C(4) << 30);
    placement_clear(&p);
    k8s_block_clear(&b);

    /* The default namespace, and a claim's template and pool. */
    ck_assert_int_eq(
        k8s_block_load("{\"agentSandbox\": {\"allocation\": \"SandboxClaim\","
                       " \"warmPool\": \"rce-python\", \"template\": \"t1\"}}",
                       &b, &err),
        0);
    ck_assert_int_eq(k8s_block_describe(&b, &s, t_alloc, t_strdup, &p), 0);
    ck_assert_str_eq(p.namespace_name, "dflt");
    ck_assert_ptr_null(p.service_account);
    ck_assert_str_eq(p.allocation_mode, "SandboxClaim");
    ck_assert_str_eq(p.template_name, "t1");
    ck_assert_str_eq(p.warm_pool, "rce-python");
    ck_assert_uint_eq(p.n_fields, 3);
    ck_assert_str_eq(p.fields[2], "agentSandbox.warmPool");
    ck_assert_uint_eq(p.cpu_millis, 0);
    ck_assert_uint_eq(p.memory_bytes, 0);
    ck_assert_uint_eq(p.n_node_selector, 0);
    placement_clear(&p);
    k8s_block_clear(&b);

    /* A claim's pod is its template's: keys that shape a pod are refused. */
    ck_assert_int_eq(
        k8s_block_load("{\"agentSandbox\": {\"allocation\": \"SandboxClaim\","
                       " \"warmPool\": \"p\"},"
                       " \"resources\": {\"requests\": {\"cpu\": \"250m\"}}}",
                       &b, &err),
        -1);
    ck_assert_str_eq(err.message,
                     "kubernetes.resources: not with allocation SandboxClaim "
                     "(the warm pool's SandboxTemplate defines the pod)");
    sg_error_reset(&err);
    k8s_settings_clear(&s);
}
END_TEST

/* A resource name longer than the 64 bytes a message quotes. */
#define LONG_RESOURCE \
    "accelerators.vendor-with-a-long-name.example.com/gpu-model-a100-80gb"

/* Every fact of a block that sets each kind once, against the settings'
   fallback namespace; sizes from a request only, a limit only, and the
   larger of both in other units. */
START_TEST(test_describe_every_fact)
{
    struct k8s_settings s;
    struct k8s_block b;
    struct sg_driver_placement p = {0};
    struct sg_error err = SG_ERROR_INIT;
    static const char *const fields[] = {
        "nodeSelector", "resources.limits." LONG_RESOURCE,
        "resources.limits.cpu", "resources.requests.memory", "tolerations",
    };

    ck_assert_int_eq(k8s_settings_load("{\"in_cluster\": true}", &s, &err), 0);
    ck_assert_int_eq(
        k8s_block_load("{\"tolerations\": [{\"key\": \"b\", \"operator\":"
                       " \"Exists\"}, {\"operator\": \"Exists\"}, {\"key\":"
                       " \"a\", \"operator\": \"Exists\"}],"
                       " \"nodeSelector\": {\"z\": \"1\", \"a\": \"\"},"
                       " \"resources\": {\"requests\": {\"memory\": \"1500Mi\"},"
                       " \"limits\": {\"cpu\": 0.25, \"" LONG_RESOURCE
                       "\": 1}}}",
                       &b, &err),
        0);
    ck_assert_int_eq(k8s_block_describe(&b, &s, t_alloc, t_strdup, &p), 0);
    ck_assert_str_eq(p.namespace_name, "default");
    ck_assert_ptr_null(p.service_account);
    ck_assert_ptr_null(p.runtime_class);
    ck_assert_str_eq(p.allocation_mode, "Sandbox");
    ck_assert_ptr_null(p.template_name);
    ck_assert_ptr_null(p.warm_pool);
    ck_assert_uint_eq(p.n_fields, SG_N_ELEMENTS(fields));
    for (size_t i = 0; i < SG_N_ELEMENTS(fields); i++)
        ck_assert_str_eq(p.fields[i], fields[i]);
    ck_assert_uint_eq(p.n_node_selector, 2);
    ck_assert_str_eq(p.node_selector_keys[0], "a");
    ck_assert_str_eq(p.node_selector_values[0], "");
    ck_assert_str_eq(p.node_selector_keys[1], "z");
    ck_assert_str_eq(p.node_selector_values[1], "1");
    ck_assert_uint_eq(p.n_toleration_keys, 3);
    ck_assert_str_eq(p.toleration_keys[0], "");
    ck_assert_str_eq(p.toleration_keys[1], "a");
    ck_assert_str_eq(p.toleration_keys[2], "b");
    ck_assert_uint_eq(p.cpu_millis, 250);                      /* limit only */
    ck_assert_uint_eq(p.memory_bytes, UINT64_C(1500) << 20);   /* request only */
    placement_clear(&p);
    k8s_block_clear(&b);

    /* The larger of request and limit, whichever unit each is in. */
    ck_assert_int_eq(
        k8s_block_load("{\"resources\": {\"requests\": {\"cpu\": \"1\","
                       " \"memory\": \"1G\"}, \"limits\": {\"cpu\": \"1500m\","
                       " \"memory\": \"1Gi\"}}}",
                       &b, &err),
        0);
    ck_assert_int_eq(k8s_block_describe(&b, &s, t_alloc, t_strdup, &p), 0);
    ck_assert_uint_eq(p.cpu_millis, 1500);
    ck_assert_uint_eq(p.memory_bytes, UINT64_C(1) << 30);
    ck_assert_uint_eq(p.n_fields, 4);
    ck_assert_uint_eq(p.n_node_selector, 0);
    ck_assert_uint_eq(p.n_toleration_keys, 0);
    placement_clear(&p);
    k8s_block_clear(&b);

    /* Nothing set: the namespace and the allocation mode, nothing else. */
    ck_assert_int_eq(k8s_block_load("{}", &b, &err), 0);
    ck_assert_int_eq(k8s_block_describe(&b, &s, t_alloc, t_strdup, &p), 0);
    ck_assert_str_eq(p.namespace_name, "default");
    ck_assert_str_eq(p.allocation_mode, "Sandbox");
    ck_assert_uint_eq(p.n_fields, 0);
    ck_assert_uint_eq(p.cpu_millis, 0);
    ck_assert_uint_eq(p.memory_bytes, 0);
    placement_clear(&p);
    k8s_block_clear(&b);
    k8s_settings_clear(&s);
}
END_TEST

/* ---- objects ---- */

START_TEST(test_object_name)
{
    char name[K8S_NAME_MAX + 1];
    char other[K8S_NAME_MAX + 1];
    char longid[64];

    k8s_object_name("sbx-01abc", name);
    ck_assert_str_eq(name, "sg-sbx-01abc");
    memset(longid, 'a', 63);
    longid[63] = '\0';
    k8s_object_name(longid, name);
    ck_assert_uint_le(strlen(name), 63);
    ck_assert(k8s_is_dns_label(name));
    longid[62] = 'b';
    k8s_object_name(longid, other);
    ck_assert_str_ne(name, other);
    ck_assert_uint_eq(k8s_fnv1a("hello-world"), 0x428d118eu);
    ck_assert_uint_eq(k8s_fnv1a(""), 0x811c9dc5u);
}
END_TEST

static const char *const argv_[] = {"python3", "-c", "print(1)"};
static const char *const env_names[] = {"A", "B"};
static const char *const env_values[] = {"1", "2"};

START_TEST(test_build)
{
    struct k8s_settings s;
    struct k8s_block b;
    struct sg_error err = SG_ERROR_INIT;
    struct sg_driver_sandbox sb = {
        .id = "sbx-42", .name = "review", .tenant = "Team A",
        .project = "code/review", .owner = "alice@example.com",
        .image = "python:3.12", .command = argv_, .n_command = 3,
        .env_names = env_names, .env_values = env_values, .n_env = 2,
        .working_dir = "/srv/app", .config_json = full_block, .ttl_seconds = 60,
        .request_id = "req-7", .policy_hash = "sha256:ab", .access_profile = "",
        .runtime_profile = "gvisor"};
    json_t *o;
    json_t *meta, *tmpl, *pod, *c, *sc;

    ck_assert_int_eq(k8s_settings_load("{\"in_cluster\": true,"
                                       " \"gateway_id\": \"gw\"}",
                                       &s, &err),
                     0);
    ck_assert_int_eq(k8s_block_load(full_block, &b, &err), 0);
    o = k8s_sandbox_build(&s, &b, &sb, 1000000000, &err);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_string_value(json_object_get(o, "apiVersion")),
                     "agents.x-k8s.io/v1beta1");
    ck_assert_str_eq(json_string_value(json_object_get(o, "kind")), "Sandbox");
    meta = json_object_get(o, "metadata");
    ck_assert_str_eq(json_string_value(json_object_get(meta, "name")),
                     "sg-sbx-42");
    ck_assert_str_eq(json_string_value(json_object_get(meta, "namespace")),
                     "sbx-team-a");
#define LABEL(obj, k) \
    json_string_value(json_object_get(json_object_get(obj, "labels"), k))
#define ANN(obj, k) \
    json_string_value(json_object_get(json_object_get(obj, "annotations"), k))
    ck_assert_str_eq(LABEL(meta, K8S_LABEL_SANDBOX_ID), "sbx-42");
    ck_assert_str_eq(LABEL(meta, K8S_LABEL_GATEWAY_ID), "gw");
    ck_assert_str_eq(LABEL(meta, K8S_LABEL_MANAGED_BY), "sandgate");
    ck_assert_str_eq(LABEL(meta, K8S_LABEL_TENANT), "Team-A");
    ck_assert_str_eq(LABEL(meta, K8S_LABEL_PROJECT), "code-review");
    ck_assert_ptr_null(LABEL(meta, "team")); /* pod labels: template only */
    ck_assert_str_eq(ANN(meta, K8S_ANN_OWNER), "alice@example.com");
    ck_assert_str_eq(ANN(meta, K8S_ANN_TENANT), "Team A");
    ck_assert_str_eq(ANN(meta, K8S_ANN_REQUEST_ID), "req-7");
    ck_assert_str_eq(ANN(meta, K8S_ANN_POLICY_HASH), "sha256:ab");
    ck_assert_str_eq(ANN(meta, K8S_ANN_RUNTIME_PROFILE), "gvisor");
    ck_assert_ptr_null(ANN(meta, K8S_ANN_ACCESS_PROFILE)); /* not set */
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(o, "spec"),
                                          "shutdownTime")),
        "2001-09-09T01:47:40Z");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(o, "spec"),
                                          "shutdownPolicy")),
        "Delete");
    tmpl = json_object_get(json_object_get(o, "spec"), "podTemplate");
    meta = json_object_get(tmpl, "metadata");
    ck_assert_str_eq(LABEL(meta, K8S_LABEL_SANDBOX_ID), "sbx-42");
    ck_assert_str_eq(LABEL(meta, "team"), "a");
    ck_assert_str_eq(ANN(meta, K8S_ANN_OWNER), "alice@example.com");
    ck_assert_str_eq(ANN(meta, "example.com/note"), "any text");
    pod = json_object_get(tmpl, "spec");
    ck_assert_str_eq(json_string_value(json_object_get(pod, "restartPolicy")),
                     "Never");
    ck_assert(json_is_false(json_object_get(pod, "automountServiceAccountToken")));
    ck_assert_str_eq(
        json_string_value(json_object_get(pod, "serviceAccountName")),
        "runner");
    ck_assert_str_eq(json_string_value(json_object_get(pod, "runtimeClassName")),
                     "gvisor");
    ck_assert_str_eq(
        json_string_value(json_object_get(pod, "priorityClassName")), "low");
    ck_assert_uint_eq(json_array_size(json_object_get(pod, "tolerations")), 3);
    ck_assert_uint_eq(json_array_size(json_object_get(pod, "imagePullSecrets")),
                      2);
    ck_assert(json_is_true(json_object_get(
        json_object_get(pod, "securityContext"), "runAsNonRoot")));
    c = json_array_get(json_object_get(pod, "containers"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(c, "name")), "sandbox");
    ck_assert_str_eq(json_string_value(json_object_get(c, "image")),
                     "python:3.12");
    ck_assert_uint_eq(json_array_size(json_object_get(c, "command")), 3);
    ck_assert_uint_eq(json_array_size(json_object_get(c, "env")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(c, "workingDir")),
                     "/srv/app");
    ck_assert_str_eq(
        json_string_value(json_object_get(
            json_object_get(json_object_get(c, "resources"), "limits"),
            "cpu")),
        "2");
    sc = json_object_get(c, "securityContext");
    ck_assert(json_is_false(json_object_get(sc, "allowPrivilegeEscalation")));
    ck_assert(json_is_true(json_object_get(sc, "readOnlyRootFilesystem")));
    ck_assert(json_is_true(json_object_get(sc, "runAsNonRoot")));
    ck_assert_str_eq(
        json_string_value(json_array_get(
            json_object_get(json_object_get(sc, "capabilities"), "drop"), 0)),
        "ALL");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(sc, "seccompProfile"), "type")),
                     "RuntimeDefault");
    json_decref(o);

    /* No image and no default: refused. */
    sb.image = "";
    ck_assert_ptr_null(k8s_sandbox_build(&s, &b, &sb, 0, &err));
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    sg_error_reset(&err);
    k8s_block_clear(&b);
    k8s_settings_clear(&s);
}
END_TEST

static const struct {
    const char *conds;
    enum sg_driver_state state;
    const char *reason;
} observations[] = {
    {"[]", SG_DRIVER_STATE_PENDING, "Provisioning"},
    {"[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":"
     "\"DependenciesReady\",\"message\":\"Pod is Ready\"}]",
     SG_DRIVER_STATE_RUNNING, "DependenciesReady"},
    {"[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":"
     "\"DependenciesNotReady\",\"message\":\"Pod does not exist\"}]",
     SG_DRIVER_STATE_PENDING, "DependenciesNotReady"},
    {"[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"PodFailed\","
     "\"message\":\"x\"}]",
     SG_DRIVER_STATE_FAILED, "PodFailed"},
    {"[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":"
     "\"SandboxExpired\",\"message\":\"Sandbox has expired\"}]",
     SG_DRIVER_STATE_FAILED, "SandboxExpired"},
    {"[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":"
     "\"DependenciesNotReady\",\"message\":\"\"},{\"type\":\"Finished\","
     "\"status\":\"True\",\"reason\":\"PodSucceeded\",\"message\":\"\"}]",
     SG_DRIVER_STATE_FAILED, "PodSucceeded"},
    {"[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":"
     "\"DependenciesNotReady\",\"message\":\"\"},{\"type\":\"PodScheduled\","
     "\"status\":\"False\",\"reason\":\"Unschedulable\",\"message\":"
     "\"0/3 nodes\"}]",
     SG_DRIVER_STATE_PENDING, "Unschedulable"},
    {"[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":"
     "\"ReconcilerError\",\"message\":\"Error seen\"}]",
     SG_DRIVER_STATE_PENDING, "ReconcilerError"},
};

START_TEST(test_observe)
{
    char text[1024];
    json_t *j;
    struct k8s_observed o;

    snprintf(text, sizeof(text),
             "{\"metadata\":{\"name\":\"sg-x\",\"namespace\":\"ns\","
             "\"uid\":\"u1\",\"resourceVersion\":\"12\",\"labels\":"
             "{\"sandgate.io/sandbox-id\":\"x\",\"sandgate.io/gateway-id\":"
             "\"gw\"}},\"status\":{\"conditions\":%s}}",
             observations[_i].conds);
    j = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(k8s_sandbox_observe(j, &o), 0);
    ck_assert_str_eq(o.id, "x");
    ck_assert_str_eq(o.gateway, "gw");
    ck_assert_str_eq(o.namespace_name, "ns");
    ck_assert_str_eq(o.rv, "12");
    ck_assert(!o.deleting);
    ck_assert_int_eq(o.state, observations[_i].state);
    ck_assert_str_eq(o.reason, observations[_i].reason);
    json_decref(j);
}
END_TEST

START_TEST(test_observe_bad)
{
    json_t *j = json_loads("{\"metadata\":{\"name\":\"a\"}}", 0, NULL);
    struct k8s_observed o;

    ck_assert_int_eq(k8s_sandbox_observe(j, &o), -1);
    json_decref(j);
    j = json_loads("{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\","
                   "\"deletionTimestamp\":\"2026-01-01T00:00:00Z\","
                   "\"labels\":{\"sandgate.io/sandbox-id\":\"BAD ID\"}}}",
                   0, NULL);
    ck_assert_int_eq(k8s_sandbox_observe(j, &o), 0);
    ck_assert_str_eq(o.id, "");
    ck_assert(o.deleting);
    json_decref(j);
}
END_TEST

/* ---- client helpers ---- */

START_TEST(test_backoff)
{
    /* Within [cap/2, cap], the cap doubling from base up to max. */
    for (uint32_t attempt = 1; attempt <= 10; attempt++) {
        uint64_t cap = 100;

        for (uint32_t i = 1; i < attempt; i++)
            cap = cap * 2 > 3000 ? 3000 : cap * 2;
        for (uint32_t rnd = 0; rnd < 5000; rnd += 997) {
            uint64_t d = k8s_backoff_ms(attempt, 100, 3000, 0, rnd);

            ck_assert_uint_ge(d, cap / 2);
            ck_assert_uint_le(d, cap);
        }
    }
    /* Retry-After wins when longer. */
    ck_assert_uint_eq(k8s_backoff_ms(1, 100, 3000, 7000, 3), 7000);
}
END_TEST

START_TEST(test_escape)
{
    char out[64];

    k8s_query_escape("sandgate.io/gateway-id=gw 1", out, sizeof(out));
    ck_assert_str_eq(out, "sandgate.io%2Fgateway-id%3Dgw%201");
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("k8s_config");
    TCase *tc = tcase_create("config");

    tcase_add_test(tc, test_settings_defaults);
    tcase_add_test(tc, test_settings_every_key);
    tcase_add_loop_test(tc, test_settings_errors, 0,
                        SG_N_ELEMENTS(settings_errors));
    tcase_add_test(tc, test_block_every_key);
    tcase_add_test(tc, test_block_empty);
    tcase_add_loop_test(tc, test_block_errors, 0, SG_N_ELEMENTS(block_errors));
    tcase_add_loop_test(tc, test_quantity, 0, SG_N_ELEMENTS(quantities));
    tcase_add_test(tc, test_validators);
    tcase_add_test(tc, test_describe);
    tcase_add_test(tc, test_describe_every_fact);
    suite_add_tcase(s, tc);
    tc = tcase_create("objects");
    tcase_add_test(tc, test_object_name);
    tcase_add_test(tc, test_build);
    tcase_add_loop_test(tc, test_observe, 0, SG_N_ELEMENTS(observations));
    tcase_add_test(tc, test_observe_bad);
    tcase_add_test(tc, test_backoff);
    tcase_add_test(tc, test_escape);
    suite_add_tcase(s, tc);
    return s;
}

SG_TEST_MAIN(make_suite)
