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

#endif
