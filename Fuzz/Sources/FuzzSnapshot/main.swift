// The snapshot decoder: with an even first byte, the rest is a ledger state as a snapshot's
// LZ4 frame decompresses to (`Ledger(decodingState:)`, which checks every field and the
// invariants); with an odd one, a whole snapshot file (`SnapshotFile.decode`: header, CRC,
// frame, state). Either decodes to a consistent ledger or throws a typed error. A sealed
// snapshot (version 2, docs/encryption.md) is opened with the fuzz data key, bytes 0...31.
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence
import CreditEngine
import FuzzSupport

let fuzzKeys = try! EncryptionKeyRing(keys: [(0 ..< 32).map { UInt8($0) }])

func fuzzSnapshot(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzBytes(data, size)
    guard let mode = input.first else { return 0 }
    let bytes = Array(input.dropFirst())
    // The configuration of the seeds' engine (2 shards, the golden fixture's): the decoder
    // refuses a state whose key capacity or window differs from the configured one.
    let configuration = EngineConfiguration(shardCount: 2).shardLedgerConfiguration
    if mode % 2 == 0 {
        var reader = ByteReader(bytes)
        do {
            let ledger = try Ledger(decodingState: &reader, configuration: configuration)
            precondition(ledger.invariantViolations().isEmpty, "a decoded state breaks an invariant")
        } catch {
            _ = error.code
        }
    } else {
        do {
            let (_, ledger) = try SnapshotFile.decode(bytes, configuration: configuration, keys: fuzzKeys)
            precondition(ledger.invariantViolations().isEmpty, "a decoded snapshot breaks an invariant")
        } catch {
            _ = error.code
        }
    }
    return 0
}

#if canImport(Glibc)
import Glibc
#endif
exit(runFuzzer(fuzzSnapshot))
