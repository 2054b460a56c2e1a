"""The SAD training loss: L = L_seg + a * L_IoU + b * L_exist + c * L_distill (a = b = c = 0.1)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lanesad_ros.model.attention import distillation_loss


class SADLoss(nn.Module):
    """Segmentation CE (background weighted ``bg_weight``), soft-IoU, existence BCE, distillation.

    ``loss(outputs, seg_target, exist_target, use_sad)`` with ``outputs`` the model's
    (seg_logits, exist_prob[, blocks]) -> (total, {"seg", "iou", "exist", "distill"}).
    The parts are detached (for logging); only ``total`` carries gradients. With
    ``use_sad=False`` the distillation term is 0 and not computed, and ``outputs`` may be
    the 2-tuple of the inference forward. All terms are computed in float32, outside any
    autocast region (BCE on probabilities is not autocast-safe).
    """

    def __init__(self, bg_weight: float = 0.4, iou_weight: float = 0.1, exist_weight: float = 0.1,
                 distill_weight: float = 0.1, distill_pairs: Sequence[tuple[int, int]] | None = None):
        super().__init__()
        self.bg_weight = float(bg_weight)
        self.iou_weight = float(iou_weight)
        self.exist_weight = float(exist_weight)
        self.distill_weight = float(distill_weight)
        self.distill_pairs = None if distill_pairs is None else [tuple(p) for p in distill_pairs]

    def forward(self, outputs, seg_target: torch.Tensor, exist_target: torch.Tensor, use_sad: bool = False):
        if len(outputs) not in (2, 3):
            raise ValueError("outputs must be (seg_logits, exist_prob) or (seg_logits, exist_prob, blocks)")
        seg_logits, exist_prob = outputs[0], outputs[1]
        if use_sad and len(outputs) != 3:
            raise ValueError("use_sad=True needs the block outputs: call the model with with_attention=True")
        if seg_target.shape != (seg_logits.shape[0], *seg_logits.shape[2:]):
            raise ValueError(f"seg_target shape {tuple(seg_target.shape)} "
                             f"does not match logits {tuple(seg_logits.shape)}")
        if exist_target.shape != exist_prob.shape:
            raise ValueError(f"exist_target shape {tuple(exist_target.shape)} does not match {tuple(exist_prob.shape)}")
        with torch.autocast(device_type=seg_logits.device.type, enabled=False):
            logits = seg_logits.float()
            classes = logits.shape[1]
            weight = torch.ones(classes, device=logits.device)
            weight[0] = self.bg_weight
            seg = F.cross_entropy(logits, seg_target, weight=weight)
            iou = soft_iou_loss(logits, seg_target)
            exist = F.binary_cross_entropy(exist_prob.float(), exist_target.float())
            if use_sad:
                distill = distillation_loss(outputs[2], self.distill_pairs)
            else:
                distill = logits.new_zeros(())
            total = seg + self.iou_weight * iou + self.exist_weight * exist
            if use_sad:
                total = total + self.distill_weight * distill
        parts = {"seg": seg.detach(), "iou": iou.detach(), "exist": exist.detach(), "distill": distill.detach()}
        return total, parts


def soft_iou_loss(seg_logits: torch.Tensor, seg_target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - mean soft IoU of the lane classes (1..L) over batch and classes; background ignored.

    Soft IoU per sample and class = sum(p * t) / sum(p + t - p * t), with p the softmax
    probability and t the one-hot target, as in the reference implementation.
    """
    probs = F.softmax(seg_logits, dim=1)[:, 1:]
    onehot = F.one_hot(seg_target, seg_logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
    inter = (probs * onehot).flatten(2).sum(2)
    union = (probs + onehot - probs * onehot).flatten(2).sum(2)
    return 1.0 - (inter / (union + eps)).mean()
