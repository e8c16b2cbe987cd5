// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title CustodyWalletProxy
/// @notice The address a custody wallet lives at. Slot 0 holds the singleton (the wallet's
///         logic, e.g. CustodyWallet); every call is DELEGATECALLed to it, so the wallet's
///         state lives here. `masterCopy()` (selector 0xa619486e) is answered by the proxy
///         itself from slot 0, as a Safe proxy does. Nothing here can change slot 0: only a
///         DELEGATECALL made by the singleton's own code can, and that leaves this proxy's
///         code (and code hash) exactly as it was.
contract CustodyWalletProxy {
    error ZeroSingleton();

    address internal singleton; // slot 0

    /// `initializer` (e.g. the singleton's setup calldata) runs in this proxy's storage in the
    /// same transaction as the deployment, so nobody can set the wallet up in between.
    constructor(address singleton_, bytes memory initializer) payable {
        if (singleton_ == address(0)) revert ZeroSingleton();
        singleton = singleton_;
        if (initializer.length > 0) {
            (bool ok, bytes memory reason) = singleton_.delegatecall(initializer);
            if (!ok) {
                assembly {
                    revert(add(reason, 32), mload(reason))
                }
            }
        }
    }

    receive() external payable {
        _delegate();
    }

    fallback() external payable {
        _delegate();
    }

    function _delegate() private {
        assembly {
            let target := and(sload(0), 0xffffffffffffffffffffffffffffffffffffffff)
            if eq(shr(224, calldataload(0)), 0xa619486e) {
                mstore(0, target)
                return(0, 32)
            }
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), target, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }
}
