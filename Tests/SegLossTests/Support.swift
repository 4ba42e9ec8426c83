// Support — the shared test vectors (Tests/vectors/vectors.json), their generated inputs,
// and one uniform way to call the seven loss entry points of the C API.
import CSegLoss
import Foundation
import SegLoss
import Testing

// MARK: - Inputs

/// xorshift32, exactly as Tests/vectors/generate.py documents it.
struct XorShift32 {
    var state: UInt32

    init(seed: UInt32) {
        precondition(seed != 0)
        state = seed
    }

    mutating func next() -> UInt32 {
        state ^= state &<< 13
        state ^= state &>> 17
        state ^= state &<< 5
        return state
    }

    /// (next() >> 8) * 2^-24: an exact float32 in [0, 1).
    mutating func unit() -> Float {
        Float(next() &>> 8) * 0x1p-24
    }
}

enum TargetKind: String, Sendable {
    case hard, soft
}

/// The inputs of a generated case: for each i, p_i = u(), then t_i = (u() < 0.3 ? 1 : 0)
/// (compared in float64) for hard targets, or t_i = u() for soft ones.
func generatedInputs(seed: UInt32, count: Int, target kind: TargetKind) -> (pred: [Float], target: [Float]) {
    var rng = XorShift32(seed: seed)
    var pred = [Float](repeating: 0, count: count)
    var target = [Float](repeating: 0, count: count)
    var i = 0
    while i < count {
        pred[i] = rng.unit()
        let u = rng.unit()
        switch kind {
        case .hard: target[i] = Double(u) < 0.3 ? 1 : 0
        case .soft: target[i] = u
        }
        i += 1
    }
    return (pred, target)
}

// MARK: - vectors.json

struct VectorCase: Sendable {
    var name: String
    var count: Int
    var pred: [Float]
    var target: [Float]
    var smooth: Float
    var weightBCE: Float
    var weightDice: Float
    var gradLoss: Float
    var diceLoss: Double
    var bceLoss: Double
    var bceDiceLoss: Double
    var gradIndex: [Int]
    var diceGrad: [Double]
    var bceGrad: [Double]
    var bceDiceGrad: [Double]
}

struct VectorFileError: Error, CustomStringConvertible {
    var description: String
}

enum Vectors {
    /// Tests/vectors/vectors.json, found from this source file's path.
    static let url = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()   // SegLossTests
        .deletingLastPathComponent()   // Tests
        .appendingPathComponent("vectors")
        .appendingPathComponent("vectors.json")

    /// Every case with its inputs materialized (the generated ones too), loaded once.
    static let loaded: Result<[VectorCase], VectorFileError> = {
        do {
            return .success(try load())
        } catch let error as VectorFileError {
            return .failure(error)
        } catch {
            return .failure(VectorFileError(description: "\(url.path): \(error)"))
        }
    }()

    static var cases: [VectorCase] { (try? loaded.get()) ?? [] }
    static var names: [String] { cases.map(\.name) }

    static func named(_ name: String) throws -> VectorCase {
        guard let found = try loaded.get().first(where: { $0.name == name }) else {
            throw VectorFileError(description: "no case named \(name) in vectors.json")
        }
        return found
    }

    private static func load() throws -> [VectorCase] {
        let data = try Data(contentsOf: url)
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw VectorFileError(description: "vectors.json: the top level is not an object")
        }
        guard (root["format"] as? NSNumber)?.intValue == 1 else {
            throw VectorFileError(description: "vectors.json: format is not 1")
        }
        guard let rawCases = root["cases"] as? [Any] else {
            throw VectorFileError(description: "vectors.json: no cases array")
        }
        return try rawCases.map { raw in
            guard let object = raw as? [String: Any] else {
                throw VectorFileError(description: "vectors.json: a case is not an object")
            }
            return try parseCase(object)
        }
    }

    private static func parseCase(_ c: [String: Any]) throws -> VectorCase {
        let name = (c["name"] as? String) ?? "?"
        func fail(_ what: String) -> VectorFileError {
            VectorFileError(description: "vectors.json case \(name): \(what)")
        }
        func number(_ key: String) throws -> Double {
            guard let n = c[key] as? NSNumber else { throw fail("\(key) is not a number") }
            return n.doubleValue
        }
        func numbers(_ key: String) throws -> [Double] {
            guard let array = c[key] as? [Any] else { throw fail("\(key) is not an array") }
            return try array.map { element in
                guard let n = element as? NSNumber else { throw fail("\(key) holds a non-number") }
                return n.doubleValue
            }
        }
        /// A value the generator wrote as an exact float32. (swift-corelibs-foundation's
        /// JSONSerialization does not parse doubles correctly rounded: "0.8999999761581421"
        /// comes back a few double ulps off. Rounding to the nearest float32 recovers the
        /// written value, which the 1e-12 check confirms is a float32 and not a typo.)
        func float32(_ value: Double, _ key: String) throws -> Float {
            let f = Float(value)
            guard abs(Double(f) - value) <= 1e-12 * abs(value) else {
                throw fail("\(key) value \(value) is not a float32")
            }
            return f
        }
        let count = Int(try number("count"))
        var pred: [Float], target: [Float]
        if let generated = c["generated"] as? [String: Any] {
            guard let seed = (generated["seed"] as? NSNumber)?.uint32Value,
                  let kind = (generated["target"] as? String).flatMap(TargetKind.init(rawValue:)) else {
                throw fail("bad generated spec")
            }
            (pred, target) = generatedInputs(seed: seed, count: count, target: kind)
        } else {
            pred = try numbers("pred").map { try float32($0, "pred") }
            target = try numbers("target").map { try float32($0, "target") }
        }
        guard pred.count == count, target.count == count else { throw fail("count mismatch") }
        let gradIndex = try numbers("grad_index").map { Int($0) }
        let result = VectorCase(
            name: name, count: count, pred: pred, target: target,
            smooth: try float32(number("smooth"), "smooth"),
            weightBCE: try float32(number("weight_bce"), "weight_bce"),
            weightDice: try float32(number("weight_dice"), "weight_dice"),
            gradLoss: try float32(number("grad_loss"), "grad_loss"),
            diceLoss: try number("dice_loss"), bceLoss: try number("bce_loss"),
            bceDiceLoss: try number("bce_dice_loss"),
            gradIndex: gradIndex,
            diceGrad: try numbers("dice_grad"), bceGrad: try numbers("bce_grad"),
            bceDiceGrad: try numbers("bce_dice_grad"))
        guard gradIndex.allSatisfy({ 0 <= $0 && $0 < count }),
              result.diceGrad.count == gradIndex.count, result.bceGrad.count == gradIndex.count,
              result.bceDiceGrad.count == gradIndex.count else {
            throw fail("grad_index and gradients disagree")
        }
        return result
    }
}

// MARK: - Calling the seven loss functions uniformly

/// Every loss entry point of segloss.h, so that error paths can be checked for all of them.
enum LossFunction: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case diceForward = "segloss_dice_forward"
    case diceBackward = "segloss_dice_backward"
    case bceForward = "segloss_bce_forward"
    case bceBackward = "segloss_bce_backward"
    case bceDiceForward = "segloss_bce_dice_forward"
    case bceDiceBackward = "segloss_bce_dice_backward"
    case bceDiceForwardBackward = "segloss_bce_dice_forward_backward"

    var testDescription: String { rawValue }

    var writesLoss: Bool { [.diceForward, .bceForward, .bceDiceForward, .bceDiceForwardBackward].contains(self) }
    var writesGradient: Bool { [.diceBackward, .bceBackward, .bceDiceBackward, .bceDiceForwardBackward].contains(self) }
    var takesSmooth: Bool { [.diceForward, .diceBackward, .bceDiceForward, .bceDiceBackward, .bceDiceForwardBackward].contains(self) }
    var takesWeights: Bool { [.bceDiceForward, .bceDiceBackward, .bceDiceForwardBackward].contains(self) }
    var takesGradLoss: Bool { [.diceBackward, .bceBackward, .bceDiceBackward].contains(self) }

    /// Calls the function; parameters it does not take are ignored.
    func call(
        _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
        weightBCE: Float = 0.5, weightDice: Float = 0.5, smooth: Float = 1, gradLoss: Float = 1,
        loss: UnsafeMutablePointer<Float>?, grad: UnsafeMutablePointer<Float>?
    ) -> segloss_status {
        switch self {
        case .diceForward:
            return SegLoss.segloss_dice_forward(pred, target, count, smooth, loss)
        case .diceBackward:
            return SegLoss.segloss_dice_backward(pred, target, count, smooth, gradLoss, grad)
        case .bceForward:
            return SegLoss.segloss_bce_forward(pred, target, count, loss)
        case .bceBackward:
            return SegLoss.segloss_bce_backward(pred, target, count, gradLoss, grad)
        case .bceDiceForward:
            return SegLoss.segloss_bce_dice_forward(pred, target, count, weightBCE, weightDice, smooth, loss)
        case .bceDiceBackward:
            return SegLoss.segloss_bce_dice_backward(
                pred, target, count, weightBCE, weightDice, smooth, gradLoss, grad)
        case .bceDiceForwardBackward:
            return SegLoss.segloss_bce_dice_forward_backward(
                pred, target, count, weightBCE, weightDice, smooth, loss, grad)
        }
    }
}

/// The value output buffers are filled with before a call that must not write them.
let sentinel = Float(bitPattern: 0xC49A_5A5A)  // -1234.8..., an unmistakable finite value

/// Result of one call on arrays: the status, the loss output and the gradient output (both
/// pre-filled with `sentinel`, so an untouched output still holds it).
struct CallResult {
    var status: segloss_status
    var loss: Float
    var grad: [Float]

    var lossUntouched: Bool { loss.bitPattern == sentinel.bitPattern }
    var gradUntouched: Bool { grad.allSatisfy { $0.bitPattern == sentinel.bitPattern } }
}

extension LossFunction {
    /// Calls with array inputs and sentinel-filled outputs (count defaults to pred.count).
    func call(
        pred: [Float], target: [Float], count: Int? = nil,
        weightBCE: Float = 0.5, weightDice: Float = 0.5, smooth: Float = 1, gradLoss: Float = 1
    ) -> CallResult {
        var loss = sentinel
        var grad = [Float](repeating: sentinel, count: pred.count)
        let status = pred.withUnsafeBufferPointer { p in
            target.withUnsafeBufferPointer { t in
                grad.withUnsafeMutableBufferPointer { g in
                    call(p.baseAddress, t.baseAddress, count ?? pred.count,
                         weightBCE: weightBCE, weightDice: weightDice, smooth: smooth, gradLoss: gradLoss,
                         loss: &loss, grad: g.baseAddress)
                }
            }
        }
        return CallResult(status: status, loss: loss, grad: grad)
    }
}

func statusName(_ status: segloss_status) -> String {
    switch status {
    case SEGLOSS_OK: return "SEGLOSS_OK"
    case SEGLOSS_ERROR_NULL_POINTER: return "SEGLOSS_ERROR_NULL_POINTER"
    case SEGLOSS_ERROR_EMPTY_INPUT: return "SEGLOSS_ERROR_EMPTY_INPUT"
    case SEGLOSS_ERROR_INVALID_ARGUMENT: return "SEGLOSS_ERROR_INVALID_ARGUMENT"
    case SEGLOSS_ERROR_PRED_OUT_OF_RANGE: return "SEGLOSS_ERROR_PRED_OUT_OF_RANGE"
    case SEGLOSS_ERROR_TARGET_OUT_OF_RANGE: return "SEGLOSS_ERROR_TARGET_OUT_OF_RANGE"
    case SEGLOSS_ERROR_COUNT_TOO_LARGE: return "SEGLOSS_ERROR_COUNT_TOO_LARGE"
    case SEGLOSS_ERROR_INVALID_OPTIONS: return "SEGLOSS_ERROR_INVALID_OPTIONS"
    case SEGLOSS_ERROR_INVALID_SHAPE: return "SEGLOSS_ERROR_INVALID_SHAPE"
    default: return "segloss_status(\(status.rawValue))"
    }
}

// MARK: - Tolerances

/// Relative error |got - expected| / |expected| (0 when both are 0; infinite when only the
/// expected value is 0).
func relativeError(_ got: Double, _ expected: Double) -> Double {
    if got == expected { return 0 }
    return abs(got - expected) / abs(expected)
}

/// Sums of the exact float32 inputs in double (the products p*t of two float32 are exact in
/// double, so these carry only the rounding of the additions).
struct InputSums {
    var intersection = 0.0, predSum = 0.0, targetSum = 0.0

    init(pred: [Float], target: [Float]) {
        var i = 0
        while i < pred.count {
            let p = Double(pred[i]), t = Double(target[i])
            intersection += p * t
            predSum += p
            targetSum += t
            i += 1
        }
    }
}
