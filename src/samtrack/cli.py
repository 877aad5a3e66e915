"""The `samtrack` command.

Each subcommand lives in `samtrack.commands.<name>` and exposes
`register(subparsers) -> argparse.ArgumentParser` and `run(args) -> int | None`.
Exit codes: 0 ok, 2 usage error (argparse), 1 runtime error with a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from samtrack import __version__
from samtrack.errors import SamtrackError

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args._run(args)
    except KeyboardInterrupt:
        print("samtrack: interrupted; finished outputs were kept", file=sys.stderr)
        return 130
    except SamtrackError as exc:
        if args.debug:
            raise
        print(f"samtrack: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # unexpected: still one line unless --debug
        if args.debug:
            raise
        print(f"samtrack: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
