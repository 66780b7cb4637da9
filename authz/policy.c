/*
 * policy.c: see policy.h.
 */
#include "internal.h"

#include "policy.h"
