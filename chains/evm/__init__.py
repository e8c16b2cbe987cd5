"""EVM chains through JSON-RPC: hand-encoded hot paths, web3.py for everything else."""
