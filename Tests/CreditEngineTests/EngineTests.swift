import CreditEngine
import Testing

@Suite("CreditEngine: routing, batches, statements, time-outs, entry hook")
struct EngineTests {
    @Test("a tenant always routes to the same shard, and tenants spread over all shards")
    func routingIsStableAndSpread() {
        let engine = makeEngine(shards: 8)
        var used = Set<Int>()
        for raw in UInt64(0) ..< 2_000 {
            let tenant = TenantID(raw)
            let shard = engine.shardIndex(for: tenant)
            #expect((0 ..< 8).contains(shard))
            #expect(engine.shardIndex(for: tenant) == shard)
            #expect(CreditEngine.shardIndex(for: tenant, shardCount: 8) == shard)
            used.insert(shard)
        }
        #expect(used.count == 8)
        #expect(CreditEngine.shardIndex(for: TenantID(42), shardCount: 1) == 0)
        #expect(makeEngine(shards: 8).shardIndex(for: TenantID(12_345)) == engine.shardIndex(for: TenantID(12_345)),
                "routing does not depend on the engine instance")
    }

    @Test("every command of a tenant, its accounts and holds is applied on the tenant's shard")
    func commandsOfATenantLandOnItsShard() async throws {
        let recorder = EntryRecorder()
        let engine = makeEngine(shards: 4, recorder: recorder)
        let keys = KeySource()
        for tenant in UInt64(1) ... 24 {
            let account = try await engine.openFunded(tenant, credits: credits(100), keys: keys)
            let hold = try #require(try await engine.succeed(.reserve(account, credits(5), timeoutMillis: 60_000, scope: .unscoped), keys: keys).hold)
            try await engine.succeed(.settle(hold, actual: credits(3)), keys: keys)
            _ = await engine.execute(Command(key: keys.next(), .debit(account, credits(1_000), scope: .unscoped)))
        }
        let entries = recorder.all
        #expect(entries.count == 24 * 6)
        for (shard, entry) in entries {
            #expect(shard == engine.shardIndex(for: entry.tenant), "entry \(entry.sequence) of \(entry.tenant)")
            if let account = entry.account { #expect(account.tenant == entry.tenant) }
        }
        #expect(Set(entries.map(\.shard)).count > 1, "24 tenants use more than one shard")
        await engine.expectInvariants()
    }

    @Test("execute returns the outcome, and the engine's views show its effect")
    func executeAndViews() async throws {
        let engine = makeEngine()
        let keys = KeySource()
        let account = try await engine.openFunded(7, credits: credits(50), keys: keys)
        let receipt = try await engine.succeed(.debit(account, credits(20), scope: .unscoped), keys: keys)
        #expect(receipt.availableAfter == credits(30))
        #expect(await engine.balance(of: account)?.available == credits(30))
        #expect(await engine.available(of: account) == credits(30))
        #expect(await engine.balance(of: AccountID(tenant: TenantID(8), number: 0)) == nil)
        let hold = try #require(try await engine.succeed(.reserve(account, credits(10), timeoutMillis: 60_000, scope: .unscoped), keys: keys).hold)
        #expect(await engine.hold(hold)?.amount == credits(10))
        #expect(await engine.organisation(TenantID(7)) == nil)
        let failure = await engine.execute(Command(key: keys.next(), .debit(account, credits(21), scope: .unscoped)))
        #expect(failure == .failure(.insufficientCredits(available: credits(20), requested: credits(21))))
        let statistics = await engine.statistics()
        #expect(statistics.tenants == 1 && statistics.accounts == 1 && statistics.openHolds == 1)
        #expect(statistics.entries == 6)
    }

    @Test("a retry through the engine returns the original outcome and is counted as a replay")
    func engineRetryReturnsOriginalOutcome() async throws {
        let recorder = EntryRecorder()
        let engine = makeEngine(recorder: recorder)
        let keys = KeySource()
        let account = try await engine.openFunded(3, credits: credits(50), keys: keys)
        let command = Command(key: keys.next(), .debit(account, credits(10), scope: .unscoped))
        let first = await engine.execute(command)
        let digests = await engine.stateDigests()
        let second = await engine.execute(command)
        #expect(first == second)
        #expect(await engine.stateDigests() == digests)
        let conflict = await engine.execute(Command(key: command.key, .debit(account, credits(11), scope: .unscoped)))
        #expect(conflict == .failure(.idempotencyConflict(command.key)))
        #expect(await engine.balance(of: account)?.available == credits(40))
        let statistics = await engine.statistics()
        #expect(statistics.replays == 1 && statistics.conflicts == 1)
        #expect(recorder.all.count == 4, "retries and conflicts make no entry")
    }

    /// Opens 16 funded tenants, debits them in rounds until some run out, then adds a debit
    /// of an unknown account, a retry and a key conflict.
    static func mixedBatch() -> [Command] {
        var commands: [Command] = []
        var key: UInt64 = 0
        func add(_ action: Action) {
            key += 1
            commands.append(Command(key: IdempotencyKey(high: 0xBA7C, low: key), action))
        }
        for tenant in UInt64(1) ... 16 {
            let account = AccountID(tenant: TenantID(tenant), number: 0)
            add(.openTenant(TenantID(tenant), .individual))
            add(.openAccount(account, .standard))
            add(.grant(account, GrantTerms(kind: .purchase, amount: credits(Int64(tenant) * 10))))
        }
        for round in Int64(1) ... 6 {
            for tenant in UInt64(1) ... 16 {
                add(.debit(AccountID(tenant: TenantID(tenant), number: 0), credits(round * 4), scope: .unscoped))
            }
        }
        add(.debit(AccountID(tenant: TenantID(99), number: 0), credits(1), scope: .unscoped))
        commands.append(commands[3 * 16]) // a retry inside the batch
        commands.append(Command(key: commands[3 * 16].key, .freeze(AccountID(tenant: TenantID(1), number: 0)))) // a conflict
        return commands
    }

    @Test("a batch applied in turns (in memory, and strict on a simulated disk) equals the batch applied at once",
          arguments: [false, true])
    func turnsEqualOneBatch(durable: Bool) async throws {
        let clock = ManualClock(engineStart)
        let reference = CreditEngine(configuration: EngineConfiguration(shardCount: 4), clock: clock)
        let commands = Self.mixedBatch()
        let expected = await reference.execute(batch: commands)
        // Turns of 5 commands: each shard's share (about a quarter) takes several.
        var configuration = durable ? durableConfiguration(disk: LightDisk(), shards: 4) : EngineConfiguration(shardCount: 4)
        configuration.schedule = SchedulePolicy(notesPerTurn: 5)
        let engine = durable ? try await CreditEngine.open(configuration: configuration, clock: clock)
                             : CreditEngine(configuration: configuration, clock: clock)
        let inTurns = await engine.execute(turnsOf: commands)
        #expect(inTurns == expected)
        #expect(await engine.stateDigests() == reference.stateDigests())
        await engine.expectInvariants()
        guard durable else { return }
        // Every turn's records are in the log: a restart recovers the same state.
        await engine.close()
        let reopened = try #require(await openRecording(configuration, clock: clock, "after turns"))
        #expect(await reopened.stateDigests() == reference.stateDigests())
        await reopened.close()
    }

    @Test("a batch returns outcomes in input order, equal to applying the commands one by one")
    func batchEqualsOneByOne() async throws {
        let clock = ManualClock(engineStart)
        let batchEngine = makeEngine(shards: 4, clock: clock)
        let singleEngine = makeEngine(shards: 4, clock: clock)
        let commands = Self.mixedBatch()
        let batched = await batchEngine.execute(batch: commands)
        var single: [Outcome] = []
        for command in commands { single.append(await singleEngine.execute(command)) }
        #expect(batched.count == commands.count)
        #expect(batched == single)
        #expect(await batchEngine.stateDigests() == singleEngine.stateDigests())

        // Outcomes are in input order: each one belongs to its command.
        for (command, outcome) in zip(commands, batched) {
            switch (command.action, outcome) {
            case (.grant, .success(let receipt)): #expect(receipt.grant != nil)
            case (.debit(let account, let amount, _), .success(let receipt)): #expect(receipt.amount == amount && account.tenant.rawValue <= 16)
            case (.debit(let account, _, _), .failure(let error)):
                if account.tenant == TenantID(99) { #expect(error == .unknownAccount(account)) } else {
                    guard case .insufficientCredits = error else { Issue.record("unexpected \(error)"); continue }
                }
            case (.openTenant, .success), (.openAccount, .success): break
            case (.freeze, .failure(let error)): #expect(error == .idempotencyConflict(command.key))
            default: Issue.record("unexpected outcome \(outcome) for \(command.action)")
            }
        }
        // Tenant 16 had 160 credits: debits of 4, 8, 12, 16, 20, 24 total 84, all succeed.
        #expect(await batchEngine.balance(of: AccountID(tenant: TenantID(16), number: 0))?.available == credits(76))
        // Tenant 1 had 10 credits: only the first debit of 4 fits, then 8 is too much, then nothing more.
        #expect(await batchEngine.balance(of: AccountID(tenant: TenantID(1), number: 0))?.available == credits(6))
        #expect(await batchEngine.execute(batch: []).isEmpty)
        await batchEngine.expectInvariants()
    }

    @Test("commands of one batch on one shard share a timestamp")
    func batchSharesTimestamp() async throws {
        let recorder = EntryRecorder()
        let clock = ManualClock(engineStart)
        let engine = makeEngine(shards: 1, clock: clock, recorder: recorder)
        clock.advance(millis: 5_000)
        _ = await engine.execute(batch: (1 ... 5).map { Command(key: IdempotencyKey(high: 1, low: $0), .openTenant(TenantID($0), .individual)) })
        clock.advance(millis: 1)
        _ = await engine.execute(Command(key: IdempotencyKey(high: 2, low: 1), .openTenant(TenantID(6), .individual)))
        let times = recorder.all.map(\.entry.time)
        #expect(times == Array(repeating: engineStart.adding(millis: 5_000), count: 5) + [engineStart.adding(millis: 5_001)])
    }

    @Test("recentStatement lists an account's recent entries, oldest first, within the window")
    func recentStatementListsAccountEntries() async throws {
        let engine = makeEngine(shards: 1, recentEntries: 10)
        let keys = KeySource()
        let alice = try await engine.openFunded(1, credits: credits(100), keys: keys)   // 3 entries
        let bob = try await engine.openFunded(2, credits: credits(100), keys: keys)     // 3 entries
        try await engine.succeed(.debit(alice, credits(1), scope: .unscoped), keys: keys)
        try await engine.succeed(.debit(bob, credits(2), scope: .unscoped), keys: keys)
        _ = await engine.execute(Command(key: keys.next(), .debit(alice, credits(500), scope: .unscoped)))
        try await engine.succeed(.adjust(alice, credits(3), reason: "goodwill"), keys: keys)
        // 10 entries: the window holds them all; alice's tenant-opened entry names no account.
        var statement = await engine.recentStatement(of: alice)
        #expect(statement.map(\.kind) == [.accountOpened, .granted, .debited, .debited, .adjusted])
        #expect(statement.map(\.sequence) == statement.map(\.sequence).sorted())
        #expect(statement[3].error == .insufficientCredits(available: credits(99), requested: credits(500)))
        #expect(statement[4].reason == "goodwill")
        #expect(statement.last?.availableAfter == credits(102))
        #expect(await engine.recentStatement(of: bob).map(\.kind) == [.accountOpened, .granted, .debited])
        // Two more entries push the two oldest (tenant 1 opened, alice's account opened) out.
        try await engine.succeed(.debit(bob, credits(1), scope: .unscoped), keys: keys)
        try await engine.succeed(.debit(bob, credits(1), scope: .unscoped), keys: keys)
        statement = await engine.recentStatement(of: alice)
        #expect(statement.map(\.kind) == [.granted, .debited, .debited, .adjusted])
        #expect(await engine.recentStatement(of: AccountID(tenant: TenantID(9), number: 0)).isEmpty)
    }

    @Test("a member's spending appears in both the member's and the pool's statement")
    func memberStatementAndPoolStatement() async throws {
        let engine = makeEngine()
        let keys = KeySource()
        let org = TenantID(500)
        let pool = AccountID(tenant: org, number: 0)
        let member = AccountID(tenant: org, number: 1)
        try await engine.succeed(.openTenant(org, .organisation(departments: [DepartmentTerms(id: DepartmentID(1), costCentre: "CC")])), keys: keys)
        try await engine.succeed(.grant(pool, GrantTerms(kind: .enterpriseContract, amount: credits(100))), keys: keys)
        try await engine.succeed(.openAccount(member, .member(department: DepartmentID(1), limitPerPeriod: credits(10))), keys: keys)
        try await engine.succeed(.debit(member, credits(4), scope: .unscoped), keys: keys)
        let memberStatement = await engine.recentStatement(of: member)
        #expect(memberStatement.map(\.kind) == [.accountOpened, .debited])
        #expect(memberStatement.last?.availableAfter == credits(6))
        let poolStatement = await engine.recentStatement(of: pool)
        #expect(poolStatement.map(\.kind) == [.tenantOpened, .granted, .debited])
        #expect(await engine.organisation(org)?.members.first?.usage.spent == credits(4))
    }

    @Test("timeOutHolds releases exactly the holds past their deadline on the manual clock")
    func timeOutHoldsWithManualClock() async throws {
        let clock = ManualClock(engineStart)
        let engine = makeEngine(shards: 4, clock: clock)
        let keys = KeySource()
        let alice = try await engine.openFunded(1, credits: credits(100), keys: keys)
        let bob = try await engine.openFunded(2, credits: credits(100), keys: keys)
        let short = try #require(try await engine.succeed(.reserve(alice, credits(30), timeoutMillis: 30_000, scope: .unscoped), keys: keys).hold)
        let long = try #require(try await engine.succeed(.reserve(bob, credits(40), timeoutMillis: 60_000, scope: .unscoped), keys: keys).hold)
        let settled = try #require(try await engine.succeed(.reserve(bob, credits(5), timeoutMillis: 1_000, scope: .unscoped), keys: keys).hold)
        try await engine.succeed(.settle(settled, actual: credits(5)), keys: keys)

        clock.advance(millis: 29_999)
        #expect(await engine.timeOutHolds() == 0)
        #expect(await engine.hold(short) != nil)
        #expect(await engine.available(of: alice) == credits(70))

        clock.advance(millis: 1)
        #expect(await engine.timeOutHolds() == 1)
        #expect(await engine.hold(short) == nil)
        #expect(await engine.hold(long) != nil)
        #expect(await engine.available(of: alice) == credits(100))
        #expect(await engine.recentStatement(of: alice).last?.kind == .holdTimedOut)
        #expect(await engine.timeOutHolds() == 0, "a timed-out hold is released once")
        let late = await engine.execute(Command(key: keys.next(), .settle(short, actual: credits(1))))
        #expect(late == .failure(.holdNotOpen(short)))

        clock.advance(millis: 24 * 3_600_000)
        #expect(await engine.timeOutHolds() == 1)
        #expect(await engine.available(of: bob) == credits(95))
        #expect(await engine.statistics().openHolds == 0)
        await engine.expectInvariants()
    }

    @Test("onEntry receives every entry exactly once, in sequence order per shard")
    func onEntryReceivesEveryEntryInOrder() async throws {
        let recorder = EntryRecorder()
        let engine = makeEngine(shards: 3, recorder: recorder)
        let keys = KeySource()
        var retries: [Command] = []
        for tenant in UInt64(1) ... 30 {
            let account = try await engine.openFunded(tenant, credits: credits(20), keys: keys)
            let debit = Command(key: keys.next(), .debit(account, credits(Int64(tenant % 7) + 1), scope: .unscoped))
            _ = await engine.execute(debit)
            retries.append(debit)
            _ = await engine.execute(Command(key: keys.next(), .debit(account, credits(25), scope: .unscoped)))
        }
        _ = await engine.execute(batch: retries) // retries make no entry
        _ = await engine.execute(batch: (1 ... 30).map { Command(key: keys.next(), .freeze(AccountID(tenant: TenantID($0), number: 0))) })
        let entries = recorder.all
        let statistics = await engine.statistics()
        #expect(UInt64(entries.count) == statistics.entries)
        #expect(entries.count == 30 * 6)
        #expect(statistics.replays == 30)
        for shard in 0 ..< 3 {
            let sequences = entries.filter { $0.shard == shard }.map(\.entry.sequence)
            #expect(sequences == Array(1 ... UInt64(sequences.count)), "shard \(shard) entries arrive in sequence order without gaps")
        }
        #expect(Set(entries.map(\.entry.key)).count == entries.count, "each key made one entry")
    }

    @Test("a statement built from onEntry reconciles with the balance")
    func statementFromEntriesReconcilesWithBalance() async throws {
        let recorder = EntryRecorder()
        let clock = ManualClock(engineStart)
        let engine = makeEngine(shards: 2, clock: clock, recorder: recorder)
        let keys = KeySource()
        let account = try await engine.openFunded(11, credits: .zero, keys: keys, overdraft: credits(15))
        let noise = try await engine.openFunded(12, credits: credits(1_000), keys: keys)
        var reservedByKey: [IdempotencyKey: Millicredits] = [:]
        var holdReserved: [HoldID: Millicredits] = [:]

        func run(_ action: Action) async -> Outcome {
            let command = Command(key: keys.next(), action)
            let outcome = await engine.execute(command)
            if case .settle(let hold, _) = action { reservedByKey[command.key] = holdReserved[hold] }
            if case .success(let receipt) = outcome, case .reserve(_, let amount, _, _) = action, let hold = receipt.hold {
                holdReserved[hold] = amount
            }
            _ = await engine.execute(Command(key: keys.next(), .debit(noise, credits(1), scope: .unscoped)))
            return outcome
        }
        _ = await run(.grant(account, GrantTerms(kind: .monthlyAllocation, amount: credits(100), expiresAt: engineStart.adding(millis: 40 * 86_400_000))))
        _ = await run(.grant(account, GrantTerms(kind: .purchase, amount: credits(50))))
        let debitKey = keys.next()
        _ = await engine.execute(Command(key: debitKey, .debit(account, credits(30), scope: .unscoped)))
        let below = try #require(try await run(.reserve(account, credits(20), timeoutMillis: 60_000, scope: .unscoped)).get().hold)
        let above = try #require(try await run(.reserve(account, credits(10), timeoutMillis: 60_000, scope: .unscoped)).get().hold)
        let released = try #require(try await run(.reserve(account, credits(7), timeoutMillis: 60_000, scope: .unscoped)).get().hold)
        _ = try #require(try await run(.reserve(account, credits(9), timeoutMillis: 5_000, scope: .unscoped)).get().hold)
        _ = try await run(.settle(below, actual: credits(12))).get()
        _ = try await run(.settle(above, actual: credits(16))).get()
        _ = try await run(.release(released)).get()
        _ = await run(.debit(account, credits(500), scope: .unscoped)) // rejected
        _ = try await run(.refund(account, debit: debitKey, credits(8))).get()
        _ = try await run(.adjust(account, credits(-5), reason: "correction")).get()
        _ = try await run(.adjust(account, credits(2), reason: "goodwill")).get()
        clock.advance(millis: 5_000)
        #expect(await engine.timeOutHolds() == 1)
        _ = try await run(.reserve(account, credits(1), timeoutMillis: 60_000, scope: .unscoped)).get() // stays open
        _ = try await run(.debit(account, credits(100), scope: .unscoped)).get() // into the overdraft

        let statement = recorder.statement(of: account)
        #expect(statement == (await engine.recentStatement(of: account)), "the window holds the full statement")
        var running = Millicredits.zero
        var added = Millicredits.zero, removed = Millicredits.zero, held = Millicredits.zero
        for entry in statement where entry.error == nil {
            switch entry.kind {
            case .granted, .refunded: running = try running.adding(entry.amount); added = try added.adding(entry.amount)
            case .adjusted:
                running = try running.adding(entry.amount)
                if entry.amount > .zero { added = try added.adding(entry.amount) } else { removed = try removed.subtracting(entry.amount) }
            case .debited: running = try running.subtracting(entry.amount); removed = try removed.adding(entry.amount)
            case .reserved: running = try running.subtracting(entry.amount); held = try held.adding(entry.amount)
            case .released, .holdTimedOut: running = try running.adding(entry.amount); held = try held.subtracting(entry.amount)
            case .settled:
                let reserved = try #require(reservedByKey[entry.key])
                running = try running.adding(reserved).subtracting(entry.amount)
                held = try held.subtracting(reserved)
                removed = try removed.adding(entry.amount)
            case .accountOpened: break
            default: Issue.record("unexpected \(entry.kind) in the statement")
            }
            #expect(entry.availableAfter == running, "running balance after entry \(entry.sequence) (\(entry.kind))")
        }
        let balance = try #require(await engine.balance(of: account))
        #expect(balance.available == running)
        #expect(balance.held == held && held == credits(1))
        #expect(try balance.granted.subtracting(balance.consumed) == added.subtracting(removed))
        #expect(balance.debt > .zero && balance.available < .zero, "the scenario ends in the overdraft")
        #expect(statement.contains { $0.error != nil })
        await engine.expectInvariants()
    }

    @Test("the manual clock only moves forward when told; the system clock reads real time")
    func clocks() {
        let clock = ManualClock(Timestamp(millisSinceEpoch: 1_000))
        #expect(clock.now() == Timestamp(millisSinceEpoch: 1_000))
        clock.advance(millis: 500)
        #expect(clock.now() == Timestamp(millisSinceEpoch: 1_500))
        clock.set(Timestamp(millisSinceEpoch: 9_000))
        #expect(clock.now() == Timestamp(millisSinceEpoch: 9_000))
        let system = SystemClock()
        let first = system.now()
        #expect(first > Timestamp(millisSinceEpoch: 1_700_000_000_000))
        #expect(system.now() >= first)
    }
}
