/*
 * test_error.c: the per-call error record.
 */
#include "internal.h"

#include "testutils.h"

#include "error.h"

#include <check.h>
#include <stdlib.h>

START_TEST(test_empty)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert(!sg_error_is_set(&err));
    ck_assert(!sg_error_is_set(NULL));
    sg_error_reset(&err);
    sg_error_reset(NULL);
    /* Reporting into no record is allowed and does nothing. */
    sg_error_report(NULL, SG_ERR_INTERNAL, "ignored");
    ck_assert_int_eq(sg_error_add_violation(NULL, "f", "ignored"), 0);
}
END_TEST

START_TEST(test_first_report_wins)
{
    struct sg_error err = SG_ERROR_INIT;

    sg_error_report(&err, SG_ERR_NOT_FOUND, "sandbox '%s' not found", "a");
    sg_error_report(&err, SG_ERR_INTERNAL, "later");
    ck_assert(sg_error_is_set(&err));
    ck_assert_int_eq(err.code, SG_ERR_NOT_FOUND);
    ck_assert_str_eq(err.message, "sandbox 'a' not found");

    sg_error_reset(&err);
    ck_assert(!sg_error_is_set(&err));
    ck_assert_str_eq(err.message, "");
    sg_error_report(&err, SG_ERR_IO, "again");
    ck_assert_int_eq(err.code, SG_ERR_IO);
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_report_ok_is_internal)
{
    struct sg_error err = SG_ERROR_INIT;

    /* A report must leave the record set, whatever the code. */
    sg_error_report(&err, SG_ERR_OK, "bug");
    ck_assert(sg_error_is_set(&err));
    ck_assert_int_eq(err.code, SG_ERR_INTERNAL);
}
END_TEST

START_TEST(test_truncation)
{
    struct sg_error err = SG_ERROR_INIT;
    char long_text[2 * SG_ERROR_MESSAGE_MAX];

    memset(long_text, 'x', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    sg_error_report(&err, SG_ERR_INVALID_ARGUMENT, "%s", long_text);
    ck_assert_uint_eq(strlen(err.message), SG_ERROR_MESSAGE_MAX - 1);
}
END_TEST

START_TEST(test_violations)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_error_add_violation(&err, "sandbox.name",
                                            "must be at most %d characters",
                                            63), 0);
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message,
                     "sandbox.name: must be at most 63 characters");
    /* Later violations are appended; the message stays the first. */
    ck_assert_int_eq(sg_error_add_violation(&err, "ttl_seconds",
                                            "must be positive"), 0);
    ck_assert_uint_eq(err.n_violations, 2);
    ck_assert_str_eq(err.violations[0].field, "sandbox.name");
    ck_assert_str_eq(err.violations[1].field, "ttl_seconds");
    ck_assert_str_eq(err.violations[1].description, "must be positive");
    ck_assert_str_eq(err.message,
                     "sandbox.name: must be at most 63 characters");
    sg_error_reset(&err);
    ck_assert_uint_eq(err.n_violations, 0);
    ck_assert_ptr_null(err.violations);
}
END_TEST

START_TEST(test_violation_after_report)
{
    struct sg_error err = SG_ERROR_INIT;

    sg_error_report(&err, SG_ERR_PERMISSION_DENIED, "denied");
    ck_assert_int_eq(sg_error_add_violation(&err, "f", "bad"), 0);
    ck_assert_int_eq(err.code, SG_ERR_PERMISSION_DENIED);
    ck_assert_str_eq(err.message, "denied");
    ck_assert_uint_eq(err.n_violations, 1);
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_move)
{
    struct sg_error src = SG_ERROR_INIT;
    struct sg_error dst = SG_ERROR_INIT;

    sg_error_report(&dst, SG_ERR_INTERNAL, "old");
    ck_assert_int_eq(sg_error_add_violation(&dst, "old", "old"), 0);
    ck_assert_int_eq(sg_error_add_violation(&src, "f", "bad"), 0);
    sg_error_move(&dst, &src);
    ck_assert_int_eq(dst.code, SG_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(dst.message, "f: bad");
    ck_assert_uint_eq(dst.n_violations, 1);
    ck_assert_str_eq(dst.violations[0].field, "f");
    ck_assert(!sg_error_is_set(&src));
    ck_assert_uint_eq(src.n_violations, 0);
    ck_assert_ptr_null(src.violations);
    sg_error_move(&dst, &dst);
    ck_assert_uint_eq(dst.n_violations, 1);
    sg_error_reset(&dst);
}
END_TEST

static const struct {
    enum sg_err_code code;
    const char *name;
} names[] = {
    {SG_ERR_OK, "ok"},
    {SG_ERR_INVALID_ARGUMENT, "invalid_argument"},
    {SG_ERR_NOT_FOUND, "not_found"},
    {SG_ERR_ALREADY_EXISTS, "already_exists"},
    {SG_ERR_ABORTED, "aborted"},
    {SG_ERR_PERMISSION_DENIED, "permission_denied"},
    {SG_ERR_UNAUTHENTICATED, "unauthenticated"},
    {SG_ERR_RESOURCE_EXHAUSTED, "resource_exhausted"},
    {SG_ERR_OUT_OF_RANGE, "out_of_range"},
    {SG_ERR_FAILED_PRECONDITION, "failed_precondition"},
    {SG_ERR_UNAVAILABLE, "unavailable"},
    {SG_ERR_DEADLINE_EXCEEDED, "deadline_exceeded"},
    {SG_ERR_UNIMPLEMENTED, "unimplemented"},
    {SG_ERR_CONFIG, "config"},
    {SG_ERR_IO, "io"},
    {SG_ERR_NO_MEMORY, "no_memory"},
    {SG_ERR_INTERNAL, "internal"},
    {(enum sg_err_code)999, "unknown"},
};

START_TEST(test_code_names)
{
    ck_assert_str_eq(sg_err_code_name(names[_i].code), names[_i].name);
}
END_TEST

static Suite *error_suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_first_report_wins);
    tcase_add_test(tc, test_report_ok_is_internal);
    tcase_add_test(tc, test_truncation);
    tcase_add_test(tc, test_violations);
    tcase_add_test(tc, test_violation_after_report);
    tcase_add_test(tc, test_move);
    tcase_add_loop_test(tc, test_code_names, 0, (int)SG_N_ELEMENTS(names));
    suite_add_tcase(s, tc);
    return s;
}

SG_TEST_MAIN(error_suite)
