#if canImport(Glibc)
import Glibc
#endif
import DurabilityTestSupport
import CreditBilling
import CreditEngine
import CreditPricing
import Testing
@_spi(Plumbing) import CreditPersistence

/// Provider keys sealed by billing (`KeySealer`, the host's key) on a data directory that is
/// itself encrypted at rest (docs/encryption.md): both layers hold, a restart unseals the key.
@Suite("Encryption at rest: provider keys sealed by billing")
struct EncryptionAtRestBillingTests {
    @Test("a provider key registered on an encrypted directory unseals after a restart (log replay, then from a snapshot)")
    func providerKeySurvivesRestart() async throws {
        let directory = try makeTemporaryDirectory("billing-encrypted")
        let sealer = try KeySealer(keyBytes: KeySealer.randomKeyBytes())
        var storage = StorageConfiguration(directory: directory, log: LogConfiguration(segmentSize: StorageLimits.segmentBytesMin,
                                                                                       unsyncedBytesMax: StorageLimits.segmentBytesMin),
                                           snapshotEveryRecords: nil, snapshotEveryMillis: nil)
        storage.encryption = try EncryptionKeyRing(keys: [[UInt8](repeating: 0x3C, count: 32)])
        let configuration = EngineConfiguration(shardCount: 2, storage: storage)
        let account = AccountID(tenant: TenantID(42), number: 0)
        let secret = "sk-test-provider-key-0123456789"
        var engine = try await CreditEngine.open(configuration: configuration)
        _ = try await engine.execute(Command(key: IdempotencyKey(high: 0xB0, low: 1), .openTenant(TenantID(42), .individual))).get()
        _ = try await engine.execute(Command(key: IdempotencyKey(high: 0xB0, low: 2), .openAccount(account, .standard))).get()
        var billing = Billing(engine: engine, sealer: sealer, payments: InMemoryPaymentGateway())
        let fingerprint = try await billing.registerKey(secret, provider: "OpenAI", for: account, key: IdempotencyKey(high: 0xB0, low: 3))
        #expect(try await billing.providerKey(for: account, provider: "OpenAI").secret == secret)
        await engine.close()

        for round in 0 ..< 2 {
            engine = try await CreditEngine.open(configuration: configuration)
            billing = Billing(engine: engine, sealer: sealer, payments: InMemoryPaymentGateway())
            let (source, unsealed) = try await billing.providerKey(for: account, provider: "OpenAI")
            #expect(source == .userKey && unsealed == secret, "round \(round)")
            #expect(!fingerprint.isEmpty)
            if round == 0 { _ = try await engine.snapshot() }
            await engine.close()
        }
        // Another host key cannot unseal it, whatever the data key.
        engine = try await CreditEngine.open(configuration: configuration)
        let other = Billing(engine: engine, sealer: try KeySealer(keyBytes: KeySealer.randomKeyBytes()), payments: InMemoryPaymentGateway())
        do {
            let unsealed = try await other.providerKey(for: account, provider: "OpenAI")
            Issue.record("another host key unsealed the provider key: \(unsealed.source)")
        } catch {
            #expect(error != .unknownAccount(account), "\(error)")
        }
        await engine.close()
        // The secret is nowhere in clear on disk.
        #expect(!(try filesContain(directory, secret)))
    }

    private func filesContain(_ directory: String, _ text: String) throws -> Bool {
        let fileSystem = PosixFileSystem()
        let needle = Array(text.utf8)
        func walk(_ path: String) throws -> Bool {
            for name in try fileSystem.contentsOfDirectory(path) {
                let child = path + "/" + name
                if let bytes = try? fileSystem.readFile(child) {
                    let found = bytes.withUnsafeBufferPointer { haystack -> Bool in
                        var end = haystack.count
                        while end > 0, haystack[end - 1] == 0 { end -= 1 } // preallocated zeros
                        var index = 0
                        while index + needle.count <= end {
                            if haystack[index] == needle[0], haystack[index ..< index + needle.count].elementsEqual(needle) { return true }
                            index += 1
                        }
                        return false
                    }
                    if found { return true }
                } else if try walk(child) {
                    return true
                }
            }
            return false
        }
        return try walk(directory)
    }
}
