/// A fixed bundle of credits sold at a fixed price (integer US cents).
public struct CreditPackage: Sendable, Hashable {
    public let credits: Int64
    public let priceCents: Int64

    /// The seed's packages, largest first.
    public static let all: [CreditPackage] = [
        CreditPackage(credits: 10_000, priceCents: 8_500),
        CreditPackage(credits: 5_000, priceCents: 4_500),
        CreditPackage(credits: 1_000, priceCents: 1_000),
    ]
}

/// A discount on a custom amount of at least `creditsMin` credits bought at the base rate.
public struct BulkDiscount: Sendable, Hashable {
    public let creditsMin: Int64
    public let percent: Int64

    /// The seed's discounts, largest threshold first.
    public static let all: [BulkDiscount] = [
        BulkDiscount(creditsMin: 25_000, percent: 10),
        BulkDiscount(creditsMin: 10_000, percent: 5),
    ]

    /// The base rate of a custom amount: 1 credit = 1 cent.
    public static let baseRateCentsPerCredit: Int64 = 1

    /// The discount a custom amount of `credits` gets, in percent (0 below every threshold).
    public static func percent(forCustom credits: Int64) -> Int64 {
        all.first { credits >= $0.creditsMin }?.percent ?? 0
    }

    /// The price of a custom amount: base rate less its discount, rounded down to the cent
    /// (in the buyer's favour). 10,001 credits at 5 % off: 10,001 × 0.95 = 9,500.95 → $95.00.
    public static func customPriceCents(credits: Int64) -> Int64 {
        precondition(credits >= 0 && credits <= Quote.creditsMax)
        return credits * baseRateCentsPerCredit * (100 - percent(forCustom: credits)) / 100
    }
}

/// One line of a quote.
public enum QuoteItem: Sendable, Hashable {
    /// `count` of one package.
    case package(CreditPackage, count: Int64)
    /// A custom amount at the base rate, less its bulk discount.
    case custom(credits: Int64, discountPercent: Int64, priceCents: Int64)

    public var credits: Int64 {
        switch self {
        case .package(let package, let count): package.credits * count
        case .custom(let credits, _, _): credits
        }
    }

    public var priceCents: Int64 {
        switch self {
        case .package(let package, let count): package.priceCents * count
        case .custom(_, _, let priceCents): priceCents
        }
    }
}

/// The cheapest way to buy at least the credits asked for.
public struct Quote: Sendable, Hashable {
    public let requestedCredits: Int64
    /// Credits bought: at least `requestedCredits`.
    public let credits: Int64
    public let priceCents: Int64
    /// Packages (largest first), then the custom amount if any.
    public let items: [QuoteItem]

    /// Quotes are for 1 to 1,000,000 credits ($10,000 at the base rate); larger purchases
    /// are enterprise contracts. The limit also bounds the exhaustive search.
    public static let creditsMax: Int64 = 1_000_000

    /// Packages bought (each one counts) plus the custom amount: what the tie-break counts.
    public var itemCount: Int64 {
        items.reduce(0) { total, item in
            if case .package(_, let count) = item { return total + count }
            return total + 1
        }
    }
}

public enum QuoteError: Error, Equatable, Sendable, CustomStringConvertible {
    case notPositive(credits: Int64)
    case tooLarge(credits: Int64, max: Int64)

    /// A stable machine-readable name.
    public var code: String {
        switch self {
        case .notPositive: "quote_not_positive"
        case .tooLarge: "quote_too_large"
        }
    }

    public var description: String {
        switch self {
        case .notPositive(let credits): "cannot quote \(credits) credits: ask for at least 1 credit"
        case .tooLarge(let credits, let max):
            "cannot quote \(credits) credits: at most \(max) credits per purchase (larger amounts are enterprise contracts)"
        }
    }
}

/// The cheapest way to buy at least `credits` credits with any number of each package
/// and at most one custom amount. Searches every package count exhaustively, skipping only
/// branches that cannot beat the best found. Ties on price go to more credits (the buyer
/// gets more for the same money), then fewer items, then fewer custom credits (a package
/// rather than the same custom amount).
public func quote(credits requested: Int64) throws(QuoteError) -> Quote {
    guard requested > 0 else { throw .notPositive(credits: requested) }
    guard requested <= Quote.creditsMax else { throw .tooLarge(credits: requested, max: Quote.creditsMax) }
    var search = QuoteSearch(requested: requested)
    search.visit(level: 0, credits: 0, priceCents: 0)
    let best = search.best!
    var items: [QuoteItem] = []
    for (package, count) in zip(CreditPackage.all, best.counts) where count > 0 {
        items.append(.package(package, count: count))
    }
    if best.customCredits > 0 {
        items.append(.custom(credits: best.customCredits, discountPercent: BulkDiscount.percent(forCustom: best.customCredits),
                             priceCents: BulkDiscount.customPriceCents(credits: best.customCredits)))
    }
    let quote = Quote(requestedCredits: requested, credits: best.credits, priceCents: best.priceCents, items: items)
    assert(quote.credits >= requested && quote.items.reduce(0) { $0 + $1.credits } == quote.credits)
    assert(quote.items.reduce(0) { $0 + $1.priceCents } == quote.priceCents)
    return quote
}

private struct QuoteSearch {
    struct Candidate {
        var counts: [Int64]
        var customCredits: Int64
        var credits: Int64
        var priceCents: Int64
        var itemCount: Int64

        /// Price, then more credits, then items, then custom credits: lower is better.
        var rank: (Int64, Int64, Int64, Int64) { (priceCents, -credits, itemCount, customCredits) }
    }

    let requested: Int64
    var counts: [Int64]
    var best: Candidate?

    init(requested: Int64) {
        self.requested = requested
        self.counts = Array(repeating: 0, count: CreditPackage.all.count)
    }

    /// Tries every count of package `level` (most first) under the counts already chosen.
    /// Buying more of one package than alone covers what is still missing only adds cost.
    mutating func visit(level: Int, credits: Int64, priceCents: Int64) {
        let missing = max(0, requested - credits)
        if let best, priceCents + Self.lowerBoundCents(missing: missing, level: level) > best.priceCents { return }
        guard level < CreditPackage.all.count else {
            finish(credits: credits, priceCents: priceCents, missing: missing)
            return
        }
        let package = CreditPackage.all[level]
        let countMax = (missing + package.credits - 1) / package.credits
        for count in stride(from: countMax, through: 0, by: -1) {
            counts[level] = count
            visit(level: level + 1, credits: credits + count * package.credits,
                  priceCents: priceCents + count * package.priceCents)
        }
        counts[level] = 0
    }

    /// A lower bound on what buying `missing` credits costs with packages from `level` on
    /// and a custom amount: `missing` × the lowest price per credit among them, rounded
    /// down. (A custom price is rounded down by less than a cent, so any such purchase costs
    /// more than that product less one cent, hence at least its floor.)
    private static func lowerBoundCents(missing: Int64, level: Int) -> Int64 {
        let discountMax = BulkDiscount.all.map(\.percent).max() ?? 0
        var lowest = (cents: BulkDiscount.baseRateCentsPerCredit * (100 - discountMax), credits: Int64(100))
        for package in CreditPackage.all[level...] where package.priceCents * lowest.credits < lowest.cents * package.credits {
            lowest = (package.priceCents, package.credits)
        }
        return missing * lowest.cents / lowest.credits
    }

    /// Completes the packages chosen with a custom amount: exactly what is missing, or more
    /// when reaching a discount threshold makes it cheaper (24,000 credits cost $228.00,
    /// 25,000 cost $225.00).
    private mutating func finish(credits: Int64, priceCents: Int64, missing: Int64) {
        var customOptions: [Int64] = [missing]
        for discount in BulkDiscount.all where discount.creditsMin > missing && missing > 0 {
            customOptions.append(discount.creditsMin)
        }
        let packageCount = counts.reduce(0, +)
        for custom in customOptions {
            let candidate = Candidate(counts: counts, customCredits: custom, credits: credits + custom,
                                      priceCents: priceCents + BulkDiscount.customPriceCents(credits: custom),
                                      itemCount: packageCount + (custom > 0 ? 1 : 0))
            if best.map({ candidate.rank < $0.rank }) ?? true { best = candidate }
        }
    }
}
