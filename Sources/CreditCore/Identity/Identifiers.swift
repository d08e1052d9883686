/// Identifiers. Each is its own type so a tenant id can never be passed where an account id
/// is expected. Accounts, grants and holds carry their tenant: the tenant decides the shard,
/// so every command can be routed from its ids alone.

/// An individual user or an organisation. Chosen by the host service.
public struct TenantID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    @inlinable public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: TenantID, rhs: TenantID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "t\(rawValue)" }
}

/// An account of a tenant: `number` is chosen by the host and unique within the tenant.
/// An individual usually has account 0; an organisation has its pool and one account per member.
public struct AccountID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let tenant: TenantID
    public let number: UInt32
    @inlinable public init(tenant: TenantID, number: UInt32) { self.tenant = tenant; self.number = number }
    public static func < (lhs: AccountID, rhs: AccountID) -> Bool {
        (lhs.tenant, lhs.number) < (rhs.tenant, rhs.number)
    }
    /// "t42/a0"
    public var description: String { "\(tenant)/a\(number)" }
}

/// A block of credits. Assigned by the ledger: `number` is the sequence of the entry that created it.
public struct GrantID: Hashable, Sendable, CustomStringConvertible {
    public let tenant: TenantID
    public let number: UInt64
    @inlinable public init(tenant: TenantID, number: UInt64) { self.tenant = tenant; self.number = number }
    public var description: String { "\(tenant)/g\(number)" }
}

/// A reservation. Assigned by the ledger: `number` is the sequence of the reserve entry.
public struct HoldID: Hashable, Sendable, CustomStringConvertible {
    public let tenant: TenantID
    public let number: UInt64
    @inlinable public init(tenant: TenantID, number: UInt64) { self.tenant = tenant; self.number = number }
    public var description: String { "\(tenant)/h\(number)" }
}

/// A department of an organisation, unique within it.
public struct DepartmentID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    @inlinable public init(_ rawValue: UInt16) { self.rawValue = rawValue }
    public static func < (lhs: DepartmentID, rhs: DepartmentID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "d\(rawValue)" }
}

/// What a scoped grant may pay for and what a charge is for. Provider and model numbers come
/// from the pricing catalog; 0 means "not given".
public struct ChargeScope: Hashable, Sendable {
    public let provider: UInt32
    public let model: UInt32
    @inlinable public init(provider: UInt32 = 0, model: UInt32 = 0) { self.provider = provider; self.model = model }
    public static let unscoped = ChargeScope()
    public var isUnscoped: Bool { provider == 0 && model == 0 }
}

/// A 128-bit key chosen by the client for each request (a UUID fits). A retry carries the same
/// key; the ledger then returns the original outcome and changes nothing.
public struct IdempotencyKey: Hashable, Sendable, CustomStringConvertible {
    public let high: UInt64
    public let low: UInt64
    @inlinable public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }

    /// 32 lowercase hex digits.
    public var description: String { Self.hex(high) + Self.hex(low) }

    /// Parses 32 hex digits (dashes, as in a UUID, are ignored).
    public init?(hex text: String) {
        let digits = text.filter { $0 != "-" }
        guard digits.count == 32, digits.allSatisfy(\.isHexDigit),
              let high = UInt64(digits.prefix(16), radix: 16),
              let low = UInt64(digits.suffix(16), radix: 16) else { return nil }
        self.init(high: high, low: low)
    }

    /// A key derived from any string by a stable 128-bit hash, for hosts whose request ids are
    /// not 128-bit numbers. Two different strings collide with probability about 2^-128.
    public init(deriving text: String) {
        var first = StableHasher(seed: 0x243F_6A88_85A3_08D3)
        var second = StableHasher(seed: 0x1319_8A2E_0370_7344)
        for byte in text.utf8 { first.combine(UInt64(byte)); second.combine(UInt64(byte)) }
        self.init(high: first.finish(), low: second.finish())
    }

    /// A key derived from a purpose tag and numbers (the scheduler's keys: what it does, to
    /// which account, for which cycle or time), without building text: two hashes of the
    /// same words, like `init(deriving:)` of text.
    public init(deriving tag: UInt64, _ words: UInt64...) {
        var first = StableHasher(seed: 0x243F_6A88_85A3_08D3)
        var second = StableHasher(seed: 0x1319_8A2E_0370_7344)
        first.combine(tag)
        second.combine(tag)
        for word in words {
            first.combine(word)
            second.combine(word)
        }
        self.init(high: first.finish(), low: second.finish())
    }

    private static func hex(_ value: UInt64) -> String {
        let raw = String(value, radix: 16)
        return String(repeating: "0", count: 16 - raw.count) + raw
    }
}
