// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title WalletBeacon
/// @notice An upgradeable beacon (the EIP-1967 beacon pattern): every BeaconWalletProxy that
///         names it runs `implementation()`. Its owner swaps the implementation of every such
///         wallet at once, without a transaction to any wallet.
contract WalletBeacon {
    error NotOwner(address caller);

    event Upgraded(address indexed implementation);

    address public implementation;
    address public immutable owner;

    constructor(address implementation_, address owner_) {
        implementation = implementation_;
        owner = owner_;
        emit Upgraded(implementation_);
    }

    function upgradeTo(address implementation_) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        implementation = implementation_;
        emit Upgraded(implementation_);
    }
}
