/*
 * test_status.c: the error -> gRPC status mapping and the
 * grpc-status-details-bin payload.
 */
#include "internal.h"

#include "testutils.h"

#include "status.h"

#include <check.h>
#include <stdlib.h>

#include "google_rpc_status.pb-c.h"
#include "google_rpc_error_details.pb-c.h"

static const struct {
    enum sg_err_code err;
    grpc_status_code code;
    bool hidden;
} cases[] = {
    {SG_ERR_OK, GRPC_STATUS_OK, false},
    {SG_ERR_INVALID_ARGUMENT, GRPC_STATUS_INVALID_ARGUMENT, false},
    {SG_ERR_NOT_FOUND, GRPC_STATUS_NOT_FOUND, false},
    {SG_ERR_ALREADY_EXISTS, GRPC_STATUS_ALREADY_EXISTS, false},
    {SG_ERR_ABORTED, GRPC_STATUS_ABORTED, false},
    {SG_ERR_PERMISSION_DENIED, GRPC_STATUS_PERMISSION_DENIED, false},
    {SG_ERR_UNAUTHENTICATED, GRPC_STATUS_UNAUTHENTICATED, false},
    {SG_ERR_RESOURCE_EXHAUSTED, GRPC_STATUS_RESOURCE_EXHAUSTED, false},
    {SG_ERR_OUT_OF_RANGE, GRPC_STATUS_OUT_OF_RANGE, false},
    {SG_ERR_FAILED_PRECONDITION, GRPC_STATUS_FAILED_PRECONDITION, false},
    {SG_ERR_UNAVAILABLE, GRPC_STATUS_UNAVAILABLE, false},
    {SG_ERR_DEADLINE_EXCEEDED, GRPC_STATUS_DEADLINE_EXCEEDED, false},
    {SG_ERR_UNIMPLEMENTED, GRPC_STATUS_UNIMPLEMENTED, false},
    {SG_ERR_CONFIG, GRPC_STATUS_INTERNAL, true},
    {SG_ERR_IO, GRPC_STATUS_INTERNAL, true},
    {SG_ERR_NO_MEMORY, GRPC_STATUS_RESOURCE_EXHAUSTED, true},
    {SG_ERR_INTERNAL, GRPC_STATUS_INTERNAL, true},
};

START_TEST(test_code_mapping)
{
    struct sg_error err = SG_ERROR_INIT;

    sg_error_report(&err, cases[_i].err, "detail /etc/secret-path");
    ck_assert_int_eq(sg_status_code(cases[_i].err), cases[_i].code);
    if (cases[_i].hidden)
        ck_assert_ptr_null(strstr(sg_status_message(&err), "secret-path"));
    else if (cases[_i].err != SG_ERR_OK)
        ck_assert_str_eq(sg_status_message(&err), "detail /etc/secret-path");
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_names)
{
    ck_assert_str_eq(sg_status_name(GRPC_STATUS_OK), "OK");
    ck_assert_str_eq(sg_status_name(GRPC_STATUS_UNAUTHENTICATED),
                     "UNAUTHENTICATED");
    ck_assert_str_eq(sg_status_name(GRPC_STATUS_RESOURCE_EXHAUSTED),
                     "RESOURCE_EXHAUSTED");
    ck_assert_str_eq(sg_status_name((grpc_status_code)99), "UNKNOWN");
}
END_TEST

START_TEST(test_details_carry_violations)
{
    struct sg_error err = SG_ERROR_INIT;
    grpc_slice s;
    Google__Rpc__Status *st;
    Google__Rpc__BadRequest *br;

    ck_assert_int_eq(sg_error_add_violation(&err, "sandbox.name",
                                            "must be a DNS-1123 label"), 0);
    ck_assert_int_eq(sg_error_add_violation(&err, "sandbox.labels[a b]",
                                            "invalid key"), 0);
    ck_assert_int_eq(sg_status_details(&err, &s), 1);

    st = google__rpc__status__unpack(NULL, GRPC_SLICE_LENGTH(s),
                                     GRPC_SLICE_START_PTR(s));
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(st->code, GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert_uint_eq(st->n_details, 1);
    ck_assert_str_eq(st->details[0]->type_url,
                     "type.googleapis.com/google.rpc.BadRequest");
    br = google__rpc__bad_request__unpack(NULL, st->details[0]->value.len,
                                          st->details[0]->value.data);
    ck_assert_ptr_nonnull(br);
    ck_assert_uint_eq(br->n_field_violations, 2);
    ck_assert_str_eq(br->field_violations[0]->field, "sandbox.name");
    ck_assert_str_eq(br->field_violations[0]->description,
                     "must be a DNS-1123 label");
    ck_assert_str_eq(br->field_violations[1]->field, "sandbox.labels[a b]");

    google__rpc__bad_request__free_unpacked(br, NULL);
    google__rpc__status__free_unpacked(st, NULL);
    grpc_slice_unref(s);
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_no_details_without_violations)
{
    struct sg_error err = SG_ERROR_INIT;
    grpc_slice s;

    sg_error_report(&err, SG_ERR_NOT_FOUND, "sandbox 'x' not found");
    ck_assert_int_eq(sg_status_details(&err, &s), 0);
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_internal_errors_never_carry_details)
{
    struct sg_error err = SG_ERROR_INIT;
    grpc_slice s;

    sg_error_report(&err, SG_ERR_INTERNAL, "broken");
    ck_assert_int_eq(sg_error_add_violation(&err, "f", "x"), 0);
    ck_assert_int_eq(sg_status_details(&err, &s), 0);
    sg_error_reset(&err);
}
END_TEST

static Suite *status_suite(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("core");

    tcase_add_loop_test(tc, test_code_mapping, 0, (int)SG_N_ELEMENTS(cases));
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_details_carry_violations);
    tcase_add_test(tc, test_no_details_without_violations);
    tcase_add_test(tc, test_internal_errors_never_carry_details);
    suite_add_tcase(s, tc);
    return s;
}

SG_TEST_MAIN(status_suite)
