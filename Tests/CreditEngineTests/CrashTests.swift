#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CreditEngine
import DurabilityTestSupport
import Testing
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// The `credits` executable of this build: next to the test bundle (SwiftPM puts products and
/// the test bundle in the same directory), found from /proc/self/exe or argv[0], walking up.
/// (These helpers are shared with MonthEndCrashTests.)
let creditsExecutable: String? = {
    var starts: [String] = []
    var buffer = [CChar](repeating: 0, count: 4_096)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    if count > 0 { starts.append(String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)) }
    if let first = CommandLine.arguments.first { starts.append(first) }
    for start in starts {
        var directory = String(start.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/"))
        for _ in 0 ..< 4 where !directory.isEmpty {
            let candidate = directory + "/credits"
            var info = stat()
            if stat(candidate, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 { return candidate }
            directory = String(directory.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/"))
        }
    }
    return nil
}()

/// The value of `"name": ...` in a one-line JSON object written by `credits` (strings
/// without escapes, numbers and booleans are all these lines hold).
func jsonField(_ line: Substring, _ name: String) -> Substring? {
    guard let range = line.firstRange(of: "\"\(name)\": ") else { return nil }
    let rest = line[range.upperBound...]
    if rest.first == "\"" {
        let value = rest.dropFirst()
        return value.firstIndex(of: "\"").map { value[..<$0] }
    }
    return rest.prefix { $0 != "," && $0 != "}" }
}

/// Runs `credits` with `arguments` to the end; its stdout and exit status.
func runToEnd(_ executable: String, _ arguments: [String], errors: String) throws -> (output: String, exitCode: Int32?) {
    let child = try DurabilityChild.spawn(executable, arguments, errors: errors)
    var output: [UInt8] = []
    child.drain(into: &output)
    let status = child.wait()
    close(child.output)
    return (String(decoding: output, as: UTF8.self), status.exitCode)
}

func removeTree(_ path: String) {
    let fileSystem = PosixFileSystem()
    if let names = try? fileSystem.contentsOfDirectory(path) {
        for name in names { removeTree(path + "/" + name) }
    }
    try? fileSystem.remove(path)
}

@Suite("Crash test: a real `credits load` process killed with SIGKILL, again and again")
struct CrashTests {
    @Test("SIGKILL `credits load --durability strict` 4 times on one directory: every acknowledged debit is there exactly once, invariants hold (also with --data-key: encryption at rest)",
          .enabled(if: creditsExecutable != nil, "the credits executable was not found next to the test bundle"),
          arguments: [false, true])
    func killRepeatedly(sealed: Bool) async throws {
        let seed = DurabilitySeed.make("CrashTests.killRepeatedly" + (sealed ? " sealed" : ""))
        var random = DurabilityRandom(seed: seed)
        let credits = try #require(creditsExecutable)
        let root = try makeTemporaryDirectory("crash")
        defer { removeTree(root) }
        let data = root + "/data"
        let errors = root + "/stderr.txt"
        // Encryption at rest (docs/encryption.md): a data key outside the data directory.
        let keyBytes = (0 ..< 32).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        var keyArguments: [String] = []
        if sealed {
            let keyFile = try PosixFileSystem().open(root + "/data.key", create: true)
            try keyFile.write(keyBytes, at: 0)
            keyFile.close()
            keyArguments = ["--data-key", root + "/data.key"]
        }
        func childErrors() -> String {
            (try? PosixFileSystem().readFile(errors)).map { String(decoding: $0.suffix(2_000), as: UTF8.self) } ?? ""
        }

        // key → (account, amount) of every acknowledged debit, over all rounds.
        var acknowledged: [String: (account: String, amount: Int64)] = [:]
        var repeatedAcknowledgements = 0
        for round in 0 ..< 4 {
            let killAfterNanos = UInt64(100 + random.below(501)) * 1_000_000
            // Every 5,000 records is more than a run of a few hundred ms reaches on a shard in a
            // debug build: rounds 0 and 2 snapshot more often (round 0 during the funding), so
            // snapshots are taken, used and interrupted by kills too.
            let snapshotEvery = ["1000", "5000", "300", "5000"][round]
            let child = try DurabilityChild.spawn(credits, ["load", "--data", data, "--accounts", "2000", "--durability", "strict",
                                                            "--shards", "4", "--snapshot-every", snapshotEvery] + keyArguments, errors: errors)
            var output: [UInt8] = []
            let started = durabilityNanos()
            var firstAcknowledgement: UInt64?
            var killed = false
            while child.read(into: &output, waitingMillis: 5) != nil {
                let now = durabilityNanos()
                if firstAcknowledgement == nil, output.contains(UInt8(ascii: "\n")) { firstAcknowledgement = now }
                if !killed, let first = firstAcknowledgement, now - first >= killAfterNanos {
                    child.kill(SIGKILL)
                    killed = true
                }
                if !killed, firstAcknowledgement == nil, now - started > 120_000_000_000 {
                    child.kill(SIGKILL) // a deadline for a hang: no acknowledgement in 2 minutes
                    break
                }
            }
            let status = child.wait()
            close(child.output)
            try #require(killed && status.signal == SIGKILL,
                         "round \(round): the load child ended by itself (exit \(status.exitCode.map(String.init) ?? "-"), signal \(status.signal.map(String.init) ?? "-")): \(childErrors())")
            // Only complete lines are acknowledgements (each is written with one write call).
            var text = String(decoding: output, as: UTF8.self)
            if let lastNewline = text.lastIndex(of: "\n") { text = String(text[...lastNewline]) } else { text = "" }
            var lines = 0
            for line in text.split(separator: "\n") {
                guard let key = jsonField(line, "key"), let account = jsonField(line, "account"),
                      let amount = jsonField(line, "amount_mc").flatMap({ Int64($0) }) else {
                    Issue.record("round \(round): not an acknowledgement line: \(line)")
                    continue
                }
                if acknowledged.updateValue((String(account), amount), forKey: String(key)) != nil { repeatedAcknowledgements += 1 }
                lines += 1
            }
            print("CrashTests round \(round): killed \(killAfterNanos / 1_000_000) ms after the first acknowledgement; \(lines) acknowledged")
            #expect(lines > 0, "round \(round): nothing was acknowledged before the kill")
        }
        #expect(repeatedAcknowledgements == 0, "a key was acknowledged twice (keys are unique per run)")

        // The log is whole (a torn tail would be reported, not an error) ...
        let verify = try runToEnd(credits, ["wal", "verify", data] + keyArguments, errors: errors)
        #expect(verify.exitCode == 0, "credits wal verify: \(verify.output) \(childErrors())")

        // ... every acknowledged debit is in the export exactly once ...
        let export = try runToEnd(credits, ["export", "--data", data] + keyArguments, errors: errors)
        try #require(export.exitCode == 0, "credits export failed: \(childErrors())")
        var debits: [String: Int] = [:]
        var summary = false
        for line in export.output.split(separator: "\n") {
            if jsonField(line, "type") == "summary" { summary = true }
            guard jsonField(line, "type") == "entry", jsonField(line, "kind") == "debited", jsonField(line, "ok") == "true",
                  let key = jsonField(line, "key") else { continue }
            debits[String(key), default: 0] += 1
        }
        #expect(summary, "the export did not finish")
        var lost = 0
        for (key, _) in acknowledged where debits[key] != 1 {
            if debits[key] ?? 0 == 0 { lost += 1 }
            Issue.record("acknowledged debit \(key) appears \(debits[key] ?? 0) times in the export")
            if lost > 10 { break }
        }
        #expect(debits.values.allSatisfy { $0 == 1 }, "a debit key appears more than once")

        // ... and the engine opens on it with every invariant holding; retrying each acknowledged
        // debit returns its original success and changes nothing.
        var storage = StorageConfiguration(directory: data)
        if sealed { storage.encryption = try EncryptionKeyRing(keys: [keyBytes]) }
        let configuration = EngineConfiguration(shardCount: 4, storage: storage)
        let engine = try await CreditEngine.open(configuration: configuration)
        await engine.expectInvariants()
        let before = await engine.stateDigests()
        var retries: [Command] = []
        for (key, debit) in acknowledged {
            guard let id = IdempotencyKey(hex: key), debit.account.hasPrefix("t"), debit.account.hasSuffix("/a0"),
                  let tenant = UInt64(debit.account.dropFirst().dropLast(3)) else {
                Issue.record("cannot parse acknowledged debit \(key) of \(debit.account)")
                continue
            }
            retries.append(Command(key: id, .debit(AccountID(tenant: TenantID(tenant), number: 0), Millicredits(debit.amount), scope: .unscoped)))
        }
        let outcomes = await engine.execute(batch: retries)
        for (command, outcome) in zip(retries, outcomes) {
            guard case .success(let receipt) = outcome, case .debit(_, let amount, _) = command.action, receipt.amount == amount else {
                Issue.record("retry of acknowledged debit \(command.key): \(outcome)")
                continue
            }
        }
        #expect(await engine.stateDigests() == before, "retries of acknowledged debits changed the state")
        await engine.close()
        print("CrashTests: \(acknowledged.count) debits acknowledged over 4 kills, all recovered once; recovery reports: "
            + engine.recoveryReports.map { "shard \($0.shard): snapshot \($0.snapshot ?? "-"), \($0.recordsReplayed) replayed, \($0.tornBytesDropped) torn bytes" }.joined(separator: "; "))
        for report in engine.recoveryReports {
            #expect(report.snapshotsRejected.isEmpty, "shard \(report.shard): snapshots rejected: \(report.snapshotsRejected)")
        }
    }
}
