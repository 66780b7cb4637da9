/*
 * test_peer.c: unit tests of authz/peer.c (being written).
 */
#include "internal.h"

#include "peer.h"
#include "testutils.h"

START_TEST(test_placeholder)
{
    ck_assert_int_eq(1, 1);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("peer");
    TCase *tc = tcase_create("peer");

    tcase_add_test(tc, test_placeholder);
    suite_add_tcase(s, tc);
    return s;
}

SG_TEST_MAIN(make_suite)
