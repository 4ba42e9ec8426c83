r"""The general API against the losses it replaces: MONAI's DiceLoss, DiceCELoss and
MaskedDiceLoss, and segmentation_models_pytorch's (smp) DiceLoss, JaccardLoss,
TverskyLoss and SoftBCEWithLogitsLoss, forward and (through autograd) backward, in
float64, on random data.

Each third-party loss is mapped to segloss options by one function below (the MAPPING
table); the tests check that the mapping is exact: the float64 reference
(general_reference.py) with the mapped options gives the third party's loss and gradient.
When the Python binding has the general API (segloss.loss_and_grad), the same cases run
through the library as well ("binding-float64", "binding-float32"); they skip otherwise.
Everything skips without torch, and the MONAI or smp cases without that package. smp's
losses subpackage is loaded on its own (it imports only torch and numpy), so smp's model
dependencies (timm, torchvision, PIL, huggingface_hub) are not needed.

The mapping (semantics as of MONAI 1.6.1 and smp 0.6.0; inputs (N, C, S) or (N, C, H, W)):

| third-party loss | segloss options |
|---|---|
| MONAI `DiceLoss(sigmoid, batch, squared_pred, jaccard, smooth_nr, smooth_dr, weight, reduction)` | `input` = LOGITS if sigmoid else PROBABILITIES; `element_term` NONE; `region_term` = JACCARD if jaccard else DICE, `region_weight` 1; `squared` = squared_pred; `smooth_nr`, `smooth_dr` = MONAI's, halved with jaccard (MONAI's Jaccard is 1 - (2I + nr) / (2(P + T - I) + dr)); `segments` = CHANNEL if batch else SAMPLE_CHANNEL; `empty_policy` KEEP; `reduction` = MONAI's (mean or sum; not "none"); `channel_weights` = weight (a scalar repeated C times), none when C = 1 (MONAI ignores weight for one channel). Exact for soft targets too with soft_label=False (the default); with soft_label=True only for hard targets. Not mapped: softmax, other_act, to_onehot_y, include_background=False (slice the channels first) |
| MONAI `DiceCELoss(sigmoid=True, ...)` with one channel | the DiceLoss mapping with `input` LOGITS, plus `element_term` BCE, `element_weight` = lambda_ce, `region_weight` = lambda_dice, `pos_weight` = weight; label_smoothing is not mapped: MONAI passes it to CrossEntropyLoss only, so with one channel it has no effect (`label_smoothing` 0). Not mapped: sigmoid=False (MONAI's BCE still takes the input as logits while its Dice takes it as probabilities), C > 1 (softmax cross-entropy) |
| MONAI `MaskedDiceLoss(sigmoid=False, ...)(input, target, mask)`, mask (N, 1, S) | the DiceLoss mapping (probabilities) with the mask as a PER_PIXEL mask. Not mapped: sigmoid=True (MONAI masks the logits, so a masked element becomes sigmoid(0) = 0.5, not left out) |
| smp `DiceLoss(mode, from_logits, smooth, eps, log_loss, class_weights, ignore_index)`, mode "binary" (C = 1) or "multilabel" | `input` = LOGITS if from_logits else PROBABILITIES; `element_term` NONE; `region_term` DICE, `region_weight` 1; `smooth_nr` = `smooth_dr` = 2 smooth; `denominator_min` = 2 eps; `segments` CHANNEL (smp sums over batch and space per channel; "binary" is one channel, so one segment); `empty_policy` ZERO; `reduction` MEAN; `log_loss` = log_loss with `log_min` = eps; `channel_weights` = C w / sum(w) for class_weights w (smp divides by sum(w), segloss by C); ignore_index: a PER_ELEMENT mask, valid where target != ignore_index. Exact for hard targets only (smp's intersection is (P + T - sum\|p - t\|) / 2 = sum min(p, t)). Not mapped: "multiclass" mode, classes= |
| smp `JaccardLoss(...)` | as smp DiceLoss but `region_term` JACCARD, `smooth_nr` = `smooth_dr` = smooth, `denominator_min` = eps |
| smp `TverskyLoss(alpha, beta, gamma, ...)` | as smp JaccardLoss but `region_term` TVERSKY with alpha, beta; `gamma` = gamma only with one segment ("binary" mode or C = 1): smp raises the mean over channels to gamma, segloss each segment's loss, so gamma != 1 with C > 1 has no mapping; with one segment 1 - score >= 0, so segloss's clamp at 0 never acts. log_loss with gamma != 1 has no mapping (segloss forbids it) |
| smp `SoftBCEWithLogitsLoss(smooth_factor, pos_weight, reduction, ignore_index)` | `input` LOGITS; `element_term` BCE, `element_weight` 1; `region_term` NONE; `label_smoothing` = 2 smooth_factor (smp's targets are y (1 - f) + (1 - y) f); `pos_weight` = pos_weight (give torch the shape (C, 1) for (N, C, S) inputs, or (C, 1, 1) for (N, C, H, W): torch broadcasts pos_weight against the last dimension); `reduction` = smp's; ignore_index (elements whose target equals it): a PER_ELEMENT mask with reduction "sum" only (with "mean" smp divides by every element, ignored ones too, segloss by the valid ones) |
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import sys
import warnings
import zlib
from typing import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import general_reference as ref  # noqa: E402

try:
    import segloss
except ImportError:  # no library built: the binding cases skip
    segloss = None

P, L = ref.INPUT_PROBABILITIES, ref.INPUT_LOGITS


# --- the mapping --------------------------------------------------------------------------------


def monai_dice_options(*, channels: int, sigmoid=False, batch=False, squared_pred=False, jaccard=False,
                       smooth_nr=1e-5, smooth_dr=1e-5, weight=None, reduction="mean") -> dict:
    """segloss options equal to monai.losses.DiceLoss(**kwargs) (include_background=True,
    to_onehot_y=False, softmax=False, other_act=None, soft_label=False)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction {reduction!r} has no segloss equivalent")
    channel_weights = None
    if weight is not None and channels != 1:   # MONAI applies weight only for C > 1
        values = np.atleast_1d(np.asarray(weight, dtype=np.float64))
        channel_weights = list(np.broadcast_to(values, (channels,)))
    halve = 0.5 if jaccard else 1.0
    return ref.options(
        input=L if sigmoid else P, element_term="NONE", element_weight=0.0,
        region_term="JACCARD" if jaccard else "DICE", region_weight=1.0, squared=int(squared_pred),
        smooth_nr=halve * smooth_nr, smooth_dr=halve * smooth_dr,
        segments="CHANNEL" if batch else "SAMPLE_CHANNEL", empty_policy="KEEP",
        reduction=reduction.upper(), channel_weights=channel_weights)


def monai_dice_ce_options(*, channels: int, sigmoid=True, lambda_dice=1.0, lambda_ce=1.0, weight=None,
                          label_smoothing=0.0, **dice_kwargs) -> dict:
    """segloss options equal to monai.losses.DiceCELoss(sigmoid=True, ...) on one channel:
    DiceLoss + BCEWithLogitsLoss(pos_weight=weight). label_smoothing only reaches
    CrossEntropyLoss, which one channel does not use."""
    if channels != 1 or not sigmoid:
        raise ValueError("DiceCELoss maps only with sigmoid=True and one channel")
    del label_smoothing  # no effect with one channel
    dice = monai_dice_options(channels=1, sigmoid=True, weight=None, **dice_kwargs)
    pos_weight = None if weight is None else [float(v) for v in np.atleast_1d(weight)]
    return ref.options(dice, element_term="BCE", element_weight=lambda_ce, region_weight=lambda_dice,
                       pos_weight=pos_weight)


def monai_masked_dice_options(*, channels: int, sigmoid=False, **dice_kwargs) -> dict:
    """segloss options equal to monai.losses.MaskedDiceLoss(...)(input, target, mask) with a
    (N, 1, S) mask passed as a PER_PIXEL mask. Probabilities only: MONAI masks the input
    before its sigmoid."""
    if sigmoid:
        raise ValueError("MaskedDiceLoss(sigmoid=True) masks logits to 0 (p = 0.5): no mapping")
    return monai_dice_options(channels=channels, sigmoid=False, **dice_kwargs)


def _smp_region(*, channels, mode, from_logits=True, eps=1e-7, log_loss=False, class_weights=None,
                ignore_index=None, **region_options):
    """The options smp's Dice, Jaccard and Tversky losses share; region_options give the
    score."""
    if mode not in ("binary", "multilabel"):
        raise ValueError(f"smp mode {mode!r} has no segloss equivalent")
    if mode == "binary" and channels != 1:
        raise ValueError("smp's binary mode takes one channel")
    del ignore_index  # a PER_ELEMENT mask: target != ignore_index
    if log_loss and not 0 < eps <= 1:
        raise ValueError("log_loss with eps outside (0, 1]: segloss's log_min must be in (0, 1]")
    channel_weights = None
    if class_weights is not None:
        w = np.asarray(class_weights, dtype=np.float64)
        channel_weights = list(channels * w / w.sum())
    return ref.options(
        input=L if from_logits else P, element_term="NONE", element_weight=0.0, region_weight=1.0,
        segments="CHANNEL", empty_policy="ZERO", reduction="MEAN", log_loss=int(log_loss),
        log_min=eps if log_loss else ref.DEFAULTS["log_min"], channel_weights=channel_weights,
        **region_options)


def smp_dice_options(*, channels: int, smooth=0.0, eps=1e-7, **kwargs) -> dict:
    """segloss options equal to smp.losses.DiceLoss(mode, ...) (hard targets)."""
    return _smp_region(channels=channels, eps=eps, region_term="DICE",
                       smooth_nr=2 * smooth, smooth_dr=2 * smooth, denominator_min=2 * eps, **kwargs)


def smp_jaccard_options(*, channels: int, smooth=0.0, eps=1e-7, **kwargs) -> dict:
    """segloss options equal to smp.losses.JaccardLoss(mode, ...) (hard targets)."""
    return _smp_region(channels=channels, eps=eps, region_term="JACCARD",
                       smooth_nr=smooth, smooth_dr=smooth, denominator_min=eps, **kwargs)


def smp_tversky_options(*, channels: int, smooth=0.0, eps=1e-7, alpha=0.5, beta=0.5, gamma=1.0,
                        log_loss=False, **kwargs) -> dict:
    """segloss options equal to smp.losses.TverskyLoss(mode, ...) (hard targets). smp
    applies gamma to the mean over channels: only one segment maps."""
    if gamma != 1 and channels != 1:
        raise ValueError("smp's TverskyLoss raises the channel mean to gamma: no mapping for C > 1")
    if gamma != 1 and log_loss:
        raise ValueError("log_loss with gamma != 1: segloss has no such loss")
    return _smp_region(channels=channels, eps=eps, log_loss=log_loss,
                       region_term="TVERSKY", alpha=alpha, beta=beta, gamma=gamma, smooth_nr=smooth,
                       smooth_dr=smooth, denominator_min=eps, **kwargs)


def smp_soft_bce_options(*, channels: int, smooth_factor=None, pos_weight=None, reduction="mean",
                         ignores=False) -> dict:
    """segloss options equal to smp.losses.SoftBCEWithLogitsLoss(...); `ignores` says whether
    some targets equal ignore_index (they become a PER_ELEMENT mask)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction {reduction!r} has no segloss equivalent")
    if ignores and reduction == "mean":
        raise ValueError("smp's mean counts ignored elements; segloss's mean does not")
    return ref.options(
        input=L, element_term="BCE", element_weight=1.0, region_term="NONE", region_weight=0.0,
        label_smoothing=0.0 if smooth_factor is None else 2 * smooth_factor,
        pos_weight=None if pos_weight is None else [float(v) for v in pos_weight],
        reduction=reduction.upper())


MAPPING: dict[str, Callable[..., dict]] = {
    "monai.DiceLoss": monai_dice_options,
    "monai.DiceCELoss": monai_dice_ce_options,
    "monai.MaskedDiceLoss": monai_masked_dice_options,
    "smp.DiceLoss": smp_dice_options,
    "smp.JaccardLoss": smp_jaccard_options,
    "smp.TverskyLoss": smp_tversky_options,
    "smp.SoftBCEWithLogitsLoss": smp_soft_bce_options,
}


# --- the third-party packages -------------------------------------------------------------------


def monai_losses():
    return pytest.importorskip("monai.losses")


_SMP = {}


def smp_losses():
    """segmentation_models_pytorch.losses, loaded as a package of its own (it imports only
    torch and numpy; smp's __init__ would import its models' dependencies)."""
    if "losses" not in _SMP:
        try:
            spec = importlib.util.find_spec("segmentation_models_pytorch")
        except ImportError:
            spec = None
        if spec is None or spec.origin is None:
            pytest.skip("segmentation_models_pytorch is not installed")
        directory = os.path.join(os.path.dirname(spec.origin), "losses")
        name = "_segloss_test_smp_losses"
        sub = importlib.util.spec_from_file_location(name, os.path.join(directory, "__init__.py"),
                                                     submodule_search_locations=[directory])
        module = importlib.util.module_from_spec(sub)
        sys.modules[name] = module
        sub.loader.exec_module(module)
        _SMP["losses"] = module
    return _SMP["losses"]


# --- cases --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """One third-party loss on one kind of data.

    make(losses, kwargs) builds the module from the package's losses module; mapping names
    the MAPPING entry, and kwargs are the third party's arguments, given to both. Data: shape (N, C, S), logits
    or probabilities, hard targets at `rate` or soft ones, `empty` (n, c) slices set to
    no target (None = all), and a mask: "pixel" for MaskedDiceLoss, "ignore" for smp's
    ignore_index (PER_ELEMENT)."""
    id: str
    package: str
    mapping: str
    make: Callable
    kwargs: dict
    shape: tuple = (2, 3, 16)
    logits: bool = True
    soft: bool = False
    rate: float = 0.35
    empty: tuple = ()
    mask: str | None = None

    def options(self):
        mapped = dict(self.kwargs)
        if self.mask == "ignore" and self.mapping == "smp.SoftBCEWithLogitsLoss":
            mapped["ignores"] = True
        return MAPPING[self.mapping](channels=self.shape[1], **mapped)


def _monai(name):
    def make(losses, kwargs):
        kwargs = dict(kwargs)
        if isinstance(kwargs.get("weight"), list):  # DiceCELoss takes a tensor only
            kwargs["weight"] = torch.tensor(kwargs["weight"], dtype=torch.float64)
        return getattr(losses, name)(**kwargs)
    return make


def _smp(name, *args):
    def make(losses, kwargs):
        kwargs = dict(kwargs)
        if "pos_weight" in kwargs and kwargs["pos_weight"] is not None:
            kwargs["pos_weight"] = torch.tensor(kwargs["pos_weight"], dtype=torch.float64).reshape(-1, 1)
        return getattr(losses, name)(*args, **kwargs)
    return make


CASES = [
    # MONAI DiceLoss
    Case("monai_dice_default_probs_soft", "monai", "monai.DiceLoss", _monai("DiceLoss"), {},
         logits=False, soft=True),
    Case("monai_dice_sigmoid_batch_empty", "monai", "monai.DiceLoss", _monai("DiceLoss"),
         {"sigmoid": True, "batch": True}, empty=((None, 1),)),
    Case("monai_dice_sigmoid_empty_keep", "monai", "monai.DiceLoss", _monai("DiceLoss"),
         {"sigmoid": True, "smooth_nr": 0.0, "smooth_dr": 1e-5}, empty=((0, 2), (1, 0))),
    Case("monai_dice_squared", "monai", "monai.DiceLoss", _monai("DiceLoss"),
         {"sigmoid": True, "squared_pred": True, "smooth_nr": 0.5, "smooth_dr": 0.25}, soft=True),
    Case("monai_jaccard", "monai", "monai.DiceLoss", _monai("DiceLoss"),
         {"sigmoid": True, "jaccard": True, "smooth_nr": 0.5, "smooth_dr": 0.8}, soft=True),
    Case("monai_jaccard_squared_batch_probs", "monai", "monai.DiceLoss", _monai("DiceLoss"),
         {"jaccard": True, "squared_pred": True, "batch": True, "smooth_nr": 1.0, "smooth_dr": 1.0},
         logits=False),
    Case("monai_dice_weight_sum", "monai", "monai.DiceLoss", _monai("DiceLoss"),
         {"sigmoid": True, "weight": [0.5, 2.0, 1.25], "reduction": "sum"}),
    Case("monai_dice_scalar_weight_batch", "monai", "monai.DiceLoss", _monai("DiceLoss"),
         {"sigmoid": True, "weight": 2.5, "batch": True}),
    Case("monai_dice_one_channel_weight_ignored", "monai", "monai.DiceLoss", _monai("DiceLoss"),
         {"sigmoid": True, "weight": [3.0]}, shape=(3, 1, 20)),
    # MONAI DiceCELoss, sigmoid, one channel
    Case("monai_dicece_default", "monai", "monai.DiceCELoss", _monai("DiceCELoss"),
         {"sigmoid": True}, shape=(3, 1, 20)),
    Case("monai_dicece_weighted_jaccard_batch_sum", "monai", "monai.DiceCELoss", _monai("DiceCELoss"),
         {"sigmoid": True, "lambda_dice": 0.3, "lambda_ce": 1.7, "jaccard": True, "batch": True,
          "reduction": "sum", "label_smoothing": 0.1, "smooth_nr": 0.2, "smooth_dr": 0.6},
         shape=(3, 1, 20), soft=True),
    Case("monai_dicece_pos_weight", "monai", "monai.DiceCELoss", _monai("DiceCELoss"),
         {"sigmoid": True, "weight": [2.5], "squared_pred": True}, shape=(2, 1, 24)),
    # MONAI MaskedDiceLoss: a per-pixel mask
    Case("monai_masked_dice", "monai", "monai.MaskedDiceLoss", _monai("MaskedDiceLoss"), {},
         logits=False, mask="pixel", soft=True),
    Case("monai_masked_dice_batch_squared", "monai", "monai.MaskedDiceLoss", _monai("MaskedDiceLoss"),
         {"batch": True, "squared_pred": True, "smooth_nr": 0.1, "smooth_dr": 0.1}, logits=False,
         mask="pixel", empty=((None, 0),)),
    # smp DiceLoss
    Case("smp_dice_binary", "smp", "smp.DiceLoss", _smp("DiceLoss", "binary"), {"mode": "binary"},
         shape=(3, 1, 20)),
    Case("smp_dice_multilabel_smooth_empty", "smp", "smp.DiceLoss", _smp("DiceLoss", "multilabel"),
         {"mode": "multilabel", "smooth": 1.0}, empty=((None, 1),)),
    Case("smp_dice_multilabel_probs_log", "smp", "smp.DiceLoss", _smp("DiceLoss", "multilabel"),
         {"mode": "multilabel", "from_logits": False, "log_loss": True}, logits=False),
    Case("smp_dice_class_weights", "smp", "smp.DiceLoss", _smp("DiceLoss", "multilabel"),
         {"mode": "multilabel", "class_weights": [0.5, 2.0, 1.25], "smooth": 0.5}),
    Case("smp_dice_eps_clamps", "smp", "smp.DiceLoss", _smp("DiceLoss", "multilabel"),
         {"mode": "multilabel", "from_logits": False, "eps": 5.5}, logits=False, shape=(2, 3, 6),
         rate=0.25),
    Case("smp_dice_ignore_index", "smp", "smp.DiceLoss", _smp("DiceLoss", "multilabel"),
         {"mode": "multilabel", "ignore_index": -1, "smooth": 0.25}, mask="ignore"),
    # smp JaccardLoss
    Case("smp_jaccard_multilabel", "smp", "smp.JaccardLoss", _smp("JaccardLoss", "multilabel"),
         {"mode": "multilabel", "smooth": 0.5}, empty=((None, 2),)),
    Case("smp_jaccard_binary_log", "smp", "smp.JaccardLoss", _smp("JaccardLoss", "binary"),
         {"mode": "binary", "log_loss": True, "from_logits": False}, logits=False, shape=(2, 1, 30)),
    Case("smp_jaccard_ignore_class_weights", "smp", "smp.JaccardLoss", _smp("JaccardLoss", "multilabel"),
         {"mode": "multilabel", "ignore_index": 255, "class_weights": [1.0, 0.25, 3.0]}, mask="ignore"),
    # smp TverskyLoss
    Case("smp_tversky_multilabel", "smp", "smp.TverskyLoss", _smp("TverskyLoss", "multilabel"),
         {"mode": "multilabel", "alpha": 0.3, "beta": 0.7, "smooth": 1.0}, empty=((None, 0),)),
    Case("smp_tversky_binary_gamma2", "smp", "smp.TverskyLoss", _smp("TverskyLoss", "binary"),
         {"mode": "binary", "alpha": 0.7, "beta": 0.3, "gamma": 2.0}, shape=(3, 1, 20)),
    Case("smp_tversky_binary_gamma0.75_probs", "smp", "smp.TverskyLoss", _smp("TverskyLoss", "binary"),
         {"mode": "binary", "alpha": 0.4, "beta": 0.9, "gamma": 0.75, "from_logits": False,
          "smooth": 0.5}, shape=(2, 1, 25), logits=False),
    Case("smp_tversky_one_channel_multilabel_gamma", "smp", "smp.TverskyLoss", _smp("TverskyLoss", "multilabel"),
         {"mode": "multilabel", "gamma": 1.5, "log_loss": False}, shape=(2, 1, 25)),
    # smp SoftBCEWithLogitsLoss
    Case("smp_soft_bce_default", "smp", "smp.SoftBCEWithLogitsLoss", _smp("SoftBCEWithLogitsLoss"), {},
         soft=True),
    Case("smp_soft_bce_smoothing_pos_weight_sum", "smp", "smp.SoftBCEWithLogitsLoss",
         _smp("SoftBCEWithLogitsLoss"),
         {"smooth_factor": 0.1, "pos_weight": [0.5, 2.0, 3.0], "reduction": "sum"}),
    Case("smp_soft_bce_smoothing_pos_weight_mean", "smp", "smp.SoftBCEWithLogitsLoss",
         _smp("SoftBCEWithLogitsLoss"), {"smooth_factor": 0.05, "pos_weight": [4.0, 1.0, 0.0]}),
    Case("smp_soft_bce_ignore_sum", "smp", "smp.SoftBCEWithLogitsLoss", _smp("SoftBCEWithLogitsLoss"),
         {"reduction": "sum", "smooth_factor": 0.2}, mask="ignore"),
]


def constructor_kwargs(case: Case) -> dict:
    """The module's constructor arguments: smp's mode is positional in make()."""
    return {k: v for k, v in case.kwargs.items() if k != "mode"}


IGNORE_VALUES = {"smp_dice_ignore_index": -1.0, "smp_jaccard_ignore_class_weights": 255.0,
                 "smp_soft_bce_ignore_sum": -100.0}


def make_data(case: Case, float32: bool):
    """pred, target, mask (None, (N, 1, S) or (N, C, S) uint8) as float64 numpy arrays, and
    the target as the third party sees it (ignore_index where the mask is 0)."""
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    n, c, s = case.shape
    pred = rng.normal(0.0, 2.0, case.shape) if case.logits else rng.uniform(0.0, 1.0, case.shape)
    target = rng.uniform(0, 1, case.shape) if case.soft else (rng.uniform(0, 1, case.shape) < case.rate) * 1.0
    for ni, ci in case.empty:
        target[slice(None) if ni is None else ni, slice(None) if ci is None else ci] = 0.0
    mask = None
    if case.mask == "pixel":
        mask = (rng.uniform(0, 1, (n, 1, s)) < 0.7).astype(np.uint8)
    elif case.mask == "ignore":
        mask = (rng.uniform(0, 1, case.shape) < 0.7).astype(np.uint8)
    if float32:
        pred = pred.astype(np.float32).astype(np.float64)
        target = target.astype(np.float32).astype(np.float64)
    seen_target = target
    if case.mask == "ignore":
        seen_target = np.where(mask != 0, target, IGNORE_VALUES[case.id])
    return pred, target, mask, seen_target


def third_party(case: Case, pred, seen_target, mask):
    """The third party's loss and its gradient w.r.t. pred, in float64."""
    losses = monai_losses() if case.package == "monai" else smp_losses()
    module = case.make(losses, constructor_kwargs(case))
    x = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(seen_target, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's single-channel notes
        if case.mask == "pixel":
            value = module(x, t, torch.tensor(mask, dtype=torch.float64))
        else:
            value = module(x, t)
    value.backward()
    return float(value.detach()), x.grad.numpy()


# --- the implementations under test -------------------------------------------------------------


def binding_kwargs(opts: dict) -> dict:
    """Reference options (C integers) as keyword arguments of segloss.loss: enum fields by
    their names in lower case, flags as bools."""
    kwargs = {}
    for key, value in ref.options(opts).items():
        if key in ref.ENUMS:
            kwargs[key] = {code: name.lower() for name, code in ref.ENUMS[key].items()}[value]
        elif key in ("squared", "log_loss"):
            kwargs[key] = bool(value)
        else:
            kwargs[key] = value
    return kwargs


def binding_available():
    if segloss is None or not hasattr(segloss, "loss_and_grad"):
        return False
    library = getattr(segloss, "_library", None)
    return getattr(library, "general_api_missing", None) is None


IMPLEMENTATIONS = [
    "reference",
    # Runs once the binding exposes the general API (segloss.loss_and_grad) with a library
    # that has it; skips before.
    pytest.param("binding-float64", marks=pytest.mark.skipif(not binding_available(),
                                                              reason="segloss has no general API yet")),
    pytest.param("binding-float32", marks=pytest.mark.skipif(not binding_available(),
                                                              reason="segloss has no general API yet")),
]


def evaluate(implementation: str, pred, target, mask, opts):
    """(loss, gradient) of segloss's general API with these options."""
    if implementation == "reference":
        return ref.forward(pred, target, mask, opts)[0], ref.gradient(pred, target, mask, opts)
    dtype = np.float64 if implementation == "binding-float64" else np.float32
    p = np.ascontiguousarray(pred, dtype=dtype)
    t = np.ascontiguousarray(target, dtype=dtype)
    m = None if mask is None else np.ascontiguousarray(mask, dtype=np.uint8)
    value, grad = segloss.loss_and_grad(p, t, m, **binding_kwargs(opts))
    assert grad.dtype == dtype and grad.shape == p.shape
    return value, grad.astype(np.float64)


# (loss rtol, gradient rtol, gradient atol relative to its largest magnitude). float64
# agrees to a few ulps; float32 is held to the header's 1e-6 for the loss, and the
# gradient to float32 rounding of terms that may cancel (seen: 2.5e-8 and 2.4e-7).
TOLERANCES = {"reference": (1e-13, 1e-11, 1e-13), "binding-float64": (1e-12, 1e-10, 1e-12),
              "binding-float32": (1e-6, 1e-5, 2e-6)}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_agrees_with_third_party(case, implementation):
    float32 = implementation == "binding-float32"
    pred, target, mask, seen_target = make_data(case, float32)
    expected_loss, expected_grad = third_party(case, pred, seen_target, mask)
    opts = case.options()
    if mask is not None and case.mask == "ignore":
        assert mask.shape == pred.shape
    got_loss, got_grad = evaluate(implementation, pred, target, mask, opts)
    loss_rtol, grad_rtol, grad_atol = TOLERANCES[implementation]
    np.testing.assert_allclose(got_loss, expected_loss, rtol=loss_rtol, err_msg=f"{case.id} loss")
    np.testing.assert_allclose(got_grad, expected_grad, rtol=grad_rtol,
                               atol=grad_atol * float(np.max(np.abs(expected_grad))),
                               err_msg=f"{case.id} gradient")


def test_cases_exercise_their_options():
    """The cases reach what they are there for: empty segments where a policy is tested,
    clamped denominators where eps is large, masked elements, non-trivial gradients."""
    seen = set()
    for case in CASES:
        pred, target, mask, _ = make_data(case, False)
        opts = case.options()
        loss, scores, sums = ref.forward(pred, target, mask, opts)
        assert math.isfinite(loss) and np.any(ref.gradient(pred, target, mask, opts) != 0), case.id
        if case.empty:
            assert np.any(sums[:, 0] + sums[:, 2] == 0), case.id
            seen.add(("empty", opts["empty_policy"]))
        if opts["denominator_min"] > 1:
            a, b = ref._score_coefficients(opts)
            den = sums[:, :4] @ np.array(b) + opts["smooth_dr"]
            assert np.any(den < opts["denominator_min"]) and np.any(den > opts["denominator_min"]), case.id
            seen.add("clamp")
        if mask is not None:
            assert 0 < np.count_nonzero(mask) < mask.size, case.id
            seen.add(case.mask)
    assert seen >= {("empty", ref.EMPTY_KEEP), ("empty", ref.EMPTY_ZERO), "clamp", "pixel", "ignore"}


def test_unmapped_settings_are_refused():
    """Where the third party's loss has no segloss equivalent the mapping says so."""
    with pytest.raises(ValueError):
        smp_tversky_options(channels=3, mode="multilabel", gamma=2.0)
    with pytest.raises(ValueError):
        smp_dice_options(channels=3, mode="multiclass")
    with pytest.raises(ValueError):
        monai_dice_ce_options(channels=3)
    with pytest.raises(ValueError):
        monai_masked_dice_options(channels=3, sigmoid=True)
    with pytest.raises(ValueError):
        smp_soft_bce_options(channels=3, ignores=True, reduction="mean")
    with pytest.raises(ValueError):
        monai_dice_options(channels=3, reduction="none")
    with pytest.raises(ValueError):
        smp_dice_options(channels=3, mode="multilabel", log_loss=True, eps=2.0)


def test_mapping_is_needed():
    """The mapping's non-obvious entries matter: MONAI's jaccard without halving the
    smooths, smp's Dice smooth without doubling, smp's class_weights without renormalizing,
    and smp's TverskyLoss gamma per channel would each give another loss."""
    for case_id, wrong_changes in [("monai_jaccard", {"smooth_nr": 0.5, "smooth_dr": 0.8}),
                                   ("smp_dice_multilabel_smooth_empty", {"smooth_nr": 1.0, "smooth_dr": 1.0}),
                                   ("smp_dice_class_weights", {"channel_weights": [0.5, 2.0, 1.25]})]:
        case = next(c for c in CASES if c.id == case_id)
        pred, target, mask, seen = make_data(case, False)
        expected, _ = third_party(case, pred, seen, mask)
        assert abs(ref.forward(pred, target, mask, case.options())[0] - expected) < 1e-12, case_id
        wrong = ref.options(case.options(), **wrong_changes)
        assert abs(ref.forward(pred, target, mask, wrong)[0] - expected) > 1e-6, case_id
    # Tversky on three channels: equal with gamma 1; with gamma 2 smp's (channel mean)^2 is
    # not segloss's mean of the squares.
    smp = smp_losses()
    rng = np.random.default_rng(99)
    x = rng.normal(0, 2, (2, 3, 16))
    t = (rng.uniform(0, 1, (2, 3, 16)) < 0.4) * 1.0
    options = smp_tversky_options(channels=3, mode="multilabel", alpha=0.3, beta=0.7)
    for gamma in (1.0, 2.0):
        module = smp.TverskyLoss("multilabel", gamma=gamma, alpha=0.3, beta=0.7)
        smp_value = float(module(torch.tensor(x), torch.tensor(t)))
        segloss_value = ref.forward(x, t, None, ref.options(options, gamma=gamma))[0]
        assert (abs(smp_value - segloss_value) < 1e-12) == (gamma == 1.0), gamma
