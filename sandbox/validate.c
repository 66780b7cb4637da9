/*
 * validate.c: validation of SandboxService requests (see validate.h).
 */
#include "internal.h"

#include "validate.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define DNS_LABEL_MAX 63
#define DNS_SUBDOMAIN_MAX 253
#define LABEL_NAME_MAX 63
#define QUOTE_SHOWN_MAX 100
/* Longest field path: a prefix plus a quoted key (4 bytes per byte). */
#define PATH_LEN (64 + 4 * QUOTE_SHOWN_MAX + 8)
#define QUOTED_LEN (4 * QUOTE_SHOWN_MAX + 8)

/* One validation run: where violations go, and how many there were. */
struct vctx {
    struct sg_error *err;
    const struct sg_validate_limits *lim;
    size_t n;
};

struct sg_validate_limits sg_validate_limits_default(void)
{
    return (struct sg_validate_limits){
        .image_max = 1024,
        .command_args_max = 256,
        .command_arg_max = 4096,
        .command_total_max = 64 * 1024,
        .env_max = 256,
        .env_name_max = 256,
        .env_total_max = 64 * 1024,
        .path_max = 4096,
        .policy_inline_max = 1024 * 1024,
        .policy_ref_max = 253,
        .driver_config_max = 64 * 1024,
        .driver_config_depth = 32,
        .ttl_seconds_max = 604800,
        .labels_max = 64,
        .annotations_total_max = 256 * 1024,
        .credentials_max = 32,
        .request_id_max = 128,
    };
}

/* ---- character classes and names ---------------------------------- */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* One dot-free DNS part of any length: [a-z0-9-], alnum at both ends. */
static bool dns_part_ok(const char *s, size_t len)
{
    if (len == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
        return false;
    for (size_t i = 1; i + 1 < len; i++) {
        if (!is_lower_alnum(s[i]) && s[i] != '-')
            return false;
    }
    return true;
}

static bool subdomain_ok(const char *s, size_t len)
{
    size_t start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.')
            continue;
        if (!dns_part_ok(s + start, i - start))
            return false;
        start = i + 1;
    }
    return true;
}

const char *sg_dns1123_label_check(const char *s)
{
    size_t len = strlen(s);

    if (len == 0)
        return "must not be empty";
    if (len > DNS_LABEL_MAX)
        return "must be at most 63 characters";
    if (!dns_part_ok(s, len))
        return "must consist of lower-case letters, digits and '-', and start "
               "and end with a letter or digit";
    return NULL;
}

bool sg_is_dns1123_label(const char *s)
{
    return sg_dns1123_label_check(s) == NULL;
}

const char *sg_dns1123_subdomain_check(const char *s)
{
    size_t len = strlen(s);

    if (len == 0)
        return "must not be empty";
    if (len > DNS_SUBDOMAIN_MAX)
        return "must be at most 253 characters";
    if (!subdomain_ok(s, len))
        return "must be a DNS-1123 subdomain: lower-case letters, digits, '-' "
               "and '.', each part starting and ending with a letter or digit";
    return NULL;
}

bool sg_is_dns1123_subdomain(const char *s)
{
    return sg_dns1123_subdomain_check(s) == NULL;
}

/* [A-Za-z0-9] at both ends, [-_.A-Za-z0-9] inside; length not checked. */
static bool label_name_chars_ok(const char *s, size_t len)
{
    if (len == 0 || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
        return false;
    for (size_t i = 1; i + 1 < len; i++) {
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    }
    return true;
}

static const char *label_name_check(const char *s)
{
    size_t len = strlen(s);

    if (len == 0)
        return "name must not be empty";
    if (len > LABEL_NAME_MAX)
        return "name must be at most 63 characters";
    if (!label_name_chars_ok(s, len))
        return "name must consist of letters, digits, '-', '_' and '.', and "
               "start and end with a letter or digit";
    return NULL;
}

static const char *label_prefix_check(const char *s, size_t len)
{
    if (len == 0)
        return "prefix before '/' must not be empty";
    if (len > DNS_SUBDOMAIN_MAX)
        return "prefix must be at most 253 characters";
    if (!subdomain_ok(s, len))
        return "prefix must be a DNS-1123 subdomain: lower-case letters, "
               "digits, '-' and '.', each part starting and ending with a "
               "letter or digit";
    return NULL;
}

const char *sg_label_key_check(const char *s)
{
    const char *slash = strchr(s, '/');
    const char *why;

    if (slash == NULL)
        return label_name_check(s);
    if (strchr(slash + 1, '/') != NULL)
        return "must contain at most one '/'";
    why = label_prefix_check(s, (size_t)(slash - s));
    if (why != NULL)
        return why;
    return label_name_check(slash + 1);
}

bool sg_is_label_key(const char *s)
{
    return sg_label_key_check(s) == NULL;
}

const char *sg_label_value_check(const char *s)
{
    size_t len = strlen(s);

    if (len == 0)
        return NULL;
    if (len > LABEL_NAME_MAX)
        return "must be at most 63 characters";
    if (!label_name_chars_ok(s, len))
        return "must be empty or consist of letters, digits, '-', '_' and '.', "
               "and start and end with a letter or digit";
    return NULL;
}

bool sg_is_label_value(const char *s)
{
    return sg_label_value_check(s) == NULL;
}

bool sg_is_env_name(const char *s)
{
    if (s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        if (!is_alnum(*p) && *p != '_')
            return false;
    }
    return true;
}

bool sg_is_request_id(const char *s, size_t max_len)
{
    size_t len = strlen(s);

    if (len == 0 || len > max_len)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(s[i]) && strchr("._:-", s[i]) == NULL)
            return false;
    }
    return true;
}

/* Length of the UTF-8 sequence starting at s (len bytes left), 0 if bad. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    size_t n;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4;
    else
        return 0;
    cp = s[0] & (0x7f >> n);
    if (n > len)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

bool sg_is_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n = utf8_seq(p + i, len - i);

        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

void sg_validate_quote(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    size_t i;

    if (size == 0)
        return;
    for (i = 0; s[i] != '\0' && i < QUOTE_SHOWN_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[5] = {(char)c, '\0'};

        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            tmp[2] = '\0';
        } else if (c < 0x20 || c >= 0x7f) {
            tmp[0] = '\\';
            tmp[1] = 'x';
            tmp[2] = hex[c >> 4];
            tmp[3] = hex[c & 0xf];
            tmp[4] = '\0';
        }
        if (o + strlen(tmp) + 1 > size)
            break;
        memcpy(out + o, tmp, strlen(tmp));
        o += strlen(tmp);
    }
    if (s[i] != '\0' && o + 4 <= size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* ---- reporting ----------------------------------------------------- */

static void violation(struct vctx *v, const char *field, const char *fmt, ...)
    SG_PRINTF(3, 4);

static void violation(struct vctx *v, const char *field, const char *fmt, ...)
{
    char text[SG_ERROR_MESSAGE_MAX];
    va_list ap;

    v->n++;
    if (v->n > SG_VALIDATE_MAX_VIOLATIONS) {
        if (v->n == SG_VALIDATE_MAX_VIOLATIONS + 1)
            (void)sg_error_add_violation(
                v->err, "sandbox",
                "too many problems: only the first %d are reported",
                SG_VALIDATE_MAX_VIOLATIONS);
        return;
    }
    va_start(ap, fmt);
    if (vsnprintf(text, sizeof(text), fmt, ap) < 0)
        text[0] = '\0';
    va_end(ap);
    (void)sg_error_add_violation(v->err, field, "%s", text);
}

static void out_of_memory(struct vctx *v)
{
    v->n++;
    sg_error_report(v->err, SG_ERR_NO_MEMORY, "out of memory");
}

/* base["key"] */
static void path_key(char *out, size_t size, const char *base, const char *key)
{
    char quoted[QUOTED_LEN];

    sg_validate_quote(key, quoted, sizeof(quoted));
    snprintf(out, size, "%s[\"%s\"]", base, quoted);
}

/* base[i] or base[i].leaf */
static void path_index(char *out, size_t size, const char *base, size_t i,
                       const char *leaf)
{
    snprintf(out, size, "%s[%zu]%s%s", base, i, leaf[0] ? "." : "", leaf);
}

static const char *str_or_empty(const char *s)
{
    return s != NULL ? s : "";
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One violation per key that occurs more than once; sorts keys. */
static void report_duplicates(struct vctx *v, const char *base,
                              const char **keys, size_t n)
{
    char path[PATH_LEN];

    if (n < 2)
        return;
    qsort(keys, n, sizeof(*keys), compare_strings);
    for (size_t i = 1; i < n; i++) {
        if (STRNEQ(keys[i], keys[i - 1]))
            continue;
        if (i >= 2 && STREQ(keys[i], keys[i - 2]))
            continue;
        path_key(path, sizeof(path), base, keys[i]);
        violation(v, path, "duplicate key");
    }
}

/* ---- sandbox fields ------------------------------------------------ */

static void check_output_only(struct vctx *v, const Sandgate__V1__Sandbox *sb)
{
    static const char assigned[] = "output only: assigned by the server";

    if (str_or_empty(sb->id)[0] != '\0')
        violation(v, "sandbox.id", "%s", assigned);
    if (str_or_empty(sb->owner)[0] != '\0')
        violation(v, "sandbox.owner",
                  "output only: the owner is the authenticated caller");
    if (sb->status != NULL)
        violation(v, "sandbox.status", "%s", assigned);
    if (sb->resource_version != 0)
        violation(v, "sandbox.resource_version", "%s", assigned);
    if (sb->create_time != NULL)
        violation(v, "sandbox.create_time", "%s", assigned);
    if (sb->update_time != NULL)
        violation(v, "sandbox.update_time", "%s", assigned);
    if (sb->delete_time != NULL)
        violation(v, "sandbox.delete_time", "%s", assigned);
}

const char *sg_create_request_id(const Sandgate__V1__CreateSandboxRequest *req)
{
    if (req == NULL)
        return "";
    if (str_or_empty(req->request_id)[0] != '\0')
        return req->request_id;
    if (req->sandbox != NULL)
        return str_or_empty(req->sandbox->request_id);
    return "";
}

static void check_one_request_id(struct vctx *v, const char *field,
                                 const char *id)
{
    size_t max = v->lim->request_id_max;

    if (id[0] == '\0')
        return;
    if (strlen(id) > max)
        violation(v, field, "must be at most %zu characters (got %zu)", max,
                  strlen(id));
    else if (!sg_is_request_id(id, max))
        violation(v, field,
                  "must consist of letters, digits, '.', '_', ':' and '-'");
}

static void check_request_id(struct vctx *v,
                             const Sandgate__V1__CreateSandboxRequest *req)
{
    const char *outer = str_or_empty(req->request_id);
    const char *inner = "";

    if (req->sandbox != NULL)
        inner = str_or_empty(req->sandbox->request_id);
    check_one_request_id(v, "request_id", outer);
    if (outer[0] != '\0' && inner[0] != '\0' && STRNEQ(outer, inner))
        violation(v, "sandbox.request_id",
                  "must equal request_id when both are set");
    else if (outer[0] == '\0')
        check_one_request_id(v, "sandbox.request_id", inner);
}

/* An optional DNS-1123 label field: checked when set. */
static void check_optional_label(struct vctx *v, const char *field,
                                 const char *s)
{
    const char *why;

    if (s == NULL || s[0] == '\0')
        return;
    why = sg_dns1123_label_check(s);
    if (why != NULL)
        violation(v, field, "%s", why);
}

static void check_names(struct vctx *v, const Sandgate__V1__Sandbox *sb)
{
    const char *name = str_or_empty(sb->name);

    if (name[0] == '\0')
        violation(v, "sandbox.name", "required");
    else
        check_optional_label(v, "sandbox.name", name);
    check_optional_label(v, "sandbox.tenant", sb->tenant);
    check_optional_label(v, "sandbox.project", sb->project);
    check_optional_label(v, "sandbox.access_profile", sb->access_profile);
    check_optional_label(v, "sandbox.runtime_profile", sb->runtime_profile);
}

static void check_label_entry(struct vctx *v, const char *key,
                              const char *value)
{
    char path[PATH_LEN];
    const char *why;

    path_key(path, sizeof(path), "sandbox.labels", key);
    why = sg_label_key_check(key);
    if (why != NULL)
        violation(v, path, "invalid key: %s", why);
    why = sg_label_value_check(value);
    if (why != NULL)
        violation(v, path, "invalid value: %s", why);
}

static void check_labels(struct vctx *v, const Sandgate__V1__Sandbox *sb)
{
    const char **keys = calloc(sb->n_labels + 1, sizeof(*keys));

    if (keys == NULL) {
        out_of_memory(v);
        return;
    }
    if (sb->n_labels > v->lim->labels_max)
        violation(v, "sandbox.labels",
                  "must have at most %zu entries (got %zu)", v->lim->labels_max,
                  sb->n_labels);
    for (size_t i = 0; i < sb->n_labels; i++) {
        const Sandgate__V1__Sandbox__LabelsEntry *e = sb->labels[i];

        keys[i] = e != NULL ? str_or_empty(e->key) : "";
        check_label_entry(v, keys[i], e != NULL ? str_or_empty(e->value) : "");
    }
    report_duplicates(v, "sandbox.labels", keys, sb->n_labels);
    free(keys);
}

static void check_annotation_entry(struct vctx *v, const char *key,
                                   const char *value)
{
    char path[PATH_LEN];
    const char *why = sg_label_key_check(key);

    path_key(path, sizeof(path), "sandbox.annotations", key);
    if (why != NULL)
        violation(v, path, "invalid key: %s", why);
    if (!sg_is_utf8(value, strlen(value)))
        violation(v, path, "value must be valid UTF-8");
}

static void check_annotations(struct vctx *v, const Sandgate__V1__Sandbox *sb)
{
    const char **keys = calloc(sb->n_annotations + 1, sizeof(*keys));
    size_t total = 0;

    if (keys == NULL) {
        out_of_memory(v);
        return;
    }
    for (size_t i = 0; i < sb->n_annotations; i++) {
        const Sandgate__V1__Sandbox__AnnotationsEntry *e = sb->annotations[i];
        const char *value = e != NULL ? str_or_empty(e->value) : "";

        keys[i] = e != NULL ? str_or_empty(e->key) : "";
        total += strlen(keys[i]) + strlen(value);
        check_annotation_entry(v, keys[i], value);
    }
    if (total > v->lim->annotations_total_max)
        violation(v, "sandbox.annotations",
                  "keys and values must total at most %zu bytes (got %zu)",
                  v->lim->annotations_total_max, total);
    report_duplicates(v, "sandbox.annotations", keys, sb->n_annotations);
    free(keys);
}

/* ---- spec ---------------------------------------------------------- */

/* A free-text string: at most max bytes, UTF-8, no control characters. */
static void check_text(struct vctx *v, const char *field, const char *s,
                       size_t max, bool allow_control)
{
    size_t len = strlen(s);

    if (len > max) {
        violation(v, field, "must be at most %zu bytes (got %zu)", max, len);
        return;
    }
    if (!sg_is_utf8(s, len)) {
        violation(v, field, "must be valid UTF-8");
        return;
    }
    for (size_t i = 0; i < len && !allow_control; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            violation(v, field, "must not contain control characters");
            return;
        }
    }
}

static void check_command(struct vctx *v, const Sandgate__V1__SandboxSpec *sp)
{
    const struct sg_validate_limits *lim = v->lim;
    char path[PATH_LEN];
    size_t total = 0;

    if (sp->n_command > lim->command_args_max)
        violation(v, "sandbox.spec.command",
                  "must have at most %zu arguments (got %zu)",
                  lim->command_args_max, sp->n_command);
    for (size_t i = 0; i < sp->n_command; i++) {
        const char *arg = str_or_empty(sp->command[i]);

        total += strlen(arg);
        path_index(path, sizeof(path), "sandbox.spec.command", i, "");
        check_text(v, path, arg, lim->command_arg_max, true);
    }
    if (total > lim->command_total_max)
        violation(v, "sandbox.spec.command",
                  "arguments must total at most %zu bytes (got %zu)",
                  lim->command_total_max, total);
}

static void check_env_entry(struct vctx *v, const char *name, const char *value)
{
    char path[PATH_LEN];

    path_key(path, sizeof(path), "sandbox.spec.env", name);
    if (name[0] == '\0')
        violation(v, path, "invalid name: must not be empty");
    else if (strlen(name) > v->lim->env_name_max)
        violation(v, path, "invalid name: must be at most %zu characters",
                  v->lim->env_name_max);
    else if (!sg_is_env_name(name))
        violation(v, path,
                  "invalid name: must consist of letters, digits and '_', and "
                  "not start with a digit");
    if (!sg_is_utf8(value, strlen(value)))
        violation(v, path, "value must be valid UTF-8");
}

static void check_env(struct vctx *v, const Sandgate__V1__SandboxSpec *sp)
{
    const char **keys = calloc(sp->n_env + 1, sizeof(*keys));
    size_t total = 0;

    if (keys == NULL) {
        out_of_memory(v);
        return;
    }
    if (sp->n_env > v->lim->env_max)
        violation(v, "sandbox.spec.env",
                  "must have at most %zu entries (got %zu)", v->lim->env_max,
                  sp->n_env);
    for (size_t i = 0; i < sp->n_env; i++) {
        const Sandgate__V1__SandboxSpec__EnvEntry *e = sp->env[i];
        const char *value = e != NULL ? str_or_empty(e->value) : "";

        keys[i] = e != NULL ? str_or_empty(e->key) : "";
        total += strlen(keys[i]) + strlen(value);
        check_env_entry(v, keys[i], value);
    }
    if (total > v->lim->env_total_max)
        violation(v, "sandbox.spec.env",
                  "names and values must total at most %zu bytes (got %zu)",
                  v->lim->env_total_max, total);
    report_duplicates(v, "sandbox.spec.env", keys, sp->n_env);
    free(keys);
}

/* An absolute path; for a file also no ".." component, no final '/'. */
static void check_abs_path(struct vctx *v, const char *field, const char *s,
                           bool file)
{
    size_t len = strlen(s);

    if (len > v->lim->path_max)
        violation(v, field, "must be at most %zu bytes (got %zu)",
                  v->lim->path_max, len);
    else if (s[0] != '/')
        violation(v, field, "must be an absolute path");
    else if (!sg_is_utf8(s, len))
        violation(v, field, "must be valid UTF-8");
    else if (file && s[len - 1] == '/')
        violation(v, field, "must name a file, not end with '/'");
    else if (file && (strstr(s, "/../") != NULL ||
                      (len >= 3 && STREQ(s + len - 3, "/.."))))
        violation(v, field, "must not contain '..' components");
}

static bool policy_ref_chars_ok(const char *s)
{
    for (; *s != '\0'; s++) {
        if (!is_lower_alnum(*s) && strchr(".-/", *s) == NULL)
            return false;
    }
    return true;
}

static void check_policy(struct vctx *v, const Sandgate__V1__SandboxPolicy *p)
{
    const struct sg_validate_limits *lim = v->lim;
    const char *ref;

    if (p == NULL)
        return;
    switch (p->source_case) {
    case SANDGATE__V1__SANDBOX_POLICY__SOURCE_REF:
        ref = str_or_empty(p->ref);
        if (ref[0] == '\0')
            violation(v, "sandbox.spec.policy.ref", "must not be empty");
        else if (strlen(ref) > lim->policy_ref_max)
            violation(v, "sandbox.spec.policy.ref",
                      "must be at most %zu characters", lim->policy_ref_max);
        else if (!policy_ref_chars_ok(ref))
            violation(
                v, "sandbox.spec.policy.ref",
                "must consist of lower-case letters, digits, '.', '-' and '/'");
        break;
    case SANDGATE__V1__SANDBOX_POLICY__SOURCE_INLINE:
        if (p->inline_.len == 0)
            violation(v, "sandbox.spec.policy.inline", "must not be empty");
        else if (p->inline_.len > lim->policy_inline_max)
            violation(v, "sandbox.spec.policy.inline",
                      "must be at most %zu bytes (got %zu)",
                      lim->policy_inline_max, p->inline_.len);
        break;
    default:
        violation(v, "sandbox.spec.policy", "one of ref or inline is required");
        break;
    }
}

static void check_delivery(struct vctx *v, size_t i,
                           const Sandgate__V1__CredentialBinding *c)
{
    char path[PATH_LEN];

    switch (c->delivery_case) {
    case SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_ENV:
        path_index(path, sizeof(path), "sandbox.spec.credentials", i, "env");
        if (!sg_is_env_name(str_or_empty(c->env)))
            violation(v, path,
                      "must be an environment variable name: letters, digits "
                      "and '_', not starting with a digit");
        else if (strlen(c->env) > v->lim->env_name_max)
            violation(v, path, "must be at most %zu characters",
                      v->lim->env_name_max);
        break;
    case SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_FILE:
        path_index(path, sizeof(path), "sandbox.spec.credentials", i, "file");
        check_abs_path(v, path, str_or_empty(c->file), true);
        break;
    default:
        path_index(path, sizeof(path), "sandbox.spec.credentials", i, "");
        violation(v, path, "a delivery (env or file) is required");
        break;
    }
}

static void check_credential(struct vctx *v, size_t i,
                             const Sandgate__V1__CredentialBinding *c)
{
    char path[PATH_LEN];
    const char *why;

    if (c == NULL) {
        path_index(path, sizeof(path), "sandbox.spec.credentials", i, "");
        violation(v, path, "must be set");
        return;
    }
    path_index(path, sizeof(path), "sandbox.spec.credentials", i, "credential");
    why = sg_dns1123_label_check(str_or_empty(c->credential));
    if (str_or_empty(c->credential)[0] == '\0')
        violation(v, path, "required");
    else if (why != NULL)
        violation(v, path, "%s", why);
    check_delivery(v, i, c);
}

static bool env_in_spec(const Sandgate__V1__SandboxSpec *sp, const char *name)
{
    for (size_t i = 0; i < sp->n_env; i++) {
        if (sp->env[i] != NULL && STREQ(str_or_empty(sp->env[i]->key), name))
            return true;
    }
    return false;
}

/* The delivery target of credential c ("" if none). */
static const char *delivery_target(const Sandgate__V1__CredentialBinding *c)
{
    if (c == NULL)
        return "";
    if (c->delivery_case == SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_ENV)
        return str_or_empty(c->env);
    if (c->delivery_case == SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_FILE)
        return str_or_empty(c->file);
    return "";
}

/* Two credentials may not go to the same place, nor over spec.env. */
static void check_credential_conflicts(struct vctx *v,
                                       const Sandgate__V1__SandboxSpec *sp)
{
    char path[PATH_LEN];

    for (size_t i = 0; i < sp->n_credentials; i++) {
        const Sandgate__V1__CredentialBinding *c = sp->credentials[i];
        const char *target = delivery_target(c);
        bool is_env =
            c != NULL &&
            c->delivery_case == SANDGATE__V1__CREDENTIAL_BINDING__DELIVERY_ENV;

        if (target[0] == '\0')
            continue;
        path_index(path, sizeof(path), "sandbox.spec.credentials", i,
                   is_env ? "env" : "file");
        if (is_env && env_in_spec(sp, target))
            violation(v, path, "conflicts with an entry of sandbox.spec.env");
        for (size_t j = 0; j < i; j++) {
            const Sandgate__V1__CredentialBinding *o = sp->credentials[j];

            if (o != NULL && o->delivery_case == c->delivery_case &&
                STREQ(delivery_target(o), target)) {
                violation(v, path, "same target as credentials[%zu]", j);
                break;
            }
        }
    }
}

static void check_credentials(struct vctx *v,
                              const Sandgate__V1__SandboxSpec *sp)
{
    if (sp->n_credentials > v->lim->credentials_max) {
        violation(v, "sandbox.spec.credentials",
                  "must have at most %zu entries (got %zu)",
                  v->lim->credentials_max, sp->n_credentials);
    }
    for (size_t i = 0; i < sp->n_credentials; i++)
        check_credential(v, i, sp->credentials[i]);
    if (sp->n_credentials <= v->lim->credentials_max)
        check_credential_conflicts(v, sp);
}

/* ---- driver_config ------------------------------------------------- */

static const char *struct_problem(const Google__Protobuf__Struct *s,
                                  size_t depth, size_t max_depth);

/* The first problem of a JSON value (NULL if none). */
static const char *value_problem(const Google__Protobuf__Value *val,
                                 size_t depth, size_t max_depth)
{
    const Google__Protobuf__ListValue *l;

    if (depth > max_depth)
        return "is nested too deeply";
    if (val == NULL)
        return "contains a value with no kind set";
    switch (val->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE:
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
        return NULL;
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
        return isfinite(val->number_value)
                   ? NULL
                   : "contains a number that is not finite (NaN or infinity)";
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
        return sg_is_utf8(str_or_empty(val->string_value),
                          strlen(str_or_empty(val->string_value)))
                   ? NULL
                   : "contains a string that is not valid UTF-8";
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
        return struct_problem(val->struct_value, depth + 1, max_depth);
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
        l = val->list_value;
        for (size_t i = 0; l != NULL && i < l->n_values; i++) {
            const char *why = value_problem(l->values[i], depth + 1, max_depth);
            if (why != NULL)
                return why;
        }
        return NULL;
    default:
        return "contains a value with no kind set";
    }
}

static const char *struct_problem(const Google__Protobuf__Struct *s,
                                  size_t depth, size_t max_depth)
{
    if (depth > max_depth)
        return "is nested too deeply";
    for (size_t i = 0; s != NULL && i < s->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *f = s->fields[i];
        const char *why;

        if (f == NULL)
            return "contains a value with no kind set";
        if (!sg_is_utf8(str_or_empty(f->key), strlen(str_or_empty(f->key))))
            return "contains a key that is not valid UTF-8";
        why = value_problem(f->value, depth, max_depth);
        if (why != NULL)
            return why;
    }
    return NULL;
}

static void check_driver_block(struct vctx *v,
                               const Google__Protobuf__Struct__FieldsEntry *f)
{
    const char *key = f != NULL ? str_or_empty(f->key) : "";
    const char *why = sg_dns1123_label_check(key);
    char path[PATH_LEN];
    char quoted[QUOTED_LEN];

    if (why == NULL)
        snprintf(path, sizeof(path), "sandbox.spec.driver_config.%s", key);
    else
        path_key(path, sizeof(path), "sandbox.spec.driver_config", key);
    sg_validate_quote(key, quoted, sizeof(quoted));
    if (why != NULL)
        violation(v, path, "invalid driver name: %s", why);
    if (f == NULL || f->value == NULL ||
        f->value->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE) {
        violation(v, path, "must be an object (the settings for driver '%s')",
                  quoted);
        return;
    }
    why =
        struct_problem(f->value->struct_value, 1, v->lim->driver_config_depth);
    if (why != NULL)
        violation(v, path, "%s", why);
}

static void check_driver_config(struct vctx *v,
                                const Google__Protobuf__Struct *dc)
{
    const char **keys;
    size_t size;

    if (dc == NULL)
        return;
    size = google__protobuf__struct__get_packed_size(dc);
    if (size > v->lim->driver_config_max)
        violation(v, "sandbox.spec.driver_config",
                  "must be at most %zu bytes packed (got %zu)",
                  v->lim->driver_config_max, size);
    keys = calloc(dc->n_fields + 1, sizeof(*keys));
    if (keys == NULL) {
        out_of_memory(v);
        return;
    }
    for (size_t i = 0; i < dc->n_fields; i++) {
        keys[i] = dc->fields[i] != NULL ? str_or_empty(dc->fields[i]->key) : "";
        check_driver_block(v, dc->fields[i]);
    }
    report_duplicates(v, "sandbox.spec.driver_config", keys, dc->n_fields);
    free(keys);
}

static void check_spec(struct vctx *v, const Sandgate__V1__SandboxSpec *sp)
{
    const struct sg_validate_limits *lim = v->lim;

    if (sp == NULL)
        return;
    check_text(v, "sandbox.spec.image", str_or_empty(sp->image), lim->image_max,
               false);
    check_command(v, sp);
    check_env(v, sp);
    if (str_or_empty(sp->working_dir)[0] != '\0')
        check_abs_path(v, "sandbox.spec.working_dir", sp->working_dir, false);
    check_policy(v, sp->policy);
    check_credentials(v, sp);
    if (sp->ttl_seconds > lim->ttl_seconds_max)
        violation(v, "sandbox.spec.ttl_seconds", "must be at most %u (got %u)",
                  (unsigned)lim->ttl_seconds_max, (unsigned)sp->ttl_seconds);
    check_driver_config(v, sp->driver_config);
}

int sg_validate_create_sandbox(const Sandgate__V1__CreateSandboxRequest *req,
                               const struct sg_validate_limits *lim,
                               struct sg_error *err)
{
    struct sg_validate_limits defaults = sg_validate_limits_default();
    struct vctx v = {.err = err, .lim = lim != NULL ? lim : &defaults};

    if (req == NULL || req->sandbox == NULL) {
        violation(&v, "sandbox", "required");
        if (req != NULL)
            check_request_id(&v, req);
        return -1;
    }
    check_request_id(&v, req);
    check_names(&v, req->sandbox);
    check_output_only(&v, req->sandbox);
    check_labels(&v, req->sandbox);
    check_annotations(&v, req->sandbox);
    check_spec(&v, req->sandbox->spec);
    return v.n == 0 ? 0 : -1;
}
