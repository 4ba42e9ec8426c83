"""Tests of the general API's float64 reference (general_reference.py) and of the shared
vectors made from it (Tests/vectors/general_vectors.json).

The reference is checked against: central finite differences of its own loss, for every
option family; the flat API's reference (float64_reference.py) under the seed options;
hand-computed values; and identities that relate options to each other (a segment is the
whole-tensor loss of its slice, a masked element is a removed one, Tversky 1/1 is Jaccard,
...), each of which a wrong reading of one option would break."""
import importlib.util
import json
import math
import pathlib
import zlib

import numpy as np
import pytest

import float64_reference as flat
import general_reference as ref

VECTORS_DIR = pathlib.Path(__file__).resolve().parents[1] / "vectors"
VECTORS = VECTORS_DIR / "general_vectors.json"
GENERATOR = VECTORS_DIR / "generate_general.py"

P, L = ref.INPUT_PROBABILITIES, ref.INPUT_LOGITS
ALL, SAMPLE, CHANNEL, SC = (ref.SEGMENT_ALL, ref.SEGMENT_SAMPLE, ref.SEGMENT_CHANNEL,
                            ref.SEGMENT_SAMPLE_CHANNEL)
KEEP, ZERO, EXCLUDE = ref.EMPTY_KEEP, ref.EMPTY_ZERO, ref.EMPTY_EXCLUDE


def data(seed, shape=(2, 3, 4), logits=False, soft=False, rate=0.4, mask=None):
    """Random pred (probabilities in [0.05, 0.95], or logits in [-4, 4]), targets and an
    optional mask ("element" or "pixel", about 3/4 valid)."""
    rng = np.random.default_rng(seed)
    n, c, s = shape
    pred = rng.uniform(-4, 4, shape) if logits else rng.uniform(0.05, 0.95, shape)
    target = rng.uniform(0, 1, shape) if soft else (rng.uniform(0, 1, shape) < rate).astype(np.float64)
    m = None
    if mask is not None:
        m = (rng.uniform(0, 1, (n, c if mask == "element" else 1, s)) < 0.75).astype(np.uint8)
    return pred, target, m


def region_only(**changes):
    return ref.options(element_term=ref.ELEMENT_NONE, region_weight=1.0, **changes)


def bce_only(**changes):
    return ref.options(region_term=ref.REGION_NONE, element_weight=1.0, **changes)


# --- gradient against finite differences -------------------------------------------------------

# (name, options, data keywords): every option family, on inputs away from the kinks.
FAMILIES = [
    ("seed", {}, {}),
    ("seed_logits", {"input": L}, {"logits": True}),
    ("bce_probs_soft", bce_only(), {"soft": True}),
    ("bce_logits_sum", bce_only(input=L, reduction=ref.REDUCTION_SUM), {"logits": True}),
    ("dice_sample", region_only(segments=SAMPLE), {}),
    ("dice_channel_logits", region_only(segments=CHANNEL, input=L), {"logits": True}),
    ("dice_sample_channel_smooth", region_only(segments=SC, smooth_nr=0.3, smooth_dr=0.7), {"soft": True}),
    ("dice_squared", region_only(squared=1, segments=SC), {"soft": True}),
    ("dice_squared_logits", region_only(squared=1, input=L), {"logits": True}),
    ("jaccard", region_only(region_term="JACCARD", segments=CHANNEL), {}),
    ("jaccard_squared_logits", region_only(region_term="JACCARD", squared=1, input=L, segments=SC),
     {"logits": True, "soft": True}),
    ("tversky", region_only(region_term="TVERSKY", alpha=0.3, beta=0.7, segments=SC), {}),
    ("tversky_logits", region_only(region_term="TVERSKY", alpha=1.2, beta=0.1, input=L), {"logits": True}),
    ("log_dice", region_only(log_loss=1, segments=SC), {}),
    ("log_jaccard_logits", region_only(log_loss=1, region_term="JACCARD", input=L), {"logits": True}),
    ("log_floor_active", region_only(log_loss=1, log_min=0.45, segments=SC, smooth_nr=0.0,
                                     smooth_dr=0.0), {"rate": 0.3}),
    ("focal_2", region_only(gamma=2.0, segments=SC), {}),
    ("focal_0.5_logits", region_only(gamma=0.5, segments=SAMPLE, input=L), {"logits": True}),
    ("focal_score_above_one", region_only(gamma=3.0, segments=SC, smooth_nr=3.0, smooth_dr=0.2),
     {"rate": 0.6, "shape": (2, 3, 5)}),
    ("denominator_min", region_only(denominator_min=2.5, segments=SC, smooth_nr=0.0, smooth_dr=0.0), {}),
    ("denominator_min_tversky_logits", region_only(region_term="TVERSKY", denominator_min=1.5,
                                                   segments=SC, input=L), {"logits": True}),
    ("empty_keep", ref.options(segments=SC), {"rate": 0.12}),
    ("empty_zero", ref.options(segments=SC, empty_policy=ZERO), {"rate": 0.12}),
    ("empty_exclude", ref.options(segments=SC, empty_policy=EXCLUDE), {"rate": 0.12}),
    ("empty_exclude_sum", ref.options(segments=CHANNEL, empty_policy=EXCLUDE, reduction=1), {"rate": 0.05}),
    ("sum", ref.options(segments=SC, reduction=ref.REDUCTION_SUM, input=L), {"logits": True}),
    ("mask_element", ref.options(segments=SC), {"mask": "element"}),
    ("mask_pixel_logits", ref.options(segments=SAMPLE, input=L), {"mask": "pixel", "logits": True}),
    ("pos_weight", ref.options(pos_weight=[0.5, 2.0, 3.0]), {"soft": True}),
    ("pos_weight_logits", ref.options(pos_weight=[0.0, 2.0, 5.0], input=L), {"logits": True}),
    ("label_smoothing", ref.options(label_smoothing=0.3, pos_weight=[1.0, 2.0, 0.5]), {}),
    ("label_smoothing_logits", ref.options(label_smoothing=1.0, input=L), {"logits": True}),
    ("channel_weights", ref.options(channel_weights=[0.0, 1.0, 2.5], segments=CHANNEL), {}),
    ("channel_weights_exclude", ref.options(channel_weights=[3.0, 1.0, 0.5], segments=SC,
                                            empty_policy=EXCLUDE, input=L), {"logits": True, "rate": 0.15}),
    ("weights", ref.options(element_weight=1.7, region_weight=0.2, region_term="TVERSKY", beta=0.9), {}),
    ("everything", ref.options(input=L, region_term="TVERSKY", alpha=0.4, beta=0.6, gamma=1.5,
                               pos_weight=[2.0, 1.0, 0.5], label_smoothing=0.1, segments=SC,
                               channel_weights=[1.0, 2.0, 0.5], empty_policy=EXCLUDE,
                               element_weight=0.7, region_weight=1.3),
     {"logits": True, "mask": "pixel", "rate": 0.2}),
]


def assert_gradient_matches_differences(pred, target, mask, opts):
    grad = ref.gradient(pred, target, mask, opts)
    differences = ref.finite_difference(pred, target, mask, opts)
    scale = max(1.0, abs(ref.forward(pred, target, mask, opts)[0]), float(np.max(np.abs(grad))))
    np.testing.assert_allclose(grad, differences, rtol=1e-6, atol=1e-7 * scale)
    return grad


@pytest.mark.parametrize("name,opts,kw", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_gradient_matches_finite_differences(name, opts, kw):
    pred, target, mask = data(zlib.crc32(name.encode()), **kw)
    grad = assert_gradient_matches_differences(pred, target, mask, opts)
    assert np.any(grad != 0)
    if mask is not None:
        valid = np.broadcast_to(mask != 0, pred.shape)
        assert np.all(grad[~valid] == 0)


def test_finite_difference_check_catches_an_error():
    """The comparison above is tight enough to see a gradient off by 1e-5 in one element."""
    pred, target, _ = data(5)
    grad = ref.gradient(pred, target, None, {})
    grad[1, 2, 3] += 1e-5
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(grad, ref.finite_difference(pred, target, None, {}),
                                   rtol=1e-6, atol=1e-7)


def test_families_cover_their_kinks():
    """The kink families above do put some segments on the flat side of their kink (else
    they would test nothing), and those segments' elements get exactly 0 region gradient."""
    checks = {
        "log_floor_active": lambda scores, opts: scores < opts["log_min"],
        "focal_score_above_one": lambda scores, opts: scores > 1,
    }
    for name, opts, kw in FAMILIES:
        if name not in checks:
            continue
        pred, target, mask = data(zlib.crc32(name.encode()), **kw)
        _, scores, _ = ref.forward(pred, target, mask, opts)
        flat_side = checks[name](scores, opts)
        assert flat_side.any() and not flat_side.all(), name
        grad = ref.gradient(pred, target, mask, opts).reshape(-1, pred.shape[2])  # n*C + c rows
        assert np.all(grad[flat_side] == 0) and np.all(np.any(grad[~flat_side] != 0, axis=1)), name
    # The denominator clamp: where active, the score's gradient is 2 t / denominator_min.
    name, opts, kw = next(f for f in FAMILIES if f[0] == "denominator_min")
    pred, target, _ = data(zlib.crc32(name.encode()), **kw)
    _, _, sums = ref.forward(pred, target, None, opts)
    den = 2 * sums[:, 0] + sums[:, 1] + sums[:, 2]
    clamped = den < opts["denominator_min"]
    assert clamped.any() and not clamped.all()
    grad = ref.gradient(pred, target, None, opts).reshape(-1, pred.shape[2])
    t = target.reshape(-1, pred.shape[2])
    expected = -2.0 * t[clamped] / opts["denominator_min"] / len(den)
    np.testing.assert_allclose(grad[clamped], expected, rtol=1e-13, atol=1e-300)


def test_gradient_scales_with_grad_loss():
    pred, target, mask = data(7, mask="element")
    opts = ref.options(segments=SC, input=L)
    np.testing.assert_allclose(ref.gradient(pred, target, mask, opts, grad_loss=-2.5),
                               -2.5 * ref.gradient(pred, target, mask, opts), rtol=1e-15)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ref.StatusError) as error:
            ref.gradient(pred, target, mask, opts, grad_loss=bad)
        assert error.value.status == "INVALID_ARGUMENT"


# --- the seed options are the flat API ----------------------------------------------------------

FLAT_INPUTS = {
    "worked_example": ([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 1]),
    "extremes": ([0.0, 0.0, 1.0, 1.0, 1e-30, 2.0**-149, 1 - 2.0**-24, 0.5, 1e-7, 0.999],
                 [0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.25, 0.0]),
    "soft": tuple(np.random.default_rng(3).uniform(0, 1, (2, 60))),
    "hard": (np.random.default_rng(4).uniform(0, 1, 60),
             (np.random.default_rng(5).uniform(0, 1, 60) < 0.3).astype(float)),
}


@pytest.mark.parametrize("name", list(FLAT_INPUTS))
@pytest.mark.parametrize("weights", [(0.5, 0.5, 1.0), (1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (0.3, 2.0, 0.25)])
def test_seed_options_are_the_flat_api(name, weights):
    """ALL, probabilities, BCE + Dice with smooth_nr = smooth_dr = smooth is the flat
    segloss_bce_dice_*, on float32 inputs of any layout: loss and gradient."""
    weight_bce, weight_dice, smooth = weights
    pred, target = (np.asarray(v, dtype=np.float32).astype(np.float64) for v in FLAT_INPUTS[name])
    opts = ref.options(element_weight=weight_bce, region_weight=weight_dice, smooth_nr=smooth,
                       smooth_dr=smooth)
    for shape in [(1, 1, pred.size), (2, 1, pred.size // 2), (1, 2, pred.size // 2)]:
        p, t = pred.reshape(shape), target.reshape(shape)
        loss, scores, sums = ref.forward(p, t, None, opts)
        np.testing.assert_allclose(loss, flat.bce_dice_loss(pred, target, weight_bce, weight_dice, smooth),
                                   rtol=1e-14)
        np.testing.assert_allclose(1 - scores[0], flat.dice_loss(pred, target, smooth), rtol=1e-12)
        if weight_bce != 0:
            np.testing.assert_allclose(sums[0, 4] / pred.size, flat.bce_loss(pred, target), rtol=1e-14)
        else:
            assert sums[0, 4] == 0.0   # not computed
        np.testing.assert_allclose(
            ref.gradient(p, t, None, opts).ravel(),
            flat.bce_dice_grad(pred, target, weight_bce, weight_dice, smooth), rtol=1e-12, atol=1e-300)


def test_worked_example_by_hand():
    """The README's worked example (float32 inputs): Dice 0.10769230, BCE + Dice 0.15266359;
    and a Tversky, Jaccard and squared Dice value written out by hand."""
    p = np.array([0.9, 0.1, 0.8, 0.7], dtype=np.float32).astype(np.float64).reshape(1, 1, 4)
    t = np.array([1, 0, 1, 1], dtype=np.float64).reshape(1, 1, 4)
    loss, scores, sums = ref.forward(p, t, None, {})
    assert round(loss, 8) == 0.15266360 and round(1 - scores[0], 8) == 0.10769231
    tp, fp, fn = 0.9 + 0.8 + 0.7, 0.1, 0.1 + 0.2 + 0.3
    np.testing.assert_allclose(sums[0, :3], [tp, fp, fn], rtol=1e-7)
    np.testing.assert_allclose(sums[0, 3], 0.01 + 0.01 + 0.04 + 0.09, rtol=1e-7)
    np.testing.assert_allclose(sums[0, 5], 4)
    tversky = ref.forward(p, t, None, region_only(region_term="TVERSKY", alpha=0.2, beta=0.8,
                                                  smooth_nr=0.5, smooth_dr=0.25))
    np.testing.assert_allclose(tversky[1][0], (tp + 0.5) / (tp + 0.2 * fp + 0.8 * fn + 0.25), rtol=1e-7)
    jaccard = ref.forward(p, t, None, region_only(region_term="JACCARD", smooth_nr=0, smooth_dr=0))
    np.testing.assert_allclose(jaccard[0], 1 - tp / (tp + fp + fn), rtol=1e-7)
    squared = ref.forward(p, t, None, region_only(squared=1))
    np.testing.assert_allclose(squared[1][0], (2 * tp + 1) / (0.81 + 0.01 + 0.64 + 0.49 + 3 + 1), rtol=1e-7)


# --- identities between options -------------------------------------------------------------


def region_loss(pred, target, mask, opts):
    """R alone (region weight 1, no element term)."""
    return ref.forward(pred, target, mask, ref.options(opts, element_term=0, element_weight=0.0,
                                                       region_weight=1.0, pos_weight=None))[0]


@pytest.mark.parametrize("logits", [False, True])
def test_each_segment_is_the_whole_tensor_loss_of_its_slice(logits):
    pred, target, _ = data(11, shape=(3, 2, 5), logits=logits, soft=True)
    base = ref.options(input=int(logits), region_term="TVERSKY", alpha=0.25, beta=1.5, gamma=1.7)
    n, c, _ = pred.shape
    slices = {
        SAMPLE: [np.s_[i:i + 1] for i in range(n)],
        CHANNEL: [np.s_[:, j:j + 1] for j in range(c)],
        SC: [np.s_[i:i + 1, j:j + 1] for i in range(n) for j in range(c)],
    }
    for segments, parts in slices.items():
        opts = ref.options(base, segments=segments)
        _, scores, sums = ref.forward(pred, target, None, opts)
        assert len(scores) == ref.segment_count(opts, ref.shape_of(pred)) == len(parts)
        alone = [ref.forward(pred[part], target[part], None, base) for part in parts]
        np.testing.assert_allclose(scores, [a[1][0] for a in alone], rtol=1e-14)
        np.testing.assert_allclose(sums, np.concatenate([a[2] for a in alone]), rtol=1e-14)
        np.testing.assert_allclose(region_loss(pred, target, None, opts),
                                   np.mean([region_loss(pred[part], target[part], None, base) for part in parts]),
                                   rtol=1e-14)
        # SUM is MEAN times the number of segments, for R; for E times the element count.
        summed = ref.options(opts, reduction=ref.REDUCTION_SUM)
        np.testing.assert_allclose(region_loss(pred, target, None, summed),
                                   len(parts) * region_loss(pred, target, None, opts), rtol=1e-14)
        e_mean = ref.forward(pred, target, None, ref.options(opts, region_term=0, element_weight=1.0))[0]
        e_sum = ref.forward(pred, target, None, ref.options(summed, region_term=0, element_weight=1.0))[0]
        np.testing.assert_allclose(e_sum, pred.size * e_mean, rtol=1e-14)


@pytest.mark.parametrize("segments", [ALL, SAMPLE, CHANNEL, SC])
def test_a_masked_pixel_is_a_removed_pixel(segments):
    """A per-pixel mask that leaves out spatial positions equals slicing them away; the
    masked elements' values (even NaN) do not matter; the per-element mask of the same
    bytes is the same; and their gradient is 0."""
    pred, target, _ = data(12, shape=(2, 3, 7), logits=True)
    keep = np.array([1, 0, 1, 1, 0, 0, 1], dtype=bool)
    opts = ref.options(input=L, segments=segments, pos_weight=[1.0, 3.0, 0.5], label_smoothing=0.2,
                       region_term="JACCARD", empty_policy=EXCLUDE)
    pixel_mask = np.broadcast_to(keep.astype(np.uint8) * 9, (2, 1, 7))
    garbage = pred.copy()
    garbage[:, :, ~keep] = np.nan
    target_garbage = target.copy()
    target_garbage[:, :, ~keep] = 7.0
    loss, scores, sums = ref.forward(garbage, target_garbage, pixel_mask, opts)
    expected = ref.forward(pred[:, :, keep], target[:, :, keep], None, opts)
    np.testing.assert_allclose(loss, expected[0], rtol=1e-14)
    np.testing.assert_allclose(scores, expected[1], rtol=1e-14)
    np.testing.assert_allclose(sums, expected[2], rtol=1e-14)
    element_mask = np.broadcast_to(pixel_mask, pred.shape)
    assert ref.forward(garbage, target_garbage, element_mask, opts)[0] == loss
    grad = ref.gradient(garbage, target_garbage, pixel_mask, opts)
    assert np.all(grad[:, :, ~keep] == 0)
    np.testing.assert_allclose(grad[:, :, keep], ref.gradient(pred[:, :, keep], target[:, :, keep], None, opts),
                               rtol=1e-13)


def test_mask_with_no_valid_element():
    pred, target, _ = data(13)
    mask = np.zeros((2, 1, 4), dtype=np.uint8)
    loss, scores, sums = ref.forward(pred, target, mask, ref.options(segments=SC))
    assert loss == 0.0 and np.all(scores == 1.0) and np.all(sums == 0)   # E = 0; KEEP: n/d = 1
    assert np.all(ref.gradient(pred, target, mask, ref.options(segments=SC)) == 0)
    opts = ref.options(segments=SC, smooth_nr=0.0, smooth_dr=0.0, region_weight=0.0)
    assert ref.forward(pred, target, mask, opts)[0] == 0.0                 # the NaN R is left out


def test_tversky_special_cases():
    pred, target, mask = data(14, soft=True, mask="element")
    dice = ref.forward(pred, target, mask, region_only(segments=SC, smooth_nr=0.6, smooth_dr=0.2))
    tversky = ref.forward(pred, target, mask, region_only(segments=SC, region_term="TVERSKY",
                                                          smooth_nr=0.3, smooth_dr=0.1))
    np.testing.assert_allclose(tversky[1], dice[1], rtol=1e-14)
    jaccard = ref.forward(pred, target, mask, region_only(segments=SC, region_term="JACCARD"))
    tversky = ref.forward(pred, target, mask, region_only(segments=SC, region_term="TVERSKY",
                                                          alpha=1.0, beta=1.0))
    np.testing.assert_allclose(tversky[1], jaccard[1], rtol=1e-14)


def test_squared_denominators():
    pred, target, _ = data(15, soft=True)
    for region, a in (("DICE", 2.0), ("JACCARD", 1.0)):
        _, scores, sums = ref.forward(pred, target, None, region_only(region_term=region, squared=1,
                                                                      segments=SC, smooth_nr=0.1,
                                                                      smooth_dr=0.4))
        p2 = (pred**2).reshape(6, -1).sum(1)
        t2 = (target**2).reshape(6, -1).sum(1)
        i = (pred * target).reshape(6, -1).sum(1)
        np.testing.assert_allclose(sums[:, 3], ((pred - target) ** 2).reshape(6, -1).sum(1), rtol=1e-13)
        den = p2 + t2 + 0.4 if region == "DICE" else p2 + t2 - i + 0.4
        np.testing.assert_allclose(scores, (a * i + 0.1) / den, rtol=1e-13)


def test_logits_are_sigmoid_probabilities():
    x, target, mask = data(16, logits=True, mask="pixel")
    p = 1 / (1 + np.exp(-x))
    for opts in (region_only(segments=SC, gamma=2.0), ref.options(segments=CHANNEL, pos_weight=[1.0, 2.0, 3.0],
                                                                  label_smoothing=0.1)):
        by_logits = ref.forward(x, target, mask, ref.options(opts, input=L))
        by_probs = ref.forward(p, target, mask, opts)
        np.testing.assert_allclose(by_logits[0], by_probs[0], rtol=1e-12)
        np.testing.assert_allclose(by_logits[2], by_probs[2], rtol=1e-12)
        np.testing.assert_allclose(ref.gradient(x, target, mask, ref.options(opts, input=L)),
                                   ref.gradient(p, target, mask, opts) * p * (1 - p), rtol=1e-10, atol=1e-300)


def test_bce_elements_by_hand():
    """pos_weight weighs the t = 1 term, label smoothing moves BCE's targets (not the
    region's) toward 0.5, and the logits form is log(1 + exp(-x)) for t = 1."""
    p = np.array([[[0.2, 0.7, 0.9]], [[0.6, 0.3, 0.5]]])
    t = np.array([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 0.25]]])
    _, _, sums = ref.forward(p, t, None, bce_only(pos_weight=[2.5], segments=SAMPLE))
    expected0 = -(2.5 * math.log(0.2) + math.log(0.3) + 2.5 * math.log(0.9))
    expected1 = -(math.log(0.4) + 2.5 * math.log(0.3) + 2.5 * 0.25 * math.log(0.5) + 0.75 * math.log(0.5))
    np.testing.assert_allclose(sums[:, 4], [expected0, expected1], rtol=1e-14)
    ls = 0.3
    smoothed = t * (1 - ls) + 0.5 * ls
    with_ls = ref.forward(p, t, None, ref.options(label_smoothing=ls, segments=SAMPLE))
    plain = ref.forward(p, smoothed, None, ref.options(segments=SAMPLE))
    np.testing.assert_allclose(with_ls[2][:, 4], plain[2][:, 4], rtol=1e-14)          # E: t'
    np.testing.assert_allclose(with_ls[2][:, :4], ref.forward(p, t, None, ref.options(segments=SAMPLE))[2][:, :4])
    x = np.array([[[-3.0, 40.0, -800.0, 800.0]]])
    _, _, sums = ref.forward(x, np.array([[[1.0, 1.0, 1.0, 0.0]]]), None, bce_only(input=L, pos_weight=[3.0]))
    np.testing.assert_allclose(sums[0, 4], 3 * (math.log1p(math.exp(-3.0)) + 3.0) + 3 * math.log1p(math.exp(-40))
                               + 3 * 800.0 + 800.0, rtol=1e-14)
    # The probabilities' clamp: log 0 counts as -100.
    _, _, sums = ref.forward(np.array([[[0.0, 1.0]]]), np.array([[[1.0, 0.0]]]), None, bce_only())
    assert sums[0, 4] == 200.0


def test_empty_policies():
    """ZERO is KEEP with the empty segments' losses set to 0; EXCLUDE averages the others;
    with every segment empty, EXCLUDE's R is 0."""
    pred, target, _ = data(17, shape=(2, 3, 5))
    target[0, 1] = 0
    target[1, :] = 0
    opts = region_only(segments=SC, channel_weights=[0.5, 1.0, 2.0])
    _, scores, sums = ref.forward(pred, target, None, opts)
    empty = sums[:, 0] + sums[:, 2] == 0
    assert empty.sum() == 4
    weights = np.tile([0.5, 1.0, 2.0], 2)
    losses = weights * (1 - scores)
    np.testing.assert_allclose(ref.forward(pred, target, None, opts)[0], losses.mean(), rtol=1e-14)
    np.testing.assert_allclose(ref.forward(pred, target, None, ref.options(opts, empty_policy=ZERO))[0],
                               np.where(empty, 0, losses).mean(), rtol=1e-14)
    np.testing.assert_allclose(ref.forward(pred, target, None, ref.options(opts, empty_policy=EXCLUDE))[0],
                               losses[~empty].mean(), rtol=1e-14)
    for policy in (ZERO, EXCLUDE):
        grad = ref.gradient(pred, target, None, ref.options(opts, empty_policy=policy)).reshape(6, -1)
        assert np.all(grad[empty] == 0) and np.all(grad[~empty] != 0)
    zero_target = np.zeros_like(target)
    assert ref.forward(pred, zero_target, None, ref.options(opts, empty_policy=EXCLUDE))[0] == 0.0
    assert ref.forward(pred, zero_target, None, ref.options(opts, empty_policy=ZERO))[0] == 0.0
    assert ref.forward(pred, zero_target, None, ref.options(opts, empty_policy=KEEP))[0] > 0.0


def test_a_weight_of_zero_leaves_its_term_out():
    """A 0/0 score (empty target, zero predictions, smooth 0) is NaN: in the loss with
    weight > 0, left out with weight 0 or with the ZERO and EXCLUDE policies."""
    pred = np.array([[[0.0, 0.0], [0.3, 0.6]]])
    target = np.array([[[0.0, 0.0], [1.0, 0.0]]])
    opts = ref.options(segments=SC, smooth_nr=0.0, smooth_dr=0.0)
    loss, scores, _ = ref.forward(pred, target, None, opts)
    assert math.isnan(loss) and math.isnan(scores[0]) and not math.isnan(scores[1])
    assert np.isnan(ref.gradient(pred, target, None, opts)[0, 0]).all()
    for changes in ({"region_weight": 0.0}, {"empty_policy": ZERO}, {"empty_policy": EXCLUDE}):
        loss, scores, _ = ref.forward(pred, target, None, ref.options(opts, **changes))
        assert math.isfinite(loss) and math.isnan(scores[0])
        assert np.all(np.isfinite(ref.gradient(pred, target, None, ref.options(opts, **changes))))
    bce = ref.forward(pred, target, None, ref.options(opts, region_weight=0.0, element_weight=1.0))[0]
    assert bce == ref.forward(pred, target, None, bce_only())[0]
    assert ref.forward(pred, target, None, ref.options(opts, region_weight=0.0, element_weight=0.0))[0] == 0.0


def test_what_is_reported_without_a_term():
    """The header: E sums are 0 (not computed) with ELEMENT_NONE or element_weight 0; the
    scores with REGION_NONE are the Dice indices (smooths and denominator_min as given)."""
    pred, target, mask = data(22, logits=True, mask="element")
    base = ref.options(input=L, segments=SC, smooth_nr=0.3, smooth_dr=1.7, denominator_min=2.0,
                       pos_weight=[1.0, 2.0, 3.0])
    _, scores, sums = ref.forward(pred, target, mask, base)
    assert np.all(sums[:, 4] > 0)
    for changes in ({"element_weight": 0.0}, {"element_term": "NONE", "pos_weight": None}):
        _, other_scores, other_sums = ref.forward(pred, target, mask, ref.options(base, **changes))
        assert np.all(other_sums[:, 4] == 0) and np.array_equal(other_sums[:, :4], sums[:, :4])
        assert np.array_equal(other_scores, scores)
    loss, none_scores, none_sums = ref.forward(pred, target, mask, ref.options(base, region_term="NONE"))
    assert np.array_equal(none_scores, scores) and np.array_equal(none_sums, sums)
    np.testing.assert_allclose(loss, 0.5 * sums[:, 4].sum() / sums[:, 5].sum(), rtol=1e-14)
    jaccard = ref.forward(pred, target, mask, ref.options(base, region_term="JACCARD"))[1]
    assert not np.allclose(jaccard, scores)


def test_weights_of_one_are_no_weights():
    pred, target, mask = data(18, logits=True, mask="element")
    base = ref.options(input=L, segments=SC)
    plain = ref.forward(pred, target, mask, base)
    weighted = ref.forward(pred, target, mask, ref.options(base, pos_weight=[1.0] * 3, channel_weights=[1.0] * 3))
    np.testing.assert_allclose(weighted[0], plain[0], rtol=1e-15)
    double = ref.forward(pred, target, mask, ref.options(base, channel_weights=[2.0] * 3, element_weight=0.0))
    np.testing.assert_allclose(double[0], 2 * ref.forward(pred, target, mask, ref.options(base, element_weight=0.0))[0],
                               rtol=1e-15)


def test_target_dtypes_agree():
    pred, target, mask = data(19, mask="pixel")
    opts = ref.options(segments=CHANNEL)
    as_float = ref.forward(pred, target, mask, opts)
    as_uint8 = ref.forward(pred, target.astype(np.uint8), mask, opts)
    assert as_float[0] == as_uint8[0]
    assert np.array_equal(ref.gradient(pred, target, mask, opts), ref.gradient(pred, target.astype(np.uint8), mask, opts))


def test_log_and_focal_forms():
    pred, target, _ = data(20)
    plain = ref.forward(pred, target, None, region_only(segments=SC))
    logs = ref.forward(pred, target, None, region_only(segments=SC, log_loss=1))
    np.testing.assert_allclose(logs[0], np.mean(-np.log(plain[1])), rtol=1e-14)
    focal = ref.forward(pred, target, None, region_only(segments=SC, gamma=2.5))
    np.testing.assert_allclose(focal[0], np.mean((1 - plain[1]) ** 2.5), rtol=1e-13)


# --- validation ---------------------------------------------------------------------------------


def test_validate_by_rule():
    shape = {"batch": 2, "channels": 3, "spatial": 4, "pred_dtype": 0, "target_dtype": 2, "mask_layout": 0}
    assert ref.validate({}, shape) == "OK"
    assert ref.validate({"gamma": 0.0}, shape) == "INVALID_OPTIONS"
    assert ref.validate({"log_min": 1.0}, shape) == "OK"
    assert ref.validate({"log_min": 1.0 + 2**-52}, shape) == "INVALID_OPTIONS"
    assert ref.validate({"squared": 1, "region_term": "TVERSKY"}, shape) == "INVALID_OPTIONS"
    assert ref.validate({"log_loss": 1, "gamma": 0.5}, shape) == "INVALID_OPTIONS"
    assert ref.validate({"pos_weight": [1, 1, 1], "element_term": "NONE"}, shape) == "INVALID_OPTIONS"
    assert ref.validate({"channel_weights": [1, 1, 1], "segments": "SAMPLE"}, shape) == "INVALID_OPTIONS"
    assert ref.validate({"channel_weights": [1, 1, 1], "segments": "CHANNEL"}, shape) == "OK"
    assert ref.validate({"element_term": 0, "region_term": 0}, shape) == "INVALID_OPTIONS"
    assert ref.validate({}, dict(shape, target_dtype=2, pred_dtype=2)) == "INVALID_SHAPE"
    assert ref.validate({}, dict(shape, mask_layout=5)) == "OK"
    assert ref.validate({}, dict(shape, mask_layout=5), has_mask=True) == "INVALID_SHAPE"
    assert ref.validate({}, dict(shape, channels=0)) == "EMPTY_INPUT"
    assert ref.validate({}, dict(shape, batch=2**61, pred_dtype=1)) == "COUNT_TOO_LARGE"
    assert ref.validate({}, dict(shape, batch=2**59, channels=1, spatial=1, pred_dtype=1)) == "OK"
    with pytest.raises(ValueError):
        ref.validate({"pos_weight": [1.0, 2.0]}, shape)        # not C values: no status
    with pytest.raises(KeyError):
        ref.options(smooth=1.0)


def test_forward_raises_the_status():
    pred, target, _ = data(21)
    with pytest.raises(ref.StatusError) as error:
        ref.forward(pred, target, None, {"gamma": -1.0})
    assert error.value.status == "INVALID_OPTIONS"
    bad = pred.copy()
    bad[0, 0, 0] = 1.5
    with pytest.raises(ref.StatusError) as error:
        ref.forward(bad, target, None, {})
    assert error.value.status == "PRED_OUT_OF_RANGE"
    mask = np.ones((2, 1, 4), dtype=np.uint8)
    mask[0, 0, 0] = 0
    ref.forward(bad, target, mask, {})   # masked: not checked
    with pytest.raises(ref.StatusError) as error:
        ref.forward(pred, target * 2, None, {})
    assert error.value.status == "TARGET_OUT_OF_RANGE"


# --- the vectors ------------------------------------------------------------------------------


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_general", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vectors():
    return json.loads(VECTORS.read_text())


def test_vectors_are_up_to_date():
    """Regenerating gives the committed bytes (the generator and the reference are
    deterministic; see generate_general.py)."""
    assert load_generator().render() == VECTORS.read_text(), (
        "Tests/vectors/general_vectors.json is stale: run python3 Tests/vectors/generate_general.py")


def decode(value):
    """A JSON number of the vectors: the strings NaN, Infinity, -Infinity are floats."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[value]
    return value


def decode_options(opts):
    return {key: decode(value) for key, value in opts.items()}


def case_arrays(case):
    shape = case["shape"]
    n, c, s = shape["batch"], shape["channels"], shape["spatial"]
    dtypes = case["dtypes"]
    pred = np.array(case["pred"], dtype=dtypes["pred"]).reshape(n, c, s)
    target = np.array(case["target"], dtype=dtypes["target"]).reshape(n, c, s)
    mask = None
    if case["mask"] is not None:
        mask = np.array(case["mask"], dtype=np.uint8).reshape(n, c if dtypes["mask_layout"] == "PER_ELEMENT" else 1, s)
    return pred, target, mask


def test_vectors_are_well_formed(vectors):
    assert vectors["format"] == 1 and vectors["status"] == ref.STATUS and vectors["enums"] == ref.ENUMS
    names = [case["name"] for case in vectors["cases"]]
    assert len(names) == len(set(names)) and 40 <= len(names) <= 70
    for case in vectors["cases"]:
        shape, dtypes, opts = case["shape"], case["dtypes"], case["options"]
        count = shape["batch"] * shape["channels"] * shape["spatial"]
        assert set(opts) == set(ref.FIELDS)
        assert shape["pred_dtype"] == ref.DTYPES[dtypes["pred"]] and shape["target_dtype"] == ref.DTYPES[dtypes["target"]]
        assert ref.validate(opts, shape, case["mask"] is not None) == "OK", case["name"]
        pred, target, mask = case_arrays(case)
        # Inputs exactly representable in their dtypes.
        assert np.array_equal(pred.astype(np.float64), np.reshape(case["pred"], pred.shape))
        assert np.array_equal(target.astype(np.float64), np.reshape(case["target"], target.shape))
        assert len(case["grad"]) == count
        if mask is not None:
            layout = ref.MASK_LAYOUTS[dtypes["mask_layout"]]
            assert shape["mask_layout"] == layout
            assert len(case["mask"]) == count // (shape["channels"] if layout == ref.MASK_PER_PIXEL else 1)
        segments = ref.segment_count(opts, shape)
        assert np.shape(case["segment_sums"]) == (segments, ref.SUMS_PER_SEGMENT)
        assert len(case["segment_scores"]) == segments
    for case in vectors["invalid"]:
        assert ref.validate(decode_options(case["options"]), case["shape"], case["mask"]) == case["status"], \
            case["name"]
        assert ref.STATUS[case["status"]] == case["status_value"]


def test_vectors_match_a_recomputation(vectors):
    """The recorded results are the reference's, from the inputs as written (read back in
    their dtypes)."""
    for case in vectors["cases"]:
        pred, target, mask = case_arrays(case)
        opts = case["options"]
        loss, scores, sums = ref.forward(pred, target, mask, opts)
        assert loss == case["loss"], case["name"]
        assert np.array_equal(scores, [decode(v) for v in case["segment_scores"]], equal_nan=True)
        assert np.array_equal(sums, case["segment_sums"])
        assert np.array_equal(ref.gradient(pred, target, mask, opts).ravel(), case["grad"])


def test_vectors_cover_every_option(vectors):
    cases = vectors["cases"]
    opts = [case["options"] for case in cases]
    for field, names in ref.ENUMS.items():
        assert {o[field] for o in opts} == set(names.values()), field
    has = lambda predicate: sum(1 for case in cases if predicate(case))  # noqa: E731
    assert has(lambda c: c["options"]["squared"] and c["options"]["region_term"] == ref.REGION_DICE)
    assert has(lambda c: c["options"]["squared"] and c["options"]["region_term"] == ref.REGION_JACCARD)
    assert has(lambda c: c["options"]["log_loss"]) >= 3
    assert has(lambda c: c["options"]["gamma"] > 1) and has(lambda c: c["options"]["gamma"] < 1)
    assert has(lambda c: c["options"]["denominator_min"] > 0) >= 2
    assert has(lambda c: c["options"]["pos_weight"] is not None) >= 3
    assert has(lambda c: c["options"]["channel_weights"] is not None) >= 2
    assert has(lambda c: c["options"]["label_smoothing"] > 0) >= 3
    assert has(lambda c: c["options"]["element_weight"] == 0 and c["options"]["element_term"])
    assert has(lambda c: c["options"]["region_weight"] == 0 and c["options"]["region_term"])
    assert has(lambda c: c["dtypes"]["mask_layout"] == "PER_ELEMENT") >= 2
    assert has(lambda c: c["dtypes"]["mask_layout"] == "PER_PIXEL") >= 2
    assert has(lambda c: c["mask"] is not None and max(c["mask"]) > 1)     # non-zero bytes other than 1
    for dtype in ("float32", "float64"):
        assert has(lambda c: c["dtypes"]["pred"] == dtype)
    for dtype in ("float32", "float64", "uint8"):
        assert has(lambda c: c["dtypes"]["target"] == dtype)
    assert has(lambda c: "NaN" in c["segment_scores"])

    def has_empty_segment(case):
        sums = np.array(case["segment_sums"])
        return bool(np.any(sums[:, 0] + sums[:, 2] == 0)) and bool(np.any(sums[:, 0] + sums[:, 2] > 0))

    for policy in (KEEP, ZERO, EXCLUDE):
        assert has(lambda c: c["options"]["empty_policy"] == policy and c["options"]["region_term"]
                   and has_empty_segment(c)), policy
    statuses = {case["status"] for case in vectors["invalid"]}
    assert statuses == {"OK", "INVALID_OPTIONS", "INVALID_SHAPE", "EMPTY_INPUT", "COUNT_TOO_LARGE"}
    assert {case["status"] for case in vectors["invalid_inputs"]} == {"OK", "PRED_OUT_OF_RANGE",
                                                                     "TARGET_OUT_OF_RANGE"}
