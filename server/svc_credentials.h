/*
 * svc_credentials.h: the CredentialService handlers listed in services.c,
 * and the worker that runs CheckCredential's resolutions.
 *
 * The handlers validate, authorize, then read or write the store (records
 * hold references, never material). CheckCredential resolves a reference,
 * which may block (a file, a Kubernetes API call, a plugin): the handler
 * hands it to the checker's threads, which resolve, wipe the material at
 * once, audit the resolution and answer. They need the server's app data
 * to be a struct sg_gateway (gateway.h) with a credential registry.
 *
 * OWNERSHIP: sg_cred_checker_start returns a checker the caller stops and
 * frees with sg_cred_checker_stop; the registry is borrowed and must
 * outlive it.
 * THREAD SAFETY: the handlers are called by the transport on
 * completion-queue threads and queue checks from there; start and stop
 * on one thread, stop once no handler can run any more.
 */
#ifndef SG_SVC_CREDENTIALS_H
#define SG_SVC_CREDENTIALS_H

#include "internal.h"
#include "call.h"
#include "credsrc.h"
#include "error.h"

struct sg_cred_checker;

/* n_threads 0: 2. NULL with err set when a thread cannot start. */
struct sg_cred_checker *sg_cred_checker_start(
    const struct sg_credsrc_registry *reg, unsigned n_threads,
    struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Refuse new checks, run the queued ones (their calls are answered),
   join the threads and free. NULL-safe. */
void sg_cred_checker_stop(struct sg_cred_checker *c);

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
