"""Segregation statements: what each customer class is owed, what it holds, and the findings.

values (inputs, statements, exact USD arithmetic), valuation (prices, haircuts, the §23.156
schedule), requirement (each class's statement), findings (deficit, residual interest,
commingling, concentration), pilot (the weekly report), stored (inputs as JSON and back).

Pure: standard library Decimal and the reconciler's own value and settings types; no SQL, no
web3. Invariants:

- USD arithmetic is exact. Every product and sum is computed in a 400-digit context that traps
  Inexact, so no intermediate figure is ever rounded (a uint256 of units times an int256 feed
  answer fits with room to spare). Each reported total is rounded to the cent once, from the
  exact sum of its parts, with ROUND_HALF_EVEN; the excess is the rounded funds minus the rounded
  requirement, so the statement's lines add up as printed. Per-line figures (a holding's market
  value, a customer's equity) are rounded for display only and may differ from the total by a
  cent.
- Never a silent zero: a price that is missing, stale, non-positive or unreadable, or a chain
  that could not be read, makes the statement of every class it touches incomplete. An
  incomplete statement has no totals (null), raises no deficit, residual-interest or
  concentration finding, and resolves none (its keys are left out of the coverage).
- Customer equity is valued at market, without haircut (the CFTC computation values the
  securities a customer owns at market in its net liquidating equity); haircuts apply to the
  funds in segregation only. Debit balances never reduce the amount required.
- Break keys: class-level findings (segregation_deficit, residual_interest_below_target,
  concentration_limit) are keyed chain "*", wallet = the class ("futures"); no chain or asset
  can be named "*" or carry ":" (configuration names are [A-Za-z0-9_.-]), so they never collide
  with a wallet's keys. Commingling is keyed by the wallet and asset where the misplaced entries
  sit, on that wallet's chain.
"""
