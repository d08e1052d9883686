/// The state encoding: a ledger's whole state as bytes, and a ledger rebuilt from them.
///
/// The durability layer snapshots a shard by encoding its ledger (then compressing and
/// checksumming the bytes), and recovers by decoding it and replaying the log after it. The
/// format, field by field, is in docs/formats-ledger-state.md. Every record is written
/// field by field, little-endian (never as raw struct memory: a Swift struct's layout is not
/// a stable format). Dictionaries are written in ascending key order, so the same state
/// always gives the same bytes.
///
/// Left out on purpose: the recent-entry window (output, not state; a restored ledger starts
/// with an empty one), the statistics `replayCount` / `conflictCount`, the scratch draft,
/// `recentEntriesMax` (sizes that output only) and every hash index (the tenant table, the
/// idempotency generations' indexes, each organisation's member index): they are rebuilt
/// from the entries, because lookups answer by key only and nothing observable depends on a
/// slot layout. Derived flags and links (`AccountRecord.Flags.hasKeys` and `.watched`,
/// `AccountRecord.schedule`) are rebuilt from the tables they mirror, and interned names
/// (a subscription's plan) are written as text: their numbers are this process's alone.
///
/// Decoding trusts nothing: counts are checked against the bytes left, every slot index
/// against its table, every enum against its known values, every link structure (account
/// chains, grant chains, organisations, holds) for reachability and cycles, and every sum the
/// invariant checker will compute for overflow; then `invariantViolations()` must be empty.
/// Corrupted bytes throw a `DecodingError` naming the field and its offset, never trap.
extension Ledger {
    /// Version of the state encoding written (bump on any change; old versions must stay
    /// decodable). 2 added the key policies and provider keys after the idempotency table;
    /// 3 added each grant's state (a 64th byte of its record) and the schedules table at the end;
    /// 4 added each schedule's cycle level (allocation and price) after that table, then the
    /// refund sources of the remembered charges and the recently retired grants.
    public static let stateFormatVersion: UInt32 = 4
    /// The versions this build decodes.
    public static let stateFormatVersionsReadable: ClosedRange<UInt32> = 1 ... 4

    /// Bytes of the fixed-size parts (docs/formats-ledger-state.md), as written now.
    static var encodedHeaderBytes: Int { 92 }
    static var encodedTenantBytes: Int { 20 }
    static var encodedAccountBytes: Int { 59 }
    static var encodedGrantBytes: Int { 64 }
    /// A grant record's bytes in a given version: versions 1 and 2 had no state byte.
    static func encodedGrantBytes(version: UInt32) -> Int { version >= 3 ? 64 : 63 }
    /// A schedule without its plan's text and without auto-refill terms; the terms add
    /// `encodedRefillTermsBytes`.
    static var encodedScheduleBytesMin: Int { 78 }
    /// A schedule's cycle level (version 4): allocation and price.
    static var encodedCycleLevelBytes: Int { 16 }
    /// One grant a charge took from (version 4): number and amount.
    static var encodedRefundSourceBytes: Int { 16 }
    /// A retired grant without its scope (version 4).
    static var encodedRetiredGrantBytes: Int { 52 }
    static var encodedRefillTermsBytes: Int { 28 }
    static var encodedOrganisationBytesMin: Int { 28 }
    static var encodedPeriodCapBytesMin: Int { 25 }
    static var encodedHoldBytesMin: Int { 44 }
    static var encodedHoldPartBytes: Int { 12 }
    static var encodedRememberedBytes: Int { 69 }

    /// Appends the ledger's whole state (everything that affects future outcomes, the digest
    /// or the invariants) to `writer`. Deterministic: the same state gives the same bytes.
    /// Given an empty writer, the bytes are written into a buffer of exactly the right size.
    public func encodeState(into writer: inout ByteWriter) {
        // The same property on both sides of the boundary: a decoded state must pass the
        // invariant checker, so an encoded one must too (debug builds; O(state)).
        assert(invariantViolations().isEmpty, "encoding a ledger that breaks its invariants: \(invariantViolations().prefix(3))")
        let size = encodedStateByteCount
        if writer.count == 0 && writer.bytes.capacity < size {
            var sized = ByteWriter(capacity: size)
            encodeState(directlyInto: &sized)
            writer = sized
        } else {
            encodeState(directlyInto: &writer)
        }
    }

    /// The exact length of `encodeState`'s bytes.
    var encodedStateByteCount: Int {
        var size = Self.encodedHeaderBytes + tenants.count * Self.encodedTenantBytes
            + accounts.count * Self.encodedAccountBytes + grants.count * Self.encodedGrantBytes
        size += 4 + 4 * freeGrantSlots.count
        for organisation in organisations {
            size += Self.encodedOrganisationBytesMin
            for department in organisation.departments {
                size += 2 + 4 + department.costCentre.utf8.count + Self.encodedPeriodCapBytesMin
                    + (department.period.cap == nil ? 0 : 8)
            }
            for member in organisation.members {
                size += 8 + Self.encodedPeriodCapBytesMin + (member.period.cap == nil ? 0 : 8)
            }
        }
        size += 4 + 12 * grantScopes.count + 4 + 20 * creditLines.count
        size += 4 + holds.count * Self.encodedHoldBytesMin
        for hold in holds.values { size += hold.parts.count * Self.encodedHoldPartBytes }
        size += 4 + 8 * closedHolds.order.count
        size += 8 + idempotency.count * Self.encodedRememberedBytes
        size += organisations.count + 4
        for (owner, registration) in providerKeys {
            size += 4 + 4 + owner.provider.utf8.count + 4 + registration.fingerprint.utf8.count + 4 + registration.sealed.count
        }
        size += 4
        schedules.forEach { _, schedule in
            size += Self.encodedScheduleBytesMin + schedule.plan.utf8Count
                + (schedule.refill == nil ? 0 : Self.encodedRefillTermsBytes) + Self.encodedCycleLevelBytes
        }
        return size + encodedRefundProvenanceByteCount
    }

    /// The length of the refund provenance, the last part of the encoding (version 4).
    var encodedRefundProvenanceByteCount: Int {
        var size = 8 * idempotency.count + 8
        let lists = idempotency.sourceLists
        for (_, list) in lists.previous + lists.current { size += 8 + Self.encodedRefundSourceBytes * list.count }
        size += 4
        for retired in retiredGrants.inOrder { size += Self.encodedRetiredGrantBytes + (retired.scope == nil ? 0 : 8) }
        return size
    }

    private func encodeState(directlyInto writer: inout ByteWriter) {
        writer.write(Self.stateFormatVersion)
        writer.write(UInt64(configuration.idempotencyKeysMax))
        writer.write(configuration.idempotencyWindowMillis)
        writer.write(UInt64(configuration.closedHoldsRememberedMax))
        writer.write(nextSequence)
        writer.write(lastTime)
        writer.write(totals.granted)
        writer.write(totals.consumed)
        writer.write(totals.expired)
        writer.write(totals.debt)

        let tenantList = Self.sortedByID(tenants)
        writer.write(UInt32(tenantList.count))
        writer.write(UInt32(accounts.count))
        writer.write(UInt32(grants.count))
        writer.write(UInt32(organisations.count))

        // The large sections go through a chunk buffer: one append per 64 KiB, not per field.
        withUnsafeTemporaryAllocation(byteCount: RecordChunk.capacity, alignment: 8) { buffer in
            var chunk = RecordChunk(buffer: buffer)
            for (id, slot) in tenantList {
                chunk.makeRoom(Self.encodedTenantBytes, flushingInto: &writer)
                chunk.put(id)
                chunk.put(slot.firstAccount)
                chunk.put(slot.organisation)
                chunk.put(slot.grantHint)
            }
            accounts.forEach { _, account in
                chunk.makeRoom(Self.encodedAccountBytes, flushingInto: &writer)
                chunk.put(account)
            }
            // Every slot, the free ones too: their stale records are in the digest, and the
            // free list decides which slot the next grant reuses.
            grants.forEach { _, grant in
                chunk.makeRoom(Self.encodedGrantBytes, flushingInto: &writer)
                chunk.put(grant)
            }
            chunk.flush(into: &writer)
        }
        writer.write(UInt32(freeGrantSlots.count))
        for slot in freeGrantSlots { writer.write(slot) }

        for organisation in organisations {
            writer.write(organisation.tenant)
            writer.write(organisation.pool)
            writer.write(organisation.periodsStarted)
            writer.write(UInt32(organisation.departments.count))
            for department in organisation.departments {
                writer.write(department.id)
                writer.write(department.costCentre)
                writer.write(department.period)
            }
            writer.write(UInt32(organisation.members.count))
            for member in organisation.members {
                writer.write(member.account)
                writer.write(UInt32(member.department))
                writer.write(member.period)
            }
        }

        writer.write(UInt32(grantScopes.count))
        for (slot, scope) in grantScopes.sorted(by: { $0.key < $1.key }) {
            writer.write(slot)
            writer.write(scope)
        }
        writer.write(UInt32(creditLines.count))
        for (slot, line) in creditLines.sorted(by: { $0.key < $1.key }) {
            writer.write(slot)
            writer.write(line.overdraft)
            writer.write(line.overrun)
        }
        writer.write(UInt32(holds.count))
        for (number, hold) in holds.sorted(by: { $0.key < $1.key }) {
            writer.write(number)
            writer.write(hold.account)
            writer.write(hold.principal)
            writer.write(hold.amount)
            writer.write(hold.expiresAt)
            writer.write(hold.scope)
            writer.write(UInt32(hold.parts.count))
            for part in hold.parts {
                writer.write(part.grant)
                writer.write(part.amount)
            }
        }
        let closed = closedHolds.inOrder
        writer.write(UInt32(closed.count))
        for number in closed { writer.write(number) }

        let (previous, current) = idempotency.generations
        writer.write(UInt32(previous.count))
        writer.write(UInt32(current.count))
        withUnsafeTemporaryAllocation(byteCount: RecordChunk.capacity, alignment: 8) { buffer in
            var chunk = RecordChunk(buffer: buffer)
            for record in previous {
                chunk.makeRoom(Self.encodedRememberedBytes, flushingInto: &writer)
                chunk.put(record)
            }
            for record in current {
                chunk.makeRoom(Self.encodedRememberedBytes, flushingInto: &writer)
                chunk.put(record)
            }
            chunk.flush(into: &writer)
        }

        // Version 2: each organisation's key policy, in organisation order; then the
        // provider keys, by owner slot and provider.
        for organisation in organisations { writer.write(organisation.keyPolicy.rawValue) }
        let keys = providerKeys.sorted { Self.keyOrder($0.key, $1.key) }
        writer.write(UInt32(keys.count))
        for (owner, registration) in keys {
            writer.write(owner.slot)
            writer.write(owner.provider)
            writer.write(registration.fingerprint)
            writer.write(UInt32(registration.sealed.count))
            writer.write(bytes: registration.sealed)
        }

        // Version 3: the schedules, in slot order (each account's `schedule` link is rebuilt
        // from their `account` fields, so it is not written with the account).
        writer.write(UInt32(schedules.count))
        schedules.forEach { _, schedule in writer.write(schedule) }

        // Version 4: each schedule's cycle level, in the same order (the count is the one above).
        schedules.forEach { _, schedule in
            writer.write(schedule.cycleAllocation)
            writer.write(schedule.cyclePriceCents)
        }
        encodeRefundProvenance(into: &writer, previous: previous, current: current)
    }

    /// Version 4: where each remembered charge's credits came from (one u64 per record, in
    /// the records' order), the lists of the charges that took from several grants (per
    /// generation: u32 count, then position u32, u32 length, length × (grant u64, amount
    /// i64)), and the retired grants a refund may relink, oldest first.
    private func encodeRefundProvenance(into writer: inout ByteWriter, previous: [IdempotencyTable.Record],
                                        current: [IdempotencyTable.Record]) {
        for record in previous { writer.write(record.remembered.source) }
        for record in current { writer.write(record.remembered.source) }
        let lists = idempotency.sourceLists
        for generation in [lists.previous, lists.current] {
            writer.write(UInt32(generation.count))
            for (position, list) in generation {
                writer.write(position)
                writer.write(UInt32(list.count))
                for source in list {
                    writer.write(source.grant)
                    writer.write(source.amount)
                }
            }
        }
        let retired = retiredGrants.inOrder
        writer.write(UInt32(retired.count))
        for entry in retired {
            let record = entry.record
            writer.write(entry.retiredAtMillis)
            writer.write(record.account)
            writer.write(record.number)
            writer.write(record.original)
            writer.write(record.effectiveAt)
            writer.write(record.expiresAt)
            writer.write(record.costBasis)
            writer.write(record.priority)
            writer.write(record.kind.rawValue)
            writer.write(record.state.rawValue)
            writer.write(entry.scope != nil)
            if let scope = entry.scope { writer.write(scope) }
        }
    }

    /// The order of provider keys in the snapshot and the digest: owner slot, then the
    /// provider's UTF-8 bytes.
    static func keyOrder(_ a: KeyOwner, _ b: KeyOwner) -> Bool {
        if a.slot != b.slot { return a.slot < b.slot }
        return a.provider.utf8.lexicographicallyPrecedes(b.provider.utf8)
    }

    /// Rebuilds a ledger from `encodeState` bytes, leaving `reader` after them. `configuration`
    /// is what the ledger runs with: its idempotency bounds and closed-hold memory must be
    /// the ones written (they decide what is remembered, so outcomes and the digest), or this
    /// throws `.invalid` naming the field; `recentEntriesMax` may differ. Corrupted bytes throw
    /// `.truncated` or `.invalid(offset:field:)` (on a throw the reader's position is
    /// unspecified); a ledger that decodes but breaks an invariant throws
    /// `.invalid(field: "invariants: ...")`. The restored ledger has an empty entry window
    /// and zero statistics.
    public init(decodingState reader: inout ByteReader, configuration: LedgerConfiguration) throws(DecodingError) {
        var decoder = StateDecoder(reader: reader, configuration: configuration)
        try decoder.decode()
        reader = decoder.reader
        self.init(configuration: configuration)
        tenants = decoder.tenants
        accounts = decoder.accounts
        grants = decoder.grants
        freeGrantSlots = decoder.freeGrantSlots
        grantScopes = decoder.grantScopes
        holds = decoder.holds
        closedHolds = ClosedHolds(rememberedMax: configuration.closedHoldsRememberedMax, inOrder: decoder.closedHolds)
        organisations = decoder.organisations
        creditLines = decoder.creditLines
        idempotency = IdempotencyTable(keysMax: configuration.idempotencyKeysMax,
                                       windowMillis: configuration.idempotencyWindowMillis,
                                       previous: decoder.previousKeys, current: decoder.currentKeys,
                                       previousSourceLists: decoder.previousSourceLists,
                                       currentSourceLists: decoder.currentSourceLists)
        retiredGrants = RetiredGrants(countMax: configuration.idempotencyKeysMax,
                                      windowMillis: configuration.idempotencyWindowMillis, inOrder: decoder.retired)
        totals = decoder.totals
        providerKeys = decoder.providerKeys
        schedules = decoder.schedules
        rebuildKeyIndex()
        restoreClock(nextSequence: decoder.nextSequence, lastTime: Timestamp(millisSinceEpoch: decoder.lastTime))
        let problems = invariantViolations()
        if !problems.isEmpty {
            let shown = problems.prefix(4).joined(separator: "; ")
            throw .invalid(offset: reader.offset,
                           field: "invariants: \(shown)\(problems.count > 4 ? " (+\(problems.count - 4) more)" : "")")
        }
    }
}

// MARK: - Writing records

extension Ledger {
    /// The tenants in ascending id order. A least-significant-digit radix sort on the id's
    /// bytes, skipping bytes that all ids share: for a million tenants several times faster
    /// than a comparison sort, which was most of the encoding time.
    static func sortedByID(_ table: TenantTable) -> [(id: UInt64, slot: TenantSlot)] {
        var entries: [(id: UInt64, slot: TenantSlot)] = []
        entries.reserveCapacity(table.count)
        table.forEach { entries.append(($0.rawValue, $1)) }
        let count = entries.count
        if count < 1_024 { return entries.sorted { $0.id < $1.id } }
        var histograms = [Int](repeating: 0, count: 8 * 256)
        histograms.withUnsafeMutableBufferPointer { histograms in
            for entry in entries {
                var id = entry.id
                for digit in 0 ..< 8 {
                    histograms[digit << 8 | Int(id & 0xFF)] += 1
                    id >>= 8
                }
            }
        }
        var other = entries
        for digit in 0 ..< 8 {
            let shift = UInt64(digit * 8)
            // Every id has the same byte here: the order does not change.
            if histograms[digit << 8 | Int(entries[0].id >> shift & 0xFF)] == count { continue }
            var offsets = [Int](repeating: 0, count: 256)
            var sum = 0
            for byte in 0 ..< 256 {
                offsets[byte] = sum
                sum += histograms[digit << 8 | byte]
            }
            entries.withUnsafeBufferPointer { source in
                other.withUnsafeMutableBufferPointer { target in
                    offsets.withUnsafeMutableBufferPointer { offsets in
                        for entry in source {
                            let byte = Int(entry.id >> shift & 0xFF)
                            target[offsets[byte]] = entry
                            offsets[byte] += 1
                        }
                    }
                }
            }
            swap(&entries, &other)
        }
        return entries
    }
}

/// A buffer that fixed-size records are stored into field by field (little-endian,
/// unaligned), flushed into the `ByteWriter` when full: one array append per chunk instead of
/// one per field, which is most of the cost of encoding a million records.
private struct RecordChunk {
    static var capacity: Int { 1 << 16 }
    let buffer: UnsafeMutableRawBufferPointer
    var position = 0

    /// Flushes first unless `bytes` more fit.
    @inline(__always)
    mutating func makeRoom(_ bytes: Int, flushingInto writer: inout ByteWriter) {
        if position + bytes > buffer.count { flush(into: &writer) }
    }

    mutating func flush(into writer: inout ByteWriter) {
        writer.write(bytes: UnsafeRawBufferPointer(rebasing: buffer[..<position]))
        position = 0
    }

    @inline(__always)
    mutating func put<T: FixedWidthInteger>(_ value: T) {
        buffer.storeBytes(of: value.littleEndian, toByteOffset: position, as: T.self)
        position += MemoryLayout<T>.size
    }

    @inline(__always)
    mutating func put(_ value: Bool) { put(UInt8(value ? 1 : 0)) }

    @inline(__always)
    mutating func put(_ account: AccountRecord) {
        put(account.tenant.rawValue)
        put(account.number)
        put(account.nextInTenant)
        put(account.firstGrant)
        put(account.link)
        put(account.flags.intersection(.stored).rawValue)
        put(account.liveGrants)
        put(account.granted)
        put(account.consumed)
        put(account.expired)
        put(account.debt)
    }

    @inline(__always)
    mutating func put(_ grant: GrantRecord) {
        put(grant.number)
        put(grant.original)
        put(grant.remaining)
        put(grant.held)
        put(grant.effectiveAt)
        put(grant.expiresAt)
        put(grant.costBasis)
        put(grant.account)
        put(grant.next)
        put(grant.priority)
        put(grant.kind.rawValue)
        put(grant.isScoped)
        put(grant.state.rawValue)
    }

    @inline(__always)
    mutating func put(_ record: IdempotencyTable.Record) {
        put(record.key.high)
        put(record.key.low)
        put(record.millis)
        put(record.remembered.fingerprint)
        put(record.remembered.outcome.code)
        put(record.remembered.outcome.w0)
        put(record.remembered.outcome.w1)
        put(record.remembered.outcome.w2)
        put(record.remembered.refundable)
        put(record.remembered.principal)
    }
}

extension ByteWriter {
    mutating func write(_ period: PeriodCap) {
        write(period.cap != nil)
        if let cap = period.cap { write(cap) }
        write(period.spent)
        write(period.held)
        write(period.overrun)
    }

    /// One schedule (docs/formats-ledger-state.md, "Schedules"). Optional enums are their raw
    /// value or 0 (no case has raw value 0); the plan is its text, never its number.
    mutating func write(_ schedule: AccountSchedule) {
        write(schedule.account)
        write(schedule.status?.rawValue ?? 0)
        write(schedule.lapseReason?.rawValue ?? 0)
        write(schedule.rollover)
        write(schedule.rolloverMonths)
        write(schedule.cycle)
        write(schedule.plan.text)
        write(schedule.allocation)
        write(schedule.priceCents)
        write(schedule.anchor)
        write(schedule.refill != nil)
        if let terms = schedule.refill {
            write(terms.threshold)
            write(terms.refillCredits)
            write(terms.cooldownMillis)
            write(terms.refillsPerMonthMax)
            write(terms.attemptsMax)
            write(terms.enabled)
        }
        write(schedule.inFlight)
        write(schedule.attempts)
        write(schedule.alerted)
        write(schedule.refillsThisMonth)
        write(schedule.refillMonth)
        write(schedule.nextAttemptAt)
        write(schedule.lastRefillAt)
        write(schedule.disabledAfter?.rawValue ?? 0)
    }
}

/// Reads the fields of fixed-size records from bytes whose length was already checked
/// (`StateDecoder.fixedSection`), so a read is one unaligned load. `offset` is relative to
/// the start of the decoded buffer, as in `ByteReader`, for errors.
private struct FieldCursor {
    let raw: UnsafeRawBufferPointer
    var offset: Int

    @inline(__always)
    mutating func next<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        let value = T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return value
    }

    /// A 32-bit slot index below `count`, or `none` when allowed.
    @inline(__always)
    mutating func index(below count: Int, orNone: Bool, _ field: @autoclosure () -> String) throws(DecodingError) -> UInt32 {
        let at = offset
        let value = next(UInt32.self)
        guard Int(value) < count || (orNone && value == none) else { throw .invalid(offset: at, field: field()) }
        return value
    }

    /// A 64-bit amount in `range`.
    @inline(__always)
    mutating func amount(in range: ClosedRange<Int64>, _ field: @autoclosure () -> String) throws(DecodingError) -> Int64 {
        let at = offset
        let value = next(Int64.self)
        guard range.contains(value) else { throw .invalid(offset: at, field: field()) }
        return value
    }
}

// MARK: - Reading and validating

/// Decodes and validates the state encoding; `Ledger.init(decodingState:)` assembles the
/// ledger from its results. Structural checks here make sure the invariant checker (which
/// follows links and adds amounts) can run on the result without trapping; the checker
/// then decides whether the state is consistent.
private struct StateDecoder {
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

    // Where sections start, for the offsets of errors found after reading them.
    var tenantsStart = 0
    var accountsStart = 0
    var grantsStart = 0
    var organisationStarts: [Int] = []
    /// Per account slot: what reaches it (`Role`). Per grant slot: live or free.
    var roles: [Role] = []
    var grantUse: [GrantUse] = []

    enum Role: UInt8 { case unreached, individual, pool, member }
    enum GrantUse: UInt8 { case unreached, live, free }

    init(reader: ByteReader, configuration: LedgerConfiguration) {
        self.reader = reader
        self.configuration = configuration
    }

    // MARK: Primitive checks

    func invalid(_ offset: Int, _ field: String) -> DecodingError { .invalid(offset: offset, field: field) }

    /// A 32-bit slot index below `count`, or `none` when allowed.
    @inline(__always)
    mutating func index(below count: Int, orNone: Bool, _ field: @autoclosure () -> String) throws(DecodingError) -> UInt32 {
        let at = reader.offset
        let value = try reader.read(UInt32.self)
        guard Int(value) < count || (orNone && value == none) else { throw invalid(at, field()) }
        return value
    }

    /// A 32-bit count of at most `max` items of at least `bytesEach` bytes that must still follow.
    mutating func count(max: Int, bytesEach: Int, _ field: String) throws(DecodingError) -> Int {
        let at = reader.offset
        let value = Int(try reader.read(UInt32.self))
        guard value <= max, value * bytesEach <= reader.remaining else { throw invalid(at, field) }
        return value
    }

    /// A 64-bit amount in `range`.
    @inline(__always)
    mutating func amount(in range: ClosedRange<Int64>, _ field: @autoclosure () -> String) throws(DecodingError) -> Int64 {
        let at = reader.offset
        let value = try reader.read(Int64.self)
        guard range.contains(value) else { throw invalid(at, field()) }
        return value
    }

    func add(_ a: Int64, _ b: Int64, _ offset: Int, _ field: @autoclosure () -> String) throws(DecodingError) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        if overflow { throw invalid(offset, field() + " overflows") }
        return sum
    }

    static let nonNegative: ClosedRange<Int64> = 0 ... .max
    static let amounts: ClosedRange<Int64> = 0 ... LedgerLimits.amountMax

    // MARK: Sections

    mutating func decode() throws(DecodingError) {
        try decodeHeader()
        let (tenantCount, accountCount, grantCount, organisationCount) = try decodeCounts()
        try decodeTenants(tenantCount, accountCount: accountCount, grantCount: grantCount,
                          organisationCount: organisationCount)
        try decodeAccounts(accountCount, grantCount: grantCount)
        try decodeGrants(grantCount, accountCount: accountCount)
        try decodeFreeGrantSlots(grantCount)
        try decodeOrganisations(organisationCount, accountCount: accountCount)
        try checkTenancy()
        try checkGrantChains()
        try decodeGrantScopes()
        try decodeCreditLines()
        try decodeHolds()
        try decodeClosedHolds()
        try decodeIdempotency()
        if version >= 2 { try decodeKeys() }
        if version >= 3 { try decodeSchedules() }
        if version >= 4 { try decodeCycleLevels() } else { levelSchedulesAtTerms() }
        if version >= 4 {
            try decodeRefundSources()
            try decodeRetiredGrants()
        }
    }

    /// Version 4's refund sources: one per remembered key, then the lists of the charges
    /// that took from several grants. A known source belongs to a charge (a record with a
    /// principal); a list to a `several` source, of 1 to `RefundSource.listCountMax`
    /// positive amounts adding up to at most the charge.
    mutating func decodeRefundSources() throws(DecodingError) {
        previousKeys = try decodeSources(of: previousKeys)
        currentKeys = try decodeSources(of: currentKeys)
        previousSourceLists = try decodeSourceLists(previousKeys, "previous")
        currentSourceLists = try decodeSourceLists(currentKeys, "current")
    }

    mutating func decodeSources(of records: [IdempotencyTable.Record]) throws(DecodingError) -> [IdempotencyTable.Record] {
        var records = records
        for index in records.indices {
            let at = reader.offset
            let source = try reader.read(UInt64.self)
            guard source == RefundSource.unknown || records[index].remembered.principal != none else {
                throw invalid(at, "idempotency key \(records[index].key) refund source \(source) (not a charge)")
            }
            records[index].remembered.source = source
        }
        return records
    }

    mutating func decodeSourceLists(_ records: [IdempotencyTable.Record], _ generation: String) throws(DecodingError)
        -> [UInt32: [RefundSource]] {
        let expected = records.count { $0.remembered.source == RefundSource.several }
        let countAt = reader.offset
        let count = try self.count(max: records.count, bytesEach: 8 + Ledger.encodedRefundSourceBytes, "\(generation) source lists count")
        guard count == expected else { throw invalid(countAt, "\(generation) source lists count \(count) (\(expected) charges from several grants)") }
        var lists: [UInt32: [RefundSource]] = [:]
        var previousPosition: Int64 = -1
        for _ in 0 ..< count {
            let at = reader.offset
            let position = try index(below: records.count, orNone: false, "\(generation) source list position")
            let record = records[Int(position)]
            guard Int64(position) > previousPosition, record.remembered.source == RefundSource.several else {
                throw invalid(at, "\(generation) source list position \(position) (not ascending, or not a charge from several grants)")
            }
            previousPosition = Int64(position)
            let length = try self.count(max: RefundSource.listCountMax, bytesEach: Ledger.encodedRefundSourceBytes, "\(generation) source list length")
            guard length > 0 else { throw invalid(at + 4, "\(generation) source list \(position) is empty") }
            let charged = Int64(bitPattern: record.remembered.outcome.w1)
            var list: [RefundSource] = []
            var sum: Int64 = 0
            for _ in 0 ..< length {
                let grant = try reader.read(UInt64.self)
                let amount = try self.amount(in: 1 ... LedgerLimits.amountMax, "\(generation) source list \(position) amount")
                sum += amount
                list.append(RefundSource(grant: grant, amount: amount))
            }
            guard sum <= charged else { throw invalid(at, "\(generation) source list \(position) takes \(sum) of a \(charged) charge") }
            lists[position] = list
        }
        return lists
    }

    /// Version 4's retired grants, oldest first: each of an account that holds grants, empty,
    /// with values a listed grant of its state could have, retired no later than the last
    /// command, in order, and not listed in its account.
    mutating func decodeRetiredGrants() throws(DecodingError) {
        let count = try self.count(max: configuration.idempotencyKeysMax, bytesEach: Ledger.encodedRetiredGrantBytes, "retired grants count")
        var listed: Set<UInt64> = []
        grants.forEach { slot, grant in if grantUse[Int(slot)] == .live { listed.insert(grant.number) } }
        var seen: Set<UInt64> = []
        var newest = Int64.min
        for index in 0 ..< count {
            let at = reader.offset
            let name = "retired grant \(index)"
            let retiredAt = try reader.read(Int64.self)
            guard retiredAt >= newest, retiredAt <= lastTime else { throw invalid(at, "\(name) time \(retiredAt)") }
            newest = retiredAt
            let account = try self.index(below: accounts.count, orNone: false, "\(name) account")
            guard roles[Int(account)] != .member else { throw invalid(at + 8, "\(name) account \(account) is a member") }
            let numberAt = reader.offset
            let number = try reader.read(UInt64.self)
            guard !listed.contains(number), seen.insert(number).inserted else { throw invalid(numberAt, "\(name) number \(number) (listed, or twice)") }
            let original = try amount(in: 1 ... LedgerLimits.amountMax, "\(name) original")
            let effectiveAt = try reader.read(Int64.self)
            let expiresAtAt = reader.offset
            let expiresAt = try reader.read(Int64.self)
            let costBasis = try reader.read(UInt32.self)
            let priority = try reader.read(UInt8.self)
            let kindAt = reader.offset
            guard let kind = GrantKind(rawValue: try reader.read(UInt8.self)) else { throw invalid(kindAt, "\(name) kind") }
            let stateAt = reader.offset
            guard let state = GrantState(rawValue: try reader.read(UInt8.self)) else { throw invalid(stateAt, "\(name) state") }
            guard state == .live ? effectiveAt < expiresAt : effectiveAt >= expiresAt else {
                throw invalid(expiresAtAt, "\(name) expiry \(expiresAt) for a \(state) grant effective at \(effectiveAt)")
            }
            let scope: ChargeScope? = try reader.readBool("\(name) scope presence") ? try reader.readScope() : nil
            if let scope, scope.isUnscoped { throw invalid(reader.offset - 8, "\(name) scope is empty") }
            let record = GrantRecord(number: number, original: original, remaining: 0, held: 0, effectiveAt: effectiveAt,
                                     expiresAt: expiresAt, costBasis: costBasis, account: account, next: none, priority: priority,
                                     kind: kind, isScoped: scope != nil, state: state)
            retired.append(RetiredGrants.Retired(record: record, scope: scope, retiredAtMillis: retiredAt))
        }
    }

    /// Version 4's cycle levels, one per schedule in slot order: a subscription's level is
    /// at least 0 and at most the limits its terms have; a schedule without a subscription
    /// has level 0.
    mutating func decodeCycleLevels() throws(DecodingError) {
        for index in 0 ..< schedules.count {
            let at = reader.offset
            let name = "schedule \(index)"
            let allocation = try amount(in: Self.amounts, "\(name) cycle allocation")
            let priceCents = try amount(in: 0 ... SubscriptionTerms.priceCentsMax, "\(name) cycle price")
            var schedule = schedules[UInt32(index)]
            guard schedule.status != nil || (allocation == 0 && priceCents == 0) else {
                throw invalid(at, "\(name) has a cycle level but no subscription")
            }
            schedule.cycleAllocation = allocation
            schedule.cyclePriceCents = priceCents
            schedules[UInt32(index)] = schedule
        }
    }

    /// Before version 4 a cycle had no level of its own: it was paid and granted at the terms.
    mutating func levelSchedulesAtTerms() {
        for index in 0 ..< schedules.count where schedules[UInt32(index)].status != nil {
            schedules[UInt32(index)].levelAtTerms()
        }
    }

    /// Version 2's key policies (one byte per organisation) and provider keys.
    mutating func decodeKeys() throws(DecodingError) {
        for index in organisations.indices {
            let at = reader.offset
            guard let policy = KeyPolicy(rawValue: try reader.read(UInt8.self)) else {
                throw invalid(at, "organisation \(organisations[index].tenant) key policy")
            }
            organisations[index].keyPolicy = policy
        }
        // At least 17 bytes per key: slot, three lengths, one sealed byte.
        let keyCount = try count(max: accounts.count * LedgerLimits.keysPerAccountMax, bytesEach: 17, "provider key count")
        var previous: KeyOwner?
        for _ in 0 ..< keyCount {
            let at = reader.offset
            let slot = try index(below: accounts.count, orNone: false, "provider key owner")
            let provider = try reader.readString(maxBytes: LedgerLimits.textBytesMax, "provider key provider")
            let fingerprint = try reader.readString(maxBytes: LedgerLimits.textBytesMax, "provider key fingerprint")
            let lengthAt = reader.offset
            let length = Int(try reader.read(UInt32.self))
            guard length >= 1, length <= LedgerLimits.sealedKeyBytesMax else { throw invalid(lengthAt, "sealed key length \(length)") }
            let sealed = Array(try reader.readBytes(length))
            let owner = KeyOwner(slot: slot, provider: provider)
            guard !provider.isEmpty, !fingerprint.isEmpty, previous.map({ Ledger.keyOrder($0, owner) }) ?? true else {
                throw invalid(at, "provider key (empty names, or out of order)")
            }
            previous = owner
            providerKeys[owner] = KeyRegistration(provider: provider, fingerprint: fingerprint, sealed: sealed)
        }
    }

    /// Version 3's schedules, in slot order: each names a grant-holding account that no other
    /// schedule names, which gets it as its `schedule` (and the `watched` flag with
    /// auto-refill terms). Every value is held to what the handlers in Ledger+Schedule.swift
    /// can produce where a later command or view computes with it (calendar months from the
    /// anchor, time since the last refill), so a decoded schedule never traps.
    mutating func decodeSchedules() throws(DecodingError) {
        let count = try self.count(max: accounts.count, bytesEach: Ledger.encodedScheduleBytesMin, "schedules count")
        for index in 0 ..< count {
            let at = reader.offset
            let name = "schedule \(index)"
            let account = try self.index(below: accounts.count, orNone: false, "\(name) account")
            guard roles[Int(account)] != .member else {
                throw invalid(at, "\(name) account \(account) is a member (only accounts that hold grants have schedules)")
            }
            guard accounts[account].schedule == none else {
                throw invalid(at, "\(name) account \(account) already has schedule \(accounts[account].schedule)")
            }
            var schedule = AccountSchedule.empty(account: account)
            try decodeSubscription(into: &schedule, name)
            try decodeRefill(into: &schedule, name)
            accounts[account].schedule = schedules.append(schedule)
            if schedule.watched { accounts[account].flags.insert(.watched) }
        }
    }

    /// A schedule's subscription part. Without a subscription it must be `empty`'s: nothing
    /// sets those fields but `subscribe`, and a status never goes back to none.
    mutating func decodeSubscription(into schedule: inout AccountSchedule, _ name: String) throws(DecodingError) {
        let at = reader.offset
        let status = try optional(SubscriptionStatus.self, "\(name) status")
        let reasonAt = reader.offset
        let lapseReason = try optional(LapseReason.self, "\(name) lapseReason")
        let rollover = try reader.readBool("\(name) rollover")
        let monthsAt = reader.offset
        let rolloverMonths = try reader.read(UInt8.self)
        let cycleAt = reader.offset
        let cycle = try reader.read(UInt32.self)
        let planAt = reader.offset
        let plan = InternedName(try reader.readString(maxBytes: LedgerLimits.textBytesMax, "\(name) plan"))
        guard plan != .unavailable, plan != .overLong else {
            throw invalid(planAt, "\(name) plan (\(plan == .overLong ? "too long" : "this process holds the most names it may"))")
        }
        let allocation = try amount(in: Self.amounts, "\(name) allocation")
        let priceCents = try amount(in: 0 ... SubscriptionTerms.priceCentsMax, "\(name) priceCents")
        let anchorAt = reader.offset
        let anchor = try reader.read(Int64.self)
        guard let status else {
            let empty = AccountSchedule.empty(account: schedule.account)
            guard lapseReason == nil, rollover == empty.rollover, rolloverMonths == empty.rolloverMonths,
                  cycle == empty.cycle, plan == empty.plan, allocation == empty.allocation,
                  priceCents == empty.priceCents, anchor == empty.anchor else {
                throw invalid(at, "\(name) has subscription terms but no subscription")
            }
            return
        }
        // Only a lapse sets a reason, and subscribing again clears it.
        guard (lapseReason != nil) == (status == .lapsed) else { throw invalid(reasonAt, "\(name) lapseReason with status \(status)") }
        guard (1 ... SubscriptionTerms.rolloverMonthsMax).contains(rolloverMonths) else {
            throw invalid(monthsAt, "\(name) rolloverMonths \(rolloverMonths)")
        }
        guard !plan.isEmpty else { throw invalid(planAt, "\(name) plan is empty") }
        // A subscription starts no more than a month before the command that made it, and
        // commands are never applied before the epoch; the current cycle started by the last
        // command (a renewal waits for it), and its end must be a time the calendar can
        // compute. Month numbers are compared first: they never overflow.
        let anchorMonth = CalendarMonths.monthNumber(of: Timestamp(millisSinceEpoch: anchor))
        guard anchor >= Self.anchorMin, anchor <= lastTime else { throw invalid(anchorAt, "\(name) anchor \(anchor)") }
        let months = CalendarMonths.monthNumber(of: Timestamp(millisSinceEpoch: lastTime)) - anchorMonth
        guard Int64(cycle) <= months, anchorMonth + Int64(cycle) + 1 <= Self.lastCycleEndMonth else {
            throw invalid(cycleAt, "\(name) cycle \(cycle) (after the last command)")
        }
        schedule.status = status
        schedule.lapseReason = lapseReason
        schedule.rollover = rollover
        schedule.rolloverMonths = rolloverMonths
        schedule.cycle = cycle
        schedule.plan = plan
        schedule.allocation = allocation
        schedule.priceCents = priceCents
        schedule.anchor = anchor
        guard schedule.cycleStart(cycle) <= lastTime else { throw invalid(cycleAt, "\(name) cycle \(cycle) (after the last command)") }
    }

    /// The earliest anchor: a month before the epoch, the earliest time a command is applied.
    static let anchorMin: Int64 = -31 * CalendarMonths.millisPerDay
    /// The last month a cycle may end in: two before the last representable one, so adding
    /// calendar months up to it cannot overflow.
    static let lastCycleEndMonth = CalendarMonths.monthNumber(of: .never) - 2

    /// A schedule's auto-refill part (the terms as `setAutoRefill` accepts them) and the
    /// state of its refills.
    mutating func decodeRefill(into schedule: inout AccountSchedule, _ name: String) throws(DecodingError) {
        if try reader.readBool("\(name) refill present") {
            let threshold = try amount(in: Self.amounts, "\(name) refill threshold")
            let refillCredits = try amount(in: 0 ... AutoRefillTerms.refillCreditsMax, "\(name) refillCredits")
            let cooldownMillis = try amount(in: 0 ... Ledger.graceMillisMax, "\(name) cooldownMillis")
            let refillsPerMonthMax = try reader.read(UInt16.self)
            let attemptsAt = reader.offset
            let attemptsMax = try reader.read(UInt8.self)
            guard (1 ... AutoRefillTerms.attemptsMaxLimit).contains(attemptsMax) else {
                throw invalid(attemptsAt, "\(name) attemptsMax \(attemptsMax)")
            }
            let enabled = try reader.readBool("\(name) refill enabled")
            schedule.refill = RefillTermsRecord(threshold: threshold, refillCredits: refillCredits, cooldownMillis: cooldownMillis,
                                                refillsPerMonthMax: refillsPerMonthMax, attemptsMax: attemptsMax, enabled: enabled)
        }
        let inFlightAt = reader.offset
        schedule.inFlight = try reader.read(UInt64.self)
        // A refill is numbered by the entry that started it.
        guard schedule.inFlight < nextSequence else { throw invalid(inFlightAt, "\(name) refill in flight \(schedule.inFlight)") }
        let attemptsAt = reader.offset
        schedule.attempts = try reader.read(UInt8.self)
        // Failed attempts count only while a refill is in flight, and one that fails its
        // terms' last attempt stops it. Not `< attemptsMax`: new terms may lower that while
        // a refill is in flight, and the next failure then stops it.
        guard schedule.inFlight == 0 ? schedule.attempts == 0 : schedule.attempts < AutoRefillTerms.attemptsMaxLimit else {
            throw invalid(attemptsAt, "\(name) attempts \(schedule.attempts)")
        }
        schedule.alerted = try reader.readBool("\(name) alerted")
        schedule.refillsThisMonth = try reader.read(UInt16.self)
        schedule.refillMonth = try reader.read(Int64.self)
        schedule.nextAttemptAt = try reader.read(Int64.self)
        let lastAt = reader.offset
        schedule.lastRefillAt = try reader.read(Int64.self)
        // Set to a command's time (a later command subtracts it), or never.
        guard schedule.lastRefillAt == .min || (0 ... lastTime).contains(schedule.lastRefillAt) else {
            throw invalid(lastAt, "\(name) lastRefillAt \(schedule.lastRefillAt)")
        }
        let stopAt = reader.offset
        schedule.disabledAfter = try optional(RefillStop.self, "\(name) disabledAfter")
        // Only the failure that stops auto-refill disables it, and says why; new terms clear both.
        if let terms = schedule.refill, terms.enabled != (schedule.disabledAfter == nil) {
            throw invalid(stopAt, "\(name) disabledAfter with refill enabled \(terms.enabled)")
        }
    }

    /// An enum stored as its raw value, 0 for none (no case has raw value 0).
    mutating func optional<Value: RawRepresentable>(_: Value.Type, _ field: @autoclosure () -> String) throws(DecodingError) -> Value?
        where Value.RawValue == UInt8 {
        let at = reader.offset
        let raw = try reader.read(UInt8.self)
        if raw == 0 { return nil }
        guard let value = Value(rawValue: raw) else { throw invalid(at, field()) }
        return value
    }

    mutating func decodeHeader() throws(DecodingError) {
        var at = reader.offset
        version = try reader.read(UInt32.self)
        guard Ledger.stateFormatVersionsReadable.contains(version) else {
            throw invalid(at, "stateFormatVersion \(version) (this build reads \(Ledger.stateFormatVersionsReadable))")
        }
        grantBytes = Ledger.encodedGrantBytes(version: version)
        at = reader.offset
        let keysMax = try reader.read(UInt64.self)
        guard keysMax == UInt64(configuration.idempotencyKeysMax) else {
            throw invalid(at, "idempotencyKeysMax \(keysMax) ≠ configured \(configuration.idempotencyKeysMax)")
        }
        at = reader.offset
        let window = try reader.read(Int64.self)
        guard window == configuration.idempotencyWindowMillis else {
            throw invalid(at, "idempotencyWindowMillis \(window) ≠ configured \(configuration.idempotencyWindowMillis)")
        }
        at = reader.offset
        let closedMax = try reader.read(UInt64.self)
        guard closedMax == UInt64(configuration.closedHoldsRememberedMax) else {
            throw invalid(at, "closedHoldsRememberedMax \(closedMax) ≠ configured \(configuration.closedHoldsRememberedMax)")
        }
        at = reader.offset
        nextSequence = try reader.read(UInt64.self)
        // Every recorded command takes a sequence: the counter cannot be near its end.
        guard nextSequence >= 1 && nextSequence < UInt64(Int64.max) else { throw invalid(at, "nextSequence") }
        lastTime = try reader.read(Int64.self)
        totals.granted = try amount(in: Self.nonNegative, "totals.granted")
        totals.consumed = try amount(in: Self.nonNegative, "totals.consumed")
        totals.expired = try amount(in: Self.nonNegative, "totals.expired")
        totals.debt = try amount(in: Self.nonNegative, "totals.debt")
    }

    mutating func decodeCounts() throws(DecodingError) -> (Int, Int, Int, Int) {
        let at = reader.offset
        // Below `none`, and `UInt32.max - 1` (the tenant table's empty marker) for organisations.
        let limit = Int(UInt32.max) - 2
        let tenantCount = Int(try reader.read(UInt32.self))
        let accountCount = Int(try reader.read(UInt32.self))
        let grantCount = Int(try reader.read(UInt32.self))
        let organisationCount = Int(try reader.read(UInt32.self))
        guard tenantCount <= limit, accountCount <= limit, grantCount <= limit, organisationCount <= limit,
              organisationCount <= tenantCount else { throw invalid(at, "record counts") }
        let needed = tenantCount * Ledger.encodedTenantBytes + accountCount * Ledger.encodedAccountBytes
            + grantCount * grantBytes + organisationCount * Ledger.encodedOrganisationBytesMin
        guard needed <= reader.remaining else { throw invalid(at, "record counts (\(needed) bytes needed, \(reader.remaining) left)") }
        return (tenantCount, accountCount, grantCount, organisationCount)
    }

    /// Checks that `bytes` follow and skips them; returns where they start.
    mutating func skip(_ bytes: Int, _ field: String) throws(DecodingError) -> Int {
        let start = reader.offset
        guard bytes <= reader.remaining else { throw invalid(start, field) }
        _ = try reader.readBytes(bytes)
        return start
    }

    /// Runs `body` with a cursor at `start` of `bytes` (whose length the caller checked).
    static func parse(_ bytes: [UInt8], from start: Int,
                      _ body: (inout FieldCursor) throws(DecodingError) -> Void) throws(DecodingError) {
        let failure = bytes.withUnsafeBytes { raw -> DecodingError? in
            var cursor = FieldCursor(raw: raw, offset: start)
            do throws(DecodingError) {
                try body(&cursor)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    mutating func decodeTenants(_ count: Int, accountCount: Int, grantCount: Int, organisationCount: Int) throws(DecodingError) {
        tenantsStart = try skip(count * Ledger.encodedTenantBytes, "tenants")
        tenantList.reserveCapacity(count)
        tenants = TenantTable(capacity: count)
        try Self.parse(reader.bytes, from: tenantsStart) { cursor throws(DecodingError) in
            var previous: UInt64?
            for index in 0 ..< count {
                let at = cursor.offset
                let id = cursor.next(UInt64.self)
                if let previous, id <= previous { throw invalid(at, "tenant \(index) id \(id) not above the previous one") }
                previous = id
                let firstAccount = try cursor.index(below: accountCount, orNone: true, "tenant \(id) firstAccount")
                let organisation = try cursor.index(below: organisationCount, orNone: true, "tenant \(id) organisation")
                let grantHint = try cursor.index(below: grantCount, orNone: true, "tenant \(id) grantHint")
                let slot = TenantSlot(firstAccount: firstAccount, organisation: organisation, grantHint: grantHint)
                tenantList.append((TenantID(id), slot))
                tenants.insert(TenantID(id), slot)
            }
        }
    }

    mutating func decodeAccounts(_ count: Int, grantCount: Int) throws(DecodingError) {
        accountsStart = try skip(count * Ledger.encodedAccountBytes, "accounts")
        let known: UInt8 = AccountRecord.Flags.stored.rawValue
        try Self.parse(reader.bytes, from: accountsStart) { cursor throws(DecodingError) in
            for slot in 0 ..< count {
                let tenant = TenantID(cursor.next(UInt64.self))
                let number = cursor.next(UInt32.self)
                let nextInTenant = try cursor.index(below: count, orNone: true, "account \(slot) nextInTenant")
                let firstGrant = try cursor.index(below: grantCount, orNone: true, "account \(slot) firstGrant")
                let link = cursor.next(UInt32.self) // checked with the account's role in checkTenancy
                let flagsAt = cursor.offset
                let flags = AccountRecord.Flags(rawValue: cursor.next(UInt8.self))
                guard flags.rawValue & ~known == 0, !flags.isSuperset(of: [.pool, .member]) else {
                    throw invalid(flagsAt, "account \(slot) flags \(flags.rawValue)")
                }
                let liveAt = cursor.offset
                let liveGrants = cursor.next(UInt16.self)
                guard Int(liveGrants) <= LedgerLimits.grantsPerAccountMax else { throw invalid(liveAt, "account \(slot) liveGrants") }
                let granted = try cursor.amount(in: Self.nonNegative, "account \(slot) granted")
                let consumed = try cursor.amount(in: Self.nonNegative, "account \(slot) consumed")
                let expired = try cursor.amount(in: Self.nonNegative, "account \(slot) expired")
                let debt = try cursor.amount(in: Self.nonNegative, "account \(slot) debt")
                accounts.append(AccountRecord(tenant: tenant, number: number, nextInTenant: nextInTenant,
                                              firstGrant: firstGrant, link: link, flags: flags, liveGrants: liveGrants,
                                              granted: granted, consumed: consumed, expired: expired, debt: debt))
            }
        }
    }

    mutating func decodeGrants(_ count: Int, accountCount: Int) throws(DecodingError) {
        grantsStart = try skip(count * grantBytes, "grants")
        let (nextSequence, hasState) = (nextSequence, version >= 3)
        try Self.parse(reader.bytes, from: grantsStart) { cursor throws(DecodingError) in
            for slot in 0 ..< count {
                let at = cursor.offset
                let number = cursor.next(UInt64.self)
                // A grant's number is the sequence of the entry that created it; the further
                // grants of one command (a renewal's rollovers) add k × 2^48 (`Ledger.grantNumber`).
                let sequence = number & (1 << 48 - 1)
                guard (number >= 1 && number < nextSequence) || (sequence >= 1 && sequence < nextSequence) else {
                    throw invalid(at, "grant slot \(slot) number \(number)")
                }
                let original = try cursor.amount(in: 1 ... LedgerLimits.amountMax, "grant \(number) original")
                let remaining = try cursor.amount(in: 0 ... original, "grant \(number) remaining")
                let held = try cursor.amount(in: 0 ... original - remaining, "grant \(number) held")
                let effectiveAt = cursor.next(Int64.self)
                let expiresAt = cursor.next(Int64.self)
                let costBasis = cursor.next(UInt32.self)
                let account = try cursor.index(below: accountCount, orNone: false, "grant \(number) account")
                let next = try cursor.index(below: count, orNone: true, "grant \(number) next")
                let priority = cursor.next(UInt8.self)
                let kindAt = cursor.offset
                guard let kind = GrantKind(rawValue: cursor.next(UInt8.self)) else { throw invalid(kindAt, "grant \(number) kind") }
                let scopedAt = cursor.offset
                let scoped = cursor.next(UInt8.self)
                guard scoped <= 1 else { throw invalid(scopedAt, "grant \(number) isScoped") }
                // Before version 3 every grant was live: grace and forfeiture did not exist.
                // Free slots' stale states are checked too: they are written and digested.
                let stateAt = cursor.offset
                guard let state = hasState ? GrantState(rawValue: cursor.next(UInt8.self)) : GrantState.live else {
                    throw invalid(stateAt, "grant \(number) state")
                }
                grants.append(GrantRecord(number: number, original: original, remaining: remaining, held: held,
                                          effectiveAt: effectiveAt, expiresAt: expiresAt, costBasis: costBasis,
                                          account: account, next: next, priority: priority, kind: kind,
                                          isScoped: scoped == 1, state: state))
            }
        }
    }

    mutating func decodeFreeGrantSlots(_ grantCount: Int) throws(DecodingError) {
        let count = try self.count(max: grantCount, bytesEach: 4, "freeGrantSlots count")
        freeGrantSlots.reserveCapacity(count)
        for _ in 0 ..< count {
            freeGrantSlots.append(try index(below: grantCount, orNone: false, "free grant slot"))
        }
    }

    mutating func decodePeriod(_ owner: @autoclosure () -> String) throws(DecodingError) -> PeriodCap {
        let at = reader.offset
        let cap: Int64? = try reader.readBool(owner() + " cap present") ? try amount(in: Self.amounts, owner() + " cap") : nil
        let spent = try amount(in: Self.nonNegative, owner() + " spent")
        let held = try amount(in: Self.nonNegative, owner() + " held")
        let overrun = try amount(in: Self.nonNegative, owner() + " overrun")
        // The sums the checker and the cap checks compute must not overflow.
        _ = try add(spent, held, at, owner() + " spent + held")
        _ = try add(cap ?? 0, overrun, at, owner() + " cap + overrun")
        return PeriodCap(cap: cap, spent: spent, held: held, overrun: overrun)
    }

    mutating func decodeOrganisations(_ count: Int, accountCount: Int) throws(DecodingError) {
        organisations.reserveCapacity(count)
        organisationStarts.reserveCapacity(count)
        for index in 0 ..< count {
            organisationStarts.append(reader.offset)
            let tenant = TenantID(try reader.read(UInt64.self))
            let pool = try self.index(below: accountCount, orNone: false, "organisation \(index) pool")
            let periodsAt = reader.offset
            let periodsStarted = try reader.read(UInt64.self)
            // Each period was started by a recorded command.
            guard periodsStarted < nextSequence else { throw invalid(periodsAt, "organisation \(tenant) periodsStarted") }
            let departmentCount = try self.count(max: LedgerLimits.departmentsPerOrganisationMax,
                                                 bytesEach: 6 + Ledger.encodedPeriodCapBytesMin,
                                                 "organisation \(tenant) department count")
            var departments: [DepartmentRecord] = []
            departments.reserveCapacity(departmentCount)
            var ids: Set<UInt16> = []
            for _ in 0 ..< departmentCount {
                let at = reader.offset
                let id = try reader.readDepartment()
                guard ids.insert(id.rawValue).inserted else { throw invalid(at, "organisation \(tenant) department \(id) repeated") }
                let costCentre = try reader.readString(maxBytes: LedgerLimits.textBytesMax, "department \(id) costCentre")
                let period = try decodePeriod("department \(tenant)/\(id)")
                departments.append(DepartmentRecord(id: id, costCentre: costCentre, period: period))
            }
            let memberCount = try self.count(max: accountCount, bytesEach: 8 + Ledger.encodedPeriodCapBytesMin,
                                             "organisation \(tenant) member count")
            var members: [MemberRecord] = []
            members.reserveCapacity(memberCount)
            for member in 0 ..< memberCount {
                let account = try self.index(below: accountCount, orNone: false, "organisation \(tenant) member \(member) account")
                let department = try self.index(below: departments.count, orNone: false,
                                                "organisation \(tenant) member \(member) department")
                let period = try decodePeriod("member \(member) of \(tenant)")
                members.append(MemberRecord(account: account, department: Int(department), period: period))
            }
            organisations.append(OrganisationRecord(tenant: tenant, pool: pool, departments: departments, members: members,
                                                    memberSlots: [:], periodsStarted: periodsStarted))
        }
    }

    // MARK: Structure

    func accountOffset(_ slot: UInt32) -> Int { accountsStart + Int(slot) * Ledger.encodedAccountBytes }
    func grantOffset(_ slot: UInt32) -> Int { grantsStart + Int(slot) * grantBytes }

    /// Every account is reached exactly once: from its individual tenant's chain, as an
    /// organisation's pool, or as one of its members; every organisation from exactly one
    /// tenant. Rebuilds each organisation's member index. Checks the sums of lifetime totals.
    mutating func checkTenancy() throws(DecodingError) {
        roles = [Role](repeating: .unreached, count: accounts.count)
        var organisationReached = [Bool](repeating: false, count: organisations.count)
        var numbers: [UInt32] = []
        for (position, (id, tenant)) in tenantList.enumerated() {
            let at = tenantsStart + position * Ledger.encodedTenantBytes
            if tenant.organisation == none {
                var cursor = tenant.firstAccount
                numbers.removeAll(keepingCapacity: true)
                while cursor != none {
                    let account = accounts[cursor]
                    guard roles[Int(cursor)] == .unreached else {
                        throw invalid(accountOffset(cursor), "account \(cursor) reached twice (tenant \(id) chain)")
                    }
                    roles[Int(cursor)] = .individual
                    guard account.tenant == id, account.link == none, account.flags.isDisjoint(with: [.pool, .member]) else {
                        throw invalid(accountOffset(cursor), "account \(cursor) in the chain of \(id) is not its standard account")
                    }
                    numbers.append(account.number)
                    cursor = account.nextInTenant
                }
                if numbers.count > 1 {
                    numbers.sort()
                    for index in 1 ..< numbers.count where numbers[index] == numbers[index - 1] {
                        throw invalid(at, "tenant \(id) has two accounts numbered \(numbers[index])")
                    }
                }
                continue
            }
            let index = Int(tenant.organisation)
            let start = organisationStarts[index]
            guard !organisationReached[index] else { throw invalid(at, "organisation \(index) reached from two tenants") }
            organisationReached[index] = true
            var organisation = organisations[index]
            guard organisation.tenant == id, tenant.firstAccount == organisation.pool else {
                throw invalid(start, "organisation \(index) does not belong to tenant \(id)")
            }
            let pool = accounts[organisation.pool]
            guard roles[Int(organisation.pool)] == .unreached else {
                throw invalid(accountOffset(organisation.pool), "account \(organisation.pool) reached twice (pool of \(id))")
            }
            roles[Int(organisation.pool)] = .pool
            guard pool.tenant == id, pool.number == 0, pool.link == UInt32(index), pool.flags.contains(.pool) else {
                throw invalid(accountOffset(organisation.pool), "account \(organisation.pool) is not the pool of \(id)")
            }
            var spent = [Int64](repeating: 0, count: organisation.departments.count)
            var held = [Int64](repeating: 0, count: organisation.departments.count)
            for (position, member) in organisation.members.enumerated() {
                let slot = member.account
                let account = accounts[slot]
                guard roles[Int(slot)] == .unreached else {
                    throw invalid(accountOffset(slot), "account \(slot) reached twice (member of \(id))")
                }
                roles[Int(slot)] = .member
                guard account.tenant == id, account.number != 0, account.link == UInt32(position),
                      account.flags.contains(.member), account.firstGrant == none else {
                    throw invalid(accountOffset(slot), "account \(slot) is not member \(position) of \(id)")
                }
                guard organisation.memberSlots.updateValue(slot, forKey: account.number) == nil else {
                    throw invalid(accountOffset(slot), "organisation \(id) has two members numbered \(account.number)")
                }
                spent[member.department] = try add(spent[member.department], member.period.spent, start,
                                                   "department spending of \(id)")
                held[member.department] = try add(held[member.department], member.period.held, start,
                                                  "department holds of \(id)")
            }
            organisations[index] = organisation
        }
        if let index = organisationReached.firstIndex(of: false) {
            throw invalid(organisationStarts[index], "organisation \(index) belongs to no tenant")
        }
        if let slot = roles.firstIndex(of: .unreached) {
            throw invalid(accountOffset(UInt32(slot)), "account \(slot) is reached from no tenant")
        }
    }

    /// Every grant slot is in exactly one grant-holding account's chain or in the free list
    /// once. Checks the sums the conservation check will compute.
    mutating func checkGrantChains() throws(DecodingError) {
        grantUse = [GrantUse](repeating: .unreached, count: grants.count)
        var sums = LedgerTotals()
        var failure: DecodingError?
        accounts.forEach { slot, account in
            guard failure == nil else { return }
            do throws(DecodingError) {
                let at = accountOffset(slot)
                sums.granted = try add(sums.granted, account.granted, at, "the sum of accounts' granted")
                sums.expired = try add(sums.expired, account.expired, at, "the sum of accounts' expired")
                sums.debt = try add(sums.debt, account.debt, at, "the sum of accounts' debt")
                if roles[Int(slot)] == .member { return }
                sums.consumed = try add(sums.consumed, account.consumed, at, "the sum of accounts' consumed")
                var remaining: Int64 = 0
                var held: Int64 = 0
                var count = 0
                var cursor = account.firstGrant
                while cursor != none {
                    guard grantUse[Int(cursor)] == .unreached else {
                        throw invalid(grantOffset(cursor), "grant slot \(cursor) reached twice (account \(slot) chain)")
                    }
                    grantUse[Int(cursor)] = .live
                    let grant = grants[cursor]
                    guard grant.account == slot else {
                        throw invalid(grantOffset(cursor), "grant slot \(cursor) in the chain of account \(slot) names account \(grant.account)")
                    }
                    try checkState(of: grant, slot: cursor)
                    remaining = try add(remaining, grant.remaining, at, "account \(slot) remaining")
                    held = try add(held, grant.held, at, "account \(slot) held")
                    count += 1
                    cursor = grant.next
                }
                guard count == Int(account.liveGrants) else {
                    throw invalid(at, "account \(slot) liveGrants \(account.liveGrants), its chain has \(count)")
                }
                _ = try add(account.granted, account.debt, at, "account \(slot) granted + debt")
                let used = try add(try add(remaining, account.consumed, at, "account \(slot) remaining + consumed"),
                                   account.expired, at, "account \(slot) remaining + consumed + expired")
                _ = try add(used, held, at, "account \(slot) remaining + consumed + expired + held")
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        for slot in freeGrantSlots {
            guard grantUse[Int(slot)] == .unreached else { throw invalid(grantOffset(slot), "grant slot \(slot) is both free and used") }
            grantUse[Int(slot)] = .free
        }
        if let slot = grantUse.firstIndex(of: .unreached) {
            throw invalid(grantOffset(UInt32(slot)), "grant slot \(slot) is neither live nor free")
        }
    }

    /// What a listed grant's stage of life requires of it (`GrantState`): a live grant
    /// expires after it is effective; a grant in grace keeps its grace end, no earlier than
    /// its expiry, in `effectiveAt`, and a reinstatement subtracts the two; a forfeited one
    /// is kept only for the holds still open on it, with nothing remaining.
    func checkState(of grant: GrantRecord, slot: UInt32) throws(DecodingError) {
        let at = grantOffset(slot)
        switch grant.state {
        case .live:
            guard grant.effectiveAt < grant.expiresAt else {
                throw invalid(at + 32, "grant \(grant.number) is live but expires before it is effective")
            }
        case .grace:
            guard grant.effectiveAt >= grant.expiresAt,
                  !grant.effectiveAt.subtractingReportingOverflow(grant.expiresAt).overflow else {
                throw invalid(at + 32, "grant \(grant.number) grace end \(grant.effectiveAt) (before its expiry, or too far after it)")
            }
        case .forfeited:
            guard grant.remaining == 0, grant.held > 0 else {
                throw invalid(at + 16, "grant \(grant.number) is forfeited but has \(grant.remaining) remaining and \(grant.held) held")
            }
        }
    }

    // MARK: Tables after the structure

    mutating func decodeGrantScopes() throws(DecodingError) {
        let count = try self.count(max: grants.count, bytesEach: 12, "grantScopes count")
        grantScopes.reserveCapacity(count)
        var previous: UInt32?
        for _ in 0 ..< count {
            let at = reader.offset
            let slot = try index(below: grants.count, orNone: false, "grant scope slot")
            guard previous.map({ slot > $0 }) ?? true, grantUse[Int(slot)] == .live, grants[slot].isScoped else {
                throw invalid(at, "grant scope slot \(slot) (not ascending, or not a live scoped grant)")
            }
            previous = slot
            let scope = try reader.readScope()
            guard !scope.isUnscoped else { throw invalid(at + 4, "grant scope of slot \(slot) is empty") }
            grantScopes[slot] = scope
        }
    }

    mutating func decodeCreditLines() throws(DecodingError) {
        let count = try self.count(max: accounts.count, bytesEach: 20, "creditLines count")
        creditLines.reserveCapacity(count)
        var previous: UInt32?
        for _ in 0 ..< count {
            let at = reader.offset
            let slot = try index(below: accounts.count, orNone: false, "credit line account")
            guard previous.map({ slot > $0 }) ?? true, roles[Int(slot)] != .member else {
                throw invalid(at, "credit line account \(slot) (not ascending, or a member)")
            }
            previous = slot
            let overdraft = try amount(in: Self.amounts, "credit line \(slot) overdraft")
            let overrun = try amount(in: Self.nonNegative, "credit line \(slot) overrun")
            _ = try add(overdraft, overrun, at, "credit line \(slot) overdraft + overrun")
            creditLines[slot] = Ledger.CreditLine(overdraft: overdraft, overrun: overrun)
        }
    }

    mutating func decodeHolds() throws(DecodingError) {
        let count = try self.count(max: LedgerLimits.openHoldsPerShardMax, bytesEach: Ledger.encodedHoldBytesMin, "holds count")
        holds.reserveCapacity(count)
        var previous: UInt64 = 0
        var heldByGrant: [UInt32: Int64] = [:]
        var heldByPrincipal: [UInt32: Int64] = [:]
        for _ in 0 ..< count {
            let at = reader.offset
            let number = try reader.read(UInt64.self)
            // A hold's number is the sequence of its reserve entry.
            guard number > previous, number < nextSequence else { throw invalid(at, "hold number \(number)") }
            previous = number
            let account = try index(below: accounts.count, orNone: false, "hold \(number) account")
            let principal = try index(below: accounts.count, orNone: false, "hold \(number) principal")
            // Held on the principal's own grants, or for a member on its organisation's pool.
            let funding: UInt32? = switch roles[Int(principal)] {
            case .member:
                tenants[accounts[principal].tenant].map { organisations[Int($0.organisation)].pool }
            default: principal
            }
            guard account == funding else { throw invalid(at + 8, "hold \(number) account is not its principal's funding account") }
            let amount = try self.amount(in: 1 ... LedgerLimits.amountMax, "hold \(number) amount")
            let expiresAt = try reader.read(Int64.self)
            let scope = try reader.readScope()
            let partCount = try self.count(max: LedgerLimits.grantsPerAccountMax, bytesEach: Ledger.encodedHoldPartBytes,
                                           "hold \(number) part count")
            var parts: [HoldPart] = []
            parts.reserveCapacity(partCount)
            var sum: Int64 = 0
            for _ in 0 ..< partCount {
                let partAt = reader.offset
                let grant = try index(below: grants.count, orNone: false, "hold \(number) part grant")
                guard grantUse[Int(grant)] == .live, grants[grant].account == account else {
                    throw invalid(partAt, "hold \(number) part holds grant slot \(grant), not a live grant of its account")
                }
                let partAmount = try self.amount(in: 1 ... amount, "hold \(number) part amount")
                sum = try add(sum, partAmount, partAt, "hold \(number) parts")
                heldByGrant[grant] = try add(heldByGrant[grant] ?? 0, partAmount, partAt, "holds of grant slot \(grant)")
                parts.append(HoldPart(grant: grant, amount: partAmount))
            }
            guard sum == amount else { throw invalid(at, "hold \(number) parts sum to \(sum), not its amount \(amount)") }
            heldByPrincipal[principal] = try add(heldByPrincipal[principal] ?? 0, amount, at, "holds of account \(principal)")
            holds[number] = HoldRecord(account: account, principal: principal, amount: amount, expiresAt: expiresAt,
                                       scope: scope, parts: parts)
        }
    }

    mutating func decodeClosedHolds() throws(DecodingError) {
        let count = try self.count(max: configuration.closedHoldsRememberedMax, bytesEach: 8, "closed holds count")
        closedHolds.reserveCapacity(count)
        var seen: Set<UInt64> = []
        seen.reserveCapacity(count)
        for _ in 0 ..< count {
            let at = reader.offset
            let number = try reader.read(UInt64.self)
            guard number >= 1, number < nextSequence, holds[number] == nil, seen.insert(number).inserted else {
                throw invalid(at, "closed hold \(number) (repeated, open, or never a sequence)")
            }
            closedHolds.append(number)
        }
    }

    mutating func decodeIdempotency() throws(DecodingError) {
        let countsAt = reader.offset
        let half = configuration.idempotencyKeysMax / 2
        let previousCount = try count(max: half, bytesEach: Ledger.encodedRememberedBytes, "idempotency previous count")
        let currentCount = try count(max: half, bytesEach: Ledger.encodedRememberedBytes, "idempotency current count")
        guard (previousCount + currentCount) * Ledger.encodedRememberedBytes <= reader.remaining else {
            throw invalid(countsAt, "idempotency counts")
        }
        // Every recorded command is remembered, in the current generation, so there are keys
        // exactly when a command was recorded, the newest is the last command's, and the
        // current generation is empty only when both are.
        guard (previousCount + currentCount == 0) == (nextSequence == 1), currentCount > 0 || previousCount == 0,
              UInt64(previousCount + currentCount) < nextSequence else {
            throw invalid(countsAt, "idempotency counts \(previousCount) + \(currentCount) with nextSequence \(nextSequence)")
        }
        previousKeys.reserveCapacity(previousCount)
        currentKeys.reserveCapacity(currentCount)
        let start = try skip((previousCount + currentCount) * Ledger.encodedRememberedBytes, "idempotency records")
        let (accountCount, nextSequence, lastTime) = (accounts.count, nextSequence, lastTime)
        var newestAt = countsAt
        try Self.parse(reader.bytes, from: start) { cursor throws(DecodingError) in
            var newestMillis = Int64.min
            var newestSequence: UInt64 = 0
            for position in 0 ..< previousCount + currentCount {
                newestAt = cursor.offset
                let key = IdempotencyKey(high: cursor.next(UInt64.self), low: cursor.next(UInt64.self))
                let millisAt = cursor.offset
                let millis = cursor.next(Int64.self)
                guard millis >= newestMillis, millis <= lastTime else { throw invalid(millisAt, "idempotency key \(key) time \(millis)") }
                newestMillis = millis
                let fingerprint = cursor.next(UInt64.self)
                let outcomeAt = cursor.offset
                let code = cursor.next(UInt8.self)
                let outcome = StoredOutcome(w0: cursor.next(UInt64.self), w1: cursor.next(UInt64.self),
                                            w2: cursor.next(UInt64.self), code: code)
                guard outcome.isKnown else { throw invalid(outcomeAt, "idempotency key \(key) outcome code \(code)") }
                if outcome.isSuccess {
                    guard outcome.w0 > newestSequence, outcome.w0 < nextSequence else {
                        throw invalid(outcomeAt + 1, "idempotency key \(key) receipt sequence \(outcome.w0)")
                    }
                    newestSequence = outcome.w0
                }
                // What may still be refunded of a charge: at most the charge (the receipt's amount).
                let refundableMax = outcome.isSuccess ? min(LedgerLimits.amountMax, max(0, Int64(bitPattern: outcome.w1))) : 0
                let refundable = try cursor.amount(in: 0 ... refundableMax, "idempotency key \(key) refundable")
                let principalAt = cursor.offset
                let principal = try cursor.index(below: accountCount, orNone: true, "idempotency key \(key) principal")
                guard (refundable == 0 || principal != none) && (principal == none || outcome.isSuccess) else {
                    throw invalid(principalAt, "idempotency key \(key) refund state")
                }
                let record = IdempotencyTable.Record(key: key, millis: millis,
                                                     remembered: Remembered(fingerprint: fingerprint, outcome: outcome,
                                                                            refundable: refundable, principal: principal))
                if position < previousCount { previousKeys.append(record) } else { currentKeys.append(record) }
            }
        }
        if let newest = currentKeys.last {
            guard newest.millis == lastTime else { throw invalid(newestAt, "lastTime \(lastTime) ≠ the newest key's time \(newest.millis)") }
            if newest.remembered.outcome.isSuccess, newest.remembered.outcome.w0 != nextSequence - 1 {
                throw invalid(newestAt, "nextSequence \(nextSequence) does not follow the newest receipt")
            }
        } else if lastTime != Timestamp.epoch.millisSinceEpoch {
            throw invalid(newestAt, "lastTime \(lastTime) with no command recorded")
        }
    }
}

extension StoredOutcome {
    /// Whether an encoder writes this code: a success (200 + `Receipt.Created`) or an error
    /// the store decodes. Anything else would trap when the outcome is read back.
    /// `SnapshotStateTests.outcomeValidatorMatchesTheStore` checks this against every error.
    var isKnown: Bool { isSuccess || decodedError != nil }

    var isSuccess: Bool { code >= 200 && Receipt.Created(rawValue: code &- 200) != nil }
}
