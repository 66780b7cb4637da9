/*
 * source_k8s_secret.c: the "kubernetes-secret" credential source's
 * reference schema.
 *
 * ref {"namespace": DNS label, "name": DNS subdomain, "key": Secret data
 * key}. validate and describe are complete. Reading the Secret needs the
 * kubernetes driver's API client, which registers its own table of this
 * kind (sg_credsrc_register replaces this one); until then resolve
 * answers that it needs the driver.
 */
#include "internal.h"

#include "sources.h"

#include "k8s_names.h"

#define DNS_LABEL_MAX 63
#define DNS_SUBDOMAIN_MAX 253
#define SECRET_KEY_MAX 253

/* A replacement table's priv starts the same way (sources.h). */
struct k8s_src {
    const struct sg_credsrc_host *host;
};

static const char *const ref_keys[] = {"namespace", "name", "key"};

struct k8s_ref {
    const char *ns;
    const char *name;
    const char *key;
};

static int k8s_parse(struct k8s_src *k, const char *ref_json, json_t **ref,
                     struct k8s_ref *out, char **errmsg)
{
    const struct sg_credsrc_host *host = k->host;

    *ref = sg_credsrc_ref_parse(host, ref_json, ref_keys,
                                SG_N_ELEMENTS(ref_keys), errmsg);
    if (*ref == NULL)
        return -1;
    if (sg_credsrc_ref_string(host, *ref, "namespace", &out->ns, errmsg) < 0)
        return -1;
    if (!k8s_is_dns_label(out->ns)) {
        *errmsg = sg_credsrc_msg(host,
                                 "ref.namespace: '%.*s' is not a DNS label "
                                 "(1 to %d of [a-z0-9-], starting and ending "
                                 "with a letter or digit)",
                                 DNS_SUBDOMAIN_MAX, out->ns, DNS_LABEL_MAX);
        return -1;
    }
    if (sg_credsrc_ref_string(host, *ref, "name", &out->name, errmsg) < 0)
        return -1;
    if (!k8s_is_dns_subdomain(out->name)) {
        *errmsg =
            sg_credsrc_msg(host,
                           "ref.name: '%.*s' is not a DNS subdomain "
                           "(1 to %d of [a-z0-9.-], each label "
                           "starting and ending with a letter or "
                           "digit)",
                           DNS_SUBDOMAIN_MAX, out->name, DNS_SUBDOMAIN_MAX);
        return -1;
    }
    if (sg_credsrc_ref_string(host, *ref, "key", &out->key, errmsg) < 0)
        return -1;
    if (!k8s_is_data_key(out->key)) {
        *errmsg = sg_credsrc_msg(host,
                                 "ref.key: '%.*s' is not a Secret data key "
                                 "(1 to %d of [-._a-zA-Z0-9], not '.' and "
                                 "not starting with '..')",
                                 SECRET_KEY_MAX, out->key, SECRET_KEY_MAX);
        return -1;
    }
    return 0;
}

static int k8s_open(void *priv, const struct sg_credsrc_host *host,
                    const char *settings_json, char **errmsg)
{
    struct k8s_src *k = priv;

    k->host = host;
    return 0;
}

static int k8s_validate(void *priv, const char *ref_json, char **errmsg)
{
    json_t *ref = NULL;
    struct k8s_ref r;
    int rc = k8s_parse(priv, ref_json, &ref, &r, errmsg);

    json_decref(ref);
    return rc;
}

static int k8s_describe(void *priv, const char *ref_json, char **out,
                        char **errmsg)
{
    struct k8s_src *k = priv;
    json_t *ref = NULL;
    struct k8s_ref r;
    int rc = -1;

    if (k8s_parse(k, ref_json, &ref, &r, errmsg) < 0)
        goto cleanup;
    *out = sg_credsrc_msg(k->host, "secret %s/%s key %s", r.ns, r.name, r.key);
    rc = *out != NULL ? 0 : -1;

 cleanup:
    json_decref(ref);
    return rc;
}

static int k8s_resolve(void *priv, const char *ref_json,
                       struct sg_credsrc_material *out, char **errmsg)
{
    struct k8s_src *k = priv;

    *errmsg = sg_credsrc_msg(k->host, "resolving needs the kubernetes driver");
    return -1;
}

static const struct sg_credsrc_ops k8s_secret_ops = {
    .abi_major = SG_CREDSRC_ABI_MAJOR,
    .abi_minor = SG_CREDSRC_ABI_MINOR,
    .struct_size = sizeof(struct sg_credsrc_ops),
    .name = "kubernetes-secret",
    .signature = SG_CREDSRC_SIGNATURE,
    .priv_size = sizeof(struct k8s_src),
    .open = k8s_open,
    .validate = k8s_validate,
    .describe = k8s_describe,
    .resolve = k8s_resolve,
};

const struct sg_credsrc_ops *sg_credsrc_k8s_secret_ops(void)
{
    return &k8s_secret_ops;
}
