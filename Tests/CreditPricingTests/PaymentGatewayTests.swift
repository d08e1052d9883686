import CreditPricing
import Testing

@Suite("Payment gateway: idempotent per purchase id, typed failures")
struct PaymentGatewayTests {
    let purchase = PurchaseID("purchase-1")

    @Test("a charge succeeds and is recorded")
    func chargeRecorded() async throws {
        let gateway = InMemoryPaymentGateway()
        let receipt = try await gateway.charge(8_500, for: purchase)
        #expect(receipt.purchase == purchase && receipt.amountCents == 8_500)
        #expect(await gateway.charges == [receipt])
        #expect(await gateway.chargedCents == 8_500)
    }

    @Test("a retried charge with the same purchase id returns the first receipt and charges once")
    func retryChargesOnce() async throws {
        let memory = InMemoryPaymentGateway()
        let gateway: any PaymentGateway = memory
        let first = try await gateway.charge(4_500, for: purchase)
        let retry = try await gateway.charge(4_500, for: purchase)
        #expect(retry == first)
        let other = try await gateway.charge(4_500, for: PurchaseID("purchase-2"))
        #expect(other.reference != first.reference)
        #expect(await memory.charges == [first, other])
    }

    @Test("concurrent retries of one purchase charge it once")
    func concurrentRetriesChargeOnce() async throws {
        let gateway = InMemoryPaymentGateway()
        let purchase = purchase
        let receipts = try await withThrowingTaskGroup(of: PaymentReceipt.self) { group in
            for _ in 0 ..< 20 { group.addTask { try await gateway.charge(1_000, for: purchase) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(receipts.count == 20 && Set(receipts).count == 1)
        #expect(await gateway.charges.count == 1)
        #expect(await gateway.chargedCents == 1_000)
    }

    @Test("the same purchase id with another amount is a conflict and charges nothing")
    func amountConflict() async throws {
        let gateway = InMemoryPaymentGateway()
        _ = try await gateway.charge(1_000, for: purchase)
        await #expect(throws: PaymentError.amountConflict(purchase: purchase, firstAmountCents: 1_000, requestedAmountCents: 2_000)) {
            try await gateway.charge(2_000, for: purchase)
        }
        #expect(await gateway.chargedCents == 1_000)
    }

    @Test("'fail the next N': the gateway is unavailable N times, nothing is charged, then a retry with the same id succeeds once")
    func failNextThenRetry() async throws {
        let gateway = InMemoryPaymentGateway()
        await gateway.failNext(2)
        for _ in 0 ..< 2 {
            await #expect(throws: PaymentError.unavailable(purchase: purchase)) { try await gateway.charge(8_500, for: purchase) }
        }
        #expect(await gateway.charges.isEmpty)
        let receipt = try await gateway.charge(8_500, for: purchase)
        #expect(try await gateway.charge(8_500, for: purchase) == receipt)
        #expect(await gateway.charges == [receipt])
        #expect(await gateway.attempts == 3, "the replayed answer did not reach the gateway")
    }

    @Test("a decline is final for its purchase id: a retry gets the same decline, even once the card would pass")
    func declineIsRemembered() async throws {
        let gateway = InMemoryPaymentGateway()
        await gateway.failNext(1, with: .declined(reason: "insufficient funds"))
        let declined = PaymentError.declined(purchase: purchase, reason: "insufficient funds")
        await #expect(throws: declined) { try await gateway.charge(1_000, for: purchase) }
        await #expect(throws: declined) { try await gateway.charge(1_000, for: purchase) }
        #expect(!declined.isRetryable && PaymentError.unavailable(purchase: purchase).isRetryable)
        let fresh = try await gateway.charge(1_000, for: PurchaseID("purchase-1b"))
        #expect(await gateway.charges == [fresh])
    }

    @Test("failing a specific purchase id fails only that purchase")
    func failSpecificPurchase() async throws {
        let gateway = InMemoryPaymentGateway()
        let doomed = PurchaseID("doomed")
        await gateway.fail(doomed)
        await #expect(throws: PaymentError.declined(purchase: doomed, reason: "card declined")) {
            try await gateway.charge(1_000, for: doomed)
        }
        let fine = try await gateway.charge(1_000, for: purchase)
        #expect(await gateway.charges == [fine])

        let flaky = PurchaseID("flaky")
        await gateway.fail(flaky, with: .unavailable)
        await #expect(throws: PaymentError.unavailable(purchase: flaky)) { try await gateway.charge(1_000, for: flaky) }
        await #expect(throws: PaymentError.unavailable(purchase: flaky)) { try await gateway.charge(1_000, for: flaky) }
        #expect(await gateway.charges == [fine])
    }

    @Test("a zero or negative amount is rejected and nothing is attempted", arguments: [0, -1, Int64.min])
    func invalidAmountRejected(cents: Int64) async {
        let gateway = InMemoryPaymentGateway()
        await #expect(throws: PaymentError.invalidAmount(purchase: purchase, amountCents: cents)) {
            try await gateway.charge(cents, for: purchase)
        }
        #expect(await gateway.attempts == 0)
        #expect(await gateway.charges.isEmpty)
    }
}
