/*
 * peer.c: see peer.h.
 *
 * Beyond the rules there, and because a name is what policy matches on:
 * the validity dates are checked again (a cached identity must not outlive
 * its certificate), a subject with two CNs is refused when the CN is the
 * name, an empty name is unusable, URI and DNS SANs must be printable
 * ASCII, and a certificate property counts only from a TLS transport.
 *
 * The cache maps the SHA-256 of a peer's PEM certificate to the verdict on
 * it: an identity (a shared reference) or the message of the refusal. It is
 * a chained hash table threaded on an LRU list; when full, the least
 * recently used entry goes. Every entry carries the last second it may be
 * used: an accepted certificate's notAfter, a not-yet-valid one's notBefore
 * minus one, so a verdict that time changes is made again, never served
 * stale. Certificates are parsed outside the lock; two threads that miss
 * on the same certificate at once both parse it, and the later insert wins.
 */
#include "internal.h"

#include "peer.h"

#include <grpc/grpc_security_constants.h>
#include <limits.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define DIGEST_LEN 32
/* Longest URI SAN, DNS SAN or CN accepted as a name, in bytes. */
#define NAME_MAX_BYTES 1024

struct entry {
    struct entry *chain; /* next in the bucket */
    struct entry *newer; /* LRU neighbours; head is the newest */
    struct entry *older;
    unsigned char digest[DIGEST_LEN];
    struct sg_identity *id; /* accepted: one reference; refused: NULL */
    char *message;          /* refused: why; accepted: NULL */
    int64_t valid_until;    /* unix seconds, inclusive */
};

struct sg_peer_cache {
    pthread_mutex_t mu;
    struct entry **buckets;
    size_t n_buckets; /* a power of two */
    struct entry *newest;
    struct entry *oldest;
    size_t size;
    size_t max_entries;
};

/* ---- time ---------------------------------------------------------------- */

static int64_t now_unix(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* An ASN1_TIME as unix seconds; -1 when it cannot be read. */
static int asn1_time_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    *out = (int64_t)timegm(&tm); /* tm is UTC */
    return 0;
}

/* ---- the rules ----------------------------------------------------------- */

/*
 * Why a name is unusable, or NULL when it is fine. URI and DNS SANs are
 * IA5Strings (printable ASCII); a CN arrives converted to UTF-8, where the
 * C1 controls (U+0080..U+009F) are the two-byte sequences C2 80..C2 9F.
 */
static const char *name_problem(const unsigned char *s, size_t len, bool utf8)
{
    if (len == 0)
        return "is empty";
    if (len > NAME_MAX_BYTES)
        return "is over 1024 bytes";
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            return "has a control character";
        if (!utf8 && s[i] >= 0x80)
            return "has a byte that is not ASCII";
        if (utf8 && s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 &&
            s[i + 1] <= 0x9f)
            return "has a control character";
    }
    return NULL;
}

static int check_name(const char *which, const unsigned char *s, size_t len,
                      bool utf8, struct sg_error *err)
{
    const char *problem = name_problem(s, len, utf8);

    if (!problem)
        return 0;
    sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                    "client certificate %s name %s", which, problem);
    return -1;
}

/* 1 when an extension that may appear once is absent, 0 when it parsed,
   -1 (err set) when it is malformed or repeated. */
static int ext_state(void *value, int crit, const char *what,
                     struct sg_error *err)
{
    if (value)
        return 0;
    if (crit == -1)
        return 1;
    sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                    "client certificate %s extension is malformed or repeated",
                    what);
    return -1;
}

static int check_eku(X509 *x, struct sg_error *err)
{
    int crit = -1;
    EXTENDED_KEY_USAGE *eku =
        X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
    int st = ext_state(eku, crit, "extended key usage", err);
    bool client_auth = false;

    if (st != 0)
        return st > 0 ? 0 : -1;
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
        if (OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i)) == NID_client_auth)
            client_auth = true;
    }
    EXTENDED_KEY_USAGE_free(eku);
    if (client_auth)
        return 0;
    sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                    "client certificate extended key usage does not include "
                    "clientAuth");
    return -1;
}

static int check_key_usage(X509 *x, struct sg_error *err)
{
    int crit = -1;
    ASN1_BIT_STRING *ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
    int st = ext_state(ku, crit, "key usage", err);
    bool digital_signature;

    if (st != 0)
        return st > 0 ? 0 : -1;
    digital_signature = ASN1_BIT_STRING_get_bit(ku, 0) == 1;
    ASN1_BIT_STRING_free(ku);
    if (digital_signature)
        return 0;
    sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                    "client certificate key usage does not include "
                    "digitalSignature");
    return -1;
}

static int check_validity(X509 *x, int64_t now, int64_t *not_after,
                          int64_t *valid_until, struct sg_error *err)
{
    int64_t not_before;

    if (asn1_time_unix(X509_get0_notBefore(x), &not_before) < 0 ||
        asn1_time_unix(X509_get0_notAfter(x), not_after) < 0) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "client certificate validity dates do not parse");
        return -1;
    }
    if (now < not_before) {
        /* Becomes a question again once it starts being valid. */
        *valid_until = not_before - 1;
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "client certificate is not yet valid");
        return -1;
    }
    if (now > *not_after) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "client certificate has expired");
        return -1;
    }
    return 0;
}

/* The identity named by a URI SAN, DNS SAN or CN (value already checked). */
static struct sg_identity *make_identity(enum sg_cert_name kind,
                                         const unsigned char *value, size_t len,
                                         int64_t not_after,
                                         struct sg_error *err)
{
    static const char *const prefixes[] = {
        [SG_CERT_NAME_URI] = "",
        [SG_CERT_NAME_DNS] = "dns:",
        [SG_CERT_NAME_CN] = "cn:",
    };
    const char *prefix = prefixes[kind];
    size_t plen = strlen(prefix);
    char *name = malloc(len + 1);
    char *subject = malloc(plen + len + 1);
    struct sg_identity *id = NULL;

    if (!name || !subject)
        goto cleanup;
    memcpy(name, value, len);
    name[len] = '\0';
    memcpy(subject, prefix, plen);
    memcpy(subject + plen, value, len);
    subject[plen + len] = '\0';
    id = sg_identity_new(SG_IDENTITY_CERT, subject, name);
    if (!id)
        goto cleanup;
    id->cert_name = kind;
    id->expires_at = not_after;

 cleanup:
    if (!id)
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
    free(name);
    free(subject);
    return id;
}

/* The subject from the CN, when the certificate has no SAN to use. */
static struct sg_identity *identity_from_cn(X509 *x, int64_t not_after,
                                            struct sg_error *err)
{
    X509_NAME *subj = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    int len;
    struct sg_identity *id = NULL;

    if (idx < 0) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "client certificate has no usable name (no URI SAN, "
                        "DNS SAN or CN)");
        return NULL;
    }
    /* Two CNs would make the subject a matter of which one is read. */
    if (X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "client certificate has more than one CN");
        return NULL;
    }
    len = ASN1_STRING_to_UTF8(
        &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
    if (len < 0) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "client certificate CN is not a valid string");
        goto cleanup;
    }
    if (check_name("CN", utf8, (size_t)len, true, err) < 0)
        goto cleanup;
    id = make_identity(SG_CERT_NAME_CN, utf8, (size_t)len, not_after, err);

 cleanup:
    OPENSSL_free(utf8);
    return id;
}

static struct sg_identity *identity_from_cert(X509 *x, int64_t not_after,
                                              struct sg_error *err)
{
    int crit = -1;
    GENERAL_NAMES *sans =
        X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    const ASN1_IA5STRING *uri = NULL;
    const ASN1_IA5STRING *dns = NULL;
    int n_uris = 0;
    struct sg_identity *id = NULL;

    if (ext_state(sans, crit, "subjectAltName", err) < 0)
        return NULL;
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type == GEN_URI) {
            n_uris++;
            uri = gn->d.uniformResourceIdentifier;
        } else if (gn->type == GEN_DNS && !dns) {
            dns = gn->d.dNSName;
        }
    }
    if (n_uris > 1) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "client certificate has more than one URI SAN");
        goto cleanup;
    }
    if (uri) {
        const unsigned char *v = ASN1_STRING_get0_data(uri);
        size_t len = (size_t)ASN1_STRING_length(uri);
        if (check_name("URI SAN", v, len, false, err) == 0)
            id = make_identity(SG_CERT_NAME_URI, v, len, not_after, err);
    } else if (dns) {
        const unsigned char *v = ASN1_STRING_get0_data(dns);
        size_t len = (size_t)ASN1_STRING_length(dns);
        if (check_name("DNS SAN", v, len, false, err) == 0)
            id = make_identity(SG_CERT_NAME_DNS, v, len, not_after, err);
    } else {
        id = identity_from_cn(x, not_after, err);
    }

 cleanup:
    GENERAL_NAMES_free(sans);
    return id;
}

/*
 * The verdict on one PEM certificate at time now. *valid_until is the last
 * second the verdict holds (untouched when it holds forever).
 */
static int evaluate(const char *pem, size_t len, int64_t now,
                    struct sg_identity **out, int64_t *valid_until,
                    struct sg_error *err)
{
    BIO *bio = NULL;
    X509 *x = NULL;
    int64_t not_after = 0;
    int ret = -1;

    if (len > INT_MAX) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "client certificate does not parse");
        goto cleanup;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (!x) {
        sg_error_report(err, SG_ERR_UNAUTHENTICATED,
                        "client certificate does not parse");
        goto cleanup;
    }
    if (check_validity(x, now, &not_after, valid_until, err) < 0 ||
        check_eku(x, err) < 0 || check_key_usage(x, err) < 0)
        goto cleanup;
    *out = identity_from_cert(x, not_after, err);
    if (!*out)
        goto cleanup;
    *valid_until = not_after;
    ret = 1;

 cleanup:
    /* Leave no parse errors in this thread's queue for the next TLS user. */
    ERR_clear_error();
    X509_free(x);
    BIO_free(bio);
    return ret;
}

int sg_peer_identity_from_pem(const char *pem, size_t len,
                              struct sg_identity **out, struct sg_error *err)
{
    int64_t valid_until = INT64_MAX;

    *out = NULL;
    if (!pem || len == 0)
        return 0;
    return evaluate(pem, len, now_unix(), out, &valid_until, err);
}

/* ---- the cache ----------------------------------------------------------- */

struct sg_peer_cache *sg_peer_cache_new(size_t max_entries)
{
    struct sg_peer_cache *c = calloc(1, sizeof(*c));
    size_t n = 16;

    if (!c)
        return NULL;
    while (n < max_entries && n < (SIZE_MAX >> 2))
        n <<= 1;
    c->buckets = calloc(n, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->n_buckets = n;
    c->max_entries = max_entries;
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

static void entry_free(struct entry *e)
{
    if (!e)
        return;
    sg_identity_unref(e->id);
    free(e->message);
    free(e);
}

void sg_peer_cache_free(struct sg_peer_cache *c)
{
    struct entry *e;

    if (!c)
        return;
    e = c->newest;
    while (e) {
        struct entry *older = e->older;
        entry_free(e);
        e = older;
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static struct entry **bucket_of(const struct sg_peer_cache *c,
                                const unsigned char *digest)
{
    uint64_t h;

    /* The digest is already uniformly distributed. */
    memcpy(&h, digest, sizeof(h));
    return &c->buckets[h & (c->n_buckets - 1)];
}

static struct entry **find_slot(const struct sg_peer_cache *c,
                                const unsigned char *digest)
{
    struct entry **slot = bucket_of(c, digest);

    while (*slot && memcmp((*slot)->digest, digest, DIGEST_LEN) != 0)
        slot = &(*slot)->chain;
    return slot;
}

static void lru_unlink(struct sg_peer_cache *c, struct entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = NULL;
    e->older = NULL;
}

static void lru_push(struct sg_peer_cache *c, struct entry *e)
{
    e->older = c->newest;
    e->newer = NULL;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
}

/* Take e out of the table and the list, and free it. */
static void remove_entry(struct sg_peer_cache *c, struct entry *e)
{
    struct entry **slot = find_slot(c, e->digest);

    *slot = e->chain;
    lru_unlink(c, e);
    c->size--;
    entry_free(e);
}

/* Store e (replacing an entry for the same digest), evicting if full. */
static void insert_entry(struct sg_peer_cache *c, struct entry *e)
{
    struct entry **slot = find_slot(c, e->digest);

    if (*slot)
        remove_entry(c, *slot);
    while (c->size >= c->max_entries && c->oldest)
        remove_entry(c, c->oldest);
    slot = bucket_of(c, e->digest);
    e->chain = *slot;
    *slot = e;
    lru_push(c, e);
    c->size++;
}

/*
 * The cached verdict for digest at time now: 1 (*out set), -1 (err set),
 * or 0 when there is none that still holds.
 */
static int cache_lookup(struct sg_peer_cache *c, const unsigned char *digest,
                        int64_t now, struct sg_identity **out,
                        struct sg_error *err)
{
    struct entry *e;
    int ret = 0;

    pthread_mutex_lock(&c->mu);
    e = *find_slot(c, digest);
    if (e && now > e->valid_until) {
        remove_entry(c, e);
        e = NULL;
    }
    if (e) {
        lru_unlink(c, e);
        lru_push(c, e);
        if (e->id) {
            *out = sg_identity_ref(e->id);
            ret = 1;
        } else {
            sg_error_report(err, SG_ERR_UNAUTHENTICATED, "%s", e->message);
            ret = -1;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return ret;
}

/* Remember a verdict; a failure to allocate only costs a later parse. */
static void cache_store(struct sg_peer_cache *c, const unsigned char *digest,
                        struct sg_identity *id, const char *message,
                        int64_t valid_until)
{
    struct entry *e;

    if (c->max_entries == 0)
        return;
    e = calloc(1, sizeof(*e));
    if (!e)
        return;
    memcpy(e->digest, digest, DIGEST_LEN);
    e->valid_until = valid_until;
    if (id) {
        e->id = sg_identity_ref(id);
    } else {
        e->message = strdup(message);
        if (!e->message) {
            free(e);
            return;
        }
    }
    pthread_mutex_lock(&c->mu);
    insert_entry(c, e);
    pthread_mutex_unlock(&c->mu);
}

/* The PEM certificate of a TLS peer, or NULL when it presented none. */
static const grpc_auth_property *peer_pem(const grpc_auth_context *ac)
{
    grpc_auth_property_iterator it;
    const grpc_auth_property *p;

    /* Only a TLS transport vouches for a certificate property. */
    it = grpc_auth_context_find_properties_by_name(
        ac, GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
    p = grpc_auth_property_iterator_next(&it);
    if (!p || !p->value ||
        (STRNEQ(p->value, GRPC_SSL_TRANSPORT_SECURITY_TYPE) &&
         STRNEQ(p->value, GRPC_TLS_TRANSPORT_SECURITY_TYPE)))
        return NULL;
    it = grpc_auth_context_find_properties_by_name(
        ac, GRPC_X509_PEM_CERT_PROPERTY_NAME);
    p = grpc_auth_property_iterator_next(&it);
    if (!p || !p->value || p->value_length == 0)
        return NULL;
    return p;
}

int sg_peer_identity(struct sg_peer_cache *c, const grpc_auth_context *ac,
                     struct sg_identity **out, struct sg_error *err)
{
    const grpc_auth_property *p;
    unsigned char digest[DIGEST_LEN];
    unsigned int dlen = 0;
    struct sg_error local = SG_ERROR_INIT;
    int64_t now = now_unix();
    int64_t valid_until = INT64_MAX;
    int ret;

    *out = NULL;
    if (!ac)
        return 0;
    p = peer_pem(ac);
    if (!p)
        return 0;
    if (!c)
        return evaluate(p->value, p->value_length, now, out, &valid_until, err);
    if (EVP_Digest(p->value, p->value_length, digest, &dlen, EVP_sha256(),
                   NULL) != 1 ||
        dlen != DIGEST_LEN) {
        ERR_clear_error();
        sg_error_report(err, SG_ERR_INTERNAL, "cannot hash the certificate");
        return -1;
    }
    ret = cache_lookup(c, digest, now, out, err);
    if (ret != 0)
        return ret;
    ret = evaluate(p->value, p->value_length, now, out, &valid_until, &local);
    if (ret > 0)
        cache_store(c, digest, *out, NULL, valid_until);
    else if (local.code == SG_ERR_UNAUTHENTICATED)
        cache_store(c, digest, NULL, local.message, valid_until);
    if (ret < 0)
        sg_error_report(err, local.code, "%s", local.message);
    sg_error_reset(&local);
    return ret;
}
