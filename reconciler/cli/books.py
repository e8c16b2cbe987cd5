"""`accounts import` and `books import`: the customer and house accounts, and the firm's
books of custody entries, each file taken whole or not at all.
"""

from __future__ import annotations

from pathlib import Path

import typer

from reconciler.cli.common import JsonFlag, _emit_json, _read_file, _settings, already_imported, info, open_ledger

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
