import CreditEngine
import CreditPricing
// Buying credits: a quote, then the payment, then the grant.

extension Billing {
    // MARK: Purchases

    /// The cheapest way to buy at least `credits` credits.
    public func quote(credits: Int64) throws(BillingError) -> Quote {
        do { return try CreditPricing.quote(credits: credits) } catch { throw .quote(error) }
    }

    /// Buys at least `credits` credits for `account` at the quoted price: the payment first,
    /// then — only if it succeeded — a purchase grant of the quoted credits expiring 12
    /// months later. Idempotent by `purchase`: the gateway charges an id once, and the grant
    /// is keyed by it, so a retried purchase (after a crash, a time-out or on purpose, within
    /// the engine's idempotency window) grants once and returns the first grant's receipt.
    /// A failed payment grants nothing.
    @discardableResult
    public func purchase(_ credits: Int64, for account: AccountID, purchase: PurchaseID) async throws(BillingError) -> PurchaseReceipt {
        let quote = try quote(credits: credits)
        let payment: PaymentReceipt
        do {
            payment = try await payments.charge(quote.priceCents, for: purchase)
        } catch {
            throw .payment(error)
        }
        // The grant's key derives from the purchase id alone. A retry computes its expiry
        // from a later clock reading, so its command differs from the first: it is answered
        // from what the engine remembers of the first grant instead.
        let grantKey = IdempotencyKey(deriving: "purchase/\(account.tenant.rawValue)/\(purchase.rawValue)")
        if let first = await engine.rememberedOutcome(of: grantKey, tenant: account.tenant) {
            return try Self.purchaseReceipt(first, quote: quote, payment: payment)
        }
        let amount: Millicredits
        do { amount = try Millicredits.credits(quote.credits) } catch { throw .quote(.tooLarge(credits: quote.credits, max: Quote.creditsMax)) }
        let expires = CalendarMonths.adding(12, to: clock.now())
        let command = Command(key: grantKey, .grant(account, GrantTerms(kind: .purchase, amount: amount, expiresAt: expires)))
        var outcome = await engine.execute(command)
        if case .failure(.idempotencyConflict) = outcome, let first = await engine.rememberedOutcome(of: grantKey, tenant: account.tenant) {
            // A concurrent retry granted first.
            outcome = first
        }
        return try Self.purchaseReceipt(outcome, quote: quote, payment: payment)
    }

    private static func purchaseReceipt(_ outcome: Outcome, quote: Quote, payment: PaymentReceipt) throws(BillingError) -> PurchaseReceipt {
        switch outcome {
        case .success(let receipt): return PurchaseReceipt(quote: quote, payment: payment, receipt: receipt)
        case .failure(let error): throw .ledger(error)
        }
    }
}

public struct PurchaseReceipt: Sendable, Equatable {
    public let quote: Quote
    public let payment: PaymentReceipt
    /// The grant's receipt (the first grant's, for a retry).
    public let receipt: Receipt
}
