/*
 * audit.h: the audit log: one JSON line per mutation and per denial.
 *
 * A record is written with one write(2) before sg_audit_write returns, so
 * the gateway writes it before the response goes out; a crash after the
 * response cannot lose it. Lines:
 *   {"time":"2026-12-02T12:00:00.123Z","subject":"spiffe://...",
 *    "rpc":"/sandgate.v1.SandboxService/CreateSandbox",
 *    "target":"sb-...","tenant":"team-a","namespace":"sbx-a",
 *    "decision":"allow","code":"OK","reason":"...","request_id":"req-1",
 *    "peer":"ipv4:127.0.0.1:5000"}
 * Absent (NULL) fields are left out. Strings are JSON-escaped; every
 * field is bounded (1024 bytes, longer values are cut and end in "...").
 *
 * Destination: a file (created 0600, appended) rotated by size: when a
 * write would take it past max_bytes it is renamed to FILE.1 (FILE.1 to
 * FILE.2, ... up to max_files, the oldest dropped) and a new FILE is
 * started; or "-" for stdout; or NULL for off.
 *
 * OWNERSHIP: sg_audit_open returns an object the caller frees with
 * sg_audit_close. Records' strings are borrowed for the call.
 * THREAD SAFETY: sg_audit_write from any thread (serialised internally);
 * open/close/reopen from one thread.
 */
#ifndef SG_AUTHZ_AUDIT_H
#define SG_AUTHZ_AUDIT_H

#include "internal.h"

#include "error.h"

struct sg_audit_config {
    const char *path;        /* file, "-" (stdout) or NULL (off) */
    uint64_t max_bytes;      /* rotate past this; 0 = never; default 100 MiB */
    unsigned max_files;      /* rotated files kept; default 5 */
};

struct sg_audit_record {
    const char *subject;     /* "" for anonymous */
    const char *rpc;         /* full method path */
    const char *target;      /* sandbox id, credential name, or NULL */
    const char *tenant;
    const char *namespace_name;
    bool allowed;            /* "decision": "allow" / "deny" */
    const char *code;        /* gRPC status name of the outcome, e.g. "OK",
                                "PERMISSION_DENIED" */
    const char *reason;      /* why it was denied, or NULL */
    const char *request_id;
    const char *peer;
};

struct sg_audit;

/* Open the destination (NULL path: an audit object that writes nothing).
   Returns NULL with err set (SG_ERR_IO naming the path) on failure. */
struct sg_audit *sg_audit_open(const struct sg_audit_config *cfg,
                               struct sg_error *err);
void sg_audit_close(struct sg_audit *a); /* NULL-safe */

/* Write one record. Returns 0 or -1 (I/O error: logged once per minute;
   the caller does not fail the call for it). */
int sg_audit_write(struct sg_audit *a, const struct sg_audit_record *r);

/* Reopen the file (SIGHUP, after external rotation). 0 or -1 with err. */
int sg_audit_reopen(struct sg_audit *a, struct sg_error *err);

#endif /* SG_AUTHZ_AUDIT_H */
