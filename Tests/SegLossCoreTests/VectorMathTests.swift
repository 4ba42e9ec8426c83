// VectorMathTests — the accuracy claims of Sources/SegLossKernels/VectorMath.swift, for every
// compiled kernel level this CPU runs, against Foundation's double log / log1p / exp:
//   logApprox           <= 1 ulp with FMA, <= 2 ulp without, over (0, 1]
//   logOneMinusApprox   <= 2 ulp over [0, 1)
//   log1pApprox         <= 2 ulp over [-1 + 2^-24, 2^32]
//   expApprox           <= 1.03 ulp over [-87.3, 88.7] (expOfNonPositiveApprox: its normal bits on x <= 0)
//   log1pOfUnitApprox   <= 1.75 ulp over [0, 1]
//   sigmoidApprox       <= 3 ulp over [-87, 87]
//   logOfClassPairApprox <= 1.5 ulp for pairs of BCE logs whose product is normal (sampled)
//   expOfNegativeMagnitudeLanes (AVX-512 level) <= 1.07 ulp where e^-|x| is normal, else 0
//
// Error unit: ulps of the float32 result, |approx - exact| / 2^(floor(log2 |exact|) - 23)
// (2^-149 for results in the subnormal range), `exact` computed in double from the float32
// input.
//
// Coverage. The debug build of the tests runs the kernels unoptimized (~70 ns a call), so all
// ~8e9 inputs of the five domains at three levels would take far too long. The default run
// checks, for each function and level:
//   - every float32 of the binades where the error peaks (found by an exhaustive run, below);
//   - every 97th (log, log(1 - p)) or 257th (log1p, exp, sigmoid) bit pattern of the domain;
//   - 32 patterns at each end of every binade of the domain and around each binade's
//     sqrt(1/2) mantissa split (logApprox's reduction boundary), subnormals included.
// SEGLOSS_EXHAUSTIVE_MATH=1 checks every float32 of every domain instead (tens of minutes in a
// debug build; an optimized build of VectorMath.swift alone does it in a few minutes).
//
// Exhaustive maxima of the sources at the time of writing (optimized build of
// VectorMath.swift, each level's compiler flags, every float32 of each domain):
//   logApprox           baseline 0.917 (x = 0x3f3308fc), avx2/avx512 0.887 (x = 0x3f32de68)
//   logOneMinusApprox   1.4375 on every level (p = 0x33c00000 = 1.5 * 2^-24)
//   log1pApprox         1.4375 (y = -1.5 * 2^-24) on every level; > 0: baseline 1.283, FMA 1.255
//   expApprox           baseline 1.0216 at x = 70.382195 (0x428cc3af), 1.0160 at -5.853426
//                       (0xc0bb4f44); avx2/avx512 0.8912 at 5.2016387 (0x40a673d3), 0.8822 at
//                       -26.68565 (0xc1d57c36)
//   log1pOfUnitApprox   baseline 1.7124 (x = 0x3f7783d0), avx2/avx512 1.3940 (x = 0x3f7aa6c3)
//   sigmoidApprox       2.481 on every level (x = -16.635704, 0xc18515ec)
//   expOfNegativeMagnitudeLanes  1.0685 at x = -0x1.155374p-1 (0xbf0aa9ba), every
//                       non-positive float (a C build of vector_math.h's function)
import Foundation
import SegLossCore
import Testing
#if canImport(SegLossKernelsAVX512)
import SegLossKernelsAVX512
#endif

/// A range of float32 bit patterns, inclusive.
struct BitRange: Sendable {
    var low: UInt32
    var high: UInt32
    init(_ low: UInt32, _ high: UInt32) { self.low = low; self.high = high }
}

/// The largest error seen, and where.
struct ULPMeasurement: CustomStringConvertible {
    var maxError = 0.0
    var worstInput: Float = .nan
    var worstResult: Float = .nan
    var evaluated = 0

    mutating func merge(_ other: ULPMeasurement) {
        evaluated += other.evaluated
        if other.maxError > maxError {
            maxError = other.maxError
            worstInput = other.worstInput
            worstResult = other.worstResult
        }
    }

    var description: String {
        "max \(maxError) ulp at x = \(worstInput) (0x\(String(worstInput.bitPattern, radix: 16)), got \(worstResult)) over \(evaluated) inputs"
    }
}

/// Calls `body` with every `stride`th bit pattern from -0 down to -infinity, 8 at each end of
/// every binade, every one within 2^16 patterns of the threshold -0x1.5d589ep6 below which
/// the kernels' e^x is 0, and -infinity: the non-positive inputs of the exponential tests.
func forEachNonPositivePattern(stride: UInt32, _ body: (UInt32) -> Void) {
    var bits: UInt32 = 0x8000_0000
    while bits <= 0xFF80_0000 {
        body(bits)
        bits += stride
    }
    for exponent: UInt32 in 0...254 {
        for offset: UInt32 in 0..<8 {
            body(0x8000_0000 | exponent << 23 | offset)
            body(0x8000_0000 | exponent << 23 | (0x7F_FFFF - offset))
        }
    }
    let threshold = Float(-0x1.5d589ep6).bitPattern
    for bits in threshold - 0x1_0000...threshold + 0x1_0000 { body(bits) }
    body(0xFF80_0000)
}

/// The error of `approx` in ulps of the float32 result `exact`.
@inline(__always)
func ulpError(_ approx: Float, _ exact: Double) -> Double {
    if exact == 0 { return approx == 0 ? 0 : .infinity }
    if !approx.isFinite { return .infinity }
    let exponent = max(Int(exact.exponent), -126)
    return abs(Double(approx) - exact) / Double(sign: .plus, exponent: exponent - 23, significand: 1)
}

/// Evaluates `approx` on the bit patterns range.low, range.low + stride, ... <= range.high.
func measure(
    _ approx: (Float) -> Float, _ exact: (Double) -> Double, _ range: BitRange, stride: UInt32 = 1
) -> ULPMeasurement {
    var m = ULPMeasurement()
    var bits = range.low
    while bits <= range.high {
        let x = Float(bitPattern: bits)
        let y = approx(x)
        let error = ulpError(y, exact(Double(x)))
        if !(error <= m.maxError) {  // NaN counts as a new worst
            m.maxError = error.isNaN ? .infinity : error
            m.worstInput = x
            m.worstResult = y
        }
        m.evaluated += 1
        if range.high &- bits < stride { break }
        bits &+= stride
    }
    return m
}

/// 32 patterns at each end of every binade in `domain` and around its sqrt(1/2) split.
func boundaryRanges(_ domain: BitRange) -> [BitRange] {
    var ranges: [BitRange] = []
    func add(_ a: UInt32, _ b: UInt32) {
        let low = max(a, domain.low), high = min(b, domain.high)
        if low <= high { ranges.append(BitRange(low, high)) }
    }
    var start = domain.low & 0xFF80_0000
    while start <= domain.high {
        add(start, start + 31)
        add(start + 0x7F_FFFF - 31, start + 0x7F_FFFF)
        add(start + 0x35_04F3 - 16, start + 0x35_04F3 + 15)
        if start & 0x7F80_0000 == 0x7F80_0000 { break }
        start += 0x80_0000
    }
    return ranges
}

/// Splits a range into `parts` contiguous ranges.
func split(_ range: BitRange, parts: UInt32) -> [BitRange] {
    let size = (range.high - range.low) / parts + 1
    return (0..<parts).compactMap { k in
        let a = range.low + k * size
        guard a <= range.high, a >= range.low else { return nil }
        return BitRange(a, min(range.high, a + size - 1))
    }
}

let exhaustiveMath = ProcessInfo.processInfo.environment["SEGLOSS_EXHAUSTIVE_MATH"] == "1"

/// One function of one level, its claimed bound and what the default run covers.
struct MathCheck: Sendable, CustomTestStringConvertible {
    var function: String
    var level: String
    var approx: @Sendable (Float) -> Float
    var exact: @Sendable (Double) -> Double
    var bound: Double
    /// The claimed domain, as bit-pattern ranges.
    var domain: [BitRange]
    /// Checked pattern by pattern in the default run: where the error peaks.
    var dense: [BitRange]
    var sparseStride: UInt32

    var testDescription: String { "\(function) [\(level)] <= \(bound) ulp" }

    func run() async -> ULPMeasurement {
        let approx = self.approx, exact = self.exact
        var work: [(BitRange, UInt32)] = []
        if exhaustiveMath {
            for range in domain { work += split(range, parts: 8).map { ($0, 1) } }
        } else {
            for range in dense { work += split(range, parts: 2).map { ($0, 1) } }
            for range in domain { work.append((range, sparseStride)) }
        }
        let boundaries = domain.flatMap(boundaryRanges)
        return await withTaskGroup(of: ULPMeasurement.self) { group in
            for (range, stride) in work {
                group.addTask { measure(approx, exact, range, stride: stride) }
            }
            group.addTask {
                var m = ULPMeasurement()
                for range in boundaries { m.merge(measure(approx, exact, range)) }
                return m
            }
            var total = ULPMeasurement()
            for await m in group { total.merge(m) }
            return total
        }
    }

    static var all: [MathCheck] {
        MathLevel.runnable.flatMap { level -> [MathCheck] in
            [
                MathCheck(function: "logApprox", level: level.name, approx: level.log,
                          exact: { Foundation.log($0) }, bound: 1,
                          domain: [BitRange(0x0000_0001, 0x3F80_0000)],           // (0, 1]
                          dense: [BitRange(0x3E80_0000, 0x3F80_0000)],            // [1/4, 1]
                          sparseStride: 97),
                MathCheck(function: "logOneMinusApprox", level: level.name, approx: level.logOneMinus,
                          exact: { Foundation.log1p(-$0) }, bound: 1.5,
                          domain: [BitRange(0x0000_0000, 0x3F7F_FFFF)],           // [0, 1)
                          dense: [BitRange(0x3300_0000, 0x33FF_FFFF),             // [2^-25, 2^-23)
                                  BitRange(0x3E80_0000, 0x3EFF_FFFF)],            // [1/4, 1/2)
                          sparseStride: 97),
                MathCheck(function: "log1pApprox", level: level.name, approx: level.log1p,
                          exact: { Foundation.log1p($0) }, bound: 1.5,
                          domain: [BitRange(0x8000_0000, 0xBF7F_FFFF),            // [-1 + 2^-24, -0]
                                   BitRange(0x0000_0000, 0x4F80_0000)],           // [0, 2^32]
                          dense: [BitRange(0xB380_0000, 0xB3FF_FFFF),             // (-2^-23, -2^-24]
                                  BitRange(0x3E80_0000, 0x3EFF_FFFF)],            // [1/4, 1/2)
                          sparseStride: 257),
                MathCheck(function: "expApprox", level: level.name, approx: level.exp,
                          exact: { Foundation.exp($0) }, bound: 1.03,
                          domain: [BitRange(0x8000_0000, 0xC2AE_999A),            // [-87.3, -0]
                                   BitRange(0x0000_0000, 0x42B1_6666)],           // [0, 88.7]
                          dense: [BitRange(0xC080_0000, 0xC0FF_FFFF),             // (-8, -4]
                                  BitRange(0xC180_0000, 0xC1FF_FFFF),             // (-32, -16]
                                  BitRange(0x4080_0000, 0x40FF_FFFF),             // [4, 8)
                                  BitRange(0x4280_0000, 0x42B1_6666)],            // [64, 88.7]
                          sparseStride: 257),
                MathCheck(function: "log1pOfUnitApprox", level: level.name, approx: level.log1pOfUnit,
                          exact: { Foundation.log1p($0) }, bound: 1.75,
                          domain: [BitRange(0x0000_0000, 0x3F80_0000)],           // [0, 1]
                          dense: [BitRange(0x3F00_0000, 0x3F80_0000)],            // [1/2, 1]
                          sparseStride: 97),
                MathCheck(function: "sigmoidApprox", level: level.name, approx: level.sigmoid,
                          exact: { 1 / (1 + Foundation.exp(-$0)) }, bound: 2.5,
                          domain: [BitRange(0x8000_0000, 0xC2AE_0000),            // [-87, -0]
                                   BitRange(0x0000_0000, 0x42AE_0000)],           // [0, 87]
                          dense: [BitRange(0xC180_0000, 0xC1FF_FFFF)],            // (-32, -16]
                          sparseStride: 257),
            ]
        }
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

    @Test("special values and the documented behaviour outside the domains", arguments: MathLevel.runnable)
    func specialValues(level: MathLevel) {
        #expect(level.log(0) == -.infinity)
        #expect(level.log(-0.0) == -.infinity)
        #expect(level.log(1) == 0)
        #expect(level.logOneMinus(0) == 0)
        #expect(level.logOneMinus(-0.0) == 0)
        #expect(level.logOneMinus(1) == -.infinity)
        // The smallest subnormal: log(2^-149) = -149 ln 2.
        #expect(ulpError(level.log(.leastNonzeroMagnitude), -149 * M_LN2) <= 1)
        // log(1 - p) for subnormal p is -p exactly.
        #expect(level.logOneMinus(0x1p-140) == -0x1p-140)
        // log(u, remainder: 0) is log(u), bit for bit.
        var rng = XorShift32(seed: 5)
        for _ in 0..<10_000 {
            let u = rng.unit()
            #expect(level.logWithRemainder(u, 0).bitPattern == level.log(u).bitPattern, "u = \(u)")
        }
        #expect(level.log1p(-1) == -.infinity)
        #expect(level.log1p(0) == 0)
        #expect(level.exp(0) == 1)
        for x: Float in [88.8, 100, 1e30, .infinity] { #expect(level.exp(x) == .infinity, "exp(\(x))") }
        for x: Float in [-104.5, -200, -1e30, -.infinity] { #expect(level.exp(x) == 0, "exp(\(x))") }
        #expect(level.exp(.nan).isNaN)
        #expect(level.sigmoid(0) == 0.5)
        for x: Float in [200, 1e30, .infinity] { #expect(level.sigmoid(x) == 1, "sigmoid(\(x))") }
        for x: Float in [-200, -1e30, -.infinity] { #expect(level.sigmoid(x) == 0, "sigmoid(\(x))") }
        #expect(level.sigmoid(.nan).isNaN)
        // No input traps: NaNs, infinities, negative values go through every function.
        for x: Float in [.nan, -.nan, .infinity, -.infinity, -1, -0x1p-149, .greatestFiniteMagnitude] {
            _ = (level.log(x), level.logOneMinus(x), level.log1p(x), level.exp(x), level.sigmoid(x))
        }
    }

    /// The kernels' e^-|x| drops expApprox's upper clamp, which x <= 0 never reaches, its
    /// lower clamp (the patterns below -104 are checked too, down to -infinity), and its
    /// subnormal results: the same bits for every non-positive float where expApprox's
    /// result is normal, 0 where it is not, and the threshold -0x1.5d589ep6 between the two
    /// (every 257th pattern, the ends of every binade, and every float within 2^16 patterns
    /// of the threshold). (For NaN its result is unspecified: the kernels reject non-finite
    /// logits.)
    @Test("expOfNonPositiveApprox is expApprox where that is normal, and 0 where not", arguments: MathLevel.runnable)
    func expOfNonPositiveIsExp(level: MathLevel) {
        var mismatches = 0, first: Float?
        var normal = 0, flushed = 0
        func check(_ bits: UInt32) {
            let x = Float(bitPattern: bits)
            let result = level.expOfNonPositive(x), expected = level.exp(x)
            let agrees: Bool
            if x >= -0x1.5d589ep6 {
                agrees = result.bitPattern == expected.bitPattern && result.isNormal
                normal += 1
            } else {
                agrees = result.bitPattern == 0 && expected < Float.leastNormalMagnitude
                flushed += 1
            }
            if !agrees {
                mismatches += 1
                if first == nil { first = x }
            }
        }
        forEachNonPositivePattern(stride: 257, check)
        #expect(mismatches == 0, "[\(level.name)] \(mismatches) inputs differ, first x = \(first ?? 0)")
        #expect(normal > 1000 && flushed > 1000)
    }

    #if canImport(SegLossKernelsAVX512)
    /// The AVX-512 kernels' e^-|x| (vector_math.h's table and permute): within 1.07 ulp of
    /// the double e^-|x| and normal wherever -|x| >= -0x1.5d589ep6, the threshold it shares
    /// with expOfNonPositiveApprox, and 0 below (down to -infinity, and the masked logit
    /// -1000); the same bits for x and -x. Over every 257th non-positive pattern (every one
    /// with SEGLOSS_EXHAUSTIVE_MATH=1), every float of [-1, -1/2] (where the error peaks),
    /// the ends of every binade and every float within 2^16 patterns of the threshold.
    @Test("expOfNegativeMagnitudeLanes within 1.07 ulp where e^-|x| is normal, 0 where not")
    func vectorExponential() throws {
        guard runnableLevels.contains(where: { $0.name == "avx512" }) else { return }
        var worst = ULPMeasurement(), mismatches = 0, first: Float?, signDiffers = 0
        var pending: [UInt32] = []
        func flush() {
            while pending.count % 16 != 0 { pending.append(0x8000_0000) }
            var start = 0
            while start < pending.count {
                var lanes = SIMD16<Float>(), mirrored = SIMD16<Float>()
                for lane in 0..<16 {
                    lanes[lane] = Float(bitPattern: pending[start + lane])
                    mirrored[lane] = -lanes[lane]
                }
                let result = expOfNegativeMagnitudeLanes(lanes), other = expOfNegativeMagnitudeLanes(mirrored)
                for lane in 0..<16 {
                    let x = lanes[lane], value = result[lane]
                    if value.bitPattern != other[lane].bitPattern { signDiffers += 1 }
                    let agrees: Bool
                    if x >= -0x1.5d589ep6 {
                        let error = ulpError(value, Foundation.exp(Double(x)))
                        worst.evaluated += 1
                        if error > worst.maxError {
                            (worst.maxError, worst.worstInput, worst.worstResult) = (error, x, value)
                        }
                        agrees = value.isNormal && error <= 1.07
                    } else {
                        agrees = value.bitPattern == 0
                    }
                    if !agrees {
                        mismatches += 1
                        if first == nil { first = x }
                    }
                }
                start += 16
            }
            pending.removeAll(keepingCapacity: true)
        }
        func check(_ bits: UInt32) {
            pending.append(bits)
            if pending.count == 4096 { flush() }
        }
        forEachNonPositivePattern(stride: exhaustiveMath ? 1 : 257, check)
        for bits in Float(-0.5).bitPattern...Float(-1).bitPattern { check(bits) }
        for x: Float in [-1000, 0] { check(x.bitPattern) }
        flush()
        print("expOfNegativeMagnitudeLanes: \(worst)\(exhaustiveMath ? " (exhaustive)" : "")")
        #expect(mismatches == 0, "\(mismatches) inputs out of bounds, first x = \(first ?? 0); \(worst)")
        #expect(signDiffers == 0)
        #expect(worst.maxError > 0.9, "the measurement reaches the peak binade")
        let ends = expOfNegativeMagnitudeLanes(SIMD16<Float>(-1000, 0, -.infinity, .infinity, 1, -1, 88, -88,
                                                             .nan, 0, 0, 0, 0, 0, 0, 0))
        #expect(ends[0] == 0 && ends[1] == 1 && ends[2] == 0 && ends[3] == 0)
        #expect(ends[4] == ends[5] && ends[6] == 0 && ends[7] == 0)
    }
    #endif

    /// The hard-target BCE logs two at a time (the general kernels' float path with FMA):
    /// log(q1·q2) against the double log(q1) + log(q2), q = p or 1 - p, over probabilities
    /// from every binade down to 2^-64, uniform ones, and ones within 64 ulps of 1, 1/2 and
    /// 0, with targets 0 and 1 at random (12 million such pairs gave at most 1.21).
    /// Where the rounded product is normal (the only place the kernels keep the result) the
    /// error is within the bound VectorMath.swift states; where it is not, some q is below
    /// 2^-63.
    @Test("logOfClassPairApprox: two BCE logs from one, within 1.5 ulp where the product is normal",
          arguments: MathLevel.runnable.filter(\.hasFMA))
    func logOfClassPair(level: MathLevel) {
        var rng = XorShift32(seed: 11)
        var candidates: [Float] = [0, 1, 0.5, 0x1p-63, 0x1p-64, 0x1p-126, .leastNonzeroMagnitude]
        for step in 1...64 {
            let k = Float(step)
            candidates += [1 - k * 0x1p-24, k * 0x1p-24, 0.5 - k * 0x1p-25, 0.5 + k * 0x1p-24]
        }
        for _ in 0..<4000 {
            candidates.append(rng.unit())
            // Log-uniform over [2^-64, 1): a random exponent and mantissa.
            let exponent = UInt32(127 - 64) + rng.next() % 64
            candidates.append(Float(bitPattern: exponent << 23 | rng.next() & 0x7F_FFFF))
        }
        var worst = ULPMeasurement(), kept = 0, dropped = 0, droppedWrongly = 0
        for _ in 0..<400_000 {
            let p1 = candidates[Int(rng.next() % UInt32(candidates.count))]
            let p2 = candidates[Int(rng.next() % UInt32(candidates.count))]
            let t1 = Float(rng.next() & 1), t2 = Float(rng.next() & 1)
            // log q in double: log(p) for a target 1, log1p(-p) for a target 0.
            let log1 = t1 == 1 ? Foundation.log(Double(p1)) : Foundation.log1p(-Double(p1))
            let log2 = t2 == 1 ? Foundation.log(Double(p2)) : Foundation.log1p(-Double(p2))
            let (log, product) = level.logOfClassPair(p1, t1, p2, t2)
            guard product >= Float.leastNormalMagnitude else {
                dropped += 1
                if min(log1, log2) >= -63 * M_LN2 { droppedWrongly += 1 }
                continue
            }
            kept += 1
            let error = ulpError(log, log1 + log2)
            if !(error <= worst.maxError) {
                worst.maxError = error.isNaN ? .infinity : error
                worst.worstInput = p1
                worst.worstResult = log
            }
        }
        worst.evaluated = kept
        print("logOfClassPairApprox [\(level.name)]: \(worst), \(dropped) products not normal")
        #expect(worst.maxError <= 1.5, "[\(level.name)] \(worst)")
        #expect(droppedWrongly == 0)
        #expect(kept > 300_000 && dropped > 100)
    }

    @Test("ulp error within the bound VectorMath.swift claims (dense where it peaks, sampled elsewhere; SEGLOSS_EXHAUSTIVE_MATH=1: every input)",
          arguments: MathCheck.all)
    func accuracy(check: MathCheck) async {
        let result = await check.run()
        print("\(check.function) [\(check.level)]: \(result)\(exhaustiveMath ? " (exhaustive)" : "")")
        #expect(result.maxError <= check.bound,
                "\(check.function) [\(check.level)] exceeds the \(check.bound) ulp VectorMath.swift claims: \(result)")
    }
}
