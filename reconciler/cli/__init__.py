"""The command line: the only package that imports Typer.

One module per command group (runs, breaks, books, wallets, transfers, segregation, daemon,
demo, report, setup), the shared state and helpers (common), the conventions around Typer
(conventions) and table rendering (tables). main.py assembles the Typer apps and holds the entry
point; no command module imports it.

Invariants: with --json, stdout carries exactly one JSON document and nothing else; exit codes
are 0 clean, 1 breaks, 2 could not complete.
"""
