/*
 * cmd_health.c: "sgctl health" and "sgctl version".
 *
 * Both use grpc.health.v1.Health: Check (and Watch for --watch); the server
 * version comes from the "sandgate-version" initial metadata the gateway
 * sends on Check responses.
 */
#include "internal.h"

#include "sgctl.h"

#include "grpc_health_v1_health.pb-c.h"

#include <grpc/grpc.h>
#include <stdio.h>
#include <stdlib.h>

#define HEALTH_CHECK_METHOD "/grpc.health.v1.Health/Check"
#define HEALTH_WATCH_METHOD "/grpc.health.v1.Health/Watch"
#define SERVER_VERSION_KEY "sandgate-version"

static const char *serving_status_name(int status)
{
    switch (status) {
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__UNKNOWN:
        return "UNKNOWN";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
        return "SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
        return "NOT_SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
        return "SERVICE_UNKNOWN";
    default:
        return "INVALID_STATUS";
    }
}

/*
 * Serialize HealthCheckRequest{service}. Returns a malloc'd buffer (never
 * NULL on success, even for the empty encoding) or NULL (printed).
 */
static unsigned char *pack_request(const char *service, size_t *len)
{
    Grpc__Health__V1__HealthCheckRequest req =
        GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    unsigned char *buf = NULL;

    req.service = (char *)service;
    *len = grpc__health__v1__health_check_request__get_packed_size(&req);
    buf = malloc(*len + 1);
    if (buf == NULL) {
        tool_err("out of memory");
        return NULL;
    }
    grpc__health__v1__health_check_request__pack(&req, buf);
    return buf;
}

/* Decode a HealthCheckResponse; returns its status or -1 (printed). */
static int unpack_status(const unsigned char *data, size_t len)
{
    Grpc__Health__V1__HealthCheckResponse *resp =
        grpc__health__v1__health_check_response__unpack(NULL, len, data);
    int status;

    if (resp == NULL) {
        tool_err("the server sent a malformed HealthCheckResponse");
        return -1;
    }
    status = (int)resp->status;
    grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
    return status;
}

struct watch_state {
    int last; /* last status seen, -1 before the first */
};

static int on_watch_message(void *user, const unsigned char *data, size_t len)
{
    struct watch_state *st = user;
    int status = unpack_status(data, len);

    if (status < 0)
        return -1;
    st->last = status;
    printf("%s\n", serving_status_name(status));
    fflush(stdout);
    return 0;
}

int sgctl_cmd_health(struct sgctl_ctx *ctx, int argc, char **argv)
{
    struct sgctl_result res;
    const char *service = "";
    bool watch = false;
    bool have_service = false;
    bool only_args = false;
    unsigned char *req = NULL;
    size_t req_len = 0;
    int ret = TOOL_EXIT_LOCAL;

    sgctl_result_init(&res);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];

        if (!only_args && STREQ(a, "--")) {
            only_args = true;
        } else if (!only_args && STREQ(a, "--watch")) {
            watch = true;
        } else if (!only_args && a[0] == '-' && a[1] != '\0') {
            tool_err("health: unknown option '%s' (see 'sgctl help health')",
                     a);
            ret = TOOL_EXIT_USAGE;
            goto cleanup;
        } else if (!have_service) {
            service = a;
            have_service = true;
        } else {
            tool_err("health: unexpected argument '%s'", a);
            ret = TOOL_EXIT_USAGE;
            goto cleanup;
        }
    }

    req = pack_request(service, &req_len);
    if (req == NULL)
        goto cleanup;

    if (!watch) {
        int status;

        if (sgctl_unary(ctx, HEALTH_CHECK_METHOD, req, req_len, &res) < 0)
            goto cleanup;
        if (res.status != GRPC_STATUS_OK) {
            ret = sgctl_report_status(&res, "health check failed");
            goto cleanup;
        }
        if (!res.have_msg) {
            tool_err("health check: the server sent no response message");
            ret = TOOL_EXIT_FAILURE;
            goto cleanup;
        }
        status = unpack_status(res.msg, res.msg_len);
        if (status < 0) {
            ret = TOOL_EXIT_FAILURE;
            goto cleanup;
        }
        printf("%s\n", serving_status_name(status));
        ret = status ==
                      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                  ? TOOL_EXIT_OK
                  : TOOL_EXIT_FAILURE;
    } else {
        struct watch_state st = {.last = -1};

        if (sgctl_server_stream(ctx, HEALTH_WATCH_METHOD, req, req_len,
                                on_watch_message, &st, &res) < 0)
            goto cleanup;
        if (res.status != GRPC_STATUS_OK) {
            ret = sgctl_report_status(&res, "health watch ended");
            goto cleanup;
        }
        ret = st.last ==
                      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                  ? TOOL_EXIT_OK
                  : TOOL_EXIT_FAILURE;
    }

 cleanup:
    sgctl_result_free(&res);
    free(req);
    return ret;
}

int sgctl_cmd_version(struct sgctl_ctx *ctx, int argc, char **argv)
{
    struct sgctl_result res;
    char *server_version = NULL;
    unsigned char *req = NULL;
    size_t req_len = 0;
    int ret = TOOL_EXIT_LOCAL;

    sgctl_result_init(&res);
    if (argc > 0) {
        tool_err("version: unexpected argument '%s'", argv[0]);
        ret = TOOL_EXIT_USAGE;
        goto cleanup;
    }
    printf("client: sgctl %s (gRPC core %s)\n", SG_VERSION,
           grpc_version_string());
    fflush(stdout);

    req = pack_request("", &req_len);
    if (req == NULL)
        goto cleanup;
    if (sgctl_unary(ctx, HEALTH_CHECK_METHOD, req, req_len, &res) < 0)
        goto cleanup;

    /* Initial metadata may arrive even when the check itself fails. */
    server_version = sgctl_result_md_get(&res, SERVER_VERSION_KEY);
    if (server_version != NULL) {
        tool_sanitize(server_version);
        printf("server: sandgate %s\n", server_version);
        ret = TOOL_EXIT_OK;
    } else if (res.status != GRPC_STATUS_OK) {
        printf("server: unknown\n");
        ret = sgctl_report_status(&res, "version");
    } else {
        printf("server: unknown (no '%s' metadata in the reply)\n",
               SERVER_VERSION_KEY);
        ret = TOOL_EXIT_FAILURE;
    }

 cleanup:
    sgctl_result_free(&res);
    free(server_version);
    free(req);
    return ret;
}
