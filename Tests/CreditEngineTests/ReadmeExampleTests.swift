import DurabilityTestSupport
import CreditEngine
import Testing

/// The library example of README.md, kept compiling and true.
@Suite("README example")
struct ReadmeExampleTests {
    @Test("the README's open, grant and debit example charges 1.5 credits of 1,000")
    func readmeExampleWorks() async throws {
        let engine = CreditEngine()
        let alice = AccountID(tenant: TenantID(42), number: 0)
        _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-1"), .openTenant(alice.tenant, .individual)))
        _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-2"), .openAccount(alice, .standard)))
        _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-3"),
                .grant(alice, GrantTerms(kind: .purchase, amount: try .credits(1_000)))))
        let outcome = await engine.execute(Command(key: IdempotencyKey(deriving: "req-4"),
                .debit(alice, try Millicredits(parsing: "1.5"), scope: .unscoped)))
        let receipt = try outcome.get()
        #expect(receipt.amount == Millicredits(1_500))
        #expect(receipt.availableAfter.description == "998.5 credits")
        // The retry of req-4 charges nothing twice.
        let retry = await engine.execute(Command(key: IdempotencyKey(deriving: "req-4"),
                .debit(alice, try Millicredits(parsing: "1.5"), scope: .unscoped)))
        #expect(retry == outcome)
        #expect(await engine.balance(of: alice)?.available == Millicredits(998_500))
        // Who asks: a metering client charges, and may not adjust.
        let meter = ClientID(7)
        _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-6"), .grantRole(meter, .meteringService(alice.tenant))))
        let charged = await engine.execute(Command(key: IdempotencyKey(deriving: "req-7"),
                .debit(alice, try .credits(2), scope: .unscoped), by: .client(meter)))
        #expect(try charged.get().availableAfter == Millicredits(996_500))
        let adjusted = await engine.execute(Command(key: IdempotencyKey(deriving: "req-8"),
                .adjust(alice, try .credits(5), reason: "gift"), by: .client(meter)))
        #expect(adjusted == .failure(.forbidden(.adjust)))
        #expect(await engine.invariantViolations().isEmpty)
    }

    @Test("the README's durable example: what was acknowledged is there after reopening")
    func durableExampleSurvivesReopening() async throws {
        let storage = StorageConfiguration(directory: try makeTemporaryDirectory("readme"))
        let alice = AccountID(tenant: TenantID(42), number: 0)
        do {
            let engine = try await CreditEngine.open(configuration: EngineConfiguration(storage: storage))
            _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-1"), .openTenant(alice.tenant, .individual)))
            _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-2"), .openAccount(alice, .standard)))
            _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-3"),
                    .grant(alice, GrantTerms(kind: .purchase, amount: try .credits(1_000)))))
            _ = try await engine.execute(Command(key: IdempotencyKey(deriving: "req-4"),
                    .debit(alice, try Millicredits(parsing: "1.5"), scope: .unscoped))).get()
            await engine.close()
        }
        let reopened = try await CreditEngine.open(configuration: EngineConfiguration(storage: storage))
        #expect(reopened.recoveryReports.reduce(0) { $0 + $1.recordsReplayed } == 4)
        #expect(await reopened.balance(of: alice)?.available == Millicredits(998_500))
        // The retry after the restart is still answered from the idempotency table.
        let retry = await reopened.execute(Command(key: IdempotencyKey(deriving: "req-4"),
                .debit(alice, try Millicredits(parsing: "1.5"), scope: .unscoped)))
        #expect(try retry.get().availableAfter == Millicredits(998_500))
        #expect(await reopened.balance(of: alice)?.available == Millicredits(998_500))
        await reopened.close()
    }
}
