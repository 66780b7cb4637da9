/*
 * status.c: sandgate error -> gRPC status, in one table.
 *
 * Internal failures (I/O, configuration, bugs) reach the client as a fixed
 * "internal error" text: their detail names files and system state that a
 * caller has no business seeing; it goes to the server log instead.
 */
#include "internal.h"

#include "status.h"

#include <stdlib.h>

#include "google_rpc_status.pb-c.h"
#include "google_rpc_error_details.pb-c.h"
#include "google_protobuf_any.pb-c.h"

static const struct {
    enum sg_err_code err;
    grpc_status_code code;
    bool internal; /* hide the message from the client */
} status_map[] = {
    {SG_ERR_OK, GRPC_STATUS_OK, false},
    {SG_ERR_INVALID_ARGUMENT, GRPC_STATUS_INVALID_ARGUMENT, false},
    {SG_ERR_NOT_FOUND, GRPC_STATUS_NOT_FOUND, false},
    {SG_ERR_ALREADY_EXISTS, GRPC_STATUS_ALREADY_EXISTS, false},
    {SG_ERR_ABORTED, GRPC_STATUS_ABORTED, false},
    {SG_ERR_PERMISSION_DENIED, GRPC_STATUS_PERMISSION_DENIED, false},
    {SG_ERR_UNAUTHENTICATED, GRPC_STATUS_UNAUTHENTICATED, false},
    {SG_ERR_RESOURCE_EXHAUSTED, GRPC_STATUS_RESOURCE_EXHAUSTED, false},
    {SG_ERR_OUT_OF_RANGE, GRPC_STATUS_OUT_OF_RANGE, false},
    {SG_ERR_FAILED_PRECONDITION, GRPC_STATUS_FAILED_PRECONDITION, false},
    {SG_ERR_UNAVAILABLE, GRPC_STATUS_UNAVAILABLE, false},
    {SG_ERR_DEADLINE_EXCEEDED, GRPC_STATUS_DEADLINE_EXCEEDED, false},
    {SG_ERR_UNIMPLEMENTED, GRPC_STATUS_UNIMPLEMENTED, false},
    {SG_ERR_CONFIG, GRPC_STATUS_INTERNAL, true},
    {SG_ERR_IO, GRPC_STATUS_INTERNAL, true},
    {SG_ERR_NO_MEMORY, GRPC_STATUS_RESOURCE_EXHAUSTED, true},
    {SG_ERR_INTERNAL, GRPC_STATUS_INTERNAL, true},
};

static const char *const status_names[] = {
    [GRPC_STATUS_OK] = "OK",
    [GRPC_STATUS_CANCELLED] = "CANCELLED",
    [GRPC_STATUS_UNKNOWN] = "UNKNOWN",
    [GRPC_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
    [GRPC_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
    [GRPC_STATUS_NOT_FOUND] = "NOT_FOUND",
    [GRPC_STATUS_ALREADY_EXISTS] = "ALREADY_EXISTS",
    [GRPC_STATUS_PERMISSION_DENIED] = "PERMISSION_DENIED",
    [GRPC_STATUS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
    [GRPC_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
    [GRPC_STATUS_ABORTED] = "ABORTED",
    [GRPC_STATUS_OUT_OF_RANGE] = "OUT_OF_RANGE",
    [GRPC_STATUS_UNIMPLEMENTED] = "UNIMPLEMENTED",
    [GRPC_STATUS_INTERNAL] = "INTERNAL",
    [GRPC_STATUS_UNAVAILABLE] = "UNAVAILABLE",
    [GRPC_STATUS_DATA_LOSS] = "DATA_LOSS",
    [GRPC_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

static size_t find(enum sg_err_code code)
{
    for (size_t i = 0; i < SG_N_ELEMENTS(status_map); i++)
        if (status_map[i].err == code)
            return i;
    return SG_N_ELEMENTS(status_map) - 1; /* SG_ERR_INTERNAL */
}

grpc_status_code sg_status_code(enum sg_err_code code)
{
    return status_map[find(code)].code;
}

bool sg_status_is_internal(enum sg_err_code code)
{
    return status_map[find(code)].internal;
}

const char *sg_status_name(grpc_status_code code)
{
    if ((size_t)code < SG_N_ELEMENTS(status_names) && status_names[code])
        return status_names[code];
    return "UNKNOWN";
}

const char *sg_status_message(const struct sg_error *err)
{
    if (sg_status_is_internal(err->code))
        return err->code == SG_ERR_NO_MEMORY ? "server out of memory"
                                             : "internal error";
    return err->message;
}

int sg_status_details(const struct sg_error *err, grpc_slice *out)
{
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    Google__Rpc__BadRequest br = GOOGLE__RPC__BAD_REQUEST__INIT;
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    Google__Protobuf__Any *anys[1] = {&any};
    Google__Rpc__BadRequest__FieldViolation *v = NULL;
    Google__Rpc__BadRequest__FieldViolation **vp = NULL;
    uint8_t *packed = NULL;
    int ret = -1;

    if (err->n_violations == 0 || sg_status_is_internal(err->code))
        return 0;
    v = calloc(err->n_violations, sizeof(*v));
    vp = calloc(err->n_violations, sizeof(*vp));
    if (!v || !vp)
        goto cleanup;
    for (size_t i = 0; i < err->n_violations; i++) {
        google__rpc__bad_request__field_violation__init(&v[i]);
        v[i].field = err->violations[i].field;
        v[i].description = err->violations[i].description;
        vp[i] = &v[i];
    }
    br.n_field_violations = err->n_violations;
    br.field_violations = vp;
    packed = malloc(google__rpc__bad_request__get_packed_size(&br) + 1);
    if (!packed)
        goto cleanup;
    any.type_url = "type.googleapis.com/google.rpc.BadRequest";
    any.value.len = google__rpc__bad_request__pack(&br, packed);
    any.value.data = packed;

    st.code = (int32_t)sg_status_code(err->code);
    st.message = (char *)sg_status_message(err);
    st.n_details = 1;
    st.details = anys;
    *out = grpc_slice_malloc(google__rpc__status__get_packed_size(&st));
    google__rpc__status__pack(&st, GRPC_SLICE_START_PTR(*out));
    ret = 1;

 cleanup:
    free(packed);
    free(vp);
    free(v);
    return ret;
}
