"""The keyword out= of the gradient functions: the gradient written into a preallocated
float32 array (or into pred itself, in place), bitwise the same as without it; every
rejected out (type, dtype, shape, layout, shared memory) and every library error leaves
out untouched."""
import inspect

import numpy as np
import pytest

import segloss
import segloss._api
from segloss import SegLossError, Status

PRED = np.array([0.9, 0.1, 0.8, 0.7], np.float32)
TARGET = np.array([1, 0, 1, 1], np.float32)
SENTINEL = np.float32(-1234.5)

# The gradient functions, called with non-default parameters: name -> f(pred, target, **kw).
GRADIENT_FUNCTIONS = {
    "dice_loss_backward": lambda p, t, **kw: segloss.dice_loss_backward(p, t, 0.5, -2.0, **kw),
    "bce_loss_backward": lambda p, t, **kw: segloss.bce_loss_backward(p, t, 3.0, **kw),
    "bce_dice_loss_backward":
        lambda p, t, **kw: segloss.bce_dice_loss_backward(p, t, 0.3, 0.7, 2.0, 1.5, **kw),
    "bce_dice_loss_and_grad":
        lambda p, t, **kw: segloss.bce_dice_loss_and_grad(p, t, 0.3, 0.7, 2.0, **kw),
}
every_gradient_function = pytest.mark.parametrize("name", list(GRADIENT_FUNCTIONS))


def call(name, pred, target, **kw):
    return GRADIENT_FUNCTIONS[name](pred, target, **kw)


def grad_of(result):
    return result[1] if isinstance(result, tuple) else result


def bits(array):
    """The float32 bit patterns, so that equality is bitwise (NaN, -0.0 included)."""
    return np.ascontiguousarray(array, np.float32).view(np.uint32)


def assert_bitwise_same(got, expected):
    if isinstance(expected, tuple):
        assert bits(np.float32(got[0])) == bits(np.float32(expected[0]))
    got, expected = grad_of(got), grad_of(expected)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_array_equal(bits(got), bits(expected))


def random_inputs(shape, seed=0, soft=False):
    rng = np.random.default_rng(seed)
    pred = rng.random(shape, dtype=np.float32)
    target = rng.random(shape, dtype=np.float32) if soft else (rng.random(shape) < 0.3).astype(np.float32)
    return pred, target


def sentinel_like(shape):
    out = np.empty(shape, np.float32)
    out.fill(SENTINEL)
    return out


def assert_untouched(out):
    assert (bits(out) == bits(SENTINEL)).all(), "out was written"


# --- results -------------------------------------------------------------------------------------


@every_gradient_function
@pytest.mark.parametrize("shape", [(4,), (2, 3, 5, 7), (), (1,), (3, 100_003)])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_out_equals_no_out_bitwise(name, shape, soft):
    # (3, 100_003): more than 4 chunks of 16,384 elements, so the threaded path too.
    p, t = random_inputs(shape, seed=1, soft=soft)
    out = sentinel_like(shape)
    assert_bitwise_same(call(name, p, t, out=out), call(name, p, t))
    assert_bitwise_same(out, grad_of(call(name, p, t)))


@every_gradient_function
def test_out_is_returned(name):
    out = np.empty(4, np.float32)
    result = call(name, PRED, TARGET, out=out)
    if isinstance(result, tuple):
        assert len(result) == 2 and type(result[0]) is float
    assert grad_of(result) is out


@every_gradient_function
def test_out_none_is_the_default(name):
    result = call(name, PRED, TARGET, out=None)
    assert_bitwise_same(result, call(name, PRED, TARGET))
    assert grad_of(result).base is None  # a new array


@every_gradient_function
def test_out_is_keyword_only(name):
    function = getattr(segloss, name)
    positional = {"dice_loss_backward": 2, "bce_loss_backward": 1, "bce_dice_loss_backward": 4,
                  "bce_dice_loss_and_grad": 3}[name]
    out = sentinel_like(4)
    with pytest.raises(TypeError):
        function(PRED, TARGET, *([1.0] * positional), out)
    assert_untouched(out)


@every_gradient_function
def test_out_is_reused_across_calls(name):
    out = sentinel_like((8, 8))
    for seed in range(3):
        p, t = random_inputs((8, 8), seed=seed, soft=True)
        assert grad_of(call(name, p, t, out=out)) is out
        assert_bitwise_same(out, grad_of(call(name, p, t)))


@every_gradient_function
@pytest.mark.parametrize("convert", ["float64", "list", "non-contiguous", "unaligned"])
def test_converted_inputs_with_out(name, convert):
    p, t = random_inputs((6, 5), seed=2, soft=True)
    if convert == "float64":
        pred, target = p.astype(np.float64), t.astype(np.float64)
    elif convert == "list":
        pred, target = p.tolist(), t.tolist()
    elif convert == "non-contiguous":
        pred, target = np.asfortranarray(p), np.asfortranarray(t)
    else:
        buffer = np.zeros(p.nbytes + 1, np.uint8)
        pred = np.ndarray(p.shape, np.float32, buffer=buffer, offset=1)
        pred[...] = p
        target = t
    out = sentinel_like(p.shape)
    assert grad_of(call(name, pred, target, out=out)) is out
    assert_bitwise_same(out, grad_of(call(name, p, t)))


class Subclass(np.ndarray):
    pass


@every_gradient_function
def test_ndarray_subclass_out(name):
    out = sentinel_like(4).view(Subclass)
    assert grad_of(call(name, PRED, TARGET, out=out)) is out
    assert_bitwise_same(np.asarray(out), grad_of(call(name, PRED, TARGET)))


# --- in place: out is pred -----------------------------------------------------------------------


@every_gradient_function
@pytest.mark.parametrize("shape", [(4,), (2, 3, 5, 7), (), (3, 100_003)])
def test_in_place_equals_out_of_place(name, shape):
    p, t = random_inputs(shape, seed=3, soft=True)
    expected = call(name, p, t)
    q = p.copy()
    result = call(name, q, t, out=q)
    assert grad_of(result) is q
    assert_bitwise_same(result, expected)


@every_gradient_function
def test_in_place_through_another_view_of_pred(name):
    """The same memory as pred under another array object (a view, a subclass) is pred
    itself: the library's grad_pred == pred."""
    expected = call(name, PRED, TARGET)
    q = PRED.copy()
    assert_bitwise_same(call(name, q, TARGET, out=q.view()), expected)
    q = PRED.copy().view(Subclass)
    assert_bitwise_same(call(name, q, TARGET, out=q), expected)
    q = PRED.reshape(2, 2).copy()
    assert_bitwise_same(call(name, q, TARGET.reshape(2, 2), out=q),
                        call(name, PRED.reshape(2, 2), TARGET.reshape(2, 2)))


# --- rejected out: type, dtype, shape, layout ----------------------------------------------------


@every_gradient_function
@pytest.mark.parametrize("bad", [[0.0] * 4, (0.0,) * 4, 3.0, "out", memoryview(bytearray(16))],
                         ids=["list", "tuple", "float", "str", "memoryview"])
def test_out_that_is_not_an_ndarray_is_a_type_error(name, bad):
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        call(name, PRED, TARGET, out=bad)


@every_gradient_function
@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.uint32, np.complex64,
                                   np.dtype(">f4").newbyteorder(">")],
                         ids=["float64", "float16", "int32", "uint32", "complex64", "float32-big-endian"])
def test_out_of_the_wrong_dtype_is_a_type_error(name, dtype):
    out = np.zeros(4, dtype)
    before = out.copy()
    with pytest.raises(TypeError, match="out has dtype"):
        call(name, PRED, TARGET, out=out)
    np.testing.assert_array_equal(out, before)


@every_gradient_function
@pytest.mark.parametrize("shape", [(5,), (3,), (2, 2), (1, 4), (4, 1), ()])
def test_out_of_the_wrong_shape_is_a_value_error(name, shape):
    out = sentinel_like(shape)
    with pytest.raises(ValueError, match=r"out has shape .*expected pred's shape \(4,\)"):
        call(name, PRED, TARGET, out=out)
    assert_untouched(out)


@every_gradient_function
@pytest.mark.parametrize("layout", ["strided", "reversed", "fortran"])
def test_non_contiguous_out_is_a_value_error(name, layout):
    p, t = random_inputs((3, 4), seed=4)
    base = sentinel_like(24)
    out = {"strided": base.reshape(6, 4)[::2],
           "reversed": base[:12].reshape(3, 4)[::-1],
           "fortran": np.asfortranarray(sentinel_like((3, 4)))}[layout]
    assert not out.flags.c_contiguous
    with pytest.raises(ValueError, match="out is not C-contiguous"):
        call(name, p, t, out=out)
    assert_untouched(out)


@every_gradient_function
def test_read_only_out_is_a_value_error(name):
    out = sentinel_like(4)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out is read-only"):
        call(name, PRED, TARGET, out=out)
    assert_untouched(out)


@every_gradient_function
def test_unaligned_out_is_a_value_error(name):
    buffer = np.zeros(4 * 4 + 1, np.uint8)
    out = np.ndarray(4, np.float32, buffer=buffer, offset=1)
    out[...] = SENTINEL
    assert not out.flags.aligned and out.flags.c_contiguous
    with pytest.raises(ValueError, match="out is not aligned"):
        call(name, PRED, TARGET, out=out)
    assert_untouched(out)


@every_gradient_function
def test_in_place_needs_pred_to_be_a_valid_out(name):
    """out=pred is in place only when pred is a contiguous float32 array; else pred is no
    valid out, and it is rejected as such (pred untouched)."""
    p64 = PRED.astype(np.float64)
    with pytest.raises(TypeError, match="out has dtype float64"):
        call(name, p64, TARGET, out=p64)
    np.testing.assert_array_equal(p64, PRED.astype(np.float64))
    strided = np.repeat(PRED, 2)[::2]
    with pytest.raises(ValueError, match="not C-contiguous"):
        call(name, strided, TARGET, out=strided)
    np.testing.assert_array_equal(strided, PRED)


# --- rejected out: shared memory -----------------------------------------------------------------


def overlap_cases():
    """name -> (pred, target, out): out shares memory with pred or target, other than being
    pred's very memory."""
    def buffer(n=8):
        b = np.empty(n, np.float32)
        b[:] = np.resize(PRED, n)
        return b

    cases = {}
    b = buffer()
    cases["out is target"] = (PRED.copy(), b[:4], b[:4])
    b = buffer()
    cases["out is a view of target"] = (PRED.copy(), b[:4], b[:4].view())
    b = buffer()
    x = b[:4]
    cases["pred, target and out the same"] = (x, x, x)
    b = buffer()
    cases["out one element after pred"] = (b[:4], TARGET.copy(), b[1:5])
    b = buffer()
    cases["out one element before pred"] = (b[1:5], TARGET.copy(), b[:4])
    b = buffer()
    cases["out overlaps pred's last element"] = (b[:4], TARGET.copy(), b[3:7])
    b = buffer()
    target = b[:4]
    target[:] = TARGET
    cases["out overlaps target's start"] = (PRED.copy(), target, b[2:6])
    b = buffer()
    cases["out is pred seen through other bytes"] = (b[:4], TARGET.copy(),
                                                     b.view(np.uint8)[4:20].view(np.float32))
    b = buffer()
    cases["pred is out reversed (copied first)"] = (b[:4][::-1], TARGET.copy(), b[:4])
    b = buffer()
    cases["pred is a strided view around out"] = (b[::2], TARGET.copy(), b[2:6])
    b = buffer()
    cases["target is out reversed (copied first)"] = (PRED.copy(), b[:4][::-1], b[:4])
    b = buffer(16)
    square = b.reshape(4, 4)
    cases["pred is out transposed (copied first)"] = (square.T, np.ones((4, 4), np.float32), square)
    b = buffer()
    cases["pred is out as float64 (copied first)"] = (b.view(np.float64), TARGET.copy(), b[:4])
    return cases


OVERLAPS = overlap_cases()


@every_gradient_function
@pytest.mark.parametrize("case", list(OVERLAPS))
def test_shared_memory_is_a_value_error(name, case):
    pred, target, out = overlap_cases()[case]
    before_out = out.copy()
    before_pred, before_target = np.array(pred, copy=True), np.array(target, copy=True)
    with pytest.raises(ValueError, match="share no memory with pred or target"):
        call(name, pred, target, out=out)
    np.testing.assert_array_equal(bits(out), bits(before_out))
    np.testing.assert_array_equal(np.asarray(pred), before_pred)
    np.testing.assert_array_equal(np.asarray(target), before_target)


def test_the_overlap_cases_really_overlap():
    for case, (pred, target, out) in overlap_cases().items():
        assert np.shares_memory(out, pred) or np.shares_memory(out, target), case


@every_gradient_function
def test_the_overlap_check_is_cheap(name, monkeypatch):
    """Byte ranges only: numpy's shares_memory / may_share_memory are never called."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("numpy's memory-overlap solver was called")

    monkeypatch.setattr(np, "shares_memory", must_not_run)
    monkeypatch.setattr(np, "may_share_memory", must_not_run)
    b = np.empty(8, np.float32)
    b[:4] = PRED
    with pytest.raises(ValueError, match="out overlaps pred"):
        call(name, b[:4], TARGET, out=b[1:5])
    call(name, PRED, TARGET, out=np.empty(4, np.float32))
    call(name, b[:4][::-1], TARGET, out=b[4:])


@every_gradient_function
def test_adjacent_memory_is_not_overlap(name):
    b = np.empty(12, np.float32)
    b[:4], b[4:8] = PRED, TARGET
    expected = grad_of(call(name, PRED, TARGET))
    assert_bitwise_same(call(name, b[:4], b[4:8], out=b[8:12]), call(name, PRED, TARGET))
    b[:4], b[8:12] = TARGET, PRED
    assert_bitwise_same(call(name, b[8:12], b[:4], out=b[4:8]), call(name, PRED, TARGET))
    np.testing.assert_array_equal(bits(b[4:8]), bits(expected))


# --- library errors leave out untouched ----------------------------------------------------------


def error_cases():
    """name -> (pred, target, extra keyword arguments, expected status)."""
    bad_pred = PRED.copy()
    bad_pred[2] = 1.5
    bad_target = TARGET.copy()
    bad_target[3] = np.nan
    return {
        "pred out of range": (bad_pred, TARGET, {}, Status.ERROR_PRED_OUT_OF_RANGE),
        "target NaN": (PRED, bad_target, {}, Status.ERROR_TARGET_OUT_OF_RANGE),
        "negative smooth": (PRED, TARGET, {"smooth": -1.0}, Status.ERROR_INVALID_ARGUMENT),
        "infinite grad_loss": (PRED, TARGET, {"grad_loss": np.inf}, Status.ERROR_INVALID_ARGUMENT),
        "NaN weight": (PRED, TARGET, {"weight_bce": np.nan}, Status.ERROR_INVALID_ARGUMENT),
    }


def accepts(name, keyword):
    return keyword in inspect.signature(getattr(segloss, name)).parameters


@pytest.mark.parametrize("name", list(GRADIENT_FUNCTIONS))
@pytest.mark.parametrize("case", list(error_cases()))
def test_error_status_leaves_out_untouched(name, case):
    pred, target, keywords, status = error_cases()[case]
    if any(not accepts(name, k) for k in keywords):
        pytest.skip(f"{name} has no {', '.join(keywords)}")
    out = sentinel_like(4)
    with pytest.raises(SegLossError) as raised:
        getattr(segloss, name)(pred, target, **keywords, out=out)
    assert raised.value.status == status
    assert_untouched(out)


@every_gradient_function
def test_error_status_in_place_leaves_pred_untouched(name):
    p = PRED.copy()
    p[1] = -0.5
    before = p.copy()
    with pytest.raises(SegLossError, match="status 4,"):
        call(name, p, TARGET, out=p)
    np.testing.assert_array_equal(bits(p), bits(before))


@every_gradient_function
def test_empty_input_with_out(name):
    out = np.empty((0, 3), np.float32)
    with pytest.raises(SegLossError, match="status 2,"):
        call(name, np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), out=out)


@every_gradient_function
def test_binding_errors_leave_out_untouched(name):
    out = sentinel_like(4)
    with pytest.raises(ValueError, match="same shape"):
        call(name, PRED, TARGET[:3], out=out)
    with pytest.raises(TypeError):
        call(name, None, TARGET, out=out)
    with pytest.raises(TypeError):
        call(name, PRED.astype(np.complex64), TARGET, out=out)
    assert_untouched(out)


# --- the torch modules ---------------------------------------------------------------------------


@pytest.mark.parametrize("module_name", ["DiceLoss", "BCELoss", "BCEDiceLoss"])
def test_torch_modules_match_the_numpy_api_with_out(module_name):
    torch = pytest.importorskip("torch")
    import segloss.torch as st

    p, t = random_inputs((2, 1, 16, 16), seed=5, soft=True)
    pred = torch.from_numpy(p.copy()).requires_grad_(True)
    loss = getattr(st, module_name)()(pred, torch.from_numpy(t))
    loss.backward()
    out = sentinel_like(p.shape)
    if module_name == "DiceLoss":
        expected_loss = segloss.dice_loss(p, t)
        segloss.dice_loss_backward(p, t, out=out)
    elif module_name == "BCELoss":
        expected_loss = segloss.bce_loss(p, t)
        segloss.bce_loss_backward(p, t, out=out)
    else:
        expected_loss, _ = segloss.bce_dice_loss_and_grad(p, t, out=out)
    assert loss.item() == np.float32(expected_loss)
    np.testing.assert_array_equal(bits(pred.grad.numpy()), bits(out))
