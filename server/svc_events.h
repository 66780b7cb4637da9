/*
 * svc_events.h: the EventService handlers listed in services.c.
 *
 * WatchEvents hands the stream to the event hub (event_hub.h), which
 * feeds it from then on; ListEvents reads one page of history from the
 * store and answers at once. Both need the server's app data to be a
 * struct sg_gateway with an event hub (gateway.h).
 *
 * THREAD SAFETY: called by the transport on completion-queue threads.
 */
#ifndef SG_SVC_EVENTS_H
#define SG_SVC_EVENTS_H

#include "internal.h"
#include "call.h"

void sg_svc_watch_events(struct sg_call *call, const ProtobufCMessage *msg);
void sg_svc_list_events(struct sg_call *call, const ProtobufCMessage *msg);

#endif /* SG_SVC_EVENTS_H */
