/// A growable array stored as fixed-size pages, each its own copy-on-write buffer aligned
/// to a cache line.
///
/// Why pages: a snapshot must not copy the whole table on the debit path. Copying a
/// `PagedArray` copies only the page list; the first write to a page afterwards copies that
/// one page (`pageSize` elements), so a snapshot of a million records costs a few hundred
/// small copies spread over the following writes instead of one large stall.
///
/// Why aligned: the ledger's records are 64 bytes; on a 64-byte boundary each is one cache
/// line, so reading one costs one miss, not two.
///
/// Indices are `UInt32`: a shard holds fewer than 2^32 records of a kind. `Element` must be
/// a plain value (no references), which the ledger's records are.
public struct PagedArray<Element>: Sendable where Element: Sendable {
    static var pageShift: Int { 10 }
    static var pageSize: Int { 1 << pageShift }
    static var pageMask: Int { pageSize - 1 }

    private var pages: [Page] = []
    public private(set) var count: Int = 0

    public init() {
        precondition(_isPOD(Element.self), "PagedArray holds plain values only")
    }

    /// One page of `pageSize` elements. Shared between copies of the array until one of
    /// them writes to it (copy on write, checked with `isKnownUniquelyReferenced`).
    final class Page: @unchecked Sendable {
        static var alignment: Int { 64 }
        let base: UnsafeMutablePointer<Element>
        var count = 0

        init() {
            base = UnsafeMutableRawPointer.allocate(byteCount: PagedArray.pageSize * MemoryLayout<Element>.stride,
                                                    alignment: max(Self.alignment, MemoryLayout<Element>.alignment))
                .bindMemory(to: Element.self, capacity: PagedArray.pageSize)
        }

        func copy() -> Page {
            let page = Page()
            page.base.initialize(from: base, count: count)
            page.count = count
            return page
        }

        deinit {
            base.deinitialize(count: count)
            base.deallocate()
        }
    }

    public subscript(index: UInt32) -> Element {
        @inline(__always) get {
            let index = Int(index)
            precondition(index < count, "PagedArray index out of range")
            return pages[index >> Self.pageShift].base[index & Self.pageMask]
        }
        @inline(__always) set {
            let index = Int(index)
            precondition(index < count, "PagedArray index out of range")
            let page = index >> Self.pageShift
            if !isKnownUniquelyReferenced(&pages[page]) { pages[page] = pages[page].copy() }
            pages[page].base[index & Self.pageMask] = newValue
        }
        /// In place, so `records[i].field += x` touches one field instead of copying the
        /// whole record out and back.
        @inline(__always) _modify {
            let index = Int(index)
            precondition(index < count, "PagedArray index out of range")
            let page = index >> Self.pageShift
            if !isKnownUniquelyReferenced(&pages[page]) { pages[page] = pages[page].copy() }
            let base = pages[page].base
            yield &base[index & Self.pageMask]
        }
    }

    /// The address of an element, for prefetching only.
    @inline(__always)
    func addressHint(_ index: UInt32) -> UnsafeRawPointer {
        let index = Int(index)
        return UnsafeRawPointer(pages[index >> Self.pageShift].base + (index & Self.pageMask))
    }

    /// Appends and returns the new element's index. O(1); allocates a page every `pageSize`.
    @discardableResult
    public mutating func append(_ element: Element) -> UInt32 {
        precondition(count < Int(UInt32.max), "PagedArray is full")
        if count & Self.pageMask == 0 { pages.append(Page()) }
        let page = count >> Self.pageShift
        if !isKnownUniquelyReferenced(&pages[page]) { pages[page] = pages[page].copy() }
        (pages[page].base + pages[page].count).initialize(to: element)
        pages[page].count += 1
        count += 1
        return UInt32(count - 1)
    }

    /// Calls `body` with every element in index order.
    public func forEach(_ body: (UInt32, Element) throws -> Void) rethrows {
        var index: UInt32 = 0
        for page in pages {
            for offset in 0 ..< page.count {
                try body(index, page.base[offset])
                index += 1
            }
        }
    }
}
