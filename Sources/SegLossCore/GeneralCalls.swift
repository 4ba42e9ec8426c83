// GeneralCalls — the three calls of the general API, as the C functions make them: the
// seed's loss on plain float32 inputs goes through the flat passes (the fastest path, and
// the flat functions' own), every other loss through the general passes.
import SegLossKernelTypes

extension LossOptions {
    /// The seed's loss: weightBCE · BCE + weightDice · Dice(smooth) over the whole tensor.
    public static func seed(weightBCE: Double, weightDice: Double, smooth: Double) -> LossOptions {
        var options = LossOptions()
        options.elementWeight = weightBCE
        options.regionWeight = weightDice
        options.smoothNr = smooth
        options.smoothDr = smooth
        return options
    }
}

extension GeneralLoss {
    /// The flat passes' definition of this loss, when it is exactly the seed's on float32
    /// pred and target over the whole tensor with no mask; nil otherwise.
    public var seedForm: BCEDiceLoss? {
        let o = options
        guard allowsSeedPath, !o.logits, shape.predType == .float32, shape.targetType == .float32,
              o.segments == .all, o.region == .dice || o.region == .none, !o.squared, !o.logLoss,
              o.gamma == 1, o.denominatorMin == 0, o.smoothNr == o.smoothDr, o.emptyPolicy == .keep,
              o.reduction == .mean, o.labelSmoothing == 0, o.posWeight?.allSatisfy({ $0 == 1 }) ?? true
        else { return nil }
        let weightBCE = o.bce ? o.elementWeight : 0
        let weightDice = o.region == .dice ? o.regionWeight : 0
        func isFloat(_ value: Double) -> Bool { Double(Float(value)) == value }
        guard isFloat(weightBCE), isFloat(weightDice), isFloat(o.smoothNr) else { return nil }
        return try? BCEDiceLoss(weightBCE: Float(weightBCE), weightDice: Float(weightDice), smooth: Float(o.smoothNr))
    }

    private func flatBuffers(_ inputs: TensorInputs) -> (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) {
        (UnsafeBufferPointer(start: inputs.pred.assumingMemoryBound(to: Float.self), count: shape.count),
         UnsafeBufferPointer(start: inputs.target.assumingMemoryBound(to: Float.self), count: shape.count))
    }

    /// The loss; each segment's score and sums into the optional outputs (written only when
    /// the call succeeds).
    public func forwardCall(
        _ inputs: TensorInputs, scores: UnsafeMutablePointer<Double>? = nil,
        sums: UnsafeMutablePointer<Double>? = nil
    ) throws(SegLossError) -> Double {
        if inputs.mask == nil, scores == nil, sums == nil, let flat = seedForm {
            let (pred, target) = flatBuffers(inputs)
            return try flat.forwardValue(pred: pred, target: target)
        }
        let (finalized, segmentSums) = try forward(inputs, allSums: sums != nil)
        write(finalized, segmentSums, scores: scores, sums: sums)
        return finalized.loss
    }

    /// gradLoss · d loss / d pred into `grad`.
    public func backwardCall(
        _ inputs: TensorInputs, gradLoss: Double, into grad: UnsafeMutableRawPointer
    ) throws(SegLossError) {
        guard gradLoss.isFinite else { throw .invalidArgument }
        if inputs.mask == nil, let flat = seedForm, Float(gradLoss).isFinite {
            let (pred, target) = flatBuffers(inputs)
            try flat.backward(
                pred: pred, target: target, gradLoss: Float(gradLoss),
                into: grad.assumingMemoryBound(to: Float.self))
            return
        }
        _ = try backward(inputs, gradLoss: gradLoss, into: grad, withLoss: false, allSums: false)
    }

    /// The loss, and d loss / d pred into `grad`.
    public func forwardBackwardCall(
        _ inputs: TensorInputs, into grad: UnsafeMutableRawPointer,
        scores: UnsafeMutablePointer<Double>? = nil, sums: UnsafeMutablePointer<Double>? = nil
    ) throws(SegLossError) -> Double {
        if inputs.mask == nil, scores == nil, sums == nil, let flat = seedForm {
            let (pred, target) = flatBuffers(inputs)
            return try flat.forwardBackwardValue(
                pred: pred, target: target, into: grad.assumingMemoryBound(to: Float.self))
        }
        let (finalized, segmentSums) = try backward(inputs, gradLoss: 1, into: grad, allSums: sums != nil)
        write(finalized, segmentSums, scores: scores, sums: sums)
        return finalized.loss
    }

    /// The number of sums each segment has in `sums` outputs.
    public static let sumsPerSegment = 6

    // MARK: The split-phase calls (data-parallel: sums all-reduced between the phases)

    /// The doubles of a sums buffer: sumsPerSegment per segment.
    /// - Throws: `.countTooLarge` when that number overflows.
    public func sumsLength() throws(SegLossError) -> Int {
        let (length, overflow) = segmentCount.multipliedReportingOverflow(by: Self.sumsPerSegment)
        guard !overflow else { throw .countTooLarge }
        return length
    }

    /// - Throws: `.invalidArgument` unless `length` is the sums' length for this loss.
    public func checkSumsLength(_ length: Int) throws(SegLossError) {
        guard let expected = try? sumsLength(), length == expected else { throw .invalidArgument }
    }

    /// This slice's sums into `sums` (segmentCount · sumsPerSegment doubles): its own
    /// segments' sums, zeros for the segments of other slices' samples.
    public func sumsCall(_ inputs: TensorInputs, into sums: UnsafeMutablePointer<Double>) throws(SegLossError) {
        write(try statistics(inputs), into: sums)
    }

    /// The sums of `sums` (as `sumsCall` writes them, added up across slices).
    /// - Throws: `.invalidArgument` for a sum that is negative or NaN. (+inf is a sum a slice
    ///   can have: terms of huge finite logits overflow, and the loss is then infinite.)
    public func readSums(_ sums: UnsafePointer<Double>) throws(SegLossError) -> [KernelSums] {
        var result = [KernelSums](repeating: KernelSums(), count: segmentCount)
        for index in result.indices {
            let row = sums + index &* Self.sumsPerSegment
            for k in 0..<Self.sumsPerSegment where !(row[k] >= 0) {
                throw .invalidArgument
            }
            result[index].truePositive = row[0]
            result[index].falsePositive = row[1]
            result[index].falseNegative = row[2]
            result[index].squaredError = row[3]
            result[index].elementSum = row[4]
            result[index].validCount = row[5]
        }
        return result
    }

    /// The loss (and the segments' scores) from all-reduced sums.
    public func lossFromSumsCall(
        _ sums: UnsafePointer<Double>, scores: UnsafeMutablePointer<Double>?
    ) throws(SegLossError) -> Double {
        let finalized = finalize(try readSums(sums))
        if let scores { write(finalized.scores, into: scores) }
        return finalized.loss
    }

    /// gradLoss · d loss / d pred of this slice's elements, from all-reduced sums.
    public func backwardFromSumsCall(
        _ inputs: TensorInputs, sums: UnsafePointer<Double>, gradLoss: Double,
        into grad: UnsafeMutableRawPointer
    ) throws(SegLossError) {
        guard gradLoss.isFinite else { throw .invalidArgument }
        let finalized = finalize(try readSums(sums), gradLoss: gradLoss)
        // The slice's own inputs are checked as every pass checks them, before any write.
        _ = try statistics(inputs, elementTerms: false, allSums: false)
        gradient(inputs, finalized, into: grad)
    }

    private func write(
        _ finalized: FinalizedLoss, _ segmentSums: [KernelSums],
        scores: UnsafeMutablePointer<Double>?, sums: UnsafeMutablePointer<Double>?
    ) {
        if let scores { write(finalized.scores, into: scores) }
        if let sums { write(segmentSums, into: sums) }
    }

    private func write(_ scores: [Double], into out: UnsafeMutablePointer<Double>) {
        for (index, score) in scores.enumerated() { out[index] = score }
    }

    /// The segments' sums in the C layout: sumsPerSegment doubles each, in the header's order.
    private func write(_ segmentSums: [KernelSums], into sums: UnsafeMutablePointer<Double>) {
        for (index, s) in segmentSums.enumerated() {
            let out = sums + index &* Self.sumsPerSegment
            out[0] = s.truePositive
            out[1] = s.falsePositive
            out[2] = s.falseNegative
            out[3] = s.squaredError
            out[4] = s.elementSum
            out[5] = s.validCount
        }
    }
}

extension BCEDiceLoss {
    /// This loss as the general API's, on `count` float32 elements (one sample, one channel).
    public func general(count: Int) throws(SegLossError) -> GeneralLoss {
        let shape = try TensorShape(batch: 1, channels: 1, spatial: count, predType: .float32, targetType: .float32)
        return try GeneralLoss(
            options: .seed(weightBCE: weightBCE, weightDice: weightDice, smooth: smooth), shape: shape)
    }
}
