"""A node, or a proxy in front of it, that answers for another block, mixes up ids or sends
malformed values never yields a complete run: the chain is unread, the run incomplete (exit 2),
and the reason names what was wrong. Real Anvil behind a tampering proxy; SQLite ledger only
(these are chain tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from tests.conftest import Scenario
from tests.integration.helpers import Custody, load, make_custody, position, run_json
from tests.integration.rpcproxy import RpcProxy

OUTSIDER = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
def proxy(devnet: Devnet) -> Iterator[RpcProxy]:
    with RpcProxy(devnet.url) as p:
        yield p


@pytest.fixture
def setup(cli: Any, devnet: Devnet, tmp_path: Path, proxy: RpcProxy) -> tuple[Custody, Path]:
    """The custody setup, read through the proxy, books loaded into a SQLite ledger."""
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    custody = make_custody(devnet, scenario, proxy.url)
    config = scenario.write()
    load(cli, config)
    return custody, config


def _unread(doc: dict[str, Any]) -> str:
    """Assert the run is incomplete with no result for the chain; return the chain's error."""
    assert doc["status"] == "incomplete"
    assert doc["positions"] == []
    eth = doc["chains"]["eth"]
    assert eth["block_number"] is None and eth["block_hash"] is None
    error: str = eth["error"]
    assert error in doc["reason"]
    return error


def _steal_native(devnet: Devnet, holder: str, wei: int) -> None:
    """Move ETH out of ``holder`` with a transaction it did not sign (impersonation), paying
    its own gas, then mine one more block: the theft sits in the two newest blocks and the
    block two below the head is untouched."""
    devnet.rpc("anvil_impersonateAccount", [holder])
    try:
        tx = devnet.rpc("eth_sendTransaction", [{"from": holder, "to": OUTSIDER, "value": hex(wei)}])
        devnet.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
    finally:
        devnet.rpc("anvil_stopImpersonatingAccount", [holder])
    devnet.mine()


def test_a_block_answered_from_two_blocks_back_is_never_read(
    cli: Any, devnet: Devnet, proxy: RpcProxy, setup: tuple[Custody, Path]
) -> None:
    custody, config = setup
    _steal_native(devnet, custody.wallets["house-1"], 10**18)
    head = devnet.head()

    def two_blocks_back(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        asked = int(request["params"][0], 16)
        return {**response, "result": proxy.upstream("eth_getBlockByNumber", [hex(asked - 2), False])}

    proxy.on("eth_getBlockByNumber", two_blocks_back)
    code, doc, stderr = run_json(cli, config)

    assert code == 2, "a run that read another block than it records is never complete"
    error = _unread(doc)
    assert f"eth_getBlockByNumber({hex(head)}) answered block {hex(head - 2)}" in error
    assert f"answered block {hex(head - 2)}" in stderr
    assert doc["breaks"] == []

    # The tampering hid a real theft: answered honestly, the same ledger finds it.
    proxy.reset()
    code, doc, _ = run_json(cli, config)
    assert code == 1 and doc["chains"]["eth"]["block_number"] == head
    assert int(position(doc, "house-1", "ETH")["difference"]) <= -(10**18), "1 ETH and its gas"


def test_a_single_answer_with_another_id_is_refused(cli: Any, proxy: RpcProxy, setup: tuple[Custody, Path]) -> None:
    _, config = setup
    proxy.on("eth_chainId", lambda request, response: {**response, "id": request["id"] + 1000})

    code, doc, _ = run_json(cli, config)

    assert code == 2
    error = _unread(doc)
    assert "eth_chainId" in error and "with id" in error


def test_a_batch_answer_with_a_duplicated_id_is_refused(cli: Any, proxy: RpcProxy, setup: tuple[Custody, Path]) -> None:
    _, config = setup

    duplicated: list[int] = []

    def duplicate_first_id(requests: list[Any], responses: list[Any]) -> list[Any]:
        assert len(responses) >= 2, "decimals() of both tokens are read in one batch"
        duplicated.append(responses[0]["id"])
        return [responses[0], {**responses[1], "id": responses[0]["id"]}, *responses[2:]]

    proxy.rewrite_batch = duplicate_first_id
    code, doc, _ = run_json(cli, config)

    assert code == 2
    error = _unread(doc)
    assert f"answered id {duplicated[0]} twice" in error


@pytest.mark.parametrize("head", ["0xZZ", "0x", "0x1_0", "0x-1", 12, None])
def test_a_block_number_that_is_not_a_hex_quantity_is_a_chain_error(
    cli: Any, proxy: RpcProxy, setup: tuple[Custody, Path], head: object
) -> None:
    _, config = setup
    proxy.on("eth_blockNumber", lambda request, response: {**response, "result": head})

    code, doc, stderr = run_json(cli, config)

    assert code == 2
    error = _unread(doc)
    assert f"eth_blockNumber answered {head!r}" in error
    assert proxy.url in error, "the error names the endpoint that answered"
    assert "ValueError" not in error and "Traceback" not in stderr


@pytest.mark.parametrize(
    "bad_hash",
    ["0x1234", "0x" + "zz" * 32, "0x" + "ab" * 33, "ab" * 32, None],
    ids=["short", "not-hex", "33-bytes", "no-0x", "null"],
)
def test_a_block_hash_that_is_not_32_bytes_of_hex_is_refused(
    cli: Any, proxy: RpcProxy, setup: tuple[Custody, Path], bad_hash: str | None
) -> None:
    _, config = setup

    def bad(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        return {**response, "result": {**response["result"], "hash": bad_hash}}

    proxy.on("eth_getBlockByNumber", bad)

    code, doc, _ = run_json(cli, config)

    assert code == 2
    error = _unread(doc)
    assert "eth_getBlockByNumber(0x" in error and f"hash {bad_hash!r}" in error
