"""The AOT / DeAOT network: image encoder, identity bank, propagation stack and FPN decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samtrack.models.deaot.config import VariantConfig
from samtrack.models.deaot.decoder import FPNSegmentationHead
from samtrack.models.deaot.encoders import MobileNetV2, ResNet50, fold_frozen_batch_norms
from samtrack.models.deaot.layers import map_to_seq, sine_position_embedding
from samtrack.models.deaot.transformer import DualBranchGPM, LongShortTermTransformer


def build_encoder(name: str) -> nn.Module:
    """The backbone named by a variant config."""
    if name == "mobilenetv2":
        return MobileNetV2(16)
    if name == "resnet50":
        return ResNet50()
    if name == "swin_base":
        from samtrack.models.deaot.swin import SwinB

        return SwinB()
    raise ValueError(f"unknown encoder {name!r}")


class AOTNetwork(nn.Module):
    """One AOT or DeAOT model; parameter names equal the official ``state_dict`` keys."""

    def __init__(self, cfg: VariantConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.encoder = build_encoder(cfg.encoder)
        # CNN backbones run channels-last, oneDNN's preferred layout (2-core CPU, 480p: DeAOT-T 0.51 ->
        # 0.45 s/frame, R50-DeAOT-L 1.10 -> 1.07; logits stay within 1.1e-5 of the official ones on
        # every parity case). Swin works on tokens.
        self.channels_last = cfg.encoder != "swin_base"
        if self.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
        self.encoder_projector = nn.Conv2d(cfg.encoder_dims[-1], d, kernel_size=1)
        if cfg.model == "deaot":
            self.LSTT: nn.Module = DualBranchGPM(cfg.num_layers, d, cfg.self_heads, cfg.att_heads)
            decoder_in = d * 2
        else:
            self.LSTT = LongShortTermTransformer(cfg.num_layers, d, cfg.self_heads, cfg.att_heads,
                                                 intermediate_norm=True)
            decoder_in = d * (cfg.num_layers + 1)
        self.decoder = FPNSegmentationHead(decoder_in, cfg.max_obj_num + 1, cfg.decode_intermediate, d,
                                           cfg.encoder_dims, cfg.align_corners)
        if cfg.align_corners:
            self.patch_wise_id_bank = nn.Conv2d(cfg.max_obj_num + 1, d, kernel_size=17, stride=16, padding=8)
        else:
            self.patch_wise_id_bank = nn.Conv2d(cfg.max_obj_num + 1, d, kernel_size=16, stride=16, padding=0)
        if cfg.model == "deaot":
            self.id_norm = nn.LayerNorm(d)

    def fold_batch_norms(self) -> None:
        """Fold the CNN encoder's frozen batch norms into its convolutions, for inference (R50-DeAOT-L
        encoder 0.44 -> 0.39 s per 480p frame, DeAOT-T 0.17 -> 0.12 s on a 2-core CPU). Load the
        weights first: the ``state_dict`` loses the official batch-norm keys."""
        fold_frozen_batch_norms(self.encoder)
        if self.channels_last:
            self.encoder.to(memory_format=torch.channels_last)

    @property
    def is_deaot(self) -> bool:
        return self.cfg.model == "deaot"

    def encode_image(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The frame's decoder shortcuts (encoder features at strides 4, 8 and 16, already through
        the decoder's adapters, computed once for all engines) and its projected stride-16 embedding."""
        if self.channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        feats = self.encoder(img)  # the decoder takes the shortcuts channels-last as they come
        return self.decoder.adapt_shortcuts(feats) + [self.encoder_projector(feats[-1].contiguous())]

    def position_embedding(self, h: int, w: int, batch: int) -> torch.Tensor:
        """Sine position embedding of the encoder grid as tokens ``(h*w, batch, d)``."""
        pos = sine_position_embedding(h, w, self.cfg.embed_dim // 2, device=self.encoder_projector.weight.device)
        return map_to_seq(pos.expand(batch, -1, -1, -1))

    def id_embedding(self, one_hot: torch.Tensor) -> torch.Tensor:
        """Identity embedding of a one-hot mask ``(n, k, H, W)`` as tokens ``(h*w, n, d)``.

        ``k`` may be below ``max_obj_num + 1``: the missing slots are empty, so only the first ``k``
        input channels of the id bank contribute (2 objects: 16 -> 5 ms per 480p frame on CPU).
        """
        bank = self.patch_wise_id_bank
        emb = F.conv2d(one_hot, bank.weight[:, :one_hot.shape[1]], bank.bias, bank.stride, bank.padding)
        if self.is_deaot:
            emb = self.id_norm(emb.permute(2, 3, 0, 1)).permute(2, 3, 0, 1)
        return map_to_seq(emb)

    def propagate(self, enc_embs: list[torch.Tensor], long_term: list | None, short_term: list | None,
                  curr_id_emb: torch.Tensor | None, pos_emb: torch.Tensor | None,
                  size_2d: tuple[int, int]) -> tuple[list[torch.Tensor], list[list]]:
        """Run the propagation stack on the current frame's stride-16 embedding."""
        return self.LSTT(map_to_seq(enc_embs[-1]), long_term, short_term, curr_id_emb, pos_emb, size_2d)

    def decode(self, lstt_embs: list[torch.Tensor], enc_embs: list[torch.Tensor]) -> torch.Tensor:
        """Id logits ``(n, max_obj_num + 1, H/4, W/4)`` from propagated tokens and the frame's
        :meth:`encode_image` output."""
        n, _, h, w = enc_embs[-1].shape
        inputs = [enc_embs[-1]] + [e.view(h, w, n, -1).permute(2, 3, 0, 1) for e in lstt_embs]
        return self.decoder(inputs, enc_embs[:3])
