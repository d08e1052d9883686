import CreditEngine
import CreditPricing
// Subscriptions: subscribing (paid first), cancelling, and changing plans in one paid command.

extension Billing {
    // MARK: Subscriptions

    /// Subscribes `account` to `plan` (at its own-keys price with `ownKeys`): the first
    /// cycle's payment first, then — only if it succeeded — the subscription, which grants
    /// the first allocation now and renews every calendar month from today (the scheduler
    /// charges each renewal). On a lapsed subscription this is a reactivation: credits
    /// still in grace are reinstated (docs/semantics.md, "Time"). Idempotent by `purchase`
    /// within the engine's idempotency window.
    @discardableResult
    public func subscribe(_ account: AccountID, to plan: Plan, ownKeys: Bool = false, rollover: Bool = true,
                          purchase: PurchaseID) async throws(BillingError) -> Receipt {
        let price = ownKeys ? plan.ownKeyMonthlyPriceCents : plan.monthlyPriceCents
        if price > 0 {
            do { _ = try await payments.charge(price, for: purchase) } catch { throw .payment(error) }
        }
        let key = IdempotencyKey(deriving: "subscribe/\(account.tenant.rawValue)/\(purchase.rawValue)")
        if let first = await engine.rememberedOutcome(of: key, tenant: account.tenant) {
            switch first {
            case .success(let receipt): return receipt
            case .failure(let error): throw .ledger(error)
            }
        }
        return try await succeed(Command(key: key, .subscribe(account, SubscriptionTerms(
            plan: plan.name, allocation: plan.monthlyCredits, priceCents: price, rollover: rollover))))
    }

    /// Cancels `account`'s subscription at the end of its cycle (its credits stay spendable
    /// until then). Idempotent by `key`.
    public func cancelSubscription(of account: AccountID, key: IdempotencyKey) async throws(BillingError) {
        try await succeed(Command(key: key, .cancelSubscription(account)))
    }

    /// What moving `account`'s subscription to `plan` would do now, by the rule in
    /// docs/semantics.md ("Changing plans"): upgrade, deferred or unchanged, the cents an
    /// upgrade charges for the rest of the cycle, and the credits it grants for them.
    public func planChangeQuote(of account: AccountID, to plan: Plan, ownKeys: Bool = false) async throws(BillingError)
        -> PlanChangeQuote {
        guard let current = await engine.subscription(of: account), current.status != .lapsed else {
            throw .ledger(.notSubscribed(account))
        }
        return PlanChangeQuote(current, terms(of: plan, ownKeys: ownKeys, keeping: current), at: clock.now())
    }

    /// Moves `account`'s subscription to `plan` (at its own-keys price with `ownKeys`) in one
    /// ledger command that names the plan it replaces, so a change decided on a stale read is
    /// refused (`LedgerError.planChanged`) and two concurrent changes cannot both apply.
    ///
    /// An upgrade is paid before anything is granted: the prorated price difference is
    /// charged through the gateway under a purchase id derived from `key` (so a retry never
    /// pays twice), then the command grants the credits that payment bought, until the end
    /// of the cycle. A declined payment changes nothing. If the ledger refuses the change
    /// after the payment, the payment is refunded before the error is thrown (a refund the
    /// gateway could not make is `.payment(.unavailable)`: retry with the same key). A
    /// deferred change (a downgrade) charges and grants nothing; the new terms renew from the next cycle on.
    /// Idempotent by `key` within the engine's idempotency window: a retry returns what the
    /// first call did.
    public func changeSubscription(of account: AccountID, to plan: Plan, ownKeys: Bool = false,
                                   key: IdempotencyKey) async throws(BillingError) -> PlanChange {
        if let first = await engine.rememberedOutcome(of: key, tenant: account.tenant) { return try Self.planChange(first, key) }
        guard let current = await engine.subscription(of: account), current.status != .lapsed else {
            throw .ledger(.notSubscribed(account))
        }
        let quote = PlanChangeQuote(current, terms(of: plan, ownKeys: ownKeys, keeping: current), at: clock.now())
        var payment: PaymentReceipt?
        if quote.chargeCents > 0 {
            payment = try await pay(quote.chargeCents, for: Self.planChangePurchase(account, key: key))
        }
        var request = PlanChangeRequest(replacing: current.plan, terms: quote.terms)
        if let payment {
            request.paidCents = payment.amountCents
            request.reference = payment.reference
        }
        var outcome = await engine.execute(Command(key: key, .changePlan(account, request)))
        if case .failure(.idempotencyConflict) = outcome, let first = await engine.rememberedOutcome(of: key, tenant: account.tenant) {
            // A concurrent call with the same key applied first.
            outcome = first
        }
        // Refused after the payment (a concurrent change won, or the renewal came between):
        // nothing was bought, so the money goes back.
        if case .failure = outcome, let payment {
            do { try await payments.refund(payment) } catch { throw .payment(error) }
        }
        return try Self.planChange(outcome, key)
    }

    /// The payment gateway's purchase id of the plan change with idempotency key `key`: the
    /// same for every retry, so the gateway charges it once.
    public static func planChangePurchase(_ account: AccountID, key: IdempotencyKey) -> PurchaseID {
        PurchaseID("plan-change/\(account.tenant.rawValue)/\(key.high)-\(key.low)")
    }

    /// Pays `cents` under `purchase`; when an earlier attempt under the same id paid another
    /// amount (a retry priced later in the cycle), that first payment is the one that counts.
    private func pay(_ cents: Int64, for purchase: PurchaseID) async throws(BillingError) -> PaymentReceipt {
        do {
            return try await payments.charge(cents, for: purchase)
        } catch .amountConflict(_, let first, _) {
            do { return try await payments.charge(first, for: purchase) } catch { throw .payment(error) }
        } catch {
            throw .payment(error)
        }
    }

    /// `plan`'s terms at the chosen price, keeping the subscription's rollover settings.
    private func terms(of plan: Plan, ownKeys: Bool, keeping current: SubscriptionView) -> SubscriptionTerms {
        SubscriptionTerms(plan: plan.name, allocation: plan.monthlyCredits,
                          priceCents: ownKeys ? plan.ownKeyMonthlyPriceCents : plan.monthlyPriceCents,
                          rollover: current.rollover, rolloverMonths: current.rolloverMonths)
    }

    /// What a plan change's outcome says; the outcome of another command under `key` is a
    /// conflict.
    private static func planChange(_ outcome: Outcome, _ key: IdempotencyKey) throws(BillingError) -> PlanChange {
        switch outcome {
        case .success(let receipt):
            switch receipt.planChange {
            case .upgrade: return .upgrade(grantNow: receipt.amount)
            case .unchanged: return .unchanged
            case .deferred: return .deferred
            case nil: throw .ledger(.idempotencyConflict(key))
            }
        case .failure(let error):
            throw .ledger(error)
        }
    }
}

/// What a change of plan would do at a moment (`Billing.planChangeQuote`).
public struct PlanChangeQuote: Sendable, Equatable {
    public let kind: PlanProration.Kind
    /// The new plan's terms (they renew from the next cycle on).
    public let terms: SubscriptionTerms
    /// What an upgrade charges now for the rest of the cycle; 0 otherwise.
    public let chargeCents: Int64
    /// What an upgrade grants now, until the cycle ends; 0 otherwise.
    public let grant: Millicredits
    public let cycleEnd: Timestamp

    init(_ current: SubscriptionView, _ terms: SubscriptionTerms, at time: Timestamp) {
        // A clock behind the ledger's (another clock than the engine's) reads as the cycle's start.
        let now = max(time, current.cycleStart)
        kind = PlanProration.kind(levelAllocation: current.cycleAllocation, levelPriceCents: current.cyclePriceCents,
                                  current: current.terms, new: terms)
        self.terms = terms
        cycleEnd = current.cycleEnd
        guard kind == .upgrade else {
            chargeCents = 0
            grant = .zero
            return
        }
        chargeCents = PlanProration.chargeCents(levelPriceCents: current.cyclePriceCents, newPriceCents: terms.priceCents,
                                                cycleStart: current.cycleStart, cycleEnd: current.cycleEnd, at: now)
        grant = now >= current.cycleEnd ? .zero : PlanProration.grant(
            levelAllocation: current.cycleAllocation, levelPriceCents: current.cyclePriceCents, new: terms,
            paidCents: chargeCents, cycleStart: current.cycleStart, cycleEnd: current.cycleEnd, at: now)
    }
}
