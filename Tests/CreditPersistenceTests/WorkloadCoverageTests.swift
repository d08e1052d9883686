import DurabilityTestSupport
import Testing
@testable import CreditPersistence

@Suite("The durability workload reaches every kind of command")
struct WorkloadCoverageTests {
    /// The crash, power-cut and recovery tests replay what this workload logs; a command it
    /// never applies successfully would be tested only in its refused form.
    @Test("within 60,000 commands every command tag succeeds at least once (seed printed)")
    func everyTagSucceeds() {
        let seed = DurabilitySeed.make("WorkloadCoverageTests")
        var workload = DurabilityWorkload(seed: seed)
        var ledger = Ledger()
        var now = durabilityStart
        // Tag 16 (a hold's time-out) needs the hold's deadline passed and is rare; 17–22 are
        // charges and keys; 23–33 the schedule (a refill's failure needs the workload to
        // guess a refill really in flight, so it may take a while).
        let expected: [UInt8] = [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 27, 28,
                                 29, 30, 31, 32, 33]
        func missing() -> [UInt8] { expected.filter { workload.succeededByTag[$0, default: 0] == 0 } }
        for command in workload.prologue() { workload.learn(command, ledger.apply(command, at: now).outcome) }
        var applied = 0
        while applied < 60_000 && (applied % 5_000 != 0 || !missing().isEmpty) {
            now = now.adding(millis: workload.pause())
            let command = workload.next()
            workload.learn(command, ledger.apply(command, at: now).outcome)
            applied += 1
        }
        #expect(ledger.invariantViolations().isEmpty)
        #expect(missing().isEmpty, "seed \(seed): after \(applied) commands, no successful command with tag \(missing()); counts \(workload.succeededByTag.sorted { $0.key < $1.key })")
    }
}
