#ifndef CACHE_HINTS_H
#define CACHE_HINTS_H
/// Asks the CPU to start loading the cache line at `address` for a coming write. A hint only:
/// it never faults and has no effect on results. On x86-64 it is PREFETCHW, which fetches the
/// line already owned for writing, so the store that follows needs no second request (CPUs
/// without the instruction execute it as a no-op).
static inline void cache_hints_prefetch(const void *address) {
#if defined(__x86_64__)
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)address));
#else
    __builtin_prefetch(address, 1, 3);
#endif
}
#endif
