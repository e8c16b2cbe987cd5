"""A statement's inputs as JSON values and back, so that a stored statement can be recomputed to
the cent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from reconciler.domain import AssetKind, BlockRef, SegClass
from reconciler.engine.segregation.values import (
    BookHolding,
    ChainPin,
    ConcentrationLimit,
    ConcentrationScope,
    EquityRow,
    FeedAnswer,
    FeedReading,
    IssuerHold,
    OffchainRow,
    SegregationInputs,
    plain,
)
from reconciler.inputs.settings import AssetSettings, SegregationSettings, WalletSettings


def inputs_to_json(inputs: SegregationInputs) -> dict[str, Any]:
    """Everything the statement used, as JSON values (amounts and prices as exact strings), so
    that ``inputs_from_json`` rebuilds inputs that compute the same statement to the cent."""
    seg = inputs.segregation
    return {
        "as_of": inputs.as_of.isoformat(),
        "business_date": inputs.business_date.isoformat(),
        "books_through": inputs.books_through.isoformat() if inputs.books_through is not None else None,
        "classes": [c.value for c in inputs.classes],
        "wallets": [
            {"name": w.name, "chain": w.chain, "address": w.address, "class": w.seg_class.value}
            for w in inputs.wallets.values()
        ],
        "assets": [
            {
                "name": a.name,
                "chain": a.chain,
                "decimals": a.decimals,
                "kind": a.kind.value,
                "address": a.address,
                "native": a.native,
                "price_usd": None if a.price_usd is None else plain(a.price_usd),
                "price_feed": a.price_feed,
                "price_max_age_seconds": int(a.price_max_age.total_seconds()),
                "haircut": None if a.haircut is None else plain(a.haircut),
                "dco_haircuts": [plain(h) for h in a.dco_haircuts],
                "issuer": a.issuer,
                "fund_family": a.fund_family,
                "government_fund": a.government_fund,
                "issuer_standard": a.issuer_standard,
            }
            for a in inputs.assets.values()
        ],
        "segregation": {
            "haircut_floor": plain(seg.haircut_floor),
            "timezone": seg.timezone,
            "targets": {c.value: plain(v) for c, v in seg.targets.items()},
        },
        "limits": [{"name": lim.name, "share": plain(lim.share), "scope": lim.scope.value} for lim in inputs.limits],
        "accounts": {a: c.value for a, c in sorted(inputs.accounts.items())},
        "book": [[h.account, h.wallet, h.asset, str(h.units)] for h in inputs.book],
        "holdings": [[w, a, str(u)] for (w, a), u in sorted(inputs.holdings.items())],
        "chains": {
            name: {"block_number": p.block.number, "block_hash": p.block.hash, "timestamp": p.timestamp}
            for name, p in inputs.chains.items()
        },
        "unread": dict(inputs.unread),
        "feeds": {
            asset: {
                "feed": r.feed,
                "chain": r.chain,
                "block_number": r.block_number,
                "block_time": r.block_time,
                "error": r.error,
                "answer": None
                if r.answer is None
                else {
                    "decimals": r.answer.decimals,
                    "round_id": str(r.answer.round_id),
                    "answer": str(r.answer.answer),
                    "started_at": str(r.answer.started_at),
                    "updated_at": str(r.answer.updated_at),
                    "answered_in_round": str(r.answer.answered_in_round),
                },
            }
            for asset, r in inputs.feeds.items()
        },
        "equity": [
            [r.business_date.isoformat(), r.account, str(r.cash_cents), str(r.open_trade_equity_cents)]
            for r in inputs.equity
        ],
        "offchain": [
            [r.business_date.isoformat(), r.seg_class.value, r.depository, str(r.amount_cents)] for r in inputs.offchain
        ],
        # (wallet, asset, frozen tokens, wallet frozen, paused, note) of ERC-3643 positions.
        "holds": [
            [w, a, None if h.frozen is None else str(h.frozen), h.wallet_frozen, h.paused, h.note]
            for (w, a), h in sorted(inputs.holds.items())
        ],
    }


def inputs_from_json(doc: Mapping[str, Any]) -> SegregationInputs:
    seg = doc["segregation"]
    assets = {
        a["name"]: AssetSettings(
            name=a["name"],
            chain=a["chain"],
            decimals=a["decimals"],
            kind=AssetKind(a["kind"]),
            address=a["address"],
            native=a["native"],
            price_usd=None if a["price_usd"] is None else Decimal(a["price_usd"]),
            price_feed=a["price_feed"],
            price_max_age=timedelta(seconds=a["price_max_age_seconds"]),
            haircut=None if a["haircut"] is None else Decimal(a["haircut"]),
            dco_haircuts=tuple(Decimal(h) for h in a["dco_haircuts"]),
            issuer=a["issuer"],
            fund_family=a["fund_family"],
            government_fund=a["government_fund"],
            issuer_standard=a.get("issuer_standard", "none"),
        )
        for a in doc["assets"]
    }
    feeds = {}
    for asset, r in doc["feeds"].items():
        ans = r["answer"]
        feeds[asset] = FeedReading(
            feed=r["feed"],
            chain=r["chain"],
            block_number=r["block_number"],
            block_time=r["block_time"],
            error=r["error"],
            answer=None
            if ans is None
            else FeedAnswer(
                decimals=ans["decimals"],
                round_id=int(ans["round_id"]),
                answer=int(ans["answer"]),
                started_at=int(ans["started_at"]),
                updated_at=int(ans["updated_at"]),
                answered_in_round=int(ans["answered_in_round"]),
            ),
        )
    return SegregationInputs(
        as_of=datetime.fromisoformat(doc["as_of"]),
        business_date=date.fromisoformat(doc["business_date"]),
        wallets={
            w["name"]: WalletSettings(
                name=w["name"], chain=w["chain"], address=w["address"], seg_class=SegClass(w["class"])
            )
            for w in doc["wallets"]
        },
        assets=assets,
        segregation=SegregationSettings(
            haircut_floor=Decimal(seg["haircut_floor"]),
            timezone=seg["timezone"],
            targets={SegClass(c): Decimal(v) for c, v in seg["targets"].items()},
        ),
        accounts={a: SegClass(c) for a, c in doc["accounts"].items()},
        book=tuple(BookHolding(a, w, s, int(u)) for a, w, s, u in doc["book"]),
        holdings={(w, a): int(u) for w, a, u in doc["holdings"]},
        chains={
            name: ChainPin(name, BlockRef(c["block_number"], c["block_hash"]), c["timestamp"])
            for name, c in doc["chains"].items()
        },
        unread=dict(doc["unread"]),
        feeds=feeds,
        equity=tuple(EquityRow(date.fromisoformat(d), a, int(c), int(o)) for d, a, c, o in doc["equity"]),
        offchain=tuple(
            OffchainRow(date.fromisoformat(d), SegClass(c), dep, int(amt)) for d, c, dep, amt in doc["offchain"]
        ),
        classes=tuple(SegClass(c) for c in doc["classes"]),
        books_through=date.fromisoformat(doc["books_through"]) if doc.get("books_through") else None,
        limits=tuple(
            ConcentrationLimit(lim["name"], Decimal(lim["share"]), ConcentrationScope(lim["scope"]))
            for lim in doc["limits"]
        ),
        # Statements stored before issuer holds were read have none: nothing encumbered.
        holds={
            (w, a): IssuerHold(None if frozen is None else int(frozen), wallet_frozen, paused, note)
            for w, a, frozen, wallet_frozen, paused, note in doc.get("holds", [])
        },
    )
