/*
 * k8s_informer.h: one list/watch loop over a Kubernetes collection, the
 * machinery the Sandbox informers (k8s_driver.c) and the pod-event
 * informers (k8s_events.c) share.
 *
 * An informer goes LIST (paged: limit=list_page_size, continue tokens)
 * -> WATCH from the list's resourceVersion with allowWatchBookmarks and
 * timeoutSeconds=watch_timeout_seconds -> WATCH again from the last
 * resourceVersion when the server ends the stream cleanly. A 410 Gone,
 * as an HTTP status or as an ERROR event inside the stream, starts a
 * LIST again; other failures back off (k8s_backoff_ms with the client's
 * retry_base_ms/retry_max_ms) and try again.
 *
 * The owner sees: list_began when a LIST starts from its first page,
 * list_object for each item of each page, list_done once the last page
 * is in (the watch has then been started), and watch_event for each
 * watch event but BOOKMARK and ERROR, which the informer handles.
 *
 * THREAD SAFETY: loop thread only, like the client it uses.
 * OWNERSHIP: the owner makes it (k8s_informer_new) and closes it
 * (k8s_informer_close); the loop, host, client and settings are borrowed
 * and must outlive it; the config's strings are copied.
 */
#ifndef SG_K8S_INFORMER_H
#define SG_K8S_INFORMER_H

#include "internal.h"
#include "k8s_client.h"
#include "k8s_config.h"

#include <jansson.h>
#include <sandgate/driver.h>
#include <uv.h>

struct k8s_informer;

/* A LIST starts from its first page. */
typedef void (*k8s_informer_list_began_fn)(void *opaque);
/* One item of a list page (borrowed for the call). */
typedef void (*k8s_informer_object_fn)(void *opaque, json_t *obj);
/* The last page of a list is in and the watch has been started. */
typedef void (*k8s_informer_list_done_fn)(void *opaque);
/* A watch event: type is ADDED, MODIFIED, DELETED or what else the
   server sends; obj is borrowed for the call and may be NULL. */
typedef void (*k8s_informer_event_fn)(void *opaque, const char *type,
                                      json_t *obj);
/* What a failed list (watch false) or a watch that ended badly (watch
   true) says, for the log, into out (size bytes). */
typedef void (*k8s_informer_detail_fn)(void *opaque, bool watch,
                                       const struct k8s_response *r, char *out,
                                       size_t size);

struct k8s_informer_config {
    const char *collection; /* absolute path of the collection */
    const char *query;      /* URL-encoded selector query, without '?' */
    const char *name;       /* the namespace, for logs ("" = "*") */
    const char *log_what;   /* backoff lines: "<log_what> '<name>': ..." */
    const char *log_watch;  /* watch lines: "<log_watch> of '<name>' ..." */
    const char *list_kind;  /* "list: not <list_kind>" ("a SandboxList") */
    k8s_informer_list_began_fn list_began; /* NULL: none */
    k8s_informer_object_fn list_object;
    k8s_informer_list_done_fn list_done; /* NULL: none */
    k8s_informer_event_fn watch_event;
    k8s_informer_detail_fn detail; /* NULL: no detail */
    void *opaque;
};

/* A new informer that does nothing until k8s_informer_start; the first
   start lists. NULL when out of memory. */
struct k8s_informer *k8s_informer_new(uv_loop_t *loop,
                                      const struct sg_driver_host *host,
                                      struct k8s_client *client,
                                      const struct k8s_settings *settings,
                                      const struct k8s_informer_config *cfg);

/* Start listing or watching; does nothing while a list, a watch or a
   backoff is in progress, or after close. NULL-safe. */
void k8s_informer_start(struct k8s_informer *inf);

/* Cancel the call and the timer; no callback runs after this, even when
   it is called from inside one. The informer frees itself once the loop
   has run the timer's close callback. Call it before closing the
   client. NULL-safe. */
void k8s_informer_close(struct k8s_informer *inf);

#endif /* SG_K8S_INFORMER_H */
