#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A new empty directory under /tmp for one test, named `/tmp/credits-<label>-XXXXXX`
/// (every test target's one helper for it). Throws when mkdtemp fails.
package func makeTemporaryDirectory(_ label: String) throws -> String {
    var template = Array("/tmp/credits-\(label)-XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw TemporaryDirectoryError(label: label, errno: errno)
    }
    return String(cString: made)
}

/// mkdtemp failed.
package struct TemporaryDirectoryError: Error, CustomStringConvertible {
    package let label: String
    package let errno: Int32

    package var description: String { "mkdtemp /tmp/credits-\(label)-XXXXXX failed: errno \(errno)" }
}
