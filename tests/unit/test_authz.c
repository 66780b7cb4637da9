/*
 * test_authz.c: the guard (authz/authz.c): the embedded default's admin
 * token, static tokens from a policy file, disabled authentication, and
 * reloads that keep the old policy when the new one is bad.
 */
#include "internal.h"

#include "authz.h"
#include "testutils.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/sg-test-authz-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
}

static void read_token(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "r");
    size_t len;

    ck_assert_ptr_nonnull(f);
    len = fread(out, 1, n - 1, f);
    fclose(f);
    out[len] = '\0';
    if (len > 0 && out[len - 1] == '\n')
        out[len - 1] = '\0';
}

/* Authenticate with a bearer token; returns the subject (static buffer)
   or NULL, leaving the error message in msg. */
static const char *who(struct sg_authz *a, const char *token, char *msg,
                       size_t n)
{
    static char subject[1024];
    struct sg_error err = SG_ERROR_INIT;
    struct sg_identity *id = NULL;
    struct sg_policy *p = NULL;
    int rc = sg_authz_authenticate(a, token, token ? strlen(token) : 0,
                                   NULL, &id, &p, &err);

    if (rc < 0) {
        ck_assert_int_eq(err.code, SG_ERR_UNAUTHENTICATED);
        ck_assert_ptr_null(id);
        ck_assert_ptr_null(p);
        snprintf(msg, n, "%s", err.message);
        sg_error_reset(&err);
        return NULL;
    }
    ck_assert_ptr_nonnull(p);
    snprintf(subject, sizeof(subject), "%s", id->subject);
    sg_identity_unref(id);
    sg_policy_unref(p);
    return subject;
}

START_TEST(test_admin_token_created_and_kept)
{
    char path[128], token[256], token2[256], msg[1024];
    struct sg_authz_config cfg = {.admin_token_file = path};
    struct sg_error err = SG_ERROR_INIT;
    struct sg_authz *a;
    struct stat st;

    path_in(path, sizeof(path), "admin.token");
    a = sg_authz_new(&cfg, &err);
    ck_assert_msg(a != NULL, "%s", err.message);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    read_token(path, token, sizeof(token));
    ck_assert_uint_ge(strlen(token), 40);
    ck_assert_str_eq(who(a, token, msg, sizeof(msg)), "token:admin");
    ck_assert_ptr_null(who(a, "not-the-token", msg, sizeof(msg)));
    ck_assert_str_eq(msg, "bearer token not accepted");
    /* A near miss is no better than a wild one. */
    token[5] ^= 1;
    ck_assert_ptr_null(who(a, token, msg, sizeof(msg)));
    token[5] ^= 1;
    ck_assert_ptr_null(who(a, NULL, msg, sizeof(msg)));
    ck_assert_str_eq(msg, "no credential: send a bearer token or a client "
                          "certificate");
    sg_authz_free(a);

    /* A restart reads the same token. */
    a = sg_authz_new(&cfg, &err);
    ck_assert_msg(a != NULL, "%s", err.message);
    read_token(path, token2, sizeof(token2));
    ck_assert_str_eq(token, token2);
    ck_assert_str_eq(who(a, token, msg, sizeof(msg)), "token:admin");
    sg_authz_free(a);
}
END_TEST

START_TEST(test_admin_token_unsafe_file_refused)
{
    char path[128];
    struct sg_authz_config cfg = {.admin_token_file = path};
    struct sg_error err = SG_ERROR_INIT;

    path_in(path, sizeof(path), "admin.token");
    write_file(path, "0123456789abcdef0123456789\n", 0644);
    ck_assert_ptr_null(sg_authz_new(&cfg, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.message, "mode 644"));
    /* The message names the file, never the token. */
    ck_assert_ptr_null(strstr(err.message, "0123456789abcdef"));
    sg_error_reset(&err);

    write_file(path, "short\n", 0600);
    ck_assert_ptr_null(sg_authz_new(&cfg, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "shorter than 16"));
    sg_error_reset(&err);

    write_file(path, "0123456789abcdef\x01" "0123\n", 0600);
    ck_assert_ptr_null(sg_authz_new(&cfg, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "not printable ASCII"));
    sg_error_reset(&err);

    /* An operator's own token, with a trailing newline, is accepted. */
    write_file(path, "my-own-admin-token-1234\n", 0600);
    {
        char msg[1024];
        struct sg_authz *a = sg_authz_new(&cfg, &err);

        ck_assert_msg(a != NULL, "%s", err.message);
        ck_assert_str_eq(who(a, "my-own-admin-token-1234", msg, sizeof(msg)),
                         "token:admin");
        sg_authz_free(a);
    }
}
END_TEST

START_TEST(test_disabled)
{
    char msg[1024];
    struct sg_authz_config cfg = {.disabled = true};
    struct sg_error err = SG_ERROR_INIT;
    struct sg_authz *a = sg_authz_new(&cfg, &err);

    ck_assert_msg(a != NULL, "%s", err.message);
    ck_assert_str_eq(who(a, NULL, msg, sizeof(msg)), "local:unauthenticated");
    ck_assert_str_eq(who(a, "anything", msg, sizeof(msg)),
                     "local:unauthenticated");
    sg_authz_free(a);
}
END_TEST

static void hex_sha256(const char *s, char out[65])
{
    uint8_t md[SHA256_DIGEST_LENGTH];

    SHA256((const uint8_t *)s, strlen(s), md);
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void write_policy(const char *path, const char *name,
                         const char *token)
{
    char hex[65];
    char text[1024];

    hex_sha256(token, hex);
    snprintf(text, sizeof(text),
             "authentication:\n"
             "  static_tokens:\n"
             "    - {name: %s, sha256: %s}\n"
             "roles:\n"
             "  reader:\n"
             "    operations: [{permissions: [sandboxes.get], on: any}]\n"
             "bindings:\n"
             "  - roles: [reader]\n"
             "    subjects: [{token: %s}]\n",
             name, hex, name);
    write_file(path, text, 0600);
}

START_TEST(test_policy_reload)
{
    char path[128], msg[1024];
    struct sg_authz_config cfg = {.policy_file = path,
                                  .gateway_namespace = "sandgate-system"};
    struct sg_error err = SG_ERROR_INIT;
    struct sg_authz *a;
    struct sg_identity *id = NULL;
    struct sg_policy *held = NULL;

    path_in(path, sizeof(path), "policy.yaml");
    write_policy(path, "ci", "first-token-0123456789");
    a = sg_authz_new(&cfg, &err);
    ck_assert_msg(a != NULL, "%s", err.message);
    ck_assert_str_eq(sg_authz_gateway_namespace(a), "sandgate-system");
    ck_assert_str_eq(who(a, "first-token-0123456789", msg, sizeof(msg)),
                     "token:ci");
    /* A call in flight keeps the policy it started with. */
    ck_assert_int_eq(sg_authz_authenticate(a, "first-token-0123456789", 22,
                                           NULL, &id, &held, &err), 0);

    write_policy(path, "deploy", "second-token-0123456789");
    ck_assert_int_eq(sg_authz_reload(a, &err), 0);
    ck_assert_ptr_null(who(a, "first-token-0123456789", msg, sizeof(msg)));
    ck_assert_str_eq(who(a, "second-token-0123456789", msg, sizeof(msg)),
                     "token:deploy");
    ck_assert_uint_eq(sg_policy_n_tokens(held), 1);
    ck_assert_str_eq(sg_policy_token(held, 0)->name, "ci");
    ck_assert(sg_policy_reach(held, id, "sandboxes.get") == SG_REACH_ANY);
    sg_policy_unref(held);
    sg_identity_unref(id);

    /* A broken file keeps the policy in force. */
    write_file(path, "roles: [not, a, mapping\n", 0600);
    ck_assert_int_eq(sg_authz_reload(a, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    sg_error_reset(&err);
    ck_assert_str_eq(who(a, "second-token-0123456789", msg, sizeof(msg)),
                     "token:deploy");
    sg_authz_free(a);
}
END_TEST

START_TEST(test_bad_policy_at_start)
{
    char path[128];
    struct sg_authz_config cfg = {.policy_file = path};
    struct sg_error err = SG_ERROR_INIT;

    path_in(path, sizeof(path), "missing.yaml");
    ck_assert_ptr_null(sg_authz_new(&cfg, &err));
    ck_assert(sg_error_is_set(&err));
    sg_error_reset(&err);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("authz");
    TCase *tc = tcase_create("authz");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_admin_token_created_and_kept);
    tcase_add_test(tc, test_admin_token_unsafe_file_refused);
    tcase_add_test(tc, test_disabled);
    tcase_add_test(tc, test_policy_reload);
    tcase_add_test(tc, test_bad_policy_at_start);
    suite_add_tcase(s, tc);
    return s;
}

SG_TEST_MAIN(make_suite)
