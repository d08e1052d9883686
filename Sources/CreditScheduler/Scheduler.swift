// CreditScheduler — makes time pass for the engine.
//
// What lives here: the `Scheduler`, which asks the engine's shards what has fallen due
// (renewals, expiries, grace ends, refills, warnings), makes the payments that renewals
// and refills need through the host's `PaymentGateway`, issues the resulting commands, and
// publishes notices as data (`notifications`). Everything that changes credits is a
// command through the shards' logs, so recovery reproduces it; the scheduler itself keeps
// nothing that matters after a crash except retries of an unanswered gateway, which start
// again (docs/semantics.md, "Time").
//
// What may not live here: ledger rules (CreditCore decides what each command does), file
// I/O (the engine's logs).
import CreditEngine
import CreditPricing
@_spi(Plumbing) import CreditCore

/// What the scheduler tells the host. Delivered at most once, as the events happen (not
/// replayed after a restart: the ledger's entries are the record).
public enum CreditNotification: Sendable, Equatable {
    /// The available balance went below the account's threshold (once per crossing).
    case lowBalance(AccountID, available: Millicredits, threshold: Millicredits)
    /// An auto-refill was paid and its credits granted.
    case refillSucceeded(AccountID, credits: Millicredits, paymentReference: String)
    /// A refill's payment failed; it is retried at `retryAt`, or auto-refill was disabled.
    case refillFailed(AccountID, reason: String, retryAt: Timestamp?, autoRefillDisabled: Bool)
    /// Credits expire within the warning window (`SchedulePolicy.expiryWarningMillis`).
    case expiringSoon(AccountID, amount: Millicredits, expiresAt: Timestamp)
    /// Expired credits left the balance; they can be reinstated until their grace ends.
    case enteredGrace(AccountID, amount: Millicredits)
    /// Credits were lost at the end of their grace.
    case forfeited(AccountID, amount: Millicredits)
    /// A subscription renewed: cycle `cycle` began with `allocation`.
    case renewed(AccountID, cycle: UInt32, allocation: Millicredits)
    /// A subscription ended without renewing.
    case lapsed(AccountID, reason: LapseReason)
    /// The anomaly guard judged an account's spending anomalous (and froze it when
    /// `alert.froze`): the figures that made it so (docs/security.md).
    case anomalyDetected(AnomalyAlert)
}

/// How the scheduler handles payments.
public struct SchedulerPolicy: Sendable, Equatable {
    /// Waits before retrying a payment that failed, by attempt (the last repeats): a
    /// refill retries after a decline or an unanswered gateway, up to its terms'
    /// `attemptsMax`; a renewal retries only an unanswered gateway.
    public var retryDelaysMillis: [Int64]
    /// Attempts of a renewal payment whose gateway does not answer before the subscription
    /// lapses (`LapseReason.paymentUnavailable`). A declined renewal lapses at once.
    public var renewalAttemptsMax: Int
    /// Payments made at once (the gateway is remote; a month-end renews a million
    /// subscriptions).
    public var paymentsInParallel: Int
    /// Longest sleep of `run()` between looks at the engine (hold time-outs are swept then).
    public var idleWakeMillis: Int64
    /// Purchased credits (refills) expire this many months after the purchase.
    public var purchaseLifetimeMonths: Int

    public init(retryDelaysMillis: [Int64] = [60_000, 600_000, 3_600_000], renewalAttemptsMax: Int = 3,
                paymentsInParallel: Int = 64, idleWakeMillis: Int64 = 1_000, purchaseLifetimeMonths: Int = 12) {
        precondition(!retryDelaysMillis.isEmpty && retryDelaysMillis.allSatisfy { $0 >= 0 } && renewalAttemptsMax >= 1
                     && paymentsInParallel >= 1 && idleWakeMillis >= 1 && purchaseLifetimeMonths >= 1)
        self.retryDelaysMillis = retryDelaysMillis
        self.renewalAttemptsMax = renewalAttemptsMax
        self.paymentsInParallel = paymentsInParallel
        self.idleWakeMillis = idleWakeMillis
        self.purchaseLifetimeMonths = purchaseLifetimeMonths
    }

    func retryDelay(afterAttempt attempt: Int) -> Int64 {
        retryDelaysMillis[min(max(0, attempt - 1), retryDelaysMillis.count - 1)]
    }
}

/// What one `runDue` did.
public struct SchedulerReport: Sendable, Equatable {
    /// Commands the scheduler applied, by what they did.
    public var renewed = 0
    public var lapsed = 0
    public var expired = 0
    public var forfeited = 0
    public var refillsPaid = 0
    public var refillsFailed = 0
    /// Scheduler commands the ledger refused (already done by an earlier run, or changed).
    public var refused = 0
    public var holdsTimedOut = 0
    public var notices = 0
    /// Payments asked of the gateway.
    public var payments = 0
    /// Shard turns taken, and how long each held its shard.
    public var turns = 0
    public var turnTimings: [TurnTiming] = []

    public init() {}
}

/// Drives the engine's scheduled work. One per engine.
public actor Scheduler {
    public let engine: CreditEngine
    private let clock: any LedgerClock
    private let gateway: any PaymentGateway
    public let policy: SchedulerPolicy
    /// Notices as data, for the host to subscribe to (one consumer).
    public nonisolated let notifications: CreditNotifications
    private let publish: AsyncStream<[CreditNotification]>.Continuation
    /// Notices of the current step, published together by `flushNotices` (see `CreditNotifications`).
    private var notices: [CreditNotification] = []
    /// Renewals whose gateway did not answer, by account and cycle: attempts so far and
    /// when to try again. In memory only: after a restart the renewal is due again and
    /// its attempts start over.
    private var renewalRetries: [RenewalKey: (attempts: Int, retryAt: Int64, priceCents: Int64)] = [:]

    private struct RenewalKey: Hashable {
        let account: AccountID
        let anchor: Timestamp
        let cycle: UInt32
    }

    /// Unread batches of notices beyond this many are dropped, oldest first. A batch holds
    /// one scheduler step's notices (a turn round's renewals: a few thousand at most).
    public static let notificationBatchesBuffered = 1_024

    /// The scheduler reads the time from the engine's clock.
    public init(engine: CreditEngine, payments: any PaymentGateway, policy: SchedulerPolicy = SchedulerPolicy()) {
        self.engine = engine
        clock = engine.clock
        gateway = payments
        self.policy = policy
        let (batches, publish) = AsyncStream.makeStream(of: [CreditNotification].self,
                                                        bufferingPolicy: .bufferingNewest(Self.notificationBatchesBuffered))
        notifications = CreditNotifications(batches: batches)
        self.publish = publish
    }

    /// Ends the notification stream (the scheduler must not be used afterwards).
    public func finish() {
        flushNotices()
        publish.finish()
    }

    /// Queues a notice for the host; it goes out with the rest of the step's.
    private func notify(_ notice: CreditNotification) { notices.append(notice) }

    /// Hands the step's notices to the stream as one batch.
    private func flushNotices() {
        guard !notices.isEmpty else { return }
        publish.yield(notices)
        notices.removeAll(keepingCapacity: true)
    }

    /// Does everything due by now: hold time-outs, then shard turns until no shard has more
    /// due, each turn's payments, and renewal retries that are due.
    @discardableResult
    public func runDue() async -> SchedulerReport {
        var report = SchedulerReport()
        report.holdsTimedOut = await engine.timeOutHolds()
        for alert in await engine.takeAnomalyAlerts() { notify(.anomalyDetected(alert)) }
        var more = true
        while more {
            let turn = await engine.runDue()
            report.turns += turn.turns.count
            report.turnTimings += turn.turns
            more = turn.more
            for notice in turn.notices { announce(notice, &report) }
            await note(turn.applied, &report)
            if !turn.payments.isEmpty { await pay(turn.payments, &report) }
            flushNotices()
        }
        await retryRenewals(&report)
        flushNotices()
        return report
    }

    /// Runs until the task is cancelled: `runDue`, then sleeps until the next due time (at
    /// most `idleWakeMillis`). For a real clock; with a manual clock call `runDue` after
    /// moving it.
    public func run() async {
        while !Task.isCancelled {
            await runDue()
            let now = clock.now().millisSinceEpoch
            var next = now + policy.idleWakeMillis
            if let due = await engine.nextDueTime() { next = min(next, due.millisSinceEpoch) }
            if let retry = renewalRetries.values.map(\.retryAt).min() { next = min(next, retry) }
            let wait = max(1, next - now)
            do { try await Task.sleep(nanoseconds: UInt64(wait) * 1_000_000) } catch { return }
        }
    }

    // MARK: Payments

    /// Makes the turn's payments (up to `paymentsInParallel` at once) and applies what they
    /// lead to as one batch, in due order: the same order whatever order the gateway answers in.
    private func pay(_ payments: [DueWork], _ report: inout SchedulerReport) async {
        var commands = [Command?](repeating: nil, count: payments.count)
        let now = clock.now()
        let grace = engine.configuration.schedule.graceMillis
        report.payments += payments.count
        // `paymentsInParallel` workers, each paying every n-th payment in turn (a child task
        // per payment would cost more than an in-memory gateway's charge).
        let workers = min(policy.paymentsInParallel, payments.count)
        await withTaskGroup(of: [(Int, Command?)].self) { group in
            for worker in 0 ..< workers {
                group.addTask { [gateway, policy] in
                    var results: [(Int, Command?)] = []
                    for index in stride(from: worker, to: payments.count, by: workers) {
                        results.append((index, await Self.settle(payments[index], gateway: gateway, policy: policy,
                                                                 graceMillis: grace, at: now)))
                    }
                    return results
                }
            }
            for await results in group {
                for (index, command) in results { commands[index] = command }
            }
        }
        // An unanswered renewal payment comes back without a command: retry it later.
        for (work, command) in zip(payments, commands) where command == nil {
            guard case .renewalPayment(let account, let anchor, let cycle, let price, _) = work else { continue }
            let key = RenewalKey(account: account, anchor: anchor, cycle: cycle)
            let attempts = (renewalRetries[key]?.attempts ?? 0) + 1
            if attempts >= policy.renewalAttemptsMax {
                renewalRetries[key] = nil
                let lapse = Command(key: Ledger.renewalKey(account, cycle: cycle, lapsed: true),
                                    .lapseSubscription(account, cycle: cycle - 1, reason: .paymentUnavailable,
                                                       graceMillis: engine.configuration.schedule.graceMillis))
                await apply([lapse], &report)
            } else {
                renewalRetries[key] = (attempts, now.millisSinceEpoch + policy.retryDelay(afterAttempt: attempts), price)
            }
        }
        for (work, command) in zip(payments, commands) where command != nil {
            if case .renewalPayment(let account, let anchor, let cycle, _, _) = work {
                renewalRetries[RenewalKey(account: account, anchor: anchor, cycle: cycle)] = nil
            }
        }
        await apply(commands.compactMap { $0 }, &report)
    }

    /// The command a payment leads to: a renewal or a lapse, a paid or failed refill; nil
    /// when a renewal's gateway did not answer (retried by the caller).
    private static func settle(_ work: DueWork, gateway: any PaymentGateway, policy: SchedulerPolicy, graceMillis grace: Int64,
                               at now: Timestamp) async -> Command? {
        switch work {
        case .renewalPayment(let account, let anchor, let cycle, let price, _):
            // One purchase id per cycle of a subscription (named by its anchor: a
            // reactivated subscription numbers its cycles from 0 again): a retry, or a
            // second scheduler after a crash, is answered by the gateway without charging again.
            let purchase = PurchaseID("renewal/\(account.tenant.rawValue)/\(account.number)/\(anchor.millisSinceEpoch)/\(cycle)")
            do {
                _ = try await gateway.charge(price, for: purchase)
                return Command(key: Ledger.renewalKey(account, cycle: cycle, lapsed: false), .renewSubscription(account, cycle: cycle, graceMillis: grace))
            } catch {
                if error.isRetryable { return nil }
                return Command(key: Ledger.renewalKey(account, cycle: cycle, lapsed: true),
                               .lapseSubscription(account, cycle: cycle - 1, reason: .paymentDeclined, graceMillis: grace))
            }
        case .refillPayment(let account, let refill, let attempt, let credits):
            // One purchase id per attempt: a decline is the gateway's final answer for an id.
            let purchase = PurchaseID("refill/\(account.tenant.rawValue)/\(account.number)/\(refill)/\(attempt)")
            let retryAt = now.adding(millis: policy.retryDelay(afterAttempt: Int(attempt) + 1))
            func failed(_ declined: Bool, _ reason: String) -> Command {
                Command(key: Ledger.refillKey(account, refill: refill, attempt: attempt, paid: false),
                        .failRefill(account, refill: refill, RefillFailure(declined: declined, reason: reason.clipped(toUTF8: LedgerLimits.textBytesMax),
                                                                          retryAt: retryAt)))
            }
            let quote: Quote
            do { quote = try CreditPricing.quote(credits: credits) } catch { return failed(true, error.description) }
            do {
                let receipt = try await gateway.charge(quote.priceCents, for: purchase)
                let reference = receipt.reference.isEmpty ? purchase.rawValue : receipt.reference
                let amount = Millicredits(quote.credits * Millicredits.perCredit)
                // What a credit cost, in nano-USD: cents × 10^7 / credits.
                let basis = UInt32(clamping: quote.priceCents * 10_000_000 / max(1, quote.credits))
                let expires = CalendarMonths.adding(policy.purchaseLifetimeMonths, to: now)
                return Command(key: Ledger.refillKey(account, refill: refill, attempt: attempt, paid: true),
                               .completeRefill(account, refill: refill, RefillPayment(amount: amount, expiresAt: expires,
                                                                                     costBasisNanoUSDPerCredit: basis,
                                                                                     reference: reference.clipped(toUTF8: LedgerLimits.textBytesMax))))
            } catch {
                if case .declined = error { return failed(true, error.description) }
                return failed(false, error.description)
            }
        case .command(let command): return command
        case .notice: return nil
        }
    }

    /// Renewals whose gateway did not answer and whose retry is due.
    private func retryRenewals(_ report: inout SchedulerReport) async {
        let now = clock.now().millisSinceEpoch
        let due = renewalRetries.filter { $0.value.retryAt <= now }.sorted { ($0.key.account, $0.key.cycle) < ($1.key.account, $1.key.cycle) }
        guard !due.isEmpty else { return }
        var work: [DueWork] = []
        for (key, retry) in due {
            // Still due? (The host may have cancelled, or another run renewed it.)
            guard let view = await engine.subscription(of: key.account), view.status == .active, view.anchor == key.anchor,
                  view.cycle + 1 == key.cycle else {
                renewalRetries[key] = nil
                continue
            }
            work.append(.renewalPayment(key.account, anchor: key.anchor, cycle: key.cycle, priceCents: retry.priceCents,
                                        plan: view.plan))
        }
        if !work.isEmpty { await pay(work, &report) }
    }

    // MARK: Commands and notices

    /// Applies the commands payments led to, in order, a turn at a time on each shard (see
    /// `CreditEngine.execute(turnsOf:)`): one large batch would be spread over every shard
    /// at once (`CreditEngine.parallelBatchCommandsMin`) and hold them all, which is what
    /// the turns avoid.
    private func apply(_ commands: [Command], _ report: inout SchedulerReport) async {
        let outcomes = await engine.execute(turnsOf: commands)
        await note(zip(commands, outcomes).map { (command: $0, outcome: $1) }, &report)
    }

    /// Counts and announces what the scheduler's commands did.
    private func note(_ applied: [(command: Command, outcome: Outcome)], _ report: inout SchedulerReport) async {
        for (command, outcome) in applied {
            guard case .success(let receipt) = outcome else {
                report.refused += 1
                continue
            }
            switch command.action {
            case .renewSubscription(let account, let cycle, _):
                report.renewed += 1
                notify(.renewed(account, cycle: cycle, allocation: receipt.amount))
            case .lapseSubscription(let account, _, let reason, _):
                report.lapsed += 1
                notify(.lapsed(account, reason: reason))
                if receipt.amount > .zero { notify(.enteredGrace(account, amount: receipt.amount)) }
            case .expireGrants(let account, _):
                report.expired += 1
                if receipt.amount > .zero { notify(.enteredGrace(account, amount: receipt.amount)) }
            case .forfeitGrants(let account):
                report.forfeited += 1
                if receipt.amount > .zero { notify(.forfeited(account, amount: receipt.amount)) }
            case .completeRefill(let account, _, let payment):
                report.refillsPaid += 1
                notify(.refillSucceeded(account, credits: receipt.amount, paymentReference: payment.reference))
            case .failRefill(let account, _, let failure):
                report.refillsFailed += 1
                let view = await engine.autoRefill(of: account)
                let disabled = view.map { !$0.isEnabled } ?? true
                notify(.refillFailed(account, reason: failure.reason, retryAt: disabled ? nil : failure.retryAt,
                                            autoRefillDisabled: disabled))
            default:
                break
            }
        }
    }

    private func announce(_ notice: Notice, _ report: inout SchedulerReport) {
        report.notices += 1
        switch notice {
        case .lowBalance(let account, let available, let threshold):
            notify(.lowBalance(account, available: available, threshold: threshold))
        case .expiringSoon(let account, let amount, let expiresAt):
            notify(.expiringSoon(account, amount: amount, expiresAt: expiresAt))
        }
    }
}

extension String {
    /// The longest prefix of whole characters within `limit` UTF-8 bytes ("?" if none fits):
    /// gateway texts go into the ledger, whose texts are bounded.
    func clipped(toUTF8 limit: Int) -> String {
        if utf8.count <= limit { return self }
        var clipped = ""
        var bytes = 0
        for character in self {
            let size = character.utf8.count
            if bytes + size > limit { break }
            clipped.append(character)
            bytes += size
        }
        return clipped.isEmpty ? "?" : clipped
    }
}
