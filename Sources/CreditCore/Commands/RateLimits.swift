/// How fast an account and a tenant may spend (docs/security.md, "Rate limits"): token
/// buckets of requests per second and of credits per minute, set by command for a tenant
/// (`Action.setRateLimits`) or for every subscriber of a plan (`Action.setPlanRateLimits`),
/// and evaluated in the shard at each spending command's timestamp. A nil rate is no limit.
public struct RateLimits: Sendable, Equatable, Hashable {
    /// Spending requests (debits, charges, reserves) per second, per account. A bucket holds
    /// one second of them, so that many may come at once.
    public var accountRequestsPerSecond: UInt32?
    /// Credits spent per minute, per account. A bucket holds one minute of them.
    public var accountCreditsPerMinute: Millicredits?
    /// The same for the whole tenant (all accounts of an individual, every member of an
    /// organisation together).
    public var tenantRequestsPerSecond: UInt32?
    public var tenantCreditsPerMinute: Millicredits?

    /// Largest rate of requests per second a limit may name.
    public static let requestsPerSecondMax: UInt32 = 1_000_000
    /// Largest rate of credits per minute a limit may name: 10^9 credits.
    public static let creditsPerMinuteMax: Int64 = 1_000_000_000_000

    public init(accountRequestsPerSecond: UInt32? = nil, accountCreditsPerMinute: Millicredits? = nil,
                tenantRequestsPerSecond: UInt32? = nil, tenantCreditsPerMinute: Millicredits? = nil) {
        self.accountRequestsPerSecond = accountRequestsPerSecond
        self.accountCreditsPerMinute = accountCreditsPerMinute
        self.tenantRequestsPerSecond = tenantRequestsPerSecond
        self.tenantCreditsPerMinute = tenantCreditsPerMinute
    }

    /// Every rate in range: requests 1 to `requestsPerSecondMax`, credits 1 mc to
    /// `creditsPerMinuteMax`.
    var isValid: Bool {
        func requests(_ rate: UInt32?) -> Bool { rate.map { $0 >= 1 && $0 <= Self.requestsPerSecondMax } ?? true }
        func credits(_ rate: Millicredits?) -> Bool { rate.map { $0.rawValue >= 1 && $0.rawValue <= Self.creditsPerMinuteMax } ?? true }
        return requests(accountRequestsPerSecond) && requests(tenantRequestsPerSecond)
            && credits(accountCreditsPerMinute) && credits(tenantCreditsPerMinute)
    }
}
