#ifndef CHECKSUM_H
#define CHECKSUM_H
#include <stddef.h>
#include <stdint.h>

/// CRC32C (Castagnoli: reflected polynomial 0x82F63B78, initial value and final xor ~0)
/// of `count` bytes, continuing from `crc` (0 to start). Chaining is exact:
/// `checksum_crc32c(checksum_crc32c(0, a, n), b, m)` equals the CRC of `a` followed by `b`.
/// Uses the SSE4.2 `crc32` instruction when the CPU has it, a slicing-by-8 table otherwise.
/// Thread-safe; `bytes` may be NULL only when `count` is 0.
uint32_t checksum_crc32c(uint32_t crc, const void *bytes, size_t count);

/// The same CRC computed with the portable slicing-by-8 table only, never the instruction.
/// Exposed so tests can check that both paths agree; production code calls `checksum_crc32c`.
uint32_t checksum_crc32c_table(uint32_t crc, const void *bytes, size_t count);

/// 1 when `checksum_crc32c` uses the SSE4.2 instruction on this machine, 0 when it uses the table.
int checksum_crc32c_uses_hardware(void);

#endif
