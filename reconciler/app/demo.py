"""`reconciler demo`: the whole product on a laptop, against real local chains.

Starts two Anvil nodes (an L1 and an L2 with different chain ids), deploys the collateral
tokens and Multicall3, funds custody wallets exactly as sample books say — one of them a 2-of-3
multisig with the Safe storage layout, whose configuration is baselined as reviewed — then
plants breaks: an outflow that nobody authorized (moved with anvil_impersonateAccount, no key),
an inflow the books do not know, a booked deposit that never arrived, and a takeover of the
multisig (its owners sign one DELEGATECALL that overwrites the proxy's singleton in slot 0: no
event, same code hash — the Bybit pattern). It reconciles through the same code path as
`reconciler run`, checks that exactly the planted breaks were found, and stops both nodes on
every exit path. Exit 0 means the demo ran as designed, breaks included.

`--keep DIR` writes into DIR and marks it with a `.reconciler-demo` file: a folder so marked is
the demo's own and is started over (its config, books and ledger replaced) on the next
`--keep DIR`; a folder not so marked that already holds one of those files is never touched.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import shlex
import shutil
import sys
import textwrap
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from eth_account import Account
from rich.console import Console

from chains.evm.devnet import AnvilNode, Devnet, artifact, owned_tempdir
from reconciler.app import jsonout, wallet_review
from reconciler.app.documents import run_doc
from reconciler.app.run import RunOptions, RunReport, run_reconciliation
from reconciler.bootstrap import adapter_for
from reconciler.domain import BreakKind, BreakRecord, abbreviate_ids, parse_amount
from reconciler.errors import ReconcilerError
from reconciler.inputs.books import parse_accounts_csv, parse_books_csv
from reconciler.inputs.config import load_settings
from reconciler.inputs.settings import Settings
from reconciler.interrupt import interruptible
from reconciler.ledger.store import Ledger

L1_CHAIN_ID = 31337
L2_CHAIN_ID = 31338
OUTSIDER = "0x000000000000000000000000000000000000dEaD"


def _key(label: str) -> bytes:
    return hashlib.sha256(f"reconciler-demo:{label}".encode()).digest()


def _address(label: str) -> str:
    """A deterministic custody address (the demo never needs its key)."""
    return str(Account.from_key(_key(label)).address)


VAULT = "vault-1"  # the multisig: its address is the proxy deployed on the demo's chain
VAULT_OWNERS = [Account.from_key(_key(f"vault-owner-{i}")) for i in (1, 2, 3)]
VAULT_THRESHOLD = 2


WALLETS = {
    # name: (chain, class, custodian)
    "cust-seg-1": ("eth", "futures", "Example Trust Co"),
    "cust-seg-2": ("eth", "cleared_swaps", "Example Trust Co"),
    "house-1": ("eth", "house", "Example Trust Co"),
    "cust-seg-l2": ("l2", "futures", "Example Digital Custody"),
    VAULT: ("eth", "futures", "Example Trust Co"),
}
ASSETS = {
    # name: (chain, kind, decimals, native)
    "USDC": ("eth", "stablecoin", 6, False),
    "TMMF": ("eth", "mmf", 18, False),
    "WBTC": ("eth", "wrapped", 8, False),
    "ETH": ("eth", "native", 18, True),
    "USDC-L2": ("l2", "stablecoin", 6, False),
    "ETH-L2": ("l2", "native", 18, True),
}
ACCOUNTS = [
    ("C-1001", "futures", "Acme Grain Co"),
    ("C-1002", "futures", "Blue River Energy"),
    ("S-2001", "cleared_swaps", "Harbor Rates Fund"),
    ("H-0001", "house", "Firm house account"),
]
# entry_id, account, wallet, asset, amount (asset units)
BOOKS = [
    ("E-0001", "C-1001", "cust-seg-1", "USDC", "1250000.50"),
    ("E-0002", "C-1002", "cust-seg-1", "USDC", "800000"),
    ("E-0003", "C-1001", "cust-seg-1", "TMMF", "500000.000000000000000001"),
    ("E-0004", "C-1002", "cust-seg-1", "ETH", "120.5"),
    ("E-0005", "S-2001", "cust-seg-2", "USDC", "3000000"),
    ("E-0006", "S-2001", "cust-seg-2", "WBTC", "42.12345678"),
    ("E-0007", "H-0001", "house-1", "USDC", "500000"),
    ("E-0008", "H-0001", "house-1", "ETH", "10"),
    ("E-0009", "C-1001", "cust-seg-l2", "USDC-L2", "2000000"),
    ("E-0010", "C-1002", "cust-seg-l2", "ETH-L2", "5"),
    ("E-0012", "C-1001", VAULT, "ETH", "250"),
    # Booked, but the coins never arrived on chain: the planted "missing deposit".
    ("E-0011", "S-2001", "cust-seg-2", "WBTC", "1.5"),
]
STOLEN_USDC = "250000"  # planted: leaves cust-seg-1 with no instruction
UNBOOKED_ETH = "3"  # planted: arrives in house-1, unknown to the books
EXPECTED = {  # (wallet, asset): difference in asset units, on-chain minus book
    ("cust-seg-1", "USDC"): "-" + STOLEN_USDC,
    ("house-1", "ETH"): UNBOOKED_ETH,
    ("cust-seg-2", "WBTC"): "-1.5",
}


# What `--keep DIR` writes, and the mark that says a folder is the demo's own.
MARKER = ".reconciler-demo"
KEPT_FILES = ("reconciler.toml", "accounts.csv", "books.csv", "reconciler.db")
_LEDGER_SIDECARS = ("-wal", "-shm", "-journal", ".lock")


def prepare_kept_folder(folder: Path) -> None:
    """Make ``folder`` ready for the demo: created if missing; a previous demo's folder (marked)
    is started over; any other folder holding one of the demo's files is refused (exit 2)."""
    if folder.exists() and not folder.is_dir():
        raise ReconcilerError(f"--keep {folder}: not a folder")
    present = [name for name in KEPT_FILES if (folder / name).exists()]
    if present and not (folder / MARKER).exists():
        raise ReconcilerError(
            f"--keep {folder}: the folder already holds {', '.join(present)}, not written by "
            "`reconciler demo --keep`; the demo will not overwrite it. Choose a new or empty folder."
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:
        (folder / name).unlink(missing_ok=True)
    for suffix in _LEDGER_SIDECARS:
        (folder / f"reconciler.db{suffix}").unlink(missing_ok=True)
    (folder / MARKER).write_text(
        "This folder was written by `reconciler demo --keep`. Running that again here starts it over:\n"
        f"{', '.join(KEPT_FILES)} are replaced.\n"
    )


def reconciler_command() -> str:
    """How the user can run this same reconciler again from any folder: ``reconciler`` when
    that is what the shell finds, else the executable's absolute path (``.venv/bin/reconciler``
    before the environment is activated), else ``python -m reconciler``."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "reconciler" and argv0.exists():
        found = shutil.which("reconciler")
        if found is not None and Path(found).resolve() == argv0.resolve():
            return "reconciler"
        return shlex.quote(str(argv0.absolute()))
    return f"{shlex.quote(sys.executable)} -m reconciler"


def _units(amount: str) -> str:
    return f"{Decimal(amount):,}"


def explain(report_breaks: list[BreakRecord], positions: int) -> list[str]:
    """Each planted event in plain words, with the breaks it raised."""
    kinds: dict[tuple[str, str | None], list[str]] = {}
    for b in report_breaks:
        kinds.setdefault((b.key.wallet, b.key.asset), []).append(f"{b.key.kind.value} ({b.severity.value})")

    def found(wallet: str, asset: str | None) -> str:
        return ", ".join(sorted(kinds.get((wallet, asset), []))) or "nothing (not found!)"

    return [
        f"demo ran as designed: {positions} positions compared on 2 chains; the 4 planted events were found "
        f"as {len(report_breaks)} breaks:",
        f"  1. Theft: {_units(STOLEN_USDC)} USDC left cust-seg-1 with no signed transfer instruction (moved "
        "without the wallet's key). The transfer scan flags the transaction itself, and the balance no longer "
        f"matches the books. Found: {found('cust-seg-1', 'USDC')}.",
        f"  2. Unbooked inflow: {_units(UNBOOKED_ETH)} ETH arrived in house-1 that no book entry explains: "
        f"the chain holds more than the books say. Found: {found('house-1', 'ETH')}.",
        "  3. Missing deposit: 1.5 WBTC booked to cust-seg-2 (entry E-0011) never arrived on chain: the books "
        f"say more than the chain holds. Found: {found('cust-seg-2', 'WBTC')}.",
        f"  4. Multisig takeover: {VAULT}, a 2-of-3 multisig, had its singleton (the code it runs) replaced: "
        "two owners signed one DELEGATECALL that rewrote storage slot 0 — no event, same code hash, the Bybit "
        "pattern. The execution check names the transaction that did it, and reading the wallet's storage at the "
        f"pin shows the replaced singleton. Found: {found(VAULT, None)}.",
        "A real run with these breaks open exits 1; the demo exits 0 because it found exactly what it planted.",
    ]


def what_next(keep: Path | None, run_id: str, break_id: str | None, width: int = 80) -> list[str]:
    """Commands to try next, in the kept folder or how to keep one, fitted to ``width``: prose
    wrapped at spaces, a command too long for one line continued with a trailing backslash (it
    still pastes into a shell), ids in their short form (any unique prefix is accepted)."""
    cmd = reconciler_command()
    activate = Path(cmd).parent / "activate"
    tip = (
        [f"(or `source {shlex.quote(str(activate))}` once, then type just `reconciler`)"]
        if cmd.startswith("/") and activate.exists()
        else []
    )
    lines: list[str] = []

    def prose(text: str, indent: str = "") -> None:
        lines.extend(_wrapped(text, width, indent, indent or "  "))

    def command(*args: str) -> None:
        lines.extend(_command_lines([cmd, *args], width))

    if keep is None:
        lines.append("what next:")
        command("demo", "--keep", "DIR")
        prose(
            "keeps the config, books and ledger in DIR, to try there: runs list, runs show RUN_ID, breaks list, "
            "breaks show ID, breaks ack ID --note TEXT",
            "      ",
        )
        command("config", "init")
        prose("writes a commented reconciler.toml to start from, for your own node", "      ")
        for line in tip:
            prose(line, "  ")
        return lines
    folder = keep.absolute()
    short = abbreviate_ids([run_id, *([break_id] if break_id else [])])
    some_break = short[break_id] if break_id else "BREAK_ID"
    prose(f"kept in {folder}: {', '.join(KEPT_FILES)}.")
    prose(
        "The chains stopped with the demo: run, scan and config check --online will not answer there, the "
        "ledger's commands do. Try:"
    )
    lines.extend(_command_lines(["cd", shlex.quote(str(folder))], width))
    command("runs", "list")
    command("runs", "show", short[run_id])
    command("breaks", "list")
    command("breaks", "show", some_break)
    command("breaks", "ack", some_break, "--note", '"who is on it, and why"')
    for line in tip:
        prose(line, "  ")
    prose(
        f"`demo --keep {shlex.quote(str(keep))}` again starts that folder over; `config init` writes a commented "
        "reconciler.toml for your own node."
    )
    return lines


def _wrapped(text: str, width: int, first: str = "", later: str = "") -> list[str]:
    """Prose wrapped at spaces; a word (a path, an id) is never broken."""
    return textwrap.wrap(
        text,
        max(width, 40),
        initial_indent=first,
        subsequent_indent=later,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [first.rstrip()]


def _command_lines(words: list[str], width: int, indent: str = "  ") -> list[str]:
    """A command to paste, on one line when it fits; else continued with `` \\`` where the
    next word (an option with its value kept together) does not fit, the continuation indented."""
    groups: list[str] = []
    for word in words:
        if groups and groups[-1].startswith("--") and " " not in groups[-1] and not word.startswith("-"):
            groups[-1] += " " + word
        else:
            groups.append(word)
    lines: list[str] = []
    current = indent + groups[0]
    for group in groups[1:]:
        if len(current) + 1 + len(group) + 2 > width:
            lines.append(current + " \\")
            current = indent + "    " + group
        else:
            current += " " + group
    lines.append(current)
    return lines


def _write_config(folder: Path, urls: dict[str, str], tokens: dict[str, str], addresses: dict[str, str]) -> Path:
    lines = ["[database]", 'url = "sqlite:///reconciler.db"', ""]
    for chain, chain_id in (("eth", L1_CHAIN_ID), ("l2", L2_CHAIN_ID)):
        lines += [
            f"[chains.{chain}]",
            'kind = "evm"',
            f'rpc_urls = ["{urls[chain]}"]',
            f"chain_id = {chain_id}",
            "confirmations = 0",
            # observe transfers from the first block, so the planted theft is seen as it happened
            "start_block = 1",
            "",
        ]
    for name, (chain, kind, decimals, native) in ASSETS.items():
        lines += [f"[assets.{name}]", f'chain = "{chain}"', f'kind = "{kind}"']
        lines += ["native = true"] if native else [f'address = "{tokens[name]}"', f"decimals = {decimals}"]
        lines.append("")
    for name, (chain, klass, custodian) in WALLETS.items():
        lines += [
            f"[wallets.{name}]",
            f'chain = "{chain}"',
            f'address = "{addresses[name]}"',
            f'class = "{klass}"',
            f'custodian = "{custodian}"',
        ]
        if name == VAULT:
            owners = ", ".join(f'"{o.address}"' for o in VAULT_OWNERS)
            lines += [f"approvers = [{owners}]", f"threshold = {VAULT_THRESHOLD}"]
        lines.append("")
    path = folder / "reconciler.toml"
    path.write_text("\n".join(lines))
    return path


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _set_up_chains(nodes: dict[str, AnvilNode]) -> tuple[dict[str, str], dict[str, str]]:
    """Deploy and fund exactly what the books say, then plant the balance breaks. Returns token
    and wallet addresses."""
    nets = {chain: Devnet(node.url) for chain, node in nodes.items()}
    tokens: dict[str, str] = {}
    contracts = {}
    for net in nets.values():
        net.install_multicall3()
    addresses = {name: _address(name) for name in WALLETS if name != VAULT}
    addresses[VAULT] = nets["eth"].deploy_custody_wallet([o.address for o in VAULT_OWNERS], VAULT_THRESHOLD).address
    for name, (chain, _kind, decimals, native) in ASSETS.items():
        if not native:
            contract = nets[chain].deploy_token(f"Demo {name}", name, decimals)
            contracts[name] = contract
            tokens[name] = contract.address
    for _entry, _account, wallet, asset, amount in BOOKS:
        if _entry == "E-0011":
            continue  # the missing deposit: booked, never sent
        chain, _kind, decimals, native = ASSETS[asset]
        units = parse_amount(amount, decimals)
        address = addresses[wallet]
        if native:
            net = nets[chain]
            current = net.w3.eth.get_balance(address)  # type: ignore[arg-type]
            net.set_native_balance(address, current + units)
        else:
            nets[chain].mint(contracts[asset], address, units)
    for net in nets.values():
        net.mine()
    # Planted breaks.
    nets["eth"].transfer_as(contracts["USDC"], _address("cust-seg-1"), OUTSIDER, parse_amount(STOLEN_USDC, 6))
    house = _address("house-1")
    eth_net = nets["eth"]
    eth_net.set_native_balance(house, eth_net.w3.eth.get_balance(house) + parse_amount(UNBOOKED_ETH, 18))  # type: ignore[arg-type]
    for net in nets.values():
        net.mine()
    return tokens, addresses


def _plant_takeover(url: str, vault: str) -> None:
    """Two of the vault's owners sign one transaction: a DELEGATECALL into a contract that
    overwrites the proxy's slot 0 with an attacker's singleton. No event says so."""
    net = Devnet(url)
    writer = net.deploy("SlotWriter")
    evil = net.deploy("MaliciousSingleton", OUTSIDER)
    wallet = net.w3.eth.contract(address=vault, abi=artifact("CustodyWallet")["abi"])  # type: ignore[call-overload]
    net.exec_custody(
        wallet, VAULT_OWNERS[:2], writer.address, data=Devnet.calldata(writer, "takeover", evil.address), operation=1
    )
    net.mine()


def _stop_nodes(nodes: dict[str, AnvilNode]) -> None:
    """Stop every node started so far, even if stopping one of them fails."""
    with contextlib.ExitStack() as stack:
        for node in nodes.values():
            stack.callback(node.stop)


def run_demo(
    keep: Path | None,
    json_out: bool,
    out: Console,
    err: Console,
    info: Console | None = None,
    *,
    print_run: Callable[[RunReport, Settings], None],
) -> int:
    """0: ran as designed; 1: the planted breaks were not found exactly. A SIGINT, SIGTERM or
    SIGHUP raises `Interrupted` (the CLI exits 2) after the nodes are stopped, never 0. A
    ``keep`` folder that is not the demo's own and holds its files raises ReconcilerError (exit
    2) before anything starts. Progress goes to ``info`` (silenced by --quiet); the run is
    shown with ``print_run`` (the command line's), or as its JSON document."""
    info = info or err
    if keep is not None:
        prepare_kept_folder(keep)
    with interruptible() as guard:
        folder = keep if keep is not None else owned_tempdir("reconciler-demo-")
        if keep is None:
            guard.callback(shutil.rmtree, folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        nodes: dict[str, AnvilNode] = {}
        # Registered before the first start, so a node is stopped however the block ends; cleanups
        # run after the ledger's (last registered, first run), with signals only recorded.
        guard.callback(_stop_nodes, nodes)
        info.print("starting two local Anvil chains (eth: 31337, l2: 31338)…")
        for chain, chain_id in (("eth", L1_CHAIN_ID), ("l2", L2_CHAIN_ID)):
            nodes[chain] = AnvilNode.start(chain_id)
            guard.check()
        info.print("deploying Multicall3 and tokens, funding custody wallets, planting breaks…")
        tokens, addresses = _set_up_chains(nodes)
        config = _write_config(folder, {c: n.url for c, n in nodes.items()}, tokens, addresses)
        accounts_csv = _write_csv(folder / "accounts.csv", ["account", "class", "name"], [list(a) for a in ACCOUNTS])
        books_csv = _write_csv(
            folder / "books.csv",
            ["entry_id", "date", "account", "wallet", "asset", "amount", "kind", "memo"],
            [[e, "2026-11-24", acct, w, a, amt, "deposit", "initial margin"] for e, acct, w, a, amt in BOOKS],
        )
        guard.check()
        for line in _wrapped(f"config, books and database in {folder}", info.width, "", "  "):
            info.print(line, soft_wrap=True)
        settings = load_settings(str(config))
        ledger = Ledger(settings.database_url)
        guard.callback(ledger.close)
        ledger.init()  # the demo's own fresh database, as `reconciler init` creates it
        ledger.ensure_ready()
        ledger.import_accounts(
            parse_accounts_csv(accounts_csv.read_text(), str(accounts_csv)), str(accounts_csv), "demo"
        )
        rows = parse_books_csv(books_csv.read_text(), str(books_csv), settings, ledger.known_accounts())
        ledger.import_books(rows, str(books_csv), "demo")
        # The multisig's configuration as reviewed (what `reconciler wallets baseline` records),
        # then the takeover, which only a read of its storage can see.
        wallet_review.record_reviewed(ledger, wallet_review.read_current(settings, adapter_for, [VAULT]))
        _plant_takeover(nodes["eth"].url, addresses[VAULT])
        guard.check()
        report = run_reconciliation(
            settings,
            ledger,
            adapter_for,
            RunOptions(checkpoint=guard.check, render=lambda r: run_doc(r, settings)),
        )
        guard.check()
        if json_out:
            import sys

            jsonout.dump(report.document or run_doc(report, settings), sys.stdout)
            sys.stdout.write("\n")
            sys.stdout.flush()  # the whole report is on stdout before the nodes stop
        else:
            print_run(report, settings)
        found = {
            (b.key.wallet, b.key.asset): b.amount for b in report.breaks if b.key.kind is BreakKind.BALANCE_MISMATCH
        }
        expected = {key: parse_amount(value, settings.assets[key[1]].decimals) for key, value in EXPECTED.items()}
        takeovers = [
            b for b in report.breaks if b.key.kind is BreakKind.WALLET_CONFIG_CHANGE and "singleton:" in b.detail
        ]
        executions = [
            b.key.wallet
            for b in report.breaks
            if b.key.kind is BreakKind.WALLET_CONFIG_CHANGE and b.key.tx_hash is not None
        ]
        thefts = [
            (b.key.wallet, b.key.asset, b.amount)
            for b in report.breaks
            if b.key.kind is BreakKind.UNAUTHORIZED_TRANSFER
        ]
        stolen = ("cust-seg-1", "USDC", -parse_amount(STOLEN_USDC, 6))
        if (
            report.run.status != "complete"
            or found != expected
            or [b.key.wallet for b in takeovers] != [VAULT]
            or executions != [VAULT]
            or thefts != [stolen]
        ):
            err.print(
                f"demo did not find the planted breaks: expected {expected} and a takeover of {VAULT}, "
                f"found {found} and {[b.key.wallet for b in takeovers]}; unauthorized transfers {thefts}"
                f" (status {report.run.status}: {report.run.reason})",
                style="red",
            )
            return 1  # leaving the block still raises Interrupted if a signal was recorded
        guard.check()
    # The nodes are stopped and no signal was recorded (leaving the block would have raised).
    theft = next((b.id for b in report.breaks if b.key.kind is BreakKind.UNAUTHORIZED_TRANSFER), None)
    width = err.width  # the terminal's (or COLUMNS); off a terminal, wide enough for whole lines
    for item in explain(list(report.breaks), len(report.positions)):
        body = item.lstrip()
        indent = item[: len(item) - len(body)]
        later = " " * (len(indent) + 3) if indent else ""
        for line in _wrapped(body, width, indent, later):
            err.print(line, soft_wrap=True)
    for line in what_next(keep, report.run.id, theft, width):
        err.print(line, soft_wrap=True)
    return 0
