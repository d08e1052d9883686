// Hostile command-line values (issue 15, point 9), on the real `credits` executable: each is
// refused with a non-zero exit and a message naming the option and its documented range
// (docs/operations.md, "Command-line limits"), before any work, leaving the data directory
// and the input files exactly as they were.
import DurabilityTestSupport
import CreditEngine
import Testing
#if canImport(Glibc)
import Glibc
#endif
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// Placeholders in a row's arguments, replaced by paths in the row's own directory.
private enum Placeholder {
    /// An existing data directory holding a funded account.
    static let data = "{DATA}"
    /// A FIFO nobody writes to.
    static let fifo = "{FIFO}"
    /// A sparse file of 1 TiB.
    static let sparse = "{SPARSE}"
    /// A catalog whose first model line ends in a vertical tab and a second model.
    static let verticalTab = "{VT}"
}

/// What a run of `credits` did: its exit status, stdout and stderr, and whether it had to be
/// killed at the deadline.
private struct Run {
    var exitCode: Int32?
    var signal: Int32?
    var output: String
    var timedOut: Bool
}

/// Runs `credits` until it ends or `secondsMax` pass, then kills it. A refusal takes
/// milliseconds; the deadline only keeps a command that does not refuse (and would run
/// for hours) from hanging the suite.
private func runBounded(_ credits: String, _ arguments: [String], errors: String, secondsMax: UInt64) throws -> Run {
    let child = try DurabilityChild.spawn(credits, arguments, errors: errors)
    var output: [UInt8] = []
    let deadline = durabilityNanos() + secondsMax * 1_000_000_000
    var ended = false
    while !ended && durabilityNanos() < deadline {
        ended = child.read(into: &output, waitingMillis: 100) == nil
    }
    if !ended { child.kill(SIGKILL) }
    let status = child.wait()
    close(child.output)
    let stderr = (try? PosixFileSystem().readFile(errors)) ?? []
    return Run(exitCode: status.exitCode, signal: status.signal,
               output: String(decoding: output, as: UTF8.self) + String(decoding: stderr, as: UTF8.self), timedOut: !ended)
}

/// Every entry under `path`, sorted: its relative path, type, size and modification time,
/// and for a regular file of at most 1 MiB an FNV-1a hash of its bytes (larger files, such
/// as preallocated log segments, and FIFOs are looked at with lstat only, never read).
private func fingerprint(_ path: String, relative: String = "") -> [String] {
    var info = stat()
    guard lstat(path, &info) == 0 else { return ["\(relative) missing"] }
    let type = info.st_mode & S_IFMT
    var line = "\(relative) type \(type) size \(type == S_IFDIR ? 0 : info.st_size) "
        + "modified \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
    if type == S_IFREG, info.st_size <= 1 << 20, let bytes = try? PosixFileSystem().readFile(path) {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        line += " fnv \(hash)"
    }
    var lines = [line]
    if type == S_IFDIR, let names = try? PosixFileSystem().contentsOfDirectory(path) {
        for name in names.sorted() { lines += fingerprint(path + "/" + name, relative: relative + "/" + name) }
    }
    return lines
}

@Suite("credits: hostile command-line values are refused before any work, naming the option and its range")
struct HostileArgumentsTests {
    /// A row: the arguments, and a fragment of the message (stdout or stderr) that names the
    /// option and its range.
    typealias Row = (arguments: [String], message: String)

    static let intMax = "9223372036854775807"

    static let rows: [Row] = [
        // bench: every numeric option, at Int.max, zero, a negative, NaN, infinity, 1e30.
        (["bench", "--ops", intMax], "--ops must be 1...10000000000 operations, not \(intMax)"),
        (["bench", "--ops", "0"], "--ops must be 1...10000000000 operations"),
        (["bench", "--ops=-1"], "--ops must be 1...10000000000 operations"),
        (["bench", "--accounts", "4294967296"], "--accounts must be 1...100000000 accounts"),
        (["bench", "--scenario", "enterprise", "--accounts", "4000000000"], "--accounts must be 1...100000000 accounts"),
        (["bench", "--concurrency", intMax], "--concurrency must be 1...1024 tasks"),
        (["bench", "--batch", intMax], "--batch must be 1...65536 commands"),
        (["bench", "--batch", "0"], "--batch must be 1...65536 commands"),
        (["bench", "--idempotency-keys", intMax], "--idempotency-keys must be 2...16777216 keys per shard"),
        (["bench", "--recent-entries", intMax], "--recent-entries must be 1...1048576 entries per shard"),
        (["bench", "--duration", "1e30"], "--duration must be 0.001...86400.0 seconds"),
        (["bench", "--duration", "inf"], "--duration must be 0.001...86400.0 seconds, not inf"),
        (["bench", "--duration", "nan"], "--duration must be 0.001...86400.0 seconds, not nan"),
        (["bench", "--duration=-1"], "--duration must be 0.001...86400.0 seconds"),
        (["bench", "--zipf-s", "nan"], "--zipf-s must be 0.01...10.0"),
        (["bench", "--zipf-s", "inf"], "--zipf-s must be 0.01...10.0"),
        (["bench", "--shards", "0"], "--shards must be 1...1024 shards"),
        (["bench", "--snapshot-every", "0"], "--snapshot-every must be 1...1000000000 records"),
        (["bench", "--commit-delay-us", intMax], "--commit-delay-us must be 0...100000 µs"),
        (["bench", "--writer-threads", intMax], "--writer-threads must be 1...1024 threads"),
        (["bench", "--batch", "1", "--versus", "debit", "--rounds", intMax], "--rounds must be 1...1000 rounds"),
        (["bench", "--durability", "strict", "--data", ""], "--data must name a path"),
        (["bench", "--durability", "strict", "--data", Placeholder.data, "--ops", intMax], "--ops must be 1...10000000000"),
        // A value too large for Int is refused by the parser; its message shows the option's help, with the range.
        (["bench", "--ops", "9223372036854775808"], "1...10000000000"),
        // load, drill, export, recover: the data directory is there and must stay as it is.
        (["load", "--data", Placeholder.data, "--seconds", "1e30"], "--seconds must be 0.001...86400.0 seconds"),
        (["load", "--data", Placeholder.data, "--seconds", "inf"], "--seconds must be 0.001...86400.0 seconds, not inf"),
        (["load", "--data", Placeholder.data, "--accounts", "4000000000"], "--accounts must be 1...100000000 accounts"),
        (["load", "--data", Placeholder.data, "--concurrency", intMax], "--concurrency must be 1...1024 tasks"),
        (["load", "--data", Placeholder.data, "--shards", intMax], "--shards must be 1...1024 shards"),
        (["load", "--data", Placeholder.data, "--snapshot-every", "0"], "--snapshot-every must be 1...1000000000 records"),
        (["load", "--data", "", "--seconds", "1"], "--data must name a path"),
        (["drill", "--data", Placeholder.data, "--seconds", "inf"], "--seconds must be 0.001...86400.0 seconds, not inf"),
        (["drill", "--data", Placeholder.data, "--seconds", "1e30"], "--seconds must be 0.001...86400.0 seconds"),
        (["drill", "--data", Placeholder.data, "--accounts", "4000000000"], "--accounts must be 1...100000000 accounts"),
        (["drill", "--data", Placeholder.data, "--shards", "0"], "--shards must be 1...1024 shards"),
        (["drill", "--data", ""], "--data must name a path"),
        (["export", "--data", ""], "--data must name a path"),
        // statement and audit verify (issue 16): paths, bounds, subjects and key files.
        (["statement", "--data", "", "--account", "t1/a0"], "--data must name a path"),
        (["statement", "--data", Placeholder.data, "--account", "t1/a0", "--from", "nonsense"], "[invalid_time]"),
        (["statement", "--data", Placeholder.data, "--account", "t1/a0", "--to", intMax], "[invalid_time]"),
        (["statement", "--data", Placeholder.data, "--account", "xyz"], "--account must be t<tenant>/a<number>"),
        (["audit", "verify", "--data", ""], "--data must name a path"),
        (["audit", "verify", "--data", Placeholder.data, "--public-key", "/dev/zero"], "[audit_key_unreadable]"),
        (["audit", "verify", "--data", Placeholder.data, "--public-key", Placeholder.sparse], "--public-key"),
        (["recover", "--data", ""], "--data must name a path"),
        (["wal", "verify", ""], "DIR must name a path"),
        (["snapshot", "verify", ""], "FILE must name a path"),
        // The snapshot reader's own bounded read (CreditPersistence) refuses them, by code.
        (["snapshot", "verify", "/dev/zero"], "[snapshot_not_regular_file]"),
        (["snapshot", "verify", Placeholder.fifo], "[snapshot_not_regular_file]"),
        // Only the header of a sparse terabyte is read, and it is zeros.
        (["snapshot", "verify", Placeholder.sparse], "[snapshot_too_large]"),
        (["snapshot", "verify", "--json", Placeholder.sparse], "\"ok\": false"),
        // month-end
        (["month-end", "setup", "--data", Placeholder.data, "--accounts", "4000000000"], "--accounts must be 1...100000000 accounts"),
        (["month-end", "setup", "--data", Placeholder.data, "--price-cents", intMax], "--price-cents must be 0...1000000000 cents"),
        (["month-end", "setup", "--data", Placeholder.data, "--price-cents=-1"], "--price-cents must be 0...1000000000 cents"),
        (["month-end", "run", "--data", Placeholder.data, "--payments-in-parallel", intMax], "--payments-in-parallel must be 1...1024"),
        (["month-end", "run", "--data", Placeholder.data, "--progress-every", "0"], "--progress-every must be 1...100000000"),
        (["month-end", "run", "--data", Placeholder.data, "--snapshot-every", "0"], "--snapshot-every must be 1...1000000000"),
        (["month-end", "run", "--data", ""], "--data must name a path"),
        (["month-end", "bench", "--accounts", "4000000000"], "--accounts must be 1...100000000 accounts"),
        (["month-end", "bench", "--shards", "0"], "--shards must be 1...1024 shards"),
        (["month-end", "bench", "--concurrency", intMax], "--concurrency must be 0...1024 tasks"),
        (["month-end", "bench", "--notes-per-turn", "0"], "--notes-per-turn must be 1...1048576 notes"),
        (["month-end", "bench", "--priority", "urgent"], "--priority must be background, utility, medium or high"),
        // catalog files: a device, a FIFO, a sparse terabyte, an empty path, a vertical tab.
        (["catalog", "--file", "/dev/zero"], "not a regular file (a character device)"),
        (["catalog", "--file", Placeholder.fifo], "not a regular file (a FIFO)"),
        (["catalog", "--file", Placeholder.sparse], "1099511627776 bytes, more than the 4194304 bytes allowed"),
        (["catalog", "--json", "--file", Placeholder.sparse], "\"code\": \"too_large\""),
        (["catalog", "--file", ""], "--file must name a path"),
        (["catalog", "--file", Placeholder.verticalTab], "line 3, column 'credits': character U+000B is not allowed"),
        (["catalog", "--json", "--file", Placeholder.verticalTab], "\"code\": \"control_character\""),
        (["quote", intMax], "at most 1000000 credits"),
    ]

    @Test("each hostile value: non-zero exit, the option and its range named, no time spent, nothing changed",
          .enabled(if: creditsExecutable != nil, "the credits executable was not found next to the test bundle"),
          arguments: rows)
    func hostileValueIsRefused(arguments: [String], message: String) async throws {
        let credits = try #require(creditsExecutable)
        let directory = try makeTemporaryDirectory("hostile-arguments")
        defer { removeTree(directory) }
        let paths = try await Self.prepare(directory)
        let arguments = arguments.map { paths[$0] ?? $0 }
        let before = fingerprint(directory)
        let run = try runBounded(credits, arguments, errors: directory + ".stderr", secondsMax: 60)
        defer { unlink(directory + ".stderr") }
        #expect(!run.timedOut, "\(arguments) was not refused; it ran until killed")
        #expect(run.signal == nil, "\(arguments) ended by signal \(run.signal ?? 0): a trap, not a refusal\n\(run.output)")
        #expect(run.exitCode != nil && run.exitCode != 0, "\(arguments): exit \(run.exitCode.map(String.init) ?? "-")\n\(run.output)")
        #expect(run.output.contains(message), "\(arguments): expected \"\(message)\" in:\n\(run.output)")
        #expect(fingerprint(directory) == before, "\(arguments) changed the directory")
    }

    @Test("snapshot verify and wal verify read a real snapshot and a directory of segments through their headers",
          .enabled(if: creditsExecutable != nil, "the credits executable was not found next to the test bundle"))
    func realFilesStillVerify() async throws {
        let credits = try #require(creditsExecutable)
        let directory = try makeTemporaryDirectory("verify-headers")
        defer { removeTree(directory) }
        let data = try #require(try await Self.prepare(directory)[Placeholder.data])
        let storage = StorageConfiguration(directory: data)
        let engine = try await CreditEngine.open(configuration: EngineConfiguration(shardCount: 2, storage: storage))
        let headers = try await engine.snapshot()
        await engine.close()
        let snapshots = try PosixFileSystem().contentsOfDirectory(storage.snapshotDirectory(0))
        #expect(headers.count == 2 && snapshots.count == 1, "\(headers) \(snapshots)")
        let snapshot = storage.snapshotDirectory(0) + "/" + (snapshots.first ?? "")
        for arguments in [["snapshot", "verify", "--json", snapshot], ["wal", "verify", "--json", storage.walDirectory(0)]] {
            let run = try runBounded(credits, arguments, errors: directory + ".stderr", secondsMax: 60)
            defer { unlink(directory + ".stderr") }
            #expect(run.exitCode == 0 && run.output.contains("\"ok\": true"), "\(arguments): \(run.output)")
        }
    }

    /// Fills `directory` with a data directory holding one funded account, a FIFO, a sparse
    /// 1 TiB file and a catalog with a vertical tab; the placeholders' paths.
    static func prepare(_ directory: String) async throws -> [String: String] {
        let data = directory + "/data"
        let engine = try await CreditEngine.open(configuration: EngineConfiguration(
            shardCount: 2, storage: StorageConfiguration(directory: data)))
        let tenant = TenantID(7)
        let account = AccountID(tenant: tenant, number: 0)
        for command in [Command(key: IdempotencyKey(high: 1, low: 1), .openTenant(tenant, .individual)),
                        Command(key: IdempotencyKey(high: 1, low: 2), .openAccount(account, .standard)),
                        Command(key: IdempotencyKey(high: 1, low: 3), .grant(account, GrantTerms(kind: .promotional,
                                                                                                 amount: try .credits(100)))),
        ] {
            #expect(await engine.execute(command).isSuccess)
        }
        await engine.close()

        let fifo = directory + "/fifo"
        try #require(mkfifo(fifo, 0o600) == 0)
        let sparse = directory + "/sparse.catalog"
        let descriptor = open(sparse, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        try #require(descriptor >= 0)
        let truncated = ftruncate(descriptor, 1 << 40)
        close(descriptor)
        try #require(truncated == 0, "this file system cannot hold a sparse 1 TiB file")
        let verticalTab = directory + "/vertical-tab.catalog"
        let text = "model | provider | kind | quality | unit | provider_cost_usd | credits\n"
            + "A | P | text | standard | 1K tokens | 0.001 | 1\n"
            + "B | P | text | standard | 1K tokens | 0.001 | 1\u{0B}C | P | text | standard | 1K tokens | 0.001 | 1\n"
        let file = try PosixFileSystem().open(verticalTab, create: true)
        try Array(text.utf8).withUnsafeBytes { try file.write($0, at: 0) }
        file.close()
        return [Placeholder.data: data, Placeholder.fifo: fifo, Placeholder.sparse: sparse, Placeholder.verticalTab: verticalTab]
    }
}
