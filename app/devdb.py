"""A private PostgreSQL + PostGIS cluster for development, tests and the demo.

Standard library only: the Makefile runs it before the virtualenv exists.

- Data lives in a git-ignored folder (``.pgdata/`` by default, ``CITYGRID_PGDATA`` to move it).
- It listens on 127.0.0.1 only, on its own port (``CITYGRID_PGPORT``, default 54329).
- PostgreSQL refuses to run as root, so when invoked as root the server runs as the unprivileged
  ``postgres`` OS user (``CITYGRID_PGUSER_OS`` to change it).
- Authentication is ``trust`` for 127.0.0.1 only: this is a developer's cluster. Production points
  ``CITYGRID_DATABASE_URL`` at a managed server and never starts this one.

Usage::

    python -m app.devdb up [DBNAME ...]   # init if needed, start if stopped, create databases
    python -m app.devdb down              # (and its standby, if one runs)
    python -m app.devdb status
    python -m app.devdb url [DBNAME]
    python -m app.devdb replica up|down|status|drop   # a streaming hot standby of the cluster
    python -m app.devdb replica url [DBNAME]

The standby (``replica up``) is a ``pg_basebackup -R`` copy of the running primary with the same
binaries, in its own data folder (``CITYGRID_REPLICA_PGDATA``, default ``.pgdata-replica`` beside
the primary's) on its own port (``CITYGRID_REPLICA_PGPORT``, default the primary's + 1000). It
streams from the primary as the ``citygrid_replicator`` role (created, with its ``pg_hba.conf``
line, by ``replica up``) and answers read-only queries (hot standby). ``replica drop`` stops it and
removes its folder. Point ``CITYGRID_REPLICA_URLS`` at ``replica url`` (as the application role)
to send the API's heavy reads there (app/replicas.py).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPERUSER = "citygrid"
DEFAULT_PORT = 54329
EXTENSIONS = ("postgis", "btree_gist", "pg_trgm")


def _pgdata() -> Path:
    return Path(os.environ.get("CITYGRID_PGDATA", ROOT / ".pgdata")).resolve()


def _port() -> int:
    return int(os.environ.get("CITYGRID_PGPORT", DEFAULT_PORT))


def _bindir() -> Path:
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    for version in ("17", "16", "15"):
        candidate = Path(f"/usr/lib/postgresql/{version}/bin")
        if (candidate / "initdb").exists():
            return candidate
    sys.exit("PostgreSQL server binaries not found: run `make sysdeps` (apt-get install postgresql).")


def _as_server_user(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a server-side command, dropping root to the unprivileged OS user."""
    if os.geteuid() == 0:
        user = os.environ.get("CITYGRID_PGUSER_OS", "postgres")
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, **kw)


def url(dbname: str = "citygrid", *, port: int | None = None, user: str = SUPERUSER) -> str:
    """The SQLAlchemy URL of a database in the private cluster (or its standby's ``port``)."""
    return f"postgresql+psycopg://{user}@127.0.0.1:{port or _port()}/{dbname}"


def _psql(sql: str, dbname: str = "postgres", port: int | None = None) -> str:
    out = subprocess.run(
        [str(_bindir() / "psql"), "-h", "127.0.0.1", "-p", str(port or _port()), "-U", SUPERUSER,
         "-d", dbname, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        sys.exit(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def _running(pgdata: Path | None = None) -> bool:
    pgdata = pgdata or _pgdata()
    if not (pgdata / "PG_VERSION").exists():
        return False
    res = _as_server_user([str(_bindir() / "pg_ctl"), "-D", str(pgdata), "status"],
                          capture_output=True, text=True)
    return res.returncode == 0


def _prepare_dir(pgdata: Path) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = os.environ.get("CITYGRID_PGUSER_OS", "postgres")
        pw = pwd.getpwnam(user)
        os.chown(pgdata, pw.pw_uid, pw.pw_gid)
        pgdata.chmod(0o700)
        # The server user must be able to traverse every parent folder.
        check = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(pgdata)])
        if check.returncode != 0:
            sys.exit(
                f"{pgdata} is not reachable by OS user {user!r} (a parent folder is not "
                "traversable). Set CITYGRID_PGDATA to a folder it can reach."
            )


def _wait_ready(timeout: float = 30.0, port: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = subprocess.run([str(_bindir() / "pg_isready"), "-h", "127.0.0.1",
                              "-p", str(port or _port())], capture_output=True)
        if res.returncode == 0:
            return
        time.sleep(0.2)
    sys.exit("PostgreSQL did not become ready; see the log in the data folder.")


def up(dbnames: list[str]) -> None:
    pgdata = _pgdata()
    bindir = _bindir()
    if not (pgdata / "PG_VERSION").exists():
        _prepare_dir(pgdata)
        print(f"initdb: {pgdata}", flush=True)
        res = _as_server_user(
            [str(bindir / "initdb"), "-D", str(pgdata), "-U", SUPERUSER, "--auth=trust",
             "-E", "UTF8", "--locale=C.UTF-8"],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            sys.exit(f"initdb failed: {res.stderr}")
        conf = pgdata / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(
                "\n# CityGrid private cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {_port()}\n"
                "unix_socket_directories = ''\n"
                "shared_buffers = 512MB\n"
                "work_mem = 32MB\n"
                "maintenance_work_mem = 256MB\n"
                "max_connections = 200\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
                "log_min_messages = warning\n"
            )
    if not _running():
        print(f"starting PostgreSQL on 127.0.0.1:{_port()}", flush=True)
        res = _as_server_user(
            [str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(pgdata / "server.log"),
             "-w", "-t", "60", "start"],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            log = (pgdata / "server.log").read_text()[-2000:] if (pgdata / "server.log").exists() else ""
            sys.exit(f"pg_ctl start failed: {res.stderr}\n{log}")
    _wait_ready()
    for name in dbnames:
        exists = _psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists:
            _psql(f'CREATE DATABASE "{name}"')
        for ext in EXTENSIONS:
            _psql(f"CREATE EXTENSION IF NOT EXISTS {ext}", dbname=name)


def down() -> None:
    if _running():
        _as_server_user([str(_bindir() / "pg_ctl"), "-D", str(_pgdata()), "-m", "fast", "stop"])


# -- the streaming hot standby ------------------------------------------------------------------
REPLICATOR = "citygrid_replicator"
HBA_LINE = f"host replication {REPLICATOR} 127.0.0.1/32 trust"


def replica_pgdata() -> Path:
    default = _pgdata().with_name(_pgdata().name + "-replica")
    return Path(os.environ.get("CITYGRID_REPLICA_PGDATA", default)).resolve()


def replica_port() -> int:
    return int(os.environ.get("CITYGRID_REPLICA_PGPORT", _port() + 1000))


def replica_url(dbname: str = "citygrid", *, user: str = SUPERUSER) -> str:
    """The SQLAlchemy URL of a database on the standby (the app's: ``user="citygrid_app"``)."""
    return url(dbname, port=replica_port(), user=user)


def _allow_replication() -> None:
    """The replication role and its pg_hba.conf line on the primary (idempotent)."""
    _psql(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{REPLICATOR}') "
          f"THEN CREATE ROLE {REPLICATOR} WITH LOGIN REPLICATION; END IF; END $$")
    hba = _pgdata() / "pg_hba.conf"
    lines = hba.read_text().splitlines()
    if HBA_LINE not in lines:
        # First: pg_hba.conf is read top down and the first matching line decides.
        hba.write_text("\n".join(["# CityGrid standby (app.devdb replica)", HBA_LINE, *lines])
                       + "\n")
        _psql("SELECT pg_reload_conf()")


def replica_up() -> None:
    """Copy the running primary into the standby's folder (once) and start it streaming."""
    if not _running():
        sys.exit("the primary is not running: `python -m app.devdb up` first")
    data, port, bindir = replica_pgdata(), replica_port(), _bindir()
    if not (data / "PG_VERSION").exists():
        _allow_replication()
        if data.exists():
            shutil.rmtree(data)  # a half-made copy from an interrupted run
        _prepare_dir(data)
        print(f"pg_basebackup: {_pgdata()} -> {data}", flush=True)
        res = _as_server_user(
            [str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(_port()),
             "-U", REPLICATOR, "-D", str(data), "-R", "-X", "stream", "-c", "fast",
             "--no-password"], capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"pg_basebackup failed: {res.stderr}")
        log = data / "server.log"
        if log.exists():
            log.write_text("")  # the primary's log, copied with the folder
        with (data / "postgresql.conf").open("a") as fh:
            fh.write(
                "\n# CityGrid standby (app.devdb replica): streams from the primary\n"
                f"port = {port}\n"
                "hot_standby = on\n"
                # fewer queries cancelled by replay conflicts, at the price of some bloat kept on
                # the primary while a long read runs here
                "hot_standby_feedback = on\n"
                "shared_buffers = 256MB\n"
            )
    if not _running(data):
        print(f"starting the standby on 127.0.0.1:{port}", flush=True)
        res = _as_server_user(
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"),
             "-w", "-t", "60", "start"], capture_output=True, text=True)
        if res.returncode != 0:
            log_text = (data / "server.log").read_text()[-2000:]
            sys.exit(f"pg_ctl start (standby) failed: {res.stderr}\n{log_text}")
    _wait_ready(port=port)


def replica_down(mode: str = "fast") -> None:
    data = replica_pgdata()
    if _running(data):
        _as_server_user([str(_bindir() / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"],
                        capture_output=True)


def replica_drop() -> None:
    replica_down()
    data = replica_pgdata()
    if data.exists():
        shutil.rmtree(data)


def replica_status() -> str:
    """``stopped``, or ``streaming`` with how far the standby's replay is behind the primary."""
    if not _running(replica_pgdata()):
        return "stopped"
    row = _psql("SELECT pg_is_in_recovery(), coalesce(status, 'not connected'), "
                "pg_last_wal_replay_lsn() FROM (SELECT 1) one "
                "LEFT JOIN pg_stat_wal_receiver ON true", port=replica_port())
    recovery, receiver, replayed = row.split("|")
    if recovery != "t":
        return f"running on {replica_port()}, but promoted (not a standby any more)"
    behind = ""
    if _running():
        lsn = _psql("SELECT pg_current_wal_lsn()")
        diff = _psql(f"SELECT pg_wal_lsn_diff('{lsn}', '{replayed}')")
        behind = f"; {diff} bytes of WAL behind the primary"
    return f"running on {replica_port()}: {receiver}, replayed to {replayed}{behind}"


def _replica(argv: list[str]) -> None:
    if os.environ.get("CITYGRID_DATABASE_URL"):
        sys.exit("CITYGRID_DATABASE_URL is set: standbys of a managed server are made there.")
    cmd = argv[0] if argv else ""
    if cmd == "up":
        replica_up()
    elif cmd == "down":
        replica_down()
    elif cmd == "drop":
        replica_drop()
    elif cmd == "status":
        print(replica_status())
    elif cmd == "url":
        print(replica_url(argv[1] if len(argv) > 1 else "citygrid"))
    else:
        sys.exit(__doc__)


def main(argv: list[str]) -> None:
    if argv and argv[0] == "replica":
        _replica(argv[1:])
        return
    if not argv or argv[0] not in {"up", "down", "status", "url"}:
        sys.exit(__doc__)
    if os.environ.get("CITYGRID_DATABASE_URL") and argv[0] == "up":
        print("CITYGRID_DATABASE_URL is set: using that server, not starting a private cluster.")
        return
    if argv[0] == "up":
        up(argv[1:] or ["citygrid"])
    elif argv[0] == "down":
        replica_down()  # a standby of this cluster, if one runs, would retry it forever
        down()
    elif argv[0] == "status":
        print("running" if _running() else "stopped")
    else:
        print(url(argv[1] if len(argv) > 1 else "citygrid"))


if __name__ == "__main__":
    main(sys.argv[1:])
