import CreditEngine
import CreditPricing

/// Why a billing call failed. Nothing was charged or granted unless the case says so.
public enum BillingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The host's sealing key is not 32 bytes.
    case sealingKeySize(Int)
    case sealFailed
    /// A sealed key did not open (wrong host key, or bytes moved to another owner/provider).
    case unsealFailed
    /// The provider key is empty or shorter than 8 characters.
    case keyTooShort
    /// The catalog has no such model, or the usage does not fit it.
    case pricing(PricingError)
    /// Routing found no model for the request.
    case noRoute(RoutingError)
    /// The ledger refused the command.
    case ledger(LedgerError)
    /// The payment failed: nothing was granted.
    case payment(PaymentError)
    /// A quote could not be made for that many credits.
    case quote(QuoteError)
    case unknownAccount(AccountID)

    /// A stable machine-readable name (snake_case): the wrapped error's code for ledger,
    /// payment, pricing, routing and quote failures, so a service maps one vocabulary.
    public var code: String {
        switch self {
        case .sealingKeySize: "sealing_key_size"
        case .sealFailed: "seal_failed"
        case .unsealFailed: "unseal_failed"
        case .keyTooShort: "key_too_short"
        case .pricing(let error): error.code
        case .noRoute(let error): error.code
        case .ledger(let error): error.code
        case .payment(let error): error.code
        case .quote(let error): error.code
        case .unknownAccount: "unknown_account"
        }
    }

    public var description: String {
        switch self {
        case .sealingKeySize(let count): "the sealing key must be 32 bytes, not \(count)"
        case .sealFailed: "sealing the provider key failed"
        case .unsealFailed: "the sealed provider key does not open with this host key for this account and provider"
        case .keyTooShort: "a provider key has at least 8 characters"
        case .pricing(let error): "pricing: \(error)"
        case .noRoute(let why): "no model for the request: \(why)"
        case .ledger(let error): "ledger: \(error)"
        case .payment(let error): "payment failed, nothing granted: \(error)"
        case .quote(let why): "no quote: \(why)"
        case .unknownAccount(let account): "no account \(account)"
        }
    }
}
