"""The command tree shell completion answers from (`reconciler.cli.completion`): generated from
the Typer app, never edited by hand. Regenerate it after changing a command or an option:

    .venv/bin/python -c 'from reconciler.cli.main import completion_tree_source as s; print(s(), end="")' \
        > reconciler/cli/completion_tree.py
"""

from typing import Any

TREE: dict[str, Any] = (
    {'options': [[['--config'], 1, 0, 'Configuration file (TOML); else $RECONCILER_CONFIG, ./reconciler.toml.'],
                 [['--debug'], 0, 0, "Debug logs (the reconciler's own) and tracebacks."],
                 [['--quiet', '-q'], 0, 0, 'No progress or informational lines on stderr (errors and warnings stay).'],
                 [['--version'], 0, 0, 'Print the version.'],
                 [['--log-format'], 1, 0, 'Log lines as text (key=value) or json (one object per line).'],
                 [['--install-completion'], 0, 0, 'Install completion for the current shell.'],
                 [['--show-completion'], 0, 0,
                  'Show completion for the current shell, to copy it or customize the installation.'],
                 [['-h', '--help'], 0, 0, 'Show this message and exit.']],
     'commands': {'init': ['Create or migrate the database schema (idempotent; never writes the config).',
                           {'options': [[['--json'], 0, 0, 'Print one JSON document on stdout.'],
                                        [['-h', '--help'], 0, 0, 'Show this message and exit.']],
                            'commands': None}],
                  'run': ['Reconcile every wallet x asset against the books at one pinned block per chain, after '
                          'observing every movement since the last scan (transfers, approvals, native value).',
                          {'options': [[['--json'], 0, 0, 'Print one JSON document on stdout.'],
                                       [['--positions'], 0, 0,
                                        'Also list every wallet x asset: differing first, then non-zero, then zero.'],
                                       [['-h', '--help'], 0, 0, 'Show this message and exit.']],
                           'commands': None}],
                  'scan': ['Observe every movement of the custody wallets since the last scan, up to the pinned block '
                           'of each chain, and judge it: outflows against signed instructions, inflows against the '
                           'books, approvals against allowed spenders.',
                           {'options': [[['--json'], 0, 0, 'Print one JSON document on stdout.'],
                                        [['-h', '--help'], 0, 0, 'Show this message and exit.']],
                            'commands': None}],
                  'daemon': ['Run the jobs of [schedule] (run, scan, segregation_statement) around the clock until '
                             'SIGTERM or SIGINT, which stop it within 10 seconds (the job in progress is recorded '
                             'incomplete) with exit 0.',
                             {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']], 'commands': None}],
                  'health': ['For a process supervisor or a load balancer: exit 0 when the last run of every '
                             'scheduled job finished complete within twice its interval and no alert has waited for '
                             'delivery longer than [alerts] max_pending_age (5 minutes), 1 otherwise, saying why.',
                             {'options': [[['--json'], 0, 0, 'Print one JSON document on stdout.'],
                                          [['-h', '--help'], 0, 0, 'Show this message and exit.']],
                              'commands': None}],
                  'demo': ['Start two local Anvil chains, plant breaks, reconcile, and explain what was found and '
                           'what to try next (`--keep DIR` keeps the config, books and ledger to explore).',
                           {'options': [[['--keep'], 1, 0,
                                         "Write the demo's config, books and database into DIR and keep them; refuses "
                                         'a folder holding such files that the demo did not write, starts its own '
                                         'over.'],
                                        [['--json'], 0, 0, 'Print one JSON document on stdout.'],
                                        [['-h', '--help'], 0, 0, 'Show this message and exit.']],
                            'commands': None}],
                  'presign': ['Check a Safe transaction before it is signed: the domain, message and safeTxHash to '
                              'compare on the hardware wallet, the decoded call (MultiSend batches too), and the '
                              'rules (delegatecall, wallet_config_call, wallet_storage_write, approval, '
                              'unauthorized_outflow, gas_refund, nonce, no_code_target) on the payload and on its '
                              'execution simulated at the pinned block.',
                              {'options': [[['--wallet'], 1, 0, "The configured wallet (else: the domain's)."],
                                           [['--offline'], 0, 0, 'Hashes and static rules only; no chain read.'],
                                           [['--chain-id'], 1, 0, 'The chain id, when FILE does not say.'],
                                           [['--safe'], 1, 0, "The Safe's address, when FILE does not say."],
                                           [['--safe-version'], 1, 0,
                                            "The Safe's version (default: read from it; 1.3.0 offline)."],
                                           [['--json'], 0, 0, 'Print one JSON document on stdout.'],
                                           [['-h', '--help'], 0, 0, 'Show this message and exit.']],
                               'commands': None}],
                  'bench': ['Benchmark against the RPC floor on a local Anvil (`reconciler bench [--n N ...] '
                            '[--large]`; --help).',
                            {'options': [], 'commands': None}],
                  'config': ['Write a starter configuration, and check one.',
                             {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                              'commands': {'check': ['Validate the configuration file; with --online, also read each '
                                                     'chain as a run does and list what was verified: endpoint, chain '
                                                     'id, head and pinned block, read path, decimals.',
                                                     {'options': [[['--online'], 0, 0,
                                                                   "Also check each node's chain id and each token's "
                                                                   'decimals().'],
                                                                  [['--json'], 0, 0,
                                                                   'Print one JSON document on stdout.'],
                                                                  [['-h', '--help'], 0, 0,
                                                                   'Show this message and exit.']],
                                                      'commands': None}],
                                           'init': ['Write a commented starter configuration (default '
                                                    './reconciler.toml) to edit; never overwrites a file unless '
                                                    '--force.',
                                                    {'options': [[['--force'], 0, 0, 'Overwrite an existing file.'],
                                                                 [['-h', '--help'], 0, 0,
                                                                  'Show this message and exit.']],
                                                     'commands': None}]}}],
                  'accounts': ['Customer and house accounts.',
                               {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                                'commands': {'import': ['Import accounts from CSV (account,class,name); all rows or '
                                                        'none.',
                                                        {'options': [[['--json'], 0, 0,
                                                                      'Print one JSON document on stdout.'],
                                                                     [['-h', '--help'], 0, 0,
                                                                      'Show this message and exit.']],
                                                         'commands': None}],
                                             'list': ['Every account imported, with its class and name.',
                                                      {'options': [[['--json'], 0, 0,
                                                                    'Print one JSON document on stdout.'],
                                                                   [['-h', '--help'], 0, 0,
                                                                    'Show this message and exit.']],
                                                       'commands': None}]}}],
                  'books': ["The firm's books of custody entries.",
                            {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                             'commands': {'import': ['Import book entries from CSV '
                                                     '(entry_id,date,account,wallet,asset,amount,kind,memo[,tx_hash]).',
                                                     {'options': [[['--json'], 0, 0,
                                                                   'Print one JSON document on stdout.'],
                                                                  [['-h', '--help'], 0, 0,
                                                                   'Show this message and exit.']],
                                                      'commands': None}],
                                          'list': ['Book entries, newest first (by date, then entry id), with the '
                                                   "books CSV's columns.",
                                                   {'options': [[['--wallet'], 1, 0, "Only this wallet's entries."],
                                                                [['--asset'], 1, 0, "Only this asset's entries."],
                                                                [['--account'], 1, 0, "Only this account's entries."],
                                                                [['--limit'], 1, 0,
                                                                 'How many, newest first; 0 for all.'],
                                                                [['--json'], 0, 0,
                                                                 'Print one JSON document on stdout.'],
                                                                [['-h', '--help'], 0, 0,
                                                                 'Show this message and exit.']],
                                                    'commands': None}],
                                          'balances': ['The book balance of each wallet x asset (the sum of its '
                                                       'entries), as a run compares it with the chain; one that no '
                                                       'configured wallet x asset covers is marked not reconciled.',
                                                       {'options': [[['--json'], 0, 0,
                                                                     'Print one JSON document on stdout.'],
                                                                    [['-h', '--help'], 0, 0,
                                                                     'Show this message and exit.']],
                                                        'commands': None}],
                                          'draft': ['Draft book entries for what the chain showed, as a books CSV to '
                                                    'review, then import with `books import`: the gas fees custody '
                                                    'wallets paid (kind adjustment, negative, in the native coin) '
                                                    'and, with --unbooked, observed movements no book entry names '
                                                    '(deposits positive, withdrawals negative).',
                                                    {'options': [[['--out'], 1, 0,
                                                                  "The books CSV to write ('-': stdout)."],
                                                                 [['--fees'], 0, 0,
                                                                  'Gas fees custody wallets paid (the default).'],
                                                                 [['--unbooked'], 0, 0,
                                                                  'Observed movements whose tx hash no book entry of '
                                                                  'the wallet carries.'],
                                                                 [['--account'], 1, 0,
                                                                  'Book every row to this account. Default: as the '
                                                                  'description says.'],
                                                                 [['--since'], 1, 0,
                                                                  'Only what was observed on or after DATE (UTC).'],
                                                                 [['--wallet'], 1, 1,
                                                                  'Only this wallet (repeatable). Default: every '
                                                                  'wallet.'],
                                                                 [['--force'], 0, 0, 'Overwrite FILE if it exists.'],
                                                                 [['--json'], 0, 0,
                                                                  'Print one JSON document on stdout.'],
                                                                 [['-h', '--help'], 0, 0,
                                                                  'Show this message and exit.']],
                                                     'commands': None}]}}],
                  'breaks': ['Breaks and their lifecycle.',
                             {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                              'commands': {'list': ['List breaks.',
                                                    {'options': [[['--status'], 1, 1,
                                                                  'open, acknowledged or resolved; repeatable. '
                                                                  'Default: open and acknowledged.'],
                                                                 [['--all'], 0, 0,
                                                                  'Every break, resolved ones included.'],
                                                                 [['--json'], 0, 0,
                                                                  'Print one JSON document on stdout.'],
                                                                 [['-h', '--help'], 0, 0,
                                                                  'Show this message and exit.']],
                                                     'commands': None}],
                                           'show': ['One break with its evidence and history (BREAK_ID: the id or any '
                                                    'unique prefix of it, 4 characters or more).',
                                                    {'options': [[['--json'], 0, 0,
                                                                  'Print one JSON document on stdout.'],
                                                                 [['-h', '--help'], 0, 0,
                                                                  'Show this message and exit.']],
                                                     'commands': None}],
                                           'ack': ['Acknowledge an open break (it stays until a run no longer finds '
                                                   'it).',
                                                   {'options': [[['--note'], 1, 0,
                                                                 'Why, and who is on it (kept in the audit trail).'],
                                                                [['--json'], 0, 0,
                                                                 'Print one JSON document on stdout.'],
                                                                [['-h', '--help'], 0, 0,
                                                                 'Show this message and exit.']],
                                                    'commands': None}],
                                           'resolve': ['Resolve a break by hand, with the reason kept in its audit '
                                                       'trail: typically one no run can check any more (its wallet or '
                                                       'asset left the configuration), or an event-like break (an '
                                                       'unauthorized transfer) after review.',
                                                       {'options': [[['--note'], 1, 0,
                                                                     'Why it is closed, and by whom (kept in the '
                                                                     'audit trail).'],
                                                                    [['--json'], 0, 0,
                                                                     'Print one JSON document on stdout.'],
                                                                    [['-h', '--help'], 0, 0,
                                                                     'Show this message and exit.']],
                                                        'commands': None}],
                                           'verify-audit': ['Check the audit trail and that it vouches for the '
                                                            "tables: the hash chain, each record's HMAC when [audit] "
                                                            'key_env is set, the given --head, then the breaks, their '
                                                            'events and the runs replayed from the trail against the '
                                                            'tables as stored.',
                                                            {'options': [[['--head'], 1, 0,
                                                                          'An earlier head (from `runs show`, '
                                                                          '`verify-audit --json` or a run.finished '
                                                                          'webhook) that the trail must still '
                                                                          'contain: how a truncated or rewritten '
                                                                          'trail is caught.'],
                                                                         [['--json'], 0, 0,
                                                                          'Print one JSON document on stdout.'],
                                                                         [['-h', '--help'], 0, 0,
                                                                          'Show this message and exit.']],
                                                             'commands': None}]}}],
                  'runs': ['Past runs and their documents.',
                           {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                            'commands': {'list': ['Past runs, newest first, with their outcome and who ran them.',
                                                  {'options': [[['--limit'], 1, 0, 'How many, newest first.'],
                                                               [['--json'], 0, 0,
                                                                'Print one JSON document on stdout.'],
                                                               [['-h', '--help'], 0, 0,
                                                                'Show this message and exit.']],
                                                   'commands': None}],
                                         'show': ["One run's document as `run --json` printed it (positions and "
                                                  'breaks as they were).',
                                                  {'options': [[['--json'], 0, 0,
                                                                'Print one JSON document on stdout.'],
                                                               [['-h', '--help'], 0, 0,
                                                                'Show this message and exit.']],
                                                   'commands': None}]}}],
                  'wallets': ['Custody wallets: imported into the ledger and listed; their on-chain configuration, '
                              'baseline and now.',
                              {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                               'commands': {'import': ['Import custody wallets from CSV '
                                                       '(name,chain,address,class[,kind,approvers,threshold, '
                                                       "allowed_spenders]; lists ';'-separated); all rows or none.",
                                                       {'options': [[['--json'], 0, 0,
                                                                     'Print one JSON document on stdout.'],
                                                                    [['-h', '--help'], 0, 0,
                                                                     'Show this message and exit.']],
                                                        'commands': None}],
                                            'list': ['Every custody wallet: those of the configuration, then those '
                                                     'imported into the ledger, with where each is defined (config or '
                                                     'ledger).',
                                                     {'options': [[['--json'], 0, 0,
                                                                   'Print one JSON document on stdout.'],
                                                                  [['-h', '--help'], 0, 0,
                                                                   'Show this message and exit.']],
                                                      'commands': None}],
                                            'baseline': ["Record each wallet's on-chain configuration at the pinned "
                                                         'block as reviewed.',
                                                         {'options': [[['--wallet'], 1, 1,
                                                                       'Only this wallet (repeatable). Default: every '
                                                                       'wallet.'],
                                                                      [['--json'], 0, 0,
                                                                       'Print one JSON document on stdout.'],
                                                                      [['-h', '--help'], 0, 0,
                                                                       'Show this message and exit.']],
                                                          'commands': None}],
                                            'show': ["Each wallet's configuration now, beside its baseline.",
                                                     {'options': [[['--wallet'], 1, 1,
                                                                   'Only this wallet (repeatable). Default: every '
                                                                   'wallet.'],
                                                                  [['--json'], 0, 0,
                                                                   'Print one JSON document on stdout.'],
                                                                  [['-h', '--help'], 0, 0,
                                                                   'Show this message and exit.']],
                                                      'commands': None}]}}],
                  'alerts': ['Alerts queued for webhooks.',
                             {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                              'commands': {'deliver': ['Deliver the queued alerts that are due now (the daemon does '
                                                       'this every few seconds; use this where no daemon runs).',
                                                       {'options': [[['--json'], 0, 0,
                                                                     'Print one JSON document on stdout.'],
                                                                    [['-h', '--help'], 0, 0,
                                                                     'Show this message and exit.']],
                                                        'commands': None}]}}],
                  'transfers': ['Observed movements of custody wallets.',
                                {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                                 'commands': {'list': ['Observed movements into and out of custody wallets, with the '
                                                       'instruction that authorized each outflow.',
                                                       {'options': [[['--wallet'], 1, 0, 'Only this wallet.'],
                                                                    [['--status'], 1, 0, 'observed or reorged.'],
                                                                    [['--all'], 0, 0, 'Also approvals and gas fees.'],
                                                                    [['--json'], 0, 0,
                                                                     'Print one JSON document on stdout.'],
                                                                    [['-h', '--help'], 0, 0,
                                                                     'Show this message and exit.']],
                                                        'commands': None}]}}],
                  'instructions': ['Signed transfer instructions that authorize outflows.',
                                   {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                                    'commands': {'import': ['Import signed transfer instructions (JSON lines); the '
                                                            'whole file or nothing.',
                                                            {'options': [[['--json'], 0, 0,
                                                                          'Print one JSON document on stdout.'],
                                                                         [['-h', '--help'], 0, 0,
                                                                          'Show this message and exit.']],
                                                             'commands': None}],
                                                 'sign': ['Add a signature to every instruction of FILE and print the '
                                                          'result (JSON lines) on stdout.',
                                                          {'options': [[['--key-env'], 1, 0,
                                                                        'Environment variable holding the signing key '
                                                                        '(hex).'],
                                                                       [['--keystore'], 1, 0,
                                                                        'An encrypted keystore (JSON) file.'],
                                                                       [['--password-env'], 1, 0,
                                                                        "Environment variable holding the keystore's "
                                                                        'password.'],
                                                                       [['-h', '--help'], 0, 0,
                                                                        'Show this message and exit.']],
                                                           'commands': None}],
                                                 'list': ['Every imported instruction with its status: open, consumed '
                                                          '(by a tx hash) or expired; signatures are verified again, '
                                                          'and an instruction that no longer verifies says why.',
                                                          {'options': [[['--json'], 0, 0,
                                                                        'Print one JSON document on stdout.'],
                                                                       [['-h', '--help'], 0, 0,
                                                                        'Show this message and exit.']],
                                                           'commands': None}]}}],
                  'segregation': ['Segregation statements per account class.',
                                  {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                                   'commands': {'statement': ['Compute the segregation statement of each account '
                                                              'class (amount required, funds in segregation at market '
                                                              'less haircut, excess or deficiency, target residual '
                                                              'interest) and the segregation breaks.',
                                                              {'options': [[['--class'], 1, 0,
                                                                            'One class (futures, cleared_swaps, '
                                                                            'foreign_futures, house). Default: every '
                                                                            'class.'],
                                                                           [['--as-of'], 1, 0,
                                                                            'Compute as of this instant '
                                                                            '(2026-11-24T17:00, or a date for its '
                                                                            '17:00 close): each chain is pinned at '
                                                                            'the last block at or before it. Default: '
                                                                            "now, at each chain's current pin."],
                                                                           [['--tz'], 1, 0,
                                                                            'Time zone of --as-of. Default: '
                                                                            '[segregation] timezone.'],
                                                                           [['--json'], 0, 0,
                                                                            'Print one JSON document on stdout.'],
                                                                           [['--csv'], 0, 0,
                                                                            'Print the statements as one CSV document '
                                                                            'on stdout.'],
                                                                           [['-h', '--help'], 0, 0,
                                                                            'Show this message and exit.']],
                                                               'commands': None}]}}],
                  'equity': ['Customer equity from the back office (cash, open trade equity).',
                             {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                              'commands': {'import': ['Import customer equity from CSV '
                                                      '(date,account,cash_usd,open_trade_equity_usd); all rows or '
                                                      'none.',
                                                      {'options': [[['--json'], 0, 0,
                                                                    'Print one JSON document on stdout.'],
                                                                   [['-h', '--help'], 0, 0,
                                                                    'Show this message and exit.']],
                                                       'commands': None}]}}],
                  'offchain': ['Customer funds held off chain (banks, clearing houses).',
                               {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                                'commands': {'import': ['Import off-chain funds from CSV '
                                                        '(date,class,depository,amount_usd); all rows or none.',
                                                        {'options': [[['--json'], 0, 0,
                                                                      'Print one JSON document on stdout.'],
                                                                     [['-h', '--help'], 0, 0,
                                                                      'Show this message and exit.']],
                                                         'commands': None}]}}],
                  'report': ['Regulatory reports.',
                             {'options': [[['-h', '--help'], 0, 0, 'Show this message and exit.']],
                              'commands': {'pilot': ['The weekly report of digital assets held for customers, by '
                                                     'account class and asset (units and USD at market), as of the '
                                                     "week's last close of business (Friday 17:00 in [segregation] "
                                                     'timezone).',
                                                     {'options': [[['--week'], 1, 0, 'ISO week, like 2026-W47.'],
                                                                  [['--json'], 0, 0,
                                                                   'Print one JSON document on stdout.'],
                                                                  [['-h', '--help'], 0, 0,
                                                                   'Show this message and exit.']],
                                                      'commands': None}],
                                           'html': ['Write one run as a self-contained HTML page for a compliance '
                                                    "officer: status, pinned blocks, the run's breaks by severity, "
                                                    "the ledger's open breaks now, the positions that differ, and the "
                                                    "audit trail's head.",
                                                    {'options': [[['--out'], 1, 0,
                                                                  'The HTML file to write (replaced whole).'],
                                                                 [['-h', '--help'], 0, 0,
                                                                  'Show this message and exit.']],
                                                     'commands': None}]}}]}}
)
