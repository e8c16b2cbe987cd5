// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title BeaconWalletProxy
/// @notice A wallet behind an EIP-1967 beacon proxy: the beacon's address sits in the slot
///         keccak256("eip1967.proxy.beacon") - 1, and every call is DELEGATECALLed to the
///         beacon's `implementation()`. The wallet's state lives here; what code runs is
///         decided by whoever controls the beacon.
contract BeaconWalletProxy {
    error NoImplementation();

    bytes32 internal constant BEACON_SLOT = 0xa3f0ad74e5423aebfd80d3ef4346578335a9a72aeaee59ff6cb3582b35133d50;

    constructor(address beacon, bytes memory initializer) payable {
        assembly {
            sstore(BEACON_SLOT, beacon)
        }
        if (initializer.length > 0) {
            (bool ok, bytes memory reason) = _implementation().delegatecall(initializer);
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

    function _implementation() private view returns (address impl) {
        address beacon;
        assembly {
            beacon := sload(BEACON_SLOT)
        }
        (bool ok, bytes memory data) = beacon.staticcall(abi.encodeWithSignature("implementation()"));
        if (!ok || data.length < 32) revert NoImplementation();
        impl = abi.decode(data, (address));
    }

    function _delegate() private {
        address target = _implementation();
        assembly {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), target, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }
}
