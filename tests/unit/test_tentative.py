"""The confirmation arithmetic of tentative breaks (reconciler.app.tentative)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reconciler.app.tentative import short_of_confirmations


def test_the_block_a_run_pins_is_confirmed_and_the_one_above_it_is_not() -> None:
    head, confirmations = 120, 12
    pin = head - confirmations  # what a scheduled run reads
    assert not short_of_confirmations(head, pin, confirmations)
    assert short_of_confirmations(head, pin + 1, confirmations)
    assert short_of_confirmations(head, head, confirmations)


def test_with_no_confirmations_the_head_itself_is_confirmed() -> None:
    assert not short_of_confirmations(7, 7, 0)


@given(st.integers(0, 10**9), st.integers(0, 64), st.integers(0, 64))
def test_a_block_becomes_confirmed_once_and_stays_so(block: int, confirmations: int, later: int) -> None:
    first = block + confirmations  # the first head at which it has them
    assert not short_of_confirmations(first + later, block, confirmations)
    if confirmations:
        assert short_of_confirmations(first - 1, block, confirmations)
