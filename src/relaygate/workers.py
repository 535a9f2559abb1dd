"""``relaygate serve --workers N``: the directory its worker processes share, and the
supervisor that runs them.

``serve`` makes a private directory (mode 0700, under the system's temporary directory)
before starting the workers and removes it when it stops. It holds:

- ``metrics/``: prometheus-client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``),
  one set per worker, which ``/metrics`` on any worker reads together
  (:mod:`relaygate.metrics`);
- ``ratelimit/``: the rate-limit table the workers count in when there is no Redis
  (:mod:`relaygate.ratelimit_counters`).

Budgets need nothing here: with workers they are kept in the database, SQLite included
(:mod:`relaygate.budgets`).
"""

from __future__ import annotations

from pathlib import Path
from socket import socket

from prometheus_client.multiprocess import mark_process_dead
from uvicorn.config import Config
from uvicorn.supervisors import Multiprocess

from relaygate.ratelimit_counters import create_shared_table

METRICS_DIR = "metrics"
RATE_LIMIT_TABLE = "ratelimit"


def metrics_dir(workers_dir: Path) -> Path:
    """Where the workers' metrics files are."""
    return workers_dir / METRICS_DIR


def rate_limit_table(workers_dir: Path) -> Path:
    """Where the workers' shared rate-limit table is."""
    return workers_dir / RATE_LIMIT_TABLE


def prepare_workers_dir(workers_dir: Path) -> None:
    """Make what the workers share in the (empty) directory ``workers_dir``. Raises
    :class:`OSError` or :class:`lmdb.Error` when it cannot."""
    metrics_dir(workers_dir).mkdir(mode=0o700)
    create_shared_table(rate_limit_table(workers_dir))


class Supervisor(Multiprocess):
    """uvicorn's supervisor of worker processes (it restarts a worker that dies), which
    also tells prometheus-client of each worker gone, so the gauges summed over the
    workers alive (``livesum`` and the like) stop counting it; its counters stay."""

    def __init__(self, config: Config, sockets: list[socket], workers_dir: Path):
        super().__init__(config, sockets)
        self._metrics_dir = str(metrics_dir(workers_dir))

    def keep_subprocess_alive(self) -> None:
        before = self._pids()
        super().keep_subprocess_alive()
        self._forget(before)

    def restart_all(self) -> None:
        before = self._pids()
        super().restart_all()
        self._forget(before)

    def _pids(self) -> set[int]:
        return {p.pid for p in self.processes if p.pid is not None}

    def _forget(self, before: set[int]) -> None:
        for pid in before - self._pids():
            mark_process_dead(pid, self._metrics_dir)  # type: ignore[no-untyped-call]
