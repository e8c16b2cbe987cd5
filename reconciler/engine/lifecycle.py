"""How one run's findings meet the breaks the ledger already holds.

Invariant: a break is identified across runs by its BreakKey; a finding whose key is already
open or acknowledged is that break seen again, never a new one; and a break is resolved only
by a run that actually looked where it lives (its key is in the run's coverage) and did not
find it. A chain the run could not read resolves nothing: no false "all clear".
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass

from reconciler.domain import BreakKey, BreakStatus, Finding


@dataclass(frozen=True, slots=True)
class ActiveBreak:
    """A break that is open or acknowledged in the ledger."""

    id: str
    key: BreakKey
    status: BreakStatus
    amount: int | None


@dataclass(frozen=True, slots=True)
class BreakPlan:
    opened: tuple[Finding, ...]
    seen_again: tuple[tuple[ActiveBreak, Finding], ...]
    resolved: tuple[ActiveBreak, ...]


def plan_breaks(
    active: Iterable[ActiveBreak],
    findings: Iterable[Finding],
    coverage: Container[BreakKey],
) -> BreakPlan:
    by_key: dict[BreakKey, ActiveBreak] = {}
    for brk in active:
        if brk.key in by_key:
            raise ValueError(f"two active breaks share the key {brk.key}: {by_key[brk.key].id}, {brk.id}")
        by_key[brk.key] = brk
    opened: list[Finding] = []
    seen: list[tuple[ActiveBreak, Finding]] = []
    found: set[BreakKey] = set()
    for finding in findings:
        if finding.key in found:
            raise ValueError(f"one run found {finding.key} twice")
        found.add(finding.key)
        existing = by_key.get(finding.key)
        if existing is None:
            opened.append(finding)
        else:
            seen.append((existing, finding))
    resolved = tuple(brk for key, brk in by_key.items() if key not in found and key in coverage)
    return BreakPlan(opened=tuple(opened), seen_again=tuple(seen), resolved=resolved)
