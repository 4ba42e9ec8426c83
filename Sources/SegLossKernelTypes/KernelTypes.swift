// KernelTypes — the plain values the general kernels take and return. They live in a module
// of their own because the kernel sources are compiled once per CPU level, each copy its own
// module: a struct declared there would be a different type in every copy.

/// The element type of an array, as the C API's segloss_dtype numbers them.
public enum ElementType: Int32, Sendable {
    case float32 = 0
    case float64 = 1
    case uint8 = 2

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32: return 4
        case .float64: return 8
        case .uint8: return 1
        }
    }
}

/// A run of `count` consecutive elements of one channel: pointers already at its first element.
public struct KernelInput: @unchecked Sendable {
    public var pred: UnsafeRawPointer
    public var predType: ElementType
    public var target: UnsafeRawPointer
    public var targetType: ElementType
    /// The valid-element bytes (non-zero: valid), or nil when every element is valid.
    public var mask: UnsafePointer<UInt8>?
    public var count: Int

    public init(
        pred: UnsafeRawPointer, predType: ElementType, target: UnsafeRawPointer,
        targetType: ElementType, mask: UnsafePointer<UInt8>?, count: Int
    ) {
        self.pred = pred
        self.predType = predType
        self.target = target
        self.targetType = targetType
        self.mask = mask
        self.count = count
    }
}

/// How the elements of one channel are read and which element term they have.
public struct ElementOptions: Sendable, Equatable {
    /// pred holds logits; p = sigmoid(pred).
    public var logits: Bool
    /// The BCE term is computed (forward) or differentiated (gradient).
    public var bce: Bool
    /// The BCE weight of the positive class (1: plain BCE).
    public var posWeight: Double
    /// BCE targets become t(1 - labelSmoothing) + labelSmoothing / 2.
    public var labelSmoothing: Double
    /// The statistics kernel sums SQ (else it leaves it 0: only squared forms and the sums
    /// outputs need it).
    public var squaredError: Bool
    /// The statistics kernel reports in `KernelSums.softTargets` whether some valid target is
    /// neither 0 nor 1 (a fused call asks, for its gradient pass).
    public var findSoftTargets = false
    /// Every valid target is 0 or 1 (a statistics pass asked found none other): the gradient
    /// kernel's BCE terms take the one-log form without looking.
    public var hardTargets = false

    public init(
        logits: Bool, bce: Bool, posWeight: Double = 1, labelSmoothing: Double = 0, squaredError: Bool = true
    ) {
        self.logits = logits
        self.bce = bce
        self.posWeight = posWeight
        self.labelSmoothing = labelSmoothing
        self.squaredError = squaredError
    }
}

/// The sums of a run: TP = Σ p·t, FP = Σ p(1 - t), FN = Σ (1 - p)t, SQ = Σ (p - t)², the
/// element terms' sum and the valid-element count, each from non-negative terms.
public struct KernelSums: Sendable, Equatable {
    public var truePositive = 0.0
    public var falsePositive = 0.0
    public var falseNegative = 0.0
    public var squaredError = 0.0
    public var elementSum = 0.0
    public var validCount = 0.0
    /// Some valid p is outside [0, 1] or NaN (probabilities), or a logit is NaN or infinite.
    public var invalidPred = false
    /// Some valid t is outside [0, 1] or NaN.
    public var invalidTarget = false
    /// Some valid t is neither 0 nor 1 (only when asked: `ElementOptions.findSoftTargets`).
    public var softTargets = false

    public init() {}

    public mutating func add(_ other: KernelSums) {
        truePositive += other.truePositive
        falsePositive += other.falsePositive
        falseNegative += other.falseNegative
        squaredError += other.squaredError
        elementSum += other.elementSum
        validCount += other.validCount
        invalidPred = invalidPred || other.invalidPred
        invalidTarget = invalidTarget || other.invalidTarget
        softTargets = softTargets || other.softTargets
    }
}

/// The gradient of a run's elements: with p the probability and t the target,
///   d loss / d p_i = targetScale·t_i + offset + predScale·p_i + elementScale·e'(p_i, t_i)
/// (times p(1 - p) for the region part with logits, whose e' is then taken w.r.t. the logit).
public struct KernelCoefficients: Sendable, Equatable {
    public var targetScale: Double
    public var offset: Double
    public var predScale: Double
    public var elementScale: Double

    public init(targetScale: Double, offset: Double, predScale: Double, elementScale: Double) {
        self.targetScale = targetScale
        self.offset = offset
        self.predScale = predScale
        self.elementScale = elementScale
    }
}
