import CreditPricing
import Testing

/// The seed document's six price tables, stated once as the business facts the built-in
/// catalog must reproduce: (model, provider, kind, quality, provider cost per unit in USD,
/// credits per unit).
private let seedPrices: [(String, String, ModelKind, QualityTier, String, String)] = [
    ("GPT-3.5 Turbo", "OpenAI", .text, .standard, "0.0015", "2"),
    ("Llama 2 (70B)", "Meta/Replicate", .text, .standard, "0.0013", "2"),
    ("Mistral 7B", "Mistral AI", .text, .standard, "0.00075", "1.5"),
    ("Cohere Command", "Cohere", .text, .standard, "0.0015", "2"),
    ("Claude 3 Haiku", "Anthropic", .text, .standard, "0.00025", "1"),
    ("GPT-4 Turbo", "OpenAI", .text, .premium, "0.03", "15"),
    ("Claude 3 Opus", "Anthropic", .text, .premium, "0.075", "15"),
    ("Gemini Ultra", "Google", .text, .premium, "0.036", "15"),
    ("GPT-4o", "OpenAI", .text, .premium, "0.015", "10"),
    ("Claude 3 Sonnet", "Anthropic", .text, .premium, "0.015", "10"),
    ("DALL-E 2", "OpenAI", .image, .standard, "0.02", "5"),
    ("Stable Diffusion XL", "Stability AI", .image, .standard, "0.02", "5"),
    ("Midjourney Basic", "Midjourney", .image, .standard, "0.08", "8"),
    ("Imagen Basic", "Google", .image, .standard, "0.05", "5"),
    ("DALL-E 3", "OpenAI", .image, .premium, "0.12", "20"),
    ("Midjourney Pro", "Midjourney", .image, .premium, "0.20", "25"),
    ("Stable Diffusion 3", "Stability AI", .image, .premium, "0.15", "20"),
    ("Imagen 2", "Google", .image, .premium, "0.18", "20"),
    ("Runway Gen-1", "Runway", .video, .standard, "0.80", "80"),
    ("Pika Basic", "Pika Labs", .video, .standard, "0.50", "60"),
    ("Luma Basic", "Luma AI", .video, .standard, "0.60", "70"),
    ("Stable Video", "Stability AI", .video, .standard, "0.40", "50"),
    ("Runway Gen-2", "Runway", .video, .premium, "1.50", "180"),
    ("Pika Pro", "Pika Labs", .video, .premium, "1.20", "150"),
    ("Luma Pro", "Luma AI", .video, .premium, "1.40", "170"),
    ("Sora Pro", "OpenAI", .video, .premium, "2.50", "280"),
]

/// One billing unit of each kind, as a usage.
private func oneUnit(of kind: ModelKind) -> Usage {
    switch kind {
    case .text: .tokens(input: 1_000, output: 0)
    case .image: .images(1)
    case .video: .videoSeconds(5)
    }
}

@Suite("The built-in catalog reproduces the seed's price tables")
struct DefaultCatalogTests {
    let catalog = Catalog.standard

    @Test("holds exactly the seed's 26 models, each once")
    func holdsExactlyTheSeedModels() {
        #expect(catalog.entries.count == seedPrices.count)
        #expect(Set(catalog.entries.map(\.model)) == Set(seedPrices.map(\.0)))
    }

    @Test("every seed price: provider, kind, quality, provider cost and credits per unit")
    func everySeedPriceReproduced() throws {
        for (model, provider, kind, quality, costUSD, credits) in seedPrices {
            let entry = try #require(catalog.entry(named: model), "\(model)")
            #expect(entry.provider == provider, "\(model)")
            #expect(entry.kind == kind, "\(model)")
            #expect(entry.quality == quality, "\(model)")
            #expect(DecimalText.usd(nanos: entry.providerCostPerUnitNanoUSD) == costUSD, "\(model)")
            #expect(entry.creditsPerUnit == (try Millicredits(parsing: credits)), "\(model)")
            #expect(entry.inputCreditsPerUnit == entry.creditsPerUnit && entry.outputCreditsPerUnit == entry.creditsPerUnit,
                    "\(model): the seed has one rate for input and output")
        }
    }

    @Test("pricing one billing unit of every model charges the seed's credits and cost")
    func oneUnitOfEveryModelChargesTheSeedPrice() throws {
        for (model, _, kind, _, costUSD, credits) in seedPrices {
            let priced = try catalog.price(model: model, usage: oneUnit(of: kind))
            #expect(priced.charge == (try Millicredits(parsing: credits)), "\(model)")
            #expect(DecimalText.usd(nanos: priced.providerCostNanoUSD) == costUSD, "\(model)")
        }
    }

    @Test("margins are computed from the prices, not copied from the seed's margin column", arguments: [
        // The seed's standard text table says 25 %, 35 %, 50 %, 25 %, 75 %: wrong.
        ("GPT-3.5 Turbo", 92.5), ("Llama 2 (70B)", 93.5), ("Mistral 7B", 95.0), ("Cohere Command", 92.5),
        ("Claude 3 Haiku", 97.5),
        // Where the seed's column is right, the computation agrees with it.
        ("GPT-4 Turbo", 80.0), ("Gemini Ultra", 76.0), ("DALL-E 2", 60.0), ("Imagen 2", 10.0), ("Stable Video", 20.0),
    ])
    func marginComputedFromPrices(model: String, percent: Double) throws {
        let entry = try #require(catalog.entry(named: model))
        #expect(entry.margin.percent == percent)
        #expect(!entry.isBelowCost)
    }

    @Test("a margin that is not a round number: Sora Pro, $2.80 of credits against $2.50, is 10.714… %")
    func soraProMarginIsExact() throws {
        let margin = try #require(catalog.entry(named: "Sora Pro")).margin
        #expect(margin.priceNanoUSD == 2_800_000_000)
        #expect(margin.costNanoUSD == 2_500_000_000)
        #expect(abs(margin.percent - 300.0 / 28.0) < 1e-12)
    }

    @Test("the three models sold at exactly provider cost have a 0 % margin and are not below cost",
          arguments: ["Midjourney Basic", "Imagen Basic", "Runway Gen-1"])
    func atCostIsNotBelowCost(model: String) throws {
        let entry = try #require(catalog.entry(named: model))
        #expect(entry.margin.percent == 0)
        #expect(entry.margin.priceNanoUSD == entry.margin.costNanoUSD)
        #expect(!entry.isBelowCost && !entry.margin.isBelowCost)
    }
}
