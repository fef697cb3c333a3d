/* Characterisation helpers and the bare reference loops the benchmark compares against. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "jp_internal.h"

static int64_t time_nvml_reads(const char *path, uint64_t n, int64_t *out_ns)
{
    char err[256];
    struct jp_nvml_chan c;
    int rc = jp_nvml_load(err, sizeof err);
    if (rc != 0)
        return rc;
    rc = jp_nvml_open(path, &c, err, sizeof err);
    c.slow = 0; /* time the library call itself, not the poller's latest reading */
    for (uint64_t k = 0; rc == 0 && k < n; k++) {
        int64_t v;
        int64_t t0 = jp_now_ns(CLOCK_MONOTONIC);
        int r = jp_nvml_read_now(&c, &v);
        int64_t t1 = jp_now_ns(CLOCK_MONOTONIC);
        if (r != 0)
            rc = -errno;
        out_ns[k] = t1 - t0;
    }
    jp_nvml_unload();
    return rc != 0 ? rc : (int64_t)n;
}

int64_t jp_time_reads(const char *path, uint64_t n, int64_t *out_ns)
{
    uint32_t index;
    int what;
    int kind = jp_nvml_parse(path, &index, &what);
    if (kind < 0)
        return -EINVAL;
    if (kind > 0)
        return time_nvml_reads(path, n, out_ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    for (uint64_t k = 0; k < n; k++) {
        int64_t v;
        int64_t t0 = jp_now_ns(CLOCK_MONOTONIC);
        int rc = jp_read_int(fd, &v);
        int64_t t1 = jp_now_ns(CLOCK_MONOTONIC);
        if (rc != 0) {
            int err = errno;
            close(fd);
            return -err;
        }
        out_ns[k] = t1 - t0;
    }
    close(fd);
    return (int64_t)n;
}

int64_t jp_bench_pread_loop(const char **paths, uint32_t n, int64_t duration_ns)
{
    int fds[JP_MAX_CHANNELS];
    if (n > JP_MAX_CHANNELS)
        return -EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        fds[i] = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fds[i] < 0) {
            int err = errno;
            while (i--)
                close(fds[i]);
            return -err;
        }
    }
    int64_t passes = 0, end = jp_now_ns(CLOCK_MONOTONIC) + duration_ns;
    volatile int64_t sink = 0;
    do {
        for (uint32_t i = 0; i < n; i++) {
            int64_t v = 0;
            jp_read_int(fds[i], &v);
            sink += v;
        }
        passes++;
    } while (jp_now_ns(CLOCK_MONOTONIC) < end);
    for (uint32_t i = 0; i < n; i++)
        close(fds[i]);
    return passes;
}

int64_t jp_bench_sample_loop(const char **paths, uint32_t n, uint64_t capacity,
                             int64_t duration_ns)
{
    if (n == 0 || n > JP_MAX_CHANNELS || capacity < 2)
        return -EINVAL;
    struct jp_loop L = {.nchan = n, .rec_size = jp_record_size(n)};
    L.h = calloc(1, sizeof *L.h + capacity * L.rec_size);
    if (!L.h)
        return -ENOMEM;
    L.h->capacity = capacity;
    L.records = (unsigned char *)(L.h + 1);
    for (uint32_t i = 0; i < n; i++) {
        L.fds[i] = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (L.fds[i] < 0) {
            int err = errno;
            while (i--)
                close(L.fds[i]);
            free(L.h);
            return -err;
        }
    }
    uint64_t seq = 0;
    int64_t end = jp_now_ns(CLOCK_MONOTONIC) + duration_ns;
    do
        jp_take_sample(&L, seq++);
    while (jp_now_ns(CLOCK_MONOTONIC) < end);
    for (uint32_t i = 0; i < n; i++)
        close(L.fds[i]);
    free(L.h);
    return (int64_t)seq;
}

int64_t jp_bench_sleep_loop(int64_t period_ns, uint64_t n, int64_t *out_ns)
{
    int64_t missed = 0, deadline = jp_now_ns(CLOCK_MONOTONIC);
    for (uint64_t k = 0; k < n; k++) {
        /* the sampler's pacing exactly, with nothing to do between wake-ups */
        missed += jp_next_deadline(&deadline, period_ns, jp_now_ns(CLOCK_MONOTONIC));
        struct timespec ts = {.tv_sec = deadline / 1000000000LL, .tv_nsec = deadline % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        out_ns[k] = jp_now_ns(CLOCK_MONOTONIC);
    }
    return missed;
}
