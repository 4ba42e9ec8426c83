"""The general API through the numpy binding (segloss.loss, loss_grad, loss_and_grad,
segloss.Options): the ctypes declarations against include/segloss.h; Options and their
rules; every option against the float64 reference (general_reference.py) and against
finite differences; shapes, dtypes, masks, out=; every error path.

Tests that call the library skip, saying why, while libsegloss.so predates the general
API; those that need general_reference.py skip while it does not exist."""
import ctypes
import dataclasses
import doctest
import math
import re
import types

import numpy as np
import pytest

import general_cases as cases
import segloss
import segloss._general as general
from general_cases import needs_general_api
from segloss import Options, SegLossError, Status, _library
from test_library import HEADER

try:
    import general_reference as gref
except ImportError:  # written in parallel; these tests run once it exists
    gref = None

needs_reference = pytest.mark.skipif(gref is None, reason="Tests/python/general_reference.py does not exist yet")

PRED = np.array([0.9, 0.1, 0.8, 0.7], np.float32)
TARGET = np.array([1, 0, 1, 1], np.float32)


def raises_status(status):
    return pytest.raises(SegLossError, match=f"status {int(status)},")


# --- the declarations against the header -------------------------------------------------------


def header_text():
    return re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)


STRUCT_C_TYPES = {"size_t": ctypes.c_size_t, "int": ctypes.c_int, "double": ctypes.c_double,
                  "const double *": ctypes.POINTER(ctypes.c_double)}


@pytest.mark.parametrize("name, struct", [("segloss_options", _library.OptionsStruct),
                                          ("segloss_shape", _library.ShapeStruct)])
def test_structs_match_the_header(name, struct):
    body = re.search(rf"typedef struct {name} \{{(.*?)\}} {name};", header_text(), re.S).group(1)
    fields = []
    for declaration in body.split(";")[:-1]:
        declaration = " ".join(declaration.split())
        c_type, field = re.fullmatch(r"(.*?)\s*\b(\w+)", declaration).groups()
        fields.append((field, STRUCT_C_TYPES[re.sub(r"\s*\*", " *", c_type)]))
    assert [(field, c_type) for field, c_type in struct._fields_] == fields


# C enum -> (the binding's IntEnum, the prefix of the C names its member names leave out)
ENUMS = {"segloss_input_kind": (_library.InputKind, "SEGLOSS_INPUT_"),
         "segloss_element_term": (_library.ElementTerm, "SEGLOSS_ELEMENT_"),
         "segloss_region_term": (_library.RegionTerm, "SEGLOSS_REGION_"),
         "segloss_segments": (_library.Segments, "SEGLOSS_SEGMENT_"),
         "segloss_empty_policy": (_library.EmptyPolicy, "SEGLOSS_EMPTY_"),
         "segloss_reduction": (_library.Reduction, "SEGLOSS_REDUCTION_"),
         "segloss_dtype": (_library.DType, "SEGLOSS_"),
         "segloss_mask_layout": (_library.MaskLayout, "SEGLOSS_MASK_")}


@pytest.mark.parametrize("name", ENUMS)
def test_enums_match_the_header(name):
    body = re.search(rf"typedef enum {name} \{{(.*?)\}} {name};", header_text(), re.S).group(1)
    values = dict((key, int(value)) for key, value in re.findall(r"(SEGLOSS_\w+)\s*=\s*(\d+)", body))
    enum, prefix = ENUMS[name]
    assert all(key.startswith(prefix) for key in values)
    assert {key[len(prefix):]: value for key, value in values.items()} == \
        {member.name: member.value for member in enum}


def test_sums_per_segment_matches_the_header():
    value = re.search(r"#define SEGLOSS_SUMS_PER_SEGMENT (\d+)", HEADER.read_text()).group(1)
    assert _library.SUMS_PER_SEGMENT == int(value) == 6


def test_option_fields_are_the_c_fields():
    """Options has the C struct's fields (less struct_size), in its order."""
    c_fields = [name for name, _ in _library.OptionsStruct._fields_][1:]
    assert [field.name for field in dataclasses.fields(Options)] == c_fields


@needs_general_api
def test_defaults_are_segloss_options_init():
    struct = _library.OptionsStruct()
    _library.library.segloss_options_init(ctypes.byref(struct))
    assert struct.struct_size == ctypes.sizeof(_library.OptionsStruct)
    assert not struct.pos_weight and not struct.channel_weights  # NULL
    built, _ = general._options_struct(Options(), 3)
    for name, _ in _library.OptionsStruct._fields_:
        if name not in ("pos_weight", "channel_weights"):
            assert getattr(built, name) == getattr(struct, name), name
    for field in dataclasses.fields(Options):
        if field.name in general._ENUM_FIELDS:
            assert general._ENUM_FIELDS[field.name][field.default] == getattr(struct, field.name)
        elif field.default is not None:
            assert field.default == getattr(struct, field.name), field.name


@needs_general_api
def test_the_general_statuses_have_the_librarys_messages():
    message = _library.library.segloss_status_string
    assert message(Status.ERROR_INVALID_OPTIONS).decode().startswith("invalid options")
    assert message(Status.ERROR_INVALID_SHAPE).decode().startswith("invalid shape")


# --- a library without the general API ------------------------------------------------------------


def fake_library(*, missing=(), struct_size=None):
    """An object standing in for a CDLL: the functions of the general API, less `missing`;
    segloss_options_init writes `struct_size` (default: this binding's)."""
    def function(name):
        def init(pointer):
            options = pointer.contents
            options.struct_size = struct_size or ctypes.sizeof(_library.OptionsStruct)
            return 0
        f = init if name == "segloss_options_init" else (lambda *arguments: 0)
        f.__name__ = name
        f.errcheck = None
        return f

    names = ["segloss_dice_forward", "segloss_options_init", "segloss_segment_count", "segloss_forward",
             "segloss_backward", "segloss_forward_backward"]
    return types.SimpleNamespace(**{name: function(name) for name in names if name not in missing})


def test_declare_general_reports_a_missing_function():
    assert _library.declare_general(fake_library()) is None
    reason = _library.declare_general(fake_library(missing=["segloss_forward_backward"]))
    assert "no general API" in reason and "segloss_forward_backward" in reason and "make lib" in reason


def test_declare_general_reports_a_different_struct_size():
    size = ctypes.sizeof(_library.OptionsStruct)
    reason = _library.declare_general(fake_library(struct_size=size + 8))
    assert f"{size + 8} bytes" in reason and f"has {size}" in reason


def test_without_the_general_api_the_flat_api_works(monkeypatch):
    monkeypatch.setattr(_library, "general_api_missing", "the library has no general API (reason)")
    for call in (lambda: segloss.loss(PRED, TARGET), lambda: segloss.loss_grad(PRED, TARGET),
                 lambda: segloss.loss_and_grad(PRED, TARGET)):
        with pytest.raises(segloss.GeneralAPIUnavailable, match=r"no general API \(reason\)"):
            call()
    assert segloss.bce_dice_loss(PRED, TARGET) == pytest.approx(0.15266359, rel=1e-6)
    assert Options(region_term="jaccard").region_term == "jaccard"  # pure Python: works


# --- Options ------------------------------------------------------------------------------------


def test_every_option_is_swept_by_the_cases():
    cases.assert_every_option_is_swept()


def test_options_defaults():
    o = Options()
    assert (o.input, o.element_term, o.region_term, o.segments, o.empty_policy, o.reduction) == (
        "probabilities", "bce", "dice", "all", "keep", "mean")
    assert (o.squared, o.log_loss) == (False, False)
    assert (o.element_weight, o.region_weight, o.smooth_nr, o.smooth_dr, o.alpha, o.beta, o.gamma,
            o.denominator_min, o.log_min, o.label_smoothing) == (0.5, 0.5, 1, 1, 0.5, 0.5, 1, 0, 1e-7, 0)
    assert o.pos_weight is None and o.channel_weights is None
    assert repr(o) == "Options()"


def test_options_are_immutable_hashable_and_normalized():
    o = Options(region_term="tversky", alpha=np.float32(0.25), gamma=2, squared=0,
                pos_weight=np.array([1, 2, 3]))
    assert o.alpha == 0.25 and type(o.alpha) is float and type(o.gamma) is float
    assert o.squared is False and o.pos_weight == (1.0, 2.0, 3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.alpha = 1.0
    assert hash(o) == hash(Options(region_term="tversky", alpha=0.25, gamma=2.0, pos_weight=[1, 2, 3]))
    assert dataclasses.replace(o, gamma=1.0).gamma == 1.0
    assert repr(o) == "Options(region_term='tversky', alpha=0.25, gamma=2.0, pos_weight=(1.0, 2.0, 3.0))"


@pytest.mark.parametrize("field, value", [
    ("input", "probability"), ("input", "LOGITS"), ("element_term", "dice"),
    ("region_term", "iou"), ("segments", "batch"), ("empty_policy", "skip"), ("reduction", "none")])
def test_unknown_strings_list_the_allowed_values(field, value):
    with pytest.raises(SegLossError) as raised:
        Options(**{field: value})
    error = raised.value
    assert isinstance(error, ValueError) and error.status == Status.ERROR_INVALID_OPTIONS
    assert repr(value) in str(error)
    for allowed in general._ENUM_FIELDS[field]:
        assert repr(allowed) in str(error)


# Options that break one rule of segloss_options (the header): (keyword arguments, words of
# the message).
INVALID_OPTIONS = [
    ({"element_weight": -0.5}, "element_weight must be >= 0"),
    ({"region_weight": -1e-300}, "region_weight must be >= 0"),
    ({"smooth_nr": -1.0}, "smooth_nr"),
    ({"smooth_dr": -1.0}, "smooth_dr"),
    ({"alpha": -0.1, "region_term": "tversky"}, "alpha"),
    ({"beta": -0.1, "region_term": "tversky"}, "beta"),
    ({"denominator_min": -1.0}, "denominator_min"),
    ({"gamma": 0.0}, "gamma must be > 0"),
    ({"gamma": -1.0}, "gamma must be > 0"),
    ({"log_min": 0.0}, "log_min must be in (0, 1]"),
    ({"log_min": 1.5}, "log_min"),
    ({"label_smoothing": -0.1}, "label_smoothing"),
    ({"label_smoothing": 1.01}, "label_smoothing"),
    ({"smooth_nr": math.inf}, "smooth_nr must be finite"),
    ({"alpha": math.nan}, "alpha must be finite"),
    ({"element_weight": -math.inf}, "finite"),
    ({"squared": True, "region_term": "tversky"}, "squared needs"),
    ({"squared": True, "region_term": "none"}, "squared needs"),
    ({"log_loss": True, "gamma": 2.0}, "log_loss needs gamma 1"),
    ({"pos_weight": [1.0], "element_term": "none"}, "pos_weight needs"),
    ({"pos_weight": [1.0, -1.0]}, "pos_weight must be finite and >= 0"),
    ({"pos_weight": [math.nan]}, "pos_weight"),
    ({"channel_weights": [1.0], "segments": "all"}, "channel_weights needs"),
    ({"channel_weights": [1.0], "segments": "sample"}, "channel_weights needs"),
    ({"channel_weights": [math.inf], "segments": "channel"}, "channel_weights"),
    ({"element_term": "none", "region_term": "none"}, "both 'none'"),
]


@pytest.mark.parametrize("kwargs, words", INVALID_OPTIONS, ids=[str(k) for k, _ in INVALID_OPTIONS])
def test_invalid_options_are_segloss_errors(kwargs, words):
    with pytest.raises(SegLossError) as raised:
        Options(**kwargs)
    assert raised.value.status == Status.ERROR_INVALID_OPTIONS
    assert words in str(raised.value) and raised.value.function == "segloss.Options"


@needs_general_api
@pytest.mark.parametrize("kwargs, words", INVALID_OPTIONS, ids=[str(k) for k, _ in INVALID_OPTIONS])
def test_invalid_options_through_the_functions(kwargs, words):
    with pytest.raises(SegLossError, match=re.escape(words)):
        segloss.loss(PRED.reshape(1, 1, 4), TARGET.reshape(1, 1, 4), **kwargs)


@needs_general_api
@pytest.mark.parametrize("kwargs, words", INVALID_OPTIONS, ids=[str(k) for k, _ in INVALID_OPTIONS])
def test_the_library_rejects_the_same_options(kwargs, words):
    """Each rule enforced in Python is the library's too: the struct built without Options'
    checks gives SEGLOSS_ERROR_INVALID_OPTIONS."""
    struct, keep = raw_options(**kwargs)
    channels = max([len(kwargs.get(name) or [0]) for name in ("pos_weight", "channel_weights")])
    shape = _library.ShapeStruct(1, channels, 4, _library.DType.FLOAT32, _library.DType.FLOAT32, 0)
    with pytest.raises(SegLossError) as raised:
        raw_forward(struct, shape, np.tile(PRED, channels), np.tile(TARGET, channels))
    assert raised.value.status == Status.ERROR_INVALID_OPTIONS
    assert raised.value.function == "segloss_forward"


def raw_options(**kwargs):
    """segloss_options from segloss_options_init with `kwargs` set as they are (enum names
    as strings, vectors as sequences), and the arrays its pointers point to."""
    struct = _library.OptionsStruct()
    _library.library.segloss_options_init(ctypes.byref(struct))
    keep = []
    for name, value in kwargs.items():
        if name in general._ENUM_FIELDS:
            value = general._ENUM_FIELDS[name][value]
        elif name in ("pos_weight", "channel_weights"):
            value = (ctypes.c_double * len(value))(*value)
            keep.append(value)
        setattr(struct, name, value)
    return struct, keep


def raw_forward(options, shape, pred, target, mask=None):
    loss = ctypes.c_double()
    _library.library.segloss_forward(
        ctypes.byref(options) if options is not None else None,
        ctypes.byref(shape) if shape is not None else None,
        pred.ctypes.data, target.ctypes.data, None if mask is None else mask.ctypes.data,
        ctypes.byref(loss), None, None)
    return loss.value


@needs_general_api
@pytest.mark.parametrize("field, value", [("input", 2), ("element_term", -1), ("region_term", 4),
                                          ("segments", 4), ("empty_policy", 3), ("reduction", 2),
                                          ("squared", 2), ("log_loss", -1), ("struct_size", 8),
                                          ("struct_size", 0)])
def test_the_library_rejects_unknown_enum_values_and_struct_sizes(field, value):
    struct, _ = raw_options()
    setattr(struct, field, value)
    shape = _library.ShapeStruct(1, 1, 4, _library.DType.FLOAT32, _library.DType.FLOAT32, 0)
    with raises_status(Status.ERROR_INVALID_OPTIONS):
        raw_forward(struct, shape, PRED, TARGET)


@needs_general_api
@pytest.mark.parametrize("fields", [{"pred_dtype": _library.DType.UINT8}, {"pred_dtype": 3},
                                    {"target_dtype": 3}, {"target_dtype": -1}, {"mask_layout": 2}])
def test_the_library_rejects_invalid_shapes(fields):
    struct, _ = raw_options()
    shape = _library.ShapeStruct(1, 1, 4, _library.DType.FLOAT32, _library.DType.FLOAT32, 0)
    for name, value in fields.items():
        setattr(shape, name, value)
    with raises_status(Status.ERROR_INVALID_SHAPE):
        raw_forward(struct, shape, PRED, TARGET, np.ones(4, np.uint8))


@needs_general_api
def test_the_mask_layout_is_read_only_with_a_mask():
    struct, _ = raw_options()
    shape = _library.ShapeStruct(1, 1, 4, _library.DType.FLOAT32, _library.DType.FLOAT32, 99)
    assert raw_forward(struct, shape, PRED, TARGET) == pytest.approx(segloss.loss(PRED, TARGET), rel=1e-15)


@needs_general_api
def test_null_options_and_shape():
    """NULL options: the header lists NULL under SEGLOSS_ERROR_INVALID_OPTIONS; NULL shape is
    a NULL pointer (either status is an error: the call must not crash)."""
    struct, _ = raw_options()
    shape = _library.ShapeStruct(1, 1, 4, _library.DType.FLOAT32, _library.DType.FLOAT32, 0)
    with pytest.raises(SegLossError) as raised:
        raw_forward(None, shape, PRED, TARGET)
    assert raised.value.status in (Status.ERROR_INVALID_OPTIONS, Status.ERROR_NULL_POINTER)
    with pytest.raises(SegLossError) as raised:
        raw_forward(struct, None, PRED, TARGET)
    assert raised.value.status in (Status.ERROR_INVALID_SHAPE, Status.ERROR_NULL_POINTER)


@pytest.mark.parametrize("field, value", [("gamma", None), ("alpha", "0.5"), ("smooth_nr", [1.0]),
                                          ("input", 1), ("region_term", None), ("squared", "yes"),
                                          ("log_loss", 2), ("pos_weight", "1, 2"),
                                          ("channel_weights", [1 + 2j])])
def test_wrong_types_are_type_errors(field, value):
    with pytest.raises(TypeError, match=field):
        Options(**{field: value})


def test_vectors_must_be_one_dimensional():
    with pytest.raises(ValueError, match="one-dimensional"):
        Options(pos_weight=[[1.0, 2.0]])


@pytest.mark.parametrize("kwargs", [
    {"log_min": 1.0}, {"label_smoothing": 0.0}, {"label_smoothing": 1.0}, {"gamma": 1e-300},
    {"element_weight": 0.0}, {"region_weight": 0.0}, {"element_term": "none"}, {"region_term": "none"},
    {"squared": True, "region_term": "jaccard"}, {"log_loss": True}, {"pos_weight": []},
    {"channel_weights": [0.0], "segments": "sample_channel"}, {"smooth_nr": 0, "smooth_dr": 0},
    {"alpha": 0, "beta": 0, "region_term": "tversky"}, {"denominator_min": 1e300}])
def test_valid_edge_options(kwargs):
    Options(**kwargs)


@needs_general_api
def test_options_argument_forms():
    p, t = cases.inputs((2, 3, 4), seed=1)[:2]
    o = Options(region_term="jaccard", segments="channel")
    expected = segloss.loss(p, t, options=o)
    assert segloss.loss(p, t, region_term="jaccard", segments="channel") == expected
    assert segloss.loss(p, t, options={"region_term": "jaccard", "segments": "channel"}) == expected
    assert segloss.loss(p, t, options=Options(region_term="jaccard"), segments="channel") == expected
    assert segloss.loss(p, t, options=o, region_term="dice") == segloss.loss(p, t, segments="channel")
    with pytest.raises(TypeError):
        segloss.loss(p, t, smooth=1.0)  # not a field
    with pytest.raises(TypeError, match="options must be"):
        segloss.loss(p, t, options="dice")


@needs_general_api
def test_vector_lengths_must_match_the_channels():
    p, t, _ = cases.inputs((2, 3, 4), seed=2)
    with pytest.raises(ValueError, match="pos_weight has 2 values, but pred has 3 channels"):
        segloss.loss(p, t, pos_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="channel_weights has 4 values"):
        segloss.loss_and_grad(p, t, segments="channel", channel_weights=[1.0] * 4)
    with pytest.raises(ValueError, match="pred has 1 channel:"):
        segloss.loss_grad(p.ravel(), t.ravel(), pos_weight=[1.0, 2.0])
    segloss.loss(p.ravel(), t.ravel(), pos_weight=[2.0])


# --- the worked example and the flat API ------------------------------------------------------------


@needs_general_api
def test_docstring_examples():
    for module in (general,):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


@needs_general_api
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_defaults_are_the_flat_bce_dice(dtype):
    p, t, _ = cases.inputs((2, 3, 17, 19), seed=3, dtype=dtype)
    p32, t32 = p.astype(np.float32), t.astype(np.float32)
    value, grad = segloss.loss_and_grad(p, t)
    assert value == pytest.approx(segloss.bce_dice_loss(p32, t32), rel=1e-6)
    np.testing.assert_allclose(grad, segloss.bce_dice_loss_backward(p32, t32), rtol=1e-5,
                               atol=1e-6 * np.abs(grad).max())
    assert segloss.loss(p, t, element_term="none", region_weight=1.0) == pytest.approx(
        segloss.dice_loss(p32, t32), rel=1e-6)
    assert segloss.loss(p, t, region_term="none", element_weight=1.0) == pytest.approx(
        segloss.bce_loss(p32, t32), rel=1e-6)


# --- results: types, shapes, consistency ------------------------------------------------------------


@needs_general_api
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 2, 3, 4), (4, 3), (7,), (1, 1, 1)])
def test_result_types_and_shapes(dtype, shape):
    p, t, _ = cases.inputs(shape, seed=4, dtype=dtype)
    value = segloss.loss(p, t)
    assert type(value) is float
    grad = segloss.loss_grad(p, t)
    assert type(grad) is np.ndarray and grad.dtype == dtype and grad.shape == shape
    assert grad.flags.c_contiguous and grad.flags.writeable
    result = segloss.loss_and_grad(p, t, return_segments=True)
    assert len(result) == 4 and type(result[0]) is float and result[1].dtype == dtype
    value_s, scores, sums = segloss.loss(p, t, return_segments=True)
    assert scores.dtype == sums.dtype == np.float64
    assert scores.shape == (1,) and sums.shape == (1, _library.SUMS_PER_SEGMENT)


SEGMENT_COUNTS = {"all": lambda n, c: 1, "sample": lambda n, c: n, "channel": lambda n, c: c,
                  "sample_channel": lambda n, c: n * c}


@needs_general_api
@pytest.mark.parametrize("segments", SEGMENT_COUNTS)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 2, 2, 2, 2), (5, 4), (6,)])
def test_segment_outputs(segments, shape):
    """One score and six sums per segment, sample-major; the sums are what their names say
    (TP, FP, FN, SQ, sum of element terms, valid count), summed per segment."""
    p, t, _ = cases.inputs(shape, seed=5, target_kind="soft")
    n, c = (1, 1) if len(shape) == 1 else shape[:2]
    value, scores, sums = segloss.loss(p, t, segments=segments, return_segments=True)
    count = SEGMENT_COUNTS[segments](n, c)
    assert scores.shape == (count,) and sums.shape == (count, 6)
    p3, t3 = p.reshape(n, c, -1), t.reshape(n, c, -1)
    axes = {"all": (0, 1, 2), "sample": (1, 2), "channel": (0, 2), "sample_channel": (2,)}[segments]
    bce = -(t3 * np.log(p3) + (1 - t3) * np.log1p(-p3))
    expected = np.stack([np.sum(x, axis=axes).reshape(-1) for x in (
        p3 * t3, p3 * (1 - t3), (1 - p3) * t3, (p3 - t3) ** 2, bce, np.ones_like(p3))], axis=1)
    np.testing.assert_allclose(sums, expected, rtol=1e-12)
    tp, fp, fn = expected[:, 0], expected[:, 1], expected[:, 2]
    np.testing.assert_allclose(scores, (2 * tp + 1) / (2 * tp + fp + fn + 1), rtol=1e-12)
    # the same outputs from the fused call
    value2, _, scores2, sums2 = segloss.loss_and_grad(p, t, segments=segments, return_segments=True)
    assert value2 == value
    np.testing.assert_array_equal(scores2, scores)
    np.testing.assert_array_equal(sums2, sums)


@needs_general_api
@pytest.mark.parametrize("element_term, element_weight", [("bce", 0.0), ("none", 0.5)])
def test_the_element_sums_are_0_when_the_term_is_left_out(element_term, element_weight):
    """segloss.h: the E column is 0 when the element term is NONE or its weight 0."""
    p, t, _ = cases.inputs((2, 3, 4), seed=27)
    for function in (segloss.loss, segloss.loss_and_grad):
        sums = function(p, t, segments="sample_channel", element_term=element_term,
                        element_weight=element_weight, region_weight=1.0, return_segments=True)[-1]
        assert not np.any(sums[:, 4]) and np.all(sums[:, 5] == 4)


@needs_general_api
@pytest.mark.parametrize("kwargs", [{}, {"smooth_nr": 0.25, "smooth_dr": 2.0},
                                    {"denominator_min": 30.0}, {"alpha": 0.1, "beta": 0.9}])
def test_scores_with_region_none_are_the_dice_index(kwargs):
    """segloss.h: with REGION_NONE, segment_scores holds the Dice index."""
    p, t, _ = cases.inputs((2, 3, 4, 4), seed=28, input_kind="logits")
    o = Options(input="logits", region_term="none", segments="sample_channel", **kwargs)
    _, scores, sums = segloss.loss(p, t, options=o, return_segments=True)
    tp, fp, fn = sums[:, 0], sums[:, 1], sums[:, 2]
    dice = (2 * tp + o.smooth_nr) / np.maximum(2 * tp + fp + fn + o.smooth_dr, o.denominator_min)
    np.testing.assert_allclose(scores, dice, rtol=1e-12)


@needs_general_api
@pytest.mark.parametrize("name", cases.CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 3, 1200)])  # one short block; two whole (512) and a short one
@pytest.mark.parametrize("mask_kind", ["element", "none"])
def test_the_three_functions_agree_bitwise(name, dtype, shape, mask_kind):
    o = cases.options(name)
    p, t, m = cases.inputs(shape, seed=6, input_kind=o.input, mask_kind=mask_kind, dtype=dtype)
    value, grad, scores, sums = segloss.loss_and_grad(p, t, m, options=o, return_segments=True)
    value_f, scores_f, sums_f = segloss.loss(p, t, m, options=o, return_segments=True)
    assert value_f == value and segloss.loss(p, t, m, options=o) == value
    np.testing.assert_array_equal(scores_f, scores)
    np.testing.assert_array_equal(sums_f, sums)
    np.testing.assert_array_equal(segloss.loss_grad(p, t, m, options=o), grad)
    assert segloss.loss_and_grad(p, t, m, options=o)[0] == value


@needs_general_api
@pytest.mark.parametrize("name", cases.CASES)
@pytest.mark.parametrize("target_kind", ["float32", "uint8"])
def test_segment_outputs_change_the_results_within_rounding_only(name, target_kind):
    """Asking for the segment outputs may take another path through the library (see the
    next test); the results agree to float32 rounding."""
    o = cases.options(name)
    p, t, _ = cases.inputs((2, 3, 5, 4), seed=6, input_kind=o.input, target_kind=target_kind,
                           dtype=np.float32)
    plain = segloss.loss_and_grad(p, t, options=o)
    with_segments = segloss.loss_and_grad(p, t, options=o, return_segments=True)
    assert with_segments[0] == pytest.approx(plain[0], rel=1e-6)
    np.testing.assert_allclose(with_segments[1], plain[1], rtol=1e-6, atol=1e-7 * np.abs(plain[1]).max())
    assert segloss.loss(p, t, options=o, return_segments=True)[0] == pytest.approx(plain[0], rel=1e-6)


@needs_general_api
@needs_general_api
def test_segment_outputs_change_the_results_only_in_the_last_bits():
    # The header: the seed's loss on plain float32 inputs takes the flat functions' passes
    # unless segment outputs are asked for; the two paths agree to float32 rounding, not
    # bitwise. Any other loss takes the general passes either way: bitwise the same.
    p, t, _ = cases.inputs((2, 3, 8), seed=3, target_kind="float32", dtype=np.float32)
    plain = segloss.loss_and_grad(p, t)
    with_segments = segloss.loss_and_grad(p, t, return_segments=True)
    assert plain[0] == pytest.approx(with_segments[0], rel=1e-6)
    np.testing.assert_allclose(plain[1], with_segments[1], rtol=1e-5, atol=1e-6 * np.abs(plain[1]).max())
    logits = segloss.loss_and_grad(p, t, input="logits")
    logits_with = segloss.loss_and_grad(p, t, input="logits", return_segments=True)
    assert logits[0] == logits_with[0]
    np.testing.assert_array_equal(logits[1], logits_with[1])


@needs_general_api
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_loss_scales_the_gradient(dtype):
    p, t, m = cases.inputs((2, 3, 6), seed=7, mask_kind="pixel", dtype=dtype)
    plain = segloss.loss_grad(p, t, m)
    np.testing.assert_array_equal(segloss.loss_grad(p, t, m, grad_loss=1.0), plain)
    np.testing.assert_allclose(segloss.loss_grad(p, t, m, grad_loss=-2.5), -2.5 * plain,
                               rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert not np.any(segloss.loss_grad(p, t, m, grad_loss=0.0))
    np.testing.assert_array_equal(segloss.loss_grad(p, t, m, grad_loss=np.float32(2)),
                                  segloss.loss_grad(p, t, m, grad_loss=2))


@needs_general_api
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_gradients_are_positive_zeros(dtype):
    """Saturated logits (sigma' = 0) whose sigmoid equals their target have gradient 0: +0.0
    always, with a negative grad_loss too (its products would give -0.0 without the kernels'
    + 0), in the fused call (whose plain logits loop leaves the + 0 out where it cannot
    matter) and the backward one; targets -0.0 included."""
    x = np.array([800.0, -800.0, 1000.0, -760.0, 0.3, -0.7] * 43, dtype)
    t = np.array([1.0, 0.0, 1.0, -0.0, 1.0, 0.0] * 43, dtype)
    saturated = np.abs(x) > 750
    o = Options(input="logits")
    grads = {"fused": segloss.loss_and_grad(x, t, options=o)[1]}
    for grad_loss in (1.0, -1.0, -2.5):
        grads[f"backward, grad_loss {grad_loss}"] = segloss.loss_grad(x, t, options=o, grad_loss=grad_loss)
    for name, grad in grads.items():
        assert np.all(grad[saturated] == 0), name
        assert not np.any(np.signbit(grad[saturated])), name


@needs_general_api
@pytest.mark.parametrize("shape", [(1, 1, 4), (1, 4), (4,), (1, 1, 2, 2), (1, 1, 1, 1, 4)])
def test_shapes_of_one_sample_and_channel_are_the_flat_tensor(shape):
    value, grad = segloss.loss_and_grad(PRED.reshape(shape), TARGET.reshape(shape))
    expected = segloss.loss_and_grad(PRED, TARGET)
    assert value == expected[0]
    np.testing.assert_array_equal(grad.ravel(), expected[1])


@needs_general_api
@pytest.mark.parametrize("segments", SEGMENT_COUNTS)
def test_spatial_dimensions_are_flattened(segments):
    """(N, C, D, H, W) is (N, C, D*H*W): the same results bitwise; (N, C) is (N, C, 1)."""
    p, t, m = cases.inputs((2, 3, 2, 3, 4), seed=8, mask_kind="pixel")
    flat = segloss.loss_and_grad(p.reshape(2, 3, 24), t.reshape(2, 3, 24), m.reshape(2, 1, 24),
                                 segments=segments, return_segments=True)
    shaped = segloss.loss_and_grad(p, t, m, segments=segments, return_segments=True)
    assert shaped[0] == flat[0]
    for got, expected in zip(shaped[1:], flat[1:]):
        np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    two_d = segloss.loss_and_grad(p[:, :, 0, 0, 0], t[:, :, 0, 0, 0], segments=segments)
    three_d = segloss.loss_and_grad(p[:, :, :1, 0, 0], t[:, :, :1, 0, 0], segments=segments)
    assert two_d[0] == three_d[0]


@needs_general_api
def test_thread_count_does_not_change_results():
    p, t, m = cases.inputs((2, 3, 160, 160), seed=9, mask_kind="pixel", input_kind="logits",
                           dtype=np.float32)
    o = Options(input="logits", segments="sample_channel", region_term="tversky", alpha=0.3, beta=0.7)
    results_of_thread_counts(lambda: segloss.loss_and_grad(p, t, m, options=o, return_segments=True))


def results_of_thread_counts(call, counts=(1, 2, 3)):
    """call()'s results with each thread count, checked bitwise equal; the first."""
    before = segloss.get_num_threads()
    try:
        results = []
        for threads in counts:
            segloss.set_num_threads(threads)
            results.append(call())
    finally:
        segloss.set_num_threads(before)
    for result in results[1:]:
        assert result[0] == results[0][0]
        for got, expected in zip(result[1:], results[0][1:]):
            np.testing.assert_array_equal(got, expected)
    return results[0]


@needs_general_api
@pytest.mark.parametrize("input_kind", ["logits", "probabilities"])
def test_long_chunks_keep_the_results_of_any_thread_count_and_function(input_kind):
    """From 2^22 elements on a call's chunks are 65,536 elements long (4,206,598 here: runs of
    64 chunks and a short one): the thread count still changes no bit, the three functions
    agree bitwise, and the loss is a float64 computation's."""
    shape = (1, 2, (1 << 21) + 7)
    p, t, _ = cases.inputs(shape, seed=41, input_kind=input_kind, dtype=np.float32, empty=False)
    o = Options(input=input_kind, segments="channel", label_smoothing=0.05 if input_kind == "logits" else 0.0)
    fused = results_of_thread_counts(lambda: segloss.loss_and_grad(p, t, options=o, return_segments=True))
    assert segloss.loss(p, t, options=o) == fused[0]
    np.testing.assert_array_equal(segloss.loss_grad(p, t, options=o), fused[1])
    # The float64 loss of these options, in numpy (the reference module is per element).
    x, smoothing = p.astype(np.float64), o.label_smoothing
    if input_kind == "logits":
        q, ts = 1 / (1 + np.exp(-x)), t * (1 - smoothing) + smoothing / 2
        bce = np.mean((1 - ts) * x + np.logaddexp(0, -x))
    else:
        q = x
        bce = np.mean(-(t * np.maximum(np.log(q), -100) + (1 - t) * np.maximum(np.log1p(-q), -100)))
    dice = 1 - (2 * (q * t).sum(axis=2) + 1) / (q.sum(axis=2) + t.sum(axis=2) + 1)
    assert fused[0] == pytest.approx(0.5 * bce + 0.5 * dice.mean(), rel=1e-6)


@needs_general_api
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_earlier_calls(dtype):
    """A thread keeps its block buffers from call to call, and in them the valid flags (ones)
    of an unmasked call, which a later call at the same place reuses (KernelScratch). A masked
    call on the same arrays (whose flags are mostly 0), a run with a short last block (whose
    padding gets flag 0), a call in the other pred type and a flat API call in between must
    not change an unmasked call's bits. Label smoothing keeps the BCE terms in the form that
    multiplies by the flags; these sizes stay on the calling thread."""
    p, t, _ = cases.inputs((2, 3, 1024), seed=31, dtype=dtype)
    mask = np.random.default_rng(32).random(p.shape) < 0.2
    o = Options(label_smoothing=0.1, segments="sample_channel")
    first = segloss.loss_and_grad(p, t, options=o, return_segments=True)
    other = np.float64 if dtype == np.float32 else np.float32
    p_other, t_other, _ = cases.inputs((2, 3, 1024), seed=33, dtype=other)
    flat = p.reshape(-1)
    between = {
        "masked": lambda: segloss.loss_and_grad(p, t, mask, options=o),
        "short last block": lambda: segloss.loss_and_grad(flat[:700], t.reshape(-1)[:700], options=o),
        "other pred type": lambda: segloss.loss_and_grad(p_other, t_other, options=o),
        "flat API": lambda: segloss.bce_dice_loss_and_grad(p.astype(np.float32), t.astype(np.float32)),
    }
    for name, call in between.items():
        call()
        again = segloss.loss_and_grad(p, t, options=o, return_segments=True)
        assert again[0] == first[0], name
        for got, expected in zip(again[1:], first[1:]):
            np.testing.assert_array_equal(got, expected, err_msg=name)


@needs_general_api
def test_inputs_are_not_modified():
    p, t, m = cases.inputs((2, 3, 4), seed=10, mask_kind="element")
    copies = p.copy(), t.copy(), m.copy()
    segloss.loss_and_grad(p, t, m)
    for array, copy in zip((p, t, m), copies):
        np.testing.assert_array_equal(array, copy)


# --- against the float64 reference ---------------------------------------------------------------


def reference_options(o: Options) -> dict:
    """The reference's options: a dict of the C field names; it takes the enum names as
    strings, in any case, and bools for the flags."""
    return dataclasses.asdict(o)


def as_ncs(array, shape):
    """`array` (of pred's shape, or (N, 1, *spatial) for a mask) as (N, C, S)."""
    array = np.asarray(array)
    if len(shape) == 1:
        return array.reshape(1, 1, -1)
    return array.reshape(array.shape[0], array.shape[1], -1)


def reference(pred, target, mask, o: Options, grad_loss=1.0):
    """(loss, scores, sums, gradient) of the float64 reference for the binding's inputs:
    pred as float64 (float32 values are exact), target as float64 (uint8 as it is), mask
    as bool; the gradient in pred's shape. scores is None with region_term "none"."""
    p = as_ncs(np.asarray(pred, np.float64), pred.shape)
    target = np.asarray(target)
    t = as_ncs(target if target.dtype == np.uint8 else target.astype(np.float64), pred.shape)
    m = None if mask is None else as_ncs(np.asarray(mask, bool), pred.shape)
    options = reference_options(o)
    value, scores, sums = gref.forward(p, t, m, options)
    grad = gref.gradient(p, t, m, options, grad_loss=grad_loss).reshape(pred.shape)
    return value, scores, np.asarray(sums, np.float64), grad


def tolerances(dtype):
    """(loss rtol, gradient rtol, gradient atol as a fraction of max |gradient|)."""
    return (1e-9, 1e-9, 1e-12) if dtype == np.float64 else (1e-5, 1e-5, 1e-6)


def assert_close_to_reference(pred, target, mask, o, grad_loss=1.0, context=""):
    rtol, grad_rtol, grad_atol = tolerances(pred.dtype)
    value, grad, scores, sums = segloss.loss_and_grad(pred, target, mask, options=o, return_segments=True)
    if grad_loss != 1.0:
        grad = segloss.loss_grad(pred, target, mask, options=o, grad_loss=grad_loss)
    r_value, r_scores, r_sums, r_grad = reference(pred, target, mask, o, grad_loss)
    np.testing.assert_allclose(value, r_value, rtol=rtol, atol=0, err_msg=f"{context} loss")
    if r_scores is not None:
        np.testing.assert_allclose(scores, r_scores, rtol=rtol, atol=0, err_msg=f"{context} scores")
    np.testing.assert_allclose(sums, r_sums.reshape(sums.shape), rtol=rtol, atol=rtol * 1e-3,
                               err_msg=f"{context} sums")
    np.testing.assert_allclose(grad, r_grad.reshape(grad.shape), rtol=grad_rtol,
                               atol=grad_atol * np.abs(r_grad).max(), err_msg=f"{context} gradient")


@needs_general_api
@needs_reference
@pytest.mark.parametrize("name", cases.CASES)
@pytest.mark.parametrize("mask_kind", ["none", "element", "pixel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_option_against_the_reference(name, mask_kind, dtype):
    o = cases.options(name)
    pred, target, mask = cases.inputs((2, 3, 5, 4), seed=11, input_kind=o.input, mask_kind=mask_kind,
                                      dtype=dtype)
    assert_close_to_reference(pred, target, mask, o, context=name)


@needs_general_api
@needs_reference
@pytest.mark.parametrize("name", ["seed_bce_dice", "logits_bce_pos_weight", "focal_tversky", "everything"])
@pytest.mark.parametrize("target_kind", ["soft", "uint8", "bool", "float32"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_target_kinds_against_the_reference(name, target_kind, dtype):
    o = cases.options(name)
    pred, target, mask = cases.inputs((3, 3, 7), seed=12, input_kind=o.input, target_kind=target_kind,
                                      mask_kind="pixel", dtype=dtype)
    assert_close_to_reference(pred, target, mask, o, context=f"{name} {target_kind}")


@needs_general_api
@needs_reference
@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (2, 3, 2, 3, 4), (4, 3), (1, 3, 1000)])
@pytest.mark.parametrize("name", ["logits_bce_dice", "segments_sample_channel", "everything"])
def test_shapes_against_the_reference(shape, name):
    o = cases.options(name)
    pred, target, mask = cases.inputs(shape, seed=13, input_kind=o.input, mask_kind="element",
                                      dtype=np.float32)
    assert_close_to_reference(pred, target, mask, o, grad_loss=-1.75, context=name)


@needs_general_api
@needs_reference
def test_hard_target_bce_terms_against_the_reference():
    """Float32 probabilities with hard targets, in runs of whole 512-element blocks (four runs
    of 1024), each segment's BCE sum against the float64 reference to 1e-6, ten times tighter
    than the float32 tolerance of the tests above: uniform probabilities; confident ones
    (p or 1 - p within 1e-7 .. 1e-3 of the target), whose terms are tiny and need log(1 - p)
    without the rounding of 1 - p (without it, this segment is off by 3e-6); probabilities 0
    of the target's class (the -100 clamp) among uniform ones; and probabilities 1e-25 of a
    target 1 (terms 57.6, no clamp) side by side, whose product (the float kernels take two
    neighbours' logs as one) underflows to 0, and 1e-30 ones next to uniform ones."""
    rng = np.random.default_rng(21)
    n = 1024
    target = (rng.random((2, 2, n)) < 0.4).astype(np.float32)
    pred = rng.random((2, 2, n))
    near = 10.0 ** rng.uniform(-7, -3, n)
    pred[0, 1] = np.where(target[0, 1] > 0, 1 - near, near)
    wrong = rng.choice(n, 20, replace=False)
    pred[1, 0, wrong] = 1 - target[1, 0, wrong]  # q = 0: the clamp
    tiny = np.array([2, 3, 40, 41, 600, 601, 956, 957])  # neighbours 2k, 2k + 1
    lone = np.array([101, 258, 777])                     # their neighbours are uniform
    target[1, 1, tiny] = target[1, 1, lone] = 1
    pred[1, 1, tiny], pred[1, 1, lone] = 1e-25, 1e-30
    pred = pred.astype(np.float32)
    o = Options(segments="sample_channel")
    for fn in (segloss.loss, segloss.loss_and_grad):
        sums = fn(pred, target, None, options=o, return_segments=True)[-1]
        r_sums = reference(pred, target, None, o)[2].reshape(sums.shape)
        np.testing.assert_allclose(sums[:, 4], r_sums[:, 4], rtol=1e-6, atol=0)


# --- against finite differences ------------------------------------------------------------------


@needs_general_api
@pytest.mark.parametrize("name", cases.CASES)
def test_gradient_against_finite_differences(name):
    """The float64 gradient against central differences of the float64 loss: independent of
    any reference. Probabilities are kept inside (0.05, 0.95)."""
    o = cases.options(name)
    pred, target, mask = cases.inputs((2, 3, 2, 2), seed=14, input_kind=o.input, mask_kind="pixel",
                                      target_kind="soft" if "smoothing" in name else "hard")
    if o.input == "probabilities":
        pred = np.clip(pred, 0.05, 0.95)
    grad = segloss.loss_grad(pred, target, mask, options=o)
    h = 1e-6
    numeric = np.empty_like(pred)
    for i in range(pred.size):
        up, down = pred.copy(), pred.copy()
        up.flat[i] += h
        down.flat[i] -= h
        numeric.flat[i] = (segloss.loss(up, target, mask, options=o)
                           - segloss.loss(down, target, mask, options=o)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7 * max(1.0, np.abs(numeric).max()))
    valid = cases.expand_mask(mask, pred.shape)
    assert not np.any(grad[~valid])


# --- dtypes -------------------------------------------------------------------------------------


@needs_general_api
def test_contiguous_inputs_are_used_without_a_copy():
    p, t, m = cases.inputs((2, 3, 4), seed=15, mask_kind="element", dtype=np.float32)
    call = general._Call(p, t, m)
    assert call.p is p and call.t is t and np.shares_memory(call.m, m)
    readonly = p.copy()
    readonly.setflags(write=False)
    assert general._Call(readonly, t, None).p is readonly
    assert general._Call(p.astype(np.float64), t.astype(np.uint8), None).t.dtype == np.uint8


@needs_general_api
@pytest.mark.parametrize("target_dtype", [np.float32, np.float64, np.uint8, np.bool_, np.int64,
                                          np.int8, np.float16, ">f8"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_target_dtypes_give_the_same_result(dtype, target_dtype):
    p, t, m = cases.inputs((2, 3, 5), seed=16, mask_kind="pixel", dtype=dtype)
    expected = segloss.loss_and_grad(p, t, m, return_segments=True)
    got = segloss.loss_and_grad(p, t.astype(target_dtype), m, return_segments=True)
    assert got[0] == pytest.approx(expected[0], rel=1e-15)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12 if dtype == np.float64 else 1e-6)


@needs_general_api
@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", ">f8"])
def test_byte_orders_of_pred(dtype):
    p, t, _ = cases.inputs((2, 3, 5), seed=17)
    value, grad = segloss.loss_and_grad(p.astype(dtype), t)
    native = np.dtype(dtype).newbyteorder("=")
    expected = segloss.loss_and_grad(p.astype(native), t)
    assert value == expected[0] and grad.dtype == native
    np.testing.assert_array_equal(grad, expected[1])


@needs_general_api
@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, np.int64, np.uint8, np.bool_])
def test_other_pred_dtypes_are_type_errors(dtype):
    with pytest.raises(TypeError, match=f"pred has dtype {np.dtype(dtype)}; expected float32 or float64"):
        segloss.loss(PRED.astype(dtype), TARGET)


@needs_general_api
@pytest.mark.parametrize("argument", ["pred", "target", "mask"])
@pytest.mark.parametrize("bad", [np.array([0.5 + 0j] * 4), np.array([0.5] * 4, dtype=object),
                                 np.array(["0.5"] * 4)], ids=["complex", "object", "str"])
def test_non_real_dtypes_are_type_errors(argument, bad):
    arguments = {"pred": PRED, "target": TARGET, "mask": None}
    arguments[argument] = bad
    with pytest.raises(TypeError, match=argument):
        segloss.loss(arguments["pred"], arguments["target"], arguments["mask"])


@needs_general_api
@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.float32, np.float64])
def test_mask_must_be_bool_or_uint8(dtype):
    with pytest.raises(TypeError, match=f"mask has dtype {np.dtype(dtype)}; expected bool or uint8"):
        segloss.loss(PRED, TARGET, np.ones(4, dtype))


@needs_general_api
def test_none_is_a_type_error():
    with pytest.raises(TypeError, match="pred is None"):
        segloss.loss(None, TARGET)
    with pytest.raises(TypeError, match="target is None"):
        segloss.loss_grad(PRED, None)


@needs_general_api
def test_array_likes():
    expected = segloss.loss(np.array([0.9, 0.1, 0.8, 0.7]), TARGET)
    assert segloss.loss([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 1]) == expected
    assert segloss.loss((0.9, 0.1, 0.8, 0.7), [True, False, True, True]) == expected


@needs_general_api
@pytest.mark.parametrize("layout", ["strided", "transposed", "fortran", "broadcast", "unaligned"])
def test_non_contiguous_inputs_are_copied(layout):
    p, t, m = cases.inputs((4, 3, 6, 10), seed=18, mask_kind="element", dtype=np.float32)

    def view(a):
        if layout == "strided":
            return a[::2, :, 1::2]
        if layout == "transposed":
            return a.transpose(0, 1, 3, 2)
        if layout == "fortran":
            return np.asfortranarray(a)
        if layout == "broadcast":
            return np.broadcast_to(a[:1], a.shape)
        buffer = np.zeros(a.nbytes + 1, np.uint8)
        unaligned = np.ndarray(a.shape, a.dtype, buffer=buffer, offset=1)
        unaligned[...] = a
        return unaligned

    pv, tv, mv = view(p), view(t), view(m)
    got = segloss.loss_and_grad(pv, tv, mv, segments="sample_channel", return_segments=True)
    expected = segloss.loss_and_grad(*(np.ascontiguousarray(a) for a in (pv, tv, mv)),
                                     segments="sample_channel", return_segments=True)
    assert got[0] == expected[0]
    for a, b in zip(got[1:], expected[1:]):
        np.testing.assert_array_equal(a, b)


def placed(a, offset):
    """A copy of `a` starting `offset` bytes past a 64-byte boundary (`offset` a multiple of
    its itemsize, so still aligned for its type: the binding passes it on as it is)."""
    buffer = np.zeros(a.nbytes + 128, np.uint8)
    start = (-buffer.ctypes.data) % 64 + offset
    view = np.ndarray(a.shape, a.dtype, buffer=buffer, offset=start)
    view[...] = a
    assert view.ctypes.data % 64 == offset
    return view


OFFSET_OPTIONS = {"plain": {},
                  "weighted": {"pos_weight": [2.0, 1.0, 0.5], "label_smoothing": 0.1},
                  "region only": {"element_weight": 0.0}}


@needs_general_api
@pytest.mark.parametrize("options", OFFSET_OPTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("input_kind", ["logits", "probabilities"])
def test_results_do_not_depend_on_where_the_arrays_start(input_kind, dtype, options):
    """Logits blocks read in place from a run that starts off a 64-byte line are reread from
    copies (GeneralKernel.swift, spansLines): the results must be bitwise those of other
    placements, for every place of pred, target and out within a line, and every gradient
    loop that reads the copies (plain BCE, pos_weight with label smoothing, no BCE term). The
    probabilities cases never copy; they check the in-place reads the same way. Runs of 2,500
    elements (whole blocks and a short last one) start at four places in a line whatever the
    array's start, so each placement mixes runs that copy and runs that do not, and each run
    changes path between placements."""
    p, t, _ = cases.inputs((2, 3, 2500), seed=31, input_kind=input_kind, dtype=dtype)
    t = t.astype(dtype)  # pred's type: read in place, not converted into the block buffers
    item = np.dtype(dtype).itemsize
    kwargs = dict(input=input_kind, segments="sample_channel", return_segments=True,
                  **OFFSET_OPTIONS[options])

    def run(pred_at, target_at, out_at):
        pv, tv = placed(p, pred_at), placed(t, target_at)
        out = placed(np.zeros_like(p), out_at)
        fused = segloss.loss_and_grad(pv, tv, out=out, **kwargs)
        assert fused[1] is out
        return segloss.loss(pv, tv, **kwargs), fused

    def same(a, b):
        forward_a, (loss_a, *arrays_a) = a
        forward_b, (loss_b, *arrays_b) = b
        assert forward_a[0] == forward_b[0] and loss_a == loss_b
        for x, y in zip(list(forward_a[1:]) + arrays_a, list(forward_b[1:]) + arrays_b):
            np.testing.assert_array_equal(x, y)

    expected = run(0, 0, 0)
    for places in [(16, 16, 16), (item, 0, 0), (0, 4, 0), (0, 0, 48), (64 - item, 60, 32)]:
        same(run(*places), expected)


# --- shapes and masks ---------------------------------------------------------------------------


@needs_general_api
@pytest.mark.parametrize("shapes", [((4,), (3,)), ((2, 3, 4), (2, 3, 5)), ((2, 3, 4), (2, 12)),
                                    ((2, 3), (3, 2)), ((1, 4), (4,))])
def test_shape_mismatch_names_both_shapes(shapes):
    pred = np.full(shapes[0], 0.5, np.float32)
    target = np.ones(shapes[1], np.float32)
    for call in (segloss.loss, segloss.loss_grad, segloss.loss_and_grad):
        with pytest.raises(ValueError) as raised:
            call(pred, target)
        assert not isinstance(raised.value, SegLossError)
        assert f"pred {shapes[0]}" in str(raised.value) and f"target {shapes[1]}" in str(raised.value)


@needs_general_api
def test_zero_dimensional_pred_is_an_error():
    for call in (segloss.loss, segloss.loss_grad, segloss.loss_and_grad):
        with pytest.raises(ValueError, match="pred is 0-d"):
            call(np.float32(0.5), np.float32(1.0))
        with pytest.raises(ValueError, match="pred is 0-d"):
            call(0.5, 1.0)


@needs_general_api
@pytest.mark.parametrize("shape", [(0,), (0, 3, 4), (2, 0, 4), (2, 3, 0), (2, 3, 4, 0)])
def test_empty_input(shape):
    pred, target = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for call in (segloss.loss, segloss.loss_grad, segloss.loss_and_grad,
                 lambda p, t: segloss.loss(p, t, return_segments=True)):
        with raises_status(Status.ERROR_EMPTY_INPUT):
            call(pred, target)


@needs_general_api
@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3)), ((2, 3, 4), (2, 2, 4)), ((2, 3, 4), (1, 1, 4)),
                                    ((2, 3, 4), (2, 4)), ((4,), (1, 4)), ((2, 3), (2,))])
def test_mask_of_the_wrong_shape(shapes):
    pred = np.full(shapes[0], 0.5, np.float32)
    with pytest.raises(ValueError, match=re.escape(f"mask has shape {shapes[1]}; expected {shapes[0]}")):
        segloss.loss(pred, np.ones_like(pred), np.ones(shapes[1], bool))


@needs_general_api
@pytest.mark.parametrize("name", ["seed_bce_dice", "logits_bce_pos_weight", "segments_channel",
                                  "everything", "empty_exclude"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_per_pixel_mask_is_the_per_element_mask_broadcast(name, dtype):
    o = cases.options(name)
    p, t, m = cases.inputs((2, 3, 4, 5), seed=19, input_kind=o.input, mask_kind="pixel", dtype=dtype)
    pixel = segloss.loss_and_grad(p, t, m, options=o, return_segments=True)
    element = segloss.loss_and_grad(p, t, cases.expand_mask(m, p.shape), options=o, return_segments=True)
    assert pixel[0] == element[0]
    for a, b in zip(pixel[1:], element[1:]):
        np.testing.assert_array_equal(a, b)
    # uint8 masks: any non-zero byte is valid
    as_bytes = m.astype(np.uint8) * np.uint8(7)
    assert segloss.loss(p, t, as_bytes, options=o) == pixel[0]


@needs_general_api
@pytest.mark.parametrize("name", ["seed_bce_dice", "logits_bce_pos_weight", "everything"])
@pytest.mark.parametrize("mask_kind", ["element", "pixel"])
def test_masked_elements_count_nowhere(name, mask_kind):
    """Invalid elements may hold anything (NaN, out of range), change nothing, and get
    gradient 0; a mask of ones is no mask."""
    o = cases.options(name)
    p, t, m = cases.inputs((2, 3, 4, 5), seed=20, input_kind=o.input, mask_kind=mask_kind)
    expected = segloss.loss_and_grad(p, t, m, options=o, return_segments=True)
    invalid = ~cases.expand_mask(m, p.shape)
    p2, t2 = p.copy(), t.copy()
    p2[invalid] = np.nan
    t2[invalid] = 7.0
    got = segloss.loss_and_grad(p2, t2, m, options=o, return_segments=True)
    assert got[0] == expected[0]
    for a, b in zip(got[1:], expected[1:]):
        np.testing.assert_array_equal(a, b)
    assert not np.any(got[1][invalid])
    ones = np.ones_like(m)
    assert segloss.loss(p, t, ones, options=o) == segloss.loss(p, t, options=o)


@needs_general_api
def test_a_mask_with_nothing_valid():
    """E = 0 with no valid element; every segment is then empty."""
    p, t, _ = cases.inputs((2, 3, 4), seed=21)
    none_valid = np.zeros(p.shape, bool)
    assert segloss.loss(p, t, none_valid, region_term="none") == 0.0
    value, grad = segloss.loss_and_grad(p, t, none_valid, element_term="none", region_weight=1.0,
                                        segments="sample_channel", empty_policy="exclude")
    assert value == 0.0 and not np.any(grad)


# --- out= ---------------------------------------------------------------------------------------


SENTINEL = -1234.5


@needs_general_api
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_equals_no_out_bitwise(dtype):
    p, t, m = cases.inputs((2, 3, 5, 4), seed=22, mask_kind="pixel", dtype=dtype)
    expected = segloss.loss_and_grad(p, t, m)
    for call in (lambda out: segloss.loss_grad(p, t, m, out=out),
                 lambda out: segloss.loss_and_grad(p, t, m, out=out)[1]):
        out = np.full(p.shape, SENTINEL, dtype)
        assert call(out) is out
        np.testing.assert_array_equal(out, expected[1])
    out = np.full(p.shape, SENTINEL, dtype)
    value, grad, scores, sums = segloss.loss_and_grad(p, t, m, out=out, return_segments=True)
    assert grad is out and value == expected[0]


@needs_general_api
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["seed_bce_dice", "everything"])
def test_in_place_equals_out_of_place(dtype, name):
    o = cases.options(name)
    p, t, m = cases.inputs((2, 3, 5, 4), seed=23, input_kind=o.input, mask_kind="element", dtype=dtype)
    expected = segloss.loss_and_grad(p, t, m, options=o, return_segments=True)
    q = p.copy()
    got = segloss.loss_and_grad(q, t, m, options=o, out=q, return_segments=True)
    assert got[1] is q and got[0] == expected[0]
    for a, b in zip(got[1:], expected[1:]):
        np.testing.assert_array_equal(a, b)
    q = p.copy()
    assert segloss.loss_grad(q, t, m, options=o, out=q.view(), grad_loss=2.0) is not q
    np.testing.assert_array_equal(q, segloss.loss_grad(p, t, m, options=o, grad_loss=2.0))


def sentinel(shape, dtype=np.float32):
    return np.full(shape, SENTINEL, dtype)


@needs_general_api
@pytest.mark.parametrize("bad, error, words", [
    ([0.0] * 4, TypeError, "out must be a numpy.ndarray"),
    (sentinel(4, np.float64), TypeError, "out has dtype float64; expected pred's dtype, float32"),
    (sentinel(4, ">f4"), TypeError, "out has dtype >f4"),
    (sentinel(5), ValueError, "out has shape (5,); expected pred's shape (4,)"),
    (sentinel((2, 2)), ValueError, "out has shape (2, 2)"),
    (sentinel(8)[::2], ValueError, "out is not C-contiguous"),
])
def test_rejected_out(bad, error, words):
    before = np.array(bad, copy=True)
    for call in (segloss.loss_grad, segloss.loss_and_grad):
        with pytest.raises(error, match=re.escape(words)):
            call(PRED, TARGET, out=bad)
    np.testing.assert_array_equal(np.asarray(bad), before)


@needs_general_api
def test_read_only_and_unaligned_out():
    readonly = sentinel(4)
    readonly.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        segloss.loss_grad(PRED, TARGET, out=readonly)
    buffer = np.zeros(17, np.uint8)
    unaligned = np.ndarray((4,), np.float32, buffer=buffer, offset=1)
    with pytest.raises(ValueError, match="not aligned"):
        segloss.loss_grad(PRED, TARGET, out=unaligned)


@needs_general_api
def test_out_sharing_memory_with_an_input_is_refused():
    p, t, _ = cases.inputs((2, 3, 4), seed=24, target_kind="float32", dtype=np.float32)
    both = np.stack([p, p])
    overlapping = both.reshape(-1)[1:25].reshape(p.shape)  # overlaps pred, is not pred
    with pytest.raises(ValueError, match="out shares memory with pred"):
        segloss.loss_grad(both[0], t, out=overlapping)
    with pytest.raises(ValueError, match="out shares memory with target"):
        segloss.loss_and_grad(p, t, out=t)
    # mask bytes inside out's bytes
    out = sentinel(p.shape)
    mask_in_out = out.reshape(-1).view(np.uint8)[:p.size].reshape(p.shape)
    mask_in_out[...] = 1
    with pytest.raises(ValueError, match="out shares memory with mask"):
        segloss.loss_grad(p, t, mask_in_out.view(bool), out=out)
    # a converted (copied) input that overlaps out is refused too
    out64 = np.zeros(p.shape, np.float64)
    with pytest.raises(ValueError, match="out shares memory with target"):
        segloss.loss_grad(p.astype(np.float64), out64.view(np.float32)[..., ::2], out=out64)


# --- library errors -----------------------------------------------------------------------------


@needs_general_api
@pytest.mark.parametrize("value", [-0.1, 1.1, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probabilities_out_of_range(value, dtype):
    p, t, _ = cases.inputs((2, 3, 50), seed=25, dtype=dtype)
    p[1, 2, 7] = value
    for call in (segloss.loss, segloss.loss_grad, segloss.loss_and_grad):
        with pytest.raises(SegLossError) as raised:
            call(p, t)
        assert raised.value.status == Status.ERROR_PRED_OUT_OF_RANGE
        assert raised.value.function.startswith("segloss_")


@needs_general_api
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_logits(value, dtype):
    p, t, _ = cases.inputs((2, 3, 50), seed=26, input_kind="logits", dtype=dtype)
    p[0, 0, 0] = value
    with raises_status(Status.ERROR_PRED_OUT_OF_RANGE):
        segloss.loss(p, t, input="logits")


@needs_general_api
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_finite_logits_are_fine(dtype):
    big = np.finfo(np.float32).max if dtype == np.float32 else 1e300  # the mean stays finite
    p = np.array([big, -big, 80.0, -80.0, 0.0], dtype)
    t = np.array([1.0, 0.0, 1.0, 0.0, 1.0], dtype)
    value, grad = segloss.loss_and_grad(p, t, input="logits")
    assert math.isfinite(value) and np.all(np.isfinite(grad))
    value, grad = segloss.loss_and_grad(p, 1 - t, input="logits")
    assert math.isfinite(value) and np.all(np.isfinite(grad))


@needs_general_api
@pytest.mark.parametrize("target", [np.array([0, 1, 2, 1], np.uint8), np.array([0, 1, 255, 1], np.uint8),
                                    np.array([0, 1, -1, 1]), np.array([0, 1, 1.5, 1]),
                                    np.array([0, 1, np.nan, 1], np.float32)])
@pytest.mark.parametrize("kind", ["probabilities", "logits"])
def test_target_out_of_range(target, kind):
    # PRED's values are valid as probabilities and as logits; the two kinds check targets in
    # different kernel loops.
    with raises_status(Status.ERROR_TARGET_OUT_OF_RANGE):
        segloss.loss_and_grad(PRED, target, input=kind)


@needs_general_api
@pytest.mark.parametrize("grad_loss", [np.nan, np.inf, -np.inf])
def test_non_finite_grad_loss(grad_loss):
    out = sentinel(4)
    with raises_status(Status.ERROR_INVALID_ARGUMENT):
        segloss.loss_grad(PRED, TARGET, grad_loss=grad_loss, out=out)
    assert np.all(out == SENTINEL)
    with pytest.raises(TypeError):
        segloss.loss_grad(PRED, TARGET, grad_loss=None)


@needs_general_api
def test_a_library_error_leaves_out_untouched():
    p = PRED.copy()
    p[2] = 2.0
    out = sentinel(4)
    with raises_status(Status.ERROR_PRED_OUT_OF_RANGE):
        segloss.loss_and_grad(p, TARGET, out=out)
    assert np.all(out == SENTINEL)
    q = p.copy()
    with raises_status(Status.ERROR_PRED_OUT_OF_RANGE):
        segloss.loss_grad(q, TARGET, out=q)
    np.testing.assert_array_equal(q, p)
