"""The tracker protocol every backend implements, the weights protocol that makes trackers, and the
memory options they take. A leaf module: it imports no backend (see :mod:`samtrack.models.trackers`
for the factory that does).

One noun: a **tracker** carries objects from frame to frame of one video; its **weights** are loaded
once and shared by any number of trackers (one per video or per user), each with its own memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Tracker(Protocol):
    """Carries every object's mask, under its integer id, from frame to frame of one video.

    Frames are RGB ``uint8`` ``H x W x 3``, id masks ``uint8`` ``H x W`` (0 = background, 1..255
    objects). Frames are counted in the order they are fed: feeding them in reverse propagates
    backward. Contract, for every backend (tests/test_tracker_contract.py checks it on each):

    - ``add_reference(frame, id_mask)``: the mask is the truth on this frame for every object in it.
      Ids not seen before join as new objects (ids keep their meaning; they need not be consecutive).
      An object already tracked is re-referenced: the given mask replaces the tracker's own belief on
      this frame and becomes a lasting memory (a reference, not an ordinary tracked frame). If the
      frame was just passed to ``track`` (a key frame: tracked, corrected, then referenced), it counts
      as one frame, not two. A first reference with no object at all (a black first frame, automatic
      mode that finds nothing) is allowed by DeAOT/AOT: nothing is tracked (``track`` returns zeros)
      until a later reference brings objects, which then get a full reference as SAM-Track's engine
      gives them; SAM 2.1 / EdgeTAM refuse it (InputError), having no memory to start from.
    - ``track(frame) -> id_mask``: the next frame's ids; the memory is NOT updated. Only ids that were
      referenced can appear. With ``return_logits=True`` also float32 logits ``(C, H, W)`` at the frame's
      size whose argmax over channels is the returned mask: channel 0 is the background, channel ``i``
      object ``i`` (a very low constant for ids that are not tracked).
    - ``update_memory(id_mask)``: memorise the last tracked frame with this mask (its own output, or
      a corrected one); it may only hold ids already tracked.
    - ``reset()``: forget every object and frame; the next reference may have another size.

    ``precision`` says what runs (``fp32``, ``bf16`` or ``fp16``).
    """

    precision: str

    def reset(self) -> None: ...

    def add_reference(self, frame: np.ndarray, id_mask: np.ndarray) -> None: ...

    def track(self, frame: np.ndarray, return_logits: bool = False) -> Any: ...

    def update_memory(self, id_mask: np.ndarray) -> None: ...


@dataclass(frozen=True)
class MemoryOptions:
    """How much a tracker remembers; each backend reads its own knobs and ignores the others'.

    DeAOT/AOT (SAM-Track's ``aot_args``): a frame joins the long-term memory every
    ``long_term_mem_gap`` frames, at most ``max_len_long_term`` of them are kept.
    SAM 2 family: per object, the last ``num_memory_frames`` frames (None: the model's own number) and
    at most ``max_conditioning_frames`` prompted frames.
    """

    long_term_mem_gap: int = 9999
    max_len_long_term: int = 9999
    num_memory_frames: int | None = None
    max_conditioning_frames: int = 4


class TrackerWeights(Protocol):
    """A loaded tracker model, read-only at inference and shared by every tracker made from it."""

    name: str
    device: str
    precision: str  # what runs (resolved): fp32, bf16 or fp16

    def tracker(self, memory: MemoryOptions = MemoryOptions()) -> Tracker:
        """A new tracker over these weights, with empty memory."""
        ...
