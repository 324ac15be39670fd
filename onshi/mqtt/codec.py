"""Sans-I/O codec of the reader protocol: (topic, bytes) <-> validated message objects.

No sockets and no clock: `decode` turns what arrived into an `Envelope` or raises one
`MessageError` naming the message and the field; `encode` turns a message body and a
timestamp the caller injects into the topic and payload to publish. Each message has a JSON
Schema shipped in `onshi/mqtt/schemas/` (the contract a vendor's own agent follows); the
frozen classes below mirror them field for field, with `None` meaning "omitted".
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from importlib import resources
from typing import Any, ClassVar, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from onshi.mqtt.topics import Direction, TopicError, parse_topic, status_topic, world_topic
from onshi.mqtt.topics import out_topic as _out_topic

MAX_PAYLOAD = 64 * 1024
"""Largest payload the codec takes: brokers cap sizes without a clean error, so we cap first."""

Method = Literal["face", "pin", "visual"]
ConsentItem = Literal["checkup", "medication", "diagnosis", "surgery", "all"]
StaffMode = Literal["auto", "visual", "outage"]
FieldValue = str | int | float | bool | None
SECRET_FIELDS = frozenset({"digits"})
"""Fields whose values never appear in an error event or a repr (the PIN typed)."""


class MessageError(ValueError):
    """A message the protocol refuses: `message` names it (or its topic), `field` the culprit
    (`topic`, `payload` for the whole document, or a property path such as `fields.x`)."""

    def __init__(self, message: str, field: str | None, reason: str) -> None:
        where = f" field {field!r}" if field else ""
        super().__init__(f"{message}{where}: {reason}")
        self.message = message
        self.field = field
        self.reason = reason


# --- message bodies (one per schema; don't subclass these) -------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CardPresented:
    NAME: ClassVar[str] = "world/card-presented"
    profile: str
    collation_b: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CardRemoved:
    NAME: ClassVar[str] = "world/card-removed"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FacePresented:
    NAME: ClassVar[str] = "world/face-presented"
    score: float | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PinTyped:
    NAME: ClassVar[str] = "world/pin-typed"
    digits: str | None = None  # None: the patient pressed "PIN unknown"

    def __repr__(self) -> str:  # a PIN never reaches a log through repr()
        return f"PinTyped(digits=<{len(self.digits or '')} digits>)"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MethodChosen:
    NAME: ClassVar[str] = "world/method-chosen"
    method: Method


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConsentAnswered:
    NAME: ClassVar[str] = "world/consent-answered"
    item: ConsentItem
    agreed: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StaffModeSwitched:
    NAME: ClassVar[str] = "world/staff-mode"
    mode: StaffMode
    operator_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged:
    NAME: ClassVar[str] = "out/state"
    previous: str
    state: str
    cause: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ScreenShown:
    NAME: ClassVar[str] = "out/screen"
    code: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApduSummary:
    NAME: ClassVar[str] = "out/apdu"
    header: str
    name: str
    lc: int
    response_length: int
    sw: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResultReported:
    NAME: ClassVar[str] = "out/result"
    outcome: str
    fields: Mapping[str, FieldValue]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReported:
    NAME: ClassVar[str] = "out/error"
    message: str
    detail: str
    field: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    NAME: ClassVar[str] = "status"
    state: Literal["online", "offline"]
    agent: str | None = None


WorldEvent = (
    CardPresented
    | CardRemoved
    | FacePresented
    | PinTyped
    | MethodChosen
    | ConsentAnswered
    | StaffModeSwitched
)
ReaderOutput = StateChanged | ScreenShown | ApduSummary | ResultReported | ErrorReported
Message = WorldEvent | ReaderOutput | Status

MESSAGES: dict[str, type[Message]] = {
    cls.NAME: cls
    for cls in (
        CardPresented,
        CardRemoved,
        FacePresented,
        PinTyped,
        MethodChosen,
        ConsentAnswered,
        StaffModeSwitched,
        StateChanged,
        ScreenShown,
        ApduSummary,
        ResultReported,
        ErrorReported,
        Status,
    )
}
"""Message name (`world/...`, `out/...`, `status`) -> body class; the schema file is the
name with `/` as `.` (`schemas/world.pin-typed.json`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded message: whose it is, when its sender stamped it, and the body."""

    reader_id: str
    at: float
    body: Message


# --- schemas -------------------------------------------------------------------------------


def schema_file(name: str) -> str:
    return name.replace("/", ".") + ".json"


@functools.cache
def schema(name: str) -> dict[str, Any]:
    """The shipped JSON Schema of message `name` (checked against Draft 2020-12 once)."""
    text = resources.files("onshi.mqtt").joinpath("schemas", schema_file(name)).read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(doc)
    return doc


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name))


# --- decode / encode -------------------------------------------------------------------------


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _field_of(error: ValidationError) -> str:
    """The field a schema error is about: the path, or the missing/unexpected property."""
    path = ".".join(str(p) for p in error.absolute_path)
    extra: list[str] = []
    if error.validator == "required" and isinstance(error.instance, dict):
        extra = [k for k in error.validator_value if k not in error.instance][:1]
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        extra = sorted(str(k) for k in error.instance if k not in known)[:1]
    return ".".join(p for p in (path, *extra) if p) or "payload"


def validate(name: str, doc: object) -> None:
    """Check `doc` against message `name`'s schema; `MessageError` names the first bad field."""
    error = best_match(_validator(name).iter_errors(doc))
    if error is not None:
        field = _field_of(error)
        reason = error.message[:300]
        if field in SECRET_FIELDS:  # the error event must not echo what the patient typed
            reason = f"fails the schema's {error.validator!r} rule"
        raise MessageError(name, field, reason)


def decode(topic: str, payload: bytes) -> Envelope:
    """Bytes received on `topic` -> a validated `Envelope`; anything else is a `MessageError`."""
    try:
        parsed = parse_topic(topic)
    except TopicError as exc:
        raise MessageError(topic, "topic", exc.reason) from None
    name = (
        "status"
        if parsed.direction is Direction.STATUS
        else f"{parsed.direction.value}/{parsed.name}"
    )
    cls = MESSAGES.get(name)
    if cls is None:
        raise MessageError(name, "topic", f"unknown message; known: {', '.join(MESSAGES)}")
    if len(payload) > MAX_PAYLOAD:
        raise MessageError(name, "payload", f"{len(payload)} bytes, over {MAX_PAYLOAD}")
    try:
        doc = json.loads(payload, parse_constant=_reject_constant, parse_float=_finite)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageError(name, "payload", f"not JSON: {exc}"[:300]) from None
    validate(name, doc)
    assert isinstance(doc, dict)  # the schema says so
    at = float(doc.pop("at"))
    return Envelope(parsed.reader_id, at, cls(**doc))


def to_document(body: Message, *, at: float) -> dict[str, Any]:
    """The payload object of `body` stamped `at` (fields that are None are omitted)."""
    doc: dict[str, Any] = {"at": at}
    for f in dataclasses.fields(body):
        value = getattr(body, f.name)
        if value is not None:
            doc[f.name] = dict(value) if isinstance(value, Mapping) else value
    return doc


def topic_of(reader_id: str, body: Message) -> str:
    if isinstance(body, Status):
        return status_topic(reader_id)
    direction, name = body.NAME.split("/", 1)
    return world_topic(reader_id, name) if direction == "world" else _out_topic(reader_id, name)


def encode(reader_id: str, body: Message, *, at: float) -> tuple[str, bytes]:
    """A body and its injected timestamp -> (topic, payload); validated like what we receive,
    so this side never publishes what the other side would refuse."""
    try:
        topic = topic_of(reader_id, body)
    except ValueError as exc:
        raise MessageError(body.NAME, "reader_id", str(exc)) from None
    doc = to_document(body, at=at)
    validate(body.NAME, doc)
    try:
        payload = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise MessageError(body.NAME, None, str(exc)) from None
    return topic, payload.encode("utf-8")
