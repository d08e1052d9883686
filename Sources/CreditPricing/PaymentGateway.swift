/// The host's id for one purchase; the payment gateway's idempotency key.
public struct PurchaseID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init(_ rawValue: String) { self.rawValue = rawValue }

    public var description: String { rawValue }
}

/// A completed charge.
public struct PaymentReceipt: Sendable, Hashable {
    public let purchase: PurchaseID
    public let amountCents: Int64
    /// The gateway's own reference for the charge (for refunds and reconciliation).
    public let reference: String
}

public enum PaymentError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The payment was refused (card declined, ...). Final: the purchase id keeps this
    /// answer; a new attempt needs a new purchase id.
    case declined(purchase: PurchaseID, reason: String)
    /// The gateway did not answer. Nothing was charged and nothing is remembered: retrying
    /// with the same purchase id is safe.
    case unavailable(purchase: PurchaseID)
    /// Zero or negative amount; nothing was attempted.
    case invalidAmount(purchase: PurchaseID, amountCents: Int64)
    /// The purchase id was already used for another amount; nothing was charged.
    case amountConflict(purchase: PurchaseID, firstAmountCents: Int64, requestedAmountCents: Int64)

    /// A stable machine-readable name.
    public var code: String {
        switch self {
        case .declined: "payment_declined"
        case .unavailable: "payment_unavailable"
        case .invalidAmount: "payment_invalid_amount"
        case .amountConflict: "payment_amount_conflict"
        }
    }

    /// Whether the same request may succeed if sent again.
    public var isRetryable: Bool {
        if case .unavailable = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .declined(let purchase, let reason): "purchase \(purchase): payment declined: \(reason)"
        case .unavailable(let purchase): "purchase \(purchase): the payment gateway did not answer; nothing was charged, retry"
        case .invalidAmount(let purchase, let cents): "purchase \(purchase): cannot charge \(cents) cents (must be positive)"
        case .amountConflict(let purchase, let first, let requested):
            "purchase \(purchase) was already charged for \(first) cents; it cannot be charged \(requested) cents"
        }
    }
}

/// Takes money for credit purchases, and gives it back when what was paid for could not be
/// delivered.
///
/// Contract: a charge is idempotent per purchase id. The first final answer — a receipt
/// or `declined` — is remembered, and every later charge with that id and amount gets the
/// same answer without charging again; the same id with another amount is
/// `amountConflict`. `unavailable` and `invalidAmount` are not answers about the
/// purchase: nothing is remembered, so a retry with the same id is a new attempt.
///
/// A refund gives a completed charge back in full, idempotent per purchase id: refunding
/// twice refunds once; a refunded purchase id stays used (a charge with it gets its first
/// answer, and refunds nothing more). `unavailable` means nothing was refunded: retry.
public protocol PaymentGateway: Sendable {
    func charge(_ amountCents: Int64, for purchase: PurchaseID) async throws(PaymentError) -> PaymentReceipt
    func refund(_ payment: PaymentReceipt) async throws(PaymentError)
}

/// A gateway in memory for tests and simulations: it records the charges it made and can
/// be told to fail.
public actor InMemoryPaymentGateway: PaymentGateway {
    /// A failure to simulate.
    public enum Failure: Sendable, Hashable {
        case declined(reason: String)
        case unavailable
    }

    /// Every successful charge, in order; a replayed answer adds nothing.
    public private(set) var charges: [PaymentReceipt] = []
    /// Charge attempts that reached the simulated gateway (replayed answers did not).
    public private(set) var attempts = 0
    private var answers: [PurchaseID: (amountCents: Int64, answer: Result<PaymentReceipt, PaymentError>)] = [:]
    private var failuresNext: [Failure] = []
    private var failuresByPurchase: [PurchaseID: Failure] = [:]

    public init() {}

    /// The next `count` attempts (of any purchase) fail with `failure`.
    public func failNext(_ count: Int, with failure: Failure = .unavailable) {
        precondition(count >= 0)
        failuresNext += Array(repeating: failure, count: count)
    }

    /// Every attempt for `purchase` fails with `failure` (a decline is then remembered).
    public func fail(_ purchase: PurchaseID, with failure: Failure = .declined(reason: "card declined")) {
        failuresByPurchase[purchase] = failure
    }

    /// The sum of `charges`.
    public var chargedCents: Int64 { charges.reduce(0) { $0 + $1.amountCents } }
    /// Every refund, in order; a repeated refund adds nothing.
    public private(set) var refunds: [PaymentReceipt] = []
    private var refundFailuresNext = 0
    /// What was charged and not refunded.
    public var netCents: Int64 { chargedCents - refunds.reduce(0) { $0 + $1.amountCents } }

    /// The next `count` refund attempts fail with `unavailable`.
    public func failNextRefunds(_ count: Int) {
        precondition(count >= 0)
        refundFailuresNext += count
    }

    public func refund(_ payment: PaymentReceipt) async throws(PaymentError) {
        guard charges.contains(payment) else {
            preconditionFailure("refund of \(payment.purchase), which this gateway never charged")
        }
        if refunds.contains(payment) { return }
        if refundFailuresNext > 0 {
            refundFailuresNext -= 1
            throw .unavailable(purchase: payment.purchase)
        }
        refunds.append(payment)
    }

    public func charge(_ amountCents: Int64, for purchase: PurchaseID) async throws(PaymentError) -> PaymentReceipt {
        if let earlier = answers[purchase] {
            guard earlier.amountCents == amountCents else {
                throw .amountConflict(purchase: purchase, firstAmountCents: earlier.amountCents,
                                      requestedAmountCents: amountCents)
            }
            return try earlier.answer.get()
        }
        guard amountCents > 0 else { throw .invalidAmount(purchase: purchase, amountCents: amountCents) }
        attempts += 1
        let failure = failuresByPurchase[purchase] ?? (failuresNext.isEmpty ? nil : failuresNext.removeFirst())
        switch failure {
        case .unavailable:
            throw .unavailable(purchase: purchase)
        case .declined(let reason):
            let declined = PaymentError.declined(purchase: purchase, reason: reason)
            answers[purchase] = (amountCents, .failure(declined))
            throw declined
        case nil:
            let receipt = PaymentReceipt(purchase: purchase, amountCents: amountCents, reference: "mem-\(charges.count + 1)")
            charges.append(receipt)
            answers[purchase] = (amountCents, .success(receipt))
            return receipt
        }
    }
}
