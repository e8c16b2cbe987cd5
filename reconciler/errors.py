"""One exception tree for failures of the system.

Breaks are findings and never exceptions; these are for what stops the system from seeing.
Every message carries the fix where one is known.
"""


class ReconcilerError(Exception):
    """Base of every failure the reconciler reports with exit code 2."""


class ConfigError(ReconcilerError):
    """The configuration file is missing, malformed or inconsistent."""


class InputError(ReconcilerError):
    """An input file is malformed; the command changed nothing (``undone``: what it did not do,
    "imported" for an import, "signed" for `instructions sign`)."""

    def __init__(self, source: str, problems: list[str], undone: str = "imported") -> None:
        self.source = source
        self.problems = problems
        self.undone = undone
        shown = problems[:20]
        more = len(problems) - len(shown)
        lines = [f"{source}: rejected, nothing was {undone}:"]
        lines += [f"  {p}" for p in shown]
        if more:
            lines.append(f"  … and {more} more problem(s)")
        super().__init__("\n".join(lines))


class ChainError(ReconcilerError):
    """A chain could not be read, or disagrees with the configuration."""


class RpcUnavailable(ChainError):
    """No RPC endpoint answered."""


class LedgerError(ReconcilerError):
    """The ledger database is unreachable or in an unexpected state."""


def chain_message(chain: str, text: str) -> str:
    """``chain eth: <text>``, unless the text already starts by naming the chain (an adapter's
    ``chain eth block 20: …``): said once, never ``chain eth: chain eth block 20: …``."""
    named = f"chain {chain}"
    if text == named or text.startswith((f"{named}:", f"{named} ")):
        return text
    return f"{named}: {text}"
