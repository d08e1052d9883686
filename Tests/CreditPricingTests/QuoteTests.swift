import CreditPricing
import Testing

// Packages: 1,000 credits $10.00, 5,000 $45.00, 10,000 $85.00. Custom amounts: $0.01 a
// credit, 5 % off from 10,000 and 10 % off from 25,000 credits, rounded down to the cent.

/// The package of `credits` credits.
private func package(_ credits: Int64) -> CreditPackage {
    CreditPackage.all.first { $0.credits == credits }!
}

@Suite("Credit quotes: the cheapest way to buy at least N credits")
struct QuoteTests {
    @Test("the seed's packages: 1,000 credits $10.00, 5,000 $45.00, 10,000 $85.00; discounts 5 % from 10,000, 10 % from 25,000")
    func seedPackagesAndDiscounts() {
        #expect(Set(CreditPackage.all.map { [$0.credits, $0.priceCents] }) == [[1_000, 1_000], [5_000, 4_500], [10_000, 8_500]])
        #expect(Set(BulkDiscount.all.map { [$0.creditsMin, $0.percent] }) == [[10_000, 5], [25_000, 10]])
        #expect(BulkDiscount.baseRateCentsPerCredit == 1)
    }

    @Test("1,000 credits: one 1,000 package ($10.00), tied on price, credits and items with custom 1,000 ($10.00); the package wins")
    func quote1000() throws {
        let quote = try CreditPricing.quote(credits: 1_000)
        #expect(quote.priceCents == 1_000 && quote.credits == 1_000)
        #expect(quote.items == [.package(package(1_000), count: 1)])
    }

    @Test("5,000 credits: one 5,000 package $45.00 beats custom 5,000 at $50.00 and five 1,000 packages at $50.00")
    func quote5000() throws {
        let quote = try CreditPricing.quote(credits: 5_000)
        #expect(quote.priceCents == 4_500 && quote.credits == 5_000)
        #expect(quote.items == [.package(package(5_000), count: 1)])
    }

    @Test("10,000 credits: one 10,000 package $85.00 beats custom 10,000 at 5 % off ($95.00) and two 5,000 packages ($90.00)")
    func quote10000() throws {
        let quote = try CreditPricing.quote(credits: 10_000)
        #expect(quote.priceCents == 8_500 && quote.credits == 10_000)
        #expect(quote.items == [.package(package(10_000), count: 1)])
    }

    /// 10,000 package + custom 2,000 = $85 + $20 = $105.00 (2 items), tied with 10,000 + two
    /// 1,000 packages ($105.00, 3 items); dearer: custom 12,000 at 5 % off $114.00, 10,000 +
    /// 5,000 $130.00 (15,000 credits), two 5,000 + custom 2,000 $110.00.
    @Test("12,000 credits: a 10,000 package and custom 2,000, $105.00")
    func quote12000() throws {
        let quote = try CreditPricing.quote(credits: 12_000)
        #expect(quote.priceCents == 10_500 && quote.credits == 12_000)
        #expect(quote.items == [.package(package(10_000), count: 1),
                                .custom(credits: 2_000, discountPercent: 0, priceCents: 2_000)])
        #expect(quote.itemCount == 2)
    }

    /// Three 10,000 packages $255.00; dearer: custom 30,000 at 10 % off $270.00, two 10,000
    /// packages + custom 10,000 at 5 % off $265.00, two 10,000 + two 5,000 $260.00, custom
    /// 25,000 at 10 % off ($225.00) + a 5,000 package $270.00.
    @Test("30,000 credits: three 10,000 packages, $255.00")
    func quote30000() throws {
        let quote = try CreditPricing.quote(credits: 30_000)
        #expect(quote.priceCents == 25_500 && quote.credits == 30_000)
        #expect(quote.items == [.package(package(10_000), count: 3)])
    }

    /// $85.00 buys 10,000 credits (one package) or 9,000 (a 5,000 package and custom 4,000,
    /// or a 5,000 and four 1,000 packages): the tie goes to more credits for the same money.
    @Test("9,000 credits: a price tie goes to more credits — one 10,000 package for $85.00")
    func quote9000TieBreak() throws {
        let quote = try CreditPricing.quote(credits: 9_000)
        #expect(quote.priceCents == 8_500 && quote.credits == 10_000)
        #expect(quote.items == [.package(package(10_000), count: 1)])
    }

    /// Two 10,000 packages + custom 4,000 = $210.00 (24,000 credits). Custom 25,000 at 10 % off
    /// ($225.00) is cheaper than custom 24,000 at 5 % off ($228.00) but dearer than packages.
    @Test("24,000 credits: two 10,000 packages and custom 4,000, $210.00")
    func quote24000() throws {
        let quote = try CreditPricing.quote(credits: 24_000)
        #expect(quote.priceCents == 21_000 && quote.credits == 24_000)
        #expect(quote.items == [.package(package(10_000), count: 2),
                                .custom(credits: 4_000, discountPercent: 0, priceCents: 4_000)])
    }

    @Test("custom prices: base rate, discount from the threshold on, rounded down to the cent", arguments: [
        (1, 1), (9_999, 9_999), (10_000, 9_500), (10_001, 9_500), (10_019, 9_518), (24_000, 22_800), (24_999, 23_749),
        (25_000, 22_500), (26_001, 23_400),
    ] as [(Int64, Int64)])
    func customPrices(credits: Int64, cents: Int64) {
        #expect(BulkDiscount.customPriceCents(credits: credits) == cents)
    }

    @Test("invalid amounts are typed errors", arguments: [0, -1, -10_000, Int64.min])
    func notPositiveRejected(credits: Int64) {
        #expect(throws: QuoteError.notPositive(credits: credits)) { try CreditPricing.quote(credits: credits) }
    }

    @Test("absurdly large amounts are typed errors", arguments: [Quote.creditsMax + 1, Int64.max])
    func tooLargeRejected(credits: Int64) {
        #expect(throws: QuoteError.tooLarge(credits: credits, max: Quote.creditsMax)) { try CreditPricing.quote(credits: credits) }
    }

    @Test("the largest quotable amount is quoted: 100 packages of 10,000, $8,500.00")
    func largestAmountQuoted() throws {
        let quote = try CreditPricing.quote(credits: Quote.creditsMax)
        #expect(quote.priceCents == 850_000)
        #expect(quote.items == [.package(package(10_000), count: 100)])
    }

    /// Enumerates every package count up to the bound and every custom amount that can be
    /// cheapest (the exact remainder or a discount threshold above it), without pruning.
    private func plainEnumeration(_ requested: Int64) -> (priceCents: Int64, credits: Int64, items: Int64, custom: Int64) {
        var best: (priceCents: Int64, credits: Int64, items: Int64, custom: Int64)?
        let (a, b, c) = (package(10_000), package(5_000), package(1_000))
        for large in 0 ... (requested + a.credits - 1) / a.credits {
            for medium in 0 ... (requested + b.credits - 1) / b.credits {
                for small in 0 ... (requested + c.credits - 1) / c.credits {
                    let credits = large * a.credits + medium * b.credits + small * c.credits
                    let price = large * a.priceCents + medium * b.priceCents + small * c.priceCents
                    let missing = max(0, requested - credits)
                    for custom in [missing, 10_000, 25_000] where custom >= missing && (custom == missing || missing > 0) {
                        let candidate = (priceCents: price + BulkDiscount.customPriceCents(credits: custom), credits: credits + custom,
                                         items: large + medium + small + (custom > 0 ? 1 : 0), custom: custom)
                        // Cheaper, then more credits, then fewer items, then less custom.
                        if best.map({ (candidate.priceCents, -candidate.credits, candidate.items, candidate.custom)
                                < ($0.priceCents, -$0.credits, $0.items, $0.custom) }) ?? true { best = candidate }
                    }
                }
            }
        }
        return best!
    }

    @Test("the pruned search finds what plain enumeration finds (every 97th amount up to 61,000 and the thresholds)")
    func prunedSearchMatchesEnumeration() throws {
        let amounts = Array(stride(from: Int64(1), through: 61_000, by: 97))
            + [999, 1_000, 1_001, 4_999, 5_000, 5_001, 9_999, 10_000, 10_001, 24_999, 25_000, 25_001]
        for amount in amounts {
            let quote = try CreditPricing.quote(credits: amount)
            let expected = plainEnumeration(amount)
            #expect(quote.priceCents == expected.priceCents && quote.credits == expected.credits
                && quote.itemCount == expected.items, "\(amount) credits")
            #expect(quote.credits >= amount)
            #expect(quote.items.reduce(0) { $0 + $1.priceCents } == quote.priceCents, "\(amount) credits")
        }
    }
}
