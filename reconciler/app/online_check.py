"""`config check --online`: what was verified against each chain, said item by item.

Invariant: a chain is checked exactly as a run reads it (`reconciler.app.run.read_chain`: the
node's chain id, a pinned block, every token's decimals(), every balance through the read path
in effect, every configured freeze_check and pause_check view), and the document lists only
what that read proved; a freeze or pause view that does not answer a bool fails the check (a run
would open an asset_frozen warning "could not tell" every time), and so does an ERC-3643 token
that does not answer getFrozenTokens, isFrozen and paused() (asked about the zero address);
endpoints appear as scheme://host[:port].
"""

from __future__ import annotations

from typing import Any

from chains.base import ChainAdapter
from reconciler.app.run import chain_failure, read_chain
from reconciler.app.units import issuer_control_queries
from reconciler.bootstrap import adapter_for
from reconciler.domain import BlockRef, SegClass
from reconciler.engine.wallets import ERC3643_FREEZE_VIEW
from reconciler.errors import ChainError, ReconcilerError
from reconciler.inputs.settings import ChainSettings, Settings, WalletSettings
from reconciler.redaction import redact_rpc_url
from reconciler.transfers import ZERO_ADDRESS
from reconciler.walletconfig import ControlState, FreezeQuery, IssuerControls

CHECK = "✓"
# The holder the ERC-3643 views are asked about: any address answers, and this one is nobody's.
ZERO_HOLDER = WalletSettings(name="zero address", chain="", address=ZERO_ADDRESS, seg_class=SegClass.HOUSE)


def check_chain(chain: ChainSettings, settings: Settings) -> dict[str, Any]:
    """The chain's entry of the `config check --online` document: ``ok`` and, when the read
    went through, what it verified; else ``error``, the reason in plain words."""
    doc: dict[str, Any] = {"endpoints": [redact_rpc_url(u) for u in chain.rpc_urls]}
    adapter = adapter_for(chain)
    try:
        result, observed = read_chain(chain, settings, adapter)
        assert result.block is not None
        controls = _controls(chain, settings, adapter, observed.controls, result.block)
        silent = erc3643_views_unanswered(chain, settings, adapter, result.block)
    except ChainError as exc:
        return {"ok": False, "error": chain_failure(chain.name, exc), **doc}
    except ReconcilerError as exc:
        return {"ok": False, "error": str(exc), **doc}
    finally:
        adapter.close()
    tokens = []
    problems = []
    for a in settings.assets_on(chain.name):
        if a.address is None:
            continue
        token: dict[str, Any] = {"asset": a.name, "address": a.address, "decimals": a.decimals}
        token["decimals_matched"] = True
        if a.erc3643:  # it answered getFrozenTokens, isFrozen and paused() (else: a problem below)
            token |= {"issuer_standard": a.issuer_standard, "erc3643_views": not silent}
        if a.freeze_check:
            why = controls.get((a.name, "freeze"))
            token |= {"freeze_check": a.freeze_check, "freeze_check_answered": why is None}
            if why is not None:
                problems.append(
                    f"assets.{a.name}.freeze_check = {a.freeze_check!r}: the token at {a.address} did not answer "
                    f"{a.freeze_check}(address) with a bool at block {result.block.number} ({why}); name the "
                    "token's (address) returns (bool) view (isBlacklisted for USDC's FiatToken) or remove "
                    "freeze_check — every run would open an asset_frozen warning that it could not tell"
                )
        if a.pause_check:
            why = controls.get((a.name, "pause"))
            token |= {"pause_check": True, "pause_check_answered": why is None}
            if why is not None:
                problems.append(
                    f"assets.{a.name}.pause_check = true: the token at {a.address} did not answer paused() with a "
                    f"bool at block {result.block.number} ({why}); set pause_check = false if the token cannot "
                    "be paused — every run would open an asset_frozen warning that it could not tell"
                )
        tokens.append(token)
    problems += silent
    if problems:
        return {"ok": False, "error": "; ".join(problems), "block_number": result.block.number, **doc, "tokens": tokens}
    return {
        "ok": True,
        "block_number": result.block.number,
        **doc,
        "sources": [{"endpoint": e, "client_version": v} for e, v in result.sources],
        "chain_id": result.chain_id,
        "chain_id_matched": result.chain_id == chain.chain_id,
        "head": result.head,
        "confirmations": chain.confirmations,
        "read_path": result.read_path,
        "multicall3": chain.multicall3,
        "tokens": tokens,
        "native": [a.name for a in settings.assets_on(chain.name) if a.native],
    }


_NOBODY = "0x0000000000000000000000000000000000000000"


def _controls(
    chain: ChainSettings,
    settings: Settings,
    adapter: ChainAdapter,
    read: IssuerControls | None,
    block: BlockRef,
) -> dict[tuple[str, str], str]:
    """Why each configured freeze_check or pause_check could not be answered, by (asset,
    "freeze" | "pause"): what the run read for the chain's wallets; for a chain without wallets,
    the freeze view asked about the zero address."""
    tokens = [a for a in settings.assets_on(chain.name) if a.address is not None]
    if read is None or (not settings.wallets_on(chain.name) and any(a.freeze_check for a in tokens)):
        freezes = [FreezeQuery(a.address, _NOBODY, a.freeze_check) for a in tokens if a.address and a.freeze_check]
        pauses = [a.address for a in tokens if a.address and a.pause_check]
        read = adapter.issuer_controls(freezes, pauses, [], block)
    unanswered: dict[tuple[str, str], str] = {}
    for a in tokens:
        for f in read.freezes:
            if f.token == a.address and f.state is ControlState.UNKNOWN:
                unanswered.setdefault((a.name, "freeze"), f.note or "no answer")
        for pause in read.pauses:
            if pause.token == a.address and pause.state is ControlState.UNKNOWN:
                unanswered.setdefault((a.name, "pause"), pause.note or "no answer")
    return unanswered


def erc3643_views_unanswered(
    chain: ChainSettings, settings: Settings, adapter: ChainAdapter, block: BlockRef
) -> list[str]:
    """For each asset declared ``issuer_standard = "erc3643"`` whose token does not answer the
    views every run will ask it (getFrozenTokens, isFrozen and paused(), asked here about the
    zero address), what it did not answer; empty when they all did."""
    tokens = [a for a in settings.assets_on(chain.name) if a.erc3643 and a.address is not None]
    if not tokens:
        return []
    freezes, pauses, frozen = issuer_control_queries(tokens, [ZERO_HOLDER])
    freezes = [q for q in freezes if q.function == ERC3643_FREEZE_VIEW]
    controls = adapter.issuer_controls(freezes, pauses, [], block, frozen)
    problems = []
    for a in tokens:
        notes = [r.note for r in controls.frozen if r.token == a.address and r.amount is None]
        notes += [r.note for r in controls.freezes if r.token == a.address and r.state is ControlState.UNKNOWN]
        notes += [r.note for r in controls.pauses if r.token == a.address and r.state is ControlState.UNKNOWN]
        if notes:
            problems.append(
                f'assets.{a.name} ({a.address}) is declared issuer_standard = "erc3643" but the token does not '
                f"answer the ERC-3643 views every run reads at block {block.number}: {'; '.join(notes)}. Is it the "
                'token\'s address, and an ERC-3643 (T-REX) token? If not, remove issuer_standard or set it to "none"'
            )
    return problems


def describe(name: str, doc: dict[str, Any]) -> list[str]:
    """The chain's entry for a person, one verified fact a line."""
    answered = {s["endpoint"]: s["client_version"] for s in doc.get("sources", [])}
    endpoints = [
        f"{e} ({answered[e] or 'client not named'})" if e in answered else e for e in doc.get("endpoints", [])
    ]
    lines = [f"chain {name}: {', '.join(endpoints)}"]
    if not doc.get("ok"):
        return [*lines, f"  FAILED: {doc.get('error')}"]
    lines.append(f"  chain id {doc['chain_id']} {CHECK}")
    pinned = f"pinned block {doc['block_number']:,}"
    if doc.get("head") is not None:
        pinned = f"head {doc['head']:,}, {pinned} ({doc['confirmations']:,} confirmations)"
    lines.append(f"  {pinned}")
    path = doc.get("read_path")
    if path == "multicall":
        lines.append(f"  read path: multicall (Multicall3 deployed at {doc['multicall3']})")
    elif path == "batch":
        lines.append("  read path: batch (JSON-RPC batches of eth_call and eth_getBalance)")
    else:
        lines.append("  read path: none needed (no wallet on this chain)")
    for t in doc["tokens"]:
        checks = [f"decimals {t['decimals']} {CHECK}"]
        if "freeze_check" in t:
            checks.append(f"{t['freeze_check']}(address) {CHECK}")
        if "pause_check" in t:
            checks.append(f"paused() {CHECK}")
        if t.get("erc3643_views"):
            checks.append(f"ERC-3643 views getFrozenTokens, isFrozen, paused {CHECK}")
        lines.append(f"  {t['asset']} at {t['address']}: {', '.join(checks)}")
    lines += [f"  {n}: the chain's native coin (18 decimals)" for n in doc["native"]]
    return lines
