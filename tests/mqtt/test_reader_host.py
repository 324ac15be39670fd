"""The reference reader as an MQTT agent, end to end: the real broker, the real backend server
(a seeded population), the agent with `ReaderHost`, and a harness that plays the patient.

Every wait blocks on a message with a generous guard (`GUARD_S`); nothing asserts speed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
from collections.abc import Callable, Iterator
from typing import Any

import aiomqtt
import pytest

from onshi.backend.population import card_certificate, ensure_population
from onshi.backend.server import RunningServer, start_server
from onshi.backend.store import Store
from onshi.card import Card
from onshi.mqtt import topics
from onshi.mqtt.agent import Agent
from onshi.mqtt.broker import Broker
from onshi.mqtt.codec import (
    ApduSummary,
    CardPresented,
    ConsentAnswered,
    ErrorReported,
    Message,
    MethodChosen,
    PinTyped,
    ResultReported,
    ScreenShown,
    StateChanged,
    WorldEvent,
    decode,
    encode,
)
from onshi.mqtt.reader_host import (
    ENV_FACILITY_CODE,
    ENV_FACILITY_SECRET,
    ReaderHost,
    backend_from_options,
    http_backend,
    profile_card,
    reader_host,
)
from onshi.profiles import load_profile
from onshi.quickstart.run import BACKEND_APP, population_profile
from onshi.reader.http import HttpBackend
from onshi.reader.world import BackendReply
from tests.mqtt.conftest import GUARD_S, connect

PIN = load_profile("valid").auth_pin.value
assert PIN is not None


@dataclasses.dataclass(frozen=True, slots=True)
class Backend:
    server: RunningServer
    fixtures: dict[str, list[dict[str, Any]]]

    @property
    def facility(self) -> dict[str, Any]:
        return self.fixtures["facility"][0]

    def card_maker(self) -> Callable[[str], Card]:
        """`registered`/`unregistered`: the `valid` profile as that population card."""
        cache: dict[str, Any] = {}

        def make(name: str) -> Card:
            kind = {"registered": "valid_card", "unregistered": "unregistered_card"}.get(name)
            if kind is None:
                return profile_card(name)
            row = self.fixtures[kind][0]
            if kind not in cache:
                cache[kind] = card_certificate(row)
            return Card(population_profile(load_profile("valid"), row), cache[kind])

        return make


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    db = tmp_path_factory.mktemp("population") / "p.db"
    ensure_population(db, persons=500)
    with Store.open(db, create=False) as store:
        fixtures = store.fixtures()
    server = start_server(BACKEND_APP, db_path=db)
    try:
        yield Backend(server, fixtures)
    finally:
        server.stop()


class Harness:
    """The world's side: publishes events, collects the reader's outputs in order."""

    def __init__(self, client: aiomqtt.Client, reader_id: str) -> None:
        self.client = client
        self.rid = reader_id
        self.seen: list[Message] = []
        self._messages = aiter(client.messages)

    async def send(self, event: WorldEvent) -> None:
        topic, payload = encode(self.rid, event, at=1.0)
        await self.client.publish(topic, payload, qos=1)

    async def until(self, done: Callable[[Message], bool]) -> Message:
        """Collect outputs up to and including the first one `done` accepts."""
        async with asyncio.timeout(GUARD_S):
            while True:
                message = await anext(self._messages)
                body = decode(message.topic.value, bytes(message.payload)).body  # type: ignore[arg-type]
                if body.NAME.startswith("out/"):
                    self.seen.append(body)
                    if done(body):
                        return body

    def of(self, cls: type[Any]) -> list[Any]:
        return [m for m in self.seen if isinstance(m, cls)]


def screen(code: str) -> Callable[[Message], bool]:
    return lambda m: isinstance(m, ScreenShown) and m.code == code


def result(m: Message) -> bool:
    return isinstance(m, ResultReported)


async def with_agent(
    broker: Broker, rid: str, host: ReaderHost, play: Callable[[Harness], Any]
) -> Harness:
    agent = Agent(host, broker.address.with_credentials(broker.credentials(rid)), rid)
    async with connect(broker, broker.harness) as client:
        await client.subscribe(topics.reader_filter(rid), qos=1)
        task = asyncio.create_task(agent.run())
        try:
            async with asyncio.timeout(GUARD_S):
                await agent.online.wait()
            harness = Harness(client, rid)
            await play(harness)
            return harness
        finally:
            agent.stop()
            host.close()
            async with asyncio.timeout(GUARD_S):
                await task


async def pin_check(h: Harness, profile: str) -> None:
    await h.send(CardPresented(profile=profile))
    await h.until(screen("choose_method"))
    await h.send(MethodChosen(method="pin"))
    await h.until(screen("enter_pin"))
    await h.send(PinTyped(digits=PIN))


def test_registered_card_pin_check_is_eligible(broker: Broker, backend: Backend) -> None:
    rid = "agent1"
    f = backend.facility
    host = reader_host(
        rid,
        backend=http_backend(backend.server.url, f["code"], f["secret"]),
        cards=backend.card_maker(),
    )

    async def play(h: Harness) -> None:
        await pin_check(h, "registered")
        while True:
            got = await h.until(lambda m: screen("consent")(m) or result(m))
            if isinstance(got, ResultReported):
                return
            await h.send(ConsentAnswered(item="all", agreed=True))

    h = asyncio.run(with_agent(broker, rid, host, play))
    (res,) = h.of(ResultReported)
    assert res.outcome == "eligible", res
    assert str(res.fields.get("QualificationValidity")) == "1"
    states = [s.state for s in h.of(StateChanged)]
    assert states[0] == "select_jpki" and "verify_pin" in states and "sign" in states
    codes = [s.code for s in h.of(ScreenShown)]
    assert codes.index("choose_method") < codes.index("enter_pin")
    assert states.count("verify_pin") == 1  # one VERIFY with the PIN per check
    apdus = h.of(ApduSummary)
    assert any(a.header.startswith("0020") and a.lc > 0 for a in apdus)
    assert all(a.name and len(a.sw) == 4 for a in apdus)
    assert not h.of(ErrorReported)


def test_unregistered_card_ends_without_eligibility(broker: Broker, backend: Backend) -> None:
    rid = "agent2"
    f = backend.facility
    host = reader_host(
        rid,
        backend=http_backend(backend.server.url, f["code"], f["secret"]),
        cards=backend.card_maker(),
    )

    async def play(h: Harness) -> None:
        await pin_check(h, "unregistered")
        await h.until(result)

    h = asyncio.run(with_agent(broker, rid, host, play))
    (res,) = h.of(ResultReported)
    assert res.outcome == "not_registered", res
    assert res.fields.get("QualificationValidity") != "1"


def test_backend_down_fails_closed(broker: Broker) -> None:
    """A backend nobody listens on becomes the reader's backend failure: never eligible."""
    rid = "agent1"
    calls: list[BackendReply] = []
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = http_backend(f"http://127.0.0.1:{port}", "x", "y")

    def backend(action: Any) -> BackendReply:
        calls.append(reply := dead(action))
        return reply

    host = reader_host(rid, backend=backend)

    async def play(h: Harness) -> None:
        await pin_check(h, "valid")
        await h.until(result)

    h = asyncio.run(with_agent(broker, rid, host, play))
    (res,) = h.of(ResultReported)
    assert res.outcome == "backend_unavailable"
    assert calls == ["connection"]


def test_unknown_profile_is_an_error_event_and_the_agent_goes_on(broker: Broker) -> None:
    rid = "agent2"
    host = reader_host(rid)

    async def play(h: Harness) -> None:
        await h.send(CardPresented(profile="no-such-profile"))
        err = await h.until(lambda m: isinstance(m, ErrorReported))
        assert isinstance(err, ErrorReported) and err.message == "world/card-presented"
        await h.send(CardPresented(profile="valid"))
        await h.until(screen("choose_method"))

    asyncio.run(with_agent(broker, rid, host, play))


def test_pin_never_leaves_the_reader(broker: Broker) -> None:
    """APDU summaries carry headers and lengths only: the typed PIN appears in no output."""
    rid = "agent1"
    host = reader_host(rid)

    async def play(h: Harness) -> None:
        await pin_check(h, "valid")
        await h.until(result)

    h = asyncio.run(with_agent(broker, rid, host, play))
    for body in h.seen:
        _topic, payload = encode(rid, body, at=1.0)  # type: ignore[arg-type]
        assert PIN.encode() not in payload and PIN.encode().hex().encode() not in payload.lower()


def test_a_timer_that_runs_out_is_published(broker: Broker) -> None:
    """Nobody picks a method: the reader's own timer (on the agent's loop) ends the session,
    and what it causes reaches the harness although no world event asked for it."""
    rid = "agent1"
    host = reader_host(rid, choice_timeout_s=0.001)  # fires while the answer is published

    async def play(h: Harness) -> None:
        await h.send(CardPresented(profile="valid"))
        await h.until(result)

    h = asyncio.run(with_agent(broker, rid, host, play))
    (res,) = h.of(ResultReported)
    assert res.outcome == "not_identified"
    # in order: the timer's outputs come after the whole answer to card-presented
    changes = h.of(StateChanged)
    assert [(s.previous, s.cause) for s in changes[-2:]] == [
        ("read_basic4_body", "ApduAnswered"),
        ("choose_method", "TimerFired"),
    ]
    assert all(a.state == b.previous for a, b in itertools.pairwise(changes))
    codes = [m.code for m in h.seen if isinstance(m, ScreenShown)]
    assert codes[-2:] == ["choose_method", "error"]


def test_a_swapped_card_aborts_the_first_check(broker: Broker) -> None:
    rid = "agent2"
    host = reader_host(rid)

    async def play(h: Harness) -> None:
        await h.send(CardPresented(profile="valid"))
        await h.until(screen("choose_method"))
        await h.send(CardPresented(profile="valid"))
        await h.until(result)
        await h.until(screen("choose_method"))  # the second card is read from scratch

    h = asyncio.run(with_agent(broker, rid, host, play))
    (res,) = h.of(ResultReported)
    assert res.outcome == "aborted"
    causes = [s.cause for s in h.of(StateChanged)]
    assert causes.count("CardInserted") == 2 and "CardRemoved" in causes


def test_backend_credentials_come_from_options_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The facility credential is sent as the backend expects it; options win over env."""
    monkeypatch.setenv(ENV_FACILITY_CODE, "env-code")
    monkeypatch.setenv(ENV_FACILITY_SECRET, "env-secret")
    for code, expected in ((None, "env-code"), ("opt-code", "opt-code")):
        backend = backend_from_options("http://127.0.0.1:9", code, None)
        assert isinstance(backend, HttpBackend)
        assert backend.headers["X-Facility-Code"] == expected
        assert backend.headers["Authorization"] == "Bearer env-secret"
    assert backend_from_options(None) is None
