/*
 * services.c: the table of everything the gateway serves.
 *
 * The sandgate.v1 methods are listed here with their kinds and request
 * types; a method whose handler is not built yet has no on_start and answers
 * UNIMPLEMENTED. tests/unit/test_descriptors.c checks this table against the
 * descriptor set, so a proto change that is not reflected here fails a test.
 */
#include "internal.h"

#include "services.h"
#include "svc_credentials.h"
#include "svc_events.h"
#include "svc_sandbox.h"

#include "sandgate_v1_sandbox.pb-c.h"
#include "sandgate_v1_credential.pb-c.h"
#include "sandgate_v1_event.pb-c.h"

#define METHOD(svc, name, k, req)                                              \
    {                                                                          \
        .path = "/sandgate.v1." svc "/" name, .kind = (k),                     \
        .request = &sandgate__v1__##req##__descriptor,                         \
    }
#define HANDLED(svc, name, k, req, fn)                                         \
    {                                                                          \
        .path = "/sandgate.v1." svc "/" name, .kind = (k),                     \
        .request = &sandgate__v1__##req##__descriptor, .on_start = (fn),       \
    }

static const struct sg_method sandbox_methods[] = {
    HANDLED("SandboxService", "CreateSandbox", SG_METHOD_UNARY,
            create_sandbox_request, sg_svc_create_sandbox),
    HANDLED("SandboxService", "GetSandbox", SG_METHOD_UNARY,
            get_sandbox_request, sg_svc_get_sandbox),
    HANDLED("SandboxService", "ListSandboxes", SG_METHOD_UNARY,
            list_sandboxes_request, sg_svc_list_sandboxes),
    HANDLED("SandboxService", "DeleteSandbox", SG_METHOD_UNARY,
            delete_sandbox_request, sg_svc_delete_sandbox),
    METHOD("SandboxService", "StreamSandboxLogs", SG_METHOD_SERVER_STREAM,
           stream_sandbox_logs_request),
    METHOD("SandboxService", "ExecSandbox", SG_METHOD_BIDI_STREAM,
           exec_sandbox_request),
};

static const struct sg_method credential_methods[] = {
    HANDLED("CredentialService", "CreateCredential", SG_METHOD_UNARY,
            create_credential_request, sg_svc_create_credential),
    HANDLED("CredentialService", "GetCredential", SG_METHOD_UNARY,
            get_credential_request, sg_svc_get_credential),
    HANDLED("CredentialService", "ListCredentials", SG_METHOD_UNARY,
            list_credentials_request, sg_svc_list_credentials),
    HANDLED("CredentialService", "DeleteCredential", SG_METHOD_UNARY,
            delete_credential_request, sg_svc_delete_credential),
    HANDLED("CredentialService", "CheckCredential", SG_METHOD_UNARY,
            check_credential_request, sg_svc_check_credential),
};

static const struct sg_method event_methods[] = {
    HANDLED("EventService", "WatchEvents", SG_METHOD_SERVER_STREAM,
            watch_events_request, sg_svc_watch_events),
    HANDLED("EventService", "ListEvents", SG_METHOD_UNARY,
            list_events_request, sg_svc_list_events),
};

const struct sg_service sg_sandbox_service = {
    .name = "sandgate.v1.SandboxService",
    .methods = sandbox_methods,
    .n_methods = SG_N_ELEMENTS(sandbox_methods),
};

const struct sg_service sg_credential_service = {
    .name = "sandgate.v1.CredentialService",
    .methods = credential_methods,
    .n_methods = SG_N_ELEMENTS(credential_methods),
};

const struct sg_service sg_event_service = {
    .name = "sandgate.v1.EventService",
    .methods = event_methods,
    .n_methods = SG_N_ELEMENTS(event_methods),
};

const struct sg_service *const sg_services[] = {
    &sg_health_service,
    &sg_reflection_v1_service,
    &sg_reflection_v1alpha_service,
    &sg_sandbox_service,
    &sg_credential_service,
    &sg_event_service,
    NULL,
};

const struct sg_service *const sg_services_no_reflection[] = {
    &sg_health_service,
    &sg_sandbox_service,
    &sg_credential_service,
    &sg_event_service,
    NULL,
};
