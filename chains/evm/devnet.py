"""A local Anvil node for tests and the demo: start, deploy, fund, plant, stop.

Invariant: a started node is stopped on every exit path of its owner (context manager,
SIGINT -> SIGTERM -> SIGKILL), and on Linux it also dies with its parent process, so no
Anvil is ever left behind. This module holds keys (Anvil's well-known dev accounts) and is
never used by the reconciler's own reads.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from reconciler.errors import ChainError

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "contracts" / "artifacts"
CANONICAL_MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
# Safe 1.3.0 as published on npm (@gnosis.pm/safe-contracts, a pinned devDependency): the
# product of record that the wallet-configuration reads must be right for.
SAFE_130_ARTIFACTS = REPO_ROOT / "node_modules" / "@gnosis.pm" / "safe-contracts" / "build" / "artifacts" / "contracts"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
_LISTENING = re.compile(r"Listening on ([0-9.]+):([0-9]+)")


def anvil_binary() -> Path:
    """The Anvil binary from the pinned npm package, $RECONCILER_ANVIL, or PATH."""
    override = os.environ.get("RECONCILER_ANVIL")
    if override:
        return Path(override)
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system(), platform.system().lower())
    machine = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine(), platform.machine()
    )
    rel = Path("node_modules") / "@foundry-rs" / f"anvil-{system}-{machine}" / "bin" / "anvil"
    for root in (REPO_ROOT, Path.cwd()):
        if (root / rel).is_file():
            return root / rel
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise ChainError(
        f"Anvil not found (looked for {REPO_ROOT / rel} and on PATH): run `npm ci` at the "
        "repository root (`make demo` and `make test` do it), or set RECONCILER_ANVIL"
    )


def owned_tempdir(prefix: str) -> Path:
    """A temporary folder stamped with this process's pid. Folders of the same prefix whose
    owner is gone (a SIGKILL skips every cleanup) are removed first, so none pile up."""
    root = Path(tempfile.gettempdir())
    for stale in root.glob(f"{prefix}*"):
        try:
            owner = int((stale / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge: no stamp, or not readable
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    (folder / "owner.pid").write_text(str(os.getpid()))
    return folder


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if platform.system() == "Linux":
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class AnvilNode:
    """One Anvil process on a free port of 127.0.0.1."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path, workdir: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path
        self.workdir = workdir

    @classmethod
    def start(cls, chain_id: int = 31337, extra_args: Sequence[str] = (), timeout: float = 30.0) -> AnvilNode:
        workdir = owned_tempdir("reconciler-anvil-")
        log_path = workdir / "anvil.log"
        args = [str(anvil_binary()), "--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id), *extra_args]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                args,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                env={**os.environ, "HOME": str(workdir)},  # keeps Anvil's state spill here
            )
        node = cls(process, "", log_path, workdir)
        try:
            node.url = node._wait_listening(timeout)
            node._wait_answers(timeout)
        except BaseException:
            node.stop()
            raise
        return node

    def _wait_listening(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if match:
                return f"http://{match.group(1)}:{match.group(2)}"
            if self.process.poll() is not None:
                raise ChainError(f"Anvil exited with {self.process.returncode}: {self.log_tail()}")
            time.sleep(0.02)
        raise ChainError(f"Anvil did not start listening within {timeout}s: {self.log_tail()}")

    def _wait_answers(self, timeout: float) -> None:
        w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 2}))
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                version = w3.client_version
                if "anvil" in version.lower():
                    return
                raise ChainError(f"{self.url} is not Anvil: {version}")
            except ChainError:
                raise
            except Exception as exc:  # the node may still be binding; poll again
                last = exc
                time.sleep(0.05)
        raise ChainError(f"Anvil at {self.url} did not answer within {timeout}s: {last}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGINT, then SIGTERM, then SIGKILL; then remove the node's folder."""
        proc = self.process
        for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> AnvilNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def artifact(name: str) -> dict[str, Any]:
    path = ARTIFACTS / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


class Devnet:
    """Drives an Anvil node the way a test or the demo needs: deploy, mint, move, mine."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
        self.deployer: str = self.w3.eth.accounts[0]

    def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if response.get("error"):
            raise ChainError(f"{method} failed: {response['error']}")
        return response.get("result")

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.rpc("evm_mine")

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> None:
        if self.rpc("evm_revert", [snapshot_id]) is not True:
            raise ChainError(f"evm_revert({snapshot_id}) refused")

    def head(self) -> int:
        return int(self.w3.eth.block_number)

    def deploy(self, name: str, *args: Any) -> Contract:
        art = artifact(name)
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        tx = factory.constructor(*args).transact({"from": self.deployer})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        if receipt["status"] != 1:
            raise ChainError(f"deploying {name} failed")
        return cast(Contract, self.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"]))

    def install_multicall3(self, address: str = CANONICAL_MULTICALL3) -> str:
        """Multicall3 has no constructor state, so its runtime code can be set in place."""
        self.rpc("anvil_setCode", [address, artifact("Multicall3")["deployedBytecode"]])
        self.mine()
        return address

    def deploy_token(self, name: str, symbol: str, decimals: int) -> Contract:
        return self.deploy("CollateralToken", name, symbol, decimals, self.deployer)

    def mint(self, token: Contract, to: str, amount: int) -> None:
        self._wait(token.functions.mint(to, amount).transact({"from": self.deployer}))

    def set_native_balance(self, address: str, wei: int) -> None:
        self.rpc("anvil_setBalance", [address, hex(wei)])

    def transfer_as(self, token: Contract, holder: str, to: str, amount: int) -> str:
        """Move tokens out of ``holder`` without its key (anvil_impersonateAccount): how a
        test plants an outflow that nobody authorized. The transaction pays no gas (the block's
        base fee is set to zero for it), so the only change is the token movement: the holder's
        native balance is untouched and nothing needs putting back behind the chain's back."""
        self.rpc("anvil_impersonateAccount", [holder])
        try:
            self.rpc("anvil_setNextBlockBaseFeePerGas", ["0x0"])
            free: Any = {"from": holder, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
            tx = token.functions.transfer(to, amount).transact(free)
            self._wait(tx)
            return "0x" + bytes(tx).hex()
        finally:
            self.rpc("anvil_stopImpersonatingAccount", [holder])
            self.mine()

    def _wait(self, tx: Any) -> None:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        if receipt["status"] != 1:
            raise ChainError(f"transaction {bytes(tx).hex()} reverted")

    # ------------------------------------------------------------ custody wallets and keys

    def new_account(self, wei: int = 10**20) -> LocalAccount:
        """A fresh key (eth-account), funded with ``wei`` by anvil_setBalance and a mined block."""
        account: LocalAccount = Account.create()
        self.set_native_balance(account.address, wei)
        self.mine()
        return account

    def deploy_artifact(self, art: dict[str, Any], *args: Any) -> Contract:
        """Deploy any artifact with ``abi`` and ``bytecode`` (ours or a published one)."""
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        tx = factory.constructor(*args).transact({"from": self.deployer})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        if receipt["status"] != 1:
            raise ChainError(f"deploying {art.get('contract') or art.get('contractName') or 'a contract'} failed")
        return cast(Contract, self.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"]))

    def deploy_custody_wallet(
        self,
        owners: Sequence[str],
        threshold: int,
        fallback_handler: str | None = None,
        singleton: str | None = None,
    ) -> Contract:
        """A CustodyWalletProxy over a CustodyWallet singleton (a new one unless given), set up
        with ``owners`` and ``threshold`` in its deploying transaction. Returned bound to the
        CustodyWallet ABI at the proxy's address."""
        wallet_abi = artifact("CustodyWallet")["abi"]
        if singleton is None:
            singleton = self.deploy("CustodyWallet").address
        init = self.w3.eth.contract(abi=wallet_abi).encode_abi(
            "setup", [list(owners), threshold, fallback_handler or ZERO_ADDRESS]
        )
        proxy = self.deploy("CustodyWalletProxy", singleton, init)
        return self.w3.eth.contract(address=proxy.address, abi=wallet_abi)

    def custody_signatures(
        self, wallet: str, signers: Sequence[LocalAccount], to: str, value: int, data: bytes, operation: int, nonce: int
    ) -> bytes:
        """The owners' EIP-712 signatures of a CustodyWallet transaction (r || s || v each),
        ordered by signer address as the wallet requires. Hashed here, independently of the
        contract's getTransactionHash, so a test can check one against the other."""
        typed = {
            "types": {
                "EIP712Domain": [
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "CustodyTransaction": [
                    {"name": "to", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "data", "type": "bytes"},
                    {"name": "operation", "type": "uint8"},
                    {"name": "nonce", "type": "uint256"},
                ],
            },
            "primaryType": "CustodyTransaction",
            "domain": {"chainId": self.w3.eth.chain_id, "verifyingContract": wallet},
            "message": {"to": to, "value": value, "data": data, "operation": operation, "nonce": nonce},
        }
        ordered = sorted(signers, key=lambda a: int(a.address, 16))
        return b"".join(bytes(Account.sign_typed_data(a.key, full_message=typed).signature) for a in ordered)

    def wallet_nonce(self, wallet: str) -> int:
        """A Safe-layout wallet's nonce from storage slot 5 (its nonce() view may revert)."""
        return int.from_bytes(self.w3.eth.get_storage_at(to_checksum_address(wallet), 5), "big")

    def exec_custody(
        self,
        wallet: Contract,
        signers: Sequence[LocalAccount],
        to: str,
        value: int = 0,
        data: bytes = b"",
        operation: int = 0,
        sender: str | None = None,
    ) -> str:
        """Sign with ``signers`` and send CustodyWallet.execTransaction (operation 0 CALL,
        1 DELEGATECALL) from ``sender`` (a dev account; default the deployer). Returns the tx hash."""
        sigs = self.custody_signatures(
            wallet.address, signers, to, value, data, operation, self.wallet_nonce(wallet.address)
        )
        tx = wallet.functions.execTransaction(to, value, data, operation, sigs).transact(
            {"from": sender or self.deployer}
        )
        self._wait(tx)
        return "0x" + bytes(tx).hex()

    @staticmethod
    def calldata(contract: Contract, function: str, *args: Any) -> bytes:
        """ABI-encoded calldata of ``contract.function(*args)``."""
        return bytes.fromhex(contract.encode_abi(function, list(args))[2:])

    def delegate_eoa(self, account: LocalAccount, delegate: str) -> str:
        """Give ``account`` an EIP-7702 delegation to ``delegate`` (the zero address clears it)
        with a real type-4 transaction that the account signs and sends itself: its code becomes
        ``0xef0100 || delegate``. Returns the tx hash."""
        chain_id = self.w3.eth.chain_id
        nonce = self.w3.eth.get_transaction_count(account.address)
        # The sender's nonce is bumped before authorizations are processed: sign for nonce + 1.
        auth = Account.sign_authorization(
            {"chainId": chain_id, "address": to_checksum_address(delegate), "nonce": nonce + 1}, account.key
        )
        base_fee = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        tx: dict[str, Any] = {
            "type": 4,
            "chainId": chain_id,
            "nonce": nonce,
            "to": self.deployer,  # any code-free account: the call itself does nothing
            "value": 0,
            "data": b"",
            "gas": 200_000,
            "maxFeePerGas": 2 * base_fee + 10**9,
            "maxPriorityFeePerGas": 10**9,
            "accessList": [],
            "authorizationList": [auth],
        }
        signed = account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        self._wait(tx_hash)
        return "0x" + bytes(tx_hash).hex()

    # ------------------------------------------------------------ a real Safe 1.3.0

    def deploy_safe_130(self, owners: Sequence[str], threshold: int, fallback_handler: str | None = None) -> Contract:
        """A Safe 1.3.0 from its published artifacts: singleton, proxy factory and (unless one
        is given) the CompatibilityFallbackHandler, then a proxy made by
        createProxyWithNonce with setup(owners, threshold, …) as its initializer. Returned
        bound to the GnosisSafe ABI at the proxy's address."""
        safe_art = safe_130_artifact("GnosisSafe")
        singleton = self.deploy_artifact(safe_art)
        factory = self.deploy_artifact(safe_130_artifact("GnosisSafeProxyFactory"))
        if fallback_handler is None:
            fallback_handler = self.deploy_artifact(safe_130_artifact("CompatibilityFallbackHandler")).address
        init = singleton.encode_abi(
            "setup", [list(owners), threshold, ZERO_ADDRESS, b"", fallback_handler, ZERO_ADDRESS, 0, ZERO_ADDRESS]
        )
        tx = factory.functions.createProxyWithNonce(singleton.address, init, 0).transact({"from": self.deployer})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        if receipt["status"] != 1:
            raise ChainError("creating a Safe 1.3.0 proxy failed")
        events = factory.events.ProxyCreation().process_receipt(receipt, errors=DISCARD)
        if len(events) != 1:
            raise ChainError(f"createProxyWithNonce emitted {len(events)} ProxyCreation events, not 1")
        return cast(Contract, self.w3.eth.contract(address=events[0]["args"]["proxy"], abi=safe_art["abi"]))

    def exec_safe(
        self,
        safe: Contract,
        signers: Sequence[LocalAccount],
        to: str,
        value: int = 0,
        data: bytes = b"",
        operation: int = 0,
        sender: str | None = None,
    ) -> str:
        """Sign (the Safe's own getTransactionHash, no gas refund) and send a Safe 1.3.0
        execTransaction from ``sender`` (default the deployer). Returns the tx hash."""
        nonce = self.wallet_nonce(safe.address)
        refund = (0, 0, 0, ZERO_ADDRESS, ZERO_ADDRESS)
        digest = safe.functions.getTransactionHash(to, value, data, operation, *refund, nonce).call()
        ordered = sorted(signers, key=lambda a: int(a.address, 16))
        sigs = b"".join(bytes(Account.unsafe_sign_hash(digest, a.key).signature) for a in ordered)
        tx = safe.functions.execTransaction(to, value, data, operation, *refund, sigs).transact(
            {"from": sender or self.deployer}
        )
        self._wait(tx)
        return "0x" + bytes(tx).hex()


    # ------------------------------------------------------------ movements by signature and by key

    def _token_domain(self, token: Contract) -> dict[str, Any]:
        """CollateralToken's EIP-712 domain (version "1"), as the contract computes it."""
        return {
            "name": token.functions.name().call(),
            "version": "1",
            "chainId": self.w3.eth.chain_id,
            "verifyingContract": token.address,
        }

    def sign_permit(
        self, token: Contract, owner: LocalAccount, spender: str, value: int, deadline: int, nonce: int | None = None
    ) -> tuple[int, bytes, bytes]:
        """``owner``'s EIP-2612 permit signature (v, r, s); the nonce is the token's current one
        for ``owner`` unless given."""
        if nonce is None:
            nonce = int(token.functions.nonces(owner.address).call())
        typed = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Permit",
            "domain": self._token_domain(token),
            "message": {
                "owner": owner.address,
                "spender": to_checksum_address(spender),
                "value": value,
                "nonce": nonce,
                "deadline": deadline,
            },
        }
        signed = Account.sign_typed_data(owner.key, full_message=typed)
        return int(signed.v), int(signed.r).to_bytes(32, "big"), int(signed.s).to_bytes(32, "big")

    def permit(
        self,
        token: Contract,
        owner: LocalAccount,
        spender: str,
        value: int,
        deadline: int = 2**256 - 1,
        relayer: str | None = None,
    ) -> str:
        """Sign an EIP-2612 permit with ``owner``'s key and submit it from ``relayer`` (a dev
        account; default the deployer): ``owner`` sends no transaction. Returns the tx hash."""
        v, r, s = self.sign_permit(token, owner, spender, value, deadline)
        tx = token.functions.permit(owner.address, to_checksum_address(spender), value, deadline, v, r, s).transact(
            {"from": relayer or self.deployer}
        )
        self._wait(tx)
        return "0x" + bytes(tx).hex()

    def sign_transfer_authorization(
        self,
        token: Contract,
        owner: LocalAccount,
        to: str,
        value: int,
        valid_after: int,
        valid_before: int,
        nonce: bytes,
    ) -> tuple[int, bytes, bytes]:
        """``owner``'s EIP-3009 TransferWithAuthorization signature (v, r, s)."""
        typed = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "TransferWithAuthorization": [
                    {"name": "from", "type": "address"},
                    {"name": "to", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "validAfter", "type": "uint256"},
                    {"name": "validBefore", "type": "uint256"},
                    {"name": "nonce", "type": "bytes32"},
                ],
            },
            "primaryType": "TransferWithAuthorization",
            "domain": self._token_domain(token),
            "message": {
                "from": owner.address,
                "to": to_checksum_address(to),
                "value": value,
                "validAfter": valid_after,
                "validBefore": valid_before,
                "nonce": nonce,
            },
        }
        signed = Account.sign_typed_data(owner.key, full_message=typed)
        return int(signed.v), int(signed.r).to_bytes(32, "big"), int(signed.s).to_bytes(32, "big")

    def transfer_with_authorization(
        self,
        token: Contract,
        owner: LocalAccount,
        to: str,
        value: int,
        relayer: str | None = None,
        valid_after: int = 0,
        valid_before: int = 2**256 - 1,
        nonce: bytes | None = None,
    ) -> str:
        """Sign an EIP-3009 transferWithAuthorization with ``owner``'s key and submit it from
        ``relayer`` (a dev account; default the deployer): the tokens leave ``owner``, which
        sends no transaction. ``nonce`` defaults to 32 random bytes. Returns the tx hash."""
        nonce = os.urandom(32) if nonce is None else nonce
        v, r, s = self.sign_transfer_authorization(token, owner, to, value, valid_after, valid_before, nonce)
        tx = token.functions.transferWithAuthorization(
            owner.address, to_checksum_address(to), value, valid_after, valid_before, nonce, v, r, s
        ).transact({"from": relayer or self.deployer})
        self._wait(tx)
        return "0x" + bytes(tx).hex()

    def send_eth(self, account: LocalAccount, to: str, wei: int, data: bytes = b"") -> str:
        """Send ``wei`` from ``account`` (a wallet whose key the test holds) with a type-2
        transaction that the key signs: the account pays the gas. Returns the tx hash."""
        target = to_checksum_address(to)
        base_fee = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        call: dict[str, Any] = {"from": account.address, "to": target, "value": wei, "data": data}
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.w3.eth.chain_id,
            "nonce": self.w3.eth.get_transaction_count(account.address),
            "to": target,
            "value": wei,
            "data": data,
            "gas": int(self.w3.eth.estimate_gas(call)),  # type: ignore[arg-type]
            "maxFeePerGas": 2 * base_fee + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        signed = account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        self._wait(tx_hash)
        return "0x" + bytes(tx_hash).hex()

def safe_130_artifact(name: str) -> dict[str, Any]:
    """A Safe 1.3.0 Hardhat artifact (``abi``, ``bytecode``) from the pinned npm package."""
    matches = [p for p in SAFE_130_ARTIFACTS.glob(f"**/{name}.json") if not p.name.endswith(".dbg.json")]
    if len(matches) != 1:
        raise ChainError(
            f"Safe 1.3.0 artifact {name} not found under {SAFE_130_ARTIFACTS} ({len(matches)} matches): "
            "run `npm ci` at the repository root"
        )
    data: dict[str, Any] = json.loads(matches[0].read_text())
    return data
