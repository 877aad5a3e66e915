"""A session's run directory: opened under its lock, the record of what made the run, and what a
resume would change.

    lock, state = open_run_dir(out, resume=False, force=False)   # refuses a busy or foreign directory
    record = RunRecord.of(source, settings)                     # input identity + settings
    record.prompts, record.end = prompt_records(prompts), end    # set when a pass starts
    problems = record.changes_to(old_record, tracked_to=k)       # what a resume would change

The record lives in `session.json` under "run". A resume may not change the input (another video
mixed into the masks); prompts, settings and the last frame may change only when the caller asks
(`allow_changes`), and never on frames already tracked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from samtrack.errors import InputError, OutputError
from samtrack.io.atomic import atomic_path
from samtrack.io.outputs import MASKS_DIR, OUTPUT_FILES, RENDER_JSON
from samtrack.io.rundir import RunLock, contents, input_differences, input_identity, link_refusal
from samtrack.io.sources import FrameSource
from samtrack.tracking.settings import Settings, flag

if TYPE_CHECKING:
    from samtrack.tracking.objects import ObjectRegistry

SESSION_FILE = "session.json"
# Settings that say where a run computes, not what: a resume may change them freely.
_FREE_SETTINGS = frozenset({"device"})


def open_run_dir(out_dir: str | Path, *, resume: bool, force: bool) -> tuple[RunLock, dict | None]:
    """Lock `out_dir` (creating it) and read the run it holds: (lock, session state or None).

    Refuses a directory another run holds, a run when `resume` is not set, and a non-empty directory
    that is not a run unless `force` (then samtrack's outputs in it are removed first).
    """
    lock = RunLock.open(out_dir)
    out = lock.out_dir
    try:
        state_file = out / SESSION_FILE
        if state_file.exists():
            if not resume:
                raise OutputError(f"{out} already holds a run; pass resume=True (--resume) to continue it, "
                                  "or choose another output directory")
            return lock, _read_state(state_file)
        held = contents(out)
        if held and not force:
            shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
            raise OutputError(f"{out} is not empty and holds no samtrack track run ({shown}); choose a new or "
                              "empty directory, or pass force=True (--force) to write the run there (samtrack's "
                              "outputs in it are replaced, other files kept)")
        if held:
            remove_outputs(out, masks=True)
        return lock, None
    except BaseException:
        discard_if_empty(lock)
        raise


def _read_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = None
    if not isinstance(state, dict):
        raise InputError(f"{path} is not a readable samtrack session file; move the directory aside and "
                         "start a new run")
    return state


def remove_outputs(out: Path, *, masks: bool = False) -> None:
    """Delete what `finalize` wrote (and, with `masks`, the mask PNGs and `render`'s record), so no stale
    file outlives a change.

    Only names samtrack writes are removed, and only inside `out`: a link in place of one of them is
    removed itself, never what it points to, and a linked masks/ folder is refused before anything goes.
    """
    folder = out / MASKS_DIR
    if masks and folder.is_symlink():
        raise link_refusal(folder)
    for name in (*OUTPUT_FILES, *((RENDER_JSON,) if masks else ())):
        path = out / name
        if path.is_symlink() or path.is_file():
            path.unlink()
    if masks and folder.is_dir():
        for png in folder.glob("*.png"):
            if png.is_symlink() or png.is_file():
                png.unlink()


def discard_if_empty(lock: RunLock) -> None:
    """Release `lock`; when the directory holds nothing (a run that never wrote), remove what the
    session made, so the same command can start afresh."""
    out = lock.out_dir
    lock.release()
    if contents(out):
        return
    masks = out / MASKS_DIR
    if masks.is_dir() and not masks.is_symlink() and not any(masks.iterdir()):
        masks.rmdir()
    if lock.created and out.is_dir() and not any(out.iterdir()):
        shutil.rmtree(out, ignore_errors=True)


# ------------------------------------------------------------------------------------------ prompts

def _plain(value: Any) -> Any:
    """A JSON-comparable form of a prompt field (masks by digest)."""
    if isinstance(value, np.ndarray):
        packed = np.packbits(np.asarray(value, dtype=bool))
        return {"shape": list(value.shape), "sha256": hashlib.sha256(packed.tobytes()).hexdigest()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def prompt_records(prompts: dict[int, list[Any]]) -> dict[str, list[dict]]:
    """frame -> what each prompt on it is (kind, every field, masks by digest), for comparing runs."""
    records: dict[str, list[dict]] = {}
    for frame, items in sorted(prompts.items()):
        if items:
            # obj_id only when set, so runs recorded before prompts had one compare equal
            records[str(frame)] = [{"kind": type(p).__name__,
                                    **{f.name: _plain(getattr(p, f.name)) for f in dataclasses.fields(p)
                                       if f.name != "frame" and not (f.name == "obj_id" and p.obj_id is None)}}
                                   for p in items]
    return records


# ------------------------------------------------------------------------------------------- record

def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


@dataclass
class RunRecord:
    """What made a run: its input's identity, its settings, and (once a pass starts) its prompts and
    last frame (None: the input's last)."""

    input: dict
    settings: dict
    prompts: dict[str, list[dict]] = field(default_factory=dict)
    end: int | None = None
    backward: dict[str, bool] = field(default_factory=dict)  # frame a backward pass starts from -> reached 0

    @classmethod
    def of(cls, source: FrameSource, settings: Settings) -> RunRecord:
        return cls(input_identity(source), settings.to_dict())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> RunRecord | None:
        """The record of a session file (None for runs made before records were kept)."""
        data = state.get("run")
        if not isinstance(data, dict) or not isinstance(data.get("input"), dict):
            return None
        return cls(data["input"], dict(data.get("settings") or {}), dict(data.get("prompts") or {}),
                   data.get("end"), dict(data.get("backward") or {}))

    def input_problem(self, recorded: RunRecord, out: Path, given: str | Path) -> str | None:
        """Why this input cannot continue the `recorded` run in `out` (None when it is the same)."""
        diffs = input_differences(recorded.input, self.input)
        if not diffs:
            return None
        return (f"{given} is not the input of the run in {out} ({'; '.join(diffs)}; the run was made from "
                f"{recorded.input.get('path')}); resume with that input, or write a new run to another "
                "output directory")

    def setting_changes(self, recorded: RunRecord) -> list[str]:
        """'--flag: old then, new now' for every setting that differs (where it runs aside)."""
        old, new = Settings.from_dict(recorded.settings).flat(), Settings.from_dict(self.settings).flat()
        return [f"{flag(k)}: {_show(old[k])} then, {_show(new[k])} now"
                for k in new if k not in _FREE_SETTINGS and old[k] != new[k]]

    def prompt_changes(self, recorded: RunRecord, tracked_to: int) -> tuple[list[str], list[str]]:
        """(changes a resume may make when asked, changes it can never make: frames already tracked)."""
        allowed, impossible = [], []
        for key in sorted(set(recorded.prompts) | set(self.prompts), key=int):
            old, new = recorded.prompts.get(key, []), self.prompts.get(key, [])
            if old == new:
                continue
            what = f"prompts on frame {key} differ ({len(old)} then, {len(new)} now)" if len(old) != len(new) \
                else f"prompts on frame {key} differ"
            if int(key) <= tracked_to:
                impossible.append(f"{what}, but frame {key} is already tracked")
            else:
                allowed.append(what)
        return allowed, impossible

    def end_changes(self, recorded: RunRecord, last_frame: int, tracked_to: int) -> tuple[list[str], list[str]]:
        """(a change of the last frame a resume may make when asked, one it can never make)."""
        old = last_frame if recorded.end is None else recorded.end
        new = last_frame if self.end is None else self.end
        if old == new:
            return [], []
        what = f"last frame to track: {old} then, {new} now"
        if new < tracked_to:
            return [], [f"{what}, but frames up to {tracked_to} are already tracked"]
        return [what], []


# ---------------------------------------------------------------------------------------- run state

class RunState:
    """The run a session writes in `out_dir`: the directory (locked until :meth:`release`), the record
    of what made it, and its state file (`session.json`: objects, timeline, record, outputs written).

    Opening checks a resumed run: the input must be the one it was made from; other settings (with
    `settings` None, the run's own are used) are refused unless `allow_changes`.
    """

    def __init__(self, out_dir: str | Path, source: FrameSource, settings: Settings | None, *, resume: bool,
                 force: bool, allow_changes: bool) -> None:
        self.out_dir = Path(out_dir)
        self.source = source
        self.allow_changes = allow_changes
        self.lock, self.state = open_run_dir(self.out_dir, resume=resume, force=force)
        try:
            self.settings, self.record = self._check(settings or Settings(), settings is None)
        except BaseException:
            discard_if_empty(self.lock)
            raise

    def _check(self, settings: Settings, own: bool) -> tuple[Settings, RunRecord]:
        record = RunRecord.of(self.source, settings)
        state = self.state
        if state is None:
            return settings, record
        if state.get("frames") != len(self.source):
            raise InputError(f"{self.source.path} is not the input of the run in {self.out_dir} ({state.get('frames')} "
                             f"frames then, {len(self.source)} now); resume with that input, or write a new run to "
                             "another output directory")
        recorded = RunRecord.from_state(state)
        if recorded is None:  # a run from before records were kept: its settings, as then
            recorded = RunRecord(record.input, dict(state.get("settings") or {}))
            own = True
        problem = record.input_problem(recorded, self.out_dir, self.source.path)
        if problem:
            raise InputError(problem)
        if own:
            settings = Settings.from_dict(recorded.settings)
        else:
            changes = record.setting_changes(recorded)
            if changes and not self.allow_changes:
                raise InputError(f"cannot resume {self.out_dir}: it was made with other settings ("
                                 f"{'; '.join(changes)}); give the options it was made with, or pass "
                                 "allow_changes=True (--allow-changes) to continue with the new values")
        recorded.input, recorded.settings = record.input, settings.to_dict()
        return settings, recorded

    def load(self, registry: ObjectRegistry) -> Any:
        """Read the saved objects into `registry`; the saved timeline (None without a state or a pass)."""
        from samtrack.tracking.propagation import Timeline

        if self.state is None:
            return None
        try:
            registry.load_dict(self.state)
            return Timeline.from_dict(self.state.get("timeline"))
        except (ValueError, KeyError, TypeError, InputError) as exc:
            raise InputError(f"{self.out_dir / SESSION_FILE} is not a samtrack session file ({exc}); move the "
                             "directory aside and start a new run") from exc

    def save(self, registry: ObjectRegistry, timeline: Any, finalized: bool) -> None:
        state = {
            "version": 1,
            "source": str(self.source.path),
            "frames": len(self.source),
            "settings": self.record.settings,
            **registry.to_dict(),
            "timeline": None if timeline is None else timeline.to_dict(),
            "run": self.record.to_dict(),
            "finalized": finalized,
        }
        with atomic_path(self.out_dir / SESSION_FILE) as tmp:
            tmp.write_text(json.dumps(state, indent=1))

    def resume_end(self, prompts: dict[int, list[Any]] | None, end: int | None, tracked_to: int) -> int:
        """The last frame a resumed pass tracks to; refuses prompts or an end that differ from the
        run's, unless changes are allowed and they concern frames not tracked yet (`tracked_to`)."""
        recorded, last = self.record, len(self.source) - 1
        new = RunRecord(recorded.input, recorded.settings,
                        recorded.prompts if prompts is None else prompt_records(prompts),
                        recorded.end if end is None else end, recorded.backward)
        allowed, impossible = new.prompt_changes(recorded, tracked_to)
        more, never = new.end_changes(recorded, last, tracked_to)
        if impossible or never:
            raise InputError(f"cannot resume {self.out_dir}: {'; '.join(impossible + never)}; a resume cannot "
                             "change what is tracked already: start a new run in another output directory")
        if (allowed or more) and not self.allow_changes:
            raise InputError(f"cannot resume {self.out_dir}: {'; '.join(allowed + more)}; give the prompts and "
                             "end frame it was made with, or pass allow_changes=True (--allow-changes) to "
                             "continue with the new ones")
        unreached = [f for f in recorded.prompts if int(f) > tracked_to]
        if prompts is None and unreached:
            raise InputError(f"cannot resume {self.out_dir} without its prompts: frames {', '.join(unreached)} "
                             "have prompts it has not reached yet; give the same prompts again")
        self.record = new
        return last if new.end is None else new.end

    def release(self, keep: bool) -> None:
        """Release the directory; without `keep` (a run that wrote nothing) leave no run behind."""
        if keep:
            self.lock.release()
        else:
            discard_if_empty(self.lock)
