// Reading a file a user names (a catalog, a snapshot's or segment's header) without
// trusting it: it must be a regular file, opened without blocking, and no more of it is read
// than the caller's maximum, which is checked against its size before a byte is read.
#if canImport(Glibc)
import Glibc
#endif

/// Why a named file was not read.
enum BoundedReadError: Error, Equatable, CustomStringConvertible {
    /// open(2) failed (no such file, no permission, ...).
    case cannotOpen(errno: Int32)
    /// A directory, device (/dev/zero), FIFO or socket: not something to read whole.
    case notRegularFile(FileKind)
    /// More than the maximum (a sparse terabyte included: its size is refused, not read).
    case tooLarge(bytes: Int64, bytesMax: Int)
    /// read(2) failed.
    case readFailed(errno: Int32)

    enum FileKind: String, Equatable {
        case directory
        case characterDevice = "character device"
        case blockDevice = "block device"
        case fifo = "FIFO"
        case socket
        case other = "special file"

        init(mode: mode_t) {
            switch mode & S_IFMT {
            case S_IFDIR: self = .directory
            case S_IFCHR: self = .characterDevice
            case S_IFBLK: self = .blockDevice
            case S_IFIFO: self = .fifo
            case S_IFSOCK: self = .socket
            default: self = .other
            }
        }
    }

    /// A stable snake_case name, for JSON output.
    var code: String {
        switch self {
        case .cannotOpen: "cannot_open"
        case .notRegularFile: "not_regular_file"
        case .tooLarge: "too_large"
        case .readFailed: "read_failed"
        }
    }

    var description: String {
        switch self {
        case .cannotOpen(let code): "cannot open: \(String(cString: strerror(code)))"
        case .notRegularFile(let kind): "not a regular file (a \(kind.rawValue))"
        case .tooLarge(let bytes, let bytesMax): "\(bytes) bytes, more than the \(bytesMax) bytes allowed"
        case .readFailed(let code): "cannot read: \(String(cString: strerror(code)))"
        }
    }
}

/// The whole content of the regular file `path`, at most `bytesMax` bytes.
///
/// The type is checked before opening (so no device is opened) and again on the opened
/// descriptor (so a file swapped in between is caught); the open does not block (a FIFO
/// without a writer would block a plain one); the size is checked before reading, and the
/// read stops one byte past `bytesMax` in case the file grew. Memory: at most
/// `bytesMax` + 64 KiB.
func readRegularFile(_ path: String, bytesMax: Int) throws(BoundedReadError) -> [UInt8] {
    let (descriptor, size) = try openRegularFile(path, sizeMax: bytesMax)
    defer { close(descriptor) }
    let bytes = try read(descriptor, upTo: bytesMax + 1, expected: Int(size))
    guard bytes.count <= bytesMax else { throw .tooLarge(bytes: Int64(bytes.count), bytesMax: bytesMax) }
    return bytes
}

/// The first `bytesMax` bytes (fewer if the file is shorter) of the regular file `path`, with
/// the checks of `readRegularFile`, for a header: a sparse terabyte or /dev/zero costs no
/// more than the header to look at.
func readRegularFilePrefix(_ path: String, bytesMax: Int) throws(BoundedReadError) -> [UInt8] {
    let (descriptor, size) = try openRegularFile(path, sizeMax: nil)
    defer { close(descriptor) }
    return try read(descriptor, upTo: bytesMax, expected: Int(min(size, Int64(bytesMax))))
}

/// Opens `path` for reading without blocking, after checking (by path, then on the
/// descriptor) that it is a regular file of at most `sizeMax` bytes; its descriptor and size.
private func openRegularFile(_ path: String, sizeMax: Int?) throws(BoundedReadError) -> (Int32, Int64) {
    var info = stat()
    guard stat(path, &info) == 0 else { throw .cannotOpen(errno: errno) }
    try checkRegular(info, sizeMax: sizeMax)
    let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
    guard descriptor >= 0 else { throw .cannotOpen(errno: errno) }
    do throws(BoundedReadError) {
        guard fstat(descriptor, &info) == 0 else { throw .readFailed(errno: errno) }
        try checkRegular(info, sizeMax: sizeMax)
    } catch {
        close(descriptor)
        throw error
    }
    return (descriptor, Int64(info.st_size))
}

private func checkRegular(_ info: stat, sizeMax: Int?) throws(BoundedReadError) {
    guard info.st_mode & S_IFMT == S_IFREG else { throw .notRegularFile(BoundedReadError.FileKind(mode: info.st_mode)) }
    if let sizeMax, info.st_size > Int64(sizeMax) { throw .tooLarge(bytes: Int64(info.st_size), bytesMax: sizeMax) }
}

/// Reads until the end of the file or `limit` bytes, whichever comes first.
private func read(_ descriptor: Int32, upTo limit: Int, expected: Int) throws(BoundedReadError) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(min(expected, limit))
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while bytes.count < limit {
        let wanted = min(chunk.count, limit - bytes.count)
        let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, wanted) }
        if count < 0 {
            if errno == EINTR { continue }
            throw .readFailed(errno: errno)
        }
        if count == 0 { break }
        bytes.append(contentsOf: chunk[..<count])
    }
    return bytes
}
