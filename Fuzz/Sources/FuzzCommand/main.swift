// The command decoder (`Command(decoding:)`), as the WAL reader calls it on a record's bytes
// after their checksum: any bytes decode to a command whose encoding decodes to the same
// command, or throw a typed `BinaryDecodingError`. Never a trap.
@_spi(Plumbing) import CreditCore
import FuzzSupport

func fuzzCommand(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzBytes(data, size)
    var reader = ByteReader(bytes)
    do {
        let command = try Command(decoding: &reader)
        try reader.expectEnd("the command")
        // What decodes is a command the log could hold: its encoding decodes to the same
        // command. (Not necessarily to the same bytes: a decoder may accept a spelling the
        // encoder never writes, e.g. a name the interned table already holds.)
        var writer = ByteWriter()
        command.encode(into: &writer)
        var again = ByteReader(writer.bytes)
        let decodedAgain = try Command(decoding: &again)
        precondition(decodedAgain == command, "a decoded command re-encodes to a different command")
    } catch {
        _ = error.code
    }
    return 0
}

#if canImport(Glibc)
import Glibc
#endif
exit(runFuzzer(fuzzCommand))
