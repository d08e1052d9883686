// The state decoder: the tables after the structure (scopes, credit lines, holds, the
// idempotency table), and what a stored outcome may be.

extension StateDecoder {
    // MARK: Tables after the structure

    mutating func decodeGrantScopes() throws(BinaryDecodingError) {
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

    mutating func decodeCreditLines() throws(BinaryDecodingError) {
        let count = try self.count(max: accounts.count, bytesEach: 20, "creditLines count")
        creditLines.reserveCapacity(count)
        var previous: UInt32?
        for _ in 0 ..< count {
            let at = reader.offset
            let slot = try index(below: accounts.count, orNone: false, "credit line account")
            guard previous.map({ slot > $0 }) ?? true, reaches[Int(slot)] != .member else {
                throw invalid(at, "credit line account \(slot) (not ascending, or a member)")
            }
            previous = slot
            let overdraft = try amount(in: Self.amounts, "credit line \(slot) overdraft")
            let overrun = try amount(in: Self.nonNegative, "credit line \(slot) overrun")
            _ = try add(overdraft, overrun, at, "credit line \(slot) overdraft + overrun")
            creditLines[slot] = Ledger.CreditLine(overdraft: overdraft, overrun: overrun)
        }
    }

    mutating func decodeHolds() throws(BinaryDecodingError) {
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
            let funding: UInt32? = switch reaches[Int(principal)] {
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

    mutating func decodeClosedHolds() throws(BinaryDecodingError) {
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

    mutating func decodeIdempotency() throws(BinaryDecodingError) {
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
        try Self.parse(reader.bytes, from: start) { cursor throws(BinaryDecodingError) in
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
