import CreditEngine
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import credits

@Suite("credits bench: the hot scenario's Zipf sampler")
struct ZipfSamplerTests {
    /// A goodness-of-fit test rejects a correct sampler with the probability of its level, so
    /// it runs on fixed seeds: it passes or fails the same way on every run. (With a random
    /// seed it would fail about one run in 2,500 on a correct sampler.)
    @Test("ranks stay in 1...n and follow 1/k^s (chi-square over the first ranks and the tail, fixed seeds)",
          arguments: [(1_000 as UInt64, 1.1, 0x5EED_0001 as UInt64), (1_000_000, 1.1, 0x5EED_0002), (50, 2.0, 0x5EED_0003),
                      (10_000, 0.8, 0x5EED_0004)])
    func followsTheLaw(count: UInt64, exponent: Double, seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let sampler = ZipfSampler(count: count, exponent: exponent)
        let draws = 200_000
        let head = 20
        var observed = [Int](repeating: 0, count: head + 1) // ranks 1...20, then the rest
        for _ in 0 ..< draws {
            let rank = sampler.next(&random)
            #expect(rank >= 1 && rank <= count, "seed \(seed): rank \(rank)")
            observed[Int(min(rank, UInt64(head + 1))) - 1] += 1
        }
        // Expected shares: k^-s / H(n, s).
        var weights: [Double] = []
        var total = 0.0
        var tail = 0.0
        for rank in 1 ... count {
            let weight = 1 / pow(Double(rank), exponent)
            total += weight
            if rank <= UInt64(head) { weights.append(weight) } else { tail += weight }
        }
        weights.append(tail)
        var chiSquare = 0.0
        var cells = 0
        for (index, weight) in weights.enumerated() {
            let expected = Double(draws) * weight / total
            guard expected >= 5 else { continue }
            let difference = Double(observed[index]) - expected
            chiSquare += difference * difference / expected
            cells += 1
        }
        // At most 21 cells (20 degrees of freedom): the 0.9999 quantile is about 52; a wrong
        // exponent, an off-by-one rank or a biased squeeze gives thousands.
        #expect(chiSquare < 52, "seed \(seed): chi-square \(chiSquare) over \(cells) cells; observed \(observed)")
    }
}
