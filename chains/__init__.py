"""Adapters at the edge: everything that talks to a chain lives under this package.

``base`` is the adapter protocol the use cases call; ``evm/`` implements it over JSON-RPC.

Invariant: the only package that imports web3; it returns the core's values (blocks, balances,
observations, wallet configurations) and imports nothing of the ledger, the use cases or the
command line.
"""
