// BCEDiceLoss — the finalize step (DESIGN §2, step 2) of BCE, Dice and their weighted sum.

/// loss = weightBCE · mean BCE + weightDice · (1 - (2I + smooth) / (P + T + smooth)).
///
/// Dice alone is weightBCE = 0, weightDice = 1; BCE alone the other way round. The three
/// entry points run the passes: forward = statistics + finalize; backward adds the
/// gradient pass; forwardBackward returns both from the same statistics.
public struct BCEDiceLoss: Sendable {
    public let weightBCE: Double
    public let weightDice: Double
    public let smooth: Double

    /// - Throws: `.invalidArgument` when a weight or `smooth` is negative, NaN or infinite.
    public init(weightBCE: Float, weightDice: Float, smooth: Float) throws(SegLossError) {
        func isValid(_ value: Float) -> Bool { value.isFinite && value >= 0 }
        guard isValid(weightBCE), isValid(weightDice), isValid(smooth) else { throw .invalidArgument }
        self.init(checkedWeightBCE: Double(weightBCE), weightDice: Double(weightDice), smooth: Double(smooth))
    }

    private init(checkedWeightBCE weightBCE: Double, weightDice: Double, smooth: Double) {
        self.weightBCE = weightBCE
        self.weightDice = weightDice
        self.smooth = smooth
    }

    /// The Dice loss alone.
    public static func dice(smooth: Float) throws(SegLossError) -> BCEDiceLoss {
        try BCEDiceLoss(weightBCE: 0, weightDice: 1, smooth: smooth)
    }

    /// The mean binary cross-entropy alone.
    public static let bce = BCEDiceLoss(checkedWeightBCE: 1, weightDice: 0, smooth: 0)

    /// Only a non-zero BCE weight needs the element term (and so `log`) in the forward.
    var needsElementTerm: Bool { weightBCE != 0 }

    /// The loss from the sums. 1 - (2I + s)/(P + T + s) is evaluated as
    /// (Σ p(1-t) + t(1-p)) / (P + T + s), which has no cancellation when the Dice is near 1.
    public func value(_ s: Statistics) -> Double {
        var loss = 0.0
        if weightDice != 0 {
            loss += weightDice * s.mismatch / (s.predSum + s.targetSum + smooth)
        }
        if weightBCE != 0 {
            loss += weightBCE * s.elementSum / Double(s.count)
        }
        return loss
    }

    /// The partial derivatives of `gradLoss · value` as per-element coefficients:
    /// d Dice / d p_i = (2I + s)/D² - 2 t_i / D with D = P + T + s; d BCE / d p_i = e'_i / N.
    public func gradientCoefficients(_ s: Statistics, gradLoss: Double) -> GradientCoefficients {
        var targetScale = 0.0, offset = 0.0
        if weightDice != 0 {
            let denominator = s.predSum + s.targetSum + smooth
            let numerator = 2 * s.intersection + smooth
            let scale = weightDice * gradLoss
            targetScale = -2 / denominator * scale
            offset = numerator / (denominator * denominator) * scale
        }
        let elementScale = weightBCE * gradLoss / Double(s.count)
        return GradientCoefficients(
            targetScale: Float(targetScale), offset: Float(offset), elementScale: Float(elementScale))
    }

    /// The loss of `pred` against `target`.
    public func forward(
        pred: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>
    ) throws(SegLossError) -> Float {
        Float(try forwardValue(pred: pred, target: target))
    }

    /// The loss in double, before its rounding to float.
    func forwardValue(
        pred: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>
    ) throws(SegLossError) -> Double {
        let stats = try statisticsPass(pred: pred, target: target, withElementTerm: needsElementTerm)
        return value(stats)
    }

    /// Writes gradLoss · d loss / d pred into `grad` (which may be `pred`'s memory).
    /// - Throws: `.invalidArgument` for a non-finite `gradLoss`, and the pass's errors;
    ///   `grad` is untouched when it throws.
    public func backward(
        pred: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>, gradLoss: Float,
        into grad: UnsafeMutablePointer<Float>
    ) throws(SegLossError) {
        guard gradLoss.isFinite else { throw .invalidArgument }
        let stats = try statisticsPass(pred: pred, target: target, withElementTerm: false)
        let coefficients = gradientCoefficients(stats, gradLoss: Double(gradLoss))
        gradientPass(pred: pred, target: target, coefficients: coefficients, into: grad)
    }

    /// The loss, and d loss / d pred written into `grad`: one statistics pass, then one
    /// gradient pass that also sums the BCE terms.
    public func forwardBackward(
        pred: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>,
        into grad: UnsafeMutablePointer<Float>
    ) throws(SegLossError) -> Float {
        Float(try forwardBackwardValue(pred: pred, target: target, into: grad))
    }

    /// forwardBackward's loss in double, before its rounding to float.
    func forwardBackwardValue(
        pred: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>,
        into grad: UnsafeMutablePointer<Float>
    ) throws(SegLossError) -> Double {
        // The BCE sum comes from the gradient pass, where its logs overlap that pass's
        // memory traffic (the same bits as the statistics pass would give). The statistics
        // pass tells it whether every target is 0 or 1, which it would otherwise check.
        var stats = try statisticsPass(
            pred: pred, target: target, withElementTerm: false, findSoftTargets: needsElementTerm)
        stats.elementSum = gradientPass(
            pred: pred, target: target, coefficients: gradientCoefficients(stats, gradLoss: 1),
            into: grad, withElementTerm: needsElementTerm, hardTargets: !stats.softTargets)
        return value(stats)
    }
}
