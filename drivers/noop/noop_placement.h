/*
 * noop_placement.h: the "placement" key of the noop driver's block, and
 * the driver's error-message formatter.
 *
 * The noop driver places nothing, so it reports the placement facts the
 * caller writes here, verbatim: the authorizer can then be exercised on
 * every scope (namespace, service account, runtime class, node selector,
 * tolerations, CPU and memory, allocation mode, template, warm pool)
 * without a cluster. Schema (strict; every key optional):
 *     {"namespace": S, "serviceAccountName": S, "runtimeClassName": S,
 *      "nodeSelector": {S: S, ...}, "tolerationKeys": [S, ...],
 *      "cpuMillis": N, "memoryBytes": N, "allocation": S,
 *      "template": S, "warmPool": S}
 *
 * OWNERSHIP: out's strings and arrays are host-allocated (the gateway
 * frees them). THREAD SAFETY: pure; any thread.
 */
#ifndef SG_NOOP_PLACEMENT_H
#define SG_NOOP_PLACEMENT_H

#include "internal.h"

#include <jansson.h>
#include <sandgate/driver.h>

/*
 * Check value (the "placement" member) and, when out is not NULL, fill
 * out from it and append "placement.<key>" to names (n_names in and out;
 * names must have room for NOOP_PLACEMENT_KEYS more). Returns 0, or -1
 * with *errmsg set ("noop.placement.cpuMillis: expected an integer").
 */
#define NOOP_PLACEMENT_KEYS 10
int noop_placement_load(const struct sg_driver_host *host, json_t *value,
                        struct sg_driver_placement *out, const char **names,
                        size_t *n_names, char **errmsg);

/* An error message, host-allocated (the driver's messages all go
   through this). NULL when out of memory. */
char *noop_msg(const struct sg_driver_host *host, const char *fmt, ...)
    SG_PRINTF(2, 3);

#endif /* SG_NOOP_PLACEMENT_H */
