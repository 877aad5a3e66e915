"""`samtrack batch INPUT... --out DIR`: track many videos on Ray, on one machine or a cluster."""

from __future__ import annotations

import argparse

from samtrack.commands import track


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "batch", help="track many videos or image folders on Ray (this machine or a cluster)",
        description="Run `samtrack track` over many inputs with workers that load the models once. Each input "
                    "goes to DIR/<name>/ (the same outputs as `track`); DIR/batch.jsonl records every input's "
                    "status, timings and error. Running the same command again skips finished inputs and "
                    "resumes partial ones. Automatic mode unless prompts are given.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders of frames, or manifests (.csv / .jsonl: input, name, prompts, "
                        "text, auto per row)")
    p.add_argument("--out", "-o", required=True, help="folder of the batch: one run folder per input")
    ray = p.add_argument_group("Ray")
    ray.add_argument("--address", default=None,
                     help="join this Ray cluster ('auto' or ray://host:port) instead of starting a local one")
    ray.add_argument("--workers", type=int, default=None,
                     help="workers (each loads the models once); default: as many as the CPUs/GPUs hold")
    ray.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs each worker reserves (and uses)")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0,
                     help="GPUs each worker reserves (fractions share a GPU); use with --device cuda")
    ray.add_argument("--retries", type=int, default=2,
                     help="attempts after the first for an input that fails or whose worker dies")
    ray.add_argument("--retry-failed", action="store_true",
                     help="try again the inputs an earlier run of this batch recorded as failed")
    track.add_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from samtrack.batch.inputs import collect_inputs
    from samtrack.batch.report import BatchProgress, table
    from samtrack.batch.runner import Resources, run_batch
    from samtrack.errors import PromptError

    if args.workers is not None and args.workers < 1:
        raise PromptError(f"--workers must be at least 1, got {args.workers}")
    if args.retries < 0:
        raise PromptError(f"--retries must be 0 or more, got {args.retries}")
    if args.gpus_per_worker > 0 and args.device == "cpu":
        raise PromptError("--gpus-per-worker reserves GPUs the models would not use: add --device cuda")
    if not (args.auto or args.prompts or args.audio or getattr(args, "prompt_items", None)):
        args.auto = True  # a batch segments everything unless told what to track
    job = track.job_from_args(args, input="", out=args.out)  # the base job; each input replaces its own parts
    inputs = collect_inputs(args.inputs)
    resources = Resources(args.workers, args.cpus_per_worker, args.gpus_per_worker)
    progress = BatchProgress(disable=args.quiet)
    try:
        result = run_batch(inputs, job, args.out, resources=resources, retries=args.retries,
                           retry_failed=args.retry_failed, address=args.address, on_start=progress.start,
                           on_event=progress.event, on_record=progress.record)
    finally:
        progress.close()
    print(table(result))
    return 1 if result.failed else 0
