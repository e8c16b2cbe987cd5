"""Adapters at the edge: everything that talks to a chain lives under this package."""
