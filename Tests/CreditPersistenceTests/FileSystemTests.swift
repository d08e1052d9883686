#if canImport(Glibc)
import DurabilityTestSupport
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// The two file systems the contract tests run against: the real one and the simulation,
/// which must behave alike (the simulation is only useful if code tested on it works on disk).
enum FileLayerKind: String, CaseIterable, CustomStringConvertible, Sendable {
    case posix
    case simulated
    var description: String { rawValue }
}

/// A fresh, empty directory on one of the file systems, removed again by `cleanUp`.
struct FileLayerSandbox {
    let fileSystem: any FileSystem
    let root: String

    init(_ kind: FileLayerKind) throws {
        switch kind {
        case .posix:
            root = try makeTemporaryDirectory("persistence-tests")
            fileSystem = PosixFileSystem()
        case .simulated:
            root = "/sandbox"
            fileSystem = SimulatedFileSystem()
            try fileSystem.createDirectory(root)
        }
    }

    func path(_ name: String) -> String { root + "/" + name }

    func write(_ name: String, _ bytes: [UInt8]) throws {
        let file = try fileSystem.open(path(name), create: true)
        defer { file.close() }
        try file.truncate(0)
        try file.write(bytes, at: 0)
    }

    func cleanUp() { Self.removeTree(root, fileSystem) }

    private static func removeTree(_ path: String, _ fileSystem: any FileSystem) {
        if let names = try? fileSystem.contentsOfDirectory(path) {
            for name in names { removeTree(path + "/" + name, fileSystem) }
        }
        try? fileSystem.remove(path)
    }
}

/// Expects `body` to throw a `FileError` and returns it.
func expectFileLayerError<T>(_ comment: Comment? = nil, _ body: () throws(FileError) -> T) -> FileError? {
    do {
        let value = try body()
        Issue.record("expected a FileError, got \(value). \(comment?.rawValue ?? "")")
        return nil
    } catch {
        return error
    }
}

@Suite("File layer: the POSIX file system and the simulation keep the same contract")
struct FileSystemTests {
    @Test("createDirectory works like mkdir -p and refuses a file in the way", arguments: FileLayerKind.allCases)
    func createDirectory(kind: FileLayerKind) throws {
        let box = try FileLayerSandbox(kind)
        defer { box.cleanUp() }
        let fs = box.fileSystem
        try fs.createDirectory(box.path("a/b/c"))
        try fs.createDirectory(box.path("a/b/c")) // already there: fine
        #expect(fs.fileExists(box.path("a/b/c")))
        #expect(try fs.contentsOfDirectory(box.path("a")) == ["b"])
        try box.write("a/file", [1])
        #expect(expectFileLayerError { () throws(FileError) in try fs.createDirectory(box.path("a/file/d")) }
            == FileError(operation: "mkdir", path: box.path("a/file"), code: ENOTDIR))
    }

    @Test("writes land at their offsets; reads return fewer bytes only at the end", arguments: FileLayerKind.allCases)
    func writeAndReadAtOffsets(kind: FileLayerKind) throws {
        let box = try FileLayerSandbox(kind)
        defer { box.cleanUp() }
        let file = try box.fileSystem.open(box.path("data"), create: true)
        defer { file.close() }
        try file.write([1, 2, 3, 4], at: 0)
        try file.write([9, 9], at: 10) // leaves a gap of zeros
        try file.write([7], at: 2)
        let expected: [UInt8] = [1, 2, 7, 4, 0, 0, 0, 0, 0, 0, 9, 9]
        #expect(try file.read(at: 0, count: 12) == expected)
        #expect(try file.read(at: 8, count: 100) == [0, 0, 9, 9])
        #expect(try file.read(at: 12, count: 5) == [])
        #expect(try file.read(at: 1_000, count: 5) == [])
        #expect(try box.fileSystem.size(of: box.path("data")) == 12)
        #expect(try box.fileSystem.readFile(box.path("data")) == expected)
        try file.sync()
        #expect(file.path == box.path("data"))
    }

    @Test("a large file reads back whole", arguments: FileLayerKind.allCases)
    func largeFile(kind: FileLayerKind) throws {
        var random = FileLayerRandom.seeded("largeFile \(kind)")
        let box = try FileLayerSandbox(kind)
        defer { box.cleanUp() }
        let bytes = random.bytes(3 << 20 + 123)
        try box.write("big", bytes)
        #expect(try box.fileSystem.readFile(box.path("big")) == bytes)
        let file = try box.fileSystem.open(box.path("big"), create: false)
        defer { file.close() }
        #expect(try file.read(at: 1 << 20, count: 1 << 20) == Array(bytes[1 << 20 ..< 2 << 20]))
    }

    @Test("open with create never truncates; open without create needs the file", arguments: FileLayerKind.allCases)
    func openSemantics(kind: FileLayerKind) throws {
        let box = try FileLayerSandbox(kind)
        defer { box.cleanUp() }
        let fs = box.fileSystem
        try box.write("kept", [5, 6, 7])
        let again = try fs.open(box.path("kept"), create: true)
        again.close()
        #expect(try fs.readFile(box.path("kept")) == [5, 6, 7])

        let missing = box.path("missing.wal")
        let error = expectFileLayerError { () throws(FileError) in try fs.open(missing, create: false) }
        #expect(error == FileError(operation: "open", path: missing, code: ENOENT))
        #expect(error?.description.contains(missing) == true)
        #expect(!fs.fileExists(missing))
        #expect(expectFileLayerError { () throws(FileError) in try fs.open(box.path("no/such/dir/file"), create: true) }?.code == ENOENT)
        try fs.createDirectory(box.path("dir"))
        #expect(expectFileLayerError { () throws(FileError) in try fs.open(box.path("dir"), create: true) }?.code == EISDIR)
    }

    @Test("preallocate extends with zeros and never shrinks; truncate cuts and extends", arguments: FileLayerKind.allCases)
    func preallocateAndTruncate(kind: FileLayerKind) throws {
        let box = try FileLayerSandbox(kind)
        defer { box.cleanUp() }
        let fs = box.fileSystem
        let file = try fs.open(box.path("segment"), create: true)
        defer { file.close() }
        try file.write([1, 2, 3], at: 0)
        try file.preallocate(1 << 20)
        #expect(try fs.size(of: box.path("segment")) == 1 << 20)
        let contents = try fs.readFile(box.path("segment"))
        #expect(Array(contents.prefix(3)) == [1, 2, 3])
        #expect(contents.dropFirst(3).allSatisfy { $0 == 0 })
        try file.preallocate(100) // smaller: no change
        #expect(try fs.size(of: box.path("segment")) == 1 << 20)
        try file.truncate(2)
        #expect(try fs.readFile(box.path("segment")) == [1, 2])
        try file.truncate(5)
        #expect(try fs.readFile(box.path("segment")) == [1, 2, 0, 0, 0])
    }

    @Test("rename replaces the target whole; an open handle follows its file", arguments: FileLayerKind.allCases)
    func renameReplaces(kind: FileLayerKind) throws {
        let box = try FileLayerSandbox(kind)
        defer { box.cleanUp() }
        let fs = box.fileSystem
        try box.write("snapshot", [1, 1, 1, 1])
        try box.write("snapshot.tmp", [2, 2])
        let handle = try fs.open(box.path("snapshot.tmp"), create: false)
        defer { handle.close() }
        try fs.rename(box.path("snapshot.tmp"), to: box.path("snapshot"))
        #expect(try fs.readFile(box.path("snapshot")) == [2, 2])
        #expect(!fs.fileExists(box.path("snapshot.tmp")))
        try handle.write([3], at: 2)
        #expect(try fs.readFile(box.path("snapshot")) == [2, 2, 3])
        try fs.syncDirectory(box.root)

        let from = box.path("gone"), to = box.path("x")
        #expect(expectFileLayerError { () throws(FileError) in try fs.rename(from, to: to) }
            == FileError(operation: "rename", path: "\(from) -> \(to)", code: ENOENT))
    }

    @Test("directory listings are sorted names, without . and ..", arguments: FileLayerKind.allCases)
    func listingSorted(kind: FileLayerKind) throws {
        let box = try FileLayerSandbox(kind)
        defer { box.cleanUp() }
        for name in ["b", "a10", "0003.wal", "a2", "c"] { try box.write(name, []) }
        try box.fileSystem.createDirectory(box.path("sub"))
        #expect(try box.fileSystem.contentsOfDirectory(box.root) == ["0003.wal", "a10", "a2", "b", "c", "sub"])
        #expect(expectFileLayerError { () throws(FileError) in try box.fileSystem.contentsOfDirectory(box.path("none")) }?.code == ENOENT)
        #expect(expectFileLayerError { () throws(FileError) in try box.fileSystem.contentsOfDirectory(box.path("b")) }?.code == ENOTDIR)
    }

    @Test("remove takes files and empty directories, and names what it could not remove", arguments: FileLayerKind.allCases)
    func removeSemantics(kind: FileLayerKind) throws {
        let box = try FileLayerSandbox(kind)
        defer { box.cleanUp() }
        let fs = box.fileSystem
        try box.write("file", [1])
        try fs.remove(box.path("file"))
        #expect(!fs.fileExists(box.path("file")))
        #expect(expectFileLayerError { () throws(FileError) in try fs.remove(box.path("file")) }
            == FileError(operation: "unlink", path: box.path("file"), code: ENOENT))
        try fs.createDirectory(box.path("full/inner"))
        #expect(expectFileLayerError { () throws(FileError) in try fs.remove(box.path("full")) }
            == FileError(operation: "rmdir", path: box.path("full"), code: ENOTEMPTY))
        try fs.remove(box.path("full/inner"))
        try fs.remove(box.path("full"))
        #expect(try fs.contentsOfDirectory(box.root) == [])
    }

    @Test("missing paths and directories are errors naming the path", arguments: FileLayerKind.allCases)
    func errorsNamePaths(kind: FileLayerKind) throws {
        let box = try FileLayerSandbox(kind)
        defer { box.cleanUp() }
        let fs = box.fileSystem
        let missing = box.path("nothing")
        #expect(expectFileLayerError { () throws(FileError) in try fs.size(of: missing) } == FileError(operation: "stat", path: missing, code: ENOENT))
        #expect(expectFileLayerError { () throws(FileError) in try fs.readFile(missing) } == FileError(operation: "open", path: missing, code: ENOENT))
        #expect(expectFileLayerError { () throws(FileError) in try fs.syncDirectory(missing) } == FileError(operation: "open", path: missing, code: ENOENT))
        #expect(expectFileLayerError { () throws(FileError) in try fs.readFile(box.root) } == FileError.notRegularFile(box.root))
    }

    @Test("readFile refuses a file longer than its bound before reading it, and reads one at the bound", arguments: FileLayerKind.allCases)
    func readFileIsBounded(kind: FileLayerKind) throws {
        let box = try FileLayerSandbox(kind)
        defer { box.cleanUp() }
        let fs = box.fileSystem
        let path = box.path("bounded")
        let file = try fs.open(path, create: true)
        try file.write([UInt8](repeating: 7, count: 100), at: 0)
        file.close()
        #expect(try fs.readFile(path, bytesMax: 100).count == 100)
        #expect(expectFileLayerError { () throws(FileError) in try fs.readFile(path, bytesMax: 99) } == FileError.tooLarge(path))
    }

    @Test("readFile refuses a device and a FIFO without blocking, and a sparse file beyond its bound without allocating it")
    func readFileRefusesSpecialFiles() throws {
        let box = try FileLayerSandbox(.posix)
        defer { box.cleanUp() }
        let fs = box.fileSystem
        #expect(expectFileLayerError { () throws(FileError) in try fs.readFile("/dev/zero", bytesMax: 1 << 20) } == FileError.notRegularFile("/dev/zero"))
        let fifo = box.path("fifo")
        try #require(mkfifo(fifo, 0o600) == 0, "mkfifo failed: errno \(errno)")
        // Without O_NONBLOCK the open alone would wait for a writer forever.
        #expect(expectFileLayerError { () throws(FileError) in try fs.readFile(fifo, bytesMax: 1 << 20) } == FileError.notRegularFile(fifo))
        let sparse = box.path("sparse")
        let file = try fs.open(sparse, create: true)
        try file.truncate(1 << 40)
        file.close()
        #expect(expectFileLayerError { () throws(FileError) in try fs.readFile(sparse, bytesMax: 1 << 30) } == FileError.tooLarge(sparse))
        try fs.remove(fifo)
        try fs.remove(sparse)
    }

    @Test("files are written from several threads at once", arguments: FileLayerKind.allCases)
    func concurrentFiles(kind: FileLayerKind) async throws {
        let box = try FileLayerSandbox(kind)
        defer { box.cleanUp() }
        let fs = box.fileSystem
        let paths = (0 ..< 4).map { box.path("shard-\($0)") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, path) in paths.enumerated() {
                group.addTask {
                    let file = try fs.open(path, create: true)
                    defer { file.close() }
                    for block in 0 ..< 200 {
                        try file.write([UInt8](repeating: UInt8(index), count: 100), at: Int64(block * 100))
                        if block % 50 == 0 { try file.sync() }
                    }
                    try file.sync()
                }
            }
            try await group.waitForAll()
        }
        for (index, path) in paths.enumerated() {
            #expect(try fs.readFile(path) == [UInt8](repeating: UInt8(index), count: 20_000))
        }
    }

    @Test("error descriptions name the call, the path and the cause")
    func errorDescriptions() {
        #expect(FileError(operation: "fsync", path: "/data/wal/0001.wal", code: EIO).description
            == "fsync /data/wal/0001.wal failed: Input/output error (errno 5)")
        let simulated = FileError(operation: "fsync", path: "/w", code: FileError.injectedFault)
        #expect(simulated.isSimulated)
        #expect(simulated.description == "fsync /w failed: simulated Input/output error (code -5)")
        #expect(!FileError(operation: "open", path: "/w", code: ENOENT).isSimulated)
    }
}
