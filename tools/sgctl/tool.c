/*
 * tool.c: helpers shared by sgctl and sgbench (see tool.h).
 */
#include "internal.h"

#include "tool.h"

#include <errno.h>
#include <fcntl.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/log.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tool_progname = "sgtool";

/* PEM files are small; refuse anything that is clearly not one. */
#define TOOL_PEM_MAX (1024 * 1024)

void tool_err(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "%s: ", tool_progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void tool_conn_opts_init(struct tool_conn_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->addr = TOOL_DEFAULT_ADDR;
    o->timeout_s = TOOL_DEFAULT_TIMEOUT_S;
}

int tool_opt_value(int argc, char **argv, int *i, const char *name,
                   const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        tool_err("option %s needs a value", name);
        return -1;
    }
    *i += 1;
    *value = argv[*i];
    return 1;
}

int tool_parse_long(const char *opt, const char *s, long min, long max,
                    long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        tool_err("%s: '%s' is not a whole number in [%ld, %ld]", opt, s, min,
                 max);
        return -1;
    }
    *out = v;
    return 0;
}

int tool_parse_double(const char *opt, const char *s, double min, double max,
                      double *out)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min ||
        v > max) {
        tool_err("%s: '%s' is not a number in [%g, %g]", opt, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int tool_conn_opts_parse(struct tool_conn_opts *o, int argc, char **argv,
                         int *i)
{
    const char *arg = argv[*i];
    const char *val = NULL;
    int r;

    if (STREQ(arg, "--tls")) {
        o->tls = true;
        return 1;
    }
    if (STREQ(arg, "-v") || STREQ(arg, "--verbose")) {
        o->verbose = true;
        return 1;
    }

    r = tool_opt_value(argc, argv, i, "--addr", &val);
    if (r != 0) {
        if (r > 0 && *val == '\0') {
            tool_err("--addr: empty address");
            return -1;
        }
        o->addr = val;
        return r;
    }
    r = tool_opt_value(argc, argv, i, "--cacert", &val);
    if (r != 0) {
        o->cacert_file = val;
        return r;
    }
    r = tool_opt_value(argc, argv, i, "--cert", &val);
    if (r != 0) {
        o->cert_file = val;
        return r;
    }
    r = tool_opt_value(argc, argv, i, "--key", &val);
    if (r != 0) {
        o->key_file = val;
        return r;
    }
    r = tool_opt_value(argc, argv, i, "--server-name", &val);
    if (r != 0) {
        o->server_name = val;
        return r;
    }
    r = tool_opt_value(argc, argv, i, "--token", &val);
    if (r != 0) {
        o->token = val;
        return r;
    }
    r = tool_opt_value(argc, argv, i, "--token-file", &val);
    if (r != 0) {
        if (r > 0 && *val == '\0') {
            tool_err("--token-file: empty path");
            return -1;
        }
        o->token_file = val;
        return r;
    }
    r = tool_opt_value(argc, argv, i, "--data-dir", &val);
    if (r != 0) {
        if (r > 0 && *val == '\0') {
            tool_err("--data-dir: empty path");
            return -1;
        }
        o->data_dir = val;
        return r;
    }
    r = tool_opt_value(argc, argv, i, "--timeout", &val);
    if (r != 0) {
        if (r < 0)
            return -1;
        /* A day is plenty; it also keeps the ms conversion in range. */
        if (tool_parse_double("--timeout", val, 0.001, 86400.0,
                              &o->timeout_s) < 0)
            return -1;
        o->timeout_set = true;
        return 1;
    }
    return 0;
}

/*
 * Read the token in path into o->token_buf. Returns 1, 0 if the file does
 * not exist and optional is set, or -1 (printed). Nothing printed here
 * quotes the file's content: it may be a token with one byte wrong.
 */
static int read_token_file(struct tool_conn_opts *o, const char *path,
                           bool optional)
{
    /* Room for the longest token, "\r\n" and one byte to detect more. */
    char buf[TOOL_TOKEN_MAX + 3];
    char eb[128];
    struct stat st;
    size_t n = 0;
    int ret = -1;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (optional && errno == ENOENT)
            return 0;
        tool_err("cannot open token file '%s': %s", path,
                 strerror_r(errno, eb, sizeof(eb)));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        tool_err("token file '%s' is not a regular file", path);
        goto cleanup;
    }
    while (n < sizeof(buf)) {
        ssize_t got = read(fd, buf + n, sizeof(buf) - n);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            tool_err("cannot read token file '%s': %s", path,
                     strerror_r(errno, eb, sizeof(eb)));
            goto cleanup;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    /* One trailing newline (or CRLF) is how editors end a file. */
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
    }
    if (n > TOOL_TOKEN_MAX) {
        tool_err("token file '%s' is larger than %d bytes", path,
                 TOOL_TOKEN_MAX);
        goto cleanup;
    }
    if (n == 0) {
        tool_err("token file '%s' is empty", path);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        /* A token is one word of visible ASCII (what a bearer header can
           carry); a space, a second line or a control byte is a mistake. */
        if (buf[i] <= ' ' || buf[i] > '~') {
            tool_err("token file '%s' holds a character that cannot be in a "
                     "token at byte %zu (only visible ASCII, then at most "
                     "one newline)", path, i);
            goto cleanup;
        }
    }
    memcpy(o->token_buf, buf, n);
    o->token_buf[n] = '\0';
    o->token = o->token_buf;
    ret = 1;

 cleanup:
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    return ret;
}

/* The token from the options, the environment or a file: 0, -1 or -2. */
static int find_token(struct tool_conn_opts *o)
{
    char path[4096];
    const char *env;
    int n;

    if ((o->token != NULL) + (o->token_file != NULL) +
        (o->data_dir != NULL) > 1) {
        tool_err("give only one of --token, --token-file and --data-dir");
        return -1;
    }
    if (o->token != NULL)
        return 0;
    if (o->token_file != NULL)
        return read_token_file(o, o->token_file, false) < 0 ? -2 : 0;
    if (o->data_dir != NULL) {
        n = snprintf(path, sizeof(path), "%s/%s", o->data_dir,
                     TOOL_ADMIN_TOKEN_NAME);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            tool_err("--data-dir: path too long");
            return -1;
        }
        return read_token_file(o, path, false) < 0 ? -2 : 0;
    }
    env = getenv("SGCTL_TOKEN");
    if (env != NULL && *env != '\0') {
        o->token = env;
        return 0;
    }
    /* The gateway's own default data directory, as a local admin would
       run both from the same place. */
    snprintf(path, sizeof(path), "%s/%s", SG_DEFAULT_DATA_DIR,
             TOOL_ADMIN_TOKEN_NAME);
    return read_token_file(o, path, true) < 0 ? -2 : 0;
}

void tool_conn_opts_clear(struct tool_conn_opts *o)
{
    if (o == NULL)
        return;
    if (o->token == o->token_buf)
        o->token = NULL;
    explicit_bzero(o->token_buf, sizeof(o->token_buf));
}

int tool_conn_opts_finish(struct tool_conn_opts *o)
{
    int r = find_token(o);

    if (r < 0)
        return r;
    if (o->token != NULL) {
        /* Metadata values must be printable ASCII without CR/LF. */
        for (const char *p = o->token; *p != '\0'; p++) {
            if (*p < 0x20 || *p > 0x7e) {
                tool_err("the token contains a character that is not "
                         "printable ASCII");
                return -1;
            }
        }
    }
    if ((o->cert_file == NULL) != (o->key_file == NULL)) {
        tool_err("--cert and --key must be given together");
        return -1;
    }
    if (o->cacert_file != NULL || o->cert_file != NULL)
        o->tls = true;
    if (o->server_name != NULL && !o->tls) {
        tool_err("--server-name needs TLS (--tls or --cacert)");
        return -1;
    }
    return 0;
}

int tool_read_file(const char *path, size_t max, char **out, size_t *len)
{
    FILE *f = NULL;
    char *data = NULL;
    size_t cap = 4096;
    size_t n = 0;
    int ret = -1;

    f = fopen(path, "rb");
    if (f == NULL) {
        char eb[128];

        /* GNU strerror_r: thread-safe, returns the message pointer. */
        tool_err("cannot open '%s': %s", path,
                 strerror_r(errno, eb, sizeof(eb)));
        goto cleanup;
    }
    data = malloc(cap);
    if (data == NULL) {
        tool_err("out of memory reading '%s'", path);
        goto cleanup;
    }
    for (;;) {
        size_t got;

        if (n + 1 >= cap) {
            char *bigger;

            if (cap > max) {
                tool_err("'%s' is larger than %zu bytes", path, max);
                goto cleanup;
            }
            bigger = realloc(data, cap * 2);
            if (bigger == NULL) {
                tool_err("out of memory reading '%s'", path);
                goto cleanup;
            }
            data = bigger;
            cap *= 2;
        }
        got = fread(data + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        tool_err("cannot read '%s'", path);
        goto cleanup;
    }
    if (n > max) {
        tool_err("'%s' is larger than %zu bytes", path, max);
        goto cleanup;
    }
    data[n] = '\0';
    *out = data;
    *len = n;
    data = NULL;
    ret = 0;

 cleanup:
    free(data);
    if (f != NULL)
        fclose(f);
    return ret;
}

grpc_channel *tool_channel_new(const struct tool_conn_opts *o,
                               const grpc_arg *extra, size_t n_extra)
{
    grpc_channel_credentials *creds = NULL;
    grpc_channel *ch = NULL;
    grpc_arg *args = NULL;
    size_t n_args = 0;
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;
    size_t len = 0;

    args = calloc(n_extra + 1, sizeof(*args));
    if (args == NULL) {
        tool_err("out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n_extra; i++)
        args[n_args++] = extra[i];

    if (!o->tls) {
        creds = grpc_insecure_credentials_create();
    } else {
        grpc_ssl_pem_key_cert_pair kp = {NULL, NULL};

        if (o->cacert_file != NULL &&
            tool_read_file(o->cacert_file, TOOL_PEM_MAX, &ca, &len) < 0)
            goto cleanup;
        if (o->cert_file != NULL) {
            if (tool_read_file(o->cert_file, TOOL_PEM_MAX, &cert, &len) < 0 ||
                tool_read_file(o->key_file, TOOL_PEM_MAX, &key, &len) < 0)
                goto cleanup;
            kp.cert_chain = cert;
            kp.private_key = key;
        }
        /* The credentials copy the PEM strings (they are freed below). */
        creds = grpc_ssl_credentials_create(ca, cert != NULL ? &kp : NULL,
                                            NULL, NULL);
        if (o->server_name != NULL) {
            grpc_arg *a = &args[n_args++];

            a->type = GRPC_ARG_STRING;
            a->key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
            a->value.string = (char *)o->server_name;
        }
    }
    if (creds == NULL) {
        tool_err("cannot create channel credentials (bad PEM data?)");
        goto cleanup;
    }

    {
        grpc_channel_args ca_args = {.num_args = n_args, .args = args};

        ch = grpc_channel_create(o->addr, creds, &ca_args);
    }
    if (ch == NULL)
        tool_err("cannot create a channel to '%s'", o->addr);

 cleanup:
    if (creds != NULL)
        grpc_channel_credentials_release(creds);
    if (key != NULL) {
        /* Do not leave key material lying around in freed memory. */
        memset(key, 0, strlen(key));
        free(key);
    }
    free(cert);
    free(ca);
    free(args);
    return ch;
}

int tool_auth_metadata(const struct tool_conn_opts *o, grpc_metadata *md)
{
    static const char prefix[] = "Bearer ";
    size_t tlen;
    grpc_slice v;

    if (o->token == NULL)
        return 0;
    tlen = strlen(o->token);
    v = grpc_slice_malloc(sizeof(prefix) - 1 + tlen);
    memcpy(GRPC_SLICE_START_PTR(v), prefix, sizeof(prefix) - 1);
    memcpy(GRPC_SLICE_START_PTR(v) + sizeof(prefix) - 1, o->token, tlen);
    memset(md, 0, sizeof(*md));
    md->key = grpc_slice_from_static_string("authorization");
    md->value = v;
    return 1;
}

void tool_metadata_clear(grpc_metadata *md)
{
    grpc_slice_unref(md->key);
    grpc_slice_unref(md->value);
    memset(md, 0, sizeof(*md));
}

const char *tool_status_name(grpc_status_code code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };

    if ((int)code < 0 || (size_t)code >= SG_N_ELEMENTS(names))
        return "INVALID_CODE";
    return names[code];
}

char *tool_slice_dup(grpc_slice s)
{
    size_t n = GRPC_SLICE_LENGTH(s);
    char *p = malloc(n + 1);

    if (p == NULL)
        return NULL;
    memcpy(p, GRPC_SLICE_START_PTR(s), n);
    p[n] = '\0';
    return p;
}

void tool_sanitize(char *s)
{
    for (char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    }
}

static void log_quiet(gpr_log_func_args *args)
{
    (void)args;
}

void tool_grpc_logging(bool verbose)
{
    if (verbose) {
        gpr_set_log_verbosity(GPR_LOG_SEVERITY_INFO);
        return;
    }
    gpr_set_log_function(log_quiet);
}
