// GradientKernel — the per-chunk gradient pass (DESIGN §2, step 3).

/// g_i = targetScale·t_i + offset + elementScale·(p_i - t_i) / max(p_i(1 - p_i), 1e-12)
///
/// The first two terms are a region term's (Dice's) derivative, the last is the BCE
/// term's. `grad` may be `pred` itself.
///
/// With `withElementTerm`, it also returns the sum of the BCE terms of its elements, summed
/// exactly as the statistics kernel sums them (same bits). A fused forward-backward call
/// takes the BCE sum from here rather than from its statistics pass: the logs then run
/// while this pass, which moves more memory, waits for it, instead of in a pass of their own.
/// `hardTargets` says that every target is 0 or 1 (the statistics pass found no other): the
/// terms then take the one-log form without looking for soft targets.
@inline(never)
public func gradientKernel(
    _ pred: UnsafePointer<Float>, _ target: UnsafePointer<Float>, _ count: Int,
    _ targetScale: Float, _ offset: Float, _ elementScale: Float,
    _ grad: UnsafeMutablePointer<Float>, _ withElementTerm: Bool, _ hardTargets: Bool
) -> Double {
    guard withElementTerm else {
        gradientLoop(pred, target, 0..<count, targetScale, offset, elementScale, grad)
        return 0
    }
    var elementTerms = ElementTerms()
    var sum = ElementSum()
    forEachBlock(pred, target, count) { p, t, range, elementBuffer in
        // The terms first: an in-place call overwrites pred below.
        if hardTargets {
            _ = hardElementTerms(p, t, elementBuffer, checking: false)
        } else {
            elementTerms.compute(p, t, into: elementBuffer)
        }
        sum.add(elementBuffer)
        gradientLoop(pred, target, range, targetScale, offset, elementScale, grad)
    }
    return sum.total
}

/// The gradient of the elements in `range`. The in-place and out-of-place cases are separate
/// loops: LLVM vectorizes an out-of-place loop behind a run-time overlap check, which an
/// in-place call would fail (falling back to scalar code), while the in-place loop reads and
/// writes only index i at step i, which needs no check.
@inline(__always)
private func gradientLoop(
    _ pred: UnsafePointer<Float>, _ target: UnsafePointer<Float>, _ range: Range<Int>,
    _ targetScale: Float, _ offset: Float, _ elementScale: Float,
    _ grad: UnsafeMutablePointer<Float>
) {
    if UnsafePointer(grad) == pred {
        for i in range {
            grad[i] = elementGradient(grad[i], target[i], targetScale, offset, elementScale)
        }
    } else {
        for i in range {
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
