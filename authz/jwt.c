/*
 * jwt.c: bearer JWT verification (see jwt.h).
 *
 * sg_jwt_verify first hashes the token and looks it up in the cache of
 * verified tokens (the path almost every call takes: a hash, a lookup and
 * a reference under one mutex). On a miss the token is split and decoded
 * strictly, its issuer chosen by "iss", its key by "kid" from the issuer's
 * current key set (a reference taken under keys_lock, so a fetch may swap
 * the set meanwhile), the signature checked, then the claims.
 *
 * Issuers with a jwks_uri or discovery get their keys from one fetch
 * thread per verifier. It sleeps on fetch_cond until the next issuer is
 * due: at start, every refresh_interval_s after a good fetch, with a
 * backoff after a failed one, and min_refresh_interval_s after the last
 * attempt when a token asked for an unknown kid. A set is replaced only
 * when the document changed, and then the cache is cleared.
 */
#include "internal.h"

#include "base64url.h"

#include "jwt.h"
#include "jwks.h"
#include "jwt_cache.h"
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

SG_LOG_INIT("authz.jwt");

#define CACHE_ENTRIES 4096
#define CACHE_TTL_S 300
#define DEFAULT_REFRESH_S 3600
#define DEFAULT_MIN_REFRESH_S 60
#define DEFAULT_MAX_TOKEN_BYTES 16384
#define MAX_TOKEN_BYTES_LIMIT (1024 * 1024)
#define BACKOFF_MAX_S 300
/* RSA-8192 signatures are the longest accepted. */
#define MAX_SIG_BYTES (SG_JWKS_RSA_MAX_BITS / 8)
#define DISCOVERY_PATH "/.well-known/openid-configuration"

struct issuer {
    struct sg_jwt_issuer_config cfg; /* defaults filled in */
    char *prefix;                    /* subject prefix in effect */
    bool fetched;                    /* jwks_uri or discovery */
    struct sg_jwks *keys;            /* keys_lock; NULL until loaded */
    /* The fetch schedule, under fetch_lock (monotonic milliseconds). */
    int64_t next_due_ms;
    int64_t last_attempt_ms;
    bool requested;
    bool attempted;
    unsigned failures;
};

struct sg_jwt_verifier {
    struct issuer *issuers;
    size_t n_issuers;
    size_t max_token_bytes; /* the largest of the issuers' limits */
    struct sg_jwt_cache *cache;
    EVP_MD *sha256;
    pthread_mutex_t keys_lock;

    struct sg_jwks_fetcher *fetcher; /* NULL: no fetched issuer */
    pthread_t thread;
    pthread_mutex_t fetch_lock;
    pthread_cond_t fetch_cond; /* wakes the fetch thread */
    pthread_cond_t ready_cond; /* an attempt finished */
    bool stopping;             /* fetch_lock */
};

/* ---- configuration ---- */

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return 0;
    *dst = strdup(src);
    return *dst != NULL ? 0 : -1;
}

int sg_jwt_issuer_config_copy(struct sg_jwt_issuer_config *dst,
                              const struct sg_jwt_issuer_config *src)
{
    *dst = *src;
    dst->issuer = NULL;
    dst->audiences = NULL;
    dst->n_audiences = 0;
    dst->jwks_file = dst->jwks_uri = dst->ca_file = NULL;
    dst->subject_claim = dst->groups_claim = dst->subject_prefix = NULL;
    if (dup_opt(&dst->issuer, src->issuer) < 0 ||
        dup_opt(&dst->jwks_file, src->jwks_file) < 0 ||
        dup_opt(&dst->jwks_uri, src->jwks_uri) < 0 ||
        dup_opt(&dst->ca_file, src->ca_file) < 0 ||
        dup_opt(&dst->subject_claim, src->subject_claim) < 0 ||
        dup_opt(&dst->groups_claim, src->groups_claim) < 0 ||
        dup_opt(&dst->subject_prefix, src->subject_prefix) < 0)
        goto error;
    if (src->n_audiences > 0) {
        if (src->audiences == NULL)
            goto error;
        dst->audiences = calloc(src->n_audiences, sizeof(*dst->audiences));
        if (dst->audiences == NULL)
            goto error;
        dst->n_audiences = src->n_audiences;
        for (size_t i = 0; i < src->n_audiences; i++) {
            if (dup_opt(&dst->audiences[i], src->audiences[i]) < 0)
                goto error;
        }
    }
    return 0;

 error:
    sg_jwt_issuer_config_clear(dst);
    return -1;
}

void sg_jwt_issuer_config_clear(struct sg_jwt_issuer_config *c)
{
    if (c == NULL)
        return;
    free(c->issuer);
    for (size_t i = 0; i < c->n_audiences; i++)
        free(c->audiences[i]);
    free(c->audiences);
    free(c->jwks_file);
    free(c->jwks_uri);
    free(c->ca_file);
    free(c->subject_claim);
    free(c->groups_claim);
    free(c->subject_prefix);
    memset(c, 0, sizeof(*c));
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;

    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* The discovery URL of an issuer: one trailing '/' dropped (OIDC
   Discovery 1.0 section 4). Caller frees; NULL when out of memory. */
static char *discovery_url(const char *issuer)
{
    size_t len = strlen(issuer);
    size_t size;
    char *url;

    if (len > 0 && issuer[len - 1] == '/')
        len--;
    size = len + sizeof(DISCOVERY_PATH);
    url = malloc(size);
    if (url != NULL)
        snprintf(url, size, "%.*s%s", (int)len, issuer, DISCOVERY_PATH);
    return url;
}

/* Read a whole file of at most SG_JWKS_MAX_BYTES into body. */
static int read_file(const char *path, struct sg_buf *body,
                     struct sg_error *err)
{
    char chunk[8192];
    char ebuf[128];
    FILE *f = fopen(path, "re");
    size_t n;
    int ret = -1;

    if (f == NULL) {
        sg_error_report(err, SG_ERR_CONFIG, "cannot open jwks_file '%s': %s",
                        path, sg_strerror(errno, ebuf, sizeof(ebuf)));
        return -1;
    }
    do {
        n = fread(chunk, 1, sizeof(chunk), f);
        sg_buf_add(body, chunk, n);
        if (body->len > SG_JWKS_MAX_BYTES) {
            sg_error_report(err, SG_ERR_CONFIG,
                            "jwks_file '%s' is larger than %d bytes", path,
                            SG_JWKS_MAX_BYTES);
            goto cleanup;
        }
    } while (n == sizeof(chunk));
    if (ferror(f)) {
        sg_error_report(err, SG_ERR_CONFIG, "cannot read jwks_file '%s'", path);
        goto cleanup;
    }
    if (sg_buf_error(body) < 0) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    ret = 0;

 cleanup:
    fclose(f);
    return ret;
}

/* Check cfg and fill is from it (defaults applied). */
static int issuer_init(struct issuer *is,
                       const struct sg_jwt_issuer_config *cfg,
                       struct sg_error *err)
{
    const char *name = cfg->issuer != NULL ? cfg->issuer : "";
    int sources = (cfg->jwks_file != NULL) + (cfg->jwks_uri != NULL) +
                  (cfg->discovery ? 1 : 0);
    char *url = NULL;
    int ret = -1;

    if (name[0] == '\0') {
        sg_error_report(err, SG_ERR_CONFIG, "a JWT issuer needs an issuer");
        return -1;
    }
    if (cfg->n_audiences == 0 || cfg->audiences == NULL) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "JWT issuer '%s' needs at least one audience", name);
        return -1;
    }
    for (size_t i = 0; i < cfg->n_audiences; i++) {
        if (cfg->audiences[i] == NULL || cfg->audiences[i][0] == '\0') {
            sg_error_report(err, SG_ERR_CONFIG,
                            "JWT issuer '%s' has an empty audience", name);
            return -1;
        }
    }
    if (cfg->algorithms == 0 ||
        (cfg->algorithms & ~(unsigned)(SG_JWT_ALG_RS256 | SG_JWT_ALG_ES256 |
                                       SG_JWT_ALG_EDDSA)) != 0) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "JWT issuer '%s' needs algorithms among RS256, "
                        "ES256 and EdDSA",
                        name);
        return -1;
    }
    if (sources != 1) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "JWT issuer '%s' needs exactly one of jwks_file, "
                        "jwks_uri and discovery",
                        name);
        return -1;
    }
    if (cfg->max_token_bytes > MAX_TOKEN_BYTES_LIMIT) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "JWT issuer '%s': max_token_bytes above %d", name,
                        MAX_TOKEN_BYTES_LIMIT);
        return -1;
    }
    if (cfg->subject_claim != NULL && cfg->subject_claim[0] == '\0') {
        sg_error_report(err, SG_ERR_CONFIG,
                        "JWT issuer '%s': subject_claim is empty", name);
        return -1;
    }
    if (cfg->discovery) {
        url = discovery_url(name);
        if (url == NULL) {
            sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
            return -1;
        }
    }
    if (url != NULL && sg_jwks_url_check(url, err) < 0)
        goto cleanup;
    if (cfg->jwks_uri != NULL && sg_jwks_url_check(cfg->jwks_uri, err) < 0)
        goto cleanup;
    if (cfg->ca_file != NULL && access(cfg->ca_file, R_OK) != 0) {
        char ebuf[128];

        sg_error_report(err, SG_ERR_CONFIG,
                        "JWT issuer '%s': cannot read ca_file '%s': %s", name,
                        cfg->ca_file, sg_strerror(errno, ebuf, sizeof(ebuf)));
        goto cleanup;
    }
    if (sg_jwt_issuer_config_copy(&is->cfg, cfg) < 0 ||
        (is->cfg.subject_claim == NULL &&
         dup_opt(&is->cfg.subject_claim, "sub") < 0)) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    if (is->cfg.refresh_interval_s == 0)
        is->cfg.refresh_interval_s = DEFAULT_REFRESH_S;
    if (is->cfg.min_refresh_interval_s == 0)
        is->cfg.min_refresh_interval_s = DEFAULT_MIN_REFRESH_S;
    if (is->cfg.max_token_bytes == 0)
        is->cfg.max_token_bytes = DEFAULT_MAX_TOKEN_BYTES;
    if (is->cfg.subject_prefix != NULL) {
        is->prefix = strdup(is->cfg.subject_prefix);
    } else {
        size_t size = strlen(name) + 2;

        is->prefix = malloc(size);
        if (is->prefix != NULL)
            snprintf(is->prefix, size, "%s#", name);
    }
    if (is->prefix == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    is->fetched = cfg->jwks_file == NULL;
    ret = 0;

 cleanup:
    free(url);
    return ret;
}

static int load_file_keys(struct issuer *is, struct sg_error *err)
{
    struct sg_buf body = SG_BUF_INIT;
    char source[512];
    int ret = -1;

    if (read_file(is->cfg.jwks_file, &body, err) < 0)
        goto cleanup;
    snprintf(source, sizeof(source), "JWT issuer '%s' jwks_file '%s'",
             is->cfg.issuer, is->cfg.jwks_file);
    is->keys = sg_jwks_parse(sg_buf_str(&body), body.len, source, err);
    if (is->keys == NULL)
        goto cleanup;
    SG_INFO("JWT issuer '%s': keys loaded from '%s': %zu", is->cfg.issuer,
            is->cfg.jwks_file, is->keys->n_keys);
    ret = 0;

 cleanup:
    sg_buf_free(&body);
    return ret;
}

/* ---- fetching ---- */

/* Discovery: the jwks_uri of the issuer's document. Caller frees. */
static char *discover(struct sg_jwt_verifier *v, const struct issuer *is,
                      struct sg_error *err)
{
    struct sg_buf body = SG_BUF_INIT;
    char *url = discovery_url(is->cfg.issuer);
    json_error_t jerr;
    json_t *doc = NULL;
    json_t *iss;
    json_t *uri;
    char *jwks_uri = NULL;

    if (url == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    if (sg_jwks_fetcher_get(v->fetcher, url, is->cfg.ca_file, &body, err) < 0)
        goto cleanup;
    doc =
        json_loadb(sg_buf_str(&body), body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        sg_error_report(err, SG_ERR_UNAVAILABLE, "%s: not a JSON object", url);
        goto cleanup;
    }
    iss = json_object_get(doc, "issuer");
    /* OIDC Discovery 1.0 section 4.3: the document must name exactly the
       issuer it was fetched for, or its keys could be another's. */
    if (!json_is_string(iss) ||
        STRNEQ(json_string_value(iss), is->cfg.issuer)) {
        sg_error_report(err, SG_ERR_UNAVAILABLE,
                        "%s: the document's issuer is not '%s'", url,
                        is->cfg.issuer);
        goto cleanup;
    }
    uri = json_object_get(doc, "jwks_uri");
    if (!json_is_string(uri)) {
        sg_error_report(err, SG_ERR_UNAVAILABLE, "%s: no jwks_uri", url);
        goto cleanup;
    }
    if (sg_jwks_url_check(json_string_value(uri), err) < 0)
        goto cleanup;
    jwks_uri = strdup(json_string_value(uri));
    if (jwks_uri == NULL)
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");

 cleanup:
    json_decref(doc);
    sg_buf_free(&body);
    free(url);
    return jwks_uri;
}

static bool stopping(struct sg_jwt_verifier *v)
{
    bool stop;

    pthread_mutex_lock(&v->fetch_lock);
    stop = v->stopping;
    pthread_mutex_unlock(&v->fetch_lock);
    return stop;
}

/* One fetch of an issuer's keys (fetch thread). True when the issuer has
   the keys the source serves now. */
static bool refresh_issuer(struct sg_jwt_verifier *v, struct issuer *is)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_buf body = SG_BUF_INIT;
    char *found_uri = NULL;
    const char *url = is->cfg.jwks_uri;
    struct sg_jwks *ks = NULL;
    struct sg_jwks *old;
    uint8_t digest[32];
    bool ok = false;

    if (is->cfg.discovery) {
        found_uri = discover(v, is, &err);
        if (found_uri == NULL)
            goto cleanup;
        url = found_uri;
    }
    if (sg_jwks_fetcher_get(v->fetcher, url, is->cfg.ca_file, &body, &err) < 0)
        goto cleanup;
    /* Only this thread writes is->keys: reading it here needs no lock. */
    sg_jwks_digest(sg_buf_str(&body), body.len, digest);
    if (is->keys != NULL && memcmp(is->keys->digest, digest, 32) == 0) {
        SG_DEBUG("JWT issuer '%s': keys at %s unchanged", is->cfg.issuer, url);
        ok = true;
        goto cleanup;
    }
    ks = sg_jwks_parse(sg_buf_str(&body), body.len, url, &err);
    if (ks == NULL)
        goto cleanup;
    pthread_mutex_lock(&v->keys_lock);
    old = is->keys;
    is->keys = ks;
    pthread_mutex_unlock(&v->keys_lock);
    /* After the swap: a verify that read the old generation cannot cache
       what it checked against the old set (jwt_cache.h). */
    sg_jwt_cache_clear(v->cache);
    sg_jwks_unref(old);
    SG_INFO("JWT issuer '%s': keys loaded from %s: %zu", is->cfg.issuer, url,
            ks->n_keys);
    ok = true;

 cleanup:
    if (!ok && sg_error_is_set(&err) && !stopping(v))
        SG_WARN("JWT issuer '%s': key fetch failed, %s: %s", is->cfg.issuer,
                is->keys != NULL ? "keeping the keys loaded before"
                                 : "no keys yet",
                err.message);
    sg_error_reset(&err);
    sg_buf_free(&body);
    free(found_uri);
    return ok;
}

static void deadline_after_ms(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* When is is due for a fetch (fetch_lock held). */
static int64_t due_ms(const struct issuer *is)
{
    int64_t due = is->next_due_ms;

    if (is->requested) {
        int64_t asked = sat_add(is->last_attempt_ms,
                                (int64_t)is->cfg.min_refresh_interval_s * 1000);

        if (asked < due)
            due = asked;
    }
    return due;
}

static void *fetch_main(void *opaque)
{
    struct sg_jwt_verifier *v = opaque;

    pthread_mutex_lock(&v->fetch_lock);
    while (!v->stopping) {
        int64_t now = mono_ms();
        int64_t wake = INT64_MAX;
        struct issuer *pick = NULL;
        bool ok;

        for (size_t i = 0; i < v->n_issuers && pick == NULL; i++) {
            struct issuer *is = &v->issuers[i];
            int64_t due;

            if (!is->fetched)
                continue;
            due = due_ms(is);
            if (due <= now)
                pick = is;
            else if (due < wake)
                wake = due;
        }
        if (pick == NULL) {
            struct timespec until;

            if (wake == INT64_MAX) {
                pthread_cond_wait(&v->fetch_cond, &v->fetch_lock);
            } else {
                deadline_after_ms(&until, wake - now);
                pthread_cond_timedwait(&v->fetch_cond, &v->fetch_lock, &until);
            }
            continue;
        }
        pick->requested = false;
        pick->last_attempt_ms = now;
        pthread_mutex_unlock(&v->fetch_lock);
        ok = refresh_issuer(v, pick);
        pthread_mutex_lock(&v->fetch_lock);
        pick->attempted = true;
        if (ok) {
            pick->failures = 0;
            pick->next_due_ms =
                mono_ms() + (int64_t)pick->cfg.refresh_interval_s * 1000;
        } else {
            /* 1 s, 2 s, 4 s, ... up to BACKOFF_MAX_S or the interval. */
            int64_t backoff = (int64_t)1
                              << (pick->failures < 9 ? pick->failures : 9);

            if (backoff > BACKOFF_MAX_S)
                backoff = BACKOFF_MAX_S;
            if (backoff > pick->cfg.refresh_interval_s)
                backoff = pick->cfg.refresh_interval_s;
            pick->failures++;
            pick->next_due_ms = mono_ms() + backoff * 1000;
        }
        pthread_cond_broadcast(&v->ready_cond);
    }
    pthread_mutex_unlock(&v->fetch_lock);
    return NULL;
}

/* A token named a kid the issuer does not have: fetch again soon (at most
   once per min_refresh_interval_s). */
static void request_refresh(struct sg_jwt_verifier *v, struct issuer *is)
{
    if (!is->fetched)
        return;
    pthread_mutex_lock(&v->fetch_lock);
    if (!is->requested) {
        is->requested = true;
        pthread_cond_signal(&v->fetch_cond);
    }
    pthread_mutex_unlock(&v->fetch_lock);
}

/* ---- the verifier ---- */

static int start_fetch_thread(struct sg_jwt_verifier *v, struct sg_error *err)
{
    int rc;

    v->fetcher = sg_jwks_fetcher_new();
    if (v->fetcher == NULL) {
        sg_error_report(err, SG_ERR_INTERNAL, "cannot start libcurl");
        return -1;
    }
    rc = pthread_create(&v->thread, NULL, fetch_main, v);
    if (rc != 0) {
        char ebuf[128];

        sg_jwks_fetcher_free(v->fetcher);
        v->fetcher = NULL;
        sg_error_report(err, SG_ERR_INTERNAL,
                        "cannot start the JWKS fetch thread: %s",
                        sg_strerror(rc, ebuf, sizeof(ebuf)));
        return -1;
    }
    pthread_setname_np(v->thread, "sg-jwks-fetch");
    return 0;
}

struct sg_jwt_verifier *
sg_jwt_verifier_new(const struct sg_jwt_issuer_config *cfgs, size_t n,
                    struct sg_error *err)
{
    struct sg_jwt_verifier *v = NULL;
    pthread_condattr_t cattr;
    bool any_fetched = false;

    if (n > 0 && cfgs == NULL) {
        sg_error_report(err, SG_ERR_CONFIG, "JWT issuers missing");
        return NULL;
    }
    v = calloc(1, sizeof(*v));
    if (v == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&v->keys_lock, NULL);
    pthread_mutex_init(&v->fetch_lock, NULL);
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&v->fetch_cond, &cattr);
    pthread_cond_init(&v->ready_cond, &cattr);
    pthread_condattr_destroy(&cattr);
    v->cache = sg_jwt_cache_new(CACHE_ENTRIES);
    v->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    v->issuers = calloc(n + 1, sizeof(*v->issuers));
    if (v->cache == NULL || v->sha256 == NULL || v->issuers == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto error;
    }
    for (size_t i = 0; i < n; i++) {
        struct issuer *is = &v->issuers[i];

        for (size_t j = 0; j < i; j++) {
            if (cfgs[i].issuer != NULL &&
                STREQ(cfgs[i].issuer, v->issuers[j].cfg.issuer)) {
                sg_error_report(err, SG_ERR_CONFIG,
                                "JWT issuer '%s' is configured twice",
                                cfgs[i].issuer);
                goto error;
            }
        }
        /* Counted first: free clears what a failed init left. */
        v->n_issuers++;
        if (issuer_init(is, &cfgs[i], err) < 0)
            goto error;
        if (is->cfg.max_token_bytes > v->max_token_bytes)
            v->max_token_bytes = is->cfg.max_token_bytes;
        if (is->fetched)
            any_fetched = true;
        else if (load_file_keys(is, err) < 0)
            goto error;
    }
    if (any_fetched && start_fetch_thread(v, err) < 0)
        goto error;
    return v;

 error:
    sg_jwt_verifier_free(v);
    return NULL;
}

void sg_jwt_verifier_free(struct sg_jwt_verifier *v)
{
    if (v == NULL)
        return;
    if (v->fetcher != NULL) {
        pthread_mutex_lock(&v->fetch_lock);
        v->stopping = true;
        pthread_cond_signal(&v->fetch_cond);
        pthread_cond_broadcast(&v->ready_cond);
        pthread_mutex_unlock(&v->fetch_lock);
        sg_jwks_fetcher_cancel(v->fetcher);
        pthread_join(v->thread, NULL);
        sg_jwks_fetcher_free(v->fetcher);
    }
    for (size_t i = 0; v->issuers != NULL && i < v->n_issuers; i++) {
        sg_jwt_issuer_config_clear(&v->issuers[i].cfg);
        free(v->issuers[i].prefix);
        sg_jwks_unref(v->issuers[i].keys);
    }
    free(v->issuers);
    sg_jwt_cache_free(v->cache);
    EVP_MD_free(v->sha256);
    pthread_cond_destroy(&v->ready_cond);
    pthread_cond_destroy(&v->fetch_cond);
    pthread_mutex_destroy(&v->fetch_lock);
    pthread_mutex_destroy(&v->keys_lock);
    free(v);
}

static bool all_attempted(const struct sg_jwt_verifier *v)
{
    for (size_t i = 0; i < v->n_issuers; i++) {
        if (v->issuers[i].fetched && !v->issuers[i].attempted)
            return false;
    }
    return true;
}

bool sg_jwt_verifier_wait_ready(struct sg_jwt_verifier *v, unsigned timeout_ms)
{
    struct timespec until;
    bool ready = true;

    if (v == NULL)
        return false;
    deadline_after_ms(&until, timeout_ms);
    pthread_mutex_lock(&v->fetch_lock);
    while (!all_attempted(v) && !v->stopping) {
        if (pthread_cond_timedwait(&v->ready_cond, &v->fetch_lock, &until) ==
            ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&v->fetch_lock);
    pthread_mutex_lock(&v->keys_lock);
    for (size_t i = 0; i < v->n_issuers; i++)
        ready = ready && v->issuers[i].keys != NULL;
    pthread_mutex_unlock(&v->keys_lock);
    return ready;
}

/* ---- verification ---- */

static int refuse(struct sg_error *err, const char *msg)
{
    sg_error_report(err, SG_ERR_UNAUTHENTICATED, "%s", msg);
    return -1;
}

static bool b64url_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Decode one base64url segment holding a JSON object into *out. what is
   "header" or "payload". */
static int decode_object(const char *seg, size_t len, const char *what,
                         json_t **out, struct sg_error *err)
{
    uint8_t *buf = malloc(len * 3 / 4 + 1);
    json_error_t jerr;
    json_t *probe = NULL;
    long n;
    int ret = -1;

    *out = NULL;
    if (buf == NULL) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED, "out of memory");
        return -1;
    }
    n = sg_base64url_decode(seg, len, buf);
    if (n < 0) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "malformed token: %s is not base64url", what);
        goto cleanup;
    }
    *out =
        json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (*out == NULL) {
        /* jansson's message quotes the input: say it in our words. */
        probe = json_loadb((const char *)buf, (size_t)n, 0, &jerr);
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        probe != NULL ? "malformed token: duplicate key in %s"
                                      : "malformed token: %s is not JSON",
                        what);
        goto cleanup;
    }
    if (!json_is_object(*out)) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "malformed token: %s is not a JSON object", what);
        json_decref(*out);
        *out = NULL;
        goto cleanup;
    }
    ret = 0;

 cleanup:
    json_decref(probe);
    free(buf);
    return ret;
}

/* The token's three segments, checked for shape. */
struct segments {
    const char *header, *payload, *sig;
    size_t header_len, payload_len, sig_len;
};

static int split(const char *token, size_t len, struct segments *s,
                 struct sg_error *err)
{
    size_t dots[4];
    size_t n_dots = 0;

    if (memchr(token, '\0', len) != NULL)
        return refuse(err, "malformed token: it contains a NUL byte");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)token[i];

        if (c == '.') {
            if (n_dots < SG_N_ELEMENTS(dots))
                dots[n_dots] = i;
            n_dots++;
        } else if (!b64url_char(c)) {
            if (c == '=')
                return refuse(err, "malformed token: base64url padding "
                                   "('=') is not allowed");
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
                return refuse(err, "malformed token: it contains "
                                   "whitespace");
            return refuse(err, "malformed token: a character outside "
                               "base64url");
        }
    }
    if (n_dots == 4)
        return refuse(err, "encrypted tokens (JWE) are not accepted");
    if (n_dots != 2)
        return refuse(err, "malformed token: not three dot-separated "
                           "segments");
    s->header = token;
    s->header_len = dots[0];
    s->payload = token + dots[0] + 1;
    s->payload_len = dots[1] - dots[0] - 1;
    s->sig = token + dots[1] + 1;
    s->sig_len = len - dots[1] - 1;
    if (s->header_len == 0)
        return refuse(err, "malformed token: empty header");
    if (s->payload_len == 0)
        return refuse(err, "malformed token: empty payload");
    if (s->sig_len == 0)
        return refuse(err, "token is not signed");
    return 0;
}

/* The algorithm bit of the header's alg, or 0 with err set. */
static unsigned header_alg(json_t *header, struct sg_error *err)
{
    json_t *alg = json_object_get(header, "alg");
    const char *name;

    if (!json_is_string(alg)) {
        refuse(err, "malformed token: the header has no alg");
        return 0;
    }
    name = json_string_value(alg);
    if (strcasecmp(name, "none") == 0) {
        refuse(err, "unsigned tokens (alg none) are never accepted");
        return 0;
    }
    if (strncasecmp(name, "HS", 2) == 0) {
        refuse(err, "HMAC algorithms are never accepted");
        return 0;
    }
    /* Algorithm names are case-sensitive (RFC 7515 section 4.1.1). */
    if (STREQ(name, "RS256"))
        return SG_JWT_ALG_RS256;
    if (STREQ(name, "ES256"))
        return SG_JWT_ALG_ES256;
    if (STREQ(name, "EdDSA"))
        return SG_JWT_ALG_EDDSA;
    refuse(err, "algorithm not supported");
    return 0;
}

static int check_header(json_t *header, unsigned *alg, const char **kid,
                        struct sg_error *err)
{
    json_t *typ = json_object_get(header, "typ");
    json_t *jkid = json_object_get(header, "kid");

    *alg = header_alg(header, err);
    if (*alg == 0)
        return -1;
    /* Every extension crit could name is one we do not implement, so a
       token that needs one understood cannot be. */
    if (json_object_get(header, "crit") != NULL)
        return refuse(err, "header parameter crit is not supported");
    if (typ != NULL && (!json_is_string(typ) ||
                        (strcasecmp(json_string_value(typ), "JWT") != 0 &&
                         strcasecmp(json_string_value(typ), "at+jwt") != 0)))
        return refuse(err, "token type (typ) not accepted");
    if (jkid != NULL && !json_is_string(jkid))
        return refuse(err, "malformed token: kid is not a string");
    *kid = jkid != NULL ? json_string_value(jkid) : NULL;
    return 0;
}

/* The key to verify with (a pointer into ks), or NULL with err set. */
static const struct sg_jwk *pick_key(const struct sg_jwks *ks, const char *kid,
                                     unsigned alg, bool *unknown_kid,
                                     struct sg_error *err)
{
    const struct sg_jwk *found = NULL;
    size_t usable = 0;
    bool kid_seen = false;

    *unknown_kid = false;
    for (size_t i = 0; i < ks->n_keys; i++) {
        const struct sg_jwk *k = &ks->keys[i];

        if (kid != NULL) {
            if (k->kid == NULL || STRNEQ(k->kid, kid))
                continue;
            kid_seen = true;
        }
        if ((k->algs & alg) != 0) {
            found = k;
            usable++;
        }
    }
    if (kid != NULL && !kid_seen) {
        *unknown_kid = true;
        refuse(err, "unknown key id");
        return NULL;
    }
    if (usable == 0) {
        refuse(err, kid != NULL ? "the key of this key id does not fit the "
                                  "algorithm"
                                : "the issuer has no key for the algorithm");
        return NULL;
    }
    /* Under one kid, one key per algorithm (jwks.c skips duplicates). */
    if (usable > 1) {
        refuse(err, "the token has no key id and the issuer has several "
                    "keys for its algorithm");
        return NULL;
    }
    return found;
}

/* A NumericDate (RFC 7519 section 2) rounded up to whole seconds, so that
   comparisons with an integer now keep their meaning. */
static bool numeric_date(json_t *j, int64_t *out)
{
    double d;

    if (json_is_integer(j)) {
        *out = (int64_t)json_integer_value(j);
        return true;
    }
    if (!json_is_real(j))
        return false;
    d = json_real_value(j);
    if (!isfinite(d) || d > 9.0e18 || d < -9.0e18)
        return false;
    *out = (int64_t)ceil(d);
    return true;
}

/* An optional date claim: absent leaves *out alone. */
static int date_claim(json_t *claims, const char *name, int64_t *out,
                      bool *present, struct sg_error *err)
{
    json_t *j = json_object_get(claims, name);

    *present = j != NULL;
    if (j != NULL && !numeric_date(j, out)) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "malformed token: %s is not a number", name);
        return -1;
    }
    return 0;
}

static bool string_array(json_t *a)
{
    size_t i;
    json_t *e;

    if (!json_is_array(a))
        return false;
    json_array_foreach(a, i, e) {
        if (!json_is_string(e))
            return false;
    }
    return true;
}

static int check_audience(json_t *aud, const struct issuer *is,
                          struct sg_error *err)
{
    size_t i;
    json_t *a;

    if (aud == NULL)
        return refuse(err, "the token has no audience (aud)");
    if (json_is_string(aud)) {
        for (size_t k = 0; k < is->cfg.n_audiences; k++) {
            if (STREQ(json_string_value(aud), is->cfg.audiences[k]))
                return 0;
        }
        return refuse(err, "audience not accepted");
    }
    if (!json_is_array(aud))
        return refuse(err, "malformed token: aud is not a string or an "
                           "array");
    if (!string_array(aud))
        return refuse(err, "malformed token: aud holds a non-string");
    json_array_foreach(aud, i, a) {
        for (size_t k = 0; k < is->cfg.n_audiences; k++) {
            if (STREQ(json_string_value(a), is->cfg.audiences[k]))
                return 0;
        }
    }
    return refuse(err, "audience not accepted");
}

/* What the claims establish, borrowed from the claims object. */
struct claims {
    int64_t exp;
    int64_t not_before; /* the earliest now the token is valid at */
    const char *subject;
    json_t *groups; /* NULL: none */
};

static int check_claims(json_t *claims, const struct issuer *is, int64_t now,
                        struct claims *out, struct sg_error *err)
{
    int64_t skew = is->cfg.clock_skew_s;
    int64_t nbf = 0;
    int64_t iat = 0;
    bool has_exp;
    bool has_nbf;
    bool has_iat;
    json_t *sub;

    if (date_claim(claims, "exp", &out->exp, &has_exp, err) < 0 ||
        date_claim(claims, "nbf", &nbf, &has_nbf, err) < 0 ||
        date_claim(claims, "iat", &iat, &has_iat, err) < 0)
        return -1;
    if (!has_exp)
        return refuse(err, "the token has no expiry (exp)");
    if (now >= sat_add(out->exp, skew))
        return refuse(err, "token expired");
    out->not_before = INT64_MIN;
    if (has_nbf)
        out->not_before = sat_add(nbf, -skew);
    if (now < out->not_before)
        return refuse(err, "token not valid yet (nbf)");
    if (has_iat) {
        if (sat_add(iat, -skew) > out->not_before)
            out->not_before = sat_add(iat, -skew);
        if (now < out->not_before)
            return refuse(err, "token issued in the future (iat)");
    }
    if (check_audience(json_object_get(claims, "aud"), is, err) < 0)
        return -1;
    sub = json_object_get(claims, is->cfg.subject_claim);
    if (!json_is_string(sub) || json_string_length(sub) == 0) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "subject claim '%s' missing, empty or not a string",
                        is->cfg.subject_claim);
        return -1;
    }
    out->subject = json_string_value(sub);
    out->groups = NULL;
    if (is->cfg.groups_claim != NULL) {
        out->groups = json_object_get(claims, is->cfg.groups_claim);
        if (out->groups != NULL && !string_array(out->groups)) {
            sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                            "groups claim '%s' is not an array of strings",
                            is->cfg.groups_claim);
            return -1;
        }
    }
    return 0;
}

static struct sg_identity *make_identity(const struct issuer *is,
                                         const struct claims *c)
{
    size_t size = strlen(is->prefix) + strlen(c->subject) + 1;
    char *subject = malloc(size);
    struct sg_identity *id = NULL;
    size_t i;
    json_t *g;

    if (subject == NULL)
        return NULL;
    snprintf(subject, size, "%s%s", is->prefix, c->subject);
    id = sg_identity_new(SG_IDENTITY_JWT, subject, c->subject);
    free(subject);
    if (id == NULL || sg_identity_set_issuer(id, is->cfg.issuer) < 0)
        goto error;
    json_array_foreach(c->groups, i, g) {
        if (sg_identity_add_group(id, json_string_value(g)) < 0)
            goto error;
    }
    id->expires_at = c->exp;
    return id;

 error:
    sg_identity_unref(id);
    return NULL;
}

static struct issuer *find_issuer(struct sg_jwt_verifier *v, const char *iss)
{
    for (size_t i = 0; i < v->n_issuers; i++) {
        if (STREQ(v->issuers[i].cfg.issuer, iss))
            return &v->issuers[i];
    }
    return NULL;
}

static int verify_uncached(struct sg_jwt_verifier *v, const char *token,
                           size_t len, int64_t now, const uint8_t *digest,
                           uint64_t generation, struct sg_identity **out,
                           struct sg_error *err)
{
    struct segments seg;
    json_t *header = NULL;
    json_t *claims = NULL;
    json_t *iss;
    struct issuer *is;
    struct sg_jwks *ks = NULL;
    const struct sg_jwk *key;
    const char *kid = NULL;
    unsigned alg = 0;
    uint8_t *sig = NULL;
    long sig_len;
    bool unknown_kid = false;
    struct claims c;
    struct sg_identity *id = NULL;
    int64_t until;
    int ret = -1;

    if (split(token, len, &seg, err) < 0 ||
        decode_object(seg.header, seg.header_len, "header", &header, err) < 0 ||
        check_header(header, &alg, &kid, err) < 0 ||
        decode_object(seg.payload, seg.payload_len, "payload", &claims, err) <
            0)
        goto cleanup;
    iss = json_object_get(claims, "iss");
    if (iss == NULL) {
        refuse(err, "the token has no issuer (iss)");
        goto cleanup;
    }
    if (!json_is_string(iss)) {
        refuse(err, "malformed token: iss is not a string");
        goto cleanup;
    }
    is = find_issuer(v, json_string_value(iss));
    if (is == NULL) {
        refuse(err, "issuer not accepted");
        goto cleanup;
    }
    if (len > is->cfg.max_token_bytes) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "token larger than %u bytes", is->cfg.max_token_bytes);
        goto cleanup;
    }
    if ((is->cfg.algorithms & alg) == 0) {
        refuse(err, "algorithm not allowed for this issuer");
        goto cleanup;
    }
    pthread_mutex_lock(&v->keys_lock);
    if (is->keys != NULL)
        ks = sg_jwks_ref(is->keys);
    pthread_mutex_unlock(&v->keys_lock);
    if (ks == NULL) {
        request_refresh(v, is);
        refuse(err, "the issuer's keys are not loaded yet");
        goto cleanup;
    }
    key = pick_key(ks, kid, alg, &unknown_kid, err);
    if (key == NULL) {
        if (unknown_kid)
            request_refresh(v, is);
        goto cleanup;
    }
    if (seg.sig_len > (MAX_SIG_BYTES * 4 + 2) / 3) {
        refuse(err, "signature does not verify");
        goto cleanup;
    }
    sig = malloc(seg.sig_len * 3 / 4 + 1);
    if (sig == NULL) {
        refuse(err, "out of memory");
        goto cleanup;
    }
    sig_len = sg_base64url_decode(seg.sig, seg.sig_len, sig);
    if (sig_len < 0) {
        refuse(err, "malformed token: signature is not base64url");
        goto cleanup;
    }
    if (!sg_jwk_verify(key, alg, token, seg.header_len + 1 + seg.payload_len,
                       sig, (size_t)sig_len)) {
        refuse(err, "signature does not verify");
        goto cleanup;
    }
    if (check_claims(claims, is, now, &c, err) < 0)
        goto cleanup;
    id = make_identity(is, &c);
    if (id == NULL) {
        refuse(err, "out of memory");
        goto cleanup;
    }
    /* Cached for as long as a fresh check would accept it, capped. */
    until = sat_add(c.exp, is->cfg.clock_skew_s);
    if (until > sat_add(now, CACHE_TTL_S))
        until = sat_add(now, CACHE_TTL_S);
    sg_jwt_cache_put(v->cache, digest, c.not_before, until, id, generation);
    *out = id;
    ret = 0;

 cleanup:
    free(sig);
    sg_jwks_unref(ks);
    json_decref(claims);
    json_decref(header);
    return ret;
}

int sg_jwt_verify(struct sg_jwt_verifier *v, const char *token, size_t len,
                  int64_t now, struct sg_identity **out, struct sg_error *err)
{
    uint8_t digest[SG_JWT_CACHE_DIGEST_SIZE];
    unsigned int digest_len = 0;
    struct sg_identity *id;

    *out = NULL;
    if (v == NULL || v->n_issuers == 0)
        return refuse(err, "no JWT issuer is configured");
    if (token == NULL || len == 0)
        return refuse(err, "empty token");
    if (len > v->max_token_bytes) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "token larger than %zu bytes", v->max_token_bytes);
        return -1;
    }
    if (EVP_Digest(token, len, digest, &digest_len, v->sha256, NULL) != 1)
        return refuse(err, "cannot hash the token");
    id = sg_jwt_cache_get(v->cache, digest, now);
    if (id != NULL) {
        *out = id;
        return 0;
    }
    return verify_uncached(v, token, len, now, digest,
                           sg_jwt_cache_generation(v->cache), out, err);
}
