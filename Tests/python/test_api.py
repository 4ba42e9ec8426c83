"""The numpy API: every public function, the worked example, input handling (shapes,
dtypes, layouts) and every error path."""
import doctest
import math
import threading

import numpy as np
import pytest

import float64_reference as ref
import segloss
import segloss._api
from segloss import SegLossError, Status

PRED = np.array([0.9, 0.1, 0.8, 0.7], np.float32)
TARGET = np.array([1, 0, 1, 1], np.float32)

# Every public loss function, called with its default parameters: name -> f(pred, target).
FUNCTIONS = {
    "dice_loss": segloss.dice_loss,
    "dice_loss_backward": segloss.dice_loss_backward,
    "bce_loss": segloss.bce_loss,
    "bce_loss_backward": segloss.bce_loss_backward,
    "bce_dice_loss": segloss.bce_dice_loss,
    "bce_dice_loss_backward": segloss.bce_dice_loss_backward,
    "bce_dice_loss_and_grad": segloss.bce_dice_loss_and_grad,
}
every_function = pytest.mark.parametrize("name", list(FUNCTIONS))


def call(name, pred, target):
    return FUNCTIONS[name](pred, target)


def assert_same_result(got, expected):
    """Two results of the same function: bitwise equal losses and gradients."""
    if isinstance(expected, tuple):
        assert got[0] == expected[0]
        np.testing.assert_array_equal(got[1], expected[1])
    elif isinstance(expected, np.ndarray):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
    else:
        assert got == expected


def random_inputs(shape, seed=0, soft=False):
    rng = np.random.default_rng(seed)
    pred = rng.random(shape, dtype=np.float32)
    target = rng.random(shape, dtype=np.float32) if soft else (rng.random(shape) < 0.3).astype(np.float32)
    return pred, target


# --- the worked example (DESIGN: PyTorch 2.x float32 results) ----------------------------------


def test_worked_example():
    assert segloss.dice_loss(PRED, TARGET) == pytest.approx(0.10769230, rel=1e-6)
    assert segloss.bce_dice_loss(PRED, TARGET) == pytest.approx(0.15266359, rel=1e-6)
    expected_grad = [-0.22409600, 0.20752795, -0.24145710, -0.26377853]
    np.testing.assert_allclose(segloss.bce_dice_loss_backward(PRED, TARGET), expected_grad, rtol=1e-5)
    loss, grad = segloss.bce_dice_loss_and_grad(PRED, TARGET)
    assert loss == pytest.approx(0.15266359, rel=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5)


def test_worked_example_against_the_reference():
    p, t = PRED, TARGET
    ref.assert_loss_close(segloss.dice_loss(p, t), ref.dice_loss(p, t))
    ref.assert_loss_close(segloss.bce_loss(p, t), ref.bce_loss(p, t))
    ref.assert_loss_close(segloss.bce_dice_loss(p, t), ref.bce_dice_loss(p, t))
    ref.assert_grad_close(segloss.dice_loss_backward(p, t), ref.dice_grad(p, t),
                          ref.grad_atol(p, t, 0, 1))
    ref.assert_grad_close(segloss.bce_loss_backward(p, t), ref.bce_grad(p, t),
                          ref.grad_atol(p, t, 1, 0))
    ref.assert_grad_close(segloss.bce_dice_loss_backward(p, t), ref.bce_dice_grad(p, t),
                          ref.grad_atol(p, t))


def test_docstring_examples():
    for module in (segloss, segloss._api):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# --- parameters --------------------------------------------------------------------------------


def test_parameters_are_passed_through():
    p, t = random_inputs(300, soft=True)
    smooth, wb, wd, g = 0.25, 1.5, 0.75, -3.0
    sf = ref.f32
    ref.assert_loss_close(segloss.dice_loss(p, t, smooth=smooth), ref.dice_loss(p, t, sf(smooth)))
    ref.assert_loss_close(segloss.bce_dice_loss(p, t, weight_bce=wb, weight_dice=wd, smooth=smooth),
                          ref.bce_dice_loss(p, t, wb, wd, smooth))
    ref.assert_grad_close(segloss.dice_loss_backward(p, t, smooth=smooth, grad_loss=g),
                          ref.dice_grad(p, t, smooth, g), ref.grad_atol(p, t, 0, 1, smooth, g))
    ref.assert_grad_close(segloss.bce_loss_backward(p, t, grad_loss=g), ref.bce_grad(p, t, g),
                          ref.grad_atol(p, t, 1, 0, 0, g))
    ref.assert_grad_close(
        segloss.bce_dice_loss_backward(p, t, weight_bce=wb, weight_dice=wd, smooth=smooth, grad_loss=g),
        ref.bce_dice_grad(p, t, wb, wd, smooth, g), ref.grad_atol(p, t, wb, wd, smooth, g))
    loss, grad = segloss.bce_dice_loss_and_grad(p, t, weight_bce=wb, weight_dice=wd, smooth=smooth)
    ref.assert_loss_close(loss, ref.bce_dice_loss(p, t, wb, wd, smooth))
    ref.assert_grad_close(grad, ref.bce_dice_grad(p, t, wb, wd, smooth), ref.grad_atol(p, t, wb, wd, smooth))


def test_scalar_parameters_accept_numpy_scalars_and_ints():
    expected = segloss.bce_dice_loss(PRED, TARGET, 0.5, 1.0, 2.0)
    assert segloss.bce_dice_loss(PRED, TARGET, np.float32(0.5), np.float64(1.0), np.int64(2)) == expected
    assert segloss.bce_dice_loss(PRED, TARGET, 0.5, 1, 2) == expected


@pytest.mark.parametrize("name", ["smooth", "weight_bce", "weight_dice"])
def test_none_parameter_is_a_type_error(name):
    with pytest.raises(TypeError):
        segloss.bce_dice_loss(PRED, TARGET, **{name: None})


def test_grad_loss_scales_the_gradient():
    p, t = random_inputs(100, seed=1)
    plain = segloss.bce_dice_loss_backward(p, t)
    np.testing.assert_allclose(segloss.bce_dice_loss_backward(p, t, grad_loss=-2.5), -2.5 * plain, rtol=1e-6)
    np.testing.assert_array_equal(segloss.bce_dice_loss_backward(p, t, grad_loss=0.0), np.zeros(100, np.float32))


def test_the_combined_loss_with_one_weight_zero_is_the_other_loss():
    p, t = random_inputs(1000, seed=2, soft=True)
    assert segloss.bce_dice_loss(p, t, 1.0, 0.0) == pytest.approx(segloss.bce_loss(p, t), rel=1e-7)
    assert segloss.bce_dice_loss(p, t, 0.0, 1.0, 3.0) == pytest.approx(segloss.dice_loss(p, t, 3.0), rel=1e-7)
    np.testing.assert_allclose(segloss.bce_dice_loss_backward(p, t, 1.0, 0.0), segloss.bce_loss_backward(p, t),
                               rtol=1e-6)
    np.testing.assert_allclose(segloss.bce_dice_loss_backward(p, t, 0.0, 1.0, 3.0),
                               segloss.dice_loss_backward(p, t, 3.0), rtol=1e-6)


def test_fused_equals_forward_and_backward():
    p, t = random_inputs((4, 3, 17, 19), seed=3, soft=True)
    loss, grad = segloss.bce_dice_loss_and_grad(p, t, 0.3, 0.7, 0.5)
    assert loss == pytest.approx(segloss.bce_dice_loss(p, t, 0.3, 0.7, 0.5), rel=1e-7)
    np.testing.assert_allclose(grad, segloss.bce_dice_loss_backward(p, t, 0.3, 0.7, 0.5), rtol=1e-6, atol=1e-12)


# --- results: types, shapes, flattening ----------------------------------------------------


@every_function
def test_result_types(name):
    result = call(name, PRED.reshape(2, 2), TARGET.reshape(2, 2))
    loss, grad = (result if isinstance(result, tuple) else
                  (result, None) if isinstance(result, float) else (None, result))
    if loss is not None:
        assert type(loss) is float
    if grad is not None:
        assert type(grad) is np.ndarray and grad.dtype == np.float32
        assert grad.shape == (2, 2) and grad.flags.c_contiguous and grad.flags.writeable


@every_function
def test_any_shape_is_flattened(name):
    p, t = random_inputs((2, 3, 5, 7), seed=4)
    flat = call(name, p.ravel(), t.ravel())
    shaped = call(name, p, t)
    if isinstance(flat, np.ndarray):
        flat = flat.reshape(p.shape)
    elif isinstance(flat, tuple):
        flat = (flat[0], flat[1].reshape(p.shape))
    assert_same_result(shaped, flat)


@every_function
def test_gradient_is_a_new_array(name):
    p, t = PRED.copy(), TARGET.copy()
    result = call(name, p, t)
    np.testing.assert_array_equal(p, PRED)  # inputs untouched
    np.testing.assert_array_equal(t, TARGET)
    for grad in (result[1] if isinstance(result, tuple) else result,):
        if isinstance(grad, np.ndarray):
            assert not np.shares_memory(grad, p) and not np.shares_memory(grad, t)


@every_function
def test_zero_dimensional_arrays_are_one_element(name):
    p, t = np.array(0.3, np.float32), np.array(1.0, np.float32)
    result = call(name, p, t)
    expected = call(name, p.reshape(1), t.reshape(1))
    if isinstance(expected, np.ndarray):
        assert result.shape == ()
        expected = expected.reshape(())
    elif isinstance(expected, tuple):
        assert result[1].shape == ()
        expected = (expected[0], expected[1].reshape(()))
    assert_same_result(result, expected)
    # Python and numpy scalars are 0-d arrays too.
    assert_same_result(call(name, 0.3, 1.0), result)
    assert_same_result(call(name, np.float32(0.3), np.float32(1.0)), result)


def test_array_likes_are_accepted():
    assert segloss.bce_dice_loss([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 1]) == segloss.bce_dice_loss(PRED, TARGET)
    assert segloss.bce_dice_loss((0.9, 0.1, 0.8, 0.7), TARGET) == segloss.bce_dice_loss(PRED, TARGET)


# --- dtypes ----------------------------------------------------------------------------------


def test_contiguous_float32_is_used_without_a_copy():
    for array in (PRED, PRED.reshape(2, 2), np.array(0.5, np.float32)):
        assert segloss._api._as_float32("pred", array) is array
    readonly = PRED.copy()
    readonly.setflags(write=False)
    assert segloss._api._as_float32("pred", readonly) is readonly


@every_function
@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.longdouble, ">f4", ">f8"])
def test_float_dtypes_are_converted(name, dtype):
    p, t = PRED.astype(dtype), TARGET.astype(dtype)
    assert_same_result(call(name, p, t), call(name, p.astype(np.float32), t.astype(np.float32)))


@every_function
@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint8, np.int32, np.int64, np.uint64])
def test_integer_and_bool_targets_are_converted(name, dtype):
    assert_same_result(call(name, PRED, TARGET.astype(dtype)), call(name, PRED, TARGET))


def test_integer_pred_is_converted():
    assert segloss.bce_dice_loss(np.array([1, 0, 1, 1]), TARGET) == segloss.bce_dice_loss(
        np.array([1, 0, 1, 1], np.float32), TARGET)


def test_float64_inputs_are_rounded_to_float32_first():
    p64 = np.random.default_rng(5).random(1000)
    t64 = (p64 > 0.5).astype(np.float64)
    assert segloss.bce_dice_loss(p64, t64) == segloss.bce_dice_loss(p64.astype(np.float32), t64)
    # ... and are within float32 rounding of the float64 loss of the float64 inputs.
    assert segloss.bce_dice_loss(p64, t64) == pytest.approx(ref.bce_dice_loss(p64, t64), rel=1e-6)
    # Range checks apply to the float32 value: 1 + 1e-9 rounds to 1.
    assert segloss.bce_loss(np.array([1 + 1e-9]), np.array([1.0])) == 0.0


@every_function
@pytest.mark.parametrize("bad", [
    np.array([0.5 + 0j, 0.5]),
    np.array([0.5, 0.5], dtype=object),
    np.array(["0.5", "0.5"]),
    np.array([b"0.5", b"0.5"]),
    np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]"),
    np.array([1, 2], dtype="timedelta64[s]"),
    ["0.5", "0.5"],
    [0.5, None],
], ids=["complex", "object", "str", "bytes", "datetime", "timedelta", "list-of-str", "list-with-None"])
@pytest.mark.parametrize("argument", ["pred", "target"])
def test_non_real_dtypes_are_type_errors(name, bad, argument):
    good = np.array([0.5, 0.5], np.float32)
    with pytest.raises(TypeError, match=argument):
        call(name, bad, good) if argument == "pred" else call(name, good, bad)


@every_function
@pytest.mark.parametrize("argument", ["pred", "target"])
def test_none_is_a_type_error(name, argument):
    with pytest.raises(TypeError, match=f"{argument} is None"):
        call(name, None, TARGET) if argument == "pred" else call(name, PRED, None)


# --- shapes and layouts --------------------------------------------------------------------------


@every_function
@pytest.mark.parametrize("shapes", [((4,), (3,)), ((4,), (2, 2)), ((2, 2), (4, 1)), ((), (1,)), ((4,), ())])
def test_shape_mismatch_names_both_shapes(name, shapes):
    pred_shape, target_shape = shapes
    pred = np.full(pred_shape, 0.5, np.float32)
    target = np.full(target_shape, 1.0, np.float32)
    with pytest.raises(ValueError) as raised:
        call(name, pred, target)
    assert not isinstance(raised.value, SegLossError)
    message = str(raised.value)
    assert f"pred {pred_shape}" in message and f"target {target_shape}" in message


@every_function
@pytest.mark.parametrize("layout", ["strided", "transposed", "reversed", "fortran", "broadcast"])
def test_non_contiguous_arrays(name, layout):
    p, t = random_inputs((6, 10), seed=6, soft=True)
    view = {
        "strided": lambda a: a[::2, 1::3],
        "transposed": lambda a: a.T,
        "reversed": lambda a: a[::-1, ::-1],
        "fortran": np.asfortranarray,
        "broadcast": lambda a: np.broadcast_to(a[0], (6, 10)),
    }[layout]
    pv, tv = view(p), view(t)
    if layout != "fortran":
        assert not pv.flags.c_contiguous
    assert_same_result(call(name, pv, tv), call(name, np.ascontiguousarray(pv), np.ascontiguousarray(tv)))


@every_function
def test_mixed_layouts(name):
    p, t = random_inputs((6, 10), seed=7)
    assert_same_result(call(name, p.T, np.ascontiguousarray(t.T)), call(name, np.ascontiguousarray(p.T), t.T))


@every_function
def test_read_only_arrays(name):
    p, t = PRED.copy(), TARGET.copy()
    p.setflags(write=False)
    t.setflags(write=False)
    assert_same_result(call(name, p, t), call(name, PRED, TARGET))


@every_function
def test_unaligned_float32_arrays(name):
    buffer = np.zeros(4 * 4 + 1, np.uint8)  # numpy allocations are aligned: offset 1 is not
    p = np.ndarray(4, np.float32, buffer=buffer, offset=1)
    p[...] = PRED
    assert not p.flags.aligned
    assert_same_result(call(name, p, TARGET), call(name, PRED, TARGET))


class Subclass(np.ndarray):
    pass


@every_function
def test_ndarray_subclasses(name):
    result = call(name, PRED.view(Subclass), TARGET.view(Subclass))
    assert_same_result(result, call(name, PRED, TARGET))


# --- library errors ------------------------------------------------------------------------------


def raises_status(status):
    """pytest.raises for a SegLossError with `status` and the library's message for it."""
    return pytest.raises(SegLossError, match=f"status {int(status)},")


def check_error(error: SegLossError, status: Status):
    assert isinstance(error, ValueError)
    assert error.status == status and type(error.status) is Status
    assert error.message == segloss._library.library.segloss_status_string(int(status)).decode()
    assert error.function.startswith("segloss_")
    assert error.message in str(error)


@every_function
@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0, 2)])
def test_empty_input(name, shape):
    with pytest.raises(SegLossError) as raised:
        call(name, np.zeros(shape, np.float32), np.zeros(shape, np.float32))
    check_error(raised.value, Status.ERROR_EMPTY_INPUT)
    assert "count is 0" in raised.value.message


@every_function
def test_empty_read_only_and_float64_input(name):
    empty = np.zeros(0)
    empty.setflags(write=False)
    with raises_status(Status.ERROR_EMPTY_INPUT):
        call(name, empty, empty)


BAD_VALUES = [-0.1, 1.1, np.nan, np.inf, -np.inf, -1e-30, 1.0000001, np.float32(1) + np.finfo(np.float32).eps]


@every_function
@pytest.mark.parametrize("value", BAD_VALUES)
@pytest.mark.parametrize("position", [0, 2, 1000])
def test_pred_out_of_range(name, value, position):
    p, t = random_inputs(1001, seed=8)
    p[position] = value
    with pytest.raises(SegLossError) as raised:
        call(name, p, t)
    check_error(raised.value, Status.ERROR_PRED_OUT_OF_RANGE)
    assert "pred" in raised.value.message


@every_function
@pytest.mark.parametrize("value", BAD_VALUES)
@pytest.mark.parametrize("position", [0, 2, 1000])
def test_target_out_of_range(name, value, position):
    p, t = random_inputs(1001, seed=9)
    t[position] = value
    with pytest.raises(SegLossError) as raised:
        call(name, p, t)
    check_error(raised.value, Status.ERROR_TARGET_OUT_OF_RANGE)
    assert "target" in raised.value.message


@every_function
def test_both_out_of_range_is_one_of_the_two_errors(name):
    with pytest.raises(SegLossError) as raised:
        call(name, np.array([2.0], np.float32), np.array([-1.0], np.float32))
    assert raised.value.status in (Status.ERROR_PRED_OUT_OF_RANGE, Status.ERROR_TARGET_OUT_OF_RANGE)


@every_function
def test_the_range_bounds_are_valid(name):
    p = np.array([0.0, 1.0, -0.0, 0.0, 1.0, np.finfo(np.float32).smallest_subnormal], np.float32)
    t = np.array([0.0, 1.0, 0.0, -0.0, 0.5, 1.0], np.float32)
    result = call(name, p, t)
    for value in (result if isinstance(result, tuple) else (result,)):
        assert np.all(np.isfinite(value))


INVALID_SCALARS = [-1.0, -1e-30, np.nan, np.inf, -np.inf, 1e300, -1e300]
#   1e300 is finite in Python but infinite as the C API's float: still invalid.

# (function, keyword) for every weight/smooth parameter of every function
SCALAR_PARAMETERS = [
    (fn, keyword)
    for fn, keywords in [
        ("dice_loss", ["smooth"]),
        ("dice_loss_backward", ["smooth"]),
        ("bce_dice_loss", ["weight_bce", "weight_dice", "smooth"]),
        ("bce_dice_loss_backward", ["weight_bce", "weight_dice", "smooth"]),
        ("bce_dice_loss_and_grad", ["weight_bce", "weight_dice", "smooth"]),
    ]
    for keyword in keywords
]


@pytest.mark.parametrize("name,keyword", SCALAR_PARAMETERS)
@pytest.mark.parametrize("value", INVALID_SCALARS)
def test_invalid_weight_or_smooth(name, keyword, value):
    function = getattr(segloss, name)
    with pytest.raises(SegLossError) as raised:
        function(PRED, TARGET, **{keyword: value})
    check_error(raised.value, Status.ERROR_INVALID_ARGUMENT)


@pytest.mark.parametrize("name,keyword", SCALAR_PARAMETERS)
@pytest.mark.parametrize("value", [0.0, -0.0, 1e-30, 1e30])
def test_valid_weight_or_smooth_edges(name, keyword, value):
    getattr(segloss, name)(PRED, TARGET, **{keyword: value})


@pytest.mark.parametrize("name", ["dice_loss_backward", "bce_loss_backward", "bce_dice_loss_backward"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e300])
def test_non_finite_grad_loss(name, value):
    with pytest.raises(SegLossError) as raised:
        getattr(segloss, name)(PRED, TARGET, grad_loss=value)
    check_error(raised.value, Status.ERROR_INVALID_ARGUMENT)


def test_dice_of_nothing_with_smooth_zero_is_nan():
    zeros = np.zeros(5, np.float32)
    assert math.isnan(segloss.dice_loss(zeros, zeros, smooth=0.0))
    assert np.isnan(segloss.dice_loss_backward(zeros, zeros, smooth=0.0)).all()
    assert math.isnan(segloss.bce_dice_loss(zeros, zeros, smooth=0.0))
    assert segloss.dice_loss(zeros, zeros, smooth=1.0) == 0.0


def test_bce_clamps_like_torch():
    # log 0 is clamped at -100: a confident wrong prediction costs 100, not infinity.
    assert segloss.bce_loss(np.float32(0.0), np.float32(1.0)) == 100.0
    assert segloss.bce_loss(np.float32(1.0), np.float32(0.0)) == 100.0
    # the gradient's denominator is clamped at 1e-12
    np.testing.assert_allclose(segloss.bce_loss_backward(np.float32(0.0), np.float32(1.0)), -1e12, rtol=1e-6)
    np.testing.assert_allclose(segloss.bce_loss_backward(np.float32(1.0), np.float32(0.0)), 1e12, rtol=1e-6)


# --- threads, kernel, version ------------------------------------------------------------------


@pytest.fixture
def restore_threads():
    yield
    segloss.set_num_threads(0)


def test_set_and_get_num_threads(restore_threads):
    default = segloss.get_num_threads()
    assert default >= 1
    for n, expected in [(1, 1), (3, 3), (256, 256), (257, 256), (10**6, 256), (2**40, 256), (True, 1)]:
        segloss.set_num_threads(n)
        assert segloss.get_num_threads() == expected, n
    for n in (0, -1, -(2**40)):
        segloss.set_num_threads(5)
        segloss.set_num_threads(n)
        assert segloss.get_num_threads() == default, n


@pytest.mark.parametrize("bad", [1.5, "2", None])
def test_set_num_threads_needs_an_integer(bad, restore_threads):
    with pytest.raises(TypeError):
        segloss.set_num_threads(bad)


def test_results_do_not_depend_on_the_thread_count(restore_threads):
    p, t = random_inputs((3, 100_003), seed=10, soft=True)
    results = []
    for n in (1, 2, 3, 8):
        segloss.set_num_threads(n)
        results.append((segloss.dice_loss(p, t), segloss.bce_loss(p, t), segloss.bce_dice_loss_and_grad(p, t),
                        segloss.bce_dice_loss_backward(p, t, grad_loss=0.5)))
    for other in results[1:]:
        assert other[:2] == results[0][:2]
        assert_same_result(other[2], results[0][2])
        np.testing.assert_array_equal(other[3], results[0][3])


def test_concurrent_calls_from_host_threads():
    inputs = [random_inputs(20_000 + 17 * i, seed=i, soft=i % 2 == 1) for i in range(8)]
    expected = [segloss.bce_dice_loss_and_grad(p, t) for p, t in inputs]
    failures = []

    def work(i):
        p, t = inputs[i]
        for _ in range(20):
            loss, grad = segloss.bce_dice_loss_and_grad(p, t)
            if loss != expected[i][0] or not np.array_equal(grad, expected[i][1]):
                failures.append(i)
            try:
                segloss.bce_loss(p[:0], t[:0])
            except SegLossError as error:
                if error.status != Status.ERROR_EMPTY_INPUT:
                    failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_kernel_name():
    assert segloss.kernel_name() in ("avx512", "avx2", "baseline")


def test_version():
    assert segloss.__version__ == segloss.version()
    major, minor, patch = (int(part) for part in segloss.__version__.split("."))
    assert segloss._library.library.segloss_version_number() == major * 10000 + minor * 100 + patch
    assert (major, minor) == (segloss._library.EXPECTED_MAJOR, segloss._library.EXPECTED_MINOR)


def test_public_names():
    expected = {"dice_loss", "dice_loss_backward", "bce_loss", "bce_loss_backward", "bce_dice_loss",
                "bce_dice_loss_backward", "bce_dice_loss_and_grad", "set_num_threads", "get_num_threads",
                "kernel_name", "__version__", "SegLossError"}
    assert expected <= set(segloss.__all__)
    for name in segloss.__all__:
        assert hasattr(segloss, name)
    assert issubclass(SegLossError, ValueError)
