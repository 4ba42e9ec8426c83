#!/usr/bin/env python3
"""Shared test vectors for the general API of segloss (include/segloss.h, "The general
API"): inputs, options and float64 reference outputs.

Run ``python3 Tests/vectors/generate_general.py`` to rewrite
``Tests/vectors/general_vectors.json`` next to this file. The output is deterministic
(inputs from xorshift32, reference sums from math.fsum, transcendental functions from the
math module), so rerunning it gives the same bytes; Tests/python/test_general_reference.py
checks that. The expected values come from Tests/python/general_reference.py, the float64
reference of the general API (numpy and the standard library only; the library under test
is never imported). The flat API's vectors (vectors.json) have their own generator,
generate.py, which this script leaves alone.

Format
------
::

    {"format": 1, "generator": "Tests/vectors/generate_general.py", "note": "...",
     "enums": {field: {NAME: int}}, "status": {NAME: int}, "defaults": {options},
     "cases": [{
        "name": str, "description": str,
        "shape": {"batch": N, "channels": C, "spatial": S, "pred_dtype": int,
                  "target_dtype": int, "mask_layout": int},
        "dtypes": {"pred": "float32" | "float64", "target": "float32" | "float64" | "uint8",
                   "mask_layout": null | "PER_ELEMENT" | "PER_PIXEL"},
        "options": {every segloss_options field but struct_size},
        "pred": [N*C*S numbers], "target": [N*C*S numbers],
        "mask": null | [N*C*S bytes] (PER_ELEMENT) | [N*S bytes] (PER_PIXEL),
        "grad_loss": 1.0,
        "loss": float, "segment_scores": [float | "NaN"],
        "segment_sums": [[TP, FP, FN, SQ, E, valid count] per segment],
        "grad": [N*C*S floats]}],
     "invalid": [{"name": str, "options": {...}, "shape": {...}, "mask": bool,
                  "status": NAME, "status_value": int, "reason": str}],
     "invalid_inputs": [{"name": str, "options": {...}, "shape": {...}, "pred": [...],
                         "target": [...], "mask": null | [...], "status": NAME,
                         "status_value": int}]}

Arrays are flattened in C order: index (n * C + c) * S + s; a PER_PIXEL mask n * S + s.
Options hold C values: enum fields the C enum integers, squared and log_loss 0 or 1,
doubles as numbers, pos_weight and channel_weights null (NULL) or C numbers. A number that
JSON cannot hold is a string: "NaN", "Infinity", "-Infinity" (a score that is 0/0, and
the non-finite options of invalid cases). Every input value is exactly representable in
its dtype: float32 values are written so they parse back to that float32, uint8 targets
and mask bytes are integers.

The expected values are float64 results of the exact input values (grad_loss = 1, the
gradient w.r.t. the logits with LOGITS). segment_scores holds the Dice index with
REGION_NONE (as the header says). The E column of segment_sums is the sum of the element
terms e_i over the segment's valid elements, 0 with ELEMENT_NONE or element_weight 0
(the header: not computed then). Scores and losses where the reference takes a
choice the header leaves open (see general_reference.py) are avoided: no case puts a
denominator exactly at denominator_min or a score exactly at log_min.

Inputs come from xorshift32 (the flat vectors' generator), state = the case's seed::

    next():  x ^= (x << 13) mod 2^32;  x ^= x >> 17;  x ^= (x << 5) mod 2^32;  return x
    u()   =  (next() >> 8) * 2^-24                    # an exact float32 in [0, 1)

A float32 probability is u(), a float64 one u() + u() * 2^-24 (48 bits); a logit is
(probability - 0.5) * 16. Hard targets are 1 where u() < rate; soft targets are
probabilities; mask bytes are 0 where u() >= the valid rate. The draws are only how the
values were made: consumers read the written values.
"""

import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import numpy as np  # noqa: E402

import general_reference as ref  # noqa: E402

GENERATOR = "Tests/vectors/generate_general.py"
OUTPUT = os.path.join(HERE, "general_vectors.json")


# --- inputs ---------------------------------------------------------------------------------


class XorShift32:
    def __init__(self, seed):
        assert 0 < seed < 2**32
        self.x = seed

    def next(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def u(self):
        return (self.next() >> 8) * 2.0**-24

    def probability(self, dtype):
        return self.u() if dtype == "float32" else self.u() + self.u() * 2.0**-24


def make_inputs(seed, n, c, s, logits, pred_dtype, target_dtype, target_kind, rate,
                mask, mask_rate, mask_bytes, empty):
    """pred, target (float64 arrays of exactly representable values) and mask (uint8 or
    None)."""
    rng = XorShift32(seed)
    pred = np.empty((n, c, s))
    target = np.empty((n, c, s))
    for index in np.ndindex(n, c, s):
        v = rng.probability(pred_dtype)
        pred[index] = (v - 0.5) * 16.0 if logits else v
        if target_kind == "hard" or target_dtype == "uint8":
            target[index] = 1.0 if rng.u() < rate else 0.0
        else:
            target[index] = rng.probability(target_dtype)
    for n_index, c_index in empty:  # segments (or whole samples / channels) with no target
        target[n_index if n_index is not None else slice(None),
               c_index if c_index is not None else slice(None)] = 0.0
    m = None
    if mask is not None:
        m = np.empty((n, c if mask == "element" else 1, s), dtype=np.uint8)
        for index in np.ndindex(m.shape):
            valid = rng.u() < mask_rate
            m[index] = mask_bytes[rng.next() % len(mask_bytes)] if valid else 0
    return pred, target, m


def number(value):
    """A float for JSON; the strings NaN / Infinity / -Infinity where JSON has none."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def json_options(opts):
    o = ref.options(opts)
    out = {}
    for key, value in o.items():
        if key in ("pos_weight", "channel_weights"):
            out[key] = None if value is None else [number(v) for v in value]
        elif key in ref.DOUBLE_FIELDS:
            out[key] = number(value)
        else:
            out[key] = value
    return out


def shape_dict(n, c, s, pred_dtype, target_dtype, mask_layout=0):
    return {"batch": n, "channels": c, "spatial": s, "pred_dtype": ref.DTYPES[pred_dtype],
            "target_dtype": ref.DTYPES[target_dtype], "mask_layout": mask_layout}


def make_case(name, description, shape=(2, 3, 8), seed=1, pred_dtype="float32",
              target_dtype="float32", target="hard", rate=0.4, mask=None, mask_rate=0.75,
              mask_bytes=(1,), empty=(), pred=None, target_values=None, mask_values=None,
              **changes):
    n, c, s = shape
    opts = ref.options(**changes)
    logits = opts["input"] == ref.INPUT_LOGITS
    p, t, m = make_inputs(seed, n, c, s, logits, pred_dtype, target_dtype, target, rate,
                          mask, mask_rate, mask_bytes, empty)
    if pred is not None:
        p = np.array(pred, dtype=np.float64).reshape(n, c, s)
    if target_values is not None:
        t = np.array(target_values, dtype=np.float64).reshape(n, c, s)
    if mask_values is not None:
        m = np.array(mask_values, dtype=np.uint8).reshape(m.shape)
    for values, dtype in ((p, pred_dtype), (t, target_dtype)):  # exactly representable
        assert np.array_equal(values.astype(dtype).astype(np.float64), values), name
    target_array = t.astype(np.uint8) if target_dtype == "uint8" else t
    loss, scores, sums = ref.forward(p, target_array, m, opts)
    grad = ref.gradient(p, target_array, m, opts)
    layout = None if m is None else ("PER_ELEMENT" if mask == "element" else "PER_PIXEL")
    case = {
        "name": name,
        "description": description,
        "shape": shape_dict(n, c, s, pred_dtype, target_dtype,
                            ref.MASK_LAYOUTS[layout] if layout else 0),
        "dtypes": {"pred": pred_dtype, "target": target_dtype, "mask_layout": layout},
        "options": json_options(opts),
        "pred": [float(v) for v in p.ravel()],
        "target": ([int(v) for v in t.ravel()] if target_dtype == "uint8"
                   else [float(v) for v in t.ravel()]),
        "mask": None if m is None else [int(v) for v in m.ravel()],
        "grad_loss": 1.0,
        "loss": number(loss),
        "segment_scores": [number(v) for v in scores],
        "segment_sums": [[float(v) for v in row] for row in sums],
        "grad": [float(v) for v in grad.ravel()],
    }
    check_away_from_kinks(name, opts, sums, scores)
    # Only segment scores may be non-finite (0/0, in cases whose region weight is 0).
    for key in ("loss", "segment_sums", "grad"):
        assert np.all(np.isfinite(np.asarray(case[key], dtype=np.float64))), (name, key)
    return case


def check_away_from_kinks(name, opts, sums, scores):
    """No segment sits where the reference takes a choice the header leaves open: a
    denominator at denominator_min, a score at log_min, or (focal) 1 - score at 0."""
    if opts["region_term"] == ref.REGION_NONE:
        return
    a, b = ref._score_coefficients(opts)
    for row, score in zip(sums, scores):
        if math.isnan(score):   # 0/0: NaN whichever way the tie goes
            continue
        den = sum(coefficient * value for coefficient, value in zip(b, row[:4])) + opts["smooth_dr"]
        close = lambda u, v: abs(u - v) <= 1e-9 * max(abs(u), abs(v))  # noqa: E731
        assert not close(den, opts["denominator_min"]), (name, "denominator at denominator_min")
        if opts["log_loss"]:
            assert not close(score, opts["log_min"]), (name, "score at log_min")
        if opts["gamma"] != 1:
            assert not close(score, 1.0), (name, "score at 1 with gamma != 1")


# --- the cases ------------------------------------------------------------------------------

# (n, c) pairs of empty targets: every (n, c) segment of sample 0 channel 1, and of sample 1
# channel 2, is all zeros.
SOME_EMPTY = [(0, 1), (1, 2)]
def f32(x):
    """The float32 nearest x, as a Python float (exact)."""
    return float(np.float32(x))


EXTREME_P = [f32(v) for v in (0.0, 1.0, 1e-30, 2.0**-149, 1.0 - 2.0**-24, 2.0**-24, 0.5, 1e-7,
                              0.25, 0.75)]
EXTREME_X = [-100.0, 100.0, -30.0, 30.0, -12.5, 12.5, 0.0, -0.5, 2.0, -3.0]


def cases():
    out = []
    add = out.append
    P, L = ref.INPUT_PROBABILITIES, ref.INPUT_LOGITS
    NONE_E, BCE = ref.ELEMENT_NONE, ref.ELEMENT_BCE
    NONE_R, DICE, JACC, TV = (ref.REGION_NONE, ref.REGION_DICE, ref.REGION_JACCARD,
                              ref.REGION_TVERSKY)
    ALL, SAMPLE, CHANNEL, SC = (ref.SEGMENT_ALL, ref.SEGMENT_SAMPLE, ref.SEGMENT_CHANNEL,
                                ref.SEGMENT_SAMPLE_CHANNEL)
    KEEP, ZERO, EXCL = ref.EMPTY_KEEP, ref.EMPTY_ZERO, ref.EMPTY_EXCLUDE
    SUM = ref.REDUCTION_SUM

    # The seed: the flat segloss_bce_dice_* functions.
    add(make_case("seed_defaults", "the defaults: 0.5 BCE + 0.5 Dice (smooth 1) over the whole tensor",
                  seed=11))
    add(make_case("seed_soft_single_channel", "defaults, soft targets, 1 x 1 x 17", shape=(1, 1, 17),
                  seed=12, target="soft"))
    add(make_case("single_element", "1 x 1 x 1, logits, BCE + Dice per sample", shape=(1, 1, 1),
                  seed=13, input=L, segments=SAMPLE))
    add(make_case("logits_defaults", "the defaults on logits", seed=14, input=L))

    # Each region term alone, each input kind, each segments mode.
    add(make_case("dice_probs_sample_channel", "Dice alone per sample x channel", seed=21,
                  element_term=NONE_E, element_weight=0.0, region_weight=1.0, segments=SC))
    add(make_case("dice_logits_sample", "Dice alone per sample, logits, smooth_nr 0 smooth_dr 1e-5",
                  seed=22, input=L, element_term=NONE_E, region_weight=1.0, segments=SAMPLE,
                  smooth_nr=0.0, smooth_dr=1e-5))
    add(make_case("bce_probs_mean", "BCE alone (probabilities), mean", seed=23, target="soft",
                  region_term=NONE_R, element_weight=1.0))
    add(make_case("bce_logits_sum", "BCE alone (logits), sum; its scores are Dice indices with "
                  "smooth_nr 0.5, smooth_dr 2", seed=24, input=L, region_term=NONE_R,
                  element_weight=1.0, reduction=SUM, segments=SC, smooth_nr=0.5, smooth_dr=2.0))
    add(make_case("jaccard_probs_channel", "Jaccard per channel (batch Jaccard)", seed=25,
                  region_term=JACC, segments=CHANNEL, smooth_nr=0.5, smooth_dr=0.5))
    add(make_case("jaccard_logits_sample", "Jaccard per sample, logits, soft targets", seed=26,
                  input=L, target="soft", region_term=JACC, segments=SAMPLE))
    add(make_case("tversky_logits_sample_channel", "Tversky 0.3 / 0.7 per sample x channel, logits",
                  seed=27, input=L, region_term=TV, alpha=0.3, beta=0.7, segments=SC,
                  element_weight=0.25, region_weight=1.5))
    add(make_case("tversky_probs_channel_smooth0", "Tversky 0.7 / 0.3 per channel, smooth 0",
                  seed=28, region_term=TV, alpha=0.7, beta=0.3, segments=CHANNEL,
                  smooth_nr=0.0, smooth_dr=0.0, element_term=NONE_E, region_weight=1.0))
    add(make_case("tversky_alpha0_beta2", "Tversky alpha 0, beta 2, all", seed=29,
                  region_term=TV, alpha=0.0, beta=2.0, target="soft"))

    # Squared denominators.
    add(make_case("dice_squared_probs", "Dice, squared, all, soft targets", seed=31, target="soft",
                  squared=1))
    add(make_case("dice_squared_logits_sample_channel", "Dice, squared, per sample x channel, logits",
                  seed=32, input=L, squared=1, segments=SC, element_term=NONE_E, region_weight=1.0,
                  smooth_nr=1e-5, smooth_dr=1e-5))
    add(make_case("jaccard_squared_probs_channel", "Jaccard, squared, per channel", seed=33,
                  region_term=JACC, squared=1, segments=CHANNEL))
    add(make_case("jaccard_squared_logits", "Jaccard, squared, all, logits, soft targets", seed=34,
                  input=L, target="soft", region_term=JACC, squared=1, smooth_nr=0.0,
                  smooth_dr=0.25))

    # The log form and focal exponents.
    add(make_case("log_dice_logits", "-log(Dice) per sample x channel, logits", seed=41, input=L,
                  log_loss=1, segments=SC, element_term=NONE_E, region_weight=1.0, smooth_nr=0.0,
                  smooth_dr=0.0))
    add(make_case("log_floor_active", "-log(max(score, 0.12)): some segments below the floor "
                  "(their gradient is 0)", seed=42, log_loss=1, log_min=0.12, segments=SC,
                  smooth_nr=0.0, smooth_dr=0.0, rate=0.15, region_term=JACC))
    add(make_case("log_jaccard_sum", "-log(Jaccard), sum over samples", seed=43, log_loss=1,
                  region_term=JACC, segments=SAMPLE, reduction=SUM, input=L))
    add(make_case("focal_dice_gamma2", "Dice with gamma 2 per sample x channel", seed=44,
                  gamma=2.0, segments=SC))
    add(make_case("focal_tversky_gamma0.75", "Tversky 0.3 / 0.7 with gamma 0.75, logits", seed=45,
                  input=L, region_term=TV, alpha=0.3, beta=0.7, gamma=0.75, segments=SAMPLE))
    add(make_case("focal_score_above_one", "gamma 3 where smooth_nr > smooth_dr makes some "
                  "scores above 1: their loss and gradient are 0", seed=46, gamma=3.0,
                  segments=SC, smooth_nr=2.0, smooth_dr=0.2, element_term=NONE_E,
                  region_weight=1.0, shape=(2, 3, 5), rate=0.6))
    add(make_case("score_above_one_gamma1", "gamma 1 where scores exceed 1: negative losses",
                  seed=46, segments=SC, smooth_nr=2.0, smooth_dr=0.2, shape=(2, 3, 5), rate=0.6))

    # The denominator clamp.
    add(make_case("denominator_min_active", "denominator_min 4.5 clamps the small segments' "
                  "denominators (no gradient through them)", seed=51, segments=SC,
                  denominator_min=4.5, smooth_nr=0.0, smooth_dr=0.0, shape=(2, 3, 6), rate=0.2))
    add(make_case("denominator_min_tversky", "Tversky with denominator_min 0.9, smooth 0", seed=52,
                  input=L, region_term=TV, alpha=0.6, beta=0.4, denominator_min=0.9,
                  smooth_nr=0.0, smooth_dr=0.0, segments=SC, shape=(2, 2, 3)))

    # Empty targets, each policy.
    add(make_case("empty_keep", "KEEP with empty segments: their formula (smooth 1)", seed=61,
                  segments=SC, empty=SOME_EMPTY, empty_policy=KEEP))
    add(make_case("empty_zero", "ZERO with empty segments: loss 0, counted in the mean", seed=62,
                  segments=SC, empty=SOME_EMPTY, empty_policy=ZERO, input=L))
    add(make_case("empty_exclude", "EXCLUDE with empty segments: left out of the mean", seed=63,
                  segments=SC, empty=SOME_EMPTY, empty_policy=EXCL, region_term=JACC))
    add(make_case("empty_exclude_all", "EXCLUDE with every segment empty: R = 0", seed=64,
                  segments=CHANNEL, empty=[(None, None)], empty_policy=EXCL, input=L))
    add(make_case("empty_zero_all", "ZERO with every segment empty: R = 0", seed=65,
                  segments=SAMPLE, empty=[(None, None)], empty_policy=ZERO))
    add(make_case("empty_keep_all_smooth", "KEEP with every target empty, smooth 1: Dice loss "
                  "of the predictions", seed=66, segments=SC, empty=[(None, None)],
                  element_term=NONE_E, region_weight=1.0))
    add(make_case("empty_exclude_sum_channel", "EXCLUDE, sum, per channel, channel 1 empty",
                  seed=67, segments=CHANNEL, empty=[(None, 1)], empty_policy=EXCL, reduction=SUM))
    add(make_case("region_weight0_nan_score", "region weight 0 where a score is 0/0 (empty "
                  "target, zero predictions, smooth 0): the NaN does not reach the loss", seed=68,
                  shape=(1, 2, 4), segments=SC, smooth_nr=0.0, smooth_dr=0.0, region_weight=0.0,
                  pred=[0.0, 0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0],
                  target_values=[0, 0, 0, 0, 0, 1, 1, 0]))
    add(make_case("empty_zero_nan_score", "ZERO where an empty segment's score is 0/0: its "
                  "loss is 0, not NaN", seed=69, shape=(1, 2, 4), segments=SC, smooth_nr=0.0,
                  smooth_dr=0.0, empty_policy=ZERO,
                  pred=[0.0, 0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0],
                  target_values=[0, 0, 0, 0, 0, 1, 1, 0]))

    # Reductions.
    add(make_case("sum_sample_channel", "BCE + Dice, sum reduction, per sample x channel",
                  seed=71, reduction=SUM, segments=SC, target="soft"))
    add(make_case("weights_1.3_0.7", "element weight 1.3, region weight 0.7, per channel",
                  seed=72, element_weight=1.3, region_weight=0.7, segments=CHANNEL, input=L))

    # Masks.
    add(make_case("mask_per_element", "a per-element mask with bytes 1, 2 and 255", seed=81,
                  mask="element", mask_bytes=(1, 2, 255), segments=SC))
    add(make_case("mask_per_pixel_logits", "a per-pixel mask, logits, per sample", seed=82,
                  mask="pixel", input=L, segments=SAMPLE, mask_bytes=(1, 7)))
    add(make_case("mask_empties_segment", "a per-element mask invalidating whole segments "
                  "(sample 0 channel 1, sample 1 channel 0; EXCLUDE leaves them out)",
                  shape=(2, 2, 5), seed=83, mask="element", mask_values=[
                      1, 1, 0, 1, 1, 0, 0, 0, 0, 0,
                      0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
                  segments=SC, empty_policy=EXCL))
    add(make_case("mask_all_invalid", "every element masked: E = 0, every segment empty; "
                  "KEEP scores n/d = 1", seed=84, mask="pixel", mask_rate=0.0, segments=SC,
                  shape=(2, 2, 3)))
    add(make_case("mask_out_of_range_values", "masked elements hold values out of range (not "
                  "checked)", seed=85, shape=(1, 2, 4), mask="element", segments=SC,
                  pred=[0.5, 7.0, -3.0, 0.25, 0.125, 0.5, 0.75, 2.0],
                  target_values=[1.0, -1.0, 5.0, 0.0, 1.0, 0.0, 1.0, 9.0],
                  mask_values=[1, 0, 0, 1, 1, 1, 1, 0]))

    # pos_weight, label smoothing, channel weights.
    add(make_case("pos_weight_probs", "pos_weight 0.5 / 2 / 4, probabilities", seed=91,
                  pos_weight=[0.5, 2.0, 4.0]))
    add(make_case("pos_weight_logits_smoothing", "pos_weight 3 / 0 / 1.5 and label smoothing "
                  "0.2, logits", seed=92, input=L, pos_weight=[3.0, 0.0, 1.5],
                  label_smoothing=0.2, segments=SC))
    add(make_case("label_smoothing_probs", "label smoothing 0.1, probabilities, soft targets",
                  seed=93, label_smoothing=0.1, target="soft", segments=SAMPLE))
    add(make_case("label_smoothing_one", "label smoothing 1: every BCE target is 0.5 (Dice "
                  "still sees the targets)", seed=94, label_smoothing=1.0, input=L))
    add(make_case("channel_weights_channel", "channel weights 0.2 / 1 / 3, per channel", seed=95,
                  channel_weights=[0.2, 1.0, 3.0], segments=CHANNEL, region_term=JACC))
    add(make_case("channel_weights_exclude", "channel weights 0 / 2 / 1 per sample x channel, "
                  "EXCLUDE with empty segments", seed=96, channel_weights=[0.0, 2.0, 1.0],
                  segments=SC, empty=SOME_EMPTY, empty_policy=EXCL, input=L))

    # Target and pred dtypes.
    add(make_case("target_uint8_probs", "uint8 targets, probabilities", seed=101,
                  target_dtype="uint8", segments=SC))
    add(make_case("target_uint8_logits_mask", "uint8 targets, logits, per-pixel mask", seed=102,
                  target_dtype="uint8", input=L, mask="pixel", segments=CHANNEL))
    add(make_case("float64_probs_float64_target", "float64 pred and soft float64 targets",
                  seed=103, pred_dtype="float64", target_dtype="float64", target="soft",
                  segments=SC))
    add(make_case("float64_logits_float32_target", "float64 logits, float32 targets, Tversky",
                  seed=104, pred_dtype="float64", input=L, region_term=TV, alpha=0.4, beta=0.6))
    add(make_case("float64_probs_uint8_target", "float64 pred, uint8 targets, per-element mask",
                  seed=105, pred_dtype="float64", target_dtype="uint8", mask="element",
                  segments=SAMPLE))

    # Weights 0.
    add(make_case("element_weight0", "BCE term with weight 0: left out (its E sums are 0: "
                  "not computed)", seed=111, element_weight=0.0, region_weight=1.0, segments=SC))
    add(make_case("region_weight0_tversky", "Tversky term with weight 0", seed=112,
                  region_term=TV, region_weight=0.0, element_weight=1.0, input=L))
    add(make_case("both_weights0", "both weights 0: loss and gradient 0", seed=113,
                  element_weight=0.0, region_weight=0.0))

    # Extremes.
    add(make_case("extremes_probs", "probabilities 0, 1, subnormal, 1 - 2^-24: the -100 clamp "
                  "and the 1e-12 floor", shape=(2, 1, 10), seed=121, segments=SAMPLE,
                  pred=EXTREME_P * 2, target_values=[0, 1] * 5 + [1, 0] * 5))
    add(make_case("extremes_logits", "logits +-100, +-30, +-12.5", shape=(2, 1, 10), seed=122,
                  input=L, segments=SAMPLE, pred=EXTREME_X * 2,
                  target_values=[0, 1] * 5 + [1, 0] * 5, pos_weight=[2.0]))
    add(make_case("near_perfect", "a near-perfect prediction: Dice loss about 1e-5, smooth 0",
                  shape=(1, 2, 25), seed=123, segments=CHANNEL, smooth_nr=0.0, smooth_dr=0.0,
                  element_term=NONE_E, region_weight=1.0,
                  pred=near_perfect_pred(), target_values=near_perfect_target()))
    add(make_case("near_perfect_logits", "confident, correct float32 logits (|x| in [12, 16]): "
                  "the Dice loss (about 1e-6) keeps its relative precision only if 1 - p is "
                  "sigmoid(-x), not 1 - sigmoid(x) rounded", shape=(1, 2, 25), seed=124, input=L,
                  segments=CHANNEL, smooth_nr=0.0, smooth_dr=0.0, element_term=NONE_E,
                  region_weight=1.0, pred=near_perfect_logits(), target_values=near_perfect_target()))

    # Larger: everything at once.
    add(make_case("large_logits_everything", "2 x 3 x 50 logits: Tversky, focal, pos_weight, "
                  "label smoothing, channel weights, per-pixel mask, empty segments excluded",
                  shape=(2, 3, 50), seed=131, input=L, region_term=TV, alpha=0.35, beta=0.65,
                  gamma=1.5, pos_weight=[1.0, 2.5, 0.5], label_smoothing=0.05,
                  channel_weights=[1.0, 0.5, 2.0], segments=SC, mask="pixel", empty=[(1, 0)],
                  empty_policy=EXCL, element_weight=0.6, region_weight=0.4))
    add(make_case("large_probs_squared", "2 x 3 x 50 probabilities, soft targets, squared "
                  "Dice, per channel, sum", shape=(2, 3, 50), seed=132, target="soft",
                  squared=1, segments=CHANNEL, reduction=SUM))
    add(make_case("large_float64_jaccard_log", "2 x 3 x 50 float64 logits, -log(Jaccard), "
                  "per sample x channel, ZERO", shape=(2, 3, 50), seed=133, pred_dtype="float64",
                  input=L, region_term=JACC, log_loss=1, segments=SC, empty=SOME_EMPTY,
                  empty_policy=ZERO, target_dtype="uint8"))
    return out


def near_perfect_pred():
    rng = XorShift32(777)
    values = []
    for t in near_perfect_target():
        eps = rng.u() * 2.0**-14
        values.append(f32(1.0 - eps) if t == 1 else eps)
    return values


def near_perfect_logits():
    rng = XorShift32(779)
    return [f32((12.0 + 4.0 * rng.u()) * (1.0 if t == 1 else -1.0)) for t in near_perfect_target()]


def near_perfect_target():
    rng = XorShift32(778)
    return [1.0 if rng.u() < 0.4 else 0.0 for _ in range(50)]


# --- invalid calls --------------------------------------------------------------------------


def invalid_cases():
    """One fault each (or none: status OK for the valid edges of each rule)."""
    good = shape_dict(2, 3, 4, "float32", "float32")
    listing = [
        # (name, option changes, shape changes, mask given, expected status)
        ("input_2", {"input": 2}, {}, False, "INVALID_OPTIONS"),
        ("input_minus1", {"input": -1}, {}, False, "INVALID_OPTIONS"),
        ("element_term_2", {"element_term": 2}, {}, False, "INVALID_OPTIONS"),
        ("region_term_4", {"region_term": 4}, {}, False, "INVALID_OPTIONS"),
        ("segments_4", {"segments": 4}, {}, False, "INVALID_OPTIONS"),
        ("empty_policy_3", {"empty_policy": 3}, {}, False, "INVALID_OPTIONS"),
        ("reduction_2", {"reduction": 2}, {}, False, "INVALID_OPTIONS"),
        ("element_weight_negative", {"element_weight": -0.5}, {}, False, "INVALID_OPTIONS"),
        ("region_weight_nan", {"region_weight": math.nan}, {}, False, "INVALID_OPTIONS"),
        ("smooth_nr_negative", {"smooth_nr": -1.0}, {}, False, "INVALID_OPTIONS"),
        ("smooth_dr_infinite", {"smooth_dr": math.inf}, {}, False, "INVALID_OPTIONS"),
        ("alpha_negative", {"region_term": 3, "alpha": -0.1}, {}, False, "INVALID_OPTIONS"),
        ("beta_nan", {"region_term": 3, "beta": math.nan}, {}, False, "INVALID_OPTIONS"),
        ("alpha_negative_with_dice", {"alpha": -0.1}, {}, False, "INVALID_OPTIONS"),
        ("gamma_0", {"gamma": 0.0}, {}, False, "INVALID_OPTIONS"),
        ("gamma_negative", {"gamma": -1.0}, {}, False, "INVALID_OPTIONS"),
        ("gamma_infinite", {"gamma": math.inf}, {}, False, "INVALID_OPTIONS"),
        ("denominator_min_negative", {"denominator_min": -1e-9}, {}, False, "INVALID_OPTIONS"),
        ("log_min_0", {"log_min": 0.0}, {}, False, "INVALID_OPTIONS"),
        ("log_min_above_1", {"log_min": 1.5}, {}, False, "INVALID_OPTIONS"),
        ("log_min_negative", {"log_min": -1e-7}, {}, False, "INVALID_OPTIONS"),
        ("label_smoothing_above_1", {"label_smoothing": 1.5}, {}, False, "INVALID_OPTIONS"),
        ("label_smoothing_negative", {"label_smoothing": -0.1}, {}, False, "INVALID_OPTIONS"),
        ("label_smoothing_minus_infinity", {"label_smoothing": -math.inf}, {}, False, "INVALID_OPTIONS"),
        ("squared_with_tversky", {"region_term": 3, "squared": 1}, {}, False, "INVALID_OPTIONS"),
        ("squared_with_region_none", {"region_term": 0, "squared": 1}, {}, False, "INVALID_OPTIONS"),
        ("log_loss_with_gamma_2", {"log_loss": 1, "gamma": 2.0}, {}, False, "INVALID_OPTIONS"),
        ("both_terms_none", {"element_term": 0, "region_term": 0}, {}, False, "INVALID_OPTIONS"),
        ("pos_weight_without_bce", {"element_term": 0, "pos_weight": [1.0, 1.0, 1.0]}, {}, False,
         "INVALID_OPTIONS"),
        ("pos_weight_negative", {"pos_weight": [1.0, -2.0, 1.0]}, {}, False, "INVALID_OPTIONS"),
        ("pos_weight_nan", {"pos_weight": [1.0, 1.0, math.nan]}, {}, False, "INVALID_OPTIONS"),
        ("channel_weights_with_all", {"channel_weights": [1.0, 1.0, 1.0]}, {}, False,
         "INVALID_OPTIONS"),
        ("channel_weights_with_sample", {"segments": 1, "channel_weights": [1.0, 1.0, 1.0]}, {},
         False, "INVALID_OPTIONS"),
        ("channel_weights_negative", {"segments": 2, "channel_weights": [1.0, -1.0, 1.0]}, {},
         False, "INVALID_OPTIONS"),
        ("channel_weights_infinite", {"segments": 3, "channel_weights": [math.inf, 1.0, 1.0]}, {},
         False, "INVALID_OPTIONS"),
        ("pred_dtype_uint8", {}, {"pred_dtype": 2}, False, "INVALID_SHAPE"),
        ("pred_dtype_3", {}, {"pred_dtype": 3}, False, "INVALID_SHAPE"),
        ("target_dtype_3", {}, {"target_dtype": 3}, False, "INVALID_SHAPE"),
        ("target_dtype_minus1", {}, {"target_dtype": -1}, False, "INVALID_SHAPE"),
        ("mask_layout_2_with_mask", {}, {"mask_layout": 2}, True, "INVALID_SHAPE"),
        ("batch_0", {}, {"batch": 0}, False, "EMPTY_INPUT"),
        ("spatial_0", {}, {"spatial": 0}, False, "EMPTY_INPUT"),
        ("count_above_size_max", {}, {"batch": 2**62, "channels": 4, "spatial": 2}, False,
         "COUNT_TOO_LARGE"),
        # The valid edges of the rules.
        ("ok_mask_layout_2_without_mask", {}, {"mask_layout": 2}, False, "OK"),
        ("ok_log_min_1", {"log_loss": 1, "log_min": 1.0}, {}, False, "OK"),
        ("ok_label_smoothing_1", {"label_smoothing": 1.0}, {}, False, "OK"),
        ("ok_label_smoothing_without_bce", {"element_term": 0, "label_smoothing": 0.5}, {}, False, "OK"),
        ("ok_zero_weights_and_smooths", {"element_weight": 0.0, "region_weight": 0.0,
                                         "smooth_nr": 0.0, "smooth_dr": 0.0}, {}, False, "OK"),
        ("ok_tversky_alpha_beta_0", {"region_term": 3, "alpha": 0.0, "beta": 0.0}, {}, False, "OK"),
        ("ok_gamma_tiny", {"gamma": 1e-300}, {}, False, "OK"),
        ("ok_squared_jaccard", {"region_term": 2, "squared": 1}, {}, False, "OK"),
        ("ok_log_loss_jaccard", {"region_term": 2, "log_loss": 1}, {}, False, "OK"),
        ("ok_pos_weight_zeros", {"pos_weight": [0.0, 0.0, 0.0]}, {}, False, "OK"),
        ("ok_channel_weights_channel", {"segments": 2, "channel_weights": [0.0, 1.0, 2.0]}, {},
         False, "OK"),
        ("ok_channel_weights_sample_channel", {"segments": 3, "channel_weights": [3.0, 1.0, 0.0]},
         {}, False, "OK"),
        ("ok_region_none", {"region_term": 0, "alpha": 0.0}, {}, False, "OK"),
        ("ok_element_none", {"element_term": 0}, {}, False, "OK"),
        ("ok_uint8_target_float64_pred", {}, {"pred_dtype": 1, "target_dtype": 2}, False, "OK"),
        ("ok_mask_per_pixel", {}, {"mask_layout": 1}, True, "OK"),
    ]
    out = []
    for name, changes, shape_changes, has_mask, status in listing:
        opts = ref.options(**changes)
        shape = dict(good, **shape_changes)
        got = ref.validate(opts, shape, has_mask)
        assert got == status and len({s for s, _ in ref.faults(opts, shape, has_mask)}) <= 1, (name, got)
        found = ref.faults(opts, shape, has_mask)
        assert status == "OK" or len(found) == 1, (name, found)   # one fault at a time
        out.append({"name": name, "options": json_options(opts), "shape": shape,
                    "mask": has_mask, "status": status, "status_value": ref.STATUS[status],
                    "reason": found[0][1] if found else "valid"})
    return out


def invalid_input_cases():
    """Valid options and shape, data out of range (or out of range only where masked)."""
    listing = [
        # (name, option changes, target dtype, pred, target, mask, status)
        ("prob_above_1", {}, "float32", [0.5, 1.5], [1.0, 0.0], None, "PRED_OUT_OF_RANGE"),
        ("prob_negative", {}, "float32", [-0.25, 0.5], [1.0, 0.0], None, "PRED_OUT_OF_RANGE"),
        ("prob_nan", {}, "float32", [0.5, math.nan], [1.0, 0.0], None, "PRED_OUT_OF_RANGE"),
        ("logit_nan", {"input": 1}, "float32", [math.nan, 3.0], [1.0, 0.0], None, "PRED_OUT_OF_RANGE"),
        ("logit_infinite", {"input": 1}, "float32", [2.0, -math.inf], [1.0, 0.0], None,
         "PRED_OUT_OF_RANGE"),
        ("target_above_1", {}, "float32", [0.5, 0.5], [1.25, 0.0], None, "TARGET_OUT_OF_RANGE"),
        ("target_nan", {}, "float64", [0.5, 0.5], [0.0, math.nan], None, "TARGET_OUT_OF_RANGE"),
        ("target_uint8_2", {}, "uint8", [0.5, 0.5], [1, 2], None, "TARGET_OUT_OF_RANGE"),
        ("logit_large_ok", {"input": 1}, "float32", [1e30, -1e30], [1.0, 0.0], None, "OK"),
        ("masked_out_of_range_ok", {}, "float32", [7.0, 0.5], [-3.0, 1.0], [0, 1], "OK"),
        ("masked_uint8_ok", {}, "uint8", [0.5, 0.5], [9, 1], [0, 1], "OK"),
    ]
    out = []
    for name, changes, target_dtype, pred, target, mask, status in listing:
        opts = ref.options(**changes)
        got = ref.input_status(np.array(pred).reshape(1, 1, 2), np.array(target).reshape(1, 1, 2),
                               None if mask is None else np.array(mask).reshape(1, 1, 2), opts,
                               target_dtype)
        assert got == status, (name, got)
        out.append({"name": name, "options": json_options(opts),
                    "shape": shape_dict(1, 1, 2, "float32", target_dtype),
                    "pred": [number(v) for v in pred],
                    "target": [int(v) for v in target] if target_dtype == "uint8"
                    else [number(v) for v in target],
                    "mask": mask, "status": status, "status_value": ref.STATUS[status]})
    return out


def document():
    return {
        "format": 1,
        "generator": GENERATOR,
        "note": ("Generated by Tests/vectors/generate_general.py (see its docstring: format, "
                 "inputs, conventions) from the float64 reference Tests/python/"
                 "general_reference.py. Do not edit by hand: change the generator or the "
                 "reference and rerun it."),
        "enums": ref.ENUMS,
        "dtypes": ref.DTYPES,
        "mask_layouts": ref.MASK_LAYOUTS,
        "status": ref.STATUS,
        "defaults": json_options({}),
        "cases": cases(),
        "invalid": invalid_cases(),
        "invalid_inputs": invalid_input_cases(),
    }


def render():
    """The file's text."""
    doc = document()
    names = [case["name"] for case in doc["cases"]] + [case["name"] for case in doc["invalid"]]
    assert len(names) == len(set(names)), "case names must be unique"
    return json.dumps(doc, allow_nan=False, indent=None, separators=(",", ":")) + "\n"


def main():
    text = render()
    with open(OUTPUT, "w") as f:
        f.write(text)
    print(f"wrote {OUTPUT}: {len(json.loads(text)['cases'])} cases, {len(text)} bytes",
          file=sys.stderr)


if __name__ == "__main__":
    main()
