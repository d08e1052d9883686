import CreditEngine
import Synchronization
import DurabilityTestSupport
import Testing
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// The first outcome callers were told for each key, with its command.
private final class Acknowledgements: Sendable {
    private let state = Mutex<[IdempotencyKey: (command: Command, outcome: Outcome)]>([:])

    /// Notes an acknowledged outcome; returns the earlier one of the same key, if any.
    func note(_ command: Command, _ outcome: Outcome) -> (command: Command, outcome: Outcome)? {
        state.withLock { acknowledged in
            if let earlier = acknowledged[command.key] { return earlier }
            if case .failure(.idempotencyConflict) = outcome { return nil }
            acknowledged[command.key] = (command, outcome)
            return nil
        }
    }

    var all: [(command: Command, outcome: Outcome)] { state.withLock { Array($0.values) } }
}

/// When to cut the power: after the `at`-th acknowledgement, once.
private final class PowerSwitch: Sendable {
    let at: Int
    let seed: UInt64
    let disk: SimulatedFileSystem
    private let acknowledgements = Atomic<Int>(0)
    private let fired = Atomic<Bool>(false)

    init(at: Int, seed: UInt64, disk: SimulatedFileSystem) {
        self.at = at
        self.seed = seed
        self.disk = disk
    }

    func acknowledged() {
        if acknowledgements.add(1, ordering: .relaxed).newValue >= at { cut() }
    }

    func cut() {
        if fired.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged {
            disk.crash(seed: seed)
        }
    }
}

/// A ledger configuration whose idempotency window outlasts every test (retries after
/// recovery must find their keys whatever the clock did).
private let longMemory = LedgerConfiguration(idempotencyKeysMax: 1 << 16, idempotencyWindowMillis: 3_650 * 86_400_000)

@Suite("Durable engine: power loss, failed syncs, recovery equivalence")
struct DurableEngineTests {
    @Test("power cut (torn sectors) under concurrent load: every acknowledged command survives, exactly once (rounds 3 and 4 with encryption at rest)",
          arguments: 0 ..< 5)
    func powerLossKeepsAcknowledgedCommands(round: Int) async throws {
        let base = DurabilitySeed.make("DurableEngineTests.powerLoss round \(round)")
        var random = DurabilityRandom(seed: DurabilitySeed.derived(base, round))
        let disk = LightDisk()
        let shards = 3
        let entries = ShardEntryLog(shards: shards)
        var configuration = durableConfiguration(disk: disk, shards: shards, snapshotEvery: 30 + random.below(60), entries: entries)
        configuration.ledger = longMemory
        if round >= 3 {
            // Sealed records and snapshots: a torn tail's LSNs are written again in a new
            // segment generation after recovery (docs/encryption.md).
            configuration.storage?.encryption = try EncryptionKeyRing(keys: [[UInt8](repeating: UInt8(round), count: 32)])
        }
        let clock = ManualClock()
        let engine = try await CreditEngine.open(configuration: configuration, clock: clock)
        let acknowledgements = Acknowledgements()
        let tasks = 4
        let commandsPerTask = 150
        let power = PowerSwitch(at: 40 + random.below(tasks * commandsPerTask * 3 / 4), seed: random.next(), disk: disk.simulated)
        let seeds = (0 ..< tasks).map { _ in random.next() }

        let issued: [[Command]] = await withTaskGroup(of: [Command].self) { group in
            for task in 0 ..< tasks {
                group.addTask {
                    var workload = DurabilityWorkload(seed: seeds[task], tenantBase: 1 + 100 * UInt64(task))
                    var queue = workload.prologue()
                    var sent = 0
                    while sent < commandsPerTask {
                        var batch: [Command] = []
                        if !queue.isEmpty {
                            batch = [queue.removeFirst()]
                        } else if workload.random.chance(10) {
                            for _ in 0 ..< 2 + workload.random.below(4) { batch.append(workload.next()) }
                        } else {
                            batch = [workload.next()]
                        }
                        clock.advance(millis: min(workload.pause(), 3_600_000))
                        let outcomes = batch.count == 1 ? [await engine.execute(batch[0])] : await engine.execute(batch: batch)
                        sent += batch.count
                        var stopped = false
                        for (command, outcome) in zip(batch, outcomes) {
                            if case .failure(.logStopped) = outcome {
                                stopped = true
                                continue
                            }
                            workload.learn(command, outcome)
                            if let earlier = acknowledgements.note(command, outcome) {
                                let expected: Outcome = earlier.command == command ? earlier.outcome : .failure(.idempotencyConflict(command.key))
                                #expect(outcome == expected, "a retry of \(command.key) before the power cut")
                            }
                            power.acknowledged()
                        }
                        if stopped { break }
                    }
                    return workload.issued
                }
            }
            var all: [[Command]] = []
            for await commands in group { all.append(commands) }
            return all
        }
        power.cut() // if the load ended first
        _ = try? await engine.snapshot() // waits for snapshots in flight
        await engine.close()

        // The first command issued under each key (the workload's conflicts reuse keys).
        var commandByKey: [IdempotencyKey: Command] = [:]
        for command in issued.joined() where commandByKey[command.key] == nil { commandByKey[command.key] = command }
        let storage = try #require(configuration.storage)
        var logged: [[WALReader.Entry]] = []
        for shard in 0 ..< shards {
            let log = try logEntries(storage, shard: shard)
            let applied = entries.of(shard)
            #expect(log.count <= applied.count, "shard \(shard): more records than commands applied")
            #expect(log.map(\.command.key) == applied.prefix(log.count).map(\.key), "shard \(shard): the log is not a prefix of what was applied")
            #expect(log.map(\.time) == applied.prefix(log.count).map(\.time), "shard \(shard)")
            #expect(log.allSatisfy { commandByKey[$0.command.key] == $0.command }, "shard \(shard): a logged command differs from the one sent")
            logged.append(log)
        }
        let acknowledged = acknowledgements.all
        for (command, _) in acknowledged {
            let shard = CreditEngine.shardIndex(for: command.tenant, shardCount: shards)
            #expect(logged[shard].contains { $0.command.key == command.key }, "acknowledged \(command.key) is not in shard \(shard)'s log")
        }

        configuration.onEntry = nil
        guard let reopened = await openRecording(configuration, clock: clock, "round \(round) (seed \(base))") else { return }
        #expect(reopened.recoveryReports.count == shards)
        await reopened.expectInvariants()
        var expected: [UInt64] = []
        for shard in 0 ..< shards {
            var reference = Ledger(configuration: configuration.shardLedgerConfiguration)
            for entry in logged[shard] { _ = reference.record(commandByKey[entry.command.key]!, at: entry.time) }
            expected.append(reference.stateDigest())
        }
        #expect(await reopened.stateDigests() == expected, "recovered state differs from replaying exactly the logged commands")
        // Every acknowledged command, retried, gets its original outcome (so it is there once).
        let retried = await reopened.execute(batch: acknowledged.map(\.command))
        for ((command, outcome), again) in zip(acknowledged, retried) {
            #expect(again == outcome, "retry of acknowledged \(command.key) after recovery: \(again), originally \(outcome)")
        }
        #expect(await reopened.stateDigests() == expected, "retries changed the state")
        let torn = reopened.recoveryReports.reduce(0) { $0 + $1.tornBytesDropped }
        print("DurableEngineTests.powerLoss round \(round): \(acknowledged.count) acknowledged, "
            + "\(logged.map(\.count).reduce(0, +)) recovered, \(torn) torn bytes cut, "
            + "snapshots \(reopened.recoveryReports.map { $0.snapshot ?? "-" })")
        await reopened.close()
    }

    @Test("a failed sync stops the shard: .logStopped for the affected and every later command; nothing acknowledged is lost",
          arguments: [false, true])
    func failedSyncStopsTheShard(powerCut: Bool) async throws {
        let disk = LightDisk()
        let shards = 2
        let configuration = durableConfiguration(disk: disk, shards: shards)
        let clock = ManualClock()
        let engine = try await CreditEngine.open(configuration: configuration, clock: clock)
        var tenants: [[TenantID]] = [[], []]
        var candidate: UInt64 = 1
        while tenants.contains(where: { $0.count < 3 }) {
            let tenant = TenantID(candidate)
            let shard = CreditEngine.shardIndex(for: tenant, shardCount: shards)
            if tenants[shard].count < 3 { tenants[shard].append(tenant) }
            candidate += 1
        }
        var keys: UInt64 = 0
        func command(_ action: Action) -> Command {
            keys += 1
            return Command(key: IdempotencyKey(high: 0xFA11, low: keys), action)
        }
        var acknowledged: [(Command, Outcome)] = []
        for tenant in tenants.joined() {
            let account = AccountID(tenant: tenant, number: 0)
            for action: Action in [.openTenant(tenant, .individual), .openAccount(account, .standard),
                                   .grant(account, GrantTerms(kind: .purchase, amount: durabilityCredits(1_000)))] {
                let sent = command(action)
                let outcome = await engine.execute(sent)
                #expect(throws: Never.self) { try outcome.get() }
                acknowledged.append((sent, outcome))
            }
        }
        func debit(_ tenant: TenantID) -> Command {
            command(.debit(AccountID(tenant: tenant, number: 0), Millicredits(1_500), scope: .unscoped))
        }
        for index in 0 ..< 20 {
            let sent = debit(tenants[index % 2][index % 3])
            acknowledged.append((sent, await engine.execute(sent)))
        }

        disk.simulated.failNextSync(path: configuration.storage!.walDirectory(0) + "/" + WALFormat.segmentName(firstLSN: 1))
        let failed = debit(tenants[0][0])
        #expect(await engine.execute(failed) == .failure(.logStopped), "the command whose sync failed")
        for index in 0 ..< 5 {
            #expect(await engine.execute(debit(tenants[0][index % 3])) == .failure(.logStopped), "a later command on the stopped shard")
        }
        #expect(await engine.execute(acknowledged[0].0) == .failure(.logStopped), "even a retry: the shard has stopped")
        let burstCommands = (0 ..< 8).map { index in
            Command(key: IdempotencyKey(high: 0xB0257, low: UInt64(index)),
                    .debit(AccountID(tenant: tenants[0][index % 3], number: 0), Millicredits(10), scope: .unscoped))
        }
        let burst = await withTaskGroup(of: Outcome.self) { group in
            for sent in burstCommands { group.addTask { await engine.execute(sent) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(burst.allSatisfy { $0 == .failure(.logStopped) }, "concurrent commands on the stopped shard: \(burst)")
        // The other shard carries on.
        for index in 0 ..< 5 {
            let sent = debit(tenants[1][index % 3])
            let outcome = await engine.execute(sent)
            #expect(throws: Never.self) { try outcome.get() }
            acknowledged.append((sent, outcome))
        }
        let mixed = [debit(tenants[0][1]), debit(tenants[1][1])]
        let mixedOutcomes = await engine.execute(batch: mixed)
        #expect(mixedOutcomes[0] == .failure(.logStopped))
        #expect((try? mixedOutcomes[1].get()) != nil)
        acknowledged.append((mixed[1], mixedOutcomes[1]))
        let turns = [debit(tenants[0][2]), debit(tenants[1][2])]
        let turnOutcomes = await engine.execute(turnsOf: turns)
        #expect(turnOutcomes[0] == .failure(.logStopped), "in turns too")
        #expect((try? turnOutcomes[1].get()) != nil)
        acknowledged.append((turns[1], turnOutcomes[1]))
        await engine.close()

        if powerCut { disk.simulated.crash() }
        let storage = try #require(configuration.storage)
        let logged = try (0 ..< shards).map { try logEntries(storage, shard: $0) }
        #expect(logged[0].contains { $0.command.key == failed.key } == !powerCut,
                "the failed command's record was written but never synced: a power cut drops it, a restart without one keeps it")
        guard let reopened = await openRecording(configuration, clock: clock, "after a failed sync") else { return }
        await reopened.expectInvariants()
        for (sent, outcome) in acknowledged {
            #expect(await reopened.execute(sent) == outcome, "acknowledged \(sent.key) after recovery")
        }
        var expected: [UInt64] = []
        for shard in 0 ..< shards {
            var reference = Ledger(configuration: configuration.shardLedgerConfiguration)
            for entry in logged[shard] { _ = reference.record(entry.command, at: entry.time) }
            expected.append(reference.stateDigest())
        }
        #expect(await reopened.stateDigests() == expected)
        // The shard works again after the restart.
        #expect((try? await reopened.execute(debit(tenants[0][2])).get()) != nil)
        await reopened.close()
    }

    @Test("snapshots + log recover the state of an uninterrupted in-memory run, across restarts and a power cut")
    func recoveryEqualsUninterruptedRun() async throws {
        let seed = DurabilitySeed.make("DurableEngineTests.recoveryEquivalence")
        var random = DurabilityRandom(seed: seed)
        let disk = LightDisk()
        let shards = 3
        var configuration = durableConfiguration(disk: disk, shards: shards, snapshotEvery: 25)
        configuration.ledger = longMemory
        var memoryConfiguration = configuration
        memoryConfiguration.storage = nil
        let durableClock = ManualClock()
        let memoryClock = ManualClock()
        var durable = try await CreditEngine.open(configuration: configuration, clock: durableClock)
        let memory = CreditEngine(configuration: memoryConfiguration, clock: memoryClock)
        var workloads = (0 ..< 3).map { DurabilityWorkload(seed: random.next(), tenantBase: 1 + 100 * UInt64($0)) }
        var sent: [Command] = []

        /// Runs `count` steps on both engines (same commands, same clock), outcomes compared.
        func run(_ count: Int) async {
            for _ in 0 ..< count {
                let index = random.below(workloads.count)
                var batch: [Command] = []
                let prologue = workloads[index].issued.isEmpty
                if prologue {
                    batch = workloads[index].prologue()
                } else {
                    for _ in 0 ..< (random.chance(15) ? 2 + random.below(6) : 1) { batch.append(workloads[index].next()) }
                }
                let pause = min(workloads[index].pause(), 6 * 3_600_000)
                durableClock.advance(millis: pause)
                memoryClock.advance(millis: pause)
                let fromDurable = prologue || batch.count > 1 ? await durable.execute(batch: batch) : [await durable.execute(batch[0])]
                let fromMemory = prologue || batch.count > 1 ? await memory.execute(batch: batch) : [await memory.execute(batch[0])]
                #expect(fromDurable == fromMemory, "the durable engine answered differently")
                for (command, outcome) in zip(batch, fromMemory) { workloads[index].learn(command, outcome) }
                sent += batch
            }
        }

        await run(150)
        _ = try await durable.snapshot() // on demand, besides the automatic ones every 25 records
        await run(150)
        _ = try await durable.snapshot() // also waits for automatic snapshots still in flight
        await run(4) // a short log tail after the last snapshot
        await durable.close()

        for restart in 0 ..< 2 {
            guard let reopened = await openRecording(configuration, clock: durableClock, "restart \(restart) (seed \(seed))") else { return }
            durable = reopened
            #expect(durable.recoveryReports.contains { $0.snapshot != nil }, "restart \(restart): no snapshot was used")
            #expect(await durable.stateDigests() == memory.stateDigests(), "restart \(restart): recovered state differs")
            await durable.expectInvariants()
            for workload in workloads {
                for account in workload.accounts {
                    #expect(await durable.balance(of: account) == memory.balance(of: account), "restart \(restart): \(account)")
                }
            }
            // Retries of everything sent so far answer as the uninterrupted engine does.
            let sample = (0 ..< 60).map { _ in random.pick(sent) }
            #expect(await durable.execute(batch: sample) == memory.execute(batch: sample), "restart \(restart): retries")
            await run(120)
            _ = try await durable.snapshot()
            await run(4)
            if restart == 0 { disk.simulated.crash(seed: random.next()) } // strict: everything acknowledged is synced
            await durable.close()
        }
        guard let last = await openRecording(configuration, clock: durableClock, "final (seed \(seed))") else { return }
        #expect(await last.stateDigests() == memory.stateDigests())
        await last.close()
    }

    @Test("a command with an over-long text is rejected, and the data directory still recovers")
    func overlongTextStillRecovers() async throws {
        let disk = LightDisk()
        let configuration = durableConfiguration(disk: disk, shards: 1)
        let clock = ManualClock()
        let engine = try await CreditEngine.open(configuration: configuration, clock: clock)
        let account = AccountID(tenant: TenantID(7), number: 0)
        var acknowledged: [(Command, Outcome)] = []
        for (index, action) in [Action.openTenant(TenantID(7), .individual), .openAccount(account, .standard),
                                .grant(account, GrantTerms(kind: .purchase, amount: durabilityCredits(50))),
                                // 2 MiB of reason: the ledger allows 256 bytes; the log's record limit is 4 MiB.
                                .adjust(account, durabilityCredits(1), reason: String(repeating: "x", count: 2 << 20)),
                                // 5 MiB: more than a log record can hold.
                                .adjust(account, durabilityCredits(1), reason: String(repeating: "y", count: 5 << 20)),
                                .debit(account, durabilityCredits(5), scope: .unscoped),
                                // A model name over the ledger's limit (not interned: refused by
                                // the ledger, logged with the marker text, refused again on replay),
                                // and one the process could not keep (refused before the ledger).
                                .charge(account, namedUsage(InternedName(String(repeating: "m", count: 300))), scope: .unscoped),
                                .charge(account, namedUsage(.unavailable), scope: .unscoped)].enumerated() {
            let command = Command(key: IdempotencyKey(high: 0x7E47, low: UInt64(index)), action)
            acknowledged.append((command, await engine.execute(command)))
        }
        #expect(acknowledged[3].1 == .failure(.invalidInput(.textTooLong)))
        #expect(acknowledged[4].1 == .failure(.invalidInput(.textTooLong)))
        #expect((try? acknowledged[5].1.get()) != nil)
        #expect(acknowledged[6].1 == .failure(.invalidInput(.textTooLong)))
        #expect(acknowledged[7].1 == .failure(.limitReached(.namesPerProcess)))
        #expect(await engine.execute(batch: [acknowledged[4].0]) == [.failure(.invalidInput(.textTooLong))], "in a batch too")
        let batchOutcomes = await engine.execute(batch: [acknowledged[5].0, acknowledged[7].0])
        #expect(batchOutcomes[1] == .failure(.limitReached(.namesPerProcess)) && batchOutcomes[0] == acknowledged[5].1,
                "in a batch too, beside a command that is applied")
        // Concurrent single calls share drain rounds: the over-long one is refused on its
        // own, the debits queued with it are applied and logged.
        let concurrent = (0 ..< 20).map {
            Command(key: IdempotencyKey(high: 0x7E48, low: UInt64($0)), .debit(account, durabilityCredits(1), scope: .unscoped))
        } + [Command(key: IdempotencyKey(high: 0x7E48, low: 99),
                     .adjust(account, durabilityCredits(1), reason: String(repeating: "z", count: 5 << 20)))]
        let outcomes = await withTaskGroup(of: (Command, Outcome).self, returning: [(Command, Outcome)].self) { group in
            for command in concurrent { group.addTask { (command, await engine.execute(command)) } }
            var all: [(Command, Outcome)] = []
            for await pair in group { all.append(pair) }
            return all
        }
        for (command, outcome) in outcomes {
            if case .adjust = command.action {
                #expect(outcome == .failure(.invalidInput(.textTooLong)))
            } else {
                #expect((try? outcome.get()) != nil, "\(outcome)")
            }
        }
        acknowledged += outcomes
        await engine.close()

        guard let reopened = await openRecording(configuration, clock: clock, "after an over-long adjustment reason") else { return }
        for (command, outcome) in acknowledged {
            #expect(await reopened.execute(command) == outcome)
        }
        #expect(await reopened.balance(of: account)?.available == durabilityCredits(25))
        // The refused charge was neither logged nor remembered: its key is still free.
        let unavailableKey = acknowledged[7].0.key
        #expect((try? await reopened.execute(Command(key: unavailableKey, .charge(account, namedUsage(InternedName("GPT-4o")),
                                                                                   scope: .unscoped))).get()) != nil)
        await reopened.close()
    }

    /// A 1-credit usage of `model` on system keys.
    private func namedUsage(_ model: InternedName) -> UsageCharge {
        UsageCharge(model: model, provider: InternedName("OpenAI"), units: 1_000, providerCostNanoUSD: 1,
                    listPrice: durabilityCredits(1), keySource: .system)
    }

    @Test("a failed open (one shard corrupt) leaves every shard's files as they were")
    func failedOpenChangesNothing() async throws {
        let disk = LightDisk()
        let shards = 2
        let configuration = durableConfiguration(disk: disk, shards: shards)
        let clock = ManualClock()
        let engine = try await CreditEngine.open(configuration: configuration, clock: clock)
        var workload = DurabilityWorkload(seed: 0xFA1_0001)
        _ = await engine.execute(batch: workload.prologue())
        for _ in 0 ..< 60 { _ = await engine.execute(workload.next()) }
        await engine.close()
        let storage = try #require(configuration.storage)
        let segments = (0 ..< shards).map { storage.walDirectory($0) + "/" + WALFormat.segmentName(firstLSN: 1) }
        // Shard 0: a torn tail (bytes a crash left after the last record). Shard 1: a damaged
        // segment header, which recovery must refuse.
        let tail = try disk.simulated.size(of: segments[0])
        let file = try disk.simulated.open(segments[0], create: false)
        try file.write([0x5A, 0x00, 0x00, 0x00, 0x13, 0x37], at: tail)
        try file.sync()
        file.close()
        disk.simulated.flipBit(path: segments[1], byteOffset: 9, bit: 2)
        let before = try segments.map { try disk.simulated.readFile($0) }

        do {
            let opened = try await CreditEngine.open(configuration: configuration, clock: clock)
            Issue.record("opened despite a damaged segment header")
            await opened.close()
        } catch {
            #expect(error.shard == 1 && error.logFailure?.file == segments[1] && error.logFailure?.offset == 0, "\(error)")
        }
        let after = try segments.map { try disk.simulated.readFile($0) }
        let unchanged = (0 ..< shards).map { after[$0] == before[$0] }
        #expect(unchanged[1])
        #expect(unchanged[0], "the failed open cut shard 0's torn tail: the directory was changed")
    }
}
