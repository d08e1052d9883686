#ifndef SYSTEM_STATS_H
#define SYSTEM_STATS_H
#include <stddef.h>
/// Bytes the C allocator has handed out and not got back, over all arenas.
size_t system_stats_heap_bytes_in_use(void);
#endif
