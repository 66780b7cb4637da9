/*
 * sandbox_id.c: sandbox ids (see sandbox_id.h).
 */
#include "internal.h"

#include "sandbox_id.h"

#include <errno.h>
#include <pthread.h>
#include <sys/random.h>
#include <time.h>

#define PREFIX "sb-"
#define PREFIX_LEN 3
#define ULID_CHARS 26
#define RANDOM_BYTES 10
#define TIME_MASK ((UINT64_C(1) << 48) - 1)

static const char crockford[] = "0123456789abcdefghjkmnpqrstvwxyz";

/* The previous id, for the monotonic rule. */
static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static bool have_last;
static uint64_t last_ms;
static uint8_t last_random[RANDOM_BYTES];

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) &
           TIME_MASK;
}

static int fill_random(uint8_t *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = getrandom(buf + done, len - done, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

/* Add one to a big-endian number; false if it wrapped to zero. */
static bool increment(uint8_t *num, size_t len)
{
    for (size_t i = len; i-- > 0;) {
        if (++num[i] != 0)
            return true;
    }
    return false;
}

/*
 * The time and random parts of the next id: a fresh random part in a new
 * millisecond, else the previous one plus one (carrying into the time).
 * Called with id_lock held.
 */
static int next_parts(uint64_t *ms, uint8_t random[RANDOM_BYTES])
{
    uint64_t now = now_ms();

    if (have_last && now <= last_ms) {
        now = last_ms;
        memcpy(random, last_random, RANDOM_BYTES);
        if (!increment(random, RANDOM_BYTES))
            now = (now + 1) & TIME_MASK;
    } else if (fill_random(random, RANDOM_BYTES) < 0) {
        return -1;
    }
    have_last = true;
    last_ms = now;
    memcpy(last_random, random, RANDOM_BYTES);
    *ms = now;
    return 0;
}

/* 128 bits (two zero bits in front: 130) as 26 base32 characters. */
static void encode(const uint8_t bytes[16], char *out)
{
    uint32_t acc = 0;
    int bits = 2;
    size_t o = 0;

    for (size_t i = 0; i < 16; i++) {
        acc = (acc << 8) | bytes[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = crockford[(acc >> bits) & 31];
        }
        acc &= (1u << bits) - 1;
    }
    out[o] = '\0';
}

int sg_sandbox_id_new(char out[SG_SANDBOX_ID_SIZE])
{
    uint8_t bytes[16];
    uint64_t ms = 0;
    int ret;

    out[0] = '\0';
    pthread_mutex_lock(&id_lock);
    ret = next_parts(&ms, bytes + 6);
    pthread_mutex_unlock(&id_lock);
    if (ret < 0)
        return -1;
    for (int i = 0; i < 6; i++)
        bytes[i] = (uint8_t)(ms >> (40 - 8 * i));
    memcpy(out, PREFIX, PREFIX_LEN);
    encode(bytes, out + PREFIX_LEN);
    return 0;
}

bool sg_sandbox_id_valid(const char *s)
{
    if (s == NULL || strlen(s) != SG_SANDBOX_ID_LEN ||
        strncmp(s, PREFIX, PREFIX_LEN) != 0)
        return false;
    if (s[PREFIX_LEN] < '0' || s[PREFIX_LEN] > '7')
        return false;
    for (size_t i = PREFIX_LEN; i < SG_SANDBOX_ID_LEN; i++) {
        if (strchr(crockford, s[i]) == NULL || s[i] == '\0')
            return false;
    }
    return true;
}
