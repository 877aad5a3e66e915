"""What identifying a run's input by its content costs: SHA-256 of a video file and of DAVIS frame folders.

    .venv/bin/python benchmarks/bench_input_identity.py [--gb 1] [--repeats 3]

A run records its input's identity when it starts and checks it on every --resume (`input_identity`).
The content digest reads every byte once: a video file of --gb GiB (random bytes: hashing does not
depend on the content) from the page cache ("warm") and after dropping it from the cache ("cold",
when the disk honours POSIX_FADV_DONTNEED), and every DAVIS-2016 480p frame folder (1,415 JPEGs). For
the folders the whole identity is timed too, and the thumbnails alone (what it was before digests).
Times are the best of --repeats; the machine's fp32/bf16 matmul peaks show how busy it was.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from samtrack.io.rundir import _thumbnail, content_digest, input_identity, sample_frames
from samtrack.io.sources import open_source

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import matmul_gflops

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "davis2016" / "JPEGImages" / "480p"


def best(fn: Callable[[], object], repeats: int, before: Callable[[], object] = lambda: None) -> float:
    times = []
    for _ in range(repeats):
        before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def drop_cache(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the video-sized file, in GiB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    peaks = f"matmul peaks now: fp32 {matmul_gflops():.0f} GFLOP/s, bf16 {matmul_gflops(dtype='bfloat16'):.0f} GFLOP/s"
    print(peaks)

    size = int(args.gb * (1 << 30))
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "video.mp4"
        with open(video, "wb") as f:
            f.writelines(os.urandom(64 << 20) for _ in range(size // (64 << 20)))
        fake = SimpleNamespace(path=video)  # content_digest reads a video source's file only
        warm = best(lambda: content_digest(fake), args.repeats)
        cold = best(lambda: content_digest(fake), args.repeats, lambda: drop_cache(video))
    gib = size / (1 << 30)
    print(f"\nvideo file, {gib:g} GiB          seconds  s/GiB")
    print(f"  sha256, warm (page cache)  {warm:7.2f}  {warm / gib:5.2f}")
    print(f"  sha256, cold (from disk)   {cold:7.2f}  {cold / gib:5.2f}")

    folders = sorted(p for p in DAVIS.iterdir() if p.is_dir())
    sources = [open_source(p) for p in folders]
    frames = sum(len(s) for s in sources)
    megabytes = sum(f.stat().st_size for s in sources for f in s.files) / 1e6

    def thumbnails() -> None:
        for s in sources:
            [_thumbnail(s[i]) for i in sample_frames(len(s))]

    digest = best(lambda: [content_digest(s) for s in sources], args.repeats)
    identity = best(lambda: [input_identity(s) for s in sources], args.repeats)
    thumbs = best(thumbnails, args.repeats)
    per = 1000 / frames
    print(f"\nDAVIS-2016 480p: {len(sources)} folders, {frames} JPEG frames, {megabytes:.0f} MB (warm)")
    print("                                  seconds  s/1000 frames")
    print(f"  sha256 of the frame files       {digest:7.3f}  {digest * per:7.3f}")
    print(f"  whole identity (digest + thumbs) {identity:6.3f}  {identity * per:7.3f}")
    print(f"  thumbnails only (before)        {thumbs:7.3f}  {thumbs * per:7.3f}")
    print(peaks)


if __name__ == "__main__":
    main()
