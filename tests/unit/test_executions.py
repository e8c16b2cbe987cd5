"""The execution analyzer: each rule on hand-built executions (the chain side is tested against
Anvil in tests/integration/test_executions.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain import Severity, eip55
from reconciler.engine.executions import (
    APPROVED_HASHES_SLOT,
    EIP1967_BEACON_SLOT,
    EIP1967_IMPLEMENTATION_SLOT,
    MODULES_SLOT,
    NONCE_SLOT,
    OWNERS_SLOT,
    SINGLETON_SLOT,
    AccountDiff,
    Authorization,
    Execution,
    ExecutionPolicy,
    Frame,
    ProfileKind,
    Rule,
    StorageChange,
    WalletProfile,
    analyze,
    mapping_slot,
    nested_mapping_slot,
    slot_meanings,
    written_mapping_entries,
)

WALLET = eip55("0x" + "aa" * 20)
SINGLETON = eip55("0x" + "5a" * 20)
ROGUE = eip55("0x" + "0b" * 20)
OWNER = eip55("0x" + "01" * 19 + "02")
APPROVER = eip55("0x" + "ab" * 20)
RELAYER = eip55("0x" + "cc" * 20)
HIDDEN = eip55("0x" + "de" * 20)
MULTISEND_CALL_ONLY = "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"
EXEC = bytes.fromhex("6a761202")
APPROVE_HASH = bytes.fromhex("d4d9bdcd")

SAFE = WalletProfile(
    "vault",
    WALLET,
    ProfileKind.SAFE,
    code_targets=frozenset({SINGLETON}),
    owners=(OWNER,),
    approvers=(APPROVER,),
)
POLICY = ExecutionPolicy(1, frozenset({MULTISEND_CALL_ONLY}), max_fee=5 * 10**16)


def word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def execution(*inner: Frame, diff: AccountDiff | None = None, **kw: object) -> Execution:
    """A relayer's execTransaction into the wallet, whose proxy delegatecalls its singleton,
    which makes the ``inner`` calls in the wallet's context."""
    root = Frame(
        "CALL",
        RELAYER,
        WALLET,
        input=EXEC + bytes(64),
        calls=(Frame("DELEGATECALL", WALLET, SINGLETON, input=EXEC + bytes(64), path="0", calls=inner),),
    )
    fields: dict[str, object] = {
        "chain": "eth",
        "block_number": 10,
        "block_hash": "0x" + "11" * 32,
        "tx_hash": "0x" + "22" * 32,
        "sender": RELAYER,
        "root": root,
        "diffs": {WALLET: diff} if diff is not None else {},
    }
    fields.update(kw)
    return Execution(**fields)  # type: ignore[arg-type]


def nonce_step(before: int = 4, after: int = 5) -> StorageChange:
    return StorageChange(NONCE_SLOT, before, after)


def rules(found: list) -> list[Rule]:  # type: ignore[type-arg]
    return [f.rule for f in found]


def test_an_ordinary_execution_is_clean() -> None:
    transfer = Frame("CALL", WALLET, RELAYER, value=10**18, path="0.0")
    ex = execution(transfer, diff=AccountDiff(WALLET, balance=(2 * 10**18, 10**18), storage=(nonce_step(),)))
    assert analyze(ex, [SAFE], POLICY) == []


def test_delegatecall_to_foreign_code_is_critical_and_names_the_target() -> None:
    ex = execution(Frame("DELEGATECALL", WALLET, ROGUE, input=bytes.fromhex("13f80e30") + bytes(32), path="0.0"))
    [found] = analyze(ex, [SAFE], POLICY)
    assert found.rule is Rule.DELEGATECALL and found.severity is Severity.CRITICAL
    assert found.target == ROGUE and ROGUE in found.detail and "call 0.0" in found.detail
    assert found.tx_hash == "0x" + "22" * 32


def test_an_allowlisted_delegatecall_is_not_a_finding_but_its_writes_are() -> None:
    batch = Frame("DELEGATECALL", WALLET, MULTISEND_CALL_ONLY, path="0.0")
    assert analyze(execution(batch, diff=AccountDiff(WALLET, storage=(nonce_step(),))), [SAFE], POLICY) == []
    swapped = AccountDiff(WALLET, storage=(nonce_step(), StorageChange(SINGLETON_SLOT, int(SINGLETON, 16), 7)))
    found = analyze(execution(batch, diff=swapped), [SAFE], POLICY)
    assert rules(found) == [Rule.WALLET_STORAGE_WRITE]
    assert "singleton (slot 0)" in found[0].detail and "wrote its configuration" in found[0].detail


def test_a_reverted_delegatecall_is_still_reported() -> None:
    ex = execution(Frame("DELEGATECALL", WALLET, ROGUE, error="execution reverted", path="0.0"))
    [found] = analyze(ex, [SAFE], POLICY)
    assert found.rule is Rule.DELEGATECALL and "reverted" in found.detail


def test_the_proxy_running_a_new_singleton_is_a_delegatecall_finding() -> None:
    """The transient swap: in the drain transaction the proxy itself delegatecalls the rogue
    singleton, because slot 0 was rewritten in an earlier transaction."""
    rogue = Frame("DELEGATECALL", WALLET, ROGUE, path="0")
    root = Frame("CALL", RELAYER, WALLET, input=bytes.fromhex("deadbeef"), calls=(rogue,))
    ex = execution(root=root)
    [found] = analyze(ex, [SAFE], POLICY)
    assert found.rule is Rule.DELEGATECALL and found.target == ROGUE


def test_nonce_moves_exactly_once_per_exec_transaction() -> None:
    assert analyze(execution(diff=AccountDiff(WALLET, storage=(nonce_step(4, 5),))), [SAFE], POLICY) == []
    for before, after in ((4, 6), (5, 4), (4, 0)):
        found = analyze(execution(diff=AccountDiff(WALLET, storage=(nonce_step(before, after),))), [SAFE], POLICY)
        assert rules(found) == [Rule.WALLET_STORAGE_WRITE] and "nonce (slot 5)" in found[0].detail


def test_a_nonce_write_without_exec_transaction_is_a_finding() -> None:
    root = Frame("CALL", RELAYER, WALLET, input=bytes.fromhex("deadbeef"))
    ex = execution(root=root, diffs={WALLET: AccountDiff(WALLET, storage=(nonce_step(),))})
    assert rules(analyze(ex, [SAFE], POLICY)) == [Rule.WALLET_STORAGE_WRITE]


def test_approve_hash_by_an_owner_is_expected_and_any_other_approved_hash_is_not() -> None:
    digest = bytes(range(32))
    slot = nested_mapping_slot(word(OWNER), digest, APPROVED_HASHES_SLOT)
    root = Frame("CALL", OWNER, WALLET, input=APPROVE_HASH + digest)
    ok = execution(root=root, sender=OWNER, diffs={WALLET: AccountDiff(WALLET, storage=(StorageChange(slot, 0, 1),))})
    assert analyze(ok, [SAFE], POLICY) == []
    forged_slot = nested_mapping_slot(word(HIDDEN), digest, APPROVED_HASHES_SLOT)
    forged_diff = AccountDiff(WALLET, storage=(StorageChange(forged_slot, 0, 1),))
    forged = execution(root=root, sender=OWNER, diffs={WALLET: forged_diff})
    found = analyze(forged, [SAFE], POLICY)
    assert rules(found) == [Rule.WALLET_STORAGE_WRITE]


def test_hidden_mapping_entries_are_named_and_remembered() -> None:
    """owners[y] = 1 and modules[x] = 1 written straight into the mappings, off the lists."""
    owner_slot, module_slot = mapping_slot(word(HIDDEN), OWNERS_SLOT), mapping_slot(word(ROGUE), MODULES_SLOT)
    calldata = b"\x00" * 4 + word(HIDDEN) + word(ROGUE)
    writer = Frame("DELEGATECALL", WALLET, MULTISEND_CALL_ONLY, input=calldata, path="0.0")
    writes = (nonce_step(), StorageChange(owner_slot, 0, 1), StorageChange(module_slot, 0, 1))
    diff = AccountDiff(WALLET, storage=writes)
    ex = execution(writer, diff=diff)
    [found] = analyze(ex, [SAFE], POLICY)
    assert found.rule is Rule.WALLET_STORAGE_WRITE and found.severity is Severity.CRITICAL
    assert f"owners[{HIDDEN}]" in found.detail and f"modules[{ROGUE}]" in found.detail
    assert written_mapping_entries(ex, SAFE) == {"owners": {HIDDEN}, "modules": {ROGUE}}


def test_a_write_of_no_known_meaning_is_still_reported() -> None:
    ex = execution(diff=AccountDiff(WALLET, storage=(nonce_step(), StorageChange(12345, 0, 9))))
    [found] = analyze(ex, [SAFE], POLICY)
    assert "no known meaning" in found.detail and "wrote its storage" in found.detail


def test_eoa_delegation_set_and_cleared() -> None:
    eoa = WalletProfile("hot", WALLET, ProfileKind.EOA, approvers=(APPROVER,))
    designator = bytes.fromhex("ef0100") + bytes.fromhex(ROGUE[2:])
    for before, after in ((b"", designator), (designator, b"")):
        ex = execution(root=Frame("CALL", RELAYER, RELAYER), diffs={WALLET: AccountDiff(WALLET, code=(before, after))})
        [found] = analyze(ex, [eoa], POLICY)
        assert found.rule is Rule.CODE_CHANGE and found.severity is Severity.CRITICAL and ROGUE in found.detail


def test_an_authorization_signed_by_the_wallet_is_critical_even_if_not_applied() -> None:
    eoa = WalletProfile("hot", WALLET, ProfileKind.EOA)
    auth = Authorization(WALLET, ROGUE, 1, 7)
    [found] = analyze(execution(root=Frame("CALL", RELAYER, RELAYER), authorizations=(auth,)), [eoa], POLICY)
    assert found.rule is Rule.CODE_CHANGE and "authorization" in found.detail
    other_chain = Authorization(WALLET, ROGUE, 5, 7)
    assert analyze(execution(root=Frame("CALL", RELAYER, RELAYER), authorizations=(other_chain,)), [eoa], POLICY) == []


def test_an_approver_authorization_names_the_transaction() -> None:
    auth = Authorization(APPROVER, ROGUE, 0, 3)
    [found] = analyze(execution(root=Frame("CALL", RELAYER, RELAYER), authorizations=(auth,)), [SAFE], POLICY)
    assert found.rule is Rule.APPROVER_DELEGATION and found.severity is Severity.ERROR
    assert APPROVER in found.detail and found.tx_hash == "0x" + "22" * 32


@given(st.integers(min_value=0, max_value=10**20))
def test_fee_ceiling(fee: int) -> None:
    eoa = WalletProfile("hot", WALLET, ProfileKind.EOA)
    ex = execution(root=Frame("CALL", WALLET, RELAYER), sender=WALLET, fee=fee, fee_recipient=HIDDEN)
    found = analyze(ex, [eoa], POLICY)
    if fee > POLICY.max_fee:  # type: ignore[operator]
        assert rules(found) == [Rule.FEE_CEILING] and found[0].amount == fee and HIDDEN in found[0].detail
    else:
        assert found == []


def test_unknown_contract_layouts_are_judged_on_proxy_slots_only() -> None:
    contract = WalletProfile("other", WALLET, ProfileKind.CONTRACT, code_targets=frozenset({SINGLETON}))
    quiet = execution(diff=AccountDiff(WALLET, storage=(StorageChange(3, 1, 2),)))
    assert analyze(quiet, [contract], POLICY) == []
    for slot in (EIP1967_IMPLEMENTATION_SLOT, EIP1967_BEACON_SLOT):
        upgraded = execution(diff=AccountDiff(WALLET, storage=(StorageChange(slot, 1, 2),)))
        assert rules(analyze(upgraded, [contract], POLICY)) == [Rule.WALLET_STORAGE_WRITE]


def test_executions_of_other_accounts_are_not_judged() -> None:
    stranger = Frame("CALL", RELAYER, ROGUE, calls=(Frame("DELEGATECALL", ROGUE, HIDDEN, path="0"),))
    assert analyze(execution(root=stranger), [SAFE], POLICY) == []


def test_slot_meanings_of_nested_mappings() -> None:
    digest = bytes([7]) * 32
    slot = nested_mapping_slot(word(OWNER), digest, APPROVED_HASHES_SLOT)
    meanings = slot_meanings([slot, SINGLETON_SLOT, 99], [OWNER.lower()], [digest])
    assert meanings[slot] == f"approvedHashes[{OWNER}][0x{digest.hex()}]"
    assert meanings[SINGLETON_SLOT] == "singleton (slot 0)" and 99 not in meanings


def test_the_wallets_own_deployment_is_not_a_change() -> None:
    """Its setup writes owners, threshold and singleton: what the wallet became, which the first
    baseline records."""
    setup = (StorageChange(SINGLETON_SLOT, 0, int(SINGLETON, 16)), StorageChange(4, 0, 2))
    created = execution(
        root=Frame("CREATE2", RELAYER, WALLET),
        diffs={WALLET: AccountDiff(WALLET, code=(b"", b"\x60\x80"), storage=setup)},
    )
    assert analyze(created, [SAFE], POLICY) == []
