"""What every export format shares: the input and output names and the example input."""

from __future__ import annotations

from collections.abc import Callable

import torch

from anas.nn.static import StaticNet

INPUT_NAME, OUTPUT_NAME = "input", "logits"
EXPORT_BATCH = 2  # batch of the example input used for tracing / torch.export
Forward = Callable[[torch.Tensor], torch.Tensor]


def example_input(net: StaticNet) -> torch.Tensor:
    return torch.zeros(EXPORT_BATCH, net.first_conv.conv.in_channels, net.resolution, net.resolution)
