"""What comes in from files: the TOML configuration and the file formats (accounts and books
CSV, transfer instructions as JSON lines, customer equity and off-chain funds CSV), each
validated into the core's types.

Invariant: a file is taken whole or not at all; every problem is reported at once, naming the
key, or the line and column, and the fix. Nothing here touches the ledger or a chain: checks
that need the ledger's facts take them as arguments.
"""
