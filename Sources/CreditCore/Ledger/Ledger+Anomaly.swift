/// The anomaly guard in the ledger (docs/security.md, "The anomaly guard"; the detector is
/// `SpendVelocity`, docs/anomaly.md): every successful spend of an account feeds its spend
/// velocity, O(1), in the shard, at the command's timestamp; a verdict under the tenant's
/// policy emits an alert with its figures and, under `freeze`, freezes the account in the
/// same command (its auto-refill then pauses). Unfreezing is `Action.unfreeze`, which only an
/// organisation or platform admin may send.

/// What the anomaly guard does for a tenant's accounts.
public enum AnomalyMode: UInt8, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    /// Nothing (spend velocity is still tracked, so switching the guard on later judges
    /// against a warm baseline).
    case off = 0
    /// An alert with the figures; spending continues. The default.
    case alert = 1
    /// An alert, and the account is frozen until an admin unfreezes it.
    case freeze = 2

    public var description: String {
        switch self {
        case .off: "off"
        case .alert: "alert"
        case .freeze: "freeze"
        }
    }

    var policy: AnomalyPolicy {
        switch self {
        case .off: AnomalyPolicy(mode: .off)
        case .alert: AnomalyPolicy(mode: .alert)
        case .freeze: AnomalyPolicy(mode: .freeze)
        }
    }
}

/// An account's spending left its own baseline (docs/security.md): the figures that made it
/// anomalous. Rates are millicredits per minute.
public struct AnomalyAlert: Sendable, Equatable {
    public let account: AccountID
    /// The command that crossed the threshold (it was applied), and its entry.
    public let key: IdempotencyKey
    public let sequence: UInt64
    public let time: Timestamp
    /// Whether the account was frozen (the tenant's policy is `freeze`).
    public let froze: Bool
    /// The crossing spend.
    public let amount: Millicredits
    /// The spend rate now (half-life 30 s), this spend included.
    public let fastRate: Millicredits
    /// The account's own baseline: the larger of its hourly and daily rates.
    public let baselineRate: Millicredits
    public let hourRate: Millicredits
    public let dayRate: Millicredits
    public let deviation: Millicredits
    /// The rate the fast rate had to exceed: max(floor, 17 × baseline, min(baseline +
    /// 40 deviations, 25 × baseline)) under the default thresholds.
    public let threshold: Millicredits
    public let floor: Millicredits
    /// Active history of the account, in minutes.
    public let historyMinutes: Int64
}

extension Ledger {
    /// The policy of `tenant`: its own mode, else `alert`.
    @inline(__always)
    func anomalyPolicy(of tenant: TenantID) -> AnomalyPolicy {
        if guards.modedTenants == 0 { return Self.defaultAnomalyPolicy }
        let index = tenantGuardIndex(tenant)
        return index == none ? Self.defaultAnomalyPolicy : guards.tenants[index].mode.policy
    }

    static let defaultAnomalyPolicy = AnomalyMode.alert.policy
    /// Alerts kept until taken (`takeAnomalyAlerts`); beyond, the older half is dropped.
    static let anomalyAlertsKeptMax = 4_096

    /// Feeds a successful spend of `amount` by the account at `slot` to its velocity; on a
    /// verdict, alerts and, under `freeze`, freezes the account.
    @inline(__always)
    mutating func observeSpend(slot: UInt32, tenant: TenantID, amount: Int64, at now: Int64, key: IdempotencyKey,
                               sequence: UInt64) {
        reachAccountGuard(slot)
        let policy = anomalyPolicy(of: tenant)
        guard let verdict = guards.accounts[slot].velocity.observe(spent: amount, at: now, policy: policy) else { return }
        let froze = verdict.mode == .freeze
        if froze { accounts[slot].flags.insert(.frozen) }
        guard collectsAnomalyAlerts else { return }
        // Bounded: a host that never takes them keeps the newest notices' count, not a
        // growing list (the freeze itself is state and does not depend on them).
        if anomalyAlerts.count >= Self.anomalyAlertsKeptMax { anomalyAlerts.removeFirst(anomalyAlerts.count / 2) }
        let record = accounts[slot]
        anomalyAlerts.append(AnomalyAlert(
            account: AccountID(tenant: record.tenant, number: record.number), key: key, sequence: sequence,
            time: Timestamp(millisSinceEpoch: now), froze: froze, amount: Millicredits(verdict.amount),
            fastRate: Millicredits(verdict.fastRate), baselineRate: Millicredits(verdict.baselineRate),
            hourRate: Millicredits(verdict.hourRate), dayRate: Millicredits(verdict.dayRate),
            deviation: Millicredits(verdict.deviation), threshold: Millicredits(verdict.threshold),
            floor: Millicredits(verdict.floor), historyMinutes: verdict.historyMinutes))
    }

    /// After an admin unfreezes an account: its velocity starts a new episode without taking
    /// the current rate as normal, so spending that is still anomalous freezes it again
    /// within a few spends (docs/anomaly.md, "Unfreezing").
    mutating func resumeVelocity(_ slot: UInt32, at now: Int64) {
        guard Int(slot) < guards.accounts.count else { return }
        guards.accounts[slot].velocity.resume(at: now, trustingCurrentRate: false)
    }

    /// Takes the alerts made since the last call (output, not state).
    package mutating func takeAnomalyAlerts() -> [AnomalyAlert] {
        defer { anomalyAlerts.removeAll() }
        return anomalyAlerts
    }

    /// Whether alerts wait (`mutating` for the reason `hasDueNotes` is).
    package mutating func hasAnomalyAlerts() -> Bool { !anomalyAlerts.isEmpty }

    /// The current figures of an account's velocity (nil before its first spend).
    package func spendFigures(of id: AccountID, at now: Int64) -> SpendVelocity.Figures? {
        guard let slot = slot(of: id), Int(slot) < guards.accounts.count, guards.accounts[slot].velocity.hasObserved else { return nil }
        return guards.accounts[slot].velocity.figures(at: now)
    }

    /// The anomaly mode of a tenant (its own, else the default `alert`).
    package func anomalyMode(of tenant: TenantID) -> AnomalyMode {
        let index = tenantGuardIndex(tenant)
        return index == none ? .alert : guards.tenants[index].mode
    }

    mutating func setAnomalyMode(_ tenant: TenantID, _ mode: AnomalyMode) throws(LedgerError) {
        if tenants[tenant] == nil { throw .unknownTenant(tenant) }
        let index = mode == .alert ? tenantGuardIndex(tenant) : makeTenantGuard(tenant)
        guard index != none else { return }
        if guards.tenants[index].mode != .alert { guards.modedTenants -= 1 }
        guards.tenants[index].mode = mode
        if mode != .alert { guards.modedTenants += 1 }
    }
}

// MARK: - State encoding (version 5, after the rate limits)

extension Ledger {
    /// The tenants whose mode is not `alert`, in id order, with their modes.
    private var storedAnomalyModes: [(TenantID, AnomalyMode)] {
        guards.tenantOrder.compactMap { index in
            let mode = guards.tenants[index].mode
            return mode == .alert ? nil : (guards.owners[Int(index)], mode)
        }
    }

    /// Modes by tenant (u32 count, then tenant u64 and mode u8, ascending), then the
    /// velocities of the accounts that have spent (u32 count, then slot u32 and the
    /// 29-byte state, ascending).
    func encodeAnomalyState(into writer: inout ByteWriter) {
        let modes = storedAnomalyModes
        writer.write(UInt32(modes.count))
        for (tenant, mode) in modes { writer.write(tenant); writer.write(mode.rawValue) }
        var observed = 0
        guards.accounts.forEach { _, accountGuard in if accountGuard.velocity.hasObserved { observed += 1 } }
        writer.write(UInt32(observed))
        guards.accounts.forEach { slot, accountGuard in
            guard accountGuard.velocity.hasObserved else { return }
            writer.write(slot)
            accountGuard.velocity.encode(into: &writer)
        }
    }

    var encodedAnomalyByteCount: Int {
        var observed = 0
        guards.accounts.forEach { _, accountGuard in if accountGuard.velocity.hasObserved { observed += 1 } }
        return 8 + 9 * guards.modedTenants + observed * (4 + SpendVelocity.encodedSize)
    }

    /// Fed into the state digest only when something is set (every state before had nothing).
    func feedAnomalyState(into hasher: inout StableHasher, includingVelocities: Bool) {
        var observed = false
        if includingVelocities { guards.accounts.forEach { _, accountGuard in observed = observed || accountGuard.velocity.hasObserved } }
        guard guards.modedTenants > 0 || observed else { return }
        hasher.combine(UInt8(0x41))
        for (tenant, mode) in storedAnomalyModes { hasher.combine(tenant.rawValue); hasher.combine(mode.rawValue) }
        guard includingVelocities else { return }
        guards.accounts.forEach { slot, accountGuard in
            guard accountGuard.velocity.hasObserved else { return }
            hasher.combine(slot)
            accountGuard.velocity.feed(into: &hasher)
        }
    }
}

extension StateDecoder {
    mutating func decodeAnomalyState() throws(BinaryDecodingError) {
        var previousTenant: UInt64?
        for _ in 0 ..< (try count(max: tenantList.count, bytesEach: 9, "anomaly mode count")) {
            let at = reader.offset
            let tenant = try reader.read(UInt64.self)
            guard previousTenant.map({ $0 < tenant }) ?? true, tenants[TenantID(tenant)] != nil else {
                throw invalid(at, "anomaly mode of tenant \(tenant) (unknown, or out of order)")
            }
            previousTenant = tenant
            let modeAt = reader.offset
            guard let mode = AnomalyMode(rawValue: try reader.read(UInt8.self)), mode != .alert else {
                throw invalid(modeAt, "anomaly mode")
            }
            let index = Ledger.makeTenantGuard(TenantID(tenant), tenants: &tenants, guards: &guards)
            guards.tenants[index].mode = mode
            guards.modedTenants += 1
        }
        var previousSlot: UInt32?
        for _ in 0 ..< (try count(max: accounts.count, bytesEach: 4 + SpendVelocity.encodedSize, "spend velocity count")) {
            let at = reader.offset
            let slot = try reader.read(UInt32.self)
            guard Int(slot) < accounts.count, previousSlot.map({ $0 < slot }) ?? true else {
                throw invalid(at, "spend velocity of account slot \(slot) (unknown, or out of order)")
            }
            previousSlot = slot
            let velocity = try SpendVelocity(decoding: &reader)
            guard velocity.hasObserved else { throw invalid(at + 4, "spend velocity of account slot \(slot) never observed") }
            while guards.accounts.count <= Int(slot) { _ = guards.accounts.append(AccountGuard()) }
            guards.accounts[slot].velocity = velocity
        }
    }
}
