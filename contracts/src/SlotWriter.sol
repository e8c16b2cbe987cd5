// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title SlotWriter
/// @notice TEST ONLY: the payload of a proxy-wallet takeover. Called normally it changes only
///         its own (unused) storage; DELEGATECALLed by a wallet whose owners signed such a
///         transaction, it overwrites the wallet's slot 0, where a Safe-layout proxy keeps
///         its singleton. It emits nothing, so the wallet's only trace is its own
///         ExecutionSuccess event: no upgrade event, and the proxy's code hash is unchanged.
contract SlotWriter {
    function takeover(address newSingleton) external {
        assembly {
            sstore(0, newSingleton)
        }
    }
}
