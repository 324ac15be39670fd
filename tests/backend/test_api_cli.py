"""``onshi backend seed`` and ``onshi backend serve`` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from onshi.backend.server import free_port
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


def test_serve_seeds_when_absent_and_answers(tmp_path: Path) -> None:
    db = tmp_path / "served.db"
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
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
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
