"""The private broker against a real mosquitto: it answers on loopback, keeps readers apart
(ACLs) and refuses bad logins with a structured reason code."""

from __future__ import annotations

import asyncio
import socket

import aiomqtt
import pytest

from onshi.errors import OnshiError
from onshi.mqtt import broker as broker_mod
from onshi.mqtt import topics
from onshi.mqtt.broker import Broker, BrokerAddress, Credentials
from onshi.mqtt.codec import PinTyped, StateChanged, Status, encode
from tests.mqtt.conftest import connect, messages_until, on

NOT_AUTHORIZED = 0x87  # MQTT 5 reason code 135 (3.1.1's CONNACK 5 maps to it too)


def test_broker_listens_on_loopback_and_answers(broker: Broker) -> None:
    assert broker.running and broker.host == "127.0.0.1"
    with socket.create_connection((broker.host, broker.port), timeout=5):
        pass

    async def ping() -> list[aiomqtt.Message]:
        async with connect(broker, broker.harness) as harness:
            await harness.subscribe(topics.ALL_READERS_FILTER, qos=1)
            topic, payload = encode("readerA", PinTyped(digits="0000"), at=1.0)
            await harness.publish(topic, payload, qos=1)
            return await messages_until(harness, on(topic))

    assert [m.payload for m in asyncio.run(ping())] == [b'{"at":1.0,"digits":"0000"}']


def test_reader_cannot_read_or_write_another_readers_topics(broker: Broker) -> None:
    a, b = broker.credentials("readerA"), broker.credentials("readerB")
    b_pin = encode("readerB", PinTyped(digits="1111"), at=1.0)
    b_state = encode("readerB", StateChanged(previous="x", state="y", cause="z"), at=1.0)
    b_status = encode("readerB", Status(state="online"), at=1.0)
    a_marker = encode("readerA", PinTyped(digits="2222"), at=2.0)
    a_sentinel = encode("readerA", StateChanged(previous="a", state="b", cause="c"), at=3.0)
    b_marker = encode("readerB", PinTyped(digits="3333"), at=4.0)

    async def scenario() -> None:
        async with (
            connect(broker, broker.harness) as harness,
            connect(broker, a) as reader_a,
            connect(broker, b) as reader_b,
        ):
            await harness.subscribe(topics.ALL_READERS_FILTER, qos=1)
            await reader_b.subscribe(topics.world_filter("readerB"), qos=1)
            await reader_b.publish(*b_status, qos=1, retain=True)
            # A asks for everything (acl_file grants the SUBACK and filters at delivery)
            await reader_a.subscribe("#", qos=1)
            await reader_a.subscribe(topics.reader_filter("readerB"), qos=1)

            # reading: the harness's event for B reaches B; B's output reaches the harness
            await harness.publish(*b_pin, qos=1)
            got_b = await messages_until(reader_b, on(b_pin[0]))
            assert [m.payload for m in got_b] == [b_pin[1]]
            await reader_b.publish(*b_state, qos=1)
            await messages_until(harness, lambda m: m.payload == b_state[1])
            # ... and none of it (nor B's retained status) reaches A before a later marker
            await harness.publish(*a_marker, qos=1)
            got_a = await messages_until(reader_a, on(a_marker[0]))
            assert [m.topic.value for m in got_a] == [a_marker[0]]
            await messages_until(harness, on(a_marker[0]))  # the harness reads its own too

            # writing: A forges an event for B and an output as B, then a sentinel of its own
            await reader_a.publish(b_pin[0], b'{"at":5.0,"digits":"9999"}', qos=1)
            await reader_a.publish(b_state[0], b_state[1], qos=1)
            await reader_a.publish(topics.world_topic("readerA", "pin-typed"), b_pin[1], qos=1)
            await reader_a.publish(*a_sentinel, qos=1)
            seen = await messages_until(harness, on(a_sentinel[0]))
            assert [m.topic.value for m in seen] == [a_sentinel[0]]
            await harness.publish(*b_marker, qos=1)
            got_b = await messages_until(reader_b, lambda m: m.payload == b_marker[1])
            assert [m.payload for m in got_b] == [b_marker[1]]
            await reader_b.publish(topics.status_topic("readerB"), b"", qos=1, retain=True)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "who",
    ["wrong password", "unknown user", "another reader's password", "harness password as reader"],
)
def test_bad_credentials_are_refused_with_not_authorized(broker: Broker, who: str) -> None:
    a, b = broker.credentials("readerA"), broker.credentials("readerB")
    creds = {
        "wrong password": Credentials("readerA", a.password + "x"),
        "unknown user": Credentials("nobody", a.password),
        "another reader's password": Credentials("readerA", b.password),
        "harness password as reader": Credentials("readerA", broker.harness.password),
    }[who]

    async def attempt() -> None:
        async with connect(broker, creds):
            pass

    with pytest.raises(aiomqtt.MqttCodeError) as refused:
        asyncio.run(attempt())
    assert refused.value.rc is not None
    assert int(refused.value.rc.value) == NOT_AUTHORIZED


def test_a_broker_that_cannot_start_fails_with_its_log_tail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every port it is given is taken: it exits, and the error carries mosquitto's own words."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(broker_mod, "_free_port", lambda host: port)
        b = Broker(["readerA"], attempts=2)
        with pytest.raises(OnshiError) as failed:
            b.start()
    assert "Address already in use" in failed.value.message
    assert b.process is None and b.workdir is None


def test_loopback_only_and_reader_ids_checked() -> None:
    with pytest.raises(OnshiError):
        Broker(host="0.0.0.0")
    for bad in ["a/b", "+", "#", "", "harness", "x" * 65]:
        with pytest.raises(OnshiError):
            Broker([bad])


def test_broker_url_round_trip() -> None:
    addr = BrokerAddress.parse("mqtt://agent1:s%40cret@127.0.0.1:18830")
    assert (addr.host, addr.port, addr.username, addr.password) == (
        "127.0.0.1",
        18830,
        "agent1",
        "s@cret",
    )
    assert addr.url == "mqtt://agent1@127.0.0.1:18830"  # no password in what gets printed
    for bad in ["http://127.0.0.1:1", "mqtt://", "mqtt://h:notaport"]:
        with pytest.raises(OnshiError):
            BrokerAddress.parse(bad)
