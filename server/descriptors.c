/*
 * descriptors.c: the index of the embedded FileDescriptorSet.
 *
 * sg_descriptors_init() parses the set once with the protoc-c generated
 * descriptor.proto types and builds, all sorted for binary search:
 *   - the files, each with its serialized bytes (borrowed from the embedded
 *     set, so reflection answers with exactly what protoc produced) and its
 *     direct dependencies as indices;
 *   - every symbol (services, methods, messages including nested ones,
 *     enums, fields, extensions) with the file that defines it;
 *   - every extension, keyed by extended type and field number;
 *   - the fields carrying (sandgate.v1.secret) = true. protobuf-c does not
 *     know custom options, so they stay in the FieldOptions' unknown fields;
 *     the option's field number is taken from the set's own definition of
 *     sandgate.v1.secret rather than hard-coded.
 *
 * After init the index is immutable, so lookups need no locking.
 */
#include "internal.h"

#include "descriptors.h"
#include "log.h"

#include "google_protobuf_descriptor.pb-c.h"
#include "sg_fds.h"

#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

SG_LOG_INIT("server.descriptors");

/* Full name of the field option that marks secret fields. */
#define SECRET_OPTION "sandgate.v1.secret"
#define SECRET_OPTION_EXTENDEE "google.protobuf.FieldOptions"

/* Limits of the redacting formatter, so one log line stays readable. */
#define FMT_MAX_DEPTH 16       /* deeper messages print as {...} */
#define FMT_MAX_STRING 256     /* bytes of a string value shown */
#define FMT_MAX_BYTES 48       /* bytes of a bytes value shown (base64) */
#define FMT_MAX_REPEATED 32    /* elements of a repeated field shown */
#define FMT_REDACTED "\"[REDACTED]\""

enum symbol_kind {
    SYMBOL_SERVICE,
    SYMBOL_METHOD,
    SYMBOL_MESSAGE,
    SYMBOL_ENUM,
    SYMBOL_FIELD,
    SYMBOL_EXTENSION,
};

struct file_entry {
    const Google__Protobuf__FileDescriptorProto *proto; /* in index->set */
    const char *name;                                   /* proto->name */
    ProtobufCBinaryData raw; /* serialized proto, in the embedded set */
    size_t *deps;            /* indices of direct dependencies, owned */
    size_t n_deps;
};

struct symbol {
    char *name; /* owned, "pkg.Outer.Inner" */
    size_t file;
    enum symbol_kind kind;
};

struct extension {
    char *extendee; /* owned, full name without the leading dot */
    int32_t number;
    size_t file;
};

struct secret_field {
    char *message; /* owned, "pkg.Msg" */
    char *field;   /* owned, field name */
};

struct descriptor_index {
    Google__Protobuf__FileDescriptorSet *set;
    struct file_entry *files; /* sorted by name */
    size_t n_files;
    struct symbol *symbols; /* sorted by name */
    size_t n_symbols;
    size_t cap_symbols;
    struct extension *extensions; /* sorted by (extendee, number) */
    size_t n_extensions;
    size_t cap_extensions;
    struct secret_field *secrets; /* sorted by (message, field) */
    size_t n_secrets;
    size_t cap_secrets;
    char **services; /* owned names, sorted */
    size_t n_services;
    size_t cap_services;
    uint32_t secret_number; /* field number of (sandgate.v1.secret) */
};

static struct descriptor_index *sg_index;

/* ---- small helpers ---- */

static int grow(void **array, size_t *cap, size_t n, size_t elem)
{
    size_t new_cap;
    void *p;

    if (n < *cap)
        return 0;
    new_cap = *cap ? *cap * 2 : 16;
    p = realloc(*array, new_cap * elem);
    if (!p)
        return -1;
    *array = p;
    *cap = new_cap;
    return 0;
}

/* "scope" + "." + "name", or a copy of name when scope is empty. */
static char *join_name(const char *scope, const char *name)
{
    size_t ls = scope ? strlen(scope) : 0;
    size_t ln = strlen(name);
    char *s = malloc(ls + 1 + ln + 1);

    if (!s)
        return NULL;
    if (ls) {
        memcpy(s, scope, ls);
        s[ls++] = '.';
    }
    memcpy(s + ls, name, ln + 1);
    return s;
}

static const char *strip_dot(const char *name)
{
    return name && name[0] == '.' ? name + 1 : name;
}

/* Read a base-128 varint; returns bytes used, 0 if malformed. */
static size_t read_varint(const uint8_t *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    for (size_t i = 0; i < len && i < 10; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *out = v;
            return i + 1;
        }
    }
    return 0;
}

/*
 * Find the bytes of each top-level `repeated FileDescriptorProto file = 1`
 * in the serialized set, in order (the same order protobuf-c unpacks them).
 */
static int split_set(const uint8_t *data, size_t len,
                     ProtobufCBinaryData *out, size_t n_out)
{
    size_t pos = 0;
    size_t n = 0;

    while (pos < len) {
        uint64_t tag;
        uint64_t v;
        size_t used = read_varint(data + pos, len - pos, &tag);

        if (!used)
            return -1;
        pos += used;
        switch (tag & 7) {
        case 0:
            used = read_varint(data + pos, len - pos, &v);
            if (!used)
                return -1;
            pos += used;
            break;
        case 1:
            pos += 8;
            break;
        case 5:
            pos += 4;
            break;
        case 2:
            used = read_varint(data + pos, len - pos, &v);
            if (!used || v > len - pos - used)
                return -1;
            pos += used;
            if ((tag >> 3) == 1) {
                if (n == n_out)
                    return -1;
                out[n].len = (size_t)v;
                /* The embedded set is const; readers never write to it. */
                out[n].data = (uint8_t *)(uintptr_t)(data + pos);
                n++;
            }
            pos += (size_t)v;
            break;
        default:
            return -1;
        }
    }
    return pos == len && n == n_out ? 0 : -1;
}

/* ---- lookups (index must be non-NULL) ---- */

static int file_cmp(const void *a, const void *b)
{
    return strcmp(((const struct file_entry *)a)->name,
                  ((const struct file_entry *)b)->name);
}

static int symbol_cmp(const void *a, const void *b)
{
    return strcmp(((const struct symbol *)a)->name,
                  ((const struct symbol *)b)->name);
}

static int extension_cmp(const void *a, const void *b)
{
    const struct extension *x = a;
    const struct extension *y = b;
    int c = strcmp(x->extendee, y->extendee);

    if (c)
        return c;
    return (x->number > y->number) - (x->number < y->number);
}

static int secret_cmp(const void *a, const void *b)
{
    const struct secret_field *x = a;
    const struct secret_field *y = b;
    int c = strcmp(x->message, y->message);

    return c ? c : strcmp(x->field, y->field);
}

static int string_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const struct file_entry *find_file(const struct descriptor_index *ix,
                                          const char *name)
{
    struct file_entry key = {.name = name};

    return bsearch(&key, ix->files, ix->n_files, sizeof(*ix->files),
                   file_cmp);
}

static const struct symbol *find_symbol(const struct descriptor_index *ix,
                                        const char *name)
{
    struct symbol key = {.name = (char *)(uintptr_t)name};

    return bsearch(&key, ix->symbols, ix->n_symbols, sizeof(*ix->symbols),
                   symbol_cmp);
}

/* ---- building the index ---- */

static int add_symbol(struct descriptor_index *ix, char *name, size_t file,
                      enum symbol_kind kind)
{
    if (!name)
        return -1;
    if (grow((void **)&ix->symbols, &ix->cap_symbols, ix->n_symbols,
             sizeof(*ix->symbols)) < 0) {
        free(name);
        return -1;
    }
    ix->symbols[ix->n_symbols].name = name;
    ix->symbols[ix->n_symbols].file = file;
    ix->symbols[ix->n_symbols].kind = kind;
    ix->n_symbols++;
    return 0;
}

static int add_extension(struct descriptor_index *ix, const char *scope,
                         const Google__Protobuf__FieldDescriptorProto *f,
                         size_t file)
{
    char *extendee;

    if (!f->name || !f->extendee)
        return 0;
    if (add_symbol(ix, join_name(scope, f->name), file,
                   SYMBOL_EXTENSION) < 0)
        return -1;
    extendee = join_name(NULL, strip_dot(f->extendee));
    if (!extendee)
        return -1;
    if (grow((void **)&ix->extensions, &ix->cap_extensions,
             ix->n_extensions, sizeof(*ix->extensions)) < 0) {
        free(extendee);
        return -1;
    }
    ix->extensions[ix->n_extensions].extendee = extendee;
    ix->extensions[ix->n_extensions].number = f->number;
    ix->extensions[ix->n_extensions].file = file;
    ix->n_extensions++;
    return 0;
}

/* True if the options carry field `number` as a non-zero varint. */
static bool options_flag(const ProtobufCMessage *options, uint32_t number)
{
    bool set = false;

    if (!options || !number)
        return false;
    for (unsigned i = 0; i < options->n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *u = &options->unknown_fields[i];
        uint64_t v;

        if (u->tag != number || u->wire_type != PROTOBUF_C_WIRE_TYPE_VARINT)
            continue;
        /* The last occurrence wins, as for any scalar field. */
        if (read_varint(u->data, u->len, &v))
            set = v != 0;
    }
    return set;
}

static int add_secret(struct descriptor_index *ix, const char *message,
                      const char *field)
{
    char *m = join_name(NULL, message);
    char *f = join_name(NULL, field);

    if (!m || !f ||
        grow((void **)&ix->secrets, &ix->cap_secrets, ix->n_secrets,
             sizeof(*ix->secrets)) < 0) {
        free(m);
        free(f);
        return -1;
    }
    ix->secrets[ix->n_secrets].message = m;
    ix->secrets[ix->n_secrets].field = f;
    ix->n_secrets++;
    return 0;
}

static int add_enum(struct descriptor_index *ix, const char *scope,
                    const Google__Protobuf__EnumDescriptorProto *e,
                    size_t file)
{
    if (!e->name)
        return 0;
    return add_symbol(ix, join_name(scope, e->name), file, SYMBOL_ENUM);
}

static int add_message(struct descriptor_index *ix, const char *scope,
                       const Google__Protobuf__DescriptorProto *m,
                       size_t file)
{
    const char *name;

    if (!m->name)
        return 0;
    if (add_symbol(ix, join_name(scope, m->name), file, SYMBOL_MESSAGE) < 0)
        return -1;
    /* The symbol owns the string; it survives the array growing. */
    name = ix->symbols[ix->n_symbols - 1].name;

    for (size_t i = 0; i < m->n_field; i++) {
        const Google__Protobuf__FieldDescriptorProto *f = m->field[i];

        if (!f->name)
            continue;
        if (add_symbol(ix, join_name(name, f->name), file, SYMBOL_FIELD) < 0)
            return -1;
        if (f->options &&
            options_flag(&f->options->base, ix->secret_number) &&
            add_secret(ix, name, f->name) < 0)
            return -1;
    }
    for (size_t i = 0; i < m->n_nested_type; i++)
        if (add_message(ix, name, m->nested_type[i], file) < 0)
            return -1;
    for (size_t i = 0; i < m->n_enum_type; i++)
        if (add_enum(ix, name, m->enum_type[i], file) < 0)
            return -1;
    for (size_t i = 0; i < m->n_extension; i++)
        if (add_extension(ix, name, m->extension[i], file) < 0)
            return -1;
    return 0;
}

static int add_file_symbols(struct descriptor_index *ix, size_t file)
{
    const Google__Protobuf__FileDescriptorProto *fd = ix->files[file].proto;
    const char *pkg = fd->package ? fd->package : "";

    for (size_t i = 0; i < fd->n_message_type; i++)
        if (add_message(ix, pkg, fd->message_type[i], file) < 0)
            return -1;
    for (size_t i = 0; i < fd->n_enum_type; i++)
        if (add_enum(ix, pkg, fd->enum_type[i], file) < 0)
            return -1;
    for (size_t i = 0; i < fd->n_extension; i++)
        if (add_extension(ix, pkg, fd->extension[i], file) < 0)
            return -1;
    for (size_t i = 0; i < fd->n_service; i++) {
        const Google__Protobuf__ServiceDescriptorProto *s = fd->service[i];
        char *svc;

        if (!s->name)
            continue;
        svc = join_name(pkg, s->name);
        if (add_symbol(ix, svc, file, SYMBOL_SERVICE) < 0)
            return -1;
        for (size_t j = 0; j < s->n_method; j++) {
            if (!s->method[j]->name)
                continue;
            if (add_symbol(ix, join_name(svc, s->method[j]->name), file,
                           SYMBOL_METHOD) < 0)
                return -1;
        }
        if (grow((void **)&ix->services, &ix->cap_services, ix->n_services,
                 sizeof(*ix->services)) < 0)
            return -1;
        ix->services[ix->n_services] = join_name(NULL, svc);
        if (!ix->services[ix->n_services])
            return -1;
        ix->n_services++;
    }
    return 0;
}

/* Number of the field option SECRET_OPTION, or 0 if the set lacks it. */
static uint32_t find_secret_number(const Google__Protobuf__FileDescriptorSet *set)
{
    for (size_t i = 0; i < set->n_file; i++) {
        const Google__Protobuf__FileDescriptorProto *fd = set->file[i];

        for (size_t j = 0; j < fd->n_extension; j++) {
            const Google__Protobuf__FieldDescriptorProto *f =
                fd->extension[j];
            size_t lp = fd->package ? strlen(fd->package) : 0;

            if (!f->name || !f->extendee || f->number <= 0 ||
                !STREQ(strip_dot(f->extendee), SECRET_OPTION_EXTENDEE))
                continue;
            if (strlen(SECRET_OPTION) == lp + 1 + strlen(f->name) &&
                strncmp(SECRET_OPTION, fd->package, lp) == 0 &&
                SECRET_OPTION[lp] == '.' &&
                STREQ(SECRET_OPTION + lp + 1, f->name))
                return (uint32_t)f->number;
        }
    }
    return 0;
}

static int resolve_deps(struct descriptor_index *ix, struct sg_error *err)
{
    for (size_t i = 0; i < ix->n_files; i++) {
        struct file_entry *fe = &ix->files[i];
        const Google__Protobuf__FileDescriptorProto *fd = fe->proto;

        if (!fd->n_dependency)
            continue;
        fe->deps = calloc(fd->n_dependency, sizeof(*fe->deps));
        if (!fe->deps) {
            sg_error_report(err, SG_ERR_NO_MEMORY,
                            "out of memory indexing descriptors");
            return -1;
        }
        for (size_t j = 0; j < fd->n_dependency; j++) {
            const struct file_entry *dep = find_file(ix, fd->dependency[j]);

            if (!dep) {
                sg_error_report(err, SG_ERR_INTERNAL,
                                "descriptor set: '%s' imports '%s', which "
                                "is not in the set",
                                fe->name, fd->dependency[j]);
                return -1;
            }
            fe->deps[fe->n_deps++] = (size_t)(dep - ix->files);
        }
    }
    return 0;
}

static void index_free(struct descriptor_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n_files; i++)
        free(ix->files[i].deps);
    free(ix->files);
    for (size_t i = 0; i < ix->n_symbols; i++)
        free(ix->symbols[i].name);
    free(ix->symbols);
    for (size_t i = 0; i < ix->n_extensions; i++)
        free(ix->extensions[i].extendee);
    free(ix->extensions);
    for (size_t i = 0; i < ix->n_secrets; i++) {
        free(ix->secrets[i].message);
        free(ix->secrets[i].field);
    }
    free(ix->secrets);
    for (size_t i = 0; i < ix->n_services; i++)
        free(ix->services[i]);
    free(ix->services);
    if (ix->set)
        google__protobuf__file_descriptor_set__free_unpacked(ix->set, NULL);
    free(ix);
}

static struct descriptor_index *index_build(struct sg_error *err)
{
    struct descriptor_index *ix = NULL;
    ProtobufCBinaryData *raw = NULL;
    struct descriptor_index *ret = NULL;

    ix = calloc(1, sizeof(*ix));
    if (!ix) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    ix->set = google__protobuf__file_descriptor_set__unpack(
        NULL, sg_descriptor_set_len, sg_descriptor_set);
    if (!ix->set) {
        sg_error_report(err, SG_ERR_INTERNAL,
                        "cannot parse the embedded descriptor set");
        goto cleanup;
    }
    ix->n_files = ix->set->n_file;
    ix->files = calloc(ix->n_files ? ix->n_files : 1, sizeof(*ix->files));
    raw = calloc(ix->n_files ? ix->n_files : 1, sizeof(*raw));
    if (!ix->files || !raw) {
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    if (split_set(sg_descriptor_set, sg_descriptor_set_len, raw,
                  ix->n_files) < 0) {
        sg_error_report(err, SG_ERR_INTERNAL,
                        "cannot split the embedded descriptor set");
        goto cleanup;
    }
    for (size_t i = 0; i < ix->n_files; i++) {
        const Google__Protobuf__FileDescriptorProto *fd = ix->set->file[i];

        if (!fd->name) {
            sg_error_report(err, SG_ERR_INTERNAL,
                            "descriptor set: file %zu has no name", i);
            goto cleanup;
        }
        ix->files[i].proto = fd;
        ix->files[i].name = fd->name;
        ix->files[i].raw = raw[i];
    }
    qsort(ix->files, ix->n_files, sizeof(*ix->files), file_cmp);
    for (size_t i = 1; i < ix->n_files; i++) {
        if (STREQ(ix->files[i - 1].name, ix->files[i].name)) {
            sg_error_report(err, SG_ERR_INTERNAL,
                            "descriptor set: file '%s' appears twice",
                            ix->files[i].name);
            goto cleanup;
        }
    }
    if (resolve_deps(ix, err) < 0)
        goto cleanup;

    ix->secret_number = find_secret_number(ix->set);
    if (!ix->secret_number) {
        /* Without it secret fields would be logged: refuse to start. */
        sg_error_report(err, SG_ERR_INTERNAL,
                        "descriptor set does not define option %s",
                        SECRET_OPTION);
        goto cleanup;
    }
    for (size_t i = 0; i < ix->n_files; i++) {
        if (add_file_symbols(ix, i) < 0) {
            sg_error_report(err, SG_ERR_NO_MEMORY,
                            "out of memory indexing descriptors");
            goto cleanup;
        }
    }

    qsort(ix->symbols, ix->n_symbols, sizeof(*ix->symbols), symbol_cmp);
    qsort(ix->extensions, ix->n_extensions, sizeof(*ix->extensions),
          extension_cmp);
    qsort(ix->secrets, ix->n_secrets, sizeof(*ix->secrets), secret_cmp);
    qsort(ix->services, ix->n_services, sizeof(*ix->services),
          string_ptr_cmp);
    for (size_t i = 1; i < ix->n_symbols; i++)
        if (STREQ(ix->symbols[i - 1].name, ix->symbols[i].name))
            SG_WARN("descriptor set: symbol '%s' defined twice",
                    ix->symbols[i].name);

    SG_DEBUG("descriptor set: %zu files, %zu symbols, %zu services, "
             "%zu secret fields", ix->n_files, ix->n_symbols,
             ix->n_services, ix->n_secrets);
    ret = ix;
    ix = NULL;

 cleanup:
    free(raw);
    index_free(ix);
    return ret;
}

/* ---- public API ---- */

int sg_descriptors_init(struct sg_error *err)
{
    if (sg_index)
        return 0;
    sg_index = index_build(err);
    return sg_index ? 0 : -1;
}

void sg_descriptors_cleanup(void)
{
    index_free(sg_index);
    sg_index = NULL;
}

size_t sg_descriptors_n_services(void)
{
    return sg_index ? sg_index->n_services : 0;
}

const char *sg_descriptors_service_name(size_t i)
{
    if (!sg_index || i >= sg_index->n_services)
        return NULL;
    return sg_index->services[i];
}

static void visit(const struct descriptor_index *ix, size_t f, bool *seen,
                  size_t *order, size_t *n)
{
    seen[f] = true;
    for (size_t i = 0; i < ix->files[f].n_deps; i++)
        if (!seen[ix->files[f].deps[i]])
            visit(ix, ix->files[f].deps[i], seen, order, n);
    order[(*n)++] = f;
}

/*
 * Serialized file `f` and its transitive dependencies. A post-order walk
 * puts every dependency before its dependents; reversed, the requested
 * file comes first and each dependency after every file that imports it.
 */
static ssize_t with_deps(const struct descriptor_index *ix, size_t f,
                         ProtobufCBinaryData **files)
{
    bool *seen = calloc(ix->n_files, sizeof(*seen));
    size_t *order = calloc(ix->n_files, sizeof(*order));
    ProtobufCBinaryData *out = NULL;
    size_t n = 0;
    ssize_t ret = -1;

    if (!seen || !order)
        goto cleanup;
    visit(ix, f, seen, order, &n);
    out = calloc(n, sizeof(*out));
    if (!out)
        goto cleanup;
    for (size_t i = 0; i < n; i++)
        out[i] = ix->files[order[n - 1 - i]].raw;
    *files = out;
    ret = (ssize_t)n;

 cleanup:
    free(seen);
    free(order);
    return ret;
}

ssize_t sg_descriptors_file_with_deps(const char *filename,
                                      ProtobufCBinaryData **files)
{
    const struct file_entry *fe;

    *files = NULL;
    if (!sg_index || !filename)
        return 0;
    fe = find_file(sg_index, filename);
    if (!fe)
        return 0;
    return with_deps(sg_index, (size_t)(fe - sg_index->files), files);
}

ssize_t sg_descriptors_symbol_with_deps(const char *symbol,
                                        ProtobufCBinaryData **files)
{
    const struct symbol *s;

    *files = NULL;
    if (!sg_index || !symbol)
        return 0;
    s = find_symbol(sg_index, strip_dot(symbol));
    if (!s)
        return 0;
    return with_deps(sg_index, s->file, files);
}

ssize_t sg_descriptors_extension_with_deps(const char *containing_type,
                                           int32_t number,
                                           ProtobufCBinaryData **files)
{
    struct extension key;
    const struct extension *e;

    *files = NULL;
    if (!sg_index || !containing_type)
        return 0;
    key.extendee = (char *)(uintptr_t)strip_dot(containing_type);
    key.number = number;
    e = bsearch(&key, sg_index->extensions, sg_index->n_extensions,
                sizeof(*sg_index->extensions), extension_cmp);
    if (!e)
        return 0;
    return with_deps(sg_index, e->file, files);
}

bool sg_descriptors_is_message(const char *name)
{
    const struct symbol *s;

    if (!sg_index || !name)
        return false;
    s = find_symbol(sg_index, strip_dot(name));
    return s && s->kind == SYMBOL_MESSAGE;
}

ssize_t sg_descriptors_extension_numbers(const char *containing_type,
                                         int32_t **numbers)
{
    const char *type;
    size_t first = 0;
    size_t n = 0;
    int32_t *out;

    *numbers = NULL;
    if (!sg_index || !containing_type)
        return 0;
    type = strip_dot(containing_type);
    /* Sorted by (extendee, number): find the run for this type. */
    while (first < sg_index->n_extensions &&
           strcmp(sg_index->extensions[first].extendee, type) < 0)
        first++;
    while (first + n < sg_index->n_extensions &&
           STREQ(sg_index->extensions[first + n].extendee, type))
        n++;
    if (!n)
        return 0;
    out = calloc(n, sizeof(*out));
    if (!out)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = sg_index->extensions[first + i].number;
    *numbers = out;
    return (ssize_t)n;
}

bool sg_descriptors_field_is_secret(const char *message_name,
                                    const char *field)
{
    struct secret_field key;

    if (!sg_index || !message_name || !field)
        return false;
    key.message = (char *)(uintptr_t)strip_dot(message_name);
    key.field = (char *)(uintptr_t)field;
    return bsearch(&key, sg_index->secrets, sg_index->n_secrets,
                   sizeof(*sg_index->secrets), secret_cmp) != NULL;
}

/* ---- the redacting formatter ---- */

/*
 * Whether a field's value must be hidden. Before init (or after cleanup)
 * the formatter cannot know which fields are secret, so it fails closed and
 * hides every string and bytes value.
 */
static bool field_hidden(const ProtobufCMessageDescriptor *desc,
                         const ProtobufCFieldDescriptor *f)
{
    if (!sg_index)
        return f->type == PROTOBUF_C_TYPE_STRING ||
               f->type == PROTOBUF_C_TYPE_BYTES;
    return sg_descriptors_field_is_secret(desc->name, f->name);
}

static void add_quoted(struct sg_buf *out, const char *s, size_t len)
{
    sg_buf_addc(out, '"');
    sg_buf_add_json_escaped(out, s, len);
    sg_buf_addc(out, '"');
}

static void fmt_string(struct sg_buf *out, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    size_t shown = len;

    if (len > FMT_MAX_STRING) {
        shown = FMT_MAX_STRING;
        /* Do not cut a UTF-8 sequence in two. */
        while (shown > 0 && ((unsigned char)s[shown] & 0xc0) == 0x80)
            shown--;
    }
    sg_buf_addc(out, '"');
    sg_buf_add_json_escaped(out, s ? s : "", shown);
    if (shown < len)
        sg_buf_printf(out, "...(%zu bytes)", len);
    sg_buf_addc(out, '"');
}

static void fmt_bytes(struct sg_buf *out, const ProtobufCBinaryData *b)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t shown = b->len > FMT_MAX_BYTES ? FMT_MAX_BYTES : b->len;

    sg_buf_addc(out, '"');
    for (size_t i = 0; i < shown; i += 3) {
        uint32_t v = (uint32_t)b->data[i] << 16;
        size_t left = shown - i;
        char q[4];

        if (left > 1)
            v |= (uint32_t)b->data[i + 1] << 8;
        if (left > 2)
            v |= b->data[i + 2];
        q[0] = b64[(v >> 18) & 63];
        q[1] = b64[(v >> 12) & 63];
        q[2] = left > 1 ? b64[(v >> 6) & 63] : '=';
        q[3] = left > 2 ? b64[v & 63] : '=';
        sg_buf_add(out, q, 4);
    }
    if (shown < b->len)
        sg_buf_printf(out, "...(%zu bytes)", b->len);
    sg_buf_addc(out, '"');
}

static void fmt_message(struct sg_buf *out, const ProtobufCMessage *msg,
                        int depth);

/* google.protobuf.Timestamp as RFC 3339 in UTC. */
static void fmt_timestamp(struct sg_buf *out, int64_t seconds, int32_t nanos)
{
    time_t t = (time_t)seconds;
    struct tm tm;
    char text[64];

    if (!gmtime_r(&t, &tm) ||
        strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        sg_buf_printf(out, "\"%" PRId64 "s\"", seconds);
        return;
    }
    if (nanos > 0 && nanos < 1000000000)
        sg_buf_printf(out, "\"%s.%09" PRId32 "Z\"", text, nanos);
    else
        sg_buf_printf(out, "\"%sZ\"", text);
}

static void fmt_scalar(struct sg_buf *out, const ProtobufCFieldDescriptor *f,
                       const void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        sg_buf_printf(out, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        sg_buf_printf(out, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        sg_buf_printf(out, "%" PRId64, *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        sg_buf_printf(out, "%" PRIu64, *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        sg_buf_printf(out, "%.9g", (double)*(const float *)p);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        sg_buf_printf(out, "%.17g", *(const double *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        sg_buf_adds(out, *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = *(const int32_t *)p;
        const ProtobufCEnumValue *ev =
            f->descriptor
                ? protobuf_c_enum_descriptor_get_value(f->descriptor, v)
                : NULL;

        if (ev)
            sg_buf_printf(out, "\"%s\"", ev->name);
        else
            sg_buf_printf(out, "%" PRId32, v);
        break;
    }
    case PROTOBUF_C_TYPE_STRING:
        fmt_string(out, *(char *const *)p);
        break;
    case PROTOBUF_C_TYPE_BYTES:
        fmt_bytes(out, (const ProtobufCBinaryData *)p);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        fmt_message(out, *(const ProtobufCMessage *const *)p, depth + 1);
        break;
    }
}

static size_t element_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int32_t);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return sizeof(int64_t);
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* A map<K, V> field is a repeated field of "...Entry" {key = 1; value = 2}. */
static bool is_map_entry(const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *d = f->descriptor;
    size_t ls;

    if (f->type != PROTOBUF_C_TYPE_MESSAGE || !d || d->n_fields != 2)
        return false;
    ls = strlen(d->short_name);
    return ls > 5 && STREQ(d->short_name + ls - 5, "Entry") &&
           d->fields[0].id == 1 && STREQ(d->fields[0].name, "key") &&
           d->fields[1].id == 2 && STREQ(d->fields[1].name, "value");
}

static void fmt_map(struct sg_buf *out, const ProtobufCFieldDescriptor *f,
                    ProtobufCMessage *const *entries, size_t n, int depth)
{
    const ProtobufCMessageDescriptor *d = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &d->fields[0];
    const ProtobufCFieldDescriptor *vf = &d->fields[1];

    sg_buf_addc(out, '{');
    for (size_t i = 0; i < n && i < FMT_MAX_REPEATED; i++) {
        const char *e = (const char *)entries[i];

        if (i)
            sg_buf_addc(out, ',');
        if (kf->type == PROTOBUF_C_TYPE_STRING) {
            fmt_string(out, *(char *const *)(e + kf->offset));
        } else {
            /* JSON object keys are strings. */
            sg_buf_addc(out, '"');
            fmt_scalar(out, kf, e + kf->offset, depth);
            sg_buf_addc(out, '"');
        }
        sg_buf_addc(out, ':');
        fmt_scalar(out, vf, e + vf->offset, depth);
    }
    if (n > FMT_MAX_REPEATED)
        sg_buf_printf(out, ",\"...\":\"(%zu more)\"", n - FMT_MAX_REPEATED);
    sg_buf_addc(out, '}');
}

static void fmt_repeated(struct sg_buf *out, const ProtobufCFieldDescriptor *f,
                         const char *array, size_t n, int depth)
{
    size_t size = element_size(f->type);

    if (is_map_entry(f)) {
        fmt_map(out, f, (ProtobufCMessage *const *)(const void *)array, n,
                depth);
        return;
    }
    sg_buf_addc(out, '[');
    for (size_t i = 0; i < n && i < FMT_MAX_REPEATED; i++) {
        if (i)
            sg_buf_addc(out, ',');
        fmt_scalar(out, f, array + i * size, depth);
    }
    if (n > FMT_MAX_REPEATED)
        sg_buf_printf(out, ",\"...(%zu more)\"", n - FMT_MAX_REPEATED);
    sg_buf_addc(out, ']');
}

/* True if field f of message m has a value worth printing. */
static bool field_present(const char *m, const ProtobufCFieldDescriptor *f)
{
    const void *p = m + f->offset;

    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)(const void *)(m + f->quantifier_offset) > 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(const void *)(m + f->quantifier_offset) ==
               f->id;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(const void *const *)p != NULL;
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = *(const char *const *)p;

        /* proto2 strings are NULL when absent; proto3 ones are "". */
        if (!s)
            return false;
        return f->label != PROTOBUF_C_LABEL_NONE || s[0] != '\0';
    }
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
        return *(const protobuf_c_boolean *)(const void *)(
            m + f->quantifier_offset);
    if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        return true;
    /* proto3 implicit presence: print non-default values only. */
    switch (f->type) {
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len > 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)p != 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)p != 0.0f;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p != 0.0;
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p != 0;
    default:
        return *(const uint32_t *)p != 0;
    }
}

static void fmt_field_value(struct sg_buf *out, const char *m,
                            const ProtobufCFieldDescriptor *f, int depth)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        fmt_repeated(out, f, *(const char *const *)(const void *)(m + f->offset),
                     *(const size_t *)(const void *)(m + f->quantifier_offset),
                     depth);
    else
        fmt_scalar(out, f, m + f->offset, depth);
}

/* Well-known types that have a natural JSON form. Returns true if handled. */
static bool fmt_well_known(struct sg_buf *out, const ProtobufCMessage *msg,
                           int depth)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *m = (const char *)msg;
    const ProtobufCFieldDescriptor *f;

    if (strncmp(d->name, "google.protobuf.", 16) != 0)
        return false;
    if (STREQ(d->short_name, "Timestamp") ||
        STREQ(d->short_name, "Duration")) {
        const ProtobufCFieldDescriptor *fs =
            protobuf_c_message_descriptor_get_field_by_name(d, "seconds");
        const ProtobufCFieldDescriptor *fn =
            protobuf_c_message_descriptor_get_field_by_name(d, "nanos");
        int64_t s;
        int32_t ns;

        if (!fs || !fn)
            return false;
        s = *(const int64_t *)(const void *)(m + fs->offset);
        ns = *(const int32_t *)(const void *)(m + fn->offset);
        if (d->short_name[0] == 'T')
            fmt_timestamp(out, s, ns);
        else if (ns)
            sg_buf_printf(out, "\"%s%" PRId64 ".%09" PRId32 "s\"",
                          s == 0 && ns < 0 ? "-" : "", s, ns < 0 ? -ns : ns);
        else
            sg_buf_printf(out, "\"%" PRId64 "s\"", s);
        return true;
    }
    if (STREQ(d->short_name, "Struct") || STREQ(d->short_name, "ListValue")) {
        /* Struct is its `fields` map, ListValue its `values` list. */
        if (d->n_fields != 1 || d->fields[0].label != PROTOBUF_C_LABEL_REPEATED)
            return false;
        f = &d->fields[0];
        fmt_field_value(out, m, f, depth);
        return true;
    }
    if (STREQ(d->short_name, "Value")) {
        for (unsigned i = 0; i < d->n_fields; i++) {
            f = &d->fields[i];
            if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
                !field_present(m, f))
                continue;
            if (f->type == PROTOBUF_C_TYPE_ENUM)
                sg_buf_adds(out, "null"); /* null_value */
            else
                fmt_field_value(out, m, f, depth);
            return true;
        }
        sg_buf_adds(out, "null");
        return true;
    }
    return false;
}

static void fmt_message(struct sg_buf *out, const ProtobufCMessage *msg,
                        int depth)
{
    const ProtobufCMessageDescriptor *d;
    const char *m = (const char *)msg;
    bool first = true;

    if (!msg) {
        sg_buf_adds(out, "null");
        return;
    }
    if (depth > FMT_MAX_DEPTH) {
        sg_buf_adds(out, "{...}");
        return;
    }
    if (fmt_well_known(out, msg, depth))
        return;
    d = msg->descriptor;
    sg_buf_addc(out, '{');
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];

        if (!field_present(m, f))
            continue;
        if (!first)
            sg_buf_addc(out, ',');
        first = false;
        add_quoted(out, f->name, strlen(f->name));
        sg_buf_addc(out, ':');
        if (field_hidden(d, f))
            sg_buf_adds(out, FMT_REDACTED);
        else
            fmt_field_value(out, m, f, depth);
    }
    sg_buf_addc(out, '}');
}

void sg_descriptors_format_redacted(struct sg_buf *out,
                                    const ProtobufCMessage *msg)
{
    fmt_message(out, msg, 0);
}
