#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A failed file-system call: which call, on which path, and the errno it returned.
///
/// `code` is the errno of the failed call, or a negative errno for a fault simulated by
/// `SimulatedFileSystem` (so simulated and real failures never compare equal, yet both name
/// a familiar cause). Equatable so tests can expect an exact failure.
public struct FileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The system call or step that failed: "open", "write", "fsync", "rename", ...
    public let operation: String
    public let path: String
    /// errno, or a negative errno for a simulated fault.
    public let code: Int32

    public init(operation: String, path: String, code: Int32) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    /// The code of faults injected by `SimulatedFileSystem.failNextSync` and `failNextWrite`.
    public static let injectedFault: Int32 = -EIO
    /// The code for a `SimulatedFileSystem` handle used after `crash()`: the handle belonged
    /// to the process the power cut ended.
    public static let staleHandle: Int32 = -EBADF
    /// The operation named when `readFile` refuses a path that is not a regular file (a
    /// device, a FIFO, a directory): reading one could block forever or never end.
    public static let notRegularFileOperation = "read (not a regular file)"
    /// The operation named when `readFile` refuses a file longer than the caller's bound
    /// (code EFBIG).
    public static let tooLargeOperation = "read (longer than the format allows)"

    /// `readFile` refused `path`: it is not a regular file.
    public static func notRegularFile(_ path: String) -> FileError {
        FileError(operation: notRegularFileOperation, path: path, code: EINVAL)
    }

    /// `readFile` refused `path`: it holds more than the caller's bound.
    public static func tooLarge(_ path: String) -> FileError {
        FileError(operation: tooLargeOperation, path: path, code: EFBIG)
    }

    /// Whether `readFile` refused the path for not being a regular file.
    public var isNotRegularFile: Bool { operation == Self.notRegularFileOperation }
    /// Whether `readFile` refused the file for exceeding its bound.
    public var isTooLarge: Bool { operation == Self.tooLargeOperation }

    /// Whether the failure was simulated rather than returned by the operating system.
    public var isSimulated: Bool { code < 0 }

    /// e.g. "fsync /data/wal/0001.wal failed: Input/output error (errno 5)".
    public var description: String {
        if code < 0 {
            return "\(operation) \(path) failed: simulated \(Self.message(for: -code)) (code \(code))"
        }
        return "\(operation) \(path) failed: \(Self.message(for: code)) (errno \(code))"
    }

    /// strerror's text. strerror returns static strings for the codes the kernel returns;
    /// only unknown codes use a shared buffer, and those are not produced here.
    private static func message(for code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }

    /// The error for the failed call `operation` on `path`, with the current errno.
    static func errno(_ operation: String, _ path: String) -> FileError {
        FileError(operation: operation, path: path, code: currentErrno())
    }
}

/// Reads errno. A function so the `FileError.errno` factory does not shadow the C global.
@inline(__always)
private func currentErrno() -> Int32 { errno }

/// Where the write-ahead log and snapshots go: the real file system in production,
/// `SimulatedFileSystem` in tests, which models what a power cut keeps.
///
/// Every call is blocking and synchronous: the persistence layer runs them on its own I/O
/// threads, never on Swift's cooperative pool, whose few threads must not wait on a disk.
/// Paths are plain strings ("/data/wal/0001.wal"); no call follows or resolves anything
/// beyond what the operating system does.
///
/// Durability follows POSIX: written bytes are durable after `WritableFile.sync`; a file's
/// existence under its name (create, rename, remove) is durable after `syncDirectory` of the
/// directory holding the name.
@_spi(Plumbing) public protocol FileSystem: Sendable {
    /// Creates `path` and any missing parents (like `mkdir -p`), and fsyncs the parent of
    /// every directory it created so the new directories survive a power cut. An existing
    /// directory is not an error; an existing file is (ENOTDIR).
    func createDirectory(_ path: String) throws(FileError)
    /// The names (not paths) of the entries of the directory `path`, sorted, without "." and "..".
    func contentsOfDirectory(_ path: String) throws(FileError) -> [String]
    /// Whether `path` names a file or directory.
    func fileExists(_ path: String) -> Bool
    /// The size of the file in bytes.
    func size(of path: String) throws(FileError) -> Int64
    /// Opens `path` for reading and writing; with `create`, creates it when missing (empty).
    /// Never truncates an existing file.
    func open(_ path: String, create: Bool) throws(FileError) -> any WritableFile
    /// The whole file, which must be a regular file (not a device, FIFO or directory,
    /// `FileError.notRegularFile`) of at most `bytesMax` bytes (`FileError.tooLarge`, checked
    /// before anything is read). Never blocks on a FIFO and never reads more than `bytesMax`.
    func readFile(_ path: String, bytesMax: Int) throws(FileError) -> [UInt8]
    /// Whether `WritableFile.preallocate` really makes a file its full size. The log reader
    /// relies on it: a preallocated segment found shorter than its header says was cut
    /// after the fact. Only a test disk that skips preallocation answers false.
    var preallocatesFiles: Bool { get }
    /// Renames `from` to `to`, atomically replacing an existing `to` (rename(2)). Durable only
    /// after `syncDirectory` of both directories.
    func rename(_ from: String, to: String) throws(FileError)
    /// Removes the file (or empty directory) `path`. Durable only after `syncDirectory` of its directory.
    func remove(_ path: String) throws(FileError)
    /// fsync of the directory `path`: makes the creates, renames and removes in it durable.
    func syncDirectory(_ path: String) throws(FileError)
}

/// An open file. Used from one thread at a time, but Sendable so it can be handed to the
/// I/O thread that uses it.
@_spi(Plumbing) public protocol WritableFile: AnyObject, Sendable {
    /// The path the file was opened with.
    var path: String { get }
    /// Writes all of `bytes` at `offset` (pwrite, repeated after short writes and EINTR).
    /// Writing past the end extends the file; a gap reads as zeros.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FileError)
    /// Up to `count` bytes at `offset`; fewer only when the file ends first.
    func read(at offset: Int64, count: Int) throws(FileError) -> [UInt8]
    /// fdatasync: everything written so far (and the file's size) is durable once this returns.
    /// After a failure the state of the unsynced data is unknown: the caller must not retry
    /// and assume success (Linux may have dropped the dirty pages), but treat it as fatal.
    func sync() throws(FileError)
    /// Makes the file at least `size` bytes, the new bytes zeros and allocated on disk, so
    /// later writes inside it neither fail for space nor change the file's size (which would
    /// make each fdatasync also write metadata).
    func preallocate(_ size: Int64) throws(FileError)
    /// Sets the file's size to `size`, cutting or zero-extending.
    func truncate(_ size: Int64) throws(FileError)
    /// Releases the file. Idempotent; the handle must not be used afterwards.
    func close()
}

extension FileSystem {
    @_spi(Plumbing) public var preallocatesFiles: Bool { true }

    /// The whole regular file `path`, bounded only by memory: for files the caller's own
    /// tools wrote (tests, fixtures). Readers of data-directory files pass their format's bound.
    package func readFile(_ path: String) throws(FileError) -> [UInt8] {
        try readFile(path, bytesMax: Int.max)
    }
}

extension WritableFile {
    /// Writes all of `bytes` at `offset`.
    @_spi(Plumbing) public func write(_ bytes: [UInt8], at offset: Int64) throws(FileError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(FileError) in try write(raw, at: offset) } }.get()
    }
}

// MARK: - POSIX

/// The real file system through the C library (Linux: glibc).
package struct PosixFileSystem: FileSystem {
    package init() {}

    package func createDirectory(_ path: String) throws(FileError) {
        precondition(!path.isEmpty, "empty path")
        // Walk the prefixes top-down: "/a", "/a/b", ... creating the missing ones.
        let absolute = path.hasPrefix("/")
        var prefix = absolute ? "/" : ""
        var parent = absolute ? "/" : "."
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            let current = prefix.isEmpty || prefix == "/" ? prefix + component : prefix + "/" + component
            if mkdir(current, 0o755) == 0 {
                // The new directory's name lives in its parent: fsync the parent to keep it.
                try syncDirectory(parent)
            } else {
                let code = currentErrno()
                guard code == EEXIST else { throw FileError(operation: "mkdir", path: current, code: code) }
                var info = stat()
                guard stat(current, &info) == 0 else { throw FileError.errno("stat", current) }
                guard (info.st_mode & S_IFMT) == S_IFDIR else {
                    throw FileError(operation: "mkdir", path: current, code: ENOTDIR)
                }
            }
            prefix = current
            parent = current
        }
    }

    package func contentsOfDirectory(_ path: String) throws(FileError) -> [String] {
        guard let directory = opendir(path) else { throw FileError.errno("opendir", path) }
        defer { closedir(directory) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(directory) else {
                let code = currentErrno()
                if code != 0 { throw FileError(operation: "readdir", path: path, code: code) }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    package func fileExists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    package func size(of path: String) throws(FileError) -> Int64 {
        var info = stat()
        guard stat(path, &info) == 0 else { throw FileError.errno("stat", path) }
        return Int64(info.st_size)
    }

    package func open(_ path: String, create: Bool) throws(FileError) -> any WritableFile {
        let flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0)
        return PosixFile(descriptor: try openDescriptor(path, flags), path: path)
    }

    package func readFile(_ path: String, bytesMax: Int) throws(FileError) -> [UInt8] {
        precondition(bytesMax >= 0, "negative bound")
        // O_NONBLOCK: opening a FIFO for reading must not wait for a writer; for a regular
        // file the flag changes nothing.
        let file = PosixFile(descriptor: try openDescriptor(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY), path: path)
        defer { file.close() }
        var info = stat()
        guard fstat(file.descriptor, &info) == 0 else { throw FileError.errno("fstat", path) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw FileError.notRegularFile(path) }
        guard info.st_size >= 0, Int64(info.st_size) <= Int64(bytesMax) else { throw FileError.tooLarge(path) }
        var bytes = try file.read(at: 0, count: Int(info.st_size))
        // The file may have grown since fstat; read on until the end, within the bound (one
        // byte more than the bound allows tells a file that grew past it).
        while true {
            let more = try file.read(at: Int64(bytes.count), count: min(Self.readChunkBytes, bytesMax - bytes.count) + 1)
            if more.isEmpty { return bytes }
            guard more.count <= bytesMax - bytes.count else { throw FileError.tooLarge(path) }
            bytes += more
        }
    }

    /// Bytes read per call once a file has grown past the size it had when opened.
    static let readChunkBytes = 64 * 1_024

    package func rename(_ from: String, to: String) throws(FileError) {
        guard systemRename(from, to) == 0 else { throw FileError.errno("rename", "\(from) -> \(to)") }
    }

    package func remove(_ path: String) throws(FileError) {
        if unlink(path) == 0 { return }
        let code = currentErrno()
        // unlink refuses directories (EISDIR on Linux, EPERM elsewhere); rmdir takes empty ones.
        guard code == EISDIR || code == EPERM else { throw FileError(operation: "unlink", path: path, code: code) }
        if rmdir(path) == 0 { return }
        let directoryCode = currentErrno()
        // Not a directory after all: unlink's EPERM was the real answer.
        throw FileError(operation: directoryCode == ENOTDIR ? "unlink" : "rmdir", path: path,
                        code: directoryCode == ENOTDIR ? code : directoryCode)
    }

    package func syncDirectory(_ path: String) throws(FileError) {
        let descriptor = try openDescriptor(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { _ = systemClose(descriptor) }
        // Not retried: after a failed fsync the kernel may have dropped the dirty state.
        guard fsync(descriptor) == 0 else { throw FileError.errno("fsync", path) }
    }

    private func openDescriptor(_ path: String, _ flags: Int32) throws(FileError) -> Int32 {
        while true {
            let descriptor = systemOpen(path, flags, 0o644)
            if descriptor >= 0 { return descriptor }
            let code = currentErrno()
            if code != EINTR { throw FileError(operation: "open", path: path, code: code) }
        }
    }
}

/// An open file descriptor.
///
/// Sendable without `@unchecked`: the descriptor and path never change, and the closed flag
/// is atomic, so `close` racing the deinit cannot close a descriptor twice (which could close
/// an unrelated file that reused the number).
package final class PosixFile: WritableFile {
    package let path: String
    let descriptor: Int32
    private let closed = Atomic<Bool>(false)

    init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close() }

    /// Using a closed handle is a bug: the descriptor number may already name another file.
    private func checkOpen() {
        precondition(!closed.load(ordering: .relaxed), "use of closed file \(path)")
    }

    package func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FileError) {
        checkOpen()
        precondition(offset >= 0, "negative file offset")
        guard var next = bytes.baseAddress, bytes.count > 0 else { return }
        var remaining = bytes.count
        var position = off_t(offset)
        while remaining > 0 {
            let written = pwrite(descriptor, next, remaining, position)
            if written < 0 {
                let code = currentErrno()
                if code == EINTR { continue }
                throw FileError(operation: "write", path: path, code: code)
            }
            // A regular file never accepts 0 bytes of a non-empty write without an error;
            // report it rather than loop forever.
            guard written > 0 else { throw FileError(operation: "write", path: path, code: EIO) }
            next += written
            remaining -= written
            position += off_t(written)
        }
    }

    package func read(at offset: Int64, count: Int) throws(FileError) -> [UInt8] {
        checkOpen()
        precondition(offset >= 0 && count >= 0, "negative offset or count")
        var failure: FileError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = 0
            while initialized < count {
                let got = pread(descriptor, buffer.baseAddress! + initialized, count - initialized, off_t(offset) + off_t(initialized))
                if got < 0 {
                    let code = currentErrno()
                    if code == EINTR { continue }
                    failure = FileError(operation: "read", path: path, code: code)
                    return
                }
                if got == 0 { return } // end of file
                initialized += got
            }
        }
        if let failure { throw failure }
        return bytes
    }

    package func sync() throws(FileError) {
        checkOpen()
        // Not retried on failure: see WritableFile.sync.
#if canImport(Darwin)
        // fsync on Darwin does not reach the platter; F_FULLFSYNC does.
        guard fcntl(descriptor, F_FULLFSYNC) == 0 || fsync(descriptor) == 0 else { throw FileError.errno("fsync", path) }
#else
        guard fdatasync(descriptor) == 0 else { throw FileError.errno("fsync", path) }
#endif
    }

    package func preallocate(_ size: Int64) throws(FileError) {
        checkOpen()
        precondition(size >= 0, "negative size")
        guard size > 0 else { return }
#if canImport(Glibc)
        while true {
            // posix_fallocate returns the error instead of setting errno.
            let code = posix_fallocate(descriptor, 0, off_t(size))
            if code == 0 { return }
            if code == EINTR { continue }
            if code == EOPNOTSUPP || code == EINVAL { break } // the file system cannot: write zeros
            throw FileError(operation: "fallocate", path: path, code: code)
        }
#endif
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw FileError.errno("fstat", path) }
        var position = Int64(info.st_size)
        let zeros = [UInt8](repeating: 0, count: 64 * 1024)
        while position < size {
            let count = Int(min(Int64(zeros.count), size - position))
            try zeros.withUnsafeBytes { raw in
                Result { () throws(FileError) in try write(UnsafeRawBufferPointer(rebasing: raw[..<count]), at: position) }
            }.get()
            position += Int64(count)
        }
    }

    package func truncate(_ size: Int64) throws(FileError) {
        checkOpen()
        precondition(size >= 0, "negative size")
        while ftruncate(descriptor, off_t(size)) != 0 {
            let code = currentErrno()
            if code != EINTR { throw FileError(operation: "ftruncate", path: path, code: code) }
        }
    }

    package func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // Never retried: on Linux the descriptor is released even when close reports EINTR.
        _ = systemClose(descriptor)
    }
}

// The C calls whose names the FileSystem and WritableFile methods shadow.
private func systemOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func systemClose(_ descriptor: Int32) -> Int32 { close(descriptor) }
private func systemRename(_ from: String, _ to: String) -> Int32 { rename(from, to) }
