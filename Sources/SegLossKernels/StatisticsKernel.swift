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

/// Elements per block: the unit of the inner loops (see `forEachBlock`).
public let kernelBlockLength = 256

/// The sums over `count` elements of `pred` and `target` (`count` > 0, any length).
/// `withElementTerm` adds the BCE term (the only part that needs `log`).
///
/// The result depends only on the elements, never on where the chunk sits or which thread
/// runs it: per element the terms are float, summed in float over runs of 8 per lane, then
/// into 8 double lanes, always in the same order.
@inline(never)
public func statisticsKernel(
    _ pred: UnsafePointer<Float>, _ target: UnsafePointer<Float>, _ count: Int,
    _ withElementTerm: Bool
) -> StatisticsPartial {
    var sums = LaneSums()
    var elementTerms = ElementTerms()
    forEachBlock(pred, target, count) { p, t, _, elementBuffer in
        if withElementTerm {
            let check = elementTerms.compute(p, t, into: elementBuffer)
            sums.invalidPred = sums.invalidPred || check.invalidPred
            sums.invalidTarget = sums.invalidTarget || check.invalidTarget
            sums.accumulate(p, t, checking: false)
            sums.elementSum.add(elementBuffer)
        } else {
            sums.accumulate(p, t, checking: true)
        }
    }
    return sums.partial
}

/// Calls `body(p, t, range, scratch)` for each block of `kernelBlockLength` elements in
/// order: `p` and `t` point at the block's inputs (a zero-padded copy for a short last block:
/// p = t = 0 adds nothing to any sum and is valid), `range` is the block's elements, and
/// `scratch` is a block-sized float buffer on the stack.
@inline(__always)
func forEachBlock(
    _ pred: UnsafePointer<Float>, _ target: UnsafePointer<Float>, _ count: Int,
    _ body: (UnsafePointer<Float>, UnsafePointer<Float>, Range<Int>, UnsafeMutablePointer<Float>) -> Void
) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * kernelBlockLength) { buffer in
        let scratch = buffer.baseAddress!
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

/// Range checks of a block's elements, and whether any target is neither 0 nor 1.
///
/// Written as plain arithmetic and OR reductions, which LLVM vectorizes; the same tests as
/// comparisons joined by && and || become branches. v = (x + 0)·(1 - x) is in [0, 0.25] (a
/// hair above after rounding) exactly when x is in [0, 1], and negative or NaN otherwise
/// (+inf and -inf give -inf; + 0 turns -0.0 into +0.0). As a bit pattern b, a valid v is
/// below bits(0.5) = 0x3f00_0000; an invalid one has the sign bit set, or is a NaN above
/// 0x7f80_0000. So b | (b + 0x4100_0000) has its top bit set exactly when v is invalid.
/// A valid target is 0 or 1 exactly when its v is +0.0, whose bit pattern is all zeros.
struct BlockCheck {
    /// b + offset carries into the top bit for every invalid v below the sign bit.
    static let offset: UInt32 = 0x4100_0000
    static let topBit: UInt32 = 0x8000_0000

    private var predBits: UInt32 = 0
    private var targetBits: UInt32 = 0
    private var softBits: UInt32 = 0

    @inline(__always)
    mutating func add(_ p: Float, _ t: Float) {
        let vp = ((p + 0) * (1 - p)).bitPattern
        let vt = ((t + 0) * (1 - t)).bitPattern
        predBits |= vp | (vp &+ Self.offset)
        targetBits |= vt | (vt &+ Self.offset)
        softBits |= vt
    }

    var invalidPred: Bool { predBits & Self.topBit != 0 }
    var invalidTarget: Bool { targetBits & Self.topBit != 0 }
    var softTargets: Bool { softBits != 0 }
}

/// Computes a block's BCE terms, choosing the cheaper hard-target form where it applies.
///
/// The range checks run in the same loop as the logs, so that a block's loads from memory
/// overlap its arithmetic. Which form a block needs is known only after its checks, so it is
/// guessed from the block before: the soft form is right for any targets, the hard one (one
/// log, not two) only for targets that are all 0 or 1, and is redone when the guess was
/// wrong. Both forms give the same bits for 0/1 targets, so the guess never shows in a result.
struct ElementTerms {
    private var expectSoftTargets = false

    @inline(__always)
    mutating func compute(
        _ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>
    ) -> BlockCheck {
        let check: BlockCheck
        if expectSoftTargets {
            check = softElementTerms(p, t, out)
        } else {
            check = hardElementTerms(p, t, out)
            if check.softTargets { _ = softElementTerms(p, t, out) }
        }
        expectSoftTargets = check.softTargets
        return check
    }
}

/// BCE terms for targets that are all exactly 0 or 1: one log per element,
/// e = -max(log q, -100) with q = p where t = 1 and q = 1 - p where t = 0.
/// Bitwise the same as softElementTerms for such targets; meaningless for others (the
/// returned check says whether there were any).
@inline(__always)
private func hardElementTerms(
    _ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>
) -> BlockCheck {
    var check = BlockCheck()
    for k in 0..<kernelBlockLength {
        let pk = p[k], tk = t[k]
        check.add(pk, tk)
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
) -> BlockCheck {
    var check = BlockCheck()
    for k in 0..<kernelBlockLength {
        let pk = p[k], tk = t[k]
        check.add(pk, tk)
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
    var invalidPred = false
    var invalidTarget = false

    /// Adds a block's sums; with `checking`, also the range checks of `BlockCheck`, in the
    /// same loop (the same arithmetic on 16 lanes), sparing a second pass over the block.
    @inline(__always)
    mutating func accumulate(_ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, checking: Bool) {
        var predBits = SIMD16<UInt32>(), targetBits = SIMD16<UInt32>()
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
                m += pv * (1 - tv) + tv * (1 - pv)
                if checking {
                    let vp = unsafeBitCast((pv + 0) * (1 - pv), to: SIMD16<UInt32>.self)
                    let vt = unsafeBitCast((tv + 0) * (1 - tv), to: SIMD16<UInt32>.self)
                    predBits |= vp | (vp &+ BlockCheck.offset)
                    targetBits |= vt | (vt &+ BlockCheck.offset)
                }
                k &+= 16
            }
            intersection += widen(i)
            predSum += widen(ps)
            targetSum += widen(ts)
            mismatch += widen(m)
            run &+= elementSumRunLength
        }
        if checking {
            invalidPred = invalidPred || (predBits & BlockCheck.topBit) != .zero
            invalidTarget = invalidTarget || (targetBits & BlockCheck.topBit) != .zero
        }
    }

    var partial: StatisticsPartial {
        (intersection.sum(), predSum.sum(), targetSum.sum(), mismatch.sum(), elementSum.total,
         invalidPred, invalidTarget)
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
