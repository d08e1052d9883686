#ifndef ATOMIC_WORDS_H
#define ATOMIC_WORDS_H
#include <stdint.h>
/// Sets `bits` in `*word` atomically (release: what the writer did before is visible to a
/// reader that sees the bits).
static inline void atomic_words_or(uint64_t *word, uint64_t bits) {
    __atomic_fetch_or(word, bits, __ATOMIC_RELEASE);
}

/// Reads `*word` atomically (acquire).
static inline uint64_t atomic_words_load(const uint64_t *word) {
    return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}
/// Asks the CPU to start loading the cache line at `address` for a coming read: a hint
/// that, unlike the write prefetch of cache_hints.h, leaves a line other cores read in the
/// shared state.
static inline void atomic_words_prefetch(const uint64_t *word) {
    __builtin_prefetch(word, 0, 3);
}
#endif
