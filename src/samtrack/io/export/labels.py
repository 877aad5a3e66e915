"""Object ids to categories: the run's labels, or classes given by the user, else one default category."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samtrack.errors import InputError
from samtrack.io.export.run import Run
from samtrack.io.masks import MAX_ID

DEFAULT_CATEGORY = "object"


@dataclass(frozen=True)
class Categories:
    """The export's categories in order (first use by object id) and each object's category index."""

    names: tuple[str, ...]
    index: dict[int, int]  # object id -> position in `names`

    @classmethod
    def of(cls, run: Run, classes: Mapping[int, str] | None = None) -> Categories:
        """Each object's class from `classes`, else its label, else `DEFAULT_CATEGORY`."""
        classes = dict(classes or {})
        unknown = sorted(set(classes) - set(run.object_ids))
        if unknown:
            have = ", ".join(map(str, run.object_ids)) or "none"
            raise InputError(f"classes name object{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(str, unknown))}, which the run does not have (its objects: {have})")
        names: dict[str, int] = {}
        index = {}
        for obj_id in run.object_ids:
            name = classes.get(obj_id) or run.labels.get(obj_id) or DEFAULT_CATEGORY
            index[obj_id] = names.setdefault(name, len(names))
        return cls(tuple(names), index)

    def name(self, obj_id: int) -> str:
        return self.names[self.index[obj_id]]


def parse_classes(spec: str | Mapping[Any, Any] | None) -> dict[int, str]:
    """Object id -> class name from `1=swan,2=duck`, a JSON file or JSON text mapping ids to names
    (`{"1": "swan"}`, or an objects.json whose entries hold a "label"), or a mapping."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        text = str(spec).strip()
        path = Path(text)
        if text.startswith("{") or path.suffix.lower() == ".json" or path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8") if not text.startswith("{") else text)
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise InputError(f"cannot read classes from {text}: {exc}; give 1=swan,2=duck or a JSON file "
                                 'like {"1": "swan"}') from exc
            if not isinstance(data, dict):
                raise InputError(f'{text} must map object ids to class names, like {{"1": "swan"}}')
            # objects.json entries are {"label": ..., ...}; its unlabelled objects name no class
            items = [(k, v.get("label") if isinstance(v, dict) else v) for k, v in data.items()
                     if not (isinstance(v, dict) and not v.get("label"))]
        else:
            items = []
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, sep, value = part.partition("=")
                if not sep:
                    raise InputError(f"classes: {part!r} is not ID=NAME; give e.g. 1=swan,2=duck")
                items.append((key.strip(), value.strip()))
    classes: dict[int, str] = {}
    for key, value in items:
        if not str(key).strip().isdigit() or not 1 <= int(key) <= MAX_ID:
            raise InputError(f"classes: {key!r} is not an object id (1..{MAX_ID})")
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"classes: object {key} needs a class name")
        classes[int(key)] = value.strip()
    return classes
