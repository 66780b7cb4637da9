/*
 * sources.h: the built-in credential sources (file, env,
 * kubernetes-secret) and the reference-parsing helpers they share.
 *
 * Each source is an ops table on the plugin ABI
 * (include/sandgate/credential_source.h), registered by credsrc.c as a
 * plugin's would be.
 *
 * OWNERSHIP: the tables are static and const. Strings the helpers return
 * through errmsg are host->alloc'd (the caller frees them with
 * host->free); a parsed reference is the caller's (json_decref).
 * THREAD SAFETY: everything here may run on any thread, concurrently.
 */
#ifndef SG_CREDENTIALS_SOURCES_H
#define SG_CREDENTIALS_SOURCES_H

#include "internal.h"

#include <jansson.h>
#include <sandgate/credential_source.h>

/* Largest file the file source reads. */
#define SG_CREDSRC_FILE_MAX ((size_t)1024 * 1024)

const struct sg_credsrc_ops *sg_credsrc_file_ops(void);
const struct sg_credsrc_ops *sg_credsrc_env_ops(void);
/* validate and describe are complete; resolve answers "resolving needs
   the kubernetes driver" until that driver registers a table of its own
   (sg_credsrc_register replaces this one). That table may reuse this
   one's validate and describe if its priv starts with the
   const struct sg_credsrc_host * its open received. */
const struct sg_credsrc_ops *sg_credsrc_k8s_secret_ops(void);

/* A host->alloc'd, formatted string (NULL when out of memory). */
char *sg_credsrc_msg(const struct sg_credsrc_host *host, const char *fmt, ...)
    SG_PRINTF(2, 3);

/*
 * Parse ref_json as a JSON object whose keys are all in keys[n_keys].
 * NULL with *errmsg set ("ref: not a JSON object", "ref.x: unknown key").
 */
json_t *sg_credsrc_ref_parse(const struct sg_credsrc_host *host,
                             const char *ref_json, const char *const *keys,
                             size_t n_keys, char **errmsg);

/* The non-empty string ref[key] into *out (borrowed from ref). -1 with
 *errmsg set ("ref.key: required", "ref.key: must be a string"). */
int sg_credsrc_ref_string(const struct sg_credsrc_host *host, json_t *ref,
                          const char *key, const char **out, char **errmsg);

#endif /* SG_CREDENTIALS_SOURCES_H */
