"""ENet-SAD (Hou et al., ICCV 2019): ENet with four encoder blocks E1..E4 for self attention distillation.

Layout (see ../shared/docs/sad-method.md):
- E1: initial block + stage 1 (downsampling + 4 regular bottlenecks), 64 ch at 1/4.
- E2: downsampling bottleneck to 128 ch at 1/8, then the stage body (regular, dilated 2,
  asymmetric 5x1+1x5, dilated 4, regular, dilated 8, asymmetric, dilated 16).
- E3, E4: the same stage body again, without downsampling. By default E4 reuses E3's body
  weights ("e3_e4"): 0.962 M parameters at 288x800 with 4 lanes, 1.8 % from the paper's
  0.98 M. The widely used PyTorch port shares one body across E2, E3 and E4 ("e2_e3_e4",
  0.817 M, 17 % below the paper); "none" gives every block its own weights (1.106 M).
- Decoder on E3 and E4 concatenated (256 ch): two upsampling stages that unpool with the
  encoder's max-pool indices, then a transposed conv to input size with lanes + 1 classes.
- Existence branch on E4 (:class:`~lanesad_ros.model.common.ExistenceHead`).
PReLU in the encoder, ReLU in the decoder, spatial dropout 0.01 in stage 1 and 0.1 later.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lanesad_ros.model.common import ExistenceHead, check_config, check_input
from lanesad_ros.model.registry import register_model


def _conv_bn_act(conv: nn.Module, channels: int, act: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(channels), act())


def max_unpool(x: torch.Tensor, indices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Place each value of ``x`` at its max-pool index in a zero map of spatial ``size``.

    Eager mode uses ``F.max_unpool2d`` (the faster kernel); during ONNX export the same
    operation is written as :func:`scatter_unpool`, which exports with a dynamic batch.
    """
    if torch.onnx.is_in_onnx_export():
        return scatter_unpool(x, indices, size)
    return F.max_unpool2d(x, indices, 2, output_size=size)


def scatter_unpool(x: torch.Tensor, indices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Max-unpooling as a scatter over each channel's flattened plane (ONNX ScatterElements)."""
    n, c = x.shape[0], x.shape[1]
    out = x.new_zeros((n, c, size[0] * size[1]))
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(n, c, size[0], size[1])


class InitialBlock(nn.Module):
    """3x3 stride-2 conv (out - 3 ch) beside a 3x3 stride-2 max pool of the image, concatenated."""

    def __init__(self, out_channels: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(3, out_channels - 3, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat((self.conv(x), F.max_pool2d(x, 3, stride=2, padding=1)), dim=1)
        return self.act(self.bn(out))


class RegularBottleneck(nn.Module):
    """Residual bottleneck: 1x1 projection, 3x3 (regular/dilated) or 5x1+1x5 conv, 1x1 expansion."""

    def __init__(self, channels: int, dilation: int = 1, asymmetric: bool = False, dropout: float = 0.1,
                 act: type[nn.Module] = nn.PReLU, ratio: int = 4):
        super().__init__()
        inner = channels // ratio
        self.project = _conv_bn_act(nn.Conv2d(channels, inner, 1, bias=False), inner, act)
        if asymmetric:
            self.conv = nn.Sequential(
                _conv_bn_act(nn.Conv2d(inner, inner, (5, 1), padding=(2, 0), bias=False), inner, act),
                _conv_bn_act(nn.Conv2d(inner, inner, (1, 5), padding=(0, 2), bias=False), inner, act),
            )
        else:
            self.conv = _conv_bn_act(
                nn.Conv2d(inner, inner, 3, padding=dilation, dilation=dilation, bias=False), inner, act
            )
        self.expand = _conv_bn_act(nn.Conv2d(inner, channels, 1, bias=False), channels, act)
        self.dropout = nn.Dropout2d(dropout)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.dropout(self.expand(self.conv(self.project(x)))))


class DownsamplingBottleneck(nn.Module):
    """Halves the resolution: 2x2 max pool (indices kept for the decoder) + strided conv branch."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, ratio: int = 4):
        super().__init__()
        inner = in_channels // ratio
        self.extra_channels = out_channels - in_channels
        self.project = _conv_bn_act(nn.Conv2d(in_channels, inner, 2, stride=2, bias=False), inner, nn.PReLU)
        self.conv = _conv_bn_act(nn.Conv2d(inner, inner, 3, padding=1, bias=False), inner, nn.PReLU)
        self.expand = _conv_bn_act(nn.Conv2d(inner, out_channels, 1, bias=False), out_channels, nn.PReLU)
        self.dropout = nn.Dropout2d(dropout)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        main, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)
        main = F.pad(main, (0, 0, 0, 0, 0, self.extra_channels))  # zero channels up to out_channels
        ext = self.dropout(self.expand(self.conv(self.project(x))))
        return self.act(main + ext), indices


class UpsamplingBottleneck(nn.Module):
    """Doubles the resolution: 1x1 conv + max-unpool with the encoder's indices, beside a transposed-conv branch."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.1, ratio: int = 4):
        super().__init__()
        inner = in_channels // ratio
        self.main = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.project = _conv_bn_act(nn.Conv2d(in_channels, inner, 1, bias=False), inner, nn.ReLU)
        self.tconv = _conv_bn_act(nn.ConvTranspose2d(inner, inner, 2, stride=2, bias=False), inner, nn.ReLU)
        self.expand = _conv_bn_act(nn.Conv2d(inner, out_channels, 1, bias=False), out_channels, nn.ReLU)
        self.dropout = nn.Dropout2d(dropout)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        size = (2 * x.shape[2], 2 * x.shape[3])
        main = max_unpool(self.main(x), indices, size)
        ext = self.dropout(self.expand(self.tconv(self.project(x))))
        return self.act(main + ext)


def _stage_body(dropout: float = 0.1) -> nn.Sequential:
    """The 8 bottlenecks of ENet stage 2/3.

    In order: regular, dilated 2, asym 5, dilated 4, regular, dilated 8, asym 5, dilated 16.
    """
    return nn.Sequential(
        RegularBottleneck(128, dropout=dropout),
        RegularBottleneck(128, dilation=2, dropout=dropout),
        RegularBottleneck(128, asymmetric=True, dropout=dropout),
        RegularBottleneck(128, dilation=4, dropout=dropout),
        RegularBottleneck(128, dropout=dropout),
        RegularBottleneck(128, dilation=8, dropout=dropout),
        RegularBottleneck(128, asymmetric=True, dropout=dropout),
        RegularBottleneck(128, dilation=16, dropout=dropout),
    )


SHARE_MODES = {"e3_e4": (0, 1, 1), "e2_e3_e4": (0, 0, 0), "none": (0, 1, 2)}


class ENetSAD(nn.Module):
    """ENet-SAD. ``forward(x)`` -> (seg_logits [B, L+1, H, W], exist_prob [B, L]).

    ``forward(x, with_attention=True)`` also returns the raw block outputs [E1, E2, E3, E4]
    (E1 at 1/4, the others at 1/8 of the input) for the distillation loss; the plain
    forward runs exactly the same layers and nothing more. ``share_weights`` picks which
    of E2..E4 apply one set of body weights: "e3_e4" (default), "e2_e3_e4" or "none".
    Each distinct body is stored once (``bodies``), so the state dict has no aliases.
    """

    name = "enet_sad"

    def __init__(self, num_lanes: int = 4, input_size: tuple[int, int] = (288, 800), share_weights: str = "e3_e4"):
        super().__init__()
        if share_weights not in SHARE_MODES:
            raise ValueError(f"share_weights must be one of {', '.join(SHARE_MODES)}, got {share_weights!r}")
        self.num_lanes, self.input_size = check_config(num_lanes, input_size)
        self.options = {} if share_weights == "e3_e4" else {"share_weights": share_weights}
        self.initial = InitialBlock(16)
        self.down1 = DownsamplingBottleneck(16, 64, dropout=0.01)
        self.stage1 = nn.Sequential(*(RegularBottleneck(64, dropout=0.01) for _ in range(4)))
        self.down2 = DownsamplingBottleneck(64, 128, dropout=0.1)
        # Index into ``bodies`` of the body used by E2, E3, E4.
        self.body_index = SHARE_MODES[share_weights]
        self.bodies = nn.ModuleList(_stage_body() for _ in range(max(self.body_index) + 1))
        self.up1 = UpsamplingBottleneck(256, 64)
        self.decoder1 = nn.Sequential(
            RegularBottleneck(64, act=nn.ReLU), RegularBottleneck(64, act=nn.ReLU)
        )
        self.up2 = UpsamplingBottleneck(64, 16)
        self.decoder2 = RegularBottleneck(16, act=nn.ReLU)
        self.classifier = nn.ConvTranspose2d(
            16, num_lanes + 1, kernel_size=3, stride=2, padding=1, output_padding=1, bias=False
        )
        self.exist = ExistenceHead(128, num_lanes, self.input_size)

    def forward(self, x: torch.Tensor, with_attention: bool = False):
        check_input(x)
        x, indices1 = self.down1(self.initial(x))
        e1 = self.stage1(x)
        x, indices2 = self.down2(e1)
        e2 = self.bodies[self.body_index[0]](x)
        e3 = self.bodies[self.body_index[1]](e2)
        e4 = self.bodies[self.body_index[2]](e3)
        x = self.decoder1(self.up1(torch.cat((e3, e4), dim=1), indices2))
        x = self.decoder2(self.up2(x, indices1))
        seg_logits = self.classifier(x)
        exist_prob = self.exist(e4)
        if with_attention:
            return seg_logits, exist_prob, [e1, e2, e3, e4]
        return seg_logits, exist_prob


@register_model("enet_sad")
def enet_sad(num_lanes: int = 4, input_size: tuple[int, int] = (288, 800), **options) -> ENetSAD:
    return ENetSAD(num_lanes=num_lanes, input_size=input_size, **options)
