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
@inline(__always)
private func checkBlock(_ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>)
    -> (invalidPred: Bool, invalidTarget: Bool, softTargets: Bool)
{
    var badPred: UInt32 = 0, badTarget: UInt32 = 0, soft: UInt32 = 0
    for k in 0..<kernelBlockLength {
        let pk = p[k], tk = t[k]
        // Written so that NaN fails the test: NaN >= 0 is false.
        badPred |= (pk >= 0 && pk <= 1) ? 0 : 1
        badTarget |= (tk >= 0 && tk <= 1) ? 0 : 1
        soft |= (tk == 0 || tk == 1) ? 0 : 1
    }
    return (badPred != 0, badTarget != 0, soft != 0)
}

/// BCE terms for targets that are all exactly 0 or 1: one log per element,
/// e = -max(log q, -100) with q = p where t = 1 and q = 1 - p where t = 0.
/// Bitwise the same as softElementTerms for such targets.
@inline(__always)
private func hardElementTerms(
    _ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>
) {
    for k in 0..<kernelBlockLength {
        let pk = p[k]
        let isPositive = t[k] > 0.5
        let u = 1 - pk
        let c = (1 - u) - pk
        let safeU: Float = u > 0 ? u : 1
        let q = isPositive ? pk : u
        let correction: Float = isPositive ? 0 : c / safeU
        let l = logApprox(q) + correction
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

/// Eight double lanes per sum; a block's float terms are widened and added lane-wise.
private struct LaneSums {
    var intersection = SIMD8<Double>()
    var predSum = SIMD8<Double>()
    var targetSum = SIMD8<Double>()
    var mismatch = SIMD8<Double>()
    var elementSum = SIMD8<Double>()
    var invalidPred = false
    var invalidTarget = false

    @inline(__always)
    mutating func accumulate(
        _ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ e: UnsafePointer<Float>?
    ) {
        var k = 0
        while k < kernelBlockLength {
            let pv = UnsafeRawPointer(p + k).loadUnaligned(as: SIMD8<Float>.self)
            let tv = UnsafeRawPointer(t + k).loadUnaligned(as: SIMD8<Float>.self)
            intersection += SIMD8<Double>(pv * tv)
            predSum += SIMD8<Double>(pv)
            targetSum += SIMD8<Double>(tv)
            mismatch += SIMD8<Double>(pv * (1 - tv) + tv * (1 - pv))
            if let e {
                elementSum += SIMD8<Double>(UnsafeRawPointer(e + k).loadUnaligned(as: SIMD8<Float>.self))
            }
            k &+= 8
        }
    }

    var partial: StatisticsPartial {
        (intersection.sum(), predSum.sum(), targetSum.sum(), mismatch.sum(), elementSum.sum(),
         invalidPred, invalidTarget)
    }
}
