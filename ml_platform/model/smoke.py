"""The smoke test of a staged model version, run in a fresh process (no Dagster import).

The staged artifact is loaded the way serving loads it, `ModelRegistry(root).load(version)`
(sha256-verified), in a process that never saw the trained model, and it predicts on a sample of
the holdout. Checks: one prediction per row and one predict_proba column per class of the model,
predicted labels within the model's classes (and within the declared ones), probabilities in
[0, 1] summing to 1 (tolerance 1e-6) with no NaN, more than one predicted class when the sample's
labels have two or more (the label column is the version's recorded `target`), and the per-row
latency under the policy's bound. Every failure is one line naming the version and the figure; a
broken artifact, a crash or a timeout is a failed result, never an exception.

Per-row latency: the median of up to 20 single-row predict_proba calls (one row each from the
start of the sample, as a one-row DataFrame: what an online caller pays), after one unmeasured
warm-up call.

The fresh process: a small fork server, forked from the calling process once (on first use, or
early by `prestart()`: a Dagster run calls it as the run's first step starts, before anything is
trained), which then forks one child per smoke test. The child loads the artifact from disk and
checks it, so every test runs in a copy of a process that never held the model under test: not
the one that trained it, and with nothing of the training in memory. It has the caller's imports
already (scikit-learn, pandas: ~1.5 s a fresh interpreter would spend first), and imports
SERVER_PRELOAD if the caller had not. It exits when the caller's end of its stdin closes; a dead
server is restarted; a child that outlives the timeout is killed.

What a fresh interpreter would catch and this does not: an artifact that needs a module only the
caller had imported. The platform's artifacts refer to scikit-learn and ml_platform.model.training
only (its estimators are scikit-learn's), which every process that loads them imports anyway.

Why this (benchmarks/smoke_benchmark.py, one smoke test of the default estimator on 200 rows,
medians of 5, AMD EPYC, 2 cores, 2026-12-01):

  way                                           first test     each later test
  `python -m ml_platform.model.smoke` per test  2.62 s         2.62 s (every test imports
                                                               pandas and scikit-learn again)
  this fork server                              0.14 s         0.11 s
  multiprocessing forkserver + preload          2.61 s         0.19 s

Until 2026-12-01 the server was a fresh interpreter (`python -P -c serve()`), started early so that
its imports overlapped training; on small data a run still waited 1.3-2.2 s for it (of a 7.7 s
run at 10,000 rows). multiprocessing's forkserver is not used: each of its children re-imports
the caller's __main__ module before running, and its server is a process-wide singleton whose
preload list other code may set.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import numpy as np
import pandas as pd

from ml_platform.model.registry import ModelRegistry, RegistryError

# Imported by the fork server before it forks: what the pickled Pipelines of the default estimator
# refer to. sklearn.ensemble is left out (+0.7 s on every server start); an ensemble's child imports it.
SERVER_PRELOAD = ("numpy", "pandas", "pyarrow.parquet", "sklearn.pipeline", "ml_platform.model.training",
                  "ml_platform.model.registry")
LATENCY_CALLS = 20
PROBA_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SmokePolicy:
    sample_rows: int = 200
    max_row_latency_ms: float = 200.0


@dataclass(frozen=True)
class SmokeResult:
    version: str
    passed: bool
    failures: list[str]
    # rows, row_latency_ms, class_counts, pid (of the process that ran the checks), seconds (the
    # whole call, process included), check_seconds (inside the child)
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SmokeResult:
        return cls(version=str(data["version"]), passed=bool(data["passed"]), failures=list(data["failures"]),
                   figures=dict(data.get("figures", {})))


# -- the checks, in the fresh process -----------------------------------------------------------
def _row_latency_ms(model: Any, x: pd.DataFrame) -> float:
    model.predict_proba(x.iloc[:1])  # warm-up: first-call costs are not the model's latency
    timings = []
    for i in range(min(LATENCY_CALLS, len(x))):
        row = x.iloc[i:i + 1]
        start = time.perf_counter()
        model.predict_proba(row)
        timings.append((time.perf_counter() - start) * 1000.0)
    return round(statistics.median(timings), 3)


def _class_key(label: Any) -> Any:
    return float(label) if isinstance(label, (int, float, np.number)) and not isinstance(label, bool) else str(label)


def check_version(registry_root: str, version: str, sample: pd.DataFrame, features: list[str],
                  classes: list[Any] | None, policy: SmokePolicy) -> tuple[list[str], dict[str, Any]]:
    """The checks themselves: (failures, figures). Meant for the fresh process; run_smoke_test calls it there."""
    figures: dict[str, Any] = {"rows": len(sample), "pid": os.getpid()}
    registry = ModelRegistry(registry_root)
    try:
        model = registry.load(version)
        target = registry.get(version).metadata.get("target")
    except RegistryError as exc:
        return [f"{version} artifact refused: {exc}"], figures
    except Exception as exc:  # noqa: BLE001 - an unpicklable artifact can raise anything
        return [f"{version} artifact could not be unpickled: {type(exc).__name__}: {exc}"], figures
    missing = [name for name in ("predict_proba", "classes_") if not hasattr(model, name)]
    if missing:
        return [f"{version} artifact ({type(model).__name__}) has no {' or '.join(missing)}"], figures
    absent = [f for f in features if f not in sample.columns]
    if absent:
        return [f"{version} smoke sample lacks feature column(s) {absent}"], figures
    if sample.empty:
        return [f"{version} smoke sample has no rows"], figures
    x = sample[features]
    try:
        proba = np.asarray(model.predict_proba(x), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - whatever the model raises is the finding
        return [f"{version} predict_proba failed on {len(x)} rows: {type(exc).__name__}: {exc}"], figures
    model_classes = np.asarray(model.classes_)
    failures: list[str] = []
    expected_shape = (len(x), len(model_classes))
    if proba.shape != expected_shape:
        return [f"{version} predict_proba returned shape {proba.shape} on {len(x)} rows, expected {expected_shape}"
                f" (one row per input row, one column per class of {model_classes.tolist()})"], figures
    has_nan = np.isnan(proba).any(axis=1)
    nan_rows = int(has_nan.sum())
    if nan_rows:
        failures.append(f"{version} gives NaN probabilities on {nan_rows} of {len(x)} rows")
    outside = int(((proba < 0.0) | (proba > 1.0)).any(axis=1).sum())
    if outside:
        failures.append(f"{version} gives probabilities outside [0, 1] on {outside} of {len(x)} rows")
    off_sum = int((~has_nan & (np.abs(proba.sum(axis=1) - 1.0) > PROBA_TOLERANCE)).sum())
    if off_sum:
        failures.append(f"{version} gives probabilities not summing to 1 (tolerance {PROBA_TOLERANCE:g})"
                        f" on {off_sum} of {len(x)} rows")
    predicted = model_classes[np.nan_to_num(proba, nan=-1.0).argmax(axis=1)]
    labels, counts = np.unique(predicted, return_counts=True)
    figures["class_counts"] = {str(label): int(count) for label, count in zip(labels.tolist(), counts)}
    if classes is not None:
        # By value: a label read as 1 in one place and 1.0 in another is one class.
        declared = {_class_key(c) for c in classes}
        unknown = sorted(str(label) for label in labels.tolist() if _class_key(label) not in declared)
        if unknown:
            failures.append(f"{version} predicts class(es) {unknown} outside the declared classes {list(classes)}")
    if target is not None and target in sample.columns:
        label_classes = sample[target].dropna().nunique()
        figures["label_classes"] = int(label_classes)
        if label_classes >= 2 and len(labels) == 1:
            failures.append(f"{version} predicts only class {labels[0]} on {len(x)} holdout rows whose labels"
                            f" have {label_classes} classes")
    try:
        latency = _row_latency_ms(model, x)
    except Exception as exc:  # noqa: BLE001
        return [*failures, f"{version} single-row predict_proba failed: {type(exc).__name__}: {exc}"], figures
    figures["row_latency_ms"] = latency
    if latency > policy.max_row_latency_ms:
        failures.append(f"{version} per-row latency {latency} ms (median of {min(LATENCY_CALLS, len(x))} single-row"
                        f" calls) exceeds the bound of {policy.max_row_latency_ms} ms")
    return failures, figures


def _run_request(request: dict[str, Any]) -> None:
    """In the forked child: the checks of one request, their outcome written to request["result"]."""
    start = time.perf_counter()
    sample = pd.read_parquet(request["sample"])
    failures, figures = check_version(request["registry_root"], request["version"], sample, request["features"],
                                      request["classes"], SmokePolicy(**request["policy"]))
    figures["check_seconds"] = round(time.perf_counter() - start, 4)
    result = SmokeResult(request["version"], not failures, failures, figures)
    partial = request["result"] + ".partial"
    with open(partial, "w") as out:
        json.dump(result.to_dict(), out, default=str)
    os.replace(partial, request["result"])  # the caller sees a whole result or none


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """The fork server's loop: one JSON request per line; per request a child is forked, and two
    lines answer: {"pid": child} once it runs, {"pid": child, "exit": code} once it ended."""
    import importlib

    for module in SERVER_PRELOAD:
        importlib.import_module(module)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides; stdin's end is the stop signal
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: output to its log, never into the reply pipe
            code = 1
            try:
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(log, 1)
                os.dup2(log, 2)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                # Ends the child by itself even if its caller vanished before killing it at the timeout.
                signal.alarm(math.ceil(request["timeout_s"]) + 5)
                _run_request(request)
                code = 0
            except BaseException:  # noqa: BLE001 - reported through the log and the exit code
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        replies.write(json.dumps({"pid": pid}).encode() + b"\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
        replies.flush()


# -- the caller's side ------------------------------------------------------------------------
class _ServerGone(Exception):
    pass


class _ServerProcess:
    """The fork server: a child forked from the caller, its requests and replies on two pipes."""

    def __init__(self, pid: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.pid, self.stdin, self.stdout = pid, stdin, stdout
        self.returncode: int | None = None

    @classmethod
    def fork(cls, stderr_fd: int) -> _ServerProcess:
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        stderr_fd = os.dup(stderr_fd)  # the child's at-fork handler drops (and so closes) the caller's file object
        pid = os.fork()
        if pid == 0:  # the server: never returns into the caller's code
            code = 1
            try:
                os.setsid()  # the caller's terminal signals are not its own
                os.dup2(stderr_fd, 2)
                os.close(requests_w)
                os.close(replies_r)
                with os.fdopen(requests_r, "rb") as requests, os.fdopen(replies_w, "wb") as replies:
                    serve(requests, replies)
                code = 0
            except BaseException:  # noqa: BLE001 - why it died goes to its stderr, which the caller reads
                traceback.print_exc()
            finally:
                os._exit(code)
        for fd in (requests_r, replies_w, stderr_fd):
            os.close(fd)
        return cls(pid, os.fdopen(requests_w, "wb"), os.fdopen(replies_r, "rb"))

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode

    def stop(self) -> None:
        self.kill()
        self.wait()
        for pipe in (self.stdin, self.stdout):
            pipe.close()


class _ForkServer:
    """The calling process's fork server: started on first use, restarted when found dead."""

    def __init__(self) -> None:
        self._forget()
        # A process forked from the caller (e.g. an executor's step worker) must not share its
        # parent's server pipes, nor inherit a lock some other thread held at the fork.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._process: _ServerProcess | None = None
        self._errors: IO[bytes] | None = None
        self._buffer = b""

    def _start(self) -> _ServerProcess:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        self._errors = tempfile.TemporaryFile(prefix="ml-platform-smoke-server-")
        self._process = _ServerProcess.fork(self._errors.fileno())
        self._buffer = b""
        return self._process

    def _stop(self) -> None:
        if self._process is not None:
            self._process.stop()
        if self._errors is not None:
            self._errors.close()
        self._process, self._errors = None, None

    def server_error(self) -> str:
        """The last line the server wrote to stderr (why it died), if any."""
        if self._errors is None:
            return ""
        self._errors.seek(0)
        lines = self._errors.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def _reply(self, process: _ServerProcess, deadline: float) -> dict[str, Any] | None:
        """The next reply line, or None at the deadline; _ServerGone when the server's end closed."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise _ServerGone
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def prestart(self) -> None:
        with self._lock:
            self._start()

    def run(self, request: dict[str, Any], timeout_s: float) -> tuple[int | None, str]:
        """Run one request in a forked child: (its exit code or None, why not when there is no
        exit code). A child outliving timeout_s is killed (exit -9)."""
        with self._lock:
            deadline = time.monotonic() + timeout_s
            for attempt in (1, 2):  # a server found dead on writing is restarted once
                process = self._start()
                assert process.stdin is not None
                try:
                    process.stdin.write(json.dumps(request).encode() + b"\n")
                    process.stdin.flush()
                    break
                except OSError:  # BrokenPipeError: it died since the last call
                    why = self.server_error()
                    self._stop()
                    if attempt == 2:
                        return None, f"the smoke server could not be started ({why or 'no message'})"
            try:
                started = self._reply(process, deadline)
                if started is None:
                    self._stop()  # the server itself hangs (e.g. still importing): start afresh next time
                    return None, f"the smoke server did not start a process within {timeout_s:g} s"
                ended = self._reply(process, deadline)
                if ended is None:
                    os.kill(started["pid"], signal.SIGKILL)
                    ended = self._reply(process, time.monotonic() + 10.0)
                    if ended is None:
                        self._stop()
                        return None, f"the smoke process did not end within {timeout_s:g} s and could not be reaped"
                    return -signal.SIGKILL, f"the smoke process was killed after {timeout_s:g} s"
                return int(ended["exit"]), ""
            except _ServerGone:
                why = self.server_error()
                self._stop()
                return None, f"the smoke server died{f' ({why})' if why else ''}"


_SERVER = _ForkServer()


def prestart() -> None:
    """Start this process's fork server now, before what it will test is trained."""
    _SERVER.prestart()


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as log:
            lines = [line.strip() for line in log if line.strip()]
    except FileNotFoundError:
        return ""
    return lines[-1] if lines else ""


def run_smoke_test(registry_root: str, version: str, sample: pd.DataFrame, features: list[str],
                   classes: list[Any] | None, policy: SmokePolicy, timeout_s: float = 120) -> SmokeResult:
    """Smoke-test `version` of the registry at `registry_root` on the first policy.sample_rows rows
    of `sample` (with the label column if present), in a fresh process; see the module docstring."""
    if policy.sample_rows < 1 or not policy.max_row_latency_ms > 0 or not timeout_s > 0:
        raise ValueError(f"smoke policy needs sample_rows >= 1, max_row_latency_ms > 0 and timeout_s > 0: "
                         f"{policy}, timeout_s={timeout_s}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ml-platform-smoke-") as workdir:
        paths = {name: os.path.join(workdir, name) for name in ("sample.parquet", "result.json", "child.log")}
        sample.head(policy.sample_rows).to_parquet(paths["sample.parquet"])
        request = {"registry_root": os.fspath(registry_root), "version": version, "features": list(features),
                   "classes": None if classes is None else [_jsonable(c) for c in classes], "policy": asdict(policy),
                   "sample": paths["sample.parquet"], "result": paths["result.json"], "log": paths["child.log"],
                   "timeout_s": timeout_s}
        exit_code, why = _SERVER.run(request, timeout_s)
        seconds = round(time.perf_counter() - start, 4)
        if exit_code == 0 and os.path.exists(paths["result.json"]):
            with open(paths["result.json"]) as result_file:
                result = SmokeResult.from_dict(json.load(result_file))
            return SmokeResult(result.version, result.passed, result.failures, {**result.figures, "seconds": seconds})
        if not why:
            last = _last_line(paths["child.log"])
            how = f"was killed by signal {-exit_code}" if exit_code is not None and exit_code < 0 else f"exited with code {exit_code}"
            why = f"the smoke process {how}{f': {last}' if last else ''}"
    return SmokeResult(version, False, [f"{version} smoke test did not complete: {why}"], {"seconds": seconds})


def _jsonable(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def main(argv: list[str] | None = None) -> int:
    """`python -m ml_platform.model.smoke REQUEST.json`: one request in this process (the plain-subprocess
    way, kept for benchmarks/smoke_benchmark.py and for debugging a smoke test by hand)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ml_platform.model.smoke REQUEST.json", file=sys.stderr)
        return 2
    with open(args[0]) as request_file:
        _run_request(json.load(request_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
