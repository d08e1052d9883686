/// A growable array stored as fixed-size pages, each its own copy-on-write buffer.
///
/// Why pages: a snapshot must not copy the whole table on the debit path. Copying a
/// `PagedArray` copies only the page list; the first write to a page afterwards copies that
/// one page (`pageSize` elements), so a snapshot of a million records costs a few hundred
/// small copies spread over the following writes instead of one large stall.
///
/// Indices are `UInt32`: a shard holds fewer than 2^32 records of a kind.
public struct PagedArray<Element>: Sendable where Element: Sendable {
    static var pageShift: Int { 10 }
    static var pageSize: Int { 1 << pageShift }
    static var pageMask: Int { pageSize - 1 }

    private var pages: [[Element]] = []
    public private(set) var count: Int = 0

    public init() {}

    public subscript(index: UInt32) -> Element {
        @inline(__always) get {
            let index = Int(index)
            assert(index < count, "PagedArray index out of range")
            return pages[index >> Self.pageShift][index & Self.pageMask]
        }
        @inline(__always) _modify {
            let index = Int(index)
            precondition(index < count, "PagedArray index out of range")
            yield &pages[index >> Self.pageShift][index & Self.pageMask]
        }
    }

    /// The address of an element, for prefetching only.
    func addressHint(_ index: UInt32) -> UnsafeRawPointer {
        let index = Int(index)
        return pages[index >> Self.pageShift].withUnsafeBufferPointer {
            UnsafeRawPointer($0.baseAddress! + (index & Self.pageMask))
        }
    }

    /// Appends and returns the new element's index. O(1); allocates a page every `pageSize`.
    @discardableResult
    public mutating func append(_ element: Element) -> UInt32 {
        precondition(count < Int(UInt32.max), "PagedArray is full")
        if count & Self.pageMask == 0 {
            var page: [Element] = []
            page.reserveCapacity(Self.pageSize)
            pages.append(page)
        }
        pages[count >> Self.pageShift].append(element)
        count += 1
        return UInt32(count - 1)
    }

    /// Calls `body` with every element in index order.
    public func forEach(_ body: (UInt32, Element) throws -> Void) rethrows {
        var index: UInt32 = 0
        for page in pages {
            for element in page {
                try body(index, element)
                index += 1
            }
        }
    }
}
