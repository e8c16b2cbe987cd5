// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title PriceFeed
/// @notice A Chainlink-style price feed (the AggregatorV3Interface views: decimals,
///         description, version, getRoundData, latestRoundData) for tests and the demo.
///         An owner sets each answer: `setAnswer` starts a round stamped with the current
///         block's time, `setRound` one stamped with any time (to plant a stale answer),
///         `setDecimals` changes the scale of later reads. Every round is kept, so
///         `getRoundData` answers for any round ever set; round ids count from 1.
///         Nothing checks the answer: zero and negative answers are stored as given, as a
///         broken or manipulated feed could report them.
contract PriceFeed {
    error NotOwner(address caller);
    error ZeroAddress();
    error NoDataPresent(uint80 roundId);

    /// The events of Chainlink's AggregatorInterface, so log readers see the usual shapes.
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);
    event DecimalsChanged(uint8 previous, uint8 current);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
    }

    address private _owner;
    uint8 private _decimals;
    string private _description;
    uint80 private _latestRound;
    mapping(uint80 => Round) private _rounds;

    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
        _owner = msg.sender;
        _decimals = decimals_;
        _description = description_;
        emit OwnershipTransferred(address(0), msg.sender);
        _newRound(initialAnswer, block.timestamp);
    }

    modifier onlyOwner() {
        if (msg.sender != _owner) revert NotOwner(msg.sender);
        _;
    }

    // ---------------------------------------------------------------------
    // AggregatorV3Interface
    // ---------------------------------------------------------------------

    function decimals() external view returns (uint8) {
        return _decimals;
    }

    function description() external view returns (string memory) {
        return _description;
    }

    function version() external pure returns (uint256) {
        return 4;
    }

    function getRoundData(uint80 roundId)
        external
        view
        returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        if (roundId == 0 || roundId > _latestRound) revert NoDataPresent(roundId);
        Round storage r = _rounds[roundId];
        return (roundId, r.answer, r.startedAt, r.updatedAt, roundId);
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        Round storage r = _rounds[_latestRound];
        return (_latestRound, r.answer, r.startedAt, r.updatedAt, _latestRound);
    }

    // ---------------------------------------------------------------------
    // Owner operations
    // ---------------------------------------------------------------------

    function owner() external view returns (address) {
        return _owner;
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(_owner, newOwner);
        _owner = newOwner;
    }

    /// A new round with `answer`, updated now.
    function setAnswer(int256 answer) external onlyOwner {
        _newRound(answer, block.timestamp);
    }

    /// A new round with `answer`, stamped as updated at `updatedAt` (any time, past or future).
    function setRound(int256 answer, uint256 updatedAt) external onlyOwner {
        _newRound(answer, updatedAt);
    }

    function setDecimals(uint8 decimals_) external onlyOwner {
        emit DecimalsChanged(_decimals, decimals_);
        _decimals = decimals_;
    }

    function _newRound(int256 answer, uint256 updatedAt) private {
        uint80 roundId = _latestRound + 1;
        _latestRound = roundId;
        _rounds[roundId] = Round(answer, updatedAt, updatedAt);
        emit NewRound(roundId, msg.sender, updatedAt);
        emit AnswerUpdated(answer, roundId, updatedAt);
    }
}
