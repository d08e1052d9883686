/// Provider keys ("bring your own key") and organisations' key policies.
///
/// The ledger holds, per account and provider, what the host registered: the provider,
/// a fingerprint to show, and the key sealed by the host. It never sees a key in the clear.
/// A user's key lives on the user's standard or member account; an organisation's key on
/// its pool. Which keys may pay for a call follows the organisation's `KeyPolicy` at the
/// time of the call (docs/pricing.md).
struct KeyOwner: Hashable, Sendable {
    var slot: UInt32
    var provider: String
}

extension Ledger {
    mutating func registerKey(_ id: AccountID, _ registration: KeyRegistration) throws(LedgerError) {
        guard !registration.provider.isEmpty, !registration.fingerprint.isEmpty, !registration.sealed.isEmpty,
              registration.sealed.count <= LedgerLimits.sealedKeyBytesMax else {
            throw .invalidInput(.keyRegistrationIncomplete)
        }
        try checkText(registration.provider)
        try checkText(registration.fingerprint)
        let located = try locate(id)
        draft.note(located)
        if located.member != nil {
            let organisation = organisations[Int(located.organisation)]
            switch organisation.keyPolicy {
            case .itControlled:
                throw .notAllowed(id, .keysManagedByOrganisation)
            case .hybrid where providerKeys[KeyOwner(slot: organisation.pool, provider: registration.provider)] != nil:
                throw .notAllowed(id, .providerCoveredByOrganisation)
            case .hybrid, .userControlled:
                break
            }
        }
        let owner = KeyOwner(slot: located.slot, provider: registration.provider)
        if providerKeys[owner] == nil && keyCount(of: located.slot) >= LedgerLimits.keysPerAccountMax {
            throw .limitReached(.keysPerAccount)
        }
        providerKeys[owner] = registration
        keyIndex[located.slot, default: []].insert(registration.provider)
        accounts[located.slot].flags.insert(.hasKeys)
        keyRegistrationCount &+= 1
        draft.reason = "\(registration.provider) key \(registration.fingerprint)"
    }

    mutating func removeKey(_ id: AccountID, provider: String) throws(LedgerError) {
        let located = try locate(id)
        draft.note(located)
        guard let removed = providerKeys.removeValue(forKey: KeyOwner(slot: located.slot, provider: provider)) else {
            throw .notAllowed(id, .noKeyForProvider)
        }
        keyIndex[located.slot]?.remove(provider)
        if keyIndex[located.slot]?.isEmpty == true {
            keyIndex[located.slot] = nil
            accounts[located.slot].flags.remove(.hasKeys)
        }
        draft.reason = "\(removed.provider) key \(removed.fingerprint)"
    }

    mutating func setKeyPolicy(_ id: TenantID, _ policy: KeyPolicy) throws(LedgerError) {
        guard let slot = tenants[id] else { throw .unknownTenant(id) }
        guard slot.organisation != none else {
            throw .notAllowed(AccountID(tenant: id, number: 0), .keyPoliciesAreForOrganisations)
        }
        organisations[Int(slot.organisation)].keyPolicy = policy
        draft.reason = "key policy \(policy)"
    }

    private func keyCount(of slot: UInt32) -> Int { keyIndex[slot]?.count ?? 0 }

    /// Rebuilds `keyIndex` and the accounts' `hasKeys` flags from `providerKeys` (after
    /// decoding a state, whose flags never carry it).
    mutating func rebuildKeyIndex() {
        keyIndex = [:]
        for owner in providerKeys.keys {
            keyIndex[owner.slot, default: []].insert(owner.provider)
            accounts[owner.slot].flags.insert(.hasKeys)
        }
    }

    /// Whether a key of `source` may pay for a call of `located` on `provider` now.
    /// Inlined: a charge calls it from a mutating context, where an outlined non-mutating
    /// call would be handed a copy of the whole ledger.
    @inline(__always)
    func keyUsable(_ source: KeySource, by located: Located, provider: String) -> Bool {
        switch source {
        case .system:
            return true
        case .organisationKey:
            guard located.organisation != none else { return false }
            return providerKeys[KeyOwner(slot: organisations[Int(located.organisation)].pool, provider: provider)] != nil
        case .userKey:
            // A pool's own key is the organisation's key, not a user's.
            if accounts[located.slot].flags.contains(.pool) { return false }
            guard providerKeys[KeyOwner(slot: located.slot, provider: provider)] != nil else { return false }
            guard located.member != nil else { return true }
            let organisation = organisations[Int(located.organisation)]
            switch organisation.keyPolicy {
            case .itControlled: return false
            case .hybrid: return providerKeys[KeyOwner(slot: organisation.pool, provider: provider)] == nil
            case .userControlled: return true
            }
        }
    }

    /// Whether a key is registered on the account or its organisation's pool (cheap: no
    /// provider names are hashed).
    @inline(__always)
    func mayHaveKeys(_ located: Located) -> Bool {
        !keyIndex.isEmpty && (accounts[located.slot].flags.contains(.hasKeys)
            || (located.organisation != none && accounts[organisations[Int(located.organisation)].pool].flags.contains(.hasKeys)))
    }

    /// The key that pays for a call of `located` on `provider` under the current policy,
    /// in order of preference: IT-controlled and hybrid prefer the organisation's key,
    /// user-controlled the member's own; an individual uses its own key.
    @inline(__always)
    func preferredKey(for located: Located, provider: String) -> (source: KeySource, registration: KeyRegistration?) {
        // Most accounts (and their organisations) have no key: answer without hashing names.
        guard mayHaveKeys(located) else { return (.system, nil) }
        let ownFirst = located.member == nil || organisations[Int(located.organisation)].keyPolicy == .userControlled
        let order: [KeySource] = ownFirst ? [.userKey, .organisationKey] : [.organisationKey, .userKey]
        for source in order where keyUsable(source, by: located, provider: provider) {
            let slot = source == .userKey ? located.slot : organisations[Int(located.organisation)].pool
            return (source, providerKeys[KeyOwner(slot: slot, provider: provider)])
        }
        return (.system, nil)
    }

    // MARK: Queries

    /// The key that would pay for `account`'s next call on `provider` (with its sealed
    /// bytes, for the host to unseal), or `.system` and nil; nil for an unknown account.
    package func keyForCall(by account: AccountID, provider: String) -> (source: KeySource, registration: KeyRegistration?)? {
        guard let located = try? locate(account) else { return nil }
        return preferredKey(for: located, provider: provider)
    }

    /// Every provider a key may pay for on `account`'s calls now, with the key that would:
    /// what routing needs to prefer key-covered models. Empty for an unknown account.
    package func usableKeys(for account: AccountID) -> [String: KeySource] {
        guard let located = try? locate(account) else { return [:] }
        var providers = keyIndex[located.slot] ?? []
        if located.organisation != none { providers.formUnion(keyIndex[organisations[Int(located.organisation)].pool] ?? []) }
        var usable: [String: KeySource] = [:]
        for provider in providers {
            let source = preferredKey(for: located, provider: provider).source
            if source != .system { usable[provider] = source }
        }
        return usable
    }

    /// The tenants with a key on any of their accounts.
    package var tenantsWithKeys: [TenantID] {
        Set(keyIndex.keys.map { accounts[$0].tenant }).sorted()
    }

    /// The keys registered on `account` itself (a pool's are the organisation's), by provider.
    package func registeredKeys(of account: AccountID) -> [KeyRegistration] {
        guard let slot = slot(of: account) else { return [] }
        return providerKeys.filter { $0.key.slot == slot }.map(\.value).sorted { $0.provider < $1.provider }
    }

    /// An organisation's key policy; nil for an individual or an unknown tenant.
    package func keyPolicy(of tenant: TenantID) -> KeyPolicy? {
        guard let slot = tenants[tenant], slot.organisation != none else { return nil }
        return organisations[Int(slot.organisation)].keyPolicy
    }
}
