/*
 * jwt.c: see jwt.h.
 */
#include "internal.h"

#include "jwt.h"
