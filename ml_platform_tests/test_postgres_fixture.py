"""The PostgreSQL test helper itself: it stops and removes its server even when the test fails,
and skips, naming the reason, where PostgreSQL cannot be run."""

import socket
from pathlib import Path

import pytest

from ml_platform_tests import postgres
from ml_platform_tests.postgres import running_postgres


def test_the_server_is_stopped_and_removed_when_the_test_body_fails() -> None:
    with pytest.raises(RuntimeError, match="the test failed"):
        with running_postgres() as server:
            data_dir, port = server.data_dir, server.port
            assert server.sql("SELECT 1").strip() == "1"
            raise RuntimeError("the test failed")
    assert not data_dir.parent.exists()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_missing_binaries_skip_naming_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "find_server_binaries", lambda: None)
    with pytest.raises(pytest.skip.Exception, match=r"PostgreSQL server binaries .* not found"):
        with running_postgres():
            pass


def test_as_root_without_a_postgres_user_skip_naming_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "find_server_binaries", lambda: Path("/usr/lib/postgresql/15/bin"))
    monkeypatch.setattr(postgres.os, "geteuid", lambda: 0)
    monkeypatch.setattr(postgres.pwd, "getpwnam", lambda name: (_ for _ in ()).throw(KeyError(name)))
    with pytest.raises(pytest.skip.Exception, match="running as root, and there is no unprivileged 'postgres' user"):
        with running_postgres():
            pass
