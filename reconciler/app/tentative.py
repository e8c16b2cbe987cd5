"""Tentative breaks: what a run found in blocks short of their chain's confirmations, and which
tentative breaks a run may confirm.

Invariants: a finding is tentative when its evidence block (the block of the transaction it
names, else the block the run pinned) has fewer than the chain's ``confirmations`` blocks on
top of the node's head as the run read it — which only the watcher's runs, pinned at the head,
can produce (a scheduled run or scan pins ``confirmations`` below the head); with
``confirmations = 0`` nothing is tentative. A tentative break is confirmed only once its
evidence block has the confirmations and the node still serves that block's hash at its height
(a block reorged away is never confirmed: the reorg walk retracts its break instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from chains.base import ChainAdapter
from reconciler.app.surveil import ChainSurveillance
from reconciler.domain import BlockRef, BreakKey, Finding
from reconciler.inputs.settings import ChainSettings, Settings
from reconciler.ledger import watch_store
from reconciler.ledger.runs import ChainResult, Confirmation
from reconciler.ledger.store import Ledger


def short_of_confirmations(head: int, block: int, confirmations: int) -> bool:
    """Whether ``block`` has fewer than ``confirmations`` blocks on top of it at ``head``: a run
    pinned ``confirmations`` below the head reads ``head - confirmations``, so that block and
    those below it are confirmed; with ``confirmations = 0`` every block is."""
    return head - block < confirmations


def evidence_blocks(surveilled: ChainSurveillance) -> dict[str, BlockRef]:
    """tx hash (lowercase) -> the block holding it, of every movement and execution judged."""
    blocks = {
        m.tx_hash.lower(): BlockRef(m.observation.block_number, m.observation.block_hash)
        for m in surveilled.inputs.movements
        if m.tx_hash
    }
    if surveilled.executions is not None:
        for e in surveilled.executions.executions:
            if e.tx_hash:
                blocks.setdefault(e.tx_hash.lower(), BlockRef(e.block_number, e.block_hash))
    return blocks


def tentative_findings(
    settings: Settings,
    findings: Iterable[Finding],
    chains: Sequence[ChainResult],
    surveilled: Mapping[str, ChainSurveillance],
) -> dict[BreakKey, BlockRef]:
    """The findings short of their chain's confirmations, each with its evidence block."""
    results = {c.chain: c for c in chains}
    blocks = {name: evidence_blocks(cs) for name, cs in surveilled.items()}
    out: dict[BreakKey, BlockRef] = {}
    for f in findings:
        chain = settings.chains.get(f.key.chain)
        result = results.get(f.key.chain)
        if chain is None or chain.confirmations == 0 or result is None or result.block is None:
            continue
        head = result.head if result.head is not None else result.block.number
        block = blocks.get(f.key.chain, {}).get(f.key.tx_hash.lower()) if f.key.tx_hash else None
        evidence = block or result.block
        if short_of_confirmations(head, evidence.number, chain.confirmations):
            out[f.key] = evidence
    return out


def confirmable(chain: ChainSettings, ledger: Ledger, adapter: ChainAdapter, head: int) -> tuple[Confirmation, ...]:
    """The chain's tentative breaks whose evidence block now has ``confirmations`` blocks on
    top of ``head`` and is still the node's block at its height."""
    out = []
    for break_id, block in watch_store.tentative_breaks(ledger, chain.name):
        if short_of_confirmations(head, block.number, chain.confirmations):
            continue
        if adapter.block_hash(block.number) != block.hash:
            continue  # reorged away: the reorg walk resolves (retracts) it, never a confirmation
        out.append(Confirmation(break_id, block, head - block.number))
    return tuple(out)
