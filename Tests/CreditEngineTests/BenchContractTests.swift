// The load benchmark's command-line contract (issue 6), checked on the real `credits`
// executable: each scenario runs, counts exactly the operations asked for, and prints
// the JSON fields users and scripts (Benchmarks/compare.sh, scaling.sh) read.
import DurabilityTestSupport
import CreditEngine
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The number after `"key": ` in a flat JSON object (nil when absent).
private func number(_ json: String, _ key: String) -> Double? {
    guard let range = json.firstRange(of: "\"\(key)\": ") else { return nil }
    let rest = json[range.upperBound...].prefix { $0 != "," && $0 != "}" }
    return Double(rest.trimmingCharacters())
}

/// The string after `"key": ` in a flat JSON object.
private func text(_ json: String, _ key: String) -> String? {
    guard let range = json.firstRange(of: "\"\(key)\": \"") else { return nil }
    return String(json[range.upperBound...].prefix { $0 != "\"" })
}

private extension Substring {
    func trimmingCharacters() -> String { String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
}

@Suite("credits bench: scenarios and the --json contract")
struct BenchContractTests {
    @Test("each scenario runs exactly --ops operations and reports scenario, batch, percentiles in order and the engine's counters",
          .enabled(if: creditsExecutable != nil, "the credits executable was not found next to the test bundle"),
          arguments: [("uniform", ["--batch", "64"], 64), ("hot", [], 1_000), ("enterprise", ["--batch", "50"], 50),
                      ("reserve-settle", ["--batch", "10"], 10), ("mixed", [], 1)])
    func scenario(name: String, extra: [String], batch: Int) throws {
        let credits = try #require(creditsExecutable)
        let ops = name == "enterprise" ? 60_000 : 20_000
        let errors = "/tmp/credits-bench-contract-\(name)-\(getpid()).stderr"
        defer { unlink(errors) }
        let run = try runToEnd(credits, ["bench", "--scenario", name, "--accounts", "10000", "--ops", "\(ops)",
                                         "--concurrency", "8", "--json"] + extra, errors: errors)
        #expect(run.exitCode == 0, "\(name): \(run.output)")
        let json = run.output
        #expect(text(json, "scenario") == name)
        #expect(number(json, "ops") == Double(ops), "\(name): exactly --ops operations, a last batch cut short: \(json)")
        #expect(number(json, "batch") == Double(batch), "\(name): the batch in effect")
        #expect(number(json, "failed") == 0)
        let refused = try #require(number(json, "refused"))
        // Enterprise: 60,000 debits of 0.5 credit on average against departments capped
        // at one credit per member must meet the caps; nothing else refuses.
        if name == "enterprise" { #expect(refused > 0, "the limits refused nothing: \(json)") } else { #expect(refused == 0) }
        let p50 = try #require(number(json, "p50_us")), p99 = try #require(number(json, "p99_us"))
        let p999 = try #require(number(json, "p999_us")), maximum = try #require(number(json, "max_us"))
        #expect(p50 > 0 && p50 <= p99 && p99 <= p999 && p999 <= maximum * 1.001, "\(name): \(p50) \(p99) \(p999) \(maximum)")
        for field in ["ops_per_sec", "fsyncs", "records_per_fsync", "snapshots", "snapshot_stalls", "snapshot_stall_max_us"] {
            #expect(number(json, field) != nil, "\(name): no \(field) in \(json)")
        }
    }

    @Test("with strict durability the log's counters are reported (fsyncs, records per fsync)",
          .enabled(if: creditsExecutable != nil, "the credits executable was not found next to the test bundle"))
    func strictCounters() throws {
        let credits = try #require(creditsExecutable)
        let directory = try makeTemporaryDirectory("bench-contract")
        defer { removeTree(directory) }
        let run = try runToEnd(credits, ["bench", "--accounts", "5000", "--ops", "4000", "--batch", "1", "--concurrency", "16",
                                         "--durability", "strict", "--data", directory + "/data", "--json"],
                               errors: directory + "/stderr")
        #expect(run.exitCode == 0, "\(run.output)")
        #expect(number(run.output, "ops") == 4_000)
        let syncs = try #require(number(run.output, "fsyncs"))
        #expect(syncs > 0 && syncs <= 4_000 + 3 * 5_000, "every acknowledged call needs a sync, groups share them: \(run.output)")
        #expect((number(run.output, "records_per_fsync") ?? 0) >= 1)
    }
}
