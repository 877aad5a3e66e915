"""`samtrack models`: the named models, their kind, size and whether they are cached."""

from __future__ import annotations

import argparse
import json

from samtrack.models import registry


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list the named models (kind, size, cached or not)",
                       description="List every model samtrack can use by name. Any model option also "
                                   "accepts a local path instead of a name.")
    p.add_argument("--kind", choices=registry.KINDS, help="only models of this kind")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def run(args: argparse.Namespace) -> int:
    rows = []
    for spec in registry.list_specs(args.kind):
        rows.append({
            "name": spec.name, "kind": spec.kind, "kinds": list(spec.kinds), "default": spec.default,
            "size_mb": spec.approx_mb,
            "cached": registry.is_cached(spec), "source": spec.source, "description": spec.description,
            "aliases": list(spec.aliases), "gated": spec.gated,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max([17, *(len("/".join(r["kinds"])) for r in rows)])  # SAM 3 serves three kinds
    header = f"{'name':<20} {'kind':<{width}} {'size':>8}  {'cached':<6}  description"
    print(header)
    print("-" * len(header))
    for r in rows:
        name = r["name"] + (" *" if r["default"] else "")
        print(f"{name:<20} {'/'.join(r['kinds']):<{width}} {r['size_mb']:>5} MB  "
              f"{'yes' if r['cached'] else 'no':<6}  {r['description']}")
    print("\n* default of its kind. Hub models are cached in the Hugging Face cache; checkpoint files in "
          f"{registry.cache_dir()}.")
    return 0
