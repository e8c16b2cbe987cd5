"""`wallets baseline` and `wallets show`: a wallet's on-chain configuration as reviewed by a
person, and as it is now.

Invariants: a baseline is recorded only from a complete reading of every chain involved, at
each chain's pinned block (no chain is half-baselined); what could not be read is an error,
never an empty configuration; baselines are appended (the history of reviews stays), and the
newest one per wallet is what every run compares with.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from reconciler.app.run import AdapterFactory, read_chain
from reconciler.app.units import wallet_probes
from reconciler.domain import BlockRef
from reconciler.engine.wallets import FieldChange, compare_config
from reconciler.errors import ChainError, ConfigError, chain_message
from reconciler.inputs.settings import Settings, shown_names
from reconciler.ledger import surveillance_store
from reconciler.ledger.runs import Baselines, NewBaselines
from reconciler.ledger.store import Ledger
from reconciler.walletconfig import TokenImplementation, WalletConfig

REVIEWED_NOTE = "reviewed baseline (`reconciler wallets baseline`)"


@dataclass(frozen=True, slots=True)
class WalletReading:
    chain: str
    block_hash: str
    config: WalletConfig


@dataclass(frozen=True, slots=True)
class Readings:
    wallets: list[WalletReading]
    tokens: list[tuple[str, TokenImplementation]]
    errors: dict[str, str]  # chain -> why it could not be read
    pins: dict[str, BlockRef] = field(default_factory=dict)  # chain -> the block read


def _selected(settings: Settings, names: Collection[str]) -> set[str]:
    unknown = sorted(set(names) - set(settings.wallets))
    if unknown:
        known = shown_names(settings.wallets) or "none configured"
        raise ConfigError(f"unknown wallet(s) {', '.join(unknown)}; configured wallets: {known}")
    return set(names) or set(settings.wallets)


def read_current(
    settings: Settings, adapter_for: AdapterFactory, names: Collection[str] = (), ledger: Ledger | None = None
) -> Readings:
    """Each selected wallet's configuration (and its chain's token implementations) at each
    chain's pinned block. With the ``ledger``, the owners/modules entries that observed
    executions wrote are read too (hidden owners and modules)."""
    wanted = _selected(settings, names)
    readings: list[WalletReading] = []
    tokens: list[tuple[str, TokenImplementation]] = []
    errors: dict[str, str] = {}
    pins: dict[str, BlockRef] = {}
    for chain in settings.chains.values():
        if not any(w.name in wanted for w in settings.wallets_on(chain.name)):
            continue
        adapter = adapter_for(chain)
        try:
            probes = wallet_probes(chain, settings, ledger) if ledger is not None else None
            result, observed = read_chain(chain, settings, adapter, probes=probes)
        except ChainError as exc:
            errors[chain.name] = str(exc)
            continue
        finally:
            adapter.close()
        assert result.block is not None
        pins[chain.name] = result.block
        for wallet in settings.wallets_on(chain.name):
            if wallet.name in wanted:
                readings.append(WalletReading(chain.name, result.block.hash, observed.wallet_configs[wallet.name]))
        if observed.controls is not None:
            tokens.extend((chain.name, impl) for impl in observed.controls.implementations)
    return Readings(readings, tokens, errors, pins)


def record_reviewed(ledger: Ledger, readings: Readings, settings: Settings | None = None) -> None:
    """Record the reviewed baselines; on a chain whose surveillance has not begun (no
    checkpoint, no ``start_block``), the baseline's block is where it begins."""
    if readings.errors:
        raise ChainError(
            "nothing was baselined: "
            + "; ".join(chain_message(chain, why) for chain, why in readings.errors.items())
        )
    ledger.record_baselines(
        NewBaselines(
            wallets=tuple((r.config, r.block_hash) for r in readings.wallets),
            tokens=tuple(readings.tokens),
            reviewed=True,
            note=REVIEWED_NOTE,
        )
    )
    if settings is not None:
        for chain, block in readings.pins.items():
            if settings.chains[chain].start_block is None:
                surveillance_store.start_at(ledger, chain, block)


def differences(baselines: Baselines, reading: WalletReading) -> list[FieldChange] | None:
    """Fields that differ from the wallet's baseline; None when it has none yet."""
    baseline = baselines.wallets.get((reading.chain, reading.config.wallet))
    return None if baseline is None else compare_config(baseline, reading.config)
