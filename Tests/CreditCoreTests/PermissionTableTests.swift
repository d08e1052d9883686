import Foundation
import Testing
@_spi(Plumbing) @testable import CreditCore

/// The permission table of docs/security.md, read from the file and checked cell by cell
/// against the ledger: every command kind by every role (scoped to the command's target),
/// by the account holder, and by the system; every query permission likewise.
@Suite("roles and the permission table")
struct PermissionTableTests {
    // MARK: The table, as the document states it

    struct Row {
        var name: String
        var permission: String
        /// Role kind name → allowed.
        var cells: [String: Bool]
    }

    static let roleColumns = Role.Kind.allCases.map(\.description)

    static func table() throws -> [Row] {
        var parts = URL(fileURLWithPath: #filePath).pathComponents
        parts.removeLast(3) // Tests/CreditCoreTests/PermissionTableTests.swift
        let path = NSString.path(withComponents: parts + ["docs", "security.md"])
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let start = try #require(text.range(of: "<!-- permission-table:start -->"))
        let end = try #require(text.range(of: "<!-- permission-table:end -->"))
        let lines = text[start.upperBound ..< end.lowerBound].split(separator: "\n").map(String.init)
        let header = lines[0].split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(Array(header.dropFirst(2)) == roleColumns, "the columns are the role kinds, in order")
        return lines.dropFirst(2).map { line in
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            var allowed: [String: Bool] = [:]
            for (index, role) in roleColumns.enumerated() { allowed[role] = cells[2 + index] == "yes" }
            return Row(name: cells[0].replacingOccurrences(of: "`", with: ""), permission: cells[1], cells: allowed)
        }
    }

    // MARK: The fixture

    static let org = TenantID(10)
    static let individual = TenantID(20)
    static let member = AccountID(tenant: org, number: 1)
    static let otherMember = AccountID(tenant: org, number: 2)
    static let pool = AccountID(tenant: org, number: 0)
    static let client = ClientID(7)

    /// An organisation (departments 1 and 2, members 1 and 2, a funded pool with a
    /// subscription and auto-refill), a funded individual, a hold and a debit of member 1.
    struct Fixture {
        var h: LedgerHarness
        var hold: HoldID
        var debitKey: IdempotencyKey
        var refill: UInt64

        init() throws {
            h = LedgerHarness()
            _ = try OrganisationFixture(in: &h, tenant: org.rawValue, poolCredits: credits(1_000),
                                        departments: [(DepartmentID(1), nil), (DepartmentID(2), nil)],
                                        members: [(1, DepartmentID(1), nil), (2, DepartmentID(2), nil)])
            _ = try h.openIndividual(individual.rawValue)
            try h.grant(AccountID(tenant: individual, number: 0), credits(100))
            try h.succeed(.subscribe(pool, SubscriptionTerms(plan: "Team", allocation: credits(50), priceCents: 0)))
            try h.succeed(.setAutoRefill(pool, AutoRefillTerms(threshold: credits(2_000), refillCredits: 100)))
            hold = try h.reserve(member, credits(5))
            debitKey = h.freshKey()
            try h.debit(member, credits(3), key: debitKey)
            refill = h.ledger.autoRefill(of: pool)?.refillInFlight ?? 0
        }
    }

    /// One command of each kind, aimed at the organisation (member 1, department 1, its
    /// pool) — the scope of the roles under test.
    static func sample(_ kind: String, _ f: Fixture) -> Action? {
        let usage = UsageCharge(model: "GPT-4", provider: "OpenAI", units: 10, providerCostNanoUSD: 1, listPrice: credits(1),
                                keySource: .system)
        let terms = SubscriptionTerms(plan: "Team", allocation: credits(50), priceCents: 0)
        let actions: [String: Action] = [
            "openTenant": .openTenant(TenantID(99), .individual),
            "openDepartment": .openDepartment(org, DepartmentTerms(id: DepartmentID(9), costCentre: "new")),
            "openAccount": .openAccount(AccountID(tenant: org, number: 9), .member(department: DepartmentID(1), limitPerPeriod: nil)),
            "setDepartmentAllocation": .setDepartmentAllocation(org, DepartmentID(1), perPeriod: credits(10)),
            "setKeyPolicy": .setKeyPolicy(org, .hybrid),
            "startPeriod": .startPeriod(org),
            "setMemberLimit": .setMemberLimit(member, perPeriod: credits(10)),
            "freeze": .freeze(member),
            "unfreeze": .unfreeze(member),
            "grant": .grant(pool, GrantTerms(kind: .purchase, amount: credits(5))),
            "adjust": .adjust(pool, credits(5), reason: "goodwill"),
            "debit": .debit(member, credits(1), scope: .unscoped),
            "reserve": .reserve(member, credits(1), timeoutMillis: minuteMillis, scope: .unscoped),
            "settle": .settle(f.hold, actual: credits(1)),
            "settleCharge": .settleCharge(f.hold, usage),
            "release": .release(f.hold),
            "charge": .charge(member, usage, scope: .unscoped),
            "chargeRouted": .chargeRouted(member, RoutedCharge(only: usage, request: 1), scope: .unscoped),
            "refund": .refund(member, debit: f.debitKey, credits(1)),
            "registerKey": .registerKey(member, KeyRegistration(provider: "OpenAI", fingerprint: "sk-…1", sealed: [1])),
            "removeKey": .removeKey(member, provider: "OpenAI"),
            "subscribe": .subscribe(pool, terms),
            "changePlan": .changePlan(pool, PlanChangeRequest(deferring: terms)),
            "cancelSubscription": .cancelSubscription(pool),
            "resumeSubscription": .resumeSubscription(pool),
            "setAutoRefill": .setAutoRefill(pool, nil),
            "completeRefill": .completeRefill(pool, refill: f.refill, RefillPayment(amount: credits(100), expiresAt: .never,
                                                                                   costBasisNanoUSDPerCredit: 0, reference: "r")),
            "failRefill": .failRefill(pool, refill: f.refill, RefillFailure(declined: true, reason: "no", retryAt: nil)),
            "timeOutHold": .timeOutHold(f.hold),
            "renewSubscription": .renewSubscription(pool, cycle: 1, graceMillis: 0),
            "lapseSubscription": .lapseSubscription(pool, cycle: 0, reason: .cancelled, graceMillis: 0),
            "expireGrants": .expireGrants(pool, graceMillis: 0),
            "forfeitGrants": .forfeitGrants(pool),
            "grantRole": .grantRole(ClientID(99), .auditor(org)),
            "revokeRole": .revokeRole(ClientID(99), .auditor(org)),
            "setRateLimits": .setRateLimits(org, RateLimits(accountRequestsPerSecond: 100)),
            "setPlanRateLimits": .setPlanRateLimits(plan: "Team", RateLimits(tenantCreditsPerMinute: credits(1_000))),
            "setAnomalyMode": .setAnomalyMode(org, .freeze),
        ]
        return actions[kind]
    }

    /// The name of a command kind, as the table's first column writes it. Exhaustive: a new
    /// command kind does not compile until it is named here (and then needs its row).
    static func kindName(_ action: Action) -> String {
        switch action {
        case .openTenant: "openTenant"
        case .openDepartment: "openDepartment"
        case .openAccount: "openAccount"
        case .grant: "grant"
        case .debit: "debit"
        case .reserve: "reserve"
        case .settle: "settle"
        case .release: "release"
        case .timeOutHold: "timeOutHold"
        case .refund: "refund"
        case .adjust: "adjust"
        case .freeze: "freeze"
        case .unfreeze: "unfreeze"
        case .setDepartmentAllocation: "setDepartmentAllocation"
        case .setMemberLimit: "setMemberLimit"
        case .startPeriod: "startPeriod"
        case .charge: "charge"
        case .settleCharge: "settleCharge"
        case .registerKey: "registerKey"
        case .removeKey: "removeKey"
        case .setKeyPolicy: "setKeyPolicy"
        case .chargeRouted: "chargeRouted"
        case .subscribe: "subscribe"
        case .changePlan: "changePlan"
        case .cancelSubscription: "cancelSubscription"
        case .resumeSubscription: "resumeSubscription"
        case .renewSubscription: "renewSubscription"
        case .lapseSubscription: "lapseSubscription"
        case .expireGrants: "expireGrants"
        case .forfeitGrants: "forfeitGrants"
        case .setAutoRefill: "setAutoRefill"
        case .completeRefill: "completeRefill"
        case .failRefill: "failRefill"
        case .grantRole: "grantRole"
        case .revokeRole: "revokeRole"
        case .setRateLimits: "setRateLimits"
        case .setPlanRateLimits: "setPlanRateLimits"
        case .setAnomalyMode: "setAnomalyMode"
        }
    }

    /// Each role kind, scoped to the fixture's organisation, department 1 and member 1.
    static func role(_ kind: Role.Kind) -> Role {
        switch kind {
        case .platformAdmin: .platformAdmin
        case .platformAuditor: .platformAuditor
        case .organisationAdmin: .organisationAdmin(org)
        case .departmentManager: .departmentManager(org, DepartmentID(1))
        case .member: .member(member)
        case .auditor: .auditor(org)
        case .meteringService: .meteringService(org)
        case .billingService: .billingService(org)
        }
    }

    // MARK: Tests

    @Test("the table names every command kind once, with the permission the ledger asks for, and the permission's holders")
    func tableMatchesTheCode() throws {
        let rows = try Self.table()
        let f = try Fixture()
        let commandRows = rows.filter { !$0.name.hasPrefix("query:") }
        #expect(Set(commandRows.map(\.name)).count == commandRows.count, "one row per command kind")
        for row in commandRows {
            let action = try #require(Self.sample(row.name, f), "a sample of \(row.name)")
            #expect(Self.kindName(action) == row.name)
            #expect(action.permission.description == row.permission, "\(row.name)")
        }
        let named = Set(commandRows.map(\.name))
        let sampled = Set(commandRows.compactMap { Self.sample($0.name, f) }.map(Self.kindName))
        #expect(named == sampled)
        // Every permission's holders are the table's `yes` cells, in every row it appears; a
        // platform command is in no tenant's scope, so only platform roles reach it.
        for row in rows {
            let permission = try #require(Permission.allCases.first { $0.description == row.permission }, "\(row.permission)")
            let holders = Set(Role.Kind.allCases.filter { row.cells[$0.description] == true })
            var expected = permission.holders
            if let action = Self.sample(row.name, f), action.tenant == .platform {
                expected = expected.intersection([.platformAdmin, .platformAuditor])
            }
            #expect(holders == expected, "\(row.name): the table says \(holders), the code \(expected)")
        }
        let queryPermissions = Set(rows.filter { $0.name.hasPrefix("query:") }.map(\.permission))
        #expect(queryPermissions == Set(Permission.allCases.filter(\.isQuery).map(\.description)))
    }

    @Test("every cell: each command by each role is applied or refused as forbidden exactly as the table says; refusals change nothing")
    func everyCommandCell() throws {
        let rows = try Self.table().filter { !$0.name.hasPrefix("query:") }
        var checked = 0
        for row in rows {
            for kind in Role.Kind.allCases {
                var f = try Fixture()
                let action = try #require(Self.sample(row.name, f))
                try f.h.succeed(.grantRole(Self.client, Self.role(kind)))
                let expected = row.cells[kind.description] == true
                let principal = Principal.client(Self.client)
                if expected {
                    let outcome = f.h.apply(action, by: principal).outcome
                    #expect(outcome.failure != .forbidden(action.permission), "\(row.name) by \(kind) is allowed: \(outcome)")
                } else {
                    f.h.reject(action, .forbidden(action.permission), by: principal)
                }
                checked += 1
            }
            // The account holder is the member role on its own account.
            var f = try Fixture()
            let action = try #require(Self.sample(row.name, f))
            if row.cells["member"] == true {
                #expect(f.h.apply(action, by: .account(Self.member)).outcome.failure != .forbidden(action.permission), "\(row.name)")
            } else {
                f.h.reject(action, .forbidden(action.permission), by: .account(Self.member))
            }
            // The system is never refused for want of a permission.
            f = try Fixture()
            #expect(f.h.apply(action).outcome.failure.map { if case .forbidden = $0 { true } else { false } } != true,
                    "\(row.name) by the system")
            checked += 2
        }
        #expect(checked == rows.count * (Role.Kind.allCases.count + 2))
    }

    @Test("every query cell: the engine's check allows exactly the table's roles, in their scope")
    func everyQueryCell() throws {
        let rows = try Self.table().filter { $0.name.hasPrefix("query:") }
        #expect(!rows.isEmpty)
        for row in rows {
            let permission = try #require(Permission.allCases.first { $0.description == row.permission })
            for kind in Role.Kind.allCases {
                var f = try Fixture()
                try f.h.succeed(.grantRole(Self.client, Self.role(kind)))
                let target = PermissionTarget(tenant: Self.org, account: Self.member)
                #expect(f.h.ledger.permits(.client(Self.client), permission, target) == (row.cells[kind.description] == true),
                        "\(row.name) by \(kind)")
                // Never beyond its scope: another tenant.
                let elsewhere = PermissionTarget(tenant: Self.individual, account: AccountID(tenant: Self.individual, number: 0))
                let platformWide = kind == .platformAdmin || kind == .platformAuditor
                #expect(f.h.ledger.permits(.client(Self.client), permission, elsewhere) == (platformWide && row.cells[kind.description] == true),
                        "\(row.name) by \(kind) on another tenant")
            }
            let f = try Fixture()
            let own = PermissionTarget(tenant: Self.org, account: Self.member)
            #expect(f.h.ledger.permits(.account(Self.member), permission, own) == (row.cells["member"] == true))
            #expect(!f.h.ledger.permits(.account(Self.otherMember), permission, own), "another member's account")
            #expect(f.h.ledger.permits(.system, permission, own))
        }
    }

    @Test("scopes: no role reaches another tenant, department or account; a client without roles is refused everything")
    func scopes() throws {
        var f = try Fixture()
        let principal = Principal.client(Self.client)
        let individualAccount = AccountID(tenant: Self.individual, number: 0)
        // A metering service of the organisation does not spend the individual's credits.
        try f.h.succeed(.grantRole(Self.client, .meteringService(Self.org)))
        f.h.reject(.debit(individualAccount, credits(1), scope: .unscoped), .forbidden(.spend), by: principal)
        try f.h.succeed(.debit(Self.member, credits(1), scope: .unscoped), by: principal)
        // A department manager of department 2 does not freeze a member of department 1.
        try f.h.succeed(.grantRole(Self.client, .departmentManager(Self.org, DepartmentID(2))))
        f.h.reject(.freeze(Self.member), .forbidden(.freeze), by: principal)
        try f.h.succeed(.freeze(Self.otherMember), by: principal)
        // A member's role on account 2 does not spend account 1; its holder does not either.
        f.h.reject(.debit(Self.member, credits(1), scope: .unscoped), .forbidden(.spend), by: .account(Self.otherMember))
        // Settling another member's hold is refused: the hold's account is the one that reserved it.
        f.h.reject(.release(f.hold), .forbidden(.spend), by: .account(Self.otherMember))
        try f.h.succeed(.release(f.hold), by: .account(Self.member))
        // An organisation admin grants its people's roles, not a service's nor the platform's.
        try f.h.succeed(.grantRole(ClientID(8), .organisationAdmin(Self.org)))
        try f.h.succeed(.grantRole(ClientID(9), .auditor(Self.org)), by: .client(ClientID(8)))
        f.h.reject(.grantRole(ClientID(9), .meteringService(Self.org)), .forbidden(.manageRoles), by: .client(ClientID(8)))
        f.h.reject(.grantRole(ClientID(9), .platformAdmin), .forbidden(.manageRoles), by: .client(ClientID(8)))
        f.h.reject(.grantRole(ClientID(9), .auditor(Self.individual)), .forbidden(.manageRoles), by: .client(ClientID(8)))
        // An admin cannot spend, on its own tenant either.
        f.h.reject(.debit(Self.member, credits(1), scope: .unscoped), .forbidden(.spend), by: .client(ClientID(8)))
        try f.h.succeed(.grantRole(ClientID(10), .platformAdmin))
        f.h.reject(.debit(Self.member, credits(1), scope: .unscoped), .forbidden(.spend), by: .client(ClientID(10)))
        // A client without roles is refused a command of every permission.
        let nobody = Principal.client(ClientID(404))
        for row in try Self.table() where !row.name.hasPrefix("query:") {
            let action = try #require(Self.sample(row.name, f))
            f.h.reject(action, .forbidden(action.permission), by: nobody)
        }
        // Revoked, a role allows nothing more.
        try f.h.succeed(.revokeRole(Self.client, .meteringService(Self.org)))
        f.h.reject(.debit(Self.member, credits(1), scope: .unscoped), .forbidden(.spend), by: principal)
    }

    @Test("a role names a tenant, department or account that exists; revoking one not held changes nothing")
    func roleScopesMustExist() throws {
        var f = try Fixture()
        f.h.reject(.grantRole(Self.client, .auditor(TenantID(404))), .unknownTenant(TenantID(404)))
        f.h.reject(.grantRole(Self.client, .departmentManager(Self.org, DepartmentID(9))), .unknownDepartment(Self.org, DepartmentID(9)))
        f.h.reject(.grantRole(Self.client, .member(AccountID(tenant: Self.org, number: 77))),
                   .unknownAccount(AccountID(tenant: Self.org, number: 77)))
        let digest = f.h.ledger.stateDigest()
        let receipt = try f.h.succeed(.revokeRole(Self.client, .auditor(Self.org)))
        #expect(receipt.amount == .zero, "nothing was revoked")
        #expect(f.h.ledger.roles(of: Self.client).isEmpty)
        #expect(f.h.ledger.stateDigest() != digest, "the command itself is remembered")
        #expect(try f.h.succeed(.grantRole(Self.client, .auditor(Self.org))).amount == Millicredits(1), "granted: 1 when it changed")
        #expect(try f.h.succeed(.grantRole(Self.client, .auditor(Self.org))).amount == .zero, "granted twice: once")
        #expect(f.h.ledger.roles(of: Self.client) == [.auditor(Self.org)])
    }

    @Test("two metering clients of one tenant: revoking either leaves the other charging, the revoked one refused, also after a snapshot")
    func meteringClientsComeAndGo() throws {
        var f = try Fixture()
        let other = ClientID(8)
        func debit(by client: ClientID) -> LedgerError? {
            f.h.apply(.debit(Self.member, credits(1), scope: .unscoped), by: .client(client)).outcome.failure
        }
        try f.h.succeed(.grantRole(Self.client, .meteringService(Self.org)))
        try f.h.succeed(.grantRole(other, .meteringService(Self.org)))
        #expect(debit(by: Self.client) == nil && debit(by: other) == nil)
        // The tenant's line remembers the last granted; revoke that one, then the other.
        try f.h.succeed(.revokeRole(other, .meteringService(Self.org)))
        #expect(debit(by: other) == .forbidden(.spend) && debit(by: Self.client) == nil)
        try f.h.succeed(.grantRole(other, .meteringService(Self.org)))
        try f.h.succeed(.revokeRole(Self.client, .meteringService(Self.org)))
        #expect(debit(by: Self.client) == .forbidden(.spend) && debit(by: other) == nil)
        var writer = ByteWriter()
        f.h.ledger.encodeState(into: &writer)
        var reader = ByteReader(writer.bytes)
        var restored = try Ledger(decodingState: &reader, configuration: f.h.ledger.configuration)
        #expect(restored.invariantViolations().isEmpty)
        let now = f.h.now
        #expect(restored.apply(Command(key: f.h.freshKey(), .debit(Self.member, credits(1), scope: .unscoped), by: .client(other)),
                               at: now).outcome.failure == nil)
        #expect(restored.apply(Command(key: f.h.freshKey(), .debit(Self.member, credits(1), scope: .unscoped),
                                       by: .client(Self.client)), at: now).outcome.failure == .forbidden(.spend))
        try f.h.succeed(.revokeRole(other, .meteringService(Self.org)))
        #expect(debit(by: other) == .forbidden(.spend))
        #expect(f.h.ledger.invariantViolations().isEmpty)
    }

    @Test("every entry records who asked; a retry by another principal is a key conflict, by the same one the first outcome")
    func entriesRecordThePrincipal() throws {
        var f = try Fixture()
        try f.h.succeed(.grantRole(Self.client, .meteringService(Self.org)))
        let key = f.h.freshKey()
        let (_, entry) = try f.h.succeedWithEntry(.debit(Self.member, credits(1), scope: .unscoped), key: key,
                                                  by: .client(Self.client))
        #expect(entry.principal == .client(Self.client) && entry.member == Self.member)
        let denied = f.h.apply(.adjust(Self.pool, credits(1), reason: "x"), by: .account(Self.member))
        #expect(denied.entry?.principal == .account(Self.member) && denied.entry?.error == .forbidden(.adjust))
        let retry = f.h.ledger.apply(Command(key: key, .debit(Self.member, credits(1), scope: .unscoped), by: .client(Self.client)),
                                     at: f.h.now)
        #expect(retry.entry == nil && retry.outcome == entry.outcome)
        let other = f.h.ledger.apply(Command(key: key, .debit(Self.member, credits(1), scope: .unscoped), by: .account(Self.member)),
                                     at: f.h.now)
        #expect(other.outcome == .failure(.idempotencyConflict(key)))
        let system = try f.h.succeedWithEntry(.debit(Self.member, credits(1), scope: .unscoped))
        #expect(system.entry.principal == .system)
    }

    @Test("roles survive a snapshot: same digest, same roles, the same commands allowed and refused")
    func rolesRoundTrip() throws {
        var f = try Fixture()
        try f.h.succeed(.grantRole(Self.client, .meteringService(Self.org)))
        try f.h.succeed(.grantRole(ClientID(3), .platformAuditor))
        try f.h.succeed(.grantRole(ClientID(3), .departmentManager(Self.org, DepartmentID(2))))
        try f.h.succeed(.grantRole(ClientID(2), .member(Self.otherMember)))
        var writer = ByteWriter()
        f.h.ledger.encodeState(into: &writer)
        #expect(writer.count == f.h.ledger.encodedStateByteCount)
        var reader = ByteReader(writer.bytes)
        var restored = try Ledger(decodingState: &reader, configuration: f.h.ledger.configuration)
        #expect(restored.stateDigest() == f.h.ledger.stateDigest())
        #expect(restored.roles(of: ClientID(3)) == f.h.ledger.roles(of: ClientID(3)))
        for (principal, action) in [(Principal.client(Self.client), Action.debit(Self.member, credits(1), scope: .unscoped)),
                                    (.client(ClientID(3)), .freeze(Self.otherMember)), (.client(ClientID(3)), .freeze(Self.member)),
                                    (.client(ClientID(2)), .debit(Self.otherMember, credits(1), scope: .unscoped))] {
            let command = Command(key: f.h.freshKey(), action, by: principal)
            #expect(restored.apply(command, at: f.h.now).outcome == f.h.ledger.apply(command, at: f.h.now).outcome)
        }
        #expect(restored.stateDigest() == f.h.ledger.stateDigest())
        // Out of order, the roles are refused by name.
        var bytes = writer.bytes
        let rolesStart = bytes.count - f.h.ledger.encodedRolesByteCount
        #expect(bytes[rolesStart] == 4, "four grants")
        // The first two grants' clients' low bytes (client 2's member role: 8 + 13 bytes; then client 3).
        bytes.swapAt(rolesStart + 4, rolesStart + 4 + 8 + 13)
        reader = ByteReader(bytes)
        #expect(throws: BinaryDecodingError.self) { _ = try Ledger(decodingState: &reader, configuration: f.h.ledger.configuration) }
    }
}
