/*
 * glob.c: the glob matcher of the policy (policy.h): '*' any run of
 * characters, '?' one character, '\' makes the next character literal.
 *
 * Matching is iterative with a single backtrack point (the last '*'), so
 * a pattern like "*a*a*a*b" costs O(pattern x string), never exponential:
 * when the text after the last star fails, moving an earlier star cannot
 * help, because the last star can absorb anything an earlier one would.
 */
#include "internal.h"

#include "policy_priv.h"

#include <stdlib.h>

/* Bytes of the UTF-8 character at s; 1 for a stray or invalid byte. */
static size_t char_len(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = 1;

    if (u[0] < 0xC0)
        return 1;
    while (n < 4 && (u[n] & 0xC0) == 0x80)
        n++;
    return n;
}

bool sg_glob_match(const char *pattern, const char *s)
{
    const char *p = pattern;
    const char *star_p = NULL; /* pattern just after the last '*' */
    const char *star_s = NULL; /* where the text matched by it starts */

    if (pattern == NULL || s == NULL)
        return false;
    for (;;) {
        if (*p == '*') {
            while (*p == '*')
                p++;
            star_p = p;
            star_s = s;
            continue;
        }
        if (*s == '\0')
            break;
        if (*p == '?') {
            p++;
            s += char_len(s);
            continue;
        }
        if (*p != '\0') {
            const char *lit = p;
            size_t plen = 1;

            if (*p == '\\' && p[1] != '\0') {
                lit = p + 1;
                plen = 2;
            }
            if (*lit == *s) {
                p += plen;
                s++;
                continue;
            }
        }
        if (star_p == NULL)
            return false;
        /* Let the last star absorb one more character and retry. */
        star_s += char_len(star_s);
        s = star_s;
        p = star_p;
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

const char *sg_glob_problem(const char *pattern)
{
    for (const char *c = pattern; *c != '\0'; c++) {
        unsigned char u = (unsigned char)*c;

        if (u < 0x20 || u == 0x7f)
            return "contains a control character";
        if (*c == '\\') {
            if (c[1] != '*' && c[1] != '?' && c[1] != '\\')
                return "a backslash must be followed by '*', '?' or '\\'";
            c++;
        }
    }
    return NULL;
}

int sg_glob_compile(struct sg_glob *g, const char *text)
{
    size_t len = strlen(text);
    bool wild = false;
    bool only_stars = len > 0;
    char *lit;
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\\') {
            only_stars = false;
            i++;
            continue;
        }
        if (text[i] == '*' || text[i] == '?')
            wild = true;
        if (text[i] != '*')
            only_stars = false;
    }
    if (only_stars) {
        g->text = strdup(text);
        g->kind = SG_GLOB_ANY;
        return g->text != NULL ? 0 : -1;
    }
    if (wild) {
        g->text = strdup(text);
        g->kind = SG_GLOB_PATTERN;
        return g->text != NULL ? 0 : -1;
    }
    /* A literal: keep it unescaped, so matching is a strcmp. */
    lit = malloc(len + 1);
    if (lit == NULL)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\\' && i + 1 < len)
            i++;
        lit[n++] = text[i];
    }
    lit[n] = '\0';
    g->text = lit;
    g->kind = SG_GLOB_EXACT;
    return 0;
}

void sg_glob_clear(struct sg_glob *g)
{
    free(g->text);
    g->text = NULL;
}

bool sg_glob_matches(const struct sg_glob *g, const char *s)
{
    if (s == NULL)
        s = "";
    if (g->text == NULL)
        return false;
    switch (g->kind) {
    case SG_GLOB_ANY:
        return true;
    case SG_GLOB_EXACT:
        return STREQ(g->text, s);
    default:
        return sg_glob_match(g->text, s);
    }
}

bool sg_glob_list_allows(const struct sg_glob_list *list, const char *value)
{
    if (value == NULL)
        value = "";
    if (!list->set)
        return *value == '\0';
    if (list->any)
        return true;
    for (size_t i = 0; i < list->n; i++) {
        if (sg_glob_matches(&list->items[i], value))
            return true;
    }
    return false;
}
