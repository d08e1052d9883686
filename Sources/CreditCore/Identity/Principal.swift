/// Who asks: every command carries its principal, and the ledger checks the principal's
/// roles before it applies the command (docs/security.md, "Who may do what").

/// A client of the engine that holds roles: a person, an API key or a service. Chosen by
/// the host (the HTTP service maps each bearer token to one).
public struct ClientID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    @inlinable public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: ClientID, rhs: ClientID) -> Bool { lhs.rawValue < rhs.rawValue }
    /// "c7"
    public var description: String { "c\(rawValue)" }
}

/// The principal of a command or a query.
public enum Principal: Hashable, Sendable, CustomStringConvertible {
    /// The engine itself and the embedding host's own trusted code: the scheduler's renewals,
    /// expiries and hold time-outs, migrations, a host that does its own authorization. May
    /// do everything. No role grants it, and the HTTP service never acts as it.
    case system
    /// The holder of an account acting on it: the member role on that account, implicitly.
    case account(AccountID)
    /// A client acting through the roles granted to it (`Action.grantRole`).
    case client(ClientID)

    /// "system", "t42/a0", "c7"
    public var description: String {
        switch self {
        case .system: "system"
        case .account(let account): account.description
        case .client(let client): client.description
        }
    }
}

/// A role a client holds (docs/security.md has the table of what each may do). Tenant roles
/// name their tenant, and act only within it.
public enum Role: Hashable, Sendable, CustomStringConvertible {
    /// Operates the platform: every command but spending and the scheduler's own.
    case platformAdmin
    /// Reads everything, changes nothing.
    case platformAuditor
    /// IT of an organisation: its structure, limits, keys, key policy and roles.
    case organisationAdmin(TenantID)
    /// Manages the members of one department: their limits, freezing them.
    case departmentManager(TenantID, DepartmentID)
    /// Acts on one account as its holder (`Principal.account` is this role, implicitly).
    case member(AccountID)
    /// Reads one tenant, changes nothing.
    case auditor(TenantID)
    /// Meters usage: charges, reserves, settles and refunds for the tenant; grants nothing.
    case meteringService(TenantID)
    /// Sells credits: purchases, refills and subscriptions of the tenant.
    case billingService(TenantID)

    /// The tenant the role acts in; nil for the platform roles.
    public var tenant: TenantID? {
        switch self {
        case .platformAdmin, .platformAuditor: nil
        case .organisationAdmin(let tenant), .departmentManager(let tenant, _), .auditor(let tenant),
             .meteringService(let tenant), .billingService(let tenant): tenant
        case .member(let account): account.tenant
        }
    }

    /// The kind of role, without its scope.
    public var kind: Kind {
        switch self {
        case .platformAdmin: .platformAdmin
        case .platformAuditor: .platformAuditor
        case .organisationAdmin: .organisationAdmin
        case .departmentManager: .departmentManager
        case .member: .member
        case .auditor: .auditor
        case .meteringService: .meteringService
        case .billingService: .billingService
        }
    }

    /// Kinds of role; raw values are stored in the log and snapshots.
    public enum Kind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        case platformAdmin = 1, platformAuditor, organisationAdmin, departmentManager, member, auditor,
             meteringService, billingService

        /// snake_case, as docs/security.md's table names it.
        public var description: String {
            switch self {
            case .platformAdmin: "platform_admin"
            case .platformAuditor: "platform_auditor"
            case .organisationAdmin: "organisation_admin"
            case .departmentManager: "department_manager"
            case .member: "member"
            case .auditor: "auditor"
            case .meteringService: "metering_service"
            case .billingService: "billing_service"
            }
        }
    }

    public var description: String {
        switch self {
        case .platformAdmin, .platformAuditor: kind.description
        case .organisationAdmin(let tenant), .auditor(let tenant), .meteringService(let tenant),
             .billingService(let tenant): "\(kind)(\(tenant))"
        case .departmentManager(let tenant, let department): "\(kind)(\(tenant)/\(department))"
        case .member(let account): "\(kind)(\(account))"
        }
    }
}

/// What a command or a query needs: each command kind needs exactly one permission
/// (`Action.permission`), and each role holds a fixed set of them (`Permission.holders`).
/// A refusal names the permission that was missing (`LedgerError.forbidden`). Raw values
/// are stored with remembered outcomes: never reuse one.
public enum Permission: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Open a tenant.
    case openTenants = 1
    /// Departments, member accounts, department allocations, the key policy, a new period.
    case manageOrganisation = 2
    /// A member's limit per period.
    case setMemberLimits = 3
    case freeze = 4
    case unfreeze = 5
    /// Add credits (a purchase, a contract, a promotion).
    case grantCredits = 6
    /// An administrator's correction, up or down.
    case adjust = 7
    /// Debit, charge, reserve, settle and release: spending credits.
    case spend = 8
    case refund = 9
    /// Register and remove provider keys.
    case manageKeys = 10
    /// Subscriptions, plan changes, auto-refill and refill payments.
    case manageBilling = 11
    /// The scheduler's own steps (renewals, lapses, expiries, forfeits, hold time-outs):
    /// `Principal.system` only.
    case runSchedule = 12
    /// Grant and revoke roles.
    case manageRoles = 13
    /// Rate limits and the anomaly guard's policy.
    case manageGuards = 14
    /// Queries: balances, holds, an organisation's pool and periods.
    case readBalances = 32
    /// Queries: statements, entries, remembered outcomes.
    case readStatements = 33
    /// Queries: the provider keys registered (fingerprints) and usable.
    case readKeys = 34
    /// Queries: the sealed key to call a provider with.
    case useKeys = 35
    /// Queries: subscriptions and auto-refill.
    case readBilling = 36
    /// Queries: roles, rate limits, the anomaly guard's state.
    case readGovernance = 37

    /// snake_case, as docs/security.md's table names it.
    public var description: String {
        switch self {
        case .openTenants: "open_tenants"
        case .manageOrganisation: "manage_organisation"
        case .setMemberLimits: "set_member_limits"
        case .freeze: "freeze"
        case .unfreeze: "unfreeze"
        case .grantCredits: "grant_credits"
        case .adjust: "adjust"
        case .spend: "spend"
        case .refund: "refund"
        case .manageKeys: "manage_keys"
        case .manageBilling: "manage_billing"
        case .runSchedule: "run_schedule"
        case .manageRoles: "manage_roles"
        case .manageGuards: "manage_guards"
        case .readBalances: "read_balances"
        case .readStatements: "read_statements"
        case .readKeys: "read_keys"
        case .useKeys: "use_keys"
        case .readBilling: "read_billing"
        case .readGovernance: "read_governance"
        }
    }

    /// Whether it is a query's (reading) permission rather than a command's.
    public var isQuery: Bool { rawValue >= Permission.readBalances.rawValue }

    /// The role kinds that hold it (within their scope: a tenant role in its tenant, a
    /// department manager over its department's members, a member over its account).
    /// This is docs/security.md's table; a test reads that table and checks every cell
    /// against the ledger.
    public var holders: Set<Role.Kind> { Set(Role.Kind.allCases.filter { isHeld(by: $0) }) }

    /// Whether role kind `kind` holds it: one bit test (the check runs on every command a
    /// client sends).
    @inline(__always)
    public func isHeld(by kind: Role.Kind) -> Bool { holderBits & (1 << UInt16(kind.rawValue)) != 0 }

    /// `holders` as bits, bit n for the kind of raw value n.
    @usableFromInline var holderBits: UInt16 {
        let pa: UInt16 = 1 << 1, pau: UInt16 = 1 << 2, oa: UInt16 = 1 << 3, dm: UInt16 = 1 << 4, member: UInt16 = 1 << 5
        let auditor: UInt16 = 1 << 6, metering: UInt16 = 1 << 7, billing: UInt16 = 1 << 8
        switch self {
        case .openTenants: return pa
        case .manageOrganisation: return pa | oa
        case .setMemberLimits, .freeze: return pa | oa | dm
        case .unfreeze: return pa | oa
        case .grantCredits: return pa | billing
        case .adjust: return pa
        case .spend: return member | metering
        case .refund: return pa | metering
        case .manageKeys: return pa | oa | member
        case .manageBilling: return pa | billing
        case .runSchedule: return 0
        case .manageRoles: return pa | oa
        case .manageGuards: return pa | oa
        case .readBalances: return pa | pau | oa | dm | member | auditor | metering | billing
        case .readStatements: return pa | pau | oa | dm | member | auditor
        case .readKeys: return pa | pau | oa | member | auditor | metering
        case .useKeys: return metering
        case .readBilling: return pa | pau | oa | member | auditor | billing
        case .readGovernance: return pa | pau | oa | auditor
        }
    }
}

extension TenantID {
    /// The tenant of commands that concern the whole platform (granting or revoking a
    /// platform role): the engine applies them on every shard. No tenant may be opened
    /// with this id.
    public static let platform = TenantID(UInt64.max)
}
