"""The executor: one work item in, solver outcomes out (quantum and classical alike).

* :mod:`.worker`: what an executor does with one work item, no Kafka
  (:func:`~qbridge.executor.worker.execute`, :class:`~qbridge.executor.worker.WorkerSettings`).
* :mod:`.app`: the consumer-group app around it and the whole ``__main__`` of an
  executor service (:func:`~qbridge.executor.app.serve_executor`).

It sits above the solvers, the contracts and the bus, which know nothing of it.
"""

from qbridge.executor.app import ExecutorApp, SolverProvider, serve_executor
from qbridge.executor.worker import WorkerSettings, execute, observe

__all__ = [
    "ExecutorApp",
    "SolverProvider",
    "WorkerSettings",
    "execute",
    "observe",
    "serve_executor",
]
