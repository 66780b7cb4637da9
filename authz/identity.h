/*
 * identity.h: who is calling, as established by authentication.
 *
 * An identity is built by exactly one authenticator (client certificate,
 * JWT, static token) and never changes after it is built. The transport
 * attaches one to every call that needs one; handlers read it with
 * sg_call_identity(). The owner stamped on a sandbox is identity->subject.
 *
 * Subjects, by kind:
 *   SG_IDENTITY_CERT   the single URI SAN ("spiffe://cluster.local/ns/p/sa/c"),
 *                      else "dns:<first DNS SAN>", else "cn:<common name>"
 *   SG_IDENTITY_JWT    the issuer's subject_prefix (default "<iss>#")
 *                      followed by the mapped subject claim
 *   SG_IDENTITY_TOKEN  "token:<name>" (static tokens; the embedded
 *                      default's admin token is "token:admin")
 *   SG_IDENTITY_LOCAL  "local:unauthenticated" (auth.disabled only)
 *
 * OWNERSHIP: reference counted. sg_identity_new() returns one reference;
 * sg_identity_unref() drops one and frees at zero. Every string and array
 * is owned by the identity.
 * THREAD SAFETY: immutable once built; ref/unref are atomic, so an
 * identity may be shared by any number of threads.
 */
#ifndef SG_AUTHZ_IDENTITY_H
#define SG_AUTHZ_IDENTITY_H

#include "internal.h"

#include <stdatomic.h>
#include <stdint.h>

enum sg_identity_kind {
    SG_IDENTITY_CERT = 1,  /* verified mTLS client certificate */
    SG_IDENTITY_JWT,       /* bearer JWT from a configured issuer */
    SG_IDENTITY_TOKEN,     /* static bearer token */
    SG_IDENTITY_LOCAL,     /* authentication disabled (loopback only) */
};

/* Which certificate name a SG_IDENTITY_CERT subject came from. */
enum sg_cert_name {
    SG_CERT_NAME_NONE = 0,
    SG_CERT_NAME_URI,      /* the single URI SAN (SPIFFE ID) */
    SG_CERT_NAME_DNS,      /* the first DNS SAN */
    SG_CERT_NAME_CN,       /* the subject common name */
};

struct sg_identity {
    atomic_int refs;
    enum sg_identity_kind kind;
    /* The stamped subject (see above). Never NULL. */
    char *subject;
    /* The name within its source: the URI/DNS/CN value, the JWT's mapped
       subject claim, or the static token's name. Never NULL. */
    char *name;
    enum sg_cert_name cert_name; /* CERT only */
    char *issuer;                /* JWT: the "iss" claim; else NULL */
    char **groups;               /* JWT groups claim; may be empty */
    size_t n_groups;
    int64_t expires_at;          /* unix seconds; 0 = no expiry */
};

/*
 * A new identity with one reference. subject and name are copied; groups
 * start empty (add with sg_identity_add_group). NULL when out of memory.
 */
struct sg_identity *sg_identity_new(enum sg_identity_kind kind,
                                    const char *subject, const char *name);
/* Copy issuer into id (replacing any). Returns 0 or -1 (no memory). */
int sg_identity_set_issuer(struct sg_identity *id, const char *issuer);
/* Append a copy of group. Returns 0 or -1 (no memory). Only while the
   identity is still private to its builder. */
int sg_identity_add_group(struct sg_identity *id, const char *group);

struct sg_identity *sg_identity_ref(struct sg_identity *id);
void sg_identity_unref(struct sg_identity *id); /* NULL-safe */

#endif /* SG_AUTHZ_IDENTITY_H */
