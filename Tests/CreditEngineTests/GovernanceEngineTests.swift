@_spi(Plumbing) import CreditPersistence
import CreditEngine
import Testing

/// Governance through the engine: platform roles reach every shard (single calls and
/// batches, in memory and durable, and after a restart), queries are authorized by the
/// engine, rate-limited calls are neither logged nor remembered, and the anomaly guard's
/// alerts are handed over once.
@Suite("governance through the engine")
struct GovernanceEngineTests {
    /// Executes and requires success.
    @discardableResult
    func succeed(_ engine: CreditEngine, _ command: Command, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Receipt {
        switch await engine.execute(command) {
        case .success(let receipt): return receipt
        case .failure(let error):
            Issue.record("expected \(command.action) to succeed: \(error)", sourceLocation: sourceLocation)
            throw error
        }
    }

    /// Tenants 1 to 16 (individuals, 100 credits each): with 4 shards, every shard has some.
    func open(_ engine: CreditEngine, keys: KeySource) async throws -> [AccountID] {
        var accounts: [AccountID] = []
        for tenant in UInt64(1) ... 16 {
            let account = AccountID(tenant: TenantID(tenant), number: 0)
            try await succeed(engine, Command(key: keys.next(), .openTenant(account.tenant, .individual)))
            try await succeed(engine, Command(key: keys.next(), .openAccount(account, .standard)))
            try await succeed(engine, Command(key: keys.next(), .grant(account, GrantTerms(kind: .purchase, amount: credits(100)))))
            accounts.append(account)
        }
        #expect(Set(accounts.map { engine.shardIndex(for: $0.tenant) }).count == engine.configuration.shardCount)
        return accounts
    }

    @Test("a platform role granted once reaches every shard, single and batched, and survives a restart", arguments: [false, true])
    func platformRolesReachEveryShard(durable: Bool) async throws {
        let disk = LightDisk()
        let configuration = durableConfiguration(disk: disk, shards: 4)
        let engine = durable ? try await CreditEngine.open(configuration: configuration, clock: ManualClock(engineStart))
            : makeEngine(shards: 4)
        let keys = KeySource()
        let accounts = try await open(engine, keys: keys)
        let admin = Principal.client(ClientID(1))
        // Before: refused on every shard.
        for account in accounts {
            let outcome = await engine.execute(Command(key: keys.next(), .adjust(account, credits(1), reason: "support"), by: admin))
            #expect(outcome == .failure(.forbidden(.adjust)))
        }
        // Granted once (a single call), it holds on every shard.
        let grant = Command(key: keys.next(), .grantRole(ClientID(1), .platformAdmin))
        guard case .success = await engine.execute(grant) else { Issue.record("the grant failed"); return }
        #expect(await engine.execute(grant) == (await engine.execute(grant)), "a retry gets the same outcome")
        for account in accounts {
            try await succeed(engine, Command(key: keys.next(), .adjust(account, credits(1), reason: "support"), by: admin))
            #expect(await engine.authorize(admin, .readStatements, tenant: account.tenant, account: account) == nil)
        }
        // A platform admin cannot spend.
        #expect(await engine.execute(Command(key: keys.next(), .debit(accounts[0], credits(1), scope: .unscoped), by: admin))
            == .failure(.forbidden(.spend)))
        // Revoked in a batch with other commands: every shard applies it, in order.
        let batch = [Command(key: keys.next(), .adjust(accounts[1], credits(1), reason: "before"), by: admin),
                     Command(key: keys.next(), .revokeRole(ClientID(1), .platformAdmin)),
                     Command(key: keys.next(), .adjust(accounts[2], credits(1), reason: "after"), by: admin)]
        let outcomes = await engine.execute(batch: batch)
        guard case .success = outcomes[0], case .success = outcomes[1] else { Issue.record("\(outcomes)"); return }
        #expect(outcomes[2] == .failure(.forbidden(.adjust)))
        for account in accounts {
            #expect(await engine.authorize(admin, .readStatements, tenant: account.tenant, account: account) == .forbidden(.readStatements))
        }
        // A tenant role stays in its tenant.
        try await succeed(engine, Command(key: keys.next(), .grantRole(ClientID(2), .auditor(accounts[3].tenant))))
        #expect(await engine.roles(of: ClientID(2), in: accounts[3].tenant) == [.auditor(accounts[3].tenant)])
        #expect(await engine.authorize(.client(ClientID(2)), .readBalances, tenant: accounts[3].tenant) == nil)
        #expect(await engine.authorize(.client(ClientID(2)), .readBalances, tenant: accounts[4].tenant) == .forbidden(.readBalances))
        #expect(await engine.authorize(.client(ClientID(2)), .spend, tenant: accounts[3].tenant, account: accounts[3]) == .forbidden(.spend))
        try await succeed(engine, Command(key: keys.next(), .grantRole(ClientID(1), .platformAuditor)))
        let digests = await engine.stateDigests()
        await engine.close()
        guard durable else { return }
        let reopened = try await CreditEngine.open(configuration: configuration, clock: ManualClock(engineStart))
        #expect(await reopened.stateDigests() == digests, "recovery replays the roles on every shard")
        for account in accounts {
            #expect(await reopened.authorize(admin, .readStatements, tenant: account.tenant, account: account) == nil, "auditor")
            #expect(await reopened.authorize(admin, .adjust, tenant: account.tenant, account: account) == .forbidden(.adjust))
        }
        await reopened.close()
    }

    @Test("a rate-limited call is neither logged nor remembered: after a restart the same key succeeds once the wait is over")
    func rateLimitedCallsAreNotLogged() async throws {
        let disk = LightDisk()
        let configuration = durableConfiguration(disk: disk, shards: 2)
        let clock = ManualClock(engineStart)
        let engine = try await CreditEngine.open(configuration: configuration, clock: clock)
        let keys = KeySource()
        let account = AccountID(tenant: TenantID(5), number: 0)
        try await succeed(engine, Command(key: keys.next(), .openTenant(account.tenant, .individual)))
        try await succeed(engine, Command(key: keys.next(), .openAccount(account, .standard)))
        try await succeed(engine, Command(key: keys.next(), .grant(account, GrantTerms(kind: .purchase, amount: credits(100)))))
        try await succeed(engine, Command(key: keys.next(), .setRateLimits(account.tenant, RateLimits(accountRequestsPerSecond: 1))))
        try await succeed(engine, Command(key: keys.next(), .debit(account, credits(1), scope: .unscoped)))
        let key = keys.next()
        let refused = await engine.execute(Command(key: key, .debit(account, credits(1), scope: .unscoped)))
        #expect(refused == .failure(.rateLimited(retryAfterMillis: 1_000)))
        let digests = await engine.stateDigests()
        await engine.close()
        let reopened = try await CreditEngine.open(configuration: configuration, clock: clock)
        #expect(await reopened.stateDigests() == digests)
        #expect(await reopened.rememberedOutcome(of: key, tenant: account.tenant) == nil, "not remembered")
        clock.advance(millis: 1_000)
        guard case .success = await reopened.execute(Command(key: key, .debit(account, credits(1), scope: .unscoped))) else {
            Issue.record("the same key after the wait was refused"); return
        }
        #expect(await reopened.balance(of: account)?.available == credits(98))
        await reopened.close()
    }
}
