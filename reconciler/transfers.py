"""Value types of transfer surveillance (pure: standard library only).

Invariants: an observation is what the chain showed at one block of one branch — kept with the
block's number and hash, the transaction hash and its position in the block (a log index, or a
position in the call trace for native value) — and is identified by (chain, block hash, tx
hash, position), so observing the same block twice yields the same observations; amounts are
integers in base units; addresses are EIP-55; hashes are lowercase 0x hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


class MovementKind(StrEnum):
    TOKEN = "token"  # an ERC-20 Transfer log
    APPROVAL = "approval"  # an ERC-20 Approval log (owner -> spender, allowance set to amount)
    NATIVE = "native"  # native coin moved: a transaction's value or an internal call's value
    FEE = "fee"  # gas a wallet paid for its own transaction: a cost, not a transfer


class Initiator(StrEnum):
    """Who moved a token transfer's tokens, as the transaction's calls show it (reconciler.engine
    .initiators): the holder the tokens left, itself; another account through its allowance; or
    the token's issuer (an ERC-3643 agent function: forced transfer, recovery, mint, burn)."""

    WALLET = "wallet"
    SPENDER = "spender"
    ISSUER = "issuer"


class ObservationStatus(StrEnum):
    OBSERVED = "observed"
    REORGED = "reorged"  # its block left the canonical chain; kept as evidence


@dataclass(frozen=True, slots=True)
class Observation:
    """One movement the chain showed. For TOKEN/APPROVAL ``token`` is the token contract and
    ``log_index`` is set; for NATIVE/FEE ``token`` is None and ``trace_position`` is set: "" for
    the transaction's own value, "0.2.1" for the call at that path of the call tree, "fee" for
    the gas the sender paid (a FEE's ``to_address`` is the zero address: burned or paid to the
    block producer).

    ``initiator`` and ``function`` say who moved a TOKEN observation's tokens and, for the
    issuer, by which function (``forcedTransfer``, ``recoveryAddress``, ``mint``…); both None
    where that could not be told with certainty. ``agent`` (the account that called the token)
    and ``sender`` (the transaction's sender) are evidence for the finding of the run that
    classified it; they are not stored."""

    chain: str
    block_number: int
    block_hash: str
    block_time: int  # Unix seconds of the block
    tx_hash: str
    kind: MovementKind
    token: str | None
    from_address: str
    to_address: str
    amount: int
    log_index: int | None = None
    trace_position: str | None = None
    initiator: Initiator | None = None
    function: str | None = None
    agent: str | None = None
    sender: str | None = None

    @property
    def position(self) -> str:
        """Its place in the transaction: ``log:N`` or ``trace:PATH``."""
        if self.log_index is not None:
            return f"log:{self.log_index}"
        return f"trace:{self.trace_position or ''}"

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return (self.chain, self.block_hash, self.tx_hash, self.position)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far a chain's movements have been observed: every block up to and including this one."""

    chain: str
    block_number: int
    block_hash: str


class Direction(StrEnum):
    """How a movement touches one custody wallet."""

    IN = "in"  # value or tokens arrived
    OUT = "out"  # value or tokens left: needs a signed instruction
    APPROVAL = "approval"  # the wallet set an allowance for a spender
    FEE = "fee"  # gas the wallet paid: a cost, never matched to an instruction


@dataclass(frozen=True, slots=True)
class Instruction:
    """One line of an instruction file (or a stored row: ``line`` 0), as written; not yet
    known to be valid. ``valid_until`` is timezone-aware and whole seconds."""

    id: str
    chain: str
    wallet: str
    asset: str
    to: str
    amount: int
    valid_until: datetime
    signatures: tuple[str, ...]
    line: int = 0

    @property
    def valid_until_unix(self) -> int:
        """``validUntil`` as signed: Unix seconds."""
        return int(self.valid_until.timestamp())


@dataclass(frozen=True, slots=True)
class ValidInstruction:
    """A transfer instruction whose signatures were verified against its wallet's approvers
    (reconciler.inputs.instructions.partition_valid) just before use: the only thing that
    authorizes an outflow. ``valid_until`` is Unix seconds, as signed; ``to`` is EIP-55."""

    id: str
    chain: str
    wallet: str
    asset: str
    to: str
    amount: int
    valid_until: int
