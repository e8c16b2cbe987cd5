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

    function _mint(address to, uint256 amount) private {
        if (to == address(0)) revert ZeroAddress();
        _totalSupply += amount;
        unchecked {
            _balances[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }
}
