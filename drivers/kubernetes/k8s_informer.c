/*
 * k8s_informer.c: LIST (paged) -> WATCH -> WATCH ... over one collection
 * (see k8s_informer.h).
 */
#include "internal.h"

#include "k8s_informer.h"

#include <stdio.h>
#include <stdlib.h>

#define LOG(inf, lvl, ...) (inf)->host->log((lvl), "kubernetes", __VA_ARGS__)
#define PATH_BUF 4096

enum inf_phase { INF_IDLE, INF_LISTING, INF_WATCHING, INF_BACKOFF };

struct k8s_informer {
    uv_loop_t *loop;
    const struct sg_driver_host *host;
    struct k8s_client *client;
    const struct k8s_settings *settings;
    struct k8s_informer_config cfg; /* its strings point at ours below */
    char *collection;
    char *query;
    char name[64];
    char log_what[64];
    char log_watch[64];
    char list_kind[64];
    char rv[32];
    char *cont; /* list continue token */
    enum inf_phase phase;
    bool relist; /* the next start lists (410, first start) */
    bool closing;
    uint32_t failures;
    struct k8s_call *call;
    uv_timer_t timer;
};

static const char *label(const struct k8s_informer *inf)
{
    return inf->name[0] != '\0' ? inf->name : "*";
}

static void retry_cb(uv_timer_t *t)
{
    struct k8s_informer *inf = t->data;

    inf->phase = INF_IDLE;
    k8s_informer_start(inf);
}

static void backoff(struct k8s_informer *inf, const char *why)
{
    uint64_t ms;

    inf->failures++;
    ms = k8s_backoff_ms(inf->failures, inf->settings->retry_base_ms,
                        inf->settings->retry_max_ms, 0, (uint32_t)random());
    LOG(inf, inf->failures > 3 ? SG_DRIVER_LOG_WARN : SG_DRIVER_LOG_DEBUG,
        "%s '%s': %s; again in %llu ms", inf->log_what, label(inf), why,
        (unsigned long long)ms);
    inf->phase = INF_BACKOFF;
    inf->call = NULL;
    uv_timer_start(&inf->timer, retry_cb, ms, 0);
}

/* "<what>: HTTP <status> <detail>" into why. */
static void failure_text(struct k8s_informer *inf, bool watch,
                         const struct k8s_response *r, char *why, size_t size)
{
    char detail[400];

    detail[0] = '\0';
    if (inf->cfg.detail != NULL)
        inf->cfg.detail(inf->cfg.opaque, watch, r, detail, sizeof(detail));
    snprintf(why, size, "%s: HTTP %ld %s", watch ? "watch ended" : "list",
             r->status, detail);
}

static void list_page(struct k8s_informer *inf);

/* Hand the items of a page to the owner; false once closed. */
static bool page_items(struct k8s_informer *inf, json_t *items)
{
    json_t *item;
    size_t i;

    json_array_foreach(items, i, item)
    {
        if (inf->closing)
            return false;
        inf->cfg.list_object(inf->cfg.opaque, item);
    }
    return !inf->closing;
}

/* The last page is in: watch from the list's resourceVersion. */
static void list_finished(struct k8s_informer *inf)
{
    inf->relist = false;
    inf->failures = 0;
    inf->phase = INF_IDLE;
    k8s_informer_start(inf);
    if (inf->cfg.list_done != NULL && !inf->closing)
        inf->cfg.list_done(inf->cfg.opaque);
}

static void on_list_page(void *opaque, const struct k8s_response *r)
{
    struct k8s_informer *inf = opaque;
    json_t *j, *items, *meta;
    const char *cont, *rv;
    char why[480];

    inf->call = NULL;
    if (r->status != 200) {
        if (r->status == 410) {
            free(inf->cont); /* an expired continue token: start over */
            inf->cont = NULL;
        }
        failure_text(inf, false, r, why, sizeof(why));
        backoff(inf, why);
        return;
    }
    j = json_loads(r->body, 0, NULL);
    items = json_object_get(j, "items");
    meta = json_object_get(j, "metadata");
    if (j == NULL || !json_is_array(items)) {
        json_decref(j);
        snprintf(why, sizeof(why), "list: not %s", inf->list_kind);
        backoff(inf, why);
        return;
    }
    if (!page_items(inf, items)) {
        json_decref(j);
        return;
    }
    cont = json_string_value(json_object_get(meta, "continue"));
    free(inf->cont);
    inf->cont = cont != NULL && cont[0] != '\0' ? strdup(cont) : NULL;
    rv = json_string_value(json_object_get(meta, "resourceVersion"));
    if (inf->cont == NULL)
        snprintf(inf->rv, sizeof(inf->rv), "%s", rv != NULL ? rv : "");
    json_decref(j);
    if (inf->cont != NULL)
        list_page(inf);
    else
        list_finished(inf);
}

static void list_page(struct k8s_informer *inf)
{
    char path[PATH_BUF];
    struct k8s_request req = {.method = "GET", .path = path};

    if (inf->cont != NULL) {
        char esc[2048];

        k8s_query_escape(inf->cont, esc, sizeof(esc));
        snprintf(path, sizeof(path), "%s?%s&limit=%u&continue=%s",
                 inf->collection, inf->query, inf->settings->list_page_size,
                 esc);
    } else {
        snprintf(path, sizeof(path), "%s?%s&limit=%u", inf->collection,
                 inf->query, inf->settings->list_page_size);
    }
    inf->phase = INF_LISTING;
    inf->call = k8s_client_start(inf->client, &req, on_list_page, inf);
    if (inf->call == NULL)
        backoff(inf, "cannot start a list");
}

/* An ERROR event: 410 lists again; the server closes the stream after
   it, and the end handler decides between re-list and re-watch. */
static void watch_error(struct k8s_informer *inf, json_t *obj)
{
    json_t *code = json_object_get(obj, "code");

    if (json_is_integer(code) && json_integer_value(code) == 410) {
        LOG(inf, SG_DRIVER_LOG_INFO, "%s of '%s' expired (410); listing again",
            inf->log_watch, label(inf));
        inf->relist = true;
    } else if (!inf->relist) {
        inf->failures++;
    }
}

static bool on_watch_line(void *opaque, const char *line, size_t len)
{
    struct k8s_informer *inf = opaque;
    json_t *e = json_loadb(line, len, 0, NULL);
    const char *type = json_string_value(json_object_get(e, "type"));
    json_t *obj = json_object_get(e, "object");
    const char *rv = json_string_value(
        json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));

    if (e == NULL || type == NULL) {
        json_decref(e);
        LOG(inf, SG_DRIVER_LOG_WARN, "%s: an event that is not JSON",
            inf->log_watch);
        return true;
    }
    if (STREQ(type, "ERROR")) {
        watch_error(inf, obj);
        json_decref(e);
        return true;
    }
    if (rv != NULL && rv[0] != '\0')
        snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
    if (STREQ(type, "BOOKMARK")) {
        json_decref(e);
        inf->failures = 0; /* a bookmark proves the stream works */
        return !inf->closing;
    }
    inf->cfg.watch_event(inf->cfg.opaque, type, obj);
    json_decref(e);
    inf->failures = 0;
    return !inf->closing;
}

static void on_watch_end(void *opaque, const struct k8s_response *r)
{
    struct k8s_informer *inf = opaque;
    char why[480];

    inf->call = NULL;
    inf->phase = INF_IDLE;
    if (r->status == 410)
        inf->relist = true;
    if (inf->relist ||
        (r->status == 200 && r->error == NULL && inf->failures == 0)) {
        /* 410: list again; a clean end (timeoutSeconds): resume. */
        k8s_informer_start(inf);
        return;
    }
    failure_text(inf, true, r, why, sizeof(why));
    backoff(inf, why);
}

static void watch(struct k8s_informer *inf)
{
    char path[PATH_BUF];
    struct k8s_request req = {
        .method = "GET",
        .path = path,
        .on_line = on_watch_line,
        /* The server ends the stream first; this only catches a dead
           connection. */
        .timeout_ms = (inf->settings->watch_timeout_seconds + 30) * 1000,
    };

    snprintf(path, sizeof(path),
             "%s?%s&watch=1&allowWatchBookmarks=true&resourceVersion=%s"
             "&timeoutSeconds=%u",
             inf->collection, inf->query, inf->rv,
             inf->settings->watch_timeout_seconds);
    inf->phase = INF_WATCHING;
    inf->call = k8s_client_start(inf->client, &req, on_watch_end, inf);
    if (inf->call == NULL)
        backoff(inf, "cannot start a watch");
}

void k8s_informer_start(struct k8s_informer *inf)
{
    if (inf == NULL || inf->closing || inf->phase != INF_IDLE)
        return;
    if (inf->relist || inf->rv[0] == '\0') {
        free(inf->cont);
        inf->cont = NULL;
        if (inf->cfg.list_began != NULL)
            inf->cfg.list_began(inf->cfg.opaque);
        list_page(inf);
    } else {
        watch(inf);
    }
}

static void informer_free(struct k8s_informer *inf)
{
    free(inf->collection);
    free(inf->query);
    free(inf->cont);
    free(inf);
}

struct k8s_informer *k8s_informer_new(uv_loop_t *loop,
                                      const struct sg_driver_host *host,
                                      struct k8s_client *client,
                                      const struct k8s_settings *settings,
                                      const struct k8s_informer_config *cfg)
{
    struct k8s_informer *inf = calloc(1, sizeof(*inf));

    if (inf == NULL)
        return NULL;
    inf->collection = strdup(cfg->collection);
    inf->query = strdup(cfg->query);
    if (inf->collection == NULL || inf->query == NULL ||
        uv_timer_init(loop, &inf->timer) < 0) {
        informer_free(inf);
        return NULL;
    }
    inf->timer.data = inf;
    inf->loop = loop;
    inf->host = host;
    inf->client = client;
    inf->settings = settings;
    inf->cfg = *cfg;
    snprintf(inf->name, sizeof(inf->name), "%s", cfg->name);
    snprintf(inf->log_what, sizeof(inf->log_what), "%s", cfg->log_what);
    snprintf(inf->log_watch, sizeof(inf->log_watch), "%s", cfg->log_watch);
    snprintf(inf->list_kind, sizeof(inf->list_kind), "%s", cfg->list_kind);
    inf->cfg.collection = inf->collection;
    inf->cfg.query = inf->query;
    inf->cfg.name = inf->name;
    inf->cfg.log_what = inf->log_what;
    inf->cfg.log_watch = inf->log_watch;
    inf->cfg.list_kind = inf->list_kind;
    inf->relist = true;
    return inf;
}

static void informer_closed(uv_handle_t *h)
{
    informer_free(h->data);
}

void k8s_informer_close(struct k8s_informer *inf)
{
    if (inf == NULL || inf->closing)
        return;
    inf->closing = true;
    k8s_call_cancel(inf->call);
    inf->call = NULL;
    uv_timer_stop(&inf->timer);
    uv_close((uv_handle_t *)&inf->timer, informer_closed);
}
