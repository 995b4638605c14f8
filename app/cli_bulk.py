"""``citygrid bulk``: the bulk jobs of layers/bulk, in this process or on Dask distributed.

``--dask`` (default) runs the partitions on ``CITYGRID_DASK_SCHEDULER`` if set, else on a
``LocalCluster`` of ``CITYGRID_DASK_WORKERS`` processes; ``--single`` runs them here, one after
the other. Writing transactions name the CLI's OS user for the audit log, on every worker.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from app.db import set_actor
from app.settings import BulkSettings, _from_env, get_settings

bulk_app = typer.Typer(help="Bulk work over the whole history (layers/bulk), on Dask or here.",
                       no_args_is_help=True)

Single = Annotated[bool, typer.Option("--single/--dask",
                                      help="Run here, one partition after another (default: Dask)")]


def _db(actor: str) -> Any:
    from layers.bulk.runner import Db

    return Db(get_settings().db.database_url, setup=partial(set_actor, actor=actor))


@contextmanager
def _runner(single: bool) -> Iterator[Any]:
    from layers.bulk.runner import DaskRunner, InProcess, dask_client

    if single:
        yield InProcess()
        return
    cfg = _from_env(BulkSettings)()
    with dask_client(cfg.dask_scheduler, n_workers=cfg.dask_workers,
                     memory_limit=cfg.dask_worker_memory) as client:
        yield DaskRunner(client)


def _done(what: str, runner: Any, t0: float, out: dict[str, Any]) -> None:
    typer.echo(f"{what} on {runner.name} in {time.perf_counter() - t0:.1f} s: "
               + json.dumps(out, ensure_ascii=False, default=str))


@bulk_app.command("relocate")
def relocate(
    write: Annotated[bool, typer.Option("--write/--dry-run",
                                        help="Write the moves (default: only report them)")] = False,
    open_only: Annotated[bool, typer.Option("--open-only",
                                            help="Only open cases (closed ones keep their grid)")
                         ] = False,
    show: Annotated[int, typer.Option(help="List this many moves")] = 20,
    single: Single = False,
) -> None:
    """Place every incident again under the boundaries in force (after a redraw or code change);
    one transaction per month of history."""
    from layers.bulk.relocate import relocate as run

    with _runner(single) as runner:
        t0 = time.perf_counter()
        out = run(_db(f"cli:{getpass.getuser()}"), runner, write=write, open_only=open_only)
        _done("relocate" + ("" if write else " (dry run)"), runner, t0, out.as_dict(items=show))


@bulk_app.command("coverage")
def coverage(
    first: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"],
                                            help="First city day")],
    last: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"],
                                           help="Last city day (inclusive)")],
    single: Single = False,
) -> None:
    """Recompute the daily patrol coverage per grid over a range of days (up to a year)."""
    from layers.bulk.coverage import recompute

    if last < first or (last - first).days > 366:
        typer.secho("--to must not be before --from, and at most a year after it", fg="red")
        raise typer.Exit(2)
    with _runner(single) as runner:
        t0 = time.perf_counter()
        out = recompute(_db(f"cli:{getpass.getuser()}"), runner, first.date(), last.date())
        del out["cover"]
        _done("coverage", runner, t0, out)


@bulk_app.command("import")
def import_history(
    paths: Annotated[list[Path], typer.Argument(help="CSV or GeoParquet files of incidents")],
    partial_rows: Annotated[bool, typer.Option("--partial",
                                               help="Take a file's good rows, list its bad ones")
                            ] = False,
    single: Single = False,
) -> None:
    """Import incidents from files through the intake path; idempotent (one file a partition)."""
    from layers.bulk.history import import_files

    with _runner(single) as runner:
        t0 = time.perf_counter()
        out = import_files(_db(f"cli:{getpass.getuser()}"), runner,
                           [str(p.resolve()) for p in paths], partial=partial_rows)
        _done("import", runner, t0, {k: v for k, v in out.items() if k != "per_file"})
        for f in out["per_file"]:
            for e in f["errors"]:
                typer.echo(f"  {Path(f['file']).name} row {e['row']} [{e['field']}]: "
                           f"{e['reason']}", err=True)


@bulk_app.command("yearly")
def yearly(
    last: Annotated[str, typer.Option("--to", help="Last month of the year (YYYY-MM)")],
    level: Annotated[str, typer.Option(help="street, community, grid, worker or department")
                     ] = "street",
    out: Annotated[Path | None, typer.Option(help="Write the rows as CSV here")] = None,
    single: Single = False,
) -> None:
    """The yearly analysis: each month's assessment figures per unit over twelve months."""
    import pandas as pd

    from grids.errors import GridError
    from layers.bulk.yearly import yearly as run

    with _runner(single) as runner:
        t0 = time.perf_counter()
        try:
            got = run(get_settings().db.database_url, runner, last=last, level=level,
                      as_of=datetime.now(UTC))
        except GridError as exc:
            typer.secho(f"error [{exc.code}]: {exc.message}", fg="red", err=True)
            raise typer.Exit(2) from exc
        _done("yearly", runner, t0, {"months": got["months"], "level": level,
                                     "rows": len(got["rows"])})
    if out is not None:
        pd.DataFrame(got["rows"]).to_csv(out, index=False)
        typer.echo(f"wrote {out}")
