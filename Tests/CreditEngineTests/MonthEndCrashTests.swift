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

// Issue 5: a crash at random points during a month-end renewal of 100,000 accounts recovers
// to the same state as an uninterrupted run. Real `credits month-end run` processes are
// killed with SIGKILL; the clock of every run stands still at the cycle end, so whatever
// the kills interrupt, the last run must reach the uninterrupted run's state digests.

/// What `credits month-end run` printed at its end (its one JSON line).
private struct MonthEndResult {
    var renewed: Int
    var refused: Int
    var payments: Int
    var invariantViolations: Int
    var seconds: Double
    /// One per shard, as printed.
    var digests: [String]

    init?(_ output: String) {
        guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let renewed = jsonField(line, "renewed").flatMap({ Int($0) }),
              let refused = jsonField(line, "refused").flatMap({ Int($0) }),
              let payments = jsonField(line, "payments").flatMap({ Int($0) }),
              let violations = jsonField(line, "invariant_violations").flatMap({ Int($0) }),
              let seconds = jsonField(line, "seconds").flatMap({ Double($0) }),
              let start = line.firstRange(of: "\"digests\": [")?.upperBound,
              let end = line[start...].firstIndex(of: "]") else { return nil }
        self.renewed = renewed
        self.refused = refused
        self.payments = payments
        invariantViolations = violations
        self.seconds = seconds
        digests = line[start ..< end].split(separator: ",").map { String($0.filter { $0 != "\"" && $0 != " " }) }
    }
}

/// What a `month-end run` wrote to stderr so far: whether it is running (its directory is
/// open), and the most renewals of this run it reported durable ("month-end: renewed N").
/// Only whole lines count.
private func runProgress(_ path: String) -> (running: Bool, renewed: Int) {
    guard let bytes = try? PosixFileSystem().readFile(path) else { return (false, 0) }
    var text = String(decoding: bytes, as: UTF8.self)
    guard let lastNewline = text.lastIndex(of: "\n") else { return (false, 0) }
    text = String(text[...lastNewline])
    var running = false
    var renewed = 0
    for line in text.split(separator: "\n") {
        if line == "month-end: running" { running = true }
        if line.hasPrefix("month-end: renewed "), let count = Int(line.dropFirst("month-end: renewed ".count)) {
            renewed = max(renewed, count)
        }
    }
    return (running, renewed)
}

/// The snapshot files of each shard of `data` (whole and temporary), for the test's report.
private func snapshotFiles(_ data: String) -> String {
    let fileSystem = PosixFileSystem()
    let shards = ((try? fileSystem.contentsOfDirectory(data)) ?? []).filter { $0.hasPrefix("shard-") }
    return shards.map { shard in
        let names = (try? fileSystem.contentsOfDirectory(data + "/" + shard + "/snapshots")) ?? []
        let temporary = names.filter { $0.hasPrefix(".tmp-") }.count
        return "\(names.count - temporary)" + (temporary > 0 ? "+\(temporary) tmp" : "")
    }.joined(separator: "/")
}

/// Copies the tree at `source` to `destination` (which must not exist), file by file.
private func copyTree(_ source: String, to destination: String) throws {
    let fileSystem = PosixFileSystem()
    var info = stat()
    guard stat(source, &info) == 0 else { throw ChildFailure("cannot stat \(source): errno \(errno)") }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        try fileSystem.createDirectory(destination)
        for name in try fileSystem.contentsOfDirectory(source) { try copyTree(source + "/" + name, to: destination + "/" + name) }
        return
    }
    let input = try fileSystem.open(source, create: false)
    defer { input.close() }
    let output = try fileSystem.open(destination, create: true)
    defer { output.close() }
    var offset: Int64 = 0
    while true {
        let chunk = try input.read(at: offset, count: 8 << 20)
        if chunk.isEmpty { break }
        try output.write(chunk, at: offset)
        offset += Int64(chunk.count)
    }
}

@Suite("Crash test: a month-end renewal of 100,000 subscriptions, its `credits month-end run` killed with SIGKILL again and again")
struct MonthEndCrashTests {
    static let accounts = 100_000
    static let kills = 3
    /// A killed run is killed at the latest once it reports this many durable renewals, so
    /// the kills never finish the renewal (3 × 25,000 plus a turn each < 100,000): the last
    /// run always has renewals left, whatever the machine's speed.
    static let renewalsPerKilledRunMax = 25_000
    /// Records between snapshots in the killed runs: so few that a killed run starts a
    /// snapshot of each shard in its first turns and another as soon as one is written, so
    /// kills land while snapshots are being taken. The next run starts from a snapshot
    /// taken during the renewal, or from the set-up's when none was whole yet (the report
    /// line shows the snapshot files after each kill, and temporary ones a kill left).
    static let snapshotEveryWhenKilled = 2_000
    /// The uninterrupted and last runs take no snapshot (a run appends fewer records): the
    /// snapshots a crash may interrupt belong to the killed runs, and the runs to the end
    /// stay short. (They once also dodged a close that spun on `Task.yield()` while a
    /// snapshot's idle-priority thread waited for a core; `Shard.close()` now suspends.)
    static let snapshotEveryWhenRunToEnd = 1_000_000

    @Test("""
          Set up 100,000 subscribers once; renew a copy without interruption, and the original \
          through 3 runs killed with SIGKILL at seeded moments and a last run: same state \
          digests, invariants hold, the log verifies, nothing renewed twice
          """,
          .enabled(if: creditsExecutable != nil, "the credits executable was not found next to the test bundle"))
    func killDuringRenewal() async throws {
        let seed = DurabilitySeed.make("MonthEndCrashTests.killDuringRenewal")
        var random = DurabilityRandom(seed: seed)
        let credits = try #require(creditsExecutable)
        let root = try makeTemporaryDirectory("month-end")
        defer { removeTree(root) }
        let crashed = root + "/crashed"
        let uninterrupted = root + "/uninterrupted"
        func childErrors(_ path: String) -> String {
            (try? PosixFileSystem().readFile(path)).map { String(decoding: $0.suffix(2_000), as: UTF8.self) } ?? ""
        }
        var lapStarted = durabilityNanos()
        func lap() -> String {
            let now = durabilityNanos()
            defer { lapStarted = now }
            return "\(Double((now - lapStarted) / 1_000_000) / 1_000) s"
        }
        var timings: [String] = []

        // One set-up, ending with a snapshot (each run then starts from it rather than
        // replaying 400,000 set-up records), copied for the uninterrupted run.
        let setupErrors = root + "/setup.stderr"
        let setup = try runToEnd(credits, ["month-end", "setup", "--data", crashed, "--accounts", "\(Self.accounts)",
                                           "--durability", "strict", "--shards", "2", "--snapshot"], errors: setupErrors)
        try #require(setup.exitCode == 0, "month-end setup failed: \(childErrors(setupErrors))")
        try copyTree(crashed, to: uninterrupted)
        timings.append("set-up and copy \(lap())")

        // The uninterrupted run.
        let referenceErrors = root + "/uninterrupted.stderr"
        let reference = try runToEnd(credits, ["month-end", "run", "--data", uninterrupted,
                                               "--snapshot-every", "\(Self.snapshotEveryWhenRunToEnd)"], errors: referenceErrors)
        try #require(reference.exitCode == 0, "uninterrupted month-end run failed: \(childErrors(referenceErrors))")
        let expected = try #require(MonthEndResult(reference.output), "no result line: \(reference.output)")
        #expect(expected.renewed == Self.accounts && expected.payments == Self.accounts && expected.refused == 0,
                "uninterrupted run: \(reference.output)")
        #expect(expected.invariantViolations == 0)
        #expect(expected.digests.count == 2)
        timings.append("uninterrupted run \(lap()) (renewal \((expected.seconds * 1_000).rounded() / 1_000) s)")

        // Killed runs on the original. Round 0 is killed a seeded 0-2 s after it starts
        // renewing (maybe before its first renewal is durable); rounds 1 and 2 a seeded
        // 0-300 ms after they report a seeded 1,000-20,000 durable renewals. Every round is
        // killed at the latest at `renewalsPerKilledRunMax`.
        var durableInKilledRuns = 0
        var kills: [String] = []
        for round in 0 ..< Self.kills {
            let errors = root + "/killed-\(round).stderr"
            let trigger = round == 0 ? 0 : 1_000 * (1 + random.below(20))
            let delayMillis = UInt64(round == 0 ? random.below(2_000) : random.below(300))
            let child = try DurabilityChild.spawn(credits, ["month-end", "run", "--data", crashed,
                                                            "--snapshot-every", "\(Self.snapshotEveryWhenKilled)"], errors: errors)
            var output: [UInt8] = []
            let started = durabilityNanos()
            var triggeredAt: UInt64?
            var killed = false
            var seenAtKill = 0
            while child.read(into: &output, waitingMillis: 5) != nil {
                guard !killed else { continue }
                let now = durabilityNanos()
                let progress = runProgress(errors)
                if triggeredAt == nil, progress.running, progress.renewed >= trigger { triggeredAt = now }
                if progress.renewed >= Self.renewalsPerKilledRunMax
                    || triggeredAt.map({ now - $0 >= delayMillis * 1_000_000 }) ?? false {
                    child.kill(SIGKILL)
                    killed = true
                    seenAtKill = progress.renewed
                } else if triggeredAt == nil, now - started > 600_000_000_000 {
                    child.kill(SIGKILL) // a deadline for a hang: no trigger after 10 minutes
                    break
                }
            }
            let status = child.wait()
            close(child.output)
            try #require(killed && status.signal == SIGKILL,
                         "round \(round): month-end run ended by itself (exit \(status.exitCode.map(String.init) ?? "-"), signal \(status.signal.map(String.init) ?? "-")): \(childErrors(errors))")
            #expect(output.isEmpty, "round \(round): killed after its result: \(String(decoding: output, as: UTF8.self))")
            // Every line written before the kill is in the file now: the durable renewals it reported.
            let durable = runProgress(errors).renewed
            durableInKilledRuns += durable
            kills.append("\(trigger == 0 ? "running" : "\(trigger) renewed") + \(delayMillis) ms → killed at \(seenAtKill) "
                         + "(\(durable) durable; snapshot files \(snapshotFiles(crashed)))")
        }
        timings.append("\(Self.kills) killed runs \(lap())")

        // The last run renews what is left.
        let lastErrors = root + "/last.stderr"
        let last = try runToEnd(credits, ["month-end", "run", "--data", crashed,
                                          "--snapshot-every", "\(Self.snapshotEveryWhenRunToEnd)"], errors: lastErrors)
        try #require(last.exitCode == 0, "last month-end run failed: \(childErrors(lastErrors))")
        let result = try #require(MonthEndResult(last.output), "no result line: \(last.output)")
        timings.append("last run \(lap())")
        print("MonthEndCrashTests: kills: \(kills.joined(separator: "; ")); the last run renewed \(result.renewed) "
              + "(refused \(result.refused)); \(timings.joined(separator: ", "))")

        #expect(result.digests == expected.digests, "the killed and restarted renewal reached another state than the uninterrupted one")
        #expect(result.invariantViolations == 0)
        // Killed runs made durable progress, the last run still had renewals to do (so every
        // kill came during the renewal), and no renewal reported durable was done again.
        #expect(durableInKilledRuns > 0, "no killed run reported a durable renewal")
        #expect(result.renewed > 0, "the renewal was over before the last run")
        #expect(durableInKilledRuns + result.renewed <= Self.accounts,
                "\(durableInKilledRuns) renewals durable before the kills + \(result.renewed) by the last run > \(Self.accounts)")

        let verifyErrors = root + "/verify.stderr"
        let verify = try runToEnd(credits, ["wal", "verify", crashed], errors: verifyErrors)
        #expect(verify.exitCode == 0, "credits wal verify: \(verify.output) \(childErrors(verifyErrors))")
    }
}
