/*
 * k8s_objects.h: the objects the driver writes (an agents.x-k8s.io/v1beta1
 * Sandbox, or an extensions.agents.x-k8s.io/v1beta1 SandboxClaim against a
 * warm pool), and what it reads back from them.
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
#define K8S_EXT_API "/apis/extensions.agents.x-k8s.io/v1beta1"
#define K8S_NAME_MAX 63

/* Which kind of object backs a sandbox. */
enum k8s_kind {
    K8S_KIND_SANDBOX = 0,
    K8S_KIND_CLAIM,
};

/* Its collection name under K8S_SANDBOX_API or K8S_EXT_API, and that
   prefix. */
const char *k8s_kind_plural(enum k8s_kind kind);
const char *k8s_kind_api(enum k8s_kind kind);
const char *k8s_kind_name(enum k8s_kind kind); /* "Sandbox", "SandboxClaim" */

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
 * now + ttl). sb's credential bindings (ABI 1.3) become references to
 * its credentials Secret (k8s_credsecret.h). Returns NULL with err set
 * (SG_ERR_INVALID_ARGUMENT when the sandbox has no image and no default
 * exists; SG_ERR_NO_MEMORY).
 */
json_t *k8s_sandbox_build(const struct k8s_settings *s,
                          const struct k8s_block *b,
                          const struct sg_driver_sandbox *sb, time_t now,
                          struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * The sandgate labels a Sandbox of sb carries (sandbox id, gateway id,
 * managed-by, and the tenant and project sanitised), as a new JSON object
 * the caller owns, or NULL when memory ran out. Objects made beside the
 * Sandbox (its credentials Secret) carry them too.
 */
json_t *k8s_labels_build(const struct k8s_settings *s,
                         const struct sg_driver_sandbox *sb);

/*
 * The SandboxClaim to create for sb with a SandboxClaim block b, as a new
 * JSON object the caller owns: named like the Sandbox would be, our labels
 * and annotations on the claim, the annotations (and, with
 * settings.claim_pod_labels, the labels) and the block's pod labels and
 * annotations in additionalPodMetadata, sb's env in spec.env (which forces
 * a cold start), and the TTL as lifecycle.shutdownTime with shutdownPolicy
 * Delete. Same errors as k8s_sandbox_build.
 */
json_t *k8s_claim_build(const struct k8s_settings *s,
                        const struct k8s_block *b,
                        const struct sg_driver_sandbox *sb, time_t now,
                        struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * The SandboxTemplate and the SandboxWarmPool of a warm pool the settings
 * declare, as new JSON objects the caller owns, in namespace ns: labelled
 * with our gateway id and managed-by, and annotated with
 * K8S_ANN_SPEC_HASH, the hash of the spec they carry (how the driver tells
 * its own current object from one to rewrite). NULL when out of memory.
 */
json_t *k8s_template_build(const struct k8s_settings *s,
                           const struct k8s_managed_pool *p, const char *ns);
json_t *k8s_pool_build(const struct k8s_settings *s,
                       const struct k8s_managed_pool *p, const char *ns);
#define K8S_ANN_SPEC_HASH "sandgate.io/spec-hash"

/* What the driver keeps of one Sandbox or SandboxClaim it observed. */
struct k8s_observed {
    enum k8s_kind kind;
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
    char bound[K8S_NAME_MAX + 1]; /* claims: the bound Sandbox, or "" */
    bool warm;                    /* claims: bound to a warm pool member */
    bool creds; /* Sandboxes: has a credentials Secret (k8s_credsecret.h) */
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

/*
 * Read obj (a SandboxClaim) into *out, the same way. The claim's Ready
 * condition is its bound Sandbox's, forwarded; the claim controller's own
 * reasons that never turn Ready (WarmPoolNotFound, TemplateNotFound,
 * InvalidMetadata, EnvVarsInjectionRejected, VolumeClaimTemplatesError,
 * ClaimExpired) are FAILED too. Ready=True is RUNNING with reason
 * WarmStart (bound to a Sandbox of another name: a pool member) or
 * ColdStart (a Sandbox named after the claim) and a message naming the
 * bound Sandbox and its pod IPs.
 */
int k8s_claim_observe(json_t *obj, struct k8s_observed *out);

/* True when id may be a sandbox id ([a-z0-9-], 1 to 63 bytes). */
bool k8s_id_valid(const char *id);

#endif /* SG_K8S_OBJECTS_H */
