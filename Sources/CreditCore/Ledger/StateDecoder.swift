// The state encoding, reading half: the decoder's state and its primitive checks. Its sections
// are in StateDecoder+*.swift; `Ledger.init(decodingState:configuration:)` assembles the ledger.

/// Something that reads the state's fields one after the other: the decoder over its
/// `ByteReader`, or a `FieldCursor` over bytes already checked. The range checks on a field
/// are written once, here.
protocol FieldReading {
    /// Where the next field starts (for errors).
    var fieldOffset: Int { get }
    mutating func readField<T: FixedWidthInteger>(_: T.Type) throws(BinaryDecodingError) -> T
}

extension FieldReading {
    /// A 32-bit slot index below `count`, or `none` when allowed.
    @inline(__always)
    mutating func index(below count: Int, orNone: Bool, _ field: @autoclosure () -> String) throws(BinaryDecodingError) -> UInt32 {
        let at = fieldOffset
        let value = try readField(UInt32.self)
        guard Int(value) < count || (orNone && value == none) else { throw .invalid(offset: at, field: field()) }
        return value
    }

    /// A 64-bit amount in `range`.
    @inline(__always)
    mutating func amount(in range: ClosedRange<Int64>, _ field: @autoclosure () -> String) throws(BinaryDecodingError) -> Int64 {
        let at = fieldOffset
        let value = try readField(Int64.self)
        guard range.contains(value) else { throw .invalid(offset: at, field: field()) }
        return value
    }
}

/// Reads the fields of fixed-size records from bytes whose length was already checked
/// (`StateDecoder.fixedSection`), so a read is one unaligned load. `offset` is relative to
/// the start of the decoded buffer, as in `ByteReader`, for errors.
struct FieldCursor: FieldReading {
    let raw: UnsafeRawBufferPointer
    var offset: Int

    @inline(__always)
    mutating func next<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        let value = T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return value
    }

    var fieldOffset: Int { offset }

    @inline(__always)
    mutating func readField<T: FixedWidthInteger>(_: T.Type) -> T { next(T.self) }
}

// MARK: - Reading and validating

/// Decodes and validates the state encoding; `Ledger.init(decodingState:)` assembles the
/// ledger from its results. Structural checks here make sure the invariant checker (which
/// follows links and adds amounts) can run on the result without trapping; the checker
/// then decides whether the state is consistent.
struct StateDecoder: FieldReading {
    var reader: ByteReader
    let configuration: LedgerConfiguration

    var nextSequence: UInt64 = 1
    var lastTime: Int64 = 0
    var totals = LedgerTotals()
    var tenantList: [(id: TenantID, slot: TenantSlot)] = []
    var tenants = TenantTable()
    var accounts = PagedArray<AccountRecord>()
    var grants = PagedArray<GrantRecord>()
    var freeGrantSlots: [UInt32] = []
    var organisations: [OrganisationRecord] = []
    var grantScopes: [UInt32: ChargeScope] = [:]
    var creditLines: [UInt32: Ledger.CreditLine] = [:]
    var holds: [UInt64: HoldRecord] = [:]
    var closedHolds: [UInt64] = []
    var previousKeys: [IdempotencyTable.Record] = []
    var currentKeys: [IdempotencyTable.Record] = []
    var version: UInt32 = 0
    /// A grant record's bytes in the version being read.
    var grantBytes = Ledger.encodedGrantBytes
    var providerKeys: [KeyOwner: KeyRegistration] = [:]
    var schedules = PagedArray<AccountSchedule>()
    var previousSourceLists: [UInt32: [RefundSource]] = [:]
    var currentSourceLists: [UInt32: [RefundSource]] = [:]
    var retired: [RetiredGrants.Retired] = []
    var roleTable = RoleTable()
    var guards = GuardTable()

    // Where sections start, for the offsets of errors found after reading them.
    var tenantsStart = 0
    var accountsStart = 0
    var grantsStart = 0
    var organisationStarts: [Int] = []
    /// Per account slot: what reaches it (`Reach`). Per grant slot: live or free.
    var reaches: [Reach] = []
    var grantUse: [GrantUse] = []

    enum Reach: UInt8 { case unreached, individual, pool, member }
    enum GrantUse: UInt8 { case unreached, live, free }

    init(reader: ByteReader, configuration: LedgerConfiguration) {
        self.reader = reader
        self.configuration = configuration
    }

    // MARK: Primitive checks

    func invalid(_ offset: Int, _ field: String) -> BinaryDecodingError { .invalid(offset: offset, field: field) }

    var fieldOffset: Int { reader.offset }

    @inline(__always)
    mutating func readField<T: FixedWidthInteger>(_: T.Type) throws(BinaryDecodingError) -> T { try reader.read(T.self) }

    /// A 32-bit count of at most `max` items of at least `bytesEach` bytes that must still follow.
    mutating func count(max: Int, bytesEach: Int, _ field: String) throws(BinaryDecodingError) -> Int {
        let at = reader.offset
        let value = Int(try reader.read(UInt32.self))
        guard value <= max, value * bytesEach <= reader.remaining else { throw invalid(at, field) }
        return value
    }

    func add(_ a: Int64, _ b: Int64, _ offset: Int, _ field: @autoclosure () -> String) throws(BinaryDecodingError) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        if overflow { throw invalid(offset, field() + " overflows") }
        return sum
    }

    static let nonNegative: ClosedRange<Int64> = 0 ... .max
    static let amounts: ClosedRange<Int64> = 0 ... LedgerLimits.amountMax
}
