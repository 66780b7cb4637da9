/*
 * descriptors.h: the index of every served proto, built from the
 * FileDescriptorSet embedded at build time (sg_fds.h).
 *
 * It answers server reflection (files by name, the file that defines a
 * symbol, with transitive dependencies, and the list of services) and tells
 * the redacting formatter which fields carry the `(sandgate.v1.secret)`
 * option, read from the options' unknown fields since protobuf-c does not
 * expose custom options.
 *
 * OWNERSHIP: the index is a process-wide singleton created by
 * sg_descriptors_init() and destroyed by sg_descriptors_cleanup(); every
 * pointer it returns is borrowed and valid until cleanup.
 * THREAD SAFETY: init and cleanup run on the main thread while no call is
 * being served; every lookup may run concurrently from any thread.
 */
#ifndef SG_SERVER_DESCRIPTORS_H
#define SG_SERVER_DESCRIPTORS_H

#include "internal.h"
#include "buf.h"
#include "error.h"

#include <protobuf-c/protobuf-c.h>
#include <sys/types.h>

/* Parse the embedded set. Returns 0, or -1 with err set. Idempotent. */
int sg_descriptors_init(struct sg_error *err);
void sg_descriptors_cleanup(void);

/* Number of services and the i-th fully qualified name ("pkg.Service"). */
size_t sg_descriptors_n_services(void);
const char *sg_descriptors_service_name(size_t i);

/*
 * The serialized FileDescriptorProto of `filename` followed by those of all
 * its transitive dependencies, each once, dependencies after dependents.
 * Fills *files with borrowed byte strings (caller frees the array only,
 * with free()). Returns the count, 0 if not found, -1 on no memory.
 */
ssize_t sg_descriptors_file_with_deps(const char *filename,
                                      ProtobufCBinaryData **files);

/*
 * The same for the file that defines `symbol`: a package-qualified service,
 * method ("pkg.Service.Method"), message (also nested), enum or field.
 */
ssize_t sg_descriptors_symbol_with_deps(const char *symbol,
                                        ProtobufCBinaryData **files);

/*
 * The same for the file that defines extension field `number` of message
 * `containing_type` ("pkg.Msg", e.g. "google.protobuf.FieldOptions").
 */
ssize_t sg_descriptors_extension_with_deps(const char *containing_type,
                                           int32_t number,
                                           ProtobufCBinaryData **files);

/* True if `name` ("pkg.Msg", also nested) is a message type in the set. */
bool sg_descriptors_is_message(const char *name);

/*
 * The extension field numbers of message `containing_type` defined in the
 * set, ascending. Fills *numbers with a malloc'd array (caller frees with
 * free(); NULL when the count is 0). Returns the count (0 also for unknown
 * types; see sg_descriptors_is_message), or -1 on no memory.
 */
ssize_t sg_descriptors_extension_numbers(const char *containing_type,
                                         int32_t **numbers);

/* True if message `message_name` ("pkg.Msg") field `field` is secret. */
bool sg_descriptors_field_is_secret(const char *message_name,
                                    const char *field);

/*
 * Append msg to out as compact JSON-like text for debug logs, replacing the
 * value of every secret field (at any depth) by "[REDACTED]". Fields at
 * their proto3 default are left out; long strings, bytes (shown as base64)
 * and repeated fields are shortened, with their full size noted; maps,
 * Struct/Value, Timestamp and Duration print in their JSON form. Before
 * sg_descriptors_init() (or after cleanup) every string and bytes value is
 * redacted. msg may be NULL ("null"). Never fails (out records allocation
 * failure). Any thread.
 */
void sg_descriptors_format_redacted(struct sg_buf *out,
                                    const ProtobufCMessage *msg);

#endif /* SG_SERVER_DESCRIPTORS_H */
