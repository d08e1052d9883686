import CLZ4

/// Why bytes could not be LZ4-compressed or decompressed.
///
/// Decompression reads bytes from disk, so every way a frame can be wrong is a value of this
/// type and never a trap: a corrupted frame fails liblz4's header, block or content checksum
/// (`.library`), a cut-off frame is `.truncated`, bytes after the frame are `.trailingBytes`.
public enum LZ4Error: Error, Sendable, Equatable, CustomStringConvertible {
    /// liblz4 reported an error. `function` is the liblz4 call, `name` what
    /// `LZ4F_getErrorName` said (e.g. "ERROR_contentChecksum_invalid").
    case library(function: String, name: String)
    /// The frame ends before its end mark and content checksum; `count` bytes were given.
    case truncated(count: Int)
    /// A complete frame ends at `offset`, and `count` more bytes follow it.
    case trailingBytes(offset: Int, count: Int)
    /// The frame decodes to more than `limit` bytes (the caller's `maxOutputBytes`).
    case outputTooLarge(limit: Int)
    /// A well-formed frame this reader refuses: a skippable frame, or one without a content
    /// checksum (every frame this module writes has one, so its absence means the bytes are
    /// not ours and could not be verified).
    case unsupportedFrame(reason: String)

    /// A stable machine-readable name.
    public var code: String {
        switch self {
        case .library: "lz4_library"
        case .truncated: "lz4_truncated"
        case .trailingBytes: "lz4_trailing_bytes"
        case .outputTooLarge: "lz4_output_too_large"
        case .unsupportedFrame: "lz4_unsupported_frame"
        }
    }

    public var description: String {
        switch self {
        case .library(let function, let name): "liblz4 \(function) failed: \(name)"
        case .truncated(let count): "LZ4 frame truncated: it ends after \(count) bytes, before its end mark and checksum"
        case .trailingBytes(let offset, let count): "LZ4 frame ends at byte \(offset) but \(count) more bytes follow"
        case .outputTooLarge(let limit): "LZ4 frame decodes to more than the limit of \(limit) bytes"
        case .unsupportedFrame(let reason): "unsupported LZ4 frame: \(reason)"
        }
    }

    /// The error for a liblz4 result code, or nil when `code` is not an error.
    static func check(_ code: Int, _ function: String) -> LZ4Error? {
        guard LZ4F_isError(code) != 0 else { return nil }
        return .library(function: function, name: String(cString: LZ4F_getErrorName(code)))
    }
}

/// LZ4 *frame* format (the format of the `lz4` command-line tool), through the system liblz4.
///
/// Snapshots are compressed with it: the frame format rather than raw LZ4 blocks because it
/// carries its own checksums, so corruption at rest is detected by decompression itself.
/// Every frame written here has a content checksum (xxHash32 of the whole input) and a
/// checksum per block, so a damaged block is reported even before the end of the frame;
/// the header has its own checksum. `decompress` requires the content checksum.
@_spi(Plumbing) public enum LZ4Frame {
    /// The liblz4 version this binary runs with, e.g. "1.9.4".
    package static var libraryVersion: String { String(cString: LZ4_versionString()) }

    /// The preferences of every frame written here: 4 MB blocks (few block headers and a good
    /// ratio on large snapshots), linked blocks (each may refer to the previous 64 KB),
    /// block and content checksums on, the fast default compression level.
    static func preferences(contentSize: Int?) -> LZ4F_preferences_t {
        var preferences = LZ4F_preferences_t()
        preferences.frameInfo.blockSizeID = LZ4F_max4MB
        preferences.frameInfo.blockMode = LZ4F_blockLinked
        preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
        preferences.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled
        preferences.frameInfo.frameType = LZ4F_frame
        // 0 means "unknown" in the frame header; a known size lets the reader allocate once
        // and lets liblz4 check the decoded length.
        preferences.frameInfo.contentSize = UInt64(contentSize ?? 0)
        preferences.compressionLevel = 0
        return preferences
    }

    /// `bytes` as one LZ4 frame, with its size recorded in the frame header.
    @_spi(Plumbing) public static func compress(_ bytes: [UInt8]) throws(LZ4Error) -> [UInt8] {
        // withUnsafeBytes rethrows untyped errors, so the typed error travels in a Result.
        try bytes.withUnsafeBytes { source in Result { () throws(LZ4Error) in try compress(source) } }.get()
    }

    /// `bytes` as one LZ4 frame, with its size recorded in the frame header.
    package static func compress(_ bytes: UnsafeRawBufferPointer) throws(LZ4Error) -> [UInt8] {
        var preferences = preferences(contentSize: bytes.count)
        let bound = LZ4F_compressFrameBound(bytes.count, &preferences)
        if let error = LZ4Error.check(bound, "LZ4F_compressFrameBound") { throw error }
        var failure: LZ4Error?
        // liblz4 rejects a null source pointer even for 0 bytes, so empty input points at a dummy byte.
        var empty: UInt8 = 0
        let frame = [UInt8](unsafeUninitializedCapacity: bound) { destination, initialized in
            let written = withUnsafeMutablePointer(to: &empty) { emptyPointer in
                LZ4F_compressFrame(
                    destination.baseAddress, destination.count,
                    bytes.baseAddress ?? UnsafeRawPointer(emptyPointer), bytes.count, &preferences
                )
            }
            if let error = LZ4Error.check(written, "LZ4F_compressFrame") {
                failure = error
                initialized = 0
            } else {
                initialized = written
            }
        }
        if let failure { throw failure }
        return frame
    }

    /// The bytes of the single LZ4 frame `frame`, verified against its checksums.
    ///
    /// Throws instead of returning bytes that were not verified: for a corrupted frame
    /// (`.library`, naming the failed check), a frame cut short (`.truncated`), bytes after
    /// the frame (`.trailingBytes`), or output beyond `maxOutputBytes` (`.outputTooLarge`:
    /// at most `maxOutputBytes + 1` bytes are ever allocated, so a damaged or hostile frame
    /// cannot exhaust memory). A frame is decoded into one buffer when its header records the
    /// size (every `compress` frame); otherwise the buffer grows by doubling.
    @_spi(Plumbing) public static func decompress(_ frame: [UInt8], maxOutputBytes: Int) throws(LZ4Error) -> [UInt8] {
        try frame.withUnsafeBytes { source in
            Result { () throws(LZ4Error) in try decompress(source, maxOutputBytes: maxOutputBytes) }
        }.get()
    }

    /// The bytes of the single LZ4 frame `frame`; see `decompress(_:maxOutputBytes:)`.
    package static func decompress(_ frame: UnsafeRawBufferPointer, maxOutputBytes: Int) throws(LZ4Error) -> [UInt8] {
        precondition(maxOutputBytes >= 0, "maxOutputBytes must not be negative")
        // Minimum bytes LZ4F_headerSize needs to tell the header's length (LZ4F_MIN_SIZE_TO_KNOW_HEADER_LENGTH).
        let bytesToKnowHeaderSize = 5
        guard let source = frame.baseAddress, frame.count >= bytesToKnowHeaderSize else {
            throw .truncated(count: frame.count)
        }
        let headerSize = LZ4F_headerSize(source, frame.count)
        if let error = LZ4Error.check(headerSize, "LZ4F_headerSize") { throw error }
        guard frame.count >= headerSize else { throw .truncated(count: frame.count) }

        var context: OpaquePointer?
        if let error = LZ4Error.check(LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION)), "LZ4F_createDecompressionContext") {
            throw error
        }
        defer { LZ4F_freeDecompressionContext(context) }

        var info = LZ4F_frameInfo_t()
        var consumed = frame.count
        if let error = LZ4Error.check(LZ4F_getFrameInfo(context, &info, source, &consumed), "LZ4F_getFrameInfo") {
            throw error
        }
        guard info.frameType == LZ4F_frame else { throw .unsupportedFrame(reason: "a skippable frame holds no content") }
        guard info.contentChecksumFlag == LZ4F_contentChecksumEnabled else {
            throw .unsupportedFrame(reason: "the frame has no content checksum, so its content cannot be verified")
        }
        if info.contentSize > UInt64(maxOutputBytes) { throw .outputTooLarge(limit: maxOutputBytes) }

        // Decode into at most limit = maxOutputBytes + 1 bytes: producing the extra byte is how
        // an over-long frame without a recorded size is detected.
        let limit = maxOutputBytes == Int.max ? Int.max : maxOutputBytes + 1
        var decoder = FrameDecoder(context: context, source: frame, offset: consumed)
        // With a recorded size the first buffer is exact; otherwise guess and grow by doubling.
        var capacity = info.contentSize > 0
            ? Int(info.contentSize)
            : max(64 * 1024, frame.count > Int.max / 4 ? Int.max : frame.count * 4)
        capacity = max(1, min(capacity, limit)) // at least 1, so the buffer has an address
        var output: [UInt8] = []
        while true {
            let previous = output
            var finished = false
            var failure: LZ4Error?
            output = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
                let base = UnsafeMutableRawPointer(buffer.baseAddress!)
                previous.withUnsafeBytes { old in
                    if old.count > 0 { base.copyMemory(from: old.baseAddress!, byteCount: old.count) }
                }
                var produced = previous.count
                do throws(LZ4Error) {
                    finished = try decoder.run(into: base, capacity: capacity, produced: &produced)
                } catch {
                    failure = error
                }
                initialized = produced
            }
            if let failure { throw failure }
            if finished { break }
            // The buffer is full and the frame is not finished.
            guard capacity < limit else { throw .outputTooLarge(limit: maxOutputBytes) }
            capacity = capacity > limit / 2 ? limit : capacity * 2
        }
        guard output.count <= maxOutputBytes else { throw .outputTooLarge(limit: maxOutputBytes) }
        guard decoder.offset == frame.count else {
            throw .trailingBytes(offset: decoder.offset, count: frame.count - decoder.offset)
        }
        return output
    }
}

/// The loop around `LZ4F_decompress`, resumable when the output buffer is replaced by a
/// larger one (the context keeps the 64 KB history itself because `stableDst` is off).
private struct FrameDecoder {
    let context: OpaquePointer?
    let source: UnsafeRawBufferPointer
    /// Bytes of `source` consumed so far.
    var offset: Int

    init(context: OpaquePointer?, source: UnsafeRawBufferPointer, offset: Int) {
        self.context = context
        self.source = source
        self.offset = offset
    }

    /// Decodes into `base[produced ..< capacity]`. Returns true when the frame is complete
    /// (end mark and content checksum verified), false when the buffer is full first.
    mutating func run(into base: UnsafeMutableRawPointer, capacity: Int, produced: inout Int) throws(LZ4Error) -> Bool {
        var options = LZ4F_decompressOptions_t() // stableDst 0, skipChecksums 0: verify everything
        while true {
            var written = capacity - produced
            var consumed = source.count - offset
            let hint = LZ4F_decompress(context, base + produced, &written, source.baseAddress! + offset, &consumed, &options)
            if let error = LZ4Error.check(hint, "LZ4F_decompress") { throw error }
            offset += consumed
            produced += written
            if hint == 0 { return true }
            if consumed == 0 && written == 0 {
                // No progress: either the output is full (liblz4 holds decoded bytes for a
                // larger buffer) or it waits for input that does not exist.
                if produced == capacity { return false }
                throw .truncated(count: source.count)
            }
        }
    }
}

/// Compresses a stream of chunks into one LZ4 frame, so a large snapshot is never held
/// uncompressed and compressed at once: each `append` returns the compressed bytes ready so
/// far (possibly none: liblz4 buffers up to one 4 MB block), `finish` the rest and the
/// frame's end mark and content checksum. The concatenation of everything returned,
/// starting with the frame header returned by the first call, is one frame.
///
/// Used from one thread at a time; not Sendable because it owns a liblz4 context.
package final class LZ4FrameWriter {
    private let context: OpaquePointer?
    private var preferences: LZ4F_preferences_t
    private let contentSize: Int?
    /// The frame header, until the first `append` or `finish` returns it.
    private var header: [UInt8]
    private var appendedBytes = 0
    private var finished = false

    /// A writer of one frame. `contentSize`, when known, is recorded in the header and the
    /// total of the appended bytes must equal it.
    package init(contentSize: Int? = nil) throws(LZ4Error) {
        precondition((contentSize ?? 0) >= 0, "contentSize must not be negative")
        self.contentSize = contentSize
        var preferences = LZ4Frame.preferences(contentSize: contentSize)
        self.preferences = preferences
        var context: OpaquePointer?
        if let error = LZ4Error.check(LZ4F_createCompressionContext(&context, UInt32(LZ4F_VERSION)), "LZ4F_createCompressionContext") {
            throw error
        }
        self.context = context
        var failure: LZ4Error?
        header = [UInt8](unsafeUninitializedCapacity: Int(LZ4F_HEADER_SIZE_MAX)) { buffer, initialized in
            let written = LZ4F_compressBegin(context, buffer.baseAddress, buffer.count, &preferences)
            failure = LZ4Error.check(written, "LZ4F_compressBegin")
            initialized = failure == nil ? written : 0
        }
        if let failure {
            LZ4F_freeCompressionContext(context)
            throw failure
        }
    }

    deinit { LZ4F_freeCompressionContext(context) }

    /// Compresses `bytes` and returns the compressed bytes now ready (the frame header too on
    /// the first call).
    package func append(_ bytes: UnsafeRawBufferPointer) throws(LZ4Error) -> [UInt8] {
        precondition(!finished, "append after finish")
        appendedBytes += bytes.count
        if let contentSize { precondition(appendedBytes <= contentSize, "more bytes appended than the declared contentSize") }
        guard let source = bytes.baseAddress, bytes.count > 0 else { return takeHeader() }
        let bound = LZ4F_compressBound(bytes.count, &preferences)
        return try emit(bound: bound, "LZ4F_compressUpdate") { destination, options in
            LZ4F_compressUpdate(context, destination.baseAddress, destination.count, source, bytes.count, options)
        }
    }

    /// Compresses `bytes`; see `append(_:)` taking a raw buffer.
    package func append(_ bytes: [UInt8]) throws(LZ4Error) -> [UInt8] {
        try bytes.withUnsafeBytes { raw in Result { () throws(LZ4Error) in try append(raw) } }.get()
    }

    /// Ends the frame: returns the buffered compressed bytes, the end mark and the content checksum.
    package func finish() throws(LZ4Error) -> [UInt8] {
        precondition(!finished, "finish called twice")
        if let contentSize { precondition(appendedBytes == contentSize, "fewer bytes appended than the declared contentSize") }
        finished = true
        let bound = LZ4F_compressBound(0, &preferences)
        return try emit(bound: bound, "LZ4F_compressEnd") { destination, options in
            LZ4F_compressEnd(context, destination.baseAddress, destination.count, options)
        }
    }

    private func takeHeader() -> [UInt8] {
        defer { header = [] }
        return header
    }

    /// Runs one liblz4 call into a new buffer of `bound` bytes, after the pending header.
    private func emit(
        bound: Int, _ function: String,
        _ call: (UnsafeMutableRawBufferPointer, UnsafePointer<LZ4F_compressOptions_t>) -> Int
    ) throws(LZ4Error) -> [UInt8] {
        if let error = LZ4Error.check(bound, "LZ4F_compressBound") { throw error }
        let header = takeHeader()
        var options = LZ4F_compressOptions_t() // stableSrc 0: liblz4 keeps its own copy of the history
        var failure: LZ4Error?
        let output = [UInt8](unsafeUninitializedCapacity: header.count + bound) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            for index in 0 ..< header.count { raw[index] = header[index] }
            let written = withUnsafePointer(to: &options) { call(UnsafeMutableRawBufferPointer(rebasing: raw[header.count...]), $0) }
            failure = LZ4Error.check(written, function)
            initialized = failure == nil ? header.count + written : 0
        }
        if let failure { throw failure }
        return output
    }
}
