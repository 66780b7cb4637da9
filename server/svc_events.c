/*
 * svc_events.c: sandgate.v1.EventService WatchEvents and ListEvents
 * (docs/EVENTS.md).
 *
 * WatchEvents validates and authorizes the request, checks since_seq
 * against the retained window, and hands the call to the event hub as the
 * sink of a subscriber: the hub writes packed events to it one at a time
 * (sg_call_send_shared, completions through sg_call_set_on_sent) and ends
 * it with sg_call_abort. ListEvents pages through the store with the same
 * filters; each event is checked against the caller like a listed
 * sandbox.
 */
#include "internal.h"

#include "svc_events.h"

#include "authz_call.h"
#include "event_hub.h"
#include "gateway.h"
#include "log.h"
#include "page_token.h"

#include "sandgate_v1_event.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

SG_LOG_INIT("server.events");

#define LIST_DEFAULT_PAGE 50
#define LIST_MAX_PAGE 1000
/* Events a page may examine before it returns what it has. */
#define LIST_SCAN_BUDGET 10000

/* The gateway with its event hub, or NULL after failing the call. */
static struct sg_gateway *gateway(struct sg_call *call)
{
    struct sg_gateway *gw = sg_call_app_data(call);

    if (!gw || !gw->events)
        sg_call_finish(call, GRPC_STATUS_UNIMPLEMENTED,
                       "this server has no event service");
    return gw && gw->events ? gw : NULL;
}

/*
 * The type filter as a bit set. BOOKMARK is not a lifecycle type and
 * selects nothing (bookmarks follow bookmark_interval_seconds); *none is
 * set when types were given but none of them is one.
 */
static int parse_types(const Sandgate__V1__EventType *types, size_t n,
                       uint32_t *mask, bool *none, struct sg_error *err)
{
    *mask = 0;
    for (size_t i = 0; i < n; i++) {
        int v = (int)types[i];
        char field[32];

        if (v == SG_EVENT_BOOKMARK)
            continue;
        if (v < (int)SG_EVENT_ACCEPTED || v > (int)SG_EVENT_EXPIRED) {
            snprintf(field, sizeof(field), "types[%zu]", i);
            sg_error_add_violation(err, field, "unknown event type %d", v);
            continue;
        }
        *mask |= 1u << v;
    }
    *none = n > 0 && *mask == 0;
    return sg_error_is_set(err) ? -1 : 0;
}

static void deny_no_permission(const struct sg_authz_rule *rule,
                               struct sg_error *err)
{
    /* The transport's check already answers this; without it, deny. */
    sg_error_report(err, SG_ERR_PERMISSION_DENIED,
                    "permission '%s' is not granted", rule->permission);
}

/* ---- WatchEvents --------------------------------------------------------- */

static int sink_send(void *sink, const void *data, size_t len,
                     void (*release)(void *arg), void *arg)
{
    return sg_call_send_shared(sink, data, len, release, arg);
}

static void sink_end(void *sink, grpc_status_code code, const char *message)
{
    sg_call_abort(sink, code, message);
}

static void sink_release(void *sink)
{
    sg_call_unref(sink);
}

static const struct sg_event_sink_ops call_sink_ops = {
    .send = sink_send,
    .end = sink_end,
    .release = sink_release,
};

static void watch_sent(struct sg_call *call, bool ok)
{
    sg_event_sub_sent(sg_call_get_data(call), ok);
}

static void watch_cancelled(struct sg_call *call)
{
    sg_event_sub_cancel(sg_call_get_data(call));
}

static void watch_free(void *data)
{
    sg_event_sub_free(data);
}

void sg_svc_watch_events(struct sg_call *call, const ProtobufCMessage *msg)
{
    const Sandgate__V1__WatchEventsRequest *req = (const void *)msg;
    struct sg_gateway *gw = gateway(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_event_sub_config cfg;
    struct sg_event_sub *sub;
    struct sg_policy *policy = NULL;

    if (!gw)
        return;
    memset(&cfg, 0, sizeof(cfg));
    if (sg_authz_reach(call, &sg_authz_rule_watch_events) == SG_REACH_NONE) {
        deny_no_permission(&sg_authz_rule_watch_events, &err);
        goto cleanup;
    }
    if (parse_types(req->types, req->n_types, &cfg.filter.types,
                    &cfg.match_none, &err) < 0)
        goto cleanup;
    /* Answered here when it is already out of range; a purge during the
       replay is caught by the hub. */
    if (req->since_seq &&
        sg_event_check_position(gw->store, "since_seq", req->since_seq, NULL,
                                NULL, &err) < 0)
        goto cleanup;
    policy = sg_authz_policy_now(call);
    cfg.since_seq = req->since_seq;
    cfg.filter.tenant = req->tenant;
    cfg.filter.namespace_name = req->namespace_;
    cfg.filter.sandbox_id = req->sandbox_id;
    cfg.bookmark_interval_s = req->bookmark_interval_seconds;
    cfg.identity = sg_call_identity(call);
    cfg.policy = policy;
    cfg.rule = &sg_authz_rule_watch_events;
    cfg.ops = &call_sink_ops;
    cfg.sink = call;
    sub = sg_event_sub_new(gw->events, &cfg);
    if (!sub) {
        sg_error_report(&err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    /* Everything the hub's callbacks reach is in place before it sees the
       subscriber; the call frees it when it is freed itself. */
    sg_call_set_data_owned(call, sub, watch_free);
    sg_call_set_on_sent(call, watch_sent);
    sg_call_set_on_cancel(call, watch_cancelled);
    sg_call_ref(call); /* the hub's, returned through sink_release */
    if (sg_event_hub_add(gw->events, sub, &err) < 0) {
        sg_call_unref(call);
        goto cleanup;
    }
    /* The client sees the stream is set up: from now on nothing it asked
       for is missed, even if nothing comes for a while. */
    sg_call_send_initial_metadata(call);

 cleanup:
    if (sg_error_is_set(&err))
        sg_call_fail(call, &err);
    sg_policy_unref(policy);
    sg_error_reset(&err);
}

/* ---- ListEvents ---------------------------------------------------------- */

struct list_ctx {
    struct sg_call *call;
    bool filter; /* check each event against the caller */
    size_t want;
    size_t n;
    uint64_t last_seq; /* of the last event returned */
    struct sg_buf *out; /* ListEventsResponse wire, events so far */
    struct sg_buf ev;   /* scratch */
    struct sg_error *err;
};

static void add_varint(struct sg_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;

    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    sg_buf_add(b, tmp, n);
}

/* Append a length-delimited field (wire type 2). */
static void add_bytes_field(struct sg_buf *b, unsigned field,
                            const void *data, size_t len)
{
    add_varint(b, (uint64_t)field << 3 | 2);
    add_varint(b, len);
    sg_buf_add(b, data, len);
}

static int visit_list(void *opaque, const struct sg_event_row *ev)
{
    struct list_ctx *lc = opaque;

    if (lc->filter) {
        struct sg_authz_object obj = {
            .tenant = ev->tenant, .project = ev->project,
            .namespace_name = ev->namespace_name, .owner = ev->owner};

        if (!sg_authz_may_see(lc->call, &sg_authz_rule_list_events, &obj))
            return 0;
    }
    sg_buf_reset(&lc->ev);
    if (sg_event_pack(ev, &lc->ev) < 0) {
        sg_error_report(lc->err, SG_ERR_NO_MEMORY, "out of memory");
        return 1;
    }
    /* ListEventsResponse.events = 1, packed straight into the reply. */
    add_bytes_field(lc->out, 1, lc->ev.data, lc->ev.len);
    lc->n++;
    lc->last_seq = ev->seq;
    return lc->n >= lc->want;
}

static int list_page_size(int32_t page_size, struct sg_error *err)
{
    if (page_size < 0) {
        sg_error_add_violation(err, "page_size", "must not be negative");
        return -1;
    }
    if (page_size == 0)
        return LIST_DEFAULT_PAGE;
    return page_size > LIST_MAX_PAGE ? LIST_MAX_PAGE : page_size;
}

/* The request's filters, digested so a token cannot change them. */
static void list_digest(const Sandgate__V1__ListEventsRequest *req,
                        uint32_t types, bool none,
                        uint8_t out[SG_PAGE_DIGEST_SIZE])
{
    char since[24];
    char type_set[24];
    const char *parts[5];

    snprintf(since, sizeof(since), "%" PRIu64, req->since_seq);
    snprintf(type_set, sizeof(type_set), "%" PRIx32 "%s", types,
             none ? "-" : "");
    parts[0] = req->tenant;
    parts[1] = req->namespace_;
    parts[2] = req->sandbox_id;
    parts[3] = type_set;
    parts[4] = since;
    sg_page_filter_digest(parts, SG_N_ELEMENTS(parts), out);
}

/* A token's position: the decimal seq it carries. */
static int token_position(const char *token, const uint8_t *digest,
                          uint64_t *seq, struct sg_error *err)
{
    char *id = NULL;
    char *end = NULL;
    unsigned long long v;

    if (sg_page_token_decode(token, digest, &id, err) < 0)
        return -1;
    errno = 0;
    v = strtoull(id, &end, 10);
    if (errno || end == id || *end || v == 0) {
        sg_error_add_violation(err, "page_token", "malformed page token");
        free(id);
        return -1;
    }
    free(id);
    *seq = v;
    return 0;
}

static void list_reply(struct sg_call *call, struct sg_buf *out,
                       uint64_t next, const uint8_t *digest,
                       struct sg_error *err)
{
    char pos[24];
    char *token = NULL;

    if (next) {
        snprintf(pos, sizeof(pos), "%" PRIu64, next);
        token = sg_page_token_encode(pos, digest);
        if (!token) {
            sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
            return;
        }
        add_bytes_field(out, 2, token, strlen(token));
    }
    if (sg_buf_error(out) < 0)
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
    else
        sg_call_reply_bytes(call, out->len ? out->data : "", out->len);
    free(token);
}

void sg_svc_list_events(struct sg_call *call, const ProtobufCMessage *msg)
{
    const Sandgate__V1__ListEventsRequest *req = (const void *)msg;
    struct sg_gateway *gw = gateway(call);
    struct sg_error err = SG_ERROR_INIT;
    struct sg_buf out = SG_BUF_INIT;
    struct list_ctx lc = {.call = call, .out = &out, .ev = SG_BUF_INIT,
                          .err = &err};
    struct sg_event_filter f = {0};
    uint8_t digest[SG_PAGE_DIGEST_SIZE];
    enum sg_reach reach = sg_authz_reach(call, &sg_authz_rule_list_events);
    uint64_t after;
    uint64_t newest = 0;
    uint64_t scanned;
    uint64_t next = 0;
    bool none = false;
    bool tok;
    int page = list_page_size(req->page_size, &err);
    ssize_t n;

    if (!gw)
        return;
    if (reach == SG_REACH_NONE) {
        deny_no_permission(&sg_authz_rule_list_events, &err);
        goto cleanup;
    }
    if (parse_types(req->types, req->n_types, &f.types, &none, &err) < 0 ||
        page < 0)
        goto cleanup;
    list_digest(req, f.types, none, digest);
    after = req->since_seq;
    tok = *req->page_token != '\0';
    if (tok && token_position(req->page_token, digest, &after, &err) < 0)
        goto cleanup;
    if (sg_event_check_position(gw->store,
                                tok ? "the page token's position"
                                    : "since_seq",
                                after, NULL, &newest, &err) < 0)
        goto cleanup;
    if (none) {
        list_reply(call, &out, 0, digest, &err);
        goto cleanup;
    }
    f.tenant = req->tenant;
    f.namespace_name = req->namespace_;
    f.sandbox_id = req->sandbox_id;
    lc.filter = reach != SG_REACH_ANY;
    lc.want = (size_t)page;
    scanned = after;
    n = sg_store_list_events(gw->store, &f, after, 0, LIST_SCAN_BUDGET,
                             &scanned, visit_list, &lc, &err);
    if (n < 0 || sg_error_is_set(&err))
        goto cleanup;
    /* Retention may have run during the read: what follows `after` must
       still have been there. */
    if (after && sg_event_check_position(gw->store,
                                         tok ? "the page token's position"
                                             : "since_seq",
                                         after, NULL, NULL, &err) < 0)
        goto cleanup;
    /* A full page resumes after its last event; a page cut short by the
       scan budget after what was examined. Nothing is left once the scan
       reached the newest event of the call's start. */
    if (lc.n >= lc.want && lc.last_seq < newest)
        next = lc.last_seq;
    else if (lc.n < lc.want && scanned > after && scanned < newest)
        next = scanned;
    list_reply(call, &out, next, digest, &err);

 cleanup:
    if (sg_error_is_set(&err))
        sg_call_fail(call, &err);
    sg_buf_free(&lc.ev);
    sg_buf_free(&out);
    sg_error_reset(&err);
}
