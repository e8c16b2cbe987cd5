"""`init`, `config check`, `config init` and `bench`: the ledger's schema, the configuration
file, and the benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from reconciler.cli import common
from reconciler.cli.common import JsonFlag, _emit_json, _settings, err, info, out
from reconciler.cli.conventions import said_once
from reconciler.cli.tables import say
from reconciler.errors import ReconcilerError, chain_message
from reconciler.redaction import redact_db_url as redact_url

config_app = typer.Typer(help="Write a starter configuration, and check one.", no_args_is_help=True)


def init(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Create or migrate the database schema (idempotent; never writes the config)."""
    from reconciler.bootstrap import audit_key
    from reconciler.ledger import daemon_store
    from reconciler.ledger.store import Ledger

    settings = _settings(ctx)
    key = audit_key(settings)
    ledger = Ledger(settings.database_url)
    ledger.audit_key = key
    try:
        before, version = ledger.init()
        # A key newly set: the trail's newest record becomes a keyed one (verification needs it).
        sealed = daemon_store.seal_audit(ledger)
    finally:
        ledger.close()
    if sealed is not None:
        info.print(
            f"audit trail: record {sealed.seq} written with [audit] key_env's key; head {sealed}",
            markup=False,
            soft_wrap=True,
        )
    if json_out:
        _emit_json(
            {"database": redact_url(settings.database_url), "schema_version": version, "previous_version": before}
        )
    else:
        change = (
            "created"
            if before == 0
            else "already up to date"
            if before == version
            else f"upgraded from schema version {before}"
        )
        info.print(f"database ready: {redact_url(settings.database_url)} (schema version {version}, {change})")


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    online: Annotated[
        bool, typer.Option("--online", help="Also check each node's chain id and each token's decimals().")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Validate the configuration file; with --online, also read each chain as a run does and
    list what was verified: endpoint, chain id, head and pinned block, read path, decimals."""
    from reconciler.inputs.wallets import configured_wallets

    settings = _settings(ctx)
    chains: dict[str, Any] = {}
    failed = False
    if online:
        from reconciler.app.online_check import check_chain, describe

        for chain in settings.chains.values():
            # The endpoint's own log lines would say the same failure again: said once, below.
            with said_once(common._said_once) as printed:
                chains[chain.name] = check_chain(chain, settings)
                doc = chains[chain.name]
                failed = failed or not doc["ok"]
                if json_out:
                    if not doc["ok"]:
                        say(err, chain_message(chain.name, doc["error"]))
                else:
                    for line in describe(chain.name, doc):
                        say(out, line, hang=4)
                printed.append(str(doc.get("error") or ""))
    doc = {
        "ok": not failed,
        "config": str(settings.path),
        "database": redact_url(settings.database_url),
        "chains": chains or {name: {} for name in settings.chains},
        "assets": sorted(settings.assets),
        "wallets": sorted(configured_wallets(settings)),
    }
    if json_out:
        _emit_json(doc)
    else:
        say(
            err,
            f"{settings.path}: {'ok' if not failed else 'FAILED'} — {len(settings.chains)} chain(s), "
            f"{len(settings.assets)} asset(s), {len(configured_wallets(settings))} wallet(s)",
        )
    if failed:
        raise typer.Exit(2)


@config_app.command("init")
def config_init(
    path: Annotated[
        Path, typer.Argument(help="Where to write it (a folder gets a reconciler.toml inside).")
    ] = Path("reconciler.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter configuration (default ./reconciler.toml) to edit; never
    overwrites a file unless --force."""
    from reconciler.templates.starter import starter_config

    target = path / "reconciler.toml" if path.is_dir() else path
    if target.exists() and not force:
        raise ReconcilerError(f"{target} already exists; use --force to overwrite it")
    try:
        target.write_text(starter_config(), encoding="utf-8")
    except OSError as exc:
        raise ReconcilerError(f"cannot write {target}: {exc.strerror}") from exc
    shown = str(target)
    flag = "" if target.resolve() == Path("reconciler.toml").resolve() else f" --config {shown}"
    info.print(
        f"wrote {shown}\nnext:\n"
        f"  1. edit {shown}: your node's rpc_urls and chain_id, your tokens, your custody wallets\n"
        f"  2. reconciler{flag} config check --online   (asks the node what it says)\n"
        f"  3. reconciler{flag} init                    (creates the ledger database)\n"
        f"  4. reconciler{flag} accounts import FILE, books import FILE, then run",
        markup=False,
    )


def bench(ctx: typer.Context) -> None:
    """Benchmark against the RPC floor on a local Anvil (`reconciler bench [--n N ...] [--large]`; --help)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/ is not installed
    from benchmarks.bench import main as bench_main

    raise typer.Exit(bench_main(ctx.args))
