/// What a model produces. The kind fixes the billing unit a catalog price is per.
public enum ModelKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case text
    case image
    case video

    /// The unit a catalog price is per, exactly as the catalog's `unit` column spells it.
    public var unit: String {
        switch self {
        case .text: "1K tokens"
        case .image: "HD image"
        case .video: "5s HD clip"
        }
    }

    public var description: String { rawValue }

    /// Tokens in one text billing unit.
    public static let tokensPerUnit: Int64 = 1_000
    /// Seconds in one video billing unit (a started clip is billed whole).
    public static let secondsPerClip: Int64 = 5
}

/// A model's quality tier; premium is the better one.
public enum QualityTier: String, Sendable, Hashable, CaseIterable, Comparable, CustomStringConvertible {
    case standard
    case premium

    public static func < (lhs: QualityTier, rhs: QualityTier) -> Bool { lhs == .standard && rhs == .premium }

    public var description: String { rawValue }
}

/// What the credits charged for one unit are worth against what the provider charges for it.
/// Computed from the two prices, never stored: the seed's own margin column was wrong.
public struct Margin: Sendable, Hashable {
    /// The credits charged per unit in nano-dollars (1 credit = $0.01 = 10,000,000 nUSD).
    public let priceNanoUSD: Int64
    /// The provider's cost per unit in nano-dollars.
    public let costNanoUSD: Int64

    /// 1 millicredit = $0.00001.
    public static let nanoUSDPerMillicredit: Int64 = 10_000

    init(credits: Millicredits, costNanoUSD: Int64) {
        // The catalog's limits keep both far below Int64.max (see `Catalog.creditsPerUnitMax`).
        precondition(credits.rawValue > 0 && credits.rawValue <= Catalog.creditsPerUnitMax.rawValue)
        precondition(costNanoUSD > 0 && costNanoUSD <= Catalog.providerCostPerUnitNanoUSDMax)
        self.priceNanoUSD = credits.rawValue * Self.nanoUSDPerMillicredit
        self.costNanoUSD = costNanoUSD
    }

    /// (price − cost) / price × 100, for display; negative below cost.
    public var percent: Double { Double(priceNanoUSD - costNanoUSD) * 100 / Double(priceNanoUSD) }

    /// Sold for less than the provider charges. Exactly at cost (0 %) is not below cost.
    public var isBelowCost: Bool { priceNanoUSD < costNanoUSD }
}

/// One model of the catalog: who serves it, what it costs us, what it costs the user.
public struct CatalogEntry: Sendable, Hashable {
    /// The model's name as users and the ledger see it ("GPT-4 Turbo"); unique in a catalog.
    public let modelName: InternedName
    /// The provider whose key pays for a call ("OpenAI").
    public let providerName: InternedName
    public let kind: ModelKind
    public let quality: QualityTier
    /// What the provider charges per billing unit (`kind.unit`), in nano-dollars.
    public let providerCostPerUnitNanoUSD: Int64
    /// The list price per billing unit on system keys. For text models, the rate of both
    /// input and output tokens unless the catalog gives them their own.
    public let creditsPerUnit: Millicredits
    /// Text models: credits per 1K input tokens. Equal to `creditsPerUnit` for other kinds.
    public let inputCreditsPerUnit: Millicredits
    /// Text models: credits per 1K output tokens. Equal to `creditsPerUnit` for other kinds.
    public let outputCreditsPerUnit: Millicredits
    /// A stable hash of everything above (names and prices), computed once: what a charge
    /// request's hash covers of the model (`RoutedCharge.request`).
    public let contentHash: UInt64

    init(model: String, provider: String, kind: ModelKind, quality: QualityTier, providerCostPerUnitNanoUSD: Int64,
         creditsPerUnit: Millicredits, inputCreditsPerUnit: Millicredits, outputCreditsPerUnit: Millicredits) {
        modelName = InternedName(model)
        providerName = InternedName(provider)
        self.kind = kind
        self.quality = quality
        self.providerCostPerUnitNanoUSD = providerCostPerUnitNanoUSD
        self.creditsPerUnit = creditsPerUnit
        self.inputCreditsPerUnit = inputCreditsPerUnit
        self.outputCreditsPerUnit = outputCreditsPerUnit
        var hasher = StableHasher()
        hasher.combine(model); hasher.combine(provider); hasher.combine(kind.rawValue); hasher.combine(quality.rawValue)
        hasher.combine(providerCostPerUnitNanoUSD); hasher.combine(creditsPerUnit.rawValue)
        hasher.combine(inputCreditsPerUnit.rawValue); hasher.combine(outputCreditsPerUnit.rawValue)
        contentHash = hasher.finish()
    }

    public var model: String { modelName.text }
    public var provider: String { providerName.text }

    /// The margin of the list price (`creditsPerUnit`) over the provider's cost.
    public var margin: Margin { Margin(credits: creditsPerUnit, costNanoUSD: providerCostPerUnitNanoUSD) }

    /// Sold below the provider's cost: the list price or, for text, the input or output rate.
    public var isBelowCost: Bool {
        min(creditsPerUnit, inputCreditsPerUnit, outputCreditsPerUnit).rawValue * Margin.nanoUSDPerMillicredit
            < providerCostPerUnitNanoUSD
    }
}

/// The models a host sells, with their prices: an immutable value. A host replaces the one
/// it runs by parsing a new text; a text that fails to parse produces no catalog, so the
/// running one cannot be half replaced.
public struct Catalog: Sendable, Equatable {
    /// In the order of the text.
    public let entries: [CatalogEntry]
    private let indexByModel: [String: Int]

    /// At most this many models in one catalog.
    public static let modelsMax = 1_024
    /// Model and provider names are at most this many UTF-8 bytes (what the ledger records).
    public static let nameBytesMax = LedgerLimits.textBytesMax
    /// $1,000,000 per billing unit.
    public static let providerCostPerUnitNanoUSDMax: Int64 = 1_000_000_000_000_000
    /// 100,000,000 credits ($1,000,000) per billing unit.
    public static let creditsPerUnitMax = Millicredits(100_000_000_000)
    /// A catalog text is at most 4 MiB of UTF-8: 1,024 models of the longest names take
    /// about 0.6 MiB, the rest is room for comments. Readers of catalog files bound their
    /// read by it, so a huge or endless file is refused before it is read.
    public static let textBytesMax = 4 << 20

    init(entries: [CatalogEntry]) {
        var index: [String: Int] = [:]
        for (position, entry) in entries.enumerated() {
            let previous = index.updateValue(position, forKey: entry.model)
            precondition(previous == nil, "duplicate model \(entry.model)")
        }
        self.entries = entries
        self.indexByModel = index
    }

    /// The entry for `model` (exact name), or nil.
    public func entry(named model: String) -> CatalogEntry? {
        indexByModel[model].map { entries[$0] }
    }

    /// The catalog built from the seed document's six price tables (`DefaultCatalog.swift`).
    public static let standard: Catalog = {
        do {
            return try parse(text: defaultText)
        } catch {
            preconditionFailure("the built-in catalog does not parse: \(error)")
        }
    }()

    /// The text of the built-in catalog: a starting point for a host's own catalog file.
    public static var defaultText: String { defaultCatalogText }
}
