import Synchronization

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
package struct PagedArray<Element>: @unchecked Sendable where Element: Sendable {
    // @unchecked: `bases` points into the pages of `pages`; a page is written only by the
    // one array that owns it alone (see `writableBase`), so copies on other threads read
    // pages nobody writes.
    /// About 4 KiB per page (64 of the ledger's 64-byte records, 1,024 32-bit slots), and
    /// at least 64 elements: the first write after a snapshot copies one page, so a turn
    /// that touches N shared pages copies about 4N KiB. With 64 KiB pages a 256-debit turn
    /// after a snapshot copied 32 MB (18 ms); with 4 KiB, 2 MB.
    static var pageShift: Int {
        let perPage = 4_096 / Swift.max(1, MemoryLayout<Element>.stride)
        return Swift.max(6, Int.bitWidth - 1 - perPage.leadingZeroBitCount)
    }
    static var pageSize: Int { 1 << pageShift }
    static var pageMask: Int { pageSize - 1 }

    /// The pages, for ownership (copy on write) only.
    private var pages: [Page] = []
    /// Each page's elements, in one contiguous list: reads go straight to the element,
    /// without touching the page object (with small pages those objects would be another
    /// cache miss per read).
    private var bases: [UnsafeMutablePointer<Element>] = []
    /// A bit per page: set once this array knows the page is its own (unshared), so a
    /// write needs no reference-count check on the page. Valid only while `owner` is
    /// uniquely referenced and not retired: copying the array shares `owner`, and the next
    /// write of either copy retires it and starts a fresh, empty set (see `makeOwn`).
    private var owned: [UInt64] = []
    private var owner = Owner()
    package private(set) var count: Int = 0

    package init() {
        precondition(_isPOD(Element.self), "PagedArray holds plain values only")
    }

    /// `count` copies of `value`.
    package init(repeating value: Element, count: Int) {
        self.init()
        reserve(count)
        for page in pages.indices {
            let filled = Swift.min(Self.pageSize, count - page * Self.pageSize)
            bases[page].initialize(repeating: value, count: filled)
            pages[page].count = filled
        }
        self.count = count
    }

    /// Appends empty pages for `count` elements (the caller fills them).
    private mutating func reserve(_ count: Int) {
        let pageCount = (count + Self.pageMask) >> Self.pageShift
        pages.reserveCapacity(pageCount)
        bases.reserveCapacity(pageCount)
        for _ in 0 ..< pageCount {
            let page = Page()
            pages.append(page)
            bases.append(page.base)
        }
        owned = [UInt64](repeating: ~0, count: (pageCount + 63) / 64)
    }

    /// Sets every element to `value`, in place where the pages are this array's own.
    package mutating func fill(with value: Element) {
        for page in pages.indices {
            writableBase(page).update(repeating: value, count: pages[page].count)
        }
    }

    /// Removes every element and frees the pages (those shared with a copy stay with it).
    package mutating func removeAll() {
        pages = []
        bases = []
        owned = []
        count = 0
    }

    package var first: Element? { count == 0 ? nil : self[0] }
    package var last: Element? { count == 0 ? nil : self[UInt32(count - 1)] }

    /// The elements as an array, in index order.
    package var elements: [Element] {
        var elements: [Element] = []
        elements.reserveCapacity(count)
        forEach { elements.append($1) }
        return elements
    }

    /// A token whose uniqueness says this array has not been copied since it set its bits.
    /// Retired for good by the first copy that sees it shared: that copy drops the token,
    /// which may leave it unique in another copy whose bits are stale (it still shares
    /// the pages the first copy has not written yet), and the flag tells that copy so.
    final class Owner: Sendable {
        let retired = Atomic<Bool>(false)
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

    package subscript(index: UInt32) -> Element {
        @inline(__always) get {
            let index = Int(index)
            precondition(index < count, "PagedArray index out of range")
            return bases[index >> Self.pageShift][index & Self.pageMask]
        }
        @inline(__always) set {
            let index = Int(index)
            precondition(index < count, "PagedArray index out of range")
            writableBase(index >> Self.pageShift)[index & Self.pageMask] = newValue
        }
        /// In place, so `records[i].field += x` touches one field instead of copying the
        /// whole record out and back.
        @inline(__always) _modify {
            let index = Int(index)
            precondition(index < count, "PagedArray index out of range")
            let base = writableBase(index >> Self.pageShift)
            yield &base[index & Self.pageMask]
        }
    }

    /// The elements of `page`, made this array's own first if they may be shared.
    @inline(__always)
    private mutating func writableBase(_ page: Int) -> UnsafeMutablePointer<Element> {
        if _fastPath(isKnownUniquelyReferenced(&owner) && owned[page >> 6] & (1 << UInt64(page & 63)) != 0
                     && !owner.retired.load(ordering: .acquiring)) {
            return bases[page]
        }
        return makeOwn(page)
    }

    @inline(never)
    private mutating func makeOwn(_ page: Int) -> UnsafeMutablePointer<Element> {
        if !isKnownUniquelyReferenced(&owner) || owner.retired.load(ordering: .acquiring) {
            // Copied since the bits were set: no page is known to be ours any more.
            owner.retired.store(true, ordering: .releasing)
            owner = Owner()
            owned = [UInt64](repeating: 0, count: owned.count)
        }
        if !isKnownUniquelyReferenced(&pages[page]) {
            pages[page] = pages[page].copy()
            bases[page] = pages[page].base
        }
        owned[page >> 6] |= 1 << UInt64(page & 63)
        return bases[page]
    }

    /// The address of an element, for prefetching only.
    @inline(__always)
    func addressHint(_ index: UInt32) -> UnsafeRawPointer {
        let index = Int(index)
        return UnsafeRawPointer(bases[index >> Self.pageShift] + (index & Self.pageMask))
    }

    /// Appends and returns the new element's index. O(1); allocates a page every `pageSize`.
    @discardableResult
    package mutating func append(_ element: Element) -> UInt32 {
        precondition(count < Int(UInt32.max), "PagedArray is full")
        if count & Self.pageMask == 0 {
            let page = Page()
            pages.append(page)
            bases.append(page.base)
            if pages.count > owned.count * 64 { owned.append(0) }
        }
        let page = count >> Self.pageShift
        let base = writableBase(page)
        (base + (count & Self.pageMask)).initialize(to: element)
        pages[page].count += 1
        count += 1
        return UInt32(count - 1)
    }

    /// Calls `body` with every element in index order.
    package func forEach(_ body: (UInt32, Element) throws -> Void) rethrows {
        var index: UInt32 = 0
        for page in pages {
            for offset in 0 ..< page.count {
                try body(index, page.base[offset])
                index += 1
            }
        }
    }
}

extension PagedArray {
    /// What is wrong with the structure (empty when nothing is): a page and a base per
    /// `pageSize` elements, each page's count what the array's count gives it, and each base
    /// its page's. O(pages); for tests.
    func invariantProblems() -> [String] {
        var problems: [String] = []
        let pagesNeeded = (count + Self.pageMask) >> Self.pageShift
        if pages.count < pagesNeeded || bases.count != pages.count {
            problems.append("\(count) elements in \(pages.count) pages (\(bases.count) bases), \(pagesNeeded) needed")
            return problems
        }
        for page in pages.indices {
            let filled = Swift.max(0, Swift.min(Self.pageSize, count - page * Self.pageSize))
            if pages[page].count != filled { problems.append("page \(page) holds \(pages[page].count), not \(filled)") }
            if bases[page] != pages[page].base { problems.append("page \(page) base is not its page's") }
        }
        if owned.count * 64 < pages.count { problems.append("\(owned.count) ownership words for \(pages.count) pages") }
        return problems
    }
}
