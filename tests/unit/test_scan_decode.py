"""The scan's hand decoding of Transfer/Approval logs agrees with eth_abi on every input
(hypothesis), refuses every other shape, and the node errors are classified as the scan needs
(pruned history is never a range to halve, and never "no transfers")."""

from __future__ import annotations

import pytest
from eth_abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import given
from hypothesis import strategies as st

from chains.evm import logs, scan
from chains.evm.rpc import RpcError
from reconciler.errors import RpcUnavailable
from reconciler.transfers import MovementKind

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
uint256 = st.integers(min_value=0, max_value=2**256 - 1)
hashes = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())


def test_topics_are_the_event_signatures() -> None:
    assert scan.TRANSFER_TOPIC == "0x" + keccak(text="Transfer(address,address,uint256)").hex()
    assert scan.APPROVAL_TOPIC == "0x" + keccak(text="Approval(address,address,uint256)").hex()


def _log(signature: str, token: str, frm: str, to: str, amount: int, block: int, index: int, bh: str, tx: str) -> dict:
    return {
        "address": token,
        "topics": [signature, "0x" + encode(["address"], [frm]).hex(), "0x" + encode(["address"], [to]).hex()],
        "data": "0x" + encode(["uint256"], [amount]).hex(),
        "blockNumber": hex(block),
        "blockHash": bh,
        "transactionHash": tx,
        "logIndex": hex(index),
        "removed": False,
    }


@given(
    token=addresses,
    frm=addresses,
    to=addresses,
    amount=uint256,
    block=st.integers(min_value=0, max_value=2**63),
    index=st.integers(min_value=0, max_value=2**32),
    bh=hashes,
    tx=hashes,
    approval=st.booleans(),
    upper=st.booleans(),
)
def test_hand_decoding_agrees_with_eth_abi(
    token: str, frm: str, to: str, amount: int, block: int, index: int, bh: str, tx: str, approval: bool, upper: bool
) -> None:
    signature = scan.APPROVAL_TOPIC if approval else scan.TRANSFER_TOPIC
    entry = _log(signature, token, frm, to, amount, block, index, bh, tx)
    if upper:  # nodes differ in the case of their hex
        entry = {k: (v.upper().replace("0X", "0x") if isinstance(v, str) else v) for k, v in entry.items()}
        entry["topics"] = [t.upper().replace("0X", "0x") for t in entry["topics"]]

    obs = scan.decode_token_log("eth", entry, 1_700_000_000)

    (abi_from,) = decode(["address"], bytes.fromhex(entry["topics"][1][2:]))
    (abi_to,) = decode(["address"], bytes.fromhex(entry["topics"][2][2:]))
    (abi_amount,) = decode(["uint256"], bytes.fromhex(entry["data"][2:]))
    assert obs.kind is (MovementKind.APPROVAL if approval else MovementKind.TOKEN)
    assert obs.from_address == to_checksum_address(abi_from)
    assert obs.to_address == to_checksum_address(abi_to)
    assert obs.amount == abi_amount == amount
    assert obs.token == to_checksum_address(token)
    assert (obs.block_number, obs.log_index, obs.block_time) == (block, index, 1_700_000_000)
    assert (obs.block_hash, obs.tx_hash) == (bh.lower(), tx.lower())
    assert obs.trace_position is None and obs.chain == "eth"


@given(address=addresses)
def test_address_topic_round_trips(address: str) -> None:
    topic = scan.address_topic(address)
    assert bytes.fromhex(topic[2:]) == encode(["address"], [address])
    assert scan.topic_address(topic) == to_checksum_address(address)


@given(high=st.binary(min_size=12, max_size=12).filter(lambda b: any(b)), low=st.binary(min_size=20, max_size=20))
def test_a_topic_with_high_bytes_set_is_not_an_address(high: bytes, low: bytes) -> None:
    with pytest.raises(scan.DecodeError, match="not an address"):
        scan.topic_address("0x" + (high + low).hex())


GOOD = _log(
    scan.TRANSFER_TOPIC,
    "0x" + "11" * 20,
    "0x" + "22" * 20,
    "0x" + "33" * 20,
    5,
    1,
    0,
    "0x" + "aa" * 32,
    "0x" + "bb" * 32,
)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"data": "0x" + "00" * 31}, "32-byte"),  # short data is not read as zero
        ({"data": "0x" + "00" * 64}, "32-byte"),  # nor is extra data ignored
        ({"data": "0x"}, "32-byte"),
        ({"data": "0x" + "zz" * 32}, "32-byte"),
        ({"data": "0x" + "00 " * 20 + "0000"}, "32-byte"),  # bytes.fromhex would skip the spaces
        ({"data": "0X" + "00" * 32}, "32-byte"),
        ({"data": 5}, "32-byte"),
        ({"topics": GOOD["topics"] + ["0x" + "00" * 32]}, "3 topics"),  # ERC-721 Transfer
        ({"topics": GOOD["topics"][:2]}, "3 topics"),
        ({"topics": ["0x" + "00" * 32, *GOOD["topics"][1:]]}, "neither Transfer nor Approval"),
        ({"blockNumber": 1}, "quantity"),
        ({"blockNumber": "0x"}, "quantity"),
        ({"logIndex": None}, "quantity"),
        ({"blockHash": "0xaa"}, "32-byte"),
        ({"address": "0x1234"}, "address"),
    ],
)
def test_other_shapes_are_refused(change: dict, reason: str) -> None:
    assert scan.decode_token_log("eth", GOOD, 0).amount == 5
    with pytest.raises(scan.DecodeError, match=reason):
        scan.decode_token_log("eth", {**GOOD, **change}, 0)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RpcError("n", "eth_getLogs", -32005, "query returned more than 10000 results"), "too_large"),
        (RpcError("n", "eth_getLogs", -32005, "limit exceeded"), "too_large"),
        (RpcError("n", "eth_getLogs", -32602, "block range is too large"), "range"),
        (RpcError("n", "eth_getLogs", -32600, "exceed maximum block range: 5000"), "range"),
        (RpcError("n", "eth_getLogs", -32000, "query timeout exceeded"), "too_large"),
        (RpcUnavailable("n unreachable: timed out after 10s"), "too_large"),
        (RpcUnavailable("n answered HTTP 413 (Payload Too Large): "), "too_large"),
        (RpcError("n", "eth_getLogs", 4444, "pruned history unavailable"), "pruned"),
        (RpcError("n", "eth_getLogs", -32000, "header not found"), "pruned"),
        (RpcError("n", "eth_getBalance", -32000, "missing trie node abc (path )"), "pruned"),
        # Anvil --prune-history: -32602 and the word "range", yet history, not a range cap.
        (
            RpcError("n", "eth_getBalance", -32602, "BlockOutOfRangeError: block height is 27 but requested was 7"),
            "pruned",
        ),
        (RpcError("n", "eth_call", -32000, "required historical state unavailable (reexec=128)"), "pruned"),
        (RpcError("n", "eth_getLogs", -32602, "invalid argument 0: hex string without 0x prefix"), None),
        (RpcError("n", "eth_getLogs", -32603, "internal error"), None),
        (RpcUnavailable("n unreachable: connection refused"), None),
        (RpcUnavailable("n answered HTTP 503 (Service Unavailable): "), None),
    ],
)
def test_node_errors_are_classified(error: Exception, kind: str | None) -> None:
    assert scan._classify(error) == kind  # type: ignore[arg-type]


# The scan of a large wallet set asks the node for every Transfer and Approval of the tokens and
# keeps here what the topic-filtered queries would have selected; the oracle is eth_getLogs'
# own rule: a filter position that is not null must be present in the log and be one of its list.
WALLET_WORDS = [scan.address_topic("0x" + f"{i:02x}" * 20) for i in range(1, 4)]
OUTSIDER_WORDS = [scan.address_topic("0x" + f"{i:02x}" * 20) for i in range(10, 13)] + ["0x" + "ff" * 32]
TOKEN = "0x" + "ab" * 20


def _node_selects(flt: list[list[str] | None], topics: list[str]) -> bool:
    for position, wanted in enumerate(flt):
        if wanted is None:
            continue
        if position >= len(topics) or topics[position].lower() not in wanted:
            return False
    return True


def _case(text: str, upper: bool) -> str:
    return "0x" + text[2:].upper() if upper else text


@given(
    signature=st.sampled_from([scan.TRANSFER_TOPIC, scan.APPROVAL_TOPIC]),
    rest=st.lists(st.sampled_from(WALLET_WORDS + OUTSIDER_WORDS), max_size=3),
    upper=st.booleans(),
)
def test_local_matching_selects_what_the_topic_filters_select(signature: str, rest: list[str], upper: bool) -> None:
    topics = [_case(t, upper) for t in [signature, *rest]]
    entry = {"address": _case(TOKEN, upper), "topics": topics}
    queries = [[[scan.TRANSFER_TOPIC, scan.APPROVAL_TOPIC], WALLET_WORDS], [[scan.TRANSFER_TOPIC], None, WALLET_WORDS]]
    expected = any(_node_selects(q, topics) for q in queries)
    assert logs._names_a_wallet(entry, set(WALLET_WORDS), {TOKEN}, "eth", 1, 2) is expected


@pytest.mark.parametrize(
    "entry",
    [
        {"address": "0x" + "cd" * 20, "topics": [scan.TRANSFER_TOPIC, WALLET_WORDS[0], WALLET_WORDS[1]]},
        {"address": TOKEN, "topics": ["0x" + "00" * 32, WALLET_WORDS[0], WALLET_WORDS[1]]},
    ],
)
def test_local_matching_refuses_a_log_the_filter_excludes(entry: dict) -> None:
    with pytest.raises(scan.ScanFailed, match="filter excludes"):
        logs._names_a_wallet(entry, set(WALLET_WORDS), {TOKEN}, "eth", 1, 2)


@pytest.mark.parametrize(
    "entry",
    [
        {"address": TOKEN, "topics": "not a list"},
        {"address": TOKEN, "topics": []},
        {"address": TOKEN, "topics": [None, WALLET_WORDS[0]]},
        {"address": TOKEN, "topics": [scan.TRANSFER_TOPIC, 5, WALLET_WORDS[0]]},
        {"address": None, "topics": [scan.TRANSFER_TOPIC, WALLET_WORDS[0], WALLET_WORDS[1]]},
    ],
)
def test_local_matching_keeps_a_misshapen_log_for_decoding_to_refuse(entry: dict) -> None:
    assert logs._names_a_wallet(entry, set(WALLET_WORDS), {TOKEN}, "eth", 1, 2) is True
    with pytest.raises(scan.DecodeError):
        scan.decode_token_log("eth", entry, 0)


def test_a_value_refused_once_is_refused_again() -> None:
    """The decoders remember valid texts only: a refused one is checked (and refused) each time."""
    high = "0x" + "01" * 32
    for _ in range(2):
        with pytest.raises(scan.DecodeError, match="not an address"):
            scan.topic_address(high)
        with pytest.raises(scan.DecodeError, match="32-byte"):
            scan.decode_token_log("eth", {**GOOD, "blockHash": "0x" + "aa" * 31}, 0)
        with pytest.raises(scan.DecodeError, match="quantity"):
            scan.decode_token_log("eth", {**GOOD, "logIndex": "0x1_0"}, 0)
    assert scan.topic_address(GOOD["topics"][1]) == to_checksum_address("0x" + "22" * 20)


@given(address=addresses, upper=st.booleans())
def test_checksum_is_eip55(address: str, upper: bool) -> None:
    text = "0x" + address[2:].upper() if upper else address
    assert scan.checksum(text) == to_checksum_address(address)


@pytest.mark.parametrize("bad", ["0x" + "11" * 19, "0x" + "zz" * 20, "11" * 20 + "0x", "0X" + "11" * 20])
def test_checksum_refuses_what_is_not_an_address(bad: str) -> None:
    with pytest.raises(scan.DecodeError, match="20-byte"):
        scan.checksum(bad)
