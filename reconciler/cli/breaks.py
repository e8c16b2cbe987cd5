"""`breaks list|show|ack|resolve|verify-audit`: breaks, their lifecycle, and the audit trail
that keeps every change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler.cli.common import JsonFlag, _emit_json, _settings, err, open_ledger, out
from reconciler.cli.tables import (
    NONE,
    Col,
    Row,
    break_history,
    fields,
    fit_table,
    history_lines,
    human_display,
    human_instant,
    human_number,
    run_ids_in,
    say,
)
from reconciler.domain import BreakRecord, BreakStatus, abbreviate_ids

if TYPE_CHECKING:  # the documents and the ledger are imported when a command runs
    from rich.console import RenderableType

    from reconciler.inputs.settings import Settings
    from reconciler.ledger import trail
    from reconciler.ledger.store import Ledger

breaks_app = typer.Typer(help="Breaks and their lifecycle.", no_args_is_help=True)


def _breaks_table(breaks: Sequence[BreakRecord], settings: Settings, title: str | None = None) -> RenderableType:
    from reconciler.app.documents import break_doc

    return _break_docs_table([break_doc(b, settings) for b in breaks], title)


def _break_docs_table(docs: Sequence[dict[str, Any]], title: str | None = None) -> RenderableType:
    """Breaks (their JSON documents) for a person: short ids, the form every command accepts;
    whole amounts with separators, each followed by its asset (``-250,000.000000 USDC``). When
    the terminal is narrow the columns that matter least for triage go first — times seen, then
    chain, then status — never the severity."""
    short = abbreviate_ids(d["id"] for d in docs)
    units = max((len(d["asset"]) for d in docs if d["asset"] and d["amount"] is not None), default=0)

    def amount(d: dict[str, Any]) -> str:
        if d["amount"] is None:
            return NONE
        shown = human_display(d["amount"], d["amount_display"])
        return f"{shown} {d['asset'] or '':<{units}}" if units else shown

    columns = (
        Col("id", whole=True),
        Col("severity"),
        Col("kind"),
        Col("status", drop=3),
        Col("chain", drop=2),
        Col("wallet"),
        Col("amount", justify="right", whole=True),
        Col("seen", justify="right", drop=1),
    )
    rows = [
        Row(
            (
                short[d["id"]],
                d["severity"],
                d["kind"],
                f"{d['status']} tentative" if d.get("tentative") and d["status"] != "resolved" else d["status"],
                d["chain"],
                d["wallet"],
                amount(d),
                f"{d['times_seen']:,}",
            ),
            style="dim" if d["status"] == "resolved" else None,
        )
        for d in docs
    ]
    return fit_table(out.width, columns, rows, title)


_STATUSES = [s.value for s in BreakStatus]


@breaks_app.command("list")
def breaks_list(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="open, acknowledged or resolved; repeatable. Default: open and acknowledged."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every break, resolved ones included.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """List breaks."""
    from reconciler.app.documents import breaks_doc

    settings = _settings(ctx)
    for s in status or []:
        if s not in _STATUSES:
            raise typer.BadParameter(f"{s!r} is not one of {', '.join(_STATUSES)}", param_hint="--status")
    wanted = (
        None if all_ else [BreakStatus(s) for s in status] if status else [BreakStatus.OPEN, BreakStatus.ACKNOWLEDGED]
    )
    ledger = open_ledger(settings)
    try:
        breaks = ledger.list_breaks(wanted)
    finally:
        ledger.close()
    if json_out:
        _emit_json(breaks_doc(breaks, settings))
        return
    if not breaks:
        shown = "any status" if wanted is None else " or ".join(st.value for st in wanted)
        out.print(f"no breaks ({shown})")
        return
    out.print(_breaks_table(breaks, settings))


@breaks_app.command("show")
def breaks_show(ctx: typer.Context, break_id: str, json_out: JsonFlag = False) -> None:
    """One break with its evidence and history (BREAK_ID: the id or any unique prefix of it, 4 characters or more)."""
    from reconciler.app.documents import break_doc, event_doc

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        brk, events = ledger.get_break(break_id)
    finally:
        ledger.close()
    asset = settings.assets.get(brk.key.asset or "")
    event_docs = [event_doc(e, asset.decimals if asset else brk.decimals) for e in events]
    brk_doc = break_doc(brk, settings)
    if json_out:
        _emit_json({"break": brk_doc, "events": event_docs})
        return
    short = run_ids_in(event_docs, brk.first_run_id, brk.last_run_id, brk.resolved_run_id)
    acked = [e for e in event_docs if e["event"] == "acknowledged"]
    resolved = [e for e in event_docs if e["event"] == "resolved"]
    lines = fields(
        [
            ("break", brk.id),
            ("kind", f"{brk.key.kind.value} ({brk.severity.value})"),
            (
                "status",
                f"{brk.status.value}, tentative: its block does not have the chain's confirmations yet"
                if brk.tentative and brk.status.value != "resolved"
                else brk.status.value,
            ),
            ("chain", brk.key.chain),
            ("wallet", brk.key.wallet),
            ("asset", brk.key.asset),
            ("amount", None if brk.amount is None else human_display(brk_doc["amount"], brk_doc["amount_display"])),
            ("tx", brk.key.tx_hash),
            ("block", human_number(brk.block_number) if brk.block_number is not None else None),
            ("block hash", brk.block_hash),
            ("detail", brk.detail or None),
            ("seen", f"{brk.times_seen:,} time{'' if brk.times_seen == 1 else 's'}"),
            ("first seen", f"run {short.get(brk.first_run_id, brk.first_run_id)}"),
            ("last seen", f"run {short.get(brk.last_run_id, brk.last_run_id)}"),
            ("resolved by", f"run {short[brk.resolved_run_id]}" if brk.resolved_run_id else None),
            ("acknowledged", f"{human_instant(acked[-1]['at'])} UTC: {acked[-1]['note']}" if acked else None),
            ("resolved", f"{human_instant(resolved[-1]['at'])} UTC: {resolved[-1]['note']}" if resolved else None),
        ],
        out.width,
    )
    lines += ["history (UTC):", *history_lines(break_history(event_docs, short), out.width)]
    for line in lines:
        out.print(line, soft_wrap=True, markup=False)


@breaks_app.command("ack")
def breaks_ack(
    ctx: typer.Context,
    break_id: str,
    note: Annotated[str, typer.Option("--note", help="Why, and who is on it (kept in the audit trail).")],
    json_out: JsonFlag = False,
) -> None:
    """Acknowledge an open break (it stays until a run no longer finds it)."""
    _change_break(ctx, break_id, note, json_out, lambda ledger, b, n: ledger.acknowledge(b, n), "acknowledged")


def _change_break(
    ctx: typer.Context,
    break_id: str,
    note: str,
    json_out: bool,
    change: Callable[[Ledger, str, str], BreakRecord],
    done: str,
) -> None:
    """A person's change to a break, with the note that explains it kept in the audit trail."""
    from reconciler.app.documents import break_doc

    settings = _settings(ctx)
    if not note.strip():
        raise typer.BadParameter("say why, for the audit trail", param_hint="--note")
    ledger = open_ledger(settings)
    try:
        brk = change(ledger, break_id, note)
    finally:
        ledger.close()
    if json_out:
        _emit_json({"break": break_doc(brk, settings)})
    else:
        err.print(f"break {abbreviate_ids([brk.id])[brk.id]} {done}")


@breaks_app.command("resolve")
def breaks_resolve(
    ctx: typer.Context,
    break_id: str,
    note: Annotated[str, typer.Option("--note", help="Why it is closed, and by whom (kept in the audit trail).")],
    json_out: JsonFlag = False,
) -> None:
    """Resolve a break by hand, with the reason kept in its audit trail: typically one no run can
    check any more (its wallet or asset left the configuration), or an event-like break (an
    unauthorized transfer) after review. A run that finds the condition again opens a new break."""
    _change_break(ctx, break_id, note, json_out, lambda ledger, b, n: ledger.resolve(b, n), "resolved")


_HEAD_RE = re.compile(r"([0-9]{1,18}):([0-9a-fA-F]{64})")


def parse_head(text: str) -> trail.Head:
    """``SEQ:HASH``, as `runs show`, `verify-audit` and the run.finished webhook give a head."""
    from reconciler.ledger import trail

    found = _HEAD_RE.fullmatch(text.strip())
    if found is None or int(found.group(1)) < 1:
        raise typer.BadParameter(
            f"{text!r} is not a head: expected SEQ:HASH, a record number and its 64-hex-digit hash (as `runs show` "
            "and `breaks verify-audit` print it, e.g. 42:3f5a…)",
            param_hint="--head",
        )
    return trail.Head(int(found.group(1)), found.group(2).lower())


@breaks_app.command("verify-audit")
def breaks_verify_audit(
    ctx: typer.Context,
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            metavar="SEQ:HASH",
            help="An earlier head (from `runs show`, `verify-audit --json` or a run.finished webhook) that the trail "
            "must still contain: how a truncated or rewritten trail is caught.",
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Check the audit trail and that it vouches for the tables: the hash chain, each record's
    HMAC when [audit] key_env is set, the given --head, then the breaks, their events and the
    runs replayed from the trail against the tables as stored. Exit 0 when all hold, 1 naming the
    first record or row that does not (a record or a row changed behind the product's back)."""
    from reconciler.ledger import daemon_store

    pinned = parse_head(head) if head is not None else None
    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        result = daemon_store.verify_audit(ledger, pinned)
    finally:
        ledger.close()
    first = result.differences[0].doc() if result.differences else result.bad_record
    doc = {
        "ok": result.ok,
        "records": result.records,
        "head": result.head.doc() if result.head is not None else None,
        "first_bad_record": result.first_bad,
        "problem": result.problem,
        "first_bad": first,
        "differences": [d.doc() for d in result.differences],
        "difference_count": result.difference_count,
        "hmac": "verified" if result.keyed else "not configured",
        "pinned_head": pinned.doc() if pinned is not None else None,
    }
    if json_out:
        _emit_json(doc)
    elif result.ok:
        keyed = "HMACs verified" if result.keyed else "no key configured: hashes only"
        pinned_text = f"; contains the given head {pinned}" if pinned is not None else ""
        say(
            out,
            f"audit trail intact: {result.records:,} record(s), {keyed}{pinned_text}; the breaks, their events and "
            "the runs are as it says",
        )
        say(out, f"head {result.head or 'none (empty trail)'}")
    elif result.first_bad is not None:
        where = (result.bad_record or {}).get("seq") or result.first_bad
        say(err, f"audit trail BROKEN at record {where}: {result.problem}")
    else:
        say(err, f"audit trail does NOT match the tables: {result.problem}")
        say(err, f"(the trail itself verifies: {result.records:,} record(s), head {result.head})")
    raise typer.Exit(0 if result.ok else 1)
