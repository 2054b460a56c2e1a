"""What the student of ``lanesad-train adapt`` learns from: the teacher's pass, label masks, the loss.

The loss is the SAD loss of ``lanesad_ros/model/losses.py`` (Hou et al. 2019, Sec. 3.2:
segmentation cross-entropy with background weight 0.4, 0.1 soft IoU, 0.1 existence BCE,
0.1 self attention distillation) with one change: pixels labelled ``IGNORE`` and
existence targets of weight 0 do not count, so what the teacher was unsure of is neither
taught as lane nor as background. ``l2sp_penalty`` is the L2-SP term of Li et al. (ICML
2018), which pulls the weights towards the base against forgetting.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lanesad_ros.data.dataset import default_line_width
from lanesad_ros.model.attention import distillation_loss
from lanesad_ros.model.weights import metadata_preprocessor
from lanesad_ros.postprocess import LaneDecoder, PostprocessConfig
from lanesad_ros.training.adapt.checks import Camera, FrameLabels

IGNORE = 255
UNCERTAIN_PROB = 0.15  # teacher lane probability above which an unlabelled pixel is ignored, not background
ABSENT_EXIST = 0.2  # teacher existence below which a slot is taught as absent


# --------------------------------------------------------------------------- teacher

@torch.no_grad()
def teacher_pass(model: torch.nn.Module, meta: dict, images, device: torch.device):
    """Clean-frame predictions: per frame (lanes with raw per-row maxima, existence (L,),
    uncertain-lane mask uint8 at network input size)."""
    pre = metadata_preprocessor(meta)
    config = PostprocessConfig(fit="none", rows="uniform", row_step=1.0, exist_threshold=0.3, prob_threshold=0.3,
                               min_points=4)
    decoder = LaneDecoder(pre, config, num_lanes=int(meta["num_lanes"]))
    was_training = model.training
    model.eval()
    out = []
    for image in images:
        x = torch.from_numpy(pre(image))[None].to(device)
        seg, exist = model(x)[:2]
        prob = torch.softmax(seg.float(), dim=1)[0].cpu().numpy()
        exist = exist.float()[0].cpu().numpy()
        size = (image.shape[1], image.shape[0])
        lanes = decoder.decode(prob, exist, size)
        uncertain = ((1.0 - prob[0]) > UNCERTAIN_PROB).astype(np.uint8)
        out.append((lanes, exist, uncertain))
    if was_training:
        model.train()
    return out


def label_mask(labels: FrameLabels, uncertain: np.ndarray, camera: Camera, meta: dict) -> tuple[np.ndarray, np.ndarray,
                                                                                                np.ndarray]:
    """Source-size class mask (0 background, k = slot k-1 + 1, 255 ignored), existence target
    and existence weight (0 = ignored) for one pseudo-labelled frame."""
    w, h = camera.size
    pre = metadata_preprocessor(meta)
    top = pre.crop_rows(h)
    mask = np.zeros((h, w), np.uint8)
    mask[top:] = cv2.resize(cv2.dilate(uncertain, np.ones((3, 3), np.uint8)), (w, h - top),
                            interpolation=cv2.INTER_NEAREST) * IGNORE
    width = max(2, int(round(default_line_width(pre.input_size[1]) * w / pre.input_size[1])))
    for lane in labels.accepted:
        pts = np.round(lane.label * 8).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(mask, [pts], False, int(lane.slot) + 1, width, cv2.LINE_8, 3)
    num = len(labels.exist_prob)
    exist = np.zeros(num, np.float32)
    weight = (labels.exist_prob < ABSENT_EXIST).astype(np.float32)
    for lane in labels.accepted:
        if 0 <= lane.slot < num:
            exist[lane.slot], weight[lane.slot] = 1.0, 1.0
    return mask, exist, weight


# --------------------------------------------------------------------------- loss

def adapt_loss(outputs, seg: torch.Tensor, exist: torch.Tensor, exist_weight: torch.Tensor, s,
               use_sad: bool) -> tuple[torch.Tensor, dict]:
    """SAD loss (seg CE with background weight + 0.1 soft IoU + 0.1 existence BCE + 0.1
    distillation, as ``model/losses.py``) with pixels labelled 255 and existence weights 0 ignored.
    ``s``: the AdaptSettings (loss weights).

    ``outputs``: the model's (seg_logits (N, L+1, H, W), exist_prob (N, L)[, blocks]); ``seg`` (N, H, W)
    int64; ``exist`` and ``exist_weight`` (N, L). Returns (total, detached parts as floats)."""
    logits = outputs[0].float()
    classes = logits.shape[1]
    weight = torch.ones(classes, device=logits.device)
    weight[0] = s.bg_weight
    ce = F.cross_entropy(logits, seg, weight=weight, ignore_index=IGNORE)
    valid = (seg != IGNORE).unsqueeze(1).float()
    probs = F.softmax(logits, dim=1)[:, 1:] * valid
    onehot = F.one_hot(torch.where(seg == IGNORE, 0, seg), classes).permute(0, 3, 1, 2)[:, 1:].float() * valid
    inter = (probs * onehot).flatten(2).sum(2)
    union = (probs + onehot - probs * onehot).flatten(2).sum(2)
    iou = 1.0 - (inter / (union + 1e-6)).mean()
    bce = F.binary_cross_entropy(outputs[1].float().clamp(1e-6, 1 - 1e-6), exist, reduction="none")
    ex = (bce * exist_weight).sum() / exist_weight.sum().clamp(min=1.0)
    total = ce + s.iou_weight * iou + s.exist_weight * ex
    distill = logits.new_zeros(())
    if use_sad:
        distill = distillation_loss(outputs[2])
        total = total + s.distill_weight * distill
    return total, {k: float(v.detach()) for k, v in (("seg", ce), ("iou", iou), ("exist", ex), ("distill", distill))}


def l2sp_penalty(model: torch.nn.Module, anchor: dict[str, torch.Tensor]) -> torch.Tensor:
    """sum ||w - w_base||^2 over the trainable parameters (L2-SP, Li et al. 2018)."""
    total = None
    for name, p in model.named_parameters():
        term = (p - anchor[name]).pow(2).sum()
        total = term if total is None else total + term
    return total
