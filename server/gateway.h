/*
 * gateway.h: what the API handlers share (the server's app data).
 *
 * server/main.c builds one struct sg_gateway, hands it to the server with
 * sg_server_set_app_data, and tears it down after the server has stopped.
 * Handlers reach it with sg_call_app_data(call).
 *
 * OWNERSHIP: main.c owns every member.
 * THREAD SAFETY: set up before the server starts, then only read; the
 * members are themselves safe to use from request threads as their
 * headers say (store: any thread; driver: validate/describe only;
 * reconciler: kick only; events: add and the subscriber calls;
 * credentials: everything but new/free; cred_workers: run).
 */
#ifndef SG_GATEWAY_H
#define SG_GATEWAY_H

#include "internal.h"
#include "authz.h"
#include "cred_bind.h"
#include "cred_workers.h"
#include "credsrc.h"
#include "driver.h"
#include "event_hub.h"
#include "reconciler.h"
#include "store.h"
#include "validate.h"


struct sg_gateway {
    struct sg_store *store;
    struct sg_driver *driver;
    struct sg_reconciler *reconciler;
    struct sg_validate_limits limits;
    /* Authentication, policy and audit; NULL in tests that serve without
       them (every caller is then the subject ""). */
    struct sg_authz *authz;
    /* Fan-out of committed events to WatchEvents streams; NULL in tests
       that serve without it (EventService then answers UNIMPLEMENTED). */
    struct sg_event_hub *events;
    /* Credential sources, and the threads that run their resolutions
       (CheckCredential's and delivery's); NULL in tests that serve
       without them (CredentialService then answers UNIMPLEMENTED, and a
       create with bindings too). */
    struct sg_credsrc_registry *credentials;
    struct sg_cred_workers *cred_workers;
    /* What the reconciler resolves bindings with (members borrowed from
       the ones above). */
    struct sg_cred_delivery delivery;
};

#endif /* SG_GATEWAY_H */
