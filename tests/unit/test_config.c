/*
 * test_config.c: configuration defaults, YAML loading, environment
 * overrides, validation, and the shipped sample docs/sandgate.yaml.
 *
 * Every kind of error has a case asserting the exact message, with its
 * file:line: key prefix.
 */
#include "internal.h"

#include "testutils.h"

#include "server_config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CONFIG_DATA SG_TEST_DATA_DIR "/config"

static int load(struct sg_config *cfg, const char *text, struct sg_error *err)
{
    return sg_config_load_data(cfg, "t.yaml", text, strlen(text), err);
}

/* A config loaded from text, failing the test if it does not load. */
static struct sg_config *load_ok(const char *text)
{
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_ptr_nonnull(cfg);
    ck_assert_msg(load(cfg, text, &err) == 0, "load failed: %s",
                  err.message);
    return cfg;
}

static void assert_defaults(const struct sg_config *cfg, bool listeners)
{
    if (listeners) {
        ck_assert_uint_eq(cfg->n_listeners, 1);
        ck_assert_str_eq(cfg->listeners[0].address, SG_DEFAULT_LISTEN);
        ck_assert_ptr_null(cfg->listeners[0].cert_file);
        ck_assert_ptr_null(cfg->listeners[0].key_file);
        ck_assert_ptr_null(cfg->listeners[0].client_ca_file);
        ck_assert(!cfg->listeners[0].allow_insecure);
        ck_assert_str_eq(cfg->data_dir, SG_DEFAULT_DATA_DIR);
    }
    ck_assert_uint_eq(cfg->workers, 0);
    ck_assert_uint_eq(cfg->max_receive_message_bytes, 4194304);
    ck_assert_uint_eq(cfg->max_concurrent_streams, 1000);
    ck_assert_uint_eq(cfg->max_metadata_bytes, 16384);
    ck_assert_uint_eq(cfg->default_deadline_ms, 30000);
    ck_assert_uint_eq(cfg->drain_timeout_ms, 10000);
    ck_assert_uint_eq(cfg->keepalive_time_ms, 7200000);
    ck_assert_uint_eq(cfg->keepalive_timeout_ms, 20000);
    ck_assert_uint_eq(cfg->keepalive_min_ping_interval_ms, 10000);
    ck_assert_uint_eq(cfg->keepalive_max_ping_strikes, 2);
    ck_assert(!cfg->keepalive_permit_without_calls);
    ck_assert_int_eq(cfg->log_level, SG_LOG_INFO);
    ck_assert_ptr_null(cfg->log_filters);
    ck_assert_int_eq(cfg->log_format, SG_LOG_FORMAT_AUTO);
    ck_assert(cfg->access_log);
    ck_assert_str_eq(cfg->store_backend, "sqlite");
    ck_assert_ptr_null(cfg->store_path);
    ck_assert_str_eq(cfg->store_durability, "full");
    ck_assert_uint_eq(cfg->store_busy_timeout_ms, 5000);
    ck_assert_uint_eq(cfg->store_max_batch, 256);
    ck_assert_str_eq(cfg->driver_name, "process");
    ck_assert_ptr_null(cfg->driver_plugin);
    ck_assert_ptr_null(cfg->driver_settings);
}

/* ---- defaults ------------------------------------------------------ */

/* Every non-listener value that tests/data/config/full.yaml sets. */
static void assert_full_values(const struct sg_config *cfg)
{
    ck_assert_str_eq(cfg->data_dir, "state");
    ck_assert_uint_eq(cfg->workers, 8);
    ck_assert_uint_eq(cfg->max_receive_message_bytes, 8388608);
    ck_assert_uint_eq(cfg->max_concurrent_streams, 200);
    ck_assert_uint_eq(cfg->max_metadata_bytes, 32768);
    ck_assert_uint_eq(cfg->default_deadline_ms, 60000);
    ck_assert_uint_eq(cfg->drain_timeout_ms, 5000);
    ck_assert_uint_eq(cfg->keepalive_time_ms, 60000);
    ck_assert_uint_eq(cfg->keepalive_timeout_ms, 5000);
    ck_assert_uint_eq(cfg->keepalive_min_ping_interval_ms, 2000);
    ck_assert_uint_eq(cfg->keepalive_max_ping_strikes, 5);
    ck_assert(cfg->keepalive_permit_without_calls);
    ck_assert_int_eq(cfg->log_level, SG_LOG_DEBUG);
    ck_assert_str_eq(cfg->log_filters, "server:trace,server.access:off");
    ck_assert_int_eq(cfg->log_format, SG_LOG_FORMAT_JSON);
    ck_assert(!cfg->access_log);
}

START_TEST(test_defaults)
{
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_ptr_nonnull(cfg);
    assert_defaults(cfg, true);
    ck_assert_ptr_null(cfg->source);
    ck_assert_msg(sg_config_validate(cfg, &err) == 0, "%s", err.message);
    sg_config_free(cfg);
    sg_config_free(NULL);
}
END_TEST

/* Documents without settings leave every default in place. */
static const char *const empty_docs[] = {
    "",
    "\n\n",
    "# only a comment\n",
    "---\n",
    "--- ~\n",
    "server:\n",
    "server:\n  keepalive:\n",
    "log: ~\n",
};

START_TEST(test_empty_documents)
{
    struct sg_config *cfg = load_ok(empty_docs[_i]);

    assert_defaults(cfg, true);
    sg_config_free(cfg);
}
END_TEST

/* ---- every key ----------------------------------------------------- */

static void assert_full(const struct sg_config *cfg)
{
    ck_assert_uint_eq(cfg->n_listeners, 4);
    ck_assert_str_eq(cfg->listeners[0].address, "0.0.0.0:8443");
    ck_assert_str_eq(cfg->listeners[0].cert_file, "server.crt");
    ck_assert_str_eq(cfg->listeners[0].key_file, "server.key");
    ck_assert_str_eq(cfg->listeners[0].client_ca_file, "ca.crt");
    ck_assert(!cfg->listeners[0].allow_insecure);
    ck_assert_str_eq(cfg->listeners[1].address, "[::1]:50052");
    ck_assert_ptr_null(cfg->listeners[1].cert_file);
    ck_assert_str_eq(cfg->listeners[2].address, "unix:sandgate.sock");
    ck_assert_str_eq(cfg->listeners[3].address, "10.1.2.3:50053");
    ck_assert(cfg->listeners[3].allow_insecure);
    assert_full_values(cfg);
}

START_TEST(test_every_key_from_file)
{
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(chdir(CONFIG_DATA), 0);
    ck_assert_msg(sg_config_load_file(cfg, "full.yaml", &err) == 0, "%s",
                  err.message);
    assert_full(cfg);
    ck_assert_str_eq(cfg->source, "full.yaml");
    ck_assert_msg(sg_config_validate(cfg, &err) == 0, "%s", err.message);
    sg_config_free(cfg);
}
END_TEST

START_TEST(test_load_twice_merges)
{
    struct sg_config *cfg = load_ok("server:\n  workers: 3\n"
                                    "listeners:\n  - address: a:1\n"
                                    "  - address: b:2\n");
    struct sg_error err = SG_ERROR_INIT;

    /* A later load replaces only what it names; listeners as a whole. */
    ck_assert_int_eq(load(cfg, "server:\n  drain_timeout_ms: 7\n"
                          "listeners:\n  - address: c:3\n", &err), 0);
    ck_assert_uint_eq(cfg->workers, 3);
    ck_assert_uint_eq(cfg->drain_timeout_ms, 7);
    ck_assert_uint_eq(cfg->n_listeners, 1);
    ck_assert_str_eq(cfg->listeners[0].address, "c:3");
    sg_config_free(cfg);
}
END_TEST

static const struct {
    const char *text;
    bool value;
} bool_cases[] = {
    {"true", true},   {"True", true},   {"TRUE", true},   {"\"true\"", true},
    {"false", false}, {"False", false}, {"FALSE", false},
};

START_TEST(test_booleans)
{
    char text[128];
    struct sg_config *cfg;

    snprintf(text, sizeof(text), "log:\n  access_log: %s\n",
             bool_cases[_i].text);
    cfg = load_ok(text);
    ck_assert_int_eq(cfg->access_log, bool_cases[_i].value);
    sg_config_free(cfg);
}
END_TEST

START_TEST(test_scalar_forms)
{
    struct sg_config *cfg = load_ok(
        "data_dir: 'quoted dir'\n"
        "server: {workers: \"4\", max_concurrent_streams: 007}\n"
        "log:\n  filters: ~\n  level: 'warn'\n"
        "listeners:\n  - {address: 'localhost:1', allow_insecure: false}\n");

    ck_assert_str_eq(cfg->data_dir, "quoted dir");
    ck_assert_uint_eq(cfg->workers, 4);
    ck_assert_uint_eq(cfg->max_concurrent_streams, 7);
    ck_assert_ptr_null(cfg->log_filters);
    ck_assert_int_eq(cfg->log_level, SG_LOG_WARN);
    ck_assert_str_eq(cfg->listeners[0].address, "localhost:1");
    sg_config_free(cfg);
}
END_TEST

START_TEST(test_null_and_empty_unset_strings)
{
    struct sg_config *cfg = load_ok("log:\n  filters: \"a:debug\"\n");
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_str_eq(cfg->log_filters, "a:debug");
    ck_assert_int_eq(load(cfg, "log:\n  filters: \"\"\n", &err), 0);
    ck_assert_ptr_null(cfg->log_filters);
    ck_assert_int_eq(load(cfg, "data_dir:\n", &err), 0);
    ck_assert_ptr_null(cfg->data_dir);
    /* ... which validation then refuses, as data_dir is required. */
    ck_assert_int_eq(sg_config_validate(cfg, &err), -1);
    ck_assert_str_eq(err.message, "data_dir: must be set");
    sg_error_reset(&err);
    ck_assert_int_eq(load(cfg, "listeners:\n", &err), 0);
    ck_assert_uint_eq(cfg->n_listeners, 0);
    sg_config_free(cfg);
}
END_TEST

START_TEST(test_range_limits_accepted)
{
    struct sg_config *cfg = load_ok(
        "server:\n"
        "  workers: 256\n"
        "  max_receive_message_bytes: 1073741824\n"
        "  max_metadata_bytes: 1024\n"
        "  drain_timeout_ms: 0\n"
        "  keepalive:\n"
        "    time_ms: 2147483647\n");
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_uint_eq(cfg->workers, 256);
    ck_assert_uint_eq(cfg->max_receive_message_bytes, 1073741824);
    ck_assert_uint_eq(cfg->keepalive_time_ms, 2147483647);
    ck_assert_msg(sg_config_validate(cfg, &err) == 0, "%s", err.message);
    sg_config_free(cfg);
}
END_TEST

/* ---- load errors: one case per kind -------------------------------- */

static const struct {
    const char *what;
    const char *text;
    const char *message;
} load_errors[] = {
    {"syntax", "server:\n  workers: [1, 2\n",
     "t.yaml:3: YAML syntax error: while parsing a flow sequence did not "
     "find expected ',' or ']'"},
    {"tab indent", "server:\n\tworkers: 1\n",
     "t.yaml:2: YAML syntax error: while scanning for the next token found "
     "character that cannot start any token"},
    {"invalid UTF-8", "data_dir: \xff\n",
     "t.yaml: invalid input at byte 10: invalid leading UTF-8 octet"},
    {"root is a sequence", "- a\n- b\n",
     "t.yaml:1: expected a mapping at the top level, got a sequence"},
    {"root is a scalar", "\n\nhello\n",
     "t.yaml:3: expected a mapping at the top level, got a scalar"},
    {"two documents", "log:\n  level: info\n---\nlog:\n  level: debug\n",
     "t.yaml:3: expected a single YAML document"},
    {"unknown key", "data_dir: x\nnope: 1\n", "t.yaml:2: nope: unknown key"},
    {"unknown nested key", "server:\n  worker: 4\n",
     "t.yaml:2: server.worker: unknown key"},
    {"unknown deep key", "server:\n  keepalive:\n    time: 1\n",
     "t.yaml:3: server.keepalive.time: unknown key"},
    {"dotted key", "server.workers: 4\n",
     "t.yaml:1: server.workers: unknown key"},
    {"section is a scalar", "server: 4\n",
     "t.yaml:1: server: expected a mapping, got a scalar"},
    {"section is a sequence", "log:\n  - level\n",
     "t.yaml:2: log: expected a mapping, got a sequence"},
    {"integer is a mapping", "server:\n  workers:\n    a: 1\n",
     "t.yaml:3: server.workers: expected an unsigned integer, got a mapping"},
    {"string is a sequence", "data_dir: [a]\n",
     "t.yaml:1: data_dir: expected a string, got a sequence"},
    {"not an integer", "server:\n  workers: many\n",
     "t.yaml:2: server.workers: expected an unsigned integer, got 'many'"},
    {"negative", "server:\n  workers: -1\n",
     "t.yaml:2: server.workers: expected an unsigned integer, got '-1'"},
    {"plus sign", "server:\n  workers: +1\n",
     "t.yaml:2: server.workers: expected an unsigned integer, got '+1'"},
    {"fraction", "server:\n  drain_timeout_ms: 1.5\n",
     "t.yaml:2: server.drain_timeout_ms: expected an unsigned integer, "
     "got '1.5'"},
    {"hexadecimal", "server:\n  workers: 0x10\n",
     "t.yaml:2: server.workers: expected an unsigned integer, got '0x10'"},
    {"unit suffix", "server:\n  max_receive_message_bytes: 4MiB\n",
     "t.yaml:2: server.max_receive_message_bytes: expected an unsigned "
     "integer, got '4MiB'"},
    {"empty integer", "server:\n  workers:\n",
     "t.yaml:2: server.workers: expected an unsigned integer, got ''"},
    {"overflow", "server:\n  max_receive_message_bytes: "
                 "99999999999999999999999\n",
     "t.yaml:2: server.max_receive_message_bytes: 99999999999999999999999 "
     "is out of range (1024..1073741824)"},
    {"above maximum", "server:\n  workers: 257\n",
     "t.yaml:2: server.workers: 257 is out of range (0..256)"},
    {"below minimum", "server:\n  max_metadata_bytes: 1023\n",
     "t.yaml:2: server.max_metadata_bytes: 1023 is out of range "
     "(1024..1048576)"},
    {"beyond unsigned", "server:\n  keepalive:\n    time_ms: 4294967296\n",
     "t.yaml:3: server.keepalive.time_ms: 4294967296 is out of range "
     "(1000..2147483647)"},
    {"zero streams", "server:\n  max_concurrent_streams: 0\n",
     "t.yaml:2: server.max_concurrent_streams: 0 is out of range "
     "(1..1000000)"},
    {"drain too long", "server:\n  drain_timeout_ms: 3600001\n",
     "t.yaml:2: server.drain_timeout_ms: 3600001 is out of range "
     "(0..3600000)"},
    {"yes is not a boolean", "log:\n  access_log: yes\n",
     "t.yaml:2: log.access_log: expected true or false, got 'yes'"},
    {"1 is not a boolean",
     "server:\n  keepalive:\n    permit_without_calls: 1\n",
     "t.yaml:3: server.keepalive.permit_without_calls: expected true or "
     "false, got '1'"},
    {"bad level", "log:\n  level: verbose\n",
     "t.yaml:2: log.level: expected one of trace, debug, info, warn, error, "
     "off, got 'verbose'"},
    {"bad format", "log:\n  format: xml\n",
     "t.yaml:2: log.format: expected one of auto, json, text, got 'xml'"},
    {"bad filters", "log:\n  filters: \"server:loud\"\n",
     "t.yaml:2: log.filters: log filter 'server:loud': unknown level 'loud'"},
    {"duplicate key", "server:\n  workers: 1\n  workers: 2\n",
     "t.yaml:3: server.workers: duplicate key (first on line 2)"},
    {"duplicate section", "log: {}\nserver: {}\nlog: {}\n",
     "t.yaml:3: log: duplicate key (first on line 1)"},
    {"sequence as key", "? [a]\n: 1\n",
     "t.yaml:1: expected a scalar key, got a sequence"},
    {"mapping as nested key", "server:\n  ? {a: 1}\n  : 1\n",
     "t.yaml:2: server: expected a scalar key, got a mapping"},
    {"listeners is a scalar", "listeners: 127.0.0.1:1\n",
     "t.yaml:1: listeners: expected a sequence, got a scalar"},
    {"listener is a scalar", "listeners:\n  - 127.0.0.1:1\n",
     "t.yaml:2: listeners[0]: expected a mapping, got a scalar"},
    {"listener without address", "listeners:\n  - allow_insecure: true\n",
     "t.yaml:2: listeners[0]: missing required key 'address'"},
    {"listener address is null", "listeners:\n  - address: ~\n",
     "t.yaml:2: listeners[0]: missing required key 'address'"},
    {"bad address", "listeners:\n  - address: nope\n",
     "t.yaml:2: listeners[0].address: 'nope' is not a valid address: "
     "missing ':PORT'"},
    {"listener unknown key",
     "listeners:\n  - address: 127.0.0.1:1\n    tsl: {}\n",
     "t.yaml:3: listeners[0].tsl: unknown key"},
    {"second listener",
     "listeners:\n  - address: 127.0.0.1:1\n  - address: 127.0.0.1:2\n"
     "    allow_insecure: maybe\n",
     "t.yaml:4: listeners[1].allow_insecure: expected true or false, got "
     "'maybe'"},
    {"tls unknown key",
     "listeners:\n  - address: 127.0.0.1:1\n    tls:\n      cert: x\n",
     "t.yaml:4: listeners[0].tls.cert: unknown key"},
    {"tls is a scalar",
     "listeners:\n  - address: 127.0.0.1:1\n    tls: yes\n",
     "t.yaml:3: listeners[0].tls: expected a mapping, got a scalar"},
    {"duplicate listener key",
     "listeners:\n  - address: 127.0.0.1:1\n    address: 127.0.0.1:2\n",
     "t.yaml:3: listeners[0].address: duplicate key (first on line 2)"},
    {"bad durability", "store:\n  sqlite:\n    durability: fast\n",
     "t.yaml:3: store.sqlite.durability: expected one of full, normal, got "
     "'fast'"},
    {"bad store backend", "store:\n  backend: mysql\n",
     "t.yaml:2: store.backend: expected one of sqlite, got 'mysql'"},
    {"zero batch", "store:\n  sqlite:\n    max_batch: 0\n",
     "t.yaml:3: store.sqlite.max_batch: 0 is out of range (1..65536)"},
    {"settings is a scalar", "driver:\n  settings: 3\n",
     "t.yaml:2: driver.settings: expected a mapping, got a scalar"},
    {"settings duplicate key",
     "driver:\n  settings:\n    a: 1\n    a: 2\n",
     "t.yaml:3: driver.settings: duplicate key 'a' on line 4"},
    {"long value is cut",
     "server:\n  workers: "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
     "t.yaml:2: server.workers: expected an unsigned integer, got "
     "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"},
};

START_TEST(test_load_errors)
{
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(load(cfg, load_errors[_i].text, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_msg(STREQ(err.message, load_errors[_i].message),
                  "%s:\n got  %s\n want %s", load_errors[_i].what,
                  err.message, load_errors[_i].message);
    sg_error_reset(&err);
    sg_config_free(cfg);
}
END_TEST

START_TEST(test_load_file_missing)
{
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_config_load_file(cfg, CONFIG_DATA "/missing.yaml",
                                         &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message, "cannot open '" CONFIG_DATA
                     "/missing.yaml': No such file or directory");
    ck_assert_ptr_null(cfg->source);
    sg_error_reset(&err);
    sg_config_free(cfg);
}
END_TEST

START_TEST(test_load_file_error_names_file)
{
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_config_load_file(cfg, CONFIG_DATA "/bad-workers.yaml",
                                         &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message, CONFIG_DATA "/bad-workers.yaml:3: "
                     "server.workers: expected an unsigned integer, got "
                     "'many'");
    ck_assert_ptr_null(cfg->source);
    sg_error_reset(&err);
    sg_config_free(cfg);
}
END_TEST

/* ---- addresses ----------------------------------------------------- */

static const struct {
    const char *address;
    const char *problem; /* NULL: valid */
} address_cases[] = {
    {"127.0.0.1:50051", NULL},
    {"localhost:1", NULL},
    {"sandgate.example.com:443", NULL},
    {"0.0.0.0:65535", NULL},
    {"[::1]:50051", NULL},
    {"[::]:1", NULL},
    {"[fe80::1:2]:8080", NULL},
    {"unix:/run/sandgate/sandgate.sock", NULL},
    {"unix:relative.sock", NULL},
    {"nope", "missing ':PORT'"},
    {"host:", "the port must be a number from 1 to 65535"},
    {"host:0", "the port must be a number from 1 to 65535"},
    {"host:65536", "the port must be a number from 1 to 65535"},
    {"host:-1", "the port must be a number from 1 to 65535"},
    {"host:http", "the port must be a number from 1 to 65535"},
    {":50051", "missing host"},
    {"::1:50051", "an IPv6 address must be in brackets, as in [::1]:PORT"},
    {"[::1]", "missing ':PORT'"},
    {"[::1]50051", "missing ':PORT'"},
    {"[::1:50051", "missing ']' after the IPv6 address"},
    {"[nope]:1", "invalid IPv6 address"},
    {"[]:1", "invalid IPv6 address"},
    {"[127.0.0.1]:1", "invalid IPv6 address"},
    {"unix:", "empty unix socket path"},
    {"unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock",
     "unix socket path is too long"},
    {"bad_host:1", "invalid host name"},
    {"-a:1", "invalid host name"},
    {"a-:1", "invalid host name"},
    {"a..b:1", "invalid host name"},
    {"999.1.1.1:1", "invalid host name"},
    {"1.2.3:1", "invalid host name"},
    {"host name:1", "invalid host name"},
};

START_TEST(test_addresses)
{
    char text[512];
    char want[512];
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;
    int rc;

    snprintf(text, sizeof(text), "listeners:\n  - address: '%s'\n",
             address_cases[_i].address);
    rc = load(cfg, text, &err);
    if (address_cases[_i].problem == NULL) {
        ck_assert_msg(rc == 0, "%s", err.message);
    } else {
        ck_assert_int_eq(rc, -1);
        snprintf(want, sizeof(want),
                 "t.yaml:2: listeners[0].address: '%.64s' is not a valid "
                 "address: %s", address_cases[_i].address,
                 address_cases[_i].problem);
        ck_assert_str_eq(err.message, want);
    }
    sg_error_reset(&err);
    sg_config_free(cfg);
}
END_TEST

static const struct {
    const char *address;
    bool local;
} local_cases[] = {
    {"127.0.0.1:50051", true},
    {"127.1.2.3:1", true},
    {"localhost:1", true},
    {"LocalHost:1", true},
    {"[::1]:1", true},
    {"[::ffff:127.0.0.1]:1", true},
    {"unix:sandgate.sock", true},
    {"127.0.0.1", true},
    {"[::1]", true},
    {"::1", true},
    {"localhost", true},
    {"0.0.0.0:1", false},
    {"10.0.0.1:1", false},
    {"128.0.0.1:1", false},
    {"[::]:1", false},
    {"[::ffff:10.0.0.1]:1", false},
    {"example.com:1", false},
    {"localhost.example.com:1", false},
    {"[::1:1", false},
    {"", false},
};

START_TEST(test_address_is_local)
{
    ck_assert_msg(sg_config_address_is_local(local_cases[_i].address) ==
                  local_cases[_i].local, "%s", local_cases[_i].address);
}
END_TEST

START_TEST(test_address_is_local_null)
{
    ck_assert(!sg_config_address_is_local(NULL));
}
END_TEST

/* ---- environment --------------------------------------------------- */

START_TEST(test_env_every_variable)
{
    char *const envp[] = {
        "PATH=/usr/bin",
        "SANDGATE_LISTEN=0.0.0.0:8443",
        "SANDGATE_DATA_DIR=state",
        "SANDGATE_SERVER_WORKERS=8",
        "SANDGATE_SERVER_MAX_RECEIVE_MESSAGE_BYTES=8388608",
        "SANDGATE_SERVER_MAX_CONCURRENT_STREAMS=200",
        "SANDGATE_SERVER_MAX_METADATA_BYTES=32768",
        "SANDGATE_SERVER_DEFAULT_DEADLINE_MS=60000",
        "SANDGATE_SERVER_DRAIN_TIMEOUT_MS=5000",
        "SANDGATE_SERVER_KEEPALIVE_TIME_MS=60000",
        "SANDGATE_SERVER_KEEPALIVE_TIMEOUT_MS=5000",
        "SANDGATE_SERVER_KEEPALIVE_MIN_PING_INTERVAL_MS=2000",
        "SANDGATE_SERVER_KEEPALIVE_MAX_PING_STRIKES=5",
        "SANDGATE_SERVER_KEEPALIVE_PERMIT_WITHOUT_CALLS=true",
        "SANDGATE_LOG_LEVEL=debug",
        "SANDGATE_LOG_FILTERS=server:trace,server.access:off",
        "SANDGATE_LOG_FORMAT=json",
        "SANDGATE_LOG_ACCESS_LOG=false",
        "SANDGATEWAY=not ours",
        "SANDGATE_NO_EQUALS_SIGN",
        NULL,
    };
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_msg(sg_config_apply_env(cfg, envp, &err) == 0, "%s",
                  err.message);
    ck_assert_uint_eq(cfg->n_listeners, 1);
    ck_assert_str_eq(cfg->listeners[0].address, "0.0.0.0:8443");
    ck_assert_ptr_null(cfg->listeners[0].cert_file);
    ck_assert(!cfg->listeners[0].allow_insecure);
    assert_full_values(cfg);

    /* Plaintext on 0.0.0.0 from the environment still needs TLS or
     * allow_insecure, which only the file can give. */
    ck_assert_int_eq(sg_config_validate(cfg, &err), -1);
    sg_error_reset(&err);
    sg_config_free(cfg);
}
END_TEST

START_TEST(test_env_overrides_file)
{
    char *const envp[] = {
        "SANDGATE_SERVER_WORKERS=16",
        "SANDGATE_LOG_FILTERS=",
        NULL,
    };
    struct sg_config *cfg = load_ok("server:\n  workers: 4\n"
                                    "  drain_timeout_ms: 99\n"
                                    "log:\n  filters: \"a:debug\"\n");
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_config_apply_env(cfg, envp, &err), 0);
    ck_assert_uint_eq(cfg->workers, 16);        /* env wins */
    ck_assert_uint_eq(cfg->drain_timeout_ms, 99); /* file kept */
    ck_assert_ptr_null(cfg->log_filters);       /* empty unsets */
    sg_config_free(cfg);
}
END_TEST

START_TEST(test_env_listen)
{
    char *const envp[] = {
        "SANDGATE_LISTEN=127.0.0.1:1, [::1]:2 ,unix:sandgate.sock",
        NULL,
    };
    struct sg_config *cfg = load_ok(
        "listeners:\n  - address: 127.0.0.1:9\n    tls:\n"
        "      cert_file: server.crt\n      key_file: server.key\n");
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_config_apply_env(cfg, envp, &err), 0);
    ck_assert_uint_eq(cfg->n_listeners, 3);
    ck_assert_str_eq(cfg->listeners[0].address, "127.0.0.1:1");
    ck_assert_str_eq(cfg->listeners[1].address, "[::1]:2");
    ck_assert_str_eq(cfg->listeners[2].address, "unix:sandgate.sock");
    for (size_t i = 0; i < 3; i++) {
        ck_assert_ptr_null(cfg->listeners[i].cert_file);
        ck_assert_ptr_null(cfg->listeners[i].key_file);
    }
    ck_assert_msg(sg_config_validate(cfg, &err) == 0, "%s", err.message);
    sg_config_free(cfg);
}
END_TEST

static const struct {
    const char *entry;
    const char *message;
} env_errors[] = {
    {"SANDGATE_NOPE=1", "environment: SANDGATE_NOPE: unknown variable"},
    {"SANDGATE_server_workers=1",
     "environment: SANDGATE_server_workers: unknown variable"},
    {"SANDGATE_SERVER=1", "environment: SANDGATE_SERVER: unknown variable"},
    {"SANDGATE_LISTENERS=127.0.0.1:1",
     "environment: SANDGATE_LISTENERS: unknown variable"},
    {"SANDGATE_=1", "environment: SANDGATE_: unknown variable"},
    {"SANDGATE_SERVER_WORKERS=x",
     "environment: SANDGATE_SERVER_WORKERS: expected an unsigned integer, "
     "got 'x'"},
    {"SANDGATE_SERVER_WORKERS=",
     "environment: SANDGATE_SERVER_WORKERS: expected an unsigned integer, "
     "got ''"},
    {"SANDGATE_SERVER_WORKERS=1000",
     "environment: SANDGATE_SERVER_WORKERS: 1000 is out of range (0..256)"},
    {"SANDGATE_LOG_ACCESS_LOG=yes",
     "environment: SANDGATE_LOG_ACCESS_LOG: expected true or false, got "
     "'yes'"},
    {"SANDGATE_LOG_LEVEL=loud",
     "environment: SANDGATE_LOG_LEVEL: expected one of trace, debug, info, "
     "warn, error, off, got 'loud'"},
    {"SANDGATE_LOG_FORMAT=xml",
     "environment: SANDGATE_LOG_FORMAT: expected one of auto, json, text, "
     "got 'xml'"},
    {"SANDGATE_LOG_FILTERS=server",
     "environment: SANDGATE_LOG_FILTERS: log filter 'server': expected "
     "CATEGORY:LEVEL"},
    {"SANDGATE_LISTEN=",
     "environment: SANDGATE_LISTEN: empty address in ''"},
    {"SANDGATE_LISTEN=127.0.0.1:1,,127.0.0.1:2",
     "environment: SANDGATE_LISTEN: empty address in "
     "'127.0.0.1:1,,127.0.0.1:2'"},
    {"SANDGATE_LISTEN=127.0.0.1:1,",
     "environment: SANDGATE_LISTEN: empty address in '127.0.0.1:1,'"},
    {"SANDGATE_LISTEN=127.0.0.1:1,nope",
     "environment: SANDGATE_LISTEN: 'nope' is not a valid address: "
     "missing ':PORT'"},
};

START_TEST(test_env_errors)
{
    char *const envp[] = {(char *)env_errors[_i].entry, NULL};
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_config_apply_env(cfg, envp, &err), -1);
    ck_assert_int_eq(err.code, SG_ERR_CONFIG);
    ck_assert_str_eq(err.message, env_errors[_i].message);
    sg_error_reset(&err);
    sg_config_free(cfg);
}
END_TEST

START_TEST(test_env_none)
{
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;
    char *const empty[] = {NULL};

    ck_assert_int_eq(sg_config_apply_env(cfg, empty, &err), 0);
    ck_assert_int_eq(sg_config_apply_env(cfg, NULL, &err), 0);
    assert_defaults(cfg, true);
    sg_config_free(cfg);
}
END_TEST

/* ---- set_listen ---------------------------------------------------- */

START_TEST(test_set_listen)
{
    const char *const addrs[] = {"127.0.0.1:1", "unix:x.sock"};
    struct sg_config *cfg = load_ok("listeners:\n  - address: 0.0.0.0:1\n"
                                    "    allow_insecure: true\n");
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_config_set_listen(cfg, addrs, 2, &err), 0);
    ck_assert_uint_eq(cfg->n_listeners, 2);
    ck_assert_str_eq(cfg->listeners[1].address, "unix:x.sock");
    ck_assert(!cfg->listeners[0].allow_insecure);
    ck_assert_int_eq(sg_config_set_listen(cfg, NULL, 0, &err), 0);
    ck_assert_uint_eq(cfg->n_listeners, 0);
    ck_assert_ptr_null(cfg->listeners);
    sg_config_free(cfg);
}
END_TEST

/* ---- validation: one case per rule --------------------------------- */

static const struct {
    const char *what;
    const char *text;
    const char *message; /* NULL: valid */
} validate_cases[] = {
    {"no listeners", "listeners: []\n",
     "listeners: at least one listener is required"},
    {"plaintext on a public address",
     "listeners:\n  - address: 0.0.0.0:50051\n",
     "listeners[0].address: plaintext on non-loopback address "
     "'0.0.0.0:50051'; configure tls, or set allow_insecure: true to accept "
     "unencrypted connections"},
    {"plaintext forced", "listeners:\n  - address: 0.0.0.0:50051\n"
                         "    allow_insecure: true\n", NULL},
    {"plaintext on [::]", "listeners:\n  - address: 127.0.0.1:1\n"
                          "  - address: '[::]:1'\n",
     "listeners[1].address: plaintext on non-loopback address '[::]:1'; "
     "configure tls, or set allow_insecure: true to accept unencrypted "
     "connections"},
    {"plaintext on unix", "listeners:\n  - address: unix:s.sock\n", NULL},
    {"tls on a public address",
     "listeners:\n  - address: 0.0.0.0:8443\n    tls:\n"
     "      cert_file: server.crt\n      key_file: server.key\n", NULL},
    {"mtls", "listeners:\n  - address: 0.0.0.0:8443\n    tls:\n"
             "      cert_file: server.crt\n      key_file: server.key\n"
             "      client_ca_file: ca.crt\n", NULL},
    {"cert without key",
     "listeners:\n  - address: 127.0.0.1:1\n    tls:\n"
     "      cert_file: server.crt\n",
     "listeners[0].tls: cert_file and key_file must be set together"},
    {"key without cert",
     "listeners:\n  - address: 127.0.0.1:1\n    tls:\n"
     "      key_file: server.key\n",
     "listeners[0].tls: cert_file and key_file must be set together"},
    {"client CA without cert",
     "listeners:\n  - address: 127.0.0.1:1\n    tls:\n"
     "      client_ca_file: ca.crt\n",
     "listeners[0].tls.client_ca_file: requires cert_file and key_file"},
    {"cert missing",
     "listeners:\n  - address: 127.0.0.1:1\n    tls:\n"
     "      cert_file: missing.crt\n      key_file: server.key\n",
     "listeners[0].tls.cert_file: cannot open 'missing.crt': No such file "
     "or directory"},
    {"key missing",
     "listeners:\n  - address: 127.0.0.1:1\n    tls:\n"
     "      cert_file: server.crt\n      key_file: missing.key\n",
     "listeners[0].tls.key_file: cannot open 'missing.key': No such file or "
     "directory"},
    {"client CA missing",
     "listeners:\n  - address: 127.0.0.1:1\n    tls:\n"
     "      cert_file: server.crt\n      key_file: server.key\n"
     "      client_ca_file: missing-ca.crt\n",
     "listeners[0].tls.client_ca_file: cannot open 'missing-ca.crt': No "
     "such file or directory"},
    {"cert is a directory",
     "listeners:\n  - address: 127.0.0.1:1\n    tls:\n"
     "      cert_file: .\n      key_file: server.key\n",
     "listeners[0].tls.cert_file: '.' is not a regular file"},
    {"same address twice",
     "listeners:\n  - address: 127.0.0.1:50051\n"
     "  - address: unix:a.sock\n  - address: 127.0.0.1:50051\n",
     "listeners[2].address: '127.0.0.1:50051' is already used by "
     "listeners[0]"},
    {"data_dir unset", "data_dir: ''\n", "data_dir: must be set"},
};

START_TEST(test_validate)
{
    struct sg_config *cfg;
    struct sg_error err = SG_ERROR_INIT;
    int rc;

    ck_assert_int_eq(chdir(CONFIG_DATA), 0);
    cfg = load_ok(validate_cases[_i].text);
    rc = sg_config_validate(cfg, &err);
    if (validate_cases[_i].message == NULL) {
        ck_assert_msg(rc == 0, "%s: %s", validate_cases[_i].what,
                      err.message);
    } else {
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq(err.code, SG_ERR_CONFIG);
        ck_assert_msg(STREQ(err.message, validate_cases[_i].message),
                      "%s:\n got  %s\n want %s", validate_cases[_i].what,
                      err.message, validate_cases[_i].message);
    }
    sg_error_reset(&err);
    sg_config_free(cfg);
}
END_TEST

/* Values set directly (command-line flags) are checked by the same rules
 * as values from the file. */
START_TEST(test_validate_direct_values)
{
    const char *const bad_addr[] = {"nope"};
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;

    cfg->workers = 300;
    ck_assert_int_eq(sg_config_validate(cfg, &err), -1);
    ck_assert_str_eq(err.message,
                     "server.workers: 300 is out of range (0..256)");
    sg_error_reset(&err);
    cfg->workers = 0;

    cfg->max_metadata_bytes = 10;
    ck_assert_int_eq(sg_config_validate(cfg, &err), -1);
    ck_assert_str_eq(err.message, "server.max_metadata_bytes: 10 is out of "
                     "range (1024..1048576)");
    sg_error_reset(&err);
    cfg->max_metadata_bytes = 16384;

    cfg->keepalive_timeout_ms = 0;
    ck_assert_int_eq(sg_config_validate(cfg, &err), -1);
    ck_assert_str_eq(err.message, "server.keepalive.timeout_ms: 0 is out of "
                     "range (1000..3600000)");
    sg_error_reset(&err);
    cfg->keepalive_timeout_ms = 20000;

    cfg->log_filters = strdup("server");
    ck_assert_int_eq(sg_config_validate(cfg, &err), -1);
    ck_assert_str_eq(err.message, "log.filters: log filter 'server': "
                     "expected CATEGORY:LEVEL");
    sg_error_reset(&err);
    free(cfg->log_filters);
    cfg->log_filters = NULL;

    ck_assert_int_eq(sg_config_set_listen(cfg, bad_addr, 1, &err), 0);
    ck_assert_int_eq(sg_config_validate(cfg, &err), -1);
    ck_assert_str_eq(err.message, "listeners[0].address: 'nope' is not a "
                     "valid address: missing ':PORT'");
    sg_error_reset(&err);
    sg_config_free(cfg);
}
END_TEST

/* ---- the shipped sample -------------------------------------------- */

START_TEST(test_driver_settings_as_json)
{
    struct sg_config *cfg = load_ok(
        "driver:\n"
        "  name: noop\n"
        "  settings:\n"
        "    zeta: \"1\"\n"
        "    alpha: 12\n"
        "    neg: -3\n"
        "    ratio: 0.5\n"
        "    on: true\n"
        "    none: ~\n"
        "    word: hello\n"
        "    list: [1, two, {k: v}]\n");

    ck_assert_str_eq(cfg->driver_name, "noop");
    /* Keys sorted; plain scalars typed by the YAML core schema, quoted
       ones kept as strings. */
    ck_assert_str_eq(cfg->driver_settings,
                     "{\"alpha\":12,\"list\":[1,\"two\",{\"k\":\"v\"}],"
                     "\"neg\":-3,\"none\":null,\"on\":true,\"ratio\":0.5,"
                     "\"word\":\"hello\",\"zeta\":\"1\"}");
    sg_config_free(cfg);
}
END_TEST

START_TEST(test_driver_settings_from_env)
{
    char *const good[] = {"SANDGATE_DRIVER_SETTINGS={\"b\": 1, \"a\": [true]}",
                          "SANDGATE_STORE_SQLITE_DURABILITY=normal", NULL};
    char *const bad[] = {"SANDGATE_DRIVER_SETTINGS=[1]", NULL};
    char *const dup[] = {"SANDGATE_DRIVER_SETTINGS={\"a\":1,\"a\":2}", NULL};
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_msg(sg_config_apply_env(cfg, good, &err) == 0, "%s",
                  err.message);
    ck_assert_str_eq(cfg->driver_settings, "{\"a\":[true],\"b\":1}");
    ck_assert_str_eq(cfg->store_durability, "normal");
    ck_assert_int_eq(sg_config_apply_env(cfg, bad, &err), -1);
    ck_assert_str_eq(err.message, "environment: SANDGATE_DRIVER_SETTINGS: "
                                  "expected a JSON object: not an object");
    sg_error_reset(&err);
    ck_assert_int_eq(sg_config_apply_env(cfg, dup, &err), -1);
    ck_assert(STRPREFIX(err.message, "environment: SANDGATE_DRIVER_SETTINGS: "
                                     "expected a JSON object: duplicate"));
    sg_error_reset(&err);
    sg_config_free(cfg);
}
END_TEST

START_TEST(test_sample_config)
{
    struct sg_config *cfg = sg_config_new();
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_msg(sg_config_load_file(cfg, SG_SOURCE_ROOT
                                      "/docs/sandgate.yaml", &err) == 0,
                  "%s", err.message);
    ck_assert_msg(sg_config_validate(cfg, &err) == 0, "%s", err.message);
    /* It spells out the defaults (the build-time ones as shipped). */
    assert_defaults(cfg, false);
    ck_assert_uint_eq(cfg->n_listeners, 1);
    ck_assert_str_eq(cfg->listeners[0].address, "127.0.0.1:50051");
    ck_assert_ptr_null(cfg->listeners[0].cert_file);
    ck_assert(!cfg->listeners[0].allow_insecure);
    ck_assert_str_eq(cfg->data_dir, "sandgate-data");
    sg_config_free(cfg);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *load_tc = tcase_create("load");
    TCase *env_tc = tcase_create("env");
    TCase *validate_tc = tcase_create("validate");

    tcase_add_test(load_tc, test_defaults);
    tcase_add_loop_test(load_tc, test_empty_documents, 0,
                        (int)SG_N_ELEMENTS(empty_docs));
    tcase_add_test(load_tc, test_every_key_from_file);
    tcase_add_test(load_tc, test_load_twice_merges);
    tcase_add_loop_test(load_tc, test_booleans, 0,
                        (int)SG_N_ELEMENTS(bool_cases));
    tcase_add_test(load_tc, test_scalar_forms);
    tcase_add_test(load_tc, test_null_and_empty_unset_strings);
    tcase_add_test(load_tc, test_range_limits_accepted);
    tcase_add_loop_test(load_tc, test_load_errors, 0,
                        (int)SG_N_ELEMENTS(load_errors));
    tcase_add_test(load_tc, test_load_file_missing);
    tcase_add_test(load_tc, test_driver_settings_as_json);
    tcase_add_test(env_tc, test_driver_settings_from_env);
    tcase_add_test(load_tc, test_load_file_error_names_file);
    tcase_add_loop_test(load_tc, test_addresses, 0,
                        (int)SG_N_ELEMENTS(address_cases));
    tcase_add_loop_test(load_tc, test_address_is_local, 0,
                        (int)SG_N_ELEMENTS(local_cases));
    tcase_add_test(load_tc, test_address_is_local_null);
    tcase_add_test(load_tc, test_sample_config);
    suite_add_tcase(s, load_tc);

    tcase_add_test(env_tc, test_env_every_variable);
    tcase_add_test(env_tc, test_env_overrides_file);
    tcase_add_test(env_tc, test_env_listen);
    tcase_add_loop_test(env_tc, test_env_errors, 0,
                        (int)SG_N_ELEMENTS(env_errors));
    tcase_add_test(env_tc, test_env_none);
    tcase_add_test(env_tc, test_set_listen);
    suite_add_tcase(s, env_tc);

    tcase_add_loop_test(validate_tc, test_validate, 0,
                        (int)SG_N_ELEMENTS(validate_cases));
    tcase_add_test(validate_tc, test_validate_direct_values);
    suite_add_tcase(s, validate_tc);
    return s;
}

SG_TEST_MAIN(config_suite)
