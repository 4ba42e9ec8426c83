"""The general API on numpy arrays: every loss of the Dice/BCE family on N x C x spatial
arrays — probabilities or logits, BCE and/or Dice, Jaccard or Tversky, per batch, sample,
channel or sample x channel, with masks.

    loss = element_weight * E + region_weight * R

E is the mean (or sum) BCE over valid elements; R the mean (or sum) over segments of the
region loss 1 - score (Dice, Jaccard or Tversky index). `Options` holds every parameter;
its fields, names and defaults are those of segloss_options in include/segloss.h, where
the formulas are. The defaults are the seed's BCE + Dice: 0.5 BCE + 0.5 Dice, smooth 1,
over the whole tensor.

    >>> import numpy as np, segloss
    >>> pred = np.array([0.9, 0.1, 0.8, 0.7], np.float32)
    >>> target = np.array([1, 0, 1, 1], np.float32)
    >>> round(segloss.loss(pred, target), 6)  # the seed's BCE + Dice
    0.152664
    >>> round(segloss.loss(pred, target, element_term="none", region_weight=1.0), 6)  # Dice
    0.107692

Shapes. pred of shape (N, C, *spatial) is N samples of C channels of S = prod(spatial)
elements ((N, C) has S = 1); a 1-d pred of shape (S,) is one sample of one channel. A 0-d
pred is a ValueError. target has pred's shape. mask, optional, is either of pred's shape
(one flag per element) or of shape (N, 1, *spatial) (one flag per pixel, shared by its C
channels); an element is valid where its flag is non-zero. Invalid elements count
nowhere, may hold anything, and get gradient 0.

Dtypes. pred is float32 or float64 and is computed in its own precision (the gradient has
its dtype; the loss is always a Python float from the library's double). target may be
float32, float64, uint8 (0 or 1) or bool, all used as they are (bool as uint8); other
real dtypes (integers, float16) are converted to pred's dtype first. mask is bool or uint8.
Anything else is a TypeError. Arrays that are not C-contiguous and aligned are copied to
contiguous ones first; contiguous ones are handed to the library without a copy.

out=. The gradient functions take a preallocated gradient array: a C-contiguous, aligned,
writeable ndarray of pred's shape and dtype (else TypeError for its type or dtype,
ValueError for the rest), which is filled and returned. It may be pred itself (in place);
any other memory it shares with pred, target or mask is a ValueError. When a call raises,
out is left untouched.

Segments. With ``return_segments=True`` the loss functions also return, per segment (1,
N, C or N*C of them, sample-major for "sample_channel"), the region score (float64 array
of shape (segments,)) and the sums it was computed from (float64, (segments, 6): TP, FP,
FN, SQ, the sum of the element terms, the number of valid elements; see
SUMS_PER_SEGMENT in segloss.h) — the per-class Dice of a batch at no extra cost.

Errors. Invalid options raise SegLossError with status ERROR_INVALID_OPTIONS when the
Options are made (so before any computation), naming the rule broken; pos_weight or
channel_weights whose length is not C, different shapes and a 0-d pred raise ValueError;
everything the library rejects (no elements, a probability outside [0, 1], a non-finite
logit, a target outside [0, 1] or a uint8 target other than 0/1, a non-finite grad_loss)
raises SegLossError with the library's status and message. With a library older than the
general API every function here raises GeneralAPIUnavailable.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from ctypes import byref, c_double, c_size_t
from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike

from . import _library
from ._api import _address, _byte_range
from ._library import (DType, ElementTerm, EmptyPolicy, InputKind, MaskLayout, OptionsStruct,
                       Reduction, RegionTerm, Segments, SegLossError, ShapeStruct, Status,
                       SUMS_PER_SEGMENT)

_lib = _library.library

_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_UINT8 = np.dtype(np.uint8)
_BOOL = np.dtype(np.bool_)
_PRED_DTYPES = {_FLOAT32: DType.FLOAT32, _FLOAT64: DType.FLOAT64}
_TARGET_DTYPES = {_FLOAT32: DType.FLOAT32, _FLOAT64: DType.FLOAT64, _UINT8: DType.UINT8}
_REAL_KINDS = frozenset("biuf")
_OUT_MEMORY = ("out must be pred itself (in place) or share no memory with pred, target or "
               "mask (the library leaves other overlaps undefined)")


# --- options ---------------------------------------------------------------------------------

# The enum-valued fields: Python name -> {value string: C enum member}. The strings are the
# C enumerators' names in lower case.
_ENUM_FIELDS: dict[str, dict[str, int]] = {
    field: {member.name.lower(): member for member in enum}
    for field, enum in [("input", InputKind), ("element_term", ElementTerm),
                        ("region_term", RegionTerm), ("segments", Segments),
                        ("empty_policy", EmptyPolicy), ("reduction", Reduction)]
}
_FLAG_FIELDS = ("squared", "log_loss")
_REAL_FIELDS = ("element_weight", "region_weight", "smooth_nr", "smooth_dr", "alpha", "beta",
                "gamma", "denominator_min", "log_min", "label_smoothing")
_VECTOR_FIELDS = ("pos_weight", "channel_weights")


def _invalid(message: str) -> SegLossError:
    return SegLossError(Status.ERROR_INVALID_OPTIONS, message, "segloss.Options")


@dataclasses.dataclass(frozen=True)
class Options:
    """The options of a loss: segloss_options of include/segloss.h, field for field, with
    its defaults (segloss_options_init): the seed's 0.5 BCE + 0.5 Dice, smooth 1, over the
    whole tensor.

    input            "probabilities" (pred in [0, 1]) or "logits" (sigmoid applied inside;
                     gradients with respect to the logits)
    element_term     "bce" or "none"
    region_term      "dice", "jaccard", "tversky" or "none"
    segments         what one region score covers: "all" (the whole tensor), "sample",
                     "channel" (over the batch) or "sample_channel"
    empty_policy     the region loss of a segment with no positive target: "keep" (the
                     formula), "zero" (0, still counted) or "exclude" (not counted)
    reduction        "mean" or "sum", of the element terms and of the segment losses
    squared          squared denominator (sum p^2 + sum t^2); Dice and Jaccard only
    log_loss         region loss -log(max(score, log_min)); only with gamma 1
    element_weight, region_weight    the terms' weights, >= 0
    smooth_nr, smooth_dr             added to the score's numerator and denominator, >= 0
    alpha, beta      Tversky weights of FP and FN, >= 0
    gamma            focal exponent of the region loss, > 0
    denominator_min  the score's denominator is at least this, >= 0
    log_min          the score's floor in the log form, in (0, 1]
    label_smoothing  BCE targets moved toward 0.5 by this factor, in [0, 1]
    pos_weight       None, or C values >= 0: BCE weight of positive targets per channel
                     (only with the BCE term)
    channel_weights  None, or C values >= 0: weight of each segment's region loss by its
                     channel (only with segments "channel" or "sample_channel")

    Every float must be finite. A rule broken raises SegLossError (a ValueError) with
    status ERROR_INVALID_OPTIONS, a non-number TypeError. Options are immutable; make a
    changed copy with dataclasses.replace(options, field=value).

    >>> Options(region_term="jaccard", segments="channel").region_term
    'jaccard'
    """

    input: str = "probabilities"
    element_term: str = "bce"
    region_term: str = "dice"
    segments: str = "all"
    empty_policy: str = "keep"
    reduction: str = "mean"
    squared: bool = False
    log_loss: bool = False
    element_weight: float = 0.5
    region_weight: float = 0.5
    smooth_nr: float = 1.0
    smooth_dr: float = 1.0
    alpha: float = 0.5
    beta: float = 0.5
    gamma: float = 1.0
    denominator_min: float = 0.0
    log_min: float = 1e-7
    label_smoothing: float = 0.0
    pos_weight: tuple[float, ...] | None = None
    channel_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        set_field = functools.partial(object.__setattr__, self)
        for name, values in _ENUM_FIELDS.items():
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, one of {', '.join(map(repr, values))}; "
                                f"got {value!r}")
            if value not in values:
                raise _invalid(f"{name} must be one of {', '.join(map(repr, values))}; got {value!r}")
        for name in _FLAG_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
                raise TypeError(f"{name} must be a bool; got {value!r}")
            set_field(name, bool(value))
        for name in _REAL_FIELDS:
            set_field(name, _real(name, getattr(self, name)))
        for name in _VECTOR_FIELDS:
            set_field(name, _vector(name, getattr(self, name)))
        _check_rules(self)

    def __repr__(self) -> str:
        changed = [f"{field.name}={getattr(self, field.name)!r}" for field in dataclasses.fields(self)
                   if getattr(self, field.name) != field.default]
        return f"Options({', '.join(changed)})"


def _real(name: str, value: object) -> float:
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    try:
        result = float(value)  # numpy scalars and 0-d arrays, ints, bools too
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number; got {value!r}") from None
    if not math.isfinite(result):
        raise _invalid(f"{name} must be finite; got {result}")
    return result


def _vector(name: str, value: object) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be None or a sequence of C real numbers; got {value!r}")
    if not isinstance(value, np.ndarray) and callable(getattr(value, "tolist", None)):
        value = value.tolist()  # a torch.Tensor, also one that requires grad
    array = np.asarray(value)
    if array.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name} must be None or a sequence of real numbers; got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one value per channel); got shape {array.shape}")
    values = tuple(float(v) for v in array.astype(np.float64))
    for value in values:
        if not (math.isfinite(value) and value >= 0):
            raise _invalid(f"every value of {name} must be finite and >= 0; got {value}")
    return values


def _check_rules(o: Options) -> None:
    """The rules of segloss_options (include/segloss.h) on fields already typed."""
    for name in ("element_weight", "region_weight", "smooth_nr", "smooth_dr", "alpha", "beta",
                 "denominator_min"):
        if getattr(o, name) < 0:
            raise _invalid(f"{name} must be >= 0; got {getattr(o, name)}")
    if not o.gamma > 0:
        raise _invalid(f"gamma must be > 0; got {o.gamma}")
    if not 0 < o.log_min <= 1:
        raise _invalid(f"log_min must be in (0, 1]; got {o.log_min}")
    if not 0 <= o.label_smoothing <= 1:
        raise _invalid(f"label_smoothing must be in [0, 1]; got {o.label_smoothing}")
    if o.squared and o.region_term not in ("dice", "jaccard"):
        raise _invalid(f"squared needs region_term 'dice' or 'jaccard'; got {o.region_term!r}")
    if o.log_loss and o.gamma != 1:
        raise _invalid(f"log_loss needs gamma 1; got {o.gamma}")
    if o.pos_weight is not None and o.element_term != "bce":
        raise _invalid("pos_weight needs element_term 'bce'")
    if o.channel_weights is not None and o.segments not in ("channel", "sample_channel"):
        raise _invalid(f"channel_weights needs segments 'channel' or 'sample_channel'; "
                       f"got {o.segments!r}")
    if o.element_term == "none" and o.region_term == "none":
        raise _invalid("element_term and region_term are both 'none': there is no loss")


_DEFAULT_OPTIONS = Options()


def _resolve(options: Options | Mapping | None, changes: dict) -> Options:
    """The options of a call: `options` (an Options, a mapping of its fields, or None for
    the defaults) with the keyword arguments `changes` applied."""
    if options is None:
        return Options(**changes) if changes else _DEFAULT_OPTIONS
    if isinstance(options, Mapping):
        return Options(**{**options, **changes})
    if not isinstance(options, Options):
        raise TypeError(f"options must be a segloss.Options, a mapping of its fields or None; "
                        f"got {type(options).__name__}")
    return dataclasses.replace(options, **changes) if changes else options


@functools.lru_cache(maxsize=64)
def _options_struct(options: Options, channels: int) -> tuple[OptionsStruct, tuple]:
    """segloss_options for `options`, started from segloss_options_init as the header asks,
    and the ctypes arrays its pointers point to (keep them alive with it). Cached: a
    training loop calls with the same options every step."""
    for name in _VECTOR_FIELDS:
        values = getattr(options, name)
        if values is not None and len(values) != channels:
            raise ValueError(f"{name} has {len(values)} values, but pred has {channels} "
                             f"channel{'s' * (channels != 1)}: it needs one per channel")
    struct = OptionsStruct()
    _lib.segloss_options_init(byref(struct))
    for name, values in _ENUM_FIELDS.items():
        setattr(struct, name, values[getattr(options, name)])
    for name in _FLAG_FIELDS:
        setattr(struct, name, int(getattr(options, name)))
    for name in _REAL_FIELDS:
        setattr(struct, name, getattr(options, name))
    arrays = []
    for name in _VECTOR_FIELDS:
        values = getattr(options, name)
        if values is not None:
            array = (c_double * len(values))(*values)
            arrays.append(array)
            setattr(struct, name, array)
    return struct, tuple(arrays)


# --- arrays ----------------------------------------------------------------------------------


def _require(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`array` as a C-contiguous, aligned array of `dtype` (native byte order): itself
    when it already is one."""
    if not dtype.isnative:
        dtype = dtype.newbyteorder("=")
    return np.require(array, dtype, "CA")


def _as_array(name: str, x: object) -> np.ndarray:
    if x is None:
        raise TypeError(f"{name} is None; expected an array")
    array = x if type(x) is np.ndarray else np.asarray(x)
    if array.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name} has dtype {array.dtype}; expected real numbers")
    return array


def _pred_array(pred: ArrayLike) -> np.ndarray:
    if type(pred) is np.ndarray and pred.dtype in _PRED_DTYPES and pred.flags.carray:
        return pred
    array = _as_array("pred", pred)
    if array.dtype.type not in (np.float32, np.float64):
        raise TypeError(f"pred has dtype {array.dtype}; expected float32 or float64 (convert "
                        f"it, e.g. pred.astype(numpy.float32))")
    return _require(array, array.dtype)


def _target_array(target: ArrayLike, pred_dtype: np.dtype) -> np.ndarray:
    if type(target) is np.ndarray and target.dtype in _TARGET_DTYPES and target.flags.carray:
        return target
    array = _as_array("target", target)
    if array.dtype == _BOOL:
        return _require(array, _BOOL).view(_UINT8)
    if array.dtype.type in (np.float32, np.float64, np.uint8):
        return _require(array, array.dtype)
    return _require(array, pred_dtype)  # other integers, float16: as pred's dtype


def _mask_array(mask: ArrayLike) -> np.ndarray:
    array = mask if type(mask) is np.ndarray else np.asarray(mask)
    if array.dtype == _BOOL:
        return _require(array, _BOOL).view(_UINT8)
    if array.dtype == _UINT8:
        return _require(array, _UINT8)
    raise TypeError(f"mask has dtype {array.dtype}; expected bool or uint8")


class _Call:
    """The arrays and the segloss_shape of one call, checked and converted."""

    __slots__ = ("p", "t", "m", "shape", "given")

    def __init__(self, pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None) -> None:
        p = _pred_array(pred)
        t = _target_array(target, p.dtype)
        if p.ndim == 0:
            raise ValueError("pred is 0-d; expected an array of shape (N, C, *spatial), (N, C) "
                             "or (S,)")
        if t.shape != p.shape:
            raise ValueError(f"pred and target must have the same shape; got pred {p.shape} "
                             f"and target {t.shape}")
        if p.ndim == 1:
            batch, channels, spatial = 1, 1, p.shape[0]
        else:
            batch, channels, spatial = p.shape[0], p.shape[1], math.prod(p.shape[2:])
        layout = MaskLayout.PER_ELEMENT
        m = None
        if mask is not None:
            m = _mask_array(mask)
            pixel_shape = (batch, 1) + p.shape[2:] if p.ndim >= 2 else None
            if m.shape == p.shape:
                layout = MaskLayout.PER_ELEMENT
            elif m.shape == pixel_shape:
                layout = MaskLayout.PER_PIXEL
            else:
                accepted = f"{p.shape}" + (f" (per element) or {pixel_shape} (per pixel)"
                                           if pixel_shape is not None else "")
                raise ValueError(f"mask has shape {m.shape}; expected {accepted}")
        self.p, self.t, self.m = p, t, m
        self.shape = ShapeStruct(batch, channels, spatial, _PRED_DTYPES[p.dtype],
                                 _TARGET_DTYPES[t.dtype], layout)
        self.given = (("pred", pred, p), ("target", target, t), ("mask", mask, m))

    def addresses(self) -> tuple[int, int, int | None]:
        return (_address(self.p), _address(self.t),
                None if self.m is None else _address(self.m))

    def gradient_buffer(self, out: np.ndarray | None) -> np.ndarray:
        """A new gradient array, or `out` after checking it may take the gradient."""
        p = self.p
        if out is None:
            return np.empty(p.shape, p.dtype)
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray of dtype {p.dtype}, got "
                            f"{type(out).__name__}")
        if out.dtype != p.dtype or not out.dtype.isnative:
            raise TypeError(f"out has dtype {out.dtype}; expected pred's dtype, {p.dtype} "
                            f"(native byte order)")
        if out.shape != p.shape:
            raise ValueError(f"out has shape {out.shape}; expected pred's shape {p.shape}")
        if not out.flags.carray:
            flags = out.flags
            if not flags.c_contiguous:
                raise ValueError(f"out is not C-contiguous; pass a contiguous array, e.g. "
                                 f"numpy.empty(pred.shape, numpy.{p.dtype})")
            if not flags.writeable:
                raise ValueError("out is read-only; pass a writeable array")
            raise ValueError(f"out is not aligned to {p.dtype.itemsize} bytes; pass an aligned array")
        low = _address(out)
        high = low + out.nbytes
        for name, given, used in self.given:
            if used is None:
                continue
            used_low = _address(used)
            if name == "pred" and used_low == low:
                continue  # in place: out is pred's very memory
            if used_low < high and low < used_low + used.nbytes:
                raise ValueError(f"out shares memory with {name}; {_OUT_MEMORY}")
            # An array the caller passed but that was converted (copied) must not overlap
            # out either: a view of out is refused whether or not it happens to be copied.
            if isinstance(given, np.ndarray) and given.__array_interface__["data"][0] != used_low:
                given_low, given_high = _byte_range(given)
                if given_low < high and low < given_high:
                    raise ValueError(f"out shares memory with {name}; {_OUT_MEMORY}")
        return out


# --- the functions ---------------------------------------------------------------------------


def _function(name: str):
    """The C function `name`, or GeneralAPIUnavailable when the library lacks it."""
    if _library.general_api_missing is not None:
        raise _library.GeneralAPIUnavailable(_library.general_api_missing)
    return getattr(_lib, name)


def _segment_outputs(options: OptionsStruct, call: _Call) -> tuple[np.ndarray, np.ndarray]:
    count = c_size_t()
    _function("segloss_segment_count")(byref(options), byref(call.shape), byref(count))
    return np.empty(count.value), np.empty((count.value, SUMS_PER_SEGMENT))


def loss(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None, *,
         options: Options | Mapping | None = None, return_segments: bool = False,
         **option_kwargs) -> float | tuple[float, np.ndarray, np.ndarray]:
    """The loss element_weight * E + region_weight * R (see Options and segloss.h).

    options: an Options (or a mapping of its fields); keyword arguments named like its
    fields change it for this call: loss(p, t, region_term="jaccard", segments="channel").
    With return_segments, returns (loss, segment_scores, segment_sums) (see the module
    docstring). Shapes, dtypes and errors: see the module docstring.

    >>> round(loss([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 1]), 6)
    0.152664
    """
    forward = _function("segloss_forward")
    resolved = _resolve(options, option_kwargs)
    call = _Call(pred, target, mask)
    struct, _arrays = _options_struct(resolved, call.shape.channels)
    p_address, t_address, m_address = call.addresses()
    value = c_double()
    if not return_segments:
        forward(byref(struct), byref(call.shape), p_address, t_address, m_address, byref(value),
                None, None)
        return value.value
    scores, sums = _segment_outputs(struct, call)
    forward(byref(struct), byref(call.shape), p_address, t_address, m_address, byref(value),
            _address(scores), _address(sums))
    return value.value, scores, sums


def loss_grad(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None, *,
              grad_loss: float = 1.0, out: np.ndarray | None = None,
              options: Options | Mapping | None = None, **option_kwargs) -> np.ndarray:
    """grad_loss * d loss / d pred (with respect to the logits for input="logits"), an
    array of pred's shape and dtype, 0 where the mask is 0.

    With ``out=`` the gradient is written into that array (it may be pred itself) and out
    is returned; see the module docstring. Options as for `loss`.

    >>> loss_grad(np.array([0.9, 0.1, 0.8, 0.7]), [1, 0, 1, 1]).round(6)
    array([-0.224096,  0.207528, -0.241457, -0.263779])
    """
    backward = _function("segloss_backward")
    resolved = _resolve(options, option_kwargs)
    call = _Call(pred, target, mask)
    struct, _arrays = _options_struct(resolved, call.shape.channels)
    grad_loss = float(grad_loss)
    p_address, t_address, m_address = call.addresses()
    grad = call.gradient_buffer(out)
    backward(byref(struct), byref(call.shape), p_address, t_address, m_address, grad_loss,
             _address(grad))
    return grad


def loss_and_grad(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None, *,
                  out: np.ndarray | None = None, return_segments: bool = False,
                  options: Options | Mapping | None = None, **option_kwargs
                  ) -> tuple[float, np.ndarray] | tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(loss(...), loss_grad(...)) from one statistics pass and one gradient pass: the call
    for a training step. With return_segments, (loss, grad, segment_scores, segment_sums).
    out= and options as for loss_grad and loss.

    >>> value, grad = loss_and_grad(np.array([0.9, 0.1, 0.8, 0.7]), [1, 0, 1, 1])
    >>> round(value, 6), grad.round(6)
    (0.152664, array([-0.224096,  0.207528, -0.241457, -0.263779]))
    """
    forward_backward = _function("segloss_forward_backward")
    resolved = _resolve(options, option_kwargs)
    call = _Call(pred, target, mask)
    struct, _arrays = _options_struct(resolved, call.shape.channels)
    p_address, t_address, m_address = call.addresses()
    grad = call.gradient_buffer(out)
    value = c_double()
    if not return_segments:
        forward_backward(byref(struct), byref(call.shape), p_address, t_address, m_address,
                         byref(value), _address(grad), None, None)
        return value.value, grad
    scores, sums = _segment_outputs(struct, call)
    forward_backward(byref(struct), byref(call.shape), p_address, t_address, m_address,
                     byref(value), _address(grad), _address(scores), _address(sums))
    return value.value, grad, scores, sums
