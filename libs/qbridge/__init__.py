"""qbridge: hybrid quantum-classical optimization as event-driven services.

Shared code lives here: contracts and codec, event bus, problem model, the
solvers' common interface and observability helpers.
"""

__version__ = "0.1.0"
