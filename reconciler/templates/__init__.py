"""Files the reconciler writes for its user, shipped inside the package as data so that they
are there in an installed wheel as in a checkout (read by reconciler.templates.starter).

Invariant: ``reconciler.toml`` here is ``reconciler.example.toml`` (at the repository's root)
from its ``[database]`` table on, under a header of its own; a test keeps the two in step (a
link would not do: a relative database path resolves against the configuration's folder).
"""
