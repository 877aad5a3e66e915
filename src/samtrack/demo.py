"""`make demo` / `python -m samtrack.demo [INPUT]`: track objects automatically in a short clip.

Without INPUT, a 3-second synthetic clip (moving shapes on a textured background) is generated, so the
demo needs nothing from the user. The default models (sam-vit-b, r50-deaotl) download on first use;
without access to the model hub the demo says, in one message, how to fetch them, and leaves nothing
behind.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from samtrack.cli import main as cli_main
from samtrack.errors import ModelError
from samtrack.models import registry
from samtrack.tracking.settings import Settings

OUT = Path("demo_out")
_MODELS = [(Settings().segmenter.model, "segmenter"), (Settings().tracker.model, "tracker")]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        registry.ensure_available(_MODELS)
    except ModelError:
        names = " ".join(name for name, _ in _MODELS)
        print(f"demo: the default models ({', '.join(n for n, _ in _MODELS)}) are not on this machine and could "
              "not be downloaded.\n"
              f"Fetch them once with `samtrack download {names}` (or `.venv/bin/samtrack download {names}`) on a "
              "machine with internet access, copy its model caches here, then run `make demo` again.",
              file=sys.stderr)
        return 1
    made = not args and not OUT.exists()
    if not args:
        from samtrack.io.synthetic import make_clip

        clip = OUT / "clip.mp4"
        if not clip.exists():
            make_clip(clip)
    else:
        clip = Path(args[0])
    out = OUT / "run"
    code = cli_main(["-q", "track", str(clip), "--auto", "--out", str(out), *(["--resume"] if out.exists() else [])])
    if code == 0:
        print(f"demo: the run is in {out}/: overlay.mp4 (the video with every object's mask), overlay.gif, "
              "masks/ (one id-mask PNG per frame), masks.zip, masks_rle.json, objects.json, run.json")
    elif made and not (out / "session.json").exists():
        shutil.rmtree(OUT, ignore_errors=True)  # nothing worth keeping: no leftovers
    return code


if __name__ == "__main__":
    sys.exit(main())
