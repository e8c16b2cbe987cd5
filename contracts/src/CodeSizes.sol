// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title CodeSizes
/// @notice Never deployed: the reconciler places its runtime code at an unused address for the
///         duration of one eth_call (a state override) to learn which of many accounts have
///         code, in one call instead of one eth_getCode per account. Accounts with code are
///         then read in full; an account without code has no configuration to read.
contract CodeSizes {
    function sizes(address[] calldata accounts) external view returns (uint256[] memory out) {
        out = new uint256[](accounts.length);
        for (uint256 i = 0; i < accounts.length; i++) {
            out[i] = accounts[i].code.length;
        }
    }
}
