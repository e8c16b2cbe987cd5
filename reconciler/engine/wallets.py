"""Wallet-configuration and issuer-control checks (pure: no web3, no SQL).

Invariants:
- Each check is a pass with one signature, ``(WalletObservations) -> list[Finding]``, listed in
  ``WALLET_CHECKS``; it returns breaks as data and raises only on a caller's bug (a wallet,
  approver or control that the caller did not read): what was not read is never taken as
  clean.
- One finding per key and run: ``wallet_config_change`` is keyed (chain, wallet) and carries
  every difference from the reviewed baseline plus every approver that holds an EIP-7702
  delegation; ``asset_frozen`` is keyed (chain, wallet, asset) and carries every issuer control
  that stops that position from moving. Severity is the worst of what the finding carries.
  ``collateral_encumbered`` is keyed (chain, wallet, asset) too: the part of an ERC-3643
  position the issuer froze.
- ``wallet_check_coverage`` names every key the passes looked at, so a break is resolved only
  by a run that checked where it lives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from reconciler.domain import BlockRef, BreakKey, BreakKind, Finding, Severity, format_amount
from reconciler.inputs.settings import ERC3643
from reconciler.walletconfig import (
    COMPARED_FIELDS,
    ControlState,
    FreezeReading,
    FrozenTokensReading,
    IssuerControls,
    JsonValue,
    PauseReading,
    TokenImplementation,
    WalletConfig,
)


class FieldChange(NamedTuple):
    """One configuration field that differs from the baseline (values as in the JSON)."""

    field: str
    before: JsonValue
    after: JsonValue


def _json_value(value: object) -> JsonValue:
    if isinstance(value, tuple):
        return [str(v) for v in value]
    if value is None or isinstance(value, int | str):
        return value
    raise TypeError(f"unexpected configuration value {value!r}")


def compare_config(baseline: WalletConfig, current: WalletConfig) -> list[FieldChange]:
    """Every compared field (``COMPARED_FIELDS``, in that order) whose value differs.

    The wallet's name, chain, block and nonce are not compared: they identify the reading or
    move with every transaction. Lists compare in order (the wallet's linked-list order).
    """
    changes = []
    for name in COMPARED_FIELDS:
        before, after = getattr(baseline, name), getattr(current, name)
        if before != after:
            changes.append(FieldChange(name, _json_value(before), _json_value(after)))
    return changes


@dataclass(frozen=True, slots=True)
class WatchedWallet:
    """A configured custody wallet: its name, address and instruction approvers (EIP-55)."""

    name: str
    address: str
    approvers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WatchedAsset:
    """A configured ERC-20 asset and the issuer controls to read on it."""

    name: str
    address: str
    decimals: int
    freeze_check: str | None = None
    pause_check: bool = False
    issuer_standard: str = "none"  # "erc3643": also isFrozen, paused and getFrozenTokens, all critical

    @property
    def erc3643(self) -> bool:
        return self.issuer_standard == ERC3643

    def freeze_views(self) -> tuple[tuple[str, Severity], ...]:
        """The ``(address) returns (bool)`` views to read for every wallet, with the severity
        of a true answer: ``freeze_check`` (error), and ERC-3643's ``isFrozen`` (critical: a
        frozen wallet can neither send nor receive); one read when they name the same view."""
        views: dict[str, Severity] = {}
        if self.freeze_check is not None:
            views[self.freeze_check] = Severity.ERROR
        if self.erc3643:
            views[ERC3643_FREEZE_VIEW] = Severity.CRITICAL
        return tuple(views.items())

    @property
    def pause_severity(self) -> Severity | None:
        """The severity of a paused token (None: paused() is not read)."""
        if self.erc3643:
            return Severity.CRITICAL
        return Severity.ERROR if self.pause_check else None


ERC3643_FREEZE_VIEW = "isFrozen"


@dataclass(frozen=True, slots=True)
class WalletObservations:
    """What the wallet passes need about one chain, all read at ``block``.

    ``baselines`` and ``configs`` are keyed by wallet name (a wallet with no baseline yet is
    not compared); ``approver_delegations`` by approver address (None: no delegation);
    ``token_baselines`` by token address; ``balances`` by (wallet name, asset name), and a
    position missing from it counts as holding the asset.
    """

    chain: str
    block: BlockRef
    wallets: tuple[WatchedWallet, ...]
    configs: Mapping[str, WalletConfig]
    baselines: Mapping[str, WalletConfig] = field(default_factory=dict)
    approver_delegations: Mapping[str, str | None] = field(default_factory=dict)
    assets: tuple[WatchedAsset, ...] = ()
    controls: IssuerControls | None = None
    token_baselines: Mapping[str, TokenImplementation] = field(default_factory=dict)
    balances: Mapping[tuple[str, str], int] = field(default_factory=dict)


def _show(value: JsonValue) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return str(value)


def _at(block: BlockRef) -> str:
    return f"at block {block.number} ({block.hash})"


def check_wallet_configs(obs: WalletObservations) -> list[Finding]:
    """A ``wallet_config_change`` per wallet whose configuration differs from its baseline
    (critical: each field's before and after), or one of whose approvers holds an EIP-7702
    delegation (error, when that is all: the approver's key alone no longer controls the
    account, so its signatures no longer prove the approver acted)."""
    findings = []
    for wallet in obs.wallets:
        if wallet.name not in obs.configs:
            raise KeyError(f"no configuration read for wallet {wallet.name}")
        current = obs.configs[wallet.name]
        baseline = obs.baselines.get(wallet.name)
        changes = compare_config(baseline, current) if baseline is not None else []
        delegated = []
        for approver in wallet.approvers:
            if approver not in obs.approver_delegations:
                raise KeyError(f"no code read for approver {approver} of wallet {wallet.name}")
            delegate = obs.approver_delegations[approver]
            if delegate is not None:
                delegated.append((approver, delegate))
        if not changes and not delegated:
            continue
        parts = []
        if changes and baseline is not None:
            listed = "; ".join(f"{c.field}: {_show(c.before)} -> {_show(c.after)}" for c in changes)
            parts.append(f"configuration differs from the baseline reviewed at block {baseline.block_number}: {listed}")
        parts += [
            f"approver {approver} has an EIP-7702 delegation to {delegate}: "
            "its key alone no longer controls the account"
            for approver, delegate in delegated
        ]
        findings.append(
            Finding(
                key=BreakKey(BreakKind.WALLET_CONFIG_CHANGE, obs.chain, wallet.name, None),
                severity=Severity.CRITICAL if changes else Severity.ERROR,
                amount=None,
                detail=f"{wallet.name} ({current.address}) {_at(obs.block)}: " + "; ".join(parts),
            )
        )
    return findings


def _worst(severities: list[Severity]) -> Severity:
    return max(severities, key=lambda s: s.rank)


def check_issuer_controls(obs: WalletObservations) -> list[Finding]:
    """An ``asset_frozen`` per wallet x asset that issuer controls stop from moving.

    - the issuer froze (blacklisted) the wallet: error, whatever the wallet holds; critical for
      an ERC-3643 token's ``isFrozen`` (the wallet can neither send nor receive);
    - the token is paused: error (critical for an ERC-3643 token), for each wallet holding it
      (a non-zero or unknown balance):
      one per position rather than one per token, because a break is keyed by wallet and the
      position is what cannot move;
    - a control that could not be read (reverted, no answer, not a bool): warning, never
      taken as "not frozen";
    - the token's implementation (EIP-1967 or ZeppelinOS slot) differs from its baseline:
      warning, for each wallet holding it: the issuer's rules for that collateral changed.
    """
    controls = obs.controls if obs.controls is not None else IssuerControls(block_number=obs.block.number)
    freezes: dict[tuple[str, str, str], FreezeReading] = {(r.token, r.holder, r.function): r for r in controls.freezes}
    pauses: dict[str, PauseReading] = {r.token: r for r in controls.pauses}
    implementations: dict[str, TokenImplementation] = {i.token: i for i in controls.implementations}
    findings = []
    # What each asset asks of every wallet, found once per asset rather than once per wallet.
    asked = [(asset, asset.freeze_views(), asset.pause_severity, obs.token_baselines.get(asset.address))
             for asset in obs.assets]  # fmt: skip
    for wallet in obs.wallets:
        for asset, views, pause_severity, before in asked:
            balance = obs.balances.get((wallet.name, asset.name))
            holds = balance is None or balance != 0
            reasons: list[tuple[Severity, str]] = []
            for view, severity in views:
                reading = freezes.get((asset.address, wallet.address, view))
                if reading is None:
                    raise KeyError(f"no {view} read for wallet {wallet.name} on {asset.name}")
                call = f"{view}({wallet.address})"
                if reading.state is ControlState.YES:
                    critical = severity is Severity.CRITICAL
                    blocked = " (ERC-3643: the wallet can neither send nor receive)" if critical else ""
                    reasons.append((severity, f"frozen by the issuer: {call} is true{blocked}"))
                elif reading.state is ControlState.UNKNOWN:
                    reasons.append((Severity.WARNING, f"could not tell whether frozen: {reading.note or call}"))
            if pause_severity is not None and holds:
                pause = pauses.get(asset.address)
                if pause is None:
                    raise KeyError(f"no paused() read for {asset.name}")
                if pause.state is ControlState.YES:
                    reasons.append((pause_severity, f"the token {asset.name} is paused"))
                elif pause.state is ControlState.UNKNOWN:
                    reasons.append((Severity.WARNING, f"could not tell whether paused: {pause.note or 'paused()'}"))
            if before is not None and holds:
                now = implementations.get(asset.address)
                if now is None:
                    raise KeyError(f"no implementation slots read for {asset.name}")
                for label, old, new in (
                    ("EIP-1967", before.eip1967, now.eip1967),
                    ("ZeppelinOS", before.zeppelinos, now.zeppelinos),
                ):
                    if old != new:
                        reasons.append(
                            (
                                Severity.WARNING,
                                f"the token's {label} implementation changed from {old or 'none'} to "
                                f"{new or 'none'} since block {before.block_number}",
                            )
                        )
            if not reasons:
                continue
            held = (
                f"holds {format_amount(balance, asset.decimals)} {asset.name}"
                if balance is not None
                else "balance not read"
            )
            findings.append(
                Finding(
                    key=BreakKey(BreakKind.ASSET_FROZEN, obs.chain, wallet.name, asset.name),
                    severity=_worst([s for s, _ in reasons]),
                    amount=balance,
                    detail=(
                        f"{wallet.name} ({wallet.address}) x {asset.name} {_at(obs.block)}: "
                        + "; ".join(text for _, text in reasons)
                        + f"; {held}"
                    ),
                )
            )
    return findings


def check_encumbrances(obs: WalletObservations) -> list[Finding]:
    """A ``collateral_encumbered`` (warning) per wallet x ERC-3643 asset of which the issuer
    froze part (``getFrozenTokens`` above zero): those tokens cannot move, and a statement
    values only the free part. Amount: the frozen tokens, exactly as the token says. A view
    that could not be read is the same break with no amount: "could not tell", never "none
    frozen". Resolved by the run that reads zero."""
    controls = obs.controls if obs.controls is not None else IssuerControls(block_number=obs.block.number)
    frozen: dict[tuple[str, str], FrozenTokensReading] = {(r.token, r.holder): r for r in controls.frozen}
    findings = []
    for wallet in obs.wallets:
        for asset in obs.assets:
            if not asset.erc3643:
                continue
            reading = frozen.get((asset.address, wallet.address))
            if reading is None:
                raise KeyError(f"no getFrozenTokens read for wallet {wallet.name} on {asset.name}")
            if reading.amount == 0:
                continue
            balance = obs.balances.get((wallet.name, asset.name))
            where = f"{wallet.name} ({wallet.address}) x {asset.name} {_at(obs.block)}"
            if reading.amount is None:
                text = f"could not tell how many tokens the issuer froze: {reading.note or 'getFrozenTokens'}"
            else:
                shown = format_amount(reading.amount, asset.decimals)
                if balance is None:
                    held = "its balance was not read"
                else:
                    free = max(balance - reading.amount, 0)
                    held = (
                        f"of {format_amount(balance, asset.decimals)} held, {format_amount(free, asset.decimals)} "
                        "free to move"
                    )
                text = (
                    f"the issuer froze {shown} {asset.name} (getFrozenTokens({wallet.address})): {held}; "
                    "the frozen tokens cannot move and are not valued as segregated collateral"
                )
            findings.append(
                Finding(
                    key=BreakKey(BreakKind.COLLATERAL_ENCUMBERED, obs.chain, wallet.name, asset.name),
                    severity=Severity.WARNING,
                    amount=reading.amount,
                    detail=f"{where}: {text}",
                )
            )
    return findings


WalletCheck = Callable[[WalletObservations], list[Finding]]
WALLET_CHECKS: tuple[WalletCheck, ...] = (check_wallet_configs, check_issuer_controls, check_encumbrances)


def wallet_check_coverage(
    obs: WalletObservations,
) -> tuple[tuple[BreakKind, tuple[str, ...], tuple[str | None, ...]], ...]:
    """Every position WALLET_CHECKS looked at, as (kind, wallets, assets): each wallet's
    configuration (asset None) and each wallet x asset. Their breaks carry no tx hash."""
    wallets = tuple(w.name for w in obs.wallets)
    return (
        (BreakKind.WALLET_CONFIG_CHANGE, wallets, (None,)),
        (BreakKind.ASSET_FROZEN, wallets, tuple(a.name for a in obs.assets)),
        (BreakKind.COLLATERAL_ENCUMBERED, wallets, tuple(a.name for a in obs.assets if a.erc3643)),
    )
