/*
 * jwks.c: JWKS parsing and JWS signature checks (see jwks.h).
 */
#include "internal.h"

#include "jwks.h"

#include "base64url.h"
#include "jwt.h"
#include "log.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <stdlib.h>

SG_LOG_INIT("authz.jwt");

/* The order n of the P-256 group, big-endian (FIPS 186-4 D.1.2.3). */
static const uint8_t p256_order[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
    0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

void sg_jwks_digest(const char *doc, size_t len, uint8_t out[32])
{
    unsigned int md_len = 0;

    if (EVP_Digest(doc, len, out, &md_len, EVP_sha256(), NULL) != 1)
        memset(out, 0, 32);
}

/* Decode the base64url string member name of jk; NULL if absent or bad.
 *len gets the decoded length. Caller frees. */
static uint8_t *member_b64(json_t *jk, const char *name, size_t *len)
{
    json_t *m = json_object_get(jk, name);
    const char *s;
    size_t slen;
    uint8_t *out;
    long n;

    if (!json_is_string(m))
        return NULL;
    s = json_string_value(m);
    slen = json_string_length(m);
    out = malloc(slen * 3 / 4 + 1);
    if (out == NULL)
        return NULL;
    n = sg_base64url_decode(s, slen, out);
    if (n <= 0) {
        free(out);
        return NULL;
    }
    *len = (size_t)n;
    return out;
}

/* Build a public key of type name from params; NULL on failure. */
static EVP_PKEY *pkey_fromdata(const char *name, OSSL_PARAM *params)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL);
    EVP_PKEY *pkey = NULL;

    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

static EVP_PKEY *rsa_key(json_t *jk, const char **why)
{
    uint8_t *n = NULL;
    uint8_t *e = NULL;
    size_t n_len = 0;
    size_t e_len = 0;
    BIGNUM *bn_n = NULL;
    BIGNUM *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY *pkey = NULL;
    int bits;

    n = member_b64(jk, "n", &n_len);
    e = member_b64(jk, "e", &e_len);
    if (n == NULL || e == NULL) {
        *why = "n or e missing or not base64url";
        goto cleanup;
    }
    bn_n = BN_bin2bn(n, (int)n_len, NULL);
    bn_e = BN_bin2bn(e, (int)e_len, NULL);
    if (bn_n == NULL || bn_e == NULL) {
        *why = "out of memory";
        goto cleanup;
    }
    bits = BN_num_bits(bn_n);
    if (bits < SG_JWKS_RSA_MIN_BITS) {
        *why = "RSA modulus shorter than 2048 bits";
        goto cleanup;
    }
    if (bits > SG_JWKS_RSA_MAX_BITS) {
        *why = "RSA modulus longer than 8192 bits";
        goto cleanup;
    }
    if (!BN_is_odd(bn_e) || BN_is_one(bn_e) || BN_cmp(bn_e, bn_n) >= 0) {
        *why = "RSA exponent is not valid";
        goto cleanup;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1) {
        *why = "out of memory";
        goto cleanup;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    if (params != NULL)
        pkey = pkey_fromdata("RSA", params);
    if (pkey == NULL)
        *why = "RSA key rejected by OpenSSL";

 cleanup:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);
    return pkey;
}

static EVP_PKEY *ec_key(json_t *jk, const char **why)
{
    json_t *crv = json_object_get(jk, "crv");
    uint8_t *x = NULL;
    uint8_t *y = NULL;
    size_t x_len = 0;
    size_t y_len = 0;
    uint8_t point[65];
    char group[] = "prime256v1";
    OSSL_PARAM params[3];
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *check = NULL;

    if (!json_is_string(crv) || STRNEQ(json_string_value(crv), "P-256")) {
        *why = "EC curve is not P-256";
        goto cleanup;
    }
    x = member_b64(jk, "x", &x_len);
    y = member_b64(jk, "y", &y_len);
    if (x == NULL || y == NULL || x_len != 32 || y_len != 32) {
        *why = "x or y missing or not 32 bytes of base64url";
        goto cleanup;
    }
    point[0] = 0x04; /* uncompressed SEC 1 point */
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    params[0] =
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  point, sizeof(point));
    params[2] = OSSL_PARAM_construct_end();
    pkey = pkey_fromdata("EC", params);
    if (pkey != NULL) {
        /* A point off the curve would make ECDSA verification unsound. */
        check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (check == NULL || EVP_PKEY_public_check(check) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
    }
    if (pkey == NULL)
        *why = "EC point is not on P-256";

 cleanup:
    EVP_PKEY_CTX_free(check);
    free(x);
    free(y);
    return pkey;
}

static EVP_PKEY *okp_key(json_t *jk, const char **why)
{
    json_t *crv = json_object_get(jk, "crv");
    uint8_t *x = NULL;
    size_t x_len = 0;
    OSSL_PARAM params[2];
    EVP_PKEY *pkey = NULL;

    if (!json_is_string(crv) || STRNEQ(json_string_value(crv), "Ed25519")) {
        *why = "OKP curve is not Ed25519";
        goto cleanup;
    }
    x = member_b64(jk, "x", &x_len);
    if (x == NULL || x_len != 32) {
        *why = "x missing or not 32 bytes of base64url";
        goto cleanup;
    }
    params[0] =
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, x, x_len);
    params[1] = OSSL_PARAM_construct_end();
    pkey = pkey_fromdata("ED25519", params);
    if (pkey == NULL)
        *why = "Ed25519 key rejected by OpenSSL";

 cleanup:
    free(x);
    return pkey;
}

/* The algorithm bit a JWK "alg" value names; 0 for any other value. */
static unsigned jwk_alg_bits(const char *alg)
{
    if (STREQ(alg, "RS256"))
        return SG_JWT_ALG_RS256;
    if (STREQ(alg, "ES256"))
        return SG_JWT_ALG_ES256;
    /* RFC 9864 names Ed25519 on its own; "EdDSA" is RFC 8037's. */
    if (STREQ(alg, "EdDSA") || STREQ(alg, "Ed25519"))
        return SG_JWT_ALG_EDDSA;
    return 0;
}

static bool has_verify_op(json_t *ops)
{
    size_t i;
    json_t *op;

    json_array_foreach(ops, i, op) {
        if (json_is_string(op) && STREQ(json_string_value(op), "verify"))
            return true;
    }
    return false;
}

/*
 * Turn one JWK into out. Returns 0, or -1 with *why saying why the key is
 * skipped (a static string).
 */
static int parse_key(json_t *jk, struct sg_jwk *out, const char **why)
{
    json_t *kty = json_object_get(jk, "kty");
    json_t *use = json_object_get(jk, "use");
    json_t *ops = json_object_get(jk, "key_ops");
    json_t *alg = json_object_get(jk, "alg");
    json_t *kid = json_object_get(jk, "kid");
    const char *type;
    EVP_PKEY *pkey = NULL;
    unsigned algs;

    memset(out, 0, sizeof(*out));
    if (kid != NULL && !json_is_string(kid)) {
        *why = "kid is not a string";
        return -1;
    }
    if (!json_is_string(kty)) {
        *why = "kty missing";
        return -1;
    }
    if (use != NULL &&
        (!json_is_string(use) || STRNEQ(json_string_value(use), "sig"))) {
        *why = "use is not \"sig\"";
        return -1;
    }
    if (ops != NULL && (!json_is_array(ops) || !has_verify_op(ops))) {
        *why = "key_ops does not allow verify";
        return -1;
    }
    if (alg != NULL && !json_is_string(alg)) {
        *why = "alg is not a string";
        return -1;
    }
    /* A published private key is a leak, not something to verify with. */
    if (json_object_get(jk, "d") != NULL) {
        *why = "it holds private key material";
        return -1;
    }
    type = json_string_value(kty);
    if (STREQ(type, "RSA")) {
        algs = SG_JWT_ALG_RS256;
        pkey = rsa_key(jk, why);
    } else if (STREQ(type, "EC")) {
        algs = SG_JWT_ALG_ES256;
        pkey = ec_key(jk, why);
    } else if (STREQ(type, "OKP")) {
        algs = SG_JWT_ALG_EDDSA;
        pkey = okp_key(jk, why);
    } else {
        *why = "key type not supported";
        return -1;
    }
    if (pkey == NULL)
        return -1;
    /* A declared alg must agree with the key type; the key is then usable
       for that algorithm only. */
    if (alg != NULL)
        algs &= jwk_alg_bits(json_string_value(alg));
    if (algs == 0) {
        EVP_PKEY_free(pkey);
        *why = "its alg is not supported or does not fit its kty";
        return -1;
    }
    if (kid != NULL) {
        out->kid = strdup(json_string_value(kid));
        if (out->kid == NULL) {
            EVP_PKEY_free(pkey);
            *why = "out of memory";
            return -1;
        }
    }
    out->algs = algs;
    out->pkey = pkey;
    return 0;
}

static bool same_kid(const char *a, const char *b)
{
    return a != NULL && b != NULL && STREQ(a, b);
}

struct sg_jwks *sg_jwks_parse(const char *doc, size_t len, const char *source,
                              struct sg_error *err)
{
    json_error_t jerr;
    json_t *root = NULL;
    json_t *keys;
    json_t *jk;
    size_t i;
    struct sg_jwks *ks = NULL;

    root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr);
    keys = json_is_object(root) ? json_object_get(root, "keys") : NULL;
    if (!json_is_array(keys)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: not a JWKS document (a JSON object with a "
                        "\"keys\" array)",
                        source);
        goto cleanup;
    }
    ks = calloc(1, sizeof(*ks));
    if (ks != NULL) {
        atomic_init(&ks->refs, 1);
        ks->keys = calloc(json_array_size(keys) + 1, sizeof(*ks->keys));
    }
    if (ks == NULL || ks->keys == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        sg_jwks_unref(ks);
        ks = NULL;
        goto cleanup;
    }
    sg_jwks_digest(doc, len, ks->digest);
    json_array_foreach(keys, i, jk) {
        struct sg_jwk *k = &ks->keys[ks->n_keys];
        json_t *kid = json_is_object(jk) ? json_object_get(jk, "kid") : NULL;
        const char *name =
            json_is_string(kid) ? json_string_value(kid) : "(none)";
        const char *why = "not a JSON object";
        bool dup = false;

        if (!json_is_object(jk) || parse_key(jk, k, &why) < 0) {
            ERR_clear_error();
            SG_WARN("%s: key %zu (kid '%s') skipped: %s", source, i, name, why);
            continue;
        }
        for (size_t j = 0; j < ks->n_keys && !dup; j++)
            dup = same_kid(ks->keys[j].kid, k->kid) &&
                  (ks->keys[j].algs & k->algs) != 0;
        if (dup) {
            /* Two keys under one kid for one algorithm: the token could
               not say which it means. Keep the first. */
            SG_WARN("%s: key %zu (kid '%s') skipped: duplicate key id", source,
                    i, name);
            free(k->kid);
            EVP_PKEY_free(k->pkey);
            continue;
        }
        ks->n_keys++;
    }
    if (ks->n_keys == 0) {
        sg_error_report(err, SG_ERR_CONFIG, "%s: no usable key in the JWKS",
                        source);
        sg_jwks_unref(ks);
        ks = NULL;
    }

 cleanup:
    json_decref(root);
    return ks;
}

struct sg_jwks *sg_jwks_ref(struct sg_jwks *ks)
{
    atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
    return ks;
}

void sg_jwks_unref(struct sg_jwks *ks)
{
    if (ks == NULL)
        return;
    if (atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < ks->n_keys; i++) {
        free(ks->keys[i].kid);
        EVP_PKEY_free(ks->keys[i].pkey);
    }
    free(ks->keys);
    free(ks);
}

/* A P-256 scalar of an ECDSA signature must lie in [1, n-1]. */
static bool p256_scalar_ok(const uint8_t x[32])
{
    static const uint8_t zero[32];

    return memcmp(x, zero, 32) != 0 && memcmp(x, p256_order, 32) < 0;
}

/* DER INTEGER of the 32-byte big-endian unsigned x into out; returns its
   length (at most 35). */
static size_t der_integer(const uint8_t x[32], uint8_t *out)
{
    size_t skip = 0;
    size_t n;
    size_t o = 0;

    while (skip < 31 && x[skip] == 0)
        skip++;
    n = 32 - skip;
    out[o++] = 0x02;
    /* A set top bit would read as negative: prefix a zero byte. */
    out[o++] = (uint8_t)(n + ((x[skip] & 0x80) != 0));
    if (x[skip] & 0x80)
        out[o++] = 0x00;
    memcpy(out + o, x + skip, n);
    return o + n;
}

/* RFC 7518 r||s to the DER ECDSA-Sig-Value OpenSSL verifies; 0 when r or
   s is out of range. out needs 72 bytes. */
static size_t es256_to_der(const uint8_t sig[64], uint8_t *out)
{
    uint8_t body[70];
    size_t n;

    if (!p256_scalar_ok(sig) || !p256_scalar_ok(sig + 32))
        return 0;
    n = der_integer(sig, body);
    n += der_integer(sig + 32, body + n);
    out[0] = 0x30;
    out[1] = (uint8_t)n; /* at most 70: the short length form */
    memcpy(out + 2, body, n);
    return n + 2;
}

bool sg_jwk_verify(const struct sg_jwk *key, unsigned alg, const char *input,
                   size_t input_len, const uint8_t *sig, size_t siglen)
{
    EVP_MD_CTX *ctx = NULL;
    const EVP_MD *md = NULL;
    uint8_t der[72];
    const uint8_t *check = sig;
    size_t check_len = siglen;
    bool ok = false;

    if ((key->algs & alg) == 0)
        return false;
    switch (alg) {
    case SG_JWT_ALG_RS256:
        if (siglen != (size_t)EVP_PKEY_get_size(key->pkey))
            return false;
        md = EVP_sha256();
        break;
    case SG_JWT_ALG_ES256:
        if (siglen != 64)
            return false;
        check_len = es256_to_der(sig, der);
        if (check_len == 0)
            return false;
        check = der;
        md = EVP_sha256();
        break;
    case SG_JWT_ALG_EDDSA:
        if (siglen != 64)
            return false;
        break; /* Ed25519 hashes internally: no digest */
    default:
        return false;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx != NULL &&
        EVP_DigestVerifyInit(ctx, NULL, md, NULL, key->pkey) == 1 &&
        EVP_DigestVerify(ctx, check, check_len, (const uint8_t *)input,
                         input_len) == 1)
        ok = true;
    EVP_MD_CTX_free(ctx);
    /* A refused signature leaves entries on this thread's OpenSSL error
       queue, where TLS code on the same thread would find them. */
    if (!ok)
        ERR_clear_error();
    return ok;
}
