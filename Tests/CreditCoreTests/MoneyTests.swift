import CreditCore
import Testing

@Suite("Millicredits: parsing, formatting, checked arithmetic")
struct MoneyTests {
    @Test("parses decimal credit amounts exactly", arguments: [
        ("12.5", 12_500), ("12.5 credits", 12_500), ("1 credit", 1_000), ("0.001", 1), ("-3", -3_000),
        ("0", 0), ("7", 7_000), ("  7  ", 7_000), ("2 credits", 2_000), ("1 credits", 1_000),
        ("+4.25", 4_250), ("-0.5 credits", -500), ("1.05", 1_050), ("1.005", 1_005), ("100.010", 100_010),
        ("12.5credits", 12_500), ("9223372036854775.807", Int64.max),
    ] as [(String, Int64)])
    func parsesDecimalCreditsExactly(text: String, millicredits: Int64) throws {
        #expect(try Millicredits(parsing: text) == Millicredits(millicredits))
    }

    @Test("formats as the shortest exact decimal with a unit", arguments: [
        (12_500, "12.5 credits"), (1_000, "1 credit"), (1, "0.001 credits"), (0, "0 credits"),
        (2_000, "2 credits"), (1_050, "1.05 credits"), (1_005, "1.005 credits"), (-3_000, "-3 credits"),
        (-1, "-0.001 credits"), (123_456_789, "123456.789 credits"), (Int64.max, "9223372036854775.807 credits"),
    ] as [(Int64, String)])
    func formatsShortestExactDecimal(millicredits: Int64, text: String) {
        #expect(Millicredits(millicredits).description == text)
    }

    @Test("formatting then parsing gives the same amount back")
    func formatThenParseRoundTrips() throws {
        let values: [Int64] = [0, 1, 9, 10, 99, 100, 999, 1_000, 1_001, 1_010, 1_100, 12_500, 999_999_999,
                               -1, -999, -1_000, -1_500, -123_456_789, Int64.max, Int64.min + 1]
        for value in values {
            let amount = Millicredits(value)
            #expect(try Millicredits(parsing: amount.description) == amount, "\(value)")
        }
    }

    @Test
    func smallestAmountRoundTrips() throws {
        let amount = Millicredits(.min)
        #expect(try Millicredits(parsing: amount.description) == amount)
    }

    @Test("more than three decimals is rejected as too precise, never rounded",
          arguments: ["1.0001", "0.0005", "12.5000 credits", "-3.1234"])
    func tooManyDecimalsRejected(text: String) {
        #expect(throws: MoneyError.tooPrecise(text)) { try Millicredits(parsing: text) }
    }

    @Test("malformed text is rejected with the text in the error",
          arguments: ["", "credits", "abc", "1.", ".5", "1.2.3", "1,5", "12 5", "--3", "1e3", "0x10", "five credits",
                      "1.5 dollars", "- 3", "١٢"])
    func malformedTextRejected(text: String) {
        #expect(throws: MoneyError.malformed(text)) { try Millicredits(parsing: text) }
    }

    @Test("amounts beyond 64-bit millicredits are an overflow error")
    func parsingOverflowRejected() {
        #expect(throws: MoneyError.overflow) { try Millicredits(parsing: "9223372036854776") }
        #expect(throws: MoneyError.overflow) { try Millicredits(parsing: "9223372036854775.808") }
        #expect(throws: MoneyError.overflow) { try Millicredits(parsing: "99999999999999999999999") }
    }

    @Test("credits(_:) multiplies by 1000 and reports overflow")
    func creditsConstructorOverflow() throws {
        #expect(try Millicredits.credits(500) == Millicredits(500_000))
        #expect(try Millicredits.credits(-2) == Millicredits(-2_000))
        #expect(throws: MoneyError.overflow) { try Millicredits.credits(Int64.max) }
        #expect(throws: MoneyError.overflow) { try Millicredits.credits(Int64.max / 1_000 + 1) }
        #expect(throws: MoneyError.overflow) { try Millicredits.credits(Int64.min) }
        #expect(try Millicredits.credits(Int64.max / 1_000) == Millicredits(Int64.max / 1_000 * 1_000))
    }

    @Test("adding and subtracting are checked, never wrap")
    func addingAndSubtractingOverflow() throws {
        #expect(try Millicredits(1_500).adding(Millicredits(2_500)) == Millicredits(4_000))
        #expect(try Millicredits(1_500).subtracting(Millicredits(2_500)) == Millicredits(-1_000))
        #expect(throws: MoneyError.overflow) { try Millicredits(Int64.max).adding(Millicredits(1)) }
        #expect(throws: MoneyError.overflow) { try Millicredits(Int64.min).adding(Millicredits(-1)) }
        #expect(throws: MoneyError.overflow) { try Millicredits(Int64.min).subtracting(Millicredits(1)) }
        #expect(throws: MoneyError.overflow) { try Millicredits(0).subtracting(Millicredits(Int64.min)) }
        #expect(try Millicredits(Int64.max).adding(Millicredits(Int64.min)) == Millicredits(-1))
    }

    @Test("amounts compare by value")
    func comparesByValue() {
        #expect(Millicredits(-1) < Millicredits.zero)
        #expect(Millicredits(999) < credits(1))
        #expect(Millicredits.perCredit == 1_000)
        #expect([credits(3), Millicredits(1), credits(-1)].sorted() == [credits(-1), Millicredits(1), credits(3)])
    }

    @Test("money errors describe what is wrong")
    func moneyErrorDescriptions() {
        #expect(MoneyError.tooPrecise("1.0001").description.contains("1.0001"))
        #expect(MoneyError.malformed("abc").description.contains("'abc'"))
        #expect(MoneyError.overflow.description.contains("overflow"))
    }

    @Test("money and decoding errors have distinct stable snake_case codes")
    func errorCodes() {
        let codes = [MoneyError.overflow, .malformed("x"), .tooPrecise("x")].map(\.code)
            + [BinaryDecodingError.truncated(offset: 0, needed: 1), .invalid(offset: 0, field: "x")].map(\.code)
        #expect(Set(codes).count == codes.count)
        #expect(codes.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0 == "_" || ("a" ... "z").contains($0) } })
        #expect(MoneyError.tooPrecise("1.0001").code == "amount_too_precise")
    }

    @Test("timestamps add saturating; never stays never")
    func timestampArithmetic() {
        #expect(Timestamp(millisSinceEpoch: 5).adding(millis: 7) == Timestamp(millisSinceEpoch: 12))
        #expect(Timestamp.never.adding(millis: 1) == .never)
        #expect(Timestamp(millisSinceEpoch: .max - 1).adding(millis: 10) == .never)
        #expect(Timestamp(millisSinceEpoch: .min + 1).adding(millis: -10) == .epoch)
        #expect(Timestamp.epoch < Timestamp.never)
        #expect(Timestamp.never.description == "never")
        #expect(Timestamp(millisSinceEpoch: 1_500).description == "1500ms")
    }
}
