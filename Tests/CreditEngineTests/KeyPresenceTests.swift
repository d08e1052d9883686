import DurabilityTestSupport
import CreditEngine
import Testing

private func key(_ provider: String) -> KeyRegistration {
    KeyRegistration(provider: provider, fingerprint: "…\(provider.prefix(2))", sealed: [7, 7, 7])
}

@Suite("Key presence: which tenants may hold provider keys, known without a trip to the shard")
struct KeyPresenceTests {
    @Test("no tenant has keys at first; a registration is seen once it returned, single or batched; a refused one may be seen")
    func registrationsAreSeen() async throws {
        let engine = makeEngine(shards: 4)
        let keys = KeySource()
        var accounts: [AccountID] = []
        for tenant in UInt64(1) ... 40 { accounts.append(try await engine.openFunded(tenant, credits: credits(10), keys: keys)) }
        #expect(accounts.allSatisfy { !engine.mayHaveKeys($0.tenant) })
        try await engine.succeed(.registerKey(accounts[0], key("OpenAI")), keys: keys)
        #expect(engine.mayHaveKeys(accounts[0].tenant))
        let batch = accounts[10 ..< 20].map { Command(key: keys.next(), .registerKey($0, key("Google"))) }
        for outcome in await engine.execute(batch: batch) { #expect(outcome.isSuccess) }
        #expect(accounts[10 ..< 20].allSatisfy { engine.mayHaveKeys($0.tenant) })
        // Removing the key leaves a "maybe" (bits are never cleared): callers then ask the shard.
        try await engine.succeed(.removeKey(accounts[0], provider: "OpenAI"), keys: keys)
        #expect(engine.mayHaveKeys(accounts[0].tenant))
        // "No" is exact: tenants without keys that the filter calls "maybe" are rare.
        let others = accounts[20...].filter { engine.mayHaveKeys($0.tenant) }
        #expect(others.count <= 1, "false positives among 20 keyless tenants: \(others)")
    }

    @Test("an engine recovered from its data directory knows the tenants that hold keys")
    func recoveryRestoresPresence() async throws {
        let data = try makeTemporaryDirectory("key-presence")
        let configuration = EngineConfiguration(shardCount: 2, storage: StorageConfiguration(directory: data))
        let keys = KeySource()
        let engine = try await CreditEngine.open(configuration: configuration)
        let withKey = try await engine.openFunded(1, credits: credits(10), keys: keys)
        let without = try await engine.openFunded(2, credits: credits(10), keys: keys)
        try await engine.succeed(.registerKey(withKey, key("Anthropic")), keys: keys)
        _ = try await engine.snapshot()
        let org = TenantID(3)
        try await engine.succeed(.openTenant(org, .organisation(departments: [])), keys: keys)
        try await engine.succeed(.registerKey(AccountID(tenant: org, number: 0), key("OpenAI")), keys: keys) // after the snapshot
        await engine.close()

        let reopened = try await CreditEngine.open(configuration: configuration)
        #expect(reopened.mayHaveKeys(withKey.tenant), "from the snapshot")
        #expect(reopened.mayHaveKeys(org), "from the log after it")
        #expect(!reopened.mayHaveKeys(without.tenant))
        await reopened.close()
    }
}
