"""`make bench BENCH_ARGS=--huge` / `reconciler bench --huge`: a fleet of 1,000,000 wallets x 4
assets on one chain, the wallets imported into the ledger (`wallets import`), not listed in TOML.

One Anvil holds the whole fleet (3 ERC-20 tokens minted in bulk, ETH by ``anvil_setBalance``);
each size N (10,000, 100,000 and 1,000,000 by default) is the first N of those wallets, read at
the same block, each with its own SQLite ledger. For each N, side by side in one run:

- the read floors: raw batched ``eth_call``/``eth_getBalance`` and raw Multicall3 ``aggregate3``
  over the N wallets' 4N positions (hand-encoded, one persistent HTTP session);
- ``wallets import`` of the N wallets and ``books import`` of their 4N matching entries (time,
  peak RSS); loading the imported fleet alone (a process that reads it, against one that does
  not);
- ``reconciler run --json``: a first run and an unchanged second run, as whole processes, each
  with its own peak RSS.

Then the figures of issue 23, each printed beside its target (not asserted):
``marginal_vs_floor`` = (run at 100k - run at 10k) / (multicall floor at 100k - at 10k), the
peak RSS of a run at 100k and at 1M, and the unchanged run at 1M against its read floor.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.bench import RPC_CHUNK, TOKENS, Chain, _best, _cli, _proc, _table, floor_batch, floor_multicall

SIZES = (10_000, 100_000, 1_000_000)
BALANCES_SLOT = 4  # CollateralToken: _name, _symbol, _issuer, _totalSupply, then _balances
HUGE_TARGETS = {
    "marginal_vs_floor": 2.0,
    "run_rss_mb_100k": 250,
    "run_rss_mb_1m": 600,
    "run_unchanged_vs_floor_1m": 3.0,
}


def build(chain: Chain, rng: random.Random, log: Callable[[str], None]) -> None:
    """The fleet on the chain: like Chain.build, with balances written into storage and without
    the sparse stretch (the scan has its figures in the plain benchmark)."""
    from eth_utils.address import to_checksum_address

    from chains.evm.devnet import CANONICAL_MULTICALL3

    t0 = time.perf_counter()
    n = chain.n
    chain.multicall = chain.net.install_multicall3(CANONICAL_MULTICALL3)
    chain.wallets = [to_checksum_address(rng.randbytes(20)) for _ in range(n)]
    chain.contracts, chain.tokens, chain.units = {}, {}, {}
    for symbol, decimals in TOKENS:
        token = chain.net.deploy_token(f"Bench {symbol}", symbol, decimals)
        chain.tokens[symbol] = token.address
        chain.contracts[symbol] = token
        chain.units[symbol] = [rng.randint(1, 10**6) for _ in range(n)]
    # Balances written straight into each token's storage (its `_balances` mapping is slot 4 of
    # CollateralToken): a million holders minted through transactions took ~15 minutes per token
    # here, mostly building receipts of 4,000 Transfer logs each. Reads go through balanceOf.
    from eth_hash.auto import keccak

    chain.first_block = chain.net.head() + 1
    slot = (BALANCES_SLOT).to_bytes(32, "big")
    keys = [keccak(bytes(12) + bytes.fromhex(w[2:]) + slot) for w in chain.wallets]
    for symbol, decimals in TOKENS:
        address, units = chain.tokens[symbol], chain.units[symbol]
        for i in range(0, n, RPC_CHUNK):
            chain.raw.batch(
                [("anvil_setStorageAt", [address, "0x" + k.hex(), "0x" + (u * 10**decimals).to_bytes(32, "big").hex()])
                 for k, u in zip(keys[i : i + RPC_CHUNK], units[i : i + RPC_CHUNK], strict=True)]
            )  # fmt: skip
        log(f"  {symbol} balances of {n:,} wallets written ({time.perf_counter() - t0:.0f} s so far)")
    del keys
    chain.mint_last_block = chain.net.head()
    chain.units["ETH"] = [rng.randint(1, 1000) for _ in range(n)]
    for i in range(0, n, RPC_CHUNK):
        part = zip(chain.wallets[i : i + RPC_CHUNK], chain.units["ETH"][i : i + RPC_CHUNK], strict=True)
        chain.raw.batch([("anvil_setBalance", [w, hex(u * 10**18)]) for w, u in part])
    chain.net.mine()
    chain.setup_s = time.perf_counter() - t0
    chain.block_number = chain.net.head()
    chain.block_hash = chain.raw.call("eth_getBlockByNumber", [hex(chain.block_number), False])["hash"]


def _queries(chain: Chain, n: int) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for symbol, _ in TOKENS:
        out += [(w, chain.tokens[symbol]) for w in chain.wallets[:n]]
    return out + [(w, None) for w in chain.wallets[:n]]


def _expected(chain: Chain, n: int) -> list[int]:
    out: list[int] = []
    for symbol, decimals in TOKENS:
        out += [u * 10**decimals for u in chain.units[symbol][:n]]
    return out + [u * 10**18 for u in chain.units["ETH"][:n]]


def write_inputs(chain: Chain, n: int, folder: Path) -> Path:
    """A configuration with the chain and its assets and no wallet; the first ``n`` wallets in
    a wallets CSV; accounts; books that match every position."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["[database]", 'url = "sqlite:///reconciler.db"', "", "[chains.eth]", 'kind = "evm"',
             f'rpc_urls = ["{chain.url}"]', "chain_id = 31337", "confirmations = 0", 'read_path = "multicall"',
             f"chunk_size = {RPC_CHUNK}", "rpc_timeout = 300", ""]  # fmt: skip
    for symbol, decimals in TOKENS:
        lines += [f"[assets.{symbol}]", 'chain = "eth"', 'kind = "stablecoin"', f'address = "{chain.tokens[symbol]}"',
                  f"decimals = {decimals}", ""]  # fmt: skip
    lines += ["[assets.ETH]", 'chain = "eth"', 'kind = "native"', "native = true", ""]
    config = folder / "reconciler.toml"
    config.write_text("\n".join(lines))
    (folder / "accounts.csv").write_text("account,class,name\nC1,futures,Customer One\n")
    with (folder / "wallets.csv").open("w") as fh:
        fh.write("name,chain,address,class\n")
        for i, w in enumerate(chain.wallets[:n]):
            fh.write(f"w{i:07d},eth,{w},futures\n")
    with (folder / "books.csv").open("w") as fh:
        fh.write("entry_id,date,account,wallet,asset,amount,kind,memo\n")
        e = 0
        for symbol in (*(s for s, _ in TOKENS), "ETH"):
            for i, u in enumerate(chain.units[symbol][:n]):
                e += 1
                fh.write(f"E{e:08d},2026-11-24,C1,w{i:07d},{symbol},{u},deposit,\n")
    return config


_LOAD_FLEET = (
    "import sys\n"
    "from reconciler.app.fleet import with_ledger_wallets\n"
    "from reconciler.inputs.config import load_settings\n"
    "settings = with_ledger_wallets(load_settings(sys.argv[1]))\n"
    "from reconciler.ledger.store import Ledger\n"
    "if sys.argv[2] == 'load':\n"
    "    assert len(settings.wallets) == int(sys.argv[3]), len(settings.wallets)\n"
)


def _step(config: Path, folder: Path, fig: dict[str, float], label: str, *args: str) -> None:
    secs, rss, code, err = _proc(_cli(config, *args), folder)
    if code:
        raise RuntimeError(f"{' '.join(args)} failed (exit {code}): {err[-800:]}")
    fig[f"{label}_s"] = secs
    fig[f"{label}_rss_mb"] = rss


def bench_size(
    chain: Chain, n: int, work: Path, reps: int, log: Callable[[str], None], fig: dict[str, float]
) -> dict[str, float]:
    """The figures of the first ``n`` wallets, into ``fig`` as they are measured."""
    fig["positions"] = 4 * n
    queries, expected = _queries(chain, n), _expected(chain, n)
    if floor_multicall(chain, queries) != expected:
        raise RuntimeError("the multicall floor does not read what was minted")
    fig["floor_batch_s"] = _best(lambda: floor_batch(chain, queries), reps)
    fig["floor_multicall_s"] = _best(lambda: floor_multicall(chain, queries), reps)
    log(f"N={n:,}: floors batch {fig['floor_batch_s']:.2f} s, multicall {fig['floor_multicall_s']:.2f} s")
    folder = work / f"n{n}"
    config = write_inputs(chain, n, folder)
    _step(config, folder, fig, "init", "init")
    _step(config, folder, fig, "wallets_import", "wallets", "import", str(folder / "wallets.csv"))
    _step(config, folder, fig, "accounts_import", "accounts", "import", str(folder / "accounts.csv"))
    _step(config, folder, fig, "books_import", "books", "import", str(folder / "books.csv"))
    log(
        f"  wallets import {fig['wallets_import_s']:.1f} s ({fig['wallets_import_rss_mb']:.0f} MB); books import "
        f"of {4 * n:,} rows {fig['books_import_s']:.1f} s ({fig['books_import_rss_mb']:.0f} MB)"
    )
    python = [sys.executable, "-c", _LOAD_FLEET, str(config)]
    fig["fleet_load_s"], fig["fleet_load_rss_mb"], code, err = _proc([*python, "load", str(n)], folder)
    if code:
        raise RuntimeError(f"loading the fleet failed: {err[-800:]}")
    fig["fleet_none_s"], fig["fleet_none_rss_mb"], _, _ = _proc([*python, "none"], folder)
    fig["fleet_rss_mb"] = fig["fleet_load_rss_mb"] - fig["fleet_none_rss_mb"]
    log(
        f"  loading {n:,} imported wallets: {fig['fleet_load_s'] - fig['fleet_none_s']:.2f} s, "
        f"{fig['fleet_load_rss_mb'] - fig['fleet_none_rss_mb']:.0f} MB over a process that does not"
    )
    for label in ("run", "run_unchanged"):
        out = folder / f"{label}.json"
        secs, rss, code, err = _proc(_cli(config, "run", "--json"), folder, out)
        status = _status(out)
        if code != 0 or status != ("complete", 0):
            raise RuntimeError(f"{label} at N={n:,} exited {code}, {status}: {err[-800:]}")
        if n <= 100_000:
            positions = len(json.loads(out.read_text())["positions"])
            if positions != 4 * n:
                raise RuntimeError(f"{label}: {positions} positions, not {4 * n}")
        fig[f"{label}_s"] = secs
        fig[f"{label}_rss_mb"] = rss
        fig[f"{label}_document_mb"] = out.stat().st_size / 1e6
        out.unlink()
        log(f"  {label}: {secs:.1f} s, {rss:.0f} MB")
    fig["run_vs_floor"] = fig["run_s"] / fig["floor_multicall_s"]
    fig["run_unchanged_vs_floor"] = fig["run_unchanged_s"] / fig["floor_multicall_s"]
    shutil.rmtree(folder, ignore_errors=True)
    return fig


def _status(path: Path) -> tuple[str | None, int | None]:
    """The document's status and exit code, read from its head (a 1M-wallet document is more
    than a gigabyte: it is not parsed whole)."""
    with path.open() as fh:
        head = fh.read(4096)
    status = head.split('"status": "', 1)[1].split('"', 1)[0] if '"status": "' in head else None
    code = head.split('"exit_code": ', 1)[1].split(",", 1)[0].strip() if '"exit_code": ' in head else None
    return status, int(code) if code and code.isdigit() else None


def main(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    from chains.evm.devnet import AnvilNode

    sizes: Sequence[int] = sorted(args.huge_n or SIZES)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="reconciler-huge-"))
    chain = Chain.__new__(Chain)
    chain.n, chain.folder, chain.log = max(sizes), work, log
    chain.node = AnvilNode.start(extra_args=["--prune-history", "64", "--gas-limit", "2000000000",
                                             "--code-size-limit", "100000"])  # fmt: skip
    from benchmarks.bench import Raw
    from chains.evm.devnet import Devnet

    chain.url = chain.node.url
    chain.net = Devnet(chain.url)
    chain.raw = Raw(chain.url)
    results: dict[int, dict[str, float]] = {}
    try:
        log(f"huge: setting up {max(sizes):,} wallets x 4 assets on one Anvil…")
        build(chain, random.Random(max(sizes)), log)
        log(f"huge: set up in {chain.setup_s:.0f} s at block {chain.block_number}")
        for n in sizes:
            results[n] = {}
            try:
                bench_size(chain, n, work, args.reps, log, results[n])
            except RuntimeError as exc:  # said and kept: the other sizes' figures still print
                log(f"  N={n:,} FAILED: {exc}")
                results[n]["failed"] = 1
    finally:
        chain.close()
        shutil.rmtree(work, ignore_errors=True)
    summary = figures(results, sizes)
    summary["setup_s"] = chain.setup_s
    summary["total_s"] = time.perf_counter() - started
    _table(results, {}, f"reconciler benchmark --huge (one Anvil, {max(sizes):,} wallets x 4 assets)")
    _table({0: summary}, HUGE_TARGETS, "issue 23: the fleet figures beside their targets")
    print(json.dumps({"huge": {str(n): fig for n, fig in results.items()}, "summary": summary,
                      "targets": HUGE_TARGETS}), flush=True)  # fmt: skip
    return 0


def figures(results: dict[int, dict[str, float]], sizes: Sequence[int]) -> dict[str, float]:
    """The figures of issue 23 from the sizes measured: the two smallest for the marginal cost
    (10k and 100k by default), the 100k and the largest for memory and the unchanged run. A
    figure whose inputs a failed size did not measure is left out."""
    out: dict[str, float] = {}
    for name, compute in _figures(results, sizes):
        try:
            out[name] = compute()
        except (KeyError, ZeroDivisionError):
            continue
    return out


def _figures(results: dict[int, dict[str, float]], sizes: Sequence[int]) -> list[tuple[str, Callable[[], float]]]:
    out: list[tuple[str, Callable[[], float]]] = []
    small, mid, big = sizes[0], sizes[min(1, len(sizes) - 1)], sizes[-1]
    a, b, c = results[small], results[mid], results[big]
    def marginal(run: str, floor: str) -> Callable[[], float]:
        return lambda: (b[run] - a[run]) / (b[floor] - a[floor])

    def peak(fig: dict[str, float]) -> Callable[[], float]:
        return lambda: max(fig["run_rss_mb"], fig["run_unchanged_rss_mb"])

    if mid != small:
        out += [
            ("marginal_vs_floor", marginal("run_s", "floor_multicall_s")),
            ("marginal_unchanged_vs_floor", marginal("run_unchanged_s", "floor_multicall_s")),
            ("marginal_vs_batch_floor", marginal("run_s", "floor_batch_s")),
        ]
    suffix = {100_000: "100k", 1_000_000: "1m"}
    for n, fig in ((mid, b), (big, c)):
        out.append((f"run_rss_mb_{suffix.get(n, n)}", peak(fig)))
    name = suffix.get(big, str(big))
    out += [
        (f"run_unchanged_vs_floor_{name}", lambda: c["run_unchanged_s"] / c["floor_multicall_s"]),
        (f"wallets_import_s_{name}", lambda: c["wallets_import_s"]),
        (f"fleet_load_rss_mb_{name}", lambda: c["fleet_rss_mb"]),
    ]
    return out
