"""Real servers on 127.0.0.1 for alert channel tests: a recording HTTP server and an SMTP server.

    with RecordingHTTPServer() as http:
        http.fail(2, status=503)                  # the next 2 requests get 503
        http.respond(429, headers={"Retry-After": "120"})
        http.hang(5.0)                            # the next request waits 5 s before answering
        channel = JsonWebhookChannel(http.url("/hooks/secret"))
        ...
        http.delivered                            # requests answered 2xx (not hung)

    with RecordingSMTPServer(tls=make_self_signed_cert(tmp_path)) as smtp:
        ... smtp.messages[0].message["Subject"]

Both are plain context managers (also `start()` / `stop()`), usable by any test, including
an end-to-end test against `dagster dev`.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the server answered
    hung: bool = False  # the server held the request past `hang` seconds before answering
    received_at: float = 0.0  # time.time() when the body was read: for latency figures

    @property
    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and not self.hung


@dataclass
class _Response:
    status: int = 200
    body: str = "ok"  # may contain {path}: echoed back (to test that errors do not leak it)
    headers: dict[str, str] = field(default_factory=dict)
    hang_seconds: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        received_at = time.time()
        owner = self.server.owner
        response = owner._next_response()
        hung = response.hang_seconds > 0
        if hung:
            owner._release.wait(response.hang_seconds)
        owner._record(
            RecordedRequest(self.command, self.path, dict(self.headers.items()), body, response.status, hung, received_at)
        )
        payload = response.body.replace("{path}", self.path).encode("utf-8")
        try:
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout)
            pass
        self.close_connection = True

    do_POST = do_PUT = do_GET = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: "RecordingHTTPServer"


class RecordingHTTPServer:
    """An HTTP server on 127.0.0.1 (a free port) that records every request and answers as scripted.

    Unscripted requests get `default_status` with body "ok". Scripted answers are used once
    each, in order.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, default_status: int = 200) -> None:
        self.host = host
        self._port = port
        self.default_status = default_status
        self._lock = threading.Lock()
        self._script: deque[_Response] = deque()
        self._requests: list[RecordedRequest] = []
        self._arrived = threading.Condition(self._lock)
        self._release = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> "RecordingHTTPServer":
        self._release.clear()
        self._server = _Server((self.host, self._port), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # let hung handlers finish
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "RecordingHTTPServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # -- scripting
    def respond(self, status: int, body: str = "", headers: dict[str, str] | None = None, times: int = 1) -> None:
        with self._lock:
            self._script.extend(_Response(status, body, dict(headers or {})) for _ in range(times))

    def fail(self, times: int = 1, status: int = 500, body: str = "server error") -> None:
        self.respond(status, body, times=times)

    def rate_limit(self, retry_after: str | float, times: int = 1) -> None:
        self.respond(429, "slow down", {"Retry-After": str(retry_after)}, times=times)

    def hang(self, seconds: float, times: int = 1) -> None:
        """The next `times` requests wait `seconds` (or until stop()) before answering 200."""
        with self._lock:
            self._script.extend(_Response(200, "late", {}, seconds) for _ in range(times))

    def _next_response(self) -> _Response:
        with self._lock:
            return self._script.popleft() if self._script else _Response(self.default_status, "ok")

    def _record(self, request: RecordedRequest) -> None:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()

    # -- inspection
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def delivered(self) -> list[RecordedRequest]:
        """Requests answered 2xx in time: what the client saw succeed."""
        return [r for r in self.requests if r.ok]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least `count` requests were recorded (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._requests)} of {count} requests arrived within {timeout}s")
                self._arrived.wait(left)
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._script.clear()


# ---------------------------------------------------------------------------------- SMTP


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_self_signed_cert(directory: str | Path, host: str = "127.0.0.1") -> tuple[str, str] | None:
    """(certfile, keyfile) for `host` made with the openssl CLI, or None if it is unavailable."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    san = f"IP:{host}" if host.replace(".", "").isdigit() else f"DNS:{host}"
    try:
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={host}", "-addext",
             f"subjectAltName={san}"],
            check=True, capture_output=True, timeout=30,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return str(cert), str(key)


@dataclass(frozen=True)
class RecordedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool  # the session had switched to TLS
    login: str | None  # the AUTH login, if any

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


class _SMTPHandler:
    def __init__(self, owner: "RecordingSMTPServer") -> None:
        self.owner = owner

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.owner._lock:
            if self.owner._script:
                return self.owner._script.popleft()
        login = session.auth_data.login.decode() if getattr(session, "auth_data", None) is not None else None
        mail = RecordedMail(
            envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content),
            bool(session.ssl), login,
        )
        with self.owner._lock:
            self.owner._messages.append(mail)
        return "250 Message accepted for delivery"


class RecordingSMTPServer:
    """aiosmtpd on 127.0.0.1 recording every message.

    `tls=(certfile, keyfile)` offers STARTTLS (`require_starttls` makes it mandatory);
    `users={"login": "password"}` enables AUTH (aiosmtpd only allows it over TLS).
    `fail(n, "451 ...")` answers the next n DATA commands with that reply.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        tls: tuple[str, str] | None = None,
        require_starttls: bool = False,
        users: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = 0
        self.tls = tls
        self.require_starttls = require_starttls
        self.users = dict(users or {})
        self._lock = threading.Lock()
        self._messages: list[RecordedMail] = []
        self._script: deque[str] = deque()
        self._controller: Any = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(login) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def start(self) -> "RecordingSMTPServer":
        from aiosmtpd.controller import Controller

        kwargs: dict[str, Any] = {"server_hostname": "localhost", "ready_timeout": 5.0}
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            kwargs.update(tls_context=context, require_starttls=self.require_starttls)
        if self.users:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=bool(self.tls))
        self.port = free_port(self.host)
        self._controller = Controller(_SMTPHandler(self), hostname=self.host, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> "RecordingSMTPServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def fail(self, times: int = 1, reply: str = "451 4.3.0 Try again later") -> None:
        with self._lock:
            self._script.extend([reply] * times)

    @property
    def messages(self) -> list[RecordedMail]:
        with self._lock:
            return list(self._messages)
