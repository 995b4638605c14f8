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
    python -m app.devdb down
    python -m app.devdb status
    python -m app.devdb url [DBNAME]
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


def url(dbname: str = "citygrid") -> str:
    """The SQLAlchemy URL of a database in the private cluster."""
    return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{_port()}/{dbname}"


def _psql(sql: str, dbname: str = "postgres") -> str:
    out = subprocess.run(
        [str(_bindir() / "psql"), "-h", "127.0.0.1", "-p", str(_port()), "-U", SUPERUSER,
         "-d", dbname, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        sys.exit(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def _running() -> bool:
    pgdata = _pgdata()
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


def _wait_ready(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = subprocess.run([str(_bindir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(_port())],
                             capture_output=True)
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


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"up", "down", "status", "url"}:
        sys.exit(__doc__)
    if os.environ.get("CITYGRID_DATABASE_URL") and argv[0] == "up":
        print("CITYGRID_DATABASE_URL is set: using that server, not starting a private cluster.")
        return
    if argv[0] == "up":
        up(argv[1:] or ["citygrid"])
    elif argv[0] == "down":
        down()
    elif argv[0] == "status":
        print("running" if _running() else "stopped")
    else:
        print(url(argv[1] if len(argv) > 1 else "citygrid"))


if __name__ == "__main__":
    main(sys.argv[1:])
