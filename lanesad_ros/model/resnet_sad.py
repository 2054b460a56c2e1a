"""ResNet-18-SAD and ResNet-34-SAD: dilated ResNet backbones (output stride 8) with the SAD heads.

The backbone is the standard ResNet with BasicBlocks (written here, no torchvision); layer3
and layer4 keep the 1/8 resolution and dilate by 2 and 4 instead of striding. Heads: a 3x3
conv 512 -> 128 (BN, ReLU), a 1x1 classifier to lanes + 1 classes at 1/8 scale, bilinearly
upsampled x8 to input size, and the existence branch of ENet-SAD on the 128-channel
features. The four stages (layer1..layer4) are the blocks used for distillation.
Parameters at 288x800 with 4 lanes: 12.35 M (ResNet-18, paper 12.41 M) and 22.46 M
(ResNet-34, paper 22.72 M).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lanesad_ros.model.common import ExistenceHead, check_config, check_input
from lanesad_ros.model.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1, dilation: int = 1, first_dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=first_dilation,
                               dilation=first_dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


def _layer(in_channels: int, channels: int, blocks: int, stride: int, dilation: int,
           previous_dilation: int) -> nn.Sequential:
    """A ResNet stage; as in torchvision's dilated variant, its first block keeps the previous dilation."""
    layers = [BasicBlock(in_channels, channels, stride=stride, dilation=dilation, first_dilation=previous_dilation)]
    layers += [BasicBlock(channels, channels, dilation=dilation, first_dilation=dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNetSAD(nn.Module):
    """ResNet-SAD. ``forward(x)`` -> (seg_logits [B, L+1, H, W], exist_prob [B, L]).

    ``forward(x, with_attention=True)`` also returns the four stage outputs (64 ch at 1/4,
    128, 256 and 512 ch at 1/8) for the distillation loss; the plain forward computes
    exactly the same layers and nothing more.
    """

    def __init__(self, name: str, depths: tuple[int, int, int, int], num_lanes: int = 4,
                 input_size: tuple[int, int] = (288, 800), head_channels: int = 128):
        super().__init__()
        self.name = name
        self.num_lanes, self.input_size = check_config(num_lanes, input_size)
        self.options = {} if head_channels == 128 else {"head_channels": head_channels}
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.layer1 = _layer(64, 64, depths[0], stride=1, dilation=1, previous_dilation=1)
        self.layer2 = _layer(64, 128, depths[1], stride=2, dilation=1, previous_dilation=1)
        self.layer3 = _layer(128, 256, depths[2], stride=1, dilation=2, previous_dilation=1)
        self.layer4 = _layer(256, 512, depths[3], stride=1, dilation=4, previous_dilation=2)
        self.head = nn.Sequential(
            nn.Conv2d(512, head_channels, 3, padding=1, bias=False), nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
        )
        self.classifier = nn.Conv2d(head_channels, num_lanes + 1, 1)
        self.exist = ExistenceHead(head_channels, num_lanes, self.input_size)

    def forward(self, x: torch.Tensor, with_attention: bool = False):
        check_input(x)
        s1 = self.layer1(self.stem(x))
        s2 = self.layer2(s1)
        s3 = self.layer3(s2)
        s4 = self.layer4(s3)
        features = self.head(s4)
        # Output stride 8 and inputs divisible by 16, so x8 lands exactly on the input size.
        seg_logits = F.interpolate(self.classifier(features), scale_factor=8, mode="bilinear", align_corners=False)
        exist_prob = self.exist(features)
        if with_attention:
            return seg_logits, exist_prob, [s1, s2, s3, s4]
        return seg_logits, exist_prob


@register_model("resnet18_sad")
def resnet18_sad(num_lanes: int = 4, input_size: tuple[int, int] = (288, 800), **options) -> ResNetSAD:
    return ResNetSAD("resnet18_sad", (2, 2, 2, 2), num_lanes=num_lanes, input_size=input_size, **options)


@register_model("resnet34_sad")
def resnet34_sad(num_lanes: int = 4, input_size: tuple[int, int] = (288, 800), **options) -> ResNetSAD:
    return ResNetSAD("resnet34_sad", (3, 4, 6, 3), num_lanes=num_lanes, input_size=input_size, **options)
