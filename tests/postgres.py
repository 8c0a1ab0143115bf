"""A real PostgreSQL server for tests and benchmarks: initdb + pg_ctl in a temporary directory (Debian's
packages, installed by .ci/run). As root, the server runs as the `postgres` user (initdb refuses root)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port


def pg_bin(name: str) -> str | None:
    """A PostgreSQL program: on PATH, or in Debian's versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class PostgresServer:
    """start() → a superuser DSN; create_database(name) → that database's DSN; stop() removes everything."""

    def __init__(self, fsync: bool = False) -> None:
        self.fsync = fsync  # off in tests (a killed replica, not a killed database, is what they test)
        self.dir = Path(tempfile.mkdtemp(prefix="ddx-pg-"))
        self.port = free_port()
        self.user = "ddx"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._run(initdb, "-D", str(data), "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-sync")
        options = (f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c max_connections=300"
                   f" -c fsync={'on' if self.fsync else 'off'}")
        self._run(pg_ctl, "-D", str(data), "-o", options, "-l", str(self.dir / "log"), "-w", "-t", "60", "start")
        return self.dsn("postgres")

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        createdb = pg_bin("createdb")
        assert createdb is not None
        subprocess.run([createdb, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name], check=True,
                       capture_output=True, timeout=60)
        return self.dsn(name)

    def stop(self) -> None:
        pg_ctl = pg_bin("pg_ctl")
        if pg_ctl is not None and (self.dir / "data" / "postmaster.pid").exists():
            self._run(pg_ctl, "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
