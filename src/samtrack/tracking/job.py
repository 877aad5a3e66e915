"""One `samtrack track` job: what it needs and what it does, shared by the CLI and the batch runner.

A `TrackJob` is the whole of a track run over one input (its prompts, mode, settings and outputs).
`samtrack track` builds one from its command line and runs it; `samtrack batch` builds one per input
and runs it in a worker that keeps its models loaded, so both produce the same outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samtrack.errors import InputError, PromptError, SamtrackError
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
    start: int | None = None  # first frame to process (None: 0)
    end: int | None = None
    fps: float | None = None  # frame rate of an image-folder input
    video: bool = True
    gif: bool = True
    resume: bool = False
    force: bool = False  # write into a non-empty directory that holds no run
    allow_changes: bool = False  # a resume may change settings, prompts not reached yet and the end frame
    init_from: str | None = None  # annotations (COCO file or DAVIS-style folder) whose masks are prompts too
    exports: tuple[str, ...] = ()  # formats to export the finished run to, into <out>/exports/ (samtrack export)

    @classmethod
    def build(cls, input: str, out: str, settings: Settings, prompts: P.Prompts, *, auto: bool = False,
              discover: str | None = None, resume: bool = False, audio: bool = False, **options: Any) -> TrackJob:
        """The job for prompts and a mode, as `samtrack track` takes them: with `auto`, text prompts are the
        categories key frames detect (and nothing else may be given); `discover` None is off, "" segments
        everything on key frames, a caption detects those categories there."""
        categories = None
        if auto:
            texts = [p.caption for items in prompts.values() for p in items if isinstance(p, P.Text)]
            if len(texts) != sum(len(items) for items in prompts.values()) or options.get("init_from"):
                raise PromptError("--auto takes only --text (categories to detect), not clicks, boxes, a prompts file "
                                 "or --init-from")
            categories = ". ".join(t.strip(" .") for t in texts) or None
            prompts = {}
        elif discover is not None:
            categories = discover.strip() or None
        if not auto and not prompts and not resume and not audio and not options.get("init_from"):
            raise PromptError("nothing to track: give --auto, --audio, or prompts with --click/--box/--stroke/--text/"
                             "--prompts/--init-from")
        return cls(input, out, settings, prompts, auto=auto, categories=categories, discover=discover is not None,
                   resume=resume, audio=audio, **options)

    @property
    def concept(self) -> bool:
        """Whether this job is concept tracking: automatic mode by text with a tracker that detects and
        tracks the categories by itself on every frame (SAM 3), so no detector or segmenter loads."""
        from samtrack.models.trackers import tracks_concepts

        t = self.settings.tracker
        return self.auto and bool(self.categories or self.audio) and tracks_concepts(t.model, t.checkpoint)

    def needed_models(self) -> list[tuple[str, str]]:
        """(name or path, kind) of every model this job loads, without duplicates."""
        if self.concept:
            return P.models_needed(self.settings, {}, audio=self.audio, detector=False)
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
        prompts = P.merge(self.prompts, P.load_annotations(self.init_from, source)) if self.init_from else self.prompts
        P.check_prompts(prompts, frames=len(source), width=source.width, height=source.height, end=self.end,
                        max_obj_num=self.settings.max_obj_num)
        first = self.start or 0
        if not 0 <= first < len(source) or (self.end is not None and self.end < first):
            raise PromptError(f"--start {first} is outside the frames to track (0..{len(source) - 1 if self.end is None else self.end})")
        if prompts and min(prompts) < first:
            raise PromptError(f"the prompt on frame {min(prompts)} comes before --start {first}")
        if self.audio and not self.resume and not source.has_audio:
            raise InputError(f"{self.input} has no audio track, so there is no sound to ground; "
                             "use --text instead of --audio")
        registry.ensure_available(self.needed_models())
        session = Session(source, self.out, self.settings, models=models, resume=self.resume, force=self.force,
                          allow_changes=self.allow_changes)
        count = 0

        def counted(done: int, total: int, info: dict) -> None:
            nonlocal count
            count += 1
            if progress:
                progress(done, total, info)

        started = time.perf_counter()
        note = None
        try:
            self._track(session, prompts, counted, log)
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
        covered = session.covered()
        session.close()
        for fmt in self.exports:  # after close: an export reads the run under its lock, shared
            from samtrack.io.export import default_name, export_run

            export_run(self.out, fmt, Path(self.out) / "exports" / default_name(fmt), force=True)
        return {"out": str(Path(self.out)), "frames": len(session), "tracked": count,
                "first": covered[0] if covered else None, "last": covered[-1] if covered else None,
                "objects": len(session.objects), "seconds": time.perf_counter() - started, "note": note}

    def _track(self, session: Any, prompts: P.Prompts, progress: Progress, log: Callable[[str], None] | None) -> None:
        """The passes of this job: a resumed run's own pass continued, else automatic mode or the prompts'
        forward pass; then the backward passes not done yet (`--backward`)."""
        prompts = {f: list(items) for f, items in prompts.items() if items}
        first = self.start or 0
        backward = [str(f) for f in sorted(prompts) if f > first] if self.backward else []
        record = session.state.record
        if self.resume and session.resumable:
            tl = session.passes.timeline
            if self.categories and self.categories != tl.categories:
                raise InputError(f"the run in {self.out} detects {tl.categories or 'everything'}; a resume "
                                 f"cannot switch to {self.categories!r}: start a new run in another directory")
            results = session.iter_propagate(None, self.end, prompts=prompts or None)  # refuses other prompts first
            with closing(results):
                if sorted(record.backward) != backward and not self.allow_changes:
                    then = ", ".join(record.backward) or "none"
                    raise InputError(f"cannot resume {self.out}: frames carried backward differ ({then} then, "
                                     f"{', '.join(backward) or 'none'} now); give the options it was made with, "
                                     "or pass --allow-changes")
                for _ in results:
                    progress(session.status.done, session.status.total,
                             {"objects": len(session.objects), "direction": "forward"})
        else:
            categories, sounds = self.categories, None
            if self.audio:
                heard = session.sounds()
                if not heard:
                    raise InputError(f"no sound label in {self.input} is above --audio-threshold "
                                     f"{self.settings.audio.audio_threshold}")
                if log:
                    log("sounds: " + ", ".join(f"{label} {prob:.2f}" for label, prob in heard))
                if self.auto:  # the sounds are the categories every key frame detects
                    categories, sounds = P.join_captions(categories, P.audio_caption(heard)), dict(heard)
                else:
                    P.add(prompts, P.Text(min(prompts, default=0), P.audio_caption(heard), tuple(heard)))
            record.backward = dict.fromkeys(backward, False)
            if self.auto:
                session.propagate(first, self.end, discover=True, categories=categories, sounds=sounds,
                                  progress=progress)
                if session.passes.timeline.mode == "concept" and not session.objects:
                    d = self.settings.detector
                    raise InputError(f"nothing to track: {categories!r} was found on no frame (SAM 3 concept "
                                     f"tracking, --score-threshold {d.score_threshold}); lower the threshold or name "
                                     "the objects differently")
            else:
                if not prompts:
                    raise PromptError("no prompts given")
                session.propagate(min(prompts), self.end, prompts=prompts, discover=self.discover,
                                  categories=categories, progress=progress)
        for frame in backward:
            if not record.backward.get(frame):
                session.propagate(int(frame), first, "backward", progress=progress)
