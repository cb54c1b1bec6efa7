"""`dagster dev` (webserver + daemon) on a temporary DAGSTER_HOME, for end-to-end tests and
benchmarks. Everything started is stopped by its process group id."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_dagster_home(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", path / "dagster.yaml")
    return path


def interruptible() -> None:
    """preexec_fn for a Dagster process: SIGINT back to its default. A shell's background job (the
    test run started with `&` or nohup) ignores SIGINT, children inherit that, and Dagster maps
    SIGTERM onto its SIGINT handler: such a `dagster dev` ignored SIGTERM, and every stop waited 30 s."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _signal_group(group: int, sig: signal.Signals) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


class DagsterDev:
    """Starts `dagster dev` and waits until the webserver answers; stops the whole process group."""

    def __init__(
        self, dagster_home: Path, env: dict[str, str], log_path: Path, module: str = "ml_platform", cwd: Path = REPO_ROOT,
        tool: str = "dagster",
    ) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "DAGSTER_HOME": str(dagster_home)}
        self.log_path = log_path
        self.module = module
        self.cwd = cwd
        # `dagster dev -m <module>`, or `dg dev`, which finds the project from its pyproject.toml.
        self.command = [str(BIN / "dagster"), "dev", "-m", module] if tool == "dagster" else [str(BIN / "dg"), "dev"]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> DagsterDev:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*self.command, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=interruptible,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited early; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"dagster dev did not answer within {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        group = self.process.pid  # start_new_session: the group id is dagster dev's pid
        _signal_group(group, signal.SIGTERM)  # webserver, daemon and code servers with it
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        # Code servers may outlive their parent's graceful shutdown: give them a moment, then kill.
        deadline = time.monotonic() + 10
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.2)
        _signal_group(group, signal.SIGKILL)
        self.process.wait(timeout=10)

    def materialize(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """The CLI, against the same instance, as a user would run it beside `dagster dev`."""
        return subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", self.module, *args],
            cwd=self.cwd, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout,
        )

    def graphql(self, query: str) -> dict:
        import json

        request = urllib.request.Request(
            f"{self.url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["data"]

    def launch(self, job_name: str, run_config: dict | None = None) -> str:
        """Submit a run as the UI's Launchpad does (GraphQL), to the instance's run queue."""
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port).submit_job_execution(job_name, run_config=run_config)

    def __enter__(self) -> DagsterDev:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
