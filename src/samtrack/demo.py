"""`make demo` / `python -m samtrack.demo [INPUT]`: track objects automatically in a short clip.

Without INPUT, a 3-second synthetic clip (moving shapes on a textured background) is generated, so the
demo needs nothing from the user. The default models (sam-vit-b, r50-deaotl) download on first use;
without access to the model hub the run ends with the message naming the missing weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

from samtrack.cli import main as cli_main
from samtrack.io.synthetic import make_clip

OUT = Path("demo_out")


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
