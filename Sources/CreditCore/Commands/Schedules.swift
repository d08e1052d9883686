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

/// A change of plan as one command (`Action.changePlan`): the terms it replaces are named, so
/// a change decided on a stale read is refused, and an upgrade's credits for the rest of the
/// cycle are granted in the same step (docs/semantics.md, "Changing plans").
public struct PlanChangeRequest: Sendable, Equatable {
    /// The plan the caller read and means to replace: a compare-and-set. The command is
    /// refused with `LedgerError.planChanged` when the subscription's plan is another.
    /// nil: a deferred change (log tag 24, as written before plan changes were paid): the new
    /// terms apply from the next renewal, nothing is charged or granted now, and the cycle's
    /// level stays.
    public var replacing: InternedName?
    /// The new plan's terms; they renew from the next cycle on (`anchor` is ignored: the
    /// subscription keeps its cycles).
    public var terms: SubscriptionTerms
    /// What the host took through its payment gateway for the rest of the current cycle,
    /// in US cents (`PlanProration.chargeCents`); at most the price difference. 0 for a
    /// deferred change.
    public var paidCents: Int64
    /// The payment's reference at the gateway (recorded as the entry's reason); empty when
    /// nothing was paid, else 1 to `LedgerLimits.textBytesMax` bytes.
    public var reference: String

    public init(replacing: String, terms: SubscriptionTerms, paidCents: Int64 = 0, reference: String = "") {
        self.replacing = InternedName(replacing)
        self.terms = terms
        self.paidCents = paidCents
        self.reference = reference
    }

    /// A deferred change: `terms` from the next renewal on, nothing charged or granted now.
    public init(deferring terms: SubscriptionTerms) {
        replacing = nil
        self.terms = terms
        paidCents = 0
        reference = ""
    }

    /// Whether this is a deferred change (no plan named, nothing paid).
    public var isDeferred: Bool { replacing == nil && paidCents == 0 && reference.isEmpty }
}

/// What a change of plan does now, by the rule in docs/semantics.md ("Changing plans").
///
/// The current cycle has a level: the allocation and price it was granted and paid at
/// (set by the subscription or the renewal, raised by upgrades, never lowered within the
/// cycle). A change that raises neither (a downgrade, or a return to terms the cycle was
/// already paid at) is deferred: it applies from the next renewal, and nothing is charged
/// or granted. Otherwise it is an upgrade: the price difference above
/// the level is charged for the share of the cycle left, rounded down to the cent (the
/// customer never pays for time they do not get), and the allocation difference above the
/// level is granted in the proportion of the price difference paid, rounded down to the
/// millicredit (never more credits than were paid for). When the price does not rise, the
/// allocation difference is granted for the share of the cycle left at the command's time.
public enum PlanProration {
    public enum Kind: UInt8, Sendable, Equatable, CustomStringConvertible {
        /// Raises the cycle's allocation or price: charged and granted now.
        case upgrade = 1
        /// Raises neither (a downgrade, or a return to terms this cycle was already paid at):
        /// the new terms start with the next renewal.
        case deferred
        /// The same allocation and price as the terms in force.
        case unchanged

        public var description: String {
            switch self {
            case .upgrade: "upgrade"
            case .deferred: "deferred"
            case .unchanged: "unchanged"
            }
        }
    }

    /// Upgrade, deferred or unchanged: the new terms against the cycle's level and the terms
    /// in force.
    public static func kind(levelAllocation: Millicredits, levelPriceCents: Int64, current: SubscriptionTerms,
                            new: SubscriptionTerms) -> Kind {
        if new.allocation > levelAllocation || new.priceCents > levelPriceCents { return .upgrade }
        return new.allocation == current.allocation && new.priceCents == current.priceCents ? .unchanged : .deferred
    }

    /// The cents an upgrade charges at `time` in the cycle `[cycleStart, cycleEnd)`: the
    /// price difference above the level times the share of the cycle left, rounded down.
    /// 0 for a deferred change, and from the cycle's end on (a renewal that is due charges the new
    /// price whole). Preconditions: `cycleStart <= time`, `cycleStart < cycleEnd`, prices
    /// within 0 ... `SubscriptionTerms.priceCentsMax`.
    public static func chargeCents(levelPriceCents: Int64, newPriceCents: Int64, cycleStart: Timestamp,
                                   cycleEnd: Timestamp, at time: Timestamp) -> Int64 {
        let difference = max(0, newPriceCents - levelPriceCents)
        return share(difference, cycleStart: cycleStart, cycleEnd: cycleEnd, at: time)
    }

    /// The millicredits an upgrade grants: the allocation difference above the level, in the
    /// proportion `paidCents` is of the price difference (or, when the price does not rise,
    /// for the share of the cycle left at `time`), rounded down.
    public static func grant(levelAllocation: Millicredits, levelPriceCents: Int64, new: SubscriptionTerms,
                             paidCents: Int64, cycleStart: Timestamp, cycleEnd: Timestamp, at time: Timestamp) -> Millicredits {
        let allocation = max(0, new.allocation.rawValue - levelAllocation.rawValue)
        let price = max(0, new.priceCents - levelPriceCents)
        guard price > 0 else { return Millicredits(share(allocation, cycleStart: cycleStart, cycleEnd: cycleEnd, at: time)) }
        precondition((0 ... price).contains(paidCents), "paid more than the price difference")
        return Millicredits(scaled(allocation, by: paidCents, of: price))
    }

    /// `value` × (cycleEnd − time) ÷ (cycleEnd − cycleStart), rounded down, in full width;
    /// 0 from the cycle's end on.
    static func share(_ value: Int64, cycleStart: Timestamp, cycleEnd: Timestamp, at time: Timestamp) -> Int64 {
        let start = cycleStart.millisSinceEpoch
        let end = cycleEnd.millisSinceEpoch
        let now = time.millisSinceEpoch
        precondition(start <= now && start < end && value >= 0, "a share of a cycle that has not started")
        return now >= end ? 0 : scaled(value, by: end - now, of: end - start)
    }

    /// `value` × `part` ÷ `whole`, rounded down, without overflow (0 <= part <= whole).
    static func scaled(_ value: Int64, by part: Int64, of whole: Int64) -> Int64 {
        precondition(value >= 0 && part >= 0 && part <= whole && whole > 0)
        let product = UInt64(value).multipliedFullWidth(by: UInt64(part))
        let quotient = UInt64(whole).dividingFullWidth(product).quotient
        return Int64(quotient) // at most `value`: part <= whole
    }
}
