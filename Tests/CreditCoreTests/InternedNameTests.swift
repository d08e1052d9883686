@testable import CreditCore
import Testing

@Suite("Interned names: a model or provider name as a number, the same for the same text")
struct InternedNameTests {
    @Test("the same text gets the same name, other texts other names, and each reads back its text")
    func sameTextSameName() {
        let texts = ["GPT-4o", "OpenAI", "Stable Diffusion XL — a name longer than fifteen bytes", "é", "GPT-4O", " GPT-4o"]
        let names = texts.map(InternedName.init)
        for (index, name) in names.enumerated() {
            #expect(name == InternedName(texts[index]))
            #expect(name.text == texts[index])
            #expect(name.utf8Count == texts[index].utf8.count)
            #expect(name.description == texts[index])
            #expect(!name.isEmpty)
        }
        #expect(Set(names).count == texts.count)
    }

    @Test("a text over the ledger's limit is never kept, and a full table keeps no new text: both intern to markers that intern to themselves")
    func badTextsKeepNothing() {
        let overLong = String(repeating: "m", count: LedgerLimits.textBytesMax + 1)
        #expect(InternedName(overLong) == .overLong && InternedName(overLong + "more") == .overLong)
        #expect(InternedName.overLong.utf8Count == LedgerLimits.textBytesMax + 1)
        #expect(InternedName(InternedName.overLong.text) == .overLong)
        #expect(InternedName(String(repeating: "m", count: LedgerLimits.textBytesMax)).utf8Count == LedgerLimits.textBytesMax)
        #expect(InternedName(InternedName.unavailable.text) == .unavailable)

        // A table of 8: the 3 fixed names, then 5 texts; the sixth new text is not kept.
        let table = NameTable(capacity: 8)
        let kept = (0 ..< 5).map { table.intern("text \($0)") }
        #expect(kept == [3, 4, 5, 6, 7])
        #expect(table.intern("text 5") == InternedName.unavailable.number)
        #expect(table.intern("text 6") == InternedName.unavailable.number)
        #expect((0 ..< 5).map { table.intern("text \($0)") } == kept, "kept texts still resolve")
        #expect(kept.map { table.slot($0).pointee.text } == (0 ..< 5).map { "text \($0)" })
        #expect(table.intern(overLong) == InternedName.overLong.number && table.intern("") == 0)
    }

    @Test("the empty text is the empty name")
    func emptyName() {
        #expect(InternedName("") == .empty)
        #expect(InternedName.empty.isEmpty && InternedName.empty.text.isEmpty && InternedName.empty.utf8Count == 0)
    }

    @Test("tasks interning the same new texts at once all get the same names")
    func concurrentInterningAgrees() async throws {
        // Texts no other test uses, so each is new when the tasks race for it.
        let seed = try #require(PropertySettings.seed, "CREDITS_TEST_SEED must be a decimal or 0x-hex UInt64")
        print("InternedNameTests.concurrentInterningAgrees seed \(seed)")
        let texts = (0 ..< 500).map { "model \(seed) #\($0)" }
        let results = await withTaskGroup(of: [InternedName].self) { group in
            for task in 0 ..< 8 {
                group.addTask {
                    // Each task interns the texts from another starting point, then lists
                    // its names in the texts' order.
                    var named: [String: InternedName] = [:]
                    for offset in 0 ..< texts.count {
                        let text = texts[(offset + task * 61) % texts.count]
                        named[text] = InternedName(text)
                    }
                    return texts.map { named[$0]! }
                }
            }
            var all: [[InternedName]] = []
            for await names in group { all.append(names) }
            return all
        }
        for names in results {
            #expect(names == results[0])
        }
        #expect(results[0].map(\.text) == texts)
        #expect(Set(results[0]).count == texts.count)
    }

    @Test("a usage compares by its names' text, and setting the text re-interns it")
    func usageNamesFollowTheText() {
        var usage = UsageCharge(model: "GPT-4o", provider: "OpenAI", units: 1_000, providerCostNanoUSD: 15_000_000,
                                listPrice: Millicredits(10_000), keySource: .system)
        #expect(usage == UsageCharge(model: InternedName("GPT-4o"), provider: InternedName("OpenAI"), units: 1_000,
                                     providerCostNanoUSD: 15_000_000, listPrice: Millicredits(10_000), keySource: .system))
        usage.model = "Claude 3 Sonnet"
        #expect(usage.modelName == InternedName("Claude 3 Sonnet") && usage.model == "Claude 3 Sonnet")
        usage.provider = "Anthropic"
        #expect(usage.providerName.text == "Anthropic")
    }
}
