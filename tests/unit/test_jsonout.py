"""The `--json` text parses back to the very document, whatever it holds."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler.jsonout import dumps

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
