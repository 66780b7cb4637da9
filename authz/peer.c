/*
 * peer.c: see peer.h.
 */
#include "internal.h"

#include "peer.h"
