// The terms of the things that make time pass for an account: its subscription (billing
// cycles, rollover) and its auto-refill. The scheduler (CreditEngine) issues the commands
// that carry them out; the ledger decides, from these terms and the command, what each one
// does (docs/semantics.md, "Time").

/// A subscription's terms as the host sells them. The ledger keeps them with the account and
/// grants `allocation` at the start of every billing cycle.
public struct SubscriptionTerms: Sendable, Equatable {
    /// The plan's name ("Pro"); 1 to `LedgerLimits.textBytesMax` bytes.
    public var plan: InternedName
    /// Credits granted at the start of each cycle (0 for a plan that only renews, e.g. an
    /// organisation's contract that resets its departments' periods).
    public var allocation: Millicredits
    /// What each renewal charges, in US cents; 0 renews without a payment.
    public var priceCents: Int64
    /// The start of the first cycle; nil = the command's time. Cycles are calendar months
    /// from it (`CalendarMonths`): an anchor on the 31st renews on the last day of shorter
    /// months and on the 31st again after them. It must lie in the past month at most: the
    /// first cycle must not have ended when the command is applied.
    public var anchor: Timestamp?
    /// Whether the unused allocation of an ending cycle rolls over (default on).
    public var rollover: Bool
    /// How long a rollover grant lives after the cycle it came from ended (default 3).
    public var rolloverMonths: UInt8

    public static let rolloverMonthsDefault: UInt8 = 3
    /// Longest rollover life: 10 years.
    public static let rolloverMonthsMax: UInt8 = 120
    /// Largest renewal price: $10,000,000.
    public static let priceCentsMax: Int64 = 1_000_000_000

    public init(plan: String, allocation: Millicredits, priceCents: Int64, anchor: Timestamp? = nil,
                rollover: Bool = true, rolloverMonths: UInt8 = rolloverMonthsDefault) {
        self.plan = InternedName(plan)
        self.allocation = allocation
        self.priceCents = priceCents
        self.anchor = anchor
        self.rollover = rollover
        self.rolloverMonths = rolloverMonths
    }
}

/// Why a subscription ended without renewing.
public enum LapseReason: UInt8, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    /// It was cancelled: it ran to the end of its cycle.
    case cancelled = 1
    /// The renewal payment was declined.
    case paymentDeclined = 2
    /// The payment gateway did not answer within the scheduler's retries.
    case paymentUnavailable = 3

    public var description: String {
        switch self {
        case .cancelled: "cancelled"
        case .paymentDeclined: "payment_declined"
        case .paymentUnavailable: "payment_unavailable"
        }
    }
}

/// Where a subscription stands.
public enum SubscriptionStatus: UInt8, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    /// Renews at the end of each cycle.
    case active = 1
    /// Cancelled: runs to the end of its cycle, then lapses.
    case cancelling = 2
    /// Ended without renewing; its grants went into grace. Subscribing again reactivates it.
    case lapsed = 3

    public var description: String {
        switch self {
        case .active: "active"
        case .cancelling: "cancelling"
        case .lapsed: "lapsed"
        }
    }
}

/// Auto-refill (and low-balance alerts) of one account, as the billing anchors converged
/// (research/credit-anchors.md): a threshold on the available balance (holds already
/// deducted, debt subtracted), a fixed refill, at most one in flight, credits only after the
/// payment succeeded, bounded attempts, a monthly cap and a cooldown.
public struct AutoRefillTerms: Sendable, Equatable {
    /// A refill starts when a command leaves the available balance below this (and a
    /// low-balance notice goes out once per crossing).
    public var threshold: Millicredits
    /// Whole credits bought per refill (the host's quote may round up to a package); 0 =
    /// low-balance notices only, no refill.
    public var refillCredits: Int64
    /// Refills started per calendar month (UTC) at most.
    public var refillsPerMonthMax: UInt16
    /// Least time between the starts of two refills, in milliseconds.
    public var cooldownMillis: Int64
    /// Payment attempts of one refill before auto-refill is disabled (1 to 10).
    public var attemptsMax: UInt8

    public static let refillsPerMonthMaxDefault: UInt16 = 10
    public static let cooldownMillisDefault: Int64 = 10 * 60_000
    public static let attemptsMaxDefault: UInt8 = 3
    public static let attemptsMaxLimit: UInt8 = 10
    /// Largest refill: 1,000,000 credits, the largest purchase the price list quotes
    /// (`Quote.creditsMax` in CreditPricing).
    public static let refillCreditsMax: Int64 = 1_000_000

    public init(threshold: Millicredits, refillCredits: Int64, refillsPerMonthMax: UInt16 = refillsPerMonthMaxDefault,
                cooldownMillis: Int64 = cooldownMillisDefault, attemptsMax: UInt8 = attemptsMaxDefault) {
        self.threshold = threshold
        self.refillCredits = refillCredits
        self.refillsPerMonthMax = refillsPerMonthMax
        self.cooldownMillis = cooldownMillis
        self.attemptsMax = attemptsMax
    }
}

/// A refill's successful payment, as the scheduler reports it.
public struct RefillPayment: Sendable, Equatable {
    /// Credits granted (what the payment bought; at least the terms' refill).
    public var amount: Millicredits
    /// When the purchased credits expire (12 months after the purchase).
    public var expiresAt: Timestamp
    /// What the credits cost, in nano-USD per credit.
    public var costBasisNanoUSDPerCredit: UInt32
    /// The payment gateway's reference (recorded as the entry's reason); 1 to
    /// `LedgerLimits.textBytesMax` bytes.
    public var reference: String

    public init(amount: Millicredits, expiresAt: Timestamp, costBasisNanoUSDPerCredit: UInt32, reference: String) {
        self.amount = amount
        self.expiresAt = expiresAt
        self.costBasisNanoUSDPerCredit = costBasisNanoUSDPerCredit
        self.reference = reference
    }
}

/// A refill's failed payment attempt, as the scheduler reports it.
public struct RefillFailure: Sendable, Equatable {
    /// Whether the gateway declined (true) or did not answer (false).
    public var declined: Bool
    /// What the gateway said (recorded as the entry's reason); 1 to
    /// `LedgerLimits.textBytesMax` bytes.
    public var reason: String
    /// When to try again; nil gives up now. Auto-refill is disabled when this was the
    /// terms' last attempt or nil.
    public var retryAt: Timestamp?

    public init(declined: Bool, reason: String, retryAt: Timestamp?) {
        self.declined = declined
        self.reason = reason
        self.retryAt = retryAt
    }
}
