// Allocator statistics for the benchmark's memory figures (glibc's mallinfo2 is not
// exposed to Swift by the Glibc module).
#include "system_stats.h"
#include <malloc.h>

size_t system_stats_heap_bytes_in_use(void) {
#if defined(__GLIBC__)
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
#else
    return 0;
#endif
}
