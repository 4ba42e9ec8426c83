"""One loss over a batch split across processes (data parallel): the global Dice, not an
average of per-rank Dice losses.

Every loss of segloss is a function of per-segment sums (TP, FP, FN, SQ, the sum of the
element terms, the number of valid elements), and sums add up across processes. So ranks
that each hold a slice of the batch get the exact loss of the whole batch in three steps
(include/segloss.h, "Split phase"):

    sums = compute_sums(pred, target, mask, sample_offset=o, total_batch=n, options=opts)
    all_reduce(sums)                                   # element-wise sum across the ranks
    loss = loss_from_sums(sums, channels=C, total_batch=n, options=opts)  # same on every rank
    grad = grad_from_sums(pred, target, mask, sums=sums, sample_offset=o, total_batch=n,
                          options=opts)                # d loss / d (this rank's pred)

or in one call, loss_and_grad(pred, target, mask, all_reduce=..., sample_offset=o,
total_batch=n, options=opts). `all_reduce` is any callable that sums a float64 numpy array
in place across the processes (if it returns a numpy array instead, that array is used):

    mpi4py              lambda a: comm.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM)
    torch.distributed   torch_all_reduce(group)   (a gloo group: the sums are a CPU tensor)

The slice. This rank holds samples sample_offset ... sample_offset + N - 1 (N = pred's
first dimension; ranks may hold different N, and a rank may hold none) of a batch of
total_batch samples. With segments "all" and "channel" the sums do not depend on where the
samples sit, and the defaults (sample_offset 0, total_batch None) do. With "sample" and
"sample_channel" the sums have a row per segment of the *whole* batch, this rank's rows
filled and the others 0, so total_batch is required, the same on every rank, and
sample_offset must be this rank's: sample_slice(batch_sizes, rank) computes both from every
rank's N (torch_sample_slice gathers them over a torch.distributed group).

The result. The loss equals segloss.loss on the concatenated batch (to the rounding of the
sums' additions, well within 1e-6 relative) and is the same on every rank; the gradient is
this rank's part of segloss.loss_grad on the concatenated batch: the gradient of the global
loss with respect to this rank's pred. Every rank must make the same collective calls in
the same order, with the same options.

Arrays, options and errors are those of segloss.loss_and_grad (segloss._general). Besides
its errors: a bad slice (sample_offset + N > total_batch) is the library's SegLossError
with status ERROR_INVALID_ARGUMENT; a sums array whose length does not match the options
and shape (segments x 6 doubles) is a ValueError, checked here because the C functions
cannot know a buffer's length; a sum that is negative or not finite (a broken all-reduce)
is the library's ERROR_INVALID_ARGUMENT.
"""
from __future__ import annotations

import operator
from ctypes import byref, c_double, c_size_t
from typing import Callable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import _library
from ._api import _address
from ._general import Options, _Call, _options_struct, _resolve
from ._library import GeneralAPIUnavailable, ShapeStruct, SliceStruct, SUMS_PER_SEGMENT

__all__ = ["compute_sums", "grad_from_sums", "loss_and_grad", "loss_from_sums", "sample_slice",
           "sums_length", "torch_all_reduce", "torch_sample_slice"]

_lib = _library.library
_PER_SAMPLE = ("sample", "sample_channel")


def _function(name: str):
    """The C function `name` of the split phase, or GeneralAPIUnavailable."""
    if _library.general_api_missing is not None:
        raise GeneralAPIUnavailable(_library.general_api_missing)
    if _library.split_phase_missing is not None:
        raise GeneralAPIUnavailable(_library.split_phase_missing)
    return getattr(_lib, name)


# --- the slice ----------------------------------------------------------------------------------


def sample_slice(batch_sizes: Sequence[int], rank: int) -> tuple[int, int]:
    """(sample_offset, total_batch) of `rank` when rank r holds batch_sizes[r] samples, the
    ranks' samples in rank order: sample_slice([4, 3], 1) == (4, 7)."""
    sizes = [operator.index(size) for size in batch_sizes]
    rank = operator.index(rank)
    if any(size < 0 for size in sizes):
        raise ValueError(f"batch sizes must be >= 0; got {sizes}")
    if not 0 <= rank < len(sizes):
        raise ValueError(f"rank {rank} is not one of the {len(sizes)} ranks")
    return sum(sizes[:rank]), sum(sizes)


def _slice(options: Options, batch: int, sample_offset: int, total_batch: int | None) -> SliceStruct:
    offset = operator.index(sample_offset)
    if total_batch is None:
        if options.segments in _PER_SAMPLE:
            raise ValueError(
                f"segments={options.segments!r} has a segment per sample of the whole batch: "
                f"pass total_batch (the whole batch's sample count, the same on every rank) and "
                f"this rank's sample_offset (sample_slice computes both)")
        total = offset + batch
    else:
        total = operator.index(total_batch)
    # Negative values wrap to huge ones, which the library rejects (INVALID_ARGUMENT).
    return SliceStruct(offset, total)


def _length(struct, shape: ShapeStruct, slice_: SliceStruct) -> int:
    """segloss_sums_length (a rank with no samples is a shape of batch 0 with a slice)."""
    length = c_size_t()
    _function("segloss_sums_length")(byref(struct), byref(shape), byref(slice_), byref(length))
    return length.value


class _Split:
    """One rank's arrays, options and slice, checked, and the sums' length."""

    __slots__ = ("options", "call", "struct", "arrays", "slice", "length")

    def __init__(self, pred, target, mask, sample_offset, total_batch, options, option_kwargs):
        self.options = _resolve(options, option_kwargs)
        self.call = _Call(pred, target, mask)
        self.struct, self.arrays = _options_struct(self.options, self.call.shape.channels)
        self.slice = _slice(self.options, self.call.shape.batch, sample_offset, total_batch)
        self.length = _length(self.struct, self.call.shape, self.slice)

    def sums(self) -> np.ndarray:
        sums = np.zeros((self.length // SUMS_PER_SEGMENT, SUMS_PER_SEGMENT))
        if self.call.shape.batch:
            _function("segloss_compute_sums")(byref(self.struct), byref(self.call.shape),
                                              byref(self.slice), *self.call.addresses(),
                                              _address(sums), self.length)
        return sums

    def loss(self, sums: np.ndarray, scores: np.ndarray | None) -> float:
        value = c_double()
        _function("segloss_loss_from_sums")(byref(self.struct), byref(self.call.shape),
                                            byref(self.slice), _address(sums), self.length,
                                            byref(value),
                                            None if scores is None else _address(scores))
        return value.value

    def grad(self, sums: np.ndarray, grad_loss: float, out: np.ndarray | None) -> np.ndarray:
        grad = self.call.gradient_buffer(out)
        if self.call.shape.batch:
            _function("segloss_backward_from_sums")(
                byref(self.struct), byref(self.call.shape), byref(self.slice),
                *self.call.addresses(), _address(sums), self.length, float(grad_loss),
                _address(grad))
        return grad


def _sums_array(sums: ArrayLike, length: int) -> np.ndarray:
    """`sums` as a contiguous float64 array of `length` values, else ValueError."""
    array = np.ascontiguousarray(np.asarray(sums, dtype=np.float64))
    if array.size != length:
        raise ValueError(
            f"sums has {array.size} values, but these options and shape need {length} "
            f"({length // SUMS_PER_SEGMENT} segments x {SUMS_PER_SEGMENT}): make them with "
            f"compute_sums with the same options, channels and total_batch on every rank")
    return array


# --- the three steps ----------------------------------------------------------------------------


def sums_length(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None, *,
                sample_offset: int = 0, total_batch: int | None = None,
                options: Options | Mapping | None = None, **option_kwargs) -> int:
    """The number of doubles compute_sums returns (segments of the whole batch x 6)."""
    return _Split(pred, target, mask, sample_offset, total_batch, options, option_kwargs).length


def compute_sums(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None, *,
                 sample_offset: int = 0, total_batch: int | None = None,
                 options: Options | Mapping | None = None, **option_kwargs) -> np.ndarray:
    """Step 1: this rank's sums, a new float64 array of shape (segments, 6) — the segments
    of the whole batch; for per-sample segments, the other ranks' rows are 0. All-reduce it
    (element-wise sum across the ranks) before steps 3 (loss_from_sums, grad_from_sums)."""
    return _Split(pred, target, mask, sample_offset, total_batch, options, option_kwargs).sums()


def loss_from_sums(sums: ArrayLike, *, channels: int, total_batch: int | None = None,
                   return_scores: bool = False, options: Options | Mapping | None = None,
                   **option_kwargs) -> float | tuple[float, np.ndarray]:
    """Step 3: the loss of the whole batch from all-reduced `sums`, the same on every rank.

    channels is pred's C; total_batch the whole batch's sample count (None: inferred from the
    length of sums with per-sample segments, not needed otherwise). With return_scores,
    (loss, scores): every segment's score (Dice, Jaccard or Tversky index) of the whole batch.
    """
    resolved = _resolve(options, option_kwargs)
    channels = operator.index(channels)
    count = np.size(sums) // SUMS_PER_SEGMENT
    if total_batch is None:
        per_channel = channels if resolved.segments == "sample_channel" else 1
        total_batch = max(count // max(per_channel, 1), 1) if resolved.segments in _PER_SAMPLE else 1
    # A one-element stand-in of the rank's arrays: only the channels count.
    stand_in = np.zeros((1, channels, 1), np.float32)
    split = _Split(stand_in, stand_in, None, 0, total_batch, resolved, {})
    array = _sums_array(sums, split.length)
    scores = np.empty(split.length // SUMS_PER_SEGMENT) if return_scores else None
    value = split.loss(array, scores)
    return (value, scores) if return_scores else value


def grad_from_sums(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None, *,
                   sums: ArrayLike, sample_offset: int = 0, total_batch: int | None = None,
                   grad_loss: float = 1.0, out: np.ndarray | None = None,
                   options: Options | Mapping | None = None, **option_kwargs) -> np.ndarray:
    """Step 3: grad_loss * d (the whole batch's loss) / d pred for this rank's pred, from
    all-reduced `sums`: an array of pred's shape and dtype (out= as in segloss.loss_grad)."""
    split = _Split(pred, target, mask, sample_offset, total_batch, options, option_kwargs)
    return split.grad(_sums_array(sums, split.length), grad_loss, out)


def loss_and_grad(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None, *,
                  all_reduce: Callable[[np.ndarray], object], sample_offset: int = 0,
                  total_batch: int | None = None, out: np.ndarray | None = None,
                  return_segments: bool = False, options: Options | Mapping | None = None,
                  **option_kwargs
                  ) -> tuple[float, np.ndarray] | tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The three steps in one call: (loss, grad) with loss the whole batch's loss (the same
    on every rank) and grad its gradient with respect to this rank's pred.

    all_reduce(sums) must sum the float64 array `sums` in place across the processes (or
    return the summed numpy array). With return_segments, (loss, grad, segment_scores,
    segment_sums) of the whole batch, as segloss.loss_and_grad's. Options, out= and errors
    as segloss.loss_and_grad's (see the module docstring for the slice).
    """
    if not callable(all_reduce):
        raise TypeError(f"all_reduce must be a callable that sums a float64 numpy array in "
                        f"place across processes; got {type(all_reduce).__name__}")
    split = _Split(pred, target, mask, sample_offset, total_batch, options, option_kwargs)
    sums = split.sums()
    reduced = all_reduce(sums)
    if isinstance(reduced, np.ndarray) and reduced is not sums:
        sums = _sums_array(reduced, split.length).reshape(sums.shape)
    grad = split.grad(sums, 1.0, out)
    scores = np.empty(split.length // SUMS_PER_SEGMENT) if return_segments else None
    value = split.loss(sums, scores)
    return (value, grad, scores, sums) if return_segments else (value, grad)


# --- torch.distributed --------------------------------------------------------------------------


def torch_all_reduce(group=None) -> Callable[[np.ndarray], None]:
    """An all_reduce for loss_and_grad over a torch.distributed process group (None: the
    default group): torch.distributed.all_reduce(SUM) on the array as a CPU tensor, so the
    group's backend must take CPU tensors (gloo, or mpi)."""
    import torch
    import torch.distributed as dist

    def all_reduce(array: np.ndarray) -> None:
        dist.all_reduce(torch.from_numpy(array), op=dist.ReduceOp.SUM, group=group)

    return all_reduce


def torch_sample_slice(batch: int, group=None) -> tuple[int, int]:
    """(sample_offset, total_batch) of this process when every process of the
    torch.distributed group (None: the default group) holds `batch` samples of its own, in
    the order of their ranks in the group: all-gathers the batch sizes (a collective call)."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size(group)
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([operator.index(batch)], dtype=torch.int64), group=group)
    return sample_slice([int(size) for size in sizes], dist.get_rank(group))
