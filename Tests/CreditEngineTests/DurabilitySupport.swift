#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CreditEngine
import Synchronization
import Testing

// Shared helpers of the engine's durability tests (DurableEngineTests, CrashTests): seeds, a
// seeded random workload, a fast simulated disk, an entry log per shard, and child processes.
// Randomized tests print their seed; CREDITS_TEST_SEED=<seed> replays one.

// MARK: - Seeds

/// The durability tests' generator (SplitMix64, so a seed replays).
typealias DurabilityRandom = SplitMix64

enum DurabilitySeed {
    /// CREDITS_TEST_SEED (decimal or 0x-hex) when set, else a random seed; printed with `label`.
    static func make(_ label: String) -> UInt64 {
        var seed = UInt64.random(in: .min ... .max)
        if let raw = getenv("CREDITS_TEST_SEED") {
            let text = String(cString: raw).filter { !$0.isWhitespace }
            if let parsed = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text) { seed = parsed }
        }
        print("\(label): seed \(seed) (replay with CREDITS_TEST_SEED=\(seed))")
        return seed
    }

    /// The `index`-th seed derived from `base` (several rounds from one printed seed).
    static func derived(_ base: UInt64, _ index: Int) -> UInt64 {
        var random = DurabilityRandom(seed: base &+ UInt64(index) &* 0xD1B5_4A32_D192_ED03)
        return random.next()
    }
}

// MARK: - Commands

func durabilityCredits(_ whole: Int64) -> Millicredits { Millicredits(whole * Millicredits.perCredit) }

/// Random commands over a few individuals and one organisation, valid and invalid, like the
/// property tests' generator in CreditCoreTests but smaller; it learns hold ids and debit
/// keys from outcomes. Workloads with different `tenantBase`s use disjoint tenants.
struct DurabilityWorkload {
    var random: DurabilityRandom
    let keyHigh: UInt64
    private var keyCounter: UInt64 = 0
    let individuals: [TenantID]
    let organisation: TenantID
    let accounts: [AccountID]
    private(set) var holds: [HoldID] = []
    private var debits: [(key: IdempotencyKey, account: AccountID, amount: Millicredits)] = []
    private(set) var issued: [Command] = []

    init(seed: UInt64, tenantBase: UInt64 = 1, individuals count: Int = 4) {
        random = DurabilityRandom(seed: seed)
        keyHigh = random.next()
        individuals = (0 ..< UInt64(count)).map { TenantID(tenantBase + $0) }
        organisation = TenantID(tenantBase + 1_000)
        var ids = individuals.map { AccountID(tenant: $0, number: 0) }
        ids.append(AccountID(tenant: individuals[0], number: 1))
        for number in UInt32(0) ... 3 { ids.append(AccountID(tenant: organisation, number: number)) }
        accounts = ids
    }

    mutating func freshKey() -> IdempotencyKey {
        keyCounter += 1
        return IdempotencyKey(high: keyHigh, low: keyCounter)
    }

    /// The opening commands: tenants, accounts, first grants.
    mutating func prologue() -> [Command] {
        var actions: [Action] = []
        for tenant in individuals {
            actions.append(.openTenant(tenant, .individual))
            actions.append(.openAccount(AccountID(tenant: tenant, number: 0), .standard))
            actions.append(.grant(AccountID(tenant: tenant, number: 0),
                                  GrantTerms(kind: .purchase, amount: durabilityCredits(random.between(200, 600)))))
        }
        actions.append(.openAccount(AccountID(tenant: individuals[0], number: 1), .standard(overdraft: durabilityCredits(25))))
        actions.append(.openTenant(organisation, .organisation(departments: [
            DepartmentTerms(id: DepartmentID(1), costCentre: "CC-ENG", allocationPerPeriod: durabilityCredits(random.between(50, 300))),
            DepartmentTerms(id: DepartmentID(2), costCentre: "CC-OPS"),
        ])))
        for number in UInt32(1) ... 3 {
            actions.append(.openAccount(AccountID(tenant: organisation, number: number),
                                        .member(department: DepartmentID(number == 3 ? 2 : 1),
                                                limitPerPeriod: random.chance(40) ? nil : durabilityCredits(random.between(10, 90)))))
        }
        actions.append(.grant(AccountID(tenant: organisation, number: 0),
                              GrantTerms(kind: .enterpriseContract, amount: durabilityCredits(random.between(500, 2_000)))))
        return actions.map { record(Command(key: freshKey(), $0)) }
    }

    private mutating func record(_ command: Command) -> Command {
        issued.append(command)
        return command
    }

    private mutating func amount(maxCredits: Int64 = 40) -> Millicredits {
        switch random.below(100) {
        case 0 ..< 2: return .zero
        case 2 ..< 4: return Millicredits(-random.between(1, 5_000))
        case 4 ..< 14: return Millicredits(random.between(1, 999))
        default: return Millicredits(random.between(1, maxCredits * 1_000))
        }
    }

    private mutating func scope() -> ChargeScope {
        random.chance(75) ? .unscoped : random.pick([ChargeScope(provider: 7), ChargeScope(provider: 7, model: 3)])
    }

    private mutating func hold() -> HoldID {
        if !holds.isEmpty, random.chance(85) { return random.pick(holds) }
        return HoldID(tenant: random.pick(individuals + [organisation]), number: UInt64(random.between(1, 500)))
    }

    /// The next command: usually new, sometimes a retry (same key and command) or a key conflict.
    mutating func next() -> Command {
        if !issued.isEmpty, random.chance(6) {
            let earlier = random.pick(issued)
            if random.chance(80) { return earlier }
            // Same key, another action, same tenant (keys are remembered per shard, and a
            // tenant's shard is fixed): a key conflict.
            return Command(key: earlier.key, .freeze(AccountID(tenant: earlier.tenant, number: 0)))
        }
        return record(Command(key: freshKey(), nextAction()))
    }

    private mutating func nextAction() -> Action {
        let account = random.pick(accounts)
        let start = Timestamp(millisSinceEpoch: 1_767_225_600_000)
        switch random.below(100) {
        case 0 ..< 14:
            let expires: Timestamp = random.chance(70) ? .never : start.adding(millis: random.between(3_600_000, 40 * 86_400_000))
            return .grant(account, GrantTerms(kind: random.pick(GrantKind.allCases), amount: amount(maxCredits: 200),
                                              expiresAt: expires, priority: random.pick([10, 100, 200]),
                                              scope: random.chance(85) ? .unscoped : ChargeScope(provider: 7)))
        case 14 ..< 44:
            return .debit(account, amount(), scope: scope())
        case 44 ..< 56:
            let timeout: Int64 = random.chance(5) ? 0 : random.between(1_000, 7_200_000)
            return .reserve(account, amount(), timeoutMillis: timeout, scope: scope())
        case 56 ..< 66:
            return .settle(hold(), actual: Millicredits(random.between(0, 30_000)))
        case 66 ..< 71:
            return .release(hold())
        case 71 ..< 73:
            return .timeOutHold(hold())
        case 73 ..< 78:
            if let debit = debits.isEmpty ? nil : random.pick(debits) {
                return .refund(debit.account, debit: debit.key, Millicredits(random.between(1, max(1, debit.amount.rawValue))))
            }
            return .refund(account, debit: freshKey(), amount())
        case 78 ..< 83:
            let reason = random.chance(10) ? String(repeating: "r", count: 300) : random.pick(["goodwill", "outage credit", "€ correction"])
            let value = amount(maxCredits: 20)
            return .adjust(account, random.chance(50) ? value : Millicredits(-value.rawValue), reason: reason)
        case 83 ..< 86:
            return .freeze(account)
        case 86 ..< 90:
            return .unfreeze(account)
        case 90 ..< 93:
            return .setMemberLimit(account, perPeriod: random.chance(20) ? nil : durabilityCredits(random.between(0, 90)))
        case 93 ..< 95:
            return .setDepartmentAllocation(organisation, DepartmentID(UInt16(random.between(1, 3))),
                                            perPeriod: random.chance(20) ? nil : durabilityCredits(random.between(0, 300)))
        case 95 ..< 97:
            return .startPeriod(random.chance(80) ? organisation : random.pick(individuals))
        default:
            return .openAccount(account, random.chance(50) ? .standard : .member(department: DepartmentID(1), limitPerPeriod: nil))
        }
    }

    /// Learns hold ids and refundable debits from an outcome.
    mutating func learn(_ command: Command, _ outcome: Outcome) {
        guard case .success(let receipt) = outcome else { return }
        switch command.action {
        case .reserve:
            if let hold = receipt.hold, !holds.contains(hold) { holds.append(hold) }
        case .debit(let account, let amount, _):
            debits.append((command.key, account, amount))
        case .settle(let hold, _), .release(let hold), .timeOutHold(let hold):
            holds.removeAll { $0 == hold }
        default:
            break
        }
    }

    /// Milliseconds to move the clock before the next command.
    mutating func pause() -> Int64 {
        switch random.below(100) {
        case 0 ..< 40: return 0
        case 40 ..< 80: return random.between(1, 1_000)
        case 80 ..< 96: return random.between(1_000, 600_000)
        default: return random.between(600_000, 2 * 86_400_000)
        }
    }
}

// MARK: - Engines on a simulated disk

/// Forwards to a `SimulatedFileSystem` (which models power cuts), but does not preallocate:
/// the simulation grows files byte by byte, about 0.5 µs per byte in a debug build — 4-5 s
/// per preallocated 8 MiB segment. Without preallocation a segment is as long as its records,
/// which the log reader treats like preallocated zeros. (CreditPersistenceTests covers the
/// preallocated layout itself.)
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
    func readFile(_ path: String) throws(FileError) -> [UInt8] { try simulated.readFile(path) }
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
                           fileSystem: storage.fileSystem, shard: UInt32(shard)) { entries.append($0) }
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
