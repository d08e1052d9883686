/// A subscription plan: what it costs per month and the credits it allocates each billing
/// cycle. Prices are integer US cents.
public struct Plan: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    /// The monthly price when calls run on the service's (system) provider keys.
    public let monthlyPriceCents: Int64
    /// The monthly price for a subscriber who brings their own provider keys ("Own API Price").
    public let ownKeyMonthlyPriceCents: Int64
    /// Credits granted at the start of each billing cycle.
    public let monthlyCredits: Millicredits

    /// $10,000,000 a month.
    public static let monthlyPriceCentsMax: Int64 = 1_000_000_000

    // The seed's subscription table. Its "Credit Value" and "Gross Margin" columns are
    // derived figures and are not kept.
    public static let basic = Plan(name: "Basic", monthlyPriceCents: 5_999, ownKeyMonthlyPriceCents: 2_999,
                                   monthlyCredits: Millicredits(2_000 * Millicredits.perCredit))
    public static let pro = Plan(name: "Pro", monthlyPriceCents: 14_999, ownKeyMonthlyPriceCents: 9_999,
                                 monthlyCredits: Millicredits(5_000 * Millicredits.perCredit))
    public static let expert = Plan(name: "Expert", monthlyPriceCents: 24_999, ownKeyMonthlyPriceCents: 14_999,
                                    monthlyCredits: Millicredits(15_000 * Millicredits.perCredit))

    /// The plans with list prices, cheapest first. Enterprise plans are made per contract.
    public static let listed: [Plan] = [basic, pro, expert]

    private init(name: String, monthlyPriceCents: Int64, ownKeyMonthlyPriceCents: Int64, monthlyCredits: Millicredits) {
        self.name = name
        self.monthlyPriceCents = monthlyPriceCents
        self.ownKeyMonthlyPriceCents = ownKeyMonthlyPriceCents
        self.monthlyCredits = monthlyCredits
    }

    /// An Enterprise plan with the contract's terms. Prices from $0 to
    /// `monthlyPriceCentsMax`; the allocation from 0 to `LedgerLimits.amountMax` (one grant).
    public static func enterprise(monthlyPriceCents: Int64, ownKeyMonthlyPriceCents: Int64,
                                  monthlyCredits: Millicredits) throws(PlanError) -> Plan {
        for price in [monthlyPriceCents, ownKeyMonthlyPriceCents] where !(0 ... monthlyPriceCentsMax).contains(price) {
            throw .priceOutOfRange(cents: price)
        }
        guard (0 ... LedgerLimits.amountMax).contains(monthlyCredits.rawValue) else {
            throw .creditsOutOfRange(monthlyCredits)
        }
        return Plan(name: "Enterprise", monthlyPriceCents: monthlyPriceCents,
                    ownKeyMonthlyPriceCents: ownKeyMonthlyPriceCents, monthlyCredits: monthlyCredits)
    }

    public var description: String {
        "\(name): $\(DecimalText.usd(cents: monthlyPriceCents))/month ($\(DecimalText.usd(cents: ownKeyMonthlyPriceCents)) "
            + "with own keys), \(monthlyCredits) a month"
    }
}

public enum PlanError: Error, Equatable, Sendable, CustomStringConvertible {
    case priceOutOfRange(cents: Int64)
    case creditsOutOfRange(Millicredits)

    /// A stable machine-readable name.
    public var code: String {
        switch self {
        case .priceOutOfRange: "plan_price_out_of_range"
        case .creditsOutOfRange: "plan_credits_out_of_range"
        }
    }

    public var description: String {
        switch self {
        case .priceOutOfRange(let cents):
            "a monthly price of \(cents) cents is outside 0 to \(Plan.monthlyPriceCentsMax) cents"
        case .creditsOutOfRange(let credits):
            "a monthly allocation of \(credits) is outside 0 to \(Millicredits(LedgerLimits.amountMax))"
        }
    }
}

/// What a change of plan did (`Billing.changeSubscription`).
public enum PlanChange: Sendable, Hashable {
    /// It raised the cycle's allocation or price: the new plan applies now, the rest of the
    /// cycle was charged, and `grantNow` credits were granted until its end (CreditCore's
    /// `PlanProration` states the rule; `Billing.planChangeQuote` tells the charge before).
    case upgrade(grantNow: Millicredits)
    /// It raised neither (a downgrade, or a return to a plan this cycle was already paid at):
    /// the current terms run to the end of the cycle and the new ones start with the next
    /// renewal; nothing is charged, granted or taken back now.
    case deferred
    /// Same allocation and price as the terms in force: nothing to do.
    case unchanged
}
