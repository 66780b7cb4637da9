/*
 * buf.c: a growable byte/string buffer (see buf.h).
 */
#include "internal.h"

#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BUF_MIN_CAP 64

/*
 * Make room for extra more bytes plus the terminating NUL. Returns false
 * (and marks the buffer failed) when the size overflows or memory runs out.
 */
static bool buf_reserve(struct sg_buf *b, size_t extra)
{
    size_t need;
    size_t cap;
    char *data;

    if (b->failed)
        return false;
    if (extra > SIZE_MAX - 1 - b->len)
        goto fail;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return true;

    cap = b->cap < BUF_MIN_CAP ? BUF_MIN_CAP : b->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    data = realloc(b->data, cap);
    if (data == NULL)
        goto fail;
    b->data = data;
    b->cap = cap;
    return true;

 fail:
    b->failed = true;
    return false;
}

void sg_buf_add(struct sg_buf *b, const void *data, size_t len)
{
    if (len == 0 || !buf_reserve(b, len))
        return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void sg_buf_adds(struct sg_buf *b, const char *s)
{
    sg_buf_add(b, s, strlen(s));
}

void sg_buf_addc(struct sg_buf *b, char c)
{
    sg_buf_add(b, &c, 1);
}

void sg_buf_printf(struct sg_buf *b, const char *fmt, ...)
{
    va_list ap;
    size_t room;
    int n;

    /* Try the free space first: most formats fit without a second pass. */
    if (!buf_reserve(b, BUF_MIN_CAP))
        return;
    room = b->cap - b->len;
    va_start(ap, fmt);
    n = vsnprintf(b->data + b->len, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        goto fail;
    if ((size_t)n >= room) {
        if (!buf_reserve(b, (size_t)n))
            goto restore;
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        if (n < 0)
            goto fail;
    }
    b->len += (size_t)n;
    return;

 fail:
    b->failed = true;
 restore:
    /* vsnprintf may have written a partial result over the terminator. */
    b->data[b->len] = '\0';
}

/*
 * Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when the
 * bytes there are not one: overlong forms, surrogates and code points above
 * U+10FFFF are all rejected (RFC 3629).
 */
size_t sg_utf8_sequence_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    size_t len;

    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4;
    else
        return 0;
    if (n < len)
        return 0;

    /* The second byte's range narrows for the lead bytes that would allow
     * overlong forms, surrogates or values beyond U+10FFFF. */
    if (s[0] == 0xE0)
        lo = 0xA0;
    else if (s[0] == 0xED)
        hi = 0x9F;
    else if (s[0] == 0xF0)
        lo = 0x90;
    else if (s[0] == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return len;
}

void sg_buf_add_json_escaped(struct sg_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0; /* bytes before p[i] that need no escaping */
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        char esc[6];
        size_t esc_len = 2;
        size_t seq;

        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            seq = sg_utf8_sequence_len(p + i, len - i);
            if (seq > 0) {
                i += seq;
                continue;
            }
        }

        sg_buf_add(b, p + run, i - run);
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            if (c >= 0x80) {
                /* Not UTF-8: one U+FFFD per offending byte. */
                sg_buf_add(b, "\\ufffd", 6);
                esc_len = 0;
                break;
            }
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xF];
            esc_len = 6;
            break;
        }
        sg_buf_add(b, esc, esc_len);
        i++;
        run = i;
    }
    sg_buf_add(b, p + run, len - run);
}

int sg_buf_error(const struct sg_buf *b)
{
    return b->failed ? -1 : 0;
}

const char *sg_buf_str(const struct sg_buf *b)
{
    return b->data != NULL ? b->data : "";
}

char *sg_buf_steal(struct sg_buf *b)
{
    char *data = NULL;

    if (!b->failed) {
        data = b->data != NULL ? b->data : strdup("");
        b->data = NULL;
    }
    sg_buf_free(b);
    return data;
}

void sg_buf_reset(struct sg_buf *b)
{
    b->len = 0;
    b->failed = false;
    if (b->data != NULL)
        b->data[0] = '\0';
}

void sg_buf_free(struct sg_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = false;
}

void sg_buf_add_timestamp(struct sg_buf *b)
{
    struct timespec now;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &now);
    if (gmtime_r(&now.tv_sec, &tm) == NULL) {
        sg_buf_adds(b, "1970-01-01T00:00:00.000Z");
        return;
    }
    sg_buf_printf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                  tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000L);
}
