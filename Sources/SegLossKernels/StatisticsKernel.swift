// StatisticsKernel — the per-chunk sums of the statistics pass (DESIGN §2, step 1).
import SegLossKernelTypes

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
    invalidTarget: Bool,    // some t outside [0, 1] or NaN
    softTargets: Bool       // with `findSoftTargets`: some t other than 0 and 1 (or -0.0)
)

/// Elements per block: the unit of the inner loops (see `forEachBlock`).
public let kernelBlockLength = 256

/// The sums over `count` elements of `pred` and `target` (`count` > 0, any length).
/// `withElementTerm` adds the BCE term (the only part that needs `log`). `findSoftTargets`
/// reports whether some target is neither 0 nor 1 (a fused call's statistics pass asks,
/// so that its gradient pass can take the one-log BCE form without looking).
///
/// The result depends only on the elements, never on where the chunk sits or which thread
/// runs it: per element the terms are float, summed in float over runs of 8 per lane, then
/// into 8 double lanes, always in the same order.
@inline(never)
public func statisticsKernel(
    _ pred: UnsafePointer<Float>, _ target: UnsafePointer<Float>, _ count: Int,
    _ withElementTerm: Bool, _ findSoftTargets: Bool
) -> StatisticsPartial {
    var sums = LaneSums()
    var elementTerms = ElementTerms()
    forEachBlock(pred, target, count) { p, t, _, elementBuffer in
        if withElementTerm {
            // Terms of out-of-range elements are meaningless, but the checks below reject them.
            elementTerms.compute(p, t, into: elementBuffer)
            sums.elementSum.add(elementBuffer)
        }
        if findSoftTargets {
            sums.accumulate(p, t, findingSoftTargets: true)
        } else {
            sums.accumulate(p, t, findingSoftTargets: false)
        }
    }
    return sums.partial
}

/// Calls `body(p, t, range, scratch)` for each block of `kernelBlockLength` elements in
/// order: `p` and `t` point at the block's inputs (a zero-padded copy for a short last block:
/// p = t = 0 adds nothing to any sum and is valid), `range` is the block's elements, and
/// `scratch` is a block-sized float buffer (the thread's: see KernelScratch).
@inline(__always)
func forEachBlock(
    _ pred: UnsafePointer<Float>, _ target: UnsafePointer<Float>, _ count: Int,
    _ body: (UnsafePointer<Float>, UnsafePointer<Float>, Range<Int>, UnsafeMutablePointer<Float>) -> Void
) {
    KernelScratch.with { header, buffer in
        // These 3 KB lie below the general kernels' flags (8 KB in at least) as the layouts
        // stand; forgetting the record keeps a change to either layout from mattering.
        header.pointee = ScratchHeader()
        let scratch = buffer.bindMemory(to: Float.self, capacity: 3 * kernelBlockLength)
        let paddedPred = scratch + kernelBlockLength
        let paddedTarget = paddedPred + kernelBlockLength
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
            body(p, t, start..<(start &+ length), scratch)
            start &+= length
        }
    }
}

/// Whether any target of a block is neither 0 nor 1: the OR of the bits of t(1 - t), which
/// is +0.0 (all bits zero) exactly for t = 0 and t = 1 (+ 0 turns -0.0 into +0.0). An OR of
/// bits is a reduction LLVM vectorizes; an OR of comparisons becomes a search that stops at
/// the first soft target.
struct SoftTargetCheck {
    private var bits: UInt32 = 0

    @inline(__always)
    mutating func add(_ t: Float) {
        bits |= ((t + 0) * (1 - t)).bitPattern
    }

    var found: Bool { bits != 0 }
}

/// Computes a block's BCE terms, choosing the cheaper hard-target form where it applies, for
/// targets not known to be all 0 or 1.
///
/// Which form a block needs is known only after the loop over it, so it is guessed from the
/// block before: the soft form is right for any targets, the hard one (one
/// log, not two) only for targets that are all 0 or 1, and is redone when the guess was
/// wrong. Both forms give the same bits for 0/1 targets, so the guess never shows in a result.
struct ElementTerms {
    private var expectSoftTargets = false

    @inline(__always)
    mutating func compute(
        _ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>
    ) {
        let soft: SoftTargetCheck
        if expectSoftTargets {
            soft = softElementTerms(p, t, out)
        } else {
            soft = hardElementTerms(p, t, out, checking: true)
            if soft.found { _ = softElementTerms(p, t, out) }
        }
        expectSoftTargets = soft.found
    }
}

/// BCE terms for targets that are all exactly 0 or 1: one log per element,
/// e = -max(log q, -100) with q = p where t = 1 and q = 1 - p where t = 0.
/// Bitwise the same as softElementTerms for such targets; meaningless for others (with
/// `checking`, the returned check says whether there were any).
@inline(__always)
func hardElementTerms(
    _ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
    checking: Bool
) -> SoftTargetCheck {
    var check = SoftTargetCheck()
    for k in 0..<kernelBlockLength {
        let pk = p[k], tk = t[k]
        if checking { check.add(tk) }
        // The argument is chosen, not the result, so only one log is evaluated.
        let isPositive = tk > 0.5
        let u = 1 - pk
        let c = (1 - u) - pk
        out[k] = -clampedLogApprox(isPositive ? pk : u, remainder: isPositive ? 0 : c)
    }
    return check
}

/// BCE terms for any targets: e = -(t·max(log p, -100) + (1 - t)·max(log(1 - p), -100)).
@inline(__always)
private func softElementTerms(
    _ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>
) -> SoftTargetCheck {
    var check = SoftTargetCheck()
    for k in 0..<kernelBlockLength {
        let pk = p[k], tk = t[k]
        check.add(tk)
        let u = 1 - pk
        let clampedLp = clampedLogApprox(pk)
        let clampedL1p = clampedLogApprox(u, remainder: (1 - u) - pk)
        out[k] = -(tk * clampedLp + (1 - tk) * clampedL1p)
    }
    return check
}

/// The block's sums: float in 16 lanes over runs of 128 elements (8 terms per lane, so a
/// lane's rounding error stays below 8 ulp), then widened into 8 double lanes per sum.
private struct LaneSums {
    var intersection = SIMD8<Double>()
    var predSum = SIMD8<Double>()
    var targetSum = SIMD8<Double>()
    var mismatch = SIMD8<Double>()
    var elementSum = ElementSum()
    var outOfRangePred = false
    var outOfRangeTarget = false
    var softTargets = false

    /// Adds a block's sums and checks its elements, in one loop.
    ///
    /// The checks are two bounds per array: the lanes' minimum and maximum of p and of t (an
    /// element below 0 or above 1, infinities included, moves one past its bound), and NaN,
    /// which no comparison sees but which turns every sum it enters into NaN: the p and t
    /// sums take each element, and their lanes end in the double sums `partial` tests. Four
    /// operations per 16 elements, on a loop that otherwise only adds. `findingSoftTargets`
    /// also ORs the bits of t(1 - t), as `SoftTargetCheck` does, with the 1 - t the mismatch
    /// sum computes anyway (without its + 0: a -0.0 target counts as soft, which only costs
    /// speed).
    @inline(__always)
    mutating func accumulate(
        _ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, findingSoftTargets: Bool
    ) {
        var predLow = SIMD16<Float>(), predHigh = SIMD16<Float>(repeating: 1)
        var targetLow = SIMD16<Float>(), targetHigh = SIMD16<Float>(repeating: 1)
        var softBits = SIMD16<UInt32>()
        var run = 0
        while run < kernelBlockLength {
            var i = SIMD16<Float>(), ps = SIMD16<Float>(), ts = SIMD16<Float>()
            var m = SIMD16<Float>()
            var k = run
            while k < run &+ elementSumRunLength {
                let pv = UnsafeRawPointer(p + k).loadUnaligned(as: SIMD16<Float>.self)
                let tv = UnsafeRawPointer(t + k).loadUnaligned(as: SIMD16<Float>.self)
                i += pv * tv
                ps += pv
                ts += tv
                let oneMinusT = 1 - tv
                m += pv * oneMinusT + tv * (1 - pv)
                if findingSoftTargets {
                    softBits |= unsafeBitCast(tv * oneMinusT, to: SIMD16<UInt32>.self)
                }
                predLow = predLow.replacing(with: pv, where: pv .< predLow)
                predHigh = predHigh.replacing(with: pv, where: pv .> predHigh)
                targetLow = targetLow.replacing(with: tv, where: tv .< targetLow)
                targetHigh = targetHigh.replacing(with: tv, where: tv .> targetHigh)
                k &+= 16
            }
            intersection += widen(i)
            predSum += widen(ps)
            targetSum += widen(ts)
            mismatch += widen(m)
            run &+= elementSumRunLength
        }
        outOfRangePred = outOfRangePred || any(predLow .< 0) || any(predHigh .> 1)
        outOfRangeTarget = outOfRangeTarget || any(targetLow .< 0) || any(targetHigh .> 1)
        softTargets = softTargets || softBits != .zero
    }

    var partial: StatisticsPartial {
        let predTotal = predSum.sum(), targetTotal = targetSum.sum()
        return (intersection.sum(), predTotal, targetTotal, mismatch.sum(), elementSum.total,
                outOfRangePred || predTotal.isNaN, outOfRangeTarget || targetTotal.isNaN,
                softTargets)
    }
}

/// Elements per float run before the lanes are widened to double.
let elementSumRunLength = 128

/// The sum of blocks of BCE terms, accumulated the same way in the statistics and the
/// gradient kernel, so that a fused call's loss has the same bits as a forward call's.
struct ElementSum {
    private var lanes = SIMD8<Double>()

    @inline(__always)
    mutating func add(_ block: UnsafePointer<Float>) {
        var run = 0
        while run < kernelBlockLength {
            var sum = SIMD16<Float>()
            var k = run
            while k < run &+ elementSumRunLength {
                sum += UnsafeRawPointer(block + k).loadUnaligned(as: SIMD16<Float>.self)
                k &+= 16
            }
            lanes += widen(sum)
            run &+= elementSumRunLength
        }
    }

    var total: Double { lanes.sum() }
}

/// The pairwise sums of a float vector's halves, in double. Spelled lane by lane: the
/// generic SIMD8<Double>(SIMD8<Float>) initializer is left as an out-of-line call when the
/// caller is large, and LLVM turns these lanes into the same vector conversion.
@inline(__always)
private func widen(_ x: SIMD16<Float>) -> SIMD8<Double> {
    var result = SIMD8<Double>()
    for lane in 0..<8 {
        result[lane] = Double(x[lane]) + Double(x[lane &+ 8])
    }
    return result
}
