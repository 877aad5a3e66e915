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


def frame_view(frame: np.ndarray, ids: np.ndarray, labels: dict[int, str], points: list, point_labels: list,
               corner: tuple[float, float] | None) -> np.ndarray:
    """The frame with every object's mask, its label, and the clicks / box corner in progress."""
    image = render_overlay(frame, ids, labels or None)
    if not image.flags.writeable:  # label text comes back as a read-only view of a PIL image
        image = image.copy()
    radius = max(3, round(max(frame.shape[:2]) / 160))
    for (x, y), positive in zip(points, point_labels, strict=True):
        _dot(image, x, y, POSITIVE if positive else NEGATIVE, radius)
    if corner is not None:
        _dot(image, corner[0], corner[1], CORNER, radius)
    return image


def objects_table(objects: dict, seen: dict[int, list[int]], selected: int | None) -> str:
    """The object list as HTML: id, colour swatch, label, first and last frame it was seen on."""
    if not objects:
        return "<p class='samtrack-empty'>No objects yet: click on the frame to add one.</p>"
    rows = []
    for obj_id, obj in sorted(objects.items()):
        r, g, b = id_color(obj_id)
        first, last = seen.get(obj_id, (obj.frame, obj.frame))
        mark = " class='samtrack-selected'" if obj_id == selected else ""
        rows.append(f"<tr{mark} data-id='{obj_id}'><td>{obj_id}</td>"
                    f"<td><span style='display:inline-block;width:1.2em;height:1.2em;border-radius:3px;"
                    f"background:rgb({r},{g},{b})'></span></td><td>{html.escape(obj.label)}</td>"
                    f"<td>{first}</td><td>{last}</td></tr>")
    return ("<table class='samtrack-objects'><thead><tr><th>id</th><th>colour</th><th>label</th>"
            "<th>first</th><th>last</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def stroke_points(painted: np.ndarray, n: int = 64) -> list[tuple[float, float]]:
    """Brush pixels -> up to `n` (x, y) points that keep the stroke's extent (its box is the prompt)."""
    ys, xs = np.nonzero(painted)
    if len(xs) == 0:
        return []
    keep = {int(np.argmin(xs)), int(np.argmax(xs)), int(np.argmin(ys)), int(np.argmax(ys))}
    keep.update(np.linspace(0, len(xs) - 1, min(n, len(xs))).astype(int).tolist())
    return [(float(xs[i]), float(ys[i])) for i in sorted(keep)]
