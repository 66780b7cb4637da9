/*
 * test_token_review.c: the TokenReview cache, the request body and the
 * judgement of the API's answers (authz/token_review.h). The reviewer
 * itself runs against the Kubernetes API stand-in in
 * tests/integration/test_auth_token_review.py.
 */
#include "internal.h"

#include "testutils.h"
#include "token_review.h"

#include <check.h>
#include <jansson.h>
#include <stdlib.h>

#define TOKEN "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXRhaWwtMDEyMzQ1"

static void key_of(uint8_t key[32], unsigned n)
{
    memset(key, 0, 32);
    key[0] = (uint8_t)n;
    key[31] = (uint8_t)(n >> 8);
}

/* ---- the cache ------------------------------------------------------ */

START_TEST(test_cache_positive_and_negative)
{
    struct sg_token_review_cache *c = sg_token_review_cache_new(64);
    uint8_t a[32], b[32], other[32];
    char msg[SG_TOKEN_REVIEW_MSG_MAX] = "";

    ck_assert_ptr_nonnull(c);
    key_of(a, 1);
    key_of(b, 2);
    key_of(other, 3);
    ck_assert_int_eq(sg_token_review_cache_get(c, a, 1000, msg, sizeof(msg)),
                     0);
    sg_token_review_cache_put(c, a, true, 5000, NULL);
    sg_token_review_cache_put(c, b, false, 3000, "token was revoked");
    ck_assert_int_eq(sg_token_review_cache_get(c, a, 1000, msg, sizeof(msg)),
                     1);
    ck_assert_int_eq(sg_token_review_cache_get(c, a, 4999, msg, sizeof(msg)),
                     1);
    ck_assert_int_eq(sg_token_review_cache_get(c, b, 2999, msg, sizeof(msg)),
                     -1);
    ck_assert_str_eq(msg, "token was revoked");
    ck_assert_int_eq(sg_token_review_cache_get(c, other, 1000, NULL, 0), 0);
    /* Expiry is exclusive, and an expired entry stays gone. */
    ck_assert_int_eq(sg_token_review_cache_get(c, a, 5000, NULL, 0), 0);
    ck_assert_int_eq(sg_token_review_cache_get(c, a, 1000, NULL, 0), 0);
    ck_assert_int_eq(sg_token_review_cache_get(c, b, 3000, NULL, 0), 0);
    sg_token_review_cache_free(c);
    sg_token_review_cache_free(NULL);
}
END_TEST

START_TEST(test_cache_replaces_same_key)
{
    struct sg_token_review_cache *c = sg_token_review_cache_new(8);
    uint8_t a[32];
    char msg[SG_TOKEN_REVIEW_MSG_MAX] = "";

    key_of(a, 7);
    sg_token_review_cache_put(c, a, true, 9000, NULL);
    sg_token_review_cache_put(c, a, false, 2000, "no");
    ck_assert_int_eq(sg_token_review_cache_get(c, a, 1000, msg, sizeof(msg)),
                     -1);
    ck_assert_str_eq(msg, "no");
    /* The replaced positive answer does not come back after expiry. */
    ck_assert_int_eq(sg_token_review_cache_get(c, a, 2500, NULL, 0), 0);
    sg_token_review_cache_free(c);
}
END_TEST

/* A full set evicts the entry that expires first, never a live newer one
   without need. All keys here fall into the one set of a 4-entry cache. */
START_TEST(test_cache_eviction)
{
    struct sg_token_review_cache *c = sg_token_review_cache_new(4);
    uint8_t k[6][32];

    for (unsigned i = 0; i < 6; i++)
        key_of(k[i], i + 1);
    for (unsigned i = 0; i < 4; i++)
        sg_token_review_cache_put(c, k[i], true, 10000 + 1000 * i, NULL);
    for (unsigned i = 0; i < 4; i++)
        ck_assert_int_eq(sg_token_review_cache_get(c, k[i], 0, NULL, 0), 1);
    sg_token_review_cache_put(c, k[4], true, 20000, NULL);
    ck_assert_int_eq(sg_token_review_cache_get(c, k[0], 0, NULL, 0), 0);
    for (unsigned i = 1; i < 5; i++)
        ck_assert_int_eq(sg_token_review_cache_get(c, k[i], 0, NULL, 0), 1);
    /* An expired entry is taken before a live one. */
    ck_assert_int_eq(sg_token_review_cache_get(c, k[1], 11500, NULL, 0), 0);
    sg_token_review_cache_put(c, k[5], false, 30000, "x");
    ck_assert_int_eq(sg_token_review_cache_get(c, k[5], 0, NULL, 0), -1);
    for (unsigned i = 2; i < 5; i++)
        ck_assert_int_eq(sg_token_review_cache_get(c, k[i], 0, NULL, 0), 1);
    sg_token_review_cache_free(c);
}
END_TEST

/* ---- the request body ----------------------------------------------- */

START_TEST(test_body)
{
    char *aud[] = {"sandgate", "a\"b"};
    char *body = sg_token_review_body(TOKEN, strlen(TOKEN), aud, 2);
    json_t *doc;
    json_t *spec;

    ck_assert_ptr_nonnull(body);
    doc = json_loads(body, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "apiVersion")),
                     "authentication.k8s.io/v1");
    ck_assert_str_eq(json_string_value(json_object_get(doc, "kind")),
                     "TokenReview");
    spec = json_object_get(doc, "spec");
    ck_assert_str_eq(json_string_value(json_object_get(spec, "token")),
                     TOKEN);
    ck_assert_uint_eq(json_array_size(json_object_get(spec, "audiences")), 2);
    ck_assert_str_eq(json_string_value(json_array_get(
                         json_object_get(spec, "audiences"), 1)),
                     "a\"b");
    json_decref(doc);
    free(body);

    body = sg_token_review_body(TOKEN, strlen(TOKEN), NULL, 0);
    doc = json_loads(body, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ck_assert_ptr_null(json_object_get(json_object_get(doc, "spec"),
                                       "audiences"));
    json_decref(doc);
    free(body);

    /* Nothing that would need escaping goes into the body. */
    ck_assert_ptr_null(sg_token_review_body("a\"b", 3, NULL, 0));
    ck_assert_ptr_null(sg_token_review_body("a\\b", 3, NULL, 0));
    ck_assert_ptr_null(sg_token_review_body("a b", 3, NULL, 0));
    ck_assert_ptr_null(sg_token_review_body("a\nb", 3, NULL, 0));
}
END_TEST

/* ---- the API's answers ---------------------------------------------- */

static char *audiences[] = {"sandgate", "api"};

static const struct {
    long status;
    const char *body;
    size_t n_aud;            /* audiences sent */
    int code;                /* SG_ERR_OK: authenticated */
    const char *message;     /* substring of err.message */
} answers[] = {
    {201, "{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\","
          "\"status\":{\"authenticated\":true,\"user\":{\"username\":"
          "\"system:serviceaccount:a:b\",\"uid\":\"1\",\"groups\":[\"g\"]},"
          "\"audiences\":[\"sandgate\"]}}",
     2, SG_ERR_OK, NULL},
    /* 200 as some proxies answer; no audiences sent, none checked. */
    {200, "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,"
          "\"user\":{\"username\":\"u\"}}}",
     0, SG_ERR_OK, NULL},
    {201, "{\"kind\":\"TokenReview\",\"status\":{\"user\":{},\"error\":"
          "\"  [invalid bearer token, token has been invalidated]\\n\"}}",
     2, SG_ERR_UNAUTHENTICATED,
     "token was revoked or is not valid: [invalid bearer token, token has "
     "been invalidated]"},
    {201, "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":false}}", 2,
     SG_ERR_UNAUTHENTICATED, "token was revoked or is not valid"},
    /* An error that quotes the token is not repeated. */
    {201, "{\"kind\":\"TokenReview\",\"status\":{\"error\":\"bad token "
          TOKEN "\"}}",
     2, SG_ERR_UNAUTHENTICATED, "token was revoked or is not valid"},
    /* Authenticated for audiences we did not ask for. */
    {201, "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,"
          "\"user\":{\"username\":\"u\"},\"audiences\":[\"other\"]}}",
     2, SG_ERR_UNAUTHENTICATED, "no audience of the review matches"},
    {201, "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,"
          "\"user\":{\"username\":\"u\"}}}",
     1, SG_ERR_UNAUTHENTICATED, "no audience of the review matches"},
    {201, "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,"
          "\"user\":{}}}",
     0, SG_ERR_UNAVAILABLE, "token review unavailable"},
    {201, "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":\"yes\"}}",
     0, SG_ERR_UNAVAILABLE, "token review unavailable"},
    {201, "{\"kind\":\"Status\",\"status\":\"Failure\"}", 0,
     SG_ERR_UNAVAILABLE, "token review unavailable"},
    {201, "not json", 0, SG_ERR_UNAVAILABLE, "token review unavailable"},
    {201, NULL, 0, SG_ERR_UNAVAILABLE, "token review unavailable"},
    {0, NULL, 0, SG_ERR_UNAVAILABLE, "token review unavailable"},
    {503, "{\"kind\":\"Status\",\"code\":503}", 0, SG_ERR_UNAVAILABLE,
     "token review unavailable"},
    /* The gateway's own credentials refused: not the caller's fault. */
    {401, "{\"kind\":\"Status\",\"code\":401}", 0, SG_ERR_UNAVAILABLE,
     "token review unavailable"},
    {403, "{\"kind\":\"Status\",\"code\":403}", 0, SG_ERR_UNAVAILABLE,
     "token review unavailable"},
};

START_TEST(test_parse)
{
    struct sg_error err = SG_ERROR_INIT;
    const char *body = answers[_i].body;
    int rc = sg_token_review_parse(answers[_i].status, body,
                                   body ? strlen(body) : 0, audiences,
                                   answers[_i].n_aud, TOKEN, strlen(TOKEN),
                                   &err);

    if (answers[_i].code == SG_ERR_OK) {
        ck_assert_msg(rc == 0, "case %d: %s", _i, err.message);
        ck_assert(!sg_error_is_set(&err));
        return;
    }
    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(err.code, answers[_i].code);
    ck_assert_msg(strstr(err.message, answers[_i].message) != NULL,
                  "case %d: '%s'", _i, err.message);
    ck_assert_msg(strstr(err.message, "c2lnbmF0dXJl") == NULL,
                  "case %d quotes the token: '%s'", _i, err.message);
    sg_error_reset(&err);
}
END_TEST

/* status.error is trimmed to one bounded line. */
START_TEST(test_parse_long_error)
{
    char body[2048];
    char longmsg[1200];
    struct sg_error err = SG_ERROR_INIT;

    memset(longmsg, 'x', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = '\0';
    snprintf(body, sizeof(body),
             "{\"kind\":\"TokenReview\",\"status\":{\"error\":"
             "\"xxxxx\\t%s\"}}",
             longmsg);
    ck_assert_int_eq(sg_token_review_parse(201, body, strlen(body), NULL, 0,
                                           TOKEN, strlen(TOKEN), &err),
                     -1);
    ck_assert_int_eq(err.code, SG_ERR_UNAUTHENTICATED);
    ck_assert_uint_lt(strlen(err.message), SG_TOKEN_REVIEW_MSG_MAX);
    ck_assert_ptr_null(strchr(err.message, '\t'));
    ck_assert(STRPREFIX(err.message, "token was revoked or is not valid: "
                                     "xxxxx x"));
    sg_error_reset(&err);
}
END_TEST

static Suite *token_review_suite(void)
{
    Suite *s = suite_create("token_review");
    TCase *cache = tcase_create("cache");
    TCase *wire = tcase_create("wire");

    tcase_add_test(cache, test_cache_positive_and_negative);
    tcase_add_test(cache, test_cache_replaces_same_key);
    tcase_add_test(cache, test_cache_eviction);
    suite_add_tcase(s, cache);
    tcase_add_test(wire, test_body);
    tcase_add_loop_test(wire, test_parse, 0, (int)SG_N_ELEMENTS(answers));
    tcase_add_test(wire, test_parse_long_error);
    suite_add_tcase(s, wire);
    return s;
}

SG_TEST_MAIN(token_review_suite)
