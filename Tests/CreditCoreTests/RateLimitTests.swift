import Testing
@_spi(Plumbing) @testable import CreditCore

/// Rate limits: token buckets evaluated at the command's timestamp; a refusal records
/// nothing and is not remembered, so the same request retried after the wait is applied.
@Suite("rate limits")
struct RateLimitTests {
    @Test("requests per second: the bucket's second of requests, then a refusal naming the wait; the same key after it succeeds")
    func requestsPerSecond() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        try h.succeed(.setRateLimits(account.tenant, RateLimits(accountRequestsPerSecond: 4)))
        for _ in 0 ..< 4 { try h.debit(account, credits(1)) }
        let key = h.freshKey()
        let digest = h.ledger.stateDigest()
        let sequence = h.ledger.nextSequence
        let refused = h.ledger.apply(Command(key: key, .debit(account, credits(1), scope: .unscoped)), at: h.now)
        // 4 per second refill one request in 250 ms.
        #expect(refused.outcome == .failure(.rateLimited(retryAfterMillis: 250)))
        #expect(refused.entry == nil, "no entry")
        #expect(h.ledger.nextSequence == sequence && h.ledger.stateDigest() == digest, "nothing changed, nothing remembered")
        h.advance(249)
        #expect(h.ledger.apply(Command(key: key, .debit(account, credits(1), scope: .unscoped)), at: h.now).outcome
            == .failure(.rateLimited(retryAfterMillis: 1)))
        h.advance(1)
        let applied = try h.succeed(.debit(account, credits(1), scope: .unscoped), key: key)
        #expect(applied.amount == credits(1))
        // A retry now is answered from the idempotency table, taking no token.
        #expect(h.ledger.apply(Command(key: key, .debit(account, credits(1), scope: .unscoped)), at: h.now).outcome == .success(applied))
        #expect(h.ledger.rateLimitedCount == 2)
    }

    @Test("credits per minute: spending drains the bucket, the wait is until it holds the amount; settles and releases are never limited")
    func creditsPerMinute() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(1_000))
        try h.succeed(.setRateLimits(account.tenant, RateLimits(accountCreditsPerMinute: credits(10))))
        try h.debit(account, credits(6))
        // 4 credits left; 6 needs 2 more: 2/10 of a minute.
        #expect(h.ledger.apply(Command(key: h.freshKey(), .debit(account, credits(6), scope: .unscoped)), at: h.now).outcome
            == .failure(.rateLimited(retryAfterMillis: 12_000)))
        let hold = try h.reserve(account, credits(4))
        #expect(h.ledger.apply(Command(key: h.freshKey(), .debit(account, Millicredits(1), scope: .unscoped)), at: h.now).outcome
            == .failure(.rateLimited(retryAfterMillis: 6)))
        // Settling above the reserve (the call already happened) is not refused.
        try h.succeed(.settle(hold, actual: credits(9)))
        h.advance(60_000)
        try h.debit(account, credits(10))
        // An amount above a minute's worth passes once the bucket is full, leaving it in deficit.
        h.advance(60_000)
        try h.debit(account, credits(25))
        #expect(h.ledger.apply(Command(key: h.freshKey(), .debit(account, credits(1), scope: .unscoped)), at: h.now).outcome
            == .failure(.rateLimited(retryAfterMillis: 66_000)))
    }

    @Test("a tenant bucket is shared by the organisation's members; a tenant's own limits win over its plan's")
    func tenantAndPlanLimits() throws {
        var h = LedgerHarness()
        let org = try OrganisationFixture(in: &h, tenant: 10, poolCredits: credits(1_000), departments: [(DepartmentID(1), nil)],
                                          members: [(1, DepartmentID(1), nil), (2, DepartmentID(1), nil)])
        try h.succeed(.subscribe(org.pool, SubscriptionTerms(plan: "Team", allocation: credits(10), priceCents: 0)))
        try h.succeed(.setPlanRateLimits(plan: "Team", RateLimits(tenantRequestsPerSecond: 3)))
        try h.debit(org.member(1), credits(1))
        try h.debit(org.member(2), credits(1))
        try h.debit(org.member(1), credits(1))
        #expect(h.ledger.apply(Command(key: h.freshKey(), .debit(org.member(2), credits(1), scope: .unscoped)), at: h.now).outcome
            == .failure(.rateLimited(retryAfterMillis: 334)))
        // The tenant's own limits replace the plan's.
        try h.succeed(.setRateLimits(org.tenant, RateLimits(accountRequestsPerSecond: 100)))
        try h.debit(org.member(2), credits(1))
        // An individual without a subscription to that plan is not limited by it.
        let solo = try h.openIndividual(20)
        try h.grant(solo, credits(10))
        for _ in 0 ..< 10 { try h.debit(solo, Millicredits(1)) }
        // Removing the plan's limits and the tenant's lifts them.
        try h.succeed(.setRateLimits(org.tenant, nil))
        try h.succeed(.setPlanRateLimits(plan: "Team", nil))
        for _ in 0 ..< 10 { try h.debit(org.member(1), Millicredits(1)) }
    }

    @Test("bad limits and unknown tenants are refused by name")
    func badLimits() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        h.reject(.setRateLimits(account.tenant, RateLimits(accountRequestsPerSecond: 0)), .invalidInput(.rateLimits))
        h.reject(.setRateLimits(account.tenant, RateLimits(accountRequestsPerSecond: RateLimits.requestsPerSecondMax + 1)),
                 .invalidInput(.rateLimits))
        h.reject(.setRateLimits(account.tenant, RateLimits(tenantCreditsPerMinute: Millicredits(-1))), .invalidInput(.rateLimits))
        h.reject(.setRateLimits(account.tenant, RateLimits(tenantCreditsPerMinute: Millicredits(RateLimits.creditsPerMinuteMax + 1))),
                 .invalidInput(.rateLimits))
        h.reject(.setRateLimits(TenantID(404), RateLimits(accountRequestsPerSecond: 1)), .unknownTenant(TenantID(404)))
        h.reject(.setPlanRateLimits(plan: "", RateLimits(accountRequestsPerSecond: 1)), .invalidInput(.rateLimits))
    }

    @Test("random traffic under limits: replay and a restored snapshot give the same outcomes and digests (seed printed)")
    func deterministic() throws {
        let seed = UInt64.random(in: 0 ... .max)
        print("RateLimitTests.deterministic: seed \(seed)")
        var random = SplitMix64(seed: seed)
        var h = LedgerHarness()
        let org = try OrganisationFixture(in: &h, tenant: 10, poolCredits: credits(100_000), departments: [(DepartmentID(1), nil)],
                                          members: [(1, DepartmentID(1), nil), (2, DepartmentID(1), nil)])
        try h.succeed(.setRateLimits(org.tenant, RateLimits(accountRequestsPerSecond: 5, accountCreditsPerMinute: credits(50),
                                                            tenantRequestsPerSecond: 8, tenantCreditsPerMinute: credits(80))))
        var commands: [(Command, Timestamp)] = []
        var replica = h.ledger // the same set-up; then the same commands at the same times
        var restoredAt: Int?
        var restored: Ledger?
        var limited = 0
        for index in 0 ..< 3_000 {
            h.advance(Int64(random.below(120)))
            let member = org.member(UInt32(random.between(1, 2)))
            let action: Action = random.chance(80) ? .debit(member, Millicredits(random.between(1, 9_000)), scope: .unscoped)
                : .reserve(member, Millicredits(random.between(1, 9_000)), timeoutMillis: 1_000, scope: .unscoped)
            let command = Command(key: h.freshKey(), action)
            let outcome = h.ledger.apply(command, at: h.now).outcome
            if case .failure(.rateLimited(let wait)) = outcome {
                limited += 1
                #expect(wait > 0 && wait <= 60_000, "seed \(seed)")
            }
            commands.append((command, h.now))
            if index == 1_500 {
                var writer = ByteWriter()
                h.ledger.encodeState(into: &writer)
                var reader = ByteReader(writer.bytes)
                restored = try Ledger(decodingState: &reader, configuration: h.ledger.configuration)
                restoredAt = index
            } else if let start = restoredAt, index > start {
                #expect(restored!.apply(command, at: h.now).outcome == outcome, "seed \(seed), command \(index)")
            }
        }
        for (command, time) in commands { _ = replica.apply(command, at: time) }
        #expect(replica.stateDigest() == h.ledger.stateDigest(), "seed \(seed)")
        #expect(restored!.stateDigest() == h.ledger.stateDigest(), "seed \(seed)")
        #expect(limited > 0, "seed \(seed): the limits were reached") // 3,000 requests at ~17/s against 8/s
        #expect(h.ledger.invariantViolations() == [])
    }
}
