"""The agent against the real broker with a stub reader: world events in, outputs out,
errors reported without stopping, retained status, and the last will when the agent dies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest

from onshi.errors import OnshiError
from onshi.mqtt import topics
from onshi.mqtt.agent import ENV_PASSWORD, Agent, main
from onshi.mqtt.broker import Broker
from onshi.mqtt.codec import (
    CardPresented,
    ErrorReported,
    FacePresented,
    ScreenShown,
    StaffModeSwitched,
    StateChanged,
    Status,
    decode,
    encode,
)
from tests.mqtt.conftest import GUARD_S, connect, messages_until, on
from tests.mqtt.stub_reader import EchoReader

ROOT = Path(__file__).resolve().parents[2]


class Ticks:
    """An injected clock: every reading is the next whole second (no wall clock in stamps)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def bodies(messages: list[aiomqtt.Message]) -> list[object]:
    return [decode(m.topic.value, bytes(m.payload)).body for m in messages]  # type: ignore[arg-type]


def test_agent_answers_events_reports_bad_ones_and_keeps_going(broker: Broker) -> None:
    rid = "agent1"
    reader = EchoReader()
    out = topics.out_topic

    async def scenario() -> None:
        agent = Agent(
            reader, broker.address.with_credentials(broker.credentials(rid)), rid, clock=Ticks()
        )
        async with connect(broker, broker.harness) as harness:
            await harness.subscribe(topics.reader_filter(rid), qos=1)
            task = asyncio.create_task(agent.run())
            async with asyncio.timeout(GUARD_S):
                await agent.online.wait()
            (status,) = await messages_until(harness, on(topics.status_topic(rid)))
            assert bodies([status]) == [Status(state="online", agent=agent.name)]

            async def send(name: str, payload: bytes) -> list[aiomqtt.Message]:
                await harness.publish(topics.world_topic(rid, name), payload, qos=1)
                return await messages_until(
                    harness, lambda m: m.topic.value in (out(rid, "screen"), out(rid, "error"))
                )

            # a world event -> a state change and a screen message, stamped by the injected clock
            got = await send("card-presented", encode(rid, CardPresented(profile="valid"), at=1)[1])
            assert [m.topic.value for m in got] == [
                topics.world_topic(rid, "card-presented"),  # the harness's own event
                out(rid, "state"),
                out(rid, "screen"),
            ]
            assert bodies(got[1:]) == [
                StateChanged(previous="idle", state="card-presented", cause="card-presented"),
                ScreenShown(code="echo.card-presented", text="got card-presented"),
            ]
            stamps = [json.loads(m.payload)["at"] for m in got[1:]]  # type: ignore[arg-type]
            assert stamps == sorted(stamps) and all(s > 100 for s in stamps)

            # malformed, schema-invalid, unknown and refused: one error each, naming message+field
            cases = [
                ("pin-typed", b'{"at": 1, "digits": ', "world/pin-typed", "payload"),
                ("face-presented", b'{"at": 1, "score": 1.5}', "world/face-presented", "score"),
                ("iris-scanned", b'{"at": 1}', "world/iris-scanned", "topic"),
                (
                    "staff-mode",
                    encode(rid, StaffModeSwitched(mode="visual"), at=1)[1],
                    "world/staff-mode",
                    None,
                ),
            ]
            for name, payload, message, field in cases:
                got = await send(name, payload)
                (error,) = bodies(got[-1:])
                assert isinstance(error, ErrorReported)
                assert (error.message, error.field) == (message, field)
            assert "not allowed in state" in error.detail  # the reader's own rule error

            # ... and the agent still answers the next event
            got = await send("face-presented", encode(rid, FacePresented(score=0.9), at=2)[1])
            assert bodies(got[-1:]) == [
                ScreenShown(code="echo.face-presented", text="got face-presented")
            ]
            assert agent.handled == 6 and len(reader.seen) == 2

            # leaving cleanly: the agent itself retains `offline`
            agent.stop()
            async with asyncio.timeout(GUARD_S):
                await task
            status = (await messages_until(harness, on(topics.status_topic(rid))))[-1]
            assert bodies([status]) == [Status(state="offline")]

    asyncio.run(scenario())


def _agent_process(broker: Broker, rid: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        ENV_PASSWORD: broker.credentials(rid).password,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    url = f"mqtt://{rid}@{broker.host}:{broker.port}"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onshi.mqtt.agent",
            "--broker",
            url,
            "--id",
            rid,
            "--reader",
            "tests.mqtt.stub_reader:EchoReader",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("death", ["SIGKILL", "SIGTERM"])
def test_status_goes_offline_when_the_agent_dies_or_leaves(broker: Broker, death: str) -> None:
    """SIGKILL: the socket dies with the process, so only the broker can say `offline` (the
    last will). SIGTERM: the agent leaves cleanly and retains `offline` itself."""
    rid = "agent2"
    status_topic = topics.status_topic(rid)

    async def scenario() -> None:
        async with connect(broker, broker.harness) as harness:
            await harness.subscribe(status_topic, qos=1)
            proc = _agent_process(broker, rid)
            try:
                seen = await messages_until(
                    harness, lambda m: bodies([m])[0] == Status(state="online", agent=agent_name())
                )
                proc.send_signal(getattr(signal, death))
                seen = await messages_until(harness, on(status_topic))
                assert bodies(seen) == [Status(state="offline")]
                # a late subscriber sees the same retained answer
                async with connect(broker, broker.harness, ident="late") as late:
                    await late.subscribe(status_topic, qos=1)
                    (retained,) = await messages_until(late, on(status_topic))
                    assert retained.retain and bodies([retained]) == [Status(state="offline")]
                await asyncio.to_thread(proc.wait, GUARD_S)
            finally:
                if proc.poll() is None:
                    proc.kill()
                _, err = proc.communicate(timeout=GUARD_S)
        expected = -signal.SIGKILL if death == "SIGKILL" else 0
        assert proc.returncode == expected, err.decode()[-2000:]

    asyncio.run(scenario())


def agent_name() -> str:
    from onshi import __version__

    return f"onshi {__version__}"


def test_refused_login_is_one_error_line(
    broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"mqtt://agent1:wrong@{broker.host}:{broker.port}"
    code = main(
        ["--broker", url, "--id", "agent1", "--reader", "tests.mqtt.stub_reader:EchoReader"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "wrong" not in err[0]  # the password is never printed


def test_unreachable_broker_is_an_onshi_error() -> None:
    from onshi.mqtt.broker import BrokerAddress, _free_port

    agent = Agent(EchoReader(), BrokerAddress("127.0.0.1", _free_port("127.0.0.1")), "agent1")
    with pytest.raises(OnshiError):
        asyncio.run(agent.run())
