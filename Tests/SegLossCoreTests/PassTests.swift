// PassTests — the statistics pass and the gradient pass of every compiled kernel level this
// CPU runs, against float64 references, and their independence of the thread count.
import Foundation
import SegLossCore
import Testing

/// Random inputs: most 256-element blocks with hard targets, every third one soft, and
/// extremes (0, 1, tiny, subnormal, 1 - 2^-24) sprinkled in, so both BCE paths and the
/// clamps run. Half the predictions and soft targets are scaled by 2^-k, k random in
/// 0..<40, so that the double sums are not exact (with only multiples of 2^-24 they are,
/// and every summation order would give the same bits).
func mixedInputs(count: Int, seed: UInt32) -> (pred: [Float], target: [Float]) {
    var rng = XorShift32(seed: seed)
    var pred = [Float](repeating: 0, count: count)
    var target = [Float](repeating: 0, count: count)
    let extremes: [Float] = [0, 1, 1e-30, 0x1p-140, 1 - 0x1p-24, 0x1p-24]
    var i = 0
    while i < count {
        pred[i] = rng.unit()
        if i % 2 == 1 { pred[i] *= Float(sign: .plus, exponent: -Int(rng.next() % 40), significand: 1) }
        let u = rng.unit()
        target[i] = (i / 256) % 3 == 1 ? u * Float(sign: .plus, exponent: -Int(rng.next() % 40), significand: 1)
                                       : (u < 0.3 ? 1 : 0)
        if i % 1009 == 0 { pred[i] = extremes[(i / 1009) % extremes.count] }
        i += 1
    }
    return (pred, target)
}

/// The statistics in float64, from the exact float32 inputs.
func referenceStatistics(_ pred: [Float], _ target: [Float]) -> Statistics {
    var s = Statistics()
    var i = 0
    while i < pred.count {
        let p = Double(pred[i]), t = Double(target[i])
        s.intersection += p * t
        s.predSum += p
        s.targetSum += t
        s.mismatch += p * (1 - t) + t * (1 - p)
        s.elementSum += -(t * max(Foundation.log(p), -100) + (1 - t) * max(Foundation.log1p(-p), -100))
        i += 1
    }
    s.count = pred.count
    return s
}

/// Bitwise equality of two Statistics (== on doubles would let -0 equal 0).
func identical(_ a: Statistics, _ b: Statistics) -> Bool {
    a.intersection.bitPattern == b.intersection.bitPattern && a.predSum.bitPattern == b.predSum.bitPattern
        && a.targetSum.bitPattern == b.targetSum.bitPattern && a.mismatch.bitPattern == b.mismatch.bitPattern
        && a.elementSum.bitPattern == b.elementSum.bitPattern && a.count == b.count
}

struct LevelAndCount: Sendable, CustomTestStringConvertible {
    var level: KernelLevel
    var count: Int
    var testDescription: String { "\(level.name), \(count) elements" }
}

/// Counts crossing the 256-element blocks, the 16384-element chunks, the parallel threshold
/// (4 chunks) and, at 2_113_537 = 129 chunks + 1, many chunks for the threads to claim in runs
/// (ParallelTests checks the rounds of chunk results with a cheaper chunk); 4_259_841 = 65
/// chunks of 65,536 + 1, the longer chunks of counts from 2^22 on.
let passCounts = [1, 255, 257, 16_384, 16_385, 65_537, 2_113_537, longChunkCount]
let longChunkCount = 4_259_841
let passArguments: [LevelAndCount] = runnableLevels.flatMap { level in passCounts.map { LevelAndCount(level: level, count: $0) } }

@Suite("Statistics and gradient passes")
struct PassTests {
    /// Sums against float64 within 1e-6 relative (the accuracy the header promises for the
    /// loss): every term is non-negative and carries a few float32 roundings (p*t, 1 - t, the
    /// BCE log within 2 ulp), and runs of 8 terms per lane are summed in float32 (below 8
    /// ulp) before the double lanes: at most ~13 * 2^-24 = 7.7e-7 in the worst case.
    /// Thread counts 1, 2 and 7 give bitwise the same sums.
    @Test("statisticsPass equals the float64 sums, for any thread count", arguments: passArguments)
    func statistics(argument: LevelAndCount) throws {
        let (pred, target) = mixedInputs(count: argument.count, seed: UInt32(argument.count))
        let reference = referenceStatistics(pred, target)
        try pred.withUnsafeBufferPointer { p in
            try target.withUnsafeBufferPointer { t in
                for withElementTerm in [true, false] {
                    if argument.count > 100_000 && !withElementTerm { continue }  // time: one variant suffices
                    let one = try statisticsPass(pred: p, target: t, withElementTerm: withElementTerm,
                                                 level: argument.level, threads: 1)
                    #expect(one.count == argument.count)
                    let pairs: [(String, Double, Double)] = [
                        ("intersection", one.intersection, reference.intersection),
                        ("predSum", one.predSum, reference.predSum),
                        ("targetSum", one.targetSum, reference.targetSum),
                        ("mismatch", one.mismatch, reference.mismatch),
                        ("elementSum", one.elementSum, withElementTerm ? reference.elementSum : 0),
                    ]
                    for (name, got, expected) in pairs {
                        let error = got == expected ? 0 : abs(got - expected) / abs(expected)
                        #expect(error <= 1e-6, "\(name): got \(got), expected \(expected)")
                    }
                    for threads in [2, 7] {
                        let other = try statisticsPass(pred: p, target: t, withElementTerm: withElementTerm,
                                                       level: argument.level, threads: threads)
                        #expect(identical(one, other), "threads \(threads) differ from 1: \(other) vs \(one)")
                    }
                }
            }
        }
    }

    /// A fused call takes its BCE sum from the gradient pass: bitwise the statistics pass's,
    /// whether or not the statistics pass promises that every target is 0 or 1 (it promises
    /// only when none is soft), for any thread count.
    @Test("gradientPass's BCE sum is bitwise the statisticsPass's, with and without the hard-target promise",
          arguments: passArguments.filter {
              $0.count < 100_000 || ($0.count == longChunkCount && $0.level.name == KernelLevel.active.name)
          })
    func elementSum(argument: LevelAndCount) throws {
        let count = argument.count
        let (pred, mixed) = mixedInputs(count: count, seed: UInt32(count) &+ 5)
        let hard = mixed.map { $0 > 0.5 ? Float(1) : 0 }
        var negativeZeros = hard
        for i in stride(from: 0, to: count, by: 7) where negativeZeros[i] == 0 { negativeZeros[i] = -0.0 }
        let c = GradientCoefficients(targetScale: 0.01, offset: -0.02, elementScale: 0.5 / Float(count))
        for (name, target) in [("mixed", mixed), ("hard", hard), ("hard with -0.0", negativeZeros)] {
            let soft = target.contains { $0 != 0 && $0 != 1 }
            try pred.withUnsafeBufferPointer { p in
                try target.withUnsafeBufferPointer { t in
                    let stats = try statisticsPass(pred: p, target: t, withElementTerm: true, findSoftTargets: true,
                                                   level: argument.level, threads: 2)
                    // -0.0 targets may count as soft: a promise not made costs only speed.
                    if name != "hard with -0.0" { #expect(stats.softTargets == soft, "\(name)") }
                    var grad = [Float](repeating: 0, count: count)
                    for threads in [1, 3] {
                        for promise in stats.softTargets ? [false] : [false, true] {
                            let sum = grad.withUnsafeMutableBufferPointer { g in
                                gradientPass(pred: p, target: t, coefficients: c, into: g.baseAddress!,
                                             withElementTerm: true, hardTargets: promise,
                                             level: argument.level, threads: threads)
                            }
                            #expect(sum.bitPattern == stats.elementSum.bitPattern,
                                    "\(name), threads \(threads), promise \(promise): \(sum) vs \(stats.elementSum)")
                        }
                    }
                }
            }
        }
    }

    @Test("statisticsPass errors", arguments: runnableLevels.map(\.name))
    func statisticsErrors(levelName: String) throws {
        let level = try #require(runnableLevels.first { $0.name == levelName })
        var (pred, target) = mixedInputs(count: 70_000, seed: 3)
        func run(_ pred: [Float], _ target: [Float], threads: Int = 2) throws(SegLossError) -> Statistics {
            try pred.withUnsafeBufferPointer { (p) throws(SegLossError) -> Statistics in
                try target.withUnsafeBufferPointer { (t) throws(SegLossError) -> Statistics in
                    try statisticsPass(pred: p, target: t, withElementTerm: true, level: level, threads: threads)
                }
            }
        }
        for position in [0, 16_384, 69_999] {
            for bad in [Float.nan, -0x1p-149, Float(1).nextUp, .infinity] {
                var p = pred
                p[position] = bad
                #expect(throws: SegLossError.predOutOfRange) { try run(p, target) }
                var t = target
                t[position] = bad
                #expect(throws: SegLossError.targetOutOfRange) { try run(pred, t) }
            }
        }
        #expect(throws: SegLossError.emptyInput) { try run([], []) }
        #expect(throws: SegLossError.invalidArgument) { try run([0.5, 0.5], [1]) }
        pred[5] = -0.0
        target[6] = -0.0
        #expect(throws: Never.self) { try run(pred, target) }
    }

    /// g_i = a t_i + b + c (p_i - t_i) / max(p_i (1 - p_i), 1e-12), against float64:
    /// rtol 1e-5 plus 8 float32 ulps of the largest term (where the terms cancel).
    /// Threads 1, 2, 7 and an in-place call give bitwise the same gradient.
    @Test("gradientPass equals the float64 gradient, for any thread count and in place", arguments: passArguments)
    func gradient(argument: LevelAndCount) {
        let count = argument.count
        let (pred, target) = mixedInputs(count: count, seed: UInt32(count) &+ 17)
        let c = GradientCoefficients(targetScale: -0.0123, offset: 0.0071, elementScale: 0.37 / Float(count))
        var one = [Float](repeating: .nan, count: count)
        var others = [[Float]]()
        pred.withUnsafeBufferPointer { p in
            target.withUnsafeBufferPointer { t in
                one.withUnsafeMutableBufferPointer { g in
                    gradientPass(pred: p, target: t, coefficients: c, into: g.baseAddress!, level: argument.level, threads: 1)
                }
                for threads in [2, 7] {
                    var g = [Float](repeating: .nan, count: count)
                    g.withUnsafeMutableBufferPointer { gp in
                        gradientPass(pred: p, target: t, coefficients: c, into: gp.baseAddress!, level: argument.level, threads: threads)
                    }
                    others.append(g)
                }
            }
        }
        var inPlace = pred
        inPlace.withUnsafeMutableBufferPointer { b in
            target.withUnsafeBufferPointer { t in
                gradientPass(pred: UnsafeBufferPointer(b), target: t, coefficients: c, into: b.baseAddress!,
                             level: argument.level, threads: 2)
            }
        }
        others.append(inPlace)
        for (k, other) in others.enumerated() {
            let first = other.indices.first { other[$0].bitPattern != one[$0].bitPattern }
            #expect(first == nil, "variant \(k) (threads 2, 7, in place) differs at \(first ?? -1)")
        }
        let a = Double(c.targetScale), b = Double(c.offset), e = Double(c.elementScale)
        var worst: (Int, Float, Double)?
        var i = 0
        while i < count {
            let p = Double(pred[i]), t = Double(target[i])
            let bce = e * (p - t) / max(p * (1 - p), 1e-12)
            let expected = a * t + b + bce
            let tolerance = 1e-5 * abs(expected) + 8 * 0x1p-24 * (abs(a * t) + abs(b) + abs(bce))
            if !(abs(Double(one[i]) - expected) <= tolerance) && worst == nil { worst = (i, one[i], expected) }
            i += 1
        }
        #expect(worst == nil, "element \(worst?.0 ?? -1): got \(worst?.1 ?? 0), expected \(worst?.2 ?? 0)")
    }
}
