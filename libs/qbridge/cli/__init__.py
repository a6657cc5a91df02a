"""``qbridge``: the command-line client of the gRPC gateway (``python -m qbridge.cli``)."""
