/*
 * tool.h: helpers shared by the command-line clients (sgctl, sgbench).
 *
 * Connection options (address, TLS/mTLS files, target-name override, bearer
 * token), channel creation, option-value parsing, file reading and gRPC
 * status names. Both tools link this file; it depends on nothing but the
 * gRPC C core and libc.
 *
 * Errors are printed to stderr prefixed with tool_progname, once, where they
 * happen; functions then return -1 or NULL.
 *
 * THREAD SAFETY: option parsing and channel creation run on the main thread
 * before any worker starts; tool_status_name() may be called from any thread.
 */
#ifndef SG_TOOL_H
#define SG_TOOL_H

#include "internal.h"

#include <grpc/grpc.h>
#include <grpc/status.h>

/* Exit codes shared by the tools (documented in each tool's --help). */
enum tool_exit {
    TOOL_EXIT_OK = 0,
    TOOL_EXIT_FAILURE = 1,   /* the answer was negative (e.g. NOT_SERVING) */
    TOOL_EXIT_USAGE = 2,     /* bad command line */
    TOOL_EXIT_LOCAL = 3,     /* local error: file, memory, gRPC setup */
    TOOL_EXIT_RPC_BASE = 10, /* RPC failed: 10 + gRPC status code (11..26) */
    TOOL_EXIT_INTERRUPTED = 130,
};

/* Program name used as the prefix of error messages; set by main(). */
extern const char *tool_progname;

/* Longest token read from a file (a large JWT still fits). */
#define TOOL_TOKEN_MAX 8192

/* The file the gateway writes its admin token to, in its data directory. */
#define TOOL_ADMIN_TOKEN_NAME "admin.token"

/*
 * Connection options. Strings are borrowed (argv or environment) and must
 * outlive the options.
 */
struct tool_conn_opts {
    const char *addr;        /* gRPC target: HOST:PORT or unix:PATH */
    bool tls;                /* set by --tls or implied by any TLS file */
    const char *cacert_file; /* PEM roots; NULL: gRPC's default roots */
    const char *cert_file;   /* client certificate (mTLS) */
    const char *key_file;    /* client key (mTLS) */
    const char *server_name; /* name checked against the server cert */
    const char *token;       /* bearer token; never printed */
    const char *token_file;  /* --token-file: read the token from it */
    const char *data_dir;    /* --data-dir: read DIR/admin.token */
    double timeout_s;        /* per-call deadline in seconds */
    bool timeout_set;        /* --timeout was given */
    bool verbose;            /* let gRPC core log lines through */
    /* A token read from a file (token then points here); inline, so that
       nothing needs freeing; tool_conn_opts_clear() wipes it. */
    char token_buf[TOOL_TOKEN_MAX + 1];
};

/* The daemon's default listener (meson option default_listen). */
#define TOOL_DEFAULT_ADDR SG_DEFAULT_LISTEN
#define TOOL_DEFAULT_TIMEOUT_S 10.0

/* Help text for the options tool_conn_opts_parse() understands. */
#define TOOL_CONN_OPTS_HELP                                                    \
    "  --addr ADDR          server address, HOST:PORT or unix:PATH\n"          \
    "                       (default " TOOL_DEFAULT_ADDR ")\n"                 \
    "  --tls                use TLS (implied by --cacert/--cert/--key)\n"      \
    "  --cacert FILE        PEM CA bundle to verify the server with\n"         \
    "  --cert FILE          client certificate (PEM) for mTLS; needs --key\n"  \
    "  --key FILE           client private key (PEM) for mTLS; needs --cert\n" \
    "  --server-name NAME   name to check the server certificate against\n"    \
    "  --timeout SECONDS    per-call deadline (default 10)\n"                  \
    "  --token TOKEN        bearer token sent as 'authorization: Bearer ...'\n" \
    "                       (command lines are visible to other users:\n"      \
    "                       prefer --token-file or $SGCTL_TOKEN)\n"            \
    "  --token-file FILE    read the token from FILE (one trailing newline\n"  \
    "                       is dropped)\n"                                     \
    "  --data-dir DIR       read the token from DIR/" TOOL_ADMIN_TOKEN_NAME    \
    ", the file the\n"                                                         \
    "                       gateway writes its admin token to on first start\n" \
    "                       (at most one of --token, --token-file and\n"       \
    "                       --data-dir; with none: $SGCTL_TOKEN, else\n"       \
    "                       " SG_DEFAULT_DATA_DIR "/" TOOL_ADMIN_TOKEN_NAME    \
    " if that file exists)\n"                                                  \
    "  -v, --verbose        show gRPC core log lines\n"

/* Defaults: TOOL_DEFAULT_ADDR, plaintext, TOOL_DEFAULT_TIMEOUT_S. */
void tool_conn_opts_init(struct tool_conn_opts *o);

/*
 * Consume the connection option at argv[*i], if it is one ("--name VALUE" or
 * "--name=VALUE"), advancing *i past its value. Returns 1 if consumed, 0 if
 * argv[*i] is not a connection option, -1 on a bad value (printed).
 */
int tool_conn_opts_parse(struct tool_conn_opts *o, int argc, char **argv,
                         int *i);

/*
 * Complete the options after parsing: find the token and check
 * combinations (--cert without --key, ...). The token comes from exactly
 * one of --token, --token-file, --data-dir (giving two is an error); else
 * from SGCTL_TOKEN; else from SG_DEFAULT_DATA_DIR/admin.token relative to
 * the current directory when that file exists. A token file must hold one
 * token of visible ASCII, optionally followed by one newline; messages
 * about it name the file, never its content.
 * Returns 0, -1 (bad options) or -2 (a token file cannot be used), the
 * error printed.
 */
int tool_conn_opts_finish(struct tool_conn_opts *o);

/* Wipe a token read from a file, once the options are no longer needed.
   NULL-safe. */
void tool_conn_opts_clear(struct tool_conn_opts *o);

/*
 * Create a channel for o plus the extra channel args. Returns a channel the
 * caller destroys with grpc_channel_destroy(), or NULL (printed). Needs
 * grpc_init().
 */
grpc_channel *tool_channel_new(const struct tool_conn_opts *o,
                               const grpc_arg *extra, size_t n_extra);

/*
 * Fill md with the authorization metadata for o->token. Returns 1 if md was
 * filled (release both slices with tool_metadata_clear()), 0 if there is no
 * token.
 */
int tool_auth_metadata(const struct tool_conn_opts *o, grpc_metadata *md);
void tool_metadata_clear(grpc_metadata *md);

/*
 * Match option name at argv[*i] in the forms "--name VALUE" and
 * "--name=VALUE". Returns 1 and sets *value (borrowed from argv) and advances
 * *i past a separate value, 0 if argv[*i] is another option, -1 if the value
 * is missing (printed).
 */
int tool_opt_value(int argc, char **argv, int *i, const char *name,
                   const char **value);

/* Strict number parsing (whole string, range-checked). 0 or -1 (printed). */
int tool_parse_long(const char *opt, const char *s, long min, long max,
                    long *out);
int tool_parse_double(const char *opt, const char *s, double min, double max,
                      double *out);

/*
 * Read a whole file (at most max bytes) into a malloc'd buffer, NUL-terminated
 * (the NUL is not counted in *len). Returns 0, or -1 (printed).
 */
int tool_read_file(const char *path, size_t max, char **out, size_t *len);

/* Canonical name of a status code ("UNAVAILABLE"); "INVALID_CODE" if unknown. */
const char *tool_status_name(grpc_status_code code);

/*
 * Copy a slice into a malloc'd NUL-terminated string, or NULL when out of
 * memory.
 */
char *tool_slice_dup(grpc_slice s);

/*
 * Route gRPC core logging: with verbose, INFO and above go to stderr; without,
 * everything is dropped, because the RPC status already carries the cause
 * (e.g. a failed TLS handshake) and the tools print that.
 */
void tool_grpc_logging(bool verbose);

/*
 * Replace every byte that is not printable ASCII with '?', in place: for
 * text that came from the network before it goes to a terminal.
 */
void tool_sanitize(char *s);

/* Print "<progname>: <message>\n" to stderr. */
void tool_err(const char *fmt, ...) SG_PRINTF(1, 2);

#endif /* SG_TOOL_H */
