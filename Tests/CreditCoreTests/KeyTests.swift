import CreditCore
import Testing
@_spi(Plumbing) import CreditCore

private func key(_ provider: String, _ fingerprint: String = "sk-…abcd") -> KeyRegistration {
    KeyRegistration(provider: provider, fingerprint: fingerprint, sealed: Array("sealed:\(provider):\(fingerprint)".utf8))
}

private func ownKeyCall(_ provider: String, _ source: KeySource) -> UsageCharge {
    UsageCharge(model: provider == "OpenAI" ? "GPT-4o" : "Claude 3 Opus", provider: provider, units: 1_000,
                providerCostNanoUSD: 15_000_000, listPrice: credits(10), keySource: source)
}

@Suite("Provider keys and key policies: who may register, which key pays, and what a snapshot keeps")
struct KeyTests {
    @Test("an individual's key makes its calls on that provider free; without it (or after removal) an own-key charge is refused")
    func individualKeys() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        h.reject(.charge(account, ownKeyCall("OpenAI", .userKey), scope: .unscoped), .notAllowed(account, .keyNotUsable))
        let (_, entry) = try h.succeedWithEntry(.registerKey(account, key("OpenAI")))
        #expect(entry.kind == .keyRegistered && entry.reason == "OpenAI key sk-…abcd")
        #expect(h.ledger.keyForCall(by: account, provider: "OpenAI")?.source == .userKey)
        #expect(h.ledger.keyForCall(by: account, provider: "OpenAI")?.registration == key("OpenAI"))
        #expect(h.ledger.keyForCall(by: account, provider: "Anthropic")?.source == .system)
        try h.succeed(.charge(account, ownKeyCall("OpenAI", .userKey), scope: .unscoped))
        h.reject(.charge(account, ownKeyCall("Anthropic", .userKey), scope: .unscoped), .notAllowed(account, .keyNotUsable))
        h.reject(.charge(account, ownKeyCall("OpenAI", .organisationKey), scope: .unscoped), .notAllowed(account, .keyNotUsable))
        // Rotation replaces the key; removal ends its use.
        try h.succeed(.registerKey(account, key("OpenAI", "sk-…wxyz")))
        #expect(h.ledger.registeredKeys(of: account) == [key("OpenAI", "sk-…wxyz")])
        try h.succeed(.removeKey(account, provider: "OpenAI"))
        h.reject(.removeKey(account, provider: "OpenAI"), .notAllowed(account, .noKeyForProvider))
        h.reject(.charge(account, ownKeyCall("OpenAI", .userKey), scope: .unscoped), .notAllowed(account, .keyNotUsable))
        #expect(h.ledger.registeredKeys(of: account).isEmpty)
    }

    @Test("bad registrations are refused and change nothing")
    func badRegistrations() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        h.reject(.registerKey(account, KeyRegistration(provider: "", fingerprint: "x", sealed: [1])), .invalidInput(.keyRegistrationIncomplete))
        h.reject(.registerKey(account, KeyRegistration(provider: "OpenAI", fingerprint: "", sealed: [1])), .invalidInput(.keyRegistrationIncomplete))
        h.reject(.registerKey(account, KeyRegistration(provider: "OpenAI", fingerprint: "x", sealed: [])), .invalidInput(.keyRegistrationIncomplete))
        h.reject(.registerKey(account, KeyRegistration(provider: "OpenAI", fingerprint: "x",
                                                       sealed: [UInt8](repeating: 7, count: LedgerLimits.sealedKeyBytesMax + 1))),
                 .invalidInput(.keyRegistrationIncomplete))
        h.reject(.registerKey(account, KeyRegistration(provider: String(repeating: "p", count: 257), fingerprint: "x", sealed: [1])),
                 .invalidInput(.textTooLong))
        h.reject(.registerKey(AccountID(tenant: TenantID(1), number: 5), key("OpenAI")), .unknownAccount(AccountID(tenant: TenantID(1), number: 5)))
        h.reject(.setKeyPolicy(TenantID(1), .hybrid), .notAllowed(account, .keyPoliciesAreForOrganisations))
        h.reject(.setKeyPolicy(TenantID(77), .hybrid), .unknownTenant(TenantID(77)))
        for index in 0 ..< LedgerLimits.keysPerAccountMax { try h.succeed(.registerKey(account, key("P\(index)"))) }
        h.reject(.registerKey(account, key("one too many")), .limitReached(.keysPerAccount))
        try h.succeed(.registerKey(account, key("P0", "rotated"))) // replacing is not adding
    }

    @Test("IT-controlled (the default): members may not register keys; the organisation's key pays")
    func itControlled() throws {
        var h = LedgerHarness()
        let org = try OrganisationFixture(in: &h, poolCredits: credits(100), departments: [(DepartmentID(1), nil)],
                                          members: [(1, DepartmentID(1), nil)])
        let member = org.member(1)
        #expect(h.ledger.keyPolicy(of: org.tenant) == .itControlled)
        h.reject(.registerKey(member, key("OpenAI")), .notAllowed(member, .keysManagedByOrganisation))
        h.reject(.charge(member, ownKeyCall("OpenAI", .organisationKey), scope: .unscoped), .notAllowed(member, .keyNotUsable))
        try h.succeed(.registerKey(org.pool, key("OpenAI", "org-…1111")))
        #expect(h.ledger.keyForCall(by: member, provider: "OpenAI")?.source == .organisationKey)
        let (_, entry) = try h.succeedWithEntry(.charge(member, ownKeyCall("OpenAI", .organisationKey), scope: .unscoped))
        #expect(entry.amount == .zero && entry.member == member)
        h.reject(.charge(member, ownKeyCall("OpenAI", .userKey), scope: .unscoped), .notAllowed(member, .keyNotUsable))
        // The pool's own key is the organisation's, not a "user key".
        h.reject(.charge(org.pool, ownKeyCall("OpenAI", .userKey), scope: .unscoped), .notAllowed(org.pool, .keyNotUsable))
    }

    @Test("hybrid: members add keys only for providers the organisation does not cover; an organisation key added later takes over")
    func hybrid() throws {
        var h = LedgerHarness()
        let org = try OrganisationFixture(in: &h, poolCredits: credits(100), departments: [(DepartmentID(1), nil)],
                                          members: [(1, DepartmentID(1), nil)])
        let member = org.member(1)
        try h.succeed(.setKeyPolicy(org.tenant, .hybrid))
        try h.succeed(.registerKey(org.pool, key("OpenAI", "org")))
        h.reject(.registerKey(member, key("OpenAI")), .notAllowed(member, .providerCoveredByOrganisation))
        try h.succeed(.registerKey(member, key("Anthropic", "mine")))
        #expect(h.ledger.keyForCall(by: member, provider: "Anthropic")?.source == .userKey)
        try h.succeed(.charge(member, ownKeyCall("Anthropic", .userKey), scope: .unscoped))
        try h.succeed(.registerKey(org.pool, key("Anthropic", "org")))
        #expect(h.ledger.keyForCall(by: member, provider: "Anthropic")?.source == .organisationKey)
        h.reject(.charge(member, ownKeyCall("Anthropic", .userKey), scope: .unscoped), .notAllowed(member, .keyNotUsable))
    }

    @Test("user-controlled: members' keys first, then the organisation's; a policy change applies to the next call")
    func userControlledAndPolicyChanges() throws {
        var h = LedgerHarness()
        let org = try OrganisationFixture(in: &h, poolCredits: credits(100), departments: [(DepartmentID(1), nil)],
                                          members: [(1, DepartmentID(1), nil)])
        let member = org.member(1)
        try h.succeed(.registerKey(org.pool, key("OpenAI", "org")))
        h.reject(.registerKey(member, key("OpenAI")), .notAllowed(member, .keysManagedByOrganisation))
        let (_, entry) = try h.succeedWithEntry(.setKeyPolicy(org.tenant, .userControlled))
        #expect(entry.kind == .keyPolicySet && entry.reason == "key policy user_controlled")
        try h.succeed(.registerKey(member, key("OpenAI", "mine")))
        #expect(h.ledger.keyForCall(by: member, provider: "OpenAI")?.source == .userKey)
        try h.succeed(.charge(member, ownKeyCall("OpenAI", .userKey), scope: .unscoped))
        try h.succeed(.charge(member, ownKeyCall("OpenAI", .organisationKey), scope: .unscoped))
        // Back to IT-controlled: the member's key stays registered but no longer pays.
        try h.succeed(.setKeyPolicy(org.tenant, .itControlled))
        #expect(h.ledger.keyForCall(by: member, provider: "OpenAI")?.source == .organisationKey)
        h.reject(.charge(member, ownKeyCall("OpenAI", .userKey), scope: .unscoped), .notAllowed(member, .keyNotUsable))
        #expect(h.ledger.registeredKeys(of: member) == [key("OpenAI", "mine")])
    }

    @Test("a snapshot keeps keys and policies: the restored ledger answers the same and has the same digest")
    func snapshotRoundTrip() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let org = try OrganisationFixture(in: &h, poolCredits: credits(100), departments: [(DepartmentID(1), nil)],
                                          members: [(1, DepartmentID(1), nil)])
        try h.succeed(.registerKey(account, key("OpenAI")))
        try h.succeed(.registerKey(account, key("Anthropic", "second")))
        try h.succeed(.setKeyPolicy(org.tenant, .hybrid))
        try h.succeed(.registerKey(org.pool, key("Runway", "org")))
        try h.succeed(.registerKey(org.member(1), key("OpenAI", "member")))
        var writer = ByteWriter()
        h.ledger.encodeState(into: &writer)
        var reader = ByteReader(writer.bytes)
        let restored = try Ledger(decodingState: &reader, configuration: h.ledger.configuration)
        #expect(reader.isAtEnd)
        #expect(restored.stateDigest() == h.ledger.stateDigest())
        #expect(restored.keyPolicy(of: org.tenant) == .hybrid)
        #expect(restored.registeredKeys(of: account) == [key("Anthropic", "second"), key("OpenAI")])
        for (who, provider) in [(account, "OpenAI"), (org.member(1), "Runway"), (org.member(1), "OpenAI"), (org.member(1), "Luma AI")] {
            #expect(restored.keyForCall(by: who, provider: provider)?.source == h.ledger.keyForCall(by: who, provider: provider)?.source)
        }
        // The digest sees keys: removing one changes it.
        var changed = h.ledger
        _ = changed.apply(Command(key: IdempotencyKey(high: 99, low: 1), .removeKey(account, provider: "OpenAI")), at: h.now)
        #expect(changed.stateDigest() != restored.stateDigest())
    }
}

@Suite("Usable keys: the providers routing may treat as free for an account")
struct UsableKeyTests {
    @Test("an individual's own keys; a member's follow the policy, the organisation's included")
    func usableKeysFollowPolicy() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.succeed(.registerKey(account, KeyRegistration(provider: "OpenAI", fingerprint: "f", sealed: [1])))
        #expect(h.ledger.usableKeys(for: account) == ["OpenAI": .userKey])
        let org = try OrganisationFixture(in: &h, poolCredits: credits(10), departments: [(DepartmentID(1), nil)],
                                          members: [(1, DepartmentID(1), nil)])
        let member = org.member(1)
        try h.succeed(.registerKey(org.pool, KeyRegistration(provider: "Runway", fingerprint: "f", sealed: [1])))
        #expect(h.ledger.usableKeys(for: member) == ["Runway": .organisationKey])
        try h.succeed(.setKeyPolicy(org.tenant, .userControlled))
        try h.succeed(.registerKey(member, KeyRegistration(provider: "Runway", fingerprint: "m", sealed: [2])))
        try h.succeed(.registerKey(member, KeyRegistration(provider: "Anthropic", fingerprint: "m", sealed: [2])))
        #expect(h.ledger.usableKeys(for: member) == ["Runway": .userKey, "Anthropic": .userKey])
        try h.succeed(.setKeyPolicy(org.tenant, .itControlled))
        #expect(h.ledger.usableKeys(for: member) == ["Runway": .organisationKey])
        try h.succeed(.removeKey(org.pool, provider: "Runway"))
        #expect(h.ledger.usableKeys(for: member).isEmpty)
        #expect(h.ledger.usableKeys(for: AccountID(tenant: TenantID(9), number: 0)).isEmpty)
    }
}
