"""`make bench` / `reconciler bench`: the reconciler beside the RPC floor, on one local Anvil.

For each N it starts its own Anvil (``--prune-history``, a big ``--gas-limit``, its own
temporary HOME), creates N custody wallets holding 3 ERC-20 tokens (bulk ``mintBatch``, at
most 1,000 holders per transaction) and ETH (``anvil_setBalance`` in JSON-RPC batches), books
that match and a configuration, then measures side by side at the same block:

- the floor: raw batched ``eth_call``/``eth_getBalance`` over one persistent HTTP session with
  hand-encoded calldata, and raw Multicall3 ``aggregate3``;
- the naive web3.py loop on a sample, extrapolated to all positions (labelled so);
- the reconciler's chain reads alone (EvmAdapter.balances, multicall and batch paths);
- ``reconciler run --json`` as a whole process, on SQLite and PostgreSQL, first run and an
  unchanged second run (which also scans the blocks since the first incrementally), and the rows
  each adds to the ledger; ``books import`` of the 4N book rows, and of 1,000,000 rows at the
  largest N; peak RSS of each process;
- the transfer scan: dense (the setup's mint blocks, full of Transfer events; events/s) and
  sparse (many empty blocks with a few transfers; blocks/s);
- start-up (once, not per N): `reconciler --version`, one TAB of shell completion and
  `reconciler -h` against `python -c pass` of the same interpreter, measured in the same run.

It prints a table, then last one JSON line with every figure keyed by N. Not a test: the
targets of issue 10 are compared here, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
PG_BASE = os.environ.get("RECONCILER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TOKENS = (("T0", 6), ("T1", 18), ("T2", 8))
MINT_CHUNK = 1000  # holders per mintBatch transaction
RPC_CHUNK = 1000  # calls per JSON-RPC batch / per aggregate3 (the floor of toolchain.md)
GAS_LIMIT = 2_000_000_000
TARGETS = {"reads_vs_floor": 1.3, "naive_vs_reads": 100.0, "run_vs_floor": 2.0, "run_unchanged_vs_floor": 1.3,
           "scan_events_per_s": 40_000, "scan_blocks_per_s": 20_000, "peak_rss_mb": 400,
           "books_import_big_rss_mb": 300, "linear_100k_vs_10k": 11.0,
           "version_vs_pass": 5.0, "complete_vs_pass": 5.0}


def _best(fn: Callable[[], Any], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class Raw:
    """JSON-RPC over one persistent requests.Session: the floor's transport."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self._id = 0

    def call(self, method: str, params: Sequence[Any]) -> Any:
        self._id += 1
        answer = self.session.post(self.url, json={"jsonrpc": "2.0", "id": self._id, "method": method,
                                                   "params": list(params)}, timeout=120).json()
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in enumerate(calls)]
        answers = self.session.post(self.url, json=payload, timeout=120).json()
        if not isinstance(answers, list):
            raise RuntimeError(f"batch refused: {answers}")
        out: list[Any] = [None] * len(calls)
        for a in answers:
            if "error" in a:
                raise RuntimeError(f"batch item {a.get('id')}: {a['error']}")
            out[a["id"]] = a["result"]
        return out


# Linux records in a child's peak RSS the memory of whatever process it was spawned from, up to
# its exec (the old mm's high-water mark is kept across exec). Spawned straight from this
# process, which holds the whole benchmark chain (~1 GB at 100,000 wallets), every child would
# report at least that much. So each measured process is started by a small Python launcher,
# which reports its child's own peak RSS (wait4) on fd 3.
_LAUNCHER = """
import os, sys, time
fd = int(sys.argv[1])
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.close(fd)
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
os.write(fd, f"{usage.ru_maxrss} {time.perf_counter() - t0}".encode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _proc(args: Sequence[str], cwd: Path, out_path: Path | None = None) -> tuple[float, float, int, str]:
    """Run a process; (its seconds, its own peak RSS in MB, exit code, stderr tail), both
    measured by the launcher around the process alone."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    read_rss, write_rss = os.pipe()
    with tempfile.TemporaryFile() as errf, (out_path.open("wb") if out_path else open(os.devnull, "wb")) as outf:
        p = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(write_rss), *args], cwd=cwd, stdout=outf, stderr=errf,
            stdin=subprocess.DEVNULL, env=env, pass_fds=(write_rss,),
        )
        os.close(write_rss)
        code = p.wait()
        with os.fdopen(read_rss, "rb") as fh:
            reported = fh.read().decode().split()
        errf.seek(0)
        tail = errf.read().decode(errors="replace")[-2000:]
    if len(reported) != 2:
        raise RuntimeError(f"the launcher of {' '.join(args)} reported nothing (exit {code}): {tail}")
    return float(reported[1]), int(reported[0]) / 1024.0, code, tail


def _cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", "--config", str(config), *args]


# ------------------------------------------------------------------------------- setup


class Chain:
    def __init__(self, n: int, folder: Path, log: Callable[[str], None]) -> None:
        from chains.evm.devnet import AnvilNode, Devnet

        self.n = n
        self.folder = folder
        self.log = log
        # Prune-history keeps Anvil's state in memory (no multi-GB spill to ~/.foundry); the
        # window covers every block read at (reads are at the head) and the sparse-scan blocks.
        self.node = AnvilNode.start(extra_args=["--prune-history", "64", "--gas-limit", str(GAS_LIMIT),
                                                "--code-size-limit", "100000"])
        self.url = self.node.url
        self.net = Devnet(self.url)
        self.raw = Raw(self.url)

    def close(self) -> None:
        self.node.stop()

    def build(self, rng: random.Random, sparse_blocks: int) -> None:
        from eth_utils.address import to_checksum_address

        from chains.evm.devnet import CANONICAL_MULTICALL3

        t0 = time.perf_counter()
        n = self.n
        self.multicall = self.net.install_multicall3(CANONICAL_MULTICALL3)
        self.wallets = [to_checksum_address(rng.randbytes(20)) for _ in range(n)]
        self.contracts: dict[str, Any] = {}
        self.tokens: dict[str, str] = {}
        self.units: dict[str, list[int]] = {}
        for symbol, decimals in TOKENS:
            token = self.net.deploy_token(f"Bench {symbol}", symbol, decimals)
            self.tokens[symbol] = token.address
            self.contracts[symbol] = token
            self.units[symbol] = [rng.randint(1, 10**6) for _ in range(n)]
        # The sparse stretch first, while the state is small. anvil_mine is slow here: ~4,000
        # empty blocks/s on a fresh node, falling as the chain grows (20,000 blocks took ~116 s
        # with a small state, and ran at ~80 blocks/s with 1,000 funded wallets): its own figure.
        self.sparse_first = self.net.head() + 1
        for i in range(min(5, n)):
            self.raw.call("anvil_mine", [hex(max(1, sparse_blocks // 5))])
            self.net.mint(self.contracts["T0"], self.wallets[i], 10 ** TOKENS[0][1])
        self.sparse_last = self.net.head()
        self.sparse_setup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.first_block = self.net.head() + 1
        for symbol, decimals in TOKENS:
            token = self.contracts[symbol]
            units = self.units[symbol]
            for i in range(0, n, MINT_CHUNK):
                amounts = [u * 10**decimals for u in units[i : i + MINT_CHUNK]]
                tx = token.functions.mintBatch(self.wallets[i : i + MINT_CHUNK], amounts).transact(
                    {"from": self.net.deployer, "gas": 40_000 * len(amounts) + 100_000}
                )
                self.net._wait(tx)
        self.mint_last_block = self.net.head()
        for i in range(min(5, n)):
            self.units["T0"][i] += 1  # the sparse stretch's mints
        eth_units = [rng.randint(1, 1000) for _ in range(n)]
        self.units["ETH"] = eth_units
        for i in range(0, n, RPC_CHUNK):
            part = zip(self.wallets[i : i + RPC_CHUNK], eth_units[i : i + RPC_CHUNK], strict=True)
            self.raw.batch([("anvil_setBalance", [w, hex(u * 10**18)]) for w, u in part])
        self.net.mine()
        self.setup_s = time.perf_counter() - t0
        self.block_number = self.net.head()
        self.block_hash = self.raw.call("eth_getBlockByNumber", [hex(self.block_number), False])["hash"]

    def write_inputs(self, db_url: str, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["[database]", f'url = "{db_url}"', "", "[chains.eth]", 'kind = "evm"', f'rpc_urls = ["{self.url}"]',
                 "chain_id = 31337", "confirmations = 0", 'read_path = "multicall"', f"chunk_size = {RPC_CHUNK}",
                 "rpc_timeout = 120", ""]
        for symbol, decimals in TOKENS:
            lines += [f"[assets.{symbol}]", 'chain = "eth"', 'kind = "stablecoin"',
                      f'address = "{self.tokens[symbol]}"', f"decimals = {decimals}", ""]
        lines += ["[assets.ETH]", 'chain = "eth"', 'kind = "native"', "native = true", ""]
        for i, w in enumerate(self.wallets):
            lines += [f"[wallets.w{i:06d}]", 'chain = "eth"', f'address = "{w}"', 'class = "futures"', ""]
        config = folder / "reconciler.toml"
        config.write_text("\n".join(lines))
        (folder / "accounts.csv").write_text("account,class,name\nC1,futures,Customer One\n")
        rows = ["entry_id,date,account,wallet,asset,amount,kind,memo"]
        e = 0
        for symbol in (*(s for s, _ in TOKENS), "ETH"):
            for i, u in enumerate(self.units[symbol]):
                e += 1
                rows.append(f"E{e:08d},2026-11-24,C1,w{i:06d},{symbol},{u},deposit,")
        (folder / "books.csv").write_text("\n".join(rows) + "\n")
        return config

    def queries(self) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for symbol, _ in TOKENS:
            out += [(w, self.tokens[symbol]) for w in self.wallets]
        out += [(w, None) for w in self.wallets]
        return out

    def expected(self) -> list[int]:
        out: list[int] = []
        for symbol, decimals in TOKENS:
            out += [u * 10**decimals for u in self.units[symbol]]
        out += [u * 10**18 for u in self.units["ETH"]]
        return out


# ------------------------------------------------------------------------------- floor


def floor_batch(chain: Chain, queries: Sequence[tuple[str, str | None]]) -> list[int]:
    at = {"blockHash": chain.block_hash, "requireCanonical": True}
    sel = "0x70a08231000000000000000000000000"
    out: list[int] = []
    for i in range(0, len(queries), RPC_CHUNK):
        calls = [("eth_getBalance", [h, at]) if t is None else ("eth_call", [{"to": t, "data": sel + h[2:]}, at])
                 for h, t in queries[i : i + RPC_CHUNK]]
        out += [int(r, 16) for r in chain.raw.batch(calls)]
    return out


def floor_multicall(chain: Chain, queries: Sequence[tuple[str, str | None]]) -> list[int]:
    from chains.evm import abi

    at = {"blockHash": chain.block_hash, "requireCanonical": True}
    mc = chain.multicall
    out: list[int] = []
    for i in range(0, len(queries), RPC_CHUNK):
        chunk = queries[i : i + RPC_CHUNK]
        pairs = [(mc, abi.get_eth_balance(h)) if t is None else (t, abi.balance_of(h)) for h, t in chunk]
        data = chain.raw.call("eth_call", [{"to": mc, "data": "0x" + abi.encode_aggregate3(pairs).hex()}, at])
        out += [int.from_bytes(d, "big") for _, d in abi.decode_aggregate3(bytes.fromhex(data[2:]), len(chunk))]
    return out


def naive_loop(chain: Chain, sample: Sequence[tuple[str, str | None]]) -> None:
    from web3 import Web3  # noqa: TID251 - the loop a user would write is the point of this figure

    w3 = Web3(Web3.HTTPProvider(chain.url))
    abi_ = [{"name": "balanceOf", "type": "function", "stateMutability": "view",
             "inputs": [{"name": "a", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]}]
    contracts = {t: w3.eth.contract(address=Web3.to_checksum_address(t), abi=abi_) for t in chain.tokens.values()}
    for holder, token in sample:
        if token is None:
            w3.eth.get_balance(Web3.to_checksum_address(holder), block_identifier=chain.block_number)
        else:
            contracts[token].functions.balanceOf(holder).call(block_identifier=chain.block_number)


def adapter_reads(config: Path, chain: Chain, path: str) -> Callable[[], list[int]]:
    import dataclasses

    from chains.base import BalanceQuery
    from chains.evm.adapter import EvmAdapter
    from reconciler.domain import BlockRef
    from reconciler.inputs.config import load_settings

    settings = load_settings(str(config))
    chain_settings = dataclasses.replace(settings.chains["eth"], read_path=path)
    adapter = EvmAdapter.from_settings(chain_settings)
    qs = [BalanceQuery(h, t) for h, t in chain.queries()]

    def read() -> list[int]:
        block = adapter.pin(0)  # a run pins first: part of its reads
        assert block == BlockRef(chain.block_number, chain.block_hash.lower()), block
        return adapter.balances(qs, block)

    return read


# ------------------------------------------------------------------------------- scan


def scan_range(chain: Chain, lo: int, hi: int) -> tuple[float, int]:
    from chains.evm import logs
    from chains.evm.rpc import HttpRpc

    rpc = HttpRpc(chain.url, 120)
    t0 = time.perf_counter()
    found = logs.scan_token_logs(rpc, "eth", chain.wallets, list(chain.tokens.values()), lo, hi, chunk_blocks=2000)
    return time.perf_counter() - t0, len(found)


# ------------------------------------------------------------------------------- one N


def _pg_schema() -> tuple[str, Callable[[], None]]:
    import sqlalchemy  # noqa: TID251 - the benchmark's own throw-away schema, not the ledger

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(PG_BASE)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()

    return f"{PG_BASE}?options=-csearch_path%3D{schema}", drop


def run_backend(chain: Chain, work: Path, backend: str, fig: dict[str, float], log: Callable[[str], None]) -> None:
    drop: Callable[[], None] | None = None
    if backend == "sqlite":
        db_url = "sqlite:///reconciler.db"
    else:
        db_url, drop = _pg_schema()
    try:
        folder = work / backend
        config = chain.write_inputs(db_url, folder)
        for args in (("init",), ("accounts", "import", str(folder / "accounts.csv"))):
            _, _, code, err = _proc(_cli(config, *args), folder)
            if code:
                raise RuntimeError(f"{' '.join(args)} failed: {err}")
        secs, rss, code, err = _proc(_cli(config, "books", "import", str(folder / "books.csv")), folder)
        if code:
            raise RuntimeError(f"books import failed: {err}")
        fig[f"books_import_s_{backend}"] = secs
        fig[f"books_import_rows_per_s_{backend}"] = 4 * chain.n / secs
        fig[f"books_import_rss_mb_{backend}"] = rss
        for label in ("run", "run_unchanged"):
            out = folder / f"{label}.json"
            rows_before = _ledger_rows(db_url, folder)
            secs, rss, code, err = _proc(_cli(config, "run", "--json"), folder, out)
            fig[f"ledger_rows_{label}_{backend}"] = _ledger_rows(db_url, folder) - rows_before
            doc = json.loads(out.read_text())
            if code != 0 or doc.get("exit_code") != 0:
                raise RuntimeError(f"{label} on {backend} exited {code}, status {doc.get('status')}: {err[-500:]}")
            if len(doc["positions"]) != 4 * chain.n:
                raise RuntimeError(f"{label}: {len(doc['positions'])} positions, not {4 * chain.n}")
            fig[f"{label}_s_{backend}"] = secs
            fig[f"{label}_rss_mb_{backend}"] = rss
            log(f"  {label} on {backend}: {secs:.2f} s, {rss:.0f} MB")
    finally:
        if drop is not None:
            drop()


def _ledger_rows(db_url: str, folder: Path) -> int:
    """Rows in every table of the ledger: what one run adds is the ledger's growth per run."""
    import sqlalchemy  # noqa: TID251 - counting the benchmark's own ledger from outside

    url = f"sqlite:///{folder / db_url.removeprefix('sqlite:///')}" if db_url.startswith("sqlite") else db_url
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = sqlalchemy.inspect(conn).get_table_names()
            return sum(int(conn.execute(sqlalchemy.text(f'SELECT count(*) FROM "{t}"')).scalar_one()) for t in tables)
    finally:
        engine.dispose()


def big_books_import(chain: Chain, work: Path, rows: int, fig: dict[str, float], log: Callable[[str], None]) -> None:
    """`books import` of ``rows`` rows (streamed to disk here) into a fresh SQLite ledger."""
    folder = work / "books-big"
    config = chain.write_inputs("sqlite:///reconciler.db", folder)
    assets = [s for s, _ in TOKENS] + ["ETH"]
    with (folder / "books-big.csv").open("w") as fh:
        fh.write("entry_id,date,account,wallet,asset,amount,kind,memo\n")
        for e in range(rows):
            fh.write(f"B{e:09d},2026-11-24,C1,w{e % chain.n:06d},{assets[e // chain.n % 4]},1.5,deposit,\n")
    for args in (("init",), ("accounts", "import", str(folder / "accounts.csv"))):
        _proc(_cli(config, *args), folder)
    secs, rss, code, err = _proc(_cli(config, "books", "import", str(folder / "books-big.csv")), folder)
    if code:
        raise RuntimeError(f"books import of {rows} rows failed: {err[-500:]}")
    fig["books_import_big_rows"] = rows
    fig["books_import_big_s"] = secs
    fig["books_import_big_rss_mb"] = rss
    log(f"  books import of {rows:,} rows: {secs:.1f} s, {rss:.0f} MB")


def profile_run(folder: Path, log: Callable[[str], None]) -> None:
    """One more (unchanged) run under cProfile; the top functions by cumulative time to stderr."""
    import io
    import pstats

    prof = folder / "run.prof"
    args = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "reconciler", "--config",
            str(folder / "reconciler.toml"), "run", "--json"]
    secs, _, code, err = _proc(args, folder)
    text = io.StringIO()
    pstats.Stats(str(prof), stream=text).sort_stats("cumulative").print_stats(45)
    pstats.Stats(str(prof), stream=text).sort_stats("tottime").print_stats(20)
    log(f"  profile of a run on sqlite ({secs:.2f} s under cProfile, exit {code}):\n{text.getvalue()}")
    shutil.copy(prof, Path(tempfile.gettempdir()) / f"reconciler-bench-run-{os.getpid()}.prof")


def bench_n(n: int, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, float]:
    fig: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    chain = Chain(n, work, log)
    try:
        rng = random.Random(n)
        chain.build(rng, args.sparse_blocks)
        fig["setup_s"] = chain.setup_s
        fig["sparse_setup_s"] = chain.sparse_setup_s
        log(f"N={n}: {4 * n} positions set up in {chain.setup_s:.1f} s at block {chain.block_number}")
        queries = chain.queries()
        expected = chain.expected()
        reps = args.reps
        if floor_batch(chain, queries) != expected or floor_multicall(chain, queries) != expected:
            raise RuntimeError("the floor reads do not match what was minted")
        fig["floor_batch_s"] = _best(lambda: floor_batch(chain, queries), reps)
        fig["floor_multicall_s"] = _best(lambda: floor_multicall(chain, queries), reps)
        fig["floor_s"] = min(fig["floor_batch_s"], fig["floor_multicall_s"])
        sample = random.Random(1).sample(queries, min(args.sample, len(queries)))
        sample_s = _best(lambda: naive_loop(chain, sample), 1)
        fig["naive_sample_positions"] = len(sample)
        fig["naive_sample_s"] = sample_s
        fig["naive_s_extrapolated"] = sample_s / len(sample) * len(queries)
        log(f"  floor: batch {fig['floor_batch_s']:.3f} s, multicall {fig['floor_multicall_s']:.3f} s; "
            f"naive (extrapolated) {fig['naive_s_extrapolated']:.1f} s")
        config = chain.write_inputs("sqlite:///unused.db", work / "reads")
        for path in ("batch", "multicall"):
            read = adapter_reads(config, chain, path)
            if read() != expected:
                raise RuntimeError(f"EvmAdapter.balances ({path}) does not match what was minted")
            fig[f"reads_{path}_s"] = _best(read, reps)
        fig["reads_s"] = min(fig["reads_batch_s"], fig["reads_multicall_s"])
        log(f"  reconciler reads: batch {fig['reads_batch_s']:.3f} s, multicall {fig['reads_multicall_s']:.3f} s")
        for backend in ("sqlite", *(() if args.no_postgres else ("postgres",))):
            run_backend(chain, work, backend, fig, log)
            if args.profile and backend == "sqlite":
                profile_run(work / backend, log)
        if args.books_rows and n == max(args.sizes):
            big_books_import(chain, work, args.books_rows, fig, log)
        # the fixed cost of any command: interpreter start and imports (caches warm by now)
        fig["cli_startup_s"] = min(_proc([sys.executable, "-m", "reconciler", "--version"], work)[0]
                                   for _ in range(max(1, reps)))
        # dense: the setup's mint blocks, every one full of Transfer events to custody wallets
        secs, events = scan_range(chain, chain.first_block, chain.mint_last_block)
        fig["scan_dense_events"] = events
        fig["scan_dense_s"] = secs
        fig["scan_events_per_s"] = events / secs
        # sparse: many empty blocks with a few custody movements among them (mined in setup)
        lo, hi = chain.sparse_first, chain.sparse_last
        secs, events = scan_range(chain, lo, hi)
        fig["scan_sparse_events"] = events
        fig["scan_sparse_blocks"] = hi - lo + 1
        fig["scan_sparse_s"] = secs
        fig["scan_blocks_per_s"] = (hi - lo + 1) / secs
        log(f"  scan: dense {fig['scan_events_per_s']:.0f} events/s, sparse {fig['scan_blocks_per_s']:.0f} blocks/s")
    finally:
        chain.close()
        shutil.rmtree(work, ignore_errors=True)
    fig["run_s"] = max(v for k, v in fig.items() if k.startswith("run_s_"))
    fig["run_unchanged_s"] = max(v for k, v in fig.items() if k.startswith("run_unchanged_s_"))
    fig["reads_batch_vs_floor"] = fig["reads_batch_s"] / fig["floor_batch_s"]
    fig["reads_multicall_vs_floor"] = fig["reads_multicall_s"] / fig["floor_multicall_s"]
    # each read path against the floor of its own path; the worse of the two is the figure
    fig["reads_vs_floor"] = max(fig["reads_batch_vs_floor"], fig["reads_multicall_vs_floor"])
    fig["naive_vs_reads"] = fig["naive_s_extrapolated"] / fig["reads_s"]
    for name in [name for name in fig if name.startswith(("run_s_", "run_unchanged_s_"))]:
        fig[name.replace("_s_", "_vs_floor_", 1)] = fig[name] / fig["floor_s"]
    fig["run_vs_floor"] = fig["run_s"] / fig["floor_s"]
    fig["run_unchanged_vs_floor"] = fig["run_unchanged_s"] / fig["floor_s"]
    fig["ledger_rows_per_unchanged_run"] = max(v for k, v in fig.items() if k.startswith("ledger_rows_run_unchanged_"))
    fig["peak_rss_mb"] = max(v for k, v in fig.items() if "_rss_mb_" in k)
    return fig


def startup(reps: int, log: Callable[[str], None]) -> dict[str, float]:
    """Start-up of the console script against the interpreter's own, measured in this run:
    `python -c pass`, `reconciler --version`, one TAB of bash completion, `reconciler -h`
    (median of ``reps`` processes each, interleaved so that load affects all alike)."""
    python = sys.executable
    script = str(Path(python).parent / "reconciler")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "_RECONCILER"))}
    tab = {**env, "_RECONCILER_COMPLETE": "complete_bash", "COMP_WORDS": "reconciler bre", "COMP_CWORD": "1"}
    commands = {
        "python_pass_s": ([python, "-c", "pass"], env),
        "version_s": ([script, "--version"], env),
        "complete_s": ([script], tab),
        "help_s": ([script, "-h"], {**env, "COLUMNS": "100"}),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(reps):
        for name, (argv, environ) in commands.items():
            t0 = time.perf_counter()
            subprocess.run(argv, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - t0)
    fig = {name: sorted(values)[len(values) // 2] for name, values in times.items()}
    for name in ("version_s", "complete_s", "help_s"):
        fig[name.replace("_s", "_vs_pass")] = fig[name] / fig["python_pass_s"]
    log(
        f"start-up: python -c pass {fig['python_pass_s']:.3f}s; --version {fig['version_s']:.3f}s "
        f"({fig['version_vs_pass']:.1f}x); a TAB {fig['complete_s']:.3f}s ({fig['complete_vs_pass']:.1f}x); "
        f"-h {fig['help_s']:.3f}s ({fig['help_vs_pass']:.1f}x)"
    )
    return fig


def _table(
    results: dict[int, dict[str, float]],
    targets: dict[str, float] = TARGETS,
    title: str = "reconciler benchmark (naive_s_extrapolated is extrapolated from a sample)",
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    for n in results:
        table.add_column(f"N={n:,}" if n else "value", justify="right")
    keys: list[str] = []
    for fig in results.values():
        keys += [k for k in fig if k not in keys]
    for k in keys:
        cells = []
        for fig in results.values():
            v = fig.get(k)
            cells.append("-" if v is None else f"{v:,.0f}" if v >= 1000 else f"{v:.3f}")
        target = targets.get(k)
        table.add_row(k + (f" (target {target:,})" if target else ""), *cells)
    Console(stderr=True).print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reconciler bench", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="wallets (repeatable); default 1000 and 10000")
    parser.add_argument("--large", action="store_true", help="also N = 100,000")
    parser.add_argument("--sample", type=int, default=200, help="positions read by the naive loop")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each read (best is kept)")
    parser.add_argument("--sparse-blocks", type=int, default=10_000, help="empty blocks of the sparse scan")
    parser.add_argument("--profile", action="store_true", help="also profile one run (cProfile) and print it")
    parser.add_argument("--books-rows", type=int, default=1_000_000,
                        help="also time `books import` of this many rows, at the largest N (0: only the 4N book rows)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--executions", type=int, default=20, help="executions of the execution-check figures")
    parser.add_argument("--huge", action="store_true",
                        help="only the fleet figures: 1,000,000 wallets x 4 assets imported into the ledger "
                             "(runs at 10k, 100k, 1M; benchmarks/huge.py)")
    parser.add_argument("--huge-n", type=int, action="append", help="with --huge: these sizes instead (repeatable)")
    args = parser.parse_args(argv)
    if args.huge:
        from benchmarks import huge

        return huge.main(args, lambda msg: print(msg, file=sys.stderr, flush=True))
    sizes = args.n or [1000, 10000]
    if args.large:
        sizes.append(100_000)
    args.sizes = sizes

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = startup(max(args.reps, 5), log)
    results = {n: bench_n(n, args, log) for n in sizes}
    from benchmarks.executions import TARGETS as EXEC_TARGETS
    from benchmarks.executions import bench_executions

    execution_figures = bench_executions(log, executions=args.executions, empty_blocks=100 * args.executions)
    _table({0: execution_figures}, EXEC_TARGETS, "executions and presign")
    if 10_000 in results and 100_000 in results:  # linear: 10x the positions, at most 11x the time
        for key in ("run_s", "run_unchanged_s"):
            results[100_000][f"linear_{key}_100k_vs_10k"] = results[100_000][key] / results[10_000][key]
        results[100_000]["linear_100k_vs_10k"] = max(
            results[100_000]["linear_run_s_100k_vs_10k"], results[100_000]["linear_run_unchanged_s_100k_vs_10k"]
        )
    _table(results)
    rusage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"by_n": {str(n): fig for n, fig in results.items()}, "executions": execution_figures,
                      "startup": started, "children_peak_rss_mb": rusage.ru_maxrss / 1024.0,
                      "targets": {**TARGETS, **EXEC_TARGETS}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
