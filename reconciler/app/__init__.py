"""The use cases the command line and the daemon both call: one run, one scan (the chain's
surveillance from checkpoint to pin), one segregation statement, the wallet review, the
online configuration check, the demo, and the documents they produce (`--json`, CSV, HTML).

Invariant: a use case takes its settings, ledger and chain adapters as arguments (built by
reconciler.bootstrap) and returns values or documents; it parses no command line and imports
nothing of reconciler.cli or reconciler.daemon (the demo prints only through the consoles and
the run printer it is handed).
"""
