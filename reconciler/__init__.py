"""Custody and segregation reconciler for tokenized collateral.

The folders say the architecture. The core, pure and free of I/O: the value types
(``domain``, ``transfers``, ``walletconfig``, ``errors``) and the checks (``engine/``). Around
it: ``inputs/`` (the configuration and the file formats, validated into core types),
``ledger/`` (the only SQL), ``chains/`` at the repository's root (the only web3), ``app/`` (the
use cases: a run, a scan, a statement, wallet review, documents), ``daemon/`` (scheduler,
alerts, metrics, health, JSON logs) and ``cli/`` (the only Typer). ``bootstrap`` is the
composition root that builds ledgers and chain adapters from settings; ``redaction`` and
``interrupt`` are shared by every layer.

Invariants: no import cycle, imports inside functions included (tests/unit/test_layout.py). The
core imports nothing of the layers around it (the engine reads the settings dataclasses of
inputs/settings.py only), the ledger nothing of the file formats; only cli/ imports Typer, only
ledger/ SQLAlchemy, only chains/ web3.
"""

__version__ = "0.1.0"
