"""An independent float64 reference of the general API (include/segloss.h, "The general
API"): segloss_forward, segloss_backward, segloss_segment_count and the statuses their
options and shape must give.

Written from the header's formulas alone, in numpy float64 and the math module, sharing no
code with the library, with float64_reference.py (the flat API's reference) or with the
vector generators. It is the oracle: everything is computed the direct way, element by
element and segment by segment; sums are math.fsum (exactly rounded, so they do not depend
on summation order, and the generated vectors are reproducible byte for byte).

Representation
--------------
Arrays: pred and target are (N, C, S) arrays (anything numpy converts to float64 exactly:
float32, float64, uint8 0/1); mask is None, an (N, C, S) array (SEGLOSS_MASK_PER_ELEMENT)
or an (N, 1, S) array (SEGLOSS_MASK_PER_PIXEL); an element is valid where its mask byte is
non-zero.

Options: a dict whose keys are the C field names of segloss_options (struct_size left out)
and whose values are what the C struct holds: enum-valued fields (input, element_term,
region_term, segments, empty_policy, reduction) are the C enum integers, squared and
log_loss are 0 or 1, the doubles are floats, and pos_weight / channel_weights are None
(NULL) or a sequence of C floats. `options(**changes)` gives the full dict from the
defaults of segloss_options_init; it also takes enum names ("LOGITS", "sample_channel",
...) and bools and converts them to those integers. Every function here accepts a partial
dict: missing fields take their defaults.

Shape: a dict with the C field names of segloss_shape (batch, channels, spatial,
pred_dtype, target_dtype, mask_layout), dtypes and layouts as C enum integers.

Semantics (the header's, spelled out where it leaves a choice; see also validate)
-------------------------------------------------------------------------------
    p_i  = pred_i, or sigmoid(x_i) with x = pred for LOGITS;  q_i = 1 - p_i (sigmoid(-x_i))
    t'_i = t_i (1 - label_smoothing) + 0.5 label_smoothing        (BCE only)
    w_c  = pos_weight[c] or 1
    e_i  = -(w_c t' max(log p, -100) + (1 - t') max(log(1 - p), -100))      probabilities
    e_i  = (1 - t') x + (1 + (w_c - 1) t') (log(1 + exp(-|x|)) + max(-x, 0))  logits
    segment sums over its valid elements: TP = sum p t, FP = sum p (1 - t), FN = sum q t,
      SQ = sum (p - t)^2, E = sum e_i (0, not computed, with ELEMENT_NONE or
      element_weight 0), and the valid count
    score = Num / max(Den, denominator_min), with n = smooth_nr, d = smooth_dr (REGION_NONE
    still reports a score: DICE's):
      DICE     Num = 2 TP + n   Den = 2 TP + FP + FN + d   (squared: 2 TP + SQ + d)
      JACCARD  Num = TP + n     Den = TP + FP + FN + d     (squared: TP + SQ + d)
      TVERSKY  Num = TP + n     Den = TP + alpha FP + beta FN + d
    1 - score = (Den' - Num) / Den', Den' - Num summed exactly from the element terms
    segment loss: -log(max(score, log_min)) with log_loss; else max(1 - score, 0)^gamma
      when gamma != 1; else 1 - score
    empty segment: T = sum t = TP + FN is 0. KEEP: the formula; ZERO: loss 0, counted;
      EXCLUDE: not counted
    R = sum over counted segments of channel_weights[c] * loss, divided by the number of
      counted segments with MEAN (R = 0 when none is counted)
    E = sum of e_i over valid elements, divided by their number with MEAN (E = 0 if none)
    loss = element_weight E + region_weight R, a term left out entirely (not multiplied by
      0) when its weight is 0 or its kind NONE, so a NaN in it does not reach the loss

Gradients (d loss / d pred; w.r.t. the logits with LOGITS; 0 at invalid elements):
    BCE, probabilities: (p (1 + (w - 1) t') - w t') / max(p (1 - p), 1e-12), which is
      torch.nn.BCELoss's backward formula (the flat API's) extended with pos_weight, and
      the exact derivative of e_i wherever p (1 - p) > 1e-12
    BCE, logits: (1 + (w - 1) t') sigmoid(x) - w t'
    region: d score / d p_i = (dNum Den' - Num dDen) / Den'^2 with dTP = t, dFP = 1 - t,
      dFN = -t, dSQ = 2 (p - t), and dDen = 0 while the clamp is active (Den <
      denominator_min); times p (1 - p) for logits. The focal derivative
      -gamma (1 - score)^(gamma - 1) is 0 where 1 - score <= 0; the log form's -1 / score
      is 0 while the floor is active (score < log_min). At the clamp's and the floor's
      boundary (Den == denominator_min, score == log_min) the gradient goes through, as
      torch.clamp_min's does.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

# --- the C enums (include/segloss.h) -------------------------------------------------------

INPUT_PROBABILITIES, INPUT_LOGITS = 0, 1
ELEMENT_NONE, ELEMENT_BCE = 0, 1
REGION_NONE, REGION_DICE, REGION_JACCARD, REGION_TVERSKY = 0, 1, 2, 3
SEGMENT_ALL, SEGMENT_SAMPLE, SEGMENT_CHANNEL, SEGMENT_SAMPLE_CHANNEL = 0, 1, 2, 3
EMPTY_KEEP, EMPTY_ZERO, EMPTY_EXCLUDE = 0, 1, 2
REDUCTION_MEAN, REDUCTION_SUM = 0, 1
FLOAT32, FLOAT64, UINT8 = 0, 1, 2
MASK_PER_ELEMENT, MASK_PER_PIXEL = 0, 1
SUMS_PER_SEGMENT = 6

# Every enum-valued option field: its C names (without the SEGLOSS_..._ prefix) and values.
ENUMS: dict[str, dict[str, int]] = {
    "input": {"PROBABILITIES": 0, "LOGITS": 1},
    "element_term": {"NONE": 0, "BCE": 1},
    "region_term": {"NONE": 0, "DICE": 1, "JACCARD": 2, "TVERSKY": 3},
    "segments": {"ALL": 0, "SAMPLE": 1, "CHANNEL": 2, "SAMPLE_CHANNEL": 3},
    "empty_policy": {"KEEP": 0, "ZERO": 1, "EXCLUDE": 2},
    "reduction": {"MEAN": 0, "SUM": 1},
}
DTYPES = {"float32": FLOAT32, "float64": FLOAT64, "uint8": UINT8}
MASK_LAYOUTS = {"PER_ELEMENT": MASK_PER_ELEMENT, "PER_PIXEL": MASK_PER_PIXEL}

# segloss_status, by name without the SEGLOSS_ERROR_ prefix.
STATUS: dict[str, int] = {
    "OK": 0, "NULL_POINTER": 1, "EMPTY_INPUT": 2, "INVALID_ARGUMENT": 3,
    "PRED_OUT_OF_RANGE": 4, "TARGET_OUT_OF_RANGE": 5, "COUNT_TOO_LARGE": 6,
    "INVALID_OPTIONS": 7, "INVALID_SHAPE": 8,
}

# segloss_options_init: the seed's 0.5 BCE + 0.5 Dice (smooth 1) over the whole tensor.
DEFAULTS: dict[str, object] = {
    "input": INPUT_PROBABILITIES,
    "element_term": ELEMENT_BCE,
    "region_term": REGION_DICE,
    "segments": SEGMENT_ALL,
    "empty_policy": EMPTY_KEEP,
    "reduction": REDUCTION_MEAN,
    "squared": 0,
    "log_loss": 0,
    "element_weight": 0.5,
    "region_weight": 0.5,
    "smooth_nr": 1.0,
    "smooth_dr": 1.0,
    "alpha": 0.5,
    "beta": 0.5,
    "gamma": 1.0,
    "denominator_min": 0.0,
    "log_min": 1e-7,
    "label_smoothing": 0.0,
    "pos_weight": None,
    "channel_weights": None,
}
FIELDS = tuple(DEFAULTS)
DOUBLE_FIELDS = ("element_weight", "region_weight", "smooth_nr", "smooth_dr", "alpha", "beta",
                 "gamma", "denominator_min", "log_min", "label_smoothing")

BCE_LOG_MIN = -100.0   # torch.nn.BCELoss's clamp of each log
BCE_GRAD_EPS = 1e-12   # torch.nn.BCELoss's floor of p (1 - p) in the backward formula
PTRDIFF_MAX = 2**63 - 1


class StatusError(ValueError):
    """The call the reference was asked to evaluate must fail with `status` (a name of
    STATUS)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


# --- options and shapes ----------------------------------------------------------------------


def options(base: Mapping | None = None, **changes) -> dict:
    """The full options dict: DEFAULTS, updated by `base` and then `changes`. Enum fields
    take the C integer or its name (any case, e.g. "logits", "SAMPLE_CHANNEL"); squared and
    log_loss take bools or ints. Values are not checked here (see validate): an invalid
    one is kept as it is. An unknown field is a KeyError."""
    result = dict(DEFAULTS)
    for source in (base or {}, changes):
        for key, value in source.items():
            if key not in DEFAULTS:
                raise KeyError(f"unknown segloss_options field {key!r}")
            if key in ENUMS and isinstance(value, str):
                names = ENUMS[key]
                if value.upper() not in names:
                    raise KeyError(f"{key}: unknown name {value!r}; one of {sorted(names)}")
                value = names[value.upper()]
            elif key in ("squared", "log_loss") and isinstance(value, bool):
                value = int(value)
            elif key in ("pos_weight", "channel_weights") and value is not None:
                value = [float(v) for v in value]
            result[key] = value
    return result


def shape_of(pred, target=None, pred_dtype=None, target_dtype=None, mask=None) -> dict:
    """The segloss_shape of arrays: N, C, S from pred's shape, dtypes from the arrays' own
    dtypes unless given (as names or C integers), the mask layout from mask's shape."""
    def dtype_code(given, array):
        if given is None:
            given = np.asarray(array).dtype.name
        return DTYPES[given] if isinstance(given, str) else int(given)

    n, c, s = np.shape(pred)
    layout = MASK_PER_ELEMENT
    if mask is not None and np.shape(mask)[1] == 1 and c != 1:
        layout = MASK_PER_PIXEL
    return {"batch": n, "channels": c, "spatial": s,
            "pred_dtype": dtype_code(pred_dtype, pred),
            "target_dtype": dtype_code(target_dtype, pred if target is None else target),
            "mask_layout": layout}


def segment_count(opts: Mapping, shape: Mapping) -> int:
    """segloss_segment_count for valid options and shape: 1, N, C or N*C."""
    n, c = shape["batch"], shape["channels"]
    return {SEGMENT_ALL: 1, SEGMENT_SAMPLE: n, SEGMENT_CHANNEL: c,
            SEGMENT_SAMPLE_CHANNEL: n * c}[options(opts)["segments"]]


def _finite_number(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


def faults(opts: Mapping, shape: Mapping | None = None, has_mask: bool = False) -> list[tuple[str, str]]:
    """Every rule of the header that `opts` and `shape` break, as (status name, reason),
    in the order the header lists the statuses of segloss_segment_count: EMPTY_INPUT,
    COUNT_TOO_LARGE, INVALID_OPTIONS, INVALID_SHAPE. Empty when the call is valid.

    shape None checks the options alone (pos_weight and channel_weights then need no
    particular length). has_mask says whether a mask is passed: mask_layout is read only
    then. Readings of the header that are this reference's choices:
      - squared and log_loss are flags: a value other than 0 or 1 is INVALID_OPTIONS;
      - COUNT_TOO_LARGE: N*C*S times the largest element size of pred and target exceeds
        PTRDIFF_MAX (the flat API's rule with the dtype's size);
      - channel_weights with REGION_NONE is allowed (the header forbids it only with the
        segments ALL and SAMPLE).
    """
    o = options(opts)
    found: list[tuple[str, str]] = []
    if shape is not None:
        dims = [shape["batch"], shape["channels"], shape["spatial"]]
        if any(d == 0 for d in dims):
            found.append(("EMPTY_INPUT", "a dimension is 0"))
        else:
            size = {FLOAT32: 4, FLOAT64: 8, UINT8: 1}
            widest = max(size.get(shape["pred_dtype"], 4), size.get(shape["target_dtype"], 4))
            if dims[0] * dims[1] * dims[2] * widest > PTRDIFF_MAX:
                found.append(("COUNT_TOO_LARGE", "N*C*S elements do not fit in memory"))

    def bad(reason: str) -> None:
        found.append(("INVALID_OPTIONS", reason))

    for key, names in ENUMS.items():
        if o[key] not in names.values():
            bad(f"{key} = {o[key]!r} is no segloss enum value")
    for key in ("squared", "log_loss"):
        if o[key] not in (0, 1):
            bad(f"{key} = {o[key]!r} is not 0 or 1")
    for key in DOUBLE_FIELDS:
        if not _finite_number(o[key]):
            bad(f"{key} = {o[key]!r} is not finite")
    nonnegative = ("element_weight", "region_weight", "smooth_nr", "smooth_dr", "alpha", "beta",
                   "denominator_min", "label_smoothing")
    for key in nonnegative:
        if _finite_number(o[key]) and o[key] < 0:
            bad(f"{key} = {o[key]!r} is negative")
    if _finite_number(o["gamma"]) and not o["gamma"] > 0:
        bad(f"gamma = {o['gamma']!r} is not > 0")
    if _finite_number(o["log_min"]) and not 0 < o["log_min"] <= 1:
        bad(f"log_min = {o['log_min']!r} is not in (0, 1]")
    if _finite_number(o["label_smoothing"]) and o["label_smoothing"] > 1:
        bad(f"label_smoothing = {o['label_smoothing']!r} is above 1")
    if o["squared"] == 1 and o["region_term"] not in (REGION_DICE, REGION_JACCARD):
        bad("squared is only for DICE and JACCARD")
    if o["log_loss"] == 1 and o["gamma"] != 1:
        bad("log_loss is only with gamma 1")
    if o["element_term"] == ELEMENT_NONE and o["region_term"] == REGION_NONE:
        bad("both terms are NONE")
    for key in ("pos_weight", "channel_weights"):
        values = o[key]
        if values is None:
            continue
        if shape is not None and len(values) != shape["channels"]:
            raise ValueError(f"{key} has {len(values)} values for {shape['channels']} channels "
                             "(the library reads exactly C of them: a caller's error, no status)")
        if not all(_finite_number(v) and v >= 0 for v in values):
            bad(f"{key} holds a value that is negative or not finite")
    if o["pos_weight"] is not None and o["element_term"] != ELEMENT_BCE:
        bad("pos_weight is only with the BCE term")
    if o["channel_weights"] is not None and o["segments"] in (SEGMENT_ALL, SEGMENT_SAMPLE):
        bad("channel_weights are not for the segments ALL and SAMPLE")

    if shape is not None:
        if shape["pred_dtype"] not in (FLOAT32, FLOAT64):
            found.append(("INVALID_SHAPE", f"pred_dtype {shape['pred_dtype']!r}"))
        if shape["target_dtype"] not in (FLOAT32, FLOAT64, UINT8):
            found.append(("INVALID_SHAPE", f"target_dtype {shape['target_dtype']!r}"))
        if has_mask and shape["mask_layout"] not in (MASK_PER_ELEMENT, MASK_PER_PIXEL):
            found.append(("INVALID_SHAPE", f"mask_layout {shape['mask_layout']!r}"))
    order = ("EMPTY_INPUT", "COUNT_TOO_LARGE", "INVALID_OPTIONS", "INVALID_SHAPE")
    return sorted(found, key=lambda fault: order.index(fault[0]))


def validate(opts: Mapping, shape: Mapping | None = None, has_mask: bool = False) -> str:
    """The status name a call with these options and shape must return before it looks at
    the data: "OK", or the status of the first fault (see faults). When faults of several
    statuses apply, the header does not say which one wins: test with one fault at a time."""
    found = faults(opts, shape, has_mask)
    return found[0][0] if found else "OK"


def input_status(pred, target, mask=None, opts: Mapping | None = None, target_dtype=None) -> str:
    """The status of the data of a valid call: "OK", "PRED_OUT_OF_RANGE" (a probability
    outside [0, 1] or NaN, a logit NaN or infinite) or "TARGET_OUT_OF_RANGE" (outside
    [0, 1] or NaN; with a uint8 target anything but 0 and 1), looking only at valid
    elements. Pred is checked first (the header does not say which wins)."""
    o = options(opts)
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    valid = _valid(mask, p.shape)
    if o["input"] == INPUT_LOGITS:
        pred_ok = np.isfinite(p)
    else:
        pred_ok = (p >= 0) & (p <= 1)
    if not np.all(pred_ok[valid]):
        return "PRED_OUT_OF_RANGE"
    dtype = target_dtype if target_dtype is not None else np.asarray(target).dtype.name
    if dtype in ("uint8", UINT8):
        target_ok = (t == 0) | (t == 1)
    else:
        target_ok = (t >= 0) & (t <= 1)
    if not np.all(target_ok[valid]):
        return "TARGET_OUT_OF_RANGE"
    return "OK"


# --- element-wise pieces --------------------------------------------------------------------


def _valid(mask, shape) -> np.ndarray:
    """The (N, C, S) bool array of valid elements."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    m = np.asarray(mask)
    if m.ndim != 3 or m.shape[0] != shape[0] or m.shape[2] != shape[2] or m.shape[1] not in (1, shape[1]):
        raise ValueError(f"mask has shape {m.shape}; expected {shape} or "
                         f"{(shape[0], 1, shape[2])}")
    return np.broadcast_to(m != 0, shape)


def _map(function, array) -> np.ndarray:
    """function (a math-module scalar function) applied to every element."""
    a = np.asarray(array, dtype=np.float64)
    return np.array([function(v) for v in a.ravel()], dtype=np.float64).reshape(a.shape)


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _clamped_log(v: float) -> float:
    """max(log v, -100), with log 0 = -inf."""
    return BCE_LOG_MIN if v == 0 else max(math.log(v), BCE_LOG_MIN)


def _clamped_log1m(v: float) -> float:
    """max(log(1 - v), -100)."""
    return BCE_LOG_MIN if v == 1 else max(math.log1p(-v), BCE_LOG_MIN)


def _softplus_neg(x: float) -> float:
    """log(1 + exp(-|x|)) + max(-x, 0) = log(1 + exp(-x)), the header's stable form."""
    return math.log1p(math.exp(-abs(x))) + max(-x, 0.0)


class _Prepared:
    """Everything element-wise, as (N, C, S) float64 arrays."""

    def __init__(self, pred, target, mask, o):
        x = np.asarray(pred, dtype=np.float64)
        t = np.asarray(target, dtype=np.float64)
        if x.ndim != 3 or t.shape != x.shape:
            raise ValueError(f"pred {x.shape} and target {t.shape} must both be (N, C, S)")
        self.shape = x.shape
        n, c, s = x.shape
        self.valid = _valid(mask, x.shape)
        # Invalid elements may hold anything (NaN, out of range): give them harmless values;
        # every sum and the gradient leave them out anyway.
        safe = 0.0 if o["input"] == INPUT_LOGITS else 0.5
        x = np.where(self.valid, x, safe)
        t = np.where(self.valid, t, 0.0)
        self.x, self.t = x, t
        if o["input"] == INPUT_LOGITS:
            self.p = _map(sigmoid, x)
            self.q = _map(lambda v: sigmoid(-v), x)   # 1 - p without cancellation
        else:
            self.p = x
            self.q = 1.0 - x
        ls = float(o["label_smoothing"])
        self.ts = t * (1.0 - ls) + 0.5 * ls
        pos = o["pos_weight"]
        self.w = np.broadcast_to(np.asarray(pos if pos is not None else [1.0] * c,
                                            dtype=np.float64).reshape(1, c, 1), x.shape)
        segments = o["segments"]
        index_n = np.arange(n).reshape(n, 1, 1)
        index_c = np.arange(c).reshape(1, c, 1)
        self.segment = np.broadcast_to(
            {SEGMENT_ALL: 0 * index_n * index_c, SEGMENT_SAMPLE: index_n + 0 * index_c,
             SEGMENT_CHANNEL: 0 * index_n + index_c,
             SEGMENT_SAMPLE_CHANNEL: index_n * c + index_c}[segments], x.shape)
        self.segment_channel = {SEGMENT_ALL: [None], SEGMENT_SAMPLE: [None] * n,
                                SEGMENT_CHANNEL: list(range(c)),
                                SEGMENT_SAMPLE_CHANNEL: list(range(c)) * n}[segments]
        self.segments = len(self.segment_channel)
        self.o = o

    def bce_elements(self) -> np.ndarray:
        """e_i at every element (masked ones too; callers select the valid ones)."""
        p, x, ts, w = self.p, self.x, self.ts, self.w
        if self.o["input"] == INPUT_LOGITS:
            return (1.0 - ts) * x + (1.0 + (w - 1.0) * ts) * _map(_softplus_neg, x)
        return -(w * ts * _map(_clamped_log, p) + (1.0 - ts) * _map(_clamped_log1m, p))

    def bce_grad_elements(self) -> np.ndarray:
        """d e_i / d pred_i (w.r.t. the logit with LOGITS)."""
        p, ts, w = self.p, self.ts, self.w
        if self.o["input"] == INPUT_LOGITS:
            return (1.0 + (w - 1.0) * ts) * p - w * ts
        return (p * (1.0 + (w - 1.0) * ts) - w * ts) / np.maximum(p * (1.0 - p), BCE_GRAD_EPS)


# The score's numerator and denominator as weights of (TP, FP, FN, SQ); smooths added apart.
def _score_coefficients(o) -> tuple[float, tuple[float, float, float, float]]:
    region, squared = o["region_term"], o["squared"] == 1
    if region in (REGION_DICE, REGION_NONE):  # REGION_NONE: the Dice index is reported
        return 2.0, ((2.0, 0.0, 0.0, 1.0) if squared else (2.0, 1.0, 1.0, 0.0))
    if region == REGION_JACCARD:
        return 1.0, ((1.0, 0.0, 0.0, 1.0) if squared else (1.0, 1.0, 1.0, 0.0))
    if region == REGION_TVERSKY:
        return 1.0, (1.0, float(o["alpha"]), float(o["beta"]), 0.0)
    raise ValueError("no region term")


class _Segment:
    """One segment's sums, score and loss."""

    def __init__(self, prep: _Prepared, k: int, e: np.ndarray | None):
        o = prep.o
        self.select = (prep.segment == k) & prep.valid
        sel = self.select
        p, q, t = prep.p[sel], prep.q[sel], prep.t[sel]
        # p - t: where p > 1/2 as (1 - t) - q, so a logit's p near 1 keeps its precision.
        diff = np.where(p > 0.5, (1.0 - t) - q, p - t)
        self.terms = {"tp": p * t, "fp": p * (1.0 - t), "fn": q * t, "sq": diff * diff}
        self.sums = [math.fsum(self.terms[name]) for name in ("tp", "fp", "fn", "sq")]
        self.sums.append(math.fsum(e[sel]) if e is not None else 0.0)
        self.sums.append(float(np.count_nonzero(sel)))
        self.empty = math.fsum(t) == 0.0
        channel = prep.segment_channel[k]
        weights = o["channel_weights"]
        self.channel_weight = 1.0 if weights is None or channel is None else float(weights[channel])
        self._score(prep, o)

    def _score(self, prep: _Prepared, o) -> None:
        a, (b_tp, b_fp, b_fn, b_sq) = _score_coefficients(o)
        n, d, floor = float(o["smooth_nr"]), float(o["smooth_dr"]), float(o["denominator_min"])
        terms = self.terms
        num_terms = [a * terms["tp"], [n]]
        den_terms = [b_tp * terms["tp"], b_fp * terms["fp"], b_fn * terms["fn"],
                     b_sq * terms["sq"], [d]]
        self.num = math.fsum(np.concatenate(num_terms))
        den = math.fsum(np.concatenate(den_terms))
        self.clamped = den < floor
        if self.clamped:
            self.den = floor
            mismatch = math.fsum(np.concatenate([[floor]] + [-v for v in map(np.asarray, num_terms)]))
        else:
            self.den = den
            mismatch = math.fsum(np.concatenate(den_terms + [-v for v in map(np.asarray, num_terms)]))
        with np.errstate(divide="ignore", invalid="ignore"):
            self.score = float(np.float64(self.num) / np.float64(self.den))
            one_minus = float(np.float64(mismatch) / np.float64(self.den))
        self.one_minus = one_minus
        gamma = float(o["gamma"])
        if o["log_loss"] == 1:
            floored = self.score if not self.score < o["log_min"] else float(o["log_min"])
            self.loss = -math.log(floored) if not math.isnan(floored) else math.nan
        elif gamma != 1.0:
            self.loss = max(one_minus, 0.0) ** gamma if not math.isnan(one_minus) else math.nan
        else:
            self.loss = one_minus
        self.coefficients = (a, b_tp, b_fp, b_fn, b_sq)

    def loss_derivative(self, o) -> float:
        """d segment loss / d score."""
        s = self.score
        if o["log_loss"] == 1:
            return -1.0 / s if not s < o["log_min"] else 0.0   # NaN stays NaN
        gamma = float(o["gamma"])
        if gamma != 1.0:
            if math.isnan(self.one_minus):
                return math.nan
            return -gamma * self.one_minus ** (gamma - 1.0) if self.one_minus > 0 else 0.0
        return -1.0

    def score_gradient(self, prep: _Prepared) -> np.ndarray:
        """d score / d p at the segment's valid elements (in the order of select)."""
        a, b_tp, b_fp, b_fn, b_sq = self.coefficients
        sel = self.select
        p, t = prep.p[sel], prep.t[sel]
        d_num = a * t
        if self.clamped:
            d_den = np.zeros_like(p)
        else:
            d_den = b_tp * t + b_fp * (1.0 - t) - b_fn * t + b_sq * 2.0 * (p - t)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (d_num * self.den - self.num * d_den) / (self.den * self.den)


def _sum(values) -> float:
    """math.fsum, or plain sum when a value is not finite (fsum refuses inf - inf)."""
    values = list(values)
    return math.fsum(values) if all(math.isfinite(v) for v in values) else float(sum(values))


def _counted(segment: _Segment, o) -> bool:
    return not (segment.empty and o["empty_policy"] == EMPTY_EXCLUDE)


def _contributes(segment: _Segment, o) -> bool:
    """Whether the segment's loss is its formula (not 0 or left out for being empty)."""
    return not (segment.empty and o["empty_policy"] in (EMPTY_ZERO, EMPTY_EXCLUDE))


def _evaluate(pred, target, mask, opts):
    o = options(opts)
    n, c, s = np.shape(pred)
    target_dtype = UINT8 if np.asarray(target).dtype == np.uint8 else FLOAT64
    layout = MASK_PER_PIXEL if mask is not None and np.shape(mask)[1] == 1 else MASK_PER_ELEMENT
    shape = {"batch": n, "channels": c, "spatial": s, "pred_dtype": FLOAT64,
             "target_dtype": target_dtype, "mask_layout": layout}
    found = faults(o, shape, mask is not None)
    if found:
        raise StatusError(*found[0])
    status = input_status(pred, target, mask, o)
    if status != "OK":
        raise StatusError(status, "data out of range")
    prep = _Prepared(pred, target, mask, o)
    # The element terms are computed only when they count (header: "0 when the element
    # term is NONE or its weight 0: it is then not computed").
    computed = o["element_term"] == ELEMENT_BCE and o["element_weight"] != 0
    e = prep.bce_elements() if computed else None
    segments = [_Segment(prep, k, e) for k in range(prep.segments)]
    return o, prep, e, segments


# --- the API --------------------------------------------------------------------------------


def forward(pred, target, mask=None, opts: Mapping | None = None):
    """segloss_forward: (loss, segment_scores, segment_sums).

    loss is a float; segment_scores a (segments,) float64 array (NaN where the score is
    0/0; the Dice index with REGION_NONE); segment_sums a (segments, 6) float64 array of
    TP, FP, FN, SQ, E, valid count, where E is the sum of the element terms e_i over the
    segment's valid elements (0 with ELEMENT_NONE or element_weight 0: not computed).
    Raises StatusError for an invalid call."""
    o, prep, e, segments = _evaluate(pred, target, mask, opts)
    loss = 0.0
    if o["element_term"] == ELEMENT_BCE and o["element_weight"] != 0:
        total = math.fsum(e[prep.valid])
        valid = int(np.count_nonzero(prep.valid))
        if o["reduction"] == REDUCTION_MEAN:
            element = total / valid if valid else 0.0
        else:
            element = total
        loss += float(o["element_weight"]) * element
    if o["region_term"] != REGION_NONE and o["region_weight"] != 0:
        counted = [sg for sg in segments if _counted(sg, o)]
        values = [sg.channel_weight * (sg.loss if _contributes(sg, o) else 0.0) for sg in counted]
        region = _sum(values)
        if o["reduction"] == REDUCTION_MEAN:
            region = region / len(counted) if counted else 0.0
        loss += float(o["region_weight"]) * region
    scores = np.array([sg.score for sg in segments], dtype=np.float64)
    sums = np.array([sg.sums for sg in segments], dtype=np.float64).reshape(len(segments), SUMS_PER_SEGMENT)
    return float(loss), scores, sums


def gradient(pred, target, mask=None, opts: Mapping | None = None, grad_loss: float = 1.0) -> np.ndarray:
    """segloss_backward: grad_loss * d loss / d pred (w.r.t. the logits with LOGITS), a
    float64 array of pred's shape, 0 at invalid elements. Raises StatusError for an invalid
    call (INVALID_ARGUMENT for a non-finite grad_loss)."""
    if not math.isfinite(grad_loss):
        raise StatusError("INVALID_ARGUMENT", "grad_loss is not finite")
    o, prep, e, segments = _evaluate(pred, target, mask, opts)
    grad = np.zeros(prep.shape, dtype=np.float64)
    if o["element_term"] == ELEMENT_BCE and o["element_weight"] != 0:
        valid = int(np.count_nonzero(prep.valid))
        scale = float(o["element_weight"])
        if o["reduction"] == REDUCTION_MEAN:
            scale = scale / valid if valid else 0.0
        grad[prep.valid] += scale * prep.bce_grad_elements()[prep.valid]
    if o["region_term"] != REGION_NONE and o["region_weight"] != 0:
        counted = [sg for sg in segments if _counted(sg, o)]
        region_grad = np.zeros(prep.shape, dtype=np.float64)
        for sg in counted:
            if not _contributes(sg, o):
                continue
            scale = float(o["region_weight"]) * sg.channel_weight
            if o["reduction"] == REDUCTION_MEAN:
                scale /= len(counted)
            with np.errstate(invalid="ignore"):
                region_grad[sg.select] += scale * sg.loss_derivative(o) * sg.score_gradient(prep)
        if o["input"] == INPUT_LOGITS:
            region_grad *= prep.p * prep.q   # d p / d x = sigmoid(x) sigmoid(-x)
        grad += region_grad
    with np.errstate(invalid="ignore"):
        return grad_loss * grad


def forward_backward(pred, target, mask=None, opts: Mapping | None = None):
    """segloss_forward_backward: (loss, gradient with grad_loss 1, segment_scores,
    segment_sums)."""
    loss, scores, sums = forward(pred, target, mask, opts)
    return loss, gradient(pred, target, mask, opts), scores, sums


def finite_difference(pred, target, mask=None, opts: Mapping | None = None, step: float = 1e-6) -> np.ndarray:
    """Central differences of forward's loss in float64, one element at a time, with step
    `step` times max(1, |pred_i|). For tests of gradient (on inputs away from kinks)."""
    x = np.array(pred, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        h = step * max(1.0, abs(x[index]))
        up, down = x.copy(), x.copy()
        up[index] += h
        down[index] -= h
        grad[index] = (forward(up, target, mask, opts)[0] - forward(down, target, mask, opts)[0]) / (2 * h)
    return grad
