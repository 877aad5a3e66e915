"""`samtrack sounds INPUT`: the AudioSet labels of a video's soundtrack, with their probabilities."""

from __future__ import annotations

import argparse
import json
import sys

from samtrack.models import registry


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("sounds", help="name the sounds in a video's soundtrack (AST, AudioSet labels)",
                       description="Decode the soundtrack of INPUT, classify it with the Audio Spectrogram "
                                   "Transformer on AudioSet, and print the most probable labels (what "
                                   "`samtrack track --audio` grounds). Probabilities are per-label sigmoids; "
                                   "clips longer than 10.24 s are scored window by window, keeping each "
                                   "label's highest probability.")
    p.add_argument("input", metavar="INPUT", help="a video (or audio) file with a soundtrack")
    p.add_argument("--start", type=float, default=None, metavar="S", help="start of the window, seconds")
    p.add_argument("--end", type=float, default=None, metavar="S", help="end of the window, seconds")
    p.add_argument("--top", type=int, default=6, metavar="N", help="at most N labels (default 6)")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="only labels with probability above this (default 0.05)")
    p.add_argument("--model", default=registry.default_name("audio"),
                   help="audio tagger: registry name or local directory (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--json", action="store_true", help="print a JSON object {label: probability}")
    return p


def run(args: argparse.Namespace) -> int:
    from samtrack.models.audio import AudioTagger, decode_audio

    waveform, rate = decode_audio(args.input, args.start, args.end)  # input errors before the model loads
    tagger = AudioTagger.load(args.model, device=args.device)
    tags = tagger.tag(waveform, rate, label_num=args.top, threshold=args.threshold)
    if args.json:
        print(json.dumps(dict(tags)))
    elif tags:
        width = max(len(label) for label, _ in tags)
        for label, prob in tags:
            print(f"{label:<{width}}  {prob:.4f}")
    if not tags and not args.quiet:
        print(f"no sound label has probability above {args.threshold}; lower --threshold to see weaker ones",
              file=sys.stderr)
    return 0
