"""SAM-Track's DeAOT/AOT tracker: the tracker protocol on top of one or more engines.

One engine carries 10 objects; ids ``10k+1 .. 10k+10`` go to engine ``k`` (renumbered 1..10),
so up to 255 objects use 26 engines that share one image encoding per frame. With several
engines the logits are merged as the official ``soft_logit_aggregation`` does.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from samtrack.errors import InputError, ModelError
from samtrack.models.common import (
    autocast,
    check_frame,
    check_id_mask,
    check_precision,
    keep_freed_cpu_memory,
    resolve_device,
    resolve_precision,
)
from samtrack.models.deaot.checkpoint import load_checkpoint
from samtrack.models.deaot.config import VariantConfig, get_variant
from samtrack.models.deaot.engine import FILL_LOGIT, Engine
from samtrack.models.deaot.network import AOTNetwork
from samtrack.models.deaot.preprocess import normalize, resize_frame, resize_mask, target_size
from samtrack.models.tracker import MemoryOptions

MAX_OBJECTS = 255


def merge_logits(all_logits: list[torch.Tensor]) -> torch.Tensor:
    """Merge per-engine logits (each engine's background and object slots): background = product
    of the engines' background probabilities, objects = every engine's object probabilities in
    engine order, back to clamped logits."""
    if len(all_logits) == 1:
        return all_logits[0]
    bg, fg = [], []
    for logits in all_logits:
        prob = torch.softmax(logits, dim=1)
        bg.append(prob[:, 0:1])
        fg.append(prob[:, 1:])
    merged = torch.cat([torch.prod(torch.cat(bg, dim=1), dim=1, keepdim=True)] + fg, dim=1)
    return torch.logit(merged.clamp(1e-5, 1 - 1e-5))


def channel_argmax(logits: torch.Tensor) -> torch.Tensor:
    """``torch.argmax(logits, dim=0)`` as uint8 (ties go to the lowest channel), one channel at a
    time: much faster than a reduction across the channel axis of a full-resolution map."""
    best = logits[0].clone()
    labels = torch.zeros(best.shape, dtype=torch.uint8, device=logits.device)
    for channel in range(1, logits.shape[0]):
        better = logits[channel] > best
        labels.masked_fill_(better, channel)
        torch.maximum(best, logits[channel], out=best)
    return labels


def prepare_network(network: AOTNetwork, device: torch.device) -> AOTNetwork:
    """Make a network with loaded weights ready for inference on ``device``, in place (eval mode,
    batch norms folded). Idempotent, so trackers sharing one network can each call it."""
    if getattr(network, "prepared_for", None) != device:
        if device.type == "cpu":
            keep_freed_cpu_memory()
        network.fold_batch_norms()
        network.to(device).eval()
        network.prepared_for = device
    return network


class DeAOTTracker:
    """Propagates an id mask through a video: ``add_reference``, ``track``, ``update_memory``, ``reset``
    (the :class:`samtrack.models.tracker.Tracker` protocol).

    Frames are RGB ``uint8`` ``H x W x 3``; id masks ``uint8`` ``H x W`` (0 = background).
    The tracker prepares ``network`` for inference in place (eval mode, batch norms folded), so
    load its weights before handing it over. The network holds no per-video state: several trackers
    (one per video) may share it.
    """

    def __init__(self, network: AOTNetwork, device: str | torch.device = "cpu", long_term_mem_gap: int = 9999,
                 max_len_long_term: int = 9999, precision: str = "fp32") -> None:
        if long_term_mem_gap < 1 or max_len_long_term < 1:
            raise InputError("long_term_mem_gap and max_len_long_term must be at least 1")
        self.precision = check_precision(precision)
        self.device = resolve_device(device)
        self.net = prepare_network(network, self.device)
        self.cfg: VariantConfig = network.cfg
        self.long_term_mem_gap = long_term_mem_gap
        self.max_len_long_term = max_len_long_term
        self.engines: list[Engine] = []
        self.obj_nums = 0
        self.referenced = np.zeros(MAX_OBJECTS + 1, bool)  # ids given to add_reference so far
        self.frame_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        self.last_native_logits: list[torch.Tensor] = []
        self._last_frame: np.ndarray | None = None
        self._last_enc: list[torch.Tensor] | None = None

    @property
    def max_obj_per_engine(self) -> int:
        return self.cfg.max_obj_num

    def reset(self) -> None:
        """Forget every object and memory (the official ``restart_tracker``)."""
        self.engines = []
        self.obj_nums = 0
        self.referenced = np.zeros(MAX_OBJECTS + 1, bool)  # ids given to add_reference so far
        self.frame_size = self.input_size = None
        self.last_native_logits = []
        self._last_frame = self._last_enc = None

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def _encode(self, frame: np.ndarray) -> list[torch.Tensor]:
        """Encoder features of a frame; the last frame's are reused (a keyframe is tracked, then referenced)."""
        if self._last_enc is not None and self._last_frame is not None and np.array_equal(frame, self._last_frame):
            return self._last_enc
        img = normalize(resize_frame(frame, self.input_size)).to(self.device)
        with self._autocast():
            enc = self.net.encode_image(img)
        self._last_frame, self._last_enc = frame.copy(), enc
        return enc

    def _mask_tensor(self, mask: np.ndarray) -> torch.Tensor:
        m = torch.from_numpy(mask).to(self.device, torch.float32)[None, None]
        return resize_mask(m, self.input_size)

    def _split(self, mask: torch.Tensor) -> list[torch.Tensor]:
        """Each engine's part of an id map, renumbered to 1..10 (the official ``separate_mask``)."""
        if len(self.engines) == 1:
            return [mask]
        parts = []
        for idx in range(len(self.engines)):
            start = idx * self.max_obj_per_engine + 1
            end = (idx + 1) * self.max_obj_per_engine
            fg = ((mask >= start) & (mask <= end)).float()
            parts.append((fg * mask - start + 1) * fg)
        return parts

    def _engine_obj_nums(self) -> list[int]:
        """Each engine's object count (the official ``separate_mask``): one engine counts every object,
        even none (then it tracks nothing until a later reference brings objects)."""
        if len(self.engines) == 1:
            return [self.obj_nums]
        counts = [self.max_obj_per_engine] * len(self.engines)
        if self.obj_nums % self.max_obj_per_engine:
            counts[-1] = self.obj_nums % self.max_obj_per_engine
        return counts

    def _drop_unreferenced(self, k: int, logits: torch.Tensor) -> torch.Tensor:
        """Engine `k`'s logits with the slots of ids below the highest one that were never referenced
        (ids need not be consecutive) filled like unused slots, so they never win a pixel."""
        first = k * self.max_obj_per_engine
        slots = np.flatnonzero(~self.referenced[first + 1:first + logits.shape[1]]) + 1
        if len(slots):
            logits[:, torch.from_numpy(slots)] = FILL_LOGIT
        return logits

    @torch.inference_mode()
    def add_reference(self, frame: np.ndarray, id_mask: np.ndarray) -> None:
        """(Re)reference all objects on this frame; new ids (up to 255) join as new objects."""
        check_frame(frame, self.frame_size)
        check_id_mask(id_mask, frame.shape[:2])
        top = int(id_mask.max())
        if top > MAX_OBJECTS:
            raise InputError(f"at most {MAX_OBJECTS} objects can be tracked")
        if self.frame_size is None:
            self.frame_size = frame.shape[:2]
            self.input_size = target_size(*self.frame_size, self.cfg.align_corners)
        self.obj_nums = max(self.obj_nums, top)
        self.referenced[np.unique(id_mask)] = True
        while len(self.engines) < max(math.ceil(self.obj_nums / self.max_obj_per_engine), 1):
            self.engines.append(Engine(self.net, self.long_term_mem_gap, self.max_len_long_term))
        mask = self._mask_tensor(id_mask)
        with self._autocast():
            for engine, part, count in zip(self.engines, self._split(mask), self._engine_obj_nums()):
                if engine.obj_nums is None or engine.obj_nums < count:
                    engine.add_reference(self._encode(frame), part, count)
                else:
                    engine.update_memory(part)

    @torch.inference_mode()
    def track(self, frame: np.ndarray, return_logits: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Id mask of the next frame (memory is not updated; call :meth:`update_memory`).

        With ``return_logits`` also the merged logits, float32 ``(objects + 1) x H x W``.
        """
        if not self.engines:
            raise InputError("add_reference must be called with a first frame and its id mask before track")
        check_frame(frame, self.frame_size)
        enc = self._encode(frame)
        with self._autocast():
            for engine in self.engines:
                engine.propagate(enc)
            self.last_native_logits = [self._drop_unreferenced(k, engine.decode())
                                       for k, engine in enumerate(self.engines)]
        # the empty slots (-1e10) add nothing to the merge and never win the argmax: drop them first
        upsampled = [F.interpolate(x[:, :count + 1], size=self.frame_size, mode="bilinear",
                                   align_corners=self.cfg.align_corners)
                     for x, count in zip(self.last_native_logits, self._engine_obj_nums())]
        logits = merge_logits(upsampled)[0]
        labels = channel_argmax(logits).cpu().numpy()
        if return_logits:
            return labels, logits.cpu().numpy()
        return labels

    @torch.inference_mode()
    def update_memory(self, id_mask: np.ndarray) -> None:
        """Memorise the last tracked frame with its (possibly corrected) id mask."""
        if not self.engines or self.frame_size is None:
            raise InputError("add_reference must be called before update_memory")
        check_id_mask(id_mask, self.frame_size)
        if int(id_mask.max()) > self.obj_nums:
            raise InputError(f"id mask holds id {int(id_mask.max())} but only {self.obj_nums} objects are tracked; "
                             "add new objects with add_reference")
        with self._autocast():
            for engine, part in zip(self.engines, self._split(self._mask_tensor(id_mask))):
                engine.update_memory(part)


@dataclass(frozen=True)
class DeAOTWeights:
    """A DeAOT/AOT network prepared for inference, shared by every tracker made from it."""

    name: str
    device: str
    precision: str
    network: AOTNetwork

    def tracker(self, memory: MemoryOptions = MemoryOptions()) -> DeAOTTracker:  # noqa: B008 - frozen default
        return DeAOTTracker(self.network, self.device, memory.long_term_mem_gap, memory.max_len_long_term,
                            self.precision)


def variant_of_file(path: Path) -> str:
    """The DeAOT/AOT variant an official checkpoint file holds, from its name (``R50_DeAOTL_PRE_YTB_DAV.pth``,
    ``r50_deaotl.pth``, ...)."""
    from samtrack.models.registry import find_spec, list_specs

    for spec in list_specs("tracker"):
        if spec.filename and spec.filename.lower() == path.name.lower():
            return spec.name
    stem = path.stem.lower()
    for candidate in (stem, stem.split("_pre")[0]):
        spec = find_spec(candidate, "tracker")
        if spec is not None and spec.family in ("deaot", "aot"):
            return spec.name
    raise ModelError(f"cannot tell which DeAOT/AOT variant {path} holds from its name; give it as "
                     "--tracker VARIANT --checkpoint FILE (variants: see `samtrack models`)")


def load_deaot_weights(name: str = "r50-deaotl", checkpoint: str | Path | None = None, device: str = "cpu",
                       precision: str = "auto") -> DeAOTWeights:
    """A DeAOT/AOT network loaded from an official checkpoint and prepared for inference, to share.
    `name` is a variant (``r50-deaotl``, ``deaot-t``, ...) or the path of an official checkpoint file
    whose name tells the variant."""
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    as_file = Path(str(name)).expanduser()
    if checkpoint is None and as_file.suffix in (".pth", ".pt") and as_file.is_file():
        name, checkpoint = variant_of_file(as_file), as_file
    cfg = get_variant(name)
    if checkpoint is None:
        from samtrack.models.registry import resolve_file

        checkpoint = resolve_file(cfg.name, kind="tracker")
    network = AOTNetwork(cfg)
    load_checkpoint(network, checkpoint)
    try:
        prepare_network(network, dev)
    except (RuntimeError, AssertionError) as exc:  # e.g. an unavailable CUDA device
        raise ModelError(f"cannot put the tracker on device {device!r}: {exc}") from exc
    return DeAOTWeights(cfg.name, str(dev), precision, network)
