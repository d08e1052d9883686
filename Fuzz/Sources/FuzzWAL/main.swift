// The WAL segment reader: the input is the only segment of a shard's log, on a simulated
// disk (no file system I/O, so millions of runs a minute). The read verifies the header,
// every record's checksum, LSN and chain, decodes each command, and tells a torn tail from
// corruption: it returns a report or throws a typed `WALReader.Failure`. Never a trap.
// Sealed segments (version 3, docs/encryption.md) are read with the fuzz data key, bytes
// 0...31 — public by design, the key of the sealed seed — so their frames are opened,
// decompressed and their inner records checked.
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence
import FuzzSupport

let fuzzKeys = try! EncryptionKeyRing(keys: [(0 ..< 32).map { UInt8($0) }])

func fuzzWAL(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let fileSystem = SimulatedFileSystem()
    let directory = "/wal"
    do {
        try fileSystem.createDirectory(directory)
        let file = try fileSystem.open(directory + "/" + WALFormat.segmentName(firstLSN: 1), create: true)
        try file.write(fuzzBytes(data, size), at: 0)
        try file.sync()
        file.close()
        try fileSystem.syncDirectory(directory)
    } catch {
        preconditionFailure("the simulated disk refused the segment: \(error)")
    }
    for mode in [WALReader.Mode.strict, .pointInTime] {
        do {
            var visited = 0
            let report = try WALReader.read(directory: directory, fileSystem: fileSystem, shard: 0, mode: mode,
                                            keys: fuzzKeys) { _ in visited += 1 }
            precondition(report.recordsVisited == visited, "the report counts other records than it visited")
        } catch let failure as WALReader.Failure {
            _ = failure.code
        } catch {
            preconditionFailure("an untyped error from the WAL reader: \(error)")
        }
    }
    return 0
}

#if canImport(Glibc)
import Glibc
#endif
exit(runFuzzer(fuzzWAL))
