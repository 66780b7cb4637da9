/*
 * histogram.c: log-linear histogram (the HdrHistogram layout).
 *
 * Values below 2^S (S = SGB_HIST_SUB_BITS) have a bucket each. Above that,
 * every power of two [2^e, 2^(e+1)) is split into 2^S equal sub-buckets, so
 * the relative error stays below 2^-S whatever the magnitude, with a fixed
 * 7424 counters covering the whole uint64_t range. Recording is O(1), and
 * percentiles are read by one walk over the counters: no samples are kept
 * or sorted.
 */
#include "internal.h"

#include "sgbench.h"

#include <math.h>

static size_t bucket_of(uint64_t v)
{
    unsigned e;

    if (v < SGB_HIST_SUB)
        return (size_t)v;
    e = 63u - (unsigned)__builtin_clzll(v); /* e >= S */
    return (size_t)(e - SGB_HIST_SUB_BITS + 1) * SGB_HIST_SUB +
           (size_t)((v >> (e - SGB_HIST_SUB_BITS)) - SGB_HIST_SUB);
}

/* Highest value that maps to bucket idx. */
static uint64_t bucket_high(size_t idx)
{
    size_t band = idx / SGB_HIST_SUB;
    uint64_t sub = idx % SGB_HIST_SUB;
    unsigned shift;

    if (band == 0)
        return (uint64_t)idx;
    shift = (unsigned)band - 1; /* e - S */
    return ((SGB_HIST_SUB + sub) << shift) + ((UINT64_C(1) << shift) - 1);
}

void sgb_hist_init(struct sgb_histogram *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void sgb_hist_record(struct sgb_histogram *h, uint64_t value)
{
    h->counts[bucket_of(value)]++;
    h->total++;
    h->sum += (double)value;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

void sgb_hist_merge(struct sgb_histogram *dst, const struct sgb_histogram *src)
{
    for (size_t i = 0; i < SGB_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t sgb_hist_percentile(const struct sgb_histogram *h, double p)
{
    uint64_t rank;
    uint64_t seen = 0;

    if (h->total == 0)
        return 0;
    if (p <= 0.0)
        return h->min;
    rank = (uint64_t)ceil(p / 100.0 * (double)h->total);
    if (rank < 1)
        rank = 1;
    if (rank > h->total)
        rank = h->total;
    for (size_t i = 0; i < SGB_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = bucket_high(i);

            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double sgb_hist_mean(const struct sgb_histogram *h)
{
    return h->total > 0 ? h->sum / (double)h->total : 0.0;
}
