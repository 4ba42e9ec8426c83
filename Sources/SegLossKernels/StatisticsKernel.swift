// StatisticsKernel — the per-chunk sums of the statistics pass (DESIGN §2, step 1).

/// The sums of one run of elements, in double. Every term is non-negative, so the sums
/// carry no cancellation. A tuple, so that the same type is shared by every compiled
/// kernel level (each level is its own module).
public typealias StatisticsPartial = (
    intersection: Double,   // Σ p·t
    predSum: Double,        // Σ p
    targetSum: Double,      // Σ t
    mismatch: Double,       // Σ p(1 - t) + t(1 - p)  (= P + T - 2I, without cancellation)
    elementSum: Double,     // Σ e(p, t): the BCE term -[t log p + (1 - t) log(1 - p)], clamped
    invalidPred: Bool,      // some p outside [0, 1] or NaN
    invalidTarget: Bool     // some t outside [0, 1] or NaN
)

/// Elements per block: the unit of the inner loops. A chunk is processed in blocks; a short
/// last block is zero-padded (p = t = 0 adds nothing to any sum and is valid).
public let kernelBlockLength = 256

/// The sums over `count` elements of `pred` and `target` (`count` > 0, any length).
/// `withElementTerm` adds the BCE term (the only part that needs `log`).
///
/// The result depends only on the elements, never on where the chunk sits or which thread
/// runs it: per element the terms are float, summed into 8 double lanes in a fixed order.
@inline(never)
public func statisticsKernel(
    _ pred: UnsafePointer<Float>, _ target: UnsafePointer<Float>, _ count: Int,
    _ withElementTerm: Bool
) -> StatisticsPartial {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * kernelBlockLength) { scratch in
        let elementTerms = scratch.baseAddress!
        let paddedPred = elementTerms + kernelBlockLength
        let paddedTarget = paddedPred + kernelBlockLength
        var sums = LaneSums()
        var start = 0
        while start < count {
            let length = min(kernelBlockLength, count &- start)
            var p = pred + start
            var t = target + start
            if length < kernelBlockLength {
                paddedPred.initialize(repeating: 0, count: kernelBlockLength)
                paddedTarget.initialize(repeating: 0, count: kernelBlockLength)
                paddedPred.update(from: p, count: length)
                paddedTarget.update(from: t, count: length)
                p = UnsafePointer(paddedPred)
                t = UnsafePointer(paddedTarget)
            }
            let check = checkBlock(p, t)
            sums.invalidPred = sums.invalidPred || check.invalidPred
            sums.invalidTarget = sums.invalidTarget || check.invalidTarget
            if withElementTerm {
                if check.softTargets {
                    softElementTerms(p, t, elementTerms)
                } else {
                    hardElementTerms(p, t, elementTerms)
                }
            }
            sums.accumulate(p, t, withElementTerm ? UnsafePointer(elementTerms) : nil)
            start &+= length
        }
        return sums.partial
    }
}

/// Range checks of one block, and whether any target is neither 0 nor 1.
///
/// Written as plain arithmetic and OR reductions, which LLVM vectorizes; the same tests as
/// comparisons joined by && and || become branches. v = (x + 0)·(1 - x) is in [0, 0.25] (a
/// hair above after rounding) exactly when x is in [0, 1], and negative or NaN otherwise
/// (+inf and -inf give -inf; + 0 turns -0.0 into +0.0). As a bit pattern b, a valid v is
/// below bits(0.5) = 0x3f00_0000; an invalid one has the sign bit set, or is a NaN above
/// 0x7f80_0000. So b | (b + 0x4100_0000) has its top bit set exactly when v is invalid.
/// A valid target is 0 or 1 exactly when its v is +0.0, whose bit pattern is all zeros.
@inline(__always)
private func checkBlock(_ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>)
    -> (invalidPred: Bool, invalidTarget: Bool, softTargets: Bool)
{
    let offset: UInt32 = 0x4100_0000, topBit: UInt32 = 0x8000_0000
    var predCheck: UInt32 = 0, targetCheck: UInt32 = 0, softBits: UInt32 = 0
    for k in 0..<kernelBlockLength {
        let vp = ((p[k] + 0) * (1 - p[k])).bitPattern
        let vt = ((t[k] + 0) * (1 - t[k])).bitPattern
        predCheck |= vp | (vp &+ offset)
        targetCheck |= vt | (vt &+ offset)
        softBits |= vt
    }
    return (predCheck & topBit != 0, targetCheck & topBit != 0, softBits != 0)
}

/// BCE terms for targets that are all exactly 0 or 1: one log per element,
/// e = -max(log q, -100) with q = p where t = 1 and q = 1 - p where t = 0.
/// Bitwise the same as softElementTerms for such targets.
@inline(__always)
private func hardElementTerms(
    _ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>
) {
    for k in 0..<kernelBlockLength {
        // The argument is chosen, not the result, so only one log is evaluated.
        let pk = p[k]
        let isPositive = t[k] > 0.5
        let u = 1 - pk
        let c = (1 - u) - pk
        let l = logApprox(isPositive ? pk : u, remainder: isPositive ? 0 : c)
        out[k] = -(l > -100 ? l : -100)
    }
}

/// BCE terms for soft targets: e = -(t·max(log p, -100) + (1 - t)·max(log(1 - p), -100)).
@inline(__always)
private func softElementTerms(
    _ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>
) {
    for k in 0..<kernelBlockLength {
        let pk = p[k], tk = t[k]
        let lp = logApprox(pk)
        let l1p = logOneMinusApprox(pk)
        let clampedLp = lp > -100 ? lp : -100
        let clampedL1p = l1p > -100 ? l1p : -100
        out[k] = -(tk * clampedLp + (1 - tk) * clampedL1p)
    }
}

/// The block's sums: float in 16 lanes over runs of 128 elements (8 terms per lane, so a
/// lane's rounding error stays below 8 ulp), then widened into 8 double lanes per sum.
private struct LaneSums {
    var intersection = SIMD8<Double>()
    var predSum = SIMD8<Double>()
    var targetSum = SIMD8<Double>()
    var mismatch = SIMD8<Double>()
    var elementSum = SIMD8<Double>()
    var invalidPred = false
    var invalidTarget = false

    static let runLength = 128

    @inline(__always)
    mutating func accumulate(
        _ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ e: UnsafePointer<Float>?
    ) {
        var run = 0
        while run < kernelBlockLength {
            var i = SIMD16<Float>(), ps = SIMD16<Float>(), ts = SIMD16<Float>()
            var m = SIMD16<Float>(), es = SIMD16<Float>()
            var k = run
            while k < run &+ Self.runLength {
                let pv = UnsafeRawPointer(p + k).loadUnaligned(as: SIMD16<Float>.self)
                let tv = UnsafeRawPointer(t + k).loadUnaligned(as: SIMD16<Float>.self)
                i += pv * tv
                ps += pv
                ts += tv
                m += pv * (1 - tv) + tv * (1 - pv)
                if let e {
                    es += UnsafeRawPointer(e + k).loadUnaligned(as: SIMD16<Float>.self)
                }
                k &+= 16
            }
            intersection += Self.widen(i)
            predSum += Self.widen(ps)
            targetSum += Self.widen(ts)
            mismatch += Self.widen(m)
            elementSum += Self.widen(es)
            run &+= Self.runLength
        }
    }

    @inline(__always)
    static func widen(_ x: SIMD16<Float>) -> SIMD8<Double> {
        SIMD8<Double>(x.lowHalf) + SIMD8<Double>(x.highHalf)
    }

    var partial: StatisticsPartial {
        (intersection.sum(), predSum.sum(), targetSum.sum(), mismatch.sum(), elementSum.sum(),
         invalidPred, invalidTarget)
    }
}
