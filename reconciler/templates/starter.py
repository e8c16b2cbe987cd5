"""The starter configuration that `reconciler config init` writes, read from this package's
data (reconciler/templates/reconciler.toml), so that it is there in an installed wheel as in a
checkout.
"""

from __future__ import annotations

from importlib.resources import files

STARTER_CONFIG = "reconciler.toml"


def starter_config() -> str:
    """The commented starter configuration that `reconciler config init` writes."""
    return files("reconciler.templates").joinpath(STARTER_CONFIG).read_text(encoding="utf-8")
