"""The shared test vectors (Tests/vectors/vectors.json, format 1) through the numpy API:
each of the three losses forward, backward and fused, against the vectors' float64
results; and the vectors themselves against this suite's own float64 reference, so the
two references check each other."""
import functools
import json
import pathlib

import numpy as np
import pytest

import float64_reference as ref
import segloss

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "vectors" / "vectors.json"

if not VECTORS.exists():
    pytest.skip(f"{VECTORS} does not exist", allow_module_level=True)

DATA = json.loads(VECTORS.read_text())
CASES = {case["name"]: case for case in DATA["cases"]}


def test_format():
    assert DATA["format"] == 1
    assert len(CASES) == len(DATA["cases"]) > 0, "case names must be unique"
    for case in DATA["cases"]:
        assert (case["pred"] is None) == (case["target"] is None) == (case["generated"] is not None)


@functools.lru_cache(maxsize=None)
def inputs(name):
    """pred and target of a case as read-only float32 arrays."""
    case = CASES[name]
    if case["generated"] is not None:
        generated = case["generated"]
        pred, target = ref.xorshift_inputs(generated["seed"], case["count"], generated["target"])
    else:
        pred = np.array(case["pred"], dtype=np.float32)
        target = np.array(case["target"], dtype=np.float32)
        # The explicit values are float32 values written exactly.
        assert np.array_equal(pred.astype(np.float64), case["pred"])
        assert np.array_equal(target.astype(np.float64), case["target"])
    assert pred.shape == target.shape == (case["count"],)
    pred.setflags(write=False)
    target.setflags(write=False)
    return pred, target


def parameters(case):
    return case["smooth"], case["weight_bce"], case["weight_dice"], case["grad_loss"]


# (loss name, its (weight_bce, weight_dice) in the fused call, which weights of a case apply)
LOSSES = ["dice", "bce", "bce_dice"]


def weights(loss, case):
    return {"dice": (0.0, 1.0), "bce": (1.0, 0.0),
            "bce_dice": (case["weight_bce"], case["weight_dice"])}[loss]


def grad_atol(loss, case, pred, target, grad_loss):
    weight_bce, weight_dice = weights(loss, case)
    return ref.grad_atol(pred, target, weight_bce, weight_dice, case["smooth"], grad_loss)


names = pytest.mark.parametrize("name", list(CASES))
losses = pytest.mark.parametrize("loss", LOSSES)


@names
def test_vectors_agree_with_this_suites_reference(name):
    case = CASES[name]
    pred, target = inputs(name)
    smooth, weight_bce, weight_dice, grad_loss = parameters(case)
    index = case["grad_index"]
    assert index == sorted(set(index)) and 0 <= index[0] and index[-1] < case["count"]
    np.testing.assert_allclose(ref.dice_loss(pred, target, smooth), case["dice_loss"], rtol=1e-12)
    np.testing.assert_allclose(ref.bce_loss(pred, target), case["bce_loss"], rtol=1e-12)
    np.testing.assert_allclose(ref.bce_dice_loss(pred, target, weight_bce, weight_dice, smooth),
                               case["bce_dice_loss"], rtol=1e-12)
    np.testing.assert_allclose(ref.dice_grad(pred, target, smooth, grad_loss)[index],
                               case["dice_grad"], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(ref.bce_grad(pred, target, grad_loss)[index],
                               case["bce_grad"], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(
        ref.bce_dice_grad(pred, target, weight_bce, weight_dice, smooth, grad_loss)[index],
        case["bce_dice_grad"], rtol=1e-12, atol=1e-300)


@names
@losses
def test_forward(name, loss):
    case = CASES[name]
    pred, target = inputs(name)
    smooth, weight_bce, weight_dice, _ = parameters(case)
    got = {
        "dice": lambda: segloss.dice_loss(pred, target, smooth),
        "bce": lambda: segloss.bce_loss(pred, target),
        "bce_dice": lambda: segloss.bce_dice_loss(pred, target, weight_bce, weight_dice, smooth),
    }[loss]()
    ref.assert_loss_close(got, case[f"{loss}_loss"], f"{name} {loss}_loss")


@names
@losses
def test_backward(name, loss):
    case = CASES[name]
    pred, target = inputs(name)
    smooth, weight_bce, weight_dice, grad_loss = parameters(case)
    grad = {
        "dice": lambda: segloss.dice_loss_backward(pred, target, smooth, grad_loss),
        "bce": lambda: segloss.bce_loss_backward(pred, target, grad_loss),
        "bce_dice": lambda: segloss.bce_dice_loss_backward(pred, target, weight_bce, weight_dice,
                                                           smooth, grad_loss),
    }[loss]()
    assert grad.shape == pred.shape and grad.dtype == np.float32
    index = case["grad_index"]
    atol = grad_atol(loss, case, pred, target, grad_loss)[index]
    ref.assert_grad_close(grad[index], case[f"{loss}_grad"], atol, f"{name} {loss}_grad")


@names
@losses
def test_fused(name, loss):
    """bce_dice_loss_and_grad with the loss's weights: (0, 1) is Dice, (1, 0) is BCE. Its
    gradient is for grad_loss = 1, so the vectors' gradients are divided by grad_loss."""
    case = CASES[name]
    pred, target = inputs(name)
    smooth, _, _, grad_loss = parameters(case)
    assert grad_loss != 0, "a case with grad_loss 0 cannot check the fused gradient"
    weight_bce, weight_dice = weights(loss, case)
    value, grad = segloss.bce_dice_loss_and_grad(pred, target, weight_bce, weight_dice, smooth)
    ref.assert_loss_close(value, case[f"{loss}_loss"], f"{name} fused {loss}_loss")
    index = case["grad_index"]
    expected = np.asarray(case[f"{loss}_grad"]) / grad_loss
    atol = grad_atol(loss, case, pred, target, 1.0)[index]
    ref.assert_grad_close(grad[index], expected, atol, f"{name} fused {loss}_grad")
