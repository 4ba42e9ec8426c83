// VectorMath — branch-free float32 log, log(1 - p), log1p, exp and sigmoid that LLVM
// vectorizes in a loop.
//
// These are written as scalar functions on purpose: called from a branch-free loop over
// pointers they auto-vectorize (the SIMDn<Float> spelling of the same math compiles to
// scalar code with this compiler). Everything here is integer bit manipulation and
// + - * / with wrapping integer operators, so no input (NaN, negative, infinite) can trap.
//
// Accuracy, measured exhaustively over every float32 of each range against the Double
// function, for every compiled kernel level (Tests/SegLossCoreTests/VectorMathTests.swift
// checks these bounds; SEGLOSS_EXHAUSTIVE_MATH=1 makes it check every input):
//   logApprox:           at most 1 ulp over (0, 1]        (measured 0.92 baseline, 0.89 FMA)
//   logOneMinusApprox:   at most 1.5 ulp over [0, 1)      (1.44)
//   log1pApprox:         at most 1.5 ulp over [-1 + 2^-24, 2^32]   (1.44)
//   expApprox:           at most 1.03 ulp over [-87.3, 88.7], normal results  (0.89 FMA,
//                        1.022 baseline); expOfNonPositiveApprox gives its bits for x <= 0
//                        where they are normal, and 0 for its subnormals
//   log1pOfUnitApprox:   at most 1.75 ulp over [0, 1]    (1.39 FMA, 1.72 baseline)
//   sigmoidApprox:       at most 2.5 ulp over [-87, 87]   (2.48)
//   logOfClassPairApprox: log(q1) + log(q2) (q = p or 1 - p, p in [0, 1]) as one log: at
//                        most 1.5 ulp of the sum where the product of the q's is normal, FMA
//                        levels (1.21 over 12 million sampled pairs; not exhaustive)
//   expOfNegativeMagnitudeLanes (AVX-512 level only): e^-|x| on 16 lanes, at most 1.07 ulp
//                        where e^-|x| is normal (1.0685 at x = -0x1.155374p-1), 0 where not
// where an ulp is that of the float32 result. exp and sigmoid are for the logits forms of
// the losses (sigmoid applied inside the loss).

#if SEGLOSS_AVX512
import CVectorMath

/// e^-|x| lane by lane, 0 where -|x| < -0x1.5d589ep6 (as expOfNonPositiveApprox), for the
/// float logits kernels at the AVX-512 level: by a table of 2^(j/16) looked up with a lane
/// permute, which Swift reaches only through C (Sources/CVectorMath/include/vector_math.h).
/// NaN lanes give unspecified values.
@inline(__always)
public func expOfNegativeMagnitudeLanes(_ x: SIMD16<Float>) -> SIMD16<Float> {
    segloss_exp_negative_magnitude16(x)
}
#endif

/// a * b + c, fused where the CPU level compiled for has FMA.
@inline(__always)
func multiplyAdd(_ a: Float, _ b: Float, _ c: Float) -> Float {
    #if SEGLOSS_FMA || arch(arm64)
    return c.addingProduct(a, b)
    #else
    return a * b + c
    #endif
}

/// Natural logarithm of `x` for x in [0, 2^104): -inf for 0, correct for subnormals.
@inline(__always)
public func logApprox(_ x: Float) -> Float {
    x > 0 ? logOfPositive(x) : -Float.infinity
}

/// max(log(x + c), -100) for x in [0, 2^104) and a remainder c as in
/// `logApprox(_:remainder:)`: PyTorch's clamped log of BCE, without logApprox's test for 0
/// (at 0 the unguarded evaluation gives about -103.97, which the clamp turns into -100).
@inline(__always)
func clampedLogApprox(_ x: Float, remainder c: Float = 0) -> Float {
    // logOfPositive turns -0.0 (a valid probability) into +0.0.
    let l = multiplyAdd(c, 2 - x, logOfPositive(x))
    return l > -100 ? l : -100
}

/// log(x) for x in (0, 2^104), correct for subnormals; at 0 (and -0), about -103.97.
///
/// x = 2^e * m with m in [sqrt(1/2), sqrt(2)); log(m) = f - f^2/2 + f^3 * P(f), f = m - 1,
/// with a degree-8 minimax P (Cephes' logf coefficients); e * ln 2 is added in two parts.
/// With an `addend` a (small beside the result), log(x) + a, with a added to the polynomial's
/// tail before the last two roundings: the same operations as with a = 0.
@inline(__always)
func logOfPositive(_ x: Float, plus addend: Float = 0) -> Float {
    // Every x is scaled by 2^23 (exact below 2^104), which makes subnormals normal without a
    // test; the 23 is taken back from the exponent. The + 0 turns -0.0 into +0.0 (whose sign
    // bit would otherwise be read as part of the exponent), in the same operation.
    let scaled = multiplyAdd(x, 8_388_608, 0)
    // Subtracting the bits of sqrt(1/2) puts m in [sqrt(1/2), sqrt(2)) and leaves e above;
    // subtracting 23 << 23 more takes the scaling's exponent from e in the same operation
    // (the arithmetic shift below floors, so (b - k·2^23) >> 23 = (b >> 23) - k).
    let sqrtHalfBits: UInt32 = 0x3f35_04f3
    let shifted = scaled.bitPattern &- (sqrtHalfBits &+ 23 << 23)
    let exponent = Int32(bitPattern: shifted) >> 23
    let mantissa = Float(bitPattern: (shifted & 0x007f_ffff) &+ sqrtHalfBits)
    let f = mantissa - 1
    let f2 = f * f
    var p: Float = 7.0376836292e-2
    p = multiplyAdd(p, f, -1.1514610310e-1)
    p = multiplyAdd(p, f, 1.1676998740e-1)
    p = multiplyAdd(p, f, -1.2420140846e-1)
    p = multiplyAdd(p, f, 1.4249322787e-1)
    p = multiplyAdd(p, f, -1.6668057665e-1)
    p = multiplyAdd(p, f, 2.0000714765e-1)
    p = multiplyAdd(p, f, -2.4999993993e-1)
    p = multiplyAdd(p, f, 3.3333331174e-1)
    let e = Float(exponent)
    // ln 2 = 0.693359375 - 2.12194440e-4: the first part is exact in few bits, so e * it is exact.
    let tail = multiplyAdd(e, -2.12194440e-4, multiplyAdd(f2, multiplyAdd(f, p, -0.5), addend))
    return multiplyAdd(e, 0.693359375, f + tail)
}

/// log(1 - p) for p in [0, 1], without the rounding of 1 - p: for small p the rounded
/// u = 1 - p loses p's low bits, so the exact remainder c = (1 - p) - u is added back as
/// c / u. c is non-zero only when u is in [0.5, 1], and there 2 - u stands in for 1 / u:
/// the error, |c|·(1 - u)², stays below a tenth of an ulp of the result, and no division is
/// needed. -inf for p = 1, like PyTorch's log1p(-p).
@inline(__always)
public func logOneMinusApprox(_ p: Float) -> Float {
    let u = 1 - p
    let c = (1 - u) - p  // exact: 1 - p == u + c (|1| >= |p|, so this two-sum is exact)
    return logApprox(u, remainder: c)
}

/// log(u + c) for a float u and a small exact remainder c (|c| <= half an ulp of u):
/// log(u) + c·(2 - u). With c = 0 it is logApprox(u), bit for bit.
@inline(__always)
public func logApprox(_ u: Float, remainder c: Float) -> Float {
    multiplyAdd(c, 2 - u, logApprox(u))
}

/// log(q1·q2) with q = p for a target t = 1 and 1 - p for t = 0 (p in [0, 1]; t exactly 0
/// or 1, or -0): two BCE terms of hard targets from one log. Also returns the rounded
/// product v = u1·u2 of the rounded q's: the log is right only where v is normal
/// (v >= 2^-126), and there each q >= v, so neither log reaches the clamp at -100 that the
/// terms one by one would take. The caller checks v.
///
/// u = (2t - 1)·p + (1 - t) is p or the rounded 1 - p, and c = (2t - 1)·p + ((1 - t) - u)
/// is 0 or the exact remainder (1 - u) - p (u >= 1/2 wherever that is not 0, so 1 - u is
/// exact), each from one FMA and no select. q1·q2 = v(1 + ρ) exactly but for the product of
/// the remainders, with ρ = rr/v + c1/u1 + c2/u2 and rr = u1·u2 - v, exact from one FMA.
/// log(q1·q2) = log(v) + ρ to first order, ρ added to the log's polynomial before its last
/// roundings; each division is replaced by a multiplication with 2 - v or 2 - u, as in
/// logApprox(_:remainder:): c is non-zero only for u in [0.5, 1], where the error of 2 - u
/// is below a tenth of an ulp of the result, and |rr|·|1/v - (2 - v)| <= 2^-24·(1 - v)²,
/// which only counts where v is small and its log large. Without FMA, rr is computed as 0;
/// the kernels use this only with FMA.
@inline(__always)
public func logOfClassPairApprox(
    _ p1: Float, target t1: Float, _ p2: Float, target t2: Float
) -> (log: Float, product: Float) {
    let s1 = t1 + t1 - 1, s2 = t2 + t2 - 1
    let base1 = 1 - t1, base2 = 1 - t2
    let u1 = multiplyAdd(s1, p1, base1), u2 = multiplyAdd(s2, p2, base2)
    let c1 = multiplyAdd(s1, p1, base1 - u1), c2 = multiplyAdd(s2, p2, base2 - u2)
    let v = u1 * u2
    let rr = multiplyAdd(u1, u2, -v)
    let rho = multiplyAdd(rr, 2 - v, multiplyAdd(c1, 2 - u1, c2 * (2 - u2)))
    return (logOfPositive(v, plus: rho), v)
}

/// log(1 + y) for y in [-1, 2^104): accurate for tiny y, where 1 + y rounds. -inf at y = -1.
@inline(__always)
public func log1pApprox(_ y: Float) -> Float {
    let u = 1 + y
    // The remainder of the rounded sum: exact for |y| <= 1; above, it is below an ulp of the
    // result's worth anyway.
    let c = (1 - u) + y
    let safeU: Float = u > 0 ? u : 1
    return logApprox(u) + c / safeU
}

/// log(1 + x) for x in [0, 1] (the logits forms' use: x = e^-|logit|): x + x²·Q(x), with Q a
/// degree-8 minimax approximation of (log(1 + x) - x) / x² on [0, 1] (relative error
/// 5·10^-9 before rounding). No exponent split and no remainder: about half the operations
/// of log1pApprox, for the one range the softplus needs. 0 for 0, x itself for tiny x.
@inline(__always)
public func log1pOfUnitApprox(_ x: Float) -> Float {
    var q: Float = -3.3184746280e-3
    q = multiplyAdd(q, x, 2.0204594359e-2)
    q = multiplyAdd(q, x, -5.7664461434e-2)
    q = multiplyAdd(q, x, 1.0680557042e-1)
    q = multiplyAdd(q, x, -1.5355397761e-1)
    q = multiplyAdd(q, x, 1.9695401192e-1)
    q = multiplyAdd(q, x, -2.4958588183e-1)
    q = multiplyAdd(q, x, 3.3330512047e-1)
    q = multiplyAdd(q, x, -4.9999931455e-1)
    return multiplyAdd(x * x, q, x)
}

/// e^x for any float x: +inf above 88.72, 0 (through the subnormals) below -103.97, NaN for NaN.
///
/// x = n ln 2 + r with |r| <= ln 2 / 2; e^r a degree-6 minimax polynomial (see expReduced);
/// 2^n is applied in two halves so no step overflows before the last multiplication. No
/// float-to-integer conversion (which would trap on NaN): n is read from the bits of
/// x·log2(e) + 1.5·2^23.
@inline(__always)
public func expApprox(_ x: Float) -> Float {
    let high: Float = 88.8
    let (er, n) = expReduced(x > high ? high : x)  // NaN passes the test and stays NaN
    // 2^n in two halves, so that neither overflows nor underflows before the last product.
    let half = n >> 1
    let firstScale = Float(bitPattern: UInt32(bitPattern: (half &+ 127) << 23))
    let secondScale = Float(bitPattern: UInt32(bitPattern: (n &- half &+ 127) << 23))
    return er * firstScale * secondScale
}

/// e^x for x <= 0, as the sigmoid needs it (e^-|x|), with fewer operations than expApprox:
/// its bits wherever they are a normal float, x >= -87.33654 (-0x1.5d589ep6), and 0 below,
/// where expApprox gives a subnormal (under 1.2·10^-38) or 0.
///
/// Such x never reach expApprox's upper clamp, and where its result is normal, 2^n can be
/// added to the exponent bits of e^r: exactly expApprox's product. Below, the sum's bits are
/// not the result's, and it is selected away: subnormal arithmetic (a product that underflows)
/// costs a microcode assist of tens of cycles, which the kernels would pay for every logit
/// below -87.3 and every masked element (staged as -1000). The threshold is expApprox's last
/// normal result at every level (the test checks the floats around it). For NaN the result is
/// unspecified (the integer addition can carry out of a NaN's exponent): the kernels reject
/// non-finite logits.
///
/// Nor does it clamp x below, as expApprox does at -104: that changes no x above the
/// threshold, and below it whatever the reduction and the polynomial make of x (a huge or
/// infinite r, a wrapped n; no float operation traps and the integer ones wrap) is selected
/// away. One operation fewer an element in both logits passes: 2% of a fused logits call in
/// cache (115.1 against 117.7 µs at 131,072 elements, one thread).
@inline(__always)
public func expOfNonPositiveApprox(_ x: Float) -> Float {
    let (er, n) = expReduced(x, clampingLow: false)
    let scaled = Float(bitPattern: er.bitPattern &+ UInt32(bitPattern: n << 23))
    return x < -0x1.5d589ep6 ? 0 : scaled
}

/// e^r for x = n ln 2 + r, and n, for x <= 88.8 or NaN (clamped below at -104 with
/// `clampingLow`; without, e^r and n are meaningless below about -88).
///
/// With FMA, e^r is one degree-6 minimax polynomial in Horner form (relative error 3·10^-9
/// before rounding): each step one fused operation. Without FMA, where every step rounds
/// twice, it is 1 + r + r^2 P(r) with P a degree-4 minimax polynomial (4·10^-9), whose small
/// correction term keeps the rounding errors below an ulp.
@inline(__always)
private func expReduced(_ x: Float, clampingLow: Bool = true) -> (er: Float, n: Int32) {
    let low: Float = -104
    let clamped = clampingLow && x < low ? low : x    // NaN passes the test and stays NaN
    let magic: Float = 12_582_912      // 1.5 * 2^23: adding it rounds to an integer
    let shifted = multiplyAdd(clamped, 1.44269504088896341, magic)
    let n = shifted - magic
    let nBits = Int32(bitPattern: shifted.bitPattern) &- Int32(bitPattern: magic.bitPattern)
    var r = multiplyAdd(n, -0.693359375, clamped)
    r = multiplyAdd(n, 2.12194440e-4, r)
    #if SEGLOSS_FMA || arch(arm64)
    var p: Float = 0x1.6a23d0p-10
    p = multiplyAdd(p, r, 0x1.123a20p-7)
    p = multiplyAdd(p, r, 0x1.5558f2p-5)
    p = multiplyAdd(p, r, 0x1.555492p-3)
    p = multiplyAdd(p, r, 0x1.fffffcp-2)
    p = multiplyAdd(p, r, 1)
    return (multiplyAdd(p, r, 1), nBits)
    #else
    var p: Float = 0x1.6c351ep-10
    p = multiplyAdd(p, r, 0x1.12472ap-7)
    p = multiplyAdd(p, r, 0x1.55563ap-5)
    p = multiplyAdd(p, r, 0x1.55547ep-3)
    p = multiplyAdd(p, r, 0x1.fffffep-2)
    return (multiplyAdd(p, r * r, r) + 1, nBits)
    #endif
}

/// 1 / (1 + e^-x): 0 and 1 at the far ends, NaN for NaN.
@inline(__always)
public func sigmoidApprox(_ x: Float) -> Float {
    1 / (1 + expApprox(-x))
}
