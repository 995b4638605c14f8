"""Where the partitions of a bulk job run: here, one after the other, or on a Dask cluster.

A partition is a plain function of picklable arguments (the database, a :class:`Db`, first) that
opens its own connection: :func:`engine` keeps one small engine per URL and process, so a Dask
worker reuses its connections across the partitions it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import QueuePool

from grids.locate import Snapshot, load_snapshot

_ENGINES: dict[str, Engine] = {}
# (url, job) -> the snapshot this process places incidents with: the boundaries and staff in
# force when the job's first partition ran here (one job's at a time per process)
_SNAPSHOTS: dict[tuple[str, str], Snapshot] = {}


def engine(url: str) -> Engine:
    """One engine per database URL in this process (a Dask worker's partitions share it)."""
    eng = _ENGINES.get(url)
    if eng is None:
        eng = _ENGINES[url] = create_engine(url, poolclass=QueuePool, pool_size=2,
                                            max_overflow=2, pool_pre_ping=True)
    return eng


@dataclass(frozen=True)
class Db:
    """The database a partition works on: its URL and what to run first in each writing
    transaction (``setup(conn)``: e.g. naming the actor for the audit log; a module-level
    function or a ``functools.partial`` of one, so that it pickles to Dask workers)."""

    url: str
    setup: Callable[[Connection], None] | None = None

    @contextmanager
    def begin(self, *, read_only: bool = False) -> Iterator[Connection]:
        """A transaction, committed when the block ends without an exception."""
        with engine(self.url).begin() as conn:
            if read_only:
                conn.execute(text("SET TRANSACTION READ ONLY"))
            elif self.setup is not None:
                self.setup(conn)
            yield conn


def as_db(db: Db | str) -> Db:
    return db if isinstance(db, Db) else Db(db)


def snapshot(conn: Connection, url: str, job: str) -> Snapshot:
    """The locator snapshot for ``job`` in this process, loaded on its first partition here."""
    snap = _SNAPSHOTS.get((url, job))
    if snap is None:
        _SNAPSHOTS.clear()
        snap = _SNAPSHOTS[(url, job)] = load_snapshot(conn)
    return snap


class Runner(Protocol):
    """Runs ``fn(*args, *item)`` for each item and returns the results in the items' order."""

    name: str

    def map(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], *args: Any
            ) -> list[Any]: ...


class InProcess:
    """The single-process path: each partition in turn, in this process. As on Dask, a failing
    partition does not stop the others; the first error is raised once all have run."""

    name = "single"

    def map(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], *args: Any
            ) -> list[Any]:
        out, error = [], None
        for item in items:
            try:
                out.append(fn(*args, *item))
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the other partitions
                error = error or exc
        if error is not None:
            raise error
        return out


class DaskRunner:
    """The partitions as Dask tasks on ``client``'s cluster, gathered in the items' order.

    Tasks are submitted with ``pure=False`` (they read and write the database: never cached or
    deduplicated by the scheduler). An exception in a task is raised here, after the others
    have finished (their transactions are their own: see each job for what that leaves).
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.name = f"dask:{len(client.scheduler_info().get('workers', {}))}w"

    def map(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], *args: Any
            ) -> list[Any]:
        futures = [self.client.submit(fn, *args, *item, pure=False) for item in items]
        from distributed import wait

        wait(futures)
        return self.client.gather(futures)

    def compute(self, tasks: Sequence[Any]) -> list[Any]:
        """Dask delayed ``tasks`` (e.g. over a dask-geopandas frame's partitions) computed on
        the cluster, all finished before the first error is raised; results in order."""
        from distributed import wait

        futures = self.client.compute(list(tasks))
        wait(futures)
        return self.client.gather(futures)


@contextmanager
def dask_client(scheduler: str | None = None, *, n_workers: int = 2,
                memory_limit: str = "2GiB") -> Iterator[Any]:
    """A ``distributed.Client``: on ``scheduler`` (``tcp://host:8786``) if given, else on a
    ``LocalCluster`` of ``n_workers`` processes with one thread each (the partitions hold the
    GIL for parts of their work; processes, not threads, use the cores)."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0", memory_limit=memory_limit,
                      silence_logs=40) as cluster, Client(cluster) as client:
        yield client
