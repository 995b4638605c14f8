"""The ``citygrid`` command line: database, demo city, checks, imports, exports, lookups."""

from __future__ import annotations

import getpass
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import create_engine

from app.cli_bulk import bulk_app
from app.db import is_empty, migrate, set_actor
from app.partitions_cli import partitions_app
from app.settings import get_settings

app = typer.Typer(help="CityGrid: grid management for city social governance.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
demo_app = typer.Typer(help="The demo city.", no_args_is_help=True)
import_app = typer.Typer(help="Import regions and rosters.", no_args_is_help=True)
user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(import_app, name="import")
addresses_app = typer.Typer(help="The standard address book (标准地址库).", no_args_is_help=True)
app.add_typer(addresses_app, name="addresses")
city_app = typer.Typer(help="The city profile (time zone, metric CRS, phone pattern).",
                       no_args_is_help=True)
app.add_typer(city_app, name="city")
calendar_app = typer.Typer(help="The workday calendar (holidays, make-up workdays, office hours).",
                           no_args_is_help=True)
app.add_typer(calendar_app, name="calendar")
packs_app = typer.Typer(help="The monthly meeting packs the server keeps (CITYGRID_PACK_DIR).",
                        no_args_is_help=True)
app.add_typer(packs_app, name="packs")
app.add_typer(partitions_app, name="partitions")  # app/partitions_cli.py
app.add_typer(bulk_app, name="bulk")


def _engine():
    return create_engine(get_settings().db.database_url)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@contextmanager
def _writing() -> Iterator:
    """A transaction whose changes the audit log attributes to the CLI's OS user."""
    with _engine().begin() as conn:
        set_actor(conn, _actor())
        yield conn


def _fail(exc: Exception) -> None:
    """Print a domain error as the API would, and exit non-zero."""
    code = getattr(exc, "code", type(exc).__name__)
    typer.secho(f"error [{code}]: {getattr(exc, 'message', exc)}", fg="red", err=True)
    detail = getattr(exc, "detail", None)
    errors = detail.get("errors") if isinstance(detail, dict) else None
    items = errors or ([detail] if detail else [])
    for item in items[:100]:
        typer.echo(f"  - {_problem(item)}", err=True)
    total = detail.get("total", len(items)) if isinstance(detail, dict) else len(items)
    if total > min(len(items), 100):
        typer.echo(f"  ... and {total - min(len(items), 100)} more", err=True)
    raise typer.Exit(2)


def _problem(item: object) -> str:
    """One problem of an import as a line: where (row or feature, code, field), then why."""
    if not isinstance(item, dict) or "reason" not in item:
        return str(item)
    where = [f"row {item['row']}" if item.get("row") is not None else "",
             f"feature {item['feature']}" if item.get("feature") is not None else "",
             str(item.get("code") or item.get("staff_code") or ""),
             f"[{item['field']}]" if item.get("field") else ""]
    head = " ".join(w for w in where if w)
    return f"{head}: {item['reason']}" if head else str(item["reason"])


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the schema to the newest revision (idempotent)."""
    from layers.incidents.catalogue import seed

    migrate(get_settings().db.owner_url)
    with _writing() as conn:
        added = seed(conn)
    typer.echo(f"schema is up to date; catalogue: {added} categories added")


@demo_app.command("load")
def demo_load(
    if_empty: Annotated[bool, typer.Option("--if-empty", help="Do nothing if a city exists")] = False,
    grids: Annotated[int | None, typer.Option(help="Synthetic city with about N grids")] = None,
    incidents: Annotated[int, typer.Option(help="Demo incidents over a year (0: none)")] = 220_000,
    patrols: Annotated[int | None, typer.Option(
        help="Days of demo patrol GPS (0: none; default: last month and this month so far)")
    ] = None,
    city: Annotated[str | None, typer.Option(
        help="County-level code of a demo city in data/sources (default: the first demo city)"
    )] = None,
) -> None:
    """Generate a demo city and a year of incidents, each in one transaction."""
    from sqlalchemy import text

    from app.seed import load_demo
    from app.seed_incidents import load_demo_incidents

    with _writing() as conn:
        if is_empty(conn):
            t0 = time.perf_counter()
            counts = load_demo(conn, city=city, grids=grids)
            typer.echo(f"city: {counts} in {time.perf_counter() - t0:.1f} s")
        elif not if_empty:
            typer.secho("the database already holds a city; load into an empty one", fg="red")
            raise typer.Exit(2)
        else:
            typer.echo("a city is already loaded")
    if patrols != 0:
        from data.patrols import load_demo_patrols
        from layers.patrols.grid_cover import refresh_stale

        with _writing() as conn:
            if conn.execute(text("SELECT EXISTS (SELECT 1 FROM patrol_fix)")).scalar():
                typer.echo("patrols are already loaded")
            else:
                t0 = time.perf_counter()
                counts = load_demo_patrols(conn, days=patrols)
                typer.echo(f"patrols: {counts} in {time.perf_counter() - t0:.1f} s")
                t0 = time.perf_counter()
                cover = refresh_stale(conn)  # the days the new fixes were noted for
                typer.echo(f"patrol coverage per grid and day: {cover} "
                           f"in {time.perf_counter() - t0:.1f} s")
    if incidents:
        with _writing() as conn:
            if conn.execute(text("SELECT EXISTS (SELECT 1 FROM incident)")).scalar():
                typer.echo("incidents are already loaded")
                return
            t0 = time.perf_counter()
            counts = load_demo_incidents(conn, n=incidents)
            typer.echo(f"incidents: {counts} in {time.perf_counter() - t0:.1f} s")


@app.command("coverage-refresh")
def coverage_refresh(
    first: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"],
                                            help="First city day")],
    last: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"],
                                           help="Last city day (inclusive)")],
) -> None:
    """Recompute the daily patrol coverage the map tiles carry (e.g. after a boundary change)."""
    from layers.patrols.grid_cover import refresh_range

    if last < first or (last - first).days > 366:
        typer.secho("--to must not be before --from, and at most a year after it", fg="red")
        raise typer.Exit(2)
    with _writing() as conn:
        t0 = time.perf_counter()
        done = refresh_range(conn, first.date(), last.date())
    typer.echo(f"coverage: {done} in {time.perf_counter() - t0:.1f} s")


@app.command()
def check(
    region: Annotated[str | None, typer.Option(help="Only this region's subtree")] = None,
    at: Annotated[datetime | None, typer.Option(help="Boundaries in force at this time")] = None,
    tolerance: Annotated[float | None, typer.Option(help="Area tolerance in m²")] = None,
) -> None:
    """Report every topology violation (place and area); exit 1 if there is any."""
    from grids import topology

    tol = tolerance if tolerance is not None else get_settings().city.topology_tolerance_m2
    with _engine().connect() as conn:
        violations = topology.check(conn, at=at, root_code=region, tolerance_m2=tol)
    for v in violations:
        where = f"{v.location[0]:.6f},{v.location[1]:.6f}" if v.location else "-"
        typer.echo(f"{v.kind:16s} {v.code} {v.other_code or ''} area={v.area_m2:.2f} m² "
                   f"at={where}  {v.message}")
    typer.echo(f"{len(violations)} violation(s); tolerance {tol} m²")
    raise typer.Exit(1 if violations else 0)


@import_app.command("regions")
def import_regions(
    path: Path,
    layer: Annotated[str | None, typer.Option(help="Layer name (GeoPackage)")] = None,
    crs: Annotated[str | None, typer.Option(help="Source CRS, e.g. EPSG:4326, gcj02, bd09")] = None,
    level: Annotated[str | None, typer.Option(help="Level, if the file has no level field")] = None,
    code_field: str = "code", name_field: str = "name", parent_field: str = "parent_code",
    level_field: str = "level",
    encoding: Annotated[str | None, typer.Option(
        help="Shapefile text encoding, e.g. GBK (default: the .cpg, else UTF-8 or GB18030, "
             "whichever decodes it)")] = None,
    replace: Annotated[bool, typer.Option(help="Supersede regions already in force")] = False,
    label: Annotated[str | None, typer.Option(help="Label of the new boundary version")] = None,
) -> None:
    """Import a region layer from GeoJSON, GeoPackage or Shapefile, all or nothing."""
    from gis.errors import GisError
    from grids import io
    from grids.city import profile
    from grids.errors import GridError

    with _engine().connect() as conn:
        srid = profile(conn).metric_srid  # names the zone of Gauss-Krüger metres without prefix
    try:
        frame = io.read_regions(path, layer=layer, crs=crs, code_field=code_field,
                                name_field=name_field, parent_field=parent_field,
                                level_field=level_field, level=level, encoding=encoding,
                                metric=f"EPSG:{srid}" if srid else None)
        with _writing() as conn, typer.progressbar(length=len(frame), label="importing") as bar:
            done = [0]

            def progress(n: int, total: int) -> None:
                bar.update(n - done[0])
                done[0] = n

            summary = io.import_regions(conn, frame, label=label or f"import {path.name}",
                                        source=str(path), replace=replace, progress=progress)
    except (GridError, GisError) as exc:
        _fail(exc)
    for warning in summary.pop("warnings", []):
        typer.secho(f"warning: {_problem(warning)}", fg="yellow", err=True)
    typer.echo(f"imported {summary}")


@import_app.command("roster")
def import_roster(path: Path,
                  sheet: Annotated[str | None, typer.Option(help="XLSX sheet")] = None) -> None:
    """Import staff and assignments from CSV or XLSX, all or nothing."""
    from grids import io
    from grids.errors import GridError

    try:
        with _writing() as conn:  # every problem of the file, its rows and the registry's
            summary = io.load_roster(conn, path, sheet=sheet)
    except GridError as exc:
        _fail(exc)
    typer.echo(f"imported {summary}")


@app.command("export")
def export(
    path: Path,
    level: Annotated[str | None, typer.Option(help="city, street, community or grid")] = None,
    region: Annotated[str | None, typer.Option(help="Only this region's subtree")] = None,
    at: Annotated[datetime | None, typer.Option(help="Boundaries in force at this time")] = None,
) -> None:
    """Export regions to GeoJSON (.geojson) or GeoPackage (.gpkg)."""
    from grids import io
    from grids.errors import GridError

    try:
        with _engine().connect() as conn:
            n = io.export_regions(conn, path, level=level, at=at, root_code=region)
    except GridError as exc:
        _fail(exc)
    typer.echo(f"wrote {n} regions to {path}")


@app.command()
def locate(
    lon: Annotated[float, typer.Argument(help="x (longitude, or easting in a projected CRS)")],
    lat: Annotated[float, typer.Argument(help="y (latitude, or northing)")],
    crs: Annotated[str, typer.Option(help="EPSG:4326, EPSG:4490, gcj02, bd09 or an EPSG code")]
    = "EPSG:4326",
    at: Annotated[datetime | None, typer.Option(help="As of this time (from history)")] = None,
) -> None:
    """Who is responsible at a point: grid, chain, responsible worker, backup (JSON)."""
    import orjson

    from gis.errors import GisError
    from grids.access import Principal
    from grids.errors import GridError
    from grids.locate import load_snapshot, locate_at
    from grids.point import checked_point

    settings = get_settings()
    principal = Principal.system(_actor())
    try:
        with _engine().connect() as conn:
            snap = load_snapshot(conn)
            point = checked_point(snap, lon, lat, crs, max_outside_m=settings.city.max_outside_m)
            if at is not None:
                answer = locate_at(conn, point.lon, point.lat, at=at, principal=principal)
            else:
                answer = orjson.loads(snap.locate_json(point.lon, point.lat, principal=principal))
    except (GisError, GridError) as exc:
        _fail(exc)
    typer.echo(orjson.dumps({"point": point.as_dict(), **answer},
                            option=orjson.OPT_INDENT_2).decode())


@app.command("locate-file")
def locate_file(
    src: Annotated[Path, typer.Argument(help="Input CSV with x/y columns")],
    dst: Annotated[Path, typer.Argument(help="Output CSV: the input plus grid and worker")],
    crs: Annotated[str, typer.Option(help="CRS of the input coordinates")] = "EPSG:4326",
    x_field: Annotated[str, typer.Option(help="Column of x")] = "lon",
    y_field: Annotated[str, typer.Option(help="Column of y")] = "lat",
) -> None:
    """Locate every row of a CSV file; bad rows are kept and explained, never dropped."""
    from gis.errors import GisError
    from grids import batch
    from grids.access import Principal
    from grids.errors import GridError
    from grids.locate import load_snapshot

    t0 = time.perf_counter()
    if not src.is_file():
        typer.secho(f"error [file_not_found]: no such file: {src}", fg="red", err=True)
        raise typer.Exit(2)
    try:
        with _engine().connect() as conn:
            snap = load_snapshot(conn)
        snap.build_rasters(1e-4, 4e-4)
        result = batch.locate_csv(snap, src.read_bytes(), crs=crs,
                                  principal=Principal.system(_actor()),
                                  x_field=x_field, y_field=y_field,
                                  max_outside_m=get_settings().city.max_outside_m)
        with dst.open("wb") as out:
            for chunk in result.chunks:
                out.write(chunk)
    except (GisError, GridError) as exc:
        _fail(exc)
    typer.echo(f"{result.rows} rows ({result.bad_rows} bad) in {time.perf_counter() - t0:.1f} s, "
               f"CRS {result.crs} → {dst}")


@app.command()
def report(
    month: Annotated[str, typer.Option(help="The month, YYYY-MM")],
    out: Annotated[Path, typer.Option(help="A directory for pack.html/.xlsx/.pdf, or a file "
                                           "NAME.html (then NAME.xlsx and NAME.pdf beside it)")],
    region: Annotated[str | None, typer.Option(help="A street or community code")] = None,
    lang: Annotated[str, typer.Option(help="zh-CN or en")] = "zh-CN",
    pdf: Annotated[bool, typer.Option(help="Also print a PDF with Chromium")] = True,
    boundaries: Annotated[str, typer.Option(
        help="then: each case for the units given at intake; today: by today's grids "
             "(as /analysis/month?boundaries=)")] = "then",
) -> None:
    """The monthly meeting pack: an offline HTML page, an XLSX and a PDF (as the portal's button)."""
    from gis.errors import GisError
    from grids.access import Principal
    from grids.errors import GridError
    from layers.report import ReportError, build_pack

    if lang not in ("zh-CN", "en"):
        typer.secho("lang is zh-CN or en", fg="red")
        raise typer.Exit(2)
    if boundaries not in ("then", "today"):
        typer.secho("boundaries is then or today", fg="red")
        raise typer.Exit(2)
    out_dir, stem = (out.parent, out.stem) if out.suffix == ".html" else (out, "pack")
    try:
        with _engine().connect() as conn:
            written = build_pack(conn, principal=Principal.system(_actor()), month=month,
                                 region=region, out_dir=out_dir, lang=lang, pdf=pdf, stem=stem,
                                 boundaries="today" if boundaries == "today" else "then")
    except (GisError, GridError) as exc:
        _fail(exc)
    except ReportError as exc:
        typer.secho(str(exc), fg="red")
        raise typer.Exit(1) from None
    typer.echo(f"wrote {written}")


@packs_app.command("prune")
def packs_prune(
    max_age_h: Annotated[float | None, typer.Option(
        help="Remove packs older than this (default: CITYGRID_PACK_MAX_AGE_H)")] = None,
    keep: Annotated[int | None, typer.Option(
        help="Then keep at most this many, the newest (default: CITYGRID_PACK_MAX_COUNT)")] = None,
    pack_dir: Annotated[Path | None, typer.Option(
        "--dir", help="The packs' directory (default: CITYGRID_PACK_DIR)")] = None,
) -> None:
    """Remove old meeting packs (as building a pack does; e.g. from cron where few are built)."""
    from app.settings import PackSettings, _from_env
    from layers.report import PACK_ID, prune_packs

    conf = _from_env(PackSettings)()
    root = pack_dir or Path(conf.pack_dir)
    age_h = conf.pack_max_age_h if max_age_h is None else max_age_h
    count = conf.pack_max_count if keep is None else keep
    if age_h < 0 or count < 0:
        typer.secho("--max-age-h and --keep are not negative", fg="red", err=True)
        raise typer.Exit(2)
    gone = prune_packs(root, age_h * 3600, keep=count)
    left = (sum(1 for d in root.iterdir() if d.is_dir() and PACK_ID.fullmatch(d.name))
            if root.is_dir() else 0)
    typer.echo(f"removed {gone} pack(s) from {root}; {left} kept "
               f"(max age {age_h:g} h, at most {count})")


def _password(prompt: bool, stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=prompt)


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[str, typer.Option(help="admin, planner, supervisor, dispatcher, grid_worker, "
                                           "viewer")],
    region: Annotated[str | None, typer.Option(
        help="Jurisdiction: a region code (default: the whole city of the database)")] = None,
    staff: Annotated[str | None, typer.Option(help="Staff code (required for grid_worker)")] = None,
    name: Annotated[str, typer.Option(help="Display name")] = "",
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin")] = False,
) -> None:
    """Create a user. There is no default password: you type one (twice) or pipe it in."""
    from app import users
    from grids.access import Principal
    from grids.errors import GridError

    password = _password(True, password_stdin)
    try:
        with _writing() as conn:
            if region is None:
                from grids.city import profile

                region = profile(conn).region_prefix
                if not region:
                    typer.secho("no city is loaded yet: give --region", fg="red")
                    raise typer.Exit(2)
            user = users.create_user(conn, username=username, password=password, role=role,
                                     region_code=region, display_name=name, staff_code=staff,
                                     principal=Principal.system(_actor()))
    except GridError as exc:
        _fail(exc)
    typer.echo(f"created {user['username']} ({user['role']}, {user['region_code']})")


@user_app.command("list")
def user_list() -> None:
    """List users with role, jurisdiction and state."""
    from app import users
    from grids.access import Principal

    with _engine().connect() as conn:
        for u in users.list_users(conn, principal=Principal.system(_actor())):
            state = "disabled" if u["disabled"] else "active"
            typer.echo(f"{u['username']:20s} {u['role']:12s} {u['region_code']} {state}")


@user_app.command("disable")
def user_disable(username: str) -> None:
    """Disable a user; their tokens stop working within a second."""
    from app import users
    from grids.access import Principal
    from grids.errors import GridError

    try:
        with _writing() as conn:
            users.update_user(conn, username, disabled=True, principal=Principal.system(_actor()))
    except GridError as exc:
        _fail(exc)
    typer.echo(f"disabled {username}")


@user_app.command("reset-password")
def user_reset_password(
    username: str,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin")] = False,
) -> None:
    """Set a new password; the user's current tokens stop working."""
    from app import users
    from grids.access import Principal
    from grids.errors import GridError

    password = _password(True, password_stdin)
    try:
        with _writing() as conn:
            users.update_user(conn, username, password=password,
                              principal=Principal.system(_actor()))
    except GridError as exc:
        _fail(exc)
    typer.echo(f"password reset for {username}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int, typer.Option(
        min=1, max=64,
        help="Worker processes on the one port. They share nothing in memory: rate limits and "
             "the login throttle are counted in PostgreSQL, locators follow NOTIFY, so any "
             "number of workers and hosts behind any load balancer act as one")] = 1,
) -> None:
    """Serve the API and portal with uvicorn."""
    import uvicorn

    settings = get_settings()
    uvicorn.run("app.main:create_app", factory=True, host=host or settings.api.host,
                port=port or settings.api.port, workers=workers, log_level="info",
                proxy_headers=PROXY_HEADERS)


@calendar_app.command("import")
def calendar_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                         help="CSV date,kind,name (e.g. data/holidays/cn-2026.csv)")],
) -> None:
    """Replace the years a CSV names with its rows (all or nothing: bad rows are listed)."""
    from grids.access import Principal
    from grids.errors import GridError
    from layers.incidents import calendar

    try:
        with _writing() as conn:
            out = calendar.import_csv(conn, file.read_bytes(), principal=Principal.system(_actor()))
    except GridError as exc:
        _fail(exc)
    typer.echo(f"imported {out['rows']} rows for {', '.join(map(str, out['years']))}")


@calendar_app.command("show")
def calendar_show(year: Annotated[int, typer.Argument(help="e.g. 2026")]) -> None:
    """Print a year's holidays and make-up workdays, its workday count and the office hours."""
    from grids.access import Principal
    from grids.errors import GridError
    from layers.incidents import calendar

    try:
        with _writing() as conn:
            out = calendar.read_year(conn, year, principal=Principal.system(_actor()))
    except GridError as exc:
        _fail(exc)
    hours = ", ".join(f"{s}–{e}" for s, e in out["office_hours"])
    typer.echo(f"{year}: {out['workdays']} workdays; office hours {hours}")
    for d in out["days"]:
        typer.echo(f"{d['date'].isoformat()}  {d['kind']:<8} {d['name']}")


@calendar_app.command("hours")
def calendar_hours(
    periods: Annotated[list[str], typer.Argument(help="Office periods, e.g. 08:30-12:00 "
                                                      "13:30-17:30")],
) -> None:
    """Set the city's office hours (every workday)."""
    from grids.access import Principal
    from grids.errors import GridError
    from layers.incidents import calendar

    try:
        with _writing() as conn:
            out = calendar.set_office_hours(conn, [p.split("-", 1) for p in periods],
                                            principal=Principal.system(_actor()))
    except GridError as exc:
        _fail(exc)
    typer.echo("office hours: " + ", ".join(f"{s}–{e}" for s, e in out))


# X-Forwarded-For is read by the app, from CITYGRID_TRUSTED_PROXIES only (app.auth.client_ip):
# uvicorn must not rewrite the client address from it (it trusts 127.0.0.1 by default).
PROXY_HEADERS = False


def main() -> None:
    app(prog_name="citygrid")


if __name__ == "__main__":
    main()


@city_app.command("show")
def city_show() -> None:
    """Print the city profile the database holds."""
    import json

    from grids.city import read_profile

    with _writing() as conn:
        typer.echo(json.dumps(read_profile(conn).as_dict(), ensure_ascii=False, indent=2))


@city_app.command("set")
def city_set(
    tz: Annotated[str | None, typer.Option(help="IANA time zone, e.g. Asia/Urumqi")] = None,
    srid: Annotated[int | None, typer.Option(help="Metric CRS (EPSG code) instead of the "
                                                   "automatic Gauss-Krüger zone")] = None,
    auto_srid: Annotated[bool, typer.Option("--auto-srid",
                                            help="Back to the zone of the city's extent")] = False,
    phone_pattern: Annotated[str | None, typer.Option(help="Regex staff phones must match")] = None,
    plan_approver_role: Annotated[str | None, typer.Option(
        help="Role that approves redraw plans (admin, planner, supervisor, dispatcher)")] = None,
) -> None:
    """Change the city profile: a new CRS re-measures every boundary, a new zone rebuilds the
    incident tallies (both in the same transaction)."""
    import json

    from grids.city import update_profile

    with _writing() as conn:
        prof = update_profile(conn, tz=tz, metric_srid=srid, phone_pattern=phone_pattern,
                              metric_auto=True if auto_srid else None,
                              plan_approver_role=plan_approver_role)
        typer.echo(json.dumps(prof.as_dict(), ensure_ascii=False, indent=2))


@addresses_app.command("import")
def addresses_import(
    path: Path,
    crs: Annotated[str, typer.Option(help="CRS of the coordinates: EPSG:4490, wgs84, gcj02, "
                                          "bd09 or a projected EPSG code")] = "EPSG:4490",
    merge: Annotated[bool, typer.Option(
        "--merge", help="Add and update only (default: also end addresses the file no longer "
                        "holds)")] = False,
) -> None:
    """Import a CSV/XLSX address book (columns address, lon, lat, optional code), all or nothing."""
    from gis.errors import GisError
    from grids.access import Principal
    from grids.addresses import import_file
    from grids.errors import GridError

    try:
        with _writing() as conn:
            summary = import_file(conn, path.read_bytes(), path.name,
                                  principal=Principal.system(_actor()), crs=crs,
                                  mode="merge" if merge else "replace",
                                  limits=get_settings().upload.limits())
    except (GridError, GisError) as exc:
        _fail(exc)
    typer.echo(f"imported {summary}")


@addresses_app.command("search")
def addresses_search(query: str, limit: int = 5) -> None:
    """Search the address book as the desk does (city-wide)."""
    import json

    from grids.access import Principal
    from grids.addresses import search

    with _engine().connect() as conn:
        typer.echo(json.dumps(search(conn, query, principal=Principal.system(_actor()),
                                     limit=limit), ensure_ascii=False, indent=2))
