/// The record of one applied command: what changed, which grants, the amounts, the balance
/// after, who acted and why. Successful and rejected commands both produce one; entries are
/// handed to the log and a statement per account is a filter over them.
public struct LedgerEntry: Sendable, Equatable {
    public let sequence: UInt64
    public let time: Timestamp
    public let key: IdempotencyKey
    public let kind: EntryKind
    /// The account whose credits moved: for a member's spending, the organisation pool.
    public let account: AccountID?
    /// The account that acted: the member for organisation spending (the credits moved on
    /// the pool, `account`), otherwise the account itself.
    public let member: AccountID?
    /// Who asked for the command (docs/security.md).
    public let principal: Principal
    public let amount: Millicredits
    public let availableAfter: Millicredits
    public let debtAfter: Millicredits
    public let movements: GrantMovements
    public let reason: String?
    /// For a charge: the model, provider, units, costs and key source it recorded.
    public let usage: UsageCharge?
    /// Set when the command was rejected; nothing else changed.
    public let error: LedgerError?
    let created: Receipt.Created

    /// The outcome returned to the caller (and to any retry of the same key).
    public var outcome: Outcome {
        if let error { return .failure(error) }
        return .success(Receipt(sequence: sequence, amount: amount, availableAfter: availableAfter,
                                tenant: tenant, created: created))
    }

    /// The tenant of the command (its shard).
    public let tenant: TenantID
}

public enum EntryKind: UInt8, Sendable, CaseIterable {
    case tenantOpened = 1, departmentOpened, accountOpened, granted, debited, reserved, settled,
         released, refunded, adjusted, frozen, unfrozen, departmentAllocationSet, memberLimitSet,
         periodStarted, holdTimedOut, charged, keyRegistered, keyRemoved, keyPolicySet,
         subscribed, subscriptionChanged, subscriptionCancelled, subscriptionResumed, renewed, lapsed,
         grantsExpired, grantsForfeited, autoRefillSet, refillCompleted, refillFailed, roleGranted, roleRevoked,
         rateLimitsSet, anomalyModeSet
}

/// One grant-level change inside an entry.
public struct GrantMovement: Sendable, Equatable {
    public enum Change: UInt8, Sendable {
        /// Spent from the grant's remaining (or its hold part).
        case consumed = 1
        /// Moved from remaining to held by a reserve.
        case held
        /// Moved from held back to remaining (release, or a settle below the reserve).
        case unheld
        /// Given back by a refund.
        case refilled
        /// A new grant's amount.
        case created
        /// Taken from a new grant to repay debt.
        case repaidDebt
        /// Left the spendable balance at the grant's expiry: in grace (reinstatable).
        case expired
        /// Lost at the end of grace (or released from a hold onto a forfeited grant).
        case forfeited
        /// Back from grace into the spendable balance, with a new expiry.
        case reinstated
        /// Moved out of an ending cycle's allocation into a rollover grant (whose
        /// `created` movement follows).
        case rolledOver
    }
    public let grant: UInt64
    public let amount: Millicredits
    public let change: Change
}

/// The movements of one entry. The first two are stored inline because almost every debit
/// touches one or two grants; more spill into an array.
public struct GrantMovements: Sendable, Equatable, RandomAccessCollection {
    private var inline0: GrantMovement?
    private var inline1: GrantMovement?
    private var spilled: [GrantMovement] = []

    public init() {}

    public var startIndex: Int { 0 }
    public var endIndex: Int { (inline0 == nil ? 0 : 1) + (inline1 == nil ? 0 : 1) + spilled.count }
    /// The number of movements, without the collection's generic walk (the ledger asks for
    /// every charge it remembers).
    @inline(__always)
    public var count: Int { endIndex }

    public subscript(position: Int) -> GrantMovement {
        switch position {
        case 0: return inline0!
        case 1: return inline1!
        default: return spilled[position - 2]
        }
    }

    /// Empties the movements (without touching the spill array when it is already empty),
    /// keeping the spill array's buffer: the ledger's per-command draft is emptied for
    /// every command, and a debit across several grants grew the array from nothing each
    /// time (three allocations for five grants; Benchmarks/README.md).
    @inline(__always)
    mutating func removeAll() {
        inline0 = nil
        inline1 = nil
        if !spilled.isEmpty { spilled.removeAll(keepingCapacity: true) }
    }

    mutating func append(_ movement: GrantMovement) {
        if inline0 == nil { inline0 = movement } else if inline1 == nil { inline1 = movement } else { spilled.append(movement) }
    }
}
