/*
 * cred_workers.h: the threads credential resolutions run on.
 *
 * A resolution may block (a file, a Kubernetes API call, a plugin), so it
 * never runs on the loop or a completion-queue thread: CheckCredential
 * and the delivery of a sandbox's bindings (cred_bind.h) queue a job
 * here. Jobs run in queue order on a fixed set of threads.
 *
 * OWNERSHIP: sg_cred_workers_start returns a pool the caller stops and
 * frees with sg_cred_workers_stop. A queued job's arg is the job's: fn
 * runs exactly once for every job queued, also at stop.
 * THREAD SAFETY: sg_cred_workers_run from any thread; start and stop on
 * one thread, stop once nothing can queue any more.
 */
#ifndef SG_CRED_WORKERS_H
#define SG_CRED_WORKERS_H

#include "internal.h"
#include "error.h"

struct sg_cred_workers;

/* n_threads 0: 2. NULL with err set when a thread cannot start. */
struct sg_cred_workers *sg_cred_workers_start(unsigned n_threads,
                                              struct sg_error *err)
    SG_WARN_UNUSED_RESULT;

/* Queue fn(arg). 0, or -1 with err set (SG_ERR_UNAVAILABLE when
   stopping, SG_ERR_NO_MEMORY): then fn never runs and arg stays the
   caller's. */
int sg_cred_workers_run(struct sg_cred_workers *w, void (*fn)(void *arg),
                        void *arg, struct sg_error *err)
    SG_WARN_UNUSED_RESULT;

/* Refuse new jobs, run the queued ones, join the threads and free.
   NULL-safe. */
void sg_cred_workers_stop(struct sg_cred_workers *w);

#endif /* SG_CRED_WORKERS_H */
