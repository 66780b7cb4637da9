/*
 * event_watchers.c: many WatchEvents streams from one process, on the gRPC
 * C core, for bench/run-events.py (grpcio cannot hold 10,000 streams
 * cheaply).
 *
 *   event_watchers --addr A --streams N [--connections C] [--threads T]
 *                  [--accepted-only] [--trigger-hex HEX]
 *   event_watchers --addr A --resume CYCLES [--streams P] [--max-read M]
 *
 * Hold mode (default): open N streams from now (with --accepted-only,
 * types [ACCEPTED]), wait until every one has the server's headers (the
 * subscription is in place), print {"ready": N, ...} and read commands on
 * stdin, one per line:
 *   trigger   send CreateSandbox (the --trigger-hex request) and wait
 *             until every stream has received one more event; print the
 *             delivery latency over the streams, counted from the send
 *   quit      cancel every stream, print the totals and exit
 * Every message is checked: each stream's seqs must increase.
 *
 * Resume mode: P consumers (--streams) share CYCLES disconnect/resume
 * cycles. A consumer opens a stream from the last seq it has, reads a
 * random number of events (1..M), cancels, and opens the next; every
 * event must be the one after the last (no filter: committed seqs have no
 * gaps). Prints {"cycles", "events", "gaps", "dups", "errors"}.
 *
 * Threads: T completion queues, one thread each; a stream lives on one
 * CQ and is touched only by its thread (and by the main thread before its
 * first batch), so it needs no lock. Channels use a local subchannel
 * pool, so C channels are C TCP connections.
 */
#include "internal.h"

#include "tool.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define WATCH_METHOD "/sandgate.v1.EventService/WatchEvents"
#define CREATE_METHOD "/sandgate.v1.SandboxService/CreateSandbox"
#define MAX_THREADS 16
#define MAX_CHANNELS 256
#define EVENT_ACCEPTED 1

enum tag_kind { TAG_START, TAG_RECV, TAG_STATUS };

struct stream;

struct tag {
    enum tag_kind kind;
    struct stream *s;
};

struct stream {
    size_t index;
    size_t cq;
    grpc_channel *channel;
    grpc_call *call;
    grpc_byte_buffer *send_bb;
    grpc_byte_buffer *recv_bb;
    grpc_metadata_array imd;
    grpc_metadata_array tmd;
    grpc_status_code status;
    grpc_slice details;
    struct tag t_start;
    struct tag t_recv;
    struct tag t_status;
    int pending;       /* batches in flight */
    bool headers;
    uint64_t last_seq; /* last event seq received */
    uint64_t count;    /* events received */
    int64_t arrival_ns; /* when the last event came */
    /* resume mode */
    uint64_t want;     /* events to read before cancelling */
    uint64_t got;      /* in this cycle */
    bool cancelled;
};

static struct {
    grpc_channel *channels[MAX_CHANNELS];
    size_t n_channels;
    grpc_completion_queue *cqs[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    size_t n_threads;
    struct stream *streams;
    size_t n_streams;
    bool accepted_only;
    bool resume;
    long cycles;
    long max_read;
    atomic_long ready;
    atomic_long events;
    atomic_long gaps;
    atomic_long dups;
    atomic_long errors;
    atomic_long cycles_done;
    atomic_long open;
    atomic_bool stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void wake_main(void)
{
    pthread_mutex_lock(&g.mu);
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
}

/* ---- protobuf, by hand ---------------------------------------------------- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;

    do {
        p[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            p[n] |= 0x80;
        n++;
    } while (v);
    return n;
}

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    unsigned shift = 0;

    *v = 0;
    while (*p < end && shift < 64) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
        shift += 7;
    }
    return false;
}

/* seq (field 1) and type (field 3) of a packed sandgate.v1.Event. */
static bool parse_event(const uint8_t *p, size_t len, uint64_t *seq, int *type)
{
    const uint8_t *end = p + len;

    *seq = 0;
    *type = 0;
    while (p < end) {
        uint64_t key, v;

        if (!get_varint(&p, end, &key))
            return false;
        switch (key & 7) {
        case 0:
            if (!get_varint(&p, end, &v))
                return false;
            if (key >> 3 == 1)
                *seq = v;
            else if (key >> 3 == 3)
                *type = (int)v;
            break;
        case 1:
            p += 8;
            break;
        case 2:
            if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return false;
            p += v;
            break;
        case 5:
            p += 4;
            break;
        default:
            return false;
        }
    }
    return p == end;
}

static grpc_byte_buffer *watch_request(uint64_t since)
{
    uint8_t buf[32];
    size_t n = 0;
    grpc_slice s;
    grpc_byte_buffer *bb;

    if (since) {
        buf[n++] = 1 << 3; /* since_seq */
        n += put_varint(buf + n, since);
    }
    if (g.accepted_only) {
        buf[n++] = 5 << 3 | 2; /* types, packed */
        buf[n++] = 1;
        buf[n++] = EVENT_ACCEPTED;
    }
    s = grpc_slice_from_copied_buffer((const char *)buf, n);
    bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* ---- streams -------------------------------------------------------------- */

static void start_recv(struct stream *s)
{
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &s->recv_bb;
    if (grpc_call_start_batch(s->call, &op, 1, &s->t_recv, NULL) ==
        GRPC_CALL_OK)
        s->pending++;
    else
        atomic_fetch_add(&g.errors, 1);
}

/* Start (or, in resume mode, restart) stream s from its last seq. */
static int start_stream(struct stream *s)
{
    grpc_op ops[5];
    grpc_slice method = grpc_slice_from_static_string(WATCH_METHOD);

    memset(ops, 0, sizeof(ops));
    s->call = grpc_channel_create_call(s->channel, NULL,
                                       GRPC_PROPAGATE_DEFAULTS,
                                       g.cqs[s->cq], method, NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME),
                                       NULL);
    if (!s->call)
        return -1;
    grpc_metadata_array_init(&s->imd);
    grpc_metadata_array_init(&s->tmd);
    s->send_bb = watch_request(s->last_seq);
    s->headers = false;
    s->cancelled = false;
    s->got = 0;
    if (g.resume)
        s->want = 1 + (uint64_t)(rand() % g.max_read);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->imd;
    if (grpc_call_start_batch(s->call, ops, 4, &s->t_start, NULL) !=
        GRPC_CALL_OK)
        return -1;
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &s->tmd;
    ops[0].data.recv_status_on_client.status = &s->status;
    ops[0].data.recv_status_on_client.status_details = &s->details;
    if (grpc_call_start_batch(s->call, ops, 1, &s->t_status, NULL) !=
        GRPC_CALL_OK)
        return -1;
    s->pending = 2;
    atomic_fetch_add(&g.open, 1);
    return 0;
}

static void on_event(struct stream *s, const uint8_t *data, size_t len)
{
    uint64_t seq;
    int type;

    if (!parse_event(data, len, &seq, &type)) {
        atomic_fetch_add(&g.errors, 1);
        return;
    }
    if (g.accepted_only && type != EVENT_ACCEPTED)
        atomic_fetch_add(&g.errors, 1);
    if (s->last_seq && seq <= s->last_seq)
        atomic_fetch_add(&g.dups, 1);
    else if (g.resume && s->last_seq && seq != s->last_seq + 1)
        atomic_fetch_add(&g.gaps, 1);
    if (seq > s->last_seq)
        s->last_seq = seq;
    s->got++;
    /* The main thread reads these two while it waits for a trigger. */
    __atomic_store_n(&s->arrival_ns, now_ns(), __ATOMIC_RELEASE);
    __atomic_store_n(&s->count, s->count + 1, __ATOMIC_RELEASE);
    atomic_fetch_add(&g.events, 1);
}

static void on_recv(struct stream *s, bool ok)
{
    grpc_byte_buffer *bb = s->recv_bb;

    s->recv_bb = NULL;
    if (!ok || !bb)
        return; /* the status follows */
    {
        grpc_byte_buffer_reader rd;
        grpc_slice sl;

        if (grpc_byte_buffer_reader_init(&rd, bb)) {
            sl = grpc_byte_buffer_reader_readall(&rd);
            grpc_byte_buffer_reader_destroy(&rd);
            on_event(s, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
            grpc_slice_unref(sl);
        }
    }
    grpc_byte_buffer_destroy(bb);
    if (g.resume && s->got >= s->want && !s->cancelled) {
        s->cancelled = true;
        grpc_call_cancel(s->call, NULL);
    }
    if (!s->cancelled)
        start_recv(s);
    wake_main();
}

static void finish_call(struct stream *s)
{
    grpc_call_unref(s->call);
    s->call = NULL;
    grpc_metadata_array_destroy(&s->imd);
    grpc_metadata_array_destroy(&s->tmd);
    grpc_slice_unref(s->details);
    if (s->send_bb)
        grpc_byte_buffer_destroy(s->send_bb);
    s->send_bb = NULL;
    atomic_fetch_sub(&g.open, 1);
}

static void on_status(struct stream *s)
{
    bool expected = s->status == GRPC_STATUS_CANCELLED &&
                    (s->cancelled || atomic_load(&g.stopping));

    if (!expected) {
        char *d = tool_slice_dup(s->details);

        fprintf(stderr, "stream %zu: %s %s\n", s->index,
                tool_status_name(s->status), d ? d : "");
        free(d);
        atomic_fetch_add(&g.errors, 1);
    }
    finish_call(s);
    if (g.resume && !atomic_load(&g.stopping)) {
        long done = atomic_fetch_add(&g.cycles_done, 1) + 1;

        if (done < g.cycles && start_stream(s) < 0)
            atomic_fetch_add(&g.errors, 1);
    }
    wake_main();
}

static void *cq_thread(void *arg)
{
    grpc_completion_queue *cq = arg;

    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        struct tag *t;
        struct stream *s;

        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        t = ev.tag;
        s = t->s;
        s->pending--;
        switch (t->kind) {
        case TAG_START:
            if (ev.success && !s->headers) {
                s->headers = true;
                atomic_fetch_add(&g.ready, 1);
                start_recv(s);
            }
            grpc_byte_buffer_destroy(s->send_bb);
            s->send_bb = NULL;
            wake_main();
            break;
        case TAG_RECV:
            on_recv(s, ev.success);
            break;
        case TAG_STATUS:
            on_status(s);
            break;
        }
    }
    return NULL;
}

/* ---- the trigger ------------------------------------------------------------ */

static int hex_decode(const char *hex, uint8_t **out, size_t *len)
{
    size_t n = strlen(hex);

    if (n % 2)
        return -1;
    *out = malloc(n / 2 + 1);
    if (!*out)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = 0;

        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + (size_t)k];

            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else
                return -1;
        }
        (*out)[i] = (uint8_t)v;
    }
    *len = n / 2;
    return 0;
}

/* One unary CreateSandbox, waited for on a private queue; its status. */
static grpc_status_code create_once(const uint8_t *req, size_t len)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_static_string(CREATE_METHOD);
    grpc_call *call = grpc_channel_create_call(
        g.channels[0], NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                     gpr_time_from_seconds(30, GPR_TIMESPAN)),
        NULL);
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)req, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_byte_buffer *resp = NULL;
    grpc_metadata_array imd, tmd;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details;
    grpc_op ops[6];
    int tag;

    grpc_slice_unref(s);
    grpc_metadata_array_init(&imd);
    grpc_metadata_array_init(&tmd);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &imd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &tmd;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(call, ops, 6, &tag, NULL) == GRPC_CALL_OK) {
        grpc_completion_queue_pluck(cq, &tag,
                                    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        grpc_slice_unref(details);
    }
    if (resp)
        grpc_byte_buffer_destroy(resp);
    grpc_byte_buffer_destroy(bb);
    grpc_metadata_array_destroy(&imd);
    grpc_metadata_array_destroy(&tmd);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return status;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* Send one create; report when every stream has one more event. */
static void trigger(const uint8_t *req, size_t len)
{
    uint64_t *before = calloc(g.n_streams, sizeof(*before));
    int64_t *lat = calloc(g.n_streams, sizeof(*lat));
    int64_t t0, t_created, deadline;
    grpc_status_code st;
    size_t missing = 0;

    if (!before || !lat) {
        free(before);
        free(lat);
        printf("{\"error\": \"out of memory\"}\n");
        return;
    }
    /* Counts are written by CQ threads; a stale read only makes the wait
       below look again. */
    for (size_t i = 0; i < g.n_streams; i++)
        before[i] = __atomic_load_n(&g.streams[i].count, __ATOMIC_ACQUIRE);
    t0 = now_ns();
    st = create_once(req, len);
    t_created = now_ns();
    deadline = t0 + 60LL * 1000000000;
    pthread_mutex_lock(&g.mu);
    for (;;) {
        struct timespec ts;

        missing = 0;
        for (size_t i = 0; i < g.n_streams; i++)
            if (__atomic_load_n(&g.streams[i].count, __ATOMIC_ACQUIRE) <=
                before[i])
                missing++;
        if (!missing || now_ns() > deadline)
            break;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&g.cv, &g.mu, &ts);
    }
    pthread_mutex_unlock(&g.mu);
    for (size_t i = 0; i < g.n_streams; i++)
        lat[i] = __atomic_load_n(&g.streams[i].arrival_ns, __ATOMIC_ACQUIRE) -
                 t0;
    qsort(lat, g.n_streams, sizeof(*lat), cmp_i64);
    printf("{\"trigger\": {\"status\": \"%s\", \"create_ms\": %.3f, "
           "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, "
           "\"max_ms\": %.3f, \"min_ms\": %.3f, \"missing\": %zu}}\n",
           tool_status_name(st), (double)(t_created - t0) / 1e6,
           (double)lat[g.n_streams / 2] / 1e6,
           (double)lat[g.n_streams * 9 / 10] / 1e6,
           (double)lat[g.n_streams * 99 / 100] / 1e6,
           (double)lat[g.n_streams - 1] / 1e6, (double)lat[0] / 1e6, missing);
    fflush(stdout);
    free(before);
    free(lat);
}

/* ---- main ------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: event_watchers --addr ADDR [--streams N] [--connections C]\n"
            "         [--threads T] [--accepted-only] [--trigger-hex HEX]\n"
            "         [--resume CYCLES [--max-read M]]\n");
}

static void wait_until(bool (*done)(void), long timeout_s)
{
    int64_t deadline = now_ns() + timeout_s * 1000000000LL;

    pthread_mutex_lock(&g.mu);
    while (!done() && now_ns() < deadline) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&g.cv, &g.mu, &ts);
    }
    pthread_mutex_unlock(&g.mu);
}

static bool all_ready(void)
{
    return atomic_load(&g.ready) + atomic_load(&g.errors) >=
           (long)g.n_streams;
}

static bool cycles_over(void)
{
    return atomic_load(&g.cycles_done) >= g.cycles ||
           atomic_load(&g.open) == 0;
}

static bool none_open(void)
{
    return atomic_load(&g.open) == 0;
}

int main(int argc, char **argv)
{
    struct tool_conn_opts o;
    long n_streams = 1, n_conns = 1, n_threads = 2;
    const char *trigger_hex = NULL;
    uint8_t *trigger_req = NULL;
    size_t trigger_len = 0;
    grpc_arg arg = {.type = GRPC_ARG_INTEGER,
                    .key = (char *)"grpc.use_local_subchannel_pool",
                    .value.integer = 1};
    char line[256];
    int64_t t_start;
    int ret = 0;

    tool_progname = "event_watchers";
    tool_conn_opts_init(&o);
    g.max_read = 50;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int rc = tool_conn_opts_parse(&o, argc, argv, &i);

        if (rc < 0)
            return 2;
        if (rc > 0)
            continue;
        if (tool_opt_value(argc, argv, &i, "--streams", &v) == 1) {
            if (tool_parse_long("--streams", v, 1, 1000000, &n_streams) < 0)
                return 2;
        } else if (tool_opt_value(argc, argv, &i, "--connections", &v) == 1) {
            if (tool_parse_long("--connections", v, 1, MAX_CHANNELS,
                                &n_conns) < 0)
                return 2;
        } else if (tool_opt_value(argc, argv, &i, "--threads", &v) == 1) {
            if (tool_parse_long("--threads", v, 1, MAX_THREADS,
                                &n_threads) < 0)
                return 2;
        } else if (tool_opt_value(argc, argv, &i, "--resume", &v) == 1) {
            if (tool_parse_long("--resume", v, 1, 100000000, &g.cycles) < 0)
                return 2;
            g.resume = true;
        } else if (tool_opt_value(argc, argv, &i, "--max-read", &v) == 1) {
            if (tool_parse_long("--max-read", v, 1, 1000000, &g.max_read) < 0)
                return 2;
        } else if (tool_opt_value(argc, argv, &i, "--trigger-hex", &v) == 1) {
            trigger_hex = v;
        } else if (STREQ(argv[i], "--accepted-only")) {
            g.accepted_only = true;
        } else {
            usage();
            return 2;
        }
    }
    if (tool_conn_opts_finish(&o) < 0)
        return 2;
    if (trigger_hex && hex_decode(trigger_hex, &trigger_req, &trigger_len) < 0) {
        tool_err("--trigger-hex: not hexadecimal");
        return 2;
    }
    tool_grpc_logging(o.verbose);
    grpc_init();
    g.n_channels = (size_t)n_conns;
    g.n_threads = (size_t)n_threads;
    g.n_streams = (size_t)n_streams;
    g.streams = calloc(g.n_streams, sizeof(*g.streams));
    if (!g.streams) {
        tool_err("out of memory");
        return 3;
    }
    for (size_t i = 0; i < g.n_channels; i++) {
        g.channels[i] = tool_channel_new(&o, &arg, 1);
        if (!g.channels[i])
            return 3;
    }
    for (size_t i = 0; i < g.n_threads; i++) {
        g.cqs[i] = grpc_completion_queue_create_for_next(NULL);
        pthread_create(&g.threads[i], NULL, cq_thread, g.cqs[i]);
    }
    srand((unsigned)now_ns());
    t_start = now_ns();
    for (size_t i = 0; i < g.n_streams; i++) {
        struct stream *s = &g.streams[i];

        s->index = i;
        s->cq = i % g.n_threads;
        s->channel = g.channels[i % g.n_channels];
        s->t_start = (struct tag){TAG_START, s};
        s->t_recv = (struct tag){TAG_RECV, s};
        s->t_status = (struct tag){TAG_STATUS, s};
        if (start_stream(s) < 0) {
            tool_err("cannot start stream %zu", i);
            atomic_fetch_add(&g.errors, 1);
        }
    }
    wait_until(all_ready, 120);
    printf("{\"ready\": %ld, \"errors\": %ld, \"open_s\": %.3f}\n",
           atomic_load(&g.ready), atomic_load(&g.errors),
           (double)(now_ns() - t_start) / 1e9);
    fflush(stdout);

    if (g.resume) {
        wait_until(cycles_over, 3600);
    } else {
        while (fgets(line, sizeof(line), stdin)) {
            if (STRPREFIX(line, "trigger") && trigger_req)
                trigger(trigger_req, trigger_len);
            else if (STRPREFIX(line, "quit"))
                break;
        }
    }
    atomic_store(&g.stopping, true);
    for (size_t i = 0; i < g.n_streams; i++)
        if (g.streams[i].call)
            grpc_call_cancel(g.streams[i].call, NULL);
    wait_until(none_open, 60);
    printf("{\"done\": {\"cycles\": %ld, \"events\": %ld, \"gaps\": %ld, "
           "\"dups\": %ld, \"errors\": %ld, \"open\": %ld}}\n",
           atomic_load(&g.cycles_done), atomic_load(&g.events),
           atomic_load(&g.gaps), atomic_load(&g.dups),
           atomic_load(&g.errors), atomic_load(&g.open));
    fflush(stdout);
    if (atomic_load(&g.open) == 0) {
        for (size_t i = 0; i < g.n_threads; i++) {
            grpc_completion_queue_shutdown(g.cqs[i]);
            pthread_join(g.threads[i], NULL);
            grpc_completion_queue_destroy(g.cqs[i]);
        }
        for (size_t i = 0; i < g.n_channels; i++)
            grpc_channel_destroy(g.channels[i]);
        free(g.streams);
        grpc_shutdown();
    } else {
        ret = 1;
    }
    free(trigger_req);
    tool_conn_opts_clear(&o);
    return ret || atomic_load(&g.errors) || atomic_load(&g.gaps) ||
                   atomic_load(&g.dups)
               ? 1
               : 0;
}
