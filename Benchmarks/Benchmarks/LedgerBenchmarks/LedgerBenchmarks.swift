/// Micro-benchmarks of the core state machine (`Ledger.record(_:at:)`, single-threaded, no
/// actors and no log): the cost of one command on a warm ledger, in time and in heap
/// allocations. Each benchmark keeps its ledger between iterations in a steady state, so
/// every iteration measures the same work. README.md lists what each one measures.
import Benchmark
@_spi(Plumbing) import CreditCore
import LedgerFixtures

let benchmarks: @Sendable () -> Void = {
    Fixtures.useDefaultConfiguration()
    debitFromOneGrant()
    debitInBatches()
    debitAcrossGrants()
    reserveThenSettle()
    retryOfASeenKey()
}

/// A ledger with one funded account and the keys of its next commands.
final class OneAccount {
    let ledger: Stash<Ledger>
    let account: AccountID
    var keys: KeySequence

    init(stream: UInt64) {
        var keys = KeySequence(stream: stream)
        let (ledger, accounts) = Fixtures.fundedLedger(accounts: 1, creditsEach: 1_000_000_000_000, keys: &keys)
        self.ledger = Stash(ledger)
        account = accounts[0]
        self.keys = keys
    }
}

/// A debit of 1 credit, each with a new key, from an account with one grant: the command
/// path a charge takes (fingerprint, idempotency check and record, burn, entry, outcome).
func debitFromOneGrant() {
    Benchmark("Ledger: debit, one grant") { benchmark, fixture in
        var ledger = fixture.ledger.take()
        var keys = fixture.keys
        let account = fixture.account
        let amount = Millicredits(1_000)
        var rejected = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let command = Command(key: keys.next(), .debit(account, amount, scope: .unscoped))
            if case .failure = ledger.record(command, at: Fixtures.now).outcome { rejected += 1 }
        }
        benchmark.stopMeasurement()
        fixture.keys = keys
        fixture.ledger.put(ledger)
        if rejected > 0 { benchmark.error("\(rejected) debits were rejected") }
    } setup: {
        OneAccount(stream: 1)
    }
}

/// The same debits through the batch entry point (`Ledger.record(batch:)`, which the
/// engine's shards use for `execute(batch:)`): 1,000 per call, built before the measurement.
func debitInBatches() {
    Benchmark("Ledger: debit, one grant, batches of 1,000") { benchmark, fixture in
        var ledger = fixture.ledger.take()
        var keys = fixture.keys
        let account = fixture.account
        let amount = Millicredits(1_000)
        let batch = benchmark.scaledIterations.map { _ in
            Command(key: keys.next(), .debit(account, amount, scope: .unscoped))
        }
        benchmark.startMeasurement()
        let outcomes = ledger.record(batch: batch, at: Fixtures.now, collectingEntries: false).outcomes
        benchmark.stopMeasurement()
        let rejected = outcomes.count { if case .failure = $0 { true } else { false } }
        withExtendedLifetime(batch) {}
        fixture.keys = keys
        fixture.ledger.put(ledger)
        if rejected > 0 { benchmark.error("\(rejected) debits were rejected") }
    } setup: {
        OneAccount(stream: 7)
    }
}

/// Accounts with 50 grants each, of different priorities and expiries; each debit takes
/// exactly the first `grantsSpanned` grants in burn order. Before each iteration (not
/// measured) the previous iteration's debits are refunded, which puts the credits back into
/// the same grants, so every iteration debits the same state.
final class ManyGrants {
    /// One debit per account per iteration.
    static let accountCount = 1_000
    static let grantsPerAccount = 50
    static let grantsSpanned = 5
    static let grantCredits: Int64 = 10
    static var debitAmount: Millicredits { Millicredits(Int64(grantsSpanned) * grantCredits * Millicredits.perCredit) }

    let ledger: Stash<Ledger>
    let accounts: [AccountID]
    var debitKeys = KeySequence(stream: 3)
    var refundKeys = KeySequence(stream: 4)
    /// Where the keys of the last iteration's debits started (nil before the first).
    var lastDebitKeys: KeySequence?

    init() {
        var keys = KeySequence(stream: 2)
        let opened = Fixtures.openAccounts(Self.accountCount, keys: &keys)
        var commands = opened.commands
        // Priorities 100, 90, 110 in turn, each grant expiring a day after the one before: the
        // burn order (priority, then expiry) starts with grants 1, 4, 7, 10, 13.
        let priorities: [UInt8] = [100, 90, 110]
        for account in opened.accounts {
            for grant in 0 ..< Self.grantsPerAccount {
                let terms = GrantTerms(kind: .purchase,
                                       amount: Millicredits(Self.grantCredits * Millicredits.perCredit),
                                       expiresAt: Fixtures.now.adding(millis: Int64(grant + 1) * Fixtures.dayMillis),
                                       priority: priorities[grant % priorities.count],
                                       costBasisNanoUSDPerCredit: 10_000_000)
                commands.append(Command(key: keys.next(), .grant(account, terms)))
            }
        }
        var ledger = Ledger()
        Fixtures.apply(commands, to: &ledger)
        self.ledger = Stash(ledger)
        accounts = opened.accounts
    }
}

/// A debit that burns down 5 of an account's 50 grants.
func debitAcrossGrants() {
    Benchmark("Ledger: debit, burn-down across 5 of 50 grants") { benchmark, fixture in
        var ledger = fixture.ledger.take()
        let accounts = fixture.accounts
        guard accounts.count == benchmark.scaledIterations.count else {
            fixture.ledger.put(ledger)
            benchmark.error("one account per scaled iteration: \(accounts.count) accounts")
            return
        }
        if var lastKeys = fixture.lastDebitKeys {
            var refundKeys = fixture.refundKeys
            for account in accounts {
                let refund = Command(key: refundKeys.next(), .refund(account, debit: lastKeys.next(), ManyGrants.debitAmount))
                if case .failure(let error) = ledger.record(refund, at: Fixtures.now).outcome {
                    fatalError("the refund that restores the grants was rejected: \(error)")
                }
            }
            fixture.refundKeys = refundKeys
        }
        var keys = fixture.debitKeys
        fixture.lastDebitKeys = keys
        let amount = ManyGrants.debitAmount
        var rejected = 0
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            let command = Command(key: keys.next(), .debit(accounts[index], amount, scope: .unscoped))
            if case .failure = ledger.record(command, at: Fixtures.now).outcome { rejected += 1 }
        }
        benchmark.stopMeasurement()
        let spanned = ledger.recentEntries.newest?.movements.count ?? 0
        fixture.debitKeys = keys
        fixture.ledger.put(ledger)
        if rejected > 0 { benchmark.error("\(rejected) debits were rejected") }
        if spanned != ManyGrants.grantsSpanned { benchmark.error("a debit spanned \(spanned) grants") }
    } setup: {
        ManyGrants()
    }
}

/// A reserve of 2 credits and the settle of that hold at 1.5 credits (the streaming-call
/// pattern), each with a new key: one operation is both commands.
func reserveThenSettle() {
    Benchmark("Ledger: reserve + settle (one hold, two commands)") { benchmark, fixture in
        var ledger = fixture.ledger.take()
        var keys = fixture.keys
        let account = fixture.account
        let reserved = Millicredits(2_000)
        let actual = Millicredits(1_500)
        var rejected = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let reserve = Command(key: keys.next(), .reserve(account, reserved, timeoutMillis: 60_000, scope: .unscoped))
            guard case .success(let receipt) = ledger.record(reserve, at: Fixtures.now).outcome, let hold = receipt.hold else {
                rejected += 1
                continue
            }
            let settle = Command(key: keys.next(), .settle(hold, actual: actual))
            if case .failure = ledger.record(settle, at: Fixtures.now).outcome { rejected += 1 }
        }
        benchmark.stopMeasurement()
        let openHolds = ledger.openHoldCount
        fixture.keys = keys
        fixture.ledger.put(ledger)
        if rejected > 0 { benchmark.error("\(rejected) reserves or settles were rejected") }
        if openHolds != 0 { benchmark.error("\(openHolds) holds left open") }
    } setup: {
        OneAccount(stream: 5)
    }
}

/// Debits the ledger has already applied, sent again: each is answered from the idempotency
/// table (the fingerprint matches, the original outcome is returned, nothing changes).
final class SeenKeys {
    /// Fewer than half the default key budget (`LedgerConfiguration.idempotencyKeysMaxDefault`),
    /// so every one of them is remembered whatever the generations' phase.
    static let retryCount = 30_000

    let ledger: Stash<Ledger>
    let retries: [Command]
    var nextRetry = 0

    init() {
        var keys = KeySequence(stream: 6)
        let funded = Fixtures.fundedLedger(accounts: 1_000, creditsEach: 1_000_000, keys: &keys)
        var ledger = funded.ledger
        retries = (0 ..< Self.retryCount).map { index in
            Command(key: keys.next(), .debit(funded.accounts[index % funded.accounts.count], Millicredits(1_000),
                                             scope: .unscoped))
        }
        Fixtures.apply(retries, to: &ledger)
        self.ledger = Stash(ledger)
    }
}

/// A retry of a debit whose key the ledger has seen (30,000 remembered; the retries cycle
/// through them).
func retryOfASeenKey() {
    Benchmark("Ledger: retry of a seen key (idempotent replay)") { benchmark, fixture in
        var ledger = fixture.ledger.take()
        let retries = fixture.retries
        var next = fixture.nextRetry
        let replaysBefore = ledger.replayCount
        let sequenceBefore = ledger.nextSequence
        var rejected = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            if case .failure = ledger.record(retries[next], at: Fixtures.now).outcome { rejected += 1 }
            next = next + 1 == retries.count ? 0 : next + 1
        }
        benchmark.stopMeasurement()
        let replayed = ledger.replayCount - replaysBefore
        let applied = ledger.nextSequence - sequenceBefore
        fixture.nextRetry = next
        fixture.ledger.put(ledger)
        if rejected > 0 { benchmark.error("\(rejected) retries were answered with a rejection") }
        if replayed != UInt64(benchmark.scaledIterations.count) || applied != 0 {
            benchmark.error("\(replayed) retries answered from the table, \(applied) applied as new commands")
        }
    } setup: {
        SeenKeys()
    }
}
