// `--data-key FILE` (repeatable, newest last): the data keys a data directory is sealed with
// (docs/encryption.md). Shared by every command that opens a data directory.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CreditEngine
@_spi(Plumbing) import CreditPersistence

struct DataKeyOptions: ParsableArguments {
    @Option(name: .customLong("data-key"),
            help: ArgumentHelp("A data key file: exactly 32 random bytes, outside the data directory. Repeat it for a key ring, newest last: the newest seals new segments and snapshots, every one opens what it sealed.",
                               valueName: "FILE"))
    var dataKeys: [String] = []

    func validate() throws {
        for path in dataKeys { try checkPath("--data-key", path) }
    }

    /// The key ring, nil when no key is given. Refuses a file that is not exactly 32 bytes or
    /// that lies inside `dataDirectory`. Key bytes are never printed: errors name the file.
    func ring(dataDirectory: String) throws -> EncryptionKeyRing? {
        guard !dataKeys.isEmpty else { return nil }
        let directory = Self.resolved(dataDirectory)
        var keys: [[UInt8]] = []
        for path in dataKeys {
            if let directory, let file = Self.resolved(path), file == directory || file.hasPrefix(directory + "/") {
                throw ValidationError("--data-key \(path) lies inside the data directory \(dataDirectory): keep keys elsewhere (a stolen disk or backup would hold both)")
            }
            let bytes: [UInt8]
            do { bytes = try readRegularFile(path, bytesMax: 4_096) } catch {
                throw ValidationError("--data-key \(path): \(error)")
            }
            guard bytes.count == 32 else {
                throw ValidationError("--data-key \(path) holds \(bytes.count) bytes; a data key is exactly 32 random bytes (e.g. head -c 32 /dev/urandom > FILE)")
            }
            keys.append(bytes)
        }
        do { return try EncryptionKeyRing(keys: keys) } catch {
            throw ValidationError("--data-key: \(error)")
        }
    }

    /// The absolute, symlink-free path of `path` (of its parent when it does not exist yet),
    /// nil when it cannot be resolved.
    static func resolved(_ path: String) -> String? {
        if let real = realpath(path, nil) {
            defer { free(real) }
            return String(cString: real)
        }
        // A data directory not created yet: resolve its parent.
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        guard let slash = trimmed.lastIndex(of: "/") else {
            return resolved(".").map { $0 + "/" + trimmed }
        }
        let parent = slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
        guard let base = resolved(parent) else { return nil }
        return (base == "/" ? "" : base) + "/" + trimmed[trimmed.index(after: slash)...]
    }
}
