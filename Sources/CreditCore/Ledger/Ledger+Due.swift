/// What falls due, for the engine's scheduler: notes the handlers leave, the notes a whole
/// ledger implies (to rebuild the scheduler's heap after recovery), and the work a note
/// calls for at a given time. All pure: the scheduler turns work into commands.

/// Something of an account that falls due at a time. Ordered by time, then kind (at equal
/// times a renewal comes before an expiry), then account slot: a scheduler that takes them
/// in this order issues the same commands in the same order after a restart.
package struct DueNote: Sendable, Hashable, Comparable {
    package enum Kind: UInt8, Sendable, CaseIterable {
        /// The end of a subscription's cycle: renew or lapse.
        case renewal = 0
        /// A grant expires: into grace.
        case expiry = 1
        /// A grant's grace ends: forfeit.
        case graceEnd = 2
        /// A refill payment (first attempt or retry) is due.
        case refill = 3
        /// A grant expires within the scheduler's warning window (a notice only).
        case warning = 4
        /// The balance crossed the low-balance threshold (a notice only).
        case lowBalance = 5
    }

    package let at: Int64
    package let kind: Kind
    /// The account's slot in its ledger (stable for the account's life).
    package let slot: UInt32

    package init(at: Int64, kind: Kind, slot: UInt32) {
        self.at = at
        self.kind = kind
        self.slot = slot
    }

    package static func < (lhs: DueNote, rhs: DueNote) -> Bool {
        (lhs.at, lhs.kind.rawValue, lhs.slot) < (rhs.at, rhs.kind.rawValue, rhs.slot)
    }
}

/// What a due note calls for now.
public enum DueWork: Sendable, Equatable {
    /// Apply this command (its key derives from what it does, so issuing it twice
    /// changes nothing twice).
    case command(Command)
    /// Charge the renewal of `cycle` of the subscription anchored at `anchor` (then
    /// `renewSubscription`, or `lapseSubscription` on a decline).
    case renewalPayment(AccountID, anchor: Timestamp, cycle: UInt32, priceCents: Int64, plan: String)
    /// Attempt the refill's payment (then `completeRefill` or `failRefill`).
    case refillPayment(AccountID, refill: UInt64, attempt: UInt8, credits: Int64)
    /// Tell the host.
    case notice(Notice)
}

/// A notice for the host (the engine publishes them as data; nothing is printed).
public enum Notice: Sendable, Equatable {
    /// The available balance went below the account's low-balance threshold.
    case lowBalance(AccountID, available: Millicredits, threshold: Millicredits)
    /// Credits of the account expire at `expiresAt`, within the warning window.
    case expiringSoon(AccountID, amount: Millicredits, expiresAt: Timestamp)
}

extension Ledger {
    /// The notes left since the last call, and none kept.
    package mutating func takeDueNotes() -> [DueNote] {
        defer { dueNotes.removeAll(keepingCapacity: true) }
        return dueNotes
    }

    /// Whether commands left notes since they were last taken.
    /// Whether notes wait. `mutating` although it changes nothing: the shard asks after every
    /// batch, from another module, and a non-mutating call there copied the whole ledger
    /// (1,112 bytes, every table retained and released) each time.
    package mutating func hasDueNotes() -> Bool { !dueNotes.isEmpty }

    /// Hands each note left since the last call to `body`, and keeps none (without
    /// allocating: the shard takes notes after every command that leaves some).
    package mutating func takeDueNotes(_ body: (DueNote) -> Void) {
        for note in dueNotes { body(note) }
        dueNotes.removeAll(keepingCapacity: true)
    }

    /// Every note the state implies now: renewals of live subscriptions, refills in flight,
    /// expiries of live grants (not the allocations a renewal ends), grace ends. A scheduler
    /// rebuilds its heap from these after recovery; notes already past are due at once.
    package func allDueNotes() -> [DueNote] {
        var notes: [DueNote] = []
        schedules.forEach { _, schedule in
            if let status = schedule.status, status != .lapsed {
                notes.append(DueNote(at: schedule.cycleEnd, kind: .renewal, slot: schedule.account))
            }
            if schedule.inFlight != 0 {
                notes.append(DueNote(at: schedule.nextAttemptAt, kind: .refill, slot: schedule.account))
            }
        }
        accounts.forEach { slot, account in
            guard account.holdsGrants, account.firstGrant != none else { return }
            let subscribed = liveSubscription(of: slot) != nil
            var cursor = account.firstGrant
            while cursor != none {
                let grant = grants[cursor]
                switch grant.state {
                case .live:
                    if grant.expiresAt != .max && !Self.renewalEnds(grant.kind, subscribed: subscribed) {
                        notes.append(DueNote(at: grant.expiresAt, kind: .expiry, slot: slot))
                    }
                case .grace:
                    notes.append(DueNote(at: grant.graceEndsAt, kind: .graceEnd, slot: slot))
                case .forfeited:
                    break
                }
                cursor = grant.next
            }
        }
        return notes
    }

    /// What `note` calls for at `now`, or nil when nothing (it was done, or changed since).
    /// `graceMillis` is the grace the scheduler gives expiring credits; `warningMillis` its
    /// warning window for `.warning` notes.
    package func dueWork(_ note: DueNote, at now: Timestamp, graceMillis: Int64, warningMillis: Int64 = 0) -> DueWork? {
        let time = now.millisSinceEpoch
        guard Int(note.slot) < accounts.count, note.at <= time else { return nil }
        let account = accounts[note.slot]
        let id = AccountID(tenant: account.tenant, number: account.number)
        switch note.kind {
        case .renewal:
            guard let schedule = liveSubscription(of: note.slot), schedule.cycleEnd <= time else { return nil }
            if schedule.status == .cancelling {
                return .command(Command(key: Self.renewalKey(id, cycle: schedule.cycle + 1, lapsed: true),
                                        .lapseSubscription(id, cycle: schedule.cycle, reason: .cancelled, graceMillis: graceMillis)))
            }
            if schedule.priceCents == 0 {
                return .command(Command(key: Self.renewalKey(id, cycle: schedule.cycle + 1, lapsed: false),
                                        .renewSubscription(id, cycle: schedule.cycle + 1, graceMillis: graceMillis)))
            }
            return .renewalPayment(id, anchor: Timestamp(millisSinceEpoch: schedule.anchor), cycle: schedule.cycle + 1,
                                   priceCents: schedule.priceCents, plan: schedule.plan.text)
        case .expiry:
            let subscribed = liveSubscription(of: note.slot) != nil
            var cursor = account.firstGrant
            var earliest = Int64.max
            while cursor != none {
                let grant = grants[cursor]
                if expiresNow(grant, subscribed: subscribed, at: time) { earliest = min(earliest, grant.expiresAt) }
                cursor = grant.next
            }
            guard earliest != .max else { return nil }
            return .command(Command(key: Self.scheduledKey(.expire, id, UInt64(bitPattern: earliest)),
                                    .expireGrants(id, graceMillis: graceMillis)))
        case .graceEnd:
            var cursor = account.firstGrant
            var earliest = Int64.max
            while cursor != none {
                let grant = grants[cursor]
                if grant.state == .grace && grant.graceEndsAt <= time { earliest = min(earliest, grant.graceEndsAt) }
                cursor = grant.next
            }
            guard earliest != .max else { return nil }
            return .command(Command(key: Self.scheduledKey(.forfeit, id, UInt64(bitPattern: earliest)), .forfeitGrants(id)))
        case .refill:
            guard account.schedule != none else { return nil }
            let schedule = schedules[account.schedule]
            guard schedule.inFlight != 0, schedule.nextAttemptAt <= time else { return nil }
            guard let terms = schedule.refill else {
                // Auto-refill was removed with a refill in flight that is not being paid now
                // (a payment under way completes it): it ends without a payment.
                return .command(Command(key: Self.refillKey(id, refill: schedule.inFlight, attempt: schedule.attempts, paid: false),
                                        .failRefill(id, refill: schedule.inFlight,
                                                    RefillFailure(declined: false, reason: "auto-refill removed", retryAt: nil))))
            }
            return .refillPayment(id, refill: schedule.inFlight, attempt: schedule.attempts, credits: terms.refillCredits)
        case .warning:
            // Credits that would be lost: not an allocation a live subscription rolls over.
            let rollingOver = liveSubscription(of: note.slot).map { $0.rollover && $0.status == .active } ?? false
            let expiresAt = note.at.addingClamped(warningMillis)
            var amount: Int64 = 0
            var cursor = account.firstGrant
            while cursor != none {
                let grant = grants[cursor]
                if grant.state == .live && grant.expiresAt == expiresAt && grant.expiresAt > time
                    && !(rollingOver && grant.kind == .monthlyAllocation) {
                    amount += grant.remaining
                }
                cursor = grant.next
            }
            guard amount > 0 else { return nil }
            return .notice(.expiringSoon(id, amount: Millicredits(amount), expiresAt: Timestamp(millisSinceEpoch: expiresAt)))
        case .lowBalance:
            guard account.schedule != none, let terms = schedules[account.schedule].refill else { return nil }
            let available = spendable(note.slot, scope: .unscoped, at: time) - account.debt
            guard available < terms.threshold else { return nil }
            return .notice(.lowBalance(id, available: Millicredits(available), threshold: Millicredits(terms.threshold)))
        }
    }

    /// What a scheduler key is for (its first hashed word).
    enum ScheduledKeyKind: UInt64 {
        case renew = 0x5343_4845_4452_4E57
        case lapse = 0x5343_4845_444C_4150
        case expire = 0x5343_4845_4445_5850
        case forfeit = 0x5343_4845_4446_4F52
        case refillPaid = 0x5343_4845_4452_5044
        case refillFailed = 0x5343_4845_4452_4644
    }

    static func scheduledKey(_ kind: ScheduledKeyKind, _ account: AccountID, _ words: UInt64...) -> IdempotencyKey {
        var hasher = StableHasher(seed: kind.rawValue)
        for word in words { hasher.combine(word) }
        return IdempotencyKey(deriving: kind.rawValue, account.tenant.rawValue, UInt64(account.number), hasher.finish())
    }

    /// `scheduledKey` of one word (a renewal's cycle, an expiry's time), the same key without
    /// the array a variadic call allocates: the scheduler derives one per renewal.
    static func scheduledKey(_ kind: ScheduledKeyKind, _ account: AccountID, _ word: UInt64) -> IdempotencyKey {
        var hasher = StableHasher(seed: kind.rawValue)
        hasher.combine(word)
        return IdempotencyKey(deriving: kind.rawValue, account.tenant.rawValue, UInt64(account.number), hasher.finish())
    }

    /// The key under which the scheduler records a renewal's outcome for the cycle it starts
    /// (renewed), or for the lapse at the end of the cycle before it, so a retry after a
    /// crash changes nothing twice.
    package static func renewalKey(_ account: AccountID, cycle: UInt32, lapsed: Bool) -> IdempotencyKey {
        scheduledKey(lapsed ? .lapse : .renew, account, UInt64(cycle))
    }

    /// The key of a refill's outcome (success, or the failure of attempt `attempt`).
    package static func refillKey(_ account: AccountID, refill: UInt64, attempt: UInt8, paid: Bool) -> IdempotencyKey {
        paid ? scheduledKey(.refillPaid, account, refill) : scheduledKey(.refillFailed, account, refill, UInt64(attempt))
    }
}
