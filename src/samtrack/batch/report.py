"""What a batch shows: one progress bar over its inputs (frames/s, ETA) and a final table."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from samtrack.batch.runner import BatchResult, Event


class BatchProgress:
    """A bar over the inputs to run; its postfix shows frames tracked, frames/s and inputs running."""

    def __init__(self, disable: bool = False) -> None:
        self.disable = disable
        self.bar: tqdm | None = None  # shown once the workers are started
        self.frames: dict[str, int] = {}  # frames tracked per input in this run
        self.running: set[str] = set()

    def start(self, todo: int, workers: int) -> None:
        self.bar = tqdm(total=todo, unit="input", disable=self.disable, dynamic_ncols=True,
                        desc=f"batch ({workers} workers)")

    def event(self, event: Event) -> None:
        self.running.add(event["name"])
        self.frames[event["name"]] = max(self.frames.get(event["name"], 0), event["done"])
        self._postfix()

    def record(self, record: dict[str, Any]) -> None:
        self.running.discard(record["name"])
        self.bar.update()
        self._postfix()

    def _postfix(self) -> None:
        frames = sum(self.frames.values())
        elapsed = self.bar.format_dict["elapsed"]
        fps = frames / elapsed if elapsed else 0.0
        self.bar.set_postfix_str(f"{frames} frames, {fps:.2f} frames/s, {len(self.running)} running")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(result: BatchResult) -> str:
    """One row per input (status, frames, objects, seconds, frames/s, error) and the totals."""
    rows = [("input", "status", "frames", "objects", "seconds", "frames/s", "error")]
    for r in result.records:
        status = r["status"] + (" (earlier)" if r["name"] in result.skipped else "")
        rows.append((r["name"], status, _cell(r.get("tracked")), _cell(r.get("objects")),
                     _cell(r.get("seconds")), _cell(r.get("fps"), 2), r.get("error") or ""))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    ran = [r for r in result.records if r["name"] not in result.skipped]
    frames = sum(r.get("tracked") or 0 for r in ran if r["status"] == "done")
    done = sum(r["status"] == "done" for r in result.records)
    wall = result.wall_seconds
    earlier = f" ({len(result.skipped)} left as an earlier run recorded them)" if result.skipped else ""
    lines.append(f"done {done}, failed {len(result.failed)}{earlier}; {frames} frames tracked in {wall:.1f} s wall"
                 + (f", {frames / wall:.2f} frames/s with {result.workers} workers" if wall and frames else ""))
    return "\n".join(line.rstrip() for line in lines)
