import CreditEngine
import Testing

/// Many tasks against one balance or one organisation at once. The shard actor must make
/// every check-and-spend atomic: no sleeps, no timing, only counts that any interleaving
/// must produce.
@Suite("Concurrency: no overspending under simultaneous requests")
struct ConcurrencyTests {
    @Test("20 simultaneous reserves of 75 credits against 500: exactly 6 succeed", arguments: 0 ..< 10)
    func simultaneousReservesNeverOverspend(round: Int) async throws {
        let engine = makeEngine(shards: 4)
        let keys = KeySource()
        let account = try await engine.openFunded(UInt64(1_000 + round), credits: credits(500), keys: keys)
        let outcomes = await withTaskGroup(of: Outcome.self, returning: [Outcome].self) { group in
            for _ in 0 ..< 20 {
                let key = keys.next()
                group.addTask { await engine.execute(Command(key: key, .reserve(account, credits(75), timeoutMillis: 60_000, scope: .unscoped))) }
            }
            var outcomes: [Outcome] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        let holds = outcomes.compactMap { try? $0.get().hold }
        #expect(holds.count == 6)
        #expect(Set(holds).count == 6, "every success opened its own hold")
        for outcome in outcomes {
            if case .failure(let error) = outcome {
                #expect(error == .insufficientCredits(available: credits(50), requested: credits(75)))
            }
        }
        let balance = try #require(await engine.balance(of: account))
        #expect(balance.available == credits(50))
        #expect(balance.held == credits(450))
        #expect(await engine.statistics().openHolds == 6)
        await engine.expectInvariants()
    }

    @Test("many tasks debiting one account never overspend it", arguments: [false, true])
    func concurrentDebitsNeverOverspend(durable: Bool) async throws {
        let engine = try await makeEngine(shards: 4, durable: durable)
        let keys = KeySource()
        let account = try await engine.openFunded(7, credits: credits(1_000), keys: keys)
        let bystander = try await engine.openFunded(8, credits: credits(1_000), keys: keys)
        let amount = credits(7)
        let successes = await withTaskGroup(of: Int.self, returning: Int.self) { group in
            for task in 0 ..< 16 {
                group.addTask {
                    var succeeded = 0
                    for attempt in 0 ..< 20 {
                        let key = keys.next()
                        switch await engine.execute(Command(key: key, .debit(account, amount, scope: .unscoped))) {
                        case .success: succeeded += 1
                        case .failure(let error):
                            guard case .insufficientCredits = error else {
                                Issue.record("unexpected \(error)")
                                continue
                            }
                        }
                        if (task + attempt) % 4 == 0 {
                            _ = await engine.execute(Command(key: keys.next(), .debit(bystander, credits(1), scope: .unscoped)))
                        }
                    }
                    return succeeded
                }
            }
            return await group.reduce(0, +)
        }
        // 320 attempts of 7 credits against 1,000: exactly 142 fit.
        #expect(successes == 142)
        #expect(Int64(successes) * amount.rawValue <= credits(1_000).rawValue)
        let balance = try #require(await engine.balance(of: account))
        #expect(balance.available == credits(6))
        #expect(balance.consumed == credits(994))
        #expect(balance.debt == .zero)
        await engine.expectInvariants()
        await engine.close()
    }

    @Test("many members debiting and reserving at once never pass a member limit, a department allocation or the pool",
          arguments: [false, true])
    func concurrentMembersRespectEveryCap(durable: Bool) async throws {
        let engine = try await makeEngine(shards: 4, durable: durable)
        let keys = KeySource()
        let org = TenantID(900)
        let pool = AccountID(tenant: org, number: 0)
        let departments: [(DepartmentID, Millicredits?)] = [(DepartmentID(1), credits(100)), (DepartmentID(2), credits(150)), (DepartmentID(3), nil)]
        try await engine.succeed(.openTenant(org, .organisation(departments: departments.map {
            DepartmentTerms(id: $0.0, costCentre: "CC-\($0.0.rawValue)", allocationPerPeriod: $0.1)
        })), keys: keys)
        try await engine.succeed(.grant(pool, GrantTerms(kind: .enterpriseContract, amount: credits(500))), keys: keys)
        var members: [AccountID] = []
        for (index, department) in departments.enumerated() {
            for offset in 1 ... 4 {
                let member = AccountID(tenant: org, number: UInt32(index * 10 + offset))
                try await engine.succeed(.openAccount(member, .member(department: department.0, limitPerPeriod: credits(50))), keys: keys)
                members.append(member)
            }
        }
        // Every member tries 8 charges of 10 credits: half plain debits, half reserve-then-settle
        // at the reserved amount. Caps: member 50 (5 charges), department 1: 100 (10), department
        // 2: 150 (15), department 3: none (4 × 5 = 20), pool 500 (50). Whatever the interleaving,
        // exactly min(50, 10 + 15 + 20) = 45 charges succeed.
        let charge = credits(10)
        let successes = await withTaskGroup(of: Bool.self, returning: Int.self) { group in
            for member in members {
                for attempt in 0 ..< 8 {
                    let key = keys.next()
                    let settleKey = keys.next()
                    group.addTask {
                        if attempt % 2 == 0 {
                            let outcome = await engine.execute(Command(key: key, .debit(member, charge, scope: .unscoped)))
                            return Self.succeeded(outcome)
                        }
                        let outcome = await engine.execute(Command(key: key, .reserve(member, charge, timeoutMillis: 60_000, scope: .unscoped)))
                        guard Self.succeeded(outcome), let hold = try? outcome.get().hold else { return false }
                        let settled = await engine.execute(Command(key: settleKey, .settle(hold, actual: charge)))
                        #expect(Self.succeeded(settled))
                        return true
                    }
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(successes == 45)
        let view = try #require(await engine.organisation(org))
        for member in view.members {
            #expect(member.usage.spent <= credits(50) && member.usage.held == .zero, "\(member.account)")
            #expect(member.usage.overrun == .zero)
        }
        let spentByDepartment = Dictionary(uniqueKeysWithValues: view.departments.map { ($0.id, $0.usage.spent) })
        #expect(spentByDepartment[DepartmentID(1)] == credits(100))
        #expect(spentByDepartment[DepartmentID(2)] == credits(150))
        #expect(spentByDepartment[DepartmentID(3)] == credits(200))
        let memberTotal = view.members.reduce(Int64(0)) { $0 + $1.usage.spent.rawValue }
        #expect(memberTotal == credits(450).rawValue)
        let poolBalance = try #require(await engine.balance(of: pool))
        #expect(poolBalance.available == credits(50))
        #expect(poolBalance.consumed == credits(450))
        await engine.expectInvariants()
        await engine.close()
    }

    @Test("a pool smaller than the caps stops concurrent members exactly at zero")
    func concurrentMembersStopAtEmptyPool() async throws {
        let engine = makeEngine(shards: 2)
        let keys = KeySource()
        let org = TenantID(901)
        let pool = AccountID(tenant: org, number: 0)
        try await engine.succeed(.openTenant(org, .organisation(departments: [DepartmentTerms(id: DepartmentID(1), costCentre: "CC")])), keys: keys)
        try await engine.succeed(.grant(pool, GrantTerms(kind: .enterpriseContract, amount: credits(123))), keys: keys)
        for number in UInt32(1) ... 10 {
            try await engine.succeed(.openAccount(AccountID(tenant: org, number: number), .member(department: DepartmentID(1), limitPerPeriod: nil)), keys: keys)
        }
        let successes = await withTaskGroup(of: Bool.self, returning: Int.self) { group in
            for number in UInt32(1) ... 10 {
                for _ in 0 ..< 5 {
                    let key = keys.next()
                    group.addTask {
                        Self.succeeded(await engine.execute(Command(key: key, .debit(AccountID(tenant: org, number: number), credits(3), scope: .unscoped))))
                    }
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(successes == 41)
        #expect(await engine.balance(of: pool)?.available == .zero)
        #expect(await engine.balance(of: pool)?.debt == .zero)
        await engine.expectInvariants()
    }

    @Test("the same request sent by many tasks at once is applied exactly once", arguments: [false, true])
    func concurrentRetriesApplyOnce(durable: Bool) async throws {
        let recorder = EntryRecorder()
        let engine = try await makeEngine(shards: 4, durable: durable, recorder: recorder)
        let keys = KeySource()
        let account = try await engine.openFunded(5, credits: credits(100), keys: keys)
        let command = Command(key: keys.next(), .debit(account, credits(30), scope: .unscoped))
        let before = recorder.all.count
        let outcomes = await withTaskGroup(of: Outcome.self, returning: [Outcome].self) { group in
            for _ in 0 ..< 25 { group.addTask { await engine.execute(command) } }
            var outcomes: [Outcome] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        #expect(outcomes.count == 25)
        #expect(outcomes.allSatisfy { $0 == outcomes[0] }, "every caller got the same receipt")
        #expect(try outcomes[0].get().availableAfter == credits(70))
        #expect(recorder.all.count == before + 1)
        #expect(await engine.balance(of: account)?.available == credits(70))
        #expect(await engine.statistics().replays == 24)
        await engine.close()
    }

    @Test("concurrent batches and single commands over many tenants equal applying the batches one by one")
    func concurrentBatchesMatchSequentialTotals() async throws {
        let engine = makeEngine(shards: 4)
        let keys = KeySource()
        var accounts: [AccountID] = []
        for tenant in UInt64(1) ... 12 { accounts.append(try await engine.openFunded(tenant, credits: credits(100), keys: keys)) }
        let snapshot = accounts
        await withTaskGroup(of: Void.self) { group in
            for worker in 0 ..< 6 {
                group.addTask {
                    for round in 0 ..< 10 {
                        let batch = snapshot.map { Command(key: keys.next(), .debit($0, credits(1), scope: .unscoped)) }
                        let outcomes = await engine.execute(batch: batch)
                        #expect(outcomes.count == batch.count)
                        if (worker + round) % 3 == 0 {
                            _ = await engine.execute(Command(key: keys.next(), .debit(snapshot[worker], credits(1), scope: .unscoped)))
                        }
                    }
                }
            }
        }
        // 60 batch debits per account, plus 20 single debits spread over accounts 0...5.
        var total = Millicredits.zero
        for account in accounts {
            let balance = try #require(await engine.balance(of: account))
            #expect(balance.consumed >= credits(60))
            total = try total.adding(balance.consumed)
        }
        #expect(total == credits(12 * 60 + 20))
        await engine.expectInvariants()
    }

    static func succeeded(_ outcome: Outcome) -> Bool {
        if case .success = outcome { return true }
        return false
    }
}
