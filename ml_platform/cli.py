"""`ml-platform`: declared models, their registries and the alerts from the command line (no Dagster import).

    ml-platform status                          every model: what is in production, where, what next
    ml-platform new-model NAME --csv PATH --target COL     declare a model from a data file
    ml-platform models list | show VERSION | history | promote VERSION | rollback [--to VERSION] | recover
    ml-platform rollout status | pause | resume | abort        the canary rollout of a staged version
    ml-platform alerts list | outbox | dead-letters | requeue DELIVERY_ID

`--model NAME` chooses the model (default: the only one declared). Readable tables by
default, `--json` for scripts. Exit status 0 on success; 1 with a one-line reason on stderr.
Reading commands never create or change a file; a registry root or outbox named explicitly
must exist, while the default ones may not yet (then there is nothing to list: `[]`).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml_platform.alerting.outbox import AlertOutbox, NotAnOutboxError
from ml_platform.declaration import DeclarationError, default_defs_dir, read_declarations, resolve_model_name
from ml_platform.model.registry import ModelRegistry, Recovery, RegistryError, check_registry_root
from ml_platform.model.rollout import RolloutError, control, describe, is_open
from ml_platform.paths import dagster_home, model_registry_url, platform_home, predictions_dir
from ml_platform.scaffold import declaration_yaml, inferred_source, write_declaration


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


def _registry_root(args: argparse.Namespace) -> str | None:
    """--registry, else $ML_PLATFORM_REGISTRY; a root given either way must exist (a typo is named,
    not read as an empty registry). None: the default root, which a fresh instance lacks."""
    root = args.registry or os.environ.get("ML_PLATFORM_REGISTRY")
    if root:
        check_registry_root(root)
    return root


def _registry(args: argparse.Namespace) -> ModelRegistry:
    return ModelRegistry(model_registry_url(resolve_model_name(args.model, args.defs), _registry_root(args)))


def _recovery_text(registry: ModelRegistry, recovery: Recovery) -> str:
    aliases = ", ".join(f"{alias}={version}" for alias, version in sorted(recovery.aliases.items())) or "none"
    lines = [
        f"recovered the state of {registry.url}: {recovery.problem}",
        f"  damaged file kept at: {recovery.damaged_copy or '(none: it had vanished)'}",
        f"  versions:     {', '.join(recovery.versions) or 'none'} (metadata matching its folder and artifact)",
        f"  history:      {recovery.history_entries} entries, from the journal",
        f"  aliases:      {aliases} (replayed from that history)",
        *(f"  not recovered: {what}" for what in recovery.not_recovered),
    ]
    return "\n".join(lines)


def _run_models(args: argparse.Namespace) -> tuple[Any, str]:
    registry = _registry(args)
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
    if args.command == "recover":
        recovery = registry.recover()
        return {"registry": registry.url, **recovery.to_dict()}, _recovery_text(registry, recovery)
    raise AssertionError(args.command)


def _rollout_text(model: str, rollout: dict[str, Any] | None) -> str:
    if rollout is None:
        return (f"{model}: no rollout yet (one starts when a new version passes the gate and its smoke test "
                "while another is in production)")
    lines = [f"{model}: {describe(rollout)}" if is_open(rollout) else
             f"{model}: no rollout in progress; the last, {rollout['candidate']} vs {rollout['champion']}, {rollout['status']}"]
    steps = rollout["policy"]["steps"]
    lines.append("  steps:   " + " -> ".join(
        f"[{'shadow' if share == 0 else f'{share}%'}]" if i == rollout["step"] else ("shadow" if share == 0 else f"{share}%")
        for i, share in enumerate(steps)
    ))
    for decision in rollout["decisions"][-5:]:
        lines.append(f"  {decision['at']}  {decision['action']:<9} {decision['reason']}")
    return "\n".join(lines)


def _run_rollout(args: argparse.Namespace) -> tuple[Any, str]:
    name = resolve_model_name(args.model, args.defs)
    registry = ModelRegistry(model_registry_url(name, _registry_root(args)))
    if args.command == "status":
        rollout = registry.rollout() if registry.exists() else None
        return {"model": name, "rollout": rollout}, _rollout_text(name, rollout)
    if not registry.exists():
        raise RegistryError(f"no registry at {registry.url} (nothing was ever registered there)")
    reason = args.reason or f"{args.command} from the command line"
    try:
        updated = control(registry.rollout(), args.command, reason)
    except RolloutError as exc:
        raise RegistryError(f"{name}: {exc}") from None
    saved = registry.save_rollout(updated)
    done = {"pause": "paused (the split is kept; guardrails still roll back)", "resume": "resumed",
            "abort": f"aborted: {saved['champion']} serves every row again"}[args.command]
    return {"model": name, "rollout": saved}, f"{name}: the rollout of {saved['candidate']} is {done}"


def _run_alerts(args: argparse.Namespace) -> tuple[Any, str]:
    outbox_path = Path(args.outbox or platform_home() / "alerts.db")
    if args.outbox is None and not outbox_path.exists():
        if args.command == "requeue":
            raise NotAnOutboxError(f"no alert outbox at {outbox_path} yet (no alert was ever raised there)")
        return [], "(none)"  # a fresh instance: no alert raised yet
    try:
        return _query_alerts(args, AlertOutbox(outbox_path, read_only=True))
    except sqlite3.DatabaseError as exc:  # damaged beyond the pages read when it was opened
        raise NotAnOutboxError(f"{outbox_path} is not a readable alert outbox ({exc})") from exc


def _query_alerts(args: argparse.Namespace, outbox: AlertOutbox) -> tuple[Any, str]:
    if args.command == "list":
        model = resolve_model_name(args.model, args.defs) if args.model else None
        records = [r.to_dict() for r in outbox.alerts(limit=args.limit, model=model)]
        return records, format_table(records, ["submitted_at", "state", "severity", "asset", "check", "outcome", "channels", "message"])
    if args.command in ("outbox", "dead-letters"):
        deliveries = outbox.pending() if args.command == "outbox" else outbox.dead_letters()
        rows = [{**d.to_dict(), "alerts": len(d.alerts)} for d in deliveries]
        columns = ["id", "channel", "status", "attempts", "alerts", "next_attempt_at", "last_error"]
        return [d.to_dict() for d in deliveries], format_table(rows, columns)
    if args.command == "requeue":
        # Opened for writing only now that it is known to be an outbox (a read-only open checked it).
        AlertOutbox(outbox.path).requeue(args.delivery_id, now=time.time(), force=args.force)
        return {"requeued": args.delivery_id}, f"delivery {args.delivery_id} will be sent at the next sensor tick"
    raise AssertionError(args.command)


def _latest_predictions(model: str) -> str | None:
    """The newest batch_predictions file of a model."""
    files = sorted(predictions_dir(model).glob("*.parquet"), key=lambda f: f.stat().st_mtime)
    return str(files[-1]) if files else None


def _run_status(args: argparse.Namespace) -> tuple[Any, str]:
    """Every declared model (or --model): its production version, where it is, what to try next."""
    models = read_declarations(args.defs)
    if args.model:
        name = resolve_model_name(args.model, args.defs)
        models = [m for m in models if m.name == name]
    root = _registry_root(args)
    rows, lines = [], []
    for model in models:
        registry = ModelRegistry(model_registry_url(model.name, root))
        production = registry.alias("production")
        version = registry.get(production) if production else None
        last = next((h for h in reversed(registry.history()) if h.get("alias") == "production"), None)
        rows.append({
            "model": model.name,
            "production": production,
            "accuracy": version.metrics.get("accuracy") if version else None,
            "since": last["at"] if last else None,
            "why": last["reason"] if last else None,
            "versions": len(registry.list_versions()),
            "model_card": registry.location(production) if production else None,
            "registry": registry.url,
            "rollout": describe(rollout) if (rollout := registry.rollout()) and is_open(rollout) else None,
            "predictions": _latest_predictions(model.name),
        })
    for row in rows:
        if row["production"]:
            lines += [
                f"{row['model']}: {row['production']} in production (holdout accuracy {row['accuracy']:.4f}) since {row['since']}",
                f"  why:        {row['why']}",
                f"  model card: {row['model_card']}",
                f"  registry:   {row['registry']} ({row['versions']} version(s))",
                *([f"  rollout:    {row['rollout']}"] if row["rollout"] else []),
                *([f"  predictions: {row['predictions']} (newest batch_predictions)"] if row["predictions"] else []),
            ]
        else:
            lines += [
                f"{row['model']}: no model in production yet (registry {row['registry']}, {row['versions']} version(s))",
                f"  train it:   make run SELECT=group:{row['model']}",
            ]
    first = rows[0]["model"] if rows else "<model>"
    flag = "" if len(rows) == 1 else f" --model {first}"
    hints = [
        ("make ui", "the Dagster UI on http://127.0.0.1:3000 (and the daemon: schedules, alerts)"),
        (f".venv/bin/ml-platform models list{flag}", "every version, its aliases and metrics"),
        (f".venv/bin/ml-platform models history{flag}", "what was in production, since when, and why"),
        (f".venv/bin/ml-platform rollout status{flag}", "a canary rollout of a new version: its step and figures"),
        (".venv/bin/ml-platform alerts list", "alerts raised by failed checks and runs"),
        (".venv/bin/ml-platform new-model NAME --csv FILE --target COLUMN", "declare a model on your own data"),
    ]
    width = max(len(command) for command, _ in hints[:-1])
    lines += ["", "Next:", *(f"  {command.ljust(width)}  # {why}" for command, why in hints)]
    home = dagster_home()
    if home is None:
        lines.append("(no Dagster instance found: run from the project folder, or export DAGSTER_HOME=$PWD/dagster_home)")
    return rows, "\n".join(lines)


def _run_new_model(args: argparse.Namespace) -> tuple[Any, str]:
    defs_dir = args.defs or default_defs_dir()
    kind, path = ("csv", args.csv) if args.csv else ("parquet", args.parquet)
    source, summary = inferred_source(Path(path), kind, args.target, project_root=defs_dir.parent.parent)
    written = write_declaration(defs_dir, args.name, declaration_yaml(args.name, source, args.description), args.force)
    steps = [("make check", "= .venv/bin/dg check defs"),
             (f"make run SELECT=group:{args.name}", "train it on the project's instance (dagster_home/)")]
    width = max(len(command) for command, _ in steps)
    text = "\n".join([
        f"wrote {written}",
        f"  found: {summary}",
        "Review it (features, classes, thresholds, schedules), then:",
        *(f"  {command.ljust(width)}  # {why}" for command, why in steps),
    ])
    return {"path": str(written), "summary": summary}, text


def _run(args: argparse.Namespace) -> tuple[Any, str]:
    """Returns (the JSON answer, the human answer)."""
    if args.group == "alerts":
        return _run_alerts(args)
    if args.group == "status":
        return _run_status(args)
    if args.group == "new-model":
        return _run_new_model(args)
    if args.group == "rollout":
        return _run_rollout(args)
    return _run_models(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-platform", description=__doc__.split("\n\n")[0])

    def common(p: argparse.ArgumentParser, top: bool) -> None:
        # Accepted before or after the subcommand: `ml-platform --model x models list` or `... list --model x`.
        default = None if top else argparse.SUPPRESS
        p.add_argument("--model", default=default, help="the declared model (default: the only one)")
        p.add_argument(
            "--registry", default=default,
            help="root of the models' registries, a path or fsspec URL "
                 "(default: $ML_PLATFORM_REGISTRY, else $DAGSTER_HOME/ml_platform/registry)",
        )
        p.add_argument("--defs", type=Path, default=default, help="the folder of model declarations (default: ml_platform/defs)")
        p.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS, help="machine-readable output")

    common(parser, top=True)
    groups = parser.add_subparsers(dest="group", required=True)
    common(groups.add_parser("status", help="every model: what is in production, where, and what to try next"), top=False)

    new = groups.add_parser("new-model", help="declare a model from a CSV or Parquet file (writes defs/<name>/defs.yaml)")
    common(new, top=False)
    new.add_argument("name", help="the model's name: lowercase letters, digits, underscores")
    files = new.add_mutually_exclusive_group(required=True)
    files.add_argument("--csv", metavar="PATH")
    files.add_argument("--parquet", metavar="PATH")
    new.add_argument("--target", required=True, metavar="COLUMN", help="the label column")
    new.add_argument("--description", default="")
    new.add_argument("--force", action="store_true", help="replace an existing declaration")

    models = groups.add_parser("models", help="model versions, aliases and history")
    common(models, top=False)
    commands = models.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        common(sub, top=False)
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
    command("recover", "rebuild a damaged state.json from the versions and the journal (keeps the damaged file)")

    rollout = groups.add_parser("rollout", help="the canary rollout of a staged version: status, pause, resume, abort")
    common(rollout, top=False)
    rollout_commands = rollout.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("status", "where the rollout stands: step, runs and rows at it, the last decisions and their figures"),
        ("pause", "stop advancing (the current split is kept; a guardrail still rolls back)"),
        ("resume", "advance again"),
        ("abort", "stop the rollout: the champion serves every row again"),
    ]:
        sub = rollout_commands.add_parser(name, help=help_text)
        common(sub, top=False)
        if name != "status":
            sub.add_argument("--reason", default=None)

    alerts = groups.add_parser("alerts", help="alerts raised, deliveries waiting, dead letters")
    common(alerts, top=False)
    alerts.add_argument("--outbox", default=None, help="the outbox database (default: $DAGSTER_HOME/ml_platform/alerts.db)")
    alert_commands = alerts.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("list", "alerts and resolutions raised, newest first (--model: that model's only)"),
        ("outbox", "deliveries waiting to be sent or retried"),
        ("dead-letters", "deliveries a channel refused for good, with the error"),
        ("requeue", "send a dead letter again (after fixing the channel)"),
    ]:
        sub = alert_commands.add_parser(name, help=help_text)
        common(sub, top=False)
        if name == "list":
            sub.add_argument("--limit", type=int, default=50)
        if name == "requeue":
            sub.add_argument("delivery_id", type=int)
            sub.add_argument("--force", action="store_true", help="requeue a trigger even if its alert was resolved since")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        as_json, as_text = _run(args)
    except (RegistryError, DeclarationError, ValueError, OSError, ImportError) as exc:
        # One line naming the culprit, never a traceback (e.g. s3:// without s3fs, a path that is a file).
        print(f"ml-platform: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(as_json, indent=2, default=str) if args.json else as_text)
        sys.stdout.flush()
    except BrokenPipeError:  # `ml-platform alerts list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
