"""Composition root: the one place that builds ledgers and chain adapters from settings."""

from __future__ import annotations

from chains.base import ChainAdapter
from chains.evm.adapter import EvmAdapter
from reconciler.config import ChainSettings, Settings
from reconciler.errors import ConfigError
from reconciler.ledger import Ledger


def open_ledger(settings: Settings) -> Ledger:
    ledger = Ledger(settings.database_url)
    ledger.ensure_ready()
    return ledger


def adapter_for(chain: ChainSettings) -> ChainAdapter:
    if chain.kind == "evm":
        return EvmAdapter.from_settings(chain)
    raise ConfigError(f"chains.{chain.name}.kind = {chain.kind!r} has no adapter")
