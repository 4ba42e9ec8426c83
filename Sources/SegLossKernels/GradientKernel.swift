// GradientKernel — the per-chunk gradient pass (DESIGN §2, step 3).

/// g_i = targetScale·t_i + offset + elementScale·(p_i - t_i) / max(p_i(1 - p_i), 1e-12)
///
/// The first two terms are a region term's (Dice's) derivative, the last is the BCE
/// term's. `grad` may be `pred` itself. The two cases are separate loops: LLVM vectorizes
/// an out-of-place loop behind a run-time overlap check, which an in-place call would fail
/// (falling back to scalar code), while the in-place loop reads and writes only index i at
/// step i, which needs no check.
@inline(never)
public func gradientKernel(
    _ pred: UnsafePointer<Float>, _ target: UnsafePointer<Float>, _ count: Int,
    _ targetScale: Float, _ offset: Float, _ elementScale: Float,
    _ grad: UnsafeMutablePointer<Float>
) {
    if UnsafePointer(grad) == pred {
        for i in 0..<count {
            grad[i] = elementGradient(grad[i], target[i], targetScale, offset, elementScale)
        }
    } else {
        for i in 0..<count {
            grad[i] = elementGradient(pred[i], target[i], targetScale, offset, elementScale)
        }
    }
}

@inline(__always)
private func elementGradient(
    _ p: Float, _ t: Float, _ targetScale: Float, _ offset: Float, _ elementScale: Float
) -> Float {
    let variance = p * (1 - p)
    let bce = (p - t) / (variance > 1e-12 ? variance : 1e-12)
    return multiplyAdd(elementScale, bce, multiplyAdd(targetScale, t, offset))
}
