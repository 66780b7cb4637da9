/*
 * page_token.c: opaque page tokens for ListSandboxes (see page_token.h).
 */
#include "internal.h"

#include "page_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>

#define TOKEN_VERSION 1
#define HEADER_SIZE (1 + SG_PAGE_DIGEST_SIZE + 1)
#define PAYLOAD_MAX (HEADER_SIZE + SG_PAGE_TOKEN_ID_MAX)
/* base64 of PAYLOAD_MAX bytes, unpadded. */
#define TOKEN_MAX ((PAYLOAD_MAX * 4 + 2) / 3)

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char digest_domain[] = "sandgate.v1.ListSandboxes/page-filter/1";

static void put_length(EVP_MD_CTX *ctx, size_t len)
{
    uint8_t be[8];

    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    EVP_DigestUpdate(ctx, be, sizeof(be));
}

void sg_page_filter_digest(const char *const *parts, size_t n,
                           uint8_t out[SG_PAGE_DIGEST_SIZE])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    memset(md, 0, sizeof(md));
    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
        put_length(ctx, sizeof(digest_domain));
        EVP_DigestUpdate(ctx, digest_domain, sizeof(digest_domain));
        put_length(ctx, n);
        for (size_t i = 0; i < n; i++) {
            const char *s = parts[i] != NULL ? parts[i] : "";

            put_length(ctx, strlen(s));
            EVP_DigestUpdate(ctx, s, strlen(s));
        }
        EVP_DigestFinal_ex(ctx, md, &md_len);
    }
    EVP_MD_CTX_free(ctx);
    /* Out of memory leaves an all-zero digest: tokens then fail to match. */
    memcpy(out, md, SG_PAGE_DIGEST_SIZE);
}

static bool id_ok(const char *id, size_t len)
{
    if (len == 0 || len > SG_PAGE_TOKEN_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

/* Unpadded base64url of in (len bytes) into out (room for it and NUL). */
static void b64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        size_t left = len - i;

        if (left > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (left > 2)
            v |= in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (left > 1)
            out[o++] = b64url[(v >> 6) & 63];
        if (left > 2)
            out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
}

char *sg_page_token_encode(const char *last_id,
                           const uint8_t digest[SG_PAGE_DIGEST_SIZE])
{
    uint8_t payload[PAYLOAD_MAX];
    size_t id_len = last_id != NULL ? strlen(last_id) : 0;
    char *token;

    if (!id_ok(last_id != NULL ? last_id : "", id_len))
        return NULL;
    payload[0] = TOKEN_VERSION;
    memcpy(payload + 1, digest, SG_PAGE_DIGEST_SIZE);
    payload[1 + SG_PAGE_DIGEST_SIZE] = (uint8_t)id_len;
    memcpy(payload + HEADER_SIZE, last_id, id_len);
    token = malloc(TOKEN_MAX + 1);
    if (token != NULL)
        b64_encode(payload, HEADER_SIZE + id_len, token);
    return token;
}

static int b64_value(char c)
{
    const char *p = c != '\0' ? strchr(b64url, c) : NULL;

    return p != NULL ? (int)(p - b64url) : -1;
}

/*
 * Strict unpadded base64url: only the alphabet, no impossible length, and
 * the unused low bits of the last character zero (one encoding per
 * payload). Returns the decoded length, or -1.
 */
static long b64_decode(const char *in, size_t len, uint8_t *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);

        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -1;
    return (long)o;
}

static int malformed(struct sg_error *err)
{
    (void)sg_error_add_violation(err, "page_token", "malformed page token");
    return -1;
}

int sg_page_token_decode(const char *token,
                         const uint8_t digest[SG_PAGE_DIGEST_SIZE],
                         char **last_id, struct sg_error *err)
{
    uint8_t payload[PAYLOAD_MAX];
    size_t len = token != NULL ? strlen(token) : 0;
    long n;

    *last_id = NULL;
    if (len == 0 || len > TOKEN_MAX)
        return malformed(err);
    n = b64_decode(token, len, payload);
    if (n < HEADER_SIZE + 1 || payload[0] != TOKEN_VERSION ||
        (size_t)n != (size_t)HEADER_SIZE + payload[HEADER_SIZE - 1] ||
        !id_ok((const char *)payload + HEADER_SIZE, (size_t)n - HEADER_SIZE))
        return malformed(err);
    if (CRYPTO_memcmp(payload + 1, digest, SG_PAGE_DIGEST_SIZE) != 0) {
        (void)sg_error_add_violation(
            err, "page_token",
            "page token does not match this request's filters");
        return -1;
    }
    /* Not strndup: the id may fill payload to its last byte, with no NUL
       after it to stop at. */
    *last_id = malloc((size_t)n - HEADER_SIZE + 1);
    if (*last_id == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    memcpy(*last_id, payload + HEADER_SIZE, (size_t)n - HEADER_SIZE);
    (*last_id)[n - HEADER_SIZE] = '\0';
    return 0;
}
