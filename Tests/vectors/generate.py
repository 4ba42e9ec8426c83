#!/usr/bin/env python3
"""Shared test vectors for segloss: inputs and float64 reference outputs.

Run ``python3 Tests/vectors/generate.py`` to rewrite ``Tests/vectors/vectors.json`` next
to this file. The output is deterministic. Only the Python standard library and numpy are
used; the library under test is never imported, so the Swift tests and the Python tests
that read vectors.json check the library against an independent reference.

Format
------
::

    {"format": 1, "generator": "Tests/vectors/generate.py", "note": "...",
     "cases": [{
        "name": str, "count": int,
        "pred": [floats] | null, "target": [floats] | null,
        "generated": null | {"seed": int, "target": "hard" | "soft"},
        "smooth": float, "weight_bce": float, "weight_dice": float, "grad_loss": float,
        "dice_loss": float, "bce_loss": float, "bce_dice_loss": float,
        "grad_index": [ints],
        "dice_grad": [floats], "bce_grad": [floats], "bce_dice_grad": [floats]}]}

Inputs are float32. Explicit ``pred``/``target`` values are written as
``repr(float(np.float32(x)))``: they parse back to exactly that float32. The scalar
parameters (smooth, weights, grad_loss) are float32 values too, written the same way,
because the C API takes them as ``float``: the reference uses exactly the float32 value a
caller passes.

Generated inputs (``"generated": {...}``, ``pred``/``target`` null) keep large cases small
on disk. They come from xorshift32 with ``state = seed`` (a nonzero uint32)::

    next():  x ^= (x << 13) mod 2^32;  x ^= x >> 17;  x ^= (x << 5) mod 2^32;  return x
    u()   =  (next() >> 8) * 2^-24          # an exact float32 in [0, 1)

    for i in 0 ..< count:
        p_i = u()
        t_i = (1.0 if u() < 0.3 else 0.0)   # "hard"; the comparison is in float64
        t_i = u()                           # "soft"

(one draw for p_i, then one for t_i, interleaved). For generated cases ``grad_index``
holds 64 indices spread over the range, including 0 and count - 1; for explicit cases it
is every index 0 ..< count.

Reference semantics (float64, from the float32 inputs converted exactly to float64)
----------------------------------------------------------------------------------
With I = sum p*t, P = sum p, T = sum t, N = count, s = smooth, D = P + T + s:

* ``dice_loss``      = 1 - (2I + s) / D, evaluated as (P + T - 2I) / D with the numerator
  summed exactly (math.fsum of p, t and -2pt, each exact in float64), so a near-perfect
  prediction has no cancellation in the reference;
* ``bce_loss``       = mean of -(t * max(log p, -100) + (1 - t) * max(log1p(-p), -100))
  (torch.nn.BCELoss), summed with math.fsum;
* ``bce_dice_loss``  = weight_bce * bce_loss + weight_dice * dice_loss;
* ``dice_grad[k]``   = grad_loss * ((2I + s) / D^2 - 2 t_i / D)          (i = grad_index[k])
* ``bce_grad[k]``    = grad_loss * (p_i - t_i) / max(p_i (1 - p_i), 1e-12) / N
* ``bce_dice_grad[k]`` = weight_bce * bce_grad[k] + weight_dice * dice_grad[k]

Every reference value is finite (no case has 0/0 Dice).
"""

import json
import math
import os
import sys

import numpy as np

GENERATOR = "Tests/vectors/generate.py"


# --- inputs --------------------------------------------------------------------------

def f32(x):
    """The float32 nearest x, as a Python float (exact)."""
    return float(np.float32(x))


def xorshift_inputs(seed, count, target_kind):
    """pred and target (float64 arrays holding float32 values) of a generated case."""
    assert 0 < seed < 2**32 and target_kind in ("hard", "soft")
    x = seed
    mask = 0xFFFFFFFF
    scale = 2.0 ** -24
    pred = np.empty(count, dtype=np.float64)
    target = np.empty(count, dtype=np.float64)
    hard = target_kind == "hard"
    for i in range(count):
        x ^= (x << 13) & mask
        x ^= x >> 17
        x ^= (x << 5) & mask
        pred[i] = (x >> 8) * scale
        x ^= (x << 13) & mask
        x ^= x >> 17
        x ^= (x << 5) & mask
        u = (x >> 8) * scale
        target[i] = (1.0 if u < 0.3 else 0.0) if hard else u
    return pred, target


def spread_indices(count, n=64):
    """About n indices spread over 0 ..< count, including the first and the last."""
    if count <= n:
        return list(range(count))
    return sorted(set(int(round(k * (count - 1) / (n - 1))) for k in range(n)))


# --- reference -----------------------------------------------------------------------

def reference(pred, target, smooth, weight_bce, weight_dice, grad_loss, grad_index):
    """Float64 losses and gradients; pred/target are float64 arrays of float32 values."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    assert p.shape == t.shape and p.size > 0
    assert np.all((p >= 0) & (p <= 1)) and np.all((t >= 0) & (t <= 1))
    n = p.size
    pt = p * t  # exact: a product of two float32 fits in a float64
    intersection = math.fsum(pt)
    denominator = math.fsum(np.concatenate([p, t, [smooth]]))
    mismatch = math.fsum(np.concatenate([p, t, -2.0 * pt]))  # P + T - 2I, rounded once
    dice = mismatch / denominator

    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), -100.0)
        log_1mp = np.maximum(np.log1p(-p), -100.0)
    # t * log_p with t = 0 and log_p = -100 is 0: the clamp comes before the product.
    elements = -(t * log_p + (1.0 - t) * log_1mp)
    bce = math.fsum(elements) / n

    idx = np.asarray(grad_index, dtype=np.int64)
    pi, ti = p[idx], t[idx]
    dice_grad = grad_loss * ((2.0 * intersection + smooth) / (denominator * denominator)
                             - 2.0 * ti / denominator)
    bce_grad = grad_loss * (pi - ti) / np.maximum(pi * (1.0 - pi), 1e-12) / n
    bce_dice_grad = weight_bce * bce_grad + weight_dice * dice_grad
    return {
        "dice_loss": dice,
        "bce_loss": bce,
        "bce_dice_loss": weight_bce * bce + weight_dice * dice,
        "dice_grad": dice_grad,
        "bce_grad": bce_grad,
        "bce_dice_grad": bce_dice_grad,
    }


def make_case(name, pred=None, target=None, generated=None, count=None,
              smooth=1.0, weight_bce=0.5, weight_dice=0.5, grad_loss=1.0):
    smooth, weight_bce, weight_dice, grad_loss = map(f32, (smooth, weight_bce, weight_dice, grad_loss))
    if generated is not None:
        p, t = xorshift_inputs(generated["seed"], count, generated["target"])
        grad_index = spread_indices(count)
        explicit_pred = explicit_target = None
    else:
        p = np.array([f32(v) for v in pred], dtype=np.float64)
        t = np.array([f32(v) for v in target], dtype=np.float64)
        count = p.size
        grad_index = list(range(count))
        explicit_pred = [float(v) for v in p]
        explicit_target = [float(v) for v in t]
    ref = reference(p, t, smooth, weight_bce, weight_dice, grad_loss, grad_index)
    case = {
        "name": name,
        "count": int(count),
        "pred": explicit_pred,
        "target": explicit_target,
        "generated": generated,
        "smooth": smooth,
        "weight_bce": weight_bce,
        "weight_dice": weight_dice,
        "grad_loss": grad_loss,
        "dice_loss": float(ref["dice_loss"]),
        "bce_loss": float(ref["bce_loss"]),
        "bce_dice_loss": float(ref["bce_dice_loss"]),
        "grad_index": [int(i) for i in grad_index],
        "dice_grad": [float(v) for v in ref["dice_grad"]],
        "bce_grad": [float(v) for v in ref["bce_grad"]],
        "bce_dice_grad": [float(v) for v in ref["bce_dice_grad"]],
    }
    for key, value in case.items():
        values = value if isinstance(value, list) else [value]
        assert all(not isinstance(v, float) or math.isfinite(v) for v in values), (name, key)
    return case


# --- the cases -----------------------------------------------------------------------

def explicit_random(seed, count, target_kind, low=0.0, high=1.0):
    """Random float32 inputs for an explicit case (numpy's PCG64; only the written values matter)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(low, high, count).astype(np.float32)
    if target_kind == "hard":
        t = (rng.uniform(0, 1, count) < 0.3).astype(np.float32)
    else:
        t = rng.uniform(0, 1, count).astype(np.float32)
    return p.tolist(), t.tolist()


def cases():
    out = []
    # DESIGN's worked example: Dice 0.10769230, BCEDice 0.15266359.
    out.append(make_case("worked_example", pred=[0.9, 0.1, 0.8, 0.7], target=[1, 0, 1, 1]))
    out.append(make_case("single_element", pred=[0.3], target=[1.0]))
    out.append(make_case("single_element_soft", pred=[0.75], target=[0.25], smooth=0.0,
                         weight_bce=1.0, weight_dice=1.0))

    p, t = explicit_random(101, 1000, "hard")
    out.append(make_case("hard_1000", pred=p, target=t))
    p, t = explicit_random(102, 1000, "soft")
    out.append(make_case("soft_1000", pred=p, target=t))
    p, t = explicit_random(103, 257, "soft")
    out.append(make_case("soft_257", pred=p, target=t))
    p, t = explicit_random(104, 255, "hard")
    out.append(make_case("hard_255", pred=p, target=t))
    p, t = explicit_random(105, 513, "hard")
    out.append(make_case("smooth0_weights_gradloss_m2.5", pred=p, target=t, smooth=0.0,
                         weight_bce=0.25, weight_dice=2.0, grad_loss=-2.5))
    p, t = explicit_random(106, 300, "soft")
    out.append(make_case("soft_smooth0.3_weights_gradloss_7", pred=p, target=t, smooth=0.3,
                         weight_bce=1.5, weight_dice=0.1, grad_loss=7.0))

    # Extremes. Hard targets only (the one-log path of a hard block):
    extreme_p = [0.0, 1.0, 1e-30, 1e-40, float(np.finfo(np.float32).smallest_subnormal),
                 1.0 - 2.0 ** -24, 2.0 ** -24, 0.5, 1e-7, 1.0 - 2.0 ** -23]
    p = [v for v in extreme_p for _ in (0, 1)]
    t = [tv for _ in extreme_p for tv in (0.0, 1.0)]
    out.append(make_case("extremes_hard_targets", pred=p, target=t))
    # ... and with soft targets in the same block (t = 0.5 makes the block soft):
    p = [v for v in extreme_p for _ in (0, 1, 2)]
    t = [tv for _ in extreme_p for tv in (0.0, 1.0, 0.5)]
    out.append(make_case("extremes_soft_targets", pred=p, target=t))
    # p = 0 and p = 1 with matching and mismatching targets only: the -100 clamp and the
    # 1e-12 floor decide every value.
    out.append(make_case("clamp_and_floor", pred=[0.0, 0.0, 1.0, 1.0, 0.0, 1.0],
                         target=[0.0, 1.0, 0.0, 1.0, 0.5, 0.5]))
    # A perfect prediction: BCE and Dice both exactly 0.
    out.append(make_case("perfect_prediction", pred=[1.0, 0.0, 0.0, 1.0, 0.0], target=[1.0, 0.0, 0.0, 1.0, 0.0]))
    # Everything zero with smooth 1: Dice 0 (1/1), gradient (2I+s)/D^2 = 1.
    out.append(make_case("all_zero_smooth1", pred=[0.0] * 7, target=[0.0] * 7))

    # Near-perfect: p within ~1e-4 of a hard target, Dice loss about 1e-4. Evaluated as
    # 1 - (2I+s)/D in float32 this would lose most digits.
    rng = np.random.default_rng(107)
    t = (rng.uniform(0, 1, 1000) < 0.3).astype(np.float32)
    eps = rng.uniform(0, 1.2e-4, 1000)
    p = np.where(t == 1, 1.0 - eps, eps).astype(np.float32)
    out.append(make_case("near_perfect_1000", pred=p.tolist(), target=t.tolist()))

    # Generated: cross the 16384-element chunks, the parallel threshold (4 chunks) and,
    # at 1_000_003 elements, several rounds of chunks.
    out.append(make_case("generated_hard_100003", generated={"seed": 1, "target": "hard"}, count=100_003))
    out.append(make_case("generated_soft_100003", generated={"seed": 2, "target": "soft"}, count=100_003,
                         smooth=0.5, weight_bce=0.7, weight_dice=0.3, grad_loss=3.0))
    out.append(make_case("generated_hard_1000003", generated={"seed": 3, "target": "hard"}, count=1_000_003))
    out.append(make_case("generated_soft_1000003", generated={"seed": 2463534242, "target": "soft"},
                         count=1_000_003, smooth=0.0, weight_bce=1.0, weight_dice=1.0, grad_loss=-0.5))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    document = {
        "format": 1,
        "generator": GENERATOR,
        "note": ("Generated by Tests/vectors/generate.py (see its docstring: format, xorshift32 "
                 "inputs, float64 reference semantics). Inputs and scalar parameters are float32 "
                 "values; losses and gradients are float64 references of those exact inputs. "
                 "Do not edit by hand: change the generator and rerun it."),
        "cases": cases(),
    }
    text = json.dumps(document, allow_nan=False, indent=None, separators=(",", ":"))
    path = os.path.join(here, "vectors.json")
    with open(path, "w") as f:
        f.write(text)
        f.write("\n")
    print(f"wrote {path}: {len(document['cases'])} cases, {len(text)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
