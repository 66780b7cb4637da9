/*
 * cred_bind.h: a sandbox's credential bindings, from the create that
 * binds them to their delivery.
 *
 * At create (sg_cred_bindings_*, on the request thread): each binding's
 * record is read from the sandbox's tenant before authorization, so that
 * the record's source (kind, and a Secret's namespace, name and key) is
 * checked in the same role as the rest of the create; a binding whose
 * record does not exist is reported only after that check. The record's
 * create_time goes into status.credentials: the record the create was
 * authorized against.
 *
 * During provisioning (sg_cred_resolve, for the reconciler): a worker
 * reads each record again, refuses one that is missing or was made again
 * since (another create_time), resolves it through its source, writes an
 * audit line per resolution, and hands the material to the loop. The
 * reconciler gives it to the driver's create and frees it at once.
 *
 * OWNERSHIP: struct sg_cred_bindings is the caller's (clear it); its
 * authz entries borrow from its records. A struct sg_cred_resolved
 * handed to a callback is the callback's: sg_cred_resolved_free wipes
 * the material and frees it. The delivery config's members are borrowed
 * and must outlive every resolution in flight.
 * THREAD SAFETY: sg_cred_bindings_* and sg_cred_resolve from any
 * thread; the callback runs on the loop of the delivery's queue.
 */
#ifndef SG_CRED_BIND_H
#define SG_CRED_BIND_H

#include "internal.h"
#include "error.h"

#include "audit.h"
#include "cred_workers.h"
#include "credsrc.h"
#include "loop.h"
#include "policy.h"
#include "store.h"

#include "sandgate_v1_credential.pb-c.h"
#include "sandgate_v1_sandbox.pb-c.h"

/* The records a create binds, in spec order. */
struct sg_cred_bindings {
    size_t n;
    struct sg_authz_credential *authz;     /* n entries */
    Sandgate__V1__Credential **records;    /* n; NULL: no such record */
    int64_t *create_times;                 /* n, ms; 0 for a missing one */
};

/* The authorization facts of a record's source (borrowed from c). */
void sg_cred_source_facts(const Sandgate__V1__Credential *c,
                          struct sg_authz_credential *out);

/* Read the record of every binding of spec in tenant. 0, or -1 with err
   set (the store failed, or memory is out); clear out either way. */
int sg_cred_bindings_read(struct sg_store *store, const char *tenant,
                          const Sandgate__V1__SandboxSpec *spec,
                          struct sg_cred_bindings *out, struct sg_error *err)
    SG_WARN_UNUSED_RESULT;

/* After authorization: -1 with err set (SG_ERR_FAILED_PRECONDITION,
   naming the binding) when a bound record does not exist, else 0. */
int sg_cred_bindings_require(const struct sg_cred_bindings *b,
                             const char *tenant, struct sg_error *err);

void sg_cred_bindings_clear(struct sg_cred_bindings *b);

/*
 * What delivery needs; all borrowed. audit may write nothing. Results
 * reach the loop through queue, which its owner closes only after the
 * workers have stopped (sg_cred_workers_stop), so that a resolution that
 * finishes late is handed over (and wiped) instead of posted to a freed
 * queue. The workers may be stopped after the driver has closed: a
 * resolution waiting on the driver then ends at once.
 */
struct sg_cred_delivery {
    struct sg_store *store;
    const struct sg_credsrc_registry *registry;
    struct sg_cred_workers *workers;
    struct sg_audit *audit;
    struct sg_loop_queue *queue;
};

/* The outcome of resolving a sandbox's bindings. */
struct sg_cred_resolved {
    bool ok;
    /* Failed for a reason that may pass (the store): try again later,
       instead of failing the sandbox. */
    bool retry;
    /* Failed: CredentialNotFound, CredentialChanged or
       CredentialUnresolvable, and a message that names the binding and
       the reference, never material. */
    char reason[32];
    char message[SG_ERROR_MESSAGE_MAX];
    /* ok: one secret per binding, in spec order. */
    size_t n;
    struct sg_secret **secrets;
};

typedef void (*sg_cred_resolved_fn)(void *opaque, struct sg_cred_resolved *r);

/*
 * Resolve every binding of sb (a stored sandbox: id, status.credentials
 * set) on a worker, then run fn(opaque, r) on d->queue's loop. 0, or -1
 * with err set (then fn never runs). fn also runs while the queue
 * closes: opaque must live until then.
 */
int sg_cred_resolve(const struct sg_cred_delivery *d,
                    const Sandgate__V1__Sandbox *sb, sg_cred_resolved_fn fn,
                    void *opaque, struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* Wipe the material and free. NULL-safe. */
void sg_cred_resolved_free(struct sg_cred_resolved *r);

/* The "rpc" of a delivery's audit lines. */
#define SG_CRED_DELIVERY_AUDIT_RPC "sandgate.reconciler/DeliverCredential"

#endif /* SG_CRED_BIND_H */
