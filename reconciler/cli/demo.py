"""`demo`: the whole product on two local Anvil chains (reconciler.app.demo), shown with the
command line's run printer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reconciler.cli.common import JsonFlag, err, info, out
from reconciler.cli.runs import print_run


def demo(
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            help="Write the demo's config, books and database into DIR and keep them; refuses a folder holding "
            "such files that the demo did not write, starts its own over.",
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Start two local Anvil chains, plant breaks, reconcile, and explain what was found and
    what to try next (`--keep DIR` keeps the config, books and ledger to explore)."""
    from reconciler.app.demo import run_demo

    raise typer.Exit(run_demo(keep=keep, json_out=json_out, out=out, err=err, info=info, print_run=print_run))
