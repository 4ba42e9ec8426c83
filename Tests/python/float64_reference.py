"""An independent float64 reference for the Python tests, and the tolerances results are
held to.

Written from the formulas of include/segloss.h and torch.nn.BCELoss, in numpy float64,
sharing no code with the library or with Tests/vectors/generate.py. Inputs are taken as
float64 exactly as given: callers pass the float32-rounded values the library computes on
(`f32` rounds scalars the way the C API's `float` parameters do).

    I = sum p t,  P = sum p,  T = sum t,  D = P + T + smooth,  N = count
    dice = 1 - (2 I + smooth) / D        evaluated as (P + T - 2 I) / D
    bce  = mean -(t max(log p, -100) + (1 - t) max(log1p(-p), -100))
    bce_dice = weight_bce bce + weight_dice dice   (a term of weight 0 left out)
    d dice / d p_i = (2 I + smooth) / D^2 - 2 t_i / D
    d bce / d p_i  = (p_i - t_i) / max(p_i (1 - p_i), 1e-12) / N
"""
import math

import numpy as np

# --- inputs ------------------------------------------------------------------------------


def f32(x: float) -> float:
    """x rounded to float32, as a Python float (what a C `float` parameter receives)."""
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def xorshift_inputs(seed: int, count: int, target_kind: str):
    """The generated inputs of a shared test vector (Tests/vectors format 1), as float32.

    xorshift32 from state = seed: x ^= x << 13; x ^= x >> 17; x ^= x << 5 (mod 2^32);
    u = (x >> 8) * 2^-24. For each element one draw for p, then one for t: t = u < 0.3
    ("hard", compared in float64) or t = u ("soft").
    """
    if target_kind not in ("hard", "soft"):
        raise ValueError(f"unknown target kind {target_kind!r}")
    mask = 0xFFFFFFFF
    draws = []
    append = draws.append
    x = seed
    for _ in range(2 * count):
        x ^= (x << 13) & mask
        x ^= x >> 17
        x ^= (x << 5) & mask
        append(x >> 8)
    u = np.array(draws, dtype=np.float64) * 2.0**-24
    pred, target = u[0::2], u[1::2]
    if target_kind == "hard":
        target = (target < 0.3).astype(np.float64)
    return pred.astype(np.float32), target.astype(np.float32)


# --- losses and gradients ------------------------------------------------------------------


def _flat(pred, target):
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    assert p.shape == t.shape and p.size > 0
    return p, t


def _dice_sums(p, t, smooth):
    """2 I + smooth, D and P + T - 2 I, each summed exactly and rounded once (math.fsum;
    a product of two float32 values is exact in float64)."""
    pt = p * t
    numerator = math.fsum(np.concatenate([2.0 * pt, [smooth]]))
    denominator = math.fsum(np.concatenate([p, t, [smooth]]))
    mismatch = math.fsum(np.concatenate([p, t, -2.0 * pt]))
    return numerator, denominator, mismatch


def dice_loss(pred, target, smooth=1.0) -> float:
    p, t = _flat(pred, target)
    _, denominator, mismatch = _dice_sums(p, t, smooth)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.float64(mismatch) / np.float64(denominator))  # 0/0 is NaN, as in torch


def bce_elements(p, t):
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), -100.0)
        log_1mp = np.maximum(np.log1p(-p), -100.0)
    return -(t * log_p + (1.0 - t) * log_1mp)


def bce_loss(pred, target) -> float:
    p, t = _flat(pred, target)
    return math.fsum(bce_elements(p, t)) / p.size


def bce_dice_loss(pred, target, weight_bce=0.5, weight_dice=0.5, smooth=1.0) -> float:
    """A term whose weight is 0 is left out, so it contributes 0 even where it is NaN
    (Dice at 0/0); plain 0 * NaN, as in the PyTorch seed, would be NaN."""
    loss = 0.0
    if weight_bce != 0:
        loss += weight_bce * bce_loss(pred, target)
    if weight_dice != 0:
        loss += weight_dice * dice_loss(pred, target, smooth)
    return loss


def dice_terms(pred, target, smooth=1.0, grad_loss=1.0):
    """The two terms of grad_loss * d dice / d p: (2 I + smooth) / D^2 and -2 t / D."""
    p, t = _flat(pred, target)
    numerator, denominator, _ = _dice_sums(p, t, smooth)
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = grad_loss * (np.float64(numerator) / (np.float64(denominator) ** 2))
        return np.full_like(p, offset), grad_loss * (-2.0 * t / np.float64(denominator))


def dice_grad(pred, target, smooth=1.0, grad_loss=1.0):
    offset, target_term = dice_terms(pred, target, smooth, grad_loss)
    return (offset + target_term).reshape(np.shape(pred))


def bce_grad(pred, target, grad_loss=1.0):
    p, t = _flat(pred, target)
    return (grad_loss * (p - t) / np.maximum(p * (1.0 - p), 1e-12) / p.size).reshape(np.shape(pred))


def bce_dice_grad(pred, target, weight_bce=0.5, weight_dice=0.5, smooth=1.0, grad_loss=1.0):
    """As bce_dice_loss, a term whose weight is 0 is left out."""
    grad = np.zeros(np.shape(pred))
    if weight_bce != 0:
        grad += weight_bce * bce_grad(pred, target, grad_loss)
    if weight_dice != 0:
        grad += weight_dice * dice_grad(pred, target, smooth, grad_loss)
    return grad


# --- tolerances ----------------------------------------------------------------------------

# Losses: the library's contract is a relative error of at most 1e-6 against float64; the
# result is returned as a float32, so a loss in float32's subnormal range may in addition
# be off by half its spacing, 2^-150.
LOSS_RTOL = 1e-6
LOSS_ATOL = 2.0**-150

# Gradients: rtol 1e-5 (the PyTorch-parity contract), plus an absolute tolerance per
# element from `grad_atol`, for two effects of float32 arithmetic that a wrong formula
# could not hide behind:
#  - cancellation: the library forms each element in float32 from float32 coefficients, a
#    handful of roundings of 2^-24 (6e-8) relative to the terms being added. Where those
#    terms cancel (BCE against Dice, or the two Dice terms) that error is relative to the
#    terms, not to their small sum: GRAD_TERM_TOL (about 17 float32 ulps) times the sum of
#    the terms' magnitudes;
#  - underflow: float32 holds nothing below 2^-149, so each product p t of the statistics
#    pass, and each output element, may lose up to 2^-150. Only inputs in float32's
#    subnormal range reach this.
GRAD_RTOL = 1e-5
GRAD_TERM_TOL = 1e-6
FLOAT32_TINY = 2.0**-149  # the smallest float32 subnormal
FLOAT32_MAX = float(np.finfo(np.float32).max)


def grad_atol(pred, target, weight_bce=0.5, weight_dice=0.5, smooth=1.0, grad_loss=1.0):
    """The absolute tolerance of each element of the gradient of
    grad_loss * (weight_bce * bce + weight_dice * dice)."""
    atol = np.full(np.shape(pred), FLOAT32_TINY)
    if weight_dice != 0:
        p, t = _flat(pred, target)
        _, denominator, _ = _dice_sums(p, t, smooth)
        offset, target_term = dice_terms(pred, target, smooth, grad_loss)
        terms = (np.abs(offset) + np.abs(target_term)).reshape(atol.shape)
        # 2 I may be off by 2 * count * 2^-150 = count * 2^-149, and enters as 2 I / D^2.
        with np.errstate(divide="ignore", invalid="ignore"):  # D = 0: the gradient is NaN
            underflow = abs(grad_loss) * p.size * FLOAT32_TINY / np.float64(denominator) ** 2
            atol += weight_dice * (GRAD_TERM_TOL * terms + underflow)
    if weight_bce != 0:
        atol += weight_bce * GRAD_TERM_TOL * np.abs(bce_grad(pred, target, grad_loss))
    return atol


def dice_coefficients_fit_float32(pred, target, weight_dice=1.0, smooth=1.0, grad_loss=1.0) -> bool:
    """Whether the Dice gradient's coefficients, weight_dice * grad_loss * 2 / D and
    weight_dice * grad_loss * (2 I + smooth) / D^2, are finite in float32.

    They are not only when smooth is (nearly) 0 and all of pred and target sum to less than
    about 1e-38, where PyTorch's float32 autograd returns inf or NaN as well; the library
    computes them in double and rounds them to float32, so its gradient is not finite there.
    """
    p, t = _flat(pred, target)
    numerator, denominator, _ = _dice_sums(p, t, smooth)
    numerator, denominator = np.float64(numerator), np.float64(denominator)
    scale = abs(weight_dice * grad_loss)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        coefficients = np.array([scale * 2.0 / denominator, scale * numerator / denominator**2])
    # D = 0 (everything 0, smooth 0) is 0/0: NaN in the reference and in the library alike.
    return scale == 0 or denominator == 0 or bool(np.all(np.abs(coefficients) <= FLOAT32_MAX))


def assert_loss_close(got: float, expected: float, what: str = "loss") -> None:
    assert isinstance(got, float), f"{what}: {got!r} is not a float"
    if math.isnan(expected):
        assert math.isnan(got), f"{what}: got {got!r}, expected NaN"
        return
    error = abs(got - expected)
    assert error <= LOSS_RTOL * abs(expected) + LOSS_ATOL, (
        f"{what}: got {got!r}, expected {expected!r} "
        f"(relative error {error / abs(expected) if expected else math.inf:.3g})")


def assert_grad_close(got, expected, atol, what: str = "gradient") -> None:
    got = np.asarray(got)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.dtype == np.float32, f"{what}: dtype {got.dtype}, expected float32"
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    got = got.astype(np.float64)
    finite = np.isfinite(expected)
    assert np.array_equal(got[~finite], expected[~finite], equal_nan=True), (
        f"{what}: where the reference is not finite, got {got[~finite][:5]} for {expected[~finite][:5]}")
    tolerance = GRAD_RTOL * np.abs(expected) + np.asarray(atol, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = finite & ~(np.abs(got - expected) <= tolerance)  # a NaN or inf got is bad too
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        raise AssertionError(
            f"{what}: {bad.sum()} of {bad.size} elements off; first at flat index {i}: "
            f"got {got.ravel()[i]!r}, expected {expected.ravel()[i]!r}, "
            f"tolerance {tolerance.ravel()[i]:.3g}")
