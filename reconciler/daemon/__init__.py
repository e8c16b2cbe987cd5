"""Around the clock: the scheduler that runs the configured jobs (claimed firings, catch-up),
webhook alerts delivered from the ledger's outbox, Prometheus metrics, `health`, and JSON log
lines.

Invariant: the daemon calls the same use cases as the command line (reconciler.app); it adds
timing, delivery and observation, never a second way to reconcile.
"""
