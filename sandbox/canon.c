/*
 * canon.c: canonical JSON and hashes of sandbox content (see canon.h).
 */
#include "internal.h"

#include "canon.h"
#include "validate.h"

#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

/* Integers beyond 2^53 are not exact in a double: print those as reals. */
#define EXACT_INT_MAX 9007199254740992.0

static const char request_hash_domain[] = "sandgate.v1.Sandbox/request-hash/1";

static const char *str_or_empty(const char *s)
{
    return s != NULL ? s : "";
}

/* ---- Struct -> JSON ------------------------------------------------ */

struct jbuild {
    struct sg_error *err;
    int precision; /* digits the reals seen so far need */
};

static json_t *value_json(struct jbuild *b, const Google__Protobuf__Value *v,
                          int depth);

static json_t *nomem(struct jbuild *b)
{
    sg_error_report(b->err, SG_ERR_NO_MEMORY, "out of memory");
    return NULL;
}

static json_t *invalid(struct jbuild *b, const char *what)
{
    sg_error_report(b->err, SG_ERR_INVALID_ARGUMENT, "%s", what);
    return NULL;
}

/* The fewest significant digits that read back as exactly x. */
static int shortest_precision(double x)
{
    char text[40];

    for (int p = 1; p < 17; p++) {
        snprintf(text, sizeof(text), "%.*g", p, x);
        if (strtod(text, NULL) == x)
            return p;
    }
    return 17;
}

static json_t *number_json(struct jbuild *b, double x)
{
    json_t *j;
    int p;

    if (!isfinite(x))
        return invalid(b, "a JSON number must be finite (NaN and infinity have "
                          "no JSON form)");
    if (fabs(x) <= EXACT_INT_MAX && x == trunc(x))
        j = json_integer((json_int_t)x);
    else {
        p = shortest_precision(x);
        if (p > b->precision)
            b->precision = p;
        j = json_real(x);
    }
    return j != NULL ? j : nomem(b);
}

static json_t *string_json(struct jbuild *b, const char *s)
{
    json_t *j;

    s = str_or_empty(s);
    if (!sg_is_utf8(s, strlen(s)))
        return invalid(b, "a JSON string must be valid UTF-8");
    j = json_stringn_nocheck(s, strlen(s));
    return j != NULL ? j : nomem(b);
}

static json_t *struct_json(struct jbuild *b, const Google__Protobuf__Struct *s,
                           int depth)
{
    json_t *obj;

    if (depth > SG_CANON_MAX_DEPTH)
        return invalid(b, "JSON nested deeper than 64 levels");
    obj = json_object();
    if (obj == NULL)
        return nomem(b);
    for (size_t i = 0; s != NULL && i < s->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *f = s->fields[i];
        const char *key = f != NULL ? str_or_empty(f->key) : "";
        json_t *val = value_json(b, f != NULL ? f->value : NULL, depth);

        if (val != NULL && !sg_is_utf8(key, strlen(key))) {
            json_decref(val);
            val = invalid(b, "a JSON object key must be valid UTF-8");
        }
        /* Steals val; the last of repeated keys wins, as in a map. */
        if (val == NULL || json_object_set_new_nocheck(obj, key, val) < 0) {
            json_decref(obj);
            return val == NULL ? NULL : nomem(b);
        }
    }
    return obj;
}

static json_t *list_json(struct jbuild *b, const Google__Protobuf__ListValue *l,
                         int depth)
{
    json_t *arr;

    if (depth > SG_CANON_MAX_DEPTH)
        return invalid(b, "JSON nested deeper than 64 levels");
    arr = json_array();
    if (arr == NULL)
        return nomem(b);
    for (size_t i = 0; l != NULL && i < l->n_values; i++) {
        json_t *val = value_json(b, l->values[i], depth);

        if (val == NULL || json_array_append_new(arr, val) < 0) {
            json_decref(arr);
            return val == NULL ? NULL : nomem(b);
        }
    }
    return arr;
}

static json_t *value_json(struct jbuild *b, const Google__Protobuf__Value *v,
                          int depth)
{
    json_t *j = NULL;

    switch (v != NULL ? v->kind_case : GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE:
        j = json_null();
        break;
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
        j = json_boolean(v->bool_value);
        break;
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
        return number_json(b, v->number_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
        return string_json(b, v->string_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
        return struct_json(b, v->struct_value, depth + 1);
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
        return list_json(b, v->list_value, depth + 1);
    default:
        return invalid(b, "a google.protobuf.Value has no kind set");
    }
    return j != NULL ? j : nomem(b);
}

/* Dump and drop root (NULL passes through). */
static char *dump(struct jbuild *b, json_t *root)
{
    char *text;

    if (root == NULL)
        return NULL;
    text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY |
                                JSON_REAL_PRECISION(b->precision));
    json_decref(root);
    if (text == NULL)
        nomem(b);
    return text;
}

char *sg_struct_to_json(const Google__Protobuf__Struct *s, struct sg_error *err)
{
    struct jbuild b = {.err = err, .precision = 1};

    return dump(&b, struct_json(&b, s, 1));
}

char *sg_value_to_json(const Google__Protobuf__Value *v, struct sg_error *err)
{
    struct jbuild b = {.err = err, .precision = 1};

    return dump(&b, value_json(&b, v, 0));
}

char *sg_driver_block_json(const Google__Protobuf__Struct *driver_config,
                           const char *driver_name, struct sg_error *err)
{
    const Google__Protobuf__Value *block = NULL;
    bool found = false;
    char *text;

    for (size_t i = 0; driver_config != NULL && i < driver_config->n_fields;
         i++) {
        const Google__Protobuf__Struct__FieldsEntry *f =
            driver_config->fields[i];

        if (f != NULL && STREQ(str_or_empty(f->key), driver_name)) {
            block = f->value;
            found = true;
        }
    }
    if (!found) {
        text = strdup("{}");
        if (text == NULL)
            sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return text;
    }
    if (block == NULL ||
        block->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "driver_config.%s must be an object", driver_name);
        return NULL;
    }
    return sg_struct_to_json(block->struct_value, err);
}

/* ---- hashes -------------------------------------------------------- */

static void hex_hash(EVP_MD_CTX *ctx, char out[SG_HASH_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    out[0] = '\0';
    if (EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != 32)
        return;
    memcpy(out, "sha256:", 7);
    for (unsigned int i = 0; i < len; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[8 + 2 * i] = hex[md[i] & 0xf];
    }
    out[7 + 2 * len] = '\0';
}

void sg_policy_hash(const Sandgate__V1__SandboxPolicy *p,
                    char out[SG_HASH_SIZE])
{
    EVP_MD_CTX *ctx = NULL;
    const char *ref;

    out[0] = '\0';
    if (p == NULL ||
        (p->source_case != SANDGATE__V1__SANDBOX_POLICY__SOURCE_REF &&
         p->source_case != SANDGATE__V1__SANDBOX_POLICY__SOURCE_INLINE))
        return;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto cleanup;
    if (p->source_case == SANDGATE__V1__SANDBOX_POLICY__SOURCE_REF) {
        ref = str_or_empty(p->ref);
        EVP_DigestUpdate(ctx, "ref", sizeof("ref"));
        EVP_DigestUpdate(ctx, ref, strlen(ref));
    } else {
        EVP_DigestUpdate(ctx, "inline", sizeof("inline"));
        EVP_DigestUpdate(ctx, p->inline_.data, p->inline_.len);
    }
    hex_hash(ctx, out);

 cleanup:
    EVP_MD_CTX_free(ctx);
}

/* A key and value of a map entry, and where it was in the message. */
struct kv {
    const char *key;
    const char *value;
    size_t index;
};

#define KV_FILL(kv, entries, n)                                                \
    do {                                                                       \
        for (size_t i_ = 0; i_ < (n); i_++) {                                  \
            (kv)[i_].key =                                                     \
                (entries)[i_] ? str_or_empty((entries)[i_]->key) : "";         \
            (kv)[i_].value =                                                   \
                (entries)[i_] ? str_or_empty((entries)[i_]->value) : "";       \
            (kv)[i_].index = i_;                                               \
        }                                                                      \
    } while (0)

static int kv_compare(const void *a, const void *b)
{
    const struct kv *x = a;
    const struct kv *y = b;
    int c = strcmp(x->key, y->key);

    if (c != 0)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Sort by key and keep the last entry of each key; returns the count. */
static size_t kv_canon(struct kv *kv, size_t n)
{
    size_t o = 0;

    qsort(kv, n, sizeof(*kv), kv_compare);
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && STREQ(kv[i].key, kv[i + 1].key))
            continue;
        kv[o++] = kv[i];
    }
    return o;
}

static void h_len(EVP_MD_CTX *ctx, uint64_t n)
{
    uint8_t be[8];

    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)(n >> (56 - 8 * i));
    EVP_DigestUpdate(ctx, be, sizeof(be));
}

static void h_bytes(EVP_MD_CTX *ctx, const void *data, size_t len)
{
    h_len(ctx, len);
    EVP_DigestUpdate(ctx, data, len);
}

static void h_str(EVP_MD_CTX *ctx, const char *s)
{
    s = str_or_empty(s);
    h_bytes(ctx, s, strlen(s));
}

/* A named string field. */
static void h_field(EVP_MD_CTX *ctx, const char *name, const char *value)
{
    h_str(ctx, name);
    h_str(ctx, value);
}

/* A named map: the entries in canonical order. Frees kv. */
static int h_map(EVP_MD_CTX *ctx, const char *name, struct kv *kv, size_t n)
{
    if (kv == NULL)
        return -1;
    n = kv_canon(kv, n);
    h_str(ctx, name);
    h_len(ctx, n);
    for (size_t i = 0; i < n; i++) {
        h_str(ctx, kv[i].key);
        h_str(ctx, kv[i].value);
    }
    free(kv);
    return 0;
}

static int h_labels(EVP_MD_CTX *ctx, const Sandgate__V1__Sandbox *sb)
{
    struct kv *kv = calloc(sb->n_labels + 1, sizeof(*kv));

    if (kv != NULL)
        KV_FILL(kv, sb->labels, sb->n_labels);
    return h_map(ctx, "labels", kv, sb->n_labels);
}

static int h_annotations(EVP_MD_CTX *ctx, const Sandgate__V1__Sandbox *sb)
{
    struct kv *kv = calloc(sb->n_annotations + 1, sizeof(*kv));

    if (kv != NULL)
        KV_FILL(kv, sb->annotations, sb->n_annotations);
    return h_map(ctx, "annotations", kv, sb->n_annotations);
}

static int h_env(EVP_MD_CTX *ctx, const Sandgate__V1__SandboxSpec *sp)
{
    struct kv *kv = calloc(sp->n_env + 1, sizeof(*kv));

    if (kv != NULL)
        KV_FILL(kv, sp->env, sp->n_env);
    return h_map(ctx, "env", kv, sp->n_env);
}

static void h_policy(EVP_MD_CTX *ctx, const Sandgate__V1__SandboxPolicy *p)
{
    h_str(ctx, "policy");
    if (p == NULL) {
        h_len(ctx, SANDGATE__V1__SANDBOX_POLICY__SOURCE__NOT_SET);
        return;
    }
    h_len(ctx, (uint64_t)p->source_case);
    if (p->source_case == SANDGATE__V1__SANDBOX_POLICY__SOURCE_REF)
        h_str(ctx, p->ref);
    else if (p->source_case == SANDGATE__V1__SANDBOX_POLICY__SOURCE_INLINE)
        h_bytes(ctx, p->inline_.data, p->inline_.len);
}

static void h_credentials(EVP_MD_CTX *ctx, const Sandgate__V1__SandboxSpec *sp)
{
    h_str(ctx, "credentials");
    h_len(ctx, sp->n_credentials);
    for (size_t i = 0; i < sp->n_credentials; i++) {
        const Sandgate__V1__CredentialBinding *c = sp->credentials[i];
        uint64_t kind = c != NULL ? (uint64_t)c->delivery_case : 0;

        h_str(ctx, c != NULL ? c->credential : "");
        h_len(ctx, kind);
        if (kind == SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_ENV)
            h_str(ctx, c->env);
        else if (kind == SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_FILE)
            h_str(ctx, c->file);
    }
}

static int h_spec(EVP_MD_CTX *ctx, const Sandgate__V1__SandboxSpec *sp,
                  struct sg_error *err)
{
    static const Sandgate__V1__SandboxSpec empty =
        SANDGATE__V1__SANDBOX_SPEC__INIT;
    char *json;

    sp = sp != NULL ? sp : &empty;
    h_field(ctx, "image", sp->image);
    h_str(ctx, "command");
    h_len(ctx, sp->n_command);
    for (size_t i = 0; i < sp->n_command; i++)
        h_str(ctx, sp->command[i]);
    if (h_env(ctx, sp) < 0)
        return -1;
    h_policy(ctx, sp->policy);
    h_credentials(ctx, sp);
    h_str(ctx, "ttl_seconds");
    h_len(ctx, sp->ttl_seconds);
    json = sg_struct_to_json(sp->driver_config, err);
    if (json == NULL)
        return -1;
    h_field(ctx, "driver_config", json);
    free(json);
    h_field(ctx, "working_dir", sp->working_dir);
    return 0;
}

static int sandbox_hash(const Sandgate__V1__Sandbox *sb, const char *request_id,
                        char out[SG_HASH_SIZE], struct sg_error *err)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ret = -1;

    out[0] = '\0';
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto cleanup;
    h_str(ctx, request_hash_domain);
    h_field(ctx, "name", sb->name);
    h_field(ctx, "tenant", sb->tenant);
    h_field(ctx, "project", sb->project);
    h_field(ctx, "request_id", request_id);
    h_field(ctx, "access_profile", sb->access_profile);
    h_field(ctx, "runtime_profile", sb->runtime_profile);
    if (h_labels(ctx, sb) < 0 || h_annotations(ctx, sb) < 0)
        goto cleanup;
    if (h_spec(ctx, sb->spec, err) < 0)
        goto cleanup;
    hex_hash(ctx, out);
    ret = out[0] != '\0' ? 0 : -1;

 cleanup:
    if (ret < 0 && !sg_error_is_set(err))
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
    if (ret < 0)
        out[0] = '\0';
    EVP_MD_CTX_free(ctx);
    return ret;
}

int sg_sandbox_request_hash(const Sandgate__V1__Sandbox *sb,
                            char out[SG_HASH_SIZE], struct sg_error *err)
{
    if (sb == NULL) {
        out[0] = '\0';
        sg_error_report(err, SG_ERR_INTERNAL, "no sandbox to hash");
        return -1;
    }
    return sandbox_hash(sb, sb->request_id, out, err);
}

int sg_create_request_hash(const Sandgate__V1__CreateSandboxRequest *req,
                           char out[SG_HASH_SIZE], struct sg_error *err)
{
    if (req == NULL || req->sandbox == NULL) {
        out[0] = '\0';
        sg_error_report(err, SG_ERR_INTERNAL, "no sandbox to hash");
        return -1;
    }
    return sandbox_hash(req->sandbox, sg_create_request_id(req), out, err);
}
