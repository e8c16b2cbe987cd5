"""The pure engine: functions from values to values, no I/O, no web3, no SQL.

Invariant: given the same inputs it gives the same outputs; it never sees "latest", only the
values read at a pinned block.
"""
