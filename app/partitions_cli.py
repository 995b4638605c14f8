"""``citygrid partitions …``: the month partitions of the history logs and of ``incident``
(app/partitions.py).

Runs as the schema owner (``CITYGRID_MIGRATION_URL``, else the dev owner): creating, detaching
and dropping partitions is DDL the app role may not do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import create_engine

from app import partitions
from app.settings import get_settings

partitions_app = typer.Typer(
    help="Month partitions of patrol_fix, incident_event and incident: create ahead, list, "
         "detach, "
         "archive to GeoParquet, attach again.", no_args_is_help=True)

TableArg = Annotated[str, typer.Argument(help="patrol_fix, incident_event or incident")]
MonthArg = Annotated[str, typer.Argument(help="YYYY-MM (UTC month)")]
DirOpt = Annotated[Path, typer.Option("--dir", help="Archive root: <dir>/<table>/<YYYY-MM>/")]


def _engine():
    return create_engine(get_settings().db.owner_url)


def _fail(exc: partitions.PartitionError) -> None:
    typer.secho(f"error [{exc.code}]: {exc.message}", fg="red", err=True)
    raise typer.Exit(2)


@partitions_app.command("ensure")
def ensure(
    back: Annotated[int, typer.Option(help="Also create this many past months")] = 0,
    ahead: Annotated[int, typer.Option(help="Months ahead of this one")] = 3,
) -> None:
    """Create this month's partitions and ``ahead`` more (idempotent; run it monthly)."""
    try:
        with _engine().begin() as conn:
            names = partitions.ensure(conn, back=back, ahead=ahead)
    except partitions.PartitionError as exc:
        _fail(exc)
    typer.echo(f"{len(names)} month partitions in place: {names[0]} .. {names[-1]}")


@partitions_app.command("list")
def list_(table: Annotated[str | None, typer.Argument(help="One table (default: all)")] = None,
          ) -> None:
    """Every month partition: attached or detached, estimated rows, size."""
    try:
        with _engine().connect() as conn:
            parts = partitions.list_partitions(conn, table)
    except partitions.PartitionError as exc:
        _fail(exc)
    for p in parts:
        state = "attached" if p.attached else "DETACHED"
        rows = "?" if p.rows < 0 else f"~{p.rows}"
        typer.echo(f"{p.table:15s} {p.month or 'default':8s} {p.name:26s} {state:9s} "
                   f"rows {rows:>12s}  {p.bytes / 1e6:9.1f} MB")


@partitions_app.command("detach")
def detach(table: TableArg, month: MonthArg) -> None:
    """Detach a month; it stays as a plain table of the same name."""
    try:
        with _engine().begin() as conn:
            name = partitions.detach(conn, table, month)
    except partitions.PartitionError as exc:
        _fail(exc)
    typer.echo(f"detached {name}")


@partitions_app.command("archive")
def archive(table: TableArg, month: MonthArg, directory: DirOpt) -> None:
    """Write a month to GeoParquet + manifest, then detach and drop it (all or nothing)."""
    try:
        manifest = partitions.archive(_engine(), table, month, directory)
    except partitions.PartitionError as exc:
        _fail(exc)
    typer.echo(f"archived {manifest['partition']}: {manifest['rows']} rows, "
               f"{manifest['bytes']} bytes, sha256 {manifest['sha256'][:16]}…")


@partitions_app.command("attach")
def attach(table: TableArg, month: MonthArg, directory: Annotated[Path | None, typer.Option(
        "--dir", help="Archive root to load from; without it, a detached month is attached "
                      "again")] = None) -> None:
    """Load an archived month from its files, check it against the manifest, attach it (or,
    without --dir, attach again a month left detached by ``detach``)."""
    try:
        if directory is None:
            with _engine().begin() as conn:
                name = partitions.reattach(conn, table, month)
            typer.echo(f"attached {name} again")
            return
        rows = partitions.attach(_engine(), table, month, directory)
    except partitions.PartitionError as exc:
        _fail(exc)
    typer.echo(f"attached {partitions.part_name(table, partitions.parse_month(month))}: "
               f"{rows} rows")
