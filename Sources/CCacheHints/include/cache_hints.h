#ifndef CACHE_HINTS_H
#define CACHE_HINTS_H
/// Asks the CPU to start loading the cache line at `address` for a coming write. A hint only:
/// it never faults and has no effect on results.
static inline void cache_hints_prefetch(const void *address) {
    __builtin_prefetch(address, 1, 3);
}
#endif
