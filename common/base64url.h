/*
 * base64url.h: unpadded base64url (RFC 4648 section 5), strict.
 *
 * One encoding per byte string: decoding refuses padding, any byte
 * outside the alphabet, a length no encoding has (len % 4 == 1) and
 * non-zero unused bits in the last character. Page tokens, JWT segments
 * and JWK members all need exactly that.
 *
 * OWNERSHIP: callers provide the buffers. THREAD SAFETY: pure functions.
 */
#ifndef SG_COMMON_BASE64URL_H
#define SG_COMMON_BASE64URL_H

#include "internal.h"

/* Characters the encoding of len bytes takes (without the NUL). */
#define SG_BASE64URL_LEN(len) (((len) * 4 + 2) / 3)

/* Encode len bytes into out (room for SG_BASE64URL_LEN(len) + 1), NUL
   terminated. Returns the length written. */
size_t sg_base64url_encode(const uint8_t *in, size_t len, char *out);

/* Decode len characters into out (room for len * 3 / 4 bytes). Returns
   the decoded length, or -1 when in is not a strict encoding. */
long sg_base64url_decode(const char *in, size_t len, uint8_t *out);

#endif /* SG_COMMON_BASE64URL_H */
