"""`books draft`: book entries for what was observed on chain, drafted for the back office to
review and import — the gas fees custody wallets paid and, on request, the movements no book
entry names.

Invariants: nothing here writes to the ledger (the draft is a file a person reviews, then
imports with `books import`); an entry's id is derived from what it books
(``fee-<chain>-<tx hash>``, ``obs-<chain>-<tx hash>-<position>``), so a draft made again writes
the same ids and an entry already in the ledger is never drafted twice; amounts are exact, in
the asset's units; an account is never guessed between several: a wallet whose entries name
more than one candidate needs ``--account``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from reconciler.domain import MAX_ENTRY_ID_LENGTH, format_amount
from reconciler.errors import ReconcilerError
from reconciler.inputs.settings import Settings, shown_names
from reconciler.ledger import surveillance_store
from reconciler.ledger.store import Ledger

COLUMNS = ("entry_id", "date", "account", "wallet", "asset", "amount", "kind", "memo", "tx_hash")


@dataclass(frozen=True, slots=True)
class DraftEntry:
    entry_id: str
    date: date
    account: str
    wallet: str
    asset: str
    amount: int  # base units, negative out of custody
    decimals: int
    kind: str
    memo: str
    tx_hash: str
    chain: str
    block_number: int
    what: str  # "fee" | "unbooked"

    def row(self) -> list[str]:
        return [
            self.entry_id,
            self.date.isoformat(),
            self.account,
            self.wallet,
            self.asset,
            plain_amount(self.amount, self.decimals),
            self.kind,
            self.memo,
            self.tx_hash,
        ]


@dataclass(frozen=True, slots=True)
class Draft:
    entries: tuple[DraftEntry, ...]
    already_booked: int  # observed fees or movements left out: the ledger books them already
    outside: int  # movements of a wallet or asset no longer configured, left out


def plain_amount(units: int, decimals: int) -> str:
    """Base units as the books CSV writes an amount: the asset's units, no trailing zeros
    (``-0.000021``, ``3``)."""
    text = format_amount(units, decimals)
    return text.rstrip("0").rstrip(".") if "." in text else text


def draft(
    settings: Settings,
    ledger: Ledger,
    *,
    fees: bool = True,
    unbooked: bool = False,
    account: str | None = None,
    since: date | None = None,
    wallets: Sequence[str] = (),
) -> Draft:
    """The entries to draft, in chain and block order. Raises ReconcilerError (nothing drafted)
    when ``account`` is unknown, or when a row's account cannot be told without it."""
    accounts = {a.account: a.seg_class for a in ledger.accounts()}
    if account is not None and account not in accounts:
        known = ", ".join(sorted(accounts)[:10]) or "none imported yet (reconciler accounts import FILE)"
        raise ReconcilerError(f"--account {account!r} is not an account of the ledger; accounts: {known}")
    for name in wallets:
        if name not in settings.wallets:
            raise ReconcilerError(f"--wallet {name!r} is not a configured wallet ({shown_names(settings.wallets)})")
    directions = [d for d, wanted in (("fee", fees), ("in", unbooked), ("out", unbooked)) if wanted]
    movements = surveillance_store.list_movements(ledger, None, "observed", directions)
    by_wallet = ledger.wallet_accounts()
    booked = ledger.booked_transactions()
    entries: list[DraftEntry] = []
    already = outside = 0
    unresolved: dict[str, str] = {}
    for m in movements:
        when = datetime.fromtimestamp(m.block_time, UTC).date()
        if (since is not None and when < since) or (wallets and m.wallet not in wallets):
            continue
        wallet = settings.wallets.get(m.wallet)
        asset = settings.assets.get(m.asset)
        if wallet is None or asset is None or asset.chain != m.chain:
            outside += 1
            continue
        tx = m.tx_hash.lower()
        carried = booked.get((m.wallet, m.asset, tx), {})
        fee_id = f"fee-{m.chain}-{tx}"
        if m.direction == "fee":
            entry_id = fee_id
            # Booked already: this draft's entry was imported, or an adjustment of the wallet's
            # native coin names the transaction (a fee booked by hand).
            if entry_id in carried or "adjustment" in carried.values():
                already += 1
                continue
            amount, kind = -m.amount, "adjustment"
            memo = f"gas fee paid by {m.wallet} for tx {tx} (block {m.block_number})"
            chosen, why = _fee_account(account, by_wallet, m.wallet, asset.name)
        else:
            entry_id = f"obs-{m.chain}-{tx}-{m.position}"
            # Booked already: an entry of this wallet x asset carries the tx — but not one that
            # books the gas of that tx (this draft's fee entry, or a native-coin adjustment).
            books_it = [
                e for e, kind in carried.items() if e != fee_id and not (asset.native and kind == "adjustment")
            ]
            if entry_id in carried or books_it:
                already += 1
                continue
            inflow = m.direction == "in"
            amount, kind = (m.amount, "deposit") if inflow else (-m.amount, "withdrawal")
            party = m.from_address if inflow else m.to_address
            memo = (
                f"observed {'deposit from' if inflow else 'withdrawal to'} {party} in tx {tx} "
                f"(block {m.block_number}, {m.position})"
            )
            chosen, why = _movement_account(account, by_wallet, m.wallet, asset.name)
        if chosen is None:
            unresolved.setdefault(f"{m.wallet} {asset.name} ({'fees' if m.direction == 'fee' else 'movements'})", why)
            continue
        if len(entry_id) > MAX_ENTRY_ID_LENGTH:
            raise ReconcilerError(
                f"chain name {m.chain!r} makes entry ids longer than {MAX_ENTRY_ID_LENGTH} characters"
            )
        what = "fee" if m.direction == "fee" else "unbooked"
        entries.append(
            DraftEntry(
                entry_id, when, chosen, m.wallet, asset.name, amount, asset.decimals, kind, memo, tx, m.chain,
                m.block_number, what,
            )
        )
    if unresolved:
        listed = "; ".join(f"{where}: {why}" for where, why in sorted(unresolved.items()))
        raise ReconcilerError(
            f"cannot tell which account to book to, nothing was drafted: {listed}. Give --account ACCOUNT "
            "(with --wallet to draft one wallet at a time)"
        )
    return Draft(tuple(entries), already, outside)


def _fee_account(
    given: str | None, by_wallet: Mapping[tuple[str, str], Mapping[str, str]], wallet: str, asset: str
) -> tuple[str | None, str]:
    """Gas is the firm's cost: the house account the wallet's entries name, when it is one."""
    if given is not None:
        return given, ""
    house = sorted(
        {a for (w, _), accounts in by_wallet.items() if w == wallet for a, c in accounts.items() if c == "house"}
    )
    if len(house) == 1:
        return house[0], ""
    if not house:
        return None, "no house account books into this wallet"
    return None, f"several house accounts book into it ({', '.join(house)})"


def _movement_account(
    given: str | None, by_wallet: Mapping[tuple[str, str], Mapping[str, str]], wallet: str, asset: str
) -> tuple[str | None, str]:
    """The one account whose entries book this wallet x asset (else this wallet)."""
    if given is not None:
        return given, ""
    for candidates in (
        sorted(by_wallet.get((wallet, asset), {})),
        sorted({a for (w, _), accounts in by_wallet.items() if w == wallet for a in accounts}),
    ):
        if len(candidates) == 1:
            return candidates[0], ""
        if candidates:
            return None, f"several accounts book into it ({', '.join(candidates)})"
    return None, "no account books into this wallet yet"


def to_csv(entries: Iterable[DraftEntry]) -> str:
    """The books CSV (the documented columns, tx_hash included), header first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for e in entries:
        writer.writerow(e.row())
    return buffer.getvalue()
