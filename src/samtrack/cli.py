"""The `samtrack` command.

Each subcommand lives in `samtrack.commands.<name>` and exposes
`register(subparsers) -> argparse.ArgumentParser` and `run(args) -> int | None`.
Exit codes: 0 ok, 1 an error with a one-line message, 2 a usage error (options, prompts, frame numbers,
model names), 130 interrupted (Ctrl-C; a track run continues with --resume).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from samtrack import __version__
from samtrack.errors import SamtrackError, UsageError

# Order here is the order in `samtrack --help`.
COMMANDS = ["models", "download", "render", "sounds", "track", "batch", "export", "eval", "app"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samtrack",
        description="Segment and track anything in video (SAM-family segmenters + DeAOT propagation).",
    )
    parser.add_argument("--version", action="version", version=f"samtrack {__version__}")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars, only errors and results")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"samtrack.commands.{name}")
        p = module.register(sub)
        p.set_defaults(_run=module.run)
    return parser


def _quiet_libraries(quiet: bool) -> None:
    """transformers' and the hub's warnings are for developers; with --quiet their loading bars go too."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TQDM_DISABLE"] = "1"  # the loading bars of transformers' from_pretrained


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `samtrack models | head -2`: the reader has gone; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries(args.quiet)
    try:
        code = args._run(args)
    except KeyboardInterrupt:
        again = "with --resume to continue" if args.command in ("track", "batch") else "again"
        print(f"samtrack: interrupted; what was finished is kept: run the same command {again}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise
    except SamtrackError as exc:
        if args.debug:
            raise
        print(f"samtrack: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except Exception as exc:  # unexpected: still one line unless --debug
        if args.debug:
            raise
        print(f"samtrack: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
