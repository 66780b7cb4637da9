/*
 * source_file.c: the built-in "file" credential source.
 *
 * ref {"path": "/abs/path"}: a regular file of at most 1 MiB under one of
 * the configured directories (settings {"directories": [...]}).
 *
 * validate checks the path's spelling only (absolute, normalised, under a
 * configured directory as written). resolve takes realpath() of it, which
 * must lie under the realpath() of a configured directory (taken at
 * open), so a symlink inside a directory cannot lead out of it; it then
 * walks the resolved path from the directory one component at a time with
 * O_NOFOLLOW, so a symlink swapped in after realpath() is refused rather
 * than followed. Messages name the path, never the content.
 */
#include "internal.h"

#include "sources.h"

#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct file_src {
    const struct sg_credsrc_host *host;
    char **dirs; /* as configured, without a trailing '/' ("/" stays) */
    char **real; /* realpath() of each */
    size_t n_dirs;
};

static const char *const ref_keys[] = {"path"};

/* Whether path is dir or below it (both absolute, normalised). */
static bool is_under(const char *path, const char *dir)
{
    size_t len = strlen(dir);

    if (STREQ(dir, "/"))
        return true;
    return strncmp(path, dir, len) == 0 && path[len] == '/';
}

/* NULL when the spelling of path is fine, else what is wrong with it. */
static const char *path_problem(const char *path)
{
    const char *p = path;

    if (path[0] != '/')
        return "must be an absolute path";
    if (strlen(path) >= PATH_MAX)
        return "is too long";
    if (strstr(path, "//") != NULL)
        return "must be normalised (no '//')";
    while (*p != '\0') {
        const char *comp = p + 1;
        const char *end = strchr(comp, '/');
        size_t len = end != NULL ? (size_t)(end - comp) : strlen(comp);

        if (len == 2 && comp[0] == '.' && comp[1] == '.')
            return "must not contain '..'";
        if (len == 1 && comp[0] == '.')
            return "must be normalised (no '.')";
        if (end == NULL)
            break;
        p = end;
    }
    if (path[strlen(path) - 1] == '/')
        return "must name a file (no trailing '/')";
    return NULL;
}

static void file_close(void *priv)
{
    struct file_src *f = priv;

    for (size_t i = 0; i < f->n_dirs; i++) {
        free(f->dirs[i]);
        free(f->real[i]);
    }
    free(f->dirs);
    free(f->real);
    f->dirs = NULL;
    f->real = NULL;
    f->n_dirs = 0;
}

static int dir_add(struct file_src *f, const char *dir, char **errmsg)
{
    char ebuf[128];
    size_t len = strlen(dir);
    const char *problem;
    struct stat st;
    char *real;
    char *copy;

    while (len > 1 && dir[len - 1] == '/')
        len--;
    copy = strndup(dir, len);
    if (copy == NULL) {
        *errmsg = sg_credsrc_msg(f->host, "out of memory");
        return -1;
    }
    problem = STREQ(copy, "/") ? NULL : path_problem(copy);
    if (problem != NULL) {
        *errmsg = sg_credsrc_msg(f->host, "directory '%s' %s", dir, problem);
        free(copy);
        return -1;
    }
    real = realpath(copy, NULL);
    if (real == NULL) {
        *errmsg = sg_credsrc_msg(f->host, "directory '%s': %s", copy,
                                 sg_strerror(errno, ebuf, sizeof(ebuf)));
        free(copy);
        return -1;
    }
    if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
        *errmsg =
            sg_credsrc_msg(f->host, "directory '%s' is not a directory", copy);
        free(copy);
        free(real);
        return -1;
    }
    f->dirs[f->n_dirs] = copy;
    f->real[f->n_dirs] = real;
    f->n_dirs++;
    return 0;
}

static int file_open(void *priv, const struct sg_credsrc_host *host,
                     const char *settings_json, char **errmsg)
{
    static const char *const keys[] = {"directories"};
    struct file_src *f = priv;
    json_t *settings;
    json_t *dirs;
    json_t *d;
    size_t i;
    int rc = -1;

    f->host = host;
    settings = sg_credsrc_ref_parse(host, settings_json, keys,
                                    SG_N_ELEMENTS(keys), errmsg);
    if (settings == NULL)
        return -1;
    dirs = json_object_get(settings, "directories");
    if (dirs == NULL || json_array_size(dirs) == 0) {
        rc = 0; /* none: every reference is refused */
        goto cleanup;
    }
    if (!json_is_array(dirs)) {
        *errmsg = sg_credsrc_msg(host, "directories must be an array");
        goto cleanup;
    }
    f->dirs = calloc(json_array_size(dirs), sizeof(*f->dirs));
    f->real = calloc(json_array_size(dirs), sizeof(*f->real));
    if (f->dirs == NULL || f->real == NULL) {
        *errmsg = sg_credsrc_msg(host, "out of memory");
        goto cleanup;
    }
    json_array_foreach(dirs, i, d)
    {
        if (!json_is_string(d) || json_string_length(d) == 0) {
            *errmsg = sg_credsrc_msg(host,
                                     "directories[%zu] must be a non-empty "
                                     "string",
                                     i);
            goto cleanup;
        }
        if (dir_add(f, json_string_value(d), errmsg) < 0)
            goto cleanup;
    }
    rc = 0;

 cleanup:
    if (rc != 0)
        file_close(f);
    json_decref(settings);
    return rc;
}

static int file_parse(struct file_src *f, const char *ref_json, json_t **ref,
                      const char **path, char **errmsg)
{
    const char *problem;
    bool under = false;

    *ref = sg_credsrc_ref_parse(f->host, ref_json, ref_keys,
                                SG_N_ELEMENTS(ref_keys), errmsg);
    if (*ref == NULL)
        return -1;
    if (sg_credsrc_ref_string(f->host, *ref, "path", path, errmsg) < 0)
        return -1;
    if (f->n_dirs == 0) {
        *errmsg =
            sg_credsrc_msg(f->host, "file: no directories are configured");
        return -1;
    }
    problem = path_problem(*path);
    if (problem != NULL) {
        *errmsg = sg_credsrc_msg(f->host, "ref.path: %s", problem);
        return -1;
    }
    for (size_t i = 0; i < f->n_dirs && !under; i++)
        under = is_under(*path, f->dirs[i]) || is_under(*path, f->real[i]);
    if (!under) {
        *errmsg = sg_credsrc_msg(f->host,
                                 "ref.path: '%s' is not under a configured "
                                 "directory",
                                 *path);
        return -1;
    }
    return 0;
}

static int file_validate(void *priv, const char *ref_json, char **errmsg)
{
    json_t *ref = NULL;
    const char *path;
    int rc = file_parse(priv, ref_json, &ref, &path, errmsg);

    json_decref(ref);
    return rc;
}

static int file_describe(void *priv, const char *ref_json, char **out,
                         char **errmsg)
{
    struct file_src *f = priv;
    json_t *ref = NULL;
    const char *path;
    int rc = -1;

    if (file_parse(f, ref_json, &ref, &path, errmsg) < 0)
        goto cleanup;
    *out = sg_credsrc_msg(f->host, "file %s", path);
    rc = *out != NULL ? 0 : -1;

 cleanup:
    json_decref(ref);
    return rc;
}

/*
 * Open rest (relative, realpath()'d, no symlinks) below the directory
 * dirfd names, component by component with O_NOFOLLOW. Refuses anything
 * but a regular file before opening it (a FIFO or a device is never
 * opened). The fd, or -1 with *errmsg set. Takes dirfd.
 */
static int open_beneath(struct file_src *f, int dirfd, const char *rest,
                        const char *path, char **errmsg)
{
    char ebuf[128];
    char comp[NAME_MAX + 1];
    struct stat st;
    int fd = -1;

    for (;;) {
        const char *end = strchr(rest, '/');
        size_t len = end != NULL ? (size_t)(end - rest) : strlen(rest);

        if (len == 0 || len > NAME_MAX) {
            *errmsg = sg_credsrc_msg(f->host, "cannot open '%s'", path);
            goto cleanup;
        }
        memcpy(comp, rest, len);
        comp[len] = '\0';
        if (fstatat(dirfd, comp, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            *errmsg = sg_credsrc_msg(f->host, "cannot open '%s': %s", path,
                                     sg_strerror(errno, ebuf, sizeof(ebuf)));
            goto cleanup;
        }
        if (S_ISLNK(st.st_mode)) {
            /* realpath() saw none: it changed under us. */
            *errmsg = sg_credsrc_msg(f->host,
                                     "'%s' changed while it was opened", path);
            goto cleanup;
        }
        if (end == NULL)
            break;
        fd = openat(dirfd, comp,
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            *errmsg = sg_credsrc_msg(f->host, "cannot open '%s': %s", path,
                                     sg_strerror(errno, ebuf, sizeof(ebuf)));
            goto cleanup;
        }
        close(dirfd);
        dirfd = fd;
        fd = -1;
        rest = end + 1;
    }
    if (!S_ISREG(st.st_mode)) {
        *errmsg = sg_credsrc_msg(f->host, "'%s' is not a regular file", path);
        goto cleanup;
    }
    fd = openat(dirfd, comp,
                O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        *errmsg = sg_credsrc_msg(f->host, "cannot open '%s': %s", path,
                                 sg_strerror(errno, ebuf, sizeof(ebuf)));

 cleanup:
    close(dirfd);
    return fd;
}

/* Read the open file fd (at most SG_CREDSRC_FILE_MAX bytes) into out. */
static int read_material(struct file_src *f, int fd, const char *path,
                         struct sg_credsrc_material *out, char **errmsg)
{
    char ebuf[128];
    struct stat st;
    uint8_t *buf = NULL;
    size_t size;
    size_t got = 0;
    uint8_t probe;
    ssize_t n;

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *errmsg = sg_credsrc_msg(f->host, "'%s' is not a regular file", path);
        return -1;
    }
    if ((uintmax_t)st.st_size > SG_CREDSRC_FILE_MAX) {
        *errmsg = sg_credsrc_msg(f->host, "'%s' is larger than 1 MiB", path);
        return -1;
    }
    size = (size_t)st.st_size;
    buf = f->host->alloc(size);
    if (buf == NULL) {
        *errmsg = sg_credsrc_msg(f->host, "out of memory reading '%s'", path);
        return -1;
    }
    while (got < size) {
        n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got == size) {
        do {
            n = read(fd, &probe, 1);
        } while (n < 0 && errno == EINTR);
        f->host->wipe(&probe, sizeof(probe));
    }
    if (got != size || n != 0) {
        if (n < 0)
            *errmsg = sg_credsrc_msg(f->host, "cannot read '%s': %s", path,
                                     sg_strerror(errno, ebuf, sizeof(ebuf)));
        else
            *errmsg = sg_credsrc_msg(
                f->host, "'%s' changed size while it was read", path);
        f->host->wipe(buf, size);
        f->host->free(buf);
        return -1;
    }
    out->data = buf;
    out->len = size;
    out->expire_time_ms = 0;
    return 0;
}

static int file_resolve(void *priv, const char *ref_json,
                        struct sg_credsrc_material *out, char **errmsg)
{
    struct file_src *f = priv;
    char ebuf[128];
    json_t *ref = NULL;
    const char *path;
    const char *dir = NULL;
    char *real = NULL;
    int dirfd;
    int fd = -1;
    int rc = -1;

    if (file_parse(f, ref_json, &ref, &path, errmsg) < 0)
        goto cleanup;
    real = realpath(path, NULL);
    if (real == NULL) {
        if (errno == ENOENT)
            *errmsg = sg_credsrc_msg(f->host, "'%s' does not exist", path);
        else
            *errmsg = sg_credsrc_msg(f->host, "cannot resolve '%s': %s", path,
                                     sg_strerror(errno, ebuf, sizeof(ebuf)));
        goto cleanup;
    }
    for (size_t i = 0; i < f->n_dirs && dir == NULL; i++) {
        if (STREQ(real, f->real[i])) {
            *errmsg =
                sg_credsrc_msg(f->host, "'%s' is not a regular file", path);
            goto cleanup;
        }
        if (is_under(real, f->real[i]))
            dir = f->real[i];
    }
    if (dir == NULL) {
        *errmsg = sg_credsrc_msg(f->host,
                                 "'%s' leads outside the configured "
                                 "directories",
                                 path);
        goto cleanup;
    }
    dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        *errmsg = sg_credsrc_msg(f->host, "cannot open '%s': %s", path,
                                 sg_strerror(errno, ebuf, sizeof(ebuf)));
        goto cleanup;
    }
    fd = open_beneath(f, dirfd, real + (STREQ(dir, "/") ? 1 : strlen(dir) + 1),
                      path, errmsg);
    if (fd < 0)
        goto cleanup;
    rc = read_material(f, fd, path, out, errmsg);

 cleanup:
    if (fd >= 0)
        close(fd);
    free(real);
    json_decref(ref);
    return rc;
}

static const struct sg_credsrc_ops file_ops = {
    .abi_major = SG_CREDSRC_ABI_MAJOR,
    .abi_minor = SG_CREDSRC_ABI_MINOR,
    .struct_size = sizeof(struct sg_credsrc_ops),
    .name = "file",
    .signature = SG_CREDSRC_SIGNATURE,
    .priv_size = sizeof(struct file_src),
    .open = file_open,
    .close = file_close,
    .validate = file_validate,
    .describe = file_describe,
    .resolve = file_resolve,
};

const struct sg_credsrc_ops *sg_credsrc_file_ops(void)
{
    return &file_ops;
}
