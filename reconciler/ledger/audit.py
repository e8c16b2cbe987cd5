"""Verifying the audit trail: its hash chain, its HMACs, and that it vouches for the tables.

Invariants: the trail is read once, in ``seq`` order, in batches (memory holds the replayed
state of the breaks, events and runs, never the records); a record verifies only when its hash
is the SHA-256 of the previous record's hash and its canonical JSON, its number follows the
previous one, the columns beside it (``seq``, ``kind``, ``at``) say what it says, and — with a
key — its HMAC is right, no unkeyed record follows a keyed one, and the newest record is keyed.
Once the chain holds, the breaks, their events and the runs replayed from the records of
revision 0011 on (``"v": 2``: each carries the whole row it changed) are compared with the
tables both ways: a row the trail does not explain, a field that differs, a row the trail has
and the table lacks. Records written before revision 0011 verify by their hash only; the
migration recorded every row as it found it (``*.carried`` records), so from the upgrade on
every row is vouched for.
"""

from __future__ import annotations

import hashlib
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
    canonical,
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


def _digest(state: Mapping[str, Any]) -> bytes:
    return hashlib.blake2b(canonical(state).encode(), digest_size=16).digest()


@dataclass
class _Replay:
    """What the records say the tables hold, kept small: per break and run the number of the
    last record that changed it and a digest of the row it says, per event record a digest of
    its event row (a row that differs is then read back from its record to name the field)."""

    breaks: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    events: dict[int, bytes] = field(default_factory=dict)
    runs: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    outcomes: dict[str, Head] = field(default_factory=dict)  # run id -> its run.finished record

    def fold(self, kind: str, doc: Mapping[str, Any], at: Head) -> None:
        if "v" not in doc:  # before revision 0011: only a run's outcome is used (the head it stores)
            if kind == "run.finished" and isinstance(doc.get("run_id"), str):
                self.outcomes[doc["run_id"]] = at
            return
        if kind.startswith("break."):
            brk = doc["break"]
            self.breaks[str(brk["id"])] = (at.seq, _digest(brk))
            if kind != "break.carried":
                self.events[at.seq] = _digest(doc["event"])
        elif kind == "event.carried":
            self.events[at.seq] = _digest(doc["event"])
        elif kind.startswith("run."):
            run = doc["run"]
            self.runs[str(run["id"])] = (at.seq, _digest(run))
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


def _said(s: Session, seq: int, part: str) -> dict[str, Any]:
    """What record ``seq`` says of its row (``part``: break, event or run)."""
    record = s.execute(select(col(AuditRow.record)).where(col(AuditRow.seq) == seq)).scalar_one()
    said = json.loads(record)[part]
    return dict(said) if isinstance(said, dict) else {}


def _differ(table: str, row_id: str, stored: Mapping[str, Any], said: Mapping[str, Any], seq: int) -> Difference:
    """The first field (in the table's order) where the row is not what the trail says, the
    others that differ named after it."""
    names = [n for n in stored if stored[n] != said.get(n)] + [n for n in said if n not in stored]
    name = names[0] if names else None
    also = f"; {', '.join(names[1:])} differ(s) too" if len(names) > 1 else ""
    what = f"{name} is {stored.get(name or '')!r} in the table" if name else "the row"
    return Difference(
        table,
        row_id,
        name,
        stored.get(name or ""),
        said.get(name or ""),
        seq,
        f"{table} {row_id}: {what}, but the audit trail (record {seq}) says {said.get(name or '')!r}{also}",
    )


def _compare(s: Session, replay: _Replay) -> Iterator[Difference]:
    yield from _compare_rows(s, "run", Run, replay.runs, run_state, "run", _head_difference(replay))
    yield from _compare_rows(s, "break", BreakRow, replay.breaks, break_state, "break")
    yield from _compare_events(s, replay)


def _columns(s: Session, model: Any, order: Any) -> Iterator[Any]:
    """The table's rows as plain rows (no ORM object per row), in batches."""
    return _rows(s, select(*model.__table__.columns).order_by(order))


def _compare_rows(
    s: Session,
    table: str,
    model: Any,
    said: dict[str, tuple[int, bytes]],
    state: Callable[[Any], dict[str, Any]],
    part: str,
    extra: Callable[[Any], Difference | None] | None = None,
) -> Iterator[Difference]:
    for row in _columns(s, model, model.id):
        row_id = str(row.id)
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
        stored = state(row)
        if _digest(stored) != expected:
            yield _differ(table, row_id, stored, _said(s, seq, part), seq)
        elif extra is not None and (diff := extra(row)) is not None:
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


def _head_difference(replay: _Replay) -> Callable[[Any], Difference | None]:
    """The head a run stores (what `runs show` prints) must be its own outcome record's."""

    def check(run: Any) -> Difference | None:
        outcome = replay.outcomes.get(str(run.id))
        said = (outcome.seq, outcome.hash) if outcome is not None else (None, None)
        stored = (run.audit_seq, run.audit_hash)
        if stored == said:
            return None
        return Difference(
            "run",
            str(run.id),
            "audit_seq" if stored[0] != said[0] else "audit_hash",
            f"{stored[0]}:{stored[1]}",
            f"{said[0]}:{said[1]}",
            outcome.seq if outcome is not None else None,
            f"run {run.id}: the audit head it stores is {stored[0]}:{stored[1]}, but its outcome record in the trail "
            f"is {said[0]}:{said[1]}",
        )

    return check


def _compare_events(s: Session, replay: _Replay) -> Iterator[Difference]:
    said = replay.events
    for row in _columns(s, BreakEvent, col(BreakEvent.id)):
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
        stored = event_state(row)
        if _digest(stored) != expected:
            yield _differ("break_event", row_id, stored, _said(s, row.audit_seq, "event"), row.audit_seq)
    for seq in said:
        event = _said(s, seq, "event")
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
