"""Signed transfer instructions: the JSON-lines file, its EIP-712 signatures, and signing keys.

Invariants:
- An instruction authorizes nothing by being parsed or stored: it is valid only while
  ``verify`` finds at least its wallet's ``threshold`` signatures recovering to distinct
  addresses among the wallet's configured ``approvers``, and no bad signature (malformed,
  high-s, by a non-approver, or a second one by the same signer). ``partition_valid`` re-checks
  this every time instructions are used, so a row written into the database by other means
  authorizes nothing.
- A wallet without approvers, or with ``threshold = 0``, can authorize nothing: an outflow
  needs signed approval, and "zero signatures needed" would be no approval at all.
- A file is taken whole or not at all: ``parse_instructions``/``load_instructions`` raise
  ``InputError`` naming every bad line (``line N, field F: reason``) and return nothing.
- Expiry is not a property of the file: ``valid_until`` is judged against the outflow's block
  time when matching (reconciler.engine.surveillance), never at import.
- Keys come only from the caller (``load_key``: an environment variable or an encrypted
  keystore) and never appear in a message, a log line or an exception's cause.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.domain import MAX_NAME_LENGTH, UINT256_DIGITS, UINT256_MAX, AddressError, checksum_address
from reconciler.errors import ConfigError, InputError
from reconciler.inputs.settings import AssetSettings, ChainSettings, Settings, WalletSettings
from reconciler.transfers import ZERO_ADDRESS, Instruction, ValidInstruction

if TYPE_CHECKING:  # eth_account costs ~0.5 s to import: only the commands that sign or verify pay it
    from eth_account.messages import SignableMessage

MAX_ID_LENGTH = 200
MAX_SIGNATURES = 256  # per line; far above any sensible threshold, low enough to bound the work
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
FIELDS = ("id", "chain", "wallet", "asset", "to", "amount", "valid_until", "signatures")
REQUIRED_FIELDS = FIELDS[:-1]  # a line may come without signatures: `instructions sign` adds them
_DIGITS_RE = re.compile(r"[0-9]+")
_SIGNATURE_RE = re.compile(r"0x[0-9a-fA-F]{130}")
_KEY_RE = re.compile(r"(0x)?[0-9a-fA-F]{64}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
TRANSFER_INSTRUCTION_TYPE = [
    {"name": "id", "type": "string"},
    {"name": "wallet", "type": "address"},
    {"name": "asset", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "amount", "type": "uint256"},
    {"name": "validUntil", "type": "uint256"},
]


# --------------------------------------------------------------------------- parsing


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; a reviewer reading the first would be
    # signing or importing something else than they saw.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _shown(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


def _did_you_mean(value: str, known: Iterable[str]) -> str:
    names = list(known)
    # difflib is quadratic: no hint for a value longer than any configured name can be.
    hint = difflib.get_close_matches(value, names, n=1) if len(value) <= MAX_NAME_LENGTH else []
    if hint:
        return f"; did you mean {hint[0]!r}?"
    return f"; configured: {', '.join(names) or 'none'}"


def _parse_amount(value: str) -> int:
    if not _DIGITS_RE.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a whole number of base units (digits only, no sign or point)")
    if len(value) > UINT256_DIGITS:
        raise ValueError(f"{_shown(value)} has {len(value)} digits; a uint256 amount has at most {UINT256_DIGITS}")
    amount = int(value)
    if amount == 0:
        raise ValueError("is 0; an instruction moves a positive amount")
    if amount > UINT256_MAX:
        raise ValueError(f"{_shown(value)} is larger than a uint256 can hold")
    return amount


def _parse_instant(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{_shown(value)} is not an ISO 8601 instant like 2026-11-25T00:00:00Z or 2026-11-24T18:00:00-06:00"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(
            f"{_shown(value)} has no UTC offset; write the instant with one, like {value}Z or {value}-06:00"
        )
    if parsed.microsecond:
        raise ValueError(f"{_shown(value)} has fractions of a second; the signed validUntil is whole Unix seconds")
    if parsed < datetime(1970, 1, 1, tzinfo=UTC):
        raise ValueError(f"{_shown(value)} is before 1970; validUntil is Unix seconds")
    return parsed


def _nul_in(value: Any, where: str = "") -> str | None:
    """The field (``""``: the line itself) whose name or text holds a NUL, or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return where
            if (found := _nul_in(item, where or key)) is not None:
                return found
    if isinstance(value, list):
        for item in value:
            if (found := _nul_in(item, where)) is not None:
                return found
    return None


def _nul_field(raw: str) -> str | None:
    """Where a line with a raw NUL byte has it: the field, read leniently (None: the line does
    not parse even so; JSON's own error will say where)."""
    try:
        obj = json.loads(raw, strict=False)
    except ValueError:
        return ""
    return _nul_in(obj)


def _split_lines(text: str) -> list[str]:
    """The file's lines, split on newlines only (str.splitlines would also split on U+2028 and
    other separators that JSON allows inside a string, and shift every line number after)."""
    lines = [raw.removesuffix("\r") for raw in text.removeprefix("\ufeff").split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _parse_lines(
    text: str, settings: Settings, stored_ids: Set[str]
) -> tuple[list[tuple[Instruction, dict[str, Any]]], list[tuple[int, str]]]:
    """Every line that parses (with its JSON object, fields in order) and every problem."""
    parsed: list[tuple[Instruction, dict[str, Any]]] = []
    problems: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    for line, raw in enumerate(_split_lines(text), start=1):
        if not raw.strip():
            continue

        def bad(field: str | None, reason: str, line: int = line) -> None:
            problems.append((line, f"field {field}: {reason}" if field else reason))

        if "\x00" in raw and (where := _nul_field(raw)) is not None:
            # A NUL byte as it stands (JSON refuses it inside a string) or escaped as \u0000:
            # either way no instruction carries one (PostgreSQL could not store it).
            bad(where or None, "contains a NUL character" + ("" if where else f" (character {raw.index(chr(0)) + 1})"))
            continue
        try:
            obj = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
        except _DuplicateKey as exc:
            bad(None, f"field {str(exc)!r} appears twice; write each field once")
            continue
        except ValueError as exc:  # JSONDecodeError, or an integer past Python's digit limit
            bad(None, f"not a JSON object: {exc}")
            continue
        if not isinstance(obj, dict):
            bad(None, 'not a JSON object; each line is one instruction like {"id": "…", "chain": "…", …}')
            continue
        if (where := _nul_in(obj)) is not None:
            bad(where or None, "contains a NUL character")
            continue
        count = len(problems)
        for key in obj:
            if key not in FIELDS:
                hint = difflib.get_close_matches(key, FIELDS, n=1) if len(key) <= MAX_NAME_LENGTH else []
                extra = f"; did you mean {hint[0]!r}?" if hint else f"; the fields are {', '.join(FIELDS)}"
                bad(None, f"unknown field {_shown(key)}{extra}")
        for key in REQUIRED_FIELDS:
            if key not in obj:
                bad(key, "is missing")
            elif not isinstance(obj[key], str):
                bad(key, f"must be a JSON string, not {type(obj[key]).__name__}")
        strings = {k: obj[k] for k in REQUIRED_FIELDS if isinstance(obj.get(k), str)}

        instr_id = strings.get("id")
        if instr_id is not None:
            if not instr_id.strip():
                bad("id", "is empty")
            elif len(instr_id) > MAX_ID_LENGTH:
                bad("id", f"is {len(instr_id)} characters long; at most {MAX_ID_LENGTH} are allowed")
            elif instr_id != instr_id.strip() or not instr_id.isprintable():
                bad("id", f"{_shown(instr_id)} has leading or trailing spaces or control characters")
            elif instr_id in first_line:
                bad("id", f"{_shown(instr_id)} already appears on line {first_line[instr_id]}")
            elif instr_id in stored_ids:
                bad("id", f"{_shown(instr_id)} is already in the ledger; instruction ids are unique forever")
            else:
                first_line[instr_id] = line

        wallet: WalletSettings | None = None
        if (name := strings.get("wallet")) is not None:
            wallet = settings.wallets.get(name)
            if wallet is None:
                bad("wallet", f"{_shown(name)} is not a configured wallet{_did_you_mean(name, settings.wallets)}")

        if (chain := strings.get("chain")) is not None:
            if chain not in settings.chains:
                bad("chain", f"{_shown(chain)} is not a configured chain{_did_you_mean(chain, settings.chains)}")
            elif wallet is not None and wallet.chain != chain:
                bad("chain", f"{_shown(chain)}, but wallet {wallet.name} is on chain {wallet.chain}")

        asset: AssetSettings | None = None
        if (name := strings.get("asset")) is not None:
            asset = settings.assets.get(name)
            if asset is None:
                bad("asset", f"{_shown(name)} is not a configured asset{_did_you_mean(name, settings.assets)}")
            elif wallet is not None and asset.chain != wallet.chain:
                bad("asset", f"{asset.name} is on chain {asset.chain}, but wallet {wallet.name} is on {wallet.chain}")

        to: str | None = None
        if (value := strings.get("to")) is not None:
            try:
                to = checksum_address(value)
            except AddressError as exc:
                bad("to", str(exc))

        amount: int | None = None
        if (value := strings.get("amount")) is not None:
            try:
                amount = _parse_amount(value)
            except ValueError as exc:
                bad("amount", str(exc))

        valid_until: datetime | None = None
        if (value := strings.get("valid_until")) is not None:
            try:
                valid_until = _parse_instant(value)
            except ValueError as exc:
                bad("valid_until", str(exc))

        signatures: tuple[str, ...] = ()
        raw_sigs = obj.get("signatures", [])
        if not isinstance(raw_sigs, list) or not all(isinstance(s, str) for s in raw_sigs):
            bad("signatures", 'must be a JSON list of 0x-hex strings, like ["0x…", "0x…"]')
        elif len(raw_sigs) > MAX_SIGNATURES:
            bad("signatures", f"has {len(raw_sigs)} entries; at most {MAX_SIGNATURES} are allowed")
        else:
            signatures = tuple(raw_sigs)

        if (
            len(problems) > count
            or instr_id is None
            or wallet is None
            or asset is None
            or to is None
            or amount is None
            or valid_until is None
        ):
            continue
        instruction = Instruction(
            id=instr_id,
            chain=wallet.chain,
            wallet=wallet.name,
            asset=asset.name,
            to=to,
            amount=amount,
            valid_until=valid_until,
            signatures=signatures,
            line=line,
        )
        parsed.append((instruction, obj))
    return parsed, problems


def _lines(problems: Iterable[tuple[int, str]]) -> list[str]:
    """``line N, field F: reason`` or ``line N: reason``, by line (stable within a line)."""
    out = []
    for line, reason in sorted(problems, key=lambda p: p[0]):
        out.append(f"line {line}, {reason}" if reason.startswith("field ") else f"line {line}: {reason}")
    return out


def parse_instructions(
    text: str, source: str, settings: Settings, stored_ids: Set[str] = frozenset()
) -> list[Instruction]:
    """Every instruction of a JSON-lines file, in file order; blank lines are skipped.

    ``stored_ids`` holds the ids already in the ledger (ids are unique forever). Signatures are
    not checked here (``verify``/``load_instructions`` do), nor is expiry (matching does).
    Raises InputError listing every problem of every line.
    """
    parsed, problems = _parse_lines(text, settings, stored_ids)
    if problems:
        raise InputError(source, _lines(problems))
    return [instruction for instruction, _ in parsed]


def load_instructions(
    text: str, source: str, settings: Settings, stored_ids: Set[str] = frozenset()
) -> list[Instruction]:
    """``parse_instructions`` then ``verify`` on every line: what `instructions import` takes.

    One InputError carries the problems of both steps, by line, so one attempt shows them all.
    """
    parsed, problems = _parse_lines(text, settings, stored_ids)
    for instruction, _ in parsed:
        problems += [(instruction.line, p) for p in verify(instruction, settings)]
    if problems:
        raise InputError(source, _lines(problems))
    return [instruction for instruction, _ in parsed]


# --------------------------------------------------------------------------- EIP-712


def _context(instr: Instruction, settings: Settings) -> tuple[ChainSettings, WalletSettings, AssetSettings] | str:
    """The configured chain, wallet and asset of an instruction, or why there are none."""
    wallet = settings.wallets.get(instr.wallet)
    if wallet is None:
        return f"wallet {instr.wallet!r} is not configured"
    asset = settings.assets.get(instr.asset)
    if asset is None:
        return f"asset {instr.asset!r} is not configured"
    if instr.chain != wallet.chain or asset.chain != wallet.chain:
        return (
            f"chain {instr.chain!r}, wallet {wallet.name} (on {wallet.chain}) and asset {asset.name} "
            f"(on {asset.chain}) do not agree"
        )
    return settings.chains[wallet.chain], wallet, asset


def _typed_data(
    instr: Instruction, chain: ChainSettings, wallet: WalletSettings, asset: AssetSettings
) -> dict[str, Any]:
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "TransferInstruction": TRANSFER_INSTRUCTION_TYPE},
        "primaryType": "TransferInstruction",
        "domain": {
            "name": "reconciler",
            "version": "1",
            "chainId": chain.chain_id,
            "verifyingContract": wallet.address,
        },
        "message": {
            "id": instr.id,
            "wallet": wallet.address,
            "asset": asset.address if asset.address is not None else ZERO_ADDRESS,
            "to": instr.to,
            "amount": instr.amount,
            "validUntil": instr.valid_until_unix,
        },
    }


def typed_data(instr: Instruction, settings: Settings) -> dict[str, Any]:
    """The full EIP-712 message (types, primaryType, domain, message) an approver signs, as
    ``eth_signTypedData_v4`` takes it. Raises ConfigError if the wallet or asset is not
    configured on the instruction's chain."""
    context = _context(instr, settings)
    if isinstance(context, str):
        raise ConfigError(f"instruction {instr.id!r}: {context}")
    return _typed_data(instr, *context)


def _signable(instr: Instruction, settings: Settings) -> SignableMessage:
    from eth_account.messages import encode_typed_data

    return encode_typed_data(full_message=typed_data(instr, settings))


def sign(instr: Instruction, settings: Settings, key: bytes) -> str:
    """The key's signature of the instruction: 65 bytes ``r || s || v`` (v 27 or 28, low s),
    0x-hex."""
    from eth_account import Account

    signable = _signable(instr, settings)
    try:
        signed = Account.sign_message(signable, key)
    except Exception:  # whatever the library says might quote the key: say it ourselves
        raise ConfigError("the signing key is not a valid secp256k1 private key") from None
    return "0x" + bytes(signed.signature).hex()


def _recover(signable: SignableMessage, signature: str) -> tuple[str | None, str | None]:
    """(signer, None) or (None, why the signature is not acceptable)."""
    if not _SIGNATURE_RE.fullmatch(signature):
        return None, f"is not 65 bytes of 0x-hex (r || s || v): {_shown(signature, 20)}"
    raw = bytes.fromhex(signature[2:])
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    if v not in (27, 28):
        return None, f"has v = {v}; an EIP-712 signature has v 27 or 28"
    if not 0 < r < SECP256K1_N or not 0 < s < SECP256K1_N:
        return None, "is not a valid secp256k1 signature (r or s out of range)"
    if s > SECP256K1_N // 2:
        # (r, N - s) is the same signature made malleable; accept only the canonical low-s form.
        return None, "has a high s value (a malleable, non-canonical form); re-sign with a standard signer"
    from eth_account import Account
    from eth_keys.exceptions import BadSignature
    from eth_utils.exceptions import ValidationError

    try:
        signer = Account.recover_message(signable, vrs=(v, r, s))
    except (BadSignature, ValidationError, ValueError):
        return None, "recovers to no public key: it is not a signature"
    return str(signer), None


def recover_signers(instr: Instruction, settings: Settings) -> list[str | None]:
    """The EIP-55 address each signature recovers to, in order; None for a malformed or
    invalid one. Raises ConfigError if the wallet or asset is not configured."""
    signable = _signable(instr, settings)
    return [_recover(signable, sig)[0] for sig in instr.signatures]


def verify(
    instr: Instruction,
    settings: Settings,
    approvers: Sequence[str] | None = None,
    threshold: int | None = None,
) -> list[str]:
    """Why the instruction authorizes nothing; an empty list means it is valid.

    Valid: at least ``threshold`` signatures recovering to distinct addresses among
    ``approvers`` (by default the wallet's configured ones), and no bad signature at all —
    malformed, high-s, recovering to a non-approver, or a second signature by one signer each
    make it invalid, even when enough good ones remain. A wallet with no approvers or
    threshold 0 authorizes nothing. Signatures are numbered from 1. Expiry is not checked.
    """
    context = _context(instr, settings)
    if isinstance(context, str):
        return [context]
    _, wallet, _ = context
    approvers = wallet.approvers if approvers is None else tuple(approvers)
    threshold = wallet.threshold if threshold is None else threshold
    where = f"wallets.{wallet.name}"
    if not approvers or threshold < 1:
        return [f"{where} has no approvers: configure approvers and threshold (1 or more) to authorize its outflows"]
    allowed = {a.lower() for a in approvers}
    signable = _signable(instr, settings)
    problems: list[str] = []
    first: dict[str, int] = {}
    for index, signature in enumerate(instr.signatures, start=1):
        signer, why = _recover(signable, signature)
        if signer is None:
            problems.append(f"signature {index} {why}")
        elif signer.lower() not in allowed:
            problems.append(
                f"signature {index} recovers to {signer}, which is not an approver of {where} "
                "(signed by another key, or over different data)"
            )
        elif signer.lower() in first:
            problems.append(f"signature {index} is a second signature by {signer} (signature {first[signer.lower()]})")
        else:
            first[signer.lower()] = index
    if len(first) < threshold:
        problems.append(
            f"has {len(first)} valid approver signature(s); {where} needs {threshold} from distinct approvers"
        )
    return problems


def verify_file(instructions: Sequence[Instruction], settings: Settings, source: str = "instructions") -> None:
    """Raise InputError naming every line whose instruction ``verify`` refuses."""
    problems = [(i.line, p) for i in instructions for p in verify(i, settings)]
    if problems:
        raise InputError(source, _lines(problems))


def partition_valid(
    instructions: Iterable[Instruction], settings: Settings
) -> tuple[list[ValidInstruction], list[tuple[Instruction, list[str]]]]:
    """Re-check every instruction from its signatures at the moment of use: the valid ones,
    as the matching engine takes them, and the others with why."""
    valid: list[ValidInstruction] = []
    invalid: list[tuple[Instruction, list[str]]] = []
    for instr in instructions:
        problems = verify(instr, settings)
        if problems:
            invalid.append((instr, problems))
            continue
        valid.append(
            ValidInstruction(
                id=instr.id,
                chain=instr.chain,
                wallet=instr.wallet,
                asset=instr.asset,
                to=instr.to,
                amount=instr.amount,
                valid_until=instr.valid_until_unix,
            )
        )
    return valid, invalid


# --------------------------------------------------------------------------- signing files


@dataclass(frozen=True, slots=True)
class Signed:
    """What `sign_lines` did: the file with the signature added (JSON lines), whose key signed,
    how many instructions it signed now, and how many already carried its signature."""

    text: str
    address: str
    signed: int
    already: int
    wallets: tuple[str, ...]


def sign_file(text: str, source: str, settings: Settings, key: bytes) -> str:
    """The file with the key's signature added to every instruction, as JSON lines (`sign_lines`)."""
    return sign_lines(text, source, settings, key).text


def sign_lines(text: str, source: str, settings: Settings, key: bytes) -> Signed:
    """The file with the key's signature added to every instruction, as JSON lines.

    Lines keep their order, fields and blank lines (so line numbers stay the same); a line
    already signed by this key is left as it is. Refuses (InputError, "nothing was signed") a
    file that does not parse, and a line whose wallet does not list the key's address among its
    approvers.
    """
    address = _address_of(key)
    parsed, problems = _parse_lines(text, settings, frozenset())
    if problems:
        raise InputError(source, _lines(problems), undone="signed")
    by_line = {instruction.line: (instruction, obj) for instruction, obj in parsed}
    for instruction, _ in parsed:
        approvers = {a.lower() for a in settings.wallets[instruction.wallet].approvers}
        if address.lower() not in approvers:
            reason = f"the signing key's address {address} is not an approver of wallets.{instruction.wallet}"
            problems.append((instruction.line, reason))
    if problems:
        raise InputError(source, _lines(problems), undone="signed")
    out: list[str] = []
    signed = already = 0
    for line, raw in enumerate(_split_lines(text), start=1):
        if line not in by_line:
            out.append("")
            continue
        instruction, obj = by_line[line]
        signers = {s.lower() for s in recover_signers(instruction, settings) if s is not None}
        if address.lower() in signers:
            out.append(raw)  # already signed by this key: the line as it was
            already += 1
            continue
        obj = dict(obj)
        obj["signatures"] = [*instruction.signatures, sign(instruction, settings, key)]
        out.append(json.dumps(obj))
        signed += 1
    wallets = tuple(sorted({instruction.wallet for instruction, _ in parsed}))
    return Signed("".join(f"{line}\n" for line in out), address, signed, already, wallets)


def _address_of(key: bytes) -> str:
    try:
        from eth_account import Account

        return str(Account.from_key(key).address)
    except Exception:  # never let a library message quote the key
        raise ConfigError("the signing key is not a valid secp256k1 private key") from None


def load_key(
    key_env: str | None = None,
    keystore: str | Path | None = None,
    password_env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> bytes:
    """A signing key, from the environment variable ``key_env`` (64 hex digits, 0x optional)
    or from an encrypted JSON keystore (eth-account/geth "version 3") opened with the password
    in the environment variable ``password_env``. Raises ConfigError saying what to fix; no
    message ever contains the key or the password."""
    env = os.environ if environ is None else environ
    if (key_env is None) == (keystore is None):
        raise ConfigError("give the signing key either with --key-env VAR or with --keystore PATH --password-env VAR")
    if key_env is not None:
        if password_env is not None:
            raise ConfigError("--password-env goes with --keystore; a key from --key-env is not encrypted")
        _check_env_name("--key-env", key_env)
        value = env.get(key_env)
        if value is None or not value.strip():
            raise ConfigError(f"environment variable {key_env} (--key-env) is not set or empty")
        if not _KEY_RE.fullmatch(value.strip()):
            raise ConfigError(
                f"environment variable {key_env} does not hold a private key: "
                "expected 64 hex digits, optionally 0x-prefixed"
            )
        key = bytes.fromhex(value.strip().removeprefix("0x"))
    else:
        assert keystore is not None
        if password_env is None:
            raise ConfigError("--keystore needs --password-env VAR naming the variable that holds its password")
        _check_env_name("--password-env", password_env)
        password = env.get(password_env)
        if password is None:
            raise ConfigError(f"environment variable {password_env} (--password-env) is not set")
        path = Path(keystore)
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError(f"cannot read keystore {str(path)!r}: {reason}") from None
        try:
            document = json.loads(content)
        except ValueError:
            raise ConfigError(f"keystore {str(path)!r} is not JSON; give an encrypted keystore file") from None
        if not isinstance(document, dict) or "crypto" not in {k.lower() for k in document}:
            raise ConfigError(f"keystore {str(path)!r} is not an encrypted keystore (no 'crypto' section)")
        from eth_account import Account

        try:
            key = bytes(Account.decrypt(document, password))
        except Exception:  # MAC mismatch, unknown KDF, damaged fields: never echo what was inside
            raise ConfigError(
                f"cannot decrypt keystore {str(path)!r} with the password in {password_env}: "
                "wrong password, or a damaged or unsupported keystore"
            ) from None
    _address_of(key)
    return key


def _check_env_name(option: str, name: str) -> None:
    # Never echo the value: someone may have pasted the key itself where the name belongs.
    if not _ENV_NAME_RE.fullmatch(name):
        raise ConfigError(f"{option} takes the NAME of an environment variable (like SIGNER_KEY), not a value")
