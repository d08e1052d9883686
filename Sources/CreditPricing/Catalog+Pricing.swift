/// What one AI call used.
public enum Usage: Sendable, Hashable, CustomStringConvertible {
    /// Text: input (prompt) and output (completion) tokens.
    case tokens(input: Int64, output: Int64)
    /// Images generated.
    case images(Int64)
    /// Seconds of video generated; billed per started 5-second clip.
    case videoSeconds(Int64)

    /// The kind of model that can serve this usage.
    public var kind: ModelKind {
        switch self {
        case .tokens: .text
        case .images: .image
        case .videoSeconds: .video
        }
    }

    public var description: String {
        switch self {
        case .tokens(let input, let output): "\(input) input and \(output) output tokens"
        case .images(let count): count == 1 ? "1 image" : "\(count) images"
        case .videoSeconds(let seconds): "\(seconds) s of video"
        }
    }
}

/// The price of one call on system keys.
public struct PricedUsage: Sendable, Hashable {
    public let modelName: InternedName
    public let providerName: InternedName
    public var model: String { modelName.text }
    public var provider: String { providerName.text }
    /// Credits to charge: the exact price rounded up once, to the millicredit, for the whole call.
    public let charge: Millicredits
    /// What the provider charges for the call, in nano-dollars (rounded up to the nano-dollar).
    public let providerCostNanoUSD: Int64
    /// Billing units used: tokens (input + output), images, or started 5-second clips.
    public let units: Int64
}

public enum PricingError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownModel(String)
    /// The model is of another kind than the usage (e.g. video seconds on a text model).
    case wrongKind(model: String, modelKind: ModelKind, usage: Usage)
    /// A negative count, or nothing used at all (0 tokens, 0 images, 0 seconds).
    case invalidUsage(Usage)
    /// The charge would exceed `LedgerLimits.amountMax` (the most one ledger command moves),
    /// or the provider cost would exceed Int64 nano-dollars.
    case overflow(model: String, usage: Usage)

    /// A stable machine-readable name.
    public var code: String {
        switch self {
        case .unknownModel: "unknown_model"
        case .wrongKind: "wrong_usage_kind"
        case .invalidUsage: "invalid_usage"
        case .overflow: "charge_overflow"
        }
    }

    public var description: String {
        switch self {
        case .unknownModel(let model): "unknown model '\(model)': it is not in the catalog"
        case .wrongKind(let model, let modelKind, let usage):
            "\(model) is a \(modelKind) model; it cannot be priced for \(usage) (a \(usage.kind) usage)"
        case .invalidUsage(let usage): "invalid usage: \(usage) (counts must not be negative and something must be used)"
        case .overflow(let model, let usage):
            "\(usage) on \(model) costs more than one charge may be (\(Millicredits(LedgerLimits.amountMax)))"
        }
    }
}

extension Catalog {
    /// Prices `usage` on `model` at its list price (system keys).
    ///
    /// Tokens: input tokens × input rate + output tokens × output rate (rates per 1K tokens),
    /// summed exactly in 128 bits, then divided by 1,000 and rounded up once. Images: count ×
    /// rate. Video: started 5-second clips × rate (7 s = 2 clips).
    public func price(model: String, usage: Usage) throws(PricingError) -> PricedUsage {
        guard let entry = entry(named: model) else { throw .unknownModel(model) }
        return try entry.price(usage)
    }
}

extension CatalogEntry {
    /// Prices `usage` on this model at its list price (`Catalog.price(model:usage:)`).
    public func price(_ usage: Usage) throws(PricingError) -> PricedUsage {
        guard usage.kind == kind else { throw .wrongKind(model: model, modelKind: kind, usage: usage) }
        let perUnit = Int128(ModelKind.tokensPerUnit)
        let charge: Int128
        let cost: Int128
        let units: Int64
        switch usage {
        case .tokens(let input, let output):
            guard input >= 0, output >= 0, input > 0 || output > 0 else { throw .invalidUsage(usage) }
            let exact = Int128(input) * Int128(inputCreditsPerUnit.rawValue)
                + Int128(output) * Int128(outputCreditsPerUnit.rawValue)
            charge = roundedUpQuotient(exact, perUnit)
            let tokens = Int128(input) + Int128(output)
            cost = roundedUpQuotient(tokens * Int128(providerCostPerUnitNanoUSD), perUnit)
            guard let total = Int64(exactly: tokens) else { throw .overflow(model: model, usage: usage) }
            units = total
        case .images(let count):
            guard count > 0 else { throw .invalidUsage(usage) }
            units = count
            charge = Int128(count) * Int128(creditsPerUnit.rawValue)
            cost = Int128(count) * Int128(providerCostPerUnitNanoUSD)
        case .videoSeconds(let seconds):
            guard seconds > 0 else { throw .invalidUsage(usage) }
            units = (seconds - 1) / ModelKind.secondsPerClip + 1
            charge = Int128(units) * Int128(creditsPerUnit.rawValue)
            cost = Int128(units) * Int128(providerCostPerUnitNanoUSD)
        }
        guard charge <= Int128(LedgerLimits.amountMax), let costNanoUSD = Int64(exactly: cost) else {
            throw .overflow(model: model, usage: usage)
        }
        return PricedUsage(modelName: modelName, providerName: providerName, charge: Millicredits(Int64(charge)),
                           providerCostNanoUSD: costNanoUSD, units: units)
    }
}

/// ⌈numerator / denominator⌉ for a non-negative numerator and a positive denominator.
private func roundedUpQuotient(_ numerator: Int128, _ denominator: Int128) -> Int128 {
    precondition(numerator >= 0 && denominator > 0)
    // Almost every price fits 64 bits, and a 64-bit division is many times cheaper.
    if let small = Int64(exactly: numerator), let divisor = Int64(exactly: denominator) {
        let (quotient, remainder) = small.quotientAndRemainder(dividingBy: divisor)
        return Int128(remainder == 0 ? quotient : quotient + 1)
    }
    let (quotient, remainder) = numerator.quotientAndRemainder(dividingBy: denominator)
    return remainder == 0 ? quotient : quotient + 1
}
