@testable import CreditCore
import Testing

// PagedArray shares pages between copies and tracks which pages an array owns alone
// (an ownership bit per page, valid while its owner token is unique and not retired). A
// bug there is silent: a write through one copy shows in another, i.e. a snapshot that
// changes under the snapshot thread. This test models every copy as a plain array and
// checks all live copies after every step.
@Suite("PagedArray: copies never see each other's writes")
struct PagedArrayTests {
    @Test("random appends, writes and copies over several live copies keep each equal to its model")
    func copiesStayIndependent() throws {
        let seed = try #require(PropertySettings.seed, "CREDITS_TEST_SEED must be a decimal or 0x-hex UInt64")
        print("PagedArrayTests seed: \(seed)")
        var random = SplitMix64(seed: seed)
        var arrays: [PagedArray<UInt64>] = [PagedArray()]
        var models: [[UInt64]] = [[]]
        for step in 0 ..< 4_000 {
            let which = Int(random.next() % UInt64(arrays.count))
            switch random.next() % 10 {
            case 0 where arrays.count < 6:
                // A copy (as a snapshot takes one), kept alive beside the original.
                arrays.append(arrays[which])
                models.append(models[which])
            case 1 where arrays.count > 1:
                // A copy dropped (a snapshot written): its pages may become unique again.
                arrays.remove(at: which)
                models.remove(at: which)
            case 2, 3:
                for _ in 0 ..< Int(random.next() % 150) {
                    let value = random.next()
                    arrays[which].append(value)
                    models[which].append(value)
                }
            default:
                guard !models[which].isEmpty else { continue }
                for _ in 0 ..< Int(random.next() % 40) {
                    let index = Int(random.next() % UInt64(models[which].count))
                    let value = random.next()
                    if random.next() % 2 == 0 {
                        arrays[which][UInt32(index)] = value
                    } else {
                        arrays[which][UInt32(index)] &+= value // through _modify
                        models[which][index] &+= value
                        continue
                    }
                    models[which][index] = value
                }
            }
            for (array, model) in zip(arrays, models) {
                #expect(array.invariantProblems() == [], "seed \(seed), step \(step)")
                #expect(array.count == model.count, "seed \(seed), step \(step)")
                #expect(array.elements == model, "seed \(seed), step \(step): a copy saw another's write")
            }
        }
    }

    @Test("fill, removeAll and repeating: the values asked for, and a copy keeps its own")
    func bulkOperations() {
        var table = PagedArray<UInt32>(repeating: 7, count: 3_000)
        #expect(table.count == 3_000 && table.elements.allSatisfy { $0 == 7 })
        let frozen = table
        table.fill(with: 9)
        table[17] = 1
        #expect(table.elements.filter { $0 == 9 }.count == 2_999 && table[17] == 1)
        #expect(frozen.elements.allSatisfy { $0 == 7 }, "fill wrote into pages a copy shares")
        table.removeAll()
        #expect(table.count == 0 && table.first == nil && table.last == nil)
        table.append(4)
        #expect(table.elements == [4] && frozen.count == 3_000)
    }
}
