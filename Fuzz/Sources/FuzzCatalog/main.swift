// The catalog parser (`Catalog.parse(text:)`): any text parses to a catalog or throws a typed
// `CatalogError` naming the line and column. Never a trap.
import CreditPricing
import FuzzSupport

func fuzzCatalog(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
    do {
        _ = try Catalog.parse(text: text)
    } catch {
        _ = error.code
    }
    return 0
}

#if canImport(Glibc)
import Glibc
#endif
exit(runFuzzer(fuzzCatalog))
