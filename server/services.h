/*
 * services.h: every service the gateway serves, in one table.
 *
 * Each handler module exports its struct sg_service; services.c lists them.
 * Methods with a NULL on_start answer UNIMPLEMENTED, so a service appears in
 * the table (and in reflection) before it is built.
 *
 * THREAD SAFETY: the tables are const and immutable.
 */
#ifndef SG_SERVER_SERVICES_H
#define SG_SERVER_SERVICES_H

#include "call.h"

extern const struct sg_service sg_health_service;
extern const struct sg_service sg_reflection_v1_service;
extern const struct sg_service sg_reflection_v1alpha_service;
extern const struct sg_service sg_sandbox_service;
extern const struct sg_service sg_credential_service;
extern const struct sg_service sg_event_service;

/* NULL-terminated list of all served services. */
extern const struct sg_service *const sg_services[];
/* The same without server reflection (auth.reflection: false). */
extern const struct sg_service *const sg_services_no_reflection[];

#endif /* SG_SERVER_SERVICES_H */
