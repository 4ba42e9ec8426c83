"""PyTorch modules computed by libsegloss: drop-ins for the usual DiceLoss, nn.BCELoss and
BCEDiceLoss, with autograd.

    >>> import torch
    >>> from segloss.torch import BCEDiceLoss
    >>> pred = torch.tensor([0.9, 0.1, 0.8, 0.7], requires_grad=True)
    >>> loss = BCEDiceLoss()(pred, torch.tensor([1., 0., 1., 1.]))
    >>> loss.backward()
    >>> round(loss.item(), 6), pred.grad.numpy().round(6)
    (0.152664, array([-0.224096,  0.207528, -0.241457, -0.263779], dtype=float32))

When pred requires grad (and grad mode is on), the forward computes the gradient too —
in one fused call for BCEDiceLoss — and saves it; backward returns it times the upstream
gradient, so a second backward through the same graph raises torch's usual error.
Otherwise (torch.no_grad(), or a pred that does not require grad) only the loss is
computed.

Tensors must be on the CPU. pred and target must have the same shape; the loss is not
differentiable with respect to target, so a target that requires grad is an error
(detach it). float32 tensors are used without a copy; other dtypes are converted to
float32 for the computation, and the loss (a 0-d tensor) and the gradient come back in
pred's dtype.

SegLoss is the general loss (segloss.Options: logits or probabilities, BCE and/or Dice,
Jaccard, Tversky, per sample, channel or sample x channel, masks), computed in the input's
own precision, float32 or float64; see its docstring. With process_group= it is the loss of
a batch split across torch.distributed processes (the global Dice, via segloss.distributed).
"""
from __future__ import annotations

try:
    import torch
except ImportError as error:
    raise ImportError(
        "segloss.torch needs PyTorch, which is not installed (pip install torch); the numpy "
        "API, segloss.dice_loss and the others, works without it") from error

import numpy as np

from . import _api, _general, distributed


def _cpu_tensor(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """The tensor, detached, after the checks every module makes: a real CPU tensor."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu":
        raise ValueError(f"segloss computes on the CPU only; {name} is on device "
                         f"'{tensor.device}' (move it with .cpu())")
    if tensor.is_complex():
        raise TypeError(f"{name} has dtype {tensor.dtype}; expected real numbers")
    return tensor.detach()


def _array(name: str, tensor: torch.Tensor):
    """The tensor's data as a numpy array for the numpy API: a view when it is float32."""
    tensor = _cpu_tensor(name, tensor)
    if tensor.dtype != torch.float32:
        tensor = tensor.to(torch.float32)
    return tensor.numpy()


def _check_target(target: torch.Tensor) -> None:
    if isinstance(target, torch.Tensor) and target.requires_grad and torch.is_grad_enabled():
        raise ValueError("target requires grad, but the loss is not differentiable with respect "
                         "to target; pass target.detach()")


class _PrecomputedGradient(torch.autograd.Function):
    """The autograd node of every loss: forward computes the loss and its gradient with
    one `forward_backward(p, t) -> (loss, grad)` call and saves the gradient; backward
    returns it times the upstream gradient."""

    @staticmethod
    def forward(ctx, pred: torch.Tensor, p, t, forward_backward) -> torch.Tensor:
        loss, grad = forward_backward(p, t)
        ctx.save_for_backward(torch.from_numpy(grad).to(pred.dtype))
        return torch.tensor(loss, dtype=pred.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None


def _loss(pred: torch.Tensor, target: torch.Tensor, forward, forward_backward) -> torch.Tensor:
    """The loss as a 0-d tensor of pred's dtype: from `forward(p, t) -> float` when no
    gradient is needed, else through autograd with `forward_backward`."""
    _check_target(target)
    p, t = _array("pred", pred), _array("target", target)
    if torch.is_grad_enabled() and pred.requires_grad:
        return _PrecomputedGradient.apply(pred, p, t, forward_backward)
    return torch.tensor(forward(p, t), dtype=pred.dtype)


class DiceLoss(torch.nn.Module):
    """1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth) over all elements."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        smooth = self.smooth
        return _loss(
            pred, target,
            lambda p, t: _api.dice_loss(p, t, smooth),
            lambda p, t: (_api.dice_loss(p, t, smooth), _api.dice_loss_backward(p, t, smooth)))

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}"


class BCELoss(torch.nn.Module):
    """torch.nn.BCELoss() (mean reduction, log clamped at -100)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _loss(
            pred, target,
            _api.bce_loss,
            lambda p, t: (_api.bce_loss(p, t), _api.bce_loss_backward(p, t)))


class BCEDiceLoss(torch.nn.Module):
    """weight_bce * BCELoss()(pred, target) + weight_dice * DiceLoss(smooth)(pred, target)."""

    def __init__(self, weight_bce: float = 0.5, weight_dice: float = 0.5, smooth: float = 1.0) -> None:
        super().__init__()
        self.weight_bce = weight_bce
        self.weight_dice = weight_dice
        self.smooth = smooth

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = (self.weight_bce, self.weight_dice, self.smooth)
        return _loss(
            pred, target,
            lambda p, t: _api.bce_dice_loss(p, t, *weights),
            lambda p, t: _api.bce_dice_loss_and_grad(p, t, *weights))

    def extra_repr(self) -> str:
        return f"weight_bce={self.weight_bce}, weight_dice={self.weight_dice}, smooth={self.smooth}"


# --- the general loss ------------------------------------------------------------------------

_COMPUTED_DTYPES = (torch.float32, torch.float64)


def _general_array(name: str, tensor: torch.Tensor, float_dtype: torch.dtype):
    """The tensor's data as a numpy array for the general numpy API: a view when its dtype
    is one the library reads (float32, float64, uint8, bool; integers are converted by
    the numpy API), else converted to `float_dtype`."""
    tensor = _cpu_tensor(name, tensor)
    if tensor.is_floating_point() and tensor.dtype not in _COMPUTED_DTYPES:
        tensor = tensor.to(float_dtype)  # float16, bfloat16: numpy has no bfloat16
    return tensor.resolve_neg().numpy()


class _GeneralLoss(torch.autograd.Function):
    """The autograd node of SegLoss: forward computes the loss, its gradient and the segment
    scores with one fused segloss_forward_backward call and saves the gradient; backward
    returns it times the upstream gradient (no second pass over the data)."""

    @staticmethod
    def forward(ctx, input: torch.Tensor, p, t, m, options, segments: list) -> torch.Tensor:
        value, grad, scores, sums = _general.loss_and_grad(p, t, m, options=options,
                                                           return_segments=True)
        segments[:] = scores, sums
        ctx.save_for_backward(torch.from_numpy(grad).to(input.dtype))
        return torch.tensor(value, dtype=input.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None, None, None


class SegLoss(torch.nn.Module):
    """The general segmentation loss, element_weight * BCE + region_weight * (1 - score),
    with every option of segloss.Options (include/segloss.h has the formulas):

        SegLoss()                                   # the seed's 0.5 BCE + 0.5 Dice
        SegLoss(input="logits", segments="channel") # on logits, one Dice per class
        SegLoss(input="logits", element_term="none", region_weight=1.0,
                region_term="tversky", alpha=0.3, beta=0.7, gamma=0.75)  # focal Tversky
        SegLoss(options)                            # a segloss.Options, with keyword
                                                    # arguments changing it

    forward(input, target, mask=None) -> a 0-d tensor of input's dtype.
      input   probabilities, or logits with input="logits", of shape (N, C, *spatial)
              (N x C x H x W, N x C x D x H x W, ...; (N, C) and (S,) work too); float32 or
              float64, computed in that precision (float16 and bfloat16 in float32)
      target  input's shape; float32, float64, uint8 or bool used as they are, other
              integers converted; not differentiable: a target that requires grad is an
              error (detach it)
      mask    None, or bool/uint8 of input's shape (per element) or (N, 1, *spatial) (per
              pixel); elements where it is 0 count nowhere and get gradient 0
    Tensors must be on the CPU.

    When input requires grad (and grad mode is on), the forward computes the loss and its
    gradient in one fused call and saves the gradient; backward multiplies it by the
    upstream gradient, so a second backward through the same graph raises torch's usual
    error. Otherwise only the loss is computed.

    Per-segment scores. Every forward also stores, detached and without a second pass,
      last_segment_scores  float64 tensor of shape (segments,): the region score (Dice,
                           Jaccard or Tversky index) of each segment — 1 for "all", N for
                           "sample", C for "channel", N*C sample-major for
                           "sample_channel" (reshape(N, C)); empty segments included
      last_segment_sums    float64 tensor of shape (segments, 6): TP, FP, FN, SQ, the sum
                           of the element terms and the number of valid elements
    (None before the first call). So a training loop logs the per-class Dice of a batch:

        criterion = SegLoss(input="logits", segments="channel")
        loss = criterion(logits, target)
        loss.backward()
        per_class_dice = criterion.last_segment_scores   # C values

    Invalid options raise segloss.SegLossError (status ERROR_INVALID_OPTIONS) here, when
    the module is made.

    Data parallel: process_group. By default (None) the loss is that of this process's
    batch. With a torch.distributed process group — torch.distributed.group.WORLD (which is
    None until init_process_group has run: make the module after it) or one from new_group
    — whose backend takes CPU tensors (gloo; with NCCL for the model, make a second group
    with new_group(backend="gloo")), the loss is that of the batch of the whole group, each
    process holding its own slice of samples (the slices may differ in size, and be empty):

        criterion = SegLoss(input="logits", segments="channel", process_group=dist.group.WORLD)
        loss = criterion(logits, target)     # the global loss: the same on every rank

      - The forward computes this process's sums, all-reduces them over the group (a float64
        CPU tensor), and takes the loss from the sums: the global Dice (Jaccard, BCE, ...)
        of the concatenated batch, not the average of per-process losses, and the same
        value on every rank. With segments "sample" or "sample_channel" it first
        all-gathers the processes' batch sizes to place its samples in the batch (in the
        order of the ranks in the group); "all" and "channel" need no placing.
      - Backward gives the gradient of that global loss with respect to this process's
        input (computed in the forward: backward makes no collective call).
      - last_segment_scores and last_segment_sums are those of the whole batch.
      - The forward is a collective call: every process of the group must call it, the
        same number of times, with the same options and channels (also under no_grad).
      - DistributedDataParallel averages the parameters' gradients over its world_size W
        processes. Each process's gradient is its part of d(global loss)/d(parameters), and
        the parts add up to the whole, so after DDP's average the parameters hold
        d(global loss)/d(parameters) / W. For the exact gradient of the global loss, call
        (loss * W).backward() (W = torch.distributed.get_world_size()); leaving it out is
        the same as a learning rate W times smaller. (The usual per-process losses under
        DDP give the gradient of their average, which for a mean BCE over equal slices is
        the global BCE; for Dice it is not the global Dice.)
    """

    def __init__(self, options: _general.Options | None = None, *, process_group=None,
                 **option_kwargs) -> None:
        super().__init__()
        self.options = _general._resolve(options, option_kwargs)
        self.process_group = process_group
        self.last_segment_scores: torch.Tensor | None = None
        self.last_segment_sums: torch.Tensor | None = None

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_target(target)
        p = _general_array("input", input, torch.float32)
        if input.dtype not in _COMPUTED_DTYPES and not input.is_floating_point():
            raise TypeError(f"input has dtype {input.dtype}; expected a floating-point tensor")
        float_dtype = input.dtype if input.dtype in _COMPUTED_DTYPES else torch.float32
        t = _general_array("target", target, float_dtype)
        m = None if mask is None else _general_array("mask", mask, float_dtype)
        if self.process_group is not None:
            return self._global_loss(input, p, t, m)
        if torch.is_grad_enabled() and input.requires_grad:
            segments: list = []
            loss = _GeneralLoss.apply(input, p, t, m, self.options, segments)
            scores, sums = segments
        else:
            value, scores, sums = _general.loss(p, t, m, options=self.options,
                                                return_segments=True)
            loss = torch.tensor(value, dtype=input.dtype)
        self.last_segment_scores = torch.from_numpy(scores)
        self.last_segment_sums = torch.from_numpy(sums)
        return loss

    def _global_loss(self, input: torch.Tensor, p, t, m) -> torch.Tensor:
        """The loss of the whole group's batch (see the class docstring, process_group)."""
        import torch.distributed as dist

        group, options = self.process_group, self.options
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("SegLoss has a process_group, but torch.distributed is not "
                               "initialized (call torch.distributed.init_process_group first)")
        batch = p.shape[0] if p.ndim >= 2 else 1
        if options.segments in distributed._PER_SAMPLE:
            offset, total = distributed.torch_sample_slice(batch, group)
        else:
            offset, total = 0, max(batch, 1)  # the sums do not depend on where samples sit
        split = distributed._Split(p, t, m, offset, total, options, {})
        sums = split.sums()
        dist.all_reduce(torch.from_numpy(sums), op=dist.ReduceOp.SUM, group=group)
        scores = np.empty(len(sums))
        value = split.loss(sums, scores)
        self.last_segment_scores = torch.from_numpy(scores)
        self.last_segment_sums = torch.from_numpy(sums)
        if torch.is_grad_enabled() and input.requires_grad:
            grad = split.grad(sums, 1.0, None)
            return _PrecomputedGradient.apply(input, None, None, lambda _p, _t: (value, grad))
        return torch.tensor(value, dtype=input.dtype)

    def extra_repr(self) -> str:
        text = repr(self.options)[len("Options("):-1]
        if self.process_group is not None:
            text += (", " if text else "") + f"process_group={self.process_group!r}"
        return text
