"""The batch worker: a Ray actor that loads its models once and runs one track job after another."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket
import time
from pathlib import Path
from typing import Any

from samtrack.batch.inputs import BatchInput
from samtrack.errors import SamtrackError
from samtrack.tracking import prompts as P
from samtrack.tracking.job import TrackJob

SESSION_FILE = "session.json"  # a run directory holding one has progress to resume
EVENT_INTERVAL_S = 0.25  # progress events a worker sends at most this often (and on the last frame)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def describe(exc: BaseException) -> str:
    """One line saying what went wrong: the message of an error a user can fix, else its type too."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, SamtrackError) else f"{type(exc).__name__}: {text}"


def job_for(base: TrackJob, item: BatchInput, run_dir: Path, resume: bool, ours: bool = False) -> TrackJob:
    """The track job of one input: the batch's job, with the input's own prompts when it gives some.

    `ours`: this batch made `run_dir` in an earlier attempt, so what that attempt left before its
    session was recorded (a worker killed early) may be replaced (`track --force`)."""
    force = base.force or ours
    if not item.overrides:
        return dataclasses.replace(base, input=item.input, out=str(run_dir), resume=resume, force=force)
    # A row that says what to track replaces the command's prompts, its --init-from annotations included.
    prompts = P.parse_prompt_file(item.prompts) if item.prompts else {}
    if item.text:
        P.add(prompts, P.make_prompt(0, text=item.text))
    discover = (base.categories or "") if base.discover else None
    return TrackJob.build(item.input, str(run_dir), base.settings, prompts, auto=bool(item.auto), discover=discover,
                          resume=resume, audio=base.audio, backward=base.backward, end=base.end, fps=base.fps,
                          video=base.video, gif=base.gif, force=force, allow_changes=base.allow_changes)


class TrackWorker:
    """Runs track jobs with models loaded once per worker process (see `samtrack.models.pool`).

    Progress goes to `events` (a `ray.util.queue.Queue`) as dicts: name, worker, pid, done, total.
    """

    def __init__(self, job: TrackJob, events: Any, threads: int | None = None) -> None:
        from samtrack.models.pool import ModelPool

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.job = job
        self.events = events
        self.models = ModelPool()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def process(self, item: BatchInput, out_dir: str, ours: bool = False) -> dict[str, Any]:
        """Track one input into `out_dir/item.name`, resuming what an earlier attempt left (`ours`: the
        batch started this input before); never raises for a bad input: the result's status is "done"
        or "failed" with the error."""
        run_dir = Path(out_dir) / item.name
        resumed = (run_dir / SESSION_FILE).is_file()
        before = set(self.models.loaded())
        started, t0 = now(), time.perf_counter()
        last = 0.0

        def progress(done: int, total: int, info: dict) -> None:
            nonlocal last
            if time.perf_counter() - last >= EVENT_INTERVAL_S or done == total:
                last = time.perf_counter()
                self.events.put({"name": item.name, "worker": self.worker, "pid": os.getpid(),
                                 "done": done, "total": total})

        record: dict[str, Any] = {"worker": self.worker, "started": started, "resumed": resumed}
        try:
            job = job_for(self.job, item, run_dir, resumed, ours)
            result = job.run(models=self.models, progress=progress, render_progress=False)
            seconds = time.perf_counter() - t0
            record.update(status="done", error=None, frames=result["frames"], tracked=result["tracked"],
                          objects=result["objects"], fps=round(result["tracked"] / seconds, 3) if seconds else None)
        except Exception as exc:  # noqa: BLE001 - any failure of one input is recorded, the batch goes on
            record.update(status="failed", error=describe(exc))
        record.update(finished=now(), seconds=round(time.perf_counter() - t0, 3),
                      models_loaded=[list(map(str, k)) for k in self.models.loaded() if k not in before])
        return record
