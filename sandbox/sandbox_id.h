/*
 * sandbox_id.h: sandbox ids.
 *
 * An id is "sb-" followed by a ULID in lower-case Crockford base32 (26
 * characters): a 48-bit millisecond Unix timestamp, then 80 random bits
 * from getrandom(2). Within this process ids are strictly increasing, even
 * within one millisecond or when the clock steps back (the ULID monotonic
 * rule: the random part of the previous id plus one), so byte order of ids
 * is creation order and list pagination can use the id as its key.
 *
 * OWNERSHIP: the caller provides the output buffer.
 * THREAD SAFETY: sg_sandbox_id_new() may be called from any thread (the
 * monotonic state is under a mutex); sg_sandbox_id_valid() is pure.
 */
#ifndef SG_SANDBOX_SANDBOX_ID_H
#define SG_SANDBOX_SANDBOX_ID_H

#include "internal.h"

/* "sb-" + 26 characters + NUL. */
#define SG_SANDBOX_ID_LEN 29
#define SG_SANDBOX_ID_SIZE (SG_SANDBOX_ID_LEN + 1)

/*
 * Write a new id into out. Returns 0, or -1 with errno set if the system
 * has no randomness to give (out is then "").
 */
int sg_sandbox_id_new(char out[SG_SANDBOX_ID_SIZE]) SG_WARN_UNUSED_RESULT;

/*
 * True if s has the form of an id: "sb-" and 26 characters of
 * "0123456789abcdefghjkmnpqrstvwxyz", the first at most '7' (128 bits).
 */
bool sg_sandbox_id_valid(const char *s);

#endif /* SG_SANDBOX_SANDBOX_ID_H */
