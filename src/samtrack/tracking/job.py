"""One `samtrack track` job: what it needs and what it does, shared by the CLI and the batch runner.

A `TrackJob` is the whole of a track run over one input (its prompts, mode, settings and outputs).
`samtrack track` builds one from its command line and runs it; `samtrack batch` builds one per input
and runs it in a worker that keeps its models loaded, so both produce the same outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samtrack.errors import InputError, SamtrackError
from samtrack.io.sources import open_source
from samtrack.models import registry
from samtrack.models.pool import ModelPool
from samtrack.tracking import prompts as P
from samtrack.tracking.settings import Settings

Progress = Callable[[int, int, dict], None]  # (frames done, frames total, info), as Session reports it


@dataclass
class TrackJob:
    """Segment and track one input into one run directory (see `samtrack track --help`)."""

    input: str
    out: str
    settings: Settings = field(default_factory=Settings)
    prompts: P.Prompts = field(default_factory=dict)  # frame -> typed prompts (samtrack.tracking.prompts)
    auto: bool = False
    categories: str | None = None  # auto mode / discover: detect these ("swan. duck"), not segment-everything
    discover: bool = False  # with prompts: key frames every sam_gap frames add new objects too
    audio: bool = False
    backward: bool = False
    end: int | None = None
    fps: float | None = None  # frame rate of an image-folder input
    video: bool = True
    gif: bool = True
    resume: bool = False
    force: bool = False  # write into a non-empty directory that holds no run
    allow_changes: bool = False  # a resume may change settings, prompts not reached yet and the end frame

    def needed_models(self) -> list[tuple[str, str]]:
        """(name or path, kind) of every model this job loads, without duplicates."""
        return P.models_needed(self.settings, self.prompts,
                               everything=(self.auto or self.discover) and not self.categories,
                               categories=self.categories, audio=self.audio)

    def run(self, *, models: ModelPool | None = None, progress: Progress | None = None,
            log: Callable[[str], None] | None = None, tracked: Callable[[], None] | None = None,
            render_progress: bool = True) -> dict[str, Any]:
        """Track the input and write every output; returns {frames, tracked, objects, seconds, note}.

        `models` is the pool to take models from (a batch worker keeps one for all its jobs; default:
        a new one, so the models load for this job); `log` receives what the run has to say (the sounds heard with `audio`);
        `tracked()` is called when tracking is over, before the outputs are rendered. The result's
        `tracked` counts the frames processed by this call (fewer on a resumed run); `note` says when
        there was nothing to do (a finished run resumed). Bad input, prompts, frame numbers and
        checkpoint files are refused before any model loads and before anything is written.
        """
        from samtrack.tracking.session import Session

        source = open_source(self.input, fps=self.fps)  # a bad input is reported before any model is looked for
        P.check_prompts(self.prompts, frames=len(source), width=source.width, height=source.height, end=self.end,
                        max_obj_num=self.settings.max_obj_num)
        if self.audio and not self.resume and not source.has_audio:
            raise InputError(f"{self.input} has no audio track, so there is no sound to ground; "
                             "use --text instead of --audio")
        registry.ensure_available(self.needed_models())
        session = Session(source, self.out, self.settings, models=models, resume=self.resume, force=self.force,
                          allow_changes=self.allow_changes)
        prompts = {f: list(items) for f, items in self.prompts.items()}
        categories, sounds = self.categories, None
        if self.audio and not self.resume:
            sounds = session.sounds()
            if not sounds:
                raise InputError(f"no sound label in {self.input} is above --audio-threshold "
                                 f"{self.settings.audio_threshold}")
            if log:
                log("sounds: " + ", ".join(f"{label} {prob:.2f}" for label, prob in sounds))
            if self.auto:  # the sounds are the categories every key frame detects
                categories = P.join_captions(categories, P.audio_caption(sounds))
            else:
                P.add(prompts, P.Text(min(prompts, default=0), P.audio_caption(sounds), tuple(sounds)))
        count = 0

        def counted(done: int, total: int, info: dict) -> None:
            nonlocal count
            count += 1
            if progress:
                progress(done, total, info)

        started = time.perf_counter()
        note = None
        try:
            if self.auto:  # continues an interrupted automatic run by itself, up to `end`
                session.run_auto(self.end, categories=categories, sounds=sounds, progress=counted)
            elif self.resume and session.resume(prompts or None, end=self.end, progress=counted):
                pass
            else:
                session.track_prompts(prompts, self.end, discover=self.discover, categories=categories,
                                      progress=counted)
                if self.backward:
                    for frame in sorted(f for f in prompts if f > 0):
                        session.propagate_backward(frame, progress=counted)
            if tracked:
                tracked()
            if self.resume and count == 0 and session.finalized:
                covered = session.covered()
                note = (f"{self.out} already holds this finished run (frames {covered[0]}-{covered[-1]}, outputs "
                        "written); nothing to do")
            else:
                session.finalize(video=self.video, gif=self.gif, progress=render_progress,
                                 timings={"total_seconds": time.perf_counter() - started})
        except BaseException:
            with suppress(SamtrackError):  # the first error is the one to report
                session.close()
            raise
        session.close()
        return {"out": str(Path(self.out)), "frames": len(session), "tracked": count,
                "objects": len(session.objects), "seconds": time.perf_counter() - started, "note": note}
