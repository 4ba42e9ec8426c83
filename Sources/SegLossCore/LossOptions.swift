// LossOptions — the definition of a loss of the general API and the layout of its tensors,
// validated once, before any pass runs.
import SegLossKernelTypes

/// The region (overlap) term.
public enum RegionTerm: Int32, Sendable { case none = 0, dice, jaccard, tversky }
/// Which elements one region score covers.
public enum Segmentation: Int32, Sendable { case all = 0, sample, channel, sampleChannel }
/// The region loss of a segment whose target is empty.
public enum EmptyPolicy: Int32, Sendable { case keep = 0, zero, exclude }
/// How the element terms and the segment losses are combined.
public enum Reduction: Int32, Sendable { case mean = 0, sum }

/// A loss of the family, field by field as segloss_options in include/segloss.h (whose
/// comments define each one). The defaults are the seed's BCE + Dice.
public struct LossOptions: Sendable, Equatable {
    public var logits = false
    public var bce = true
    public var region = RegionTerm.dice
    public var segments = Segmentation.all
    public var emptyPolicy = EmptyPolicy.keep
    public var reduction = Reduction.mean
    public var squared = false
    public var logLoss = false
    public var elementWeight = 0.5
    public var regionWeight = 0.5
    public var smoothNr = 1.0
    public var smoothDr = 1.0
    public var alpha = 0.5
    public var beta = 0.5
    public var gamma = 1.0
    public var denominatorMin = 0.0
    public var logMin = 1e-7
    public var labelSmoothing = 0.0
    /// One value per channel, or nil.
    public var posWeight: [Double]?
    /// One value per channel, or nil.
    public var channelWeights: [Double]?

    public init() {}

    /// Checks the rules of segloss_options; the per-channel arrays' lengths and values too
    /// when `channels` is given.
    /// - Throws: `.invalidOptions`.
    public func validate(channels: Int?) throws(SegLossError) {
        func nonNegative(_ value: Double) -> Bool { value.isFinite && value >= 0 }
        guard nonNegative(elementWeight), nonNegative(regionWeight), nonNegative(smoothNr),
              nonNegative(smoothDr), nonNegative(alpha), nonNegative(beta), nonNegative(denominatorMin),
              gamma.isFinite, gamma > 0,
              logMin.isFinite, logMin > 0, logMin <= 1,
              labelSmoothing.isFinite, labelSmoothing >= 0, labelSmoothing <= 1,
              bce || region != .none,
              !squared || region == .dice || region == .jaccard,
              !logLoss || gamma == 1
        else { throw .invalidOptions }
        guard let channels else { return }
        if let posWeight {
            guard bce, posWeight.count == channels, posWeight.allSatisfy({ nonNegative($0) }) else {
                throw .invalidOptions
            }
        }
        if let channelWeights {
            guard segments == .channel || segments == .sampleChannel,
                  channelWeights.count == channels, channelWeights.allSatisfy({ nonNegative($0) })
            else { throw .invalidOptions }
        }
    }
}

/// The layout of pred, target and mask: contiguous batch × channels × spatial.
public struct TensorShape: Sendable, Equatable {
    public let batch: Int
    public let channels: Int
    public let spatial: Int
    public let predType: ElementType
    public let targetType: ElementType
    /// The mask has one byte per pixel (batch × spatial), shared by the channels.
    public let maskPerPixel: Bool
    /// batch · channels · spatial.
    public let count: Int

    /// - Throws: `.invalidShape` (pred not float32/float64), `.emptyInput` (a dimension is
    ///   0), `.countTooLarge` (the element count or pred's byte size overflows).
    public init(
        batch: Int, channels: Int, spatial: Int, predType: ElementType, targetType: ElementType,
        maskPerPixel: Bool = false, allowsEmptyBatch: Bool = false
    ) throws(SegLossError) {
        guard predType != .uint8 else { throw .invalidShape }
        // size_t arrives as Int: a dimension above Int.max is negative here.
        guard batch >= 0, channels >= 0, spatial >= 0 else { throw .countTooLarge }
        guard batch > 0 || allowsEmptyBatch, channels > 0, spatial > 0 else { throw .emptyInput }
        let (runs, runsOverflow) = batch.multipliedReportingOverflow(by: channels)
        let (count, countOverflow) = runs.multipliedReportingOverflow(by: spatial)
        guard !runsOverflow, !countOverflow, count <= Int.max / max(predType.size, targetType.size) else {
            throw .countTooLarge
        }
        self.batch = batch
        self.channels = channels
        self.spatial = spatial
        self.predType = predType
        self.targetType = targetType
        self.maskPerPixel = maskPerPixel
        self.count = count
    }

    /// Runs: the batch · channels rows of `spatial` elements.
    var runs: Int { batch &* channels }
}
