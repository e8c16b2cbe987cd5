"""Wallets in the ledger: `wallets import` and `wallets list`, and the one place where the
configured and the imported wallets become one set.

Invariants: every command that takes its settings from the command line (and the daemon) sees
``Settings.wallets`` as a ``Fleet``: the configuration's [wallets.X] and the wallets imported
into the ledger, read when first needed and again when an import changed them. A name, and a
(chain, address), belongs to one wallet across both sources: an import that would break that is
refused naming its line, and a configuration edited to break it afterwards is refused by every
command that reads the imported wallets, naming the wallet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from reconciler.domain import WalletRow
from reconciler.errors import ConfigError
from reconciler.inputs.csvfile import file_lines, file_sha256
from reconciler.inputs.settings import NO_IMPORTED, Fleet, ImportedWallets, Settings, WalletSettings
from reconciler.inputs.wallets import WalletStream, configured_wallets

if TYPE_CHECKING:
    from reconciler.ledger.store import Ledger


def with_ledger_wallets(settings: Settings) -> Settings:
    """``settings`` whose wallets are the configured ones and those imported into its ledger
    (read from the database when first asked for; none while the ledger has no such table or,
    for SQLite, does not exist)."""
    if isinstance(settings.wallets, Fleet):
        return settings
    return dataclasses.replace(
        settings,
        wallets=Fleet(settings.wallets, load=lambda: load_imported(settings), stamp=lambda: _stamp(settings)),
    )


def refresh(settings: Settings) -> None:
    """Read the imported wallets again if an import changed them (a daemon's next job)."""
    if isinstance(settings.wallets, Fleet):
        settings.wallets.refresh()


def _open(settings: Settings) -> Ledger | None:
    from reconciler.ledger.store import Ledger

    ledger = Ledger(settings.database_url)
    if ledger.holds_imported_wallets():
        return ledger
    ledger.close()
    return None


def _stamp(settings: Settings) -> object:
    ledger = _open(settings)
    if ledger is None:
        return None
    try:
        return ledger.imported_wallets_stamp()
    finally:
        ledger.close()


def load_imported(settings: Settings) -> ImportedWallets:
    """Every wallet imported into the ledger of ``settings``, packed, checked against the
    configuration as it is now."""
    ledger = _open(settings)
    if ledger is None:
        return NO_IMPORTED
    try:
        return ImportedWallets(_checked(ledger.imported_wallets(), settings), list(settings.chains))
    finally:
        ledger.close()


def _checked(rows: Iterable[WalletRow], settings: Settings) -> Iterator[WalletRow]:
    configured = configured_wallets(settings)
    addresses = {(w.chain, w.address): w.name for w in configured.values()}
    config = settings.path.name
    for row in rows:
        if row.name in configured:
            raise ConfigError(
                f"wallets.{row.name} in {config} is also a wallet imported into the ledger (`reconciler wallets "
                f"list` shows it): a wallet is defined once; remove [wallets.{row.name}] from {config}"
            )
        if row.chain not in settings.chains:
            raise ConfigError(
                f"the imported wallet {row.name!r} is on chain {row.chain!r}, which {config} no longer configures: "
                f"add [chains.{row.chain}] back"
            )
        if (row.chain, row.address) in addresses:
            raise ConfigError(
                f"wallets.{addresses[row.chain, row.address]} in {config} has the address of the imported wallet "
                f"{row.name!r} ({row.address} on {row.chain}): a wallet is defined once; remove one"
            )
        yield row


@dataclass(frozen=True, slots=True)
class WalletsImport:
    sha256: str
    added: int
    unchanged: int
    earlier: datetime | None  # the same bytes were imported then: nothing was done


def import_wallets(settings: Settings, ledger: Ledger, path: Path) -> WalletsImport:
    """A wallets file, all rows or none, read as it is imported (memory stays bounded however
    many wallets it holds). The same bytes again are a no-op; another file may repeat wallets
    the ledger holds identically (they are kept as they are) and add new ones; a row that would
    change a stored wallet is refused, naming its line."""
    sha256 = file_sha256(path)
    earlier = ledger.import_of("wallets", sha256)
    if earlier is not None:
        return WalletsImport(sha256, 0, 0, earlier)
    stream = WalletStream(file_lines(path, sha256), str(path), settings)
    added, unchanged = ledger.import_wallets(stream, str(path), sha256)
    return WalletsImport(sha256, added, unchanged, None)


def wallet_doc(wallet: WalletSettings, source: str) -> dict[str, Any]:
    """One wallet of `wallets list --json`."""
    return {
        "name": wallet.name,
        "chain": wallet.chain,
        "address": wallet.address,
        "class": wallet.seg_class.value,
        "kind": wallet.kind or None,
        "approvers": list(wallet.approvers),
        "threshold": wallet.threshold,
        "allowed_spenders": list(wallet.allowed_spenders),
        "source": source,
    }


class Listed(Sequence[tuple[WalletSettings, str]]):
    """Every wallet with its source ("config" or "ledger"): the configured ones first, in file
    order, then the imported ones by name, each made when it is read (a million imported
    wallets are never a million objects at once)."""

    def __init__(self, settings: Settings) -> None:
        wallets = settings.wallets
        self._configured = list(wallets.configured.values() if isinstance(wallets, Fleet) else wallets.values())
        self._imported = wallets.imported if isinstance(wallets, Fleet) else NO_IMPORTED

    def __len__(self) -> int:
        return len(self._configured) + len(self._imported)

    @overload
    def __getitem__(self, index: int) -> tuple[WalletSettings, str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[WalletSettings, str]]: ...
    def __getitem__(self, index: int | slice) -> tuple[WalletSettings, str] | list[tuple[WalletSettings, str]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        n = len(self._configured)
        if index < n:
            return self._configured[index], "config"
        return self._imported.wallet(index - n), "ledger"
