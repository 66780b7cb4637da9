/*
 * svc_credentials.h: the CredentialService handlers listed in services.c,
 * and the worker that runs CheckCredential's resolutions.
 *
 * The handlers validate, authorize, then read or write the store (records
 * hold references, never material). CheckCredential resolves a reference,
 * which may block (a file, a Kubernetes API call, a plugin): the handler
 * hands it to the credential workers (cred_workers.h), which resolve,
 * wipe the material at once, audit the resolution and answer. They need
 * the server's app data to be a struct sg_gateway (gateway.h) with a
 * credential registry and workers.
 *
 * THREAD SAFETY: the handlers are called by the transport on
 * completion-queue threads and queue checks from there.
 */
#ifndef SG_SVC_CREDENTIALS_H
#define SG_SVC_CREDENTIALS_H

#include "internal.h"
#include "call.h"
#include "credsrc.h"
#include "error.h"

void sg_svc_create_credential(struct sg_call *call,
                              const ProtobufCMessage *msg);
void sg_svc_get_credential(struct sg_call *call, const ProtobufCMessage *msg);
void sg_svc_list_credentials(struct sg_call *call,
                             const ProtobufCMessage *msg);
void sg_svc_delete_credential(struct sg_call *call,
                              const ProtobufCMessage *msg);
void sg_svc_check_credential(struct sg_call *call,
                             const ProtobufCMessage *msg);

#endif /* SG_SVC_CREDENTIALS_H */
