import DurabilityTestSupport
import Testing
@testable import CreditPersistence

@Suite("The durability workload reaches every kind of command")
struct WorkloadCoverageTests {
    /// The crash, power-cut and recovery tests replay what this workload logs; a command it
    /// never applies successfully would be tested only in its refused form.
    @Test("over 20,000 commands, every command tag succeeds at least once (seed printed)")
    func everyTagSucceeds() {
        let seed = DurabilitySeed.make("WorkloadCoverageTests")
        var workload = DurabilityWorkload(seed: seed)
        var ledger = Ledger()
        var now = durabilityStart
        for command in workload.prologue() { workload.learn(command, ledger.apply(command, at: now).outcome) }
        for _ in 0 ..< 20_000 {
            now = now.adding(millis: workload.pause())
            let command = workload.next()
            workload.learn(command, ledger.apply(command, at: now).outcome)
        }
        #expect(ledger.invariantViolations().isEmpty)
        // Tag 16 (a hold's time-out) needs the hold's deadline passed and is rare; 17–22 are
        // charges and keys; 23–33 the schedule.
        let expected: [UInt8] = [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 27, 28,
                                 29, 30, 31, 32, 33]
        let missing = expected.filter { workload.succeededByTag[$0, default: 0] == 0 }
        #expect(missing.isEmpty, "seed \(seed): no successful command with tag \(missing); counts \(workload.succeededByTag.sorted { $0.key < $1.key })")
    }
}
