// GeneralVectorTests — the shared vectors of the general API (Tests/vectors/general_vectors.json,
// float64 results of Tests/python/general_reference.py) through the C functions: every valid
// case's loss, scores, sums and gradient, every invalid option set's and input's status, with
// the outputs untouched on error. The Python tests check the same file through the binding.
import CSegLoss
import Foundation
import SegLoss
import Testing

/// One case of the file, as JSON values.
struct GeneralVector: Sendable, CustomTestStringConvertible {
    let name: String
    let object: [String: any Sendable]
    var testDescription: String { name }
}

enum GeneralVectors {
    static let url = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("vectors").appendingPathComponent("general_vectors.json")

    nonisolated(unsafe) static let root: [String: Any] = {
        guard let data = try? Data(contentsOf: url),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [:] }
        return object
    }()

    static func list(_ key: String) -> [GeneralVector] {
        ((root[key] as? [Any]) ?? []).compactMap { raw in
            guard let object = raw as? [String: Any] else { return nil }
            return GeneralVector(
                name: (object["name"] as? String) ?? "?",
                object: object.mapValues { JSONValue($0) })
        }
    }

    static let cases = list("cases")
    static let invalid = list("invalid")
    static let invalidInputs = list("invalid_inputs")
}

/// A JSON value that can cross into parameterized tests.
struct JSONValue: @unchecked Sendable {
    let value: Any
    init(_ value: Any) { self.value = value }
}

extension GeneralVector {
    func value(_ key: String) -> Any? { (object[key] as? JSONValue)?.value }

    static func number(_ any: Any?) -> Double? {
        if let n = any as? NSNumber { return n.doubleValue }
        switch any as? String {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: return nil
        }
    }

    func numbers(_ key: String) -> [Double]? {
        (value(key) as? [Any])?.map { Self.number($0) ?? .nan }
    }

    var options: (segloss_options, posWeight: [Double]?, channelWeights: [Double]?) {
        var o = segloss_options()
        _ = SegLoss.segloss_options_init(&o)
        let d = value("options") as? [String: Any] ?? [:]
        func int(_ key: String) -> Int32 { Int32(truncatingIfNeeded: (d[key] as? NSNumber)?.intValue ?? 0) }
        func double(_ key: String) -> Double { Self.number(d[key]) ?? .nan }
        o.input = int("input")
        o.element_term = int("element_term")
        o.region_term = int("region_term")
        o.segments = int("segments")
        o.empty_policy = int("empty_policy")
        o.reduction = int("reduction")
        o.squared = int("squared")
        o.log_loss = int("log_loss")
        o.element_weight = double("element_weight")
        o.region_weight = double("region_weight")
        o.smooth_nr = double("smooth_nr")
        o.smooth_dr = double("smooth_dr")
        o.alpha = double("alpha")
        o.beta = double("beta")
        o.gamma = double("gamma")
        o.denominator_min = double("denominator_min")
        o.log_min = double("log_min")
        o.label_smoothing = double("label_smoothing")
        let posWeight = (d["pos_weight"] as? [Any])?.map { Self.number($0) ?? .nan }
        let channelWeights = (d["channel_weights"] as? [Any])?.map { Self.number($0) ?? .nan }
        return (o, posWeight, channelWeights)
    }

    var shape: segloss_shape {
        let d = value("shape") as? [String: Any] ?? [:]
        func int(_ key: String) -> Int { (d[key] as? NSNumber)?.intValue ?? 0 }
        return segloss_shape(
            batch: int("batch"), channels: int("channels"), spatial: int("spatial"),
            pred_dtype: Int32(int("pred_dtype")), target_dtype: Int32(int("target_dtype")),
            mask_layout: Int32(int("mask_layout")))
    }

    /// `values` as the bytes of C dtype `dtype`.
    static func bytes(_ values: [Double], dtype: Int32) -> [UInt8] {
        var out = [UInt8]()
        for v in values {
            switch dtype {
            case 0: withUnsafeBytes(of: Float(v)) { out.append(contentsOf: $0) }
            case 1: withUnsafeBytes(of: v) { out.append(contentsOf: $0) }
            default: out.append(UInt8(clamping: Int(v.isFinite ? v : 0)))
            }
        }
        return out
    }

    var maskBytes: [UInt8]? { (value("mask") as? [Any])?.map { UInt8((Self.number($0) ?? 0)) } }
}

/// The result of one call of the three entry points, every output as it was left.
struct GeneralCall {
    var status: segloss_status
    var loss: Double
    var scores: [Double]
    var sums: [Double]
    var grad: [Double]
}

enum GeneralEntry: CaseIterable { case forward, backward, forwardBackward }

/// Calls `entry` on `vector`'s inputs (`pred`/`target` override the file's), outputs
/// pre-filled with a sentinel.
func callGeneral(
    _ vector: GeneralVector, _ entry: GeneralEntry, mask useMask: Bool? = nil, segments: Int = 64
) -> GeneralCall {
    let sentinel = -12345.0
    var (options, posWeight, channelWeights) = vector.options
    var shape = vector.shape
    let count = shape.batch &* shape.channels &* shape.spatial
    let small = count > 0 && count < 1 << 20 ? count : 4
    let predValues = vector.numbers("pred") ?? [Double](repeating: 0.5, count: small)
    let targetValues = vector.numbers("target") ?? [Double](repeating: 0, count: small)
    let pred = GeneralVector.bytes(predValues, dtype: shape.pred_dtype == 1 ? 1 : 0)
    let target = GeneralVector.bytes(targetValues, dtype: (0...2).contains(shape.target_dtype) ? shape.target_dtype : 0)
    var mask = vector.maskBytes
    if mask == nil, useMask == true { mask = [UInt8](repeating: 1, count: max(small, 1)) }
    let gradSize = shape.pred_dtype == 1 ? 8 : 4
    var grad = [UInt8](repeating: 0xEE, count: max(predValues.count, 1) * gradSize)
    let gradBefore = grad
    var loss = sentinel
    var scores = [Double](repeating: sentinel, count: segments)
    var sums = [Double](repeating: sentinel, count: segments * 6)
    let status: segloss_status = withOptionalArray(posWeight) { pw in
        withOptionalArray(channelWeights) { cw in
            options.pos_weight = pw
            options.channel_weights = cw
            return pred.withUnsafeBytes { p in
                target.withUnsafeBytes { t in
                    withOptionalArray(mask) { m in
                        grad.withUnsafeMutableBytes { g in
                            switch entry {
                            case .forward:
                                return SegLoss.segloss_forward(&options, &shape, p.baseAddress, t.baseAddress, m, &loss, &scores, &sums)
                            case .backward:
                                return SegLoss.segloss_backward(&options, &shape, p.baseAddress, t.baseAddress, m, 1, g.baseAddress)
                            case .forwardBackward:
                                return SegLoss.segloss_forward_backward(
                                    &options, &shape, p.baseAddress, t.baseAddress, m, &loss, g.baseAddress, &scores, &sums)
                            }
                        }
                    }
                }
            }
        }
    }
    var gradValues = [Double]()
    if grad == gradBefore {
        gradValues = [sentinel]
    } else if gradSize == 8 {
        gradValues = grad.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
    } else {
        gradValues = grad.withUnsafeBytes { $0.bindMemory(to: Float.self).map(Double.init) }
    }
    return GeneralCall(status: status, loss: loss, scores: scores, sums: sums, grad: gradValues)
}

private func withOptionalArray<T, R>(_ array: [T]?, _ body: (UnsafePointer<T>?) -> R) -> R {
    guard let array else { return body(nil) }
    return array.withUnsafeBufferPointer { body($0.baseAddress) }
}

@Suite("General API: shared vectors")
struct GeneralVectorTests {
    @Test("the vectors file is there and has cases")
    func fileLoads() {
        #expect(GeneralVectors.cases.count >= 40)
        #expect(GeneralVectors.invalid.count >= 20)
        #expect(GeneralVectors.invalidInputs.count >= 5)
    }

    @Test("loss, scores, sums (rtol 1e-6) and gradient (rtol 1e-5) against float64", arguments: GeneralVectors.cases)
    func validCase(_ v: GeneralVector) throws {
        let expectedLoss = try #require(GeneralVector.number(v.value("loss")))
        let grad = try #require(v.numbers("grad"))
        let float64 = v.shape.pred_dtype == 1
        let lossTolerance = float64 ? 1e-12 : 1e-6
        let options = (v.value("options") as? [String: Any]) ?? [:]
        let elementWeight = GeneralVector.number(options["element_weight"]) ?? 1
        for entry in GeneralEntry.allCases {
            let r = callGeneral(v, entry)
            #expect(r.status == SEGLOSS_OK, "\(entry): \(statusName(r.status))")
            guard r.status == SEGLOSS_OK else { continue }
            if entry != .backward {
                #expect(relativeError(r.loss, expectedLoss) <= lossTolerance || (r.loss.isNaN && expectedLoss.isNaN),
                        "\(entry) loss \(r.loss) vs \(expectedLoss)")
                if let scores = v.numbers("segment_scores") {
                    for (i, s) in scores.enumerated() {
                        #expect(relativeError(r.scores[i], s) <= 1e-6 || (s.isNaN && r.scores[i].isNaN) || abs(r.scores[i] - s) < 1e-12,
                                "score \(i): \(r.scores[i]) vs \(s)")
                    }
                }
                if let sums = v.value("segment_sums") as? [[Any]] {
                    for (segment, row) in sums.enumerated() {
                        for (k, raw) in row.enumerated() {
                            let expected = GeneralVector.number(raw) ?? .nan
                            // E is not computed when the element term's weight is 0.
                            if k == 4 && elementWeight == 0 { continue }
                            let got = r.sums[segment * 6 + k]
                            #expect(abs(got - expected) <= 1e-6 * abs(expected) + (float64 ? 1e-12 : 1e-6),
                                    "sum \(segment).\(k): \(got) vs \(expected)")
                        }
                    }
                }
            }
            if entry != .forward {
                let scale = grad.map { abs($0) }.max() ?? 0
                #expect(r.grad.count == grad.count, "\(entry): gradient not written")
                guard r.grad.count == grad.count else { continue }
                for i in grad.indices {
                    let tolerance = float64 ? 1e-9 * abs(grad[i]) + 1e-12 * scale
                                            : 1e-5 * abs(grad[i]) + 2e-6 * scale
                    #expect(abs(r.grad[i] - grad[i]) <= tolerance, "\(entry) grad[\(i)] \(r.grad[i]) vs \(grad[i])")
                }
            }
        }
    }

    @Test("invalid options and shapes give their status, outputs untouched", arguments: GeneralVectors.invalid)
    func invalidOptions(_ v: GeneralVector) throws {
        let want = try #require((v.value("status_value") as? NSNumber)?.uint32Value)
        for entry in GeneralEntry.allCases {
            let r = callGeneral(v, entry, mask: (v.value("mask") as? Bool) ?? false)
            #expect(r.status.rawValue == want, "\(entry): \(statusName(r.status)), want \(want)")
            guard want != 0 else { continue }  // the valid edges of each rule
            #expect(r.loss == -12345 && r.grad == [-12345], "\(entry) wrote an output")
            #expect(r.scores.allSatisfy { $0 == -12345 } && r.sums.allSatisfy { $0 == -12345 })
        }
    }

    @Test("invalid inputs give their status, outputs untouched", arguments: GeneralVectors.invalidInputs)
    func invalidInputs(_ v: GeneralVector) throws {
        let want = try #require((v.value("status_value") as? NSNumber)?.uint32Value)
        for entry in GeneralEntry.allCases {
            let r = callGeneral(v, entry)
            #expect(r.status.rawValue == want, "\(entry): \(statusName(r.status)), want \(want)")
            guard want != 0 else { continue }  // inputs next to the rule that are valid
            #expect(r.loss == -12345 && r.grad == [-12345], "\(entry) wrote an output")
        }
    }
}
