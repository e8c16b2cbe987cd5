"""The command line: the only package that imports Typer.

One module per command group (runs, breaks, books, wallets, transfers, segregation, daemon,
demo, report, setup), the shared state and helpers (common), the conventions around Typer
(conventions), table rendering and the one function that renders outside text (tables), and
shell completion answered without Typer (completion, over the generated completion_tree).
main.py assembles the Typer apps and holds the entry point; no command module imports it, and
command modules import the use cases, the ledger and the chains inside their commands.

Invariants: with --json, stdout carries exactly one JSON document and nothing else; exit codes
are 0 clean, 1 breaks, 2 could not complete.
"""
