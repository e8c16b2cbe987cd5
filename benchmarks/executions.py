"""What judging every execution of a custody wallet costs, and how fast `presign` answers.

On its own Anvil: a Safe 1.3.0 and an EOA custody wallet; a stretch of empty blocks (the sparse
scan, now with the execution checks: wallet logs, balance and nonce bisection over wallets and
approvers, trace_filter), then a stretch with N executions of the Safe. Figures:

- ``exec_sparse_blocks_per_s``: the range scan (chains.evm.observe.scan_range, everything but
  the token logs) over empty blocks — target 20,000 blocks/s, as the token-log scan's;
- ``exec_none_s`` / ``exec_n_s`` / ``exec_per_execution_ms``: the range scan over a stretch of the
  same length with no execution and with N, and the cost each execution adds;
- ``presign_online_s``: `reconciler presign --json` of an instructed transfer from the Safe, a
  whole process (target under 2 s), and ``presign_in_process_s`` without the interpreter's start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"exec_sparse_blocks_per_s": 20_000, "presign_online_s": 2.0}


def bench_executions(log: Callable[[str], None], executions: int = 20, empty_blocks: int = 2000) -> dict[str, float]:
    from chains.evm import observe
    from chains.evm.devnet import AnvilNode, Devnet
    from chains.evm.rpc import HttpRpc
    from reconciler.domain import BlockRef
    from reconciler.engine.safetx import SafeTx, typed_data

    fig: dict[str, float] = {}
    home = Path(tempfile.mkdtemp(prefix="reconciler-bench-exec-"))
    node = AnvilNode.start(extra_args=["--gas-limit", "100000000"])
    try:
        net = Devnet(node.url)
        net.install_multicall3()
        owners = sorted((net.new_account() for _ in range(2)), key=lambda a: int(a.address, 16))
        safe = net.deploy_safe_130([o.address for o in owners], 1)
        eoa = net.new_account(10**20)
        token = net.deploy_token("Test USD", "USDC", 6)
        net.mint(token, safe.address, 10**12)
        rpc = HttpRpc(node.url, 120)
        wallets = [safe.address, eoa.address]

        def ref(number: int) -> BlockRef:
            return BlockRef(number, net.w3.eth.get_block(number)["hash"].to_0x_hex())

        start = net.head()
        net.rpc("anvil_mine", [hex(empty_blocks)])
        quiet_end = net.head()
        t0 = time.perf_counter()
        scanned = observe.scan_range(rpc, "eth", wallets, ref(start), ref(quiet_end), chunk_blocks=2000)
        secs = time.perf_counter() - t0
        assert not scanned.executions and not scanned.unchecked, scanned
        fig["exec_sparse_blocks"] = float(empty_blocks)
        fig["exec_sparse_s"] = secs
        fig["exec_sparse_blocks_per_s"] = empty_blocks / secs
        # N executions spread over a stretch as long as the empty one
        busy_start = net.head()
        gap = max(1, empty_blocks // max(1, executions))
        for _ in range(executions):
            net.exec_safe(safe, owners[:1], token.address, 0, net.calldata(token, "transfer", owners[0].address, 1))
            net.rpc("anvil_mine", [hex(gap)])
        busy_end = net.head()
        t0 = time.perf_counter()
        scanned = observe.scan_range(rpc, "eth", wallets, ref(busy_start), ref(busy_end), chunk_blocks=2000)
        fig["exec_n_s"] = time.perf_counter() - t0
        fig["exec_n"] = float(len(scanned.executions))
        assert len(scanned.executions) == executions, len(scanned.executions)
        t0 = time.perf_counter()
        observe.scan_range(rpc, "eth", wallets, ref(start), ref(start + (busy_end - busy_start)), chunk_blocks=2000)
        fig["exec_none_s"] = time.perf_counter() - t0
        fig["exec_per_execution_ms"] = 1000 * (fig["exec_n_s"] - fig["exec_none_s"]) / executions
        log(
            f"executions: sparse {fig['exec_sparse_blocks_per_s']:,.0f} blocks/s; {executions} executions "
            f"{fig['exec_n_s']:.2f} s against {fig['exec_none_s']:.2f} s with none "
            f"({fig['exec_per_execution_ms']:.1f} ms each)"
        )
        fig.update(_presign(net, node.url, safe, token, home, typed_data, SafeTx, log))
    finally:
        node.stop()
    return fig


def _presign(net: Any, url: str, safe: Any, token: Any, home: Path, typed_data: Any, safe_tx: Any,
             log: Callable[[str], None]) -> dict[str, float]:  # fmt: skip
    config = home / "reconciler.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{home / "ledger.db"}"\n\n'
        f'[chains.eth]\nkind = "evm"\nrpc_urls = ["{url}"]\nchain_id = 31337\n\n'
        f'[assets.USDC]\nchain = "eth"\naddress = "{token.address}"\ndecimals = 6\nkind = "stablecoin"\n\n'
        f'[wallets.vault]\nchain = "eth"\naddress = "{safe.address}"\nclass = "futures"\n'
    )
    env = {**os.environ, "RECONCILER_CONFIG": str(config)}
    subprocess.run([sys.executable, "-m", "reconciler", "init"], env=env, check=True, capture_output=True)
    nonce = int(safe.functions.nonce().call())
    data = net.calldata(token, "transfer", "0x000000000000000000000000000000000000dEaD", 5)
    payload = home / "tx.json"
    payload.write_text(json.dumps(typed_data(safe_tx(to=token.address, data=data, nonce=nonce), 31337, safe.address,
                                             "1.3.0")))  # fmt: skip
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "presign", str(payload), "--json"], env=env, capture_output=True
        )
        best = min(best, time.perf_counter() - t0)
        doc = json.loads(done.stdout)
        assert doc["simulation"] is not None and doc["simulation"]["success"], doc
    from reconciler.app.presign import PresignOptions, presign
    from reconciler.bootstrap import adapter_for
    from reconciler.inputs.config import load_settings
    from reconciler.ledger.store import Ledger

    settings = load_settings(str(config))

    def open_ledger(s: Any) -> Ledger:
        ledger = Ledger(s.database_url)
        ledger.ensure_ready(reap=False)
        return ledger

    inner = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        presign(payload.read_text(), str(payload), settings, PresignOptions(), adapter_for, open_ledger)
        inner = min(inner, time.perf_counter() - t0)
    log(f"presign: {best:.2f} s as a process, {inner:.3f} s in process")
    return {"presign_online_s": best, "presign_in_process_s": inner}
