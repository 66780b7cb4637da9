/*
 * test_credsrc.c: the credential sources (credentials/credsrc.h): the
 * built-in file, env and kubernetes-secret sources, the registry, the
 * host table, and the plugin loader against the out-of-tree plugins in
 * tests/plugins/cred_*.c (refusals asserted as whole messages).
 *
 * Every test runs in a checked fixture with its own temporary directory:
 * <tmp>/allowed is the configured directory, <tmp>/outside is not.
 */
#include "internal.h"

#include "testutils.h"

#include "credsrc.h"
#include "error.h"
#include "log.h"

#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define OPS_SIZE_1_0                                                           \
    (offsetof(struct sg_credsrc_ops, resolve) +                                \
     sizeof(((struct sg_credsrc_ops *)NULL)->resolve))

#define FILE_CONTENT "file-material-7f3a"
#define ENV_CONTENT "env-material-91c2"
#define ENV_PREFIX "SGTEST_CRED_"

static char tmp_dir[64];
static char allowed[128];
static char outside[128];
static const char *dirs[1];

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    ck_assert_int_eq(close(fd), 0);
}

static void at(char *buf, size_t size, const char *base, const char *rel)
{
    ck_assert_int_lt(snprintf(buf, size, "%s/%s", base, rel), (int)size);
}

static void setup(void)
{
    char p[PATH_MAX];
    char q[PATH_MAX];
    char *big;

    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/sg-test-credsrc-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    at(allowed, sizeof(allowed), tmp_dir, "allowed");
    at(outside, sizeof(outside), tmp_dir, "outside");
    ck_assert_int_eq(mkdir(allowed, 0700), 0);
    ck_assert_int_eq(mkdir(outside, 0700), 0);
    dirs[0] = allowed;

    at(p, sizeof(p), allowed, "token");
    write_file(p, FILE_CONTENT, strlen(FILE_CONTENT));
    at(p, sizeof(p), allowed, "sub");
    ck_assert_int_eq(mkdir(p, 0700), 0);
    at(p, sizeof(p), allowed, "sub/nested");
    write_file(p, "nested", 6);
    at(p, sizeof(p), outside, "other");
    write_file(p, "outside-material", 16);
    /* A symlink inside the directory that leads out of it, and one that
       stays inside. */
    at(q, sizeof(q), allowed, "escape");
    ck_assert_int_eq(symlink(p, q), 0);
    at(p, sizeof(p), allowed, "token");
    at(q, sizeof(q), allowed, "inner-link");
    ck_assert_int_eq(symlink(p, q), 0);
    /* A symlinked subdirectory leading out. */
    at(q, sizeof(q), allowed, "outdir");
    ck_assert_int_eq(symlink(outside, q), 0);
    at(p, sizeof(p), allowed, "dir");
    ck_assert_int_eq(mkdir(p, 0700), 0);
    at(p, sizeof(p), allowed, "fifo");
    ck_assert_int_eq(mkfifo(p, 0600), 0);

    big = calloc(1, 1024 * 1024 + 1);
    ck_assert_ptr_nonnull(big);
    at(p, sizeof(p), allowed, "big");
    write_file(p, big, 1024 * 1024 + 1);
    at(p, sizeof(p), allowed, "exact");
    write_file(p, big, 1024 * 1024);
    at(p, sizeof(p), allowed, "empty");
    write_file(p, big, 0);
    free(big);

    setenv(ENV_PREFIX "TOKEN", ENV_CONTENT, 1);
    unsetenv(ENV_PREFIX "MISSING");
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    nftw(tmp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A registry with the fixture's directory and prefix and the plugins
   given; asserts that it opened. */
static struct sg_credsrc_registry *
new_registry(const struct sg_credsrc_plugin_config *plugins, size_t n)
{
    struct sg_credsrc_config cfg = {
        .file_directories = dirs,
        .n_file_directories = 1,
        .env_prefix = ENV_PREFIX,
        .plugins = plugins,
        .n_plugins = n,
    };
    struct sg_error err = SG_ERROR_INIT;
    struct sg_credsrc_registry *reg = sg_credsrc_registry_new(&cfg, &err);

    ck_assert_msg(reg != NULL, "registry: %s", err.message);
    sg_error_reset(&err);
    return reg;
}

static void file_ref(char *buf, size_t size, const char *path)
{
    ck_assert_int_lt(snprintf(buf, size, "{\"path\": \"%s\"}", path),
                     (int)size);
}

/* Resolve expecting failure with code and exactly msg. */
static void resolve_fails(struct sg_credsrc_registry *reg, const char *kind,
                          const char *ref, enum sg_err_code code,
                          const char *msg)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_secret *s = (struct sg_secret *)&err; /* must become NULL */

    ck_assert_int_eq(sg_credsrc_resolve(reg, kind, ref, &s, &err), -1);
    ck_assert_ptr_null(s);
    ck_assert_msg(err.code == code, "%s: code %s", ref,
                  sg_err_code_name(err.code));
    ck_assert_str_eq(err.message, msg);
    sg_error_reset(&err);
}

static void resolve_ok(struct sg_credsrc_registry *reg, const char *kind,
                       const char *ref, const char *data, size_t len)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_secret *s = NULL;

    ck_assert_msg(sg_credsrc_resolve(reg, kind, ref, &s, &err) == 0, "%s: %s",
                  ref, err.message);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->len, len);
    ck_assert(len == 0 || memcmp(s->data, data, len) == 0);
    sg_secret_free(s);
}

static void validate_fails(struct sg_credsrc_registry *reg, const char *kind,
                           const char *ref, const char *msg)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_credsrc_validate(reg, kind, ref, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message, msg);
    sg_error_reset(&err);
}

static void validate_ok(struct sg_credsrc_registry *reg, const char *kind,
                        const char *ref)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_msg(sg_credsrc_validate(reg, kind, ref, &err) == 0, "%s: %s", ref,
                  err.message);
}

static void describe_is(struct sg_credsrc_registry *reg, const char *kind,
                        const char *ref, const char *want)
{
    char out[256];

    memset(out, 'x', sizeof(out));
    sg_credsrc_describe(reg, kind, ref, out, sizeof(out));
    ck_assert_str_eq(out, want);
}

/* ------------------------------------------------------------------ */
/* Registry                                                            */
/* ------------------------------------------------------------------ */

START_TEST(test_builtins_known)
{
    struct sg_credsrc_registry *reg = new_registry(NULL, 0);

    ck_assert(sg_credsrc_known(reg, "file"));
    ck_assert(sg_credsrc_known(reg, "env"));
    ck_assert(sg_credsrc_known(reg, "kubernetes-secret"));
    ck_assert(!sg_credsrc_known(reg, "vault"));
    ck_assert(!sg_credsrc_known(reg, NULL));
    validate_fails(reg, "vault", "{}",
                   "source.kind: unknown credential source 'vault'");
    resolve_fails(reg, "vault", "{}", SG_ERR_INVALID_ARGUMENT,
                  "source.kind: unknown credential source 'vault'");
    describe_is(reg, "vault", "{}", "unknown source 'vault'");
    sg_credsrc_registry_free(reg);
    sg_credsrc_registry_free(NULL);
}
END_TEST

START_TEST(test_empty_config)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_credsrc_config cfg = {0};
    struct sg_credsrc_registry *reg = sg_credsrc_registry_new(&cfg, &err);
    char ref[PATH_MAX + 32];

    ck_assert_ptr_nonnull(reg);
    at(ref, sizeof(ref), allowed, "token");
    file_ref(ref, sizeof(ref), allowed);
    validate_fails(reg, "file", ref, "file: no directories are configured");
    validate_fails(reg, "env", "{\"name\": \"" ENV_PREFIX "TOKEN\"}",
                   "env: no variable prefix is configured");
    sg_credsrc_registry_free(reg);
}
END_TEST

START_TEST(test_file_bad_directory)
{
    struct sg_error err = SG_ERROR_INIT;
    char missing[PATH_MAX];
    char want[PATH_MAX + 128];
    char token[PATH_MAX];
    const char *bad[1];
    struct sg_credsrc_config cfg = {.file_directories = bad,
                                    .n_file_directories = 1};

    at(missing, sizeof(missing), tmp_dir, "nope");
    bad[0] = missing;
    ck_assert_ptr_null(sg_credsrc_registry_new(&cfg, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    snprintf(want, sizeof(want),
             "built-in credential source 'file': open failed: directory "
             "'%s': No such file or directory",
             missing);
    ck_assert_str_eq(err.message, want);
    sg_error_reset(&err);

    at(token, sizeof(token), allowed, "token");
    bad[0] = token;
    ck_assert_ptr_null(sg_credsrc_registry_new(&cfg, &err));
    snprintf(want, sizeof(want),
             "built-in credential source 'file': open failed: directory "
             "'%s' is not a directory",
             token);
    ck_assert_str_eq(err.message, want);
    sg_error_reset(&err);

    bad[0] = "relative/dir";
    ck_assert_ptr_null(sg_credsrc_registry_new(&cfg, &err));
    ck_assert_str_eq(err.message,
                     "built-in credential source 'file': open failed: "
                     "directory 'relative/dir' must be an absolute path");
    sg_error_reset(&err);
}
END_TEST

/* ------------------------------------------------------------------ */
/* file                                                                */
/* ------------------------------------------------------------------ */

START_TEST(test_file_validate)
{
    struct sg_credsrc_registry *reg = new_registry(NULL, 0);
    char path[PATH_MAX];
    char ref[PATH_MAX + 32];
    char want[PATH_MAX + 64];

    at(path, sizeof(path), allowed, "token");
    file_ref(ref, sizeof(ref), path);
    validate_ok(reg, "file", ref);
    at(path, sizeof(path), allowed, "sub/nested");
    file_ref(ref, sizeof(ref), path);
    validate_ok(reg, "file", ref);

    validate_fails(reg, "file", "{}", "ref.path: required");
    validate_fails(reg, "file", "{\"path\": \"\"}", "ref.path: required");
    validate_fails(reg, "file", "{\"path\": 5}", "ref.path: must be a string");
    validate_fails(reg, "file", "[1]", "ref: not a JSON object");
    validate_fails(reg, "file", "{\"path\": ", "ref: not a JSON object");
    validate_fails(reg, "file", "{\"path\": \"/x\", \"mode\": 1}",
                   "ref.mode: unknown key");
    validate_fails(reg, "file", "{\"path\": \"rel/token\"}",
                   "ref.path: must be an absolute path");

    snprintf(path, sizeof(path), "%s/../outside/other", allowed);
    file_ref(ref, sizeof(ref), path);
    validate_fails(reg, "file", ref, "ref.path: must not contain '..'");
    snprintf(path, sizeof(path), "%s/sub/..", allowed);
    file_ref(ref, sizeof(ref), path);
    validate_fails(reg, "file", ref, "ref.path: must not contain '..'");
    snprintf(path, sizeof(path), "%s//token", allowed);
    file_ref(ref, sizeof(ref), path);
    validate_fails(reg, "file", ref, "ref.path: must be normalised (no '//')");
    snprintf(path, sizeof(path), "%s/./token", allowed);
    file_ref(ref, sizeof(ref), path);
    validate_fails(reg, "file", ref, "ref.path: must be normalised (no '.')");
    snprintf(path, sizeof(path), "%s/sub/", allowed);
    file_ref(ref, sizeof(ref), path);
    validate_fails(reg, "file", ref,
                   "ref.path: must name a file (no trailing '/')");

    at(path, sizeof(path), outside, "other");
    file_ref(ref, sizeof(ref), path);
    snprintf(want, sizeof(want),
             "ref.path: '%s' is not under a configured directory", path);
    validate_fails(reg, "file", ref, want);
    /* A sibling whose name merely starts with the directory's. */
    snprintf(path, sizeof(path), "%s-other/token", allowed);
    file_ref(ref, sizeof(ref), path);
    snprintf(want, sizeof(want),
             "ref.path: '%s' is not under a configured directory", path);
    validate_fails(reg, "file", ref, want);
    sg_credsrc_registry_free(reg);
}
END_TEST

/* A directory configured with a trailing '/', or through a symlink:
   references may use either spelling of it. */
START_TEST(test_file_dir_spellings)
{
    struct sg_error err = SG_ERROR_INIT;
    char slash[PATH_MAX];
    char link[PATH_MAX];
    char path[PATH_MAX];
    char ref[PATH_MAX + 32];
    const char *spelt[1];
    struct sg_credsrc_config cfg = {.file_directories = spelt,
                                    .n_file_directories = 1};
    struct sg_credsrc_registry *reg;

    snprintf(slash, sizeof(slash), "%s/", allowed);
    spelt[0] = slash;
    reg = sg_credsrc_registry_new(&cfg, &err);
    ck_assert_msg(reg != NULL, "%s", err.message);
    at(path, sizeof(path), allowed, "token");
    file_ref(ref, sizeof(ref), path);
    resolve_ok(reg, "file", ref, FILE_CONTENT, strlen(FILE_CONTENT));
    sg_credsrc_registry_free(reg);

    at(link, sizeof(link), tmp_dir, "link-to-allowed");
    ck_assert_int_eq(symlink(allowed, link), 0);
    spelt[0] = link;
    reg = sg_credsrc_registry_new(&cfg, &err);
    ck_assert_msg(reg != NULL, "%s", err.message);
    resolve_ok(reg, "file", ref, FILE_CONTENT, strlen(FILE_CONTENT));
    at(path, sizeof(path), link, "token");
    file_ref(ref, sizeof(ref), path);
    resolve_ok(reg, "file", ref, FILE_CONTENT, strlen(FILE_CONTENT));
    sg_credsrc_registry_free(reg);
}
END_TEST

START_TEST(test_file_resolve)
{
    struct sg_credsrc_registry *reg = new_registry(NULL, 0);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_secret *s = NULL;
    char path[PATH_MAX];
    char ref[PATH_MAX + 32];

    at(path, sizeof(path), allowed, "token");
    file_ref(ref, sizeof(ref), path);
    ck_assert_int_eq(sg_credsrc_resolve(reg, "file", ref, &s, &err), 0);
    ck_assert_uint_eq(s->len, strlen(FILE_CONTENT));
    ck_assert_int_eq(memcmp(s->data, FILE_CONTENT, s->len), 0);
    ck_assert_int_eq(s->expire_time_ms, 0);
    sg_secret_free(s);

    at(path, sizeof(path), allowed, "sub/nested");
    file_ref(ref, sizeof(ref), path);
    resolve_ok(reg, "file", ref, "nested", 6);
    /* A symlink that stays inside the directory is followed. */
    at(path, sizeof(path), allowed, "inner-link");
    file_ref(ref, sizeof(ref), path);
    resolve_ok(reg, "file", ref, FILE_CONTENT, strlen(FILE_CONTENT));
    at(path, sizeof(path), allowed, "empty");
    file_ref(ref, sizeof(ref), path);
    resolve_ok(reg, "file", ref, "", 0);
    sg_credsrc_registry_free(reg);
}
END_TEST

START_TEST(test_file_refused)
{
    static const struct {
        const char *rel;
        const char *why; /* after "file: '<path>' " */
    } cases[] = {
        {"escape", "leads outside the configured directories"},
        {"outdir/other", "leads outside the configured directories"},
        {"dir", "is not a regular file"},
        {"fifo", "is not a regular file"},
        {"big", "is larger than 1 MiB"},
        {"nope", "does not exist"},
    };
    struct sg_credsrc_registry *reg = new_registry(NULL, 0);
    char path[PATH_MAX];
    char ref[PATH_MAX + 32];
    char want[PATH_MAX + 128];

    for (size_t i = 0; i < SG_N_ELEMENTS(cases); i++) {
        at(path, sizeof(path), allowed, cases[i].rel);
        file_ref(ref, sizeof(ref), path);
        validate_ok(reg, "file", ref); /* the spelling is fine */
        snprintf(want, sizeof(want), "file: '%s' %s", path, cases[i].why);
        resolve_fails(reg, "file", ref, SG_ERR_FAILED_PRECONDITION, want);
    }
    /* Exactly 1 MiB is still accepted. */
    at(path, sizeof(path), allowed, "exact");
    file_ref(ref, sizeof(ref), path);
    {
        struct sg_error err = SG_ERROR_INIT;
        struct sg_secret *s = NULL;

        ck_assert_int_eq(sg_credsrc_resolve(reg, "file", ref, &s, &err), 0);
        ck_assert_uint_eq(s->len, 1024 * 1024);
        sg_secret_free(s);
    }
    /* A bad reference is INVALID_ARGUMENT before anything is opened. */
    snprintf(path, sizeof(path), "%s/../outside/other", allowed);
    file_ref(ref, sizeof(ref), path);
    resolve_fails(reg, "file", ref, SG_ERR_INVALID_ARGUMENT,
                  "ref.path: must not contain '..'");
    sg_credsrc_registry_free(reg);
}
END_TEST

/* ------------------------------------------------------------------ */
/* env                                                                 */
/* ------------------------------------------------------------------ */

START_TEST(test_env)
{
    struct sg_credsrc_registry *reg = new_registry(NULL, 0);

    validate_ok(reg, "env", "{\"name\": \"" ENV_PREFIX "TOKEN\"}");
    resolve_ok(reg, "env", "{\"name\": \"" ENV_PREFIX "TOKEN\"}", ENV_CONTENT,
               strlen(ENV_CONTENT));
    validate_fails(reg, "env", "{\"name\": \"HOME\"}",
                   "ref.name: 'HOME' does not start with the configured "
                   "prefix '" ENV_PREFIX "'");
    resolve_fails(reg, "env", "{\"name\": \"PATH\"}", SG_ERR_INVALID_ARGUMENT,
                  "ref.name: 'PATH' does not start with the configured "
                  "prefix '" ENV_PREFIX "'");
    validate_fails(reg, "env", "{\"name\": \"1" ENV_PREFIX "\"}",
                   "ref.name: '1" ENV_PREFIX "' is not a variable name (1 "
                   "to 255 of [A-Za-z0-9_], not starting with a digit)");
    validate_fails(reg, "env", "{\"name\": \"" ENV_PREFIX "A=B\"}",
                   "ref.name: '" ENV_PREFIX "A=B' is not a variable name (1 "
                   "to 255 of [A-Za-z0-9_], not starting with a digit)");
    validate_fails(reg, "env", "{}", "ref.name: required");
    validate_fails(reg, "env", "{\"name\": \"" ENV_PREFIX "X\", \"path\": 1}",
                   "ref.path: unknown key");
    resolve_fails(reg, "env", "{\"name\": \"" ENV_PREFIX "MISSING\"}",
                  SG_ERR_FAILED_PRECONDITION,
                  "env: environment variable '" ENV_PREFIX
                  "MISSING' is not set");
    describe_is(reg, "env", "{\"name\": \"" ENV_PREFIX "TOKEN\"}",
                "env " ENV_PREFIX "TOKEN");
    sg_credsrc_registry_free(reg);
}
END_TEST

START_TEST(test_env_bad_prefix)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_credsrc_config cfg = {.env_prefix = "BAD-PREFIX"};

    ck_assert_ptr_null(sg_credsrc_registry_new(&cfg, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message,
                     "built-in credential source 'env': open failed: prefix "
                     "must be a variable name prefix (1 to 255 of "
                     "[A-Za-z0-9_], not starting with a digit)");
    sg_error_reset(&err);
}
END_TEST

/* ------------------------------------------------------------------ */
/* kubernetes-secret                                                   */
/* ------------------------------------------------------------------ */

#define LABEL_WHY                                                              \
    "is not a DNS label (1 to 63 of [a-z0-9-], starting and ending with a "    \
    "letter or digit)"
#define SUBDOMAIN_WHY                                                          \
    "is not a DNS subdomain (1 to 253 of [a-z0-9.-], each label starting "     \
    "and ending with a letter or digit)"
#define KEY_WHY                                                                \
    "is not a Secret data key (1 to 253 of [-._a-zA-Z0-9], not '.' and not "   \
    "starting with '..')"

START_TEST(test_k8s_secret)
{
    static const struct {
        const char *ref;
        const char *msg; /* NULL: valid */
    } cases[] = {
        {"{\"namespace\": \"team-a\", \"name\": \"git\", \"key\": \"token\"}",
         NULL},
        {"{\"namespace\": \"a1\", \"name\": \"git.creds-2\", \"key\": "
         "\"_.TOKEN-x\"}",
         NULL},
        {"{\"name\": \"git\", \"key\": \"token\"}", "ref.namespace: required"},
        {"{\"namespace\": \"team-a\", \"key\": \"token\"}",
         "ref.name: required"},
        {"{\"namespace\": \"team-a\", \"name\": \"git\"}", "ref.key: required"},
        {"{\"namespace\": 1, \"name\": \"git\", \"key\": \"token\"}",
         "ref.namespace: must be a string"},
        {"{\"namespace\": \"Team\", \"name\": \"git\", \"key\": \"token\"}",
         "ref.namespace: 'Team' " LABEL_WHY},
        {"{\"namespace\": \"-a\", \"name\": \"git\", \"key\": \"token\"}",
         "ref.namespace: '-a' " LABEL_WHY},
        {"{\"namespace\": \"a.b\", \"name\": \"git\", \"key\": \"token\"}",
         "ref.namespace: 'a.b' " LABEL_WHY},
        {"{\"namespace\": \"team-a\", \"name\": \"git..x\", \"key\": "
         "\"token\"}",
         "ref.name: 'git..x' " SUBDOMAIN_WHY},
        {"{\"namespace\": \"team-a\", \"name\": \"Git\", \"key\": \"token\"}",
         "ref.name: 'Git' " SUBDOMAIN_WHY},
        {"{\"namespace\": \"team-a\", \"name\": \"git-\", \"key\": \"token\"}",
         "ref.name: 'git-' " SUBDOMAIN_WHY},
        {"{\"namespace\": \"team-a\", \"name\": \"git\", \"key\": \"a/b\"}",
         "ref.key: 'a/b' " KEY_WHY},
        {"{\"namespace\": \"team-a\", \"name\": \"git\", \"key\": \".\"}",
         "ref.key: '.' " KEY_WHY},
        {"{\"namespace\": \"team-a\", \"name\": \"git\", \"key\": \"..x\"}",
         "ref.key: '..x' " KEY_WHY},
        {"{\"namespace\": \"team-a\", \"name\": \"git\", \"key\": \"k\", "
         "\"version\": 2}",
         "ref.version: unknown key"},
    };
    struct sg_credsrc_registry *reg = new_registry(NULL, 0);
    char long_label[128];
    char ref[256];

    for (size_t i = 0; i < SG_N_ELEMENTS(cases); i++) {
        if (cases[i].msg == NULL)
            validate_ok(reg, "kubernetes-secret", cases[i].ref);
        else
            validate_fails(reg, "kubernetes-secret", cases[i].ref,
                           cases[i].msg);
    }
    /* 63 bytes is a label, 64 is not. */
    memset(long_label, 'a', 64);
    long_label[63] = '\0';
    snprintf(ref, sizeof(ref),
             "{\"namespace\": \"%s\", \"name\": \"git\", \"key\": \"k\"}",
             long_label);
    validate_ok(reg, "kubernetes-secret", ref);
    long_label[63] = 'a';
    long_label[64] = '\0';
    snprintf(ref, sizeof(ref),
             "{\"namespace\": \"%s\", \"name\": \"git\", \"key\": \"k\"}",
             long_label);
    {
        char want[256];

        snprintf(want, sizeof(want), "ref.namespace: '%s' " LABEL_WHY,
                 long_label);
        validate_fails(reg, "kubernetes-secret", ref, want);
    }

    describe_is(reg, "kubernetes-secret", cases[0].ref,
                "secret team-a/git key token");
    resolve_fails(reg, "kubernetes-secret", cases[0].ref,
                  SG_ERR_FAILED_PRECONDITION,
                  "kubernetes-secret: resolving needs the kubernetes driver");
    resolve_fails(reg, "kubernetes-secret", cases[2].ref,
                  SG_ERR_INVALID_ARGUMENT, "ref.namespace: required");
    sg_credsrc_registry_free(reg);
}
END_TEST

START_TEST(test_describe)
{
    struct sg_credsrc_registry *reg = new_registry(NULL, 0);
    char path[PATH_MAX];
    char ref[PATH_MAX + 32];
    char want[PATH_MAX + 8];
    char small[8];

    at(path, sizeof(path), allowed, "token");
    file_ref(ref, sizeof(ref), path);
    snprintf(want, sizeof(want), "file %s", path);
    describe_is(reg, "file", ref, want);
    describe_is(reg, "file", "{\"path\": 1}",
                "file (a reference it cannot describe)");
    describe_is(reg, "env", NULL, "env (a reference it cannot describe)");
    /* Truncated, still terminated. */
    sg_credsrc_describe(reg, "file", ref, small, sizeof(small));
    ck_assert_str_eq(small, "file /t");
    sg_credsrc_registry_free(reg);
}
END_TEST

/* ------------------------------------------------------------------ */
/* sg_credsrc_register and the host table                              */
/* ------------------------------------------------------------------ */

static const struct sg_credsrc_host *seen_host;

static int fake_open(void *priv, const struct sg_credsrc_host *host,
                     const char *settings_json, char **errmsg)
{
    seen_host = host;
    if (strstr(settings_json, "refuse") != NULL) {
        *errmsg = host->alloc(8);
        memcpy(*errmsg, "refused", 8);
        return -1;
    }
    return 0;
}

static int fake_validate(void *priv, const char *ref_json, char **errmsg)
{
    return 0;
}

static int fake_describe(void *priv, const char *ref_json, char **out,
                         char **errmsg)
{
    *out = seen_host->alloc(5);
    memcpy(*out, "fake", 5);
    return 0;
}

static int fake_resolve(void *priv, const char *ref_json,
                        struct sg_credsrc_material *out, char **errmsg)
{
    out->data = seen_host->alloc(3);
    memcpy(out->data, "k8s", 3);
    out->len = 3;
    out->expire_time_ms = 42;
    return 0;
}

/* Leaves material behind and fails: the host must wipe and free it. */
static int fake_resolve_fails(void *priv, const char *ref_json,
                              struct sg_credsrc_material *out, char **errmsg)
{
    out->data = seen_host->alloc(4);
    memcpy(out->data, "left", 4);
    out->len = 4;
    return -1;
}

static struct sg_credsrc_ops fake_ops(const char *name)
{
    struct sg_credsrc_ops ops = {
        .abi_major = SG_CREDSRC_ABI_MAJOR,
        .abi_minor = SG_CREDSRC_ABI_MINOR,
        .struct_size = sizeof(struct sg_credsrc_ops),
        .name = name,
        .signature = SG_CREDSRC_SIGNATURE,
        .open = fake_open,
        .validate = fake_validate,
        .describe = fake_describe,
        .resolve = fake_resolve,
    };

    return ops;
}

static void register_fails(struct sg_credsrc_registry *reg,
                           const struct sg_credsrc_ops *ops,
                           const char *settings, const char *msg)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_credsrc_register(reg, ops, settings, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message, msg);
    sg_error_reset(&err);
}

START_TEST(test_register)
{
    struct sg_credsrc_registry *reg = new_registry(NULL, 0);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_credsrc_ops ops = fake_ops("kubernetes-secret");
    struct sg_credsrc_ops bad;
    struct sg_secret *s = NULL;
    char want[256];

    /* The driver's table replaces the built-in stand-in. */
    ck_assert_int_eq(sg_credsrc_register(reg, &ops, NULL, &err), 0);
    ck_assert_int_eq(
        sg_credsrc_resolve(reg, "kubernetes-secret", "{}", &s, &err), 0);
    ck_assert_uint_eq(s->len, 3);
    ck_assert_int_eq(memcmp(s->data, "k8s", 3), 0);
    ck_assert_int_eq(s->expire_time_ms, 42);
    sg_secret_free(s);
    describe_is(reg, "kubernetes-secret", "{}", "fake");
    /* Only once; and never over file or env. */
    register_fails(reg, &ops, NULL,
                   "built-in credential source 'kubernetes-secret': kind "
                   "'kubernetes-secret' is already registered");
    ops = fake_ops("file");
    register_fails(reg, &ops, NULL,
                   "built-in credential source 'file': kind 'file' is "
                   "already registered");

    register_fails(reg, NULL, NULL,
                   "built-in credential source '?': entry point returned "
                   "no table");
    bad = fake_ops("x-newer");
    bad.abi_minor = SG_CREDSRC_ABI_MINOR + 1;
    snprintf(want, sizeof(want),
             "built-in credential source 'x-newer': ABI %d.%d is newer than "
             "this gateway's %d.%d",
             SG_CREDSRC_ABI_MAJOR, SG_CREDSRC_ABI_MINOR + 1,
             SG_CREDSRC_ABI_MAJOR, SG_CREDSRC_ABI_MINOR);
    register_fails(reg, &bad, NULL, want);
    bad = fake_ops("Bad_Name");
    register_fails(reg, &bad, NULL,
                   "built-in credential source 'Bad_Name': source name "
                   "'Bad_Name' is not valid (1 to 63 of [a-z0-9-])");
    bad = fake_ops("");
    register_fails(reg, &bad, NULL,
                   "built-in credential source '': source name '' is not "
                   "valid (1 to 63 of [a-z0-9-])");
    bad = fake_ops(NULL);
    register_fails(reg, &bad, NULL,
                   "built-in credential source '?': no source name");
    bad = fake_ops("no-sig");
    bad.signature = NULL;
    register_fails(reg, &bad, NULL,
                   "built-in credential source 'no-sig': no signature, want "
                   "'" SG_CREDSRC_SIGNATURE "' (built against another header "
                   "or compiler ABI)");
    bad = fake_ops("no-resolve");
    bad.resolve = NULL;
    register_fails(reg, &bad, NULL,
                   "built-in credential source 'no-resolve': required slot "
                   "'resolve' is NULL");
    bad = fake_ops("no-open");
    bad.open = NULL;
    register_fails(reg, &bad, NULL,
                   "built-in credential source 'no-open': required slot "
                   "'open' is NULL");
    bad = fake_ops("refusing");
    register_fails(reg, &bad, "{\"refuse\": true}",
                   "built-in credential source 'refusing': open failed: "
                   "refused");
    ck_assert(!sg_credsrc_known(reg, "refusing"));

    /* close is optional. */
    ops = fake_ops("leaves-material");
    ops.resolve = fake_resolve_fails;
    ck_assert_int_eq(sg_credsrc_register(reg, &ops, "{}", &err), 0);
    resolve_fails(reg, "leaves-material", "{}", SG_ERR_FAILED_PRECONDITION,
                  "leaves-material: the reference did not resolve");
    sg_credsrc_registry_free(reg);
}
END_TEST

START_TEST(test_host_table)
{
    struct sg_credsrc_registry *reg = new_registry(NULL, 0);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_credsrc_ops ops = fake_ops("host-probe");
    char log_path[128];
    char buf[4096];
    uint8_t wiped[16];
    void *p;
    ssize_t n;
    int fd;

    seen_host = NULL;
    ck_assert_int_eq(sg_credsrc_register(reg, &ops, NULL, &err), 0);
    ck_assert_ptr_nonnull(seen_host);
    ck_assert_uint_eq(seen_host->abi_major, SG_CREDSRC_ABI_MAJOR);
    ck_assert_uint_eq(seen_host->abi_minor, SG_CREDSRC_ABI_MINOR);
    ck_assert_uint_eq(seen_host->struct_size, sizeof(struct sg_credsrc_host));
    p = seen_host->alloc(0);
    ck_assert_ptr_nonnull(p);
    seen_host->free(p);
    seen_host->free(NULL);
    memset(wiped, 0xa5, sizeof(wiped));
    seen_host->wipe(wiped, sizeof(wiped));
    for (size_t i = 0; i < sizeof(wiped); i++)
        ck_assert_uint_eq(wiped[i], 0);
    seen_host->wipe(NULL, 0);

    at(log_path, sizeof(log_path), tmp_dir, "log");
    fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    sg_log_set_fd(fd);
    ck_assert_int_eq(sg_log_configure("info", NULL, SG_LOG_FORMAT_JSON, &err),
                     0);
    seen_host->log(SG_CREDSRC_LOG_WARN, "host-probe", "probe %d", 17);
    seen_host->log(SG_CREDSRC_LOG_DEBUG, "host-probe", "hidden %d", 18);
    sg_log_set_fd(-1);
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_ptr_nonnull(strstr(buf, "credentials.host-probe"));
    ck_assert_ptr_nonnull(strstr(buf, "probe 17"));
    ck_assert_ptr_null(strstr(buf, "hidden 18"));
    close(fd);
    sg_credsrc_registry_free(reg);
}
END_TEST

START_TEST(test_secret_free)
{
    struct sg_secret *s = calloc(1, sizeof(*s));

    sg_secret_free(NULL);
    ck_assert_ptr_nonnull(s);
    s->data = malloc(4);
    ck_assert_ptr_nonnull(s->data);
    memcpy(s->data, "abcd", 4);
    s->len = 4;
    sg_secret_free(s); /* a leak or a double free fails under ASan */
    s = calloc(1, sizeof(*s));
    ck_assert_ptr_nonnull(s);
    sg_secret_free(s); /* no data */
}
END_TEST

/* ------------------------------------------------------------------ */
/* Plugins                                                             */
/* ------------------------------------------------------------------ */

static void load_fails(const char *path, const char *settings, const char *msg)
{
    struct sg_credsrc_plugin_config pc = {.path = path,
                                          .settings_json = settings};
    struct sg_credsrc_config cfg = {.plugins = &pc, .n_plugins = 1};
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_ptr_null(sg_credsrc_registry_new(&cfg, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message, msg);
    sg_error_reset(&err);
}

START_TEST(test_plugin_good)
{
    struct sg_credsrc_plugin_config pc = {.path = SG_PLUGIN_CRED_GOOD};
    struct sg_credsrc_registry *reg = new_registry(&pc, 1);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_secret *s = NULL;

    ck_assert(sg_credsrc_known(reg, "test-good"));
    ck_assert(sg_credsrc_known(reg, "file")); /* built-ins stay */
    validate_ok(reg, "test-good", "{\"id\": \"abc\"}");
    validate_fails(reg, "test-good", "{}", "ref.id: required");
    describe_is(reg, "test-good", "{\"id\": \"abc\"}", "test-good id abc");
    ck_assert_int_eq(
        sg_credsrc_resolve(reg, "test-good", "{\"id\": \"abc\"}", &s, &err), 0);
    ck_assert_uint_eq(s->len, strlen("value-of-abc"));
    ck_assert_int_eq(memcmp(s->data, "value-of-abc", s->len), 0);
    ck_assert_int_eq(s->expire_time_ms, 4102444800000);
    sg_secret_free(s);
    resolve_fails(reg, "test-good", "{\"id\": \"missing\"}",
                  SG_ERR_FAILED_PRECONDITION,
                  "test-good: no material for this id");
    sg_credsrc_registry_free(reg);
}
END_TEST

START_TEST(test_plugin_refused)
{
    static const struct {
        const char *path;
        const char *why;
    } cases[] = {
        {SG_PLUGIN_CRED_BAD_MAJOR, "ABI major 2, this gateway speaks 1"},
        {SG_PLUGIN_CRED_NO_ENTRY, "no symbol sg_credential_source_entry"},
        {SG_PLUGIN_CRED_BAD_SIGNATURE,
         "signature 'sandgate-credsrc-1:ilp32' is not "
         "'sandgate-credsrc-1:lp64' (built against another header or "
         "compiler ABI)"},
        {SG_PLUGIN_CRED_NULL_TABLE, "entry point returned no table"},
    };
    char want[PATH_MAX + 256];

    for (size_t i = 0; i < SG_N_ELEMENTS(cases); i++) {
        snprintf(want, sizeof(want), "credential plugin '%s': %s",
                 cases[i].path, cases[i].why);
        load_fails(cases[i].path, NULL, want);
    }
    snprintf(want, sizeof(want),
             "credential plugin '%s': struct_size 24 is smaller than ABI "
             "1.0's %zu",
             SG_PLUGIN_CRED_SHORT_STRUCT, (size_t)OPS_SIZE_1_0);
    load_fails(SG_PLUGIN_CRED_SHORT_STRUCT, NULL, want);
    snprintf(want, sizeof(want),
             "credential plugin '%s': open failed: refused settings",
             SG_PLUGIN_CRED_GOOD);
    load_fails(SG_PLUGIN_CRED_GOOD, "{\"refuse\": true}", want);
    load_fails("", NULL, "credential plugin '': path is empty");
    load_fails(NULL, NULL, "credential plugin '': path is empty");
    load_fails("cred_good.so", NULL,
               "credential plugin 'cred_good.so': path must be absolute");
}
END_TEST

START_TEST(test_plugin_not_loadable)
{
    struct sg_credsrc_plugin_config pc = {.path = "/nonexistent/cred.so"};
    struct sg_credsrc_config cfg = {.plugins = &pc, .n_plugins = 1};
    struct sg_error err = SG_ERROR_INIT;
    static const char prefix[] =
        "credential plugin '/nonexistent/cred.so': cannot load: ";
    char *long_path = malloc(PATH_MAX + 1);
    char want[256];

    ck_assert_ptr_null(sg_credsrc_registry_new(&cfg, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    /* dlerror()'s own text follows. */
    ck_assert_int_eq(strncmp(err.message, prefix, strlen(prefix)), 0);
    ck_assert_uint_gt(strlen(err.message), strlen(prefix));
    sg_error_reset(&err);

    ck_assert_ptr_nonnull(long_path);
    long_path[0] = '/';
    memset(long_path + 1, 'a', PATH_MAX - 1);
    long_path[PATH_MAX] = '\0';
    snprintf(want, sizeof(want),
             "credential plugin '/%.63s...': path is %d bytes, the limit is "
             "%d",
             long_path + 1, PATH_MAX, PATH_MAX - 1);
    load_fails(long_path, NULL, want);
    free(long_path);
}
END_TEST

START_TEST(test_plugin_twice)
{
    struct sg_credsrc_plugin_config pc[2] = {{.path = SG_PLUGIN_CRED_GOOD},
                                             {.path = SG_PLUGIN_CRED_GOOD}};
    struct sg_credsrc_config cfg = {.plugins = pc, .n_plugins = 2};
    struct sg_error err = SG_ERROR_INIT;
    char want[PATH_MAX + 128];

    ck_assert_ptr_null(sg_credsrc_registry_new(&cfg, &err));
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    snprintf(want, sizeof(want),
             "credential plugin '%s': kind 'test-good' is already registered",
             SG_PLUGIN_CRED_GOOD);
    ck_assert_str_eq(err.message, want);
    sg_error_reset(&err);
}
END_TEST

/* No material in any log line, even at trace level. */
START_TEST(test_no_material_in_logs)
{
    struct sg_credsrc_plugin_config pc = {.path = SG_PLUGIN_CRED_GOOD};
    struct sg_error err = SG_ERROR_INIT;
    struct sg_credsrc_registry *reg;
    char log_path[128];
    char path[PATH_MAX];
    char ref[PATH_MAX + 32];
    static char buf[65536];
    ssize_t n;
    int fd;

    at(log_path, sizeof(log_path), tmp_dir, "log");
    fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    sg_log_set_fd(fd);
    ck_assert_int_eq(sg_log_configure("trace", NULL, SG_LOG_FORMAT_JSON, &err),
                     0);
    reg = new_registry(&pc, 1);
    at(path, sizeof(path), allowed, "token");
    file_ref(ref, sizeof(ref), path);
    resolve_ok(reg, "file", ref, FILE_CONTENT, strlen(FILE_CONTENT));
    resolve_ok(reg, "env", "{\"name\": \"" ENV_PREFIX "TOKEN\"}", ENV_CONTENT,
               strlen(ENV_CONTENT));
    resolve_ok(reg, "test-good", "{\"id\": \"abc\"}", "value-of-abc", 12);
    sg_credsrc_registry_free(reg);
    sg_log_set_fd(-1);
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    ck_assert_int_ge(n, 0);
    buf[n] = '\0';
    /* The plugin's open log line is there: logging was on. */
    ck_assert_ptr_nonnull(strstr(buf, "credentials.test-good"));
    ck_assert_ptr_null(strstr(buf, FILE_CONTENT));
    ck_assert_ptr_null(strstr(buf, ENV_CONTENT));
    ck_assert_ptr_null(strstr(buf, "value-of-abc"));
    close(fd);
}
END_TEST

static Suite *credsrc_suite(void)
{
    Suite *s = suite_create("credsrc");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_builtins_known);
    tcase_add_test(tc, test_empty_config);
    tcase_add_test(tc, test_file_bad_directory);
    tcase_add_test(tc, test_file_validate);
    tcase_add_test(tc, test_file_dir_spellings);
    tcase_add_test(tc, test_file_resolve);
    tcase_add_test(tc, test_file_refused);
    tcase_add_test(tc, test_env);
    tcase_add_test(tc, test_env_bad_prefix);
    tcase_add_test(tc, test_k8s_secret);
    tcase_add_test(tc, test_describe);
    tcase_add_test(tc, test_register);
    tcase_add_test(tc, test_host_table);
    tcase_add_test(tc, test_secret_free);
    tcase_add_test(tc, test_plugin_good);
    tcase_add_test(tc, test_plugin_refused);
    tcase_add_test(tc, test_plugin_not_loadable);
    tcase_add_test(tc, test_plugin_twice);
    tcase_add_test(tc, test_no_material_in_logs);
    suite_add_tcase(s, tc);
    return s;
}

SG_TEST_MAIN(credsrc_suite)
