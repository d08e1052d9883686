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

    public var description: String {
        switch self {
        case .priceOutOfRange(let cents):
            "a monthly price of \(cents) cents is outside 0 to \(Plan.monthlyPriceCentsMax) cents"
        case .creditsOutOfRange(let credits):
            "a monthly allocation of \(credits) is outside 0 to \(Millicredits(LedgerLimits.amountMax))"
        }
    }
}

/// What a change of plan does to the subscriber's credits. The decision only: the host
/// issues the grant and moves the subscription.
public enum PlanChange: Sendable, Hashable {
    /// A larger allocation (or the same one at a higher price): the new plan applies now,
    /// and the allocation difference is granted now, for the rest of the current cycle.
    case upgrade(grantNow: Millicredits)
    /// A smaller allocation (or the same one at a lower price): the current plan runs to the
    /// end of its cycle and the new one starts with the next; nothing is granted or taken
    /// back now.
    case downgrade
    /// Same allocation and price: nothing to do.
    case unchanged

    /// Upgrade or downgrade by the monthly allocation, then by the monthly price.
    public static func decide(from current: Plan, to new: Plan) -> PlanChange {
        let old = (current.monthlyCredits, current.monthlyPriceCents)
        let next = (new.monthlyCredits, new.monthlyPriceCents)
        if next > old {
            // The new allocation is at least the old, and both are within 0 ... amountMax.
            return .upgrade(grantNow: Millicredits(new.monthlyCredits.rawValue - current.monthlyCredits.rawValue))
        }
        return next < old ? .downgrade : .unchanged
    }
}
