/*
 * The reading side of the ring: acquire-load the published sequence, copy new records out,
 * re-check the sequence to discard any record the writer may have overwritten during the copy.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jp_internal.h"

struct jp_reader {
    int fd;
    void *map;
    size_t map_size;
    struct jp_ring_header *h;
    uint64_t next; /* index of the next record to read */
};

static void set_err(char *errbuf, size_t errlen, const char *msg, const char *path, int err)
{
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s %s%s%s", msg, path, err ? ": " : "", err ? strerror(err) : "");
}

jp_reader *jp_reader_open(const char *ring_path, char *errbuf, size_t errlen)
{
    int fd = open(ring_path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        set_err(errbuf, errlen, "cannot open ring file", ring_path, errno);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(struct jp_ring_header)) {
        set_err(errbuf, errlen, "ring file too small (not yet written?)", ring_path, 0);
        close(fd);
        return NULL;
    }
    /* Read/write: the reader adds to the header's overrun counter. */
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        set_err(errbuf, errlen, "cannot map ring file", ring_path, errno);
        close(fd);
        return NULL;
    }
    jp_reader *r = calloc(1, sizeof *r);
    if (!r) {
        munmap(map, (size_t)st.st_size);
        close(fd);
        set_err(errbuf, errlen, "out of memory opening", ring_path, ENOMEM);
        return NULL;
    }
    r->fd = fd;
    r->map = map;
    r->map_size = (size_t)st.st_size;
    r->h = map;
    return r;
}

int jp_reader_check(jp_reader *r, char *errbuf, size_t errlen)
{
    struct jp_ring_header *h = r->h;
    uint64_t magic = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
    if (magic == 0)
        return 0;
    if (magic != JP_RING_MAGIC) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "not a jetpower ring file (magic %#llx)",
                     (unsigned long long)magic);
        return -1;
    }
    if (h->version != JP_RING_VERSION) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "ring file version %u: this jetpower reads version %d only "
                     "(the file was written by another jetpower release)",
                     h->version, JP_RING_VERSION);
        return -1;
    }
    size_t need = (size_t)h->header_size + h->capacity * (size_t)h->record_size;
    if (h->header_size != sizeof *h || h->record_size != jp_record_size(h->nchan) ||
        h->nchan == 0 || h->nchan > JP_MAX_CHANNELS || need > r->map_size) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "ring file header is inconsistent (header %u, record %u, "
                     "%u channels, capacity %llu, file %zu bytes)", h->header_size, h->record_size,
                     h->nchan, (unsigned long long)h->capacity, r->map_size);
        return -1;
    }
    return 1;
}

const struct jp_ring_header *jp_reader_header(jp_reader *r) { return r->h; }

void jp_reader_counters(jp_reader *r, struct jp_counters *out)
{
    struct jp_ring_header *h = r->h;
    out->state = __atomic_load_n(&h->state, __ATOMIC_ACQUIRE);
    out->seq = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
    out->missed_deadlines = __atomic_load_n(&h->missed_deadlines, __ATOMIC_RELAXED);
    out->overruns = __atomic_load_n(&h->overruns, __ATOMIC_RELAXED);
    out->failing_mask = __atomic_load_n(&h->failing_mask, __ATOMIC_RELAXED);
    out->gone_mask = __atomic_load_n(&h->gone_mask, __ATOMIC_RELAXED);
    out->stop_signal = h->stop_signal;
    out->stop_monotonic_ns = h->stop_monotonic_ns;
    out->rate_changes = __atomic_load_n(&h->rate_changes, __ATOMIC_RELAXED);
    for (int i = 0; i < JP_MAX_CHANNELS; i++)
        out->read_errors[i] = __atomic_load_n(&h->read_errors[i], __ATOMIC_RELAXED);
}

uint64_t jp_reader_position(jp_reader *r) { return r->next; }

uint64_t jp_reader_pending(jp_reader *r)
{
    uint64_t w = __atomic_load_n(&r->h->seq, __ATOMIC_ACQUIRE);
    uint64_t n = w - r->next;
    return n > r->h->capacity ? r->h->capacity : n;
}

int jp_reader_request_rate(jp_reader *r, double rate_hz, char *errbuf, size_t errlen)
{
    int64_t period;
    int rc = jp_rate_period(rate_hz, &period, errbuf, errlen);
    if (rc == 0)
        __atomic_store_n(&r->h->period_request_ns, period, __ATOMIC_RELEASE);
    return rc;
}

/*
 * Which copied records may be torn.  The slot of record i is reused by record i + capacity.
 * After its copy the reader loads w2 = header.seq; records [0, w2) are published, so the writer
 * may be filling record w2 (overwriting record w2 - capacity) -- and, on a weakly ordered CPU
 * (the Jetson's ARM cores), record w2 + 1 as well: a release store orders the stores before it,
 * not the ones after it, so the stores of record w2 + 1, which follow the release store of
 * seq = w2 + 1 in the writer's program, may become visible to us before that store does.
 * Two things keep such a record out:
 *   1. The writer issues a release fence after publishing seq = m and before its first store
 *      into record m's slot (jp_take_sample); the reader issues an acquire fence between its
 *      copy and its load of w2.  If the copy saw any store of record m, the fences synchronise
 *      and w2 >= m: only record w2 itself can be in flight.
 *   2. The reader treats two records, w2 and w2 + 1, as in flight: every copied record with
 *      i + capacity <= w2 + 1 is dropped.
 * (1) is what the C11 memory model asks for, and by it alone the guard is sound.  (2) does not
 * rest on the fences: it covers exactly the record described above, should a writer's stores
 * ever run ahead of their publication, and unlike a fence it can be tested on x86.  Its price is
 * one record per ring lap, lost only by a reader that is already a whole ring behind.
 * A stopped writer fills nothing further: no record is then in flight.  On x86 neither the
 * fences nor the reordering exist (stores are seen in order); tests pin (2) with a hand-made
 * ring (tests/test_sampler.py).
 */
#define JP_IN_FLIGHT 2

int64_t jp_reader_drain(jp_reader *r, void *out, uint64_t max_records, uint64_t *lost)
{
    struct jp_ring_header *h = r->h;
    const uint64_t cap = h->capacity;
    const size_t rs = h->record_size;
    const unsigned char *records = (const unsigned char *)r->map + h->header_size;
    uint64_t dropped = 0;

    uint64_t w = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
    if (w - r->next > cap) { /* fell more than a whole ring behind */
        dropped += w - cap - r->next;
        r->next = w - cap;
    }
    uint64_t n = w - r->next;
    if (n > max_records)
        n = max_records;

    unsigned char *dst = out;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t i = r->next + k;
        memcpy(dst + k * rs, records + (i % cap) * rs, rs);
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE); /* (1) above: the copy before the re-check */
    uint64_t w2 = __atomic_load_n(&h->seq, __ATOMIC_RELAXED);
    uint64_t in_flight =
        __atomic_load_n(&h->state, __ATOMIC_ACQUIRE) == JP_STATE_STOPPED ? 0 : JP_IN_FLIGHT;
    uint64_t oldest_safe = w2 + in_flight > cap ? w2 + in_flight - cap : 0;
    uint64_t bad = 0;
    if (oldest_safe > r->next)
        bad = oldest_safe - r->next < n ? oldest_safe - r->next : n;
    /* Belt and braces: every record names its own index. */
    uint64_t good = 0;
    for (uint64_t k = bad; k < n; k++) {
        uint64_t seq;
        memcpy(&seq, dst + k * rs, sizeof seq);
        if (seq != r->next + k) {
            bad = k + 1;
            good = 0;
            continue;
        }
        good++;
    }
    if (bad && good)
        memmove(dst, dst + bad * rs, good * rs);
    dropped += bad;
    r->next += n;
    if (dropped)
        __atomic_fetch_add(&h->overruns, dropped, __ATOMIC_RELAXED);
    if (lost)
        *lost = dropped;
    return (int64_t)good;
}

void jp_reader_close(jp_reader *r)
{
    if (!r)
        return;
    munmap(r->map, r->map_size);
    close(r->fd);
    free(r);
}
