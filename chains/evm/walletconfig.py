"""Reads custody wallets' configuration and issuer controls from storage and code, at a pin.

Invariants:
- Every read names the pinned block by hash (EIP-1898, requireCanonical): a reorg makes the
  read fail rather than answer from another fork.
- Configuration comes from eth_getCode and eth_getStorageAt, never from events or the wallet's
  own views: a singleton swapped by a DELEGATECALL emits no event, keeps the proxy's code hash
  and makes every Safe view revert, yet its storage still reads. The one view called, a Safe's
  getThreshold(), is a liveness probe whose failure is recorded in the value (``problems``).
- Reads are batched across wallets: one JSON-RPC batch (in chunks) for code and fixed slots,
  then one batch per step of the owners and modules linked lists, bounded by ``max_entries``:
  a list that loops or does not end is recorded as a problem, never walked forever.
- An issuer-control view that reverts, answers nothing or answers a non-boolean word is
  UNKNOWN, never "not frozen" or "not paused".
- Failures of the node or the transport raise ChainError (RpcUnavailable stays
  RpcUnavailable) naming the chain, the block and the wallets or tokens being read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eth_utils.crypto import keccak

from chains.evm import codesizes
from chains.evm.rpc import Call, RpcError, Transport
from reconciler.domain import BlockRef, eip55
from reconciler.errors import ChainError, RpcUnavailable
from reconciler.walletconfig import (
    ControlState,
    FreezeQuery,
    FreezeReading,
    FrozenTokensReading,
    IssuerControls,
    PauseReading,
    TokenImplementation,
    WalletConfig,
    WalletKind,
    delegation_of,
    wallet_kind,
)

log = logging.getLogger(__name__)

# Safe storage layout (1.1.1 to 1.4.1; our CustodyWallet shares it).
SENTINEL = 0x1
SLOT_SINGLETON = 0
SLOT_MODULES = 1
SLOT_OWNERS = 2
SLOT_OWNER_COUNT = 3
SLOT_THRESHOLD = 4
SLOT_NONCE = 5
GUARD_SLOT = int.from_bytes(keccak(text="guard_manager.guard.address"), "big")
FALLBACK_HANDLER_SLOT = int.from_bytes(keccak(text="fallback_manager.handler.address"), "big")

# Proxy slots: EIP-1967 (bytes32(uint256(keccak256("eip1967.proxy.implementation")) - 1), and the
# admin likewise) and the older ZeppelinOS slot that USDC's FiatTokenProxy uses.
EIP1967_IMPLEMENTATION_SLOT = 0x360894A13BA1A3210667C828492DB98DCA3E2076CC3735A920A3CA505D382BBC
EIP1967_ADMIN_SLOT = 0xB53127684A568B3173AE13B9F8A6016E243E63B6E8EE1178D6A717850B5D6103
EIP1967_BEACON_SLOT = 0xA3F0AD74E5423AEBFD80D3EF4346578335A9A72AEAEE59FF6CB3582B35133D50
ZEPPELINOS_IMPLEMENTATION_SLOT = int.from_bytes(keccak(text="org.zeppelinos.proxy.implementation"), "big")

GET_THRESHOLD = bytes.fromhex("e75235b8")  # getThreshold()
GET_OWNERS = bytes.fromhex("a0e67e2b")  # getOwners()
IMPLEMENTATION = bytes.fromhex("5c60da1b")  # implementation(), a beacon's
PAUSED = bytes.fromhex("5c975abb")  # paused()
GET_FROZEN_TOKENS = bytes.fromhex("158b1a57")  # getFrozenTokens(address), ERC-3643

MAX_LIST_ENTRIES = 100
DEFAULT_CHUNK_SIZE = 500
EMPTY_CODE_HASH = "0x" + keccak(b"").hex()  # an account without code (most of a fleet)

# Per wallet, in this order, after eth_getCode.
_FIXED_SLOTS: tuple[tuple[str, int], ...] = (
    ("singleton", SLOT_SINGLETON),
    ("owner_count", SLOT_OWNER_COUNT),
    ("threshold", SLOT_THRESHOLD),
    ("nonce", SLOT_NONCE),
    ("implementation", EIP1967_IMPLEMENTATION_SLOT),
    ("admin", EIP1967_ADMIN_SLOT),
    ("beacon", EIP1967_BEACON_SLOT),
    ("guard", GUARD_SLOT),
    ("fallback_handler", FALLBACK_HANDLER_SLOT),
)
_LIST_SLOTS: tuple[tuple[str, int], ...] = (("owners", SLOT_OWNERS), ("modules", SLOT_MODULES))


def mapping_slot(key: int, slot: int) -> int:
    """Storage slot of ``mapping[key]`` for a mapping declared at ``slot`` (Solidity layout)."""
    return int.from_bytes(keccak(key.to_bytes(32, "big") + slot.to_bytes(32, "big")), "big")


def function_selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def _block_param(block: BlockRef) -> dict[str, Any]:
    return {"blockHash": block.hash, "requireCanonical": True}


def _slot_hex(slot: int) -> str:
    return "0x" + slot.to_bytes(32, "big").hex()


def _address_word(address: str) -> str:
    return "00" * 12 + address[2:].lower()


def _names(labels: Iterable[str], limit: int = 5) -> str:
    distinct = list(dict.fromkeys(labels))
    shown = ", ".join(distinct[:limit])
    more = len(distinct) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def _translate(exc: ChainError, context: str) -> ChainError:
    cls = RpcUnavailable if isinstance(exc, RpcUnavailable) else ChainError
    return cls(f"{context}: {exc}")


def _is_revert(exc: RpcError) -> bool:
    # Anvil and Geth answer a reverted eth_call with code 3 ("execution reverted", revert data
    # in `data`); some nodes use -32000 with the same message.
    return exc.code == 3 or "revert" in exc.rpc_message.lower()


class _Reader:
    """Batched reads at one pin, with error messages naming chain, block and subject."""

    def __init__(self, rpc: Transport, chain: str, block: BlockRef, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        self.rpc = rpc
        self.chain = chain
        self.block = block
        self.at = _block_param(block)
        self.chunk_size = chunk_size

    def where(self) -> str:
        return f"chain {self.chain} block {self.block.number} ({self.block.hash})"

    def batch(self, calls: Sequence[tuple[Call, str]], what: str) -> list[Any]:
        """Results in order; any error answer or transport failure raises naming the subjects."""
        out: list[Any] = []
        for i in range(0, len(calls), self.chunk_size):
            chunk = calls[i : i + self.chunk_size]
            try:
                out.extend(self.rpc.batch([c for c, _ in chunk]))
            except ChainError as exc:
                raise _translate(exc, f"{self.where()}: reading {what} of {_names(s for _, s in chunk)}") from exc
        return out

    def calls(self, calls: Sequence[tuple[Call, str]], what: str) -> list[bytes | RpcError]:
        """eth_call results in order; a revert is returned as its RpcError, anything else raises.

        A batch is all-or-nothing at the transport, so a chunk holding a revert is asked again
        call by call: reverts are rare, and only their chunk pays for them.
        """
        out: list[bytes | RpcError] = []
        for i in range(0, len(calls), self.chunk_size):
            chunk = calls[i : i + self.chunk_size]
            try:
                raws: list[Any] | None = self.rpc.batch([c for c, _ in chunk])
            except RpcError as exc:
                if not _is_revert(exc):
                    raise _translate(exc, f"{self.where()}: reading {what} of {_names(s for _, s in chunk)}") from exc
                raws = None
            except ChainError as exc:
                raise _translate(exc, f"{self.where()}: reading {what} of {_names(s for _, s in chunk)}") from exc
            if raws is not None:
                out.extend(self.hex_bytes(raw, subject) for raw, (_, subject) in zip(raws, chunk, strict=True))
                continue
            for (method, params), subject in chunk:
                try:
                    raw = self.rpc.request(method, params)
                except RpcError as exc:
                    if not _is_revert(exc):
                        raise _translate(exc, f"{self.where()}: reading {what} of {subject}") from exc
                    out.append(exc)
                    continue
                except ChainError as exc:
                    raise _translate(exc, f"{self.where()}: reading {what} of {subject}") from exc
                out.append(self.hex_bytes(raw, subject))
        return out

    def hex_bytes(self, raw: Any, subject: str) -> bytes:
        if not isinstance(raw, str) or not raw.startswith("0x") or len(raw) % 2:
            raise ChainError(f"{self.where()}: {subject}: the node answered {raw!r:.80}, not 0x-prefixed hex bytes")
        try:
            return bytes.fromhex(raw[2:])
        except ValueError as exc:
            raise ChainError(f"{self.where()}: {subject}: the node answered {raw!r:.80}, not hex") from exc

    def word(self, raw: Any, subject: str) -> int:
        data = self.hex_bytes(raw, subject)
        if len(data) > 32:
            raise ChainError(f"{self.where()}: {subject}: a storage word of {len(data)} bytes")
        return int.from_bytes(data, "big")

    def storage(self, address: str, slot: int, subject: str) -> tuple[Call, str]:
        return ("eth_getStorageAt", [address, _slot_hex(slot), self.at]), subject

    def code(self, address: str, subject: str) -> tuple[Call, str]:
        return ("eth_getCode", [address, self.at]), subject

    def eth_call(self, to: str, data: bytes, subject: str) -> tuple[Call, str]:
        return ("eth_call", [{"to": to, "data": "0x" + data.hex()}, self.at]), subject


def _code_sizes(reader: _Reader, addresses: Sequence[str]) -> list[int] | None:
    """Each account's code size at the pin, or None when the node would not say it exactly
    (then every account's code is read). Transport failures raise, as any read's do."""
    per_call = codesizes.ACCOUNTS_PER_CALL
    groups = [addresses[i : i + per_call] for i in range(0, len(addresses), per_call)]
    calls: list[Call] = [
        ("eth_call", [{"to": codesizes.PROBE, "data": codesizes.calldata(group)}, reader.at, codesizes.override()])
        for group in groups
    ]
    answers: list[Any] = []
    for i in range(0, len(calls), reader.chunk_size):
        try:
            answers += reader.rpc.batch(calls[i : i + reader.chunk_size])
        except RpcError as exc:  # no state overrides here (or a revert): read each account's code
            log.info("event=code_sizes_unavailable chain=%s reason=%r fallback=eth_getCode", reader.chain, str(exc))
            return None
        except ChainError as exc:
            raise _translate(exc, f"{reader.where()}: reading the code sizes of {len(addresses)} accounts") from exc
    sizes: list[int] = []
    for group, answer in zip(groups, answers, strict=True):
        decoded = codesizes.decode(answer, len(group))
        if decoded is None:
            log.info(
                "event=code_sizes_unavailable chain=%s reason=unexpected_answer fallback=eth_getCode", reader.chain
            )
            return None
        sizes += decoded
    return sizes


def _address_or_none(word: int) -> str | None:
    """The address in a storage word's low 20 bytes (what a proxy masks out); None when zero."""
    low = word & ((1 << 160) - 1)
    return None if low == 0 else eip55(f"{low:040x}")


def _checksum(address: str) -> str:
    return eip55(address)


def _as_given(address: str) -> str:
    """A wallet's address as its settings give it: EIP-55 already when it is mixed-case (a
    configured or imported wallet's is checked when it is read, and hashing a fleet's
    addresses again was a large part of reading it); put in that form otherwise."""
    digits = address[2:]
    if len(address) == 42 and address[:2] == "0x" and digits != digits.lower() and digits != digits.upper():
        return address
    return eip55(address)


@dataclass
class _Walk:
    """One linked list being walked (mutable, local to one read)."""

    index: int  # which wallet
    name: str  # "owners" | "modules"
    slot: int
    next: int
    entries: list[str] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    problem: str | None = None

    def step(self, max_entries: int) -> int | None:
        """Take the node read last; return the next slot to read, or None once finished."""
        nxt = self.next
        if nxt == SENTINEL:
            return None  # the list's end
        if nxt == 0:
            if self.entries:  # an empty list (modules never set up) is not a problem
                self.problem = f"{self.name} list breaks after {self.entries[-1]}: its next entry is zero"
        elif nxt >= 1 << 160:
            self.problem = f"{self.name} list holds a word that is not an address: {hex(nxt)}"
        elif nxt in self.seen:
            self.problem = f"{self.name} list loops back to {eip55(format(nxt, '040x'))}"
        elif len(self.entries) >= max_entries:
            self.problem = f"{self.name} list does not end within {max_entries} entries"
        else:
            self.seen.add(nxt)
            self.entries.append(eip55(f"{nxt:040x}"))
            return mapping_slot(nxt, self.slot)
        return None


def read_wallet_configs(
    rpc: Transport,
    chain: str,
    wallets: Sequence[tuple[str, str]],
    block: BlockRef,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_entries: int = MAX_LIST_ENTRIES,
    probes: Mapping[str, Sequence[str]] | None = None,
) -> list[WalletConfig]:
    """The configuration of each ``(name, address)`` wallet at ``block``, in the order given.

    Requests: one batch (chunked by ``chunk_size``) of eth_getCode, then one of eleven storage
    slots per wallet that has code; for Safes, one batch per step of the longest owners or
    modules list (at most ``max_entries`` + 1 steps), one batch of getThreshold() and
    getOwners() probes, and one of the ``owners[x]``/``modules[x]`` entries of the addresses
    ``probes`` names for the wallet (by address): any set outside the lists is hidden; for
    beacon proxies, one batch of the beacons' implementation().
    """
    reader = _Reader(rpc, chain, block, chunk_size)
    addresses = [_as_given(address) for _, address in wallets]
    subjects = [f"wallet {name} ({address})" for (name, _), address in zip(wallets, addresses, strict=True)]
    # Code first: an account without code has no storage that anything can act on (storage left
    # by an EIP-7702 delegation that was later cleared is inert), so only accounts with code —
    # Safes, proxies, delegated EOAs — pay for the ten storage slots. With plain EOAs that is
    # one read per wallet instead of eleven.
    # Which accounts have code: in one eth_call per 500 (a state override, see codesizes.py),
    # else one eth_getCode each; then the code itself of those that have it.
    sizes = _code_sizes(reader, addresses)
    ask = [i for i, size in enumerate(sizes) if size] if sizes is not None else list(range(len(addresses)))
    code_raws = reader.batch([reader.code(addresses[i], subjects[i]) for i in ask], "the code")
    codes = [b""] * len(addresses)
    for i, raw in zip(ask, code_raws, strict=True):
        codes[i] = reader.hex_bytes(raw, f"{subjects[i]}: code")
        if sizes is not None and len(codes[i]) != sizes[i]:
            raise ChainError(
                f"{reader.where()}: {subjects[i]}: the node said its code is {sizes[i]} bytes, then answered "
                f"{len(codes[i])} bytes of code"
            )
    with_code = [i for i, code in enumerate(codes) if code]
    first: list[tuple[Call, str]] = []
    for i in with_code:
        first += [reader.storage(addresses[i], slot, subjects[i]) for _, slot in _FIXED_SLOTS]
        first += [reader.storage(addresses[i], mapping_slot(SENTINEL, slot), subjects[i]) for _, slot in _LIST_SLOTS]
    per_wallet = len(_FIXED_SLOTS) + len(_LIST_SLOTS)
    raws = reader.batch(first, "the configuration")
    rows = {i: raws[j * per_wallet : (j + 1) * per_wallet] for j, i in enumerate(with_code)}
    no_words = {key: 0 for key, _ in (*_FIXED_SLOTS, *_LIST_SLOTS)}

    slots: list[dict[str, int]] = []
    kinds: list[WalletKind] = []
    walks: list[_Walk] = []
    for i, subject in enumerate(subjects):
        code = codes[i]
        row = rows.get(i)
        if row is None:
            words = dict(no_words)
        else:
            fixed = row[: len(_FIXED_SLOTS)]
            words = {
                key: reader.word(raw, f"{subject}: {key}") for (key, _), raw in zip(_FIXED_SLOTS, fixed, strict=True)
            }
            heads = row[len(_FIXED_SLOTS) :]
            for (list_name, _), raw in zip(_LIST_SLOTS, heads, strict=True):
                words[list_name] = reader.word(raw, f"{subject}: {list_name}[0x1]")
        kind = wallet_kind(code, words["owners"], words["threshold"])
        slots.append(words)
        kinds.append(kind)
        if kind is WalletKind.SAFE:
            walks += [_Walk(i, list_name, slot, words[list_name]) for list_name, slot in _LIST_SLOTS]

    pending = walks
    while pending:
        reads: list[tuple[_Walk, int]] = []
        for walk in pending:
            next_slot = walk.step(max_entries)
            if next_slot is not None:
                reads.append((walk, next_slot))
        if not reads:
            break
        calls = [
            reader.storage(addresses[w.index], s, f"wallet {wallets[w.index][0]} ({addresses[w.index]})")
            for w, s in reads
        ]
        for (walk, _), raw in zip(reads, reader.batch(calls, "the owners and modules lists"), strict=True):
            walk.next = reader.word(raw, f"wallet {wallets[walk.index][0]}: {walk.name} list")
        pending = [w for w, _ in reads]

    safes = [i for i, kind in enumerate(kinds) if kind is WalletKind.SAFE]
    answers = reader.calls(
        [
            reader.eth_call(addresses[i], view, f"wallet {wallets[i][0]} ({addresses[i]})")
            for i in safes
            for view in (GET_THRESHOLD, GET_OWNERS)
        ],
        "getThreshold() and getOwners()",
    )
    probe_by_index = {i: answers[2 * j] for j, i in enumerate(safes)}
    owners_view = {i: answers[2 * j + 1] for j, i in enumerate(safes)}
    lists: dict[tuple[int, str], _Walk] = {(w.index, w.name): w for w in walks}
    hidden = _hidden_entries(reader, addresses, safes, lists, probes or {})
    beacons = [i for i in with_code if slots[i].get("beacon")]
    beacon_answers = reader.calls(
        [
            reader.eth_call(
                _checksum(_address_or_none(slots[i]["beacon"]) or "0x" + "00" * 20),
                IMPLEMENTATION,
                f"the beacon of wallet {wallets[i][0]}",
            )
            for i in beacons
        ],
        "beacon implementation()",
    )
    beacon_by_index = dict(zip(beacons, beacon_answers, strict=True))

    out = []
    for i, ((name, _), address) in enumerate(zip(wallets, addresses, strict=True)):
        words, code, kind = slots[i], codes[i], kinds[i]
        if not code:
            out.append(WalletConfig.without_code(name, chain, address, block.number, EMPTY_CODE_HASH))
            continue
        delegate = delegation_of(code)
        config = WalletConfig(
            wallet=name,
            chain=chain,
            address=address,
            block_number=block.number,
            kind=kind,
            code_hash=EMPTY_CODE_HASH if not code else "0x" + keccak(code).hex(),
            implementation=_address_or_none(words["implementation"]),
            admin=_address_or_none(words["admin"]),
            delegation=None if delegate is None else _checksum(delegate),
        )
        if i in beacon_by_index:
            config = _with_beacon(config, words, beacon_by_index[i])
        if kind is WalletKind.SAFE:
            owners, modules = lists[(i, "owners")], lists[(i, "modules")]
            config = _with_safe_fields(config, words, owners, modules, probe_by_index[i])
            config = _with_owner_checks(config, owners_view[i], hidden.get(i, ((), ())))
        out.append(config)
    return out


def _hidden_entries(
    reader: _Reader,
    addresses: Sequence[str],
    safes: Sequence[int],
    lists: Mapping[tuple[int, str], _Walk],
    probes: Mapping[str, Sequence[str]],
) -> dict[int, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per Safe, the probed addresses whose owners[x] / modules[x] entry is set though the
    walked list does not hold them: (hidden owners, hidden modules)."""
    asked: list[tuple[int, str, str]] = []
    for i in safes:
        listed = {name: {e.lower() for e in lists[(i, name)].entries} for name in ("owners", "modules")}
        for candidate in dict.fromkeys(_checksum(p) for p in probes.get(addresses[i], ())):
            if int(candidate, 16) <= SENTINEL:
                continue
            for name in ("owners", "modules"):
                if candidate.lower() not in listed[name]:
                    asked.append((i, name, candidate))
    if not asked:
        return {}
    slot_of = dict(_LIST_SLOTS)
    calls = [
        reader.storage(addresses[i], mapping_slot(int(c, 16), slot_of[name]), f"wallet {addresses[i]}: {name}[{c}]")
        for i, name, c in asked
    ]
    found: dict[int, tuple[list[str], list[str]]] = {}
    for (i, name, candidate), raw in zip(asked, reader.batch(calls, "the probed owners and modules"), strict=True):
        if reader.word(raw, f"wallet {addresses[i]}: {name}[{candidate}]"):
            owners, modules = found.setdefault(i, ([], []))
            (owners if name == "owners" else modules).append(candidate)
    return {i: (tuple(sorted(o)), tuple(sorted(m))) for i, (o, m) in found.items()}


def _with_beacon(config: WalletConfig, words: dict[str, int], answer: bytes | RpcError) -> WalletConfig:
    beacon = _address_or_none(words["beacon"])
    if isinstance(answer, RpcError) or len(answer) != 32 or int.from_bytes(answer[:12], "big"):
        problem = f"the beacon {beacon}'s implementation() does not answer an address"
        return replace(config, beacon=beacon, problems=(*config.problems, problem))
    return replace(config, beacon=beacon, beacon_implementation=_address_or_none(int.from_bytes(answer, "big")))


def _with_owner_checks(
    config: WalletConfig, answer: bytes | RpcError, hidden: tuple[tuple[str, ...], tuple[str, ...]]
) -> WalletConfig:
    """getOwners() must answer the owners list the storage holds (a singleton that answers
    another list is lying about who signs); hidden mapping entries are recorded."""
    problems = list(config.problems)
    # Compared only over an intact list: a list the storage walk already found broken (a loop,
    # an owner count that disagrees) is reported as such, not twice.
    if not problems and not isinstance(answer, RpcError) and answer:
        listed = _decode_addresses(answer)
        if listed is None:
            problems.append("getOwners() does not answer a list of addresses")
        elif tuple(listed) != config.owners:
            problems.append(
                f"getOwners() answers [{', '.join(listed)}] but the owners list in storage is "
                f"[{', '.join(config.owners)}]"
            )
    return replace(config, hidden_owners=hidden[0], hidden_modules=hidden[1], problems=tuple(problems))


def _decode_addresses(answer: bytes) -> list[str] | None:
    """An ABI-encoded ``address[]`` return value, or None when it is not one."""
    if len(answer) < 64 or int.from_bytes(answer[:32], "big") != 32:
        return None
    count = int.from_bytes(answer[32:64], "big")
    if count > MAX_LIST_ENTRIES or len(answer) != 64 + 32 * count:
        return None
    words = [answer[64 + 32 * k : 96 + 32 * k] for k in range(count)]
    if any(w[:12] != bytes(12) for w in words):
        return None
    return [_checksum("0x" + w[12:].hex()) for w in words]


def _with_safe_fields(
    config: WalletConfig, words: dict[str, int], owners: _Walk, modules: _Walk, probe: bytes | RpcError
) -> WalletConfig:
    problems = [p for p in (owners.problem, modules.problem) if p is not None]
    if owners.problem is None and words["owner_count"] != len(owners.entries):
        problems.append(
            f"owner count slot holds {words['owner_count']} but the owners list has {len(owners.entries)} entries"
        )
    if isinstance(probe, RpcError):
        problems.append("getThreshold() reverts: the singleton in slot 0 no longer answers as a Safe")
    elif not probe:
        problems.append("getThreshold() returns no data: the singleton in slot 0 has no Safe code")
    elif len(probe) != 32:
        problems.append(f"getThreshold() returns {len(probe)} bytes, not one word")
    elif int.from_bytes(probe, "big") != words["threshold"]:
        problems.append(
            f"getThreshold() answers {int.from_bytes(probe, 'big')} but the threshold slot holds {words['threshold']}"
        )
    return replace(
        config,
        singleton=_address_or_none(words["singleton"]),
        owners=tuple(owners.entries),
        threshold=words["threshold"],
        nonce=words["nonce"],
        modules=tuple(modules.entries),
        guard=_address_or_none(words["guard"]),
        fallback_handler=_address_or_none(words["fallback_handler"]),
        problems=tuple(problems),
    )


def read_delegations(
    rpc: Transport,
    chain: str,
    addresses: Sequence[str],
    block: BlockRef,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, str | None]:
    """EIP-7702 delegate of each address at ``block`` (keys and values EIP-55), None where the
    account has no designator (no code, or ordinary contract code). One batch of eth_getCode."""
    reader = _Reader(rpc, chain, block, chunk_size)
    unique = list(dict.fromkeys(_checksum(a) for a in addresses))
    raws = reader.batch([reader.code(a, f"account {a}") for a in unique], "the code")
    out: dict[str, str | None] = {}
    for address, raw in zip(unique, raws, strict=True):
        delegate = delegation_of(reader.hex_bytes(raw, f"account {address}: code"))
        out[address] = None if delegate is None else _checksum(delegate)
    return out


def _bool_state(answer: bytes | RpcError, call: str) -> tuple[ControlState, str]:
    if isinstance(answer, RpcError):
        return ControlState.UNKNOWN, f"{call} reverted"
    if not answer:
        return ControlState.UNKNOWN, f"{call} returned no data (not a view of this token, or no code there)"
    if len(answer) != 32:
        return ControlState.UNKNOWN, f"{call} returned {len(answer)} bytes, not one word"
    value = int.from_bytes(answer, "big")
    if value == 1:
        return ControlState.YES, ""
    if value == 0:
        return ControlState.NO, ""
    return ControlState.UNKNOWN, f"{call} returned a word that is not a bool"


def _uint_state(answer: bytes | RpcError, call: str) -> tuple[int | None, str]:
    if isinstance(answer, RpcError):
        return None, f"{call} reverted"
    if not answer:
        return None, f"{call} returned no data (not a view of this token, or no code there)"
    if len(answer) != 32:
        return None, f"{call} returned {len(answer)} bytes, not one word"
    return int.from_bytes(answer, "big"), ""


def read_issuer_controls(
    rpc: Transport,
    chain: str,
    block: BlockRef,
    *,
    freezes: Sequence[FreezeQuery] = (),
    pauses: Sequence[str] = (),
    implementations: Sequence[str] = (),
    frozen: Sequence[tuple[str, str]] = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> IssuerControls:
    """Issuer controls at ``block``: each freeze query's ``function(holder)``, each token's
    ``paused()``, each (token, holder)'s ``getFrozenTokens(holder)`` (ERC-3643's partial
    freeze), and each token's implementation slots (EIP-1967 and ZeppelinOS). Calldata is
    encoded by hand; one batch of eth_calls (a chunk with a revert is re-asked call by call)
    and one batch of storage reads."""
    reader = _Reader(rpc, chain, block, chunk_size)
    calls: list[tuple[Call, str]] = []
    for q in freezes:
        data = function_selector(f"{q.function}(address)") + bytes.fromhex(_address_word(q.holder))
        calls.append(reader.eth_call(q.token, data, f"{q.function}({q.holder}) on token {q.token}"))
    calls += [reader.eth_call(token, PAUSED, f"paused() on token {token}") for token in pauses]
    for token, holder in frozen:
        data = GET_FROZEN_TOKENS + bytes.fromhex(_address_word(holder))
        calls.append(reader.eth_call(token, data, f"getFrozenTokens({holder}) on token {token}"))
    answers = reader.calls(calls, "issuer controls")
    frozen_answers = answers[len(freezes) + len(pauses) :]
    frozen_readings = []
    for (token, holder), answer in zip(frozen, frozen_answers, strict=True):
        amount, note = _uint_state(answer, f"getFrozenTokens({holder})")
        frozen_readings.append(
            FrozenTokensReading(_checksum(token), _checksum(holder), block.number, amount, note)
        )

    freeze_readings = []
    for q, answer in zip(freezes, answers[: len(freezes)], strict=True):
        state, note = _bool_state(answer, f"{q.function}({q.holder})")
        freeze_readings.append(FreezeReading(q.token, q.holder, q.function, block.number, state, note))
    pause_readings = []
    for token, answer in zip(pauses, answers[len(freezes) : len(freezes) + len(pauses)], strict=True):
        state, note = _bool_state(answer, "paused()")
        pause_readings.append(PauseReading(_checksum(token), block.number, state, note))

    tokens = [_checksum(t) for t in implementations]
    storage_calls: list[tuple[Call, str]] = []
    for token in tokens:
        storage_calls.append(reader.storage(token, EIP1967_IMPLEMENTATION_SLOT, f"token {token}"))
        storage_calls.append(reader.storage(token, ZEPPELINOS_IMPLEMENTATION_SLOT, f"token {token}"))
    words = reader.batch(storage_calls, "the implementation slots")
    impls = [
        TokenImplementation(
            token=token,
            block_number=block.number,
            eip1967=_address_or_none(reader.word(words[2 * k], f"token {token}: EIP-1967 implementation")),
            zeppelinos=_address_or_none(reader.word(words[2 * k + 1], f"token {token}: ZeppelinOS implementation")),
        )
        for k, token in enumerate(tokens)
    ]
    return IssuerControls(
        block_number=block.number,
        freezes=tuple(freeze_readings),
        pauses=tuple(pause_readings),
        implementations=tuple(impls),
        frozen=tuple(frozen_readings),
    )
