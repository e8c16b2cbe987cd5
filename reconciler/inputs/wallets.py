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
import re
from collections.abc import Callable, Iterable, Iterator, Mapping

from reconciler.domain import MAX_NAME_LENGTH, WALLET_KINDS, SegClass, WalletRow, eip55
from reconciler.inputs.config import _NAME_RE
from reconciler.inputs.csvfile import _Problems, _records
from reconciler.inputs.settings import Fleet, Settings, WalletSettings

WALLET_COLUMNS = ("name", "chain", "address", "class")
WALLET_OPTIONAL = ("kind", "approvers", "threshold", "allowed_spenders")
WALLET_LIMITS = {"name": MAX_NAME_LENGTH, "address": 42, "kind": 16, "threshold": 10}
MAX_LISTED_PROBLEMS = 100
WALLETS_CHUNK_ROWS = 5_000
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_CLASSES = tuple(c.value for c in SegClass)
_Bad = Callable[[str], None]


def configured_wallets(settings: Settings) -> Mapping[str, WalletSettings]:
    """The configuration file's own wallets, without those imported into the ledger."""
    wallets = settings.wallets
    return wallets.configured if isinstance(wallets, Fleet) else wallets


class WalletStream:
    """A wallets file read line by line: its valid rows chunk by chunk (each with its line), in
    file order, so that memory stays bounded however many wallets the file holds. ``problems``
    collects what is wrong with every line; the ledger adds what it finds (a name or an address
    seen before, in the file or the ledger) through ``add``. A file is good only once
    ``chunks()`` is exhausted with no problem (``check()`` raises otherwise)."""

    def __init__(
        self, lines: str | Iterable[str], source: str, settings: Settings, chunk_rows: int = WALLETS_CHUNK_ROWS
    ) -> None:
        self._lines = lines
        self.source = source
        self._settings = settings
        self._chunk_rows = chunk_rows
        self.problems = _Problems(MAX_LISTED_PROBLEMS)

    @property
    def ok(self) -> bool:
        return self.problems.count == 0

    def add(self, line: int, column: str | None, reason: str) -> None:
        self.problems.add(line, column, reason)

    def check(self) -> None:
        if not self.ok:
            raise self.problems.error(self.source)

    def chunks(self) -> Iterator[list[tuple[int, WalletRow]]]:
        settings = self._settings
        configured = configured_wallets(settings)
        configured_at = {(w.chain, w.address): w.name for w in configured.values()}
        chunk: list[tuple[int, WalletRow]] = []
        records = _records(self._lines, self.source, WALLET_COLUMNS, WALLET_OPTIONAL, self.problems, WALLET_LIMITS)
        for line, rec in records:
            row = self._check(line, rec, configured, configured_at)
            if row is not None:
                chunk.append((line, row))
                if len(chunk) >= self._chunk_rows:
                    yield chunk
                    chunk = []
        yield chunk

    def _check(
        self,
        line: int,
        rec: Mapping[str, str],
        configured: Mapping[str, WalletSettings],
        configured_at: Mapping[tuple[str, str], str],
    ) -> WalletRow | None:
        settings = self._settings
        ok = True

        def bad(column: str, reason: str) -> None:
            nonlocal ok
            self.problems.add(line, column, reason)
            ok = False

        name = rec["name"]
        if not _NAME_RE.fullmatch(name):
            bad(
                "name",
                f"{name!r} is not a wallet name: letters, digits, '_', '-' and '.', starting with a letter or digit",
            )
        elif name in configured:
            bad("name", f"{name!r} is configured in {settings.path.name} ([wallets.{name}]); a wallet is defined once")
        chain = rec["chain"]
        if chain not in settings.chains:
            hint = difflib.get_close_matches(chain, list(settings.chains), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else f"; configured: {', '.join(settings.chains)}"
            bad("chain", f"{chain!r} names no [chains.{chain}]{extra}")
        address = _address(rec["address"], lambda reason: bad("address", reason))
        if address is not None and (chain, address) in configured_at:
            bad("address", f"{address} on chain {chain} is configured as [wallets.{configured_at[chain, address]}]")
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
        if not ok or address is None or approvers is None or spenders is None:
            return None
        return WalletRow(name, chain, address, seg_class, kind, approvers, threshold, spenders)


def _address(text: str, bad: _Bad) -> str | None:
    """``text`` if it is an EIP-55 address (else None, said through ``bad``), checked without
    the process-wide cache of checksums: a file of a million addresses meets each once, and
    would only fill the cache."""
    if not _ADDRESS_RE.fullmatch(text):
        bad(f"{text!r} is not a 20-byte hex address (0x followed by 40 hex digits)")
        return None
    expected = eip55.__wrapped__(text)
    if expected != text:
        bad(f"{text!r} is not EIP-55 checksummed; the checksummed form is {expected}")
        return None
    return text


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
