"""Networks: registry, shapes, parameter counts, attention outputs, input checks."""
from __future__ import annotations

import pytest
import torch

from lanesad_ros.model import build_model, list_models
from lanesad_ros.model.common import ExistenceHead
from lanesad_ros.model.enet_sad import max_unpool, scatter_unpool

PAPER_PARAMS = {"enet_sad": 0.98e6, "resnet18_sad": 12.41e6, "resnet34_sad": 22.72e6}


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_names_the_three_models():
    assert list_models() == ["enet_sad", "resnet18_sad", "resnet34_sad"]


def test_unknown_model_error_lists_known_models():
    with pytest.raises(ValueError, match="unknown model 'scnn'.*enet_sad, resnet18_sad, resnet34_sad"):
        build_model("scnn")


@pytest.mark.parametrize("size", [(100, 800), (288, 808), (0, 800)])
def test_input_size_must_be_divisible_by_16(size):
    with pytest.raises(ValueError, match="divisible by 16"):
        build_model("enet_sad", input_size=size)


@pytest.mark.parametrize("lanes", [0, -1, 2.5, True])
def test_bad_lane_count_rejected(lanes):
    with pytest.raises(ValueError, match="num_lanes"):
        build_model("enet_sad", num_lanes=lanes)


def test_model_attributes():
    model = build_model("resnet18_sad", num_lanes=5, input_size=[64, 128])
    assert (model.name, model.num_lanes, model.input_size) == ("resnet18_sad", 5, (64, 128))


@pytest.mark.parametrize("size", [(288, 800), (368, 640)])
@pytest.mark.parametrize("batch", [1, 4])
def test_enet_output_shapes(size, batch):
    torch.manual_seed(0)
    model = build_model("enet_sad", input_size=size).eval()
    with torch.no_grad():
        seg, exist = model(torch.randn(batch, 3, *size))
    assert seg.shape == (batch, 5, *size)
    assert exist.shape == (batch, 4)
    assert exist.min() >= 0 and exist.max() <= 1


# ResNets are heavy on a shared CPU: full sizes at batch 1, batch 4 on a small input
# (both depths share strides and heads, so the shapes follow the same code path).
@pytest.mark.parametrize("name,size,batch", [
    ("resnet18_sad", (288, 800), 1), ("resnet18_sad", (368, 640), 1), ("resnet34_sad", (288, 800), 1),
    ("resnet18_sad", (64, 128), 4), ("resnet34_sad", (96, 160), 4),
])
def test_resnet_output_shapes(name, size, batch):
    model = build_model(name, num_lanes=4, input_size=size).eval()
    with torch.no_grad():
        seg, exist = model(torch.randn(batch, 3, *size))
    assert seg.shape == (batch, 5, *size)
    assert exist.shape == (batch, 4)
    assert exist.min() >= 0 and exist.max() <= 1


def test_lane_count_sets_output_channels():
    model = build_model("enet_sad", num_lanes=6, input_size=(64, 128)).eval()
    with torch.no_grad():
        seg, exist = model(torch.randn(2, 3, 64, 128))
    assert seg.shape[1] == 7 and exist.shape == (2, 6)


@pytest.mark.parametrize("name,tolerance", [("enet_sad", 0.15), ("resnet18_sad", 0.10), ("resnet34_sad", 0.10)])
def test_parameter_count_near_paper(name, tolerance):
    params = count_params(build_model(name, num_lanes=4, input_size=(288, 800)))
    assert abs(params - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < tolerance, params


def test_enet_weight_sharing_modes():
    shared = {mode: count_params(build_model("enet_sad", share_weights=mode)) for mode in ("e2_e3_e4", "e3_e4", "none")}
    assert shared["e2_e3_e4"] < shared["e3_e4"] < shared["none"]
    body = shared["none"] - shared["e3_e4"]
    assert shared["e3_e4"] - shared["e2_e3_e4"] == body  # each mode adds exactly one 8-bottleneck body
    with pytest.raises(ValueError, match="share_weights"):
        build_model("enet_sad", share_weights="all")


def test_existence_fc_sized_from_configured_input():
    model = build_model("enet_sad", input_size=(288, 800))
    assert model.exist.fc1.in_features == 5 * 18 * 50
    assert model.exist.fc1.weight.numel() == 5 * 18 * 50 * 128


def test_other_input_sizes_pool_onto_configured_grid():
    model = build_model("enet_sad", input_size=(64, 128)).eval()
    with torch.no_grad():
        seg, exist = model(torch.randn(2, 3, 96, 160))
    assert seg.shape == (2, 5, 96, 160) and exist.shape == (2, 4)


@pytest.mark.parametrize("shape,match", [((1, 1, 64, 128), r"\[N, 3, H, W\]"), ((1, 3, 72, 128), "divisible by 16")])
def test_forward_rejects_bad_input(shape, match):
    model = build_model("enet_sad", input_size=(64, 128)).eval()
    with pytest.raises(ValueError, match=match):
        model(torch.zeros(shape))


@pytest.mark.parametrize("name", ["enet_sad", "resnet18_sad", "resnet34_sad"])
def test_attention_blocks_and_identical_inference_outputs(name):
    torch.manual_seed(0)
    model = build_model(name, input_size=(64, 128)).eval()
    x = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        seg, exist = model(x)
        seg_a, exist_a, blocks = model(x, with_attention=True)
    assert torch.equal(seg, seg_a) and torch.equal(exist, exist_a)
    assert len(blocks) == 4
    assert blocks[0].shape[-2:] == (16, 32)  # 1/4 scale
    assert all(b.shape[-2:] == (8, 16) for b in blocks[1:])  # 1/8 scale


@pytest.mark.parametrize("name", ["enet_sad", "resnet18_sad"])
def test_inference_forward_runs_no_extra_modules(name):
    model = build_model(name, input_size=(64, 128)).eval()
    calls: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: calls.append(n)) for n, m in model.named_modules()]
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        model(x)
        plain = list(calls)
        calls.clear()
        model(x, with_attention=True)
    for hook in hooks:
        hook.remove()
    assert plain == calls


def test_enet_blocks_carry_gradients_in_training():
    model = build_model("enet_sad", input_size=(64, 128)).train()
    _, _, blocks = model(torch.randn(2, 3, 64, 128), with_attention=True)
    assert [b.shape[1] for b in blocks] == [64, 128, 128, 128]
    assert all(b.requires_grad for b in blocks)


def test_export_unpooling_matches_torch_max_unpool():
    x = torch.randn(2, 8, 12, 20)
    pooled, indices = torch.nn.functional.max_pool2d(x, 2, stride=2, return_indices=True)
    expected = torch.nn.functional.max_unpool2d(pooled, indices, 2, output_size=(12, 20))
    assert torch.equal(scatter_unpool(pooled, indices, (12, 20)), expected)
    assert torch.equal(max_unpool(pooled, indices, (12, 20)), expected)


@pytest.mark.parametrize("name", ["enet_sad", "resnet18_sad"])
def test_existence_of_a_confident_slot_stays_below_one_under_autocast(name):
    # In bfloat16 (float16: from 8.32) a sigmoid of 12 rounds to exactly 1.0; the training loss then
    # read a confident wrong slot as -log(0), clamped to 100, with no gradient (on the GPU's float16
    # under GradScaler: NaN, the step skipped). The existence sigmoid runs in float32.
    model = build_model(name, input_size=(144, 400)).train()
    with torch.no_grad():
        model.exist.fc2.weight.zero_()
        model.exist.fc2.bias.fill_(12.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, exist = model(torch.randn(2, 3, 144, 400))
    loss = torch.nn.functional.binary_cross_entropy(exist.float(), torch.zeros(exist.shape))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(12.0, abs=0.01)  # 100 with the sigmoid in bfloat16
    grad = model.exist.fc2.bias.grad
    assert torch.isfinite(grad).all() and float(grad.abs().min()) > 0.2  # 0 with it in bfloat16
    assert exist.dtype == torch.float32 and float(exist.detach().max()) < 1.0


def test_existence_gradient_stays_finite_for_a_half_head_under_a_loss_scale():
    # The GPU's float16 path: with the sigmoid in float16 this gradient was NaN (inf * 0), and
    # GradScaler skipped the step and halved its scale.
    head = ExistenceHead(8, 4, (64, 128)).half()
    with torch.no_grad():
        head.fc2.weight.zero_()
        head.fc2.bias.copy_(torch.tensor([12.0, 2.0, -3.0, 0.0]))
    exist = head(torch.randn(2, 8, 8, 16, dtype=torch.float16))
    (torch.nn.functional.binary_cross_entropy(exist.float(), torch.zeros(exist.shape)) * 65536.0).backward()
    assert torch.isfinite(head.fc2.bias.grad).all()
    assert exist.dtype == torch.float32 and float(exist.detach().max()) < 1.0
