import CChecksum

/// CRC32C (Castagnoli), the checksum of every log record and snapshot section.
///
/// CRC32C rather than CRC32 because x86-64 computes it with one instruction per 8 bytes
/// (SSE4.2), so checksumming a record costs less than copying it; other CPUs get a
/// slicing-by-8 table (see `Sources/CChecksum/checksum.c`). Both give the standard values:
/// `checksum("123456789") == 0xE306_9283`.
///
/// `continuing` chains: `checksum(b, continuing: checksum(a)) == checksum(a + b)`, so a
/// record's checksum can be computed over its header and payload without concatenating them.
@_spi(Plumbing) public enum CRC32C {
    /// The CRC of `bytes`, continuing from `crc` (0 to start).
    @_spi(Plumbing) public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return checksum_crc32c(crc, base, bytes.count)
    }

    /// The CRC of `bytes`, continuing from `crc` (0 to start).
    @_spi(Plumbing) public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The CRC of `bytes`, continuing from `crc` (0 to start).
    package static func checksum(_ bytes: ArraySlice<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The CRC of `bytes`, continuing from `crc` (0 to start).
    package static func checksum(_ bytes: UnsafeBufferPointer<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        checksum(UnsafeRawBufferPointer(bytes), continuing: crc)
    }

    /// Whether `checksum` uses the SSE4.2 instruction on this machine (for tests and `credits version`).
    @_spi(Plumbing) public static var usesHardware: Bool { checksum_crc32c_uses_hardware() != 0 }

    /// The same CRC from the portable table only, so tests can compare both paths.
    static func tableChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return checksum_crc32c_table(crc, base, bytes.count)
    }
}
