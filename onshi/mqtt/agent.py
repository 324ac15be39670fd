"""The reader agent: a reader object on an MQTT broker (what `onshi reader agent` runs).

The agent is transport only: it subscribes to its reader's `world/` topics, decodes each
message with the sans-I/O codec, hands the event to a reader through one small interface
(`handle(event) -> outputs`), and publishes the outputs stamped by an injected clock. It
announces itself with a retained `status` (`online`) and leaves a last will (`offline`) with
the broker, so a dead agent is visible to anyone. A malformed message, a schema-invalid one or
an event the reader's rules refuse becomes an `out/error` message and the agent keeps going:
one bad publisher must not take a reader off the air. This is the part a vendor replaces with
their own agent; `docs/mqtt.md` is the contract.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import inspect
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import aiomqtt

from onshi import __version__
from onshi.errors import OnshiError
from onshi.mqtt import topics
from onshi.mqtt.broker import BrokerAddress
from onshi.mqtt.codec import (
    ErrorReported,
    Message,
    MessageError,
    ReaderOutput,
    Status,
    WorldEvent,
    decode,
    encode,
)

ENV_PASSWORD = "ONSHI_MQTT_PASSWORD"
QOS = 1
"""Every message of the protocol travels at QoS 1: at least once, in order per connection."""
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
"""Without it Nagle + delayed ACK add ~44 ms to every QoS 1 hop (the broker sets it too)."""

log = logging.getLogger("onshi.mqtt.agent")


class ReaderLike(Protocol):
    """What the agent drives: the reference reader's MQTT adapter, a vendor's, or a stub.

    A reader that also has `attach(step)` is handed an async `step(produce)` once the agent is
    online: the way out for outputs no world event asked for (the reference reader's timers).
    `step` awaits `produce()` and publishes what it returns in turn with the answers to world
    events (one at a time, so outputs leave in the order the reader made them).
    """

    def handle(
        self, event: WorldEvent
    ) -> Sequence[ReaderOutput] | Awaitable[Sequence[ReaderOutput]]: ...


class Agent:
    """One reader on one broker connection. `run()` until cancelled; `online` is set once the
    agent is subscribed and its retained `online` status is out."""

    def __init__(
        self,
        reader: ReaderLike,
        address: BrokerAddress,
        reader_id: str,
        *,
        clock: Callable[[], float] = time.time,
        keepalive_s: int = 10,
        timeout_s: float = 5.0,
        name: str = f"onshi {__version__}",
    ) -> None:
        self.reader = reader
        self.address = address
        self.reader_id = topics.check_reader_id(reader_id)
        self.clock = clock
        self.keepalive_s = keepalive_s
        self.timeout_s = timeout_s
        self.name = name
        self.online = asyncio.Event()
        self.handled = 0
        self.was_online = False
        self._stop = asyncio.Event()
        self._turn = asyncio.Lock()
        """Held while the reader works and its outputs are published: one turn at a time."""
        """World messages taken (errors included): a counter tests and dashboards can read."""

    def _client(self) -> aiomqtt.Client:
        will_topic, will_payload = encode(self.reader_id, Status(state="offline"), at=self.clock())
        return aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.address.username or self.reader_id,
            password=self.address.password,
            identifier=f"onshi-reader-{self.reader_id}",
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(will_topic, will_payload, qos=QOS, retain=True),
            keepalive=self.keepalive_s,
            timeout=self.timeout_s,
            socket_options=NODELAY,
            logger=log,
        )

    def stop(self) -> None:
        """Ask `run()`/`serve()` to finish the message in hand, publish `offline` and return.

        Prefer this to cancelling the task: on Python 3.11 `asyncio.wait_for` (inside
        aiomqtt's publish) can swallow a cancellation that lands as the PUBACK arrives, and the
        agent would then wait for its next message forever.
        """
        self._stop.set()

    async def _serve_messages(self, client: aiomqtt.Client) -> None:
        messages = aiter(client.messages)
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                incoming = asyncio.ensure_future(anext(messages))
                await asyncio.wait({incoming, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not incoming.done():
                    incoming.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await incoming
                    return
                await self._take(client, incoming.result())  # MqttError: connection lost
        finally:
            stopping.cancel()

    async def run(self) -> None:
        """Serve one connection until `stop()` or cancelled (then publish `offline` and
        disconnect).

        Raises `OnshiError` when the broker refuses or cannot be reached, and `aiomqtt.MqttError`
        when an established connection is lost (the broker then publishes the last will).
        """
        client = self._client()
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise _connect_error(self.address, self.reader_id, exc) from None
        try:
            await client.subscribe(topics.world_filter(self.reader_id), qos=QOS)
            await self._publish(client, Status(state="online", agent=self.name), retain=True)
            attach = getattr(self.reader, "attach", None)
            if callable(attach):  # a reader with its own clock publishes what its timers cause
                attach(functools.partial(self._step, client))
            self.online.set()
            self.was_online = True
            try:
                await self._serve_messages(client)
            finally:
                self.online.clear()
                # Any way out but a dead socket: say so ourselves, since a clean DISCONNECT
                # discards the will and the retained status would stay `online`.
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    async with asyncio.timeout(self.timeout_s):
                        await self._publish(client, Status(state="offline"), retain=True)
        finally:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)

    async def serve(self, *, max_backoff_s: float = 5.0) -> None:
        """`run()` forever, reconnecting with backoff after a lost connection (aiomqtt does not
        reconnect by itself). A refused login is not retried: it will not heal."""
        backoff = 0.25
        while not self._stop.is_set():
            try:
                await self.run()
            except aiomqtt.MqttError as exc:
                log.warning(
                    "reader %s: broker connection lost (%s); reconnecting", self.reader_id, exc
                )
            except OnshiError:
                if not self.was_online:
                    raise
                log.warning("reader %s: broker unreachable; retrying", self.reader_id)
            if self._stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, max_backoff_s)

    async def _take(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        self.handled += 1
        payload = message.payload
        data = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
        try:
            envelope = decode(message.topic.value, bytes(data))
            if envelope.reader_id != self.reader_id or not envelope.body.NAME.startswith("world/"):
                raise MessageError(
                    message.topic.value, "topic", "not a world event for this reader"
                )
        except MessageError as exc:
            async with self._turn:
                await self._report(client, exc.message, exc.field, exc.reason)
            return
        event = envelope.body

        async def produce() -> Sequence[ReaderOutput]:
            result = self.reader.handle(event)  # type: ignore[arg-type]
            return await result if inspect.isawaitable(result) else result

        await self._step(client, produce, name=event.NAME)

    async def _step(
        self,
        client: aiomqtt.Client,
        produce: Callable[[], Awaitable[Sequence[ReaderOutput]]],
        *,
        name: str = "reader",
    ) -> None:
        """Run the reader once and publish its outputs, in turn with every other step (a
        timer's outputs must not overtake the tail of the answer to the event before it)."""
        async with self._turn:
            try:
                outputs = await produce()
            except Exception as exc:  # the reader's rule errors (or a vendor bug): report, go on
                log.info("reader %s refused %s: %s", self.reader_id, name, exc)
                await self._report(client, name, None, f"{type(exc).__name__}: {exc}")
                return
            await self._publish_outputs(client, outputs)

    async def _publish_outputs(
        self, client: aiomqtt.Client, outputs: Sequence[ReaderOutput]
    ) -> None:
        for output in outputs:
            try:
                await self._publish(client, output)
            except MessageError as exc:
                await self._report(client, exc.message, exc.field, f"reader output: {exc.reason}")

    async def _report(
        self, client: aiomqtt.Client, message: str, field: str | None, detail: str
    ) -> None:
        error = ErrorReported(
            message=message[:300], field=field and field[:300], detail=detail[:2000]
        )
        await self._publish(client, error)

    async def _publish(
        self, client: aiomqtt.Client, body: Message, *, retain: bool = False
    ) -> None:
        topic, payload = encode(self.reader_id, body, at=self.clock())
        await client.publish(topic, payload, qos=QOS, retain=retain)


def _connect_error(address: BrokerAddress, reader_id: str, exc: aiomqtt.MqttError) -> OnshiError:
    if isinstance(exc, aiomqtt.MqttCodeError):
        return OnshiError(
            f"MQTT broker {address.url} refused reader {reader_id!r}: {exc}",
            fix=f"check the reader id and its password (--broker URL or ${ENV_PASSWORD})",
        )
    return OnshiError(
        f"MQTT broker {address.url}: {exc}",
        fix="start the broker, or check the host and port in --broker",
    )


def load_reader(spec: str) -> ReaderLike:
    """`module:attr` -> a reader: attr is a class or factory called with no arguments."""
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise OnshiError(
            f"reader {spec!r} cannot be loaded: {exc}", fix="pass module:attr"
        ) from None
    reader: ReaderLike = factory()
    return reader


async def serve_until_signalled(
    agent: Agent, *, on_online: Callable[[], None] | None = None
) -> None:
    """`agent.serve()` until SIGTERM/SIGINT, which stop it cleanly (`offline` published);
    `on_online` runs once, when the agent is first subscribed and online."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # leave `offline`, not a dangling `online`
        loop.add_signal_handler(sig, agent.stop)
    serving = asyncio.ensure_future(agent.serve())
    if on_online is not None:
        online = asyncio.ensure_future(agent.online.wait())
        await asyncio.wait({serving, online}, return_when=asyncio.FIRST_COMPLETED)
        if online.done():
            on_online()
        else:
            online.cancel()
    await serving


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m onshi.mqtt.agent --broker URL --id ID --reader module:attr`."""
    p = argparse.ArgumentParser(prog="python -m onshi.mqtt.agent", description=__doc__)
    p.add_argument("--broker", required=True, help="mqtt://[user[:password]@]host:port")
    p.add_argument("--id", required=True, help="reader id (and broker user name)")
    p.add_argument("--reader", required=True, help="module:attr making the reader object")
    a = p.parse_args(argv)
    try:
        address = BrokerAddress.parse(a.broker)
        if address.password is None:
            address = BrokerAddress(
                address.host, address.port, address.username, os.environ.get(ENV_PASSWORD)
            )
        try:
            agent = Agent(load_reader(a.reader), address, a.id)
        except ValueError as exc:
            raise OnshiError(str(exc), fix="pass --id with A-Z a-z 0-9 _ -") from None
        asyncio.run(serve_until_signalled(agent))
    except OnshiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
