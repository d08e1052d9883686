/// The result of one command: a receipt, or the typed reason it was rejected.
public typealias Outcome = Result<Receipt, LedgerError>

/// What a successful command did, as the caller needs it.
public struct Receipt: Sendable, Equatable {
    /// Position of the command's ledger entry in its shard's log.
    public let sequence: UInt64
    /// The amount that moved: charged, reserved, granted, refunded or released (0 for
    /// commands that move no credits).
    public let amount: Millicredits
    /// The account's spendable balance afterwards (for a member: what the member may still
    /// spend, the least of pool, department and member headroom). Negative means debt.
    public let availableAfter: Millicredits
    let tenant: TenantID
    let created: Created

    /// What the command made, in one byte (the idempotency table stores it as part of the
    /// outcome code, so a retry gets the same receipt): nothing, a hold, a grant, for a
    /// routed charge the candidate charged and whose key paid, or for a plan change its kind.
    struct Created: RawRepresentable, Sendable, Equatable {
        let rawValue: UInt8

        static let nothing = Created(raw: 0)
        static let hold = Created(raw: 1)
        static let grant = Created(raw: 2)
        /// First value of the routed choices: 3 + candidate × 3 + key source.
        private static let routedBase: UInt8 = 3
        /// First value of the plan changes' kinds (after the routed choices): base + kind − 1.
        private static let planChangeBase = routedBase + UInt8(LedgerLimits.routedCandidatesMax * 3)
        /// One past the last value: the stored code (200 + this) still fits a byte.
        static let end = planChangeBase + 3

        private init(raw: UInt8) { rawValue = raw }

        init?(rawValue: UInt8) {
            guard rawValue < Self.end else { return nil }
            self.rawValue = rawValue
        }

        static func routed(candidate: Int, keySource: KeySource) -> Created {
            precondition(candidate >= 0 && candidate < LedgerLimits.routedCandidatesMax)
            return Created(raw: routedBase + UInt8(candidate * 3) + keySource.rawValue)
        }

        static func planChange(_ kind: PlanProration.Kind) -> Created {
            Created(raw: planChangeBase + kind.rawValue - 1)
        }

        var planChange: PlanProration.Kind? {
            guard rawValue >= Self.planChangeBase && rawValue < Self.end else { return nil }
            return PlanProration.Kind(rawValue: rawValue - Self.planChangeBase + 1)
        }

        var routedChoice: RoutedChoice? {
            guard rawValue >= Self.routedBase && rawValue < Self.planChangeBase else { return nil }
            let value = rawValue - Self.routedBase
            return RoutedChoice(candidate: Int(value / 3), keySource: KeySource(rawValue: value % 3)!)
        }
    }

    /// The hold a `reserve` opened.
    public var hold: HoldID? { created == .hold ? HoldID(tenant: tenant, number: sequence) : nil }
    /// The grant a `grant`, positive `adjust` or `refund` created (nil if a refund only refilled).
    public var grant: GrantID? { created == .grant ? GrantID(tenant: tenant, number: sequence) : nil }
    /// For a routed charge: the candidate charged and whose key paid.
    public var routedChoice: RoutedChoice? { created.routedChoice }
    /// For a plan change (`Action.changePlan`): upgrade, downgrade or unchanged; `amount` is
    /// what the upgrade granted.
    public var planChange: PlanProration.Kind? { created.planChange }
}

/// The candidate of a routed charge that was charged, and whose key paid for the call.
public struct RoutedChoice: Sendable, Hashable {
    /// The candidate's number: `RoutedCharge.numberedFrom` + its index in `candidates`.
    public let candidate: Int
    public let keySource: KeySource

    public init(candidate: Int, keySource: KeySource) {
        self.candidate = candidate
        self.keySource = keySource
    }
}

/// Why a command was rejected. A rejected command changes nothing but the idempotency table
/// (so a retry gets the same rejection) and the log.
public enum LedgerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Zero, negative (where positive is required) or above `LedgerLimits.amountMax`.
    case invalidAmount(Millicredits)
    /// The command would overflow a 64-bit total.
    case amountOverflow
    case tenantExists(TenantID)
    case unknownTenant(TenantID)
    case accountExists(AccountID)
    case unknownAccount(AccountID)
    case departmentExists(TenantID, DepartmentID)
    case unknownDepartment(TenantID, DepartmentID)
    /// No hold with this id was ever opened.
    case unknownHold(HoldID)
    /// The hold was already settled, released or timed out.
    case holdNotOpen(HoldID)
    /// A time-out was asked for before the hold's deadline.
    case holdNotDue(HoldID, expiresAt: Timestamp)
    case accountFrozen(AccountID)
    case insufficientCredits(available: Millicredits, requested: Millicredits)
    case memberLimitExceeded(remaining: Millicredits, requested: Millicredits)
    case departmentAllocationExceeded(remaining: Millicredits, requested: Millicredits)
    /// The command is not allowed for this kind of tenant or account.
    case notAllowed(AccountID, Rule)
    /// The key was already used for a request with different content.
    case idempotencyConflict(IdempotencyKey)
    /// The refund names a key that is not a debit of this account still retained in the
    /// idempotency window (use `adjust` for older corrections).
    case unknownDebit(IdempotencyKey)
    case refundExceedsDebit(refundable: Millicredits, requested: Millicredits)
    case invalidTimeout(millis: Int64)
    /// A grant must expire after it becomes effective and after the command's time.
    case invalidExpiry(expiresAt: Timestamp)
    /// The command's input breaks a rule of its own (text too long, a name missing, ...).
    case invalidInput(InputRule)
    /// A named limit of `LedgerLimits` was reached.
    case limitReached(Limit)
    /// The shard's write-ahead log stopped (a write or sync failed), so the command was not
    /// acknowledged as durable. Produced by the engine, never by the core; every later
    /// command of that shard gets it too, until the process restarts and recovers.
    case logStopped
    /// The account has no subscription (or none that this command applies to).
    case notSubscribed(AccountID)
    /// The account's subscription is active or cancelling: it cannot be started again.
    case alreadySubscribed(AccountID)
    /// The scheduled step is not due before `dueAt` (a cycle that has not ended).
    case notDue(AccountID, dueAt: Timestamp)
    /// A scheduler command for another cycle or refill than the one its account is at
    /// (`expected`; 0 when no refill is in flight): already done, or not yet.
    case staleSchedule(expected: UInt64, requested: UInt64)
    /// Nothing of the account has expired, or ended its grace, by the command's time.
    case nothingDue(AccountID)
    /// A plan change names another plan than the subscription's (`PlanChangeRequest.replacing`):
    /// it was decided on a stale read, and changes nothing.
    case planChanged(AccountID)
    /// The principal holds no role that grants the permission the command (or query) needs
    /// (docs/security.md). Nothing changed; the refusal is remembered under the key.
    case forbidden(Permission)
    /// A rate limit's bucket is short (docs/security.md, "Rate limits"): retry after
    /// `retryAfterMillis` of command time. Unlike every other refusal it is **not**
    /// remembered under the idempotency key, and it records no entry: the same request,
    /// retried after the wait, is applied.
    case rateLimited(retryAfterMillis: Int64)

    /// A rule of who may do what (`notAllowed`): the kind of tenant or account, the key policy,
    /// the terms of a schedule. Raw values are stored with remembered outcomes: never reuse
    /// one. The three kinds of rule share one numbering, so a value names one rule of one kind.
    public enum Rule: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        case onlyOrganisationsHaveMembers = 1
        case onlyIndividualsHaveStandardAccounts = 2
        case membersHoldNoGrants = 3
        case limitsApplyToMembersOnly = 4
        case individualsHaveNoDepartments = 5
        case keysManagedByOrganisation = 13
        case providerCoveredByOrganisation = 14
        case keyNotUsable = 15
        case noKeyForProvider = 16
        case keyPoliciesAreForOrganisations = 17
        case noRouteWithinBudget = 21
        case subscriptionTerms = 23
        case autoRefillTerms = 24
        case refillPaymentTerms = 25
        case subscriptionsHoldGrants = 26
        case planChangePayment = 27

        /// A stable machine-readable name (snake_case of the case).
        public var code: String {
            switch self {
            case .onlyOrganisationsHaveMembers: "only_organisations_have_members"
            case .onlyIndividualsHaveStandardAccounts: "only_individuals_have_standard_accounts"
            case .membersHoldNoGrants: "members_hold_no_grants"
            case .limitsApplyToMembersOnly: "limits_apply_to_members_only"
            case .individualsHaveNoDepartments: "individuals_have_no_departments"
            case .keysManagedByOrganisation: "keys_managed_by_organisation"
            case .providerCoveredByOrganisation: "provider_covered_by_organisation"
            case .keyNotUsable: "key_not_usable"
            case .noKeyForProvider: "no_key_for_provider"
            case .keyPoliciesAreForOrganisations: "key_policies_are_for_organisations"
            case .noRouteWithinBudget: "no_route_within_budget"
            case .subscriptionTerms: "subscription_terms"
            case .autoRefillTerms: "auto_refill_terms"
            case .refillPaymentTerms: "refill_payment_terms"
            case .subscriptionsHoldGrants: "subscriptions_hold_grants"
            case .planChangePayment: "plan_change_payment"
            }
        }

        public var description: String {
            switch self {
            case .onlyOrganisationsHaveMembers: "only an organisation has member accounts"
            case .onlyIndividualsHaveStandardAccounts: "an organisation's accounts are its pool (opened with it) and members"
            case .membersHoldNoGrants: "a member spends from the organisation pool and holds no grants"
            case .limitsApplyToMembersOnly: "member limits apply to member accounts only"
            case .individualsHaveNoDepartments: "an individual has no departments"
            case .keysManagedByOrganisation: "the organisation's key policy is IT-controlled: members may not register keys"
            case .providerCoveredByOrganisation: "the organisation's key covers this provider (hybrid policy): members may not register their own"
            case .keyNotUsable: "no key of that source may pay for this provider under the account's key policy"
            case .noKeyForProvider: "no key registered for this provider"
            case .keyPoliciesAreForOrganisations: "key policies apply to organisations only"
            case .noRouteWithinBudget: "no key covers a candidate, and none may be charged on system keys (over the caller's budget)"
            case .subscriptionTerms:
                "a subscription names its plan (1 to \(LedgerLimits.textBytesMax) bytes), grants 0 to \(Millicredits(LedgerLimits.amountMax)) a cycle, "
                    + "costs 0 to \(SubscriptionTerms.priceCentsMax) cents, rolls over for 1 to \(SubscriptionTerms.rolloverMonthsMax) months, "
                    + "and its anchor is no later than now and less than a month before it"
            case .autoRefillTerms:
                "auto-refill has a threshold of 0 to \(Millicredits(LedgerLimits.amountMax)), refills 0 to \(AutoRefillTerms.refillCreditsMax) credits, "
                    + "a cooldown of 0 or more ms and 1 to \(AutoRefillTerms.attemptsMaxLimit) payment attempts"
            case .refillPaymentTerms:
                "a refill result grants a valid amount expiring after now, and names its payment reference or failure (1 to \(LedgerLimits.textBytesMax) bytes)"
            case .subscriptionsHoldGrants: "subscriptions and auto-refill are for accounts that hold grants (standard accounts and pools)"
            case .planChangePayment:
                "a plan change pays 0 to the price difference above the cycle's level (nothing for a downgrade), "
                    + "and names its payment reference (1 to \(LedgerLimits.textBytesMax) bytes) exactly when it paid"
            }
        }
    }

    /// What a command's own input must satisfy (`invalidInput`): text lengths, names, signs,
    /// candidates. Raw values as for `Rule`, from the same numbering.
    public enum InputRule: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        case reasonRequired = 6
        case textTooLong = 7
        case usageNamesModelAndProvider = 11
        case usageNotNegative = 12
        case keyRegistrationIncomplete = 18
        case routedCandidates = 20
        case tenantIDReserved = 28
        case rateLimits = 29

        /// A stable machine-readable name (snake_case of the case).
        public var code: String {
            switch self {
            case .reasonRequired: "reason_required"
            case .textTooLong: "text_too_long"
            case .usageNamesModelAndProvider: "usage_names_model_and_provider"
            case .usageNotNegative: "usage_not_negative"
            case .keyRegistrationIncomplete: "key_registration_incomplete"
            case .routedCandidates: "routed_candidates"
            case .tenantIDReserved: "tenant_id_reserved"
            case .rateLimits: "rate_limits"
            }
        }

        public var description: String {
            switch self {
            case .reasonRequired: "an adjustment needs a reason"
            case .textTooLong: "text longer than \(LedgerLimits.textBytesMax) bytes"
            case .usageNamesModelAndProvider: "a charge names its model and provider"
            case .usageNotNegative: "a charge's provider cost and list price are not negative"
            case .keyRegistrationIncomplete: "a key registration names its provider and fingerprint and holds a sealed key of at most \(LedgerLimits.sealedKeyBytesMax) bytes"
            case .rateLimits:
                "rate limits are 1 to \(RateLimits.requestsPerSecondMax) requests per second and 1 mc to \(Millicredits(RateLimits.creditsPerMinuteMax)) per minute, for a named plan"
            case .tenantIDReserved: "tenant id \(TenantID.platform.rawValue) is reserved for the platform's commands"
            case .routedCandidates:
                "a routed charge names 1 to \(LedgerLimits.routedCandidatesMax) candidates (numbered from at most the same) priced on system keys, "
                    + "and a system-keys choice among them or none"
            }
        }
    }

    /// A named limit of `LedgerLimits` (`limitReached`). Raw values as for `Rule`, from the
    /// same numbering.
    public enum Limit: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        case grantsPerAccount = 8
        case openHoldsPerShard = 9
        case departmentsPerOrganisation = 10
        case keysPerAccount = 19
        case namesPerProcess = 22

        /// A stable machine-readable name (snake_case of the case).
        public var code: String {
            switch self {
            case .grantsPerAccount: "grants_per_account"
            case .openHoldsPerShard: "open_holds_per_shard"
            case .departmentsPerOrganisation: "departments_per_organisation"
            case .keysPerAccount: "keys_per_account"
            case .namesPerProcess: "names_per_process"
            }
        }

        public var description: String {
            switch self {
            case .grantsPerAccount: "an account holds at most \(LedgerLimits.grantsPerAccountMax) live grants"
            case .openHoldsPerShard: "a shard holds at most \(LedgerLimits.openHoldsPerShardMax) open holds"
            case .departmentsPerOrganisation: "an organisation has at most \(LedgerLimits.departmentsPerOrganisationMax) departments"
            case .keysPerAccount: "an account holds at most \(LedgerLimits.keysPerAccountMax) provider keys"
            case .namesPerProcess: "a process holds at most \(InternedName.capacity) distinct model and provider names"
            }
        }
    }

    /// A stable machine-readable name (snake_case), one per case; the rule-carrying cases
    /// add the rule's (`not_allowed.members_hold_no_grants`). The HTTP layer maps codes to
    /// problem types; the words are `description`'s.
    public var code: String {
        switch self {
        case .invalidAmount: "invalid_amount"
        case .amountOverflow: "amount_overflow"
        case .tenantExists: "tenant_exists"
        case .unknownTenant: "unknown_tenant"
        case .accountExists: "account_exists"
        case .unknownAccount: "unknown_account"
        case .departmentExists: "department_exists"
        case .unknownDepartment: "unknown_department"
        case .unknownHold: "unknown_hold"
        case .holdNotOpen: "hold_not_open"
        case .holdNotDue: "hold_not_due"
        case .accountFrozen: "account_frozen"
        case .insufficientCredits: "insufficient_credits"
        case .memberLimitExceeded: "member_limit_reached"
        case .departmentAllocationExceeded: "department_allocation_reached"
        case .notAllowed(_, let rule): "not_allowed.\(rule.code)"
        case .idempotencyConflict: "key_conflict"
        case .unknownDebit: "unknown_debit"
        case .refundExceedsDebit: "refund_exceeds_debit"
        case .invalidTimeout: "invalid_timeout"
        case .invalidExpiry: "invalid_expiry"
        case .invalidInput(let rule): "invalid_input.\(rule.code)"
        case .limitReached(let limit): "limit_reached.\(limit.code)"
        case .logStopped: "log_stopped"
        case .notSubscribed: "not_subscribed"
        case .alreadySubscribed: "already_subscribed"
        case .notDue: "not_due"
        case .staleSchedule: "stale_schedule"
        case .nothingDue: "nothing_due"
        case .planChanged: "plan_changed"
        case .forbidden(let permission): "forbidden.\(permission)"
        case .rateLimited: "rate_limited"
        }
    }

    public var description: String {
        switch self {
        case .invalidAmount(let amount): "invalid amount \(amount): must be positive and at most \(Millicredits(LedgerLimits.amountMax))"
        case .amountOverflow: "the command would overflow a 64-bit millicredit total"
        case .tenantExists(let tenant): "tenant \(tenant) already exists"
        case .unknownTenant(let tenant): "no tenant \(tenant)"
        case .accountExists(let account): "account \(account) already exists"
        case .unknownAccount(let account): "no account \(account)"
        case .departmentExists(let tenant, let department): "department \(department) of \(tenant) already exists"
        case .unknownDepartment(let tenant, let department): "no department \(department) in \(tenant)"
        case .unknownHold(let hold): "no hold \(hold) was ever opened"
        case .holdNotOpen(let hold): "hold \(hold) was already settled, released or timed out"
        case .holdNotDue(let hold, let expiresAt): "hold \(hold) does not time out before \(expiresAt)"
        case .accountFrozen(let account): "account \(account) is frozen"
        case .insufficientCredits(let available, let requested): "insufficient credits: \(available) available, \(requested) requested"
        case .memberLimitExceeded(let remaining, let requested): "member limit exceeded: \(remaining) left this period, \(requested) requested"
        case .departmentAllocationExceeded(let remaining, let requested): "department allocation exceeded: \(remaining) left this period, \(requested) requested"
        case .notAllowed(let account, let rule): "not allowed for \(account): \(rule)"
        case .idempotencyConflict(let key): "idempotency key \(key) was already used for a different request"
        case .unknownDebit(let key): "\(key) is not a retained debit of this account"
        case .refundExceedsDebit(let refundable, let requested): "refund of \(requested) exceeds the \(refundable) still refundable"
        case .invalidTimeout(let millis): "invalid hold timeout \(millis) ms: must be 1 ms to \(LedgerLimits.holdTimeoutMillisMax) ms"
        case .invalidExpiry(let expiresAt): "a grant expiring at \(expiresAt) would never be spendable: it must expire after it becomes effective and after now"
        case .invalidInput(let rule): "invalid input: \(rule)"
        case .limitReached(let limit): "limit reached: \(limit)"
        case .logStopped: "the shard's write-ahead log stopped after a failed write or sync; restart to recover"
        case .notSubscribed(let account): "account \(account) has no subscription this applies to"
        case .alreadySubscribed(let account): "account \(account) already has an active or cancelling subscription"
        case .notDue(let account, let dueAt): "nothing of account \(account) is due before \(dueAt)"
        case .staleSchedule(let expected, let requested):
            "the account is at step \(expected) of its schedule, not \(requested)"
        case .nothingDue(let account): "nothing of account \(account) has expired or ended its grace"
        case .planChanged(let account): "the plan of account \(account) is no longer the one the change replaces"
        case .forbidden(let permission): "forbidden: the principal lacks the \(permission) permission"
        case .rateLimited(let millis): "rate limited: retry in \(millis) ms"
        }
    }
}
