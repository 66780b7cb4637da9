/*
 * noop_placement.c: decode the noop driver's "placement" key (see
 * noop_placement.h).
 */
#include "internal.h"

#include "noop_placement.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

enum pkind { P_STRING, P_MAP, P_LIST, P_UINT };

static const struct pkey {
    const char *name;
    enum pkind kind;
    size_t offset; /* of the char * / uint64_t in the placement */
} pkeys[NOOP_PLACEMENT_KEYS] = {
    /* sorted by name, so the field list comes out sorted */
    {"allocation", P_STRING,
     offsetof(struct sg_driver_placement, allocation_mode)},
    {"cpuMillis", P_UINT, offsetof(struct sg_driver_placement, cpu_millis)},
    {"memoryBytes", P_UINT,
     offsetof(struct sg_driver_placement, memory_bytes)},
    {"namespace", P_STRING,
     offsetof(struct sg_driver_placement, namespace_name)},
    {"nodeSelector", P_MAP, 0},
    {"runtimeClassName", P_STRING,
     offsetof(struct sg_driver_placement, runtime_class)},
    {"serviceAccountName", P_STRING,
     offsetof(struct sg_driver_placement, service_account)},
    {"template", P_STRING,
     offsetof(struct sg_driver_placement, template_name)},
    {"tolerationKeys", P_LIST, 0},
    {"warmPool", P_STRING, offsetof(struct sg_driver_placement, warm_pool)},
};

char *noop_msg(const struct sg_driver_host *host, const char *fmt, ...)
{
    char buf[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return host->strdup(buf);
}

static const struct pkey *find(const char *name)
{
    for (size_t i = 0; i < SG_N_ELEMENTS(pkeys); i++) {
        if (STREQ(pkeys[i].name, name))
            return &pkeys[i];
    }
    return NULL;
}

/* Type check of one member; the message names it. */
static int check(const struct sg_driver_host *host, const struct pkey *k,
                 json_t *v, char **errmsg)
{
    const char *key;
    json_t *item;
    size_t i;

    switch (k->kind) {
    case P_STRING:
        if (json_is_string(v))
            return 0;
        *errmsg = noop_msg(host, "noop.placement.%s: expected a string", k->name);
        return -1;
    case P_UINT:
        if (json_is_integer(v) && json_integer_value(v) >= 0)
            return 0;
        *errmsg = noop_msg(host, "noop.placement.%s: expected an integer >= 0",
                      k->name);
        return -1;
    case P_MAP:
        if (!json_is_object(v))
            break;
        json_object_foreach(v, key, item) {
            if (!json_is_string(item))
                break;
        }
        if (key == NULL)
            return 0;
        break;
    case P_LIST:
        if (!json_is_array(v))
            break;
        json_array_foreach(v, i, item) {
            if (!json_is_string(item))
                break;
        }
        if (i == json_array_size(v))
            return 0;
        break;
    }
    *errmsg = noop_msg(host, "noop.placement.%s: expected %s of strings", k->name,
                  k->kind == P_MAP ? "an object" : "an array");
    return -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A host-allocated copy of n strings, NULL-filled first so the gateway
   can free a partial copy. */
static char **copy_strings(const struct sg_driver_host *host,
                           const char *const *src, size_t n)
{
    char **out = host->alloc((n ? n : 1) * sizeof(*out));

    if (out == NULL)
        return NULL;
    memset(out, 0, (n ? n : 1) * sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        out[i] = host->strdup(src[i]);
        if (out[i] == NULL)
            return out; /* the caller sees the NULL and fails */
    }
    return out;
}

static bool all_set(char **a, size_t n)
{
    if (a == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (a[i] == NULL)
            return false;
    }
    return true;
}

/* nodeSelector, sorted by key as the ABI says. */
static int fill_map(const struct sg_driver_host *host, json_t *v,
                    struct sg_driver_placement *out)
{
    size_t n = json_object_size(v);
    const char **keys = host->alloc((n ? n : 1) * sizeof(*keys));
    const char **vals = host->alloc((n ? n : 1) * sizeof(*vals));
    const char *key;
    json_t *item;
    size_t i = 0;
    int rc = -1;

    if (keys == NULL || vals == NULL)
        goto cleanup;
    json_object_foreach(v, key, item)
        keys[i++] = key;
    qsort(keys, n, sizeof(*keys), cmp_str);
    for (i = 0; i < n; i++)
        vals[i] = json_string_value(json_object_get(v, keys[i]));
    out->node_selector_keys = copy_strings(host, keys, n);
    out->node_selector_values = copy_strings(host, vals, n);
    out->n_node_selector = n;
    if (all_set(out->node_selector_keys, n) &&
        all_set(out->node_selector_values, n))
        rc = 0;

 cleanup:
    host->free(keys);
    host->free(vals);
    return rc;
}

/* tolerationKeys, sorted. */
static int fill_list(const struct sg_driver_host *host, json_t *v,
                     struct sg_driver_placement *out)
{
    size_t n = json_array_size(v);
    const char **items = host->alloc((n ? n : 1) * sizeof(*items));
    json_t *item;
    size_t i;

    if (items == NULL)
        return -1;
    json_array_foreach(v, i, item)
        items[i] = json_string_value(item);
    qsort(items, n, sizeof(*items), cmp_str);
    out->toleration_keys = copy_strings(host, items, n);
    out->n_toleration_keys = n;
    host->free(items);
    return all_set(out->toleration_keys, n) ? 0 : -1;
}

static int fill(const struct sg_driver_host *host, const struct pkey *k,
                json_t *v, struct sg_driver_placement *out)
{
    char *base = (char *)out;

    switch (k->kind) {
    case P_STRING:
        *(char **)(base + k->offset) = host->strdup(json_string_value(v));
        return *(char **)(base + k->offset) ? 0 : -1;
    case P_UINT:
        *(uint64_t *)(base + k->offset) = (uint64_t)json_integer_value(v);
        return 0;
    case P_MAP:
        return fill_map(host, v, out);
    case P_LIST:
        return fill_list(host, v, out);
    }
    return -1;
}

int noop_placement_load(const struct sg_driver_host *host, json_t *value,
                        struct sg_driver_placement *out, const char **names,
                        size_t *n_names, char **errmsg)
{
    const char *key;
    json_t *v;

    if (!json_is_object(value)) {
        *errmsg = noop_msg(host, "noop.placement: expected an object");
        return -1;
    }
    json_object_foreach(value, key, v) {
        const struct pkey *k = find(key);

        if (k == NULL) {
            *errmsg = noop_msg(host, "noop.placement.%s: unknown key", key);
            return -1;
        }
        if (check(host, k, v, errmsg) < 0)
            return -1;
    }
    if (out == NULL)
        return 0;
    for (size_t i = 0; i < SG_N_ELEMENTS(pkeys); i++) {
        v = json_object_get(value, pkeys[i].name);
        if (v == NULL)
            continue;
        if (fill(host, &pkeys[i], v, out) < 0) {
            *errmsg = noop_msg(host, "noop: out of memory");
            return -1;
        }
        names[(*n_names)++] = pkeys[i].name;
    }
    return 0;
}
