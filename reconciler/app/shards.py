"""A scheduled firing shared by daemons: its chains' units, (chain, shard) slices of the wallets,
claimed through the ledger (reconciler.ledger.units_store) by whichever daemon is free.

Invariants:
- The daemon whose run claimed the firing is its coordinator: it pins each chain once,
  publishes the chain's units at that pin, works on them like any helper, and waits until every
  unit is done or failed, claiming again those whose process died. Then it alone judges the
  chain-wide passes, applies the break lifecycle once, writes the run, its audit record and its
  alerts: one document, one set of breaks per firing, as a run in one process would.
- A daemon that lost the firing's claim helps: it claims the run's pending units (or those of
  a dead process) until none is left, and writes nothing but their results.
- Every daemon splits a chain's wallets the same way (contiguous slices of the configuration's
  order); a unit whose wallets' digest differs from what this process would read is failed,
  never read with another configuration.
- A failed unit is not retried: its chain is left unread with the unit named, so the run is
  incomplete, never clean.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from chains.base import ChainAdapter
from reconciler.app.units import (
    UnitInputs,
    UnitResult,
    UnitRunner,
    chunk_wallets,
    chunks,
    merged,
    read_units,
    result_from_json,
    result_to_json,
    shard_slice,
    spilled,
    unit_inputs,
    views_to_json,
    wallets_digest,
)
from reconciler.domain import BlockRef
from reconciler.errors import ChainError, ReconcilerError
from reconciler.inputs.settings import ChainSettings, Settings
from reconciler.interrupt import Interrupted
from reconciler.ledger import units_store
from reconciler.ledger.daemon_models import DONE, FAILED
from reconciler.ledger.store import Ledger

log = logging.getLogger(__name__)

POLL = 0.2  # seconds between looks at units held by other daemons


def sharded(settings: Settings, ledger: Ledger) -> bool:
    """Whether scheduled runs are split into units shared by daemons: ``[schedule] shards`` above
    1 on a PostgreSQL ledger (a SQLite ledger takes one daemon: its units run in process)."""
    return settings.schedule.shards > 1 and ledger.engine.dialect.name == "postgresql"


def execute_unit(
    ledger: Ledger,
    unit: units_store.Claimed,
    settings: Settings,
    chain: ChainSettings,
    adapter: ChainAdapter,
    inputs: UnitInputs,
    checkpoint: Callable[[], None] = lambda: None,
) -> bool:
    """Read and judge a held unit chunk by chunk at its pin, and hand its result (or why it
    failed) back to the ledger; True when it was done."""
    started = time.monotonic()
    wallets = shard_slice(settings.wallets_on(chain.name), unit.shard, unit.shards)
    error: str | None = None
    text: str | None = None
    with units_store.UnitHeartbeat(ledger, unit):
        try:
            if len(wallets) != unit.wallets or wallets_digest(wallets) != unit.wallets_digest:
                raise ChainError(
                    f"this daemon's configuration lists other wallets for shard {unit.shard} of chain "
                    f"{chain.name} than the daemon that published it: every daemon must run one configuration"
                )
            parts = chunks(wallets, chunk_wallets())
            found = list(read_units(chain, settings, adapter, unit.block, parts, inputs, checkpoint))
            text = result_to_json(merged(found))
        except Interrupted:
            units_store.release(ledger, unit)  # stopping: another daemon takes it at once
            log.warning("event=unit_released run_id=%s chain=%s shard=%d", unit.run_id, unit.chain, unit.shard)
            raise
        except ReconcilerError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a unit that fails fails its chain, never the daemon
            error = f"{type(exc).__name__}: {exc}"
    elapsed = time.monotonic() - started
    kept = units_store.finish(ledger, unit, text, error, elapsed)
    log.info(
        "event=unit_%s run_id=%s chain=%s shard=%d/%d wallets=%d seconds=%.3f attempt=%d%s%s",
        "done" if error is None else "failed",
        unit.run_id,
        unit.chain,
        unit.shard,
        unit.shards,
        unit.wallets,
        elapsed,
        unit.attempt,
        "" if kept else " kept=false",
        f" reason={error!r}" if error else "",
    )
    return error is None and kept


def shared_units(ledger: Ledger, run_id: str, shards: int) -> Callable[[Settings, UnitInputs], UnitRunner]:
    """The coordinator's units: published per chain at its pin, worked on here and by every
    helping daemon, waited for; their results in shard order, as one."""

    def factory(settings: Settings, inputs: UnitInputs) -> UnitRunner:
        def run(
            chain: ChainSettings, adapter: ChainAdapter, block: BlockRef, checkpoint: Callable[[], None]
        ) -> UnitResult:
            wallets = settings.wallets_on(chain.name)
            slices = [shard_slice(wallets, k, shards) for k in range(shards)]
            units = [(k, len(s), wallets_digest(s)) for k, s in enumerate(slices)]
            try:
                units_store.publish(ledger, run_id, chain.name, block, units, views_to_json(inputs))
            except units_store.UnitsPublished as exc:
                # The pin was replaced by a reorg while the units were read: shared units are not
                # read twice in one run; the chain is left unread and the next firing reads it.
                raise ChainError(
                    f"block {block.number} of chain {chain.name} was re-pinned after a reorg while its units "
                    "were read by the daemons; the chain is left unread this run (raise confirmations)"
                ) from exc
            log.info(
                "event=units_published run_id=%s chain=%s shards=%d wallets=%d",
                run_id,
                chain.name,
                shards,
                len(wallets),
            )
            while True:
                checkpoint()
                unit = units_store.claim(ledger, run_id, chain.name, settings.schedule.unit_timeout)
                if unit is not None:
                    execute_unit(ledger, unit, settings, chain, adapter, inputs, checkpoint)
                    continue
                states = units_store.states(ledger, run_id, chain.name)
                if all(u.status in (DONE, FAILED) for u in states):
                    break
                time.sleep(POLL)  # the rest are held by live daemons
            failed = [u for u in states if u.status == FAILED]
            if failed:
                raise ChainError(
                    "; ".join(f"unit {u.chain}/{u.shard} failed on {u.instance}: {u.error}" for u in failed)
                )
            results = (result_from_json(u.result or "", chain.name, settings) for u in states)
            return spilled(results, chain.name, settings)

        return run

    return factory


def help_firing(
    settings: Settings,
    ledger: Ledger,
    adapter_for: Callable[[ChainSettings], ChainAdapter],
    job: str,
    scheduled_for: datetime,
    checkpoint: Callable[[], None] = lambda: None,
    wait_for_units: float = 30.0,
) -> int:
    """Help with a firing another daemon claimed: claim its run's units until none is left to
    take, waiting up to ``wait_for_units`` seconds for the first ones to be published. Returns
    how many units were done here."""
    deadline = time.monotonic() + wait_for_units
    run_id = None
    while run_id is None and time.monotonic() < deadline:
        checkpoint()
        run_id = units_store.firing_run(ledger, job, scheduled_for)
        if run_id is None:
            time.sleep(POLL)
    if run_id is None:
        return 0
    done = 0
    inputs: dict[str | None, UnitInputs] = {}  # by the views units were published with
    adapters: dict[str, ChainAdapter] = {}
    try:
        while True:
            checkpoint()
            unit = units_store.claim(ledger, run_id, hung_after=settings.schedule.unit_timeout)
            if unit is None:
                if units_store.run_status(ledger, run_id) != "running":
                    break  # done (or a firing that was done long before this daemon started)
                if units_store.states(ledger, run_id) or time.monotonic() >= deadline:
                    break
                time.sleep(POLL)  # the coordinator has not pinned yet
                continue
            chain = settings.chains.get(unit.chain)
            try:
                if chain is None:
                    raise ChainError(f"chain {unit.chain} is not in this daemon's configuration")
                if unit.views not in inputs:  # the coordinator's views, not this daemon's start
                    inputs[unit.views] = unit_inputs(settings, ledger, unit.views)
                if chain.name not in adapters:
                    adapters[chain.name] = adapter_for(chain)
            except Exception as exc:  # noqa: BLE001 - the unit fails, named; never left held
                why = str(exc) if isinstance(exc, ReconcilerError) else f"{type(exc).__name__}: {exc}"
                units_store.finish(ledger, unit, None, why, 0.0)
                log.error(
                    "event=unit_failed run_id=%s chain=%s shard=%d reason=%r", run_id, unit.chain, unit.shard, why
                )
                continue
            done += execute_unit(ledger, unit, settings, chain, adapters[chain.name], inputs[unit.views], checkpoint)
    finally:
        for adapter in adapters.values():
            adapter.close()
    return done


