"""Month partitions of the history logs: create ahead, list, detach, archive to GeoParquet, attach.

Migration 0027 made ``patrol_fix`` and ``incident_event`` partitioned by UTC month on ``at``
(``<table>_pYYYY_MM``, plus ``<table>_default`` for rows outside every created month); 0029 did
the same for ``incident`` on ``received_at`` (:data:`KEY_COLUMN`). This is the
maintenance behind ``citygrid partitions ensure|list|detach|archive|attach``; it runs as the
schema owner (``CITYGRID_MIGRATION_URL``), never as the app role.

* ``ensure``: the months from ``back`` months ago to ``ahead`` months ahead exist (the SQL function
  ``citygrid_month_partition`` of 0027: idempotent, moves a month's rows out of the default
  partition first). Run it monthly (cron, a systemd timer): with ``ahead=3`` a missed run or two
  still finds the month in place; rows of a missing month land in the default partition and the
  next ``ensure`` moves them into their month.
* ``detach``: the month leaves the parent and stays as a plain table of the same name.
* ``archive``: the month is written to ``<dir>/<table>/<YYYY-MM>/data.parquet`` (GeoParquet 1.1,
  WKB geometry with its CRS, for tables with a geometry column; plain Parquet otherwise) with a
  ``manifest.json`` (rows, a checksum of the rows' text, the file's SHA-256), the file read back and
  checked, then detached and dropped in the same transaction. The partition is locked ``SHARE``
  (no writes to that month) while it is written. Any failure rolls back (the month stays attached)
  and removes the files. The directory is written under a temporary name and renamed when whole.
  A month whose events are still referenced (photos, evidence checks: the composite foreign keys
  of 0027) cannot be detached, so its archive fails and nothing changes. A month of incidents
  whose incidents are still referenced by live rows (events, merges, photos, ...: they point at
  the registry ``incident_key`` of 0029) is refused the same way (``partition_referenced``);
  archive their events' months first. The keys stay in the registry (replays get a 409, an
  attached archive finds its references whole); the tallies keep counting archived months.
* ``attach``: the files are checked against their manifest (SHA-256), loaded into a new table,
  checked again (row count and checksum computed by PostgreSQL, as at archive time), and attached
  as the month's partition, in one transaction. An empty partition of that month (``ensure`` may
  have created one) is replaced; a month that holds rows is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from gis.errors import DomainError

TABLES = ("patrol_fix", "incident_event", "incident")
# The partition key column of each table (UTC month ranges on it).
KEY_COLUMN = {"patrol_fix": "at", "incident_event": "at", "incident": "received_at"}
ROW_GROUP = 100_000
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class PartitionError(DomainError):
    code = "partition_error"


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    month: str | None  # "YYYY-MM"; None for the default partition
    attached: bool
    rows: int  # the planner's estimate (pg_class.reltuples), -1 if never analysed
    bytes: int


def parse_month(value: str | date) -> date:
    """``"2026-12"`` (or a date) → the first day of that month."""
    if isinstance(value, date):
        return value.replace(day=1)
    m = _MONTH.match(value.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise PartitionError(f"A month is written YYYY-MM, not {value[:20]!r}.",
                             detail={"field": "month", "value": value[:20]})
    return date(int(m.group(1)), int(m.group(2)), 1)


def _check_table(table: str) -> str:
    if table not in TABLES:
        raise PartitionError(f"{table[:40]!r} is not a month-partitioned table.",
                             detail={"field": "table", "value": table[:40],
                                     "allowed": list(TABLES)})
    return table


def key_column(table: str) -> str:
    """The column a table is partitioned on (``at``; ``received_at`` for ``incident``)."""
    return KEY_COLUMN[_check_table(table)]


def _add_months(d: date, n: int) -> date:
    k = d.year * 12 + d.month - 1 + n
    return date(k // 12, k % 12 + 1, 1)


def part_name(table: str, month: date) -> str:
    return f"{table}_p{month.year:04d}_{month.month:02d}"


def month_bounds(month: date) -> tuple[datetime, datetime]:
    lo = datetime(month.year, month.month, 1, tzinfo=UTC)
    nxt = _add_months(month, 1)
    return lo, datetime(nxt.year, nxt.month, 1, tzinfo=UTC)


def ensure(conn: Connection, *, back: int = 0, ahead: int = 3,
           today: date | None = None) -> list[str]:
    """Create the months ``back`` before .. ``ahead`` after this one (UTC) for every partitioned
    log, and its default partition; return the partitions in that range (new or not)."""
    if back < 0 or ahead < 0 or back + ahead > 240:
        raise PartitionError("back and ahead are 0 or more, together at most 240 months.",
                             detail={"back": back, "ahead": ahead})
    now_m = (today or datetime.now(UTC).date()).replace(day=1)
    names: list[str] = []
    for table in TABLES:
        conn.execute(text("SELECT citygrid_default_partition(CAST(:t AS regclass))"), {"t": table})
        for k in range(-back, ahead + 1):
            names.append(conn.execute(
                text("SELECT citygrid_month_partition(CAST(:t AS regclass), :m)"),
                {"t": table, "m": _add_months(now_m, k)}).scalar_one())
    return names


def list_partitions(conn: Connection, table: str | None = None) -> list[Partition]:
    """Every partition of the logs, attached or detached (a plain table named like a month)."""
    out: list[Partition] = []
    for t in ([_check_table(table)] if table else list(TABLES)):
        rows = conn.execute(text(
            "SELECT c.relname, i.inhrelid IS NOT NULL AS attached, c.reltuples::bigint, "
            "pg_total_relation_size(c.oid) FROM pg_class c "
            "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = CAST(:t AS regclass) "
            "WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace "
            "AND (c.relname = :t || '_default' OR c.relname ~ ('^' || :t || '_p[0-9]{4}_[0-9]{2}$')) "
            "ORDER BY c.relname"), {"t": t}).all()
        for name, attached, tuples, size in rows:
            suffix = name[len(t) + 2:]
            month = None if name.endswith("_default") else f"{suffix[:4]}-{suffix[5:7]}"
            out.append(Partition(t, name, month, bool(attached), int(tuples), int(size)))
    return out


def _attached(conn: Connection, table: str, name: str) -> bool:
    return bool(conn.execute(text(
        "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = CAST(:t AS regclass) "
        "AND inhrelid = to_regclass(:n))"), {"t": table, "n": name}).scalar())


def detach(conn: Connection, table: str, month: str | date) -> str:
    """Detach the month's partition; it stays as a plain table of the same name."""
    m = parse_month(month)
    name = part_name(_check_table(table), m)
    if not _attached(conn, table, name):
        raise PartitionError(f"{name} is not an attached partition of {table}.",
                             code="partition_not_found", detail={"partition": name})
    conn.execute(text("SET LOCAL lock_timeout = '10s'"))
    _refuse_referenced(conn, table, name)
    conn.execute(text(f'ALTER TABLE {table} DETACH PARTITION "{name}"'))
    return name


def _refuse_referenced(conn: Connection, table: str, name: str) -> None:
    """A month of incidents leaves only when nothing live refers to its incidents.

    The references (events, merges, photos, receipts, evidence checks, reveals, call-ups,
    ``merged_into``) point at the registry ``incident_key`` (migration 0029), which keeps every
    id, archived or not, so PostgreSQL itself would let the month go; this check refuses it
    instead, naming the referring tables. Archive the events' months first: an incident's
    events are in its month or later ones. (patrol_fix and incident_event rely on their own
    foreign keys: a referenced event month fails to detach.)"""
    if table != "incident":
        return
    conn.execute(text(f'LOCK TABLE "{name}" IN SHARE MODE'))
    refs = conn.execute(text(
        "SELECT conrelid::regclass::text, a.attname FROM pg_constraint k "
        "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1] "
        "WHERE k.confrelid = 'incident_key'::regclass AND k.contype = 'f' "
        "AND k.conparentid = 0 ORDER BY 1, 2")).all()
    found: list[str] = []
    for ref_table, column in refs:
        outside = (f' AND d.tableoid <> \'"{name}"\'::regclass'
                   if ref_table == "incident" else "")
        if conn.execute(text(
                f'SELECT EXISTS (SELECT 1 FROM {ref_table} d WHERE d."{column}" IN '
                f'(SELECT id FROM "{name}"){outside})')).scalar():
            found.append(f"{ref_table}.{column}")
    if found:
        raise PartitionError(
            f"{name}: its incidents are still referenced by {', '.join(found)}; archive or "
            "detach those months first (an incident's events lie in its month or later).",
            code="partition_referenced", detail={"partition": name, "referenced_by": found})


def reattach(conn: Connection, table: str, month: str | date) -> str:
    """Attach again a month that ``detach`` left as a plain table (its rows are checked against
    the month's bounds by PostgreSQL)."""
    m = parse_month(month)
    name = part_name(_check_table(table), m)
    if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is None \
            or _attached(conn, table, name):
        raise PartitionError(f"{name} is not a detached partition of {table}.",
                             code="partition_not_found", detail={"partition": name})
    lo, hi = month_bounds(m)
    conn.execute(text("SET LOCAL lock_timeout = '10s'"))
    conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION \"{name}\" "
                      f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"))
    conn.execute(text("SELECT citygrid_partition_privileges(:n)"), {"n": name})
    return name


# --- archive / attach --------------------------------------------------------------------------

def _columns(conn: Connection, table: str) -> list[tuple[str, str]]:
    """(column, udt name) in table order."""
    return [(r[0], r[1]) for r in conn.execute(text(
        "SELECT column_name, udt_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = :t ORDER BY ordinal_position"),
        {"t": table}).all()]


def _geometry(conn: Connection, table: str) -> dict[str, tuple[int, str]]:
    return {r[0]: (int(r[1]), str(r[2])) for r in conn.execute(text(
        "SELECT f_geometry_column, srid, type FROM geometry_columns "
        "WHERE f_table_schema = 'public' AND f_table_name = :t"), {"t": table}).all()}


def _arrow_type(udt: str):
    import pyarrow as pa

    return {"int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(),
            "float4": pa.float32(), "float8": pa.float64(), "bool": pa.bool_(),
            "timestamptz": pa.timestamp("us", tz="UTC"), "date": pa.date32(),
            "geometry": pa.binary()}.get(udt, pa.string())


def _select_list(cols: list[tuple[str, str]]) -> str:
    exprs = []
    for name, udt in cols:
        if udt == "geometry":
            exprs.append(f'ST_AsBinary("{name}")')
        elif udt in ("int2", "int4", "int8", "float4", "float8", "bool", "timestamptz", "date"):
            exprs.append(f'"{name}"')
        else:
            exprs.append(f'"{name}"::text')
    return ", ".join(exprs)


def row_checksum(conn: Connection, relation: str) -> tuple[int, str]:
    """(rows, order-free checksum of every row's text) of a table, in UTC."""
    conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
    n, s = conn.execute(text(
        f'SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text '
        f'FROM "{relation}" t')).one()
    return int(n), str(s)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _geo_metadata(geoms: dict[str, tuple[int, str]]) -> dict[str, Any]:
    from pyproj import CRS

    primary = "geom" if "geom" in geoms else sorted(geoms)[0]
    return {"version": "1.1.0", "primary_column": primary, "columns": {
        col: {"encoding": "WKB",
              "geometry_types": [] if kind.upper() == "GEOMETRY" else [_geo_type(kind)],
              "crs": CRS.from_epsg(srid).to_json_dict()}
        for col, (srid, kind) in geoms.items()}}


def _geo_type(kind: str) -> str:
    names = {"POINT": "Point", "LINESTRING": "LineString", "POLYGON": "Polygon",
             "MULTIPOINT": "MultiPoint", "MULTILINESTRING": "MultiLineString",
             "MULTIPOLYGON": "MultiPolygon", "GEOMETRYCOLLECTION": "GeometryCollection"}
    return names.get(kind.upper(), kind.title())


def _write_parquet(conn: Connection, relation: str, cols: list[tuple[str, str]],
                   geoms: dict[str, tuple[int, str]], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [pa.field(name, _arrow_type(udt)) for name, udt in cols]
    meta = {b"geo": json.dumps(_geo_metadata(geoms)).encode()} if geoms else None
    schema = pa.schema(fields, metadata=meta)
    raw = conn.connection.driver_connection
    assert raw is not None
    written = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer, \
            raw.cursor(name="citygrid_archive") as cur:
        cur.itersize = ROW_GROUP
        cur.execute(f'SELECT {_select_list(cols)} FROM "{relation}"')
        while batch := cur.fetchmany(ROW_GROUP):
            columns = list(zip(*batch, strict=True))
            writer.write_table(pa.Table.from_arrays(
                [pa.array(list(c), type=f.type) for c, f in zip(columns, fields, strict=True)],
                schema=schema))
            written += len(batch)
    return written


def archive(engine: Engine, table: str, month: str | date, directory: Path) -> dict[str, Any]:
    """Write the month to GeoParquet with a manifest, then detach and drop it (one transaction);
    on any failure the month stays attached and no archive is left. Returns the manifest."""
    m = parse_month(month)
    name = part_name(_check_table(table), m)
    final = Path(directory) / table / f"{m:%Y-%m}"
    if final.exists():
        raise PartitionError(f"{final} already exists: move it away to archive {name} again.",
                             code="archive_exists", detail={"path": str(final)})
    partial = final.parent / f".{m:%Y-%m}.partial-{os.getpid()}"
    try:
        with engine.connect() as conn, conn.begin():
            if not _attached(conn, table, name):
                raise PartitionError(f"{name} is not an attached partition of {table}.",
                                     code="partition_not_found", detail={"partition": name})
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            conn.execute(text(f'LOCK TABLE "{name}" IN SHARE MODE'))
            _refuse_referenced(conn, table, name)
            rows, checksum = row_checksum(conn, name)
            cols = _columns(conn, table)
            geoms = _geometry(conn, table)
            partial.mkdir(parents=True, exist_ok=False)
            data = partial / "data.parquet"
            written = _write_parquet(conn, name, cols, geoms, data)
            import pyarrow.parquet as pq

            if written != rows or pq.read_metadata(data).num_rows != rows:
                raise PartitionError(f"{name}: {rows} rows, {written} written.",
                                     code="archive_failed", detail={"rows": rows})
            lo, hi = month_bounds(m)
            manifest = {
                "table": table, "partition": name, "month": f"{m:%Y-%m}",
                "from": lo.isoformat(), "to": hi.isoformat(), "rows": rows,
                "checksum": checksum,
                "checksum_method": "sum(hashtextextended(row::text, 0)), TimeZone UTC",
                "file": "data.parquet", "sha256": _sha256(data), "bytes": data.stat().st_size,
                "columns": [{"name": c, "type": u} for c, u in cols],
                "geometry": {c: {"srid": s, "type": k} for c, (s, k) in geoms.items()},
                "format": "GeoParquet 1.1 (WKB)" if geoms else "Parquet",
                "archived_at": datetime.now(UTC).isoformat(),
            }
            (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            for f in (data, partial / "manifest.json"):
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            os.replace(partial, final)
            conn.execute(text(f'ALTER TABLE {table} DETACH PARTITION "{name}"'))
            conn.execute(text(f'DROP TABLE "{name}"'))
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        if isinstance(exc, DBAPIError):
            raise PartitionError(f"{name} was not archived; it stays attached: "
                                 f"{str(exc.orig).splitlines()[0][:300]}",
                                 code="archive_failed", detail={"partition": name}) from exc
        raise
    return manifest


def _copy_rows(conn: Connection, relation: str, path: Path, cols: list[tuple[str, str]],
               geoms: dict[str, tuple[int, str]]) -> int:
    import pyarrow.parquet as pq
    import shapely

    raw = conn.connection.driver_connection
    assert raw is not None
    names = [c for c, _ in cols]
    quoted = ", ".join(f'"{c}"' for c in names)
    n = 0
    with raw.cursor() as cur, cur.copy(f'COPY "{relation}" ({quoted}) FROM STDIN') as copy:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP, columns=names):
            columns: list[list[Any]] = []
            for c in names:
                values = batch.column(c).to_pylist()
                if c in geoms:
                    g = shapely.set_srid(shapely.from_wkb(values), geoms[c][0])
                    values = list(shapely.to_wkb(g, hex=True, include_srid=True))
                columns.append(values)
            for row in zip(*columns, strict=True):
                copy.write_row(row)
            n += batch.num_rows
    return n


def attach(engine: Engine, table: str, month: str | date, directory: Path) -> int:
    """Load an archived month from its files and attach it again (one transaction); return rows."""
    m = parse_month(month)
    name = part_name(_check_table(table), m)
    folder = Path(directory) / table / f"{m:%Y-%m}"
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise PartitionError(f"No readable archive of {name} in {folder}.",
                             code="archive_not_found", detail={"path": str(folder)}) from exc
    data = folder / str(manifest.get("file", "data.parquet"))
    if manifest.get("table") != table or manifest.get("month") != f"{m:%Y-%m}":
        raise PartitionError(f"{folder} holds the archive of another month or table.",
                             code="archive_invalid", detail={"path": str(folder)})
    if not data.exists() or _sha256(data) != manifest.get("sha256"):
        raise PartitionError(f"{data} does not match its manifest (SHA-256).",
                             code="archive_invalid", detail={"path": str(data)})
    try:
        return _attach(engine, table, name, m, data, manifest)
    except DBAPIError as exc:
        raise PartitionError(f"{name} was not attached: "
                             f"{str(exc.orig).splitlines()[0][:300]}",
                             code="attach_failed", detail={"partition": name}) from exc


def _attach(engine: Engine, table: str, name: str, m: date, data: Path,
            manifest: dict[str, Any]) -> int:
    lo, hi = month_bounds(m)
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None:
            if not _attached(conn, table, name):
                raise PartitionError(f"{name} exists as a detached table: attach or drop it.",
                                     code="partition_conflict", detail={"partition": name})
            if conn.execute(text(f'SELECT EXISTS (SELECT 1 FROM "{name}")')).scalar():
                raise PartitionError(f"{name} holds rows; an archive attaches to an empty month.",
                                     code="partition_conflict", detail={"partition": name})
            conn.execute(text(f'ALTER TABLE {table} DETACH PARTITION "{name}"'))
            conn.execute(text(f'DROP TABLE "{name}"'))
        default = f"{table}_default"
        col = KEY_COLUMN[table]
        if conn.execute(text(f'SELECT EXISTS (SELECT 1 FROM "{default}" '
                             f'WHERE "{col}" >= :lo AND "{col}" < :hi)'),
                        {"lo": lo, "hi": hi}).scalar():
            raise PartitionError(f"{default} holds rows of {m:%Y-%m}: run ensure for that month "
                                 "first, then archive or clear them.",
                                 code="partition_conflict", detail={"partition": default})
        cols = _columns(conn, table)
        geoms = _geometry(conn, table)
        conn.execute(text(f'CREATE TABLE "{name}" (LIKE {table} INCLUDING DEFAULTS '
                          f'INCLUDING CONSTRAINTS)'))
        _copy_rows(conn, name, data, cols, geoms)
        rows, checksum = row_checksum(conn, name)
        if rows != manifest["rows"] or checksum != manifest["checksum"]:
            raise PartitionError(f"{name} read back differs from its manifest.",
                                 code="archive_invalid",
                                 detail={"rows": rows, "manifest_rows": manifest["rows"]})
        conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION \"{name}\" "
                          f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"))
        conn.execute(text("SELECT citygrid_partition_privileges(:n)"), {"n": name})
        conn.execute(text(f'ANALYZE "{name}"'))
    return rows
