/*
 * main.c: sgctl entry point: global options, the command table, help.
 */
#include "internal.h"

#include "sgctl.h"

#include <ctype.h>
#include <grpc/grpc.h>
#include <stdio.h>
#include <stdlib.h>

static int cmd_help(struct sgctl_ctx *ctx, int argc, char **argv);

/*
 * The command table. A new command (e.g. "sandbox" with create/get/list/
 * delete, "events" with watch) is one entry here plus its run function.
 */
static const struct sgctl_command commands[] = {
    {
        .name = "health",
        .synopsis = "[SERVICE] [--watch]",
        .summary = "check the health of the server or of one service",
        .help = "Calls grpc.health.v1.Health/Check for SERVICE (default: the\n"
                "whole server) and prints SERVING, NOT_SERVING, UNKNOWN or\n"
                "SERVICE_UNKNOWN. Exits 0 only for SERVING, 1 otherwise.\n"
                "\n"
                "  --watch   call Health/Watch instead and print every status\n"
                "            change until the stream ends (or Ctrl-C); no\n"
                "            deadline unless --timeout is given. The exit code\n"
                "            follows the last status seen.\n",
        .run = sgctl_cmd_health,
    },
    {
        .name = "version",
        .synopsis = "",
        .summary = "print the client and the server version",
        .help = "Prints this client's version, then the server's, read from\n"
                "the 'sandgate-version' initial metadata of a Health/Check\n"
                "reply. Exits 1 if the server sent no version.\n",
        .run = sgctl_cmd_version,
    },
    {
        .name = "help",
        .synopsis = "[COMMAND]",
        .summary = "show help for sgctl or for one command",
        .help = NULL,
        .run = cmd_help,
    },
};

const struct sgctl_command *sgctl_command_find(const char *name)
{
    for (size_t i = 0; i < SG_N_ELEMENTS(commands); i++) {
        if (STREQ(commands[i].name, name))
            return &commands[i];
    }
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: sgctl [OPTIONS] COMMAND [ARGS...]\n"
            "\n"
            "Command-line client for the sandgate gateway.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < SG_N_ELEMENTS(commands); i++) {
        fprintf(out, "  %-9s %-22s %s\n", commands[i].name,
                commands[i].synopsis, commands[i].summary);
    }
    fprintf(out,
            "\n"
            "Options (anywhere on the command line):\n" TOOL_CONN_OPTS_HELP
            "  -h, --help           show this help (or the command's)\n"
            "\n"
            "Environment:\n"
            "  SGCTL_TOKEN          bearer token, unless --token, --token-file\n"
            "                       or --data-dir is given\n"
            "\n"
            "Exit codes:\n"
            "  0      success (health: SERVING)\n"
            "  1      negative answer (health: not SERVING; version: none)\n"
            "  2      usage error\n"
            "  3      local error (unreadable file, bad token file, bad "
            "PEM,\n"
            "         out of memory)\n"
            "  10+N   the call failed with gRPC status N, e.g. 14 = "
            "DEADLINE_EXCEEDED,\n"
            "         24 = UNAVAILABLE (server down, TLS failure), 26 = "
            "UNAUTHENTICATED\n"
            "  130    interrupted (Ctrl-C)\n");
}

void sgctl_command_help(const struct sgctl_command *cmd)
{
    /* The summary is written for the command list: capitalize it here. */
    printf("Usage: sgctl [OPTIONS] %s%s%s\n\n%c%s.\n", cmd->name,
           *cmd->synopsis != '\0' ? " " : "", cmd->synopsis,
           toupper((unsigned char)cmd->summary[0]), cmd->summary + 1);
    if (cmd->help != NULL)
        printf("\n%s", cmd->help);
    printf("\nRun 'sgctl --help' for the connection options and exit "
           "codes.\n");
}

static int cmd_help(struct sgctl_ctx *ctx, int argc, char **argv)
{
    const struct sgctl_command *cmd;

    (void)ctx;
    if (argc == 0) {
        usage(stdout);
        return TOOL_EXIT_OK;
    }
    cmd = sgctl_command_find(argv[0]);
    if (cmd == NULL) {
        tool_err("unknown command '%s'", argv[0]);
        return TOOL_EXIT_USAGE;
    }
    sgctl_command_help(cmd);
    return TOOL_EXIT_OK;
}

int main(int argc, char **argv)
{
    struct sgctl_ctx ctx;
    const struct sgctl_command *cmd = NULL;
    char **rest = NULL;
    int n_rest = 0;
    bool want_help = false;
    bool only_args = false;
    bool grpc_up = false;
    int ret = TOOL_EXIT_USAGE;
    int r;

    tool_progname = "sgctl";
    memset(&ctx, 0, sizeof(ctx));
    tool_conn_opts_init(&ctx.conn);

    /*
     * Global options may appear before or after the command; everything
     * else (the command, its arguments and its own options) is kept in
     * order for the command. After "--" nothing is interpreted here.
     */
    rest = calloc((size_t)argc + 1, sizeof(*rest));
    if (rest == NULL) {
        tool_err("out of memory");
        ret = TOOL_EXIT_LOCAL;
        goto cleanup;
    }
    for (int i = 1; i < argc; i++) {
        if (only_args) {
            rest[n_rest++] = argv[i];
            continue;
        }
        if (STREQ(argv[i], "--")) {
            only_args = true;
            rest[n_rest++] = argv[i];
            continue;
        }
        if (STREQ(argv[i], "-h") || STREQ(argv[i], "--help")) {
            want_help = true;
            continue;
        }
        r = tool_conn_opts_parse(&ctx.conn, argc, argv, &i);
        if (r < 0)
            goto cleanup;
        if (r == 0)
            rest[n_rest++] = argv[i];
    }

    if (n_rest == 0 || STREQ(rest[0], "--")) {
        if (want_help) {
            usage(stdout);
            ret = TOOL_EXIT_OK;
        } else {
            usage(stderr);
        }
        goto cleanup;
    }
    cmd = sgctl_command_find(rest[0]);
    if (cmd == NULL) {
        tool_err("unknown command '%s' (see 'sgctl --help')", rest[0]);
        goto cleanup;
    }
    if (want_help) {
        sgctl_command_help(cmd);
        ret = TOOL_EXIT_OK;
        goto cleanup;
    }
    r = tool_conn_opts_finish(&ctx.conn);
    if (r < 0) {
        ret = r == -2 ? TOOL_EXIT_LOCAL : TOOL_EXIT_USAGE;
        goto cleanup;
    }

    tool_grpc_logging(ctx.conn.verbose);
    grpc_init();
    grpc_up = true;
    sgctl_signals_init();
    ret = cmd->run(&ctx, n_rest - 1, rest + 1);

 cleanup:
    sgctl_ctx_clear(&ctx);
    tool_conn_opts_clear(&ctx.conn);
    if (grpc_up)
        grpc_shutdown();
    free(rest);
    return ret;
}
