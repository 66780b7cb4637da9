/*
 * cred_bad_signature.c: a credential plugin whose build signature is
 * another ABI's (as a 32-bit build's would be).
 */
#include "internal.h"

#include "cred_stub.h"

static const struct sg_credsrc_ops ops = {
    .abi_major = SG_CREDSRC_ABI_MAJOR,
    .abi_minor = 0,
    .struct_size = sizeof(struct sg_credsrc_ops),
    .signature = "sandgate-credsrc-1:ilp32",
    .name = "bad-signature",
    CRED_STUB_SLOTS,
};

CRED_STUB_ENTRY(ops)
