/*
 * main.c: sgbench entry point: options, set-up, the measured window and
 * the server CPU sampling.
 */
#include "internal.h"

#include "sgbench.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <grpc/slice.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_METHOD "/grpc.health.v1.Health/Check"
#define DEFAULT_CONCURRENCY 16
#define DEFAULT_DURATION_S 10.0
#define DEFAULT_WARMUP_S 1.0
#define DEFAULT_SPIN_US 1500
#define MAX_DATA (64L * 1024 * 1024)
#define MAX_WORKERS 256
#define MAX_CONNECTIONS 4096
#define MAX_CONCURRENCY 1000000

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: sgbench [OPTIONS]\n"
            "\n"
            "Load generator for one unary gRPC method (gRPC C core, async).\n"
            "\n"
            "Call:\n"
            "  --method PATH        full method path (default "
            DEFAULT_METHOD ")\n"
            "  --data-file FILE     request: the serialized message in FILE\n"
            "  --data-hex HEX       request: the serialized message as hex\n"
            "                       (default: an empty message)\n"
            "\n"
            "Load:\n"
            "  -c, --concurrency N  outstanding calls in total (default %d;\n"
            "                       with --rate: the most in flight)\n"
            "  --connections C      channels, one TCP connection each "
            "(default 1)\n"
            "  --threads T          worker threads, one CQ each (default 1)\n"
            "  --rate R             open loop: offer R calls/s in total;\n"
            "                       latency counts from the intended send "
            "time\n"
            "                       (default: closed loop)\n"
            "  --spin-us US         open loop: busy-poll for the last US "
            "microseconds\n"
            "                       before each send, because CQ timeouts "
            "are\n"
            "                       whole milliseconds (default %d; 0 = "
            "never poll,\n"
            "                       sends then lag up to ~1 ms; use 0 when "
            "sgbench\n"
            "                       shares a core with the server)\n"
            "  --duration S         measured seconds (default %g unless "
            "--calls)\n"
            "  --calls N            stop after N measured calls\n"
            "  --warmup S           unmeasured seconds first (default %g)\n"
            "\n"
            "Measurement:\n"
            "  --server-pid PID     also report the server's CPU time "
            "(utime+stime\n"
            "                       from /proc/PID/stat) per call\n"
            "  --json               machine-readable output\n"
            "\n"
            "Connection:\n" TOOL_CONN_OPTS_HELP
            "  -h, --help           this help\n"
            "\n"
            "Exit codes: 0 every measured call was OK; 1 some calls failed "
            "or none\n"
            "completed; 2 usage; 3 local error; 10+N the server cannot be "
            "reached\n"
            "(probe failed with gRPC status N); 130 interrupted (results are "
            "still\n"
            "printed).\n",
            DEFAULT_CONCURRENCY, DEFAULT_SPIN_US, DEFAULT_DURATION_S,
            DEFAULT_WARMUP_S);
}

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode hex (whitespace and ':' between bytes allowed) into cfg->data. */
static int parse_hex(struct sgb_config *cfg, const char *hex)
{
    size_t n = strlen(hex);
    unsigned char *out = malloc(n / 2 + 1);
    size_t len = 0;
    int hi = -1;

    if (out == NULL) {
        tool_err("out of memory");
        return -1;
    }
    for (const char *p = hex; *p != '\0'; p++) {
        int d;

        if (hi < 0 && (isspace((unsigned char)*p) || *p == ':'))
            continue;
        d = hex_digit((unsigned char)*p);
        if (d < 0) {
            tool_err("--data-hex: '%c' is not a hex digit", *p);
            free(out);
            return -1;
        }
        if (hi < 0) {
            hi = d;
        } else {
            out[len++] = (unsigned char)(hi << 4 | d);
            hi = -1;
        }
    }
    if (hi >= 0) {
        tool_err("--data-hex: odd number of hex digits");
        free(out);
        return -1;
    }
    free(cfg->data);
    cfg->data = out;
    cfg->data_len = len;
    return 0;
}

/* Match "--name VALUE" / "--name=VALUE"; *bad is set on a missing value. */
static bool opt(int argc, char **argv, int *i, const char *name,
                const char **v, bool *bad)
{
    int r = tool_opt_value(argc, argv, i, name, v);

    if (r < 0)
        *bad = true;
    return r > 0;
}

/* Returns 0, 1 for --help, or -1 (printed). */
static int parse_args(int argc, char **argv, struct sgb_config *cfg)
{
    const char *data_file = NULL;
    const char *data_hex = NULL;
    bool bad = false;
    bool duration_set = false;
    long l = 0;

    for (int i = 1; i < argc && !bad; i++) {
        const char *v = NULL;
        int r;

        if (STREQ(argv[i], "-h") || STREQ(argv[i], "--help"))
            return 1;
        if (STREQ(argv[i], "--json")) {
            cfg->json = true;
            continue;
        }
        r = tool_conn_opts_parse(&cfg->conn, argc, argv, &i);
        if (r < 0)
            return -1;
        if (r > 0)
            continue;
        if (opt(argc, argv, &i, "--method", &v, &bad)) {
            cfg->method = v;
        } else if (opt(argc, argv, &i, "--data-file", &v, &bad)) {
            data_file = v;
        } else if (opt(argc, argv, &i, "--data-hex", &v, &bad)) {
            data_hex = v;
        } else if (opt(argc, argv, &i, "-c", &v, &bad) ||
                   opt(argc, argv, &i, "--concurrency", &v, &bad)) {
            if (tool_parse_long("--concurrency", v, 1, MAX_CONCURRENCY,
                                &cfg->concurrency) < 0)
                return -1;
        } else if (opt(argc, argv, &i, "--connections", &v, &bad)) {
            if (tool_parse_long("--connections", v, 1, MAX_CONNECTIONS,
                                &cfg->connections) < 0)
                return -1;
        } else if (opt(argc, argv, &i, "--threads", &v, &bad)) {
            if (tool_parse_long("--threads", v, 1, MAX_WORKERS,
                                &cfg->threads) < 0)
                return -1;
        } else if (opt(argc, argv, &i, "--rate", &v, &bad)) {
            if (tool_parse_double("--rate", v, 0.001, 1e9, &cfg->rate) < 0)
                return -1;
        } else if (opt(argc, argv, &i, "--spin-us", &v, &bad)) {
            if (tool_parse_long("--spin-us", v, 0, 1000000, &l) < 0)
                return -1;
            cfg->spin_ns = (int64_t)l * 1000;
        } else if (opt(argc, argv, &i, "--duration", &v, &bad)) {
            if (tool_parse_double("--duration", v, 0.001, 1e7,
                                  &cfg->duration_s) < 0)
                return -1;
            duration_set = true;
        } else if (opt(argc, argv, &i, "--calls", &v, &bad)) {
            if (tool_parse_long("--calls", v, 1, LONG_MAX, &l) < 0)
                return -1;
            cfg->calls = l;
        } else if (opt(argc, argv, &i, "--warmup", &v, &bad)) {
            if (tool_parse_double("--warmup", v, 0.0, 1e6, &cfg->warmup_s) <
                0)
                return -1;
        } else if (opt(argc, argv, &i, "--server-pid", &v, &bad)) {
            if (tool_parse_long("--server-pid", v, 1, INT32_MAX,
                                &cfg->server_pid) < 0)
                return -1;
        } else if (!bad) {
            tool_err("unknown argument '%s' (see --help)", argv[i]);
            return -1;
        }
    }
    if (bad)
        return -1;

    if (cfg->method[0] != '/') {
        tool_err("--method must be a full path such as " DEFAULT_METHOD);
        return -1;
    }
    if (data_file != NULL && data_hex != NULL) {
        tool_err("give --data-file or --data-hex, not both");
        return -1;
    }
    if (data_file != NULL) {
        char *buf = NULL;
        size_t len = 0;

        if (tool_read_file(data_file, MAX_DATA, &buf, &len) < 0)
            return -1;
        cfg->data = (unsigned char *)buf;
        cfg->data_len = len;
    }
    if (data_hex != NULL && parse_hex(cfg, data_hex) < 0)
        return -1;
    if (!duration_set && cfg->calls == 0)
        cfg->duration_s = DEFAULT_DURATION_S;
    if (cfg->threads > cfg->concurrency) {
        tool_err("--threads (%ld) is more than --concurrency (%ld)",
                 cfg->threads, cfg->concurrency);
        return -1;
    }
    if (cfg->connections > cfg->concurrency) {
        tool_err("--connections (%ld) is more than --concurrency (%ld)",
                 cfg->connections, cfg->concurrency);
        return -1;
    }
    return tool_conn_opts_finish(&cfg->conn);
}

/*
 * CPU seconds (utime + stime) of process pid from /proc/PID/stat. Fields
 * 14 and 15; the command name (field 2) may contain spaces and parentheses,
 * so parsing starts after the last ')'.
 */
static int read_proc_cpu(long pid, double *seconds)
{
    char path[64];
    char *text = NULL;
    size_t len = 0;
    const char *p;
    unsigned long long ticks = 0;
    int ret = -1;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (tool_read_file(path, 64 * 1024, &text, &len) < 0)
        goto cleanup;
    p = strrchr(text, ')');
    if (p == NULL) {
        tool_err("cannot parse %s", path);
        goto cleanup;
    }
    p++;
    /* After ')' come fields 3 (state), 4, ...; utime is the 12th token. */
    for (int field = 3; field <= 15; field++) {
        char *end = NULL;
        unsigned long long v;

        while (*p == ' ')
            p++;
        if (field == 3) {
            while (*p != ' ' && *p != '\0')
                p++;
            continue;
        }
        errno = 0;
        v = strtoull(p, &end, 10);
        if (errno != 0 || end == p) {
            tool_err("cannot parse %s", path);
            goto cleanup;
        }
        if (field >= 14)
            ticks += v;
        p = end;
    }
    *seconds = (double)ticks / (double)sysconf(_SC_CLK_TCK);
    ret = 0;

 cleanup:
    free(text);
    return ret;
}

static double self_cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void on_signal(int sig)
{
    (void)sig;
    sgb_request_stop();
}

static void sleep_until(int64_t t_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(t_ns / 1000000000),
                          .tv_nsec = (long)(t_ns % 1000000000)};

    while (!sgb_stop_requested() &&
           clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Run the workers over the window and fill res. Returns 0 or -1. */
static int run_window(struct sgb_run *run, struct sgb_result *res)
{
    const struct sgb_config *cfg = run->cfg;
    struct sgb_worker **workers = NULL;
    size_t n_started = 0;
    double srv0 = 0;
    double srv1 = 0;
    double cli0 = 0;
    bool srv_ok = true;
    int ret = -1;

    workers = calloc((size_t)cfg->threads, sizeof(*workers));
    if (workers == NULL) {
        tool_err("out of memory");
        goto cleanup;
    }
    run->start_ns = sgb_now_ns();
    run->measure_start_ns = run->start_ns + (int64_t)(cfg->warmup_s * 1e9);
    run->end_ns = cfg->duration_s > 0
                      ? run->measure_start_ns + (int64_t)(cfg->duration_s * 1e9)
                      : INT64_MAX;
    for (size_t i = 0; i < (size_t)cfg->threads; i++) {
        workers[i] = sgb_worker_new(run, i);
        if (workers[i] == NULL)
            goto cleanup;
    }
    for (size_t i = 0; i < (size_t)cfg->threads; i++) {
        if (sgb_worker_start(workers[i]) < 0) {
            sgb_request_stop();
            break;
        }
        n_started++;
    }

    sleep_until(run->measure_start_ns);
    if (cfg->server_pid > 0 && read_proc_cpu(cfg->server_pid, &srv0) < 0)
        srv_ok = false;
    cli0 = self_cpu_s();

    for (size_t i = 0; i < n_started; i++) {
        sgb_worker_join(workers[i], &res->stats);
        workers[i] = NULL;
    }
    if (cfg->server_pid > 0 && srv_ok &&
        read_proc_cpu(cfg->server_pid, &srv1) < 0)
        srv_ok = false;
    res->client_cpu_s = self_cpu_s() - cli0;
    res->client_cpu_valid = true;
    if (cfg->server_pid > 0 && srv_ok) {
        res->server_cpu_s = srv1 - srv0;
        res->server_cpu_valid = true;
    }
    if (res->stats.calls > 0)
        res->elapsed_s =
            (double)(res->stats.last_end_ns - run->measure_start_ns) / 1e9;
    res->interrupted = sgb_stop_requested();
    ret = n_started == (size_t)cfg->threads ? 0 : -1;

 cleanup:
    if (workers != NULL) {
        for (size_t i = 0; i < (size_t)cfg->threads; i++)
            sgb_worker_free(workers[i]);
    }
    free(workers);
    return ret;
}

int main(int argc, char **argv)
{
    struct sgb_config cfg;
    struct sgb_run run;
    struct sgb_result *res = NULL;
    grpc_status_code probe_status = GRPC_STATUS_OK;
    bool grpc_up = false;
    int ret = TOOL_EXIT_USAGE;
    int r;

    tool_progname = "sgbench";
    memset(&cfg, 0, sizeof(cfg));
    memset(&run, 0, sizeof(run));
    tool_conn_opts_init(&cfg.conn);
    cfg.kind = SGB_CALL_UNARY;
    cfg.method = DEFAULT_METHOD;
    cfg.concurrency = DEFAULT_CONCURRENCY;
    cfg.connections = 1;
    cfg.threads = 1;
    cfg.warmup_s = DEFAULT_WARMUP_S;
    cfg.spin_ns = (int64_t)DEFAULT_SPIN_US * 1000;

    r = parse_args(argc, argv, &cfg);
    if (r != 0) {
        if (r > 0) {
            usage(stdout);
            ret = TOOL_EXIT_OK;
        }
        goto cleanup;
    }
    ret = TOOL_EXIT_LOCAL;
    if (cfg.server_pid > 0) {
        double unused;

        if (read_proc_cpu(cfg.server_pid, &unused) < 0)
            goto cleanup;
    }
    res = calloc(1, sizeof(*res));
    if (res == NULL) {
        tool_err("out of memory");
        goto cleanup;
    }
    sgb_stats_init(&res->stats);

    tool_grpc_logging(cfg.conn.verbose);
    grpc_init();
    grpc_up = true;
    {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }

    run.cfg = &cfg;
    run.method = grpc_slice_from_static_string(cfg.method);
    run.request = cfg.data_len > 0
                      ? grpc_slice_from_copied_buffer((const char *)cfg.data,
                                                      cfg.data_len)
                      : grpc_empty_slice();
    run.n_md = (size_t)tool_auth_metadata(&cfg.conn, &run.md[0]);
    run.channels = calloc((size_t)cfg.connections, sizeof(*run.channels));
    if (run.channels == NULL) {
        tool_err("out of memory");
        goto cleanup;
    }
    for (long i = 0; i < cfg.connections; i++) {
        /* Own subchannel pool: each channel gets its own connection. */
        grpc_arg args[2] = {
            {.type = GRPC_ARG_INTEGER,
             .key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
             .value.integer = 1},
            /* A load generator must not hide failures behind retries. */
            {.type = GRPC_ARG_INTEGER,
             .key = (char *)GRPC_ARG_ENABLE_RETRIES,
             .value.integer = 0},
        };

        run.channels[i] = tool_channel_new(&cfg.conn, args, 2);
        if (run.channels[i] == NULL)
            goto cleanup;
        run.n_channels++;
    }

    ret = sgb_probe(&run, &probe_status);
    if (ret != TOOL_EXIT_OK)
        goto cleanup;
    if (probe_status != GRPC_STATUS_OK && !cfg.json)
        fprintf(stderr, "sgbench: note: the probe call returned %s\n",
                tool_status_name(probe_status));

    if (run_window(&run, res) < 0) {
        ret = TOOL_EXIT_LOCAL;
        goto cleanup;
    }
    sgb_report(&cfg, res);
    if (res->interrupted)
        ret = TOOL_EXIT_INTERRUPTED;
    else if (res->stats.calls == 0 ||
             res->stats.status[GRPC_STATUS_OK] != res->stats.calls)
        ret = TOOL_EXIT_FAILURE;
    else
        ret = TOOL_EXIT_OK;

 cleanup:
    for (size_t i = 0; i < run.n_channels; i++)
        grpc_channel_destroy(run.channels[i]);
    free(run.channels);
    if (run.n_md > 0)
        tool_metadata_clear(&run.md[0]);
    grpc_slice_unref(run.request);
    if (grpc_up)
        grpc_shutdown();
    free(res);
    free(cfg.data);
    return ret;
}
