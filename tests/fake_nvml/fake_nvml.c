/*
 * A stand-in for libnvidia-ml.so.1, built by the tests (gcc -shared) and loaded by the real
 * sampler through JETPOWER_NVML_LIB.  Its answers are scripted by environment variables read at
 * nvmlInit_v2:
 *   FAKE_NVML_MODE   ok (default) | jetson (power and energy: NOT_SUPPORTED, as on Jetson) |
 *                    nofield (field API: NOT_SUPPORTED per field; GetPowerUsage works) |
 *                    noenergy (no energy counter) | initfail (nvmlInit_v2: DRIVER_NOT_LOADED)
 *   FAKE_NVML_COUNT  number of GPUs (default 1)
 *   FAKE_NVML_ENERGY_SPIN_US  each energy-counter call holds the CPU this long, busy (default 0),
 *                    as the real call does for 3-16 ms on an H100/H200 (benchmarks/gpu/nvml_stalls.py)
 * Per GPU i, call k (counted per query kind, from 0):
 *   instant power = 100000 + 10000 i + 3 k  mW    (field 186, scope 0 only)
 *   power usage   =  90000 + 10000 i + 5 k  mW
 *   energy        = 1000000 + 7 k           mJ
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

typedef struct { int index; } dev_t_;
typedef dev_t_ *nvmlDevice_t;

typedef union {
    double dVal; int siVal; unsigned int uiVal; unsigned long ulVal;
    unsigned long long ullVal; signed long long sllVal; unsigned short usVal;
} value_t;

typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    int valueType;
    int nvmlReturn;
    value_t value;
} field_t;

#define MAXDEV 8
static dev_t_ devs[MAXDEV];
static unsigned long long calls[MAXDEV][3];
static int inited, count = 1;
static long spin_us;
static const char *mode = "ok";

static int is(const char *m) { return strcmp(mode, m) == 0; }

int nvmlInit_v2(void)
{
    const char *m = getenv("FAKE_NVML_MODE");
    const char *c = getenv("FAKE_NVML_COUNT");
    mode = m && *m ? m : "ok";
    count = c ? atoi(c) : 1;
    const char *sp = getenv("FAKE_NVML_ENERGY_SPIN_US");
    spin_us = sp ? atol(sp) : 0;
    if (count < 0 || count > MAXDEV)
        count = 1;
    if (is("initfail"))
        return 9;
    for (int i = 0; i < MAXDEV; i++)
        devs[i].index = i;
    inited++;
    return 0;
}

int nvmlShutdown(void)
{
    if (!inited)
        return 1;
    inited--;
    return 0;
}

int nvmlDeviceGetCount_v2(unsigned int *n)
{
    if (!inited)
        return 1;
    *n = (unsigned int)count;
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d)
{
    if (!inited)
        return 1;
    if (i >= (unsigned int)count)
        return 2;
    *d = &devs[i];
    return 0;
}

int nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int len)
{
    snprintf(name, len, "%s %d", is("jetson") ? "Orin (nvgpu)" : "Fake GPU", d->index);
    return 0;
}

int nvmlDeviceGetFieldValues(nvmlDevice_t d, int n, field_t *v)
{
    if (!inited)
        return 1;
    for (int k = 0; k < n; k++) {
        if (is("jetson") || is("nofield") || v[k].fieldId != 186 || v[k].scopeId != 0) {
            v[k].nvmlReturn = 3;
            continue;
        }
        v[k].nvmlReturn = 0;
        v[k].valueType = 1;
        v[k].value.uiVal = 100000u + 10000u * d->index + 3u * (unsigned int)calls[d->index][0]++;
    }
    return 0;
}

int nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw)
{
    if (!inited)
        return 1;
    if (is("jetson"))
        return 3;
    *mw = 90000u + 10000u * d->index + 5u * (unsigned int)calls[d->index][1]++;
    return 0;
}

int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj)
{
    if (!inited)
        return 1;
    if (is("jetson") || is("noenergy"))
        return 3;
    if (spin_us > 0) {
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do
            clock_gettime(CLOCK_MONOTONIC, &t);
        while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < spin_us);
    }
    *mj = 1000000ull + 7ull * calls[d->index][2]++;
    return 0;
}

const char *nvmlErrorString(int rc)
{
    switch (rc) {
    case 0: return "Success";
    case 3: return "Not Supported";
    case 9: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}
