"""A synthetic clip (moving shapes on a textured background): the demo's and the app's example input
when no video is at hand."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


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
