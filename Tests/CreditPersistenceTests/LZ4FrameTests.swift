import CLZ4
import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// Bytes that compress well but not trivially: ledger-like lines with varying numbers.
private func compressibleBytes(_ count: Int, random: inout FileLayerRandom) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count + 64)
    while bytes.count < count {
        bytes += Array("account \(random.next() % 1_000) debit \(random.next() % 50_000) millicredits\n".utf8)
    }
    return Array(bytes.prefix(count))
}

/// Expects `body` to throw an `LZ4Error` and returns it.
private func expectLZ4Error(_ comment: Comment? = nil, _ body: () throws(LZ4Error) -> [UInt8]) -> LZ4Error? {
    do {
        let bytes = try body()
        Issue.record("expected an LZ4Error, got \(bytes.count) bytes. \(comment?.rawValue ?? "")")
        return nil
    } catch {
        return error
    }
}

@Suite("LZ4 frames: round trips, streaming, and every corruption is an error")
struct LZ4FrameTests {
    @Test("LZ4 errors have distinct stable snake_case codes")
    func errorCodes() {
        let errors: [LZ4Error] = [.library(function: "f", name: "n"), .truncated(count: 1), .trailingBytes(offset: 1, count: 1),
                                  .outputTooLarge(limit: 1), .unsupportedFrame(reason: "r")]
        let codes = errors.map(\.code)
        #expect(Set(codes).count == codes.count && codes.allSatisfy { $0.allSatisfy { $0 == "_" || ("a" ... "z").contains($0) || ("0" ... "9").contains($0) } })
    }

    @Test("the linked liblz4 reports its version")
    func libraryVersion() {
        let parts = LZ4Frame.libraryVersion.split(separator: ".")
        #expect(parts.count == 3 && parts.allSatisfy { Int($0) != nil }, "\(LZ4Frame.libraryVersion)")
    }

    @Test("frames carry block and content checksums and the content size")
    func frameFlags() throws {
        let frame = try LZ4Frame.compress(Array("hello, ledger".utf8))
        #expect(Array(frame.prefix(4)) == [0x04, 0x22, 0x4D, 0x18]) // LZ4 frame magic, little-endian
        let flags = frame[4]
        #expect(flags >> 6 == 0b01)       // format version
        #expect(flags & 0x10 != 0)        // block checksums
        #expect(flags & 0x08 != 0)        // content size
        #expect(flags & 0x04 != 0)        // content checksum
    }

    @Test("round trips", arguments: ["empty", "small", "random 10 MB", "compressible 10 MB"])
    func roundTrip(kind: String) throws {
        var random = FileLayerRandom.seeded("roundTrip \(kind)")
        let input: [UInt8] = switch kind {
        case "empty": []
        case "small": Array("one grant, one debit".utf8)
        case "random 10 MB": random.bytes(10 << 20)
        default: compressibleBytes(10 << 20, random: &random)
        }
        let frame = try LZ4Frame.compress(input)
        #expect(try LZ4Frame.decompress(frame, maxOutputBytes: input.count) == input)
        if kind == "compressible 10 MB" { #expect(frame.count < input.count / 3, "compressed to \(frame.count)") }
        if kind == "random 10 MB" { #expect(frame.count < input.count + input.count / 100, "random data must not blow up") }
    }

    @Test("the streaming writer's output is one frame of the concatenated input", arguments: [false, true])
    func streamingWriter(declareSize: Bool) throws {
        var random = FileLayerRandom.seeded("streamingWriter declareSize \(declareSize)")
        var chunks: [[UInt8]] = []
        var total = 0
        while total < 9 << 20 {
            let count = Int(random.next() % (700 << 10))
            let chunk = random.next() % 4 == 0 ? random.bytes(count) : compressibleBytes(count, random: &random)
            chunks.append(chunk)
            total += count
        }
        let writer = try LZ4FrameWriter(contentSize: declareSize ? total : nil)
        var frame: [UInt8] = []
        var emittedBeforeFinish = 0
        for chunk in chunks {
            let output = try writer.append(chunk)
            emittedBeforeFinish += output.count
            frame += output
        }
        frame += try writer.finish()
        // Streaming: compressed blocks leave the writer as the input arrives, not all at the end.
        #expect(emittedBeforeFinish > frame.count / 2)
        let input = chunks.flatMap { $0 }
        #expect(try LZ4Frame.decompress(frame, maxOutputBytes: input.count) == input)
        #expect(frame[4] & 0x14 == 0x14) // block and content checksums
    }

    @Test("a writer given nothing writes a valid empty frame")
    func emptyStream() throws {
        for contentSize in [nil, 0] as [Int?] {
            let writer = try LZ4FrameWriter(contentSize: contentSize)
            var frame = try writer.append([])
            frame += try writer.finish()
            #expect(try LZ4Frame.decompress(frame, maxOutputBytes: 0) == [])
        }
    }

    @Test("output beyond maxOutputBytes is refused, with and without a recorded size")
    func outputLimit() throws {
        var random = FileLayerRandom.seeded("outputLimit")
        let input = compressibleBytes(300_000, random: &random)
        let sized = try LZ4Frame.compress(input)
        let writer = try LZ4FrameWriter(contentSize: nil)
        let unsized = try writer.append(input) + writer.finish()
        for frame in [sized, unsized] {
            #expect(try LZ4Frame.decompress(frame, maxOutputBytes: input.count) == input)
            #expect(try LZ4Frame.decompress(frame, maxOutputBytes: Int.max) == input)
            for limit in [0, 1, 65_536, input.count - 1] {
                #expect(expectLZ4Error { () throws(LZ4Error) in try LZ4Frame.decompress(frame, maxOutputBytes: limit) } == .outputTooLarge(limit: limit))
            }
        }
    }

    @Test("bytes after the frame are refused")
    func trailingBytes() throws {
        let frame = try LZ4Frame.compress(Array("ledger".utf8))
        #expect(expectLZ4Error { () throws(LZ4Error) in try LZ4Frame.decompress(frame + [0], maxOutputBytes: 100) }
            == .trailingBytes(offset: frame.count, count: 1))
        #expect(expectLZ4Error { () throws(LZ4Error) in try LZ4Frame.decompress(frame + frame, maxOutputBytes: 100) }
            == .trailingBytes(offset: frame.count, count: frame.count))
    }

    @Test("a frame cut at any length is reported as truncated")
    func truncationDetected() throws {
        var random = FileLayerRandom.seeded("truncationDetected")
        let frame = try LZ4Frame.compress(compressibleBytes(5 << 20, random: &random) + random.bytes(100_000))
        var lengths = Array(0 ..< 40) + Array(frame.count - 40 ..< frame.count)
        for _ in 0 ..< 150 { lengths.append(Int(random.next() % UInt64(frame.count))) }
        for length in lengths {
            let cut = Array(frame[..<length])
            #expect(expectLZ4Error("length \(length)") { () throws(LZ4Error) in try LZ4Frame.decompress(cut, maxOutputBytes: 6 << 20) }
                == .truncated(count: length), "length \(length)")
        }
    }

    @Test("every single-bit flip is detected: header, blocks, end mark and checksums")
    func bitFlipsDetected() throws {
        var random = FileLayerRandom.seeded("bitFlipsDetected")
        let small = try LZ4Frame.compress(Array("a debit of 5 credits".utf8))
        let large = try LZ4Frame.compress(compressibleBytes(1 << 20, random: &random) + random.bytes(50_000))
        // Every bit of the small frame and of the large frame's header and tail, plus 200 random bits.
        var flips: [(frame: [UInt8], bit: Int)] = (0 ..< small.count * 8).map { (small, $0) }
        flips += (0 ..< 24 * 8).map { (large, $0) }
        flips += (0 ..< 16 * 8).map { (large, (large.count - 16) * 8 + $0) }
        flips += (0 ..< 200).map { _ in (large, Int(random.next() % UInt64(large.count * 8))) }
        for (frame, bit) in flips {
            var damaged = frame
            damaged[bit / 8] ^= 1 << (bit % 8)
            // Records an issue when the damaged frame decodes without an error.
            _ = expectLZ4Error("bit \(bit) of \(frame.count) bytes") { () throws(LZ4Error) in
                try LZ4Frame.decompress(damaged, maxOutputBytes: 2 << 20)
            }
        }
    }

    @Test("liblz4's own error name reaches the description")
    func errorDescriptionNamesLibraryError() throws {
        var frame = try LZ4Frame.compress(Array(repeating: 7, count: 1000))
        frame[frame.count - 1] ^= 0x01 // the last byte of the content checksum
        let error = expectLZ4Error { () throws(LZ4Error) in try LZ4Frame.decompress(frame, maxOutputBytes: 1000) }
        #expect(error == .library(function: "LZ4F_decompress", name: "ERROR_contentChecksum_invalid"))
        #expect(error?.description == "liblz4 LZ4F_decompress failed: ERROR_contentChecksum_invalid")
    }

    @Test("skippable frames are refused: they hold no content")
    func skippableFrameRefused() {
        let skippable: [UInt8] = [0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]
        let error = expectLZ4Error { () throws(LZ4Error) in try LZ4Frame.decompress(skippable, maxOutputBytes: 100) }
        guard case .unsupportedFrame? = error else {
            Issue.record("expected unsupportedFrame, got \(String(describing: error))")
            return
        }
    }

    @Test("a frame without a content checksum is refused: its content could not be verified")
    func frameWithoutContentChecksumRefused() throws {
        let input = Array("written by someone else".utf8)
        var preferences = LZ4F_preferences_t() // liblz4's defaults: no checksums
        var frame = [UInt8](repeating: 0, count: LZ4F_compressFrameBound(input.count, &preferences))
        let written = LZ4F_compressFrame(&frame, frame.count, input, input.count, &preferences)
        try #require(LZ4F_isError(written) == 0)
        frame.removeLast(frame.count - written)
        #expect(frame[4] & 0x04 == 0)
        let error = expectLZ4Error { () throws(LZ4Error) in try LZ4Frame.decompress(frame, maxOutputBytes: 100) }
        guard case .unsupportedFrame? = error else {
            Issue.record("expected unsupportedFrame, got \(String(describing: error))")
            return
        }
    }
}
