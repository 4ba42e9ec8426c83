"""The general API's shared test vectors (Tests/vectors/general_vectors.json, format 1,
written by Tests/vectors/generate_general.py from general_reference.py) through the numpy
binding: every case's loss, segment scores, segment sums and gradient from segloss.loss,
loss_grad and loss_and_grad; every invalid call's status, from segloss.Options where the
binding can express the options and from the raw C struct where it cannot; every invalid
input's status.

Tolerances: float64 pred within rtol 1e-9 (the gradient also within 1e-12 of its largest
magnitude); float32 pred within rtol 1e-5 (loss, scores, sums) and rtol 1e-5 plus 1e-6 of
the largest magnitude (gradient)."""
import ctypes
import json
import math
import pathlib

import numpy as np
import pytest

import segloss
import segloss._general as general
from general_cases import needs_general_api
from segloss import Options, SegLossError, Status, _library

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "vectors" / "general_vectors.json"

if not VECTORS.exists():
    pytest.skip(f"{VECTORS} does not exist yet", allow_module_level=True)

pytestmark = needs_general_api

DATA = json.loads(VECTORS.read_text())
CASES = {case["name"]: case for case in DATA["cases"]}
INVALID = {case["name"]: case for case in DATA["invalid"]}
INVALID_INPUTS = {case["name"]: case for case in DATA["invalid_inputs"]}
DTYPES = {"float32": np.float32, "float64": np.float64, "uint8": np.uint8}


def number(value):
    """A JSON number, or one of the strings the format writes for non-finite values."""
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value, value)


def numbers(values):
    return None if values is None else [number(v) for v in values]


def options_kwargs(c_options):
    """The vectors' C options (enum integers, 0/1 flags) as keyword arguments of Options;
    None when the binding cannot express them (an enum value no name has)."""
    kwargs = {}
    for field, value in c_options.items():
        if field in general._ENUM_FIELDS:
            names = {int(code): name for name, code in general._ENUM_FIELDS[field].items()}
            if value not in names:
                return None
            kwargs[field] = names[value]
        elif field in ("squared", "log_loss"):
            if value not in (0, 1):
                return None
            kwargs[field] = bool(value)
        elif field in ("pos_weight", "channel_weights"):
            kwargs[field] = numbers(value)
        else:
            kwargs[field] = number(value)
    return kwargs


def arrays(case, shape=None):
    """pred (N, C, S), target (N, C, S) and mask (None, (N, C, S) or (N, 1, S) uint8) of a
    case, in the case's dtypes."""
    shape = shape or case["shape"]
    n, c, s = shape["batch"], shape["channels"], shape["spatial"]
    dtypes = case.get("dtypes") or {"pred": "float32", "target": "uint8" if shape["target_dtype"] == 2
                                    else "float64" if shape["target_dtype"] == 1 else "float32"}
    pred = np.array(numbers(case["pred"]), DTYPES[dtypes["pred"]]).reshape(n, c, s)
    target = np.array(numbers(case["target"]), DTYPES[dtypes["target"]]).reshape(n, c, s)
    mask = case.get("mask")
    if mask is not None:
        mask = np.array(mask, np.uint8)
        mask = mask.reshape(n, c, s) if mask.size == n * c * s else mask.reshape(n, 1, s)
    return pred, target, mask


def test_format():
    assert DATA["format"] == 1
    assert len(CASES) == len(DATA["cases"]) > 0
    assert DATA["status"] == {status.name.removeprefix("ERROR_"): status.value for status in Status}
    for field, names in DATA["enums"].items():
        assert {name.lower(): value for name, value in names.items()} == general._ENUM_FIELDS[field]
    assert DATA["dtypes"] == {"float32": 0, "float64": 1, "uint8": 2}


def test_the_defaults_are_the_bindings():
    assert Options(**options_kwargs(DATA["defaults"])) == Options()


def tolerances(pred, expected_grad):
    """(rtol, gradient atol) for pred's dtype."""
    if pred.dtype == np.float64:
        return 1e-9, 1e-12 * np.max(np.abs(expected_grad))
    return 1e-5, 1e-6 * np.max(np.abs(expected_grad))


def sums_atol(pred, expected_sums):
    """Per segment: the sums' absolute tolerance, a rounding of pred's dtype per valid
    element (TP, FP, FN are sums of products of rounded values: one whose terms cancel,
    like FN = sum (1 - p) t with p near 1, has only that absolute accuracy)."""
    eps = 1e-15 if pred.dtype == np.float64 else 1e-7
    return eps * np.maximum(expected_sums[:, 5:6], 1)


@pytest.mark.parametrize("segment_outputs", [True, False], ids=["with-segments", "without-segments"])
@pytest.mark.parametrize("name", CASES)
def test_case(name, segment_outputs):
    """Loss and gradient of the three functions, with and without the segment outputs."""
    case = CASES[name]
    pred, target, mask = arrays(case)
    assert (pred.dtype.name, target.dtype.name) == (case["dtypes"]["pred"], case["dtypes"]["target"])
    o = Options(**options_kwargs(case["options"]))
    assert case["grad_loss"] == 1.0
    rtol, grad_atol = tolerances(pred, case["grad"])
    if segment_outputs:
        value, grad = segloss.loss_and_grad(pred, target, mask, options=o, return_segments=True)[:2]
        forward = segloss.loss(pred, target, mask, options=o, return_segments=True)[0]
    else:
        value, grad = segloss.loss_and_grad(pred, target, mask, options=o)
        forward = segloss.loss(pred, target, mask, options=o)
    backward = segloss.loss_grad(pred, target, mask, options=o)
    for got, what in ((value, "loss_and_grad"), (forward, "loss")):
        np.testing.assert_allclose(got, case["loss"], rtol=rtol, atol=0, err_msg=f"{name} {what} loss")
    for got, what in ((grad, "loss_and_grad"), (backward, "loss_grad")):
        assert got.dtype == pred.dtype and got.shape == pred.shape
        np.testing.assert_allclose(got.ravel(), case["grad"], rtol=rtol, atol=grad_atol,
                                   err_msg=f"{name} {what} gradient")


@pytest.mark.parametrize("name", CASES)
def test_case_segments(name):
    """Segment scores and sums, of loss and of loss_and_grad."""
    case = CASES[name]
    pred, target, mask = arrays(case)
    o = Options(**options_kwargs(case["options"]))
    rtol = tolerances(pred, case["grad"])[0]
    expected_sums = np.array(case["segment_sums"], np.float64)
    for function in (segloss.loss, segloss.loss_and_grad):
        *_, scores, sums = function(pred, target, mask, options=o, return_segments=True)
        assert sums.shape == expected_sums.shape and scores.shape == (len(expected_sums),)
        allowed = rtol * np.abs(expected_sums) + sums_atol(pred, expected_sums)
        excess = np.abs(sums - expected_sums) - allowed
        assert np.all(excess <= 0), (f"{name} sums: worst at {np.unravel_index(np.argmax(excess), excess.shape)}"
                                     f"\n{sums}\n{expected_sums}")
        if case["segment_scores"] is not None:
            np.testing.assert_allclose(scores, numbers(case["segment_scores"]), rtol=rtol, atol=0,
                                       err_msg=f"{name} scores")


@pytest.mark.parametrize("name", INVALID)
def test_invalid_call_through_options(name):
    """Options the binding can express: Options itself raises INVALID_OPTIONS for exactly
    the cases whose status is INVALID_OPTIONS."""
    case = INVALID[name]
    kwargs = options_kwargs(case["options"])
    if kwargs is None:
        pytest.skip("an enum value no name has: checked through the raw struct")
    if case["status"] == "INVALID_OPTIONS":
        with pytest.raises(SegLossError) as raised:
            Options(**kwargs)
        assert raised.value.status == Status.ERROR_INVALID_OPTIONS
    else:
        Options(**kwargs)


def raw_struct(c_options):
    struct = _library.OptionsStruct()
    _library.library.segloss_options_init(ctypes.byref(struct))
    keep = []
    for field, value in c_options.items():
        if field in ("pos_weight", "channel_weights"):
            if value is not None:
                value = (ctypes.c_double * len(value))(*numbers(value))
                keep.append(value)
        else:
            value = number(value)
        setattr(struct, field, value)
    return struct, keep


@pytest.mark.parametrize("name", INVALID)
def test_invalid_call_through_the_library(name):
    """Each invalid call's status from all four functions of the library, given the raw
    struct and shape (buffers of a few elements: the library must reject the call before
    it reads them; the valid calls get buffers of their size)."""
    case = INVALID[name]
    struct, _keep = raw_struct(case["options"])
    shape = _library.ShapeStruct(**case["shape"])
    count = case["shape"]["batch"] * case["shape"]["channels"] * case["shape"]["spatial"]
    size = count if case["status"] == "OK" else 4
    # Arrays of the shape's dtypes (float32 for an unknown one); float64 room in every case.
    pred = np.full(size, 0.5, np.float64 if shape.pred_dtype == 1 else np.float32)
    target = np.zeros(size, {1: np.float64, 2: np.uint8}.get(shape.target_dtype, np.float32))
    pred, target = (np.concatenate([a, np.zeros(8 * size // a.itemsize, a.dtype)]) for a in (pred, target))
    mask = np.ones(size, np.uint8) if case["mask"] else None
    out = np.empty(size, np.float64)
    scores = np.empty(max(size, 64))
    sums = np.empty(6 * max(size, 64))
    lib = _library.library
    loss = ctypes.c_double()
    segments = ctypes.c_size_t()
    calls = {
        "segloss_segment_count": lambda: lib.segloss_segment_count(
            ctypes.byref(struct), ctypes.byref(shape), ctypes.byref(segments)),
        "segloss_forward": lambda: lib.segloss_forward(
            ctypes.byref(struct), ctypes.byref(shape), pred.ctypes.data, target.ctypes.data,
            None if mask is None else mask.ctypes.data, ctypes.byref(loss), scores.ctypes.data,
            sums.ctypes.data),
        "segloss_backward": lambda: lib.segloss_backward(
            ctypes.byref(struct), ctypes.byref(shape), pred.ctypes.data, target.ctypes.data,
            None if mask is None else mask.ctypes.data, 1.0, out.ctypes.data),
        "segloss_forward_backward": lambda: lib.segloss_forward_backward(
            ctypes.byref(struct), ctypes.byref(shape), pred.ctypes.data, target.ctypes.data,
            None if mask is None else mask.ctypes.data, ctypes.byref(loss), out.ctypes.data,
            scores.ctypes.data, sums.ctypes.data),
    }
    for function, call in calls.items():
        if function == "segloss_segment_count" and case["mask"]:
            continue  # it takes no mask, so it reads no mask_layout
        if case["status"] == "OK":
            call()
        else:
            with pytest.raises(SegLossError) as raised:
                call()
            assert raised.value.status == case["status_value"], (function, raised.value)
    if case["status"] == "OK" and not case["mask"]:
        o = options_kwargs(case["options"])
        n, c = case["shape"]["batch"], case["shape"]["channels"]
        assert segments.value == {"all": 1, "sample": n, "channel": c, "sample_channel": n * c}[
            o["segments"] if o else "all"]


@pytest.mark.parametrize("name", INVALID_INPUTS)
def test_invalid_input(name):
    case = INVALID_INPUTS[name]
    pred, target, mask = arrays(case)
    o = Options(**options_kwargs(case["options"]))
    if case["status"] == "OK":
        value, grad = segloss.loss_and_grad(pred, target, mask, options=o)
        assert math.isfinite(value) and np.all(np.isfinite(grad))
        return
    for call in (segloss.loss, segloss.loss_grad, segloss.loss_and_grad):
        with pytest.raises(SegLossError) as raised:
            call(pred, target, mask, options=o)
        assert raised.value.status == case["status_value"]
