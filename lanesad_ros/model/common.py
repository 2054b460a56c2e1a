"""Pieces shared by the ENet-SAD and ResNet-SAD networks: input checks and the existence head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Spatial sizes must survive four halvings (ENet pools to 1/8, the existence head to 1/16).
SIZE_MULTIPLE = 16


def check_config(num_lanes: int, input_size) -> tuple[int, tuple[int, int]]:
    """Validate (num_lanes, input_size) of a model; returns them normalised."""
    if isinstance(num_lanes, bool) or not isinstance(num_lanes, int) or num_lanes < 1:
        raise ValueError(f"num_lanes must be a positive int, got {num_lanes!r}")
    try:
        height, width = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (height, width), got {input_size!r}") from None
    if height <= 0 or width <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ValueError(
            f"input_size (height, width) must be positive and divisible by {SIZE_MULTIPLE}, got {input_size!r}"
        )
    return num_lanes, (height, width)


def check_input(x: torch.Tensor) -> None:
    """Reject an input batch the network cannot process, with a readable message."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an image batch of shape [N, 3, H, W], got {tuple(x.shape)}")
    if x.shape[2] % SIZE_MULTIPLE or x.shape[3] % SIZE_MULTIPLE:
        raise ValueError(f"input height and width must be divisible by {SIZE_MULTIPLE}, got {tuple(x.shape[2:])}")


class ExistenceHead(nn.Module):
    """Lane-existence branch: 1x1 conv to 5 ch, softmax, 2x2 average pool, FC 128, ReLU, FC, sigmoid.

    The first FC has 5 * (H/16) * (W/16) * 128 weights for the configured input size
    (H, W), as in the paper. Inputs of any other size (divisible by 16) are average-pooled
    adaptively onto that same (H/16, W/16) grid, so one set of weights serves every size;
    at the configured size this is exactly the paper's 2x2 average pool.

    Output: (N, L) probabilities, float32 whatever dtype the network runs in. The sigmoid runs in
    float32: in float16 (AMP, a half model) it rounds to exactly 1.0 from a logit of 8.32 (bfloat16:
    6.25), and the training loss then read a confident wrong slot as ``-log(0)``, clamped to 100,
    with no usable gradient (0 in bfloat16; under float16 and GradScaler inf * 0 = NaN, so the step
    is skipped and the loss scale halved; docs/recipe-studies.md, "AMP and the existence head"). In
    float32 that happens only from a logit of 16.6.
    """

    def __init__(self, in_channels: int, num_lanes: int, input_size: tuple[int, int], hidden: int = 128):
        super().__init__()
        self.grid = (input_size[0] // SIZE_MULTIPLE, input_size[1] // SIZE_MULTIPLE)
        self.conv = nn.Conv2d(in_channels, 5, kernel_size=1)
        self.fc1 = nn.Linear(5 * self.grid[0] * self.grid[1], hidden)
        self.fc2 = nn.Linear(hidden, num_lanes)

    def load_resampled(self, other: ExistenceHead) -> None:
        """Take ``other``'s weights though it was built for another input size (fine-tuning at a new size).

        ``other`` run at this head's input size pools the features adaptively onto its own grid
        before its first FC. That pooling is linear, so it folds into the FC: the new weights are
        ``W_other @ P`` with P the (other grid x this grid) adaptive-average-pooling matrix. The
        head then starts out computing what ``other`` computes at this size, and learns from there.
        """
        cells = self.grid[0] * self.grid[1]
        basis = torch.eye(cells, dtype=other.fc1.weight.dtype).reshape(cells, 1, *self.grid)
        pool = F.adaptive_avg_pool2d(basis, other.grid).reshape(cells, -1).T  # (other cells, cells)
        hidden = other.fc1.weight.shape[0]
        weight = other.fc1.weight.detach().reshape(hidden, 5, -1) @ pool
        with torch.no_grad():
            self.conv.load_state_dict(other.conv.state_dict())
            self.fc1.weight.copy_(weight.reshape(hidden, -1))
            self.fc1.bias.copy_(other.fc1.bias)
            self.fc2.load_state_dict(other.fc2.state_dict())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        y = F.softmax(self.conv(features), dim=1)
        if (y.shape[2], y.shape[3]) == (2 * self.grid[0], 2 * self.grid[1]):
            y = F.avg_pool2d(y, 2)
        else:
            y = F.adaptive_avg_pool2d(y, self.grid)
        y = F.relu(self.fc1(y.flatten(1)))
        logits = self.fc2(y)
        if logits.dtype != torch.float32:  # a cast only outside float32: the fp32 ONNX graph is unchanged
            logits = logits.float()
        return torch.sigmoid(logits)
