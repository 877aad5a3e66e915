"""`samtrack batch` on a local Ray instance (2 CPUs): tiny random SAM, the DeAOT-T fixture, real inputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from conftest import DATA, DEAOT_FIXTURES, davis_annotations, davis_frames

from samtrack import cli
from samtrack.batch.inputs import BatchInput, collect_inputs
from samtrack.batch.runner import run_batch
from samtrack.batch.worker import job_for
from samtrack.commands.track import job_from_args
from samtrack.errors import InputError
from samtrack.tracking import prompts as P

ray = pytest.importorskip("ray")

SEQS = ("car-shadow", "motocross-jump")  # the shortest DAVIS-2016 sequences (40 frames)
BLACKSWAN = DATA / "videos" / "blackswan.mp4"


def model_options(tiny_sam: str, end: int = 2) -> list[str]:
    # Random SAM weights predict low IoU/stability: thresholds opened so segment-everything finds objects.
    # fp32: precision "auto" is decided by a timing probe, so two processes on a busy machine may differ.
    return ["--segmenter", tiny_sam, "--tracker", "deaot-t", "--checkpoint", str(DEAOT_FIXTURES / "deaott.pth"),
            "--end", str(end), "--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
            "--min-area", "20", "--precision", "fp32", "--no-video", "--no-gif"]


def manifest(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in map(json.loads, (out / "batch.jsonl").read_text().splitlines())}


def outputs(run: Path) -> dict[str, bytes]:
    """What a run made, less what differs between two identical runs (timings, dates, zip times)."""
    files = {f"masks/{p.name}": p.read_bytes() for p in sorted((run / "masks").glob("*.png"))}
    for name in ("objects.json", "masks_rle.json"):
        files[name] = (run / name).read_bytes()
    files["run.json settings"] = json.dumps(json.loads((run / "run.json").read_text())["settings"]).encode()
    return files


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for the module (starting one costs seconds); the runner joins it."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Two DAVIS sequences (one in a CSV manifest with a mask prompt from its annotation), blackswan.mp4
    and a truncated copy of it."""
    root = tmp_path_factory.mktemp("inputs")
    truncated = root / "truncated.mp4"
    truncated.write_bytes(BLACKSWAN.read_bytes()[:200_000])
    (root / "moto.yaml").write_text(f"- frame: 0\n  label: rider\n  mask: {davis_annotations(SEQS[1])}/00000.png\n")
    (root / "batch.csv").write_text(f"input,name,prompts,auto\n{davis_frames(SEQS[0])},,,true\n"
                                    f"{davis_frames(SEQS[1])},moto,moto.yaml,\n")
    return {"manifest": root / "batch.csv", "blackswan": BLACKSWAN, "truncated": truncated}


@pytest.fixture(scope="module")
def first_run(ray_session, inputs, tiny_sam, tmp_path_factory) -> tuple[Path, int, list[str]]:
    out = tmp_path_factory.mktemp("batch") / "out"
    argv = ["--quiet", "batch", str(inputs["manifest"]), str(inputs["blackswan"]), str(inputs["truncated"]),
            "--out", str(out), "--workers", "2", "--retries", "1", *model_options(tiny_sam)]
    return out, cli.main(argv), argv


def test_three_inputs_done_and_the_truncated_one_failed_with_its_error(first_run):
    out, code, _ = first_run
    assert code == 1  # one input failed
    records = manifest(out)
    assert list(records) == [SEQS[0], "moto", "blackswan", "truncated"]
    assert {n: r["status"] for n, r in records.items()} == {SEQS[0]: "done", "moto": "done", "blackswan": "done",
                                                           "truncated": "failed"}
    failed = records["truncated"]
    assert "truncated.mp4" in failed["error"] and "corrupt" in failed["error"]
    assert failed["attempts"] == 2  # first try + --retries 1
    for name in (SEQS[0], "moto", "blackswan"):
        r = records[name]
        assert r["tracked"] == 3 and r["objects"] >= 1 and r["fps"] > 0 and r["error"] is None
        assert (out / name / "run.json").is_file()
    assert not (out / "truncated" / "run.json").exists()
    moto = json.loads((out / "moto" / "objects.json").read_text())
    assert moto["1"]["label"] == "rider"  # the manifest's prompts file replaced automatic mode


def test_each_worker_loads_each_model_once(first_run):
    out, _, _ = first_run
    records = manifest(out).values()
    by_worker: dict[str, list] = {}
    for r in records:
        by_worker.setdefault(r["worker"], []).extend(map(tuple, r["models_loaded"]))
    assert len(by_worker) == 2
    for worker, loads in by_worker.items():
        assert len(loads) == len(set(loads)), f"{worker} loaded a model twice: {loads}"
        assert sum(k[0] == "tracker" for k in loads) == 1
    done = [r for r in records if r["status"] == "done"]
    assert len(done) > len(by_worker)  # so some input ran on a worker whose models were already loaded
    assert sum(len(r["models_loaded"]) for r in records) <= 2 * len(by_worker)


def test_outputs_equal_samtrack_track_on_the_same_input(first_run, tiny_sam, tmp_path):
    out, _, _ = first_run
    alone = tmp_path / "alone"
    assert cli.main(["--quiet", "track", str(BLACKSWAN), "--out", str(alone), "--auto", *model_options(tiny_sam)]) == 0
    assert outputs(out / "blackswan") == outputs(alone)


def test_a_second_run_does_no_work(first_run, capsys):
    out, _, argv = first_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    record = (out / "batch.jsonl").read_bytes()
    capsys.readouterr()
    assert cli.main(argv) == 1  # the failed input stays failed (--retry-failed tries it again)
    assert "done 3, failed 1 (4 left as an earlier run recorded them)" in capsys.readouterr().out
    assert (out / "batch.jsonl").read_bytes() == record
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_a_killed_worker_has_its_input_rescheduled_and_resumed(first_run, tiny_sam, tmp_path):
    """SIGKILL the worker tracking the first input after its second frame: every input still ends done,
    and the killed one resumes from what its first worker wrote, with the masks of an unbroken run."""
    parser = cli.build_parser()
    args = parser.parse_args(["batch", "x", "--out", str(tmp_path), "--auto", *model_options(tiny_sam, end=5)])
    items = collect_inputs([str(davis_frames(SEQS[0])), str(BLACKSWAN)])
    killed: list[int] = []

    def kill_once(event: dict) -> None:
        if not killed and event["name"] == SEQS[0] and event["done"] >= 2:
            killed.append(event["pid"])
            os.kill(event["pid"], signal.SIGKILL)

    result = run_batch(items, job_from_args(args, input="", out=args.out), tmp_path / "out", retries=1,
                       on_event=kill_once)
    assert killed
    records = manifest(tmp_path / "out")
    assert [r["status"] for r in records.values()] == ["done", "done"]
    victim = records[SEQS[0]]
    assert victim["attempts"] == 2 and victim["resumed"] is True
    assert victim["worker"].split(":")[1] != str(killed[0])  # finished by the replacement worker
    assert victim["tracked"] < 6  # the replacement went on from the frames the first worker had written
    assert not result.failed
    resumed = outputs(tmp_path / "out" / SEQS[0])
    unbroken = outputs(first_run[0] / SEQS[0])  # the same settings up to frame 2
    for i in range(3):
        assert resumed[f"masks/{i:05d}.png"] == unbroken[f"masks/{i:05d}.png"]


def test_a_folder_an_earlier_attempt_left_is_taken_over_a_foreign_one_is_not(first_run, tiny_sam, tmp_path):
    """A worker killed before its session was recorded leaves a folder the next attempt may replace;
    a folder of the user's that happens to carry an input's name is never written into."""
    out = tmp_path / "out"
    items = collect_inputs([str(BLACKSWAN), str(davis_frames(SEQS[0]))])
    (out / "blackswan" / "masks").mkdir(parents=True)
    shutil.copy(first_run[0] / "blackswan" / "masks" / "00000.png", out / "blackswan" / "masks")
    (out / "batch.jsonl").write_text(json.dumps({"name": "blackswan", "input": items[0].input,
                                                 "status": "interrupted", "attempts": 1}) + "\n")
    (out / SEQS[0]).mkdir()
    (out / SEQS[0] / "notes.txt").write_text("mine")
    args = cli.build_parser().parse_args(["batch", "x", "--out", str(out), "--auto",
                                          *model_options(tiny_sam, end=1)])
    result = run_batch(items, job_from_args(args, input="", out=args.out), out, retries=0)
    records = manifest(out)
    assert records["blackswan"]["status"] == "done" and records["blackswan"]["tracked"] == 2
    assert records[SEQS[0]]["status"] == "failed" and "not empty" in records[SEQS[0]]["error"]
    assert sorted(p.name for p in (out / SEQS[0]).iterdir()) == ["notes.txt"]
    assert [r["name"] for r in result.failed] == [SEQS[0]]


def test_sam3_concept_tracking_in_a_batch_equals_track(ray_session, tiny_sam3_video, blackswan_small, tmp_path):
    """`--auto --text` with the SAM 3 tracker (its own detect-and-track on every frame) runs in a batch
    worker as it runs in `samtrack track`: same masks, ids and labels (random tiny SAM 3, threshold 0 so
    that it finds something)."""
    frames, _ = blackswan_small
    options = ["--auto", "--text", "swan", "--tracker", tiny_sam3_video, "--score-threshold", "0",
               "--precision", "fp32", "--no-video", "--no-gif"]
    out = tmp_path / "batch"
    assert cli.main(["--quiet", "batch", str(frames), "--out", str(out), "--workers", "1", *options]) == 0
    record = manifest(out)[frames.name]
    assert record["status"] == "done" and record["objects"] >= 1, record
    run = json.loads((out / frames.name / "run.json").read_text())["models"]
    assert run["tracker_mode"] == "concept" and run["tracker_model_type"] == "sam3_video"
    assert run["segmenter"] is None  # none loaded
    labels = {o["label"] for o in json.loads((out / frames.name / "objects.json").read_text()).values()}
    assert labels == {"swan"}
    alone = tmp_path / "alone"
    assert cli.main(["--quiet", "track", str(frames), "--out", str(alone), *options]) == 0
    assert outputs(out / frames.name) == outputs(alone)


def test_manifest_rows_name_inputs_and_override_what_to_track(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "list.jsonl").write_text(
        '{"input": "a.mp4", "text": "swan."}\n\n{"input": "a.mp4", "name": "second", "auto": "true"}\n'
        '{"input": "sub/a.mp4"}\n')
    items = collect_inputs([str(tmp_path / "list.jsonl"), str(tmp_path / "a.mp4")])
    assert [i.name for i in items] == ["a", "second", "a-2", "a-3"]
    assert items[0].input == str(tmp_path / "a.mp4") and items[2].input == str(tmp_path / "sub" / "a.mp4")
    args = cli.build_parser().parse_args(["batch", "x", "--out", "o", "--click", "5,5"])
    base = job_from_args(args, input="", out="o")  # the driver's job: a click on frame 0
    text = job_for(base, items[0], tmp_path / "a", resume=False)
    assert [type(p) for p in text.prompts[0]] == [P.Text] and text.prompts[0][0].caption == "swan." and not text.auto
    auto = job_for(base, items[1], tmp_path / "b", resume=True)
    assert auto.auto and auto.resume and not auto.prompts
    same = job_for(base, items[3], tmp_path / "c", resume=False)
    assert same.prompts == base.prompts and same.out == str(tmp_path / "c") and same.input == items[3].input
    (tmp_path / "bad.csv").write_text("path\nx.mp4\n")
    with pytest.raises(InputError, match="'input' column"):
        collect_inputs([str(tmp_path / "bad.csv")])
    (tmp_path / "dup.jsonl").write_text('{"input": "a.mp4", "name": "x"}\n{"input": "b.mp4", "name": "x"}\n')
    with pytest.raises(InputError, match="named 'x'"):
        collect_inputs([str(tmp_path / "dup.jsonl")])
    assert BatchInput("a", "a").overrides is False


def test_batch_reports_usage_errors_in_one_line(tmp_path, capsys):
    assert cli.main(["batch", str(tmp_path / "x.mp4"), "--out", str(tmp_path), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    (tmp_path / "m.jsonl").write_text("[1]\n")
    assert cli.main(["batch", str(tmp_path / "m.jsonl"), "--out", str(tmp_path)]) == 1
    assert "must be a JSON object" in capsys.readouterr().err
