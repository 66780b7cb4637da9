/*
 * sandgate/credential_source.h: the credential source plugin ABI.
 *
 * A credential source turns a reference (a JSON object whose schema the
 * source owns, e.g. {"namespace": "team-a", "name": "git", "key": "token"}
 * for kind "kubernetes-secret") into secret material, only when the
 * gateway delivers it to a sandbox or checks that it resolves. The
 * gateway stores references, never material.
 *
 * A plugin is a shared object that exports one symbol, SG_CREDSRC_ENTRY,
 * of type sg_credsrc_entry_fn. The host calls it once with its table of
 * host functions; the plugin returns its ops table, which starts with the
 * ABI version, the table's size, the source's name and a build signature.
 * The host refuses a table whose major version differs, whose minor is
 * newer than the host's, whose size is smaller than the slots of its minor
 * need, or whose signature differs from SG_CREDSRC_SIGNATURE (the same
 * header, a compatible compiler ABI). Both tables only ever grow at the
 * end; each side reads a slot only when the other's struct_size covers it.
 * The built-in sources (file, env, kubernetes-secret) use the same ABI.
 *
 * OWNERSHIP: strings and buffers a plugin hands back (error messages,
 * descriptions, material) are allocated with host->alloc; the host frees
 * them (material after host->wipe). Arguments are borrowed for the call.
 * THREAD SAFETY: the host calls open and close on one thread, with no
 * other call in flight; validate, describe and resolve may run on any
 * thread, concurrently; resolve may block (it runs on a worker thread).
 */
#ifndef SANDGATE_CREDENTIAL_SOURCE_H
#define SANDGATE_CREDENTIAL_SOURCE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a plugin marks its entry point with (the tree builds with
   -fvisibility=hidden). The same definition as <sandgate/driver.h>. */
#ifndef SG_EXPORT
#if defined(__GNUC__)
#define SG_EXPORT __attribute__((visibility("default")))
#else
#define SG_EXPORT
#endif
#endif

#define SG_CREDSRC_ABI_MAJOR 1
#define SG_CREDSRC_ABI_MINOR 0
/* The exported entry point's name. */
#define SG_CREDSRC_ENTRY "sg_credential_source_entry"
/* What the host and the plugin were built against: this ABI's major and
   the size of a pointer and of the tables' leading fields. */
#define SG_CREDSRC_SIGNATURE "sandgate-credsrc-1:lp64"

enum sg_credsrc_log_level {
    SG_CREDSRC_LOG_DEBUG = 0,
    SG_CREDSRC_LOG_INFO,
    SG_CREDSRC_LOG_WARN,
    SG_CREDSRC_LOG_ERROR,
};

struct sg_credsrc_host {
    /* --- ABI 1.0 --- */
    uint32_t abi_major;
    uint32_t abi_minor;
    size_t struct_size;
    void *(*alloc)(size_t size);            /* NULL when out of memory */
    void (*free)(void *ptr);                /* NULL-safe */
    /* Overwrite n bytes at p so the compiler cannot skip it. */
    void (*wipe)(void *p, size_t n);
    /* A log line under "credentials.<source>". Never pass material. */
    void (*log)(enum sg_credsrc_log_level level, const char *source,
                const char *fmt, ...) __attribute__((format(printf, 3, 4)));
    /* --- append new slots here, and bump SG_CREDSRC_ABI_MINOR --- */
};

/* Material a resolve produced: data (host->alloc'd, len bytes, not
   NUL-terminated) and when it stops being valid (ms since the epoch, 0:
   no expiry known). */
struct sg_credsrc_material {
    uint8_t *data;
    size_t len;
    int64_t expire_time_ms;
};

struct sg_credsrc_ops {
    /* --- ABI 1.0 --- */
    uint32_t abi_major;   /* SG_CREDSRC_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;
    size_t struct_size;   /* sizeof(struct sg_credsrc_ops) */
    const char *name;     /* the source kind, e.g. "vault": [a-z0-9-] */
    const char *signature; /* SG_CREDSRC_SIGNATURE */
    size_t priv_size;     /* zeroed state the host allocates */

    /* Start with the operator's settings (JSON object text, "{}" if
       none). 0, or -1 with *errmsg set. */
    int (*open)(void *priv, const struct sg_credsrc_host *host,
                const char *settings_json, char **errmsg);
    /* Release everything. */
    void (*close)(void *priv);
    /* Whether ref_json (a JSON object) is a well-formed reference. 0, or
       -1 with *errmsg naming the field ("ref.key: required"). No I/O. */
    int (*validate)(void *priv, const char *ref_json, char **errmsg);
    /* For the audit log: what ref_json names, without material (e.g.
       "secret team-a/git key token"). 0 with *out set, or -1. */
    int (*describe)(void *priv, const char *ref_json, char **out,
                    char **errmsg);
    /* Fetch the material. 0 with *out filled, or -1 with *errmsg saying
       why (never quoting material). May block. */
    int (*resolve)(void *priv, const char *ref_json,
                   struct sg_credsrc_material *out, char **errmsg);
    /* --- append new slots here, and bump SG_CREDSRC_ABI_MINOR --- */
};

typedef const struct sg_credsrc_ops *(*sg_credsrc_entry_fn)(
    const struct sg_credsrc_host *host);

#ifdef __cplusplus
}
#endif

#endif /* SANDGATE_CREDENTIAL_SOURCE_H */
