#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// An in-memory `FileSystem` that models what survives a power cut, for crash tests.
///
/// Every file has two contents: the *current* one, which reads see, and the *durable* one,
/// which is what the disk holds: `WritableFile.sync` copies current to durable. Every
/// directory likewise has current and durable entries: creates, renames and removes change
/// the current entries, `syncDirectory` makes them durable. `crash()` is the power cut:
/// everything reverts to its durable state, so code that forgets a sync loses data here as it
/// would on a real machine — only deterministically.
///
/// The model is the pessimistic reading of POSIX: nothing unsynced survives a plain
/// `crash()`. `crash(seed:)` adds torn writes: each unsynced write may reach the disk in part,
/// a random subset of its 512-byte sectors, the unit a disk writes atomically.
///
/// Files are inodes, named by directory entries: a rename moves the name, not the content,
/// and an open handle keeps writing to its file after the file is renamed or removed.
/// Paths are split on "/"; empty and "." components are ignored, so "/a//b" and "a/b" name
/// the same file. The root directory always exists.
///
/// Thread-safe: one lock around the whole state.
@_spi(Plumbing) public final class SimulatedFileSystem: FileSystem {
    /// The sector size of torn writes: the unit a disk writes atomically.
    package static let sectorSize = 512

    /// Counts of calls, so tests can check how many fsyncs a group commit really issued.
    package struct Counters: Sendable, Equatable {
        package var writes = 0
        package var bytesWritten = 0
        package var fileSyncs = 0
        package var directorySyncs = 0
    }

    /// A directory entry: a file or directory inode.
    fileprivate enum Node: Hashable {
        case file(Int)
        case directory(Int)
    }

    /// A change to a file not yet synced, replayed in part by a torn crash.
    fileprivate enum PendingChange {
        case write(offset: Int, bytes: [UInt8])
        case resize(Int)
        case extend(Int)
    }

    fileprivate struct FileNode {
        var current: [UInt8] = []
        var durable: [UInt8] = []
        /// The changes since the last sync, oldest first (`current` = `durable` + these).
        var pending: [PendingChange] = []
        /// Open handles of this inode, which keep it alive after its last name is removed.
        var openHandles = 0
    }

    fileprivate struct DirectoryNode {
        var current: [String: Node] = [:]
        var durable: [String: Node] = [:]
    }

    fileprivate struct State {
        var files: [Int: FileNode] = [:]
        /// Directory 0 is the root.
        var directories: [Int: DirectoryNode] = [0: DirectoryNode()]
        var nextID = 1
        /// Bumped by every crash; a handle from an earlier generation is stale.
        var generation = 0
        /// Armed faults: nil fails the next call on any path.
        var syncFaults: [String?] = []
        var writeFaults: [String?] = []
        var counters = Counters()
    }

    private let state = Mutex(State())

    /// How long each file or directory sync takes, in µs: a slow disk, so tests can load a
    /// log faster than it syncs. The delay runs outside the lock, as a real fsync blocks
    /// only its caller.
    package let syncLatencyMicros: Int

    @_spi(Plumbing) public init(syncLatencyMicros: Int = 0) {
        precondition(syncLatencyMicros >= 0)
        self.syncLatencyMicros = syncLatencyMicros
    }

    private func waitForSyncLatency() {
        if syncLatencyMicros > 0 { usleep(UInt32(syncLatencyMicros)) }
    }

    /// Call counts since creation.
    package var counters: Counters { state.withLock { $0.counters } }

    // MARK: Fault injection and inspection

    /// The power cut: every file reverts to its durable content, every directory to its
    /// durable entries, and files and directories no durable entry reaches disappear. Handles
    /// opened before the crash throw `FileError` with code `FileError.staleHandle`.
    ///
    /// With a `seed`, each write since its file's last sync additionally reaches the disk in
    /// part: each 512-byte sector it touched (the part of the write inside the sector) is kept
    /// or lost at random, and each unsynced resize is kept or lost; the outcome is a pure
    /// function of the seed and the history. Directory changes are never torn: they
    /// revert whole. Armed faults stay armed.
    package func crash(seed: UInt64? = nil) {
        state.withLock { state in
            state.generation += 1
            var random = seed.map { TornWriteRandom(seed: $0) }
            // Sorted: the random draws must not depend on Dictionary's per-process order.
            for id in state.files.keys.sorted() {
                var file = state.files[id]!
                if random != nil {
                    for change in file.pending { Self.applyTorn(change, to: &file.durable, random: &random!) }
                }
                file.current = file.durable
                file.pending = []
                file.openHandles = 0
                state.files[id] = file
            }
            for id in state.directories.keys { state.directories[id]!.current = state.directories[id]!.durable }
            Self.collectUnreachable(&state)
        }
    }

    /// Makes the next `sync` of the file `path` (or of any file when nil) or `syncDirectory` of
    /// the directory `path` throw `FileError(operation: "fsync", code: FileError.injectedFault)`.
    /// Nothing becomes durable then: the unsynced changes stay unsynced (a crash drops them).
    package func failNextSync(path: String? = nil) {
        let key = path.map(Self.normalize)
        state.withLock { $0.syncFaults.append(key) }
    }

    /// Makes the next `write` to the file `path` (or to any file when nil) throw
    /// `FileError(operation: "write", code: FileError.injectedFault)` without writing anything.
    package func failNextWrite(path: String? = nil) {
        let key = path.map(Self.normalize)
        state.withLock { $0.writeFaults.append(key) }
    }

    /// Flips bit `bit` (0 = least significant) of byte `byteOffset` of the file, in both the
    /// current and the durable content: corruption at rest, which no sync undoes.
    package func flipBit(path: String, byteOffset: Int, bit: Int) {
        precondition((0 ..< 8).contains(bit), "bit must be 0...7")
        state.withLock { state in
            let id = Self.fileID(path, in: state)
            precondition(byteOffset >= 0 && byteOffset < state.files[id]!.current.count, "flipBit outside \(path)")
            state.files[id]!.current[byteOffset] ^= UInt8(1) << bit
            if byteOffset < state.files[id]!.durable.count { state.files[id]!.durable[byteOffset] ^= UInt8(1) << bit }
        }
    }

    /// Cuts (or zero-extends) the file to `size` bytes in both the current and the durable
    /// content, as a damaged disk or an interrupted copy would leave it.
    package func truncate(path: String, to size: Int) {
        precondition(size >= 0, "negative size")
        state.withLock { state in
            let id = Self.fileID(path, in: state)
            Self.resize(&state.files[id]!.current, to: size)
            Self.resize(&state.files[id]!.durable, to: size)
        }
    }

    /// What `path` would hold after `crash()` (without a seed): the durable content of the
    /// file the durable directory entries name, or nil when no such file would exist.
    package func durableContents(of path: String) -> [UInt8]? {
        state.withLock { state in
            guard case .file(let id)? = Self.resolve(path, in: state, durable: true) else { return nil }
            return state.files[id]!.durable
        }
    }

    // MARK: FileSystem

    @_spi(Plumbing) public func createDirectory(_ path: String) throws(FileError) {
        try state.withLock { (state) throws(FileError) in
            var directory = 0
            var prefix = ""
            for name in Self.components(path) {
                prefix += "/" + name
                switch state.directories[directory]!.current[name] {
                case .directory(let id)?:
                    directory = id
                case .file?:
                    throw FileError(operation: "mkdir", path: prefix, code: ENOTDIR)
                case nil:
                    let id = state.nextID
                    state.nextID += 1
                    state.directories[id] = DirectoryNode()
                    state.directories[directory]!.current[name] = .directory(id)
                    // PosixFileSystem fsyncs the parent of each directory it creates.
                    state.directories[directory]!.durable = state.directories[directory]!.current
                    directory = id
                }
            }
        }
    }

    @_spi(Plumbing) public func contentsOfDirectory(_ path: String) throws(FileError) -> [String] {
        try state.withLock { (state) throws(FileError) in
            let id = try Self.directoryID(path, in: state, operation: "opendir")
            return state.directories[id]!.current.keys.sorted()
        }
    }

    @_spi(Plumbing) public func fileExists(_ path: String) -> Bool {
        state.withLock { Self.resolve(path, in: $0, durable: false) != nil }
    }

    @_spi(Plumbing) public func size(of path: String) throws(FileError) -> Int64 {
        try state.withLock { (state) throws(FileError) in
            switch Self.resolve(path, in: state, durable: false) {
            case .file(let id)?: return Int64(state.files[id]!.current.count)
            case .directory?: return 0
            case nil: throw FileError(operation: "stat", path: path, code: ENOENT)
            }
        }
    }

    @_spi(Plumbing) public func open(_ path: String, create: Bool) throws(FileError) -> any WritableFile {
        let (id, generation) = try state.withLock { (state) throws(FileError) -> (Int, Int) in
            let (parent, name) = try Self.parentAndName(path, in: state, operation: "open")
            let id: Int
            switch state.directories[parent]!.current[name] {
            case .file(let existing)?:
                id = existing
            case .directory?:
                throw FileError(operation: "open", path: path, code: EISDIR)
            case nil:
                guard create else { throw FileError(operation: "open", path: path, code: ENOENT) }
                id = state.nextID
                state.nextID += 1
                state.files[id] = FileNode()
                state.directories[parent]!.current[name] = .file(id)
            }
            state.files[id]!.openHandles += 1
            return (id, state.generation)
        }
        return SimulatedFile(fileSystem: self, path: path, id: id, generation: generation)
    }

    @_spi(Plumbing) public func readFile(_ path: String, bytesMax: Int) throws(FileError) -> [UInt8] {
        try state.withLock { (state) throws(FileError) in
            switch Self.resolve(path, in: state, durable: false) {
            case .file(let id)?:
                guard state.files[id]!.current.count <= bytesMax else { throw FileError.tooLarge(path) }
                return state.files[id]!.current
            case .directory?: throw FileError.notRegularFile(path)
            case nil: throw FileError(operation: "open", path: path, code: ENOENT)
            }
        }
    }

    @_spi(Plumbing) public func rename(_ from: String, to: String) throws(FileError) {
        let description = "\(from) -> \(to)"
        try state.withLock { (state) throws(FileError) in
            let (sourceParent, sourceName) = try Self.parentAndName(from, in: state, operation: "rename")
            let (targetParent, targetName) = try Self.parentAndName(to, in: state, operation: "rename")
            guard let node = state.directories[sourceParent]!.current[sourceName] else {
                throw FileError(operation: "rename", path: description, code: ENOENT)
            }
            let replaced = state.directories[targetParent]!.current[targetName]
            if replaced == node { return } // same file: rename(2) does nothing
            switch (node, replaced) {
            case (.file, .directory?):
                throw FileError(operation: "rename", path: description, code: EISDIR)
            case (.directory, .file?):
                throw FileError(operation: "rename", path: description, code: ENOTDIR)
            case (.directory(let moved), let replaced):
                if case .directory(let old)? = replaced, !state.directories[old]!.current.isEmpty {
                    throw FileError(operation: "rename", path: description, code: ENOTEMPTY)
                }
                // A directory cannot move into itself.
                var ancestor: Int? = targetParent
                while let current = ancestor {
                    if current == moved { throw FileError(operation: "rename", path: description, code: EINVAL) }
                    ancestor = Self.parent(of: current, in: state)
                }
            default:
                break
            }
            state.directories[sourceParent]!.current[sourceName] = nil
            state.directories[targetParent]!.current[targetName] = node
            if let replaced { Self.collectIfUnreferenced(replaced, &state) }
        }
    }

    @_spi(Plumbing) public func remove(_ path: String) throws(FileError) {
        try state.withLock { (state) throws(FileError) in
            let (parent, name) = try Self.parentAndName(path, in: state, operation: "unlink")
            guard let node = state.directories[parent]!.current[name] else {
                throw FileError(operation: "unlink", path: path, code: ENOENT)
            }
            if case .directory(let id) = node, !state.directories[id]!.current.isEmpty {
                throw FileError(operation: "rmdir", path: path, code: ENOTEMPTY)
            }
            state.directories[parent]!.current[name] = nil
            Self.collectIfUnreferenced(node, &state)
        }
    }

    @_spi(Plumbing) public func syncDirectory(_ path: String) throws(FileError) {
        let key = Self.normalize(path)
        waitForSyncLatency()
        try state.withLock { (state) throws(FileError) in
            let id = try Self.directoryID(path, in: state, operation: "open")
            state.counters.directorySyncs += 1
            if Self.takeFault(&state.syncFaults, for: key) {
                throw FileError(operation: "fsync", path: path, code: FileError.injectedFault)
            }
            let dropped = state.directories[id]!.durable.values.filter { state.directories[id]!.current.values.contains($0) == false }
            state.directories[id]!.durable = state.directories[id]!.current
            for node in dropped { Self.collectIfUnreferenced(node, &state) }
        }
    }

    // MARK: Handles

    fileprivate func withFile<Result>(
        _ handle: SimulatedFile, _ operation: String,
        _ body: (inout State, inout FileNode) throws(FileError) -> Result
    ) throws(FileError) -> Result {
        try state.withLock { (state) throws(FileError) -> Result in
            guard handle.generation == state.generation, var file = state.files[handle.id] else {
                throw FileError(operation: operation, path: handle.path, code: FileError.staleHandle)
            }
            state.files[handle.id] = nil // avoid copying the contents on write
            defer { state.files[handle.id] = file }
            return try body(&state, &file)
        }
    }

    fileprivate func write(_ handle: SimulatedFile, _ bytes: UnsafeRawBufferPointer, at offset: Int) throws(FileError) {
        let key = Self.normalize(handle.path)
        try withFile(handle, "write") { (state, file) throws(FileError) in
            if Self.takeFault(&state.writeFaults, for: key) {
                throw FileError(operation: "write", path: handle.path, code: FileError.injectedFault)
            }
            state.counters.writes += 1
            state.counters.bytesWritten += bytes.count
            guard bytes.count > 0 else { return }
            let copy = [UInt8](bytes)
            Self.write(copy, at: offset, into: &file.current)
            file.pending.append(.write(offset: offset, bytes: copy))
        }
    }

    fileprivate func read(_ handle: SimulatedFile, at offset: Int, count: Int) throws(FileError) -> [UInt8] {
        try withFile(handle, "read") { (_, file) throws(FileError) in
            guard offset < file.current.count else { return [] }
            return Array(file.current[offset ..< min(file.current.count, offset + count)])
        }
    }

    fileprivate func sync(_ handle: SimulatedFile) throws(FileError) {
        let key = Self.normalize(handle.path)
        waitForSyncLatency()
        try withFile(handle, "fsync") { (state, file) throws(FileError) in
            state.counters.fileSyncs += 1
            if Self.takeFault(&state.syncFaults, for: key) {
                throw FileError(operation: "fsync", path: handle.path, code: FileError.injectedFault)
            }
            file.durable = file.current
            file.pending = []
        }
    }

    fileprivate func resize(_ handle: SimulatedFile, to size: Int, onlyExtend: Bool) throws(FileError) {
        try withFile(handle, onlyExtend ? "fallocate" : "ftruncate") { (_, file) throws(FileError) in
            if onlyExtend {
                guard size > file.current.count else { return }
                file.pending.append(.extend(size))
            } else {
                file.pending.append(.resize(size))
            }
            Self.resize(&file.current, to: size)
        }
    }

    fileprivate func close(_ handle: SimulatedFile) {
        state.withLock { state in
            guard handle.generation == state.generation, state.files[handle.id] != nil else { return }
            state.files[handle.id]!.openHandles -= 1
            Self.collectIfUnreferenced(.file(handle.id), &state)
        }
    }

    // MARK: Model

    private static func write(_ bytes: [UInt8], at offset: Int, into content: inout [UInt8]) {
        if content.count < offset + bytes.count { resize(&content, to: offset + bytes.count) }
        content.replaceSubrange(offset ..< offset + bytes.count, with: bytes)
    }

    private static func resize(_ content: inout [UInt8], to size: Int) {
        if size < content.count {
            content.removeLast(content.count - size)
        } else if size > content.count {
            content += [UInt8](repeating: 0, count: size - content.count)
        }
    }

    /// Replays `change` onto the durable content as a torn write: each sector piece of a
    /// write, and each resize, independently kept or lost with probability 1/2.
    private static func applyTorn(_ change: PendingChange, to content: inout [UInt8], random: inout TornWriteRandom) {
        switch change {
        case .write(let offset, let bytes):
            var start = offset
            let end = offset + bytes.count
            while start < end {
                let sectorEnd = min(end, (start / sectorSize + 1) * sectorSize)
                if random.next() & 1 == 1 {
                    write(Array(bytes[(start - offset) ..< (sectorEnd - offset)]), at: start, into: &content)
                }
                start = sectorEnd
            }
        case .resize(let size):
            if random.next() & 1 == 1 { resize(&content, to: size) }
        case .extend(let size):
            if random.next() & 1 == 1, size > content.count { resize(&content, to: size) }
        }
    }

    /// Drops the inode `node` (and, for a directory, everything under it) when no current or
    /// durable entry names it and no open handle uses it.
    private static func collectIfUnreferenced(_ node: Node, _ state: inout State) {
        if case .file(let id) = node, (state.files[id]?.openHandles ?? 0) > 0 { return }
        let named = state.directories.values.contains { $0.current.values.contains(node) || $0.durable.values.contains(node) }
        if named { return }
        switch node {
        case .file(let id):
            state.files[id] = nil
        case .directory(let id):
            guard let directory = state.directories.removeValue(forKey: id) else { return }
            for child in Set(directory.current.values).union(directory.durable.values) {
                collectIfUnreferenced(child, &state)
            }
        }
    }

    /// After a crash: keeps only what the root's entries reach.
    private static func collectUnreachable(_ state: inout State) {
        var reachedFiles = Set<Int>()
        var reachedDirectories: Set<Int> = [0]
        var queue = [0]
        while let id = queue.popLast() {
            for node in state.directories[id]!.current.values {
                switch node {
                case .file(let file): reachedFiles.insert(file)
                case .directory(let directory):
                    if reachedDirectories.insert(directory).inserted { queue.append(directory) }
                }
            }
        }
        state.files = state.files.filter { reachedFiles.contains($0.key) }
        state.directories = state.directories.filter { reachedDirectories.contains($0.key) }
    }

    private static func takeFault(_ faults: inout [String?], for path: String) -> Bool {
        guard let index = faults.firstIndex(where: { $0 == nil || $0 == path }) else { return false }
        faults.remove(at: index)
        return true
    }

    private static func components(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: true).map(String.init).filter { $0 != "." }
    }

    fileprivate static func normalize(_ path: String) -> String {
        "/" + components(path).joined(separator: "/")
    }

    private static func resolve(_ path: String, in state: State, durable: Bool) -> Node? {
        var node = Node.directory(0)
        for name in components(path) {
            guard case .directory(let id) = node,
                  let directory = state.directories[id],
                  let next = durable ? directory.durable[name] : directory.current[name]
            else { return nil }
            node = next
        }
        return node
    }

    private static func parent(of directory: Int, in state: State) -> Int? {
        state.directories.first { $0.value.current.values.contains(.directory(directory)) }?.key
    }

    private static func directoryID(_ path: String, in state: State, operation: String) throws(FileError) -> Int {
        switch resolve(path, in: state, durable: false) {
        case .directory(let id)?: return id
        case .file?: throw FileError(operation: operation, path: path, code: ENOTDIR)
        case nil: throw FileError(operation: operation, path: path, code: ENOENT)
        }
    }

    private static func parentAndName(_ path: String, in state: State, operation: String) throws(FileError) -> (Int, String) {
        var names = components(path)
        guard let name = names.popLast() else { throw FileError(operation: operation, path: path, code: EISDIR) }
        let parent = try directoryID(names.joined(separator: "/"), in: state, operation: operation)
        return (parent, name)
    }

    /// The file at `path` for the test helpers; a missing file is a bug in the test.
    private static func fileID(_ path: String, in state: State) -> Int {
        guard case .file(let id)? = resolve(path, in: state, durable: false) else {
            preconditionFailure("no file at \(path)")
        }
        return id
    }
}

/// A handle of a `SimulatedFileSystem` file.
///
/// Sendable without `@unchecked`: its fields never change except the atomic closed flag;
/// the file's state lives in the file system, behind its lock.
final class SimulatedFile: WritableFile {
    let fileSystem: SimulatedFileSystem
    let path: String
    let id: Int
    let generation: Int
    private let closed = Atomic<Bool>(false)

    init(fileSystem: SimulatedFileSystem, path: String, id: Int, generation: Int) {
        self.fileSystem = fileSystem
        self.path = path
        self.id = id
        self.generation = generation
    }

    deinit { close() }

    private func checkOpen() {
        precondition(!closed.load(ordering: .relaxed), "use of closed file \(path)")
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FileError) {
        checkOpen()
        precondition(offset >= 0, "negative file offset")
        try fileSystem.write(self, bytes, at: Int(offset))
    }

    func read(at offset: Int64, count: Int) throws(FileError) -> [UInt8] {
        checkOpen()
        precondition(offset >= 0 && count >= 0, "negative offset or count")
        return try fileSystem.read(self, at: Int(offset), count: count)
    }

    func sync() throws(FileError) {
        checkOpen()
        try fileSystem.sync(self)
    }

    func preallocate(_ size: Int64) throws(FileError) {
        checkOpen()
        precondition(size >= 0, "negative size")
        try fileSystem.resize(self, to: Int(size), onlyExtend: true)
    }

    func truncate(_ size: Int64) throws(FileError) {
        checkOpen()
        precondition(size >= 0, "negative size")
        try fileSystem.resize(self, to: Int(size), onlyExtend: false)
    }

    func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        fileSystem.close(self)
    }
}

/// The torn-write generator: SplitMix64, so a torn crash replays from its seed.
private typealias TornWriteRandom = SplitMix64
