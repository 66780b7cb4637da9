/*
 * authz.c: the policy in force, its authenticators, the admin token of the
 * embedded default, and the audit log (see authz.h).
 */
#include "internal.h"

#include "authz.h"

#include "base64url.h"
#include "jwt.h"
#include "log.h"
#include "peer.h"
#include "token_review.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

SG_LOG_INIT("authz");

#define ADMIN_TOKEN_BYTES 32
#define ADMIN_TOKEN_MAX 512
#define PEER_CACHE_ENTRIES 1024
/* How long start-up waits for the first fetch of remote JWKS. */
#define JWKS_START_WAIT_MS 5000
#define SA_NAMESPACE_FILE "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

#define LOCAL_SUBJECT "local:unauthenticated"

/*
 * Every permission on everything: the role of the embedded default's
 * admin token, and of every caller when authentication is disabled. One
 * policy text, so both go through the same evaluation as a policy file.
 * %s is the subject matcher.
 */
static const char allow_all_fmt[] =
    "%s"
    "roles:\n"
    "  all:\n"
    "    operations: [{permissions: [\"*\"], on: any}]\n"
    "    tenants: [\"*\"]\n"
    "    projects: [\"*\"]\n"
    "    access_profiles: [\"*\"]\n"
    "    runtime_profiles: [\"*\"]\n"
    "    namespaces: [\"*\"]\n"
    "    service_accounts: [\"*\"]\n"
    "    credentials:\n"
    "      names: [\"*\"]\n"
    "      sources: [{kind: \"*\", namespace: \"*\", name: \"*\", key: \"*\"}]\n"
    "    driver_config:\n"
    "      fields: [\"*\"]\n"
    "      runtime_classes: [\"*\"]\n"
    "      node_selector: {\"*\": [\"*\"]}\n"
    "      toleration_keys: [\"*\"]\n"
    "      allocation_modes: [\"*\"]\n"
    "      templates: [\"*\"]\n"
    "      warm_pools: [\"*\"]\n"
    "    attach_policy: true\n"
    "bindings:\n"
    "  - roles: [all]\n"
    "    subjects: [{%s}]\n";

/* What one policy load brings: swapped as a whole. */
struct authz_state {
    struct sg_policy *policy;
    struct sg_jwt_verifier *verifier;   /* NULL: no issuers */
    struct sg_identity **token_ids;     /* one per static token */
    size_t n_tokens;
};

struct sg_authz {
    char *policy_file;
    char *gateway_namespace;
    struct sg_identity *local_id;       /* disabled only */
    struct sg_peer_cache *peers;
    struct sg_audit *audit;

    pthread_rwlock_t lock;              /* guards state */
    struct authz_state *state;

    uv_loop_t *loop;
    struct sg_token_review *review;     /* NULL: no token_review yet */
};

static void state_free(struct authz_state *st)
{
    if (!st)
        return;
    sg_jwt_verifier_free(st->verifier);
    for (size_t i = 0; i < st->n_tokens; i++)
        sg_identity_unref(st->token_ids[i]);
    free(st->token_ids);
    sg_policy_unref(st->policy);
    free(st);
}

/* Build the authenticators of a loaded policy. Steals policy. */
static struct authz_state *state_new(struct sg_policy *policy,
                                     struct sg_error *err)
{
    struct authz_state *st = calloc(1, sizeof(*st));
    struct sg_jwt_issuer_config *issuers = NULL;
    size_t n_issuers = sg_policy_n_issuers(policy);

    if (!st) {
        sg_policy_unref(policy);
        goto nomem;
    }
    st->policy = policy;
    st->n_tokens = sg_policy_n_tokens(policy);
    st->token_ids = calloc(st->n_tokens ? st->n_tokens : 1,
                           sizeof(*st->token_ids));
    if (!st->token_ids)
        goto nomem;
    for (size_t i = 0; i < st->n_tokens; i++) {
        const struct sg_policy_token *t = sg_policy_token(policy, i);
        char subject[300];

        snprintf(subject, sizeof(subject), "token:%s", t->name);
        st->token_ids[i] = sg_identity_new(SG_IDENTITY_TOKEN, subject,
                                           t->name);
        if (!st->token_ids[i])
            goto nomem;
    }
    if (n_issuers > 0) {
        /* The verifier copies its configuration; a shallow array will do. */
        issuers = calloc(n_issuers, sizeof(*issuers));
        if (!issuers)
            goto nomem;
        for (size_t i = 0; i < n_issuers; i++)
            issuers[i] = *sg_policy_issuer(policy, i);
        st->verifier = sg_jwt_verifier_new(issuers, n_issuers, err);
        free(issuers);
        if (!st->verifier) {
            state_free(st);
            return NULL;
        }
    }
    return st;

 nomem:
    sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
    state_free(st);
    return NULL;
}

/* ---- the admin token of the embedded default ----------------------- */

/* Returns 0 (written to path and token), 1 (the file appeared
   meanwhile: read it) or -1. */
static int write_admin_token(const char *path, char *token,
                             struct sg_error *err)
{
    uint8_t raw[ADMIN_TOKEN_BYTES];
    char line[ADMIN_TOKEN_MAX];
    char ebuf[128];
    int fd;
    int n;
    ssize_t w;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        sg_error_report(err, SG_ERR_INTERNAL, "cannot generate a token");
        return -1;
    }
    memcpy(token, "sgadm_", 6);
    sg_base64url_encode(raw, sizeof(raw), token + 6);
    OPENSSL_cleanse(raw, sizeof(raw));
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
              0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return 1; /* someone else wrote it: read theirs */
        sg_error_report(err, SG_ERR_IO, "%s: cannot create: %s", path,
                        sg_strerror(errno, ebuf, sizeof(ebuf)));
        return -1;
    }
    n = snprintf(line, sizeof(line), "%s\n", token);
    w = write(fd, line, (size_t)n);
    OPENSSL_cleanse(line, sizeof(line));
    if (w != n || fsync(fd) < 0) {
        sg_error_report(err, SG_ERR_IO, "%s: cannot write: %s", path,
                        sg_strerror(errno, ebuf, sizeof(ebuf)));
        close(fd);
        unlink(path);
        return -1;
    }
    close(fd);
    SG_INFO("wrote a new admin token to %s", path);
    return 0;
}

static int read_admin_token(const char *path, char *token, size_t size,
                            struct sg_error *err)
{
    char ebuf[128];
    struct stat st;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0) {
        sg_error_report(err, SG_ERR_IO, "%s: cannot open: %s", path,
                        sg_strerror(errno, ebuf, sizeof(ebuf)));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        sg_error_report(err, SG_ERR_CONFIG, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_mode & 077) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: readable by others (mode %03o); the admin "
                        "token file must be mode 0600", path,
                        (unsigned)(st.st_mode & 0777));
        close(fd);
        return -1;
    }
    n = read(fd, token, size - 1);
    close(fd);
    if (n < 0) {
        sg_error_report(err, SG_ERR_IO, "%s: cannot read: %s", path,
                        sg_strerror(errno, ebuf, sizeof(ebuf)));
        return -1;
    }
    token[n] = '\0';
    while (n > 0 && (token[n - 1] == '\n' || token[n - 1] == '\r' ||
                     token[n - 1] == ' '))
        token[--n] = '\0';
    if (n < 16) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s: the admin token is shorter than 16 characters",
                        path);
        return -1;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (token[i] <= ' ' || token[i] > '~') {
            sg_error_report(err, SG_ERR_CONFIG,
                            "%s: the admin token holds a character that is "
                            "not printable ASCII", path);
            return -1;
        }
    }
    return 0;
}

/* The admin token's SHA-256 in hex: from the file, made on first start. */
static int admin_token_hash(const char *path, char hex[65],
                            struct sg_error *err)
{
    char token[ADMIN_TOKEN_MAX];
    uint8_t md[SHA256_DIGEST_LENGTH];
    int rc = 1; /* 1: read the file */

    if (access(path, F_OK) < 0 && errno == ENOENT)
        rc = write_admin_token(path, token, err);
    if (rc < 0)
        return -1;
    if (rc == 1 && read_admin_token(path, token, sizeof(token), err) < 0)
        return -1;
    SHA256((const uint8_t *)token, strlen(token), md);
    OPENSSL_cleanse(token, sizeof(token));
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* ---- loading -------------------------------------------------------- */

static struct sg_policy *allow_all_policy(const char *authn,
                                          const char *matcher,
                                          struct sg_error *err)
{
    char text[4096];
    int n = snprintf(text, sizeof(text), allow_all_fmt, authn, matcher);

    if (n < 0 || (size_t)n >= sizeof(text)) {
        sg_error_report(err, SG_ERR_INTERNAL, "embedded policy too long");
        return NULL;
    }
    return sg_policy_load_data("embedded default policy", text, (size_t)n,
                               err);
}

static struct sg_policy *load_policy(const struct sg_authz_config *cfg,
                                     struct sg_error *err)
{
    char hex[65];
    char authn[256];

    if (cfg->disabled)
        return allow_all_policy("", "any_subject: \"" LOCAL_SUBJECT "\"",
                                err);
    if (cfg->policy_file)
        return sg_policy_load_file(cfg->policy_file, err);
    if (admin_token_hash(cfg->admin_token_file, hex, err) < 0)
        return NULL;
    snprintf(authn, sizeof(authn),
             "authentication:\n"
             "  static_tokens: [{name: admin, sha256: \"%s\"}]\n", hex);
    return allow_all_policy(authn, "token: admin", err);
}

static char *detect_namespace(const char *configured)
{
    char buf[256];
    const char *env;
    FILE *f;

    if (configured && *configured)
        return strdup(configured);
    f = fopen(SA_NAMESPACE_FILE, "re");
    if (f) {
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);

        fclose(f);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
            n--;
        buf[n] = '\0';
        if (n > 0)
            return strdup(buf);
    }
    env = getenv("POD_NAMESPACE");
    return env && *env ? strdup(env) : NULL;
}

/* Start the TokenReview client for the first policy that asks for one. */
static int start_review(struct sg_authz *a, const struct sg_policy *policy,
                        struct sg_error *err)
{
    const struct sg_policy_token_review *cfg = sg_policy_token_review(policy);

    if (!cfg || a->review)
        return 0;
    if (!a->loop) {
        sg_error_report(err, SG_ERR_CONFIG, "authentication.token_review: "
                        "needs the gateway's event loop");
        return -1;
    }
    a->review = sg_token_review_new(a->loop, cfg, err);
    if (!a->review)
        return -1;
    SG_INFO("token review: %s, cache %us, negative cache %us",
            cfg->in_cluster ? "in-cluster credentials" : cfg->kubeconfig,
            cfg->cache_ttl_s, cfg->negative_cache_ttl_s);
    return 0;
}

static void log_loaded(const struct authz_state *st, const char *what)
{
    SG_INFO("%s: policy %s, %zu JWT issuer(s), %zu static token(s)", what,
            sg_policy_digest(st->policy), sg_policy_n_issuers(st->policy),
            st->n_tokens);
}

struct sg_authz *sg_authz_new(const struct sg_authz_config *cfg,
                              struct sg_error *err)
{
    struct sg_authz *a = calloc(1, sizeof(*a));
    struct sg_policy *policy;

    if (!a) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    pthread_rwlock_init(&a->lock, NULL);
    if ((cfg->policy_file && !(a->policy_file = strdup(cfg->policy_file))) ||
        !(a->peers = sg_peer_cache_new(PEER_CACHE_ENTRIES))) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto error;
    }
    a->gateway_namespace = detect_namespace(cfg->gateway_namespace);
    if (cfg->disabled) {
        a->local_id = sg_identity_new(SG_IDENTITY_LOCAL, LOCAL_SUBJECT,
                                      LOCAL_SUBJECT);
        if (!a->local_id) {
            sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
            goto error;
        }
        SG_WARN("authentication is disabled: every caller has every "
                "permission");
    }
    policy = load_policy(cfg, err);
    if (!policy)
        goto error;
    a->loop = cfg->loop;
    a->state = state_new(policy, err);
    if (!a->state || start_review(a, a->state->policy, err) < 0)
        goto error;
    if (a->state->verifier &&
        !sg_jwt_verifier_wait_ready(a->state->verifier, JWKS_START_WAIT_MS))
        SG_WARN("some JWT issuers have no keys yet; their tokens are "
                "refused until a fetch succeeds");
    a->audit = sg_audit_open(&cfg->audit, err);
    if (!a->audit)
        goto error;
    if (a->gateway_namespace)
        SG_INFO("the gateway's namespace '%s' is never a sandbox target",
                a->gateway_namespace);
    log_loaded(a->state, a->policy_file ? a->policy_file
                                        : cfg->disabled ? "auth disabled"
                                                        : "admin token only");
    return a;

 error:
    sg_authz_free(a);
    return NULL;
}

void sg_authz_free(struct sg_authz *a)
{
    if (!a)
        return;
    sg_token_review_close(a->review);
    state_free(a->state);
    sg_audit_close(a->audit);
    sg_peer_cache_free(a->peers);
    sg_identity_unref(a->local_id);
    free(a->gateway_namespace);
    free(a->policy_file);
    pthread_rwlock_destroy(&a->lock);
    free(a);
}

int sg_authz_reload(struct sg_authz *a, struct sg_error *err)
{
    struct authz_state *st;
    struct authz_state *old;
    struct sg_policy *policy;
    struct sg_error aerr = SG_ERROR_INIT;

    if (sg_audit_reopen(a->audit, &aerr) < 0)
        SG_WARN("audit log: %s", aerr.message);
    sg_error_reset(&aerr);
    if (!a->policy_file)
        return 0;
    policy = sg_policy_load_file(a->policy_file, err);
    if (!policy)
        return -1;
    st = state_new(policy, err);
    if (!st)
        return -1;
    if (start_review(a, st->policy, err) < 0) {
        state_free(st);
        return -1;
    }
    /* Swap in a verifier that has its keys, so a reload does not refuse
       tokens of fetched issuers until the first fetch (bounded wait). */
    if (st->verifier &&
        !sg_jwt_verifier_wait_ready(st->verifier, JWKS_START_WAIT_MS))
        SG_WARN("reload: some JWT issuers have no keys yet");
    pthread_rwlock_wrlock(&a->lock);
    old = a->state;
    a->state = st;
    pthread_rwlock_unlock(&a->lock);
    state_free(old); /* calls in flight keep their policy reference */
    log_loaded(st, a->policy_file);
    return 0;
}

/* ---- authentication ------------------------------------------------- */

/* Which static token, or -1. Every token is compared, in constant time,
   so the time taken says nothing about which one came close. */
static int match_static(const struct authz_state *st, const char *bearer,
                        size_t len)
{
    uint8_t md[SHA256_DIGEST_LENGTH];
    int found = -1;

    if (st->n_tokens == 0)
        return -1;
    SHA256((const uint8_t *)bearer, len, md);
    for (size_t i = 0; i < st->n_tokens; i++) {
        const struct sg_policy_token *t = sg_policy_token(st->policy, i);

        if (CRYPTO_memcmp(md, t->sha256, sizeof(md)) == 0)
            found = (int)i;
    }
    return found;
}

/* Exactly two dots: the shape of a compact JWS (memchr: this runs on
   every call, over a token of a kilobyte or so). */
static bool looks_like_jwt(const char *s, size_t len)
{
    const char *end = s + len;
    const char *dot = memchr(s, '.', len);

    for (int i = 0; i < 2; i++) {
        if (!dot)
            return false;
        dot = memchr(dot + 1, '.', (size_t)(end - dot - 1));
    }
    return !dot;
}

static int authenticate_locked(struct sg_authz *a, const char *bearer,
                               size_t len, const grpc_auth_context *ac,
                               struct sg_identity **id, struct sg_error *err)
{
    const struct authz_state *st = a->state;
    int tok;
    int rc;

    if (a->local_id) {
        *id = sg_identity_ref(a->local_id);
        return 0;
    }
    if (bearer) {
        tok = match_static(st, bearer, len);
        if (tok >= 0) {
            *id = sg_identity_ref(st->token_ids[tok]);
            return 0;
        }
        if (st->verifier && looks_like_jwt(bearer, len))
            return sg_jwt_verify(st->verifier, bearer, len,
                                 (int64_t)time(NULL), id, err);
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "bearer token not accepted");
        return -1;
    }
    rc = sg_peer_identity(a->peers, ac, id, err);
    if (rc == 0)
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "no credential: send a bearer token or a client "
                        "certificate");
    return rc > 0 ? 0 : -1;
}

/* A caller waiting for its TokenReview. */
struct review_wait {
    sg_authz_done_fn done;
    void *opaque;
    struct sg_identity *id;
    struct sg_policy *policy;
};

static void review_done(void *opaque, const struct sg_error *err)
{
    struct review_wait *w = opaque;

    if (err) {
        sg_identity_unref(w->id);
        sg_policy_unref(w->policy);
        w->done(w->opaque, NULL, NULL, err);
    } else {
        w->done(w->opaque, w->id, w->policy, NULL);
    }
    free(w);
}

/* A locally verified JWT of a reviewed issuer: ask Kubernetes (or its
   cached answer). Returns as sg_authz_authenticate_async. */
static int review(struct sg_authz *a, const char *bearer, size_t len,
                  struct sg_identity **id, struct sg_policy **policy,
                  sg_authz_done_fn done, void *opaque, struct sg_error *err)
{
    struct review_wait *w = done ? calloc(1, sizeof(*w)) : NULL;
    int rc = -1;

    if (done && !w) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
    } else if (!a->review) {
        /* Cannot happen (a policy with reviews starts one): never allow. */
        sg_error_report(err, SG_ERR_UNAVAILABLE, "token review unavailable");
    } else {
        if (w)
            *w = (struct review_wait){.done = done, .opaque = opaque,
                                      .id = *id, .policy = *policy};
        rc = sg_token_review_check(a->review, bearer, len,
                                   (*id)->expires_at,
                                   w ? review_done : NULL, w, err);
    }
    if (rc > 0) {
        *id = NULL; /* w holds them */
        *policy = NULL;
        return 1;
    }
    free(w);
    if (rc < 0) {
        sg_identity_unref(*id);
        sg_policy_unref(*policy);
        *id = NULL;
        *policy = NULL;
    }
    return rc;
}

int sg_authz_authenticate_async(struct sg_authz *a, const char *bearer,
                                size_t len, const grpc_auth_context *ac,
                                struct sg_identity **id,
                                struct sg_policy **policy,
                                sg_authz_done_fn done, void *opaque,
                                struct sg_error *err)
{
    bool reviewed;
    int rc;

    *id = NULL;
    *policy = NULL;
    pthread_rwlock_rdlock(&a->lock);
    rc = authenticate_locked(a, bearer, len, ac, id, err);
    reviewed = rc == 0 && (*id)->kind == SG_IDENTITY_JWT &&
               sg_policy_issuer_reviewed(a->state->policy, (*id)->issuer);
    if (rc == 0)
        *policy = sg_policy_ref(a->state->policy);
    pthread_rwlock_unlock(&a->lock);
    if (reviewed)
        rc = review(a, bearer, len, id, policy, done, opaque, err);
    return rc;
}

int sg_authz_authenticate(struct sg_authz *a, const char *bearer,
                          size_t len, const grpc_auth_context *ac,
                          struct sg_identity **id, struct sg_policy **policy,
                          struct sg_error *err)
{
    return sg_authz_authenticate_async(a, bearer, len, ac, id, policy, NULL,
                                       NULL, err);
}

void sg_authz_stop(struct sg_authz *a)
{
    if (!a)
        return;
    sg_token_review_close(a->review);
    a->review = NULL;
}

const char *sg_authz_gateway_namespace(const struct sg_authz *a)
{
    return a->gateway_namespace;
}

struct sg_audit *sg_authz_audit(struct sg_authz *a)
{
    return a->audit;
}

struct sg_policy *sg_authz_current_policy(struct sg_authz *a)
{
    struct sg_policy *p;

    pthread_rwlock_rdlock(&a->lock);
    p = sg_policy_ref(a->state->policy);
    pthread_rwlock_unlock(&a->lock);
    return p;
}

void sg_authz_policy_digest(struct sg_authz *a, char *out, size_t len)
{
    pthread_rwlock_rdlock(&a->lock);
    snprintf(out, len, "%s", sg_policy_digest(a->state->policy));
    pthread_rwlock_unlock(&a->lock);
}
