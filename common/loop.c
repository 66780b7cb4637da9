/*
 * loop.c: a mutex-protected FIFO drained by a uv_async_t callback.
 */
#include "internal.h"

#include "loop.h"

#include <stdlib.h>

struct item {
    struct item *next;
    sg_loop_fn fn;
    void *arg;
};

struct sg_loop_queue {
    uv_async_t async;
    uv_mutex_t lock;
    struct item *head;
    struct item *tail;
    bool closing;
};

static void drain(struct sg_loop_queue *q)
{
    struct item *batch;

    /* Take the whole list at once: items posted while we run wait for the
       next wake-up, so a busy poster cannot starve the loop. */
    uv_mutex_lock(&q->lock);
    batch = q->head;
    q->head = q->tail = NULL;
    uv_mutex_unlock(&q->lock);

    while (batch) {
        struct item *next = batch->next;
        batch->fn(batch->arg);
        free(batch);
        batch = next;
    }
}

static void async_cb(uv_async_t *handle)
{
    drain(handle->data);
}

struct sg_loop_queue *sg_loop_queue_new(uv_loop_t *loop, struct sg_error *err)
{
    struct sg_loop_queue *q = calloc(1, sizeof(*q));

    if (!q) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    uv_mutex_init(&q->lock);
    uv_async_init(loop, &q->async, async_cb);
    q->async.data = q;
    return q;
}

int sg_loop_post(struct sg_loop_queue *q, sg_loop_fn fn, void *arg)
{
    struct item *it = malloc(sizeof(*it));

    if (!it)
        return -1;
    it->next = NULL;
    it->fn = fn;
    it->arg = arg;

    uv_mutex_lock(&q->lock);
    if (q->closing) {
        uv_mutex_unlock(&q->lock);
        free(it);
        return -1;
    }
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    /* Under the lock: close() takes the lock before closing the handle. */
    uv_async_send(&q->async);
    uv_mutex_unlock(&q->lock);
    return 0;
}

static void closed_cb(uv_handle_t *handle)
{
    struct sg_loop_queue *q = handle->data;

    uv_mutex_destroy(&q->lock);
    free(q);
}

void sg_loop_queue_close(struct sg_loop_queue *q)
{
    if (!q)
        return;
    uv_mutex_lock(&q->lock);
    q->closing = true;
    uv_mutex_unlock(&q->lock);
    drain(q);
    uv_close((uv_handle_t *)&q->async, closed_cb);
}
