"""`samtrack download NAME...`: fetch model weights into the cache, with checksum verification."""

from __future__ import annotations

import argparse

from samtrack.models import registry


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("download", help="download model weights into the local cache",
                       description="Download named models (see `samtrack models`) into the cache: hub models "
                                   "into the Hugging Face cache, checkpoint files into $SAMTRACK_CACHE "
                                   "(default ~/.cache/samtrack), checking size and sha256 where published.")
    p.add_argument("names", nargs="+", metavar="NAME", help="model names or aliases, e.g. sam-vit-b r50-deaotl")
    p.add_argument("--force", action="store_true", help="download again even when already cached")
    return p


def run(args: argparse.Namespace) -> int:
    specs = [registry.get_spec(name) for name in args.names]  # all names checked before any download
    for spec in specs:
        if registry.is_cached(spec) and not args.force:
            print(f"{spec.name}: already cached")
            continue
        path = registry.download(spec.name, progress=not args.quiet)
        print(f"{spec.name}: {path}")
    return 0
