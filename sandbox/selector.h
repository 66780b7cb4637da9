/*
 * selector.h: Kubernetes label selectors (ListSandboxesRequest.label_selector).
 *
 * A selector is a comma-separated list of requirements, all of which must
 * hold:
 *
 *   k=v   k==v     the label k exists and equals v
 *   k!=v           k is absent, or its value is not v
 *   k in (a,b)     k exists and its value is a or b
 *   k notin (a,b)  k is absent, or its value is neither a nor b
 *   k              k exists
 *   !k             k is absent
 *
 * Whitespace may surround every token. Keys and values follow the label
 * rules of validate.h (a value may be empty: "k=" or "k in (a,)"); a set
 * needs at least one value. The empty selector matches every object.
 *
 * OWNERSHIP: sg_selector_parse() returns a selector the caller frees with
 * sg_selector_free(); matching borrows everything it is given.
 * THREAD SAFETY: parsing is pure; a parsed selector is immutable and may be
 * matched from any number of threads at once.
 */
#ifndef SG_SANDBOX_SELECTOR_H
#define SG_SANDBOX_SELECTOR_H

#include "internal.h"
#include "error.h"

#include "sandgate_v1_sandbox.pb-c.h"

struct sg_selector;

/*
 * Parse text (NULL is the empty selector). On a syntax error returns NULL
 * with an INVALID_ARGUMENT violation on the field "label_selector" that says
 * what is wrong and at which byte offset (0-based), e.g.
 * "expected ',' or the end of the selector at byte 4"; NULL with
 * SG_ERR_NO_MEMORY when memory runs out.
 */
struct sg_selector *
sg_selector_parse(const char *text, struct sg_error *err) SG_WARN_UNUSED_RESULT;

void sg_selector_free(struct sg_selector *sel); /* NULL-safe */

/* True if sel has no requirements (it matches everything). */
bool sg_selector_is_empty(const struct sg_selector *sel);

/*
 * True if the labels keys[i] = values[i] (n of them) satisfy sel. A NULL
 * sel matches everything. If a key occurs twice the last one counts, as in
 * a protobuf map.
 */
bool sg_selector_matches(const struct sg_selector *sel, const char *const *keys,
                         const char *const *values, size_t n);

/* The same, for the labels of a Sandbox message. */
bool sg_selector_matches_labels(
    const struct sg_selector *sel,
    Sandgate__V1__Sandbox__LabelsEntry *const *labels, size_t n_labels);

#endif /* SG_SANDBOX_SELECTOR_H */
