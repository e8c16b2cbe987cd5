"""A run streamed chunk by chunk prints the very document a run in one piece prints.

The fleet (7 wallets x 3 assets) is larger than the chunk the test sets (2 wallets:
``RECONCILER_CHUNK_WALLETS``), so a run of it is four units on one chain. Two ledgers are fed the
same inputs and run at the same pins: one with the chunk larger than the fleet (one unit: the
run as it always was), one streamed. Their documents must be byte-for-byte equal once the run
ids, break ids and start times (fresh in every run) are named by placeholders. The documents of
the unstreamed ledger also equal a golden produced by the code before streaming existed
(``streamed_golden.json``), with the values of this chain (addresses, hashes, block numbers)
named by placeholders.

What must hold besides: a break of a wallet in the third chunk is seen again, not resolved
because the first chunk did not see it; a break whose books were fixed is resolved; the flow
check and the transfer surveillance (chain-wide passes) see every wallet.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from tests.conftest import Scenario
from tests.integration.helpers import ACCOUNTS_HEADER, BOOKS_HEADER

GOLDEN = Path(__file__).with_name("streamed_golden.json")
WALLETS = [f"w{i}" for i in range(1, 8)]
# Fixed addresses: the golden names them as they are.
ADDRESS = {name: f"0x{i:040x}" for i, name in enumerate(WALLETS, start=0x5A11)}
OUTSIDER = "0x000000000000000000000000000000000000dEaD"
VOLATILE = ("run_id", "id", "first_run_id", "last_run_id", "resolved_run_id", "started_at", "instance")


def _checksummed(address: str) -> str:
    from eth_utils import to_checksum_address

    return str(to_checksum_address(address))


def _write(folder: Path, url: str, chain_url: str, usdc: str, tmmf: str) -> Path:
    lines = [
        "[database]",
        f'url = "{url}"',
        "",
        "[chains.eth]",
        'kind = "evm"',
        f'rpc_urls = ["{chain_url}"]',
        "chain_id = 31337",
        "",
        "[assets.USDC]",
        'chain = "eth"',
        f'address = "{usdc}"',
        "decimals = 6",
        'kind = "stablecoin"',
        "",
        "[assets.TMMF]",
        'chain = "eth"',
        f'address = "{tmmf}"',
        "decimals = 18",
        'kind = "mmf"',
        "",
        "[assets.ETH]",
        'chain = "eth"',
        "native = true",
        'kind = "native"',
        "",
    ]
    for i, name in enumerate(WALLETS):
        klass = "house" if i == len(WALLETS) - 1 else "futures"
        address = _checksummed(ADDRESS[name])
        lines += [f"[wallets.{name}]", 'chain = "eth"', f'address = "{address}"', f'class = "{klass}"', ""]
    folder.mkdir(parents=True, exist_ok=True)
    accounts = [ACCOUNTS_HEADER, "C1,futures,Customer One", "H1,house,House"]
    (folder / "accounts.csv").write_text("\n".join(accounts) + "\n")
    books = [
        "E1,2026-11-24,C1,w1,USDC,100,deposit,",
        "E2,2026-11-24,C1,w2,USDC,200,deposit,",
        "E3,2026-11-24,C1,w3,USDC,300,deposit,",
        "E4,2026-11-24,C1,w4,TMMF,4,deposit,",
        "E5,2026-11-24,C1,w5,USDC,555,deposit,",  # the chain holds 500: a mismatch in chunk 3
        "E6,2026-11-24,C1,w6,TMMF,6,deposit,",  # the chain holds 7: a mismatch in chunk 3, fixed later
        "E7,2026-11-24,H1,w7,ETH,7,deposit,",
    ]
    (folder / "books.csv").write_text("\n".join([BOOKS_HEADER, *books]) + "\n")
    (folder / "fix.csv").write_text(BOOKS_HEADER + "\nE8,2026-11-25,C1,w6,TMMF,1,adjustment,\n")
    config = folder / "reconciler.toml"
    config.write_text("\n".join(lines))
    return config


def _normalized(doc: dict[str, Any], names: dict[str, str]) -> str:
    """The document's text with what differs between two equal runs (ids, start times) and,
    through ``names``, what differs between two chains (addresses, hashes, blocks) named."""

    def walk(value: Any, key: str | None = None) -> Any:
        if key in VOLATILE and value is not None:
            return f"<{key}>"
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            for actual, placeholder in names.items():
                if not actual.isdigit():
                    value = value.replace(actual, placeholder)
            # Other blocks' hashes (where a movement was seen), then block numbers inside text
            # ("at block 123 (0x…)"), never digits inside amounts.
            value = re.sub(r"0x[0-9a-f]{64}\b", "<hash>", value)
            return re.sub(r"\bblock (\d+)\b", lambda m: f"block {names.get(m.group(1), m.group(1))}", value)
        if isinstance(value, int) and not isinstance(value, bool) and str(value) in names:
            return names[str(value)]
        return value

    return json.dumps(walk(doc), indent=1, sort_keys=False)


def _run(cli: Any, config: Path, chunk: int, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, dict[str, Any]]:
    monkeypatch.setenv("RECONCILER_CHUNK_WALLETS", str(chunk))
    result = cli("--config", str(config), "run", "--json")
    return result.code, result.stdout, json.loads(result.stdout)


def _ok(cli: Any, config: Path, *args: str) -> None:
    result = cli("--config", str(config), *args)
    assert result.code == 0, result.stderr


@pytest.mark.parametrize("workers", ["1", "3"])
def test_a_streamed_run_prints_the_document_of_a_run_in_one_piece(
    cli: Any,
    devnet: Devnet,
    scenario: Scenario,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    workers: str,
) -> None:
    # The streamed side's units run in this process one after another, or in 3 worker
    # processes (reconciler.app.workers): the same document either way.
    monkeypatch.setenv("RECONCILER_UNIT_WORKERS", workers)
    caplog.set_level(logging.INFO, logger="reconciler.app.run")
    usdc = devnet.deploy_token("Test USD", "USDC", 6)
    tmmf = devnet.deploy_token("Tokenized MMF", "TMMF", 18)
    for name, amount in (("w1", 100), ("w2", 200), ("w3", 300), ("w5", 500)):
        devnet.mint(usdc, _checksummed(ADDRESS[name]), amount * 10**6)
    devnet.mint(tmmf, _checksummed(ADDRESS["w4"]), 4 * 10**18)
    devnet.mint(tmmf, _checksummed(ADDRESS["w6"]), 7 * 10**18)
    devnet.set_native_balance(_checksummed(ADDRESS["w7"]), 7 * 10**18)
    devnet.mine()
    whole_db, streamed_db = scenario.db_url, _sibling_url(scenario.db_url, tmp_path)
    configs = {
        "whole": _write(tmp_path / "whole", whole_db, devnet.url, usdc.address, tmmf.address),
        "streamed": _write(tmp_path / "streamed", streamed_db, devnet.url, usdc.address, tmmf.address),
    }
    chunks = {"whole": 1000, "streamed": 2}
    for config in configs.values():
        _ok(cli, config, "init")
        _ok(cli, config, "accounts", "import", str(config.parent / "accounts.csv"))
        _ok(cli, config, "books", "import", str(config.parent / "books.csv"))

    docs: dict[str, list[tuple[int, str, dict[str, Any]]]] = {"whole": [], "streamed": []}
    for side, config in configs.items():
        caplog.clear()
        docs[side].append(_run(cli, config, chunks[side], monkeypatch))
        forked = "event=unit_workers chain=eth wallets=7 workers=3" in caplog.text
        assert forked == (side == "streamed" and workers == "3"), caplog.text
    # Between the runs: tokens leave w3 without an instruction (chunk 2), w6's books are fixed.
    tx = devnet.transfer_as(usdc, _checksummed(ADDRESS["w3"]), OUTSIDER, 50 * 10**6)
    for side, config in configs.items():
        _ok(cli, config, "books", "import", str(config.parent / "fix.csv"))
        docs[side].append(_run(cli, config, chunks[side], monkeypatch))

    first, second = docs["streamed"]
    for (code, _, whole), (streamed_code, _, streamed) in zip(docs["whole"], docs["streamed"], strict=True):
        assert streamed_code == code == 1
        assert whole["chains"]["eth"]["block_number"] == streamed["chains"]["eth"]["block_number"]
        assert _normalized(streamed, {}) == _normalized(whole, {})
    # The break of chunk 3 is seen again, the fixed one resolved, the chain-wide checks found the theft.
    breaks = {(b["kind"], b["wallet"], b["asset"]): b for b in second[2]["breaks"]}
    assert breaks[("balance_mismatch", "w5", "USDC")]["status"] == "open"
    assert breaks[("balance_mismatch", "w5", "USDC")]["times_seen"] == 2
    assert breaks[("balance_mismatch", "w6", "TMMF")]["status"] == "resolved"
    assert breaks[("unauthorized_transfer", "w3", "USDC")]["tx_hash"] == tx
    assert breaks[("balance_mismatch", "w3", "USDC")]["amount"] == str(-50 * 10**6)
    assert len(second[2]["positions"]) == len(WALLETS) * 3
    assert first[2]["status"] == "complete"

    names = _chain_names(docs["whole"], usdc.address, tmmf.address, tx)
    produced = [json.loads(_normalized(doc, names)) for _, _, doc in docs["whole"]]
    if os.environ.get("RECONCILER_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(produced, indent=1) + "\n")
    assert produced == json.loads(GOLDEN.read_text())


def _sibling_url(url: str, tmp_path: Path) -> str:
    """A second ledger beside the scenario's: another SQLite file, or another PostgreSQL schema."""
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'streamed.db'}"
    import uuid

    import sqlalchemy

    schema = f"t_{uuid.uuid4().hex[:16]}"
    base = url.split("?", 1)[0]
    admin = sqlalchemy.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return f"{base}?options=-csearch_path%3D{schema}"


def _chain_names(runs: list[tuple[int, str, dict[str, Any]]], usdc: str, tmmf: str, tx: str) -> dict[str, str]:
    """Placeholders for the values of this chain: the tokens, the theft, the blocks, the node."""
    names: dict[str, str] = {usdc: "<USDC>", tmmf: "<TMMF>", usdc.lower(): "<usdc>", tmmf.lower(): "<tmmf>", tx: "<tx>"}
    for i, (_, _, doc) in enumerate(runs, start=1):
        chain = doc["chains"]["eth"]
        names[chain["block_hash"]] = f"<hash{i}>"
        names[str(chain["block_number"])] = f"<block{i}>"
        names[str(chain["head"])] = f"<block{i}>"
        for source in chain["sources"]:
            names[source["endpoint"]] = "<endpoint>"
        scan = chain["scan"]
        for key in ("from_block", "to_block"):
            if scan.get(key) is not None:
                names.setdefault(str(scan[key]), f"<{key}{i}>")
    return names


def test_the_chunk_size_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.app.units import chunk_wallets

    monkeypatch.setenv("RECONCILER_CHUNK_WALLETS", "3")
    assert chunk_wallets() == 3
    monkeypatch.delenv("RECONCILER_CHUNK_WALLETS")
    assert chunk_wallets() == 5000
    monkeypatch.setenv("RECONCILER_CHUNK_WALLETS", "0")
    with pytest.raises(ValueError, match="RECONCILER_CHUNK_WALLETS"):
        chunk_wallets()

