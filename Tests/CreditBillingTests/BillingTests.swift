import DurabilityTestSupport
import CreditBilling
import CreditEngine
import CreditPricing
import Testing

private let start = Timestamp(millisSinceEpoch: 1_767_225_600_000) // 2026-01-01T00:00:00Z
private func credits(_ whole: Int64) -> Millicredits { Millicredits(whole * Millicredits.perCredit) }
private func sum(_ a: Millicredits, _ b: Millicredits) -> Millicredits { Millicredits(a.rawValue + b.rawValue) }

/// An in-memory engine, a billing service on it, and a tenant counter for fresh keys.
private struct Fixture {
    let clock = ManualClock(start)
    let engine: CreditEngine
    let gateway = InMemoryPaymentGateway()
    let billing: Billing
    private let counter = KeyCounter()

    init() throws {
        engine = CreditEngine(configuration: EngineConfiguration(shardCount: 2), clock: clock)
        billing = Billing(engine: engine, sealer: try KeySealer(keyBytes: KeySealer.randomKeyBytes()), payments: gateway)
    }

    func key() -> IdempotencyKey { IdempotencyKey(high: 0xB111, low: counter.next()) }

    func succeed(_ action: Action) async throws {
        if case .failure(let error) = await engine.execute(Command(key: key(), action)) { throw error }
    }

    /// An individual with account 0 holding `amount` promotional credits.
    func individual(_ id: UInt64, credits amount: Millicredits) async throws -> AccountID {
        let account = AccountID(tenant: TenantID(id), number: 0)
        try await succeed(.openTenant(TenantID(id), .individual))
        try await succeed(.openAccount(account, .standard))
        if amount > .zero { try await succeed(.grant(account, GrantTerms(kind: .promotional, amount: amount))) }
        return account
    }
}

private final class KeyCounter: Sendable {
    private let value = Synchronization.Mutex<UInt64>(0)
    func next() -> UInt64 { value.withLock { $0 += 1; return $0 } }
}

import Synchronization

@Suite("Billing: charging through the catalog and the caller's keys")
struct ChargingTests {
    @Test("a user with an OpenAI key pays 0 credits for GPT-4o; the saving is recorded; Anthropic still costs credits")
    func ownKeyMakesCallsFree() async throws {
        let f = try Fixture()
        let account = try await f.individual(1, credits: credits(100))
        let secret = "sk-test-0123456789abcd"
        let fingerprint = try await f.billing.registerKey(secret, provider: "OpenAI", for: account, key: f.key())
        #expect(fingerprint.hasPrefix("…abcd · ") && !fingerprint.contains("0123456789"))
        let registered = await f.engine.registeredKeys(of: account)
        #expect(registered.count == 1 && registered[0].fingerprint == fingerprint)
        #expect(!String(decoding: registered[0].sealed, as: UTF8.self).contains("0123456789"), "the ledger holds ciphertext only")

        let free = try await f.billing.charge(account, model: "GPT-4o", usage: .tokens(input: 500, output: 500), key: f.key())
        #expect(free.receipt.amount == .zero && free.usage.keySource == .userKey)
        #expect(free.usage.saved == credits(10) && free.usage.listPrice == credits(10))
        #expect(free.usage.providerCostNanoUSD == 15_000_000 && free.usage.units == 1_000)
        let paid = try await f.billing.charge(account, model: "Claude 3 Opus", usage: .tokens(input: 1_000, output: 0), key: f.key())
        #expect(paid.receipt.amount == credits(15) && paid.usage.keySource == .system)
        #expect(await f.engine.balance(of: account)?.available == credits(85))
        let entries = await f.engine.recentStatement(of: account).filter { $0.kind == .charged }
        #expect(entries.map { $0.usage?.keySource } == [.userKey, .system])
        #expect(entries.map { $0.usage?.saved } == [credits(10), .zero])

        let (source, unsealed) = try await f.billing.providerKey(for: account, provider: "OpenAI")
        #expect(source == .userKey && unsealed == secret)
        #expect(try await f.billing.providerKey(for: account, provider: "Anthropic") == (.system, nil))
    }

    @Test("the seed's prices through the service: GPT-4 Turbo 15, Mistral 7B 1.5, DALL-E 3 20, Sora Pro 280, 7 s of Runway Gen-2 360")
    func seedPrices() async throws {
        let f = try Fixture()
        let account = try await f.individual(2, credits: credits(1_000))
        let cases: [(String, Usage, Millicredits)] = [
            ("GPT-4 Turbo", .tokens(input: 1_000, output: 0), credits(15)),
            ("Mistral 7B", .tokens(input: 600, output: 400), Millicredits(1_500)),
            ("DALL-E 3", .images(1), credits(20)),
            ("Sora Pro", .videoSeconds(5), credits(280)),
            ("Runway Gen-2", .videoSeconds(7), credits(360)),
        ]
        var spent = Millicredits.zero
        for (model, usage, price) in cases {
            let charge = try await f.billing.charge(account, model: model, usage: usage, key: f.key())
            #expect(charge.receipt.amount == price, "\(model)")
            spent = try spent.adding(price)
        }
        #expect(await f.engine.balance(of: account)?.consumed == spent)
        await #expect(throws: BillingError.self) {
            _ = try await f.billing.charge(account, model: "GPT-5", usage: .tokens(input: 1, output: 0), key: f.key())
        }
    }

    @Test("routing picks the key-covered model, else the cheapest at the requested quality, and says why")
    func routing() async throws {
        let f = try Fixture()
        let account = try await f.individual(3, credits: credits(100))
        let premiumText = RoutingRequest(kind: .text, quality: .premium)
        let cheapest = try await f.billing.route(account, premiumText)
        #expect(cheapest.model == "Claude 3 Sonnet" && cheapest.creditsPerUnit == credits(10) && cheapest.keySource == .system)
        try await f.billing.registerKey("sk-openai-key-5678", provider: "OpenAI", for: account, key: f.key())
        let covered = try await f.billing.route(account, premiumText)
        #expect(covered.provider == "OpenAI" && covered.keySource == .userKey && covered.creditsPerUnit == .zero)
        #expect(covered.reason.contains("your OpenAI key covers \(covered.model): 0 credits"))
        let charged = try await f.billing.charge(account, routing: premiumText, usage: .tokens(input: 2_000, output: 0), key: f.key())
        #expect(charged.receipt.amount == .zero && charged.usage.provider == "OpenAI" && charged.reason == covered.reason)
        // Constraints: only Anthropic allowed → the cheapest Anthropic premium model, on credits.
        let anthropic = try await f.billing.route(account, RoutingRequest(kind: .text, quality: .premium,
                                                                          constraints: RoutingConstraints(allowedProviders: ["Anthropic"])))
        #expect(anthropic.model == "Claude 3 Sonnet" && anthropic.keySource == .system)
        // A budget: the OpenAI key covers Sora Pro (0 credits, within any budget); Runway on
        // credits is above 1 credit per clip, so nothing fits.
        let sora = try await f.billing.route(account, RoutingRequest(kind: .video, quality: .premium,
                                                                     constraints: RoutingConstraints(creditsPerUnitMax: credits(1))))
        #expect(sora.model == "Sora Pro" && sora.creditsPerUnit == .zero)
        await #expect(throws: BillingError.self) {
            _ = try await f.billing.route(account, RoutingRequest(kind: .video, quality: .premium,
                                                                  constraints: RoutingConstraints(allowedProviders: ["Runway"],
                                                                                                  creditsPerUnitMax: credits(1))))
        }
    }

    @Test("a routed charge is one command: the system choice alone for a tenant without keys, every candidate once it has one")
    func routedChargeIsOneCommand() async throws {
        let f = try Fixture()
        let account = try await f.individual(11, credits: credits(100))
        let premiumText = RoutingRequest(kind: .text, quality: .premium)
        #expect(!f.engine.mayHaveKeys(account.tenant))
        let paid = try await f.billing.charge(account, routing: premiumText, usage: .tokens(input: 1_000, output: 0), key: f.key())
        #expect(paid.usage.model == "Claude 3 Sonnet" && paid.usage.keySource == .system && paid.receipt.amount == credits(10))
        #expect(paid.reason == "cheapest premium text model on system keys: Claude 3 Sonnet, 10 credits per 1K tokens")
        // Sent alone, but numbered as in the whole list (Opus, GPT-4 Turbo, Gemini Ultra, Sonnet).
        #expect(paid.receipt.routedChoice == RoutedChoice(candidate: 3, keySource: .system))
        // The ledger recorded the model it charged, with the key source.
        let entries = await f.engine.recentStatement(of: account)
        #expect(entries.last?.usage == paid.usage && entries.last?.kind == .charged)

        // A key: the filter says "maybe" as soon as the registration returned, and the full
        // list goes to the shard, which picks the OpenAI model.
        try await f.billing.registerKey("sk-openai-key-1111", provider: "OpenAI", for: account, key: f.key())
        #expect(f.engine.mayHaveKeys(account.tenant))
        let free = try await f.billing.charge(account, routing: premiumText, usage: .tokens(input: 1_000, output: 0), key: f.key())
        #expect(free.usage.model == "GPT-4 Turbo" && free.usage.keySource == .userKey && free.receipt.amount == .zero)
        #expect(free.usage.saved == credits(15) && free.reason == "your OpenAI key covers GPT-4 Turbo: 0 credits")
        // Removed again: the filter still says "maybe" (bits are never cleared), the shard
        // finds no key and charges the system choice, the last of the candidates.
        try await f.billing.removeKey(provider: "OpenAI", for: account, key: f.key())
        let again = try await f.billing.charge(account, routing: premiumText, usage: .tokens(input: 1_000, output: 0), key: f.key())
        #expect(again.usage.model == "Claude 3 Sonnet" && again.receipt.amount == credits(10))
        #expect(again.receipt.routedChoice?.keySource == .system && again.receipt.routedChoice?.candidate == 3)
    }

    @Test("a retried routed charge returns the first charge, even when it is offered other candidates by then")
    func routedRetryAfterAKeyAppeared() async throws {
        let f = try Fixture()
        let account = try await f.individual(12, credits: credits(100))
        let request = RoutingRequest(kind: .text, quality: .premium)
        let key = f.key()
        let first = try await f.billing.charge(account, routing: request, usage: .tokens(input: 1_000, output: 0), key: key)
        try await f.billing.registerKey("sk-openai-key-2222", provider: "OpenAI", for: account, key: f.key())
        let retry = try await f.billing.charge(account, routing: request, usage: .tokens(input: 1_000, output: 0), key: key)
        #expect(retry.receipt == first.receipt && retry.usage == first.usage && retry.usage.keySource == .system)
        let balance = try #require(await f.engine.balance(of: account))
        #expect(balance.consumed == credits(10), "charged once")
        // The same key for another request is a conflict, and charges nothing.
        await #expect(throws: BillingError.ledger(.idempotencyConflict(key))) {
            _ = try await f.billing.charge(account, routing: request, usage: .tokens(input: 2_000, output: 0), key: key)
        }
    }

    @Test("over budget: refused without a covering key (with or without keys elsewhere), charged 0 with one")
    func routedOverBudget() async throws {
        let f = try Fixture()
        let account = try await f.individual(13, credits: credits(1_000))
        let capped = RoutingRequest(kind: .video, quality: .premium, constraints: RoutingConstraints(creditsPerUnitMax: credits(1)))
        await #expect(throws: BillingError.self) {
            _ = try await f.billing.charge(account, routing: capped, usage: .videoSeconds(5), key: f.key())
        }
        // A key for a provider without premium video: the full list goes to the shard, which refuses.
        try await f.billing.registerKey("sk-anthropic-3333", provider: "Anthropic", for: account, key: f.key())
        do {
            _ = try await f.billing.charge(account, routing: capped, usage: .videoSeconds(5), key: f.key())
            Issue.record("an over-budget routed charge went through")
        } catch {
            guard case .noRoute(.overBudget(kind: .video, quality: .premium, _, let max)) = error else {
                Issue.record("expected an over-budget refusal, got \(error)")
                return
            }
            #expect(max == credits(1))
        }
        try await f.billing.registerKey("sk-openai-key-4444", provider: "OpenAI", for: account, key: f.key())
        let sora = try await f.billing.charge(account, routing: capped, usage: .videoSeconds(7), key: f.key())
        #expect(sora.usage.model == "Sora Pro" && sora.receipt.amount == .zero && sora.usage.units == 2)
        #expect(try #require(await f.engine.balance(of: account)).consumed == .zero)
    }

    @Test("a catalog with more providers of a kind than one command carries: routed in two steps, same rule")
    func manyProvidersRouteInTwoSteps() async throws {
        let f = try Fixture()
        let account = try await f.individual(14, credits: credits(100))
        // 20 premium text models of 20 providers; Provider 07 is the cheapest.
        var text = "model | provider | kind | quality | unit | provider_cost_usd | credits\n"
        for index in 0 ..< 20 {
            let name = String(index < 10 ? "0\(index)" : "\(index)")
            text += "Model \(name) | Provider \(name) | text | premium | 1K tokens | 0.01 | \(index == 7 ? 2 : 5)\n"
        }
        try f.billing.replaceCatalog(text: text)
        let request = RoutingRequest(kind: .text, quality: .premium)
        try await f.billing.registerKey("sk-provider-15-key", provider: "Provider 15", for: account, key: f.key())
        let covered = try await f.billing.charge(account, routing: request, usage: .tokens(input: 1_000, output: 0), key: f.key())
        #expect(covered.usage.model == "Model 15" && covered.usage.keySource == .userKey && covered.receipt.amount == .zero)
        #expect(covered.reason == "your Provider 15 key covers Model 15: 0 credits")
        try await f.billing.removeKey(provider: "Provider 15", for: account, key: f.key())
        let cheapest = try await f.billing.charge(account, routing: request, usage: .tokens(input: 1_000, output: 0), key: f.key())
        #expect(cheapest.usage.model == "Model 07" && cheapest.receipt.amount == credits(2))
        #expect(cheapest.receipt.routedChoice == nil, "charged as a plain charge of the chosen model")
    }

    @Test("enterprise: IT-controlled refuses a member's key and uses the organisation's; hybrid lets members cover the rest")
    func enterprisePolicies() async throws {
        let f = try Fixture()
        let org = TenantID(40)
        let pool = AccountID(tenant: org, number: 0)
        let member = AccountID(tenant: org, number: 1)
        try await f.succeed(.openTenant(org, .organisation(departments: [DepartmentTerms(id: DepartmentID(1), costCentre: "R&D")])))
        try await f.succeed(.grant(pool, GrantTerms(kind: .enterpriseContract, amount: credits(500))))
        try await f.succeed(.openAccount(member, .member(department: DepartmentID(1), limitPerPeriod: nil)))
        await #expect(throws: BillingError.ledger(.notAllowed(member, .keysManagedByOrganisation))) {
            try await f.billing.registerKey("sk-member-key-0001", provider: "OpenAI", for: member, key: f.key())
        }
        try await f.billing.registerKey("sk-organisation-0002", provider: "OpenAI", for: pool, key: f.key())
        let charge = try await f.billing.charge(member, model: "GPT-4 Turbo", usage: .tokens(input: 1_000, output: 0), key: f.key())
        #expect(charge.usage.keySource == .organisationKey && charge.receipt.amount == .zero)
        #expect(try await f.billing.providerKey(for: member, provider: "OpenAI") == (.organisationKey, "sk-organisation-0002"))

        try await f.billing.setKeyPolicy(.hybrid, for: org, key: f.key())
        await #expect(throws: BillingError.ledger(.notAllowed(member, .providerCoveredByOrganisation))) {
            try await f.billing.registerKey("sk-member-key-0003", provider: "OpenAI", for: member, key: f.key())
        }
        try await f.billing.registerKey("sk-member-anthropic", provider: "Anthropic", for: member, key: f.key())
        let own = try await f.billing.charge(member, model: "Claude 3 Opus", usage: .tokens(input: 1_000, output: 0), key: f.key())
        #expect(own.usage.keySource == .userKey && own.receipt.amount == .zero)
        let status = await f.billing.serviceStatus(of: member)
        #expect(status.first { $0.provider == "OpenAI" }?.keySource == .organisationKey)
        #expect(status.first { $0.provider == "Anthropic" }?.keySource == .userKey)
        #expect(status.first { $0.provider == "Runway" }?.keySource == .system)
        #expect(status.first { $0.provider == "Runway" }?.creditsPerUnitRange == credits(80) ... credits(180))
    }

    @Test("a streaming call: credits reserve the estimate and settle the actual usage; an own key reserves nothing")
    func streamingCalls() async throws {
        let f = try Fixture()
        let account = try await f.individual(6, credits: credits(100))
        let ticket = try await f.billing.beginCall(account, model: "Claude 3 Opus", estimate: .tokens(input: 1_000, output: 1_000), key: f.key())
        #expect(ticket.keySource == .system && ticket.hold != nil)
        #expect(await f.engine.balance(of: account)?.held == credits(30))
        let settled = try await f.billing.finishCall(ticket, usage: .tokens(input: 700, output: 600), key: f.key())
        #expect(settled.receipt.amount == Millicredits(19_500)) // 1,300 tokens at 15 credits per 1K
        #expect(await f.engine.balance(of: account)?.held == .zero)
        #expect(await f.engine.balance(of: account)?.available == Millicredits(80_500))

        let poor = try await f.individual(7, credits: .zero)
        try await f.billing.registerKey("sk-anthropic-0007", provider: "Anthropic", for: poor, key: f.key())
        let free = try await f.billing.beginCall(poor, model: "Claude 3 Opus", estimate: .tokens(input: 5_000, output: 0), key: f.key())
        #expect(free.keySource == .userKey && free.hold == nil)
        let recorded = try await f.billing.finishCall(free, usage: .tokens(input: 4_000, output: 0), key: f.key())
        #expect(recorded.receipt.amount == .zero && recorded.usage.saved == credits(60))
        let last = await f.engine.recentStatement(of: poor).last
        #expect(last?.kind == .charged && last?.usage?.keySource == .userKey)
    }

    @Test("a sealed key opens only with the host's key, for its owner and provider")
    func sealing() throws {
        let sealer = try KeySealer(keyBytes: KeySealer.randomKeyBytes())
        let owner = AccountID(tenant: TenantID(1), number: 0)
        let sealed = try sealer.seal("sk-secret-value-42", owner: owner, provider: "OpenAI")
        #expect(try sealer.unseal(sealed, owner: owner, provider: "OpenAI") == "sk-secret-value-42")
        #expect(throws: BillingError.unsealFailed) { try sealer.unseal(sealed, owner: owner, provider: "Anthropic") }
        #expect(throws: BillingError.unsealFailed) {
            try sealer.unseal(sealed, owner: AccountID(tenant: TenantID(2), number: 0), provider: "OpenAI")
        }
        let other = try KeySealer(keyBytes: KeySealer.randomKeyBytes())
        #expect(throws: BillingError.unsealFailed) { try other.unseal(sealed, owner: owner, provider: "OpenAI") }
        #expect(throws: BillingError.sealingKeySize(16)) { try KeySealer(keyBytes: [UInt8](repeating: 1, count: 16)) }
    }

    @Test("a malformed replacement catalog is refused with its line and field; the running one keeps pricing")
    func catalogReplacement() async throws {
        let f = try Fixture()
        let account = try await f.individual(5, credits: credits(100))
        #expect(throws: CatalogError.self) { try f.billing.replaceCatalog(text: "model | provider\nGPT-4o | OpenAI\n") }
        #expect(try await f.billing.charge(account, model: "GPT-4o", usage: .tokens(input: 1_000, output: 0), key: f.key()).receipt.amount
            == credits(10))
        var text = Catalog.defaultText
        text = text.replacingFirst("| 10", with: "| 12", onLineContaining: "GPT-4o ")
        try f.billing.replaceCatalog(text: text)
        #expect(try await f.billing.charge(account, model: "GPT-4o", usage: .tokens(input: 1_000, output: 0), key: f.key()).receipt.amount
            == credits(12))
    }
}

@Suite("Billing: purchases and plans")
struct PurchaseTests {
    @Test("a purchase pays first, then grants the quoted credits for 12 months; a retry grants once")
    func purchaseAndRetry() async throws {
        let f = try Fixture()
        let account = try await f.individual(10, credits: .zero)
        let first = try await f.billing.purchase(12_000, for: account, purchase: PurchaseID("order-1"))
        #expect(first.quote.priceCents == 10_500 && first.payment.amountCents == 10_500)
        let balance = try #require(await f.engine.balance(of: account))
        #expect(balance.available == credits(12_000))
        #expect(balance.grants.map(\.kind) == [.purchase])
        #expect(balance.grants[0].expiresAt == Timestamp(millisSinceEpoch: 1_798_761_600_000)) // 2027-01-01
        f.clock.advance(millis: 60_000)
        let retry = try await f.billing.purchase(12_000, for: account, purchase: PurchaseID("order-1"))
        #expect(retry.receipt == first.receipt)
        #expect(await f.gateway.charges.count == 1)
        #expect(await f.engine.balance(of: account)?.available == credits(12_000))
    }

    @Test("one clock: Billing reads the engine's, so a purchase on a manual-clock engine expires 12 months after the manual time")
    func purchaseUsesTheEngineClock() async throws {
        let f = try Fixture() // the engine runs on a ManualClock; Billing is given no clock
        let account = try await f.individual(40, credits: .zero)
        f.clock.advance(millis: 5 * 86_400_000)
        _ = try await f.billing.purchase(1_000, for: account, purchase: PurchaseID("order-clock"))
        let grant = try #require(await f.engine.balance(of: account)?.grants.first)
        #expect(grant.expiresAt == CalendarMonths.adding(12, to: f.clock.now()))
        #expect(grant.expiresAt < CalendarMonths.adding(12, to: SystemClock().now()), "not the wall clock's")
    }

    @Test("a failed payment grants nothing; a declined purchase stays declined; an unavailable gateway can be retried")
    func failedPayments() async throws {
        let f = try Fixture()
        let account = try await f.individual(11, credits: .zero)
        await f.gateway.fail(PurchaseID("order-2"))
        for _ in 0 ..< 2 {
            await #expect(throws: BillingError.self) {
                _ = try await f.billing.purchase(1_000, for: account, purchase: PurchaseID("order-2"))
            }
        }
        #expect(await f.engine.balance(of: account)?.available == .zero)
        await f.gateway.failNext(1, with: .unavailable)
        await #expect(throws: BillingError.payment(.unavailable(purchase: PurchaseID("order-3")))) {
            _ = try await f.billing.purchase(5_000, for: account, purchase: PurchaseID("order-3"))
        }
        #expect(await f.engine.balance(of: account)?.available == .zero)
        _ = try await f.billing.purchase(5_000, for: account, purchase: PurchaseID("order-3"))
        #expect(await f.engine.balance(of: account)?.available == credits(5_000))
        #expect(await f.gateway.chargedCents == 4_500)
    }

}

/// A gateway whose charges wait until `parties` of them have arrived, so calls that read the
/// ledger before paying are certain to have read it before any of them changed it.
private actor MeetingGateway: PaymentGateway {
    let inner = InMemoryPaymentGateway()
    private let parties: Int
    private var arrived = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(parties: Int) { self.parties = parties }

    func charge(_ amountCents: Int64, for purchase: PurchaseID) async throws(PaymentError) -> PaymentReceipt {
        arrived += 1
        if arrived < parties {
            await withCheckedContinuation { waiting.append($0) }
        } else {
            for continuation in waiting { continuation.resume() }
            waiting.removeAll()
        }
        return try await inner.charge(amountCents, for: purchase)
    }

    func refund(_ payment: PaymentReceipt) async throws(PaymentError) { try await inner.refund(payment) }
}

@Suite("Billing: changing plans in one command, upgrades paid first")
struct PlanChangeTests {
    private static let day: Int64 = 86_400_000

    /// A Basic subscriber from `start` (2026-01-01, a 31-day first cycle), paid.
    private static func basicSubscriber(_ f: Fixture, _ id: UInt64) async throws -> AccountID {
        let account = try await f.individual(id, credits: .zero)
        try await f.billing.subscribe(account, to: .basic, purchase: PurchaseID("sub-\(id)"))
        return account
    }

    @Test("upgrade, downgrade, upgrade in one cycle: the first upgrade is charged and granted by the rule, the rest nothing until the renewal")
    func upgradeDowngradeUpgrade() async throws {
        let f = try Fixture()
        let account = try await Self.basicSubscriber(f, 30)
        #expect(await f.gateway.chargedCents == 5_999)
        // 11 January, 21 of 31 days left: docs/semantics.md's worked example.
        f.clock.advance(millis: 10 * Self.day)
        let quote = try await f.billing.planChangeQuote(of: account, to: .expert)
        #expect(quote.kind == .upgrade && quote.chargeCents == 12_870 && quote.grant == Millicredits(8_805_789))
        let up = try await f.billing.changeSubscription(of: account, to: .expert, key: f.key())
        #expect(up == .upgrade(grantNow: Millicredits(8_805_789)))
        #expect(await f.gateway.chargedCents == 5_999 + 12_870)
        #expect(await f.engine.balance(of: account)?.available == sum(credits(2_000), Millicredits(8_805_789)))

        f.clock.advance(millis: 4 * Self.day)
        #expect(try await f.billing.changeSubscription(of: account, to: .basic, key: f.key()) == .deferred)
        f.clock.advance(millis: 5 * Self.day)
        // Back to Expert: this cycle was paid at Expert already.
        #expect(try await f.billing.planChangeQuote(of: account, to: .expert).chargeCents == 0)
        #expect(try await f.billing.changeSubscription(of: account, to: .expert, key: f.key()) == .deferred)
        #expect(await f.gateway.chargedCents == 5_999 + 12_870)
        #expect(await f.engine.balance(of: account)?.available == sum(credits(2_000), Millicredits(8_805_789)))
        let subscription = try #require(await f.engine.subscription(of: account))
        #expect(subscription.plan == "Expert" && subscription.priceCents == Plan.expert.monthlyPriceCents)
        #expect(subscription.cycleAllocation == Plan.expert.monthlyCredits)
        // Basic → Expert → Basic, the issue's exploit: the downgrade gives nothing back, and
        // the 13,000-credit difference was never handed out for $0.
        let granted = try #require(await f.engine.balance(of: account)).granted
        #expect(granted == sum(credits(2_000), Millicredits(8_805_789)))
    }

    @Test("a declined upgrade grants nothing and leaves the plan as it was")
    func declinedUpgrade() async throws {
        let f = try Fixture()
        let account = try await Self.basicSubscriber(f, 31)
        f.clock.advance(millis: 3 * Self.day)
        let key = f.key()
        await f.gateway.fail(Billing.planChangePurchase(account, key: key))
        await #expect(throws: BillingError.self) { _ = try await f.billing.changeSubscription(of: account, to: .pro, key: key) }
        #expect(await f.engine.subscription(of: account)?.plan == "Basic")
        #expect(await f.engine.balance(of: account)?.granted == credits(2_000))
        #expect(await f.gateway.chargedCents == 5_999)
    }

    @Test("a retry after a crash between payment and grant pays once and grants what that payment bought")
    func retryAfterCrashBetweenPaymentAndGrant() async throws {
        let f = try Fixture()
        let account = try await Self.basicSubscriber(f, 32)
        f.clock.advance(millis: 10 * Self.day)
        let key = f.key()
        // The first attempt: the gateway took the payment, then the process died before the
        // ledger command (so the engine knows nothing of it).
        let first = try await f.billing.planChangeQuote(of: account, to: .expert)
        _ = try await f.gateway.charge(first.chargeCents, for: Billing.planChangePurchase(account, key: key))
        // The retry comes a day later: it prices less, and pays nothing more.
        f.clock.advance(millis: Self.day)
        let retried = try await f.billing.changeSubscription(of: account, to: .expert, key: key)
        #expect(retried == .upgrade(grantNow: first.grant), "what the first payment bought")
        #expect(await f.gateway.chargedCents == 5_999 + first.chargeCents)
        #expect(await f.gateway.charges.count == 2)
        // Once applied, a retry returns the same answer and pays nothing.
        #expect(try await f.billing.changeSubscription(of: account, to: .expert, key: key) == retried)
        #expect(await f.gateway.charges.count == 2)
        #expect(await f.engine.balance(of: account)?.granted == sum(credits(2_000), first.grant))
    }

    @Test("two concurrent upgrades decided on the same read: one applies, the other is refused and refunded")
    func concurrentUpgrades() async throws {
        let gateway = MeetingGateway(parties: 2)
        let clock = ManualClock(start)
        let engine = CreditEngine(configuration: EngineConfiguration(shardCount: 2), clock: clock)
        let billing = Billing(engine: engine, sealer: try KeySealer(keyBytes: KeySealer.randomKeyBytes()), payments: gateway)
        let account = AccountID(tenant: TenantID(33), number: 0)
        for (index, action) in [Action.openTenant(account.tenant, .individual), .openAccount(account, .standard),
                                .subscribe(account, SubscriptionTerms(plan: "Basic", allocation: Plan.basic.monthlyCredits,
                                                                      priceCents: Plan.basic.monthlyPriceCents))].enumerated() {
            if case .failure(let error) = await engine.execute(Command(key: IdempotencyKey(high: 0x3333, low: UInt64(index)), action)) {
                throw error
            }
        }
        clock.advance(millis: 10 * Self.day)
        async let toPro = Self.result { try await billing.changeSubscription(of: account, to: .pro, key: IdempotencyKey(high: 0x3334, low: 1)) }
        async let toExpert = Self.result {
            try await billing.changeSubscription(of: account, to: .expert, key: IdempotencyKey(high: 0x3334, low: 2))
        }
        let results = [await toPro, await toExpert]
        let applied = results.compactMap { try? $0.get() }
        #expect(applied.count == 1)
        let refused = results.compactMap { result -> BillingError? in
            if case .failure(let error) = result { return error as? BillingError }
            return nil
        }
        #expect(refused == [.ledger(.planChanged(account))])
        // Both paid; the refused one got its money back; the credits of one upgrade were granted.
        #expect(await gateway.inner.charges.count == 2)
        #expect(await gateway.inner.refunds.count == 1)
        let kept = await gateway.inner.netCents
        let plan = try #require(await engine.subscription(of: account)).plan
        let quoteOfWinner = plan == "Pro" ? 9_000 * 21 / 31 : 19_000 * 21 / 31
        #expect(kept == Int64(quoteOfWinner))
        guard case .upgrade(let grant) = applied.first else { Issue.record("not an upgrade: \(applied)"); return }
        #expect(await engine.balance(of: account)?.granted == sum(Plan.basic.monthlyCredits, grant))
    }

    private static func result(_ body: @Sendable () async throws -> PlanChange) async -> Result<PlanChange, any Error> {
        do { return .success(try await body()) } catch { return .failure(error) }
    }

    @Test("a lapsed or missing subscription cannot change plans")
    func noSubscription() async throws {
        let f = try Fixture()
        let account = try await f.individual(34, credits: .zero)
        await #expect(throws: BillingError.ledger(.notSubscribed(account))) {
            _ = try await f.billing.changeSubscription(of: account, to: .pro, key: f.key())
        }
        #expect(await f.gateway.charges.isEmpty)
    }
}

extension String {
    /// Replaces the first `target` on the first line containing `marker`.
    func replacingFirst(_ target: String, with replacement: String, onLineContaining marker: String) -> String {
        var lines = split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let index = lines.firstIndex(where: { $0.contains(marker) }),
              let range = lines[index].firstRange(of: target) else { return self }
        lines[index].replaceSubrange(range, with: replacement)
        return lines.joined(separator: "\n")
    }
}

@Suite("README: the manual clock example")
struct ReadmeManualClockTests {
    @Test("a purchase on a manual-clock engine expires by that clock, and is spent out a year and a day later")
    func readmeManualClock() async throws {
        let clock = ManualClock(CalendarMonths.date(2026, 1, 1))
        let engine = CreditEngine(clock: clock)
        let billing = Billing(engine: engine, sealer: try KeySealer(keyBytes: KeySealer.randomKeyBytes()),
                              payments: InMemoryPaymentGateway())
        let alice = AccountID(tenant: TenantID(42), number: 0)
        _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-1"), .openTenant(alice.tenant, .individual)))
        _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-2"), .openAccount(alice, .standard)))
        try await billing.purchase(1_000, for: alice, purchase: PurchaseID("order-1"))
        #expect(await engine.balance(of: alice)?.grants.first?.expiresAt == CalendarMonths.date(2027, 1, 1))
        clock.advance(millis: 366 * 86_400_000)
        #expect(await engine.available(of: alice) == .zero, "the purchase expired a day ago")
    }
}

@Suite("Billing: routed charges across a restart")
struct RoutedRestartTests {
    @Test("a retry after a restart, sent with the system choice alone, gets the first charge: the key-covered model")
    func retryAfterRestartMapsToTheFirstModel() async throws {
        let data = try makeTemporaryDirectory("billing-restart")
        let configuration = EngineConfiguration(shardCount: 2, storage: StorageConfiguration(directory: data))
        let sealer = try KeySealer(keyBytes: KeySealer.randomKeyBytes())
        let account = AccountID(tenant: TenantID(21), number: 0)
        let request = RoutingRequest(kind: .text, quality: .premium)
        let chargeKey = IdempotencyKey(high: 0xCAFE, low: 1)

        let engine = try await CreditEngine.open(configuration: configuration)
        let billing = Billing(engine: engine, sealer: sealer, payments: InMemoryPaymentGateway())
        for (index, action) in [Action.openTenant(account.tenant, .individual), .openAccount(account, .standard),
                                .grant(account, GrantTerms(kind: .promotional, amount: credits(100)))].enumerated() {
            if case .failure(let error) = await engine.execute(Command(key: IdempotencyKey(high: 0xCAFF, low: UInt64(index)), action)) {
                throw error
            }
        }
        try await billing.registerKey("sk-openai-key-7777", provider: "OpenAI", for: account, key: IdempotencyKey(high: 0xCAFF, low: 10))
        let first = try await billing.charge(account, routing: request, usage: .tokens(input: 1_000, output: 0), key: chargeKey)
        #expect(first.usage.model == "GPT-4 Turbo" && first.usage.keySource == .userKey)
        try await billing.removeKey(provider: "OpenAI", for: account, key: IdempotencyKey(high: 0xCAFF, low: 11))
        await engine.close()

        // After the restart the tenant holds no key: the retry goes out as the system choice
        // alone, and is answered with the first charge's receipt, which names candidate 1.
        let reopened = try await CreditEngine.open(configuration: configuration)
        #expect(!reopened.mayHaveKeys(account.tenant))
        let service = Billing(engine: reopened, sealer: sealer, payments: InMemoryPaymentGateway())
        let retry = try await service.charge(account, routing: request, usage: .tokens(input: 1_000, output: 0), key: chargeKey)
        #expect(retry.receipt == first.receipt)
        #expect(retry.usage == first.usage, "the model the first charge recorded, not the system choice")
        #expect(retry.reason == "your OpenAI key covers GPT-4 Turbo: 0 credits")
        #expect(try #require(await reopened.balance(of: account)).consumed == .zero)
        await reopened.close()
    }
}
