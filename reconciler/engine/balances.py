"""Books against chain, per wallet x asset, at one pinned block.

Invariant: every configured wallet x every asset on its chain yields exactly one Position
(zero-and-zero rows included), and a Finding exactly when |on-chain - book| exceeds the
asset's tolerance. The signed amount is on-chain minus book.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from reconciler.config import AssetSettings, WalletSettings
from reconciler.domain import (
    BlockRef,
    BreakKey,
    BreakKind,
    Finding,
    Position,
    Severity,
    format_amount,
)

WalletAsset = tuple[str, str]


def positions_for_chain(
    chain: str,
    wallets: Sequence[WalletSettings],
    assets: Sequence[AssetSettings],
    book: Mapping[WalletAsset, int],
    onchain: Mapping[WalletAsset, int],
) -> list[Position]:
    """One row per wallet x asset of the chain; a missing on-chain value is a caller bug."""
    rows = []
    for wallet in wallets:
        for asset in assets:
            key = (wallet.name, asset.name)
            if key not in onchain:
                raise KeyError(f"no on-chain balance read for {wallet.name} x {asset.name}")
            rows.append(
                Position(
                    chain=chain,
                    wallet=wallet.name,
                    asset=asset.name,
                    decimals=asset.decimals,
                    book=book.get(key, 0),
                    onchain=onchain[key],
                )
            )
    return rows


def check_balances(
    positions: Iterable[Position],
    tolerances: Mapping[str, int],
    block: BlockRef,
) -> list[Finding]:
    """A balance_mismatch (severity error) for each difference outside the asset's tolerance."""
    findings = []
    for pos in positions:
        diff = pos.difference
        if abs(diff) <= tolerances.get(pos.asset, 0):
            continue
        direction = "less" if diff < 0 else "more"
        findings.append(
            Finding(
                key=BreakKey(BreakKind.BALANCE_MISMATCH, pos.chain, pos.wallet, pos.asset),
                severity=Severity.ERROR,
                amount=diff,
                detail=(
                    f"chain holds {format_amount(pos.onchain, pos.decimals)} {pos.asset}, "
                    f"books say {format_amount(pos.book, pos.decimals)}: "
                    f"{format_amount(abs(diff), pos.decimals)} {direction} on chain "
                    f"at block {block.number} ({block.hash})"
                ),
            )
        )
    return findings
