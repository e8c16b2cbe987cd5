"""Verifying the audit trail: its hash chain, its HMACs, and that it vouches for the tables.

Invariants: the trail is read once, in ``seq`` order, in batches (memory holds the replayed
state of the breaks, events and runs, never the records); a record verifies only when its hash
is the SHA-256 of the previous record's hash and its canonical JSON, its number follows the
previous one, the columns beside it (``seq``, ``kind``, ``at``) say what it says, and — with a
key — its HMAC is right, no unkeyed record follows a keyed one, and the newest record is keyed.
Once the chain holds, the breaks, their events and the runs replayed from the records of
revision 0009 on (``"v": 2``: each carries the whole row it changed) are compared with the
tables both ways: a row the trail does not explain, a field that differs, a row the trail has
and the table lacks. Records written before revision 0009 verify by their hash only; the
migration recorded every row as it found it (``*.carried`` records), so from the upgrade on
every row is vouched for.
"""

from __future__ import annotations

import hmac as hmac_lib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.ledger.daemon_models import AuditRow
from reconciler.ledger.models import BreakEvent, BreakRow, Run
from reconciler.ledger.trail import (
    GENESIS,
    Head,
    break_state,
    chain_hash,
    event_state,
    instant,
    record_mac,
    run_state,
)

BATCH = 2_000
SHOWN_DIFFERENCES = 20


@dataclass(frozen=True, slots=True)
class Difference:
    """Where the tables and the trail disagree: ``table`` row ``id``'s ``field`` is ``stored``
    in the table, ``trail`` in record ``seq`` (None: the trail has no record of the row)."""

    table: str
    id: str
    field: str | None
    stored: Any
    trail: Any
    seq: int | None
    problem: str

    def doc(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "id": self.id,
            "field": self.field,
            "stored": self.stored,
            "trail": self.trail,
            "record": self.seq,
            "problem": self.problem,
        }


@dataclass(frozen=True, slots=True)
class Verification:
    records: int  # records that verified
    head: Head | None  # the newest record that verified
    first_bad: int | None  # audit_log id of the first record that does not verify
    problem: str | None
    differences: tuple[Difference, ...] = ()  # the first SHOWN_DIFFERENCES, first first
    difference_count: int = 0
    keyed: bool = False  # HMACs were checked
    bad_record: dict[str, Any] | None = None  # the record that does not verify, for --json

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Broken(Exception):
    def __init__(self, row_id: int, seq: int | None, field: str, problem: str) -> None:
        super().__init__(problem)
        self.row_id, self.seq, self.field, self.problem = row_id, seq, field, problem


@dataclass
class _Replay:
    """What the records say the tables hold: per break and run the state of the last record
    that changed it, per event record its event row."""

    breaks: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    outcomes: dict[str, Head] = field(default_factory=dict)  # run id -> its run.finished record

    def fold(self, kind: str, doc: Mapping[str, Any], at: Head) -> None:
        if "v" not in doc:  # before revision 0009: only a run's outcome is used (the head it stores)
            if kind == "run.finished" and isinstance(doc.get("run_id"), str):
                self.outcomes[doc["run_id"]] = at
            return
        if kind.startswith("break."):
            brk = doc["break"]
            self.breaks[str(brk["id"])] = (at.seq, dict(brk))
            if kind != "break.carried":
                self.events[at.seq] = dict(doc["event"])
        elif kind == "event.carried":
            self.events[at.seq] = dict(doc["event"])
        elif kind.startswith("run."):
            run = doc["run"]
            self.runs[str(run["id"])] = (at.seq, dict(run))
            if kind == "run.finished":
                self.outcomes[str(run["id"])] = at


def _rows(s: Session, query: Any) -> Iterator[Any]:
    yield from s.execute(query.execution_options(yield_per=BATCH))


def verify(s: Session, key: bytes | None = None, pinned: Head | None = None) -> Verification:
    """The chain, the HMACs (with ``key``), the record ``pinned`` (an earlier head, when given),
    then the tables against the replayed trail."""
    prev = GENESIS
    count = 0
    last: Head | None = None
    keyed_from: int | None = None
    newest: tuple[int, bool] | None = None  # (audit id, keyed) of the newest record
    pinned_seen = False
    replay = _Replay()
    query = select(
        col(AuditRow.id),
        col(AuditRow.seq),
        col(AuditRow.at),
        col(AuditRow.kind),
        col(AuditRow.record),
        col(AuditRow.prev_hash),
        col(AuditRow.hash),
        col(AuditRow.hmac),
    ).order_by(col(AuditRow.seq))
    try:
        for row in _rows(s, query):
            expected = count + 1
            if chain_hash(row.prev_hash, row.record) != row.hash:
                raise _Broken(row.id, row.seq, "hash", f"record {expected} does not match its hash (edited?)")
            if row.prev_hash != prev:
                raise _Broken(
                    row.id,
                    row.seq,
                    "prev_hash",
                    f"record {expected} does not follow the record before it (one deleted or edited?)",
                )
            try:
                doc = json.loads(row.record)
            except ValueError:
                raise _Broken(row.id, row.seq, "record", f"record {expected} is not JSON") from None
            seq = doc.get("seq") if isinstance(doc, dict) else None
            if seq != expected:
                raise _Broken(
                    row.id, row.seq, "seq", f"record {expected} is number {seq}, not {expected} (one deleted?)"
                )
            if row.seq != seq:
                raise _Broken(row.id, row.seq, "seq", f"record {expected} is stored as number {row.seq} (edited?)")
            if key is not None:
                if row.hmac is not None:
                    if not hmac_lib.compare_digest(str(row.hmac), record_mac(key, row.prev_hash, row.record)):
                        raise _Broken(
                            row.id,
                            row.seq,
                            "hmac",
                            f"record {expected}'s HMAC does not verify under the configured key: it was written "
                            "or rewritten without the key (or with another key)",
                        )
                    keyed_from = keyed_from or expected
                elif keyed_from is not None:
                    raise _Broken(
                        row.id,
                        row.seq,
                        "hmac",
                        f"record {expected} carries no HMAC, though record {keyed_from} before it does: the trail was "
                        "rewritten without the key",
                    )
            if "v" in doc:
                if doc.get("kind") != row.kind:
                    raise _Broken(
                        row.id,
                        row.seq,
                        "kind",
                        f"record {expected} is stored as a {row.kind!r} record, but says {doc.get('kind')!r} (edited?)",
                    )
                if doc.get("at") != instant(row.at):
                    raise _Broken(
                        row.id,
                        row.seq,
                        "at",
                        f"record {expected}'s time is stored as {instant(row.at)}, but the record says "
                        f"{doc.get('at')} (edited?)",
                    )
            at = Head(expected, str(row.hash))
            try:
                replay.fold(str(row.kind), doc, at)
            except (KeyError, TypeError, AttributeError):
                raise _Broken(
                    row.id, row.seq, "record", f"record {expected} is not in the trail's format (edited?)"
                ) from None
            if pinned is not None and pinned.seq == expected:
                pinned_seen = True
                if pinned.hash != at.hash:
                    raise _Broken(
                        row.id,
                        row.seq,
                        "hash",
                        f"record {expected} has hash {at.hash}, not {pinned.hash} as the head given with --head: the "
                        f"trail was truncated or rewritten at or before record {expected}",
                    )
            prev = at.hash
            last = at
            newest = (row.id, row.hmac is not None)
            count = expected
        if key is not None and newest is not None and not newest[1]:
            raise _Broken(
                newest[0],
                count,
                "hmac",
                f"the newest record ({count}) carries no HMAC though [audit] key_env is set: the trail was rewritten "
                "without the key, or nothing was recorded since the key was set (`reconciler init` records a keyed "
                "record)",
            )
        if pinned is not None and not pinned_seen:
            raise _Broken(
                newest[0] if newest else 0,
                count,
                "seq",
                f"the trail ends at record {count} and has no record {pinned.seq} (the head given with --head): the "
                f"trail was truncated or rewritten after record {min(count, pinned.seq)}",
            )
    except _Broken as broken:
        return Verification(
            count,
            last,
            broken.row_id,
            broken.problem,
            keyed=key is not None,
            bad_record={"table": "audit_log", "id": broken.row_id, "seq": broken.seq, "field": broken.field},
        )
    differences = sorted(_compare(s, replay), key=lambda d: (d.seq is None, d.seq or 0, d.table, d.id))
    if differences:
        first = differences[0]
        more = f" ({len(differences) - 1} more difference(s))" if len(differences) > 1 else ""
        return Verification(
            count,
            last,
            None,
            first.problem + more,
            tuple(differences[:SHOWN_DIFFERENCES]),
            len(differences),
            keyed=key is not None,
        )
    return Verification(count, last, None, None, keyed=key is not None)


# ------------------------------------------------------------------ the tables against the replay


def _differ(table: str, row_id: str, stored: Mapping[str, Any], said: Mapping[str, Any], seq: int) -> Difference | None:
    """The first field (in the table's order) where the row is not what the trail says, the
    others that differ named after it."""
    names = [n for n in stored if stored[n] != said.get(n)] + [n for n in said if n not in stored]
    if not names:
        return None
    name = names[0]
    also = f"; {', '.join(names[1:])} differ(s) too" if len(names) > 1 else ""
    return Difference(
        table,
        row_id,
        name,
        stored.get(name),
        said.get(name),
        seq,
        f"{table} {row_id}: {name} is {stored.get(name)!r} in the table, but the audit trail (record {seq}) "
        f"says {said.get(name)!r}{also}",
    )


def _compare(s: Session, replay: _Replay) -> Iterator[Difference]:
    yield from _compare_runs(s, replay)
    yield from _compare_rows(
        s, "break", select(BreakRow).order_by(col(BreakRow.id)), replay.breaks, break_state, lambda r: str(r.id)
    )
    yield from _compare_events(s, replay)


def _compare_rows(
    s: Session,
    table: str,
    query: Any,
    said: dict[str, tuple[int, dict[str, Any]]],
    state: Callable[[Any], dict[str, Any]],
    ident: Callable[[Any], str],
) -> Iterator[Difference]:
    for (row,) in _rows(s, query):
        row_id = ident(row)
        found = said.pop(row_id, None)
        if found is None:
            yield Difference(
                table,
                row_id,
                None,
                "present",
                None,
                None,
                f"{table} {row_id} is not in the audit trail: no record says it exists (inserted behind the "
                "product's back?)",
            )
            continue
        seq, expected = found
        if (diff := _differ(table, row_id, state(row), expected, seq)) is not None:
            yield diff
    for row_id, (seq, _expected) in said.items():
        yield Difference(
            table,
            row_id,
            None,
            None,
            "present",
            seq,
            f"{table} {row_id} is in the audit trail (record {seq}) but not in the table (deleted?)",
        )


def _compare_runs(s: Session, replay: _Replay) -> Iterator[Difference]:
    heads: dict[str, tuple[int | None, str | None]] = {}

    def state(run: Run) -> dict[str, Any]:
        heads[run.id] = (run.audit_seq, run.audit_hash)
        return run_state(run)

    yield from _compare_rows(s, "run", select(Run).order_by(col(Run.id)), replay.runs, state, lambda r: str(r.id))
    # The head a run stores (what `runs show` prints) must be its own outcome record's.
    for run_id, (seq, digest) in heads.items():
        outcome = replay.outcomes.get(run_id)
        said = (outcome.seq, outcome.hash) if outcome is not None else (None, None)
        if (seq, digest) != said:
            yield Difference(
                "run",
                run_id,
                "audit_seq" if seq != said[0] else "audit_hash",
                f"{seq}:{digest}",
                f"{said[0]}:{said[1]}",
                outcome.seq if outcome is not None else None,
                f"run {run_id}: the audit head it stores is {seq}:{digest}, but its outcome record in the trail is "
                f"{said[0]}:{said[1]}",
            )


def _compare_events(s: Session, replay: _Replay) -> Iterator[Difference]:
    said = replay.events
    for (row,) in _rows(s, select(BreakEvent).order_by(col(BreakEvent.id))):
        row_id = str(row.id)
        expected = said.pop(row.audit_seq, None) if row.audit_seq is not None else None
        if expected is None:
            yield Difference(
                "break_event",
                row_id,
                None,
                "present",
                None,
                None,
                f"break_event {row_id} ({row.event!r} of break {row.break_id}) is not in the audit trail: no record "
                "carries it (inserted behind the product's back?)",
            )
            continue
        if (diff := _differ("break_event", row_id, event_state(row), expected, row.audit_seq)) is not None:
            yield diff
    for seq, event in said.items():
        yield Difference(
            "break_event",
            f"record {seq}",
            None,
            None,
            "present",
            seq,
            f"the audit trail's record {seq} carries the {event.get('event')!r} event of break "
            f"{event.get('break_id')}, which break_event does not hold (deleted?)",
        )
