/*
 * bench.c: sgbench worker threads and calls.
 *
 * Each worker owns one completion queue and a fixed array of call slots (its
 * share of --concurrency). A slot is either free or holds one call with one
 * batch in flight; the slot is the batch's tag. The loop:
 *
 *   1. start calls: closed loop fills every free slot at once; open loop
 *      starts each call whose intended time has come (earliest first) while
 *      a slot is free, so a saturated server delays sends and the delay is
 *      part of the measured latency;
 *   2. wait for one completion (or until the next intended send);
 *   3. record it and free the slot.
 *
 * When the window ends (time, --calls, or a signal) the worker stops
 * starting calls and drains; calls still outstanding after the call timeout
 * are cancelled so that the drain is bounded.
 *
 * A call counts as measured when its intended start is inside the measured
 * window (at or after the warm-up). Throughput is measured calls divided by
 * the time from the window start to the last measured completion.
 */
#include "internal.h"

#include "sgbench.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* The longest a worker blocks before looking at the clock and stop flag. */
#define MAX_WAIT_NS (50 * 1000 * 1000)

static atomic_int stop_flag;

void sgb_request_stop(void)
{
    atomic_store(&stop_flag, 1);
}

bool sgb_stop_requested(void)
{
    return atomic_load_explicit(&stop_flag, memory_order_relaxed) != 0;
}

int64_t sgb_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static gpr_timespec deadline_in_ns(int64_t ns)
{
    if (ns <= 0)
        return gpr_inf_past(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_nanos(ns, GPR_TIMESPAN));
}

void sgb_stats_init(struct sgb_stats *s)
{
    memset(s, 0, sizeof(*s));
    sgb_hist_init(&s->latency);
    sgb_hist_init(&s->send_lag);
}

void sgb_stats_merge(struct sgb_stats *dst, const struct sgb_stats *src)
{
    sgb_hist_merge(&dst->latency, &src->latency);
    sgb_hist_merge(&dst->send_lag, &src->send_lag);
    for (size_t i = 0; i < SGB_STATUS_SLOTS; i++)
        dst->status[i] += src->status[i];
    dst->calls += src->calls;
    dst->warmup_calls += src->warmup_calls;
    dst->batch_failures += src->batch_failures;
    if (src->last_end_ns > dst->last_end_ns)
        dst->last_end_ns = src->last_end_ns;
}

/* One call in flight; the slot's address is its batch tag. */
struct sgb_slot {
    grpc_channel *channel; /* borrowed from the run */
    grpc_call *call;
    grpc_byte_buffer *send_bb; /* emptied by SEND_MESSAGE; destroyed after */
    grpc_byte_buffer *recv_bb;
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_status_code status;
    grpc_slice details;
    grpc_op ops[6];
    int64_t intended_ns; /* latency is measured from here */
    bool measured;
};

struct sgb_worker {
    struct sgb_run *run;
    size_t index;
    pthread_t thread;
    grpc_completion_queue *cq;
    struct sgb_slot *slots;
    size_t n_slots;
    size_t *free_slots; /* stack of free slot indexes */
    size_t n_free;
    int64_t interval_ns; /* open loop: between this worker's sends */
    int64_t next_due_ns; /* open loop: intended time of the next send */
    bool stopping;       /* no more calls are started */
    int64_t stop_ns;
    bool cancelled;      /* outstanding calls were cancelled */
    struct sgb_stats stats;
};

/* Start a unary call in slot s: one batch of six ops. */
static int start_unary(struct sgb_worker *w, struct sgb_slot *s)
{
    struct sgb_run *run = w->run;
    grpc_call_error err;

    s->call = grpc_channel_create_call(
        s->channel, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq, run->method, NULL,
        deadline_in_ns((int64_t)(run->cfg->conn.timeout_s * 1e9)), NULL);
    /* A fresh byte buffer per send (SEND_MESSAGE moves the slices out). */
    s->send_bb = grpc_raw_byte_buffer_create(&run->request, 1);
    s->recv_bb = NULL;
    s->status = GRPC_STATUS_UNKNOWN;
    s->details = grpc_empty_slice();

    memset(s->ops, 0, sizeof(s->ops));
    s->ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    s->ops[0].data.send_initial_metadata.count = run->n_md;
    s->ops[0].data.send_initial_metadata.metadata =
        run->n_md > 0 ? run->md : NULL;
    s->ops[1].op = GRPC_OP_SEND_MESSAGE;
    s->ops[1].data.send_message.send_message = s->send_bb;
    s->ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    s->ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    s->ops[3].data.recv_initial_metadata.recv_initial_metadata =
        &s->initial_md;
    s->ops[4].op = GRPC_OP_RECV_MESSAGE;
    s->ops[4].data.recv_message.recv_message = &s->recv_bb;
    s->ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    s->ops[5].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    s->ops[5].data.recv_status_on_client.status = &s->status;
    s->ops[5].data.recv_status_on_client.status_details = &s->details;

    err = grpc_call_start_batch(s->call, s->ops, SG_N_ELEMENTS(s->ops), s,
                                NULL);
    if (err != GRPC_CALL_OK) {
        fprintf(stderr, "sgbench: grpc_call_start_batch failed (%d)\n",
                (int)err);
        return -1;
    }
    return 0;
}

/* Release what the finished call in s holds; the slot becomes reusable. */
static void slot_clear(struct sgb_slot *s)
{
    if (s->send_bb != NULL)
        grpc_byte_buffer_destroy(s->send_bb);
    if (s->recv_bb != NULL)
        grpc_byte_buffer_destroy(s->recv_bb);
    s->send_bb = NULL;
    s->recv_bb = NULL;
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    grpc_slice_unref(s->details);
    s->details = grpc_empty_slice();
    if (s->call != NULL)
        grpc_call_unref(s->call);
    s->call = NULL;
}

/*
 * Start one call intended at intended_ns (now for closed loop). Returns 0,
 * or -1 when no call was started (limit reached or error; the worker then
 * stops).
 */
static int start_call(struct sgb_worker *w, int64_t intended_ns, int64_t now)
{
    struct sgb_run *run = w->run;
    struct sgb_slot *s;
    bool measured = intended_ns >= run->measure_start_ns;
    size_t idx;

    if (measured && run->cfg->calls > 0 &&
        atomic_fetch_add(&run->measured_issued, 1) >= run->cfg->calls) {
        w->stopping = true;
        w->stop_ns = now;
        return -1;
    }
    idx = w->free_slots[--w->n_free];
    s = &w->slots[idx];
    s->intended_ns = intended_ns;
    s->measured = measured;
    if (measured && run->cfg->rate > 0)
        sgb_hist_record(&w->stats.send_lag, (uint64_t)(now - intended_ns));

    switch (run->cfg->kind) {
    case SGB_CALL_UNARY:
        if (start_unary(w, s) == 0)
            return 0;
        break;
    }
    /* The batch never started, so no tag will come back for it. */
    slot_clear(s);
    w->free_slots[w->n_free++] = idx;
    w->stopping = true;
    w->stop_ns = now;
    return -1;
}

static void complete_call(struct sgb_worker *w, struct sgb_slot *s, bool ok)
{
    int64_t now = sgb_now_ns();

    if (s->measured) {
        size_t code = (size_t)s->status;

        if (code >= SGB_STATUS_SLOTS - 1)
            code = SGB_STATUS_SLOTS - 1;
        sgb_hist_record(&w->stats.latency, (uint64_t)(now - s->intended_ns));
        w->stats.status[code]++;
        w->stats.calls++;
        if (!ok)
            w->stats.batch_failures++;
        if (now > w->stats.last_end_ns)
            w->stats.last_end_ns = now;
    } else {
        w->stats.warmup_calls++;
    }
    slot_clear(s);
    w->free_slots[w->n_free++] = (size_t)(s - w->slots);
}

static void start_due_calls(struct sgb_worker *w, int64_t now)
{
    if (w->run->cfg->rate <= 0) {
        while (w->n_free > 0 && !w->stopping)
            start_call(w, now, now);
        return;
    }
    while (w->n_free > 0 && !w->stopping && w->next_due_ns <= now &&
           w->next_due_ns < w->run->end_ns) {
        if (start_call(w, w->next_due_ns, now) == 0)
            w->next_due_ns += w->interval_ns;
    }
}

static void *worker_main(void *arg)
{
    struct sgb_worker *w = arg;
    struct sgb_run *run = w->run;
    const struct sgb_config *cfg = run->cfg;
    int64_t drain_ns = (int64_t)(cfg->conn.timeout_s * 1e9);

    for (;;) {
        int64_t now = sgb_now_ns();
        int64_t wait_ns = MAX_WAIT_NS;
        grpc_event ev;

        if (!w->stopping && (now >= run->end_ns || sgb_stop_requested())) {
            w->stopping = true;
            w->stop_ns = now;
        }
        if (!w->stopping)
            start_due_calls(w, now);
        if (w->stopping) {
            if (w->n_free == w->n_slots)
                break;
            if (!w->cancelled && now - w->stop_ns > drain_ns) {
                /* Bound the drain: the completions come back cancelled. */
                for (size_t i = 0; i < w->n_slots; i++) {
                    if (w->slots[i].call != NULL)
                        grpc_call_cancel(w->slots[i].call, NULL);
                }
                w->cancelled = true;
            }
        } else if (cfg->rate > 0 && w->n_free > 0) {
            int64_t until = w->next_due_ns - now;

            /*
             * CQ timeouts have millisecond granularity: block only until
             * spin_ns before the next send, then poll without blocking.
             */
            if (until <= cfg->spin_ns)
                wait_ns = 0;
            else if (until - cfg->spin_ns < wait_ns)
                wait_ns = until - cfg->spin_ns;
        }

        ev = grpc_completion_queue_next(w->cq, deadline_in_ns(wait_ns), NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            complete_call(w, ev.tag, ev.success != 0);
    }
    return NULL;
}

/* Allocate a worker with n free slots; slot i uses channel chan(i). */
static struct sgb_worker *worker_alloc(struct sgb_run *run, size_t index,
                                       size_t n, size_t chan_first,
                                       size_t chan_step)
{
    struct sgb_worker *w = NULL;
    struct sgb_worker *ret = NULL;

    w = calloc(1, sizeof(*w));
    if (w == NULL)
        goto cleanup;
    w->run = run;
    w->index = index;
    w->n_slots = n;
    w->slots = calloc(n, sizeof(*w->slots));
    w->free_slots = calloc(n, sizeof(*w->free_slots));
    if (w->slots == NULL || w->free_slots == NULL)
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        struct sgb_slot *s = &w->slots[i];

        s->channel = run->channels[(chan_first + i * chan_step) %
                                   run->n_channels];
        s->details = grpc_empty_slice();
        grpc_metadata_array_init(&s->initial_md);
        grpc_metadata_array_init(&s->trailing_md);
        /* Pop order: slot 0 first, spreading calls over the channels. */
        w->free_slots[i] = n - 1 - i;
    }
    w->n_free = n;
    sgb_stats_init(&w->stats);
    w->cq = grpc_completion_queue_create_for_next(NULL);
    ret = w;
    w = NULL;

 cleanup:
    if (ret == NULL)
        fprintf(stderr, "sgbench: out of memory\n");
    sgb_worker_free(w);
    return ret;
}

struct sgb_worker *sgb_worker_new(struct sgb_run *run, size_t index)
{
    const struct sgb_config *cfg = run->cfg;
    struct sgb_worker *w;
    size_t n = 0;

    /* Global slot g belongs to worker g % threads and channel g % conns. */
    for (long g = (long)index; g < cfg->concurrency; g += cfg->threads)
        n++;
    w = worker_alloc(run, index, n, index, (size_t)cfg->threads);
    if (w == NULL)
        return NULL;
    if (cfg->rate > 0) {
        double per_worker = cfg->rate / (double)cfg->threads;

        w->interval_ns = (int64_t)(1e9 / per_worker);
        if (w->interval_ns < 1)
            w->interval_ns = 1;
        /* Stagger the workers so that their sends interleave evenly. */
        w->next_due_ns =
            run->start_ns + (int64_t)((double)index * 1e9 / cfg->rate);
    }
    return w;
}

int sgb_worker_start(struct sgb_worker *w)
{
    int err = pthread_create(&w->thread, NULL, worker_main, w);

    if (err != 0) {
        char eb[128];

        fprintf(stderr, "sgbench: cannot start a worker thread: %s\n",
                strerror_r(err, eb, sizeof(eb)));
        return -1;
    }
    return 0;
}

void sgb_worker_free(struct sgb_worker *w)
{
    if (w == NULL)
        return;
    if (w->cq != NULL) {
        grpc_event ev;

        grpc_completion_queue_shutdown(w->cq);
        do {
            ev = grpc_completion_queue_next(
                w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        } while (ev.type != GRPC_QUEUE_SHUTDOWN);
        grpc_completion_queue_destroy(w->cq);
    }
    if (w->slots != NULL) {
        for (size_t i = 0; i < w->n_slots; i++) {
            grpc_metadata_array_destroy(&w->slots[i].initial_md);
            grpc_metadata_array_destroy(&w->slots[i].trailing_md);
        }
    }
    free(w->slots);
    free(w->free_slots);
    free(w);
}

void sgb_worker_join(struct sgb_worker *w, struct sgb_stats *total)
{
    pthread_join(w->thread, NULL);
    sgb_stats_merge(total, &w->stats);
    sgb_worker_free(w);
}

/*
 * Wait for the n probes started on w and judge them: the first status is
 * reported back; UNAVAILABLE or DEADLINE_EXCEEDED means the server cannot
 * be reached (printed once).
 */
static int probe_collect(struct sgb_worker *w, size_t n,
                         grpc_status_code *first_status)
{
    int ret = TOOL_EXIT_OK;

    for (size_t got = 0; got < n; got++) {
        grpc_event ev = grpc_completion_queue_next(
            w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        struct sgb_slot *s = ev.tag;

        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (got == 0)
            *first_status = s->status;
        if ((s->status == GRPC_STATUS_UNAVAILABLE ||
             s->status == GRPC_STATUS_DEADLINE_EXCEEDED) &&
            ret == TOOL_EXIT_OK) {
            char *msg = tool_slice_dup(s->details);

            if (msg != NULL)
                tool_sanitize(msg);
            tool_err("cannot reach %s: %s (%d): %s", w->run->cfg->conn.addr,
                     tool_status_name(s->status), (int)s->status,
                     msg != NULL ? msg : "");
            free(msg);
            ret = TOOL_EXIT_RPC_BASE + (int)s->status;
        }
        slot_clear(s);
    }
    return ret;
}

/* One probe call per channel, all in flight together on a private CQ. */
int sgb_probe(struct sgb_run *run, grpc_status_code *first_status)
{
    struct sgb_worker *w;
    size_t started = 0;
    int ret;

    *first_status = GRPC_STATUS_OK;
    w = worker_alloc(run, 0, run->n_channels, 0, 1);
    if (w == NULL)
        return TOOL_EXIT_LOCAL;
    for (size_t i = 0; i < w->n_slots; i++) {
        if (start_unary(w, &w->slots[i]) < 0) {
            slot_clear(&w->slots[i]);
            break;
        }
        started++;
    }
    ret = probe_collect(w, started, first_status);
    if (started < w->n_slots)
        ret = TOOL_EXIT_LOCAL;
    sgb_worker_free(w);
    return ret;
}
