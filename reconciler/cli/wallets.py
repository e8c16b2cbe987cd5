"""`wallets import` and `wallets list`: custody wallets kept in the ledger beside those of the
configuration; `wallets baseline` and `wallets show`: custody wallets' on-chain configuration,
recorded as reviewed and compared with its baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from reconciler.cli.common import (
    JsonFlag,
    WalletOption,
    _emit_json,
    _settings,
    already_imported,
    err,
    info,
    open_ledger,
    out,
)
from reconciler.cli.tables import NONE, Col, Row, fit_table, hanging, say, shown, wrap_lines
from reconciler.errors import chain_message

wallets_app = typer.Typer(
    help="Custody wallets: imported into the ledger and listed; their on-chain configuration, baseline and now.",
    no_args_is_help=True,
)

# Up to this many wallets `wallets list` prints a fitted table; more print one line each as
# they are read (a fitted table measures every row first).
_TABLE_ROWS = 1_000


@wallets_app.command("import")
def wallets_import(ctx: typer.Context, file: Path, json_out: JsonFlag = False) -> None:
    """Import custody wallets from CSV (name,chain,address,class[,kind,approvers,threshold,
    allowed_spenders]; lists ';'-separated); all rows or none. The same file again is a no-op;
    a file may repeat wallets already imported, identically, and add new ones."""
    from reconciler.app.fleet import import_wallets

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        done = import_wallets(settings, ledger, file)
    finally:
        ledger.close()
    digest = done.sha256
    if json_out:
        _emit_json(
            {
                "file": str(file),
                "sha256": digest,
                "imported": done.added,
                "unchanged": done.unchanged,
                "already_imported": done.earlier is not None,
            }
        )
    elif done.earlier is not None:
        info.print(already_imported(file, digest, done.earlier))
    else:
        info.print(
            f"{file}: {done.added:,} wallet(s) imported"
            + (f", {done.unchanged:,} already in the ledger as they are" if done.unchanged else "")
        )


@wallets_app.command("list")
def wallets_list(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Every custody wallet: those of the configuration, then those imported into the ledger,
    with where each is defined (config or ledger)."""
    from reconciler.app import jsonout
    from reconciler.app.fleet import Listed, wallet_doc

    settings = _settings(ctx)
    ledger = open_ledger(settings)  # the ledger must be there and current, as for any command
    ledger.close()
    wallets = Listed(settings)
    if json_out:
        _emit_json({"wallets": jsonout.Rows(wallets, lambda item: wallet_doc(*item))})
        return
    if not wallets:
        out.print("no wallets (configure [wallets.NAME], or: reconciler wallets import FILE)")
        return
    cells = (
        (w.name, w.chain, w.address, w.seg_class.value, w.kind or NONE, _approval(w.approvers, w.threshold), source)
        for w, source in wallets
    )
    if len(wallets) <= _TABLE_ROWS:
        columns = (
            Col("name", whole=True),
            Col("chain"),
            Col("address", whole=True),
            Col("class"),
            Col("kind", drop=2),
            Col("approvals", drop=1),
            Col("source"),
        )
        out.print(fit_table(out.width, columns, [Row(c) for c in cells]))
        return
    out.print("name  chain  address  class  kind  approvals  source", soft_wrap=True, highlight=False, markup=False)
    for c in cells:
        out.print("  ".join(shown(x) for x in c), soft_wrap=True, highlight=False, markup=False)


def _approval(approvers: tuple[str, ...], threshold: int) -> str:
    return f"{threshold} of {len(approvers)}" if approvers else NONE


@wallets_app.command("baseline")
def wallets_baseline(ctx: typer.Context, wallet: WalletOption = None, json_out: JsonFlag = False) -> None:
    """Record each wallet's on-chain configuration at the pinned block as reviewed. Every run
    compares with the newest baseline; re-baselining after a review resolves the change."""
    from reconciler.app import wallet_review
    from reconciler.bootstrap import adapter_for

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        readings = wallet_review.read_current(settings, adapter_for, wallet or (), ledger)
        wallet_review.record_reviewed(ledger, readings, settings)
    finally:
        ledger.close()
    if json_out:
        _emit_json({"wallets": [r.config.to_json() for r in readings.wallets]})
        return
    for r in readings.wallets:
        err.print(
            f"baselined {r.config.wallet} on {r.chain} at block {r.config.block_number}: {r.config.kind.value}"
            + (f", {len(r.config.owners)} owner(s), threshold {r.config.threshold}" if r.config.owners else "")
        )


@wallets_app.command("show")
def wallets_show(ctx: typer.Context, wallet: WalletOption = None, json_out: JsonFlag = False) -> None:
    """Each wallet's configuration now, beside its baseline. Exit 1 when one differs from its
    baseline, 2 when a chain could not be read."""
    from reconciler.app import wallet_review
    from reconciler.bootstrap import adapter_for

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        baselines = ledger.baselines()
        readings = wallet_review.read_current(settings, adapter_for, wallet or (), ledger)
    finally:
        ledger.close()
    docs: list[dict[str, Any]] = []
    changed = False
    for r in readings.wallets:
        changes = wallet_review.differences(baselines, r)
        baseline = baselines.wallets.get((r.chain, r.config.wallet))
        changed = changed or bool(changes)
        docs.append(
            {
                **r.config.to_json(),
                "baseline": baseline.to_json() if baseline is not None else None,
                "baseline_reviewed": baselines.reviewed.get((r.chain, r.config.wallet)),
                "changes": [{"field": c.field, "before": c.before, "after": c.after} for c in changes or []],
            }
        )
    for chain, why in readings.errors.items():
        say(err, chain_message(chain, why))
    if json_out:
        _emit_json({"wallets": docs, "errors": readings.errors})
    else:
        for n, doc in enumerate(docs):
            if n:
                out.print()
            for line, style in _wallet_lines(doc, out.width):
                out.print(line, style=style, soft_wrap=True)
    if readings.errors:
        raise typer.Exit(2)
    raise typer.Exit(1 if changed else 0)


_FIELDS = (
    "code_hash",
    "implementation",
    "admin",
    "beacon",
    "beacon_implementation",
    "singleton",
    "owners",
    "threshold",
    "modules",
    "hidden_owners",
    "hidden_modules",
    "guard",
    "fallback_handler",
    "delegation",
    "problems",
)


def _wallet_lines(doc: dict[str, Any], width: int) -> list[tuple[str, str | None]]:
    """One wallet for a person: a line saying where it was read and how it compares with its
    baseline, then only the fields that hold something (an EOA: its code hash), each value
    whole; a field that differs shows baseline and now, in red."""
    base = doc["baseline"]
    changes = {c["field"] for c in doc["changes"]}
    if base is None:
        verdict = "no baseline yet (`reconciler wallets baseline` records one)"
    elif changes:
        verdict = f"{len(changes)} field(s) differ from the baseline"
    else:
        verdict = "as in its baseline"
    reviewed = doc.get("baseline_reviewed")
    since = (
        f", baseline of block {base['block_number']:,}" + ("" if reviewed else " (first seen, not reviewed)")
        if base is not None
        else ""
    )
    head = f"{doc['wallet']} on {doc['chain']}: {doc['kind']} at block {doc['block_number']:,}{since}; {verdict}"
    style = "red" if changes else None
    lines: list[tuple[str, str | None]] = [(line, style) for line in wrap_lines(shown(head), width)]
    shown_fields = [f for f in _FIELDS if _has(doc.get(f)) or (base is not None and _has(base.get(f)))]
    label = max((len(f) for f in shown_fields), default=0)
    for field in shown_fields:
        if field in changes and base is not None:
            pairs = [(f"{field:<{label}}  baseline  ", base.get(field)), (f"{'':<{label}}  now       ", doc[field])]
        else:
            pairs = [(f"{field:<{label}}  ", doc[field])]
        for lead, value in pairs:
            for text in hanging("  " + lead, _shown(value), width):
                lines.append((text, "red" if field in changes else None))
    return lines


def _has(value: Any) -> bool:
    return value not in (None, [], "")


def _shown(value: Any) -> str:
    """A field's value: a list one entry per line, each `shown` (no None, no brackets)."""
    if value is None:
        return NONE
    if isinstance(value, list):
        return "\n".join(shown(v) for v in value) or "none"
    return shown(value)
