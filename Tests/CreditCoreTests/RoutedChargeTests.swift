import CreditCore
import Testing

/// A candidate as routing would price it: `units` tokens at `list` credits, on system keys.
private func candidate(_ model: String, _ provider: String, list: Millicredits) -> UsageCharge {
    UsageCharge(model: model, provider: provider, units: 1_000, providerCostNanoUSD: 15_000_000, listPrice: list, keySource: .system)
}

/// Premium text as routing offers it: key candidates best first (one per provider), then the
/// cheapest model on system keys.
private let opus = candidate("Claude 3 Opus", "Anthropic", list: credits(15))
private let turbo = candidate("GPT-4 Turbo", "OpenAI", list: credits(15))
private let sonnet = candidate("Claude 3 Sonnet", "Anthropic", list: credits(10))
private let premium = RoutedCharge(candidates: [opus, turbo, sonnet], systemChoice: 2, request: 7)

private func key(_ provider: String) -> KeyRegistration {
    KeyRegistration(provider: provider, fingerprint: "…\(provider.prefix(2))", sealed: [1, 2, 3])
}

@Suite("Routed charges: the ledger picks the key-covered candidate or the system choice, in one command")
struct RoutedChargeTests {
    @Test("without a key the system choice is charged at its list price, and the receipt names it")
    func systemChoiceWithoutKeys() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let (receipt, entry) = try h.succeedWithEntry(.chargeRouted(account, premium, scope: .unscoped))
        #expect(receipt.routedChoice == RoutedChoice(candidate: 2, keySource: .system))
        #expect(receipt.amount == credits(10) && receipt.availableAfter == credits(90))
        #expect(entry.kind == .charged && entry.usage == sonnet)
        #expect(try h.balance(account).consumed == credits(10))
    }

    @Test("a user's key covers the first candidate of its provider: 0 credits, the saving recorded")
    func userKeyCoversFirstCandidateOfItsProvider() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1) // no credits: a key-covered call needs none
        try h.succeed(.registerKey(account, key("OpenAI")))
        let (receipt, entry) = try h.succeedWithEntry(.chargeRouted(account, premium, scope: .unscoped))
        #expect(receipt.routedChoice == RoutedChoice(candidate: 1, keySource: .userKey))
        #expect(receipt.amount == .zero)
        var covered = turbo
        covered.keySource = .userKey
        #expect(entry.usage == covered && entry.usage?.saved == credits(15))
        // An Anthropic key too: Opus comes first in the list, so it wins.
        try h.succeed(.registerKey(account, key("Anthropic")))
        let second = try h.succeed(.chargeRouted(account, premium, scope: .unscoped))
        #expect(second.routedChoice == RoutedChoice(candidate: 0, keySource: .userKey))
    }

    @Test("each key policy decides whose key covers a member's routed charge, at the time of the charge")
    func policiesDecideTheKey() throws {
        var h = LedgerHarness()
        let org = try OrganisationFixture(in: &h, poolCredits: credits(100), departments: [(DepartmentID(1), nil)],
                                          members: [(1, DepartmentID(1), nil)])
        let member = org.member(1)
        // IT-controlled (the default): the organisation's key, never a member's.
        try h.succeed(.registerKey(org.pool, key("Google")))
        h.reject(.registerKey(member, key("OpenAI")), .notAllowed(member, .keysManagedByOrganisation))
        let withGoogle = RoutedCharge(candidates: [opus, turbo, candidate("Gemini Ultra", "Google", list: credits(15)), sonnet],
                                      systemChoice: 3, request: 8)
        #expect(try h.succeed(.chargeRouted(member, withGoogle, scope: .unscoped)).routedChoice
                == RoutedChoice(candidate: 2, keySource: .organisationKey))
        // User-controlled: the member's own key comes first.
        try h.succeed(.setKeyPolicy(org.tenant, .userControlled))
        try h.succeed(.registerKey(member, key("OpenAI")))
        #expect(try h.succeed(.chargeRouted(member, withGoogle, scope: .unscoped)).routedChoice
                == RoutedChoice(candidate: 1, keySource: .userKey))
        // Back to IT-controlled: the member's key stays registered but may not pay.
        try h.succeed(.setKeyPolicy(org.tenant, .itControlled))
        #expect(try h.succeed(.chargeRouted(member, withGoogle, scope: .unscoped)).routedChoice
                == RoutedChoice(candidate: 2, keySource: .organisationKey))
        try h.succeed(.removeKey(org.pool, provider: "Google"))
        let paid = try h.succeed(.chargeRouted(member, withGoogle, scope: .unscoped))
        #expect(paid.routedChoice == RoutedChoice(candidate: 3, keySource: .system) && paid.amount == credits(10))
    }

    @Test("over budget (no system choice) and no covering key: refused, nothing spent; a key makes it go through")
    func noRouteWithinBudget() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let capped = RoutedCharge(candidates: [opus, turbo], systemChoice: nil, request: 9)
        h.reject(.chargeRouted(account, capped, scope: .unscoped), .notAllowed(account, .noRouteWithinBudget))
        #expect(try h.balance(account).consumed == .zero)
        try h.succeed(.registerKey(account, key("OpenAI")))
        let receipt = try h.succeed(.chargeRouted(account, RoutedCharge(candidates: [opus, turbo], systemChoice: nil, request: 10),
                                                  scope: .unscoped))
        #expect(receipt.routedChoice == RoutedChoice(candidate: 1, keySource: .userKey))
    }

    @Test("malformed candidate lists are refused with a typed error and change nothing")
    func malformedCandidates() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let invalid = LedgerError.invalidInput(.routedCandidates)
        h.reject(.chargeRouted(account, RoutedCharge(candidates: [], systemChoice: nil, request: 1), scope: .unscoped), invalid)
        let tooMany = Array(repeating: sonnet, count: LedgerLimits.routedCandidatesMax + 1)
        h.reject(.chargeRouted(account, RoutedCharge(candidates: tooMany, systemChoice: 0, request: 2), scope: .unscoped), invalid)
        let numberedBeyond = RoutedCharge(candidates: [opus, sonnet], systemChoice: 1, request: 2,
                                          numberedFrom: UInt8(LedgerLimits.routedCandidatesMax - 1))
        h.reject(.chargeRouted(account, numberedBeyond, scope: .unscoped), invalid)
        h.reject(.chargeRouted(account, RoutedCharge(candidates: [opus, sonnet], systemChoice: 2, request: 3), scope: .unscoped), invalid)
        var ownKey = sonnet
        ownKey.keySource = .userKey
        h.reject(.chargeRouted(account, RoutedCharge(candidates: [opus, ownKey], systemChoice: 0, request: 4), scope: .unscoped), invalid)
        var unnamed = sonnet
        unnamed.model = ""
        h.reject(.chargeRouted(account, RoutedCharge(only: unnamed, request: 5), scope: .unscoped),
                 .invalidInput(.usageNamesModelAndProvider))
        h.reject(.chargeRouted(AccountID(tenant: TenantID(1), number: 9), premium, scope: .unscoped),
                 .unknownAccount(AccountID(tenant: TenantID(1), number: 9)))
        h.reject(.chargeRouted(account, RoutedCharge(only: candidate("Sora Pro", "OpenAI", list: credits(101)), request: 6),
                               scope: .unscoped), .insufficientCredits(available: credits(100), requested: credits(101)))
        #expect(try h.balance(account).consumed == .zero)
    }

    @Test("a retry is recognised by its request, whatever candidates it carries; another request under the key is a conflict")
    func retriesAreRecognisedByTheRequest() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let retryKey = h.freshKey()
        // First sent as the system choice alone, numbered as in the whole list (the tenant had
        // no key then)…
        let first = try h.succeed(.chargeRouted(account, RoutedCharge(only: sonnet, request: 42, numberedFrom: 2), scope: .unscoped),
                                  key: retryKey)
        try h.succeed(.registerKey(account, key("OpenAI")))
        // …retried with the full list after a key appeared: the same request, the first outcome.
        h.expectReplay(of: Command(key: retryKey, .chargeRouted(account, RoutedCharge(candidates: [opus, turbo, sonnet], systemChoice: 2,
                                                                                 request: 42), scope: .unscoped)),
                       returns: .success(first))
        #expect(first.routedChoice == RoutedChoice(candidate: 2, keySource: .system), "the same number as in the whole list")
        h.expectReplay(of: Command(key: retryKey, .chargeRouted(account, RoutedCharge(only: sonnet, request: 43), scope: .unscoped)),
                       returns: .failure(.idempotencyConflict(retryKey)))
        // A routed charge that spent credits is refundable by its key, like a debit.
        let refund = try h.succeed(.refund(account, debit: retryKey, credits(10)))
        #expect(refund.availableAfter == credits(100))
    }

    @Test("the candidate list round-trips through its parts, and one candidate needs no array")
    func candidateStorage() {
        #expect(premium.count == 3 && premium.candidates == [opus, turbo, sonnet])
        #expect(premium[candidate: 0] == opus && premium[candidate: 2] == sonnet)
        let single = RoutedCharge(only: turbo, request: 1)
        #expect(single == RoutedCharge(candidates: [turbo], systemChoice: 0, request: 1))
        #expect(single.count == 1 && single.candidates == [turbo])
        #expect(RoutedCharge(candidates: [], systemChoice: nil, request: 1).candidates.isEmpty)
    }
}
