/*
 * test_buf.c: the growable buffer and its JSON string escaping.
 */
#include "internal.h"

#include "testutils.h"

#include "buf.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

START_TEST(test_empty)
{
    struct sg_buf b = SG_BUF_INIT;

    ck_assert_str_eq(sg_buf_str(&b), "");
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(sg_buf_error(&b), 0);
    /* Appending nothing allocates nothing. */
    sg_buf_add(&b, "", 0);
    sg_buf_adds(&b, "");
    ck_assert_ptr_null(b.data);
    sg_buf_free(&b);
    sg_buf_free(&b);
    sg_buf_free(NULL);
}
END_TEST

START_TEST(test_append)
{
    struct sg_buf b = SG_BUF_INIT;

    sg_buf_adds(&b, "abc");
    sg_buf_addc(&b, '-');
    sg_buf_add(&b, "xyz", 2);
    ck_assert_str_eq(sg_buf_str(&b), "abc-xy");
    ck_assert_uint_eq(b.len, 6);
    /* Bytes, including NUL, are kept as given. */
    sg_buf_add(&b, "\0z", 2);
    ck_assert_uint_eq(b.len, 8);
    ck_assert_int_eq(memcmp(b.data, "abc-xy\0z", 9), 0);
    sg_buf_free(&b);
}
END_TEST

START_TEST(test_growth)
{
    struct sg_buf b = SG_BUF_INIT;
    char expect[10001];

    for (size_t i = 0; i < 10000; i++) {
        expect[i] = (char)('a' + i % 26);
        sg_buf_addc(&b, expect[i]);
        ck_assert_uint_lt(b.len, b.cap); /* room for the NUL */
        ck_assert_int_eq(b.data[b.len], '\0');
    }
    expect[10000] = '\0';
    ck_assert_str_eq(sg_buf_str(&b), expect);
    ck_assert_int_eq(sg_buf_error(&b), 0);
    sg_buf_free(&b);
}
END_TEST

START_TEST(test_printf)
{
    struct sg_buf b = SG_BUF_INIT;
    char long_arg[301];

    sg_buf_printf(&b, "%d-%s", 42, "x");
    ck_assert_str_eq(sg_buf_str(&b), "42-x");

    /* Longer than the free space: the second pass must redo it whole. */
    memset(long_arg, 'q', 300);
    long_arg[300] = '\0';
    sg_buf_printf(&b, "[%s]", long_arg);
    ck_assert_uint_eq(b.len, 4 + 302);
    ck_assert_int_eq(strncmp(sg_buf_str(&b), "42-x[qqq", 8), 0);
    ck_assert_int_eq(b.data[b.len - 1], ']');
    ck_assert_int_eq(b.data[b.len], '\0');

    sg_buf_printf(&b, "%s", "");
    ck_assert_uint_eq(b.len, 306);
    sg_buf_free(&b);
}
END_TEST

START_TEST(test_steal)
{
    struct sg_buf b = SG_BUF_INIT;
    char *s;

    sg_buf_adds(&b, "owned");
    s = sg_buf_steal(&b);
    ck_assert_str_eq(s, "owned");
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    free(s);

    /* Empty: still a string the caller frees, never NULL. */
    s = sg_buf_steal(&b);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "");
    free(s);
}
END_TEST

START_TEST(test_reset)
{
    struct sg_buf b = SG_BUF_INIT;
    size_t cap;

    sg_buf_adds(&b, "some content");
    cap = b.cap;
    sg_buf_reset(&b);
    ck_assert_str_eq(sg_buf_str(&b), "");
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, cap);
    sg_buf_adds(&b, "new");
    ck_assert_str_eq(sg_buf_str(&b), "new");
    sg_buf_free(&b);
}
END_TEST

START_TEST(test_failure_state)
{
    struct sg_buf b = SG_BUF_INIT;

    sg_buf_adds(&b, "kept");
    /* A length that cannot fit: the buffer fails without reading data. */
    sg_buf_add(&b, "x", SIZE_MAX);
    ck_assert_int_eq(sg_buf_error(&b), -1);
    sg_buf_adds(&b, " ignored");
    sg_buf_printf(&b, "%s", " ignored");
    ck_assert_uint_eq(b.len, 4);
    ck_assert_int_eq(sg_buf_error(&b), -1);
    /* A failed buffer yields nothing, and is left empty. */
    ck_assert_ptr_null(sg_buf_steal(&b));
    ck_assert_int_eq(sg_buf_error(&b), 0);

    /* reset forgets the failure with the content. */
    sg_buf_add(&b, "x", SIZE_MAX);
    ck_assert_int_eq(sg_buf_error(&b), -1);
    sg_buf_reset(&b);
    ck_assert_int_eq(sg_buf_error(&b), 0);
    sg_buf_adds(&b, "ok");
    ck_assert_str_eq(sg_buf_str(&b), "ok");
    sg_buf_free(&b);
}
END_TEST

static const struct {
    const char *in;
    size_t len;
    const char *out;
} json_cases[] = {
#define J(in, out) {in, sizeof(in) - 1, out}
    J("plain text", "plain text"),
    J("", ""),
    J("say \"hi\"", "say \\\"hi\\\""),
    J("back\\slash", "back\\\\slash"),
    J("a/b", "a/b"),
    J("\n\r\t\b\f", "\\n\\r\\t\\b\\f"),
    J("\x01\x1f\x7f", "\\u0001\\u001f\\u007f"),
    J("a\0b", "a\\u0000b"),
    /* Valid UTF-8 passes unchanged: 2, 3 and 4 byte sequences, and the
     * edges of the ranges. */
    J("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac "
                                                   "\xf0\x9f\x98\x80"),
    J("\xc2\x80\xdf\xbf", "\xc2\x80\xdf\xbf"),
    J("\xe0\xa0\x80\xef\xbf\xbf", "\xe0\xa0\x80\xef\xbf\xbf"),
    J("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"),
    /* Invalid: one U+FFFD per offending byte. */
    J("\xff", "\\ufffd"),
    J("a\x80z", "a\\ufffdz"),
    J("\xc3", "\\ufffd"),                      /* truncated at the end */
    J("\xc3(", "\\ufffd("),                    /* bad continuation */
    J("\xc0\xaf", "\\ufffd\\ufffd"),           /* overlong '/' */
    J("\xe0\x80\x80", "\\ufffd\\ufffd\\ufffd"),  /* overlong 3-byte */
    J("\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd"),  /* surrogate U+D800 */
    J("\xf0\x80\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"), /* overlong */
    J("\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"), /* > U+10FFFF */
    J("\xf5\x80", "\\ufffd\\ufffd"),
    J("\"\xff\n", "\\\"\\ufffd\\n"),
#undef J
};

START_TEST(test_json_escape)
{
    struct sg_buf b = SG_BUF_INIT;

    sg_buf_adds(&b, "<");
    sg_buf_add_json_escaped(&b, json_cases[_i].in, json_cases[_i].len);
    sg_buf_adds(&b, ">");
    ck_assert_uint_eq(b.len, strlen(json_cases[_i].out) + 2);
    ck_assert_int_eq(memcmp(b.data + 1, json_cases[_i].out, b.len - 2), 0);
    ck_assert_int_eq(b.data[b.len - 1], '>');
    sg_buf_free(&b);
}
END_TEST

static Suite *buf_suite(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_append);
    tcase_add_test(tc, test_growth);
    tcase_add_test(tc, test_printf);
    tcase_add_test(tc, test_steal);
    tcase_add_test(tc, test_reset);
    tcase_add_test(tc, test_failure_state);
    tcase_add_loop_test(tc, test_json_escape, 0,
                        (int)SG_N_ELEMENTS(json_cases));
    suite_add_tcase(s, tc);
    return s;
}

SG_TEST_MAIN(buf_suite)
