// GradientPass — step 3: write every element's gradient from per-call coefficients.

/// The gradient of a loss as an affine function of the target plus the BCE element
/// derivative (DESIGN §2): g_i = targetScale·t_i + offset + elementScale·e'(p_i, t_i).
public struct GradientCoefficients: Equatable, Sendable {
    public var targetScale: Float
    public var offset: Float
    public var elementScale: Float

    public init(targetScale: Float, offset: Float, elementScale: Float) {
        self.targetScale = targetScale
        self.offset = offset
        self.elementScale = elementScale
    }
}

/// Writes the gradient of every element into `grad` (which may be `pred`'s memory).
/// Each element's value depends on its own inputs only, so any thread count gives the same bits.
///
/// With `withElementTerm` it also returns the sum of the BCE terms, bitwise equal to the
/// statistics pass's `elementSum` (same kernels, same chunks, folded in the same order); a
/// fused call computes it here, where its logs overlap this pass's memory traffic.
/// `hardTargets` promises that every target is exactly 0 or 1 (a statistics pass asked to
/// find soft targets found none): the BCE terms then skip looking for soft ones.
@discardableResult
public func gradientPass(
    pred: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>,
    coefficients c: GradientCoefficients, into grad: UnsafeMutablePointer<Float>,
    withElementTerm: Bool = false, hardTargets: Bool = false, level: KernelLevel = .active,
    threads: Int = WorkerThreads.count
) -> Double {
    guard let p = pred.baseAddress, let t = target.baseAddress else { return 0 }
    let plan = ChunkPlan(count: pred.count, threads: threads)
    let chunk = { (index: Int) -> Double in
        let range = plan.range(index)
        return level.gradient(
            p + range.lowerBound, t + range.lowerBound, range.count,
            c.targetScale, c.offset, c.elementScale, grad + range.lowerBound, withElementTerm,
            hardTargets)
    }
    guard withElementTerm else {
        plan.forEachChunk { _ = chunk($0) }
        return 0
    }
    var elementSum = 0.0
    plan.reduceInOrder(chunk) { _, partial in elementSum += partial }
    return elementSum
}
