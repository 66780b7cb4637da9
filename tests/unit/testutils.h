/*
 * testutils.h: what every unit-test program shares.
 *
 * SG_TEST_MAIN(make_suite) defines main(): run the suite (CK_FORK as set in
 * the environment, on by default), exit 0 only if every test passed.
 */
#ifndef SG_TESTUTILS_H
#define SG_TESTUTILS_H

#include <check.h>
#include <stdlib.h>

#define SG_TEST_MAIN(make_suite)                                               \
    int main(void)                                                             \
    {                                                                          \
        SRunner *sr = srunner_create(make_suite());                            \
        int failed;                                                            \
                                                                               \
        srunner_run_all(sr, CK_NORMAL);                                        \
        failed = srunner_ntests_failed(sr);                                    \
        srunner_free(sr);                                                      \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                      \
    }

#endif /* SG_TESTUTILS_H */
