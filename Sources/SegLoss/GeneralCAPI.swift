// GeneralCAPI — the @_cdecl functions of the general API: read and check the C structs, call
// the core, map the outcome to a status. No math here.
import CSegLoss
import SegLossCore
import SegLossKernelTypes

@_cdecl("segloss_options_init")
public func segloss_options_init(_ options: UnsafeMutablePointer<segloss_options>?) -> segloss_status {
    status { () throws(SegLossError) in
        guard let options else { throw .nullPointer }
        let d = LossOptions()
        options.pointee = segloss_options(
            struct_size: MemoryLayout<segloss_options>.size,
            input: d.logits ? 1 : 0, element_term: d.bce ? 1 : 0, region_term: d.region.rawValue,
            segments: d.segments.rawValue, empty_policy: d.emptyPolicy.rawValue,
            reduction: d.reduction.rawValue, squared: d.squared ? 1 : 0, log_loss: d.logLoss ? 1 : 0,
            element_weight: d.elementWeight, region_weight: d.regionWeight,
            smooth_nr: d.smoothNr, smooth_dr: d.smoothDr, alpha: d.alpha, beta: d.beta,
            gamma: d.gamma, denominator_min: d.denominatorMin, log_min: d.logMin,
            label_smoothing: d.labelSmoothing, pos_weight: nil, channel_weights: nil)
    }
}

@_cdecl("segloss_segment_count")
public func segloss_segment_count(
    _ options: UnsafePointer<segloss_options>?, _ shape: UnsafePointer<segloss_shape>?,
    _ segments: UnsafeMutablePointer<Int>?
) -> segloss_status {
    status { () throws(SegLossError) in
        guard let segments else { throw .nullPointer }
        let loss = try generalLoss(options, shape, hasMask: false)
        segments.pointee = loss.segmentCount
    }
}

@_cdecl("segloss_forward")
public func segloss_forward(
    _ options: UnsafePointer<segloss_options>?, _ shape: UnsafePointer<segloss_shape>?,
    _ pred: UnsafeRawPointer?, _ target: UnsafeRawPointer?, _ mask: UnsafePointer<UInt8>?,
    _ loss: UnsafeMutablePointer<Double>?, _ segmentScores: UnsafeMutablePointer<Double>?,
    _ segmentSums: UnsafeMutablePointer<Double>?
) -> segloss_status {
    status { () throws(SegLossError) in
        guard let pred, let target, let loss else { throw .nullPointer }
        let definition = try generalLoss(options, shape, hasMask: mask != nil)
        let inputs = TensorInputs(shape: definition.shape, pred: pred, target: target, mask: mask)
        loss.pointee = try definition.forwardCall(inputs, scores: segmentScores, sums: segmentSums)
    }
}

@_cdecl("segloss_backward")
public func segloss_backward(
    _ options: UnsafePointer<segloss_options>?, _ shape: UnsafePointer<segloss_shape>?,
    _ pred: UnsafeRawPointer?, _ target: UnsafeRawPointer?, _ mask: UnsafePointer<UInt8>?,
    _ gradLoss: Double, _ gradPred: UnsafeMutableRawPointer?
) -> segloss_status {
    status { () throws(SegLossError) in
        guard let pred, let target, let gradPred else { throw .nullPointer }
        let definition = try generalLoss(options, shape, hasMask: mask != nil)
        let inputs = TensorInputs(shape: definition.shape, pred: pred, target: target, mask: mask)
        try definition.backwardCall(inputs, gradLoss: gradLoss, into: gradPred)
    }
}

@_cdecl("segloss_forward_backward")
public func segloss_forward_backward(
    _ options: UnsafePointer<segloss_options>?, _ shape: UnsafePointer<segloss_shape>?,
    _ pred: UnsafeRawPointer?, _ target: UnsafeRawPointer?, _ mask: UnsafePointer<UInt8>?,
    _ loss: UnsafeMutablePointer<Double>?, _ gradPred: UnsafeMutableRawPointer?,
    _ segmentScores: UnsafeMutablePointer<Double>?, _ segmentSums: UnsafeMutablePointer<Double>?
) -> segloss_status {
    status { () throws(SegLossError) in
        guard let pred, let target, let loss, let gradPred else { throw .nullPointer }
        let definition = try generalLoss(options, shape, hasMask: mask != nil)
        let inputs = TensorInputs(shape: definition.shape, pred: pred, target: target, mask: mask)
        loss.pointee = try definition.forwardBackwardCall(
            inputs, into: gradPred, scores: segmentScores, sums: segmentSums)
    }
}

// MARK: - Split phase

@_cdecl("segloss_sums_length")
public func segloss_sums_length(
    _ options: UnsafePointer<segloss_options>?, _ shape: UnsafePointer<segloss_shape>?,
    _ slice: UnsafePointer<segloss_slice>?, _ length: UnsafeMutablePointer<Int>?
) -> segloss_status {
    status { () throws(SegLossError) in
        guard let length else { throw .nullPointer }
        length.pointee = try generalLoss(options, shape, hasMask: false, slice: slice).sumsLength()
    }
}

@_cdecl("segloss_compute_sums")
public func segloss_compute_sums(
    _ options: UnsafePointer<segloss_options>?, _ shape: UnsafePointer<segloss_shape>?,
    _ slice: UnsafePointer<segloss_slice>?, _ pred: UnsafeRawPointer?, _ target: UnsafeRawPointer?,
    _ mask: UnsafePointer<UInt8>?, _ sums: UnsafeMutablePointer<Double>?, _ sumsLength: Int
) -> segloss_status {
    status { () throws(SegLossError) in
        guard let pred, let target, let sums else { throw .nullPointer }
        let definition = try generalLoss(options, shape, hasMask: mask != nil, slice: slice)
        try definition.checkSumsLength(sumsLength)
        let inputs = TensorInputs(shape: definition.shape, pred: pred, target: target, mask: mask)
        try definition.sumsCall(inputs, into: sums)
    }
}

@_cdecl("segloss_loss_from_sums")
public func segloss_loss_from_sums(
    _ options: UnsafePointer<segloss_options>?, _ shape: UnsafePointer<segloss_shape>?,
    _ slice: UnsafePointer<segloss_slice>?, _ sums: UnsafePointer<Double>?, _ sumsLength: Int,
    _ loss: UnsafeMutablePointer<Double>?, _ segmentScores: UnsafeMutablePointer<Double>?
) -> segloss_status {
    status { () throws(SegLossError) in
        guard let sums, let loss else { throw .nullPointer }
        let definition = try generalLoss(options, shape, hasMask: false, slice: slice)
        try definition.checkSumsLength(sumsLength)
        loss.pointee = try definition.lossFromSumsCall(sums, scores: segmentScores)
    }
}

@_cdecl("segloss_backward_from_sums")
public func segloss_backward_from_sums(
    _ options: UnsafePointer<segloss_options>?, _ shape: UnsafePointer<segloss_shape>?,
    _ slice: UnsafePointer<segloss_slice>?, _ pred: UnsafeRawPointer?, _ target: UnsafeRawPointer?,
    _ mask: UnsafePointer<UInt8>?, _ sums: UnsafePointer<Double>?, _ sumsLength: Int,
    _ gradLoss: Double, _ gradPred: UnsafeMutableRawPointer?
) -> segloss_status {
    status { () throws(SegLossError) in
        guard let pred, let target, let sums, let gradPred else { throw .nullPointer }
        let definition = try generalLoss(options, shape, hasMask: mask != nil, slice: slice)
        try definition.checkSumsLength(sumsLength)
        let inputs = TensorInputs(shape: definition.shape, pred: pred, target: target, mask: mask)
        try definition.backwardFromSumsCall(inputs, sums: sums, gradLoss: gradLoss, into: gradPred)
    }
}

// MARK: - Reading the structs

/// The loss the C structs describe, checked in the header's order: NULL pointers, the
/// options' own fields, the shape's types, its dimensions, the per-channel arrays, then the
/// slice.
private func generalLoss(
    _ options: UnsafePointer<segloss_options>?, _ shape: UnsafePointer<segloss_shape>?, hasMask: Bool,
    slice: UnsafePointer<segloss_slice>? = nil
) throws(SegLossError) -> GeneralLoss {
    guard let options, let shape else { throw .nullPointer }
    let c = try checkedOptions(options)
    var lossOptions = try scalarOptions(c)
    try lossOptions.validate(channels: nil)
    let s = shape.pointee
    guard let predType = ElementType(rawValue: s.pred_dtype), predType != .uint8,
          let targetType = ElementType(rawValue: s.target_dtype),
          !hasMask || s.mask_layout == SEGLOSS_MASK_PER_ELEMENT.rawValue
            || s.mask_layout == SEGLOSS_MASK_PER_PIXEL.rawValue
    else { throw .invalidShape }
    // A rank of a split batch may hold no samples.
    let tensorShape = try TensorShape(
        batch: s.batch, channels: s.channels, spatial: s.spatial, predType: predType,
        targetType: targetType, maskPerPixel: hasMask && s.mask_layout == SEGLOSS_MASK_PER_PIXEL.rawValue,
        allowsEmptyBatch: slice != nil)
    if let values = c.pos_weight {
        lossOptions.posWeight = Array(UnsafeBufferPointer(start: values, count: tensorShape.channels))
    }
    if let values = c.channel_weights {
        lossOptions.channelWeights = Array(UnsafeBufferPointer(start: values, count: tensorShape.channels))
    }
    // size_t arrives as Int: values above Int.max are negative, which GeneralLoss rejects.
    let sliceValues = slice.map { (sampleOffset: $0.pointee.sample_offset, totalBatch: $0.pointee.total_batch) }
    return try GeneralLoss(options: lossOptions, shape: tensorShape, slice: sliceValues)
}

/// The caller's options struct, once its size is known: a struct from a newer header (larger)
/// is accepted when every byte this library does not know is zero.
private func checkedOptions(_ options: UnsafePointer<segloss_options>) throws(SegLossError) -> segloss_options {
    let known = MemoryLayout<segloss_options>.size
    let size = UnsafeRawPointer(options).loadUnaligned(as: Int.self)
    guard size >= known, size <= 4096 else { throw .invalidOptions }
    let bytes = UnsafeRawPointer(options)
    for offset in known..<size where bytes.load(fromByteOffset: offset, as: UInt8.self) != 0 {
        throw .invalidOptions
    }
    return options.pointee
}

/// The enum and flag fields; out-of-domain values throw `.invalidOptions`.
private func scalarOptions(_ c: segloss_options) throws(SegLossError) -> LossOptions {
    func flag(_ value: Int32) throws(SegLossError) -> Bool {
        guard value == 0 || value == 1 else { throw .invalidOptions }
        return value == 1
    }
    guard let region = RegionTerm(rawValue: c.region_term),
          let segments = Segmentation(rawValue: c.segments),
          let emptyPolicy = EmptyPolicy(rawValue: c.empty_policy),
          let reduction = Reduction(rawValue: c.reduction)
    else { throw .invalidOptions }
    var o = LossOptions()
    o.logits = try flag(c.input)
    o.bce = try flag(c.element_term)
    o.region = region
    o.segments = segments
    o.emptyPolicy = emptyPolicy
    o.reduction = reduction
    o.squared = try flag(c.squared)
    o.logLoss = try flag(c.log_loss)
    o.elementWeight = c.element_weight
    o.regionWeight = c.region_weight
    o.smoothNr = c.smooth_nr
    o.smoothDr = c.smooth_dr
    o.alpha = c.alpha
    o.beta = c.beta
    o.gamma = c.gamma
    o.denominatorMin = c.denominator_min
    o.logMin = c.log_min
    o.labelSmoothing = c.label_smoothing
    return o
}
