"""The configuration's values: frozen settings dataclasses, as reconciler.inputs.config
validates them from TOML.

Invariant: pure values (standard library and the domain's types only); the engine reads them as
its inputs, so nothing here parses, reads a file or an environment variable.
"""

from __future__ import annotations

import itertools
import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import overload

from reconciler.domain import WALLET_KINDS, AssetKind, SegClass, Severity, WalletRow

CANONICAL_MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
DEFAULT_PRICE_MAX_AGE = timedelta(hours=24)
DEFAULT_INFLOW_GRACE = timedelta(hours=24)
DEFAULT_LOCK_TIMEOUT = timedelta(minutes=5)  # how long a run waits for another to release the ledger
# The fee a custody wallet may pay for one transaction before the whole fee is an unauthorized
# outflow ([surveillance] max_fee): 0.05 of the native coin, in base units (18 decimals).
DEFAULT_MAX_FEE = 5 * 10**16
DEFAULT_WATCH_POLL = timedelta(seconds=1)
DEFAULT_WATCH_MAX_LAG = timedelta(minutes=2)
ERC3643 = "erc3643"  # a permissioned fund token (T-REX): its issuer can freeze, pause and force transfers
ISSUER_STANDARDS = ("none", ERC3643)
# `health` fails when an alert has waited longer than this for delivery ([alerts] max_pending_age).
DEFAULT_ALERT_MAX_PENDING_AGE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ChainSettings:
    name: str
    kind: str
    rpc_urls: tuple[str, ...]
    chain_id: int
    confirmations: int = 0
    multicall3: str = CANONICAL_MULTICALL3
    read_path: str | None = None
    rpc_retries: int = 2
    cross_check: bool = False
    start_block: int | None = None  # None: the first baseline's or run's pin
    rpc_timeout: float = 10.0
    chunk_size: int = 500
    log_chunk_blocks: int = 2000
    explorer_url: str | None = None  # block explorer for links in reports: {url}/block/N, /tx/H, /address/A
    ws_url: str | None = None  # eth_subscribe to newHeads for [watch] (polling stays on as the fallback)
    max_fee: int | None = None  # base units; None: [surveillance] max_fee


@dataclass(frozen=True, slots=True)
class AssetSettings:
    name: str
    chain: str
    decimals: int
    kind: AssetKind
    address: str | None = None
    native: bool = False
    price_usd: Decimal | None = None
    price_feed: str | None = None
    price_max_age: timedelta = DEFAULT_PRICE_MAX_AGE
    haircut: Decimal | None = None
    dco_haircuts: tuple[Decimal, ...] = ()
    tolerance: int = 0
    issuer: str = ""
    fund_family: str = ""
    government_fund: bool = False
    freeze_check: str | None = None  # a `(address) returns (bool)` view, e.g. "isBlacklisted"
    pause_check: bool = False
    issuer_standard: str = "none"  # "erc3643": a permissioned fund token whose issuer can freeze and force

    @property
    def erc3643(self) -> bool:
        return self.issuer_standard == ERC3643


@dataclass(frozen=True, slots=True)
class WalletSettings:
    name: str
    chain: str
    address: str
    seg_class: SegClass
    custodian: str = ""
    approvers: tuple[str, ...] = ()
    threshold: int = 0
    allowed_spenders: tuple[str, ...] = ()
    kind: str = ""  # declared in a wallets import: safe | eoa | contract; "" when not declared


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str
    secret_env: str | None = None
    min_severity: Severity = Severity.ERROR


@dataclass(frozen=True, slots=True)
class SegregationSettings:
    haircut_floor: Decimal = Decimal("0.20")
    timezone: str = "UTC"
    targets: Mapping[SegClass, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SurveillanceSettings:
    inflow_grace: timedelta = DEFAULT_INFLOW_GRACE
    max_fee: int = DEFAULT_MAX_FEE  # base units of the native coin


@dataclass(frozen=True, slots=True)
class PresignSettings:
    """DELEGATECALL targets a custody wallet may run (EIP-55): used by presign and by the
    execution checks of surveillance alike."""

    delegatecall_allowlist: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """[watch]: the daemon follows each chain's head between its scheduled jobs."""

    enabled: bool = False
    poll_interval: timedelta = DEFAULT_WATCH_POLL
    max_lag: timedelta = DEFAULT_WATCH_MAX_LAG


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """[audit]: the environment variable holding the key every trail record is MACed with."""

    key_env: str | None = None


DEFAULT_UNIT_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """Each job's trigger as written: a 5-field cron expression or an interval ("30s");
    `schedule_interval` tells them apart."""

    timezone: str = "UTC"
    run: str | None = None
    scan: str | None = None
    segregation_statement: str | None = None
    shards: int = 1  # (chain, shard) units a scheduled firing is split into
    # A unit held longer than this by a live daemon (hung: its heartbeat goes on, its reads do
    # not) is claimed again; the late result of the first claim is fenced off.
    unit_timeout: timedelta = DEFAULT_UNIT_TIMEOUT


@dataclass(frozen=True, slots=True)
class Settings:
    path: Path
    database_url: str
    chains: Mapping[str, ChainSettings]
    assets: Mapping[str, AssetSettings]
    wallets: Mapping[str, WalletSettings]
    segregation: SegregationSettings = field(default_factory=SegregationSettings)
    surveillance: SurveillanceSettings = field(default_factory=SurveillanceSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    webhooks: tuple[WebhookSettings, ...] = ()
    alert_max_pending_age: timedelta = DEFAULT_ALERT_MAX_PENDING_AGE  # [alerts] max_pending_age
    metrics_listen: str | None = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT.total_seconds()  # [database] lock_timeout, in seconds
    presign: PresignSettings = field(default_factory=PresignSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)

    def max_fee(self, chain: str) -> int:
        """The fee ceiling of ``chain`` in base units: its own, else [surveillance] max_fee."""
        own = self.chains[chain].max_fee
        return own if own is not None else self.surveillance.max_fee

    def assets_on(self, chain: str) -> list[AssetSettings]:
        return [a for a in self.assets.values() if a.chain == chain]

    def wallets_on(self, chain: str) -> list[WalletSettings]:
        if isinstance(self.wallets, Fleet):
            return self.wallets.on_chain(chain)
        return [w for w in self.wallets.values() if w.chain == chain]

    def names_on(self, chain: str) -> ChainNames:
        """The names of ``chain``'s wallets, as a container (no set of a fleet's names)."""
        return ChainNames(self, chain)

    def addresses_on(self, chain: str) -> ChainAddresses:
        """The addresses of ``chain``'s wallets, made only if read (a scan of new blocks)."""
        return ChainAddresses(self, chain)

    def ordered(self, wallets: Iterable[WalletSettings]) -> list[WalletSettings]:
        """``wallets`` in the order ``wallets_on`` lists them (configured first, in file order,
        then imported ones by name)."""
        if isinstance(self.wallets, Fleet):
            fleet = self.wallets
            configured = {name: i for i, name in enumerate(fleet.configured)}
            return sorted(
                wallets, key=lambda w: (0, configured[w.name], "") if w.name in configured else (1, 0, w.name)
            )
        position = {name: i for i, name in enumerate(self.wallets)}
        return sorted(wallets, key=lambda w: position[w.name])

    def wallets_with_approvers(self, chain: str) -> list[WalletSettings]:
        """The wallets of ``chain`` that name approvers (few: Safes), without making every
        wallet's settings of a fleet of imported ones."""
        if isinstance(self.wallets, Fleet):
            return self.wallets.with_approvers(chain)
        return [w for w in self.wallets.values() if w.chain == chain and w.approvers]

    def chain_finder(self) -> Callable[[str], str | None]:
        """A wallet's chain by its name (None: no such wallet); for a fleet of imported
        wallets, cheapest when asked in sorted order (names are walked, not searched)."""
        if isinstance(self.wallets, Fleet):
            return self.wallets.chain_finder()
        wallets = self.wallets

        def find(name: str) -> str | None:
            wallet = wallets.get(name)
            return wallet.chain if wallet is not None else None

        return find

    def wallet_chunks(
        self, chain: str, size: int, pick: Callable[[int], bool] | None = None
    ) -> Iterator[list[WalletSettings]]:
        """``wallets_on(chain)`` in slices of ``size``, each made only when it is reached: a
        run reads a fleet chunk by chunk and never holds every wallet's settings at once.
        With ``pick``, only the slices whose number (from 0) it accepts (the others are
        skipped without being made)."""
        if isinstance(self.wallets, Fleet):
            yield from self.wallets.chunks_on(chain, size, pick)
            return
        wallets = self.wallets_on(chain)
        for n, start in enumerate(range(0, len(wallets), size)):
            if pick is None or pick(n):
                yield wallets[start : start + size]

    def count_on(self, chain: str) -> int:
        """How many wallets ``chain`` has."""
        if isinstance(self.wallets, Fleet):
            return self.wallets.count_on(chain)
        return sum(1 for w in self.wallets.values() if w.chain == chain)

    def wallet_by_address(self, chain: str, address: str) -> WalletSettings | None:
        if isinstance(self.wallets, Fleet):
            return self.wallets.by_address(chain, address)
        for wallet in self.wallets.values():
            if wallet.chain == chain and wallet.address == address:
                return wallet
        return None


class ChainNames(Collection[str]):
    """The names of one chain's wallets: membership by lookup, iteration made as it goes."""

    def __init__(self, settings: Settings, chain: str) -> None:
        self._settings, self._chain = settings, chain

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        wallet = self._settings.wallets.get(name)
        return wallet is not None and wallet.chain == self._chain

    def __iter__(self) -> Iterator[str]:
        for part in self._settings.wallet_chunks(self._chain, 10_000):
            yield from (w.name for w in part)

    def __len__(self) -> int:
        wallets = self._settings.wallets
        if isinstance(wallets, Fleet):
            return wallets.count_on(self._chain)
        return sum(1 for w in wallets.values() if w.chain == self._chain)


class ChainAddresses(Sequence[str]):
    """The addresses of one chain's wallets, in ``wallets_on`` order: counted without being
    made, made (once) when first read."""

    def __init__(self, settings: Settings, chain: str) -> None:
        self._settings, self._chain = settings, chain
        self._made: list[str] | None = None

    def _all(self) -> list[str]:
        if self._made is None:
            self._made = [w.address for part in self._settings.wallet_chunks(self._chain, 10_000) for w in part]
        return self._made

    def __len__(self) -> int:
        return len(self._settings.names_on(self._chain)) if self._made is None else len(self._made)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._all()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())


# ----------------------------------------------------------------------------- the fleet


def shown_names(wallets: Mapping[str, WalletSettings], limit: int = 20) -> str:
    """The wallets' names for a message: the first ``limit``, then how many more (a fleet of a
    million imported wallets must not become a million names in one error)."""
    names: list[str] = []
    for name in wallets:
        if len(names) == limit:
            return ", ".join(names) + f", … and {len(wallets) - limit:,} more (`reconciler wallets list`)"
        names.append(name)
    return ", ".join(names)

_CLASSES = tuple(SegClass)
_KINDS = ("", *WALLET_KINDS)


class ImportedWallets:
    """The wallets imported into the ledger, packed: a million of them take tens of megabytes
    (names in one string, addresses in one byte string, chain, class and kind one byte each;
    approvers, threshold and allowed spenders only where a wallet has them), not the gigabyte
    that a million WalletSettings objects in a dict would. A WalletSettings is made when one is
    asked for. ``rows`` must come in name order (codepoint order), each name once, each chain
    one of ``chains``."""

    __slots__ = (
        "_addresses",
        "_by_address",
        "_chains",
        "_chains_of",
        "_classes",
        "_extras",
        "_kinds",
        "_names",
        "_offsets",
    )

    def __init__(self, rows: Iterable[WalletRow], chains: Sequence[str]) -> None:
        self._chains = tuple(chains)
        chain_index = {c: i for i, c in enumerate(self._chains)}
        class_index = {c.value: i for i, c in enumerate(_CLASSES)}
        kind_index = {k: i for i, k in enumerate(_KINDS)}
        names: list[str] = []
        self._offsets = array("Q", [0])
        addresses = bytearray()
        self._chains_of = bytearray()
        self._classes = bytearray()
        self._kinds = bytearray()
        self._extras: dict[int, tuple[tuple[str, ...], int, tuple[str, ...]]] = {}
        size = 0
        pending: list[str] = []
        for i, row in enumerate(rows):
            pending.append(row.name)
            size += len(row.name)
            self._offsets.append(size)
            addresses += row.address[2:].encode("ascii")
            self._chains_of.append(chain_index[row.chain])
            self._classes.append(class_index[row.seg_class])
            self._kinds.append(kind_index[row.kind])
            if row.approvers or row.threshold or row.allowed_spenders:
                self._extras[i] = (row.approvers, row.threshold, row.allowed_spenders)
            if len(pending) >= 10_000:  # joined as it goes: never a list of a million names
                names.append("".join(pending))
                pending.clear()
        names.append("".join(pending))
        self._names = "".join(names)
        self._addresses = addresses  # not copied to bytes: 40 MB more at the peak of a million
        self._by_address: dict[int, array[int]] | None = None  # per chain, row numbers by address

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def name(self, i: int) -> str:
        return self._names[self._offsets[i] : self._offsets[i + 1]]

    def index(self, name: str) -> int | None:
        """The row number of ``name``, or None (a binary search over the packed names)."""
        n = len(self)
        i = bisect_left(range(n), name, key=self.name)
        return i if i < n and self.name(i) == name else None

    def address(self, i: int) -> str:
        return "0x" + self._addresses[40 * i : 40 * i + 40].decode("ascii")

    def chain(self, i: int) -> str:
        return self._chains[self._chains_of[i]]

    def wallet(self, i: int) -> WalletSettings:
        approvers, threshold, spenders = self._extras.get(i, ((), 0, ()))
        return WalletSettings(
            name=self.name(i),
            chain=self.chain(i),
            address=self.address(i),
            seg_class=_CLASSES[self._classes[i]],
            approvers=approvers,
            threshold=threshold,
            allowed_spenders=spenders,
            kind=_KINDS[self._kinds[i]],
        )

    def count_on(self, chain: str) -> int:
        if chain not in self._chains:
            return 0
        return self._chains_of.count(self._chains.index(chain))

    def with_extras(self) -> list[int]:
        """The rows that name approvers, a threshold or allowed spenders."""
        return sorted(self._extras)

    def on_chain(self, chain: str) -> Iterator[int]:
        if chain not in self._chains:
            return iter(())
        wanted = self._chains.index(chain)
        return (i for i, c in enumerate(self._chains_of) if c == wanted)

    def find(self, chain: str, address: str) -> int | None:
        """The row number of the wallet at ``address`` (EIP-55) on ``chain``, or None."""
        if chain not in self._chains:
            return None
        if self._by_address is None:
            self._by_address = {}
            for c in range(len(self._chains)):
                rows = [i for i, x in enumerate(self._chains_of) if x == c]
                rows.sort(key=lambda i: self._addresses[40 * i : 40 * i + 40])
                self._by_address[c] = array("Q", rows)
        ordered = self._by_address[self._chains.index(chain)]
        key = address[2:].encode("ascii")
        k = bisect_left(ordered, key, key=lambda i: bytes(self._addresses[40 * i : 40 * i + 40]))
        return ordered[k] if k < len(ordered) and self.address(ordered[k]) == address else None


NO_IMPORTED = ImportedWallets((), ())


class Fleet(Mapping[str, WalletSettings]):
    """Every custody wallet, by name: the configuration's [wallets.X] (first, in file order),
    then those imported into the ledger (by name). The imported ones are read when first asked
    for (``load``, from the composition root) and again by ``refresh`` when ``stamp`` says the
    ledger's set changed (a daemon's next job sees a new import). Names and (chain, address)
    are unique across both; ``load`` refuses a ledger that breaks that."""

    def __init__(
        self,
        configured: Mapping[str, WalletSettings],
        load: Callable[[], ImportedWallets] | None = None,
        stamp: Callable[[], object] | None = None,
    ) -> None:
        self.configured = configured
        self._load = load
        self._stamp = stamp
        self._loaded: ImportedWallets | None = None if load is not None else NO_IMPORTED
        self._loaded_stamp: object = None
        self._lock = threading.Lock()

    @property
    def imported(self) -> ImportedWallets:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                if self._loaded is None:
                    assert self._load is not None
                    self._loaded_stamp = self._stamp() if self._stamp is not None else None
                    self._loaded = self._load()
                loaded = self._loaded
        return loaded

    def refresh(self) -> None:
        """Read the imported wallets again if the ledger's set changed since they were read
        (nothing to do before they were first asked for)."""
        if self._loaded is None or self._load is None or self._stamp is None:
            return
        stamp = self._stamp()
        if stamp != self._loaded_stamp:
            with self._lock:
                self._loaded_stamp = stamp
                self._loaded = self._load()

    def source_of(self, name: str) -> str:
        """Where a wallet is defined: "config" or "ledger" (KeyError for neither)."""
        if name in self.configured:
            return "config"
        if self.imported.index(name) is not None:
            return "ledger"
        raise KeyError(name)

    def __getitem__(self, name: str) -> WalletSettings:
        wallet = self.configured.get(name)
        if wallet is not None:
            return wallet
        imported = self.imported
        i = imported.index(name)
        if i is None:
            raise KeyError(name)
        return imported.wallet(i)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self.configured or self.imported.index(name) is not None

    def __iter__(self) -> Iterator[str]:
        yield from self.configured
        imported = self.imported
        for i in range(len(imported)):
            yield imported.name(i)

    def __len__(self) -> int:
        return len(self.configured) + len(self.imported)

    def on_chain(self, chain: str) -> list[WalletSettings]:
        imported = self.imported
        return [w for w in self.configured.values() if w.chain == chain] + [
            imported.wallet(i) for i in imported.on_chain(chain)
        ]

    def count_on(self, chain: str) -> int:
        imported = self.imported
        return sum(1 for w in self.configured.values() if w.chain == chain) + imported.count_on(chain)

    def with_approvers(self, chain: str) -> list[WalletSettings]:
        imported = self.imported
        return [w for w in self.configured.values() if w.chain == chain and w.approvers] + [
            w for w in map(imported.wallet, imported.with_extras()) if w.chain == chain and w.approvers
        ]

    def chain_finder(self) -> Callable[[str], str | None]:
        """``Settings.chain_finder``: a configured wallet by its name, an imported one by a
        walk forward through the sorted packed names (a search when asked out of order)."""
        configured, imported = self.configured, self.imported
        count = len(imported)
        at = 0
        last = ""

        def find(name: str) -> str | None:
            nonlocal at, last
            wallet = configured.get(name)
            if wallet is not None:
                return wallet.chain
            if name < last:
                at = bisect_left(range(count), name, key=imported.name)
            last = name
            while at < count and imported.name(at) < name:
                at += 1
            return imported.chain(at) if at < count and imported.name(at) == name else None

        return find

    def chunks_on(
        self, chain: str, size: int, pick: Callable[[int], bool] | None = None
    ) -> Iterator[list[WalletSettings]]:
        """``on_chain(chain)`` in slices of ``size``, each made when it is reached (and, with
        ``pick``, only the slices it accepts by number)."""
        imported = self.imported
        rows: Iterator[WalletSettings | int] = itertools.chain(
            (w for w in self.configured.values() if w.chain == chain), imported.on_chain(chain)
        )
        n = 0
        while part := list(itertools.islice(rows, size)):
            if pick is None or pick(n):
                yield [w if isinstance(w, WalletSettings) else imported.wallet(w) for w in part]
            n += 1

    def by_address(self, chain: str, address: str) -> WalletSettings | None:
        for wallet in self.configured.values():
            if wallet.chain == chain and wallet.address == address:
                return wallet
        imported = self.imported
        i = imported.find(chain, address)
        return None if i is None else imported.wallet(i)
