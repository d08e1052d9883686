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
/// Corrupted bytes throw a `BinaryDecodingError` naming the field and its offset, never trap.
extension Ledger {
    /// Version of the state encoding written (bump on any change; old versions must stay
    /// decodable). 2 added the key policies and provider keys after the idempotency table;
    /// 3 added each grant's state (a 64th byte of its record) and the schedules table at the end;
    /// 4 added each schedule's cycle level (allocation and price) after that table, then the
    /// refund sources of the remembered charges and the recently retired grants.
    package static let stateFormatVersion: UInt32 = 5
    /// The versions this build decodes.
    package static let stateFormatVersionsReadable: ClosedRange<UInt32> = 1 ... 5

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
    @_spi(Plumbing) public func encodeState(into writer: inout ByteWriter) {
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
        return size + encodedRefundProvenanceByteCount + encodedRolesByteCount
    }

    /// The length of the governance state, the last part of the encoding (version 5): the
    /// roles, then the rate limits.
    var encodedRolesByteCount: Int {
        var size = 4
        for grant in roles.grants { size += 8 + grant.role.encodedByteCount }
        return size + encodedRateLimitsByteCount + encodedAnomalyByteCount
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
    @_spi(Plumbing) public init(decodingState reader: inout ByteReader, configuration: LedgerConfiguration) throws(BinaryDecodingError) {
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
        roles = decoder.roleTable
        guards = decoder.guards
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
