"""Segment-everything speed: the official SamAutomaticMaskGenerator vs samtrack on the same ``.pth``.

SAM ViT-B at full size with random weights (speed does not depend on the values; the IoU head's bias is
raised so that every prompt passes the IoU filter and no work is skipped, and the mask logits are
scaled so that masks pass the stability filter), saved in the official segment-anything layout and
loaded by both sides; SAM-Track's settings (16 points per side,
one crop layer: 5 encoder passes and 512 point prompts). Each implementation is loaded in its own
process and they run interleaved, one after the other, ``--runs`` times (a shared machine drifts: only
numbers of one run compare); the machine's measured matmul peak is printed beside them.

samtrack asks glibc to keep freed memory (``keep_freed_cpu_memory``: no mmap'd blocks, so big feature
maps are not faulted in page by page again on every layer); that setting is process-wide, which is why
each implementation has a process. ``official`` runs with glibc's defaults, as users run it;
``official-heap`` is the official generator given samtrack's malloc settings, to show what is left
of the speed-up without them.

Per stage: encoder (every vision-encoder pass), decoder (prompt encoder + mask decoder) and
post-processing (everything else: upscaling, filters, NMS, small-region clean-up). Each stage's work is
counted in the official arrangement (matmul FLOPs from the model's shapes), so "GFLOP/s" is the same
nominal work divided by each implementation's time; "% of peak" compares it with the measured peak of
the precision used.

    python benchmarks/bench_everything.py                      # official (both mallocs), samtrack fp32, bf16
    python benchmarks/bench_everything.py --impl fp32 bf16     # samtrack only
    python benchmarks/bench_everything.py --impl fp32 sam2.1-tiny edgetam   # key-frame segmenters side by side
    python benchmarks/bench_everything.py --impl --agreement 3     # bf16 vs fp32 on 3 DAVIS frames
    python benchmarks/bench_everything.py --impl --overlap 9       # key frame in a thread vs in line
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from machine import matmul_gflops
from PIL import Image

from samtrack.models.common import keep_freed_cpu_memory
from samtrack.models.sam.everything import merge_masks
from samtrack.models.segmenter import Segmenter

DAVIS = Path(__file__).resolve().parents[2] / "shared/data/davis2016/JPEGImages/480p"
FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/deaot"
SETTINGS = {"points_per_side": 16, "pred_iou_thresh": 0.8, "stability_score_thresh": 0.9, "crop_n_layers": 1,
            "crop_n_points_downscale_factor": 2, "min_mask_region_area": 200}
N_CROPS, N_PROMPTS = 5, 16 * 16 + 4 * 8 * 8
STAGES = ("encoder", "decoder", "post-processing")
IMPLS = {"official": "official SamAutomaticMaskGenerator (ViT-B)",
         "official-heap": "official SamAutomaticMaskGenerator (ViT-B), samtrack's malloc settings", "fp32": "samtrack ViT-B fp32",
         "bf16": "samtrack ViT-B bf16", "sam2.1-tiny": "samtrack SAM 2.1 tiny fp32", "edgetam": "samtrack EdgeTAM fp32"}
VIT_B = ("official", "official-heap", "fp32", "bf16")


def encoder_gflop(vision) -> float:
    """Matmul/conv FLOPs of one ViT encoder pass (linear layers, attention, windows padded, neck)."""
    side = vision.image_size // vision.patch_size
    n, c, w = side * side, vision.hidden_size, vision.window_size
    flops = 2 * n * c * 3 * vision.patch_size**2 + 2 * n * c * vision.output_channels
    flops += 2 * n * vision.output_channels**2 * 9
    for layer in range(vision.num_hidden_layers):
        flops += 2 * n * c * (4 * c + 2 * vision.mlp_dim)
        if layer in vision.global_attn_indexes:
            flops += 2 * 2 * n * n * c
        else:
            padded = (-(-side // w) * w) ** 2
            flops += 2 * 2 * padded * w * w * c
    return flops / 1e9


def decoder_gflop_per_prompt(decoder, side: int, tokens: int = 7) -> float:
    """Matmul FLOPs of the official mask decoder for one prompt (image side copied per prompt)."""
    n, c, inner = side * side, decoder.hidden_size, decoder.hidden_size // decoder.attention_downsample_rate
    cross = 2 * (2 * n * c * inner + tokens * c * inner + inner * tokens * c + 2 * tokens * n * inner)
    image_to_token = 2 * (n * c * inner + 2 * tokens * c * inner + n * inner * c + 2 * n * tokens * inner)
    layer = cross + image_to_token + 2 * tokens * c * (4 * c + 2 * decoder.mlp_dim)
    upscale = 2 * (n * c * c + 4 * n * (c // 4) * (c // 8) * 4 + 16 * n * (c // 8) * 4)
    return (decoder.num_hidden_layers * layer + cross + upscale) / 1e9


class StageClock:
    """Seconds per stage; ``wrap`` times calls of a function under a stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        return timed

    def hook(self, stage: str, module: torch.nn.Module) -> None:
        starts: list[float] = []
        module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
        module.register_forward_hook(lambda *_: self.seconds.__setitem__(
            stage, self.seconds[stage] + time.perf_counter() - starts.pop()))


def official_runner(path: Path) -> Callable[[np.ndarray], tuple[int, dict[str, float]]]:
    from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

    sam = sam_model_registry["vit_b"](checkpoint=None).eval()
    sam.load_state_dict(torch.load(path, weights_only=True))
    clock = StageClock()
    clock.hook("encoder", sam.image_encoder)
    clock.hook("decoder", sam.prompt_encoder)
    clock.hook("decoder", sam.mask_decoder)
    generator = SamAutomaticMaskGenerator(sam, **SETTINGS)

    def run(frame: np.ndarray) -> tuple[int, dict[str, float]]:
        clock.seconds.clear()
        with torch.inference_mode():
            return len(generator.generate(frame)), dict(clock.seconds)

    return run


def sam2_family(name: str) -> Segmenter:
    """SAM 2.1 tiny or EdgeTAM image model at full size with random weights, as ``--segmenter`` loads it."""
    from transformers import EdgeTamConfig, EdgeTamModel, Sam2Config, Sam2ImageProcessor, Sam2Model

    from samtrack.models.sam.backends import Sam2PromptModel
    from samtrack.models.sam2video.configs import full_size_config

    torch.manual_seed(0)
    vision = full_size_config(name).vision_config
    model = EdgeTamModel(EdgeTamConfig(vision_config=vision)) if name == "edgetam" else \
        Sam2Model(Sam2Config(vision_config=vision))
    with torch.no_grad():
        # As for ViT-B: every (sigmoid) IoU passes the 0.8 filter, so no prompt's masks are skipped, and
        # mask logits are far from 0, so that masks pass the stability filter into the post-processing.
        model.mask_decoder.iou_prediction_head.proj_out.bias.add_(5.0)
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(1000.0)
            mlp.proj_out.bias.mul_(1000.0)
    return Segmenter(Sam2PromptModel(model, Sam2ImageProcessor(), torch.device("cpu"), torch.float32))


def samtrack_runner(seg: Segmenter) -> Callable[[np.ndarray], tuple[int, dict[str, float]]]:
    clock = StageClock()
    model = seg.model
    model.embed = clock.wrap("encoder", model.embed)
    grid_decoder = model.grid_decoder
    model.grid_decoder = lambda embedding: clock.wrap("decoder", clock.wrap("decoder", grid_decoder)(embedding))

    def run(frame: np.ndarray) -> tuple[int, dict[str, float]]:
        clock.seconds.clear()
        seg._cache = None  # a new frame every time: all five encoder passes count
        return len(seg.generate(frame, **SETTINGS)), dict(clock.seconds)

    return run


def _runner(name: str, path: Path) -> Callable[[np.ndarray], tuple[int, dict[str, float]]]:
    if name.startswith("official"):
        if name == "official-heap":
            keep_freed_cpu_memory()  # the allocator settings samtrack uses, given to the official code
        return official_runner(path)
    if name in ("fp32", "bf16"):
        return samtrack_runner(Segmenter.load(str(path), device="cpu", precision=name))
    return samtrack_runner(sam2_family(name))


def _serve(conn, name: str, path: Path, threads: int) -> None:
    """Worker process: load one implementation, then time it on every frame it is sent."""
    torch.set_num_threads(threads)
    run = _runner(name, path)
    conn.send("ready")
    while (frame := conn.recv()) is not None:
        start = time.perf_counter()
        masks, stages = run(frame)
        conn.send((time.perf_counter() - start, masks, stages))


class Worker:
    """One implementation in its own process: each keeps its own malloc settings (samtrack's are
    process-wide), and one cannot warm the allocator for the next."""

    def __init__(self, name: str, path: Path, threads: int):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, name, path, threads), daemon=True)
        self.process.start()
        if self.conn.recv() != "ready":
            raise RuntimeError(f"{name} failed to load")

    def run(self, frame: np.ndarray) -> tuple[float, int, dict[str, float]]:
        self.conn.send(frame)
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join()


def bench_speed(path: Path, frame: np.ndarray, impls: list[str], runs: int) -> None:
    from segment_anything import sam_model_registry

    from samtrack.models.sam.convert import config_from_official

    config = config_from_official(sam_model_registry["vit_b"](checkpoint=None).state_dict())
    side = config.prompt_encoder_config.image_embedding_size
    work = {"encoder": N_CROPS * encoder_gflop(config.vision_config),
            "decoder": N_PROMPTS * decoder_gflop_per_prompt(config.mask_decoder_config, side)}
    workers = {name: Worker(name, path, torch.get_num_threads()) for name in impls}
    peaks_before = {"fp32": matmul_gflops(2048, 5, "float32"), "bf16": matmul_gflops(2048, 5, "bfloat16")}
    results: dict[str, list[tuple[float, int, dict[str, float]]]] = defaultdict(list)
    for r in range(runs):
        for name in impls:
            results[name].append(workers[name].run(frame))
            total, masks, _ = results[name][-1]
            print(f"run {r + 1} {name}: {total:.1f} s, {masks} masks", flush=True)
    for worker in workers.values():
        worker.close()
    peaks_after = {"fp32": matmul_gflops(2048, 5, "float32"), "bf16": matmul_gflops(2048, 5, "bfloat16")}
    peak = {k: (peaks_before[k] + peaks_after[k]) / 2 for k in peaks_before}
    print(f"\nmatmul peak (2048² products, {torch.get_num_threads()} threads): fp32 {peaks_before['fp32']:.0f} → "
          f"{peaks_after['fp32']:.0f} GFLOP/s, bf16 {peaks_before['bf16']:.0f} → {peaks_after['bf16']:.0f} GFLOP/s "
          "(before → after the runs)")
    print(f"nominal work per frame: encoder {work['encoder']:.0f} GFLOP ({N_CROPS} passes), "
          f"decoder {work['decoder']:.0f} GFLOP ({N_PROMPTS} prompts)\n")
    print("| implementation | total s | vs official | masks | encoder s | decoder s | post s | "
          "encoder % of peak | decoder % of peak |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    official = statistics.median(t for t, _, _ in results["official"]) if "official" in results else None
    for name in impls:
        total = statistics.median(t for t, _, _ in results[name])
        stages = {s: statistics.median(st.get(s, 0.0) for _, _, st in results[name]) for s in STAGES[:2]}
        post = total - sum(stages.values())
        p = peak["bf16" if name == "bf16" else "fp32"]
        ratio = f"{official / total:.2f}×" if official else "-"
        # Nominal work is ViT-B's: the SAM 2 family rows show times only.
        share = {s: f"{100 * work[s] / stages[s] / p:.0f}%" if name in VIT_B else "-" for s in STAGES[:2]}
        print(f"| {IMPLS[name]} | {total:.1f} | {ratio} | {results[name][-1][1]} | {stages['encoder']:.1f} | "
              f"{stages['decoder']:.1f} | {post:.1f} | {share['encoder']} | {share['decoder']} |")


def _scale_mask_logits(seg: Segmenter, factor: float) -> None:
    """Multiply the decoder's mask logits by ``factor`` (its hypernetworks' last layers)."""
    with torch.no_grad():
        for mlp in seg.model.model.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(factor)
            mlp.proj_out.bias.mul_(factor)


def bench_agreement(path: Path, n_frames: int) -> None:
    """bf16 vs fp32 on real DAVIS frames: decoder logits of every grid prompt, and the merged id masks.

    Random weights give mask logits near 0, which the stability filter rejects: the mask logits of
    both models are first scaled by the same power of two (exact in bf16) to a standard deviation
    of about 8, so that segment-everything returns masks to compare.
    """
    fp32 = Segmenter.load(str(path), device="cpu", precision="fp32")
    bf16 = Segmenter.load(str(path), device="cpu", precision="bf16")
    print("\n## bf16 vs fp32 (same random ViT-B weights): full-frame grid logits, id masks of everything()")
    print("| frame | max abs logit diff | mean abs diff | fp32 logit std | logit sign agreement | "
          "id mask pixel agreement | objects fp32 / bf16 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    sequences = sorted(p for p in DAVIS.iterdir() if p.is_dir())
    grid = torch.from_numpy(np.stack(np.meshgrid(np.linspace(16, 838, 16), np.linspace(15, 465, 16)), -1))

    def grid_logits(seg: Segmenter, embedding) -> torch.Tensor:
        points = seg.model.to_model_coords(grid.reshape(-1, 2), embedding)
        return seg.model.grid_decoder(embedding)(points, None)[0]

    scaled = False
    for seq in sequences[:: max(len(sequences) // n_frames, 1)][:n_frames]:
        frame = np.array(Image.open(seq / "00000.jpg").convert("RGB"))
        embeddings = [seg.model.embed([frame]) for seg in (fp32, bf16)]

        if not scaled:
            factor = 2.0 ** round(float(np.log2(8 / grid_logits(fp32, embeddings[0]).std())))
            _scale_mask_logits(fp32, factor)
            _scale_mask_logits(bf16, factor)
            scaled = True
        logits = [grid_logits(seg, e) for seg, e in zip((fp32, bf16), embeddings)]
        diff = (logits[1] - logits[0]).abs()
        signs = ((logits[1] > 0) == (logits[0] > 0)).float().mean()
        ids = [merge_masks(seg.generate(frame, **SETTINGS), frame.shape[:2], 200, 255) for seg in (fp32, bf16)]
        print(f"| {seq.name}/00000 | {diff.max():.3f} | {diff.mean():.4f} | {logits[0].std():.3f} | {signs:.4%} | "
              f"{(ids[0] == ids[1]).mean():.4%} | {ids[0].max()} / {ids[1].max()} |", flush=True)


def bench_overlap(path: Path, n_frames: int) -> None:
    """A key frame's segment-everything run in a thread while the tracker tracks the frames before it,
    against the same work one after the other (what automatic mode does)."""
    import threading

    from samtrack.models.trackers import load_tracker

    files = sorted((DAVIS / "blackswan").glob("*.jpg"))[: n_frames + 1]
    frames = [np.array(Image.open(f).convert("RGB")) for f in files]
    seg = Segmenter.load(str(path), device="cpu", precision="fp32")
    tracker = load_tracker("r50-deaotl", checkpoint=FIXTURES / "r50_deaotl.pth")
    reference = np.zeros(frames[0].shape[:2], np.uint8)
    reference[100:300, 200:500] = 1

    def track() -> None:
        tracker.reset()
        tracker.add_reference(frames[0], reference)
        for frame in frames[1:]:
            tracker.update_memory(tracker.track(frame))

    def everything() -> None:
        seg._cache = None
        seg.everything(frames[-1], **SETTINGS)

    times: dict[str, list[float]] = {}
    for mode in ("sequential", "overlapped"):
        start = time.perf_counter()
        if mode == "sequential":
            track()
            everything()
        else:
            worker = threading.Thread(target=everything)
            worker.start()
            track()
            worker.join()
        times.setdefault(mode, []).append(time.perf_counter() - start)
        print(f"{mode}: {times[mode][-1]:.1f} s", flush=True)
    print(f"\n## key-frame overlap: segment-everything (ViT-B fp32) + {n_frames} R50-DeAOT-L frames, "
          f"{torch.get_num_threads()} threads each")
    print("| schedule | seconds |\n|---|---:|")
    for mode, values in times.items():
        print(f"| {mode} | {values[0]:.1f} |")


def save_random_vit_b(path: Path) -> Path:
    """SAM ViT-B with random weights (seed 0) in the official segment-anything layout, made to find masks."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"](checkpoint=None)
    with torch.no_grad():
        # Every predicted IoU passes the 0.8 filter: no prompt's masks are skipped (with random weights
        # most would fail it, which would flatter samtrack's decoder: it skips their upscaling).
        sam.mask_decoder.iou_prediction_head.layers[-1].bias.add_(1.0)
        # Mask logits well away from 0, so that masks pass the stability filter and the post-processing
        # has masks to work on (the official generator also fails on a frame without any mask).
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(1000.0)
            mlp.layers[-1].bias.mul_(1000.0)
    torch.save(sam.state_dict(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", nargs="*", default=["official", "official-heap", "fp32", "bf16"], choices=list(IMPLS),
                        help="what to time (sam2.1-tiny / edgetam: the same settings with those segmenters)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--agreement", type=int, default=0, help="DAVIS frames for the bf16 agreement (0: skip)")
    parser.add_argument("--overlap", type=int, default=0,
                        help="tracked frames for the key-frame overlap measurement (0: skip)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--sequence", default="blackswan")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = np.array(Image.open(DAVIS / args.sequence / "00000.jpg").convert("RGB"))
    print(f"# segment everything, SAM ViT-B (random weights, official .pth), {frame.shape[1]}×{frame.shape[0]}, "
          f"torch {torch.__version__}, {args.threads} threads, median of {args.runs}")
    with tempfile.TemporaryDirectory() as tmp:
        path = save_random_vit_b(Path(tmp) / "sam_vit_b_random.pth")
        if args.impl:
            bench_speed(path, frame, args.impl, args.runs)
        if args.agreement:
            bench_agreement(path, args.agreement)
        if args.overlap:
            bench_overlap(path, args.overlap)


if __name__ == "__main__":
    main()
