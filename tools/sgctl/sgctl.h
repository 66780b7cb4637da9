/*
 * sgctl.h: the sgctl command-line client: command table and call helpers.
 *
 * A command is one entry of the table in main.c: a name, a synopsis, a help
 * text and a run function. main() parses the global (connection) options
 * wherever they appear, then hands the remaining words after the command name
 * to the command, which parses its own options and returns the process exit
 * code (enum tool_exit). Commands with sub-commands ("sandbox create") look
 * at their first word themselves.
 *
 * Calls are blocking: one call at a time on one completion queue, driven on
 * the main thread. Ctrl-C (SIGINT/SIGTERM) cancels the call in flight.
 *
 * THREAD SAFETY: single-threaded; everything here runs on the main thread.
 */
#ifndef SG_SGCTL_H
#define SG_SGCTL_H

#include "internal.h"

#include "tool.h"

#include <grpc/grpc.h>

struct sgctl_ctx {
    struct tool_conn_opts conn;
    grpc_channel *channel;     /* owned; created on first use */
    grpc_completion_queue *cq; /* owned; created with the channel */
};

/* The outcome of a call that reached the point of having a status. */
struct sgctl_result {
    grpc_status_code status;
    char *details;                  /* owned; status message, never NULL */
    grpc_metadata_array initial_md; /* owned; the server's initial metadata */
    grpc_metadata_array trailing_md;
    unsigned char *msg; /* owned; unary response bytes (NULL if none) */
    size_t msg_len;
    bool have_msg;
    bool interrupted; /* cancelled because of SIGINT/SIGTERM */
};

struct sgctl_command {
    const char *name;
    const char *synopsis; /* arguments, e.g. "[SERVICE] [--watch]" */
    const char *summary;  /* one line for the command list */
    const char *help;     /* details for "sgctl help COMMAND" (may be NULL) */
    int (*run)(struct sgctl_ctx *ctx, int argc, char **argv);
};

/* Install the SIGINT/SIGTERM handlers that interrupt the call in flight. */
void sgctl_signals_init(void);
bool sgctl_interrupted(void);

/*
 * Make a unary call: one batch of six ops, deadline conn.timeout_s.
 * Returns 0 when the call finished (whatever its status; res is filled and
 * must be released with sgctl_result_free()), -1 on a local error (printed;
 * res is still valid to free).
 */
int sgctl_unary(struct sgctl_ctx *ctx, const char *method,
                const void *req, size_t req_len, struct sgctl_result *res);

/*
 * Called for each message of a server stream, with the bytes borrowed for the
 * call. Return 0 to keep receiving, -1 to cancel the stream.
 */
typedef int (*sgctl_msg_fn)(void *user, const unsigned char *data,
                            size_t len);

/*
 * Make a server-streaming call and deliver each message to on_msg until the
 * stream ends. The deadline is conn.timeout_s only if --timeout was given.
 * Returns like sgctl_unary() (res->msg stays NULL).
 */
int sgctl_server_stream(struct sgctl_ctx *ctx, const char *method,
                        const void *req, size_t req_len,
                        sgctl_msg_fn on_msg, void *user,
                        struct sgctl_result *res);

/* Initialize res (before any call), and release it. NULL-safe free. */
void sgctl_result_init(struct sgctl_result *res);
void sgctl_result_free(struct sgctl_result *res);

/*
 * Value of the first initial-metadata entry named key (lower case), as a
 * malloc'd string the caller frees, or NULL if absent (or out of memory).
 */
char *sgctl_result_md_get(const struct sgctl_result *res, const char *key);

/*
 * Print "sgctl: WHAT: CODE_NAME (n): details" for a failed call and return
 * the exit code for it (TOOL_EXIT_RPC_BASE + code, or TOOL_EXIT_INTERRUPTED).
 */
int sgctl_report_status(const struct sgctl_result *res, const char *what);

/* Release the channel and completion queue. NULL-safe. */
void sgctl_ctx_clear(struct sgctl_ctx *ctx);

/* Commands (cmd_health.c). */
int sgctl_cmd_health(struct sgctl_ctx *ctx, int argc, char **argv);
int sgctl_cmd_version(struct sgctl_ctx *ctx, int argc, char **argv);

/* Help for a command, printed to stdout (main.c). */
void sgctl_command_help(const struct sgctl_command *cmd);
const struct sgctl_command *sgctl_command_find(const char *name);

#endif /* SG_SGCTL_H */
