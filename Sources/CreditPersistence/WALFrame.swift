import CLZ4
import Crypto
import Foundation
@_spi(Plumbing) import CreditCore

/// Sealed frames (record kind 3, version 3 segments; docs/formats.md and docs/encryption.md).
///
/// A frame holds one write batch's command records — kind 1, byte for byte as a version 2
/// log holds them, with their own LSNs and CRC chain — compressed as one LZ4 block, then
/// sealed with AES-256-GCM under the shard's log subkey. One compression and one AEAD call
/// per frame, whatever the batch's size: the crypto's fixed cost is paid per batch, not per
/// record.
///
/// Layout: the 40-byte record header in clear (length, CRC32C over the frame as written,
/// LSN = the first inner record's, the first inner record's chain link, kind 3, 3 zero bytes,
/// time, synced LSN) | last LSN u64 | last inner record's CRC32C u32 | plain bytes u32 (all
/// four clear fields authenticated) | ciphertext (as long as the compressed block) | tag 16.
///
/// Nonce: segment generation u32 ‖ first LSN u64 (little-endian). Authenticated data: the
/// header with its checksum field zeroed (the CRC is computed after sealing), then the clear
/// fields: 56 bytes.
package enum WALFrame {
    /// Bytes before the ciphertext: header and clear fields (the authenticated data).
    package static let contextBytes = WALFormat.recordHeaderSize + WALFormat.frameClearBytes

    /// The frame length a compressed block of `compressedCount` bytes makes.
    package static func length(compressed compressedCount: Int) -> Int {
        contextBytes + compressedCount + Sealing.tagBytes
    }

    /// Compresses `plain` (the batch's command records) into `scratch` (grown as needed);
    /// returns the compressed size.
    package static func compress(_ plain: UnsafeRawBufferPointer, into scratch: inout [UInt8]) -> Int {
        let bound = Int(LZ4_compressBound(Int32(plain.count)))
        if scratch.count < bound { scratch = [UInt8](repeating: 0, count: max(bound, 2 * scratch.count)) }
        let written = scratch.withUnsafeMutableBytes { out in
            LZ4_compress_default(plain.baseAddress!.assumingMemoryBound(to: CChar.self),
                                 out.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(plain.count), Int32(bound))
        }
        // LZ4 fails only when the output buffer is smaller than its bound: never here.
        precondition(written > 0, "LZ4 block compression failed for \(plain.count) bytes")
        return Int(written)
    }

    /// Appends the frame of the records `firstLSN...lastLSN` (compressed: `compressed[0..<count]`,
    /// `plainCount` bytes before compression) to `writer`, sealed with `key` in a segment of
    /// `generation`. `previous` is the first record's chain link, `lastChecksum` the last one's
    /// checksum.
    package static func append(compressed: [UInt8], count: Int, plainCount: Int, firstLSN: UInt64, lastLSN: UInt64,
                               previous: UInt32, lastChecksum: UInt32, time: Timestamp, syncedLSN: UInt64,
                               key: SymmetricKey, generation: UInt32, to writer: inout ByteWriter) {
        let start = writer.count
        let length = length(compressed: count)
        precondition(length <= WALFormat.frameSizeMax, "a frame of \(length) bytes exceeds the log's limit")
        // The checksum stays zero in the authenticated data; patched once the frame is sealed.
        WALRecord.writeHeader(length: UInt32(length), lsn: firstLSN, previous: previous, kind: WALFormat.frameRecordKind,
                              time: time, syncedLSN: min(syncedLSN, firstLSN - 1), to: &writer)
        writer.write(lastLSN)
        writer.write(lastChecksum)
        writer.write(UInt32(plainCount))
        let nonce = Sealing.logNonce(generation: generation, lsn: firstLSN)
        let context = Array(writer.bytes[start ..< start + contextBytes])
        compressed.withUnsafeBytes { compressed in
            context.withUnsafeBytes { context in
                Sealing.seal(UnsafeRawBufferPointer(rebasing: compressed[0 ..< count]), key: key, nonce: nonce,
                             authenticating: context, into: &writer)
            }
        }
        assert(writer.count - start == length)
        WALRecord.patchChecksum(in: &writer, start: start, length: length)
    }

    /// Opens the frame at `offset` (`length` bytes, its CRC verified, `header` scanned) in a
    /// segment of `generation`: its inner records' bytes, or the damage.
    package static func open(_ raw: UnsafeRawBufferPointer, at offset: Int, length: Int, header: WALRecord.Header,
                             key: SymmetricKey, generation: UInt32) -> Opened {
        var context = Array(UnsafeRawBufferPointer(rebasing: raw[offset ..< offset + contextBytes]))
        context.replaceSubrange(4 ..< 8, with: [0, 0, 0, 0])
        let sealed = UnsafeRawBufferPointer(rebasing: raw[(offset + contextBytes) ..< (offset + length)])
        let opened = context.withUnsafeBytes { context in
            Sealing.openData(sealed, key: key, nonce: Sealing.logNonce(generation: generation, lsn: header.lsn),
                             authenticating: context)
        }
        guard let opened else { return .damaged(.authenticationFailed) }
        var plain = [UInt8](repeating: 0, count: header.plainBytes)
        let decoded = opened.withUnsafeBytes { compressed in
            plain.withUnsafeMutableBytes { out in
                LZ4_decompress_safe(compressed.baseAddress?.assumingMemoryBound(to: CChar.self),
                                    out.baseAddress?.assumingMemoryBound(to: CChar.self),
                                    Int32(compressed.count), Int32(out.count))
            }
        }
        guard decoded == Int32(header.plainBytes) else {
            return .damaged(.frameContents("the LZ4 block decodes to \(decoded) bytes, the frame says \(header.plainBytes)"))
        }
        return .plain(plain)
    }

    /// What opening a frame gave.
    package enum Opened {
        /// The inner records' bytes.
        case plain([UInt8])
        case damaged(WALRecord.Damage)
    }
}
