/*
 * cred_targets.h: rules every driver applies to credential binding
 * targets (include/sandgate/driver.h, struct sg_driver_credential), in
 * one place.
 *
 * OWNERSHIP: arguments are borrowed.
 * THREAD SAFETY: pure functions; any thread.
 */
#ifndef SG_CRED_TARGETS_H
#define SG_CRED_TARGETS_H

#include "internal.h"

#include <sandgate/driver.h>

/* Whether paths a and b are the same, or one lies under the other (so
   that both cannot be made as files). */
bool sg_paths_nest(const char *a, const char *b);

/* Whether the ENV target of binding i is taken already: by sb's env or
   by an earlier ENV binding. */
bool sg_cred_env_taken(const struct sg_driver_sandbox *sb, size_t i);

#endif /* SG_CRED_TARGETS_H */
