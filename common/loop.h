/*
 * loop.h: hand work to the libuv loop thread from any thread.
 *
 * The reconciler and the drivers live on the loop thread; request handlers
 * run on completion-queue threads and the store runs its callbacks on its
 * writer thread. sg_loop_post queues a function to run on the loop, in
 * posting order, woken through one uv_async_t.
 *
 * OWNERSHIP: the caller owns the queue; sg_loop_queue_close frees it once
 * its handle is closed. Items still queued at close run first (so their
 * owners can free what they carry), with the queue already refusing posts.
 * THREAD SAFETY: sg_loop_post from any thread; new and close on the loop
 * thread only.
 */
#ifndef SG_LOOP_H
#define SG_LOOP_H

#include "internal.h"
#include "error.h"

#include <uv.h>

struct sg_loop_queue;

typedef void (*sg_loop_fn)(void *arg);

/* A queue bound to loop. NULL with err set when out of memory. */
struct sg_loop_queue *sg_loop_queue_new(uv_loop_t *loop, struct sg_error *err)
    SG_WARN_UNUSED_RESULT;

/*
 * Run fn(arg) on the loop thread soon. Returns 0, or -1 when the queue is
 * closing or memory is out: then fn never runs and arg stays the caller's.
 */
int sg_loop_post(struct sg_loop_queue *q, sg_loop_fn fn, void *arg)
    SG_WARN_UNUSED_RESULT;

/* Refuse new posts, run what is queued, close the handle, free. NULL-safe. */
void sg_loop_queue_close(struct sg_loop_queue *q);

#endif /* SG_LOOP_H */
