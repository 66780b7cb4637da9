/*
 * cred_targets.c: credential binding target rules (cred_targets.h).
 */
#include "internal.h"

#include "cred_targets.h"

#include <string.h>

bool sg_paths_nest(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    size_t n = la < lb ? la : lb;

    return strncmp(a, b, n) == 0 &&
           (la == lb || (la < lb ? b[n] : a[n]) == '/');
}

bool sg_cred_env_taken(const struct sg_driver_sandbox *sb, size_t i)
{
    const char *name = sb->credentials[i].target;

    for (size_t k = 0; k < sb->n_env; k++) {
        if (STREQ(sb->env_names[k], name))
            return true;
    }
    for (size_t k = 0; k < i; k++) {
        if (sb->credentials[k].delivery == SG_DRIVER_DELIVER_ENV &&
            STREQ(sb->credentials[k].target, name))
            return true;
    }
    return false;
}
