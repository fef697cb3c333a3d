/*
 * The sampling loop: one pass over the channels per sample, stamped with CLOCK_MONOTONIC before
 * and after the pass and around every read, paced by absolute deadlines, published into the
 * memory-mapped ring.  Runs without the GIL (cffi releases it) and never calls back into Python.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
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

/* cdef needs literal sizes in jp_sampler.h: tie them to the constants here. */
#define JP_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define JP_HDR (*(struct jp_ring_header *)0)
#define JP_CNT (*(struct jp_counters *)0)
_Static_assert(JP_LEN(JP_HDR.read_errors) == JP_MAX_CHANNELS, "read_errors[] != JP_MAX_CHANNELS");
_Static_assert(JP_LEN(JP_HDR.names) == JP_MAX_CHANNELS, "names[] != JP_MAX_CHANNELS");
_Static_assert(sizeof(JP_HDR.names[0]) == JP_NAME_LEN, "names[][] != JP_NAME_LEN");
_Static_assert(JP_LEN(JP_HDR.units) == JP_MAX_CHANNELS, "units[] != JP_MAX_CHANNELS");
_Static_assert(sizeof(JP_HDR.units[0]) == JP_UNIT_LEN, "units[][] != JP_UNIT_LEN");
_Static_assert(JP_LEN(JP_CNT.read_errors) == JP_MAX_CHANNELS, "counters != JP_MAX_CHANNELS");
_Static_assert(sizeof(((struct jp_nvml_device *)0)->name) == JP_NVML_NAME_LEN, "NVML name length");
_Static_assert(JP_MAX_CHANNELS <= 64, "a channel's valid, failing and gone bits are in a uint64");
_Static_assert(JP_RECORD_FIXED == 4 * sizeof(int64_t), "seq, t_start, t_end, valid_mask");
_Static_assert(JP_RECORD_PER_CHANNEL == 3 * sizeof(int64_t), "value, read_start, read_end");
_Static_assert(sizeof(struct jp_ring_header) % 8 == 0, "header must keep records 8-aligned");
_Static_assert(JP_MIN_RATE_HZ > 0 && JP_MIN_RATE_HZ <= JP_MAX_RATE_HZ, "rate range");

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

static int fault_errno[2];

void jp_test_inject_fault(int point, int err)
{
    if (point > 0 && (size_t)point < JP_LEN(fault_errno))
        __atomic_store_n(&fault_errno[point], err, __ATOMIC_RELAXED);
}

int jp_fault_take(int point)
{
    return __atomic_exchange_n(&fault_errno[point], 0, __ATOMIC_RELAXED);
}

size_t jp_record_size(uint32_t nchan)
{
    return JP_RECORD_FIXED + JP_RECORD_PER_CHANNEL * (size_t)nchan;
}

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

int jp_rate_period(double rate_hz, int64_t *period_ns, char *errbuf, size_t errlen)
{
    if (rate_hz == 0.0) {
        *period_ns = (1000000000LL + JP_MAX_RATE_HZ / 2) / JP_MAX_RATE_HZ;
        return 0;
    }
    if (!(rate_hz >= JP_MIN_RATE_HZ && rate_hz <= JP_MAX_RATE_HZ)) /* NaN fails too */
        return fail(errbuf, errlen, 0, "rate %g Hz out of range: expected 0 (as fast as the "
                    "sensor allows, at most %d Hz) or %d to %d Hz", rate_hz, JP_MAX_RATE_HZ,
                    JP_MIN_RATE_HZ, JP_MAX_RATE_HZ);
    *period_ns = llround(1e9 / rate_hz);
    return 0;
}

/* One pass over every channel; the record is complete before seq is published. */
void jp_take_sample(struct jp_loop *L, uint64_t seq)
{
    struct jp_ring_header *h = L->h;
    const uint32_t n = L->nchan;
    int64_t *rec = (int64_t *)(L->records + (seq % h->capacity) * L->rec_size);
    int64_t *values = rec + 4, *rstart = values + n, *rend = rstart + n;
    uint64_t valid = 0, failing = 0;
    uint64_t gone = __atomic_load_n(&h->gone_mask, __ATOMIC_RELAXED);

    /* Every store below overwrites record seq - capacity: order them after the publication of
     * seq (the previous pass's release store), for the reader's re-check (reader.c). */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    int64_t t0 = jp_now_ns(CLOCK_MONOTONIC);
    for (uint32_t i = 0; i < n; i++) {
        int64_t v = 0, s = 0, e = 0;
        int rc = -1;
        if (gone & (1ULL << i)) {
            errno = ENODEV; /* no read attempted: stamps 0 */
        } else if (L->fds[i] >= 0) {
            s = jp_now_ns(CLOCK_MONOTONIC);
            rc = jp_read_int(L->fds[i], &v);
            e = jp_now_ns(CLOCK_MONOTONIC);
        } else {
            rc = jp_nvml_latest(&L->nvml[i], &v, &s, &e);
        }
        rstart[i] = s;
        rend[i] = e;
        if (rc == 0) {
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

    rec[0] = (int64_t)seq;
    rec[1] = t0;
    rec[2] = t1;
    rec[3] = (int64_t)valid;
    __atomic_store_n(&h->failing_mask, failing, __ATOMIC_RELAXED);
    __atomic_store_n(&h->seq, seq + 1, __ATOMIC_RELEASE);
}

/* A sysfs attribute whose device went away fails its reads; a removed regular file (the
 * simulated tree) would keep answering with its last content, so look for unlinked files. */
static void check_gone(struct jp_loop *L)
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

/* The longest single sleep: a stop signal that lands between the loop's check and its sleep
 * is seen after at most this long, at any rate. */
#define JP_SLEEP_SLICE_NS 50000000LL

/* Sleep to absolute time t, in slices, until t or a stop signal. */
static void sleep_until(int64_t t)
{
    while (!stop_signal) {
        int64_t now = jp_now_ns(CLOCK_MONOTONIC);
        if (now >= t)
            return;
        int64_t to = t - now > JP_SLEEP_SLICE_NS ? now + JP_SLEEP_SLICE_NS : t;
        struct timespec ts = {.tv_sec = to / 1000000000LL, .tv_nsec = to % 1000000000LL};
        if (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == 0 && to == t)
            return;
    }
}

static void copy_name(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* The header exists but the loop cannot run: say so to every reader. */
static void publish_failed(struct jp_ring_header *h)
{
    h->stop_monotonic_ns = jp_now_ns(CLOCK_MONOTONIC);
    __atomic_store_n(&h->state, JP_STATE_FAILED, __ATOMIC_RELEASE);
    __atomic_store_n(&h->magic, JP_RING_MAGIC, __ATOMIC_RELEASE);
}

int jp_sampler_run(const char *ring_path, const char **paths, const char **names,
                   const char **units, uint32_t nchan, uint64_t capacity, double rate_hz,
                   uint64_t max_samples, int64_t max_ns, int install_signals,
                   char *errbuf, size_t errlen)
{
    if (nchan == 0 || nchan > JP_MAX_CHANNELS)
        return fail(errbuf, errlen, 0, "channel count %u out of range 1..%d", nchan, JP_MAX_CHANNELS);
    if (capacity < 2 || capacity > (uint64_t)1 << 40)
        return fail(errbuf, errlen, 0, "ring capacity %llu out of range 2..2^40 records",
                    (unsigned long long)capacity);
    if (max_ns < 0)
        return fail(errbuf, errlen, 0, "time limit %lld ns is negative", (long long)max_ns);
    int64_t period;
    int rc = jp_rate_period(rate_hz, &period, errbuf, errlen);
    if (rc != 0)
        return rc;

    struct jp_loop L = {.nchan = nchan};
    uint32_t opened = 0;
    int ring_fd = -1, nvml_loaded = 0, signals_set = 0;
    struct jp_nvml_poller *poller = NULL;
    struct sigaction old_term, old_int;
    struct jp_ring_header *h = NULL;
    void *map = MAP_FAILED;
    size_t map_size = 0;

    for (; opened < nchan; opened++) {
        uint32_t index;
        int what;
        int kind = jp_nvml_parse(paths[opened], &index, &what);
        if (kind != 0) {
            L.fds[opened] = -1;
            if (!nvml_loaded) {
                rc = jp_nvml_load(errbuf, errlen);
                if (rc != 0)
                    goto out;
                nvml_loaded = 1;
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

    h = map;
    L.h = h;
    L.records = (unsigned char *)map + sizeof *h;
    h->version = JP_RING_VERSION;
    h->header_size = sizeof *h;
    h->record_size = (uint32_t)L.rec_size;
    h->nchan = nchan;
    h->capacity = capacity;
    h->period_ns = period;
    h->rate_hz = 1e9 / (double)period;
    h->period_request_ns = period;
    h->writer_pid = getpid();
    h->cpu = sched_getcpu();
    h->sched_policy = sched_getscheduler(0);
    struct sched_param sp;
    h->sched_priority = sched_getparam(0, &sp) == 0 ? sp.sched_priority : 0;
    for (uint32_t i = 0; i < nchan; i++) {
        copy_name(h->names[i], JP_NAME_LEN, names ? names[i] : "");
        copy_name(h->units[i], JP_UNIT_LEN, units ? units[i] : "");
    }
    /* From here on the header exists: a failure is published as JP_STATE_FAILED. */

    stop_signal = 0;
    if (install_signals) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal; /* no SA_RESTART: the sleep returns EINTR */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, &old_term);
        sigaction(SIGINT, &sa, &old_int);
        signals_set = 1;
    }

    if (nvml_loaded) {
        /* NVML readings come from a poller thread on another CPU (nvml.c explains its pace):
         * reading them in the loop cost the benchmark GPU throughput and the loop its
         * deadlines. */
        int err = 0;
        poller = jp_nvml_start_poller(L.nvml, nchan, JP_NVML_TICK_NS, h->cpu, &err);
        if (!poller) {
            rc = fail(errbuf, errlen, err, "cannot start the NVML poller thread");
            publish_failed(h);
            goto out;
        }
    }
    take_anchor(h);
    int64_t start = jp_now_ns(CLOCK_MONOTONIC);
    h->start_monotonic_ns = start;
    h->state = JP_STATE_RUNNING;
    __atomic_store_n(&h->magic, JP_RING_MAGIC, __ATOMIC_RELEASE);

    const int64_t gone_every = 100000000; /* look for removed files every 100 ms */
    const int64_t end = max_ns ? start + max_ns : INT64_MAX;
    int64_t deadline = start, next_gone_check = start + gone_every;
    uint64_t seq = 0;
    while (!stop_signal) {
        jp_take_sample(&L, seq++);
        if (max_samples && seq >= max_samples)
            break;
        int64_t now = jp_now_ns(CLOCK_MONOTONIC);
        if (now >= end)
            break;
        if (now >= next_gone_check) {
            check_gone(&L);
            next_gone_check = now + gone_every;
        }
        int64_t req = __atomic_load_n(&h->period_request_ns, __ATOMIC_ACQUIRE);
        if (req > 0 && req != period) {
            /* A new rate starts a new deadline grid at this pass. */
            period = req;
            h->period_ns = req;
            h->rate_hz = 1e9 / (double)req;
            __atomic_fetch_add(&h->rate_changes, 1, __ATOMIC_RELAXED);
            deadline = now;
        }
        int64_t missed = jp_next_deadline(&deadline, period, now);
        if (missed)
            __atomic_fetch_add(&h->missed_deadlines, (uint64_t)missed, __ATOMIC_RELAXED);
        if (deadline >= end) {
            sleep_until(end); /* the time limit falls before the next slot */
            break;
        }
        sleep_until(deadline);
    }

    h->stop_monotonic_ns = jp_now_ns(CLOCK_MONOTONIC);
    h->stop_signal = stop_signal;
    __atomic_store_n(&h->state, JP_STATE_STOPPED, __ATOMIC_RELEASE);
    msync(map, map_size, MS_SYNC);

out:
    if (signals_set) {
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGINT, &old_int, NULL);
    }
    jp_nvml_stop_poller(poller);
    for (uint32_t i = 0; i < opened; i++)
        if (L.fds[i] >= 0)
            close(L.fds[i]);
    if (nvml_loaded)
        jp_nvml_unload();
    if (map != MAP_FAILED)
        munmap(map, map_size);
    if (ring_fd >= 0) {
        if (!h)
            unlink(ring_path); /* ours (O_EXCL), and no reader can make sense of it */
        close(ring_fd);
    }
    return rc;
}
