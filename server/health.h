/*
 * health.h: the state behind grpc.health.v1.Health.
 *
 * Statuses exist for "" (the whole gateway) and for each served sandgate
 * service; all start NOT_SERVING. main sets them SERVING once everything is
 * up and NOT_SERVING again when draining. Watch streams see every change.
 *
 * THREAD SAFETY: every function may be called from any thread.
 */
#ifndef SG_SERVER_HEALTH_H
#define SG_SERVER_HEALTH_H

#include "internal.h"

/* Set every known service (and "") to serving or not serving. */
void sg_health_set_all(bool serving);

/* Set one service; returns -1 if the name is not a known service. */
int sg_health_set(const char *service, bool serving);

/*
 * A status a driver reports for a part of itself (drivers/driver.h
 * report_health), e.g. "kubernetes/warm-pool/ns/pool": created by its
 * first report, kept until exit (at most 256 names; later ones are
 * dropped with a warning). sg_health_set_all leaves these alone.
 */
void sg_health_report(const char *service, bool serving);

#endif /* SG_SERVER_HEALTH_H */
