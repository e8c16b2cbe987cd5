"""EVM chains through JSON-RPC: hand-encoded hot paths, web3.py for everything else.

``rpc`` (transports: retries, failover), ``adapter`` (the EVM adapter), ``crosscheck`` (reads
confirmed by a second endpoint), ``abi`` and ``codesizes`` (hand-encoded calls), ``blocks``
(headers by number and time), ``walletconfig`` (wallet configuration and issuer controls from
storage), the transfer scan (``scan``: what every scan shares; ``logs``: token logs; ``native``:
native value by bisection and traces), ``prices`` and ``valuation`` (price feeds and what a
segregation statement reads), ``devnet`` (the local Anvil of the demo and the tests).
"""
