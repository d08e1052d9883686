// The load `credits bench` runs: the scenarios, what each task sends, the latency
// histogram every task feeds, and the live progress line.
import ArgumentParser
import CreditBilling
import CreditEngine
import CreditPricing
import Histogram
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What the benchmark's clients do (docs/performance.md, "Load scenarios").
enum Scenario: String, CaseIterable, ExpressibleByArgument {
    /// Debits (or charges) of accounts chosen uniformly at random.
    case uniform
    /// The same with accounts chosen by a Zipf law: a few accounts take most of the traffic.
    case hot
    /// Members of one organisation debiting: every debit checks a member limit, a
    /// department allocation and the pool, and some are refused by them.
    case enterprise
    /// A streaming call: reserve an estimate, then settle the actual cost (one operation).
    case reserveSettle = "reserve-settle"
    /// Debits, AI calls charged through routing, purchases and balance reads, single calls.
    case mixed

    /// Runs single calls only.
    var singleCallsOnly: Bool { self == .mixed }
}

/// The engine's limits that refuse an enterprise debit as intended (not a failure).
func isLimitRefusal(_ error: LedgerError) -> Bool {
    switch error {
    case .memberLimitExceeded, .departmentAllocationExceeded, .insufficientCredits: true
    default: false
    }
}

/// Samples ranks 1...n with probability proportional to 1 / rank^s (s > 0, s ≠ 1), in
/// constant time without a table: rejection-inversion (W. Hörmann and G. Derflinger,
/// "Rejection-inversion to generate variates from monotone discrete distributions", 1996).
/// The continuous hat h(x) = x^-s is integrated and inverted; a candidate is kept if it
/// falls under the discrete mass, which happens almost always.
struct ZipfSampler: Sendable {
    let count: UInt64
    let exponent: Double
    private let integralAtOneAndHalf: Double
    private let integralAtEnd: Double
    private let squeeze: Double

    init(count: UInt64, exponent: Double) {
        precondition(count >= 1 && exponent > 0 && exponent != 1)
        self.count = count
        self.exponent = exponent
        integralAtOneAndHalf = Self.integral(1.5, exponent) - 1
        integralAtEnd = Self.integral(Double(count) + 0.5, exponent)
        squeeze = 2 - Self.inverseIntegral(Self.integral(2.5, exponent) - Self.hat(2, exponent), exponent)
    }

    /// A rank in 1...count.
    func next(_ random: inout SplitMix64) -> UInt64 {
        while true {
            let uniform = Double(random.next() >> 11) * 0x1p-53
            let u = integralAtEnd + uniform * (integralAtOneAndHalf - integralAtEnd)
            let x = Self.inverseIntegral(u, exponent)
            let rank = min(max((x + 0.5).rounded(.down), 1), Double(count))
            if rank - x <= squeeze || u >= Self.integral(rank + 0.5, exponent) - Self.hat(rank, exponent) {
                return UInt64(rank)
            }
        }
    }

    /// The hat function x^-s.
    private static func hat(_ x: Double, _ s: Double) -> Double { exp(-s * log(x)) }

    /// ∫ x^-s dx, the antiderivative (x^(1-s) - 1) / (1-s), written to stay exact near s = 1.
    private static func integral(_ x: Double, _ s: Double) -> Double {
        let logX = log(x)
        return expm1Over((1 - s) * logX) * logX
    }

    /// The inverse of `integral`.
    private static func inverseIntegral(_ y: Double, _ s: Double) -> Double {
        let t = max(-1, y * (1 - s))
        return exp(log1pOver(t) * y)
    }

    /// (e^x - 1) / x, 1 at 0.
    private static func expm1Over(_ x: Double) -> Double { abs(x) > 1e-8 ? expm1(x) / x : 1 + x / 2 }
    /// ln(1 + x) / x, 1 at 0.
    private static func log1pOver(_ x: Double) -> Double { abs(x) > 1e-8 ? log1p(x) / x : 1 - x / 2 }
}

/// Latencies in nanoseconds, 3 significant digits (HdrHistogram), from 100 ns to 10 minutes.
typealias LatencyHistogram = Histogram<UInt64>

func makeLatencyHistogram() -> LatencyHistogram {
    LatencyHistogram(lowestDiscernibleValue: 100, highestTrackableValue: 600_000_000_000, numberOfSignificantValueDigits: .three)
}

/// What the tasks of one load have done so far: they add their own tallies every
/// `flushNanos` (not per operation, which would make every operation take a lock), and
/// the progress line reads it. Without a progress line they add them once, at the end:
/// merging and clearing a histogram (about 24,000 counters, generic code from another
/// module) every 100 ms in 64 tasks cost a quarter of the batch throughput.
final class LoadMeter: Sendable {
    struct Tally: Sendable {
        var succeeded = 0
        var refused = 0
        var failed = 0
        var latency = makeLatencyHistogram()

        var processed: Int { succeeded + refused + failed }

        mutating func add(_ other: Tally) {
            succeeded += other.succeeded
            refused += other.refused
            failed += other.failed
            latency.add(other.latency)
        }
    }

    /// How often a task hands its tally over: every second for a progress line, else never
    /// before the end.
    let flushNanos: UInt64

    init(live: Bool) { flushNanos = live ? 1_000_000_000 : .max }

    private let state = Mutex(Tally())

    /// Adds a task's tally and empties it.
    func flush(_ tally: inout Tally) {
        guard tally.processed > 0 || tally.latency.totalCount > 0 else { return }
        state.withLock { $0.add(tally) }
        tally.succeeded = 0
        tally.refused = 0
        tally.failed = 0
        tally.latency.reset()
    }

    var total: Tally { state.withLock { $0 } }

    /// Operations so far, and the latency percentiles so far (µs).
    func progress() -> (operations: Int, p50: Double, p99: Double) {
        state.withLock { tally in
            (tally.processed, Double(tally.latency.valueAtPercentile(50)) / 1_000, Double(tally.latency.valueAtPercentile(99)) / 1_000)
        }
    }
}

/// The live progress line on standard error, when it is a terminal: once a second,
/// throughput over the last second and overall, and p50/p99 so far.
struct ProgressLine {
    static var enabled: Bool { isatty(2) == 1 }

    /// Prints the line every second until the task is cancelled, then clears it.
    static func run(_ meter: LoadMeter, label: String, started: UInt64) async {
        var previous = (operations: 0, at: started)
        while !Task.isCancelled {
            do { try await Task.sleep(nanoseconds: 1_000_000_000) } catch { break }
            let now = monotonicNanos()
            let progress = meter.progress()
            let recent = Double(progress.operations - previous.operations) / (Double(now - previous.at) / 1e9)
            let overall = Double(progress.operations) / (Double(now - started) / 1e9)
            previous = (progress.operations, now)
            let line = "\r\u{1B}[K\(label) \(fixed(Double(now - started) / 1e9, 0)) s: \(fixed(recent / 1e6, 3)) M ops/s "
                + "(\(fixed(overall / 1e6, 3)) overall), p50 \(fixed(progress.p50, 1)) µs, p99 \(fixed(progress.p99, 1)) µs so far"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
        _ = "\r\u{1B}[K".withCString { write(2, $0, strlen($0)) }
    }
}

/// The organisation of the `enterprise` scenario: one tenant, `departments` departments,
/// members 1...N spread over them. Every fourth member has a limit of
/// `memberLimitCredits` per period; every odd-numbered department an allocation of one
/// credit per member; the pool holds plenty. Debits average half a credit, so limits are
/// reached as the run goes on and the refusals are part of the load.
enum EnterpriseSetup {
    static let organisation = TenantID(1 << 40)
    static let departments = 16
    static let memberLimitCredits: Int64 = 2

    static func department(ofMember number: UInt64) -> DepartmentID { DepartmentID(UInt16((number - 1) % UInt64(departments)) + 1) }

    static func open(_ engine: CreditEngine, members: Int) async throws {
        precondition(members >= 1 && members <= OptionLimits.accountsMax && OptionLimits.accountsMax < Int(UInt32.max),
                     "member numbers are UInt32")
        let pool = AccountID(tenant: organisation, number: 0)
        let perDepartment = Int64((members + departments - 1) / departments)
        let terms = (1 ... departments).map { index in
            DepartmentTerms(id: DepartmentID(UInt16(index)), costCentre: "CC-\(index)",
                            allocationPerPeriod: index % 2 == 1 ? Millicredits(perDepartment * Millicredits.perCredit) : nil)
        }
        var commands = [
            Command(key: IdempotencyKey(high: 5, low: 0), .openTenant(organisation, .organisation(departments: terms))),
            Command(key: IdempotencyKey(high: 5, low: 1), .grant(pool, GrantTerms(kind: .enterpriseContract,
                                                                                    amount: try .credits(100_000_000_000)))),
        ]
        try await expectSuccess(await engine.execute(batch: commands))
        var number: UInt64 = 1
        while number <= UInt64(members) {
            commands.removeAll(keepingCapacity: true)
            let end = min(number + 8_192, UInt64(members) + 1)
            for member in number ..< end {
                let limit: Millicredits? = member % 4 == 0 ? Millicredits(memberLimitCredits * Millicredits.perCredit) : nil
                commands.append(Command(key: IdempotencyKey(high: 6, low: member),
                                        .openAccount(AccountID(tenant: organisation, number: UInt32(member)),
                                                     .member(department: department(ofMember: member), limitPerPeriod: limit))))
            }
            try await expectSuccess(await engine.execute(batch: commands))
            number = end
        }
    }

    private static func expectSuccess(_ outcomes: [Outcome]) async throws {
        for outcome in outcomes {
            if case .failure(let error) = outcome { throw ValidationError("enterprise set-up failed: \(error)") }
        }
    }
}

/// What one task of the load sends: the account choice of the scenario, amounts, and
/// idempotency keys unique to the task (and to the load's key space).
struct OperationSource {
    let scenario: Scenario
    let accounts: UInt64
    let zipf: ZipfSampler?
    /// Who sends the debits (a metering client under --governance).
    let principal: Principal
    let keyHigh: UInt64
    var random: SplitMix64
    var sequence: UInt64 = 0

    @inline(__always)
    mutating func key() -> IdempotencyKey {
        sequence += 1
        return IdempotencyKey(high: keyHigh, low: sequence)
    }

    @inline(__always)
    mutating func account() -> AccountID {
        switch scenario {
        case .enterprise:
            return AccountID(tenant: EnterpriseSetup.organisation, number: UInt32(1 + random.next() % accounts))
        case .hot:
            return AccountID(tenant: TenantID(zipf!.next(&random) - 1), number: 0)
        default:
            return AccountID(tenant: TenantID(random.next() % accounts), number: 0)
        }
    }

    /// 1 to 1,000 millicredits.
    mutating func amount() -> Millicredits { Millicredits(Int64(1 + random.next() % 1_000)) }

    @inline(__always)
    mutating func debit() -> Command {
        let account = account()
        return Command(key: key(), .debit(account, amount(), scope: .unscoped), by: principal)
    }

    mutating func percent() -> UInt64 { random.next() % 100 }
}
