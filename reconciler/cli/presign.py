"""`presign`: check a Safe transaction before anyone signs it — the hashes to compare on the
device, the decoded call, the findings, what the simulation says it would do."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from reconciler.cli.common import JsonFlag, _emit_json, _read_file, _state, err, out
from reconciler.domain import AddressError, checksum_address
from reconciler.errors import InputError
from reconciler.inputs.config import load_settings
from reconciler.inputs.settings import Settings

VERDICT_STYLE = {"ok": "green", "danger": "bold red", "unchecked": "yellow"}


def _settings_or_none(explicit: str | None, offline: bool) -> Settings | None:
    """Offline, a machine with no configuration at all still checks hashes and static rules;
    a configuration that exists is always read (and its errors reported)."""
    if offline and not explicit and not os.environ.get("RECONCILER_CONFIG") and not Path("reconciler.toml").is_file():
        return None
    from reconciler.app.fleet import with_ledger_wallets

    return with_ledger_wallets(load_settings(explicit))


def _address(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return checksum_address(value) if value != value.lower() else checksum_address(value.lower())
    except AddressError as exc:
        raise InputError("--safe", [str(exc)]) from exc


def presign(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="One SafeTx: the EIP-712 document, or the message.")],
    wallet: Annotated[str | None, typer.Option("--wallet", help="The configured wallet (else: the domain's).")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Hashes and static rules only; no chain read.")] = False,
    chain_id: Annotated[int | None, typer.Option("--chain-id", help="The chain id, when FILE does not say.")] = None,
    safe: Annotated[str | None, typer.Option("--safe", help="The Safe's address, when FILE does not say.")] = None,
    safe_version: Annotated[
        str | None, typer.Option("--safe-version", help="The Safe's version (default: read from it; 1.3.0 offline).")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Check a Safe transaction before it is signed: the domain, message and safeTxHash to
    compare on the hardware wallet, the decoded call (MultiSend batches too), and the rules
    (delegatecall, wallet_config_call, wallet_storage_write, approval, unauthorized_outflow,
    gas_refund, nonce, no_code_target) on the payload and on its execution simulated at the
    pinned block. Writes nothing. Exit 0 ok, 1 danger, 2 unchecked or bad input."""
    from reconciler.app.presign import PresignOptions
    from reconciler.app.presign import presign as check
    from reconciler.bootstrap import adapter_for
    from reconciler.ledger.store import Ledger

    text, _digest = _read_file(file)
    settings = _settings_or_none(_state(ctx).config, offline)

    def open_ledger(s: Settings) -> Ledger:
        ledger = Ledger(s.database_url)
        ledger.ensure_ready(reap=False)  # read-only: no run is closed, nothing is written
        return ledger

    options = PresignOptions(wallet, offline, chain_id, _address(safe), safe_version)
    result = check(text, str(file), settings, options, adapter_for, open_ledger)
    if json_out:
        _emit_json(result.document)
    else:
        _print(result.document)
    raise typer.Exit(result.exit_code)


def _print(doc: dict[str, Any]) -> None:
    who = doc["wallet"] or doc["safe"]
    out.print(Text(f"Safe {doc['safe']} ({who}) on chain id {doc['chain_id']}, Safe {doc['safe_version']}"))
    out.print(Text("Compare these on the signing device:", style="bold"))
    for label in ("domain_hash", "message_hash", "safe_tx_hash"):
        out.print(Text(f"  {label:<13} {doc[label]}"))
    nonce = f"nonce {doc['nonce']}" + (f" (the Safe is at {doc['wallet_nonce']})" if doc["wallet_nonce"] else "")
    out.print(Text(nonce))
    out.print(Text("Call:", style="bold"))
    _print_call(doc["call"], "  ")
    simulation = doc["simulation"]
    if simulation is None:
        out.print(Text("Simulation: none (offline)" if doc.get("reasons") is None else "Simulation: none"))
    else:
        block = simulation["block"]
        state = "succeeds" if simulation["success"] else "REVERTS"
        out.print(Text(f"Simulation at block {block['number']:,}: {state}"))
        for o in simulation["outflows"]:
            out.print(Text(f"  out: {o['amount_display']} {o['asset']} to {o['to']}"))
        for c in simulation["storage_changes"]:
            meaning = c["meaning"] or "a slot of no known meaning"
            out.print(Text(f"  storage {c['slot']} [{meaning}]: {c['before']} -> {c['after']}"))
    if doc["findings"]:
        out.print(Text("Findings:", style="bold"))
        for f in doc["findings"]:
            out.print(Text(f"  {f['severity']:<8} {f['rule']}: {f['detail']}"))
    for reason in doc.get("reasons", []):
        err.print(Text(f"note: {reason}"))
    verdict = doc["verdict"]
    out.print(Text(f"verdict: {verdict}", style=VERDICT_STYLE[verdict]))


def _print_call(call: dict[str, Any], indent: str) -> None:
    op = "DELEGATECALL" if call["operation"] == 1 else "CALL"
    name = f" ({call['contract']})" if call["contract"] else ""
    if call["function"]:
        args = ", ".join(f"{a['name']}={a['value']}" for a in call["args"] if a["type"] != "bytes" or not call["inner"])
        what = f"{call['function'].split('(')[0]}({args})"
    elif call["selector"]:
        what = f"unknown selector {call['selector']}, {(len(call['data']) - 2) // 2} bytes"
    else:
        what = "no calldata"
    value = f", value {call['value']}" if call["value"] != "0" else ""
    out.print(Text(f"{indent}{op} {call['to']}{name}{value}: {what}"))
    for inner in call["inner"]:
        _print_call(inner, indent + "  ")
