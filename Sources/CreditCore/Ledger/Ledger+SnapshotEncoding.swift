// The state encoding, writing half: the ledger's state as bytes, section by section, in the
// order docs/formats-ledger-state.md gives (the public entry point is `encodeState(into:)` in
// Ledger+Snapshot.swift).

extension Ledger {
    func encodeState(directlyInto writer: inout ByteWriter) {
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

        // Version 5: the roles, by client then role (docs/formats-ledger-state.md).
        let grantedRoles = roles.sorted
        writer.write(UInt32(grantedRoles.count))
        for grant in grantedRoles {
            writer.write(grant.client.rawValue)
            grant.role.encode(into: &writer)
        }
        encodeRateLimits(into: &writer)
        encodeAnomalyState(into: &writer)
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
