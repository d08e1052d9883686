import CreditPricing
import Testing

@Suite("Pricing a usage: exact sums, one rounding up per operation, typed errors")
struct PricingTests {
    let catalog = Catalog.standard

    private func charge(_ model: String, _ usage: Usage) throws -> Millicredits {
        try catalog.price(model: model, usage: usage).charge
    }

    @Test("the seed's examples: GPT-4 Turbo, Mistral 7B, DALL-E 3, Sora Pro")
    func seedExamples() throws {
        #expect(try charge("GPT-4 Turbo", .tokens(input: 1_000, output: 0)) == Millicredits(15_000))
        #expect(try charge("GPT-4 Turbo", .tokens(input: 400, output: 600)) == Millicredits(15_000))
        #expect(try charge("Mistral 7B", .tokens(input: 0, output: 1_000)) == Millicredits(1_500))
        #expect(try charge("DALL-E 3", .images(1)) == Millicredits(20_000))
        #expect(try charge("Sora Pro", .videoSeconds(5)) == Millicredits(280_000))
    }

    @Test("video is billed per started 5-second clip: 7 s of Runway Gen-2 is 2 clips, 360 credits")
    func videoBilledPerStartedClip() throws {
        let priced = try catalog.price(model: "Runway Gen-2", usage: .videoSeconds(7))
        #expect(priced.units == 2)
        #expect(priced.charge == Millicredits(360_000))
        #expect(priced.providerCostNanoUSD == 3_000_000_000)
        #expect(try catalog.price(model: "Runway Gen-2", usage: .videoSeconds(1)).units == 1)
        #expect(try catalog.price(model: "Runway Gen-2", usage: .videoSeconds(10)).units == 2)
        #expect(try catalog.price(model: "Runway Gen-2", usage: .videoSeconds(11)).units == 3)
    }

    @Test("a fraction of a millicredit rounds up: 1 token of Mistral 7B is 1.5 mc, charged 2 mc")
    func fractionRoundsUp() throws {
        #expect(try charge("Mistral 7B", .tokens(input: 1, output: 0)) == Millicredits(2))
        #expect(try charge("Mistral 7B", .tokens(input: 3, output: 0)) == Millicredits(5)) // 4.5 mc
        #expect(try charge("Claude 3 Haiku", .tokens(input: 1, output: 0)) == Millicredits(1)) // exactly 1 mc
    }

    @Test("input and output are summed exactly and rounded once: 1 + 1 token of Mistral 7B is 3 mc, not 2 + 2")
    func roundedOncePerOperation() throws {
        #expect(try charge("Mistral 7B", .tokens(input: 1, output: 1)) == Millicredits(3))
        #expect(try charge("Mistral 7B", .tokens(input: 333, output: 333)) == Millicredits(999))
    }

    @Test("separate input and output rates apply to their own tokens")
    func separateInputAndOutputRates() throws {
        let catalog = try Catalog.parse(text: """
            model | provider | kind | quality | unit | provider_cost_usd | credits | input_credits | output_credits
            Split | P | text | premium | 1K tokens | 0.002 | 2 | 1 | 3
            """)
        // 500 × 1 mc + 250 × 3 mc = 1,250 mc; cost 750 tokens × $0.002/1K = $0.0015.
        let priced = try catalog.price(model: "Split", usage: .tokens(input: 500, output: 250))
        #expect(priced.charge == Millicredits(1_250))
        #expect(priced.providerCostNanoUSD == 1_500_000)
        #expect(priced.units == 750)
        // 1 output token: 3 mc exactly; 1 input token: 1 mc.
        #expect(try catalog.price(model: "Split", usage: .tokens(input: 0, output: 1)).charge == Millicredits(3))
        #expect(try catalog.price(model: "Split", usage: .tokens(input: 1, output: 0)).charge == Millicredits(1))
    }

    @Test("the priced usage carries the model, provider, provider cost and units")
    func pricedUsageCarriesTheCall() throws {
        let priced = try catalog.price(model: "GPT-4 Turbo", usage: .tokens(input: 1_200, output: 300))
        #expect(priced.model == "GPT-4 Turbo" && priced.provider == "OpenAI")
        #expect(priced.units == 1_500)
        #expect(priced.providerCostNanoUSD == 45_000_000) // 1.5 × $0.03
        #expect(priced.charge == Millicredits(22_500))
        let images = try catalog.price(model: "Midjourney Pro", usage: .images(3))
        #expect(images.units == 3 && images.charge == Millicredits(75_000) && images.providerCostNanoUSD == 600_000_000)
    }

    @Test("an unknown model is a typed error")
    func unknownModelRejected() {
        #expect(throws: PricingError.unknownModel("GPT-5")) { try catalog.price(model: "GPT-5", usage: .images(1)) }
    }

    @Test("usage that does not fit the model's kind is rejected", arguments: [
        ("GPT-4o", Usage.videoSeconds(5), ModelKind.text),
        ("DALL-E 3", Usage.tokens(input: 10, output: 10), ModelKind.image),
        ("Sora Pro", Usage.images(1), ModelKind.video),
    ])
    func wrongKindRejected(model: String, usage: Usage, kind: ModelKind) {
        #expect(throws: PricingError.wrongKind(model: model, modelKind: kind, usage: usage)) {
            try catalog.price(model: model, usage: usage)
        }
    }

    @Test("zero or negative usage is rejected", arguments: [
        ("Sora Pro", Usage.videoSeconds(0)), ("Sora Pro", Usage.videoSeconds(-5)),
        ("DALL-E 3", Usage.images(0)), ("DALL-E 3", Usage.images(-1)),
        ("GPT-4o", Usage.tokens(input: 0, output: 0)), ("GPT-4o", Usage.tokens(input: -1, output: 10)),
        ("GPT-4o", Usage.tokens(input: 10, output: -1)),
    ])
    func invalidUsageRejected(model: String, usage: Usage) {
        #expect(throws: PricingError.invalidUsage(usage)) { try catalog.price(model: model, usage: usage) }
    }

    @Test("a charge beyond what one ledger command may move is an overflow error, never a wrap")
    func overflowRejected() throws {
        let images = Usage.images(Int64.max)
        #expect(throws: PricingError.overflow(model: "Sora Pro", usage: .videoSeconds(Int64.max))) {
            try catalog.price(model: "Sora Pro", usage: .videoSeconds(Int64.max))
        }
        #expect(throws: PricingError.overflow(model: "DALL-E 3", usage: images)) { try catalog.price(model: "DALL-E 3", usage: images) }
        let tokens = Usage.tokens(input: Int64.max, output: Int64.max)
        #expect(throws: PricingError.overflow(model: "GPT-4o", usage: tokens)) { try catalog.price(model: "GPT-4o", usage: tokens) }
        // The largest charge that fits: 10^15 mc is 50,000,000,000 images at 20 credits.
        let largest = try catalog.price(model: "DALL-E 3", usage: .images(LedgerLimits.amountMax / 20_000))
        #expect(largest.charge == Millicredits(LedgerLimits.amountMax))
        #expect(throws: PricingError.self) { try catalog.price(model: "DALL-E 3", usage: .images(LedgerLimits.amountMax / 20_000 + 1)) }
    }
}
