/*
 * test_audit.c: the audit log (authz/audit.c).
 *
 * Lines are compared byte for byte where the content is known, and parsed
 * with jansson (strict: duplicate keys and invalid UTF-8 are errors) where
 * only their shape is, so an escaping or interleaving mistake shows up as a
 * line that does not parse.
 */
#include "internal.h"

#include "audit.h"
#include "buf.h"
#include "log.h"
#include "testutils.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char tmp_dir[64];
static char log_path[128];

static void setup(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/sg-test-audit-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    snprintf(log_path, sizeof(log_path), "%s/audit.log", tmp_dir);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    nftw(tmp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- helpers ----------------------------------------------------------- */

/* The whole file, NUL-terminated (caller frees), or NULL if it is absent. */
static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    char *text;
    long size;

    if (f == NULL)
        return NULL;
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    ck_assert_int_ge(size, 0);
    rewind(f);
    text = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    if (len_out != NULL)
        *len_out = (size_t)size;
    return text;
}

static void rotated_path(unsigned i, char *buf, size_t size)
{
    if (i == 0)
        snprintf(buf, size, "%s", log_path);
    else
        snprintf(buf, size, "%s.%u", log_path, i);
}

static bool file_exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static struct sg_audit *open_audit(const char *path, uint64_t max_bytes,
                                   unsigned max_files)
{
    struct sg_audit_config cfg = {
        .path = path, .max_bytes = max_bytes, .max_files = max_files,
    };
    struct sg_error err = SG_ERROR_INIT;
    struct sg_audit *a = sg_audit_open(&cfg, &err);

    ck_assert_msg(a != NULL, "sg_audit_open: %s", err.message);
    return a;
}

static void write_numbered(struct sg_audit *a, unsigned i, size_t pad)
{
    char request_id[32];
    char reason[512];
    struct sg_audit_record r = {
        .subject = "user:alice",
        .rpc = "/sandgate.v1.SandboxService/DeleteSandbox",
        .allowed = true,
        .code = "OK",
        .request_id = request_id,
        .reason = reason,
    };

    ck_assert_uint_lt(pad, sizeof(reason));
    snprintf(request_id, sizeof(request_id), "req-%05u", i);
    memset(reason, 'r', pad);
    reason[pad] = '\0';
    ck_assert_int_eq(sg_audit_write(a, &r), 0);
}

/* Parse one line (without its '\n') strictly; fails the test otherwise. */
static json_t *parse_line(const char *line, size_t len)
{
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);

    ck_assert_msg(obj != NULL, "not JSON (%s): %.*s", jerr.text, (int)len,
                  line);
    ck_assert(json_is_object(obj));
    return obj;
}

static const char *get_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    ck_assert_msg(json_is_string(v), "no string \"%s\"", key);
    return json_string_value(v);
}

/* The request number of a line written by write_numbered. */
static unsigned line_number(const char *line, size_t len)
{
    json_t *obj = parse_line(line, len);
    const char *id = get_str(obj, "request_id");
    char *end = NULL;
    unsigned long n;

    ck_assert(STRPREFIX(id, "req-"));
    n = strtoul(id + 4, &end, 10);
    ck_assert(end != NULL && *end == '\0');
    json_decref(obj);
    return (unsigned)n;
}

/* A fresh "time" value formatted as the audit log does. */
static void format_now(char *buf, size_t size)
{
    struct timespec now;
    struct tm tm;

    ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &now), 0);
    ck_assert_ptr_nonnull(gmtime_r(&now.tv_sec, &tm));
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000L);
}

/*
 * The file must hold exactly one line, {"time":"<T>",<rest>: T is an
 * RFC 3339 UTC time with milliseconds between before and after (same
 * format, so they compare as strings), and rest must match exactly.
 */
static void assert_one_line(const char *path, const char *before,
                            const char *after, const char *rest)
{
    static const char head[] = "{\"time\":\"";
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    size_t len;
    char *text = read_file(path, &len);
    char t[32];

    ck_assert_ptr_nonnull(text);
    ck_assert_msg(STRPREFIX(text, head), "line: %s", text);
    ck_assert_uint_gt(len, strlen(head) + strlen(shape) + 1);
    memcpy(t, text + strlen(head), strlen(shape));
    t[strlen(shape)] = '\0';
    for (size_t i = 0; i < strlen(shape); i++) {
        if (shape[i] == 'd')
            ck_assert_msg(t[i] >= '0' && t[i] <= '9', "time %s", t);
        else
            ck_assert_msg(t[i] == shape[i], "time %s", t);
    }
    ck_assert_msg(strcmp(before, t) <= 0 && strcmp(t, after) <= 0,
                  "time %s not in [%s, %s]", t, before, after);
    ck_assert_str_eq(text + strlen(head) + strlen(shape), rest);
    free(text);
}

/* The descriptor this process has open on path, or -1. */
static int find_fd(const char *path)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int found = -1;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        char link[300];
        char target[256];
        ssize_t n;

        if (e->d_name[0] == '.')
            continue;
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
            continue;
        target[n] = '\0';
        if (STREQ(target, path))
            found = (int)strtol(e->d_name, NULL, 10);
    }
    closedir(d);
    return found;
}

/* ---- records ----------------------------------------------------------- */

START_TEST(test_full_record)
{
    struct sg_audit_record r = {
        .subject = "spiffe://example.org/ns/a/sa/b",
        .rpc = "/sandgate.v1.SandboxService/CreateSandbox",
        .target = "sb-0123",
        .tenant = "team-a",
        .namespace_name = "sbx-a",
        .allowed = true,
        .code = "OK",
        .reason = "rule team-a-admin",
        .request_id = "req-1",
        .peer = "ipv4:127.0.0.1:5000",
    };
    char before[128];
    char after[128];
    struct sg_audit *a;
    struct stat st;
    int fd;

    umask(0); /* the mode must come from the open, not from the umask */
    a = open_audit(log_path, 0, 5);
    format_now(before, sizeof(before));
    ck_assert_int_eq(sg_audit_write(a, &r), 0);
    format_now(after, sizeof(after));
    assert_one_line(log_path, before, after,
        "\",\"subject\":\"spiffe://example.org/ns/a/sa/b\","
        "\"rpc\":\"/sandgate.v1.SandboxService/CreateSandbox\","
        "\"target\":\"sb-0123\",\"tenant\":\"team-a\","
        "\"namespace\":\"sbx-a\",\"decision\":\"allow\",\"code\":\"OK\","
        "\"reason\":\"rule team-a-admin\",\"request_id\":\"req-1\","
        "\"peer\":\"ipv4:127.0.0.1:5000\"}\n");

    ck_assert_int_eq(stat(log_path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    fd = find_fd(log_path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    ck_assert_int_ne(fcntl(fd, F_GETFL) & O_APPEND, 0);
    sg_audit_close(a);
    ck_assert_int_eq(find_fd(log_path), -1);
}
END_TEST

START_TEST(test_null_fields)
{
    struct sg_audit_record r = {
        .subject = "",
        .rpc = "/sandgate.v1.SandboxService/GetSandbox",
        .allowed = false,
        .code = "PERMISSION_DENIED",
    };
    struct sg_audit_record bare = {.allowed = false};
    char before[128];
    char after[128];
    struct sg_audit *a = open_audit(log_path, 0, 5);

    format_now(before, sizeof(before));
    ck_assert_int_eq(sg_audit_write(a, &r), 0);
    format_now(after, sizeof(after));
    assert_one_line(log_path, before, after,
        "\",\"subject\":\"\","
        "\"rpc\":\"/sandgate.v1.SandboxService/GetSandbox\","
        "\"decision\":\"deny\",\"code\":\"PERMISSION_DENIED\"}\n");

    /* Every field absent: only the time and the decision remain. */
    ck_assert_int_eq(truncate(log_path, 0), 0);
    sg_audit_close(a);
    a = open_audit(log_path, 0, 5);
    format_now(before, sizeof(before));
    ck_assert_int_eq(sg_audit_write(a, &bare), 0);
    format_now(after, sizeof(after));
    assert_one_line(log_path, before, after, "\",\"decision\":\"deny\"}\n");
    sg_audit_close(a);
}
END_TEST

/* ---- escaping ---------------------------------------------------------- */

static const struct {
    const char *in;
    const char *json;    /* the escaped value as it must appear */
    const char *decoded; /* what a JSON parser must read back */
} escape_cases[] = {
    {"plain", "plain", "plain"},
    {"a\"b\\c", "a\\\"b\\\\c", "a\"b\\c"},
    /* Forged fields stay inside the value. */
    {"x\",\"decision\":\"allow", "x\\\",\\\"decision\\\":\\\"allow",
     "x\",\"decision\":\"allow"},
    /* A newline must not start a forged record. */
    {"a\n{\"time\":\"x\"}", "a\\n{\\\"time\\\":\\\"x\\\"}",
     "a\n{\"time\":\"x\"}"},
    {"\r\t", "\\r\\t", "\r\t"},
    {"\x01\x1f\x7f\x1b[31m", "\\u0001\\u001f\\u007f\\u001b[31m",
     "\x01\x1f\x7f\x1b[31m"},
    /* Valid UTF-8 passes through. */
    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
    /* Invalid bytes: one U+FFFD each. */
    {"a\xff" "b", "a\\ufffdb", "a\xef\xbf\xbd" "b"},
    {"\xc3(", "\\ufffd(", "\xef\xbf\xbd("},                 /* truncated */
    {"\xc0\xaf", "\\ufffd\\ufffd", "\xef\xbf\xbd\xef\xbf\xbd"}, /* overlong */
    {"\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd",                /* surrogate */
     "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xf4\x90\x80\x80x", "\\ufffd\\ufffd\\ufffd\\ufffdx",   /* > U+10FFFF */
     "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx"},
    {"\xe2\x82", "\\ufffd\\ufffd", "\xef\xbf\xbd\xef\xbf\xbd"}, /* at end */
};

START_TEST(test_escaping)
{
    const char *in = escape_cases[_i].in;
    /* Hostile text in every string field at once. */
    struct sg_audit_record r = {
        .subject = in, .rpc = in, .target = in, .tenant = in,
        .namespace_name = in, .allowed = false, .code = in, .reason = in,
        .request_id = in, .peer = in,
    };
    static const char *const keys[] = {
        "subject", "rpc", "target", "tenant", "namespace", "code", "reason",
        "request_id", "peer",
    };
    struct sg_audit *a = open_audit(log_path, 0, 5);
    char expect[256];
    size_t len;
    char *text;
    char *nl;
    json_t *obj;

    ck_assert_int_eq(sg_audit_write(a, &r), 0);
    sg_audit_close(a);
    text = read_file(log_path, &len);
    ck_assert_ptr_nonnull(text);

    /* One line: the only newline is the terminator. */
    nl = strchr(text, '\n');
    ck_assert_ptr_nonnull(nl);
    ck_assert_uint_eq((size_t)(nl - text), len - 1);
    snprintf(expect, sizeof(expect), ",\"subject\":\"%s\",\"rpc\":\"%s\",",
             escape_cases[_i].json, escape_cases[_i].json);
    ck_assert_msg(strstr(text, expect) != NULL, "%s not in %s", expect, text);

    obj = parse_line(text, len - 1);
    ck_assert_uint_eq(json_object_size(obj), SG_N_ELEMENTS(keys) + 2);
    ck_assert_str_eq(get_str(obj, "decision"), "deny");
    for (size_t k = 0; k < SG_N_ELEMENTS(keys); k++)
        ck_assert_str_eq(get_str(obj, keys[k]), escape_cases[_i].decoded);
    json_decref(obj);
    free(text);
}
END_TEST

/* ---- truncation -------------------------------------------------------- */

/* The "reason" of the one record written with that value, decoded. */
static char *write_reason(const char *reason)
{
    struct sg_audit_record r = {.rpc = "/x", .reason = reason};
    struct sg_audit *a = open_audit(log_path, 0, 5);
    size_t len;
    char *text;
    json_t *obj;
    char *out;

    ck_assert_int_eq(truncate(log_path, 0), 0);
    ck_assert_int_eq(sg_audit_write(a, &r), 0);
    sg_audit_close(a);
    text = read_file(log_path, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_gt(len, 0);
    ck_assert_int_eq(text[len - 1], '\n');
    obj = parse_line(text, len - 1);
    out = strdup(get_str(obj, "reason"));
    ck_assert_ptr_nonnull(out);
    json_decref(obj);
    free(text);
    return out;
}

static const struct {
    size_t ascii;      /* 'a' bytes first */
    const char *tail;  /* then this, then 'z' up to total */
    size_t total;
    size_t kept;       /* bytes of the value kept before "..." (0: all) */
} cut_cases[] = {
    {1024, "", 1024, 0},         /* exactly the bound: untouched */
    {1025, "", 1025, 1021},      /* one more: cut to 1021 + "..." */
    {5000, "", 5000, 1021},
    /* A sequence that would straddle the cut is dropped whole. */
    {1020, "\xc3\xa9", 1100, 1020},          /* 2 bytes at 1020..1021 */
    {1019, "\xe2\x82\xac", 1100, 1019},      /* 3 bytes at 1019..1021 */
    {1018, "\xf0\x9f\x98\x80", 1100, 1018},  /* 4 bytes at 1018..1021 */
    /* One that ends exactly at the cut is kept. */
    {1017, "\xf0\x9f\x98\x80", 1100, 1021},
    /* An invalid byte is one character: kept if it fits. */
    {1020, "\xff\xff", 1100, 1021},
};

START_TEST(test_truncation)
{
    size_t total = cut_cases[_i].total;
    size_t ascii = cut_cases[_i].ascii;
    size_t tail = strlen(cut_cases[_i].tail);
    char *in = malloc(total + 1);
    char *out;
    size_t kept = cut_cases[_i].kept;

    ck_assert_ptr_nonnull(in);
    memset(in, 'a', ascii);
    memcpy(in + ascii, cut_cases[_i].tail, tail);
    memset(in + ascii + tail, 'z', total - ascii - tail);
    in[total] = '\0';

    out = write_reason(in);
    if (kept == 0) {
        ck_assert_str_eq(out, in);
    } else {
        /* The first kept bytes as a JSON reader sees them (an invalid
           byte reads back as U+FFFD), then "...". */
        struct sg_buf b = SG_BUF_INIT;
        json_t *s;

        sg_buf_addc(&b, '"');
        sg_buf_add_json_escaped(&b, in, kept);
        sg_buf_adds(&b, "...\"");
        ck_assert_int_eq(sg_buf_error(&b), 0);
        s = json_loads(sg_buf_str(&b), JSON_DECODE_ANY, NULL);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(out, json_string_value(s));
        json_decref(s);
        sg_buf_free(&b);
        ck_assert(STRPREFIX(out, "aaaa"));
        ck_assert(STREQ(out + strlen(out) - 3, "..."));
    }
    free(out);
    free(in);
}
END_TEST

START_TEST(test_every_field_bounded)
{
    char *big = malloc(100001);
    struct sg_audit_record r = {
        .subject = big, .rpc = big, .target = big, .tenant = big,
        .namespace_name = big, .allowed = true, .code = big, .reason = big,
        .request_id = big, .peer = big,
    };
    struct sg_audit *a = open_audit(log_path, 0, 5);
    json_t *obj;
    const char *key;
    json_t *v;
    size_t len;
    char *text;

    ck_assert_ptr_nonnull(big);
    memset(big, 'q', 100000);
    big[100000] = '\0';
    ck_assert_int_eq(sg_audit_write(a, &r), 0);
    sg_audit_close(a);
    text = read_file(log_path, &len);
    ck_assert_ptr_nonnull(text);
    /* 9 fields of 1024 bytes plus names and the time. */
    ck_assert_uint_lt(len, 9 * 1024 + 256);
    obj = parse_line(text, len - 1);
    json_object_foreach(obj, key, v) {
        if (STREQ(key, "time") || STREQ(key, "decision"))
            continue;
        ck_assert_uint_eq(strlen(json_string_value(v)), 1024);
    }
    json_decref(obj);
    free(text);
    free(big);
}
END_TEST

/* ---- rotation ---------------------------------------------------------- */

struct rotated_files {
    unsigned n;                /* files found: FILE and FILE.1..FILE.n-1 */
    unsigned *first;           /* per file, oldest first: first line number */
    size_t *first_len;         /* ... and that line's length */
    size_t *size;
    unsigned *numbers;         /* every line, oldest first */
    size_t n_numbers;
};

/*
 * Read FILE.k ... FILE.1, FILE (oldest first), checking that every file
 * holds whole lines only and that every line parses.
 */
static void read_rotated(unsigned max_files, struct rotated_files *out)
{
    char path[192];
    unsigned k = 0;

    memset(out, 0, sizeof(*out));
    for (;;) {
        rotated_path(k + 1, path, sizeof(path));
        if (!file_exists(path))
            break;
        k++;
    }
    ck_assert_uint_le(k, max_files);
    out->n = k + 1;
    out->first = calloc(out->n, sizeof(*out->first));
    out->first_len = calloc(out->n, sizeof(*out->first_len));
    out->size = calloc(out->n, sizeof(*out->size));
    ck_assert(out->first && out->first_len && out->size);
    for (unsigned f = 0; f < out->n; f++) {
        size_t len;
        char *text;
        const char *p;

        rotated_path(k - f, path, sizeof(path));
        text = read_file(path, &len);
        ck_assert_msg(text != NULL, "%s missing", path);
        out->size[f] = len;
        ck_assert_msg(len > 0 && text[len - 1] == '\n',
                      "%s does not end with a whole line", path);
        p = text;
        while (p < text + len) {
            const char *nl = strchr(p, '\n');
            unsigned num = line_number(p, (size_t)(nl - p));

            if (p == text) {
                out->first[f] = num;
                out->first_len[f] = (size_t)(nl - p) + 1;
            }
            out->numbers = realloc(out->numbers, (out->n_numbers + 1) *
                                   sizeof(*out->numbers));
            ck_assert_ptr_nonnull(out->numbers);
            out->numbers[out->n_numbers++] = num;
            p = nl + 1;
        }
        free(text);
    }
}

static void free_rotated(struct rotated_files *r)
{
    free(r->first);
    free(r->first_len);
    free(r->size);
    free(r->numbers);
}

START_TEST(test_rotation_keeps_every_line)
{
    const uint64_t max = 1000;
    const unsigned n = 400;
    struct sg_audit *a = open_audit(log_path, max, 1000);
    struct rotated_files rf;
    char path[192];

    /* Lines of about 130 to 330 bytes, lengths varying. */
    for (unsigned i = 0; i < n; i++)
        write_numbered(a, i, (i * 37) % 200);
    sg_audit_close(a);

    read_rotated(1000, &rf);
    ck_assert_uint_ge(rf.n, 40); /* > 50 KB in 1000-byte files */
    /* Every line once, in order, none lost or doubled. */
    ck_assert_uint_eq(rf.n_numbers, n);
    for (unsigned i = 0; i < n; i++)
        ck_assert_uint_eq(rf.numbers[i], i);
    for (unsigned f = 0; f < rf.n; f++) {
        /* Each file within the bound ... */
        ck_assert_uint_le(rf.size[f], max);
        /* ... and rotated only when the next line would not fit. */
        if (f + 1 < rf.n)
            ck_assert_uint_gt(rf.size[f] + rf.first_len[f + 1], max);
    }
    rotated_path(rf.n, path, sizeof(path));
    ck_assert(!file_exists(path));
    free_rotated(&rf);
}
END_TEST

START_TEST(test_rotation_drops_oldest)
{
    const unsigned n = 200;
    struct sg_audit *a = open_audit(log_path, 600, 3);
    struct rotated_files rf;
    char path[192];

    for (unsigned i = 0; i < n; i++)
        write_numbered(a, i, i % 50);
    sg_audit_close(a);

    read_rotated(3, &rf);
    ck_assert_uint_eq(rf.n, 4); /* FILE + 3 rotated */
    rotated_path(4, path, sizeof(path));
    ck_assert(!file_exists(path));
    /* What is left is the newest lines, contiguous, ending at the last. */
    ck_assert_uint_gt(rf.n_numbers, 4);
    ck_assert_uint_lt(rf.n_numbers, n);
    for (size_t i = 0; i < rf.n_numbers; i++)
        ck_assert_uint_eq(rf.numbers[i], n - rf.n_numbers + i);
    for (unsigned f = 0; f < rf.n; f++) {
        ck_assert_uint_le(rf.size[f], 600);
        if (f + 1 < rf.n)
            ck_assert_uint_gt(rf.size[f] + rf.first_len[f + 1], 600);
    }
    free_rotated(&rf);
}
END_TEST

START_TEST(test_rotation_without_kept_files)
{
    struct sg_audit *a = open_audit(log_path, 600, 0);
    struct rotated_files rf;
    char path[192];

    for (unsigned i = 0; i < 50; i++)
        write_numbered(a, i, 10);
    sg_audit_close(a);
    rotated_path(1, path, sizeof(path));
    ck_assert(!file_exists(path));
    read_rotated(0, &rf);
    ck_assert_uint_eq(rf.n, 1);
    ck_assert_uint_gt(rf.n_numbers, 1);
    ck_assert_uint_eq(rf.numbers[rf.n_numbers - 1], 49);
    ck_assert_uint_le(rf.size[0], 600);
    free_rotated(&rf);
}
END_TEST

/* A line longer than max_bytes still goes out whole, in a file of its own. */
START_TEST(test_rotation_line_over_limit)
{
    struct sg_audit *a = open_audit(log_path, 100, 10);
    struct rotated_files rf;

    for (unsigned i = 0; i < 5; i++)
        write_numbered(a, i, 150);
    sg_audit_close(a);
    read_rotated(10, &rf);
    ck_assert_uint_eq(rf.n, 5);
    ck_assert_uint_eq(rf.n_numbers, 5);
    for (unsigned f = 0; f < rf.n; f++) {
        ck_assert_uint_eq(rf.first[f], f);
        ck_assert_uint_eq(rf.size[f], rf.first_len[f]);
    }
    free_rotated(&rf);
}
END_TEST

/* The size of a file that already exists counts from the start. */
START_TEST(test_rotation_counts_existing_content)
{
    static const char old[] = "{\"old\":true}\n";
    struct sg_audit *a;
    size_t len;
    char *text;
    char path[192];
    FILE *f = fopen(log_path, "w");

    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 40; i++)
        fputs(old, f); /* 520 bytes */
    fclose(f);
    a = open_audit(log_path, 600, 2);
    write_numbered(a, 0, 10); /* about 140 bytes: would pass 600 */
    sg_audit_close(a);

    rotated_path(1, path, sizeof(path));
    text = read_file(path, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(len, 40 * strlen(old));
    free(text);
    text = read_file(log_path, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(text[len - 1], '\n');
    ck_assert_ptr_eq(strchr(text, '\n'), text + len - 1);
    ck_assert_uint_eq(line_number(text, len - 1), 0);
    free(text);
    rotated_path(2, path, sizeof(path));
    ck_assert(!file_exists(path));
}
END_TEST

/* ---- errors ------------------------------------------------------------ */

static int capture_fd = -1;

static void capture_start(void)
{
    struct sg_error err = SG_ERROR_INIT;
    char path[192];

    snprintf(path, sizeof(path), "%s/log.capture", tmp_dir);
    capture_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ck_assert_int_ge(capture_fd, 0);
    sg_log_set_fd(capture_fd);
    ck_assert_int_eq(sg_log_configure("info", "", SG_LOG_FORMAT_JSON, &err),
                     0);
}

/* Lines logged so far that contain needle. */
static unsigned capture_count(const char *needle)
{
    char path[192];
    char *text;
    unsigned n = 0;

    snprintf(path, sizeof(path), "%s/log.capture", tmp_dir);
    text = read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    for (char *p = strstr(text, needle); p != NULL;
         p = strstr(p + 1, needle))
        n++;
    free(text);
    return n;
}

static void capture_stop(void)
{
    sg_log_set_fd(-1);
    close(capture_fd);
    capture_fd = -1;
}

START_TEST(test_write_error_logged_once)
{
    struct sg_audit_record r = {
        .subject = "user:carol", .rpc = "/x", .reason = "do-not-log-me",
    };
    struct sg_audit *a;

    capture_start();
    /* Every write to /dev/full fails with ENOSPC. */
    a = open_audit("/dev/full", 0, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(sg_audit_write(a, &r), -1);
    sg_audit_close(a);
    ck_assert_uint_eq(capture_count("audit log '/dev/full': write failed"),
                      1);
    ck_assert_uint_eq(capture_count("\"level\""), 1);
    ck_assert_uint_eq(capture_count("do-not-log-me"), 0);
    capture_stop();
}
END_TEST

/*
 * FILE.1 is a non-empty directory, so the rotation cannot rename FILE onto
 * it: the records still go to FILE (none lost), the failure is logged once
 * and not retried on every write.
 */
START_TEST(test_rotation_failure_keeps_records)
{
    struct sg_audit *a;
    struct rotated_files rf;
    char path[192];
    char inner[256];
    int fd;

    rotated_path(1, path, sizeof(path));
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(inner, sizeof(inner), "%s/keep", path);
    fd = open(inner, O_WRONLY | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);

    capture_start();
    a = open_audit(log_path, 300, 1);
    for (unsigned i = 0; i < 20; i++)
        write_numbered(a, i, 20);
    sg_audit_close(a);
    ck_assert_uint_eq(capture_count("rotation failed"), 1);
    capture_stop();

    ck_assert_int_eq(rmdir(path) < 0 ? errno : 0, ENOTEMPTY);
    ck_assert_int_eq(unlink(inner), 0);
    ck_assert_int_eq(rmdir(path), 0);
    read_rotated(0, &rf);
    ck_assert_uint_eq(rf.n_numbers, 20);
    for (unsigned i = 0; i < 20; i++)
        ck_assert_uint_eq(rf.numbers[i], i);
    ck_assert_uint_gt(rf.size[0], 300);
    free_rotated(&rf);
}
END_TEST

START_TEST(test_open_failure)
{
    struct sg_audit_config cfg = {
        .path = "/nonexistent-sg-dir/sub/audit.log", .max_bytes = 0,
        .max_files = 5,
    };
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_ptr_null(sg_audit_open(&cfg, &err));
    ck_assert_int_eq(err.code, SG_ERR_IO);
    ck_assert_msg(strstr(err.message, cfg.path) != NULL, "%s", err.message);
}
END_TEST

/* ---- concurrency ------------------------------------------------------- */

#define N_THREADS 8
#define N_PER_THREAD 400

struct writer {
    struct sg_audit *a;
    unsigned id;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    char subject[32];
    char request_id[32];
    char reason[300];
    struct sg_audit_record r = {
        .subject = subject, .rpc = "/sandgate.v1.SandboxService/GetSandbox",
        .allowed = true, .code = "OK", .request_id = request_id,
        .reason = reason,
    };

    snprintf(subject, sizeof(subject), "thread-%u", w->id);
    for (unsigned i = 0; i < N_PER_THREAD; i++) {
        size_t pad = (i * 31 + w->id * 7) % 250;

        snprintf(request_id, sizeof(request_id), "req-%05u", i);
        memset(reason, 'a' + (char)w->id, pad);
        reason[pad] = '\0';
        if (sg_audit_write(w->a, &r) != 0)
            return (void *)1;
    }
    return NULL;
}

START_TEST(test_concurrent_writers)
{
    /* Rotation on too, so that it runs while others wait to write. */
    struct sg_audit *a = open_audit(log_path, 16 * 1024, 1000);
    struct writer w[N_THREADS];
    pthread_t th[N_THREADS];
    unsigned next[N_THREADS] = {0};
    unsigned total = 0;
    char path[192];
    unsigned k = 0;

    for (unsigned t = 0; t < N_THREADS; t++) {
        w[t].a = a;
        w[t].id = t;
        ck_assert_int_eq(pthread_create(&th[t], NULL, writer_main, &w[t]), 0);
    }
    for (unsigned t = 0; t < N_THREADS; t++) {
        void *res;

        ck_assert_int_eq(pthread_join(th[t], &res), 0);
        ck_assert_ptr_null(res);
    }
    sg_audit_close(a);

    for (;;) {
        rotated_path(k + 1, path, sizeof(path));
        if (!file_exists(path))
            break;
        k++;
    }
    ck_assert_uint_gt(k, 2);
    /* Oldest file first; per thread the numbers must run 0, 1, 2, ... */
    for (unsigned f = 0; f <= k; f++) {
        size_t len;
        char *text;
        const char *p;

        rotated_path(k - f, path, sizeof(path));
        text = read_file(path, &len);
        ck_assert_ptr_nonnull(text);
        ck_assert_int_eq(text[len - 1], '\n');
        ck_assert_uint_le(len, 16 * 1024);
        for (p = text; p < text + len;) {
            const char *nl = strchr(p, '\n');
            json_t *obj = parse_line(p, (size_t)(nl - p));
            const char *subject = get_str(obj, "subject");
            const char *reason = get_str(obj, "reason");
            unsigned t;

            ck_assert(STRPREFIX(subject, "thread-"));
            t = (unsigned)strtoul(subject + 7, NULL, 10);
            ck_assert_uint_lt(t, N_THREADS);
            ck_assert_uint_eq(line_number(p, (size_t)(nl - p)), next[t]);
            /* The padding belongs to the same thread: not interleaved. */
            for (const char *c = reason; *c != '\0'; c++)
                ck_assert_int_eq(*c, 'a' + (char)t);
            json_decref(obj);
            next[t]++;
            total++;
            p = nl + 1;
        }
        free(text);
    }
    for (unsigned t = 0; t < N_THREADS; t++)
        ck_assert_uint_eq(next[t], N_PER_THREAD);
    ck_assert_uint_eq(total, N_THREADS * N_PER_THREAD);
}
END_TEST

/* ---- reopen and the other destinations -------------------------------- */

START_TEST(test_reopen_after_rename)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_audit *a = open_audit(log_path, 0, 5);
    struct rotated_files rf;
    char moved[192];
    char *text;

    snprintf(moved, sizeof(moved), "%s/moved.log", tmp_dir);
    write_numbered(a, 0, 0);
    ck_assert_int_eq(rename(log_path, moved), 0);
    /* Until the reopen the old file (now moved) receives the records. */
    write_numbered(a, 1, 0);
    ck_assert(!file_exists(log_path));
    ck_assert_int_eq(sg_audit_reopen(a, &err), 0);
    ck_assert(file_exists(log_path));
    write_numbered(a, 2, 0);

    read_rotated(0, &rf);
    ck_assert_uint_eq(rf.n_numbers, 1);
    ck_assert_uint_eq(rf.numbers[0], 2);
    free_rotated(&rf);
    text = read_file(moved, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "\"request_id\":\"req-00000\""));
    ck_assert_ptr_nonnull(strstr(text, "\"request_id\":\"req-00001\""));
    ck_assert_ptr_null(strstr(text, "\"request_id\":\"req-00002\""));
    free(text);

    /* A reopen that fails keeps the current file. */
    ck_assert_int_eq(rename(log_path, moved), 0);
    ck_assert_int_eq(mkdir(log_path, 0700), 0);
    ck_assert_int_eq(sg_audit_reopen(a, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.message, log_path));
    write_numbered(a, 3, 0);
    text = read_file(moved, NULL);
    ck_assert_ptr_nonnull(strstr(text, "\"request_id\":\"req-00003\""));
    free(text);
    sg_audit_close(a);
    ck_assert_int_eq(rmdir(log_path), 0);
}
END_TEST

START_TEST(test_stdout)
{
    struct sg_error err = SG_ERROR_INIT;
    char out_path[192];
    struct sg_audit *a;
    DIR *d;
    struct dirent *e;
    unsigned n_files = 0;
    unsigned n_lines = 0;
    char *text;
    int fd;

    /* stdout goes to a file of the temporary directory for this test. */
    snprintf(out_path, sizeof(out_path), "%s/stdout", tmp_dir);
    fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dup2(fd, STDOUT_FILENO), STDOUT_FILENO);
    close(fd);
    ck_assert_int_eq(chdir(tmp_dir), 0);

    a = open_audit("-", 100, 2); /* would rotate at every line */
    for (unsigned i = 0; i < 10; i++)
        write_numbered(a, i, 50);
    ck_assert_int_eq(sg_audit_reopen(a, &err), 0);
    write_numbered(a, 10, 0);
    sg_audit_close(a);
    /* stdout is borrowed, not closed. */
    ck_assert_int_ne(fcntl(STDOUT_FILENO, F_GETFD), -1);

    text = read_file(out_path, NULL);
    ck_assert_ptr_nonnull(text);
    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');

        ck_assert_ptr_nonnull(nl);
        ck_assert_uint_eq(line_number(p, (size_t)(nl - p)), n_lines);
        n_lines++;
        p = nl + 1;
    }
    ck_assert_uint_eq(n_lines, 11);
    free(text);

    /* Nothing was created or renamed: the directory holds only stdout. */
    d = opendir(tmp_dir);
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        if (STREQ(e->d_name, ".") || STREQ(e->d_name, ".."))
            continue;
        ck_assert_str_eq(e->d_name, "stdout");
        n_files++;
    }
    closedir(d);
    ck_assert_uint_eq(n_files, 1);
}
END_TEST

START_TEST(test_off)
{
    struct sg_audit_config cfg = {.path = NULL, .max_bytes = 1};
    struct sg_audit_record r = {.rpc = "/x", .allowed = true};
    struct sg_error err = SG_ERROR_INIT;
    struct sg_audit *a;
    struct sg_audit *b;
    DIR *d;
    struct dirent *e;

    ck_assert_int_eq(chdir(tmp_dir), 0);
    a = sg_audit_open(&cfg, &err);
    ck_assert_ptr_nonnull(a);
    b = sg_audit_open(NULL, &err);
    ck_assert_ptr_nonnull(b);
    ck_assert(!sg_error_is_set(&err));
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(sg_audit_write(a, &r), 0);
        ck_assert_int_eq(sg_audit_write(b, &r), 0);
    }
    ck_assert_int_eq(sg_audit_reopen(a, &err), 0);
    ck_assert_int_eq(sg_audit_write(NULL, &r), 0);
    ck_assert_int_eq(sg_audit_reopen(NULL, &err), 0);
    sg_audit_close(a);
    sg_audit_close(b);
    sg_audit_close(NULL);

    d = opendir(tmp_dir);
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        ck_assert_msg(STREQ(e->d_name, ".") || STREQ(e->d_name, ".."),
                      "unexpected file %s", e->d_name);
    closedir(d);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("audit");
    TCase *tc = tcase_create("audit");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_full_record);
    tcase_add_test(tc, test_null_fields);
    tcase_add_loop_test(tc, test_escaping, 0, SG_N_ELEMENTS(escape_cases));
    tcase_add_loop_test(tc, test_truncation, 0, SG_N_ELEMENTS(cut_cases));
    tcase_add_test(tc, test_every_field_bounded);
    tcase_add_test(tc, test_rotation_keeps_every_line);
    tcase_add_test(tc, test_rotation_drops_oldest);
    tcase_add_test(tc, test_rotation_without_kept_files);
    tcase_add_test(tc, test_rotation_line_over_limit);
    tcase_add_test(tc, test_rotation_counts_existing_content);
    tcase_add_test(tc, test_write_error_logged_once);
    tcase_add_test(tc, test_rotation_failure_keeps_records);
    tcase_add_test(tc, test_open_failure);
    tcase_add_test(tc, test_concurrent_writers);
    tcase_add_test(tc, test_reopen_after_rename);
    tcase_add_test(tc, test_stdout);
    tcase_add_test(tc, test_off);
    suite_add_tcase(s, tc);
    return s;
}

SG_TEST_MAIN(make_suite)
