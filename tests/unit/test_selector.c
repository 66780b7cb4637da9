/*
 * test_selector.c: Kubernetes label selector syntax and matching.
 */
#include "internal.h"

#include "testutils.h"

#include "selector.h"

#include <check.h>
#include <stdlib.h>

/* The labels every matching case is tried against. */
static const char *const keys[] = {"app", "tier", "example.com/team", "empty"};
static const char *const values[] = {"web", "front", "a", ""};

static const struct {
    const char *selector;
    bool matches; /* against the labels above */
} good[] = {
    {"", true},
    {"   ", true},
    {"app=web", true},
    {"app==web", true},
    {"app = web", true},
    {" app == web ", true},
    {"app=db", false},
    {"app!=db", true},
    {"app!=web", false},
    {"missing!=x", true}, /* != matches objects without the key */
    {"missing=x", false},
    {"app", true},
    {"missing", false},
    {"!missing", true},
    {"!app", false},
    {"! app", false},
    {"app in (web,db)", true},
    {"app in(db)", false},
    {"app in ( db , web )", true},
    {"missing in (x)", false},
    {"app notin (db)", true},
    {"app notin (db,web)", false},
    {"missing notin (x)", true}, /* notin matches without the key too */
    {"app=web,tier=front", true},
    {"app=web, tier=back", false},
    {"app=web,tier in (front,back),!canary", true},
    {"app,tier,example.com/team=a", true},
    {"example.com/team in (a,b)", true},
    {"empty=", true},
    {"empty==", true},
    {"empty", true},
    {"empty in (x,)", true},
    {"empty in (,x)", true},
    {"app in (x,)", false},
    {"app!=", true},
    {"in=x", false}, /* "in" is a valid key */
    {"notin", false},
    {"\tapp\n=\rweb\v,\ftier", true},
    {"A_b.c-D=X_y.z-9", false},
};

START_TEST(test_good)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_selector *sel = sg_selector_parse(good[_i].selector, &err);

    ck_assert_msg(sel != NULL, "'%s': %s", good[_i].selector, err.message);
    ck_assert_msg(sg_selector_matches(sel, keys, values, SG_N_ELEMENTS(keys)) ==
                      good[_i].matches,
                  "'%s'", good[_i].selector);
    ck_assert(!sg_error_is_set(&err));
    sg_selector_free(sel);
}
END_TEST

static const struct {
    const char *selector;
    const char *message; /* the whole violation description */
} bad[] = {
    {",", "expected a label key at byte 0"},
    {"a=b,", "expected a label key at byte 4"},
    {"a=b,,c", "expected a label key at byte 4"},
    {"=b", "expected a label key at byte 0"},
    {"a b", "expected '=', '==', '!=', 'in', 'notin', ',' or the end of the "
            "selector at byte 2"},
    {"a<3", "expected '=', '==', '!=', 'in', 'notin', ',' or the end of the "
            "selector at byte 1"},
    {"a=b c", "expected ',' or the end of the selector at byte 4"},
    {"a=b=c", "expected ',' or the end of the selector at byte 3"},
    {"a==(b)", "expected a label value at byte 3"},
    {"a in b", "expected '(' after 'in' at byte 5"},
    {"a notin", "expected '(' after 'notin' at byte 7"},
    {"a in ()", "'in' needs at least one value at byte 6"},
    {"a notin ( )", "'notin' needs at least one value at byte 10"},
    {"a in (b", "expected ',' or ')' at byte 7"},
    {"a in (b c)", "expected ',' or ')' at byte 8"},
    {"a in (b,(c))", "expected a label value at byte 8"},
    {"!", "expected a label key at byte 1"},
    {"!a=b", "expected ',' or the end of the selector at byte 2"},
    {"!!a", "expected a label key at byte 1"},
    {"Bad_/x=1", "invalid key 'Bad_/x' at byte 0: prefix must be a DNS-1123 "
                 "subdomain: lower-case letters, digits, '-' and '.', each "
                 "part starting and ending with a letter or digit"},
    {"a=b, -x",
     "invalid key '-x' at byte 5: name must consist of letters, digits, '-', "
     "'_' and '.', and start and end with a letter or digit"},
    {"a=-b",
     "invalid value '-b' at byte 2: must be empty or consist of letters, "
     "digits, '-', '_' and '.', and start and end with a letter or digit"},
    {"a in (x, y/z)",
     "invalid value 'y/z' at byte 9: must be empty or consist of letters, "
     "digits, '-', '_' and '.', and start and end with a letter or digit"},
    {"a)", "expected '=', '==', '!=', 'in', 'notin', ',' or the end of the "
           "selector at byte 1"},
};

START_TEST(test_bad)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_selector *sel = sg_selector_parse(bad[_i].selector, &err);

    ck_assert_msg(sel == NULL, "'%s' parsed", bad[_i].selector);
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    ck_assert_uint_eq(err.n_violations, 1);
    ck_assert_str_eq(err.violations[0].field, "label_selector");
    ck_assert_str_eq(err.violations[0].description, bad[_i].message);
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_long_key_and_value)
{
    struct sg_error err = SG_ERROR_INIT;
    char text[256];
    struct sg_selector *sel;

    /* 63-character names are fine, 64 are not. */
    memset(text, 'k', 63);
    memcpy(text + 63, "=", 2);
    sel = sg_selector_parse(text, &err);
    ck_assert_ptr_nonnull(sel);
    sg_selector_free(sel);

    memset(text, 'k', 64);
    memcpy(text + 64, "=v", 3);
    ck_assert_ptr_null(sg_selector_parse(text, &err));
    ck_assert(strstr(err.violations[0].description, "at most 63") != NULL);
    sg_error_reset(&err);

    memcpy(text, "k=", 2);
    memset(text + 2, 'v', 64);
    text[66] = '\0';
    ck_assert_ptr_null(sg_selector_parse(text, &err));
    ck_assert(strstr(err.violations[0].description, "invalid value") != NULL);
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_null_and_empty)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_selector *sel = sg_selector_parse(NULL, &err);

    ck_assert_ptr_nonnull(sel);
    ck_assert(sg_selector_is_empty(sel));
    ck_assert(sg_selector_matches(sel, NULL, NULL, 0));
    ck_assert(sg_selector_matches(NULL, keys, values, SG_N_ELEMENTS(keys)));
    ck_assert(sg_selector_is_empty(NULL));
    sg_selector_free(sel);
    sg_selector_free(NULL);

    sel = sg_selector_parse("a", NULL);
    ck_assert(!sg_selector_is_empty(sel));
    /* No labels at all. */
    ck_assert(!sg_selector_matches(sel, NULL, NULL, 0));
    sg_selector_free(sel);
    ck_assert_ptr_null(sg_selector_parse("a in", NULL));
}
END_TEST

START_TEST(test_last_key_wins)
{
    static const char *const k[] = {"app", "app"};
    static const char *const v[] = {"old", "new"};
    struct sg_selector *sel = sg_selector_parse("app=new", NULL);

    ck_assert(sg_selector_matches(sel, k, v, 2));
    ck_assert(!sg_selector_matches(sel, k, v, 1));
    sg_selector_free(sel);
}
END_TEST

START_TEST(test_labels_entries)
{
    Sandgate__V1__Sandbox__LabelsEntry e[2];
    Sandgate__V1__Sandbox__LabelsEntry *ep[2] = {&e[0], &e[1]};
    struct sg_selector *sel;

    sandgate__v1__sandbox__labels_entry__init(&e[0]);
    sandgate__v1__sandbox__labels_entry__init(&e[1]);
    e[0].key = "app";
    e[0].value = "web";
    e[1].key = "tier";
    e[1].value = "front";
    sel = sg_selector_parse("app in (web), tier!=back, !canary", NULL);
    ck_assert_ptr_nonnull(sel);
    ck_assert(sg_selector_matches_labels(sel, ep, 2));
    e[1].value = "back";
    ck_assert(!sg_selector_matches_labels(sel, ep, 2));
    ck_assert(!sg_selector_matches_labels(sel, ep, 0));
    sg_selector_free(sel);
}
END_TEST

static Suite *selector_suite(void)
{
    Suite *s = suite_create("selector");
    TCase *tc = tcase_create("core");

    tcase_add_loop_test(tc, test_good, 0, (int)SG_N_ELEMENTS(good));
    tcase_add_loop_test(tc, test_bad, 0, (int)SG_N_ELEMENTS(bad));
    tcase_add_test(tc, test_long_key_and_value);
    tcase_add_test(tc, test_null_and_empty);
    tcase_add_test(tc, test_last_key_wins);
    tcase_add_test(tc, test_labels_entries);
    suite_add_tcase(s, tc);
    return s;
}

SG_TEST_MAIN(selector_suite)
