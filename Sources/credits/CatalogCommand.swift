import ArgumentParser
import CreditPricing

/// `credits catalog [--file PATH] [--json]`
struct CatalogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalog",
        abstract: "Print the model catalog with computed margins, or validate a catalog file.",
        discussion: """
            Without --file, prints the built-in catalog (the seed's price tables). With --file, \
            checks the file (format: docs/pricing.md) and prints it; a bad file is reported \
            with its line and column and makes the exit status non-zero. Margins are computed \
            from the prices (1 credit = $0.01); an entry sold below the provider's cost is \
            flagged. The file must be a regular file (not a device or a FIFO) of at most \
            \(Catalog.textBytesMax) bytes. --json prints an array with one object per model: "model", "provider", \
            "kind", "quality", "unit", "provider_cost_usd", "credits", "input_credits", \
            "output_credits", "margin_pct", "below_cost"; on a bad file it prints one object \
            {"ok": false, "file", "code", "problem"} instead ("code" is a stable snake_case \
            name: "not_regular_file", "too_large", "control_character", ...).
            """
    )

    @Option(help: "A catalog file to validate and print instead of the built-in catalog: a regular file of at most \(Catalog.textBytesMax) bytes.")
    var file: String?
    @Flag(help: "Print a JSON array, one object per model.") var json = false

    func validate() throws {
        if let file { try checkPath("--file", file) }
    }

    func run() throws {
        let catalog: Catalog
        do {
            catalog = try load()
        } catch {
            let source = file ?? "built-in catalog"
            if json {
                print("{\"ok\": false, \"file\": \(jsonString(source)), \"code\": \"\(error.code)\", "
                    + "\"problem\": \(jsonString(error.description))}")
            } else {
                printError("\(source): \(error)")
            }
            throw ExitCode.failure
        }
        print(json ? Self.json(catalog) : Self.table(catalog))
    }

    /// Why a catalog file was refused: it could not be read as a bounded regular file, was not
    /// UTF-8, or did not parse.
    enum FileProblem: Error, CustomStringConvertible {
        case unreadable(BoundedReadError)
        case notUTF8
        case invalid(CatalogError)

        var code: String {
            switch self {
            case .unreadable(let error): error.code
            case .notUTF8: "not_utf8"
            case .invalid(let error): error.code
            }
        }

        var description: String {
            switch self {
            case .unreadable(let error): error.description
            case .notUTF8: "not UTF-8 text"
            case .invalid(let error): error.description
            }
        }
    }

    private func load() throws(FileProblem) -> Catalog {
        guard let file else { return Catalog.standard }
        let bytes: [UInt8]
        do {
            bytes = try readRegularFile(file, bytesMax: Catalog.textBytesMax)
        } catch {
            throw .unreadable(error)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .notUTF8 }
        do {
            return try Catalog.parse(text: text)
        } catch {
            throw .invalid(error)
        }
    }

    static func json(_ catalog: Catalog) -> String {
        let objects = catalog.entries.map { entry in
            "  {\"model\": \(jsonString(entry.model)), \"provider\": \(jsonString(entry.provider)), "
                + "\"kind\": \"\(entry.kind)\", \"quality\": \"\(entry.quality)\", \"unit\": \(jsonString(entry.kind.unit)), "
                + "\"provider_cost_usd\": \(DecimalText.usd(nanos: entry.providerCostPerUnitNanoUSD)), "
                + "\"credits\": \(DecimalText.credits(entry.creditsPerUnit)), "
                + "\"input_credits\": \(DecimalText.credits(entry.inputCreditsPerUnit)), "
                + "\"output_credits\": \(DecimalText.credits(entry.outputCreditsPerUnit)), "
                + "\"margin_pct\": \(fixed(entry.margin.percent, 2)), \"below_cost\": \(entry.isBelowCost)}"
        }
        return "[\n" + objects.joined(separator: ",\n") + "\n]"
    }

    static func table(_ catalog: Catalog) -> String {
        var rows = [["Model", "Provider", "Kind", "Quality", "Unit", "Cost USD", "Credits", "Margin", ""]]
        for entry in catalog.entries {
            var credits = DecimalText.credits(entry.creditsPerUnit)
            if entry.inputCreditsPerUnit != entry.creditsPerUnit || entry.outputCreditsPerUnit != entry.creditsPerUnit {
                credits += " (in \(DecimalText.credits(entry.inputCreditsPerUnit)), out \(DecimalText.credits(entry.outputCreditsPerUnit)))"
            }
            rows.append([entry.model, entry.provider, entry.kind.rawValue, entry.quality.rawValue, entry.kind.unit,
                         DecimalText.usd(nanos: entry.providerCostPerUnitNanoUSD), credits,
                         fixed(entry.margin.percent, 2) + " %", entry.isBelowCost ? "BELOW COST" : ""])
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max()! }
        var lines = rows.map { row in
            zip(row, widths).map { $0 + String(repeating: " ", count: $1 - $0.count) }.joined(separator: "  ").trimmingTrailingSpaces
        }
        let below = catalog.entries.filter(\.isBelowCost).count
        let atCost = catalog.entries.filter { $0.margin.priceNanoUSD == $0.margin.costNanoUSD }.count
        lines.append("")
        let count = catalog.entries.count
        lines.append("\(count) model\(count == 1 ? "" : "s"); \(below) below provider cost; \(atCost) at exactly 0 % margin "
            + "(1 credit = $0.01; margin = (credits in USD - provider cost) / credits in USD)")
        return lines.joined(separator: "\n")
    }
}

extension String {
    fileprivate var trimmingTrailingSpaces: String {
        var text = Substring(self)
        while text.last == " " { text = text.dropLast() }
        return String(text)
    }
}
