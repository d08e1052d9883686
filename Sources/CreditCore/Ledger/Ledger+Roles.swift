/// Who may do what: the roles clients hold, and the check every command passes before its
/// handler runs (docs/security.md). Roles are ledger state: granted and revoked by commands,
/// so they are logged, snapshotted and replayed like balances.

/// One role held by one client.
struct RoleGrant: Equatable, Sendable {
    var client: ClientID
    var role: Role
}

/// The roles of a shard's clients. Tenant roles live in the shard of their tenant; platform
/// roles in every shard (the engine applies a platform command on each). A `FlatMap` keyed by
/// (client, role): one probe with the core's stable hash per check, on every command a
/// client sends.
struct RoleTable: Sendable {
    /// A role grant as plain words: the client, the role's tenant (0 for a platform role),
    /// and its kind (top byte) with its department or account number.
    struct Key: FlatMapKey {
        var client: UInt64
        var tenant: UInt64
        var kindDetail: UInt64

        init(_ client: ClientID, _ role: Role) {
            let order = role.orderKey
            self.client = client.rawValue
            tenant = order.tenant
            kindDetail = UInt64(order.kind) << 56 | order.detail
        }

        private init(client: UInt64, tenant: UInt64, kindDetail: UInt64) {
            self.client = client
            self.tenant = tenant
            self.kindDetail = kindDetail
        }

        var stableHash: UInt64 { StableHasher.mix(client ^ StableHasher.mix(tenant ^ StableHasher.mix(kindDetail))) }
        static var placeholder: Key { Key(client: 0, tenant: 0, kindDetail: 0) }

        var grant: RoleGrant {
            let tenant = TenantID(self.tenant)
            let detail = kindDetail & (1 << 56 - 1)
            let role: Role = switch Role.Kind(rawValue: UInt8(kindDetail >> 56))! {
            case .platformAdmin: .platformAdmin
            case .platformAuditor: .platformAuditor
            case .organisationAdmin: .organisationAdmin(tenant)
            case .departmentManager: .departmentManager(tenant, DepartmentID(UInt16(detail)))
            case .member: .member(AccountID(tenant: tenant, number: UInt32(detail)))
            case .auditor: .auditor(tenant)
            case .meteringService: .meteringService(tenant)
            case .billingService: .billingService(tenant)
            }
            return RoleGrant(client: ClientID(client), role: role)
        }
    }

    /// A present entry (the map is a set).
    struct Present: FlatMapValue {
        static var placeholder: Present { Present() }
    }

    private var map = FlatMap<Key, Present>()

    var isEmpty: Bool { map.isEmpty }

    /// Where the probe for a grant starts, for prefetching.
    func addressHint(_ client: ClientID, _ role: Role) -> UnsafeRawPointer { map.addressHint(Key(client, role)) }

    @inline(__always)
    func holds(_ client: ClientID, _ role: Role) -> Bool {
        !map.isEmpty && map[Key(client, role)] != nil
    }

    /// Whether anything changed.
    @discardableResult
    mutating func insert(_ client: ClientID, _ role: Role) -> Bool {
        let key = Key(client, role)
        if map[key] != nil { return false }
        map[key] = Present()
        return true
    }

    @discardableResult
    mutating func remove(_ client: ClientID, _ role: Role) -> Bool {
        let key = Key(client, role)
        if map[key] == nil { return false }
        map[key] = nil
        return true
    }

    /// Every grant, in no meaningful order.
    var grants: [RoleGrant] {
        var grants: [RoleGrant] = []
        map.forEach { key, _ in grants.append(key.grant) }
        return grants
    }

    /// Every grant in a stable order (client, then role), for snapshots, the digest and queries.
    var sorted: [RoleGrant] {
        grants.sorted { ($0.client, $0.role.orderKey) < ($1.client, $1.role.orderKey) }
    }

    /// The roles of one client, in a stable order.
    func roles(of client: ClientID) -> [Role] {
        grants.filter { $0.client == client }.map(\.role).sorted { $0.orderKey < $1.orderKey }
    }
}

extension Role {
    /// Kind, tenant, then the department or account number: a total order for snapshots.
    var orderKey: OrderKey {
        switch self {
        case .platformAdmin, .platformAuditor: OrderKey(kind: kind.rawValue, tenant: 0, detail: 0)
        case .organisationAdmin(let tenant), .auditor(let tenant), .meteringService(let tenant), .billingService(let tenant):
            OrderKey(kind: kind.rawValue, tenant: tenant.rawValue, detail: 0)
        case .departmentManager(let tenant, let department):
            OrderKey(kind: kind.rawValue, tenant: tenant.rawValue, detail: UInt64(department.rawValue))
        case .member(let account): OrderKey(kind: kind.rawValue, tenant: account.tenant.rawValue, detail: UInt64(account.number))
        }
    }

    struct OrderKey: Comparable {
        var kind: UInt8
        var tenant: UInt64
        var detail: UInt64
        static func < (lhs: OrderKey, rhs: OrderKey) -> Bool {
            (lhs.kind, lhs.tenant, lhs.detail) < (rhs.kind, rhs.tenant, rhs.detail)
        }
    }
}

/// What a command acts on, for the scope of the roles that may allow it.
package struct PermissionTarget: Sendable {
    package var tenant: TenantID
    /// The account acted on (for a hold, the account that reserved it): a member's or
    /// department manager's scope.
    package var account: AccountID?

    package init(tenant: TenantID, account: AccountID? = nil) {
        self.tenant = tenant
        self.account = account
    }
}

extension Ledger {
    // MARK: The check

    /// Throws `forbidden` unless `principal` may run `action` (the table is
    /// `Permission.holders`). `.system` may do everything; the check is skipped for it.
    ///
    /// `mutating` although it changes nothing: the handlers call it on the ledger they hold
    /// `inout`, and a non-mutating call there made the compiler copy the whole ledger
    /// (1,112 bytes) for every command, whoever sent it. (The same for `authorizeSpend`.)
    @inline(__always)
    mutating func authorize(_ principal: Principal, _ action: Action) throws(LedgerError) {
        if case .system = principal { return }
        try authorizeChecked(principal, action)
    }

    /// `authorize` of a debit or a charge of `account`, from plain values (the hot path).
    @inline(__always)
    mutating func authorizeSpend(_ principal: Principal, _ account: AccountID) throws(LedgerError) {
        switch principal {
        case .system: return
        case .account(let own) where own == account: return
        case .client(let client):
            // The tenant's metering memo, read here in line: a call into the role check would
            // copy the whole ledger to pass it (it is borrowed from an inout access).
            let index = tenantGuardIndex(account.tenant)
            if index != none, guards.tenants[index].remembers(meteringClient: client) { return }
            try authorize(principal, .spend, PermissionTarget(tenant: account.tenant, account: account))
        default: try authorize(principal, .spend, PermissionTarget(tenant: account.tenant, account: account))
        }
    }

    private func authorizeChecked(_ principal: Principal, _ action: Action) throws(LedgerError) {
        let permission = action.permission
        let target = permissionTarget(of: action)
        try authorize(principal, permission, target)
        if permission == .manageRoles, case .client(let client) = principal {
            // An organisation admin (not a platform admin) grants only its tenant's people
            // roles: never a platform role nor a service's.
            let role: Role
            switch action {
            case .grantRole(_, let named), .revokeRole(_, let named): role = named
            default: return
            }
            if roles.holds(client, .platformAdmin) { return }
            switch role.kind {
            case .organisationAdmin, .departmentManager, .member, .auditor: return
            case .platformAdmin, .platformAuditor, .meteringService, .billingService: throw .forbidden(.manageRoles)
            }
        }
    }

    /// Throws `forbidden(permission)` unless a role `principal` holds grants `permission`
    /// over `target`. A query's check (the engine's) goes through here too.
    func authorize(_ principal: Principal, _ permission: Permission, _ target: PermissionTarget) throws(LedgerError) {
        if permits(principal, permission, target) { return }
        throw .forbidden(permission)
    }

    /// Whether `principal` holds `permission` over `target`.
    package func permits(_ principal: Principal, _ permission: Permission, _ target: PermissionTarget) -> Bool {
        let client: ClientID
        switch principal {
        case .system:
            return true
        case .account(let account):
            // An account's holder is the member of that account, and nothing else.
            return permission.isHeld(by: .member) && target.account == account
        case .client(let id):
            client = id
        }
        if roles.isEmpty { return false }
        // The metering service first: the kind every spend a client sends is checked for.
        if permission.isHeld(by: .meteringService) && holdsRole(client, .meteringService, over: target) { return true }
        for kind in Role.Kind.allCases where kind != .meteringService && permission.isHeld(by: kind) {
            if holdsRole(client, kind, over: target) { return true }
        }
        return false
    }

    /// Whether `client` holds a role of `kind` whose scope covers `target`.
    private func holdsRole(_ client: ClientID, _ kind: Role.Kind, over target: PermissionTarget) -> Bool {
        let tenant = target.tenant
        switch kind {
        case .platformAdmin: return roles.holds(client, .platformAdmin)
        case .platformAuditor: return roles.holds(client, .platformAuditor)
        case .organisationAdmin: return tenant != .platform && roles.holds(client, .organisationAdmin(tenant))
        case .auditor: return tenant != .platform && roles.holds(client, .auditor(tenant))
        case .meteringService:
            guard tenant != .platform else { return false }
            // The memo in the tenant's guard line first: the one line a client's spend reads.
            let index = tenantGuardIndex(tenant)
            if index != none, guards.tenants[index].remembers(meteringClient: client) { return true }
            return roles.holds(client, .meteringService(tenant))
        case .billingService: return tenant != .platform && roles.holds(client, .billingService(tenant))
        case .member:
            guard let account = target.account else { return false }
            return roles.holds(client, .member(account))
        case .departmentManager:
            guard let account = target.account, let department = department(ofMember: account) else { return false }
            return roles.holds(client, .departmentManager(tenant, department))
        }
    }

    /// The department of a member account; nil for any other account.
    func department(ofMember id: AccountID) -> DepartmentID? {
        guard let slot = slot(of: id), accounts[slot].flags.contains(.member),
              let tenant = tenants[id.tenant], tenant.organisation != none else { return nil }
        let organisation = organisations[Int(tenant.organisation)]
        let member = organisation.members[Int(accounts[slot].link)]
        return organisation.departments[member.department].id
    }

    /// The tenant and account an action acts on. A hold's account is the one that reserved
    /// it (the member, not the pool); an unknown hold has none, so only tenant-wide roles
    /// reach it (and the handler then refuses it as unknown).
    private func permissionTarget(of action: Action) -> PermissionTarget {
        switch action {
        case .settle(let hold, _), .release(let hold), .timeOutHold(let hold), .settleCharge(let hold, _):
            let reserver = holds[hold.number].map { accounts[$0.principal] }
            return PermissionTarget(tenant: hold.tenant,
                                    account: reserver.map { AccountID(tenant: $0.tenant, number: $0.number) })
        case .grantRole(_, let role), .revokeRole(_, let role):
            var account: AccountID?
            if case .member(let named) = role { account = named }
            return PermissionTarget(tenant: role.tenant ?? .platform, account: account)
        default:
            return PermissionTarget(tenant: action.tenant, account: action.account)
        }
    }

    // MARK: Handlers

    mutating func grantRole(_ client: ClientID, _ role: Role) throws(LedgerError) {
        try checkRoleScope(role)
        if roles.insert(client, role) { draft.amount = 1 }
        if case .meteringService(let tenant) = role { Self.noteMeteringClient(client, of: tenant, tenants: &tenants, guards: &guards) }
    }

    mutating func revokeRole(_ client: ClientID, _ role: Role) throws(LedgerError) {
        if roles.remove(client, role) { draft.amount = 1 }
        guard case .meteringService(let tenant) = role else { return }
        let index = tenantGuardIndex(tenant)
        guard index != none, guards.tenants[index].remembers(meteringClient: client) else { return }
        // Another holder, if any, takes the memo (rare: a scan of the role table).
        if let other = roles.grants.first(where: { $0.role == role }) {
            guards.tenants[index].meteringClient = other.client
        } else {
            guards.tenants[index].hasMeteringClient = false
            guards.tenants[index].meteringClient = ClientID(0)
        }
    }

    /// Makes `client` the tenant's metering memo (`TenantGuard.meteringClient`).
    static func noteMeteringClient(_ client: ClientID, of tenant: TenantID, tenants: inout TenantTable, guards: inout GuardTable) {
        let index = makeTenantGuard(tenant, tenants: &tenants, guards: &guards)
        guards.tenants[index].hasMeteringClient = true
        guards.tenants[index].meteringClient = client
    }

    /// A tenant role names a tenant that exists (and its department or member account).
    private func checkRoleScope(_ role: Role) throws(LedgerError) {
        switch role {
        case .platformAdmin, .platformAuditor: return
        case .organisationAdmin(let tenant), .auditor(let tenant), .meteringService(let tenant), .billingService(let tenant):
            if tenants[tenant] == nil { throw .unknownTenant(tenant) }
        case .departmentManager(let tenant, let department):
            let organisation = try organisationIndex(tenant)
            if organisations[organisation].departmentIndex(department) == nil { throw .unknownDepartment(tenant, department) }
        case .member(let account):
            if slot(of: account) == nil { throw .unknownAccount(account) }
        }
    }

    // MARK: Queries

    /// The roles `client` holds in this shard (its tenants' roles and the platform's).
    package func roles(of client: ClientID) -> [Role] { roles.roles(of: client) }
}

extension Action {
    /// The permission the command needs (docs/security.md).
    public var permission: Permission {
        switch self {
        case .openTenant: .openTenants
        case .openDepartment, .openAccount, .setDepartmentAllocation, .setKeyPolicy, .startPeriod: .manageOrganisation
        case .setMemberLimit: .setMemberLimits
        case .freeze: .freeze
        case .unfreeze: .unfreeze
        case .grant: .grantCredits
        case .adjust: .adjust
        case .debit, .reserve, .settle, .settleCharge, .release, .charge, .chargeRouted: .spend
        case .refund: .refund
        case .registerKey, .removeKey: .manageKeys
        case .subscribe, .changePlan, .cancelSubscription, .resumeSubscription, .setAutoRefill, .completeRefill,
             .failRefill: .manageBilling
        case .timeOutHold, .renewSubscription, .lapseSubscription, .expireGrants, .forfeitGrants: .runSchedule
        case .grantRole, .revokeRole: .manageRoles
        case .setRateLimits, .setPlanRateLimits, .setAnomalyMode: .manageGuards
        }
    }

    /// The account the command names, if it names one (not a hold's).
    var account: AccountID? {
        switch self {
        case .openAccount(let account, _), .grant(let account, _), .debit(let account, _, _),
             .reserve(let account, _, _, _), .refund(let account, _, _), .adjust(let account, _, _),
             .freeze(let account), .unfreeze(let account), .setMemberLimit(let account, _),
             .charge(let account, _, _), .registerKey(let account, _), .removeKey(let account, _),
             .chargeRouted(let account, _, _), .subscribe(let account, _), .changePlan(let account, _),
             .cancelSubscription(let account), .resumeSubscription(let account), .renewSubscription(let account, _, _),
             .lapseSubscription(let account, _, _, _), .expireGrants(let account, _), .forfeitGrants(let account),
             .setAutoRefill(let account, _), .completeRefill(let account, _, _), .failRefill(let account, _, _):
            account
        case .openTenant, .openDepartment, .setDepartmentAllocation, .startPeriod, .setKeyPolicy, .settle, .release,
             .timeOutHold, .settleCharge, .grantRole, .revokeRole, .setRateLimits, .setPlanRateLimits,
             .setAnomalyMode:
            nil
        }
    }
}
