"""FPN segmentation head turning propagated tokens plus encoder shortcuts into id logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samtrack.models.deaot.layers import ConvGN


class FPNSegmentationHead(nn.Module):
    """Decoder from stride 16 to stride 4: ``out_dim`` logits (background + object slots)."""

    def __init__(self, in_dim: int, out_dim: int, decode_intermediate_input: bool, hidden_dim: int,
                 shortcut_dims: tuple[int, int, int, int], align_corners: bool) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.decode_intermediate_input = decode_intermediate_input
        self.conv_in = ConvGN(in_dim, hidden_dim, 1)
        self.conv_16x = ConvGN(hidden_dim, hidden_dim, 3)
        self.conv_8x = ConvGN(hidden_dim, hidden_dim // 2, 3)
        self.conv_4x = ConvGN(hidden_dim // 2, hidden_dim // 2, 3)
        self.adapter_16x = nn.Conv2d(shortcut_dims[-2], hidden_dim, 1)
        self.adapter_8x = nn.Conv2d(shortcut_dims[-3], hidden_dim, 1)
        self.adapter_4x = nn.Conv2d(shortcut_dims[-4], hidden_dim // 2, 1)
        self.conv_out = nn.Conv2d(hidden_dim // 2, out_dim, 1)

    def adapt_shortcuts(self, shortcuts: list[torch.Tensor]) -> list[torch.Tensor]:
        """The encoder's stride 4, 8 and 16 features through their 1x1 adapters: they depend on the
        frame only, so several engines decoding one frame share them."""
        return [self.adapter_4x(shortcuts[-4]), self.adapter_8x(shortcuts[-3]), self.adapter_16x(shortcuts[-2])]

    def forward(self, inputs: list[torch.Tensor], adapted: list[torch.Tensor]) -> torch.Tensor:
        """Logits from the stride-16 inputs and the :meth:`adapt_shortcuts` of the same frame."""
        x = torch.cat(inputs, dim=1) if self.decode_intermediate_input else inputs[-1]
        x = F.relu_(self.conv_in(x))
        x = F.relu_(self.conv_16x(adapted[2] + x))
        x = F.interpolate(x, size=adapted[1].shape[-2:], mode="bilinear", align_corners=self.align_corners)
        x = F.relu_(self.conv_8x(adapted[1] + x))
        x = F.interpolate(x, size=adapted[0].shape[-2:], mode="bilinear", align_corners=self.align_corners)
        x = F.relu_(self.conv_4x(adapted[0] + x))
        return self.conv_out(x)
