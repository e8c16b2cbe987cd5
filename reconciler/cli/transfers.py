"""`transfers list` and `instructions import|sign|list`: the observed movements of custody
wallets, and the signed transfer instructions that authorize outflows.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from reconciler.cli.common import JsonFlag, _emit_json, _read_file, _settings, info, open_ledger, out, report_import
from reconciler.cli.tables import NONE, Col, Row, fit_table, human_display, human_instant, human_number, say
from reconciler.errors import InputError

transfers_app = typer.Typer(help="Observed movements of custody wallets.", no_args_is_help=True)
instructions_app = typer.Typer(help="Signed transfer instructions that authorize outflows.", no_args_is_help=True)


@transfers_app.command("list")
def transfers_list(
    ctx: typer.Context,
    wallet: Annotated[str | None, typer.Option("--wallet", help="Only this wallet.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="observed or reorged.")] = None,
    all_kinds: Annotated[bool, typer.Option("--all", help="Also approvals and gas fees.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Observed movements into and out of custody wallets, with the instruction that
    authorized each outflow."""
    from reconciler.app.documents import transfer_doc
    from reconciler.inputs.settings import shown_names
    from reconciler.ledger import surveillance_store

    settings = _settings(ctx)
    if status is not None and status not in ("observed", "reorged"):
        raise typer.BadParameter(f"{status!r} is not observed or reorged", param_hint="--status")
    if wallet is not None and wallet not in settings.wallets:
        known = shown_names(settings.wallets)
        raise typer.BadParameter(f"no wallet {wallet!r}; configured: {known}", param_hint="--wallet")
    directions = ["in", "out", "approval", "fee"] if all_kinds else ["in", "out"]
    ledger = open_ledger(settings)
    try:
        rows = surveillance_store.list_movements(ledger, wallet, status, directions)
    finally:
        ledger.close()
    docs = [transfer_doc(r, settings) for r in rows]
    if json_out:
        _emit_json({"transfers": docs})
        return
    if not docs:
        out.print("no movements observed" + (f" for {wallet}" if wallet else "") + (f" ({status})" if status else ""))
        return
    columns = (
        Col("chain", drop=4),
        Col("block", justify="right", whole=True),
        Col("tx", whole=True),
        Col("wallet"),
        Col("dir"),
        Col("asset"),
        Col("amount", justify="right", whole=True),
        Col("counterparty", whole=True, drop=5),
        Col("status", drop=2),
        Col("by", drop=3),
        Col("instruction", whole=True, drop=1),
    )
    table_rows = [
        Row(
            (
                d["chain"],
                human_number(d["block_number"]),
                d["tx_hash"],
                d["wallet"],
                d["direction"],
                d["asset"],
                human_display(d["amount"], d["amount_display"]),
                d["to"] if d["direction"] != "in" else d["from"],
                d["status"],
                _moved_by(d["initiator"], d["function"]),
                d["instruction_id"] or NONE,
            ),
            style="dim" if d["status"] == "reorged" else None,
        )
        for d in docs
    ]
    out.print(fit_table(out.width, columns, table_rows))


def _moved_by(initiator: str | None, function: str | None) -> str:
    """``issuer: forcedTransfer``, ``wallet``, ``spender``; NONE where it could not be told."""
    if initiator is None:
        return NONE
    return f"{initiator}: {function}" if function else initiator


@instructions_app.command("import")
def instructions_import(ctx: typer.Context, file: Path, json_out: JsonFlag = False) -> None:
    """Import signed transfer instructions (JSON lines); the whole file or nothing."""
    from reconciler.inputs.instructions import load_instructions
    from reconciler.ledger import surveillance_store

    settings = _settings(ctx)
    text, digest = _read_file(file)
    ledger = open_ledger(settings)
    try:
        earlier = ledger.import_of("instructions", digest)
        count = 0
        if earlier is None:  # the same bytes again: a no-op (a different file reusing an id is refused)
            parsed = load_instructions(text, str(file), settings, surveillance_store.stored_instruction_ids(ledger))
            lines = dict(enumerate(text.splitlines(), start=1))
            count = surveillance_store.import_instructions(ledger, parsed, lines, str(file), digest)
    finally:
        ledger.close()
    report_import(json_out, file, digest, count, "instruction(s)", earlier)


@instructions_app.command("sign")
def instructions_sign(
    ctx: typer.Context,
    file: Path,
    key_env: Annotated[
        str | None, typer.Option("--key-env", help="Environment variable holding the signing key (hex).")
    ] = None,
    keystore: Annotated[Path | None, typer.Option("--keystore", help="An encrypted keystore (JSON) file.")] = None,
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Environment variable holding the keystore's password.")
    ] = None,
) -> None:
    """Add a signature to every instruction of FILE and print the result (JSON lines) on stdout.
    The key comes only from the environment or an encrypted keystore, never the command line."""
    from reconciler.inputs.instructions import load_key, sign_lines

    settings = _settings(ctx)
    if (key_env is None) == (keystore is None):
        raise typer.BadParameter("give either --key-env VAR or --keystore PATH (with --password-env VAR)")
    try:
        text, _digest = _read_file(file)
    except InputError as exc:
        raise InputError(exc.source, exc.problems, undone="signed") from None
    key = load_key(key_env=key_env, keystore=keystore, password_env=password_env)
    done = sign_lines(text, str(file), settings, key)
    sys.stdout.write(done.text if done.text.endswith("\n") or not done.text else done.text + "\n")
    sys.stdout.flush()
    already = f"; {done.already} already carried its signature" if done.already else ""
    say(
        info,
        f"{file}: signed {done.signed} instruction(s) as {done.address} (an approver of "
        f"{', '.join(done.wallets) or 'no wallet'}){already}",
    )


@instructions_app.command("list")
def instructions_list(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Every imported instruction with its status: open, consumed (by a tx hash) or expired;
    signatures are verified again, and an instruction that no longer verifies says why."""
    from reconciler.app.documents import instruction_doc
    from reconciler.ledger import surveillance_store

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        statuses = surveillance_store.instruction_statuses(ledger)
    finally:
        ledger.close()
    now = datetime.now(UTC)
    docs = [instruction_doc(st, settings, now) for st in statuses]
    if json_out:
        _emit_json({"instructions": docs})
        return
    if not docs:
        out.print("no instructions imported (reconciler instructions import FILE)")
        return
    columns = (
        Col("id", whole=True),
        Col("wallet"),
        Col("asset"),
        Col("to", whole=True, drop=3),
        Col("amount", justify="right", whole=True),
        Col("valid until", whole=True, drop=2),
        Col("status"),
        Col("consumed by", whole=True, drop=1),
        Col("valid", wrap=True),
    )
    table_rows = [
        Row(
            (
                d["id"],
                d["wallet"],
                d["asset"],
                d["to"],
                human_display(d["amount"], d["amount_display"]),
                human_instant(d["valid_until"]),
                d["status"],
                d["consumed_by"] or NONE,
                "yes" if d["valid"] else "NO: " + "; ".join(d["problems"]),
            ),
            style=None if d["valid"] else "red",
        )
        for d in docs
    ]
    out.print(fit_table(out.width, columns, table_rows))
