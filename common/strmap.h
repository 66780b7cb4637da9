/*
 * strmap.h: a hash map from NUL-terminated strings to pointers.
 *
 * Keys are copied; values are the caller's (the map never frees them).
 * Chained buckets, FNV-1a, grows by doubling at load factor 1.
 *
 * OWNERSHIP: the caller owns the map and every value in it.
 * THREAD SAFETY: none; callers lock or keep a map on one thread.
 */
#ifndef SG_STRMAP_H
#define SG_STRMAP_H

#include "internal.h"

struct sg_strmap;

/* NULL when out of memory. */
struct sg_strmap *sg_strmap_new(void);
/* Free the map and its key copies, not the values. NULL-safe. */
void sg_strmap_free(struct sg_strmap *map);

/* The value for key, or NULL. */
void *sg_strmap_get(const struct sg_strmap *map, const char *key);
/*
 * Set key to value (value must not be NULL), replacing any old value
 * (which is not freed). Returns 0, or -1 when out of memory (map unchanged).
 */
int sg_strmap_put(struct sg_strmap *map, const char *key, void *value)
    SG_WARN_UNUSED_RESULT;
/* Remove key; returns its value, or NULL if absent. */
void *sg_strmap_remove(struct sg_strmap *map, const char *key);
size_t sg_strmap_size(const struct sg_strmap *map);

/*
 * Call fn for every entry, in no particular order, until fn returns
 * non-zero. fn must not change the map.
 */
void sg_strmap_foreach(const struct sg_strmap *map,
                       int (*fn)(void *opaque, const char *key, void *value),
                       void *opaque);

#endif /* SG_STRMAP_H */
