"""A model whose data is in a SQL database, through the real pipeline: a real PostgreSQL server (the
`postgres_server` fixture) with the password from an environment variable, and a SQLite file."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.data.sources import generate_synthetic
from ml_platform.declaration import DeclarationError, read_declaration
from ml_platform_tests.conftest import declared, platform, registry_of, run_job, source_config, train
from ml_platform_tests.data.test_sql_sources import write_table
from ml_platform_tests.postgres import PostgresServer
from ml_platform_tests.projects import make_project
from ml_platform_tests.test_bad_input_corpus import failure_line

PASSWORD_ENV = "ML_PLATFORM_TEST_CHURN_DB_PASSWORD"
FRAME = generate_synthetic(rows=600, features=5, seed=11).frame


@pytest.fixture(scope="module")
def churn_db(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    postgres_server.create_database("churn")
    write_table(postgres_server.url("churn", with_password=True), FRAME, "customers")
    yield postgres_server
    postgres_server.sql("DROP DATABASE churn")


def raw_data_metadata(instance: dg.DagsterInstance, model: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey([model, "raw_data"]))
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_a_postgres_table_trains_and_a_bad_query_table_or_password_leaves_production_and_never_shows_the_password(
    churn_db: PostgresServer, instance: dg.DagsterInstance, dagster_home: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, churn_db.password)
    model = declared("churn", source={"kind": "sql", "url": churn_db.url("churn"), "password_env": PASSWORD_ENV,
                                      "table": "customers", "classes": [0, 1]})
    defs = platform(model)
    registry = registry_of(dagster_home, "churn")
    masked = f"sql:postgresql+psycopg://{churn_db.user}:***@127.0.0.1:{churn_db.port}/churn"

    first = train(instance, model, defs=defs)
    assert first.success and registry.alias("production") == "v1"
    metadata = raw_data_metadata(instance, "churn")
    assert metadata["source"] == f"{masked} table customers" and metadata["dagster/row_count"] == 600

    # A query, chosen for one run as the Launchpad would: the password stays the declared EnvVar.
    subset = train(instance, model, source_config("churn", table=None, query="SELECT * FROM customers WHERE f0 < 1.5"), defs=defs)
    assert subset.success
    assert raw_data_metadata(instance, "churn")["source"] == f"{masked} query SELECT * FROM customers WHERE f0 < 1.5"
    production = registry.alias("production")

    failures = {
        "query": (source_config("churn", table=None, query="SELECT * FROM customers WHERE"), 'syntax error at end of input'),
        "table": (source_config("churn", table="churned_customers"), "table 'churned_customers' not found"),
        "password": (None, f'password authentication failed for user "{churn_db.user}"'),
    }
    runs = [first.run_id, subset.run_id]
    for case, (run_config, reason) in failures.items():
        if case == "password":
            monkeypatch.setenv(PASSWORD_ENV, "not-" + churn_db.password)  # EnvVar: read at run time
        result = train(instance, model, run_config, defs=defs)
        runs.append(result.run_id)
        line = failure_line(result)
        assert not result.success and line.startswith(f"data source '{masked}") and reason in line, (case, line)
        assert "\n" not in line and churn_db.password not in line
        assert registry.alias("production") == production, case

    # Nowhere: not in Python logs, the Dagster event logs and run configs, nor any file of the
    # instance (event log database, run storage, registry, model cards).
    assert churn_db.password not in caplog.text
    for run_id in runs:
        assert churn_db.password not in str(instance.get_run_by_id(run_id).run_config)
        assert all(churn_db.password not in str(event) for event in instance.all_logs(run_id))
    leaked = [p for p in dagster_home.rglob("*") if p.is_file() and churn_db.password.encode() in p.read_bytes()]
    assert leaked == []


def test_a_sqlite_file_relative_to_the_project_is_the_embedded_example(tmp_path: Path, instance: dg.DagsterInstance,
                                                                       dagster_home: Path) -> None:
    (tmp_path / "data").mkdir()
    write_table(f"sqlite:///{tmp_path / 'data' / 'churn.db'}", FRAME, "customers")
    model = declared("churn", root=tmp_path, source={"kind": "sql", "url": "sqlite:///data/churn.db",
                                                      "query": "SELECT * FROM customers"})
    assert model.source_url() == f"sqlite:///{tmp_path / 'data' / 'churn.db'}"
    assert train(instance, model).success and registry_of(dagster_home, "churn").alias("production") == "v1"
    metadata = raw_data_metadata(instance, "churn")
    assert metadata["source"] == f"sql:sqlite:///{tmp_path}/data/churn.db query SELECT * FROM customers"
    assert metadata["dagster/row_count"] == 600


def test_an_unset_password_variable_fails_the_extraction_naming_it_and_rollback_still_runs(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    model = declared("churn", source={"kind": "sql", "url": "postgresql+psycopg://ml@127.0.0.1:1/churn",
                                      "password_env": PASSWORD_ENV, "table": "customers"})
    defs = platform(model)
    result = train(instance, model, defs=defs)
    assert not result.success and failure_line(result) == (
        "data source 'sql:postgresql+psycopg://ml@127.0.0.1:1/churn table customers' could not be read: "
        f"the environment variable {PASSWORD_ENV} (the password) is not set"
    )
    # The rollback job uses the data source too: it is launched, and refused for its own reason only.
    rollback = run_job(instance, defs, "churn_rollback", {"ops": {"churn_rollback_production_model": {"config": {"to_version": "v1"}}}})
    assert "rollback refused" in failure_line(rollback)


@pytest.mark.parametrize(
    "source, message",
    [
        ({"url": "postgresql+psycopg://ml:hunter2@db/churn", "table": "t"}, "url must not hold the password"),
        ({"url": "::not a url::", "table": "t"}, "url is not a SQLAlchemy URL"),
        ({"url": "sqlite:///x.db"}, "kind 'sql' needs exactly one of table and query"),
        ({"table": "t"}, "url is required when kind is 'sql'"),
    ],
)
def test_a_bad_sql_declaration_is_one_line_naming_the_field_without_echoing_a_password(
    tmp_path: Path, source: dict, message: str
) -> None:
    project = make_project(tmp_path / "project")
    with pytest.raises(DeclarationError) as caught:
        read_declaration(project.declare("churn", {"source": {"kind": "sql", **source}}), project.root)
    assert f"churn/defs.yaml: attributes.source: {message}" in str(caught.value)
    assert "hunter2" not in str(caught.value) and "\n" not in str(caught.value)
