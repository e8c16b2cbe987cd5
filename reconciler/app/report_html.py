"""`report html`: one run and the ledger's open breaks as a self-contained HTML page.

Invariants: a pure function from documents to a string (no database, no network, no clock
unless given); every value that came from a person or a chain (names, notes, reasons, details)
is HTML-escaped, and the page forbids scripts and outside resources (a Content-Security-Policy
of its own), so a wallet name or a note like ``<script>`` is shown as text and never runs.
Amounts are shown whole, in asset units with thousands separators: never rounded or cut.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from reconciler import __version__
from reconciler.domain import HASH_RE, Severity

_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_DISPLAY_RE = re.compile(r"(-?)([0-9]+)((?:\.[0-9]+)?)")
SEVERITIES = tuple(sorted(Severity, key=lambda s: s.rank, reverse=True))  # critical first

_VERDICTS = {
    0: "Complete: no open break of severity error or critical.",
    1: "Breaks: at least one break of severity error or critical is open or acknowledged.",
    2: "Could not complete: no all-clear is given for what could not be read.",
}


@dataclass(frozen=True, slots=True)
class PageContext:
    """What the page needs besides the run's document and the open breaks."""

    generated_at: datetime
    audit_head: str
    finished_at: str | None = None  # ISO instant; the run document itself has no finish time
    explorers: Mapping[str, str] = field(default_factory=dict)  # chain name -> explorer base URL
    wallet_addresses: Mapping[str, str] = field(default_factory=dict)  # wallet name -> address
    notes: Mapping[str, str] = field(default_factory=dict)  # break id -> its acknowledgement's note


def grouped(display: str | None) -> str:
    """``-1234567.500000`` -> ``-1,234,567.500000``: every digit kept, separators added."""
    if display is None:
        return "—"
    match = _DISPLAY_RE.fullmatch(display)
    if match is None:
        return display
    sign, whole, frac = match.groups()
    # Grouping by hand: int() refuses more than 4300 digits, and amounts need no arithmetic here.
    head = len(whole) % 3 or 3
    parts = [whole[:head]] + [whole[i : i + 3] for i in range(head, len(whole), 3)]
    return f"{sign}{','.join(parts)}{frac}"


def utc_time(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


class _Links:
    def __init__(self, explorers: Mapping[str, str]) -> None:
        self.explorers = explorers

    def _link(self, chain: str | None, path: str, text: str) -> str:
        base = self.explorers.get(chain or "")
        if not base:
            return f'<span class="mono">{_e(text)}</span>'
        return f'<a class="mono" href="{_e(base)}/{_e(path)}">{_e(text)}</a>'

    def block(self, chain: str | None, number: Any) -> str:
        if not isinstance(number, int) or isinstance(number, bool):
            return "—"
        return self._link(chain, f"block/{number}", str(number))  # an identifier: no separators

    def block_hash(self, chain: str | None, value: Any, number: Any) -> str:
        if not isinstance(value, str) or not HASH_RE.fullmatch(value):
            return _e(value) if value else "—"
        if not isinstance(number, int) or isinstance(number, bool):
            return f'<span class="mono">{_e(value)}</span>'
        return self._link(chain, f"block/{number}", value)

    def tx(self, chain: str | None, value: Any) -> str:
        if not isinstance(value, str) or not HASH_RE.fullmatch(value):
            return _e(value) if value else "—"
        return self._link(chain, f"tx/{value}", value)

    def address(self, chain: str | None, value: str | None) -> str:
        if not value or not _ADDRESS_RE.fullmatch(value):
            return ""
        return self._link(chain, f"address/{value}", value)


def _amount(b: Mapping[str, Any], name: str = "amount") -> str:
    shown = grouped(b.get(f"{name}_display"))
    asset = b.get("asset")
    unit = f' <span class="unit">{_e(asset)}</span>' if asset and b.get(f"{name}_display") is not None else ""
    negative = " neg" if str(b.get(name) or "").startswith("-") else ""
    return f'<span class="amount{negative}">{_e(shown)}</span>{unit}'


def _wallet(links: _Links, ctx: PageContext, chain: str | None, wallet: str | None) -> str:
    address = links.address(chain, ctx.wallet_addresses.get(wallet or ""))
    under = f'<div class="small">{address}</div>' if address else ""
    return f"{_e(wallet) or '—'}{under}"


def _severity(value: str) -> str:
    return f'<span class="sev sev-{_e(value)}">{_e(value)}</span>'


def _status(value: str) -> str:
    return f'<span class="status status-{_e(value)}">{_e(value)}</span>'


def _break_rows(links: _Links, ctx: PageContext, breaks: Sequence[Mapping[str, Any]], *, now: bool) -> str:
    rows = []
    for b in breaks:
        chain = b.get("chain")
        cells = [
            *([_severity(str(b.get("severity")))] if now else []),
            f"<b>{_e(b.get('kind'))}</b>",
            _e(chain),
            _wallet(links, ctx, chain, b.get("wallet")),
            _e(b.get("asset")) or "—",
            _amount(b),
            f'<span class="hash">{links.tx(chain, b.get("tx_hash"))}</span>',
            links.block(chain, b.get("block_number")),
            _status(str(b.get("status"))),
            _e(b.get("times_seen")),
        ]
        right = {5, 7, 9} if now else {4, 6, 8}  # amount, block, times seen
        tds = "".join(f'<td class="num">{c}</td>' if i in right else f"<td>{c}</td>" for i, c in enumerate(cells))
        rows.append(f'<tr class="break">{tds}</tr>')
        below = [f'<span class="label">detail</span> {_e(b.get("detail"))}']
        note = ctx.notes.get(str(b.get("id"))) if now else None
        if note:
            below.append(f'<span class="label">acknowledgement note</span> {_e(note)}')
        ids = f'<span class="label">break id</span> <span class="mono">{_e(b.get("id"))}</span>'
        if now and b.get("first_run_id"):
            first = _e(b["first_run_id"])
            ids += f' &nbsp; <span class="label">first found by run</span> <span class="mono">{first}</span>'
        below.append(ids)
        lines = "".join(f"<div>{line}</div>" for line in below)
        rows.append(f'<tr class="detail"><td colspan="{len(cells)}">{lines}</td></tr>')
    return "".join(rows)


def _break_table(links: _Links, ctx: PageContext, breaks: Sequence[Mapping[str, Any]], *, now: bool) -> str:
    heads = [
        *(["severity"] if now else []),
        "kind",
        "chain",
        "wallet",
        "asset",
        "amount (asset units)",
        "tx hash",
        "block",
        "status",
        "times seen",
    ]
    ths = "".join(f"<th>{h}</th>" for h in heads)
    body = _break_rows(links, ctx, breaks, now=now)
    return f'<table class="breaks"><thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table>'


def _header(run: Mapping[str, Any], ctx: PageContext) -> str:
    status = str(run.get("status"))
    exit_code = run.get("exit_code")
    banner = ""
    if status != "complete":
        why = run.get("reason") or ("it has not finished" if status == "running" else "no reason recorded")
        banner = (
            f'<div class="banner bad"><b>{_e(status.upper())}</b>: {_e(why)}. '
            "This report gives no all-clear for what the run could not read.</div>"
        )
    verdict = _VERDICTS.get(exit_code, "") if isinstance(exit_code, int) else ""
    facts = [
        ("Run id", f'<span class="mono">{_e(run.get("run_id"))}</span>'),
        ("Status", _status(status)),
        *([("Reason", _e(run.get("reason")))] if run.get("reason") else []),
        ("Started", _e(utc_time(run.get("started_at")))),
        ("Finished", _e(utc_time(ctx.finished_at))),
        ("Exit code", f'{_e(exit_code)} <span class="muted">{_e(verdict)}</span>'),
        (
            "Job",
            f"{_e(run.get('job'))} ({_e(run.get('trigger'))}"
            + (f", {_e(run.get('instance'))})" if run.get("instance") else ")"),
        ),
    ]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    return f'<header><h1>Reconciliation run report</h1>{banner}<dl class="facts">{dl}</dl></header>'


def _scanned(scan: Mapping[str, Any]) -> str:
    """The blocks a run's scan observed, ``101–123``; ``none new (up to 15)`` when it observed
    none (its document says from_block 16, to_block 15)."""
    first, last = scan.get("from_block"), scan.get("to_block")
    if not isinstance(first, int) or not isinstance(last, int):
        return "—"
    if first > last:
        return f"none new (up to {last})"
    return f"{first}–{last}"


def _chains(links: _Links, run: Mapping[str, Any]) -> str:
    chains: Mapping[str, Any] = run.get("chains") or {}
    if not chains:
        return '<section><h2>Pinned blocks</h2><p class="muted">The run recorded no chain.</p></section>'
    rows = []
    for name, c in chains.items():
        sources = ", ".join(
            f"{_e(s.get('endpoint'))}"
            + (f' <span class="muted">({_e(s.get("client_version"))})</span>' if s.get("client_version") else "")
            for s in c.get("sources") or []
        )
        scan = c.get("scan") or {}
        scanned = _scanned(scan)
        error = f'<div class="bad-text">not read: {_e(c["error"])}</div>' if c.get("error") else ""
        rows.append(
            "<tr>"
            f"<td><b>{_e(name)}</b>{error}</td>"
            f'<td class="num">{links.block(name, c.get("block_number"))}</td>'
            f'<td class="hash">{links.block_hash(name, c.get("block_hash"), c.get("block_number"))}</td>'
            f'<td class="num">{_e(c.get("chain_id")) or "—"}</td>'
            f"<td>{_e(c.get('read_path')) or '—'}</td>"
            f'<td class="num">{scanned}</td>'
            f"<td>{sources or '—'}</td>"
            "</tr>"
        )
    heads = "".join(
        f"<th>{h}</th>"
        for h in ("chain", "block", "block hash", "chain id", "read path", "transfers scanned", "endpoints used")
    )
    return (
        '<section><h2>Pinned blocks</h2><p class="muted">Every read of the run was made at these blocks.</p>'
        f"<table><thead><tr>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _run_breaks(links: _Links, ctx: PageContext, run: Mapping[str, Any]) -> str:
    breaks: Sequence[Mapping[str, Any]] = run.get("breaks") or []
    parts = [
        "<section><h2>Breaks of this run</h2>"
        '<p class="muted">As the run recorded them: every break open after it, and those it resolved.</p>'
    ]
    counts = []
    for sev in SEVERITIES:
        these = [b for b in breaks if b.get("severity") == sev.value]
        counts.append(f"{_severity(sev.value)} {len(these)}")
        parts.append(f'<h3 id="sev-{sev.value}">{sev.value.capitalize()} ({len(these)})</h3>')
        parts.append(_break_table(links, ctx, these, now=False) if these else '<p class="muted">None.</p>')
    others = [b for b in breaks if b.get("severity") not in {s.value for s in SEVERITIES}]
    if others:
        parts.append(f"<h3>Other ({len(others)})</h3>{_break_table(links, ctx, others, now=False)}")
    parts.insert(1, f'<p class="counts">{" &nbsp; ".join(counts)}</p>')
    parts.append("</section>")
    return "".join(parts)


def _open_now(links: _Links, ctx: PageContext, open_breaks: Sequence[Mapping[str, Any]]) -> str:
    order = {s.value: i for i, s in enumerate(SEVERITIES)}
    ranked = sorted(open_breaks, key=lambda b: (order.get(str(b.get("severity")), len(order)), str(b.get("kind"))))
    body = (
        _break_table(links, ctx, ranked, now=True)
        if ranked
        else '<p class="good-text">No break is open or acknowledged.</p>'
    )
    return (
        f"<section><h2>Open breaks in the ledger now ({len(ranked)})</h2>"
        f'<p class="muted">Open and acknowledged breaks as of {_e(utc_time(ctx.generated_at.isoformat()))}, '
        "whichever run found them.</p>"
        f"{body}</section>"
    )


def _positions(links: _Links, ctx: PageContext, run: Mapping[str, Any]) -> str:
    positions: Sequence[Mapping[str, Any]] = run.get("positions") or []
    differing = [p for p in positions if p.get("difference") != "0"]
    agreeing = len(positions) - len(differing)
    unread = [name for name, c in (run.get("chains") or {}).items() if c.get("block_number") is None]
    parts = ["<section><h2>Positions</h2>"]
    if differing:
        rows = "".join(
            "<tr>"
            f"<td>{_e(p.get('chain'))}</td>"
            f"<td>{_wallet(links, ctx, p.get('chain'), p.get('wallet'))}</td>"
            f"<td>{_e(p.get('asset'))}</td>"
            f'<td class="num">{_amount(p, "book")}</td>'
            f'<td class="num">{_amount(p, "onchain")}</td>'
            f'<td class="num">{_amount(p, "difference")}</td>'
            "</tr>"
            for p in differing
        )
        heads = "".join(
            f"<th>{h}</th>" for h in ("chain", "wallet", "asset", "book", "on chain", "difference (on chain − book)")
        )
        parts.append(f"<h3>Book ≠ on chain ({len(differing)})</h3>")
        parts.append(f"<table><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>")
    else:
        parts.append(f'<p class="good-text">No position differs{" among those read" if unread else ""}.</p>')
    parts.append(
        f"<p><b>{agreeing:,}</b> of {len(positions):,} position(s) agree (book = on chain, in base units).</p>"
    )
    if unread:
        parts.append(
            f'<p class="bad-text">No positions for the chain(s) not read: {_e(", ".join(unread))}. '
            "They are neither clean nor broken: they were not seen.</p>"
        )
    unreconciled: Sequence[Mapping[str, Any]] = run.get("unreconciled_books") or []
    if unreconciled:
        items = "".join(
            f"<li>{_e(u.get('wallet'))} {_e(u.get('asset'))}: {_amount(u, 'book')}</li>" for u in unreconciled
        )
        parts.append(f"<h3>Books not reconciled ({len(unreconciled)})</h3><ul>{items}</ul>")
    parts.append("</section>")
    return "".join(parts)


def _footer(ctx: PageContext) -> str:
    return (
        "<footer>"
        f"Generated {_e(utc_time(ctx.generated_at.isoformat()))} by reconciler {_e(__version__)} "
        "from the run's stored document (<code>reconciler runs show RUN_ID --json</code>) and the ledger's breaks. "
        f'Audit trail head: <span class="mono">{_e(ctx.audit_head)}</span> '
        "(<code>reconciler breaks verify-audit --head SEQ:HASH</code> checks that the trail still holds it)."
        "</footer>"
    )


_CSS = """
:root { color-scheme: light; }
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
  color: #1b1f24; background: #fff; margin: 24px 32px; font-size: 14px; line-height: 1.4; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 18px; margin: 28px 0 6px; padding-bottom: 4px; border-bottom: 2px solid #d0d7de; }
h3 { font-size: 15px; margin: 16px 0 6px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; font-weight: 600; font-size: 13px; }
td.num { text-align: right; white-space: nowrap; }
tr.detail td { background: #fafbfc; color: #444c56; font-size: 12.5px; border-top: none; overflow-wrap: anywhere; }
tr.break td { border-bottom: none; }
.mono, code, .hash { font-family: "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace;
  font-size: 12.5px; }
.hash, .small { overflow-wrap: anywhere; word-break: break-all; }
.small { font-size: 11.5px; }
.amount { font-family: "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
.amount.neg { color: #b42318; }
.unit { color: #57606a; font-size: 12px; }
.muted { color: #57606a; }
.label { color: #57606a; font-size: 11.5px; text-transform: uppercase; letter-spacing: .03em; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0; }
dl.facts dt { font-weight: 600; color: #57606a; }
dl.facts dd { margin: 0; }
.banner { padding: 10px 14px; border-radius: 4px; margin: 8px 0 12px; }
.banner.bad { background: #fde8e8; border: 1px solid #f5b5b5; color: #8a1c1c; }
.bad-text { color: #b42318; }
.good-text { color: #1a7f37; }
.sev, .status { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px; font-weight: 600; }
.sev-critical { background: #8a1c1c; color: #fff; }
.sev-error { background: #d1242f; color: #fff; }
.sev-warning { background: #f0b400; color: #1b1f24; }
.sev-info { background: #dbe9f7; color: #0a3069; }
.status-open { background: #fde8e8; color: #8a1c1c; }
.status-acknowledged { background: #fff4d4; color: #6c4a00; }
.status-resolved, .status-complete { background: #dafbe1; color: #116329; }
.status-incomplete, .status-running { background: #fde8e8; color: #8a1c1c; }
.counts { margin: 4px 0; }
a { color: #0550ae; }
footer { margin-top: 32px; padding-top: 8px; border-top: 1px solid #d0d7de; color: #57606a; font-size: 12px;
  overflow-wrap: anywhere; }
@media print { body { margin: 0; } a { color: inherit; } }
"""


def render_run_report(run: Mapping[str, Any], open_breaks: Sequence[Mapping[str, Any]], ctx: PageContext) -> str:
    """The page for ``run`` (a run's document as `runs show --json` prints it) and
    ``open_breaks`` (the ledger's open and acknowledged breaks, as `breaks list --json`)."""
    links = _Links(ctx.explorers)
    title = f"Reconciliation run {run.get('run_id')}"
    return "".join(
        [
            "<!DOCTYPE html>\n",
            '<html lang="en"><head><meta charset="utf-8">',
            # No script, no outside resource: only this page's own style and data: images.
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; img-src data:\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="referrer" content="no-referrer">',
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
            _header(run, ctx),
            _chains(links, run),
            _run_breaks(links, ctx, run),
            _open_now(links, ctx, open_breaks),
            _positions(links, ctx, run),
            _footer(ctx),
            "</body></html>\n",
        ]
    )
