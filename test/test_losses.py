"""AT-GEN, the distillation loss and the SAD training loss."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lanesad_ros.model import build_model
from lanesad_ros.model.attention import attention_map, default_pairs, distillation_loss
from lanesad_ros.model.losses import SADLoss, soft_iou_loss


def _softmax_map(energy: torch.Tensor) -> torch.Tensor:
    b, h, w = energy.shape
    return F.softmax(energy.reshape(b, -1), dim=1).view(b, h, w)


def test_attention_map_sums_to_one_over_positions():
    maps = attention_map(torch.randn(3, 16, 9, 20))
    assert maps.shape == (3, 9, 20)
    assert torch.allclose(maps.sum(dim=(1, 2)), torch.ones(3), atol=1e-6)
    resized = attention_map(torch.randn(2, 8, 16, 32), size=(8, 16))
    assert resized.shape == (2, 8, 16)
    assert torch.allclose(resized.sum(dim=(1, 2)), torch.ones(2), atol=1e-6)


def test_attention_map_invariant_to_channel_order():
    block = torch.randn(2, 32, 8, 12)
    permuted = block[:, torch.randperm(32)]
    assert torch.allclose(attention_map(block), attention_map(permuted), atol=1e-7)


def test_attention_map_uses_squared_activations():
    torch.manual_seed(0)
    block = torch.randn(2, 4, 6, 5) * 0.5
    expected = _softmax_map(block.pow(2).sum(1))
    abs_variant = _softmax_map(block.abs().sum(1))
    max_variant = _softmax_map(block.abs().amax(1))
    got = attention_map(block)
    assert torch.allclose(got, expected, atol=1e-7)
    assert not torch.allclose(got, abs_variant, atol=1e-4)
    assert not torch.allclose(got, max_variant, atol=1e-4)


def test_attention_map_resizes_energy_bilinearly_before_softmax():
    block = torch.randn(1, 3, 8, 8)
    energy = block.pow(2).sum(1, keepdim=True)
    expected = _softmax_map(F.interpolate(energy, size=(4, 4), mode="bilinear", align_corners=False)[:, 0])
    assert torch.allclose(attention_map(block, size=(4, 4)), expected, atol=1e-7)


def test_attention_map_rejects_non_4d():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        attention_map(torch.randn(3, 8, 8))


def test_default_pairs_are_successive():
    assert default_pairs(4) == [(0, 1), (1, 2), (2, 3)]


def test_distillation_zero_for_identical_maps():
    block = torch.randn(2, 8, 6, 10)
    assert distillation_loss([block, block.clone(), block.clone()]).item() == 0.0


def test_distillation_positive_for_different_maps_and_resizes_to_target():
    torch.manual_seed(0)
    shallow = torch.randn(2, 8, 12, 20)  # 1/4 scale
    deep = torch.randn(2, 16, 6, 10)  # 1/8 scale
    loss = distillation_loss([shallow, deep])
    assert loss.item() > 0
    expected = F.mse_loss(attention_map(shallow, size=(6, 10)), attention_map(deep))
    assert torch.allclose(loss, expected)


def test_distillation_sums_over_pairs():
    blocks = [torch.randn(1, 4, 6, 6) for _ in range(3)]
    total = distillation_loss(blocks, pairs=[(0, 1), (1, 2)])
    parts = distillation_loss(blocks, pairs=[(0, 1)]) + distillation_loss(blocks, pairs=[(1, 2)])
    assert torch.allclose(total, parts)
    with pytest.raises(ValueError, match="out of range"):
        distillation_loss(blocks, pairs=[(2, 3)])


def test_no_gradient_reaches_the_target_block():
    student = torch.randn(2, 8, 6, 10, requires_grad=True)
    target = torch.randn(2, 8, 6, 10, requires_grad=True)
    distillation_loss([student, target]).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert target.grad is None


def _batch(lanes: int = 4, size=(64, 128), batch: int = 2, seed: int = 0):
    """A fixed batch whose lanes are slanted stripes, so the segmentation target has structure."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    seg = torch.zeros(batch, h, w, dtype=torch.long)
    rows = torch.arange(h)
    for b in range(batch):
        for k in range(1, lanes + 1):
            x0 = int(torch.randint(0, w, (1,), generator=g))
            cols = (x0 + (rows - h // 2) * (k - 2.5) * 0.3).long().clamp(0, w - 3)
            for dx in range(3):
                seg[b, rows, cols + dx] = k
    image = torch.randn(batch, 3, h, w, generator=g) * 0.2 + (seg > 0).float().unsqueeze(1)
    exist = torch.ones(batch, lanes)
    return image, seg, exist


def test_total_is_the_weighted_sum_of_parts():
    torch.manual_seed(0)
    model = build_model("enet_sad", input_size=(64, 128))
    image, seg, exist = _batch()
    outputs = model(image, with_attention=True)
    total, parts = SADLoss()(outputs, seg, exist, use_sad=True)
    assert set(parts) == {"seg", "iou", "exist", "distill"}
    expected = parts["seg"] + 0.1 * parts["iou"] + 0.1 * parts["exist"] + 0.1 * parts["distill"]
    assert torch.allclose(total, expected)
    assert parts["distill"] > 0
    custom, cparts = SADLoss(iou_weight=0.5, exist_weight=2.0, distill_weight=3.0)(outputs, seg, exist, use_sad=True)
    assert torch.allclose(custom, cparts["seg"] + 0.5 * cparts["iou"] + 2.0 * cparts["exist"] + 3.0 * cparts["distill"])


def test_without_sad_distill_is_zero_and_blocks_are_not_touched():
    seg_logits = torch.randn(2, 5, 16, 32, requires_grad=True)
    exist_prob = torch.rand(2, 4)
    seg = torch.randint(0, 5, (2, 16, 32))
    exist = torch.ones(2, 4)
    loss = SADLoss()
    total2, parts2 = loss((seg_logits, exist_prob), seg, exist, use_sad=False)
    total3, parts3 = loss((seg_logits, exist_prob, None), seg, exist, use_sad=False)  # None would fail if used
    assert parts2["distill"].item() == 0.0 and parts3["distill"].item() == 0.0
    assert torch.equal(total2, total3)
    with pytest.raises(ValueError, match="with_attention=True"):
        loss((seg_logits, exist_prob), seg, exist, use_sad=True)


def test_background_weight_applies_to_class_zero():
    seg_logits = torch.randn(2, 5, 8, 8)
    seg = torch.randint(0, 5, (2, 8, 8))
    exist_prob, exist = torch.rand(2, 4), torch.ones(2, 4)
    w = torch.tensor([0.4, 1, 1, 1, 1])
    _, parts = SADLoss()((seg_logits, exist_prob), seg, exist)
    assert torch.allclose(parts["seg"], F.cross_entropy(seg_logits, seg, weight=w))
    _, parts1 = SADLoss(bg_weight=1.0)((seg_logits, exist_prob), seg, exist)
    assert torch.allclose(parts1["seg"], F.cross_entropy(seg_logits, seg))
    assert torch.allclose(parts["exist"], F.binary_cross_entropy(exist_prob, exist))


def test_soft_iou_loss_bounds():
    seg = torch.randint(0, 5, (2, 16, 16))
    perfect = F.one_hot(seg, 5).permute(0, 3, 1, 2).float() * 100.0
    assert soft_iou_loss(perfect, seg).item() < 1e-4
    wrong = F.one_hot((seg + 1) % 5, 5).permute(0, 3, 1, 2).float() * 100.0
    assert soft_iou_loss(wrong, seg).item() > 0.999


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="seg_target"):
        SADLoss()((torch.randn(2, 5, 8, 8), torch.rand(2, 4)), torch.zeros(2, 8, 9, dtype=torch.long), torch.ones(2, 4))


@pytest.mark.parametrize("name,use_sad", [("enet_sad", True), ("resnet18_sad", False)])
def test_a_few_sgd_steps_lower_the_total_loss(name, use_sad):
    torch.manual_seed(0)
    model = build_model(name, input_size=(32, 64)).train()
    image, seg, exist = _batch(size=(32, 64))
    loss_fn = SADLoss()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    losses = []
    for _ in range(12):
        total, _ = loss_fn(model(image, with_attention=use_sad), seg, exist, use_sad=use_sad)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        losses.append(total.item())
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses
