"""What a model costs: parameters and multiply-accumulates at its evaluation input size.

GMACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one image and halved:
PyTorch counts a multiply-accumulate as two FLOPs, while model cards (and the TinySaver paper)
quote MACs. Measured throughput per device type comes with the evaluation engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Profile:
    params_m: float  # millions of parameters
    gmacs: float  # per image, at ``input_size``
    input_size: tuple[int, int, int]


def profile(model: torch.nn.Module, input_size: tuple[int, int, int]) -> Profile:
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *input_size))
    return Profile(params / 1e6, counter.get_total_flops() / 2 / 1e9, tuple(input_size))
