// VectorMathTests — the accuracy claims of Sources/SegLossKernels/VectorMath.swift, for every
// compiled kernel level this CPU runs, against Foundation's double log / log1p.
//
// Error unit: ulps of the float32 result, i.e. |approx - exact| / 2^(floor(log2 |exact|) - 23)
// (2^-149 for results in the subnormal range), with `exact` the double log of the float32
// input.
//
// Coverage. The debug build of the tests runs the kernels unoptimized (~70 ns a call), so
// every one of the 2^30 inputs at three levels would take minutes. The default run checks
//   logApprox:          every float32 in [1/4, 1] (the binades where the error peaks: it is
//                       largest in [1/2, 1) and falls towards 0.5 ulp as |log x| grows and
//                       e * ln 2 dominates), every 97th bit pattern of (0, 1/4), and 32
//                       patterns at each end of every binade and around its sqrt(1/2) mantissa
//                       split, the subnormal range included;
//   logOneMinusApprox:  every float32 p in [2^-25, 2^-23) and [1/4, 1/2) (where it peaks:
//                       1 - p rounds and the correction c/u matters), every 97th pattern of the
//                       rest of [0, 1), and the binade boundaries.
// An exhaustive run of an optimized build of the same source (every input, all three levels)
// found the maxima inside these dense ranges: logApprox 0.917 ulp (baseline, x = 0x3f3308fc)
// and 0.887 ulp (FMA levels, x = 0x3f32de68); logOneMinusApprox 1.4375 ulp (all levels,
// p = 0x33c00000 = 1.5 * 2^-24).
// Setting SEGLOSS_EXHAUSTIVE_MATH=1 checks every float32 of (0, 1] and [0, 1) instead (a few
// minutes per level in a debug build).
import Foundation
import SegLossCore
import Testing

/// The largest error seen, and where.
struct ULPMeasurement: CustomStringConvertible {
    var maxError = 0.0
    var worstInput: Float = .nan
    var worstResult: Float = .nan
    var evaluated = 0

    mutating func merge(_ other: ULPMeasurement) {
        evaluated += other.evaluated
        if other.maxError > maxError || maxError.isNaN {
            maxError = other.maxError
            worstInput = other.worstInput
            worstResult = other.worstResult
        }
    }

    var description: String {
        "max \(maxError) ulp at x = \(worstInput) (0x\(String(worstInput.bitPattern, radix: 16)), got \(worstResult)) over \(evaluated) inputs"
    }
}

/// The error of `approx` in ulps of the float32 result `exact`.
@inline(__always)
func ulpError(_ approx: Float, _ exact: Double) -> Double {
    if exact == 0 { return approx == 0 ? 0 : .infinity }
    if !approx.isFinite { return .infinity }
    let exponent = max(Int(exact.exponent), -126)
    return abs(Double(approx) - exact) / Double(sign: .plus, exponent: exponent - 23, significand: 1)
}

/// Evaluates `approx` on the float32 bit patterns low, low + stride, ... <= high.
func measure(
    _ approx: (Float) -> Float, _ exact: (Double) -> Double,
    from low: UInt32, through high: UInt32, stride: UInt32 = 1
) -> ULPMeasurement {
    var m = ULPMeasurement()
    var bits = low
    while bits <= high {
        let x = Float(bitPattern: bits)
        let y = approx(x)
        let error = ulpError(y, exact(Double(x)))
        if !(error <= m.maxError) {  // NaN counts as a new worst
            m.maxError = error.isNaN ? .infinity : error
            m.worstInput = x
            m.worstResult = y
        }
        m.evaluated += 1
        if high &- bits < stride { break }
        bits &+= stride
    }
    return m
}

/// Bit-pattern ranges of the sampled check: 32 patterns at each binade's start, at its end and
/// around its sqrt(1/2) split, for every exponent (0 = subnormals) below `upToExponent`.
func boundaryRanges(upToExponent: UInt32, includeZero: Bool) -> [(UInt32, UInt32)] {
    var ranges: [(UInt32, UInt32)] = []
    for e in UInt32(0)..<upToExponent {
        let start = e << 23
        ranges.append((e == 0 && !includeZero ? 1 : start, start + 31))
        ranges.append((start + 0x7F_FFFF - 31, start + 0x7F_FFFF))
        ranges.append((start + 0x35_04F3 - 16, start + 0x35_04F3 + 15))
    }
    return ranges
}

let exhaustiveMath = ProcessInfo.processInfo.environment["SEGLOSS_EXHAUSTIVE_MATH"] == "1"

/// Runs the pieces of a measurement on separate tasks (the machine's cores) and merges them.
func measureInParallel(_ pieces: [@Sendable () -> ULPMeasurement]) async -> ULPMeasurement {
    await withTaskGroup(of: ULPMeasurement.self) { group in
        for piece in pieces { group.addTask { piece() } }
        var total = ULPMeasurement()
        for await m in group { total.merge(m) }
        return total
    }
}

/// Splits [low, high] into `parts` contiguous ranges.
func split(_ low: UInt32, _ high: UInt32, parts: UInt32) -> [(UInt32, UInt32)] {
    let size = (high - low) / parts + 1
    return (0..<parts).compactMap { k in
        let a = low + k * size
        guard a <= high else { return nil }
        return (a, min(high, a + size - 1))
    }
}

@Suite("Vector math accuracy")
struct VectorMathTests {
    @Test("all compiled levels this CPU runs are tested")
    func levelsPresent() {
        #expect(MathLevel.runnable.count == runnableLevels.count)
        #expect(runnableLevels.first?.name == "baseline")
        if !skippedLevels.isEmpty { print("vector math: levels not runnable on this CPU, not tested: \(skippedLevels)") }
        #if arch(x86_64)
        #expect(KernelLevel.compiled.map(\.name) == ["baseline", "avx2", "avx512"])
        #endif
    }

    @Test("special values: log 0 = -inf, log 1 = 0, log(1 - 0) = 0, log(1 - 1) = -inf", arguments: MathLevel.runnable)
    func specialValues(level: MathLevel) {
        #expect(level.log(0) == -.infinity)
        #expect(level.log(-0.0) == -.infinity)
        #expect(level.log(1) == 0)
        #expect(level.logOneMinus(0) == 0)
        #expect(level.logOneMinus(-0.0) == 0)
        #expect(level.logOneMinus(1) == -.infinity)
        // The smallest subnormal: log(2^-149) = -149 ln 2.
        #expect(ulpError(level.log(.leastNonzeroMagnitude), -149 * M_LN2) <= level.logBound)
        // log(1 - p) for subnormal p is -p exactly.
        #expect(level.logOneMinus(0x1p-140) == -0x1p-140)
    }

    @Test("logApprox <= claimed ulp: every float32 in [1/4, 1], every 97th below, all binade boundaries (all of (0, 1] with SEGLOSS_EXHAUSTIVE_MATH=1)",
          arguments: MathLevel.runnable)
    func logAccuracy(level: MathLevel) async {
        let log = level.log
        let exact: @Sendable (Double) -> Double = { Foundation.log($0) }
        var pieces: [@Sendable () -> ULPMeasurement] = []
        let one: UInt32 = 0x3F80_0000, quarter: UInt32 = 0x3E80_0000
        let dense = exhaustiveMath ? split(1, one, parts: 16) : split(quarter, one, parts: 2)
        for (a, b) in dense { pieces.append { measure(log, exact, from: a, through: b) } }
        if !exhaustiveMath {
            pieces.append { measure(log, exact, from: 1, through: quarter - 1, stride: 97) }
            pieces.append {
                var m = ULPMeasurement()
                for (a, b) in boundaryRanges(upToExponent: 127, includeZero: false) {
                    m.merge(measure(log, exact, from: a, through: b))
                }
                return m
            }
        }
        let result = await measureInParallel(pieces)
        print("logApprox [\(level.name)]: \(result)")
        #expect(result.maxError <= level.logBound,
                "logApprox [\(level.name)] exceeds the claimed \(level.logBound) ulp: \(result)")
    }

    @Test("logOneMinusApprox <= 2 ulp: every float32 in [2^-25, 2^-23) and [1/4, 1/2), every 97th elsewhere, binade boundaries (all of [0, 1) with SEGLOSS_EXHAUSTIVE_MATH=1)",
          arguments: MathLevel.runnable)
    func logOneMinusAccuracy(level: MathLevel) async {
        let logOneMinus = level.logOneMinus
        let exact: @Sendable (Double) -> Double = { Foundation.log1p(-$0) }
        var pieces: [@Sendable () -> ULPMeasurement] = []
        let below1: UInt32 = 0x3F7F_FFFF
        if exhaustiveMath {
            for (a, b) in split(0, below1, parts: 16) {
                pieces.append { measure(logOneMinus, exact, from: a, through: b) }
            }
        } else {
            let denseRanges: [(UInt32, UInt32)] = [
                (0x3300_0000, 0x33FF_FFFF),  // [2^-25, 2^-23)
                (0x3E80_0000, 0x3EFF_FFFF),  // [1/4, 1/2)
            ]
            for (low, high) in denseRanges {
                for (a, b) in split(low, high, parts: 2) {
                    pieces.append { measure(logOneMinus, exact, from: a, through: b) }
                }
            }
            pieces.append { measure(logOneMinus, exact, from: 0, through: below1, stride: 97) }
            pieces.append {
                var m = ULPMeasurement()
                for (a, b) in boundaryRanges(upToExponent: 127, includeZero: true) {
                    m.merge(measure(logOneMinus, exact, from: a, through: b))
                }
                return m
            }
        }
        let result = await measureInParallel(pieces)
        print("logOneMinusApprox [\(level.name)]: \(result)")
        #expect(result.maxError <= level.logOneMinusBound,
                "logOneMinusApprox [\(level.name)] exceeds the claimed \(level.logOneMinusBound) ulp: \(result)")
    }
}
