/*
 * k8s_client.c: the Kubernetes API client (see k8s_client.h).
 *
 * The curl multi handle reports the sockets it wants watched
 * (CURLMOPT_SOCKETFUNCTION) and the one timeout it wants (TIMERFUNCTION);
 * a uv_poll per socket and one uv_timer feed curl_multi_socket_action,
 * after which finished transfers are collected with curl_multi_info_read.
 */
#include "internal.h"

#include "k8s_client.h"

#include "buf.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <yaml.h>

#define DRIVER "kubernetes"
#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define TOKEN_RECHECK_MS 1000
#define FILE_MAX (1 << 20)
/* Idle connections kept for reuse. curl's default (4 per transfer in
   flight) shrinks as a burst drains, so over HTTP/1.1 the next burst would
   pay new TLS handshakes; HTTP/2 needs one. */
#define MAX_IDLE_CONNECTIONS 64

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct k8s_client *c;
};

struct k8s_call {
    struct k8s_client *c;
    struct k8s_call *next, *prev;
    CURL *easy;
    struct curl_slist *headers;
    char *method;
    char *path;
    char *what;         /* for logs: the object, or NULL */
    char *body;
    char *content_type;
    k8s_line_fn on_line;
    k8s_done_fn done;
    void *opaque;
    uint32_t timeout_ms;
    bool no_retry;
    bool cancelled;
    uint32_t attempts;
    uint64_t retry_after_ms;
    long stream_status; /* status seen by the write callback, streams */
    bool has_data;      /* stream bytes not yet split into lines */
    struct sg_buf buf;
    int64_t added_us; /* wall clock: this attempt handed to curl */
    int64_t sent_us;  /* wall clock: its request about to be written */
    uv_timer_t timer; /* backoff between attempts */
    char errbuf[CURL_ERROR_SIZE];
};

struct k8s_client {
    uv_loop_t *loop;
    const struct sg_driver_host *host;
    CURLM *multi;
    CURLSH *share;     /* TLS sessions and DNS, shared by every transfer */
    uv_timer_t timer;  /* curl's timeout */
    uv_timer_t reaper; /* frees cancelled calls outside curl callbacks */
    struct k8s_call *calls;
    unsigned pending_closes;
    bool closing;

    /* Connection and credentials. */
    char *server;     /* "https://host:port", no trailing slash */
    char *ca_file;
    char *ca_data;    /* PEM */
    size_t ca_len;
    char *cert_file;
    char *key_file;
    char *cert_data;
    size_t cert_len;
    char *key_data;
    size_t key_len;
    char *token;      /* secret */
    char *token_file;
    struct stat token_st;
    uint64_t token_checked;
    bool insecure;

    uint32_t request_timeout_ms;
    uint32_t connect_timeout_ms;
    uint32_t max_retries;
    uint32_t retry_base_ms;
    uint32_t retry_max_ms;

    struct k8s_client_stats stats;
};

static void check_done(struct k8s_client *c);
static void flush_streams(struct k8s_client *c);
static int attempt_start(struct k8s_call *call);

/* ---- small helpers ---- */

static void wipe_free(char *s, size_t len)
{
    if (s == NULL)
        return;
    explicit_bzero(s, len);
    free(s);
}

static void wipe_str(char *s)
{
    if (s != NULL)
        wipe_free(s, strlen(s));
}

static int read_file(const char *path, char **out, size_t *len_out,
                     struct sg_error *err)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t len = 0;
    size_t n;
    char ebuf[128];

    if (f == NULL) {
        sg_error_report(err, SG_ERR_CONFIG, "kubernetes: cannot read '%s': %s",
                        path, sg_strerror(errno, ebuf, sizeof(ebuf)));
        return -1;
    }
    data = malloc(FILE_MAX + 1);
    if (data == NULL) {
        fclose(f);
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    n = fread(data, 1, FILE_MAX + 1, f);
    len = n;
    fclose(f);
    if (len > FILE_MAX) {
        wipe_free(data, FILE_MAX + 1);
        sg_error_report(err, SG_ERR_CONFIG, "kubernetes: '%s' is too large",
                        path);
        return -1;
    }
    data[len] = '\0';
    *out = data;
    if (len_out != NULL)
        *len_out = len;
    return 0;
}

/* Strip trailing whitespace (token files end with a newline). */
static void rstrip(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' ||
                     s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

int k8s_base64_decode(const char *in, char **out, size_t *len_out)
{
    size_t n = strlen(in);
    char *o = malloc(n / 4 * 3 + 4);
    size_t len = 0;
    uint32_t acc = 0;
    int bits = 0;
    bool pad = false;

    if (o == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v;

        if (in[i] == ' ' || in[i] == '\n' || in[i] == '\r' || in[i] == '\t')
            continue;
        if (in[i] == '=') {
            pad = true;
            continue;
        }
        v = b64_value(in[i]);
        if (v < 0 || pad) {
            wipe_free(o, n / 4 * 3 + 4);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[len++] = (char)((acc >> bits) & 0xff);
        }
    }
    o[len] = '\0';
    *out = o;
    *len_out = len;
    return 0;
}

void k8s_query_escape(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (; *s != '\0' && n + 4 < size; s++) {
        unsigned char ch = (unsigned char)*s;

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' ||
            ch == '~') {
            out[n++] = (char)ch;
        } else {
            out[n++] = '%';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    out[n] = '\0';
}

uint64_t k8s_backoff_ms(uint32_t attempt, uint32_t base_ms, uint32_t max_ms,
                        uint64_t retry_after_ms, uint32_t rnd)
{
    uint64_t cap = base_ms;
    uint64_t d;

    for (uint32_t i = 1; i < attempt && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    /* Full jitter, but never below half the cap: retries stay spread out
       without collapsing to zero. */
    d = cap / 2 + (cap > 1 ? rnd % (cap / 2 + 1) : 0);
    if (d < retry_after_ms)
        d = retry_after_ms;
    return d;
}

/* ---- credentials ---- */

static int token_reload(struct k8s_client *c, struct sg_error *err)
{
    struct stat st;
    char *tok = NULL;
    char ebuf[128];

    if (stat(c->token_file, &st) != 0) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "kubernetes: cannot read token file '%s': %s",
                        c->token_file, sg_strerror(errno, ebuf, sizeof(ebuf)));
        return -1;
    }
    if (c->token != NULL && st.st_mtim.tv_sec == c->token_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == c->token_st.st_mtim.tv_nsec &&
        st.st_ino == c->token_st.st_ino && st.st_size == c->token_st.st_size)
        return 0;
    if (read_file(c->token_file, &tok, NULL, err) < 0)
        return -1;
    rstrip(tok);
    wipe_str(c->token);
    c->token = tok;
    c->token_st = st;
    if (c->host != NULL)
        c->host->log(SG_DRIVER_LOG_DEBUG, DRIVER, "token read from '%s'",
                     c->token_file);
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static int in_cluster_load(struct k8s_client *c, char **ns_out,
                           struct sg_error *err)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *pod_ns = getenv("POD_NAMESPACE");
    char buf[512];

    if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0') {
        sg_error_report(err, SG_ERR_CONFIG,
                        "kubernetes: unable to load in-cluster configuration, "
                        "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
                        "must be defined");
        return -1;
    }
    /* net.JoinHostPort: an IPv6 host gets brackets. */
    snprintf(buf, sizeof(buf), strchr(host, ':') ? "https://[%s]:%s"
                                                 : "https://%s:%s",
             host, port);
    c->server = strdup(buf);
    c->token_file = strdup(SA_DIR "/token");
    c->ca_file = strdup(SA_DIR "/ca.crt");
    if (c->server == NULL || c->token_file == NULL || c->ca_file == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    if (ns_out != NULL) {
        char *ns = NULL;
        struct sg_error ignored = SG_ERROR_INIT;

        if (pod_ns != NULL && pod_ns[0] != '\0') {
            ns = strdup(pod_ns);
        } else if (read_file(SA_DIR "/namespace", &ns, NULL, &ignored) == 0) {
            rstrip(ns);
        }
        sg_error_reset(&ignored);
        *ns_out = ns;
    }
    return token_reload(c, err);
}

/* ---- kubeconfig (libyaml document API) ---- */

static yaml_node_t *ymap_get(yaml_document_t *d, yaml_node_t *map,
                             const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);

        if (k != NULL && k->type == YAML_SCALAR_NODE &&
            STREQ((const char *)k->data.scalar.value, key))
            return yaml_document_get_node(d, p->value);
    }
    return NULL;
}

static const char *yscalar(yaml_node_t *n)
{
    if (n == NULL || n->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)n->data.scalar.value;
}

/* The entry of list (clusters, users, contexts) named name, its inner
   object (key inner). */
static yaml_node_t *ynamed(yaml_document_t *d, yaml_node_t *root,
                           const char *list, const char *name,
                           const char *inner)
{
    yaml_node_t *seq = ymap_get(d, root, list);

    if (seq == NULL || seq->type != YAML_SEQUENCE_NODE || name == NULL)
        return NULL;
    for (yaml_node_item_t *i = seq->data.sequence.items.start;
         i < seq->data.sequence.items.top; i++) {
        yaml_node_t *e = yaml_document_get_node(d, *i);
        const char *n = yscalar(ymap_get(d, e, "name"));

        if (n != NULL && STREQ(n, name))
            return ymap_get(d, e, inner);
    }
    return NULL;
}

/* A path from the kubeconfig, made absolute against its directory. */
static char *kc_path(const char *kubeconfig, const char *p)
{
    const char *slash = strrchr(kubeconfig, '/');
    char buf[PATH_MAX];

    if (p[0] == '/' || slash == NULL)
        return strdup(p);
    snprintf(buf, sizeof(buf), "%.*s/%s", (int)(slash - kubeconfig),
             kubeconfig, p);
    return strdup(buf);
}

static int kc_data(const char *b64, const char *what, char **out,
                   size_t *len, struct sg_error *err)
{
    if (k8s_base64_decode(b64, out, len) < 0) {
        /* Never quote the value: it may be key material. */
        sg_error_report(err, SG_ERR_CONFIG,
                        "kubernetes: kubeconfig %s is not valid base64", what);
        return -1;
    }
    return 0;
}

static int kubeconfig_load(struct k8s_client *c, const struct k8s_settings *s,
                           char **ns_out, struct sg_error *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    yaml_node_t *ctx;
    yaml_node_t *cluster;
    yaml_node_t *user;
    const char *ctx_name = s->context;
    const char *v;
    char *text = NULL;
    size_t len = 0;
    int ret = -1;
    bool have_doc = false;

    if (read_file(s->kubeconfig, &text, &len, err) < 0)
        return -1;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "kubernetes: kubeconfig '%s' is not valid YAML (line "
                        "%zu)",
                        s->kubeconfig, parser.problem_mark.line + 1);
        goto cleanup;
    }
    have_doc = true;
    root = yaml_document_get_root_node(&doc);
    if (ctx_name == NULL)
        ctx_name = yscalar(ymap_get(&doc, root, "current-context"));
    if (ctx_name == NULL || ctx_name[0] == '\0') {
        sg_error_report(err, SG_ERR_CONFIG,
                        "kubernetes: kubeconfig '%s' has no current-context "
                        "and no context is configured",
                        s->kubeconfig);
        goto cleanup;
    }
    ctx = ynamed(&doc, root, "contexts", ctx_name, "context");
    if (ctx == NULL) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "kubernetes: kubeconfig has no context '%.100s'",
                        ctx_name);
        goto cleanup;
    }
    cluster = ynamed(&doc, root, "clusters",
                     yscalar(ymap_get(&doc, ctx, "cluster")), "cluster");
    user = ynamed(&doc, root, "users", yscalar(ymap_get(&doc, ctx, "user")),
                  "user");
    if (cluster == NULL) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "kubernetes: kubeconfig context '%.100s' names no "
                        "known cluster",
                        ctx_name);
        goto cleanup;
    }
    v = yscalar(ymap_get(&doc, cluster, "server"));
    if (v == NULL || !STRPREFIX(v, "https://")) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "kubernetes: kubeconfig cluster needs an https:// "
                        "server");
        goto cleanup;
    }
    c->server = strdup(v);
    if (c->server != NULL) {
        size_t n = strlen(c->server);

        while (n > 0 && c->server[n - 1] == '/')
            c->server[--n] = '\0';
    }
    v = yscalar(ymap_get(&doc, cluster, "insecure-skip-tls-verify"));
    if (v != NULL && STREQ(v, "true") && !s->insecure_skip_tls_verify) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "kubernetes: kubeconfig sets insecure-skip-tls-verify; "
                        "refused unless the settings allow it "
                        "(insecure_skip_tls_verify and allow_insecure)");
        goto cleanup;
    }
    v = yscalar(ymap_get(&doc, cluster, "certificate-authority-data"));
    if (v != NULL && kc_data(v, "certificate-authority-data", &c->ca_data,
                             &c->ca_len, err) < 0)
        goto cleanup;
    v = yscalar(ymap_get(&doc, cluster, "certificate-authority"));
    if (v != NULL)
        c->ca_file = kc_path(s->kubeconfig, v);
    if (user != NULL) {
        if (ymap_get(&doc, user, "exec") != NULL ||
            ymap_get(&doc, user, "auth-provider") != NULL) {
            sg_error_report(err, SG_ERR_CONFIG,
                            "kubernetes: kubeconfig users with exec or "
                            "auth-provider are not supported; use a token, "
                            "tokenFile or a client certificate");
            goto cleanup;
        }
        v = yscalar(ymap_get(&doc, user, "token"));
        if (v != NULL)
            c->token = strdup(v);
        v = yscalar(ymap_get(&doc, user, "tokenFile"));
        if (v != NULL)
            c->token_file = kc_path(s->kubeconfig, v);
        v = yscalar(ymap_get(&doc, user, "client-certificate"));
        if (v != NULL)
            c->cert_file = kc_path(s->kubeconfig, v);
        v = yscalar(ymap_get(&doc, user, "client-key"));
        if (v != NULL)
            c->key_file = kc_path(s->kubeconfig, v);
        v = yscalar(ymap_get(&doc, user, "client-certificate-data"));
        if (v != NULL && kc_data(v, "client-certificate-data", &c->cert_data,
                                 &c->cert_len, err) < 0)
            goto cleanup;
        v = yscalar(ymap_get(&doc, user, "client-key-data"));
        if (v != NULL && kc_data(v, "client-key-data", &c->key_data,
                                 &c->key_len, err) < 0)
            goto cleanup;
    }
    if (ns_out != NULL) {
        v = yscalar(ymap_get(&doc, ctx, "namespace"));
        *ns_out = dup_or_null(v != NULL && v[0] != '\0' ? v : NULL);
    }
    if (c->server == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    if (c->token_file != NULL && c->token == NULL &&
        token_reload(c, err) < 0)
        goto cleanup;
    ret = 0;
 cleanup:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    wipe_free(text, len);
    return ret;
}

/* ---- curl <-> libuv ---- */

static void handle_closed(uv_handle_t *h)
{
    struct k8s_client *c = h->data;

    c->pending_closes--;
    if (c->closing && c->pending_closes == 0) {
        free(c);
    }
}

static void sock_closed(uv_handle_t *h)
{
    struct sock_ctx *ctx = h->data;
    struct k8s_client *c = ctx->c;

    free(ctx);
    c->pending_closes--;
    if (c->closing && c->pending_closes == 0)
        free(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *ctx = h->data;
    struct k8s_client *c = ctx->c;
    int flags = 0;
    int running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, ctx->fd, flags, &running);
    flush_streams(c);
    check_done(c);
}

static int socket_cb(CURL *easy, curl_socket_t s, int action, void *userp,
                     void *socketp)
{
    struct k8s_client *c = userp;
    struct sock_ctx *ctx = socketp;
    int events = 0;

    (void)easy;
    if (action == CURL_POLL_REMOVE) {
        if (ctx != NULL) {
            uv_poll_stop(&ctx->poll);
            c->pending_closes++;
            uv_close((uv_handle_t *)&ctx->poll, sock_closed);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    if (ctx == NULL) {
        ctx = calloc(1, sizeof(*ctx));
        if (ctx == NULL)
            return -1;
        ctx->fd = s;
        ctx->c = c;
        if (uv_poll_init_socket(c->loop, &ctx->poll, s) < 0) {
            free(ctx);
            return -1;
        }
        ctx->poll.data = ctx;
        curl_multi_assign(c->multi, s, ctx);
    }
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&ctx->poll, events, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *t)
{
    struct k8s_client *c = t->data;
    int running;

    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    flush_streams(c);
    check_done(c);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct k8s_client *c = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- calls ---- */

static void call_closed(uv_handle_t *h)
{
    struct k8s_call *call = h->data;
    struct k8s_client *c = call->c;

    free(call);
    c->pending_closes--;
    if (c->closing && c->pending_closes == 0)
        free(c);
}

static void headers_free(struct curl_slist *h)
{
    /* One header carries the token: wipe every header before freeing. */
    for (struct curl_slist *p = h; p != NULL; p = p->next)
        explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(h);
}

static void easy_drop(struct k8s_call *call)
{
    if (call->easy != NULL) {
        curl_multi_remove_handle(call->c->multi, call->easy);
        curl_easy_cleanup(call->easy);
        call->easy = NULL;
    }
    headers_free(call->headers);
    call->headers = NULL;
}

static void call_free(struct k8s_call *call)
{
    struct k8s_client *c = call->c;

    easy_drop(call);
    if (call->prev != NULL)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    free(call->method);
    free(call->path);
    free(call->what);
    /* Bodies can carry secrets both ways (a TokenReview's token, later a
       Secret's data): wipe what was sent and what came back. */
    wipe_str(call->body);
    free(call->content_type);
    if (call->buf.data != NULL)
        explicit_bzero(call->buf.data, call->buf.len);
    sg_buf_free(&call->buf);
    uv_timer_stop(&call->timer);
    c->pending_closes++;
    uv_close((uv_handle_t *)&call->timer, call_closed);
}

static void on_reap(uv_timer_t *t)
{
    struct k8s_client *c = t->data;
    struct k8s_call *call = c->calls;

    while (call != NULL) {
        struct k8s_call *next = call->next;

        if (call->cancelled)
            call_free(call);
        call = next;
    }
}

void k8s_call_cancel(struct k8s_call *call)
{
    if (call == NULL || call->cancelled)
        return;
    call->cancelled = true;
    call->done = NULL;
    /* Not here: this may run inside one of curl's callbacks. */
    uv_timer_start(&call->c->reaper, on_reap, 0, 0);
}

static void stream_lines(struct k8s_call *call)
{
    const char *data = sg_buf_str(&call->buf);
    size_t start = 0;

    for (size_t i = 0; i < call->buf.len && !call->cancelled; i++) {
        if (data[i] != '\n')
            continue;
        if (i > start && !call->on_line(call->opaque, data + start, i - start))
            k8s_call_cancel(call);
        start = i + 1;
    }
    if (call->cancelled)
        return;
    if (start > 0) {
        size_t rest = call->buf.len - start;

        memmove(call->buf.data, call->buf.data + start, rest);
        call->buf.len = rest;
        call->buf.data[rest] = '\0';
    }
}

static void flush_streams(struct k8s_client *c)
{
    /* Calls are freed only by the reaper, so the list stays walkable even
       when a handler cancels calls; new calls go to the head. */
    for (struct k8s_call *call = c->calls; call != NULL; call = call->next) {
        if (call->has_data && !call->cancelled && call->stream_status == 200) {
            call->has_data = false;
            stream_lines(call);
        }
    }
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct k8s_call *call = userdata;
    size_t n = size * nmemb;

    if (call->cancelled)
        return 0; /* abort the transfer */
    sg_buf_add(&call->buf, ptr, n);
    if (sg_buf_error(&call->buf) < 0)
        return 0;
    if (call->on_line != NULL) {
        long status = 0;

        /* Lines are handed out after curl returns (flush_streams): the
           handler may start requests, which curl refuses from here. */
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        call->stream_status = status;
        call->has_data = true;
        if (call->buf.len > 16 * FILE_MAX)
            return 0;
    }
    return n;
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct k8s_call *call = userdata;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";

    if (n > sizeof(name) - 1 && strncasecmp(ptr, name, sizeof(name) - 1) == 0) {
        char tmp[32];
        size_t len = n - (sizeof(name) - 1);
        char *end;
        unsigned long secs;

        if (len >= sizeof(tmp))
            len = sizeof(tmp) - 1;
        memcpy(tmp, ptr + sizeof(name) - 1, len);
        tmp[len] = '\0';
        errno = 0;
        secs = strtoul(tmp, &end, 10);
        /* Seconds only; an HTTP-date falls back to the backoff. */
        if (errno == 0 && end != tmp && secs <= 3600)
            call->retry_after_ms = (uint64_t)secs * 1000;
    }
    return n;
}

static bool retryable(const struct k8s_call *call, CURLcode rc, long status)
{
    if (call->no_retry || call->on_line != NULL || call->cancelled)
        return false;
    if (call->attempts > call->c->max_retries)
        return false;
    if (rc != CURLE_OK)
        return true; /* connect failure, reset, timeout */
    return status == 429 || status >= 500;
}

static void on_retry(uv_timer_t *t)
{
    struct k8s_call *call = t->data;
    struct k8s_response resp = {0};

    if (call->cancelled)
        return;
    if (attempt_start(call) < 0) {
        k8s_done_fn done = call->done;

        resp.error = "cannot start the request";
        resp.body = "";
        resp.attempts = call->attempts;
        call->done = NULL;
        call->cancelled = true;
        if (done != NULL)
            done(call->opaque, &resp);
        uv_timer_start(&call->c->reaper, on_reap, 0, 0);
    }
}

static int64_t wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Connected (or reused), the request is about to be written. */
static int prereq_cb(void *userdata, char *conn_primary_ip,
                     char *conn_local_ip, int conn_primary_port,
                     int conn_local_port)
{
    struct k8s_call *call = userdata;

    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    call->sent_us = wall_us();
    return CURL_PREREQFUNC_OK;
}

/*
 * Where a request's time went, in wall-clock stamps that line up with the
 * API server's own logs: handed to curl, written (after any connect and
 * TLS handshake, whose share is given: 0 on a kept-alive connection),
 * answered. Debug level only.
 */
static void log_timing(const struct k8s_call *call, long status)
{
    int64_t done = wall_us();
    int64_t sent = call->sent_us != 0 ? call->sent_us : done;
    curl_off_t connect_us = 0;

    curl_easy_getinfo(call->easy, CURLINFO_APPCONNECT_TIME_T, &connect_us);
    call->c->host->log(
        SG_DRIVER_LOG_DEBUG, DRIVER,
        "%s %s: %ld in %.1f ms (attempt %u, handed to curl at %lld.%06lld, "
        "written +%.2f ms of which connecting %.2f ms, answered +%.2f ms)",
        call->method, call->what != NULL ? call->what : call->path, status,
        (double)(done - call->added_us) / 1000.0, call->attempts,
        (long long)(call->added_us / 1000000),
        (long long)(call->added_us % 1000000),
        (double)(sent - call->added_us) / 1000.0,
        (double)connect_us / 1000.0, (double)(done - sent) / 1000.0);
}

static void call_finished(struct k8s_call *call, CURLcode rc)
{
    struct k8s_client *c = call->c;
    struct k8s_response resp = {0};
    long status = 0;
    k8s_done_fn done;

    if (call->cancelled)
        return; /* the reaper frees it */
    if (rc == CURLE_OK || rc == CURLE_WRITE_ERROR)
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_WRITE_ERROR && call->on_line == NULL)
        status = 0;
    if (retryable(call, rc, status)) {
        uint64_t ms = k8s_backoff_ms(call->attempts, c->retry_base_ms,
                                     c->retry_max_ms, call->retry_after_ms,
                                     (uint32_t)random());

        c->stats.retries++;
        c->host->log(SG_DRIVER_LOG_DEBUG, DRIVER,
                     "%s %s: %s; retry %u in %llu ms", call->method,
                     call->path,
                     rc != CURLE_OK ? curl_easy_strerror(rc) : "server busy",
                     call->attempts, (unsigned long long)ms);
        easy_drop(call);
        sg_buf_reset(&call->buf);
        uv_timer_start(&call->timer, on_retry, ms, 0);
        return;
    }
    if (call->on_line != NULL && status == 200) {
        stream_lines(call);
        if (call->cancelled)
            return;
    }
    if (call->on_line == NULL)
        log_timing(call, status);
    resp.status = rc == CURLE_OK || call->on_line != NULL ? status : 0;
    resp.body = sg_buf_str(&call->buf);
    resp.body_len = call->buf.len;
    resp.attempts = call->attempts;
    if (rc != CURLE_OK)
        resp.error = call->errbuf[0] != '\0' ? call->errbuf
                                             : curl_easy_strerror(rc);
    done = call->done;
    call->done = NULL;
    call->cancelled = true; /* freed by the reaper, after done */
    if (done != NULL)
        done(call->opaque, &resp);
    uv_timer_start(&c->reaper, on_reap, 0, 0);
}

static void check_done(struct k8s_client *c)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        struct k8s_call *call = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        if (call != NULL)
            call_finished(call, msg->data.result);
    }
}

static bool token_due(struct k8s_client *c)
{
    uint64_t now = uv_now(c->loop);

    if (c->token_file == NULL || now - c->token_checked < TOKEN_RECHECK_MS)
        return false;
    c->token_checked = now;
    return true;
}

static int attempt_start(struct k8s_call *call)
{
    struct k8s_client *c = call->c;
    char url[8192];
    char hdr[64];
    struct curl_slist *h = NULL;
    CURL *e;

    if (token_due(c)) {
        struct sg_error err = SG_ERROR_INIT;

        /* A rotation that cannot be read keeps the old token. */
        if (token_reload(c, &err) < 0)
            c->host->log(SG_DRIVER_LOG_WARN, DRIVER, "%s", err.message);
        sg_error_reset(&err);
    }
    snprintf(url, sizeof(url), "%s%s", c->server, call->path);
    e = curl_easy_init();
    if (e == NULL)
        return -1;
    call->easy = e;
    call->attempts++;
    call->retry_after_ms = 0;
    call->errbuf[0] = '\0';
    h = curl_slist_append(h, "Accept: application/json");
    if (call->body != NULL) {
        snprintf(hdr, sizeof(hdr), "Content-Type: %s",
                 call->content_type != NULL ? call->content_type
                                            : "application/json");
        h = curl_slist_append(h, hdr);
    }
    if (c->token != NULL && c->token[0] != '\0') {
        struct sg_buf auth = SG_BUF_INIT;

        sg_buf_printf(&auth, "Authorization: Bearer %s", c->token);
        if (sg_buf_error(&auth) == 0)
            h = curl_slist_append(h, sg_buf_str(&auth));
        if (auth.data != NULL)
            explicit_bzero(auth.data, auth.len);
        sg_buf_free(&auth);
    }
    call->headers = h;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)call);
    /* Each attempt is a new easy handle: without the share a new
       connection could not resume an earlier TLS session. */
    if (c->share != NULL)
        curl_easy_setopt(e, CURLOPT_SHARE, c->share);
    /* HTTP/2 (the API server's default): wait for the connection being
       set up and multiplex on it rather than open one per request. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq_cb);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, call);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     (long)(call->timeout_ms != 0 ? call->timeout_ms
                                                  : c->request_timeout_ms));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
#endif
    if (STRNEQ(call->method, "GET"))
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, call->method);
    if (call->body != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(call->body));
    }
    if (c->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (c->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (c->ca_data != NULL) {
        struct curl_blob blob = {c->ca_data, c->ca_len, CURL_BLOB_NOCOPY};

        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (c->cert_file != NULL)
        curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
    if (c->key_file != NULL)
        curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
    if (c->cert_data != NULL) {
        struct curl_blob blob = {c->cert_data, c->cert_len, CURL_BLOB_NOCOPY};

        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &blob);
    }
    if (c->key_data != NULL) {
        struct curl_blob blob = {c->key_data, c->key_len, CURL_BLOB_NOCOPY};

        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &blob);
    }
    c->stats.requests++;
    if (STRNEQ(call->method, "GET"))
        c->stats.writes++;
    call->sent_us = 0;
    call->added_us = wall_us();
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        easy_drop(call);
        return -1;
    }
    return 0;
}

struct k8s_call *k8s_client_start(struct k8s_client *c,
                                  const struct k8s_request *req,
                                  k8s_done_fn done, void *opaque)
{
    struct k8s_call *call;

    if (c->closing)
        return NULL;
    call = calloc(1, sizeof(*call));
    if (call == NULL)
        return NULL;
    call->c = c;
    call->done = done;
    call->opaque = opaque;
    call->on_line = req->on_line;
    call->timeout_ms = req->timeout_ms;
    call->no_retry = req->no_retry;
    call->method = strdup(req->method);
    call->path = strdup(req->path);
    call->what = dup_or_null(req->what);
    call->body = dup_or_null(req->body);
    call->content_type = dup_or_null(req->content_type);
    if (call->method == NULL || call->path == NULL ||
        (req->what != NULL && call->what == NULL) ||
        (req->body != NULL && call->body == NULL) ||
        (req->content_type != NULL && call->content_type == NULL) ||
        uv_timer_init(c->loop, &call->timer) < 0) {
        free(call->method);
        free(call->path);
        free(call->what);
        wipe_str(call->body); /* a Secret's data, a TokenReview's token */
        free(call->content_type);
        free(call);
        return NULL;
    }
    call->timer.data = call;
    call->next = c->calls;
    if (c->calls != NULL)
        c->calls->prev = call;
    c->calls = call;
    if (attempt_start(call) < 0) {
        call->done = NULL;
        call_free(call);
        return NULL;
    }
    return call;
}

void k8s_client_stats(const struct k8s_client *c, struct k8s_client_stats *out)
{
    *out = c->stats;
}

/* ---- lifetime ---- */

static void creds_free(struct k8s_client *c)
{
    free(c->server);
    free(c->ca_file);
    wipe_free(c->ca_data, c->ca_len);
    free(c->cert_file);
    free(c->key_file);
    wipe_free(c->cert_data, c->cert_len);
    wipe_free(c->key_data, c->key_len);
    wipe_str(c->token);
    free(c->token_file);
    c->server = c->ca_file = c->ca_data = c->cert_file = c->key_file = NULL;
    c->cert_data = c->key_data = c->token = c->token_file = NULL;
}

struct k8s_client *k8s_client_new(uv_loop_t *loop,
                                  const struct sg_driver_host *host,
                                  const struct k8s_settings *s,
                                  char **namespace_out, struct sg_error *err)
{
    struct k8s_client *c;
    static bool global_done;

    if (!global_done) {
        /* Loop thread, before any other curl use by this driver. */
        curl_global_init(CURL_GLOBAL_DEFAULT);
        global_done = true;
    }
    if (namespace_out != NULL)
        *namespace_out = NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->host = host;
    c->insecure = s->insecure_skip_tls_verify;
    c->request_timeout_ms = s->request_timeout_ms;
    c->connect_timeout_ms = s->connect_timeout_ms;
    c->max_retries = s->max_retries;
    c->retry_base_ms = s->retry_base_ms;
    c->retry_max_ms = s->retry_max_ms;
    if ((s->in_cluster ? in_cluster_load(c, namespace_out, err)
                       : kubeconfig_load(c, s, namespace_out, err)) < 0)
        goto error;
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "cannot make a curl handle");
        goto error;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS,
                      (long)MAX_IDLE_CONNECTIONS);
    /* Loop thread only: the share needs no lock functions. */
    c->share = curl_share_init();
    if (c->share != NULL) {
        curl_share_setopt(c->share, CURLSHOPT_SHARE,
                          CURL_LOCK_DATA_SSL_SESSION);
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    }
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->reaper);
    c->timer.data = c;
    c->reaper.data = c;
    return c;
 error:
    if (namespace_out != NULL) {
        free(*namespace_out);
        *namespace_out = NULL;
    }
    creds_free(c);
    free(c);
    return NULL;
}

void k8s_client_close(struct k8s_client *c)
{
    if (c == NULL || c->closing)
        return;
    while (c->calls != NULL) {
        c->calls->done = NULL;
        call_free(c->calls);
    }
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    /* After the multi: no easy handle uses the share any more. */
    if (c->share != NULL)
        curl_share_cleanup(c->share);
    c->share = NULL;
    creds_free(c);
    c->closing = true;
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->reaper);
    c->pending_closes += 2;
    uv_close((uv_handle_t *)&c->timer, handle_closed);
    uv_close((uv_handle_t *)&c->reaper, handle_closed);
}
