"""segloss.torch.SegLoss (the general API through autograd) against a plain PyTorch
float64 implementation of the header's formulas, differentiated by torch's own autograd,
for every option set of general_cases; gradcheck in float64; and the module's contract:
shapes (1-D to 5-D), dtypes, masks, the saved gradient, no_grad, per-segment scores,
devices, errors."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import general_cases as cases  # noqa: E402
import segloss  # noqa: E402
import segloss._general  # noqa: E402
import segloss.torch as st  # noqa: E402
from general_cases import needs_general_api  # noqa: E402

pytestmark = needs_general_api


# --- the reference: the header's formulas in plain PyTorch -------------------------------------


def torch_loss(x, target, mask, o: segloss.Options):
    """The loss of segloss.h's general API for pred `x` (any shape of >= 1 dims), written
    directly in torch, so that torch's autograd gives its gradient. float64 in, float64 out."""
    if x.dim() == 1:
        x3, t3 = x.reshape(1, 1, -1), target.reshape(1, 1, -1)
    else:
        x3, t3 = x.reshape(x.shape[0], x.shape[1], -1), target.reshape(x.shape[0], x.shape[1], -1)
    n, c, _ = x3.shape
    t3 = t3.to(x.dtype)
    if mask is None:
        valid = torch.ones(x3.shape, dtype=torch.bool)
    else:
        valid = mask.reshape(mask.shape[0] if x.dim() > 1 else 1, -1, x3.shape[2]).bool().expand(x3.shape)
    p = torch.sigmoid(x3) if o.input == "logits" else x3
    loss = torch.zeros((), dtype=x.dtype)
    if o.element_term == "bce" and o.element_weight != 0:
        ts = t3 * (1 - o.label_smoothing) + 0.5 * o.label_smoothing
        w = torch.tensor(o.pos_weight, dtype=x.dtype).view(1, c, 1) if o.pos_weight else 1.0
        if o.input == "logits":
            e = (1 - ts) * x3 + (1 + (w - 1) * ts) * (torch.log1p(torch.exp(-x3.abs())) + torch.clamp(-x3, min=0))
        else:
            e = -(w * ts * torch.clamp(torch.log(p), min=-100) + (1 - ts) * torch.clamp(torch.log1p(-p), min=-100))
        e = torch.where(valid, e, torch.zeros_like(e))
        count = int(valid.sum())
        element = e.sum() / count if o.reduction == "mean" and count else e.sum() if o.reduction == "sum" else e.sum() * 0
        loss = loss + o.element_weight * element
    if o.region_term != "none" and o.region_weight != 0:
        zero = torch.zeros_like(p)
        pv, tv = torch.where(valid, p, zero), torch.where(valid, t3, zero)
        dims = {"all": (0, 1, 2), "sample": (1, 2), "channel": (0, 2), "sample_channel": (2,)}[o.segments]

        def segment_sums(a):
            return a.sum(dim=dims).reshape(-1)

        tp, fp, fn = segment_sums(pv * tv), segment_sums(pv * (1 - tv)), segment_sums((1 - pv) * tv)
        sq = segment_sums((pv - tv) ** 2)
        if o.region_term == "dice":
            numerator = 2 * tp + o.smooth_nr
            denominator = (2 * tp + sq if o.squared else 2 * tp + fp + fn) + o.smooth_dr
        elif o.region_term == "jaccard":
            numerator = tp + o.smooth_nr
            denominator = (tp + sq if o.squared else tp + fp + fn) + o.smooth_dr
        else:
            numerator = tp + o.smooth_nr
            denominator = tp + o.alpha * fp + o.beta * fn + o.smooth_dr
        score = numerator / torch.clamp(denominator, min=o.denominator_min)
        if o.log_loss:
            segment_loss = -torch.log(torch.clamp(score, min=o.log_min))
        elif o.gamma != 1:
            segment_loss = torch.clamp(1 - score, min=0) ** o.gamma
        else:
            segment_loss = 1 - score
        empty = segment_sums(tv) == 0
        if o.empty_policy != "keep":
            segment_loss = torch.where(empty, torch.zeros_like(segment_loss), segment_loss)
        counted = ~empty if o.empty_policy == "exclude" else torch.ones_like(empty)
        if o.channel_weights is not None:
            weights = torch.tensor(o.channel_weights, dtype=x.dtype)
            if o.segments == "sample_channel":
                weights = weights.repeat(n)
            segment_loss = weights * segment_loss
        region = segment_loss[counted].sum()
        if o.reduction == "mean":
            region = region / int(counted.sum()) if int(counted.sum()) else region * 0
        loss = loss + o.region_weight * region
    return loss


def tensors(shape, seed, o, mask_kind="none", dtype=torch.float64, target_kind="hard"):
    pred, target, mask = cases.inputs(shape, seed, input_kind=o.input, target_kind=target_kind,
                                      mask_kind=mask_kind)
    return (torch.from_numpy(pred).to(dtype), torch.from_numpy(np.asarray(target)),
            None if mask is None else torch.from_numpy(mask))


def loss_and_grad(module, pred, target, mask=None):
    pred = pred.detach().clone().requires_grad_(True)
    loss = module(pred, target) if mask is None else module(pred, target, mask)
    loss.backward()
    return loss.detach(), pred.grad


def reference_loss_and_grad(o, pred, target, mask=None):
    x = pred.detach().to(torch.float64).requires_grad_(True)
    loss = torch_loss(x, target, mask, o)
    loss.backward()
    return loss.detach(), x.grad


def assert_matches_torch(o, pred, target, mask=None, context=""):
    loss, grad = loss_and_grad(st.SegLoss(o), pred, target, mask)
    expected_loss, expected_grad = reference_loss_and_grad(o, pred, target, mask)
    assert loss.shape == () and loss.dtype == pred.dtype
    assert grad.shape == pred.shape and grad.dtype == pred.dtype
    float64 = pred.dtype == torch.float64
    rtol, atol = (1e-9, 1e-12) if float64 else (1e-5, 1e-6)
    torch.testing.assert_close(loss.double(), expected_loss, rtol=rtol, atol=0, msg=f"{context} loss")
    torch.testing.assert_close(grad.double(), expected_grad, rtol=rtol,
                               atol=atol * float(expected_grad.abs().max()), msg=f"{context} gradient")


# --- against torch autograd -----------------------------------------------------------------------


@pytest.mark.parametrize("name", cases.CASES)
@pytest.mark.parametrize("mask_kind", ["none", "element", "pixel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_every_option_against_torch_autograd(name, mask_kind, dtype):
    o = cases.options(name)
    pred, target, mask = tensors((2, 3, 5, 4), 31, o, mask_kind, dtype)
    assert_matches_torch(o, pred, target, mask, name)


@pytest.mark.parametrize("name", ["seed_bce_dice", "logits_bce_pos_weight", "segments_channel", "everything"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5, 6), (2, 3, 8, 8), (2, 3, 7), (4, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_4d_and_5d_inputs(name, shape, dtype):
    o = cases.options(name)
    pred, target, mask = tensors(shape, 32, o, "pixel", dtype)
    assert_matches_torch(o, pred, target, mask, f"{name} {shape}")


@pytest.mark.parametrize("name", ["seed_bce_dice", "logits_bce_pos_weight", "segments_channel", "jaccard_squared",
                                  "focal_tversky", "everything"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_large_inputs(name, dtype):
    """110,592 elements: many chunks, every worker thread."""
    o = cases.options(name)
    pred, target, mask = tensors((4, 3, 96, 96), 46, o, "pixel", dtype, target_kind="float32")
    assert_matches_torch(o, pred, target, mask, name)


@pytest.mark.parametrize("name", ["seed_bce_dice", "logits_dice", "bce"])
def test_one_dimensional_input(name):
    o = cases.options(name)
    pred, target, mask = tensors((50,), 33, o, "element")
    assert_matches_torch(o, pred, target, mask, name)


@pytest.mark.parametrize("name", ["logits_bce_dice", "logits_bce_pos_weight", "focal_tversky", "jaccard_squared",
                                  "sample_channel_weights", "everything", "dice_log_loss"])
def test_gradcheck(name):
    o = cases.options(name)
    pred, target, mask = tensors((2, 3, 2, 3), 34, o, "pixel")
    if o.input == "probabilities":
        pred = pred.clamp(0.05, 0.95)
    module = st.SegLoss(o)
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: module(x, target, mask), (pred,), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_the_seed_bce_dice_is_the_flat_module():
    pred, target, _ = tensors((2, 3, 8, 8), 35, segloss.Options(), dtype=torch.float32)
    target = target.float()
    loss, grad = loss_and_grad(st.SegLoss(), pred, target)
    flat_loss, flat_grad = loss_and_grad(st.BCEDiceLoss(), pred, target)
    torch.testing.assert_close(loss, flat_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, flat_grad, rtol=1e-5, atol=1e-6 * float(flat_grad.abs().max()))


# --- autograd --------------------------------------------------------------------------------------


def test_second_backward_raises():
    o = cases.options("logits_bce_dice")
    pred, target, _ = tensors((2, 3, 4), 36, o)
    pred.requires_grad_(True)
    loss = st.SegLoss(o)(pred, target)
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


def test_retain_graph_and_upstream_gradient():
    o = cases.options("everything")
    module = st.SegLoss(o)
    pred, target, mask = tensors((2, 3, 4), 37, o, "element")
    _, grad = loss_and_grad(module, pred, target, mask)
    pred.requires_grad_(True)
    loss = module(pred, target, mask)
    (3.0 * loss).backward(retain_graph=True)
    torch.testing.assert_close(pred.grad, 3.0 * grad, rtol=1e-12, atol=0)
    (-0.5 * loss + (pred ** 2).sum()).backward()
    torch.testing.assert_close(pred.grad, 2.5 * grad + 2 * pred.detach(), rtol=1e-12, atol=1e-15)


def test_gradient_flows_to_earlier_layers():
    torch.manual_seed(0)
    model = nn.Conv2d(2, 3, 3, padding=1).double()
    image = torch.rand(2, 2, 8, 8, dtype=torch.float64)
    target = (torch.rand(2, 3, 8, 8) < 0.4).double()
    o = segloss.Options(input="logits", segments="channel")
    grads = []
    for loss_function in (st.SegLoss(o), lambda x, t: torch_loss(x, t, None, o)):
        model.zero_grad()
        loss_function(model(image), target).backward()
        grads.append(model.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)


def test_no_grad_computes_the_forward_only(monkeypatch):
    o = cases.options("segments_sample_channel")
    module = st.SegLoss(o)
    pred, target, _ = tensors((2, 3, 4), 38, o)
    expected, _ = loss_and_grad(module, pred, target)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a gradient was computed")

    monkeypatch.setattr(segloss._general, "loss_and_grad", must_not_run)
    pred.requires_grad_(True)
    with torch.no_grad():
        loss = module(pred, target)
    assert loss.grad_fn is None and not loss.requires_grad and torch.equal(loss, expected)
    with torch.inference_mode():
        assert torch.equal(module(pred, target), expected)
    loss = module(pred.detach(), target)
    assert loss.grad_fn is None and torch.equal(loss, expected)


def test_target_that_requires_grad_is_an_error():
    o = segloss.Options()
    pred, target, _ = tensors((2, 3, 4), 39, o, target_kind="soft")
    pred.requires_grad_(True)
    target.requires_grad_(True)
    with pytest.raises(ValueError, match="target requires grad"):
        st.SegLoss()(pred, target)
    with torch.no_grad():
        st.SegLoss()(pred, target)
    st.SegLoss()(pred, target.detach()).backward()


# --- per-segment scores ----------------------------------------------------------------------------


@pytest.mark.parametrize("segments, count", [("all", 1), ("sample", 2), ("channel", 3), ("sample_channel", 6)])
@pytest.mark.parametrize("grad", [True, False])
def test_last_segment_scores(segments, count, grad):
    o = segloss.Options(input="logits", segments=segments)
    module = st.SegLoss(o)
    assert module.last_segment_scores is None and module.last_segment_sums is None
    pred, target, mask = tensors((2, 3, 4, 4), 40, o, "pixel")
    pred.requires_grad_(grad)
    loss = module(pred, target, mask)
    value, scores, sums = segloss.loss(pred.detach().numpy(), target.numpy(), mask.numpy(), options=o,
                                       return_segments=True)
    assert loss.item() == value
    assert module.last_segment_scores.shape == (count,) and module.last_segment_sums.shape == (count, 6)
    assert module.last_segment_scores.dtype == torch.float64 and not module.last_segment_scores.requires_grad
    np.testing.assert_array_equal(module.last_segment_scores.numpy(), scores)
    np.testing.assert_array_equal(module.last_segment_sums.numpy(), sums)
    # a new call replaces them
    first = module.last_segment_scores
    module(pred, 1 - target, mask)
    assert module.last_segment_scores is not first
    assert not torch.equal(module.last_segment_scores, first)


def test_per_class_dice_of_a_batch():
    """The docstring's use: the Dice of each class over the batch, from the loss's own pass."""
    o = segloss.Options(input="logits", segments="channel", element_term="none", region_weight=1.0,
                        smooth_nr=0.0, smooth_dr=0.0)
    pred, target, _ = tensors((4, 3, 8, 8), 41, o, target_kind="soft")
    module = st.SegLoss(o)
    loss = module(pred.requires_grad_(True), target)
    p = torch.sigmoid(pred.detach())
    dice = 2 * (p * target).sum(dim=(0, 2, 3)) / (p.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3)))
    torch.testing.assert_close(module.last_segment_scores, dice, rtol=1e-12, atol=0)
    torch.testing.assert_close(loss.detach(), (1 - dice).mean(), rtol=1e-12, atol=0)


# --- dtypes, layouts, devices ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_in_float32(dtype):
    o = cases.options("logits_bce_dice")
    pred, target, _ = tensors((2, 3, 8), 42, o, dtype=dtype)
    loss, grad = loss_and_grad(st.SegLoss(o), pred, target)
    assert loss.dtype == dtype and grad.dtype == dtype
    loss32, grad32 = loss_and_grad(st.SegLoss(o), pred.float(), target)
    assert loss.item() == loss32.to(dtype).item()
    assert torch.equal(grad, grad32.to(dtype))


@pytest.mark.parametrize("target_dtype", [torch.int64, torch.uint8, torch.bool, torch.float32, torch.float64,
                                          torch.float16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_target_dtypes(target_dtype, dtype):
    o = cases.options("logits_bce_dice")
    pred, target, mask = tensors((2, 3, 8), 43, o, "element", dtype)
    expected = loss_and_grad(st.SegLoss(o), pred, target, mask)
    got = loss_and_grad(st.SegLoss(o), pred, target.to(target_dtype), mask)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-15, atol=0)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-6 if dtype == torch.float32 else 1e-14, atol=0)


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.uint8])
def test_mask_layouts_and_dtypes(mask_dtype):
    o = cases.options("everything")
    pred, target, mask = tensors((2, 3, 4, 4), 44, o, "pixel")
    pixel = loss_and_grad(st.SegLoss(o), pred, target, mask.to(mask_dtype))
    element = loss_and_grad(st.SegLoss(o), pred, target, mask.expand(2, 3, 4, 4).to(mask_dtype))
    assert torch.equal(pixel[0], element[0]) and torch.equal(pixel[1], element[1])
    with pytest.raises(TypeError, match="mask has dtype float32"):
        st.SegLoss(o)(pred, target, mask.float())


def test_contiguous_tensors_are_used_without_a_copy():
    pred = torch.rand(2, 3, 4, dtype=torch.float64)
    array = st._general_array("input", pred, torch.float32)
    assert array.__array_interface__["data"][0] == pred.data_ptr() and array.dtype == np.float64


def test_non_contiguous_tensors():
    o = cases.options("segments_sample_channel")
    pred, target, mask = tensors((2, 3, 8, 6), 45, o, "element")
    views = [a.transpose(2, 3) for a in (pred, target, mask)]
    assert not views[0].is_contiguous()
    loss, grad = loss_and_grad(st.SegLoss(o), *views)
    expected = loss_and_grad(st.SegLoss(o), *(a.contiguous() for a in views))
    assert grad.shape == views[0].shape
    assert torch.equal(loss, expected[0]) and torch.equal(grad, expected[1])


def test_tensors_off_the_cpu_are_an_error():
    on_meta = torch.empty(2, 3, device="meta")
    with pytest.raises(ValueError, match="input is on device 'meta'"):
        st.SegLoss()(on_meta, torch.ones(2, 3))
    with pytest.raises(ValueError, match="target is on device 'meta'"):
        st.SegLoss()(torch.full((2, 3), 0.5), on_meta)
    with pytest.raises(ValueError, match="mask is on device 'meta'"):
        st.SegLoss()(torch.full((2, 3), 0.5), torch.ones(2, 3), torch.empty(2, 3, dtype=torch.bool, device="meta"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensors_are_an_error():
    with pytest.raises(ValueError, match="cuda"):
        st.SegLoss()(torch.full((2, 3), 0.5, device="cuda"), torch.ones(2, 3, device="cuda"))


# --- errors and the module itself --------------------------------------------------------------------


def test_errors():
    module = st.SegLoss()
    pred = torch.full((2, 2), 0.5, requires_grad=True)
    with pytest.raises(ValueError, match=r"pred \(2, 2\) and target \(4,\)"):
        module(pred, torch.ones(4))
    with pytest.raises(ValueError, match=r"mask has shape \(2, 3\)"):
        module(pred, torch.ones(2, 2), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="0-d"):
        module(torch.tensor(0.5, requires_grad=True), torch.tensor(1.0))
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        module(np.full((2, 2), 0.5, np.float32), torch.ones(2, 2))
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        module(pred, None)
    with pytest.raises(TypeError, match="input has dtype torch.int64"):
        module(torch.ones(2, 2, dtype=torch.int64), torch.ones(2, 2))
    with pytest.raises(TypeError, match="complex"):
        module(pred, torch.ones(2, 2, dtype=torch.complex64))
    with pytest.raises(segloss.SegLossError) as raised:
        module(torch.tensor([[0.5, 1.5]], requires_grad=True), torch.ones(1, 2))
    assert raised.value.status == segloss.Status.ERROR_PRED_OUT_OF_RANGE
    with pytest.raises(segloss.SegLossError) as raised:
        st.SegLoss(input="logits")(torch.tensor([[0.5, float("inf")]]), torch.ones(1, 2))
    assert raised.value.status == segloss.Status.ERROR_PRED_OUT_OF_RANGE
    with pytest.raises(segloss.SegLossError) as raised:
        module(torch.empty(0, 3, requires_grad=True), torch.empty(0, 3))
    assert raised.value.status == segloss.Status.ERROR_EMPTY_INPUT
    with pytest.raises(ValueError, match="pos_weight has 2 values, but pred has 3 channels"):
        st.SegLoss(pos_weight=[1.0, 2.0])(torch.rand(2, 3, 4), torch.ones(2, 3, 4))


def test_invalid_options_raise_when_the_module_is_made():
    with pytest.raises(segloss.SegLossError) as raised:
        st.SegLoss(region_term="iou")
    assert raised.value.status == segloss.Status.ERROR_INVALID_OPTIONS and "'jaccard'" in str(raised.value)
    with pytest.raises(segloss.SegLossError, match="gamma must be > 0"):
        st.SegLoss(gamma=0)
    with pytest.raises(TypeError):
        st.SegLoss(smooth=1.0)


def test_options_forms():
    o = segloss.Options(input="logits", segments="channel")
    assert st.SegLoss(o).options is o
    assert st.SegLoss(input="logits", segments="channel").options == o
    assert st.SegLoss(o, region_term="jaccard").options == segloss.Options(input="logits", segments="channel",
                                                                          region_term="jaccard")
    weights = torch.tensor([1.0, 2.0, 0.5], requires_grad=True)
    assert st.SegLoss(pos_weight=weights).options.pos_weight == (1.0, 2.0, 0.5)


def test_module_is_a_plain_module():
    module = st.SegLoss(input="logits", segments="channel")
    assert repr(module) == "SegLoss(input='logits', segments='channel')"
    assert repr(st.SegLoss()) == "SegLoss()"
    assert isinstance(module, nn.Module)
    assert list(module.parameters()) == [] and module.state_dict() == {}
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1))
    image, target = torch.rand(2, 1, 8, 8), (torch.rand(2, 2, 8, 8) > 0.5)
    module(model(image), target).backward()
    assert model[0].weight.grad is not None


def test_docstring_example():
    import doctest
    result = doctest.testmod(st)
    assert result.attempted > 0 and result.failed == 0
