#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DurabilityTestSupport
import Testing
@_spi(Plumbing) import CreditPersistence

/// `openssl`, when installed (the keys of these tests are written by it, as an operator would).
let opensslExecutable: String? = ["/usr/bin/openssl", "/usr/local/bin/openssl", "/bin/openssl"].first { access($0, X_OK) == 0 }

@Suite("credits audit verify: openssl's keys, a killed load that still verifies, a restart that signs it, a wrong key")
struct AuditCLITests {
    @Test("a `credits load --audit-key` killed with SIGKILL verifies; `recover --audit-key` signs its tail; another key fails; a key in the data directory is refused",
          .enabled(if: creditsExecutable != nil && opensslExecutable != nil, "needs the credits executable and openssl"))
    func killedLoadVerifies() async throws {
        let seed = DurabilitySeed.make("AuditCLITests.killedLoadVerifies")
        var random = DurabilityRandom(seed: seed)
        let credits = try #require(creditsExecutable)
        let openssl = try #require(opensslExecutable)
        let root = try makeTemporaryDirectory("audit-cli")
        defer { removeTree(root) }
        let (key, pub, otherKey, otherPub) = (root + "/audit.pem", root + "/audit.pub", root + "/other.pem", root + "/other.pub")
        let data = root + "/data"
        let errors = root + "/stderr.txt"
        func childErrors() -> String {
            (try? PosixFileSystem().readFile(errors)).map { String(decoding: $0.suffix(2_000), as: UTF8.self) } ?? ""
        }
        for (privatePath, publicPath) in [(key, pub), (otherKey, otherPub)] {
            #expect(try runToEnd(openssl, ["genpkey", "-algorithm", "ed25519", "-out", privatePath], errors: errors).exitCode == 0)
            #expect(try runToEnd(openssl, ["pkey", "-in", privatePath, "-pubout", "-out", publicPath], errors: errors).exitCode == 0)
        }

        // A load killed at a seeded moment after its first acknowledgement (snapshots often, so
        // snapshot checkpoints are written and some kills land during one).
        let killAfterNanos = UInt64(50 + random.below(301)) * 1_000_000
        let child = try DurabilityChild.spawn(credits, ["load", "--data", data, "--accounts", "500", "--shards", "2",
                                                        "--snapshot-every", "700", "--audit-key", key], errors: errors)
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
        _ = child.wait()
        close(child.output)
        try #require(killed, "the load never acknowledged: \(childErrors())")

        func verify(_ keys: [String]) throws -> (line: Substring, exitCode: Int32?) {
            let run = try runToEnd(credits, ["audit", "verify", "--data", data, "--json"] + keys.flatMap { ["--public-key", $0] },
                                   errors: errors)
            return (run.output.split(separator: "\n").last ?? "", run.exitCode)
        }
        // The killed directory: the chain holds up to its end (records after the last
        // checkpoint are reported as unsigned, not as an error).
        let killedRun = try verify([pub])
        print("AuditCLITests: killed \(killAfterNanos / 1_000_000) ms after the first acknowledgement: \(killedRun.line)")
        #expect(killedRun.exitCode == 0, "\(killedRun.line) \(childErrors())")
        #expect(jsonField(killedRun.line, "ok") == "true")
        #expect(jsonField(killedRun.line, "first_bad") == "null")
        #expect((jsonField(killedRun.line, "records").flatMap { Int($0) } ?? 0) > 0)
        #expect(jsonField(killedRun.line, "checkpoints_verified") == "true")

        // A restart with the key closes cleanly: the close checkpoint signs everything.
        let recovered = try runToEnd(credits, ["recover", "--data", data, "--audit-key", key, "--json"], errors: errors)
        #expect(recovered.exitCode == 0, "\(recovered.output) \(childErrors())")
        let closed = try verify([pub])
        #expect(closed.exitCode == 0 && jsonField(closed.line, "ok") == "true", "\(closed.line)")
        #expect(jsonField(closed.line, "unsigned_records") == "0" && jsonField(closed.line, "unsealed_records") == "0", "\(closed.line)")
        #expect((jsonField(closed.line, "checkpoints").flatMap { Int($0) } ?? 0) >= 2)

        // Without a key: ok, and it says the signatures were not verified.
        let unkeyed = try verify([])
        #expect(unkeyed.exitCode == 0 && jsonField(unkeyed.line, "checkpoints_verified") == "false", "\(unkeyed.line)")
        #expect(unkeyed.line.contains("not verified"))

        // Another key: the checkpoints were not signed by it.
        let wrong = try verify([otherPub])
        #expect(wrong.exitCode == 1 && jsonField(wrong.line, "ok") == "false", "\(wrong.line)")
        #expect(jsonField(wrong.line, "problem") == "checkpoint_key_unknown", "\(wrong.line)")
        // Both keys (a rotation): fine.
        #expect(try verify([otherPub, pub]).exitCode == 0)

        // A signing key inside the data directory is refused before anything is opened.
        let inside = data + "/audit.pem"
        let copy = try PosixFileSystem().open(inside, create: true)
        try copy.write(try PosixFileSystem().readFile(key), at: 0)
        copy.close()
        let refused = try runToEnd(credits, ["load", "--data", data, "--seconds", "0.01", "--audit-key", inside], errors: errors)
        #expect(refused.exitCode != 0)
        #expect(childErrors().contains("audit_key_inside_data_directory"), "\(childErrors())")
        // A public key where the private one belongs: a typed refusal, not a trap.
        let notPrivate = try runToEnd(credits, ["recover", "--data", data, "--audit-key", pub], errors: errors)
        #expect(notPrivate.exitCode != 0 && childErrors().contains("audit_key_not_pem"), "\(childErrors())")
    }

    @Test("the version 1 golden fixture verifies by its CRCs and says its records are not chained",
          .enabled(if: creditsExecutable != nil, "needs the credits executable"))
    func versionOneFixture() throws {
        let credits = try #require(creditsExecutable)
        let root = try makeTemporaryDirectory("audit-v1")
        defer { removeTree(root) }
        let run = try runToEnd(credits, ["audit", "verify", "--data", GoldenFixtureTests.repositoryRoot + "/snapshots/v1-basic", "--json"],
                               errors: root + "/stderr.txt")
        let line = run.output.split(separator: "\n").last ?? ""
        #expect(run.exitCode == 0 && jsonField(line, "ok") == "true", "\(line)")
        let records = jsonField(line, "records").flatMap { Int($0) } ?? 0
        #expect(records > 0 && jsonField(line, "unchained_records") == "\(records)", "\(line)")
        #expect(jsonField(line, "seals") == "0")
        #expect(line.contains("version 1"))
    }
}
