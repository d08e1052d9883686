// CRC32C for the write-ahead log and snapshots.
//
// Two implementations of the same function:
//  - the SSE4.2 `crc32` instruction, 8 bytes per instruction, on x86-64 CPUs that have it
//    (every x86-64 server since 2008), chosen once at run time so one binary runs everywhere;
//  - a slicing-by-8 table (eight 256-entry tables, 8 bytes per step) for other CPUs and
//    other architectures. The tables are built on first use under pthread_once, so
//    concurrent first callers never see a half-built table.
//
// Both work on the "raw" register: the public value is the register complemented
// (initial value ~0, final xor ~0), which is what makes chaining through `crc` exact.
#include "checksum.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define CRC32C_POLY_REFLECTED 0x82F63B78u

// MARK: - Table path (portable)

static uint32_t crc32c_tables[8][256];
static pthread_once_t crc32c_tables_once = PTHREAD_ONCE_INIT;

static void crc32c_build_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (CRC32C_POLY_REFLECTED & (0u - (crc & 1u)));
        crc32c_tables[0][n] = crc;
    }
    // tables[k][n] is the register after byte n followed by k zero bytes, so eight table
    // lookups advance the register over eight bytes at once.
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = crc32c_tables[0][n];
        for (int k = 1; k < 8; k++) {
            crc = (crc >> 8) ^ crc32c_tables[0][crc & 0xFFu];
            crc32c_tables[k][n] = crc;
        }
    }
}

/// Little-endian load without alignment requirements; compiles to one load on x86 and ARM.
static inline uint32_t load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint32_t crc32c_table_raw(uint32_t crc, const uint8_t *p, size_t count) {
    pthread_once(&crc32c_tables_once, crc32c_build_tables);
    const uint32_t (*t)[256] = (const uint32_t (*)[256])crc32c_tables;
    while (count >= 8) {
        uint32_t low = crc ^ load_le32(p);
        uint32_t high = load_le32(p + 4);
        crc = t[7][low & 0xFFu] ^ t[6][(low >> 8) & 0xFFu] ^ t[5][(low >> 16) & 0xFFu] ^ t[4][low >> 24]
            ^ t[3][high & 0xFFu] ^ t[2][(high >> 8) & 0xFFu] ^ t[1][(high >> 16) & 0xFFu] ^ t[0][high >> 24];
        p += 8;
        count -= 8;
    }
    while (count--) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xFFu];
    return crc;
}

uint32_t checksum_crc32c_table(uint32_t crc, const void *bytes, size_t count) {
    if (count == 0) return crc;
    return ~crc32c_table_raw(~crc, (const uint8_t *)bytes, count);
}

// MARK: - Hardware path (x86-64 with SSE4.2)

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_HAVE_HARDWARE 1
#include <nmmintrin.h>

// Compiled for SSE4.2 whatever the target baseline is; only ever called after the
// run-time check below has seen the CPU support it.
__attribute__((target("sse4.2")))
static uint32_t crc32c_hardware_raw(uint32_t crc, const uint8_t *p, size_t count) {
    // Single bytes up to an 8-byte boundary, so the main loop's loads never split a cache line.
    while (count > 0 && ((uintptr_t)p & 7u) != 0) {
        crc = _mm_crc32_u8(crc, *p++);
        count--;
    }
    uint64_t crc64 = crc;
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, p, 8); // aligned here; memcpy keeps it free of aliasing rules
        crc64 = _mm_crc32_u64(crc64, word);
        p += 8;
        count -= 8;
    }
    crc = (uint32_t)crc64;
    while (count--) crc = _mm_crc32_u8(crc, *p++);
    return crc;
}

// 0 = not yet decided, 1 = hardware, 2 = table. Deciding twice is harmless (same answer),
// so a relaxed atomic is enough; the atomic only keeps the race well-defined.
static _Atomic int crc32c_selection = 0;

static int crc32c_select(void) {
    int selection = atomic_load_explicit(&crc32c_selection, memory_order_relaxed);
    if (selection == 0) {
        __builtin_cpu_init();
        selection = __builtin_cpu_supports("sse4.2") ? 1 : 2;
        atomic_store_explicit(&crc32c_selection, selection, memory_order_relaxed);
    }
    return selection;
}
#endif

// MARK: - Public entry points

uint32_t checksum_crc32c(uint32_t crc, const void *bytes, size_t count) {
    if (count == 0) return crc;
#ifdef CRC32C_HAVE_HARDWARE
    if (crc32c_select() == 1) return ~crc32c_hardware_raw(~crc, (const uint8_t *)bytes, count);
#endif
    return ~crc32c_table_raw(~crc, (const uint8_t *)bytes, count);
}

int checksum_crc32c_uses_hardware(void) {
#ifdef CRC32C_HAVE_HARDWARE
    return crc32c_select() == 1;
#else
    return 0;
#endif
}
