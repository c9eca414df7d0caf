"""What a model costs: parameters and multiply-accumulates at its evaluation input size.

GMACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one image and halved:
PyTorch counts a multiply-accumulate as two FLOPs, while model cards (and the TinySaver paper)
quote MACs. Costs are counted on the model's ``meta`` skeleton (``workers.models.skeleton``):
no weights, a fraction of a second, and attention's matrix products counted the same way for every
model (on the CPU, the fused attention kernel escapes the counter: vit_base_patch16_224 would read
16.85 instead of 17.56 GMACs; timm's model cards, counted with fvcore, also leave them out).
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
    """Counts on the model's device; on the ``meta`` device no weights or compute are needed."""
    params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *input_size, device=device))
    channels, height, width = input_size
    return Profile(params / 1e6, counter.get_total_flops() / 2 / 1e9, (channels, height, width))
