extension Command {
    /// A stable hash of the command's content (not its key). A retry must have the same
    /// fingerprint as the original; a different one means the key was reused for another
    /// request, which the ledger rejects as a conflict.
    package var fingerprint: UInt64 {
        var hasher = StableHasher()
        action.feed(into: &hasher)
        return hasher.finish()
    }
}

extension Action {
    /// The fingerprint of `.debit(account, amount, scope: scope)`, from its parts (the
    /// batch path's debit fast path never materialises the action).
    @inline(__always)
    static func debitFingerprint(_ account: AccountID, _ amount: Millicredits, _ scope: ChargeScope) -> UInt64 {
        var hasher = StableHasher()
        feedDebit(account, amount, scope, into: &hasher)
        return hasher.finish()
    }

    @inline(__always)
    static func feedDebit(_ account: AccountID, _ amount: Millicredits, _ scope: ChargeScope, into hasher: inout StableHasher) {
        hasher.combine(UInt8(5)); account.feed(into: &hasher); hasher.combine(amount.rawValue)
        scope.feed(into: &hasher)
    }

    /// The fingerprint of `.chargeRouted(account, routed, scope: scope)`, from its parts:
    /// the request, not the candidates (see `RoutedCharge.request`).
    @inline(__always)
    static func routedChargeFingerprint(_ account: AccountID, request: UInt64, _ scope: ChargeScope) -> UInt64 {
        var hasher = StableHasher()
        hasher.combine(UInt8(22)); account.feed(into: &hasher); hasher.combine(request); scope.feed(into: &hasher)
        return hasher.finish()
    }

    func feed(into hasher: inout StableHasher) {
        switch self {
        case .openTenant(let tenant, let kind):
            hasher.combine(UInt8(1)); hasher.combine(tenant.rawValue)
            switch kind {
            case .individual: hasher.combine(UInt8(0))
            case .organisation(let departments):
                hasher.combine(UInt8(1)); hasher.combine(UInt64(departments.count))
                for department in departments { department.feed(into: &hasher) }
            }
        case .openDepartment(let tenant, let terms):
            hasher.combine(UInt8(2)); hasher.combine(tenant.rawValue); terms.feed(into: &hasher)
        case .openAccount(let account, let kind):
            hasher.combine(UInt8(3)); account.feed(into: &hasher)
            switch kind {
            case .standard(let overdraft): hasher.combine(UInt8(0)); hasher.combine(overdraft.rawValue)
            case .member(let department, let limit):
                hasher.combine(UInt8(1)); hasher.combine(department.rawValue); limit.feed(into: &hasher)
            }
        case .grant(let account, let terms):
            hasher.combine(UInt8(4)); account.feed(into: &hasher)
            hasher.combine(terms.kind.rawValue); hasher.combine(terms.amount.rawValue)
            hasher.combine(terms.effectiveAt != nil); hasher.combine(terms.effectiveAt?.millisSinceEpoch ?? 0)
            hasher.combine(terms.expiresAt.millisSinceEpoch); hasher.combine(terms.priority)
            hasher.combine(terms.costBasisNanoUSDPerCredit); terms.scope.feed(into: &hasher)
        case .debit(let account, let amount, let scope):
            Self.feedDebit(account, amount, scope, into: &hasher)
        case .reserve(let account, let amount, let timeout, let scope):
            hasher.combine(UInt8(6)); account.feed(into: &hasher); hasher.combine(amount.rawValue)
            hasher.combine(timeout); scope.feed(into: &hasher)
        case .settle(let hold, let actual):
            hasher.combine(UInt8(7)); hold.feed(into: &hasher); hasher.combine(actual.rawValue)
        case .release(let hold):
            hasher.combine(UInt8(8)); hold.feed(into: &hasher)
        case .timeOutHold(let hold):
            hasher.combine(UInt8(16)); hold.feed(into: &hasher)
        case .refund(let account, let debit, let amount):
            hasher.combine(UInt8(9)); account.feed(into: &hasher)
            hasher.combine(debit.high); hasher.combine(debit.low); hasher.combine(amount.rawValue)
        case .adjust(let account, let amount, let reason):
            hasher.combine(UInt8(10)); account.feed(into: &hasher); hasher.combine(amount.rawValue)
            hasher.combine(reason)
        case .freeze(let account):
            hasher.combine(UInt8(11)); account.feed(into: &hasher)
        case .unfreeze(let account):
            hasher.combine(UInt8(12)); account.feed(into: &hasher)
        case .setDepartmentAllocation(let tenant, let department, let cap):
            hasher.combine(UInt8(13)); hasher.combine(tenant.rawValue); hasher.combine(department.rawValue)
            cap.feed(into: &hasher)
        case .setMemberLimit(let account, let cap):
            hasher.combine(UInt8(14)); account.feed(into: &hasher); cap.feed(into: &hasher)
        case .startPeriod(let tenant):
            hasher.combine(UInt8(15)); hasher.combine(tenant.rawValue)
        case .charge(let account, let usage, let scope):
            hasher.combine(UInt8(17)); account.feed(into: &hasher); usage.feed(into: &hasher); scope.feed(into: &hasher)
        case .settleCharge(let hold, let usage):
            hasher.combine(UInt8(21)); hold.feed(into: &hasher); usage.feed(into: &hasher)
        case .registerKey(let account, let registration):
            hasher.combine(UInt8(18)); account.feed(into: &hasher)
            hasher.combine(registration.provider); hasher.combine(registration.fingerprint)
            hasher.combine(UInt64(registration.sealed.count))
            for byte in registration.sealed { hasher.combine(byte) }
        case .removeKey(let account, let provider):
            hasher.combine(UInt8(19)); account.feed(into: &hasher); hasher.combine(provider)
        case .setKeyPolicy(let tenant, let policy):
            hasher.combine(UInt8(20)); hasher.combine(tenant.rawValue); hasher.combine(policy.rawValue)
        case .chargeRouted(let account, let routed, let scope):
            // The request, not the candidates (see `RoutedCharge.request`).
            hasher.combine(UInt8(22)); account.feed(into: &hasher); hasher.combine(routed.request); scope.feed(into: &hasher)
        case .subscribe, .changePlan, .cancelSubscription, .resumeSubscription, .renewSubscription,
             .lapseSubscription, .expireGrants, .forfeitGrants, .setAutoRefill, .completeRefill, .failRefill:
            feedScheduling(into: &hasher)
        case .grantRole(let client, let role):
            hasher.combine(UInt8(40)); hasher.combine(client.rawValue); role.feed(into: &hasher)
        case .revokeRole(let client, let role):
            hasher.combine(UInt8(41)); hasher.combine(client.rawValue); role.feed(into: &hasher)
        case .setRateLimits(let tenant, let limits):
            hasher.combine(UInt8(42)); hasher.combine(tenant.rawValue)
            hasher.combine(limits != nil); limits?.feed(into: &hasher)
        case .setPlanRateLimits(let plan, let limits):
            hasher.combine(UInt8(43)); hasher.combine(plan)
            hasher.combine(limits != nil); limits?.feed(into: &hasher)
        case .setAnomalyMode(let tenant, let mode):
            hasher.combine(UInt8(44)); hasher.combine(tenant.rawValue); hasher.combine(mode.rawValue)
        }
    }
}

extension Principal {
    func feed(into hasher: inout StableHasher) {
        switch self {
        case .system: hasher.combine(UInt8(0))
        case .account(let account): hasher.combine(UInt8(1)); account.feed(into: &hasher)
        case .client(let client): hasher.combine(UInt8(2)); hasher.combine(client.rawValue)
        }
    }
}

extension Role {
    func feed(into hasher: inout StableHasher) {
        let key = orderKey
        hasher.combine(key.kind); hasher.combine(key.tenant); hasher.combine(key.detail)
    }
}

extension UsageCharge {
    func feed(into hasher: inout StableHasher) {
        hasher.combine(modelName.text); hasher.combine(providerName.text); hasher.combine(units)
        hasher.combine(providerCostNanoUSD); hasher.combine(listPrice.rawValue); hasher.combine(keySource.rawValue)
    }
}

extension AccountID {
    func feed(into hasher: inout StableHasher) { hasher.combine(tenant.rawValue); hasher.combine(number) }
}

extension HoldID {
    func feed(into hasher: inout StableHasher) { hasher.combine(tenant.rawValue); hasher.combine(number) }
}

extension ChargeScope {
    func feed(into hasher: inout StableHasher) { hasher.combine(provider); hasher.combine(model) }
}

extension DepartmentTerms {
    func feed(into hasher: inout StableHasher) {
        hasher.combine(id.rawValue); hasher.combine(costCentre); allocationPerPeriod.feed(into: &hasher)
    }
}

extension Optional where Wrapped == Millicredits {
    func feed(into hasher: inout StableHasher) {
        hasher.combine(self != nil); hasher.combine(self?.rawValue ?? 0)
    }
}
