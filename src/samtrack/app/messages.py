"""Messages as the page shows them: in the user's words (their file's name, not the server's paths; no raw
library error codes), and escaped wherever the page renders HTML (error toasts, the status line), so
that a message like "(URLError: <urlopen error ...>)" is shown whole instead of swallowed as a tag."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

# ": [Errno 1094995529] Invalid data found when processing input: '/tmp/.../input.mp4'": a decoder's (or
# the OS's) own words about a file; the message around them says what happened and what to do.
_RAW_ERROR = re.compile(r":? ?\[Errno -?\d+\] [^;:]*: '[^']*'")
# Advice written for the command line that reads differently in the app.
_APP_WORDS = {"extract its frames into a folder": "upload its frames as a zip"}


def public(text: str, names: Mapping[str, str], roots: Iterable[Path]) -> str:
    """`text` without server paths: each path in `names` becomes its public name (the longest first),
    any other path under one of `roots` (the app's folders, the temp dir) just its file name; a decoder's
    or the OS's raw words about a file ("[Errno N] ...: 'file'") are dropped."""
    for path, name in sorted(names.items(), key=lambda item: -len(item[0])):
        text = text.replace(path, name)
    for root in roots:
        text = re.sub(re.escape(str(root).rstrip("/")) + r"/[^\s'\";,]*", lambda m: Path(m.group()).name, text)
    text = _RAW_ERROR.sub("", text)
    for cli, app in _APP_WORDS.items():
        text = text.replace(cli, app)
    return text


def escape(text: str) -> str:
    """Plain text for a place that renders HTML (a toast, the status line)."""
    return html.escape(text, quote=False)


def status_html(text: str, *, error: bool = False) -> str:
    """The status line: the text escaped; an error marked as one."""
    if error:
        return f"<span class='samtrack-error'>⚠ {escape(text)}</span>"
    return escape(text)
