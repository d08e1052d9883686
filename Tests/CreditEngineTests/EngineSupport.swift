import CreditEngine
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing

/// Collects every entry the engine hands to `onEntry`, with its shard, in arrival order.
final class EntryRecorder: Sendable {
    private let storage = Mutex<[(shard: Int, entry: LedgerEntry)]>([])

    func record(_ shard: Int, _ entry: LedgerEntry) {
        storage.withLock { $0.append((shard, entry)) }
    }

    var all: [(shard: Int, entry: LedgerEntry)] { storage.withLock { $0 } }

    /// Entries where the account is the account or the principal, in arrival order.
    func statement(of account: AccountID) -> [LedgerEntry] {
        all.map(\.entry).filter { $0.account == account || $0.member == account }
    }
}

/// Hands out distinct idempotency keys across tasks.
final class KeySource: Sendable {
    private let counter = Mutex<UInt64>(0)
    private let high: UInt64

    init(_ high: UInt64 = 0xE9_0000) { self.high = high }

    func next() -> IdempotencyKey {
        IdempotencyKey(high: high, low: counter.withLock { $0 += 1; return $0 })
    }
}

func credits(_ whole: Int64) -> Millicredits { Millicredits(whole * Millicredits.perCredit) }

let engineStart = Timestamp(millisSinceEpoch: 1_767_225_600_000)

func makeEngine(shards: Int = 4, clock: ManualClock = ManualClock(engineStart), recorder: EntryRecorder? = nil,
                ledger: LedgerConfiguration = LedgerConfiguration(), recentEntries: Int = 4_096) -> CreditEngine {
    var onEntry: (@Sendable (Int, LedgerEntry) -> Void)?
    if let recorder { onEntry = { shard, entry in recorder.record(shard, entry) } }
    let configuration = EngineConfiguration(shardCount: shards, ledger: ledger, recentEntriesPerShard: recentEntries,
                                            onEntry: onEntry)
    return CreditEngine(configuration: configuration, clock: clock)
}

/// An engine in memory, or (durable) a strict one on a simulated disk: with storage, single
/// calls take another path (the shard's submission queue and drain), which the
/// concurrency tests must cover too.
func makeEngine(shards: Int = 4, durable: Bool, recorder: EntryRecorder? = nil) async throws -> CreditEngine {
    guard durable else { return makeEngine(shards: shards, recorder: recorder) }
    var configuration = durableConfiguration(disk: LightDisk(), shards: shards)
    if let recorder { configuration.onEntry = { shard, entry in recorder.record(shard, entry) } }
    return try await CreditEngine.open(configuration: configuration, clock: ManualClock(engineStart))
}

extension CreditEngine {
    /// Executes and requires success.
    @discardableResult
    func succeed(_ action: Action, keys: KeySource, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Receipt {
        let outcome = await execute(Command(key: keys.next(), action))
        switch outcome {
        case .success(let receipt): return receipt
        case .failure(let error):
            Issue.record("expected \(action) to succeed: \(error)", sourceLocation: sourceLocation)
            throw error
        }
    }

    /// Opens an individual with account 0 and funds it.
    @discardableResult
    func openFunded(_ tenant: UInt64, credits amount: Millicredits, keys: KeySource, overdraft: Millicredits = .zero,
                    sourceLocation: SourceLocation = #_sourceLocation) async throws -> AccountID {
        let id = TenantID(tenant)
        let account = AccountID(tenant: id, number: 0)
        try await succeed(.openTenant(id, .individual), keys: keys, sourceLocation: sourceLocation)
        try await succeed(.openAccount(account, .standard(overdraft: overdraft)), keys: keys, sourceLocation: sourceLocation)
        if amount > .zero {
            try await succeed(.grant(account, GrantTerms(kind: .purchase, amount: amount)), keys: keys, sourceLocation: sourceLocation)
        }
        return account
    }

    func expectInvariants(sourceLocation: SourceLocation = #_sourceLocation) async {
        let problems = await invariantViolations()
        #expect(problems.isEmpty, "invariants broken:\n\(problems.joined(separator: "\n"))", sourceLocation: sourceLocation)
    }
}

/// An environment variable (Glibc's getenv, without Foundation).
func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}


extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}
