// Reading a file a user names (a catalog) without trusting it: it must be a regular file
// no larger than the caller's maximum, checked before a byte is read.
import ArgumentParser
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
    precondition(bytesMax >= 0)
    var info = stat()
    guard stat(path, &info) == 0 else { throw .cannotOpen(errno: errno) }
    try checkRegular(info, bytesMax: bytesMax)
    let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
    guard descriptor >= 0 else { throw .cannotOpen(errno: errno) }
    defer { close(descriptor) }
    guard fstat(descriptor, &info) == 0 else { throw .readFailed(errno: errno) }
    try checkRegular(info, bytesMax: bytesMax)
    var bytes: [UInt8] = []
    bytes.reserveCapacity(Int(info.st_size))
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while bytes.count <= bytesMax {
        let wanted = min(chunk.count, bytesMax + 1 - bytes.count)
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, wanted) }
        if count < 0 {
            if errno == EINTR { continue }
            throw .readFailed(errno: errno)
        }
        if count == 0 { return bytes }
        bytes.append(contentsOf: chunk[..<count])
    }
    throw .tooLarge(bytes: Int64(bytes.count), bytesMax: bytesMax)
}

private func checkRegular(_ info: stat, bytesMax: Int) throws(BoundedReadError) {
    guard info.st_mode & S_IFMT == S_IFREG else { throw .notRegularFile(BoundedReadError.FileKind(mode: info.st_mode)) }
    guard info.st_size <= Int64(bytesMax) else { throw .tooLarge(bytes: Int64(info.st_size), bytesMax: bytesMax) }
}

/// Refuses a path that exists but is not a regular file (a device, FIFO or directory), for
/// commands that read the whole file: /dev/zero would never end and a FIFO would block.
/// A missing file is left to the command, which reports it in its own format.
func checkRegularFileIfPresent(_ option: String, _ path: String) throws(ValidationError) {
    var info = stat()
    guard stat(path, &info) == 0, info.st_mode & S_IFMT != S_IFREG else { return }
    throw ValidationError("\(option) must be a regular file; \(path) is a \(BoundedReadError.FileKind(mode: info.st_mode).rawValue)")
}
