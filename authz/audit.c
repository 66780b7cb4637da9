/*
 * audit.c: see audit.h.
 */
#include "internal.h"

#include "audit.h"
