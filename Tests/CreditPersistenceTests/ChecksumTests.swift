import DurabilityTestSupport
import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditPersistence

/// The file-layer tests' generator: SplitMix64, so a failing randomized test replays
/// from the seed it prints.
typealias FileLayerRandom = SplitMix64

extension SplitMix64 {
    /// A generator with a fresh seed, printed with `label` so a failure can be replayed.
    static func seeded(_ label: String) -> SplitMix64 {
        SplitMix64(seed: DurabilitySeed.make(label))
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        var index = 0
        while index < count {
            var word = next()
            for _ in 0 ..< min(8, count - index) {
                result[index] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                index += 1
            }
        }
        return result
    }
}

/// The definition of CRC-32C, one bit at a time: the reference both fast paths must equal.
private func referenceCRC32C(_ bytes: some Sequence<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
    var register = ~crc
    for byte in bytes {
        register ^= UInt32(byte)
        for _ in 0 ..< 8 { register = (register >> 1) ^ (0x82F6_3B78 & (0 &- (register & 1))) }
    }
    return ~register
}

@Suite("CRC32C: standard values, chaining, and both implementations agree")
struct ChecksumTests {
    @Test("published test vectors (RFC 3720 and the check value)")
    func knownVectors() {
        let vectors: [([UInt8], UInt32)] = [
            (Array("123456789".utf8), 0xE306_9283),
            ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
            ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
            ((0 ..< 32).map { UInt8($0) }, 0x46DD_794E),
            ((0 ..< 32).reversed().map { UInt8($0) }, 0x113F_DB5C),
        ]
        for (bytes, expected) in vectors {
            #expect(CRC32C.checksum(bytes) == expected)
            #expect(bytes.withUnsafeBytes { CRC32C.tableChecksum($0) } == expected)
            #expect(referenceCRC32C(bytes) == expected)
        }
        print("CRC32C uses the SSE4.2 instruction: \(CRC32C.usesHardware)")
    }

    @Test("no bytes leave the running value unchanged")
    func emptyInput() {
        #expect(CRC32C.checksum([UInt8]()) == 0)
        #expect(CRC32C.checksum([UInt8](), continuing: 0xDEAD_BEEF) == 0xDEAD_BEEF)
        #expect(CRC32C.checksum(UnsafeRawBufferPointer(start: nil, count: 0), continuing: 7) == 7)
    }

    @Test("checksum of a then b, chained, equals the checksum of a + b at every split")
    func chainingEqualsWhole() {
        var random = FileLayerRandom.seeded("chainingEqualsWhole")
        for length in [0, 1, 7, 8, 9, 63, 64, 65, 300] {
            let bytes = random.bytes(length)
            let whole = CRC32C.checksum(bytes)
            #expect(whole == referenceCRC32C(bytes))
            for split in 0 ... length {
                let first = CRC32C.checksum(bytes[..<split])
                #expect(CRC32C.checksum(bytes[split...], continuing: first) == whole, "length \(length) split \(split)")
                let tableFirst = bytes[..<split].withUnsafeBytes { CRC32C.tableChecksum($0) }
                #expect(bytes[split...].withUnsafeBytes { CRC32C.tableChecksum($0, continuing: tableFirst) } == whole)
            }
        }
    }

    @Test("the instruction path equals the table path and the bitwise definition, at every alignment")
    func hardwareEqualsTable() {
        var random = FileLayerRandom.seeded("hardwareEqualsTable")
        let buffer = random.bytes(4096 + 16)
        buffer.withUnsafeBytes { raw in
            for _ in 0 ..< 2_000 {
                let start = Int(random.next() % 16)
                let count = Int(random.next() % 4097)
                let slice = UnsafeRawBufferPointer(rebasing: raw[start ..< start + count])
                let seed = UInt32(truncatingIfNeeded: random.next())
                let fast = CRC32C.checksum(slice, continuing: seed)
                #expect(fast == CRC32C.tableChecksum(slice, continuing: seed), "start \(start) count \(count)")
                if count <= 512 { #expect(fast == referenceCRC32C(slice, continuing: seed)) }
            }
        }
    }

    @Test("flipping any single bit changes the checksum")
    func singleBitFlipDetected() {
        var random = FileLayerRandom.seeded("singleBitFlipDetected")
        for length in [1, 8, 13, 64, 1000] {
            var bytes = random.bytes(length)
            let original = CRC32C.checksum(bytes)
            for bit in 0 ..< length * 8 {
                bytes[bit / 8] ^= 1 << (bit % 8)
                #expect(CRC32C.checksum(bytes) != original, "length \(length) bit \(bit)")
                bytes[bit / 8] ^= 1 << (bit % 8)
            }
            #expect(CRC32C.checksum(bytes) == original)
        }
    }
}
