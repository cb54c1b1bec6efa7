"""Alert channels as ConfigurableResources, composed into one `AlertingResource`.

A channel with no endpoint configured (empty URL, key or host) is off. Secrets reach the
resources through `dg.EnvVar`, so they are never written into run config or logs.
"""

import os
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from ml_platform.alerting.channels import (
    PAGERDUTY_EVENTS_URL,
    AlertChannel,
    EmailChannel,
    JsonlFileChannel,
    JsonWebhookChannel,
    LogChannel,
    PagerDutyChannel,
    SlackWebhookChannel,
)
from ml_platform.alerting.dispatch import AlertDispatcher
from ml_platform.alerting.outbox import AlertOutbox
from ml_platform.alerting.alert import DEFAULT_ENVIRONMENT
from ml_platform.paths import platform_home

# Where each severity goes when `routes` is not set; channels that are off are left out,
# and the log and the JSONL file always receive everything.
DEFAULT_ROUTES: dict[str, list[str]] = {
    "HIGH": ["log", "jsonl", "pagerduty", "slack", "email", "webhook"],
    "MEDIUM": ["log", "jsonl", "slack", "webhook"],
    "LOW": ["log", "jsonl"],
}


class LogChannelResource(dg.ConfigurableResource):
    """Alerts as records of the `ml_platform.alerts` Python logger."""

    enabled: bool = True

    def is_on(self) -> bool:
        return self.enabled

    def channel(self) -> AlertChannel | None:
        return LogChannel() if self.is_on() else None


class JsonlChannelResource(dg.ConfigurableResource):
    """Alerts appended to a JSONL file (default $DAGSTER_HOME/ml_platform/alerts.jsonl)."""

    path: str = ""

    def resolved_path(self) -> str:
        return self.path or str(platform_home() / "alerts.jsonl")

    def is_on(self) -> bool:
        return True

    def channel(self) -> AlertChannel | None:
        return JsonlFileChannel(self.resolved_path())


class SlackChannelResource(dg.ConfigurableResource):
    """Slack incoming webhook (Block Kit); set webhook_url from $ML_PLATFORM_SLACK_WEBHOOK_URL."""

    webhook_url: str = ""
    timeout_seconds: float = 10.0

    def is_on(self) -> bool:
        return bool(self.webhook_url)

    def channel(self) -> AlertChannel | None:
        return SlackWebhookChannel(self.webhook_url, timeout_seconds=self.timeout_seconds) if self.is_on() else None


class WebhookChannelResource(dg.ConfigurableResource):
    """Generic JSON webhook; set url from $ML_PLATFORM_ALERT_WEBHOOK_URL."""

    url: str = ""
    bearer_token: str = ""
    timeout_seconds: float = 10.0

    def is_on(self) -> bool:
        return bool(self.url)

    def channel(self) -> AlertChannel | None:
        if not self.is_on():
            return None
        return JsonWebhookChannel(self.url, timeout_seconds=self.timeout_seconds, bearer_token=self.bearer_token or None)


class PagerDutyChannelResource(dg.ConfigurableResource):
    """PagerDuty Events API v2; set routing_key from $ML_PLATFORM_PAGERDUTY_ROUTING_KEY."""

    routing_key: str = ""
    events_url: str = PAGERDUTY_EVENTS_URL
    timeout_seconds: float = 10.0

    def is_on(self) -> bool:
        return bool(self.routing_key)

    def channel(self) -> AlertChannel | None:
        if not self.is_on():
            return None
        return PagerDutyChannel(self.routing_key, events_url=self.events_url, timeout_seconds=self.timeout_seconds)


class EmailChannelResource(dg.ConfigurableResource):
    """Email over SMTP (STARTTLS by default); the password from $ML_PLATFORM_SMTP_PASSWORD."""

    host: str = ""
    port: int = 587
    from_address: str = "ml-platform@localhost"
    to_addresses: list[str] = []
    username: str = ""
    password: str = ""
    starttls: bool = True
    # Logging in without STARTTLS sends the password in the clear: only where that is intended.
    allow_plain_auth: bool = False
    timeout_seconds: float = 10.0
    # Why this channel cannot work as configured (e.g. an unparsable environment variable): it is
    # then switched off alone, and the alert sensors say so.
    misconfigured: str = ""

    def is_on(self) -> bool:
        return bool(self.host and self.to_addresses)

    def channel(self) -> AlertChannel | None:
        if not self.is_on():
            return None
        if self.misconfigured:
            raise ValueError(self.misconfigured)
        return EmailChannel(
            self.host, port=self.port, from_addr=self.from_address, to_addrs=self.to_addresses,
            username=self.username or None, password=self.password or None, starttls=self.starttls,
            timeout_seconds=self.timeout_seconds, allow_plain_auth=self.allow_plain_auth,
        )


class AlertingResource(dg.ConfigurableResource):
    """Channels, routing by severity, noise control and the persisted outbox."""

    # Nested resources cannot have defaults; build with `alerting_resource(...)`.
    log: LogChannelResource
    jsonl: JsonlChannelResource
    slack: SlackChannelResource
    webhook: WebhookChannelResource
    pagerduty: PagerDutyChannelResource
    email: EmailChannelResource
    # Severity -> channel names. Unset: DEFAULT_ROUTES minus the channels that are off. Set:
    # used as given, and naming a channel that is off is an error (nothing silently dropped).
    routes: dict[str, list[str]] | None = None
    outbox_path: str = ""  # default $DAGSTER_HOME/ml_platform/alerts.db
    environment: str = DEFAULT_ENVIRONMENT
    webserver_base_url: str = "http://127.0.0.1:3000"
    repeat_interval_hours: float = 4.0
    backoff_base_seconds: float = 30.0
    backoff_max_seconds: float = 3600.0
    # A pass for a newer model version ends an incident raised for an older one (e.g. drift
    # against v3's training data is over once v4 is in production and passes).
    resolve_across_model_versions: bool = True

    def resolved_outbox_path(self) -> str:
        return self.outbox_path or str(platform_home() / "alerts.db")

    def _channel_resources(self) -> dict[str, Any]:
        return {
            "log": self.log, "jsonl": self.jsonl, "slack": self.slack, "webhook": self.webhook,
            "pagerduty": self.pagerduty, "email": self.email,
        }

    def channel_names(self) -> list[str]:
        """The channels that are on, known without reading any secret (safe when the code loads)."""
        return [name for name, resource in self._channel_resources().items() if resource.is_on()]

    def channels(self) -> tuple[dict[str, AlertChannel], dict[str, str]]:
        """The channels that work, and those that are on but cannot work (name -> why), switched
        off alone: one broken channel never silences the others."""
        working: dict[str, AlertChannel] = {}
        broken: dict[str, str] = {}
        for name, resource in self._channel_resources().items():
            try:
                channel = resource.channel()
            except (ValueError, TypeError) as exc:
                broken[name] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                continue
            if channel is not None:
                working[name] = channel
        return working, broken

    def dispatcher(self, model_routes: Mapping[str, Mapping[str, Sequence[str]]] | None = None) -> AlertDispatcher:
        """The dispatcher over the working channels; `model_routes` (model -> severity -> channels)
        override the routes per model. Routes to a broken channel are dropped (its problem is
        reported by `configuration_problems`), never a reason to send nothing at all."""
        channels, broken = self.channels()

        def usable(routes: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
            return {severity: [n for n in names if n not in broken] for severity, names in routes.items()}

        if self.routes is None:
            routes = {severity: [n for n in names if n in channels] for severity, names in DEFAULT_ROUTES.items()}
        else:
            routes = usable(self.routes)
        return AlertDispatcher(
            AlertOutbox(self.resolved_outbox_path()),
            channels,
            routes,
            model_routes={model: usable(overrides) for model, overrides in (model_routes or {}).items()},
            repeat_interval_seconds=self.repeat_interval_hours * 3600,
            backoff_base_seconds=self.backoff_base_seconds,
            backoff_max_seconds=self.backoff_max_seconds,
            webserver_base_url=self.webserver_base_url,
            resolve_across_model_versions=self.resolve_across_model_versions,
        )


def alerting_resource(
    *,
    log: LogChannelResource | None = None,
    jsonl: JsonlChannelResource | None = None,
    slack: SlackChannelResource | None = None,
    webhook: WebhookChannelResource | None = None,
    pagerduty: PagerDutyChannelResource | None = None,
    email: EmailChannelResource | None = None,
    **settings: Any,
) -> AlertingResource:
    """An AlertingResource with every channel not given left at its default (off, for the remote ones)."""
    return AlertingResource(
        log=log or LogChannelResource(),
        jsonl=jsonl or JsonlChannelResource(),
        slack=slack or SlackChannelResource(),
        webhook=webhook or WebhookChannelResource(),
        pagerduty=pagerduty or PagerDutyChannelResource(),
        email=email or EmailChannelResource(),
        **settings,
    )


def _secret(var: str) -> str | dg.EnvVar:
    """An EnvVar when the variable is set (resolved at run time, never logged), else off."""
    return dg.EnvVar(var) if os.environ.get(var) else ""


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def env_flag(var: str, default: bool, problems: list[str]) -> bool:
    """A true/false environment variable; anything else is a problem naming it (and the default)."""
    text = os.environ.get(var, "").strip().lower()
    if not text:
        return default
    if text in _TRUE | _FALSE:
        return text in _TRUE
    problems.append(f"{var}={os.environ[var]!r} is not true or false")
    return default


def env_int(var: str, default: int, problems: list[str], low: int = 1, high: int | None = None) -> int:
    """A whole-number environment variable in [low, high]; anything else is a problem naming it."""
    text = os.environ.get(var, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        problems.append(f"{var}={os.environ[var]!r} is not a whole number in {span}")
        return default
    return value


def alerting_from_environment() -> AlertingResource:
    """Channels switched on by environment variables, so `dagster dev` needs no YAML. A variable
    that cannot be read switches its channel off alone, with the reason naming the variable."""
    env = os.environ.get
    email_problems: list[str] = []
    port = env_int("ML_PLATFORM_SMTP_PORT", 587, email_problems, high=65535)
    starttls = env_flag("ML_PLATFORM_SMTP_STARTTLS", True, email_problems)
    allow_plain_auth = env_flag("ML_PLATFORM_SMTP_ALLOW_PLAIN_AUTH", False, email_problems)
    return alerting_resource(
        slack=SlackChannelResource(webhook_url=_secret("ML_PLATFORM_SLACK_WEBHOOK_URL")),
        webhook=WebhookChannelResource(
            url=_secret("ML_PLATFORM_ALERT_WEBHOOK_URL"), bearer_token=_secret("ML_PLATFORM_ALERT_WEBHOOK_TOKEN")
        ),
        pagerduty=PagerDutyChannelResource(routing_key=_secret("ML_PLATFORM_PAGERDUTY_ROUTING_KEY")),
        email=EmailChannelResource(
            host=env("ML_PLATFORM_SMTP_HOST", ""),
            port=port,
            from_address=env("ML_PLATFORM_SMTP_FROM", "ml-platform@localhost"),
            to_addresses=[a.strip() for a in env("ML_PLATFORM_SMTP_TO", "").split(",") if a.strip()],
            username=env("ML_PLATFORM_SMTP_USERNAME", ""),
            password=_secret("ML_PLATFORM_SMTP_PASSWORD"),
            starttls=starttls,
            allow_plain_auth=allow_plain_auth,
            misconfigured="; ".join(email_problems),
        ),
        environment=env("ML_PLATFORM_ENVIRONMENT", DEFAULT_ENVIRONMENT),
        webserver_base_url=env("ML_PLATFORM_WEBSERVER_URL", "http://127.0.0.1:3000"),
    )
