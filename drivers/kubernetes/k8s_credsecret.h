/*
 * k8s_credsecret.h: credential bindings (driver ABI 1.3) delivered through
 * one Secret per sandbox.
 *
 * The Secret is "<Sandbox name>-credentials" in the sandbox's namespace,
 * type Opaque, with the Sandbox's sandgate labels; binding i is the data
 * key "c<i>" (never the env name: Secret keys have rules of their own).
 * The pod template refers to it: an ENV binding is an env entry with
 * valueFrom.secretKeyRef, a FILE binding a subPath mount of the secret
 * volume K8S_CRED_VOLUME at the target, read-only. The file is mode 0400
 * for a pod that runs as root; otherwise 0440 with the pod's fsGroup set
 * to the sandbox's group (run_as_group, else run_as_user, else
 * K8S_CRED_FS_GROUP), which the kubelet makes the file's group: the pod
 * has no other container, so that is the sandbox's user only.
 *
 * SECRETS: the Secret bodies built here hold the material in base64; they
 * are malloc'd once at their final size (no realloc leaves a copy behind)
 * and are freed with k8s_creds_body_free, which wipes them. Material never
 * appears in an error message.
 *
 * THREAD SAFETY: pure functions of their arguments; any thread.
 */
#ifndef SG_K8S_CREDSECRET_H
#define SG_K8S_CREDSECRET_H

#include "internal.h"
#include "error.h"
#include "k8s_config.h"
#include "k8s_objects.h"

#include <jansson.h>
#include <sandgate/driver.h>

#define K8S_CRED_VOLUME "sg-credentials"
/* On a Sandbox with bindings: the name of its credentials Secret. */
#define K8S_ANN_CREDENTIALS "sandgate.io/credentials-secret"
#define K8S_CRED_SUFFIX "-credentials"
#define K8S_CRED_NAME_MAX (K8S_NAME_MAX + sizeof(K8S_CRED_SUFFIX) - 1)
#define K8S_CRED_MAX 64         /* bindings per sandbox */
#define K8S_CRED_PATH_MAX 1024  /* a FILE target's longest */
#define K8S_CRED_FS_GROUP 65532 /* fsGroup when the pod names no ids */
#define K8S_SECRET_DATA_MAX (1024 * 1024) /* the API's limit on data */

/*
 * Check the bindings of sb against what Kubernetes accepts: ENV targets
 * are printable ASCII without '=' and unique (also against sb's env); FILE
 * targets are absolute, normalised paths usable as a mountPath (no ':', no
 * ".", ".." or empty component, at most K8S_CRED_PATH_MAX bytes), clash
 * with no other file target (equal, or one above the other) and, when the
 * service account token is mounted, stay out of its directory. claim:
 * the sandbox is a SandboxClaim, whose env takes literal values only.
 * Returns 0, or -1 with err set: SG_ERR_UNIMPLEMENTED for a claim,
 * SG_ERR_INVALID_ARGUMENT naming credentials[i] otherwise.
 */
int k8s_creds_check(const struct k8s_settings *s,
                    const struct sg_driver_sandbox *sb, bool claim,
                    struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* The Secret's name for the Sandbox object_name. */
void k8s_creds_secret_name(const char *object_name,
                           char out[K8S_CRED_NAME_MAX + 1]);

/*
 * Add sb's bindings to a pod spec and its container (both borrowed): env
 * entries, the secret volume and its mounts, and fsGroup in the pod's
 * securityContext psc when a file needs it. secret is the Secret's name.
 * Nothing happens when sb has no bindings. false when memory ran out.
 */
bool k8s_creds_pod_apply(const struct k8s_settings *s,
                         const struct sg_driver_sandbox *sb, const char *secret,
                         json_t *pod_spec, json_t *container, json_t *psc);

/*
 * The Secret for sb (create: material set) in namespace ns, as JSON text
 * of len_out bytes; labels (borrowed) are the Sandbox's. The caller frees
 * it with k8s_creds_body_free. The same text serves as a merge patch of an
 * existing Secret of ours (it sets labels, type and every key). NULL with
 * err set: SG_ERR_INVALID_ARGUMENT when the data exceed the API's limit,
 * SG_ERR_NO_MEMORY.
 */
char *k8s_creds_secret_body(const struct sg_driver_sandbox *sb, const char *ns,
                            const char *name, json_t *labels, size_t *len_out,
                            struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Wipe and free a body of k8s_creds_secret_body. NULL-safe. */
void k8s_creds_body_free(char *body, size_t len);

/*
 * The merge patch that makes the Sandbox name/uid the Secret's only owner
 * (controller false, blockOwnerDeletion false), as malloc'd JSON text, or
 * NULL when memory ran out.
 */
char *k8s_creds_owner_patch(const char *sandbox_name, const char *uid);

/* Wipe the data values of a parsed Secret in place (before json_decref:
   jansson frees its strings without wiping them). NULL-safe. */
void k8s_creds_secret_wipe(json_t *secret);

#endif /* SG_K8S_CREDSECRET_H */
