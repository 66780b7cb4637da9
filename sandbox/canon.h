/*
 * canon.h: canonical forms of sandbox request content.
 *
 * - google.protobuf.Struct/Value as compact JSON with sorted object keys
 *   (the driver_config block handed to a driver);
 * - the policy hash reported in SandboxStatus.policy_hash;
 * - the request hash that tells an idempotent CreateSandbox retry (same
 *   request_id, same content) from a conflicting one.
 *
 * JSON numbers: integral values with |x| <= 2^53 print as integers ("3",
 * not "3.0"); other finite numbers print as reals with the fewest digits
 * (at most 17) that make every real of the document read back exactly.
 * NaN and infinities have no JSON form and are refused. A Value with no
 * kind set is refused too. When a Struct repeats a key the last one counts,
 * as in a protobuf map.
 *
 * OWNERSHIP: returned strings are malloc'd; the caller frees them.
 * THREAD SAFETY: all functions are pure and may be called from any thread.
 */
#ifndef SG_SANDBOX_CANON_H
#define SG_SANDBOX_CANON_H

#include "internal.h"
#include "error.h"

#include "google_protobuf_struct.pb-c.h"
#include "sandgate_v1_sandbox.pb-c.h"

/* "sha256:" + 64 hex digits + NUL. */
#define SG_HASH_SIZE 72

/* Structs and lists nested deeper than this are refused. */
#define SG_CANON_MAX_DEPTH 64

/*
 * JSON of s ("{}" for NULL) or v. Returns NULL with INVALID_ARGUMENT in err
 * for NaN/infinite numbers, kind-less values, invalid UTF-8 or nesting
 * deeper than SG_CANON_MAX_DEPTH; NULL with SG_ERR_NO_MEMORY when memory
 * runs out.
 */
char *sg_struct_to_json(const Google__Protobuf__Struct *s,
                        struct sg_error *err) SG_WARN_UNUSED_RESULT;
char *sg_value_to_json(const Google__Protobuf__Value *v,
                       struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * JSON of the block driver_config[driver_name], "{}" when driver_config is
 * NULL or has no such key. Fails like sg_struct_to_json, and with
 * INVALID_ARGUMENT if the block is not an object.
 */
char *sg_driver_block_json(const Google__Protobuf__Struct *driver_config,
                           const char *driver_name,
                           struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * "sha256:<hex>" of the policy: SHA-256 over "inline\0" + the bytes, or
 * "ref\0" + the reference. "" when p is NULL or has no source.
 */
void sg_policy_hash(const Sandgate__V1__SandboxPolicy *p,
                    char out[SG_HASH_SIZE]);

/*
 * "sha256:<hex>" digest of the caller-supplied content of sb: name, tenant,
 * project, request_id, labels, annotations, spec, access and runtime
 * profile. Output-only fields (id, owner, status, resource_version, times)
 * are left out. Canonical: map entries and Struct keys are sorted (the
 * last of repeated keys counts), so their order does not matter; a missing
 * spec or driver_config equals an empty one. Any other difference in
 * content gives a different hash. Returns 0, or -1 with err set when
 * driver_config has no JSON form (see sg_struct_to_json) or memory runs
 * out (out is then "").
 */
int sg_sandbox_request_hash(const Sandgate__V1__Sandbox *sb,
                            char out[SG_HASH_SIZE],
                            struct sg_error *err) SG_WARN_UNUSED_RESULT;

/*
 * The same for a create request, with the effective request_id
 * (sg_create_request_id) in place of sandbox.request_id, so a retry hashes
 * the same whichever of the two fields carries the key.
 */
int sg_create_request_hash(const Sandgate__V1__CreateSandboxRequest *req,
                           char out[SG_HASH_SIZE],
                           struct sg_error *err) SG_WARN_UNUSED_RESULT;

#endif /* SG_SANDBOX_CANON_H */
