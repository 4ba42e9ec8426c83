"""Property tests: every public loss function against the float64 reference, on inputs
hypothesis draws (any float32 in [0, 1], subnormals and the bounds included; any
shape; hard and soft targets; large seeded arrays that take the library's parallel
path), with any valid smooth, weights and grad_loss.

The reference is evaluated on the float32 values the library computes on: the drawn
arrays are float32, and scalar parameters are drawn as float32 values.

Gradient tests leave out the one region where the Dice gradient cannot be finite in
float32 (smooth about 0 and pred and target summing to under about 1e-38; see
float64_reference.dice_coefficients_fit_float32). test_api checks the 0/0 case there."""
import os

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import float64_reference as ref
import segloss

# 150 examples per test keeps the suite fast; HYPOTHESIS_PROFILE=thorough runs 5000.
settings.register_profile("default", max_examples=150, deadline=None)
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Values a float32 probability can take that stress the formulas: the bounds, the
# smallest subnormal and normal, the BCE gradient's clamp (p (1 - p) = 1e-12), the last
# float32 below 1, and values where 1 - p rounds.
SPECIAL = [0.0, 1.0, 2.0**-149, 2.0**-126, 1e-12, 1e-6, 2.0**-24, 0.5, 1 - 2.0**-24, 1 - 2.0**-23, 0.999]
probabilities = st.one_of(st.floats(0, 1, width=32), st.sampled_from(SPECIAL))


@st.composite
def drawn_arrays(draw):
    """pred and target of one shape, every element drawn (small arrays, any shape)."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=9))
    pred = draw(hnp.arrays(np.float32, shape, elements=probabilities))
    kind = draw(st.sampled_from(["hard", "soft"]))
    labels = st.sampled_from([0.0, 1.0]) if kind == "hard" else probabilities
    target = draw(hnp.arrays(np.float32, shape, elements=labels))
    return pred, target


@st.composite
def seeded_arrays(draw):
    """Larger arrays (up to past the parallel threshold of 4 chunks of 16384) from a
    seeded generator, with drawn special values written at drawn positions."""
    count = draw(st.one_of(st.integers(1, 5000), st.integers(60_000, 70_000)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pred = rng.random(count, dtype=np.float32)
    if draw(st.booleans()):
        target = (rng.random(count) < draw(st.sampled_from([0.01, 0.3, 0.9]))).astype(np.float32)
    else:
        target = rng.random(count, dtype=np.float32)
    for array in (pred, target):
        for _ in range(draw(st.integers(0, 4))):
            array[draw(st.integers(0, count - 1))] = draw(st.sampled_from(SPECIAL))
    return pred, target


inputs = st.one_of(drawn_arrays(), seeded_arrays())
smooths = st.one_of(st.just(1.0), st.just(0.0), st.floats(0, 100, width=32))
# The library rounds coefficients such as weight * grad_loss / count to float32; a weight or
# grad_loss so small that they become subnormal loses precision no tolerance here models,
# and is no use to anyone: those are drawn as 0 or at least 1e-6 in magnitude.
SMALL = ref.f32(1e-6)
weights = st.one_of(st.just(0.5), st.just(0.0), st.floats(SMALL, 10, width=32))
grad_losses = st.one_of(st.just(1.0), st.just(0.0), st.floats(SMALL, 1e4, width=32),
                        st.floats(-1e4, -SMALL, width=32))


@given(inputs, smooths)
def test_dice_loss(arrays, smooth):
    pred, target = arrays
    ref.assert_loss_close(segloss.dice_loss(pred, target, smooth), ref.dice_loss(pred, target, smooth))


@given(inputs, smooths, grad_losses)
def test_dice_loss_backward(arrays, smooth, grad_loss):
    pred, target = arrays
    assume(ref.dice_coefficients_fit_float32(pred, target, 1.0, smooth, grad_loss))
    ref.assert_grad_close(segloss.dice_loss_backward(pred, target, smooth, grad_loss),
                          ref.dice_grad(pred, target, smooth, grad_loss),
                          ref.grad_atol(pred, target, 0.0, 1.0, smooth, grad_loss))


@given(inputs)
def test_bce_loss(arrays):
    pred, target = arrays
    ref.assert_loss_close(segloss.bce_loss(pred, target), ref.bce_loss(pred, target))


@given(inputs, grad_losses)
def test_bce_loss_backward(arrays, grad_loss):
    pred, target = arrays
    ref.assert_grad_close(segloss.bce_loss_backward(pred, target, grad_loss),
                          ref.bce_grad(pred, target, grad_loss),
                          ref.grad_atol(pred, target, 1.0, 0.0, 0.0, grad_loss))


@given(inputs, weights, weights, smooths)
def test_bce_dice_loss(arrays, weight_bce, weight_dice, smooth):
    pred, target = arrays
    ref.assert_loss_close(segloss.bce_dice_loss(pred, target, weight_bce, weight_dice, smooth),
                          ref.bce_dice_loss(pred, target, weight_bce, weight_dice, smooth))


@given(inputs, weights, weights, smooths, grad_losses)
def test_bce_dice_loss_backward(arrays, weight_bce, weight_dice, smooth, grad_loss):
    pred, target = arrays
    assume(ref.dice_coefficients_fit_float32(pred, target, weight_dice, smooth, grad_loss))
    ref.assert_grad_close(
        segloss.bce_dice_loss_backward(pred, target, weight_bce, weight_dice, smooth, grad_loss),
        ref.bce_dice_grad(pred, target, weight_bce, weight_dice, smooth, grad_loss),
        ref.grad_atol(pred, target, weight_bce, weight_dice, smooth, grad_loss))


@given(inputs, weights, weights, smooths)
def test_bce_dice_loss_and_grad(arrays, weight_bce, weight_dice, smooth):
    pred, target = arrays
    assume(ref.dice_coefficients_fit_float32(pred, target, weight_dice, smooth))
    loss, grad = segloss.bce_dice_loss_and_grad(pred, target, weight_bce, weight_dice, smooth)
    ref.assert_loss_close(loss, ref.bce_dice_loss(pred, target, weight_bce, weight_dice, smooth))
    ref.assert_grad_close(grad, ref.bce_dice_grad(pred, target, weight_bce, weight_dice, smooth),
                          ref.grad_atol(pred, target, weight_bce, weight_dice, smooth))
