"""`onshi broker` and `onshi reader agent` as users run them: subprocesses for the happy paths
(signals, printed URLs, a live agent), CliRunner for the one-line errors.

Waits block on a line, a message or the process's exit, each under a generous guard."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from onshi.cli import main
from onshi.mqtt import topics
from onshi.mqtt.broker import Broker, BrokerAddress, Credentials
from onshi.mqtt.codec import CardPresented, ScreenShown, Status, decode, encode
from tests.mqtt.conftest import GUARD_S, connect

ONSHI = [sys.executable, "-m", "onshi"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): it has exited, its parent has not reaped it yet
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_broker_prints_accounts_serves_them_and_stops_by_pid() -> None:
    proc = subprocess.Popen(
        [*ONSHI, "broker", "--reader", "r1", "--reader", "r2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        doc = json.loads(proc.stdout.readline())  # blocks until the broker answers
        assert set(doc["readers"]) == {"r1", "r2"}
        r1 = BrokerAddress.parse(doc["readers"]["r1"]["url"])
        harness = BrokerAddress.parse(doc["harness"]["url"])
        assert r1.host == "127.0.0.1" and r1.username == "r1" and r1.password

        async def login() -> None:
            fake = Broker.__new__(Broker)  # only host/port are read by connect()
            fake.host, fake.port = r1.host, r1.port
            assert r1.password is not None and harness.password is not None
            async with connect(fake, Credentials("r1", r1.password), ident="cli-r1"):
                pass
            async with connect(fake, Credentials("harness", harness.password), ident="cli-h"):
                pass

        asyncio.run(login())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(GUARD_S) == 0
        assert not _pid_alive(doc["pid"])  # mosquitto stopped by its PID
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_reader_agent_command_serves_the_reference_reader(broker: Broker) -> None:
    rid = "agent2"
    creds = broker.credentials(rid)
    env = {**os.environ, "ONSHI_MQTT_PASSWORD": creds.password}
    url = BrokerAddress(broker.host, broker.port, rid).url  # password from the environment

    async def scenario() -> int:
        async with connect(broker, broker.harness, ident="cli-harness") as h:
            await h.subscribe(topics.reader_filter(rid), qos=1)
            proc = await asyncio.create_subprocess_exec(
                *ONSHI, "reader", "agent", "--broker", url, "--id", rid, env=env
            )
            try:
                async with asyncio.timeout(GUARD_S * 2):
                    seen_online = False
                    async for m in h.messages:
                        body = decode(m.topic.value, bytes(m.payload)).body  # type: ignore[arg-type]
                        if isinstance(body, Status) and body.state == "online":
                            seen_online = True
                            topic, payload = encode(rid, CardPresented(profile="valid"), at=1.0)
                            await h.publish(topic, payload, qos=1)
                        if isinstance(body, ScreenShown) and body.code == "choose_method":
                            break
                    assert seen_online
                    proc.send_signal(signal.SIGTERM)
                    async for m in h.messages:
                        body = decode(m.topic.value, bytes(m.payload)).body  # type: ignore[arg-type]
                        if isinstance(body, Status) and body.state == "offline":
                            break
                    return await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    assert asyncio.run(scenario()) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "case",
    ["bad-url", "unreachable", "refused", "bad-id", "bad-backend"],
)
def test_reader_agent_errors_are_one_line_exit_2(broker: Broker, case: str) -> None:
    good = broker.address.with_credentials(broker.credentials("agent1")).login_url
    args = {
        "bad-url": ["--broker", "http://127.0.0.1:1883", "--id", "agent1"],
        "unreachable": ["--broker", f"mqtt://agent1:x@127.0.0.1:{_free_port()}", "--id", "agent1"],
        "refused": [
            "--broker",
            f"mqtt://agent1:wrong@{broker.host}:{broker.port}",
            "--id",
            "agent1",
        ],
        "bad-id": ["--broker", good, "--id", "a/b"],
        "bad-backend": ["--broker", good, "--id", "agent1", "--backend", "ftp://x"],
    }[case]
    result = CliRunner().invoke(main, ["reader", "agent", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "(fix: " in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_broker_refuses_a_network_address() -> None:
    result = CliRunner().invoke(main, ["broker", "--host", "0.0.0.0", "--duration", "1"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_broker_duration_ends_it_with_status_0() -> None:
    result = CliRunner().invoke(main, ["broker", "--reader", "r1", "--duration", "0.1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("broker: mqtt://127.0.0.1:")
    assert lines[-1].startswith("reader r1: mqtt://r1:")
