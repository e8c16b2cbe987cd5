"""The `--json` text parses back to the very document, whatever it holds."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler.app.jsonout import dumps

_scalars = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False, allow_infinity=False)
_json: Any = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@given(_json)
def test_dumps_round_trips_any_document(doc: Any) -> None:
    assert json.loads(dumps(doc)) == doc


def test_rows_print_one_per_line_and_the_rest_is_indented() -> None:
    doc = {"run_id": "r", "positions": [{"wallet": "w1", "book": "1"}, {"wallet": "w\n2", "book": "2"}],
           "chains": {"eth": {"block_number": 7, "sources": []}}, "breaks": []}
    text = dumps(doc)
    assert json.loads(text) == doc
    lines = text.splitlines()
    assert '    {"wallet": "w1", "book": "1"},' in lines
    assert '    {"wallet": "w\\n2", "book": "2"}' in lines
    assert '      "block_number": 7,' in lines and '  "breaks": []' in lines
    assert lines[0] == "{" and lines[-1] == "}"


@given(st.lists(st.integers(), max_size=30), st.integers(1, 64))
def test_rows_are_made_as_printed_and_print_as_the_list_would(values: list[int], flush_every: int) -> None:
    import io

    from reconciler.app.jsonout import Rows, dump

    made: list[int] = []

    def make(v: int) -> dict[str, Any]:
        made.append(v)
        return {"value": str(v), "twice": v * 2}

    rows = Rows(values, make)
    assert made == [], "nothing is made before it is read"
    doc = {"run_id": "r", "positions": rows, "breaks": []}
    out = io.StringIO()
    dump(doc, out, flush_every=flush_every)
    as_list = {"run_id": "r", "positions": [{"value": str(v), "twice": v * 2} for v in values], "breaks": []}
    assert out.getvalue() == dumps(as_list) == dumps(doc)
    assert json.loads(out.getvalue()) == as_list
    assert len(rows) == len(values) and rows == as_list["positions"]
    if values:
        assert rows[-1] == {"value": str(values[-1]), "twice": values[-1] * 2}
