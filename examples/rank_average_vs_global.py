"""How far the usual per-rank average of Dice losses is from the global Dice, for a
small-object batch split over 4 data-parallel ranks (the numbers in README.md, section
"Global Dice across data-parallel ranks"; Tests/python/test_distributed.py runs this script
and checks that README.md shows its output).

    PYTHONPATH=bindings/python python3 examples/rank_average_vs_global.py

The batch: 8 samples of 1 x 32 x 32, 2 per rank: rank 0 has large objects, rank 1 medium,
rank 2 tiny ones (5 pixels and 1 pixel), rank 3 none. The prediction is a fair model's:
each object found slightly shifted and a bit too small, a faint false-positive blob in the
empty samples, and 0.005 everywhere else. Everything is computed from closed-form shapes (no
random numbers), so the output is the same on every machine.

The loss is the Dice loss over the batch (segments "all", smooth 1): the ranks' own losses
(what each rank computes when it calls the loss on its slice, and what DDP then averages)
against the global loss from all-reduced sums, which segloss.distributed computes — here
with the 4 ranks simulated in one process, their all-reduce a plain sum.
"""
from __future__ import annotations

import numpy as np

import segloss
import segloss.distributed as sd

RANKS, PER_RANK, SIZE = 4, 2, 32
OPTIONS = segloss.Options(element_term="none", region_weight=1.0)  # the Dice loss, smooth 1
# (object radius in pixels, or 0 for no object) of the 8 samples, 2 per rank
RADII = [9.0, 7.0, 4.0, 3.0, 1.2, 0.5, 0.0, 0.0]
KIND = ["large objects", "medium objects", "tiny objects", "no objects"]


def batch() -> tuple[np.ndarray, np.ndarray]:
    """pred (probabilities) and target, float32, of shape (8, 1, 32, 32)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    pred = np.empty((len(RADII), 1, SIZE, SIZE))
    target = np.empty_like(pred)
    for n, radius in enumerate(RADII):
        cy, cx = 10.0 + 1.5 * n, 20.0 - n  # the object's centre
        target[n, 0] = (np.hypot(y - cy, x - cx) <= radius) if radius else 0.0
        if radius:  # found 1 pixel off, 15% too small, soft edge
            d = np.hypot(y - cy - 1.0, x - cx)
            p = 1.0 / (1.0 + np.exp((d - 0.85 * radius) / 0.7))
        else:  # a faint false-positive blob
            d = np.hypot(y - 16.0, x - 16.0)
            p = 0.4 * np.exp(-d * d / 8.0)
        pred[n, 0] = np.clip(p, 0.005, 0.995)
    return pred.astype(np.float32), target.astype(np.float32)


def main() -> None:
    pred, target = batch()
    slices = [slice(r * PER_RANK, (r + 1) * PER_RANK) for r in range(RANKS)]

    # Each rank on its own: its slice's Dice loss and gradient (DDP averages the gradients).
    local = [segloss.loss_and_grad(pred[s], target[s], options=OPTIONS) for s in slices]
    average_loss = sum(loss for loss, _ in local) / RANKS
    average_grad = np.concatenate([grad for _, grad in local]) / RANKS

    # The global loss: each rank's sums, all-reduced (here: added up), loss and gradient.
    sums = [sd.compute_sums(pred[s], target[s], options=OPTIONS) for s in slices]
    total = sum(sums)
    global_loss = sd.loss_from_sums(total, channels=1, options=OPTIONS)
    global_grad = np.concatenate([sd.grad_from_sums(pred[s], target[s], sums=total, options=OPTIONS)
                                  for s in slices])

    # ... which is the loss of the whole batch in one process.
    one_loss, one_grad = segloss.loss_and_grad(pred, target, options=OPTIONS)
    assert abs(global_loss - one_loss) <= 1e-6 * one_loss, (global_loss, one_loss)
    assert np.allclose(global_grad, one_grad, rtol=1e-5, atol=1e-6 * np.abs(one_grad).max())

    def share(grad: np.ndarray, r: int) -> float:  # rank r's part of |grad|^2
        return float(np.square(grad[slices[r]], dtype=np.float64).sum()
                     / np.square(grad, dtype=np.float64).sum())

    print(f"Dice loss (smooth 1) of a batch of {len(RADII)} samples of 1 x {SIZE} x {SIZE}, "
          f"{PER_RANK} per rank on {RANKS} ranks")
    print("                                                     share of |d loss / d pred|^2")
    print("rank  target px   sum of pred  rank's own Dice loss  rank average  global")
    for r, s in enumerate(slices):
        print(f"{r:4d}  {int(target[s].sum()):9d}  {pred[s].sum():12.1f}  {local[r][0]:20.4f}  "
              f"{share(average_grad, r):12.0%}  {share(global_grad, r):6.0%}  ({KIND[r]})")
    print(f"average of the ranks' losses (what per-rank losses report)  {average_loss:.4f}")
    print(f"global Dice loss (all-reduced sums = one process)           {global_loss:.4f}")
    print(f"the average is off by {average_loss - global_loss:+.4f} "
          f"({(average_loss - global_loss) / global_loss:+.0%} of the global loss)")
    cosine = float(np.vdot(average_grad.astype(np.float64), global_grad)
                   / (np.linalg.norm(average_grad) * np.linalg.norm(global_grad)))
    print(f"cosine between the two gradients w.r.t. pred: {cosine:.3f}")


if __name__ == "__main__":
    main()
