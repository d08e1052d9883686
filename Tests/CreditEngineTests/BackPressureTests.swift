@testable import CreditEngine
@testable import CreditPersistence
import DurabilityTestSupport
import Synchronization
import Testing
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// The commands acknowledged before the power cut, which the `cutAfter`-th acknowledgement
/// triggers: noting an acknowledgement and cutting the power share one lock, so every
/// command noted was acknowledged before the cut (one acknowledged just before it may be
/// missed, which only shrinks what the test counts as lost).
private final class PowerCut: Sendable {
    let cutAfter: Int
    let seed: UInt64
    let disk: SimulatedFileSystem
    private let state = Mutex<(acknowledged: [Command], done: Bool)>(([], false))

    init(after count: Int, seed: UInt64, disk: SimulatedFileSystem) {
        cutAfter = count
        self.seed = seed
        self.disk = disk
    }

    func acknowledged(_ command: Command) {
        state.withLock { state in
            guard !state.done else { return }
            state.acknowledged.append(command)
            if state.acknowledged.count >= cutAfter {
                disk.crash(seed: seed)
                state.done = true
            }
        }
    }

    /// Cuts the power now if the load ended first.
    func cut() {
        state.withLock { state in
            guard !state.done else { return }
            disk.crash(seed: seed)
            state.done = true
        }
    }

    var acknowledgedBeforeCut: [Command] { state.withLock { $0.acknowledged } }
}

/// One tenant with a funded account, then `debits` debits of 1 credit: the commands of one task.
private func taskCommands(_ task: Int, debits: Int) -> [Command] {
    let tenant = TenantID(UInt64(1 + task))
    let account = AccountID(tenant: tenant, number: 0)
    var commands = [
        Command(key: IdempotencyKey(deriving: "bp/\(task)/tenant"), .openTenant(tenant, .individual)),
        Command(key: IdempotencyKey(deriving: "bp/\(task)/account"), .openAccount(account, .standard(overdraft: .zero))),
        Command(key: IdempotencyKey(deriving: "bp/\(task)/grant"), .grant(account, GrantTerms(kind: .purchase, amount: credits(1_000)))),
    ]
    for debit in 0 ..< debits {
        commands.append(Command(key: IdempotencyKey(deriving: "bp/\(task)/debit/\(debit)"), .debit(account, credits(1), scope: .unscoped)))
    }
    return commands
}

/// The bytes of a command's log record.
private func recordBytes(_ command: Command) -> Int { WALFormat.recordHeaderSize + command.encodedSize() }

/// Keys remembered for longer than any test runs, for more keys than any test sends.
private let longMemory = LedgerConfiguration(idempotencyKeysMax: 1 << 16, idempotencyWindowMillis: 3_650 * 86_400_000)

@Suite("Back-pressure: bounded submission queues and log buffers")
struct BackPressureTests {
    @Test("1,000 tasks writing in interval mode to a disk whose syncs take 50 ms never push a log's pending bytes past its bound, and a power cut loses at most the documented window")
    func intervalModeOnASlowDiskStaysWithinBounds() async throws {
        let seed = DurabilitySeed.make("BackPressureTests.intervalModeOnASlowDiskStaysWithinBounds")
        let disk = LightDisk(SimulatedFileSystem(syncLatencyMicros: 50_000))
        let shards = 2
        let tasks = 1_000
        let debitsPerTask = 3
        // Bounds far below what 1,000 tasks append during one 50 ms sync (their first
        // commands alone are 100 KB), so an unbounded log would pass them at once.
        let log = LogConfiguration(durability: .interval, segmentSize: WALFormat.segmentHeaderSize + 2 * WALFormat.recordSizeMax,
                                   unsyncedBytesMax: 2 * WALFormat.recordSizeMax, syncIntervalMillis: 10,
                                   pendingBytesMax: 16 << 10)
        var configuration = durableConfiguration(disk: disk, shards: shards, log: log)
        configuration.ledger = longMemory
        configuration.submissionCommandsMax = 32
        let clock = ManualClock(engineStart)
        let engine = try await CreditEngine.open(configuration: configuration, clock: clock)
        let commands = (0 ..< tasks).map { taskCommands($0, debits: debitsPerTask) }
        let power = PowerCut(after: tasks * (3 + debitsPerTask) / 2, seed: seed, disk: disk.simulated)

        await withTaskGroup(of: Void.self) { group in
            for task in 0 ..< tasks {
                group.addTask {
                    for command in commands[task] {
                        let outcome = await engine.execute(command)
                        if case .failure(.logStopped) = outcome { return } // the power is off
                        #expect(outcome.isSuccess, "\(command.key): \(outcome)")
                        power.acknowledged(command)
                    }
                }
            }
        }
        power.cut()

        // Each append starts below the bound, and one append is at most one drain round.
        let roundBytesMax = configuration.submissionCommandsMax * commands.joined().map(recordBytes).max()!
        for (index, shard) in engine.shards.enumerated() {
            let (highWater, waits) = shard.log!.pendingStatistics
            let largestRound = await shard.drainRoundCommandsHighWater
            print("BackPressureTests: shard \(index): pending bytes high water \(highWater) "
                + "(bound \(log.pendingBytesMax) + one round of \(roundBytesMax)), \(waits) waits for room, largest round \(largestRound)")
            #expect(highWater <= log.pendingBytesMax + roundBytesMax, "shard \(index) (seed \(seed))")
            #expect(largestRound <= configuration.submissionCommandsMax, "shard \(index)")
        }
        await engine.close()

        guard let reopened = await openRecording(configuration, clock: clock, "after the power cut (seed \(seed))") else { return }
        var lostBytes = [Int](repeating: 0, count: shards)
        var lost = 0
        let acknowledged = power.acknowledgedBeforeCut
        for command in acknowledged where await reopened.rememberedOutcome(of: command.key, tenant: command.tenant) == nil {
            lostBytes[reopened.shardIndex(for: command.tenant)] += recordBytes(command)
            lost += 1
        }
        let window = log.lossBytesMax(appendBytesMax: roundBytesMax)
        print("BackPressureTests: \(acknowledged.count) acknowledged before the power cut, \(lost) lost "
            + "(bytes per shard \(lostBytes), window \(window))")
        for shard in 0 ..< shards {
            #expect(lostBytes[shard] <= window, "shard \(shard) lost more than the documented window (seed \(seed))")
        }
        await reopened.expectInvariants()
        await reopened.close()
    }

    @Test("callers that find the submission queue full wait in line: every call completes once, and no drain round exceeds submissionCommandsMax")
    func fullSubmissionQueueMakesCallersWait() async throws {
        let disk = LightDisk(SimulatedFileSystem(syncLatencyMicros: 1_000))
        var configuration = durableConfiguration(disk: disk, shards: 1)
        configuration.submissionCommandsMax = 4
        let engine = try await CreditEngine.open(configuration: configuration, clock: ManualClock(engineStart))
        let tasks = 200
        let debitsPerTask = 5
        await withTaskGroup(of: Void.self) { group in
            for task in 0 ..< tasks {
                group.addTask {
                    for command in taskCommands(task, debits: debitsPerTask) {
                        let outcome = await engine.execute(command)
                        #expect(outcome.isSuccess, "\(command.key): \(outcome)")
                    }
                }
            }
        }
        for task in 0 ..< tasks {
            let account = AccountID(tenant: TenantID(UInt64(1 + task)), number: 0)
            #expect(await engine.balance(of: account)?.available == credits(1_000 - Int64(debitsPerTask)), "task \(task)")
        }
        let largestRound = await engine.shards[0].drainRoundCommandsHighWater
        print("BackPressureTests: largest drain round \(largestRound) of at most \(configuration.submissionCommandsMax)")
        #expect(largestRound <= configuration.submissionCommandsMax)
        await engine.expectInvariants()
        await engine.close()
    }
}

private extension Outcome {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}
