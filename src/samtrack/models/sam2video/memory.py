"""Per-object memory bank of the SAM 2 / EdgeTAM propagator, with a bounded-size policy.

Frames are counted in the order they are fed (``step``), not by their index in the video, so feeding
frames in reverse order is backward propagation with nothing else to change. What one object keeps:

- conditioning frames (reference masks): the most recent ones up to ``max_conditioning_frames``, and
  always its first one when that is 2 or more; each is attended to with SAM 2's "conditioning"
  temporal slot;
- spatial memory of the last ``num_memory_frames`` tracked frames (SAM 2: 6), with the temporal
  slot of their distance in steps;
- object pointers of the last ``max_object_pointers - 1`` tracked frames (SAM 2: 15), small vectors.

Everything older is dropped as soon as it can no longer be attended to, so memory use stays flat on
arbitrarily long videos.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class MemoryFrame:
    """What one frame leaves in one object's memory (tensors in the model's own layout, batch of one)."""

    features: torch.Tensor
    pos: torch.Tensor
    pointer: torch.Tensor  # 1 x 1 x C


@dataclass
class ObjectMemory:
    """Memory of one object: conditioning frames, recent spatial memories and recent pointers by step."""

    conditioning: dict[int, MemoryFrame] = field(default_factory=dict)  # step -> frame, oldest first
    recent: dict[int, MemoryFrame] = field(default_factory=dict)  # step -> frame (spatial + pointer)
    pointers: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> pointer, older than `recent`

    def add_conditioning(self, step: int, frame: MemoryFrame, cap: int) -> None:
        """Store a reference frame; beyond `cap`, drop the oldest one, except the object's first while
        `cap` leaves room for it and a newer one."""
        self.recent.pop(step, None)
        self.pointers.pop(step, None)
        self.conditioning[step] = frame
        while len(self.conditioning) > cap:
            steps = list(self.conditioning)
            del self.conditioning[steps[1] if cap >= 2 else steps[0]]

    def add_tracked(self, step: int, frame: MemoryFrame) -> None:
        self.recent[step] = frame

    def prune(self, step: int, num_memory_frames: int, num_pointer_frames: int) -> None:
        """Drop what a frame at `step` or later cannot attend to: spatial memories more than
        `num_memory_frames` steps back (keeping their pointers), pointers more than `num_pointer_frames`."""
        for old in [s for s in self.recent if s < step - num_memory_frames]:
            self.pointers[old] = self.recent.pop(old).pointer
        for old in [s for s in self.pointers if s < step - num_pointer_frames]:
            del self.pointers[old]

    def pointer_at(self, step: int) -> torch.Tensor | None:
        if step in self.recent:
            return self.recent[step].pointer
        return self.pointers.get(step)

    def layout(self, step: int, num_memory_frames: int, num_pointer_frames: int) -> tuple:
        """Which memory slots a frame at `step` attends to: objects with equal layouts batch together."""
        return (tuple(self.conditioning),
                tuple(k for k in range(1, num_memory_frames + 1) if step - k in self.recent),
                tuple(k for k in range(1, num_pointer_frames + 1) if self.pointer_at(step - k) is not None))

    def num_frames(self) -> int:
        """Frames with anything stored (conditioning, spatial or pointer)."""
        return len(self.conditioning) + len(self.recent) + len(self.pointers)
