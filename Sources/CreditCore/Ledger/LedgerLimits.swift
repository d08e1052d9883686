/// Every bound of the ledger, named, with its unit last. A command that would pass one is
/// rejected with a typed error; nothing grows without limit.
public enum LedgerLimits {
    /// Largest amount one command may move: 10^12 credits ($10 billion).
    public static let amountMax: Int64 = 1_000_000_000_000_000
    /// Live (not yet retired) grants per account.
    public static let grantsPerAccountMax = 1_024
    /// Open holds per shard.
    public static let openHoldsPerShardMax = 4_000_000
    public static let departmentsPerOrganisationMax = 4_096
    /// Longest hold time-out: 7 days.
    public static let holdTimeoutMillisMax: Int64 = 7 * 24 * 3_600_000
    /// Longest cost centre or adjustment reason, in UTF-8 bytes.
    public static let textBytesMax = 256
    /// Largest sealed provider key, in bytes.
    public static let sealedKeyBytesMax = 4_096
    /// Provider keys per account.
    public static let keysPerAccountMax = 64
    /// Candidates of one routed charge (the receipt names the one charged in one byte).
    public static let routedCandidatesMax = 16
    /// Longest grace (and the scheduler's other waits) a command may carry: 10 years.
    public static let graceMillisMax: Int64 = 3_650 * CalendarMonths.millisPerDay
}

/// Settings of one ledger (one shard). Part of its state: a snapshot carries them.
public struct LedgerConfiguration: Sendable, Equatable {
    /// How many recent idempotency keys the shard remembers (the oldest is forgotten first).
    public var idempotencyKeysMax: Int
    /// How long a key is remembered at most, in milliseconds of command time.
    public var idempotencyWindowMillis: Int64
    /// How many recently closed hold ids are remembered to answer `holdNotOpen` rather
    /// than `unknownHold`.
    public var closedHoldsRememberedMax: Int
    /// Entries kept in memory for recent statements (the log keeps all of them).
    public var recentEntriesMax: Int

    public static let idempotencyKeysMaxDefault = 65_536
    /// The smallest per-shard default the engine picks when it splits its budget.
    public static let idempotencyKeysPerShardMin = 4_096
    public static let idempotencyWindowMillisDefault: Int64 = 24 * 3_600_000
    public static let recentEntriesMaxDefault = 4_096

    public init(idempotencyKeysMax: Int = idempotencyKeysMaxDefault,
                idempotencyWindowMillis: Int64 = idempotencyWindowMillisDefault,
                closedHoldsRememberedMax: Int = idempotencyKeysMaxDefault,
                recentEntriesMax: Int = recentEntriesMaxDefault) {
        precondition(idempotencyKeysMax > 0 && idempotencyWindowMillis > 0 && closedHoldsRememberedMax > 0
                     && recentEntriesMax > 0)
        self.recentEntriesMax = recentEntriesMax
        self.idempotencyKeysMax = idempotencyKeysMax
        self.idempotencyWindowMillis = idempotencyWindowMillis
        self.closedHoldsRememberedMax = closedHoldsRememberedMax
    }
}
