/*
 * selector.c: Kubernetes label selectors (see selector.h).
 *
 * A hand-written lexer and recursive-descent parser over the grammar
 *
 *   selector    := [ requirement { ',' requirement } ]
 *   requirement := '!' key
 *                | key [ ('=' | '==' | '!=') [value]
 *                      | ('in' | 'notin') '(' [value] { ',' [value] } ')' ]
 *
 * where key and value are runs of characters other than whitespace and
 * "!=(),<>". Every requirement keeps its values as a set (one value for
 * the equality operators).
 */
#include "internal.h"

#include "selector.h"
#include "validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define QUOTED_LEN 512

enum sel_op { OP_EQ, OP_NEQ, OP_IN, OP_NOTIN, OP_EXISTS, OP_NOT_EXISTS };

struct sel_req {
    char *key;
    enum sel_op op;
    char **values;
    size_t n_values;
};

struct sg_selector {
    struct sel_req *reqs;
    size_t n_reqs;
};

enum tok_kind {
    TOK_END,
    TOK_IDENT,
    TOK_COMMA,
    TOK_LPAREN,
    TOK_RPAREN,
    TOK_EQ,
    TOK_EQEQ,
    TOK_NEQ,
    TOK_BANG,
    TOK_OTHER,
};

struct token {
    enum tok_kind kind;
    size_t start; /* byte offset in the text */
    size_t len;
};

struct parser {
    const char *text;
    size_t pos;
    struct sg_error *err;
};

/* ---- lexer --------------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

static bool is_special(char c)
{
    return c != '\0' && strchr("!=(),<>", c) != NULL;
}

/* The token at the current position (not consumed). */
static struct token peek(const struct parser *p)
{
    const char *s = p->text;
    struct token t = {.kind = TOK_OTHER, .start = p->pos, .len = 1};

    while (is_space(s[t.start]))
        t.start++;
    switch (s[t.start]) {
    case '\0':
        t.kind = TOK_END;
        t.len = 0;
        break;
    case ',':
        t.kind = TOK_COMMA;
        break;
    case '(':
        t.kind = TOK_LPAREN;
        break;
    case ')':
        t.kind = TOK_RPAREN;
        break;
    case '=':
        t.kind = s[t.start + 1] == '=' ? TOK_EQEQ : TOK_EQ;
        t.len = t.kind == TOK_EQEQ ? 2 : 1;
        break;
    case '!':
        t.kind = s[t.start + 1] == '=' ? TOK_NEQ : TOK_BANG;
        t.len = t.kind == TOK_NEQ ? 2 : 1;
        break;
    case '<':
    case '>':
        break;
    default:
        t.kind = TOK_IDENT;
        t.len = 0;
        while (s[t.start + t.len] != '\0' && !is_space(s[t.start + t.len]) &&
               !is_special(s[t.start + t.len]))
            t.len++;
        break;
    }
    return t;
}

static struct token next(struct parser *p)
{
    struct token t = peek(p);

    p->pos = t.start + t.len;
    return t;
}

static bool token_is(const struct parser *p, struct token t, const char *word)
{
    return t.kind == TOK_IDENT && t.len == strlen(word) &&
           strncmp(p->text + t.start, word, t.len) == 0;
}

/* ---- errors -------------------------------------------------------- */

static int fail(struct parser *p, const char *fmt, ...) SG_PRINTF(2, 3);

static int fail(struct parser *p, const char *fmt, ...)
{
    char text[SG_ERROR_MESSAGE_MAX];
    va_list ap;

    va_start(ap, fmt);
    if (vsnprintf(text, sizeof(text), fmt, ap) < 0)
        text[0] = '\0';
    va_end(ap);
    (void)sg_error_add_violation(p->err, "label_selector", "%s", text);
    return -1;
}

static int fail_nomem(struct parser *p)
{
    sg_error_report(p->err, SG_ERR_NO_MEMORY, "out of memory");
    return -1;
}

/* ---- parser -------------------------------------------------------- */

static int take_word(struct parser *p, struct token t, char **out)
{
    *out = strndup(p->text + t.start, t.len);
    return *out != NULL ? 0 : fail_nomem(p);
}

static int parse_key(struct parser *p, char **key)
{
    struct token t = next(p);
    char quoted[QUOTED_LEN];
    const char *why;

    if (t.kind != TOK_IDENT)
        return fail(p, "expected a label key at byte %zu", t.start);
    if (take_word(p, t, key) < 0)
        return -1;
    why = sg_label_key_check(*key);
    if (why == NULL)
        return 0;
    sg_validate_quote(*key, quoted, sizeof(quoted));
    return fail(p, "invalid key '%s' at byte %zu: %s", quoted, t.start, why);
}

static int add_value(struct parser *p, struct sel_req *r, char *value)
{
    char **grown;

    if (value == NULL)
        return fail_nomem(p);
    grown = realloc(r->values, (r->n_values + 1) * sizeof(*r->values));
    if (grown == NULL) {
        free(value);
        return fail_nomem(p);
    }
    r->values = grown;
    r->values[r->n_values++] = value;
    return 0;
}

/* A value, or "" when the next token is one of the ends allowed here. */
static int parse_value(struct parser *p, struct sel_req *r, bool in_set)
{
    struct token t = peek(p);
    char quoted[QUOTED_LEN];
    const char *why;
    char *value = NULL;

    if (t.kind == TOK_COMMA || (in_set && t.kind == TOK_RPAREN) ||
        (!in_set && t.kind == TOK_END))
        return add_value(p, r, strdup(""));
    if (t.kind != TOK_IDENT)
        return fail(p, "expected a label value at byte %zu", t.start);
    next(p);
    if (take_word(p, t, &value) < 0)
        return -1;
    why = sg_label_value_check(value);
    if (why != NULL) {
        sg_validate_quote(value, quoted, sizeof(quoted));
        free(value);
        return fail(p, "invalid value '%s' at byte %zu: %s", quoted, t.start,
                    why);
    }
    return add_value(p, r, value);
}

static int parse_set(struct parser *p, struct sel_req *r, const char *op)
{
    struct token t = next(p);

    if (t.kind != TOK_LPAREN)
        return fail(p, "expected '(' after '%s' at byte %zu", op, t.start);
    if (peek(p).kind == TOK_RPAREN)
        return fail(p, "'%s' needs at least one value at byte %zu", op,
                    peek(p).start);
    for (;;) {
        if (parse_value(p, r, true) < 0)
            return -1;
        t = next(p);
        if (t.kind == TOK_RPAREN)
            return 0;
        if (t.kind != TOK_COMMA)
            return fail(p, "expected ',' or ')' at byte %zu", t.start);
    }
}

/* What follows a key: an operator and its values, or nothing (exists). */
static int parse_operator(struct parser *p, struct sel_req *r)
{
    struct token t = peek(p);

    switch (t.kind) {
    case TOK_END:
    case TOK_COMMA:
        r->op = OP_EXISTS;
        return 0;
    case TOK_EQ:
    case TOK_EQEQ:
    case TOK_NEQ:
        next(p);
        r->op = t.kind == TOK_NEQ ? OP_NEQ : OP_EQ;
        return parse_value(p, r, false);
    default:
        break;
    }
    if (token_is(p, t, "in") || token_is(p, t, "notin")) {
        next(p);
        r->op = token_is(p, t, "in") ? OP_IN : OP_NOTIN;
        return parse_set(p, r, r->op == OP_IN ? "in" : "notin");
    }
    return fail(p,
                "expected '=', '==', '!=', 'in', 'notin', ',' or the end of "
                "the selector at byte %zu",
                t.start);
}

static int parse_requirement(struct parser *p, struct sel_req *r)
{
    if (peek(p).kind == TOK_BANG) {
        next(p);
        r->op = OP_NOT_EXISTS;
        return parse_key(p, &r->key);
    }
    if (parse_key(p, &r->key) < 0)
        return -1;
    return parse_operator(p, r);
}

static void req_clear(struct sel_req *r)
{
    for (size_t i = 0; i < r->n_values; i++)
        free(r->values[i]);
    free(r->values);
    free(r->key);
}

void sg_selector_free(struct sg_selector *sel)
{
    if (sel == NULL)
        return;
    for (size_t i = 0; i < sel->n_reqs; i++)
        req_clear(&sel->reqs[i]);
    free(sel->reqs);
    free(sel);
}

/* Parse one requirement into a new slot of sel. */
static int append_requirement(struct parser *p, struct sg_selector *sel)
{
    struct sel_req *grown;

    grown = realloc(sel->reqs, (sel->n_reqs + 1) * sizeof(*sel->reqs));
    if (grown == NULL)
        return fail_nomem(p);
    sel->reqs = grown;
    memset(&sel->reqs[sel->n_reqs], 0, sizeof(*sel->reqs));
    sel->n_reqs++;
    return parse_requirement(p, &sel->reqs[sel->n_reqs - 1]);
}

static int parse_all(struct parser *p, struct sg_selector *sel)
{
    struct token t;

    if (peek(p).kind == TOK_END)
        return 0;
    for (;;) {
        if (append_requirement(p, sel) < 0)
            return -1;
        t = next(p);
        if (t.kind == TOK_END)
            return 0;
        if (t.kind != TOK_COMMA)
            return fail(p,
                        "expected ',' or the end of the selector at byte %zu",
                        t.start);
    }
}

struct sg_selector *sg_selector_parse(const char *text, struct sg_error *err)
{
    struct parser p = {.text = text != NULL ? text : "", .err = err};
    struct sg_selector *sel = calloc(1, sizeof(*sel));

    if (sel == NULL) {
        fail_nomem(&p);
        return NULL;
    }
    if (parse_all(&p, sel) < 0) {
        sg_selector_free(sel);
        return NULL;
    }
    return sel;
}

bool sg_selector_is_empty(const struct sg_selector *sel)
{
    return sel == NULL || sel->n_reqs == 0;
}

/* ---- matching ------------------------------------------------------ */

/* Labels as parallel arrays or as map entries. */
struct label_src {
    const char *const *keys;
    const char *const *values;
    Sandgate__V1__Sandbox__LabelsEntry *const *entries;
    size_t n;
};

/* The value of key (the last one if repeated), or NULL if absent. */
static const char *label_get(const struct label_src *src, const char *key)
{
    const char *found = NULL;

    for (size_t i = 0; i < src->n; i++) {
        const char *k = NULL;
        const char *v = NULL;

        if (src->entries != NULL && src->entries[i] != NULL) {
            k = src->entries[i]->key;
            v = src->entries[i]->value;
        } else if (src->entries == NULL) {
            k = src->keys[i];
            v = src->values[i];
        }
        if (k != NULL && STREQ(k, key))
            found = v != NULL ? v : "";
    }
    return found;
}

static bool in_set(const struct sel_req *r, const char *value)
{
    for (size_t i = 0; i < r->n_values; i++) {
        if (STREQ(r->values[i], value))
            return true;
    }
    return false;
}

static bool req_matches(const struct sel_req *r, const char *value)
{
    switch (r->op) {
    case OP_EXISTS:
        return value != NULL;
    case OP_NOT_EXISTS:
        return value == NULL;
    case OP_EQ:
    case OP_IN:
        return value != NULL && in_set(r, value);
    case OP_NEQ:
    case OP_NOTIN:
        return value == NULL || !in_set(r, value);
    }
    return false;
}

static bool matches_src(const struct sg_selector *sel,
                        const struct label_src *src)
{
    if (sel == NULL)
        return true;
    for (size_t i = 0; i < sel->n_reqs; i++) {
        if (!req_matches(&sel->reqs[i], label_get(src, sel->reqs[i].key)))
            return false;
    }
    return true;
}

bool sg_selector_matches(const struct sg_selector *sel, const char *const *keys,
                         const char *const *values, size_t n)
{
    struct label_src src = {.keys = keys, .values = values, .n = n};

    return matches_src(sel, &src);
}

bool sg_selector_matches_labels(
    const struct sg_selector *sel,
    Sandgate__V1__Sandbox__LabelsEntry *const *labels, size_t n_labels)
{
    struct label_src src = {.entries = labels, .n = n_labels};

    return matches_src(sel, &src);
}
