/*
 * NVML, loaded at run time: no build-time dependency on the NVIDIA driver.  Only the handful of
 * entry points the sampler needs are declared here, with the layouts of the NVML API.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jp_internal.h"

typedef int nvml_return;
typedef struct nvml_device_opaque *nvml_device;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_FI_DEV_POWER_INSTANT = 186,
    NVML_DEVICE_NAME_V2_BUFFER_SIZE = 96,
};

enum { /* nvmlValueType_t */
    VT_DOUBLE = 0, VT_UINT = 1, VT_ULONG = 2, VT_ULONGLONG = 3, VT_SLONGLONG = 4, VT_SINT = 5,
    VT_USHORT = 6,
};

typedef union {
    double dVal;
    int siVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    signed long long sllVal;
    unsigned short usVal;
} nvml_value;

typedef struct { /* nvmlFieldValue_t */
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    int valueType;
    nvml_return nvmlReturn;
    nvml_value value;
} nvml_field_value;

_Static_assert(sizeof(nvml_field_value) == 40, "nvmlFieldValue_t is 40 bytes");

static struct {
    void *so;
    int refs;
    nvml_return (*init)(void);
    nvml_return (*shutdown)(void);
    nvml_return (*count)(unsigned int *);
    nvml_return (*handle)(unsigned int, nvml_device *);
    nvml_return (*name)(nvml_device, char *, unsigned int);
    nvml_return (*fields)(nvml_device, int, nvml_field_value *);
    nvml_return (*usage)(nvml_device, unsigned int *);
    nvml_return (*energy)(nvml_device, unsigned long long *);
    const char *(*error_string)(nvml_return);
} nv;

static char lib_path[4096] = "libnvidia-ml.so.1";

void jp_nvml_set_library(const char *libpath)
{
    snprintf(lib_path, sizeof lib_path, "%s", libpath && *libpath ? libpath : "libnvidia-ml.so.1");
}

const char *jp_nvml_return_name(int32_t rc)
{
    static const char *names[] = {
        "NVML_SUCCESS", "NVML_ERROR_UNINITIALIZED", "NVML_ERROR_INVALID_ARGUMENT",
        "NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_NO_PERMISSION", "NVML_ERROR_ALREADY_INITIALIZED",
        "NVML_ERROR_NOT_FOUND", "NVML_ERROR_INSUFFICIENT_SIZE", "NVML_ERROR_INSUFFICIENT_POWER",
        "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_TIMEOUT", "NVML_ERROR_IRQ_ISSUE",
        "NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_FUNCTION_NOT_FOUND",
        "NVML_ERROR_CORRUPTED_INFOROM", "NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_RESET_REQUIRED",
        "NVML_ERROR_OPERATING_SYSTEM", "NVML_ERROR_LIB_RM_VERSION_MISMATCH", "NVML_ERROR_IN_USE",
        "NVML_ERROR_MEMORY", "NVML_ERROR_NO_DATA", "NVML_ERROR_VGPU_ECC_NOT_ENABLED",
        "NVML_ERROR_INSUFFICIENT_RESOURCES", "NVML_ERROR_FREQ_NOT_SUPPORTED",
        "NVML_ERROR_ARGUMENT_VERSION_MISMATCH", "NVML_ERROR_DEPRECATED", "NVML_ERROR_NOT_READY",
        "NVML_ERROR_GPU_NOT_FOUND", "NVML_ERROR_INVALID_STATE",
    };
    if (rc >= 0 && (size_t)rc < sizeof names / sizeof names[0])
        return names[rc];
    return rc == 999 ? "NVML_ERROR_UNKNOWN" : "NVML_ERROR_(unlisted)";
}

static void nv_error(char *errbuf, size_t errlen, const char *what, nvml_return rc)
{
    if (!errbuf || !errlen)
        return;
    const char *text = nv.error_string ? nv.error_string(rc) : NULL;
    snprintf(errbuf, errlen, "%s failed: %s (%s, code %d)", what, text ? text : "?",
             jp_nvml_return_name(rc), rc);
}

#define NV_SYM(field, sym)                                                                   \
    do {                                                                                     \
        *(void **)&nv.field = dlsym(nv.so, sym);                                             \
        if (!nv.field) {                                                                     \
            snprintf(errbuf, errlen, "%s has no symbol %s: not a usable NVML library",       \
                     lib_path, sym);                                                         \
            goto bad;                                                                        \
        }                                                                                    \
    } while (0)

int jp_nvml_load(char *errbuf, size_t errlen)
{
    if (nv.refs > 0) {
        nv.refs++;
        return 0;
    }
    nv.so = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
    if (!nv.so) {
        const char *e = dlerror();
        snprintf(errbuf, errlen, "cannot load the NVML library %s (NVIDIA driver not installed?): %s",
                 lib_path, e ? e : "dlopen failed");
        return -ENOENT;
    }
    NV_SYM(init, "nvmlInit_v2");
    NV_SYM(shutdown, "nvmlShutdown");
    NV_SYM(count, "nvmlDeviceGetCount_v2");
    NV_SYM(handle, "nvmlDeviceGetHandleByIndex_v2");
    NV_SYM(name, "nvmlDeviceGetName");
    NV_SYM(fields, "nvmlDeviceGetFieldValues");
    NV_SYM(usage, "nvmlDeviceGetPowerUsage");
    NV_SYM(energy, "nvmlDeviceGetTotalEnergyConsumption");
    NV_SYM(error_string, "nvmlErrorString");
    nvml_return rc = nv.init();
    if (rc != NVML_SUCCESS) {
        nv_error(errbuf, errlen, "nvmlInit_v2", rc);
        goto bad;
    }
    nv.refs = 1;
    return 0;
bad:
    dlclose(nv.so);
    memset(&nv, 0, sizeof nv);
    return -ENODEV;
}

void jp_nvml_unload(void)
{
    if (nv.refs <= 0 || --nv.refs > 0)
        return;
    nv.shutdown();
    dlclose(nv.so);
    memset(&nv, 0, sizeof nv);
}

int jp_nvml_parse(const char *path, uint32_t *index, int *what)
{
    if (strncmp(path, "nvml:", 5) != 0)
        return 0;
    char *end;
    errno = 0;
    unsigned long idx = strtoul(path + 5, &end, 10);
    if (errno || end == path + 5 || *end != ':' || idx > 0xffff)
        goto bad;
    const char *w = end + 1;
    if (strcmp(w, "power_instant") == 0)
        *what = JP_NVML_POWER_INSTANT;
    else if (strcmp(w, "power_avg") == 0)
        *what = JP_NVML_POWER_AVG;
    else if (strcmp(w, "energy") == 0)
        *what = JP_NVML_ENERGY;
    else
        goto bad;
    *index = (uint32_t)idx;
    return 1;
bad:
    errno = EINVAL;
    return -1;
}

int jp_nvml_open(const char *path, struct jp_nvml_chan *c, char *errbuf, size_t errlen)
{
    uint32_t index;
    if (jp_nvml_parse(path, &index, &c->what) != 1) {
        snprintf(errbuf, errlen, "bad NVML channel %s: expected nvml:<index>:"
                 "power_instant|power_avg|energy", path);
        return -EINVAL;
    }
    nvml_device dev;
    nvml_return rc = nv.handle(index, &dev);
    if (rc != NVML_SUCCESS) {
        char what[64];
        snprintf(what, sizeof what, "nvmlDeviceGetHandleByIndex_v2(%u)", index);
        nv_error(errbuf, errlen, what, rc);
        return -ENODEV;
    }
    c->dev = dev;
    /* Every NVML reading is polled apart from the sampling loop (see poller_main): the loop
     * copies the latest value into each record. */
    c->slow = c->what == JP_NVML_ENERGY ? JP_NVML_ENERGY_EVERY : 1;
    c->seq = 0;
    memset(&c->pub, 0, sizeof c->pub);
    c->pub.rc = -1; /* no reading yet */
    c->cache = c->pub;
    return 0;
}

static int field_int(const nvml_field_value *f, int64_t *out)
{
    switch (f->valueType) {
    case VT_DOUBLE: *out = llround(f->value.dVal); return 0;
    case VT_UINT: *out = f->value.uiVal; return 0;
    case VT_ULONG: *out = (int64_t)f->value.ulVal; return 0;
    case VT_ULONGLONG: *out = (int64_t)f->value.ullVal; return 0;
    case VT_SLONGLONG: *out = f->value.sllVal; return 0;
    case VT_SINT: *out = f->value.siVal; return 0;
    case VT_USHORT: *out = f->value.usVal; return 0;
    default: return -1;
    }
}

/* The instant-power field: the call's code, else the field's own code. */
static nvml_return read_instant(nvml_device dev, int64_t *out)
{
    nvml_field_value f;
    memset(&f, 0, sizeof f);
    f.fieldId = NVML_FI_DEV_POWER_INSTANT;
    f.scopeId = 0; /* GPU scope (1 would be the module) */
    nvml_return rc = nv.fields(dev, 1, &f);
    if (rc != NVML_SUCCESS)
        return rc;
    if (f.nvmlReturn != NVML_SUCCESS)
        return f.nvmlReturn;
    return field_int(&f, out) == 0 ? NVML_SUCCESS : NVML_ERROR_NOT_SUPPORTED;
}

static nvml_return read_what(nvml_device dev, int what, int64_t *out)
{
    if (what == JP_NVML_POWER_INSTANT)
        return read_instant(dev, out);
    if (what == JP_NVML_POWER_AVG) {
        unsigned int mw;
        nvml_return rc = nv.usage(dev, &mw);
        if (rc == NVML_SUCCESS)
            *out = mw;
        return rc;
    }
    unsigned long long mj;
    nvml_return rc = nv.energy(dev, &mj);
    if (rc == NVML_SUCCESS)
        *out = (int64_t)mj;
    return rc;
}

/* The seqlock's writer side (the poller only): seq odd while pub changes. */
static void publish(struct jp_nvml_chan *c, const struct jp_nvml_reading *r)
{
    uint32_t s = __atomic_load_n(&c->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&c->seq, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE); /* the odd seq before any store of pub */
    __atomic_store_n(&c->pub.value, r->value, __ATOMIC_RELAXED);
    __atomic_store_n(&c->pub.t_start_ns, r->t_start_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&c->pub.t_end_ns, r->t_end_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&c->pub.rc, r->rc, __ATOMIC_RELAXED);
    __atomic_store_n(&c->seq, s + 2, __ATOMIC_RELEASE);
}

static void poll_one(struct jp_nvml_chan *c)
{
    struct jp_nvml_reading r = {.value = 0};
    r.t_start_ns = jp_now_ns(CLOCK_MONOTONIC);
    r.rc = read_what(c->dev, c->what, &r.value);
    r.t_end_ns = jp_now_ns(CLOCK_MONOTONIC);
    publish(c, &r);
}

/* The reader side, in the sampling loop: at most two tries, never a wait.  A try fails only
 * while the poller is between its two seq stores (a few stores long, unless it was preempted
 * there); the loop then keeps the reading it copied last time, which was the latest one a
 * moment ago. */
int jp_nvml_latest(struct jp_nvml_chan *c, int64_t *value, int64_t *t_start, int64_t *t_end)
{
    for (int tries = 0; tries < 2; tries++) {
        uint32_t s1 = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
        if (s1 & 1)
            continue;
        struct jp_nvml_reading r;
        r.value = __atomic_load_n(&c->pub.value, __ATOMIC_RELAXED);
        r.t_start_ns = __atomic_load_n(&c->pub.t_start_ns, __ATOMIC_RELAXED);
        r.t_end_ns = __atomic_load_n(&c->pub.t_end_ns, __ATOMIC_RELAXED);
        r.rc = __atomic_load_n(&c->pub.rc, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the copy before the re-check */
        if (__atomic_load_n(&c->seq, __ATOMIC_RELAXED) == s1) {
            c->cache = r;
            break;
        }
    }
    *t_start = c->cache.t_start_ns;
    *t_end = c->cache.t_end_ns;
    if (c->cache.rc == NVML_SUCCESS) {
        *value = c->cache.value;
        return 0;
    }
    errno = c->cache.rc == NVML_ERROR_GPU_IS_LOST ? ENODEV : EIO;
    return -1;
}

struct jp_nvml_poller {
    pthread_t thread;
    int stop; /* atomic */
    struct jp_nvml_chan *chans;
    uint32_t n;
    int64_t period_ns;
    int avoid_cpu;
};

/* Keep off the sampling loop's CPU.  Sharing it at normal priority (SCHED_FIFO is refused on
 * many GPU machines) let one energy-counter call (3-16 ms, partly in the driver, where it is not
 * preempted) hold the loop off for as long: 6.5 % missed deadlines at 1 kHz on an H200.  Any
 * other allowed CPU will do (the kernel intersects the mask with the cpuset); with none, stay
 * and run at SCHED_IDLE, which the loop preempts at once in user space. */
static void move_off(int avoid_cpu)
{
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    cpu_set_t set;
    CPU_ZERO(&set);
    int any = 0;
    for (long i = 0; i < ncpu && i < CPU_SETSIZE; i++)
        if (i != avoid_cpu) {
            CPU_SET(i, &set);
            any = 1;
        }
    if (any && sched_setaffinity(0, sizeof set, &set) == 0)
        return;
    struct sched_param sp = {.sched_priority = 0};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
}

/* NVML is polled by this thread, not by the sampling loop, at a pace set by what NVML offers:
 * on an H100 its power values change every ~100 ms, the energy counter too, and one counter read
 * takes ~4 ms holding the device's lock.  Each call also goes through the driver that the
 * benchmark's own CUDA calls go through: reading power at 1 kHz cost a GPU-bound resnet18 5.7 %
 * of its throughput.  So power is read every tick (JP_NVML_TICK_NS), the counter every
 * JP_NVML_ENERGY_EVERY ticks, and the loop's records carry the latest values at its own rate. */
static void *poller_main(void *arg)
{
    struct jp_nvml_poller *p = arg;
    move_off(p->avoid_cpu);
    int64_t next = jp_now_ns(CLOCK_MONOTONIC);
    uint64_t tick = 0;
    while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
        tick++;
        for (uint32_t i = 0; i < p->n; i++)
            if (p->chans[i].slow && tick % (uint64_t)p->chans[i].slow == 0)
                poll_one(&p->chans[i]);
        next += p->period_ns;
        int64_t now = jp_now_ns(CLOCK_MONOTONIC);
        if (next < now)
            next = now;
        struct timespec ts = {.tv_sec = next / 1000000000LL, .tv_nsec = next % 1000000000LL};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
    return NULL;
}

struct jp_nvml_poller *jp_nvml_start_poller(struct jp_nvml_chan *chans, uint32_t n,
                                            int64_t period_ns, int avoid_cpu, int *err)
{
    for (uint32_t i = 0; i < n; i++)
        if (chans[i].slow) {
            poll_one(&chans[i]); /* a first reading before the loop starts */
            chans[i].cache = chans[i].pub;
        }
    struct jp_nvml_poller *p = calloc(1, sizeof *p);
    if (!p) {
        *err = ENOMEM;
        return NULL;
    }
    p->chans = chans;
    p->n = n;
    p->period_ns = period_ns;
    p->avoid_cpu = avoid_cpu;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* Normal priority, whatever the sampling thread was granted: it must never delay a pass. */
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_OTHER);
    struct sched_param sp = {.sched_priority = 0};
    pthread_attr_setschedparam(&attr, &sp);
    int rc = jp_fault_take(JP_FAULT_POLLER);
    if (rc == 0)
        rc = pthread_create(&p->thread, &attr, poller_main, p);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(p);
        *err = rc;
        return NULL;
    }
    pthread_setname_np(p->thread, "jp-nvml-poller"); /* for top -H and /proc/<pid>/task */
    return p;
}

void jp_nvml_stop_poller(struct jp_nvml_poller *p)
{
    if (!p)
        return;
    __atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
    pthread_join(p->thread, NULL);
    free(p);
}

int jp_nvml_read_now(const struct jp_nvml_chan *c, int64_t *value)
{
    nvml_return rc = read_what(c->dev, c->what, value);
    if (rc == NVML_SUCCESS)
        return 0;
    errno = rc == NVML_ERROR_GPU_IS_LOST ? ENODEV : rc == NVML_ERROR_NOT_SUPPORTED ? EOPNOTSUPP : EIO;
    return -1;
}

int jp_nvml_probe(const char *libpath, struct jp_nvml_device *out, uint32_t max,
                  char *errbuf, size_t errlen)
{
    jp_nvml_set_library(libpath);
    if (jp_nvml_load(errbuf, errlen) != 0)
        return -1;
    unsigned int count = 0;
    nvml_return rc = nv.count(&count);
    if (rc != NVML_SUCCESS) {
        nv_error(errbuf, errlen, "nvmlDeviceGetCount_v2", rc);
        jp_nvml_unload();
        return -1;
    }
    for (uint32_t i = 0; i < count && i < max; i++) {
        struct jp_nvml_device *d = &out[i];
        memset(d, 0, sizeof *d);
        nvml_device dev;
        d->handle_rc = nv.handle(i, &dev);
        if (d->handle_rc != NVML_SUCCESS) {
            d->name_rc = d->instant_rc = d->usage_rc = d->energy_rc = d->handle_rc;
            continue;
        }
        d->name_rc = nv.name(dev, d->name, sizeof d->name);
        d->name[sizeof d->name - 1] = '\0';
        d->instant_rc = read_what(dev, JP_NVML_POWER_INSTANT, &d->instant_mw);
        d->usage_rc = read_what(dev, JP_NVML_POWER_AVG, &d->usage_mw);
        d->energy_rc = read_what(dev, JP_NVML_ENERGY, &d->energy_mj);
    }
    jp_nvml_unload();
    return (int)count;
}
