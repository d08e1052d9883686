import DurabilityTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import credits

private func makeDirectory() throws -> String { try makeTemporaryDirectory("bounded-file") }

/// Name, type and size of every entry of `directory`, sorted: read with lstat only, so a
/// FIFO or a sparse terabyte costs nothing to look at.
private func listing(_ directory: String) -> [String] {
    guard let handle = opendir(directory) else { return ["cannot list \(directory)"] }
    defer { closedir(handle) }
    var lines: [String] = []
    while let entry = readdir(handle) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        guard name != "." && name != ".." else { continue }
        var info = stat()
        _ = lstat(directory + "/" + name, &info)
        lines.append("\(name) \(info.st_mode & S_IFMT) \(info.st_size)")
    }
    return lines.sorted()
}

/// Removes `directory` and what `make` put in it (files, a FIFO, an empty directory).
private func removeDirectory(_ directory: String) {
    for line in listing(directory) {
        let path = directory + "/" + String(line.prefix { $0 != " " })
        if unlink(path) != 0 { rmdir(path) }
    }
    rmdir(directory)
}

/// Writes `bytes` to a new file.
private func write(_ bytes: [UInt8], to path: String) throws {
    let descriptor = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
    try #require(descriptor >= 0)
    defer { close(descriptor) }
    let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
    try #require(written == bytes.count)
}

@Suite("Reading a named file: regular files only, bounded before a byte is read")
struct BoundedFileTests {
    static let bytesMax = 4 << 20

    enum Hostile: String, CaseIterable {
        case devZero, fifo, sparseTerabyte, directory, missing, oneByteOver
    }

    /// Makes the hostile file in `directory`; its path and the error reading it must give.
    private func make(_ hostile: Hostile, in directory: String) throws -> (String, BoundedReadError) {
        let path = directory + "/" + hostile.rawValue
        switch hostile {
        case .devZero:
            return ("/dev/zero", .notRegularFile(.characterDevice))
        case .fifo:
            try #require(mkfifo(path, 0o600) == 0)
            return (path, .notRegularFile(.fifo))
        case .sparseTerabyte:
            let descriptor = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            try #require(descriptor >= 0)
            defer { close(descriptor) }
            try #require(ftruncate(descriptor, 1 << 40) == 0, "this file system cannot hold a sparse 1 TiB file")
            return (path, .tooLarge(bytes: 1 << 40, bytesMax: Self.bytesMax))
        case .directory:
            try #require(mkdir(path, 0o700) == 0)
            return (path, .notRegularFile(.directory))
        case .missing:
            return (path, .cannotOpen(errno: ENOENT))
        case .oneByteOver:
            try write([UInt8](repeating: UInt8(ascii: "#"), count: Self.bytesMax + 1), to: path)
            return (path, .tooLarge(bytes: Int64(Self.bytesMax + 1), bytesMax: Self.bytesMax))
        }
    }

    @Test("a device, a FIFO without a writer, a sparse terabyte, a directory, a missing or oversized file: a typed error, nothing changed",
          arguments: Hostile.allCases)
    func hostileFileIsRefused(hostile: Hostile) throws {
        let directory = try makeDirectory()
        defer { removeDirectory(directory) }
        let (path, expected) = try make(hostile, in: directory)
        let before = listing(directory)
        // A FIFO would block a plain open and /dev/zero never ends: returning at all is the bound.
        #expect(throws: expected) { try readRegularFile(path, bytesMax: Self.bytesMax) }
        #expect(listing(directory) == before)
    }

    @Test("a header is read from a sparse terabyte without the rest; a device or FIFO is refused as for a whole read",
          arguments: [Hostile.sparseTerabyte, .devZero, .fifo, .directory, .missing])
    func prefixReadsOnlyTheHeader(hostile: Hostile) throws {
        let directory = try makeDirectory()
        defer { removeDirectory(directory) }
        let (path, wholeReadError) = try make(hostile, in: directory)
        let before = listing(directory)
        if case .tooLarge = wholeReadError {
            #expect(try readRegularFilePrefix(path, bytesMax: 64) == [UInt8](repeating: 0, count: 64))
        } else {
            #expect(throws: wholeReadError) { try readRegularFilePrefix(path, bytesMax: 64) }
        }
        #expect(listing(directory) == before)
    }

    @Test("a regular file of exactly the maximum is read whole")
    func fileAtTheLimitIsRead() throws {
        let directory = try makeDirectory()
        defer { removeDirectory(directory) }
        let bytes = (0 ..< Self.bytesMax).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try write(bytes, to: directory + "/catalog")
        #expect(try readRegularFile(directory + "/catalog", bytesMax: Self.bytesMax) == bytes)
        #expect(throws: BoundedReadError.tooLarge(bytes: Int64(Self.bytesMax), bytesMax: Self.bytesMax - 1)) {
            try readRegularFile(directory + "/catalog", bytesMax: Self.bytesMax - 1)
        }
    }
}
