import ArgumentParser
import CreditPricing

/// `credits quote N [--json]`
struct QuoteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quote",
        abstract: "The cheapest way to buy at least N credits.",
        discussion: """
            Any number of each package (1,000 credits $10.00, 5,000 $45.00, 10,000 $85.00) and \
            at most one custom amount at $0.01 a credit, 5 % off from 10,000 and 10 % off from \
            25,000 credits (rounded down to the cent). Ties go to more credits, then fewer \
            items. --json prints {"requested", "credits", "price_usd", "items": [{"type": \
            "package" or "custom", "credits", "price_usd", ...}]}.
            """
    )

    @Argument(help: "Credits needed, whole credits, 1...\(Quote.creditsMax).") var credits: Int64
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let quote: Quote
        do {
            quote = try CreditPricing.quote(credits: credits)
        } catch {
            if json {
                print("{\"ok\": false, \"requested\": \(credits), \"problem\": \(jsonString(error.description))}")
            } else {
                printError("quote: \(error)")
            }
            throw ExitCode.failure
        }
        print(json ? Self.json(quote) : Self.text(quote))
    }

    static func json(_ quote: Quote) -> String {
        let items = quote.items.map { item in
            switch item {
            case .package(let package, let count):
                "{\"type\": \"package\", \"package_credits\": \(package.credits), \"count\": \(count), "
                    + "\"credits\": \(item.credits), \"price_usd\": \(DecimalText.usd(cents: item.priceCents))}"
            case .custom(let credits, let discountPercent, let priceCents):
                "{\"type\": \"custom\", \"credits\": \(credits), \"discount_pct\": \(discountPercent), "
                    + "\"price_usd\": \(DecimalText.usd(cents: priceCents))}"
            }
        }
        return "{\"requested\": \(quote.requestedCredits), \"credits\": \(quote.credits), "
            + "\"price_usd\": \(DecimalText.usd(cents: quote.priceCents)), \"items\": [" + items.joined(separator: ", ") + "]}"
    }

    static func text(_ quote: Quote) -> String {
        var lines = ["At least \(grouped(quote.requestedCredits)) credits: buy \(grouped(quote.credits)) credits "
            + "for $\(DecimalText.usd(cents: quote.priceCents))"]
        for item in quote.items {
            let label = switch item {
            case .package(let package, let count): "\(count) × \(grouped(package.credits))-credit package"
            case .custom(let credits, let discountPercent, _):
                "custom \(grouped(credits)) credits" + (discountPercent > 0 ? " (\(discountPercent) % off)" : "")
            }
            lines.append("  " + label + "  $" + DecimalText.usd(cents: item.priceCents))
        }
        return lines.joined(separator: "\n")
    }
}

/// 12000 → "12,000".
private func grouped(_ value: Int64) -> String {
    var digits = String(value.magnitude)
    var groups: [Substring] = []
    while digits.count > 3 {
        groups.insert(Substring(digits.suffix(3)), at: 0)
        digits.removeLast(3)
    }
    groups.insert(Substring(digits), at: 0)
    return (value < 0 ? "-" : "") + groups.joined(separator: ",")
}
