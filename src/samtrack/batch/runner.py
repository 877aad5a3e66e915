"""Schedule a batch's inputs over Ray actors: backpressure, retries, dead workers replaced, resume.

One code path for every cluster: without an address a local Ray instance is started for the run
and shut down after it; with `address` ("auto", "ray://host:10001") the run joins that cluster.
Inside an already initialised Ray session (a test, a notebook) that session is used as it is.

The batch folder is locked for the whole run (`RunLock`): a second driver on it is refused at once.
A local instance exposes nothing beyond this machine: its node address is the loopback one, so its
GCS, raylet, workers and agents listen on 127.0.0.1 only, and token authentication is on with a token
made for this run (held in the environment of its processes, never written to ~/.ray).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samtrack.batch.inputs import BatchInput
from samtrack.batch.manifest import Manifest
from samtrack.batch.worker import TrackWorker, describe, now
from samtrack.errors import InputError
from samtrack.io.rundir import RunLock
from samtrack.tracking.job import TrackJob

Event = dict[str, Any]  # a worker's progress: name, worker, pid, done, total


@dataclass
class BatchResult:
    """What a batch run did: every input's record, which were left alone as finished, the wall time."""

    records: list[dict[str, Any]]
    skipped: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    workers: int = 0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "failed"]


@dataclass
class Resources:
    """How many workers, and what each one reserves on the cluster."""

    workers: int | None = None  # None: as many as the cluster's CPUs (GPUs) hold
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@contextmanager
def _local_instance_environment() -> Iterator[None]:
    """The environment a local Ray instance starts with (its processes inherit it), restored after:

    - RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray's single-machine mode, whose node address is the loopback
      one; every Ray server binds to the node address. (On Linux Ray otherwise replaces a node address of
      127.0.0.1 by the machine's network address.) Read when `ray` is imported: it takes effect when this
      process has not imported Ray yet, as in `samtrack batch`.
    - RAY_AUTH_MODE=token with a fresh RAY_AUTH_TOKEN: every Ray server refuses peers without the token,
      whatever binds where; nothing is written to ~/.ray.
    """
    wanted = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
              "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _connect(address: str | None, res: Resources) -> bool:
    """Join or start Ray; True when this call started it (so the run shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    common = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, **common)
        except ConnectionError as exc:
            raise InputError(f"cannot join the Ray cluster at --address {address} ({exc}); start it with "
                             "`ray start --head`, or leave --address out to run on this machine") from exc
    else:
        needed = math.ceil((res.workers or 1) * res.cpus_per_worker)  # else a worker would wait forever
        # address="local": a new instance even when this machine runs a cluster (that one needs --address)
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, needed), include_dashboard=False,
                 _node_ip_address="127.0.0.1", **common)
    return True


def _worker_count(res: Resources, todo: int) -> int:
    import ray

    if res.workers:
        return min(res.workers, todo)
    total = ray.cluster_resources()
    fit = int(total.get("CPU", 1) // res.cpus_per_worker) if res.cpus_per_worker > 0 else todo
    if res.gpus_per_worker > 0:
        fit = min(fit, int(total.get("GPU", 0) // res.gpus_per_worker))
        if fit < 1:
            raise InputError(f"--gpus-per-worker {res.gpus_per_worker}: the Ray cluster has "
                             f"{total.get('GPU', 0)} GPUs")
    return max(1, min(fit, todo))


def run_batch(inputs: list[BatchInput], job: TrackJob, out_dir: str | Path, *,
              resources: Resources | None = None, retries: int = 2, retry_failed: bool = False,
              address: str | None = None, on_event: Callable[[Event], None] | None = None,
              on_record: Callable[[dict[str, Any]], None] | None = None,
              on_start: Callable[[int, int], None] | None = None) -> BatchResult:
    """Run the track `job` over every input (the job's prompts unless the input gives its own), each into
    `out_dir/<name>`.

    Inputs finished by an earlier run (per `out_dir/batch.jsonl` and their run.json) are left alone,
    and so are inputs that failed before unless `retry_failed`; partial ones resume. Each input gets
    1 + `retries` attempts, whether it fails or its worker dies; a dead worker is replaced. Callbacks:
    `on_start(inputs to run, workers)`, `on_event(progress event)`, `on_record(record)` when an input
    finishes or fails for good. The batch folder is locked for the run: another driver on it is refused.
    """
    with RunLock.open(out_dir) as lock:
        local = address is None and not _ray_running()
        with _local_instance_environment() if local else nullcontext():
            return _run_batch(inputs, job, lock.out_dir, resources or Resources(), retries, retry_failed, address,
                              on_event, on_record, on_start)


def _run_batch(inputs: list[BatchInput], job: TrackJob, out: Path, res: Resources, retries: int,
               retry_failed: bool, address: str | None, on_event: Callable[[Event], None] | None,
               on_record: Callable[[dict[str, Any]], None] | None,
               on_start: Callable[[int, int], None] | None) -> BatchResult:
    manifest = Manifest(out, inputs)
    todo = [i for i in inputs if not manifest.finished(i, out, retry_failed)]
    skipped = [i.name for i in inputs if i not in todo]
    started_at = time.perf_counter()
    if not todo:  # nothing to do: no cluster is joined, nothing is written
        return BatchResult([manifest.records[i.name] for i in inputs], skipped)

    import ray
    from ray.util.queue import Empty, Queue

    started_ray = _connect(address, res)
    worker_cls = ray.remote(TrackWorker).options(num_cpus=res.cpus_per_worker, num_gpus=res.gpus_per_worker)
    threads = max(1, int(res.cpus_per_worker)) if res.gpus_per_worker == 0 else None
    events = Queue(actor_options={"num_cpus": 0})
    pending = deque(todo)
    inflight: dict[Any, tuple[Any, BatchInput]] = {}
    workers: list[Any] = []

    def new_worker() -> Any:
        workers.append(worker_cls.remote(job, events, threads))
        return workers[-1]

    for item in todo:  # attempts and model loads count within this run
        manifest.records[item.name].update(attempts=0, models_loaded=[])
    try:
        n_workers = _worker_count(res, len(todo))
        idle = [new_worker() for _ in range(n_workers)]
        if on_start:
            on_start(len(todo), n_workers)
        while pending or inflight:
            while pending and idle:  # backpressure: one input per worker in flight, the rest wait here
                worker, item = idle.pop(), pending.popleft()
                ours = manifest.records[item.name]["status"] != "pending"  # an earlier attempt made its folder
                inflight[worker.process.remote(item, str(out), ours)] = (worker, item)
                manifest.update(item.name, status="running", started=now())
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.2)
            while True:
                try:
                    event = events.get_nowait()
                except Empty:
                    break
                if on_event:
                    on_event(event)
            for ref in ready:
                worker, item = inflight.pop(ref)
                try:
                    record = ray.get(ref)
                    idle.append(worker)
                except ray.exceptions.RayError as exc:  # the worker process died: replace it
                    ray.kill(worker, no_restart=True)
                    idle.append(new_worker())
                    record = {"status": "failed", "error": f"worker died: {describe(exc)[:300]}",
                              "finished": now()}
                old = manifest.records[item.name]
                attempts = old["attempts"] + 1
                record["models_loaded"] = old["models_loaded"] + record.get("models_loaded", [])
                if record["status"] == "failed" and attempts <= retries:
                    manifest.update(item.name, **{**record, "status": "retrying", "attempts": attempts})
                    pending.append(item)
                    continue
                done = manifest.update(item.name, **record, attempts=attempts)
                if on_record:
                    on_record(done)
    except BaseException:
        for _, item in inflight.values():  # a re-run resumes them
            manifest.update(item.name, status="interrupted")
        raise
    finally:
        for worker in workers:  # their CPUs go back to the cluster now, not when the driver exits
            ray.kill(worker, no_restart=True)
        ray.kill(events.actor, no_restart=True)
        if started_ray:
            ray.shutdown()
    return BatchResult([manifest.records[i.name] for i in inputs], skipped,
                       time.perf_counter() - started_at, n_workers)
