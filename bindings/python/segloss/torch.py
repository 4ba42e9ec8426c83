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
"""
from __future__ import annotations

try:
    import torch
except ImportError as error:
    raise ImportError(
        "segloss.torch needs PyTorch, which is not installed (pip install torch); the numpy "
        "API, segloss.dice_loss and the others, works without it") from error

from . import _api


def _array(name: str, tensor: torch.Tensor):
    """The tensor's data as a numpy array for the numpy API: a view when it is float32."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu":
        raise ValueError(f"segloss computes on the CPU only; {name} is on device "
                         f"'{tensor.device}' (move it with .cpu())")
    if tensor.is_complex():
        raise TypeError(f"{name} has dtype {tensor.dtype}; expected real numbers")
    tensor = tensor.detach()
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
