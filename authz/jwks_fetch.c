/*
 * jwks_fetch.c: HTTP GET of key documents with libcurl (see jwks.h).
 *
 * The multi interface runs the one transfer so that
 * sg_jwks_fetcher_cancel can wake curl_multi_poll() from another thread:
 * stopping the verifier never waits for a slow identity provider.
 */
#include "internal.h"

#include "jwks.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>

#define FETCH_TIMEOUT_MS 10000
#define FETCH_CONNECT_TIMEOUT_MS 5000
#define FETCH_POLL_MS 1000

struct sg_jwks_fetcher {
    CURLM *multi;
    atomic_bool cancelled;
};

struct sink {
    struct sg_buf *body;
    size_t got;
    bool too_big;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool loopback_host(const char *host)
{
    struct in_addr a4;

    if (strcasecmp(host, "localhost") == 0 || STREQ(host, "[::1]"))
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return false;
}

int sg_jwks_url_check(const char *url, struct sg_error *err)
{
    CURLU *u = curl_url();
    char *scheme = NULL;
    char *host = NULL;
    char *user = NULL;
    int ret = -1;

    if (u == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        sg_error_report(err, SG_ERR_CONFIG, "key source URL '%s' is not valid",
                        url);
        goto cleanup;
    }
    /* Credentials in the URL would end up in logs and error messages. */
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "key source URL must not carry credentials");
        goto cleanup;
    }
    if (strcasecmp(scheme, "https") != 0 &&
        !(strcasecmp(scheme, "http") == 0 && loopback_host(host))) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "key source URL '%s' is not https:// (http:// is "
                        "allowed for loopback hosts only)",
                        url);
        goto cleanup;
    }
    ret = 0;

 cleanup:
    curl_free(user);
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return ret;
}

struct sg_jwks_fetcher *sg_jwks_fetcher_new(void)
{
    struct sg_jwks_fetcher *f;

    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return NULL;
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    atomic_init(&f->cancelled, false);
    f->multi = curl_multi_init();
    if (f->multi == NULL) {
        free(f);
        return NULL;
    }
    return f;
}

void sg_jwks_fetcher_free(struct sg_jwks_fetcher *f)
{
    if (f == NULL)
        return;
    curl_multi_cleanup(f->multi);
    free(f);
}

void sg_jwks_fetcher_cancel(struct sg_jwks_fetcher *f)
{
    atomic_store(&f->cancelled, true);
    curl_multi_wakeup(f->multi);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *opaque)
{
    struct sink *s = opaque;
    size_t n = size * nmemb;

    if (n > SG_JWKS_MAX_BYTES - s->got) {
        s->too_big = true;
        return 0; /* anything but n aborts the transfer */
    }
    sg_buf_add(s->body, ptr, n);
    s->got += n;
    return n;
}

/* Run the transfer on f->multi; the result of the easy handle, or
   CURLE_ABORTED_BY_CALLBACK once cancelled. */
static CURLcode run_transfer(struct sg_jwks_fetcher *f, CURL *easy)
{
    CURLcode rc = CURLE_FAILED_INIT;
    int running = 1;
    int left = 0;
    CURLMsg *msg;

    if (curl_multi_add_handle(f->multi, easy) != CURLM_OK)
        return CURLE_FAILED_INIT;
    while (running > 0) {
        if (atomic_load(&f->cancelled)) {
            rc = CURLE_ABORTED_BY_CALLBACK;
            goto cleanup;
        }
        if (curl_multi_perform(f->multi, &running) != CURLM_OK)
            goto cleanup;
        if (running > 0 &&
            curl_multi_poll(f->multi, NULL, 0, FETCH_POLL_MS, NULL) != CURLM_OK)
            goto cleanup;
    }
    msg = curl_multi_info_read(f->multi, &left);
    while (msg != NULL) {
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy)
            rc = msg->data.result;
        msg = curl_multi_info_read(f->multi, &left);
    }

 cleanup:
    curl_multi_remove_handle(f->multi, easy);
    return rc;
}

int sg_jwks_fetcher_get(struct sg_jwks_fetcher *f, const char *url,
                        const char *ca_file, struct sg_buf *body,
                        struct sg_error *err)
{
    CURL *easy = NULL;
    struct curl_slist *headers = NULL;
    struct sink sink = {.body = body};
    char errbuf[CURL_ERROR_SIZE];
    bool plain;
    long status = 0;
    CURLcode rc;
    int ret = -1;

    if (atomic_load(&f->cancelled)) {
        sg_error_report(err, SG_ERR_UNAVAILABLE, "GET %s: shutting down", url);
        return -1;
    }
    if (sg_jwks_url_check(url, err) < 0)
        return -1;
    plain = strncasecmp(url, "http:", 5) == 0;
    easy = curl_easy_init();
    headers = curl_slist_append(NULL, "Accept: application/json");
    if (easy == NULL || headers == NULL) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    errbuf[0] = '\0';
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, plain ? "http" : "https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)FETCH_TIMEOUT_MS);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)FETCH_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
                     (curl_off_t)SG_JWKS_MAX_BYTES);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "sandgate/" SG_VERSION);
    if (ca_file != NULL)
        curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file);
    /* A loopback server is never behind a proxy. */
    if (plain)
        curl_easy_setopt(easy, CURLOPT_NOPROXY, "*");

    rc = run_transfer(f, easy);
    if (atomic_load(&f->cancelled)) {
        sg_error_report(err, SG_ERR_UNAVAILABLE, "GET %s: shutting down", url);
        goto cleanup;
    }
    if (sink.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        sg_error_report(err, SG_ERR_UNAVAILABLE,
                        "GET %s: response larger than %d bytes", url,
                        SG_JWKS_MAX_BYTES);
        goto cleanup;
    }
    if (rc != CURLE_OK) {
        sg_error_report(err, SG_ERR_UNAVAILABLE, "GET %s: %s", url,
                        errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
        goto cleanup;
    }
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        sg_error_report(err, SG_ERR_UNAVAILABLE, "GET %s: HTTP status %ld", url,
                        status);
        goto cleanup;
    }
    if (sg_buf_error(body) < 0) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    ret = 0;

 cleanup:
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    return ret;
}
