import CreditPricing
import Testing

@Suite("Routing: key-covered first, else the cheapest at the requested quality")
struct RoutingTests {
    let catalog = Catalog.standard

    @Test("a key that covers a provider wins at 0 credits; ties between its models go to the name")
    func keyCoveredModelWins() throws {
        // OpenAI's premium text models are GPT-4 Turbo (15) and GPT-4o (10): both covered.
        let route = try catalog.route(kind: .text, quality: .premium, keyProviders: ["OpenAI"])
        #expect(route.entry.model == "GPT-4 Turbo")
        #expect(route.creditsPerUnit == .zero)
        #expect(route.keyCoverage == .coveredByKey)
        #expect(route.reason == "your OpenAI key covers GPT-4 Turbo: 0 credits")
    }

    @Test("without a usable key: the cheapest at the requested quality; a price tie goes to the name")
    func cheapestOnSystemKeys() throws {
        // GPT-4o and Claude 3 Sonnet both cost 10 credits per 1K tokens.
        let route = try catalog.route(kind: .text, quality: .premium, keyProviders: [])
        #expect(route.entry.model == "Claude 3 Sonnet")
        #expect(route.creditsPerUnit == Millicredits(10_000))
        #expect(route.keyCoverage == .system)
        #expect(route.reason == "cheapest premium text model on system keys: Claude 3 Sonnet, 10 credits per 1K tokens")
    }

    @Test("the cheapest per kind and quality on system keys", arguments: [
        (ModelKind.text, QualityPreference.standard, "Claude 3 Haiku", 1_000),
        (.text, .any, "Claude 3 Haiku", 1_000),
        (.image, .standard, "DALL-E 2", 5_000), // DALL-E 2, Imagen Basic, Stable Diffusion XL: 5 each
        (.image, .premium, "DALL-E 3", 20_000),
        (.video, .standard, "Stable Video", 50_000),
        (.video, .premium, "Pika Pro", 150_000),
    ] as [(ModelKind, QualityPreference, String, Int64)])
    func cheapestPerKindAndQuality(kind: ModelKind, quality: QualityPreference, model: String, credits: Int64) throws {
        let route = try catalog.route(kind: kind, quality: quality, keyProviders: [])
        #expect(route.entry.model == model)
        #expect(route.creditsPerUnit == Millicredits(credits))
    }

    @Test("quality 'any' with a key: the better tier of the covered models first")
    func anyQualityPrefersPremiumWhenCovered() throws {
        // Anthropic has Claude 3 Haiku (standard), Claude 3 Opus and Claude 3 Sonnet (premium).
        let route = try catalog.route(kind: .text, quality: .any, keyProviders: ["Anthropic"])
        #expect(route.entry.model == "Claude 3 Opus")
        #expect(route.keyCoverage == .coveredByKey)
        let standard = try catalog.route(kind: .text, quality: .standard, keyProviders: ["Anthropic"])
        #expect(standard.entry.model == "Claude 3 Haiku")
        #expect(standard.reason == "your Anthropic key covers Claude 3 Haiku: 0 credits")
    }

    @Test("a key for a provider without a model of that kind and quality does not help")
    func keyOfAnotherKindIgnored() throws {
        let route = try catalog.route(kind: .video, quality: .premium, keyProviders: ["Anthropic", "Midjourney"])
        #expect(route.keyCoverage == .system)
        #expect(route.entry.model == "Pika Pro")
    }

    @Test("allowed providers: only their models, even when the caller's key is for another")
    func allowedProvidersHonoured() throws {
        let openAIOnly = RoutingConstraints(allowedProviders: ["OpenAI"])
        let route = try catalog.route(kind: .text, quality: .premium, keyProviders: ["Anthropic"], constraints: openAIOnly)
        #expect(route.entry.model == "GPT-4o")
        #expect(route.keyCoverage == .system)
        #expect(route.creditsPerUnit == Millicredits(10_000))
    }

    @Test("a maximum per unit: the cheapest within it, or an error naming the cheapest; a covered model costs 0")
    func creditsPerUnitMaxHonoured() throws {
        let within = RoutingConstraints(creditsPerUnitMax: Millicredits(160_000))
        #expect(try catalog.route(kind: .video, quality: .premium, keyProviders: [], constraints: within).entry.model == "Pika Pro")
        let tight = RoutingConstraints(creditsPerUnitMax: Millicredits(100_000))
        #expect(throws: RoutingError.overBudget(kind: .video, quality: .premium, cheapest: Millicredits(150_000),
                                                max: Millicredits(100_000))) {
            try catalog.route(kind: .video, quality: .premium, keyProviders: [], constraints: tight)
        }
        let covered = try catalog.route(kind: .video, quality: .premium, keyProviders: ["Runway"], constraints: tight)
        #expect(covered.entry.model == "Runway Gen-2" && covered.creditsPerUnit == .zero)
    }

    @Test("nothing of that kind and quality, or no allowed provider: typed errors")
    func nothingMatches() throws {
        let textOnly = try Catalog.parse(text: """
            model | provider | kind | quality | unit | provider_cost_usd | credits
            Small | Acme | text | standard | 1K tokens | 0.001 | 1
            """)
        #expect(throws: RoutingError.noModel(kind: .video, quality: .any)) {
            try textOnly.route(kind: .video, quality: .any, keyProviders: ["Acme"])
        }
        #expect(throws: RoutingError.noModel(kind: .text, quality: .premium)) {
            try textOnly.route(kind: .text, quality: .premium, keyProviders: ["Acme"])
        }
        #expect(throws: RoutingError.noAllowedProvider(kind: .image, quality: .premium, allowed: ["Acme", "Nobody"])) {
            try catalog.route(kind: .image, quality: .premium, keyProviders: ["OpenAI"],
                              constraints: RoutingConstraints(allowedProviders: ["Nobody", "Acme"]))
        }
    }
}
