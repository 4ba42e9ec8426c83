"""segloss: segmentation losses (Dice, BCE, BCE+Dice), forward and backward, on numpy
arrays, computed by libsegloss.so.

    >>> import numpy as np, segloss
    >>> pred = np.array([0.9, 0.1, 0.8, 0.7], np.float32)
    >>> target = np.array([1, 0, 1, 1], np.float32)
    >>> loss, grad = segloss.bce_dice_loss_and_grad(pred, target)
    >>> round(loss, 6)
    0.152664

The general API — probabilities or logits, BCE and/or Dice, Jaccard or Tversky, per
sample, channel or sample x channel, with masks — is segloss.loss, segloss.loss_grad and
segloss.loss_and_grad with a segloss.Options (see segloss._general), e.g. the per-class
Dice + BCE of logits, segloss.loss(logits, target, input="logits", segments="channel").

PyTorch modules with autograd are in segloss.torch. segloss.distributed computes one loss
over a batch split across processes (MPI, torch.distributed): the global Dice, not an
average of per-process Dice losses.
"""
from ._api import (
    bce_dice_loss,
    bce_dice_loss_and_grad,
    bce_dice_loss_backward,
    bce_loss,
    bce_loss_backward,
    dice_loss,
    dice_loss_backward,
    get_num_threads,
    kernel_name,
    set_num_threads,
    version,
)
from ._general import Options, loss, loss_and_grad, loss_grad
from ._library import GeneralAPIUnavailable, SegLossError, Status

__version__: str = version()

__all__ = [
    "GeneralAPIUnavailable",
    "Options",
    "SegLossError",
    "Status",
    "__version__",
    "bce_dice_loss",
    "bce_dice_loss_and_grad",
    "bce_dice_loss_backward",
    "bce_loss",
    "bce_loss_backward",
    "dice_loss",
    "dice_loss_backward",
    "get_num_threads",
    "kernel_name",
    "loss",
    "loss_and_grad",
    "loss_grad",
    "set_num_threads",
]
