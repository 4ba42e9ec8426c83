// GeneralKernel — the statistics and gradient kernels of the general API (any dtype, logits or
// probabilities, masks, pos_weight, label smoothing) over one run of a channel's elements.
//
// A run is processed in blocks of `generalBlockLength`: the block is first staged into
// buffers of the computation type (pred's type), masked elements replaced by zeros (or, for
// the lean logits forms, by a logit whose terms are all 0: see stage), then each step is a
// plain loop over the buffers that LLVM vectorizes. Float pred is computed in float
// with the vectorized math of VectorMath.swift; double pred in double with the C library.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SegLossKernelTypes
#if SEGLOSS_AVX512
import CVectorMath
#endif

/// The sums of one run (`input.count` > 0). Masked elements add nothing and are not checked.
@inline(never)
public func generalStatisticsKernel(_ input: KernelInput, _ options: ElementOptions) -> KernelSums {
    switch (input.predType, input.targetType) {
    case (.float32, .float32): return runStatistics(input, options, Float.self, Float.self)
    case (.float32, .float64): return runStatistics(input, options, Float.self, Double.self)
    case (.float32, .uint8): return runStatistics(input, options, Float.self, UInt8.self)
    case (.float64, .float32): return runStatistics(input, options, Double.self, Float.self)
    case (.float64, .float64): return runStatistics(input, options, Double.self, Double.self)
    case (.float64, .uint8): return runStatistics(input, options, Double.self, UInt8.self)
    default:  // not a pred type: the core never passes one
        var sums = KernelSums()
        sums.invalidPred = true
        return sums
    }
}

/// Writes the gradient of one run's elements into `grad` (pred's type; may be pred itself):
/// 0 for masked elements. With `options.bce` it also returns the sum of the run's element
/// terms, bitwise the same as the statistics kernel's: a fused call sums them here, where
/// their logs overlap this pass's memory traffic.
@inline(never)
public func generalGradientKernel(
    _ input: KernelInput, _ options: ElementOptions, _ coefficients: KernelCoefficients,
    _ grad: UnsafeMutableRawPointer
) -> Double {
    switch (input.predType, input.targetType) {
    case (.float32, .float32): return runGradient(input, options, coefficients, grad, Float.self, Float.self)
    case (.float32, .float64): return runGradient(input, options, coefficients, grad, Float.self, Double.self)
    case (.float32, .uint8): return runGradient(input, options, coefficients, grad, Float.self, UInt8.self)
    case (.float64, .float32): return runGradient(input, options, coefficients, grad, Double.self, Float.self)
    case (.float64, .float64): return runGradient(input, options, coefficients, grad, Double.self, Double.self)
    case (.float64, .uint8): return runGradient(input, options, coefficients, grad, Double.self, UInt8.self)
    default: return 0
    }
}

// MARK: - The computation type

/// What the kernels need of the type they compute in: Float (vectorized approximations) or
/// Double (the C library).
protocol KernelReal: BinaryFloatingPoint, SIMDScalar, Codable, StoredElement {
    static func converting(_ value: some StoredElement) -> Self
    static func fromDouble(_ value: Double) -> Self
    /// max(log x, -100) for x in [0, 1].
    static func clampedLog(_ x: Self) -> Self
    /// max(log(1 - p), -100) for p in [0, 1], without the rounding of 1 - p.
    static func clampedLogOneMinus(_ p: Self) -> Self
    /// clampedLog(p) when `positive`, else clampedLogOneMinus(p): one log, not two.
    static func clampedLogOfClass(_ p: Self, positive: Bool) -> Self
    /// Whether hard targets' BCE logs are taken two at a time (logOfClassPair).
    static var pairsLogs: Bool { get }
    /// log(q1·q2), q = p for a target 1 and 1 - p for a target 0 (targets exactly 0 or 1),
    /// and the bits of the rounded product (+0's for -0): where those are at least
    /// Float.leastNormalMagnitude's, the log is clampedLogOfClass(p1) + clampedLogOfClass(p2)
    /// to within the rounding (no clamp is reached). Used only where `pairsLogs`.
    static func logOfClassPair(_ p1: Self, target1: Self, _ p2: Self, target2: Self)
        -> (log: Self, productBits: UInt32)
    /// e^x for x <= 0 (the kernels' use: e^-|logit|).
    static func exponentialOfNonPositive(_ x: Self) -> Self
    /// A logit whose e^-|x| `exponentialOfNonPositive` (and `vectorExponentials`) gives as
    /// exactly 0 without a slow path (see `stage(maskedLogits:)`), or nil.
    static var maskedLogit: Self? { get }
    /// a·b + c, in one rounding where the CPU level has FMA (VectorMath's multiplyAdd).
    static func fusedMultiplyAdd(_ a: Self, _ b: Self, _ c: Self) -> Self
    /// log(1 + x) for x in [0, 1].
    static func logOnePlus(_ x: Self) -> Self
    /// log(1 + x) for x in [0, 2^32].
    static func logOnePlusWide(_ x: Self) -> Self
    /// The value's bits folded into 32 (0 exactly for +0).
    static func orBits(_ x: Self) -> UInt32
    /// An unsigned integer as wide as the type, for the range checks.
    associatedtype Bits: FixedWidthInteger & UnsignedInteger
    /// The bits of x + 0 (which turns -0 into +0), as an unsigned integer: at most
    /// `oneBits` exactly when x is in [0, 1]. Negative values have the sign bit set, and
    /// values above 1, +inf and NaN have larger bits, so the largest bits of a block tell
    /// whether every element is in range: an integer maximum, which LLVM vectorizes.
    static func unitIntervalBits(_ x: Self) -> Bits
    static var oneBits: Bits { get }
    /// The bits of a non-positive y = -|x|, as an unsigned integer: below
    /// `negativeInfinityBits` exactly when x is finite (every NaN with the sign set is above).
    static func bits(ofNonPositive y: Self) -> Bits
    static var negativeInfinityBits: Bits { get }
    /// Whether the logits loops take e^-|x| from `vectorExponentials`, 16 lanes at a time,
    /// rather than from `exponentialOfNonPositive` (float at the AVX-512 level: see there).
    static var hasVectorExponentials: Bool { get }
    /// e[k] = e^-|raw[k]| for k < count rounded up to 16, raw[k] copied into `copy[k]` where
    /// one is given; with `t`, t[k] likewise into `copyT`, and returns the largest
    /// `bits(ofNonPositive: -|raw[k]|)` and `unitIntervalBits(t[k])` (else 0s). Only where
    /// `hasVectorExponentials`.
    static func vectorExponentials(
        _ raw: UnsafeMutablePointer<Self>, _ e: UnsafeMutablePointer<Self>, _ count: Int,
        copy: UnsafeMutablePointer<Self>?, t: UnsafeMutablePointer<Self>?, copyT: UnsafeMutablePointer<Self>?
    ) -> (largest: Bits, largestTarget: Bits)
    /// The lanes' pairwise sums (lane i and lane i + 8) in double.
    static func widen(_ lanes: SIMD16<Self>) -> SIMD8<Double>
    /// The statistics pass's sums of a staged block of logits whose exponentials e holds, as
    /// the sigmoid loop and blockSums compute them (the same operations in the same order, so
    /// the same bits), in one loop. Only where `hasVectorExponentials` (see "Explicit loops").
    static func logitsSums(
        _ raw: UnsafeMutablePointer<Self>, _ e: UnsafeMutablePointer<Self>, _ t: UnsafeMutablePointer<Self>,
        _ m: UnsafeMutablePointer<Self>, _ padded: Int, useMask: Bool, squared: Bool,
        _ tp: inout SIMD16<Self>, _ fp: inout SIMD16<Self>, _ fn: inout SIMD16<Self>, _ sq: inout SIMD16<Self>
    )
    /// The gradient of a staged block of logits whose exponentials e holds, in the plain lean
    /// form with elementScale > 0, and their element terms, as termsAndGradient computes them,
    /// in one loop that also builds up leanLogitsLanes' lanes from them (the same operations in
    /// the same order, so the same bits). `length` is a multiple of 64. Only where
    /// `hasVectorExponentials` (see "Explicit loops").
    static func leanLogitsGradient(
        _ raw: UnsafeMutablePointer<Self>, _ t: UnsafeMutablePointer<Self>, _ e: UnsafeMutablePointer<Self>,
        _ grad: UnsafeMutableRawPointer, _ length: Int, _ coefficients: GradientCoefficients<Self>,
        linear: Bool, _ lanes: inout LeanLanes<Self>
    )
}

/// The lean logits element terms' lanes as leanLogitsLanes builds them up: the terms' sum and
/// the four products.
struct LeanLanes<R: KernelReal> {
    var sum = SIMD16<R>(), s0 = SIMD16<R>(), s1 = SIMD16<R>(), s2 = SIMD16<R>(), s3 = SIMD16<R>()
}

/// The gradient pass's coefficients in the computation type (see runGradient).
struct GradientCoefficients<R: KernelReal> {
    var targetScale: R, offset: R, predScale: R, elementScale: R
}

/// A type an array of the C API holds: read without alignment, converted to Float or Double.
protocol StoredElement {
    var floatValue: Float { get }
    var doubleValue: Double { get }
}

extension Float: StoredElement {
    var floatValue: Float { self }
    var doubleValue: Double { Double(self) }
}

extension Double: StoredElement {
    var floatValue: Float { Float(self) }
    var doubleValue: Double { self }
}

extension UInt8: StoredElement {
    var floatValue: Float { Float(self) }
    var doubleValue: Double { Double(self) }
}

extension Float: KernelReal {
    @inline(__always) static func converting(_ value: some StoredElement) -> Float { value.floatValue }
    @inline(__always) static func fromDouble(_ value: Double) -> Float { Float(value) }
    @inline(__always) static func clampedLog(_ x: Float) -> Float { clampedLogApprox(x) }
    @inline(__always) static func clampedLogOneMinus(_ p: Float) -> Float {
        let u = 1 - p
        return clampedLogApprox(u, remainder: (1 - u) - p)
    }
    @inline(__always) static func clampedLogOfClass(_ p: Float, positive: Bool) -> Float {
        // The argument is chosen, not the result, so only one log is evaluated.
        let u = 1 - p
        return clampedLogApprox(positive ? p : u, remainder: positive ? 0 : (1 - u) - p)
    }
    /// With FMA only, which makes the remainders exact (see logOfClassPairApprox).
    static var pairsLogs: Bool {
        #if SEGLOSS_FMA || arch(arm64)
        return true
        #else
        return false
        #endif
    }
    @inline(__always) static func logOfClassPair(_ p1: Float, target1: Float, _ p2: Float, target2: Float)
        -> (log: Float, productBits: UInt32) {
        let (log, product) = logOfClassPairApprox(p1, target: target1, p2, target: target2)
        return (log, (product + 0).bitPattern)
    }
    @inline(__always) static func exponentialOfNonPositive(_ x: Float) -> Float { expOfNonPositiveApprox(x) }
    /// At the AVX-512 level the exponentials come from a 16-entry table of 2^(j/16) in a
    /// register, looked up by a lane permute, and a polynomial of degree 3 (vector_math.h):
    /// three multiply-adds and a multiply where expOfNonPositiveApprox takes six multiply-adds,
    /// in the loops that bound the logits calls. At most 1.07 ulp where expOfNonPositiveApprox
    /// is 0.89 (VectorMathTests). The other levels keep
    /// expOfNonPositiveApprox (not tried there: AVX2's permute holds 8 lanes, whose table
    /// would need a polynomial of degree 4; without one, a table read lane by lane is a
    /// gather).
    static var hasVectorExponentials: Bool {
        #if SEGLOSS_AVX512
        return true
        #else
        return false
        #endif
    }
    @inline(__always) static func vectorExponentials(
        _ raw: UnsafeMutablePointer<Float>, _ e: UnsafeMutablePointer<Float>, _ count: Int,
        copy: UnsafeMutablePointer<Float>?, t: UnsafeMutablePointer<Float>?, copyT: UnsafeMutablePointer<Float>?
    ) -> (largest: UInt32, largestTarget: UInt32) {
        #if SEGLOSS_AVX512
        var largest = SIMD16<UInt32>(), largestTarget = SIMD16<UInt32>()
        var k = 0
        while k < count {
            let x = segloss_load16(raw + k)
            if let copy { segloss_store16(copy + k, x) }
            if let t {
                let y = segloss_load16(t + k)
                if let copyT { segloss_store16(copyT + k, y) }
                largest = segloss_max_negative_magnitude_bits16(largest, x)
                largestTarget = segloss_max_unit_bits16(largestTarget, y)
            }
            segloss_store16(e + k, expOfNegativeMagnitudeLanes(x))
            k &+= 16
        }
        return (segloss_reduce_max16(largest), segloss_reduce_max16(largestTarget))
        #else
        return (0, 0)
        #endif
    }
    /// expOfNonPositiveApprox is 0 below -87.34, with no subnormal arithmetic, and so is
    /// expOfNegativeMagnitudeLanes (VectorMathTests checks -1000).
    static var maskedLogit: Float? { -1000 }
    @inline(__always) static func fusedMultiplyAdd(_ a: Float, _ b: Float, _ c: Float) -> Float {
        multiplyAdd(a, b, c)
    }
    @inline(__always) static func logOnePlus(_ x: Float) -> Float { log1pOfUnitApprox(x) }
    @inline(__always) static func logOnePlusWide(_ x: Float) -> Float { log1pApprox(x) }
    @inline(__always) static func orBits(_ x: Float) -> UInt32 { x.bitPattern }
    @inline(__always) static func unitIntervalBits(_ x: Float) -> UInt32 { (x + 0).bitPattern }
    static var oneBits: UInt32 { Float(1).bitPattern }
    @inline(__always) static func bits(ofNonPositive y: Float) -> UInt32 { y.bitPattern }
    static var negativeInfinityBits: UInt32 { (-Float.infinity).bitPattern }
    @inline(__always) static func widen(_ lanes: SIMD16<Float>) -> SIMD8<Double> {
        // Lane by lane with constant indices, which LLVM turns into one vector conversion
        // (the generic SIMD8<Double>(SIMD8<Float>) initializer can stay an out-of-line call).
        var result = SIMD8<Double>()
        result[0] = Double(lanes[0]) + Double(lanes[8])
        result[1] = Double(lanes[1]) + Double(lanes[9])
        result[2] = Double(lanes[2]) + Double(lanes[10])
        result[3] = Double(lanes[3]) + Double(lanes[11])
        result[4] = Double(lanes[4]) + Double(lanes[12])
        result[5] = Double(lanes[5]) + Double(lanes[13])
        result[6] = Double(lanes[6]) + Double(lanes[14])
        result[7] = Double(lanes[7]) + Double(lanes[15])
        return result
    }
}

extension Double: KernelReal {
    @inline(__always) static func converting(_ value: some StoredElement) -> Double { value.doubleValue }
    @inline(__always) static func fromDouble(_ value: Double) -> Double { value }
    @inline(__always) static func clampedLog(_ x: Double) -> Double { Swift.max(log(x), -100) }
    @inline(__always) static func clampedLogOneMinus(_ p: Double) -> Double { Swift.max(log1p(-p), -100) }
    @inline(__always) static func clampedLogOfClass(_ p: Double, positive: Bool) -> Double {
        positive ? clampedLog(p) : clampedLogOneMinus(p)
    }
    /// No: the double path keeps the C library's logs, one an element.
    static var pairsLogs: Bool { false }
    @inline(__always) static func logOfClassPair(_ p1: Double, target1: Double, _ p2: Double, target2: Double)
        -> (log: Double, productBits: UInt32) {
        (clampedLogOfClass(p1, positive: target1 > 0.5) + clampedLogOfClass(p2, positive: target2 > 0.5), .max)
    }
    @inline(__always) static func exponentialOfNonPositive(_ x: Double) -> Double { exp(x) }
    /// None: the C library's exp reaches 0 through its underflow path, which costs tens of
    /// nanoseconds an element (a subnormal product).
    static var maskedLogit: Double? { nil }
    static var hasVectorExponentials: Bool { false }
    static func vectorExponentials(
        _: UnsafeMutablePointer<Double>, _: UnsafeMutablePointer<Double>, _: Int,
        copy: UnsafeMutablePointer<Double>?, t: UnsafeMutablePointer<Double>?, copyT: UnsafeMutablePointer<Double>?
    ) -> (largest: UInt64, largestTarget: UInt64) { (0, 0) }
    static func logitsSums(
        _: UnsafeMutablePointer<Double>, _: UnsafeMutablePointer<Double>, _: UnsafeMutablePointer<Double>,
        _: UnsafeMutablePointer<Double>, _: Int, useMask: Bool, squared: Bool,
        _: inout SIMD16<Double>, _: inout SIMD16<Double>, _: inout SIMD16<Double>, _: inout SIMD16<Double>
    ) {}
    static func leanLogitsGradient(
        _: UnsafeMutablePointer<Double>, _: UnsafeMutablePointer<Double>, _: UnsafeMutablePointer<Double>,
        _: UnsafeMutableRawPointer, _: Int, _: GradientCoefficients<Double>,
        linear: Bool, _: inout LeanLanes<Double>
    ) {}
    @inline(__always) static func fusedMultiplyAdd(_ a: Double, _ b: Double, _ c: Double) -> Double {
        #if SEGLOSS_FMA || arch(arm64)
        return c.addingProduct(a, b)
        #else
        return a * b + c
        #endif
    }
    @inline(__always) static func logOnePlus(_ x: Double) -> Double { log1p(x) }
    @inline(__always) static func logOnePlusWide(_ x: Double) -> Double { log1p(x) }
    @inline(__always) static func orBits(_ x: Double) -> UInt32 {
        UInt32(truncatingIfNeeded: x.bitPattern | (x.bitPattern &>> 32))
    }
    @inline(__always) static func unitIntervalBits(_ x: Double) -> UInt64 { (x + 0).bitPattern }
    static var oneBits: UInt64 { Double(1).bitPattern }
    @inline(__always) static func bits(ofNonPositive y: Double) -> UInt64 { y.bitPattern }
    static var negativeInfinityBits: UInt64 { (-Double.infinity).bitPattern }
    @inline(__always) static func widen(_ lanes: SIMD16<Double>) -> SIMD8<Double> {
        lanes.lowHalf + lanes.highHalf
    }
}

// MARK: - Staging

/// Elements per block of the general kernels (the flat ones' kernelBlockLength is 256): the
/// block buffers, 7 × 2 KB for float, stay in the L1 cache with the block's inputs, and a block
/// per 512 elements halves the fixed work of a block (its sums' widening, the lean logits'
/// logs) and the memory system's idle time between blocks. Measured against 256 in one
/// process, interleaved call by call, 16M elements on two threads: logits 1.5–6%, batch Dice
/// per channel 3%, masked logits 6% faster; 1024 was slower in every case (the buffers
/// outgrow the L1 cache).
let generalBlockLength = 512

/// The block buffers: the raw pred (logits or probabilities), p and 1 - p (for logits: the
/// sigmoids of x and -x, so that 1 - p keeps its precision where p is near 1), t, the valid
/// flag (1 or 0), e^-|x| (logits) and the element terms, each `generalBlockLength` values.
private struct BlockBuffers<R: KernelReal> {
    private(set) var raw, t: UnsafeMutablePointer<R>
    let p, q, m, e, terms: UnsafeMutablePointer<R>
    /// The block's own raw and t buffers: raw and t are these unless `stage` left them on the
    /// caller's arrays.
    let ownRaw, ownT: UnsafeMutablePointer<R>

    init(_ base: UnsafeMutablePointer<R>) {
        raw = base
        p = base + generalBlockLength
        q = p + generalBlockLength
        t = q + generalBlockLength
        m = t + generalBlockLength
        e = m + generalBlockLength
        terms = e + generalBlockLength
        ownRaw = raw
        ownT = t
    }

    /// The block's buffers with raw and t read from the caller's arrays themselves (never
    /// written through): `pred` and `target` already hold the computation type.
    init(_ base: UnsafeMutablePointer<R>, pred: UnsafeRawPointer, target: UnsafeRawPointer) {
        self.init(base)
        raw = UnsafeMutablePointer(mutating: pred.assumingMemoryBound(to: R.self))
        t = UnsafeMutablePointer(mutating: target.assumingMemoryBound(to: R.self))
    }
    static var capacity: Int { 7 * generalBlockLength }

    /// Whether raw (and with `target`, t) is the caller's array at an address off a 64-byte
    /// line: there every vector load spans one cache line more than it needs (two for 16
    /// floats). A block is a run's, so a run that starts off a line copies even in an array
    /// that does not.
    ///
    /// glibc's malloc and numpy put their large arrays 16 bytes past a line (PyTorch puts
    /// them on one). A load that spans two lines costs little in the loop that first reads the
    /// block from memory, but the later loops, which reread it from the L1 cache, ran slower
    /// for it. So the first loop of the logits passes copies what it reads into the own
    /// buffers where this holds (`useOwnBuffers`), and the later loops read the copies: the
    /// same values, so the same results. Measured at 16M elements on two threads, 200 rounds
    /// interleaved in one process with the builds' order rotated each round, median of the
    /// rounds' ratios: the logits call 3–5% faster on arrays 16 bytes past a line in 4 KiB
    /// pages, 1–3% in 2 MiB pages; the gradient pass's copy alone is worth about 1%. (A first
    /// measurement in a fixed order said 5–6%: the build timed right after the floor ran
    /// 2–4.5% slower. Copying on aligned arrays too made those calls 2–4% slower there; the
    /// probabilities' passes, whose first loop is light, were no faster for copies. Double
    /// pred takes the same path, measured only for float.)
    func spansLines(target: Bool) -> Bool {
        raw != ownRaw && (Int(bitPattern: raw) | (target ? Int(bitPattern: t) : 0)) & 63 != 0
    }

    /// Points raw (and with `target`, t) at the own buffers, once the copies are there.
    mutating func useOwnBuffers(target: Bool) {
        raw = ownRaw
        if target { t = ownT }
    }
}

/// Reads elements `start ..< start + length` of the run into `raw`, `t` and `m`: masked
/// elements and the padding up to `padded` (a multiple of 16) get target 0, pred 0 and flag 0;
/// with `maskedLogits`, pred `R.maskedLogit` and no flags (m is left as it is but for the
/// padding's).
///
/// Every term that the lean logits forms (pos_weight 1, no label smoothing) compute of
/// `R.maskedLogit` with target 0 is exactly 0, so they need no flags: its e^-|x| is 0, so
/// sigmoid(x) = 0, sigma'(x) = 0 and log(1 + e^-|x|) = 0, and max(x, 0) - 0·x = 0. (The
/// other forms' products with it could overflow for a huge pos_weight, and inf times a flag
/// 0 is no 0: they keep pred 0 and the flags.)
///
/// Every term of a zero element is finite, so the kernels drop masked elements by
/// multiplying with m (+ 0, which turns a -0 into 0) rather than selecting: a select of a
/// computed value becomes a branch around the computation, which LLVM does not vectorize.
@inline(__always)
private func stage<R: KernelReal, P: StoredElement, T: StoredElement>(
    _ input: KernelInput, _ start: Int, _ length: Int, _ padded: Int, _ b: BlockBuffers<R>,
    _: P.Type, _: T.Type, maskedLogits: Bool, direct: Bool = true
) -> BlockBuffers<R> {
    let pred = input.pred + start &* MemoryLayout<P>.stride
    let target = input.target + start &* MemoryLayout<T>.stride
    let fill: R = maskedLogits ? R.maskedLogit ?? 0 : 0
    // Arrays already in the computation type, with no mask, need no copy but for the short
    // last block of a run (which is padded).
    if direct && P.self == R.self && T.self == R.self && input.mask == nil && length == padded {
        return BlockBuffers(b.raw, pred: pred, target: target)
    }
    if let mask = input.mask.map({ $0 + start }) {
        // One loop per buffer: LLVM vectorizes a loop behind run-time checks that its stores
        // overlap none of its loads, and gives up on a loop that would need more checks than
        // its limit (three stores and three loads did, depending on the inlining around).
        if !maskedLogits {
            for k in 0..<length { b.m[k] = mask[k] != 0 ? 1 : 0 }
        }
        for k in 0..<length {
            let x = R.converting(pred.loadUnaligned(fromByteOffset: k &* MemoryLayout<P>.stride, as: P.self))
            b.raw[k] = mask[k] != 0 ? x : fill
        }
        for k in 0..<length {
            let y = R.converting(target.loadUnaligned(fromByteOffset: k &* MemoryLayout<T>.stride, as: T.self))
            b.t[k] = mask[k] != 0 ? y : 0
        }
    } else {
        // m holds ones already (forEachRunBlock): only a run's short last block has padding.
        for k in 0..<length {
            b.raw[k] = R.converting(pred.loadUnaligned(fromByteOffset: k &* MemoryLayout<P>.stride, as: P.self))
            b.t[k] = R.converting(target.loadUnaligned(fromByteOffset: k &* MemoryLayout<T>.stride, as: T.self))
        }
    }
    for k in length..<padded {
        b.raw[k] = fill
        b.t[k] = 0
        b.m[k] = 0
    }
    return BlockBuffers(b.raw)
}

/// The number of non-zero bytes of `mask[0 ..< length]`.
@inline(__always)
private func validCount(_ mask: UnsafePointer<UInt8>, _ length: Int) -> Int {
    var count: UInt32 = 0
    for k in 0..<length { count &+= UInt32(Swift.min(mask[k], 1)) }
    return Int(count)
}

/// Calls `body(start, length, padded)` for each block of the run, with the block buffers
/// (the thread's scratch: see KernelScratch). `masked`: stage sets the valid flags block by
/// block from the mask; otherwise they are ones but for a short block's padding.
@inline(__always)
private func forEachRunBlock<R: KernelReal>(
    _ count: Int, pred: UnsafeRawPointer, masked: Bool, _ body: (Int, Int, Int, BlockBuffers<R>) -> Void
) {
    // On whole 64-byte lines: a buffer vector that straddles two lines costs two loads or
    // stores (the masked logits call ran 7% slower with them 16 bytes off, when they were on
    // the stack, where their place moved with the size of the process's environment).
    //
    // And 1 KB past pred's place in a 4 KB page: where they fell within a page relative to
    // the caller's arrays cost up to 5% at 16M elements (a dependence on the low 12 address
    // bits, like 4K aliasing between stores and later loads; the mechanism is not pinned
    // down). Measured in one process, calls interleaved, with the arrays at the same place in
    // their pages, as separate large allocations are: logits 12.05 -> 11.58 ms, masked
    // 12.09 -> 11.56 ms, batch Dice per channel unchanged (10.04 / 10.05); with the arrays at
    // other places in their pages, within noise.
    //
    // No software prefetch: prefetching one or two blocks ahead (through a C helper: Swift
    // has no prefetch) made the 16M calls slower, even with one line of pred and target a
    // block (logits ×1.05-1.19, per channel ×1.00-1.11, on the benchmark's three layouts),
    // or with one line of each only where the window 4 or 8 KiB ahead reaches a new page
    // (logits ×1.07-1.28: each such prefetch seems to cost a page walk the core waits for).
    // With every line of pred, target and grad it was ×1.5-1.8. In cache, the instructions
    // alone cost 0.6-19%.
    KernelScratch.with { header, base in
        let page = 4096, place = 1024
        let shift = (place &+ Int(bitPattern: pred) &- Int(bitPattern: base)) & (page &- 1) & ~63
        assert(shift &+ BlockBuffers<R>.capacity &* MemoryLayout<R>.stride <= KernelScratch.capacity)
        let buffers = BlockBuffers((base + shift).bindMemory(to: R.self, capacity: BlockBuffers<R>.capacity))
        // The flags start as ones: stage overwrites a block's with the mask's, or the padding's
        // with 0, and the lean logits terms' product reads them past the padding, up to a
        // multiple of 64 (leanLogitsLanes). An unmasked call finds them in the scratch where
        // the last call that wrote them put them at the same place (the same type, and pred
        // at the same place in its page), as the header records; otherwise they are written
        // here, and recorded unless a mask will overwrite them.
        let m = buffers.m
        let onesBytes = generalBlockLength &* MemoryLayout<R>.stride
        if masked || header.pointee.onesAddress != Int(bitPattern: m) || header.pointee.onesBytes != onesBytes {
            m.initialize(repeating: 1, count: generalBlockLength)
            header.pointee = masked ? ScratchHeader() : ScratchHeader(onesAddress: Int(bitPattern: m), onesBytes: onesBytes)
        }
        var start = 0
        while start < count {
            let length = min(generalBlockLength, count &- start)
            let padded = (length &+ 15) & ~15
            body(start, length, padded, buffers)
            // stage gave the padding flag 0.
            if !masked { for k in length..<padded { m[k] = 1 } }
            start &+= length
        }
    }
}

// MARK: - Statistics

private func runStatistics<R: KernelReal, T: StoredElement>(
    _ input: KernelInput, _ options: ElementOptions, _: R.Type, _: T.Type
) -> KernelSums {
    let posWeight = R.fromDouble(options.posWeight)
    let smoothing = R.fromDouble(options.labelSmoothing)
    // Double lanes, added to once per block and summed once per run.
    var tpSum = SIMD8<Double>(), fpSum = SIMD8<Double>(), fnSum = SIMD8<Double>()
    var sqSum = SIMD8<Double>(), elementSum = SIMD8<Double>()
    var badPred = false, badTarget = false, softTargets = false, validElements = 0
    let squaredError = options.squaredError, masked = input.mask != nil
    let findSoftTargets = options.findSoftTargets
    // The lean logits forms need no valid flags (see stage).
    let leanLogits = options.logits && posWeight == 1 && smoothing == 0 && R.maskedLogit != nil
    forEachRunBlock(input.count, pred: input.pred, masked: input.mask != nil) { (start, length, padded, buffers: BlockBuffers<R>) in
        // Every loop works on locals: the closure's parameters and captures live in memory,
        // which any store through a pointer might change as far as LLVM knows, so it would
        // reload them at each step and not vectorize the loop.
        let posWeight = posWeight, smoothing = smoothing
        // The range checks run inside the loops that read the block anyway.
        var invalidPred = false
        var targetBits: R.Bits = 0
        var b = buffers
        // A whole masked block of the lean forms, float pred, float or uint8 targets, at the
        // AVX-512 level: staged, checked and counted in the exponentials' loop (see "Explicit
        // loops"). Else stage, validCount and sigmoidLoops.
        if stagesWithExponentials(input, length, padded, leanLogits: leanLogits, R.self, T.self) {
            let r = stageMaskedBlock(input, start, length, b, T.self, checks: true)
            validElements &+= r.valid
            invalidPred = r.largest >= UInt32(truncatingIfNeeded: R.negativeInfinityBits)
            targetBits = R.Bits(truncatingIfNeeded: r.largestTarget)
        } else {
            b = stage(input, start, length, padded, buffers, R.self, T.self, maskedLogits: leanLogits)
            if let mask = input.mask { validElements &+= validCount(mask + start, length) }
            if leanLogits {
                invalidPred = sigmoidLoops(&b, padded, &targetBits, useMask: false)
            } else if options.logits {
                // Two loops, one without the valid flags (a block with no masked or padding elements).
                if masked || length != padded {
                    invalidPred = sigmoidLoops(&b, padded, &targetBits, useMask: true)
                } else {
                    invalidPred = sigmoidLoops(&b, padded, &targetBits, useMask: false)
                }
            } else {
                let checks = findSoftTargets
                    ? rangeChecks(b, padded, findingSoftTargets: true)
                    : rangeChecks(b, padded, findingSoftTargets: false)
                invalidPred = checks.pred > R.oneBits
                targetBits = checks.target
                softTargets = softTargets || checks.soft != 0
            }
        }
        let elementLanes = options.bce
            ? blockElementSum(b, padded, options.logits, posWeight, smoothing,
                              useMask: !leanLogits && (masked || length != padded), hardTargets: false)
            : SIMD16<R>()
        badPred = badPred || invalidPred
        badTarget = badTarget || targetBits > R.oneBits
        var tp = SIMD16<R>(), fp = SIMD16<R>(), fn = SIMD16<R>(), sq = SIMD16<R>()
        // Separate loops for each case, so that no loop tests a flag or chooses between a
        // loaded and a computed 1 - p at each step (which LLVM compiles to lane shuffles).
        // The common cases do without SQ (only squared forms and the sums outputs use it).
        // At the AVX-512 level the logits' sums come with their sigmoids (see "Explicit loops").
        let flagged = !leanLogits && (masked || length != padded)
        switch (options.logits, squaredError) {
        case (true, true) where R.hasVectorExponentials && flagged:
            R.logitsSums(b.raw, b.e, b.t, b.m, padded, useMask: true, squared: true, &tp, &fp, &fn, &sq)
        case (true, true) where R.hasVectorExponentials:
            R.logitsSums(b.raw, b.e, b.t, b.m, padded, useMask: false, squared: true, &tp, &fp, &fn, &sq)
        case (true, false) where R.hasVectorExponentials && flagged:
            R.logitsSums(b.raw, b.e, b.t, b.m, padded, useMask: true, squared: false, &tp, &fp, &fn, &sq)
        case (true, false) where R.hasVectorExponentials:
            R.logitsSums(b.raw, b.e, b.t, b.m, padded, useMask: false, squared: false, &tp, &fp, &fn, &sq)
        case (true, true): blockSums(b, padded, &tp, &fp, &fn, &sq, logits: true, squared: true)
        case (true, false): blockSums(b, padded, &tp, &fp, &fn, &sq, logits: true, squared: false)
        case (false, true): blockSums(b, padded, &tp, &fp, &fn, &sq, logits: false, squared: true)
        case (false, false): blockSums(b, padded, &tp, &fp, &fn, &sq, logits: false, squared: false)
        }
        tpSum += R.widen(tp)
        fpSum += R.widen(fp)
        fnSum += R.widen(fn)
        sqSum += R.widen(sq)
        elementSum += R.widen(elementLanes)
    }
    var sums = KernelSums()
    sums.truePositive = tpSum.sum()
    sums.falsePositive = fpSum.sum()
    sums.falseNegative = fnSum.sum()
    sums.squaredError = squaredError ? sqSum.sum() : 0
    sums.elementSum = elementSum.sum()
    // Without a mask every element is valid.
    sums.validCount = Double(masked ? validElements : input.count)
    sums.invalidPred = badPred
    sums.invalidTarget = badTarget
    sums.softTargets = softTargets
    return sums
}

/// The largest `unitIntervalBits` of a staged block's probabilities and targets and, with
/// `findingSoftTargets`, the OR of the bits of t(1 - t), 0 exactly when every t is 0 or 1
/// (called with a literal, so that the loop without it does not test the flag).
@inline(__always)
private func rangeChecks<R: KernelReal>(
    _ b: BlockBuffers<R>, _ padded: Int, findingSoftTargets: Bool
) -> (pred: R.Bits, target: R.Bits, soft: UInt32) {
    var predBits: R.Bits = 0, targetBits: R.Bits = 0, softBits: UInt32 = 0
    for k in 0..<padded {
        let x = R.unitIntervalBits(b.raw[k]), y = b.t[k], bits = R.unitIntervalBits(y)
        predBits = x > predBits ? x : predBits
        targetBits = bits > targetBits ? bits : targetBits
        if findingSoftTargets { softBits |= R.orBits(y * (1 - y)) }
    }
    return (predBits, targetBits, softBits)
}

/// Adds a staged block's TP, FP and FN to the lanes, and with `squared` its SQ: the
/// statistics pass's sums loop, one per constant set of flags (called with literals, so that
/// no loop tests a flag at each step). With logits, 1 - p is the loaded q. Masked elements
/// and the padding (t = 0, and p = 0: staged so, or sigmoid(R.maskedLogit)) add 0 to each sum.
@inline(__always)
private func blockSums<R: KernelReal>(
    _ b: BlockBuffers<R>, _ padded: Int, _ tp: inout SIMD16<R>, _ fp: inout SIMD16<R>,
    _ fn: inout SIMD16<R>, _ sq: inout SIMD16<R>, logits: Bool, squared: Bool
) {
    var k = 0
    while k < padded {
        let tv = UnsafeRawPointer(b.t + k).loadUnaligned(as: SIMD16<R>.self)
        let pv: SIMD16<R>, qv: SIMD16<R>
        if logits {
            pv = UnsafeRawPointer(b.p + k).loadUnaligned(as: SIMD16<R>.self)
            qv = UnsafeRawPointer(b.q + k).loadUnaligned(as: SIMD16<R>.self)
        } else {
            pv = UnsafeRawPointer(b.raw + k).loadUnaligned(as: SIMD16<R>.self)
            qv = 1 - pv
        }
        tp += pv * tv
        fp += pv * (1 - tv)
        fn += qv * tv
        if squared {
            // p - t as (1 - t)p - t(1 - p): equal, and where t is near 1 (and so p, for a
            // good prediction) it takes the precise 1 - p.
            let d = (1 - tv) * pv - tv * qv
            sq += d * d
        }
        k &+= 16
    }
}

/// Fills e with e^-|x|, and p = sigmoid(x) and q = sigmoid(-x) (times the valid flag with
/// `useMask`; not where `R.hasVectorExponentials`, whose logitsSums computes them in its sums
/// loop), for a staged block of logits; returns whether some logit is NaN or infinite,
/// and takes the targets' largest `unitIntervalBits` into `targetBits`. (Elements staged as
/// `R.maskedLogit` need no flag: their p is 0, and with their t = 0 they add 0 to every sum.)
/// Where the block's logits or targets span lines (see `spansLines`), it copies them into
/// the own buffers and points `staged` at those, for the loops after it.
///
/// Two loops, the exponentials and then the rest: one loop holding both keeps more
/// constants live than the registers hold, and runs slower than the two with their extra
/// store and load.
@inline(__always)
private func sigmoidLoops<R: KernelReal>(
    _ staged: inout BlockBuffers<R>, _ padded: Int, _ targetBits: inout R.Bits, useMask: Bool
) -> Bool {
    var largest: R.Bits = 0
    var largestTarget = targetBits
    // One loop for each, so that neither tests the flag at each step.
    @inline(__always) func exponentials(copying: Bool) {
        let raw = staged.raw, t = staged.t, e = staged.e, ownRaw = staged.ownRaw, ownT = staged.ownT
        if R.hasVectorExponentials {
            let bits = R.vectorExponentials(raw, e, padded, copy: copying ? ownRaw : nil, t: t,
                                            copyT: copying ? ownT : nil)
            largest = bits.largest
            largestTarget = Swift.max(largestTarget, bits.largestTarget)
            return
        }
        for k in 0..<padded {
            let x = raw[k], y = t[k]
            if copying {
                ownRaw[k] = x
                ownT[k] = y
            }
            let negativeMagnitude = -x.magnitude
            let bits = R.bits(ofNonPositive: negativeMagnitude)
            largest = bits > largest ? bits : largest
            let yBits = R.unitIntervalBits(y)
            largestTarget = yBits > largestTarget ? yBits : largestTarget
            e[k] = R.exponentialOfNonPositive(negativeMagnitude)
        }
    }
    if staged.spansLines(target: true) {
        exponentials(copying: true)
        staged.useOwnBuffers(target: true)
    } else {
        exponentials(copying: false)
    }
    targetBits = largestTarget
    let b = staged
    if !R.hasVectorExponentials {
        for k in 0..<padded {
            let x = b.raw[k], a = b.e[k]
            let inverse = 1 / (1 + a)
            let p = x >= 0 ? inverse : a * inverse
            let q = x >= 0 ? a * inverse : inverse
            b.p[k] = useMask ? p * b.m[k] : p
            b.q[k] = useMask ? q * b.m[k] : q
        }
    }
    return largest >= R.negativeInfinityBits
}

/// max(-x, 0), +0 for x = ±0 and NaN: the value of x < 0 ? -x : 0, as one maximum (x86's
/// max returns its second operand unless the first is greater).
@inline(__always)
private func negativePart<R: KernelReal>(_ x: R) -> R {
    let negated = -x
    return negated > 0 ? negated : 0
}

/// The sum of a staged block's element terms, in the computation type's 16 lanes; the same
/// arithmetic for the statistics and the gradient kernel, so both give the same bits. With
/// logits, `e` holds e^-|x| on entry (both kernels compute it for the sigmoid). The terms are
/// written into `terms` and summed from there (the lean logits terms without their logs:
/// see leanLogitsLanes).
/// `hardTargets`: every target is known to be 0 or 1, so the check for soft ones is skipped.
@inline(__always)
private func blockElementSum<R: KernelReal>(
    _ b: BlockBuffers<R>, _ padded: Int, _ logits: Bool, _ posWeight: R, _ smoothing: R,
    useMask: Bool, hardTargets: Bool
) -> SIMD16<R> {
    let terms = b.terms
    if logits && posWeight == 1 && smoothing == 0 {
        // The form below without the factors that are 1 here (1 + (w - 1)ts, and the flags
        // where no element needs one: none is masked or padding, or they are staged as
        // `R.maskedLogit`, whose term is 0): the same values, fewer operations.
        if useMask {
            for k in 0..<padded {
                terms[k] = logitsElementTerm(b.raw[k], b.t[k], b.e[k], posWeight, smoothing, lean: true) * b.m[k]
            }
        } else {
            for k in 0..<padded {
                terms[k] = logitsElementTerm(b.raw[k], b.t[k], b.e[k], posWeight, smoothing, lean: true)
            }
        }
        return leanLogitsLanes(b, padded, useMask: useMask)
    } else if logits {
        for k in 0..<padded {
            terms[k] = logitsElementTerm(b.raw[k], b.t[k], b.e[k], posWeight, smoothing, lean: false) * b.m[k]
        }
    } else {
        // The OR of the bits of t(1 - t), 0 exactly when every t is 0 or 1. (An OR of 0/1
        // flags becomes a scalar search that stops at the first soft target, and a float
        // maximum is no reduction LLVM vectorizes.)
        var softBits: UInt32 = 0
        if !hardTargets {
            for k in 0..<padded {
                let y = b.t[k]
                softBits |= R.orBits(y * (1 - y))
            }
        }
        if softBits == 0 && smoothing == 0 {
            // Targets all 0 or 1: one log per element (the same value as the form below).
            // Masked and padding elements (p = t = 0) give -log(1) = -0 here, as they would
            // times their flag 0: this form needs no flags. Nor, with weight 1, a weight.
            if posWeight == 1 {
                // Two terms to a log where the type can (float with FMA), unless the block
                // holds a probability so far from its target that a product is not normal.
                if R.pairsLogs && padded % 32 == 0 && pairedClassTerms(b, padded) {
                    return blockSum(terms, padded / 2)
                }
                for k in 0..<padded {
                    let positive = b.t[k] > 0.5
                    terms[k] = -R.clampedLogOfClass(b.raw[k], positive: positive)
                }
            } else {
                for k in 0..<padded {
                    let positive = b.t[k] > 0.5
                    terms[k] = -(positive ? posWeight : 1) * R.clampedLogOfClass(b.raw[k], positive: positive)
                }
            }
        } else {
            for k in 0..<padded {
                let p = b.raw[k]
                let ts = b.t[k] * (1 - smoothing) + smoothing / 2
                let term = -(posWeight * ts * R.clampedLog(p) + (1 - ts) * R.clampedLogOneMinus(p))
                terms[k] = term * b.m[k]
            }
        }
    }
    return blockSum(terms, padded)
}

/// Fills terms[k] with -log(q_2k·q_2k+1) for k < padded / 2 (q = p for a target 1, 1 - p for
/// a target 0): the block's BCE terms of hard targets and weight 1, two to a log. Returns
/// false where some product is not normal (then some q is below 2^-63; rare): those terms
/// are then not the clamped ones, and the caller takes the block's logs one by one.
///
/// Neighbours are paired, so the loop reads the block in order (LLVM separates the pairs with
/// two permutes a vector). Pairing the block's halves, k with k + padded / 2, was faster still
/// in cache (0.64 ns an element) but 13–20% slower at 16M elements, where this is 4–5% faster
/// than one log an element: the loop that first reads a block's memory then reads it in four
/// places at once.
///
/// Against one log an element: half the logs, each a dependent chain of some 25 operations
/// that LLVM's vectorized loop cannot overlap enough; batch Dice per channel's fused call
/// takes 0.70 ns an element in cache instead of 0.77, and the sum is more precise (one
/// rounding of the log for two terms).
@inline(__always)
private func pairedClassTerms<R: KernelReal>(_ b: BlockBuffers<R>, _ padded: Int) -> Bool {
    let half = padded / 2
    let raw = b.raw, t = b.t, terms = b.terms
    // The products' smallest bits: an integer minimum, which LLVM vectorizes (an "all
    // normal" flag would become a search that stops at the first false).
    var lowest = UInt32.max
    for k in 0..<half {
        let (log, bits) = R.logOfClassPair(raw[2 &* k], target1: t[2 &* k],
                                           raw[2 &* k &+ 1], target2: t[2 &* k &+ 1])
        lowest = bits < lowest ? bits : lowest
        terms[k] = -log
    }
    return lowest >= Float.leastNormalMagnitude.bitPattern
}

/// The element term of a logit x (with a = e^-|x|) and target t: BCE-with-logits,
/// (1 - t)x + softplus(-x) = (1 - t)x + log(1 + e^-|x|) + max(-x, 0); with `lean` for
/// pos_weight 1 and no label smoothing, else with both. The lean form is the same sum as
/// max(x, 0) - t·x + log(1 + e^-|x|) (x + max(-x, 0) = max(x, 0)), and this returns it
/// without its log: a maximum and one multiply-add, exact for t = 0 or 1. The logs are
/// summed apart, as the log of a product (leanLogitsLanes).
@inline(__always)
private func logitsElementTerm<R: KernelReal>(
    _ x: R, _ t: R, _ a: R, _ posWeight: R, _ smoothing: R, lean: Bool
) -> R {
    if lean { return R.fusedMultiplyAdd(-t, x, x > 0 ? x : 0) }
    let softplus = R.logOnePlus(a) + negativePart(x)
    let ts = t * (1 - smoothing) + smoothing / 2
    return (1 - ts) * x + (1 + (posWeight - 1) * ts) * softplus
}

/// The lean logits element terms' sum in 16 lanes: `terms`' (the terms without their
/// log(1 + a)) and the logs', which are summed as the log of a product, once a lane:
/// lane j's S = prod(1 + a) - 1 over the block's elements k = j mod 16, built up as
/// S + a + S·a (never rounding 1 + a, so S is as precise as a sum of the a's), then
/// log(1 + S). With `useMask`, a times the valid flag. e must hold 0 or a flagged value for
/// the padding. Overwrites terms[0 ..< 32]. From `lanes`, the sum and products of the block's
/// elements before `from` (a multiple of 64), which leanLogitsGradient built up.
@inline(__always)
private func leanLogitsLanes<R: KernelReal>(
    _ b: BlockBuffers<R>, _ padded: Int, useMask: Bool, from: Int = 0, _ lanes: LeanLanes<R> = LeanLanes()
) -> SIMD16<R> {
    let sum = blockSum(b.terms + from, padded &- from, startingWith: lanes.sum)
    // Four products of every fourth vector, so that four chains of dependent operations run
    // side by side, then their product. At most generalBlockLength / 16 = 32 factors of at most
    // 2 a lane: S < 2^32.
    @inline(__always) func times(_ s: SIMD16<R>, _ a: SIMD16<R>) -> SIMD16<R> { (s + a) + s * a }
    @inline(__always) func factor(_ k: Int) -> SIMD16<R> {
        let a = UnsafeRawPointer(b.e + k).loadUnaligned(as: SIMD16<R>.self)
        return useMask ? a * UnsafeRawPointer(b.m + k).loadUnaligned(as: SIMD16<R>.self) : a
    }
    let whole = (padded &+ 63) & ~63
    for k in padded..<whole { b.e[k] = 0 }  // m is 0 or 1 there
    var s0 = lanes.s0, s1 = lanes.s1, s2 = lanes.s2, s3 = lanes.s3
    var k = from
    while k < whole {
        s0 = times(s0, factor(k))
        s1 = times(s1, factor(k &+ 16))
        s2 = times(s2, factor(k &+ 32))
        s3 = times(s3, factor(k &+ 48))
        k &+= 64
    }
    let product = times(times(s0, s1), times(s2, s3))
    // The logs into other memory than the product's: a vector stored, overwritten lane by
    // lane and read back as a vector can come back as first stored (LLVM forwarded the
    // vector store to the load in one double build of this pattern).
    UnsafeMutableRawPointer(b.terms).storeBytes(of: product, as: SIMD16<R>.self)
    for lane in 0..<16 { b.terms[16 &+ lane] = R.logOnePlusWide(b.terms[lane]) }
    return sum + blockSum(b.terms + 16, 16)
}

/// The sum of `padded` values (a multiple of 16) in 16 lanes, added to `sum` in order.
@inline(__always)
private func blockSum<R: KernelReal>(
    _ values: UnsafeMutablePointer<R>, _ padded: Int, startingWith sum: SIMD16<R> = SIMD16<R>()
) -> SIMD16<R> {
    var sum = sum
    var k = 0
    while k < padded {
        sum += UnsafeRawPointer(values + k).loadUnaligned(as: SIMD16<R>.self)
        k &+= 16
    }
    return sum
}

// MARK: - Gradient

/// sigmoid(x) and sigma'(x) = sigma (1 - sigma) = a / (1 + a)^2 from a = e^-|x|, the last
/// without cancellation: the logits gradient loops' common start.
///
/// The division stays. AVX-512's reciprocal estimate refined by one Newton step (VRCP14PS
/// and two multiply-adds, within 0.53 ulp where sampled) was tried in its place, here and in
/// the statistics pass's sigmoid loop, through a C helper (vector_math.h's kind). In a loop
/// of its own over e, the fused logits call was 4.5% slower (262,144 elements in cache, one
/// thread, 221.6 against 231.7 µs); inside the table exponential's loops, storing the
/// inverses for these loops to read, 6% slower (213.4 against 226.6 µs). In these loops the
/// division presumably overlaps the other arithmetic, which the estimate's steps add to.
@inline(__always)
private func logistic<R: KernelReal>(_ x: R, _ a: R) -> (sigmoid: R, slope: R) {
    let inverse = 1 / (1 + a)
    return (x >= 0 ? inverse : a * inverse, a * inverse * inverse)
}

private func runGradient<R: KernelReal, T: StoredElement>(
    _ input: KernelInput, _ options: ElementOptions, _ c: KernelCoefficients,
    _ grad: UnsafeMutableRawPointer, _: R.Type, _: T.Type
) -> Double {
    let posWeight = R.fromDouble(options.posWeight)
    let smoothing = R.fromDouble(options.labelSmoothing)
    let targetScale = R.fromDouble(c.targetScale), offset = R.fromDouble(c.offset)
    let predScale = R.fromDouble(c.predScale), elementScale = R.fromDouble(c.elementScale)
    let bce = c.elementScale != 0
    let withElementSum = options.bce
    let inPlace = UnsafeRawPointer(grad) == input.pred
    // The lean logits forms need no valid flags where the type has a masked logit (see stage).
    let leanLogits = options.logits && posWeight == 1 && smoothing == 0 && R.maskedLogit != nil
    let isFlagged = input.mask != nil && !leanLogits
    var elementSum = SIMD8<Double>()
    forEachRunBlock(input.count, pred: input.pred, masked: input.mask != nil) { (start, length, padded, buffers: BlockBuffers<R>) in
        // Locals, not the closure's memory (see runStatistics). In place, pred is read from
        // the staged copy: the loops below write the gradient over it.
        let flagged = isFlagged
        // As in runStatistics: a whole masked block of the lean forms staged in the
        // exponentials' loop, without the checks (the statistics pass made them).
        let stagedWithExponentials = stagesWithExponentials(input, length, padded, leanLogits: leanLogits, R.self, T.self)
        var staged = buffers
        if stagedWithExponentials {
            _ = stageMaskedBlock(input, start, length, staged, T.self, checks: false)
        } else {
            staged = stage(input, start, length, padded, buffers, R.self, T.self, maskedLogits: leanLogits,
                           direct: !inPlace)
        }
        let posWeight = posWeight, smoothing = smoothing, targetScale = targetScale
        let offset = offset, predScale = predScale, elementScale = elementScale
        let out = grad + start &* MemoryLayout<R>.stride
        // The region term's derivative, targetScale·t + offset + predScale·p, in two
        // multiply-adds; with `linear` (predScale is 0: every form but the squared ones) in
        // one, as its product adds nothing (0·p + y is y; a zero's sign the final + 0 clears).
        @inline(__always) func region(_ t: R, _ p: R, linear: Bool = false) -> R {
            linear ? R.fusedMultiplyAdd(targetScale, t, offset)
                : R.fusedMultiplyAdd(predScale, p, R.fusedMultiplyAdd(targetScale, t, offset))
        }
        let linear = predScale == 0
        let lean = posWeight == 1 && smoothing == 0
        let plain = bce && lean
        // The gradient of a logit x with a = e^-|x|; `plain` (BCE, weight 1, no smoothing)
        // without the factors that are 1 and the terms that are 0: the same values, fewer
        // operations.
        @inline(__always) func logitsGradient(_ x: R, _ t: R, _ a: R, plain: Bool, linear: Bool = false) -> R {
            let (sigmoid, slope) = logistic(x, a)
            let regionPart = region(t, sigmoid, linear: linear)
            if plain { return R.fusedMultiplyAdd(regionPart, slope, elementScale * (sigmoid - t)) }
            guard bce else { return regionPart * slope }
            let ts = t * (1 - smoothing) + smoothing / 2
            return R.fusedMultiplyAdd(
                regionPart, slope, elementScale * ((sigmoid - ts) - (posWeight - 1) * ts * (1 - sigmoid)))
        }
        if options.logits && !stagedWithExponentials {
            // The exponentials (kept for the element terms) in a loop of their own, as in
            // sigmoidLoops, which also copies the logits where they span lines (the loop after
            // it reads them again; the targets it reads once).
            let raw = staged.raw, e = staged.e, ownRaw = staged.ownRaw
            if R.hasVectorExponentials {
                // Up to `length` rounded up to 16: e then holds meaningless values past
                // `length`, which no loop below reads before the element terms' loop zeroes
                // them (and raw is read that far only where it is staged or the block whole).
                if staged.spansLines(target: false) {
                    _ = R.vectorExponentials(raw, e, length, copy: ownRaw, t: nil, copyT: nil)
                    staged.useOwnBuffers(target: false)
                } else {
                    _ = R.vectorExponentials(raw, e, length, copy: nil, t: nil, copyT: nil)
                }
            } else if staged.spansLines(target: false) {
                for k in 0..<length {
                    let x = raw[k]
                    ownRaw[k] = x
                    e[k] = R.exponentialOfNonPositive(-x.magnitude)
                }
                staged.useOwnBuffers(target: false)
            } else {
                for k in 0..<length { e[k] = R.exponentialOfNonPositive(-raw[k].magnitude) }
            }
        }
        let b = staged
        if R.hasVectorExponentials && withElementSum && options.logits && plain && !flagged && elementScale > 0
            && length & 63 == 0 {
            // The common logits form (BCE with weight 1 and no smoothing, the lean terms, no
            // flags), whole blocks, at the AVX-512 level: one explicit loop (see "Explicit
            // loops"). The element sums come with grad_loss 1, so elementScale > 0 here, and
            // the gradient is never -0 (see noNegativeZero below: the argument does not depend
            // on the region term's derivative, so it holds for both forms).
            let coefficients = GradientCoefficients(
                targetScale: targetScale, offset: offset, predScale: predScale, elementScale: elementScale)
            var lanes = LeanLanes<R>()
            if linear {
                R.leanLogitsGradient(b.raw, b.t, b.e, out, length, coefficients, linear: true, &lanes)
            } else {
                R.leanLogitsGradient(b.raw, b.t, b.e, out, length, coefficients, linear: false, &lanes)
            }
            elementSum += R.widen(leanLogitsLanes(b, padded, useMask: false, from: padded, lanes))
            return
        }
        if withElementSum && options.logits {
            // The element terms and the gradient in one loop: the terms' arithmetic then runs
            // while the gradient's stores wait for their cache lines. Each term, and their
            // sum, as blockElementSum computes them (the statistics pass's bits); masked
            // elements' terms times their flag 0, the padding's 0 (and its e, for the lean
            // terms' product of logs).
            //
            // `noNegativeZero`: the plain form with elementScale > 0 never gives -0, so it needs
            // no + 0. Its g = fma(r, s, elementScale·(sigmoid - t)) is -0 only if both parts
            // are. A difference is -0 only for -0 minus +0, and sigmoid is never -0, so
            // sigmoid - t is never -0, nor its product with a positive scale. (A negative
            // grad_loss makes the scale negative.)
            @inline(__always) func termsAndGradient(
                lean: Bool, plain: Bool, useMask: Bool, linear: Bool = false, noNegativeZero: Bool = false
            ) {
                for k in 0..<length {
                    let x = b.raw[k], t = b.t[k], a = b.e[k]
                    let term = logitsElementTerm(x, t, a, posWeight, smoothing, lean: lean)
                    let g = logitsGradient(x, t, a, plain: plain, linear: linear)
                    b.terms[k] = useMask ? term * b.m[k] : term
                    let stored = noNegativeZero ? g : (useMask ? g * b.m[k] : g) + 0
                    out.storeBytes(of: stored, toByteOffset: k &* MemoryLayout<R>.stride, as: R.self)
                }
            }
            switch (lean, plain, flagged) {
            case (true, true, true) where linear:
                termsAndGradient(lean: true, plain: true, useMask: true, linear: true)
            case (true, true, false) where linear && elementScale > 0:
                termsAndGradient(lean: true, plain: true, useMask: false, linear: true, noNegativeZero: true)
            case (true, true, false) where linear:
                termsAndGradient(lean: true, plain: true, useMask: false, linear: true)
            case (true, true, true): termsAndGradient(lean: true, plain: true, useMask: true)
            case (true, true, false): termsAndGradient(lean: true, plain: true, useMask: false)
            case (true, false, true): termsAndGradient(lean: true, plain: false, useMask: true)
            case (true, false, false): termsAndGradient(lean: true, plain: false, useMask: false)
            case (false, _, true): termsAndGradient(lean: false, plain: false, useMask: true)
            case (false, _, false): termsAndGradient(lean: false, plain: false, useMask: false)
            }
            for k in length..<padded {
                b.terms[k] = 0
                b.e[k] = 0
            }
            elementSum += R.widen(lean ? leanLogitsLanes(b, padded, useMask: flagged) : blockSum(b.terms, padded))
            return
        }
        // The element terms before the gradient: the heavy loop is the one that first reads
        // the block's memory, so the reads overlap its arithmetic, and the light gradient
        // loop after it finds the block in cache.
        if withElementSum {
            elementSum += R.widen(blockElementSum(
                b, padded, false, posWeight, smoothing, useMask: flagged || length != padded,
                hardTargets: options.hardTargets))
        }
        // The common cases, the forms below without the terms that are 0 and the factors
        // that are 1 here (and without the flags when there is no mask): the same values,
        // fewer operations.
        @inline(__always) func plainGradient(_ k: Int) -> R {
            let p = b.raw[k], t = b.t[k]
            let variance = p * (1 - p)
            let derivative = (p - t) / (variance > 1e-12 ? variance : 1e-12)
            return R.fusedMultiplyAdd(elementScale, derivative, region(t, p))
        }
        if options.logits && plain && flagged {
            for k in 0..<length {
                let g = logitsGradient(b.raw[k], b.t[k], b.e[k], plain: true)
                out.storeBytes(of: g * b.m[k] + 0, toByteOffset: k &* MemoryLayout<R>.stride, as: R.self)
            }
        } else if options.logits && plain {
            for k in 0..<length {
                let g = logitsGradient(b.raw[k], b.t[k], b.e[k], plain: true)
                out.storeBytes(of: g + 0, toByteOffset: k &* MemoryLayout<R>.stride, as: R.self)
            }
        } else if options.logits && lean && !flagged {
            for k in 0..<length {
                let g = logitsGradient(b.raw[k], b.t[k], b.e[k], plain: false)
                out.storeBytes(of: g + 0, toByteOffset: k &* MemoryLayout<R>.stride, as: R.self)
            }
        } else if options.logits {
            for k in 0..<length {
                let g = logitsGradient(b.raw[k], b.t[k], b.e[k], plain: false)
                out.storeBytes(of: g * b.m[k] + 0, toByteOffset: k &* MemoryLayout<R>.stride, as: R.self)
            }
        } else if plain && flagged {
            for k in 0..<length {
                out.storeBytes(of: plainGradient(k) * b.m[k] + 0, toByteOffset: k &* MemoryLayout<R>.stride, as: R.self)
            }
        } else if plain {
            for k in 0..<length {
                out.storeBytes(of: plainGradient(k) + 0, toByteOffset: k &* MemoryLayout<R>.stride, as: R.self)
            }
        } else if bce {
            for k in 0..<length {
                let p = b.raw[k], t = b.t[k]
                let ts = t * (1 - smoothing) + smoothing / 2
                let variance = p * (1 - p)
                let derivative = ((p - ts) - (posWeight - 1) * ts * (1 - p))
                    / (variance > 1e-12 ? variance : 1e-12)
                let g = R.fusedMultiplyAdd(elementScale, derivative, region(t, p))
                out.storeBytes(of: g * b.m[k] + 0, toByteOffset: k &* MemoryLayout<R>.stride, as: R.self)
            }
        } else {
            for k in 0..<length {
                let p = b.raw[k], t = b.t[k]
                let g = region(t, p)
                out.storeBytes(of: g * b.m[k] + 0, toByteOffset: k &* MemoryLayout<R>.stride, as: R.self)
            }
        }
    }
    return elementSum.sum()
}

// MARK: - Explicit loops

// At the AVX-512 level the float logits passes' loops after the exponentials are explicit
// 16-lane loops. In the statistics pass one loop computes the sigmoids and adds them up
// (logitsSums), in place of the sigmoid loop's second half, which stored p and q, and
// blockSums, which loaded them again. In the gradient pass of the common form one loop
// computes the gradient and the element terms and builds up leanLogitsLanes' sum and
// products (leanLogitsGradient), in place of termsAndGradient, which stored the terms, and
// leanLogitsLanes' loops, which loaded them and e again. Each computes what the loops it
// replaces compute, operation by operation in the same order, each element in the lane
// LLVM's vectorization of those loops gives it: the same bits. (The built libraries before
// and after, compared over 3,552 cases of every input kind, option, mask, size class and
// alignment, fused, forward and backward calls on 1, 2 and all threads: none differed.
// GeneralLossTests' explicitLoopMatchesGeneralLoops checks the gradient loop against the
// general loops in one build.)
//
// What they save is those stores and loads of whole blocks: 65,536 elements in cache, one
// thread, the fused logits call took 54.0 µs where it took 56.0 (16 bytes past a line; 53.1
// and 54.9 on a line); at 16M elements on two threads, in the rounds whose floor ran fast
// (600 rounds interleaved with the floor in one process), ×0.956, ×0.920 and ×0.940 on
// PyTorch's, malloc's and numpy's layout (see bench/bench_segloss.c), ×0.957–0.980 in the
// others.
//
// For a masked block of the lean forms (float pred, float or uint8 targets) the staging (the
// logits and targets copied, masked ones replaced), the valid count and the exponentials'
// loop are one loop too (stageMaskedLogitsWithExponentials), in both passes, where stage,
// validCount and vectorExponentials made four loops over the block's memory: the same values
// (and bits: the comparison above covered it too). The masked logits call (uint8 targets,
// per-pixel mask, Dice per sample x channel) took 62.0 µs where it took 67.1 (in cache, one
// thread), and at 16M, in fast-floor rounds, ×0.909 and ×0.906 (malloc's and numpy's layout;
// ×0.91–0.93 in the others).
//
// Not done, measured slower: the exponential inside the gradient loop (the fused call in
// cache took 1.5–3% longer than before the explicit loops, where without it it takes 1–3%
// less, the statistics pass's loop aside); the statistics pass without its copy of the
// targets where they span lines (the sums loop reading them from the caller's array: 2%
// slower at 16M, 16 bytes past a line), or with e carrying the sign of x in place of the copy
// of x (2% slower); the gradient pass copying the targets too (5% slower at 16M, 16 bytes past
// a line); the gradient pass without its copy of the logits (no faster).
extension Float {
    @inline(__always) static func logitsSums(
        _ raw: UnsafeMutablePointer<Float>, _ e: UnsafeMutablePointer<Float>, _ t: UnsafeMutablePointer<Float>,
        _ m: UnsafeMutablePointer<Float>, _ padded: Int, useMask: Bool, squared: Bool,
        _ tp: inout SIMD16<Float>, _ fp: inout SIMD16<Float>, _ fn: inout SIMD16<Float>, _ sq: inout SIMD16<Float>
    ) {
        #if SEGLOSS_AVX512
        typealias Lanes = SIMD16<Float>
        let one = Lanes(repeating: 1), zero = Lanes()
        var tpLanes = tp, fpLanes = fp, fnLanes = fn, sqLanes = sq
        var k = 0
        while k < padded {
            // sigmoidLoops' p and q, then blockSums' sums.
            let x = segloss_load16(raw + k), a = segloss_load16(e + k), y = segloss_load16(t + k)
            let inverse = one / (one + a)
            let scaled = a * inverse
            let positive = x .>= zero
            var p = scaled.replacing(with: inverse, where: positive)
            var q = inverse.replacing(with: scaled, where: positive)
            if useMask {
                let valid = segloss_load16(m + k)
                p *= valid
                q *= valid
            }
            tpLanes += p * y
            fpLanes += p * (one - y)
            fnLanes += q * y
            if squared {
                let d = (one - y) * p - y * q
                sqLanes += d * d
            }
            k &+= 16
        }
        tp = tpLanes
        fp = fpLanes
        fn = fnLanes
        sq = sqLanes
        #endif
    }

    @inline(__always) static func leanLogitsGradient(
        _ raw: UnsafeMutablePointer<Float>, _ t: UnsafeMutablePointer<Float>, _ e: UnsafeMutablePointer<Float>,
        _ grad: UnsafeMutableRawPointer, _ length: Int, _ coefficients: GradientCoefficients<Float>,
        linear: Bool, _ lanes: inout LeanLanes<Float>
    ) {
        #if SEGLOSS_AVX512
        typealias Lanes = SIMD16<Float>
        let targetScale = Lanes(repeating: coefficients.targetScale), offset = Lanes(repeating: coefficients.offset)
        let predScale = Lanes(repeating: coefficients.predScale)
        let elementScale = Lanes(repeating: coefficients.elementScale)
        let one = Lanes(repeating: 1), zero = Lanes()
        let out = grad.assumingMemoryBound(to: Float.self)
        @inline(__always) func times(_ s: Lanes, _ a: Lanes) -> Lanes { (s + a) + s * a }
        // One vector of termsAndGradient(lean: true, plain: true, useMask: false,
        // noNegativeZero: true): logistic, region, logitsGradient's plain form and
        // logitsElementTerm's lean form.
        @inline(__always) func step(_ k: Int) -> (term: Lanes, a: Lanes) {
            let x = segloss_load16(raw + k), y = segloss_load16(t + k), a = segloss_load16(e + k)
            let inverse = one / (one + a)
            let scaled = a * inverse
            let sigmoid = scaled.replacing(with: inverse, where: x .>= zero)
            let slope = scaled * inverse
            let targetPart = segloss_fma16(targetScale, y, offset)
            let regionPart = linear ? targetPart : segloss_fma16(predScale, sigmoid, targetPart)
            let g = segloss_fma16(regionPart, slope, elementScale * (sigmoid - y))
            segloss_store16(out + k, g)
            return (segloss_fma16(-y, x, zero.replacing(with: x, where: x .> zero)), a)
        }
        var l = lanes
        var k = 0
        while k < length {
            // blockSum's order for the sum; every fourth vector into each product.
            let v0 = step(k), v1 = step(k &+ 16), v2 = step(k &+ 32), v3 = step(k &+ 48)
            l.sum = (((l.sum + v0.term) + v1.term) + v2.term) + v3.term
            l.s0 = times(l.s0, v0.a)
            l.s1 = times(l.s1, v1.a)
            l.s2 = times(l.s2, v2.a)
            l.s3 = times(l.s3, v3.a)
            k &+= 64
        }
        lanes = l
        #endif
    }
}

/// Whether a block takes stageMaskedBlock in place of stage (and in the statistics pass
/// validCount, in both passes the exponentials' loop): a whole masked block of the lean logits
/// forms, float pred, float or uint8 targets, at the AVX-512 level.
@inline(__always)
private func stagesWithExponentials<R: KernelReal, T: StoredElement>(
    _ input: KernelInput, _ length: Int, _ padded: Int, leanLogits: Bool, _: R.Type, _: T.Type
) -> Bool {
    R.hasVectorExponentials && leanLogits && length == padded && input.mask != nil
        && (T.self == Float.self || T.self == UInt8.self)
}

/// stageMaskedLogitsWithExponentials for elements `start ..< start + length` of the run into
/// the block buffers (see stagesWithExponentials).
@inline(__always)
private func stageMaskedBlock<R: KernelReal, T: StoredElement>(
    _ input: KernelInput, _ start: Int, _ length: Int, _ b: BlockBuffers<R>, _: T.Type, checks: Bool
) -> (largest: UInt32, largestTarget: UInt32, valid: Int) {
    let float = { (p: UnsafeMutablePointer<R>) in UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self) }
    return stageMaskedLogitsWithExponentials(
        pred: input.pred + start &* MemoryLayout<Float>.stride, target: input.target + start &* MemoryLayout<T>.stride,
        targetBytes: T.self == UInt8.self, mask: input.mask! + start, raw: float(b.raw), t: float(b.t),
        e: float(b.e), length, checks: checks)
}

/// stage, validCount and the exponentials' loop (vectorExponentials) of a masked block of the
/// lean logits forms in one loop, for float pred and float or (`targetBytes`) uint8 targets:
/// raw, t and e as those leave them, and with `checks` the largest range bits of the staged
/// logits and targets and the number of valid elements (else 0s). `count` a multiple of 16.
@inline(__always)
func stageMaskedLogitsWithExponentials(
    pred: UnsafeRawPointer, target: UnsafeRawPointer, targetBytes: Bool, mask: UnsafePointer<UInt8>,
    raw: UnsafeMutablePointer<Float>, t: UnsafeMutablePointer<Float>, e: UnsafeMutablePointer<Float>,
    _ count: Int, checks: Bool
) -> (largest: UInt32, largestTarget: UInt32, valid: Int) {
    #if SEGLOSS_AVX512
    typealias Lanes = SIMD16<Float>
    let fill = Lanes(repeating: Float.maskedLogit!), zero = Lanes()
    let predFloats = pred.assumingMemoryBound(to: Float.self)
    var largest = SIMD16<UInt32>(), largestTarget = SIMD16<UInt32>(), valid = SIMD16<Int32>()
    var k = 0
    while k < count {
        // stage's values: the logit or R.maskedLogit, the target or 0.
        let keep = segloss_nonzero_bytes16(mask + k)
        let x = segloss_select16(keep, segloss_load16(predFloats + k), fill)
        let y = segloss_select16(
            keep, targetBytes ? segloss_bytes_as_floats16(target.assumingMemoryBound(to: UInt8.self) + k)
                : segloss_load16(target.assumingMemoryBound(to: Float.self) + k), zero)
        segloss_store16(raw + k, x)
        segloss_store16(t + k, y)
        if checks {
            largest = segloss_max_negative_magnitude_bits16(largest, x)
            largestTarget = segloss_max_unit_bits16(largestTarget, y)
            valid &-= keep  // keep is -1 where valid
        }
        segloss_store16(e + k, expOfNegativeMagnitudeLanes(x))
        k &+= 16
    }
    return (segloss_reduce_max16(largest), segloss_reduce_max16(largestTarget), Int(valid.wrappedSum()))
    #else
    return (0, 0, 0)
    #endif
}
