"""A real, throw-away PostgreSQL server for tests: `initdb` into a temp dir, `pg_ctl start` on
127.0.0.1 (a free port, its socket in the temp dir), password authentication (scram-sha-256)
for TCP and the socket, stopped and deleted at the end, also when the tests fail.

Use the session fixture `postgres_server` (exported by conftest.py), or `running_postgres()`
directly for another scope:

    def test_something(postgres_server: PostgresServer) -> None:
        postgres_server.create_database("churn")
        url = postgres_server.url("churn")  # postgresql+psycopg://ml_platform@127.0.0.1:<port>/churn
        # the password: postgres_server.password

PostgreSQL refuses to run as root: when the tests run as root, initdb and pg_ctl run as the
unprivileged `postgres` system user (runuser), which owns the temp dir. When the server
binaries (/usr/lib/postgresql/<version>/bin or PATH) or such a user are missing, the fixture
skips the test with that reason; a server that does not start fails it with its log's tail.
Client work (createdb, psql) goes over TCP with the password, as any client would.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "ml_platform"
_SERVER_TOOLS = ("initdb", "pg_ctl", "postgres", "createdb", "psql")


@dataclass(frozen=True)
class PostgresServer:
    """A running server: connect to `host`:`port` as `user` with `password`."""

    bin_dir: Path
    data_dir: Path
    host: str
    port: int
    user: str
    password: str

    def url(self, database: str = "postgres", driver: str = "psycopg", with_password: bool = False) -> str:
        """A SQLAlchemy URL, without the password unless asked (as declarations carry it)."""
        secret = f":{self.password}" if with_password else ""
        return f"postgresql+{driver}://{self.user}{secret}@{self.host}:{self.port}/{database}"

    def _client(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PGPASSWORD": self.password, "PGHOST": self.host, "PGPORT": str(self.port),
               "PGUSER": self.user, "PGCONNECT_TIMEOUT": "10"}
        return subprocess.run([str(self.bin_dir / tool), *args], env=env, capture_output=True, text=True, check=True)

    def create_database(self, name: str) -> None:
        self._client("createdb", name)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run SQL through psql (stops at the first error); its output, unaligned."""
        return self._client("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", statement).stdout


def find_server_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding the server tools, else the one on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    on_path = shutil.which("initdb")
    for directory in [*reversed(candidates), *([str(Path(on_path).parent)] if on_path else [])]:
        if all((Path(directory) / tool).is_file() for tool in _SERVER_TOOLS):
            return Path(directory)
    return None


def _as_server_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs the server unprivileged (empty unless we are root), and that user."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root, and there is no unprivileged 'postgres' user to run PostgreSQL as")
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root, and runuser is missing to run PostgreSQL as the 'postgres' user")
    return [runuser, "-u", "postgres", "--"], user


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def _start(bin_dir: Path, root: Path, prefix: list[str], owner: pwd.struct_passwd | None, user: str) -> PostgresServer:
    data_dir, log, pwfile = root / "data", root / "server.log", root / "pwfile"
    password = "pw-" + secrets.token_hex(12)
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if owner is not None:
        for path in (root, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def server_tool(tool: str, *args: str) -> None:
        try:
            subprocess.run([*prefix, str(bin_dir / tool), *args], capture_output=True, text=True, check=True, cwd=root)
        except subprocess.CalledProcessError as exc:
            pytest.fail(f"PostgreSQL did not start: {tool} exited {exc.returncode}: {(exc.stderr or exc.stdout).strip()}\n"
                        f"{_tail(log)}")

    server_tool("initdb", "-D", str(data_dir), "-U", user, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                "-E", "UTF8", "--locale=C", "--no-sync")
    pwfile.unlink()
    port = _free_port()  # a race with another process binding it is possible, and unlikely
    options = f"-k {root} -h 127.0.0.1 -p {port} -c fsync=off -c full_page_writes=off"
    server_tool("pg_ctl", "-D", str(data_dir), "-l", str(log), "-w", "-t", "30", "-o", options, "start")
    return PostgresServer(bin_dir, data_dir, "127.0.0.1", port, user, password)


@contextlib.contextmanager
def running_postgres(user: str = SUPERUSER) -> Iterator[PostgresServer]:
    """Start a fresh server (skipping the caller's test when it cannot be run here) and stop it after."""
    bin_dir = find_server_binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in /usr/lib/postgresql/*/bin or on PATH "
                    "(install the postgresql package)")
    prefix, owner = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="ml_platform_pg_"))
    try:
        yield _start(bin_dir, root, prefix, owner, user)
    finally:
        if (root / "data" / "postmaster.pid").exists():
            subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"],
                           capture_output=True, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session (each test creates its own database)."""
    with running_postgres() as server:
        yield server
