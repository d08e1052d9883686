#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CreditEngine
import DurabilityTestSupport
import Synchronization
import Testing
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

// Shared helpers of the engine's durability tests (DurableEngineTests, CrashTests): seeds, a
// seeded random workload, a fast simulated disk, an entry log per shard, and child processes.
// Randomized tests print their seed; CREDITS_TEST_SEED=<seed> replays one.

// MARK: - Engines on a simulated disk

/// Forwards to a `SimulatedFileSystem` (which models power cuts), but does not preallocate:
/// the simulation grows files byte by byte, about 0.5 µs per byte in a debug build — 4-5 s
/// per preallocated 8 MiB segment. Without preallocation a segment is as long as its records,
/// which the log reader, told so by `preallocatesFiles`, treats like preallocated zeros.
/// (CreditPersistenceTests covers the preallocated layout itself.)
final class LightDisk: FileSystem {
    let simulated: SimulatedFileSystem

    init(_ simulated: SimulatedFileSystem = SimulatedFileSystem()) { self.simulated = simulated }

    func createDirectory(_ path: String) throws(FileError) { try simulated.createDirectory(path) }
    func contentsOfDirectory(_ path: String) throws(FileError) -> [String] { try simulated.contentsOfDirectory(path) }
    func fileExists(_ path: String) -> Bool { simulated.fileExists(path) }
    func size(of path: String) throws(FileError) -> Int64 { try simulated.size(of: path) }
    func open(_ path: String, create: Bool) throws(FileError) -> any WritableFile {
        LightFile(try simulated.open(path, create: create))
    }
    func readFile(_ path: String, bytesMax: Int) throws(FileError) -> [UInt8] { try simulated.readFile(path, bytesMax: bytesMax) }
    var preallocatesFiles: Bool { false }
    func rename(_ from: String, to: String) throws(FileError) { try simulated.rename(from, to: to) }
    func remove(_ path: String) throws(FileError) { try simulated.remove(path) }
    func syncDirectory(_ path: String) throws(FileError) { try simulated.syncDirectory(path) }
}

private final class LightFile: WritableFile {
    let inner: any WritableFile

    init(_ inner: any WritableFile) { self.inner = inner }

    var path: String { inner.path }
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FileError) { try inner.write(bytes, at: offset) }
    func read(at offset: Int64, count: Int) throws(FileError) -> [UInt8] { try inner.read(at: offset, count: count) }
    func sync() throws(FileError) { try inner.sync() }
    func preallocate(_ size: Int64) throws(FileError) {}
    func truncate(_ size: Int64) throws(FileError) { try inner.truncate(size) }
    func close() { inner.close() }
}

/// The smallest log configuration `LogConfiguration` accepts (8 MiB + 64-byte segments).
func smallLog(_ durability: Durability = .strict) -> LogConfiguration {
    LogConfiguration(durability: durability, segmentSize: WALFormat.segmentHeaderSize + 2 * WALFormat.recordSizeMax,
                     unsyncedBytesMax: 2 * WALFormat.recordSizeMax)
}

/// The entries each shard made, in order (the shard's log order), as `onEntry` reports them.
final class ShardEntryLog: Sendable {
    private let entries: Mutex<[[(key: IdempotencyKey, time: Timestamp)]]>

    init(shards: Int) { entries = Mutex(Array(repeating: [], count: shards)) }

    func record(_ shard: Int, _ entry: LedgerEntry) {
        entries.withLock { $0[shard].append((entry.key, entry.time)) }
    }

    func of(_ shard: Int) -> [(key: IdempotencyKey, time: Timestamp)] { entries.withLock { $0[shard] } }
}

/// An engine configuration on `disk` with `shards` shards, logging entries to `entries`.
func durableConfiguration(disk: LightDisk, shards: Int, log: LogConfiguration = smallLog(), snapshotEvery: Int? = nil,
                          entries: ShardEntryLog? = nil) -> EngineConfiguration {
    let storage = StorageConfiguration(directory: "/data", fileSystem: disk, log: log, snapshotEveryRecords: snapshotEvery,
                                       snapshotEveryMillis: nil)
    var configuration = EngineConfiguration(shardCount: shards, storage: storage)
    if let entries { configuration.onEntry = { shard, entry in entries.record(shard, entry) } }
    return configuration
}

/// Every record of a shard's log (archive and live segments), verified, as the disk holds it now.
func logEntries(_ storage: StorageConfiguration, shard: Int) throws -> [WALReader.Entry] {
    var entries: [WALReader.Entry] = []
    _ = try WALReader.read(directories: [storage.archiveDirectory(shard), storage.walDirectory(shard)],
                           fileSystem: storage.fileSystem, shard: UInt32(shard), keys: storage.encryption) { entries.append($0) }
    return entries
}

/// Opens the engine, recording an issue (and returning nil) if recovery fails.
func openRecording(_ configuration: EngineConfiguration, clock: ManualClock, _ context: String,
                   sourceLocation: SourceLocation = #_sourceLocation) async -> CreditEngine? {
    do {
        return try await CreditEngine.open(configuration: configuration, clock: clock)
    } catch {
        Issue.record("\(context): recovery failed: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

// MARK: - Child processes

/// A child process with its standard output on a pipe (the pattern of `credits`' own
/// `ChildProcess` in Sources/credits/Support.swift).
struct DurabilityChild {
    let pid: pid_t
    let output: Int32

    /// Starts `path` with `arguments`; its stdout goes to a pipe, its stderr to the file `errors`.
    static func spawn(_ path: String, _ arguments: [String], errors: String) throws -> DurabilityChild {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw ChildFailure("pipe failed: errno \(errno)") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, nil, argv, environ)
        close(fds[1])
        guard result == 0 else {
            close(fds[0])
            throw ChildFailure("cannot start \(path): error \(result)")
        }
        return DurabilityChild(pid: pid, output: fds[0])
    }

    /// Waits up to `millis` for output; appends what is there. nil at end of file.
    func read(into buffer: inout [UInt8], waitingMillis millis: Int32) -> Int? {
        var descriptor = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, millis)
        if ready <= 0 { return 0 }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(output, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return nil }
            buffer.append(contentsOf: chunk[..<count])
            return count
        }
    }

    /// Reads everything until end of file.
    func drain(into buffer: inout [UInt8]) {
        while read(into: &buffer, waitingMillis: 1_000) != nil {}
    }

    func kill(_ signal: Int32) { _ = Glibc.kill(pid, signal) }

    /// Waits for the child to end; its exit status or the signal that ended it.
    func wait() -> (exitCode: Int32?, signal: Int32?) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7F
        if signal == 0 { return ((status >> 8) & 0xFF, nil) }
        return (nil, signal)
    }
}

struct ChildFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Monotonic nanoseconds.
func durabilityNanos() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}
