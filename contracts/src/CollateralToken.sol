// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title CollateralToken
/// @notice A USDC-like ERC-20 used as tokenized collateral in tests and demos.
///         A single issuer can mint, burn, and freeze accounts. A frozen
///         account can neither send nor receive tokens through transfer or
///         transferFrom, nor spend an allowance as a spender. Issuer mint and
///         burn ignore the freeze (the issuer can still seize frozen funds).
///         The issuer can also pause the token: while paused, transfer and
///         transferFrom revert for everyone (mint and burn still work).
///         Holders can also authorize by signature, without sending a
///         transaction themselves (as USDC's FiatToken does): EIP-2612 permit
///         (an allowance set by whoever submits the owner's signature) and
///         EIP-3009 transferWithAuthorization (a transfer submitted by a
///         relayer). Both are EIP-712 signatures over the domain
///         (name, version "1", chain id, this contract); a signature is
///         valid only with s in the lower half of the curve order.
///         Amounts are full uint256 values.
contract CollateralToken {
    // ---------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------

    error NotIssuer(address caller);
    error ZeroAddress();
    error AccountFrozen(address account);
    error InsufficientBalance(address account, uint256 balance, uint256 needed);
    error InsufficientAllowance(address owner, address spender, uint256 allowance, uint256 needed);
    error LengthMismatch(uint256 recipients, uint256 amounts);
    error TokenPaused();
    error ExpiredSignature(uint256 deadline);
    error InvalidSignature();
    error AuthorizationNotYetValid(uint256 validAfter);
    error AuthorizationExpired(uint256 validBefore);
    error AuthorizationAlreadyUsed(address authorizer, bytes32 nonce);

    // ---------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event Frozen(address indexed account);
    event Unfrozen(address indexed account);
    event IssuerTransferred(address indexed previousIssuer, address indexed newIssuer);
    event Paused(address account);
    event Unpaused(address account);
    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

    // ---------------------------------------------------------------------
    // Storage
    // ---------------------------------------------------------------------

    string private _name;
    string private _symbol;
    uint8 private immutable _decimals;

    address private _issuer;
    uint256 private _totalSupply;

    mapping(address => uint256) private _balances;
    mapping(address => mapping(address => uint256)) private _allowances;
    mapping(address => bool) private _frozen;
    bool private _paused;
    // Appended after every earlier slot (the layout above never moves).
    mapping(address => uint256) private _nonces; // EIP-2612 permit nonces
    mapping(address => mapping(bytes32 => bool)) private _authorizationStates; // EIP-3009

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    // secp256k1n / 2: a larger s is the malleable twin of a valid signature.
    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    // ---------------------------------------------------------------------
    // Construction and access control
    // ---------------------------------------------------------------------

    constructor(string memory name_, string memory symbol_, uint8 decimals_, address issuer_) {
        if (issuer_ == address(0)) revert ZeroAddress();
        _name = name_;
        _symbol = symbol_;
        _decimals = decimals_;
        _issuer = issuer_;
        emit IssuerTransferred(address(0), issuer_);
    }

    modifier onlyIssuer() {
        if (msg.sender != _issuer) revert NotIssuer(msg.sender);
        _;
    }

    function issuer() external view returns (address) {
        return _issuer;
    }

    function transferIssuer(address newIssuer) external onlyIssuer {
        if (newIssuer == address(0)) revert ZeroAddress();
        address previous = _issuer;
        _issuer = newIssuer;
        emit IssuerTransferred(previous, newIssuer);
    }

    // ---------------------------------------------------------------------
    // ERC-20 views
    // ---------------------------------------------------------------------

    function name() external view returns (string memory) {
        return _name;
    }

    function symbol() external view returns (string memory) {
        return _symbol;
    }

    function decimals() external view returns (uint8) {
        return _decimals;
    }

    function totalSupply() external view returns (uint256) {
        return _totalSupply;
    }

    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    function allowance(address owner, address spender) external view returns (uint256) {
        return _allowances[owner][spender];
    }

    function isFrozen(address account) external view returns (bool) {
        return _frozen[account];
    }

    function paused() external view returns (bool) {
        return _paused;
    }

    // ---------------------------------------------------------------------
    // ERC-20 mutations
    // ---------------------------------------------------------------------

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        if (spender == address(0)) revert ZeroAddress();
        _allowances[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        if (_frozen[msg.sender]) revert AccountFrozen(msg.sender);
        uint256 current = _allowances[from][msg.sender];
        if (current != type(uint256).max) {
            if (current < amount) revert InsufficientAllowance(from, msg.sender, current, amount);
            unchecked {
                _allowances[from][msg.sender] = current - amount;
            }
        }
        _transfer(from, to, amount);
        return true;
    }

    // ---------------------------------------------------------------------
    // Authorization by signature (EIP-712, EIP-2612, EIP-3009)
    // ---------------------------------------------------------------------

    /// Computed on every call, so that a fork with another chain id gets its own domain.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256(bytes(_name)), keccak256(bytes("1")), block.chainid, address(this))
        );
    }

    function nonces(address owner) external view returns (uint256) {
        return _nonces[owner];
    }

    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool) {
        return _authorizationStates[authorizer][nonce];
    }

    /// EIP-2612: sets `spender`'s allowance over `owner`'s tokens to `value`, authorized by
    /// `owner`'s signature; anyone may submit it. Emits Approval like approve().
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        if (block.timestamp > deadline) revert ExpiredSignature(deadline);
        if (spender == address(0)) revert ZeroAddress();
        bytes32 structHash = keccak256(abi.encode(PERMIT_TYPEHASH, owner, spender, value, _nonces[owner]++, deadline));
        _checkSigner(owner, structHash, v, r, s);
        _allowances[owner][spender] = value;
        emit Approval(owner, spender, value);
    }

    /// EIP-3009: moves `value` from `from` to `to`, authorized by `from`'s signature; anyone
    /// (a relayer) may submit it. Each (from, nonce) authorizes at most once. The freeze and
    /// pause rules of transfer() apply.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        if (block.timestamp <= validAfter) revert AuthorizationNotYetValid(validAfter);
        if (block.timestamp >= validBefore) revert AuthorizationExpired(validBefore);
        if (_authorizationStates[from][nonce]) revert AuthorizationAlreadyUsed(from, nonce);
        bytes32 structHash = keccak256(
            abi.encode(TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce)
        );
        _checkSigner(from, structHash, v, r, s);
        _authorizationStates[from][nonce] = true;
        emit AuthorizationUsed(from, nonce);
        _transfer(from, to, value);
    }

    // ---------------------------------------------------------------------
    // Issuer operations
    // ---------------------------------------------------------------------

    function mint(address to, uint256 amount) external onlyIssuer {
        _mint(to, amount);
    }

    function mintBatch(address[] calldata to, uint256[] calldata amounts) external onlyIssuer {
        uint256 n = to.length;
        if (n != amounts.length) revert LengthMismatch(n, amounts.length);
        for (uint256 i = 0; i < n; ++i) {
            _mint(to[i], amounts[i]);
        }
    }

    function burn(address from, uint256 amount) external onlyIssuer {
        if (from == address(0)) revert ZeroAddress();
        uint256 balance = _balances[from];
        if (balance < amount) revert InsufficientBalance(from, balance, amount);
        unchecked {
            _balances[from] = balance - amount;
            _totalSupply -= amount;
        }
        emit Transfer(from, address(0), amount);
    }

    function freeze(address account) external onlyIssuer {
        _frozen[account] = true;
        emit Frozen(account);
    }

    function unfreeze(address account) external onlyIssuer {
        _frozen[account] = false;
        emit Unfrozen(account);
    }

    function pause() external onlyIssuer {
        _paused = true;
        emit Paused(msg.sender);
    }

    function unpause() external onlyIssuer {
        _paused = false;
        emit Unpaused(msg.sender);
    }

    // ---------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------

    function _transfer(address from, address to, uint256 amount) private {
        if (_paused) revert TokenPaused();
        if (to == address(0)) revert ZeroAddress();
        if (_frozen[from]) revert AccountFrozen(from);
        if (_frozen[to]) revert AccountFrozen(to);
        uint256 balance = _balances[from];
        if (balance < amount) revert InsufficientBalance(from, balance, amount);
        unchecked {
            _balances[from] = balance - amount;
        }
        // Cannot overflow: the sum of all balances equals totalSupply,
        // which is checked on mint.
        unchecked {
            _balances[to] += amount;
        }
        emit Transfer(from, to, amount);
    }

    function _checkSigner(address signer, bytes32 structHash, uint8 v, bytes32 r, bytes32 s) private view {
        if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) revert InvalidSignature();
        bytes32 digest = keccak256(abi.encodePacked(bytes2(0x1901), DOMAIN_SEPARATOR(), structHash));
        address recovered = ecrecover(digest, v, r, s);
        if (recovered == address(0) || recovered != signer) revert InvalidSignature();
    }

    function _mint(address to, uint256 amount) private {
        if (to == address(0)) revert ZeroAddress();
        _totalSupply += amount;
        unchecked {
            _balances[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }
}
