/*
 * page_token.c: opaque page tokens for ListSandboxes (see page_token.h).
 */
#include "internal.h"

#include "page_token.h"

#include "base64url.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>

#define TOKEN_VERSION 1
#define HEADER_SIZE (1 + SG_PAGE_DIGEST_SIZE + 1)
#define PAYLOAD_MAX (HEADER_SIZE + SG_PAGE_TOKEN_ID_MAX)
/* base64 of PAYLOAD_MAX bytes, unpadded. */
#define TOKEN_MAX SG_BASE64URL_LEN(PAYLOAD_MAX)

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
        sg_base64url_encode(payload, HEADER_SIZE + id_len, token);
    return token;
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
    n = sg_base64url_decode(token, len, payload);
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
