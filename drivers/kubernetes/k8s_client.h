/*
 * k8s_client.h: HTTPS to the Kubernetes API over libcurl's multi
 * interface, driven by a libuv loop (uv_poll per socket, one uv_timer for
 * curl's timeouts): any number of requests and long-lived watches in
 * flight on the loop thread, no thread per request.
 *
 * Credentials come from the pod's service account (in_cluster: the
 * KUBERNETES_SERVICE_HOST/PORT environment, the mounted token, re-read
 * when it changes, and the mounted CA) or from a kubeconfig (current or
 * named context; server; certificate-authority or -data; client
 * certificate and key, files or -data; token or tokenFile). exec and
 * auth-provider users are refused.
 *
 * Requests retry 429, 5xx and transport failures with exponential backoff
 * and full jitter, honouring Retry-After, up to max_retries; every request
 * has a timeout. Other statuses are handed to the caller as they are.
 *
 * SECRETS: the token and key material are never logged or put in an error
 * message; buffers that held them are wiped before they are freed.
 *
 * THREAD SAFETY: a client and its calls are used on the loop thread only.
 * OWNERSHIP: the driver owns the client (k8s_client_new/_close).
 */
#ifndef SG_K8S_CLIENT_H
#define SG_K8S_CLIENT_H

#include "internal.h"
#include "error.h"
#include "k8s_config.h"

#include <sandgate/driver.h>
#include <uv.h>

struct k8s_client;
struct k8s_call;

/* A finished request. body is NUL-terminated; borrowed for the callback. */
struct k8s_response {
    long status;        /* HTTP status, 0 when no response came */
    const char *body;
    size_t body_len;
    const char *error;  /* transport error text when status is 0 */
    uint32_t attempts;
};

/* Runs once per call that was not cancelled, on the loop thread. */
typedef void (*k8s_done_fn)(void *opaque, const struct k8s_response *resp);

/* A stream's line (one watch event), without its newline. Return false to
   stop the stream (the call then ends as if cancelled: done not run). */
typedef bool (*k8s_line_fn)(void *opaque, const char *line, size_t len);

struct k8s_request {
    const char *method;       /* "GET", "POST", "DELETE", ... */
    const char *path;         /* absolute path with query, URL-encoded */
    const char *what;         /* NULL, or the object for logs, e.g.
                                 "Sandbox ns/name" (no secrets) */
    const char *body;         /* NULL: none */
    const char *content_type; /* default application/json */
    /* Streams (watches): lines go to on_line, done runs at the end with
       the status; no retries; timeout_ms bounds the whole stream. */
    k8s_line_fn on_line;
    uint32_t timeout_ms;      /* 0: the client's request timeout */
    bool no_retry;
};

/*
 * Load credentials and make a client on loop. log/host are the driver's.
 * Returns NULL with err set (SG_ERR_CONFIG: missing or bad credentials).
 * *namespace_out (may be NULL) gets a malloc'd namespace from the context
 * or the pod, or NULL.
 */
struct k8s_client *k8s_client_new(uv_loop_t *loop,
                                  const struct sg_driver_host *host,
                                  const struct k8s_settings *s,
                                  char **namespace_out, struct sg_error *err)
    SG_WARN_UNUSED_RESULT;

/*
 * Decode standard base64 (whitespace skipped) into *out, malloc'd with a
 * NUL after *len_out bytes; the caller wipes (explicit_bzero) and frees
 * it: Secret data and kubeconfig keys pass through here. 0, or -1 when in
 * is not base64 or memory is out.
 */
int k8s_base64_decode(const char *in, char **out, size_t *len_out)
    SG_WARN_UNUSED_RESULT;

/* Start a request. Returns a handle (valid until done runs or the call is
   cancelled), or NULL when it could not start (done never runs). */
struct k8s_call *k8s_client_start(struct k8s_client *c,
                                  const struct k8s_request *req,
                                  k8s_done_fn done, void *opaque);

/* Stop a call; its done does not run. Safe from inside its on_line. */
void k8s_call_cancel(struct k8s_call *call);

/* Requests started so far, by method, for counting API use. */
struct k8s_client_stats {
    uint64_t requests;   /* every HTTP attempt */
    uint64_t writes;     /* POST, PUT, PATCH, DELETE attempts */
    uint64_t retries;
};
void k8s_client_stats(const struct k8s_client *c,
                      struct k8s_client_stats *out);

/* Cancel every call and uv_close the handles; the client frees itself
   when the last close callback has run. NULL-safe. */
void k8s_client_close(struct k8s_client *c);

/* Percent-encode s for a query value into out (size bytes). */
void k8s_query_escape(const char *s, char *out, size_t size);

/* The backoff before retry number attempt (1-based), full jitter, and at
   least retry_after_ms. Exposed for tests. */
uint64_t k8s_backoff_ms(uint32_t attempt, uint32_t base_ms, uint32_t max_ms,
                        uint64_t retry_after_ms, uint32_t rnd);

#endif /* SG_K8S_CLIENT_H */
