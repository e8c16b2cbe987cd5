"""`config check --online`: what was verified against each chain, said item by item.

Invariant: a chain is checked exactly as a run reads it (`reconciler.app.run.read_chain`: the
node's chain id, a pinned block, every token's decimals(), every balance through the read path
in effect), and the document lists only what that read proved; endpoints appear as
scheme://host[:port].
"""

from __future__ import annotations

from typing import Any

from reconciler.app.run import chain_failure, read_chain
from reconciler.bootstrap import adapter_for
from reconciler.errors import ChainError, ReconcilerError
from reconciler.inputs.settings import ChainSettings, Settings
from reconciler.redaction import redact_rpc_url

CHECK = "✓"


def check_chain(chain: ChainSettings, settings: Settings) -> dict[str, Any]:
    """The chain's entry of the `config check --online` document: ``ok`` and, when the read
    went through, what it verified; else ``error``, the reason in plain words."""
    doc: dict[str, Any] = {"endpoints": [redact_rpc_url(u) for u in chain.rpc_urls]}
    adapter = adapter_for(chain)
    try:
        result, _observed = read_chain(chain, settings, adapter)
    except ChainError as exc:
        return {"ok": False, "error": chain_failure(chain.name, exc), **doc}
    except ReconcilerError as exc:
        return {"ok": False, "error": str(exc), **doc}
    finally:
        adapter.close()
    assert result.block is not None
    tokens = [
        {"asset": a.name, "address": a.address, "decimals": a.decimals, "decimals_matched": True}
        for a in settings.assets_on(chain.name)
        if a.address is not None
    ]
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
    lines += [f"  {t['asset']} at {t['address']}: decimals {t['decimals']} {CHECK}" for t in doc["tokens"]]
    lines += [f"  {n}: the chain's native coin (18 decimals)" for n in doc["native"]]
    return lines
