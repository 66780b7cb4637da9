/*
 * cred_bad_major.c: a credential plugin built for ABI major 2.
 */
#include "internal.h"

#include "cred_stub.h"

static const struct sg_credsrc_ops ops = {
    .abi_major = 2,
    .abi_minor = 0,
    .struct_size = sizeof(struct sg_credsrc_ops),
    .signature = SG_CREDSRC_SIGNATURE,
    .name = "bad-major",
    CRED_STUB_SLOTS,
};

CRED_STUB_ENTRY(ops)
