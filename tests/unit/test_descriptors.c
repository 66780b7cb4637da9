/*
 * test_descriptors.c: the descriptor index, the redacting formatter, and
 * the consistency of the served tables and the authorization annotations
 * with the embedded descriptor set.
 */
#include "internal.h"

#include "testutils.h"

#include "descriptors.h"
#include "services.h"

#include "google_protobuf_descriptor.pb-c.h"
#include "google_protobuf_struct.pb-c.h"
#include "google_protobuf_timestamp.pb-c.h"
#include "sandgate_v1_options.pb-c.h"
#include "sandgate_v1_sandbox.pb-c.h"
#include "sg_fds.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#define SECRET_VALUE "hunter2-do-not-log"

static void setup(void)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_msg(sg_descriptors_init(&err) == 0, "init: %s", err.message);
    sg_error_reset(&err);
}

static void teardown(void)
{
    sg_descriptors_cleanup();
}

/* ---- helpers ---- */

static Google__Protobuf__FileDescriptorSet *parse_set(void)
{
    Google__Protobuf__FileDescriptorSet *set =
        google__protobuf__file_descriptor_set__unpack(
            NULL, sg_descriptor_set_len, sg_descriptor_set);

    ck_assert_ptr_nonnull(set);
    return set;
}

/* Name of a serialized FileDescriptorProto (caller frees). */
static char *file_name(const ProtobufCBinaryData *raw)
{
    Google__Protobuf__FileDescriptorProto *fd =
        google__protobuf__file_descriptor_proto__unpack(NULL, raw->len,
                                                        raw->data);
    char *name;

    ck_assert_ptr_nonnull(fd);
    name = strdup(fd->name);
    google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
    return name;
}

/* Index of `name` in files, or -1. */
static ssize_t find_in(ProtobufCBinaryData *files, ssize_t n,
                       const char *name)
{
    ssize_t found = -1;

    for (ssize_t i = 0; i < n; i++) {
        char *fn = file_name(&files[i]);

        if (STREQ(fn, name)) {
            ck_assert_msg(found < 0, "%s returned twice", name);
            found = i;
        }
        free(fn);
    }
    return found;
}

/* The file that defines `symbol` (caller frees), or NULL. */
static char *symbol_file(const char *symbol)
{
    ProtobufCBinaryData *files = NULL;
    ssize_t n = sg_descriptors_symbol_with_deps(symbol, &files);
    char *name = NULL;

    ck_assert_int_ge(n, 0);
    if (n > 0)
        name = file_name(&files[0]);
    free(files);
    return name;
}

static void assert_symbol_in(const char *symbol, const char *file)
{
    char *got = symbol_file(symbol);

    ck_assert_msg(got != NULL, "symbol %s not found", symbol);
    ck_assert_str_eq(got, file);
    free(got);
}

static char *format(const ProtobufCMessage *msg)
{
    struct sg_buf b = SG_BUF_INIT;

    sg_descriptors_format_redacted(&b, msg);
    ck_assert_int_eq(sg_buf_error(&b), 0);
    return sg_buf_steal(&b);
}

static const char *strip_dot(const char *s)
{
    return s[0] == '.' ? s + 1 : s;
}

/* ---- the index ---- */

START_TEST(test_init_idempotent)
{
    struct sg_error err = SG_ERROR_INIT;

    ck_assert_int_eq(sg_descriptors_init(&err), 0);
    ck_assert_int_eq(sg_descriptors_init(&err), 0);
    ck_assert(!sg_error_is_set(&err));
}
END_TEST

START_TEST(test_service_list)
{
    static const char *const expected[] = {
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "sandgate.v1.CredentialService",
        "sandgate.v1.EventService",
        "sandgate.v1.SandboxService",
    };

    ck_assert_uint_eq(sg_descriptors_n_services(), SG_N_ELEMENTS(expected));
    for (size_t i = 0; i < SG_N_ELEMENTS(expected); i++)
        ck_assert_str_eq(sg_descriptors_service_name(i), expected[i]);
    ck_assert_ptr_null(sg_descriptors_service_name(SG_N_ELEMENTS(expected)));
}
END_TEST

START_TEST(test_file_by_filename)
{
    static const char *const deps[] = {
        "google/protobuf/struct.proto",
        "google/protobuf/timestamp.proto",
        "sandgate/v1/options.proto",
        "google/protobuf/descriptor.proto", /* via options.proto */
    };
    ProtobufCBinaryData *files = NULL;
    ssize_t n = sg_descriptors_file_with_deps("sandgate/v1/sandbox.proto",
                                              &files);
    Google__Protobuf__FileDescriptorSet *set = parse_set();

    ck_assert_int_eq(n, 1 + (ssize_t)SG_N_ELEMENTS(deps));
    ck_assert_int_eq(find_in(files, n, "sandgate/v1/sandbox.proto"), 0);
    for (size_t i = 0; i < SG_N_ELEMENTS(deps); i++)
        ck_assert_msg(find_in(files, n, deps[i]) > 0, "%s missing", deps[i]);

    /* Dependencies come after every file that imports them. */
    for (ssize_t i = 0; i < n; i++) {
        char *name = file_name(&files[i]);

        for (size_t f = 0; f < set->n_file; f++) {
            if (STRNEQ(set->file[f]->name, name))
                continue;
            for (size_t d = 0; d < set->file[f]->n_dependency; d++)
                ck_assert_int_gt(
                    find_in(files, n, set->file[f]->dependency[d]), i);
        }
        free(name);
    }
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    free(files);
}
END_TEST

START_TEST(test_file_bytes_are_exact)
{
    /* Reflection serves the bytes protoc wrote, one file per entry. */
    Google__Protobuf__FileDescriptorSet *set = parse_set();

    for (size_t f = 0; f < set->n_file; f++) {
        ProtobufCBinaryData *files = NULL;
        ssize_t n = sg_descriptors_file_with_deps(set->file[f]->name, &files);
        size_t len;
        uint8_t *packed;

        ck_assert_int_ge(n, 1);
        len = google__protobuf__file_descriptor_proto__get_packed_size(
            set->file[f]);
        packed = malloc(len);
        ck_assert_ptr_nonnull(packed);
        google__protobuf__file_descriptor_proto__pack(set->file[f], packed);
        ck_assert_uint_eq(files[0].len, len);
        ck_assert(memcmp(files[0].data, packed, len) == 0);
        free(packed);
        free(files);
    }
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
}
END_TEST

START_TEST(test_file_unknown)
{
    ProtobufCBinaryData *files = (ProtobufCBinaryData *)&files;

    ck_assert_int_eq(sg_descriptors_file_with_deps("nope.proto", &files), 0);
    ck_assert_ptr_null(files);
    ck_assert_int_eq(sg_descriptors_file_with_deps("", &files), 0);
    ck_assert_int_eq(sg_descriptors_file_with_deps(NULL, &files), 0);
}
END_TEST

START_TEST(test_symbols)
{
    assert_symbol_in("sandgate.v1.SandboxService",
                     "sandgate/v1/sandbox.proto");
    assert_symbol_in("sandgate.v1.SandboxService.ExecSandbox",
                     "sandgate/v1/sandbox.proto");
    assert_symbol_in("sandgate.v1.CredentialService.CheckCredential",
                     "sandgate/v1/credential.proto");
    assert_symbol_in("sandgate.v1.EventService", "sandgate/v1/event.proto");
    assert_symbol_in("sandgate.v1.Sandbox", "sandgate/v1/sandbox.proto");
    /* nested messages: a map entry and a hand-written one */
    assert_symbol_in("sandgate.v1.Sandbox.LabelsEntry",
                     "sandgate/v1/sandbox.proto");
    assert_symbol_in("google.rpc.BadRequest.FieldViolation",
                     "google/rpc/error_details.proto");
    /* enums, fields, extensions */
    assert_symbol_in("sandgate.v1.SandboxPhase", "sandgate/v1/sandbox.proto");
    assert_symbol_in("sandgate.v1.EventType", "sandgate/v1/event.proto");
    assert_symbol_in("sandgate.v1.Sandbox.name", "sandgate/v1/sandbox.proto");
    assert_symbol_in("sandgate.v1.secret", "sandgate/v1/options.proto");
    assert_symbol_in("sandgate.v1.authorization",
                     "sandgate/v1/options.proto");
    /* standard services, and a leading dot as some clients send it */
    assert_symbol_in("grpc.health.v1.Health", "grpc/health/v1/health.proto");
    assert_symbol_in("grpc.reflection.v1alpha.ServerReflection",
                     "grpc/reflection/v1alpha/reflection.proto");
    assert_symbol_in(".google.protobuf.Timestamp",
                     "google/protobuf/timestamp.proto");
}
END_TEST

START_TEST(test_symbol_unknown)
{
    ProtobufCBinaryData *files = NULL;

    ck_assert_int_eq(
        sg_descriptors_symbol_with_deps("sandgate.v1.NoSuchThing", &files), 0);
    ck_assert_ptr_null(files);
    ck_assert_int_eq(sg_descriptors_symbol_with_deps("sandgate", &files), 0);
    ck_assert_int_eq(sg_descriptors_symbol_with_deps("", &files), 0);
    ck_assert_int_eq(
        sg_descriptors_symbol_with_deps("sandgate.v1.Sandbox.nope", &files),
        0);
}
END_TEST

START_TEST(test_extensions)
{
    ProtobufCBinaryData *files = NULL;
    int32_t *numbers = NULL;
    ssize_t n;
    char *name;
    bool found = false;

    ck_assert(sg_descriptors_is_message("google.protobuf.MethodOptions"));
    ck_assert(sg_descriptors_is_message("sandgate.v1.Sandbox.LabelsEntry"));
    ck_assert(!sg_descriptors_is_message("sandgate.v1.SandboxService"));
    ck_assert(!sg_descriptors_is_message("sandgate.v1.Nope"));

    n = sg_descriptors_extension_numbers("google.protobuf.MethodOptions",
                                         &numbers);
    ck_assert_int_ge(n, 1);
    for (ssize_t i = 0; i < n; i++) {
        if (i > 0)
            ck_assert_int_lt(numbers[i - 1], numbers[i]);
        if (numbers[i] == 50002) {
            found = true;
            n = sg_descriptors_extension_with_deps(
                "google.protobuf.MethodOptions", numbers[i], &files);
            ck_assert_int_eq(n, 2);
            name = file_name(&files[0]);
            ck_assert_str_eq(name, "sandgate/v1/options.proto");
            free(name);
            free(files);
            break;
        }
    }
    ck_assert(found);
    free(numbers);

    n = sg_descriptors_extension_numbers("sandgate.v1.Sandbox", &numbers);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_null(numbers);
    ck_assert_int_eq(sg_descriptors_extension_with_deps(
                         "google.protobuf.MethodOptions", 7, &files),
                     0);
}
END_TEST

START_TEST(test_secret_fields)
{
    ck_assert(sg_descriptors_field_is_secret("sandgate.v1.ExecSandboxRequest",
                                             "stdin_data"));
    ck_assert(sg_descriptors_field_is_secret("sandgate.v1.ExecOutput",
                                             "data"));
    ck_assert(!sg_descriptors_field_is_secret("sandgate.v1.ExecOutput",
                                              "stream"));
    ck_assert(sg_descriptors_field_is_secret("sandgate.v1.SandboxLogChunk",
                                             "data"));
    ck_assert(!sg_descriptors_field_is_secret(
        "sandgate.v1.ExecSandboxRequest", "start"));
    ck_assert(!sg_descriptors_field_is_secret("sandgate.v1.Sandbox", "name"));
    ck_assert(!sg_descriptors_field_is_secret("sandgate.v1.SandboxSpec",
                                              "env"));
    ck_assert(!sg_descriptors_field_is_secret("sandgate.v1.Nope", "data"));
    ck_assert(!sg_descriptors_field_is_secret(NULL, "data"));
}
END_TEST

/* ---- the redacting formatter ---- */

START_TEST(test_redact_top_level)
{
    Sandgate__V1__ExecSandboxRequest req =
        SANDGATE__V1__EXEC_SANDBOX_REQUEST__INIT;
    char *s;

    req.request_case = SANDGATE__V1__EXEC_SANDBOX_REQUEST__REQUEST_STDIN_DATA;
    req.stdin_data.data = (uint8_t *)SECRET_VALUE;
    req.stdin_data.len = strlen(SECRET_VALUE);
    s = format(&req.base);
    ck_assert_str_eq(s, "{\"stdin_data\":\"[REDACTED]\"}");
    free(s);
}
END_TEST

/* A message type the index does not know, wrapping ones with secrets. */
struct wrapper {
    ProtobufCMessage base;
    Sandgate__V1__ExecSandboxRequest *inner;
    size_t n_outputs;
    Sandgate__V1__ExecSandboxResponse **outputs;
    char *note;
};

static const ProtobufCFieldDescriptor wrapper_fields[] = {
    {
        .name = "inner",
        .id = 1,
        .label = PROTOBUF_C_LABEL_NONE,
        .type = PROTOBUF_C_TYPE_MESSAGE,
        .offset = offsetof(struct wrapper, inner),
        .descriptor = &sandgate__v1__exec_sandbox_request__descriptor,
    },
    {
        .name = "outputs",
        .id = 2,
        .label = PROTOBUF_C_LABEL_REPEATED,
        .type = PROTOBUF_C_TYPE_MESSAGE,
        .quantifier_offset = offsetof(struct wrapper, n_outputs),
        .offset = offsetof(struct wrapper, outputs),
        .descriptor = &sandgate__v1__exec_sandbox_response__descriptor,
    },
    {
        .name = "note",
        .id = 3,
        .label = PROTOBUF_C_LABEL_NONE,
        .type = PROTOBUF_C_TYPE_STRING,
        .offset = offsetof(struct wrapper, note),
    },
};

static const ProtobufCMessageDescriptor wrapper_descriptor = {
    .magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    .name = "test.v1.Wrapper",
    .short_name = "Wrapper",
    .c_name = "Wrapper",
    .package_name = "test.v1",
    .sizeof_message = sizeof(struct wrapper),
    .n_fields = SG_N_ELEMENTS(wrapper_fields),
    .fields = wrapper_fields,
};

START_TEST(test_redact_nested)
{
    Sandgate__V1__ExecSandboxRequest inner =
        SANDGATE__V1__EXEC_SANDBOX_REQUEST__INIT;
    Sandgate__V1__ExecOutput output = SANDGATE__V1__EXEC_OUTPUT__INIT;
    Sandgate__V1__ExecSandboxResponse out1 =
        SANDGATE__V1__EXEC_SANDBOX_RESPONSE__INIT;
    Sandgate__V1__ExecSandboxResponse out2 =
        SANDGATE__V1__EXEC_SANDBOX_RESPONSE__INIT;
    Sandgate__V1__ExecExit exit_msg = SANDGATE__V1__EXEC_EXIT__INIT;
    Sandgate__V1__ExecSandboxResponse *outputs[] = {&out1, &out2};
    struct wrapper w = {.base = PROTOBUF_C_MESSAGE_INIT(&wrapper_descriptor)};
    char *s;

    inner.request_case =
        SANDGATE__V1__EXEC_SANDBOX_REQUEST__REQUEST_STDIN_DATA;
    inner.stdin_data.data = (uint8_t *)SECRET_VALUE;
    inner.stdin_data.len = strlen(SECRET_VALUE);
    output.stream = SANDGATE__V1__OUTPUT_STREAM__OUTPUT_STREAM_STDERR;
    output.data = inner.stdin_data;
    out1.response_case = SANDGATE__V1__EXEC_SANDBOX_RESPONSE__RESPONSE_OUTPUT;
    out1.output = &output;
    exit_msg.exit_code = 3;
    out2.response_case = SANDGATE__V1__EXEC_SANDBOX_RESPONSE__RESPONSE_EXIT;
    out2.exit = &exit_msg;
    w.inner = &inner;
    w.n_outputs = 2;
    w.outputs = outputs;
    w.note = (char *)"visible";

    s = format(&w.base);
    ck_assert_msg(strstr(s, "hunter2") == NULL, "secret leaked: %s", s);
    ck_assert_str_eq(s, "{\"inner\":{\"stdin_data\":\"[REDACTED]\"},"
                        "\"outputs\":[{\"output\":{\"stream\":"
                        "\"OUTPUT_STREAM_STDERR\",\"data\":\"[REDACTED]\"}},"
                        "{\"exit\":{\"exit_code\":3}}],"
                        "\"note\":\"visible\"}");
    free(s);
}
END_TEST

START_TEST(test_redact_fails_closed_before_init)
{
    Sandgate__V1__ExecStart start = SANDGATE__V1__EXEC_START__INIT;
    Sandgate__V1__ExecSandboxRequest req =
        SANDGATE__V1__EXEC_SANDBOX_REQUEST__INIT;
    char *cmd[] = {(char *)SECRET_VALUE};
    char *s;

    sg_descriptors_cleanup();
    start.id = (char *)SECRET_VALUE;
    start.n_command = 1;
    start.command = cmd;
    start.tty = 1;
    req.request_case = SANDGATE__V1__EXEC_SANDBOX_REQUEST__REQUEST_START;
    req.start = &start;
    s = format(&req.base);
    ck_assert_msg(strstr(s, "hunter2") == NULL, "secret leaked: %s", s);
    ck_assert_str_eq(s, "{\"start\":{\"id\":\"[REDACTED]\","
                        "\"command\":\"[REDACTED]\",\"tty\":true}}");
    free(s);
}
END_TEST

START_TEST(test_format_sandbox)
{
    Sandgate__V1__Sandbox sb = SANDGATE__V1__SANDBOX__INIT;
    Sandgate__V1__SandboxSpec spec = SANDGATE__V1__SANDBOX_SPEC__INIT;
    Sandgate__V1__SandboxStatus status = SANDGATE__V1__SANDBOX_STATUS__INIT;
    Sandgate__V1__SandboxPolicy policy = SANDGATE__V1__SANDBOX_POLICY__INIT;
    Sandgate__V1__Sandbox__LabelsEntry label =
        SANDGATE__V1__SANDBOX__LABELS_ENTRY__INIT;
    Sandgate__V1__Sandbox__LabelsEntry *labels[] = {&label};
    Google__Protobuf__Timestamp created = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Google__Protobuf__Struct dc = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Struct k8s = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Struct__FieldsEntry dc_entry =
        GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    Google__Protobuf__Struct__FieldsEntry *dc_entries[] = {&dc_entry};
    Google__Protobuf__Value dc_value = GOOGLE__PROTOBUF__VALUE__INIT;
    Google__Protobuf__Struct__FieldsEntry ns_entry =
        GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    Google__Protobuf__Struct__FieldsEntry cpu_entry =
        GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    Google__Protobuf__Struct__FieldsEntry *k8s_entries[] = {&ns_entry,
                                                            &cpu_entry};
    Google__Protobuf__Value ns_value = GOOGLE__PROTOBUF__VALUE__INIT;
    Google__Protobuf__Value cpu_value = GOOGLE__PROTOBUF__VALUE__INIT;
    char long_name[301];
    uint8_t blob[1000];
    char *s;

    memset(long_name, 'a', 300);
    long_name[300] = '\0';
    memset(blob, 0, sizeof(blob));

    ns_value.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    ns_value.string_value = (char *)"sbx-team-a";
    ns_entry.key = (char *)"namespace";
    ns_entry.value = &ns_value;
    cpu_value.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    cpu_value.number_value = 2;
    cpu_entry.key = (char *)"cpus";
    cpu_entry.value = &cpu_value;
    k8s.n_fields = 2;
    k8s.fields = k8s_entries;
    dc_value.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
    dc_value.struct_value = &k8s;
    dc_entry.key = (char *)"kubernetes";
    dc_entry.value = &dc_value;
    dc.n_fields = 1;
    dc.fields = dc_entries;

    policy.source_case = SANDGATE__V1__SANDBOX_POLICY__SOURCE_INLINE;
    policy.inline_.data = blob;
    policy.inline_.len = sizeof(blob);
    spec.image = (char *)"python:3.12";
    spec.policy = &policy;
    spec.driver_config = &dc;
    status.phase = SANDGATE__V1__SANDBOX_PHASE__SANDBOX_PHASE_READY;
    label.key = (char *)"app";
    label.value = (char *)"review";
    created.seconds = 1798444800; /* 2026-12-28T08:00:00Z */
    created.nanos = 5;

    sb.name = long_name;
    sb.tenant = (char *)"team-a";
    sb.n_labels = 1;
    sb.labels = labels;
    sb.spec = &spec;
    sb.status = &status;
    sb.resource_version = 42;
    sb.create_time = &created;

    s = format(&sb.base);
    ck_assert_msg(strstr(s, "\"name\":\"aaaa") != NULL, "%s", s);
    ck_assert_msg(strstr(s, "a...(300 bytes)\"") != NULL, "%s", s);
    ck_assert_msg(strstr(s, "\"tenant\":\"team-a\"") != NULL, "%s", s);
    ck_assert_msg(strstr(s, "\"labels\":{\"app\":\"review\"}") != NULL,
                  "%s", s);
    ck_assert_msg(strstr(s, "\"driver_config\":{\"kubernetes\":"
                            "{\"namespace\":\"sbx-team-a\",\"cpus\":2}}") !=
                      NULL,
                  "%s", s);
    ck_assert_msg(strstr(s, "\"inline\":\"AAAA") != NULL, "%s", s);
    ck_assert_msg(strstr(s, "...(1000 bytes)\"") != NULL, "%s", s);
    ck_assert_msg(strstr(s, "\"phase\":\"SANDBOX_PHASE_READY\"") != NULL,
                  "%s", s);
    ck_assert_msg(strstr(s, "\"resource_version\":42") != NULL, "%s", s);
    ck_assert_msg(strstr(s, "\"create_time\":\"2026-12-28T08:00:00."
                            "000000005Z\"") != NULL,
                  "%s", s);
    /* proto3 defaults are left out */
    ck_assert_msg(strstr(s, "\"project\"") == NULL, "%s", s);
    ck_assert_msg(strstr(s, "\"ttl_seconds\"") == NULL, "%s", s);
    ck_assert_uint_lt(strlen(s), 1000);
    free(s);
}
END_TEST

START_TEST(test_format_null)
{
    char *s = format(NULL);

    ck_assert_str_eq(s, "null");
    free(s);
}
END_TEST

/* ---- served tables against the descriptor set ---- */

static enum sg_method_kind method_kind(
    const Google__Protobuf__MethodDescriptorProto *m)
{
    bool cs = m->has_client_streaming && m->client_streaming;
    bool ss = m->has_server_streaming && m->server_streaming;

    ck_assert_msg(!cs || ss, "%s: client-only streams are not supported",
                  m->name);
    if (cs)
        return SG_METHOD_BIDI_STREAM;
    return ss ? SG_METHOD_SERVER_STREAM : SG_METHOD_UNARY;
}

/*
 * Check that `svc` serves exactly the methods of proto service `sd` in
 * package `pkg`, with the right kinds and request types.
 */
static void check_service(const struct sg_service *svc, const char *pkg,
                          const Google__Protobuf__ServiceDescriptorProto *sd)
{
    char full[256];

    snprintf(full, sizeof(full), "%s.%s", pkg, sd->name);
    ck_assert_str_eq(svc->name, full);
    ck_assert_msg(svc->n_methods == sd->n_method,
                  "%s: %zu methods served, %zu in the proto", full,
                  svc->n_methods, sd->n_method);
    for (size_t i = 0; i < sd->n_method; i++) {
        const Google__Protobuf__MethodDescriptorProto *md = sd->method[i];
        const struct sg_method *m = NULL;
        char path[512];
        char want[256];
        const char *in = strip_dot(md->input_type);

        snprintf(path, sizeof(path), "/%s/%s", full, md->name);
        for (size_t j = 0; j < svc->n_methods; j++)
            if (STREQ(svc->methods[j].path, path))
                m = &svc->methods[j];
        ck_assert_msg(m != NULL, "%s is not served", path);
        ck_assert_msg(m->kind == method_kind(md), "%s: wrong kind", path);
        ck_assert_msg(m->request != NULL, "%s: no request type", path);
        /* v1alpha reflection is decoded with the (identical) v1 types. */
        if (STRPREFIX(in, "grpc.reflection.v1alpha."))
            snprintf(want, sizeof(want), "grpc.reflection.v1.%s",
                     in + strlen("grpc.reflection.v1alpha."));
        else
            snprintf(want, sizeof(want), "%s", in);
        ck_assert_msg(STREQ(m->request->name, want),
                      "%s: request type %s, proto says %s", path,
                      m->request->name, want);
    }
}

static const Google__Protobuf__ServiceDescriptorProto *
find_proto_service(const Google__Protobuf__FileDescriptorSet *set,
                   const char *full, const char **pkg)
{
    for (size_t f = 0; f < set->n_file; f++) {
        const Google__Protobuf__FileDescriptorProto *fd = set->file[f];
        size_t lp = strlen(fd->package);

        if (strncmp(full, fd->package, lp) != 0 || full[lp] != '.')
            continue;
        for (size_t s = 0; s < fd->n_service; s++) {
            if (STREQ(full + lp + 1, fd->service[s]->name)) {
                *pkg = fd->package;
                return fd->service[s];
            }
        }
    }
    return NULL;
}

START_TEST(test_sandgate_tables_match_protos)
{
    static const struct {
        const char *name;
        const struct sg_service *svc;
    } tables[] = {
        {"sandgate.v1.SandboxService", &sg_sandbox_service},
        {"sandgate.v1.CredentialService", &sg_credential_service},
        {"sandgate.v1.EventService", &sg_event_service},
    };
    Google__Protobuf__FileDescriptorSet *set = parse_set();
    size_t n_sandgate = 0;

    for (size_t i = 0; i < SG_N_ELEMENTS(tables); i++) {
        const char *pkg = NULL;
        const Google__Protobuf__ServiceDescriptorProto *sd =
            find_proto_service(set, tables[i].name, &pkg);

        ck_assert_msg(sd != NULL, "%s not in the protos", tables[i].name);
        check_service(tables[i].svc, pkg, sd);
    }
    /* ...and the protos define no other sandgate.v1 service. */
    for (size_t f = 0; f < set->n_file; f++)
        if (STREQ(set->file[f]->package, "sandgate.v1"))
            n_sandgate += set->file[f]->n_service;
    ck_assert_uint_eq(n_sandgate, SG_N_ELEMENTS(tables));
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
}
END_TEST

START_TEST(test_served_equals_reflected)
{
    Google__Protobuf__FileDescriptorSet *set = parse_set();
    size_t n_served = 0;

    for (size_t i = 0; sg_services[i]; i++) {
        const char *pkg = NULL;
        const Google__Protobuf__ServiceDescriptorProto *sd =
            find_proto_service(set, sg_services[i]->name, &pkg);

        ck_assert_msg(sd != NULL, "%s is served but not reflected",
                      sg_services[i]->name);
        check_service(sg_services[i], pkg, sd);
        n_served++;
    }
    ck_assert_uint_eq(n_served, sg_descriptors_n_services());
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
}
END_TEST

/* ---- the authorization annotations ---- */

#define TARGET(x) SANDGATE__V1__AUTHORIZATION_TARGET__AUTHORIZATION_TARGET_##x

static int32_t extension_number(const Google__Protobuf__FileDescriptorSet *set,
                                const char *extendee, const char *name)
{
    for (size_t f = 0; f < set->n_file; f++) {
        const Google__Protobuf__FileDescriptorProto *fd = set->file[f];

        if (STRNEQ(fd->package, "sandgate.v1"))
            continue;
        for (size_t i = 0; i < fd->n_extension; i++)
            if (STREQ(fd->extension[i]->name, name) &&
                STREQ(strip_dot(fd->extension[i]->extendee), extendee))
                return fd->extension[i]->number;
    }
    return 0;
}

/* The AuthorizationRule in a method's options, or NULL. */
static Sandgate__V1__AuthorizationRule *
method_rule(const Google__Protobuf__MethodDescriptorProto *md, int32_t number)
{
    const ProtobufCMessage *opts;
    Sandgate__V1__AuthorizationRule *rule = NULL;

    if (!md->options)
        return NULL;
    opts = &md->options->base;
    for (unsigned i = 0; i < opts->n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *u = &opts->unknown_fields[i];
        size_t len = 0;
        size_t used = 0;

        if (u->tag != (uint32_t)number ||
            u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
            continue;
        /* protobuf-c keeps the length prefix in the unknown field. */
        for (unsigned shift = 0; used < u->len; shift += 7) {
            len |= (size_t)(u->data[used] & 0x7f) << shift;
            if (!(u->data[used++] & 0x80))
                break;
        }
        ck_assert_uint_eq(used + len, u->len);
        ck_assert_ptr_null(rule);
        rule = sandgate__v1__authorization_rule__unpack(NULL, len,
                                                        u->data + used);
        ck_assert_ptr_nonnull(rule);
    }
    return rule;
}

/* Resolve a dotted field path in a message type; returns its field. */
static const ProtobufCFieldDescriptor *
resolve_path(const ProtobufCMessageDescriptor *d, const char *path)
{
    const ProtobufCFieldDescriptor *f = NULL;
    const char *part = path;

    for (;;) {
        const char *dot = strchr(part, '.');
        size_t len = dot ? (size_t)(dot - part) : strlen(part);
        char name[64];

        ck_assert_msg(d != NULL, "%s: not a message before '%s'", path, part);
        ck_assert_uint_lt(len, sizeof(name));
        memcpy(name, part, len);
        name[len] = '\0';
        f = protobuf_c_message_descriptor_get_field_by_name(d, name);
        ck_assert_msg(f != NULL, "%s: no field '%s' in %s", path, name,
                      d->name);
        if (!dot)
            return f;
        d = f->type == PROTOBUF_C_TYPE_MESSAGE ? f->descriptor : NULL;
        part = dot + 1;
    }
}

static void check_string_path(const struct sg_method *m, const char *path)
{
    const ProtobufCFieldDescriptor *f;

    if (!path || !path[0])
        return;
    f = resolve_path(m->request, path);
    ck_assert_msg(f->type == PROTOBUF_C_TYPE_STRING &&
                      f->label != PROTOBUF_C_LABEL_REPEATED,
                  "%s: %s is not a string field", m->path, path);
}

static const struct sg_method *served_method(const char *path)
{
    for (size_t i = 0; sg_services[i]; i++)
        for (size_t j = 0; j < sg_services[i]->n_methods; j++)
            if (STREQ(sg_services[i]->methods[j].path, path))
                return &sg_services[i]->methods[j];
    return NULL;
}

START_TEST(test_authorization_rules)
{
    static const char *const prefixes[] = {
        [SANDGATE__V1__RESOURCE_KIND__RESOURCE_KIND_SANDBOX] = "sandboxes.",
        [SANDGATE__V1__RESOURCE_KIND__RESOURCE_KIND_CREDENTIAL] =
            "credentials.",
        [SANDGATE__V1__RESOURCE_KIND__RESOURCE_KIND_EVENT] = "events.",
    };
    Google__Protobuf__FileDescriptorSet *set = parse_set();
    int32_t number = extension_number(set, "google.protobuf.MethodOptions",
                                      "authorization");
    char *perms[64];
    char *visibility[64];
    size_t n_perms = 0;
    size_t n_vis = 0;

    ck_assert_int_ge(number, 50000);
    ck_assert_int_le(number, 99999);
    for (size_t f = 0; f < set->n_file; f++) {
        const Google__Protobuf__FileDescriptorProto *fd = set->file[f];

        if (STRNEQ(fd->package, "sandgate.v1"))
            continue;
        for (size_t s = 0; s < fd->n_service; s++) {
            const Google__Protobuf__ServiceDescriptorProto *sd =
                fd->service[s];

            for (size_t i = 0; i < sd->n_method; i++) {
                const Google__Protobuf__MethodDescriptorProto *md =
                    sd->method[i];
                Sandgate__V1__AuthorizationRule *r = method_rule(md, number);
                const struct sg_method *m;
                char path[256];

                snprintf(path, sizeof(path), "/sandgate.v1.%s/%s", sd->name,
                         md->name);
                ck_assert_msg(r != NULL, "%s has no authorization rule",
                              path);
                m = served_method(path);
                ck_assert_msg(m != NULL, "%s is not served", path);

                ck_assert_msg(r->resource > 0 &&
                                  (size_t)r->resource < SG_N_ELEMENTS(prefixes),
                              "%s: resource", path);
                ck_assert_msg(STRPREFIX(r->permission, prefixes[r->resource]),
                              "%s: permission %s does not match resource",
                              path, r->permission);
                ck_assert_msg(!r->allow_unauthenticated,
                              "%s: sandgate RPCs need a caller", path);
                ck_assert_msg(r->target == TARGET(COLLECTION) ||
                                  r->target == TARGET(OBJECT),
                              "%s: target", path);
                if (r->target == TARGET(OBJECT)) {
                    ck_assert_msg(r->id_field[0], "%s: object without id",
                                  path);
                    /* Reads by id never reveal existence. */
                    ck_assert_msg(r->visibility_permission[0],
                                  "%s: object without visibility", path);
                } else {
                    ck_assert_msg(!r->id_field[0], "%s: id_field", path);
                }
                check_string_path(m, r->id_field);
                check_string_path(m, r->tenant_field);
                check_string_path(m, r->project_field);
                check_string_path(m, r->namespace_field);
                for (size_t k = 0; k < r->n_scopes; k++)
                    ck_assert_msg(r->scopes[k] > 0, "%s: scope", path);
                /* Mutations and credential resolution are audited. */
                if (STRPREFIX(md->name, "Create") ||
                    STRPREFIX(md->name, "Delete") ||
                    STREQ(md->name, "ExecSandbox") ||
                    STREQ(md->name, "CheckCredential"))
                    ck_assert_msg(r->audit, "%s: not audited", path);

                for (size_t k = 0; k < n_perms; k++)
                    ck_assert_msg(STRNEQ(perms[k], r->permission),
                                  "%s: permission %s used twice", path,
                                  r->permission);
                ck_assert_uint_lt(n_perms, SG_N_ELEMENTS(perms));
                perms[n_perms++] = strdup(r->permission);
                if (r->visibility_permission[0]) {
                    ck_assert_uint_lt(n_vis, SG_N_ELEMENTS(visibility));
                    visibility[n_vis++] = strdup(r->visibility_permission);
                }
                sandgate__v1__authorization_rule__free_unpacked(r, NULL);
            }
        }
    }
    ck_assert_uint_eq(n_perms, 13);
    /* A visibility permission is the permission of some RPC. */
    for (size_t v = 0; v < n_vis; v++) {
        bool found = false;

        for (size_t k = 0; k < n_perms; k++)
            found = found || STREQ(perms[k], visibility[v]);
        ck_assert_msg(found, "visibility %s is no RPC's permission",
                      visibility[v]);
        free(visibility[v]);
    }
    for (size_t k = 0; k < n_perms; k++)
        free(perms[k]);
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
}
END_TEST

static Suite *descriptors_suite(void)
{
    Suite *s = suite_create("descriptors");
    TCase *index = tcase_create("index");
    TCase *fmt = tcase_create("format");
    TCase *tables = tcase_create("tables");

    tcase_add_checked_fixture(index, setup, teardown);
    tcase_add_test(index, test_init_idempotent);
    tcase_add_test(index, test_service_list);
    tcase_add_test(index, test_file_by_filename);
    tcase_add_test(index, test_file_bytes_are_exact);
    tcase_add_test(index, test_file_unknown);
    tcase_add_test(index, test_symbols);
    tcase_add_test(index, test_symbol_unknown);
    tcase_add_test(index, test_extensions);
    tcase_add_test(index, test_secret_fields);
    suite_add_tcase(s, index);

    tcase_add_checked_fixture(fmt, setup, teardown);
    tcase_add_test(fmt, test_redact_top_level);
    tcase_add_test(fmt, test_redact_nested);
    tcase_add_test(fmt, test_redact_fails_closed_before_init);
    tcase_add_test(fmt, test_format_sandbox);
    tcase_add_test(fmt, test_format_null);
    suite_add_tcase(s, fmt);

    tcase_add_checked_fixture(tables, setup, teardown);
    tcase_add_test(tables, test_sandgate_tables_match_protos);
    tcase_add_test(tables, test_served_equals_reflected);
    tcase_add_test(tables, test_authorization_rules);
    suite_add_tcase(s, tables);
    return s;
}

SG_TEST_MAIN(descriptors_suite)
