/*
 * event_hub.h: committed lifecycle events, fanned out to WatchEvents
 * streams (docs/EVENTS.md).
 *
 * The store calls the hub's commit observer on its writer thread with
 * every committed event, in seq order. The observer packs each event once
 * into a refcounted sandgate.v1.Event shared by every stream it goes to,
 * queues it and wakes the hub's own thread ("sg-event-hub"), which does
 * everything else: fan-out, replay of history from the store, bookmarks.
 * Nothing the hub does waits for a stream: each subscriber has a bounded
 * queue of event references and its sink writes one message at a time
 * (completions arrive on completion-queue threads through
 * sg_event_sub_sent); a subscriber whose queue is full when an event
 * comes is ended with RESOURCE_EXHAUSTED naming where to resume.
 *
 * Join without a race: a subscriber from since_seq N > 0 starts in
 * replay; the hub thread reads pages of history after its cursor from the
 * store (paced by the room in its queue) until the cursor reaches the last
 * seq the hub has fanned out, and only then takes it into the fan-out.
 * Fan-out and replay run on the same thread, so no event falls between
 * the two, and an event read by replay before its fan-out is skipped by
 * the cursor. A subscriber from 0 joins at the last seq the observer has
 * handed over when it is added.
 *
 * Authorization: every event is checked against the subscriber's identity
 * under the policy in force when it is queued (cfg.current_policy), so a
 * reload applies to open streams; a subscriber whose permission is gone
 * is ended with PERMISSION_DENIED.
 *
 * OWNERSHIP: sg_event_hub_new returns a hub the caller stops with
 * sg_event_hub_stop and frees with sg_event_hub_free after the store is
 * closed (the observer stays installed until then). A subscriber is
 * allocated by sg_event_sub_new and freed by its sink's owner with
 * sg_event_sub_free once the hub has released the sink (ops->release) or
 * if it was never added. Events handed to sinks are released through the
 * release callback given with them.
 * THREAD SAFETY: sg_event_hub_add, sg_event_sub_sent and
 * sg_event_sub_cancel from any thread; new, stop and free from one thread
 * with no call of the others in flight. Sink ops run on the hub thread
 * (send, end, release) and, for send, on the thread that reports a
 * completion.
 */
#ifndef SG_SERVER_EVENT_HUB_H
#define SG_SERVER_EVENT_HUB_H

#include "internal.h"

#include "buf.h"
#include "error.h"
#include "identity.h"
#include "policy.h"
#include "rule.h"
#include "store.h"

#include <grpc/status.h>

/* The sandgate.v1.EventType of bookmarks (not a store event type). */
#define SG_EVENT_BOOKMARK 11

/* Bookmark intervals are clamped to this range (seconds). */
#define SG_EVENT_BOOKMARK_MIN_S 1
#define SG_EVENT_BOOKMARK_MAX_S 3600

struct sg_event_hub;
struct sg_event_sub;

struct sg_event_hub_config {
    struct sg_store *store;  /* required for replay; NULL: live only */
    size_t queue_limit;      /* events queued per subscriber; default 4096 */
    size_t max_streams;      /* subscribers at once; 0: no limit */
    size_t replay_page;      /* events per history read; default 256 */
    size_t replay_scan;      /* rows a read may examine; default 4096 */
    /* The policy in force now (a new reference), or NULL to keep judging
       each subscriber by the policy it came with. */
    struct sg_policy *(*current_policy)(void *opaque);
    void *policy_opaque;
};

/* What the hub asks of a subscriber's stream. */
struct sg_event_sink_ops {
    /*
     * Start writing one packed sandgate.v1.Event (len bytes at data), then
     * report its completion with sg_event_sub_sent. The sink calls
     * release(arg) once it no longer needs the bytes, in every case.
     * Returns 0, or -1 when the stream is gone (no completion follows).
     */
    int (*send)(void *sink, const void *data, size_t len,
                void (*release)(void *arg), void *arg);
    /* End the stream now with a status (what is queued is dropped). */
    void (*end)(void *sink, grpc_status_code code, const char *message);
    /* The hub is done with the subscriber: the reference handed over by
       sg_event_hub_add is returned. The last sink op for this sub. */
    void (*release)(void *sink);
};

struct sg_event_sub_config {
    uint64_t since_seq;          /* 0: from now */
    struct sg_event_filter filter; /* strings copied */
    bool match_none;             /* types were given, none a lifecycle type */
    unsigned bookmark_interval_s; /* 0: none; else clamped (above) */
    const struct sg_identity *identity; /* referenced */
    struct sg_policy *policy;    /* referenced: the policy the call came with */
    const struct sg_authz_rule *rule; /* the method's rule (static) */
    const struct sg_event_sink_ops *ops;
    void *sink;
};

/* Start the hub thread and install the store's commit observer (before
   the first write). NULL with err set on failure. */
struct sg_event_hub *sg_event_hub_new(const struct sg_event_hub_config *cfg,
                                      struct sg_error *err)
    SG_WARN_UNUSED_RESULT;

/* End every subscriber (UNAVAILABLE) and join the thread. Events still
   committed afterwards are dropped. NULL-safe. */
void sg_event_hub_stop(struct sg_event_hub *hub);

/* Remove the observer and free; after sg_event_hub_stop and after the
   store is closed. NULL-safe. */
void sg_event_hub_free(struct sg_event_hub *hub);

/*
 * The commit observer (struct sg_store_commit_fn), installed by
 * sg_event_hub_new; exposed so tests can feed events without a store.
 * Never blocks beyond a short lock; an event that cannot be allocated
 * sends the live subscribers back to replay, never past a gap.
 */
void sg_event_hub_observe(void *hub, const struct sg_event_row *evs,
                          size_t n_evs);

/* Allocate a subscriber (references and copies cfg). NULL: no memory. */
struct sg_event_sub *sg_event_sub_new(struct sg_event_hub *hub,
                                      const struct sg_event_sub_config *cfg);
void sg_event_sub_free(struct sg_event_sub *sub); /* NULL-safe */

/*
 * Hand sub to the hub, which takes over one reference to the sink. 0; or
 * -1 with err set (RESOURCE_EXHAUSTED past max_streams, UNAVAILABLE once
 * stopping), and then the sink reference stays the caller's.
 */
int sg_event_hub_add(struct sg_event_hub *hub, struct sg_event_sub *sub,
                     struct sg_error *err) SG_WARN_UNUSED_RESULT;

/* The sink finished writing the message last sent (ok false: the stream
   broke). Any thread; never blocks beyond short locks. */
void sg_event_sub_sent(struct sg_event_sub *sub, bool ok);

/* The stream is gone (client cancel, deadline, shutdown): the hub drops
   the subscriber and releases the sink. Any thread; idempotent. */
void sg_event_sub_cancel(struct sg_event_sub *sub);

/*
 * The standard check of a position against the retained window: after is
 * the last seq a reader has (0 never fails). -1 with SG_ERR_OUT_OF_RANGE
 * when events after it are no longer retained ("<what> N is older than
 * the retained events; the oldest available is O (resume with since_seq
 * O-1)"), or when it is ahead of the newest event (a position from
 * another history). *oldest and *newest (may be NULL) receive the
 * window. Store errors are returned as they are.
 */
int sg_event_check_position(struct sg_store *store, const char *what,
                            uint64_t after, uint64_t *oldest,
                            uint64_t *newest, struct sg_error *err)
    SG_WARN_UNUSED_RESULT;

/* Append ev as a packed sandgate.v1.Event. 0, or -1 when memory ran out. */
int sg_event_pack(const struct sg_event_row *ev, struct sg_buf *out);

/* Counters, for tests and logs. */
struct sg_event_hub_stats {
    size_t subscribers;  /* added and not yet released */
    size_t replaying;
    uint64_t published;  /* last seq fanned out */
    uint64_t overflows;  /* subscribers ended for a full queue */
};
void sg_event_hub_get_stats(struct sg_event_hub *hub,
                            struct sg_event_hub_stats *out);

#endif /* SG_SERVER_EVENT_HUB_H */
