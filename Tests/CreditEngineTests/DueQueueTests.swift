@testable import CreditEngine
import Testing

@Suite("Due queue: the scheduler's heap of due notes")
struct DueQueueTests {
    @Test("notes come out in order, once due, while the heap grows and shrinks across its pages")
    func popsInOrderAcrossPages() {
        var random = SplitMix64(seed: 7)
        func note() -> DueNote {
            // Few distinct times and kinds, so many notes tie on time and the order falls to kind and slot.
            DueNote(at: Int64(random.next() % 64), kind: DueNote.Kind(rawValue: UInt8(random.next() % 6))!,
                    slot: UInt32(random.next() % 5_000))
        }
        var expected = (0 ..< 3 * DueQueue.pageSize + 5).map { _ in note() }
        var queue = DueQueue(expected)
        #expect(queue.count == expected.count)
        #expect(queue.invariantProblems() == [], "built in O(n), a heap")
        // Pop and push in turns, as the scheduler does, then drain.
        for _ in 0 ..< 2 * DueQueue.pageSize {
            let popped = queue.pop(dueBy: .max)
            expected.sort()
            #expect(popped == expected.removeFirst())
            for _ in 0 ..< 2 {
                let pushed = note()
                queue.push(pushed)
                expected.append(pushed)
            }
            #expect(queue.invariantProblems() == [])
        }
        expected.sort()
        #expect(queue.next == expected.first)
        #expect(queue.pop(dueBy: expected[0].at - 1) == nil, "nothing is due before the earliest note")
        var drained: [DueNote] = []
        while let popped = queue.pop(dueBy: .max) {
            drained.append(popped)
            if drained.count % 97 == 0 { #expect(queue.invariantProblems() == []) }
        }
        #expect(drained == expected)
        #expect(queue.count == 0 && queue.next == nil)
        queue.push(DueNote(at: 1, kind: .renewal, slot: 1))
        #expect(queue.pop(dueBy: 1) == DueNote(at: 1, kind: .renewal, slot: 1))
    }
}
