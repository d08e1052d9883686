import ArgumentParser
import CreditEngine
#if canImport(Glibc)
import Glibc
#endif

/// Durable load for crash drills: debits random accounts as fast as it can and prints one
/// JSON line per acknowledged debit, so an outside test can kill it and check that every
/// acknowledged debit survived recovery exactly once.
struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Durable debit load; prints one JSON line per acknowledged debit (meant to be killed).",
        discussion: """
            Opens (or creates) the engine in --data, funds --accounts accounts on first start \
            (tenant i, account t<i>/a0, 1,000,000 credits each), then debits random accounts \
            (1-1,000 mc) from --concurrency tasks until --seconds pass or the process is killed. \
            Each acknowledged debit prints {"key": ..., "account": ..., "amount_mc": ...} on \
            stdout, written at once (no buffering). Progress and recovery notes go to stderr.
            """
    )

    @OptionGroup var storage: StorageOptions
    @Option(help: "Number of funded accounts, 1...\(OptionLimits.accountsMax).") var accounts = 10_000
    @Option(help: "Stop after this many seconds, \(OptionLimits.durationSecondsMin)...\(OptionLimits.durationSecondsMax) (default: run until killed).")
    var seconds: Double?
    @Option(help: "Concurrent tasks issuing single-command debits, 1...\(OptionLimits.concurrencyTasksMax).") var concurrency = 64
    @Option(help: "Take a shard snapshot after this many records, 1...\(OptionLimits.snapshotEveryRecordsMax) (small values exercise snapshots in drills).")
    var snapshotEvery = 200_000

    func validate() throws {
        try checkRange("--accounts", accounts, in: 1 ... OptionLimits.accountsMax, "accounts")
        if let seconds { try checkRange("--seconds", seconds, in: OptionLimits.durationSecondsMin ... OptionLimits.durationSecondsMax, "seconds") }
        try checkRange("--concurrency", concurrency, in: 1 ... OptionLimits.concurrencyTasksMax, "tasks")
        try checkRange("--snapshot-every", snapshotEvery, in: 1 ... OptionLimits.snapshotEveryRecordsMax, "records")
    }

    static let creditsPerAccount: Int64 = 1_000_000

    func run() async throws {
        let engine = try await storage.open(snapshotEveryRecords: snapshotEvery)
        try await fund(engine, accounts: accounts)
        printError("load: \(accounts) accounts funded; debiting")
        // A fresh random prefix per run: keys never repeat across restarts of the same directory.
        var system = SystemRandomNumberGenerator()
        let run = system.next() as UInt64
        let deadline = seconds.map { monotonicNanos() + UInt64($0 * 1e9) }
        let accounts = UInt64(self.accounts)
        await withTaskGroup(of: Void.self) { group in
            for task in 0 ..< concurrency {
                group.addTask {
                    var random = SplitMix64(seed: run ^ UInt64(task) &* 0x9E37_79B9_7F4A_7C15)
                    var sequence: UInt64 = 0
                    while deadline.map({ monotonicNanos() < $0 }) ?? true {
                        sequence += 1
                        let account = AccountID(tenant: TenantID(random.next() % accounts), number: 0)
                        let amount = Int64(1 + random.next() % 1_000)
                        let key = IdempotencyKey(high: run, low: UInt64(task) << 40 | sequence)
                        let outcome = await engine.execute(Command(key: key, .debit(account, Millicredits(amount), scope: .unscoped)))
                        switch outcome {
                        case .success:
                            writeLine("{\"key\": \"\(key)\", \"account\": \"\(account)\", \"amount_mc\": \(amount)}")
                        case .failure(.logStopped):
                            printError("load: the log stopped; exiting")
                            Glibc.exit(3)
                        case .failure:
                            break // e.g. an account ran out; not acknowledged as a debit
                        }
                    }
                }
            }
        }
        await engine.close()
    }

    /// Opens and funds accounts 0..<count that are not yet funded (a previous run may have
    /// been killed while funding). Keys are derived from the account, so a repeat is a retry.
    static func fund(_ engine: CreditEngine, accounts count: Int) async throws {
        let chunk = 4_096
        var start = 0
        let reopened = engine.recoveryReports.contains { $0.lastLSN > 0 }
        while start < count {
            let end = min(start + chunk, count)
            var commands: [Command] = []
            for index in start ..< end {
                let tenant = TenantID(UInt64(index))
                let account = AccountID(tenant: tenant, number: 0)
                var needsOpen = true
                var needsGrant = true
                if reopened, let balance = await engine.balance(of: account) {
                    needsOpen = false
                    needsGrant = balance.granted == .zero
                }
                if needsOpen {
                    commands.append(Command(key: IdempotencyKey(deriving: "load/open-tenant/\(index)"), .openTenant(tenant, .individual)))
                    commands.append(Command(key: IdempotencyKey(deriving: "load/open-account/\(index)"), .openAccount(account, .standard)))
                }
                if needsGrant {
                    commands.append(Command(key: IdempotencyKey(deriving: "load/grant/\(index)"),
                                            .grant(account, GrantTerms(kind: .promotional, amount: try .credits(creditsPerAccount)))))
                }
            }
            for outcome in await engine.execute(batch: commands) {
                switch outcome {
                case .success, .failure(.tenantExists), .failure(.accountExists): break
                case .failure(let error): throw ValidationError("funding failed: \(error)")
                }
            }
            start = end
        }
    }
}

extension Load {
    func fund(_ engine: CreditEngine, accounts: Int) async throws { try await Self.fund(engine, accounts: accounts) }
}
