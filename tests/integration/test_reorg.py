"""A reorg that replaces the pinned block mid-run: the run re-pins and reads the new chain.

The reorg is real (anvil_reorg on the session's node); the test only chooses its moment by
wrapping the real EVM adapter so that the reorg lands between pinning and reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chains.evm.adapter import EvmAdapter
from chains.evm.devnet import Devnet
from reconciler.app.run import run_reconciliation
from reconciler.bootstrap import open_ledger
from reconciler.domain import BlockRef
from reconciler.inputs.config import load_settings
from reconciler.inputs.settings import ChainSettings
from tests.conftest import Scenario
from tests.integration.helpers import load, make_custody


class ReorgAfterPin(EvmAdapter):
    """The real adapter; the first read after the first pin is preceded by a real reorg."""

    reorged: list[tuple[int, str]] = []

    def __init__(self, settings: ChainSettings, net: Devnet, wallet: str) -> None:
        base = EvmAdapter.from_settings(settings)
        super().__init__(settings, base.rpc)
        self.net = net
        self.wallet = wallet

    def token_decimals(self, tokens: Sequence[str], block: BlockRef) -> list[int]:
        if not self.reorged:
            self.reorged.append((block.number, block.hash))
            tx = {"from": self.net.deployer, "to": self.wallet, "value": hex(4096)}
            self.net.rpc("anvil_reorg", [1, [[tx, 0]]])
        return super().token_decimals(tokens, block)


def test_reorg_of_the_pinned_block_is_detected_and_the_new_block_read(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.mine()
    settings = load_settings(str(config))
    ledger = open_ledger(settings)
    ReorgAfterPin.reorged = []

    report = run_reconciliation(
        settings, ledger, lambda chain: ReorgAfterPin(chain, devnet, custody.wallets["house-1"])
    )
    ledger.close()

    [(number, old_hash)] = ReorgAfterPin.reorged
    [chain] = report.chains
    assert chain.block is not None and chain.error is None
    assert chain.block.number == number
    assert chain.block.hash != old_hash
    assert chain.block.hash == devnet.w3.eth.get_block(number)["hash"].to_0x_hex()
    # the transaction that only exists on the new branch is what the run saw
    [brk] = report.breaks
    assert (brk.key.wallet, brk.key.asset, brk.amount) == ("house-1", "ETH", 4096)
    assert report.run.status == "complete"
