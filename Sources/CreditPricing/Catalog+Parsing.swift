extension Catalog {
    /// Parses and validates a catalog text (format: docs/pricing.md). Every line is checked;
    /// the first problem found is thrown, naming its line and column, and no catalog is made.
    /// Linear in the text, which is at most `textBytesMax` bytes.
    public static func parse(text: String) throws(CatalogError) -> Catalog {
        let bytes = text.utf8.count
        guard bytes <= textBytesMax else { throw CatalogError(line: 1, column: nil, problem: .textTooLarge(bytes: bytes)) }
        // Only LF and CRLF end a line (CRLF is one Character); any other vertical space is
        // left in its line, where `checkCharacters` refuses it.
        let lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }
        var columns: [CatalogColumn]?
        var entries: [CatalogEntry] = []
        var lineByModel: [String: Int] = [:]
        for (offset, rawLine) in lines.enumerated() {
            let number = offset + 1
            let line = rawLine.trimmingBlanks
            try checkCharacters(line, number: number, header: columns)
            if line.isEmpty || line.first == "#" { continue }
            let fields = line.split(separator: "|", omittingEmptySubsequences: false).map(\.trimmingBlanks)
            guard let header = columns else {
                columns = try parseHeader(fields, line: number)
                continue
            }
            let entry = try CatalogLine(number: number, header: header, fields: fields).entry()
            if let firstLine = lineByModel[entry.model] {
                throw CatalogError(line: number, column: .model,
                                   problem: .duplicateModel(CatalogExcerpt(entry.model), firstLine: firstLine))
            }
            guard entries.count < modelsMax else {
                throw CatalogError(line: number, column: nil, problem: .tooManyModels(max: modelsMax))
            }
            lineByModel[entry.model] = number
            entries.append(entry)
        }
        let lastLine = max(1, lines.count)
        guard columns != nil else { throw CatalogError(line: lastLine, column: nil, problem: .noHeader) }
        guard !entries.isEmpty else { throw CatalogError(line: lastLine, column: nil, problem: .noModels) }
        return Catalog(entries: entries)
    }

    private static func parseHeader(_ names: [Substring], line: Int) throws(CatalogError) -> [CatalogColumn] {
        var columns: [CatalogColumn] = []
        for name in names {
            guard let column = CatalogColumn(rawValue: String(name)) else {
                throw CatalogError(line: line, column: nil, problem: .unknownColumn(CatalogExcerpt(name)))
            }
            guard !columns.contains(column) else { throw CatalogError(line: line, column: column, problem: .duplicateColumn) }
            columns.append(column)
        }
        for column in CatalogColumn.allCases where column.isRequired && !columns.contains(column) {
            throw CatalogError(line: line, column: column, problem: .missingColumn)
        }
        return columns
    }

    /// Throws `controlCharacter` for the first character no catalog line may hold, naming the
    /// column of the model line's field it is in (none in the header or a comment).
    private static func checkCharacters(_ line: Substring, number: Int, header: [CatalogColumn]?) throws(CatalogError) {
        guard let scalar = line.unicodeScalars.first(where: isForbiddenInLine) else { return }
        var column: CatalogColumn?
        if let header, line.first != "#" {
            let fields = line.split(separator: "|", omittingEmptySubsequences: false)
            let index = fields.firstIndex { $0.unicodeScalars.contains(where: isForbiddenInLine) }
            if let index, index < header.count { column = header[index] }
        }
        throw CatalogError(line: number, column: column, problem: .controlCharacter(scalar))
    }

    /// Control characters other than tab, and the Unicode line and paragraph separators.
    static func isForbiddenInLine(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control: scalar != "\t"
        case .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }

    /// A name may not hold a tab either, nor a bidirectional control, which would make it
    /// display as another text than it is.
    static func isForbiddenInName(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09, 0x061C, 0x200E, 0x200F, 0x202A ... 0x202E, 0x2066 ... 0x2069: true
        default: isForbiddenInLine(scalar)
        }
    }
}

/// One model line of a catalog text, its fields keyed by the header's columns.
private struct CatalogLine {
    let number: Int
    let fields: [CatalogColumn: Substring]

    init(number: Int, header: [CatalogColumn], fields: [Substring]) throws(CatalogError) {
        guard fields.count <= header.count else {
            throw CatalogError(line: number, column: nil, problem: .extraFields(count: fields.count, columns: header.count))
        }
        self.number = number
        var byColumn: [CatalogColumn: Substring] = [:]
        for (column, field) in zip(header, fields) { byColumn[column] = field }
        self.fields = byColumn
    }

    /// Checks the columns in a fixed order (not the header's), so a line with several
    /// problems always reports the same one.
    func entry() throws(CatalogError) -> CatalogEntry {
        let model = try name(.model)
        let provider = try name(.provider)
        let kindText = try required(.kind)
        guard let kind = ModelKind(rawValue: String(kindText)) else { throw error(.kind, .unknownKind(CatalogExcerpt(kindText))) }
        let qualityText = try required(.quality)
        guard let quality = QualityTier(rawValue: String(qualityText)) else {
            throw error(.quality, .unknownQuality(CatalogExcerpt(qualityText)))
        }
        let unit = try required(.unit)
        guard unit == kind.unit else { throw error(.unit, .wrongUnit(CatalogExcerpt(unit), expected: kind.unit)) }
        let cost = try decimal(try required(.providerCostUSD), column: .providerCostUSD, decimals: 9,
                               max: Catalog.providerCostPerUnitNanoUSDMax,
                               maxText: "$" + DecimalText.usd(nanos: Catalog.providerCostPerUnitNanoUSDMax))
        let credits = try creditRate(try required(.credits), column: .credits)
        var rates: [Millicredits] = []
        for column in [CatalogColumn.inputCredits, .outputCredits] {
            guard let text = fields[column], !text.isEmpty else { rates.append(credits); continue }
            guard kind == .text else { throw error(column, .textOnlyColumn(kind: kind)) }
            rates.append(try creditRate(text, column: column))
        }
        return CatalogEntry(model: model, provider: provider, kind: kind, quality: quality,
                            providerCostPerUnitNanoUSD: cost, creditsPerUnit: credits,
                            inputCreditsPerUnit: rates[0], outputCreditsPerUnit: rates[1])
    }

    private func error(_ column: CatalogColumn, _ problem: CatalogError.Problem) -> CatalogError {
        CatalogError(line: number, column: column, problem: problem)
    }

    private func required(_ column: CatalogColumn) throws(CatalogError) -> Substring {
        guard let text = fields[column] else { throw error(column, .missingField) }
        guard !text.isEmpty else { throw error(column, .emptyField) }
        return text
    }

    private func name(_ column: CatalogColumn) throws(CatalogError) -> String {
        let text = String(try required(column))
        guard text.utf8.count <= Catalog.nameBytesMax else { throw error(column, .nameTooLong(bytes: text.utf8.count)) }
        if let scalar = text.unicodeScalars.first(where: Catalog.isForbiddenInName) { throw error(column, .controlCharacter(scalar)) }
        return text
    }

    private func creditRate(_ text: Substring, column: CatalogColumn) throws(CatalogError) -> Millicredits {
        let max = Catalog.creditsPerUnitMax
        return Millicredits(try decimal(text, column: column, decimals: 3, max: max.rawValue,
                                        maxText: DecimalText.credits(max) + " credits"))
    }

    private func decimal(_ text: Substring, column: CatalogColumn, decimals: Int, max: Int64,
                         maxText: String) throws(CatalogError) -> Int64 {
        switch parsePositiveDecimal(text, decimals: decimals, max: max) {
        case .success(let value): return value
        case .failure(.malformed): throw error(column, .malformedDecimal(CatalogExcerpt(text)))
        case .failure(.tooManyDecimals): throw error(column, .tooManyDecimals(CatalogExcerpt(text), decimalsMax: decimals))
        case .failure(.notPositive): throw error(column, .notPositive(CatalogExcerpt(text)))
        case .failure(.tooLarge): throw error(column, .overflow(CatalogExcerpt(text), max: maxText))
        }
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs. Linear: index steps only (`dropLast()`
    /// on a Substring counts from the start, which made a line of a million trailing blanks
    /// take minutes).
    var trimmingBlanks: Substring {
        func isBlank(_ character: Character) -> Bool { character == " " || character == "\t" }
        var start = startIndex
        var end = endIndex
        while start < end, isBlank(self[start]) { formIndex(after: &start) }
        while start < end {
            let last = index(before: end)
            guard isBlank(self[last]) else { break }
            end = last
        }
        return self[start ..< end]
    }
}
