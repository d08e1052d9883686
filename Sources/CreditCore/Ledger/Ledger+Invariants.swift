/// The invariant checker, in the spirit of swift-collections' `_checkInvariants()`: it walks
/// the whole state and lists every broken rule. Tests call it after every step.
///
/// Conservation per account and in total: granted + debt = remaining + consumed + expired +
/// held. Per grant: remaining + held ≤ original (consumed is the rest). Every hold is backed by exactly
/// its parts; every cap holds (spent + held ≤ cap + overrun); debt only within an overdraft
/// or from a settle's overrun. Grants past their expiry (in grace, forfeited) stay listed where
/// they were, so order and expiry rules apply to live grants only. Schedules and their
/// accounts link both ways; the `watched` flag says whether the schedule has auto-refill.
extension Ledger {
    @_spi(Plumbing) public func invariantViolations() -> [String] {
        var problems: [String] = []
        func check(_ condition: Bool, _ message: @autoclosure () -> String) {
            if !condition { problems.append(message()) }
        }

        // Governance lines: each tenant's points back to it; the counts are right.
        problems += guardViolations()
        // Roles: each names a tenant, department or account that exists.
        for grant in roles.grants {
            switch grant.role {
            case .platformAdmin, .platformAuditor: break
            case .organisationAdmin(let tenant), .auditor(let tenant), .meteringService(let tenant), .billingService(let tenant):
                check(tenants[tenant] != nil, "role \(grant.role) of \(grant.client) names no tenant")
            case .departmentManager(let tenant, let department):
                let organisation = tenants[tenant].map(\.organisation) ?? none
                check(organisation != none && organisations[Int(organisation)].departmentIndex(department) != nil,
                      "role \(grant.role) of \(grant.client) names no department")
            case .member(let account):
                check(slot(of: account) != nil, "role \(grant.role) of \(grant.client) names no account")
            }
        }

        // Holds: per grant slot, what open holds hold from it.
        var heldByGrant: [UInt32: Int64] = [:]
        var heldByPrincipal: [UInt32: Int64] = [:]
        for (number, hold) in holds {
            check(hold.amount > 0, "hold \(number) has amount \(hold.amount)")
            check(hold.parts.reduce(0) { $0 + $1.amount } == hold.amount, "hold \(number) parts do not sum to its amount")
            check(!closedHolds.contains(number), "hold \(number) is both open and closed")
            check(Int(hold.principal) < accounts.count && Int(hold.account) < accounts.count, "hold \(number) has a bad account")
            for part in hold.parts {
                check(part.amount > 0, "hold \(number) has an empty part")
                check(grants[part.grant].account == hold.account, "hold \(number) holds a grant of another account")
                heldByGrant[part.grant, default: 0] += part.amount
            }
            heldByPrincipal[hold.principal, default: 0] += hold.amount
        }

        var sums = LedgerTotals()
        var liveGrantCount = 0
        accounts.forEach { slot, account in
            var name: String { "account \(account.tenant)/a\(account.number)" }
            sums.granted += account.granted
            sums.consumed += account.flags.contains(.member) ? 0 : account.consumed
            sums.expired += account.expired
            sums.debt += account.debt
            check(account.granted >= 0 && account.consumed >= 0 && account.expired >= 0 && account.debt >= 0,
                  "\(name) has a negative total")
            check(account.flags.contains(.hasKeys) == (keyIndex[slot] != nil), "\(name) key flag does not match its keys")
            if account.schedule == none {
                check(!account.flags.contains(.watched), "\(name) is watched but has no schedule")
            } else if Int(account.schedule) >= schedules.count || schedules[account.schedule].account != slot {
                problems.append("\(name) schedule \(account.schedule) is not its own")
            } else {
                check(account.flags.contains(.watched) == schedules[account.schedule].watched,
                      "\(name) watched flag does not match its auto-refill terms")
            }
            if account.flags.contains(.member) {
                check(account.firstGrant == none && account.granted == 0 && account.debt == 0, "member \(name) holds credits")
                return
            }
            var remaining: Int64 = 0
            var held: Int64 = 0
            var count = 0
            var scoped = false
            // The previous live grant: grants in grace keep their place with their grace end
            // in `effectiveAt`, so they may sit out of order among the live ones.
            var previous: GrantRecord?
            var cursor = account.firstGrant
            while cursor != none, count <= LedgerLimits.grantsPerAccountMax {
                let grant = grants[cursor]
                count += 1
                check(grant.account == slot, "\(name) lists grant \(grant.number) of another account")
                check(grant.remaining >= 0 && grant.held >= 0 && grant.consumed >= 0,
                      "grant \(grant.number): remaining \(grant.remaining) + held \(grant.held) ≤ original \(grant.original) broken")
                check(grant.isScoped == (grantScopes[cursor] != nil), "grant \(grant.number) scope flag ≠ scope table")
                check(grant.held == heldByGrant[cursor] ?? 0, "grant \(grant.number) held \(grant.held) ≠ its holds' parts")
                switch grant.state {
                case .live:
                    check(grant.effectiveAt < grant.expiresAt, "grant \(grant.number) expires before it is effective")
                    if let previous { check(previous.burnsBefore(grant), "\(name) grants are not in burn order") }
                    previous = grant
                case .grace:
                    check(grant.effectiveAt >= grant.expiresAt, "grant \(grant.number) grace ends before it expires")
                case .forfeited:
                    // Retired as soon as its holds close: nothing else could ever come of it.
                    check(grant.remaining == 0 && grant.held > 0,
                          "forfeited grant \(grant.number) has \(grant.remaining) remaining and \(grant.held) held")
                }
                remaining += grant.remaining
                held += grant.held
                scoped = scoped || grant.isScoped
                cursor = grant.next
            }
            liveGrantCount += count
            check(count == Int(account.liveGrants), "\(name) counts \(account.liveGrants) live grants, lists \(count)")
            check(!scoped || account.flags.contains(.scopedGrants), "\(name) has scoped grants but not the flag")
            check(account.granted + account.debt == remaining + account.consumed + account.expired + held,
                  "\(name) does not conserve: granted \(account.granted) + debt \(account.debt) ≠ remaining \(remaining) + consumed \(account.consumed) + expired \(account.expired) + held \(held)")
            let line = creditLines[slot] ?? CreditLine(overdraft: 0, overrun: 0)
            check(account.debt <= line.overdraft + line.overrun,
                  "\(name) debt \(account.debt) beyond overdraft \(line.overdraft) + settle overrun \(line.overrun)")
        }
        check(sums == totals, "per-account totals \(sums) ≠ ledger totals \(totals)")
        check(grantScopes.keys.allSatisfy { Int($0) < grants.count && grants[$0].isScoped }, "scope table names unscoped grants")
        check(liveGrantCount + freeGrantSlots.count == grants.count,
              "\(liveGrantCount) live + \(freeGrantSlots.count) free grant slots ≠ \(grants.count)")

        for (id, tenant) in tenants.sorted() {
            if tenant.organisation == none {
                check(tenant.grantHint == (tenant.firstAccount == none ? none : accounts[tenant.firstAccount].firstGrant),
                      "tenant \(id) grant hint is stale")
                var cursor = tenant.firstAccount
                var steps = 0
                while cursor != none, steps <= accounts.count {
                    let flags = accounts[cursor].flags.subtracting([.hasKeys, .watched])
                    check(accounts[cursor].tenant == id && flags.isSubset(of: [.frozen, .scopedGrants]),
                          "tenant \(id) chains a foreign or member account")
                    cursor = accounts[cursor].nextInTenant
                    steps += 1
                }
                check(steps <= accounts.count, "tenant \(id) account chain has a cycle")
                continue
            }
            let organisation = organisations[Int(tenant.organisation)]
            check(tenant.grantHint == accounts[tenant.firstAccount].firstGrant, "tenant \(id) grant hint is stale")
            check(organisation.tenant == id && tenant.firstAccount == organisation.pool, "tenant \(id) organisation link is wrong")
            check(accounts[organisation.pool].flags.contains(.pool), "tenant \(id) pool is not a pool")
            var departmentSpent = [Int64](repeating: 0, count: organisation.departments.count)
            var departmentHeld = [Int64](repeating: 0, count: organisation.departments.count)
            for (index, member) in organisation.members.enumerated() {
                let account = accounts[member.account]
                check(account.flags.contains(.member) && Int(account.link) == index && account.tenant == id,
                      "member \(index) of \(id) is not linked")
                check(organisation.memberSlots[account.number] == member.account, "member \(index) of \(id) is not indexed")
                check(member.period.held == heldByPrincipal[member.account] ?? 0,
                      "member \(id)/a\(account.number) period held \(member.period.held) ≠ its open holds")
                checkPeriodCap(member.period, "member \(id)/a\(account.number)", check)
                departmentSpent[member.department] += member.period.spent
                departmentHeld[member.department] += member.period.held
            }
            check(organisation.memberSlots.count == organisation.members.count, "organisation \(id) member index size")
            for (index, department) in organisation.departments.enumerated() {
                check(department.period.spent == departmentSpent[index] && department.period.held == departmentHeld[index],
                      "department \(department.id) of \(id) counters ≠ the sum of its members")
                checkPeriodCap(department.period, "department \(department.id) of \(id)", check)
            }
        }

        schedules.forEach { index, schedule in
            let name = "schedule \(index)"
            guard Int(schedule.account) < accounts.count, accounts[schedule.account].schedule == index else {
                problems.append("\(name) names account slot \(schedule.account), whose schedule it is not")
                return
            }
            check(accounts[schedule.account].holdsGrants, "\(name) belongs to a member (members hold no grants)")
            if let status = schedule.status {
                check((1 ... SubscriptionTerms.rolloverMonthsMax).contains(schedule.rolloverMonths) && !schedule.plan.isEmpty,
                      "\(name) subscription has rolloverMonths \(schedule.rolloverMonths) and plan '\(schedule.plan)'")
                // Only a lapse gives a reason; subscribing again clears it.
                check((schedule.lapseReason != nil) == (status == .lapsed), "\(name) lapse reason does not match status \(status)")
                // A cycle's level starts at the terms and only upgrades raise it, to the terms
                // they bring; a downgrade lowers the terms below it.
                check((0 ... LedgerLimits.amountMax).contains(schedule.cycleAllocation)
                          && (0 ... SubscriptionTerms.priceCentsMax).contains(schedule.cyclePriceCents),
                      "\(name) cycle level \(schedule.cycleAllocation) mc at \(schedule.cyclePriceCents) cents is out of range")
            } else {
                check(schedule.cycleAllocation == 0 && schedule.cyclePriceCents == 0, "\(name) has a cycle level but no subscription")
            }
            check(schedule.inFlight < nextSequence && (schedule.inFlight != 0 || schedule.attempts == 0),
                  "\(name) refill in flight \(schedule.inFlight) with \(schedule.attempts) failed attempts")
        }

        problems += idempotency.consistencyProblems()
        problems += retiredGrants.consistencyProblems()
        for retired in retiredGrants.inOrder {
            let account = retired.record.account
            if Int(account) >= accounts.count || !accounts[account].holdsGrants {
                problems.append("retired grant \(retired.record.number) belongs to account slot \(account), which holds no grants")
            } else if grantSlot(numbered: retired.record.number, of: account) != nil {
                problems.append("retired grant \(retired.record.number) is also listed in its account")
            }
        }
        var indexed: [UInt32: Set<String>] = [:]
        for owner in providerKeys.keys { indexed[owner.slot, default: []].insert(owner.provider) }
        if indexed != keyIndex { problems.append("the provider key index does not match the keys") }
        for owner in providerKeys.keys where Int(owner.slot) >= accounts.count {
            problems.append("a \(owner.provider) key belongs to account slot \(owner.slot), beyond the \(accounts.count) accounts")
        }
        return problems
    }

    private func checkPeriodCap(_ period: PeriodCap, _ name: String, _ check: (Bool, @autoclosure () -> String) -> Void) {
        check(period.spent >= 0 && period.held >= 0 && period.overrun >= 0, "\(name) has a negative period counter")
        if let cap = period.cap {
            check(period.spent + period.held <= cap + period.overrun,
                  "\(name) spent \(period.spent) + held \(period.held) beyond cap \(cap) + overrun \(period.overrun)")
        }
    }

    /// Stops the process with the list of violations if any invariant is broken.
    package func checkInvariants() {
        let problems = invariantViolations()
        precondition(problems.isEmpty, "ledger invariants broken:\n" + problems.joined(separator: "\n"))
    }
}
