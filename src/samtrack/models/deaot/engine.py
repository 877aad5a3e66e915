"""One propagation engine: the memory of up to 10 objects (one-hot slots 1..10) of a video.

Mirrors the official ``AOTEngine`` / ``DeAOTEngine`` at test time:

- ``frame_step`` starts at 0 and grows by one with every :meth:`Engine.propagate`;
- a reference frame puts its memory in front of the long-term memory and becomes the
  short-term memory;
- :meth:`Engine.update_memory` makes the last propagated frame (fused with its mask's
  identities) the short-term memory and, every ``long_term_mem_gap`` frames, also prepends
  it to the long-term memory, dropping the oldest frame once ``max_len_long_term`` are kept.
"""

from __future__ import annotations

import torch

from samtrack.models.deaot.layers import seq_to_2d
from samtrack.models.deaot.network import AOTNetwork

FILL_LOGIT = -1e10  # what the official code writes into the slots of objects that do not exist


def one_hot_mask(mask: torch.Tensor, num_slots: int) -> torch.Tensor:
    """``(n, 1, H, W)`` id map to a float one-hot ``(n, num_slots + 1, H, W)``; other ids map to nothing."""
    ids = torch.arange(num_slots + 1, device=mask.device).view(1, -1, 1, 1)
    return (mask == ids).float()


class Engine:
    """Memory bookkeeping of one group of at most ``max_obj_num`` objects."""

    def __init__(self, network: AOTNetwork, long_term_mem_gap: int, max_len_long_term: int) -> None:
        self.net = network
        self.long_term_mem_gap = long_term_mem_gap
        self.max_len_long_term = max_len_long_term
        self.obj_nums: int | None = None
        self.frame_step = 0
        self.last_mem_step = -1
        self.size_2d: tuple[int, int] | None = None
        self.pos_emb: torch.Tensor | None = None
        self.long_term: list[list] | None = None
        self.short_term: list[list] | None = None
        self.enc_embs: list[torch.Tensor] | None = None
        self.lstt_embs: list[torch.Tensor] | None = None
        self.curr_memories: list[list] | None = None

    @property
    def long_term_frames(self) -> int:
        """How many frames the long-term memory holds."""
        if self.long_term is None or self.size_2d is None:
            return 0
        return self.long_term[0][0].shape[0] // (self.size_2d[0] * self.size_2d[1])

    def _identity(self, mask: torch.Tensor) -> torch.Tensor:
        return self.net.id_embedding(one_hot_mask(mask, self.obj_nums))

    def add_reference(self, enc_embs: list[torch.Tensor], mask: torch.Tensor, obj_nums: int) -> None:
        """Self-propagate a frame with its known id map (network input size) and memorise it."""
        self.obj_nums = obj_nums
        if self.size_2d is None:
            self.size_2d = tuple(enc_embs[-1].shape[-2:])
        if self.pos_emb is None and not self.net.is_deaot:
            self.pos_emb = self.net.position_embedding(*self.size_2d, batch=1)
        embs, memories = self.net.propagate(enc_embs, None, None, self._identity(mask), self.pos_emb, self.size_2d)
        self.enc_embs, self.lstt_embs = enc_embs, embs
        self.curr_memories = [m[0] for m in memories]
        long_term = [m[1] for m in memories]
        if self.long_term is None:
            self.long_term = long_term
        else:
            self._prepend_long_term(long_term)
        self.last_mem_step = self.frame_step
        self.short_term = [m[2] for m in memories]

    def propagate(self, enc_embs: list[torch.Tensor]) -> None:
        """Match the current frame against the memories (no memory update)."""
        self.frame_step += 1
        embs, memories = self.net.propagate(enc_embs, self.long_term, self.short_term, None, self.pos_emb,
                                            self.size_2d)
        self.enc_embs, self.lstt_embs = enc_embs, embs
        self.curr_memories = [m[0] for m in memories]

    def decode(self) -> torch.Tensor:
        """Decoder logits of the last propagated frame, ``(1, max_obj_num + 1, H/4, W/4)`` float32,
        with the slots above this engine's object count set to -1e10."""
        logits = self.net.decode(self.lstt_embs, self.enc_embs).float()
        logits[:, self.obj_nums + 1:] = FILL_LOGIT
        return logits

    def update_memory(self, mask: torch.Tensor) -> None:
        """Memorise the last propagated (or referenced) frame with its id map (network input size)."""
        id_emb = self._identity(mask)
        fused = [layer.remember(mem, id_emb) for layer, mem in zip(self.net.LSTT.layers, self.curr_memories)]
        self.short_term = [[None if e is None else seq_to_2d(e, self.size_2d) for e in mem] for mem in fused]
        if self.frame_step - self.last_mem_step >= self.long_term_mem_gap:
            self._prepend_long_term(fused)
            self.last_mem_step = self.frame_step

    def _prepend_long_term(self, new: list[list]) -> None:
        tokens = new[0][0].shape[0]
        keep = (self.max_len_long_term - 1) * tokens
        updated = []
        for new_mem, old_mem in zip(new, self.long_term):
            entries = []
            for new_e, old_e in zip(new_mem, old_mem):
                if new_e is None or old_e is None:
                    entries.append(None)
                    continue
                if old_e.shape[0] >= self.max_len_long_term * tokens:
                    old_e = old_e[:keep]
                entries.append(torch.cat([new_e, old_e], dim=0))
            updated.append(entries)
        self.long_term = updated
