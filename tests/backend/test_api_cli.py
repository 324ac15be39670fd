"""``onshi backend seed`` and ``onshi backend serve`` as a user runs them."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from onshi.backend.population import EdgeRates
from onshi.backend.server import free_port
from onshi.backend.store import Store
from onshi.cli import main


def test_seed_creates_a_population_and_refuses_to_overwrite(tmp_path: Path) -> None:
    db = tmp_path / "seeded.db"
    runner = CliRunner()
    result = runner.invoke(
        main, ["backend", "seed", "--db", str(db), "--population", "300", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["persons"] == 300
    assert len(summary["example_facility"]["code"]) == 10
    again = runner.invoke(main, ["backend", "seed", "--db", str(db), "--population", "300"])
    assert again.exit_code == 2
    assert "already exists" in again.output
    assert "Traceback" not in again.output


def test_bad_arguments_end_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_host = runner.invoke(
        main, ["backend", "serve", "--db", str(tmp_path / "x.db"), "--host", "192.0.2.1"]
    )
    assert bad_host.exit_code == 2
    assert "loopback" in bad_host.output
    assert not (tmp_path / "x.db").exists()
    bad_count = runner.invoke(
        main, ["backend", "seed", "--db", str(tmp_path / "y.db"), "--population", "0"]
    )
    assert bad_count.exit_code == 2
    assert "Traceback" not in bad_count.output


def wait_healthy(proc: subprocess.Popen[bytes], port: int) -> httpx.Response | None:
    """/healthz's answer once serve answers; None if it exited first (the deadline only
    guards against a hang)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)
    return None


def test_serve_seeds_when_absent_and_answers(tmp_path: Path) -> None:
    db = tmp_path / "served.db"
    # A free port can be taken by another process before serve binds it (tests run in
    # parallel here): serve then exits with its one-line error, and we try another port.
    for _attempt in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("onshi")),
                "backend",
                "serve",
                "--db",
                str(db),
                "--port",
                str(port),
                "--population",
                "400",
                "--log-level",
                "warning",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "ONSHI_ADMIN_TOKEN": "cli-admin"},
        )
        health = wait_healthy(proc, port)
        if health is not None or proc.poll() != 2:
            break
    try:
        assert health is not None and health.status_code == 200, (
            proc.poll(),
            proc.stdout and proc.stdout.read(),
        )
        assert db.exists()
        contract = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()
        assert "/v1/eligibility/card" in contract["paths"]
        admin = httpx.get(
            f"http://127.0.0.1:{port}/admin/faults",
            headers={"Authorization": "Bearer cli-admin"},
            timeout=5,
        )
        assert admin.status_code == 200
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_seed_takes_as_of_and_edge_rates(tmp_path: Path) -> None:
    db = tmp_path / "rated.db"
    result = CliRunner().invoke(
        main,
        [
            "backend", "seed", "--db", str(db), "--population", "400", "--json",
            "--as-of", "2026-04-01", "--rate", "mislinked=0", "--rate", "revoked=0.5",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["as_of"] == "2026-04-01"
    with Store.open(db) as store:
        assert store.as_of() == dt.date(2026, 4, 1)
        rates = json.loads(store.meta("rates") or "{}")
        assert rates["mislinked"] == 0.0 and rates["revoked"] == 0.5
        assert rates["unregistered"] == EdgeRates().unregistered  # the others keep defaults
        mislinked, revoked = (
            store.connection()
            .execute("SELECT sum(linked_person_id != person_id), sum(revoked) FROM cards")
            .fetchone()
        )
    # Only the one forced mislinked household; about half of ~300 cards revoked (default 0.3 %).
    assert mislinked == 1 and revoked > 100


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate", "mislinked"], "is not NAME=VALUE"),
        (["--rate", "=0.1"], "is not NAME=VALUE"),
        (["--rate", "bogus=0.1"], "unknown rate 'bogus'"),
        (["--rate", "mislinked=lots"], "is not a number"),
        (["--rate", "mislinked=1.5"], "not a probability"),
        (["--rate", "revoked=nan"], "not a probability"),
        (["--rate", "revoked=0.1", "--rate", "revoked=0.2"], "given twice"),
        (["--rate", "revoked=0.6", "--rate", "expired_in_grace=0.6"], "exceed 1"),
        (["--as-of", "2026-13-01"], "--as-of"),
    ],
)
def test_seed_rejects_bad_rates_and_dates_in_one_line(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    db = tmp_path / "bad.db"
    result = CliRunner().invoke(
        main, ["backend", "seed", "--db", str(db), "--population", "10", *args]
    )
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    if "--rate" in args:
        assert "mislinked" in result.output or "fix:" in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not db.exists()


def test_serve_passes_overload_limits_and_the_non_loopback_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The options reach ``run_server`` (stubbed: nothing listens, nothing is seeded)."""
    import onshi.backend.population as population
    import onshi.backend.server as server

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(server, "run_server", lambda app, **kw: calls.append(kw))
    monkeypatch.setattr(server, "bind_socket", lambda host, port: server.socket.socket())
    monkeypatch.setattr(population, "ensure_population", lambda path, **kw: None)
    db = str(tmp_path / "x.db")
    runner = CliRunner()
    result = runner.invoke(main, ["backend", "serve", "--db", db])
    assert result.exit_code == 0, result.output
    assert calls[-1]["limits"] == server.Limits()
    assert calls[-1]["allow_non_loopback"] is False
    args = ["--max-in-flight", "8", "--max-queue", "0", "--queue-timeout", "0.25"]
    args += ["--retry-after", "3", "--host", "0.0.0.0", "--allow-non-loopback"]
    result = runner.invoke(main, ["backend", "serve", "--db", db, *args])
    assert result.exit_code == 0, result.output
    assert calls[-1]["limits"] == server.Limits(8, 0, 0.25, 3)
    assert calls[-1]["allow_non_loopback"] is True and calls[-1]["host"] == "0.0.0.0"
    help_text = runner.invoke(main, ["backend", "serve", "--help"]).output
    defaults = server.Limits()
    for option, value in (
        ("--max-in-flight", defaults.max_in_flight),
        ("--max-queue", defaults.max_queue),
        ("--queue-timeout", defaults.queue_timeout_s),
        ("--retry-after", defaults.retry_after_s),
    ):
        assert option in help_text
        assert f"(default {value})" in " ".join(help_text.split())
    for bad in (["--max-in-flight", "0"], ["--queue-timeout", "0"], ["--max-queue", "-1"]):
        refused = runner.invoke(main, ["backend", "serve", "--db", db, *bad])
        assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert len(calls) == 2


def test_fixtures_show_credentials_and_example_rows(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    runner = CliRunner()
    assert (
        runner.invoke(main, ["backend", "seed", "--db", str(db), "--population", "300"]).exit_code
        == 0
    )
    with Store.open(db, create=False) as store:
        expected = store.fixtures()
    as_json = runner.invoke(main, ["backend", "fixtures", "--db", str(db), "--json"])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.output)
    assert doc["facility"][0]["secret"] == expected["facility"][0]["secret"]
    assert doc["mislinked_card"][0]["serial"] == expected["mislinked_card"][0]["serial"]
    text = runner.invoke(main, ["backend", "fixtures", "--db", str(db), "--kind", "facility"])
    assert text.exit_code == 0
    assert f"X-Facility-Code: {expected['facility'][0]['code']}" in text.output
    assert "valid_card" not in text.output
    for args, message in (
        (["--db", str(db), "--kind", "nope"], "is not a fixture kind"),
        (["--db", str(tmp_path / "none.db")], "no such database"),
    ):
        bad = runner.invoke(main, ["backend", "fixtures", *args])
        assert bad.exit_code == 2 and message in bad.output
        assert len(bad.output.strip().splitlines()) == 1 and "Traceback" not in bad.output
