/*
 * identity.c: reference-counted caller identities (see identity.h).
 */
#include "internal.h"

#include "identity.h"

#include <stdlib.h>
#include <string.h>

struct sg_identity *sg_identity_new(enum sg_identity_kind kind,
                                    const char *subject, const char *name)
{
    struct sg_identity *id = calloc(1, sizeof(*id));

    if (!id)
        return NULL;
    atomic_init(&id->refs, 1);
    id->kind = kind;
    id->subject = strdup(subject);
    id->name = strdup(name);
    if (!id->subject || !id->name) {
        sg_identity_unref(id);
        return NULL;
    }
    return id;
}

int sg_identity_set_issuer(struct sg_identity *id, const char *issuer)
{
    char *copy = strdup(issuer);

    if (!copy)
        return -1;
    free(id->issuer);
    id->issuer = copy;
    return 0;
}

int sg_identity_add_group(struct sg_identity *id, const char *group)
{
    char **groups = realloc(id->groups, (id->n_groups + 1) * sizeof(*groups));

    if (!groups)
        return -1;
    id->groups = groups;
    groups[id->n_groups] = strdup(group);
    if (!groups[id->n_groups])
        return -1;
    id->n_groups++;
    return 0;
}

struct sg_identity *sg_identity_ref(struct sg_identity *id)
{
    atomic_fetch_add_explicit(&id->refs, 1, memory_order_relaxed);
    return id;
}

void sg_identity_unref(struct sg_identity *id)
{
    if (!id)
        return;
    if (atomic_fetch_sub_explicit(&id->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < id->n_groups; i++)
        free(id->groups[i]);
    free(id->groups);
    free(id->issuer);
    free(id->name);
    free(id->subject);
    free(id);
}
