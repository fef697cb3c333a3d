/* Helpers shared by the sampler's C sources; not part of the cffi interface. */
#ifndef JP_INTERNAL_H
#define JP_INTERNAL_H

#include <stdint.h>
#include <stddef.h>
#include <time.h>

#include "jp_sampler.h"

#define JP_RING_MAGIC 0x31474E4952504AULL /* "JPRING1\0" little-endian */

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

size_t jp_record_size(uint32_t nchan);

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

/* NVML channels (nvml.c). */
enum { JP_NVML_POWER_INSTANT = 1, JP_NVML_POWER_AVG = 2, JP_NVML_ENERGY = 3 };
/* NVML poller pace (nvml.c): power every tick, the energy counter every few ticks */
#define JP_NVML_TICK_NS 10000000LL
#define JP_NVML_ENERGY_EVERY 5

struct jp_nvml_chan {
    void *dev;  /* nvmlDevice_t */
    int what;   /* JP_NVML_* */
    /* The energy counter is slow to read (about 4 ms a call on an H100): a poller thread reads it
     * and the sampling loop copies its latest completed reading. */
    int slow;  /* polled apart, every `slow` poller ticks (0: read in the loop) */
    int64_t latest;
    int latest_rc;  /* NVML return code of the latest poll (release-stored after latest) */
};

/* 1 and *index, *what set when path is an "nvml:" channel, 0 when it is a file, -1 (errno
 * EINVAL) when it starts with "nvml:" but is malformed. */
int jp_nvml_parse(const char *path, uint32_t *index, int *what);
/* Load and initialise NVML (the library set by jp_nvml_set_library); reference counted. */
int jp_nvml_load(char *errbuf, size_t errlen);
void jp_nvml_unload(void);
/* Open an "nvml:" channel: NVML must be loaded. Returns 0, or -errno with a message. */
int jp_nvml_open(const char *path, struct jp_nvml_chan *c, char *errbuf, size_t errlen);
/* One reading (mW or mJ).  Returns 0, or -1 with errno set (ENODEV: the GPU is lost). */
int jp_nvml_read(const struct jp_nvml_chan *c, int64_t *value);
/* Start / stop the thread that polls the slow channels among chans[0..n) every period_ns, at
 * normal priority (the sampling loop, at SCHED_FIFO, preempts it). */
int jp_nvml_start_poller(struct jp_nvml_chan *chans, uint32_t n, int64_t period_ns);
void jp_nvml_stop_poller(void);

#endif
