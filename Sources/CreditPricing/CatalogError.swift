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
public struct CatalogError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The line of the text; for a problem of the whole text (`noHeader`, `noModels`), its last line.
    public let line: Int
    /// The column at fault; nil when the problem is not one column's (`unknownColumn`, `extraFields`, ...).
    public let column: CatalogColumn?
    public let problem: Problem

    public init(line: Int, column: CatalogColumn?, problem: Problem) {
        self.line = line
        self.column = column
        self.problem = problem
    }

    public enum Problem: Equatable, Sendable {
        /// No header line before the first model (or no lines at all).
        case noHeader
        /// The header names a column the format does not have.
        case unknownColumn(String)
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
        case unknownKind(String)
        case unknownQuality(String)
        /// The unit is not the kind's billing unit.
        case wrongUnit(String, expected: String)
        /// Not a plain decimal number such as "0.00075" or "15".
        case malformedDecimal(String)
        case tooManyDecimals(String, decimalsMax: Int)
        /// Negative or zero.
        case notPositive(String)
        /// Above the column's maximum (which also keeps every computation from overflowing).
        case overflow(String, max: String)
        /// The model already appeared on an earlier line.
        case duplicateModel(String, firstLine: Int)
        /// Separate input/output rates are for text models only.
        case textOnlyColumn(kind: ModelKind)
        /// A header but no model.
        case noModels
        /// More than `Catalog.modelsMax` models.
        case tooManyModels(max: Int)
    }

    public var description: String {
        let place = "line \(line)" + (column.map { ", column '\($0)'" } ?? "")
        return place + ": " + problemText
    }

    private var problemText: String {
        switch problem {
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
