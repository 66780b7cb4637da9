/*
 * jwt_cache.c: verified-token cache (see jwt_cache.h).
 *
 * All entries are allocated up front in one array; buckets and the LRU
 * list link them by index, so a hit touches a handful of cache lines and
 * never allocates. The digest is SHA-256 of a token that verified, so its
 * first bytes are a good hash as they are.
 */
#include "internal.h"

#include "jwt_cache.h"

#include <pthread.h>
#include <stdlib.h>

#define NIL UINT32_MAX

struct entry {
    uint8_t digest[SG_JWT_CACHE_DIGEST_SIZE];
    int64_t not_before;
    int64_t not_after;
    struct sg_identity *id; /* NULL: the entry is free */
    uint32_t chain;         /* next in bucket, or in the free list */
    uint32_t prev, next;    /* LRU list, most recent at head */
};

struct sg_jwt_cache {
    pthread_mutex_t lock;
    uint64_t generation;
    struct entry *entries;
    size_t capacity;
    size_t count;
    uint32_t *buckets;
    size_t bucket_mask;
    uint32_t free_head;
    uint32_t head, tail;
};

struct sg_jwt_cache *sg_jwt_cache_new(size_t capacity)
{
    struct sg_jwt_cache *c = NULL;
    size_t n_buckets = 1;

    if (capacity == 0 || capacity >= NIL)
        return NULL;
    while (n_buckets < capacity * 2)
        n_buckets *= 2;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->entries = calloc(capacity, sizeof(*c->entries));
    c->buckets = malloc(n_buckets * sizeof(*c->buckets));
    if (c->entries == NULL || c->buckets == NULL) {
        sg_jwt_cache_free(c);
        return NULL;
    }
    c->capacity = capacity;
    c->bucket_mask = n_buckets - 1;
    c->head = c->tail = NIL;
    for (size_t i = 0; i < n_buckets; i++)
        c->buckets[i] = NIL;
    for (size_t i = 0; i < capacity; i++)
        c->entries[i].chain = i + 1 < capacity ? (uint32_t)(i + 1) : NIL;
    c->free_head = 0;
    return c;
}

static void drop_all(struct sg_jwt_cache *c)
{
    for (size_t i = 0; i < c->capacity; i++) {
        sg_identity_unref(c->entries[i].id);
        c->entries[i].id = NULL;
        c->entries[i].chain = i + 1 < c->capacity ? (uint32_t)(i + 1) : NIL;
    }
    for (size_t i = 0; i <= c->bucket_mask; i++)
        c->buckets[i] = NIL;
    c->free_head = 0;
    c->head = c->tail = NIL;
    c->count = 0;
}

void sg_jwt_cache_free(struct sg_jwt_cache *c)
{
    if (c == NULL)
        return;
    if (c->entries != NULL && c->buckets != NULL)
        drop_all(c);
    free(c->entries);
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static size_t bucket_of(const struct sg_jwt_cache *c, const uint8_t *digest)
{
    uint64_t h;

    memcpy(&h, digest, sizeof(h));
    return (size_t)h & c->bucket_mask;
}

static void lru_unlink(struct sg_jwt_cache *c, uint32_t i)
{
    struct entry *e = &c->entries[i];

    if (e->prev != NIL)
        c->entries[e->prev].next = e->next;
    else
        c->head = e->next;
    if (e->next != NIL)
        c->entries[e->next].prev = e->prev;
    else
        c->tail = e->prev;
}

static void lru_push_head(struct sg_jwt_cache *c, uint32_t i)
{
    struct entry *e = &c->entries[i];

    e->prev = NIL;
    e->next = c->head;
    if (c->head != NIL)
        c->entries[c->head].prev = i;
    c->head = i;
    if (c->tail == NIL)
        c->tail = i;
}

/* Index of the entry for digest, or NIL; *link gets the slot pointing at
   it (for removal). */
static uint32_t find(struct sg_jwt_cache *c, const uint8_t *digest,
                     uint32_t **link)
{
    uint32_t *slot = &c->buckets[bucket_of(c, digest)];

    while (*slot != NIL) {
        struct entry *e = &c->entries[*slot];

        if (memcmp(e->digest, digest, SG_JWT_CACHE_DIGEST_SIZE) == 0) {
            *link = slot;
            return *slot;
        }
        slot = &e->chain;
    }
    return NIL;
}

static void remove_at(struct sg_jwt_cache *c, uint32_t *link, uint32_t i)
{
    struct entry *e = &c->entries[i];

    *link = e->chain;
    lru_unlink(c, i);
    sg_identity_unref(e->id);
    e->id = NULL;
    e->chain = c->free_head;
    c->free_head = i;
    c->count--;
}

struct sg_identity *sg_jwt_cache_get(struct sg_jwt_cache *c,
                                     const uint8_t *digest, int64_t now)
{
    struct sg_identity *id = NULL;
    uint32_t *link = NULL;
    uint32_t i;

    pthread_mutex_lock(&c->lock);
    i = find(c, digest, &link);
    if (i != NIL) {
        struct entry *e = &c->entries[i];

        if (now >= e->not_after) {
            remove_at(c, link, i);
        } else if (now >= e->not_before) {
            id = sg_identity_ref(e->id);
            if (c->head != i) {
                lru_unlink(c, i);
                lru_push_head(c, i);
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
    return id;
}

uint64_t sg_jwt_cache_generation(struct sg_jwt_cache *c)
{
    uint64_t g;

    pthread_mutex_lock(&c->lock);
    g = c->generation;
    pthread_mutex_unlock(&c->lock);
    return g;
}

void sg_jwt_cache_put(struct sg_jwt_cache *c, const uint8_t *digest,
                      int64_t not_before, int64_t not_after,
                      struct sg_identity *id, uint64_t generation)
{
    uint32_t *link = NULL;
    uint32_t i;
    struct entry *e;
    size_t b;

    if (not_after <= not_before)
        return;
    pthread_mutex_lock(&c->lock);
    if (generation != c->generation || find(c, digest, &link) != NIL)
        goto cleanup;
    if (c->free_head == NIL) {
        /* Full: the least recently used entry makes room. */
        i = c->tail;
        if (find(c, c->entries[i].digest, &link) == i)
            remove_at(c, link, i);
    }
    i = c->free_head;
    if (i == NIL)
        goto cleanup;
    e = &c->entries[i];
    c->free_head = e->chain;
    memcpy(e->digest, digest, SG_JWT_CACHE_DIGEST_SIZE);
    e->not_before = not_before;
    e->not_after = not_after;
    e->id = sg_identity_ref(id);
    b = bucket_of(c, digest);
    e->chain = c->buckets[b];
    c->buckets[b] = i;
    lru_push_head(c, i);
    c->count++;

 cleanup:
    pthread_mutex_unlock(&c->lock);
}

void sg_jwt_cache_clear(struct sg_jwt_cache *c)
{
    pthread_mutex_lock(&c->lock);
    drop_all(c);
    c->generation++;
    pthread_mutex_unlock(&c->lock);
}

size_t sg_jwt_cache_size(struct sg_jwt_cache *c)
{
    size_t n;

    pthread_mutex_lock(&c->lock);
    n = c->count;
    pthread_mutex_unlock(&c->lock);
    return n;
}
