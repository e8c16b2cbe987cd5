"""The configuration's values: frozen settings dataclasses, as reconciler.inputs.config
validates them from TOML.

Invariant: pure values (standard library and the domain's types only); the engine reads them as
its inputs, so nothing here parses, reads a file or an environment variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from reconciler.domain import AssetKind, SegClass, Severity

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


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """Each job's trigger as written: a 5-field cron expression or an interval ("30s");
    `schedule_interval` tells them apart."""

    timezone: str = "UTC"
    run: str | None = None
    scan: str | None = None
    segregation_statement: str | None = None
    shards: int = 1  # (chain, shard) units a scheduled firing is split into


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
        return [w for w in self.wallets.values() if w.chain == chain]

    def wallet_by_address(self, chain: str, address: str) -> WalletSettings | None:
        for wallet in self.wallets.values():
            if wallet.chain == chain and wallet.address == address:
                return wallet
        return None
