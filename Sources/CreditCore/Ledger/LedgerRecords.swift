/// The records the ledger keeps, laid out for memory and cache: fixed-size structs in paged
/// arrays linked by `UInt32` slot indices, not objects. `none` marks an empty link.
let none = UInt32.max

/// Where a tenant's accounts are. Individuals chain their accounts through
/// `AccountRecord.nextInTenant`; organisations index members in their `OrganisationRecord`.
struct TenantSlot: Sendable, Equatable {
    var firstAccount: UInt32
    var organisation: UInt32
    /// The first grant of `firstAccount` (an organisation's pool): lets a lookup fetch the
    /// account and its grant in parallel rather than one after the other.
    var grantHint: UInt32 = none
    /// The tenant's governance line in `Ledger.guards.tenants`, or `none` (derived: rebuilt
    /// when a snapshot is decoded). Fits the entry's padding.
    var guardIndex: UInt32 = none
}

struct AccountRecord: Sendable, Equatable {
    var tenant: TenantID
    var number: UInt32
    var nextInTenant: UInt32
    /// Head of this account's live grants, kept sorted by the static burn order.
    var firstGrant: UInt32
    /// For a member: its index in the organisation's members. For a pool: the organisation.
    var link: UInt32
    var flags: Flags
    var liveGrants: UInt16
    /// The account's slot in `Ledger.schedules` (subscription, auto-refill), or `none`.
    /// Fits the padding before the totals: the record stays 64 bytes.
    var schedule: UInt32 = none
    /// Lifetime totals, in millicredits: granted + debt = remaining + consumed + expired + held.
    var granted: Int64
    var consumed: Int64
    var expired: Int64
    /// Credits spent beyond the grants (negative balance), repaid first by new credits.
    var debt: Int64

    struct Flags: OptionSet, Sendable, Equatable {
        let rawValue: UInt8
        static let frozen = Flags(rawValue: 1)
        static let pool = Flags(rawValue: 2)
        static let member = Flags(rawValue: 4)
        /// At least one live grant has a scope: charges must look for it first.
        static let scopedGrants = Flags(rawValue: 8)
        /// The account holds a provider key. Derived from `Ledger.providerKeys` (not
        /// written to snapshots or digested; rebuilt on decode): lets a charge skip the key
        /// tables for the accounts without keys with a bit of a record it reads anyway.
        static let hasKeys = Flags(rawValue: 16)
        /// The account has auto-refill or low-balance terms: a command that changes its
        /// balance checks them. Derived from `Ledger.schedules` (not written or digested).
        static let watched = Flags(rawValue: 32)
        /// The flags that are state (written and digested).
        static let stored: Flags = [.frozen, .pool, .member, .scopedGrants]
    }

    var holdsGrants: Bool { !flags.contains(.member) }
}

/// One grant, exactly 64 bytes (one cache line in an aligned page). What it has consumed
/// is derived (original − remaining − held); the rare scope lives in `Ledger.grantScopes`.
struct GrantRecord: Sendable, Equatable {
    var number: UInt64
    var original: Int64
    var remaining: Int64
    var held: Int64
    var effectiveAt: Int64
    var expiresAt: Int64
    var costBasis: UInt32
    var account: UInt32
    var next: UInt32
    var priority: UInt8
    var kind: GrantKind
    /// The grant pays only for charges in its scope (`Ledger.grantScopes`).
    var isScoped: Bool
    /// Where the grant is in its life (the record's last byte).
    var state: GrantState = .live

    var consumed: Int64 { original - remaining - held }

    /// For a grant in grace: when its grace ends. A grant in grace keeps its grace end in
    /// `effectiveAt` (later than, or equal to, its expiry): so `isActive` is false at every
    /// time without a test on the hot path, and reinstating it sets both anew.
    var graceEndsAt: Int64 {
        assert(state == .grace, "only a grant in grace has a grace end")
        return effectiveAt
    }

    /// Spendable at `time`: effective and not yet expired.
    @inline(__always)
    func isActive(at time: Int64) -> Bool { effectiveAt <= time && time < expiresAt }

    /// The static part of the burn order: lower priority number, sooner expiry (never last),
    /// cheaper cost basis, older, then grant number. Scope is applied per charge on top.
    @inline(__always)
    func burnsBefore(_ other: GrantRecord) -> Bool {
        (priority, expiresAt, costBasis, effectiveAt, number)
            < (other.priority, other.expiresAt, other.costBasis, other.effectiveAt, other.number)
    }
}

/// A grant's stage of life after its expiry (docs/semantics.md, "Expiry and grace").
enum GrantState: UInt8, Sendable, Equatable {
    /// Spendable between `effectiveAt` and `expiresAt` (or expired, not yet processed).
    case live = 0
    /// Expired: its `remaining` is out of the spendable balance but may be reinstated
    /// until its grace ends (`graceEndsAt`).
    case grace = 1
    /// Grace ended: `remaining` is 0 and what its holds give back is forfeited at once.
    /// Kept only while holds on it are open.
    case forfeited = 2
}

/// The schedule of one account: its subscription and its auto-refill (one record for both:
/// few accounts have either, and both are looked up through `AccountRecord.schedule`).
/// Plain values, in a paged array: a snapshot copies none of it on the debit path.
struct AccountSchedule: Sendable, Equatable {
    var account: UInt32
    // Subscription (`status == nil`: none).
    var status: SubscriptionStatus?
    var lapseReason: LapseReason?
    var rollover: Bool
    var rolloverMonths: UInt8
    /// The current cycle, numbered from 0 at the anchor.
    var cycle: UInt32
    var plan: InternedName
    var allocation: Int64
    var priceCents: Int64
    var anchor: Int64
    /// The current cycle's level: the allocation and price it was granted and paid at (the
    /// terms at the subscription or renewal that started it, raised by upgrades). A change
    /// of plan is charged and granted only above it (`PlanProration`).
    var cycleAllocation: Int64
    var cyclePriceCents: Int64
    // Auto-refill (`refill == nil`: none).
    var refill: RefillTermsRecord?
    /// The refill in flight: the sequence of the entry that started it; 0 = none.
    var inFlight: UInt64
    /// Failed payment attempts of the refill in flight.
    var attempts: UInt8
    /// Set while the balance is below the threshold and the low-balance notice went out.
    var alerted: Bool
    var refillsThisMonth: UInt16
    /// `CalendarMonths.monthNumber` of `refillsThisMonth`.
    var refillMonth: Int64
    var nextAttemptAt: Int64
    /// When the last refill started (`Int64.min`: never).
    var lastRefillAt: Int64
    /// Why auto-refill was disabled: the last failure (nil while enabled).
    var disabledAfter: RefillStop?

    static func empty(account: UInt32) -> AccountSchedule {
        AccountSchedule(account: account, status: nil, lapseReason: nil, rollover: true, rolloverMonths: 0, cycle: 0,
                        plan: .empty, allocation: 0, priceCents: 0, anchor: 0, cycleAllocation: 0, cyclePriceCents: 0, refill: nil, inFlight: 0, attempts: 0,
                        alerted: false, refillsThisMonth: 0, refillMonth: 0, nextAttemptAt: 0, lastRefillAt: .min,
                        disabledAfter: nil)
    }

    /// The start of cycle `cycle`.
    func cycleStart(_ cycle: UInt32) -> Int64 {
        CalendarMonths.adding(Int(cycle), to: Timestamp(millisSinceEpoch: anchor)).millisSinceEpoch
    }

    /// The end of the current cycle (when it renews or lapses).
    var cycleEnd: Int64 { cycleStart(cycle + 1) }

    var watched: Bool { refill != nil }

    /// Starts a cycle at the terms in force: its level is theirs.
    mutating func levelAtTerms() {
        cycleAllocation = allocation
        cyclePriceCents = priceCents
    }
}

/// Auto-refill terms as stored (plain values).
struct RefillTermsRecord: Sendable, Equatable {
    var threshold: Int64
    var refillCredits: Int64
    var cooldownMillis: Int64
    var refillsPerMonthMax: UInt16
    var attemptsMax: UInt8
    /// false once disabled after failed payments (the terms are kept for the view).
    var enabled: Bool
}

/// Why auto-refill stopped.
public enum RefillStop: UInt8, Sendable, Equatable, CustomStringConvertible {
    case paymentDeclined = 1
    case paymentUnavailable = 2

    public var description: String {
        switch self {
        case .paymentDeclined: "payment_declined"
        case .paymentUnavailable: "payment_unavailable"
        }
    }
}

/// A part of a hold: how much it holds from which grant slot.
struct HoldPart: Sendable, Equatable {
    var grant: UInt32
    var amount: Int64
}

struct HoldRecord: Sendable, Equatable {
    /// The account whose grants are held (a member's holds are on the pool).
    var account: UInt32
    /// Who reserved: the member, or the account itself.
    var principal: UInt32
    var amount: Int64
    var expiresAt: Int64
    var scope: ChargeScope
    var parts: [HoldPart]
}

/// A spend cap per billing period: a department's allocation or a member's limit.
struct PeriodCap: Sendable, Equatable {
    /// nil = no cap.
    var cap: Int64?
    var spent: Int64 = 0
    var held: Int64 = 0
    /// How far spending is above the cap without a debit or reserve having passed it: a
    /// settle above its reserve (the call had already happened), or a cap lowered below
    /// what was already spent. Debits and reserves never add to it.
    var overrun: Int64 = 0

    /// What may still be spent or reserved this period.
    var headroom: Int64 { cap.map { max(0, $0 - spent - held) } ?? .max }
}

struct DepartmentRecord: Sendable, Equatable {
    var id: DepartmentID
    var costCentre: String
    var period: PeriodCap
}

struct MemberRecord: Sendable, Equatable {
    var account: UInt32
    var department: Int
    var period: PeriodCap
}

struct OrganisationRecord: Sendable, Equatable {
    var tenant: TenantID
    var pool: UInt32
    var departments: [DepartmentRecord]
    var members: [MemberRecord]
    /// Member account number → account slot.
    var memberSlots: [UInt32: UInt32]
    var periodsStarted: UInt64
    var keyPolicy: KeyPolicy = .itControlled

    func departmentIndex(_ id: DepartmentID) -> Int? { departments.firstIndex { $0.id == id } }
}

/// What the idempotency table remembers of one command (56 bytes: the principal fills the
/// outcome's padding, so a table record stays 80 bytes with the source).
struct Remembered: Sendable, Equatable {
    var fingerprint: UInt64
    var outcome: StoredOutcome
    /// For a successful charge (debit or settle): the principal's slot, and what may still
    /// be refunded. Otherwise `none` and 0.
    var principal: UInt32
    var refundable: Int64
    /// For a charge: where its credits came from, so a refund returns them there
    /// (docs/semantics.md, "Refund"). The number of the one grant it took everything from;
    /// `RefundSource.several` when it took from several grants or ran into debt (the table
    /// keeps the list); `RefundSource.debtOnly` when it took from no grant;
    /// `RefundSource.unknown` when remembered before charges kept their sources (a state
    /// of version 3 or older), or for any other command.
    var source: UInt64 = RefundSource.unknown

    init(fingerprint: UInt64, outcome: StoredOutcome, refundable: Int64, principal: UInt32,
         source: UInt64 = RefundSource.unknown) {
        self.fingerprint = fingerprint
        self.outcome = outcome
        self.refundable = refundable
        self.principal = principal
        self.source = source
    }
}

/// What a charge took from one grant: a refund gives it back there, last taken first.
struct RefundSource: Sendable, Equatable {
    var grant: UInt64
    var amount: Int64

    /// `Remembered.source` values that are not a grant number. Grant numbers are below 2^64 − 2
    /// (`Ledger.grantNumber` keeps them below 2^64).
    static let unknown = UInt64.max
    static let several = UInt64.max - 1
    static let debtOnly: UInt64 = 0
    /// The most grants one charge's sources list: what a charge can burn.
    /// (A settle takes from its hold's grants, then may burn the same grants again.)
    static let listCountMax = 2 * LedgerLimits.grantsPerAccountMax
}

/// Running totals over all accounts, kept separately so the checker can compare them with
/// the per-account sums.
struct LedgerTotals: Sendable, Equatable {
    var granted: Int64 = 0
    var consumed: Int64 = 0
    var expired: Int64 = 0
    var debt: Int64 = 0
}

/// Layout contracts: each record is one cache line.
enum RecordLayout {
    static func check() {
        precondition(MemoryLayout<AccountRecord>.stride == 64, "AccountRecord must be 64 bytes")
        precondition(MemoryLayout<GrantRecord>.stride == 64, "GrantRecord must be 64 bytes")
        precondition(_isPOD(AccountSchedule.self), "AccountSchedule must be plain values")
        precondition(MemoryLayout<IdempotencyTable.Record>.stride == 80, "an idempotency record must be 80 bytes")
    }
}
