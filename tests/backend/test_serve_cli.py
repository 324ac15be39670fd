"""`onshi backend serve` errors that tell the truth, and servers that leave nothing behind."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from onshi.backend.population import ensure_population
from onshi.backend.server import start_server
from onshi.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_busy_port_is_one_error_line_before_anything_else(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            main, ["backend", "serve", "--db", str(db), "--port", str(port)]
        )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(f"error: port {port} on 127.0.0.1 is in use")
    assert "fix:" in lines[0] and "serving" not in result.output
    assert not db.exists()  # refused before seeding


def test_a_file_that_is_not_a_database_is_one_error_and_leaves_no_lock(tmp_path: Path) -> None:
    db = tmp_path / "notadb.txt"
    db.write_text("hello\n")
    port = str(_free_port())
    result = CliRunner().invoke(main, ["backend", "serve", "--db", str(db), "--port", port])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notadb.txt"]


def test_seeding_leaves_no_lock_file_even_with_concurrent_seeders(tmp_path: Path) -> None:
    db = tmp_path / "pop.db"
    results: list[object] = []
    errors: list[BaseException] = []

    def seed() -> None:
        try:
            results.append(ensure_population(db, persons=30, facilities=2))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=seed) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r is not None for r in results) == 1  # one seeded, the others found it in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pop.db"]


def test_stopping_a_server_removes_its_work_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where its work dir is made
    srv = start_server("onshi.backend.app:server_app", db_path=tmp_path / "api.db", workers=2)
    try:
        assert [p.name.startswith("onshi-server-") for p in tmp_path.iterdir()].count(True) == 1
        with urllib.request.urlopen(f"{srv.url}/healthz", timeout=30) as resp:
            assert json.loads(resp.read())["status"] == "ok"
    finally:
        srv.stop()
    assert not list(tmp_path.glob("onshi-server-*"))
    assert isinstance(srv.log_text(), str)  # answered from memory once the dir is gone
