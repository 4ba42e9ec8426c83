// StatisticsPass — step 1 of every call: read pred and target once, validate, sum.
import SegLossKernels

/// The additive sums every loss of the family is a function of (DESIGN §2), over one
/// segment of elements. Sums of segments add up to the sums of their union.
public struct Statistics: Equatable, Sendable {
    /// Σ p·t
    public var intersection: Double = 0
    /// Σ p
    public var predSum: Double = 0
    /// Σ t
    public var targetSum: Double = 0
    /// Σ p(1 - t) + t(1 - p), which equals P + T - 2I but is summed without cancellation.
    public var mismatch: Double = 0
    /// Σ of the BCE element term (0 unless the pass was asked for it).
    public var elementSum: Double = 0
    /// How many elements were summed.
    public var count: Int = 0
    /// Whether some target is neither 0 nor 1 (a -0.0 target may count as one); only from a
    /// pass asked to find them, false otherwise.
    public var softTargets = false

    public init() {}

    mutating func add(_ partial: StatisticsPartial, count: Int) {
        intersection += partial.intersection
        predSum += partial.predSum
        targetSum += partial.targetSum
        mismatch += partial.mismatch
        elementSum += partial.elementSum
        self.count += count
        softTargets = softTargets || partial.softTargets
    }
}

/// Sums `pred` and `target` (of equal, non-zero length) chunk by chunk on the worker threads.
///
/// Chunk results are folded in chunk order, so the result is bitwise the same for any
/// thread count. Scratch is one round of chunk results on the stack.
/// With `findSoftTargets` it also sets `softTargets`.
/// - Throws: `.emptyInput`, `.invalidArgument` (lengths differ), `.predOutOfRange`,
///   `.targetOutOfRange`.
public func statisticsPass(
    pred: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>,
    withElementTerm: Bool, findSoftTargets: Bool = false, level: KernelLevel = .active,
    threads: Int = WorkerThreads.count
) throws(SegLossError) -> Statistics {
    guard let p = pred.baseAddress, let t = target.baseAddress, pred.count > 0 else {
        throw .emptyInput
    }
    guard pred.count == target.count else { throw .invalidArgument }
    let plan = ChunkPlan(count: pred.count, threads: threads)
    var total = Statistics()
    var invalidPred = false, invalidTarget = false
    plan.reduceInOrder({ index in
        let range = plan.range(index)
        return level.statistics(
            p + range.lowerBound, t + range.lowerBound, range.count, withElementTerm, findSoftTargets)
    }, { index, partial in
        total.add(partial, count: plan.range(index).count)
        invalidPred = invalidPred || partial.invalidPred
        invalidTarget = invalidTarget || partial.invalidTarget
    })
    if invalidPred { throw .predOutOfRange }
    if invalidTarget { throw .targetOutOfRange }
    return total
}
