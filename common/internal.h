/*
 * internal.h: included first by every .c file of sandgate.
 *
 * Build configuration, compiler attributes and the few string helpers every
 * module uses. Nothing here allocates or keeps state.
 */
#ifndef SG_INTERNAL_H
#define SG_INTERNAL_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define SG_WARN_UNUSED_RESULT __attribute__((warn_unused_result))
#define SG_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define SG_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))
#define SG_NORETURN __attribute__((noreturn))
#define SG_UNUSED __attribute__((unused))

#define SG_N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

#define STREQ(a, b) (strcmp((a), (b)) == 0)
#define STRNEQ(a, b) (strcmp((a), (b)) != 0)
#define STRPREFIX(s, p) (strncmp((s), (p), strlen(p)) == 0)

#endif /* SG_INTERNAL_H */
