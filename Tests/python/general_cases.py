"""What the general-API tests sweep: named option sets that together use every option of
segloss_options and every value of its enums, and the inputs to run them on (probabilities
or logits, hard or soft targets with some empty segments, the two mask layouts).

Every case has C = 3 channels in mind (pos_weight and channel_weights have 3 values).
"""
import dataclasses

import numpy as np
import pytest

import segloss
from segloss import _library

CHANNELS = 3

needs_general_api = pytest.mark.skipif(
    _library.general_api_missing is not None,
    reason=f"libsegloss.so has no general API yet ({_library.general_api_missing})")

DICE = {"element_term": "none", "region_weight": 1.0}

# name -> keyword arguments of segloss.Options
CASES = {
    "seed_bce_dice": {},
    "logits_bce_dice": {"input": "logits"},
    "weights": {"element_weight": 2.0, "region_weight": 0.25},
    "bce": {"region_term": "none", "element_weight": 1.0},
    "bce_sum": {"region_term": "none", "reduction": "sum"},
    "logits_bce": {"input": "logits", "region_term": "none", "element_weight": 1.0},
    "bce_pos_weight": {"region_term": "none", "pos_weight": (0.5, 2.0, 1.0)},
    "logits_bce_pos_weight": {"input": "logits", "region_term": "none", "pos_weight": (3.0, 0.0, 1.5)},
    "bce_label_smoothing": {"label_smoothing": 0.1},
    "logits_bce_label_smoothing": {"input": "logits", "region_term": "none", "label_smoothing": 0.2,
                                   "pos_weight": (2.0, 1.0, 0.5)},
    "dice": DICE,
    "logits_dice": {**DICE, "input": "logits"},
    "dice_smooth0": {**DICE, "smooth_nr": 0.0, "smooth_dr": 0.0},
    "dice_smooth_nr_dr": {**DICE, "smooth_nr": 0.5, "smooth_dr": 2.0},
    "dice_squared": {**DICE, "squared": True},
    "dice_gamma2": {**DICE, "gamma": 2.0},
    "dice_gamma0.75": {**DICE, "gamma": 0.75, "input": "logits"},
    "dice_log_loss": {**DICE, "log_loss": True, "segments": "sample_channel"},
    "dice_log_loss_floor": {**DICE, "log_loss": True, "log_min": 0.5, "smooth_nr": 0.0,
                            "smooth_dr": 0.0, "segments": "sample_channel"},
    "dice_denominator_min": {**DICE, "denominator_min": 12.0, "segments": "sample_channel"},
    "jaccard": {"region_term": "jaccard"},
    "jaccard_squared": {**DICE, "region_term": "jaccard", "squared": True, "input": "logits"},
    "tversky": {**DICE, "region_term": "tversky", "alpha": 0.3, "beta": 0.7},
    "focal_tversky": {**DICE, "region_term": "tversky", "alpha": 0.7, "beta": 0.3, "gamma": 0.75,
                      "input": "logits", "segments": "sample_channel"},
    "segments_sample": {"segments": "sample"},
    "segments_channel": {"segments": "channel", "input": "logits"},
    "segments_sample_channel": {"segments": "sample_channel"},
    "channel_weights": {**DICE, "segments": "channel", "channel_weights": (1.0, 0.5, 2.0)},
    "sample_channel_weights": {"segments": "sample_channel", "channel_weights": (0.0, 1.5, 1.0),
                               "input": "logits"},
    "empty_keep": {**DICE, "segments": "sample_channel", "empty_policy": "keep"},
    "empty_zero": {**DICE, "segments": "sample_channel", "empty_policy": "zero"},
    "empty_exclude": {**DICE, "segments": "sample_channel", "empty_policy": "exclude"},
    "empty_exclude_channel": {"segments": "channel", "empty_policy": "exclude", "input": "logits"},
    "reduction_sum": {"segments": "sample_channel", "reduction": "sum", "input": "logits"},
    "everything": {"input": "logits", "pos_weight": (1.5, 0.5, 2.0), "label_smoothing": 0.05,
                   "region_term": "tversky", "alpha": 0.4, "beta": 0.6, "gamma": 1.5,
                   "segments": "sample_channel", "empty_policy": "exclude",
                   "channel_weights": (0.5, 1.0, 2.0), "reduction": "sum",
                   "element_weight": 0.7, "region_weight": 1.3, "smooth_nr": 0.1,
                   "smooth_dr": 0.2, "denominator_min": 1.0},
}


def options(name: str) -> segloss.Options:
    return segloss.Options(**CASES[name])


def assert_every_option_is_swept() -> None:
    """Every field of Options takes a non-default value in some case, and every enum value
    appears."""
    defaults = segloss.Options()
    swept = {name: set() for name in (f.name for f in dataclasses.fields(segloss.Options))}
    for kwargs in CASES.values():
        o = segloss.Options(**kwargs)
        for name in swept:
            swept[name].add(getattr(o, name))
    for name, values in swept.items():
        assert values - {getattr(defaults, name)}, f"no case changes {name}"
    from segloss._general import _ENUM_FIELDS
    for name, values in _ENUM_FIELDS.items():
        assert set(values) <= swept[name], (name, set(values) - swept[name])


def inputs(shape, seed, input_kind="probabilities", target_kind="hard", mask_kind="none",
           dtype=np.float64, empty=True):
    """(pred, target, mask) of `shape` (N, C, *spatial) or (S,).

    pred: logits ~ N(0, 1.5^2), or their sigmoid for probabilities, of `dtype`;
    target: "hard" 0/1 float (35 % ones), "soft" uniform, "uint8" or "bool" hard labels;
    with `empty` the target of sample 0 channel 1 and of the whole last channel is 0 (empty
    segments; shapes of at least 2 dims and C >= 3 only);
    mask: "none", "element" (pred's shape) or "pixel" ((N, 1, *spatial)), 80 % valid."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, shape)
    pred = logits if input_kind == "logits" else 1.0 / (1.0 + np.exp(-logits))
    pred = pred.astype(dtype)
    if target_kind == "soft":
        target = rng.random(shape)
    else:
        target = (rng.random(shape) < 0.35).astype(np.float64)
    if empty and len(shape) >= 2 and shape[1] >= 3:
        target[0, 1] = 0
        target[:, -1] = 0
    target = {"hard": target, "soft": target, "uint8": target.astype(np.uint8),
              "bool": target.astype(bool), "float32": target.astype(np.float32)}[target_kind]
    if mask_kind == "none":
        mask = None
    elif mask_kind == "element":
        mask = rng.random(shape) < 0.8
    elif mask_kind == "pixel":
        mask = rng.random((shape[0], 1) + tuple(shape[2:])) < 0.8
    else:
        raise ValueError(mask_kind)
    return pred, target, mask


def expand_mask(mask, shape):
    """The per-element mask of `shape` for a mask of either layout (None: all valid)."""
    if mask is None:
        return np.ones(shape, bool)
    return np.broadcast_to(np.asarray(mask, bool), shape).copy()
