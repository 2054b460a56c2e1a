"""AT-GEN attention maps and the self attention distillation loss (training only).

Psi(A) = spatial_softmax(resize(sum_c |A_c|^2)): a block's activation energy per position,
normalised to a distribution over positions. Distillation makes each block's map mimic
the next (deeper) block's map, which acts as a fixed target.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def attention_map(block: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """AT-GEN of a block output [B, C, H, W] -> attention map [B, h, w] summing to 1 per sample.

    Sum over channels of |A|^2 (p = 2, the paper's best), bilinear resize to ``size``
    (h, w) when given and different, then a softmax over all h*w positions. Computed in
    float32, so squares of half-precision activations cannot overflow.
    """
    if block.dim() != 4:
        raise ValueError(f"attention_map expects a [B, C, H, W] block output, got shape {tuple(block.shape)}")
    energy = block.float().pow(2).sum(dim=1, keepdim=True)
    if size is not None and tuple(size) != tuple(energy.shape[-2:]):
        energy = F.interpolate(energy, size=tuple(size), mode="bilinear", align_corners=False)
    b, _, h, w = energy.shape
    return F.softmax(energy.view(b, h * w), dim=1).view(b, h, w)


def default_pairs(num_blocks: int) -> list[tuple[int, int]]:
    """Every successive pair (0, 1), (1, 2), ...: ENet E1->E2->E3->E4, ResNet stage to stage."""
    return [(m, m + 1) for m in range(num_blocks - 1)]


def distillation_loss(blocks: Sequence[torch.Tensor], pairs: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
    """Sum over (m, n) in ``pairs`` of MSE(Psi(A_m), Psi(A_n).detach()).

    The deeper block n is the target: it is detached, so no gradient reaches it through
    this loss. Following the paper's AT-GEN, the student map of block m is resized to the
    target's spatial size (ENet: E1's 1/4-scale map is bilinearly resized to the 1/8 scale
    of E2; the PyTorch port instead upsamples the smaller map). ``pairs`` defaults to every
    successive pair of ``blocks``.
    """
    if pairs is None:
        pairs = default_pairs(len(blocks))
    if not pairs:
        raise ValueError("distillation_loss needs at least one (student, target) block pair")
    total = None
    for m, n in pairs:
        if not (0 <= m < len(blocks) and 0 <= n < len(blocks)):
            raise ValueError(f"distillation pair {(m, n)} out of range for {len(blocks)} blocks")
        target = attention_map(blocks[n].detach())
        student = attention_map(blocks[m], size=tuple(target.shape[-2:]))
        term = F.mse_loss(student, target)
        total = term if total is None else total + term
    return total
