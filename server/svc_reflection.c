/*
 * svc_reflection.c: gRPC server reflection, v1 and v1alpha.
 *
 * ServerReflectionInfo is a bidirectional stream: each request gets exactly
 * one response, which echoes the request and the host, and the call ends
 * with OK when the client half-closes. Answers come from the descriptor
 * index (descriptors.h), so grpcurl, buf curl and similar tools work with
 * no proto files at hand.
 *
 * v1alpha has the same wire format as v1, so both services share the
 * protobuf-c types generated from the v1 proto; only the method paths
 * differ.
 *
 * Nothing here keeps state between messages, so the handlers need no
 * per-call data and no cancellation hook.
 */
#include "internal.h"

#include "descriptors.h"
#include "log.h"
#include "services.h"

#include "grpc_reflection_v1_reflection.pb-c.h"

#include <inttypes.h>
#include <stdlib.h>

SG_LOG_INIT("server.reflection");

/* Reflection names carry no secrets, but bound what one log line shows. */
#define LOG_NAME_MAX 200

/* The generated oneof case names, shortened. */
#define REQUEST_CASE(x)                                                        \
    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define RESPONSE_CASE(x)                                                       \
    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

static void set_error(Grpc__Reflection__V1__ServerReflectionResponse *resp,
                      Grpc__Reflection__V1__ErrorResponse *error,
                      grpc_status_code code, const char *message)
{
    error->error_code = (int32_t)code;
    error->error_message = (char *)(uintptr_t)message;
    resp->message_response_case = RESPONSE_CASE(ERROR_RESPONSE);
    resp->error_response = error;
}

/* Answer a lookup that yields files (n from a sg_descriptors_*_with_deps). */
static void set_files(Grpc__Reflection__V1__ServerReflectionResponse *resp,
                      Grpc__Reflection__V1__FileDescriptorResponse *fdr,
                      Grpc__Reflection__V1__ErrorResponse *error,
                      ProtobufCBinaryData *files, ssize_t n,
                      const char *not_found)
{
    if (n < 0) {
        set_error(resp, error, GRPC_STATUS_RESOURCE_EXHAUSTED,
                  "out of memory");
        return;
    }
    if (n == 0) {
        set_error(resp, error, GRPC_STATUS_NOT_FOUND, not_found);
        return;
    }
    fdr->n_file_descriptor_proto = (size_t)n;
    fdr->file_descriptor_proto = files;
    resp->message_response_case = RESPONSE_CASE(FILE_DESCRIPTOR_RESPONSE);
    resp->file_descriptor_response = fdr;
}

static void reflection_on_start(struct sg_call *call,
                                const ProtobufCMessage *req)
{
    SG_DEBUG("reflection stream from %s", sg_call_peer(call));
}

static void reflection_on_message(struct sg_call *call,
                                  const ProtobufCMessage *msg)
{
    const Grpc__Reflection__V1__ServerReflectionRequest *req =
        (const Grpc__Reflection__V1__ServerReflectionRequest *)msg;
    Grpc__Reflection__V1__ServerReflectionResponse resp =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
    Grpc__Reflection__V1__FileDescriptorResponse fdr =
        GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
    Grpc__Reflection__V1__ListServiceResponse lsr =
        GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
    Grpc__Reflection__V1__ExtensionNumberResponse enr =
        GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
    Grpc__Reflection__V1__ErrorResponse error =
        GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
    Grpc__Reflection__V1__ServiceResponse *services = NULL;
    Grpc__Reflection__V1__ServiceResponse **service_ptrs = NULL;
    ProtobufCBinaryData *files = NULL;
    int32_t *numbers = NULL;
    ssize_t n;

    if (!req) {
        /* Half-close: every request has been answered. */
        sg_call_finish(call, GRPC_STATUS_OK, NULL);
        return;
    }

    /* The request is borrowed until we return; sg_call_send packs it. */
    resp.valid_host = req->host ? req->host : (char *)"";
    resp.original_request =
        (Grpc__Reflection__V1__ServerReflectionRequest *)(uintptr_t)req;

    switch (req->message_request_case) {
    case REQUEST_CASE(LIST_SERVICES): {
        size_t count = sg_descriptors_n_services();

        SG_DEBUG("list_services");
        services = calloc(count ? count : 1, sizeof(*services));
        service_ptrs = calloc(count ? count : 1, sizeof(*service_ptrs));
        if (!services || !service_ptrs) {
            set_error(&resp, &error, GRPC_STATUS_RESOURCE_EXHAUSTED,
                      "out of memory");
            break;
        }
        for (size_t i = 0; i < count; i++) {
            grpc__reflection__v1__service_response__init(&services[i]);
            services[i].name =
                (char *)(uintptr_t)sg_descriptors_service_name(i);
            service_ptrs[i] = &services[i];
        }
        lsr.n_service = count;
        lsr.service = service_ptrs;
        resp.message_response_case = RESPONSE_CASE(LIST_SERVICES_RESPONSE);
        resp.list_services_response = &lsr;
        break;
    }

    case REQUEST_CASE(FILE_BY_FILENAME):
        SG_DEBUG("file_by_filename '%.*s'", LOG_NAME_MAX,
                 req->file_by_filename);
        n = sg_descriptors_file_with_deps(req->file_by_filename, &files);
        set_files(&resp, &fdr, &error, files, n, "file not found");
        break;

    case REQUEST_CASE(FILE_CONTAINING_SYMBOL):
        SG_DEBUG("file_containing_symbol '%.*s'", LOG_NAME_MAX,
                 req->file_containing_symbol);
        n = sg_descriptors_symbol_with_deps(req->file_containing_symbol,
                                            &files);
        set_files(&resp, &fdr, &error, files, n, "symbol not found");
        break;

    case REQUEST_CASE(FILE_CONTAINING_EXTENSION): {
        const Grpc__Reflection__V1__ExtensionRequest *ext =
            req->file_containing_extension;

        if (!ext || !ext->containing_type) {
            set_error(&resp, &error, GRPC_STATUS_INVALID_ARGUMENT,
                      "extension request names no type");
            break;
        }
        SG_DEBUG("file_containing_extension '%.*s' %" PRId32, LOG_NAME_MAX,
                 ext->containing_type, ext->extension_number);
        n = sg_descriptors_extension_with_deps(ext->containing_type,
                                               ext->extension_number, &files);
        set_files(&resp, &fdr, &error, files, n, "extension not found");
        break;
    }

    case REQUEST_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE): {
        const char *type = req->all_extension_numbers_of_type;

        SG_DEBUG("all_extension_numbers_of_type '%.*s'", LOG_NAME_MAX,
                 type);
        if (!sg_descriptors_is_message(type)) {
            set_error(&resp, &error, GRPC_STATUS_NOT_FOUND,
                      "type not found");
            break;
        }
        n = sg_descriptors_extension_numbers(type, &numbers);
        if (n < 0) {
            set_error(&resp, &error, GRPC_STATUS_RESOURCE_EXHAUSTED,
                      "out of memory");
            break;
        }
        /* Echo the type name as the client gave it. */
        enr.base_type_name = (char *)(uintptr_t)type;
        enr.n_extension_number = (size_t)n;
        enr.extension_number = numbers;
        resp.message_response_case = RESPONSE_CASE(ALL_EXTENSION_NUMBERS_RESPONSE);
        resp.all_extension_numbers_response = &enr;
        break;
    }

    case REQUEST_CASE(_NOT_SET):
    default:
        set_error(&resp, &error, GRPC_STATUS_INVALID_ARGUMENT,
                  "request names no known message_request");
        break;
    }

    /* -1 means the call is over (cancelled or finished): nothing to do. */
    (void)sg_call_send(call, &resp.base);

    free(services);
    free(service_ptrs);
    free(files);
    free(numbers);
}

static const struct sg_method reflection_v1_methods[] = {
    {
        .path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        .kind = SG_METHOD_BIDI_STREAM,
        .request = &grpc__reflection__v1__server_reflection_request__descriptor,
        .on_start = reflection_on_start,
        .on_message = reflection_on_message,
    },
};

static const struct sg_method reflection_v1alpha_methods[] = {
    {
        .path = "/grpc.reflection.v1alpha.ServerReflection/"
                "ServerReflectionInfo",
        .kind = SG_METHOD_BIDI_STREAM,
        .request = &grpc__reflection__v1__server_reflection_request__descriptor,
        .on_start = reflection_on_start,
        .on_message = reflection_on_message,
    },
};

/* Server reflection v1. Immutable; see services.h. */
const struct sg_service sg_reflection_v1_service = {
    .name = "grpc.reflection.v1.ServerReflection",
    .methods = reflection_v1_methods,
    .n_methods = SG_N_ELEMENTS(reflection_v1_methods),
};

/* Server reflection v1alpha (same wire format). Immutable; see services.h. */
const struct sg_service sg_reflection_v1alpha_service = {
    .name = "grpc.reflection.v1alpha.ServerReflection",
    .methods = reflection_v1alpha_methods,
    .n_methods = SG_N_ELEMENTS(reflection_v1alpha_methods),
};
