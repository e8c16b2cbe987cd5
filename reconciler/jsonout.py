"""The `--json` documents as text: indented for people, one line per row for long lists.

Invariant: ``json.loads(dumps(doc)) == doc`` for every document; only whitespace differs from
``json.dumps(doc, indent=2)``. A list of objects (positions, breaks, transfers) prints one object
per line, encoded by the C encoder in one call per row: ``indent=2`` makes Python fall back to
its pure-Python encoder, which took 1.2 s for a 40,000-position run document.
"""

from __future__ import annotations

import json
from typing import Any

_row = json.JSONEncoder(separators=(", ", ": ")).encode
_scalar = json.JSONEncoder().encode


def dumps(doc: Any) -> str:
    parts: list[str] = []
    _write(doc, 0, parts)
    return "".join(parts)


def _write(value: Any, level: int, out: list[str]) -> None:
    pad = "  " * (level + 1)
    if isinstance(value, dict) and value:
        out.append("{\n")
        last = len(value) - 1
        for i, (key, item) in enumerate(value.items()):
            out.append(f"{pad}{_scalar(str(key))}: ")
            _write(item, level + 1, out)
            out.append(",\n" if i < last else "\n")
        out.append("  " * level + "}")
    elif isinstance(value, list) and value:
        if all(isinstance(item, dict) for item in value):
            out.append("[\n" + pad + f",\n{pad}".join(map(_row, value)) + "\n" + "  " * level + "]")
            return
        out.append("[\n")
        last = len(value) - 1
        for i, item in enumerate(value):
            out.append(pad)
            _write(item, level + 1, out)
            out.append(",\n" if i < last else "\n")
        out.append("  " * level + "]")
    else:
        out.append(_scalar(value))
