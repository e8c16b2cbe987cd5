// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title MappingWriter
/// @notice TEST ONLY: DELEGATECALLed by a Safe-layout wallet, it writes `owners[owner] = 1`
///         and `modules[module] = 1` straight into the wallet's mappings (slots 2 and 1)
///         without linking them into the sentinel lists: `isOwner(owner)` and
///         `isModuleEnabled(module)` become true while `getOwners()` and `getModules()` (which
///         walk the lists) show nothing new. It emits nothing.
contract MappingWriter {
    function hide(address owner, address module) external {
        assembly {
            mstore(0, owner)
            mstore(32, 2)
            sstore(keccak256(0, 64), 1)
            mstore(0, module)
            mstore(32, 1)
            sstore(keccak256(0, 64), 1)
        }
    }
}
