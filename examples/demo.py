"""The worked example of segloss from Python: BCE+Dice loss and gradient of four pixels,
through the numpy API and, where PyTorch is installed, through segloss.torch.

    PYTHONPATH=bindings/python python3 examples/demo.py      (make demo runs it)
"""
import numpy as np

import segloss


def show(label: str, dice: float, loss: float, grad) -> None:
    print(f"segloss {segloss.__version__} ({label}, kernel {segloss.kernel_name()})")
    print(f"dice loss     {dice:.8f}")
    print(f"bce+dice loss {loss:.8f}")
    print("gradient      [" + ", ".join(f"{g:.8f}" for g in grad) + "]")


pred = np.array([0.9, 0.1, 0.8, 0.7], np.float32)
target = np.array([1, 0, 1, 1], np.float32)

loss, grad = segloss.bce_dice_loss_and_grad(pred, target)
show("numpy", segloss.dice_loss(pred, target), loss, grad)

# Bad input raises SegLossError, a ValueError carrying the library's status and message.
try:
    segloss.bce_dice_loss(np.array([0.9, 1.5, 0.8, 0.7], np.float32), target)
except segloss.SegLossError as error:
    print(f"pred 1.5      status {int(error.status)}: {error.message}")

try:
    import torch
except ImportError:
    print("torch is not installed: skipped the segloss.torch example")
else:
    from segloss.torch import BCEDiceLoss, DiceLoss

    pred_t = torch.tensor(pred, requires_grad=True)
    target_t = torch.tensor(target)
    loss_t = BCEDiceLoss(weight_bce=0.5, weight_dice=0.5, smooth=1.0)(pred_t, target_t)
    loss_t.backward()
    with torch.no_grad():
        dice_t = DiceLoss(smooth=1.0)(pred_t, target_t)
    show("torch", dice_t.item(), loss_t.item(), pred_t.grad.tolist())
