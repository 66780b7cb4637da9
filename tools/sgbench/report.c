/*
 * report.c: sgbench output, as text for people or as JSON for scripts.
 *
 * The JSON object is flat apart from "status" (counts by code name), and
 * writes one key per line, so that shell scripts can pick values with
 * line tools as well as with a JSON parser. Latencies are microseconds.
 * Keys whose value could not be measured are null.
 */
#include "internal.h"

#include "sgbench.h"

#include <grpc/grpc.h>
#include <stdio.h>

static const char *security_name(const struct tool_conn_opts *c)
{
    if (!c->tls)
        return "plaintext";
    return c->cert_file != NULL ? "mtls" : "tls";
}

static const char *status_slot_name(size_t i)
{
    if (i == SGB_STATUS_SLOTS - 1)
        return "OTHER";
    return tool_status_name((grpc_status_code)i);
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

/* Write s as a JSON string literal. */
static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* Derived figures shared by both formats. */
struct derived {
    uint64_t ok;
    uint64_t errors;
    double calls_per_s;
    double srv_us_per_call;
    double calls_per_srv_s;
    double cli_us_per_call;
    bool have_srv;
};

static void derive(const struct sgb_result *res, struct derived *d)
{
    const struct sgb_stats *st = &res->stats;

    memset(d, 0, sizeof(*d));
    d->ok = st->status[GRPC_STATUS_OK];
    d->errors = st->calls - d->ok;
    if (res->elapsed_s > 0)
        d->calls_per_s = (double)st->calls / res->elapsed_s;
    d->have_srv = res->server_cpu_valid && st->calls > 0 &&
                  res->server_cpu_s > 0;
    if (d->have_srv) {
        d->srv_us_per_call = res->server_cpu_s * 1e6 / (double)st->calls;
        d->calls_per_srv_s = (double)st->calls / res->server_cpu_s;
    }
    if (res->client_cpu_valid && st->calls > 0)
        d->cli_us_per_call = res->client_cpu_s * 1e6 / (double)st->calls;
}

static void report_text(const struct sgb_config *cfg,
                        const struct sgb_result *res, const struct derived *d)
{
    const struct sgb_stats *st = &res->stats;
    const struct sgb_histogram *h = &st->latency;
    const char *sep = "";

    printf("sgbench %s (gRPC core %s)\n", SG_VERSION, grpc_version_string());
    printf("target     %s %s (%s)\n", cfg->conn.addr, cfg->method,
           security_name(&cfg->conn));
    if (cfg->rate > 0)
        printf("load       open loop, %.0f calls/s offered, at most %ld in "
               "flight, %ld connection(s), %ld thread(s)\n",
               cfg->rate, cfg->concurrency, cfg->connections, cfg->threads);
    else
        printf("load       closed loop, %ld outstanding, %ld connection(s), "
               "%ld thread(s)\n",
               cfg->concurrency, cfg->connections, cfg->threads);
    printf("window     %.3f s measured after %.3f s warm-up (%llu warm-up "
           "calls)%s\n",
           res->elapsed_s, cfg->warmup_s, (unsigned long long)st->warmup_calls,
           res->interrupted ? ", INTERRUPTED" : "");
    printf("calls      %llu: ok %llu, errors %llu\n",
           (unsigned long long)st->calls, (unsigned long long)d->ok,
           (unsigned long long)d->errors);
    if (d->errors > 0 || st->batch_failures > 0) {
        printf("status     ");
        for (size_t i = 0; i < SGB_STATUS_SLOTS; i++) {
            if (st->status[i] == 0)
                continue;
            printf("%s%s=%llu", sep, status_slot_name(i),
                   (unsigned long long)st->status[i]);
            sep = ", ";
        }
        if (st->batch_failures > 0)
            printf("%sbatch failures=%llu", sep,
                   (unsigned long long)st->batch_failures);
        printf("\n");
    }
    printf("throughput %.1f calls/s\n", d->calls_per_s);
    if (h->total > 0) {
        printf("latency us min %.1f  mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f  "
               "p99.9 %.1f  max %.1f\n",
               us(h->min), sgb_hist_mean(h) / 1000.0,
               us(sgb_hist_percentile(h, 50)), us(sgb_hist_percentile(h, 90)),
               us(sgb_hist_percentile(h, 99)),
               us(sgb_hist_percentile(h, 99.9)), us(h->max));
    }
    if (cfg->rate > 0 && st->send_lag.total > 0) {
        printf("send lag us p50 %.1f  p99 %.1f  max %.1f (actual - intended "
               "send time)\n",
               us(sgb_hist_percentile(&st->send_lag, 50)),
               us(sgb_hist_percentile(&st->send_lag, 99)),
               us(st->send_lag.max));
    }
    if (cfg->server_pid > 0) {
        if (d->have_srv)
            printf("server     pid %ld: %.2f CPU-s, %.1f CPU-us/call, %.0f "
                   "calls/CPU-s\n",
                   cfg->server_pid, res->server_cpu_s, d->srv_us_per_call,
                   d->calls_per_srv_s);
        else
            printf("server     pid %ld: CPU time not available\n",
                   cfg->server_pid);
    }
    if (res->client_cpu_valid)
        printf("client     %.2f CPU-s, %.1f CPU-us/call%s\n",
               res->client_cpu_s, d->cli_us_per_call,
               cfg->rate > 0 ? " (open loop polls: includes spinning)" : "");
}

static void json_num(const char *key, double v, bool valid, bool last)
{
    if (valid)
        printf("  \"%s\": %.10g%s\n", key, v, last ? "" : ",");
    else
        printf("  \"%s\": null%s\n", key, last ? "" : ",");
}

static void json_int(const char *key, long long v, bool valid)
{
    if (valid)
        printf("  \"%s\": %lld,\n", key, v);
    else
        printf("  \"%s\": null,\n", key);
}

static void report_json(const struct sgb_config *cfg,
                        const struct sgb_result *res, const struct derived *d)
{
    const struct sgb_stats *st = &res->stats;
    const struct sgb_histogram *h = &st->latency;
    bool lat = h->total > 0;
    bool lag = cfg->rate > 0 && st->send_lag.total > 0;
    const char *sep = "";

    printf("{\n");
    printf("  \"tool\": \"sgbench\",\n");
    printf("  \"version\": ");
    json_str(stdout, SG_VERSION);
    printf(",\n  \"grpc_core\": ");
    json_str(stdout, grpc_version_string());
    printf(",\n  \"target\": ");
    json_str(stdout, cfg->conn.addr);
    printf(",\n  \"method\": ");
    json_str(stdout, cfg->method);
    printf(",\n  \"security\": \"%s\",\n", security_name(&cfg->conn));
    printf("  \"mode\": \"%s\",\n", cfg->rate > 0 ? "open" : "closed");
    printf("  \"request_bytes\": %zu,\n", cfg->data_len);
    printf("  \"concurrency\": %ld,\n", cfg->concurrency);
    printf("  \"connections\": %ld,\n", cfg->connections);
    printf("  \"threads\": %ld,\n", cfg->threads);
    json_num("rate", cfg->rate, cfg->rate > 0, false);
    json_num("warmup_s", cfg->warmup_s, true, false);
    json_num("duration_s", cfg->duration_s, cfg->duration_s > 0, false);
    json_int("calls_limit", cfg->calls, cfg->calls > 0);
    printf("  \"interrupted\": %s,\n", res->interrupted ? "true" : "false");
    json_num("elapsed_s", res->elapsed_s, true, false);
    printf("  \"calls\": %llu,\n", (unsigned long long)st->calls);
    printf("  \"ok\": %llu,\n", (unsigned long long)d->ok);
    printf("  \"errors\": %llu,\n", (unsigned long long)d->errors);
    printf("  \"warmup_calls\": %llu,\n", (unsigned long long)st->warmup_calls);
    printf("  \"batch_failures\": %llu,\n",
           (unsigned long long)st->batch_failures);
    printf("  \"status\": {");
    for (size_t i = 0; i < SGB_STATUS_SLOTS; i++) {
        if (st->status[i] == 0)
            continue;
        printf("%s\"%s\": %llu", sep, status_slot_name(i),
               (unsigned long long)st->status[i]);
        sep = ", ";
    }
    printf("},\n");
    json_num("calls_per_s", d->calls_per_s, res->elapsed_s > 0, false);
    json_num("latency_min_us", us(h->min), lat, false);
    json_num("latency_mean_us", sgb_hist_mean(h) / 1000.0, lat, false);
    json_num("latency_p50_us", us(sgb_hist_percentile(h, 50)), lat, false);
    json_num("latency_p90_us", us(sgb_hist_percentile(h, 90)), lat, false);
    json_num("latency_p99_us", us(sgb_hist_percentile(h, 99)), lat, false);
    json_num("latency_p999_us", us(sgb_hist_percentile(h, 99.9)), lat, false);
    json_num("latency_max_us", us(h->max), lat, false);
    json_num("send_lag_p50_us", us(sgb_hist_percentile(&st->send_lag, 50)),
             lag, false);
    json_num("send_lag_p99_us", us(sgb_hist_percentile(&st->send_lag, 99)),
             lag, false);
    json_int("server_pid", cfg->server_pid, cfg->server_pid > 0);
    json_num("server_cpu_s", res->server_cpu_s, res->server_cpu_valid, false);
    json_num("server_cpu_us_per_call", d->srv_us_per_call, d->have_srv, false);
    json_num("calls_per_server_cpu_s", d->calls_per_srv_s, d->have_srv, false);
    json_num("client_cpu_s", res->client_cpu_s, res->client_cpu_valid, false);
    json_num("client_cpu_us_per_call", d->cli_us_per_call,
             res->client_cpu_valid && st->calls > 0, true);
    printf("}\n");
}

void sgb_report(const struct sgb_config *cfg, const struct sgb_result *res)
{
    struct derived d;

    derive(res, &d);
    if (cfg->json)
        report_json(cfg, res, &d);
    else
        report_text(cfg, res, &d);
    fflush(stdout);
}
