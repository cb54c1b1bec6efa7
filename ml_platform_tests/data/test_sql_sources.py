"""read_sql_source against a SQLite file and a real PostgreSQL server (started by the `postgres_server` fixture)."""

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from ml_platform.data.sources import DataSourceError, fingerprint_frame, generate_synthetic, read_sql_source
from ml_platform_tests.postgres import PostgresServer

FRAME = generate_synthetic(rows=200, features=4, seed=3).frame


def write_table(url: str, frame: pd.DataFrame, table: str) -> None:
    engine = sa.create_engine(url)
    try:
        frame.to_sql(table, engine, index=False, if_exists="replace")
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A database `sources` holding the frame as table `training rows` (a name that needs quoting)."""
    postgres_server.create_database("sources")
    write_table(postgres_server.url("sources", with_password=True), FRAME, "training rows")
    postgres_server.sql('CREATE TABLE "no rows" (f0 float, target int)', "sources")
    yield postgres_server
    postgres_server.sql("DROP DATABASE sources")


def test_a_table_and_a_query_read_the_same_rows_as_were_written(pg: PostgresServer) -> None:
    by_table = read_sql_source(pg.url("sources"), pg.password, table="training rows")
    by_query = read_sql_source(pg.url("sources"), pg.password, query='SELECT * FROM "training rows"',
                               features=["f0", "f1"], classes=[0, 1])
    pd.testing.assert_frame_equal(by_table.frame, FRAME)
    assert fingerprint_frame(by_query.frame) == fingerprint_frame(FRAME)
    assert by_table.spec.feature_names == ["f0", "f1", "f2", "f3"] and by_table.spec.target == "target"
    assert by_query.spec.feature_names == ["f0", "f1"] and by_query.spec.classes == (0, 1)
    assert by_table.description == f"sql:postgresql+psycopg://{pg.user}:***@127.0.0.1:{pg.port}/sources table training rows"
    assert pg.password not in by_table.description + by_query.description


def test_a_schema_qualified_table_is_quoted_by_sqlalchemy_not_formatted_into_sql(pg: PostgresServer) -> None:
    assert len(read_sql_source(pg.url("sources"), pg.password, table="public.training rows").frame) == 200
    # A name that would be SQL if pasted into a statement is just a table that does not exist.
    with pytest.raises(DataSourceError, match="table 'x; DROP TABLE \"training rows\"' not found"):
        read_sql_source(pg.url("sources"), pg.password, table='x; DROP TABLE "training rows"')
    assert pg.sql('SELECT count(*) FROM "training rows"', "sources").strip() == "200"


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"query": "SELEC * FROM x"}, 'syntax error at or near "SELEC"'),
        ({"query": "SELECT * FROM missing_table"}, 'relation "missing_table" does not exist'),
        ({"table": "missing_table"}, "table 'missing_table' not found"),
        ({"table": "no rows"}, "the table has no rows"),
        ({"query": 'SELECT * FROM "training rows" WHERE f0 > 100'}, "the query returned no rows"),
        ({"query": 'SELECT f0, f1 FROM "training rows"'}, "target column 'target' not found; columns are ['f0', 'f1']"),
        ({"table": "training rows", "password": "wrong"}, 'password authentication failed for user "ml_platform"'),
        ({"table": "training rows", "password": None}, "no password supplied"),
        ({"table": "training rows", "port": 1}, "Connection refused"),
    ],
)
def test_each_failure_is_one_line_naming_the_source_with_the_password_masked(
    pg: PostgresServer, kwargs: dict, reason: str
) -> None:
    password = kwargs.pop("password", pg.password)
    url = pg.url("sources").replace(f":{pg.port}/", f":{kwargs.pop('port', pg.port)}/")
    with pytest.raises(DataSourceError) as caught:
        read_sql_source(url, password, **kwargs)
    message = str(caught.value)
    assert reason in message and "\n" not in message
    assert message.startswith(f"data source 'sql:postgresql+psycopg://{pg.user}{':***' if password else ''}@127.0.0.1:")
    assert pg.password not in message and (password is None or password not in message)


def test_a_sqlite_file_is_read_and_a_missing_one_is_not_created(tmp_path: Path) -> None:
    database = tmp_path / "churn.db"
    write_table(f"sqlite:///{database}", FRAME, "rows")
    source = read_sql_source(f"sqlite:///{database}", table="rows")
    pd.testing.assert_frame_equal(source.frame, FRAME)
    with pytest.raises(DataSourceError, match=r"database file .*absent\.db not found"):
        read_sql_source(f"sqlite:///{tmp_path / 'absent.db'}", table="rows")
    assert not (tmp_path / "absent.db").exists()


@pytest.mark.parametrize(
    "url, reason",
    [("not a url", "not a SQLAlchemy URL"), ("nosuchdb://u@h/d", "cannot use this URL: Can't load plugin")],
)
def test_a_bad_url_is_named_without_echoing_it(url: str, reason: str) -> None:
    with pytest.raises(DataSourceError, match=reason):
        read_sql_source(url, "hunter2", table="t")


def test_exactly_one_of_table_and_query() -> None:
    with pytest.raises(DataSourceError, match="exactly one of table and query"):
        read_sql_source("sqlite:///x.db", table="t", query="SELECT 1")
