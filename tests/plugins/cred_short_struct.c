/*
 * cred_short_struct.c: a credential plugin whose ops table claims 24 bytes,
 * too short for the ABI 1.0 slots.
 */
#include "internal.h"

#include "cred_stub.h"

static const struct sg_credsrc_ops ops = {
    .abi_major = SG_CREDSRC_ABI_MAJOR,
    .abi_minor = 0,
    .struct_size = 24,
    .signature = SG_CREDSRC_SIGNATURE,
    .name = "short-struct",
    CRED_STUB_SLOTS,
};

CRED_STUB_ENTRY(ops)
