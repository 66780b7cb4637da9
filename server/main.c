/*
 * main.c: the sandgate daemon.
 *
 * Builds the configuration (defaults < file < SANDGATE_* < flags), sets up
 * logging, starts the gRPC server and runs the libuv loop on the main thread
 * until SIGTERM or SIGINT. SIGHUP re-reads the configuration and applies
 * what can change without a restart: log level, filters, format, access
 * log, and TLS certificates.
 */
#include "internal.h"

#include "descriptors.h"
#include "driver.h"
#include "gateway.h"
#include "health.h"
#include "log.h"
#include "server.h"
#include "authz_call.h"
#include "services.h"
#include "server_config.h"
#include "svc_credentials.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/support/log.h>
#include <jansson.h>
#include <uv.h>

SG_LOG_INIT("main");

static struct sg_log_category grpc_log_cat = {.name = "grpc"};

extern char **environ;

struct options {
    const char *config_file;
    const char **listen;
    size_t n_listen;
    const char *data_dir;
};

struct daemon {
    struct options opts;
    struct sg_config *cfg;
    uv_loop_t loop;
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    uv_signal_t sig_hup;
    struct sg_server *server;
    struct sg_gateway gw;
    bool stopping;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: sandgate [OPTION]...\n"
            "The sandgate sandbox control-plane gateway.\n"
            "\n"
            "  -c, --config FILE        read the YAML configuration FILE\n"
            "  -l, --listen ADDR        listen on ADDR (HOST:PORT or unix:PATH),\n"
            "                           plaintext; repeatable; replaces the\n"
            "                           configured listeners\n"
            "  -d, --data-dir DIR       keep the embedded store and local state\n"
            "                           in DIR\n"
            "      --check-config FILE  validate FILE and exit\n"
            "  -V, --version            print the version and exit\n"
            "  -h, --help               print this help and exit\n"
            "\n"
            "With no configuration, sandgate listens on %s (plaintext)\n"
            "and keeps its data in ./%s. Environment variables\n"
            "SANDGATE_* override the file; flags override both. See\n"
            "docs/sandgate.yaml for every setting.\n"
            "\n"
            "Signals: SIGTERM/SIGINT drain and stop; SIGHUP reloads logging\n"
            "and TLS certificates.\n"
            "Exit status: 0 on a clean stop, 1 on a runtime or configuration\n"
            "error, 2 on a usage error.\n",
            SG_DEFAULT_LISTEN, SG_DEFAULT_DATA_DIR);
}

/* Defaults < file < environment < flags, then validation. */
static struct sg_config *build_config(const struct options *o,
                                      struct sg_error *err)
{
    struct sg_config *cfg = sg_config_new();

    if (!cfg) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    if (o->config_file && sg_config_load_file(cfg, o->config_file, err) < 0)
        goto error;
    if (sg_config_apply_env(cfg, environ, err) < 0)
        goto error;
    if (o->n_listen &&
        sg_config_set_listen(cfg, o->listen, o->n_listen, err) < 0)
        goto error;
    if (o->data_dir) {
        char *d = strdup(o->data_dir);
        if (!d) {
            sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
            goto error;
        }
        free(cfg->data_dir);
        cfg->data_dir = d;
    }
    if (sg_config_validate(cfg, err) < 0)
        goto error;
    return cfg;

 error:
    sg_config_free(cfg);
    return NULL;
}

static int apply_logging(const struct sg_config *cfg, struct sg_error *err)
{
    if (sg_log_configure(sg_log_level_name(cfg->log_level),
                         cfg->log_filters ? cfg->log_filters : "",
                         cfg->log_format, err) < 0)
        return -1;
    /* The core formats its own debug lines only when we would print them. */
    gpr_set_log_verbosity(sg_log_enabled(&grpc_log_cat, SG_LOG_DEBUG)
                              ? GPR_LOG_SEVERITY_DEBUG
                              : GPR_LOG_SEVERITY_ERROR);
    return 0;
}

/* gRPC core log lines go through our logger, under category "grpc". */
static void grpc_log(gpr_log_func_args *args)
{
    enum sg_log_level lvl;

    switch (args->severity) {
    case GPR_LOG_SEVERITY_ERROR:
        /* Mostly failed handshakes: a client's fault, not ours. */
        lvl = SG_LOG_WARN;
        break;
    case GPR_LOG_SEVERITY_INFO:
        lvl = SG_LOG_DEBUG;
        break;
    default:
        lvl = SG_LOG_TRACE;
        break;
    }
    if (sg_log_enabled(&grpc_log_cat, lvl))
        sg_log_printf(&grpc_log_cat, lvl, args->file, args->line, "%s",
                      args->message);
}

static int ensure_data_dir(const char *dir, struct sg_error *err)
{
    struct stat st;

    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    char buf[128];

    sg_error_report(err, SG_ERR_IO, "cannot create data directory '%s': %s",
                    dir, errno == EEXIST ? "not a directory"
                                         : sg_strerror(errno, buf,
                                                       sizeof(buf)));
    return -1;
}

/*
 * Loop thread, after the last call ended (so no CheckCredential is in
 * flight). The TokenReview client stops first, then the reconciler, so
 * that nothing starts new driver or store work. The driver closes before
 * the credential workers are joined: a delivery waiting on the driver's
 * API client (a Secret read, which needs this loop) then ends at once
 * instead of at its timeout; its result comes through the delivery queue,
 * closed after the join. The store close waits for queued writes.
 * Handles close on the loop; the memory behind them is freed after
 * uv_run returns (close_gateway).
 */
static void stop_gateway(struct sg_gateway *gw)
{
    sg_authz_stop(gw->authz);
    sg_reconciler_stop(gw->reconciler);
    if (gw->driver)
        sg_driver_close(gw->driver);
    sg_cred_workers_stop(gw->cred_workers);
    gw->cred_workers = NULL;
    sg_loop_queue_close(gw->delivery.queue);
    gw->delivery.queue = NULL;
    /* Every stream has ended by now; the hub's thread reads the store, so
       it stops first. Its observer takes (and drops) what the close still
       commits. */
    sg_event_hub_stop(gw->events);
    sg_store_close(gw->store);
    gw->store = NULL;
}

static void free_gateway(struct sg_gateway *gw)
{
    sg_authz_free(gw->authz);
    gw->authz = NULL;
    sg_reconciler_free(gw->reconciler);
    gw->reconciler = NULL;
    sg_driver_free(gw->driver);
    gw->driver = NULL;
    sg_event_hub_free(gw->events);
    gw->events = NULL;
    sg_credsrc_registry_free(gw->credentials);
    gw->credentials = NULL;
}

/*
 * The credential sources from credentials.* (the lists are JSON text,
 * checked when the config was loaded), and the threads CheckCredential
 * resolves on.
 */
static int open_credentials(struct sg_gateway *gw, const struct sg_config *cfg,
                            struct sg_error *err)
{
    json_t *dirs = NULL, *plugins = NULL;
    const char **dir_list = NULL;
    struct sg_credsrc_plugin_config *plugin_list = NULL;
    char **settings = NULL;
    struct sg_credsrc_config cc = {.env_prefix = cfg->credentials_env_prefix};
    size_t n_dirs = 0, n_plugins = 0, i;
    json_t *item;
    int ret = -1;

    if (cfg->credentials_file_directories)
        dirs = json_loads(cfg->credentials_file_directories, 0, NULL);
    if (cfg->credentials_plugins)
        plugins = json_loads(cfg->credentials_plugins, 0, NULL);
    n_dirs = json_array_size(dirs);
    n_plugins = json_array_size(plugins);
    dir_list = calloc(n_dirs + 1, sizeof(*dir_list));
    plugin_list = calloc(n_plugins + 1, sizeof(*plugin_list));
    settings = calloc(n_plugins + 1, sizeof(*settings));
    if (!dir_list || !plugin_list || !settings ||
        (cfg->credentials_file_directories && !dirs) ||
        (cfg->credentials_plugins && !plugins)) {
        sg_error_report(err, SG_ERR_NO_MEMORY,
                        "out of memory reading credentials.*");
        goto cleanup;
    }
    json_array_foreach(dirs, i, item)
        dir_list[i] = json_string_value(item);
    json_array_foreach(plugins, i, item) {
        json_t *st = json_object_get(item, "settings");

        plugin_list[i].path = json_string_value(json_object_get(item, "path"));
        if (json_is_object(st)) {
            settings[i] = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
            if (!settings[i]) {
                sg_error_report(err, SG_ERR_NO_MEMORY,
                                "out of memory reading credentials.plugins");
                goto cleanup;
            }
        }
        plugin_list[i].settings_json = settings[i];
    }
    cc.file_directories = dir_list;
    cc.n_file_directories = n_dirs;
    cc.plugins = plugin_list;
    cc.n_plugins = n_plugins;
    gw->credentials = sg_credsrc_registry_new(&cc, err);
    if (!gw->credentials)
        goto cleanup;
    gw->cred_workers = sg_cred_workers_start(0, err);
    if (!gw->cred_workers)
        goto cleanup;
    SG_INFO("credential sources: %zu file directories, env prefix %s, "
            "%zu plugins",
            n_dirs,
            cfg->credentials_env_prefix ? cfg->credentials_env_prefix
                                        : "(none)",
            n_plugins);
    ret = 0;

 cleanup:
    for (i = 0; settings && i < n_plugins; i++)
        free(settings[i]);
    free(settings);
    free(plugin_list);
    free(dir_list);
    json_decref(plugins);
    json_decref(dirs);
    return ret;
}

/* The registry a driver's credential source joins (drivers/driver.h):
   one gateway, one registry, set before the driver opens. */
static struct sg_credsrc_registry *driver_credsrc_registry;

static int driver_credential_source(const struct sg_credsrc_ops *ops,
                                    char *msg, size_t size)
{
    struct sg_error err = SG_ERROR_INIT;
    int rc = sg_credsrc_register(driver_credsrc_registry, ops, "{}", &err);

    if (rc < 0)
        snprintf(msg, size, "%s", err.message);
    else
        SG_INFO("credential source '%s' is the driver's", ops->name);
    sg_error_reset(&err);
    return rc;
}

/* The event hub judges open streams by the policy in force. */
static struct sg_policy *current_policy(void *opaque)
{
    return sg_authz_current_policy(opaque);
}

/* Authentication, policy and audit log, first: a bad policy stops the
   start before anything else is opened. */
static int open_authz(struct daemon *d, struct sg_error *err)
{
    const struct sg_config *cfg = d->cfg;
    char token_path[4096];
    struct sg_authz_config ac = {
        .policy_file = cfg->auth_policy_file,
        .admin_token_file = cfg->auth_admin_token_file,
        .gateway_namespace = cfg->auth_gateway_namespace,
        .disabled = cfg->auth_disabled,
        .audit = {.path = cfg->audit_file,
                  .max_bytes = cfg->audit_max_bytes,
                  .max_files = cfg->audit_max_files},
        .loop = &d->loop,
    };

    if (!ac.admin_token_file) {
        snprintf(token_path, sizeof(token_path), "%s/admin.token",
                 cfg->data_dir);
        ac.admin_token_file = token_path;
    }
    d->gw.authz = sg_authz_new(&ac, err);
    return d->gw.authz ? 0 : -1;
}

/* Store, driver and reconciler, before the server takes calls. */
static int open_gateway(struct daemon *d, struct sg_error *err)
{
    const struct sg_config *cfg = d->cfg;
    struct sg_gateway *gw = &d->gw;
    char db_path[4096], state_dir[4096];
    struct sg_store_config sc = {
        .backend = cfg->store_backend,
        .durability = cfg->store_durability,
        .busy_timeout_ms = cfg->store_busy_timeout_ms,
        .max_batch = cfg->store_max_batch,
        .event_retention_count = cfg->events_retention_max_count,
        .event_retention_age_ms =
            (int64_t)cfg->events_retention_max_age_s * 1000,
    };
    struct sg_event_hub_config hc = {
        .queue_limit = cfg->events_watch_queue_limit,
        .max_streams = cfg->events_watch_max_streams,
        .current_policy = current_policy,
    };
    struct sg_driver_open_args da = {
        .name = cfg->driver_plugin ? NULL : cfg->driver_name,
        .plugin_path = cfg->driver_plugin,
        .settings_json = cfg->driver_settings,
        .state_dir = state_dir,
        .loop = &d->loop,
        .report_health = sg_health_report,
        .register_credential_source = driver_credential_source,
    };
    struct sg_reconciler_config rc = {0};

    snprintf(db_path, sizeof(db_path), "%s/sandgate.db", cfg->data_dir);
    sc.path = cfg->store_path ? cfg->store_path : db_path;
    snprintf(state_dir, sizeof(state_dir), "%s/drivers/%s", cfg->data_dir,
             cfg->driver_plugin ? "plugin" : cfg->driver_name);
    gw->limits = sg_validate_limits_default();
    if (open_authz(d, err) < 0 || open_credentials(gw, cfg, err) < 0)
        return -1;
    gw->store = sg_store_open(&sc, err);
    if (!gw->store)
        return -1;
    /* Before anything writes: the hub observes every commit from here. */
    hc.store = gw->store;
    hc.policy_opaque = gw->authz;
    gw->events = sg_event_hub_new(&hc, err);
    if (!gw->events)
        return -1;
    driver_credsrc_registry = gw->credentials;
    gw->driver = sg_driver_open(&da, err);
    if (!gw->driver)
        return -1;
    gw->delivery = (struct sg_cred_delivery){
        .store = gw->store,
        .registry = gw->credentials,
        .workers = gw->cred_workers,
        .audit = gw->authz ? sg_authz_audit(gw->authz) : NULL,
        .queue = sg_loop_queue_new(&d->loop, err)};
    if (!gw->delivery.queue)
        return -1;
    rc.credentials = &gw->delivery;
    gw->reconciler = sg_reconciler_start(&d->loop, gw->store, gw->driver, &rc,
                                         err);
    if (!gw->reconciler)
        return -1;
    SG_INFO("store %s at %s (durability %s); driver %s",
            sg_store_backend(gw->store), sc.path, cfg->store_durability,
            sg_driver_name(gw->driver));
    return 0;
}

static void on_server_done(void *opaque)
{
    struct daemon *d = opaque;

    stop_gateway(&d->gw);
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
    SG_INFO("stopped");
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;

    if (d->stopping) {
        SG_INFO("signal %d: already draining", signum);
        return;
    }
    d->stopping = true;
    SG_INFO("signal %d: stopping", signum);
    sg_health_set_all(false);
    sg_server_shutdown(d->server, on_server_done, d);
}

static void on_reload_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    struct sg_error err = SG_ERROR_INIT;
    struct sg_config *cfg = build_config(&d->opts, &err);

    (void)signum;
    if (sg_authz_reload(d->gw.authz, &err) < 0)
        SG_ERROR("policy reload failed, keeping the policy in force: %s",
                 err.message);
    sg_error_reset(&err);
    if (!cfg) {
        SG_ERROR("reload failed, keeping the running configuration: %s",
                 err.message);
        goto cleanup;
    }
    if (apply_logging(cfg, &err) < 0 ||
        sg_server_reload_tls(d->server, &err) < 0) {
        SG_ERROR("reload failed: %s", err.message);
        sg_config_free(cfg);
        goto cleanup;
    }
    sg_server_set_access_log(d->server, cfg->access_log);
    if (cfg->n_listeners != d->cfg->n_listeners ||
        cfg->workers != d->cfg->workers)
        SG_WARN("listener and worker changes take effect at restart");
    sg_config_free(d->cfg);
    d->cfg = cfg;
    SG_INFO("configuration reloaded");

 cleanup:
    sg_error_reset(&err);
}

static int check_config(const char *path)
{
    struct sg_error err = SG_ERROR_INIT;
    struct sg_config *cfg = sg_config_new();
    struct sg_policy *policy = NULL;
    int ret = 1;

    if (!cfg) {
        fprintf(stderr, "sandgate: out of memory\n");
        return 1;
    }
    if (sg_config_load_file(cfg, path, &err) < 0 ||
        sg_config_validate(cfg, &err) < 0) {
        fprintf(stderr, "sandgate: %s\n", err.message);
        goto cleanup;
    }
    /* The policy too: what a SIGHUP would load, checked beforehand. */
    if (cfg->auth_policy_file) {
        policy = sg_policy_load_file(cfg->auth_policy_file, &err);
        if (!policy) {
            fprintf(stderr, "sandgate: %s\n", err.message);
            goto cleanup;
        }
        printf("%s: policy is valid (%s)\n", cfg->auth_policy_file,
               sg_policy_digest(policy));
    }
    printf("%s: configuration is valid\n", path);
    ret = 0;

 cleanup:
    sg_policy_unref(policy);
    sg_error_reset(&err);
    sg_config_free(cfg);
    return ret;
}

static int parse_args(int argc, char **argv, struct options *o, int *exit_now)
{
    enum { OPT_CHECK_CONFIG = 256 };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"data-dir", required_argument, NULL, 'd'},
        {"check-config", required_argument, NULL, OPT_CHECK_CONFIG},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    o->listen = calloc((size_t)argc, sizeof(*o->listen));
    if (!o->listen)
        return -1;
    while ((c = getopt_long(argc, argv, "c:l:d:Vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config_file = optarg;
            break;
        case 'l':
            o->listen[o->n_listen++] = optarg;
            break;
        case 'd':
            o->data_dir = optarg;
            break;
        case OPT_CHECK_CONFIG:
            *exit_now = check_config(optarg);
            return 0;
        case 'V':
            printf("sandgate %s (gRPC core %s)\n", SG_VERSION,
                   grpc_version_string());
            *exit_now = 0;
            return 0;
        case 'h':
            usage(stdout);
            *exit_now = 0;
            return 0;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sandgate: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

static int run(struct daemon *d)
{
    struct sg_error err = SG_ERROR_INIT;
    int ret = 1;

    d->cfg = build_config(&d->opts, &err);
    if (!d->cfg) {
        fprintf(stderr, "sandgate: %s\n", err.message);
        goto cleanup;
    }
    if (apply_logging(d->cfg, &err) < 0 ||
        ensure_data_dir(d->cfg->data_dir, &err) < 0) {
        SG_ERROR("%s", err.message);
        goto cleanup;
    }
    if (sg_descriptors_init(&err) < 0) {
        SG_ERROR("%s", err.message);
        goto cleanup;
    }
    sg_health_set_all(false);

    uv_loop_init(&d->loop);
    if (open_gateway(d, &err) < 0) {
        SG_ERROR("cannot start: %s", err.message);
        stop_gateway(&d->gw);
        uv_run(&d->loop, UV_RUN_DEFAULT);
        free_gateway(&d->gw);
        uv_loop_close(&d->loop);
        goto cleanup;
    }
    d->server = sg_server_new(d->cfg,
                              d->cfg->auth_reflection
                                  ? sg_services : sg_services_no_reflection,
                              &d->loop, &err);
    if (d->server) {
        sg_server_set_app_data(d->server, &d->gw);
        sg_server_set_auth(d->server, sg_authz_call_hook, d->gw.authz);
    }
    if (!d->server || sg_server_start(d->server, &err) < 0) {
        SG_ERROR("cannot start: %s", err.message);
        /* The loop and server hold gRPC state that cannot be unwound
         * safely after a failed start; exit without tearing down. */
        exit(1);
    }
    sg_server_set_access_log(d->server, d->cfg->access_log);
    uv_signal_init(&d->loop, &d->sig_term);
    uv_signal_init(&d->loop, &d->sig_int);
    uv_signal_init(&d->loop, &d->sig_hup);
    d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
    uv_signal_start(&d->sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&d->sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&d->sig_hup, on_reload_signal, SIGHUP);

    SG_INFO("sandgate %s serving, data in %s", SG_VERSION, d->cfg->data_dir);
    sg_health_set_all(true);
    uv_run(&d->loop, UV_RUN_DEFAULT);

    sg_server_free(d->server);
    d->server = NULL;
    free_gateway(&d->gw);
    if (uv_loop_close(&d->loop) != 0)
        SG_WARN("event loop closed with handles still open");
    ret = 0;

 cleanup:
    sg_descriptors_cleanup();
    sg_config_free(d->cfg);
    sg_error_reset(&err);
    return ret;
}

/*
 * Credential material passes through this process (delivery, checks):
 * no core file may hold it, and a process of the same user may not read
 * this one's memory. Sanitizer builds stay dumpable: LeakSanitizer stops
 * the world with ptrace.
 */
static void protect_memory(void)
{
#if !defined(__SANITIZE_ADDRESS__)
    char buf[128];

    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        fprintf(stderr, "sandgate: cannot turn off core dumps: %s\n",
                sg_strerror(errno, buf, sizeof(buf)));
#endif
}

int main(int argc, char **argv)
{
    struct daemon d;
    int exit_now = -1;
    int ret;

    memset(&d, 0, sizeof(d));
    protect_memory();
    signal(SIGPIPE, SIG_IGN);
    if (parse_args(argc, argv, &d.opts, &exit_now) < 0) {
        free(d.opts.listen);
        return 2;
    }
    if (exit_now >= 0) {
        free(d.opts.listen);
        return exit_now;
    }
    gpr_set_log_function(grpc_log);
    /* Access-log lines at full load: batched writes, not one per call. */
    if (sg_log_async_start() < 0)
        fprintf(stderr, "sandgate: logging synchronously (no thread)\n");
    grpc_init();
    ret = run(&d);
    grpc_shutdown();
    sg_log_async_stop();
    free(d.opts.listen);
    return ret;
}
