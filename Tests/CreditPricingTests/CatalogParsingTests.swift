import CreditPricing
import DurabilityTestSupport
import Testing

private let header = "model | provider | kind | quality | unit | provider_cost_usd | credits"

/// A valid model line.
private let modelLine = "A | P | text | standard | 1K tokens | 0.001 | 1"

/// A catalog of the header and the given model lines.
private func catalogText(_ lines: String...) -> String {
    ([header] + lines).joined(separator: "\n")
}

@Suite("Catalog text: format, validation, errors that name the line and column")
struct CatalogParsingTests {
    @Test("reads comments, blank lines, CRLF, columns in any order and optional input/output rates")
    func readsTheWholeFormat() throws {
        let text = """
            # a comment before the header\r
            \r
            credits | model | kind | quality | unit | provider_cost_usd | provider | input_credits | output_credits\r
               2 |  Fast   | text | standard | 1K tokens | 0.001 | Acme | 1 | 3\r
            # a comment between models
            0.5 | Pic | image | premium | HD image | 0.004 | Acme\t|  |
            7 | Clip | video | standard | 5s HD clip | 0.05 | Other
            """
        let catalog = try Catalog.parse(text: text)
        #expect(catalog.entries.map(\.model) == ["Fast", "Pic", "Clip"])
        let fast = try #require(catalog.entry(named: "Fast"))
        #expect(fast.provider == "Acme" && fast.kind == .text && fast.quality == .standard)
        #expect(fast.providerCostPerUnitNanoUSD == 1_000_000)
        #expect(fast.creditsPerUnit == Millicredits(2_000))
        #expect(fast.inputCreditsPerUnit == Millicredits(1_000))
        #expect(fast.outputCreditsPerUnit == Millicredits(3_000))
        let picture = try #require(catalog.entry(named: "Pic"))
        #expect(picture.creditsPerUnit == Millicredits(500) && picture.inputCreditsPerUnit == Millicredits(500))
        #expect(picture.providerCostPerUnitNanoUSD == 4_000_000)
        #expect(catalog.entry(named: "Clip")?.kind == .video)
        #expect(catalog.entry(named: "fast") == nil, "names are exact")
    }

    @Test("decimals are exact: 9 places of dollars, 3 places of credits")
    func decimalsAreExact() throws {
        let catalog = try Catalog.parse(text: catalogText(
            "A | P | text | standard | 1K tokens | 0.000000001 | 0.001",
            "B | P | text | standard | 1K tokens | 1000000 | 100000000"))
        #expect(catalog.entry(named: "A")?.providerCostPerUnitNanoUSD == 1)
        #expect(catalog.entry(named: "A")?.creditsPerUnit == Millicredits(1))
        #expect(catalog.entry(named: "B")?.providerCostPerUnitNanoUSD == Catalog.providerCostPerUnitNanoUSDMax)
        #expect(catalog.entry(named: "B")?.creditsPerUnit == Catalog.creditsPerUnitMax)
    }

    typealias Problem = CatalogError.Problem

    @Test("each malformed text is rejected with the right line, column and problem", arguments: [
        ("", 1, nil, .noHeader),
        ("# only a comment\n\n", 3, nil, .noHeader),
        (header + "\n# no models", 2, nil, .noModels),
        ("model | provider | kind | quality | unit | provider_cost_usd | credits | colour", 1, nil, .unknownColumn("colour")),
        ("model | provider | kind | kind | quality | unit | provider_cost_usd | credits", 1, .kind, .duplicateColumn),
        ("model | provider | kind | quality | unit | credits", 1, .providerCostUSD, .missingColumn),
        (catalogText("A | P | text | standard | 1K tokens | 0.001"), 2, .credits, .missingField),
        (catalogText("A | P | text | standard | 1K tokens | 0.001 | 1 | 9"), 2, nil, .extraFields(count: 8, columns: 7)),
        (catalogText("A | | text | standard | 1K tokens | 0.001 | 1"), 2, .provider, .emptyField),
        (catalogText("A | P | audio | standard | 1K tokens | 0.001 | 1"), 2, .kind, .unknownKind("audio")),
        (catalogText("A | P | text | deluxe | 1K tokens | 0.001 | 1"), 2, .quality, .unknownQuality("deluxe")),
        (catalogText("A | P | image | standard | 1K tokens | 0.001 | 1"), 2, .unit,
         .wrongUnit("1K tokens", expected: "HD image")),
        (catalogText("A | P | text | standard | 1K tokens | $0.03 | 1"), 2, .providerCostUSD, .malformedDecimal("$0.03")),
        (catalogText("A | P | text | standard | 1K tokens | 0.001 | 1,5"), 2, .credits, .malformedDecimal("1,5")),
        (catalogText("A | P | text | standard | 1K tokens | 0.001 | 1."), 2, .credits, .malformedDecimal("1.")),
        (catalogText("A | P | text | standard | 1K tokens | 0.0000000001 | 1"), 2, .providerCostUSD,
         .tooManyDecimals("0.0000000001", decimalsMax: 9)),
        (catalogText("A | P | text | standard | 1K tokens | 0.001 | 1.5000"), 2, .credits,
         .tooManyDecimals("1.5000", decimalsMax: 3)),
        (catalogText("A | P | text | standard | 1K tokens | -0.001 | 1"), 2, .providerCostUSD, .notPositive("-0.001")),
        (catalogText("A | P | text | standard | 1K tokens | 0.001 | 0"), 2, .credits, .notPositive("0")),
        (catalogText("A | P | text | standard | 1K tokens | 0.001 | 0.000"), 2, .credits, .notPositive("0.000")),
        (catalogText("A | P | text | standard | 1K tokens | 99999999999999999999 | 1"), 2, .providerCostUSD,
         .overflow("99999999999999999999", max: "$1000000.00")),
        (catalogText("A | P | text | standard | 1K tokens | 1000000.000000001 | 1"), 2, .providerCostUSD,
         .overflow("1000000.000000001", max: "$1000000.00")),
        (catalogText("A | P | text | standard | 1K tokens | 0.001 | 100000000.001"), 2, .credits,
         .overflow("100000000.001", max: "100000000 credits")),
        (catalogText("A | P | text | standard | 1K tokens | 0.001 | 1", "B | P | text | standard | 1K tokens | 0.001 | 1",
                     "# comment", "A | Q | image | premium | HD image | 0.1 | 20"), 5, .model, .duplicateModel("A", firstLine: 2)),
        ("model | provider | kind | quality | unit | provider_cost_usd | credits | input_credits\n"
            + "A | P | image | standard | HD image | 0.001 | 1 | 2", 2, .inputCredits, .textOnlyColumn(kind: .image)),
        ("model | provider | kind | quality | unit | provider_cost_usd | credits | output_credits\n"
            + "A | P | text | standard | 1K tokens | 0.001 | 1 | -2", 2, .outputCredits, .notPositive("-2")),
        (catalogText(String(repeating: "x", count: 257) + " | P | text | standard | 1K tokens | 0.001 | 1"), 2, .model,
         .nameTooLong(bytes: 257)),
    ] as [(String, Int, CatalogColumn?, Problem)])
    func malformedTextNamesLineAndColumn(text: String, line: Int, column: CatalogColumn?, problem: Problem) {
        #expect(throws: CatalogError(line: line, column: column, problem: problem)) { try Catalog.parse(text: text) }
    }

    @Test("only LF and CRLF end a line; other vertical space and control characters are refused where they stand",
          arguments: [
              // A vertical tab, form feed, lone CR or NEL does not start a new line: it is refused in its field.
              (catalogText(modelLine + "\u{0B}B | P | text | standard | 1K tokens | 0.001 | 1"), 2, .credits, "\u{0B}"),
              (catalogText(modelLine + "\u{0C}"), 2, .credits, "\u{0C}"),
              (catalogText(modelLine + "\rB | P | text | standard | 1K tokens | 0.001 | 1"), 2, .credits, "\r"),
              (catalogText(modelLine, "B\u{85} | P | text | standard | 1K tokens | 0.001 | 1"), 3, .model, "\u{85}"),
              (catalogText(modelLine, "B | P\u{2028}Q | text | standard | 1K tokens | 0.001 | 1"), 3, .provider, "\u{2028}"),
              (catalogText(modelLine, "B | P | text\u{2029} | standard | 1K tokens | 0.001 | 1"), 3, .kind, "\u{2029}"),
              // In the header and in comments there is no column to name.
              (header + "\u{0B}\n" + modelLine, 1, nil, "\u{0B}"),
              ("# clears the screen \u{1B}[2J\n" + catalogText(modelLine), 1, nil, "\u{1B}"),
              // A line of one field is a model line whose model holds it; past the header's columns there is no column.
              (catalogText(modelLine, "\u{0}"), 3, .model, "\u{0}"),
              (catalogText(modelLine + " | x\u{7F}"), 2, nil, "\u{7F}"),
              // Names: no control character, not even a tab inside, and no direction override.
              (catalogText("A\u{0}B | P | text | standard | 1K tokens | 0.001 | 1"), 2, .model, "\u{0}"),
              (catalogText("A\tB | P | text | standard | 1K tokens | 0.001 | 1"), 2, .model, "\t"),
              (catalogText("A | P\u{202E}Q | text | standard | 1K tokens | 0.001 | 1"), 2, .provider, "\u{202E}"),
              (catalogText("A | P | text | standard | 1K tokens | 0.001 | 1", "B\u{2066} | P | text | standard | 1K tokens | 0.001 | 1"),
               3, .model, "\u{2066}"),
          ] as [(String, Int, CatalogColumn?, Unicode.Scalar)])
    func controlCharactersAreRefused(text: String, line: Int, column: CatalogColumn?, scalar: Unicode.Scalar) {
        #expect(throws: CatalogError(line: line, column: column, problem: .controlCharacter(scalar))) { try Catalog.parse(text: text) }
    }

    @Test("tabs around fields and non-ASCII names are still the format")
    func tabsAroundFieldsAndUnicodeNamesParse() throws {
        let catalog = try Catalog.parse(text: catalogText("\tÉclair 7B\t|\tMistral AI | text | standard | 1K tokens | 0.001 | 1"))
        #expect(catalog.entries.map(\.model) == ["Éclair 7B"])
        #expect(catalog.entries.map(\.provider) == ["Mistral AI"])
    }

    @Test("a text over the size limit is refused before any line is read; one of exactly the limit parses")
    func textSizeIsBounded() throws {
        let body = catalogText(modelLine) + "\n#"
        let padded = body + String(repeating: " ", count: Catalog.textBytesMax - body.utf8.count)
        #expect(padded.utf8.count == Catalog.textBytesMax)
        #expect(try Catalog.parse(text: padded).entries.count == 1)
        // Over the limit, even a text whose first line is already wrong reports its size.
        let over = "\u{0}" + padded
        #expect(throws: CatalogError(line: 1, column: nil, problem: .textTooLarge(bytes: Catalog.textBytesMax + 1))) {
            try Catalog.parse(text: over)
        }
    }

    @Test("an error quotes at most a short excerpt of a huge field, escaped", arguments: [
        (catalogText("A | P | " + String(repeating: "x", count: 100_000) + " | standard | 1K tokens | 0.001 | 1"), 2,
         CatalogColumn.kind, Problem.unknownKind(CatalogExcerpt(String(repeating: "x", count: 100_000)))),
        (header + " | " + String(repeating: "colour", count: 10_000), 1, nil,
         .unknownColumn(CatalogExcerpt(String(repeating: "colour", count: 10_000)))),
        (catalogText("A | P | text | standard | 1K tokens | 0.001 | 1" + String(repeating: "9", count: 50_000)), 2, .credits,
         .overflow(CatalogExcerpt("1" + String(repeating: "9", count: 50_000)), max: "100000000 credits")),
        (catalogText("A | P | text | \u{FEFF}premium\u{202E} | 1K tokens | 0.001 | 1"), 2, .quality,
         .unknownQuality(CatalogExcerpt("\u{FEFF}premium\u{202E}"))),
    ] as [(String, Int, CatalogColumn?, Problem)])
    func errorsQuoteAShortExcerpt(text: String, line: Int, column: CatalogColumn?, problem: Problem) throws {
        let error = try #require(throws: CatalogError.self) { try Catalog.parse(text: text) }
        #expect(error == CatalogError(line: line, column: column, problem: problem))
        let quoted: CatalogExcerpt? = switch error.problem {
        case .unknownKind(let excerpt), .unknownColumn(let excerpt), .overflow(let excerpt, _), .unknownQuality(let excerpt): excerpt
        default: nil
        }
        let excerpt = try #require(quoted)
        #expect(excerpt.description.count <= CatalogExcerpt.charactersMax + 1)
        #expect(!excerpt.description.unicodeScalars.contains { [.control, .format].contains($0.properties.generalCategory) })
        #expect(error.description.count < 200, "\(error.description.count) characters: \(error.description.prefix(300))")
    }

    @Test("an excerpt keeps 40 characters, cuts with …, escapes what does not print and never cuts an escape", arguments: [
        ("GPT-4 Turbo", "GPT-4 Turbo"),
        (String(repeating: "x", count: 40), String(repeating: "x", count: 40)),
        (String(repeating: "x", count: 41), String(repeating: "x", count: 40) + "…"),
        (String(repeating: "é", count: 45), String(repeating: "é", count: 40) + "…"),
        ("\u{1B}[2J", "\\u{001B}[2J"),
        ("\u{FEFF}model", "\\u{FEFF}model"),
        (String(repeating: "x", count: 35) + "\u{202E}abc", String(repeating: "x", count: 35) + "…"),
        (String(repeating: "x", count: 31) + "\u{202E}", String(repeating: "x", count: 31) + "\\u{202E}"),
    ])
    func excerptIsShortAndPrintable(text: String, shown: String) {
        #expect(CatalogExcerpt(text).description == shown)
    }

    @Test("every problem has its own stable snake_case code")
    func problemCodesAreDistinctSnakeCase() {
        let problems: [(Problem, String)] = [
            (.textTooLarge(bytes: 1), "text_too_large"), (.controlCharacter("\u{0B}"), "control_character"),
            (.noHeader, "no_header"), (.unknownColumn("x"), "unknown_column"), (.duplicateColumn, "duplicate_column"),
            (.missingColumn, "missing_column"), (.missingField, "missing_field"),
            (.extraFields(count: 2, columns: 1), "extra_fields"), (.emptyField, "empty_field"),
            (.nameTooLong(bytes: 300), "name_too_long"), (.unknownKind("x"), "unknown_kind"),
            (.unknownQuality("x"), "unknown_quality"), (.wrongUnit("x", expected: "HD image"), "wrong_unit"),
            (.malformedDecimal("x"), "malformed_decimal"), (.tooManyDecimals("x", decimalsMax: 3), "too_many_decimals"),
            (.notPositive("0"), "not_positive"), (.overflow("9", max: "1"), "overflow"),
            (.duplicateModel("A", firstLine: 2), "duplicate_model"), (.textOnlyColumn(kind: .image), "text_only_column"),
            (.noModels, "no_models"), (.tooManyModels(max: 1), "too_many_models"),
        ]
        for (problem, code) in problems {
            #expect(problem.code == code)
            #expect(CatalogError(line: 1, column: nil, problem: problem).code == code)
        }
        #expect(Set(problems.map(\.0.code)).count == problems.count)
    }

    @Test("random mutations of the default catalog parse, or are refused with a typed error naming a line of the text (seeded, 2,000 texts)")
    func mutatedCatalogs() {
        let seed = DurabilitySeed.make("CatalogParsingTests.mutatedCatalogs")
        var random = DurabilityRandom(seed: seed)
        let original = Array(Catalog.defaultText.utf8)
        // Bytes the format gives meaning to, and some it refuses: NUL, vertical tab, DEL, a
        // lone CR, half of a UTF-8 sequence, a byte that is never UTF-8.
        let alphabet = Array("|.\n\t 0123456789-e#aZ".utf8) + [0, 0x0B, 0x0D, 0x7F, 0xC3, 0xFF]
        var parsed = 0
        var codes: Set<String> = []
        for _ in 0 ..< 2_000 {
            var bytes = original
            for _ in 0 ... random.below(4) {
                let at = random.below(bytes.count + 1)
                switch random.below(4) {
                case 0 where at < bytes.count: bytes[at] = random.pick(alphabet)
                case 1: bytes.insert(random.pick(alphabet), at: at)
                case 2 where at < bytes.count: bytes.removeSubrange(at ..< min(bytes.count, at + 1 + random.below(40)))
                default:
                    let start = random.below(bytes.count)
                    bytes.insert(contentsOf: bytes[start ..< min(bytes.count, start + random.below(200))], at: at)
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            let lines = text.utf8.reduce(1) { $0 + ($1 == 10 ? 1 : 0) }
            do {
                _ = try Catalog.parse(text: text)
                parsed += 1
            } catch {
                codes.insert(error.code)
                #expect((1 ... lines).contains(error.line), "\(error) is not on a line of the \(lines) (seed \(seed))")
                #expect(!error.code.isEmpty && error.description.contains("line \(error.line)"), "\(error) (seed \(seed))")
            }
        }
        print("CatalogParsingTests.mutatedCatalogs: \(parsed) of 2000 mutated texts parsed; refusals: \(codes.sorted())")
    }

    @Test("the error text names the line, the column and what is wrong")
    func errorDescriptionIsSpecific() {
        let text = catalogText("A | P | text | standard | 1K tokens | 0.001 | 1", "B | P | text | standard | 1K tokens | 0.001 | 1.5000")
        do {
            _ = try Catalog.parse(text: text)
            Issue.record("the text should not parse")
        } catch {
            #expect(error.description == "line 3, column 'credits': '1.5000' has more than 3 decimals")
        }
    }

    @Test("more models than the limit is an error on the first model past it")
    func tooManyModelsRejected() {
        let models = (1 ... Catalog.modelsMax + 1).map { "M\($0) | P | image | standard | HD image | 0.01 | 1" }
        let text = ([header] + models).joined(separator: "\n")
        #expect(throws: CatalogError(line: Catalog.modelsMax + 2, column: nil, problem: .tooManyModels(max: Catalog.modelsMax))) {
            try Catalog.parse(text: text)
        }
    }

    @Test("a failed parse of a replacement leaves the running catalog usable and unchanged")
    func failedReplacementLeavesTheRunningCatalog() throws {
        var running = try Catalog.parse(text: catalogText("A | P | text | standard | 1K tokens | 0.001 | 2"))
        let before = running
        let replacement = catalogText("A | P | text | standard | 1K tokens | 0.001 | 3", "B | P | video | premium | 5s HD clip | 1 | abc")
        do {
            running = try Catalog.parse(text: replacement)
            Issue.record("the replacement should not parse")
        } catch {
            #expect(error.line == 3 && error.column == .credits)
        }
        #expect(running == before)
        #expect(try running.price(model: "A", usage: .tokens(input: 1_000, output: 0)).charge == Millicredits(2_000))
        #expect(running.entry(named: "B") == nil)

        running = try Catalog.parse(text: catalogText("A | P | text | standard | 1K tokens | 0.001 | 3"))
        #expect(try running.price(model: "A", usage: .tokens(input: 1_000, output: 0)).charge == Millicredits(3_000))
    }

    @Test("an entry sold below provider cost is flagged; exactly at cost is not")
    func belowCostIsFlagged() throws {
        let text = """
            model | provider | kind | quality | unit | provider_cost_usd | credits | input_credits | output_credits
            Below | P | image | standard | HD image | 0.10 | 9.999 | |
            AtCost | P | image | standard | HD image | 0.10 | 10 | |
            CheapInput | P | text | standard | 1K tokens | 0.02 | 3 | 1 | 5
            """
        let catalog = try Catalog.parse(text: text)
        let below = try #require(catalog.entry(named: "Below"))
        #expect(below.isBelowCost && below.margin.isBelowCost)
        #expect(below.margin.percent < 0)
        let atCost = try #require(catalog.entry(named: "AtCost"))
        #expect(!atCost.isBelowCost && atCost.margin.percent == 0)
        // The list price (3 credits = $0.03) covers $0.02, but input at 1 credit ($0.01) does not.
        let cheapInput = try #require(catalog.entry(named: "CheapInput"))
        #expect(!cheapInput.margin.isBelowCost)
        #expect(cheapInput.isBelowCost)
    }

    @Test("decimal text: exact dollars, cents and credits", arguments: [
        (DecimalText.usd(nanos: 750_000), "0.00075"), (DecimalText.usd(nanos: 200_000_000), "0.20"),
        (DecimalText.usd(nanos: 2_500_000_000), "2.50"), (DecimalText.usd(nanos: 1), "0.000000001"),
        (DecimalText.usd(cents: 8_500), "85.00"), (DecimalText.usd(cents: 1), "0.01"), (DecimalText.usd(cents: 10_501), "105.01"),
        (DecimalText.credits(Millicredits(1_500)), "1.5"), (DecimalText.credits(Millicredits(2)), "0.002"),
        (DecimalText.credits(Millicredits(280_000)), "280"), (DecimalText.credits(Millicredits(-1_050)), "-1.05"),
    ])
    func decimalTextIsExact(text: String, expected: String) {
        #expect(text == expected)
    }
}
