"""Entry point: ``PYTHONPATH=tools python -m devstack {fetch,up,down,status}``."""

from devstack.cli import main

raise SystemExit(main())
