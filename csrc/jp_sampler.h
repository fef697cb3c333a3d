/*
 * jetpower sampler: the declarations shared by the C sources and by build.py (which hands this
 * file to cffi's cdef unchanged).  Keep it cdef-compatible: no #include, no macros with
 * expressions, integer literals only, literal array sizes (sampler.c asserts that they agree
 * with JP_MAX_CHANNELS, JP_NAME_LEN and JP_UNIT_LEN).  Include <stdint.h> and <stddef.h> first.
 *
 * Ring-buffer file layout (version 2), little-endian, native alignment:
 *   [struct jp_ring_header][capacity x record]
 *   record (32 + 24 x nchan bytes, every field 8 bytes, so a record is an int64 array):
 *     offset 0           uint64 seq            index of this record (0, 1, 2, ...)
 *            8           int64  t_start_ns     CLOCK_MONOTONIC just before the pass
 *            16          int64  t_end_ns       CLOCK_MONOTONIC just after the pass
 *            24          uint64 valid_mask     bit i: channel i's value is a good reading
 *            32          int64  values[nchan]  one integer per channel, in the channel's unit
 *            32 + 8 n    int64  read_start_ns[nchan]  CLOCK_MONOTONIC just before channel i's read
 *            32 + 16 n   int64  read_end_ns[nchan]    CLOCK_MONOTONIC just after it
 *   For a file channel, read_start/read_end bracket its pread: the value was latched inside
 *   [read_start, read_end].  For an "nvml:" channel the loop copies the poller thread's latest
 *   reading, and the stamps are the poller's, around the NVML call that returned that value (so
 *   they may lie before t_start).  A failed read (its valid bit clear) keeps the stamps of the
 *   attempt.
 *   Why absolute int64 stamps and not 32-bit offsets from t_start: a pass can last longer than
 *   any 32-bit nanosecond offset holds (a sampler stopped by SIGSTOP or descheduled mid-pass for
 *   seconds; a JetPack 5 driver waiting a conversion per read), and an NVML stamp lies before
 *   t_start by up to the poller's period: 64 bits need no sentinel and no arithmetic to decode.
 *   The cost is 8 bytes per channel more than offsets (a 6-channel record is 176 bytes instead
 *   of 128); the stores are nothing beside a pread.
 * Version 1 (jetpower before per-read stamps) had record = seq, t_start_ns, t_end_ns,
 * valid_mask, values[nchan]; readers reject any version but their own.
 *
 * Publication.  The writer issues a release fence, fills record `seq` in slot seq % capacity,
 * then publishes header.seq = seq + 1 with a release store.  Readers load header.seq with an
 * acquire load, copy, and re-check (jp_reader_drain; reader.c says why that is ARM-safe).
 *
 * Rates.  A rate is 0 or in [JP_MIN_RATE_HZ, JP_MAX_RATE_HZ]; anything else (negative, NaN,
 * infinite, 1e-10) is refused with -EINVAL and a message.  Rate 0 means "as fast as the sensor
 * allows, up to the ceiling": the loop paces at JP_MAX_RATE_HZ and never free-runs, so it
 * sleeps between passes whenever a pass is shorter than 1 / JP_MAX_RATE_HZ.  The header's rate_hz
 * and period_ns give the pace in force (for rate 0: JP_MAX_RATE_HZ and its period).  Hz becomes
 * a period here and nowhere else (jp_rate_period, used by the loop and by
 * jp_reader_request_rate).
 *
 * Channels.  A channel "path" is either a file (sysfs attribute, re-read with pread at offset 0)
 * or an NVML reading, spelled "nvml:<gpu index>:<what>" with <what> one of
 *   power_instant  field NVML_FI_DEV_POWER_INSTANT (186), GPU scope (scopeId 0), mW
 *   power_avg      nvmlDeviceGetPowerUsage, mW (a 1 s average on Ampere and newer)
 *   energy         nvmlDeviceGetTotalEnergyConsumption, mJ since the driver loaded (counter)
 * NVML (libnvidia-ml.so.1) is loaded with dlopen only when a channel needs it.
 */

#define JP_RING_VERSION 2
#define JP_MAX_CHANNELS 32
#define JP_NAME_LEN 48
#define JP_UNIT_LEN 16
#define JP_RECORD_FIXED 32
#define JP_RECORD_PER_CHANNEL 24
#define JP_NVML_NAME_LEN 96
/* The one rate range of jetpower (the plan and the CLI take theirs from here through _native). */
#define JP_MAX_RATE_HZ 100000
#define JP_MIN_RATE_HZ 1

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
    double rate_hz;              /* the pace in force: 1e9 / period_ns (rate 0: JP_MAX_RATE_HZ) */
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
    uint32_t state;              /* JP_STATE_*; FAILED when the loop could not start */
    int32_t stop_signal;         /* signal that stopped the loop, 0 if none */
    uint64_t seq;                /* records published (release store) */
    uint64_t missed_deadlines;
    uint64_t overruns;           /* records a reader lost because it fell behind (readers add) */
    uint64_t failing_mask;       /* bit i: channel i's latest read failed */
    uint64_t gone_mask;          /* bit i: channel i's file was removed */
    int64_t period_request_ns;   /* a reader asks for a new pace (jp_reader_request_rate); the
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
    uint64_t rate_changes;
    uint64_t read_errors[32];
};

/* Run the sampling loop in the calling thread until SIGTERM/SIGINT (when install_signals is set:
 * the previous handlers are restored on every return), or until max_samples records (0: no
 * limit) or max_ns nanoseconds (0: no limit) -- whichever comes first; the loop's sleep is cut at
 * the max_ns end, so a slow rate does not overshoot it.  On every stop: state STOPPED,
 * stop_monotonic_ns set, stop_signal the signal's number or 0.
 * Returns 0 on a clean stop, -errno on failure with a message in errbuf.  A failure before the
 * ring's header is written removes the ring file it created; one after sets state FAILED in the
 * header (which is then published, magic and all, so that readers see the failure).  No file
 * descriptor, mapping, thread or signal handler outlives the call on any path. */
int jp_sampler_run(const char *ring_path, const char **paths, const char **names,
                   const char **units, uint32_t nchan, uint64_t capacity, double rate_hz,
                   uint64_t max_samples, int64_t max_ns, int install_signals,
                   char *errbuf, size_t errlen);

/* Hz -> period, the only place: 0 -> the period of JP_MAX_RATE_HZ; [min, max] -> the nearest
 * nanosecond; anything else -> -EINVAL with a message in errbuf (may be NULL). */
int jp_rate_period(double rate_hz, int64_t *period_ns, char *errbuf, size_t errlen);
/* Bytes of one record of nchan channels (JP_RECORD_FIXED + JP_RECORD_PER_CHANNEL x nchan). */
size_t jp_record_size(uint32_t nchan);

typedef struct jp_reader jp_reader;

jp_reader *jp_reader_open(const char *ring_path, char *errbuf, size_t errlen);
/* 1 when the header is complete and valid, 0 while it is not yet, -1 for a bad magic/version. */
int jp_reader_check(jp_reader *r, char *errbuf, size_t errlen);
const struct jp_ring_header *jp_reader_header(jp_reader *r);
void jp_reader_counters(jp_reader *r, struct jp_counters *out);
/* Records published and not yet read by this reader (at most the capacity). */
uint64_t jp_reader_pending(jp_reader *r);
/* Copy up to max_records new records into out (record_size bytes each).  Returns how many were
 * copied; *lost receives how many were overwritten before they could be read (also added to the
 * header's overrun counter). */
int64_t jp_reader_drain(jp_reader *r, void *out, uint64_t max_records, uint64_t *lost);
uint64_t jp_reader_position(jp_reader *r);
/* Ask the writer to pace at rate_hz from its next pass on (0: JP_MAX_RATE_HZ, see Rates).
 * Returns 0, or -EINVAL with a message for a rate out of range (nothing is requested then). */
int jp_reader_request_rate(jp_reader *r, double rate_hz, char *errbuf, size_t errlen);
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
/* The sampler's own pass (the very function the loop calls: per-read stamps, record stores,
 * publication) over these files, free-running into a private ring of `capacity` records for
 * duration_ns; returns passes made, or -errno.  Only a benchmark may free-run: the loop never
 * does (see Rates). */
int64_t jp_bench_sample_loop(const char **paths, uint32_t n, uint64_t capacity,
                             int64_t duration_ns);
/* Bare loop: sleep to absolute deadlines every period_ns for n wake-ups; wake times in out_ns.
 * Returns deadlines missed. */
int64_t jp_bench_sleep_loop(int64_t period_ns, uint64_t n, int64_t *out_ns);

/* Tests only: make the next attempt at `point` fail with errno `err` (0 clears it).  Points:
 * JP_FAULT_POLLER (starting the NVML poller thread).  Failures that real resources can cause
 * (a missing file, a file-size limit, a bad NVML library) are tested with those instead. */
#define JP_FAULT_POLLER 1
void jp_test_inject_fault(int point, int err);
