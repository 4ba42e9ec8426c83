"""One rank of the torch.distributed tests of Tests/python/test_distributed.py, run as

    python distributed_worker.py RANK WORLD_SIZE STORE_FILE OUTPUT.npz SIZES

(SIZES: the ranks' sample counts, comma-separated). It joins a gloo group through a file
store, takes its slice of the batch that `batch()` makes (the same in every process and in
the test), and saves to OUTPUT.npz, per case of CASES, what SegLoss(process_group=...) gives
on its slice: the loss (with grad and under no_grad), the gradient of its input and the
segment scores; and, for a model under DistributedDataParallel, the parameters' gradients
of loss * W, of the plain loss, and (when no rank is empty) of the usual per-rank loss. The test compares them with
one process on the whole batch.
"""
from __future__ import annotations

import sys

import numpy as np

CHANNELS, HEIGHT, WIDTH, FEATURES = 3, 5, 6, 2

# name -> segloss.Options keyword arguments: every segments mode, on probabilities (float32)
# and on logits (float64, with a per-pixel mask), the empty policies in turn.
CASES = {}
for _i, _segments in enumerate(["all", "sample", "channel", "sample_channel"]):
    CASES[f"{_segments}-probabilities"] = dict(segments=_segments,
                                               empty_policy=["keep", "zero", "exclude"][_i % 3])
    CASES[f"{_segments}-logits-masked"] = dict(segments=_segments, input="logits",
                                               empty_policy=["exclude", "keep", "zero"][_i % 3])
DDP_OPTIONS = dict(input="logits", segments="channel", element_term="none", region_weight=1.0)


def batch(n: int):
    """(probabilities float32, logits float64, target float32, pixel mask bool, features
    float32 (n, FEATURES, H, W)) of a small-object batch of n samples: sample 1 and channel
    2 have no foreground."""
    rng = np.random.default_rng(20261129)
    shape = (n, CHANNELS, HEIGHT, WIDTH)
    target = (rng.random(shape) < 0.12).astype(np.float32)
    target[:, 2] = 0
    if n > 1:
        target[1] = 0
    logits = rng.normal(0.0, 2.0, shape) + 3.0 * (target - 0.5)
    probabilities = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    mask = rng.random((n, 1, HEIGHT, WIDTH)) < 0.8
    features = rng.normal(0.0, 1.0, (n, FEATURES, HEIGHT, WIDTH)).astype(np.float32)
    return probabilities, logits, target, mask, features


def case_inputs(name: str, probabilities, logits, target, mask):
    """(pred, target, mask) numpy arrays of a case."""
    if CASES[name].get("input") == "logits":
        return logits, target, mask
    return probabilities, target, None


def model(torch):
    """The DDP test's model: a 1 x 1 convolution from FEATURES to CHANNELS, fixed weights."""
    generator = torch.Generator().manual_seed(7)
    conv = torch.nn.Conv2d(FEATURES, CHANNELS, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator))
    return conv


def main(rank: int, world: int, store: str, output: str, sizes: list[int]) -> None:
    from datetime import timedelta

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from segloss.torch import SegLoss

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    offset = sum(sizes[:rank])
    mine = slice(offset, offset + sizes[rank])
    probabilities, logits, target, mask, features = batch(sum(sizes))
    results = {}
    for name, kwargs in CASES.items():
        p, t, m = case_inputs(name, probabilities[mine], logits[mine], target[mine], mask[mine])
        x = torch.tensor(p, requires_grad=True)
        criterion = SegLoss(process_group=dist.group.WORLD, **kwargs)
        loss = criterion(x, torch.from_numpy(t), None if m is None else torch.from_numpy(m))
        loss.backward()
        results[f"{name}/loss"] = loss.item()
        results[f"{name}/grad"] = x.grad.numpy()
        results[f"{name}/scores"] = criterion.last_segment_scores.numpy()
        with torch.no_grad():
            results[f"{name}/loss_no_grad"] = criterion(
                torch.from_numpy(p), torch.from_numpy(t),
                None if m is None else torch.from_numpy(m)).item()

    # A model under DDP, which averages the parameters' gradients over the W ranks.
    ddp = DistributedDataParallel(model(torch))
    x, t = torch.from_numpy(features[mine]), torch.from_numpy(target[mine])
    global_criterion = SegLoss(process_group=dist.group.WORLD, **DDP_OPTIONS)
    runs = [("times_world", global_criterion, world), ("plain", global_criterion, 1)]
    if min(sizes) > 0:  # a rank's own loss of no samples is undefined (EMPTY_INPUT)
        runs.append(("per_rank", SegLoss(**DDP_OPTIONS), 1))
    for key, criterion, scale in runs:
        ddp.zero_grad()
        loss = criterion(ddp(x), t)
        (loss * scale).backward()
        for parameter_name, parameter in ddp.module.named_parameters():
            results[f"ddp/{key}/{parameter_name}"] = parameter.grad.numpy().copy()
        results[f"ddp/{key}/loss"] = loss.item()

    np.savez(output, **results)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4],
         [int(size) for size in sys.argv[5].split(",")])
