/// The quality a caller asks for.
public enum QualityPreference: Sendable, Hashable {
    case standard
    case premium
    /// Either tier: a key-covered model of the better tier, else the cheapest of both.
    case any

    func admits(_ tier: QualityTier) -> Bool {
        switch self {
        case .standard: tier == .standard
        case .premium: tier == .premium
        case .any: true
        }
    }
}

/// Limits on what routing may choose (an enterprise policy, a budget).
public struct RoutingConstraints: Sendable, Hashable {
    /// Only these providers, when set.
    public var allowedProviders: Set<String>?
    /// At most this many credits per billing unit on system keys (a key-covered model costs 0).
    public var creditsPerUnitMax: Millicredits?

    public init(allowedProviders: Set<String>? = nil, creditsPerUnitMax: Millicredits? = nil) {
        self.allowedProviders = allowedProviders
        self.creditsPerUnitMax = creditsPerUnitMax
    }
}

/// Whose provider key a routed call runs on. The caller records which key it actually used.
public enum KeyCoverage: Sendable, Hashable, CustomStringConvertible {
    /// A key the caller supplied covers the provider: 0 credits.
    case coveredByKey
    /// The service's keys: the model's credits.
    case system

    public var description: String {
        switch self {
        case .coveredByKey: "covered by key"
        case .system: "system"
        }
    }
}

/// The model chosen for a request, what it costs per unit, and why it was chosen.
public struct Route: Sendable, Hashable {
    public let entry: CatalogEntry
    /// Credits per billing unit for this caller: 0 when a key covers the provider.
    public let creditsPerUnit: Millicredits
    public let keyCoverage: KeyCoverage
    /// In words, e.g. "your OpenAI key covers GPT-4 Turbo: 0 credits".
    public let reason: String
}

public enum RoutingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The catalog has no model of this kind at this quality.
    case noModel(kind: ModelKind, quality: QualityPreference)
    /// There are such models, but none from an allowed provider.
    case noAllowedProvider(kind: ModelKind, quality: QualityPreference, allowed: [String])
    /// The allowed models all cost more per unit than the maximum, and no key covers one.
    case overBudget(kind: ModelKind, quality: QualityPreference, cheapest: Millicredits, max: Millicredits)

    public var description: String {
        switch self {
        case .noModel(let kind, let quality):
            "the catalog has no \(qualityWords(quality))\(kind) model"
        case .noAllowedProvider(let kind, let quality, let allowed):
            "no \(qualityWords(quality))\(kind) model is from an allowed provider (allowed: \(allowed.joined(separator: ", ")))"
        case .overBudget(let kind, let quality, let cheapest, let max):
            "no key covers a \(qualityWords(quality))\(kind) model, and the cheapest allowed one costs \(cheapest) "
                + "per \(kind.unit), more than the maximum \(max)"
        }
    }
}

/// "premium ", "standard " or "" (any).
private func qualityWords(_ quality: QualityPreference) -> String {
    switch quality {
    case .standard: "standard "
    case .premium: "premium "
    case .any: ""
    }
}

extension Catalog {
    /// Chooses the model for an operation of `kind` at `quality`.
    ///
    /// Among the models of that kind and quality from allowed providers: if the caller has a
    /// key for some of their providers, the best-quality one of those (0 credits); otherwise
    /// the cheapest in credits per unit on system keys, within `creditsPerUnitMax`. Ties go
    /// to the model name in code-point order.
    public func route(kind: ModelKind, quality: QualityPreference, keyProviders: Set<String>,
                      constraints: RoutingConstraints = RoutingConstraints()) throws(RoutingError) -> Route {
        let suitable = entries.filter { $0.kind == kind && quality.admits($0.quality) }
        guard !suitable.isEmpty else { throw .noModel(kind: kind, quality: quality) }
        let allowed = suitable.filter { constraints.allowedProviders?.contains($0.provider) ?? true }
        guard !allowed.isEmpty else {
            throw .noAllowedProvider(kind: kind, quality: quality, allowed: (constraints.allowedProviders ?? []).sorted())
        }
        let covered = allowed.filter { keyProviders.contains($0.provider) }
        if let best = covered.min(by: { ($1.quality, $0.model) < ($0.quality, $1.model) }) {
            return Route(entry: best, creditsPerUnit: .zero, keyCoverage: .coveredByKey,
                         reason: "your \(best.provider) key covers \(best.model): 0 credits")
        }
        let cheapest = allowed.min { ($0.creditsPerUnit, $0.model) < ($1.creditsPerUnit, $1.model) }!
        if let max = constraints.creditsPerUnitMax, cheapest.creditsPerUnit > max {
            throw .overBudget(kind: kind, quality: quality, cheapest: cheapest.creditsPerUnit, max: max)
        }
        return Route(entry: cheapest, creditsPerUnit: cheapest.creditsPerUnit, keyCoverage: .system,
                     reason: "cheapest \(qualityWords(quality))\(kind) model on system keys: \(cheapest.model), "
                         + "\(cheapest.creditsPerUnit) per \(kind.unit)")
    }
}
