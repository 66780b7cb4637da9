/*
 * svc_sandbox.h: the SandboxService handlers listed in services.c.
 *
 * Each is an sg_method on_start: it validates the request and answers it,
 * now or from a store callback. They need the server's app data to be a
 * struct sg_gateway (gateway.h).
 *
 * THREAD SAFETY: called by the transport on completion-queue threads.
 */
#ifndef SG_SVC_SANDBOX_H
#define SG_SVC_SANDBOX_H

#include "internal.h"
#include "call.h"

void sg_svc_create_sandbox(struct sg_call *call, const ProtobufCMessage *msg);
void sg_svc_get_sandbox(struct sg_call *call, const ProtobufCMessage *msg);
void sg_svc_list_sandboxes(struct sg_call *call, const ProtobufCMessage *msg);
void sg_svc_delete_sandbox(struct sg_call *call, const ProtobufCMessage *msg);

#endif /* SG_SVC_SANDBOX_H */
