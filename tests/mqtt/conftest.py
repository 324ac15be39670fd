"""A real private mosquitto per test module, and helpers that block on messages.

Every wait is bounded by a generous guard (a hung broker fails the test loudly); none is a
speed assertion. Nothing here is skipped: without mosquitto the fixture raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import aiomqtt
import pytest

from onshi.mqtt.broker import Broker, Credentials

GUARD_S = 15.0
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
READERS = ["readerA", "readerB", "agent1", "agent2"]


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with Broker(READERS) as b:
        yield b


@contextlib.asynccontextmanager
async def connect(
    broker: Broker, creds: Credentials, *, ident: str | None = None
) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=creds.username,
        password=creds.password,
        identifier=ident or f"test-{creds.username}",
        protocol=aiomqtt.ProtocolVersion.V5,
        socket_options=NODELAY,
        timeout=GUARD_S,
    ) as client:
        yield client


async def messages_until(
    client: aiomqtt.Client, last: Callable[[aiomqtt.Message], bool]
) -> list[aiomqtt.Message]:
    """Every message up to and including the first for which `last` is true."""
    seen: list[aiomqtt.Message] = []
    async with asyncio.timeout(GUARD_S):
        async for message in client.messages:
            seen.append(message)
            if last(message):
                return seen
    raise AssertionError("the message stream ended")


def on(topic: str) -> Callable[[aiomqtt.Message], bool]:
    return lambda m: m.topic.value == topic
