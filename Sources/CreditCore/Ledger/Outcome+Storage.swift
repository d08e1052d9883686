/// The compact form of an outcome the idempotency table keeps: a code and three words.
/// Ids inside errors are stored in the words, so a retry gets back exactly the same value.
struct StoredOutcome: Sendable, Equatable {
    var w0: UInt64
    var w1: UInt64
    var w2: UInt64
    var code: UInt8

    private static let successBase: UInt8 = 200

    init(w0: UInt64, w1: UInt64, w2: UInt64, code: UInt8) {
        self.w0 = w0
        self.w1 = w1
        self.w2 = w2
        self.code = code
    }

    init(_ outcome: Outcome) {
        switch outcome {
        case .success(let receipt):
            self.init(w0: receipt.sequence, w1: UInt64(bitPattern: receipt.amount.rawValue),
                      w2: UInt64(bitPattern: receipt.availableAfter.rawValue),
                      code: Self.successBase + receipt.created.rawValue)
        case .failure(let error):
            self = Self.encode(error)
        }
    }

    func outcome(tenant: TenantID) -> Outcome {
        if code >= Self.successBase {
            return .success(Receipt(sequence: w0, amount: Millicredits(Int64(bitPattern: w1)),
                                    availableAfter: Millicredits(Int64(bitPattern: w2)), tenant: tenant,
                                    created: Receipt.Created(rawValue: code - Self.successBase)!))
        }
        guard let error = decodedError else { preconditionFailure("unknown stored outcome code \(code)") }
        return .failure(error)
    }

    private static func words(_ account: AccountID) -> (UInt64, UInt64) { (account.tenant.rawValue, UInt64(account.number)) }
    private static func money(_ amount: Millicredits) -> UInt64 { UInt64(bitPattern: amount.rawValue) }
    private var account: AccountID { AccountID(tenant: TenantID(w0), number: UInt32(truncatingIfNeeded: w1)) }
    private var hold: HoldID { HoldID(tenant: TenantID(w0), number: w1) }
    private func amount(_ word: UInt64) -> Millicredits { Millicredits(Int64(bitPattern: word)) }

    private static func encode(_ error: LedgerError) -> StoredOutcome {
        func make(_ code: UInt8, _ w0: UInt64 = 0, _ w1: UInt64 = 0, _ w2: UInt64 = 0) -> StoredOutcome {
            StoredOutcome(w0: w0, w1: w1, w2: w2, code: code)
        }
        switch error {
        case .invalidAmount(let amount): return make(1, money(amount))
        case .amountOverflow: return make(2)
        case .tenantExists(let tenant): return make(3, tenant.rawValue)
        case .unknownTenant(let tenant): return make(4, tenant.rawValue)
        case .accountExists(let account): let (a, b) = words(account); return make(5, a, b)
        case .unknownAccount(let account): let (a, b) = words(account); return make(6, a, b)
        case .departmentExists(let tenant, let department): return make(7, tenant.rawValue, UInt64(department.rawValue))
        case .unknownDepartment(let tenant, let department): return make(8, tenant.rawValue, UInt64(department.rawValue))
        case .unknownHold(let hold): return make(9, hold.tenant.rawValue, hold.number)
        case .holdNotOpen(let hold): return make(10, hold.tenant.rawValue, hold.number)
        case .holdNotDue(let hold, let expiresAt):
            return make(11, hold.tenant.rawValue, hold.number, UInt64(bitPattern: expiresAt.millisSinceEpoch))
        case .accountFrozen(let account): let (a, b) = words(account); return make(12, a, b)
        case .insufficientCredits(let available, let requested): return make(13, money(available), money(requested))
        case .memberLimitExceeded(let remaining, let requested): return make(14, money(remaining), money(requested))
        case .departmentAllocationExceeded(let remaining, let requested): return make(15, money(remaining), money(requested))
        case .notAllowed(let account, let rule): let (a, b) = words(account); return make(16, a, b, UInt64(rule.rawValue))
        case .idempotencyConflict(let key): return make(17, key.high, key.low)
        case .unknownDebit(let key): return make(18, key.high, key.low)
        case .refundExceedsDebit(let refundable, let requested): return make(19, money(refundable), money(requested))
        case .invalidTimeout(let millis): return make(20, UInt64(bitPattern: millis))
        case .invalidInput(let rule): return make(21, UInt64(rule.rawValue))
        case .limitReached(let limit): return make(22, UInt64(limit.rawValue))
        case .invalidExpiry(let expiresAt): return make(23, UInt64(bitPattern: expiresAt.millisSinceEpoch))
        case .logStopped: return make(24)
        case .notSubscribed(let account): let (a, b) = words(account); return make(25, a, b)
        case .alreadySubscribed(let account): let (a, b) = words(account); return make(26, a, b)
        case .notDue(let account, let dueAt):
            let (a, b) = words(account); return make(27, a, b, UInt64(bitPattern: dueAt.millisSinceEpoch))
        case .staleSchedule(let expected, let requested): return make(28, expected, requested)
        case .nothingDue(let account): let (a, b) = words(account); return make(29, a, b)
        case .planChanged(let account): let (a, b) = words(account); return make(30, a, b)
        case .forbidden(let permission): return make(31, UInt64(permission.rawValue))
        case .rateLimited(let millis): return make(32, UInt64(bitPattern: millis))
        }
    }

    /// The error this stores; nil for a code (or rule) no encoder writes.
    var decodedError: LedgerError? {
        switch code {
        case 1: return .invalidAmount(amount(w0))
        case 2: return .amountOverflow
        case 3: return .tenantExists(TenantID(w0))
        case 4: return .unknownTenant(TenantID(w0))
        case 5: return .accountExists(account)
        case 6: return .unknownAccount(account)
        case 7: return .departmentExists(TenantID(w0), DepartmentID(UInt16(truncatingIfNeeded: w1)))
        case 8: return .unknownDepartment(TenantID(w0), DepartmentID(UInt16(truncatingIfNeeded: w1)))
        case 9: return .unknownHold(hold)
        case 10: return .holdNotOpen(hold)
        case 11: return .holdNotDue(hold, expiresAt: Timestamp(millisSinceEpoch: Int64(bitPattern: w2)))
        case 12: return .accountFrozen(account)
        case 13: return .insufficientCredits(available: amount(w0), requested: amount(w1))
        case 14: return .memberLimitExceeded(remaining: amount(w0), requested: amount(w1))
        case 15: return .departmentAllocationExceeded(remaining: amount(w0), requested: amount(w1))
        case 16: return Self.rule(w2, as: LedgerError.Rule.self).map { .notAllowed(account, $0) }
        case 17: return .idempotencyConflict(IdempotencyKey(high: w0, low: w1))
        case 18: return .unknownDebit(IdempotencyKey(high: w0, low: w1))
        case 19: return .refundExceedsDebit(refundable: amount(w0), requested: amount(w1))
        case 20: return .invalidTimeout(millis: Int64(bitPattern: w0))
        case 21: return Self.rule(w0, as: LedgerError.InputRule.self).map { .invalidInput($0) }
        case 22: return Self.rule(w0, as: LedgerError.Limit.self).map { .limitReached($0) }
        case 23: return .invalidExpiry(expiresAt: Timestamp(millisSinceEpoch: Int64(bitPattern: w0)))
        case 24: return .logStopped
        case 25: return .notSubscribed(account)
        case 26: return .alreadySubscribed(account)
        case 27: return .notDue(account, dueAt: Timestamp(millisSinceEpoch: Int64(bitPattern: w2)))
        case 28: return .staleSchedule(expected: w0, requested: w1)
        case 29: return .nothingDue(account)
        case 30: return .planChanged(account)
        case 31: return Self.rule(w0, as: Permission.self).map { .forbidden($0) }
        case 32: return .rateLimited(retryAfterMillis: Int64(bitPattern: w0))
        default: return nil
        }
    }

    /// The rule, input rule or limit a stored word names: nil for a value of another kind
    /// (they share one numbering) or none.
    private static func rule<Kind: RawRepresentable<UInt8>>(_ word: UInt64, as kind: Kind.Type) -> Kind? {
        word <= UInt64(UInt8.max) ? Kind(rawValue: UInt8(word)) : nil
    }
}
