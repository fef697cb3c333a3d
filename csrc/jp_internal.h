/* Helpers shared by the sampler's C sources; not part of the cffi interface. */
#ifndef JP_INTERNAL_H
#define JP_INTERNAL_H

#include <stdint.h>
#include <stddef.h>
#include <time.h>

#include "jp_sampler.h"

#define JP_RING_MAGIC 0x31474E4952504AULL /* "JPRING1\0" little-endian (the version is apart) */

static inline int64_t jp_now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Read one sysfs attribute at offset 0 and parse a decimal integer (leading '-', trailing
 * whitespace allowed).  Returns 0 and stores the value, or -1 (errno set; EINVAL for text that
 * is not one integer). */
int jp_read_int(int fd, int64_t *value);

/* Advance an absolute-deadline grid after a pass that ended at `now`.  A slot whose start has
 * passed but whose end has not is still sampled, at once (sleeping to a past deadline returns
 * immediately); only slots that passed entirely are skipped.  Returns how many were skipped:
 * missed deadlines, counted, never silently absorbed.  The grid itself never moves, so the
 * rate does not drift. */
static inline int64_t jp_next_deadline(int64_t *deadline, int64_t period, int64_t now)
{
    *deadline += period;
    if (now < *deadline + period)
        return 0;
    int64_t missed = (now - *deadline) / period;
    *deadline += missed * period;
    return missed;
}

/* Tests' fault injection (sampler.c): the errno to fail `point` with once, 0 for none. */
int jp_fault_take(int point);

/* NVML channels (nvml.c). */
enum { JP_NVML_POWER_INSTANT = 1, JP_NVML_POWER_AVG = 2, JP_NVML_ENERGY = 3 };
/* NVML poller pace (nvml.c): power every tick, the energy counter every few ticks */
#define JP_NVML_TICK_NS 10000000LL
#define JP_NVML_ENERGY_EVERY 5

/* One NVML reading as the poller took it: the value, the NVML return code, and
 * CLOCK_MONOTONIC just before and after the call. */
struct jp_nvml_reading {
    int64_t value;
    int64_t t_start_ns;
    int64_t t_end_ns;
    int32_t rc;  /* NVML return code; -1: no reading yet */
};

struct jp_nvml_chan {
    void *dev;  /* nvmlDevice_t */
    int what;   /* JP_NVML_* */
    /* NVML calls are slow (the energy counter ~4 ms on an H100, up to 16 ms) and go through the
     * driver the benchmark uses: a poller thread makes them, on another CPU than the loop, and
     * publishes each reading through a seqlock; the loop copies the latest one without ever
     * waiting (jp_nvml_latest). */
    int slow;  /* polled every `slow` poller ticks (0: read in the caller, benchmarks only) */
    uint32_t seq;                   /* seqlock: odd while the poller writes `pub` */
    struct jp_nvml_reading pub;     /* written by the poller (relaxed atomics, under seq) */
    struct jp_nvml_reading cache;   /* the loop's latest consistent copy (loop-private) */
};

/* 1 and *index, *what set when path is an "nvml:" channel, 0 when it is a file, -1 (errno
 * EINVAL) when it starts with "nvml:" but is malformed. */
int jp_nvml_parse(const char *path, uint32_t *index, int *what);
/* Load and initialise NVML (the library set by jp_nvml_set_library); reference counted. */
int jp_nvml_load(char *errbuf, size_t errlen);
void jp_nvml_unload(void);
/* Open an "nvml:" channel: NVML must be loaded. Returns 0, or -errno with a message. */
int jp_nvml_open(const char *path, struct jp_nvml_chan *c, char *errbuf, size_t errlen);
/* The loop's read of a polled channel: the poller's latest reading, copied without waiting
 * (when the poller is mid-write, the previous reading).  Returns 0 with *value and the poller's
 * stamps, or -1 with errno set (ENODEV: the GPU is lost; EIO: another NVML error or no reading
 * yet), the stamps of that attempt set all the same. */
int jp_nvml_latest(struct jp_nvml_chan *c, int64_t *value, int64_t *t_start, int64_t *t_end);
/* One NVML call, made by the caller (c->slow == 0: benchmarks).  0, or -1 with errno set. */
int jp_nvml_read_now(const struct jp_nvml_chan *c, int64_t *value);

/* The poller thread (nvml.c).  Start: one first reading of every channel, then a thread at
 * normal priority, on any allowed CPU but avoid_cpu (when there is none, on it at SCHED_IDLE),
 * that polls every period_ns.  Returns NULL with *err = errno on failure. */
struct jp_nvml_poller;
struct jp_nvml_poller *jp_nvml_start_poller(struct jp_nvml_chan *chans, uint32_t n,
                                            int64_t period_ns, int avoid_cpu, int *err);
void jp_nvml_stop_poller(struct jp_nvml_poller *p);

/* The sampling pass (sampler.c), shared by the loop and jp_bench_sample_loop. */
struct jp_loop {
    struct jp_ring_header *h;
    unsigned char *records;
    size_t rec_size;
    int fds[JP_MAX_CHANNELS];               /* -1 for an NVML channel */
    struct jp_nvml_chan nvml[JP_MAX_CHANNELS];
    uint32_t nchan;
};
void jp_take_sample(struct jp_loop *L, uint64_t seq);

#endif
