/*
 * k8s_secrets.h: the "kubernetes-secret" credential source, resolved
 * through the kubernetes driver's own client (its credentials, its
 * connections), on the credential source ABI
 * (include/sandgate/credential_source.h).
 *
 * A reference is {"namespace", "name", "key"}. resolve, which the gateway
 * calls from a worker thread, hands a GET of
 * /api/v1/namespaces/<ns>/secrets/<name> to the loop and waits for it
 * (at most twice the request timeout); the key's value is decoded from
 * base64 into host memory, and every copy of the Secret's data the driver
 * held (the response body, the parsed values) is wiped.
 *
 * There is one kubernetes driver per gateway: k8s_secrets_start binds the
 * source to it until k8s_secrets_stop; a resolve without a driver, or
 * waiting when the driver stops, fails ("the kubernetes driver is not
 * running").
 *
 * THREAD SAFETY: start and stop on the loop thread; the source's slots
 * from any thread.
 */
#ifndef SG_K8S_SECRETS_H
#define SG_K8S_SECRETS_H

#include "internal.h"
#include "k8s_client.h"

#include <sandgate/credential_source.h>
#include <sandgate/driver.h>
#include <uv.h>

/* The source's ops table (static; valid for the process's life). */
const struct sg_credsrc_ops *k8s_secrets_ops(void);

/* Bind the source to this driver's client. Returns 0, or -1 when out of
   memory. */
int k8s_secrets_start(uv_loop_t *loop, struct k8s_client *client,
                      uint32_t request_timeout_ms);

/* Unbind: waiting resolves fail at once. Before the client closes. */
void k8s_secrets_stop(void);

#endif /* SG_K8S_SECRETS_H */
