/*
 * k8s_pools.h: the warm pools the driver's settings declare (warm_pools).
 *
 * For each, the gateway creates a SandboxTemplate and a SandboxWarmPool of
 * the pool's name and keeps them as declared: per namespace of a declared
 * pool, one informer on each kind, filtered by our gateway-id label; after
 * each list and watch event, a missing object is created, one whose
 * sandgate.io/spec-hash annotation is not the declared spec's (or a pool
 * whose replicas or template differ) is replaced (PUT with its
 * resourceVersion), and one with our label that no declaration names is
 * deleted. A template edited by hand under our annotation is not noticed. A failed write is tried again after
 * retry_max_ms. Every change of a pool's ready replicas (its status) is
 * reported to ready_fn.
 *
 * THREAD SAFETY: loop thread only, like the client it uses.
 * OWNERSHIP: the driver makes it and closes it before the client; the
 * loop, host, client and settings are borrowed and must outlive it.
 */
#ifndef SG_K8S_POOLS_H
#define SG_K8S_POOLS_H

#include "internal.h"
#include "k8s_client.h"
#include "k8s_config.h"

#include <sandgate/driver.h>
#include <uv.h>

struct k8s_pools;

/* Pool ns/name has ready of replicas members ready (its status). */
typedef void (*k8s_pools_ready_fn)(void *opaque, const char *ns,
                                   const char *name, uint32_t ready,
                                   uint32_t replicas);

/* Start keeping s->pools (default namespace default_ns). Returns NULL
   when out of memory; with no pools declared, an object that does
   nothing. */
struct k8s_pools *k8s_pools_new(uv_loop_t *loop,
                                const struct sg_driver_host *host,
                                struct k8s_client *client,
                                const struct k8s_settings *s,
                                const char *default_ns,
                                k8s_pools_ready_fn ready_fn, void *opaque);

/* Stop: no callback runs after this. NULL-safe. */
void k8s_pools_close(struct k8s_pools *p);

#endif /* SG_K8S_POOLS_H */
