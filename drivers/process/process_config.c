/*
 * process_config.c: strict decoding of the process driver's settings and
 * per-sandbox block.
 */
#include "internal.h"

#include "process_config.h"

#include "cred_targets.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define SETTINGS_PFX "process settings: "
#define BLOCK_PFX "process."

/* Largest integer a JSON double carries exactly. */
#define JSON_INT_MAX (UINT64_C(1) << 53)

struct limit_key {
    const char *key;
    size_t offset;
    uint64_t min;
    uint64_t max;
};

/*
 * Lower bounds keep bwrap itself able to start: it needs a few file
 * descriptors of its own and writes its status file under RLIMIT_FSIZE.
 */
static const struct limit_key limit_keys[] = {
    {"cpu_seconds", offsetof(struct process_limits, cpu_seconds), 1,
     JSON_INT_MAX},
    {"file_size_bytes", offsetof(struct process_limits, file_size_bytes), 4096,
     JSON_INT_MAX},
    {"memory_bytes", offsetof(struct process_limits, memory_bytes),
     UINT64_C(1) << 20, JSON_INT_MAX},
    {"open_files", offsetof(struct process_limits, open_files),
     PROCESS_MIN_OPEN_FILES, UINT64_C(1) << 20},
    {"pids", offsetof(struct process_limits, pids), 1, UINT64_C(4194304)},
};

static uint64_t *limit_slot(struct process_limits *l, const struct limit_key *k)
{
    return (uint64_t *)((char *)l + k->offset);
}

static uint64_t limit_value(const struct process_limits *l,
                            const struct limit_key *k)
{
    return *(const uint64_t *)((const char *)l + k->offset);
}

/* An integer in [min, max], given as a JSON integer or integral real. */
static int get_uint(json_t *v, enum sg_err_code code, const char *pfx,
                    const char *path, uint64_t min, uint64_t max, uint64_t *out,
                    struct sg_error *err)
{
    uint64_t n;

    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);

        if (i < 0)
            goto error;
        n = (uint64_t)i;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);

        if (!isfinite(d) || d != floor(d)) {
            sg_error_report(err, code, "%s%s: expected an integer", pfx, path);
            return -1;
        }
        if (d < 0 || d > (double)JSON_INT_MAX)
            goto error;
        n = (uint64_t)d;
    } else {
        sg_error_report(err, code, "%s%s: expected an integer", pfx, path);
        return -1;
    }
    if (n < min || n > max)
        goto error;
    *out = n;
    return 0;
 error:
    sg_error_report(err, code, "%s%s: must be between %llu and %llu", pfx, path,
                    (unsigned long long)min, (unsigned long long)max);
    return -1;
}

static int get_u32(json_t *v, enum sg_err_code code, const char *pfx,
                   const char *path, uint32_t min, uint32_t max, uint32_t *out,
                   struct sg_error *err)
{
    uint64_t n;

    if (get_uint(v, code, pfx, path, min, max, &n, err) < 0)
        return -1;
    *out = (uint32_t)n;
    return 0;
}

static int get_bool(json_t *v, enum sg_err_code code, const char *pfx,
                    const char *path, bool *out, struct sg_error *err)
{
    if (!json_is_boolean(v)) {
        sg_error_report(err, code, "%s%s: expected a boolean", pfx, path);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

/* An absolute path, copied into *out (replacing what was there). */
static int get_abs_path(json_t *v, const char *path, char **out,
                        struct sg_error *err)
{
    const char *s;
    char *copy;

    if (!json_is_string(v)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        SETTINGS_PFX "%s: expected a string", path);
        return -1;
    }
    s = json_string_value(v);
    if (s[0] != '/' || strlen(s) >= 4096) {
        sg_error_report(err, SG_ERR_CONFIG,
                        SETTINGS_PFX "%s: expected an absolute path", path);
        return -1;
    }
    copy = strdup(s);
    if (copy == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    free(*out);
    *out = copy;
    return 0;
}

static int expect_object(json_t *v, enum sg_err_code code, const char *pfx,
                         const char *path, struct sg_error *err)
{
    if (!json_is_object(v)) {
        sg_error_report(err, code, "%s%s: expected an object", pfx, path);
        return -1;
    }
    return 0;
}

static int load_limits(json_t *obj, enum sg_err_code code, const char *pfx,
                       struct process_limits *out, struct sg_error *err)
{
    const char *key;
    json_t *v;

    if (expect_object(obj, code, pfx, "limits", err) < 0)
        return -1;
    json_object_foreach(obj, key, v)
    {
        const struct limit_key *k = NULL;
        char path[128];

        for (size_t i = 0; i < SG_N_ELEMENTS(limit_keys); i++) {
            if (STREQ(limit_keys[i].key, key)) {
                k = &limit_keys[i];
                break;
            }
        }
        snprintf(path, sizeof(path), "limits.%s", key);
        if (k == NULL) {
            sg_error_report(err, code, "%s%.100s: unknown key", pfx, path);
            return -1;
        }
        if (get_uint(v, code, pfx, path, k->min, k->max, limit_slot(out, k),
                     err) < 0)
            return -1;
    }
    return 0;
}

static json_t *parse_object(const char *text, enum sg_err_code code,
                            const char *what, struct sg_error *err)
{
    json_error_t jerr;
    json_t *root;

    root =
        json_loads(text != NULL ? text : "{}", JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        /* jerr.text may quote the input; say only where it broke. */
        sg_error_report(err, code, "%s: invalid JSON at line %d column %d",
                        what, jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        sg_error_report(err, code, "%s: expected a JSON object", what);
        json_decref(root);
        return NULL;
    }
    return root;
}

static int image_cmp(const void *a, const void *b)
{
    const struct process_image *x = a;
    const struct process_image *y = b;

    return strcmp(x->name, y->name);
}

static int load_images(json_t *obj, struct process_settings *s,
                       struct sg_error *err)
{
    const char *key;
    json_t *v;
    size_t n = json_object_size(obj);

    if (expect_object(obj, SG_ERR_CONFIG, SETTINGS_PFX, "images", err) < 0)
        return -1;
    if (n == 0)
        return 0;
    s->images = calloc(n, sizeof(*s->images));
    if (s->images == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    json_object_foreach(obj, key, v)
    {
        char path[160];
        struct process_image *img = &s->images[s->n_images];

        snprintf(path, sizeof(path), "images.%.100s", key);
        if (key[0] == '\0') {
            sg_error_report(err, SG_ERR_CONFIG,
                            SETTINGS_PFX "images: an image name is empty");
            return -1;
        }
        img->name = strdup(key);
        if (img->name == NULL) {
            sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
            return -1;
        }
        s->n_images++;
        if (get_abs_path(v, path, &img->path, err) < 0)
            return -1;
    }
    qsort(s->images, s->n_images, sizeof(*s->images), image_cmp);
    return 0;
}

static int load_cgroup(json_t *v, struct process_settings *s,
                       struct sg_error *err)
{
    const char *c;
    char *copy;

    if (!json_is_string(v)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        SETTINGS_PFX "cgroup: expected a string");
        return -1;
    }
    c = json_string_value(v);
    if (!STREQ(c, "auto") && !STREQ(c, "off") &&
        (c[0] != '/' || strlen(c) >= 4096)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        SETTINGS_PFX "cgroup: expected \"auto\", \"off\" or "
                                     "an absolute path");
        return -1;
    }
    copy = strdup(c);
    if (copy == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    free(s->cgroup);
    s->cgroup = copy;
    return 0;
}

/* A decimal id in [0, 4294967294]: digits only, no sign or spaces. */
static bool parse_id(const char *s, size_t len, uint32_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 10)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v >= UINT32_MAX) /* (uid_t)-1 means "unchanged" to the kernel */
        return false;
    *out = (uint32_t)v;
    return true;
}

static int load_user(json_t *v, struct process_settings *s,
                     struct sg_error *err)
{
    const char *u;
    const char *colon;
    uint32_t uid;
    uint32_t gid;

    if (!json_is_string(v)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        SETTINGS_PFX "user: expected a string");
        return -1;
    }
    u = json_string_value(v);
    if (STREQ(u, "auto")) {
        s->user_auto = true;
        return 0;
    }
    colon = strchr(u, ':');
    if (colon == NULL || !parse_id(u, (size_t)(colon - u), &uid) ||
        !parse_id(colon + 1, strlen(colon + 1), &gid)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        SETTINGS_PFX "user: expected \"auto\" or "
                                     "\"UID:GID\" (decimal)");
        return -1;
    }
    if ((uid == 0 || gid == 0) && !STREQ(u, "0:0")) {
        sg_error_report(err, SG_ERR_CONFIG,
                        SETTINGS_PFX "user: uid and gid must not be 0 "
                                     "(\"0:0\" runs sandboxes as root)");
        return -1;
    }
    s->user_auto = false;
    s->user_uid = uid;
    s->user_gid = gid;
    return 0;
}

int process_settings_load(const char *settings_json,
                          struct process_settings *out, struct sg_error *err)
{
    json_t *root = NULL;
    const char *key;
    json_t *v;
    int ret = -1;

    out->bwrap = strdup(PROCESS_DEFAULT_BWRAP);
    out->rootfs = strdup(PROCESS_DEFAULT_ROOTFS);
    out->cgroup = strdup("auto");
    out->log_max_bytes = PROCESS_DEFAULT_LOG_MAX_BYTES;
    out->grace_period_ms = PROCESS_DEFAULT_GRACE_MS;
    out->allow_network = true;
    out->user_auto = true;
    if (out->bwrap == NULL || out->rootfs == NULL || out->cgroup == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    root = parse_object(settings_json, SG_ERR_CONFIG, "process settings", err);
    if (root == NULL)
        goto cleanup;
    json_object_foreach(root, key, v)
    {
        int r;

        if (STREQ(key, "bwrap")) {
            r = get_abs_path(v, key, &out->bwrap, err);
        } else if (STREQ(key, "rootfs")) {
            r = get_abs_path(v, key, &out->rootfs, err);
        } else if (STREQ(key, "images")) {
            r = load_images(v, out, err);
        } else if (STREQ(key, "log_max_bytes")) {
            r = get_uint(v, SG_ERR_CONFIG, SETTINGS_PFX, key, 1, JSON_INT_MAX,
                         &out->log_max_bytes, err);
        } else if (STREQ(key, "grace_period_ms")) {
            r = get_u32(v, SG_ERR_CONFIG, SETTINGS_PFX, key, 0,
                        PROCESS_MAX_GRACE_MS, &out->grace_period_ms, err);
        } else if (STREQ(key, "limits")) {
            r = load_limits(v, SG_ERR_CONFIG, SETTINGS_PFX, &out->limits, err);
        } else if (STREQ(key, "allow_network")) {
            r = get_bool(v, SG_ERR_CONFIG, SETTINGS_PFX, key,
                         &out->allow_network, err);
        } else if (STREQ(key, "cgroup")) {
            r = load_cgroup(v, out, err);
        } else if (STREQ(key, "user")) {
            r = load_user(v, out, err);
        } else {
            sg_error_report(err, SG_ERR_CONFIG,
                            SETTINGS_PFX "%.100s: unknown key", key);
            r = -1;
        }
        if (r < 0)
            goto cleanup;
    }
    ret = 0;
 cleanup:
    json_decref(root);
    return ret;
}

static int check_dir(const char *what, const char *path, struct sg_error *err)
{
    struct stat st;
    char buf[128];

    if (stat(path, &st) < 0) {
        sg_error_report(err, SG_ERR_CONFIG, SETTINGS_PFX "%s: '%s': %s", what,
                        path, sg_strerror(errno, buf, sizeof(buf)));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        SETTINGS_PFX "%s: '%s' is not a directory", what, path);
        return -1;
    }
    return 0;
}

int process_settings_check(const struct process_settings *s,
                           struct sg_error *err)
{
    struct stat st;

    if (stat(s->bwrap, &st) < 0 || !S_ISREG(st.st_mode) ||
        access(s->bwrap, X_OK) < 0) {
        sg_error_report(err, SG_ERR_CONFIG,
                        SETTINGS_PFX "bwrap: '%s' is not an executable file",
                        s->bwrap);
        return -1;
    }
    if (check_dir("rootfs", s->rootfs, err) < 0)
        return -1;
    for (size_t i = 0; i < s->n_images; i++) {
        char what[160];

        snprintf(what, sizeof(what), "images.%.100s", s->images[i].name);
        if (check_dir(what, s->images[i].path, err) < 0)
            return -1;
    }
    return 0;
}

void process_settings_clear(struct process_settings *s)
{
    if (s == NULL)
        return;
    free(s->bwrap);
    free(s->rootfs);
    free(s->cgroup);
    for (size_t i = 0; i < s->n_images; i++) {
        free(s->images[i].name);
        free(s->images[i].path);
    }
    free(s->images);
    memset(s, 0, sizeof(*s));
}

const char *process_settings_rootfs(const struct process_settings *s,
                                    const char *image)
{
    struct process_image key = {.name = (char *)image};
    const struct process_image *found;

    if (image == NULL || image[0] == '\0')
        return s->rootfs;
    if (s->n_images == 0)
        return NULL;
    found =
        bsearch(&key, s->images, s->n_images, sizeof(*s->images), image_cmp);
    return found != NULL ? found->path : NULL;
}

/* ---- the per-sandbox block ---- */

static int add_field(struct process_block *b, const char *path,
                     struct sg_error *err)
{
    char **grown = realloc(b->fields, (b->n_fields + 1) * sizeof(char *));

    if (grown == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    b->fields = grown;
    b->fields[b->n_fields] = strdup(path);
    if (b->fields[b->n_fields] == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    b->n_fields++;
    return 0;
}

/* Record the dotted path of every leaf (and of every empty object). */
static int collect_fields(struct process_block *b, const char *prefix,
                          json_t *obj, struct sg_error *err)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v)
    {
        char path[256];

        snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "",
                 key);
        if (json_is_object(v) && json_object_size(v) > 0) {
            if (collect_fields(b, path, v, err) < 0)
                return -1;
        } else if (add_field(b, path, err) < 0) {
            return -1;
        }
    }
    return 0;
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_command(json_t *v, struct process_readiness *r,
                        struct sg_error *err)
{
    size_t i;
    json_t *item;

    if (!json_is_array(v) || json_array_size(v) == 0) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        BLOCK_PFX "readiness.command: expected a non-empty "
                                  "array of strings");
        return -1;
    }
    r->argv = calloc(json_array_size(v) + 1, sizeof(char *));
    if (r->argv == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    json_array_foreach(v, i, item)
    {
        if (!json_is_string(item)) {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            BLOCK_PFX "readiness.command: expected a "
                                      "non-empty array of strings");
            return -1;
        }
        r->argv[i] = strdup(json_string_value(item));
        if (r->argv[i] == NULL) {
            sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
            return -1;
        }
        r->argc = i + 1;
    }
    if (r->argv[0][0] == '\0') {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        BLOCK_PFX "readiness.command: the program is empty");
        return -1;
    }
    return 0;
}

static int load_readiness(json_t *obj, struct process_readiness *r,
                          struct sg_error *err)
{
    const char *key;
    json_t *v;

    if (expect_object(obj, SG_ERR_INVALID_ARGUMENT, BLOCK_PFX, "readiness",
                      err) < 0)
        return -1;
    r->period_ms = PROCESS_DEFAULT_PERIOD_MS;
    r->timeout_ms = PROCESS_DEFAULT_TIMEOUT_MS;
    json_object_foreach(obj, key, v)
    {
        int rc;

        if (STREQ(key, "command")) {
            rc = load_command(v, r, err);
        } else if (STREQ(key, "period_ms")) {
            rc =
                get_u32(v, SG_ERR_INVALID_ARGUMENT, BLOCK_PFX,
                        "readiness.period_ms", 10, 3600000, &r->period_ms, err);
        } else if (STREQ(key, "timeout_ms")) {
            rc = get_u32(v, SG_ERR_INVALID_ARGUMENT, BLOCK_PFX,
                         "readiness.timeout_ms", 10, 3600000, &r->timeout_ms,
                         err);
        } else if (STREQ(key, "failure_threshold")) {
            rc = get_u32(v, SG_ERR_INVALID_ARGUMENT, BLOCK_PFX,
                         "readiness.failure_threshold", 0, 1000000,
                         &r->failure_threshold, err);
        } else {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            BLOCK_PFX "readiness.%.100s: unknown key", key);
            rc = -1;
        }
        if (rc < 0)
            return -1;
    }
    if (r->argv == NULL) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        BLOCK_PFX "readiness.command: required");
        return -1;
    }
    return 0;
}

static int check_ceilings(const struct process_settings *s,
                          const struct process_limits *l, struct sg_error *err)
{
    for (size_t i = 0; i < SG_N_ELEMENTS(limit_keys); i++) {
        uint64_t want = limit_value(l, &limit_keys[i]);
        uint64_t ceiling = limit_value(&s->limits, &limit_keys[i]);

        if (want != 0 && ceiling != 0 && want > ceiling) {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            BLOCK_PFX "limits.%s: %llu exceeds the operator's "
                                      "limit of %llu",
                            limit_keys[i].key, (unsigned long long)want,
                            (unsigned long long)ceiling);
            return -1;
        }
    }
    return 0;
}

int process_block_load(const struct process_settings *s, const char *json,
                       struct process_block *out, struct sg_error *err)
{
    json_t *root;
    const char *key;
    json_t *v;
    int ret = -1;

    root = parse_object(json, SG_ERR_INVALID_ARGUMENT, "process", err);
    if (root == NULL)
        return -1;
    json_object_foreach(root, key, v)
    {
        int r;

        if (STREQ(key, "network")) {
            r = get_bool(v, SG_ERR_INVALID_ARGUMENT, BLOCK_PFX, key,
                         &out->network, err);
            if (r == 0 && out->network && !s->allow_network) {
                sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                                BLOCK_PFX "network: network access is not "
                                          "allowed by the operator");
                r = -1;
            }
        } else if (STREQ(key, "limits")) {
            r = load_limits(v, SG_ERR_INVALID_ARGUMENT, BLOCK_PFX, &out->limits,
                            err);
            if (r == 0)
                r = check_ceilings(s, &out->limits, err);
        } else if (STREQ(key, "readiness")) {
            r = load_readiness(v, &out->readiness, err);
        } else if (STREQ(key, "grace_period_ms")) {
            r = get_u32(v, SG_ERR_INVALID_ARGUMENT, BLOCK_PFX, key, 0,
                        PROCESS_MAX_GRACE_MS, &out->grace_period_ms, err);
            out->has_grace = r == 0;
        } else {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            BLOCK_PFX "%.100s: unknown key", key);
            r = -1;
        }
        if (r < 0)
            goto cleanup;
    }
    if (collect_fields(out, "", root, err) < 0)
        goto cleanup;
    if (out->n_fields > 1)
        qsort(out->fields, out->n_fields, sizeof(char *), str_ptr_cmp);
    ret = 0;
 cleanup:
    json_decref(root);
    return ret;
}

void process_block_clear(struct process_block *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->readiness.argc; i++)
        free(b->readiness.argv[i]);
    free(b->readiness.argv);
    for (size_t i = 0; i < b->n_fields; i++)
        free(b->fields[i]);
    free(b->fields);
    memset(b, 0, sizeof(*b));
}

static bool valid_env_name(const char *name)
{
    return name[0] != '\0' && strchr(name, '=') == NULL;
}

/*
 * A file target bwrap can bind: "/run/..." or "/tmp/...", the tmpfs the
 * sandbox gets of its own (everything else is the rootfs, bound
 * read-only, or /work, a host directory), with no empty, "." or ".."
 * component.
 */
static bool cred_file_in_tmpfs(const char *path)
{
    const char *p;

    if (!STRPREFIX(path, "/run/") && !STRPREFIX(path, "/tmp/"))
        return false;
    for (p = path + 4; *p == '/'; p = strchr(p + 1, '/')) {
        size_t n = strcspn(p + 1, "/");

        if (n == 0 || (n == 1 && p[1] == '.') ||
            (n == 2 && p[1] == '.' && p[2] == '.'))
            return false;
        if (p[1 + n] == '\0')
            return true;
    }
    return false;
}

static int check_credential(const struct sg_driver_sandbox *sb, size_t i,
                            struct sg_error *err)
{
    const struct sg_driver_credential *c = &sb->credentials[i];
    const char *name = c->name != NULL ? c->name : "";
    const char *t = c->target;

    if (t == NULL || t[0] == '\0' || strlen(t) >= PROCESS_MAX_CRED_TARGET) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "process: credentials[%zu] (%.100s): target is "
                        "missing or too long",
                        i, name);
        return -1;
    }
    if (c->delivery == SG_DRIVER_DELIVER_ENV) {
        if (!valid_env_name(t) || sg_cred_env_taken(sb, i)) {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            "process: credentials[%zu] (%.100s): env name "
                            "'%.100s' is invalid or already set",
                            i, name, t);
            return -1;
        }
        /* Only create sees the material; an argument ends at a NUL. */
        if (c->material != NULL &&
            memchr(c->material, '\0', c->material_len) != NULL) {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            "process: credentials[%zu] (%.100s): an "
                            "environment variable cannot hold a NUL byte",
                            i, name);
            return -1;
        }
        return 0;
    }
    if (c->delivery != SG_DRIVER_DELIVER_FILE) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "process: credentials[%zu] (%.100s): unknown "
                        "delivery %d",
                        i, name, (int)c->delivery);
        return -1;
    }
    if (!cred_file_in_tmpfs(t)) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "process: credentials[%zu] (%.100s): file '%.200s' "
                        "must be under /run or /tmp, the sandbox's own tmpfs",
                        i, name, t);
        return -1;
    }
    for (size_t k = 0; k < i; k++) {
        if (sb->credentials[k].delivery == SG_DRIVER_DELIVER_FILE &&
            sg_paths_nest(sb->credentials[k].target, t)) {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            "process: credentials[%zu] (%.100s): file "
                            "'%.200s' clashes with credentials[%zu]",
                            i, name, t, k);
            return -1;
        }
    }
    return 0;
}

/*
 * The bindings, and the descriptors their files take: bwrap holds one per
 * file until it has copied it, below its own, so that open_files must
 * leave it the room it needs without them.
 */
static int check_credentials(const struct process_settings *s,
                             const struct sg_driver_sandbox *sb,
                             const struct process_block *b,
                             struct sg_error *err)
{
    struct process_limits l;
    size_t n_files = 0;

    if (sb->n_credentials == 0)
        return 0;
    if (sb->n_credentials > PROCESS_MAX_CREDENTIALS ||
        sb->credentials == NULL) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "process: at most %d credentials per sandbox",
                        PROCESS_MAX_CREDENTIALS);
        return -1;
    }
    for (size_t i = 0; i < sb->n_credentials; i++) {
        if (check_credential(sb, i, err) < 0)
            return -1;
        n_files += sb->credentials[i].delivery == SG_DRIVER_DELIVER_FILE;
    }
    process_limits_effective(s, b, &l);
    if (l.open_files != 0 && l.open_files < PROCESS_MIN_OPEN_FILES + n_files) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "process: %zu credential files need limits.open_files "
                        "of at least %zu",
                        n_files, PROCESS_MIN_OPEN_FILES + n_files);
        return -1;
    }
    return 0;
}

int process_sandbox_check(const struct process_settings *s,
                          const struct sg_driver_sandbox *sb,
                          struct process_block *out, struct sg_error *err)
{
    struct process_block local = {0};
    struct process_block *b = out != NULL ? out : &local;
    int ret = -1;

    if (process_block_load(s, sb->config_json, b, err) < 0)
        goto cleanup;
    if (sb->n_command == 0 || sb->command == NULL || sb->command[0] == NULL ||
        sb->command[0][0] == '\0') {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "process: spec.command is required");
        goto cleanup;
    }
    for (size_t i = 0; i < sb->n_command; i++) {
        if (sb->command[i] == NULL) {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            "process: spec.command[%zu] is missing", i);
            goto cleanup;
        }
    }
    if (sb->working_dir != NULL && sb->working_dir[0] != '\0' &&
        (sb->working_dir[0] != '/' || strlen(sb->working_dir) >= 4096)) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "process: spec.working_dir must be an absolute path");
        goto cleanup;
    }
    if (process_settings_rootfs(s, sb->image) == NULL) {
        sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                        "process: spec.image '%.100s' is not an image of "
                        "this gateway",
                        sb->image);
        goto cleanup;
    }
    for (size_t i = 0; i < sb->n_env; i++) {
        if (sb->env_names[i] == NULL || !valid_env_name(sb->env_names[i]) ||
            sb->env_values[i] == NULL) {
            sg_error_report(err, SG_ERR_INVALID_ARGUMENT,
                            "process: spec.env name '%.100s' is invalid",
                            sb->env_names[i] != NULL ? sb->env_names[i] : "");
            goto cleanup;
        }
    }
    if (check_credentials(s, sb, b, err) < 0)
        goto cleanup;
    ret = 0;
 cleanup:
    process_block_clear(&local);
    return ret;
}

void process_limits_effective(const struct process_settings *s,
                              const struct process_block *b,
                              struct process_limits *out)
{
    for (size_t i = 0; i < SG_N_ELEMENTS(limit_keys); i++) {
        uint64_t v = b != NULL ? limit_value(&b->limits, &limit_keys[i]) : 0;

        if (v == 0)
            v = limit_value(&s->limits, &limit_keys[i]);
        *limit_slot(out, &limit_keys[i]) = v;
    }
}
