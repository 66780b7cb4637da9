/*
 * k8s_objects.h: the agents.x-k8s.io/v1beta1 Sandbox objects the driver
 * writes, and what it reads back from them.
 *
 * THREAD SAFETY: pure functions of their arguments; any thread.
 */
#ifndef SG_K8S_OBJECTS_H
#define SG_K8S_OBJECTS_H

#include "internal.h"
#include "error.h"
#include "k8s_config.h"

#include <jansson.h>
#include <sandgate/driver.h>
#include <time.h>

#define K8S_SANDBOX_API "/apis/agents.x-k8s.io/v1beta1"
#define K8S_NAME_MAX 63

/*
 * The Sandbox name of a sandbox id: "sg-<id>", a DNS-1035 label (the
 * controller names the pod and Service after it). An id too long for that
 * keeps its first 50 bytes and gains an FNV-1a hash of the whole id, so
 * the name stays deterministic and distinct. out has K8S_NAME_MAX + 1
 * bytes.
 */
void k8s_object_name(const char *id, char out[K8S_NAME_MAX + 1]);

/* FNV-1a 32-bit (the agent-sandbox NameHash). */
uint32_t k8s_fnv1a(const char *s);

/*
 * The Sandbox to create for sb with block b, as a new JSON object the
 * caller owns (json_decref). now is the creation time (shutdownTime =
 * now + ttl). Returns NULL with err set (SG_ERR_INVALID_ARGUMENT when the
 * sandbox has no image and no default exists; SG_ERR_NO_MEMORY).
 */
json_t *k8s_sandbox_build(const struct k8s_settings *s,
                          const struct k8s_block *b,
                          const struct sg_driver_sandbox *sb, time_t now,
                          struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* What the driver keeps of one Sandbox it observed. */
struct k8s_observed {
    char id[64];        /* sandbox id label; "" when absent or invalid */
    char gateway[64];   /* gateway id label */
    char namespace_name[64];
    char name[K8S_NAME_MAX + 1];
    char uid[64];
    char rv[32];
    bool deleting;      /* deletionTimestamp set */
    enum sg_driver_state state;
    char reason[64];
    char message[256];
};

/*
 * Read obj (a Sandbox) into *out. Returns 0, or -1 when obj lacks
 * metadata.name or metadata.namespace.
 *
 * State: Ready=True -> RUNNING; Ready=False with a terminal reason
 * (PodFailed, PodSucceeded, SandboxExpired) or Finished=True -> FAILED with
 * that condition's reason and message; otherwise PENDING, with the reason
 * of PodScheduled=False (e.g. Unschedulable) or of Ready when set.
 */
int k8s_sandbox_observe(json_t *obj, struct k8s_observed *out);

/* True when id may be a sandbox id ([a-z0-9-], 1 to 63 bytes). */
bool k8s_id_valid(const char *id);

#endif /* SG_K8S_OBJECTS_H */
