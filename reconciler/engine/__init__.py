"""The pure engine: functions from values to values, no I/O, no web3, no SQL.

The run's checks as passes (``passes``): balances, wallet configuration and issuer controls
(``wallets``), transfer surveillance (``surveillance``); the break lifecycle (``lifecycle``);
segregation statements and their findings (``segregation/``).

Invariant: given the same inputs it gives the same outputs; it never sees "latest", only the
values read at a pinned block. It imports the core's value types and the settings dataclasses
(reconciler.inputs.settings) and nothing of the ledger, the chains, the use cases, the daemon
or the command line.
"""
