/// The binary form of a command, as the write-ahead log stores it (docs/formats.md,
/// "Command encoding", version 2).
///
/// Layout: the 16-byte idempotency key, the principal (version 2 on: a tag byte — 0 system,
/// 1 account, 2 client — and its id), a one-byte action tag (the same numbers the
/// fingerprint uses), then the action's fields in declaration order. Version 1 had no
/// principal: its commands decode as the system's. The decoder checks
/// structure only (tags, lengths, presence bytes): whether a command makes sense is the
/// ledger's business, and the log holds rejected commands too (their failure is part of
/// the idempotency state), so it must be able to read back anything a client sent.
extension Command {
    /// Version of the command encoding. Bump on any change; keep old versions decodable.
    package static let encodingVersion: UInt16 = 2
    /// The versions this build decodes.
    package static let encodingVersionsReadable: ClosedRange<UInt16> = 1 ... 2
    /// Longest string a decoder accepts. Far above the ledger's own text limit
    /// (`LedgerLimits.textBytesMax`), because rejected commands with over-long text are
    /// logged as they were sent.
    package static let decodedTextBytesMax = 4 << 20
    /// Most departments a decoded open-tenant command may carry (the ledger's own limit is
    /// lower; see `decodedTextBytesMax` for why the decoder is looser).
    package static let decodedDepartmentsMax = 1 << 20
    /// Most candidates a decoded routed charge may carry (the ledger's own limit is lower).
    package static let decodedCandidatesMax = 1 << 20

    /// Whether the command has fields of unbounded size (text, department lists): only
    /// those can exceed a log record's limit (`encodedSize()` tells).
    package var hasVariableSize: Bool {
        switch action {
        case .openTenant(_, .organisation), .openDepartment, .adjust, .charge, .settleCharge, .registerKey, .removeKey,
             .chargeRouted, .subscribe, .changePlan, .completeRefill, .failRefill, .setPlanRateLimits: true
        default: false
        }
    }

    /// At least `encodedSize()`, computed without encoding (string lengths are O(1)): lets
    /// the engine see that a command fits a log record without encoding it twice.
    package func encodedSizeBound() -> Int {
        // Fixed fields of any command, with room to spare; each string adds a length prefix.
        let fixed = 128
        func text(_ value: String) -> Int { 8 + value.utf8.count }
        func usage(_ value: UsageCharge) -> Int { 64 + 16 + value.modelName.utf8Count + value.providerName.utf8Count }
        switch action {
        case .openTenant(_, .organisation(let departments)):
            return fixed + departments.reduce(0) { $0 + 64 + text($1.costCentre) }
        case .openDepartment(_, let terms): return fixed + text(terms.costCentre)
        case .adjust(_, _, let reason): return fixed + text(reason)
        case .charge(_, let value, _), .settleCharge(_, let value): return fixed + usage(value)
        case .chargeRouted(_, let routed, _): return fixed + (0 ..< routed.count).reduce(0) { $0 + usage(routed[candidate: $1]) }
        case .registerKey(_, let registration):
            return fixed + text(registration.provider) + text(registration.fingerprint) + 8 + registration.sealed.count
        case .removeKey(_, let provider): return fixed + text(provider)
        case .setPlanRateLimits(let plan, _): return fixed + text(plan)
        case .subscribe, .completeRefill, .failRefill: return fixed + 8 + action.schedulingTextBytes
        case .changePlan: return fixed + 3 * 8 + action.schedulingTextBytes
        default: return fixed
        }
    }

    /// Where the action's tag byte is in `encode(into:)`'s bytes: after the key and the
    /// principal.
    package var encodedTagOffset: Int { 16 + principal.encodedByteCount }

    /// Bytes of `encode(into:)`.
    package func encodedSize() -> Int {
        var writer = ByteWriter(capacity: 64)
        encode(into: &writer)
        return writer.count
    }

    @_spi(Plumbing) public func encode(into writer: inout ByteWriter) {
        writer.write(key)
        principal.encode(into: &writer)
        switch action {
        case .openTenant(let tenant, let kind):
            writer.write(UInt8(1)); writer.write(tenant)
            switch kind {
            case .individual:
                writer.write(UInt8(0))
            case .organisation(let departments):
                writer.write(UInt8(1)); writer.write(UInt32(departments.count))
                for department in departments { department.encode(into: &writer) }
            }
        case .openDepartment(let tenant, let terms):
            writer.write(UInt8(2)); writer.write(tenant); terms.encode(into: &writer)
        case .openAccount(let account, let kind):
            writer.write(UInt8(3)); writer.write(account)
            switch kind {
            case .standard(let overdraft):
                writer.write(UInt8(0)); writer.write(overdraft)
            case .member(let department, let limit):
                writer.write(UInt8(1)); writer.write(department); writer.write(limit)
            }
        case .grant(let account, let terms):
            writer.write(UInt8(4)); writer.write(account)
            writer.write(terms.kind.rawValue); writer.write(terms.amount)
            writer.write(terms.effectiveAt != nil)
            if let effectiveAt = terms.effectiveAt { writer.write(effectiveAt) }
            writer.write(terms.expiresAt); writer.write(terms.priority)
            writer.write(terms.costBasisNanoUSDPerCredit); writer.write(terms.scope)
        case .debit(let account, let amount, let scope):
            writer.write(UInt8(5)); writer.write(account); writer.write(amount); writer.write(scope)
        case .reserve(let account, let amount, let timeout, let scope):
            writer.write(UInt8(6)); writer.write(account); writer.write(amount); writer.write(timeout)
            writer.write(scope)
        case .settle(let hold, let actual):
            writer.write(UInt8(7)); writer.write(hold); writer.write(actual)
        case .release(let hold):
            writer.write(UInt8(8)); writer.write(hold)
        case .refund(let account, let debit, let amount):
            writer.write(UInt8(9)); writer.write(account); writer.write(debit); writer.write(amount)
        case .adjust(let account, let amount, let reason):
            writer.write(UInt8(10)); writer.write(account); writer.write(amount); writer.write(reason)
        case .freeze(let account):
            writer.write(UInt8(11)); writer.write(account)
        case .unfreeze(let account):
            writer.write(UInt8(12)); writer.write(account)
        case .setDepartmentAllocation(let tenant, let department, let cap):
            writer.write(UInt8(13)); writer.write(tenant); writer.write(department); writer.write(cap)
        case .setMemberLimit(let account, let cap):
            writer.write(UInt8(14)); writer.write(account); writer.write(cap)
        case .startPeriod(let tenant):
            writer.write(UInt8(15)); writer.write(tenant)
        case .timeOutHold(let hold):
            writer.write(UInt8(16)); writer.write(hold)
        case .charge(let account, let usage, let scope):
            writer.write(UInt8(17)); writer.write(account); usage.encode(into: &writer); writer.write(scope)
        case .settleCharge(let hold, let usage):
            writer.write(UInt8(21)); writer.write(hold); usage.encode(into: &writer)
        case .chargeRouted(let account, let routed, let scope):
            writer.write(UInt8(22)); writer.write(account); writer.write(routed.request); writer.write(routed.numberedFrom)
            writer.write(UInt32(routed.count))
            for index in 0 ..< routed.count { routed[candidate: index].encode(into: &writer) }
            if let choice = routed.systemChoice {
                writer.write(UInt8(1)); writer.write(choice)
            } else {
                writer.write(UInt8(0))
            }
            writer.write(scope)
        case .registerKey(let account, let registration):
            writer.write(UInt8(18)); writer.write(account)
            writer.write(registration.provider); writer.write(registration.fingerprint)
            writer.write(UInt32(registration.sealed.count)); writer.write(bytes: registration.sealed)
        case .removeKey(let account, let provider):
            writer.write(UInt8(19)); writer.write(account); writer.write(provider)
        case .setKeyPolicy(let tenant, let policy):
            writer.write(UInt8(20)); writer.write(tenant); writer.write(policy.rawValue)
        case .subscribe, .changePlan, .cancelSubscription, .resumeSubscription, .renewSubscription,
             .lapseSubscription, .expireGrants, .forfeitGrants, .setAutoRefill, .completeRefill, .failRefill:
            action.encodeScheduling(into: &writer)
        case .grantRole(let client, let role):
            writer.write(UInt8(40)); writer.write(client.rawValue); role.encode(into: &writer)
        case .revokeRole(let client, let role):
            writer.write(UInt8(41)); writer.write(client.rawValue); role.encode(into: &writer)
        case .setRateLimits(let tenant, let limits):
            writer.write(UInt8(42)); writer.write(tenant); RateLimits.encode(limits, into: &writer)
        case .setPlanRateLimits(let plan, let limits):
            writer.write(UInt8(43)); writer.write(plan); RateLimits.encode(limits, into: &writer)
        case .setAnomalyMode(let tenant, let mode):
            writer.write(UInt8(44)); writer.write(tenant); writer.write(mode.rawValue)
        }
    }

    /// Reads one command written by `encode(into:)`, leaving the reader after it.
    @_spi(Plumbing) public init(decoding reader: inout ByteReader) throws(BinaryDecodingError) {
        try self.init(decoding: &reader, version: Self.encodingVersion)
    }

    /// Reads one command of encoding `version` (one of `encodingVersionsReadable`).
    package init(decoding reader: inout ByteReader, version: UInt16) throws(BinaryDecodingError) {
        precondition(Self.encodingVersionsReadable.contains(version), "command encoding \(version) is not readable")
        let key = try reader.readKey()
        let principal = version >= 2 ? try Principal(decoding: &reader) : .system
        let tagOffset = reader.offset
        let action: Action
        let tag = try reader.read(UInt8.self)
        if let scheduling = try Action.decodeScheduling(tag: tag, from: &reader) {
            self.init(key: key, scheduling, by: principal)
            return
        }
        switch tag {
        case 1:
            let tenant = try reader.readTenant()
            let kindOffset = reader.offset
            switch try reader.read(UInt8.self) {
            case 0:
                action = .openTenant(tenant, .individual)
            case 1:
                let countOffset = reader.offset
                let count = Int(try reader.read(UInt32.self))
                // Each department takes at least 7 bytes; a count beyond that is corrupt.
                guard count <= Self.decodedDepartmentsMax, count <= reader.remaining / 7 else {
                    throw .invalid(offset: countOffset, field: "department count")
                }
                var departments: [DepartmentTerms] = []
                departments.reserveCapacity(count)
                for _ in 0 ..< count { departments.append(try DepartmentTerms(decoding: &reader)) }
                action = .openTenant(tenant, .organisation(departments: departments))
            default:
                throw .invalid(offset: kindOffset, field: "tenant kind")
            }
        case 2:
            action = .openDepartment(try reader.readTenant(), try DepartmentTerms(decoding: &reader))
        case 3:
            let account = try reader.readAccount()
            let kindOffset = reader.offset
            switch try reader.read(UInt8.self) {
            case 0: action = .openAccount(account, .standard(overdraft: try reader.readAmount()))
            case 1:
                let department = try reader.readDepartment()
                action = .openAccount(account, .member(department: department,
                                                       limitPerPeriod: try reader.readOptionalAmount("member limit")))
            default: throw .invalid(offset: kindOffset, field: "account kind")
            }
        case 4:
            let account = try reader.readAccount()
            let kindOffset = reader.offset
            guard let kind = GrantKind(rawValue: try reader.read(UInt8.self)) else {
                throw .invalid(offset: kindOffset, field: "grant kind")
            }
            let amount = try reader.readAmount()
            let effectiveAt = try reader.readBool("grant effective-time presence") ? try reader.readTimestamp() : nil
            let expiresAt = try reader.readTimestamp()
            let priority = try reader.read(UInt8.self)
            let costBasis = try reader.read(UInt32.self)
            let scope = try reader.readScope()
            action = .grant(account, GrantTerms(kind: kind, amount: amount, effectiveAt: effectiveAt, expiresAt: expiresAt,
                                                priority: priority, costBasisNanoUSDPerCredit: costBasis, scope: scope))
        case 5:
            action = .debit(try reader.readAccount(), try reader.readAmount(), scope: try reader.readScope())
        case 6:
            let account = try reader.readAccount()
            let amount = try reader.readAmount()
            let timeout = try reader.read(Int64.self)
            action = .reserve(account, amount, timeoutMillis: timeout, scope: try reader.readScope())
        case 7:
            action = .settle(try reader.readHold(), actual: try reader.readAmount())
        case 8:
            action = .release(try reader.readHold())
        case 9:
            action = .refund(try reader.readAccount(), debit: try reader.readKey(), try reader.readAmount())
        case 10:
            let account = try reader.readAccount()
            let amount = try reader.readAmount()
            action = .adjust(account, amount, reason: try reader.readString(maxBytes: Self.decodedTextBytesMax, "reason"))
        case 11:
            action = .freeze(try reader.readAccount())
        case 12:
            action = .unfreeze(try reader.readAccount())
        case 13:
            let tenant = try reader.readTenant()
            let department = try reader.readDepartment()
            action = .setDepartmentAllocation(tenant, department,
                                              perPeriod: try reader.readOptionalAmount("department allocation"))
        case 14:
            let account = try reader.readAccount()
            action = .setMemberLimit(account, perPeriod: try reader.readOptionalAmount("member limit"))
        case 15:
            action = .startPeriod(try reader.readTenant())
        case 16:
            action = .timeOutHold(try reader.readHold())
        case 17:
            let account = try reader.readAccount()
            let usage = try Self.readUsage(&reader)
            action = .charge(account, usage, scope: try reader.readScope())
        case 21:
            let hold = try reader.readHold()
            action = .settleCharge(hold, try Self.readUsage(&reader))
        case 22:
            let account = try reader.readAccount()
            let request = try reader.read(UInt64.self)
            let numberedFrom = try reader.read(UInt8.self)
            let countOffset = reader.offset
            let count = Int(try reader.read(UInt32.self))
            guard count <= Self.decodedCandidatesMax else { throw .invalid(offset: countOffset, field: "candidate count") }
            var candidates: [UsageCharge] = []
            for _ in 0 ..< count { candidates.append(try Self.readUsage(&reader)) }
            let presenceOffset = reader.offset
            let choice: UInt8?
            switch try reader.read(UInt8.self) {
            case 0: choice = nil
            case 1: choice = try reader.read(UInt8.self)
            default: throw .invalid(offset: presenceOffset, field: "system choice presence")
            }
            action = .chargeRouted(account, RoutedCharge(candidates: candidates, systemChoice: choice, request: request,
                                                         numberedFrom: numberedFrom),
                                   scope: try reader.readScope())
        case 18:
            let account = try reader.readAccount()
            let provider = try reader.readString(maxBytes: Self.decodedTextBytesMax, "provider")
            let fingerprint = try reader.readString(maxBytes: Self.decodedTextBytesMax, "fingerprint")
            let lengthOffset = reader.offset
            let length = Int(try reader.read(UInt32.self))
            guard length <= Self.decodedTextBytesMax else { throw .invalid(offset: lengthOffset, field: "sealed key length") }
            let sealed = Array(try reader.readBytes(length))
            action = .registerKey(account, KeyRegistration(provider: provider, fingerprint: fingerprint, sealed: sealed))
        case 19:
            let account = try reader.readAccount()
            action = .removeKey(account, provider: try reader.readString(maxBytes: Self.decodedTextBytesMax, "provider"))
        case 20:
            let tenant = try reader.readTenant()
            let policyOffset = reader.offset
            guard let policy = KeyPolicy(rawValue: try reader.read(UInt8.self)) else {
                throw .invalid(offset: policyOffset, field: "key policy")
            }
            action = .setKeyPolicy(tenant, policy)
        case 40 where version >= 2:
            action = .grantRole(ClientID(try reader.read(UInt64.self)), try Role(decoding: &reader))
        case 41 where version >= 2:
            action = .revokeRole(ClientID(try reader.read(UInt64.self)), try Role(decoding: &reader))
        case 42 where version >= 2:
            action = .setRateLimits(try reader.readTenant(), try RateLimits.decodeOptional(&reader))
        case 43 where version >= 2:
            let plan = try reader.readString(maxBytes: Self.decodedTextBytesMax, "plan")
            action = .setPlanRateLimits(plan: plan, try RateLimits.decodeOptional(&reader))
        case 44 where version >= 2:
            let tenant = try reader.readTenant()
            let modeOffset = reader.offset
            guard let mode = AnomalyMode(rawValue: try reader.read(UInt8.self)) else {
                throw .invalid(offset: modeOffset, field: "anomaly mode")
            }
            action = .setAnomalyMode(tenant, mode)
        default:
            throw .invalid(offset: tagOffset, field: "command tag")
        }
        self.init(key: key, action, by: principal)
    }
}

extension RateLimits {
    /// A presence byte, then four optional rates (each a presence byte and the value: u32
    /// requests per second, i64 millicredits per minute).
    static func encode(_ limits: RateLimits?, into writer: inout ByteWriter) {
        writer.write(limits != nil)
        guard let limits else { return }
        limits.encode(into: &writer)
    }

    func encode(into writer: inout ByteWriter) {
        for rate in [accountRequestsPerSecond, tenantRequestsPerSecond] {
            writer.write(rate != nil)
            if let rate { writer.write(rate) }
        }
        writer.write(accountCreditsPerMinute)
        writer.write(tenantCreditsPerMinute)
    }

    static func decodeOptional(_ reader: inout ByteReader) throws(BinaryDecodingError) -> RateLimits? {
        try reader.readBool("rate limits presence") ? try RateLimits(decoding: &reader) : nil
    }

    init(decoding reader: inout ByteReader) throws(BinaryDecodingError) {
        func requests(_ field: String) throws(BinaryDecodingError) -> UInt32? {
            try reader.readBool(field) ? try reader.read(UInt32.self) : nil
        }
        let accountRequests = try requests("account requests per second presence")
        let tenantRequests = try requests("tenant requests per second presence")
        self.init(accountRequestsPerSecond: accountRequests,
                  accountCreditsPerMinute: try reader.readOptionalAmount("account credits per minute presence"),
                  tenantRequestsPerSecond: tenantRequests,
                  tenantCreditsPerMinute: try reader.readOptionalAmount("tenant credits per minute presence"))
    }

    /// Bytes of `encode(into:)`.
    var encodedByteCount: Int {
        2 + (accountRequestsPerSecond == nil ? 0 : 4) + (tenantRequestsPerSecond == nil ? 0 : 4)
            + 2 + (accountCreditsPerMinute == nil ? 0 : 8) + (tenantCreditsPerMinute == nil ? 0 : 8)
    }

    func feed(into hasher: inout StableHasher) {
        hasher.combine(accountRequestsPerSecond != nil); hasher.combine(accountRequestsPerSecond ?? 0)
        hasher.combine(tenantRequestsPerSecond != nil); hasher.combine(tenantRequestsPerSecond ?? 0)
        accountCreditsPerMinute.feed(into: &hasher)
        tenantCreditsPerMinute.feed(into: &hasher)
    }
}

extension Principal {
    /// Bytes of `encode(into:)`.
    var encodedByteCount: Int {
        switch self {
        case .system: 1
        case .account: 13
        case .client: 9
        }
    }

    /// A tag byte (0 system, 1 account, 2 client), then the account id or client id.
    func encode(into writer: inout ByteWriter) {
        switch self {
        case .system: writer.write(UInt8(0))
        case .account(let account): writer.write(UInt8(1)); writer.write(account)
        case .client(let client): writer.write(UInt8(2)); writer.write(client.rawValue)
        }
    }

    init(decoding reader: inout ByteReader) throws(BinaryDecodingError) {
        let at = reader.offset
        switch try reader.read(UInt8.self) {
        case 0: self = .system
        case 1: self = .account(try reader.readAccount())
        case 2: self = .client(ClientID(try reader.read(UInt64.self)))
        default: throw .invalid(offset: at, field: "principal")
        }
    }
}

extension Role {
    /// The kind byte, then the tenant (none for a platform role), then the department or
    /// account number where the kind has one.
    func encode(into writer: inout ByteWriter) {
        writer.write(kind.rawValue)
        switch self {
        case .platformAdmin, .platformAuditor: break
        case .organisationAdmin(let tenant), .auditor(let tenant), .meteringService(let tenant), .billingService(let tenant):
            writer.write(tenant)
        case .departmentManager(let tenant, let department): writer.write(tenant); writer.write(department)
        case .member(let account): writer.write(account)
        }
    }

    /// Bytes of `encode(into:)`.
    var encodedByteCount: Int {
        switch self {
        case .platformAdmin, .platformAuditor: 1
        case .organisationAdmin, .auditor, .meteringService, .billingService: 9
        case .departmentManager: 11
        case .member: 13
        }
    }

    init(decoding reader: inout ByteReader) throws(BinaryDecodingError) {
        let at = reader.offset
        guard let kind = Role.Kind(rawValue: try reader.read(UInt8.self)) else { throw .invalid(offset: at, field: "role") }
        switch kind {
        case .platformAdmin: self = .platformAdmin
        case .platformAuditor: self = .platformAuditor
        case .organisationAdmin: self = .organisationAdmin(try reader.readTenant())
        case .auditor: self = .auditor(try reader.readTenant())
        case .meteringService: self = .meteringService(try reader.readTenant())
        case .billingService: self = .billingService(try reader.readTenant())
        case .departmentManager: self = .departmentManager(try reader.readTenant(), try reader.readDepartment())
        case .member: self = .member(try reader.readAccount())
        }
    }
}

extension UsageCharge {
    /// The usage fields of tags 17, 21 and 22.
    func encode(into writer: inout ByteWriter) {
        writer.write(modelName.text); writer.write(providerName.text); writer.write(units)
        writer.write(providerCostNanoUSD); writer.write(listPrice); writer.write(keySource.rawValue)
    }
}

extension Command {
    /// The usage fields of tags 17, 21 and 22.
    static func readUsage(_ reader: inout ByteReader) throws(BinaryDecodingError) -> UsageCharge {
        let model = try reader.readString(maxBytes: decodedTextBytesMax, "model")
        let provider = try reader.readString(maxBytes: decodedTextBytesMax, "provider")
        let units = try reader.read(UInt64.self)
        let providerCost = try reader.read(Int64.self)
        let listPrice = try reader.readAmount()
        let sourceOffset = reader.offset
        guard let keySource = KeySource(rawValue: try reader.read(UInt8.self)) else {
            throw .invalid(offset: sourceOffset, field: "key source")
        }
        return UsageCharge(model: model, provider: provider, units: units, providerCostNanoUSD: providerCost,
                           listPrice: listPrice, keySource: keySource)
    }
}

extension DepartmentTerms {
    func encode(into writer: inout ByteWriter) {
        writer.write(id); writer.write(costCentre); writer.write(allocationPerPeriod)
    }

    init(decoding reader: inout ByteReader) throws(BinaryDecodingError) {
        let id = try reader.readDepartment()
        let costCentre = try reader.readString(maxBytes: Command.decodedTextBytesMax, "cost centre")
        self.init(id: id, costCentre: costCentre, allocationPerPeriod: try reader.readOptionalAmount("department allocation"))
    }
}
