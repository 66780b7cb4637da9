/*
 * k8s_events.c: the pod-event informers of the kubernetes driver (see
 * k8s_events.h).
 *
 * Each namespace has a k8s_informer (LIST (paged) -> WATCH -> WATCH ...,
 * a 410 lists again), the same machinery as the Sandbox informers in
 * k8s_driver.c. What it keeps is one struct warn per sandbox id, so its memory
 * follows the number of sandboxes, not the number of events.
 */
#include "internal.h"

#include "k8s_events.h"

#include "k8s_informer.h"

#include "strmap.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* URL-encoded: %3D is "=". */
#define SELECTOR "fieldSelector=involvedObject.kind%3DPod"

/* One namespace's informer. */
struct ens {
    struct k8s_events *ev;
    struct ens *next;
    char name[64];
    struct k8s_informer *inf;
};

/* The latest warning about one sandbox's pod. */
struct warn {
    bool active;
    int64_t time_us; /* of the latest event applied, warning or progress */
    char reason[K8S_EVENT_REASON_MAX + 1];
    char message[K8S_EVENT_MESSAGE_MAX + 1];
};

struct k8s_events {
    uv_loop_t *loop;
    const struct sg_driver_host *host;
    struct k8s_client *client;
    const struct k8s_settings *settings;
    k8s_events_resolve_fn resolve;
    k8s_events_changed_fn changed;
    void *opaque;
    struct ens *nss;
    struct sg_strmap *warns; /* sandbox id -> struct warn */
    bool closing;
};

/* ---- time ---- */

/* n decimal digits at *p into *out; advances *p. */
static bool digits(const char **p, int n, int64_t *out)
{
    int64_t v = 0;

    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool expect(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

int64_t k8s_events_parse_time(const char *s)
{
    const char *p = s;
    int64_t y, mo, d, h, mi, sec, frac = 0, oh = 0, om = 0, us;
    struct tm tm = {0};
    int nfrac = 0;

    if (s == NULL || !digits(&p, 4, &y) || !expect(&p, '-') ||
        !digits(&p, 2, &mo) || !expect(&p, '-') || !digits(&p, 2, &d))
        return -1;
    if (!expect(&p, 'T') && !expect(&p, 't'))
        return -1;
    if (!digits(&p, 2, &h) || !expect(&p, ':') || !digits(&p, 2, &mi) ||
        !expect(&p, ':') || !digits(&p, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60)
        return -1;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (nfrac < 6) {
                frac = frac * 10 + (*p - '0');
                nfrac++;
            }
            p++;
        }
        if (nfrac == 0)
            return -1;
        for (; nfrac < 6; nfrac++)
            frac *= 10;
    }
    tm.tm_year = (int)(y - 1900);
    tm.tm_mon = (int)(mo - 1);
    tm.tm_mday = (int)d;
    tm.tm_hour = (int)h;
    tm.tm_min = (int)mi;
    tm.tm_sec = (int)sec;
    us = (int64_t)timegm(&tm); /* seconds so far; UTC */
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int64_t sign = *p == '-' ? -1 : 1;

        p++;
        if (!digits(&p, 2, &oh) || !expect(&p, ':') || !digits(&p, 2, &om))
            return -1;
        us -= sign * (oh * 3600 + om * 60);
    } else {
        return -1;
    }
    if (*p != '\0')
        return -1;
    return us * 1000000 + frac;
}

/* The event's latest time: series.lastObservedTime, lastTimestamp,
   eventTime, firstTimestamp, metadata.creationTimestamp; -1 if none. */
static int64_t event_time(json_t *e)
{
    const char *cands[] = {
        json_string_value(json_object_get(json_object_get(e, "series"),
                                          "lastObservedTime")),
        json_string_value(json_object_get(e, "lastTimestamp")),
        json_string_value(json_object_get(e, "eventTime")),
        json_string_value(json_object_get(e, "firstTimestamp")),
        json_string_value(json_object_get(json_object_get(e, "metadata"),
                                          "creationTimestamp")),
    };

    for (size_t i = 0; i < SG_N_ELEMENTS(cands); i++) {
        int64_t t = k8s_events_parse_time(cands[i]);

        if (t >= 0)
            return t;
    }
    return -1;
}

/* ---- what is kept ---- */

/* Copy s into out (size bytes), cut on a UTF-8 character boundary. */
static void copy_utf8(const char *s, char *out, size_t size)
{
    size_t n = strlen(s);

    if (n >= size) {
        n = size - 1;
        /* Back up over continuation bytes to a character's start. */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(out, s, n);
    out[n] = '\0';
}

/* Normal events that mean the pod got past what a warning reported. */
static bool is_progress(const char *reason)
{
    static const char *const progress[] = {"Scheduled", "Pulled", "Created",
                                           "Started"};

    for (size_t i = 0; i < SG_N_ELEMENTS(progress); i++) {
        if (STREQ(reason, progress[i]))
            return true;
    }
    return false;
}

/* Apply one Event object (from a list or a watch ADDED/MODIFIED). */
static void apply_event(struct k8s_events *ev, json_t *e)
{
    json_t *io = json_object_get(e, "involvedObject");
    const char *kind = json_string_value(json_object_get(io, "kind"));
    const char *ns = json_string_value(json_object_get(io, "namespace"));
    const char *pod = json_string_value(json_object_get(io, "name"));
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *reason = json_string_value(json_object_get(e, "reason"));
    const char *message = json_string_value(json_object_get(e, "message"));
    bool warning = type != NULL && STREQ(type, "Warning");
    char id[64];
    char r[K8S_EVENT_REASON_MAX + 1], m[K8S_EVENT_MESSAGE_MAX + 1];
    int64_t t;
    struct warn *w;

    if (kind == NULL || STRNEQ(kind, "Pod") || ns == NULL || pod == NULL ||
        reason == NULL || reason[0] == '\0')
        return;
    if (!warning && !is_progress(reason))
        return;
    id[0] = '\0';
    if (!ev->resolve(ev->opaque, ns, pod, id) || id[0] == '\0')
        return;
    t = event_time(e);
    w = sg_strmap_get(ev->warns, id);
    if (w == NULL) {
        if (!warning)
            return;
        w = calloc(1, sizeof(*w));
        if (w == NULL || sg_strmap_put(ev->warns, id, w) < 0) {
            free(w);
            return;
        }
        w->time_us = -1;
    }
    /* Older than what was applied (a re-list, or a late arrival). */
    if (t >= 0 && t < w->time_us)
        return;
    if (t >= 0)
        w->time_us = t;
    if (!warning) {
        if (!w->active)
            return;
        w->active = false;
        ev->changed(ev->opaque, id);
        return;
    }
    copy_utf8(reason, r, sizeof(r));
    copy_utf8(message != NULL ? message : "", m, sizeof(m));
    if (w->active && STREQ(w->reason, r) && STREQ(w->message, m))
        return; /* the same warning again (its count went up) */
    w->active = true;
    memcpy(w->reason, r, sizeof(r));
    memcpy(w->message, m, sizeof(m));
    ev->changed(ev->opaque, id);
}

void k8s_events_overlay(const struct k8s_events *ev,
                        struct sg_driver_status *st)
{
    const struct warn *w;

    if (ev == NULL || st->id == NULL || st->state != SG_DRIVER_STATE_PENDING)
        return;
    w = sg_strmap_get(ev->warns, st->id);
    if (w == NULL || !w->active)
        return;
    st->reason = w->reason;
    st->message = w->message;
}

void k8s_events_forget(struct k8s_events *ev, const char *id)
{
    if (ev == NULL)
        return;
    free(sg_strmap_remove(ev->warns, id));
}

/* ---- informers (k8s_informer.h) ---- */

static void on_list_object(void *opaque, json_t *obj)
{
    struct ens *n = opaque;

    apply_event(n->ev, obj);
}

static void on_watch_event(void *opaque, const char *type, json_t *obj)
{
    struct ens *n = opaque;

    /* DELETED: an expired Event says nothing new about the pod. */
    if (STREQ(type, "ADDED") || STREQ(type, "MODIFIED"))
        apply_event(n->ev, obj);
}

/* An HTTP failure's Status reason, for the log. */
static void status_reason(void *opaque, bool watch,
                          const struct k8s_response *r, char *out,
                          size_t size)
{
    json_t *j = r->body != NULL ? json_loads(r->body, 0, NULL) : NULL;
    const char *s = json_string_value(json_object_get(j, "reason"));
    char reason[64];

    (void)opaque;
    (void)watch;
    snprintf(reason, sizeof(reason), "%s",
             s != NULL ? s : (r->status == 0 && r->error ? r->error : ""));
    snprintf(out, size, "%s", reason);
    json_decref(j);
}

static struct k8s_informer *ens_informer(struct k8s_events *ev,
                                         struct ens *n, const char *ns)
{
    char coll[128];
    struct k8s_informer_config cfg = {
        .collection = coll,
        .query = SELECTOR,
        .name = ns,
        .log_what = "events of namespace",
        .log_watch = "events watch",
        .list_kind = "an EventList",
        .list_object = on_list_object,
        .watch_event = on_watch_event,
        .detail = status_reason,
        .opaque = n,
    };

    if (ns[0] == '\0')
        snprintf(coll, sizeof(coll), "/api/v1/events");
    else
        snprintf(coll, sizeof(coll), "/api/v1/namespaces/%s/events", ns);
    return k8s_informer_new(ev->loop, ev->host, ev->client, ev->settings,
                            &cfg);
}

/* ---- lifecycle ---- */

struct k8s_events *k8s_events_new(uv_loop_t *loop,
                                  const struct sg_driver_host *host,
                                  struct k8s_client *client,
                                  const struct k8s_settings *settings,
                                  k8s_events_resolve_fn resolve,
                                  k8s_events_changed_fn changed, void *opaque)
{
    struct k8s_events *ev = calloc(1, sizeof(*ev));

    if (ev == NULL)
        return NULL;
    ev->warns = sg_strmap_new();
    if (ev->warns == NULL) {
        free(ev);
        return NULL;
    }
    ev->loop = loop;
    ev->host = host;
    ev->client = client;
    ev->settings = settings;
    ev->resolve = resolve;
    ev->changed = changed;
    ev->opaque = opaque;
    return ev;
}

int k8s_events_watch_namespace(struct k8s_events *ev, const char *ns)
{
    struct ens *n;

    if (ev == NULL || ev->closing)
        return -1;
    for (n = ev->nss; n != NULL; n = n->next) {
        if (STREQ(n->name, ns))
            return 0;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL)
        return -1;
    n->ev = ev;
    snprintf(n->name, sizeof(n->name), "%s", ns);
    n->inf = ens_informer(ev, n, n->name);
    if (n->inf == NULL) {
        free(n);
        return -1;
    }
    n->next = ev->nss;
    ev->nss = n;
    k8s_informer_start(n->inf);
    return 0;
}

static int free_warn(void *opaque, const char *key, void *value)
{
    (void)opaque;
    (void)key;
    free(value);
    return 0;
}

/* The informers free themselves once closed and call nothing after
   k8s_informer_close, so what they pointed at can go now. */
void k8s_events_close(struct k8s_events *ev)
{
    if (ev == NULL || ev->closing)
        return;
    ev->closing = true;
    while (ev->nss != NULL) {
        struct ens *n = ev->nss;

        ev->nss = n->next;
        k8s_informer_close(n->inf);
        free(n);
    }
    sg_strmap_foreach(ev->warns, free_warn, NULL);
    sg_strmap_free(ev->warns);
    free(ev);
}
