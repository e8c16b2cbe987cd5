"""EvmAdapter.balances on a real Anvil, on both read paths: the values the token contracts and
the node give one by one, and a malformed answer refused with a ChainError naming holder and
token, never read as a number. The per-value checks are done without building a message per
value; these tests hold them to the same strictness.

Malformed answers are injected by tests/integration/rpcproxy.py in front of the session's node.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from web3.contract import Contract

from chains.base import BalanceQuery
from chains.evm.adapter import EvmAdapter
from chains.evm.devnet import Devnet
from reconciler.domain import BlockRef
from reconciler.errors import ChainError
from reconciler.inputs.settings import ChainSettings
from tests.integration.helpers import new_address
from tests.integration.rpcproxy import RpcProxy

PATHS = ("batch", "multicall")


@pytest.fixture
def proxy(devnet: Devnet) -> Iterator[RpcProxy]:
    with RpcProxy(devnet.url) as p:
        yield p


def adapter(url: str, path: str) -> EvmAdapter:
    # chunk_size 3: several batches (or aggregate3 calls) for a handful of queries
    settings = ChainSettings(
        name="eth", kind="evm", rpc_urls=(url,), chain_id=31337, read_path=path, chunk_size=3, rpc_retries=0
    )
    return EvmAdapter.from_settings(settings)


@pytest.fixture
def holdings(devnet: Devnet) -> tuple[list[BalanceQuery], list[int], BlockRef, Contract]:
    usdc = devnet.deploy_token("Test USD", "USDC", 6)
    eur = devnet.deploy_token("Test EUR", "EURT", 18)
    holders = [new_address() for _ in range(4)]
    for i, holder in enumerate(holders):
        devnet.mint(usdc, holder, 10**6 * (i + 1))
        devnet.mint(eur, holder, 2**255 if i == 0 else 2**200 + i)  # values of 256 bits are read whole
        devnet.set_native_balance(holder, 10**18 + i)
    devnet.mine()
    block = devnet.w3.eth.get_block(devnet.head())
    pinned = BlockRef(int(block["number"]), block["hash"].to_0x_hex())
    queries = [BalanceQuery(h, t) for t in (usdc.address, eur.address, None) for h in holders]
    expected = [
        devnet.w3.eth.get_balance(q.holder, block_identifier=pinned.number)
        if q.token is None
        else devnet.w3.eth.contract(address=q.token, abi=usdc.abi)
        .functions.balanceOf(q.holder)
        .call(block_identifier=pinned.number)
        for q in queries
    ]
    return queries, expected, pinned, usdc


@pytest.mark.parametrize("path", PATHS)
def test_both_paths_read_every_balance_exactly(
    devnet: Devnet, holdings: tuple[list[BalanceQuery], list[int], BlockRef, Contract], path: str
) -> None:
    queries, expected, pinned, _ = holdings
    reader = adapter(devnet.url, path)
    assert reader.balances(queries, pinned) == expected
    assert reader.read_path == path
    assert expected[4] >= 2**255 and expected[0] == 10**6  # the contracts hold what was minted


@pytest.mark.parametrize(
    "bad",
    [
        "0x" + "00" * 31,  # short: never read as a smaller number
        "0x" + "00" * 33,
        "0x" + "00 " * 21 + "7",  # 66 characters; bytes.fromhex would skip the spaces
        "0X" + "00" * 32,
        None,
    ],
)
def test_batch_path_refuses_a_malformed_balance_of_answer(
    devnet: Devnet, proxy: RpcProxy, holdings: tuple[list[BalanceQuery], list[int], BlockRef, Contract], bad: Any
) -> None:
    queries, _, pinned, usdc = holdings
    victim = queries[2]
    proxy.on(
        "eth_call",
        lambda request, response: (
            {**response, "result": bad} if victim.holder.lower()[2:] in request["params"][0]["data"] else response
        ),
    )
    with pytest.raises(ChainError, match=f"balanceOf of {victim.holder} in {usdc.address}") as caught:
        adapter(proxy.url, "batch").balances(queries, pinned)
    assert f"block {pinned.number}" in str(caught.value)


@pytest.mark.parametrize("bad", ["0x 1", "0x", "1", "-0x1", "0x1_0"])
def test_batch_path_refuses_a_malformed_native_balance(
    devnet: Devnet, proxy: RpcProxy, holdings: tuple[list[BalanceQuery], list[int], BlockRef, Contract], bad: str
) -> None:
    queries, _, pinned, _ = holdings
    proxy.on("eth_getBalance", lambda request, response: {**response, "result": bad})
    first_native = next(q for q in queries if q.token is None)
    with pytest.raises(ChainError, match=f"eth_getBalance of {first_native.holder} answered .*not a hex quantity"):
        adapter(proxy.url, "batch").balances(queries, pinned)


def _aggregate3(response: dict[str, Any], change: Any) -> dict[str, Any]:
    """The aggregate3 answer with its results passed through ``change``."""
    result = response["result"]
    if not isinstance(result, str) or len(result) < 200:
        return response  # not an aggregate3 (eth_getCode, say)
    (results,) = abi_decode(["(bool,bytes)[]"], bytes.fromhex(result[2:]))
    return {**response, "result": "0x" + abi_encode(["(bool,bytes)[]"], [change(list(results))]).hex()}


def test_multicall_path_refuses_a_result_that_is_not_one_word(
    devnet: Devnet, proxy: RpcProxy, holdings: tuple[list[BalanceQuery], list[int], BlockRef, Contract]
) -> None:
    queries, _, pinned, usdc = holdings
    victim = queries[1]  # the second result of the first aggregate3

    def short_second(results: list[tuple[bool, bytes]]) -> list[tuple[bool, bytes]]:
        return [results[0], (True, results[1][1][:31]), *results[2:]]

    proxy.on("eth_call", lambda request, response: _aggregate3(response, short_second))
    with pytest.raises(ChainError, match=f"balance of {victim.holder} in {usdc.address}: expected one 32-byte word"):
        adapter(proxy.url, "multicall").balances(queries, pinned)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda text: text[:100] + " " + text[101:],  # a space in place of a digit
        lambda text: text[:100] + " " + text[100:-1],  # a space between bytes, the length kept
        lambda text: text + "0",  # an odd number of digits
        lambda text: text[:-2] + "zz",
    ],
)
def test_multicall_path_refuses_an_answer_that_is_not_hex(
    devnet: Devnet, proxy: RpcProxy, holdings: tuple[list[BalanceQuery], list[int], BlockRef, Contract], spoil: Any
) -> None:
    queries, _, pinned, _ = holdings

    def spoiled(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        result = response["result"]
        return {**response, "result": spoil(result)} if isinstance(result, str) and len(result) > 200 else response

    proxy.on("eth_call", spoiled)
    with pytest.raises(ChainError, match="expected 0x-prefixed hex bytes"):
        adapter(proxy.url, "multicall").balances(queries, pinned)
