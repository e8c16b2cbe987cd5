"""`wallets baseline` and `wallets show`: custody wallets' on-chain configuration, recorded as
reviewed and compared with its baseline.
"""

from __future__ import annotations

from typing import Any

import typer

from reconciler.cli.common import JsonFlag, WalletOption, _emit_json, _settings, err, open_ledger, out
from reconciler.cli.tables import NONE, hanging, say, shown, wrap_lines
from reconciler.errors import chain_message

wallets_app = typer.Typer(help="Custody wallets' on-chain configuration: baseline and now.", no_args_is_help=True)


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
