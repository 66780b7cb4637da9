/*
 * test_page_token.c: list page tokens, and the sandbox ids they carry.
 */
#include "internal.h"

#include "testutils.h"

#include "page_token.h"
#include "sandbox_id.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *const filters[] = {"team-a", "proj", "", "app=web", "3"};

static void digest_of(const char *const *parts, size_t n, uint8_t out[16])
{
    sg_page_filter_digest(parts, n, out);
}

/* Decode must fail with exactly this description on "page_token". */
static void assert_rejected(const char *token, const uint8_t digest[16],
                            const char *description)
{
    struct sg_error err = SG_ERROR_INIT;
    char *id = (char *)"sentinel";

    ck_assert_int_eq(sg_page_token_decode(token, digest, &id, &err), -1);
    ck_assert_ptr_null(id);
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    ck_assert_uint_eq(err.n_violations, 1);
    ck_assert_str_eq(err.violations[0].field, "page_token");
    ck_assert_msg(STREQ(err.violations[0].description, description),
                  "token '%s': %s", token, err.violations[0].description);
    sg_error_reset(&err);
}

START_TEST(test_round_trip)
{
    struct sg_error err = SG_ERROR_INIT;
    uint8_t d[16];
    char *token;
    char *id = NULL;

    digest_of(filters, SG_N_ELEMENTS(filters), d);
    token = sg_page_token_encode("sb-01hzy3k5q0c8m2n4p6r8t0v2wx", d);
    ck_assert_ptr_nonnull(token);
    /* URL-safe, unpadded. */
    ck_assert_uint_eq(
        strspn(
            token,
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        strlen(token));
    ck_assert_int_eq(sg_page_token_decode(token, d, &id, &err), 0);
    ck_assert_str_eq(id, "sb-01hzy3k5q0c8m2n4p6r8t0v2wx");
    ck_assert(!sg_error_is_set(&err));
    free(id);
    free(token);
}
END_TEST

/* Every id length round-trips (all base64 tail lengths). */
START_TEST(test_round_trip_lengths)
{
    uint8_t d[16];
    char idbuf[SG_PAGE_TOKEN_ID_MAX + 1];

    digest_of(filters, 2, d);
    for (size_t len = 1; len <= SG_PAGE_TOKEN_ID_MAX; len++) {
        char *token;
        char *id = NULL;

        memset(idbuf, 'a' + (char)(len % 26), len);
        idbuf[len] = '\0';
        token = sg_page_token_encode(idbuf, d);
        ck_assert_ptr_nonnull(token);
        ck_assert_int_eq(sg_page_token_decode(token, d, &id, NULL), 0);
        ck_assert_str_eq(id, idbuf);
        free(id);
        free(token);
    }
}
END_TEST

START_TEST(test_encode_refuses_bad_ids)
{
    uint8_t d[16] = {0};
    char long_id[SG_PAGE_TOKEN_ID_MAX + 2];

    ck_assert_ptr_null(sg_page_token_encode("", d));
    ck_assert_ptr_null(sg_page_token_encode(NULL, d));
    ck_assert_ptr_null(sg_page_token_encode("SB-1", d));
    ck_assert_ptr_null(sg_page_token_encode("sb_1", d));
    ck_assert_ptr_null(sg_page_token_encode("sb/1", d));
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    ck_assert_ptr_null(sg_page_token_encode(long_id, d));
}
END_TEST

START_TEST(test_filter_mismatch)
{
    uint8_t d[16];
    uint8_t other[16];
    const char *changed[SG_N_ELEMENTS(filters)];
    char *token;

    digest_of(filters, SG_N_ELEMENTS(filters), d);
    token = sg_page_token_encode("sb-1", d);
    for (size_t i = 0; i < SG_N_ELEMENTS(filters); i++) {
        memcpy(changed, filters, sizeof(changed));
        changed[i] = "other";
        digest_of(changed, SG_N_ELEMENTS(changed), other);
        assert_rejected(token, other,
                        "page token does not match this request's filters");
    }
    free(token);
}
END_TEST

START_TEST(test_digest_is_unambiguous)
{
    static const char *const ab_c[] = {"ab", "c"};
    static const char *const a_bc[] = {"a", "bc"};
    static const char *const abc[] = {"abc"};
    static const char *const abc_empty[] = {"abc", ""};
    static const char *const abc_null[] = {"abc", NULL};
    uint8_t d1[16], d2[16], d3[16], d4[16], d5[16];

    digest_of(ab_c, 2, d1);
    digest_of(a_bc, 2, d2);
    digest_of(abc, 1, d3);
    digest_of(abc_empty, 2, d4);
    digest_of(abc_null, 2, d5);
    ck_assert(memcmp(d1, d2, 16) != 0);
    ck_assert(memcmp(d1, d3, 16) != 0);
    ck_assert(memcmp(d3, d4, 16) != 0);
    ck_assert(memcmp(d4, d5, 16) == 0);
    digest_of(ab_c, 2, d2);
    ck_assert(memcmp(d1, d2, 16) == 0);
}
END_TEST

START_TEST(test_malformed)
{
    uint8_t d[16];
    char *token;
    char *copy;
    size_t len;

    digest_of(filters, 1, d);
    token = sg_page_token_encode("sb-0123", d);
    len = strlen(token);
    copy = malloc(len + 8);

    assert_rejected("", d, "malformed page token");
    assert_rejected(NULL, d, "malformed page token");
    assert_rejected("not a token", d, "malformed page token");
    assert_rejected("AQ==", d, "malformed page token");
    assert_rejected("%%%%", d, "malformed page token");
    /* Truncated, by each possible amount. */
    for (size_t cut = 1; cut < len; cut++) {
        memcpy(copy, token, len - cut);
        copy[len - cut] = '\0';
        assert_rejected(copy, d, "malformed page token");
    }
    /* Trailing garbage. */
    snprintf(copy, len + 8, "%sA", token);
    assert_rejected(copy, d, "malformed page token");
    snprintf(copy, len + 8, "%sAAAA", token);
    assert_rejected(copy, d, "malformed page token");
    snprintf(copy, len + 8, "%s=", token);
    assert_rejected(copy, d, "malformed page token");
    free(copy);
    free(token);
}
END_TEST

/* A token built from a raw payload (encoded here independently). */
static char *raw_token(const uint8_t *payload, size_t len)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(len * 2 + 4);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | payload[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = a[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return out;
}

START_TEST(test_payload_checks)
{
    uint8_t d[16];
    uint8_t p[64];
    char *token;
    char *id = NULL;

    digest_of(filters, 3, d);
    p[0] = 1;
    memcpy(p + 1, d, 16);
    p[17] = 4;
    memcpy(p + 18, "sb-1", 4);

    token = raw_token(p, 22);
    ck_assert_int_eq(sg_page_token_decode(token, d, &id, NULL), 0);
    ck_assert_str_eq(id, "sb-1");
    free(id);
    free(token);

    p[0] = 2; /* wrong version */
    token = raw_token(p, 22);
    assert_rejected(token, d, "malformed page token");
    free(token);
    p[0] = 1;

    p[17] = 5; /* length says more than there is */
    token = raw_token(p, 22);
    assert_rejected(token, d, "malformed page token");
    free(token);
    p[17] = 3; /* ... or less */
    token = raw_token(p, 22);
    assert_rejected(token, d, "malformed page token");
    free(token);
    p[17] = 4;

    memcpy(p + 18, "sB-1", 4); /* id outside [a-z0-9-] */
    token = raw_token(p, 22);
    assert_rejected(token, d, "malformed page token");
    free(token);

    p[17] = 0; /* empty id */
    token = raw_token(p, 18);
    assert_rejected(token, d, "malformed page token");
    free(token);
}
END_TEST

/* Changing any one character of a token never yields a valid one. */
START_TEST(test_tamper)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t d[16];
    char *token;
    size_t len;

    digest_of(filters, SG_N_ELEMENTS(filters), d);
    token = sg_page_token_encode("sb-7zzzzzzzzzzzzzzzzzzzzzzzzz", d);
    len = strlen(token);
    for (size_t i = 0; i < len; i++) {
        char saved = token[i];

        for (const char *c = alphabet; *c != '\0'; c++) {
            char *id = NULL;

            if (*c == saved)
                continue;
            token[i] = *c;
            if (sg_page_token_decode(token, d, &id, NULL) == 0) {
                /* Only the id itself may change, to another valid id. */
                ck_assert_uint_ge(i, 24);
                ck_assert_str_ne(id, "sb-7zzzzzzzzzzzzzzzzzzzzzzzzz");
                free(id);
            }
        }
        token[i] = saved;
    }
    free(token);
}
END_TEST

/* ---- sandbox ids --------------------------------------------------- */

START_TEST(test_id_format)
{
    char id[SG_SANDBOX_ID_SIZE];

    ck_assert_int_eq(sg_sandbox_id_new(id), 0);
    ck_assert_uint_eq(strlen(id), 29);
    ck_assert(STRPREFIX(id, "sb-"));
    ck_assert_uint_eq(strspn(id + 3, "0123456789abcdefghjkmnpqrstvwxyz"), 26);
    ck_assert(sg_sandbox_id_valid(id));
}
END_TEST

/* The time part is the current time in milliseconds. */
START_TEST(test_id_time)
{
    static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
    char id[SG_SANDBOX_ID_SIZE];
    struct timespec ts;
    uint64_t before, after, ms = 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    before = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    ck_assert_int_eq(sg_sandbox_id_new(id), 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    after = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    /* 10 characters = 50 bits: the 48-bit time and 2 zero bits in front. */
    for (int i = 0; i < 10; i++)
        ms = ms * 32 + (uint64_t)(strchr(alphabet, id[3 + i]) - alphabet);
    ck_assert_uint_ge(ms, before);
    ck_assert_uint_le(ms, after);
}
END_TEST

START_TEST(test_id_monotonic)
{
    char prev[SG_SANDBOX_ID_SIZE];
    char id[SG_SANDBOX_ID_SIZE];

    ck_assert_int_eq(sg_sandbox_id_new(prev), 0);
    for (int i = 0; i < 100000; i++) {
        ck_assert_int_eq(sg_sandbox_id_new(id), 0);
        if (strcmp(prev, id) >= 0)
            ck_abort_msg("id %d not increasing: %s then %s", i, prev, id);
        memcpy(prev, id, sizeof(id));
    }
}
END_TEST

static const struct {
    const char *s;
    bool ok;
} ids[] = {
    {"sb-01hzy3k5q0c8m2n4p6r8t0v2wx", true},
    {"sb-7zzzzzzzzzzzzzzzzzzzzzzzzz", true},
    {"sb-00000000000000000000000000", true},
    {"sb-8zzzzzzzzzzzzzzzzzzzzzzzzz", false}, /* > 128 bits */
    {"sb-01hzy3k5q0c8m2n4p6r8t0v2w", false},  /* short */
    {"sb-01hzy3k5q0c8m2n4p6r8t0v2wxy", false},
    {"sb-01HZY3K5Q0C8M2N4P6R8T0V2WX", false}, /* upper case */
    {"sb-01hzy3k5q0c8m2n4p6r8t0v2wi", false}, /* not Crockford */
    {"sb-01hzy3k5q0c8m2n4p6r8t0v2wl", false},
    {"sb-01hzy3k5q0c8m2n4p6r8t0v2wo", false},
    {"sb-01hzy3k5q0c8m2n4p6r8t0v2wu", false},
    {"xb-01hzy3k5q0c8m2n4p6r8t0v2wx", false},
    {"sb_01hzy3k5q0c8m2n4p6r8t0v2wx", false},
    {"", false},
};

START_TEST(test_id_valid)
{
    ck_assert_msg(sg_sandbox_id_valid(ids[_i].s) == ids[_i].ok, "'%s'",
                  ids[_i].s);
}
END_TEST

START_TEST(test_id_valid_null)
{
    ck_assert(!sg_sandbox_id_valid(NULL));
}
END_TEST

static Suite *page_token_suite(void)
{
    Suite *s = suite_create("page_token");
    TCase *tc = tcase_create("token");
    TCase *id = tcase_create("sandbox_id");

    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_round_trip_lengths);
    tcase_add_test(tc, test_encode_refuses_bad_ids);
    tcase_add_test(tc, test_filter_mismatch);
    tcase_add_test(tc, test_digest_is_unambiguous);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_payload_checks);
    tcase_add_test(tc, test_tamper);
    suite_add_tcase(s, tc);

    tcase_add_test(id, test_id_format);
    tcase_add_test(id, test_id_time);
    tcase_add_test(id, test_id_monotonic);
    tcase_add_loop_test(id, test_id_valid, 0, (int)SG_N_ELEMENTS(ids));
    tcase_add_test(id, test_id_valid_null);
    suite_add_tcase(s, id);
    return s;
}

SG_TEST_MAIN(page_token_suite)
