"""Custody and segregation reconciler for tokenized collateral."""

__version__ = "0.1.0"
