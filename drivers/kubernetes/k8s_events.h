/*
 * k8s_events.h: core v1 Events about the pods of our sandboxes, so that
 * a sandbox stuck in provisioning says why (FailedScheduling, an image
 * pull that Failed, FailedMount, ...).
 *
 * One informer per namespace the driver watches ("" = every namespace):
 * a paged LIST of /api/v1/.../events?fieldSelector=involvedObject.kind=Pod,
 * then a WATCH from its resourceVersion with bookmarks, resumed when the
 * server ends it and re-listed on 410 Expired (an HTTP status or an ERROR
 * event). Kubernetes offers no selector for "pods of this gateway", so
 * every pod event of the namespace is read and the driver's resolve
 * callback keeps those of its own sandboxes.
 *
 * For each sandbox the latest Warning about its pod is kept (reason and
 * message, the message cut to K8S_EVENT_MESSAGE_MAX bytes on a UTF-8
 * boundary), ordered by the event's own time, so a re-list does not go
 * back in time. A later Normal event that means progress (Scheduled,
 * Pulled, Created, Started) clears it. Whenever what is kept changes,
 * the driver's changed callback runs; k8s_events_overlay then puts the
 * warning on a PENDING status the driver reports (never on RUNNING,
 * FAILED or GONE ones).
 *
 * THREAD SAFETY: loop thread only, like the client it uses.
 * OWNERSHIP: the driver owns it (k8s_events_new / k8s_events_close); the
 * client, host and settings are borrowed and must outlive it.
 */
#ifndef SG_K8S_EVENTS_H
#define SG_K8S_EVENTS_H

#include "internal.h"
#include "k8s_client.h"
#include "k8s_config.h"

#include <sandgate/driver.h>
#include <uv.h>

#define K8S_EVENT_REASON_MAX 63
#define K8S_EVENT_MESSAGE_MAX 255

struct k8s_events;

/* The sandbox id (into id, 64 bytes) of pod ns/name if it is one of ours
   and known; false otherwise. */
typedef bool (*k8s_events_resolve_fn)(void *opaque, const char *ns,
                                      const char *pod, char *id);
/* The warning kept for sandbox id changed (it may now be none). */
typedef void (*k8s_events_changed_fn)(void *opaque, const char *id);

/* A new events watcher on client; nothing is watched until
   k8s_events_watch_namespace. NULL when out of memory. */
struct k8s_events *k8s_events_new(uv_loop_t *loop,
                                  const struct sg_driver_host *host,
                                  struct k8s_client *client,
                                  const struct k8s_settings *settings,
                                  k8s_events_resolve_fn resolve,
                                  k8s_events_changed_fn changed,
                                  void *opaque);

/* Start watching the pod events of namespace ns ("" = every namespace).
   Idempotent. Returns 0, or -1 when out of memory. NULL-safe (-1). */
int k8s_events_watch_namespace(struct k8s_events *ev, const char *ns);

/* When st is PENDING and a warning is kept for st->id, point st->reason
   and st->message at it (valid until the next event is handled). */
void k8s_events_overlay(const struct k8s_events *ev,
                        struct sg_driver_status *st);

/* Forget what is kept for sandbox id (its Sandbox is gone). */
void k8s_events_forget(struct k8s_events *ev, const char *id);

/* Cancel the watches and free it (its informers free themselves once
   the loop has run their close callbacks). No callback runs after this.
   Call it before closing the client. NULL-safe. */
void k8s_events_close(struct k8s_events *ev);

/* The event's time in microseconds since the epoch from an RFC 3339
   text ("2024-05-01T10:00:00Z", fractions allowed), or -1. For tests. */
int64_t k8s_events_parse_time(const char *s);

#endif /* SG_K8S_EVENTS_H */
