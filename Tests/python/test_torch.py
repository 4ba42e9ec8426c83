"""segloss.torch against the PyTorch code it replaces (the seed classes below, copied from
the design), through autograd; and its contract: saved gradients, no_grad, dtypes,
devices, errors."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import float64_reference as ref  # noqa: E402
import segloss  # noqa: E402
import segloss.torch as st  # noqa: E402


# --- the reference: the seed classes, plain PyTorch ----------------------------------------------


class SeedDiceLoss(nn.Module):
    def __init__(self, smooth=1.0):
        super().__init__()
        self.smooth = smooth

    def forward(self, pred, target):
        p, t = pred.view(-1), target.view(-1)
        intersection = (p * t).sum()
        dice = (2. * intersection + self.smooth) / (p.sum() + t.sum() + self.smooth)
        return 1 - dice


class SeedBCEDiceLoss(nn.Module):
    def __init__(self, weight_bce=0.5, weight_dice=0.5, smooth=1.0):
        super().__init__()
        self.weight_bce, self.weight_dice = weight_bce, weight_dice
        self.bce = nn.BCELoss()
        self.dice = SeedDiceLoss(smooth)

    def forward(self, pred, target):
        return self.weight_bce * self.bce(pred, target) + self.weight_dice * self.dice(pred, target)


# name -> (segloss module, seed module, (weight_bce, weight_dice, smooth) for the tolerance)
def module_pairs():
    return {
        "dice": (st.DiceLoss(), SeedDiceLoss(), (0.0, 1.0, 1.0)),
        "dice_smooth0.1": (st.DiceLoss(smooth=0.1), SeedDiceLoss(smooth=0.1), (0.0, 1.0, 0.1)),
        "bce": (st.BCELoss(), nn.BCELoss(), (1.0, 0.0, 0.0)),
        "bce_dice": (st.BCEDiceLoss(), SeedBCEDiceLoss(), (0.5, 0.5, 1.0)),
        "bce_dice_weighted": (st.BCEDiceLoss(0.8, 1.5, 2.0), SeedBCEDiceLoss(0.8, 1.5, 2.0), (0.8, 1.5, 2.0)),
    }


MODULES = list(module_pairs())


def loss_and_grad(module, pred, target):
    pred = pred.detach().clone().requires_grad_(True)
    loss = module(pred, target)
    loss.backward()
    return loss.detach(), pred.grad


def random_inputs(shape, seed, soft, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    pred = torch.sigmoid(torch.randn(shape, generator=generator, dtype=torch.float64) * 2)
    if soft:
        target = torch.rand(shape, generator=generator, dtype=torch.float64)
    else:
        target = (torch.rand(shape, generator=generator, dtype=torch.float64) < 0.3).double()
    return pred.to(dtype), target.to(dtype)


def assert_matches_seed(name, pred, target, loss_rtol=1e-5):
    ours, seed, (weight_bce, weight_dice, smooth) = module_pairs()[name]
    loss, grad = loss_and_grad(ours, pred, target)
    seed_loss, seed_grad = loss_and_grad(seed, pred, target)
    assert loss.shape == () and loss.dtype == pred.dtype
    assert grad.shape == pred.shape and grad.dtype == pred.dtype
    torch.testing.assert_close(loss, seed_loss, rtol=loss_rtol, atol=0)
    # rtol 1e-5, and where BCE and Dice terms cancel, a tolerance relative to the terms (see
    # float64_reference.grad_atol), ten times wider: PyTorch's float32 sums are less exact.
    p = pred.detach().to(torch.float32).numpy()
    t = target.to(torch.float32).numpy()
    atol = 10 * ref.grad_atol(p, t, weight_bce, weight_dice, smooth)
    difference = (grad.double() - seed_grad.double()).abs().numpy()
    allowed = 1e-5 * seed_grad.double().abs().numpy() + atol
    assert (difference <= allowed).all(), f"{name}: worst excess {np.max(difference - allowed):.3g}"


# --- against the seed -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (4, 1, 64, 64), (1, 1, 1, 1), (3, 5, 7, 2)])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_matches_the_seed(name, shape, soft):
    pred, target = random_inputs(shape, seed=sum(shape) + soft, soft=soft)
    assert_matches_seed(name, pred, target)


@pytest.mark.parametrize("name", MODULES)
def test_matches_the_seed_with_extreme_predictions(name):
    pred, target = random_inputs((2, 2, 8, 8), seed=11, soft=False)
    pred.view(-1)[:6] = torch.tensor([0.0, 1.0, 1e-7, 1 - 6e-8, 0.0, 1.0])
    target.view(-1)[:6] = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    assert_matches_seed(name, pred, target)


def test_worked_example():
    pred = torch.tensor([0.9, 0.1, 0.8, 0.7], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 1.0, 1.0])
    loss = st.BCEDiceLoss()(pred, target)
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(0.15266359), rtol=1e-6, atol=0)
    torch.testing.assert_close(pred.grad, torch.tensor([-0.22409600, 0.20752795, -0.24145710, -0.26377853]),
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(st.DiceLoss()(pred, target), torch.tensor(0.10769230), rtol=1e-6, atol=0,
                               check_dtype=True)
    for name in MODULES:
        assert_matches_seed(name, pred.detach(), target)


def test_docstring_example():
    import doctest
    result = doctest.testmod(st)
    assert result.attempted > 0 and result.failed == 0


# --- autograd ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
def test_second_backward_raises(name):
    module = module_pairs()[name][0]
    pred, target = random_inputs((2, 1, 4, 4), seed=1, soft=True)
    pred.requires_grad_(True)
    loss = module(pred, target)
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


@pytest.mark.parametrize("name", MODULES)
def test_retain_graph_and_upstream_gradient(name):
    module = module_pairs()[name][0]
    pred, target = random_inputs((2, 1, 4, 4), seed=2, soft=False)
    _, grad = loss_and_grad(module, pred, target)
    pred.requires_grad_(True)
    loss = module(pred, target)
    (3.0 * loss).backward(retain_graph=True)
    torch.testing.assert_close(pred.grad, 3.0 * grad, rtol=1e-6, atol=0)
    (-0.5 * loss + (pred ** 2).sum()).backward()  # accumulates, alongside other terms
    torch.testing.assert_close(pred.grad, 2.5 * grad + 2 * pred.detach(), rtol=1e-6, atol=1e-7)


def test_gradient_flows_to_earlier_layers():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8) < 0.4).float()
    grads = []
    for module in (st.BCEDiceLoss(), SeedBCEDiceLoss()):
        logits.grad = None
        module(torch.sigmoid(logits), target).backward()
        grads.append(logits.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", MODULES)
def test_no_grad_computes_the_forward_only(name, monkeypatch):
    module = module_pairs()[name][0]
    pred, target = random_inputs((2, 1, 4, 4), seed=3, soft=True)
    expected, _ = loss_and_grad(module, pred, target)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a gradient was computed")

    for backward in ("dice_loss_backward", "bce_loss_backward", "bce_dice_loss_backward", "bce_dice_loss_and_grad"):
        monkeypatch.setattr(segloss._api, backward, must_not_run)
    pred.requires_grad_(True)
    with torch.no_grad():
        loss = module(pred, target)
    assert loss.grad_fn is None and not loss.requires_grad
    assert torch.equal(loss, expected)
    with torch.inference_mode():
        assert torch.equal(module(pred, target), expected)
    loss = module(pred.detach(), target)  # pred that does not require grad
    assert loss.grad_fn is None and torch.equal(loss, expected)


@pytest.mark.parametrize("name", MODULES)
def test_target_that_requires_grad_is_an_error(name):
    module = module_pairs()[name][0]
    pred, target = random_inputs((4,), seed=4, soft=True)
    pred.requires_grad_(True)
    target.requires_grad_(True)
    with pytest.raises(ValueError, match="target requires grad"):
        module(pred, target)
    with torch.no_grad():  # nothing is differentiated: fine
        module(pred, target)
    module(pred, target.detach()).backward()


# --- dtypes, layouts, devices -------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
def test_float64_pred(name):
    pred, target = random_inputs((2, 3, 8, 8), seed=5, soft=True, dtype=torch.float64)
    # The seed computes in float64, segloss in float32: within float32 rounding of the inputs.
    assert_matches_seed(name, pred, target, loss_rtol=1e-6)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_pred(name, dtype):
    module = module_pairs()[name][0]
    pred, target = random_inputs((2, 3, 8, 8), seed=6, soft=False, dtype=dtype)
    loss, grad = loss_and_grad(module, pred, target)
    assert loss.dtype == dtype and grad.dtype == dtype
    loss32, grad32 = loss_and_grad(module, pred.float(), target.float())
    assert loss.item() == loss32.to(dtype).item()
    assert torch.equal(grad, grad32.to(dtype))


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool, torch.float64])
def test_target_dtypes(name, dtype):
    module = module_pairs()[name][0]
    pred, target = random_inputs((2, 3, 8, 8), seed=7, soft=False)
    expected = loss_and_grad(module, pred, target)
    got = loss_and_grad(module, pred, target.to(dtype))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_float32_tensors_are_used_without_a_copy():
    pred = torch.rand(3, 4)
    array = st._array("pred", pred)
    assert array.__array_interface__["data"][0] == pred.data_ptr()
    assert segloss._api._as_float32("pred", array) is array


@pytest.mark.parametrize("name", MODULES)
def test_non_contiguous_tensors(name):
    module = module_pairs()[name][0]
    pred, target = random_inputs((2, 3, 8, 6), seed=8, soft=True)
    pred_view, target_view = pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    assert not pred_view.is_contiguous()
    loss, grad = loss_and_grad(module, pred_view, target_view)
    expected_loss, expected_grad = loss_and_grad(module, pred_view.contiguous(), target_view.contiguous())
    assert grad.shape == pred_view.shape
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", MODULES)
def test_tensors_off_the_cpu_are_an_error(name):
    module = module_pairs()[name][0]
    on_meta = torch.empty(4, device="meta")
    with pytest.raises(ValueError, match="pred is on device 'meta'"):
        module(on_meta, torch.ones(4))
    with pytest.raises(ValueError, match="target is on device 'meta'"):
        module(torch.full((4,), 0.5), on_meta)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensors_are_an_error():
    with pytest.raises(ValueError, match="cuda"):
        st.BCEDiceLoss()(torch.full((4,), 0.5, device="cuda"), torch.ones(4, device="cuda"))


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
def test_errors(name):
    module = module_pairs()[name][0]
    pred = torch.full((2, 2), 0.5, requires_grad=True)
    with pytest.raises(ValueError, match=r"pred \(2, 2\) and target \(4,\)"):
        module(pred, torch.ones(4))
    with pytest.raises(TypeError, match="pred must be a torch.Tensor"):
        module(np.full((2, 2), 0.5, np.float32), torch.ones(2, 2))
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        module(pred, None)
    with pytest.raises(TypeError, match="complex"):
        module(pred, torch.ones(2, 2, dtype=torch.complex64))
    with pytest.raises(segloss.SegLossError, match="pred") as raised:
        module(torch.tensor([0.5, 1.5], requires_grad=True), torch.ones(2))
    assert raised.value.status == segloss.Status.ERROR_PRED_OUT_OF_RANGE
    with pytest.raises(segloss.SegLossError) as raised:
        module(torch.tensor([0.5, 0.5]), torch.tensor([0.0, float("nan")]))
    assert raised.value.status == segloss.Status.ERROR_TARGET_OUT_OF_RANGE
    with pytest.raises(segloss.SegLossError) as raised:
        module(torch.empty(0, 3, requires_grad=True), torch.empty(0, 3))
    assert raised.value.status == segloss.Status.ERROR_EMPTY_INPUT


def test_invalid_module_parameters_raise_on_use():
    pred, target = torch.full((4,), 0.5), torch.ones(4)
    for module in (st.DiceLoss(smooth=-1.0), st.BCEDiceLoss(weight_bce=float("nan")), st.BCEDiceLoss(weight_dice=-2)):
        with pytest.raises(segloss.SegLossError) as raised:
            module(pred, target)
        assert raised.value.status == segloss.Status.ERROR_INVALID_ARGUMENT


def test_modules_are_plain_modules():
    assert repr(st.BCEDiceLoss()) == "BCEDiceLoss(weight_bce=0.5, weight_dice=0.5, smooth=1.0)"
    assert repr(st.DiceLoss(smooth=2.0)) == "DiceLoss(smooth=2.0)"
    assert repr(st.BCELoss()) == "BCELoss()"
    for module in (st.DiceLoss(), st.BCELoss(), st.BCEDiceLoss()):
        assert isinstance(module, nn.Module)
        assert list(module.parameters()) == [] and module.state_dict() == {}
    # usable inside other modules
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Sigmoid())
    image, mask = torch.rand(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    st.BCEDiceLoss()(model(image), mask).backward()
    assert model[0].weight.grad is not None
