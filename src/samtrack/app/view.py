"""What the page shows: a frame with its masks and the prompt in progress, the object list."""

from __future__ import annotations

import html

import numpy as np

from samtrack.io.masks import id_color
from samtrack.io.overlay import render_overlay

POSITIVE = (40, 220, 40)
NEGATIVE = (230, 40, 40)
CORNER = (255, 255, 255)


def _dot(image: np.ndarray, x: float, y: float, color: tuple[int, int, int], radius: int) -> None:
    h, w = image.shape[:2]
    cx, cy = round(x), round(y)
    y0, y1, x0, x1 = max(cy - radius - 1, 0), min(cy + radius + 2, h), max(cx - radius - 1, 0), min(cx + radius + 2, w)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    patch = image[y0:y1, x0:x1]
    patch[d2 <= (radius + 1) ** 2] = (255, 255, 255)  # white ring keeps the dot visible on any colour
    patch[d2 <= radius**2] = color


def _outline(image: np.ndarray, box: tuple[float, float, float, float], width: int) -> None:
    """A box's outline, white with a dark edge inside so that it shows on any colour."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (round(v) for v in box)
    x0, x1 = sorted((min(max(x0, 0), w - 1), min(max(x1, 0), w - 1)))
    y0, y1 = sorted((min(max(y0, 0), h - 1), min(max(y1, 0), h - 1)))
    for color, inset in (((255, 255, 255), 0), ((20, 20, 20), width)):
        a0, b0, a1, b1 = x0 + inset, y0 + inset, x1 - inset, y1 - inset
        if a1 < a0 or b1 < b0:
            return
        image[b0:b0 + width, a0:a1 + 1] = color
        image[max(b1 - width + 1, b0):b1 + 1, a0:a1 + 1] = color
        image[b0:b1 + 1, a0:a0 + width] = color
        image[b0:b1 + 1, max(a1 - width + 1, a0):a1 + 1] = color


def frame_view(frame: np.ndarray, ids: np.ndarray, labels: dict[int, str], points: list, point_labels: list,
               corner: tuple[float, float] | None, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """The frame with every object's mask, its label, and the prompt in progress: clicks, a box's first
    corner, or the box last applied."""
    image = render_overlay(frame, ids, labels or None)
    if not image.flags.writeable:  # label text comes back as a read-only view of a PIL image
        image = image.copy()
    radius = max(3, round(max(frame.shape[:2]) / 160))
    if box is not None:
        _outline(image, box, max(1, radius // 2))
    for (x, y), positive in zip(points, point_labels, strict=True):
        _dot(image, x, y, POSITIVE if positive else NEGATIVE, radius)
    if corner is not None:
        _dot(image, corner[0], corner[1], CORNER, radius)
    return image


def objects_table(objects: dict, spans: dict[int, tuple[int, int]], selected: int | None) -> str:
    """The object list as HTML: id, colour swatch, label, first and last frame it is shown on. A row
    carries its id (`data-id`): clicking it selects the object."""
    if not objects:
        return "<p class='samtrack-empty'>No objects yet: click on the frame to add one.</p>"
    rows = []
    for obj_id, obj in sorted(objects.items()):
        r, g, b = id_color(obj_id)
        first, last = spans.get(obj_id, ("–", "–"))
        mark = " class='samtrack-selected'" if obj_id == selected else ""
        rows.append(f"<tr{mark} data-id='{obj_id}'><td>{obj_id}</td>"
                    f"<td><span style='display:inline-block;width:1.2em;height:1.2em;border-radius:3px;"
                    f"background:rgb({r},{g},{b})'></span></td><td>{html.escape(obj.label)}</td>"
                    f"<td>{first}</td><td>{last}</td></tr>")
    return ("<table class='samtrack-objects'><thead><tr><th>id</th><th>colour</th><th>label</th>"
            "<th>first</th><th>last</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def frames_text(index: int, count: int) -> str:
    """'Frame 7 of 0–49' (frames are numbered from 0, as the masks are); a single image says so."""
    return "The only frame (0)" if count == 1 else f"Frame {index} of 0–{count - 1}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def stroke_points(painted: np.ndarray, n: int = 64) -> list[tuple[float, float]]:
    """Brush pixels -> up to `n` (x, y) points that keep the stroke's extent (its box is the prompt)."""
    ys, xs = np.nonzero(painted)
    if len(xs) == 0:
        return []
    keep = {int(np.argmin(xs)), int(np.argmax(xs)), int(np.argmin(ys)), int(np.argmax(ys))}
    keep.update(np.linspace(0, len(xs) - 1, min(n, len(xs))).astype(int).tolist())
    return [(float(xs[i]), float(ys[i])) for i in sorted(keep)]
