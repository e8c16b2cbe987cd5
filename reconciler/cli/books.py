"""`accounts import|list` and `books import|list|balances|draft`: the customer and house
accounts, and the firm's books of custody entries — each file imported whole or not at all, the
same file twice a no-op; a draft of entries for what was observed, written for review, never
into the ledger.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from reconciler.cli.common import (
    JsonFlag,
    WalletOption,
    _emit_json,
    _read_file,
    _settings,
    already_imported,
    info,
    open_ledger,
    out,
    write_atomically,
)
from reconciler.cli.tables import NONE, Col, Row, fit_table, human_display, say
from reconciler.errors import ReconcilerError

accounts_app = typer.Typer(help="Customer and house accounts.", no_args_is_help=True)
books_app = typer.Typer(help="The firm's books of custody entries.", no_args_is_help=True)


@accounts_app.command("import")
def accounts_import(ctx: typer.Context, file: Path, json_out: JsonFlag = False) -> None:
    """Import accounts from CSV (account,class,name); all rows or none."""
    from reconciler.inputs.books import parse_accounts_csv

    settings = _settings(ctx)
    text, digest = _read_file(file)
    rows = parse_accounts_csv(text, str(file))
    ledger = open_ledger(settings)
    try:
        earlier = ledger.import_of("accounts", digest)
        # The same bytes again: a no-op, unless another file renamed an account since.
        added, updated = ledger.import_accounts(rows, str(file), digest, skip_unchanged=earlier is not None)
    finally:
        ledger.close()
    again = earlier if earlier is not None and not (added or updated) else None
    if json_out:
        _emit_json(
            {
                "file": str(file),
                "sha256": digest,
                "rows": len(rows),
                "added": added,
                "updated": updated,
                "already_imported": again is not None,
            }
        )
    elif again is not None:
        info.print(already_imported(file, digest, again))
    else:
        info.print(f"{file}: {len(rows)} account(s): {added} added, {updated} renamed")


@books_app.command("import")
def books_import(ctx: typer.Context, file: Path, json_out: JsonFlag = False) -> None:
    """Import book entries from CSV (entry_id,date,account,wallet,asset,amount,kind,memo[,tx_hash]).

    All rows or none, streamed (memory stays bounded however long the file). A file already
    imported byte for byte is a no-op."""
    from reconciler.inputs.books import BookStream
    from reconciler.inputs.csvfile import file_lines, file_sha256

    settings = _settings(ctx)
    digest = file_sha256(file)
    ledger = open_ledger(settings)
    try:
        earlier = ledger.books_import_of(digest)
        count = (
            0
            if earlier
            else ledger.import_books_stream(
                lambda known, entry_ids: BookStream(file_lines(file, digest), str(file), settings, known, entry_ids),
                str(file),
                digest,
            )
        )
    finally:
        ledger.close()
    if json_out:
        _emit_json({"file": str(file), "sha256": digest, "imported": count, "already_imported": earlier is not None})
    elif earlier:
        info.print(already_imported(file, digest, earlier))
    else:
        info.print(f"{file}: {count} book entr{'y' if count == 1 else 'ies'} imported")


@books_app.command("list")
def books_list(
    ctx: typer.Context,
    wallet: Annotated[str | None, typer.Option("--wallet", help="Only this wallet's entries.")] = None,
    asset: Annotated[str | None, typer.Option("--asset", help="Only this asset's entries.")] = None,
    account: Annotated[str | None, typer.Option("--account", help="Only this account's entries.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="How many, newest first; 0 for all.")] = 20,
    json_out: JsonFlag = False,
) -> None:
    """Book entries, newest first (by date, then entry id), with the books CSV's columns."""
    from reconciler.app.documents import entry_doc

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        entries, total = ledger.book_entries(wallet, asset, account, limit or None)
    finally:
        ledger.close()
    docs = [entry_doc(e, settings) for e in entries]
    if json_out:
        _emit_json({"entries": docs, "total": total})
        return
    if not docs:
        out.print("no book entries" + ("" if total or not (wallet or asset or account) else " match"))
        return
    units = max((len(d["asset"]) for d in docs), default=0)
    columns = (
        Col("entry_id", whole=True),
        Col("date", whole=True),
        Col("account"),
        Col("wallet"),
        Col("amount", justify="right", whole=True),
        Col("kind", drop=2),
        Col("tx_hash", whole=True, drop=1),
        Col("memo", wrap=True, drop=3),
    )
    rows = [
        Row(
            (
                d["entry_id"],
                d["date"],
                d["account"],
                d["wallet"],
                f"{human_display(d['amount'], d['amount_display'])} {d['asset']:<{units}}",
                d["kind"],
                d["tx_hash"] or NONE,
                d["memo"] or "",
            )
        )
        for d in docs
    ]
    out.print(fit_table(out.width, columns, rows))
    if total > len(docs):
        say(info, f"{len(docs):,} of {total:,} entries shown, newest first (--limit N, 0 for all)")


@books_app.command("balances")
def books_balances(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """The book balance of each wallet x asset (the sum of its entries), as a run compares it
    with the chain; one that no configured wallet x asset covers is marked not reconciled."""
    from reconciler.app.documents import book_balance_doc

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        balances = ledger.book_balances()
    finally:
        ledger.close()
    docs = [book_balance_doc(w, a, amount, settings) for (w, a), amount in sorted(balances.items())]
    if json_out:
        _emit_json({"balances": docs})
        return
    if not docs:
        out.print("no book entries (reconciler books import FILE)")
        return
    units = max((len(d["asset"]) for d in docs), default=0)
    columns = (
        Col("wallet"),
        Col("chain", drop=2),
        Col("book", justify="right", whole=True),
        Col("reconciled", drop=1),
    )
    rows = [
        Row(
            (
                d["wallet"],
                d["chain"] or NONE,
                f"{human_display(d['book'], d['book_display'])} {d['asset']:<{units}}",
                "yes" if d["reconciled"] else "NO: not in the configuration",
            ),
            style=None if d["reconciled"] else "yellow",
        )
        for d in docs
    ]
    out.print(fit_table(out.width, columns, rows))


@accounts_app.command("list")
def accounts_list(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Every account imported, with its class and name."""
    from reconciler.app.documents import account_doc

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        accounts = ledger.accounts()
    finally:
        ledger.close()
    docs = [account_doc(a) for a in accounts]
    if json_out:
        _emit_json({"accounts": docs})
        return
    if not docs:
        out.print("no accounts (reconciler accounts import FILE)")
        return
    columns = (Col("account", whole=True), Col("class"), Col("name", wrap=True))
    out.print(fit_table(out.width, columns, [Row((d["account"], d["class"], d["name"] or "")) for d in docs]))


@books_app.command("draft")
def books_draft(
    ctx: typer.Context,
    out_file: Annotated[Path, typer.Option("--out", help="The books CSV to write ('-': stdout).")],
    fees: Annotated[bool, typer.Option("--fees", help="Gas fees custody wallets paid (the default).")] = False,
    unbooked: Annotated[
        bool, typer.Option("--unbooked", help="Observed movements whose tx hash no book entry of the wallet carries.")
    ] = False,
    account: Annotated[
        str | None,
        typer.Option("--account", help="Book every row to this account. Default: as the description says."),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only what was observed on or after DATE (UTC).")] = None,
    wallet: WalletOption = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Draft book entries for what the chain showed, as a books CSV to review, then import
    with `books import`: the gas fees custody wallets paid (kind adjustment, negative, in the
    native coin) and, with --unbooked, observed movements no book entry names (deposits
    positive, withdrawals negative). Writes nothing to the ledger. Entry ids are derived from
    the transaction, so a draft made again writes the same ids and an entry already imported
    is not drafted again. Without --account, fees book to the one house account whose entries
    book into the wallet, movements to the one account booking that wallet x asset; otherwise
    it refuses, naming the wallet."""
    from reconciler.app.books_draft import draft, to_csv

    if since is not None:
        try:
            since_date = date.fromisoformat(since)
        except ValueError:
            raise typer.BadParameter(f"{since!r} is not an ISO date like 2026-11-24", param_hint="--since") from None
    else:
        since_date = None
    to_stdout = str(out_file) == "-"
    if to_stdout and json_out:
        raise typer.BadParameter("--out - writes the CSV on stdout; --json would too: give a file", param_hint="--out")
    if not to_stdout:
        folder = out_file.parent if str(out_file.parent) else Path(".")
        if out_file.is_dir() or not folder.is_dir():
            problem = "is a folder; name a file" if out_file.is_dir() else f"cannot be written: no folder {folder}"
            raise ReconcilerError(f"--out {out_file} {problem}")
        if out_file.exists() and not force:
            raise ReconcilerError(f"{out_file} already exists (a draft being reviewed?); use --force to overwrite it")
    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        made = draft(
            settings,
            ledger,
            fees=fees or not unbooked,
            unbooked=unbooked,
            account=account,
            since=since_date,
            wallets=wallet or (),
        )
    finally:
        ledger.close()
    text = to_csv(made.entries)
    if to_stdout:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        try:
            write_atomically(out_file, text)
        except OSError as exc:
            raise ReconcilerError(f"cannot write {out_file}: {exc.strerror or exc}") from None
    counts = {
        "fees": sum(1 for e in made.entries if e.what == "fee"),
        "unbooked": sum(1 for e in made.entries if e.what == "unbooked"),
    }
    if json_out:
        _emit_json(
            {
                "file": str(out_file),
                "entries": len(made.entries),
                **counts,
                "already_booked": made.already_booked,
                "outside_configuration": made.outside,
            }
        )
        return
    where = "stdout" if to_stdout else str(out_file)
    n = len(made.entries)
    said = (
        f"{where}: {n:,} entr{'y' if n == 1 else 'ies'} drafted "
        f"({counts['fees']:,} fees, {counts['unbooked']:,} movements)"
    )
    if made.already_booked:
        said += f"; {made.already_booked:,} already booked, left out"
    if made.entries and not to_stdout:
        said += f". Review it, then: reconciler books import {out_file}"
    say(info, said)
