/*
 * token_review.c: Kubernetes TokenReview with a positive/negative cache
 * (see token_review.h).
 */
#include "internal.h"

#include "token_review.h"

#include "k8s_client.h"
#include "log.h"
#include "loop.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/sha.h>

SG_LOG_INIT("authz.token_review");

#define REVIEW_PATH "/apis/authentication.k8s.io/v1/tokenreviews"
#define CACHE_ENTRIES 4096
#define CACHE_WAYS 4
/* A review retries 429/5xx/transport failures this often, quickly: a
   caller waits for it. */
#define REVIEW_RETRIES 2
#define REVIEW_RETRY_BASE_MS 100
#define REVIEW_RETRY_MAX_MS 1000
#define UNAVAILABLE_MSG "token review unavailable"
#define REFUSED_MSG "token was revoked or is not valid"

/* ---- the cache ------------------------------------------------------ */

struct cache_entry {
    uint8_t key[32];
    int64_t until_ms; /* 0: free */
    bool ok;
    char msg[SG_TOKEN_REVIEW_MSG_MAX];
};

struct sg_token_review_cache {
    size_t n_sets;
    struct cache_entry *e; /* n_sets * CACHE_WAYS */
};

struct sg_token_review_cache *sg_token_review_cache_new(size_t entries)
{
    struct sg_token_review_cache *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->n_sets = (entries + CACHE_WAYS - 1) / CACHE_WAYS;
    if (c->n_sets == 0)
        c->n_sets = 1;
    c->e = calloc(c->n_sets * CACHE_WAYS, sizeof(*c->e));
    if (!c->e) {
        free(c);
        return NULL;
    }
    return c;
}

void sg_token_review_cache_free(struct sg_token_review_cache *c)
{
    if (!c)
        return;
    free(c->e);
    free(c);
}

/* The set of a key: its first bytes are a hash already. */
static struct cache_entry *cache_set(struct sg_token_review_cache *c,
                                     const uint8_t key[32])
{
    uint64_t h = 0;

    for (int i = 0; i < 8; i++)
        h = (h << 8) | key[i];
    return &c->e[(h % c->n_sets) * CACHE_WAYS];
}

int sg_token_review_cache_get(struct sg_token_review_cache *c,
                              const uint8_t key[32], int64_t now_ms,
                              char *msg, size_t msg_len)
{
    struct cache_entry *set = cache_set(c, key);

    for (int i = 0; i < CACHE_WAYS; i++) {
        struct cache_entry *e = &set[i];

        if (e->until_ms == 0 || memcmp(e->key, key, 32) != 0)
            continue;
        if (e->until_ms <= now_ms) {
            e->until_ms = 0;
            return 0;
        }
        if (!e->ok && msg && msg_len > 0)
            snprintf(msg, msg_len, "%s", e->msg);
        return e->ok ? 1 : -1;
    }
    return 0;
}

void sg_token_review_cache_put(struct sg_token_review_cache *c,
                               const uint8_t key[32], bool ok,
                               int64_t until_ms, const char *msg)
{
    struct cache_entry *set = cache_set(c, key);
    struct cache_entry *slot = &set[0];

    for (int i = 0; i < CACHE_WAYS; i++) {
        if (set[i].until_ms != 0 && memcmp(set[i].key, key, 32) == 0) {
            slot = &set[i];
            break;
        }
        if (set[i].until_ms < slot->until_ms)
            slot = &set[i]; /* free (0) or the first to expire */
    }
    memcpy(slot->key, key, 32);
    slot->until_ms = until_ms;
    slot->ok = ok;
    snprintf(slot->msg, sizeof(slot->msg), "%s", msg ? msg : "");
}

/* ---- the wire format ------------------------------------------------ */

/* The body up to the token, which follows at sizeof(review_head) - 1. */
static const char review_head[] =
    "{\"apiVersion\":\"authentication.k8s.io/v1\","
    "\"kind\":\"TokenReview\",\"spec\":{\"token\":\"";

char *sg_token_review_body(const char *token, size_t len,
                           char *const *audiences, size_t n_audiences)
{
    char *aud = NULL;
    char *body;
    size_t size;

    /* A JWT is base64url and dots: nothing to escape. */
    for (size_t i = 0; i < len; i++) {
        if (token[i] <= ' ' || token[i] > '~' || token[i] == '"' ||
            token[i] == '\\')
            return NULL;
    }
    if (n_audiences > 0) {
        json_t *arr = json_array();

        for (size_t i = 0; arr && i < n_audiences; i++)
            json_array_append_new(arr, json_string(audiences[i]));
        aud = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
        json_decref(arr);
        if (!aud)
            return NULL;
    }
    size = sizeof(review_head) + len + (aud ? strlen(aud) + 16 : 0) + 8;
    body = malloc(size);
    if (body)
        snprintf(body, size, "%s%.*s\"%s%s}}", review_head, (int)len, token,
                 aud ? ",\"audiences\":" : "", aud ? aud : "");
    free(aud);
    return body;
}

/* status.error made fit for a message: trimmed, one line, bounded. */
static void clean_message(const char *in, char *out, size_t size)
{
    size_t n = 0;

    while (*in == ' ' || *in == '\t' || *in == '\n' || *in == '\r')
        in++;
    for (; *in && n + 1 < size; in++)
        out[n++] = ((unsigned char)*in < 0x20 || *in == 0x7f) ? ' ' : *in;
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static void refuse(const char *why, const char *token, size_t token_len,
                   struct sg_error *err)
{
    char clean[SG_TOKEN_REVIEW_MSG_MAX - sizeof(REFUSED_MSG) - 2];

    why = why ? why : "";
    clean_message(why, clean, sizeof(clean));
    /* An authenticator that quotes what it was given must not make us:
       no message that holds the token's tail (its signature). */
    if (token_len >= 16 &&
        memmem(why, strlen(why), token + token_len - 16, 16))
        clean[0] = '\0';
    if (clean[0])
        sg_error_report(err, SG_ERR_UNAUTHENTICATED, REFUSED_MSG ": %s",
                        clean);
    else
        sg_error_report(err, SG_ERR_UNAUTHENTICATED, REFUSED_MSG);
}

static int unavailable(struct sg_error *err, const char *fmt, ...)
    SG_PRINTF(2, 3);
static int unavailable(struct sg_error *err, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    SG_WARN("token review: %s", why);
    sg_error_report(err, SG_ERR_UNAVAILABLE, UNAVAILABLE_MSG);
    return -1;
}

/* Is one of the answer's audiences one we asked for? */
static bool audience_ok(const json_t *got, char *const *audiences, size_t n)
{
    size_t i;
    json_t *v;

    if (n == 0)
        return true;
    json_array_foreach(got, i, v) {
        for (size_t j = 0; json_is_string(v) && j < n; j++) {
            if (STREQ(json_string_value(v), audiences[j]))
                return true;
        }
    }
    return false;
}

static int judge_status(const json_t *st, char *const *audiences, size_t n,
                        const char *token, size_t token_len,
                        struct sg_error *err)
{
    const json_t *authn = json_object_get(st, "authenticated");
    const char *user = json_string_value(
        json_object_get(json_object_get(st, "user"), "username"));
    const char *why = json_string_value(json_object_get(st, "error"));

    if (authn && !json_is_boolean(authn))
        return unavailable(err, "status.authenticated is not a boolean");
    if (!json_is_true(authn)) {
        refuse(why, token, token_len, err);
        return -1;
    }
    if (!user || !*user)
        return unavailable(err, "authenticated without status.user.username");
    if (!audience_ok(json_object_get(st, "audiences"), audiences, n)) {
        refuse("no audience of the review matches", token, token_len, err);
        return -1;
    }
    SG_DEBUG("token review: authenticated as '%s'", user);
    return 0;
}

int sg_token_review_parse(long status, const char *body, size_t body_len,
                          char *const *audiences, size_t n_audiences,
                          const char *token, size_t token_len,
                          struct sg_error *err)
{
    json_t *doc = NULL;
    const json_t *st;
    int rc;

    if (status == 0)
        return unavailable(err, "no answer from the API");
    if (status != 200 && status != 201)
        return unavailable(err, "the API answered HTTP %ld", status);
    doc = body ? json_loadb(body, body_len, 0, NULL) : NULL;
    st = json_object_get(doc, "status");
    if (!json_is_object(st) ||
        !json_is_string(json_object_get(doc, "kind")) ||
        !STREQ(json_string_value(json_object_get(doc, "kind")),
               "TokenReview"))
        rc = unavailable(err, "the answer is not a TokenReview with a "
                         "status");
    else
        rc = judge_status(st, audiences, n_audiences, token, token_len, err);
    json_decref(doc);
    return rc;
}

/* ---- the reviewer --------------------------------------------------- */

struct waiter {
    struct waiter *next;
    sg_token_review_done_fn done;
    void *opaque;
};

/* One review in flight: every caller of the same token waits on it. */
struct pending {
    struct pending *next;
    struct sg_token_review *r;
    uint8_t key[32];
    int64_t exp;
    char *body; /* holds the token (token_len bytes at its head): wiped */
    size_t token_len;
    struct k8s_call *call;
    struct waiter *waiters;
    /* Bounds the whole review, retries included (timeout_ms). */
    uv_timer_t timer;
    bool timer_on;
};

struct sg_token_review {
    uv_loop_t *loop;
    struct k8s_client *client;
    struct sg_loop_queue *queue;
    struct sg_policy_token_review cfg; /* audiences copied; paths unused */
    pthread_mutex_t mu; /* guards cache, pending, closing */
    struct sg_token_review_cache *cache;
    struct pending *pending;
    bool closing;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void client_log(enum sg_driver_log_level level, const char *driver,
                       const char *fmt, ...) SG_PRINTF(3, 4);
static void client_log(enum sg_driver_log_level level, const char *driver,
                       const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    (void)driver;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (level >= SG_DRIVER_LOG_WARN)
        SG_WARN("kubernetes client: %s", msg);
    else
        SG_DEBUG("kubernetes client: %s", msg);
}

static void pending_free(struct pending *p);

static void on_timer_closed(uv_handle_t *h)
{
    pending_free(h->data);
}

/* The client keeps a pointer to it: static. */
static const struct sg_driver_host client_host = {
    .abi_major = SG_DRIVER_ABI_MAJOR,
    .abi_minor = SG_DRIVER_ABI_MINOR,
    .struct_size = sizeof(struct sg_driver_host),
    .log = client_log,
};

static void pending_free(struct pending *p)
{
    if (!p)
        return;
    if (p->timer_on) {
        p->timer_on = false;
        uv_close((uv_handle_t *)&p->timer, on_timer_closed);
        return; /* on_timer_closed frees it */
    }
    if (p->body) {
        explicit_bzero(p->body, strlen(p->body));
        free(p->body);
    }
    free(p);
}

/* Remember the answer, unlink p and tell its waiters (loop thread). */
static void complete(struct pending *p, const struct sg_error *err)
{
    struct sg_token_review *r = p->r;
    int64_t now = now_ms();
    int64_t until;
    struct waiter *w;

    pthread_mutex_lock(&r->mu);
    if (!err) {
        until = now + (int64_t)r->cfg.cache_ttl_s * 1000;
        if (p->exp > 0 && p->exp * 1000 < until)
            until = p->exp * 1000;
        if (r->cfg.cache_ttl_s > 0 && until > now)
            sg_token_review_cache_put(r->cache, p->key, true, until, NULL);
    } else if (err->code == SG_ERR_UNAUTHENTICATED &&
               r->cfg.negative_cache_ttl_s > 0) {
        sg_token_review_cache_put(
            r->cache, p->key, false,
            now + (int64_t)r->cfg.negative_cache_ttl_s * 1000, err->message);
    }
    for (struct pending **pp = &r->pending; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    w = p->waiters;
    p->waiters = NULL;
    pthread_mutex_unlock(&r->mu);
    while (w) {
        struct waiter *next = w->next;

        w->done(w->opaque, err);
        free(w);
        w = next;
    }
    pending_free(p);
}

static void fail_pending(struct pending *p, const char *msg)
{
    struct sg_error err = SG_ERROR_INIT;

    sg_error_report(&err, SG_ERR_UNAVAILABLE, "%s", msg);
    complete(p, &err);
    sg_error_reset(&err);
}

static void on_response(void *opaque, const struct k8s_response *resp)
{
    struct pending *p = opaque;
    struct sg_error err = SG_ERROR_INIT;
    const char *token = p->body + sizeof(review_head) - 1;
    int rc;

    p->call = NULL;
    if (resp->status == 0)
        SG_WARN("token review: %s (after %u attempt(s))",
                resp->error ? resp->error : "no response", resp->attempts);
    rc = sg_token_review_parse(resp->status, resp->body, resp->body_len,
                               p->r->cfg.audiences, p->r->cfg.n_audiences,
                               token, p->token_len, &err);
    complete(p, rc == 0 ? NULL : &err);
    sg_error_reset(&err);
}

static void on_deadline(uv_timer_t *t)
{
    struct pending *p = t->data;

    SG_WARN("token review: no answer within %u ms", p->r->cfg.timeout_ms);
    k8s_call_cancel(p->call);
    p->call = NULL;
    fail_pending(p, UNAVAILABLE_MSG);
}

/* Loop thread: send the review of p. */
static void start_review(void *arg)
{
    struct pending *p = arg;
    struct sg_token_review *r = p->r;
    struct k8s_request req = {
        .method = "POST",
        .path = REVIEW_PATH,
        .body = p->body,
        .timeout_ms = r->cfg.timeout_ms,
    };
    bool closing;

    pthread_mutex_lock(&r->mu);
    closing = r->closing;
    pthread_mutex_unlock(&r->mu);
    if (!closing)
        p->call = k8s_client_start(r->client, &req, on_response, p);
    if (!p->call) {
        if (!closing)
            SG_WARN("token review: the request could not start");
        fail_pending(p, closing ? "server is shutting down"
                                : UNAVAILABLE_MSG);
        return;
    }
    uv_timer_init(r->loop, &p->timer);
    p->timer.data = p;
    p->timer_on = true;
    uv_timer_start(&p->timer, on_deadline, r->cfg.timeout_ms, 0);
}

static int copy_config(struct sg_policy_token_review *dst,
                       const struct sg_policy_token_review *src)
{
    *dst = *src;
    dst->kubeconfig = NULL;
    dst->context = NULL;
    dst->audiences = NULL;
    dst->n_audiences = 0;
    if (src->n_audiences == 0)
        return 0;
    dst->audiences = calloc(src->n_audiences, sizeof(char *));
    if (!dst->audiences)
        return -1;
    for (size_t i = 0; i < src->n_audiences; i++) {
        dst->audiences[i] = strdup(src->audiences[i]);
        if (!dst->audiences[i])
            return -1;
        dst->n_audiences = i + 1;
    }
    return 0;
}

static void review_free(struct sg_token_review *r)
{
    for (size_t i = 0; i < r->cfg.n_audiences; i++)
        free(r->cfg.audiences[i]);
    free(r->cfg.audiences);
    sg_token_review_cache_free(r->cache);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static struct k8s_client *open_client(uv_loop_t *loop,
                                      const struct sg_policy_token_review *cfg,
                                      struct sg_error *err)
{
    struct k8s_settings s = {
        .in_cluster = cfg->in_cluster,
        .kubeconfig = cfg->kubeconfig,
        .context = cfg->context,
        .request_timeout_ms = cfg->timeout_ms,
        .connect_timeout_ms = cfg->timeout_ms,
        .max_retries = REVIEW_RETRIES,
        .retry_base_ms = REVIEW_RETRY_BASE_MS,
        .retry_max_ms = REVIEW_RETRY_MAX_MS,
    };

    return k8s_client_new(loop, &client_host, &s, NULL, err);
}

struct sg_token_review *sg_token_review_new(
    uv_loop_t *loop, const struct sg_policy_token_review *cfg,
    struct sg_error *err)
{
    struct sg_token_review *r = calloc(1, sizeof(*r));

    if (!r) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    r->loop = loop;
    r->cache = sg_token_review_cache_new(CACHE_ENTRIES);
    if (!r->cache || copy_config(&r->cfg, cfg) < 0) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        review_free(r);
        return NULL;
    }
    r->client = open_client(loop, cfg, err);
    if (!r->client) {
        review_free(r);
        return NULL;
    }
    r->queue = sg_loop_queue_new(loop, err);
    if (!r->queue) {
        k8s_client_close(r->client);
        review_free(r);
        return NULL;
    }
    return r;
}

/* Under r->mu: join the review of key in flight, or make one (*fresh). */
static struct pending *find_or_add(struct sg_token_review *r,
                                   const uint8_t key[32], struct waiter *w,
                                   bool *fresh)
{
    struct pending *p;

    for (p = r->pending; p; p = p->next) {
        if (memcmp(p->key, key, 32) == 0)
            break;
    }
    *fresh = p == NULL;
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p)
            return NULL;
        p->r = r;
        memcpy(p->key, key, 32);
        p->next = r->pending;
        r->pending = p;
    }
    w->next = p->waiters;
    p->waiters = w;
    return p;
}

/* Under r->mu: a cached answer (0 or -1), or 1 for none. */
static int cached(struct sg_token_review *r, const uint8_t key[32],
                  struct sg_error *err)
{
    char msg[SG_TOKEN_REVIEW_MSG_MAX];
    int hit = sg_token_review_cache_get(r->cache, key, now_ms(), msg,
                                        sizeof(msg));

    if (hit < 0)
        sg_error_report(err, SG_ERR_UNAUTHENTICATED, "%s", msg);
    return hit > 0 ? 0 : hit < 0 ? -1 : 1;
}

/* Unlink a fresh pending that never started (under r->mu). */
static void unlink_fresh(struct sg_token_review *r, struct pending *p)
{
    r->pending = p->next;
}

int sg_token_review_check(struct sg_token_review *r, const char *token,
                          size_t len, int64_t exp,
                          sg_token_review_done_fn done, void *opaque,
                          struct sg_error *err)
{
    uint8_t key[32];
    struct waiter *w = NULL;
    struct pending *p = NULL;
    bool fresh = false;
    int rc;

    SHA256((const uint8_t *)token, len, key);
    pthread_mutex_lock(&r->mu);
    rc = cached(r, key, err);
    if (rc <= 0 || !done || r->closing)
        goto cleanup;
    w = calloc(1, sizeof(*w));
    if (w) {
        w->done = done;
        w->opaque = opaque;
        p = find_or_add(r, key, w, &fresh);
    }
    if (!p)
        goto cleanup;
    w = NULL; /* p has it */
    if (fresh) {
        p->exp = exp;
        p->token_len = len;
        p->body = sg_token_review_body(token, len, r->cfg.audiences,
                                       r->cfg.n_audiences);
        /* Under the lock: a post can never outrun the unlink below. */
        if (!p->body || sg_loop_post(r->queue, start_review, p) < 0) {
            unlink_fresh(r, p);
            free(p->waiters);
            pending_free(p);
            p = NULL;
            goto cleanup;
        }
    }
    rc = 1;

 cleanup:
    pthread_mutex_unlock(&r->mu);
    free(w);
    if (rc == 1 && !p) {
        sg_error_report(err, SG_ERR_UNAVAILABLE, UNAVAILABLE_MSG);
        rc = -1;
    }
    return rc;
}

void sg_token_review_close(struct sg_token_review *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->closing = true;
    pthread_mutex_unlock(&r->mu);
    /* Queued reviews run now and fail: closing is set. */
    sg_loop_queue_close(r->queue);
    r->queue = NULL;
    while (r->pending) {
        struct pending *p = r->pending;

        k8s_call_cancel(p->call);
        p->call = NULL;
        fail_pending(p, "server is shutting down");
    }
    k8s_client_close(r->client);
    review_free(r);
}
