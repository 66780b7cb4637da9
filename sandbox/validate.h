/*
 * validate.h: validation of SandboxService requests.
 *
 * sg_validate_create_sandbox() checks a CreateSandboxRequest against the
 * rules of sandbox.proto and the size limits in struct sg_validate_limits,
 * and reports every bad field it finds (not just the first) as a field
 * violation of one struct sg_error, so the client can fix them all at once.
 * Field paths follow the proto: "sandbox.name", "sandbox.spec.command[3]",
 * "sandbox.labels[\"Bad Key\"]", "sandbox.spec.driver_config.process".
 *
 * The small predicates below (DNS-1123 names, Kubernetes label keys and
 * values, environment names, request ids) are exported for the other
 * request checks of the service (list filters, the label selector).
 *
 * Paths and messages never contain values, only keys, quoted with
 * sg_validate_quote() (printable ASCII; anything else as \xHH).
 *
 * OWNERSHIP: nothing here allocates what it returns; the reason strings of
 * the *_check() functions are static.
 * THREAD SAFETY: all functions are pure and may be called from any thread.
 */
#ifndef SG_SANDBOX_VALIDATE_H
#define SG_SANDBOX_VALIDATE_H

#include "internal.h"
#include "error.h"

#include "sandgate_v1_sandbox.pb-c.h"

/* Sizes are in bytes unless the name says otherwise. */
struct sg_validate_limits {
    size_t image_max;             /* spec.image: 1024 */
    size_t command_args_max;      /* spec.command entries: 256 */
    size_t command_arg_max;       /* one argument: 4096 */
    size_t command_total_max;     /* all arguments: 64 KiB */
    size_t env_max;               /* spec.env entries: 256 */
    size_t env_name_max;          /* one variable name: 256 */
    size_t env_total_max;         /* all names and values: 64 KiB */
    size_t path_max;              /* working_dir, credential files: 4096 */
    size_t policy_inline_max;     /* spec.policy.inline: 1 MiB */
    size_t policy_ref_max;        /* spec.policy.ref: 253 characters */
    size_t driver_config_max;     /* spec.driver_config packed: 64 KiB */
    size_t driver_config_depth;   /* nesting of driver_config: 32 */
    uint32_t ttl_seconds_max;     /* spec.ttl_seconds: 604800 (7 days) */
    size_t labels_max;            /* labels entries: 64 */
    size_t annotations_total_max; /* annotation keys and values: 256 KiB */
    size_t credentials_max;       /* spec.credentials entries: 32 */
    size_t request_id_max;        /* request_id: 128 */
};

/* At most this many violations are reported; one more says so. */
#define SG_VALIDATE_MAX_VIOLATIONS 100

/* The default limits (the values in the comments above). */
struct sg_validate_limits sg_validate_limits_default(void);

/*
 * Check a CreateSandboxRequest. lim may be NULL (the defaults). Returns 0
 * if it is valid; otherwise -1 with one INVALID_ARGUMENT field violation
 * per problem in err (SG_ERR_NO_MEMORY if memory ran out). err may be NULL.
 */
int sg_validate_create_sandbox(const Sandgate__V1__CreateSandboxRequest *req,
                               const struct sg_validate_limits *lim,
                               struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * The request_id the create request carries: req->request_id, or else
 * req->sandbox->request_id, or "" if neither is set (or req is NULL).
 * Borrowed from req.
 */
const char *sg_create_request_id(const Sandgate__V1__CreateSandboxRequest *req);

/*
 * The *_check() functions return NULL if s is valid, else a static English
 * reason ("must be at most 63 characters"); the sg_is_*() ones are the
 * boolean forms. s must not be NULL.
 */

/* DNS-1123 label: 1-63 of [a-z0-9-], alphanumeric at both ends. */
const char *sg_dns1123_label_check(const char *s);
bool sg_is_dns1123_label(const char *s);

/* DNS-1123 subdomain: <= 253, dot-separated [a-z0-9-] parts as above. */
const char *sg_dns1123_subdomain_check(const char *s);
bool sg_is_dns1123_subdomain(const char *s);

/*
 * Kubernetes label key: [prefix '/'] name, prefix a DNS-1123 subdomain,
 * name 1-63 of [-_.A-Za-z0-9] with [A-Za-z0-9] at both ends. Also the rule
 * for annotation keys.
 */
const char *sg_label_key_check(const char *s);
bool sg_is_label_key(const char *s);

/* Kubernetes label value: empty, or a name as in label keys. */
const char *sg_label_value_check(const char *s);
bool sg_is_label_value(const char *s);

/* Environment variable name: [A-Za-z_][A-Za-z0-9_]* (length not checked). */
bool sg_is_env_name(const char *s);

/* Request id: 1-max_len of [A-Za-z0-9._:-]. */
bool sg_is_request_id(const char *s, size_t max_len);

/* True if the len bytes at s are well-formed UTF-8 (no surrogates). */
bool sg_is_utf8(const char *s, size_t len);

/*
 * Write s into out (size bytes, always NUL-terminated) for a field path or
 * message: printable ASCII as is, '"' and '\\' escaped with a backslash,
 * other bytes as \xHH; at most 100 bytes of s, then "...".
 */
void sg_validate_quote(const char *s, char *out, size_t size);

#endif /* SG_SANDBOX_VALIDATE_H */
