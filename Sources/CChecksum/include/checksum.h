#ifndef CHECKSUM_H
#define CHECKSUM_H
#include <stddef.h>
#include <stdint.h>
/// CRC32C (Castagnoli) of `count` bytes, continuing from `crc` (0 to start).
uint32_t checksum_crc32c(uint32_t crc, const void *bytes, size_t count);
#endif
