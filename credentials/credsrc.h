/*
 * credsrc.h: the gateway's credential sources (the built-in ones and the
 * configured plugins, include/sandgate/credential_source.h), by kind.
 *
 * Built in: "file" (ref {"path": absolute}: a regular file under one of
 * the configured directories, no symlink leading out of them), "env"
 * (ref {"name": VAR}: a variable of the gateway's environment whose name
 * starts with the configured prefix) and, registered by the kubernetes
 * driver's code when it is configured, "kubernetes-secret" (ref
 * {"namespace", "name", "key"}).
 *
 * OWNERSHIP: the registry is the caller's (sg_credsrc_registry_free);
 * material (struct sg_secret) is the caller's and is wiped by
 * sg_secret_free. Arguments are borrowed.
 * THREAD SAFETY: new and free on one thread with nothing in flight;
 * everything else from any thread, concurrently. sg_credsrc_resolve may
 * block: call it from a worker thread, never from the loop or a CQ thread.
 */
#ifndef SG_CREDENTIALS_CREDSRC_H
#define SG_CREDENTIALS_CREDSRC_H

#include "internal.h"
#include "error.h"

#include <sandgate/credential_source.h>

struct sg_credsrc_registry;

/* One plugin to load. */
struct sg_credsrc_plugin_config {
    const char *path;          /* absolute path of the shared object */
    const char *settings_json; /* NULL: "{}" */
};

struct sg_credsrc_config {
    /* file: the directories references may name files under (none: the
       file source refuses every reference). */
    const char *const *file_directories;
    size_t n_file_directories;
    /* env: the prefix a variable's name must have (NULL or "": the env
       source refuses every reference). */
    const char *env_prefix;
    const struct sg_credsrc_plugin_config *plugins;
    size_t n_plugins;
};

/* Material, wiped on free. */
struct sg_secret {
    uint8_t *data;
    size_t len;
    int64_t expire_time_ms; /* 0: unknown */
};

/*
 * Load the built-in sources and every configured plugin. NULL with err
 * set (SG_ERR_CONFIG, the exact loader message: "credential plugin
 * '/p/x.so': <why>") when a plugin cannot be loaded or a kind is taken
 * twice.
 */
struct sg_credsrc_registry *sg_credsrc_registry_new(
    const struct sg_credsrc_config *cfg,
    struct sg_error *err) SG_WARN_UNUSED_RESULT;

void sg_credsrc_registry_free(struct sg_credsrc_registry *reg); /* NULL-safe */

/*
 * Add a source built into the gateway on the same ABI (the kubernetes
 * driver's "kubernetes-secret"), checked as a plugin is. Returns 0, or -1
 * with err set. Before the registry is shared between threads.
 */
int sg_credsrc_register(struct sg_credsrc_registry *reg,
                        const struct sg_credsrc_ops *ops,
                        const char *settings_json,
                        struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Whether kind names a loaded source. */
bool sg_credsrc_known(const struct sg_credsrc_registry *reg,
                      const char *kind);

/* Check ref_json (JSON object text) for kind. 0, or -1 with err set:
   SG_ERR_INVALID_ARGUMENT naming the field, also for an unknown kind
   ("source.kind: unknown credential source 'x'"). */
int sg_credsrc_validate(const struct sg_credsrc_registry *reg,
                        const char *kind, const char *ref_json,
                        struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* A description of the reference for audit lines, into out (size
   bytes), never material. Always writes something. */
void sg_credsrc_describe(const struct sg_credsrc_registry *reg,
                         const char *kind, const char *ref_json, char *out,
                         size_t size);

/*
 * Resolve ref_json into *out (the caller's: sg_secret_free). 0, or -1 with
 * err set: SG_ERR_FAILED_PRECONDITION when the reference does not resolve
 * (missing file, variable, Secret or key; the message says which, never
 * the material), SG_ERR_UNAVAILABLE when the source cannot be reached,
 * SG_ERR_INVALID_ARGUMENT for a bad reference. Blocks.
 */
int sg_credsrc_resolve(const struct sg_credsrc_registry *reg,
                       const char *kind, const char *ref_json,
                       struct sg_secret **out,
                       struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Wipe and free. NULL-safe. */
void sg_secret_free(struct sg_secret *s);

#endif /* SG_CREDENTIALS_CREDSRC_H */
