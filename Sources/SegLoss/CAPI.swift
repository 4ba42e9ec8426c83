// CAPI — the @_cdecl functions of include/segloss.h's flat API: check arguments, call the
// core, map the outcome to a segloss_status. No math here. Each is a thin wrapper over the
// general API's calls with the seed's options (which take the flat passes).
import CSegLoss
import SegLossCore

// MARK: - Version

@_cdecl("segloss_version_number")
public func segloss_version_number() -> CUnsignedInt {
    CUnsignedInt(SEGLOSS_VERSION_MAJOR * 10000 + SEGLOSS_VERSION_MINOR * 100 + SEGLOSS_VERSION_PATCH)
}

@_cdecl("segloss_version_string")
public func segloss_version_string() -> UnsafePointer<CChar>? {
    StaticCStrings.version
}

// MARK: - Status

@_cdecl("segloss_status_string")
public func segloss_status_string(_ status: segloss_status) -> UnsafePointer<CChar>? {
    StaticCStrings.status(status)
}

// MARK: - Threads and kernels

@_cdecl("segloss_set_num_threads")
public func segloss_set_num_threads(_ n: CInt) {
    WorkerThreads.set(Int(n))
}

@_cdecl("segloss_get_num_threads")
public func segloss_get_num_threads() -> CInt {
    CInt(WorkerThreads.count)
}

@_cdecl("segloss_kernel_name")
public func segloss_kernel_name() -> UnsafePointer<CChar>? {
    StaticCStrings.kernelName
}

// MARK: - Dice

@_cdecl("segloss_dice_forward")
public func segloss_dice_forward(
    _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
    _ smooth: Float, _ loss: UnsafeMutablePointer<Float>?
) -> segloss_status {
    forward(pred, target, count, loss) { () throws(SegLossError) in try .dice(smooth: smooth) }
}

@_cdecl("segloss_dice_backward")
public func segloss_dice_backward(
    _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
    _ smooth: Float, _ gradLoss: Float, _ gradPred: UnsafeMutablePointer<Float>?
) -> segloss_status {
    backward(pred, target, count, gradLoss, gradPred) { () throws(SegLossError) in try .dice(smooth: smooth) }
}

// MARK: - BCE

@_cdecl("segloss_bce_forward")
public func segloss_bce_forward(
    _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
    _ loss: UnsafeMutablePointer<Float>?
) -> segloss_status {
    forward(pred, target, count, loss) { .bce }
}

@_cdecl("segloss_bce_backward")
public func segloss_bce_backward(
    _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
    _ gradLoss: Float, _ gradPred: UnsafeMutablePointer<Float>?
) -> segloss_status {
    backward(pred, target, count, gradLoss, gradPred) { .bce }
}

// MARK: - BCE + Dice

@_cdecl("segloss_bce_dice_forward")
public func segloss_bce_dice_forward(
    _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
    _ weightBCE: Float, _ weightDice: Float, _ smooth: Float, _ loss: UnsafeMutablePointer<Float>?
) -> segloss_status {
    forward(pred, target, count, loss) { () throws(SegLossError) in
        try BCEDiceLoss(weightBCE: weightBCE, weightDice: weightDice, smooth: smooth)
    }
}

@_cdecl("segloss_bce_dice_backward")
public func segloss_bce_dice_backward(
    _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
    _ weightBCE: Float, _ weightDice: Float, _ smooth: Float, _ gradLoss: Float,
    _ gradPred: UnsafeMutablePointer<Float>?
) -> segloss_status {
    backward(pred, target, count, gradLoss, gradPred) { () throws(SegLossError) in
        try BCEDiceLoss(weightBCE: weightBCE, weightDice: weightDice, smooth: smooth)
    }
}

@_cdecl("segloss_bce_dice_forward_backward")
public func segloss_bce_dice_forward_backward(
    _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
    _ weightBCE: Float, _ weightDice: Float, _ smooth: Float,
    _ loss: UnsafeMutablePointer<Float>?, _ gradPred: UnsafeMutablePointer<Float>?
) -> segloss_status {
    status { () throws(SegLossError) in
        guard let loss, let gradPred else { throw .nullPointer }
        let inputs = try flatInputs(pred, target, count)
        let definition = try BCEDiceLoss(weightBCE: weightBCE, weightDice: weightDice, smooth: smooth)
        loss.pointee = Float(try definition.general(count: count).forwardBackwardCall(inputs, into: gradPred))
    }
}

// MARK: - Plumbing shared by the entry points

/// Runs `body` and maps its outcome to a status.
func status(_ body: () throws(SegLossError) -> Void) -> segloss_status {
    do {
        try body()
        return SEGLOSS_OK
    } catch {
        return segloss_status(rawValue: UInt32(bitPattern: error.rawValue))
    }
}

/// The C (pointer, count) pairs as the general API's inputs (one sample, one channel, `count`
/// elements), after the checks every entry point makes in this order: NULL pointers, then
/// count 0, then a count no buffer can have.
private func flatInputs(
    _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int
) throws(SegLossError) -> TensorInputs {
    guard let pred, let target else { throw .nullPointer }
    guard count != 0 else { throw .emptyInput }
    // size_t arrives as Int: a count above Int.max is negative here.
    guard count > 0, count <= Int.max / MemoryLayout<Float>.stride else { throw .countTooLarge }
    let shape = try TensorShape(batch: 1, channels: 1, spatial: count, predType: .float32, targetType: .float32)
    return TensorInputs(shape: shape, pred: pred, target: target, mask: nil)
}

private func forward(
    _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
    _ loss: UnsafeMutablePointer<Float>?, _ definition: () throws(SegLossError) -> BCEDiceLoss
) -> segloss_status {
    status { () throws(SegLossError) in
        guard let loss else { throw .nullPointer }
        let inputs = try flatInputs(pred, target, count)
        loss.pointee = Float(try definition().general(count: count).forwardCall(inputs))
    }
}

private func backward(
    _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
    _ gradLoss: Float, _ gradPred: UnsafeMutablePointer<Float>?,
    _ definition: () throws(SegLossError) -> BCEDiceLoss
) -> segloss_status {
    status { () throws(SegLossError) in
        guard let gradPred else { throw .nullPointer }
        let inputs = try flatInputs(pred, target, count)
        guard gradLoss.isFinite else { throw .invalidArgument }
        try definition().general(count: count).backwardCall(inputs, gradLoss: Double(gradLoss), into: gradPred)
    }
}
