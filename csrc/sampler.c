/*
 * The sampling loop: one pass over the channel files per sample, stamped with CLOCK_MONOTONIC
 * before and after, paced by absolute deadlines, published into the memory-mapped ring.
 * Runs without the GIL (cffi releases it) and never calls back into Python.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jp_internal.h"

_Static_assert(sizeof(struct jp_ring_header) % 8 == 0, "header must keep records 8-aligned");

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

size_t jp_record_size(uint32_t nchan) { return JP_RECORD_FIXED + 8u * (size_t)nchan; }

int jp_read_int(int fd, int64_t *value)
{
    char buf[40];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n < 0)
        return -1;
    const char *p = buf, *end = buf + n;
    int neg = 0;
    if (p < end && (*p == '-' || *p == '+'))
        neg = (*p++ == '-');
    if (p == end || *p < '0' || *p > '9') {
        errno = n == 0 ? ENODATA : EINVAL;
        return -1;
    }
    int64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (*p++ - '0');
    while (p < end && (*p == '\n' || *p == ' ' || *p == '\t' || *p == '\0'))
        p++;
    if (p != end) {
        errno = EINVAL;
        return -1;
    }
    *value = neg ? -v : v;
    return 0;
}

static int fail(char *errbuf, size_t errlen, int err, const char *fmt, ...)
{
    if (errbuf && errlen) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
        if (err && k >= 0 && (size_t)k < errlen)
            snprintf(errbuf + k, errlen - (size_t)k, ": %s", strerror(err));
    }
    return -(err ? err : EINVAL);
}

struct loop {
    struct jp_ring_header *h;
    unsigned char *records;
    size_t rec_size;
    int fds[JP_MAX_CHANNELS];               /* -1 for an NVML channel */
    struct jp_nvml_chan nvml[JP_MAX_CHANNELS];
    uint32_t nchan;
    int nvml_loaded;
};

/* A file channel costs one well-predicted branch more than before; an NVML one a library call. */
static inline int read_channel(const struct loop *L, uint32_t i, int64_t *v)
{
    int fd = L->fds[i];
    return fd >= 0 ? jp_read_int(fd, v) : jp_nvml_read(&L->nvml[i], v);
}

/* One pass over every channel; the record is complete before seq is published. */
static void take_sample(struct loop *L, uint64_t seq)
{
    struct jp_ring_header *h = L->h;
    unsigned char *rec = L->records + (seq % h->capacity) * L->rec_size;
    int64_t *values = (int64_t *)(rec + JP_RECORD_FIXED);
    uint64_t valid = 0, failing = 0;
    uint64_t gone = __atomic_load_n(&h->gone_mask, __ATOMIC_RELAXED);

    int64_t t0 = jp_now_ns(CLOCK_MONOTONIC);
    for (uint32_t i = 0; i < L->nchan; i++) {
        int64_t v = 0;
        if (!(gone & (1ULL << i)) && read_channel(L, i, &v) == 0) {
            valid |= 1ULL << i;
            values[i] = v;
        } else {
            if (L->fds[i] < 0 && errno == ENODEV) /* NVML: the GPU fell off the bus */
                __atomic_fetch_or(&h->gone_mask, 1ULL << i, __ATOMIC_RELAXED);
            values[i] = 0;
            failing |= 1ULL << i;
            __atomic_fetch_add(&h->read_errors[i], 1, __ATOMIC_RELAXED);
        }
    }
    int64_t t1 = jp_now_ns(CLOCK_MONOTONIC);

    uint64_t *fixed = (uint64_t *)rec;
    fixed[0] = seq;
    ((int64_t *)rec)[1] = t0;
    ((int64_t *)rec)[2] = t1;
    fixed[3] = valid;
    __atomic_store_n(&h->failing_mask, failing, __ATOMIC_RELAXED);
    __atomic_store_n(&h->seq, seq + 1, __ATOMIC_RELEASE);
}

/* A sysfs attribute whose device went away fails its reads; a removed regular file (the
 * simulated tree) would keep answering with its last content, so look for unlinked files. */
static void check_gone(struct loop *L)
{
    uint64_t gone = 0;
    for (uint32_t i = 0; i < L->nchan; i++) {
        struct stat st;
        if (L->fds[i] < 0)
            continue; /* NVML: a lost GPU is seen by its reads */
        if (fstat(L->fds[i], &st) != 0 || st.st_nlink == 0)
            gone |= 1ULL << i;
    }
    __atomic_fetch_or(&L->h->gone_mask, gone, __ATOMIC_RELAXED);
}

static void take_anchor(struct jp_ring_header *h)
{
    int64_t best = INT64_MAX;
    for (int k = 0; k < 5; k++) {
        int64_t m0 = jp_now_ns(CLOCK_MONOTONIC);
        int64_t r = jp_now_ns(CLOCK_REALTIME);
        int64_t m1 = jp_now_ns(CLOCK_MONOTONIC);
        if (m1 - m0 < best) {
            best = m1 - m0;
            h->anchor_realtime_ns = r;
            h->anchor_monotonic_ns = m0 + (m1 - m0) / 2;
            h->anchor_error_ns = (m1 - m0 + 1) / 2;
        }
    }
}

static void copy_name(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

int jp_sampler_run(const char *ring_path, const char **paths, const char **names,
                   const char **units, uint32_t nchan, uint64_t capacity, double rate_hz,
                   uint64_t max_samples, int64_t max_ns, int install_signals,
                   char *errbuf, size_t errlen)
{
    if (nchan == 0 || nchan > JP_MAX_CHANNELS)
        return fail(errbuf, errlen, 0, "channel count %u out of range 1..%d", nchan, JP_MAX_CHANNELS);
    if (capacity < 2)
        return fail(errbuf, errlen, 0, "ring capacity %llu too small", (unsigned long long)capacity);
    if (!(rate_hz >= 0.0) || rate_hz > 1e6)
        return fail(errbuf, errlen, 0, "rate %g Hz out of range 0..1e6", rate_hz);

    struct loop L = {.nchan = nchan};
    uint32_t opened = 0;
    int rc = 0, ring_fd = -1;
    void *map = MAP_FAILED;
    size_t map_size = 0;

    for (; opened < nchan; opened++) {
        uint32_t index;
        int what;
        int kind = jp_nvml_parse(paths[opened], &index, &what);
        if (kind != 0) {
            L.fds[opened] = -1;
            if (!L.nvml_loaded) {
                rc = jp_nvml_load(errbuf, errlen);
                if (rc != 0)
                    goto out;
                L.nvml_loaded = 1;
            }
            rc = jp_nvml_open(paths[opened], &L.nvml[opened], errbuf, errlen);
            if (rc != 0)
                goto out;
            continue;
        }
        L.fds[opened] = open(paths[opened], O_RDONLY | O_CLOEXEC);
        if (L.fds[opened] < 0) {
            rc = fail(errbuf, errlen, errno, "cannot open %s", paths[opened]);
            goto out;
        }
    }

    L.rec_size = jp_record_size(nchan);
    map_size = sizeof(struct jp_ring_header) + capacity * L.rec_size;
    ring_fd = open(ring_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (ring_fd < 0) {
        rc = fail(errbuf, errlen, errno, "cannot create ring file %s", ring_path);
        goto out;
    }
    /* Reserve every block now: on a full tmpfs a later store into the mapping would be a
     * SIGBUS; here it is a clear error before the loop starts. */
    int fa = posix_fallocate(ring_fd, 0, (off_t)map_size);
    if (fa != 0) {
        rc = fail(errbuf, errlen, fa, "cannot reserve %zu bytes for ring file %s", map_size,
                  ring_path);
        goto out;
    }
    map = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0);
    if (map == MAP_FAILED) {
        rc = fail(errbuf, errlen, errno, "cannot map ring file %s", ring_path);
        goto out;
    }
    /* Touch every page now so the loop never takes a page fault on a fresh slot. */
    memset(map, 0, map_size);

    struct jp_ring_header *h = map;
    L.h = h;
    L.records = (unsigned char *)map + sizeof *h;
    h->version = JP_RING_VERSION;
    h->header_size = sizeof *h;
    h->record_size = (uint32_t)L.rec_size;
    h->nchan = nchan;
    h->capacity = capacity;
    h->rate_hz = rate_hz;
    h->period_ns = rate_hz > 0 ? (int64_t)(1e9 / rate_hz + 0.5) : 0;
    h->period_request_ns = h->period_ns;
    h->writer_pid = getpid();
    h->cpu = sched_getcpu();
    h->sched_policy = sched_getscheduler(0);
    struct sched_param sp;
    h->sched_priority = sched_getparam(0, &sp) == 0 ? sp.sched_priority : 0;
    for (uint32_t i = 0; i < nchan; i++) {
        copy_name(h->names[i], JP_NAME_LEN, names ? names[i] : "");
        copy_name(h->units[i], JP_UNIT_LEN, units ? units[i] : "");
    }

    struct sigaction old_term, old_int, sa;
    if (install_signals) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal; /* no SA_RESTART: the sleep returns EINTR */
        sigemptyset(&sa.sa_mask);
        stop_signal = 0;
        sigaction(SIGTERM, &sa, &old_term);
        sigaction(SIGINT, &sa, &old_int);
    }

    if (L.nvml_loaded) {
        /* NVML readings come from a poller thread (nvml.c explains its pace): reading them in
         * the loop cost the benchmark GPU throughput and the loop its deadlines. */
        rc = jp_nvml_start_poller(L.nvml, nchan, JP_NVML_TICK_NS);
        if (rc != 0) {
            fail(errbuf, errlen, -rc, "cannot start the NVML energy poller");
            goto out;
        }
    }
    take_anchor(h);
    int64_t start = jp_now_ns(CLOCK_MONOTONIC);
    h->start_monotonic_ns = start;
    h->state = JP_STATE_RUNNING;
    __atomic_store_n(&h->magic, JP_RING_MAGIC, __ATOMIC_RELEASE);

    int64_t period = h->period_ns;
    const int64_t gone_every = 100000000; /* look for removed files every 100 ms */
    int64_t deadline = start, next_gone_check = start + gone_every;
    uint64_t seq = 0;
    while (!stop_signal) {
        take_sample(&L, seq++);
        if (max_samples && seq >= max_samples)
            break;
        int64_t now = jp_now_ns(CLOCK_MONOTONIC);
        if (max_ns && now - start >= max_ns)
            break;
        if (now >= next_gone_check) {
            check_gone(&L);
            next_gone_check = now + gone_every;
        }
        int64_t req = __atomic_load_n(&h->period_request_ns, __ATOMIC_ACQUIRE);
        if (req != period && req >= 0) {
            /* A new rate starts a new deadline grid at this pass. */
            period = req;
            h->period_ns = req;
            h->rate_hz = req > 0 ? 1e9 / (double)req : 0.0;
            __atomic_fetch_add(&h->rate_changes, 1, __ATOMIC_RELAXED);
            deadline = now;
        }
        if (period == 0)
            continue;
        int64_t missed = jp_next_deadline(&deadline, period, now);
        if (missed)
            __atomic_fetch_add(&h->missed_deadlines, (uint64_t)missed, __ATOMIC_RELAXED);
        struct timespec ts = {.tv_sec = deadline / 1000000000LL, .tv_nsec = deadline % 1000000000LL};
        while (!stop_signal && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
    }

    h->stop_monotonic_ns = jp_now_ns(CLOCK_MONOTONIC);
    h->stop_signal = stop_signal;
    __atomic_store_n(&h->state, JP_STATE_STOPPED, __ATOMIC_RELEASE);
    msync(map, map_size, MS_SYNC);
    if (install_signals) {
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGINT, &old_int, NULL);
    }

out:
    for (uint32_t i = 0; i < opened; i++)
        if (L.fds[i] >= 0)
            close(L.fds[i]);
    if (L.nvml_loaded) {
        jp_nvml_stop_poller();
        jp_nvml_unload();
    }
    if (map != MAP_FAILED)
        munmap(map, map_size);
    if (ring_fd >= 0)
        close(ring_fd);
    return rc;
}
