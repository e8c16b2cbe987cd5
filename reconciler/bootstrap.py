"""Composition root: the one place that builds ledgers and chain adapters from settings."""

from __future__ import annotations

import os

from chains.base import ChainAdapter
from chains.evm.crosscheck import evm_adapter
from chains.evm.valuation import EvmValuationReader
from reconciler.app import fleet
from reconciler.app.documents import break_doc
from reconciler.app.statement import ValuationReader
from reconciler.daemon.alerts import log_alert
from reconciler.errors import ConfigError
from reconciler.inputs.settings import ChainSettings, Settings
from reconciler.ledger.store import Ledger
from reconciler.ledger.trail import AlertRoute, AlertSetup, destination_of


def alert_setup(settings: Settings, alert_log: bool = True) -> AlertSetup:
    """Webhooks by the SHA-256 of their URL (the URL may hold a secret), breaks shown as in
    `run --json`; with ``alert_log``, each alert also logged (the daemon's log sink)."""
    return AlertSetup(
        routes=tuple(AlertRoute(destination_of(w.url), w.min_severity) for w in settings.webhooks),
        render_break=lambda b: break_doc(b, settings),
        log=(lambda event, body: log_alert(event, body)) if alert_log else None,
    )


def audit_key(settings: Settings) -> bytes | None:
    """The key of ``[audit] key_env`` (None when it is not configured). Configured but unset or
    empty is a configuration error: records written without it would no longer verify as keyed,
    and a verification without it would prove less than asked. The message names the variable,
    never a value."""
    name = settings.audit.key_env
    if name is None:
        return None
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(
            f"[audit] key_env = {name!r}, but the environment variable {name} is not set or is empty: set it to "
            "the audit key (every audit record is HMACed with it), or remove key_env"
        )
    return value.encode()


def open_ledger(settings: Settings, alert_log: bool = True) -> Ledger:
    """The ledger, ready (schema current), its alerts routed to the configured webhooks and,
    with ``alert_log`` (the daemon), logged. A one-shot command prints what it found itself: a
    log line per new break before its summary would say each twice."""
    ledger = Ledger(settings.database_url)
    ledger.alerts = alert_setup(settings, alert_log)
    ledger.audit_key = audit_key(settings)
    ledger.ensure_ready()
    fleet.refresh(settings)  # a daemon's next job sees the wallets imported since its last
    return ledger


def adapter_for(chain: ChainSettings) -> ChainAdapter:
    if chain.kind == "evm":
        return evm_adapter(chain)  # retried, failed over, cross-checked when configured
    raise ConfigError(f"chains.{chain.name}.kind = {chain.kind!r} has no adapter")


def valuation_reader_for(chain: ChainSettings) -> ValuationReader:
    """What a segregation statement reads of a chain: pins, balances and price feeds."""
    if chain.kind == "evm":
        return EvmValuationReader.from_settings(chain)
    raise ConfigError(f"chains.{chain.name}.kind = {chain.kind!r} has no adapter")
