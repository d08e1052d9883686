import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

@Suite("Log back-pressure: appends wait while pendingBytesMax bytes wait for the writer")
struct LogBackPressureTests {
    @Test("behind a stalled writer, appends stop below the bound plus one record; the appender waits and goes on once the writer takes the records")
    func appenderWaitsForAStalledWriter() async throws {
        let bound = 4_096
        let store = try DurabilityStore(log: LogConfiguration(durability: .interval,
                                                              segmentSize: WALFormat.segmentHeaderSize + 2 * WALFormat.recordSizeMax,
                                                              unsyncedBytesMax: 2 * WALFormat.recordSizeMax, pendingBytesMax: bound))
        let log = try store.openLog()
        let time = Timestamp(millisSinceEpoch: 1_767_225_600_000)
        func debit(_ number: Int) -> Command {
            Command(key: IdempotencyKey(deriving: "log-bp/\(number)"),
                    .debit(AccountID(tenant: TenantID(1), number: 0), Millicredits(1_000), scope: .unscoped))
        }
        // The writer syncs a new segment (its header) before any record goes in: hold that sync,
        // and the writer stands still with everything appended after the first record pending.
        let gate = store.disk.hold(syncNumber: 1, of: store.segmentPath(WALFormat.segmentName(firstLSN: 1)))
        log.append(debit(0), at: time)
        try #require(gate.waitUntilEntered(), "the writer never created the first segment")

        var appended = 1
        let recordBytes = WALFormat.recordHeaderSize + debit(0).encodedSize()
        while log.mayAppend && appended <= bound / recordBytes + 1 {
            log.append(debit(appended), at: time)
            appended += 1
        }
        #expect(!log.mayAppend, "\(appended) records (\(appended * recordBytes) bytes) appended behind a stalled writer")
        let (highWater, _) = log.pendingStatistics
        #expect(highWater >= bound && highWater < bound + recordBytes, "pending \(highWater) bytes, bound \(bound)")

        // Release the writer only once the appender waits (a deadline for a hang, not a race).
        let releaser = Task.detached {
            for _ in 0 ..< 30_000 where log.pendingStatistics.roomWaits == 0 { try? await Task.sleep(for: .milliseconds(1)) }
            gate.release()
        }
        await log.waitForRoom()
        await releaser.value
        #expect(log.mayAppend)
        #expect(log.pendingStatistics.roomWaits == 1)
        log.append(debit(appended), at: time)
        appended += 1
        await log.close()

        let (entries, _) = try store.readLog()
        #expect(entries.count == appended, "close wrote and synced every record appended")
        #expect(entries.map(\.command.key) == (0 ..< appended).map { debit($0).key })
    }
}
