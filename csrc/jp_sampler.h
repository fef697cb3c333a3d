/*
 * jetpower sampler: the declarations shared by the C sources and by build.py (which hands this
 * file to cffi's cdef unchanged).  Keep it cdef-compatible: no #include, no macros with
 * expressions, literal array sizes.  Include <stdint.h> and <stddef.h> before this file.
 *
 * Ring-buffer file layout (version 1), little-endian, native alignment:
 *   [struct jp_ring_header][capacity x record]
 *   record = uint64 seq, int64 t_start_ns, int64 t_end_ns, uint64 valid_mask, int64 values[nchan]
 * The writer fills record `seq` in slot seq % capacity, then publishes header.seq = seq + 1 with
 * a release store.  Readers load header.seq with an acquire load (jp_reader_drain).
 *
 * Channels.  A channel "path" is either a file (sysfs attribute, re-read with pread at offset 0)
 * or an NVML reading, spelled "nvml:<gpu index>:<what>" with <what> one of
 *   power_instant  field NVML_FI_DEV_POWER_INSTANT (186), GPU scope (scopeId 0), mW
 *   power_avg      nvmlDeviceGetPowerUsage, mW (a 1 s average on Ampere and newer)
 *   energy         nvmlDeviceGetTotalEnergyConsumption, mJ since the driver loaded (counter)
 * NVML (libnvidia-ml.so.1) is loaded with dlopen only when a channel needs it.
 */

#define JP_RING_VERSION 1
#define JP_MAX_CHANNELS 32
#define JP_NAME_LEN 48
#define JP_UNIT_LEN 16
#define JP_RECORD_FIXED 32
#define JP_NVML_NAME_LEN 96

#define JP_STATE_INIT 0
#define JP_STATE_RUNNING 1
#define JP_STATE_STOPPED 2
#define JP_STATE_FAILED 3

struct jp_ring_header {
    uint64_t magic;              /* JP_RING_MAGIC, stored last (release) when the header is ready */
    uint32_t version;
    uint32_t header_size;
    uint32_t record_size;
    uint32_t nchan;
    uint64_t capacity;           /* records */
    double rate_hz;              /* 0: as fast as the sensor allows */
    int64_t period_ns;
    int64_t anchor_realtime_ns;  /* CLOCK_REALTIME / CLOCK_MONOTONIC pair taken at start */
    int64_t anchor_monotonic_ns;
    int64_t anchor_error_ns;
    int64_t start_monotonic_ns;
    int64_t stop_monotonic_ns;
    int32_t writer_pid;
    int32_t cpu;                 /* CPU the writer ran on at start */
    int32_t sched_policy;        /* as sched_getscheduler() returned */
    int32_t sched_priority;
    uint32_t state;              /* JP_STATE_* */
    int32_t stop_signal;         /* signal that stopped the loop, 0 if none */
    uint64_t seq;                /* records published (release store) */
    uint64_t missed_deadlines;
    uint64_t overruns;           /* records a reader lost because it fell behind (readers add) */
    uint64_t failing_mask;       /* bit i: channel i's latest read failed */
    uint64_t gone_mask;          /* bit i: channel i's file was removed */
    int64_t period_request_ns;   /* a reader asks for a new period (0: free-running); the
                                    writer adopts it at its next pass and updates period_ns */
    uint64_t rate_changes;
    uint64_t read_errors[32];
    char names[32][48];
    char units[32][16];
};

struct jp_counters {
    uint64_t seq;
    uint64_t missed_deadlines;
    uint64_t overruns;
    uint64_t failing_mask;
    uint64_t gone_mask;
    uint32_t state;
    int32_t stop_signal;
    int64_t stop_monotonic_ns;
    uint64_t read_errors[32];
};

/* Run the sampling loop in the calling thread until SIGTERM/SIGINT (when install_signals is set),
 * or until max_samples records (0: no limit) or max_ns nanoseconds (0: no limit).
 * Returns 0 on a clean stop, -errno on failure with a message in errbuf. */
int jp_sampler_run(const char *ring_path, const char **paths, const char **names,
                   const char **units, uint32_t nchan, uint64_t capacity, double rate_hz,
                   uint64_t max_samples, int64_t max_ns, int install_signals,
                   char *errbuf, size_t errlen);

typedef struct jp_reader jp_reader;

jp_reader *jp_reader_open(const char *ring_path, char *errbuf, size_t errlen);
/* 1 when the header is complete and valid, 0 while it is not yet, -1 for a bad magic/version. */
int jp_reader_check(jp_reader *r, char *errbuf, size_t errlen);
const struct jp_ring_header *jp_reader_header(jp_reader *r);
void jp_reader_counters(jp_reader *r, struct jp_counters *out);
/* Copy up to max_records new records into out (record_size bytes each).  Returns how many were
 * copied; *lost receives how many were overwritten before they could be read (also added to the
 * header's overrun counter). */
int64_t jp_reader_drain(jp_reader *r, void *out, uint64_t max_records, uint64_t *lost);
uint64_t jp_reader_position(jp_reader *r);
/* Ask the writer to sample at a new rate from its next pass on (0: as fast as possible). */
void jp_reader_request_period(jp_reader *r, int64_t period_ns);
void jp_reader_close(jp_reader *r);

/* NVML.  The library "nvml:" channels load (default "libnvidia-ml.so.1"); set before
 * jp_sampler_run / jp_time_reads.  The string is copied. */
void jp_nvml_set_library(const char *libpath);

/* What one GPU answers, for discovery.  *_rc: the NVML return code of that query (0: it works,
 * 3: NOT_SUPPORTED), the value beside it valid only when the code is 0. */
struct jp_nvml_device {
    char name[96];
    int32_t handle_rc;
    int32_t name_rc;
    int32_t instant_rc;          /* field 186 (power instant, GPU scope): the per-field code */
    int32_t usage_rc;            /* nvmlDeviceGetPowerUsage */
    int32_t energy_rc;           /* nvmlDeviceGetTotalEnergyConsumption */
    int32_t pad;
    int64_t instant_mw;
    int64_t usage_mw;
    int64_t energy_mj;
};

/* Load NVML from libpath, initialise it, fill out[0..min(count, max)) and shut it down again.
 * Returns the device count, or -1 with a message in errbuf (library absent, symbol missing,
 * nvmlInit_v2 or nvmlDeviceGetCount_v2 failed). */
int jp_nvml_probe(const char *libpath, struct jp_nvml_device *out, uint32_t max,
                  char *errbuf, size_t errlen);
/* The NVML name of a return code ("NVML_ERROR_NOT_SUPPORTED"), without loading the library. */
const char *jp_nvml_return_name(int32_t rc);

/* Characterisation and benchmarks. */
/* Time n reads of one channel (a file, or an "nvml:" channel); per-read durations in out_ns.
 * Returns n, or -errno. */
int64_t jp_time_reads(const char *path, uint64_t n, int64_t *out_ns);
/* Bare loop: pread + parse every file, free-running, for duration_ns; returns passes made. */
int64_t jp_bench_pread_loop(const char **paths, uint32_t n, int64_t duration_ns);
/* Bare loop: sleep to absolute deadlines every period_ns for n wake-ups; wake times in out_ns.
 * Returns deadlines missed. */
int64_t jp_bench_sleep_loop(int64_t period_ns, uint64_t n, int64_t *out_ns);
