"""SAM 2.1 / EdgeTAM behind the tracker protocol: ``add_reference``, ``track``, ``update_memory``, ``reset``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from samtrack.errors import InputError
from samtrack.models.attention import use_cpu_attention
from samtrack.models.common import autocast, check_frame, check_id_mask, check_precision, resolve_device
from samtrack.models.sam2video import steps
from samtrack.models.sam2video.memory import MemoryFrame, ObjectMemory
from samtrack.models.sam2video.steps import NO_OBJECT_LOGIT, Decoded, FrameFeatures, VideoModel


@dataclass
class _Pending:
    """The last frame fed: its features and, once tracked, every known object's prediction."""

    step: int
    frame: np.ndarray
    features: FrameFeatures
    ids: list[int]  # objects predicted on this frame, ascending
    decoded: Decoded | None = None  # predictions of `ids`, stacked in that order
    logits: torch.Tensor | None = None  # len(ids) x H x W at the frame's size
    labels: np.ndarray | None = None  # merged id mask
    committed: bool = False  # written into memory


class Sam2VideoTracker:
    """Streams a video through SAM 2.1 or EdgeTAM, one frame at a time, all objects batched.

    Frames are RGB ``uint8`` ``H x W x 3``; id masks ``uint8`` ``H x W`` (0 = background). Frames are
    counted in the order they arrive, so feeding them in reverse order propagates backward.

    - ``add_reference(frame, id_mask)``: objects of the mask that are new join with this mask as their
      conditioning frame (SAM 2's prompt frame). A known object whose mask differs from what the model
      predicts on this frame is corrected: the given mask becomes a new conditioning frame for it.
      Known objects whose mask equals the prediction (or that are absent from both) are memorised as
      an ordinary tracked frame, exactly as ``update_memory`` would.
    - ``track(frame)``: the id mask of the frame, memory untouched. Each object's mask logits are
      upsampled to the frame; a pixel takes the object with the highest logit, background where no
      logit is above 0 (so objects never overlap).
    - ``update_memory(id_mask)``: memorise the last tracked frame. SAM 2 remembers its own prediction
      (soft logits, overlaps allowed): that is what happens for every object whose mask in ``id_mask``
      equals the returned one. An object whose mask differs is remembered with the given mask instead
      (binary, as SAM 2 memorises prompted masks), as an ordinary memory frame that ages out like any
      other; use ``add_reference`` to make a correction a lasting conditioning frame.
    - ``reset()``: forget every object and frame.

    Memory policy (bounded on any video length; see :mod:`samtrack.models.sam2video.memory`): per
    object, the most recent conditioning frames up to ``max_conditioning_frames`` (its first one always
    among them when that is 2 or more),
    the spatial memory of the last ``num_memory_frames`` memorised frames (SAM 2: 6, the most its
    temporal encoding has slots for) and the object pointers of the last 15. Only the last fed frame's
    image features are kept.

    Objects whose memories sit at the same frames (all objects added together and not corrected
    since) run through memory attention and the mask decoder in one batched call.
    """

    def __init__(self, model: VideoModel, processor: object, device: str | torch.device = "cpu",
                 num_memory_frames: int | None = None, max_conditioning_frames: int = 4,
                 precision: str = "fp32") -> None:
        most = model.num_maskmem - 1
        num_memory_frames = most if num_memory_frames is None else num_memory_frames
        if not 0 <= num_memory_frames <= most:
            raise InputError(f"num_memory_frames must be in 0..{most} (the model has {most} memory slots), "
                             f"got {num_memory_frames}")
        if max_conditioning_frames < 1:
            raise InputError(f"max_conditioning_frames must be at least 1, got {max_conditioning_frames}")
        self.device = resolve_device(device)
        self.precision = check_precision(precision)
        self.model = model.to(self.device).eval()  # no-op for weights already there (shared models)
        use_cpu_attention(self.model)
        self.processor = processor
        self.num_memory_frames = num_memory_frames
        self.max_conditioning_frames = max_conditioning_frames
        self.num_pointer_frames = model.config.max_object_pointers_in_encoder - 1
        self._batch_dim = steps.memory_batch_dim(model)
        self.reset()

    def reset(self) -> None:
        """Forget every object, memory and frame (the next frame may have another size)."""
        self._objects: dict[int, ObjectMemory] = {}
        self._step = -1
        self._pending: _Pending | None = None
        self.frame_size: tuple[int, int] | None = None

    @property
    def object_ids(self) -> list[int]:
        return sorted(self._objects)

    def memory_frames(self) -> dict[int, int]:
        """Per object id, how many frames its memory holds anything for (bounded by the policy)."""
        return {oid: mem.num_frames() for oid, mem in sorted(self._objects.items())}

    # ----------------------------------------------------------------- checks
    # ----------------------------------------------------------------- frames
    def _reusable(self, frame: np.ndarray) -> bool:
        """The pending frame is this one and not yet memorised (a key frame: tracked, then referenced)."""
        p = self._pending
        return p is not None and not p.committed and np.array_equal(frame, p.frame)

    def _advance(self, frame: np.ndarray) -> _Pending:
        self._step += 1
        frame = frame.copy()  # kept to recognise the frame; writable, as torch wants for from_numpy
        pixels = self.processor(images=frame, return_tensors="pt")["pixel_values"]
        features = steps.encode_frame(self.model, pixels.to(self.device, self.model.dtype))
        self._prune(self._step)
        self._pending = _Pending(self._step, frame, features, [])
        return self._pending

    def _prune(self, step: int) -> None:
        for mem in self._objects.values():
            mem.prune(step, self.num_memory_frames, self.num_pointer_frames)

    def _binary_masks(self, id_mask: np.ndarray, ids: list[int]) -> torch.Tensor:
        """Per-object masks at the model's input size, resized as transformers' processor does."""
        masks = torch.from_numpy(np.stack([id_mask == oid for oid in ids]))[:, None].to(self.device, torch.float32)
        size = (self.model.image_size, self.model.image_size)
        masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False, antialias=True)
        return (masks >= 0.5).to(self.model.dtype)

    # ----------------------------------------------------------------- tracking
    def _memory_of(self, members: list[int], layout: tuple) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """Stacked memory (sequence x objects x channels), its positions, pointer and frame counts."""
        cond_steps, mem_offsets, ptr_offsets = layout
        mems = [self._objects[oid] for oid in members]
        step, dim = self._step, self._batch_dim

        def stacked(frames: list[MemoryFrame]) -> dict[str, torch.Tensor]:
            return {"maskmem_features": torch.cat([f.features for f in frames], dim=dim),
                    "maskmem_pos_enc": torch.cat([f.pos for f in frames], dim=dim)}

        slots = [(0, stacked([m.conditioning[s] for m in mems])) for s in cond_steps]
        slots += [(k, stacked([m.recent[step - k] for m in mems])) for k in sorted(mem_offsets, reverse=True)]
        memory, positions = steps.memory_inputs(self.model, slots, self.device)
        offsets = [step - s for s in cond_steps] + list(ptr_offsets)
        pointers = [torch.cat([m.conditioning[s].pointer.reshape(1, -1) for m in mems]) for s in cond_steps]
        pointers += [torch.cat([m.pointer_at(step - k).reshape(1, -1) for m in mems]) for k in ptr_offsets]
        ptr, ptr_pos = steps.object_pointers(self.model, offsets, pointers, self.num_pointer_frames + 1, len(members),
                                             self.device)
        return torch.cat([*memory, ptr]), torch.cat([*positions, ptr_pos]), ptr.shape[0], len(slots)

    def _predict(self, pending: _Pending) -> None:
        """Track every known object on the pending frame, one batched call per memory layout."""
        ids = sorted(self._objects)
        groups: dict[tuple, list[int]] = {}
        for oid in ids:
            layout = self._objects[oid].layout(pending.step, self.num_memory_frames, self.num_pointer_frames)
            groups.setdefault(layout, []).append(oid)
        parts: dict[int, tuple[Decoded, int]] = {}
        for layout, members in groups.items():
            memory, positions, num_ptr, num_frames = self._memory_of(members, layout)
            out = steps.track(self.model, pending.features, memory, positions, num_ptr, num_frames)
            parts.update((oid, (out, i)) for i, oid in enumerate(members))
        pending.ids = ids
        pending.decoded = Decoded(*(torch.cat([getattr(parts[o][0], name)[parts[o][1]][None] for o in ids])
                                    for name in ("low_res", "high_res", "pointer", "score")))
        logits = F.interpolate(pending.decoded.low_res.float(), size=self.frame_size, mode="bilinear",
                               align_corners=False)[:, 0]
        best, which = logits.max(dim=0)
        id_table = torch.tensor(ids, dtype=torch.uint8, device=logits.device)
        pending.logits = logits
        pending.labels = torch.where(best > 0, id_table[which], 0).to(torch.uint8).cpu().numpy()

    @torch.inference_mode()
    def track(self, frame: np.ndarray, return_logits: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Id mask of the next frame (memory is not updated; call :meth:`update_memory`).

        With ``return_logits`` also float32 logits ``(max id + 1) x H x W``: channel 0 is the
        background's 0, channel ``i`` object ``i``'s mask logits (-1024 for ids not tracked), so
        their argmax is the returned mask.
        """
        if not self._objects:
            raise InputError("add_reference must be called with a first frame and its id mask before track")
        check_frame(frame, self.frame_size)
        with autocast(self.device, self.precision):
            pending = self._pending if self._reusable(frame) else self._advance(frame)
            if pending.decoded is None:
                self._predict(pending)
        if not return_logits:
            return pending.labels.copy()
        out = np.full((max(pending.ids) + 1, *self.frame_size), NO_OBJECT_LOGIT, dtype=np.float32)
        out[0] = 0.0
        out[pending.ids] = pending.logits.cpu().numpy()
        return pending.labels.copy(), out

    # ----------------------------------------------------------------- memory
    def _remember(self, pending: _Pending, ids: list[int], decoded: Decoded, binarize: bool,
                  conditioning: bool) -> None:
        features, pos = steps.encode_memory(self.model, pending.features, decoded, binarize)
        for i, oid in enumerate(ids):
            frame = MemoryFrame(features.narrow(self._batch_dim, i, 1), pos.narrow(self._batch_dim, i, 1),
                                decoded.pointer[i:i + 1])
            mem = self._objects.setdefault(oid, ObjectMemory())
            if conditioning:
                mem.add_conditioning(pending.step, frame, self.max_conditioning_frames)
            else:
                mem.add_tracked(pending.step, frame)

    def _commit(self, id_mask: np.ndarray, new_ids: list[int], conditioning: bool) -> None:
        """Memorise the pending frame: predicted objects whose mask is unchanged with their own
        prediction; changed ones (and `new_ids`) with the given mask."""
        pending = self._pending
        changed, kept = [], []
        if pending.ids:  # objects were predicted on this frame
            changed = [oid for oid in pending.ids if not np.array_equal(id_mask == oid, pending.labels == oid)]
            kept = [i for i, oid in enumerate(pending.ids) if oid not in changed]
        if kept:
            decoded = pending.decoded.select(torch.tensor(kept, device=self.device))
            self._remember(pending, [pending.ids[i] for i in kept], decoded, binarize=False, conditioning=False)
        given = changed + new_ids
        if given:
            decoded = steps.mask_as_output(self.model, pending.features, self._binary_masks(id_mask, given))
            self._remember(pending, given, decoded, binarize=True, conditioning=conditioning)
        pending.committed = True
        self._prune(pending.step + 1)  # keep only what the next frame can attend to
        pending.decoded = pending.logits = None  # the high-resolution predictions are not needed any more

    @torch.inference_mode()
    def add_reference(self, frame: np.ndarray, id_mask: np.ndarray) -> None:
        """Reference the objects of `id_mask` on this frame: new ids join, changed ones are corrected."""
        check_frame(frame, self.frame_size)
        check_id_mask(id_mask, frame.shape[:2])
        present = [int(i) for i in np.unique(id_mask) if i]
        if not present and not self._objects:
            raise InputError("the reference id mask holds no object (all pixels are 0); draw or pick an object first")
        if self.frame_size is None:
            self.frame_size = frame.shape[:2]
        with autocast(self.device, self.precision):
            pending = self._pending if self._reusable(frame) else self._advance(frame)
            if self._objects and pending.decoded is None:
                self._predict(pending)
            self._commit(id_mask, [oid for oid in present if oid not in self._objects], conditioning=True)

    @torch.inference_mode()
    def update_memory(self, id_mask: np.ndarray) -> None:
        """Memorise the last tracked frame with its (possibly corrected) id mask."""
        pending = self._pending
        if pending is None or pending.committed or pending.labels is None or self.frame_size is None:
            raise InputError("update_memory needs a frame tracked with track() since the last memory update")
        check_id_mask(id_mask, self.frame_size)
        unknown = sorted({int(i) for i in np.unique(id_mask) if i} - set(self._objects))
        if unknown:
            raise InputError(f"id mask holds ids {unknown} that are not tracked; add new objects with add_reference")
        with autocast(self.device, self.precision):
            self._commit(id_mask, [], conditioning=False)
