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

    /// A stable machine-readable name.
    public var code: String {
        switch self {
        case .noModel: "no_model"
        case .noAllowedProvider: "no_allowed_provider"
        case .overBudget: "over_budget"
        }
    }

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

/// Routing's work that does not depend on the caller's keys, for one request: the models a
/// key could make free, best first, and the model charged on system keys. A host computes
/// it once per catalog and request, then chooses per call with the caller's keys.
public struct RoutePlan: Sendable, Hashable {
    public let kind: ModelKind
    public let quality: QualityPreference
    /// The allowed models of the kind and quality in the order routing prefers a key-covered
    /// one — better quality first, then the model name in code-point order — keeping only
    /// the first model of each provider (a key covers a provider, so the others of that
    /// provider can never be chosen for it).
    public let keyCandidates: [CatalogEntry]
    /// The cheapest allowed model on system keys (ties: the model name); nil when it costs
    /// more per unit than the constraints allow.
    public let systemChoice: CatalogEntry?
    /// What the cheapest allowed model costs per unit, and the maximum it exceeded (for the
    /// error when no key covers a candidate and `systemChoice` is nil).
    public let cheapest: Millicredits
    public let creditsPerUnitMax: Millicredits?

    /// The model for a caller whose keys cover the providers `covers` accepts.
    public func route(covers: (String) -> Bool) throws(RoutingError) -> Route {
        if let best = keyCandidates.first(where: { covers($0.provider) }) {
            return Route(entry: best, creditsPerUnit: .zero, keyCoverage: .coveredByKey,
                         reason: reason(for: best, coverage: .coveredByKey))
        }
        guard let choice = systemChoice else { throw overBudget }
        return Route(entry: choice, creditsPerUnit: choice.creditsPerUnit, keyCoverage: .system,
                     reason: reason(for: choice, coverage: .system))
    }

    /// The error when no key covers a candidate and the cheapest model is over budget.
    public var overBudget: RoutingError {
        Self.overBudget(kind: kind, quality: quality, cheapest: cheapest, creditsPerUnitMax: creditsPerUnitMax)
    }

    /// `overBudget` from a plan's parts.
    public static func overBudget(kind: ModelKind, quality: QualityPreference, cheapest: Millicredits,
                                  creditsPerUnitMax: Millicredits?) -> RoutingError {
        .overBudget(kind: kind, quality: quality, cheapest: cheapest, max: creditsPerUnitMax ?? cheapest)
    }

    /// Why `entry` was chosen, in words: "your OpenAI key covers GPT-4o: 0 credits", or
    /// "cheapest premium text model on system keys: GPT-4o, 5 per 1K tokens".
    public func reason(for entry: CatalogEntry, coverage: KeyCoverage) -> String {
        Self.reason(for: entry, coverage: coverage, quality: quality)
    }

    /// `reason(for:coverage:)` of a plan for `quality` (and the entry's kind).
    public static func reason(for entry: CatalogEntry, coverage: KeyCoverage, quality: QualityPreference) -> String {
        reason(model: entry.model, provider: entry.provider, kind: entry.kind, creditsPerUnit: entry.creditsPerUnit,
               coverage: coverage, quality: quality)
    }

    /// `reason(for:coverage:quality:)` from the entry's fields.
    public static func reason(model: String, provider: String, kind: ModelKind, creditsPerUnit: Millicredits,
                              coverage: KeyCoverage, quality: QualityPreference) -> String {
        switch coverage {
        case .coveredByKey:
            "your \(provider) key covers \(model): 0 credits"
        case .system:
            "cheapest \(qualityWords(quality))\(kind) model on system keys: \(model), \(creditsPerUnit) per \(kind.unit)"
        }
    }
}

extension Catalog {
    /// Routing's key-independent work for a request (`RoutePlan`): the models of `kind` at
    /// `quality` from allowed providers, ordered for key coverage, and the cheapest within
    /// `creditsPerUnitMax`. Throws when the catalog has no such model at all.
    public func routePlan(kind: ModelKind, quality: QualityPreference,
                          constraints: RoutingConstraints = RoutingConstraints()) throws(RoutingError) -> RoutePlan {
        let suitable = entries.filter { $0.kind == kind && quality.admits($0.quality) }
        guard !suitable.isEmpty else { throw .noModel(kind: kind, quality: quality) }
        let allowed = suitable.filter { constraints.allowedProviders?.contains($0.provider) ?? true }
        guard !allowed.isEmpty else {
            throw .noAllowedProvider(kind: kind, quality: quality, allowed: (constraints.allowedProviders ?? []).sorted())
        }
        var providers: Set<String> = []
        let keyCandidates = allowed.sorted { ($1.quality, $0.model) < ($0.quality, $1.model) }
            .filter { providers.insert($0.provider).inserted }
        let cheapest = allowed.min { ($0.creditsPerUnit, $0.model) < ($1.creditsPerUnit, $1.model) }!
        let withinBudget = constraints.creditsPerUnitMax.map { cheapest.creditsPerUnit <= $0 } ?? true
        return RoutePlan(kind: kind, quality: quality, keyCandidates: keyCandidates,
                         systemChoice: withinBudget ? cheapest : nil, cheapest: cheapest.creditsPerUnit,
                         creditsPerUnitMax: constraints.creditsPerUnitMax)
    }

    /// Chooses the model for an operation of `kind` at `quality`.
    ///
    /// Among the models of that kind and quality from allowed providers: if the caller has a
    /// key for some of their providers, the best-quality one of those (0 credits); otherwise
    /// the cheapest in credits per unit on system keys, within `creditsPerUnitMax`. Ties go
    /// to the model name in code-point order.
    public func route(kind: ModelKind, quality: QualityPreference, keyProviders: Set<String>,
                      constraints: RoutingConstraints = RoutingConstraints()) throws(RoutingError) -> Route {
        try routePlan(kind: kind, quality: quality, constraints: constraints).route { keyProviders.contains($0) }
    }
}
