"""`ml-platform`: the registry and the alerts from the command line (no Dagster import).

    ml-platform models list | show VERSION | history | promote VERSION | rollback [--to VERSION]
    ml-platform alerts list | outbox | dead-letters | requeue DELIVERY_ID

Readable tables by default, `--json` for scripts. Exit status 0 on success; otherwise
non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml_platform.alerting.outbox import AlertOutbox
from ml_platform.paths import default_registry_root, platform_home
from ml_platform.model.registry import ModelRegistry, RegistryError


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _version_rows(registry: ModelRegistry) -> list[dict[str, Any]]:
    aliases = registry.aliases_by_version()
    return [
        {
            "version": v.version,
            "created_at": v.created_at,
            "aliases": aliases.get(v.version, ""),
            "accuracy": v.metrics.get("accuracy"),
            "f1": v.metrics.get("f1"),
            "rows": v.metadata.get("row_count"),
            "data_fingerprint": v.metadata.get("data_fingerprint"),
            "run_id": v.metadata.get("run_id"),
        }
        for v in registry.list_versions()
    ]


def _run_alerts(args: argparse.Namespace) -> tuple[Any, str]:
    outbox_path = Path(args.outbox or platform_home() / "alerts.db")
    if not outbox_path.exists():
        raise RegistryError(f"no alert outbox at {outbox_path} yet (no alert was ever raised there)")
    outbox = AlertOutbox(outbox_path)
    if args.command == "list":
        records = [r.to_dict() for r in outbox.alerts(limit=args.limit)]
        return records, format_table(records, ["submitted_at", "state", "severity", "asset", "check", "outcome", "channels", "message"])
    if args.command in ("outbox", "dead-letters"):
        deliveries = outbox.pending() if args.command == "outbox" else outbox.dead_letters()
        rows = [{**d.to_dict(), "alerts": len(d.alerts)} for d in deliveries]
        columns = ["id", "channel", "status", "attempts", "alerts", "next_attempt_at", "last_error"]
        return [d.to_dict() for d in deliveries], format_table(rows, columns)
    if args.command == "requeue":
        if not outbox.requeue(args.delivery_id, now=time.time()):
            raise RegistryError(f"delivery {args.delivery_id} is not a dead letter")
        return {"requeued": args.delivery_id}, f"delivery {args.delivery_id} will be sent at the next sensor tick"
    raise AssertionError(args.command)


def _run(args: argparse.Namespace) -> tuple[Any, str]:
    """Returns (the JSON answer, the human answer)."""
    if args.group == "alerts":
        return _run_alerts(args)
    registry = ModelRegistry(args.registry)
    if args.command == "list":
        rows = _version_rows(registry)
        return rows, format_table(rows, ["version", "created_at", "aliases", "accuracy", "f1", "rows", "data_fingerprint"])
    if args.command == "show":
        version = registry.get(args.version)
        return version.metadata, registry.model_card(args.version)
    if args.command == "history":
        rows = registry.history()
        table = [{**h, "accuracy": h.get("metrics", {}).get("accuracy")} for h in rows]
        return rows, format_table(table, ["at", "action", "alias", "from_version", "to_version", "accuracy", "run_id", "reason"])
    if args.command == "promote":
        current = registry.alias(args.alias)
        # Same guard as rollback: consumers of the alias keep getting the features they send.
        expected = None if args.allow_feature_change or current is None else registry.get(current).features
        entry = registry.set_alias(
            args.alias, args.version, reason=args.reason or f"manual {args.alias} from the CLI",
            metrics=registry.get(args.version).metrics, action="manual-promote", expected_features=expected,
        )
        return entry, f"{args.alias}: {entry['from_version']} -> {entry['to_version']}"
    if args.command == "rollback":
        entry = registry.rollback(args.to, reason=args.reason)
        return entry, f"production rolled back: {entry['from_version']} -> {entry['to_version']}"
    raise AssertionError(args.command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-platform", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--registry", default=None,
        help="registry root, a path or fsspec URL (default: $ML_PLATFORM_REGISTRY, else $DAGSTER_HOME/ml_platform/registry)",
    )
    groups = parser.add_subparsers(dest="group", required=True)
    models = groups.add_parser("models", help="model versions, aliases and history")
    commands = models.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        return sub

    command("list", "every version, newest last, with its aliases and metrics")
    command("show", "one version's model card (metadata with --json)").add_argument("version")
    command("history", "every alias change: when, which run, from, to, why")
    promote = command("promote", "point an alias (default production) at a version")
    promote.add_argument("version")
    promote.add_argument("--alias", default="production", choices=["production", "staging"])
    promote.add_argument("--reason", default=None)
    promote.add_argument("--allow-feature-change", action="store_true", help="accept a different feature list")
    rollback = command("rollback", "put the previous (or --to) version back in production")
    rollback.add_argument("--to", default=None, metavar="VERSION")
    rollback.add_argument("--reason", default=None)

    alerts = groups.add_parser("alerts", help="alerts raised, deliveries waiting, dead letters")
    alerts.add_argument("--outbox", default=None, help="the outbox database (default: $DAGSTER_HOME/ml_platform/alerts.db)")
    alert_commands = alerts.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("list", "alerts and resolutions raised, newest first"),
        ("outbox", "deliveries waiting to be sent or retried"),
        ("dead-letters", "deliveries a channel refused for good, with the error"),
        ("requeue", "send a dead letter again (after fixing the channel)"),
    ]:
        sub = alert_commands.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "list":
            sub.add_argument("--limit", type=int, default=50)
        if name == "requeue":
            sub.add_argument("delivery_id", type=int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.registry = args.registry or default_registry_root()
    try:
        as_json, as_text = _run(args)
    except (RegistryError, ValueError) as exc:
        print(f"ml-platform: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(as_json, indent=2, default=str) if args.json else as_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
