/*
 * test_log.c: levels, filters, output formats and escaping of the logger.
 *
 * Output goes to a temporary file through sg_log_set_fd(); JSON lines are
 * checked with a small strict parser below, so an escaping mistake shows
 * up as a line that does not parse.
 */
#include "internal.h"

#include "testutils.h"

#include "log.h"
#include "buf.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

SG_LOG_INIT("test.log");

/* ---- a strict parser for one JSON object of scalars -------------------- */

#define JSON_MAX_FIELDS 16
#define JSON_MAX_TEXT 2048

struct json_field {
    char key[64];
    char type;                 /* 's' string, 'n' number, 'z' null */
    char value[JSON_MAX_TEXT]; /* decoded string or number text */
};

struct json_object {
    struct json_field fields[JSON_MAX_FIELDS];
    size_t n;
};

/* Length of a valid UTF-8 sequence at s, or 0 (RFC 3629, as strict). */
static size_t utf8_len(const unsigned char *s)
{
    size_t len;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
        cp = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        cp = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static void put_utf8(char **out, unsigned cp)
{
    unsigned char *o = (unsigned char *)*out;

    if (cp < 0x80) {
        *o++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *o++ = (unsigned char)(0xC0 | cp >> 6);
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (unsigned char)(0xE0 | cp >> 12);
        *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    *out = (char *)o;
}

/* Parse a string at *p into out (decoded). Returns 0 or -1. */
static int json_string(const char **p, char *out, size_t cap)
{
    const char *s = *p;
    char *o = out;
    char *end = out + cap - 4;

    if (*s++ != '"')
        return -1;
    while (*s != '"') {
        unsigned char c = (unsigned char)*s;

        if (o >= end || c < 0x20)
            return -1;
        if (c == '\\') {
            s++;
            switch (*s) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '/': *o++ = '/'; break;
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            case 'u': {
                unsigned cp = 0;

                for (int i = 1; i <= 4; i++) {
                    char h = s[i];

                    cp <<= 4;
                    if (h >= '0' && h <= '9')
                        cp |= (unsigned)(h - '0');
                    else if (h >= 'a' && h <= 'f')
                        cp |= (unsigned)(h - 'a' + 10);
                    else if (h >= 'A' && h <= 'F')
                        cp |= (unsigned)(h - 'A' + 10);
                    else
                        return -1;
                }
                if (cp >= 0xD800 && cp <= 0xDFFF)
                    return -1; /* the logger never needs pairs */
                put_utf8(&o, cp);
                s += 4;
                break;
            }
            default:
                return -1;
            }
            s++;
        } else {
            size_t n = utf8_len((const unsigned char *)s);

            if (n == 0)
                return -1;
            memcpy(o, s, n);
            o += n;
            s += n;
        }
    }
    *o = '\0';
    *p = s + 1;
    return 0;
}

static int json_number(const char **p, char *out, size_t cap)
{
    const char *s = *p;
    const char *start = s;

    if (*s == '-')
        s++;
    if (*s < '0' || *s > '9')
        return -1;
    while (*s >= '0' && *s <= '9')
        s++;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return -1;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            return -1;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if ((size_t)(s - start) >= cap)
        return -1;
    memcpy(out, start, (size_t)(s - start));
    out[s - start] = '\0';
    *p = s;
    return 0;
}

/* Parse exactly one object followed by "\n" and the end of line. */
static int json_parse_line(const char *line, struct json_object *obj)
{
    const char *p = line;

    obj->n = 0;
    if (*p++ != '{')
        return -1;
    for (;;) {
        struct json_field *f;

        if (obj->n == JSON_MAX_FIELDS)
            return -1;
        f = &obj->fields[obj->n++];
        if (json_string(&p, f->key, sizeof(f->key)) < 0 || *p++ != ':')
            return -1;
        if (*p == '"') {
            f->type = 's';
            if (json_string(&p, f->value, sizeof(f->value)) < 0)
                return -1;
        } else if (STRPREFIX(p, "null")) {
            f->type = 'z';
            f->value[0] = '\0';
            p += 4;
        } else {
            f->type = 'n';
            if (json_number(&p, f->value, sizeof(f->value)) < 0)
                return -1;
        }
        if (*p == '}')
            break;
        if (*p++ != ',')
            return -1;
    }
    return STREQ(p, "}\n") ? 0 : -1;
}

static const struct json_field *json_get(const struct json_object *obj,
                                         const char *key)
{
    for (size_t i = 0; i < obj->n; i++) {
        if (STREQ(obj->fields[i].key, key))
            return &obj->fields[i];
    }
    return NULL;
}

/* ---- capturing output ---------------------------------------------- */

static int capture_fd = -1;

static void capture_start(enum sg_log_format format)
{
    FILE *f = tmpfile();
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_ptr_nonnull(f);
    capture_fd = dup(fileno(f));
    fclose(f);
    ck_assert_int_ge(capture_fd, 0);
    /* O_APPEND: concurrent records land whole, one after another. */
    ck_assert_int_eq(fcntl(capture_fd, F_SETFL, O_APPEND), 0);
    sg_log_set_fd(capture_fd);
    ck_assert_int_eq(sg_log_configure(NULL, NULL, format, &err), 0);
}

/* Everything written so far; the caller frees it. */
static char *capture_read(void)
{
    off_t size = lseek(capture_fd, 0, SEEK_END);
    char *text;

    ck_assert_int_ge(size, 0);
    text = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(pread(capture_fd, text, (size_t)size, 0), size);
    text[size] = '\0';
    return text;
}

static void capture_clear(void)
{
    ck_assert_int_eq(ftruncate(capture_fd, 0), 0);
}

/* The one JSON record written so far, parsed. */
static void capture_one_json(struct json_object *obj)
{
    char *text = capture_read();

    ck_assert_msg(json_parse_line(text, obj) == 0, "not one JSON line: %s",
                  text);
    free(text);
    capture_clear();
}

static void capture_teardown(void)
{
    sg_log_set_fd(-1);
    if (capture_fd >= 0)
        close(capture_fd);
    capture_fd = -1;
}

/* ---- levels and names ---------------------------------------------- */

static const struct {
    const char *name;
    int level; /* -1: rejected */
} level_cases[] = {
    {"trace", SG_LOG_TRACE}, {"debug", SG_LOG_DEBUG}, {"info", SG_LOG_INFO},
    {"warn", SG_LOG_WARN},   {"error", SG_LOG_ERROR}, {"off", SG_LOG_OFF},
    {"INFO", -1},            {"warning", -1},         {"", -1},
    {"info ", -1},
};

START_TEST(test_level_parse)
{
    enum sg_log_level lvl = SG_LOG_OFF;
    int rc = sg_log_level_parse(level_cases[_i].name, &lvl);

    if (level_cases[_i].level < 0) {
        ck_assert_int_eq(rc, -1);
    } else {
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(lvl, level_cases[_i].level);
        ck_assert_str_eq(sg_log_level_name(lvl), level_cases[_i].name);
    }
}
END_TEST

START_TEST(test_format_parse)
{
    enum sg_log_format f;

    ck_assert_int_eq(sg_log_format_parse("auto", &f), 0);
    ck_assert_int_eq(f, SG_LOG_FORMAT_AUTO);
    ck_assert_int_eq(sg_log_format_parse("json", &f), 0);
    ck_assert_int_eq(f, SG_LOG_FORMAT_JSON);
    ck_assert_int_eq(sg_log_format_parse("text", &f), 0);
    ck_assert_int_eq(f, SG_LOG_FORMAT_TEXT);
    ck_assert_int_eq(sg_log_format_parse("xml", &f), -1);
    ck_assert_int_eq(sg_log_level_parse(NULL, &(enum sg_log_level){0}), -1);
    ck_assert_str_eq(sg_log_format_name(SG_LOG_FORMAT_TEXT), "text");
    ck_assert_str_eq(sg_log_format_name((enum sg_log_format)9), "unknown");
    ck_assert_str_eq(sg_log_level_name((enum sg_log_level)9), "unknown");
}
END_TEST

START_TEST(test_default_level)
{
    struct sg_log_category cat = {.name = "x"};

    ck_assert(!sg_log_enabled(&cat, SG_LOG_TRACE));
    ck_assert(!sg_log_enabled(&cat, SG_LOG_DEBUG));
    ck_assert(sg_log_enabled(&cat, SG_LOG_INFO));
    ck_assert(sg_log_enabled(&cat, SG_LOG_ERROR));
    ck_assert(!sg_log_enabled(&cat, SG_LOG_OFF));
}
END_TEST

START_TEST(test_global_level)
{
    struct sg_log_category cat = {.name = "x"};
    struct sg_error err = SG_ERROR_INIT;

    ck_assert(!sg_log_enabled(&cat, SG_LOG_DEBUG));
    ck_assert_int_eq(sg_log_configure("debug", NULL, SG_LOG_FORMAT_AUTO,
                                      &err), 0);
    /* The cached level follows the change. */
    ck_assert(sg_log_enabled(&cat, SG_LOG_DEBUG));
    ck_assert(!sg_log_enabled(&cat, SG_LOG_TRACE));
    ck_assert_int_eq(sg_log_configure("off", NULL, SG_LOG_FORMAT_AUTO, &err),
                     0);
    ck_assert(!sg_log_enabled(&cat, SG_LOG_ERROR));
    /* NULL keeps the level. */
    ck_assert_int_eq(sg_log_configure(NULL, NULL, SG_LOG_FORMAT_AUTO, &err),
                     0);
    ck_assert(!sg_log_enabled(&cat, SG_LOG_ERROR));
}
END_TEST

/* ---- filters ------------------------------------------------------- */

static const struct {
    const char *level;
    const char *filters;
    const char *category;
    enum sg_log_level at;
    bool enabled;
} filter_cases[] = {
    {"info", "server:debug", "server", SG_LOG_DEBUG, true},
    {"info", "server:debug", "server.call", SG_LOG_DEBUG, true},
    {"info", "server:debug", "server.call.x", SG_LOG_DEBUG, true},
    {"info", "server:debug", "serverx", SG_LOG_DEBUG, false},
    {"info", "server:debug", "serve", SG_LOG_DEBUG, false},
    {"info", "server:debug", "other", SG_LOG_DEBUG, false},
    {"info", "server:debug", "other", SG_LOG_INFO, true},
    /* the longest match wins, whatever the order */
    {"info", "server:debug,server.access:off", "server.access",
     SG_LOG_ERROR, false},
    {"info", "server.access:off,server:debug", "server.access",
     SG_LOG_ERROR, false},
    {"info", "server:debug,server.access:off", "server.access.x",
     SG_LOG_ERROR, false},
    {"info", "server:debug,server.access:off", "server.accessx",
     SG_LOG_DEBUG, true},
    {"info", "server:error,server.call:trace", "server.call", SG_LOG_TRACE,
     true},
    {"info", "server:error,server.call:trace", "server.calls", SG_LOG_WARN,
     false},
    {"info", "a:warn,a.b:debug,a.b.c:error", "a.b.c.d", SG_LOG_WARN, false},
    {"info", "a:warn,a.b:debug,a.b.c:error", "a.b.x", SG_LOG_DEBUG, true},
    /* a filter may lower as well as raise */
    {"trace", "noisy:warn", "noisy.x", SG_LOG_INFO, false},
    {"trace", "noisy:warn", "quiet", SG_LOG_TRACE, true},
    /* blanks around items are ignored */
    {"info", " server:debug , db:trace ", "db", SG_LOG_TRACE, true},
    {"info", "", "server", SG_LOG_DEBUG, false},
};

START_TEST(test_filters)
{
    struct sg_log_category cat = {.name = filter_cases[_i].category};
    struct sg_error err = SG_ERROR_INIT;

    /* Computed once before, so the cache must be invalidated. */
    (void)sg_log_enabled(&cat, SG_LOG_INFO);
    ck_assert_int_eq(sg_log_configure(filter_cases[_i].level,
                                      filter_cases[_i].filters,
                                      SG_LOG_FORMAT_AUTO, &err), 0);
    ck_assert_int_eq(sg_log_enabled(&cat, filter_cases[_i].at),
                     filter_cases[_i].enabled);
}
END_TEST

START_TEST(test_filters_replaced)
{
    struct sg_log_category cat = {.name = "server.call"};
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_log_configure(NULL, "server:debug",
                                      SG_LOG_FORMAT_AUTO, &err), 0);
    ck_assert(sg_log_enabled(&cat, SG_LOG_DEBUG));
    /* New filters replace the old ones; "" removes them all. */
    ck_assert_int_eq(sg_log_configure(NULL, "other:trace",
                                      SG_LOG_FORMAT_AUTO, &err), 0);
    ck_assert(!sg_log_enabled(&cat, SG_LOG_DEBUG));
    ck_assert_int_eq(sg_log_configure(NULL, "server:error",
                                      SG_LOG_FORMAT_AUTO, &err), 0);
    ck_assert(!sg_log_enabled(&cat, SG_LOG_WARN));
    ck_assert_int_eq(sg_log_configure(NULL, "", SG_LOG_FORMAT_AUTO, &err),
                     0);
    ck_assert(sg_log_enabled(&cat, SG_LOG_WARN));
    /* NULL keeps them. */
    ck_assert_int_eq(sg_log_configure(NULL, "server:error",
                                      SG_LOG_FORMAT_AUTO, &err), 0);
    ck_assert_int_eq(sg_log_configure("trace", NULL, SG_LOG_FORMAT_AUTO,
                                      &err), 0);
    ck_assert(!sg_log_enabled(&cat, SG_LOG_WARN));
}
END_TEST

static const struct {
    const char *filters;
    const char *message;
} bad_filter_cases[] = {
    {"server", "log filter 'server': expected CATEGORY:LEVEL"},
    {"server:loud", "log filter 'server:loud': unknown level 'loud'"},
    {"server:debugging", "log filter 'server:debugging': unknown level "
                         "'debugging'"},
    {"server:", "log filter 'server:': unknown level ''"},
    {"server:DEBUG", "log filter 'server:DEBUG': unknown level 'DEBUG'"},
    {":debug", "log filter ':debug': invalid category ''"},
    {"a..b:debug", "log filter 'a..b:debug': invalid category 'a..b'"},
    {".a:debug", "log filter '.a:debug': invalid category '.a'"},
    {"a.:debug", "log filter 'a.:debug': invalid category 'a.'"},
    {"ser ver:debug", "log filter 'ser ver:debug': invalid category "
                      "'ser ver'"},
    {"a:b:debug", "log filter 'a:b:debug': unknown level 'b:debug'"},
    {"server:debug,,db:info", "empty log filter in 'server:debug,,db:info'"},
    {"server:debug,", "empty log filter in 'server:debug,'"},
    {",server:debug", "empty log filter in ',server:debug'"},
    {"server:debug, ,db:info", "empty log filter in 'server:debug, ,db:info'"},
    {"server:debug,server:info", "log filter 'server:info': category "
                                 "'server' is given twice"},
};

START_TEST(test_bad_filters)
{
    struct sg_log_category cat = {.name = "server.call"};
    struct sg_log_category other = {.name = "db"};
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_log_configure("info", "server:debug",
                                      SG_LOG_FORMAT_AUTO, &err), 0);
    ck_assert(sg_log_enabled(&cat, SG_LOG_DEBUG));

    ck_assert_int_eq(sg_log_filters_check(bad_filter_cases[_i].filters,
                                          &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message, bad_filter_cases[_i].message);
    sg_error_reset(&err);

    /* Rejected whole: neither the filters nor the level change. */
    ck_assert_int_eq(sg_log_configure("error", bad_filter_cases[_i].filters,
                                      SG_LOG_FORMAT_AUTO, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message, bad_filter_cases[_i].message);
    ck_assert(sg_log_enabled(&cat, SG_LOG_DEBUG));
    ck_assert(sg_log_enabled(&other, SG_LOG_INFO));
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_bad_level_no_change)
{
    struct sg_log_category cat = {.name = "x"};
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_log_configure("loud", "x:trace", SG_LOG_FORMAT_AUTO,
                                      &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message, "unknown log level 'loud'");
    ck_assert(!sg_log_enabled(&cat, SG_LOG_DEBUG));
    sg_error_reset(&err);

    ck_assert_int_eq(sg_log_configure(NULL, NULL, (enum sg_log_format)7,
                                      &err), -1);
    ck_assert_str_eq(err.message, "unknown log format 7");
    sg_error_reset(&err);
}
END_TEST

START_TEST(test_filters_check_ok)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_log_filters_check(NULL, &err), 0);
    ck_assert_int_eq(sg_log_filters_check("", &err), 0);
    ck_assert_int_eq(sg_log_filters_check("a:trace,a.b-c_d.E9:off", &err),
                     0);
    ck_assert(!sg_error_is_set(&err));
}
END_TEST

/* ---- output -------------------------------------------------------- */

static void assert_timestamp(const char *ts)
{
    /* 2026-11-28T10:00:00.123Z */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";

    ck_assert_uint_eq(strlen(ts), strlen(shape));
    for (size_t i = 0; shape[i] != '\0'; i++) {
        if (shape[i] == 'd')
            ck_assert_msg(ts[i] >= '0' && ts[i] <= '9', "bad ts %s", ts);
        else
            ck_assert_msg(ts[i] == shape[i], "bad ts %s", ts);
    }
}

START_TEST(test_json_record)
{
    struct json_object obj;
    struct sg_log_kv kv[] = {
        SG_KV_STR("sandbox", "sb-1"),
        SG_KV_INT("count", -42),
        SG_KV_DBL("ms", 1.5),
        SG_KV_STR("missing", NULL),
        SG_KV_DBL("nan", NAN),
    };

    capture_start(SG_LOG_FORMAT_JSON);
    sg_log_kv(&sg_log_self, SG_LOG_WARN, "created", kv, SG_N_ELEMENTS(kv));
    capture_one_json(&obj);

    ck_assert_uint_eq(obj.n, 9);
    ck_assert_str_eq(obj.fields[0].key, "ts");
    assert_timestamp(obj.fields[0].value);
    ck_assert_str_eq(obj.fields[1].key, "level");
    ck_assert_str_eq(obj.fields[1].value, "warn");
    ck_assert_str_eq(obj.fields[2].key, "cat");
    ck_assert_str_eq(obj.fields[2].value, "test.log");
    ck_assert_str_eq(obj.fields[3].key, "msg");
    ck_assert_str_eq(obj.fields[3].value, "created");
    ck_assert_str_eq(json_get(&obj, "sandbox")->value, "sb-1");
    ck_assert_int_eq(json_get(&obj, "count")->type, 'n');
    ck_assert_str_eq(json_get(&obj, "count")->value, "-42");
    ck_assert_str_eq(json_get(&obj, "ms")->value, "1.5");
    ck_assert_int_eq(json_get(&obj, "missing")->type, 'z');
    ck_assert_int_eq(json_get(&obj, "nan")->type, 'z');
    /* No source location above debug. */
    ck_assert_ptr_null(json_get(&obj, "src"));
    capture_teardown();
}
END_TEST

static const struct {
    const char *raw;
    const char *decoded;
} escape_cases[] = {
    {"say \"hi\"", "say \"hi\""},
    {"two\nlines\r\n", "two\nlines\r\n"},
    {"tab\there", "tab\there"},
    {"ctl\x01\x1b[31m\x7f", "ctl\x01\x1b[31m\x7f"},
    {"back\\slash", "back\\slash"},
    {"caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac"},
    {"bad \xff\xfe utf8", "bad \xef\xbf\xbd\xef\xbf\xbd utf8"},
    {"cut \xe2\x82", "cut \xef\xbf\xbd\xef\xbf\xbd"},
    {"{\"json\":\"inside\"}", "{\"json\":\"inside\"}"},
};

START_TEST(test_json_escaping)
{
    struct json_object obj;
    const char *raw = escape_cases[_i].raw;
    const char *decoded = escape_cases[_i].decoded;
    struct sg_log_kv kv[] = {
        SG_KV_STR("value", raw),
        SG_KV_STR(raw, "as key"),
    };

    capture_start(SG_LOG_FORMAT_JSON);

    /* In the message (printf path), in a value and in a key (kv path). */
    SG_ERROR("%s", raw);
    capture_one_json(&obj);
    ck_assert_str_eq(json_get(&obj, "msg")->value, decoded);

    sg_log_kv(&sg_log_self, SG_LOG_INFO, raw, kv, SG_N_ELEMENTS(kv));
    capture_one_json(&obj);
    ck_assert_str_eq(json_get(&obj, "msg")->value, decoded);
    ck_assert_str_eq(json_get(&obj, "value")->value, decoded);
    ck_assert_ptr_nonnull(json_get(&obj, decoded));
    ck_assert_str_eq(json_get(&obj, decoded)->value, "as key");
    capture_teardown();
}
END_TEST

START_TEST(test_json_category_escaped)
{
    struct sg_log_category odd = {.name = "odd\"cat"};
    struct json_object obj;

    capture_start(SG_LOG_FORMAT_JSON);
    sg_log_kv(&odd, SG_LOG_INFO, "m", NULL, 0);
    capture_one_json(&obj);
    ck_assert_str_eq(json_get(&obj, "cat")->value, "odd\"cat");
    capture_teardown();
}
END_TEST

START_TEST(test_debug_has_source)
{
    struct sg_error err = SG_ERROR_INIT;
    struct json_object obj;
    const char *src;
    char expect[64];
    int line;

    capture_start(SG_LOG_FORMAT_JSON);
    ck_assert_int_eq(sg_log_configure("debug", NULL, SG_LOG_FORMAT_JSON,
                                      &err), 0);
    line = __LINE__ + 1;
    SG_DEBUG("where %d", 1);
    capture_one_json(&obj);
    ck_assert_str_eq(json_get(&obj, "msg")->value, "where 1");
    ck_assert_str_eq(json_get(&obj, "level")->value, "debug");
    src = json_get(&obj, "src")->value;
    snprintf(expect, sizeof(expect), "test_log.c:%d", line);
    ck_assert_msg(strlen(src) > strlen(expect) &&
                  STREQ(src + strlen(src) - strlen(expect), expect),
                  "src is %s", src);
    /* Relative to the source tree, not to the build directory. */
    ck_assert_msg(!STRPREFIX(src, "../"), "src is %s", src);
    capture_teardown();
}
END_TEST

START_TEST(test_disabled_writes_nothing)
{
    char *text;

    capture_start(SG_LOG_FORMAT_JSON);
    SG_DEBUG("not at info");
    SG_TRACE("not at info");
    sg_log_kv(&sg_log_self, SG_LOG_DEBUG, "not at info", NULL, 0);
    sg_log_kv(&sg_log_self, SG_LOG_OFF, "never", NULL, 0);
    text = capture_read();
    ck_assert_str_eq(text, "");
    free(text);
    capture_teardown();
}
END_TEST

START_TEST(test_long_message)
{
    struct json_object obj;
    char *big = malloc(JSON_MAX_TEXT - 100);

    ck_assert_ptr_nonnull(big);
    memset(big, 'm', JSON_MAX_TEXT - 101);
    big[JSON_MAX_TEXT - 101] = '\0';
    capture_start(SG_LOG_FORMAT_JSON);
    SG_INFO("<%s>", big);
    capture_one_json(&obj);
    ck_assert_uint_eq(strlen(json_get(&obj, "msg")->value),
                      strlen(big) + 2);
    free(big);
    capture_teardown();
}
END_TEST

START_TEST(test_errno_preserved)
{
    capture_start(SG_LOG_FORMAT_JSON);
    errno = EACCES;
    SG_INFO("errno %d", 1);
    ck_assert_int_eq(errno, EACCES);
    errno = ENOENT;
    sg_log_kv(&sg_log_self, SG_LOG_INFO, "kv", NULL, 0);
    ck_assert_int_eq(errno, ENOENT);
    capture_teardown();
}
END_TEST

START_TEST(test_text_record)
{
    struct sg_log_kv kv[] = {
        SG_KV_STR("key", "value"),
        SG_KV_INT("n", 5),
        SG_KV_STR("spaced", "a b"),
        SG_KV_STR("quoted", "say \"x\""),
        SG_KV_STR("empty", ""),
        SG_KV_STR("eq", "a=b"),
        SG_KV_STR("none", NULL),
        SG_KV_DBL("ms", 0.25),
    };
    static const char tail[] =
        " INFO  test.log: hello \"q\" back\\slash\\nnext key=value n=5 "
        "spaced=\"a b\" quoted=\"say \\\"x\\\"\" empty=\"\" eq=\"a=b\" "
        "none=null ms=0.25\n";
    char *text;

    capture_start(SG_LOG_FORMAT_TEXT);
    sg_log_kv(&sg_log_self, SG_LOG_INFO, "hello \"q\" back\\slash\nnext",
              kv, SG_N_ELEMENTS(kv));
    text = capture_read();
    ck_assert_uint_eq(strlen(text), 24 + strlen(tail));
    ck_assert_str_eq(text + 24, tail);
    text[24] = '\0';
    assert_timestamp(text);
    free(text);
    capture_teardown();
}
END_TEST

static const struct {
    enum sg_log_level level;
    const char *label;
} text_level_cases[] = {
    {SG_LOG_TRACE, " TRACE test.log: m\n"},
    {SG_LOG_DEBUG, " DEBUG test.log: m\n"},
    {SG_LOG_INFO, " INFO  test.log: m\n"},
    {SG_LOG_WARN, " WARN  test.log: m\n"},
    {SG_LOG_ERROR, " ERROR test.log: m\n"},
};

START_TEST(test_text_levels)
{
    struct sg_error err = SG_ERROR_INIT;
    char *text;

    capture_start(SG_LOG_FORMAT_TEXT);
    ck_assert_int_eq(sg_log_configure("trace", NULL, SG_LOG_FORMAT_TEXT,
                                      &err), 0);
    /* kv records carry no source location, at any level. */
    sg_log_kv(&sg_log_self, text_level_cases[_i].level, "m", NULL, 0);
    text = capture_read();
    ck_assert_str_eq(text + 24, text_level_cases[_i].label);
    free(text);
    capture_teardown();
}
END_TEST

START_TEST(test_auto_format_on_file)
{
    struct json_object obj;

    /* Not a terminal: AUTO means JSON. */
    capture_start(SG_LOG_FORMAT_AUTO);
    SG_INFO("auto");
    capture_one_json(&obj);
    ck_assert_str_eq(json_get(&obj, "msg")->value, "auto");
    capture_teardown();
}
END_TEST

/* ---- concurrency --------------------------------------------------- */

#define THREADS 8
#define RECORDS 500

static void *log_worker(void *arg)
{
    struct sg_log_category cat = {.name = "test.thread"};
    long id = (long)(intptr_t)arg;

    for (int i = 0; i < RECORDS; i++) {
        struct sg_log_kv kv[] = {
            SG_KV_INT("thread", id),
            SG_KV_INT("i", i),
            SG_KV_STR("pad", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
        };

        sg_log_kv(&cat, SG_LOG_WARN, "concurrent\nrecord", kv,
                  SG_N_ELEMENTS(kv));
    }
    return NULL;
}

START_TEST(test_concurrent_records_and_reconfigure)
{
    static const char *const filters[] = {
        "test:debug", "test.thread:trace,x:off", "", "other:error",
    };
    pthread_t threads[THREADS];
    struct sg_error err = SG_ERROR_INIT;
    struct json_object obj;
    char *text;
    char *line;
    char *save = NULL;
    size_t lines = 0;

    capture_start(SG_LOG_FORMAT_JSON);
    for (long t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, log_worker,
                                        (void *)(intptr_t)t), 0);
    /* Reconfigure while they log; none of these silences warn. */
    for (int i = 0; i < 200; i++)
        ck_assert_int_eq(sg_log_configure(i % 2 ? "info" : "debug",
                                          filters[i % 4], SG_LOG_FORMAT_JSON,
                                          &err), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);

    text = capture_read();
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char with_nl[JSON_MAX_TEXT];

        snprintf(with_nl, sizeof(with_nl), "%s\n", line);
        ck_assert_msg(json_parse_line(with_nl, &obj) == 0, "torn: %s", line);
        ck_assert_str_eq(json_get(&obj, "msg")->value, "concurrent\nrecord");
        lines++;
    }
    ck_assert_uint_eq(lines, THREADS * RECORDS);
    free(text);
    capture_teardown();
}
END_TEST

/* ---- the asynchronous writer --------------------------------------- */

/* The msg values of every JSON record written so far, joined by ','. */
static char *capture_msgs(void)
{
    char *text = capture_read();
    struct sg_buf out = SG_BUF_INIT;
    char *save = NULL;
    struct json_object obj;

    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char with_nl[JSON_MAX_TEXT];

        snprintf(with_nl, sizeof(with_nl), "%s\n", line);
        ck_assert_msg(json_parse_line(with_nl, &obj) == 0, "torn: %s", line);
        if (out.len)
            sg_buf_addc(&out, ',');
        sg_buf_adds(&out, json_get(&obj, "msg")->value);
    }
    free(text);
    return sg_buf_steal(&out);
}

START_TEST(test_async_warn_flushes_everything_in_order)
{
    struct sg_log_category cat = {.name = "test.async"};
    struct sg_error err = SG_ERROR_INIT;
    char *msgs;

    capture_start(SG_LOG_FORMAT_JSON);
    ck_assert_int_eq(sg_log_configure("info", "", SG_LOG_FORMAT_JSON, &err),
                     0);
    ck_assert_int_eq(sg_log_async_start(), 0);
    sg_log_kv(&cat, SG_LOG_INFO, "a1", NULL, 0);
    sg_log_kv(&cat, SG_LOG_INFO, "a2", NULL, 0);
    /* A warning is written before sg_log_kv returns, after what was
     * pending: no waiting for the flusher. */
    sg_log_kv(&cat, SG_LOG_WARN, "w", NULL, 0);
    msgs = capture_msgs();
    ck_assert_str_eq(msgs, "a1,a2,w");
    free(msgs);

    sg_log_kv(&cat, SG_LOG_INFO, "b", NULL, 0);
    sg_log_async_stop(); /* writes what is pending */
    msgs = capture_msgs();
    ck_assert_str_eq(msgs, "a1,a2,w,b");
    free(msgs);
    capture_teardown();
}
END_TEST

static void *info_worker(void *arg)
{
    struct sg_log_category cat = {.name = "test.thread"};
    long id = (long)(intptr_t)arg;

    for (int i = 0; i < RECORDS; i++) {
        struct sg_log_kv kv[] = {
            SG_KV_INT("thread", id),
            SG_KV_INT("i", i),
        };

        sg_log_kv(&cat, SG_LOG_INFO, "buffered", kv, SG_N_ELEMENTS(kv));
    }
    return NULL;
}

START_TEST(test_async_concurrent_records_whole_and_complete)
{
    pthread_t threads[THREADS];
    struct sg_error err = SG_ERROR_INIT;
    char *msgs;
    size_t n = 0;

    capture_start(SG_LOG_FORMAT_JSON);
    ck_assert_int_eq(sg_log_configure("info", "", SG_LOG_FORMAT_JSON, &err),
                     0);
    ck_assert_int_eq(sg_log_async_start(), 0);
    for (long t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, info_worker,
                                        (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);
    sg_log_async_stop();

    msgs = capture_msgs(); /* fails on a torn line */
    for (const char *p = msgs; (p = strstr(p, "buffered")) != NULL; p++)
        n++;
    ck_assert_uint_eq(n, THREADS * RECORDS);
    free(msgs);
    capture_teardown();
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *levels = tcase_create("levels");
    TCase *output = tcase_create("output");

    tcase_add_loop_test(levels, test_level_parse, 0,
                        (int)SG_N_ELEMENTS(level_cases));
    tcase_add_test(levels, test_format_parse);
    tcase_add_test(levels, test_default_level);
    tcase_add_test(levels, test_global_level);
    tcase_add_loop_test(levels, test_filters, 0,
                        (int)SG_N_ELEMENTS(filter_cases));
    tcase_add_test(levels, test_filters_replaced);
    tcase_add_loop_test(levels, test_bad_filters, 0,
                        (int)SG_N_ELEMENTS(bad_filter_cases));
    tcase_add_test(levels, test_bad_level_no_change);
    tcase_add_test(levels, test_filters_check_ok);
    suite_add_tcase(s, levels);

    tcase_add_test(output, test_json_record);
    tcase_add_loop_test(output, test_json_escaping, 0,
                        (int)SG_N_ELEMENTS(escape_cases));
    tcase_add_test(output, test_json_category_escaped);
    tcase_add_test(output, test_debug_has_source);
    tcase_add_test(output, test_disabled_writes_nothing);
    tcase_add_test(output, test_long_message);
    tcase_add_test(output, test_errno_preserved);
    tcase_add_test(output, test_text_record);
    tcase_add_loop_test(output, test_text_levels, 0,
                        (int)SG_N_ELEMENTS(text_level_cases));
    tcase_add_test(output, test_auto_format_on_file);
    tcase_add_test(output, test_concurrent_records_and_reconfigure);
    tcase_add_test(output, test_async_warn_flushes_everything_in_order);
    tcase_add_test(output, test_async_concurrent_records_whole_and_complete);
    tcase_set_timeout(output, 60);
    suite_add_tcase(s, output);
    return s;
}

SG_TEST_MAIN(log_suite)
