"""`make demo` / `python -m samtrack.demo [INPUT]`: track objects automatically in a short clip.

Without INPUT, a 3-second synthetic clip (moving shapes on a textured background) is generated, so the
demo needs nothing from the user. The default models (sam-vit-b, r50-deaotl) download on first use;
without access to the model hub the run ends with the message naming the missing weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np

from samtrack.cli import main as cli_main

OUT = Path("demo_out")


def make_clip(path: Path, seconds: float = 3.0, fps: int = 24, size: tuple[int, int] = (640, 360)) -> Path:
    """Write an H.264 clip of three shapes moving over a textured background."""
    w, h = size
    rng = np.random.default_rng(0)
    background = (rng.integers(90, 140, (h // 8, w // 8, 3), dtype=np.uint8)
                  .repeat(8, axis=0).repeat(8, axis=1))
    yy, xx = np.mgrid[0:h, 0:w]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * fps)):
            t = i / fps
            frame = background.copy()
            disc = (xx - (120 + 120 * t)) ** 2 + (yy - 180) ** 2 < 50**2
            square = (abs(xx - 460) < 45) & (abs(yy - (90 + 50 * t)) < 45)
            bar = (abs(xx - (320 - 40 * t)) < 90) & (abs(yy - 300) < 20)
            frame[disc] = (220, 60, 50)
            frame[square] = (40, 170, 230)
            frame[bar] = (240, 220, 60)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    clip = Path(args[0]) if args else make_clip(OUT / "clip.mp4")
    out = OUT / "run"
    code = cli_main(["track", str(clip), "--auto", "--out", str(out), *(["--resume"] if out.exists() else [])])
    if code == 0:
        print(f"demo: overlay video at {out / 'overlay.mp4'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
