/*
 * test_peer.c: client certificate identities (authz/peer.c).
 *
 * Every certificate is made here with OpenSSL at test time (nothing to
 * expire on disk). The rules are checked through sg_peer_identity_from_pem
 * with one table of accepted and one of refused certificates. The auth
 * context path and the cache are checked through real TLS handshakes with
 * the gRPC core on 127.0.0.1: the server's call gives the auth context the
 * daemon would see.
 */
#include "internal.h"

#include "testutils.h"

#include "peer.h"

#include <check.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ---- certificates -------------------------------------------------------- */

/* One subjectAltName entry; pad > 0 extends v with 'a' to pad bytes. */
struct gname {
    int type; /* GEN_URI, GEN_DNS, GEN_EMAIL, GEN_IPADD; 0 ends the list */
    const char *v;
    int len; /* 0: strlen(v) */
    size_t pad;
};

struct spec {
    const char *cn; /* NULL: no CN */
    int cn_len;     /* 0: strlen(cn) */
    size_t cn_pad;
    const char *cn2; /* a second CN */
    struct gname sans[4];
    bool dup_san;    /* the subjectAltName extension twice */
    const char *eku; /* extendedKeyUsage value, NULL: none */
    const char *ku;  /* keyUsage value, NULL: none */
    bool ca;
    long not_before; /* seconds from now; 0: -60 */
    long not_after;  /* seconds from now; 0: 3600 */
};

static EVP_PKEY *new_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");

    ck_assert_ptr_nonnull(k);
    return k;
}

/* v padded with 'a' to pad bytes (or v itself, copied). */
static unsigned char *padded(const char *v, int len, size_t pad, size_t *out)
{
    size_t n = len ? (size_t)len : strlen(v);
    size_t total = pad > n ? pad : n;
    unsigned char *b = malloc(total + 1);

    ck_assert_ptr_nonnull(b);
    memcpy(b, v, n);
    memset(b + n, 'a', total - n);
    b[total] = '\0';
    *out = total;
    return b;
}

static void add_conf_ext(X509 *x, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, nid, value);

    ck_assert_msg(ext != NULL, "bad extension value '%s'", value);
    ck_assert_int_eq(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static void add_sans(X509 *x, const struct gname *names)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();

    ck_assert_ptr_nonnull(gens);
    for (const struct gname *g = names; g->type; g++) {
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_STRING *s = ASN1_STRING_type_new(
            g->type == GEN_IPADD ? V_ASN1_OCTET_STRING : V_ASN1_IA5STRING);
        size_t n;
        unsigned char *b = padded(g->v, g->len, g->pad, &n);
        ck_assert_ptr_nonnull(gn);
        ck_assert_ptr_nonnull(s);
        ck_assert_int_eq(ASN1_STRING_set(s, b, (int)n), 1);
        free(b);
        GENERAL_NAME_set0_value(gn, g->type, s);
        ck_assert_int_gt(sk_GENERAL_NAME_push(gens, gn), 0);
    }
    /* APPEND: a second call adds a second extension (the duplicate case). */
    ck_assert_int_eq(
        X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_APPEND),
        1);
    GENERAL_NAMES_free(gens);
}

static void add_cn(X509_NAME *name, const char *v, int len, size_t pad)
{
    size_t n;
    unsigned char *b = padded(v, len, pad, &n);

    /* A plain string type skips OpenSSL's checks, so bad names get in. */
    ck_assert_int_eq(X509_NAME_add_entry_by_NID(name, NID_commonName,
                                                V_ASN1_UTF8STRING, b, (int)n,
                                                -1, 0),
                     1);
    free(b);
}

/*
 * A certificate for key, made at t0, signed by issuer_key (NULL: self
 * signed). The validity is exactly [t0 + not_before, t0 + not_after].
 */
static X509 *make_cert(const struct spec *s, EVP_PKEY *key, X509 *issuer,
                       EVP_PKEY *issuer_key, time_t t0)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    long nb = s->not_before ? s->not_before : -60;
    long na = s->not_after ? s->not_after : 3600;

    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(name);
    ck_assert_int_eq(X509_set_version(x, 2), 1);
    ck_assert_int_eq(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++), 1);
    ck_assert_ptr_nonnull(X509_time_adj_ex(X509_getm_notBefore(x), 0, nb, &t0));
    ck_assert_ptr_nonnull(X509_time_adj_ex(X509_getm_notAfter(x), 0, na, &t0));
    ck_assert_int_eq(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                                (const unsigned char *)"tests",
                                                -1, -1, 0),
                     1);
    if (s->cn)
        add_cn(name, s->cn, s->cn_len, s->cn_pad);
    if (s->cn2)
        add_cn(name, s->cn2, 0, 0);
    ck_assert_int_eq(X509_set_subject_name(x, name), 1);
    ck_assert_int_eq(
        X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name),
        1);
    X509_NAME_free(name);
    ck_assert_int_eq(X509_set_pubkey(x, key), 1);
    add_conf_ext(x, NID_basic_constraints,
                 s->ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    if (s->ku)
        add_conf_ext(x, NID_key_usage, s->ku);
    if (s->eku)
        add_conf_ext(x, NID_ext_key_usage, s->eku);
    if (s->sans[0].type) {
        add_sans(x, s->sans);
        if (s->dup_san)
            add_sans(x, s->sans);
    }
    ck_assert_int_gt(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()),
                     0);
    return x;
}

static char *bio_text(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *s;

    ck_assert_int_gt(n, 0);
    /* Not strndup: the BIO's bytes are not NUL-terminated. */
    s = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static char *cert_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());

    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(PEM_write_bio_X509(b, x), 1);
    return bio_text(b);
}

static char *key_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());

    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL),
                     1);
    return bio_text(b);
}

/* A self-signed certificate's PEM (the rules do not look at the issuer). */
static char *spec_pem(const struct spec *s, time_t t0)
{
    EVP_PKEY *k = new_key();
    X509 *x = make_cert(s, k, NULL, NULL, t0);
    char *pem = cert_pem(x);

    X509_free(x);
    EVP_PKEY_free(k);
    return pem;
}

/* ---- the rules, from PEM ------------------------------------------------- */

#define SPIFFE "spiffe://cluster.local/ns/platform/sa/controller"
#define CLIENT_KU "critical,digitalSignature"

struct accepted_case {
    const char *what;
    struct spec spec;
    const char *subject;
    const char *name; /* NULL: the same as the subject */
    enum sg_cert_name cert_name;
};

static const struct accepted_case accepted[] = {
    {"a SPIFFE URI SAN",
     {.cn = "controller",
      .sans = {{GEN_URI, SPIFFE}},
      .eku = "clientAuth",
      .ku = CLIENT_KU},
     SPIFFE,
     NULL,
     SG_CERT_NAME_URI},
    {"the URI SAN wins over DNS SANs and the CN",
     {.cn = "c",
      .sans = {{GEN_DNS, "a.example"},
               {GEN_URI, SPIFFE},
               {GEN_DNS, "b.example"}}},
     SPIFFE,
     NULL,
     SG_CERT_NAME_URI},
    {"any URI scheme",
     {.sans = {{GEN_URI, "urn:example:client-7"}}},
     "urn:example:client-7",
     NULL,
     SG_CERT_NAME_URI},
    {"the first DNS SAN, without a URI SAN",
     {.cn = "c",
      .sans = {{GEN_DNS, "first.example"}, {GEN_DNS, "second.example"}},
      .eku = "clientAuth"},
     "dns:first.example",
     "first.example",
     SG_CERT_NAME_DNS},
    {"DNS SAN after an email SAN",
     {.sans = {{GEN_EMAIL, "ops@example.com"}, {GEN_DNS, "svc.example"}}},
     "dns:svc.example",
     "svc.example",
     SG_CERT_NAME_DNS},
    {"the CN, without SANs",
     {.cn = "batch-runner", .ku = CLIENT_KU},
     "cn:batch-runner",
     "batch-runner",
     SG_CERT_NAME_CN},
    {"the CN, when the SANs are neither URI nor DNS",
     {.cn = "mailer",
      .sans = {{GEN_EMAIL, "m@example.com"}, {GEN_IPADD, "\x7f\0\0\x01", 4}}},
     "cn:mailer",
     "mailer",
     SG_CERT_NAME_CN},
    {"a UTF-8 CN",
     {.cn = "zo\xc3\xab"},
     "cn:zo\xc3\xab",
     "zo\xc3\xab",
     SG_CERT_NAME_CN},
    {"EKU with clientAuth among others",
     {.sans = {{GEN_URI, SPIFFE}}, .eku = "serverAuth,clientAuth"},
     SPIFFE,
     NULL,
     SG_CERT_NAME_URI},
    {"key usage with digitalSignature among others",
     {.sans = {{GEN_URI, SPIFFE}},
      .ku = "critical,keyEncipherment,digitalSignature"},
     SPIFFE,
     NULL,
     SG_CERT_NAME_URI},
    {"a URI SAN of exactly 1024 bytes",
     {.sans = {{GEN_URI, "spiffe://x/", 0, 1024}}},
     NULL,
     NULL,
     SG_CERT_NAME_URI},
    {"a CN of exactly 1024 bytes",
     {.cn = "c", .cn_pad = 1024},
     NULL,
     NULL,
     SG_CERT_NAME_CN},
    {"valid until one minute from now",
     {.sans = {{GEN_URI, SPIFFE}}, .not_after = 60},
     SPIFFE,
     NULL,
     SG_CERT_NAME_URI},
};

START_TEST(test_accepted)
{
    const struct accepted_case *c = &accepted[_i];
    time_t t0 = time(NULL);
    char *pem = spec_pem(&c->spec, t0);
    struct sg_identity *id = NULL;
    struct sg_error err = SG_ERROR_INIT;
    long na = c->spec.not_after ? c->spec.not_after : 3600;

    ck_assert_msg(sg_peer_identity_from_pem(pem, strlen(pem), &id, &err) == 1,
                  "%s: refused: %s", c->what, err.message);
    ck_assert_ptr_nonnull(id);
    ck_assert_int_eq(id->kind, SG_IDENTITY_CERT);
    ck_assert_int_eq(id->cert_name, c->cert_name);
    if (c->subject) {
        ck_assert_str_eq(id->subject, c->subject);
        ck_assert_str_eq(id->name, c->name ? c->name : c->subject);
    } else {
        /* The padded cases: the name is the whole value. */
        ck_assert_uint_eq(strlen(id->name), 1024);
        ck_assert_uint_eq(strlen(id->subject),
                          1024 + (c->cert_name == SG_CERT_NAME_CN ? 3 : 0));
    }
    ck_assert_int_eq(id->expires_at, (int64_t)t0 + na);
    ck_assert_ptr_null(id->issuer);
    ck_assert_uint_eq(id->n_groups, 0);
    ck_assert(!sg_error_is_set(&err));
    sg_identity_unref(id);
    free(pem);
}
END_TEST

struct refused_case {
    const char *what;
    struct spec spec;
    const char *message; /* a part of err.message */
};

static const struct refused_case refused[] = {
    {"two URI SANs",
     {.sans = {{GEN_URI, SPIFFE}, {GEN_URI, "spiffe://other/x"}},
      .eku = "clientAuth"},
     "more than one URI SAN"},
    {"EKU serverAuth only",
     {.sans = {{GEN_URI, SPIFFE}}, .eku = "serverAuth"},
     "extended key usage does not include clientAuth"},
    {"EKU codeSigning, emailProtection",
     {.cn = "c", .eku = "codeSigning,emailProtection"},
     "extended key usage does not include clientAuth"},
    {"key usage keyEncipherment only",
     {.sans = {{GEN_URI, SPIFFE}}, .ku = "critical,keyEncipherment"},
     "key usage does not include digitalSignature"},
    {"key usage keyAgreement only",
     {.sans = {{GEN_URI, SPIFFE}}, .ku = "keyAgreement"},
     "key usage does not include digitalSignature"},
    {"no names at all", {.eku = "clientAuth"}, "no usable name"},
    {"only an email SAN and no CN",
     {.sans = {{GEN_EMAIL, "a@example.com"}}},
     "no usable name"},
    {"two CNs", {.cn = "one", .cn2 = "two"}, "more than one CN"},
    {"a CN with a C0 control character",
     {.cn = "evil\x01name"},
     "CN name has a control character"},
    {"a CN with a newline",
     {.cn = "admin\nforged: yes"},
     "CN name has a control character"},
    {"a CN with DEL", {.cn = "x\x7f"}, "CN name has a control character"},
    {"a CN with a C1 control character (U+0085)",
     {.cn = "x\xc2\x85y"},
     "CN name has a control character"},
    {"a CN with an embedded NUL",
     {.cn = "admin\0tail", .cn_len = 10},
     "CN name has a control character"},
    {"a CN of 1025 bytes",
     {.cn = "c", .cn_pad = 1025},
     "CN name is over 1024 bytes"},
    {"an empty CN", {.cn = ""}, "CN name is empty"},
    {"a URI SAN with a control character",
     {.sans = {{GEN_URI, "spiffe://a/\x1b[31m"}}},
     "URI SAN name has a control character"},
    {"a URI SAN with an embedded NUL",
     {.sans = {{GEN_URI, "spiffe://a\0.evil", 16}}},
     "URI SAN name has a control character"},
    {"a URI SAN of 1025 bytes",
     {.sans = {{GEN_URI, "spiffe://x/", 0, 1025}}},
     "URI SAN name is over 1024 bytes"},
    {"an empty URI SAN (no fallback to the DNS SAN)",
     {.sans = {{GEN_URI, ""}, {GEN_DNS, "ok.example"}}},
     "URI SAN name is empty"},
    {"a DNS SAN with a tab",
     {.sans = {{GEN_DNS, "a\tb.example"}}, .cn = "fine"},
     "DNS SAN name has a control character"},
    {"a DNS SAN with a byte that is not ASCII",
     {.sans = {{GEN_DNS, "b\xc3\xa4"
                         "d.example"}}},
     "DNS SAN name has a byte that is not ASCII"},
    {"a DNS SAN of 1025 bytes",
     {.sans = {{GEN_DNS, "d", 0, 1025}}},
     "DNS SAN name is over 1024 bytes"},
    {"subjectAltName twice",
     {.sans = {{GEN_URI, SPIFFE}}, .dup_san = true},
     "subjectAltName extension is malformed or repeated"},
    {"expired",
     {.sans = {{GEN_URI, SPIFFE}}, .not_before = -7200, .not_after = -3600},
     "has expired"},
    {"not yet valid",
     {.sans = {{GEN_URI, SPIFFE}}, .not_before = 3600, .not_after = 7200},
     "not yet valid"},
};

START_TEST(test_refused)
{
    const struct refused_case *c = &refused[_i];
    char *pem = spec_pem(&c->spec, time(NULL));
    struct sg_identity *id = NULL;
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_msg(sg_peer_identity_from_pem(pem, strlen(pem), &id, &err) == -1,
                  "%s: accepted as '%s'", c->what, id ? id->subject : "?");
    ck_assert_ptr_null(id);
    ck_assert_int_eq(err.code, SG_ERR_UNAUTHENTICATED);
    ck_assert_msg(strstr(err.message, c->message) != NULL,
                  "%s: message '%s' lacks '%s'", c->what, err.message,
                  c->message);
    ck_assert_msg(STRPREFIX(err.message, "client certificate "),
                  "%s: message '%s'", c->what, err.message);
    free(pem);
}
END_TEST

START_TEST(test_pem_input)
{
    struct spec s = {.sans = {{GEN_URI, SPIFFE}}};
    char *pem = spec_pem(&s, time(NULL));
    size_t len = strlen(pem);
    struct sg_identity *id = NULL;
    struct sg_error err = SG_ERROR_INIT;
    char *with_nul;

    /* No certificate at all. */
    ck_assert_int_eq(sg_peer_identity_from_pem(NULL, 0, &id, &err), 0);
    ck_assert_int_eq(sg_peer_identity_from_pem(pem, 0, &id, &err), 0);
    ck_assert_ptr_null(id);
    ck_assert(!sg_error_is_set(&err));

    /* Garbage, and a certificate cut short. */
    ck_assert_int_eq(sg_peer_identity_from_pem("hello", 5, &id, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_UNAUTHENTICATED);
    ck_assert_str_eq(err.message, "client certificate does not parse");
    sg_error_reset(&err);
    ck_assert_int_eq(sg_peer_identity_from_pem(pem, len / 2, &id, &err), -1);
    ck_assert_str_eq(err.message, "client certificate does not parse");
    ck_assert_ptr_null(id);
    sg_error_reset(&err);

    /* The length counts, not a terminator: the core's value may include
       the NUL, and a buffer need not end with one. */
    with_nul = malloc(len + 8);
    ck_assert_ptr_nonnull(with_nul);
    memcpy(with_nul, pem, len + 1);
    ck_assert_int_eq(sg_peer_identity_from_pem(with_nul, len + 1, &id, &err),
                     1);
    ck_assert_str_eq(id->subject, SPIFFE);
    sg_identity_unref(id);
    memcpy(with_nul + len, "XXXXXXX", 8);
    ck_assert_int_eq(sg_peer_identity_from_pem(with_nul, len, &id, &err), 1);
    sg_identity_unref(id);

    /* An error already recorded is kept (the first report wins). */
    sg_error_report(&err, SG_ERR_INTERNAL, "earlier");
    ck_assert_int_eq(sg_peer_identity_from_pem("x", 1, &id, &err), -1);
    ck_assert_str_eq(err.message, "earlier");
    sg_error_reset(&err);
    free(with_nul);
    free(pem);
}
END_TEST

START_TEST(test_cache_new_free)
{
    struct sg_peer_cache *c = sg_peer_cache_new(4);
    struct sg_peer_cache *none = sg_peer_cache_new(0);
    struct sg_identity *id = (struct sg_identity *)&id; /* must be reset */
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(none);
    /* No auth context: no certificate. */
    ck_assert_int_eq(sg_peer_identity(c, NULL, &id, &err), 0);
    ck_assert_ptr_null(id);
    ck_assert(!sg_error_is_set(&err));
    sg_peer_cache_free(c);
    sg_peer_cache_free(none);
    sg_peer_cache_free(NULL);
}
END_TEST

/* ---- through real TLS handshakes ----------------------------------------- */

/*
 * A gRPC server on 127.0.0.1 (TLS with the given client certificate
 * request, or plaintext) and one call per connect(): the server side of the
 * call yields the auth context.
 */
struct tls_server {
    grpc_completion_queue *cq;
    grpc_server *server;
    char target[64];
    char *ca_pem;
    /* The one server call request that may be outstanding. */
    bool requested;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
};

/* The test PKI: a CA, a server certificate, and client certificates. */
struct pki {
    EVP_PKEY *ca_key;
    X509 *ca;
    EVP_PKEY *key; /* every leaf's key */
    char *ca_pem;
    char *server_pem;
    char *key_pem;
};

enum { TAG_REQUEST = 1, TAG_SERVER, TAG_CLIENT, TAG_SHUTDOWN };

#define TAG(t) ((void *)(intptr_t)(t))
#define WAIT_MS 20000

static void pki_init(struct pki *p)
{
    struct spec ca = {
        .cn = "unit CA", .ca = true, .ku = "critical,keyCertSign,cRLSign"};
    struct spec srv = {.cn = "localhost",
                       .sans = {{GEN_DNS, "localhost"}},
                       .eku = "serverAuth",
                       .ku = CLIENT_KU};
    X509 *s;

    p->ca_key = new_key();
    p->ca = make_cert(&ca, p->ca_key, NULL, NULL, time(NULL));
    p->key = new_key();
    s = make_cert(&srv, p->key, p->ca, p->ca_key, time(NULL));
    p->ca_pem = cert_pem(p->ca);
    p->server_pem = cert_pem(s);
    p->key_pem = key_pem(p->key);
    X509_free(s);
}

static void pki_free(struct pki *p)
{
    EVP_PKEY_free(p->ca_key);
    EVP_PKEY_free(p->key);
    X509_free(p->ca);
    free(p->ca_pem);
    free(p->server_pem);
    free(p->key_pem);
}

/* A client certificate signed by the test CA, made at t0. */
static char *pki_client(struct pki *p, const struct spec *s, time_t t0)
{
    X509 *x = make_cert(s, p->key, p->ca, p->ca_key, t0);
    char *pem = cert_pem(x);

    X509_free(x);
    return pem;
}

static grpc_event next_event(struct tls_server *s)
{
    gpr_timespec until =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_millis(WAIT_MS, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(s->cq, until, NULL);

    ck_assert_msg(ev.type == GRPC_OP_COMPLETE, "no completion within %d ms",
                  WAIT_MS);
    return ev;
}

/* grpc_init and a server; p NULL: a plaintext one. */
static void server_start(struct tls_server *s, struct pki *p,
                         grpc_ssl_client_certificate_request_type req)
{
    grpc_server_credentials *creds;
    int port;

    memset(s, 0, sizeof(*s));
    grpc_init();
    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->server = grpc_server_create(NULL, NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    if (p) {
        grpc_ssl_pem_key_cert_pair pair = {p->key_pem, p->server_pem};
        creds = grpc_ssl_server_credentials_create_ex(p->ca_pem, &pair, 1, req,
                                                      NULL);
        s->ca_pem = p->ca_pem;
    } else {
        creds = grpc_insecure_server_credentials_create();
    }
    port = grpc_server_add_http2_port(s->server, "127.0.0.1:0", creds);
    grpc_server_credentials_release(creds);
    ck_assert_int_gt(port, 0);
    grpc_server_start(s->server);
    snprintf(s->target, sizeof(s->target), "127.0.0.1:%d", port);
    grpc_call_details_init(&s->details);
    grpc_metadata_array_init(&s->md);
}

static void server_stop(struct tls_server *s)
{
    bool shut = false;

    grpc_server_shutdown_and_notify(s->server, s->cq, TAG(TAG_SHUTDOWN));
    grpc_server_cancel_all_calls(s->server);
    while (!shut || s->requested) {
        grpc_event ev = next_event(s);
        if (ev.tag == TAG(TAG_SHUTDOWN))
            shut = true;
        else if (ev.tag == TAG(TAG_REQUEST))
            s->requested = false;
    }
    grpc_server_destroy(s->server);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                      NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
    grpc_call_details_destroy(&s->details);
    grpc_metadata_array_destroy(&s->md);
    grpc_shutdown();
}

static grpc_channel *client_channel(struct tls_server *s, const char *cert,
                                    const char *key)
{
    grpc_arg args[2];
    grpc_channel_args cargs = {.num_args = 2, .args = args};
    grpc_channel_credentials *creds;
    grpc_channel *ch;

    /* A connection (a handshake) of its own for every channel. */
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[0].value.integer = 1;
    args[1].type = GRPC_ARG_STRING;
    args[1].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    args[1].value.string = (char *)"localhost";
    if (!s->ca_pem) {
        creds = grpc_insecure_credentials_create();
    } else if (cert) {
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        creds = grpc_ssl_credentials_create(s->ca_pem, &pair, NULL, NULL);
    } else {
        creds = grpc_ssl_credentials_create(s->ca_pem, NULL, NULL, NULL);
    }
    ch = grpc_channel_create(s->target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    ck_assert_ptr_nonnull(ch);
    return ch;
}

/*
 * Connect with the client certificate (NULL: none), make one call, and
 * return the auth context of its server side (release it with
 * grpc_auth_context_release), or NULL when the handshake failed.
 */
static grpc_auth_context *server_auth_context(struct tls_server *s,
                                              const char *cert, const char *key)
{
    grpc_channel *ch = client_channel(s, cert, key);
    grpc_slice method = grpc_slice_from_static_string("/test.Peer/Call");
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_millis(WAIT_MS, GPR_TIMESPAN));
    grpc_call *cc;
    grpc_op ops[4];
    grpc_metadata_array c_initial, c_trailing;
    grpc_status_code code;
    grpc_slice details = grpc_empty_slice();
    grpc_auth_context *ac = NULL;
    bool client_done = false;
    int cancelled = 0;

    grpc_metadata_array_init(&c_initial);
    grpc_metadata_array_init(&c_trailing);
    if (!s->requested) {
        ck_assert_int_eq(grpc_server_request_call(s->server, &s->call,
                                                  &s->details, &s->md, s->cq,
                                                  s->cq, TAG(TAG_REQUEST)),
                         GRPC_CALL_OK);
        s->requested = true;
    }
    cc = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq,
                                  method, NULL, deadline, NULL);
    ck_assert_ptr_nonnull(cc);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[2].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[2].data.recv_initial_metadata.recv_initial_metadata = &c_initial;
    ops[3].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[3].data.recv_status_on_client.trailing_metadata = &c_trailing;
    ops[3].data.recv_status_on_client.status = &code;
    ops[3].data.recv_status_on_client.status_details = &details;
    ck_assert_int_eq(grpc_call_start_batch(cc, ops, 4, TAG(TAG_CLIENT), NULL),
                     GRPC_CALL_OK);

    while (!client_done) {
        grpc_event ev = next_event(s);
        if (ev.tag == TAG(TAG_CLIENT)) {
            client_done = true;
        } else if (ev.tag == TAG(TAG_REQUEST)) {
            ck_assert(ev.success);
            s->requested = false;
            ac = grpc_call_auth_context(s->call);
            memset(ops, 0, sizeof(ops));
            ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
            ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
            ops[1].data.recv_close_on_server.cancelled = &cancelled;
            ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
            ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
            ck_assert_int_eq(
                grpc_call_start_batch(s->call, ops, 3, TAG(TAG_SERVER), NULL),
                GRPC_CALL_OK);
            while (next_event(s).tag != TAG(TAG_SERVER))
                client_done = true; /* the only other tag */
            grpc_call_unref(s->call);
            s->call = NULL;
        }
    }
    if (ac)
        ck_assert_int_eq(code, GRPC_STATUS_OK);
    grpc_call_unref(cc);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&c_initial);
    grpc_metadata_array_destroy(&c_trailing);
    grpc_call_details_destroy(&s->details);
    grpc_call_details_init(&s->details);
    grpc_metadata_array_destroy(&s->md);
    grpc_metadata_array_init(&s->md);
    grpc_channel_destroy(ch);
    return ac;
}

/* The identity sg_peer_identity gives for one connection with cert. */
static int identity_over_tls(struct tls_server *s, struct pki *p,
                             struct sg_peer_cache *c, const char *cert,
                             struct sg_identity **out, struct sg_error *err)
{
    grpc_auth_context *ac = server_auth_context(s, cert, p->key_pem);
    int ret;

    ck_assert_msg(ac != NULL, "the TLS handshake failed");
    ret = sg_peer_identity(c, ac, out, err);
    grpc_auth_context_release(ac);
    return ret;
}

START_TEST(test_tls_identity_and_cache)
{
    struct pki p;
    struct tls_server s;
    struct spec spec = {.cn = "controller",
                        .sans = {{GEN_URI, SPIFFE}},
                        .eku = "clientAuth",
                        .ku = CLIENT_KU};
    struct sg_peer_cache *c = sg_peer_cache_new(8);
    struct sg_identity *a = NULL, *b = NULL, *u1 = NULL, *u2 = NULL;
    struct sg_error err = SG_ERROR_INIT;
    time_t t0 = time(NULL);
    char *pem;
    grpc_auth_context *ac;

    pki_init(&p);
    pem = pki_client(&p, &spec, t0);
    server_start(&s, &p,
                 GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);

    ac = server_auth_context(&s, pem, p.key_pem);
    ck_assert_ptr_nonnull(ac);
    ck_assert_int_eq(sg_peer_identity(c, ac, &a, &err), 1);
    ck_assert_str_eq(a->subject, SPIFFE);
    ck_assert_int_eq(a->cert_name, SG_CERT_NAME_URI);
    ck_assert_int_eq(a->expires_at, (int64_t)t0 + 3600);
    /* The same certificate again: the cached identity itself. */
    ck_assert_int_eq(sg_peer_identity(c, ac, &b, &err), 1);
    ck_assert_ptr_eq(a, b);
    sg_identity_unref(b);
    b = NULL;
    /* Without a cache every call parses: equal, not the same. */
    ck_assert_int_eq(sg_peer_identity(NULL, ac, &u1, &err), 1);
    ck_assert_int_eq(sg_peer_identity(NULL, ac, &u2, &err), 1);
    ck_assert_ptr_ne(u1, u2);
    ck_assert_ptr_ne(u1, a);
    ck_assert_str_eq(u1->subject, SPIFFE);
    grpc_auth_context_release(ac);

    /* Another connection presenting the same certificate hits too. */
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem, &b, &err), 1);
    ck_assert_ptr_eq(a, b);
    ck_assert(!sg_error_is_set(&err));

    /* The cache holds its own reference: the identity outlives ours. */
    sg_identity_unref(a);
    sg_identity_unref(b);
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem, &a, &err), 1);
    ck_assert_str_eq(a->subject, SPIFFE);
    sg_identity_unref(a);
    sg_identity_unref(u1);
    sg_identity_unref(u2);

    server_stop(&s);
    sg_peer_cache_free(c);
    free(pem);
    pki_free(&p);
}
END_TEST

START_TEST(test_tls_name_sources)
{
    static const struct {
        struct spec spec;
        const char *subject;
        enum sg_cert_name cert_name;
    } cases[] = {
        {{.cn = "ignored",
          .sans = {{GEN_URI, "spiffe://t/ns/a/sa/b"}, {GEN_DNS, "x.example"}},
          .eku = "clientAuth",
          .ku = CLIENT_KU},
         "spiffe://t/ns/a/sa/b",
         SG_CERT_NAME_URI},
        {{.cn = "ignored",
          .sans = {{GEN_DNS, "worker.example"}},
          .eku = "clientAuth",
          .ku = CLIENT_KU},
         "dns:worker.example",
         SG_CERT_NAME_DNS},
        {{.cn = "batch", .eku = "clientAuth", .ku = CLIENT_KU},
         "cn:batch",
         SG_CERT_NAME_CN},
    };
    struct pki p;
    struct tls_server s;
    struct sg_peer_cache *c = sg_peer_cache_new(8);

    pki_init(&p);
    server_start(&s, &p,
                 GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    for (size_t i = 0; i < SG_N_ELEMENTS(cases); i++) {
        char *pem = pki_client(&p, &cases[i].spec, time(NULL));
        struct sg_identity *id = NULL;
        struct sg_error err = SG_ERROR_INIT;
        ck_assert_int_eq(identity_over_tls(&s, &p, c, pem, &id, &err), 1);
        ck_assert_str_eq(id->subject, cases[i].subject);
        ck_assert_int_eq(id->cert_name, cases[i].cert_name);
        sg_identity_unref(id);
        free(pem);
    }
    server_stop(&s);
    sg_peer_cache_free(c);
    pki_free(&p);
}
END_TEST

/*
 * Certificates the handshake lets through and the rules refuse; each
 * refused the same way on a second connection (from the cache).
 */
START_TEST(test_tls_refusals_cached)
{
    static const struct {
        struct spec spec;
        const char *message;
    } cases[] = {
        {{.sans = {{GEN_URI, SPIFFE}, {GEN_URI, "spiffe://t/b"}},
          .eku = "clientAuth",
          .ku = CLIENT_KU},
         "client certificate has more than one URI SAN"},
        {{.eku = "clientAuth", .ku = CLIENT_KU},
         "client certificate has no usable name (no URI SAN, DNS SAN or CN)"},
        {{.cn = "bad\x01", .eku = "clientAuth", .ku = CLIENT_KU},
         "client certificate CN name has a control character"},
        /* OpenSSL's own purpose check takes keyAgreement for a client. */
        {{.sans = {{GEN_URI, SPIFFE}},
          .eku = "clientAuth",
          .ku = "critical,keyAgreement"},
         "client certificate key usage does not include digitalSignature"},
    };
    struct pki p;
    struct tls_server s;
    struct sg_peer_cache *c = sg_peer_cache_new(8);

    pki_init(&p);
    server_start(&s, &p,
                 GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    for (size_t i = 0; i < SG_N_ELEMENTS(cases); i++) {
        char *pem = pki_client(&p, &cases[i].spec, time(NULL));
        for (int round = 0; round < 2; round++) {
            struct sg_identity *id = NULL;
            struct sg_error err = SG_ERROR_INIT;
            ck_assert_int_eq(identity_over_tls(&s, &p, c, pem, &id, &err), -1);
            ck_assert_ptr_null(id);
            ck_assert_int_eq(err.code, SG_ERR_UNAUTHENTICATED);
            ck_assert_str_eq(err.message, cases[i].message);
        }
        free(pem);
    }
    server_stop(&s);
    sg_peer_cache_free(c);
    pki_free(&p);
}
END_TEST

START_TEST(test_tls_no_client_certificate)
{
    struct pki p;
    struct tls_server s;
    struct sg_peer_cache *c = sg_peer_cache_new(8);
    struct sg_identity *id = NULL;
    struct sg_error err = SG_ERROR_INIT;
    grpc_auth_context *ac;

    pki_init(&p);
    /* TLS, server authentication only. */
    server_start(&s, &p, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ac = server_auth_context(&s, NULL, NULL);
    ck_assert_ptr_nonnull(ac);
    ck_assert_int_eq(sg_peer_identity(c, ac, &id, &err), 0);
    ck_assert_ptr_null(id);
    ck_assert(!sg_error_is_set(&err));
    grpc_auth_context_release(ac);
    server_stop(&s);

    /* Plaintext. */
    server_start(&s, NULL, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ac = server_auth_context(&s, NULL, NULL);
    ck_assert_int_eq(sg_peer_identity(c, ac, &id, &err), 0);
    ck_assert_ptr_null(id);
    ck_assert(!sg_error_is_set(&err));
    if (ac)
        grpc_auth_context_release(ac);
    server_stop(&s);

    sg_peer_cache_free(c);
    pki_free(&p);
}
END_TEST

START_TEST(test_tls_cache_is_bounded)
{
    struct pki p;
    struct tls_server s;
    struct sg_peer_cache *c = sg_peer_cache_new(2);
    char *pem[3];
    struct sg_identity *first[3] = {NULL, NULL, NULL};
    struct sg_identity *id = NULL;
    struct sg_error err = SG_ERROR_INIT;

    pki_init(&p);
    server_start(&s, &p,
                 GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    for (int i = 0; i < 3; i++) {
        char dns[32];
        struct spec spec = {.sans = {{GEN_DNS, dns}}, .eku = "clientAuth"};
        snprintf(dns, sizeof(dns), "c%d.example", i);
        pem[i] = pki_client(&p, &spec, time(NULL));
    }
    /* 0 and 1 fill the cache; 0 is used again, so 1 is the oldest. */
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem[0], &first[0], &err), 1);
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem[1], &first[1], &err), 1);
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem[0], &id, &err), 1);
    ck_assert_ptr_eq(id, first[0]);
    sg_identity_unref(id);
    /* 2 evicts 1, the least recently used. */
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem[2], &first[2], &err), 1);
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem[0], &id, &err), 1);
    ck_assert_ptr_eq(id, first[0]);
    sg_identity_unref(id);
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem[1], &id, &err), 1);
    ck_assert_ptr_ne(id, first[1]);
    ck_assert_str_eq(id->subject, "dns:c1.example");
    sg_identity_unref(id);
    /* And putting 1 back evicted 2 (0 was newer). */
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem[2], &id, &err), 1);
    ck_assert_ptr_ne(id, first[2]);
    sg_identity_unref(id);
    ck_assert(!sg_error_is_set(&err));

    server_stop(&s);
    for (int i = 0; i < 3; i++) {
        sg_identity_unref(first[i]);
        free(pem[i]);
    }
    sg_peer_cache_free(c);
    pki_free(&p);
}
END_TEST

/* Sleep until the wall clock is past t (whole seconds, as certificates). */
static void wait_past(time_t t)
{
    while (time(NULL) <= t)
        usleep(50 * 1000);
}

/*
 * A verdict that time changes is made again: a cached identity whose
 * certificate has expired is not returned, and a not-yet-valid certificate
 * is accepted once it becomes valid. The server does not verify client
 * certificates here, so the handshake lets both through.
 */
START_TEST(test_tls_cache_honours_validity)
{
    struct pki p;
    struct tls_server s;
    struct sg_peer_cache *c = sg_peer_cache_new(8);
    time_t t0 = time(NULL);
    struct spec soon_expired = {
        .sans = {{GEN_URI, SPIFFE}}, .not_before = -60, .not_after = 3};
    struct spec soon_valid = {.sans = {{GEN_DNS, "later.example"}},
                              .not_before = 3,
                              .not_after = 3600};
    char *pem_expiring, *pem_later;
    struct sg_identity *id = NULL;
    struct sg_error err = SG_ERROR_INIT;

    pki_init(&p);
    pem_expiring = pki_client(&p, &soon_expired, t0);
    pem_later = pki_client(&p, &soon_valid, t0);
    server_start(&s, &p, GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);

    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem_expiring, &id, &err), 1);
    ck_assert_int_eq(id->expires_at, (int64_t)t0 + 3);
    sg_identity_unref(id);
    id = NULL;
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem_later, &id, &err), -1);
    ck_assert_str_eq(err.message, "client certificate is not yet valid");
    sg_error_reset(&err);

    wait_past(t0 + 3);
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem_expiring, &id, &err), -1);
    ck_assert_ptr_null(id);
    ck_assert_int_eq(err.code, SG_ERR_UNAUTHENTICATED);
    ck_assert_str_eq(err.message, "client certificate has expired");
    sg_error_reset(&err);
    ck_assert_int_eq(identity_over_tls(&s, &p, c, pem_later, &id, &err), 1);
    ck_assert_str_eq(id->subject, "dns:later.example");
    sg_identity_unref(id);

    server_stop(&s);
    sg_peer_cache_free(c);
    free(pem_expiring);
    free(pem_later);
    pki_free(&p);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("peer");
    TCase *rules = tcase_create("rules");
    TCase *tls = tcase_create("tls");

    tcase_add_loop_test(rules, test_accepted, 0, (int)SG_N_ELEMENTS(accepted));
    tcase_add_loop_test(rules, test_refused, 0, (int)SG_N_ELEMENTS(refused));
    tcase_add_test(rules, test_pem_input);
    tcase_add_test(rules, test_cache_new_free);
    suite_add_tcase(s, rules);

    tcase_set_timeout(tls, 120);
    tcase_add_test(tls, test_tls_identity_and_cache);
    tcase_add_test(tls, test_tls_name_sources);
    tcase_add_test(tls, test_tls_refusals_cached);
    tcase_add_test(tls, test_tls_no_client_certificate);
    tcase_add_test(tls, test_tls_cache_is_bounded);
    tcase_add_test(tls, test_tls_cache_honours_validity);
    suite_add_tcase(s, tls);
    return s;
}

SG_TEST_MAIN(make_suite)
