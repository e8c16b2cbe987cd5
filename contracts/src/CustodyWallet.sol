// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title CustodyWallet
/// @notice A small multisig custody wallet singleton, used behind CustodyWalletProxy in tests
///         and the demo. Its storage has the layout of a Safe (1.1.1 to 1.4.1), so that the
///         reconciler reads both with the same code:
///           slot 0  singleton (the proxy's implementation address)
///           slot 1  enabled modules, a linked list mapping(address => address) from SENTINEL
///           slot 2  owners, a linked list mapping(address => address) from SENTINEL
///           slot 3  owner count
///           slot 4  threshold
///           slot 5  nonce
///           keccak256("guard_manager.guard.address")      transaction guard
///           keccak256("fallback_manager.handler.address") fallback handler
///         A transaction needs `threshold` owner signatures (65 bytes each, r || s || v, signers
///         strictly ascending) over an EIP-712 digest of (to, value, keccak(data), operation,
///         nonce). Operation 0 is a CALL, 1 a DELEGATECALL: a DELEGATECALL runs foreign code in
///         this wallet's storage and can rewrite any slot, slot 0 included. Configuration
///         changes are calls of the wallet to itself; enabled modules execute without
///         signatures.
contract CustodyWallet {
    // ---------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------

    error NotSelf(address caller);
    error NotModule(address caller);
    error AlreadySetUp();
    error NotSetUp();
    error BadThreshold(uint256 threshold, uint256 ownerCount);
    error BadAddress(address value);
    error DuplicateOwner(address owner);
    error DuplicateModule(address module);
    error NotLinked(address previous, address value);
    error BadOperation(uint8 operation);
    error SignaturesTooShort(uint256 length, uint256 needed);
    error BadSignature(uint256 index);
    error SignersNotAscending(uint256 index, address signer);
    error NotOwner(address signer);
    error ExecutionFailed(bytes returnData);

    // ---------------------------------------------------------------------
    // Events (named after the Safe's, so that monitors written for it read these)
    // ---------------------------------------------------------------------

    event SafeSetup(address indexed initiator, address[] owners, uint256 threshold, address fallbackHandler);
    event ExecutionSuccess(bytes32 txHash, uint256 payment);
    event ExecutionFromModuleSuccess(address indexed module);
    event ExecutionFromModuleFailure(address indexed module);
    event AddedOwner(address owner);
    event RemovedOwner(address owner);
    event ChangedThreshold(uint256 threshold);
    event EnabledModule(address module);
    event DisabledModule(address module);
    event ChangedGuard(address guard);
    event ChangedFallbackHandler(address handler);

    // ---------------------------------------------------------------------
    // Storage: the order of these declarations is the Safe layout; never reorder.
    // ---------------------------------------------------------------------

    address internal singleton; // slot 0
    mapping(address => address) internal modules; // slot 1
    mapping(address => address) internal owners; // slot 2
    uint256 internal ownerCount; // slot 3
    uint256 internal threshold; // slot 4
    uint256 public nonce; // slot 5

    address internal constant SENTINEL = address(0x1);
    bytes32 internal constant GUARD_SLOT = keccak256("guard_manager.guard.address");
    bytes32 internal constant FALLBACK_HANDLER_SLOT = keccak256("fallback_manager.handler.address");

    bytes32 public constant DOMAIN_TYPEHASH = keccak256("EIP712Domain(uint256 chainId,address verifyingContract)");
    bytes32 public constant TRANSACTION_TYPEHASH =
        keccak256("CustodyTransaction(address to,uint256 value,bytes data,uint8 operation,uint256 nonce)");

    // secp256k1n / 2: a larger s is the malleable twin of a valid signature.
    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// The singleton itself can never be set up: only proxies (with their own storage) are.
    constructor() {
        threshold = 1;
    }

    modifier onlySelf() {
        if (msg.sender != address(this)) revert NotSelf(msg.sender);
        _;
    }

    // ---------------------------------------------------------------------
    // Setup
    // ---------------------------------------------------------------------

    function setup(address[] calldata owners_, uint256 threshold_, address fallbackHandler) external {
        if (threshold != 0) revert AlreadySetUp();
        uint256 n = owners_.length;
        if (threshold_ == 0 || threshold_ > n) revert BadThreshold(threshold_, n);
        address previous = SENTINEL;
        for (uint256 i = 0; i < n; ++i) {
            address owner = owners_[i];
            _checkNewOwner(owner);
            owners[previous] = owner;
            previous = owner;
        }
        owners[previous] = SENTINEL;
        ownerCount = n;
        threshold = threshold_;
        modules[SENTINEL] = SENTINEL;
        if (fallbackHandler != address(0)) _setFallbackHandler(fallbackHandler);
        emit SafeSetup(msg.sender, owners_, threshold_, fallbackHandler);
    }

    // ---------------------------------------------------------------------
    // Transactions
    // ---------------------------------------------------------------------

    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, block.chainid, address(this)));
    }

    function getTransactionHash(address to, uint256 value, bytes calldata data, uint8 operation, uint256 nonce_)
        public
        view
        returns (bytes32)
    {
        bytes32 structHash = keccak256(abi.encode(TRANSACTION_TYPEHASH, to, value, keccak256(data), operation, nonce_));
        return keccak256(abi.encodePacked(bytes2(0x1901), domainSeparator(), structHash));
    }

    /// Reverts unless `signatures` holds `threshold` valid owner signatures of `digest`,
    /// each 65 bytes (r || s || v, v in {27, 28} or {0, 1}), signers strictly ascending.
    function checkSignatures(bytes32 digest, bytes calldata signatures) public view {
        uint256 required = threshold;
        if (required == 0) revert NotSetUp();
        if (signatures.length < required * 65) revert SignaturesTooShort(signatures.length, required * 65);
        address last = address(0);
        for (uint256 i = 0; i < required; ++i) {
            uint256 at = i * 65;
            bytes32 r = bytes32(signatures[at:at + 32]);
            bytes32 s = bytes32(signatures[at + 32:at + 64]);
            uint8 v = uint8(signatures[at + 64]);
            if (v < 27) v += 27;
            if ((v != 27 && v != 28) || uint256(s) > HALF_ORDER) revert BadSignature(i);
            address signer = ecrecover(digest, v, r, s);
            if (signer == address(0)) revert BadSignature(i);
            if (signer <= last) revert SignersNotAscending(i, signer);
            if (signer == SENTINEL || owners[signer] == address(0)) revert NotOwner(signer);
            last = signer;
        }
    }

    function execTransaction(
        address to,
        uint256 value,
        bytes calldata data,
        uint8 operation,
        bytes calldata signatures
    ) external payable returns (bool) {
        bytes32 txHash = getTransactionHash(to, value, data, operation, nonce);
        ++nonce;
        checkSignatures(txHash, signatures);
        address guard = _address(GUARD_SLOT);
        if (guard != address(0)) {
            (bool allowed, bytes memory reason) = guard.call(
                abi.encodeWithSignature(
                    "checkTransaction(address,uint256,bytes,uint8,address)", to, value, data, operation, msg.sender
                )
            );
            if (!allowed) _bubble(reason);
        }
        (bool success, bytes memory returnData) = _execute(to, value, data, operation);
        if (!success) revert ExecutionFailed(returnData);
        emit ExecutionSuccess(txHash, 0);
        return true;
    }

    /// An enabled module executes without owner signatures (and without the guard).
    function execTransactionFromModule(address to, uint256 value, bytes calldata data, uint8 operation)
        external
        returns (bool success)
    {
        if (msg.sender == SENTINEL || modules[msg.sender] == address(0)) revert NotModule(msg.sender);
        (success,) = _execute(to, value, data, operation);
        if (success) emit ExecutionFromModuleSuccess(msg.sender);
        else emit ExecutionFromModuleFailure(msg.sender);
    }

    // ---------------------------------------------------------------------
    // Configuration: only through the wallet's own transactions
    // ---------------------------------------------------------------------

    function addOwnerWithThreshold(address owner, uint256 threshold_) external onlySelf {
        _checkNewOwner(owner);
        owners[owner] = owners[SENTINEL];
        owners[SENTINEL] = owner;
        ++ownerCount;
        emit AddedOwner(owner);
        if (threshold != threshold_) _changeThreshold(threshold_);
    }

    function removeOwner(address prevOwner, address owner, uint256 threshold_) external onlySelf {
        if (ownerCount - 1 < threshold_) revert BadThreshold(threshold_, ownerCount - 1);
        if (owner == address(0) || owner == SENTINEL) revert BadAddress(owner);
        if (owners[prevOwner] != owner) revert NotLinked(prevOwner, owner);
        owners[prevOwner] = owners[owner];
        owners[owner] = address(0);
        --ownerCount;
        emit RemovedOwner(owner);
        if (threshold != threshold_) _changeThreshold(threshold_);
    }

    function swapOwner(address prevOwner, address oldOwner, address newOwner) external onlySelf {
        _checkNewOwner(newOwner);
        if (oldOwner == address(0) || oldOwner == SENTINEL) revert BadAddress(oldOwner);
        if (owners[prevOwner] != oldOwner) revert NotLinked(prevOwner, oldOwner);
        owners[newOwner] = owners[oldOwner];
        owners[prevOwner] = newOwner;
        owners[oldOwner] = address(0);
        emit RemovedOwner(oldOwner);
        emit AddedOwner(newOwner);
    }

    function changeThreshold(uint256 threshold_) external onlySelf {
        _changeThreshold(threshold_);
    }

    function enableModule(address module) external onlySelf {
        if (module == address(0) || module == SENTINEL) revert BadAddress(module);
        if (modules[module] != address(0)) revert DuplicateModule(module);
        modules[module] = modules[SENTINEL];
        modules[SENTINEL] = module;
        emit EnabledModule(module);
    }

    function disableModule(address prevModule, address module) external onlySelf {
        if (module == address(0) || module == SENTINEL) revert BadAddress(module);
        if (modules[prevModule] != module) revert NotLinked(prevModule, module);
        modules[prevModule] = modules[module];
        modules[module] = address(0);
        emit DisabledModule(module);
    }

    function setGuard(address guard) external onlySelf {
        bytes32 slot = GUARD_SLOT;
        assembly {
            sstore(slot, guard)
        }
        emit ChangedGuard(guard);
    }

    function setFallbackHandler(address handler) external onlySelf {
        _setFallbackHandler(handler);
    }

    // ---------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------

    function getThreshold() external view returns (uint256) {
        return threshold;
    }

    function isOwner(address owner) external view returns (bool) {
        return owner != SENTINEL && owners[owner] != address(0);
    }

    function getOwners() external view returns (address[] memory result) {
        result = new address[](ownerCount);
        uint256 i = 0;
        for (address current = owners[SENTINEL]; current != SENTINEL && current != address(0); current = owners[current]) {
            result[i++] = current;
        }
    }

    function isModuleEnabled(address module) external view returns (bool) {
        return module != SENTINEL && modules[module] != address(0);
    }

    function getModules() external view returns (address[] memory result) {
        uint256 n = 0;
        for (address current = modules[SENTINEL]; current != SENTINEL && current != address(0); current = modules[current]) {
            ++n;
        }
        result = new address[](n);
        uint256 i = 0;
        for (address current = modules[SENTINEL]; current != SENTINEL && current != address(0); current = modules[current]) {
            result[i++] = current;
        }
    }

    // ---------------------------------------------------------------------
    // Receiving and the fallback handler
    // ---------------------------------------------------------------------

    /// No event: a plain transfer carries 2300 gas, which the proxy's DELEGATECALL mostly spends.
    receive() external payable {}

    /// Unknown calls go to the fallback handler with the caller appended (as a Safe does);
    /// without a handler they succeed and return nothing.
    fallback() external payable {
        address handler = _address(FALLBACK_HANDLER_SLOT);
        if (handler == address(0)) return;
        assembly {
            calldatacopy(0, 0, calldatasize())
            mstore(calldatasize(), shl(96, caller()))
            let ok := call(gas(), handler, 0, 0, add(calldatasize(), 20), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    // ---------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------

    function _execute(address to, uint256 value, bytes calldata data, uint8 operation)
        private
        returns (bool success, bytes memory returnData)
    {
        if (operation == 0) {
            (success, returnData) = to.call{value: value}(data);
        } else if (operation == 1) {
            (success, returnData) = to.delegatecall(data);
        } else {
            revert BadOperation(operation);
        }
    }

    function _checkNewOwner(address owner) private view {
        if (owner == address(0) || owner == SENTINEL || owner == address(this)) revert BadAddress(owner);
        if (owners[owner] != address(0)) revert DuplicateOwner(owner);
    }

    function _changeThreshold(uint256 threshold_) private {
        if (threshold_ == 0 || threshold_ > ownerCount) revert BadThreshold(threshold_, ownerCount);
        threshold = threshold_;
        emit ChangedThreshold(threshold_);
    }

    function _setFallbackHandler(address handler) private {
        if (handler == address(this)) revert BadAddress(handler);
        bytes32 slot = FALLBACK_HANDLER_SLOT;
        assembly {
            sstore(slot, handler)
        }
        emit ChangedFallbackHandler(handler);
    }

    function _address(bytes32 slot) private view returns (address value) {
        assembly {
            value := sload(slot)
        }
    }

    function _bubble(bytes memory reason) private pure {
        assembly {
            revert(add(reason, 32), mload(reason))
        }
    }
}
