"""Alert channels: where a batch of alerts goes (log, JSONL file, Slack, webhook, PagerDuty, email).

A channel has a `name` and `send(alerts)`: the alerts of one group, rendered as ONE message
(PagerDuty, which has no batching, gets one event per alert). `send` returns on success and
otherwise raises RetryableDeliveryError (timeout, connection error, HTTP 5xx/408/429, SMTP
4xx) or PermanentDeliveryError (any other HTTP 4xx, SMTP 5xx, bad configuration).

Secrets (webhook URLs, routing keys, bearer tokens, SMTP passwords) are held in `Secret`
wrappers and never appear in a channel's repr/str, in log records or in exception messages:
errors name the endpoint by scheme://host:port only and response excerpts are redacted.

Stdlib only: urllib.request for HTTP, smtplib for email. No Dagster import.
"""

from __future__ import annotations

import json
import logging
import re
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parsedate_to_datetime
from http.client import HTTPException
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, urlsplit

from ml_platform.alerting.alert import DEFAULT_ENVIRONMENT, Alert, JsonlAlertFile, Severity

DEFAULT_TIMEOUT_SECONDS = 10.0
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
USER_AGENT = "ml_platform-alerts/1"
EXCERPT_CHARS = 200
REDACTED = "***"

logger = logging.getLogger("ml_platform.alerts")


# ---------------------------------------------------------------------------- errors


class DeliveryError(Exception):
    """A channel could not deliver; `reason` is short and secret-free."""

    retryable = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryableDeliveryError(DeliveryError):
    """Try again later; `retry_after` (seconds) is the server's wish when it stated one."""

    retryable = True

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Retrying the same message will not help (rejected payload, bad credentials, gone endpoint)."""


# ---------------------------------------------------------------------------- secrets


class Secret:
    """A string that does not print itself. `reveal()` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickle the value by accident
        raise TypeError("Secret values cannot be pickled")


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and its URL-quoted form) replaced by ***."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret, safe="/")}:
            text = text.replace(form, REDACTED)
    return text


def _url_secret_parts(url: str) -> list[str]:
    """The parts of a webhook URL that act as its credential: the whole URL, its path and
    query, and each path segment long enough to be a token."""
    parts = urlsplit(url)
    pieces = [url, parts.path, parts.query, parts.netloc.split("@")[0] if "@" in parts.netloc else ""]
    pieces += [seg for seg in parts.path.split("/") if len(seg) >= 6]
    pieces += [v for kv in parts.query.split("&") for v in kv.split("=")[1:] if len(v) >= 6]
    return [p for p in pieces if p and p != "/"]


def endpoint_label(url: str) -> str:
    """scheme://host[:port] of a URL: safe to show, unlike its path."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _excerpt(raw: bytes | str, secrets: Iterable[str]) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = redact(text, secrets)
    text = re.sub(r"\s+", " ", "".join(c if c.isprintable() or c.isspace() else "?" for c in text)).strip()
    return text[:EXCERPT_CHARS] + ("..." if len(text) > EXCERPT_CHARS else "")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 7231 dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# ---------------------------------------------------------------------------- HTTP


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects a POST is misconfigured; urllib would turn it into a body-less GET."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())
IDEMPOTENCY_HEADER = "Idempotency-Key"


def _idempotency_header(delivery_key: str | None) -> dict[str, str]:
    return {IDEMPOTENCY_HEADER: delivery_key} if delivery_key else {}

RETRYABLE_HTTP_STATUSES = frozenset({408, 425, 429})


def post_json(
    url: str,
    payload: Any,
    *,
    timeout: float,
    secrets: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> int:
    """POST `payload` as JSON; return the 2xx status, else raise a classified DeliveryError.

    Messages name the endpoint as scheme://host:port and carry a redacted response excerpt.
    """
    where = endpoint_label(url)
    body = json.dumps(payload, default=str).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", USER_AGENT)
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = response.status
            response.read(64 * 1024)  # drain so the connection closes cleanly
    except urllib.error.HTTPError as err:
        status = err.code
        try:
            raw = err.read(4096) or b""
        except Exception:  # noqa: BLE001 - the excerpt is best effort
            raw = b""
        detail = _excerpt(raw, secrets)
        reason = f"HTTP {status} from {where}" + (f": {detail}" if detail else "")
        if status >= 500 or status in RETRYABLE_HTTP_STATUSES:
            retry_after = parse_retry_after(err.headers.get("Retry-After") if err.headers else None)
            raise RetryableDeliveryError(reason, retry_after) from None
        raise PermanentDeliveryError(reason) from None
    except urllib.error.URLError as err:
        inner = err.reason
        if isinstance(inner, (socket.timeout, TimeoutError)):
            raise RetryableDeliveryError(f"timeout after {timeout:g}s connecting to {where}") from None
        if isinstance(inner, ssl.SSLCertVerificationError):
            raise PermanentDeliveryError(f"TLS certificate of {where} rejected: {inner.verify_message}") from None
        kind = type(inner).__name__ if isinstance(inner, BaseException) else "error"
        raise RetryableDeliveryError(f"cannot connect to {where}: {kind}: {_excerpt(str(inner), secrets)}") from None
    except (socket.timeout, TimeoutError):
        raise RetryableDeliveryError(f"timeout after {timeout:g}s waiting for {where}") from None
    except (HTTPException, OSError) as err:
        raise RetryableDeliveryError(f"connection to {where} failed: {type(err).__name__}") from None
    except ValueError as err:  # malformed URL
        raise PermanentDeliveryError(f"invalid URL for {where}: {type(err).__name__}") from None
    if not 200 <= status < 300:
        raise PermanentDeliveryError(f"unexpected HTTP {status} from {where}")
    return status


# ---------------------------------------------------------------------------- channels


@runtime_checkable
class AlertChannel(Protocol):
    name: str

    def send(self, alerts: list[Alert], delivery_key: str | None = None) -> None:
        """Deliver one message; `delivery_key` is the same on every resend of it (idempotency)."""


def _summary(alerts: Sequence[Alert], source: str) -> str:
    """'[HIGH] 2 alerts from ml_platform' / '[RESOLVED] 1 alert from ml_platform' (+ env if not production)."""
    n = len(alerts)
    noun = "alert" if n == 1 else "alerts"
    firing = [a for a in alerts if a.firing]
    if firing:
        tag = max((a.severity for a in firing), key=lambda s: s.rank).value
        text = f"[{tag}] {len(firing)} {'alert' if len(firing) == 1 else 'alerts'} from {source}"
        if len(firing) < n:
            text += f", {n - len(firing)} resolved"
    else:
        text = f"[RESOLVED] {n} {noun} from {source}"
    environments = sorted({a.environment for a in alerts})
    if environments != [DEFAULT_ENVIRONMENT]:
        text += f" ({', '.join(environments)})"
    return text


def _plain_text(alerts: Sequence[Alert], source: str) -> str:
    lines = [_summary(alerts, source), ""]
    for alert in alerts:
        lines.append(("RESOLVED " if not alert.firing else "") + f"[{alert.severity.value}] {alert.asset} / {alert.check}")
        lines.append(f"  {alert.message}")
        if alert.firing:
            lines.append(f"  Recommended action: {alert.recommended_action}")
        if alert.model_version:
            lines.append(f"  Model version: {alert.model_version}")
        lines.append(f"  Environment: {alert.environment}   Run: {alert.run_id or '-'}   At: {alert.timestamp}")
        if alert.run_url:
            lines.append(f"  Run in Dagster: {alert.run_url}")
        lines.append(f"  Fingerprint: {alert.fingerprint}")
        lines.append("")
    return "\n".join(lines)


class LogChannel:
    """Python logging: one record per batch, at ERROR for HIGH, WARNING for MEDIUM, INFO otherwise."""

    def __init__(self, name: str = "log", logger_name: str = "ml_platform.alerts") -> None:
        self.name = name
        self.logger_name = logger_name

    def send(self, alerts: list[Alert], delivery_key: str | None = None) -> None:
        if not alerts:
            return
        # Suppressed repeats are recorded, not raised again: they log at INFO.
        firing = [a for a in alerts if a.firing and a.outcome != "suppressed"]
        top = max((a.severity for a in firing), key=lambda s: s.rank, default=None)
        level = {Severity.HIGH: logging.ERROR, Severity.MEDIUM: logging.WARNING}.get(top, logging.INFO)  # type: ignore[arg-type]
        lines = [_summary(alerts, "ml_platform")] + [f"  {a.one_line()}" for a in alerts]
        logging.getLogger(self.logger_name).log(level, "\n".join(lines))

    def __repr__(self) -> str:
        return f"LogChannel(name={self.name!r}, logger_name={self.logger_name!r})"


class JsonlFileChannel:
    """Appends each alert as one JSON line (JsonlAlertFile; flock-safe for concurrent writers)."""

    def __init__(self, path: str | Path, name: str = "jsonl") -> None:
        self.name = name
        self.file = JsonlAlertFile(path)

    def send(self, alerts: list[Alert], delivery_key: str | None = None) -> None:
        try:
            self.file.append(list(alerts), delivery_key=delivery_key)
        except OSError as err:  # disk full, permissions: may clear up
            raise RetryableDeliveryError(f"cannot append to {self.file.path}: {type(err).__name__}: {err.strerror}") from None

    def __repr__(self) -> str:
        return f"JsonlFileChannel(name={self.name!r}, path={str(self.file.path)!r})"


# Slack attachment colours.
SLACK_COLORS = {Severity.HIGH: "#E01E5A", Severity.MEDIUM: "#ECB22E", Severity.LOW: "#9E9E9E"}
SLACK_RESOLVED_COLOR = "#2EB67D"
SLACK_MAX_ALERTS = 20  # Slack caps a message at 50 blocks / 100 attachments; keep it readable


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SlackWebhookChannel:
    """Slack incoming webhook: Block Kit header + one coloured attachment (section + context) per alert."""

    def __init__(
        self,
        webhook_url: str,
        name: str = "slack",
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        source: str = "ml_platform",
    ) -> None:
        if not webhook_url:
            raise ValueError("SlackWebhookChannel needs a webhook_url")
        self.name = name
        self.timeout_seconds = float(timeout_seconds)
        self.source = source
        self._url = Secret(webhook_url)

    def payload(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        summary = _summary(alerts, self.source)
        all_resolved = all(not a.firing for a in alerts)
        icon = ":white_check_mark:" if all_resolved else ":rotating_light:"
        attachments = []
        for alert in alerts[:SLACK_MAX_ALERTS]:
            resolved = not alert.firing
            title = f"*{'RESOLVED ' if resolved else ''}[{alert.severity.value}]* `{_slack_escape(alert.asset)}` / `{_slack_escape(alert.check)}`"
            if resolved:
                title = ":white_check_mark: " + title
            text = f"{title}\n{_slack_escape(_cut(alert.message, 2000))}"
            if not resolved:
                text += f"\n*Recommended action:* {_slack_escape(_cut(alert.recommended_action, 500))}"
            context = [f"env *{_slack_escape(alert.environment)}*"]
            if alert.model_version:
                context.append(f"model `{_slack_escape(alert.model_version)}`")
            if alert.run_url:
                context.append(f"<{alert.run_url}|run {_slack_escape((alert.run_id or '')[:8])} in Dagster>")
            elif alert.run_id:
                context.append(f"run `{_slack_escape(alert.run_id)}`")
            context.append(alert.timestamp)
            attachments.append(
                {
                    "color": SLACK_RESOLVED_COLOR if resolved else SLACK_COLORS[alert.severity],
                    "fallback": alert.one_line()[:300],
                    "blocks": [
                        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, 3000)}},
                        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]},
                    ],
                }
            )
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(summary, 150), "emoji": True}}
        ]
        if len(alerts) > SLACK_MAX_ALERTS:
            blocks.append(
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": f"…and {len(alerts) - SLACK_MAX_ALERTS} more (see the alert log)"}],
                }
            )
        return {"text": f"{icon} {summary}", "blocks": blocks, "attachments": attachments}

    def send(self, alerts: list[Alert], delivery_key: str | None = None) -> None:
        if alerts:
            url = self._url.reveal()
            post_json(url, self.payload(alerts), timeout=self.timeout_seconds, secrets=_url_secret_parts(url),
                      headers=_idempotency_header(delivery_key))

    def __repr__(self) -> str:
        return f"SlackWebhookChannel(name={self.name!r}, webhook_url=***, timeout_seconds={self.timeout_seconds:g})"


class JsonWebhookChannel:
    """Generic JSON webhook: POST {"version", "source", "status", "alerts": [alert.to_dict(), ...]}."""

    def __init__(
        self,
        url: str,
        name: str = "webhook",
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        bearer_token: str | None = None,
        source: str = "ml_platform",
    ) -> None:
        if not url:
            raise ValueError("JsonWebhookChannel needs a url")
        self.name = name
        self.timeout_seconds = float(timeout_seconds)
        self.source = source
        self._url = Secret(url)
        self._token = Secret(bearer_token or "")

    def payload(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        states = {a.state.value for a in alerts}
        return {
            "version": 1,
            "source": self.source,
            "status": states.pop() if len(states) == 1 else "mixed",
            "summary": _summary(alerts, self.source),
            "alerts": [a.to_dict() for a in alerts],
        }

    def send(self, alerts: list[Alert], delivery_key: str | None = None) -> None:
        if not alerts:
            return
        url = self._url.reveal()
        headers = _idempotency_header(delivery_key)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        secrets = _url_secret_parts(url) + ([self._token.reveal()] if self._token else [])
        post_json(url, self.payload(alerts), timeout=self.timeout_seconds, secrets=secrets, headers=headers)

    def __repr__(self) -> str:
        token = "***" if self._token else None
        return f"JsonWebhookChannel(name={self.name!r}, url=***, bearer_token={token}, timeout_seconds={self.timeout_seconds:g})"


PAGERDUTY_SEVERITY = {Severity.HIGH: "critical", Severity.MEDIUM: "warning", Severity.LOW: "info"}


class PagerDutyChannel:
    """PagerDuty Events API v2: one trigger/resolve event per alert, dedup_key = fingerprint.

    A group is one delivery attempt: if any event fails, the whole group is retried; PagerDuty
    deduplicates the events already accepted by their dedup_key.
    """

    def __init__(
        self,
        routing_key: str,
        name: str = "pagerduty",
        events_url: str = PAGERDUTY_EVENTS_URL,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        source: str = "ml_platform",
    ) -> None:
        if not routing_key:
            raise ValueError("PagerDutyChannel needs a routing_key")
        self.name = name
        self.events_url = events_url
        self.timeout_seconds = float(timeout_seconds)
        self.source = source
        self._routing_key = Secret(routing_key)

    def event(self, alert: Alert) -> dict[str, Any]:
        key = self._routing_key.reveal()
        if not alert.firing:
            return {"routing_key": key, "event_action": "resolve", "dedup_key": alert.fingerprint}
        event: dict[str, Any] = {
            "routing_key": key,
            "event_action": "trigger",
            "dedup_key": alert.fingerprint,
            "payload": {
                "summary": _cut(f"[{alert.severity.value}] {alert.asset}/{alert.check}: {alert.message}", 1024),
                "source": f"{self.source}/{alert.environment}",
                "severity": PAGERDUTY_SEVERITY[alert.severity],
                "component": alert.asset,
                "group": alert.environment,
                "class": alert.check,
                "timestamp": alert.timestamp,
                "custom_details": {
                    "message": alert.message,
                    "recommended_action": alert.recommended_action,
                    "asset": alert.asset,
                    "check": alert.check,
                    "model_version": alert.model_version,
                    "environment": alert.environment,
                    "run_id": alert.run_id,
                    "run_url": alert.run_url,
                },
            },
            "client": self.source,
        }
        if alert.run_url:
            event["links"] = [{"href": alert.run_url, "text": "Dagster run"}]
            event["client_url"] = alert.run_url
        return event

    def send(self, alerts: list[Alert], delivery_key: str | None = None) -> None:
        # PagerDuty deduplicates on each event's dedup_key (the fingerprint) already.
        secrets = [self._routing_key.reveal()]
        for alert in alerts:
            post_json(self.events_url, self.event(alert), timeout=self.timeout_seconds, secrets=secrets)

    def __repr__(self) -> str:
        return (
            f"PagerDutyChannel(name={self.name!r}, routing_key=***, events_url={endpoint_label(self.events_url)!r}, "
            f"timeout_seconds={self.timeout_seconds:g})"
        )


class EmailChannel:
    """Email over SMTP (smtplib): one plain-text message per batch to all recipients.

    `starttls=True` upgrades the connection (verifying the server against the system CAs, or
    `tls_ca_file`); `username`/`password` log in (only after STARTTLS unless `allow_plain_auth`).
    """

    def __init__(
        self,
        host: str,
        port: int = 587,
        from_addr: str = "ml-platform@localhost",
        to_addrs: Sequence[str] | str = (),
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        name: str = "email",
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        tls_ca_file: str | None = None,
        allow_plain_auth: bool = False,
        source: str = "ml_platform",
    ) -> None:
        recipients = [a.strip() for a in (to_addrs.split(",") if isinstance(to_addrs, str) else to_addrs) if a.strip()]
        if not host or not recipients:
            raise ValueError("EmailChannel needs a host and at least one recipient in to_addrs")
        if username and not starttls and not allow_plain_auth:
            raise ValueError("EmailChannel: refusing to send a password without STARTTLS (set allow_plain_auth=True)")
        self.name = name
        self.host = host
        self.port = int(port)
        self.from_addr = from_addr
        self.to_addrs = recipients
        self.username = username or None
        self._password = Secret(password or "")
        self.starttls = bool(starttls)
        self.timeout_seconds = float(timeout_seconds)
        self.tls_ca_file = tls_ca_file or None
        self.source = source

    def message(self, alerts: Sequence[Alert], delivery_key: str | None = None) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = _summary(alerts, self.source)
        msg["From"] = self.from_addr
        msg["To"] = ", ".join(self.to_addrs)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        domain = self.from_addr.rpartition("@")[2] or "localhost"
        # The same Message-ID on a resend, so mail systems and clients can drop the duplicate.
        msg["Message-ID"] = f"<{delivery_key}@{domain}>" if delivery_key else make_msgid(domain=domain)
        msg["X-Alert-Fingerprints"] = ",".join(sorted({a.fingerprint for a in alerts}))
        msg.set_content(_plain_text(alerts, self.source))
        return msg

    def send(self, alerts: list[Alert], delivery_key: str | None = None) -> None:
        if not alerts:
            return
        where = f"smtp://{self.host}:{self.port}"
        secrets = [self._password.reveal()]
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=self.tls_ca_file))
                if self.username:
                    smtp.login(self.username, self._password.reveal())
                refused = smtp.send_message(self.message(alerts, delivery_key), from_addr=self.from_addr, to_addrs=self.to_addrs)
        except smtplib.SMTPRecipientsRefused as err:
            codes = {code for code, _ in err.recipients.values()}
            reason = f"SMTP {where} refused all recipients: " + ", ".join(
                f"{rcpt} ({code})" for rcpt, (code, _) in err.recipients.items()
            )
            if all(400 <= c < 500 for c in codes):
                raise RetryableDeliveryError(reason) from None
            raise PermanentDeliveryError(reason) from None
        except smtplib.SMTPNotSupportedError:
            raise PermanentDeliveryError(f"SMTP {where} does not support STARTTLS/AUTH as configured") from None
        except smtplib.SMTPResponseException as err:
            detail = _excerpt(err.smtp_error if isinstance(err.smtp_error, (bytes, str)) else str(err.smtp_error), secrets)
            reason = f"SMTP {err.smtp_code} from {where}: {detail}"
            if 400 <= err.smtp_code < 500 or err.smtp_code == -1:
                raise RetryableDeliveryError(reason) from None
            raise PermanentDeliveryError(reason) from None
        except ssl.SSLCertVerificationError as err:
            raise PermanentDeliveryError(f"TLS certificate of {where} rejected: {err.verify_message}") from None
        except (smtplib.SMTPServerDisconnected, socket.timeout, TimeoutError) as err:
            raise RetryableDeliveryError(f"SMTP {where}: {type(err).__name__} (timeout {self.timeout_seconds:g}s)") from None
        except (smtplib.SMTPException, OSError) as err:
            raise RetryableDeliveryError(f"SMTP {where}: {type(err).__name__}: {_excerpt(str(err), secrets)}") from None
        if refused:
            logger.warning("email channel %r: some recipients were refused: %s", self.name, sorted(refused))

    def __repr__(self) -> str:
        return (
            f"EmailChannel(name={self.name!r}, host={self.host!r}, port={self.port}, from_addr={self.from_addr!r}, "
            f"to_addrs={self.to_addrs!r}, username={self.username!r}, password={'***' if self._password else None}, "
            f"starttls={self.starttls})"
        )
