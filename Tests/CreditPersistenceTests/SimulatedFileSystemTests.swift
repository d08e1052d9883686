#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// A simulated disk with "/d" created (durably, as createDirectory fsyncs parents) and
/// `name` in it holding `bytes`, synced and with the directory synced: fully durable.
private func durableFile(_ name: String = "f", bytes: [UInt8]) throws -> (SimulatedFileSystem, any WritableFile) {
    let fs = SimulatedFileSystem()
    try fs.createDirectory("/d")
    let file = try fs.open("/d/\(name)", create: true)
    try file.write(bytes, at: 0)
    try file.sync()
    try fs.syncDirectory("/d")
    return (fs, file)
}

@Suite("SimulatedFileSystem: a power cut keeps exactly what was synced")
struct SimulatedFileSystemTests {
    @Test("unsynced writes vanish on a crash; synced ones survive")
    func unsyncedWritesVanish() throws {
        let (fs, file) = try durableFile(bytes: [1, 2, 3])
        try file.write([9, 9], at: 1)
        try file.write([4], at: 3)
        #expect(try fs.readFile("/d/f") == [1, 9, 9, 4])
        #expect(fs.durableContents(of: "/d/f") == [1, 2, 3])
        fs.crash()
        #expect(try fs.readFile("/d/f") == [1, 2, 3])

        let reopened = try fs.open("/d/f", create: false)
        try reopened.write([7], at: 3)
        try reopened.sync()
        fs.crash()
        #expect(try fs.readFile("/d/f") == [1, 2, 3, 7])
    }

    @Test("a created and synced file vanishes when its directory was not synced")
    func createNeedsDirectorySync() throws {
        let fs = SimulatedFileSystem()
        try fs.createDirectory("/d")
        let file = try fs.open("/d/new.wal", create: true)
        try file.write([1], at: 0)
        try file.sync()
        #expect(fs.fileExists("/d/new.wal"))
        #expect(fs.durableContents(of: "/d/new.wal") == nil)
        fs.crash()
        #expect(!fs.fileExists("/d/new.wal"))
        #expect(try fs.contentsOfDirectory("/d") == [])

        let second = try fs.open("/d/new.wal", create: true)
        try second.write([2], at: 0)
        try second.sync()
        try fs.syncDirectory("/d")
        fs.crash()
        #expect(try fs.readFile("/d/new.wal") == [2])
    }

    @Test("createDirectory is durable at once: it syncs the parents")
    func createDirectoryDurable() throws {
        let fs = SimulatedFileSystem()
        try fs.createDirectory("/data/wal/shard-0")
        fs.crash()
        #expect(fs.fileExists("/data/wal/shard-0"))
        #expect(try fs.contentsOfDirectory("/data") == ["wal"])
    }

    @Test("a rename survives only with syncDirectory; without it the old names come back")
    func renameNeedsDirectorySync() throws {
        let (fs, _) = try durableFile("snapshot", bytes: [1])
        let temporary = try fs.open("/d/snapshot.tmp", create: true)
        try temporary.write([2, 2], at: 0)
        try temporary.sync()
        try fs.syncDirectory("/d")
        try fs.rename("/d/snapshot.tmp", to: "/d/snapshot")
        #expect(try fs.readFile("/d/snapshot") == [2, 2])
        fs.crash()
        #expect(try fs.readFile("/d/snapshot") == [1])
        #expect(try fs.readFile("/d/snapshot.tmp") == [2, 2])

        try fs.rename("/d/snapshot.tmp", to: "/d/snapshot")
        try fs.syncDirectory("/d")
        fs.crash()
        #expect(try fs.readFile("/d/snapshot") == [2, 2])
        #expect(try fs.contentsOfDirectory("/d") == ["snapshot"])
    }

    @Test("a remove survives only with syncDirectory")
    func removeNeedsDirectorySync() throws {
        let (fs, _) = try durableFile("old.wal", bytes: [5])
        try fs.remove("/d/old.wal")
        #expect(!fs.fileExists("/d/old.wal"))
        fs.crash()
        #expect(try fs.readFile("/d/old.wal") == [5])
        try fs.remove("/d/old.wal")
        try fs.syncDirectory("/d")
        fs.crash()
        #expect(!fs.fileExists("/d/old.wal"))
    }

    @Test("preallocate and truncate are undone by a crash unless synced")
    func resizesNeedSync() throws {
        let (fs, file) = try durableFile(bytes: [1, 2, 3, 4])
        try file.truncate(1)
        try file.preallocate(4096)
        #expect(try fs.size(of: "/d/f") == 4096)
        fs.crash()
        #expect(try fs.readFile("/d/f") == [1, 2, 3, 4])
        let reopened = try fs.open("/d/f", create: false)
        try reopened.preallocate(8)
        try reopened.sync()
        fs.crash()
        #expect(try fs.readFile("/d/f") == [1, 2, 3, 4, 0, 0, 0, 0])
    }

    @Test("handles opened before a crash are stale afterwards")
    func handlesStaleAfterCrash() throws {
        let (fs, file) = try durableFile(bytes: [1])
        fs.crash()
        #expect(expectFileLayerError { () throws(FileError) in try file.write([2], at: 0) }
            == FileError(operation: "write", path: "/d/f", code: FileError.staleHandle))
        #expect(expectFileLayerError { () throws(FileError) in try file.sync() }?.code == FileError.staleHandle)
        #expect(expectFileLayerError { () throws(FileError) in try file.read(at: 0, count: 1) }?.code == FileError.staleHandle)
        file.close()
        #expect(try fs.readFile("/d/f") == [1])
    }

    @Test("a torn crash keeps whole 512-byte sectors of unsynced writes, the same ones for the same seed")
    func tornWritesKeepWholeSectors() throws {
        let sector = SimulatedFileSystem.sectorSize
        let old = [UInt8](repeating: 0xAA, count: 8 * sector)
        /// The same history on a fresh disk: two unsynced writes, the second extending the file.
        func history() throws -> SimulatedFileSystem {
            let (fs, file) = try durableFile(bytes: old)
            try file.write([UInt8](repeating: 0x11, count: 3000), at: 100)          // sectors 0...6, partial at both ends
            try file.write([UInt8](repeating: 0x22, count: 2 * sector), at: Int64(7 * sector)) // sector 7 and a new sector 8
            return fs
        }
        var random = FileLayerRandom.seeded("tornWritesKeepWholeSectors")
        var outcomes = Set<[UInt8]>()
        for _ in 0 ..< 40 {
            let seed = random.next()
            let fs = try history()
            fs.crash(seed: seed)
            let after = try fs.readFile("/d/f")
            let twin = try history()
            twin.crash(seed: seed)
            #expect(try twin.readFile("/d/f") == after, "seed \(seed) is not deterministic")
            #expect(fs.durableContents(of: "/d/f") == after)
            outcomes.insert(after)

            // Each piece of a write inside one sector is all old or all new.
            #expect(after.count == 8 * sector || after.count == 9 * sector, "seed \(seed)")
            for index in 0 ..< 7 {
                let start = max(100, index * sector), end = min(3100, (index + 1) * sector)
                let piece = Set(after[start ..< end])
                #expect(piece == [0xAA] || piece == [0x11], "seed \(seed) sector \(index): \(piece)")
            }
            #expect(Set(after[7 * sector ..< 8 * sector]).count == 1, "seed \(seed)")
            if after.count == 9 * sector { #expect(Set(after[(8 * sector)...]) == [0x22], "seed \(seed)") }
            // Bytes outside the writes never change.
            #expect(after[..<100].allSatisfy { $0 == 0xAA } && after[3100 ..< 7 * sector].allSatisfy { $0 == 0xAA })
        }
        // 40 seeds over 9 coin flips: the crashes must really tear, not keep all or nothing.
        #expect(outcomes.count > 10)
    }

    @Test("synced data is never torn")
    func tornCrashKeepsSyncedData() throws {
        var random = FileLayerRandom.seeded("tornCrashKeepsSyncedData")
        let bytes = random.bytes(5000)
        let (fs, _) = try durableFile(bytes: bytes)
        fs.crash(seed: random.next())
        #expect(try fs.readFile("/d/f") == bytes)
    }

    @Test("an injected fsync failure throws and makes nothing durable")
    func injectedSyncFailure() throws {
        let (fs, file) = try durableFile(bytes: [1])
        try file.write([2], at: 0)
        fs.failNextSync(path: "/d/f")
        let error = expectFileLayerError { () throws(FileError) in try file.sync() }
        #expect(error == FileError(operation: "fsync", path: "/d/f", code: FileError.injectedFault))
        #expect(fs.durableContents(of: "/d/f") == [1])
        fs.crash()
        #expect(try fs.readFile("/d/f") == [1])
    }

    @Test("an armed fault waits for its path and fires once")
    func faultsMatchPaths() throws {
        let (fs, file) = try durableFile("a", bytes: [1])
        let other = try fs.open("/d/b", create: true)
        fs.failNextSync(path: "/d/a")
        try other.sync() // another file: not this fault
        #expect(expectFileLayerError { () throws(FileError) in try file.sync() }?.operation == "fsync")
        try file.sync() // the fault fired once

        fs.failNextSync() // any path, directories too
        #expect(expectFileLayerError { () throws(FileError) in try fs.syncDirectory("/d") }
            == FileError(operation: "fsync", path: "/d", code: FileError.injectedFault))
        fs.crash()
        #expect(!fs.fileExists("/d/b")) // the failed directory sync made nothing durable
    }

    @Test("an injected write failure throws and writes nothing")
    func injectedWriteFailure() throws {
        let (fs, file) = try durableFile(bytes: [1, 2])
        fs.failNextWrite()
        #expect(expectFileLayerError { () throws(FileError) in try file.write([9, 9, 9], at: 1) }
            == FileError(operation: "write", path: "/d/f", code: FileError.injectedFault))
        #expect(try fs.readFile("/d/f") == [1, 2])
        try file.write([3], at: 2)
        #expect(try fs.readFile("/d/f") == [1, 2, 3])
    }

    @Test("flipBit and truncate(path:to:) damage the data at rest: a crash does not undo them")
    func corruptionAtRest() throws {
        let (fs, _) = try durableFile(bytes: [0b0000_0001, 0xFF, 0x10])
        fs.flipBit(path: "/d/f", byteOffset: 0, bit: 1)
        fs.flipBit(path: "/d/f", byteOffset: 2, bit: 4)
        #expect(try fs.readFile("/d/f") == [0b0000_0011, 0xFF, 0x00])
        fs.crash()
        #expect(try fs.readFile("/d/f") == [0b0000_0011, 0xFF, 0x00])
        fs.truncate(path: "/d/f", to: 1)
        #expect(fs.durableContents(of: "/d/f") == [0b0000_0011])
        fs.crash()
        #expect(try fs.readFile("/d/f") == [0b0000_0011])
    }

    @Test("a removed file stays readable through an open handle, and a crash brings back only what was durable")
    func removedFileThroughHandle() throws {
        let (fs, file) = try durableFile(bytes: [1])
        try fs.remove("/d/f")
        try fs.syncDirectory("/d")
        try file.write([2], at: 1)
        #expect(try file.read(at: 0, count: 2) == [1, 2])
        fs.crash()
        #expect(!fs.fileExists("/d/f"))
    }

    @Test("counters count the calls")
    func counters() throws {
        let (fs, file) = try durableFile(bytes: [1, 2, 3])
        try file.write([4, 5], at: 3)
        try file.sync()
        #expect(fs.counters == SimulatedFileSystem.Counters(writes: 2, bytesWritten: 5, fileSyncs: 2, directorySyncs: 1))
    }
}
