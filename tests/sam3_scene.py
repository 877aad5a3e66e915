"""A scripted scene for SAM 3 concept tracking on random weights: which objects the detector finds and the
tracker follows on each frame.

Random weights detect nothing at SAM 3's thresholds, and a random tracker loses every object after one
frame, so behaviour that depends on what is seen (ids kept across frames, duplicates, late arrivals,
retroactive removals) is driven through two seams of transformers' ``Sam3VideoModel``:

- the detector head (``detector_model.forward``): returns, for the category of the prompt being
  detected, one query per scripted blob the detector sees on this frame (score as scripted, presence
  certain, mask logits +10 inside the blob's box and -10 outside);
- the tracker (``tracker_model.forward``): an object is bound, when SAM 3 adds it, to the blob its mask
  prompt overlaps most; on later frames the tracker returns that blob's mask (object score +10), or an
  empty mask (-10) on frames without the blob.

Everything between (NMS, association, hotstart, memory encoding, post-processing) is SAM 3's own code.
With ``real=True`` the real detector and tracker run first and only their outputs are replaced (so the
session stores real tracker memories, and a benchmark pays the real cost); the scene's clock advances
with each vision-backbone pass, i.e. one per frame pushed.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch

INSIDE, OUTSIDE = 10.0, -10.0


@dataclass(frozen=True)
class Blob:
    """A scripted object on one frame: a box in low-resolution mask cells (y0, x0, y1, x1, end-exclusive)."""

    key: str
    label: str
    box: tuple[int, int, int, int]
    score: float = 0.9
    detected: bool = True  # the detector sees it on this frame (the tracker follows it either way)

    def mask(self, side: int) -> torch.Tensor:
        out = torch.full((side, side), OUTSIDE)
        y0, x0, y1, x1 = self.box
        out[y0:y1, x0:x1] = INSIDE
        return out


class Scene:
    """Installs the scripted detector and tracker on a Sam3VideoModel; ``frames(i)`` lists the blobs of
    stream frame i (SAM 3's index: 0 for the first frame pushed)."""

    def __init__(self, model, processor, frames, *, real: bool = False) -> None:
        self.model, self.frames, self.real = model, frames, real
        self.side = model.low_res_mask_size
        self.frame = -1
        self.bound: dict[int, str] = {}  # SAM 3 object id -> blob key
        self.detector_calls = 0
        tokenizer = processor.tokenizer
        self._labels = {}  # text-embedding fingerprint -> category, filled as prompts are encoded
        self._tokenizer = tokenizer
        self._originals = {}

    def install(self, monkeypatch) -> Scene:
        detector, tracker = self.model.detector_model, self.model.tracker_model
        real_vision, real_text = detector.get_vision_features, detector.get_text_features
        real_detect, real_track = detector.forward, tracker.forward

        def vision(*args, **kwargs):
            self.frame += 1
            return real_vision(*args, **kwargs)

        def text(input_ids=None, attention_mask=None, **kwargs):
            out = real_text(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            label = self._tokenizer.decode(input_ids[0], skip_special_tokens=True).strip()
            self._labels[id(out)] = label
            return out

        def detect(vision_embeds=None, text_embeds=None, attention_mask=None, **kwargs):
            self.detector_calls += 1
            if self.real:
                real_detect(vision_embeds=vision_embeds, text_embeds=text_embeds, attention_mask=attention_mask)
            label = self._labels[id(text_embeds)]
            seen = [b for b in self.frames(self.frame) if b.detected and b.label == label]
            masks = torch.stack([b.mask(self.side) for b in seen]) if seen else torch.full((1, self.side, self.side),
                                                                                       OUTSIDE)
            scores = torch.tensor([b.score for b in seen]) if seen else torch.tensor([1e-4])
            boxes = torch.tensor([[b.box[1], b.box[0], b.box[3], b.box[2]] for b in seen] or [[0, 0, 1, 1]],
                                 dtype=torch.float32) / self.side
            dtype = self.model.dtype
            return SimpleNamespace(pred_logits=torch.logit(scores)[None].to(dtype),
                                   presence_logits=torch.full((1, 1), 20.0, dtype=dtype),
                                   pred_masks=masks[None].to(dtype), pred_boxes=boxes[None].to(dtype))

        def track(inference_session=None, frame_idx=None, reverse=False, run_mem_encoder=True, **kwargs):
            blobs = {b.key: b for b in self.frames(self.frame)}
            for obj_id in list(getattr(inference_session, "obj_with_new_inputs", [])):
                prompt = inference_session.mask_inputs_per_obj[inference_session.obj_id_to_idx(obj_id)][frame_idx]
                self.bound[obj_id] = max(blobs, key=lambda k: _iou(blobs[k].mask(self.side) > 0, prompt[0, 0] > 0))
            if self.real:
                out = real_track(inference_session=inference_session, frame_idx=frame_idx, reverse=reverse,
                                 run_mem_encoder=run_mem_encoder)
            else:
                inference_session.obj_with_new_inputs = []
                out = SimpleNamespace()
            keys = [self.bound[obj_id] for obj_id in inference_session.obj_ids]
            masks = [blobs[k].mask(self.side) if k in blobs else torch.full((self.side, self.side), OUTSIDE)
                     for k in keys]
            dtype = self.model.dtype
            out.pred_masks = torch.stack(masks)[:, None].to(dtype)
            out.object_score_logits = torch.tensor([[INSIDE if k in blobs else OUTSIDE] for k in keys], dtype=dtype)
            return out

        monkeypatch.setattr(detector, "get_vision_features", vision)
        monkeypatch.setattr(detector, "get_text_features", text)
        monkeypatch.setattr(detector, "forward", detect)
        monkeypatch.setattr(tracker, "forward", track)
        return self


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)
