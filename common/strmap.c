/*
 * strmap.c: chained hash map keyed by strings.
 */
#include "internal.h"

#include "strmap.h"

#include <stdlib.h>

struct entry {
    struct entry *next;
    uint64_t hash;
    void *value;
    char key[]; /* NUL-terminated copy */
};

struct sg_strmap {
    struct entry **buckets;
    size_t n_buckets; /* a power of two */
    size_t size;
};

#define INITIAL_BUCKETS 16

static uint64_t hash_key(const char *key)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

struct sg_strmap *sg_strmap_new(void)
{
    struct sg_strmap *map = calloc(1, sizeof(*map));

    if (!map)
        return NULL;
    map->buckets = calloc(INITIAL_BUCKETS, sizeof(*map->buckets));
    if (!map->buckets) {
        free(map);
        return NULL;
    }
    map->n_buckets = INITIAL_BUCKETS;
    return map;
}

void sg_strmap_free(struct sg_strmap *map)
{
    if (!map)
        return;
    for (size_t i = 0; i < map->n_buckets; i++) {
        struct entry *e = map->buckets[i];
        while (e) {
            struct entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(map->buckets);
    free(map);
}

static struct entry **find_slot(const struct sg_strmap *map, const char *key,
                                uint64_t hash)
{
    struct entry **slot = &map->buckets[hash & (map->n_buckets - 1)];

    while (*slot && ((*slot)->hash != hash || STRNEQ((*slot)->key, key)))
        slot = &(*slot)->next;
    return slot;
}

void *sg_strmap_get(const struct sg_strmap *map, const char *key)
{
    struct entry *e = *find_slot(map, key, hash_key(key));

    return e ? e->value : NULL;
}

/* Double the bucket array; on failure keep the old one (still correct). */
static void grow(struct sg_strmap *map)
{
    size_t n = map->n_buckets * 2;
    struct entry **buckets = calloc(n, sizeof(*buckets));

    if (!buckets)
        return;
    for (size_t i = 0; i < map->n_buckets; i++) {
        struct entry *e = map->buckets[i];
        while (e) {
            struct entry *next = e->next;
            struct entry **head = &buckets[e->hash & (n - 1)];
            e->next = *head;
            *head = e;
            e = next;
        }
    }
    free(map->buckets);
    map->buckets = buckets;
    map->n_buckets = n;
}

int sg_strmap_put(struct sg_strmap *map, const char *key, void *value)
{
    uint64_t hash = hash_key(key);
    struct entry **slot = find_slot(map, key, hash);
    size_t len;
    struct entry *e;

    if (*slot) {
        (*slot)->value = value;
        return 0;
    }
    len = strlen(key);
    e = malloc(sizeof(*e) + len + 1);
    if (!e)
        return -1;
    e->next = NULL;
    e->hash = hash;
    e->value = value;
    memcpy(e->key, key, len + 1);
    *slot = e;
    if (++map->size > map->n_buckets)
        grow(map);
    return 0;
}

void *sg_strmap_remove(struct sg_strmap *map, const char *key)
{
    struct entry **slot = find_slot(map, key, hash_key(key));
    struct entry *e = *slot;
    void *value;

    if (!e)
        return NULL;
    *slot = e->next;
    value = e->value;
    free(e);
    map->size--;
    return value;
}

size_t sg_strmap_size(const struct sg_strmap *map)
{
    return map->size;
}

void sg_strmap_foreach(const struct sg_strmap *map,
                       int (*fn)(void *opaque, const char *key, void *value),
                       void *opaque)
{
    for (size_t i = 0; i < map->n_buckets; i++) {
        for (struct entry *e = map->buckets[i]; e; e = e->next) {
            if (fn(opaque, e->key, e->value) != 0)
                return;
        }
    }
}
