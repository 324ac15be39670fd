"""The versioned MQTT topic tree of the reader protocol (`docs/mqtt.md`).

One home for every topic string: the codec, the agent, the broker's ACL and the harness all
build and parse topics here, so a rename cannot drift between them. Layout::

    onshi/v1/readers/{id}/world/{name}   harness -> reader: what the world does
    onshi/v1/readers/{id}/out/{name}     reader -> harness: state, screen, APDU, result, error
    onshi/v1/readers/{id}/status         reader -> anyone: retained online/offline (last will)

The version is a topic level rather than a payload field so that a broker ACL, a subscription
or a bridge can separate protocol versions without reading payloads.
"""

from __future__ import annotations

import dataclasses
import enum
import re

PROTOCOL = "onshi"
VERSION = "v1"
ROOT = f"{PROTOCOL}/{VERSION}"
READERS = f"{ROOT}/readers"

HARNESS_USER = "harness"
"""The broker user that publishes world events to every reader and reads everything."""

READER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Reader ids are broker user names too: a `/`, `+` or `#` would widen the `%u` ACL patterns
across topic levels, so only this alphabet is allowed."""


class Direction(enum.Enum):
    """Who publishes on a topic: the harness (`world`) or the reader (`out`, `status`)."""

    WORLD = "world"
    OUT = "out"
    STATUS = "status"


class TopicError(ValueError):
    """A topic outside the tree: wrong prefix, wrong version, bad reader id or layout."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"topic {topic!r}: {reason}")
        self.topic = topic
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: reader id, direction and message name (`status` for the status topic)."""

    reader_id: str
    direction: Direction
    name: str

    def __str__(self) -> str:
        if self.direction is Direction.STATUS:
            return status_topic(self.reader_id)
        return f"{reader_root(self.reader_id)}/{self.direction.value}/{self.name}"


def check_reader_id(reader_id: str) -> str:
    """Return `reader_id` if it can name a reader (and a broker user); raise ValueError if not."""
    if not READER_ID_RE.fullmatch(reader_id):
        raise ValueError(
            f"reader id {reader_id!r} must be 1-64 characters of A-Z a-z 0-9 _ - "
            "(it is the reader's broker user name and a topic level)"
        )
    if reader_id == HARNESS_USER:
        raise ValueError(f"reader id {reader_id!r} is the harness's broker user name")
    return reader_id


def reader_root(reader_id: str) -> str:
    return f"{READERS}/{check_reader_id(reader_id)}"


def world_topic(reader_id: str, name: str) -> str:
    return f"{reader_root(reader_id)}/world/{name}"


def out_topic(reader_id: str, name: str) -> str:
    return f"{reader_root(reader_id)}/out/{name}"


def status_topic(reader_id: str) -> str:
    return f"{reader_root(reader_id)}/status"


def world_filter(reader_id: str) -> str:
    """What an agent subscribes to: every world event for its reader."""
    return f"{reader_root(reader_id)}/world/#"


def reader_filter(reader_id: str) -> str:
    """What a harness watching one reader subscribes to: its outputs and its status."""
    return f"{reader_root(reader_id)}/#"


ALL_READERS_FILTER = f"{READERS}/#"


def parse_topic(topic: str) -> Topic:
    """Split a topic of this tree; `TopicError` names what is wrong (a `v2` topic says so)."""
    parts = topic.split("/")
    if len(parts) < 2 or parts[0] != PROTOCOL:
        raise TopicError(topic, f"not under {ROOT}/")
    if parts[1] != VERSION:
        raise TopicError(topic, f"protocol version {parts[1]!r} is not {VERSION!r}")
    if len(parts) < 5 or parts[2] != "readers":
        raise TopicError(topic, f"expected {READERS}/{{id}}/...")
    reader_id = parts[3]
    try:
        check_reader_id(reader_id)
    except ValueError as exc:
        raise TopicError(topic, str(exc)) from None
    rest = parts[4:]
    if rest == ["status"]:
        return Topic(reader_id, Direction.STATUS, "status")
    if len(rest) == 2 and rest[0] in ("world", "out") and rest[1]:
        return Topic(reader_id, Direction(rest[0]), rest[1])
    raise TopicError(topic, "expected .../world/{name}, .../out/{name} or .../status")
