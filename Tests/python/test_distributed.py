"""segloss.distributed (the split-phase C API through the binding) and
SegLoss(process_group=...): one loss over a batch split across ranks equals the loss of the
concatenated batch in one process, and each rank's gradient is its slice of that loss's
gradient.

(a) In one process: the ranks are threads (or plain loops) and the all-reduce is a fake
    that sums the ranks' arrays; every segments mode, empty policy, input kind and mask
    layout, uneven splits with an empty rank, every option set of general_cases; errors.
(b) torch.distributed: 2 and 3 processes in a gloo group (distributed_worker.py, a file
    store under tmp_path), uneven splits: the loss, the same on every rank, and each rank's
    gradient against one process; and what DistributedDataParallel does with the gradient.
(c) examples/rank_average_vs_global.py, whose output README.md shows.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest

import general_cases as cases
import segloss
import segloss.distributed as sd
from segloss import _library
from segloss import Status, SegLossError

pytestmark = [
    cases.needs_general_api,
    pytest.mark.skipif(_library.split_phase_missing is not None,
                       reason=f"libsegloss.so has no split-phase API ({_library.split_phase_missing})"),
]

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
SEGMENTS = ["all", "sample", "channel", "sample_channel"]
EMPTY_POLICIES = ["keep", "zero", "exclude"]
# The ranks' sample counts: uneven, with an empty rank, and one sample per rank.
SPLITS = [[3, 0, 4], [2, 2, 2, 1], [1] * 7]
LOSS_RTOL, GRAD_RTOL, GRAD_ATOL_OF_MAX = 1e-6, 1e-5, 1e-6


def batch(input_kind, mask_kind, n=7):
    """A (7, 3, 5, 6) batch: probabilities float32 or logits float64, targets with empty
    segments (sample 0 channel 1, channel 2, and all of sample 3), a mask of either layout."""
    dtype = np.float64 if input_kind == "logits" else np.float32
    pred, target, mask = cases.inputs((n, 3, 5, 6), seed=11, input_kind=input_kind,
                                      mask_kind=mask_kind, dtype=dtype)
    target[3] = 0
    if mask_kind == "element":
        mask = mask.astype(np.uint8)
    return pred, target, mask


def parts(sizes):
    """[(sample_offset, slice)] of the ranks."""
    offsets = np.cumsum([0] + sizes)
    return [(int(o), slice(int(o), int(o) + n)) for o, n in zip(offsets, sizes)]


def rank_mask(mask, s):
    return None if mask is None else mask[s]


def assert_same_as_one_process(loss, grad, reference_loss, reference_grad, grad_max=None):
    """Loss within 1e-6 relative; gradient within 1e-5 relative plus 1e-6 of the largest
    |gradient| (of the whole batch's gradient: grad_max when reference_grad is a slice)."""
    assert loss == pytest.approx(reference_loss, rel=LOSS_RTOL, abs=1e-12)
    if grad_max is None:
        grad_max = np.abs(reference_grad).max()
    atol = GRAD_ATOL_OF_MAX * grad_max
    np.testing.assert_allclose(grad, reference_grad, rtol=GRAD_RTOL, atol=atol)


class FakeCollective:
    """An in-process stand-in for a process group of `world` threads: all_reduce(rank)
    returns the callable that rank passes as all_reduce, which sums the ranks' arrays in
    rank order (so every rank gets the same bits) and writes the sum into each, in place."""

    def __init__(self, world):
        self.world = world
        self.barrier = threading.Barrier(world, timeout=30)
        self.buffers = [None] * world
        self.calls = [0] * world

    def all_reduce(self, rank):
        def reduce(array):
            assert isinstance(array, np.ndarray) and array.dtype == np.float64
            self.calls[rank] += 1
            self.buffers[rank] = array
            self.barrier.wait()
            total = np.zeros_like(array)
            for buffer in self.buffers:
                total += buffer
            self.barrier.wait()
            array[...] = total
        return reduce


def run_ranks(world, function):
    """function(rank, all_reduce) on `world` threads; their results in rank order."""
    collective = FakeCollective(world)
    results, errors = [None] * world, []

    def run(rank):
        try:
            results[rank] = function(rank, collective.all_reduce(rank))
        except BaseException as error:  # noqa: BLE001 - re-raised below
            errors.append(error)
            collective.barrier.abort()

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    assert collective.calls == [1] * world
    return results


# --- (a) the split phase through the binding ----------------------------------------------------


@pytest.mark.parametrize("mask_kind", ["none", "element", "pixel"])
@pytest.mark.parametrize("input_kind", ["probabilities", "logits"])
@pytest.mark.parametrize("empty_policy", EMPTY_POLICIES)
@pytest.mark.parametrize("segments", SEGMENTS)
def test_loss_and_grad_over_threads_equals_one_process(segments, empty_policy, input_kind, mask_kind):
    pred, target, mask = batch(input_kind, mask_kind)
    options = segloss.Options(segments=segments, empty_policy=empty_policy, input=input_kind)
    reference_loss, reference_grad, reference_scores, reference_sums = segloss.loss_and_grad(
        pred, target, mask, options=options, return_segments=True)
    for sizes in SPLITS:
        slices = parts(sizes)

        def rank_call(rank, all_reduce):
            offset, s = slices[rank]
            return sd.loss_and_grad(pred[s], target[s], rank_mask(mask, s), all_reduce=all_reduce,
                                    sample_offset=offset, total_batch=len(pred), options=options,
                                    return_segments=True)

        results = run_ranks(len(sizes), rank_call)
        losses = [result[0] for result in results]
        assert len(set(losses)) == 1, losses  # the same bits on every rank
        grad = np.concatenate([result[1] for result in results])
        assert grad.dtype == pred.dtype
        assert_same_as_one_process(losses[0], grad, reference_loss, reference_grad)
        for _, _, scores, sums in results:
            np.testing.assert_allclose(scores, reference_scores, rtol=1e-6, atol=1e-12)
            np.testing.assert_allclose(sums, reference_sums, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("segments", SEGMENTS)
def test_the_three_steps_with_summed_arrays(segments):
    pred, target, mask = batch("logits", "pixel")
    options = segloss.Options(segments=segments, input="logits", empty_policy="exclude")
    reference_loss, reference_grad, reference_scores, reference_sums = segloss.loss_and_grad(
        pred, target, mask, options=options, return_segments=True)
    sizes = [3, 0, 4]
    slices = parts(sizes)
    sums = [sd.compute_sums(pred[s], target[s], rank_mask(mask, s), sample_offset=o,
                            total_batch=7, options=options) for o, s in slices]
    for (o, s), rank_sums in zip(slices, sums):
        assert rank_sums.shape == reference_sums.shape and rank_sums.dtype == np.float64
        if segments in ("sample", "sample_channel"):  # other ranks' rows are 0
            rows = np.zeros(len(rank_sums), bool)
            per_sample = 3 if segments == "sample_channel" else 1
            rows[o * per_sample:s.stop * per_sample] = True
            assert not rank_sums[~rows].any()
            np.testing.assert_allclose(rank_sums[rows], reference_sums[rows], rtol=1e-6, atol=1e-9)
    total = sum(sums)
    assert sd.sums_length(pred[:3], target[:3], rank_mask(mask, slice(0, 3)), total_batch=7,
                          options=options) == total.size
    loss, scores = sd.loss_from_sums(total, channels=3, total_batch=7, options=options,
                                     return_scores=True)
    assert sd.loss_from_sums(total, channels=3, options=options) == loss  # total_batch inferred
    assert sd.loss_from_sums(total.ravel().tolist(), channels=3, options=options) == loss
    grads = [sd.grad_from_sums(pred[s], target[s], rank_mask(mask, s), sums=total,
                               sample_offset=o, total_batch=7, options=options) for o, s in slices]
    assert grads[1].shape == (0, 3, 5, 6)
    assert_same_as_one_process(loss, np.concatenate(grads), reference_loss, reference_grad)
    np.testing.assert_allclose(scores, reference_scores, rtol=1e-6, atol=1e-12)
    # grad_loss scales; out= takes the gradient (here in place of pred's copy)
    o, s = slices[2]
    half = sd.grad_from_sums(pred[s], target[s], rank_mask(mask, s), sums=total, sample_offset=o,
                             total_batch=7, options=options, grad_loss=0.5)
    np.testing.assert_allclose(half, 0.5 * grads[2], rtol=1e-12, atol=1e-300)
    work = pred[s].copy()
    assert sd.grad_from_sums(work, target[s], rank_mask(mask, s), sums=total, sample_offset=o,
                             total_batch=7, options=options, out=work) is work
    np.testing.assert_array_equal(work, grads[2])


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_every_option_set_of_the_general_cases(name):
    """Every option of segloss_options (general_cases.CASES) over 3 uneven ranks."""
    options = cases.options(name)
    pred, target, mask = batch(options.input, "element")
    reference_loss, reference_grad = segloss.loss_and_grad(pred, target, mask, options=options)
    slices = parts([2, 1, 4])
    total = sum(sd.compute_sums(pred[s], target[s], mask[s], sample_offset=o, total_batch=7,
                                options=options) for o, s in slices)
    loss = sd.loss_from_sums(total, channels=3, total_batch=7, options=options)
    grad = np.concatenate([sd.grad_from_sums(pred[s], target[s], mask[s], sums=total, sample_offset=o,
                                             total_batch=7, options=options) for o, s in slices])
    assert_same_as_one_process(loss, grad, reference_loss, reference_grad)


def test_all_and_channel_segments_need_no_slice():
    """With segments "all" and "channel" the sums do not depend on where samples sit: the
    defaults (sample_offset 0, total_batch None) give the global loss."""
    pred, target, _ = batch("probabilities", "none")
    for segments in ("all", "channel"):
        reference = segloss.loss(pred, target, segments=segments)
        total = sd.compute_sums(pred[:5], target[:5], segments=segments) + sd.compute_sums(
            pred[5:], target[5:], segments=segments)
        assert sd.loss_from_sums(total, channels=3, segments=segments) == pytest.approx(reference, rel=1e-6)


def test_an_all_reduce_that_returns_the_sum_is_used():
    """mpi4py's lowercase comm.allreduce returns a new array instead of summing in place."""
    pred, target, _ = batch("probabilities", "none")
    reference_loss, reference_grad = segloss.loss_and_grad(pred, target, segments="sample")
    rest = sd.compute_sums(pred[3:], target[3:], sample_offset=3, total_batch=7, segments="sample")
    loss, grad = sd.loss_and_grad(pred[:3], target[:3], all_reduce=lambda a: a + rest,
                                  total_batch=7, segments="sample")
    assert_same_as_one_process(loss, grad, reference_loss, reference_grad[:3],
                               grad_max=np.abs(reference_grad).max())


def test_sample_slice():
    assert sd.sample_slice([4, 3], 0) == (0, 7)
    assert sd.sample_slice([4, 3], 1) == (4, 7)
    assert sd.sample_slice([3, 0, 4], 2) == (3, 7)
    with pytest.raises(ValueError, match="rank 2"):
        sd.sample_slice([4, 3], 2)
    with pytest.raises(ValueError, match=">= 0"):
        sd.sample_slice([4, -1], 0)
    with pytest.raises(TypeError):
        sd.sample_slice([4.0, 3], 0)


# --- errors --------------------------------------------------------------------------------------


def test_a_bad_slice_is_the_librarys_status():
    pred, target, _ = batch("probabilities", "none")
    p, t = pred[:3], target[:3]
    calls = [
        lambda **k: sd.compute_sums(p, t, **k),
        lambda **k: sd.grad_from_sums(p, t, sums=np.zeros(7 * 6), **k),
        lambda **k: sd.loss_and_grad(p, t, all_reduce=lambda a: None, **k),
        lambda **k: sd.sums_length(p, t, **k),
    ]
    for call in calls:
        for segments in SEGMENTS:
            for offset, total in [(5, 7), (0, 2), (-1, 7), (8, 7)]:
                with pytest.raises(SegLossError) as raised:
                    call(sample_offset=offset, total_batch=total, segments=segments)
                assert raised.value.status == Status.ERROR_INVALID_ARGUMENT, (segments, offset, total)
                assert raised.value.function.startswith("segloss_")
    # a rank with no samples past the end of the batch
    with pytest.raises(SegLossError) as raised:
        sd.compute_sums(pred[:0], target[:0], sample_offset=8, total_batch=7, segments="sample")
    assert raised.value.status == Status.ERROR_INVALID_ARGUMENT
    with pytest.raises(SegLossError) as raised:  # a whole batch of no samples
        sd.loss_from_sums(np.zeros(6), channels=3, total_batch=0)
    assert raised.value.status == Status.ERROR_EMPTY_INPUT


def test_per_sample_segments_need_total_batch():
    pred, target, _ = batch("probabilities", "none")
    for segments in ("sample", "sample_channel"):
        with pytest.raises(ValueError, match="total_batch"):
            sd.compute_sums(pred[:3], target[:3], segments=segments)


def test_wrong_sums_length():
    pred, target, _ = batch("probabilities", "none")
    with pytest.raises(ValueError, match=r"sums has 12 values.* need 18 \(3 segments x 6\)"):
        sd.loss_from_sums(np.zeros(12), channels=3, segments="channel")
    with pytest.raises(ValueError, match="sums has 36 values.* need 42"):  # another total_batch
        sd.loss_from_sums(np.zeros(36), channels=1, total_batch=7, segments="sample")
    with pytest.raises(ValueError, match="sums has 6 values.* need 126"):
        sd.grad_from_sums(pred[:3], target[:3], sums=np.zeros(6), total_batch=7,
                          segments="sample_channel")
    with pytest.raises(ValueError, match="sums has 6 values.* need 126"):
        sd.loss_and_grad(pred[:3], target[:3], all_reduce=lambda a: np.zeros(6), total_batch=7,
                         segments="sample_channel")


@pytest.mark.parametrize("bad", [-1.0, np.nan, -np.inf])
def test_a_broken_sum_is_the_librarys_status(bad):
    pred, target, _ = batch("probabilities", "none")
    sums = sd.compute_sums(pred, target, segments="channel")
    sums[1, 2] = bad
    for call in (lambda: sd.loss_from_sums(sums, channels=3, segments="channel"),
                 lambda: sd.grad_from_sums(pred, target, sums=sums, segments="channel")):
        with pytest.raises(SegLossError) as raised:
            call()
        assert raised.value.status == Status.ERROR_INVALID_ARGUMENT


def test_an_infinite_sum_is_an_infinite_loss():
    # Huge finite logits make element terms whose float sums overflow: a sum a slice can have.
    pred, target, _ = batch("probabilities", "none")
    sums = sd.compute_sums(pred, target, segments="channel")
    sums[1, 4] = np.inf
    assert sd.loss_from_sums(sums, channels=3, segments="channel") == np.inf


def test_other_errors():
    pred, target, _ = batch("probabilities", "none")
    with pytest.raises(TypeError, match="all_reduce must be a callable"):
        sd.loss_and_grad(pred, target, all_reduce=None)
    with pytest.raises(TypeError):
        sd.compute_sums(pred, target, sample_offset=1.5)
    with pytest.raises(SegLossError) as raised:  # the library checks the rank's data
        sd.compute_sums(pred * 2, target)
    assert raised.value.status == Status.ERROR_PRED_OUT_OF_RANGE
    with pytest.raises(SegLossError) as raised:  # every rank empty: no loss
        sd.compute_sums(pred[:0], target[:0], total_batch=0, segments="sample")
    assert raised.value.status == Status.ERROR_EMPTY_INPUT


def test_without_the_split_phase(monkeypatch):
    monkeypatch.setattr(_library, "split_phase_missing", "the library has no split-phase API (reason)")
    pred, target, _ = batch("probabilities", "none")
    with pytest.raises(segloss.GeneralAPIUnavailable, match=r"no split-phase API \(reason\)"):
        sd.compute_sums(pred, target)
    assert segloss.loss(pred, target) > 0  # the general API still works


def test_declare_split_phase_reports_a_missing_function():
    import types

    def function(name):
        f = lambda *arguments: 0  # noqa: E731
        f.__name__ = name
        return f

    names = ["segloss_dice_forward", "segloss_sums_length", "segloss_compute_sums",
             "segloss_loss_from_sums", "segloss_backward_from_sums"]
    library = types.SimpleNamespace(**{name: function(name) for name in names})
    library.segloss_dice_forward.errcheck = None
    assert _library.declare_split_phase(library) is None
    del library.segloss_loss_from_sums
    reason = _library.declare_split_phase(library)
    assert "no split-phase API" in reason and "segloss_loss_from_sums" in reason and "make lib" in reason


# --- (b) torch.distributed, gloo -------------------------------------------------------------------


def _gloo_unavailable():
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        return "torch is not installed"
    if not dist.is_available():
        return "torch.distributed is not available in this torch build"
    if not dist.is_gloo_available():
        return "torch.distributed has no gloo backend"
    del torch
    return None


needs_gloo = pytest.mark.skipif(_gloo_unavailable() is not None, reason=str(_gloo_unavailable()))


def run_workers(tmp_path, sizes):
    """distributed_worker.py on len(sizes) processes; their results, in rank order."""
    world = len(sizes)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "bindings" / "python"), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("SEGLOSS_NUM_THREADS", "1")
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    store = tmp_path / "store"
    outputs = [tmp_path / f"rank{rank}.npz" for rank in range(world)]
    logs = [open(tmp_path / f"rank{rank}.log", "w+") for rank in range(world)]
    processes = [subprocess.Popen([sys.executable, str(HERE / "distributed_worker.py"), str(rank), str(world),
                                   str(store), str(outputs[rank]), ",".join(map(str, sizes))],
                                  env=env, stdout=logs[rank], stderr=subprocess.STDOUT)
                 for rank in range(world)]
    try:
        for process in processes:
            process.wait(timeout=180)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    failures = []
    for rank, (process, log) in enumerate(zip(processes, logs)):
        log.seek(0)
        if process.returncode != 0:
            failures.append(f"rank {rank} exited with {process.returncode}:\n{log.read()[-3000:]}")
        log.close()
    assert not failures, "\n".join(failures)
    return [dict(np.load(output)) for output in outputs]


@needs_gloo
@pytest.mark.parametrize("sizes", [[4, 3], [2, 0, 5]], ids=["world2", "world3-empty-rank"])
def test_torch_process_group(tmp_path, sizes):
    import torch

    import distributed_worker as worker
    from segloss.torch import SegLoss

    results = run_workers(tmp_path, sizes)
    world, n = len(sizes), sum(sizes)
    probabilities, logits, target, mask, features = worker.batch(n)
    slices = [s for _, s in parts(sizes)]
    for name, kwargs in worker.CASES.items():
        p, t, m = worker.case_inputs(name, probabilities, logits, target, mask)
        x = torch.tensor(p, requires_grad=True)
        criterion = SegLoss(**kwargs)
        loss = criterion(x, torch.from_numpy(t), None if m is None else torch.from_numpy(m))
        loss.backward()
        losses = [result[f"{name}/loss"] for result in results]
        assert max(losses) - min(losses) <= 1e-12 * abs(losses[0]), (name, losses)
        for rank, result in enumerate(results):
            assert result[f"{name}/loss_no_grad"] == pytest.approx(loss.item(), rel=LOSS_RTOL), name
            assert_same_as_one_process(float(result[f"{name}/loss"]), result[f"{name}/grad"],
                                       loss.item(), x.grad.numpy()[slices[rank]],
                                       grad_max=np.abs(x.grad.numpy()).max())
            np.testing.assert_allclose(result[f"{name}/scores"], criterion.last_segment_scores.numpy(),
                                       rtol=1e-6, atol=1e-12)

    # DDP averages the gradients over the W ranks: the global loss times W gives the gradient
    # of the global loss, the plain global loss that gradient / W.
    conv = worker.model(torch)
    loss = SegLoss(**worker.DDP_OPTIONS)(conv(torch.from_numpy(features)), torch.from_numpy(target))
    loss.backward()
    for rank, result in enumerate(results):
        assert result["ddp/plain/loss"] == pytest.approx(loss.item(), rel=LOSS_RTOL)
        for parameter_name, parameter in conv.named_parameters():
            reference = parameter.grad.numpy()
            atol = 1e-5 * np.abs(reference).max()
            np.testing.assert_allclose(result[f"ddp/times_world/{parameter_name}"], reference,
                                       rtol=1e-4, atol=atol)
            np.testing.assert_allclose(result[f"ddp/plain/{parameter_name}"], reference / world,
                                       rtol=1e-4, atol=atol / world)
    # The usual per-rank losses give another gradient (the Dice of each slice, averaged).
    if "ddp/per_rank/loss" not in results[0]:
        return  # an empty rank has no loss of its own
    differs = [np.abs(results[0][f"ddp/per_rank/{name}"] - param.grad.numpy() / world).max()
               / np.abs(param.grad.numpy() / world).max() for name, param in conv.named_parameters()]
    assert max(differs) > 0.01, differs


@needs_gloo
def test_process_group_needs_torch_distributed_initialized():
    import torch
    import torch.distributed as dist

    from segloss.torch import SegLoss

    if dist.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    criterion = SegLoss(process_group=object())
    assert "process_group=" in repr(criterion)
    with pytest.raises(RuntimeError, match="init_process_group"):
        criterion(torch.rand(2, 3, 4), torch.zeros(2, 3, 4))


# --- (c) the README's numbers ------------------------------------------------------------------------


def test_the_readme_shows_the_rank_average_vs_global_script_output():
    script = ROOT / "examples" / "rank_average_vs_global.py"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "bindings" / "python")] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    output = result.stdout.strip()
    assert "global Dice loss" in output
    readme = (ROOT / "README.md").read_text()
    assert output in readme, f"README.md does not show the output of {script.name}:\n{output}"
