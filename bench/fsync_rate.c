/*
 * fsync_rate.c: the raw rate of durable appends on one file system, the
 * baseline for the store's group commit (bench/run-sandbox.sh).
 *
 * Appends a block to a file and fsyncs it, in a loop, for a given time:
 * what a store that committed every write on its own could reach at best
 * (SQLite in WAL mode with synchronous=FULL appends WAL frames, then
 * fsyncs the WAL, at every commit). Prints one line of JSON.
 *
 * usage: fsync_rate DIR [SECONDS] [BLOCK_BYTES]
 */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    char path[4096];
    double seconds = argc > 2 ? strtod(argv[2], NULL) : 5.0;
    long block = argc > 3 ? strtol(argv[3], NULL, 10) : 4096;
    char *buf;
    long n = 0;
    double t0, t;
    int fd;

    if (argc < 2 || seconds <= 0 || block <= 0 || block > (1 << 24)) {
        fprintf(stderr, "usage: fsync_rate DIR [SECONDS] [BLOCK_BYTES]\n");
        return 2;
    }
    snprintf(path, sizeof(path), "%s/fsync-rate.XXXXXX", argv[1]);
    fd = mkstemp(path);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    buf = calloc(1, (size_t)block);
    if (!buf)
        return 1;
    t0 = now_s();
    do {
        if (write(fd, buf, (size_t)block) != block || fsync(fd) != 0) {
            fprintf(stderr, "fsync_rate: write or fsync failed\n");
            return 1;
        }
        n++;
        t = now_s();
    } while (t - t0 < seconds);
    printf("{\"fsyncs\": %ld, \"seconds\": %.3f, \"fsyncs_per_s\": %.1f, "
           "\"block_bytes\": %ld}\n", n, t - t0, (double)n / (t - t0), block);
    close(fd);
    unlink(path);
    free(buf);
    return 0;
}
