/*
 * sgbench.h: the sgbench load generator.
 *
 * sgbench drives one unary method of a gRPC server with the C core's async
 * API: T worker threads, each with its own completion queue, keep up to N
 * calls outstanding over C channels (one TCP connection each). Either closed
 * loop (a finished call is replaced at once) or open loop at a fixed offered
 * rate, where latency is measured from the intended send time so that a
 * slow server cannot hide its queueing (no coordinated omission).
 *
 * Module map:
 *   main.c       options, set-up, the measured window, server CPU sampling
 *   bench.c      worker threads, call slots, the unary call batch
 *   histogram.c  log-linear latency histogram (HDR style)
 *   report.c     text and JSON output
 *
 * A worker owns everything it touches in its loop (its slots, stats, CQ);
 * the only shared state is read-only configuration, the channels (which
 * the C core makes thread-safe) and a few atomics in struct sgb_run.
 *
 * Only unary calls exist for now; enum sgb_call_kind and the per-kind
 * switch in bench.c are where streaming calls will go.
 */
#ifndef SG_SGBENCH_H
#define SG_SGBENCH_H

#include "internal.h"

#include "tool.h"

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>

/* Histogram: 2^SGB_HIST_SUB_BITS sub-buckets per power of two (<0.8%). */
#define SGB_HIST_SUB_BITS 7
#define SGB_HIST_SUB (1u << SGB_HIST_SUB_BITS)
#define SGB_HIST_BUCKETS ((64 - SGB_HIST_SUB_BITS + 1) * SGB_HIST_SUB)

/*
 * A log-linear histogram of non-negative integer values (nanoseconds here).
 * Exact min/max/sum are kept beside the buckets. Not thread-safe: one per
 * worker, merged at the end.
 */
struct sgb_histogram {
    uint64_t counts[SGB_HIST_BUCKETS];
    uint64_t total;
    uint64_t min;
    uint64_t max;
    double sum;
};

void sgb_hist_init(struct sgb_histogram *h);
void sgb_hist_record(struct sgb_histogram *h, uint64_t value);
void sgb_hist_merge(struct sgb_histogram *dst, const struct sgb_histogram *src);
/* Highest value equivalent to the p-th percentile (0 < p <= 100); 0 if
 * empty. Clamped to the exact max. */
uint64_t sgb_hist_percentile(const struct sgb_histogram *h, double p);
double sgb_hist_mean(const struct sgb_histogram *h);

enum sgb_call_kind {
    SGB_CALL_UNARY, /* one batch of six ops */
};

/* Status counters: one per canonical code, plus one for anything else. */
#define SGB_STATUS_SLOTS 18

struct sgb_config {
    struct tool_conn_opts conn;
    enum sgb_call_kind kind;
    const char *method;    /* "/package.Service/Method"; borrowed */
    unsigned char *data;   /* owned: the serialized request */
    size_t data_len;
    long concurrency;      /* outstanding calls, total */
    long connections;      /* channels, one connection each */
    long threads;          /* workers, one CQ each */
    double rate;           /* calls/s offered in total; 0 = closed loop */
    int64_t spin_ns;       /* open loop: poll this long before a send */
    double duration_s;     /* measured window; 0 = until calls reached */
    long long calls;       /* measured calls to make; 0 = no limit */
    double warmup_s;       /* unmeasured lead-in */
    long server_pid;       /* 0 = do not sample the server's CPU */
    bool json;
};

/* What one worker measured (merged over workers for the report). */
struct sgb_stats {
    struct sgb_histogram latency;  /* measured calls, ns */
    struct sgb_histogram send_lag; /* open loop: actual - intended send, ns */
    uint64_t status[SGB_STATUS_SLOTS];
    uint64_t calls;          /* measured calls completed */
    uint64_t warmup_calls;   /* unmeasured calls completed */
    uint64_t batch_failures; /* a batch completed with success == 0 */
    int64_t last_end_ns;     /* completion time of the last measured call */
};

/* State shared by all workers during a run. */
struct sgb_run {
    const struct sgb_config *cfg;
    grpc_channel **channels; /* owned by main */
    size_t n_channels;
    grpc_slice method;       /* static slice over cfg->method */
    grpc_slice request;      /* the request bytes; each send refs it */
    grpc_metadata md[1];     /* authorization, if any */
    size_t n_md;
    int64_t start_ns;         /* monotonic ns: the run starts */
    int64_t measure_start_ns; /* start_ns + warmup */
    int64_t end_ns;           /* stop issuing; INT64_MAX if unbounded */
    atomic_llong measured_issued; /* measured calls started (for --calls) */
};

struct sgb_worker;

/* Monotonic clock in nanoseconds (CLOCK_MONOTONIC). */
int64_t sgb_now_ns(void);

/* Ask every worker to stop issuing and drain (async-signal-safe). */
void sgb_request_stop(void);
bool sgb_stop_requested(void);

/*
 * Create worker i (its CQ and call slots); the caller starts it with
 * sgb_worker_start() and collects it with sgb_worker_join(), which also
 * adds its stats to *total and frees it. Returns NULL when out of memory
 * (printed).
 */
struct sgb_worker *sgb_worker_new(struct sgb_run *run, size_t index);
int sgb_worker_start(struct sgb_worker *w);
void sgb_worker_join(struct sgb_worker *w, struct sgb_stats *total);
/* Free a worker that was never started. NULL-safe. */
void sgb_worker_free(struct sgb_worker *w);

/*
 * Make one call on every channel, all at once, to connect them before the
 * run. Returns 0 when every channel answered (any status but UNAVAILABLE and
 * DEADLINE_EXCEEDED), else the process exit code for the failure (printed).
 */
int sgb_probe(struct sgb_run *run, grpc_status_code *first_status);

/* Results of the measured window (main.c), for the report. */
struct sgb_result {
    struct sgb_stats stats;
    double elapsed_s;      /* measure start to last measured completion */
    bool server_cpu_valid;
    double server_cpu_s;   /* delta of utime+stime of cfg->server_pid */
    bool client_cpu_valid;
    double client_cpu_s;   /* delta of this process's utime+stime */
    bool interrupted;
};

void sgb_stats_init(struct sgb_stats *s);
void sgb_stats_merge(struct sgb_stats *dst, const struct sgb_stats *src);

/* Print the report to stdout, as text or JSON (cfg->json). */
void sgb_report(const struct sgb_config *cfg, const struct sgb_result *res);

#endif /* SG_SGBENCH_H */
