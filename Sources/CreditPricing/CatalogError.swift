/// A column of the catalog format (docs/pricing.md); the raw value is its header name.
public enum CatalogColumn: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case model
    case provider
    case kind
    case quality
    case unit
    case providerCostUSD = "provider_cost_usd"
    case credits
    case inputCredits = "input_credits"
    case outputCredits = "output_credits"

    /// Input and output rates may be left out: they default to `credits`.
    public var isRequired: Bool { self != .inputCredits && self != .outputCredits }

    public var description: String { rawValue }
}

/// Why a catalog text was rejected: the line (1-based) and column, and what is wrong there.
/// `code` is stable (for scripts and HTTP problem types); `description` is for people.
public struct CatalogError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The line of the text; for a problem of the whole text (`noHeader`, `noModels`), its
    /// last line; for `textTooLarge`, found before any line is read, line 1.
    public let line: Int
    /// The column at fault; nil when the problem is not one column's (`unknownColumn`, `extraFields`, ...).
    public let column: CatalogColumn?
    public let problem: Problem

    public init(line: Int, column: CatalogColumn?, problem: Problem) {
        self.line = line
        self.column = column
        self.problem = problem
    }

    /// Text quoted from the catalog is a `CatalogExcerpt`: at most 40 characters, so an error
    /// about a huge line stays short.
    public enum Problem: Equatable, Sendable {
        /// More than `Catalog.textBytesMax` UTF-8 bytes.
        case textTooLarge(bytes: Int)
        /// A control character other than tab (vertical tab, form feed, NUL, a lone CR, ...)
        /// or a Unicode line or paragraph separator: lines end with LF or CRLF only. Tab is
        /// allowed around fields, but not inside a name.
        case controlCharacter(Unicode.Scalar)
        /// No header line before the first model (or no lines at all).
        case noHeader
        /// The header names a column the format does not have.
        case unknownColumn(CatalogExcerpt)
        /// The header names this column twice.
        case duplicateColumn
        /// The header lacks this required column.
        case missingColumn
        /// The line ends before this required column.
        case missingField
        /// The line has more fields than the header has columns.
        case extraFields(count: Int, columns: Int)
        /// A required field is empty.
        case emptyField
        /// Longer than `Catalog.nameBytesMax` UTF-8 bytes.
        case nameTooLong(bytes: Int)
        case unknownKind(CatalogExcerpt)
        case unknownQuality(CatalogExcerpt)
        /// The unit is not the kind's billing unit.
        case wrongUnit(CatalogExcerpt, expected: String)
        /// Not a plain decimal number such as "0.00075" or "15".
        case malformedDecimal(CatalogExcerpt)
        case tooManyDecimals(CatalogExcerpt, decimalsMax: Int)
        /// Negative or zero.
        case notPositive(CatalogExcerpt)
        /// Above the column's maximum (which also keeps every computation from overflowing).
        case overflow(CatalogExcerpt, max: String)
        /// The model already appeared on an earlier line.
        case duplicateModel(CatalogExcerpt, firstLine: Int)
        /// Separate input/output rates are for text models only.
        case textOnlyColumn(kind: ModelKind)
        /// A header but no model.
        case noModels
        /// More than `Catalog.modelsMax` models.
        case tooManyModels(max: Int)

        /// A stable snake_case name of the problem, for scripts and HTTP problem types.
        public var code: String {
            switch self {
            case .textTooLarge: "text_too_large"
            case .controlCharacter: "control_character"
            case .noHeader: "no_header"
            case .unknownColumn: "unknown_column"
            case .duplicateColumn: "duplicate_column"
            case .missingColumn: "missing_column"
            case .missingField: "missing_field"
            case .extraFields: "extra_fields"
            case .emptyField: "empty_field"
            case .nameTooLong: "name_too_long"
            case .unknownKind: "unknown_kind"
            case .unknownQuality: "unknown_quality"
            case .wrongUnit: "wrong_unit"
            case .malformedDecimal: "malformed_decimal"
            case .tooManyDecimals: "too_many_decimals"
            case .notPositive: "not_positive"
            case .overflow: "overflow"
            case .duplicateModel: "duplicate_model"
            case .textOnlyColumn: "text_only_column"
            case .noModels: "no_models"
            case .tooManyModels: "too_many_models"
            }
        }
    }

    /// The problem's stable snake_case name (`Problem.code`).
    public var code: String { problem.code }

    public var description: String {
        let place = "line \(line)" + (column.map { ", column '\($0)'" } ?? "")
        return place + ": " + problemText
    }

    private var problemText: String {
        switch problem {
        case .textTooLarge(let bytes): "the text is \(bytes) bytes; a catalog is at most \(Catalog.textBytesMax) bytes"
        case .controlCharacter(let scalar):
            "character \(CatalogExcerpt.codePoint(scalar)) is not allowed (lines end with LF or CRLF; "
                + "tab is the only other control character, and only around fields)"
        case .noHeader:
            "no header line (expected e.g. '\(CatalogColumn.allCases.filter(\.isRequired).map(\.rawValue).joined(separator: " | "))')"
        case .unknownColumn(let name):
            "unknown column '\(name)' (columns: \(CatalogColumn.allCases.map(\.rawValue).joined(separator: ", ")))"
        case .duplicateColumn: "the header names this column twice"
        case .missingColumn: "the header lacks this required column"
        case .missingField: "missing: the line ends before this column"
        case .extraFields(let count, let columns): "\(count) fields, but the header has \(columns) columns"
        case .emptyField: "empty"
        case .nameTooLong(let bytes): "\(bytes) bytes long; at most \(Catalog.nameBytesMax)"
        case .unknownKind(let text):
            "unknown kind '\(text)' (expected \(ModelKind.allCases.map(\.rawValue).joined(separator: ", ")))"
        case .unknownQuality(let text):
            "unknown quality '\(text)' (expected \(QualityTier.allCases.map(\.rawValue).joined(separator: ", ")))"
        case .wrongUnit(let text, let expected): "unit '\(text)' is not this kind's billing unit '\(expected)'"
        case .malformedDecimal(let text): "'\(text)' is not a decimal number (expected e.g. '0.00075' or '15')"
        case .tooManyDecimals(let text, let decimalsMax): "'\(text)' has more than \(decimalsMax) decimals"
        case .notPositive(let text): "'\(text)' is not a positive price (negative and zero prices are rejected)"
        case .overflow(let text, let max): "'\(text)' is more than the maximum \(max)"
        case .duplicateModel(let model, let firstLine): "duplicate model '\(model)' (first on line \(firstLine))"
        case .textOnlyColumn(let kind): "separate input/output rates are for text models; this is a \(kind) model"
        case .noModels: "the catalog has a header but no model"
        case .tooManyModels(let max): "more than \(max) models"
        }
    }
}

/// Text quoted from a catalog in an error: at most `charactersMax` characters, cut with "…",
/// and characters that do not print (controls, format characters such as a byte order mark
/// or a direction override, line separators) shown as `\u{...}`, so a message about a
/// hostile line is short and cannot move a terminal's cursor.
public struct CatalogExcerpt: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// Characters shown, escapes included (an escape is never cut).
    public static let charactersMax = 40

    /// What is shown, without the "…".
    public let shown: String
    /// Whether the quoted text went on after `shown`.
    public let isCut: Bool

    public init(_ text: some StringProtocol) {
        var shown = ""
        var length = 0
        var isCut = false
        for character in text {
            let piece = Self.printable(character)
            guard length + piece.count <= Self.charactersMax else {
                isCut = true
                break
            }
            shown += piece
            length += piece.count
        }
        self.shown = shown
        self.isCut = isCut
    }

    public init(stringLiteral text: String) { self.init(text) }

    public var description: String { isCut ? shown + "…" : shown }

    /// `character` as it is, or its scalars escaped when one of them does not print.
    private static func printable(_ character: Character) -> String {
        guard character.unicodeScalars.contains(where: isHidden) else { return String(character) }
        return character.unicodeScalars.map { isHidden($0) ? "\\u{" + hex($0) + "}" : String($0) }.joined()
    }

    private static func isHidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .unassigned, .privateUse, .surrogate: true
        default: false
        }
    }

    private static func hex(_ scalar: Unicode.Scalar) -> String {
        let digits = String(scalar.value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// "U+000B".
    static func codePoint(_ scalar: Unicode.Scalar) -> String { "U+" + hex(scalar) }
}
