"""A real PostgreSQL of the test's own: `initdb` and `pg_ctl` on a free port in a
temporary directory, never the machine's own server on 5432.

Debian keeps the server binaries off PATH (/usr/lib/postgresql/<version>/bin);
`./scripts/test` installs the server package where it is missing.
"""

from __future__ import annotations

import getpass
import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mqtt import free_port


def server_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, newest version first."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
        reverse=True,
    )
    return Path(candidates[0]).parent if candidates else None


class Postgres:
    """One cluster, stoppable and restartable on the same port and data."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        bindir = server_bin()
        if bindir is None:
            pytest.fail("PostgreSQL's server is not installed (./scripts/test installs it)")
        self.bin = bindir
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.data = workdir / "pgdata"
        self.socket_dir = workdir / "pgsock"
        self.log = workdir / "postgres.log"
        self.user = "fleet"
        self.database = "fleet"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        command = list(args)
        if os.geteuid() == 0:
            # The server refuses to run as root: run it as the data's owner.
            command = ["runuser", "-u", _service_user(), "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False, env=env)

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = _service_user()
            for path in (self.data, self.socket_dir, self.data.parent):
                shutil.chown(path, owner)
        result = self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses={self.host} "
            f"-c unix_socket_directories={self.socket_dir} -c fsync=off "
            "-c max_connections=100"
        )
        result = self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"postgres did not start:\n{result.stdout}{result.stderr}{log}")

    def create_database(self) -> None:
        psql = shutil.which("psql") or str(self.bin / "psql")
        result = self._run(
            psql,
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            "postgres",
            "-c",
            f"CREATE DATABASE {self.database}",
        )
        if result.returncode != 0:
            raise RuntimeError(f"createdb failed:\n{result.stderr}")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


def _service_user() -> str:
    """Who runs the server when the tests run as root."""
    for name in ("postgres", "nobody"):
        try:
            subprocess.run(["id", name], capture_output=True, check=True)
            return name
        except (subprocess.CalledProcessError, FileNotFoundError):
            continue
    return getpass.getuser()


@pytest.fixture
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A server of the test's own (to stop and start)."""
    yield from _serve(tmp_path_factory)


@pytest.fixture(scope="module")
def postgres_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """One server for a whole test module (never stopped by a test): each test
    makes a database of its own on it with `fresh_database`."""
    yield from _serve(tmp_path_factory)


def fresh_database(server: Postgres, name: str) -> str:
    """A new, empty database on `server`; its URL."""
    import psycopg

    with psycopg.connect(
        f"postgresql://{server.user}@{server.host}:{server.port}/postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://{server.user}@{server.host}:{server.port}/{name}"


def _serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    workdir = tmp_path_factory.mktemp("postgres")
    if os.geteuid() == 0:
        # The service user must reach its data through the temporary directories.
        for parent in [workdir, *workdir.parents]:
            if str(parent) in ("/", "/tmp"):
                break
            parent.chmod(parent.stat().st_mode | 0o111)
    server = Postgres(workdir)
    server.init()
    server.start()
    try:
        server.create_database()
        yield server
    finally:
        server.stop("immediate")
