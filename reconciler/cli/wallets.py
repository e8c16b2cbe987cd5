"""`wallets baseline` and `wallets show`: custody wallets' on-chain configuration, recorded as
reviewed and compared with its baseline.
"""

from __future__ import annotations

from typing import Any

import typer

from reconciler.app import wallet_review
from reconciler.bootstrap import adapter_for, open_ledger
from reconciler.cli.common import JsonFlag, WalletOption, _emit_json, _settings, err, out
from reconciler.cli.tables import NONE, Col, Row, fit_table

SHOWN_FIELDS = (
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

wallets_app = typer.Typer(help="Custody wallets' on-chain configuration: baseline and now.", no_args_is_help=True)


@wallets_app.command("baseline")
def wallets_baseline(ctx: typer.Context, wallet: WalletOption = None, json_out: JsonFlag = False) -> None:
    """Record each wallet's on-chain configuration at the pinned block as reviewed. Every run
    compares with the newest baseline; re-baselining after a review resolves the change."""
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
        err.print(f"chain {chain}: {why}")
    if json_out:
        _emit_json({"wallets": docs, "errors": readings.errors})
    else:
        columns = (Col("field", whole=True), Col("baseline", whole=True), Col("now", whole=True))
        for doc in docs:
            base = doc["baseline"] or {}
            rows = [
                Row(
                    (field, _shown(base.get(field)), _shown(doc[field])),
                    style="red" if base and base.get(field) != doc[field] else None,
                )
                for field in SHOWN_FIELDS
            ]
            out.print(fit_table(out.width, columns, rows, f"{doc['wallet']} on {doc['chain']} ({doc['kind']})"))
    if readings.errors:
        raise typer.Exit(2)
    raise typer.Exit(1 if changed else 0)


def _shown(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, list):
        return "\n".join(str(v) for v in value) or "[]"
    return str(value)
