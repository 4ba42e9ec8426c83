"""The numpy API: segmentation losses and their gradients on arrays of any shape.

Arrays are flattened like torch's ``view(-1)``: every element counts once, whatever the
shape. ``pred`` holds probabilities in [0, 1], ``target`` labels in [0, 1] (0/1 masks or
soft labels), and both must have the same shape. A C-contiguous float32 array is handed
to the library as it is, without a copy; anything else (other real dtypes — float64,
float16, integers, bool —, non-contiguous or unaligned arrays, array-likes) is first
converted to a contiguous float32 array, so range checks apply to the float32 values.
Gradients come back as new float32 arrays of pred's shape.

The gradient functions take a keyword ``out=``: a preallocated array the gradient is
written into instead (nothing is allocated), and which is returned — for a training loop
that reuses its buffers. It must be a C-contiguous, aligned, writeable float32 ndarray of
pred's shape (else TypeError for the type or dtype, ValueError for the rest). It may be
``pred`` itself when pred is such an array: the gradient then replaces pred, in place. Any
other sharing of memory between out and pred or target (a view, a slice, target itself)
is a ValueError, as the library leaves it undefined; the check compares byte ranges, so
arrays whose ranges overlap count as sharing. When a call raises, out is left untouched.

Errors: None or a non-real dtype (complex, object, str) raises TypeError; different
shapes raise ValueError; everything the library rejects (no elements, pred or target
outside [0, 1] or NaN, a negative or non-finite weight or smooth, a non-finite
grad_loss) raises SegLossError, a ValueError carrying the library's status and message.
"""
from __future__ import annotations

import operator
from ctypes import addressof, byref, c_char, c_float

import numpy as np
from numpy.typing import ArrayLike

from . import _library

_lib = _library.library
_dice_forward = _lib.segloss_dice_forward
_dice_backward = _lib.segloss_dice_backward
_bce_forward = _lib.segloss_bce_forward
_bce_backward = _lib.segloss_bce_backward
_bce_dice_forward = _lib.segloss_bce_dice_forward
_bce_dice_backward = _lib.segloss_bce_dice_backward
_bce_dice_forward_backward = _lib.segloss_bce_dice_forward_backward

_FLOAT32 = np.dtype(np.float32)
_REAL_KINDS = frozenset("biuf")  # bool, signed and unsigned integers, floating point
_INT_MAX = 2**31 - 1
_OUT_MEMORY = ("out must be pred itself (in place) or share no memory with pred or target "
               "(the library leaves other overlaps undefined)")


def _as_float32(name: str, x: ArrayLike) -> np.ndarray:
    """`x` as a C-contiguous, aligned float32 array: `x` itself when it already is one."""
    if type(x) is np.ndarray and x.dtype is _FLOAT32 and x.flags.carray:
        return x
    if x is None:
        raise TypeError(f"{name} is None; expected an array")
    array = np.asarray(x)
    if array.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name} has dtype {array.dtype}; expected real numbers (float, int or bool)")
    return np.require(array, _FLOAT32, "CA")


def _inputs(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = _as_float32("pred", pred)
    t = _as_float32("target", target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape; got pred {p.shape} "
                         f"and target {t.shape}")
    return p, t


def _address(array: np.ndarray) -> int:
    """The data pointer of a C-contiguous array.

    Viewing the buffer as a ctypes object is several times faster than
    ``__array_interface__``; it needs a writable array of at least one byte, so read-only
    and empty arrays take the slower way.
    """
    try:
        return addressof(c_char.from_buffer(array))
    except (TypeError, ValueError):
        return array.__array_interface__["data"][0]


def _byte_range(array: np.ndarray) -> tuple[int, int]:
    """[low, high): the bytes `array`'s elements lie in (empty for an empty array)."""
    interface = array.__array_interface__
    low = high = interface["data"][0]
    if array.size == 0:
        return low, low
    strides = interface["strides"]
    if strides is None:  # C-contiguous
        return low, low + array.nbytes
    for extent, stride in zip(array.shape, strides):
        if stride < 0:
            low += (extent - 1) * stride
        else:
            high += (extent - 1) * stride
    return low, high + array.itemsize


def _out_address(out: np.ndarray, p: np.ndarray, t: np.ndarray, p_address: int,
                 t_address: int, pred: object, target: object) -> int:
    """The data pointer of `out` after checking it can take the gradient of (p, t): a
    C-contiguous, aligned, writeable float32 ndarray of p's shape, whose bytes overlap
    neither p (unless it is p's very memory: in place) nor t, nor the arrays the caller
    passed when p or t are converted copies of them. Reads nothing but metadata, so a
    call that raises here leaves out untouched."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray of dtype float32, got {type(out).__name__}")
    if out.dtype is not _FLOAT32 and out.dtype != _FLOAT32:
        raise TypeError(f"out has dtype {out.dtype}; expected float32 (native byte order)")
    if out.shape != p.shape:
        raise ValueError(f"out has shape {out.shape}; expected pred's shape {p.shape}")
    if not out.flags.carray:  # C-contiguous, aligned and writeable
        flags = out.flags
        if not flags.c_contiguous:
            raise ValueError("out is not C-contiguous; pass a contiguous array, e.g. "
                             "numpy.empty(pred.shape, numpy.float32)")
        if not flags.writeable:
            raise ValueError("out is read-only; pass a writeable array")
        raise ValueError("out is not aligned to 4 bytes; pass an aligned array")
    address = _address(out)
    # out, p and t all are C-contiguous float32 arrays of the same shape: the same length.
    size = out.nbytes
    if address != p_address and abs(address - p_address) < size:
        raise ValueError(f"out overlaps pred but is not pred itself; {_OUT_MEMORY}")
    if abs(address - t_address) < size:
        raise ValueError(f"out shares memory with target; {_OUT_MEMORY}")
    # When pred or target is an array that was converted (copied), out must not overlap
    # it either: a view of out is refused whether or not it happens to be copied first.
    if pred is not p and isinstance(pred, np.ndarray):
        _check_given("pred", pred, p_address, address, size)
    if target is not t and isinstance(target, np.ndarray):
        _check_given("target", target, t_address, address, size)
    return address


def _check_given(name: str, given: np.ndarray, address_used: int, address: int, size: int) -> None:
    """Raises when the array the caller passed as `name` overlaps out's bytes
    [address, address + size) and was not itself handed to the library (checked already)."""
    if given.__array_interface__["data"][0] == address_used:  # a view, not a copy
        return
    low, high = _byte_range(given)
    if low < address + size and address < high:
        raise ValueError(f"out shares memory with {name}; {_OUT_MEMORY}")


def _gradient_buffer(out: np.ndarray | None, p: np.ndarray, t: np.ndarray, p_address: int,
                     t_address: int, pred: object, target: object) -> tuple[np.ndarray, int]:
    """The array the gradient goes to, and its address: a new one, or the checked `out`."""
    if out is None:
        grad = np.empty(p.shape, _FLOAT32)
        return grad, _address(grad)
    return out, _out_address(out, p, t, p_address, t_address, pred, target)


def dice_loss(pred: ArrayLike, target: ArrayLike, smooth: float = 1.0) -> float:
    """Dice loss over all elements.

    I = sum(pred * target), P = sum(pred), T = sum(target);
    loss = 1 - (2 I + smooth) / (P + T + smooth).

    With smooth = 0 and pred and target all zero the loss is NaN (0/0), as in PyTorch.

    >>> round(dice_loss([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 1]), 6)
    0.107692
    """
    p, t = _inputs(pred, target)
    loss = c_float()
    _dice_forward(_address(p), _address(t), p.size, float(smooth), byref(loss))
    return loss.value


def dice_loss_backward(pred: ArrayLike, target: ArrayLike, smooth: float = 1.0,
                       grad_loss: float = 1.0, *, out: np.ndarray | None = None) -> np.ndarray:
    """Gradient of grad_loss * dice_loss(pred, target, smooth) with respect to pred.

    grad[i] = grad_loss * ((2 I + smooth) / D**2 - 2 target[i] / D),  D = P + T + smooth.

    With ``out=`` the gradient is written into that preallocated float32 array of pred's
    shape (it may be pred itself) and out is returned; see the module docstring.

    >>> dice_loss_backward([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 1]).round(6)
    array([-0.170414,  0.137278, -0.170414, -0.170414], dtype=float32)
    """
    p, t = _inputs(pred, target)
    p_address, t_address = _address(p), _address(t)
    grad, grad_address = _gradient_buffer(out, p, t, p_address, t_address, pred, target)
    _dice_backward(p_address, t_address, p.size, float(smooth), float(grad_loss), grad_address)
    return grad


def bce_loss(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean binary cross-entropy, exactly torch.nn.BCELoss():

    loss = mean(-(t * max(log p, -100) + (1 - t) * max(log(1 - p), -100))).

    >>> round(bce_loss([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 1]), 6)
    0.197635
    """
    p, t = _inputs(pred, target)
    loss = c_float()
    _bce_forward(_address(p), _address(t), p.size, byref(loss))
    return loss.value


def bce_loss_backward(pred: ArrayLike, target: ArrayLike, grad_loss: float = 1.0, *,
                      out: np.ndarray | None = None) -> np.ndarray:
    """Gradient of grad_loss * bce_loss(pred, target) with respect to pred:

    grad[i] = grad_loss * (p_i - t_i) / max(p_i * (1 - p_i), 1e-12) / count.

    With ``out=`` the gradient is written into that preallocated float32 array of pred's
    shape (it may be pred itself) and out is returned; see the module docstring.

    >>> bce_loss_backward([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 1]).round(6)
    array([-0.277778,  0.277778, -0.3125  , -0.357143], dtype=float32)
    """
    p, t = _inputs(pred, target)
    p_address, t_address = _address(p), _address(t)
    grad, grad_address = _gradient_buffer(out, p, t, p_address, t_address, pred, target)
    _bce_backward(p_address, t_address, p.size, float(grad_loss), grad_address)
    return grad


def bce_dice_loss(pred: ArrayLike, target: ArrayLike, weight_bce: float = 0.5,
                  weight_dice: float = 0.5, smooth: float = 1.0) -> float:
    """weight_bce * bce_loss(pred, target) + weight_dice * dice_loss(pred, target, smooth).

    Weights and smooth must be finite and >= 0.

    >>> round(bce_dice_loss([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 1]), 6)
    0.152664
    """
    p, t = _inputs(pred, target)
    loss = c_float()
    _bce_dice_forward(_address(p), _address(t), p.size, float(weight_bce), float(weight_dice),
                      float(smooth), byref(loss))
    return loss.value


def bce_dice_loss_backward(pred: ArrayLike, target: ArrayLike, weight_bce: float = 0.5,
                           weight_dice: float = 0.5, smooth: float = 1.0,
                           grad_loss: float = 1.0, *,
                           out: np.ndarray | None = None) -> np.ndarray:
    """Gradient of grad_loss * bce_dice_loss(pred, target, ...) with respect to pred:
    the weighted sum of bce_loss_backward and dice_loss_backward.

    With ``out=`` the gradient is written into that preallocated float32 array of pred's
    shape (it may be pred itself) and out is returned; see the module docstring.

    >>> bce_dice_loss_backward([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 1]).round(6)
    array([-0.224096,  0.207528, -0.241457, -0.263779], dtype=float32)
    """
    p, t = _inputs(pred, target)
    p_address, t_address = _address(p), _address(t)
    grad, grad_address = _gradient_buffer(out, p, t, p_address, t_address, pred, target)
    _bce_dice_backward(p_address, t_address, p.size, float(weight_bce), float(weight_dice),
                       float(smooth), float(grad_loss), grad_address)
    return grad


def bce_dice_loss_and_grad(pred: ArrayLike, target: ArrayLike, weight_bce: float = 0.5,
                           weight_dice: float = 0.5, smooth: float = 1.0, *,
                           out: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """(bce_dice_loss(...), bce_dice_loss_backward(...)) from one pass over the inputs:
    the call for a training step.

    With ``out=`` the gradient is written into that preallocated float32 array of pred's
    shape (it may be pred itself) and (loss, out) is returned; see the module docstring.

    >>> loss, grad = bce_dice_loss_and_grad([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 1])
    >>> round(loss, 6), grad.round(6)
    (0.152664, array([-0.224096,  0.207528, -0.241457, -0.263779], dtype=float32))
    """
    p, t = _inputs(pred, target)
    p_address, t_address = _address(p), _address(t)
    grad, grad_address = _gradient_buffer(out, p, t, p_address, t_address, pred, target)
    loss = c_float()
    _bce_dice_forward_backward(p_address, t_address, p.size, float(weight_bce),
                               float(weight_dice), float(smooth), byref(loss), grad_address)
    return loss.value, grad


def set_num_threads(n: int) -> None:
    """Sets the worker threads every later call may use (process-wide); n <= 0 restores
    the default (SEGLOSS_NUM_THREADS, else the CPUs this process may use). Values above
    256 are taken as 256. Results do not depend on it, only speed does."""
    n = operator.index(n)
    _lib.segloss_set_num_threads(min(n, _INT_MAX) if n > 0 else 0)


def get_num_threads() -> int:
    """The number of worker threads calls may use now (at least 1)."""
    return _lib.segloss_get_num_threads()


def kernel_name() -> str:
    """The compiled kernel this process runs: "avx512", "avx2" or "baseline"."""
    return _lib.segloss_kernel_name().decode()


def version() -> str:
    """The library's version, "MAJOR.MINOR.PATCH"."""
    return _lib.segloss_version_string().decode()
