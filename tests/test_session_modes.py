"""Ways of running the engine: sound as text, discovery alongside prompts, SAM-Track's 40% guard, many
sessions over shared models, and the track options a SAM-Track user expects (--fps, --stroke)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import DEAOT_FIXTURES, davis_annotations, davis_frames
from PIL import Image
from test_audio import video_with_sound  # noqa: F401 - a fixture: a short MP4 with a 440 Hz tone

from samtrack import cli
from samtrack.models.grounding import Detection
from samtrack.models.pool import ModelPool
from samtrack.tracking import prompts as P
from samtrack.tracking.job import TrackJob
from samtrack.tracking.session import Session
from samtrack.tracking.settings import Settings

CKPT = DEAOT_FIXTURES / "deaott.pth"


class StillTracker:
    """Tracker double: objects stay where they were referenced."""

    precision = "fp32"

    def reset(self):
        self.ids = None

    def add_reference(self, frame, ids):
        self.ids = ids.copy()

    def track(self, frame, return_logits=False):
        return self.ids.copy()

    def update_memory(self, ids):
        self.ids = ids.copy()


class BoxSegmenter:
    """Segmenter double: a box prompt gives the box; segment-everything gives fixed segments."""

    def __init__(self, segments: np.ndarray | None = None):
        self.segments = segments

    def box(self, frame, box):
        mask = np.zeros(frame.shape[:2], bool)
        x0, y0, x1, y1 = (round(v) for v in box)
        mask[y0:y1, x0:x1] = True
        return mask

    def everything(self, frame, **options):
        return self.segments.copy()


class ScriptedDetector:
    """Detector double: detections per call (the last list repeats), and the captions asked."""

    options = ("box_threshold", "text_threshold", "box_size_threshold")

    def __init__(self, *per_call: list[Detection]):
        self.per_call, self.captions = list(per_call), []

    def detect(self, frame, caption, **thresholds):
        self.captions.append(caption)
        return self.per_call[min(len(self.captions), len(self.per_call)) - 1]


class FixedTagger:
    """Audio tagger double: fixed label probabilities, filtered as AST's tag() does."""

    heard = (("Bird", 0.61), ("Water", 0.3), ("Wind noise", 0.04), ("Rain", 0.02))

    def tag(self, waveform, rate, label_num, threshold):
        return [(label, p) for label, p in self.heard[:label_num] if p > threshold]


class Doubles(ModelPool):
    """A model pool handing out the doubles above (a job takes its models from a pool)."""

    def __init__(self, **models):
        super().__init__()
        self.doubles = models

    def segmenter(self, settings):
        return self.doubles["segmenter"]

    def tracker(self, settings):
        return self.doubles["tracker"]

    def detector(self, settings):
        return self.doubles["detector"]

    def audio_tagger(self, settings):
        return self.doubles["audio_tagger"]


def local_settings(tmp_path: Path, **kw) -> Settings:
    """Settings whose model names are existing paths (weights are checked by the loaders, which the
    doubles replace)."""
    here = str(tmp_path)
    return Settings(min_area=4).updated({"segmenter.model": here, "tracker.model": here, "detector.model": here,
                                         "audio.model": here, **kw})


@pytest.mark.parametrize("top1", [False, True])
def test_auto_audio_detects_the_sounds_on_every_key_frame(video_with_sound, tmp_path, top1):  # noqa: F811
    """`track --auto --audio`: the labels heard (above --audio-threshold among the top --label-num, or the
    best one with --audio-top1) are the categories of SAM-Track's text automatic mode."""
    det = ScriptedDetector([Detection((5, 5, 20, 20), 0.9, "bird")])
    job = TrackJob(str(video_with_sound), str(tmp_path / "run"), local_settings(tmp_path, sam_gap=10, **{"audio.audio_top1": top1}),
                   auto=True, audio=True, video=False, gif=False)
    job.run(models=Doubles(segmenter=BoxSegmenter(), detector=det, tracker=StillTracker(),
                           audio_tagger=FixedTagger()))
    caption = "Bird" if top1 else "Bird. Water"
    assert det.captions == [caption] * 3  # key frames 0, 10, 20 of 25
    objects = json.loads((tmp_path / "run" / "objects.json").read_text())
    assert objects["1"]["label"] == "bird"
    sounds = {"Bird": 0.61} if top1 else {"Bird": 0.61, "Water": 0.3}
    assert objects["1"]["prompt"]["kind"] == "audio" and objects["1"]["prompt"]["sounds"] == sounds


def test_audio_with_prompts_grounds_the_sounds_on_the_first_prompt_frame(video_with_sound, tmp_path):  # noqa: F811
    det = ScriptedDetector([Detection((5, 5, 20, 20), 0.9, "bird"), Detection((30, 30, 50, 45), 0.5, "water")])
    prompts = {3: [P.make_prompt(3, box=(40, 2, 60, 12), label="post")]}
    job = TrackJob(str(video_with_sound), str(tmp_path / "run"), local_settings(tmp_path), prompts=prompts,
                   audio=True, end=6, video=False, gif=False)
    job.run(models=Doubles(segmenter=BoxSegmenter(), detector=det, tracker=StillTracker(),
                           audio_tagger=FixedTagger()))
    assert det.captions == ["Bird. Water"]
    objects = json.loads((tmp_path / "run" / "objects.json").read_text())
    assert [(o["label"], o["prompt"]["kind"], o["added_on_frame"]) for o in objects.values()] == \
        [("post", "box", 3), ("bird", "audio", 3), ("water", "audio", 3)]


def test_text_categories_keep_sam_tracks_40_percent_guard(blackswan_small, tmp_path):
    frames, _ = blackswan_small  # 213 x 120
    small = Detection((10, 10, 40, 40), 0.9, "duck")
    huge = Detection((60, 0, 213, 120), 0.8, "water")  # 153 x 120: 72% of the frame
    det = ScriptedDetector([small, huge], [small, huge])
    s = Session(frames, tmp_path / "run", Settings(sam_gap=3, min_area=4), segmenter=BoxSegmenter(), detector=det,
                tracker=StillTracker())
    s.propagate(0, discover=True, categories="duck. water")
    s.close()
    # frame 0 (where the pass starts) takes both; later key frames would not take the huge one
    assert [(o.label, o.frame) for o in s.objects.values()] == [("duck", 0), ("water", 0)]

    det = ScriptedDetector([small], [small, huge])  # the huge one appears on key frame 3
    s = Session(frames, tmp_path / "run2", Settings(sam_gap=3, min_area=4), segmenter=BoxSegmenter(),
                detector=det, tracker=StillTracker())
    s.propagate(0, discover=True, categories="duck. water")
    s.close()
    assert [(o.label, o.frame) for o in s.objects.values()] == [("duck", 0)]
    assert len(det.captions) == 2  # key frames 0 and 3

    segments = np.zeros((120, 213), np.uint8)  # the same huge segment from segment-everything: no guard
    segments[:, 60:] = 1
    s = Session(frames, tmp_path / "run3", Settings(sam_gap=3, min_area=4), segmenter=BoxSegmenter(segments),
                tracker=StillTracker())
    s.propagate(0, discover=True, prompts={0: [P.make_prompt(0, box=(10, 10, 40, 40))]})
    s.close()
    assert [(o.prompt["kind"], o.frame) for o in s.objects.values()] == [("box", 0), ("everything", 0)]


def test_prompts_and_discovery_in_one_run(blackswan_small, tmp_path):
    """`track --box ... --discover`: the prompted objects, plus what segment-everything finds every
    sam_gap frames that is not tracked yet (SAM-Track's Start Tracking after clicks or boxes)."""
    frames, _ = blackswan_small
    segments = np.zeros((120, 213), np.uint8)
    segments[10:40, 10:40] = 1  # the prompted box: already tracked, not new
    segments[60:100, 100:150] = 2
    seg = BoxSegmenter(segments)
    s = Session(frames, tmp_path / "run", Settings(sam_gap=2, min_area=4), segmenter=seg, tracker=StillTracker())
    prompts = {1: [P.make_prompt(1, box=(10, 10, 40, 40), label="duck")],
               3: [P.make_prompt(3, box=(160, 5, 200, 30), label="post")]}
    s.propagate(min(prompts), discover=True, prompts=prompts)
    s.close()
    assert [(o.label, o.prompt["kind"], o.frame) for o in s.objects.values()] == \
        [("duck", "box", 1), ("object 2", "everything", 2), ("post", "box", 3)]
    assert set(np.unique(s.mask(5)).tolist()) == {0, 1, 2, 3}


def test_cli_discover_with_prompts(blackswan_small, tiny_sam, tmp_path):
    frames, _ = blackswan_small
    out = tmp_path / "run"
    code = cli.main(["--quiet", "track", str(frames), "--out", str(out), "--box", "50,20,120,80", "--discover",
                     "--segmenter", tiny_sam, "--tracker", "deaot-t", "--checkpoint", str(CKPT), "--sam-gap", "2",
                     "--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
                     "--min-area", "20", "--end", "2", "--no-video", "--no-gif"])
    assert code == 0
    kinds = [o["prompt"]["kind"] for o in json.loads((out / "objects.json").read_text()).values()]
    assert kinds[0] == "box" and "everything" in kinds


def test_cli_stroke_and_fps(blackswan_small, tiny_sam, tmp_path):
    frames, _ = blackswan_small
    out = tmp_path / "run"
    code = cli.main(["--quiet", "track", str(frames), "--out", str(out), "--stroke", "60,30;90,50;110,70",
                     "--fps", "12", "--segmenter", tiny_sam, "--tracker", "deaot-t", "--checkpoint", str(CKPT),
                     "--end", "1", "--no-gif"])
    assert code == 0
    objects = json.loads((out / "objects.json").read_text())
    assert objects["1"]["prompt"] == {"kind": "stroke", "frame": 0, "points": [[60, 30], [90, 50], [110, 70]]}
    with av.open(str(out / "overlay.mp4")) as video:
        assert video.streams.video[0].average_rate == 12


def _clip(tmp_path: Path, seq: str) -> tuple[Path, np.ndarray]:
    out = tmp_path / seq
    out.mkdir()
    for path in sorted(davis_frames(seq).glob("*.jpg"))[:5]:
        im = Image.open(path)
        im.resize((im.width // 4, im.height // 4), Image.BILINEAR).save(out / path.name, quality=95)
    gt = Image.open(min(davis_annotations(seq).glob("*.png")))
    return out, np.array(gt.resize((gt.width // 4, gt.height // 4), Image.NEAREST)) > 0


def test_sessions_interleaved_on_two_videos_equal_separate_runs(tmp_path):
    """Two sessions in one process, one model pool: frame by frame in turn, and in two threads at once,
    they produce exactly the masks of two runs on their own."""
    clips = [_clip(tmp_path, "blackswan"), _clip(tmp_path, "bmx-trees")]
    settings = Settings(precision="fp32").updated({"tracker.model": "deaot-t", "tracker.checkpoint": str(CKPT)})

    def masks(out: Path) -> list[bytes]:
        return [p.read_bytes() for p in sorted((out / "masks").glob("*.png"))]

    def session(k: int, out: Path, pool: ModelPool) -> Session:
        s = Session(clips[k][0], out, settings, models=pool)
        s.add_object(0, mask=clips[k][1])
        return s

    alone = []
    for k in range(2):
        with session(k, tmp_path / f"alone{k}", ModelPool()) as s:
            s.propagate(0)
        alone.append(masks(tmp_path / f"alone{k}"))

    pool = ModelPool()
    a, b = session(0, tmp_path / "a", pool), session(1, tmp_path / "b", pool)
    for _ in zip(a.iter_propagate(0), b.iter_propagate(0), strict=True):
        pass
    a.close()
    b.close()
    assert [masks(tmp_path / "a"), masks(tmp_path / "b")] == alone
    assert len(pool.loaded()) == 1

    threaded = [session(k, tmp_path / f"t{k}", pool) for k in range(2)]
    workers = [threading.Thread(target=s.propagate, args=(0,)) for s in threaded]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for s in threaded:
        s.close()
    assert [masks(tmp_path / "t0"), masks(tmp_path / "t1")] == alone


def test_automatic_mode_from_a_later_start_frame_discovers_there(blackswan_small, tmp_path):
    """`track --auto --start 3`: the first frame of the pass is a key frame even when it is not a multiple
    of sam_gap; later key frames stay on multiples of sam_gap (SAM-Track's)."""
    frames, _ = blackswan_small
    segments = np.zeros((120, 213), np.uint8)
    segments[10:40, 10:40] = 1
    s = Session(frames, tmp_path / "run", Settings(sam_gap=4, min_area=4), segmenter=BoxSegmenter(segments),
                tracker=StillTracker())
    s.propagate(3, discover=True)
    s.close()
    assert [(o.prompt["kind"], o.frame) for o in s.objects.values()] == [("everything", 3)]
    assert not s.mask(2).any() and s.mask(5).any()  # frames before the start are left alone
