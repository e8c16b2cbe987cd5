"""Books against chain, per wallet x asset, at one pinned block.

Invariant: every configured wallet x every asset on its chain yields exactly one Position
(zero-and-zero rows included), and a Finding exactly when |on-chain - book| exceeds the
asset's tolerance. The signed amount is on-chain minus book. A books file may not leave a
wallet x asset's book balance beyond ±(2^256 - 1) (``BalanceBound``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from reconciler.domain import (
    UINT256_MAX,
    BlockRef,
    BookRow,
    BreakKey,
    BreakKind,
    Finding,
    Position,
    Severity,
    format_amount,
)
from reconciler.inputs.settings import AssetSettings, WalletSettings

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


# ----------------------------------------------------------------------------- the books' bound


class BalanceBound:
    """The book balance of each wallet x asset, the ledger's plus a file's rows as they come,
    and the line from which it stays beyond ±(2^256 - 1).

    No custody wallet can hold more than a uint256, and the ledger stores balances as
    NUMERIC(78, 0): a file that ends beyond the bound would otherwise import and break every
    later run. Only the total after the file counts; the line named is the one from which the
    running total (ledger first, then the file in order) stays out of range.
    """

    def __init__(self, existing: Mapping[tuple[str, str], int]) -> None:
        self._existing = existing
        self._totals: dict[tuple[str, str], int] = {}
        self._crossed: dict[tuple[str, str], int] = {}  # pair -> line

    def add(self, rows: Iterable[BookRow]) -> None:
        totals, crossed = self._totals, self._crossed
        for row in rows:
            pair = (row.wallet, row.asset)
            before = totals.get(pair, self._existing.get(pair, 0))
            after = before + row.amount
            totals[pair] = after
            if abs(after) <= UINT256_MAX:
                crossed.pop(pair, None)
            elif abs(before) <= UINT256_MAX or pair not in crossed:
                crossed[pair] = row.line

    def problems(self) -> list[str]:
        problems: list[str] = []
        for pair, line in sorted(self._crossed.items(), key=lambda item: item[1]):
            wallet, asset = pair
            stored = self._existing.get(pair, 0)
            total = self._totals[pair]
            side = "above 2^256 - 1" if total > 0 else "below -(2^256 - 1)"
            problems.append(
                f"line {line}, column amount: the book balance of wallet {wallet} x asset {asset} would be "
                f"{total} base units, {side}, which no token balance can reach "
                f"(ledger before this file: {stored}; this file adds {total - stored}); "
                "check the amounts and the asset's decimals"
            )
        return problems
