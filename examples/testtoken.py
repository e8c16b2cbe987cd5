"""A test collateral token on a local Anvil, for docs/howto.md ("A test token on a local Anvil").

    .venv/bin/python examples/testtoken.py deploy [RPC_URL]
        installs Multicall3, deploys the project's test token (USDC, 6 decimals, with the
        isFrozen(address) and paused() views), gives the custody wallet 1,000,000 USDC and 5 ETH,
        and prints the token's address
    .venv/bin/python examples/testtoken.py move TOKEN AMOUNT TO [RPC_URL]
        moves AMOUNT of the token at TOKEN out of the custody wallet to TO without the wallet's
        key (Anvil's impersonation, no gas): the kind of outflow nobody authorized

RPC_URL defaults to http://127.0.0.1:8545. Each command is a process of its own: nothing has to
stay open between them. Run it from a checkout after `make setup` (it uses the compiled test
contracts in contracts/ and the helpers the tests use).
"""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's chains/ package

from chains.evm.devnet import Devnet  # noqa: E402

WALLET = "0x000000000000000000000000000000000000bEEF"  # the custody wallet of the how-to
USDC = 10**6


def _devnet(url: str) -> Devnet:
    """The node at ``url``, waited for (Anvil takes a moment to start)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            net = Devnet(url)
            net.head()
            return net
        except Exception:  # noqa: BLE001 - not listening yet
            if time.monotonic() > deadline:
                raise SystemExit(f"no node answers at {url}: is Anvil running?") from None
            time.sleep(0.2)


def deploy(url: str) -> None:
    net = _devnet(url)
    net.install_multicall3()  # at its canonical address, as on mainnet
    usdc = net.deploy_token("Test USD", "USDC", 6)
    net.mint(usdc, WALLET, 1_000_000 * USDC)
    net.set_native_balance(WALLET, 5 * 10**18)
    net.mine()
    print(f"USDC at {usdc.address}")
    print(f"wallet {WALLET} holds 1,000,000 USDC and 5 ETH")


def move(token: str, amount: str, to: str, url: str) -> None:
    from chains.evm.devnet import artifact

    net = _devnet(url)
    contract = net.w3.eth.contract(address=net.w3.to_checksum_address(token), abi=artifact("CollateralToken")["abi"])
    tx = net.transfer_as(contract, WALLET, net.w3.to_checksum_address(to), int(Decimal(amount) * USDC))
    print(f"moved {amount} USDC from {WALLET} to {to} in tx {tx}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["deploy"] and len(argv) <= 2:
        deploy(argv[1] if len(argv) == 2 else "http://127.0.0.1:8545")
    elif argv[:1] == ["move"] and len(argv) in (4, 5):
        move(argv[1], argv[2], argv[3], argv[4] if len(argv) == 5 else "http://127.0.0.1:8545")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
