"""The wallets CSV file (`wallets import`), parsed and validated before anything touches the
ledger: ``name,chain,address,class`` and optionally ``kind,approvers,threshold,allowed_spenders``
(the lists ``;``-separated).

Invariant: a file yields rows only when every line is valid; otherwise InputError lists each
problem as ``line N, column C: reason`` (the first MAX_LISTED_PROBLEMS, the rest counted) and
the caller writes nothing. A wallet is checked as the configuration checks a [wallets.X] table
(the same name rule, EIP-55 addresses, a known chain and class, a threshold the approvers can
meet), and its name and its (chain, address) must be new to the file and to the configuration.
What the ledger already holds is checked by the ledger, inside the import's transaction.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping

from reconciler.domain import MAX_NAME_LENGTH, WALLET_KINDS, AddressError, SegClass, WalletRow, checksum_address
from reconciler.inputs.config import _NAME_RE
from reconciler.inputs.csvfile import _Problems, _records
from reconciler.inputs.settings import Fleet, Settings, WalletSettings

WALLET_COLUMNS = ("name", "chain", "address", "class")
WALLET_OPTIONAL = ("kind", "approvers", "threshold", "allowed_spenders")
WALLET_LIMITS = {"name": MAX_NAME_LENGTH, "address": 42, "kind": 16, "threshold": 10}
MAX_LISTED_PROBLEMS = 100
_CLASSES = tuple(c.value for c in SegClass)
_Bad = Callable[[str], None]


def configured_wallets(settings: Settings) -> Mapping[str, WalletSettings]:
    """The configuration file's own wallets, without those imported into the ledger."""
    wallets = settings.wallets
    return wallets.configured if isinstance(wallets, Fleet) else wallets


def parse_wallets_csv(text: str | Iterable[str], source: str, settings: Settings) -> list[tuple[int, WalletRow]]:
    """Every row of a wallets file with its line, or InputError naming every bad line."""
    problems = _Problems(MAX_LISTED_PROBLEMS)
    configured = configured_wallets(settings)
    configured_at = {(w.chain, w.address): w.name for w in configured.values()}
    first_name: dict[str, int] = {}
    first_address: dict[tuple[str, str], int] = {}
    rows: list[tuple[int, WalletRow]] = []
    for line, rec in _records(text, source, WALLET_COLUMNS, WALLET_OPTIONAL, problems, WALLET_LIMITS):
        ok = True

        def bad(column: str, reason: str) -> None:
            nonlocal ok
            problems.add(line, column, reason)  # noqa: B023 - used within this iteration only
            ok = False

        name = rec["name"]
        if not _NAME_RE.fullmatch(name):
            bad(
                "name",
                f"{name!r} is not a wallet name: letters, digits, '_', '-' and '.', starting with a letter or digit",
            )
        elif name in configured:
            bad("name", f"{name!r} is configured in {settings.path.name} ([wallets.{name}]); a wallet is defined once")
        elif name in first_name:
            bad("name", f"{name!r} already appears on line {first_name[name]}")
        else:
            first_name[name] = line
        chain = rec["chain"]
        if chain not in settings.chains:
            hint = difflib.get_close_matches(chain, list(settings.chains), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else f"; configured: {', '.join(settings.chains)}"
            bad("chain", f"{chain!r} names no [chains.{chain}]{extra}")
        address = _address(rec["address"], lambda reason: bad("address", reason))
        if address is not None and chain in settings.chains:
            where = (chain, address)
            if where in configured_at:
                bad("address", f"{address} on chain {chain} is configured as [wallets.{configured_at[where]}]")
            elif where in first_address:
                bad("address", f"{address} on chain {chain} already appears on line {first_address[where]}")
            else:
                first_address[where] = line
        seg_class = rec["class"]
        if seg_class not in _CLASSES:
            bad("class", f"{seg_class!r} is not one of {', '.join(_CLASSES)}")
        kind = rec.get("kind", "")
        if kind and kind not in WALLET_KINDS:
            bad("kind", f"{kind!r} is not one of {', '.join(WALLET_KINDS)} (or empty)")
        approvers = _addresses(rec.get("approvers", ""), lambda reason: bad("approvers", reason))
        spenders = _addresses(rec.get("allowed_spenders", ""), lambda reason: bad("allowed_spenders", reason))
        threshold = 0
        text_threshold = rec.get("threshold", "")
        if text_threshold:
            if not (text_threshold.isascii() and text_threshold.isdigit()):
                bad("threshold", f"{text_threshold!r} is not a whole number of signatures")
            else:
                threshold = int(text_threshold)
                if approvers is not None and threshold > len(approvers):
                    bad("threshold", f"{threshold} exceeds the {len(approvers)} approver(s) listed")
        if ok and address is not None and approvers is not None and spenders is not None:
            rows.append((line, WalletRow(name, chain, address, seg_class, kind, approvers, threshold, spenders)))
    if problems.count:
        raise problems.error(source)
    return rows


def _address(text: str, bad: _Bad) -> str | None:
    try:
        return checksum_address(text)
    except AddressError as exc:
        bad(str(exc))
        return None


def _addresses(text: str, bad: _Bad) -> tuple[str, ...] | None:
    """A ';'-separated list of EIP-55 addresses ("" is none)."""
    if not text:
        return ()
    out: list[str] = []
    for n, part in enumerate(text.split(";"), start=1):

        def said(reason: str, n: int = n) -> None:
            bad(f"entry {n}: {reason}")

        address = _address(part, said)
        if address is None:
            return None
        if address in out:
            bad(f"entry {n}: {address} is listed twice")
            return None
        out.append(address)
    return tuple(out)
